//! The S9 migration against a real PostgreSQL (etl-testkit) and a real dynalite.

mod support;
use support::table_items;

use std::path::Path;

use clap::Parser;
use etl_examples::s9::{Args, generate, run};
use etl_sink_dynamodb::admin::count_items;
use etl_sink_dynamodb::dynalite::Dynalite;
use etl_sink_dynamodb::mapping::item_to_plain_json;
use etl_testkit::TestDb;
use serde_json::Value;

fn args(extra: &[&str]) -> Args {
    let mut v = vec!["s9_sales"];
    v.extend_from_slice(extra);
    Args::try_parse_from(v).unwrap()
}

/// What the latest invocation did with `step` (`ran`, `skipped`, ...).
fn outcome(report: &etl_core::RunReport, step: &str) -> String {
    let s = report.steps.iter().find(|s| s.name == step);
    s.unwrap_or_else(|| panic!("no step {step}"))
        .outcome
        .clone()
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// A source database with generated S9 data, a dynalite, and data and report directories.
struct Fixture {
    db: TestDb,
    generated: generate::GenCounts,
    dl: Dynalite,
    ep: String,
    d: std::path::PathBuf,
    r: std::path::PathBuf,
    dir: tempfile::TempDir,
}

impl Fixture {
    async fn new(sales: u32, seed: u64) -> Self {
        let db = TestDb::create().await.unwrap();
        let pool = db.pool().await.unwrap();
        let opts = generate::GenOptions { sales, seed };
        let generated = generate::generate(&pool, opts).await.unwrap();
        let dl = Dynalite::start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        Fixture {
            db,
            generated,
            ep: dl.endpoint(),
            dl,
            d: dir.path().join("data"),
            r: dir.path().join("reports"),
            dir,
        }
    }

    /// The source, the endpoint and the directories.
    fn common(&self) -> [&str; 8] {
        let (d, r) = (self.d.to_str().unwrap(), self.r.to_str().unwrap());
        let (db, ep) = (self.db.url(), self.ep.as_str());
        [
            "--source-url",
            db,
            "--dynamodb-endpoint",
            ep,
            "--data-dir",
            d,
            "--report-dir",
            r,
        ]
    }

    /// `extra` and [`Fixture::common`].
    fn args(&self, extra: &[&str]) -> Args {
        let mut a = extra.to_vec();
        a.extend_from_slice(&self.common());
        args(&a)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_transforms_into_the_golden_items() {
    let db = TestDb::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(generate::SCHEMA_SQL))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(generate::SAMPLE_SQL))
        .execute(&pool)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let r = dir.path().join("reports");
    let (d, r) = (d.to_str().unwrap(), r.to_str().unwrap());
    for phase in ["extract", "transform"] {
        let o = run(args(&[
            "--phase",
            phase,
            "--source-url",
            db.url(),
            "--data-dir",
            d,
            "--report-dir",
            r,
        ]))
        .await
        .unwrap();
        assert!(o.ok, "{phase}: {:?}", o.report.error);
    }
    let golden: Value =
        serde_json::from_str(include_str!("../data/s9/dynamodb-target-sample-data.json")).unwrap();
    for (file, group, pk, sk) in [
        ("sales", "sales", "SALE#SALE001", "#METADATA#sale"),
        ("sale_lines", "saleLines", "SALE#SALE001", "LINE#001"),
        ("buyers", "buyers", "BUYER#BUYER001", "#METADATA#buyer"),
        (
            "producers",
            "producers",
            "PRODUCER#PRODUCER001",
            "#METADATA#producer",
        ),
    ] {
        let items = items_of(
            &Path::new(d)
                .join("transformed")
                .join(format!("{file}.parquet")),
        )
        .unwrap();
        let ours = items
            .iter()
            .map(item_to_plain_json)
            .find(|i| i["PK"] == pk && i["SK"] == sk)
            .unwrap_or_else(|| panic!("no item {pk} {sk}"));
        let want = &golden[group][0];
        assert_eq!(
            normalize(&ours),
            normalize(want),
            "{file}: ours\n{ours:#}\nwant\n{want:#}"
        );
    }
    // The whole sample: 3 buyers, 2 producers, 6 sales, 7 lines, nothing rejected.
    let report = read_json(&Path::new(r).join("report.json"));
    assert_eq!(report["totals"]["rejected"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phase_by_phase_then_resume_verify_and_restore() {
    let f = Fixture::new(4_000, 7).await;
    let (generated, dl, d, r) = (&f.generated, &f.dl, &f.d, &f.r);
    let common = f.common();
    for phase in ["extract", "transform", "validate"] {
        let mut a = vec!["--phase", phase];
        a.extend_from_slice(&common);
        let o = run(args(&a)).await.unwrap();
        assert!(o.ok, "{phase}: {:?}", o.report.error);
    }
    for f in [
        "buyers",
        "producers",
        "sales",
        "sale_lines",
        "certifications",
    ] {
        assert!(
            d.join("extracted").join(format!("{f}.parquet")).exists(),
            "{f}"
        );
    }
    let validation = read_json(&r.join("validation_report.json"));
    assert_eq!(validation["passed"], false, "the generator plants bad rows");
    assert!(
        validation["checks"]["foreign_keys"]["failed"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert!(validation["checks"]["totals"]["failed"].as_u64().unwrap() >= 1);
    assert!(
        validation["checks"]["duplicates"]["failed"]
            .as_u64()
            .unwrap()
            >= 1
    );

    // A dry run writes nothing.
    let mut a = vec!["--phase", "load", "--dry-run"];
    a.extend_from_slice(&common);
    assert!(run(args(&a)).await.unwrap().ok);
    let client = dl.client(None);
    assert!(
        !etl_sink_dynamodb::admin::table_exists(&client, "SalesTable-dev")
            .await
            .unwrap()
    );

    let mut a = vec!["--phase", "load"];
    a.extend_from_slice(&common);
    let o = run(args(&a)).await.unwrap();
    assert!(o.ok, "{:?}", o.report.error);
    let sales_items = count_items(&client, "SalesTable-dev", Some(("EntityType", "Sale")), 2)
        .await
        .unwrap();
    assert!(
        sales_items > 2_000 && sales_items < generated.sales,
        "{sales_items}"
    );

    // Resume: every load unit was recorded, nothing is rewritten.
    let mut a = vec!["--phase", "load", "--resume"];
    a.extend_from_slice(&common);
    let o = run(args(&a)).await.unwrap();
    assert!(o.ok);
    let load = read_json(&r.join("load_report.json"));
    for e in ["sales", "sale_lines"] {
        assert_eq!(
            load["entities"][e]["units_resumed"],
            load["entities"][e]["units"]
        );
    }
    assert!(
        load["entities"]["sale_lines"]["units"].as_u64().unwrap() >= 2,
        "the lines span several row groups (load units)"
    );

    let mut a = vec!["--phase", "verify"];
    a.extend_from_slice(&common);
    let o = run(args(&a)).await.unwrap();
    assert!(o.ok, "{:?}", o.report.error);
    let counts = read_json(&r.join("count_comparison.json"));
    for e in ["buyers", "producers", "sales", "sale_lines"] {
        assert_eq!(counts[e]["match"], true, "{e}: {}", counts[e]);
    }
    assert_eq!(counts["sales"]["source"], generated.sales);
    let integrity = read_json(&r.join("integrity_report.json"));
    assert_eq!(integrity["sample_comparison"]["sales"]["mismatched"], 0);
    let log = std::fs::read_to_string(r.join("migration_errors.log")).unwrap();
    assert!(
        log.contains("PERDIDO"),
        "unknown codes are logged with their reason"
    );

    // Restore the pre-load backup of the sales table: it was empty.
    let backup = std::fs::read_dir(d.join("backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("SalesTable-dev-")
        })
        .unwrap();
    let backup = backup.to_str().unwrap().to_owned();
    let mut a = vec!["--restore", &backup];
    a.extend_from_slice(&common);
    assert!(run(args(&a)).await.unwrap().ok);
    assert_eq!(
        count_items(&client, "SalesTable-dev", None, 2)
            .await
            .unwrap(),
        0
    );
}

#[test]
fn the_seed_config_shape_loads_with_env_substitution() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(
        &path,
        r#"{
          "source": {"type": "postgresql", "host": "s9-database.internal", "port": 5432,
                     "database": "s9_production", "username": "migration_user",
                     "password": "${S9_TEST_DB_PASSWORD}", "ssl": true},
          "target": {"region": "us-east-1", "salesTable": "SalesTable-dev",
                     "buyersTable": "BuyersTable-dev", "producersTable": "ProducersTable-dev"},
          "migration": {"batchSize": 25, "maxRetries": 3, "retryDelay": 5,
                        "exponentialBackoff": true, "continueOnError": false, "backupBeforeLoad": true}
        }"#,
    )
    .unwrap();
    // SAFETY: no other test reads this variable.
    unsafe { std::env::set_var("S9_TEST_DB_PASSWORD", "s3cr3t") };
    let c: etl_examples::s9::Config = etl_core::load_config(&path).unwrap();
    let src = c.source.unwrap();
    assert_eq!(src.password.as_ref().unwrap().expose(), "s3cr3t");
    assert!(
        !format!("{src:?}").contains("s3cr3t"),
        "the password never reaches logs"
    );
    assert_eq!(c.migration.max_retries, 3);
    assert!(!c.migration.continue_on_error);
    assert_eq!(c.target.sales_table, "SalesTable-dev");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_extract_of_one_entity_binds_its_filter() {
    let db = TestDb::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    generate::generate(
        &pool,
        generate::GenOptions {
            sales: 300,
            seed: 3,
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let r = dir.path().join("reports");
    let o = run(args(&[
        "--phase",
        "extract",
        "--entity",
        "sales",
        "--filter",
        "data_venda >= '2025-01-01'",
        "--source-url",
        db.url(),
        "--data-dir",
        d.to_str().unwrap(),
        "--report-dir",
        r.to_str().unwrap(),
    ]))
    .await
    .unwrap();
    assert!(o.ok, "{:?}", o.report.error);
    let (want_sales, want_lines): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM vendas WHERE data_venda >= '2025-01-01'), \
                (SELECT count(*) FROM linhas_venda l JOIN vendas v USING (id_venda) WHERE v.data_venda >= '2025-01-01')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let sales = etl_examples::s9::pq::file_rows(&d.join("extracted/sales.parquet")).unwrap();
    let lines = etl_examples::s9::pq::file_rows(&d.join("extracted/sale_lines.parquet")).unwrap();
    assert_eq!((sales as i64, lines as i64), (want_sales, want_lines));
    assert!(want_sales > 0 && want_sales < 306);
    assert!(
        !d.join("extracted/buyers.parquet").exists(),
        "--entity sales extracts sales only"
    );
}

/// Every key of column `key` in a Parquet artifact, counted: (rows, distinct keys).
fn keys_in(path: &Path, key: &str) -> (usize, std::collections::HashSet<i64>) {
    use arrow_array::cast::AsArray;
    let mut rows = 0;
    let mut set = std::collections::HashSet::new();
    for b in etl_examples::s9::pq::read_all(path).unwrap() {
        rows += b.num_rows();
        let c = b.column_by_name(key).unwrap();
        match c.data_type() {
            arrow_schema::DataType::Int32 => set.extend(
                c.as_primitive::<arrow_array::types::Int32Type>()
                    .values()
                    .iter()
                    .map(|v| i64::from(*v)),
            ),
            _ => set.extend(
                c.as_primitive::<arrow_array::types::Int64Type>()
                    .values()
                    .iter(),
            ),
        }
    }
    (rows, set)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extract_killed_mid_entity_resumes_at_its_key_range() {
    let f = Fixture::new(4_000, 5).await;
    kill_mid_extract_then_resume(
        &f,
        &["--phase", "extract"],
        &["--phase", "extract", "--resume"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_run_killed_mid_extract_is_finished_by_resume() {
    let f = Fixture::new(4_000, 5).await;
    let o = kill_mid_extract_then_resume(&f, &["--full"], &["--resume"]).await;
    // The same run, continued by the run layer: the extract steps done before the kill are
    // skipped, the killed one resumes at its key range, the rest runs.
    let outcome = |step: &str| outcome(&o.report, step);
    assert_eq!(outcome("extract_buyers"), "skipped");
    for s in [
        "extract_sales",
        "transform",
        "validate",
        "backup",
        "load",
        "verify",
    ] {
        assert_eq!(outcome(s), "ran", "{s}");
    }
    assert_eq!(o.report.run_state.as_deref(), Some("done"));
    let counts = read_json(&f.r.join("count_comparison.json"));
    assert_eq!(counts["sales"]["match"], true, "{counts}");
}

/// Start the binary with `start`, SIGKILL it once a few key ranges of the sales are
/// written, then run `resume` in-process: every range on disk is resumed, none is read
/// twice, none is missing.
async fn kill_mid_extract_then_resume(
    f: &Fixture,
    start: &[&str],
    resume: &[&str],
) -> etl_examples::s9::Outcome {
    let pool = f.db.pool().await.unwrap();
    let d = &f.d;
    let mut common = vec!["--extract-unit-keys", "50", "--batch-size", "25"];
    common.extend_from_slice(&f.common());
    // Kill (SIGKILL) once a few key ranges of the sales are written.
    let parts = d.join("extracted/sales.parts");
    let written = |p: &Path| {
        std::fs::read_dir(p)
            .map(|it| {
                it.filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "parquet"))
                })
                .count()
            })
            .unwrap_or(0)
    };
    let argv: Vec<&str> = start.iter().chain(&common).copied().collect();
    kill_when(&argv, "no sales range was written", || written(&parts) >= 3).await;
    assert!(
        !d.join("extracted/sale_lines.parquet").exists(),
        "the kill came too late to test anything"
    );
    let before = written(&parts);

    let o = run(f.args(&[resume, &common[..4]].concat())).await.unwrap();
    assert!(o.ok, "{:?}", o.report.error);
    let resumed = o
        .report
        .units
        .iter()
        .filter(|u| u.status == etl_core::UnitStatus::Resumed && u.name.contains("sales["))
        .count();
    // Every range on disk but the one (at most) renamed and not yet recorded.
    assert!(
        resumed >= 2 && resumed + 1 >= before && resumed <= before,
        "{resumed} sales ranges resumed, {before} were on disk"
    );
    assert!(!parts.exists(), "the parts are joined and removed");
    for (file, table, key) in [
        ("sales", "vendas", "id_venda"),
        ("sale_lines", "linhas_venda", "id_linha"),
        ("buyers", "compradores", "id_comprador"),
    ] {
        let want: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT {key}::int8 FROM {table}"
        )))
        .fetch_all(&pool)
        .await
        .unwrap();
        let (rows, got) = keys_in(&d.join(format!("extracted/{file}.parquet")), key);
        assert_eq!(rows, want.len(), "{file}: no duplicates");
        assert_eq!(got, want.into_iter().collect(), "{file}: no gaps");
    }
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_run_reports_the_seed_files_and_rollback_restores_the_pre_load_tables() {
    let f = Fixture::new(300, 11).await;
    let (client, d, r) = (f.dl.client(None), &f.d, &f.r);
    // The items of one valid sale, to place an older version of it in the target first.
    for phase in ["extract", "transform", "validate"] {
        assert!(
            run(f.args(&["--phase", phase])).await.unwrap().ok,
            "{phase}"
        );
    }
    let invalid = std::fs::read_to_string(d.join("transformed/invalid_items.json")).unwrap();
    let mut sale = items_of(&d.join("transformed/sales.parquet"))
        .unwrap()
        .into_iter()
        .find(|i| !invalid.contains(&etl_examples::s9::checks::item_key(i)))
        .unwrap();
    use etl_sink_dynamodb::aws_sdk_dynamodb::types::AttributeValue as A;
    sale.insert(
        "Note".into(),
        A::S("the version before the migration".into()),
    );
    let legacy = std::collections::HashMap::from([
        ("PK".to_owned(), A::S("LEGACY#1".into())),
        ("SK".to_owned(), A::S("#METADATA#legacy".into())),
        ("EntityType".to_owned(), A::S("Legacy".into())),
    ]);
    let tables = ["SalesTable-dev", "BuyersTable-dev", "ProducersTable-dev"];
    for t in tables {
        etl_sink_dynamodb::admin::ensure_table(&client, &etl_examples::s9::table_spec(t))
            .await
            .unwrap();
    }
    for item in [sale.clone(), legacy] {
        let put = client
            .put_item()
            .table_name("SalesTable-dev")
            .set_item(Some(item));
        put.send().await.unwrap();
    }
    let mut before = Vec::new();
    for t in tables {
        before.push(table_items(&client, t).await);
    }
    assert_eq!(before[0].len(), 2);

    // A full run (a new run: extract .. verify) over the populated tables.
    let o = run(f.args(&["--full"])).await.unwrap();
    assert!(o.ok, "{:?}", o.report.error);
    let report = read_json(&r.join("report.json"));
    let files: Vec<&str> = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    for f in [
        "report.json",
        "summary.txt",
        "rejects.csv",
        "validation_report.json",
        "load_report.json",
        "count_comparison.json",
        "integrity_report.json",
        "migration_errors.log",
    ] {
        assert!(files.contains(&f), "{f} not in {files:?}");
        assert!(r.join(f).exists(), "{f} listed but not written");
    }
    assert_eq!(report["run_state"], "done");
    assert!(
        report["extra"]["peak_rss_mib"]["load"].is_number(),
        "{}",
        report["extra"]
    );
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "extract_buyers",
            "extract_producers",
            "extract_sales",
            "extract_sale_lines",
            "extract_certifications",
            "transform",
            "validate",
            "backup",
            "load",
            "verify",
        ]
    );
    assert!(
        d.join("s9_sales.journal.json").exists(),
        "the journal lives next to the artifacts"
    );
    let after_load = table_items(&client, "SalesTable-dev").await;
    assert!(after_load.len() > 300, "{}", after_load.len());
    assert!(
        !after_load.contains(&item_to_plain_json(&sale)),
        "the load overwrote the older version of the sale"
    );

    // --plan: every step done; --rollback would undo them newest first.
    let plan = etl_examples::s9::plan(f.args(&["--plan"]))
        .await
        .unwrap()
        .to_string();
    assert!(
        plan.contains("--rollback would undo, in this order: verify, load, backup, validate"),
        "{plan}"
    );

    // --rollback: the load's undo restores the pre-load backups: every table as it was.
    let o = run(f.args(&["--rollback"])).await.unwrap();
    assert!(o.ok, "{:?}", o.report.error);
    assert_eq!(o.report.status, etl_core::RunStatus::RolledBack);
    for (t, want) in tables.iter().zip(&before) {
        assert_eq!(
            &table_items(&client, t).await,
            want,
            "{t} differs from its pre-load backup"
        );
    }
    let journal = read_json(&d.join("s9_sales.journal.json"));
    assert!(journal.to_string().contains("rolled_back"), "{journal}");
    // A second rollback is refused: nothing left to undo.
    assert!(run(f.args(&["--rollback"])).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_after_a_run_stopped_at_validation_then_resume_finishes_it() {
    let f = Fixture::new(1_600, 13).await;
    let (ds, r) = (f.d.to_str().unwrap(), &f.r);
    let config = f.dir.path().join("strict.json");
    std::fs::write(&config, r#"{"migration": {"continueOnError": false}}"#).unwrap();
    // The generator plants invalid rows: a strict run stops at its validate step.
    let o = run(f.args(&["--config", config.to_str().unwrap()]))
        .await
        .unwrap();
    assert!(!o.ok);
    let error = o.report.error.clone().unwrap();
    assert!(
        error.contains("step `validate` failed") && error.contains("continueOnError"),
        "{error}"
    );

    // --plan (the binary): what ran, what failed, what --resume does next.
    let out = std::process::Command::new(support::example_binary("s9_sales"))
        .args(["--plan", "--data-dir", ds])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan = String::from_utf8(out.stdout).unwrap();
    let line = |step: &str| {
        plan.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(step))
            .unwrap_or_else(|| panic!("no line for {step} in\n{plan}"))
            .to_owned()
    };
    assert!(line("extract_sales").contains("done"), "{plan}");
    assert!(line("transform").contains("done"), "{plan}");
    assert!(line("validate").contains("failed"), "{plan}");
    assert!(line("load").contains("pending"), "{plan}");
    let run_id = &o.report.run_id;
    assert!(
        plan.contains(&format!(
            "next: --resume continues run {run_id} at step 7 `validate` (it failed"
        )),
        "{plan}"
    );

    // --resume with the default config (invalid items are rejected by the load): the
    // extract and transform steps are not run again.
    let o = run(f.args(&["--resume"])).await.unwrap();
    assert!(o.ok, "{:?}", o.report.error);
    assert_eq!(o.report.run_id, *run_id, "the same run, continued");
    let outcome = |step: &str| outcome(&o.report, step);
    assert_eq!(outcome("extract_sales"), "skipped");
    assert_eq!(outcome("transform"), "skipped");
    for s in ["validate", "backup", "load", "verify"] {
        assert_eq!(outcome(s), "ran", "{s}");
    }
    let counts = read_json(&r.join("count_comparison.json"));
    assert_eq!(counts["sales"]["match"], true, "{counts}");
}

/// One run per target, with the real binary: while a run's extract waits on a lock another
/// session holds on a source table, a second run (plain, `--resume`, `--rollback`) with the
/// same data directory exits 2 naming the first run and its process, and `--plan` says the
/// run is live. Killed (SIGKILL), `--plan` says it was interrupted, and `--resume` takes the
/// lock and finishes: the DynamoDB tables hold exactly what a clean run writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_is_refused_while_one_runs_and_a_killed_run_is_finished_by_resume() {
    let f = Fixture::new(600, 21).await;
    let tables = ["SalesTable-dev", "BuyersTable-dev", "ProducersTable-dev"];
    let keys = ["--extract-unit-keys", "50"];
    // What a clean run writes, into a dynalite of its own.
    let clean_dl = Dynalite::start().await.unwrap();
    let (cd, cr) = (f.dir.path().join("clean"), f.dir.path().join("clean-r"));
    let clean_ep = clean_dl.endpoint();
    let clean = run(args(&[
        "--source-url",
        f.db.url(),
        "--dynamodb-endpoint",
        &clean_ep,
        "--data-dir",
        cd.to_str().unwrap(),
        "--report-dir",
        cr.to_str().unwrap(),
        keys[0],
        keys[1],
    ]))
    .await
    .unwrap();
    assert!(clean.ok, "{:?}", clean.report.error);
    let mut want = Vec::new();
    for t in tables {
        want.push(table_items(&clean_dl.client(None), t).await);
    }
    drop(clean_dl);

    // Another session holds the last table the extract reads.
    let pool = f.db.pool().await.unwrap();
    let mut blocker = pool.acquire().await.unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE certificacoes IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let bin = support::example_binary("s9_sales");
    let binary = |report: &str, extra: &[&str]| {
        std::process::Command::new(&bin)
            .args(extra)
            .args(keys)
            .args([
                "--source-url",
                f.db.url(),
                "--dynamodb-endpoint",
                &f.ep,
                "--data-dir",
                f.d.to_str().unwrap(),
                "--report-dir",
                f.dir.path().join(report).to_str().unwrap(),
            ])
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap()
    };
    let mut first = tokio::process::Command::new(&bin)
        .args(keys)
        .args(f.common())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = first.id().unwrap();
    support::wait_for_a_lock_wait(f.db.url(), &mut first).await;
    let journal = read_json(&f.d.join("s9_sales.journal.json"));
    let latest = &journal["latest"];
    let run_id = latest["run"]["run_id"].as_str().unwrap().to_owned();
    let running: Vec<&str> = (latest["steps"].as_array().unwrap().iter())
        .filter(|s| s["state"] == "running")
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(running, ["extract_certifications"], "{journal}");

    // One run at a time: a plain run, --resume and --rollback are refused, naming it.
    let backup = f.dir.path().join("a-backup.json");
    let restore = ["--restore", backup.to_str().unwrap()];
    support::assert_one_run_at_a_time(&binary, pid, &run_id, &[&restore]);

    // Killed while it waits.
    first.start_kill().unwrap(); // SIGKILL
    first.wait().await.unwrap();
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let plan = support::plan(&binary);
    assert!(plan.contains("the run was interrupted"), "{plan}");
    assert!(
        plan.contains(&format!(
            "--resume continues run {run_id} at step 5 `extract_certifications` (it was running"
        )),
        "{plan}"
    );

    // --resume takes the lock and finishes the same run: the tables equal the clean run's.
    let o = binary("resumed", &["--resume"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report = read_json(&f.dir.path().join("resumed/report.json"));
    assert_eq!(report["run_id"], run_id.as_str());
    assert_eq!(report["run_state"], "done");
    // The seed's migration.log: what the binary logged, beside the reports.
    let log = std::fs::read_to_string(f.dir.path().join("resumed/migration.log")).unwrap();
    assert!(
        log.contains("migration started") && log.contains("step done"),
        "{log}"
    );
    // --backup TABLE (the seed's utils/backup.py): a file --restore takes back.
    let o = binary("backup", &["--backup", "BuyersTable-dev"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let file = out
        .lines()
        .find_map(|l| {
            l.strip_prefix("backed up ")
                .and_then(|l| l.split(" into ").nth(1))
        })
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned();
    assert!(out.contains("items of BuyersTable-dev"), "{out}");
    let o = binary("restore", &["--restore", &file]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("items added since the backup deleted"));
    let client = f.dl.client(None);
    for (t, want) in tables.iter().zip(&want) {
        let got = table_items(&client, t).await;
        assert_eq!(got.len(), want.len(), "{t}");
        assert!(&got == want, "{t} differs from the clean run's");
    }
}

/// Start `s9_sales args` and SIGKILL it once `ready` (within 300 s, else panic with
/// `never`); the run must not end before.
async fn kill_when(args: &[&str], never: &str, ready: impl Fn() -> bool) {
    let mut child = tokio::process::Command::new(support::example_binary("s9_sales"))
        .args(args)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "{never}");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

/// Start `s9_sales --phase load` and SIGKILL it once some row groups of the sale lines
/// are recorded as written; the number recorded.
async fn kill_mid_load(f: &Fixture) -> usize {
    let ckpt = f.d.join(".checkpoint.json");
    let since = chrono::Utc::now();
    // Row groups recorded by this process (a killed load before it left others).
    let recorded = || {
        let v: Value = std::fs::read(&ckpt)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let units = v["scopes"]["load:sale_lines"]["units"].as_object().cloned();
        units
            .into_iter()
            .flatten()
            .filter(|(_, u)| {
                serde_json::from_value::<chrono::DateTime<chrono::Utc>>(u["finished_at"].clone())
                    .is_ok_and(|t| t > since)
            })
            .count()
    };
    let argv: Vec<&str> = ["--phase", "load"]
        .iter()
        .chain(&f.common())
        .copied()
        .collect();
    kill_when(&argv, "no row group written", || recorded() >= 1).await;
    let v = read_json(&ckpt);
    let n = v["scopes"]["load:sale_lines"]["units"]
        .as_object()
        .unwrap()
        .len();
    assert_eq!(
        n,
        recorded(),
        "a fresh load forgets the row groups of the one before"
    );
    let file = std::fs::File::open(f.d.join("transformed/sale_lines.parquet")).unwrap();
    let groups = parquet::file::reader::SerializedFileReader::new(file)
        .map(|r| parquet::file::reader::FileReader::metadata(&r).num_row_groups())
        .unwrap();
    assert!(
        n < groups,
        "the kill came too late: {n} of {groups} row groups"
    );
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_resumes_only_over_the_transformed_file_it_recorded() {
    let f = Fixture::new(4_000, 12).await;
    let pool = f.db.pool().await.unwrap();
    for phase in ["extract", "transform", "validate"] {
        let o = run(f.args(&["--phase", phase])).await.unwrap();
        assert!(o.ok, "{phase}: {:?}", o.report.error);
    }
    let lines = f.d.join("transformed/sale_lines.parquet");
    kill_mid_load(&f).await;

    // The source changes and the transform runs again: the row groups the killed load
    // recorded are not those of the new file. --resume is refused (exit 2), naming it.
    sqlx::query("UPDATE linhas_venda SET observacoes = 'changed after the load started' WHERE id_linha % 5 = 0")
        .execute(&pool)
        .await
        .unwrap();
    for phase in ["extract", "transform"] {
        let o = run(f.args(&["--phase", phase])).await.unwrap();
        assert!(o.ok, "{phase}: {:?}", o.report.error);
    }
    let out = std::process::Command::new(support::example_binary("s9_sales"))
        .args(["--phase", "load", "--resume"].iter().chain(&f.common()))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("--resume: {} changed since", lines.display()))
            && stderr.contains("content hash"),
        "{stderr}"
    );

    // A plain load starts afresh; killed again, the file unchanged (only touched):
    // --resume continues exactly at the row groups not recorded.
    let recorded = kill_mid_load(&f).await;
    let t = std::time::SystemTime::now();
    std::fs::File::options()
        .write(true)
        .open(&lines)
        .unwrap()
        .set_modified(t)
        .unwrap();
    let o = run(f.args(&["--phase", "load", "--resume"])).await.unwrap();
    assert!(o.ok, "{:?}", o.report.error);
    let load = read_json(&f.r.join("load_report.json"));
    let sl = &load["entities"]["sale_lines"];
    assert_eq!(
        sl["units_resumed"].as_u64().unwrap() as usize,
        recorded,
        "{sl}"
    );
    assert!(sl["units"].as_u64().unwrap() as usize > recorded, "{sl}");
    let o = run(f.args(&["--phase", "verify"])).await.unwrap();
    assert!(o.ok, "{:?}", o.report.error);
    let counts = read_json(&f.r.join("count_comparison.json"));
    for e in ["buyers", "producers", "sales", "sale_lines"] {
        assert_eq!(counts[e]["match"], true, "{e}: {}", counts[e]);
    }
    // The changed rows are in DynamoDB: the new file was loaded, not the old row groups.
    let integrity = read_json(&f.r.join("integrity_report.json"));
    assert_eq!(
        integrity["sample_comparison"]["sale_lines"]["mismatched"],
        0
    );
}

/// The items of a transformed Parquet file.
fn items_of(path: &Path) -> etl_core::Result<Vec<etl_sink_dynamodb::Item>> {
    etl_sink_dynamodb::check::read_items(path)?.collect()
}

/// Plain JSON with every number as f64 (so `2.0` equals `2`), for golden comparisons.
fn normalize(v: &Value) -> Value {
    match v {
        Value::Number(n) => serde_json::json!(n.as_f64()),
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), normalize(v))).collect())
        }
        other => other.clone(),
    }
}

/// The seed's config keys are all honoured (`connectionTimeout`, `batchDelay` parse and
/// apply), an unknown key is an error naming it, and `--filter` with an entity it cannot
/// filter is refused instead of being ignored.
#[test]
fn config_keys_are_checked_and_filter_refuses_other_entities() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.json");
    let run = |extra: &[&str]| {
        let o = std::process::Command::new(support::example_binary("s9_sales"))
            .args(["--plan", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(extra)
            .env_remove("DATABASE_URL")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let config = |source_extra: &str, migration_extra: &str| {
        std::fs::write(
            &cfg,
            format!(
                r#"{{"source": {{"host": "127.0.0.1", "database": "s9", "username": "u"{source_extra}}},
                   "target": {{"region": "us-east-1"}},
                   "migration": {{"batchSize": 10{migration_extra}}}}}"#
            ),
        )
        .unwrap();
    };
    let c = cfg.display().to_string();
    config(r#", "connectionTimeout": 30000"#, r#", "batchDelay": 1000"#);
    let (code, err) = run(&["--config", &c]);
    assert_eq!(code, Some(0), "{err}");
    config("", r#", "batchDelai": 1000"#);
    let (code, err) = run(&["--config", &c]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("batchDelai"), "{err}");
    let (code, err) = run(&["--entity", "buyers", "--filter", "status = 'A'"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--filter selects sales"), "{err}");
}

/// With the seed's config file and no endpoint, the AWS credentials come from the standard
/// chain: here a shared profile file (no key in the environment).
#[tokio::test]
async fn aws_credentials_come_from_a_shared_profile_file() {
    use etl_sink_dynamodb::aws_sdk_dynamodb::config::ProvideCredentials as _;
    let dir = tempfile::tempdir().unwrap();
    let (creds, conf) = (dir.path().join("credentials"), dir.path().join("config"));
    std::fs::write(
        &creds,
        "[ferrytest]\naws_access_key_id = AKIDFROMPROFILE\naws_secret_access_key = secret-from-profile\n",
    )
    .unwrap();
    std::fs::write(&conf, "[profile ferrytest]\nregion = us-east-1\n").unwrap();
    // nextest runs every test in a process of its own: this environment is this test's.
    unsafe {
        for k in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
        ] {
            std::env::remove_var(k);
        }
        std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", &creds);
        std::env::set_var("AWS_CONFIG_FILE", &conf);
        std::env::set_var("AWS_PROFILE", "ferrytest");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    }
    let sdk = etl_examples::s9::aws_sdk_config("us-east-1").await;
    let got = sdk
        .credentials_provider()
        .unwrap()
        .provide_credentials()
        .await
        .unwrap();
    assert_eq!(got.access_key_id(), "AKIDFROMPROFILE");
    assert_eq!(got.secret_access_key(), "secret-from-profile");
}

/// The seed's incremental migration: `--entity buyers --batch-size K --offset 0`, then
/// `--offset K`: each window extracts, loads and verifies only its rows, under its own
/// artifacts and checkpoints, and the two leave the table equal to one full run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_windows_of_an_entity_load_what_one_full_run_loads() {
    let f = Fixture::new(300, 21).await;
    let buyers = f.generated.buyers;
    let k = buyers.div_ceil(2);
    let ks = k.to_string();
    let client = f.dl.client(None);
    for (offset, rows) in [(0, k), (k, buyers - k), (2 * k, 0)] {
        let off = offset.to_string();
        let o = run(f.args(&["--entity", "buyers", "--batch-size", &ks, "--offset", &off]))
            .await
            .unwrap();
        assert!(o.ok, "window {offset}: {:?}", o.report.error);
        let stem = format!("buyers.rows-{offset}-{}", offset + k);
        let file = f.d.join(format!("extracted/{stem}.parquet"));
        assert_eq!(etl_examples::s9::pq::file_rows(&file).unwrap(), rows);
        let window = &o.report.extra["window"];
        assert_eq!(
            window["rows"],
            format!("{offset}..{}", offset + k),
            "{window}"
        );
        let counts = read_json(&f.r.join("count_comparison.json"));
        let b = &counts["buyers"];
        assert_eq!(
            (b["source"].as_u64(), b["match"].as_bool()),
            (Some(rows), Some(true)),
            "{b}"
        );
        assert_eq!(b["window"]["offset"], offset, "{b}");
        let load = read_json(&f.r.join("load_report.json"));
        assert_eq!(load["window"]["limit"], k, "{load}");
    }
    let windows = table_items(&client, "BuyersTable-dev").await;
    assert!(
        windows.len() as u64 + 2 >= buyers,
        "{} items",
        windows.len()
    );

    // One full run of the entity into another DynamoDB.
    let dl = Dynalite::start().await.unwrap();
    let (ep, d) = (dl.endpoint(), f.dir.path().join("full"));
    let mut a = f.args(&["--entity", "buyers"]);
    (a.dynamodb_endpoint, a.data_dir) = (Some(ep), d);
    let o = run(a).await.unwrap();
    assert!(o.ok, "{:?}", o.report.error);
    assert!(o.report.extra["window"].is_null());
    let full = table_items(&dl.client(None), "BuyersTable-dev").await;
    assert_eq!(windows.len(), full.len());
    assert!(
        windows == full,
        "the windows' items differ from the full run's"
    );
}

/// A window killed mid-extract: `--resume` with other window options is refused, with
/// the same ones it finishes exactly that window (its recorded key bounds, its own
/// checkpoint), and the load writes only its rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_window_is_finished_by_resume_and_loads_only_its_rows() {
    let f = Fixture::new(4_000, 5).await;
    let pool = f.db.pool().await.unwrap();
    // The parents the sales' transform and checks look up: extracted and transformed whole.
    for phase in ["extract", "transform"] {
        let o = run(f.args(&["--phase", phase])).await.unwrap();
        assert!(o.ok, "{phase}: {:?}", o.report.error);
    }
    let window = [
        "--entity",
        "sales",
        "--offset",
        "500",
        "--limit",
        "3000",
        "--extract-unit-keys",
        "50",
        "--batch-size",
        "25",
    ];
    let parts = f.d.join("extracted/sales.rows-500-3500.parts");
    let written = || std::fs::read_dir(&parts).map_or(0, |it| it.count());
    let argv: Vec<&str> = window.iter().chain(&f.common()).copied().collect();
    kill_when(&argv, "no range of the window was written", || {
        written() >= 4
    })
    .await;
    assert!(!f.d.join("extracted/sales.rows-500-3500.parquet").exists());

    let mut other = window;
    other[3] = "600";
    let err = run(f.args(&[&["--resume"][..], &other].concat()))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rows 500..3500") && err.contains("rows 600..3600"),
        "{err}"
    );

    let o = run(f.args(&[&["--resume"][..], &window].concat()))
        .await
        .unwrap();
    assert!(o.ok, "{:?}", o.report.error);
    assert_eq!(o.report.run_state.as_deref(), Some("done"));
    let resumed = (o.report.units.iter())
        .filter(|u| u.status == etl_core::UnitStatus::Resumed && u.name.contains("sales["))
        .count();
    assert!(resumed >= 2, "{resumed} ranges resumed");
    let want: Vec<i64> = sqlx::query_scalar(
        "SELECT id_venda::int8 FROM vendas ORDER BY id_venda OFFSET 500 LIMIT 3000",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let (rows, got) = keys_in(
        &f.d.join("extracted/sales.rows-500-3500.parquet"),
        "id_venda",
    );
    assert_eq!(rows, 3000, "no duplicates");
    assert_eq!(
        got,
        want.iter().copied().collect(),
        "exactly the window's sales"
    );
    let lines: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM linhas_venda WHERE id_venda IN \
         (SELECT id_venda FROM vendas ORDER BY id_venda OFFSET 500 LIMIT 3000)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let (line_rows, _) = keys_in(
        &f.d.join("extracted/sale_lines.rows-500-3500.parquet"),
        "id_linha",
    );
    assert_eq!(line_rows as i64, lines, "the lines of the window's sales");
    let counts = read_json(&f.r.join("count_comparison.json"));
    assert_eq!(counts["sales"]["match"], true, "{counts}");
    assert_eq!(counts["sale_lines"]["match"], true, "{counts}");
    let client = f.dl.client(None);
    let sales = count_items(&client, "SalesTable-dev", Some(("EntityType", "Sale")), 2)
        .await
        .unwrap();
    assert_eq!(
        Some(sales),
        counts["sales"]["target"].as_u64(),
        "only the window is loaded"
    );
    assert!(sales > 2_900 && sales <= 3_000, "{sales}");
}
