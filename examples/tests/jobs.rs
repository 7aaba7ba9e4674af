//! The job files of `examples/jobs` run by the `ferry` library against a real PostgreSQL:
//! `cites_trade.toml` gives the same live table and summaries as the `cites_trade`
//! example, and resumes and rolls back like it.

use std::path::{Path, PathBuf};

use clap::Parser;
use etl_core::RunStatus;
use etl_core::migration::{Action, RunOptions};
use etl_examples::cites::{CitesArgs, CitesConfig, run};
use ferry_cli::build::{JobRun, migration};
use ferry_cli::job::Job;
use sqlx::{Connection, PgConnection};

#[derive(Parser, Debug)]
struct A {
    #[command(flatten)]
    c: CitesArgs,
}

fn jobs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs")
}

/// The job with `${DATABASE_URL}` set to `url` (and the other variables from `vars`).
fn job(name: &str, url: &str, vars: &[(&str, String)]) -> JobRun {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let job = Job::load_with(&jobs_dir().join(name), |k| match k {
        "DATABASE_URL" => Some(url.to_owned()),
        _ => vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()),
    })
    .unwrap();
    JobRun::new(job, None, Some(2))
}

async fn run_job(c: &JobRun, report_dir: &Path, action: Action) -> etl_core::RunReport {
    let m = migration(c).unwrap();
    let journal = etl_sink_postgres::journal::PgJournal::new(c.pg_opts().unwrap());
    let mut opts = RunOptions::new(report_dir);
    opts.action = action;
    opts.progress = false;
    m.execute(c, &journal, &opts).await.unwrap()
}

/// Rows and an order-independent checksum of a table's rows.
async fn checksum(conn: &mut PgConnection, table: &str, columns: &str) -> (i64, String) {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT count(*), coalesce(sum(hashtextextended(({columns})::text, 0)), 0)::text FROM {table} t"
    )))
    .fetch_one(conn)
    .await
    .unwrap()
}

#[tokio::test]
async fn the_cites_job_loads_the_rows_of_the_example() {
    let db = etl_testkit::TestDb::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let argv = [
        "cites_trade",
        "--no-backup",
        "--parallel",
        "2",
        "-q",
        "--report-dir",
    ];
    let mut argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    argv.push(dir.path().join("example").display().to_string());
    let cfg = CitesConfig::from_args("cites_trade", A::try_parse_from(argv).unwrap().c);
    let r = run(&cfg, db.url(), Default::default()).await.unwrap();
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
    let mut conn = PgConnection::connect(db.url()).await.unwrap();
    let live = "cites_trade_records";
    let annual = "species_trade_summary_annual";
    // The quantities without trailing zeros: the rollback's rebuild by scan gives the
    // same values at another scale than the rollups.
    const ANNUAL: &str = "species_id, year, total_records, trim_scale(total_quantity), min_year, max_year, summary_type";
    let summary = "species_id, total_trade_records, overall_min_year, overall_max_year, overall_total_quantity, distinct_years, distinct_terms, distinct_importers, distinct_exporters, annual_summaries";
    let example = (
        checksum(&mut conn, live, "t.*").await,
        checksum(&mut conn, annual, ANNUAL).await,
        checksum(&mut conn, "species_trade_summary", summary).await,
    );
    assert!(example.0.0 > 0);

    // The job refuses to start while the example's previous table is kept.
    let c = job("cites_trade.toml", db.url(), &[]);
    let r = run_job(&c, &dir.path().join("refused"), Action::Run).await;
    assert_eq!(r.status, RunStatus::Failed);
    assert!(
        r.error.as_deref().unwrap_or("").contains("--cleanup"),
        "{:?}",
        r.error
    );
    let mut argv: Vec<String> = ["cites_trade", "--cleanup", "-q", "--report-dir"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    argv.push(dir.path().join("cleanup").display().to_string());
    let cfg = CitesConfig::from_args("cites_trade", A::try_parse_from(argv).unwrap().c);
    assert!(
        run(&cfg, db.url(), Default::default())
            .await
            .unwrap()
            .succeeded()
    );

    let r = run_job(&c, &dir.path().join("job"), Action::Run).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
    let by_job = (
        checksum(&mut conn, live, "t.*").await,
        checksum(&mut conn, annual, ANNUAL).await,
        checksum(&mut conn, "species_trade_summary", summary).await,
    );
    assert_eq!(
        by_job, example,
        "the job's live table and summaries differ from the example's"
    );
    // The summary came from the load's rollups, and the totals reconcile.
    let t = &r.totals;
    assert_eq!(t.read, t.loaded + t.rejected + t.filtered);
    assert_eq!(t.loaded as i64, example.0.0);
    let steps = std::fs::read_to_string(dir.path().join("job/report.json")).unwrap();
    assert!(steps.contains("done (rollups)"), "{steps}");
    assert!(
        steps.contains("lookup_Taxon"),
        "the lookup's match figures are in the report"
    );

    // --rollback swaps the example's table back (same rows) and rebuilds the summaries.
    let r = run_job(&c, &dir.path().join("rollback"), Action::Rollback).await;
    assert_eq!(r.status, RunStatus::RolledBack, "{:?}", r.error);
    assert_eq!(checksum(&mut conn, live, "t.*").await, example.0);
    assert_eq!(checksum(&mut conn, annual, ANNUAL).await, example.1);
}
