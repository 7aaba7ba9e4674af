//! Upserts into live tables, undone exactly: staged rows go into their target tables with
//! `INSERT ... ON CONFLICT (keys) DO UPDATE` in **one transaction** for every table, with
//! the checks that may veto (they see the new state and roll everything back), and a
//! before-image of every row the upsert touches recorded in the same transaction, so
//! `--rollback` restores the exact previous state (rows it inserted deleted, rows it
//! updated put back column by column) and a DBA gets the same as a SQL script.
//!
//! For an incremental migration into tables that stay live (no staging switch): unlike
//! [`crate::steps::ReplaceSteps`], rows not staged are left alone.
//!
//! ```text
//!  staging tables ──(TextLoad / PgLoad)──> Upsert::apply, in one transaction:
//!     for each table, parents first:
//!        before-images of the rows that will be updated ─┐
//!        INSERT .. ON CONFLICT (keys) DO UPDATE ──────────┼─> ferry_upsert_undo (run_id, step)
//!        keys of the rows inserted ───────────────────────┘
//!     checks (SqlCheck) on the new state: one that vetoes rolls everything back
//!  Upsert::undo: rows inserted deleted, rows updated restored, children first
//! ```
//!
//! [`TextLoad`] is a sink for staging tables whose rows arrive as text (every column a
//! string, as a mapping from an API produces them): PostgreSQL casts each value to its
//! column's type (or an expression given per column), so anything PostgreSQL parses loads.
//!
//! ```no_run
//! use etl_core::migration::Migration;
//! use etl_sink_postgres::ident::TableName;
//! use etl_sink_postgres::upsert::{SqlCheck, Upsert, UpsertTable};
//! # fn demo(opts: sqlx::postgres::PgConnectOptions) {
//! let upsert = Upsert::new(opts, vec![
//!     UpsertTable::new(TableName::qualified("stage", "users"), TableName::new("users"), &["id"]),
//!     UpsertTable::new(TableName::qualified("stage", "orders"), TableName::new("orders"), &["id"]),
//! ])
//! .checks(vec![SqlCheck::none(
//!     "orders_have_users",
//!     "SELECT count(*) FROM orders o LEFT JOIN users u ON u.id = o.user_id WHERE u.id IS NULL",
//! )]);
//! let m: Migration<()> = Migration::new("orders").step(upsert.step("upsert"));
//! # }
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_schema::{DataType, SchemaRef};
use etl_core::migration::{Step, StepKind, StepOutput};
use etl_core::{Finding, Load, Reject, RunInfo, Stage, Unit, UnitSummary, UnitWriter};
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection, Postgres, Transaction};
use uuid::Uuid;

use crate::ident::{TableName, quote_ident, quote_literal};

fn load_err(what: impl std::fmt::Display) -> etl_core::Error {
    etl_core::Error::component(Stage::Load, "postgres-upsert", false, what.to_string())
}

/// `(name, type without modifiers)` of the columns of `table` (a table, view or temporary
/// table), in order.
///
/// # Errors
/// The relation does not exist, or the catalog query fails.
pub async fn relation_columns(
    conn: &mut PgConnection,
    table: &TableName,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT a.attname::text, format_type(a.atttypid, NULL) FROM pg_attribute a
         WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
    )
    .bind(table.sql())
    .fetch_all(conn)
    .await
}

/// One statement writing batches of text columns into a table: every batch column goes to
/// the table column of the same name, cast by PostgreSQL to the column's type (or by the
/// expression given for it, `{}` standing for the text value).
#[derive(Debug, Clone)]
pub struct TextInsert {
    sql: Arc<str>,
}

impl TextInsert {
    /// The statement for `fields` (batch column names, in order) into `table`. `casts`
    /// maps a column to an expression (`ARRAY(SELECT jsonb_array_elements_text({}::jsonb))`).
    ///
    /// # Errors
    /// The table does not exist or has no column of a field's name.
    pub async fn new(
        conn: &mut PgConnection,
        table: &TableName,
        fields: &[String],
        casts: &HashMap<String, String>,
    ) -> Result<Self, String> {
        let cols = relation_columns(conn, table)
            .await
            .map_err(|e| format!("cannot read the columns of {table}: {e}"))?;
        let mut exprs = Vec::new();
        for (i, f) in fields.iter().enumerate() {
            let v = format!("u.c{i}");
            let expr = match casts.get(f) {
                Some(c) => c.replace("{}", &v),
                None => {
                    let (_, ty) = cols
                        .iter()
                        .find(|c| &c.0 == f)
                        .ok_or_else(|| format!("{table} has no column `{f}`"))?;
                    format!("{v}::{ty}")
                }
            };
            exprs.push(expr);
        }
        let sql = format!(
            "INSERT INTO {} ({}) SELECT {} FROM UNNEST({}) AS u({})",
            table.sql(),
            fields
                .iter()
                .map(|f| quote_ident(f))
                .collect::<Vec<_>>()
                .join(", "),
            exprs.join(", "),
            (1..=fields.len())
                .map(|i| format!("${i}::text[]"))
                .collect::<Vec<_>>()
                .join(", "),
            (0..fields.len())
                .map(|i| format!("c{i}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        Ok(TextInsert { sql: sql.into() })
    }

    /// Write `batch` (string columns only) over `conn`; returns the rows written.
    ///
    /// # Errors
    /// A column that is not a string, or the database's error (a value its column type
    /// refuses, a constraint).
    pub async fn write(&self, conn: &mut PgConnection, batch: &RecordBatch) -> Result<u64, String> {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(self.sql.to_string()));
        for (i, f) in batch.schema().fields().iter().enumerate() {
            let c = batch.column(i);
            let v: Vec<Option<String>> = match f.data_type() {
                DataType::Utf8 => c
                    .as_string::<i32>()
                    .iter()
                    .map(|v| v.map(str::to_owned))
                    .collect(),
                DataType::LargeUtf8 => c
                    .as_string::<i64>()
                    .iter()
                    .map(|v| v.map(str::to_owned))
                    .collect(),
                DataType::Utf8View => c
                    .as_string_view()
                    .iter()
                    .map(|v| v.map(str::to_owned))
                    .collect(),
                DataType::Null => vec![None; c.len()],
                t => return Err(format!("column `{}` is {t}, not text", f.name())),
            };
            q = q.bind(v);
        }
        q.execute(conn).await.map_err(|e| e.to_string())?;
        Ok(batch.num_rows() as u64)
    }
}

/// A sink writing batches of text columns into one table ([`TextInsert`]), one transaction
/// per unit. The table is emptied when a run of the pipeline begins (a resumed run too:
/// a step that runs again reloads it whole), so it suits staging tables.
#[derive(Debug, Clone)]
pub struct TextLoad {
    opts: Arc<PgConnectOptions>,
    pool: PgPool,
    table: TableName,
    casts: HashMap<String, String>,
    insert: Arc<Mutex<Option<TextInsert>>>,
}

impl TextLoad {
    /// Load into `table` (which must exist).
    pub fn new(opts: PgConnectOptions, table: TableName) -> Self {
        TextLoad {
            pool: PgPoolOptions::new()
                .max_connections(8)
                .connect_lazy_with(opts.clone()),
            opts: Arc::new(opts),
            table,
            casts: HashMap::new(),
            insert: Arc::default(),
        }
    }

    /// Cast column `column` with `expr` (`{}` is the text value) instead of `::<its type>`.
    pub fn cast(mut self, column: &str, expr: &str) -> Self {
        self.casts.insert(column.to_owned(), expr.to_owned());
        self
    }

    async fn connect(&self) -> etl_core::Result<PgConnection> {
        crate::ConnectSettings::default()
            .connect(&self.opts)
            .await
            .map_err(|e| load_err(format!("cannot connect: {e}")))
    }
}

/// One unit's transaction of [`TextLoad`].
pub struct TextUnitWriter {
    tx: Transaction<'static, Postgres>,
    insert: TextInsert,
    table: TableName,
}

impl Load for TextLoad {
    type Writer = TextUnitWriter;

    fn name(&self) -> &str {
        "postgres-text"
    }

    async fn begin_run(
        &self,
        _run: &RunInfo,
        schema: SchemaRef,
    ) -> etl_core::Result<Vec<UnitSummary>> {
        let mut conn = self.connect().await?;
        let fields: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let insert = TextInsert::new(&mut conn, &self.table, &fields, &self.casts)
            .await
            .map_err(load_err)?;
        sqlx::query(sqlf!("TRUNCATE {}", self.table.sql()))
            .execute(&mut conn)
            .await
            .map_err(|e| load_err(format!("cannot empty {}: {e}", self.table)))?;
        *self.insert.lock().expect("insert lock") = Some(insert);
        Ok(Vec::new())
    }

    async fn begin_unit(&self, _unit: &Unit) -> etl_core::Result<TextUnitWriter> {
        let insert = self
            .insert
            .lock()
            .expect("insert lock")
            .clone()
            .ok_or_else(|| load_err("begin_unit before begin_run"))?;
        let tx = self
            .pool
            .begin()
            .await
            .map_err(|e| load_err(format!("cannot begin a transaction: {e}")))?;
        Ok(TextUnitWriter {
            tx,
            insert,
            table: self.table.clone(),
        })
    }
}

impl UnitWriter for TextUnitWriter {
    async fn write(&mut self, batch: RecordBatch) -> etl_core::Result<u64> {
        let n = batch.num_rows();
        self.insert
            .write(&mut self.tx, &batch)
            .await
            .map_err(|e| load_err(format!("cannot write {n} rows into {}: {e}", self.table)))
    }

    async fn write_rejects(&mut self, _rejects: &[Reject]) -> etl_core::Result<()> {
        Ok(())
    }

    async fn commit(self, _summary: &UnitSummary) -> etl_core::Result<()> {
        self.tx
            .commit()
            .await
            .map_err(|e| load_err(format!("cannot commit into {}: {e}", self.table)))
    }

    async fn abort(self) -> etl_core::Result<()> {
        self.tx
            .rollback()
            .await
            .map_err(|e| load_err(format!("cannot roll back {}: {e}", self.table)))
    }
}

/// One target of an [`Upsert`]: rows of `source` (a table or view holding columns of the
/// target's names) go into `target`, matched on `keys` (a primary key or unique index).
#[derive(Debug, Clone)]
pub struct UpsertTable {
    /// Where the staged rows are.
    pub source: TableName,
    /// The live table.
    pub target: TableName,
    /// The conflict columns.
    pub keys: Vec<String>,
    /// Update rows that exist (`DO UPDATE`); `false`: leave them (`DO NOTHING`).
    pub update: bool,
}

impl UpsertTable {
    /// `source` into `target` on `keys`, updating rows that exist.
    pub fn new(source: TableName, target: TableName, keys: &[&str]) -> Self {
        UpsertTable {
            source,
            target,
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            update: true,
        }
    }

    /// Rows that exist are left as they are (`ON CONFLICT DO NOTHING`).
    pub fn insert_only(mut self) -> Self {
        self.update = false;
        self
    }
}

/// A check run inside the upsert's transaction on the new state: a query returning one
/// count of violating rows.
#[derive(Debug, Clone)]
pub struct SqlCheck {
    name: String,
    sql: String,
    warn: Option<String>,
}

impl SqlCheck {
    /// An error-level check (it vetoes): `sql` must count 0 rows.
    pub fn none(name: &str, sql: &str) -> Self {
        SqlCheck {
            name: name.to_owned(),
            sql: sql.to_owned(),
            warn: None,
        }
    }

    /// A warning when `sql` counts rows (described as `what`); never vetoes.
    pub fn warn(name: &str, sql: &str, what: &str) -> Self {
        SqlCheck {
            name: name.to_owned(),
            sql: sql.to_owned(),
            warn: Some(what.to_owned()),
        }
    }

    /// Run it over `conn`.
    ///
    /// # Errors
    /// The query fails.
    pub async fn evaluate(&self, conn: &mut PgConnection) -> Result<Finding, sqlx::Error> {
        let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(self.sql.clone()))
            .fetch_one(conn)
            .await?;
        Ok(match &self.warn {
            None => Finding::check(&self.name, n == 0, format!("{n} violating rows")),
            Some(what) if n == 0 => Finding::pass(&self.name, format!("no {what}")),
            Some(what) => Finding::warn(&self.name, format!("{n} {what}")),
        })
    }
}

/// What an upsert did to one table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableChange {
    /// The target table.
    pub table: String,
    /// Rows inserted.
    pub inserted: u64,
    /// Rows that existed and were updated (or left, for an insert-only table).
    pub updated: u64,
}

/// What [`Upsert::run`] did.
#[derive(Debug, Clone, Default)]
pub struct UpsertOutcome {
    /// Per table, in order.
    pub changes: Vec<TableChange>,
    /// The checks.
    pub findings: Vec<Finding>,
    /// Whether it committed (no check vetoed and not a preview).
    pub committed: bool,
    /// SQL that undoes the upsert without ferry (when it committed).
    pub rollback_sql: Option<String>,
}

/// Staged rows into live tables in one transaction, with checks and an exact undo (see the
/// [module docs](self)).
#[derive(Debug, Clone)]
pub struct Upsert {
    opts: Arc<PgConnectOptions>,
    tables: Arc<Vec<UpsertTable>>,
    checks: Arc<Vec<SqlCheck>>,
    undo_table: TableName,
    script: Option<Arc<(std::path::PathBuf, String)>>,
}

fn sql_err(what: &str) -> impl Fn(sqlx::Error) -> etl_core::BoxError + '_ {
    move |e| format!("{what}: {e}").into()
}

impl Upsert {
    /// `tables` in this order (parents first), in the database of `opts`; before-images
    /// in `ferry_upsert_undo`.
    pub fn new(opts: PgConnectOptions, tables: Vec<UpsertTable>) -> Self {
        Upsert {
            opts: Arc::new(opts),
            tables: Arc::new(tables),
            checks: Arc::default(),
            undo_table: TableName::new("ferry_upsert_undo"),
            script: None,
        }
    }

    /// Write the rollback script of a committing run to `path` (owner-only, atomically,
    /// `header` first) BEFORE the transaction commits: a script that cannot be written (a
    /// full disk) rolls the upsert back, so a committed upsert always has its script.
    pub fn rollback_script(mut self, path: impl Into<std::path::PathBuf>, header: &str) -> Self {
        self.script = Some(Arc::new((path.into(), header.to_owned())));
        self
    }

    /// Checks run in the transaction after every table is upserted.
    pub fn checks(mut self, checks: Vec<SqlCheck>) -> Self {
        self.checks = Arc::new(checks);
        self
    }

    /// Keep the before-images in `table` instead of `ferry_upsert_undo`.
    pub fn undo_table(mut self, table: TableName) -> Self {
        self.undo_table = table;
        self
    }

    /// The tables, in order.
    pub fn tables(&self) -> &[UpsertTable] {
        &self.tables
    }

    async fn connect(&self) -> Result<PgConnection, etl_core::BoxError> {
        Ok(crate::ConnectSettings::default()
            .connect(&self.opts)
            .await?)
    }

    async fn ensure(&self, conn: &mut PgConnection) -> Result<(), etl_core::BoxError> {
        sqlx::raw_sql(sqlf!(
            "CREATE TABLE IF NOT EXISTS {} (run_id uuid NOT NULL, step text NOT NULL,
               ord int NOT NULL, target text NOT NULL, existed boolean NOT NULL, row jsonb)",
            self.undo_table.sql()
        ))
        .execute(conn)
        .await
        .map_err(sql_err("cannot create the before-image table"))?;
        Ok(())
    }

    async fn undo_table_exists(&self, conn: &mut PgConnection) -> Result<bool, etl_core::BoxError> {
        let (e,): (bool,) = sqlx::query_as("SELECT to_regclass($1) IS NOT NULL")
            .bind(self.undo_table.sql())
            .fetch_one(conn)
            .await?;
        Ok(e)
    }

    /// The SQL pieces of table `t`: its columns that are staged, its keys. When the
    /// staging relation is gone (dropped by a cleanup after the switch), an undo restores
    /// every column of the before-images: they are whole rows, so the state is the same.
    async fn pieces(
        conn: &mut PgConnection,
        t: &UpsertTable,
    ) -> Result<Pieces, etl_core::BoxError> {
        let (staged,): (bool,) = sqlx::query_as("SELECT to_regclass($1) IS NOT NULL")
            .bind(t.source.sql())
            .fetch_one(&mut *conn)
            .await?;
        let source: Option<Vec<String>> = match staged {
            false => None,
            true => Some(
                relation_columns(conn, &t.source)
                    .await
                    .map_err(sql_err("cannot read the staged columns"))?
                    .into_iter()
                    .map(|c| c.0)
                    .collect(),
            ),
        };
        let target = relation_columns(conn, &t.target)
            .await
            .map_err(sql_err("cannot read the target's columns"))?;
        let cols: Vec<String> = target
            .into_iter()
            .map(|c| c.0)
            .filter(|c| source.as_ref().is_none_or(|s| s.contains(c)))
            .collect();
        let others: Vec<&String> = cols.iter().filter(|c| !t.keys.contains(c)).collect();
        Ok(Pieces {
            target: t.target.sql(),
            names: list(&cols, "{c}", ", "),
            keys: list(&t.keys, "{c}", ", "),
            restore: (!others.is_empty()).then(|| list(others, "{c} = r.{c}", ", ")),
            on: list(&t.keys, "t.{c} = r.{c}", " AND "),
            update: t
                .update
                .then(|| {
                    list(
                        cols.iter().filter(|c| !t.keys.contains(c)),
                        "{c} = EXCLUDED.{c}",
                        ", ",
                    )
                })
                .filter(|u| !u.is_empty()),
        })
    }

    /// Upsert every table over `conn` (inside the caller's transaction), recording the
    /// before-images under `(run_id, step)`.
    ///
    /// # Errors
    /// A database error (a constraint, a missing table).
    pub async fn apply(
        &self,
        conn: &mut PgConnection,
        run_id: Uuid,
        step: &str,
    ) -> Result<Vec<TableChange>, etl_core::BoxError> {
        let undo = self.undo_table.sql();
        let mut changes = Vec::new();
        for (ord, t) in self.tables.iter().enumerate() {
            let Pieces {
                target,
                names,
                keys,
                update,
                ..
            } = Self::pieces(conn, t).await?;
            let (src, label) = (t.source.sql(), quote_literal(&t.target.to_string()));
            let record = format!(
                "INSERT INTO {undo} (run_id, step, ord, target, existed, row) SELECT $1, $2, {ord}, {label}"
            );
            if update.is_some() {
                sqlx::query(sqlf!("{record}, true, to_jsonb(t) FROM {target} t WHERE ({keys}) IN (SELECT {keys} FROM {src})"))
                    .bind(run_id)
                    .bind(step)
                    .execute(&mut *conn)
                    .await
                    .map_err(sql_err(&format!("cannot record the before-images of {}", t.target)))?;
            }
            let action =
                update.map_or_else(|| "DO NOTHING".to_owned(), |u| format!("DO UPDATE SET {u}"));
            let (ins, upd, staged): (i64, i64, i64) = sqlx::query_as(sqlf!(
                "WITH up AS (INSERT INTO {target} ({names}) SELECT {names} FROM {src}
                             ON CONFLICT ({keys}) {action} RETURNING {keys}, (xmax = 0) AS ferry_inserted),
                      rec AS ({record}, false, jsonb_build_object({kj}) FROM up WHERE ferry_inserted)
                 SELECT count(*) FILTER (WHERE ferry_inserted), count(*) FILTER (WHERE NOT ferry_inserted),
                        (SELECT count(*) FROM {src}) FROM up",
                kj = t
                    .keys
                    .iter()
                    .map(|k| format!("{}, {}", quote_literal(k), quote_ident(k)))
                    .collect::<Vec<_>>()
                    .join(", "),
            ))
            .bind(run_id)
            .bind(step)
            .fetch_one(&mut *conn)
            .await
            .map_err(sql_err(&format!("cannot upsert {} into {}", t.source, t.target)))?;
            changes.push(TableChange {
                table: t.target.to_string(),
                inserted: ins as u64,
                // insert-only: the rows that existed were left as they were
                updated: (if t.update { upd } else { staged - ins }).max(0) as u64,
            });
        }
        // The marker: the upsert of this (run, step) committed.
        sqlx::query(sqlf!("INSERT INTO {undo} (run_id, step, ord, target, existed, row) VALUES ($1, $2, -1, '', false, NULL)"))
            .bind(run_id)
            .bind(step)
            .execute(&mut *conn)
            .await
            .map_err(sql_err("cannot record the upsert"))?;
        Ok(changes)
    }

    /// Run the checks over `conn`.
    ///
    /// # Errors
    /// A check's query fails.
    pub async fn evaluate(
        &self,
        conn: &mut PgConnection,
    ) -> Result<Vec<Finding>, etl_core::BoxError> {
        let mut out = Vec::new();
        for c in self.checks.iter() {
            out.push(
                c.evaluate(conn)
                    .await
                    .map_err(|e| format!("check `{}` failed to run: {e}", c.name))?,
            );
        }
        Ok(out)
    }

    /// Whether the upsert of `(run_id, step)` committed.
    ///
    /// # Errors
    /// A database error.
    pub async fn applied(&self, run_id: Uuid, step: &str) -> Result<bool, etl_core::BoxError> {
        let mut conn = self.connect().await?;
        if !self.undo_table_exists(&mut conn).await? {
            return Ok(false);
        }
        let (n,): (i64,) = sqlx::query_as(sqlf!(
            "SELECT count(*) FROM {} WHERE run_id = $1 AND step = $2 AND ord = -1",
            self.undo_table.sql()
        ))
        .bind(run_id)
        .bind(step)
        .fetch_one(&mut conn)
        .await?;
        Ok(n > 0)
    }

    /// Upsert, check, and commit unless a check vetoes or `preview` is set (then roll back:
    /// the changes and findings are what a real run would do). A committed run comes with
    /// its rollback script.
    ///
    /// # Errors
    /// A database error (nothing is committed).
    pub async fn run(
        &self,
        run_id: Uuid,
        step: &str,
        preview: bool,
    ) -> Result<UpsertOutcome, etl_core::BoxError> {
        let mut conn = self.connect().await?;
        let mut tx = conn.begin().await?;
        // Inside the transaction: a preview leaves no table behind.
        self.ensure(&mut tx).await?;
        let changes = self.apply(&mut tx, run_id, step).await?;
        let findings = self.evaluate(&mut tx).await?;
        let vetoed = findings.iter().any(Finding::vetoes);
        if preview || vetoed {
            tx.rollback().await?;
            return Ok(UpsertOutcome {
                changes,
                findings,
                committed: false,
                rollback_sql: None,
            });
        }
        let script = self.rollback_sql(&mut tx, run_id, step).await?;
        if let Some(file) = &self.script {
            let (path, header) = &**file;
            etl_core::report::write_private_atomic(path, format!("{header}{script}").as_bytes())
                .map_err(|e| {
                    format!("cannot write the rollback script (nothing committed): {e}")
                })?;
        }
        tx.commit().await?;
        Ok(UpsertOutcome {
            changes,
            findings,
            committed: true,
            rollback_sql: Some(script),
        })
    }

    /// Undo the upsert of `(run_id, step)` in one transaction: rows it inserted deleted,
    /// rows it updated restored from their before-images, the last table first; the
    /// before-images are then removed. Nothing to do when it never committed.
    ///
    /// # Errors
    /// A database error (nothing is undone).
    pub async fn undo(
        &self,
        run_id: Uuid,
        step: &str,
    ) -> Result<Vec<TableChange>, etl_core::BoxError> {
        let mut conn = self.connect().await?;
        if !self.undo_table_exists(&mut conn).await? {
            return Ok(Vec::new());
        }
        let mut tx = conn.begin().await?;
        let undo = self.undo_table.sql();
        let mut out = Vec::new();
        for (ord, t) in self.tables.iter().enumerate().rev() {
            let p = Self::pieces(&mut tx, t).await?;
            let from = |existed: bool| {
                format!(
                    "{undo} u CROSS JOIN LATERAL jsonb_populate_record(NULL::{}, u.row) r
                     WHERE u.run_id = $1 AND u.step = $2 AND u.ord = {ord} AND u.existed = {existed}",
                    p.target
                )
            };
            let mut counts = [0u64; 2];
            for (i, sql) in [Some(p.delete(&from(false))), p.update(&from(true))]
                .into_iter()
                .enumerate()
            {
                let Some(sql) = sql else { continue };
                counts[i] = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(run_id)
                    .bind(step)
                    .execute(&mut *tx)
                    .await
                    .map_err(sql_err(&format!("cannot undo the upsert of {}", t.target)))?
                    .rows_affected();
            }
            out.push(TableChange {
                table: t.target.to_string(),
                inserted: counts[0],
                updated: counts[1],
            });
        }
        sqlx::query(sqlf!("DELETE FROM {undo} WHERE run_id = $1 AND step = $2"))
            .bind(run_id)
            .bind(step)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(out)
    }

    /// SQL that undoes the upsert of `(run_id, step)` without ferry (for a DBA): the
    /// before-images as literals, rows inserted deleted and rows updated restored, the last
    /// table first, in one transaction.
    ///
    /// # Errors
    /// A database error.
    pub async fn rollback_sql(
        &self,
        conn: &mut PgConnection,
        run_id: Uuid,
        step: &str,
    ) -> Result<String, etl_core::BoxError> {
        let mut sql = format!(
            "-- Undoes upsert `{step}` of run {run_id}: deletes exactly the rows it inserted and\n-- restores the rows it updated to their previous values.\nBEGIN;\n"
        );
        for (ord, t) in self.tables.iter().enumerate().rev() {
            let p = Self::pieces(conn, t).await?;
            for existed in [false, true] {
                let rows: Vec<(String,)> = sqlx::query_as(sqlf!(
                    "SELECT row::text FROM {} WHERE run_id = $1 AND step = $2 AND ord = {ord} AND existed = $3",
                    self.undo_table.sql()
                ))
                .bind(run_id)
                .bind(step)
                .bind(existed)
                .fetch_all(&mut *conn)
                .await?;
                for chunk in rows.chunks(500) {
                    let array = format!(
                        "[{}]",
                        chunk
                            .iter()
                            .map(|r| r.0.as_str())
                            .collect::<Vec<_>>()
                            .join(",")
                    );
                    let from = format!(
                        "jsonb_populate_recordset(NULL::{}, {}::jsonb) r WHERE true",
                        p.target,
                        quote_literal(&array)
                    );
                    let stmt = if existed {
                        p.update(&from)
                    } else {
                        Some(p.delete(&from))
                    };
                    if let Some(stmt) = stmt {
                        let _ = writeln!(
                            sql,
                            "{};",
                            stmt.split_whitespace().collect::<Vec<_>>().join(" ")
                        );
                    }
                }
            }
        }
        sql.push_str("COMMIT;\n");
        Ok(sql)
    }

    /// A [`StepKind::Switch`] step named `name`: [`Upsert::run`] (a preview in a dry run),
    /// failing when a check vetoes; run again after a kill that followed its commit, it
    /// sees the upsert done and does nothing. Its undo is [`Upsert::undo`].
    pub fn step<C: Send + Sync + 'static>(&self, name: &str) -> Step<C> {
        let (a, b) = (self.clone(), self.clone());
        Step::new(name, StepKind::Switch, move |_c: &C, cx| {
            let u = a.clone();
            Box::pin(async move {
                if cx.resuming() && u.applied(cx.run_id, &cx.step).await? {
                    return Ok(StepOutput::message(
                        "the upsert had committed before the interruption",
                    ));
                }
                let out = u.run(cx.run_id, &cx.step, cx.dry_run).await?;
                Ok(StepOutput::message(changes_line(&out.changes))
                    .with_details(json!({ "changes": out.changes }))
                    .with_findings(out.findings))
            })
        })
        .undo(move |_c: &C, cx| {
            let u = b.clone();
            Box::pin(async move {
                let undone = u.undo(cx.run_id, &cx.step).await?;
                Ok(StepOutput::message(undo_line(&undone)))
            })
        })
        .in_dry_run()
        .describe(format!(
            "upserts {} in one transaction with its checks (a before-image kept for --rollback)",
            self.tables
                .iter()
                .map(|t| t.target.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// `users +10 ~2, orders +30 ~0` (inserted, updated).
pub fn changes_line(changes: &[TableChange]) -> String {
    changes
        .iter()
        .map(|c| format!("{} +{} ~{}", c.table, c.inserted, c.updated))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `{"inserted": {table: n, ...}, "updated": {table: n, ...}}`: the changes as a report's
/// figures.
pub fn changes_json(changes: &[TableChange]) -> serde_json::Value {
    let by = |f: fn(&TableChange) -> u64| -> serde_json::Map<String, serde_json::Value> {
        changes
            .iter()
            .map(|x| (x.table.clone(), f(x).into()))
            .collect()
    };
    serde_json::json!({ "inserted": by(|x| x.inserted), "updated": by(|x| x.updated) })
}

/// What an undo did, in one line.
pub fn undo_line(undone: &[TableChange]) -> String {
    format!(
        "restored the previous state: {}",
        undone
            .iter()
            .map(|c| format!(
                "{} -{} inserted, {} restored",
                c.table, c.inserted, c.updated
            ))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The SQL pieces of one [`UpsertTable`] (identifiers quoted).
struct Pieces {
    /// The target table.
    target: String,
    /// The staged columns.
    names: String,
    /// The key columns.
    keys: String,
    /// `c = r.c, ...` over the columns that are not keys (none: nothing to restore).
    restore: Option<String>,
    /// `t.k = r.k AND ...`.
    on: String,
    /// `c = EXCLUDED.c, ...` when rows that exist are updated.
    update: Option<String>,
}

impl Pieces {
    /// Delete the target rows whose keys are in `from` (rows `r`).
    fn delete(&self, from: &str) -> String {
        format!("DELETE FROM {} t USING {from} AND {}", self.target, self.on)
    }

    /// Restore the target rows from `from` (rows `r`), matched on the keys.
    fn update(&self, from: &str) -> Option<String> {
        let set = self.restore.as_ref()?;
        Some(format!(
            "UPDATE {} t SET {set} FROM {from} AND {}",
            self.target, self.on
        ))
    }
}

/// `pattern` (with `{c}` for each quoted column) for every column, joined by `sep`.
fn list<S: AsRef<str>>(columns: impl IntoIterator<Item = S>, pattern: &str, sep: &str) -> String {
    columns
        .into_iter()
        .map(|c| pattern.replace("{c}", &quote_ident(c.as_ref())))
        .collect::<Vec<_>>()
        .join(sep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_as_figures_and_line() {
        let c = |t: &str, inserted, updated| TableChange {
            table: t.into(),
            inserted,
            updated,
        };
        let changes = [c("users", 10, 2), c("orders", 30, 0)];
        let j = changes_json(&changes);
        assert_eq!(
            j["inserted"],
            serde_json::json!({"users": 10, "orders": 30})
        );
        assert_eq!(j["updated"], serde_json::json!({"users": 2, "orders": 0}));
        assert_eq!(changes_line(&changes), "users +10 ~2, orders +30 ~0");
    }
}
