//! The kill matrix (issue 14): each of the five migrations is run as its real binary and
//! SIGKILLed at points spread over every step — right after the journal records the step as
//! running (`before`), right after the step's action returned but before the journal records
//! it done (`after`: the work is committed, the journal does not know), and at a fraction of
//! the step's duration in a clean run (`at N ms`) — then finished with `--resume` (or undone
//! with `--rollback`). After each kill:
//!
//! - production is never partial: every switched table holds exactly its content before the
//!   run or exactly its content after a clean run (count and an order-independent checksum);
//! - after `--resume`, every production table equals the clean run's (nothing lost, nothing
//!   twice), and the report reconciles (`read = loaded + rejected + filtered`, and the same
//!   totals as the clean run); after `--rollback`, production equals its content before.
//!
//! `before`/`after` use the run layer's test-only hook `FERRY_TEST_PAUSE_AT=STEP[:after]`
//! (the run stops there and prints `FERRY_TEST_PAUSED`), so steps of a few milliseconds are
//! hit exactly; timed points watch the journal (the PostgreSQL ledger
//! `ferry_journal_steps`, or S9's `s9_sales.journal.json`) for the step to be running.
//!
//! Default: one point per phase (kind of step) per migration, run by `scripts/test.sh`.
//! `KILL_MATRIX=full` runs every point (`scripts/kill-matrix.sh` prints the table that
//! RELIABILITY.md holds); `KILL_MATRIX_ONLY=name` restricts it to one migration;
//! `KILL_MATRIX_OUT=FILE` appends one markdown row per point to FILE.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use etl_core::migration::Journal;
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use tokio::io::AsyncBufReadExt;

/// The migrations of the matrix.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mig {
    /// `cites_trade`: a new CITES release replaces the live one (staging, switch).
    Trade,
    /// `cites_arctic`: the Arctic subset, with a test load and a `REINDEX` after the switch.
    Arctic,
    /// `s9_sales`: PostgreSQL to DynamoDB (dynalite).
    S9,
    /// `culturebridge`: the Bubble Data API (its test server) into PostgreSQL.
    CultureBridge,
    /// `observations_partitioning`, batch move.
    Partitioning,
    /// `observations_partitioning --online`.
    PartitioningOnline,
}

impl Mig {
    fn label(self) -> &'static str {
        match self {
            Mig::Trade => "cites_trade",
            Mig::Arctic => "cites_arctic",
            Mig::S9 => "s9_sales",
            Mig::CultureBridge => "culturebridge",
            Mig::Partitioning => "observations_partitioning",
            Mig::PartitioningOnline => "observations_partitioning --online",
        }
    }
    fn bin(self) -> &'static str {
        self.label().split(' ').next().unwrap()
    }
    /// The journal's migration name.
    fn journal_name(self) -> &'static str {
        self.bin()
    }
    /// Tables switched at once: each holds its old or its new content, never a mix.
    fn switched(self) -> Vec<&'static str> {
        match self {
            Mig::Trade | Mig::Arctic => vec!["cites_trade_records"],
            Mig::S9 => S9_TABLES.to_vec(),
            Mig::CultureBridge => {
                use etl_examples::culturebridge::schema::{MIGRATED, table_of};
                MIGRATED.map(table_of).to_vec()
            }
            Mig::Partitioning | Mig::PartitioningOnline => {
                etl_examples::partitioning::schema::TABLES.to_vec()
            }
        }
    }
    /// Tables derived after the switch (checked at the end only): the CITES summary is
    /// rebuilt by the post-switch step `summary`, CultureBridge's id map by `mappings`.
    fn derived(self) -> &'static [&'static str] {
        match self {
            Mig::Trade | Mig::Arctic => &["species_trade_summary"],
            Mig::CultureBridge => &["bubble_id_map"],
            _ => &[],
        }
    }
    /// Every production table: the switched ones, then the derived ones.
    fn production(self) -> Vec<&'static str> {
        let mut v = self.switched();
        v.extend(self.derived());
        v
    }
    /// Columns that differ from database to database (generated ids, run ids, times).
    fn volatile(self, table: &str) -> &'static [&'static str] {
        match (self, table) {
            (Mig::Trade | Mig::Arctic, "cites_trade_records") => &["id", "species_id"],
            (Mig::Trade | Mig::Arctic, _) => &["species_id", "last_updated_at"],
            (Mig::CultureBridge, _) => &["run_id"],
            _ => &[],
        }
    }
    fn is_s9(self) -> bool {
        self == Mig::S9
    }
}

/// One migration's world: a database, directories, a dynalite for S9.
struct Env {
    mig: Mig,
    db: etl_testkit::TestDb,
    dir: tempfile::TempDir,
    dl: Option<etl_sink_dynamodb::dynalite::Dynalite>,
}

const S9_TABLES: [&str; 3] = ["SalesTable-dev", "BuyersTable-dev", "ProducersTable-dev"];

impl Env {
    /// A fresh world in its state before the migration: the source data, and production
    /// as it was before (an earlier CITES release; a legacy S9 item; CultureBridge's empty
    /// schema; the unpartitioned observations).
    async fn new(mig: Mig) -> Env {
        let env = Env {
            mig,
            db: etl_testkit::TestDb::create().await.unwrap(),
            dir: tempfile::tempdir().unwrap(),
            dl: if mig.is_s9() {
                Some(
                    etl_sink_dynamodb::dynalite::Dynalite::start()
                        .await
                        .unwrap(),
                )
            } else {
                None
            },
        };
        let d = env.dir.path();
        match mig {
            Mig::Trade | Mig::Arctic => {
                use etl_examples::cites::generate::{GenOptions, generate, write_species_csv};
                let opts = |seed, files, rows| GenOptions {
                    files,
                    rows_per_file: rows,
                    seed,
                    ..Default::default()
                };
                write_species_csv(&d.join("species.csv")).unwrap();
                generate(&d.join("in"), &opts(1, 2, 300)).unwrap();
                let o = env.output("v1", &[]);
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                let o = env.output("v1_cleanup", &["--cleanup"]);
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                std::fs::remove_dir_all(d.join("in")).unwrap();
                generate(&d.join("in"), &opts(2, 3, 1_500)).unwrap();
            }
            Mig::S9 => {
                let pool = env.db.pool().await.unwrap();
                let opts = etl_examples::s9::generate::GenOptions {
                    sales: 250,
                    seed: 11,
                };
                etl_examples::s9::generate::generate(&pool, opts)
                    .await
                    .unwrap();
                use etl_sink_dynamodb::aws_sdk_dynamodb::types::AttributeValue as A;
                let client = env.dynamo();
                for t in S9_TABLES {
                    etl_sink_dynamodb::admin::ensure_table(
                        &client,
                        &etl_examples::s9::table_spec(t),
                    )
                    .await
                    .unwrap();
                }
                let legacy = std::collections::HashMap::from([
                    ("PK".to_owned(), A::S("LEGACY#1".into())),
                    ("SK".to_owned(), A::S("#METADATA#legacy".into())),
                    ("EntityType".to_owned(), A::S("Legacy".into())),
                ]);
                let put = client
                    .put_item()
                    .table_name("SalesTable-dev")
                    .set_item(Some(legacy));
                put.send().await.unwrap();
            }
            Mig::CultureBridge => {
                let pool = env.db.pool().await.unwrap();
                sqlx::raw_sql(etl_examples::culturebridge::schema::DDL)
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            Mig::Partitioning | Mig::PartitioningOnline => {
                use etl_examples::partitioning::{generate, schema};
                let mut c = env.conn().await;
                schema::create(&mut c).await.unwrap();
                let opts = generate::GenOptions {
                    rows: 6_000,
                    months: 23,
                    ..Default::default()
                };
                generate::generate(&mut c, &opts).await.unwrap();
            }
        }
        env
    }

    fn dynamo(&self) -> etl_sink_dynamodb::aws_sdk_dynamodb::Client {
        self.dl.as_ref().unwrap().client(None)
    }

    async fn conn(&self) -> PgConnection {
        PgConnection::connect(self.db.url()).await.unwrap()
    }

    fn reports(&self, name: &str) -> PathBuf {
        self.dir.path().join("reports").join(name)
    }

    /// The binary's command line (without the program), its report directory `report`.
    fn args(&self, report: &str, extra: &[&str]) -> Vec<String> {
        let d = self.dir.path();
        let p = |x: &Path| x.display().to_string();
        let mut v: Vec<String> = match self.mig {
            Mig::Trade | Mig::Arctic => {
                let mut v = vec![
                    "--input".into(),
                    p(&d.join("in")),
                    "--species-csv".into(),
                    p(&d.join("species.csv")),
                    "--parallel".into(),
                    "1".into(),
                    "--batch-size".into(),
                    "300".into(),
                    // The new release is generated, not a successor of the old one.
                    "--max-dropped-ids".into(),
                    "1000000".into(),
                ];
                if self.mig == Mig::Arctic {
                    // The generator's years run to 2024 at most; a year it has.
                    v.extend(["--test-year".into(), "2020".into()]);
                }
                v
            }
            Mig::S9 => vec![
                "--source-url".into(),
                self.db.url().to_owned(),
                "--dynamodb-endpoint".into(),
                self.dl.as_ref().unwrap().endpoint(),
                "--data-dir".into(),
                p(&d.join("data")),
                "--extract-unit-keys".into(),
                "100".into(),
                "--batch-size".into(),
                "100".into(),
            ],
            Mig::CultureBridge => vec![
                "--users".into(),
                "100".into(),
                "--windows".into(),
                "3".into(),
                "--requests-per-minute".into(),
                "60000".into(),
                "--sample".into(),
                "5".into(),
                "--database-url".into(),
                self.db.url().to_owned(),
                "--export-dir".into(),
                p(&d.join("export")),
            ],
            Mig::Partitioning | Mig::PartitioningOnline => {
                let mut v: Vec<String> = vec![
                    "--batch-size".into(),
                    "300".into(),
                    "--pause-ms".into(),
                    "15".into(),
                ];
                if self.mig == Mig::PartitioningOnline {
                    v.push("--online".into());
                }
                v
            }
        };
        v.extend(["--report-dir".into(), p(&self.reports(report)), "-q".into()]);
        v.extend(extra.iter().map(|s| (*s).to_owned()));
        v
    }

    fn command(&self, report: &str, extra: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(support::example_binary(self.mig.bin()));
        c.args(self.args(report, extra))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("FERRY_TEST_PAUSE_AT")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        if !self.mig.is_s9() {
            c.env("DATABASE_URL", self.db.url());
        }
        c
    }

    /// Runs the binary to its end.
    fn output(&self, report: &str, extra: &[&str]) -> std::process::Output {
        let mut c = std::process::Command::new(support::example_binary(self.mig.bin()));
        c.args(self.args(report, extra))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("FERRY_TEST_PAUSE_AT");
        if !self.mig.is_s9() {
            c.env("DATABASE_URL", self.db.url());
        }
        c.output().unwrap()
    }

    fn report(&self, report: &str) -> Value {
        let p = self.reports(report).join("report.json");
        serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
    }

    /// The state of `step` in the latest run of the journal (`running`, `done`, ...).
    async fn step_state(&self, step: &str) -> Option<String> {
        if self.mig.is_s9() {
            let j = etl_core::migration::FileJournal::new(self.dir.path().join("data"));
            let run = j.latest(self.mig.journal_name()).await.ok()??;
            let s = run.steps.iter().find(|s| s.name == step)?;
            return Some(serde_json::to_value(s.state).ok()?.as_str()?.to_owned());
        }
        let mut c = self.conn().await;
        sqlx::query_scalar::<_, String>(
            "SELECT s.state FROM ferry_journal_steps s JOIN ferry_journal_runs r USING (run_id)
              WHERE r.migration = $1 AND s.step = $2 ORDER BY r.started_at DESC LIMIT 1",
        )
        .bind(self.mig.journal_name())
        .bind(step)
        .fetch_optional(&mut c)
        .await
        .ok()
        .flatten()
    }

    /// Count and checksum of every production table.
    async fn snapshot(&self) -> Snapshot {
        let mut out = Snapshot::new();
        let tables = self.mig.production();
        if self.mig.is_s9() {
            let client = self.dynamo();
            for t in tables {
                out.insert(t.to_owned(), dynamo_state(&client, t).await);
            }
            return out;
        }
        let mut c = self.conn().await;
        for t in tables {
            let excl: Vec<String> = self
                .mig
                .volatile(t)
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
            let q = format!(
                "SELECT count(*), coalesce(sum(hashtextextended((to_jsonb(t) - $1::text[])::text, 0)), 0)::text FROM {t} t"
            );
            let r: Result<(i64, String), _> = sqlx::query_as(sqlx::AssertSqlSafe(q))
                .bind(&excl)
                .fetch_one(&mut c)
                .await;
            let s = match r {
                Ok((rows, sum)) => TableState {
                    rows,
                    sum,
                    items: vec![],
                },
                Err(_) => TableState {
                    rows: 0,
                    sum: "absent".into(),
                    items: vec![],
                },
            };
            out.insert(t.to_owned(), s);
        }
        out
    }
}

/// Count, checksum and (DynamoDB) the sorted item hashes of one table.
#[derive(Clone, Debug, PartialEq)]
struct TableState {
    rows: i64,
    sum: String,
    items: Vec<u64>,
}

type Snapshot = BTreeMap<String, TableState>;

async fn dynamo_state(client: &etl_sink_dynamodb::aws_sdk_dynamodb::Client, t: &str) -> TableState {
    use std::hash::{Hash, Hasher};
    let items = std::sync::Mutex::new(Vec::new());
    let r = etl_sink_dynamodb::admin::scan_items(client, t, None, 2, |page| {
        let mut v = items.lock().unwrap();
        for i in &page {
            let json = etl_sink_dynamodb::mapping::item_to_plain_json(i);
            let mut h = std::collections::hash_map::DefaultHasher::new();
            normalize(&json).to_string().hash(&mut h);
            v.push(h.finish());
        }
    })
    .await;
    if r.is_err() {
        return TableState {
            rows: 0,
            sum: "absent".into(),
            items: vec![],
        };
    }
    let mut items = items.into_inner().unwrap();
    items.sort_unstable();
    let sum = items.iter().fold(0u64, |a, b| a.wrapping_add(*b));
    TableState {
        rows: items.len() as i64,
        sum: sum.to_string(),
        items,
    }
}

/// JSON with object keys sorted (serde_json's map keeps them sorted already) and numbers
/// as text, so equal items hash equally.
fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), normalize(v))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        Value::Number(n) => Value::String(n.to_string()),
        x => x.clone(),
    }
}

/// Where a kill lands.
#[derive(Clone, Debug)]
enum At {
    /// The step is recorded running, its action not started.
    Before,
    /// The step's action returned; the journal does not know yet.
    After,
    /// This long after the journal shows the step running.
    Delay(Duration),
}

/// What follows the kill.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Then {
    Resume,
    Rollback,
}

#[derive(Clone, Debug)]
struct Point {
    step: String,
    kind: String,
    at: At,
    then: Then,
}

impl Point {
    fn at_text(&self) -> String {
        match &self.at {
            At::Before => "before (recorded running)".into(),
            At::After => "after (done, not recorded)".into(),
            At::Delay(d) => format!("running + {} ms", d.as_millis()),
        }
    }
}

/// What a clean run gives: production before and after, the steps with their kinds and
/// durations, the report's totals.
struct Clean {
    before: Snapshot,
    after: Snapshot,
    steps: Vec<(String, String, f64)>,
    totals: Value,
}

async fn clean_run(mig: Mig) -> Clean {
    let env = Env::new(mig).await;
    let before = env.snapshot().await;
    let o = env.output("clean", &[]);
    assert!(
        o.status.success(),
        "{}: the clean run failed: {}",
        mig.label(),
        String::from_utf8_lossy(&o.stderr)
    );
    let after = env.snapshot().await;
    let r = env.report("clean");
    assert_eq!(r["run_state"], "done", "{r}");
    let steps = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["outcome"] == "ran")
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["kind"].as_str().unwrap().to_owned(),
                s["seconds"].as_f64().unwrap_or(0.0),
            )
        })
        .collect();
    assert_ne!(before, after, "{}: the run changed nothing", mig.label());
    // The clean state is reproducible: a second world starts from the same production.
    Clean {
        before,
        after,
        steps,
        totals: r["totals"].clone(),
    }
}

/// The kinds of step the subset hits once each: the phases that change the target.
const SUBSET_KINDS: [&str; 8] = [
    "schema",
    "load",
    "data_move",
    "index",
    "gate",
    "switch",
    "post_switch",
    "export",
];

/// The kill points: full = every step `before` and `after` plus timed points in steps
/// that last long enough, one in three followed by `--rollback`; the subset = one point per
/// kind of step among [`SUBSET_KINDS`] (the first step of each kind; `after` for switches, a timed point for loads
/// and moves when they last long enough, `before` otherwise).
fn points(clean: &Clean, full: bool) -> Vec<Point> {
    let mut out = Vec::new();
    let mut kinds_seen: Vec<&str> = Vec::new();
    for (name, kind, secs) in &clean.steps {
        let p = |at: At| Point {
            step: name.clone(),
            kind: kind.clone(),
            at,
            then: Then::Resume,
        };
        let timed = *secs >= 0.08;
        if full {
            out.push(p(At::Before));
            out.push(p(At::After));
            if timed {
                out.push(p(At::Delay(Duration::from_secs_f64(secs * 0.5))));
            }
        } else if SUBSET_KINDS.contains(&kind.as_str()) && !kinds_seen.contains(&kind.as_str()) {
            kinds_seen.push(kind);
            let at = match kind.as_str() {
                "switch" => At::After,
                "load" | "data_move" | "index" if timed => {
                    At::Delay(Duration::from_secs_f64(secs * 0.5))
                }
                _ => At::Before,
            };
            out.push(p(at));
        }
    }
    for (i, p) in out.iter_mut().enumerate() {
        if i % 3 == 2 {
            p.then = Then::Rollback;
        }
    }
    out
}

/// One row of the result table.
#[derive(Debug)]
struct Outcome {
    point: Point,
    /// What production was at the kill: `old`, `new` or `PARTIAL ...`.
    at_kill: String,
    /// Whether the follow-up (resume / rollback) succeeded, and how.
    then: String,
    /// Whether production is exactly the clean run's (resume) or the old (rollback).
    exact: bool,
    reconciles: bool,
    /// Rows of the expected final state missing (negative: rows too many).
    lost: i64,
    notes: Vec<String>,
}

impl Outcome {
    fn ok(&self, mig: Mig) -> bool {
        let partial_ok = mig.is_s9() && self.at_kill.starts_with("partial");
        (self.at_kill == "old" || self.at_kill == "new" || partial_ok)
            && self.exact
            && self.reconciles
            && self.lost == 0
            && !self.then.contains("FAILED")
    }
    fn row(&self, mig: Mig) -> String {
        format!(
            "| {} | {} ({}) | {} | {} | {} | {} | {} | {} | {} |",
            mig.label(),
            self.point.step,
            self.point.kind,
            self.point.at_text(),
            self.then,
            self.at_kill,
            if self.exact { "yes" } else { "NO" },
            if self.reconciles { "yes" } else { "NO" },
            self.lost,
            if self.ok(mig) { "ok" } else { "FAIL" }
        )
    }
}

/// Classifies production at the kill: `old`, `new`, or which tables are between
/// (`PARTIAL ...`, a failure; for S9 `partial ...` when every item is an old or a new one).
fn classify(mig: Mig, now: &Snapshot, clean: &Clean) -> String {
    let mut mixed = Vec::new();
    let (mut old, mut new, mut foreign_items) = (true, true, false);
    for t in mig.switched() {
        let (n, b, a) = (&now[t], &clean.before[t], &clean.after[t]);
        old &= n == b;
        new &= n == a;
        if n != b && n != a {
            let foreign = n
                .items
                .iter()
                .filter(|h| b.items.binary_search(h).is_err() && a.items.binary_search(h).is_err())
                .count();
            foreign_items |= foreign > 0;
            mixed.push(if mig.is_s9() {
                format!("{t} {} items, {foreign} neither old nor new", n.rows)
            } else {
                format!("{t} {} rows", n.rows)
            });
        }
    }
    match (old, new) {
        (true, _) => "old".into(),
        (_, true) => "new".into(),
        _ if mixed.is_empty() => "PARTIAL: some tables old, some new".into(),
        // DynamoDB has no switch: part of the new items, but nothing else, is accepted.
        _ if mig.is_s9() && !foreign_items => format!(
            "partial (no atomic switch in DynamoDB): {}",
            mixed.join("; ")
        ),
        _ => format!("PARTIAL: {}", mixed.join("; ")),
    }
}

/// Kill `mig`'s run at `point`, follow up, check.
async fn run_point(mig: Mig, clean: &Clean, point: &Point) -> Outcome {
    let env = Env::new(mig).await;
    let mut notes = Vec::new();
    assert_eq!(
        env.snapshot().await,
        clean.before,
        "{}: the world before differs from the clean run's",
        mig.label()
    );
    let mut cmd = env.command("killed", &[]);
    let pause = match point.at {
        At::Before => Some(point.step.clone()),
        At::After => Some(format!("{}:after", point.step)),
        At::Delay(_) => None,
    };
    if let Some(p) = &pause {
        cmd.env("FERRY_TEST_PAUSE_AT", p);
    }
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut tail: Vec<String> = Vec::new();
    if pause.is_some() {
        loop {
            let line = tokio::time::timeout_at(deadline.into(), stderr.next_line()).await;
            match line {
                Ok(Ok(Some(l))) if l.starts_with("FERRY_TEST_PAUSED") => break,
                Ok(Ok(Some(l))) => tail.push(l),
                other => panic!(
                    "{}: the run never paused at {:?} ({other:?}): {}",
                    mig.label(),
                    point,
                    tail.join("\n")
                ),
            }
        }
    } else {
        // Drain stderr so the run never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });
        loop {
            match env.step_state(&point.step).await.as_deref() {
                Some("running") => break,
                // Over between two looks (a loaded machine): killed at once, in a later step.
                Some("done" | "failed") => {
                    notes.push(format!(
                        "{} was over before it was seen running",
                        point.step
                    ));
                    break;
                }
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "{}: {point:?} never running",
                mig.label()
            );
            if child.try_wait().unwrap().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if let At::Delay(d) = point.at {
            tokio::time::sleep(d).await;
        }
    }
    // A run that ended by itself before the kill (a step over sooner than on the clean run):
    // nothing to resume; its own report and production are checked as a resume's would be.
    let ended = child.try_wait().unwrap();
    if let Some(status) = ended {
        notes.push(format!("the run ended ({status}) before the kill"));
    }
    child.start_kill().ok(); // SIGKILL
    child.wait().await.unwrap();
    let at_kill = classify(mig, &env.snapshot().await, clean);
    let (flag, report) = match point.then {
        Then::Resume => ("--resume", "resumed"),
        Then::Rollback => ("--rollback", "rolled_back"),
    };
    let mut then = match point.then {
        Then::Resume => "resume".to_owned(),
        Then::Rollback => "rollback".to_owned(),
    };
    let mut expect = point.then;
    let mut final_report = report;
    let mut o = match ended {
        Some(status) if status.success() && point.then == Then::Resume => {
            then = "none (the run had ended)".into();
            final_report = "killed";
            std::process::Output {
                status,
                stdout: vec![],
                stderr: vec![],
            }
        }
        _ => env.output(report, &[flag]),
    };
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    if point.then == Then::Rollback && !o.status.success() && err.contains("irreversible") {
        // Undo refused up front (a step that cannot be undone is done): resume instead.
        then = "rollback refused (irreversible step) -> resume".into();
        expect = Then::Resume;
        final_report = "resumed";
        o = env.output("resumed", &["--resume"]);
    }
    if !o.status.success() {
        then = format!("{then} FAILED");
        let err = String::from_utf8_lossy(&o.stderr);
        notes.push(err.lines().rev().take(3).collect::<Vec<_>>().join(" / "));
    }
    let now = env.snapshot().await;
    let want = match expect {
        Then::Resume => &clean.after,
        Then::Rollback => &clean.before,
    };
    let tables: Vec<&str> = match expect {
        Then::Resume => mig.production(),
        // A rollback undoes the switch; derived tables the run rebuilt stay as rebuilt.
        Then::Rollback => mig.switched(),
    };
    let mut exact = true;
    let mut lost = 0;
    for t in &tables {
        if now[*t] != want[*t] {
            exact = false;
            notes.push(format!(
                "{t}: {} rows (sum {}), want {} (sum {})",
                now[*t].rows, now[*t].sum, want[*t].rows, want[*t].sum
            ));
        }
        lost += want[*t].rows - now[*t].rows;
    }
    let reconciles = if o.status.success() {
        let r = env.report(final_report);
        let t = &r["totals"];
        let n = |k: &str| t[k].as_u64().unwrap_or(0);
        let balanced = n("read") == n("loaded") + n("rejected") + n("filtered");
        let same = expect == Then::Rollback
            || ["read", "loaded", "rejected", "filtered"]
                .iter()
                .all(|k| t[*k] == clean.totals[*k]);
        if !balanced || !same {
            notes.push(format!("totals {t} vs clean {}", clean.totals));
        }
        let state = if expect == Then::Resume {
            "done"
        } else {
            "rolled_back"
        };
        if r["run_state"] != state {
            notes.push(format!("run_state {}", r["run_state"]));
        }
        balanced && same && r["run_state"] == state
    } else {
        false
    };
    Outcome {
        point: point.clone(),
        at_kill,
        then,
        exact,
        reconciles,
        lost,
        notes,
    }
}

const HEADER: &str = "| migration | step (kind) | kill point | then | production at the kill | final exact | report reconciles | rows lost | result |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |";

/// Runs the matrix (or the subset) of `mig`; fails on any point that is not ok.
async fn matrix(mig: Mig) {
    let full = std::env::var("KILL_MATRIX").is_ok_and(|v| v == "full");
    if let Ok(only) = std::env::var("KILL_MATRIX_ONLY")
        && !only
            .split(',')
            .any(|o| o == mig.label() || o == format!("{mig:?}"))
    {
        return;
    }
    let t0 = Instant::now();
    let clean = clean_run(mig).await;
    let points = points(&clean, full);
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for p in &points {
        let o = run_point(mig, &clean, p).await;
        let row = o.row(mig);
        eprintln!("{row}");
        for n in &o.notes {
            eprintln!("    note: {n}");
        }
        if !o.ok(mig) {
            failed.push(format!("{row}\n    {}", o.notes.join("\n    ")));
        }
        rows.push(row);
    }
    if let Ok(out) = std::env::var("KILL_MATRIX_OUT") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .unwrap();
        for r in &rows {
            writeln!(f, "{r}").unwrap();
        }
    }
    eprintln!(
        "{}: {} kill points in {:.0} s\n{HEADER}\n{}",
        mig.label(),
        points.len(),
        t0.elapsed().as_secs_f64(),
        rows.join("\n")
    );
    assert!(failed.is_empty(), "{}:\n{}", mig.label(), failed.join("\n"));
}

/// One test per migration, so they run in parallel and fail apart.
macro_rules! kill_tests {
    ($($name:ident => $mig:expr),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            matrix($mig).await;
        }
    )*};
}

kill_tests! {
    kills_of_cites_trade => Mig::Trade,
    kills_of_cites_arctic => Mig::Arctic,
    kills_of_s9_sales => Mig::S9,
    kills_of_culturebridge => Mig::CultureBridge,
    kills_of_observations_partitioning_batch => Mig::Partitioning,
    kills_of_observations_partitioning_online => Mig::PartitioningOnline,
}
