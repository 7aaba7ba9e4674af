//! The subcommands of `ferry`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use etl_core::migration::{
    Action, FileJournal, Journal, Migration, RunOptions, RunState, StepState,
};
use etl_sink_postgres::journal::PgJournal;

use crate::build::{JobRun, migration};
use crate::job::{Job, Target};

/// `ferry`: declarative, resumable data migrations.
///
/// A job file (TOML) declares a source (CSV, Parquet, a PostgreSQL table or query, a Bubble
/// app's Data API), transforms (rename, cast, default,
/// rules, filter, lookup, UUID ids, bcrypt), a target (PostgreSQL replace / append /
/// upsert, Parquet, DynamoDB), gates and SQL steps; `ferry run` executes it step by step, recording
/// every step in a journal so that a killed run continues with `--resume` and a finished
/// one is undone with `--rollback`. Reference: docs/job-file.md.
#[derive(clap::Parser, Debug)]
#[command(
    name = "ferry",
    version,
    propagate_version = true,
    after_help = "Examples:
  ferry guess 'data/*.csv' -o trips.toml            # a job file with the guessed dialect and types
  ferry load 'data/*.csv' 'postgres://me@localhost/db?table=trips'
  DATABASE_URL=postgres://me@localhost/db ferry run trips.toml
  ferry run trips.toml --plan | --resume | --rollback | --cleanup
  ferry status trips.toml

Exit codes: 0 done, 1 the run failed (its report says why), 2 refused or a configuration error."
)]
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
    /// Sample CSV or Parquet files (or read a PostgreSQL table's catalog) and print a job
    /// file for them: the dialect, the
    /// columns with their types and the evidence (values sampled, NULLs, values that did
    /// not fit a narrower type, with their file and line).
    Guess(GuessArgs),
    /// Load files into a PostgreSQL table in one line: guess, create the table when
    /// missing, load through a staging table and switch; bad rows go to the reject table
    /// with their file, line and reason. The job it ran is saved in the report directory.
    Load(LoadArgs),
}

/// `ferry guess`.
#[derive(clap::Args, Debug)]
pub struct GuessArgs {
    /// The files: a path, a directory or a glob (`'data/*.csv'`, quoted); `.gz` and `.zst`
    /// files are read through their decompressor. Or a PostgreSQL table:
    /// `postgres://user@host/db?table=name` (its columns from the catalog, its key from its
    /// primary key).
    pub source: String,
    /// Data rows sampled from the start of each file.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub sample_rows: usize,
    /// The target table written in the job (default: the first file's name).
    #[arg(long)]
    pub table: Option<String>,
    /// Write the job here instead of to standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `ferry load`.
#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// The files: a path, a directory or a glob (`'data/*.csv'`, quoted).
    pub source: String,
    /// The target: `postgres://user@host/db?table=name` (`table` defaults to the first
    /// file's name; `&mode=append` appends instead of replacing).
    pub target: String,
    /// Data rows sampled from the start of each file to guess the types.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub sample_rows: usize,
    /// Where the reports and the job file go.
    #[arg(long, value_name = "DIR", default_value = "reports")]
    pub report_dir: PathBuf,
    /// Largest acceptable reject rate (rejected / read).
    #[arg(long, value_name = "RATE", default_value_t = 0.01)]
    pub max_reject_rate: f64,
    /// Units at once (default: the cores up to 8).
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
    /// Prometheus metrics of the run.
    #[command(flatten)]
    pub metrics: etl_core::cli::MetricsArgs,
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
    /// Instead of running, restore the backup in DIR (a directory the job's backup step
    /// wrote, named in its report): every table it holds is put back in one transaction
    /// and checked against its manifest; the latest unfinished run is marked rolled back.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["resume", "rollback", "plan", "dry_run", "cleanup", "only"])]
    pub restore: Option<PathBuf>,
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
    /// Prometheus metrics of the run.
    #[command(flatten)]
    pub metrics: etl_core::cli::MetricsArgs,
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
            Command::Guess(args) => guess(args).await,
            Command::Load(args) => load(args, self.quiet == 0).await,
        }
    }
}

/// The journal of a job: in the target database (PostgreSQL), or a file under the report
/// directory.
pub fn journal(c: &JobRun, report_dir: &Path) -> anyhow::Result<Box<dyn Journal>> {
    Ok(match c.job.target.get_ref() {
        Target::Postgres(_) => Box::new(PgJournal::new(c.pg_opts()?)),
        _ => Box::new(FileJournal::new(crate::dynamo::journal_dir(
            &c.job, report_dir,
        ))),
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
    if let Some(dir) = &args.restore {
        let pg = c.pg().context("--restore needs a PostgreSQL target")?;
        let tables =
            etl_sink_postgres::backup::restore_for(&m, journal.as_ref(), pg.url.expose(), dir)
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
        for t in tables {
            println!(
                "restored {} ({} rows, checksum {} as in the backup)",
                t.table, t.rows, t.checksum
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
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
        metrics: args.metrics.metrics(),
    };
    let (code, _) =
        etl_core::cli::run_migration(&m, &c, journal.as_ref(), &opts, args.plan).await?;
    Ok(code)
}

/// What the report says the target is (never with a password).
pub fn target_line(c: &JobRun) -> String {
    match c.job.target.get_ref() {
        Target::Postgres(pg) => format!("PostgreSQL {} table {}", pg.url.redacted(), pg.table),
        Target::Parquet { dir } => format!("Parquet files in {}", c.job.resolve(dir).display()),
        Target::Dynamodb(d) => crate::dynamo::target_line(d),
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

async fn guess(args: &GuessArgs) -> anyhow::Result<ExitCode> {
    let sample =
        if args.source.starts_with("postgres://") || args.source.starts_with("postgresql://") {
            crate::guess::sample_postgres(&args.source).await?
        } else {
            crate::guess::sample(&args.source, args.sample_rows)?
        };
    let table = args
        .table
        .clone()
        .unwrap_or_else(|| crate::guess::default_table(&sample));
    let text = crate::guess::job_toml(&sample, "${DATABASE_URL}", &table, "replace")?;
    match &args.output {
        Some(p) => {
            std::fs::write(p, &text).with_context(|| format!("writing {}", p.display()))?;
            eprintln!(
                "wrote {} (check the types, then: ferry run {})",
                p.display(),
                p.display()
            );
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn load(args: &LoadArgs, progress: bool) -> anyhow::Result<ExitCode> {
    let (url, table, mode) = crate::guess::split_target(&args.target)?;
    let source = absolute(&args.source)?;
    let sample = crate::guess::sample(&source, args.sample_rows)?;
    let table = table.unwrap_or_else(|| crate::guess::default_table(&sample));
    let mut text = crate::guess::job_toml(&sample, "${DATABASE_URL}", &table, &mode)?;
    text = text.replace("max = 0.01", &format!("max = {}", args.max_reject_rate));
    std::fs::create_dir_all(&args.report_dir)?;
    let name = format!("load_{}", etl_source_csv::guess::sql_name(&table));
    let path = args.report_dir.join(format!("{name}.toml"));
    std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    let vars = |k: &str| {
        if k == "DATABASE_URL" {
            Some(url.clone())
        } else {
            std::env::var(k).ok()
        }
    };
    let job = Job::load_with(&path, vars)?;
    let c = JobRun::new(job, None, args.parallel);
    let m = migration(&c)?;
    let journal = journal(&c, &args.report_dir)?;
    // A load replaces the table it replaced last time: the table kept for the rollback of a
    // finished load is dropped first (a failed or unfinished load is left for --resume).
    if mode == "replace" {
        let status = m.status(journal.as_ref()).await?;
        let done = status
            .run
            .as_ref()
            .is_some_and(|r| r.state == RunState::Done);
        let cleaned = status
            .steps
            .iter()
            .any(|s| s.name == "cleanup" && s.state == StepState::Done);
        if done && !cleaned {
            let mut opts = RunOptions::new(&args.report_dir);
            opts.action = Action::Only(vec!["cleanup".into()]);
            m.execute(&c, journal.as_ref(), &opts).await?;
        }
    }
    let opts = RunOptions {
        action: Action::Run,
        stop_before: None,
        report_dir: args.report_dir.clone(),
        progress,
        cancel: etl_core::cli::cancel_on_ctrl_c(),
        target: Some(target_line(&c)),
        unit_retries: 3,
        guard_formulas: false,
        metrics: args.metrics.metrics(),
    };
    let report = m.execute(&c, journal.as_ref(), &opts).await?;
    println!("{}", report.summary_text());
    if report.succeeded() {
        eprintln!(
            "job saved as {} (ferry run it to load again)",
            path.display()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "the load did not finish; fix the cause, then continue it with:\n  DATABASE_URL=<the target URL> ferry run {} --resume\nor undo it with --rollback",
            path.display()
        );
        Ok(ExitCode::from(1))
    }
}

/// `path` with an absolute directory (the saved job file lives elsewhere).
fn absolute(path: &str) -> anyhow::Result<String> {
    let p = Path::new(path);
    if p.is_absolute() {
        return Ok(path.to_owned());
    }
    Ok(std::env::current_dir()?.join(p).display().to_string())
}
