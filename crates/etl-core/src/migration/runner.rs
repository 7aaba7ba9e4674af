//! [`Migration`]: runs the steps, records them, assembles the report.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::journal::{JournalRun, MemoryJournal, RunRecord, RunState, StepRecord, StepState};
use super::step::{Shared, Step, StepCx, StepOutput, StepReport, Undo};
use super::{Journal, StepKind};
use crate::metrics::Metrics;
use crate::report::{RejectSpool, RunReport, RunStatus};
use crate::{Error, Finding, Result, UnitReport};

/// What an invocation does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A new run from the first step.
    Run,
    /// Continue the latest run at its first step that is not done.
    Resume,
    /// Undo every step of the latest run that ran, newest first.
    Rollback,
    /// Run the steps that only read (and pipelines in dry-run mode); list the others;
    /// write nothing, not even the journal.
    DryRun,
    /// Run only these steps (optional ones such as a cleanup) within the latest run; a
    /// group's name ([`Step::group`]) stands for its steps.
    Only(Vec<String>),
    /// Run the steps of one group ([`Step::group`], a phase such as `extract`) within the
    /// latest run (a new run when there is none or it was rolled back). Afresh
    /// ([`StepCx::resuming`](super::StepCx::resuming) unset) without `resume`; with it,
    /// only those not done yet, and those that resume themselves
    /// ([`Step::resumes_itself`]) again. The run is then `done` when every step is,
    /// `stopped` otherwise (`--resume` continues it).
    Group {
        /// The group.
        group: String,
        /// Continue the group rather than run it afresh.
        resume: bool,
    },
    /// Continue the latest run at this step, and only if it stopped right before it with
    /// every earlier step done (a run stopped by [`RunOptions::stop_before`], e.g. the
    /// switch after `--no-switchover`); refused otherwise.
    Continue(String),
}

impl Action {
    /// The lowercase name used in reports.
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Run => "run",
            Action::Resume => "resume",
            Action::Rollback => "rollback",
            Action::DryRun => "dry_run",
            Action::Only(_) => "only",
            Action::Group { .. } => "group",
            Action::Continue(_) => "continue",
        }
    }
}

/// How [`Migration::execute`] runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// What to do.
    pub action: Action,
    /// Stop before this step (e.g. `switch` for `--no-switchover`); the run is then
    /// `stopped` and `--resume` continues it there.
    pub stop_before: Option<String>,
    /// Where `report.json`, `report.html`, `summary.txt`, `rejects.csv` and the migration's
    /// files go.
    pub report_dir: PathBuf,
    /// Progress bars on a terminal, a progress line every 10 s off one.
    pub progress: bool,
    /// Cancelled on Ctrl-C: the running step stops at its next batch, the run fails and
    /// `--resume` continues it.
    pub cancel: CancellationToken,
    /// What the run writes to, for the report (no password: redact URLs first).
    pub target: Option<String>,
    /// Times a pipeline unit failing with a retryable error is run again
    /// ([`StepCx::pipeline_options`](super::StepCx::pipeline_options)); 3 by default.
    pub unit_retries: u32,
    /// Guard `rejects.csv` against spreadsheet formulas (`--guard-formulas`).
    pub guard_formulas: bool,
    /// Prometheus metrics of the run (`--metrics-file`, `--metrics-addr`): written and
    /// served while [`Migration::execute`] runs; every step's pipelines count into it.
    pub metrics: Option<Metrics>,
}

impl RunOptions {
    /// A plain run writing its report to `report_dir`, without progress display.
    pub fn new(report_dir: impl Into<PathBuf>) -> Self {
        RunOptions {
            action: Action::Run,
            stop_before: None,
            report_dir: report_dir.into(),
            progress: false,
            cancel: CancellationToken::new(),
            target: None,
            unit_retries: 3,
            guard_formulas: false,
            metrics: None,
        }
    }

    /// The same options exporting `metrics` ([`crate::metrics`]).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The same options with another action.
    pub fn with_action(mut self, action: Action) -> Self {
        self.action = action;
        self
    }
}

/// A whole migration: an ordered list of named steps recorded in a [`Journal`].
///
/// See the [module docs](super) for what every migration gets from it.
pub struct Migration<C> {
    name: String,
    steps: Vec<Step<C>>,
    restartable: bool,
    errors_log: Option<String>,
}

impl<C> std::fmt::Debug for Migration<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Migration")
            .field("name", &self.name)
            .field("steps", &self.steps)
            .field("restartable", &self.restartable)
            .finish()
    }
}

/// One step's line in [`Status`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StatusLine {
    /// Position (1-based).
    pub position: u32,
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: StepKind,
    /// Recorded state.
    pub state: StepState,
    /// Runs only when asked for.
    pub optional: bool,
    /// Times started in the run.
    pub attempts: u32,
    /// Seconds of its last run.
    pub seconds: Option<f64>,
    /// When it last finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Its error, if it failed.
    pub error: Option<String>,
    /// What it does.
    pub description: String,
}

/// The steps of a migration with their recorded states and what the next invocation would
/// do (`--plan`). Its `Display` is the listing people read.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Status {
    /// The migration.
    pub migration: String,
    /// Where the journal is.
    pub journal: String,
    /// The latest run, if any.
    pub run: Option<RunRecord>,
    /// Every step in order.
    pub steps: Vec<StatusLine>,
    /// What `--resume`, a plain run and `--rollback` would do now.
    pub next: Vec<String>,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "migration {}   (journal: {})",
            self.migration, self.journal
        )?;
        match &self.run {
            Some(r) => writeln!(
                f,
                "latest run {}: {}, started {}{} by {} pid {}",
                r.run_id,
                r.state.as_str(),
                r.started_at.to_rfc3339(),
                r.finished_at
                    .map(|t| format!(", ended {}", t.to_rfc3339()))
                    .unwrap_or_default(),
                r.host,
                r.pid
            )?,
            None => writeln!(f, "no run recorded yet")?,
        }
        writeln!(
            f,
            "\n{:>3}  {:<24} {:<12} {:<12} {:>8}  what",
            "#", "step", "kind", "state", "seconds"
        )?;
        for s in &self.steps {
            let state = if s.optional && s.state == StepState::Pending {
                "optional".to_owned()
            } else {
                s.state.as_str().to_owned()
            };
            writeln!(
                f,
                "{:>3}  {:<24} {:<12} {:<12} {:>8}  {}",
                s.position,
                s.name,
                s.kind.as_str(),
                state,
                s.seconds.map(|x| format!("{x:.2}")).unwrap_or_default(),
                s.description
            )?;
            if let Some(e) = &s.error {
                writeln!(f, "{:>5}error: {e}", "")?;
            }
        }
        writeln!(f)?;
        for n in &self.next {
            writeln!(f, "{n}")?;
        }
        Ok(())
    }
}

impl<C: Send + Sync> Migration<C> {
    /// An empty migration named `name` (the journal key).
    pub fn new(name: impl Into<String>) -> Self {
        Migration {
            name: name.into(),
            steps: Vec::new(),
            restartable: false,
            errors_log: None,
        }
    }

    /// Keep a run-wide errors log `name` in the report directory (listed in
    /// `report.json` `files`; it accumulates over runs): every step's error, its failed
    /// or warning checks and its pipeline's rejects (`REJECT <step> <rejects.csv line>`),
    /// the run's error, and what steps add with
    /// [`StepCx::log_errors`](super::StepCx::log_errors).
    pub fn errors_log(mut self, name: impl Into<String>) -> Self {
        self.errors_log = Some(name.into());
        self
    }

    /// Add a step at the end.
    ///
    /// # Panics
    /// When a step of that name exists (names are the journal's keys).
    pub fn step(mut self, step: Step<C>) -> Self {
        assert!(
            !self.steps.iter().any(|s| s.name == step.name),
            "migration `{}`: step name `{}` is used twice",
            self.name,
            step.name
        );
        self.steps.push(step);
        self
    }

    /// Add several steps at the end.
    ///
    /// # Panics
    /// When a name is used twice.
    pub fn steps(self, steps: impl IntoIterator<Item = Step<C>>) -> Self {
        steps.into_iter().fold(self, Migration::step)
    }

    /// A plain run may start over when the latest run stopped before its switch (a load
    /// into staging is simply redone). Without it, a plain run refuses while the latest
    /// run is unfinished. After a switch, a plain run always refuses: finish the run with
    /// `--resume` or undo it with `--rollback`.
    pub fn restart_unfinished(mut self) -> Self {
        self.restartable = true;
        self
    }

    /// The groups of its steps ([`Step::group`]), in order of first appearance.
    pub fn groups(&self) -> Vec<&str> {
        let mut v: Vec<&str> = Vec::new();
        for g in self.steps.iter().filter_map(|s| s.group.as_deref()) {
            if !v.contains(&g) {
                v.push(g);
            }
        }
        v
    }

    /// The migration's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The steps, in order.
    pub fn step_list(&self) -> &[Step<C>] {
        &self.steps
    }

    fn records(&self, run: Option<&JournalRun>) -> Vec<StepRecord> {
        self.steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut r = run
                    .and_then(|r| r.step(&s.name))
                    .cloned()
                    .unwrap_or_else(|| StepRecord::pending(&s.name, i as u32 + 1, s.kind));
                r.position = i as u32 + 1;
                r.kind = s.kind;
                r
            })
            .collect()
    }

    /// Restore the target outside the steps (from a backup) with `restore`, holding the
    /// run lock; then the latest run, if unfinished, is marked rolled back with `note`
    /// (a new run may start; `--only cleanup` still works in it). Returns what `restore`
    /// returned.
    ///
    /// # Errors
    /// Another process runs the migration; `restore`'s error (the journal is untouched
    /// then); the journal's.
    pub async fn restore_outside<T, F>(
        &self,
        journal: &dyn Journal,
        note: &str,
        restore: F,
    ) -> std::result::Result<T, crate::BoxError>
    where
        F: std::future::Future<Output = std::result::Result<T, crate::BoxError>>,
    {
        let _lock = journal.lock(&self.name).await?;
        let out = restore.await?;
        if let Some(mut latest) = journal.latest(&self.name).await?
            && !matches!(latest.run.state, RunState::Done | RunState::RolledBack)
        {
            latest.run.state = RunState::RolledBack;
            latest.run.finished_at = Some(Utc::now());
            latest.run.message = Some(note.to_owned());
            journal.put_run(&latest.run).await?;
        }
        Ok(out)
    }

    /// The steps with their recorded states and what the next invocation would do.
    /// Reads the journal only.
    ///
    /// # Errors
    /// The journal cannot be read.
    pub async fn status(&self, journal: &dyn Journal) -> Result<Status> {
        let latest = journal.latest(&self.name).await?;
        let records = self.records(latest.as_ref());
        let steps: Vec<StatusLine> = self
            .steps
            .iter()
            .zip(&records)
            .map(|(s, r)| StatusLine {
                position: r.position,
                name: s.name.clone(),
                kind: s.kind,
                state: r.state,
                optional: s.optional,
                attempts: r.attempts,
                seconds: r.duration_s,
                finished_at: r.finished_at,
                error: r.error.clone(),
                description: s.description.clone(),
            })
            .collect();
        let mut next = Vec::new();
        let first = self.steps.iter().find(|s| !s.optional);
        match &latest {
            None => next.push(format!(
                "next: a run starts at step 1 `{}`",
                first.map_or("-", |s| s.name.as_str())
            )),
            Some(run) if run.run.state.resumable() => {
                let interrupted = run.run.state == RunState::Running;
                let todo = self
                    .steps
                    .iter()
                    .zip(&records)
                    .find(|(s, r)| !s.optional && r.state != StepState::Done);
                match todo {
                    Some((s, r)) => next.push(format!(
                        "next: --resume continues run {} at step {} `{}`{}",
                        run.run.run_id,
                        r.position,
                        s.name,
                        match r.state {
                            StepState::Running =>
                                " (it was running when the run was interrupted: it runs again)"
                                    .to_owned(),
                            StepState::Failed => format!(
                                " (it failed: {}; it runs again)",
                                r.error.as_deref().unwrap_or("?")
                            ),
                            _ => String::new(),
                        }
                    )),
                    None => next.push(format!(
                        "next: --resume finishes run {} (every step is done)",
                        run.run.run_id
                    )),
                }
                if interrupted {
                    next.push(match journal.lock_held(&self.name).await? {
                        Some(true) => format!(
                            "the run is live: pid {} on {} holds the run lock (a new run, --resume and --rollback are refused until it ends)",
                            run.run.pid, run.run.host
                        ),
                        Some(false) => format!(
                            "the run was interrupted: its process (pid {} on {}) is gone and the run lock is free",
                            run.run.pid, run.run.host
                        ),
                        None => format!(
                            "the run is recorded as running: if its process (pid {} on {}) is gone, it was interrupted",
                            run.run.pid, run.run.host
                        ),
                    });
                }
                next.push(self.plain_run_note(run));
                next.push(self.rollback_note(&records));
            }
            Some(run) => {
                next.push(format!(
                    "next: the latest run {} is {}; a plain run starts a new run at step 1 `{}`",
                    run.run.run_id,
                    run.run.state.as_str(),
                    first.map_or("-", |s| s.name.as_str())
                ));
                if run.run.state == RunState::Done {
                    next.push(self.rollback_note(&records));
                }
            }
        }
        Ok(Status {
            migration: self.name.clone(),
            journal: journal.location(),
            run: latest.map(|r| r.run),
            steps,
            next,
        })
    }

    fn plain_run_note(&self, run: &JournalRun) -> String {
        match self.check_fresh(run) {
            Ok(()) => "a plain run would start over (the unfinished run has not switched)".into(),
            Err(e) => format!("a plain run is refused: {e}"),
        }
    }

    fn rollback_note(&self, records: &[StepRecord]) -> String {
        let touched: Vec<&Step<C>> = self
            .steps
            .iter()
            .zip(records)
            .filter(|(_, r)| r.state.touched())
            .map(|(s, _)| s)
            .collect();
        if touched.is_empty() {
            return "--rollback has nothing to undo".into();
        }
        if let Some(s) = touched
            .iter()
            .find(|s| matches!(s.undo, Undo::Impossible(_)))
        {
            return format!("--rollback is refused: step `{}` cannot be undone", s.name);
        }
        format!(
            "--rollback would undo, in this order: {}",
            touched
                .iter()
                .rev()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    /// A plain run while `run` is unfinished: allowed only for a restartable migration
    /// whose unfinished run has not switched.
    fn check_fresh(&self, run: &JournalRun) -> Result<()> {
        let records = self.records(Some(run));
        // A run in which only pre-flight checks ran (one refused at its start) changed
        // nothing: a new run may begin.
        let changed_something = self
            .steps
            .iter()
            .zip(&records)
            .any(|(s, r)| !s.always && r.state.touched());
        if !changed_something {
            return Ok(());
        }
        let at = self
            .steps
            .iter()
            .zip(&records)
            .find(|(s, r)| !s.optional && r.state != StepState::Done)
            .map(|(s, r)| format!("step `{}` is {}", s.name, r.state.as_str()))
            .unwrap_or_else(|| "its last steps are not done".into());
        let switched = self
            .steps
            .iter()
            .zip(&records)
            .any(|(s, r)| s.kind == StepKind::Switch && r.state.touched());
        if switched {
            return Err(Error::Refused(format!(
                "migration `{}`: run {} reached its switch into production and stopped before its end ({at}); finish it with --resume or undo it with --rollback",
                self.name, run.run.run_id
            )));
        }
        if !self.restartable {
            return Err(Error::Refused(format!(
                "migration `{}`: run {} stopped part-way ({at}); continue it with --resume or undo it with --rollback",
                self.name, run.run.run_id
            )));
        }
        Ok(())
    }

    /// Run the migration as `opts.action` says, record every step in `journal`, write the
    /// report (`report.json`, `summary.txt`, `rejects.csv`) into `opts.report_dir` and
    /// return it. A failed step ends the run with status `failed` (not an `Err`): the
    /// report says which step, why, and what to run next.
    ///
    /// # Errors
    /// Refused before any step runs ([`Error::Refused`]): `--resume` with nothing to
    /// resume, or a step done earlier whose definition changed; a plain run while the
    /// latest run is unfinished (see [`Migration::restart_unfinished`]); `--rollback`
    /// with nothing to undo or a step that cannot be undone; an unknown step name. Also
    /// when the journal cannot be read or the run cannot be recorded.
    pub async fn execute(
        &self,
        ctx: &C,
        journal: &dyn Journal,
        opts: &RunOptions,
    ) -> Result<RunReport> {
        let started = Utc::now();
        let export = match &opts.metrics {
            Some(m) => {
                m.set_migration(&self.name);
                Some(m.start_export().await?)
            }
            None => None,
        };
        let report = self.execute_locked(ctx, journal, opts, started).await;
        if let (Some(m), Some(export)) = (&opts.metrics, export) {
            m.set_run_state(match &report {
                Ok(r) => r.run_state.as_deref().unwrap_or("done"),
                Err(Error::Refused(_)) => "refused",
                Err(_) => "failed",
            });
            export.finish().await;
        }
        report
    }

    async fn execute_locked(
        &self,
        ctx: &C,
        journal: &dyn Journal,
        opts: &RunOptions,
        started: DateTime<Utc>,
    ) -> Result<RunReport> {
        // One run per target: held to the end of this invocation (a dry run writes
        // nothing and takes none).
        let lock = if opts.action == Action::DryRun {
            super::RunLock::none()
        } else {
            journal.lock(&self.name).await?
        };
        let lock_lost = || lock.is_lost();
        let report = match &opts.action {
            Action::Rollback => self.rollback(ctx, journal, opts, started).await,
            Action::DryRun => match journal.latest(&self.name).await {
                Ok(prev) => {
                    let mem = match prev {
                        Some(p) => MemoryJournal::with(p),
                        None => MemoryJournal::new(),
                    };
                    self.forward(ctx, &mem, opts, started, &|| false).await
                }
                Err(e) => Err(e),
            },
            _ => self.forward(ctx, journal, opts, started, &lock_lost).await,
        };
        lock.release().await;
        report
    }

    fn shared_from(records: &[StepRecord]) -> Arc<Mutex<Shared>> {
        let mut shared = Shared::default();
        for r in records {
            if !r.details.is_null() {
                shared.details.insert(r.name.clone(), r.details.clone());
            }
        }
        Arc::new(Mutex::new(shared))
    }

    fn cx(
        &self,
        run_id: Uuid,
        step: &Step<C>,
        attempt: u32,
        opts: &RunOptions,
        shared: &Arc<Mutex<Shared>>,
    ) -> StepCx {
        let resume = match &opts.action {
            Action::Group { resume, .. } => *resume && attempt > 1,
            _ => attempt > 1,
        };
        StepCx {
            resume,
            errors_log: (self.errors_log.as_ref()).map(|n| opts.report_dir.join(n)),
            migration: self.name.clone(),
            run_id,
            step: step.name.clone(),
            attempt,
            dry_run: opts.action == Action::DryRun,
            cancel: opts.cancel.clone(),
            progress: opts.progress,
            report_dir: opts.report_dir.clone(),
            unit_retries: opts.unit_retries,
            guard_formulas: opts.guard_formulas,
            shared: shared.clone(),
            metrics: (opts.metrics.as_ref()).map(|m| m.for_step(&step.name)),
        }
    }

    async fn forward(
        &self,
        ctx: &C,
        journal: &dyn Journal,
        opts: &RunOptions,
        started: DateTime<Utc>,
        lock_lost: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<RunReport> {
        let dry = opts.action == Action::DryRun;
        let prev = journal.latest(&self.name).await?;
        if let Action::Group { group, .. } = &opts.action
            && !self.steps.iter().any(|s| s.group.as_ref() == Some(group))
        {
            return Err(Error::Refused(format!(
                "migration `{}` has no step in group `{group}` (its groups: {})",
                self.name,
                self.groups().join(", ")
            )));
        }
        if let Action::Only(names) = &opts.action {
            for n in names {
                if !self
                    .steps
                    .iter()
                    .any(|s| &s.name == n || s.group.as_ref() == Some(n))
                {
                    return Err(Error::Refused(format!(
                        "migration `{}` has no step `{n}` (its steps: {})",
                        self.name,
                        self.steps
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
            }
        }
        let (mut run, continuing) = match (&opts.action, prev) {
            (Action::Resume, None) => {
                return Err(Error::Refused(format!(
                    "--resume: migration `{}` has no run to resume (journal: {}); start one without --resume",
                    self.name,
                    journal.location()
                )));
            }
            (Action::Resume, Some(p)) => {
                if !p.run.state.resumable() {
                    return Err(Error::Refused(format!(
                        "--resume: the latest run {} of `{}` is {}; there is nothing to resume (start a new run without --resume)",
                        p.run.run_id,
                        self.name,
                        p.run.state.as_str()
                    )));
                }
                self.check_fingerprints(&p)?;
                (p, true)
            }
            (Action::Only(_), Some(p)) => (p, true),
            (Action::Group { .. }, Some(p)) if p.run.state != RunState::RolledBack => (p, true),
            (Action::Continue(at), p) => {
                let ready =
                    p.as_ref().is_some_and(|p| {
                        p.run.state == RunState::Stopped
                            && self.steps.iter().take_while(|s| &s.name != at).all(|s| {
                                p.step(&s.name).is_some_and(|x| x.state == StepState::Done)
                            })
                    });
                let what = p.as_ref().map_or_else(
                    || "there is no earlier run".to_owned(),
                    |p| {
                        format!(
                            "the latest run {} is `{}`",
                            p.run.run_id,
                            p.run.state.as_str()
                        )
                    },
                );
                let Some(p) = p.filter(|_| ready) else {
                    return Err(Error::Refused(format!(
                        "refusing to continue `{}` at `{at}`: {what}, not stopped right before `{at}` with every earlier step done; run it again up to there",
                        self.name
                    )));
                };
                self.check_fingerprints(&p)?;
                (p, true)
            }
            (Action::Run, Some(p)) if p.run.state.resumable() => {
                self.check_fresh(&p)?;
                tracing::warn!(run = %p.run.run_id, "the latest run stopped before its switch; starting over");
                (self.new_run(), false)
            }
            _ => (self.new_run(), false),
        };
        run.steps = self.records(Some(&run));
        // `Only` (a cleanup) leaves a run in the state it was in: a cleanup after a
        // rollback must not make the run resumable again.
        let state_before =
            (continuing && !matches!(opts.action, Action::Group { .. })).then_some(run.run.state);
        run.run.state = RunState::Running;
        run.run.host = host();
        run.run.pid = std::process::id();
        run.run.finished_at = None;
        let run_id = run.run.run_id;
        if continuing {
            journal.put_run(&run.run).await?;
        } else {
            journal.begin(&run).await?;
            if !dry && let Ok(spool) = RejectSpool::new(&opts.report_dir) {
                let _ = spool.clear();
            }
        }
        tracing::info!(migration = %self.name, run = %run_id, action = opts.action.as_str(), journal = %journal.location(), "migration started");
        if let Some(m) = &opts.metrics {
            m.begin_run(
                &self.name,
                &run_id.to_string(),
                opts.action.as_str(),
                &run.steps,
            );
        }

        let shared = Self::shared_from(&run.steps);
        if let Some(log) = &self.errors_log {
            let _ = std::fs::create_dir_all(&opts.report_dir);
            super::step::append_lines(&opts.report_dir.join(log), [])?;
            shared
                .lock()
                .expect("step context lock")
                .files
                .push(log.clone());
        }
        let mut reports = Vec::new();
        let mut pipelines: Vec<RunReport> = Vec::new();
        let mut findings: Vec<Finding> = Vec::new();
        let mut error: Option<String> = None;
        let mut stopped = false;
        let n = self.steps.len();
        for (i, step) in self.steps.iter().enumerate() {
            let mut rec = run.steps[i].clone();
            let in_group = |g: &String| step.group.as_ref() == Some(g);
            let skip = match &opts.action {
                Action::Only(names) if !names.iter().any(|n| *n == step.name || in_group(n)) => {
                    Some("not asked for")
                }
                Action::Only(_) => None,
                Action::Group { group, .. } if !in_group(group) => Some("not in the group"),
                Action::Group { resume: true, .. }
                    if rec.state == StepState::Done && !step.always && !step.resumes_itself =>
                {
                    Some("done earlier")
                }
                Action::Group { .. } => None,
                _ if step.optional => Some("optional: not asked for"),
                _ if rec.state == StepState::Done && !step.always => Some("done earlier"),
                _ => None,
            };
            if let Some(why) = skip {
                if rec.state == StepState::Done
                    && let Some(p) = rec
                        .details
                        .get("pipeline")
                        .and_then(|p| serde_json::from_value::<RunReport>(p.clone()).ok())
                {
                    pipelines.push(p);
                }
                reports.push(step_report(&rec, "skipped", why));
                continue;
            }
            if error.is_some() || stopped {
                reports.push(step_report(&rec, "not_reached", ""));
                continue;
            }
            if opts.stop_before.as_deref() == Some(step.name.as_str())
                && !matches!(opts.action, Action::Only(_))
            {
                stopped = true;
                reports.push(step_report(
                    &rec,
                    "not_reached",
                    "stopped before this step, as asked; --resume continues here",
                ));
                continue;
            }
            if lock_lost() {
                error = Some(format!(
                    "the run lock was lost (its database session ended and another process took the lock before it could be taken again); stopped before step `{}` — see who runs now with --plan",
                    step.name
                ));
                reports.push(step_report(&rec, "not_reached", ""));
                continue;
            }
            if opts.cancel.is_cancelled() {
                error = Some(format!(
                    "cancelled before step `{}`; rerun with --resume to continue",
                    step.name
                ));
                reports.push(step_report(&rec, "not_reached", ""));
                continue;
            }
            if dry && !step.in_dry_run {
                reports.push(step_report(
                    &rec,
                    "would_run",
                    &format!("would run: {}", step.description),
                ));
                continue;
            }
            // Run it.
            rec.state = StepState::Running;
            rec.attempts += 1;
            rec.started_at = Some(Utc::now());
            rec.finished_at = None;
            rec.error = None;
            rec.fingerprint = step.fingerprint.clone();
            if let Err(e) = journal.put_step(&self.name, run_id, &rec).await {
                error = Some(format!(
                    "cannot record step `{}` in the journal: {e}",
                    step.name
                ));
                reports.push(step_report(&rec, "not_reached", ""));
                continue;
            }
            note_step(opts, &rec);
            test_pause(&step.name, "before").await;
            let cx = self.cx(run_id, step, rec.attempts, opts, &shared);
            tracing::info!(step = %step.name, position = i + 1, of = n, attempt = rec.attempts, "step started");
            let ticker = crate::progress::StepTicker::start(
                opts.progress,
                &format!("step {}/{} {}", i + 1, n, step.name),
            );
            let t0 = Instant::now();
            crate::mem::reset_peak_rss();
            let result = (step.action)(ctx, &cx).await;
            test_pause(&step.name, "after").await;
            let peak = crate::mem::peak_rss_bytes().map(crate::mem::mib);
            let secs = t0.elapsed().as_secs_f64();
            ticker.finish();
            rec.finished_at = Some(Utc::now());
            rec.duration_s = Some(secs);
            let (out, failure) = match result {
                Ok(o) => {
                    let f = o.failure();
                    (o, f)
                }
                Err(e) => (StepOutput::default(), Some(error_chain(&*e))),
            };
            if let Err(e) = log_step_errors(&cx, &out, failure.as_deref(), &opts.report_dir) {
                tracing::warn!(error = %e, "cannot append to the errors log");
            }
            rec.message = Some(out.message.clone());
            let mut details = out.details.clone();
            if let Some(p) = &out.pipeline {
                if !details.is_object() {
                    details = json!({});
                }
                details["pipeline"] = serde_json::to_value(p.as_ref()).unwrap_or(Value::Null);
            }
            rec.details = details.clone();
            findings.extend(out.findings.iter().cloned());
            if let Some(p) = out.pipeline {
                pipelines.push(*p);
            }
            if let Some(why) = failure {
                rec.state = StepState::Failed;
                rec.error = Some(why.clone());
                tracing::error!(step = %step.name, seconds = secs, error = %why, "step failed");
                error = Some(if dry {
                    format!("step `{}` failed: {why}", step.name)
                } else {
                    format!(
                        "step `{}` failed: {why}; fix the cause and rerun with --resume, or undo with --rollback",
                        step.name
                    )
                });
            } else {
                rec.state = StepState::Done;
                tracing::info!(step = %step.name, seconds = format!("{secs:.2}"), "step done: {}", out.message);
                if !details.is_null() {
                    shared
                        .lock()
                        .expect("step context lock")
                        .details
                        .insert(step.name.clone(), details);
                }
            }
            if let Err(e) = journal.put_step(&self.name, run_id, &rec).await
                && error.is_none()
            {
                error = Some(format!(
                    "step `{}` ran but cannot be recorded in the journal: {e}; --resume runs it again",
                    step.name
                ));
            }
            note_step(opts, &rec);
            let outcome = if rec.state == StepState::Done {
                "ran"
            } else {
                "failed"
            };
            let mut report = step_report(&rec, outcome, &out.message);
            report.peak_rss_mib = peak;
            reports.push(report);
            run.steps[i] = rec;
        }
        let all_done = self
            .steps
            .iter()
            .zip(&run.steps)
            .all(|(s, r)| s.optional || r.state == StepState::Done);
        run.run.state = if error.is_some() {
            RunState::Failed
        } else if let (Action::Only(_), Some(before)) = (&opts.action, state_before) {
            before
        } else if matches!(opts.action, Action::Only(_)) || (all_done && !stopped) {
            RunState::Done
        } else {
            RunState::Stopped
        };
        run.run.finished_at = Some(Utc::now());
        run.run.message = error.clone();
        let journal_err = journal.put_run(&run.run).await.err();
        let status = if error.is_some() || journal_err.is_some() {
            RunStatus::Failed
        } else if dry {
            RunStatus::DryRun
        } else {
            RunStatus::Succeeded
        };
        if let Some(e) = journal_err {
            error.get_or_insert_with(|| format!("cannot record the run's end in the journal: {e}"));
        }
        if let (Some(e), Some(log)) = (&error, &self.errors_log) {
            let _ = super::step::append_lines(&opts.report_dir.join(log), [format!("ERROR {e}")]);
        }
        if stopped && error.is_none() {
            let at = opts.stop_before.clone().unwrap_or_default();
            shared.lock().expect("step context lock").extra.insert(
                "next_step".into(),
                json!(format!(
                    "stopped before step `{at}` as asked; continue with --resume (or undo with --rollback)"
                )),
            );
        }
        let report = self.assemble(
            run_id,
            status,
            error,
            started,
            reports,
            pipelines,
            findings,
            &shared,
            opts,
            run.run.state,
            journal,
        );
        write_report(report, opts)
    }

    fn new_run(&self) -> JournalRun {
        JournalRun {
            run: RunRecord {
                migration: self.name.clone(),
                run_id: Uuid::now_v7(),
                state: RunState::Running,
                started_at: Utc::now(),
                finished_at: None,
                host: host(),
                pid: std::process::id(),
                message: None,
            },
            steps: self.records(None),
        }
    }

    fn check_fingerprints(&self, run: &JournalRun) -> Result<()> {
        for s in &self.steps {
            if let (Some(now), Some(rec)) = (&s.fingerprint, run.step(&s.name))
                && rec.state == StepState::Done
                && let Some(then) = &rec.fingerprint
                && then != now
            {
                return Err(Error::Refused(format!(
                    "--resume: step `{}` of run {} was done with a definition that has changed since (fingerprint {then}, now {now}); undo the run with --rollback, or restore what changed",
                    s.name, run.run.run_id
                )));
            }
        }
        Ok(())
    }

    async fn rollback(
        &self,
        ctx: &C,
        journal: &dyn Journal,
        opts: &RunOptions,
        started: DateTime<Utc>,
    ) -> Result<RunReport> {
        let Some(mut run) = journal.latest(&self.name).await? else {
            return Err(Error::Refused(format!(
                "--rollback: migration `{}` has no run to roll back (journal: {})",
                self.name,
                journal.location()
            )));
        };
        if run.run.state == RunState::RolledBack {
            return Err(Error::Refused(format!(
                "--rollback: the latest run {} of `{}` is already rolled back",
                run.run.run_id, self.name
            )));
        }
        run.steps = self.records(Some(&run));
        let blocked: Vec<String> = self
            .steps
            .iter()
            .zip(&run.steps)
            .filter(|(_, r)| r.state.touched())
            .filter_map(|(s, _)| match &s.undo {
                Undo::Impossible(why) => Some(format!("`{}` ({why})", s.name)),
                _ => None,
            })
            .collect();
        if !blocked.is_empty() {
            return Err(Error::Refused(format!(
                "--rollback of run {} refused before undoing anything: step(s) {} cannot be undone",
                run.run.run_id,
                blocked.join(", ")
            )));
        }
        let run_id = run.run.run_id;
        run.run.host = host();
        run.run.pid = std::process::id();
        journal.put_run(&run.run).await?;
        tracing::info!(migration = %self.name, run = %run_id, "rollback started");
        if let Some(m) = &opts.metrics {
            m.begin_run(
                &self.name,
                &run_id.to_string(),
                opts.action.as_str(),
                &run.steps,
            );
        }
        let shared = Self::shared_from(&run.steps);
        let mut reports: Vec<StepReport> = Vec::new();
        let mut error = None;
        for i in (0..self.steps.len()).rev() {
            let step = &self.steps[i];
            let mut rec = run.steps[i].clone();
            if !rec.state.touched() {
                continue;
            }
            if error.is_some() {
                reports.push(step_report(&rec, "not_reached", ""));
                continue;
            }
            let t0 = Instant::now();
            let message = match &step.undo {
                Undo::Nothing => Ok("nothing to undo".to_owned()),
                Undo::Impossible(why) => Err(why.clone()),
                Undo::Action(undo) => {
                    let cx = self.cx(run_id, step, rec.attempts, opts, &shared);
                    tracing::info!(step = %step.name, "undoing step");
                    let ticker = crate::progress::StepTicker::start(
                        opts.progress,
                        &format!("undo {}", step.name),
                    );
                    let r = undo(ctx, &cx).await;
                    ticker.finish();
                    match r {
                        Ok(o) => Ok(if o.message.is_empty() {
                            "undone".to_owned()
                        } else {
                            o.message
                        }),
                        Err(e) => Err(error_chain(&*e)),
                    }
                }
            };
            let secs = t0.elapsed().as_secs_f64();
            match message {
                Ok(m) => {
                    rec.state = StepState::RolledBack;
                    rec.message = Some(m.clone());
                    rec.duration_s = Some(secs);
                    rec.finished_at = Some(Utc::now());
                    rec.error = None;
                    journal.put_step(&self.name, run_id, &rec).await?;
                    note_step(opts, &rec);
                    reports.push(step_report(&rec, "rolled_back", &m));
                }
                Err(e) => {
                    error = Some(format!(
                        "undo of step `{}` failed: {e}; fix the cause and run --rollback again (it continues where it stopped)",
                        step.name
                    ));
                    rec.error = Some(e);
                    journal.put_step(&self.name, run_id, &rec).await?;
                    note_step(opts, &rec);
                    reports.push(step_report(&rec, "failed", ""));
                }
            }
            run.steps[i] = rec;
        }
        reports.reverse();
        if error.is_none() {
            run.run.state = RunState::RolledBack;
        }
        run.run.finished_at = Some(Utc::now());
        run.run.message = error.clone();
        journal.put_run(&run.run).await?;
        let status = if error.is_some() {
            RunStatus::Failed
        } else {
            RunStatus::RolledBack
        };
        let report = self.assemble(
            run_id,
            status,
            error,
            started,
            reports,
            Vec::new(),
            Vec::new(),
            &shared,
            opts,
            run.run.state,
            journal,
        );
        write_report(report, opts)
    }

    #[allow(clippy::too_many_arguments)] // the parts of one report
    fn assemble(
        &self,
        run_id: Uuid,
        status: RunStatus,
        error: Option<String>,
        started: DateTime<Utc>,
        steps: Vec<StepReport>,
        pipelines: Vec<RunReport>,
        findings: Vec<Finding>,
        shared: &Arc<Mutex<Shared>>,
        opts: &RunOptions,
        state: RunState,
        journal: &dyn Journal,
    ) -> RunReport {
        let mut report = RunReport::new(&self.name, &run_id.to_string(), status, &[], started);
        report.error = error;
        let units: Vec<UnitReport> = pipelines.iter().flat_map(|p| p.units.clone()).collect();
        report.set_units(units);
        report.validation = findings;
        for p in &pipelines {
            report.validation.extend(p.validation.iter().cloned());
            for (k, v) in &p.extra {
                report.extra.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        let shared = shared.lock().expect("step context lock");
        for (k, v) in &shared.extra {
            report.extra.insert(k.clone(), v.clone());
        }
        let peaks: serde_json::Map<String, Value> = (steps.iter())
            .filter_map(|s| Some((s.name.clone(), json!(s.peak_rss_mib?))))
            .collect();
        if !peaks.is_empty() {
            report
                .extra
                .insert("peak_rss_mib".into(), Value::Object(peaks));
        }
        report.steps = steps;
        report.action = Some(opts.action.as_str().to_owned());
        report.run_state = Some(state.as_str().to_owned());
        report.journal = Some(journal.location());
        report.target = opts.target.clone();
        report.files = ["report.json", "report.html", "summary.txt", "rejects.csv"]
            .into_iter()
            .map(str::to_owned)
            .chain(shared.files.iter().cloned())
            .collect();
        report
    }
}

/// A step's recorded state, for the metrics.
fn note_step(opts: &RunOptions, rec: &StepRecord) {
    if let Some(m) = &opts.metrics {
        m.step_record(rec);
    }
}

fn write_report(report: RunReport, opts: &RunOptions) -> Result<RunReport> {
    let mut report = report;
    let spool = RejectSpool::new(&opts.report_dir).ok();
    if let Err(e) = report.write(&opts.report_dir, spool.as_ref()) {
        tracing::error!(error = %e, "cannot write the run report");
        report.status = RunStatus::Failed;
        report
            .error
            .get_or_insert_with(|| format!("cannot write the report: {e}"));
    }
    Ok(report)
}

fn step_report(rec: &StepRecord, outcome: &str, message: &str) -> StepReport {
    let mut details = rec.details.clone();
    if let Some(obj) = details.as_object_mut() {
        obj.remove("pipeline");
    }
    StepReport {
        position: rec.position,
        name: rec.name.clone(),
        kind: rec.kind,
        state: rec.state,
        outcome: outcome.to_owned(),
        attempts: rec.attempts,
        started_at: rec.started_at,
        finished_at: rec.finished_at,
        seconds: rec.duration_s,
        message: if message.is_empty() {
            rec.message.clone().unwrap_or_default()
        } else {
            message.to_owned()
        },
        error: rec.error.clone(),
        details,
        peak_rss_mib: None,
    }
}

/// The errors log lines of a step that ran: its error (or its failure), its checks that
/// did not pass, and the rejects of the units its pipeline wrote in this invocation.
fn log_step_errors(
    cx: &StepCx,
    out: &StepOutput,
    failure: Option<&str>,
    report_dir: &std::path::Path,
) -> Result<()> {
    if cx.errors_log.is_none() {
        return Ok(());
    }
    let step = &cx.step;
    let findings = (out.findings.iter())
        .chain(out.pipeline.iter().flat_map(|p| p.validation.iter()))
        .filter(|f| !f.passed)
        .map(|f| format!("ERROR {step}: {}: {}", f.check, f.message));
    let mut lines: Vec<String> = findings.collect();
    if let Some(f) = failure.filter(|_| lines.is_empty()) {
        lines.push(format!("ERROR {step}: {f}"));
    }
    if let Some(p) = &out.pipeline {
        let units: Vec<&str> = (p.units.iter())
            .filter(|u| u.rejected > 0 && u.status != crate::UnitStatus::Resumed)
            .map(|u| u.name.as_str())
            .collect();
        if !units.is_empty() {
            let tmp = report_dir.join(format!(".{step}.rejects.tmp"));
            RejectSpool::new(report_dir)?.merge_into(&tmp, &units)?;
            let text = std::fs::read_to_string(&tmp).map_err(|e| Error::io(tmp.display(), e))?;
            let _ = std::fs::remove_file(&tmp);
            lines.extend(text.lines().skip(1).map(|l| format!("REJECT {step} {l}")));
        }
    }
    cx.log_errors(lines)
}

/// An error and its causes on one line (`top: cause: cause`), without repeats.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            let _ = write!(s, ": {t}");
        }
        cur = c.source();
    }
    s
}

pub(crate) fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// TEST-ONLY fault hook for the kill matrix (`examples/tests/kill_matrix.rs`): with
/// `FERRY_TEST_PAUSE_AT=STEP` (or `STEP:before`) a run stops right after it recorded step
/// `STEP` as running, before its action; with `STEP:after`, right after the action returned,
/// before the journal records the outcome. It prints `FERRY_TEST_PAUSED <when> <step>` to
/// stderr and sleeps for an hour, so a test can SIGKILL the process at exactly that point.
/// Unset (always, outside tests), it costs one environment lookup per step.
async fn test_pause(step: &str, when: &str) {
    let Ok(at) = std::env::var("FERRY_TEST_PAUSE_AT") else {
        return;
    };
    let (name, at_when) = at.split_once(':').unwrap_or((at.as_str(), "before"));
    if name == step && at_when == when {
        eprintln!("FERRY_TEST_PAUSED {when} {step}");
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
    }
}
