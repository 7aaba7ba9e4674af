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
