//! Staging tables and the atomic switchover: build the new data beside production,
//! swap names in one transaction, roll back by swapping again, clean up later.

use sqlx::{Connection, PgConnection};

use etl_postgres::catalog::{self, Scope};

use crate::ident::{TableName, fit_name, quote_ident};
use crate::{Error, Result};

/// Suffix of index and constraint names on the staging table.
pub const STAGING_SUFFIX: &str = "_stg";
/// Suffix of index and constraint names on the old table after a switchover.
pub const OLD_SUFFIX: &str = "_old";

/// The three tables of a full replacement: `live`, its `staging` twin, and `old` (the
/// previous live table, kept after the switchover until cleanup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagingTable {
    /// The production table (`cites_trade_records`).
    pub live: TableName,
    /// Where the new data is loaded (`cites_trade_records_staging`).
    pub staging: TableName,
    /// Where the previous production data goes (`cites_trade_records_old`).
    pub old: TableName,
}

/// Where the tables stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableStates {
    /// The live table exists.
    pub live: bool,
    /// The staging table exists.
    pub staging: bool,
    /// The old table exists.
    pub old: bool,
}

impl StagingTable {
    /// `live`, `live_staging`, `live_old`.
    pub fn for_live(live: TableName) -> Self {
        StagingTable {
            staging: live.suffixed("_staging"),
            old: live.suffixed("_old"),
            live,
        }
    }

    /// Which of the three tables exist.
    pub async fn states(&self, conn: &mut PgConnection) -> Result<TableStates> {
        Ok(TableStates {
            live: exists(conn, &self.live).await?,
            staging: exists(conn, &self.staging).await?,
            old: exists(conn, &self.old).await?,
        })
    }

    /// Drop and recreate the staging table like the live one: columns, defaults, NOT
    /// NULL and CHECK constraints, identity, generated columns, storage and comments — but
    /// no indexes, keys or foreign keys, which [`StagingTable::build_indexes`] adds after
    /// the load (bulk loads into an unindexed table are several times faster).
    pub async fn create(&self, conn: &mut PgConnection) -> Result<()> {
        if !exists(conn, &self.live).await? {
            return Err(Error::NoSuchTable(self.live.to_string()));
        }
        sqlx::query(sqlf!("DROP TABLE IF EXISTS {}", self.staging.sql()))
            .execute(&mut *conn)
            .await?;
        sqlx::query(sqlf!(
            "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED
             INCLUDING IDENTITY INCLUDING STORAGE INCLUDING COMMENTS)",
            self.staging.sql(),
            self.live.sql()
        ))
        .execute(&mut *conn)
        .await?;
        // No autovacuum while the bulk load runs: it would vacuum and analyze the table
        // after every committed unit, competing with the load; `build_indexes` turns it
        // back on and the loader runs ANALYZE once at the end.
        sqlx::query(sqlf!(
            "ALTER TABLE {} SET (autovacuum_enabled = false, toast.autovacuum_enabled = false)",
            self.staging.sql()
        ))
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Give the staging table the live table's indexes, primary/unique keys and foreign
    /// keys (named `<live name>_stg`). Idempotent: what exists already is skipped.
    /// Foreign keys are added `NOT VALID` and then validated.
    pub async fn build_indexes(&self, conn: &mut PgConnection) -> Result<Vec<String>> {
        sqlx::query(sqlf!(
            "ALTER TABLE {} RESET (autovacuum_enabled, toast.autovacuum_enabled)",
            self.staging.sql()
        ))
        .execute(&mut *conn)
        .await?;
        let mut built = Vec::new();
        let existing: Vec<String> = object_names(conn, &self.staging).await?;
        for ix in live_indexes(conn, &self.live).await? {
            let name = fit_name(&ix.name, STAGING_SUFFIX);
            if existing.contains(&name) {
                continue;
            }
            let sql = match (&ix.constraint_def, ix.constraint_kind.as_deref()) {
                (Some(def), Some("p" | "u" | "x")) => format!(
                    "ALTER TABLE {} ADD CONSTRAINT {} {def}",
                    self.staging.sql(),
                    quote_ident(&name)
                ),
                _ => {
                    let (_, rest) = ix.index_def.split_once(" USING ").ok_or_else(|| {
                        Error::State(format!("unexpected index definition: {}", ix.index_def))
                    })?;
                    let unique = if ix.index_def.starts_with("CREATE UNIQUE") {
                        "UNIQUE "
                    } else {
                        ""
                    };
                    format!(
                        "CREATE {unique}INDEX {} ON {} USING {rest}",
                        quote_ident(&name),
                        self.staging.sql()
                    )
                }
            };
            tracing::info!(index = %name, "building index on staging");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut *conn)
                .await?;
            built.push(name);
        }
        let fks: Vec<(String, String)> = sqlx::query_as(
            "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint
              WHERE conrelid = to_regclass($1) AND contype = 'f' ORDER BY conname",
        )
        .bind(self.live.sql())
        .fetch_all(&mut *conn)
        .await?;
        for (fk, def) in fks {
            let name = fit_name(&fk, STAGING_SUFFIX);
            if existing.contains(&name) {
                continue;
            }
            sqlx::query(sqlf!(
                "ALTER TABLE {} ADD CONSTRAINT {} {def} NOT VALID",
                self.staging.sql(),
                quote_ident(&name)
            ))
            .execute(&mut *conn)
            .await?;
            sqlx::query(sqlf!(
                "ALTER TABLE {} VALIDATE CONSTRAINT {}",
                self.staging.sql(),
                quote_ident(&name)
            ))
            .execute(&mut *conn)
            .await?;
            built.push(name);
        }
        Ok(built)
    }

    /// Whether a switch has committed and nothing undid it yet: no staging table, and the
    /// old table holds the previous data. A switch step run again after a kill that came
    /// between its commit and the record of it uses this to do nothing.
    pub async fn switched(&self, conn: &mut PgConnection) -> Result<bool> {
        let st = self.states(conn).await?;
        Ok(!st.staging && st.old)
    }

    /// Switch in one transaction: `live` -> `old`, `staging` -> `live`, with index and
    /// constraint names following, and views on the live table re-pointed at the new one.
    ///
    /// # Errors
    /// Refused (nothing changed) when the staging table is missing or `old` still exists
    /// from an earlier switchover (run cleanup first), or when a lock cannot be taken
    /// within `lock_timeout`.
    pub async fn switch(&self, conn: &mut PgConnection, lock_timeout: &str) -> Result<()> {
        let st = self.states(conn).await?;
        if !st.staging {
            return Err(Error::State(format!(
                "cannot switch: staging table `{}` does not exist (load it first)",
                self.staging
            )));
        }
        if st.old {
            return Err(Error::State(format!(
                "cannot switch: `{}` still holds the previous data; run cleanup (--cleanup) or rollback first",
                self.old
            )));
        }
        self.rotate(
            conn,
            lock_timeout,
            st.live,
            (&self.old, OLD_SUFFIX),
            (&self.staging, STAGING_SUFFIX),
        )
        .await
    }

    /// Undo [`StagingTable::switch`] in one transaction: `live` -> `staging`, `old` -> `live`.
    pub async fn rollback(&self, conn: &mut PgConnection, lock_timeout: &str) -> Result<()> {
        let st = self.states(conn).await?;
        if !st.old {
            return Err(Error::State(format!(
                "cannot roll back: `{}` does not exist (no switchover to undo, or it was cleaned up)",
                self.old
            )));
        }
        if st.staging {
            return Err(Error::State(format!(
                "cannot roll back: `{}` exists; drop it or run cleanup first",
                self.staging
            )));
        }
        self.rotate(
            conn,
            lock_timeout,
            st.live,
            (&self.staging, STAGING_SUFFIX),
            (&self.old, OLD_SUFFIX),
        )
        .await
    }

    /// In one transaction: the live table (if any) becomes `out.0` with its index and
    /// constraint names suffixed `out.1`; `incoming.0` becomes live, losing suffix
    /// `incoming.1`; views on the live table are re-pointed at the new one.
    async fn rotate(
        &self,
        conn: &mut PgConnection,
        lock_timeout: &str,
        live_exists: bool,
        out: (&TableName, &str),
        incoming: (&TableName, &str),
    ) -> Result<()> {
        let mut tx = conn.begin().await?;
        catalog::set_lock_timeout(&mut tx, lock_timeout, Scope::Transaction).await?;
        let mut views = Vec::new();
        if live_exists {
            sqlx::query(sqlf!(
                "LOCK TABLE {}, {} IN ACCESS EXCLUSIVE MODE",
                self.live.sql(),
                incoming.0.sql()
            ))
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                if catalog::is_lock_timeout(&e) {
                    Error::State(format!(
                        "could not lock {} within the lock timeout ({lock_timeout}): other sessions are using it; nothing was changed — retry when they are done (--resume), or allow a longer wait",
                        self.live
                    ))
                } else {
                    e.into()
                }
            })?;
            views = catalog::dependent_views(&mut tx, &self.live).await?;
            rename_with_objects(&mut tx, &self.live, &out.0.name, "", out.1).await?;
        }
        rename_with_objects(&mut tx, incoming.0, &self.live.name, incoming.1, "").await?;
        catalog::recreate_views(&mut tx, &views).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Drop the old table (after a switchover) and any leftover staging table.
    pub async fn cleanup(&self, conn: &mut PgConnection) -> Result<Vec<String>> {
        let mut dropped = Vec::new();
        for t in [&self.old, &self.staging] {
            if exists(conn, t).await? {
                sqlx::query(sqlf!("DROP TABLE {}", t.sql()))
                    .execute(&mut *conn)
                    .await?;
                dropped.push(t.to_string());
            }
        }
        Ok(dropped)
    }
}

/// Whether a table exists (see [`etl_postgres::catalog::exists`]).
///
/// # Errors
/// The query fails.
pub async fn exists(conn: &mut PgConnection, table: &TableName) -> Result<bool> {
    Ok(catalog::exists(conn, table).await?)
}

/// Row count of a table, exact (see [`etl_postgres::catalog::count_rows`]).
///
/// # Errors
/// The table does not exist or the query fails.
pub async fn count_rows(conn: &mut PgConnection, table: &TableName) -> Result<i64> {
    Ok(catalog::count_rows(conn, table).await?)
}

/// Copy tables into `<name>_backup_<stamp>` tables (`CREATE TABLE ... AS TABLE ...`);
/// returns the backup names. Missing tables are skipped.
pub async fn backup_tables(
    conn: &mut PgConnection,
    tables: &[TableName],
    stamp: &str,
) -> Result<Vec<(TableName, i64)>> {
    let mut out = Vec::new();
    for t in tables {
        if !exists(conn, t).await? {
            continue;
        }
        let b = t.suffixed(&format!("_backup_{stamp}"));
        sqlx::query(sqlf!("CREATE TABLE {} AS TABLE {}", b.sql(), t.sql()))
            .execute(&mut *conn)
            .await?;
        let n = count_rows(conn, &b).await?;
        out.push((b, n));
    }
    Ok(out)
}

/// `ANALYZE` a table.
pub async fn analyze(conn: &mut PgConnection, table: &TableName) -> Result<()> {
    sqlx::query(sqlf!("ANALYZE {}", table.sql()))
        .execute(conn)
        .await?;
    Ok(())
}

struct LiveIndex {
    name: String,
    index_def: String,
    constraint_kind: Option<String>,
    constraint_def: Option<String>,
}

async fn live_indexes(conn: &mut PgConnection, table: &TableName) -> Result<Vec<LiveIndex>> {
    let rows: Vec<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT i.relname::text, pg_get_indexdef(x.indexrelid), c.contype::text, pg_get_constraintdef(c.oid)
           FROM pg_index x
           JOIN pg_class i ON i.oid = x.indexrelid
           LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.conrelid = x.indrelid
          WHERE x.indrelid = to_regclass($1)
          ORDER BY x.indisprimary DESC, i.relname",
    )
    .bind(table.sql())
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(name, index_def, constraint_kind, constraint_def)| LiveIndex {
                name,
                index_def,
                constraint_kind,
                constraint_def,
            },
        )
        .collect())
}

/// Names of the indexes and constraints of a table.
async fn object_names(conn: &mut PgConnection, table: &TableName) -> Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT i.relname::text FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
          WHERE x.indrelid = to_regclass($1)
         UNION SELECT conname::text FROM pg_constraint WHERE conrelid = to_regclass($1)",
    )
    .bind(table.sql())
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(n,)| n).collect())
}

fn swap_suffix(name: &str, from: &str, to: &str) -> String {
    let base = if from.is_empty() {
        name
    } else {
        name.strip_suffix(from).unwrap_or(name)
    };
    if to.is_empty() {
        base.to_owned()
    } else {
        fit_name(base, to)
    }
}

/// Rename a table to `new_name` and its indexes / constraints from `*from` to `*to`.
async fn rename_with_objects(
    conn: &mut PgConnection,
    table: &TableName,
    new_name: &str,
    from: &str,
    to: &str,
) -> Result<()> {
    // Constraint-backed indexes are renamed through their constraint.
    let cons: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT conname::text, contype::text, conindid <> 0 FROM pg_constraint
          WHERE conrelid = to_regclass($1) AND contype IN ('p', 'u', 'x', 'f')",
    )
    .bind(table.sql())
    .fetch_all(&mut *conn)
    .await?;
    let indexes: Vec<(String,)> = sqlx::query_as(
        "SELECT i.relname::text FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
          WHERE x.indrelid = to_regclass($1)
            AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid AND c.conrelid = x.indrelid)",
    )
    .bind(table.sql())
    .fetch_all(&mut *conn)
    .await?;
    for (name, kind, _) in &cons {
        let new = swap_suffix(name, from, to);
        if kind == "f" && (new == *name) {
            continue;
        }
        if new != *name {
            sqlx::query(sqlf!(
                "ALTER TABLE {} RENAME CONSTRAINT {} TO {}",
                table.sql(),
                quote_ident(name),
                quote_ident(&new)
            ))
            .execute(&mut *conn)
            .await?;
        }
    }
    for (name,) in &indexes {
        let new = swap_suffix(name, from, to);
        if new != *name {
            sqlx::query(sqlf!(
                "ALTER INDEX {} RENAME TO {}",
                table.with_name(name.clone()).sql(),
                quote_ident(&new)
            ))
            .execute(&mut *conn)
            .await?;
        }
    }
    sqlx::query(sqlf!(
        "ALTER TABLE {} RENAME TO {}",
        table.sql(),
        quote_ident(new_name)
    ))
    .execute(&mut *conn)
    .await?;
    Ok(())
}
