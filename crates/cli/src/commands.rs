//! The subcommands of `ferry`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use etl_core::migration::{Action, FileJournal, Journal, Migration, RunOptions};
use etl_sink_postgres::journal::PgJournal;

use crate::build::{JobRun, migration};
use crate::job::{Job, Target};

/// `ferry`: declarative, resumable data migrations.
///
/// A job file (TOML) declares a source (CSV, Parquet), transforms (rename, cast, default,
/// rules, filter, lookup, UUID ids, bcrypt), a target (PostgreSQL replace / append /
/// upsert, Parquet), gates and SQL steps; `ferry run` executes it step by step, recording
/// every step in a journal so that a killed run continues with `--resume` and a finished
/// one is undone with `--rollback`. Reference: docs/job-file.md.
#[derive(clap::Parser, Debug)]
#[command(name = "ferry", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// More logging (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less logging (-q warnings only, -qq errors only); also hides progress bars.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub quiet: u8,
}

/// The subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Run a job: a fresh run, or --resume, --rollback, --plan, --dry-run, --cleanup.
    Run(RunArgs),
    /// Show a job's steps with their journal states and what --resume would do.
    Status(JobArgs),
    /// Check a job file and its source and target without writing anything.
    Validate(JobArgs),
}

/// A job file.
#[derive(clap::Args, Debug)]
pub struct JobArgs {
    /// The job file (TOML).
    pub job: PathBuf,
    /// Where the journal of a job whose target is not PostgreSQL is kept, and the
    /// reports (report.json, report.html, summary.txt, rejects.csv).
    #[arg(long, value_name = "DIR", default_value = "reports")]
    pub report_dir: PathBuf,
}

/// `ferry run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The job file and the report directory.
    #[command(flatten)]
    pub job: JobArgs,
    /// Continue the last unfinished run at its first step that is not done (a load skips
    /// the units it committed).
    #[arg(long, conflicts_with_all = ["rollback", "plan", "dry_run", "cleanup"])]
    pub resume: bool,
    /// Undo the steps of the last run, newest first (the switch is swapped back).
    #[arg(long, conflicts_with_all = ["plan", "dry_run", "cleanup"])]
    pub rollback: bool,
    /// Print the steps with their states and what would happen next; change nothing.
    #[arg(long)]
    pub plan: bool,
    /// Read, transform and validate everything; write nothing (not even the journal).
    #[arg(long, conflicts_with = "cleanup")]
    pub dry_run: bool,
    /// Drop the previous table kept by the last switch (irreversible: no rollback after).
    #[arg(long)]
    pub cleanup: bool,
    /// Run only this step (repeatable) within the last run.
    #[arg(long, value_name = "STEP", conflicts_with_all = ["resume", "rollback", "dry_run", "plan", "cleanup"])]
    pub only: Vec<String>,
    /// Stop before this step (e.g. `switch`: load and validate, switch later with
    /// --resume); the run is `stopped`.
    #[arg(long, value_name = "STEP")]
    pub stop_before: Option<String>,
    /// Rows per batch (default: the job's, or 8192).
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Units at once (default: the job's, or the cores up to 8).
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
    /// Times a unit failing with a retryable error is run again before the run fails.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub unit_retries: u32,
}

impl Cli {
    /// `verbose - quiet`.
    pub fn verbosity(&self) -> i8 {
        self.verbose as i8 - self.quiet as i8
    }

    /// Run the subcommand.
    ///
    /// # Errors
    /// A job that does not parse, a refused action, an unreachable target.
    pub async fn run(&self) -> anyhow::Result<ExitCode> {
        match &self.command {
            Command::Run(args) => run(args, self.quiet == 0).await,
            Command::Status(args) => status(args).await,
            Command::Validate(args) => validate(args).await,
        }
    }
}

/// The journal of a job: in the target database (PostgreSQL), or a file under the report
/// directory.
pub fn journal(c: &JobRun, report_dir: &Path) -> anyhow::Result<Box<dyn Journal>> {
    Ok(match c.job.target.get_ref() {
        Target::Postgres(_) => Box::new(PgJournal::new(c.pg_opts()?)),
        _ => Box::new(FileJournal::new(report_dir.join("journal"))),
    })
}

fn load_job(path: &Path) -> anyhow::Result<Job> {
    Job::load(path)
}

async fn run(args: &RunArgs, progress: bool) -> anyhow::Result<ExitCode> {
    let job = load_job(&args.job.job)?;
    let c = JobRun::new(job, args.batch_size, args.parallel);
    let m: Migration<JobRun> = migration(&c)?;
    let journal = journal(&c, &args.job.report_dir)?;
    let action = if args.cleanup {
        Action::Only(vec!["cleanup".into()])
    } else if !args.only.is_empty() {
        Action::Only(args.only.clone())
    } else if args.rollback {
        Action::Rollback
    } else if args.dry_run {
        Action::DryRun
    } else if args.resume {
        Action::Resume
    } else {
        Action::Run
    };
    let opts = RunOptions {
        action,
        stop_before: args.stop_before.clone(),
        report_dir: args.job.report_dir.clone(),
        progress,
        cancel: etl_core::cli::cancel_on_ctrl_c(),
        target: Some(target_line(&c)),
        unit_retries: args.unit_retries,
        guard_formulas: false,
    };
    let (code, _) =
        etl_core::cli::run_migration(&m, &c, journal.as_ref(), &opts, args.plan).await?;
    Ok(code)
}

/// What the report says the target is (never with a password).
pub fn target_line(c: &JobRun) -> String {
    match c.job.target.get_ref() {
        Target::Postgres(pg) => format!(
            "PostgreSQL {} table {}",
            etl_core::config::redact_url(&pg.url),
            pg.table
        ),
        Target::Parquet { dir } => format!("Parquet files in {}", c.job.resolve(dir).display()),
        Target::Dynamodb(d) => format!("DynamoDB table {}", d.table),
    }
}

async fn status(args: &JobArgs) -> anyhow::Result<ExitCode> {
    let job = load_job(&args.job)?;
    let c = JobRun::new(job, None, None);
    let m = migration(&c)?;
    let journal = journal(&c, &args.report_dir)?;
    print!("{}", m.status(journal.as_ref()).await?);
    Ok(ExitCode::SUCCESS)
}

async fn validate(args: &JobArgs) -> anyhow::Result<ExitCode> {
    let job = load_job(&args.job)?;
    let c = JobRun::new(job, None, None);
    let (report, ok) = crate::build::validate(&c).await?;
    print!("{report}");
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
