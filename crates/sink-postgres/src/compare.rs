//! Staged rows compared column by column with rows derived again from the source: the
//! spot check of a migration ("re-fetch N random things, map them the same way, are they
//! what was staged?") for any source. The fresh rows (text columns, as [`TextInsert`]
//! writes them) go into a temporary table shaped like the staged one, and SQL compares
//! every column on the column types (`IS DISTINCT FROM`: `1.50` equals `1.5`, JSON by
//! value), so a difference is one of content, never of formatting.
//!
//! ```no_run
//! # async fn demo(pool: sqlx::PgPool, fresh: arrow_array::RecordBatch) -> etl_sink_postgres::Result<()> {
//! use etl_sink_postgres::{compare, ident::TableName};
//! let staged = TableName::qualified("stage", "users");
//! let keys = compare::random_keys(&pool, &staged, "source_id", 10).await?;
//! // ... fetch the things of `keys` again and map them into `fresh` ...
//! let mut tx = pool.begin().await?;
//! let (compared, diffs) = compare::diff_rows(&mut tx, &staged, "source_id", &fresh, &[]).await?;
//! for d in &diffs {
//!     println!("{} {}: staged {:?} vs source {:?}", d.key, d.column, d.staged, d.fresh);
//! }
//! tx.rollback().await?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;

use arrow_array::RecordBatch;
use sqlx::{PgConnection, PgPool};

use crate::ident::{TableName, quote_ident, quote_literal};
use crate::upsert::TextInsert;
use crate::{Error, Result};

/// One column of one row in which the staged row and the fresh row differ.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ColumnDiff {
    /// The row's key.
    pub key: String,
    /// The column.
    pub column: String,
    /// The staged value as PostgreSQL prints it (`None`: NULL).
    pub staged: Option<String>,
    /// The fresh value as PostgreSQL prints it (`None`: NULL).
    pub fresh: Option<String>,
}

/// The keys (as text) of up to `n` random rows of `table`.
///
/// # Errors
/// The database's.
pub async fn random_keys(
    pool: &PgPool,
    table: &TableName,
    key: &str,
    n: usize,
) -> Result<Vec<String>> {
    let sql = format!(
        "SELECT {}::text FROM {} ORDER BY random() LIMIT $1",
        quote_ident(key),
        table.sql()
    );
    let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(i64::try_from(n).unwrap_or(i64::MAX))
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Write `fresh` (string columns named as `staged`'s, `key` among them) into a temporary
/// table shaped like `staged`, and compare each of its rows with the staged row of the
/// same `key`, in every column of `fresh` but `key` and `skip`. Returns the rows compared
/// (present on both sides) and the differences, by key then column order. Run it in a
/// transaction: the temporary table is dropped when the transaction ends.
///
/// # Errors
/// The database's; a column of `fresh` the table does not have.
pub async fn diff_rows(
    conn: &mut PgConnection,
    staged: &TableName,
    key: &str,
    fresh: &RecordBatch,
    skip: &[&str],
) -> Result<(u64, Vec<ColumnDiff>)> {
    let tmp = TableName::qualified("pg_temp", format!("ferry_fresh_{}", staged.name));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP TABLE IF EXISTS {tmp}; CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP",
        quote_ident(&tmp.name),
        staged.sql(),
        tmp = tmp.sql(),
    )))
    .execute(&mut *conn)
    .await?;
    let fields: Vec<String> = fresh
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    TextInsert::new(conn, &tmp, &fields, &HashMap::new())
        .await
        .map_err(Error::Mapping)?
        .write(conn, fresh)
        .await
        .map_err(Error::Mapping)?;
    let k = quote_ident(key);
    let from = format!(
        "FROM {} s JOIN {} f ON f.{k} = s.{k}",
        staged.sql(),
        tmp.sql()
    );
    let (count,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT count(*) {from}")))
        .fetch_one(&mut *conn)
        .await?;
    let values: Vec<String> = fields
        .iter()
        .filter(|c| *c != key && !skip.contains(&c.as_str()))
        .enumerate()
        .map(|(i, c)| {
            let q = quote_ident(c);
            format!(
                "({i}, {}, s.{q}::text, f.{q}::text, s.{q} IS DISTINCT FROM f.{q})",
                quote_literal(c)
            )
        })
        .collect();
    if values.is_empty() {
        return Ok((u64::try_from(count).unwrap_or(0), Vec::new()));
    }
    let rows: Vec<(String, String, Option<String>, Option<String>)> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT s.{k}::text, v.col, v.staged, v.fresh {from}
             CROSS JOIN LATERAL (VALUES {}) AS v(ord, col, staged, fresh, differs)
             WHERE v.differs ORDER BY s.{k}, v.ord",
            values.join(", ")
        )))
        .fetch_all(&mut *conn)
        .await?;
    let diffs = rows
        .into_iter()
        .map(|(key, column, staged, fresh)| ColumnDiff {
            key,
            column,
            staged,
            fresh,
        })
        .collect();
    Ok((u64::try_from(count).unwrap_or(0), diffs))
}
