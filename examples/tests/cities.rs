//! The "your own migration" example (`examples/examples/cities.rs`), run as a user runs
//! it: the real binary against a real PostgreSQL, through every run-layer flag.

mod support;
use support::example_binary;

use std::path::Path;
use std::process::Output;

use sqlx::{Connection, PgConnection};

fn cities(url: &str, report: &Path, args: &[&str]) -> Output {
    std::process::Command::new(example_binary("cities"))
        .args(["--report-dir", &report.display().to_string(), "-q"])
        .args(args)
        .env("DATABASE_URL", url)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn cities_runs_plans_resumes_and_rolls_back() {
    let db = etl_testkit::TestDb::create().await.unwrap();
    let url = db.url();
    let dir = tempfile::tempdir().unwrap();
    let input = etl_examples::common::bundled("cities");

    // A dry run reads, transforms and validates, and writes nothing.
    let o = cities(url, &dir.path().join("dry"), &["--dry-run"]);
    assert!(o.status.success(), "{}", text(&o));
    let mut conn = PgConnection::connect(url).await.unwrap();
    let tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'";
    assert_eq!(count(&mut conn, tables).await, 0, "nothing written");

    // The first run: 11 records = 9 loaded + 2 rejected with their lines.
    let r1 = dir.path().join("r1");
    let o = cities(url, &r1, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(count(&mut conn, "SELECT count(*) FROM cities").await, 9);
    let rejects = std::fs::read_to_string(r1.join("rejects.csv")).unwrap();
    assert!(rejects.contains("cities_2.csv,5,population"), "{rejects}");
    assert!(rejects.contains("cities_2.csv,7,population"), "{rejects}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(r1.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["totals"]["read"], 11);
    assert_eq!(report["steps"].as_array().unwrap().len(), 7);
    assert_eq!(report["run_state"], "done");

    // --plan lists the steps and their states.
    let o = cities(url, &r1, &["--plan"]);
    let plan = text(&o);
    assert!(o.status.success(), "{plan}");
    for step in [
        "schema", "staging", "load", "gate", "switch", "analyze", "cleanup",
    ] {
        assert!(plan.contains(step), "{step}: {plan}");
    }
    assert!(plan.contains("--rollback would undo"), "{plan}");

    // --only cleanup drops cities_old; then a new release whose switch waits for the lock
    // a reader holds on `cities`.
    let o = cities(url, &dir.path().join("clean"), &["--only", "cleanup"]);
    assert!(o.status.success(), "{}", text(&o));
    let v2 = dir.path().join("v2");
    std::fs::create_dir_all(&v2).unwrap();
    for f in ["cities_1.csv", "cities_2.csv"] {
        std::fs::copy(input.join(f), v2.join(f)).unwrap();
    }
    std::fs::write(
        v2.join("cities_3.csv"),
        "id,name,country,population\n12,Alta,NO,21000\n",
    )
    .unwrap();
    let mut reader = PgConnection::connect(url).await.unwrap();
    let mut tx = reader.begin().await.unwrap();
    sqlx::query("SELECT count(*) FROM cities")
        .execute(&mut *tx)
        .await
        .unwrap();
    let r2 = dir.path().join("r2");
    let v2s = v2.display().to_string();
    let mut first = tokio::process::Command::new(example_binary("cities"))
        .args([
            "--report-dir",
            &r2.display().to_string(),
            "-q",
            "--input",
            &v2s,
        ])
        .env("DATABASE_URL", url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let switching = "SELECT count(*) FROM ferry_journal_steps
        WHERE step = 'switch' AND state = 'running'";
    let t0 = std::time::Instant::now();
    while count(&mut conn, switching).await == 0 {
        assert!(t0.elapsed().as_secs() < 60, "the switch never started");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // One run at a time: a second one (plain or --resume) is refused, naming the first.
    let pid = first.id().unwrap().to_string();
    for args in [
        &["--input", &v2s][..],
        &["--resume"][..],
        &["--rollback"][..],
    ] {
        let o = cities(url, &dir.path().join("second"), args);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains("is being run by run"), "{}", text(&o));
        assert!(text(&o).contains(&format!("pid {pid}")), "{}", text(&o));
    }
    let plan = text(&cities(url, &r2, &["--plan"]));
    assert!(plan.contains("the run is live"), "{plan}");
    // Killed while it waits for its lock: production untouched, the run lock is free.
    first.start_kill().unwrap(); // SIGKILL
    first.wait().await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(count(&mut conn, "SELECT count(*) FROM cities").await, 9);
    let plan = text(&cities(url, &r2, &["--plan"]));
    assert!(plan.contains("the run was interrupted"), "{plan}");
    assert!(
        plan.contains("at step 5 `switch` (it was running"),
        "{plan}"
    );

    // --resume takes the run lock, switches and finishes; the load is not redone.
    let o = cities(url, &r2, &["--input", &v2s, "--resume"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(count(&mut conn, "SELECT count(*) FROM cities").await, 10);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(r2.join("report.json")).unwrap()).unwrap();
    let ran: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["outcome"] == "ran")
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(ran, ["switch", "analyze"]);
    assert_eq!(report["totals"]["loaded"], 10);

    // --rollback puts the previous release back.
    let o = cities(url, &dir.path().join("rb"), &["--rollback"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(count(&mut conn, "SELECT count(*) FROM cities").await, 9);
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM cities_staging").await,
        10
    );
    let o = cities(url, &dir.path().join("rb2"), &["--resume"]);
    assert_eq!(o.status.code(), Some(2), "nothing to resume: {}", text(&o));
}

/// README.md's "Your own migration" shows the example's steps as they are in the file.
#[test]
fn the_readme_shows_the_cities_steps_verbatim() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = std::fs::read_to_string(root.join("examples/cities.rs")).unwrap();
    let readme = std::fs::read_to_string(root.join("../README.md")).unwrap();
    let start = example.find("fn migration(").unwrap();
    let end = start + example[start..].find("\n}\n").unwrap() + 3;
    assert!(
        readme.contains(&example[start..end]),
        "README.md's cities block differs from examples/examples/cities.rs:\n{}",
        &example[start..end]
    );
    assert!(
        example.lines().count() < 100,
        "the example stays under 100 lines"
    );
}

/// `--metrics-addr` and `--metrics-file` on a real binary against a real PostgreSQL:
/// scraped while the run is held after its load, killed there, resumed; the file of the
/// resumed run says how it ended.
#[tokio::test]
async fn cities_serves_and_writes_its_metrics() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let db = etl_testkit::TestDb::create().await.unwrap();
    let url = db.url();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r");
    let file = dir.path().join("ferry.prom");
    let mut run = tokio::process::Command::new(example_binary("cities"))
        .args(["--report-dir", &report.display().to_string()])
        .args(["--metrics-file", &file.display().to_string()])
        .args(["--metrics-addr", "127.0.0.1:0"])
        .env("DATABASE_URL", url)
        .env("FERRY_TEST_PAUSE_AT", "load:after")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(run.stderr.take().unwrap()).lines();
    let mut addr = None;
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(rest) = line.split("metrics served at http://").nth(1) {
            addr = rest.split('/').next().map(str::to_owned);
        }
        if line.contains("FERRY_TEST_PAUSED after load") {
            break;
        }
    }
    let addr = addr.expect("the bound address is logged");
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    for line in [
        "ferry_current_step_info{migration=\"cities\",step=\"load\",position=\"3\"} 1\n",
        "ferry_rows_read_total{migration=\"cities\",step=\"load\"} 11\n",
        "ferry_rows_loaded_total{migration=\"cities\",step=\"load\"} 9\n",
        "ferry_rows_rejected_total{migration=\"cities\",step=\"load\"} 2\n",
        "ferry_units_done{migration=\"cities\",step=\"load\"} 2\n",
        "ferry_run_state{migration=\"cities\",state=\"running\"} 1\n",
        "ferry_step_state{migration=\"cities\",step=\"staging\",state=\"done\"} 1\n",
    ] {
        assert!(answer.contains(line), "{line} in {answer}");
    }
    // The file is there while the run lasts (written at the start, then every 5 s).
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("ferry_run_info{")
    );
    run.start_kill().unwrap(); // SIGKILL
    run.wait().await.unwrap();

    // The resume finishes; the load's units were committed: skipped, counted done.
    let o = cities(
        url,
        &report,
        &["--resume", "--metrics-file", &file.display().to_string()],
    );
    assert!(o.status.success(), "{}", text(&o));
    let m = std::fs::read_to_string(&file).unwrap();
    for line in [
        "ferry_run_state{migration=\"cities\",state=\"done\"} 1\n",
        "ferry_rows_read_total{migration=\"cities\",step=\"load\"} 0\n",
        "ferry_units_done{migration=\"cities\",step=\"load\"} 2\n",
        "ferry_step_state{migration=\"cities\",step=\"analyze\",state=\"done\"} 1\n",
    ] {
        assert!(m.contains(line), "{line} in {m}");
    }
    assert!(m.contains("action=\"resume\"} 1\n"), "{m}");
    let done: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.join("report.json")).unwrap()).unwrap();
    for step in done["steps"].as_array().unwrap() {
        if step["state"] == "done" {
            let name = step["name"].as_str().unwrap();
            let prefix =
                format!("ferry_step_duration_seconds{{migration=\"cities\",step=\"{name}\"}} ");
            assert!(m.contains(&prefix), "{prefix} in {m}");
        }
    }
}
