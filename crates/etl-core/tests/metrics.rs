//! Prometheus metrics of a run: the file, the `/metrics` endpoint over raw TCP, the
//! exposition format parsed line by line, the figures against the run's report.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_schema::SchemaRef;
use etl_core::metrics::Metrics;
use etl_core::migration::{Action, FileJournal, Migration, RunOptions, Step, StepKind, StepOutput};
use etl_core::testing::{MemoryExtract, MemoryLoad};
use etl_core::{
    Batch, BatchStream, Error, Extract, ExtractOptions, Fate, Pipeline, Result, RunInfo, RunStatus,
    SizeHint, Stage, Transform, Unit,
};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

// ---------------------------------------------------------------- the exposition format

/// One sample line.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The families (name -> type) and samples of an exposition text; panics on any line
/// that is not the text format (version 0.0.4).
fn parse(text: &str) -> (BTreeMap<String, String>, Vec<Sample>) {
    assert!(text.ends_with('\n'), "the text ends with a line feed");
    let mut types = BTreeMap::new();
    let mut helped = HashSet::new();
    let mut samples = Vec::new();
    let mut seen = HashSet::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP name text");
            assert!(valid_name(name), "metric name {name:?}");
            assert!(helped.insert(name.to_owned()), "HELP of {name} twice");
            check_escapes(help, &['\\', 'n']);
            current = None;
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(helped.contains(name), "TYPE of {name} follows its HELP");
            assert!(
                ["counter", "gauge", "untyped"].contains(&kind),
                "type {kind}"
            );
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "{name} typed twice"
            );
            current = Some(name.to_owned());
        } else {
            assert!(!line.starts_with('#'), "unknown comment line {line:?}");
            let s = parse_sample(line);
            assert_eq!(
                Some(&s.name),
                current.as_ref(),
                "sample {line:?} outside its family"
            );
            let key = format!("{}{:?}", s.name, s.labels);
            assert!(seen.insert(key), "duplicate series {line:?}");
            samples.push(s);
        }
    }
    (types, samples)
}

fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

fn check_escapes(s: &str, allowed: &[char]) {
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            let n = it.next().expect("escape at the end");
            assert!(allowed.contains(&n), "bad escape \\{n} in {s:?}");
        }
    }
}

fn parse_sample(line: &str) -> Sample {
    let name_end = line.find(['{', ' ']).expect("name then labels or value");
    let name = &line[..name_end];
    assert!(valid_name(name), "metric name {name:?}");
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        let mut end = None;
        loop {
            let (i0, c0) = *chars.peek().expect("label or }");
            if c0 == '}' {
                end = Some(i0 + 1);
                break;
            }
            let mut key = String::new();
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            assert!(valid_name(&key) && !key.contains(':'), "label name {key:?}");
            assert_eq!(chars.next().map(|x| x.1), Some('"'), "quoted label value");
            let mut value = String::new();
            loop {
                let (_, c) = chars.next().expect("closing quote");
                match c {
                    '"' => break,
                    '\\' => match chars.next().expect("escaped char").1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        x => panic!("bad escape \\{x} in {line:?}"),
                    },
                    '\n' => panic!("raw line feed"),
                    c => value.push(c),
                }
            }
            assert!(labels.insert(key, value).is_none(), "label twice");
            match chars.next().expect(", or }") {
                (_, ',') => {}
                (i, '}') => {
                    end = Some(i + 1);
                    break;
                }
                (_, x) => panic!("unexpected {x:?} in {line:?}"),
            }
            let _ = end;
        }
        rest = &r[end.expect("labels closed")..];
    }
    let value = rest.strip_prefix(' ').expect("one space before the value");
    assert!(!value.contains(' '), "no timestamp expected: {line:?}");
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v
            .parse()
            .unwrap_or_else(|_| panic!("value {v:?} in {line:?}")),
    };
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

/// The value of `name` whose labels include `with`.
fn value(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && with
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

/// `ferry_step_state` of `step` and `state` (1 or 0).
fn step_state(samples: &[Sample], step: &str, state: &str) -> Option<f64> {
    value(
        samples,
        "ferry_step_state",
        &[("step", step), ("state", state)],
    )
}

/// `ferry_run_state` of `state` (1 or 0).
fn run_state(samples: &[Sample], state: &str) -> Option<f64> {
    value(samples, "ferry_run_state", &[("state", state)])
}

fn sum(samples: &[Sample], name: &str) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .sum()
}

// ------------------------------------------------------------------ HTTP over raw TCP

/// Send `request` and return the status line, the headers (lowercase names) and the body.
async fn http(addr: SocketAddr, request: &str) -> (String, BTreeMap<String, String>, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("head and body");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().to_owned();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect::<BTreeMap<_, _>>();
    if let Some(n) = headers.get("content-length")
        && !request.starts_with("HEAD ")
    {
        assert_eq!(n.parse::<usize>().unwrap(), body.len(), "Content-Length");
    }
    (status, headers, body.to_owned())
}

async fn scrape(addr: SocketAddr) -> String {
    let (status, headers, body) = http(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: text/plain\r\n\r\n",
    )
    .await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(
        headers.get("content-type").map(String::as_str),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    body
}

// ---------------------------------------------------------------------- the migration

/// Rejects multiples of 10, filters odd numbers.
struct EvenOnly;

impl Transform for EvenOnly {
    fn name(&self) -> &str {
        "even_only"
    }
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef> {
        Ok(input.clone())
    }
    fn transform(&self, mut batch: Batch) -> Result<Batch> {
        let n = batch.data.column(0).as_primitive::<Int64Type>().clone();
        let fates: Vec<Option<Fate>> = (n.values().iter())
            .map(|v| match v {
                v if v % 10 == 0 => Some(Fate::Reject {
                    column: Some("n".into()),
                    kind: "round".into(),
                    reason: format!("{v} is round"),
                }),
                v if v % 2 == 1 => Some(Fate::Filter {
                    reason: "odd".into(),
                }),
                _ => None,
            })
            .collect();
        batch.apply_fates(&fates)?;
        Ok(batch)
    }
}

/// Fails the first batch of unit `b` once with a retryable error (a lost connection).
#[derive(Default)]
struct FlakyOnce(AtomicBool);

impl Transform for FlakyOnce {
    fn name(&self) -> &str {
        "flaky"
    }
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef> {
        Ok(input.clone())
    }
    fn transform(&self, batch: Batch) -> Result<Batch> {
        if &*batch.unit == "b" && !self.0.swap(true, Ordering::SeqCst) {
            return Err(Error::component(
                Stage::Transform,
                "flaky",
                true,
                "connection reset (injected)",
            ));
        }
        Ok(batch)
    }
}

/// Units sized in bytes: 8 bytes per number consumed.
struct Sized(MemoryExtract);

impl Extract for Sized {
    fn name(&self) -> &str {
        "sized"
    }
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }
    async fn units(&self) -> Result<Vec<Unit>> {
        let mut units = self.0.units().await?;
        for u in &mut units {
            u.size = Some(SizeHint::Bytes(1));
        }
        Ok(units)
    }
    fn open(&self, unit: &Unit, options: ExtractOptions) -> Result<BatchStream> {
        let s = self.0.open(unit, options)?;
        Ok(s.map(|b| {
            b.map(|mut b| {
                b.consumed = 8 * b.num_rows() as u64;
                b
            })
        })
        .boxed())
    }
}

#[derive(Default)]
struct Ctx {
    load: MemoryLoad,
    reached: Notify,
    go: Notify,
    fail: AtomicBool,
}

fn migration() -> Migration<Ctx> {
    Migration::new("metrics_test")
        .step(Step::new("check", StepKind::Preflight, |_c: &Ctx, _cx| {
            Box::pin(async { Ok(StepOutput::message("fine")) })
        }))
        .step(Step::new("load", StepKind::Load, |c: &Ctx, cx| {
            Box::pin(async move {
                let extract = Sized(MemoryExtract::units(&[("a", 100), ("b", 57), ("c", 33)]));
                let report = Pipeline::new(extract, c.load.clone())
                    .transform(FlakyOnce::default())
                    .transform(EvenOnly)
                    .options(cx.pipeline_options(16, 2))
                    .run(&cx.run_info())
                    .await;
                Ok(StepOutput::from_pipeline(report))
            })
        }))
        .step(Step::new("wait", StepKind::Gate, |c: &Ctx, _cx| {
            Box::pin(async move {
                c.reached.notify_one();
                c.go.notified().await;
                if c.fail.load(Ordering::SeqCst) {
                    return Err("the gate is closed".into());
                }
                Ok(StepOutput::message("waited"))
            })
        }))
        .step(Step::new("after", StepKind::PostSwitch, |_c: &Ctx, _cx| {
            Box::pin(async { Ok(StepOutput::message("done")) })
        }))
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_writes_and_serves_metrics_that_match_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("metrics").join("ferry.prom");
    let metrics = Metrics::new()
        .write_file(&file)
        .listen(any_port())
        .interval(Duration::from_millis(50));
    let opts = RunOptions::new(dir.path()).with_metrics(metrics.clone());
    let journal = FileJournal::new(dir.path());
    let ctx = Ctx::default();
    let m = migration();

    let scraper = async {
        ctx.reached.notified().await;
        let addr = metrics.served_addr().expect("bound while the run lasts");
        assert!(addr.ip().is_loopback() && addr.port() != 0);
        let text = scrape(addr).await;
        let (types, s) = parse(&text);
        assert_eq!(types["ferry_rows_read_total"], "counter");
        assert_eq!(types["ferry_step_duration_seconds"], "gauge");
        let wait = [("migration", "metrics_test"), ("step", "wait")];
        assert_eq!(value(&s, "ferry_current_step_info", &wait), Some(1.0));
        assert_eq!(step_state(&s, "wait", "running"), Some(1.0));
        assert_eq!(step_state(&s, "load", "done"), Some(1.0));
        assert_eq!(step_state(&s, "after", "pending"), Some(1.0));
        assert_eq!(run_state(&s, "running"), Some(1.0));
        assert_eq!(
            value(&s, "ferry_rows_read_total", &[("step", "load")]),
            Some(190.0)
        );
        // While running, the file is being rewritten too.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (_, f) = parse(&std::fs::read_to_string(&file).unwrap());
        assert_eq!(value(&f, "ferry_current_step_info", &wait), Some(1.0));
        // Other paths and methods.
        let (status, _, _) = http(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(status, "HTTP/1.1 404 Not Found");
        let (status, h, _) = http(addr, "POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
        assert_eq!(h.get("allow").map(String::as_str), Some("GET, HEAD"));
        let (status, h, body) = http(addr, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(body.is_empty() && h["content-length"].parse::<usize>().unwrap() > 0);
        ctx.go.notify_one();
        addr
    };
    let (report, addr) = tokio::join!(m.execute(&ctx, &journal, &opts), scraper);
    let report = report.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);

    // The endpoint lived for the run only.
    assert!(metrics.served_addr().is_none());
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());

    // The file's last version: the run's end, figures equal to the report's.
    let text = std::fs::read_to_string(&file).unwrap();
    let (_, s) = parse(&text);
    let t = &report.totals;
    assert_eq!(
        (t.read, t.loaded, t.rejected, t.filtered),
        (190, 76, 18, 96)
    );
    assert_eq!(sum(&s, "ferry_rows_read_total"), t.read as f64);
    assert_eq!(sum(&s, "ferry_rows_loaded_total"), t.loaded as f64);
    assert_eq!(sum(&s, "ferry_rows_rejected_total"), t.rejected as f64);
    assert_eq!(sum(&s, "ferry_rows_filtered_total"), t.filtered as f64);
    assert_eq!(
        sum(&s, "ferry_rows_read_total"),
        sum(&s, "ferry_rows_loaded_total")
            + sum(&s, "ferry_rows_rejected_total")
            + sum(&s, "ferry_rows_filtered_total")
    );
    let load = [("step", "load")];
    assert_eq!(
        value(&s, "ferry_bytes_read_total", &load),
        Some(190.0 * 8.0)
    );
    assert_eq!(value(&s, "ferry_units", &load), Some(3.0));
    assert_eq!(value(&s, "ferry_units_done", &load), Some(3.0));
    assert_eq!(value(&s, "ferry_units_failed_total", &load), Some(1.0));
    assert_eq!(value(&s, "ferry_unit_retries_total", &load), Some(1.0));
    let retries: u32 = report.units.iter().map(|u| u.retries).sum();
    assert_eq!(retries, 1, "the report counts the same retry");
    // The unit's retry is not counted again as a client retry.
    assert_eq!(value(&s, "ferry_client_retries_total", &[]), Some(0.0));
    assert_eq!(run_state(&s, "done"), Some(1.0));
    assert_eq!(run_state(&s, "running"), Some(0.0));
    let run_id = report.run_id.as_str();
    assert_eq!(
        value(
            &s,
            "ferry_run_info",
            &[("run_id", run_id), ("action", "run")]
        ),
        Some(1.0)
    );
    assert!(value(&s, "ferry_current_step_info", &[]).is_none());
    for step in &report.steps {
        let st = step.state.as_str();
        assert_eq!(step_state(&s, &step.name, st), Some(1.0), "{}", step.name);
        if st == "done" {
            let d = value(&s, "ferry_step_duration_seconds", &[("step", &step.name)]);
            assert_eq!(d, step.seconds, "duration of {}", step.name);
        }
    }
    assert!(value(&s, "ferry_step_duration_seconds", &[("step", "wait")]).unwrap() > 0.0);
    let start = value(&s, "ferry_run_start_timestamp_seconds", &[]).unwrap();
    let last = value(&s, "ferry_last_update_timestamp_seconds", &[]).unwrap();
    assert!(start > 1.7e9 && last >= start, "{start} {last}");
    let took = value(&s, "ferry_run_duration_seconds", &[]).unwrap();
    assert!(took > 0.0 && took < 60.0, "{took}");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let again = parse(&metrics.render()).1;
    let after = value(&again, "ferry_run_duration_seconds", &[]);
    assert_eq!(after, Some(took), "the duration stops with the run");
    assert!(
        std::fs::read_dir(file.parent().unwrap())
            .unwrap()
            .all(|e| e.unwrap().file_name() == "ferry.prom"),
        "no temp file left"
    );
}

#[tokio::test]
async fn a_failed_and_a_refused_run_leave_their_state_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.prom");
    let journal = FileJournal::new(dir.path());
    let ctx = Ctx::default();
    ctx.fail.store(true, Ordering::SeqCst);
    ctx.go.notify_one();
    let opts = RunOptions::new(dir.path()).with_metrics(Metrics::new().write_file(&file));
    let report = migration().execute(&ctx, &journal, &opts).await.unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    let (_, s) = parse(&std::fs::read_to_string(&file).unwrap());
    assert_eq!(run_state(&s, "failed"), Some(1.0));
    assert_eq!(step_state(&s, "wait", "failed"), Some(1.0));
    assert!(value(&s, "ferry_step_duration_seconds", &[("step", "wait")]).is_some());
    assert_eq!(step_state(&s, "after", "pending"), Some(1.0));

    // A plain run is refused while that run is unfinished: the file says so.
    let opts = RunOptions::new(dir.path()).with_metrics(Metrics::new().write_file(&file));
    let e = migration()
        .execute(&ctx, &journal, &opts)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Refused(_)), "{e}");
    let (_, s) = parse(&std::fs::read_to_string(&file).unwrap());
    assert_eq!(run_state(&s, "refused"), Some(1.0));

    // The resume runs the rest; the load is done earlier and keeps its figures out of
    // this process's counters, the wait step runs again.
    ctx.fail.store(false, Ordering::SeqCst);
    ctx.go.notify_one();
    let opts = RunOptions::new(dir.path())
        .with_action(Action::Resume)
        .with_metrics(Metrics::new().write_file(&file));
    let report = migration().execute(&ctx, &journal, &opts).await.unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    let (_, s) = parse(&std::fs::read_to_string(&file).unwrap());
    assert_eq!(run_state(&s, "done"), Some(1.0));
    assert_eq!(
        value(&s, "ferry_run_info", &[("action", "resume")]),
        Some(1.0)
    );
    assert!(value(&s, "ferry_rows_read_total", &[]).is_none());
    for step in ["check", "load", "wait", "after"] {
        assert_eq!(step_state(&s, step, "done"), Some(1.0), "{step}");
        assert!(value(&s, "ferry_step_duration_seconds", &[("step", step)]).is_some());
    }
}

#[tokio::test]
async fn an_address_in_use_is_refused_before_the_run() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let journal = FileJournal::new(dir.path());
    let opts = RunOptions::new(dir.path())
        .with_metrics(Metrics::new().listen(taken.local_addr().unwrap()));
    let e = migration()
        .execute(&Ctx::default(), &journal, &opts)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("--metrics-addr"), "{e}");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing ran"
    );
}

#[tokio::test]
async fn a_pipeline_outside_a_migration_counts_per_batch() {
    let metrics = Metrics::new();
    let load = MemoryLoad::default();
    let run = RunInfo {
        metrics: Some(metrics.clone()),
        ..RunInfo::new("standalone")
    };
    let report = Pipeline::new(Sized(MemoryExtract::numbers("n", 100, 10)), load)
        .transform(EvenOnly)
        .run(&run)
        .await;
    assert!(report.succeeded());
    let (_, s) = parse(&metrics.render());
    let p = [("migration", "standalone"), ("step", "pipeline")];
    assert_eq!(value(&s, "ferry_rows_read_total", &p), Some(100.0));
    assert_eq!(value(&s, "ferry_rows_loaded_total", &p), Some(40.0));
    assert_eq!(value(&s, "ferry_units_done", &p), Some(1.0));
    assert!(
        value(&s, "ferry_run_state", &[]).is_none(),
        "no run: no run state"
    );
}
