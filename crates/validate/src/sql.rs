//! Checks run in PostgreSQL after the load (feature `postgres`).
//!
//! Checks that count rows of one table (row count, ranges, NULLs) are answered together,
//! with one scan of the table per [`SqlChecks`] run.

use etl_core::{Finding, Result, RunTotals, Stage, Validate};
use etl_postgres::ident::{TableName, quote_ident};
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
    /// For checks that count rows of one table: (quoted table, aggregate expression).
    /// [`SqlChecks`] answers all such checks on the same table with one scan.
    pub scan: Option<(String, String)>,
}

impl SqlCheck {
    fn counting(
        name: String,
        table: &TableName,
        expr: String,
        expect: Expect,
        what: String,
    ) -> Self {
        SqlCheck {
            name,
            sql: format!("SELECT ({expr})::bigint FROM {}", table.sql()),
            expect,
            what,
            scan: Some((table.sql(), expr)),
        }
    }

    /// Rows in `table` equal the rows the run loaded.
    pub fn row_count(table: &TableName) -> Self {
        Self::counting(
            "row_count".into(),
            table,
            "count(*)".into(),
            Expect::Loaded(0),
            format!("rows in {table}"),
        )
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
            scan: None,
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
            scan: None,
        }
    }

    /// Every non-NULL `column` is within `min..=max`.
    pub fn in_range(table: &TableName, column: &str, min: i64, max: i64) -> Self {
        let c = quote_ident(column);
        Self::counting(
            format!("{column}_in_range"),
            table,
            format!("count(*) FILTER (WHERE {c} < {min} OR {c} > {max})"),
            Expect::Zero,
            format!("rows with {column} outside {min}..={max}"),
        )
    }

    /// No `column` is NULL.
    pub fn not_null(table: &TableName, column: &str) -> Self {
        Self::counting(
            format!("{column}_present"),
            table,
            format!("count(*) FILTER (WHERE {} IS NULL)", quote_ident(column)),
            Expect::Zero,
            format!("rows with no {column}"),
        )
    }

    /// A custom check.
    pub fn custom(name: &str, sql: impl Into<String>, expect: Expect, what: &str) -> Self {
        SqlCheck {
            name: name.to_owned(),
            sql: sql.into(),
            expect,
            what: what.to_owned(),
            scan: None,
        }
    }

    /// Run it alone and judge the count.
    pub async fn run(
        &self,
        conn: &mut PgConnection,
        totals: &RunTotals,
    ) -> std::result::Result<Finding, sqlx::Error> {
        let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(self.sql.clone()))
            .fetch_one(conn)
            .await?;
        Ok(self.judge(n, totals))
    }

    /// Judge a count.
    pub fn judge(&self, n: i64, totals: &RunTotals) -> Finding {
        let (ok, want) = match self.expect {
            Expect::Zero => (n == 0, "0".to_owned()),
            Expect::Equals(x) => (n == x, x.to_string()),
            Expect::Loaded(off) => {
                let x = totals.loaded as i64 + off;
                (n == x, format!("{x} (rows loaded)"))
            }
        };
        Finding::check(
            self.name.clone(),
            ok,
            format!("{n} {} (expected {want})", self.what),
        )
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

    /// Run every check now; findings come back in the order of the checks.
    pub async fn run_all(&self, totals: &RunTotals) -> Result<Vec<Finding>> {
        let mut conn = PgConnection::connect(&self.url)
            .await
            .map_err(|e| etl_core::Error::component(Stage::Validate, "sql_checks", true, e))?;
        let failed = |c: &SqlCheck, e: &sqlx::Error| {
            Finding::fail(c.name.clone(), format!("check failed to run: {e}"))
        };
        let mut out: Vec<(usize, Finding)> = Vec::new();
        let mut tables: Vec<&str> = Vec::new();
        for c in &self.checks {
            if let Some((t, _)) = &c.scan
                && !tables.contains(&t.as_str())
            {
                tables.push(t);
            }
        }
        for table in tables {
            let group: Vec<(usize, &SqlCheck)> = self
                .checks
                .iter()
                .enumerate()
                .filter(|(_, c)| c.scan.as_ref().is_some_and(|(t, _)| t == table))
                .collect();
            let exprs: Vec<String> = group
                .iter()
                .filter_map(|(_, c)| c.scan.as_ref().map(|(_, e)| format!("({e})::bigint")))
                .collect();
            let sql = format!("SELECT ARRAY[{}] FROM {table}", exprs.join(", "));
            match sqlx::query_as::<_, (Vec<i64>,)>(sqlx::AssertSqlSafe(sql))
                .fetch_one(&mut conn)
                .await
            {
                Ok((counts,)) => {
                    for ((i, c), n) in group.iter().zip(counts) {
                        out.push((*i, c.judge(n, totals)));
                    }
                }
                Err(e) => out.extend(group.iter().map(|(i, c)| (*i, failed(c, &e)))),
            }
        }
        for (i, c) in self
            .checks
            .iter()
            .enumerate()
            .filter(|(_, c)| c.scan.is_none())
        {
            match c.run(&mut conn, totals).await {
                Ok(f) => out.push((i, f)),
                Err(e) => out.push((i, failed(c, &e))),
            }
        }
        out.sort_by_key(|(i, _)| *i);
        Ok(out.into_iter().map(|(_, f)| f).collect())
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
