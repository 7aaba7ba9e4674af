//! Checks run in PostgreSQL after the load (feature `postgres`).

use etl_core::{Finding, Result, RunTotals, Stage, Validate};
use etl_sink_postgres::ident::{TableName, quote_ident};
use futures::future::BoxFuture;
use sqlx::{Connection, PgConnection};

/// What a check's count must be.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// Zero (no orphans, no duplicates, nothing out of range).
    Zero,
    /// Exactly this many.
    Equals(i64),
    /// The rows the run loaded (`totals.loaded`), plus an offset (rows loaded by
    /// earlier steps, e.g. a previous phase).
    Loaded(i64),
}

/// One SQL check: a query returning one `bigint`, and what it must be.
#[derive(Debug, Clone)]
pub struct SqlCheck {
    /// Name in the report.
    pub name: String,
    /// The query; identifiers in it must already be quoted.
    pub sql: String,
    /// Expected value.
    pub expect: Expect,
    /// What the count means, for the message ("rows with no species").
    pub what: String,
}

impl SqlCheck {
    /// Rows in `table` equal the rows the run loaded.
    pub fn row_count(table: &TableName) -> Self {
        SqlCheck {
            name: "row_count".into(),
            sql: format!("SELECT count(*) FROM {}", table.sql()),
            expect: Expect::Loaded(0),
            what: format!("rows in {table}"),
        }
    }
    /// No value of `table.column` is missing from `parent.parent_column`.
    pub fn no_orphans(
        table: &TableName,
        column: &str,
        parent: &TableName,
        parent_column: &str,
    ) -> Self {
        let c = quote_ident(column);
        SqlCheck {
            name: format!("no_orphan_{column}"),
            sql: format!(
                "SELECT count(*) FROM {t} c WHERE c.{c} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {p} p WHERE p.{pc} = c.{c})",
                t = table.sql(),
                p = parent.sql(),
                pc = quote_ident(parent_column)
            ),
            expect: Expect::Zero,
            what: format!("rows of {table} whose {column} is not in {parent}"),
        }
    }
    /// No two rows share `columns`.
    pub fn no_duplicates(table: &TableName, columns: &[&str]) -> Self {
        let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
        let list = cols.join(", ");
        SqlCheck {
            name: format!("no_duplicate_{}", columns.join("_")),
            sql: format!(
                "SELECT coalesce(sum(n - 1), 0)::bigint FROM (SELECT count(*) AS n FROM {} WHERE ({list}) IS NOT NULL GROUP BY {list} HAVING count(*) > 1) d",
                table.sql()
            ),
            expect: Expect::Zero,
            what: format!("duplicate ({}) rows in {table}", columns.join(", ")),
        }
    }
    /// Every non-NULL `column` is within `min..=max`.
    pub fn in_range(table: &TableName, column: &str, min: i64, max: i64) -> Self {
        SqlCheck {
            name: format!("{column}_in_range"),
            sql: format!(
                "SELECT count(*) FROM {} WHERE {c} < {min} OR {c} > {max}",
                table.sql(),
                c = quote_ident(column)
            ),
            expect: Expect::Zero,
            what: format!("rows with {column} outside {min}..={max}"),
        }
    }
    /// No `column` is NULL.
    pub fn not_null(table: &TableName, column: &str) -> Self {
        SqlCheck {
            name: format!("{column}_present"),
            sql: format!(
                "SELECT count(*) FROM {} WHERE {} IS NULL",
                table.sql(),
                quote_ident(column)
            ),
            expect: Expect::Zero,
            what: format!("rows with no {column}"),
        }
    }
    /// A custom check.
    pub fn custom(name: &str, sql: impl Into<String>, expect: Expect, what: &str) -> Self {
        SqlCheck {
            name: name.to_owned(),
            sql: sql.into(),
            expect,
            what: what.to_owned(),
        }
    }

    /// Run it and judge the count.
    pub async fn run(
        &self,
        conn: &mut PgConnection,
        totals: &RunTotals,
    ) -> std::result::Result<Finding, sqlx::Error> {
        let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(self.sql.clone()))
            .fetch_one(conn)
            .await?;
        let (ok, want) = match self.expect {
            Expect::Zero => (n == 0, "0".to_owned()),
            Expect::Equals(x) => (n == x, x.to_string()),
            Expect::Loaded(off) => {
                let x = totals.loaded as i64 + off;
                (n == x, format!("{x} (rows loaded)"))
            }
        };
        Ok(Finding::check(
            self.name.clone(),
            ok,
            format!("{n} {} (expected {want})", self.what),
        ))
    }
}

/// A validator running SQL checks at the end of the run, on its own connection.
#[derive(Debug, Clone)]
pub struct SqlChecks {
    url: String,
    checks: Vec<SqlCheck>,
}

impl SqlChecks {
    /// Checks against the database at `url`.
    pub fn new(url: impl Into<String>, checks: Vec<SqlCheck>) -> Self {
        SqlChecks {
            url: url.into(),
            checks,
        }
    }

    /// Run every check now.
    pub async fn run_all(&self, totals: &RunTotals) -> Result<Vec<Finding>> {
        let mut conn = PgConnection::connect(&self.url)
            .await
            .map_err(|e| etl_core::Error::component(Stage::Validate, "sql_checks", true, e))?;
        let mut out = Vec::new();
        for c in &self.checks {
            match c.run(&mut conn, totals).await {
                Ok(f) => out.push(f),
                Err(e) => out.push(Finding::fail(
                    c.name.clone(),
                    format!("check failed to run: {e}"),
                )),
            }
        }
        Ok(out)
    }
}

impl Validate for SqlChecks {
    fn name(&self) -> &str {
        "sql_checks"
    }
    fn finish<'a>(&'a self, totals: &'a RunTotals) -> BoxFuture<'a, Result<Vec<Finding>>> {
        Box::pin(self.run_all(totals))
    }
}
