//! A migration plan: ordered, named steps (SQL migrations from files, data moves,
//! verifications, cleanups), each with its rollback, recorded in a ledger table
//! (`ferry_schema_migrations`) so that
//!
//! * a completed step never runs twice, and a migration file changed since it ran is
//!   refused (its SHA-256 is recorded);
//! * `--resume` continues after the last completed step (a killed step runs again: steps
//!   are idempotent or resumable, like [`crate::move_data::KeysetMove`]);
//! * `--rollback` undoes the completed (and half-done) steps in reverse order;
//! * `--dry-run` runs the read-only steps in a `READ ONLY` transaction and prints the SQL
//!   of the others;
//! * `--plan` lists the steps and their state ([`Plan::status`], [`render_status`]).
//!
//! [`Preflight`] is the usual first step: table sizes and row counts, the foreign-key
//! dependency list, the sessions holding locks on the plan's tables, and a refusal to
//! start when the tables cannot be locked within `lock_timeout`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use etl_sink_postgres::plan::{Plan, RunOptions, Step, StepContext, StepKind, Preflight};
//! use etl_sink_postgres::ident::TableName;
//! # async fn demo(conn: &mut sqlx::PgConnection) -> etl_sink_postgres::Result<()> {
//! let plan = Plan::new("observations", vec![
//!     Step::new("preflight", StepKind::Verification, Preflight::new(vec![TableName::new("obs")])).always(),
//!     Step::migration("001_reports", "migrations/001_reports.sql".as_ref())?,
//! ]);
//! let outcome = plan.run(conn, &StepContext::new("observations"), &RunOptions::default()).await?;
//! assert!(outcome.error.is_none());
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use etl_core::{CancellationToken, Finding, Progress};
use futures::future::BoxFuture;
use serde::Serialize;
use sha2::Digest as _;
use sqlx::{Connection, PgConnection};

use etl_postgres::catalog::{self, Scope};

use crate::ident::TableName;
use crate::{Error, Result};

/// Default name of the plan ledger table.
pub const LEDGER: &str = "ferry_schema_migrations";

/// What a step does (for listings and reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// Schema change from a SQL file (or code).
    Migration,
    /// Rows copied or moved.
    DataMove,
    /// Read-only checks.
    Verification,
    /// Removal of what is no longer needed (usually irreversible).
    Cleanup,
}

impl StepKind {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Migration => "migration",
            StepKind::DataMove => "data_move",
            StepKind::Verification => "verification",
            StepKind::Cleanup => "cleanup",
        }
    }
}

/// The state of a step in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Never ran (or rolled back and not run since).
    Pending,
    /// Started and not finished: killed, or running elsewhere.
    Running,
    /// Finished.
    Completed,
    /// Failed; `--resume` runs it again, `--rollback` undoes it.
    Failed,
    /// Undone by a rollback.
    RolledBack,
}

impl StepState {
    /// Lowercase name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Running => "running",
            StepState::Completed => "completed",
            StepState::Failed => "failed",
            StepState::RolledBack => "rolled_back",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "running" => StepState::Running,
            "completed" => StepState::Completed,
            "failed" => StepState::Failed,
            "rolled_back" => StepState::RolledBack,
            _ => StepState::Pending,
        }
    }

    /// Whether the step may have changed the database (and so has something to undo).
    pub fn touched(self) -> bool {
        matches!(
            self,
            StepState::Running | StepState::Completed | StepState::Failed
        )
    }
}

/// What a step run hands to its action.
#[derive(Debug, Clone)]
pub struct StepContext {
    /// The plan's name.
    pub plan: String,
    /// The longest a statement may wait for a lock (a PostgreSQL interval: `5s`); also set
    /// on the session for every step.
    pub lock_timeout: String,
    /// Progress bars.
    pub progress: Progress,
    /// Stops long steps at their next batch.
    pub cancel: CancellationToken,
    /// Set while the plan is dry-run (read-only steps run, nothing is written).
    pub dry_run: bool,
}

impl StepContext {
    /// A context with a 5-second lock timeout, no progress bars, never cancelled.
    pub fn new(plan: &str) -> Self {
        StepContext {
            plan: plan.to_owned(),
            lock_timeout: "5s".into(),
            progress: Progress::hidden(),
            cancel: CancellationToken::new(),
            dry_run: false,
        }
    }
}

/// What a step reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StepOutput {
    /// One line for the listing.
    pub message: String,
    /// Figures (stored in the ledger's `details` and the report).
    pub details: serde_json::Value,
    /// Checks; a failed check that vetoes fails the step.
    pub findings: Vec<Finding>,
}

impl StepOutput {
    /// An output with a message only.
    pub fn message(m: impl Into<String>) -> Self {
        StepOutput {
            message: m.into(),
            ..Default::default()
        }
    }
}

/// The work of a step and its undo. Implement it for code steps; [`SqlMigration`] is the
/// file-based one.
pub trait StepAction: Send + Sync {
    /// Do the step. It must be safe to run again after a kill (idempotent or resumable).
    fn run<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        ctx: &'a StepContext,
    ) -> BoxFuture<'a, Result<StepOutput>>;

    /// Undo the step (also when it ran only partly). The default undoes nothing.
    fn rollback<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        ctx: &'a StepContext,
    ) -> BoxFuture<'a, Result<StepOutput>> {
        let _ = (conn, ctx);
        Box::pin(async { Ok(StepOutput::message("nothing to undo")) })
    }

    /// The SQL the step would run, for `--dry-run` (it may read the database).
    fn preview<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        ctx: &'a StepContext,
    ) -> BoxFuture<'a, Result<Vec<String>>>;

    /// Whether the step only reads (it then runs in a dry run, in a `READ ONLY` transaction).
    fn read_only(&self) -> bool {
        false
    }

    /// Whether [`StepAction::rollback`] can undo it (a cleanup that drops data cannot).
    fn reversible(&self) -> bool {
        true
    }

    /// Whether the runner should wrap the step and its ledger row in one transaction.
    fn transactional(&self) -> bool {
        false
    }

    /// A checksum of the step's definition (a migration file's SHA-256).
    fn checksum(&self) -> Option<String> {
        None
    }

    /// Where the step's definition lives (a file), for messages.
    fn source(&self) -> Option<String> {
        None
    }
}

/// A SQL migration from a file `NAME.sql`, undone by `NAME.down.sql` when present.
///
/// The file runs in one transaction with its ledger row, unless it contains the line
/// `-- ferry:no-transaction`; it then runs statement by statement (for
/// `CREATE INDEX CONCURRENTLY` and other statements PostgreSQL refuses in a transaction).
#[derive(Debug, Clone)]
pub struct SqlMigration {
    /// The file.
    pub path: PathBuf,
    /// Its text.
    pub up: String,
    /// The rollback script's text, if any.
    pub down: Option<String>,
}

/// The marker line of a migration that must run outside a transaction.
pub const NO_TRANSACTION: &str = "-- ferry:no-transaction";

impl SqlMigration {
    /// Read `path` and, beside it, `<stem>.down.sql` if it exists.
    pub fn from_file(path: &Path) -> Result<Self> {
        let up = std::fs::read_to_string(path).map_err(|e| {
            Error::State(format!(
                "cannot read migration file {}: {e}",
                path.display()
            ))
        })?;
        let stem = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".sql"))
            .unwrap_or_default();
        let down_path = path.with_file_name(format!("{stem}.down.sql"));
        let down = if down_path.exists() {
            Some(std::fs::read_to_string(&down_path).map_err(|e| {
                Error::State(format!(
                    "cannot read rollback file {}: {e}",
                    down_path.display()
                ))
            })?)
        } else {
            None
        };
        Ok(SqlMigration {
            path: path.to_owned(),
            up,
            down,
        })
    }

    /// Hex SHA-256 of the file's text.
    pub fn sha256(&self) -> String {
        format!("{:x}", sha2::Sha256::digest(self.up.as_bytes()))
    }

    fn in_transaction(text: &str) -> bool {
        !text.lines().any(|l| l.trim() == NO_TRANSACTION)
    }

    async fn exec(&self, conn: &mut PgConnection, text: &str, what: &str) -> Result<()> {
        let wrap = |e: sqlx::Error| {
            Error::State(format!(
                "{what} {} failed: {e} (fix the SQL; the step is recorded as failed and nothing of a transactional file is applied)",
                self.path.display()
            ))
        };
        if Self::in_transaction(text) {
            sqlx::raw_sql(sqlx::AssertSqlSafe(text.to_owned()))
                .execute(conn)
                .await
                .map_err(wrap)?;
        } else {
            for stmt in split_statements(text) {
                sqlx::raw_sql(sqlx::AssertSqlSafe(stmt))
                    .execute(&mut *conn)
                    .await
                    .map_err(wrap)?;
            }
        }
        Ok(())
    }
}

impl StepAction for SqlMigration {
    fn run<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        _ctx: &'a StepContext,
    ) -> BoxFuture<'a, Result<StepOutput>> {
        Box::pin(async move {
            self.exec(conn, &self.up, "migration").await?;
            Ok(StepOutput {
                message: format!("applied {}", self.path.display()),
                details: serde_json::json!({ "file": self.path.display().to_string(), "sha256": self.sha256() }),
                findings: Vec::new(),
            })
        })
    }

    fn rollback<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        _ctx: &'a StepContext,
    ) -> BoxFuture<'a, Result<StepOutput>> {
        Box::pin(async move {
            let Some(down) = &self.down else {
                return Err(Error::State(format!(
                    "{} has no rollback script; add {} beside it",
                    self.path.display(),
                    self.path.with_extension("down.sql").display()
                )));
            };
            if Self::in_transaction(down) {
                let mut tx = conn.begin().await?;
                self.exec(&mut tx, down, "rollback of").await?;
                tx.commit().await?;
            } else {
                self.exec(conn, down, "rollback of").await?;
            }
            Ok(StepOutput::message(format!(
                "rolled back {}",
                self.path.display()
            )))
        })
    }

    fn preview<'a>(
        &'a self,
        _conn: &'a mut PgConnection,
        _ctx: &'a StepContext,
    ) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move { Ok(split_statements(&self.up)) })
    }

    fn reversible(&self) -> bool {
        self.down.is_some()
    }

    fn transactional(&self) -> bool {
        Self::in_transaction(&self.up)
    }

    fn checksum(&self) -> Option<String> {
        Some(self.sha256())
    }

    fn source(&self) -> Option<String> {
        Some(self.path.display().to_string())
    }
}

/// Split a SQL script into statements at top-level `;` (quotes, quoted identifiers,
/// dollar-quoted bodies and comments respected). Comment-only pieces are dropped.
pub fn split_statements(sql: &str) -> Vec<String> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut has_code = false;
    while i < b.len() {
        match b[i] {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
                continue;
            }
            q @ (b'\'' | b'"') => {
                has_code = true;
                i += 1;
                while i < b.len() {
                    if b[i] == q {
                        if b.get(i + 1) == Some(&q) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
            }
            b'$' => {
                has_code = true;
                // $tag$ ... $tag$
                let rest = &sql[i + 1..];
                if let Some(end) = rest.find('$') {
                    let tag = &rest[..end];
                    if tag.chars().all(|c| c.is_alphanumeric() || c == '_')
                        && !tag.starts_with(|c: char| c.is_ascii_digit())
                    {
                        let delim = format!("${tag}$");
                        let body = i + delim.len();
                        if let Some(close) = sql[body..].find(&delim) {
                            i = body + close + delim.len();
                            continue;
                        }
                    }
                }
            }
            b';' => {
                if has_code {
                    out.push(sql[start..i].trim().to_owned());
                }
                start = i + 1;
                has_code = false;
            }
            c if !c.is_ascii_whitespace() => has_code = true,
            _ => {}
        }
        i += 1;
    }
    if has_code && start < sql.len() {
        out.push(sql[start..].trim().to_owned());
    }
    out
}

/// One step of a plan.
#[derive(Clone)]
pub struct Step {
    /// Unique name (the ledger key).
    pub name: String,
    /// Kind.
    pub kind: StepKind,
    /// The work.
    pub action: Arc<dyn StepAction>,
    /// Runs only when asked ([`RunOptions::optional`], e.g. `--cleanup`).
    pub optional: bool,
    /// Runs on every invocation, even when completed before (pre-flight checks).
    pub always: bool,
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Step")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("optional", &self.optional)
            .field("always", &self.always)
            .finish()
    }
}

impl Step {
    /// A step doing `action`.
    pub fn new(name: &str, kind: StepKind, action: impl StepAction + 'static) -> Self {
        Step {
            name: name.to_owned(),
            kind,
            action: Arc::new(action),
            optional: false,
            always: false,
        }
    }

    /// A SQL migration step from a file (see [`SqlMigration`]).
    pub fn migration(name: &str, path: &Path) -> Result<Self> {
        Ok(Step::new(
            name,
            StepKind::Migration,
            SqlMigration::from_file(path)?,
        ))
    }

    /// Make the step optional (runs only with [`RunOptions::optional`]).
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    /// Make the step run on every invocation.
    pub fn always(mut self) -> Self {
        self.always = true;
        self
    }
}

/// How [`Plan::run`] runs.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue a plan that stopped part-way (otherwise that is refused).
    pub resume: bool,
    /// Stop after this step.
    pub until: Option<String>,
    /// Also run the optional steps (cleanup).
    pub optional: bool,
}

/// A step as the ledger knows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepStatus {
    /// Position in the plan (1-based).
    pub position: usize,
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: StepKind,
    /// State.
    pub state: StepState,
    /// Optional step.
    pub optional: bool,
    /// Checksum recorded when it completed.
    pub applied_checksum: Option<String>,
    /// Whether the definition changed since it completed.
    pub changed: bool,
    /// When it last finished.
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Seconds it took.
    pub duration_s: Option<f64>,
    /// The recorded error, if it failed.
    pub error: Option<String>,
    /// The recorded details.
    pub details: Option<serde_json::Value>,
}

/// What happened to a step in one invocation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// It ran and completed.
    Ran,
    /// Not run, and why.
    Skipped {
        /// Why.
        reason: String,
    },
    /// It failed.
    Failed {
        /// The error.
        error: String,
    },
    /// Dry run: the SQL it would run.
    WouldRun {
        /// Statements.
        sql: Vec<String>,
    },
    /// Undone.
    RolledBack,
}

/// One step's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepResult {
    /// Step name.
    pub name: String,
    /// Kind.
    pub kind: StepKind,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Seconds.
    pub seconds: f64,
    /// The step's output.
    pub output: StepOutput,
}

/// What one invocation of the plan did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PlanOutcome {
    /// Every step considered, in order.
    pub steps: Vec<StepResult>,
    /// The error that stopped it.
    pub error: Option<String>,
}

impl PlanOutcome {
    /// The result of a step, if considered.
    pub fn step(&self, name: &str) -> Option<&StepResult> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// Every finding of every step.
    pub fn findings(&self) -> Vec<Finding> {
        self.steps
            .iter()
            .flat_map(|s| s.output.findings.iter().cloned())
            .collect()
    }
}

/// An ordered plan of steps with a ledger.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Plan name (ledger key with the step name).
    pub name: String,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// The ledger table.
    pub ledger: TableName,
}

type LedgerRow = (
    String,
    String,
    Option<String>,
    Option<chrono::DateTime<chrono::Utc>>,
    Option<f64>,
    Option<String>,
    Option<serde_json::Value>,
);

impl Plan {
    /// A plan recorded in `ferry_schema_migrations`.
    ///
    /// # Panics
    /// When two steps share a name.
    pub fn new(name: &str, steps: Vec<Step>) -> Self {
        for (i, s) in steps.iter().enumerate() {
            assert!(
                !steps[..i].iter().any(|o| o.name == s.name),
                "plan `{name}`: step name `{}` is used twice",
                s.name
            );
        }
        Plan {
            name: name.to_owned(),
            steps,
            ledger: TableName::new(LEDGER),
        }
    }

    /// Create the ledger table if missing.
    pub async fn ensure_ledger(&self, conn: &mut PgConnection) -> Result<()> {
        sqlx::query(sqlf!(
            "CREATE TABLE IF NOT EXISTS {} (
                plan text NOT NULL,
                step text NOT NULL,
                position integer NOT NULL,
                kind text NOT NULL,
                checksum text,
                state text NOT NULL,
                started_at timestamptz,
                finished_at timestamptz,
                duration_s double precision,
                error text,
                details jsonb,
                PRIMARY KEY (plan, step))",
            self.ledger.sql()
        ))
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Every step with its recorded state, in plan order (all pending when the ledger
    /// table does not exist yet; this reads only).
    pub async fn status(&self, conn: &mut PgConnection) -> Result<Vec<StepStatus>> {
        let rows = if catalog::exists(conn, &self.ledger).await? {
            self.ledger_rows(conn).await?
        } else {
            Vec::new()
        };
        Ok(self.statuses(&rows))
    }

    async fn ledger_rows(&self, conn: &mut PgConnection) -> Result<Vec<(String, LedgerRow)>> {
        let rows: Vec<(String, LedgerRow)> = sqlx::query_as::<_, (String, String, Option<String>, Option<chrono::DateTime<chrono::Utc>>, Option<f64>, Option<String>, Option<serde_json::Value>)>(sqlf!(
            "SELECT step, state, checksum, finished_at, duration_s, error, details FROM {} WHERE plan = $1",
            self.ledger.sql()
        ))
        .bind(&self.name)
        .fetch_all(conn)
        .await?
        .into_iter()
        .map(|r| (r.0.clone(), r))
        .collect();
        Ok(rows)
    }

    fn statuses(&self, rows: &[(String, LedgerRow)]) -> Vec<StepStatus> {
        self.steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let row = rows.iter().find(|(n, _)| *n == s.name).map(|(_, r)| r);
                let state = row.map_or(StepState::Pending, |r| StepState::parse(&r.1));
                let applied = row.and_then(|r| r.2.clone());
                let changed = state == StepState::Completed
                    && applied.is_some()
                    && s.action.checksum().is_some()
                    && applied != s.action.checksum();
                StepStatus {
                    position: i + 1,
                    name: s.name.clone(),
                    kind: s.kind,
                    state,
                    optional: s.optional,
                    applied_checksum: applied,
                    changed,
                    finished_at: row.and_then(|r| r.3),
                    duration_s: row.and_then(|r| r.4),
                    error: row.and_then(|r| r.5.clone()),
                    details: row.and_then(|r| r.6.clone()),
                }
            })
            .collect()
    }

    /// Refuse when a completed migration's definition changed since it ran.
    pub fn check_unchanged(&self, status: &[StepStatus]) -> Result<()> {
        let changed: Vec<String> = status
            .iter()
            .filter(|s| s.changed)
            .map(|s| {
                let step = &self.steps[s.position - 1];
                format!(
                    "`{}` ({}: sha256 now {}, applied {})",
                    s.name,
                    step.action.source().unwrap_or_default(),
                    step.action.checksum().unwrap_or_default(),
                    s.applied_checksum.as_deref().unwrap_or("?")
                )
            })
            .collect();
        if changed.is_empty() {
            Ok(())
        } else {
            Err(Error::State(format!(
                "plan `{}`: migration(s) changed after they were applied: {}; a completed migration never runs again — restore the file and put the change in a new migration",
                self.name,
                changed.join(", ")
            )))
        }
    }

    #[allow(clippy::too_many_arguments)] // one ledger row's fields
    async fn record(
        &self,
        conn: &mut PgConnection,
        step: &Step,
        position: usize,
        state: StepState,
        seconds: Option<f64>,
        error: Option<&str>,
        details: Option<&serde_json::Value>,
    ) -> Result<()> {
        sqlx::query(sqlf!(
            "INSERT INTO {} AS l (plan, step, position, kind, checksum, state, started_at, finished_at, duration_s, error, details)
             VALUES ($1, $2, $3, $4, $5, $6, now(), CASE WHEN $6 = 'running' THEN NULL ELSE now() END, $7, $8, $9)
             ON CONFLICT (plan, step) DO UPDATE SET position = EXCLUDED.position, kind = EXCLUDED.kind,
                checksum = EXCLUDED.checksum, state = EXCLUDED.state,
                started_at = CASE WHEN EXCLUDED.state = 'running' THEN now() ELSE l.started_at END,
                finished_at = EXCLUDED.finished_at, duration_s = EXCLUDED.duration_s,
                error = EXCLUDED.error, details = coalesce(EXCLUDED.details, l.details)",
            self.ledger.sql()
        ))
        .bind(&self.name)
        .bind(&step.name)
        .bind(position as i32)
        .bind(step.kind.as_str())
        .bind(step.action.checksum())
        .bind(state.as_str())
        .bind(seconds)
        .bind(error)
        .bind(details)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Run the plan: every pending step in order (completed ones are skipped, `always`
    /// ones run again), each recorded in the ledger; stops at the first failure, which is
    /// returned in [`PlanOutcome::error`] with the steps done so far.
    ///
    /// # Errors
    /// Refused before any step runs when a completed migration file changed, or when the
    /// plan stopped part-way earlier and neither `resume` nor a rollback was asked for.
    pub async fn run(
        &self,
        conn: &mut PgConnection,
        ctx: &StepContext,
        opts: &RunOptions,
    ) -> Result<PlanOutcome> {
        self.ensure_ledger(conn).await?;
        let status = self.status(conn).await?;
        self.check_unchanged(&status)?;
        let required_done = status
            .iter()
            .filter(|s| !s.optional)
            .all(|s| s.state == StepState::Completed);
        let started = status
            .iter()
            .filter(|s| !self.steps[s.position - 1].always)
            .any(|s| s.state.touched());
        if started && !required_done && !opts.resume {
            let last = status
                .iter()
                .rev()
                .find(|s| s.state.touched())
                .map(|s| format!("`{}` is {}", s.name, s.state.as_str()))
                .unwrap_or_default();
            return Err(Error::State(format!(
                "plan `{}` stopped part-way ({last}); continue it with --resume or undo it with --rollback",
                self.name
            )));
        }
        catalog::set_lock_timeout(&mut *conn, &ctx.lock_timeout, Scope::Session).await?;
        let mut out = PlanOutcome::default();
        for (i, (step, st)) in self.steps.iter().zip(&status).enumerate() {
            let skip = if step.optional && !opts.optional {
                Some("optional: not asked for".to_owned())
            } else if st.state == StepState::Completed && !step.always {
                Some(format!(
                    "already completed{}",
                    st.finished_at
                        .map(|t| format!(" at {}", t.to_rfc3339()))
                        .unwrap_or_default()
                ))
            } else {
                None
            };
            if let Some(reason) = skip {
                out.steps.push(StepResult {
                    name: step.name.clone(),
                    kind: step.kind,
                    outcome: Outcome::Skipped { reason },
                    seconds: 0.0,
                    output: StepOutput::default(),
                });
            } else {
                let r = self.run_step(conn, ctx, step, i + 1).await?;
                let failed = match &r.outcome {
                    Outcome::Failed { error } => Some(error.clone()),
                    _ => None,
                };
                tracing::info!(step = %step.name, seconds = r.seconds, ok = failed.is_none(), "plan step");
                out.steps.push(r);
                if let Some(e) = failed {
                    out.error = Some(format!(
                        "step `{}` failed: {e}; fix the cause and rerun with --resume, or undo with --rollback",
                        step.name
                    ));
                    break;
                }
            }
            if opts.until.as_deref() == Some(step.name.as_str()) {
                break;
            }
        }
        Ok(out)
    }

    async fn run_step(
        &self,
        conn: &mut PgConnection,
        ctx: &StepContext,
        step: &Step,
        position: usize,
    ) -> Result<StepResult> {
        let t0 = Instant::now();
        let result = if step.action.transactional() {
            let mut tx = conn.begin().await?;
            match step.action.run(&mut tx, ctx).await {
                Ok(o) if !vetoed(&o) => {
                    let secs = t0.elapsed().as_secs_f64();
                    self.record(
                        &mut tx,
                        step,
                        position,
                        StepState::Completed,
                        Some(secs),
                        None,
                        Some(&o.details),
                    )
                    .await?;
                    tx.commit().await?;
                    Ok(o)
                }
                Ok(o) => {
                    tx.rollback().await?;
                    Err((veto_message(&o), Some(o)))
                }
                Err(e) => {
                    tx.rollback().await?;
                    Err((e.to_string(), None))
                }
            }
        } else {
            self.record(conn, step, position, StepState::Running, None, None, None)
                .await?;
            match step.action.run(conn, ctx).await {
                Ok(o) if !vetoed(&o) => {
                    let secs = t0.elapsed().as_secs_f64();
                    self.record(
                        conn,
                        step,
                        position,
                        StepState::Completed,
                        Some(secs),
                        None,
                        Some(&o.details),
                    )
                    .await?;
                    Ok(o)
                }
                Ok(o) => Err((veto_message(&o), Some(o))),
                Err(e) => Err((e.to_string(), None)),
            }
        };
        let seconds = t0.elapsed().as_secs_f64();
        Ok(match result {
            Ok(output) => StepResult {
                name: step.name.clone(),
                kind: step.kind,
                outcome: Outcome::Ran,
                seconds,
                output,
            },
            Err((error, output)) => {
                // The connection may be unusable (e.g. a killed backend); record if we can.
                let details = output.as_ref().map(|o| o.details.clone());
                if let Err(e) = self
                    .record(
                        conn,
                        step,
                        position,
                        StepState::Failed,
                        Some(seconds),
                        Some(&error),
                        details.as_ref(),
                    )
                    .await
                {
                    tracing::warn!(step = %step.name, error = %e, "could not record the failed step");
                }
                StepResult {
                    name: step.name.clone(),
                    kind: step.kind,
                    outcome: Outcome::Failed { error },
                    seconds,
                    output: output.unwrap_or_default(),
                }
            }
        })
    }

    /// Dry run: read-only steps run in a `READ ONLY` transaction that is rolled back; the
    /// others report the SQL they would run. Nothing is written (not even the ledger).
    pub async fn dry_run(&self, conn: &mut PgConnection, ctx: &StepContext) -> Result<PlanOutcome> {
        let ctx = StepContext {
            dry_run: true,
            ..ctx.clone()
        };
        let status = self.status(conn).await?;
        self.check_unchanged(&status)?;
        let mut out = PlanOutcome::default();
        for (step, st) in self.steps.iter().zip(&status) {
            let t0 = Instant::now();
            let (outcome, output) = if st.state == StepState::Completed && !step.always {
                (
                    Outcome::Skipped {
                        reason: "already completed".into(),
                    },
                    StepOutput::default(),
                )
            } else if step.action.read_only() {
                let mut tx = conn.begin().await?;
                sqlx::query("SET TRANSACTION READ ONLY")
                    .execute(&mut *tx)
                    .await?;
                let r = step.action.run(&mut tx, &ctx).await;
                tx.rollback().await?;
                match r {
                    Ok(o) => (Outcome::Ran, o),
                    Err(e) => (
                        Outcome::Failed {
                            error: e.to_string(),
                        },
                        StepOutput::default(),
                    ),
                }
            } else {
                let sql = match step.action.preview(conn, &ctx).await {
                    Ok(s) => s,
                    Err(e) => vec![format!(
                        "-- (the SQL depends on earlier steps and cannot be shown yet: {e})"
                    )],
                };
                (Outcome::WouldRun { sql }, StepOutput::default())
            };
            out.steps.push(StepResult {
                name: step.name.clone(),
                kind: step.kind,
                outcome,
                seconds: t0.elapsed().as_secs_f64(),
                output,
            });
        }
        Ok(out)
    }

    /// Undo the steps that completed (or ran part-way), newest first; each undone step is
    /// recorded `rolled_back`, so a later run does it again.
    ///
    /// # Errors
    /// Refused before anything is undone when one of those steps cannot be undone (a
    /// cleanup that dropped data, a migration without a `.down.sql`). A rollback that
    /// fails part-way stops there ([`PlanOutcome::error`]); running it again continues.
    pub async fn rollback(
        &self,
        conn: &mut PgConnection,
        ctx: &StepContext,
    ) -> Result<PlanOutcome> {
        self.ensure_ledger(conn).await?;
        let status = self.status(conn).await?;
        let todo: Vec<(usize, &Step)> = status
            .iter()
            .filter(|s| s.state.touched())
            .map(|s| (s.position, &self.steps[s.position - 1]))
            .collect();
        let blocked: Vec<String> = todo
            .iter()
            .filter(|(_, s)| !s.action.reversible())
            .map(|(_, s)| format!("`{}`", s.name))
            .collect();
        if !blocked.is_empty() {
            return Err(Error::State(format!(
                "plan `{}` cannot be rolled back: step(s) {} cannot be undone (a cleanup dropped data, or a migration has no .down.sql); restore from a backup instead",
                self.name,
                blocked.join(", ")
            )));
        }
        catalog::set_lock_timeout(&mut *conn, &ctx.lock_timeout, Scope::Session).await?;
        let mut out = PlanOutcome::default();
        for (position, step) in todo.into_iter().rev() {
            let t0 = Instant::now();
            let r = step.action.rollback(conn, ctx).await;
            let seconds = t0.elapsed().as_secs_f64();
            match r {
                Ok(o) => {
                    self.record(
                        conn,
                        step,
                        position,
                        StepState::RolledBack,
                        Some(seconds),
                        None,
                        None,
                    )
                    .await?;
                    tracing::info!(step = %step.name, seconds, "rolled back");
                    out.steps.push(StepResult {
                        name: step.name.clone(),
                        kind: step.kind,
                        outcome: Outcome::RolledBack,
                        seconds,
                        output: o,
                    });
                }
                Err(e) => {
                    let error = e.to_string();
                    out.steps.push(StepResult {
                        name: step.name.clone(),
                        kind: step.kind,
                        outcome: Outcome::Failed {
                            error: error.clone(),
                        },
                        seconds,
                        output: StepOutput::default(),
                    });
                    out.error = Some(format!(
                        "rollback of step `{}` failed: {error}; fix the cause and run --rollback again",
                        step.name
                    ));
                    break;
                }
            }
        }
        Ok(out)
    }
}

fn vetoed(o: &StepOutput) -> bool {
    o.findings.iter().any(|f| f.vetoes())
}

fn veto_message(o: &StepOutput) -> String {
    let failed: Vec<String> = o
        .findings
        .iter()
        .filter(|f| f.vetoes())
        .map(|f| format!("{}: {}", f.check, f.message))
        .collect();
    format!("check(s) failed: {}", failed.join("; "))
}

/// The `--plan` listing: one line per step with its state.
pub fn render_status(plan: &str, status: &[StepStatus]) -> String {
    use std::fmt::Write as _;
    let mut s = format!("plan {plan}\n");
    let _ = writeln!(
        s,
        "{:>3}  {:<34} {:<13} {:<12} note",
        "#", "step", "kind", "state"
    );
    for st in status {
        let mut note = String::new();
        if st.optional {
            note.push_str("optional (--cleanup) ");
        }
        if st.changed {
            note.push_str("FILE CHANGED since applied ");
        }
        if let Some(d) = st.duration_s {
            let _ = write!(note, "{d:.2}s ");
        }
        if let Some(e) = &st.error {
            let _ = write!(note, "error: {e}");
        }
        let _ = writeln!(
            s,
            "{:>3}  {:<34} {:<13} {:<12} {}",
            st.position,
            st.name,
            st.kind.as_str(),
            st.state.as_str(),
            note.trim_end()
        );
    }
    s
}

/// Size and live rows of a table (the seed's `pg_stat_user_tables` query).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableSize {
    /// Schema.
    pub schema: String,
    /// Table.
    pub table: String,
    /// `pg_total_relation_size`, pretty.
    pub size: String,
    /// `pg_total_relation_size` in bytes.
    pub bytes: i64,
    /// `n_live_tup` (an estimate).
    pub row_count: i64,
}

/// Every user table by total size, largest first. (The seed's query concatenates
/// `schemaname||'.'||tablename`, which fails on `pg_stat_user_tables` — it has `relname` —
/// and on mixed-case names; this uses the table's oid.)
pub async fn table_sizes(conn: &mut PgConnection) -> Result<Vec<TableSize>> {
    let rows: Vec<(String, String, String, i64, i64)> = sqlx::query_as(
        "SELECT schemaname::text, relname::text, pg_size_pretty(pg_total_relation_size(relid)),
                pg_total_relation_size(relid), n_live_tup
           FROM pg_stat_user_tables ORDER BY pg_total_relation_size(relid) DESC, relname",
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(schema, table, size, bytes, row_count)| TableSize {
            schema,
            table,
            size,
            bytes,
            row_count,
        })
        .collect())
}

/// A foreign key: `table` references `referenced`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForeignKeyDep {
    /// Constraint name.
    pub constraint: String,
    /// Referencing table.
    pub table: String,
    /// Referenced table.
    pub referenced: String,
}

/// Every foreign key in the database (the seed's dependency query).
pub async fn foreign_keys(conn: &mut PgConnection) -> Result<Vec<ForeignKeyDep>> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT conname::text, conrelid::regclass::text, confrelid::regclass::text
           FROM pg_constraint WHERE contype = 'f' ORDER BY conrelid::regclass::text, conname",
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(constraint, table, referenced)| ForeignKeyDep {
            constraint,
            table,
            referenced,
        })
        .collect())
}

/// Another session's lock on one of the plan's tables.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LockHolder {
    /// Backend pid.
    pub pid: i32,
    /// Table.
    pub table: String,
    /// Lock mode.
    pub mode: String,
    /// Whether granted (else it waits).
    pub granted: bool,
    /// Session state (`active`, `idle in transaction`, ...).
    pub state: Option<String>,
    /// Seconds its transaction has been open.
    pub xact_age_s: Option<f64>,
    /// Its current or last query (first 200 characters).
    pub query: Option<String>,
}

type LockRow = (
    i32,
    String,
    String,
    bool,
    Option<String>,
    Option<f64>,
    Option<String>,
);

/// The locks other sessions hold or wait for on `tables`.
pub async fn lock_holders(
    conn: &mut PgConnection,
    tables: &[TableName],
) -> Result<Vec<LockHolder>> {
    let names: Vec<String> = tables.iter().map(|t| t.sql()).collect();
    let rows: Vec<LockRow> = sqlx::query_as(
        "SELECT l.pid, l.relation::regclass::text, l.mode, l.granted, a.state,
                extract(epoch FROM now() - a.xact_start)::float8, left(a.query, 200)
           FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE l.locktype = 'relation' AND l.pid <> pg_backend_pid()
            AND l.relation IN (SELECT to_regclass(t) FROM unnest($1::text[]) t)
          ORDER BY l.pid",
    )
    .bind(&names)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(pid, table, mode, granted, state, xact_age_s, query)| LockHolder {
                pid,
                table,
                mode,
                granted,
                state,
                xact_age_s,
                query,
            },
        )
        .collect())
}

/// Try to take `ACCESS EXCLUSIVE` locks on `tables` within `lock_timeout`, then release
/// them at once (the probe commits nothing).
///
/// # Errors
/// [`Error::State`] naming the sessions in the way when the locks are not granted in time.
pub async fn probe_locks(
    conn: &mut PgConnection,
    tables: &[TableName],
    lock_timeout: &str,
) -> Result<()> {
    let mut existing = Vec::new();
    for t in tables {
        if catalog::exists(conn, t).await? {
            existing.push(t.sql());
        }
    }
    if existing.is_empty() {
        return Ok(());
    }
    let mut tx = conn.begin().await?;
    catalog::set_lock_timeout(&mut tx, lock_timeout, Scope::Transaction).await?;
    let r = sqlx::query(sqlf!(
        "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
        existing.join(", ")
    ))
    .execute(&mut *tx)
    .await;
    tx.rollback().await?;
    match r {
        Ok(_) => Ok(()),
        Err(e) if catalog::is_lock_timeout(&e) => {
            let holders = lock_holders(conn, tables).await?;
            let who: Vec<String> = holders
                .iter()
                .filter(|h| h.granted)
                .map(|h| {
                    format!(
                        "pid {} holds {} on {} ({}, transaction open {:.0}s: {})",
                        h.pid,
                        h.mode,
                        h.table,
                        h.state.as_deref().unwrap_or("?"),
                        h.xact_age_s.unwrap_or(0.0),
                        h.query.as_deref().unwrap_or("")
                    )
                })
                .collect();
            Err(Error::State(format!(
                "refusing to start: the tables could not be locked within lock_timeout {lock_timeout}; {}. \
                 Wait for those sessions to finish (or end them with pg_terminate_backend), or raise --lock-timeout",
                if who.is_empty() {
                    "no holder found any more".to_owned()
                } else {
                    who.join("; ")
                }
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// The pre-flight step: table sizes and row counts, foreign-key dependencies, lock holders
/// on the plan's tables; outside a dry run it refuses to go on when those tables cannot be
/// locked within the plan's `lock_timeout`.
#[derive(Debug, Clone)]
pub struct Preflight {
    /// The tables the plan changes.
    pub tables: Vec<TableName>,
}

impl Preflight {
    /// A pre-flight over `tables`.
    pub fn new(tables: Vec<TableName>) -> Self {
        Preflight { tables }
    }
}

impl StepAction for Preflight {
    fn run<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        ctx: &'a StepContext,
    ) -> BoxFuture<'a, Result<StepOutput>> {
        Box::pin(async move {
            let sizes = table_sizes(conn).await?;
            let fks = foreign_keys(conn).await?;
            let holders = lock_holders(conn, &self.tables).await?;
            let mut findings = Vec::new();
            if !ctx.dry_run {
                probe_locks(conn, &self.tables, &ctx.lock_timeout).await?;
                findings.push(Finding::pass(
                    "locks_available",
                    format!(
                        "the plan's tables can be locked within {}",
                        ctx.lock_timeout
                    ),
                ));
            }
            let rows: i64 = sizes
                .iter()
                .filter(|s| self.tables.iter().any(|t| t.name == s.table))
                .map(|s| s.row_count)
                .sum();
            Ok(StepOutput {
                message: format!(
                    "{} tables, {} foreign keys, {} lock(s) held by other sessions on the plan's tables, ~{rows} rows to move",
                    sizes.len(),
                    fks.len(),
                    holders.len()
                ),
                details: serde_json::json!({
                    "table_sizes": sizes,
                    "foreign_keys": fks,
                    "lock_holders": holders,
                }),
                findings,
            })
        })
    }

    fn preview<'a>(
        &'a self,
        _conn: &'a mut PgConnection,
        _ctx: &'a StepContext,
    ) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn read_only(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_at_top_level_semicolons() {
        let sql = "-- header; not a statement\nCREATE TABLE \"a;b\" (x text DEFAULT 'it''s; ok');\n\
                   /* block; comment */\nCREATE FUNCTION f() RETURNS int LANGUAGE sql AS $body$ SELECT 1; $body$;\n\
                   SELECT $1;\n  -- trailing comment only\n";
        let v = split_statements(sql);
        assert_eq!(v.len(), 3, "{v:#?}");
        assert!(v[0].ends_with("DEFAULT 'it''s; ok')"), "{}", v[0]);
        assert!(v[1].contains("$body$ SELECT 1; $body$"), "{}", v[1]);
        assert_eq!(v[2], "SELECT $1");
    }

    #[test]
    fn migration_files_have_checksums_and_optional_down_scripts() {
        let dir = std::env::temp_dir().join(format!("ferry-plan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let up = dir.join("001_x.sql");
        std::fs::write(&up, "CREATE TABLE x (id int);").unwrap();
        let m = SqlMigration::from_file(&up).unwrap();
        assert!(m.down.is_none() && !m.reversible() && m.transactional());
        assert_eq!(m.sha256().len(), 64);
        std::fs::write(dir.join("001_x.down.sql"), "DROP TABLE x;").unwrap();
        std::fs::write(&up, format!("{NO_TRANSACTION}\nCREATE TABLE x (id int);")).unwrap();
        let m2 = SqlMigration::from_file(&up).unwrap();
        assert!(m2.reversible() && !m2.transactional());
        assert_ne!(m.sha256(), m2.sha256());
        let e = SqlMigration::from_file(&dir.join("nope.sql")).unwrap_err();
        assert!(e.to_string().contains("nope.sql"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn status_listing_shows_states() {
        let st = vec![StepStatus {
            position: 1,
            name: "001_x".into(),
            kind: StepKind::Migration,
            state: StepState::Completed,
            optional: false,
            applied_checksum: None,
            changed: true,
            finished_at: None,
            duration_s: Some(0.5),
            error: None,
            details: None,
        }];
        let s = render_status("p", &st);
        assert!(
            s.contains("001_x") && s.contains("completed") && s.contains("FILE CHANGED"),
            "{s}"
        );
    }
}
