//! Steps: what a migration is made of.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::report::{RunReport, RunStatus};
use crate::{BoxError, Finding, PipelineOptions, RunInfo};

/// What a step's action returns: its output, or the error that fails it.
pub type StepFuture<'a> = BoxFuture<'a, Result<StepOutput, BoxError>>;

type Action<C> = Arc<dyn for<'a> Fn(&'a C, &'a StepCx) -> StepFuture<'a> + Send + Sync>;

/// What a step does, for listings, reports and the rules of the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// Checks before anything is written (space, inputs, locks, headers).
    Preflight,
    /// A copy of what the migration will change.
    Backup,
    /// Tables, staging, reference data made ready for the load.
    Prepare,
    /// A pipeline: rows read, transformed, validated and loaded, unit by unit.
    Load,
    /// Rows exported to files (phase artifacts).
    Export,
    /// A schema change (SQL migration).
    Schema,
    /// Rows moved or copied inside the target.
    DataMove,
    /// Index and constraint builds.
    Index,
    /// Checks that veto what follows when they fail.
    Gate,
    /// The switch into production (the point after which production holds the new data).
    Switch,
    /// Work after the switch (REINDEX, summary rebuild, ANALYZE, verification).
    PostSwitch,
    /// Removal of what is no longer needed (usually irreversible).
    Cleanup,
    /// Anything else.
    Other,
}

impl StepKind {
    /// The lowercase name used in journals and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Preflight => "preflight",
            StepKind::Backup => "backup",
            StepKind::Prepare => "prepare",
            StepKind::Load => "load",
            StepKind::Export => "export",
            StepKind::Schema => "schema",
            StepKind::DataMove => "data_move",
            StepKind::Index => "index",
            StepKind::Gate => "gate",
            StepKind::Switch => "switch",
            StepKind::PostSwitch => "post_switch",
            StepKind::Cleanup => "cleanup",
            StepKind::Other => "other",
        }
    }

    /// Parse [`StepKind::as_str`]; unknown names are [`StepKind::Other`].
    pub fn parse(s: &str) -> Self {
        [
            StepKind::Preflight,
            StepKind::Backup,
            StepKind::Prepare,
            StepKind::Load,
            StepKind::Export,
            StepKind::Schema,
            StepKind::DataMove,
            StepKind::Index,
            StepKind::Gate,
            StepKind::Switch,
            StepKind::PostSwitch,
            StepKind::Cleanup,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .unwrap_or(StepKind::Other)
    }
}

/// How a step is undone by `--rollback`.
pub enum Undo<C> {
    /// Nothing to undo (it only read, or what it made is removed by another step's undo).
    Nothing,
    /// This action undoes it (also when the step ran only part-way).
    Action(Action<C>),
    /// It cannot be undone (a cleanup that dropped data); the reason says what to do instead.
    Impossible(String),
}

impl<C> Clone for Undo<C> {
    fn clone(&self) -> Self {
        match self {
            Undo::Nothing => Undo::Nothing,
            Undo::Action(a) => Undo::Action(a.clone()),
            Undo::Impossible(r) => Undo::Impossible(r.clone()),
        }
    }
}

/// One named step of a [`Migration`](super::Migration): an action over the migration's
/// context `C`, its undo, and how the runner treats it.
pub struct Step<C> {
    pub(crate) name: String,
    pub(crate) kind: StepKind,
    pub(crate) action: Action<C>,
    pub(crate) undo: Undo<C>,
    pub(crate) in_dry_run: bool,
    pub(crate) always: bool,
    pub(crate) optional: bool,
    pub(crate) fingerprint: Option<String>,
    pub(crate) description: String,
    pub(crate) group: Option<String>,
    pub(crate) resumes_itself: bool,
}

impl<C> Clone for Step<C> {
    fn clone(&self) -> Self {
        Step {
            name: self.name.clone(),
            kind: self.kind,
            action: self.action.clone(),
            undo: self.undo.clone(),
            in_dry_run: self.in_dry_run,
            always: self.always,
            optional: self.optional,
            fingerprint: self.fingerprint.clone(),
            description: self.description.clone(),
            group: self.group.clone(),
            resumes_itself: self.resumes_itself,
        }
    }
}

impl<C> std::fmt::Debug for Step<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Step")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("in_dry_run", &self.in_dry_run)
            .field("always", &self.always)
            .field("optional", &self.optional)
            .field("group", &self.group)
            .finish()
    }
}

impl<C> Step<C> {
    /// A step named `name` (unique in its migration: the journal key) doing `action`.
    ///
    /// The action must be safe to run again after a kill: idempotent (a `CREATE ... IF NOT
    /// EXISTS`, a summary rebuilt in one transaction) or resuming by itself (a pipeline
    /// whose sink skips the units it committed; see [`StepCx::resuming`]).
    ///
    /// Nothing to undo by default ([`Step::undo`], [`Step::irreversible`]); it does not run
    /// in a dry run unless [`Step::in_dry_run`] is set.
    pub fn new<F>(name: impl Into<String>, kind: StepKind, action: F) -> Self
    where
        F: for<'a> Fn(&'a C, &'a StepCx) -> StepFuture<'a> + Send + Sync + 'static,
    {
        let name = name.into();
        Step {
            description: format!("{} step `{name}`", kind.as_str()),
            name,
            kind,
            action: Arc::new(action),
            undo: Undo::Nothing,
            in_dry_run: false,
            always: false,
            optional: false,
            fingerprint: None,
            group: None,
            resumes_itself: false,
        }
    }

    /// A [`StepKind::Load`] step that builds a [`Pipeline`](crate::Pipeline) with `build`
    /// and runs it with the run's identity ([`StepCx::run_info`]): resumed when the step
    /// ran before (the sink skips the units it committed), reading, transforming and
    /// validating without loading in a dry run (it runs in dry runs). Its units and totals
    /// join the run's report; a failed pipeline or a vetoing check fails the step.
    pub fn pipeline<E, L, F>(name: impl Into<String>, build: F) -> Self
    where
        E: crate::Extract + 'static,
        L: crate::Load + 'static,
        F: Fn(&C, &StepCx) -> Result<crate::Pipeline<E, L>, BoxError> + Send + Sync + 'static,
        C: Sync,
    {
        let build = Arc::new(build);
        Step::new(name, StepKind::Load, move |c: &C, cx| {
            let build = build.clone();
            Box::pin(async move {
                let pipeline = build(c, cx)?;
                let report = pipeline.run(&cx.run_info()).await;
                Ok(StepOutput::from_pipeline(report))
            })
        })
        .in_dry_run()
        .describe("reads, transforms, validates and loads every unit")
    }

    /// `--rollback` undoes the step with `undo` (run also for a step that failed or was
    /// killed part-way, so it must cope with a half-done step).
    pub fn undo<F>(mut self, undo: F) -> Self
    where
        F: for<'a> Fn(&'a C, &'a StepCx) -> StepFuture<'a> + Send + Sync + 'static,
    {
        self.undo = Undo::Action(Arc::new(undo));
        self
    }

    /// The step cannot be undone; `--rollback` of a run in which it ran is refused with
    /// `why` (say what to do instead: restore a backup).
    pub fn irreversible(mut self, why: impl Into<String>) -> Self {
        self.undo = Undo::Impossible(why.into());
        self
    }

    /// The step runs in a dry run too, with [`StepCx::dry_run`] set: it only reads, or it
    /// honours the flag itself (a pipeline reads, transforms and validates but loads
    /// nothing).
    pub fn in_dry_run(mut self) -> Self {
        self.in_dry_run = true;
        self
    }

    /// The step runs on every invocation, even when done before (pre-flight checks).
    pub fn always(mut self) -> Self {
        self.always = true;
        self
    }

    /// The step runs only when asked for by name ([`super::Action::Only`], e.g. `--only cleanup`).
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    /// A fingerprint of the step's definition (a SQL file's SHA-256, an input's hash):
    /// `--resume` refuses when a step that is done has changed since it ran.
    pub fn fingerprint(mut self, fingerprint: impl Into<String>) -> Self {
        self.fingerprint = Some(fingerprint.into());
        self
    }

    /// What the step does, in one line, for `--plan` and `--dry-run` ("would run: ...").
    pub fn describe(mut self, text: impl Into<String>) -> Self {
        self.description = text.into();
        self
    }

    /// The step belongs to the group (phase) `name`: [`super::Action::Group`] runs a
    /// group's steps within the latest run (s9's `--phase extract`), and
    /// [`super::Action::Only`] accepts group names.
    pub fn group(mut self, name: impl Into<String>) -> Self {
        self.group = Some(name.into());
        self
    }

    /// The step resumes itself (a pipeline skipping the units it committed): a resume of
    /// its group ([`super::Action::Group`] with `resume`) runs it again even when it is
    /// done, with [`StepCx::resuming`] set, so it finishes or confirms what it wrote.
    pub fn resumes_itself(mut self) -> Self {
        self.resumes_itself = true;
        self
    }

    /// The step's group, if any ([`Step::group`]).
    pub fn group_name(&self) -> Option<&str> {
        self.group.as_deref()
    }

    /// The step's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The step's kind.
    pub fn kind(&self) -> StepKind {
        self.kind
    }
}

/// What a step hands back to the runner: a line for people, figures for the journal and
/// the report, checks (a failed check that vetoes fails the step), and the report of the
/// pipeline it ran, if any.
#[derive(Debug, Clone, Default)]
pub struct StepOutput {
    /// One line for the listing.
    pub message: String,
    /// Figures, recorded in the journal and the report (`report.json` → `steps[].details`).
    pub details: serde_json::Value,
    /// Checks; one that fails with [`crate::Severity::Error`] fails the step (a gate).
    pub findings: Vec<Finding>,
    /// The report of a pipeline the step ran: its units and totals join the run's, its
    /// findings its checks; a failed pipeline fails the step.
    pub pipeline: Option<Box<RunReport>>,
}

impl StepOutput {
    /// An output with a message only.
    pub fn message(message: impl Into<String>) -> Self {
        StepOutput {
            message: message.into(),
            ..Default::default()
        }
    }

    /// Add figures.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    /// Add checks.
    pub fn with_findings(mut self, findings: Vec<Finding>) -> Self {
        self.findings.extend(findings);
        self
    }

    /// The output of a step that ran a pipeline: the message counts its rows; the
    /// pipeline's units, totals and findings become the step's.
    pub fn from_pipeline(report: RunReport) -> Self {
        let t = &report.totals;
        StepOutput {
            message: format!(
                "read {} = loaded {} + rejected {} + filtered {} ({} units)",
                t.read,
                t.loaded,
                t.rejected,
                t.filtered,
                report.units.len()
            ),
            details: serde_json::Value::Null,
            findings: Vec::new(),
            pipeline: Some(Box::new(report)),
        }
    }

    /// The output of a step that ran several pipelines (one per entity, one per file):
    /// their units, totals, findings and figures (`extra`) merged into one report, which
    /// failed (with the first failure's error) when one of them failed. No pipeline: a
    /// message saying so.
    pub fn from_pipelines(reports: impl IntoIterator<Item = RunReport>) -> Self {
        let mut it = reports.into_iter();
        let Some(mut all) = it.next() else {
            return StepOutput::message("no pipeline ran");
        };
        let mut units = std::mem::take(&mut all.units);
        for r in it {
            units.extend(r.units);
            all.validation.extend(r.validation);
            for (k, v) in r.extra {
                all.extra.entry(k).or_insert(v);
            }
            all.finished_at = all.finished_at.max(r.finished_at);
            all.duration_s += r.duration_s;
            if r.status == RunStatus::Failed && all.status != RunStatus::Failed {
                (all.status, all.error) = (r.status, r.error);
            }
        }
        all.set_units(units);
        StepOutput::from_pipeline(all)
    }

    /// Whether a finding vetoes or the pipeline failed; the reason if so.
    pub(crate) fn failure(&self) -> Option<String> {
        if let Some(p) = &self.pipeline
            && p.status == RunStatus::Failed
        {
            return Some(
                p.error
                    .clone()
                    .unwrap_or_else(|| "the pipeline failed".to_owned()),
            );
        }
        let vetoes: Vec<String> = self
            .findings
            .iter()
            .chain(self.pipeline.iter().flat_map(|p| p.validation.iter()))
            .filter(|f| f.vetoes())
            .map(|f| format!("{}: {}", f.check, f.message))
            .collect();
        (!vetoes.is_empty()).then(|| format!("check(s) failed: {}", vetoes.join("; ")))
    }
}

/// What the runner hands to a step: the run's identity and mode, where reports go, and a
/// way to add to the run's report.
#[derive(Debug, Clone)]
pub struct StepCx {
    /// The migration's name.
    pub migration: String,
    /// The run's id (a resumed run keeps it).
    pub run_id: Uuid,
    /// This step's name.
    pub step: String,
    /// 1 the first time the step runs in this run; more when a resume runs it again after
    /// a kill or a failure.
    pub attempt: u32,
    /// Set in a dry run: write nothing.
    pub dry_run: bool,
    /// Cancelled on Ctrl-C: stop at the next batch.
    pub cancel: CancellationToken,
    /// Whether progress bars (or, off a terminal, progress lines) are wanted.
    pub progress: bool,
    /// The report directory (`report.json`, `summary.txt`, `rejects.csv`, the migration's
    /// own files).
    pub report_dir: PathBuf,
    /// Retries of a pipeline unit that fails with a retryable error.
    pub unit_retries: u32,
    pub(crate) guard_formulas: bool,
    pub(crate) resume: bool,
    pub(crate) errors_log: Option<PathBuf>,
    pub(crate) shared: Arc<Mutex<Shared>>,
    pub(crate) metrics: Option<crate::metrics::Metrics>,
}

/// What steps add to the run's report.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) extra: serde_json::Map<String, serde_json::Value>,
    pub(crate) files: Vec<String>,
    pub(crate) details: std::collections::BTreeMap<String, serde_json::Value>,
}

impl StepCx {
    /// Whether the step ran before in this run (a resume after a kill or a failure), or
    /// its group is resumed ([`super::Action::Group`]): a pipeline then resumes
    /// ([`StepCx::run_info`] sets `resume`). A group run without `resume` starts afresh.
    pub fn resuming(&self) -> bool {
        self.resume
    }

    /// Append lines (timestamped) to the migration's errors log
    /// ([`Migration::errors_log`](super::Migration::errors_log)), e.g. the items a
    /// validation found invalid; nothing when the migration keeps none.
    ///
    /// # Errors
    /// The log cannot be written.
    pub fn log_errors(&self, lines: impl IntoIterator<Item = String>) -> crate::Result<()> {
        match &self.errors_log {
            Some(path) => append_lines(path, lines),
            None => Ok(()),
        }
    }

    /// The [`RunInfo`] for a pipeline run by this step: the run's id, `resume` when the
    /// step ran before, the dry-run flag and the cancellation token.
    pub fn run_info(&self) -> RunInfo {
        RunInfo {
            run_id: self.run_id,
            migration: self.migration.clone(),
            resume: self.resuming(),
            dry_run: self.dry_run,
            cancel: self.cancel.clone(),
            metrics: self.metrics.clone(),
        }
    }

    /// This step's metrics when the run exports them (`--metrics-file`,
    /// `--metrics-addr`): its pipelines count into it through [`StepCx::run_info`]; a
    /// step that moves rows without a pipeline can count them here
    /// ([`Metrics::add_rows`](crate::metrics::Metrics::add_rows)).
    pub fn metrics(&self) -> Option<&crate::metrics::Metrics> {
        self.metrics.as_ref()
    }

    /// Pipeline options with this run's progress setting, report directory (for the
    /// reject spool) and unit retries, and the given batch size and parallelism.
    pub fn pipeline_options(&self, batch_size: usize, parallel: usize) -> PipelineOptions {
        PipelineOptions {
            batch_size,
            parallel: parallel.max(1),
            progress: self.progress,
            report_dir: Some(self.report_dir.clone()),
            unit_retries: self.unit_retries,
            guard_formulas: self.guard_formulas,
            ..PipelineOptions::default()
        }
    }

    /// Put a figure at the top level of `report.json`'s `extra` (and, for text values,
    /// in `summary.txt`).
    pub fn set_extra(&self, key: impl Into<String>, value: serde_json::Value) {
        self.shared
            .lock()
            .expect("step context lock")
            .extra
            .insert(key.into(), value);
    }

    /// Name a file the migration wrote into the report directory; `report.json` lists it
    /// under `files`.
    pub fn add_file(&self, name: impl Into<String>) {
        let name = name.into();
        let mut s = self.shared.lock().expect("step context lock");
        if !s.files.contains(&name) {
            s.files.push(name);
        }
    }

    /// Write `value` as pretty JSON into `name` in the report directory (atomically) and
    /// list it in `report.json` `files`: a migration's own report (`load_report.json`).
    ///
    /// # Errors
    /// It cannot be serialized or written.
    pub fn write_json(&self, name: &str, value: &impl Serialize) -> crate::Result<()> {
        let bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| crate::Error::Config(format!("cannot serialize {name}: {e}")))?;
        std::fs::create_dir_all(&self.report_dir)
            .map_err(|e| crate::Error::io(self.report_dir.display(), e))?;
        crate::report::write_atomic(&self.report_dir.join(name), &bytes)?;
        self.add_file(name);
        Ok(())
    }

    /// The details an earlier step of this run recorded (also when it ran in an earlier
    /// invocation that was killed): how later steps read what earlier ones found.
    pub fn details_of(&self, step: &str) -> Option<serde_json::Value> {
        self.shared
            .lock()
            .expect("step context lock")
            .details
            .get(step)
            .cloned()
    }

    /// The pipeline report an earlier step of this run produced, if any.
    pub fn pipeline_of(&self, step: &str) -> Option<RunReport> {
        self.details_of(step)
            .and_then(|d| d.get("pipeline").cloned())
            .and_then(|p| serde_json::from_value(p).ok())
    }
}

/// One step's line in the run report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// Position in the migration (1-based).
    pub position: u32,
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: StepKind,
    /// State after this invocation.
    pub state: super::StepState,
    /// What this invocation did with it: `ran`, `skipped`, `failed`, `would_run`,
    /// `rolled_back`, `not_reached`.
    pub outcome: String,
    /// Times it was started in this run.
    pub attempts: u32,
    /// When it last started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it last finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Seconds of its last run.
    pub seconds: Option<f64>,
    /// Its line.
    pub message: String,
    /// Its error, if it failed.
    pub error: Option<String>,
    /// Its figures.
    #[serde(default)]
    pub details: serde_json::Value,
    /// Peak resident memory of the process while it ran, MiB (`VmHWM` reset at its
    /// start; Linux only).
    #[serde(default)]
    pub peak_rss_mib: Option<f64>,
}

/// Append `lines` to `path`, each prefixed with the UTC time.
pub(crate) fn append_lines(
    path: &std::path::Path,
    lines: impl IntoIterator<Item = String>,
) -> crate::Result<()> {
    use std::io::Write as _;
    let now = Utc::now().to_rfc3339();
    let text: String = lines.into_iter().map(|l| format!("{now} {l}\n")).collect();
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| crate::Error::io(path.display(), e))
}
