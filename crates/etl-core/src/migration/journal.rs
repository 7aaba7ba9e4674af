//! The run journal: where a migration records its run and the state of every step.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::StepKind;
use crate::{Error, Result};

/// The state of a run in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Started and not finished: running now, or killed (then `--resume` continues it).
    Running,
    /// Stopped before a step on request (`--no-switchover`); `--resume` continues it.
    Stopped,
    /// A step failed; `--resume` runs it again, `--rollback` undoes the run.
    Failed,
    /// Every required step is done.
    Done,
    /// Undone by `--rollback`.
    RolledBack,
}

impl RunState {
    /// The lowercase name used in journals and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Stopped => "stopped",
            RunState::Failed => "failed",
            RunState::Done => "done",
            RunState::RolledBack => "rolled_back",
        }
    }

    /// Parse [`RunState::as_str`].
    ///
    /// # Errors
    /// An unknown name.
    pub fn parse(s: &str) -> Result<Self> {
        [
            RunState::Running,
            RunState::Stopped,
            RunState::Failed,
            RunState::Done,
            RunState::RolledBack,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| Error::Config(format!("unknown run state `{s}` in the journal")))
    }

    /// Whether `--resume` can continue a run in this state.
    pub fn resumable(self) -> bool {
        matches!(
            self,
            RunState::Running | RunState::Stopped | RunState::Failed
        )
    }
}

/// The state of a step in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Not run in this run (or undone and not run since).
    Pending,
    /// Started and not finished: running now, or killed part-way.
    Running,
    /// Finished.
    Done,
    /// Failed; `--resume` runs it again, `--rollback` undoes it.
    Failed,
    /// Undone by a rollback.
    RolledBack,
}

impl StepState {
    /// The lowercase name used in journals and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Running => "running",
            StepState::Done => "done",
            StepState::Failed => "failed",
            StepState::RolledBack => "rolled_back",
        }
    }

    /// Parse [`StepState::as_str`].
    ///
    /// # Errors
    /// An unknown name.
    pub fn parse(s: &str) -> Result<Self> {
        [
            StepState::Pending,
            StepState::Running,
            StepState::Done,
            StepState::Failed,
            StepState::RolledBack,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| Error::Config(format!("unknown step state `{s}` in the journal")))
    }

    /// Whether the step may have changed something (so a rollback has something to undo).
    pub fn touched(self) -> bool {
        matches!(
            self,
            StepState::Running | StepState::Done | StepState::Failed
        )
    }
}

/// A run as the journal records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The migration's name.
    pub migration: String,
    /// The run's id.
    pub run_id: Uuid,
    /// Its state.
    pub state: RunState,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it last ended (done, failed, stopped, rolled back).
    pub finished_at: Option<DateTime<Utc>>,
    /// The host of the process that last ran it.
    pub host: String,
    /// The pid of the process that last ran it.
    pub pid: u32,
    /// The last error or note.
    pub message: Option<String>,
}

/// A step as the journal records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The step's name.
    pub name: String,
    /// Position in the migration (1-based).
    pub position: u32,
    /// Kind.
    pub kind: StepKind,
    /// State.
    pub state: StepState,
    /// Times it was started in this run.
    pub attempts: u32,
    /// When it last started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it last finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Seconds of its last run.
    pub duration_s: Option<f64>,
    /// Its line.
    pub message: Option<String>,
    /// Its error, if it failed.
    pub error: Option<String>,
    /// Its figures (a pipeline step keeps its report under `pipeline`).
    #[serde(default)]
    pub details: serde_json::Value,
    /// The fingerprint of its definition when it ran.
    pub fingerprint: Option<String>,
}

impl StepRecord {
    /// A pending step.
    pub fn pending(name: &str, position: u32, kind: StepKind) -> Self {
        StepRecord {
            name: name.to_owned(),
            position,
            kind,
            state: StepState::Pending,
            attempts: 0,
            started_at: None,
            finished_at: None,
            duration_s: None,
            message: None,
            error: None,
            details: serde_json::Value::Null,
            fingerprint: None,
        }
    }
}

/// A run and its steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalRun {
    /// The run.
    pub run: RunRecord,
    /// Its steps as recorded (steps never recorded are pending).
    pub steps: Vec<StepRecord>,
}

impl JournalRun {
    /// The record of step `name`, if any.
    pub fn step(&self, name: &str) -> Option<&StepRecord> {
        self.steps.iter().find(|s| s.name == name)
    }

    fn put(&mut self, step: &StepRecord) {
        match self.steps.iter_mut().find(|s| s.name == step.name) {
            Some(s) => *s = step.clone(),
            None => self.steps.push(step.clone()),
        }
    }
}

/// Where a migration records its runs and steps.
///
/// Implementations: [`FileJournal`] (a JSON file next to the artifacts, written
/// atomically), [`MemoryJournal`] (tests, dry runs), and the PostgreSQL journal of
/// `etl-sink-postgres` (a table in the target database).
pub trait Journal: Send + Sync {
    /// Where it lives, for messages (`reports/cites_trade.journal.json`, a table name).
    fn location(&self) -> String;

    /// The latest run of `migration`, with its steps; `None` when it never ran. Reads only
    /// (creates nothing).
    fn latest<'a>(&'a self, migration: &'a str) -> BoxFuture<'a, Result<Option<JournalRun>>>;

    /// Record a new run (it becomes the latest) with its steps.
    fn begin<'a>(&'a self, run: &'a JournalRun) -> BoxFuture<'a, Result<()>>;

    /// Update a run's state, host, pid, times and message.
    fn put_run<'a>(&'a self, run: &'a RunRecord) -> BoxFuture<'a, Result<()>>;

    /// Insert or update one step of a run.
    fn put_step<'a>(
        &'a self,
        migration: &'a str,
        run_id: Uuid,
        step: &'a StepRecord,
    ) -> BoxFuture<'a, Result<()>>;
}

/// A journal held in memory (tests; the runner uses one for dry runs).
#[derive(Debug, Default)]
pub struct MemoryJournal {
    runs: Mutex<Vec<JournalRun>>,
}

impl MemoryJournal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }

    /// A journal starting with `run` as the latest run.
    pub fn with(run: JournalRun) -> Self {
        MemoryJournal {
            runs: Mutex::new(vec![run]),
        }
    }
}

impl Journal for MemoryJournal {
    fn location(&self) -> String {
        "memory".into()
    }

    fn latest<'a>(&'a self, migration: &'a str) -> BoxFuture<'a, Result<Option<JournalRun>>> {
        let r = self
            .runs
            .lock()
            .expect("journal lock")
            .iter()
            .rev()
            .find(|r| r.run.migration == migration)
            .cloned();
        Box::pin(async move { Ok(r) })
    }

    fn begin<'a>(&'a self, run: &'a JournalRun) -> BoxFuture<'a, Result<()>> {
        self.runs.lock().expect("journal lock").push(run.clone());
        Box::pin(async { Ok(()) })
    }

    fn put_run<'a>(&'a self, run: &'a RunRecord) -> BoxFuture<'a, Result<()>> {
        let mut runs = self.runs.lock().expect("journal lock");
        if let Some(r) = runs.iter_mut().rev().find(|r| r.run.run_id == run.run_id) {
            r.run = run.clone();
        }
        Box::pin(async { Ok(()) })
    }

    fn put_step<'a>(
        &'a self,
        _migration: &'a str,
        run_id: Uuid,
        step: &'a StepRecord,
    ) -> BoxFuture<'a, Result<()>> {
        let mut runs = self.runs.lock().expect("journal lock");
        if let Some(r) = runs.iter_mut().rev().find(|r| r.run.run_id == run_id) {
            r.put(step);
        }
        Box::pin(async { Ok(()) })
    }
}

/// A journal in a JSON file per migration, `DIR/<migration>.journal.json`, rewritten
/// atomically (temp file, fsync, rename, fsync of the directory) at every change, so a
/// kill leaves the previous or the new version, never a torn one. It holds the latest run
/// with its steps and a short history of earlier runs.
#[derive(Debug, Clone)]
pub struct FileJournal {
    dir: PathBuf,
    lock: std::sync::Arc<Mutex<()>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct JournalFile {
    latest: Option<JournalRun>,
    #[serde(default)]
    history: Vec<RunRecord>,
}

/// Earlier runs kept in a journal file's history.
const HISTORY: usize = 20;

impl FileJournal {
    /// A journal in `dir` (created at the first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileJournal {
            dir: dir.into(),
            lock: Default::default(),
        }
    }

    /// The file of `migration`'s journal.
    pub fn path(&self, migration: &str) -> PathBuf {
        let safe: String = migration
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{safe}.journal.json"))
    }

    fn read(&self, migration: &str) -> Result<JournalFile> {
        let path = self.path(migration);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Journal {
                location: path.display().to_string(),
                reason: format!(
                    "cannot parse it: {e}; it is written atomically, so this is not a torn write — restore it or move it away to start over"
                ),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(JournalFile::default()),
            Err(e) => Err(Error::io(path.display(), e)),
        }
    }

    fn write(&self, migration: &str, file: &JournalFile) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(self.dir.display(), e))?;
        let bytes = serde_json::to_vec_pretty(file).map_err(|e| Error::Journal {
            location: self.path(migration).display().to_string(),
            reason: e.to_string(),
        })?;
        write_durable(&self.path(migration), &bytes)
    }

    fn update(&self, migration: &str, f: impl FnOnce(&mut JournalFile)) -> Result<()> {
        let _g = self.lock.lock().expect("journal lock");
        let mut file = self.read(migration)?;
        f(&mut file);
        self.write(migration, &file)
    }
}

/// Write `bytes` to `path` durably: a temp file beside it, fsync, rename, fsync of the
/// directory.
fn write_durable(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::report::write_atomic(path, bytes)?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

impl Journal for FileJournal {
    fn location(&self) -> String {
        self.dir
            .join("<migration>.journal.json")
            .display()
            .to_string()
    }

    fn latest<'a>(&'a self, migration: &'a str) -> BoxFuture<'a, Result<Option<JournalRun>>> {
        let r = self.read(migration).map(|f| f.latest);
        Box::pin(async move { r })
    }

    fn begin<'a>(&'a self, run: &'a JournalRun) -> BoxFuture<'a, Result<()>> {
        let r = self.update(&run.run.migration, |f| {
            if let Some(prev) = f.latest.take() {
                f.history.push(prev.run);
                let extra = f.history.len().saturating_sub(HISTORY);
                f.history.drain(..extra);
            }
            f.latest = Some(run.clone());
        });
        Box::pin(async move { r })
    }

    fn put_run<'a>(&'a self, run: &'a RunRecord) -> BoxFuture<'a, Result<()>> {
        let r = self.update(&run.migration, |f| {
            if let Some(l) = f.latest.as_mut()
                && l.run.run_id == run.run_id
            {
                l.run = run.clone();
            }
        });
        Box::pin(async move { r })
    }

    fn put_step<'a>(
        &'a self,
        migration: &'a str,
        run_id: Uuid,
        step: &'a StepRecord,
    ) -> BoxFuture<'a, Result<()>> {
        let r = self.update(migration, |f| {
            if let Some(l) = f.latest.as_mut()
                && l.run.run_id == run_id
            {
                l.put(step);
            }
        });
        Box::pin(async move { r })
    }
}
