//! Moving rows between tables inside PostgreSQL, resumably and without long locks.
//!
//! * [`KeysetMove`] (batch mode): keyset-paginated `INSERT ... SELECT` ordered by a unique
//!   key (a primary key or `(created_at, id)`), one short transaction per batch holding the
//!   batch and its checkpoint, so a killed move resumes exactly where it stopped. Never
//!   `OFFSET` (which re-reads every skipped row: quadratic).
//! * [`OnlineMove`] (online mode, as pg-osc and pgroll do it): a trigger captures the keys
//!   of rows inserted, updated or deleted on the source into a change-log table while the
//!   backfill runs; the log is replayed until it is short; then one transaction takes the
//!   lock, applies the last changes and swaps the names ([`SwapStats`] says how long the lock
//!   was held).
//! * [`swap_names`]: the rename switchover (views re-pointed) used by both, and its undo.
//! * Verification: [`compare_tables`] (counts, anti-joins both ways, a content hash).

use std::time::{Duration, Instant};

use etl_core::{CancellationToken, Progress, SizeHint};
use sqlx::{Connection, PgConnection};

use etl_postgres::catalog::{self, Scope};

use crate::ident::{TableName, fit_name, quote_ident};
use crate::{Error, Result};

/// Default name of the checkpoint table.
pub const CHECKPOINTS: &str = "ferry_move_checkpoints";

/// A keyset-paginated, checkpointed copy of `source` into `target`.
#[derive(Debug, Clone)]
pub struct KeysetMove {
    /// Checkpoint name (unique per move).
    pub name: String,
    /// Where rows come from.
    pub source: TableName,
    /// Where rows go.
    pub target: TableName,
    /// Keyset columns: unique together, ideally indexed in this order on the source.
    pub key: Vec<String>,
    /// Columns copied; `None` means every insertable target column that the source has.
    pub columns: Option<Vec<String>>,
    /// Rows per batch (and per transaction).
    pub batch_size: i64,
    /// Pause between batches (gives other sessions room, as the seed's `pg_sleep(0.1)`).
    pub pause: Duration,
    /// The checkpoint table.
    pub checkpoints: TableName,
}

/// The saved position of a move.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Checkpoint {
    /// The last key copied (as text, in key order); `None` before the first batch.
    pub last_key: Option<Vec<String>>,
    /// Rows copied so far.
    pub rows: i64,
    /// Batches committed so far.
    pub batches: i64,
    /// Whether the last batch came back short (the source was exhausted).
    pub done: bool,
}

/// What one call of [`KeysetMove::run`] did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct MoveStats {
    /// Rows copied by this call.
    pub rows: u64,
    /// Rows copied in total, earlier attempts included.
    pub total_rows: u64,
    /// Batches committed by this call.
    pub batches: u64,
    /// Wall seconds of this call.
    pub seconds: f64,
    /// The key this call started after (a resumed move), if any.
    pub resumed_after: Option<Vec<String>>,
    /// The longest batch transaction, in milliseconds.
    pub max_batch_ms: f64,
}

impl KeysetMove {
    /// A move of every row, ordered by `key`, 50,000 rows per batch, no pause.
    pub fn new(
        name: impl Into<String>,
        source: TableName,
        target: TableName,
        key: &[&str],
    ) -> Self {
        KeysetMove {
            name: name.into(),
            source,
            target,
            key: key.iter().map(|s| (*s).to_owned()).collect(),
            columns: None,
            batch_size: 50_000,
            pause: Duration::ZERO,
            checkpoints: TableName::new(CHECKPOINTS),
        }
    }

    /// Create the checkpoint table if missing.
    pub async fn ensure_checkpoints(&self, conn: &mut PgConnection) -> Result<()> {
        sqlx::query(sqlf!(
            "CREATE TABLE IF NOT EXISTS {} (
                move_name text PRIMARY KEY,
                last_key text[],
                rows_moved bigint NOT NULL DEFAULT 0,
                batches bigint NOT NULL DEFAULT 0,
                done boolean NOT NULL DEFAULT false,
                updated_at timestamptz NOT NULL DEFAULT now())",
            self.checkpoints.sql()
        ))
        .execute(conn)
        .await?;
        Ok(())
    }

    /// The saved position, if the move has started.
    pub async fn checkpoint(&self, conn: &mut PgConnection) -> Result<Option<Checkpoint>> {
        if !catalog::exists(conn, &self.checkpoints).await? {
            return Ok(None);
        }
        let row: Option<(Option<Vec<String>>, i64, i64, bool)> = sqlx::query_as(sqlf!(
            "SELECT last_key, rows_moved, batches, done FROM {} WHERE move_name = $1",
            self.checkpoints.sql()
        ))
        .bind(&self.name)
        .fetch_optional(conn)
        .await?;
        Ok(row.map(|(last_key, rows, batches, done)| Checkpoint {
            last_key,
            rows,
            batches,
            done,
        }))
    }

    /// Forget the saved position (the next run starts from the beginning).
    pub async fn reset(&self, conn: &mut PgConnection) -> Result<()> {
        if catalog::exists(conn, &self.checkpoints).await? {
            sqlx::query(sqlf!(
                "DELETE FROM {} WHERE move_name = $1",
                self.checkpoints.sql()
            ))
            .bind(&self.name)
            .execute(conn)
            .await?;
        }
        Ok(())
    }

    /// The columns copied: the given list, or the target's insertable columns that the
    /// source also has (in target order).
    pub async fn resolve_columns(&self, conn: &mut PgConnection) -> Result<Vec<String>> {
        if let Some(c) = &self.columns {
            return Ok(c.clone());
        }
        let src = columns(conn, &self.source).await?;
        let tgt = columns(conn, &self.target).await?;
        if tgt.is_empty() {
            return Err(Error::NoSuchTable(self.target.to_string()));
        }
        if src.is_empty() {
            return Err(Error::NoSuchTable(self.source.to_string()));
        }
        let cols: Vec<String> = tgt
            .into_iter()
            .filter(|(n, _)| src.iter().any(|(s, _)| s == n))
            .map(|(n, _)| n)
            .collect();
        for k in &self.key {
            if !cols.contains(k) {
                return Err(Error::Mapping(format!(
                    "move `{}`: key column `{k}` is not a column of both {} and {}",
                    self.name, self.source, self.target
                )));
            }
        }
        Ok(cols)
    }

    /// The two statements of one batch (see [`BatchSql`]); `first` for the batch with no
    /// lower bound.
    pub async fn batch_sql(&self, conn: &mut PgConnection, first: bool) -> Result<BatchSql> {
        let cols = self.resolve_columns(conn).await?;
        let types = columns(conn, &self.source).await?;
        let type_of = |c: &str| {
            types
                .iter()
                .find(|(n, _)| n == c)
                .map(|(_, t)| t.clone())
                .unwrap_or_else(|| "text".into())
        };
        Ok(keyset_sql(
            &self.source,
            &self.target,
            &cols,
            &self.key,
            &self.key.iter().map(|k| type_of(k)).collect::<Vec<_>>(),
            first,
        ))
    }

    /// Copy the rows after the checkpoint, batch by batch, each batch committed with its
    /// checkpoint. A finished move returns at once; `continue_done` makes it look again
    /// for rows added after the key it stopped at (a catch-up).
    ///
    /// # Errors
    /// [`Error::State`] when `cancel` fires (the committed batches stay; run again to
    /// continue), or the database's error.
    pub async fn run(
        &self,
        conn: &mut PgConnection,
        progress: &Progress,
        cancel: &CancellationToken,
        continue_done: bool,
    ) -> Result<MoveStats> {
        let t0 = Instant::now();
        self.ensure_checkpoints(conn).await?;
        let cp = self.checkpoint(conn).await?;
        let mut stats = MoveStats {
            resumed_after: cp.as_ref().and_then(|c| c.last_key.clone()),
            total_rows: cp.as_ref().map_or(0, |c| c.rows as u64),
            ..MoveStats::default()
        };
        if cp.as_ref().is_some_and(|c| c.done) && !continue_done {
            return Ok(stats);
        }
        // The window's size depends on the bounds: plan each batch with its values (a
        // generic plan guesses the range's selectivity and OFFSET's size).
        sqlx::query("SET plan_cache_mode = force_custom_plan")
            .execute(&mut *conn)
            .await?;
        let first_sql = self.batch_sql(conn, true).await?;
        let next_sql = self.batch_sql(conn, false).await?;
        let estimate = estimate_rows(conn, &self.source).await?;
        let bar = progress.unit(&self.name, Some(SizeHint::Rows(estimate.max(0) as u64)));
        bar.advance(stats.total_rows, stats.total_rows);
        let mut last = cp.and_then(|c| c.last_key);
        loop {
            if cancel.is_cancelled() {
                bar.finish();
                return Err(Error::State(format!(
                    "move `{}` cancelled after {} rows; committed batches are kept, run again (--resume) to continue",
                    self.name, stats.total_rows
                )));
            }
            let tb = Instant::now();
            let mut tx = conn.begin().await?;
            let sql = if last.is_none() {
                &first_sql
            } else {
                &next_sql
            };
            let end: Option<(Vec<String>,)> = {
                let q = sqlx::query_as(sqlx::AssertSqlSafe(sql.window_end.clone()));
                let q = match &last {
                    Some(k) => q.bind(k),
                    None => q,
                };
                q.bind(self.batch_size).fetch_optional(&mut *tx).await?
            };
            let done = end.is_none();
            let key = match end {
                Some((k,)) => Some(k),
                None => {
                    let q = sqlx::query_as::<_, (Vec<String>,)>(sqlx::AssertSqlSafe(
                        sql.last_key.clone(),
                    ));
                    let q = match &last {
                        Some(k) => q.bind(k),
                        None => q,
                    };
                    q.fetch_optional(&mut *tx).await?.map(|(k,)| k)
                }
            };
            let n = match &key {
                None => 0,
                Some(hi) => {
                    let q = sqlx::query(sqlx::AssertSqlSafe(sql.insert.clone()));
                    let q = match &last {
                        Some(lo) => q.bind(lo),
                        None => q,
                    };
                    q.bind(hi).execute(&mut *tx).await?.rows_affected() as i64
                }
            };
            let new_last = key.or_else(|| last.clone());
            sqlx::query(sqlf!(
                "INSERT INTO {t} AS c (move_name, last_key, rows_moved, batches, done, updated_at)
                 VALUES ($1, $2, $3, 1, $4, now())
                 ON CONFLICT (move_name) DO UPDATE SET last_key = EXCLUDED.last_key,
                    rows_moved = c.rows_moved + EXCLUDED.rows_moved, batches = c.batches + 1,
                    done = EXCLUDED.done, updated_at = now()",
                t = self.checkpoints.sql()
            ))
            .bind(&self.name)
            .bind(&new_last)
            .bind(n)
            .bind(done)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            stats.max_batch_ms = stats.max_batch_ms.max(tb.elapsed().as_secs_f64() * 1e3);
            stats.rows += n as u64;
            stats.total_rows += n as u64;
            stats.batches += 1;
            bar.advance(n as u64, stats.total_rows);
            last = new_last;
            if done {
                break;
            }
            if !self.pause.is_zero() {
                tokio::time::sleep(self.pause).await;
            }
        }
        bar.finish();
        stats.seconds = t0.elapsed().as_secs_f64();
        tracing::debug!(name = %self.name, rows = stats.rows, batches = stats.batches, "keyset move done");
        Ok(stats)
    }
}

/// The statements of a keyset batch, run in one transaction with the checkpoint.
///
/// The window after the last key copied (`$1`, as `text[]`; no lower bound for the first
/// batch) ends at the batch-size-th key (`window_end`: an index-only seek inside the
/// window, never a scan of the rows before it), or, when fewer keys remain, at the last
/// key (`last_key`). `insert` then copies the window `(last, end]` with one
/// `INSERT ... SELECT` over a key range: the cost of a batch does not grow with the rows
/// already moved (the seed's `LIMIT/OFFSET` loop re-reads them all: quadratic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSql {
    /// The batch-size-th key after the last one (parameters: last key, batch size).
    pub window_end: String,
    /// The largest key after the last one (parameter: last key).
    pub last_key: String,
    /// Copy the window (parameters: last key, window end; only the end for the first batch).
    pub insert: String,
}

fn keyset_sql(
    source: &TableName,
    target: &TableName,
    cols: &[String],
    key: &[String],
    key_types: &[String],
    first: bool,
) -> BatchSql {
    let list = cols
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let keys = key.iter().map(|c| quote_ident(c)).collect::<Vec<_>>();
    let asc = keys.join(", ");
    let desc = keys
        .iter()
        .map(|k| format!("{k} DESC"))
        .collect::<Vec<_>>()
        .join(", ");
    let key_text = keys
        .iter()
        .map(|k| format!("{k}::text"))
        .collect::<Vec<_>>()
        .join(", ");
    let param = |n: usize| {
        key_types
            .iter()
            .enumerate()
            .map(|(i, t)| format!("(${n}::text[])[{}]::{t}", i + 1))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (after, size, end) = if first {
        (
            "TRUE".to_owned(),
            "$1",
            format!("({asc}) <= ({})", param(1)),
        )
    } else {
        let after = format!("({asc}) > ({})", param(1));
        let end = format!("{after} AND ({asc}) <= ({})", param(2));
        (after, "$2", end)
    };
    let src = source.sql();
    BatchSql {
        // OFFSET here skips at most one batch of index entries after the keyset seek.
        window_end: format!(
            "SELECT ARRAY[{key_text}] FROM {src} WHERE {after} ORDER BY {asc} OFFSET {size} - 1 LIMIT 1"
        ),
        last_key: format!(
            "SELECT ARRAY[{key_text}] FROM {src} WHERE {after} ORDER BY {desc} LIMIT 1"
        ),
        insert: format!(
            "INSERT INTO {tgt} ({list}) SELECT {list} FROM {src} WHERE {end}",
            tgt = target.sql()
        ),
    }
}

/// `(name, type)` of the insertable (not generated, not dropped) columns of a table, in
/// order; empty when the table does not exist.
pub async fn columns(conn: &mut PgConnection, table: &TableName) -> Result<Vec<(String, String)>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
          WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
          ORDER BY attnum",
    )
    .bind(table.sql())
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// The planner's row estimate of a table (cheap; for progress bars).
pub async fn estimate_rows(conn: &mut PgConnection, table: &TableName) -> Result<i64> {
    let (n,): (Option<f32>,) = sqlx::query_as(
        "SELECT CASE WHEN c.relkind = 'p' THEN (SELECT sum(greatest(k.reltuples, 0))::real FROM pg_inherits i JOIN pg_class k ON k.oid = i.inhrelid WHERE i.inhparent = c.oid)
                     ELSE greatest(c.reltuples, 0) END
           FROM pg_class c WHERE c.oid = to_regclass($1)",
    )
    .bind(table.sql())
    .fetch_optional(conn)
    .await?
    .unwrap_or((None,));
    Ok(n.unwrap_or(0.0) as i64)
}

/// An online move: change capture on the source, keyset backfill, replay, then a short
/// lock to apply the last changes and swap the names.
#[derive(Debug, Clone)]
pub struct OnlineMove {
    /// The backfill (its source is the live table, its target the new one).
    pub backfill: KeysetMove,
    /// The source's primary key column (one column), used to replay changes.
    pub pk: String,
    /// The change-log table (`<source>_ferry_log`).
    pub log: TableName,
    /// Changes applied per replay transaction.
    pub replay_chunk: i64,
    /// Replay until at most this many changes are waiting, then swap.
    pub swap_backlog: i64,
    /// How long the swap waits for its lock (a PostgreSQL interval, `2s`).
    pub lock_timeout: String,
    /// Lock attempts before giving up.
    pub lock_attempts: u32,
}

/// What the replay did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ReplayStats {
    /// Change-log entries consumed.
    pub changes: u64,
    /// Distinct keys re-copied.
    pub keys: u64,
    /// Replay transactions.
    pub rounds: u64,
}

/// What a swap did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SwapStats {
    /// Milliseconds spent waiting for the lock.
    pub lock_wait_ms: f64,
    /// Milliseconds the lock was held (lock acquired to commit).
    pub lock_held_ms: f64,
    /// Changes applied under the lock.
    pub final_changes: u64,
    /// Views re-pointed at the new table.
    pub views: Vec<String>,
    /// Foreign keys of other tables re-pointed at the new table (`NOT VALID`).
    pub foreign_keys: Vec<String>,
    /// Lock attempts used.
    pub attempts: u32,
}

/// Everything an online move did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct OnlineStats {
    /// The backfill.
    pub backfill: MoveStats,
    /// The replay before the swap.
    pub replay: ReplayStats,
    /// The swap.
    pub swap: SwapStats,
}

impl OnlineMove {
    /// An online move of `backfill.source` into `backfill.target` replaying by `pk`.
    pub fn new(backfill: KeysetMove, pk: &str) -> Self {
        OnlineMove {
            log: backfill.source.suffixed("_ferry_log"),
            backfill,
            pk: pk.to_owned(),
            replay_chunk: 10_000,
            swap_backlog: 200,
            lock_timeout: "2s".into(),
            lock_attempts: 5,
        }
    }

    fn function(&self) -> TableName {
        self.backfill.source.suffixed("_ferry_capture")
    }

    fn trigger(&self) -> String {
        fit_name(&self.backfill.source.name, "_ferry_capture")
    }

    /// The statements installing the change capture.
    pub async fn capture_sql(&self, conn: &mut PgConnection) -> Result<Vec<String>> {
        let cols = columns(conn, &self.backfill.source).await?;
        let pk_type = cols
            .iter()
            .find(|(n, _)| *n == self.pk)
            .map(|(_, t)| t.clone())
            .ok_or_else(|| {
                Error::Mapping(format!(
                    "online move: `{}` has no column `{}` to replay by",
                    self.backfill.source, self.pk
                ))
            })?;
        let pk = quote_ident(&self.pk);
        let log = self.log.sql();
        Ok(vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {log} (seq bigserial PRIMARY KEY, pk {pk_type} NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())"
            ),
            format!(
                "CREATE OR REPLACE FUNCTION {f}() RETURNS trigger LANGUAGE plpgsql AS $ferry$
BEGIN
  IF TG_OP = 'UPDATE' AND OLD.{pk} IS NOT DISTINCT FROM NEW.{pk} THEN
    INSERT INTO {log} (pk) VALUES (NEW.{pk});
  ELSE
    IF TG_OP <> 'INSERT' THEN INSERT INTO {log} (pk) VALUES (OLD.{pk}); END IF;
    IF TG_OP <> 'DELETE' THEN INSERT INTO {log} (pk) VALUES (NEW.{pk}); END IF;
  END IF;
  RETURN NULL;
END $ferry$",
                f = self.function().sql()
            ),
            format!(
                "DROP TRIGGER IF EXISTS {t} ON {src}",
                t = quote_ident(&self.trigger()),
                src = self.backfill.source.sql()
            ),
            format!(
                "CREATE TRIGGER {t} AFTER INSERT OR UPDATE OR DELETE ON {src} FOR EACH ROW EXECUTE FUNCTION {f}()",
                t = quote_ident(&self.trigger()),
                src = self.backfill.source.sql(),
                f = self.function().sql()
            ),
        ])
    }

    /// Install the change capture (idempotent; one transaction). Must happen before the
    /// backfill starts: `CREATE TRIGGER` waits for the writers in flight, so every later
    /// change is logged.
    pub async fn install_capture(&self, conn: &mut PgConnection) -> Result<()> {
        let sqls = self.capture_sql(conn).await?;
        let mut tx = conn.begin().await?;
        for s in sqls {
            sqlx::query(sqlx::AssertSqlSafe(s))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Drop the trigger (on `on`, the table that has it now), its function and the log.
    pub async fn remove_capture(&self, conn: &mut PgConnection, on: &TableName) -> Result<()> {
        if catalog::exists(conn, on).await? {
            sqlx::query(sqlf!(
                "DROP TRIGGER IF EXISTS {} ON {}",
                quote_ident(&self.trigger()),
                on.sql()
            ))
            .execute(&mut *conn)
            .await?;
        }
        sqlx::query(sqlf!("DROP FUNCTION IF EXISTS {}()", self.function().sql()))
            .execute(&mut *conn)
            .await?;
        sqlx::query(sqlf!("DROP TABLE IF EXISTS {}", self.log.sql()))
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Changes waiting in the log.
    pub async fn backlog(&self, conn: &mut PgConnection) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as(sqlf!("SELECT count(*) FROM {}", self.log.sql()))
            .fetch_one(conn)
            .await?;
        Ok(n)
    }

    /// Apply up to `replay_chunk` logged changes: the entries are consumed and the rows of
    /// their keys re-copied from the source (deleted from the target, inserted again if
    /// they still exist). Uncommitted changes are not visible yet and stay for a later
    /// round. Runs on `conn` as is (inside the caller's transaction, if any).
    async fn replay_chunk(&self, conn: &mut PgConnection, cols: &str) -> Result<(u64, u64)> {
        let (entries, keys): (i64, Option<Vec<String>>) = sqlx::query_as(sqlf!(
            "WITH ch AS (DELETE FROM {log} WHERE seq IN (SELECT seq FROM {log} ORDER BY seq LIMIT $1) RETURNING pk)
             SELECT count(*)::bigint, array_agg(DISTINCT pk::text) FROM ch",
            log = self.log.sql()
        ))
        .bind(self.replay_chunk)
        .fetch_one(&mut *conn)
        .await?;
        let keys = keys.unwrap_or_default();
        if keys.is_empty() {
            return Ok((entries as u64, 0));
        }
        let pk = quote_ident(&self.pk);
        let (pk_type,): (String,) = sqlx::query_as(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = $2",
        )
        .bind(self.backfill.source.sql())
        .bind(&self.pk)
        .fetch_one(&mut *conn)
        .await?;
        sqlx::query(sqlf!(
            "DELETE FROM {} WHERE {pk} = ANY($1::text[]::{pk_type}[])",
            self.backfill.target.sql()
        ))
        .bind(&keys)
        .execute(&mut *conn)
        .await?;
        sqlx::query(sqlf!(
            "INSERT INTO {} ({cols}) SELECT {cols} FROM {} WHERE {pk} = ANY($1::text[]::{pk_type}[])",
            self.backfill.target.sql(),
            self.backfill.source.sql()
        ))
        .bind(&keys)
        .execute(&mut *conn)
        .await?;
        Ok((entries as u64, keys.len() as u64))
    }

    /// Replay the log, one transaction per chunk, until at most `until_backlog` changes
    /// wait.
    pub async fn replay(&self, conn: &mut PgConnection, until_backlog: i64) -> Result<ReplayStats> {
        let cols = self.column_list(conn).await?;
        let mut st = ReplayStats::default();
        loop {
            let mut tx = conn.begin().await?;
            let (e, k) = self.replay_chunk(&mut tx, &cols).await?;
            tx.commit().await?;
            st.changes += e;
            st.keys += k;
            st.rounds += 1;
            if e == 0 || self.backlog(conn).await? <= until_backlog {
                break;
            }
        }
        Ok(st)
    }

    async fn column_list(&self, conn: &mut PgConnection) -> Result<String> {
        Ok(self
            .backfill
            .resolve_columns(conn)
            .await?
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", "))
    }

    /// Take the lock on the source, apply every remaining change and swap: the source
    /// becomes `old_name`, the target takes the source's name, views follow, the capture
    /// trigger is dropped — one transaction. Retried `lock_attempts` times when the lock
    /// is not granted within `lock_timeout`.
    pub async fn swap(&self, conn: &mut PgConnection, old_name: &str) -> Result<SwapStats> {
        let cols = self.column_list(conn).await?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_swap(conn, old_name, &cols).await {
                Ok(mut s) => {
                    s.attempts = attempt;
                    return Ok(s);
                }
                Err(Error::Sql(e))
                    if catalog::is_lock_timeout(&e) && attempt < self.lock_attempts =>
                {
                    tracing::warn!(attempt, lock_timeout = %self.lock_timeout, "swap: lock not granted in time; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * attempt as u64)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn try_swap(
        &self,
        conn: &mut PgConnection,
        old_name: &str,
        cols: &str,
    ) -> Result<SwapStats> {
        let src = &self.backfill.source;
        let mut tx = conn.begin().await?;
        catalog::set_lock_timeout(&mut tx, &self.lock_timeout, Scope::Transaction).await?;
        let t0 = Instant::now();
        sqlx::query(sqlf!(
            "LOCK TABLE {}, {} IN ACCESS EXCLUSIVE MODE",
            src.sql(),
            self.backfill.target.sql()
        ))
        .execute(&mut *tx)
        .await?;
        let locked = Instant::now();
        let mut final_changes = 0;
        loop {
            let (e, _) = self.replay_chunk(&mut tx, cols).await?;
            final_changes += e;
            if e == 0 {
                break;
            }
        }
        sqlx::query(sqlf!(
            "DROP TRIGGER IF EXISTS {} ON {}",
            quote_ident(&self.trigger()),
            src.sql()
        ))
        .execute(&mut *tx)
        .await?;
        let (views, foreign_keys) =
            rename_pair(&mut tx, src, &self.backfill.target, old_name).await?;
        tx.commit().await?;
        Ok(SwapStats {
            foreign_keys,
            lock_wait_ms: (locked - t0).as_secs_f64() * 1e3,
            lock_held_ms: locked.elapsed().as_secs_f64() * 1e3,
            final_changes,
            views,
            attempts: 0,
        })
    }

    /// Capture, backfill, replay, swap. Resumable: a killed move continues from the
    /// backfill checkpoint (the capture is already in place).
    pub async fn run(
        &self,
        conn: &mut PgConnection,
        old_name: &str,
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> Result<OnlineStats> {
        self.install_capture(conn).await?;
        let backfill = self.backfill.run(conn, progress, cancel, false).await?;
        let replay = self.replay(conn, self.swap_backlog).await?;
        let swap = self.swap(conn, old_name).await?;
        Ok(OnlineStats {
            backfill,
            replay,
            swap,
        })
    }
}

/// Swap names in one transaction under `lock_timeout`: `live` becomes `old_name`, `new`
/// takes `live`'s name, and the views reading `live` are re-created against `new`. Used
/// by the batch switchover (after a catch-up) and, with the roles reversed, to undo one.
/// Foreign keys of other tables referencing `live` follow it `NOT VALID` (see
/// [`crate::partition::validate_inbound_foreign_keys`]). Returns the views and foreign keys
/// re-pointed and the milliseconds the lock was held.
pub async fn swap_names(
    conn: &mut PgConnection,
    live: &TableName,
    new: &TableName,
    old_name: &str,
    lock_timeout: &str,
) -> Result<(Vec<String>, Vec<String>, f64)> {
    let mut tx = conn.begin().await?;
    catalog::set_lock_timeout(&mut tx, lock_timeout, Scope::Transaction).await?;
    sqlx::query(sqlf!(
        "LOCK TABLE {}, {} IN ACCESS EXCLUSIVE MODE",
        live.sql(),
        new.sql()
    ))
    .execute(&mut *tx)
    .await?;
    let t = Instant::now();
    let (views, fks) = rename_pair(&mut tx, live, new, old_name).await?;
    tx.commit().await?;
    Ok((views, fks, t.elapsed().as_secs_f64() * 1e3))
}

/// `live` -> `old_name`, `new` -> `live`, views re-pointed, and the foreign keys of other
/// tables that referenced `live` re-pointed at the table now named `live` (`new`):
/// dropped and added again `NOT VALID` (no scan; `ACCESS EXCLUSIVE` on the referencing
/// table, `SHARE ROW EXCLUSIVE` on the referenced one, for the rest of the transaction),
/// to be validated after the commit
/// ([`validate_inbound_foreign_keys`](crate::partition::validate_inbound_foreign_keys)).
/// Inside the caller's transaction. Returns the views and the foreign keys re-pointed.
async fn rename_pair(
    conn: &mut PgConnection,
    live: &TableName,
    new: &TableName,
    old_name: &str,
) -> Result<(Vec<String>, Vec<String>)> {
    let views = catalog::dependent_views(&mut *conn, live).await?;
    let inbound = crate::partition::inbound_foreign_keys(&mut *conn, live).await?;
    sqlx::query(sqlf!(
        "ALTER TABLE {} RENAME TO {}",
        live.sql(),
        quote_ident(old_name)
    ))
    .execute(&mut *conn)
    .await?;
    sqlx::query(sqlf!(
        "ALTER TABLE {} RENAME TO {}",
        new.sql(),
        quote_ident(&live.name)
    ))
    .execute(&mut *conn)
    .await?;
    catalog::recreate_views(&mut *conn, &views).await?;
    let mut fks = Vec::new();
    for fk in &inbound {
        // The definition names `live`, which is the replacement now.
        let def = fk.definition.trim_end_matches(" NOT VALID");
        let name = quote_ident(&fk.name);
        sqlx::query(sqlf!("ALTER TABLE {} DROP CONSTRAINT {name}", fk.table))
            .execute(&mut *conn)
            .await?;
        let add = sqlx::query(sqlf!(
            "ALTER TABLE {} ADD CONSTRAINT {name} {def} NOT VALID",
            fk.table
        ))
        .execute(&mut *conn)
        .await;
        if let Err(e) = add {
            return Err(Error::State(format!(
                "cannot re-point foreign key {} of {} ({def}) at the new {live}: {e} — a partitioned table can be referenced only through a unique key that includes its partition key; nothing was swapped",
                fk.name, fk.table
            )));
        }
        fks.push(format!("{}.{}", fk.table, fk.name));
    }
    Ok((views.into_iter().map(|(n, _)| n).collect(), fks))
}

/// Two tables compared: counts, rows missing on either side (by key), content hashes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableComparison {
    /// Rows in the reference (old) table.
    pub old_rows: i64,
    /// Rows in the new table.
    pub new_rows: i64,
    /// Keys of the old table absent from the new one.
    pub missing: i64,
    /// Keys of the new table absent from the old one.
    pub extra: i64,
    /// Content hash of the old table over the compared columns.
    pub old_hash: String,
    /// Content hash of the new table.
    pub new_hash: String,
}

impl TableComparison {
    /// Same rows, same content.
    pub fn equal(&self) -> bool {
        self.old_rows == self.new_rows
            && self.missing == 0
            && self.extra == 0
            && self.old_hash == self.new_hash
    }
}

/// An order-independent hash of a table's rows over `columns`: the sums of two 60-bit
/// slices of each row's md5, with the row count. Equal multisets of rows give equal hashes.
pub async fn table_hash(
    conn: &mut PgConnection,
    table: &TableName,
    columns: &[String],
) -> Result<String> {
    let row = columns
        .iter()
        .map(|c| format!("t.{}", quote_ident(c)))
        .collect::<Vec<_>>()
        .join(", ");
    let (h,): (String,) = sqlx::query_as(sqlf!(
        "SELECT count(*)::text || ':' ||
                coalesce(sum(('x' || substr(h, 1, 15))::bit(60)::bigint::numeric), 0)::text || ':' ||
                coalesce(sum(('x' || substr(h, 16, 15))::bit(60)::bigint::numeric), 0)::text
           FROM (SELECT md5(ROW({row})::text) AS h FROM {} t) x",
        table.sql()
    ))
    .fetch_one(conn)
    .await?;
    Ok(h)
}

/// Compare `old` and `new` by `key` (anti-joins both ways) and by content over `columns`
/// (every column of `new` that `old` has, when empty).
pub async fn compare_tables(
    conn: &mut PgConnection,
    old: &TableName,
    new: &TableName,
    key: &[&str],
    columns: &[String],
) -> Result<TableComparison> {
    let cols: Vec<String> = if columns.is_empty() {
        let o = self::columns(conn, old).await?;
        self::columns(conn, new)
            .await?
            .into_iter()
            .filter(|(n, _)| o.iter().any(|(x, _)| x == n))
            .map(|(n, _)| n)
            .collect()
    } else {
        columns.to_vec()
    };
    let on = key
        .iter()
        .map(|k| format!("b.{q} = a.{q}", q = quote_ident(k)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let anti = |a: &TableName, b: &TableName| {
        format!(
            "SELECT count(*) FROM {} a WHERE NOT EXISTS (SELECT 1 FROM {} b WHERE {on})",
            a.sql(),
            b.sql()
        )
    };
    let (missing,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(anti(old, new)))
        .fetch_one(&mut *conn)
        .await?;
    let (extra,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(anti(new, old)))
        .fetch_one(&mut *conn)
        .await?;
    let old_rows = catalog::count_rows(conn, old).await?;
    let new_rows = catalog::count_rows(conn, new).await?;
    let old_hash = table_hash(conn, old, &cols).await?;
    let new_hash = table_hash(conn, new, &cols).await?;
    Ok(TableComparison {
        old_rows,
        new_rows,
        missing,
        extra,
        old_hash,
        new_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyset_sql_pages_by_key_never_offset() {
        let cols = vec!["id".to_owned(), "created_at".to_owned(), "x\"y".to_owned()];
        let key = vec!["created_at".to_owned(), "id".to_owned()];
        let types = vec!["timestamp with time zone".to_owned(), "uuid".to_owned()];
        let s = TableName::new("src");
        let t = TableName::new("dst");
        let first = keyset_sql(&s, &t, &cols, &key, &types, true);
        assert!(
            first
                .window_end
                .contains("WHERE TRUE ORDER BY \"created_at\", \"id\" OFFSET $1 - 1 LIMIT 1"),
            "{first:?}"
        );
        assert!(first.insert.ends_with(
            "WHERE (\"created_at\", \"id\") <= (($1::text[])[1]::timestamp with time zone, ($1::text[])[2]::uuid)"
        ), "{first:?}");
        let next = keyset_sql(&s, &t, &cols, &key, &types, false);
        let seek = "WHERE (\"created_at\", \"id\") > (($1::text[])[1]::timestamp with time zone, ($1::text[])[2]::uuid)";
        assert!(
            next.window_end.contains(seek) && next.window_end.ends_with("OFFSET $2 - 1 LIMIT 1"),
            "{next:?}"
        );
        assert!(
            next.last_key.contains(seek)
                && next
                    .last_key
                    .ends_with("ORDER BY \"created_at\" DESC, \"id\" DESC LIMIT 1")
        );
        assert!(
            next.insert
                .starts_with("INSERT INTO \"dst\" (\"id\", \"created_at\", \"x\"\"y\") SELECT")
        );
        assert!(next.insert.contains(seek) && next.insert.contains("<= (($2::text[])[1]"));
        // The rows are never paged by OFFSET: only the index seek inside one window is.
        assert!(
            !next.insert.to_uppercase().contains("OFFSET")
                && !first.insert.to_uppercase().contains("OFFSET")
        );
    }
}
