//! Helpers every example shares: a PostgreSQL to talk to, Ctrl-C handling, report output.

use std::path::{Path, PathBuf};

use etl_core::RunReport;

/// What a run without a target runs against, said at its start and in its report.
pub const THROWAWAY: &str = "throwaway local PostgreSQL, deleted at exit — nothing reached a real database; pass --database-url or set DATABASE_URL";

/// The database URL to use and, when none was given, the throwaway cluster started for it
/// (stopped when dropped).
pub struct Database {
    /// URL with credentials; never print it (use [`Database::redacted`]).
    pub url: String,
    /// The local cluster, if this process started one.
    pub local: Option<etl_testkit::TempPostgres>,
    /// The directory of a throwaway cluster kept running (`--keep-local`).
    pub kept: Option<PathBuf>,
}

impl Database {
    /// `given` (from `--database-url` / `DATABASE_URL`), else a throwaway cluster under
    /// `target/ferry-pg/<name>` started from the installed PostgreSQL binaries.
    ///
    /// # Errors
    /// An empty `--database-url` or `DATABASE_URL` (a blank target is a mistake, never a
    /// request for the throwaway cluster); the cluster cannot start.
    pub async fn open(given: Option<&etl_core::Secret>, name: &str) -> anyhow::Result<Self> {
        Self::open_keeping(given, name, None).await
    }

    /// [`Database::open`], and with `keep` (`--keep-local DIR`) the throwaway cluster is
    /// started in `keep` and left running at exit, for inspection.
    ///
    /// # Errors
    /// As [`Database::open`].
    pub async fn open_keeping(
        given: Option<&etl_core::Secret>,
        name: &str,
        keep: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let env_blank = std::env::var_os("DATABASE_URL").is_some_and(|v| v.is_empty());
        match given.map(|s| s.expose()) {
            Some(url) if url.trim().is_empty() => anyhow::bail!(
                "the target database URL is empty (--database-url \"\" or DATABASE_URL=): pass the URL of the database to migrate, or leave both unset to try the migration on a {THROWAWAY}"
            ),
            None if env_blank => anyhow::bail!(
                "DATABASE_URL is set but empty: pass the URL of the database to migrate, or unset it to try the migration on a {THROWAWAY}"
            ),
            Some(url) => {
                return Ok(Database {
                    url: url.to_owned(),
                    local: None,
                    kept: None,
                });
            }
            None => {}
        }
        let db = match keep {
            Some(dir) => {
                let pg = etl_testkit::TempPostgres::start(dir).await?;
                Database {
                    url: pg.keep(),
                    local: None,
                    kept: Some(dir.to_owned()),
                }
            }
            None => {
                let (url, local) = etl_testkit::database_url_or_start(None, name).await?;
                Database {
                    url,
                    local,
                    kept: None,
                }
            }
        };
        tracing::warn!(url = %db.redacted(), "target: {}", db.target());
        Ok(db)
    }

    /// The target the shared options name (`--database-url`, `DATABASE_URL`,
    /// `--keep-local`), as [`Database::open_keeping`].
    ///
    /// # Errors
    /// As [`Database::open`].
    pub async fn for_args(common: &etl_core::cli::CommonArgs, name: &str) -> anyhow::Result<Self> {
        let keep = common.keep_local.as_deref();
        Self::open_keeping(common.database_url.as_ref(), name, keep).await
    }

    /// The run options of the shared flags, saying in the report what the target is.
    pub fn run_options(
        &self,
        common: &etl_core::cli::CommonArgs,
    ) -> etl_core::migration::RunOptions {
        let mut opts = common.run_options();
        opts.target = Some(self.target());
        opts
    }

    /// The URL without its password.
    pub fn redacted(&self) -> String {
        etl_core::config::redact_url(&self.url)
    }

    /// What the run writes to, for its report: the redacted URL, or what the throwaway
    /// cluster is.
    pub fn target(&self) -> String {
        match (&self.local, &self.kept) {
            (Some(_), _) => THROWAWAY.to_owned(),
            (None, Some(dir)) => format!(
                "local PostgreSQL kept running in {} ({}; stop it with scripts/pg.sh stop {}) — nothing reached a real database",
                dir.display(),
                self.redacted(),
                dir.display()
            ),
            (None, None) => format!("PostgreSQL {}", self.redacted()),
        }
    }
}

pub use etl_core::cli::cancel_on_ctrl_c;

/// `--restore DIR`: put back the tables of the backup in `dir` (all or nothing, checked
/// against its manifest), holding `m`'s run lock; the latest unfinished run is marked
/// rolled back. Prints each restored table.
///
/// # Errors
/// As [`etl_sink_postgres::backup::restore`]; another process runs the migration.
pub async fn restore<C: Send + Sync>(
    m: &etl_core::migration::Migration<C>,
    journal: &dyn etl_core::migration::Journal,
    url: &str,
    dir: &Path,
) -> anyhow::Result<std::process::ExitCode> {
    let tables = etl_sink_postgres::backup::restore_for(m, journal, url, dir)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    for t in tables {
        println!(
            "restored {} ({} rows, checksum {} as in the backup)",
            t.table, t.rows, t.checksum
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

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

// --- shared by the culturebridge example (and any binary that keeps a log file) ---

/// A timestamp for the names of report files: `YYYYmmdd_HHMMSS` (UTC).
pub fn timestamp() -> String {
    chrono::Utc::now().format("%Y%m%d_%H%M%S").to_string()
}

/// Log to stderr and to the file `log` (created with its directory); `RUST_LOG` (or
/// `LOG_LEVEL=DEBUG`) overrides the level of `verbosity` (as
/// [`etl_core::cli::CommonArgs::verbosity`]).
///
/// # Errors
/// The file cannot be created.
pub fn init_logging(log: &Path, verbosity: i8) -> anyhow::Result<()> {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    let level = ["error", "warn", "info", "debug", "trace"][(verbosity.clamp(-2, 2) + 2) as usize];
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_env("LOG_LEVEL"))
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(format!("{level},sqlx=warn,hyper=warn,reqwest=warn"))
        });
    if let Some(d) = log.parent() {
        std::fs::create_dir_all(d)?;
    }
    // Appended: a migration run phase by phase keeps one log.
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", log.display()))?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false)
        .with_writer(std::io::stderr.and(std::sync::Mutex::new(file)))
        .try_init();
    Ok(())
}
