//! Helpers shared by the example integration tests.

use std::path::PathBuf;

/// The built binary of example `name` (tests run from `target/<profile>/deps`; examples
/// are built beside it by `cargo test`), building it if it is missing.
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let bin = profile_dir.join("examples").join(name);
    if !bin.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "-p", "etl-examples", "--example", name])
            .status()
            .unwrap();
        assert!(status.success());
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
