//! The run layer: a whole migration as an ordered list of named [`Step`]s recorded in one
//! run [`Journal`].
//!
//! A [`Pipeline`](crate::Pipeline) moves batches from one source to one sink. A
//! *migration* is more: pre-flight checks, backups, a staging table, one or more
//! pipelines, index builds, gates, the switch into production, the steps after the switch
//! (REINDEX, summary rebuild, ANALYZE) and a cleanup. [`Migration`] runs such a list, and
//! every migration gets the same behaviours with the same flags:
//!
//! ```text
//!  preflight ─> backup ─> staging ─> [load: units 1..n] ─> indexes ─> gates ─> switch ─> post-switch ─> cleanup
//!      │          │          │               │                 │         │        │            │        (optional)
//!      ▼          ▼          ▼               ▼                 ▼         ▼        ▼            ▼
//!  ┌──────────────────────────────── run journal (one per migration) ─────────────────────────────────┐
//!  │ run: id, state (running / stopped / done / failed / rolled_back), host, pid, times               │
//!  │ step: name, kind, state (pending / running / done / failed / rolled_back), attempts, timings,   │
//!  │       details (figures, the pipeline's units and totals), error, definition fingerprint          │
//!  └──────────────────────────────────────────────────────────────────────────────────────────────────┘
//!   --resume   : the first step not done (a step that was running when killed runs again:
//!                steps are idempotent or resume themselves, as a pipeline does per unit)
//!   --rollback : the undo of every step that ran, newest first
//!   --plan     : the steps, their states and what --resume would do next (reads only)
//!   --dry-run  : the steps that only read run (a pipeline reads, transforms and validates);
//!                the others are listed with what they would do; nothing is written, not
//!                even the journal//!   groups     : steps tagged `Step::group("extract")` run together within the latest run
//!                (`Action::Group`, a seed's `--phase extract`; `--only extract`)
//! ```
//!
//! The runner records each step's peak memory (`peak_rss_mib` in its report line and in
//! `report.json` `extra`) and, with [`Migration::errors_log`], appends every step error,
//! failed check and reject to a run-wide errors log.
//!
//! The journal is a table when the target is PostgreSQL (`etl_sink_postgres::journal`),
//! so a unit's commit and its journal row can share a transaction, and a file next to the
//! artifacts otherwise ([`FileJournal`]). One report is assembled for every run:
//! `report.json` (steps with states and timings, totals, units, findings, the names of the
//! migration's own files), `summary.txt` and `rejects.csv`.
//!
//! A step is a closure over the migration's own context `C` (its configuration, URLs,
//! tables); a pipeline step builds and runs a [`Pipeline`](crate::Pipeline) and returns
//! [`StepOutput::from_pipeline`]:
//!
//! ```
//! use etl_core::migration::{FileJournal, Migration, RunOptions, Step, StepKind, StepOutput};
//! use etl_core::testing::{MemoryExtract, MemoryLoad};
//! use etl_core::Pipeline;
//!
//! struct Ctx { load: MemoryLoad }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> etl_core::Result<()> {
//! let m = Migration::new("numbers")
//!     .step(Step::new("load", StepKind::Load, |c: &Ctx, cx| Box::pin(async move {
//!         let report = Pipeline::new(MemoryExtract::numbers("n", 100, 10), c.load.clone())
//!             .run(&cx.run_info())
//!             .await;
//!         Ok(StepOutput::from_pipeline(report))
//!     })))
//!     .step(Step::new("announce", StepKind::PostSwitch, |_c: &Ctx, _cx| Box::pin(async {
//!         Ok(StepOutput::message("done"))
//!     })));
//! let dir = tempfile::tempdir().unwrap();
//! let journal = FileJournal::new(dir.path());
//! let ctx = Ctx { load: MemoryLoad::default() };
//! let report = m.execute(&ctx, &journal, &RunOptions::new(dir.path())).await?;
//! assert!(report.succeeded());
//! assert_eq!(report.totals.loaded, 100);
//! assert_eq!(report.steps.len(), 2);
//! # Ok(()) }
//! ```

mod journal;
mod runner;
mod step;

pub use journal::{
    FileJournal, Journal, JournalRun, LockHolder, MemoryJournal, RunLock, RunRecord, RunState,
    StepRecord, StepState,
};
pub use runner::{Action, Migration, RunOptions, Status};
pub use step::{Step, StepCx, StepFuture, StepKind, StepOutput, StepReport, Undo};

/// The directory of one backup of `migration`: `<base>/<migration>_<UTC time>`, `base`
/// being `--backup-dir` or else `<report_dir>/backups`.
pub fn backup_dir(
    base: Option<&std::path::Path>,
    report_dir: &std::path::Path,
    migration: &str,
) -> std::path::PathBuf {
    let base = base.map_or_else(|| report_dir.join("backups"), |b| b.to_path_buf());
    base.join(format!(
        "{migration}_{}",
        chrono::Utc::now().format("%Y%m%d_%H%M%S")
    ))
}

/// The action (or undo) of a [`Step`] from an async function `f(&C, &StepCx)` returning
/// `Result<StepOutput, E>` with any error convertible into a [`BoxError`](crate::BoxError)
/// (`anyhow::Error`, a crate's own error), instead of writing the boxed closure by hand:
///
/// ```
/// use etl_core::migration::{Step, StepCx, StepKind, StepOutput};
/// use etl_core::step_fn;
///
/// struct Ctx { table: String }
///
/// async fn analyze(c: &Ctx, _cx: &StepCx) -> Result<StepOutput, std::io::Error> {
///     Ok(StepOutput::message(format!("ANALYZE {}", c.table)))
/// }
///
/// let step: Step<Ctx> = Step::new("analyze", StepKind::PostSwitch, step_fn!(analyze))
///     .undo(step_fn!(analyze));
/// ```
#[macro_export]
macro_rules! step_fn {
    ($f:expr) => {
        |c, cx| {
            ::std::boxed::Box::pin(
                async move { ($f)(c, cx).await.map_err(::std::convert::Into::into) },
            )
        }
    };
}
