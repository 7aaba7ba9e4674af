//! Helpers shared by the example integration tests.

use std::path::PathBuf;

/// The built binary of example `name` (tests run from `target/<profile>/deps`; examples
/// are built beside it). Asks cargo to bring it up to date once per test process (a no-op
/// when it is):
/// a binary left by a build of another checkout sharing the target directory would carry
/// that checkout's paths to the bundled data.
pub fn example_binary(name: &str) -> PathBuf {
    // Once per test process and example: timing-sensitive tests start the binary several
    // times in a row, and a cargo run per start costs seconds on a loaded machine.
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let bin = profile_dir.join("examples").join(name);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|b| b == name) {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "etl-examples", "--example", name])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success());
        built.push(name.to_owned());
    }
    bin
}

/// Asserts that `o`, a second run of an example started while process `pid` runs run
/// `run_id` of the same migration against the same target, was refused by the run lock:
/// exit code 2, and its error names the first run and its process.
#[allow(dead_code)] // not every test file checks the run lock
pub fn assert_refused_by(o: &std::process::Output, pid: u32, run_id: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("is being run by"), "{err}");
    assert!(err.contains(&format!("pid {pid} ")), "{err}");
    assert!(err.contains(&format!("run {run_id} ")), "{err}");
}

/// Waits (30 s at most) until a session of the database at `url` waits for a lock (the
/// run `run` blocked by a lock the test holds), `run` still running.
#[allow(dead_code)]
pub async fn wait_for_a_lock_wait(url: &str, run: &mut tokio::process::Child) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted
        AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
    let t0 = std::time::Instant::now();
    while sqlx::query_scalar::<_, i64>(waiting)
        .fetch_one(&mut conn)
        .await
        .unwrap()
        == 0
    {
        assert!(t0.elapsed().as_secs() < 30, "the run never waited");
        assert!(run.try_wait().unwrap().is_none(), "the run ended");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// One run at a time: while process `pid` runs run `run_id`, the example run by `binary`
/// (a report directory and arguments; it adds the target) plainly, with `--resume`, with
/// `--rollback` and with each of `more` is refused ([`assert_refused_by`]), and its
/// `--plan` says the run is live.
#[allow(dead_code)]
pub fn assert_one_run_at_a_time(
    binary: &dyn Fn(&str, &[&str]) -> std::process::Output,
    pid: u32,
    run_id: &str,
    more: &[&[&str]],
) {
    for args in [&[][..], &["--resume"], &["--rollback"]].iter().chain(more) {
        assert_refused_by(&binary("second", args), pid, run_id);
    }
    let plan = plan(binary);
    assert!(plan.contains("the run is live"), "{plan}");
}

/// What `--plan` prints.
#[allow(dead_code)]
pub fn plan(binary: &dyn Fn(&str, &[&str]) -> std::process::Output) -> String {
    let o = binary("plan", &["--plan"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Every item of a DynamoDB table as plain JSON, sorted: what "the table equals" compares.
#[allow(dead_code)] // the DynamoDB tests only
pub async fn table_items(
    client: &etl_sink_dynamodb::aws_sdk_dynamodb::Client,
    table: &str,
) -> Vec<serde_json::Value> {
    let items = std::sync::Mutex::new(Vec::new());
    etl_sink_dynamodb::admin::scan_items(client, table, None, 2, |page| {
        items.lock().unwrap().extend(
            page.iter()
                .map(etl_sink_dynamodb::mapping::item_to_plain_json),
        );
    })
    .await
    .unwrap();
    let mut items = items.into_inner().unwrap();
    items.sort_by_key(|v| v.to_string());
    items
}

/// The retries of all units in a `report.json`.
#[allow(dead_code)]
pub fn unit_retries(report: &serde_json::Value) -> u64 {
    (report["units"].as_array().unwrap().iter())
        .map(|u| u["retries"].as_u64().unwrap_or(0))
        .sum()
}
