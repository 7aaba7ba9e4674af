//! Catalog helpers shared by staging, partition, move and check code.

use sqlx::PgConnection;

use crate::ident::{TableName, quote_literal};
use crate::types::{PgColumn, PgType};

/// A column of an existing table, as `pg_attribute` and `pg_type` describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogColumn {
    /// Column name.
    pub name: String,
    /// OID of its type.
    pub type_oid: u32,
    /// `pg_type.typname` (`int4`, `_text`, `citext`, an enum's name).
    pub type_name: String,
    /// `atttypmod` (`-1` when the type has no modifier); see
    /// [`crate::types::numeric_precision_scale`].
    pub typmod: i32,
    /// `format_type()` text, for messages and casts (`numeric(10,2)`).
    pub type_text: String,
    /// `NOT NULL`.
    pub not_null: bool,
    /// Has a default (so it may be left out of a COPY).
    pub has_default: bool,
    /// An enum type (`typtype = 'e'`).
    pub is_enum: bool,
    /// The base type's OID when the type is a domain.
    pub domain_base: Option<u32>,
}

impl CatalogColumn {
    /// The type ferry writes to this column in binary form: enums take their label
    /// ([`PgType::Text`]), domains their base type, other types their own;
    /// `None` if ferry does not handle it.
    pub fn write_type(&self) -> Option<PgType> {
        if self.is_enum {
            Some(PgType::Text)
        } else if let Some(base) = self.domain_base {
            PgType::from_oid(base)
        } else {
            PgType::from_oid(self.type_oid)
        }
    }

    /// The sink's view of this column.
    pub fn to_pg_column(&self) -> PgColumn {
        PgColumn {
            name: self.name.clone(),
            pg_type: self.write_type(),
            type_text: self.type_text.clone(),
            not_null: self.not_null,
            has_default: self.has_default,
        }
    }
}

/// The columns of `table`, in order; empty when the table does not exist.
///
/// # Errors
/// The catalog query fails.
pub async fn table_columns(
    conn: &mut PgConnection,
    table: &TableName,
) -> sqlx::Result<Vec<CatalogColumn>> {
    type Row = (String, i32, String, i32, String, bool, bool, String, i32);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT a.attname::text, a.atttypid::int4, t.typname::text, a.atttypmod,
                format_type(a.atttypid, a.atttypmod), a.attnotnull, a.atthasdef,
                t.typtype::text, t.typbasetype::int4
           FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
          WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
          ORDER BY a.attnum",
    )
    .bind(table.sql())
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(name, oid, type_name, typmod, type_text, not_null, has_default, typtype, base)| {
                CatalogColumn {
                    name,
                    type_oid: oid as u32,
                    type_name,
                    typmod,
                    type_text,
                    not_null,
                    has_default,
                    is_enum: typtype == "e",
                    domain_base: (typtype == "d").then_some(base as u32),
                }
            },
        )
        .collect())
}

/// Whether a table (or any relation) exists.
///
/// # Errors
/// The query fails.
pub async fn exists(conn: &mut PgConnection, table: &TableName) -> sqlx::Result<bool> {
    let (b,): (bool,) = sqlx::query_as("SELECT to_regclass($1) IS NOT NULL")
        .bind(table.sql())
        .fetch_one(conn)
        .await?;
    Ok(b)
}

/// Row count of a table (exact, `count(*)`).
///
/// # Errors
/// The table does not exist or the query fails.
pub async fn count_rows(conn: &mut PgConnection, table: &TableName) -> sqlx::Result<i64> {
    let (n,): (i64,) = sqlx::query_as(sqlf!("SELECT count(*) FROM {}", table.sql()))
        .fetch_one(conn)
        .await?;
    Ok(n)
}

/// The views that read `table`: (qualified, quoted view name, definition), so they can be
/// re-created against another table of that name with [`recreate_views`].
///
/// # Errors
/// The query fails.
pub async fn dependent_views(
    conn: &mut PgConnection,
    table: &TableName,
) -> sqlx::Result<Vec<(String, String)>> {
    sqlx::query_as(
        "SELECT DISTINCT format('%I.%I', n.nspname, v.relname), pg_get_viewdef(v.oid)
           FROM pg_depend d
           JOIN pg_rewrite r ON r.oid = d.objid
           JOIN pg_class v ON v.oid = r.ev_class AND v.relkind = 'v'
           JOIN pg_namespace n ON n.oid = v.relnamespace
          WHERE d.refobjid = to_regclass($1) AND d.classid = 'pg_rewrite'::regclass",
    )
    .bind(table.sql())
    .fetch_all(conn)
    .await
}

/// `CREATE OR REPLACE VIEW` each of `views` (as returned by [`dependent_views`]).
///
/// # Errors
/// A view no longer fits its table, or the statement fails.
pub async fn recreate_views(
    conn: &mut PgConnection,
    views: &[(String, String)],
) -> sqlx::Result<()> {
    for (name, def) in views {
        // `name` comes from format('%I.%I'): already quoted.
        sqlx::query(sqlf!("CREATE OR REPLACE VIEW {name} AS {def}"))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// How long a `SET lock_timeout` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `SET LOCAL`: until the end of the current transaction.
    Transaction,
    /// `SET`: for the session.
    Session,
}

/// `SET [LOCAL] lock_timeout = '<value>'` (`'5s'`, `'500ms'`): the preamble of every
/// statement that takes strong locks on tables in use, so it fails fast instead of
/// queueing every other session behind it.
///
/// # Errors
/// The value is not a valid duration, or the statement fails.
pub async fn set_lock_timeout(
    conn: &mut PgConnection,
    lock_timeout: &str,
    scope: Scope,
) -> sqlx::Result<()> {
    let local = match scope {
        Scope::Transaction => " LOCAL",
        Scope::Session => "",
    };
    sqlx::query(sqlf!(
        "SET{local} lock_timeout = {}",
        quote_literal(lock_timeout)
    ))
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether `err` is PostgreSQL's `lock_not_available` (55P03): a lock was not granted
/// within `lock_timeout`.
pub fn is_lock_timeout(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some("55P03"))
}
