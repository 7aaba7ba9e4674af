//! `ferry guess` and `ferry load` (the real binary) on CSV files they have never seen, into
//! a real PostgreSQL: the dialect and the types are right, NULL markers are NULL, a bad
//! value past the sample is rejected with its file and line, a second load replaces the
//! first.

mod support;

use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use sqlx::{Connection, PgConnection};

/// Trips: `;`-delimited, `NA` for missing values, a header that is not SQL names, one
/// gzip file; `bad_line` (1-based, counting the header) of the second file has a fare
/// that is not a number.
fn write_files(dir: &Path, rows: usize, bad_line: usize) {
    let header = "Trip Id;Started At;Distance km;Fare;Member;Station\n";
    for f in 1..=2 {
        let mut body = String::from(header);
        for i in 0..rows {
            let id = f * 1000 + i;
            let dist = if i % 5 == 0 {
                "NA".to_owned()
            } else {
                format!("{}.{}", i % 9, i % 7)
            };
            let station = if i % 7 == 0 { "NA" } else { "Gare de l'Est" };
            let fare = if f == 2 && i + 2 == bad_line {
                "twelve".to_owned()
            } else {
                format!("{}.{:02}", 5 + i % 10, i % 100)
            };
            let member = if i % 2 == 0 { "true" } else { "false" };
            body.push_str(&format!(
                "{id};2024-03-{:02} 08:{:02}:00;{dist};{fare};{member};{station}\n",
                1 + i % 28,
                i % 60
            ));
        }
        if f == 1 {
            std::fs::write(dir.join("trips_1.csv"), body).unwrap();
        } else {
            let file = std::fs::File::create(dir.join("trips_2.csv.gz")).unwrap();
            let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
            gz.write_all(body.as_bytes()).unwrap();
            gz.finish().unwrap();
        }
    }
}

fn ferry(args: &[&str]) -> std::process::Output {
    support::ferry_with(args, &[])
}

#[tokio::test]
async fn guess_then_load_files_never_seen() {
    let db = etl_testkit::TestDb::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_files(&data, 200, 150);
    let glob = format!("{}/trips_*", data.display());

    // guess: the dialect, the types and the evidence, from the first 100 rows of each file.
    let out = ferry(&["guess", &glob, "--sample-rows", "100"]);
    assert!(out.status.success());
    let job = String::from_utf8(out.stdout).unwrap();
    for want in [
        "delimiter = \";\"",
        "null_markers = [\"NA\"]",
        "{ name = \"Trip Id\", type = \"int32\", nullable = false }",
        "{ name = \"Started At\", type = \"timestamp\", nullable = false }",
        "{ name = \"Fare\", type = \"decimal(18,2)\", nullable = false }",
        "{ name = \"Member\", type = \"bool\", nullable = false }",
        "{ name = \"Station\", type = \"text\" }",
        "\"Trip Id\" = \"trip_id\"",
    ] {
        assert!(job.contains(want), "missing {want:?} in\n{job}");
    }
    assert!(job.contains("40 NULL") || job.contains("NULL"), "{job}");

    // load: the table is created, the bad fare (line 150 of the gzip file, past the sample)
    // is rejected with its line, everything else loads.
    let url = format!("{}?table=trips", db.url());
    let reports = dir.path().join("reports");
    let r = reports.display().to_string();
    let load = [
        "load",
        &glob,
        &url,
        "--sample-rows",
        "100",
        "--max-reject-rate",
        "0.1",
        "--report-dir",
        &r,
        "-q",
    ];
    let out = ferry(&load);
    assert!(out.status.success(), "ferry load failed");
    let mut conn = PgConnection::connect(db.url()).await.unwrap();
    let types: Vec<(String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns WHERE table_name = 'trips' ORDER BY ordinal_position",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let types: Vec<(&str, &str)> = types
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        types,
        [
            ("trip_id", "integer"),
            ("started_at", "timestamp without time zone"),
            ("distance_km", "numeric"),
            ("fare", "numeric"),
            ("member", "boolean"),
            ("station", "text"),
        ]
    );
    let (rows, null_dist, null_station, members): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE distance_km IS NULL), count(*) FILTER (WHERE station IS NULL), count(*) FILTER (WHERE member) FROM trips",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(rows, 399, "400 rows, one rejected");
    assert_eq!(null_dist, 80, "every fifth distance is NA");
    assert_eq!(null_station, 58, "every seventh station is NA");
    assert_eq!(members, 199, "half are members; the rejected row was one");
    let rejects: Vec<(String, i32, String)> = sqlx::query_as(
        "SELECT file_name::text, line_number, error_message FROM ferry_import_errors",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert_eq!(
        (rejects[0].0.as_str(), rejects[0].1),
        ("trips_2.csv.gz", 150),
        "{rejects:?}"
    );
    assert!(
        rejects[0].2.contains("Fare") && rejects[0].2.contains("twelve"),
        "{rejects:?}"
    );
    let report = std::fs::read_to_string(reports.join("report.json")).unwrap();
    assert!(report.contains("\"rejected\": 1"), "{report}");
    assert!(reports.join("load_trips.toml").exists());

    // A second load replaces the table (the previous one is dropped first).
    let out = ferry(&load);
    assert!(out.status.success(), "the second load failed");
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM trips")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 399);
}

/// `ferry guess` of a PostgreSQL table: its key and types from the catalog; the job it
/// writes copies the table.
#[tokio::test]
async fn guess_a_postgres_table_and_copy_it() {
    let db = etl_testkit::TestDb::create().await.unwrap();
    let mut conn = PgConnection::connect(db.url()).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE orders (order_no bigint PRIMARY KEY, placed date NOT NULL, total numeric(10,2), note text);
         INSERT INTO orders SELECT g, date '2024-01-01' + g % 300, g * 1.25, CASE WHEN g % 4 = 0 THEN NULL ELSE 'n' || g END
           FROM generate_series(1, 1000) g",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("copy.toml");
    let src = format!("{}?table=orders", db.url());
    let out = ferry(&[
        "guess",
        &src,
        "--table",
        "orders_copy",
        "-o",
        &job.display().to_string(),
    ]);
    assert!(out.status.success());
    let text = std::fs::read_to_string(&job).unwrap();
    for want in [
        "kind = \"postgres\"",
        "key = \"order_no\"",
        "table = \"orders_copy\"",
        "\"total\" numeric(10,2)",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let r = dir.path().join("r").display().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["run", &job.display().to_string(), "--report-dir", &r, "-q"])
        .env("SOURCE_URL", db.url())
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    let same: bool = sqlx::query_scalar(
        "SELECT (SELECT array_agg(o ORDER BY order_no)::text FROM orders o) = (SELECT array_agg(c ORDER BY order_no)::text FROM orders_copy c)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(same, "the copy has the same rows");
}
