//! Job files with every source format, transform and PostgreSQL mode, run by the real
//! `ferry` binary against a real PostgreSQL.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{BrotliLevel, Compression, GzipLevel, ZstdLevel};
use parquet::file::properties::WriterProperties;
use sqlx::{Connection, PgConnection};

fn ferry(args: &[&str], url: &str) -> std::process::Output {
    support::ferry_with(args, &[("DATABASE_URL", url)])
}

async fn one<T>(conn: &mut PgConnection, sql: &str) -> T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    let (v,): (T,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(conn)
        .await
        .unwrap();
    v
}

/// Parquet files in four codecs (zstd, lz4, gzip, brotli) append into a table; a value
/// the cast refuses is rejected with its row; the gate counts the table.
#[tokio::test]
async fn parquet_of_every_codec_appends_with_a_cast() {
    let db = etl_testkit::TestDb::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("in")).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("amount", DataType::Utf8, true),
    ]));
    let codecs = [
        ("zstd", Compression::ZSTD(ZstdLevel::default())),
        ("lz4", Compression::LZ4_RAW),
        ("gzip", Compression::GZIP(GzipLevel::default())),
        ("brotli", Compression::BROTLI(BrotliLevel::default())),
    ];
    for (i, (name, codec)) in codecs.into_iter().enumerate() {
        let ids: Vec<i64> = (0..100).map(|k| i as i64 * 100 + k).collect();
        let amounts: Vec<Option<String>> = ids
            .iter()
            .map(|k| match k {
                250 => Some("n/a".to_owned()),
                k if k % 10 == 0 => None,
                k => Some(format!("{}.{:02}", k, k % 100)),
            })
            .collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(amounts)),
            ],
        )
        .unwrap();
        let props = WriterProperties::builder().set_compression(codec).build();
        let f =
            std::fs::File::create(dir.path().join(format!("in/part_{i}_{name}.parquet"))).unwrap();
        let mut w = ArrowWriter::try_new(f, schema.clone(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }
    let job = r#"
[job]
name = "payments"

[source]
kind = "parquet"
path = "in/*.parquet"

[[transform]]
kind = "cast"
columns = { amount = "decimal(12,2)" }

[target]
kind = "postgres"
url = "${DATABASE_URL}"
table = "payments"
mode = "append"
create = "CREATE TABLE IF NOT EXISTS payments (id bigint PRIMARY KEY, amount numeric(12,2))"

[[gate]]
check = "row_count"
"#;
    let path = dir.path().join("payments.toml");
    std::fs::write(&path, job).unwrap();
    let (p, r) = (
        path.display().to_string(),
        dir.path().join("r").display().to_string(),
    );
    let out = ferry(&["validate", &p], db.url());
    assert!(out.status.success());
    let out = ferry(&["run", &p, "--report-dir", &r, "-q"], db.url());
    assert!(out.status.success());
    let mut conn = PgConnection::connect(db.url()).await.unwrap();
    assert_eq!(
        one::<i64>(&mut conn, "SELECT count(*) FROM payments").await,
        399
    );
    assert_eq!(
        one::<i64>(
            &mut conn,
            "SELECT count(*) FROM payments WHERE amount IS NULL"
        )
        .await,
        39,
        "every tenth is NULL, but 250 was n/a"
    );
    let sum: String = one(&mut conn, "SELECT sum(amount)::text FROM payments").await;
    let want: i64 = (0..400)
        .filter(|k| k % 10 != 0 && *k != 250)
        .map(|k| k * 100 + k % 100)
        .sum();
    assert_eq!(sum, format!("{}.{:02}", want / 100, want % 100));
    let reason: String = one(&mut conn, "SELECT error_message FROM ferry_import_errors").await;
    assert!(
        reason.contains("amount") && reason.contains("n/a"),
        "{reason}"
    );
    // An appended run cannot be rolled back: refused before anything is undone.
    let out = ferry(&["run", &p, "--rollback", "--report-dir", &r], db.url());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("appended"));
}

const USERS_V1: &str = "email,name,country,password,signup\n\
ada@example.org,Ada,GB,s3cret,2024-01-02\n\
bob@example.org,,FR,hunter2,2024-02-03\n\
eve@example.org,Eve,XX,pw,2024-03-04\n\
zed@example.org,Zed,ZZ,pw,2024-03-05\n\
kim@example.org,Kim,FR,pw,not a date\n\
,Nobody,GB,pw,2024-03-06\n";

const COUNTRIES: &str = "code,id\n\
GB,00000000-0000-0000-0000-0000000000b1\n\
FR,00000000-0000-0000-0000-0000000000f1\n\
XX,00000000-0000-0000-0000-0000000000ff\n";

const USERS_JOB: &str = r#"
[job]
name = "users"

[source]
kind = "csv"
path = "users.csv"
columns = [
  { name = "email" }, { name = "name" }, { name = "country" }, { name = "password" }, { name = "signup" },
]

[[transform]]
kind = "rules"
rules = [{ column = "email", required = true }]

[[transform]]
kind = "filter"
column = "country"
drop = ["XX"]
reason = "test accounts"

[[transform]]
kind = "default"
column = "name"
value = "(unknown)"

[[transform]]
kind = "lookup"
column = "country"
id_column = "country_id"
csv = "countries.csv"

[[transform]]
kind = "uuid"
column = "id"
from = ["email"]
namespace = "8c0b7e3e-2a61-4c55-9d37-0c8e8b5c1a01"
mapping_table = "user_ids"

[[transform]]
kind = "bcrypt"
column = "password"
cost = 4

[[transform]]
kind = "cast"
columns = { signup = "date" }

[[transform]]
kind = "drop"
columns = ["country"]

[target]
kind = "postgres"
url = "${DATABASE_URL}"
table = "users"
mode = "upsert"
keys = ["id"]
create = """CREATE TABLE IF NOT EXISTS users (id uuid PRIMARY KEY, email text NOT NULL,
  name text NOT NULL, country_id uuid NOT NULL, password_hash text, signup date)"""

[[gate]]
check = "no_duplicates"
columns = ["email"]

[[post_switch]]
name = "analyze"
sql = "ANALYZE users"
"#;

/// A CSV of users upserted with every transform: rules, filter, default, a lookup through
/// a CSV, UUIDv5 ids with their mapping table, bcrypt, cast, drop. A second run with one
/// change updates one row; --rollback restores it.
#[tokio::test]
async fn csv_upsert_with_every_transform() {
    let db = etl_testkit::TestDb::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.csv"), USERS_V1).unwrap();
    std::fs::write(dir.path().join("countries.csv"), COUNTRIES).unwrap();
    let path = dir.path().join("users.toml");
    std::fs::write(&path, USERS_JOB).unwrap();
    let p = path.display().to_string();
    let r1 = dir.path().join("r1").display().to_string();
    let out = ferry(&["run", &p, "--report-dir", &r1, "-q"], db.url());
    assert!(out.status.success());
    let mut conn = PgConnection::connect(db.url()).await.unwrap();
    // ada, bob loaded; eve filtered (XX), zed unmatched (ZZ), kim rejected (date), the
    // empty e-mail rejected (rule).
    assert_eq!(one::<i64>(&mut conn, "SELECT count(*) FROM users").await, 2);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("r1/report.json")).unwrap())
            .unwrap();
    let t = &report["totals"];
    assert_eq!(
        (
            t["read"].as_u64(),
            t["loaded"].as_u64(),
            t["rejected"].as_u64(),
            t["filtered"].as_u64()
        ),
        (Some(6), Some(2), Some(2), Some(2))
    );
    let unmatched = &report["extra"]["lookup_country"]["unmatched"];
    assert_eq!(unmatched[0]["value"], "ZZ", "{report}");
    let bob: (String, String, String) = sqlx::query_as(
        "SELECT name, country_id::text, password_hash FROM users WHERE email = 'bob@example.org'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(bob.0, "(unknown)");
    assert_eq!(bob.1, "00000000-0000-0000-0000-0000000000f1");
    assert!(
        bcrypt::verify("hunter2", &bob.2).unwrap(),
        "the hash verifies"
    );
    let id: String = one(
        &mut conn,
        "SELECT id::text FROM users WHERE email = 'ada@example.org'",
    )
    .await;
    let ns = uuid::Uuid::parse_str("8c0b7e3e-2a61-4c55-9d37-0c8e8b5c1a01").unwrap();
    assert_eq!(id, uuid::Uuid::new_v5(&ns, b"ada@example.org").to_string());
    let mapped: String = one(
        &mut conn,
        "SELECT id::text FROM user_ids WHERE key = 'ada@example.org'",
    )
    .await;
    assert_eq!(mapped, id);

    // Second run: Ada renamed; upsert changes one row and inserts none.
    std::fs::write(
        dir.path().join("users.csv"),
        USERS_V1.replace(",Ada,", ",Ada L.,"),
    )
    .unwrap();
    let r2 = dir.path().join("r2").display().to_string();
    let out = ferry(&["run", &p, "--report-dir", &r2, "-q"], db.url());
    assert!(out.status.success());
    assert_eq!(one::<i64>(&mut conn, "SELECT count(*) FROM users").await, 2);
    assert_eq!(
        one::<String>(
            &mut conn,
            "SELECT name FROM users WHERE email = 'ada@example.org'"
        )
        .await,
        "Ada L."
    );
    let out = ferry(
        &[
            "run",
            &p,
            "--rollback",
            "--report-dir",
            &dir.path().join("r3").display().to_string(),
            "-q",
        ],
        db.url(),
    );
    assert!(out.status.success());
    assert_eq!(
        one::<String>(
            &mut conn,
            "SELECT name FROM users WHERE email = 'ada@example.org'"
        )
        .await,
        "Ada"
    );
    let status = ferry(&["status", &p], db.url());
    assert!(String::from_utf8_lossy(&status.stdout).contains("rolled_back"));
}

/// CSV to Parquet files (one per input file), resumable by file.
#[tokio::test]
async fn csv_to_parquet() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("in")).unwrap();
    for f in 1..=3 {
        let rows: String = (0..50)
            .map(|i| format!("{},{}\n", f * 100 + i, i % 7))
            .collect();
        std::fs::write(
            dir.path().join(format!("in/n_{f}.csv")),
            format!("id,v\n{rows}"),
        )
        .unwrap();
    }
    let job = "[job]\nname = \"to_parquet\"\n\n[source]\nkind = \"csv\"\npath = \"in/n_*.csv\"\n\
columns = [{ name = \"id\", type = \"int64\" }, { name = \"v\", type = \"int32\" }]\n\n\
[target]\nkind = \"parquet\"\ndir = \"out\"\n";
    let path = dir.path().join("p.toml");
    std::fs::write(&path, job).unwrap();
    let r = dir.path().join("r").display().to_string();
    let prom = dir.path().join("metrics.prom");
    let (p, m) = (path.display().to_string(), prom.display().to_string());
    let out = ferry(
        &["run", &p, "--report-dir", &r, "-q", "--metrics-file", &m],
        "",
    );
    assert!(out.status.success());
    // The metrics file and report.html of a ferry run.
    let metrics = std::fs::read_to_string(&prom).unwrap();
    let loaded = metrics
        .lines()
        .find(|l| l.starts_with("ferry_rows_loaded_total{"))
        .unwrap_or_else(|| panic!("no loaded rows in\n{metrics}"));
    assert!(loaded.ends_with(" 150"), "{loaded}");
    let html = std::fs::read_to_string(Path::new(&r).join("report.html")).unwrap();
    assert!(html.contains("to_parquet") && html.contains("150"));
    let mut rows = 0;
    for e in std::fs::read_dir(dir.path().join("out")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "parquet") {
            rows += etl_parquet::file_rows(&p).unwrap();
        }
    }
    assert_eq!(rows, 150);
    assert!(
        Path::new(&r).join("journal").exists(),
        "the journal of a file target is a file"
    );
}

/// `ferry run` killed (SIGKILL) right after its load and right after its switch committed:
/// production is exactly the old or exactly the new table at the kill, and `--resume`
/// finishes with the new rows, no duplicates, no gaps.
#[tokio::test]
async fn a_killed_run_resumes_exactly() {
    use std::io::{BufRead as _, BufReader};
    let db = etl_testkit::TestDb::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("in")).unwrap();
    for f in 1..=4 {
        let rows: String = (0..500)
            .map(|i| format!("{},{}\n", f * 1000 + i, i % 13))
            .collect();
        std::fs::write(
            dir.path().join(format!("in/k_{f}.csv")),
            format!("id,v\n{rows}"),
        )
        .unwrap();
    }
    let job = "[job]\nname = \"killed\"\n\n[source]\nkind = \"csv\"\npath = \"in/k_*.csv\"\n\
columns = [{ name = \"id\", type = \"int64\", nullable = false }, { name = \"v\", type = \"int32\" }]\n\n\
[target]\nkind = \"postgres\"\nurl = \"${DATABASE_URL}\"\ntable = \"k\"\n\
create = \"CREATE TABLE IF NOT EXISTS k (id bigint PRIMARY KEY, v integer)\"\n\n\
[[gate]]\ncheck = \"row_count\"\n";
    let path = dir.path().join("k.toml");
    std::fs::write(&path, job).unwrap();
    let p = path.display().to_string();
    let mut conn = PgConnection::connect(db.url()).await.unwrap();
    sqlx::raw_sql("CREATE TABLE k (id bigint PRIMARY KEY, v integer)")
        .execute(&mut conn)
        .await
        .unwrap();
    for (i, (at, switched)) in [("load:after", false), ("switch:after", true)]
        .into_iter()
        .enumerate()
    {
        // Production before the run: two rows.
        sqlx::raw_sql("TRUNCATE k; INSERT INTO k VALUES (1, 1), (2, 2)")
            .execute(&mut conn)
            .await
            .unwrap();
        let r = dir.path().join(format!("r{i}")).display().to_string();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["run", &p, "--report-dir", &r, "-q"])
            .env("DATABASE_URL", db.url())
            .env("FERRY_TEST_PAUSE_AT", at)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let paused = stderr
            .lines()
            .map_while(Result::ok)
            .any(|l| l.starts_with("FERRY_TEST_PAUSED"));
        assert!(paused, "ferry did not reach {at}");
        child.kill().unwrap();
        child.wait().unwrap();
        let n: i64 = one(&mut conn, "SELECT count(*) FROM k").await;
        assert_eq!(
            n,
            if switched { 2000 } else { 2 },
            "killed at {at}: production is exactly old or new"
        );
        let out = ferry(&["run", &p, "--resume", "--report-dir", &r, "-q"], db.url());
        assert!(out.status.success(), "resume after {at}");
        let (n, distinct, sum): (i64, i64, i64) =
            sqlx::query_as("SELECT count(*), count(DISTINCT id), sum(id)::bigint FROM k")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        let want: i64 = (1..=4)
            .map(|f| (0..500).map(|i| f * 1000 + i).sum::<i64>())
            .sum();
        assert_eq!(
            (n, distinct, sum),
            (2000, 2000, want),
            "after resuming from {at}"
        );
        // The next run needs the previous table dropped.
        let out = ferry(
            &["run", &p, "--cleanup", "--report-dir", &r, "-q"],
            db.url(),
        );
        assert!(out.status.success());
    }
}

/// `backup = true`: a `pg_dump` of the table before the run; `ferry run --restore DIR`
/// puts the table back as it was, checked against the backup's manifest.
#[tokio::test]
async fn a_backup_is_restored() {
    let db = etl_testkit::TestDb::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rows: String = (0..100).map(|i| format!("{i},{}\n", i * 2)).collect();
    std::fs::write(dir.path().join("b.csv"), format!("id,v\n{rows}")).unwrap();
    let job = "[job]\nname = \"backed_up\"\n\n[source]\nkind = \"csv\"\npath = \"b.csv\"\n\
columns = [{ name = \"id\", type = \"int64\", nullable = false }, { name = \"v\", type = \"int64\" }]\n\n\
[target]\nkind = \"postgres\"\nurl = \"${DATABASE_URL}\"\ntable = \"b\"\nbackup = true\n";
    let path = dir.path().join("b.toml");
    std::fs::write(&path, job).unwrap();
    let mut conn = PgConnection::connect(db.url()).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE b (id bigint PRIMARY KEY, v bigint); INSERT INTO b VALUES (7, 7), (8, 8)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let (p, r) = (
        path.display().to_string(),
        dir.path().join("r").display().to_string(),
    );
    let out = ferry(&["run", &p, "--report-dir", &r, "-q"], db.url());
    assert!(out.status.success());
    assert_eq!(one::<i64>(&mut conn, "SELECT count(*) FROM b").await, 100);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("r/report.json")).unwrap())
            .unwrap();
    let backup = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "backup")
        .unwrap_or_else(|| panic!("no backup step in {report}"));
    let backup_dir = backup["details"]["dir"].as_str().unwrap().to_owned();
    let out = ferry(
        &["run", &p, "--restore", &backup_dir, "--report-dir", &r],
        db.url(),
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("restored"));
    let rows: Vec<(i64, i64)> = sqlx::query_as("SELECT id, v FROM b ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows, [(7, 7), (8, 8)], "the table as it was before the run");
}
