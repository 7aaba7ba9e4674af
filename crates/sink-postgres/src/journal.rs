//! The run journal of a migration whose target is PostgreSQL, kept in the target database
//! itself (two tables), so the journal and the data cannot drift apart: a restore of the
//! database restores its journal too.
//!
//! ```text
//! ferry_journal_runs   (migration, run_id PK, state, started_at, finished_at, host, pid, message)
//! ferry_journal_steps  (run_id, step) PK, position, kind, state, attempts, started_at,
//!                      finished_at, duration_s, message, error, details jsonb, fingerprint
//! ```
//!
//! Reading never creates anything (`--plan` and `--dry-run` write nothing); the tables are
//! created by the first run.
//!
//! ```no_run
//! use etl_core::migration::Journal;
//! use etl_sink_postgres::journal::PgJournal;
//! # async fn demo() -> etl_core::Result<()> {
//! let journal = PgJournal::new(etl_sink_postgres::connect_options("postgres://localhost/db").unwrap());
//! let latest = journal.latest("cites_trade").await?;
//! # Ok(()) }
//! ```

use chrono::{DateTime, Utc};
use etl_core::migration::{
    Journal, JournalRun, RunLock, RunRecord, RunState, StepKind, StepRecord, StepState,
};
use futures::future::BoxFuture;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use uuid::Uuid;

use crate::ident::TableName;

/// The journal in two tables of the target database.
#[derive(Debug, Clone)]
pub struct PgJournal {
    pool: PgPool,
    opts: PgConnectOptions,
    runs: TableName,
    steps: TableName,
    ensured: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

type StepRow = (
    String,
    i32,
    String,
    String,
    i32,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<f64>,
    Option<String>,
    Option<String>,
    Option<serde_json::Value>,
    Option<String>,
);

type RunRow = (
    String,
    Uuid,
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    String,
    i32,
    Option<String>,
);

impl PgJournal {
    /// A journal in `ferry_journal_runs` / `ferry_journal_steps` of the database `opts`
    /// points at (one connection, opened when first needed and reopened after a loss).
    pub fn new(opts: PgConnectOptions) -> Self {
        PgJournal {
            pool: PgPoolOptions::new()
                .max_connections(1)
                .min_connections(0)
                .acquire_timeout(std::time::Duration::from_secs(30))
                .connect_lazy_with(opts.clone()),
            opts,
            runs: TableName::new("ferry_journal_runs"),
            steps: TableName::new("ferry_journal_steps"),
            ensured: Default::default(),
        }
    }

    fn err(&self, e: impl std::fmt::Display) -> etl_core::Error {
        etl_core::Error::Journal {
            location: self.location(),
            reason: e.to_string(),
        }
    }

    async fn ensure(&self) -> etl_core::Result<()> {
        use std::sync::atomic::Ordering;
        if self.ensured.load(Ordering::Relaxed) {
            return Ok(());
        }
        sqlx::raw_sql(sqlf!(
            "CREATE TABLE IF NOT EXISTS {runs} (
                migration text NOT NULL,
                run_id uuid PRIMARY KEY,
                state text NOT NULL,
                started_at timestamptz NOT NULL,
                finished_at timestamptz,
                host text NOT NULL,
                pid integer NOT NULL,
                message text);
             CREATE INDEX IF NOT EXISTS ferry_journal_runs_migration ON {runs} (migration, started_at);
             CREATE TABLE IF NOT EXISTS {steps} (
                run_id uuid NOT NULL REFERENCES {runs} (run_id) ON DELETE CASCADE,
                step text NOT NULL,
                position integer NOT NULL,
                kind text NOT NULL,
                state text NOT NULL,
                attempts integer NOT NULL,
                started_at timestamptz,
                finished_at timestamptz,
                duration_s double precision,
                message text,
                error text,
                details jsonb,
                fingerprint text,
                PRIMARY KEY (run_id, step))",
            runs = self.runs.sql(),
            steps = self.steps.sql()
        ))
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        self.ensured.store(true, Ordering::Relaxed);
        Ok(())
    }

    async fn latest_run(&self, migration: &str) -> etl_core::Result<Option<JournalRun>> {
        let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(self.runs.sql())
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        if exists.is_none() {
            return Ok(None);
        }
        let run: Option<RunRow> = sqlx::query_as(sqlf!(
            "SELECT migration, run_id, state, started_at, finished_at, host, pid, message
               FROM {} WHERE migration = $1 ORDER BY started_at DESC, run_id DESC LIMIT 1",
            self.runs.sql()
        ))
        .bind(migration)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        let Some(r) = run else { return Ok(None) };
        let rows: Vec<StepRow> = sqlx::query_as(sqlf!(
            "SELECT step, position, kind, state, attempts, started_at, finished_at, duration_s,
                    message, error, details, fingerprint
               FROM {} WHERE run_id = $1 ORDER BY position",
            self.steps.sql()
        ))
        .bind(r.1)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        let mut steps = Vec::with_capacity(rows.len());
        for s in rows {
            steps.push(StepRecord {
                name: s.0,
                position: s.1 as u32,
                kind: StepKind::parse(&s.2),
                state: StepState::parse(&s.3)?,
                attempts: s.4 as u32,
                started_at: s.5,
                finished_at: s.6,
                duration_s: s.7,
                message: s.8,
                error: s.9,
                details: s.10.unwrap_or(serde_json::Value::Null),
                fingerprint: s.11,
            });
        }
        Ok(Some(JournalRun {
            run: RunRecord {
                migration: r.0,
                run_id: r.1,
                state: RunState::parse(&r.2)?,
                started_at: r.3,
                finished_at: r.4,
                host: r.5,
                pid: r.6 as u32,
                message: r.7,
            },
            steps,
        }))
    }

    async fn upsert_run(&self, run: &RunRecord) -> etl_core::Result<()> {
        sqlx::query(sqlf!(
            "INSERT INTO {} (migration, run_id, state, started_at, finished_at, host, pid, message)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (run_id) DO UPDATE SET state = EXCLUDED.state,
                finished_at = EXCLUDED.finished_at, host = EXCLUDED.host, pid = EXCLUDED.pid,
                message = EXCLUDED.message",
            self.runs.sql()
        ))
        .bind(&run.migration)
        .bind(run.run_id)
        .bind(run.state.as_str())
        .bind(run.started_at)
        .bind(run.finished_at)
        .bind(&run.host)
        .bind(run.pid as i32)
        .bind(&run.message)
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn upsert_step(&self, run_id: Uuid, s: &StepRecord) -> etl_core::Result<()> {
        sqlx::query(sqlf!(
            "INSERT INTO {} (run_id, step, position, kind, state, attempts, started_at,
                    finished_at, duration_s, message, error, details, fingerprint)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (run_id, step) DO UPDATE SET position = EXCLUDED.position,
                kind = EXCLUDED.kind, state = EXCLUDED.state, attempts = EXCLUDED.attempts,
                started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at,
                duration_s = EXCLUDED.duration_s, message = EXCLUDED.message,
                error = EXCLUDED.error, details = EXCLUDED.details,
                fingerprint = EXCLUDED.fingerprint",
            self.steps.sql()
        ))
        .bind(run_id)
        .bind(&s.name)
        .bind(s.position as i32)
        .bind(s.kind.as_str())
        .bind(s.state.as_str())
        .bind(s.attempts as i32)
        .bind(s.started_at)
        .bind(s.finished_at)
        .bind(s.duration_s)
        .bind(&s.message)
        .bind(&s.error)
        .bind((!s.details.is_null()).then_some(&s.details))
        .bind(&s.fingerprint)
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
    }
}

/// Aborts its task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How often the session holding a run lock is checked.
const LOCK_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// Hold the lock on `conn`; if the session dies, take the lock again on a new one.
async fn keep_lock(
    mut conn: sqlx::PgConnection,
    opts: PgConnectOptions,
    migration: String,
    lost: std::sync::Arc<std::sync::atomic::AtomicBool>,
    (mut stop, _ended): (
        tokio::sync::oneshot::Receiver<()>,
        tokio::sync::oneshot::Sender<()>,
    ),
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(LOCK_CHECK) => {}
            _ = &mut stop => {
                // Released: unlock and end the session before the release returns.
                let _ = sqlx::query(sqlf!("SELECT pg_advisory_unlock({LOCK_KEY})"))
                    .bind(&migration)
                    .execute(&mut conn)
                    .await;
                let _ = sqlx::Connection::close(conn).await;
                return;
            }
        }
        if sqlx::query("SELECT 1").execute(&mut conn).await.is_ok() {
            continue;
        }
        tracing::warn!(migration = %migration, "the session holding the run lock ended; taking the lock again");
        loop {
            tokio::time::sleep(LOCK_CHECK).await;
            let Ok(mut c) = crate::ConnectSettings::default().connect(&opts).await else {
                continue;
            };
            match sqlx::query_scalar::<_, bool>(sqlf!("SELECT pg_try_advisory_lock({LOCK_KEY})"))
                .bind(&migration)
                .fetch_one(&mut c)
                .await
            {
                Ok(true) => {
                    tracing::warn!(migration = %migration, "run lock re-taken");
                    conn = c;
                    break;
                }
                Ok(false) => {
                    tracing::error!(migration = %migration, "the run lock was taken by another process while its session was down");
                    lost.store(true, std::sync::atomic::Ordering::SeqCst);
                    return;
                }
                Err(_) => continue,
            }
        }
    }
}

/// The advisory-lock key of a migration's runs: `(hashtext('ferry'), hashtext(schema.name))`
/// as `pg_locks` shows it (`classid`, `objid`, `objsubid = 2`).
const LOCK_KEY: &str = "hashtext('ferry'), hashtext(current_schema() || '.' || $1)";
const LOCK_ROW: &str = "locktype = 'advisory' AND objsubid = 2 AND granted
    AND classid = (hashtext('ferry')::bigint & 4294967295)::oid
    AND objid = (hashtext(current_schema() || '.' || $1)::bigint & 4294967295)::oid";

impl PgJournal {
    async fn take_lock(&self, migration: &str) -> etl_core::Result<RunLock> {
        let mut conn = crate::ConnectSettings::default()
            .connect(&self.opts)
            .await
            .map_err(|e| self.err(e))?;
        // A run killed a moment ago leaves a session the server has not ended yet: give
        // a lock held by a session that is going away half a second before refusing.
        let mut got = false;
        for attempt in 0..10 {
            got = sqlx::query_scalar(sqlf!("SELECT pg_try_advisory_lock({LOCK_KEY})"))
                .bind(migration)
                .fetch_one(&mut conn)
                .await
                .map_err(|e| self.err(e))?;
            if got || attempt == 9 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        if got {
            // The session holds the lock; a watchdog keeps it: when the session ends (a
            // server restart, a cut connection) it reconnects and takes the lock again, and
            // marks it lost if another process took it meanwhile. Dropping the guard stops
            // the watchdog, which closes the session and releases the lock.
            let lost = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let (stop, stopped) = tokio::sync::oneshot::channel();
            // The watchdog holds `ended` while it runs: the release waits for its end.
            let (ended, done) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(keep_lock(
                conn,
                self.opts.clone(),
                migration.to_owned(),
                lost.clone(),
                (stopped, ended),
            ));
            let guard = AbortOnDrop(task);
            return Ok(RunLock::watched(guard, lost).with_release(move || {
                Box::pin(async move {
                    // The watchdog ends its session (unlock, Terminate) and says so.
                    let _ = stop.send(());
                    let _ = done.await;
                })
            }));
        }
        let backend: Option<(i32, Option<String>, Option<DateTime<Utc>>)> = sqlx::query_as(sqlf!(
            "SELECT a.pid, coalesce(a.client_addr::text, 'local socket'), a.backend_start
               FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE {LOCK_ROW} LIMIT 1"
        ))
        .bind(migration)
        .fetch_optional(&mut conn)
        .await
        .map_err(|e| self.err(e))?;
        let run = self
            .latest_run(migration)
            .await
            .ok()
            .flatten()
            .map(|r| {
                format!(
                    "run {} started {} by pid {} on {}",
                    r.run.run_id,
                    r.run.started_at.to_rfc3339(),
                    r.run.pid,
                    r.run.host
                )
            })
            .unwrap_or_else(|| "another process".into());
        let session = backend
            .map(|(pid, addr, since)| {
                format!(
                    " (database session {pid} from {}{})",
                    addr.unwrap_or_default(),
                    since
                        .map(|t| format!(" since {}", t.to_rfc3339()))
                        .unwrap_or_default()
                )
            })
            .unwrap_or_default();
        Err(etl_core::Error::Refused(format!(
            "migration `{migration}` is being run by {run}{session}: one run at a time per target; wait for it to end, or stop it and continue with --resume"
        )))
    }

    async fn is_locked(&self, migration: &str) -> etl_core::Result<bool> {
        sqlx::query_scalar(sqlf!(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE {LOCK_ROW})"
        ))
        .bind(migration)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.err(e))
    }
}

impl Journal for PgJournal {
    fn lock<'a>(&'a self, migration: &'a str) -> BoxFuture<'a, etl_core::Result<RunLock>> {
        Box::pin(self.take_lock(migration))
    }

    fn lock_held<'a>(
        &'a self,
        migration: &'a str,
    ) -> BoxFuture<'a, etl_core::Result<Option<bool>>> {
        Box::pin(async move { self.is_locked(migration).await.map(Some) })
    }

    fn location(&self) -> String {
        format!(
            "tables {} / {} of the target database",
            self.runs, self.steps
        )
    }

    fn latest<'a>(
        &'a self,
        migration: &'a str,
    ) -> BoxFuture<'a, etl_core::Result<Option<JournalRun>>> {
        Box::pin(self.latest_run(migration))
    }

    fn begin<'a>(&'a self, run: &'a JournalRun) -> BoxFuture<'a, etl_core::Result<()>> {
        Box::pin(async move {
            self.ensure().await?;
            self.upsert_run(&run.run).await?;
            for s in &run.steps {
                self.upsert_step(run.run.run_id, s).await?;
            }
            Ok(())
        })
    }

    fn put_run<'a>(&'a self, run: &'a RunRecord) -> BoxFuture<'a, etl_core::Result<()>> {
        Box::pin(async move {
            self.ensure().await?;
            self.upsert_run(run).await
        })
    }

    fn put_step<'a>(
        &'a self,
        _migration: &'a str,
        run_id: Uuid,
        step: &'a StepRecord,
    ) -> BoxFuture<'a, etl_core::Result<()>> {
        Box::pin(self.upsert_step(run_id, step))
    }
}
