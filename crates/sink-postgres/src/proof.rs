//! Proof before a switch that the new table serves as well as the one it replaces: the
//! same named queries timed with `EXPLAIN (ANALYZE, BUFFERS)` on the live table and on
//! its replacement ([`compare_queries`]); the keys of the live table that the replacement
//! lacks ([`dropped_keys`]); and the room left on the server's disk ([`free_space`]).

use std::time::Duration;

use etl_core::Finding;
use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;

use crate::Result;
use crate::ident::{TableName, quote_ident};
use crate::staging::exists;

/// A query the replacement must answer about as fast as the live table: `sql` with
/// `{table}` where the table goes (e.g. `SELECT * FROM {table} WHERE species_id = ... AND
/// year >= 2020`).
#[derive(Debug, Clone, Serialize)]
pub struct QueryCheck {
    /// Its name in findings and reports.
    pub name: String,
    /// The query, `{table}` standing for the table.
    pub sql: String,
}

impl QueryCheck {
    /// A check named `name` of `sql` (`{table}` stands for the table).
    pub fn new(name: impl Into<String>, sql: impl Into<String>) -> Self {
        QueryCheck {
            name: name.into(),
            sql: sql.into(),
        }
    }
}

/// The proof flags every PostgreSQL replacement shares (flatten into a `clap` parser):
/// the named queries timed on the live table and its replacement before the switch, and
/// run again on the new live table after it (the smoke queries).
#[derive(clap::Args, Debug, Clone)]
pub struct ProofArgs {
    /// The proof queries (`NAME=SQL`, `{table}` for the table; repeatable), timed with
    /// `EXPLAIN (ANALYZE, BUFFERS)` on the replacement and on the live table before the
    /// switch, and run on the new live table after it. Default: the migration's own.
    #[arg(long = "query", value_name = "NAME=SQL")]
    pub queries: Vec<String>,
    /// The switch is vetoed when a proof query is this many times slower on the
    /// replacement than on the live table...
    #[arg(long, default_value_t = 2.0, value_name = "X")]
    pub max_query_slowdown: f64,
    /// ...and slower by at least this many milliseconds (smaller gaps are noise).
    #[arg(long, default_value_t = 5.0, value_name = "MS")]
    pub query_floor_ms: f64,
}

impl ProofArgs {
    /// The checks: `--query` when given, else `defaults`.
    ///
    /// # Errors
    /// A `--query` without `=` (`Error::State`, naming it).
    pub fn checks(&self, defaults: &[QueryCheck]) -> Result<Vec<QueryCheck>> {
        if self.queries.is_empty() {
            return Ok(defaults.to_vec());
        }
        self.queries
            .iter()
            .map(|q| match q.split_once('=') {
                Some((name, sql)) => Ok(QueryCheck::new(name.trim(), sql.trim())),
                None => Err(crate::Error::State(format!(
                    "--query {q:?}: expected NAME=SQL"
                ))),
            })
            .collect()
    }

    /// [`compare_queries`] of the checks on `live` and `new` with these limits: the
    /// findings, and the timings with both plans as JSON for the report.
    ///
    /// # Errors
    /// A bad `--query`, or a query fails.
    pub async fn compare(
        &self,
        conn: &mut PgConnection,
        live: &TableName,
        new: &TableName,
        defaults: &[QueryCheck],
    ) -> Result<(Vec<Finding>, Value)> {
        let floor = Duration::from_secs_f64(self.query_floor_ms.max(0.0) / 1000.0);
        let checks = self.checks(defaults)?;
        let (findings, timings) =
            compare_queries(conn, live, new, &checks, self.max_query_slowdown, floor).await?;
        Ok((findings, serde_json::to_value(timings).unwrap_or_default()))
    }

    /// The smoke queries on `table` after the switch: each must run; its rows and time
    /// (`{"query", "rows", "ms"}`) are returned for the report.
    ///
    /// # Errors
    /// A bad `--query`, or a query fails (the error names it).
    pub async fn smoke(
        &self,
        conn: &mut PgConnection,
        table: &TableName,
        defaults: &[QueryCheck],
    ) -> Result<Vec<Value>> {
        let mut results = Vec::new();
        for q in self.checks(defaults)? {
            let sql = q.sql.replace("{table}", &table.sql());
            let t0 = std::time::Instant::now();
            let (rows,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM ({sql}) q"
            )))
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| crate::Error::State(format!("smoke query {}: {e}", q.name)))?;
            let ms = t0.elapsed().as_secs_f64() * 1000.0;
            results.push(serde_json::json!({ "query": q.name, "rows": rows, "ms": ms }));
        }
        Ok(results)
    }
}

/// How one [`QueryCheck`] ran on both tables.
#[derive(Debug, Clone, Serialize)]
pub struct QueryTiming {
    /// The check's name.
    pub name: String,
    /// Best execution time on the live table (ms), of two runs after a warm-up.
    pub live_ms: f64,
    /// The same on the replacement.
    pub new_ms: f64,
    /// `new_ms / live_ms`.
    pub ratio: f64,
    /// The live table's plan (`EXPLAIN (ANALYZE, BUFFERS)` text).
    pub live_plan: String,
    /// The replacement's plan.
    pub new_plan: String,
}

/// Run every check on `live` and on `new` and veto where `new` is more than
/// `max_slowdown` times slower, ignoring differences under `floor` (small timings are
/// noise). Nothing to compare (no or an empty live table, or one with less than half the
/// rows of the replacement: timings of such tables say nothing) passes. Returns one finding per check
/// and the timings with both plans (for the report).
///
/// # Errors
/// A query fails (a typo in a configured query is an error, not a pass).
pub async fn compare_queries(
    conn: &mut PgConnection,
    live: &TableName,
    new: &TableName,
    checks: &[QueryCheck],
    max_slowdown: f64,
    floor: Duration,
) -> Result<(Vec<Finding>, Vec<QueryTiming>)> {
    let (mut findings, mut timings) = (Vec::new(), Vec::new());
    // Timings of tables of very different sizes say nothing (a first load into an empty
    // live table would always look slower): compare only when live holds at least half as
    // many rows as the replacement (planner estimates, kept by ANALYZE; a missing table
    // counts 0 rows).
    let (live_rows, new_rows): (f64, f64) = sqlx::query_as(
        "SELECT greatest(coalesce((SELECT reltuples FROM pg_class WHERE oid = to_regclass($1)), 0), 0)::float8,
                greatest(coalesce((SELECT reltuples FROM pg_class WHERE oid = to_regclass($2)), 0), 0)::float8",
    )
    .bind(live.sql())
    .bind(new.sql())
    .fetch_one(&mut *conn)
    .await?;
    if live_rows == 0.0 || live_rows < new_rows / 2.0 {
        for c in checks {
            findings.push(Finding::pass(
                format!("query:{}", c.name),
                format!("not compared: {live} holds about {live_rows:.0} rows, {new} about {new_rows:.0}"),
            ));
        }
        return Ok((findings, timings));
    }
    let floor_ms = floor.as_secs_f64() * 1000.0;
    for c in checks {
        let (live_ms, live_plan) = timed(conn, &c.sql, live).await?;
        let (new_ms, new_plan) = timed(conn, &c.sql, new).await?;
        let ratio = new_ms / live_ms.max(1e-3);
        let ok = new_ms <= live_ms * max_slowdown || new_ms - live_ms < floor_ms;
        findings.push(Finding::check(
            format!("query:{}", c.name),
            ok,
            format!(
                "{new_ms:.2} ms on {new} vs {live_ms:.2} ms on {live} ({ratio:.1}x; at most {max_slowdown}x or {floor_ms:.0} ms slower)"
            ),
        ));
        timings.push(QueryTiming {
            name: c.name.clone(),
            live_ms,
            new_ms,
            ratio,
            live_plan,
            new_plan,
        });
    }
    Ok((findings, timings))
}

/// Best of two timed runs after a warm-up: execution time (ms) and the plan's text.
async fn timed(conn: &mut PgConnection, sql: &str, table: &TableName) -> Result<(f64, String)> {
    let q = sql.replace("{table}", &table.sql());
    let explain = format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {q}");
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let (plan,): (Value,) = sqlx::query_as(sqlx::AssertSqlSafe(explain.clone()))
            .fetch_one(&mut *conn)
            .await?;
        if let Some(ms) = plan[0]["Execution Time"].as_f64() {
            best = best.min(ms);
        }
    }
    let text: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "EXPLAIN (ANALYZE, BUFFERS) {q}"
    )))
    .fetch_all(&mut *conn)
    .await?;
    let plan = text
        .into_iter()
        .map(|(l,)| l)
        .collect::<Vec<_>>()
        .join("\n");
    Ok((best, plan))
}

/// Keys (`key` columns) present in `live` and absent from `new`: how many, and up to
/// `sample` of them (as text, `a|b` for several columns). None when `live` does not exist.
///
/// # Errors
/// The database's.
pub async fn dropped_keys(
    conn: &mut PgConnection,
    live: &TableName,
    new: &TableName,
    key: &[&str],
    sample: i64,
) -> Result<Option<(i64, Vec<String>)>> {
    if !exists(conn, live).await? {
        return Ok(None);
    }
    let join = key
        .iter()
        .map(|k| format!("n.{0} = o.{0}", quote_ident(k)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let text = key
        .iter()
        .map(|k| format!("o.{}::text", quote_ident(k)))
        .collect::<Vec<_>>()
        .join(", ");
    let missing = format!(
        "FROM {} o WHERE NOT EXISTS (SELECT 1 FROM {} n WHERE {join})",
        live.sql(),
        new.sql()
    );
    let (n,): (i64,) = sqlx::query_as(sqlf!("SELECT count(*) {missing}"))
        .fetch_one(&mut *conn)
        .await?;
    let keys: Vec<(String,)> = sqlx::query_as(sqlf!(
        "SELECT concat_ws('|', {text}) {missing} ORDER BY 1 LIMIT {sample}"
    ))
    .fetch_all(&mut *conn)
    .await?;
    Ok(Some((n, keys.into_iter().map(|(k,)| k).collect())))
}

/// Free bytes on the file system of the server's data directory, when it can be known:
/// the server runs on this machine and the session may read `data_directory`
/// (superuser or `pg_read_all_settings`). `None` otherwise.
///
/// # Errors
/// The database's.
pub async fn free_space(conn: &mut PgConnection) -> Result<Option<u64>> {
    let dir: Option<(String,)> =
        sqlx::query_as("SELECT setting FROM pg_settings WHERE name = 'data_directory'")
            .fetch_optional(&mut *conn)
            .await?;
    let (local,): (bool,) = sqlx::query_as(
        "SELECT coalesce(inet_server_addr() <<= '127.0.0.0/8'::inet OR inet_server_addr() = '::1'::inet, true)",
    )
    .fetch_one(&mut *conn)
    .await?;
    let Some((dir,)) = dir.filter(|_| local) else {
        return Ok(None);
    };
    let Ok(out) = std::process::Command::new("df")
        .args(["-B1", "--output=avail", &dir])
        .output()
    else {
        return Ok(None);
    };
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok()))
}

/// A table's figures at one moment (the seed's `migration_stats_pre`): its rows, the
/// distinct values of one column, the range of an integer column.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct TableStats {
    /// The table.
    pub table: String,
    /// Whether it exists (every figure is 0 / None when it does not).
    pub exists: bool,
    /// Rows.
    pub rows: i64,
    /// `(column, distinct non-NULL values)`.
    pub distinct: Option<(String, i64)>,
    /// `(column, min, max)` of an integer column (None when the table is empty).
    pub range: Option<(String, Option<i64>, Option<i64>)>,
    /// When the figures were taken.
    pub snapshot_time: chrono::DateTime<chrono::Utc>,
}

impl TableStats {
    /// The figures of `table`: `count(*)`, `count(DISTINCT distinct_of)`, and
    /// `min`/`max` of the integer column `range_of`, in one scan.
    ///
    /// # Errors
    /// The database's (a column that does not exist, `range_of` not an integer).
    pub async fn take(
        conn: &mut PgConnection,
        table: &TableName,
        distinct_of: Option<&str>,
        range_of: Option<&str>,
    ) -> Result<TableStats> {
        let mut stats = TableStats {
            table: table.to_string(),
            snapshot_time: chrono::Utc::now(),
            ..TableStats::default()
        };
        if !exists(conn, table).await? {
            return Ok(stats);
        }
        let d = distinct_of.map_or("0".into(), |c| {
            format!("count(DISTINCT {})", quote_ident(c))
        });
        let (lo, hi) = range_of.map_or(("NULL::bigint".into(), "NULL::bigint".into()), |c| {
            let c = quote_ident(c);
            (format!("min({c})::bigint"), format!("max({c})::bigint"))
        });
        let (rows, distinct, min, max): (i64, i64, Option<i64>, Option<i64>) = sqlx::query_as(
            sqlf!("SELECT count(*), {d}, {lo}, {hi} FROM {}", table.sql()),
        )
        .fetch_one(&mut *conn)
        .await?;
        stats.exists = true;
        stats.rows = rows;
        stats.distinct = distinct_of.map(|c| (c.to_owned(), distinct));
        stats.range = range_of.map(|c| (c.to_owned(), min, max));
        Ok(stats)
    }

    /// A warning finding `check` that compares the figures `before` a switch with these:
    /// `rows 10 -> 12, distinct species_id 3 -> 3, min year 1990 -> 1990, max year ...`;
    /// it passes when no row was lost. None when the table did not exist before.
    pub fn comparison(&self, before: &TableStats, check: &str) -> Option<Finding> {
        if !before.exists {
            return None;
        }
        let mut parts = vec![format!("rows {} -> {}", before.rows, self.rows)];
        if let (Some((c, a)), Some((_, b))) = (&before.distinct, &self.distinct) {
            parts.push(format!("distinct {c} {a} -> {b}"));
        }
        if let (Some((c, a0, a1)), Some((_, b0, b1))) = (&before.range, &self.range) {
            let n = |v: &Option<i64>| v.map_or("NULL".into(), |v| v.to_string());
            parts.push(format!("min {c} {} -> {}", n(a0), n(b0)));
            parts.push(format!("max {c} {} -> {}", n(a1), n(b1)));
        }
        let mut f = Finding::warn(check, parts.join(", "));
        f.passed = self.rows >= before.rows;
        Some(f)
    }
}

/// What [`disk_check`] weighed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiskCheck {
    /// Bytes of input.
    pub input_bytes: u64,
    /// Bytes the run needs: `input_bytes x factor + copies`.
    pub needed_bytes: u64,
    /// Free bytes of the data directory, when they can be known ([`free_space`]).
    pub free_bytes: Option<u64>,
    /// `checked`, or why the estimate is only stated.
    pub note: String,
}

/// The disk pre-flight of a load: the space the run needs on the server (`input` bytes x
/// `factor` for the new table with its indexes, plus the sizes of the tables `copies` that
/// the run copies first) against [`free_space`]. A run that does not fit is refused with
/// the figures before anything is written.
///
/// # Errors
/// Not enough space ([`crate::Error::State`]), or the database's.
pub async fn disk_check(
    conn: &mut PgConnection,
    input: u64,
    factor: f64,
    copies: &[TableName],
) -> Result<DiskCheck> {
    let names: Vec<String> = copies.iter().map(|t| t.sql()).collect();
    let (copy_bytes,): (i64,) = sqlx::query_as(
        "SELECT coalesce(sum(pg_table_size(to_regclass(t))), 0)::bigint FROM unnest($1::text[]) t",
    )
    .bind(&names)
    .fetch_one(&mut *conn)
    .await?;
    let copy_bytes = copy_bytes as u64;
    let needed = (input as f64 * factor) as u64 + copy_bytes;
    let free = free_space(conn).await?;
    if let Some(free) = free
        && free < needed
    {
        return Err(crate::Error::State(format!(
            "not enough disk for the run: the data directory has {} MiB free, the run needs about {} MiB ({} MiB of input x {factor} for the new table and its indexes + {} MiB of backup copies); free space or skip the copies",
            free >> 20,
            needed >> 20,
            input >> 20,
            copy_bytes >> 20
        )));
    }
    let note = if free.is_none() {
        "the data directory's free space cannot be known from here (a remote server, or no right to read data_directory): the estimate is stated, not checked"
    } else {
        "checked"
    };
    Ok(DiskCheck {
        input_bytes: input,
        needed_bytes: needed,
        free_bytes: free,
        note: note.into(),
    })
}
