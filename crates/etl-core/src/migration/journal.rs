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

    /// Take the run lock of `migration` (one run per target): held until the returned
    /// guard is dropped, and released by the operating system or the database when the
    /// process dies, so a killed run never blocks the next. The default takes no lock
    /// (tests, dry runs).
    ///
    /// # Errors
    /// [`Error::Refused`] naming the holder when another process holds it; errors of the
    /// lock's medium (a file, a connection).
    fn lock<'a>(&'a self, migration: &'a str) -> BoxFuture<'a, Result<RunLock>> {
        let _ = migration;
        Box::pin(async { Ok(RunLock::none()) })
    }

    /// Whether another process holds the run lock of `migration` now (`--plan` tells a
    /// live run from an interrupted one with it); `None` when this journal has no lock.
    fn lock_held<'a>(&'a self, migration: &'a str) -> BoxFuture<'a, Result<Option<bool>>> {
        let _ = migration;
        Box::pin(async { Ok(None) })
    }
}

/// A held run lock; dropping it releases the lock.
pub struct RunLock {
    _guard: Option<Box<dyn std::any::Any + Send + Sync>>,
    lost: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    release: Option<Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send + Sync>>,
}

impl std::fmt::Debug for RunLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunLock")
            .field("held", &self._guard.is_some())
            .field("lost", &self.is_lost())
            .finish()
    }
}

impl RunLock {
    /// No lock.
    pub fn none() -> Self {
        RunLock {
            _guard: None,
            lost: None,
            release: None,
        }
    }

    /// A lock released when `guard` is dropped (an open lock file, a database session).
    pub fn new(guard: impl std::any::Any + Send + Sync) -> Self {
        RunLock {
            _guard: Some(Box::new(guard)),
            lost: None,
            release: None,
        }
    }

    /// A lock that can be lost while held (a database session that ends with a server
    /// restart and whose lock another process took before it could be taken again): the
    /// holder sets `lost`, and the runner stops before its next step.
    pub fn watched(
        guard: impl std::any::Any + Send + Sync,
        lost: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        RunLock {
            _guard: Some(Box::new(guard)),
            lost: Some(lost),
            release: None,
        }
    }

    /// Release the lock with `release` (awaited by [`RunLock::release`]) rather than only
    /// by dropping the guard: a database session ends asynchronously after its socket is
    /// dropped, so the next run (in this process or another) could find it still held.
    pub fn with_release(
        mut self,
        release: impl FnOnce() -> BoxFuture<'static, ()> + Send + Sync + 'static,
    ) -> Self {
        self.release = Some(Box::new(release));
        self
    }

    /// Release the lock now and wait until it is released.
    pub async fn release(mut self) {
        if let Some(r) = self.release.take() {
            r().await;
        }
    }

    /// Whether the lock was lost while held.
    pub fn is_lost(&self) -> bool {
        self.lost
            .as_ref()
            .is_some_and(|l| l.load(std::sync::atomic::Ordering::SeqCst))
    }
}

/// Who holds a run lock, as its holder writes it into the lock file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockHolder {
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// When it took the lock.
    pub since: DateTime<Utc>,
}

impl LockHolder {
    /// This process, now.
    pub fn me() -> Self {
        LockHolder {
            host: super::runner::host(),
            pid: std::process::id(),
            since: Utc::now(),
        }
    }
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} on {} since {}",
            self.pid,
            self.host,
            self.since.to_rfc3339()
        )
    }
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

    /// The lock file of `migration`'s runs, beside its journal.
    pub fn lock_path(&self, migration: &str) -> PathBuf {
        let j = self.path(migration);
        j.with_file_name(
            j.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("ferry")
                .replace(".journal.json", ".lock"),
        )
    }

    fn lock_file(&self, migration: &str) -> Result<RunLock> {
        use std::io::{Read, Seek, Write};
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(self.dir.display(), e))?;
        let path = self.lock_path(migration);
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(path.display(), e))?;
        match f.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = f.read_to_string(&mut text);
                let holder = serde_json::from_str::<LockHolder>(&text)
                    .map(|h| h.to_string())
                    .unwrap_or_else(|_| "another process".into());
                let run = self
                    .read(migration)
                    .ok()
                    .and_then(|j| j.latest)
                    .map(|r| {
                        format!(
                            " (run {} started {})",
                            r.run.run_id,
                            r.run.started_at.to_rfc3339()
                        )
                    })
                    .unwrap_or_default();
                return Err(Error::Refused(format!(
                    "migration `{migration}` is being run by {holder}{run}: one run at a time (lock {}); wait for it to end, or stop it and continue with --resume",
                    path.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(path.display(), e)),
        }
        let me = serde_json::to_vec(&LockHolder::me()).unwrap_or_default();
        f.set_len(0)
            .and_then(|_| f.rewind())
            .and_then(|_| f.write_all(&me))
            .and_then(|_| f.sync_data())
            .map_err(|e| Error::io(path.display(), e))?;
        Ok(RunLock::new(f))
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
        self.dir.join("*.journal.json").display().to_string()
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

    fn lock<'a>(&'a self, migration: &'a str) -> BoxFuture<'a, Result<RunLock>> {
        let r = self.lock_file(migration);
        Box::pin(async move { r })
    }

    fn lock_held<'a>(&'a self, migration: &'a str) -> BoxFuture<'a, Result<Option<bool>>> {
        let path = self.lock_path(migration);
        let r = match std::fs::OpenOptions::new().read(true).open(&path) {
            Ok(f) => match f.try_lock() {
                Ok(()) => Ok(Some(false)),
                Err(std::fs::TryLockError::WouldBlock) => Ok(Some(true)),
                Err(std::fs::TryLockError::Error(e)) => Err(Error::io(path.display(), e)),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Some(false)),
            Err(e) => Err(Error::io(path.display(), e)),
        };
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
