//! The CITES migration against a real PostgreSQL: exact contents, rejects with line and
//! reason, header errors, gates that leave production untouched, switchover / rollback /
//! cleanup, resume after a real kill, synonyms, dry run.

mod support;
use support::example_binary;

use std::path::{Path, PathBuf};

use clap::Parser;
use etl_core::RunStatus;
use etl_examples::cites::{CitesArgs, CitesConfig, run};
use sqlx::{Connection, PgConnection};

#[derive(Parser, Debug)]
struct A {
    #[command(flatten)]
    c: CitesArgs,
}

const HEADER: &str = "\"Id\",\"Year\",\"Appendix\",\"Taxon\",\"Class\",\"Order\",\"Family\",\"Genus\",\"Term\",\"Quantity\",\"Unit\",\"Importer\",\"Exporter\",\"Origin\",\"Purpose\",\"Source\",\"Reporter.type\",\"Import.permit.RandomID\",\"Export.permit.RandomID\",\"Origin.permit.RandomID\"\n";

fn row(id: u64, year: &str, appendix: &str, taxon: &str, qty: &str, importer: &str) -> String {
    format!(
        "\"{id}\",{year},\"{appendix}\",\"{taxon}\",\"Aves\",\"Falconiformes\",\"Falconidae\",\"Falco\",\"live\",{qty},\"\",\"{importer}\",\"CA\",\"\",\"T\",\"C\",\"E\",\"\",\"A1B2C3\",\"\"\n"
    )
}

const SPECIES: &str =
    "scientific_name,common_name\nFalco rusticolus,Gyrfalcon\nUrsus maritimus,Polar Bear\n";

struct Env {
    db: etl_testkit::TestDb,
    dir: tempfile::TempDir,
}

impl Env {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("in")).unwrap();
        std::fs::write(dir.path().join("species.csv"), SPECIES).unwrap();
        Env {
            db: etl_testkit::TestDb::create().await.unwrap(),
            dir,
        }
    }
    fn input(&self) -> PathBuf {
        self.dir.path().join("in")
    }
    fn write(&self, name: &str, body: &[u8]) {
        std::fs::write(self.input().join(name), body).unwrap();
    }
    fn reports(&self, name: &str) -> PathBuf {
        self.dir.path().join("reports").join(name)
    }
    fn config(&self, report: &str, extra: &[&str]) -> CitesConfig {
        let mut argv = vec![
            "cites_trade".to_owned(),
            "--input".into(),
            self.input().display().to_string(),
            "--species-csv".into(),
            self.dir.path().join("species.csv").display().to_string(),
            "--report-dir".into(),
            self.reports(report).display().to_string(),
            "--parallel".into(),
            "2".into(),
            "-q".into(),
        ];
        argv.extend(extra.iter().map(|s| s.to_string()));
        let a = A::try_parse_from(argv).unwrap();
        CitesConfig::from_args("cites_trade", a.c)
    }
    async fn run(&self, report: &str, extra: &[&str]) -> etl_core::RunReport {
        let cfg = self.config(report, extra);
        run(&cfg, self.db.url(), Default::default()).await.unwrap()
    }
    async fn conn(&self) -> PgConnection {
        PgConnection::connect(self.db.url()).await.unwrap()
    }
}

async fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(conn)
        .await
        .unwrap();
    n
}

#[tokio::test]
async fn loads_exact_contents_and_switches() {
    let env = Env::new().await;
    let mut f1 = HEADER.to_owned();
    f1 += &row(7592925716, "2000", "I", "Falco rusticolus", "1", "NA");
    f1 += &row(4406586718, "2004", "II", "Falco rusticolus", "12.75", "US");
    f1 += &row(
        8852107918,
        "2004",
        "II",
        "Ursus maritimus",
        "2500000000.000001",
        "",
    );
    env.write("trade_db_1.csv", f1.as_bytes());
    let mut f2 = HEADER.to_owned();
    f2 += &row(1000000001, "2024", "N", "Ursus maritimus", "", "GB");
    f2 += &row(1000000002, "2024", "N", "Not a species", "3", "GB");
    env.write("trade_db_2.csv", f2.as_bytes());

    let r = env.run("first", &["--min-match-rate", "0.5"]).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
    // The pre-flight checked the headers and, on this local server, the free space.
    let pre = &r.steps[0].details;
    assert_eq!(pre["files"], 2, "{pre}");
    // The post-switch smoke queries ran on the live table: Polar Bear rows of 2020 on.
    let smoke = &r.steps.iter().find(|s| s.name == "smoke").unwrap().details;
    assert_eq!(smoke["smoke"][0]["rows"], 1, "{smoke}");
    assert!(
        pre["disk"]["free_bytes"].as_u64().unwrap() > pre["disk"]["needed_bytes"].as_u64().unwrap(),
        "{pre}"
    );
    let t = &r.totals;
    assert_eq!((t.read, t.loaded, t.rejected, t.filtered), (5, 4, 0, 1));
    assert_eq!(t.filtered_by_reason["unmatched species"], 1);

    let mut conn = env.conn().await;
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT concat_ws('|', t.record_id, t.year, t.appendix, t.taxon, coalesce(t.quantity::text, '-'),
                coalesce(t.importer, '-'), coalesce(t.unit, '-'), s.scientific_name, t.export_permit, t.reporter_type)
           FROM cites_trade_records t JOIN species s ON s.id = t.species_id ORDER BY t.record_id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let rows: Vec<String> = rows.into_iter().map(|(r,)| r).collect();
    assert_eq!(
        rows,
        vec![
            "1000000001|2024|N|Ursus maritimus|-|GB|-|Ursus maritimus|A1B2C3|E",
            "4406586718|2004|II|Falco rusticolus|12.75|US|-|Falco rusticolus|A1B2C3|E",
            "7592925716|2000|I|Falco rusticolus|1|NA|-|Falco rusticolus|A1B2C3|E",
            "8852107918|2004|II|Ursus maritimus|2500000000.000001|-|-|Ursus maritimus|A1B2C3|E",
        ]
    );
    // Migration log: one completed row per file with the seed's columns.
    let log: Vec<(String, i32, i32, i32, i32, i32, String)> = sqlx::query_as(
        "SELECT file_name, records_processed, records_inserted, records_failed, species_matched, species_unmatched, status
           FROM cites_migration_log ORDER BY file_name",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        log,
        vec![
            ("trade_db_1.csv".into(), 3, 3, 0, 3, 0, "completed".into()),
            ("trade_db_2.csv".into(), 2, 1, 0, 1, 1, "completed".into()),
        ]
    );
    // Summary rebuilt in the real shape.
    let (total, years, annual): (i32, serde_json::Value, serde_json::Value) = sqlx::query_as(
        "SELECT total_trade_records, distinct_years, annual_summaries FROM species_trade_summary s
           JOIN species sp ON sp.id = s.species_id WHERE sp.scientific_name = 'Falco rusticolus'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(total, 2);
    assert_eq!(years, serde_json::json!([2000, 2004]));
    assert_eq!(
        annual[1]["terms_summary"][0]["quantity"],
        serde_json::json!(12.75)
    );
    // Built from the load's rollups, and equal to a rebuild from a scan of the table.
    let summary = &r
        .steps
        .iter()
        .find(|s| s.name == "summary")
        .unwrap()
        .details;
    assert_eq!(summary["from"], "rollups", "{summary}");
    let both = "SELECT (SELECT count(*) || ':' || sum(hashtextextended((s.species_id, s.total_trade_records, s.overall_min_year, s.overall_max_year, s.overall_total_quantity, s.distinct_years, s.distinct_terms, s.distinct_importers, s.distinct_exporters, s.annual_summaries)::text, 0)) FROM species_trade_summary s)
         || '/' || (SELECT count(*) || ':' || sum(hashtextextended(a::text, 0)) FROM species_trade_summary_annual a)";
    let (rolled,): (String,) = sqlx::query_as(both).fetch_one(&mut conn).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "BEGIN; {} COMMIT;",
        etl_examples::cites::summary::rebuild()
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    let (scanned,): (String,) = sqlx::query_as(both).fetch_one(&mut conn).await.unwrap();
    assert_eq!(rolled, scanned);
    assert!(rolled.starts_with("2:"), "{rolled}");
    // ... and in the seed's shape (000 §6.2): one row per species and year, its index.
    let annual: Vec<(i32, i32, String, String)> = sqlx::query_as(
        "SELECT a.year, a.total_records, a.total_quantity::text, a.summary_type
           FROM species_trade_summary_annual a JOIN species sp ON sp.id = a.species_id
          WHERE sp.scientific_name = 'Falco rusticolus' AND a.min_year = a.year AND a.max_year = a.year
          ORDER BY a.year",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(annual.len(), 2, "{annual:?}");
    assert_eq!((annual[1].0, annual[1].1), (2004, 1), "{annual:?}");
    assert_eq!(annual[1].2, "12.75");
    assert!(annual.iter().all(|a| a.3 == "annual"));
    assert_eq!(
        count(
            &mut conn,
            "SELECT (SELECT sum(total_records) FROM species_trade_summary_annual)::bigint
                  - (SELECT count(*) FROM cites_trade_records)"
        )
        .await,
        0,
        "the annual rows account for every live row"
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'idx_summary_species_year'"
        )
        .await,
        1
    );
    // The ids are deterministic: a second full run gives the same ids.
    let ids1 = count(
        &mut conn,
        "SELECT sum(hashtext(id::text))::bigint FROM cites_trade_records",
    )
    .await;
    // A new release while the previous data is still kept is refused before any work.
    let refused = env.run("refused", &["--min-match-rate", "0.5"]).await;
    assert_eq!(refused.status, RunStatus::Failed);
    let err = refused.error.unwrap();
    assert!(err.contains("step `preflight` failed"), "{err}");
    assert!(err.contains("--cleanup"), "{err}");
    assert_eq!(
        refused.steps[1].outcome, "not_reached",
        "nothing after the preflight ran"
    );
    let old = count(&mut conn, "SELECT count(*) FROM cites_trade_records").await;
    assert_eq!(old, 4);
    env.run("cleanup", &["--cleanup"]).await;
    let r2 = env.run("second", &["--min-match-rate", "0.5"]).await;
    assert_eq!(r2.status, RunStatus::Succeeded, "{:?}", r2.error);
    let ids2 = count(
        &mut conn,
        "SELECT sum(hashtext(id::text))::bigint FROM cites_trade_records",
    )
    .await;
    assert_eq!(ids1, ids2);
    // The first run's data is kept as _old until cleanup; backups were taken.
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM cites_trade_records_old").await,
        4
    );
    let backup = &r2
        .steps
        .iter()
        .find(|s| s.name == "copies")
        .unwrap()
        .details;
    assert!(backup["tables"][0]["rows"] == 4, "{backup}");
    // Report files.
    let dir = env.reports("second");
    for f in ["report.json", "summary.txt", "rejects.csv"] {
        assert!(dir.join(f).exists(), "{f}");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["status"], "succeeded");
    assert_eq!(json["totals"]["read"], 5);
    assert_eq!(json["units"][0]["name"], "trade_db_1.csv");
    assert!(
        !std::fs::read_to_string(dir.join("report.json"))
            .unwrap()
            .contains(&password_of(env.db.url()))
    );
}

fn password_of(url: &str) -> String {
    // The test server has no password; make sure the check is meaningful anyway.
    url.split('@')
        .next()
        .and_then(|a| a.rsplit(':').next())
        .unwrap_or("")
        .to_owned()
        + "\u{0}"
}

#[tokio::test]
async fn every_bad_row_kind_is_rejected_with_its_line_and_reason() {
    let env = Env::new().await;
    let mut body: Vec<u8> = HEADER.as_bytes().to_vec();
    body.extend(row(1, "2000", "I", "Falco rusticolus", "1", "US").as_bytes()); // line 2 ok
    body.extend(b"\"2\",2001,\"I\",\"Falco rusticolus\"\n"); // 3 field count
    body.extend(row(3, "19x5", "I", "Falco rusticolus", "1", "US").as_bytes()); // 4 bad year
    body.extend(row(4, "2001", "I", "Falco rusticolus", "\"abc\"", "US").as_bytes()); // 5 bad quantity
    let mut bad_utf8 = row(5, "2001", "I", "Falco rusticolus", "1", "US").into_bytes();
    let pos = bad_utf8.iter().position(|b| *b == b'U').unwrap();
    bad_utf8[pos] = 0xff;
    body.extend(bad_utf8); // 6 invalid utf-8
    body.extend(row(6, "1899", "I", "Falco rusticolus", "1", "US").as_bytes()); // 7 year out of range
    body.extend(row(7, "2001", "IV", "Falco rusticolus", "1", "US").as_bytes()); // 8 bad appendix
    body.extend(row(8, "2001", "I", "", "1", "US").as_bytes()); // 9 empty taxon
    body.extend(b"\"9\",2001,\"I\",\"Falco rusticolus,Aves,x\n"); // 10 unterminated quote
    body.extend(row(10, "2002", "II", "Falco rusticolus", "0.5", "NA").as_bytes()); // 11 ok
    env.write("trade_db_1.csv", &body);

    let r = env.run("bad", &["--max-reject-rate", "1"]).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
    assert_eq!(
        (r.totals.read, r.totals.loaded, r.totals.rejected),
        (10, 2, 8)
    );
    let mut conn = env.conn().await;
    let errors: Vec<(i32, Option<String>, String)> = sqlx::query_as(
        "SELECT line_number, column_name, error_kind FROM cites_trade_import_errors ORDER BY line_number",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        errors,
        vec![
            (3, None, "field_count".into()),
            (4, Some("Year".into()), "bad_integer".into()),
            (5, Some("Quantity".into()), "bad_decimal".into()),
            (6, Some("Importer".into()), "invalid_utf8".into()),
            (7, Some("Year".into()), "out_of_range".into()),
            (8, Some("Appendix".into()), "not_allowed".into()),
            (9, Some("Taxon".into()), "missing_value".into()),
            (10, None, "unterminated_quote".into()),
        ]
    );
    let csv = std::fs::read_to_string(env.reports("bad").join("rejects.csv")).unwrap();
    assert!(csv.starts_with("unit,record,column,reason,raw\n"));
    assert!(
        csv.contains("trade_db_1.csv,4,Year,\"Year: \"\"19x5\"\" is not an integer\""),
        "{csv}"
    );
    assert!(
        csv.contains("trade_db_1.csv,7,Year,Year 1899 is outside 1975..="),
        "{csv}"
    );
    let loaded: Vec<(String,)> =
        sqlx::query_as("SELECT record_id FROM cites_trade_records ORDER BY 1")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(loaded, vec![("1".to_owned(),), ("10".to_owned(),)]);
}

#[tokio::test]
async fn a_missing_column_is_a_clear_error_and_production_is_untouched() {
    let env = Env::new().await;
    env.write(
        "trade_db_1.csv",
        b"\"Id\",\"Year\",\"Appendix\",\"Taxon\"\n\"1\",2000,\"I\",\"Falco rusticolus\"\n",
    );
    let r = env.run("hdr", &[]).await;
    assert_eq!(r.status, RunStatus::Failed);
    let err = r.error.unwrap();
    assert!(
        err.contains("trade_db_1.csv") && err.contains("Term") && err.contains("Quantity"),
        "{err}"
    );
    // The pre-flight reads every header before anything is written: not even the
    // migration's tables were created.
    assert_eq!(r.steps[0].name, "preflight");
    assert_eq!(r.steps[0].outcome, "failed");
    let mut conn = env.conn().await;
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'cites_trade_records'"
        )
        .await,
        0
    );
    let disk = &r.steps[0].details;
    assert!(
        disk.is_null() || disk["disk"].is_null(),
        "failed before the disk check"
    );
}

#[tokio::test]
async fn a_failed_gate_leaves_production_untouched() {
    let env = Env::new().await;
    let mut f = HEADER.to_owned();
    f += &row(1, "2000", "I", "Falco rusticolus", "1", "US");
    f += &row(2, "2001", "I", "Ursus maritimus", "1", "US");
    env.write("trade_db_1.csv", f.as_bytes());
    assert!(env.run("good", &[]).await.succeeded());
    let mut conn = env.conn().await;
    let before = count(
        &mut conn,
        "SELECT sum(hashtext(t::text))::bigint FROM cites_trade_records t",
    )
    .await;

    env.run("cleanup", &["--cleanup"]).await;
    // A new release where half the taxa are unknown: the match-rate gate fails.
    let mut f = HEADER.to_owned();
    f += &row(3, "2002", "I", "Falco rusticolus", "1", "US");
    f += &row(4, "2003", "I", "Unknown thing", "1", "US");
    env.write("trade_db_1.csv", f.as_bytes());
    let r = env.run("gate", &[]).await;
    assert_eq!(r.status, RunStatus::Failed);
    assert!(
        r.error.as_deref().unwrap().contains("species_match_rate"),
        "{:?}",
        r.error
    );
    let after = count(
        &mut conn,
        "SELECT sum(hashtext(t::text))::bigint FROM cites_trade_records t",
    )
    .await;
    assert_eq!(before, after, "production untouched");
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM cites_trade_records").await,
        2
    );
    let (status,): (String,) =
        sqlx::query_as("SELECT status FROM ferry_runs ORDER BY started_at DESC LIMIT 1")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(status, "failed");
    // --switchover refuses a run that did not validate.
    let cfg = env.config("switch", &["--switchover"]);
    let err = run(&cfg, env.db.url(), Default::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("refusing to continue `cites_trade` at `switch`"),
        "{err}"
    );
    assert!(
        err.contains("is `failed`, not stopped right before"),
        "{err}"
    );
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM cites_trade_records").await,
        2
    );
}

#[tokio::test]
async fn no_switchover_then_switchover_rollback_and_cleanup() {
    let env = Env::new().await;
    let mut f = HEADER.to_owned();
    f += &row(1, "2000", "I", "Falco rusticolus", "1", "US");
    env.write("trade_db_1.csv", f.as_bytes());
    assert!(env.run("v1", &[]).await.succeeded());
    let mut f = HEADER.to_owned();
    f += &row(2, "2001", "I", "Falco rusticolus", "1", "US");
    f += &row(3, "2002", "I", "Falco rusticolus", "1", "US");
    env.write("trade_db_1.csv", f.as_bytes());
    env.run("cleanup0", &["--cleanup"]).await;

    let r = env.run("v2", &["--no-switchover"]).await;
    assert!(r.succeeded(), "{:?}", r.error);
    let mut conn = env.conn().await;
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM cites_trade_records").await,
        1,
        "not switched yet"
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) FROM cites_trade_records_staging"
        )
        .await,
        2
    );

    let r = env.run("switch", &["--switchover"]).await;
    assert!(r.succeeded(), "{:?}", r.error);
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM cites_trade_records").await,
        2
    );
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM cites_trade_records_old").await,
        1
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT total_trade_records::bigint FROM species_trade_summary"
        )
        .await,
        2
    );

    let r = env.run("rollback", &["--rollback"]).await;
    assert_eq!(r.status, RunStatus::RolledBack, "{:?}", r.error);
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM cites_trade_records").await,
        1
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) FROM cites_trade_records_staging"
        )
        .await,
        2
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT total_trade_records::bigint FROM species_trade_summary"
        )
        .await,
        1
    );
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.reports("rollback").join("report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(json["status"], "rolled_back");

    let r = env.run("cleanup", &["--cleanup"]).await;
    assert!(r.succeeded());
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT tablename::text FROM pg_tables WHERE tablename LIKE 'cites_trade_records%' AND tablename NOT LIKE '%backup%' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(tables, vec![("cites_trade_records".to_owned(),)]);
}

#[tokio::test]
async fn synonyms_map_cites_names_to_the_species_table() {
    let env = Env::new().await;
    std::fs::write(
        env.dir.path().join("species.csv"),
        "scientific_name,common_name\nBranta hutchinsii leucopareia,Aleutian cackling goose\n",
    )
    .unwrap();
    std::fs::write(
        env.dir.path().join("syn.csv"),
        "synonym,scientific_name\nBranta hutchinsii leucopareia,Branta canadensis leucopareia\n",
    )
    .unwrap();
    let mut f = HEADER.to_owned();
    f += &row(1, "2000", "I", "Branta canadensis leucopareia", "1", "US");
    env.write("trade_db_1.csv", f.as_bytes());
    let syn = env.dir.path().join("syn.csv").display().to_string();
    let r = env.run("syn", &["--synonyms-csv", &syn]).await;
    assert!(r.succeeded(), "{:?}", r.error);
    assert_eq!(r.totals.loaded, 1);
    let mut conn = env.conn().await;
    let (name,): (String,) = sqlx::query_as(
        "SELECT s.scientific_name FROM cites_trade_records t JOIN species s ON s.id = t.species_id",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(name, "Branta hutchinsii leucopareia");
}

#[tokio::test]
async fn a_dry_run_writes_nothing() {
    let env = Env::new().await;
    let mut f = HEADER.to_owned();
    f += &row(1, "2000", "I", "Falco rusticolus", "1", "US");
    env.write("trade_db_1.csv", f.as_bytes());
    let r = env.run("dry", &["--dry-run"]).await;
    assert_eq!(r.status, RunStatus::DryRun, "{:?}", r.error);
    assert_eq!(r.totals.loaded, 1);
    let mut conn = env.conn().await;
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        )
        .await,
        0,
        "not even empty tables"
    );
}

async fn wait_for(
    conn: &mut PgConnection,
    sql: &str,
    at_least: i64,
    limit: std::time::Duration,
) -> bool {
    let t0 = std::time::Instant::now();
    while t0.elapsed() < limit {
        let n: Result<(i64,), _> = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&mut *conn)
            .await;
        if matches!(n, Ok((x,)) if x >= at_least) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn resume_after_a_real_kill_has_no_duplicates_and_no_gaps() {
    let env = Env::new().await;
    let opts = etl_examples::cites::generate::GenOptions {
        files: 4,
        rows_per_file: 6_000,
        ..Default::default()
    };
    etl_examples::cites::generate::generate(&env.input(), &opts).unwrap();
    etl_examples::cites::generate::write_species_csv(&env.dir.path().join("species.csv")).unwrap();
    // What a clean run loads, without writing.
    let dry = env.run("dry", &["--dry-run"]).await;
    assert_eq!(dry.status, RunStatus::DryRun, "{:?}", dry.error);
    let expected = dry.totals.loaded as i64;

    let bin = example_binary("cites_trade");
    let mut child = tokio::process::Command::new(&bin)
        .args([
            "--input",
            &env.input().display().to_string(),
            "--species-csv",
            &env.dir.path().join("species.csv").display().to_string(),
            "--report-dir",
            &env.reports("killed").display().to_string(),
            "--parallel",
            "1",
            "--batch-size",
            "500",
            "--no-switchover",
            "-q",
        ])
        .env("DATABASE_URL", env.db.url())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut conn = env.conn().await;
    let started = wait_for(
        &mut conn,
        "SELECT count(*) FROM cites_migration_log WHERE status = 'completed'",
        1,
        std::time::Duration::from_secs(120),
    )
    .await;
    assert!(started, "the first unit never committed");
    child.start_kill().unwrap(); // SIGKILL: no cleanup, no rollback from the client
    child.wait().await.unwrap();
    let done = count(
        &mut conn,
        "SELECT count(*) FROM cites_migration_log WHERE status = 'completed'",
    )
    .await;
    assert!(
        done < 4,
        "the kill came too late to test anything ({done} units done)"
    );
    let staged = count(
        &mut conn,
        "SELECT count(*) FROM cites_trade_records_staging",
    )
    .await;
    let committed = count(&mut conn, "SELECT coalesce(sum(records_inserted), 0)::bigint FROM cites_migration_log WHERE status = 'completed'").await;
    assert_eq!(staged, committed, "only committed units are visible");

    // A committed file edited after the kill: --resume refuses to mix two versions of it.
    let (first,): (String,) = sqlx::query_as(
        "SELECT file_name FROM cites_migration_log WHERE status = 'completed' ORDER BY file_name LIMIT 1",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let path = env.input().join(&first);
    let original = std::fs::read(&path).unwrap();
    let mut edited = original.clone();
    edited
        .extend_from_slice(row(999_999_999, "2001", "I", "Falco rusticolus", "1", "US").as_bytes());
    std::fs::write(&path, &edited).unwrap();
    let refused = env.run("killed", &["--resume", "--no-switchover"]).await;
    assert_eq!(refused.status, RunStatus::Failed);
    let err = refused.error.unwrap();
    assert!(
        err.contains(&format!("`{first}` changed since the interrupted run")),
        "{err}"
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) FROM cites_trade_records_staging"
        )
        .await,
        staged,
        "nothing loaded by the refused resume"
    );
    // The file restored: the resume finishes exactly.
    std::fs::write(&path, &original).unwrap();
    let r = env.run("killed", &["--resume", "--no-switchover"]).await;
    assert!(r.succeeded(), "{:?}", r.error);
    assert_eq!(r.totals.loaded as i64, expected);
    assert!(
        r.units
            .iter()
            .any(|u| u.status == etl_core::UnitStatus::Resumed)
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) FROM cites_trade_records_staging"
        )
        .await,
        expected
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(DISTINCT record_id) FROM cites_trade_records_staging"
        )
        .await,
        expected,
        "no duplicates"
    );
    let dry_ids: i64 = expected;
    assert_eq!(
        dry_ids,
        count(
            &mut conn,
            "SELECT count(*) FROM cites_trade_records_staging"
        )
        .await
    );
    // The rejects of all four files are in the report, including the units done before the kill.
    let rejects = std::fs::read_to_string(env.reports("killed").join("rejects.csv")).unwrap();
    assert_eq!(
        rejects.lines().count() as u64 - 1,
        dry.totals.rejected,
        "{rejects}"
    );
    let _ = Path::new("");
}

/// A kill after the switch (here: while the summary rebuild waits for a lock) leaves the
/// new data live and the summary stale; `--plan` says where a resume continues, and
/// `--resume` runs the post-switch steps that were not done.
#[tokio::test]
async fn a_kill_during_the_post_switch_steps_is_finished_by_resume() {
    let env = Env::new().await;
    let mut f = HEADER.to_owned();
    f += &row(1, "2000", "I", "Falco rusticolus", "1", "US");
    env.write("trade_db_1.csv", f.as_bytes());
    assert!(env.run("v1", &[]).await.succeeded());
    env.run("cleanup", &["--cleanup"]).await;
    let mut f = HEADER.to_owned();
    f += &row(2, "2001", "I", "Falco rusticolus", "1", "US");
    f += &row(3, "2002", "I", "Ursus maritimus", "2", "US");
    env.write("trade_db_1.csv", f.as_bytes());

    // Another session holds a lock that lets the summary be read but not rewritten.
    let mut blocker = env.conn().await;
    let mut tx = sqlx::Connection::begin(&mut blocker).await.unwrap();
    sqlx::query("LOCK TABLE species_trade_summary IN SHARE MODE")
        .execute(&mut *tx)
        .await
        .unwrap();
    let bin = example_binary("cites_trade");
    let mut child = tokio::process::Command::new(&bin)
        .args([
            "--input",
            &env.input().display().to_string(),
            "--species-csv",
            &env.dir.path().join("species.csv").display().to_string(),
            "--report-dir",
            &env.reports("killed").display().to_string(),
            "-q",
        ])
        .env("DATABASE_URL", env.db.url())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut conn = env.conn().await;
    let reached = wait_for(
        &mut conn,
        "SELECT count(*) FROM ferry_journal_steps s JOIN ferry_journal_runs r USING (run_id)
          WHERE r.migration = 'cites_trade' AND s.step = 'summary' AND s.state = 'running'
            AND r.started_at = (SELECT max(started_at) FROM ferry_journal_runs)",
        1,
        std::time::Duration::from_secs(120),
    )
    .await;
    assert!(reached, "the summary step never started");
    // One run per target: a second run is refused while the first holds the lock.
    let second = run(
        &env.config("second", &["--resume"]),
        env.db.url(),
        Default::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(second.contains("is being run by run"), "{second}");
    child.start_kill().unwrap(); // SIGKILL
    child.wait().await.unwrap();
    tx.rollback().await.unwrap();

    // Switched: the new release is live, the summary still describes the old one.
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM cites_trade_records").await,
        2
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT sum(total_trade_records)::bigint FROM species_trade_summary"
        )
        .await,
        1,
        "stale summary"
    );
    // A plain run is refused: the unfinished run has switched.
    let plain = run(&env.config("again", &[]), env.db.url(), Default::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(plain.contains("finish it with --resume"), "{plain}");
    // --plan names the step a resume continues at.
    let out = std::process::Command::new(&bin)
        .args(["--plan", "-q"])
        .env("DATABASE_URL", env.db.url())
        .output()
        .unwrap();
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{plan}");
    assert!(
        plan.contains("--resume continues run") && plan.contains("`summary` (it was running"),
        "{plan}"
    );

    let r = env.run("killed", &["--resume"]).await;
    assert!(r.succeeded(), "{:?}", r.error);
    let ran: Vec<&str> = r
        .steps
        .iter()
        .filter(|s| s.outcome == "ran")
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(ran, ["preflight", "summary", "smoke", "analyze"]);
    assert_eq!(r.totals.loaded, 2, "the load's totals are carried over");
    assert_eq!(
        count(
            &mut conn,
            "SELECT sum(total_trade_records)::bigint FROM species_trade_summary"
        )
        .await,
        2,
        "summary rebuilt"
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) FROM ferry_journal_steps s JOIN ferry_journal_runs r USING (run_id)
              WHERE r.run_id = (SELECT run_id FROM ferry_journal_runs ORDER BY started_at DESC LIMIT 1)
                AND r.state = 'done' AND s.step IN ('summary', 'analyze') AND s.state = 'done'"
        )
        .await,
        2,
        "the journal says done"
    );
}

/// The target is always explicit: a blank URL is an error; no URL at all runs on a
/// throwaway cluster and the run says so, at its start and in its report.
#[tokio::test]
async fn a_blank_target_is_an_error_and_no_target_says_throwaway() {
    let dir = tempfile::tempdir().unwrap();
    let bin = example_binary("cites_trade");
    for (env, args) in [(Some(""), vec![]), (None, vec!["--database-url", ""])] {
        let mut cmd = std::process::Command::new(&bin);
        cmd.args([
            "--report-dir",
            &dir.path().join("blank").display().to_string(),
        ]);
        cmd.args(&args).env_remove("DATABASE_URL");
        if let Some(v) = env {
            cmd.env("DATABASE_URL", v);
        }
        let o = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("empty"), "{err}");
        assert!(!dir.path().join("blank/report.json").exists());
    }
    let report = dir.path().join("local");
    let o = std::process::Command::new(&bin)
        .args(["--report-dir", &report.display().to_string()])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("target: throwaway local PostgreSQL"), "{err}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.join("report.json")).unwrap()).unwrap();
    let target = json["target"].as_str().unwrap();
    assert!(
        target.contains("nothing reached a real database"),
        "{target}"
    );
    let summary = std::fs::read_to_string(report.join("summary.txt")).unwrap();
    assert!(
        summary.contains("target      throwaway local PostgreSQL"),
        "{summary}"
    );
}

/// A PostgreSQL restart (`pg_ctl restart -m fast`) in the middle of a load: the units it
/// cut are retried, the run completes, and the staging table holds every row exactly once.
#[tokio::test]
async fn a_server_restart_mid_load_is_retried_to_exact_counts() {
    let dir = tempfile::tempdir().unwrap();
    // A server of its own: restarting the shared test server would cut other tests.
    let pg = etl_testkit::TempPostgres::start(dir.path().join("pg"))
        .await
        .unwrap();
    let input = dir.path().join("in");
    // Long enough units (several seconds each on 2 cores) that the restart, which can take
    // a second or two to begin on a loaded machine, lands while the rest of the load runs.
    let opts = etl_examples::cites::generate::GenOptions {
        files: 4,
        rows_per_file: 60_000,
        ..Default::default()
    };
    etl_examples::cites::generate::generate(&input, &opts).unwrap();
    let species = dir.path().join("species.csv");
    etl_examples::cites::generate::write_species_csv(&species).unwrap();
    let child = tokio::process::Command::new(example_binary("cites_trade"))
        .args([
            "--input",
            &input.display().to_string(),
            "--species-csv",
            &species.display().to_string(),
            "--report-dir",
            &dir.path().join("reports").display().to_string(),
            "--parallel",
            "1",
            "--batch-size",
            "500",
            "--no-switchover",
            "-q",
        ])
        .env("DATABASE_URL", pg.url())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut conn = PgConnection::connect(pg.url()).await.unwrap();
    let started = wait_for(
        &mut conn,
        "SELECT count(*) FROM cites_migration_log WHERE status = 'completed'",
        1,
        std::time::Duration::from_secs(120),
    )
    .await;
    assert!(started, "the first unit never committed");
    drop(conn);
    pg.restart().await.unwrap();
    let out = child.wait_with_output().await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("reports/report.json")).unwrap())
            .unwrap();
    let retries = support::unit_retries(&report);
    eprintln!("{err}"); // the example's log, shown when an assertion fails
    assert!(retries >= 1, "a unit was retried: {}", report["units"]);
    let loaded = report["totals"]["loaded"].as_i64().unwrap();
    let mut conn = PgConnection::connect(pg.url()).await.unwrap();
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) FROM cites_trade_records_staging"
        )
        .await,
        loaded
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(DISTINCT record_id) FROM cites_trade_records_staging"
        )
        .await,
        loaded,
        "no duplicates"
    );
    assert_eq!(
        report["totals"]["read"].as_i64().unwrap(),
        4 * 60_000,
        "every record read once"
    );
}

/// A unit's COMMIT reaches the server and commits, but its answer is lost (the connection
/// drops): the runner asks the ledger on a new connection, keeps the unit as committed,
/// and neither loads it twice nor fails the run.
#[tokio::test]
async fn a_lost_commit_answer_is_checked_and_the_unit_is_not_loaded_twice() {
    let env = Env::new().await;
    let opts = etl_examples::cites::generate::GenOptions {
        files: 3,
        rows_per_file: 2_000,
        ..Default::default()
    };
    etl_examples::cites::generate::generate(&env.input(), &opts).unwrap();
    etl_examples::cites::generate::write_species_csv(&env.dir.path().join("species.csv")).unwrap();
    let dry = env.run("dry", &["--dry-run"]).await;
    let expected = dry.totals.loaded as i64;
    // The proxy loses the answer to the second COMMIT that follows COPY data.
    let url = env.db.url();
    let port: u16 = url
        .rsplit_once(':')
        .unwrap()
        .1
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let proxy =
        etl_testkit::PgFaultProxy::start(port, etl_testkit::PgFault::LoseCommitAck { nth: 2 })
            .await
            .unwrap();
    let via_proxy = format!(
        "{}{}{}?sslmode=disable",
        &url[..url.rfind(':').unwrap() + 1],
        proxy.port(),
        &url[url.rfind('/').unwrap()..]
    );
    let cfg = env.config("lost", &["--no-switchover"]);
    let r = run(&cfg, &via_proxy, Default::default()).await.unwrap();
    assert_eq!(proxy.fired(), 1, "the fault fired");
    assert!(r.succeeded(), "{:?}", r.error);
    assert_eq!(r.totals.loaded as i64, expected);
    assert_eq!(
        r.totals.counters.get("commit_outcome_checked"),
        Some(&1),
        "{:?}",
        r.totals.counters
    );
    assert!(
        r.units.iter().all(|u| u.retries == 0),
        "nothing was loaded again"
    );
    let mut conn = env.conn().await;
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) FROM cites_trade_records_staging"
        )
        .await,
        expected
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(DISTINCT record_id) FROM cites_trade_records_staging"
        )
        .await,
        expected,
        "no duplicates"
    );
}

/// Backup → a new release → `--restore`: every table the run changed (trade records,
/// both summaries, species) is back with the checksum it had before the run.
#[tokio::test]
async fn restore_gives_back_every_changed_table() {
    use etl_sink_postgres::backup::table_checksum;
    use etl_sink_postgres::ident::TableName;
    let env = Env::new().await;
    let mut f1 = HEADER.to_owned();
    f1 += &row(1, "2000", "I", "Falco rusticolus", "1", "NA");
    f1 += &row(2, "2004", "II", "Ursus maritimus", "12.75", "US");
    env.write("trade_db_1.csv", f1.as_bytes());
    let r = env.run("v1", &[]).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
    env.run("cleanup", &["--cleanup"]).await;
    let mut conn = env.conn().await;
    let tables = [
        "cites_trade_records",
        "species_trade_summary",
        "species_trade_summary_annual",
        "species",
    ]
    .map(TableName::new);
    let mut before = Vec::new();
    for t in &tables {
        before.push(table_checksum(&mut conn, t).await.unwrap());
    }
    // The next release changes all four (a new species, other rows).
    std::fs::write(
        env.dir.path().join("species.csv"),
        format!("{SPECIES}Vulpes lagopus,Arctic Fox\n"),
    )
    .unwrap();
    let mut f2 = HEADER.to_owned();
    f2 += &row(3, "2020", "II", "Vulpes lagopus", "5", "CA");
    env.write("trade_db_1.csv", f2.as_bytes());
    let r = env.run("v2", &[]).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
    let backup = &r.steps.iter().find(|s| s.name == "backup").unwrap().details;
    let dir = backup["dir"].as_str().unwrap().to_owned();
    assert_eq!(backup["manifest"]["tables"][0]["rows"], 2, "{backup}");
    for (t, b) in tables.iter().zip(&before) {
        assert_ne!(
            &table_checksum(&mut conn, t).await.unwrap(),
            b,
            "{t} changed"
        );
    }
    let o = std::process::Command::new(example_binary("cites_trade"))
        .args(["--restore", &dir, "--report-dir"])
        .arg(env.reports("restore"))
        .env("DATABASE_URL", env.db.url())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("restored cites_trade_records (2 rows"),
        "{out}"
    );
    for (t, b) in tables.iter().zip(&before) {
        assert_eq!(
            &table_checksum(&mut conn, t).await.unwrap(),
            b,
            "{t} restored"
        );
    }
}

/// The gates before the switch: Ids of the live table missing from the release (vetoed
/// with `--max-dropped-ids 0`, reported otherwise) and a wrong `--expect-rows` leave
/// production untouched.
#[tokio::test]
async fn dropped_ids_and_expected_rows_gate_the_switch() {
    let env = Env::new().await;
    let release = |ids: &[u64]| {
        let mut f = HEADER.to_owned();
        for id in ids {
            f += &row(*id, "2010", "II", "Ursus maritimus", "1", "CA");
        }
        env.write("trade_db_1.csv", f.as_bytes());
    };
    release(&[1, 2, 3]);
    assert_eq!(env.run("v1", &[]).await.status, RunStatus::Succeeded);
    env.run("cleanup", &["--cleanup"]).await;
    let mut conn = env.conn().await;
    let live_ids = "SELECT sum(record_id::bigint)::bigint FROM cites_trade_records";
    release(&[2, 3, 4]);
    let gate = |r: &etl_core::RunReport, check: &str| {
        let f = r.validation.iter().find(|f| f.check == check);
        f.cloned()
            .unwrap_or_else(|| panic!("no {check} in {:?}", r.validation))
    };
    let r = env.run("strict", &["--max-dropped-ids", "0"]).await;
    assert_eq!(r.status, RunStatus::Failed);
    let f = gate(&r, "dropped_ids");
    assert!(
        !f.passed && f.message.contains("1 record Ids") && f.message.contains("sample: 1"),
        "{f:?}"
    );
    assert_eq!(count(&mut conn, live_ids).await, 6, "production untouched");
    let r = env.run("count", &["--expect-rows", "5"]).await;
    assert_eq!(r.status, RunStatus::Failed);
    assert!(!gate(&r, "expected_rows").passed);
    assert_eq!(count(&mut conn, live_ids).await, 6, "production untouched");
    let r = env.run("reported", &["--expect-rows", "3"]).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
    let f = gate(&r, "dropped_ids");
    assert!(!f.passed && !f.vetoes(), "reported, not vetoed: {f:?}");
    assert_eq!(count(&mut conn, live_ids).await, 9);
    // migration_stats_pre: one row per run that found a live table.
    assert!(count(&mut conn, "SELECT count(*) FROM migration_stats_pre").await >= 3);
    assert!(
        env.reports("reported")
            .join("migration_stats_pre.csv")
            .exists()
    );
}

/// An index missing from staging makes a proof query slower than on live, and the gate
/// vetoes the switch.
#[tokio::test]
async fn a_missing_index_on_staging_vetoes_the_switch() {
    let env = Env::new().await;
    let opts = etl_examples::cites::generate::GenOptions {
        files: 2,
        rows_per_file: 25_000,
        ..Default::default()
    };
    etl_examples::cites::generate::generate(&env.input(), &opts).unwrap();
    etl_examples::cites::generate::write_species_csv(&env.dir.path().join("species.csv")).unwrap();
    // The default floor (5 ms) for the runs that must pass; a small one for the gate
    // that must veto (a sequential scan of 50,000 rows against an index lookup).
    let fast = ["--min-match-rate", "0", "--max-reject-rate", "1"];
    let r = env.run("v1", &fast).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
    env.run("cleanup", &["--cleanup"]).await;
    let mut conn = env.conn().await;
    let live = count(&mut conn, "SELECT count(*) FROM cites_trade_records").await;
    let mut args = fast.to_vec();
    args.push("--no-switchover");
    let r = env.run("v2", &args).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
    assert!(
        r.validation
            .iter()
            .any(|f| f.check == "query:species_recent_years" && f.passed)
    );
    sqlx::raw_sql(
        "DO $$ DECLARE i text; BEGIN
           FOR i IN SELECT indexname FROM pg_indexes WHERE tablename = 'cites_trade_records_staging'
                     AND indexdef LIKE '%(species_id%' LOOP EXECUTE format('DROP INDEX %I', i); END LOOP;
         END $$",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let mut args = fast.to_vec();
    args.extend(["--only", "gates", "--query-floor-ms", "0.2"]);
    let r = env.run("gates", &args).await;
    assert_eq!(r.status, RunStatus::Failed);
    let f = r
        .validation
        .iter()
        .find(|f| f.check == "query:species_recent_years")
        .unwrap();
    assert!(f.vetoes(), "{f:?}");
    let gates = &r.steps.iter().find(|s| s.name == "gates").unwrap().details;
    let plan = |i: usize, t: &str| gates["queries"][i][t].as_str().unwrap().to_owned();
    assert!(
        plan(0, "live_plan").contains("idx_cites_trade_species_year"),
        "{gates}"
    );
    assert!(!plan(0, "new_plan").contains("species_year"), "{gates}");
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM cites_trade_records").await,
        live
    );
    let cfg = env.config("switch", &["--switchover"]);
    let err = run(&cfg, env.db.url(), Default::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is `failed`"), "{err}");
}
