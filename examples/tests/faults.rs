//! Injected faults against the example binaries (issue 14): every one ends in 0 rows lost.
//! The run completes exactly, or fails loudly (a non-zero exit code and a message naming
//! what failed) with production untouched, and `--resume` (or a clean rerun) then
//! completes exactly: counts and a content checksum equal to a clean run's.
//!
//! * PostgreSQL (CITES, through `etl_testkit::PgFaultProxy`): the connection cut during
//!   the index builds, during the switch, the switch's `COMMIT` answer lost, and a server
//!   restart while an index is being built.
//! * Bubble (CultureBridge, against the Bubble-compatible test server of this process):
//!   429 / 5xx / truncated bodies / malformed JSON at 20 % of the requests (the run
//!   completes exactly), and a field renamed in the middle of the export (the run fails
//!   naming the type and the field, nothing is written to the target; the next run
//!   against the fixed schema completes exactly).
//! * Disk full (`RLIMIT_FSIZE` on the child, `SIGXFSZ` ignored so `write` fails with
//!   `EFBIG`) while CultureBridge writes its Parquet export or its rollback script, and
//!   while S9 writes its Parquet artifacts: a loud failure naming the file, the target
//!   untouched (but see the rollback-script test), then a run without the limit completes
//!   exactly.
//!
//! The faults of the other layers are tested where they live: DynamoDB throttling,
//! `UnprocessedItems`, 5xx and slow calls in `crates/sink-dynamodb/tests/it`, Bubble
//! retries and schema drift in `crates/source-bubble/tests/bubble.rs`, a lost COMMIT
//! answer and a restart mid-load in `tests/cites.rs`.

mod support;
use support::{example_binary, table_items};

use std::path::Path;
use std::process::Output;

use etl_examples::cites::generate::{GenOptions, generate, write_species_csv};
use etl_examples::culturebridge::fixtures::{self, Expected};
use etl_examples::culturebridge::schema::{MIGRATED, table_of};
use etl_source_bubble::test_server::{Drift, Faults, ServerConfig, TestServer};
use etl_testkit::{PgFault, PgFaultProxy};
use sqlx::{Connection, PgConnection};

/// Rows and an order-independent content hash of the live CITES table. The species ids
/// are random per database, so each row is hashed with its species' name in their place
/// (`hashtextextended(t::text, 0)` otherwise).
const CITES_CHECKSUM: &str = "SELECT count(*)::text || ' rows, hash ' || coalesce(sum(hashtextextended(
        ((to_jsonb(t) - 'species_id') || jsonb_build_object('species', s.scientific_name))::text, 0)), 0)::text
    FROM cites_trade_records t JOIN species s ON s.id = t.species_id";

async fn query_text(url: &str, sql: &str) -> String {
    let mut c = PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut c)
        .await
        .unwrap()
}

async fn cites_checksum(url: &str) -> String {
    query_text(url, CITES_CHECKSUM).await
}

/// Tables of the CITES migration besides the live one: a switch leaves `_old`, a run not
/// switched `_staging`.
async fn cites_tables(url: &str) -> String {
    query_text(
        url,
        "SELECT coalesce(string_agg(relname, ',' ORDER BY relname), '') FROM pg_class
          WHERE relkind IN ('r', 'p') AND relname LIKE 'cites_trade_records%'",
    )
    .await
}

/// Two releases of CITES data (different rows) and the species file.
struct CitesData {
    dir: tempfile::TempDir,
}

impl CitesData {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for (name, seed) in [("r1", 1), ("r2", 2)] {
            let opts = GenOptions {
                files: 2,
                rows_per_file: 2_500,
                seed,
                ..Default::default()
            };
            generate(&dir.path().join(name), &opts).unwrap();
        }
        write_species_csv(&dir.path().join("species.csv")).unwrap();
        CitesData { dir }
    }

    /// The `cites_trade` binary on release `release` against `url`, with `extra` arguments.
    async fn run(&self, url: &str, release: &str, extra: &[&str]) -> Output {
        let d = self.dir.path();
        let mut args: Vec<String> = vec![
            "--input".into(),
            d.join(release).display().to_string(),
            "--species-csv".into(),
            d.join("species.csv").display().to_string(),
            "--report-dir".into(),
            d.join("reports").display().to_string(),
            "--parallel".into(),
            "2".into(),
            "--no-backup".into(),
            "-q".into(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        tokio::process::Command::new(example_binary("cites_trade"))
            .args(&args)
            .env("DATABASE_URL", url)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .await
            .unwrap()
    }

    /// Run to success (exit 0), or panic with the output.
    async fn ok(&self, url: &str, release: &str, extra: &[&str]) {
        let o = self.run(url, release, extra).await;
        assert!(
            o.status.success(),
            "{release} {extra:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// The references ([`CitesData::reference`]) and a database whose production is
    /// release `r1` (loaded and cleaned up): `(database, r1, r2)`.
    async fn production(&self) -> (etl_testkit::TestDb, String, String) {
        let (r1, r2) = self.reference().await;
        let db = etl_testkit::TestDb::create().await.unwrap();
        self.ok(db.url(), "r1", &[]).await;
        self.ok(db.url(), "r1", &["--cleanup"]).await;
        assert_eq!(cites_checksum(db.url()).await, r1);
        (db, r1, r2)
    }

    /// The checksum of each release loaded by a clean run into a database of its own.
    async fn reference(&self) -> (String, String) {
        let db = etl_testkit::TestDb::create().await.unwrap();
        self.ok(db.url(), "r1", &[]).await;
        let r1 = cites_checksum(db.url()).await;
        self.ok(db.url(), "r1", &["--cleanup"]).await;
        self.ok(db.url(), "r2", &[]).await;
        let r2 = cites_checksum(db.url()).await;
        assert_ne!(r1, r2);
        (r1, r2)
    }
}

/// What a run printed, both streams.
fn stderr(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The connection cut while the staging table's indexes are built, then while the switch
/// renames the tables: each time the run fails loudly (exit 2, the step named) with
/// production still the previous release and nothing switched, and `--resume` finishes
/// with exactly the content of a clean run. Then the switch's `COMMIT` reaches the server
/// but its answer is lost: the run fails, production is fully switched (never half), and
/// `--resume` sees the switch committed and finishes exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cites_cut_during_indexes_and_switch_then_resume_exactly() {
    let data = CitesData::new();
    let (db, r1, r2) = data.production().await;
    let url = db.url();

    // (release loaded, fault, the step that fails, production after the failure, after --resume)
    let cases = [
        (
            "r2",
            PgFault::CutOnQuery {
                pattern: "_IDX_STG",
                forward: false,
            },
            "indexes",
            &r1,
            &r2,
        ),
        (
            "r1",
            PgFault::CutOnQuery {
                pattern: "RENAME TO",
                forward: false,
            },
            "switch",
            &r2,
            &r1,
        ),
        (
            "r2",
            PgFault::CutOnQuery {
                pattern: "RENAME TO",
                forward: true,
            },
            "switch",
            &r1,
            &r2,
        ),
        (
            "r1",
            PgFault::LoseCommitAfter {
                pattern: "RENAME TO",
            },
            "switch",
            &r1,
            &r1,
        ),
    ];
    for (release, fault, step, after_failure, after_resume) in cases {
        let proxy = PgFaultProxy::in_front_of(url, fault).await.unwrap();
        let o = data.run(&proxy.url_for(url), release, &[]).await;
        let err = stderr(&o);
        assert_eq!(proxy.fired(), 1, "{fault:?} fired: {err}");
        assert!(!o.status.success(), "{fault:?} fails loudly: {err}");
        assert!(
            err.contains(&format!("step `{step}` failed")),
            "{fault:?}: {err}"
        );
        assert_eq!(
            &cites_checksum(url).await,
            after_failure,
            "{fault:?}: production after the failure"
        );
        let tables = cites_tables(url).await;
        if after_failure == after_resume {
            assert!(
                tables.contains("cites_trade_records_old") && !tables.contains("staging"),
                "{fault:?}: fully switched: {tables}"
            );
        } else {
            assert!(
                !tables.contains("_old") && tables.contains("staging"),
                "{fault:?}: not switched: {tables}"
            );
        }
        drop(proxy);
        data.ok(url, release, &["--resume"]).await;
        assert_eq!(
            &cites_checksum(url).await,
            after_resume,
            "{fault:?}: after --resume"
        );
        data.ok(url, release, &["--cleanup"]).await;
    }
}

/// The PostgreSQL server restarts while an index of the staging table is being built (the
/// statement is held by the proxy, the server restarted, the held connection closed): the
/// run fails loudly, production is the previous release, and `--resume` (a new run lock
/// session, the journal read back from the restarted server) finishes exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cites_server_restart_during_index_builds_then_resume_exactly() {
    let data = CitesData::new();
    let (r1, r2) = data.reference().await;
    let dir = tempfile::tempdir().unwrap();
    // A server of its own: restarting the shared one would cut other tests.
    let pg = etl_testkit::TempPostgres::start(dir.path().join("pg"))
        .await
        .unwrap();
    let url = pg.url().to_owned();
    data.ok(&url, "r1", &[]).await;
    data.ok(&url, "r1", &["--cleanup"]).await;
    let proxy = PgFaultProxy::in_front_of(
        &url,
        PgFault::StallOnQuery {
            pattern: "_IDX_STG",
        },
    )
    .await
    .unwrap();
    let run = {
        let (data, via) = (&data, proxy.url_for(&url));
        async move { data.run(&via, "r2", &[]).await }
    };
    let restart = async {
        let t0 = std::time::Instant::now();
        while proxy.fired() == 0 {
            assert!(t0.elapsed().as_secs() < 120, "no index build was reached");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        pg.restart().await.unwrap();
    };
    let (o, ()) = tokio::join!(run, restart);
    let err = stderr(&o);
    assert!(!o.status.success(), "the run fails: {err}");
    assert!(err.contains("indexes"), "{err}");
    assert_eq!(cites_checksum(&url).await, r1, "production untouched");
    drop(proxy);
    data.ok(&url, "r2", &["--resume"]).await;
    assert_eq!(cites_checksum(&url).await, r2, "exact after --resume");
}

/// The load's connection cut in the middle of a `COPY`: the unit's transaction rolls
/// back, the pipeline retries the unit on a new connection, and the run completes with
/// exactly the content of a clean run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cites_cut_mid_copy_is_retried_to_exact_content() {
    let data = CitesData::new();
    let (db, _, r2) = data.production().await;
    let url = db.url();
    let proxy = PgFaultProxy::in_front_of(url, PgFault::CutMidCopy { after: 50_000 })
        .await
        .unwrap();
    data.ok(&proxy.url_for(url), "r2", &[]).await;
    assert_eq!(proxy.fired(), 1, "the COPY was cut");
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(data.dir.path().join("reports/report.json")).unwrap(),
    )
    .unwrap();
    let retries = support::unit_retries(&report);
    assert_eq!(retries, 1, "the cut unit was retried: {}", report["units"]);
    assert_eq!(cites_checksum(url).await, r2, "exact");
}

/// Users of the CultureBridge fixtures (bookings 3x, and the other types).
const CB_USERS: usize = 250;

/// The Bubble-compatible server on the CultureBridge fixtures, and what they must give.
async fn cb_server(config: ServerConfig) -> (TestServer, Expected) {
    let (fx, exp) = fixtures::generate(fixtures::Sizes {
        users: CB_USERS,
        ..Default::default()
    });
    (TestServer::start(fx, config).await.unwrap(), exp)
}

/// A database with the CultureBridge target tables.
async fn cb_db() -> etl_testkit::TestDb {
    let db = etl_testkit::TestDb::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    sqlx::raw_sql(etl_examples::culturebridge::schema::DDL)
        .execute(&pool)
        .await
        .unwrap();
    db
}

/// The `culturebridge` command reading `server`, writing into `url`, files under `dir`.
fn culturebridge(
    server: &TestServer,
    url: &str,
    dir: &Path,
    extra: &[&str],
) -> std::process::Command {
    let mut cmd = std::process::Command::new(example_binary("culturebridge"));
    cmd.args([
        "--users",
        &CB_USERS.to_string(),
        "--windows",
        "3",
        "--requests-per-minute",
        "60000",
        "--sample",
        "5",
    ])
    .arg("--export-dir")
    .arg(dir.join("export"))
    .arg("--report-dir")
    .arg(dir.join("reports"))
    .args(extra)
    .env("BUBBLE_API_URL", server.base_url())
    .env("BUBBLE_API_KEY", server.token())
    .env("DATABASE_URL", url)
    .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

async fn output(cmd: std::process::Command) -> Output {
    tokio::process::Command::from(cmd).output().await.unwrap()
}

/// Rows and an MD5 of the rows of every migrated table, in a stable order.
async fn cb_checksums(url: &str) -> Vec<String> {
    let mut c = PgConnection::connect(url).await.unwrap();
    let mut out = Vec::new();
    for t in MIGRATED.iter().map(|t| table_of(t)) {
        let q = format!(
            "SELECT '{t} ' || count(*) || ' ' || md5(coalesce(string_agg(to_jsonb(t)::text, '|' ORDER BY to_jsonb(t)::text), '')) FROM {t} t"
        );
        out.push(
            sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(q))
                .fetch_one(&mut c)
                .await
                .unwrap(),
        );
    }
    out
}

/// Rows of each migrated table: what the fixtures say must be loaded.
fn cb_expected_rows(exp: &Expected, sums: &[String]) {
    for (t, line) in MIGRATED.iter().zip(sums) {
        let n: u64 = line.split(' ').nth(1).unwrap().parse().unwrap();
        assert_eq!(n, exp.loaded[*t], "{line}");
    }
}

/// A clean CultureBridge run's checksums (its own database and directory).
async fn cb_reference() -> Vec<String> {
    cb_reference_files().await.0
}

/// A clean CultureBridge run's checksums, the size of its largest export file and of its
/// rollback script.
async fn cb_reference_files() -> (Vec<String>, u64, u64) {
    let (server, exp) = cb_server(ServerConfig::default()).await;
    let db = cb_db().await;
    let dir = tempfile::tempdir().unwrap();
    let o = output(culturebridge(&server, db.url(), dir.path(), &[])).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let sums = cb_checksums(db.url()).await;
    cb_expected_rows(&exp, &sums);
    let largest = |sub: &str, prefix: &str| {
        std::fs::read_dir(dir.path().join(sub))
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
            .map(|e| e.metadata().unwrap().len())
            .max()
            .unwrap_or(0)
    };
    (
        sums,
        largest("export", ""),
        largest("reports", "rollback_migration_"),
    )
}

/// 429, 500, 502, 503, bodies cut short and bodies that are not JSON on 20 % of the Data
/// API's answers: the CultureBridge run retries them and completes with exactly the rows
/// and content of a run without faults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn culturebridge_with_bubble_faults_on_a_fifth_of_the_requests_is_exact() {
    let reference = cb_reference().await;
    let faults = Faults::transient(0.2);
    let (server, _) = cb_server(ServerConfig {
        faults,
        ..ServerConfig::default()
    })
    .await;
    let db = cb_db().await;
    let dir = tempfile::tempdir().unwrap();
    let o = output(culturebridge(&server, db.url(), dir.path(), &[])).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        server.injected() >= 10,
        "faults were injected: {}",
        server.injected()
    );
    assert_eq!(cb_checksums(db.url()).await, reference);
}

/// A field of a type renamed in the app while the run exports (`post.title` sent as
/// `headline` by the time `post` is read): the run fails loudly naming the type, the field
/// and the new name, before anything is written to the target (every table as it was);
/// once the app is fixed, `--resume` reads only what was not exported and completes
/// exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn culturebridge_a_renamed_bubble_field_fails_naming_it_and_resume_is_exact() {
    let (drifted, _) = cb_server(ServerConfig::default()).await;
    let rename = Drift::Rename {
        from: "title".into(),
        to: "headline".into(),
    };
    drifted.drift_after(0, "post", rename);
    cb_drift_fails_then_resume_is_exact(
        &drifted,
        &[
            "Bubble type `post`: schema drift on the declared field `title` (key `title`)",
            "its fields not declared: `headline`",
        ],
    )
    .await;
}

/// CultureBridge against `drifted` fails with an error holding every one of `want`,
/// writes nothing to the target, and `--resume` against the fixed app completes with
/// exactly a clean run's content.
async fn cb_drift_fails_then_resume_is_exact(drifted: &TestServer, want: &[&str]) {
    let reference = cb_reference().await;
    let db = cb_db().await;
    let before = cb_checksums(db.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let o = output(culturebridge(drifted, db.url(), dir.path(), &[])).await;
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(want.iter().all(|w| err.contains(w)), "{want:?}: {err}");
    assert_eq!(cb_checksums(db.url()).await, before, "nothing written");
    let (fixed, _) = cb_server(ServerConfig::default()).await;
    let o = output(culturebridge(&fixed, db.url(), dir.path(), &["--resume"])).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(cb_checksums(db.url()).await, reference);
}

/// The disk fills while CultureBridge writes its export (every file limited to 16 KiB by
/// `RLIMIT_FSIZE`): the run fails loudly naming the file it could not write, the target
/// is untouched, and a run without the limit completes exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn culturebridge_disk_full_while_exporting_fails_naming_the_file_then_reruns_exactly() {
    let reference = cb_reference().await;
    let (server, _) = cb_server(ServerConfig::default()).await;
    let db = cb_db().await;
    let before = cb_checksums(db.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = culturebridge(&server, db.url(), dir.path(), &[]);
    etl_testkit::limit_file_size(&mut cmd, 16 * 1024);
    let o = output(cmd).await;
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("File too large"), "{err}");
    assert!(
        err.contains(&dir.path().join("export").display().to_string()),
        "names the file: {err}"
    );
    assert_eq!(cb_checksums(db.url()).await, before, "nothing written");
    let o = output(culturebridge(&server, db.url(), dir.path(), &["--resume"])).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(cb_checksums(db.url()).await, reference);
}

/// The disk fills when CultureBridge writes its rollback script at the switch (the limit
/// lies between its largest export file and that script, measured on a clean run): the
/// run fails loudly naming the script, production is untouched (the script is written
/// before the switch commits, and a failed write rolls the switch back), and `--resume`
/// completes with exactly a clean run's content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn culturebridge_disk_full_at_the_rollback_script_fails_naming_it_and_resume_is_exact() {
    let (reference, export, script) = cb_reference_files().await;
    assert!(
        script > export + 4096,
        "the rollback script ({script} B) is no longer larger than every export file ({export} B): choose another file to fill the disk at"
    );
    let (server, _) = cb_server(ServerConfig::default()).await;
    let db = cb_db().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = culturebridge(&server, db.url(), dir.path(), &[]);
    etl_testkit::limit_file_size(&mut cmd, (export + script) / 2);
    let o = output(cmd).await;
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("step `switch` failed: cannot write the rollback script (nothing committed)")
            && err.contains("/reports/rollback_migration_")
            && err.contains("File too large"),
        "{err}"
    );
    for line in cb_checksums(db.url()).await {
        assert_eq!(
            line.split(' ').nth(1),
            Some("0"),
            "production untouched: {line}"
        );
    }
    let o = output(culturebridge(&server, db.url(), dir.path(), &["--resume"])).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(cb_checksums(db.url()).await, reference);
}

/// The disk fills while S9 writes its Parquet artifacts (every file limited to 32 KiB):
/// the run fails loudly naming the artifact, no DynamoDB table was written, and a rerun
/// without the limit (`--resume`) writes exactly the items of a clean run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_disk_full_while_writing_artifacts_fails_naming_the_file_then_resumes_exactly() {
    use etl_sink_dynamodb::dynalite::Dynalite;
    const TABLES: [&str; 3] = ["SalesTable-dev", "BuyersTable-dev", "ProducersTable-dev"];
    let db = etl_testkit::TestDb::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    let opts = etl_examples::s9::generate::GenOptions {
        sales: 600,
        seed: 14,
    };
    etl_examples::s9::generate::generate(&pool, opts)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s9 = |endpoint: &str, name: &str, extra: &[&str]| {
        let mut cmd = std::process::Command::new(example_binary("s9_sales"));
        cmd.args(["--source-url", db.url(), "--dynamodb-endpoint", endpoint])
            .arg("--data-dir")
            .arg(dir.path().join(name).join("data"))
            .arg("--report-dir")
            .arg(dir.path().join(name).join("reports"))
            .args(extra)
            .env("AWS_EC2_METADATA_DISABLED", "true");
        cmd
    };
    // What a clean run writes, into a dynalite of its own.
    let clean = Dynalite::start().await.unwrap();
    let o = output(s9(&clean.endpoint(), "clean", &[])).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let mut want = Vec::new();
    for t in TABLES {
        want.push(table_items(&clean.client(None), t).await);
    }
    assert!(want.iter().all(|w| !w.is_empty()));
    drop(clean);

    let dl = Dynalite::start().await.unwrap();
    let mut cmd = s9(&dl.endpoint(), "full", &[]);
    etl_testkit::limit_file_size(&mut cmd, 32 * 1024);
    let o = output(cmd).await;
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("File too large"), "{err}");
    let data = dir.path().join("full").join("data");
    assert!(
        err.contains(&data.display().to_string()),
        "names the file: {err}"
    );
    let client = dl.client(None);
    for t in TABLES {
        let n = etl_sink_dynamodb::admin::count_items(&client, t, None, 1)
            .await
            .unwrap_or(0);
        assert_eq!(n, 0, "{t} untouched");
    }
    let o = output(s9(&dl.endpoint(), "full", &["--resume"])).await;
    assert!(o.status.success(), "{}", stderr(&o));
    for (t, w) in TABLES.iter().zip(&want) {
        assert_eq!(&table_items(&client, t).await, w, "{t}");
    }
}

/// A field renamed while its type is being paged (`booking.booking_status` sent as
/// `status` from the type's sixth request on: after the two edge requests of its windows
/// and some pages): the check of each page stops the export before the renamed pages are
/// decoded, naming the type and the field; nothing is written to the target, and
/// `--resume` against the fixed app completes exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn culturebridge_a_field_renamed_while_paging_its_type_fails_before_a_null_is_written() {
    let (drifted, _) = cb_server(ServerConfig::default()).await;
    let rename = Drift::Rename {
        from: "booking_status".into(),
        to: "status".into(),
    };
    drifted.drift_after_type_requests(6, "booking", rename);
    cb_drift_fails_then_resume_is_exact(
        &drifted,
        &[
            "step `export_booking` failed",
            "Bubble type `booking`: schema drift on the declared field `booking_status`",
            "its fields not declared: `status`",
        ],
    )
    .await;
}
