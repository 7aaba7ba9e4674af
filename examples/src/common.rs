//! Helpers every example shares: a PostgreSQL to talk to, Ctrl-C handling, report output.

use std::path::{Path, PathBuf};

use etl_core::RunReport;

/// The database URL to use and, when none was given, the throwaway cluster started for it
/// (stopped when dropped).
pub struct Database {
    /// URL with credentials; never print it (use [`Database::redacted`]).
    pub url: String,
    /// The local cluster, if this process started one.
    pub local: Option<etl_testkit::TempPostgres>,
}

impl Database {
    /// `given` (from `--database-url` / `DATABASE_URL`), else a throwaway cluster under
    /// `target/ferry-pg/<name>` started from the installed PostgreSQL binaries.
    pub async fn open(given: Option<&etl_core::Secret>, name: &str) -> anyhow::Result<Self> {
        let given = given.map(|s| s.expose()).filter(|s| !s.trim().is_empty());
        let (url, local) = etl_testkit::database_url_or_start(given, name).await?;
        if local.is_some() {
            tracing::info!(url = %etl_core::config::redact_url(&url), "started a throwaway PostgreSQL (no --database-url / DATABASE_URL given)");
        }
        Ok(Database { url, local })
    }

    /// The URL without its password.
    pub fn redacted(&self) -> String {
        etl_core::config::redact_url(&self.url)
    }
}

pub use etl_core::cli::cancel_on_ctrl_c;

/// Print the summary and where the report is.
pub fn print_report(report: &RunReport, dir: &Path) {
    println!("{}", report.summary_text());
    println!("report: {}", dir.join("report.json").display());
}

/// A file or folder bundled with the examples (`examples/data/...`), found from the
/// package directory at build time, so `cargo run --example ...` works from anywhere in
/// the workspace.
pub fn bundled(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join(rel)
}

/// The body of an example binary's `main`: caps glibc's malloc arenas first (a flat peak
/// RSS, see [`etl_core::mem::limit_malloc_arenas`]), then runs `body`; an error is printed
/// with its causes and exits with status 2.
pub async fn run_main(
    body: impl std::future::Future<Output = anyhow::Result<std::process::ExitCode>>,
) -> std::process::ExitCode {
    etl_core::mem::limit_malloc_arenas(2);
    match body.await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Exit status 1 for a failed run, 0 otherwise (a dry run included).
pub fn exit_code(status: etl_core::RunStatus) -> std::process::ExitCode {
    if status == etl_core::RunStatus::Failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
