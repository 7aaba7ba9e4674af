//! Pre-flight checks before a migration changes tables: table sizes and row counts, the
//! foreign-key dependency list, the sessions holding locks on the tables, and a lock probe
//! that refuses to start when the tables cannot be locked within a `lock_timeout`. The
//! run-layer step is [`crate::steps::preflight`].

use serde::Serialize;
use sqlx::{Connection, PgConnection};

use etl_postgres::catalog::{self, Scope};

use crate::ident::TableName;
use crate::{Error, Result};

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

/// Another session's lock on one of the migration's tables.
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
