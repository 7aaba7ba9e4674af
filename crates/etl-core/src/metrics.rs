//! Prometheus metrics of a run: a file rewritten every few seconds and a `/metrics`
//! endpoint.
//!
//! A [`Metrics`] handle is cheap to clone (an `Arc` of atomics) and is carried by
//! [`RunOptions::metrics`](crate::migration::RunOptions::metrics); the runner gives every
//! step its own scope ([`StepCx::metrics`](crate::migration::StepCx::metrics)) and
//! [`StepCx::run_info`](crate::migration::StepCx::run_info) hands it to the step's
//! pipelines ([`RunInfo::metrics`](crate::RunInfo::metrics)), so every pipeline step
//! reports without code of its own. The pipeline updates its counters once per batch and
//! once per unit, never per row.
//!
//! The text is the [Prometheus exposition format] (version 0.0.4: `# HELP`, `# TYPE`,
//! samples with escaped label values), which is what the Amazon CloudWatch agent's
//! Prometheus support, Prometheus itself, Grafana Agent / Alloy, the OpenTelemetry
//! Collector, Datadog, New Relic and Victoria Metrics scrape. Two ways out:
//!
//! * `--metrics-file PATH` ([`Metrics::write_file`]): rewritten atomically (temp file and
//!   rename) every 5 s while the run lasts, when a step starts or ends, and once at its
//!   end, failed or refused runs included. Point it into node_exporter's textfile-collector directory (a name ending
//!   in `.prom`) or let any agent tail it; it also stays behind as the run's last figures.
//! * `--metrics-addr ADDR` ([`Metrics::listen`]): `GET /metrics` over HTTP/1.1 for the
//!   duration of the run. Bind it to loopback (`127.0.0.1:9464`) and let the local agent
//!   scrape it: it has no authentication. Port 0 takes a free port, logged at the start
//!   and given by [`Metrics::served_addr`].
//!
//! Every sample has a `migration` label; step metrics a `step` label.
//!
//! | metric | type | what |
//! | --- | --- | --- |
//! | `ferry_run_info{run_id,action}` | gauge | 1 for the run (its id and what was asked) |
//! | `ferry_run_state{state}` | gauge | 1 for the run's state (`running`, `stopped`, `failed`, `done`, `rolled_back`, `refused`), 0 for the others |
//! | `ferry_run_start_timestamp_seconds` | gauge | when the invocation started (Unix time) |
//! | `ferry_run_duration_seconds` | gauge | seconds since then, or until it ended |
//! | `ferry_last_update_timestamp_seconds` | gauge | the last progress: a batch, a unit or a step changing state |
//! | `ferry_step_state{step,state}` | gauge | 1 for each step's state (`pending`, `running`, `done`, `failed`, `rolled_back`) |
//! | `ferry_current_step_info{step,position}` | gauge | 1 for the step running now (absent between steps) |
//! | `ferry_step_start_timestamp_seconds{step}` | gauge | when the step last started |
//! | `ferry_step_duration_seconds{step}` | gauge | seconds of the step's last run (of its undo in a rollback), set when it ends |
//! | `ferry_rows_read_total{step}` and `_loaded_`, `_rejected_`, `_filtered_` | counter | rows through the step's pipelines in this process |
//! | `ferry_bytes_read_total{step}` | counter | bytes of input files read (sources that size their units in bytes) |
//! | `ferry_units{step}` / `ferry_units_done{step}` | gauge | units listed / committed (in this process or, resumed, earlier) |
//! | `ferry_units_failed_total{step}` | counter | unit attempts that failed (then retried or failing the step) |
//! | `ferry_unit_retries_total{step}` | counter | units run again after a retryable error (`--unit-retries`) |
//! | `ferry_client_retries_total` | counter | retries of the clients' calls in this process ([`crate::retry`]: DynamoDB, the Bubble API) |
//!
//! Counters count what this process did: a unit that failed and was retried counts its
//! rows twice (`ferry_unit_retries_total` says so), and units a resumed run skips are not
//! read again (they count in `ferry_units_done`). For a run without retries or resume,
//! the rows counters summed over steps equal the report's totals.
//!
//! [Prometheus exposition format]: https://prometheus.io/docs/instrumenting/exposition_formats/

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::migration::StepRecord;
use crate::{Error, Result};

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const RUN_STATES: [&str; 6] = [
    "running",
    "stopped",
    "failed",
    "done",
    "rolled_back",
    "refused",
];
const STEP_STATES: [&str; 5] = ["pending", "running", "done", "failed", "rolled_back"];

/// The metrics of one run, shared by the runner, its steps and their pipelines. See the
/// [module docs](self) for the metrics and the ways out.
///
/// ```
/// use etl_core::metrics::Metrics;
/// let m = Metrics::new();
/// let load = m.for_step("load");
/// load.units_listed(2);
/// load.add_rows(100, 90, 6, 4);
/// load.unit_done();
/// let text = m.render();
/// assert!(text.contains("ferry_rows_loaded_total{migration=\"\",step=\"load\"} 90\n"));
/// assert!(text.contains("# TYPE ferry_rows_read_total counter\n"));
/// ```
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Inner>,
    scope: Option<Arc<Scope>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.inner.state.lock().expect("metrics lock");
        f.debug_struct("Metrics")
            .field("migration", &s.migration)
            .field("file", &s.file)
            .field("addr", &s.addr)
            .field("served", &s.served)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    last_update_ms: AtomicU64,
    client_retries_at_start: AtomicU64,
    /// A step or the run changed state: the file is rewritten at once.
    changed: tokio::sync::Notify,
}

#[derive(Default)]
struct State {
    migration: String,
    run_id: Option<String>,
    action: Option<String>,
    run_state: Option<String>,
    started_s: f64,
    ended_s: Option<f64>,
    steps: Vec<StepEntry>,
    file: Option<PathBuf>,
    addr: Option<SocketAddr>,
    interval: Option<Duration>,
    served: Option<SocketAddr>,
}

struct StepEntry {
    name: String,
    position: Option<u32>,
    state: Option<&'static str>,
    started_s: Option<f64>,
    duration_s: Option<f64>,
    counters: Arc<Scope>,
}

/// The counters of one step (or of a pipeline run outside a migration).
#[derive(Default)]
struct Scope {
    used: AtomicBool,
    read: AtomicU64,
    loaded: AtomicU64,
    rejected: AtomicU64,
    filtered: AtomicU64,
    bytes: AtomicU64,
    units: AtomicU64,
    units_done: AtomicU64,
    units_failed: AtomicU64,
    unit_retries: AtomicU64,
}

impl Metrics {
    /// A handle counting from now, with no way out yet (see [`Metrics::write_file`] and
    /// [`Metrics::listen`]).
    pub fn new() -> Self {
        let m = Metrics::default();
        m.inner.state.lock().expect("metrics lock").started_s = now_s();
        m.inner
            .client_retries_at_start
            .store(crate::retry::retries_in_process(), Ordering::Relaxed);
        m.touch();
        m
    }

    /// Rewrite `path` atomically every 5 s while the run lasts, when a step starts or ends,
    /// and once at the run's end.
    pub fn write_file(self, path: impl Into<PathBuf>) -> Self {
        self.inner.state.lock().expect("metrics lock").file = Some(path.into());
        self
    }

    /// Serve `GET /metrics` on `addr` while the run lasts (port 0: a free port, see
    /// [`Metrics::served_addr`]). Keep it on loopback: the endpoint has no authentication.
    pub fn listen(self, addr: SocketAddr) -> Self {
        self.inner.state.lock().expect("metrics lock").addr = Some(addr);
        self
    }

    /// Rewrite the file this often instead of every 5 s.
    pub fn interval(self, every: Duration) -> Self {
        self.inner.state.lock().expect("metrics lock").interval = Some(every);
        self
    }

    /// The address `/metrics` is served on while the run lasts.
    pub fn served_addr(&self) -> Option<SocketAddr> {
        self.inner.state.lock().expect("metrics lock").served
    }

    /// The file the metrics are written to.
    pub fn file(&self) -> Option<PathBuf> {
        self.inner.state.lock().expect("metrics lock").file.clone()
    }

    /// The handle of step `name` (registered on first use): its pipelines count into it.
    pub fn for_step(&self, name: &str) -> Metrics {
        let mut s = self.inner.state.lock().expect("metrics lock");
        let counters = s.step(name).counters.clone();
        Metrics {
            inner: self.inner.clone(),
            scope: Some(counters),
        }
    }

    /// This handle if it belongs to a step, else the scope `pipeline` (a pipeline run
    /// outside a migration).
    pub fn scoped(&self) -> Metrics {
        if self.scope.is_some() {
            self.clone()
        } else {
            self.for_step("pipeline")
        }
    }

    /// Name the migration (the `migration` label) if it has no name yet.
    pub fn set_migration(&self, name: &str) {
        let mut s = self.inner.state.lock().expect("metrics lock");
        if s.migration.is_empty() {
            s.migration = name.to_owned();
        }
    }

    /// A run of `migration` begins: its id, its action and its steps as recorded.
    pub fn begin_run(&self, migration: &str, run_id: &str, action: &str, steps: &[StepRecord]) {
        {
            let mut s = self.inner.state.lock().expect("metrics lock");
            s.migration = migration.to_owned();
            s.run_id = Some(run_id.to_owned());
            s.action = Some(action.to_owned());
            s.run_state = Some("running".into());
            s.ended_s = None;
        }
        for r in steps {
            self.step_record(r);
        }
    }

    /// A step's recorded state, start and duration (after every change the runner records).
    pub fn step_record(&self, rec: &StepRecord) {
        let mut s = self.inner.state.lock().expect("metrics lock");
        let e = s.step(&rec.name);
        e.position = Some(rec.position);
        e.state = Some(rec.state.as_str());
        e.started_s = rec.started_at.map(|t| t.timestamp_millis() as f64 / 1000.0);
        e.duration_s = rec.duration_s;
        drop(s);
        self.touch();
        self.inner.changed.notify_one();
    }

    /// The run's state (a [`RunState`](crate::migration::RunState) name, or `refused`).
    /// Any state but `running` ends the run's duration.
    pub fn set_run_state(&self, state: &str) {
        let mut s = self.inner.state.lock().expect("metrics lock");
        s.run_state = Some(state.to_owned());
        s.ended_s = (state != "running").then(now_s);
        drop(s);
        self.touch();
        self.inner.changed.notify_one();
    }

    /// Count rows of a batch (or of a step that moves rows without a pipeline).
    /// On a handle of no step, they count in the scope `pipeline`.
    pub fn add_rows(&self, read: u64, loaded: u64, rejected: u64, filtered: u64) {
        self.with_scope(|c| {
            c.read.fetch_add(read, Ordering::Relaxed);
            c.loaded.fetch_add(loaded, Ordering::Relaxed);
            c.rejected.fetch_add(rejected, Ordering::Relaxed);
            c.filtered.fetch_add(filtered, Ordering::Relaxed);
        });
    }

    /// Count bytes of input read.
    pub fn add_bytes(&self, bytes: u64) {
        self.with_scope(|c| {
            c.bytes.fetch_add(bytes, Ordering::Relaxed);
        });
    }

    /// A pipeline listed `n` units.
    pub fn units_listed(&self, n: u64) {
        self.bump(|c| &c.units, n);
    }

    /// A unit was committed (or found committed by an earlier attempt).
    pub fn unit_done(&self) {
        self.bump(|c| &c.units_done, 1);
    }

    /// A unit attempt failed.
    pub fn unit_failed(&self) {
        self.bump(|c| &c.units_failed, 1);
    }

    /// A unit is run again after a retryable error.
    pub fn unit_retried(&self) {
        self.bump(|c| &c.unit_retries, 1);
    }

    fn bump(&self, field: impl Fn(&Scope) -> &AtomicU64, n: u64) {
        self.with_scope(|c| {
            field(c).fetch_add(n, Ordering::Relaxed);
        });
    }

    /// Update this handle's counters (those of the scope `pipeline` on a handle of no
    /// step: a lock, so pipelines take [`Metrics::scoped`] once).
    fn with_scope(&self, f: impl Fn(&Scope)) {
        match &self.scope {
            Some(c) => {
                c.used.store(true, Ordering::Relaxed);
                f(c);
                self.touch();
            }
            None => self.scoped().with_scope(f),
        }
    }

    fn touch(&self) {
        let ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
        self.inner.last_update_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// The metrics in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let s = self.inner.state.lock().expect("metrics lock");
        let mig = s.migration.as_str();
        let mut out = Text::default();
        if let (Some(run_id), Some(action)) = (&s.run_id, &s.action) {
            out.family(
                "ferry_run_info",
                "gauge",
                "The run: 1, with its id and the action asked for.",
            );
            out.sample(
                "ferry_run_info",
                &[("migration", mig), ("run_id", run_id), ("action", action)],
                "1",
            );
        }
        if let Some(state) = &s.run_state {
            out.family(
                "ferry_run_state",
                "gauge",
                "1 for the run's state, 0 for the others.",
            );
            for st in RUN_STATES {
                let v = if st == state { "1" } else { "0" };
                out.sample("ferry_run_state", &[("migration", mig), ("state", st)], v);
            }
        }
        out.family(
            "ferry_run_start_timestamp_seconds",
            "gauge",
            "When the invocation started (Unix time).",
        );
        out.sample(
            "ferry_run_start_timestamp_seconds",
            &[("migration", mig)],
            &float(s.started_s),
        );
        out.family(
            "ferry_run_duration_seconds",
            "gauge",
            "Seconds since the invocation started, or until it ended.",
        );
        // Both are whole milliseconds: rounded, the difference shows no float noise.
        let duration = ((s.ended_s.unwrap_or_else(now_s) - s.started_s) * 1000.0).round() / 1000.0;
        out.sample(
            "ferry_run_duration_seconds",
            &[("migration", mig)],
            &float(duration.max(0.0)),
        );
        out.family(
            "ferry_last_update_timestamp_seconds",
            "gauge",
            "The last progress: a batch, a unit or a step changing state (Unix time).",
        );
        let last = self.inner.last_update_ms.load(Ordering::Relaxed) as f64 / 1000.0;
        out.sample(
            "ferry_last_update_timestamp_seconds",
            &[("migration", mig)],
            &float(last),
        );
        let known: Vec<&StepEntry> = s.steps.iter().filter(|e| e.state.is_some()).collect();
        if !known.is_empty() {
            out.family(
                "ferry_step_state",
                "gauge",
                "1 for each step's state, 0 for the others.",
            );
            for e in &known {
                for st in STEP_STATES {
                    let v = if Some(st) == e.state { "1" } else { "0" };
                    let labels = [("migration", mig), ("step", e.name.as_str()), ("state", st)];
                    out.sample("ferry_step_state", &labels, v);
                }
            }
        }
        let running: Vec<&&StepEntry> = known
            .iter()
            .filter(|e| e.state == Some("running"))
            .collect();
        if !running.is_empty() {
            out.family(
                "ferry_current_step_info",
                "gauge",
                "1 for the step running now.",
            );
            for e in running {
                let pos = e.position.unwrap_or_default().to_string();
                let labels = [
                    ("migration", mig),
                    ("step", e.name.as_str()),
                    ("position", &pos),
                ];
                out.sample("ferry_current_step_info", &labels, "1");
            }
        }
        type Get = fn(&StepEntry) -> Option<f64>;
        let step_gauges: [(&str, &str, Get); 2] = [
            (
                "ferry_step_start_timestamp_seconds",
                "When the step last started (Unix time).",
                |e| e.started_s,
            ),
            (
                "ferry_step_duration_seconds",
                "Seconds of the step's last run (of its undo in a rollback), set when it ends.",
                |e| e.duration_s,
            ),
        ];
        for (name, help, get) in step_gauges {
            let with: Vec<(&str, f64)> = (s.steps.iter())
                .filter_map(|e| Some((e.name.as_str(), get(e)?)))
                .collect();
            if with.is_empty() {
                continue;
            }
            out.family(name, "gauge", help);
            for (step, v) in with {
                out.sample(name, &[("migration", mig), ("step", step)], &float(v));
            }
        }
        type Counter = fn(&Scope) -> &AtomicU64;
        let counters: [(&str, &str, &str, Counter); 9] = [
            (
                "ferry_rows_read_total",
                "counter",
                "Rows read from the source by the step's pipelines.",
                |c| &c.read,
            ),
            (
                "ferry_rows_loaded_total",
                "counter",
                "Rows written to the sink by the step's pipelines.",
                |c| &c.loaded,
            ),
            (
                "ferry_rows_rejected_total",
                "counter",
                "Rows rejected (see rejects.csv).",
                |c| &c.rejected,
            ),
            (
                "ferry_rows_filtered_total",
                "counter",
                "Rows filtered out on purpose.",
                |c| &c.filtered,
            ),
            (
                "ferry_bytes_read_total",
                "counter",
                "Bytes of input files read.",
                |c| &c.bytes,
            ),
            (
                "ferry_units",
                "gauge",
                "Units of work the step's pipelines listed.",
                |c| &c.units,
            ),
            (
                "ferry_units_done",
                "gauge",
                "Units committed (in this process or, resumed, earlier).",
                |c| &c.units_done,
            ),
            (
                "ferry_units_failed_total",
                "counter",
                "Unit attempts that failed.",
                |c| &c.units_failed,
            ),
            (
                "ferry_unit_retries_total",
                "counter",
                "Units run again after a retryable error.",
                |c| &c.unit_retries,
            ),
        ];
        let used: Vec<&StepEntry> = (s.steps.iter())
            .filter(|e| e.counters.used.load(Ordering::Relaxed))
            .collect();
        if !used.is_empty() {
            for (name, kind, help, get) in counters {
                out.family(name, kind, help);
                for e in &used {
                    let v = get(&e.counters).load(Ordering::Relaxed).to_string();
                    out.sample(name, &[("migration", mig), ("step", e.name.as_str())], &v);
                }
            }
        }
        out.family(
            "ferry_client_retries_total",
            "counter",
            "Retries of the clients' calls (DynamoDB, the Bubble API) in this process.",
        );
        let retries = crate::retry::retries_in_process()
            .saturating_sub(self.inner.client_retries_at_start.load(Ordering::Relaxed));
        out.sample(
            "ferry_client_retries_total",
            &[("migration", mig)],
            &retries.to_string(),
        );
        out.0
    }

    /// Start the ways out this handle was given: bind `/metrics` (an error when the
    /// address cannot be bound) and write the file once (an error when it cannot be
    /// written), then rewrite it every 5 s and at each change of a step. [`MetricsExport::finish`] writes it a last time
    /// and stops the endpoint.
    ///
    /// # Errors
    /// [`Error::Config`] naming the address or the file.
    pub async fn start_export(&self) -> Result<MetricsExport> {
        let (file, addr, every) = {
            let s = self.inner.state.lock().expect("metrics lock");
            (
                s.file.clone(),
                s.addr,
                s.interval.unwrap_or(Duration::from_secs(5)),
            )
        };
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        if let Some(addr) = addr {
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                Error::Config(format!("--metrics-addr {addr}: cannot listen there: {e}"))
            })?;
            let bound = listener
                .local_addr()
                .map_err(|e| Error::io(format!("metrics endpoint {addr}"), e))?;
            self.inner.state.lock().expect("metrics lock").served = Some(bound);
            tracing::info!("metrics served at http://{bound}/metrics");
            tasks.push(tokio::spawn(serve(listener, self.clone(), stop.clone())));
        }
        if let Some(path) = &file {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    Error::Config(format!("--metrics-file {}: {e}", path.display()))
                })?;
            }
            self.write_to(path.clone()).await.map_err(|e| {
                Error::Config(format!(
                    "--metrics-file {}: cannot write it: {e}",
                    path.display()
                ))
            })?;
            let (m, path, stop) = (self.clone(), path.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tick.tick() => {}
                        _ = m.inner.changed.notified() => {}
                    }
                    if let Err(e) = m.write_to(path.clone()).await {
                        tracing::warn!(file = %path.display(), error = %e, "cannot write the metrics file");
                    }
                }
            }));
        }
        Ok(MetricsExport {
            metrics: self.clone(),
            file,
            stop,
            tasks,
        })
    }

    async fn write_to(&self, path: PathBuf) -> Result<()> {
        let text = self.render();
        tokio::task::spawn_blocking(move || crate::report::write_atomic(&path, text.as_bytes()))
            .await
            .map_err(|e| Error::Config(format!("metrics writer: {e}")))?
    }
}

impl State {
    fn step(&mut self, name: &str) -> &mut StepEntry {
        let i = match self.steps.iter().position(|e| e.name == name) {
            Some(i) => i,
            None => {
                self.steps.push(StepEntry {
                    name: name.to_owned(),
                    position: None,
                    state: None,
                    started_s: None,
                    duration_s: None,
                    counters: Arc::default(),
                });
                self.steps.len() - 1
            }
        };
        &mut self.steps[i]
    }
}

/// The running ways out of a [`Metrics`] handle ([`Metrics::start_export`]). Dropping it
/// stops them without the last write.
#[derive(Debug)]
pub struct MetricsExport {
    metrics: Metrics,
    file: Option<PathBuf>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl MetricsExport {
    /// Write the file a last time and stop serving `/metrics`. A failed write is logged,
    /// not returned: the run's outcome does not depend on its metrics.
    pub async fn finish(mut self) {
        self.stop.cancel();
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
        self.metrics
            .inner
            .state
            .lock()
            .expect("metrics lock")
            .served = None;
        if let Some(path) = self.file.take()
            && let Err(e) = self.metrics.write_to(path.clone()).await
        {
            tracing::warn!(file = %path.display(), error = %e, "cannot write the metrics file");
        }
    }
}

impl Drop for MetricsExport {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Accept connections until `stop`; each is answered on a task of its own.
async fn serve(listener: tokio::net::TcpListener, metrics: Metrics, stop: CancellationToken) {
    loop {
        let conn = tokio::select! {
            _ = stop.cancelled() => break,
            c = listener.accept() => c,
        };
        match conn {
            Ok((stream, _)) => {
                let m = metrics.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(10), answer(stream, &m)).await;
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One HTTP/1.1 exchange: `GET /metrics` (or `HEAD`) is 200 with the text, another path
/// 404, another method 405; the connection is closed after the answer.
async fn answer(mut stream: tokio::net::TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > 16 * 1024 {
            break;
        }
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, body, content_type) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => ("200 OK", metrics.render(), CONTENT_TYPE),
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "not found: the metrics are at /metrics\n".to_owned(),
            "text/plain; charset=utf-8",
        ),
        _ => (
            "405 Method Not Allowed",
            "only GET /metrics\n".to_owned(),
            "text/plain; charset=utf-8",
        ),
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status.starts_with("405") {
        response.push_str("Allow: GET, HEAD\r\n");
    }
    response.push_str("\r\n");
    if method != "HEAD" {
        response.push_str(&body);
    }
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// The exposition text being built.
#[derive(Default)]
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: &str) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape_label(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// A label value as the text format wants it: `\`, `"` and line feeds escaped.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// A `# HELP` text: `\` and line feeds escaped.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A float as the text format wants it (`+Inf`, `-Inf`, `NaN`).
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        v.to_string()
    }
}

fn now_s() -> f64 {
    chrono::Utc::now().timestamp_millis() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_help_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(escape_help("a\\b\nc \"q\""), "a\\\\b\\nc \"q\"");
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(1.5), "1.5");
        assert_eq!(float(100.0), "100");
        let m = Metrics::new();
        m.set_migration("m\"1");
        m.for_step("a\nb").add_rows(3, 2, 1, 0);
        let text = m.render();
        assert!(
            text.contains("ferry_rows_read_total{migration=\"m\\\"1\",step=\"a\\nb\"} 3\n"),
            "{text}"
        );
    }

    #[test]
    fn an_unscoped_handle_counts_into_the_pipeline_scope() {
        let m = Metrics::new();
        m.add_rows(5, 5, 0, 0);
        m.scoped().add_rows(1, 1, 0, 0);
        let text = m.render();
        assert!(text.contains("ferry_rows_read_total{migration=\"\",step=\"pipeline\"} 6\n"));
    }
}
