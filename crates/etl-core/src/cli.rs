//! The command-line helper every ferry binary shares (feature `cli`).
//!
//! ```no_run
//! use clap::Parser;
//! use etl_core::cli::{CommonArgs, parse_args, init_tracing};
//!
//! #[derive(Parser, Debug)]
//! /// My migration.
//! struct Args {
//!     #[command(flatten)]
//!     common: CommonArgs,
//!     /// Input directory.
//!     #[arg(long)]
//!     input: Option<std::path::PathBuf>,
//! }
//!
//! let args: Args = parse_args();
//! init_tracing(args.common.verbosity());
//! ```

use std::ffi::OsString;
use std::path::PathBuf;

use crate::config::{Secret, load_config_value};

/// Options every migration binary takes.
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// A TOML (or JSON) file whose keys are long option names (`batch_size = 10000`);
    /// `${ENV_VAR}` in it is replaced from the environment. Options on the command line win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// PostgreSQL URL (e.g. postgres://user@host/db). Never printed: logs and reports
    /// show it without the password. When neither this nor DATABASE_URL is set, the
    /// examples start a throwaway local cluster.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub database_url: Option<Secret>,
    /// With no --database-url / DATABASE_URL, the examples run against a throwaway local
    /// PostgreSQL deleted at exit; with this, it is created in DIR and left running for
    /// inspection (its URL is printed; stop it with scripts/pg.sh stop DIR).
    #[arg(long, value_name = "DIR")]
    pub keep_local: Option<PathBuf>,
    /// Run every step that only reads (a pipeline reads, transforms and validates) and
    /// list what the others would do; write nothing to the target, not even the journal.
    #[arg(long, conflicts_with_all = ["resume", "rollback", "plan"])]
    pub dry_run: bool,
    /// Continue the last unfinished run at its first step that is not done (a load skips
    /// the units it committed; a step killed part-way runs again).
    #[arg(long, conflicts_with_all = ["rollback", "plan"])]
    pub resume: bool,
    /// Undo the steps of the last run that ran, newest first (the switch is swapped back,
    /// what the run created is dropped). Refused, before anything is undone, when one of
    /// them cannot be undone.
    #[arg(long, conflicts_with = "plan")]
    pub rollback: bool,
    /// Print the migration's steps with their recorded states and what --resume, a plain
    /// run and --rollback would do now; change nothing.
    #[arg(long)]
    pub plan: bool,
    /// Run only this step (repeatable) within the last run: an optional step such as
    /// `cleanup`, or one step again. See --plan for the names.
    #[arg(long, value_name = "STEP", conflicts_with_all = ["resume", "rollback", "dry_run", "plan"])]
    pub only: Vec<String>,
    /// Where report.json, report.html, summary.txt and rejects.csv go.
    #[arg(long, value_name = "DIR", default_value = "reports")]
    pub report_dir: PathBuf,
    /// Rows per Arrow batch. Memory in flight is about parallel × 6 batches; 8,192 keeps
    /// a CITES load under ~150 MiB whatever the input size, with no measurable loss of speed.
    #[arg(long, value_name = "N", default_value_t = 8_192)]
    pub batch_size: usize,
    /// Times a unit (a file, a key range, an API type) that fails with a retryable error
    /// (a lost connection, a server restart, a serialization failure) is run again, with
    /// backoff, before the run fails; each retry is in the report.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub unit_retries: u32,
    /// In rejects.csv, write text fields a spreadsheet would run as formulas (starting
    /// with = + - @) with a ' in front, so they show as text when the file is opened in a
    /// spreadsheet (the raw lines are then no longer byte-exact).
    #[arg(long)]
    pub guard_formulas: bool,
    /// The metrics flags (`--metrics-file`, `--metrics-addr`).
    #[command(flatten)]
    pub metrics: MetricsArgs,
    /// Units processed at once (files, tables, API types); each uses one connection.
    #[arg(long, value_name = "N", default_value_t = default_parallelism())]
    pub parallel: usize,
    /// More logging (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less logging (-q warnings only, -qq errors only); also hides progress bars.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub quiet: u8,
}

/// The metrics flags of a run (flattened into [`CommonArgs`]; a binary of its own flattens
/// them into its arguments).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct MetricsArgs {
    /// Write the run's metrics to this file in the Prometheus text format (rows read,
    /// loaded, rejected and filtered, units, bytes, current step, step durations,
    /// retries), rewritten atomically every 5 s, at each step and at the end. The format the CloudWatch
    /// agent, Prometheus, Grafana Agent and Datadog collect; a name ending in `.prom` in
    /// node_exporter's textfile directory is picked up as it is.
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
    /// Serve the same metrics at http://ADDR/metrics while the run lasts, for a collector
    /// to scrape. Use a loopback address (127.0.0.1:9464): the endpoint has no
    /// authentication. Port 0 picks a free port (logged).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

impl MetricsArgs {
    /// The metrics `--metrics-file` and `--metrics-addr` ask for (none without them).
    pub fn metrics(&self) -> Option<crate::metrics::Metrics> {
        if self.metrics_file.is_none() && self.metrics_addr.is_none() {
            return None;
        }
        let mut m = crate::metrics::Metrics::new();
        if let Some(path) = &self.metrics_file {
            m = m.write_file(path);
        }
        if let Some(addr) = self.metrics_addr {
            m = m.listen(addr);
        }
        Some(m)
    }
}

/// Backup options of migrations that change a database (flatten them next to
/// [`CommonArgs`]).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct BackupArgs {
    /// Where the backup step writes its backup (`pg_dump` file and manifest) in a
    /// directory of its own per run, `<migration>_<timestamp>`. Default:
    /// `<report-dir>/backups`.
    #[arg(long, value_name = "DIR")]
    pub backup_dir: Option<PathBuf>,
    /// Instead of running, restore the backup in DIR (a directory the backup step wrote;
    /// its path is in the run's report): every table it holds is put back in one
    /// transaction and checked against its manifest (rows and content checksum); the
    /// latest unfinished run is marked rolled back.
    #[arg(long, value_name = "DIR")]
    pub restore: Option<PathBuf>,
}

impl BackupArgs {
    /// The directory for this run's backup of `migration`, under `--backup-dir` (or
    /// `<report_dir>/backups`), named with the current UTC time.
    pub fn run_dir(&self, report_dir: &std::path::Path, migration: &str) -> PathBuf {
        crate::migration::backup_dir(self.backup_dir.as_deref(), report_dir, migration)
    }
}

impl CommonArgs {
    /// `verbose - quiet`.
    pub fn verbosity(&self) -> i8 {
        self.verbose as i8 - self.quiet as i8
    }

    /// Whether progress bars are wanted.
    pub fn progress(&self) -> bool {
        self.quiet == 0
    }

    /// The run-layer action these flags ask for (`--plan` is not one: see
    /// [`run_migration`]).
    pub fn action(&self) -> crate::migration::Action {
        use crate::migration::Action;
        if !self.only.is_empty() {
            Action::Only(self.only.clone())
        } else if self.rollback {
            Action::Rollback
        } else if self.dry_run {
            Action::DryRun
        } else if self.resume {
            Action::Resume
        } else {
            Action::Run
        }
    }

    /// The metrics `--metrics-file` and `--metrics-addr` ask for (none without them).
    pub fn metrics(&self) -> Option<crate::metrics::Metrics> {
        self.metrics.metrics()
    }

    /// Run options for [`crate::migration::Migration::execute`] from these flags: the
    /// action, the report directory, progress unless `-q`, a token cancelled on Ctrl-C
    /// (the running step stops at its next batch; `--resume` continues) and the metrics.
    pub fn run_options(&self) -> crate::migration::RunOptions {
        crate::migration::RunOptions {
            action: self.action(),
            stop_before: None,
            report_dir: self.report_dir.clone(),
            progress: self.progress(),
            cancel: cancel_on_ctrl_c(),
            target: None,
            unit_retries: self.unit_retries,
            guard_formulas: self.guard_formulas,
            metrics: self.metrics(),
        }
    }
}

/// A token cancelled on Ctrl-C (needs a Tokio runtime): the run stops at the next batch
/// and rolls back the units in flight (committed units stay; `--resume` continues).
pub fn cancel_on_ctrl_c() -> crate::CancellationToken {
    let token = crate::CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::warn!(
                "Ctrl-C: stopping after the current batch; rerun with --resume to continue"
            );
            t.cancel();
        }
    });
    token
}

/// Run a migration as a binary does: with `plan`, print its steps and states and what
/// would happen next; otherwise execute it, print `summary.txt` and where the report is.
/// The exit code is 0 for a run that succeeded (a dry run and a rollback included), 1 for
/// a failed one.
///
/// # Errors
/// What [`crate::migration::Migration::execute`] refuses (nothing was changed: exit 2
/// in the binaries), and journal errors.
pub async fn run_migration<C: Send + Sync>(
    migration: &crate::migration::Migration<C>,
    ctx: &C,
    journal: &dyn crate::migration::Journal,
    opts: &crate::migration::RunOptions,
    plan: bool,
) -> crate::Result<(std::process::ExitCode, Option<crate::RunReport>)> {
    if plan {
        print!("{}", migration.status(journal).await?);
        return Ok((std::process::ExitCode::SUCCESS, None));
    }
    let report = migration.execute(ctx, journal, opts).await?;
    println!("{}", report.summary_text());
    println!("report: {}", opts.report_dir.join("report.json").display());
    let code = if report.status == crate::RunStatus::Failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    };
    Ok((code, Some(report)))
}

/// The number of cores, at least 1.
pub fn default_parallelism() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Parse the process arguments, applying `--config FILE` first; exits on `--help` or errors.
pub fn parse_args<T: clap::Parser>() -> T {
    match parse_args_from(std::env::args_os()) {
        Ok(v) => v,
        Err(e) => e.exit(),
    }
}

/// Parse `argv` (program name first). Keys of the `--config` file become options placed
/// before the command line's, so the command line overrides the file. Nested tables are
/// left to the binary (read them with [`crate::config::load_config`]).
pub fn parse_args_from<T: clap::Parser>(
    argv: impl IntoIterator<Item = OsString>,
) -> Result<T, clap::Error> {
    let argv: Vec<OsString> = argv.into_iter().collect();
    let mut cmd = T::command().args_override_self(true);
    let mut args: Vec<OsString> = argv.iter().take(1).cloned().collect();
    if let Some(path) = find_config(&argv) {
        let value = load_config_value(&path)
            .map_err(|e| cmd.error(clap::error::ErrorKind::ValueValidation, e.to_string()))?;
        if let Some(obj) = value.as_object() {
            for (k, v) in obj {
                let flag = format!("--{}", k.replace('_', "-"));
                match v {
                    serde_json::Value::Bool(true) => args.push(flag.into()),
                    serde_json::Value::Bool(false) | serde_json::Value::Null => {}
                    serde_json::Value::String(s) => args.push(format!("{flag}={s}").into()),
                    serde_json::Value::Number(n) => args.push(format!("{flag}={n}").into()),
                    serde_json::Value::Array(items) => {
                        for item in items {
                            let s = item
                                .as_str()
                                .map_or_else(|| item.to_string(), str::to_owned);
                            args.push(format!("{flag}={s}").into());
                        }
                    }
                    serde_json::Value::Object(_) => {}
                }
            }
        }
    }
    args.extend(argv.into_iter().skip(1));
    let matches = cmd.try_get_matches_from_mut(args)?;
    T::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))
}

fn find_config(argv: &[OsString]) -> Option<PathBuf> {
    let mut it = argv.iter().skip(1);
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if s == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(p) = s.strip_prefix("--config=") {
            return Some(PathBuf::from(p));
        }
    }
    None
}

/// Log to stderr with `tracing`, above any progress bars. `RUST_LOG` overrides the level.
pub fn init_tracing(verbosity: i8) {
    use tracing_subscriber::EnvFilter;
    let level = match verbosity {
        i8::MIN..=-2 => "error",
        -1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},sqlx=warn,hyper=warn,aws=warn")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(|| BarSafeWriter)
        .try_init();
}

/// Writes log lines to stderr without tearing the progress bars.
struct BarSafeWriter;

impl std::io::Write for BarSafeWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        crate::progress::multi().suspend(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Args {
        #[command(flatten)]
        common: CommonArgs,
        #[arg(long)]
        input: Option<String>,
    }

    #[test]
    fn config_file_sets_options_and_command_line_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        // SAFETY: the test sets a variable no other test reads.
        unsafe { std::env::set_var("FERRY_TEST_INPUT", "/data/in") };
        std::fs::write(
            &path,
            "input = \"${FERRY_TEST_INPUT}\"\nbatch_size = 1000\ndry_run = true\n",
        )
        .unwrap();
        let a: Args = parse_args_from(
            ["x", "--config", path.to_str().unwrap(), "--batch-size", "5"].map(OsString::from),
        )
        .unwrap();
        assert_eq!(a.input.as_deref(), Some("/data/in"));
        assert_eq!(a.common.batch_size, 5);
        assert!(a.common.dry_run);
    }

    #[test]
    fn metrics_flags_give_run_options_metrics() {
        let a: Args = parse_args_from(["x"].map(OsString::from)).unwrap();
        assert!(a.common.metrics().is_none());
        let a: Args = parse_args_from(
            [
                "x",
                "--metrics-file",
                "/tmp/m.prom",
                "--metrics-addr",
                "127.0.0.1:0",
            ]
            .map(OsString::from),
        )
        .unwrap();
        let m = a.common.metrics().expect("metrics");
        assert_eq!(m.file(), Some(PathBuf::from("/tmp/m.prom")));
        assert!(
            parse_args_from::<Args>(["x", "--metrics-addr", "localhost"].map(OsString::from))
                .is_err()
        );
    }

    #[test]
    fn unknown_config_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "bacth_size = 1\n").unwrap();
        let e =
            parse_args_from::<Args>(["x", "--config", path.to_str().unwrap()].map(OsString::from))
                .unwrap_err();
        assert!(e.to_string().contains("bacth-size"), "{e}");
    }
}
