//! Monthly range partitioning derived from the data: one partition per month between the
//! smallest and largest partition key, plus a DEFAULT partition so no row can fall outside;
//! indexes and foreign keys added partition by partition (short locks); per-partition
//! counts and a partition-pruning check with `EXPLAIN`.
//!
//! Every identifier is quoted ([`crate::ident`]); bounds are quoted literals.
//!
//! ```
//! use chrono::NaiveDate;
//! use etl_sink_postgres::ident::TableName;
//! use etl_sink_postgres::partition::MonthlyPartitions;
//!
//! let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
//! let p = MonthlyPartitions::new(TableName::new("obs_p"), "created_at", d(2024, 11, 20), d(2025, 2, 3));
//! assert_eq!(p.months.len(), 4);
//! assert_eq!(p.partition_name(p.months[0]).name, "obs_p_y2024m11");
//! assert!(p.partitions_sql()[0].contains("FROM ('2024-11-01') TO ('2024-12-01')"));
//! ```

use chrono::{Datelike, NaiveDate};
use sqlx::{Connection, PgConnection};

use crate::Result;
use crate::ident::{TableName, fit_name, quote_ident, quote_literal};

/// The first day of `d`'s month.
pub fn month_floor(d: NaiveDate) -> NaiveDate {
    d.with_day(1).expect("day 1 exists")
}

/// The first day of the month after `d`'s.
pub fn next_month(d: NaiveDate) -> NaiveDate {
    let d = month_floor(d);
    if d.month() == 12 {
        NaiveDate::from_ymd_opt(d.year() + 1, 1, 1).expect("valid date")
    } else {
        NaiveDate::from_ymd_opt(d.year(), d.month() + 1, 1).expect("valid date")
    }
}

/// A table partitioned by month on a date or timestamp column, plus its DEFAULT partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthlyPartitions {
    /// The partitioned (parent) table.
    pub parent: TableName,
    /// The partition key column (`created_at`).
    pub key: String,
    /// First day of every month with a partition, ascending.
    pub months: Vec<NaiveDate>,
}

impl MonthlyPartitions {
    /// Partitions for every month from `first`'s to `last`'s, inclusive.
    pub fn new(parent: TableName, key: &str, first: NaiveDate, last: NaiveDate) -> Self {
        let (first, last) = (month_floor(first.min(last)), month_floor(first.max(last)));
        let mut months = Vec::new();
        let mut m = first;
        while m <= last {
            months.push(m);
            m = next_month(m);
        }
        MonthlyPartitions {
            parent,
            key: key.to_owned(),
            months,
        }
    }

    /// Partitions covering the data of `source.key` (its minimum to its maximum month),
    /// plus `months_ahead` months after the maximum (for rows written while the data moves).
    /// An empty source gets the current month. `NULL` keys and the rest go to the DEFAULT
    /// partition.
    pub async fn from_data(
        conn: &mut PgConnection,
        source: &TableName,
        parent: TableName,
        key: &str,
        months_ahead: u32,
    ) -> Result<Self> {
        let (min, max) = key_range(conn, source, key).await?;
        let today = chrono::Utc::now().date_naive();
        let (first, mut last) = (min.unwrap_or(today), max.unwrap_or(today));
        for _ in 0..months_ahead {
            last = next_month(last);
        }
        Ok(MonthlyPartitions::new(parent, key, first, last))
    }

    /// The partition of the month starting `month`: `<parent>_y2024m01`.
    pub fn partition_name(&self, month: NaiveDate) -> TableName {
        self.parent.with_name(fit_name(
            &self.parent.name,
            &format!("_y{:04}m{:02}", month.year(), month.month()),
        ))
    }

    /// The DEFAULT partition: `<parent>_default`.
    pub fn default_partition(&self) -> TableName {
        self.parent.suffixed("_default")
    }

    /// `CREATE TABLE parent (LIKE like ...) PARTITION BY RANGE (key)` and its primary key.
    ///
    /// Columns, defaults, NOT NULL and CHECK constraints are copied from `like`; indexes
    /// and keys are not (`LIKE ... INCLUDING ALL` would copy a primary key without the
    /// partition key, which PostgreSQL refuses on a partitioned table). The primary key is
    /// `primary_key` plus the partition key when it is not already in it.
    pub fn create_parent_sql(&self, like: &TableName, primary_key: &[&str]) -> Vec<String> {
        let mut pk: Vec<String> = primary_key.iter().map(|c| quote_ident(c)).collect();
        if !primary_key.contains(&self.key.as_str()) {
            pk.push(quote_ident(&self.key));
        }
        vec![
            format!(
                "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED \
                 INCLUDING STORAGE INCLUDING COMMENTS) PARTITION BY RANGE ({})",
                self.parent.sql(),
                like.sql(),
                quote_ident(&self.key)
            ),
            format!(
                "ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY ({})",
                self.parent.sql(),
                quote_ident(&fit_name(&self.parent.name, "_pkey")),
                pk.join(", ")
            ),
        ]
    }

    /// One `CREATE TABLE ... PARTITION OF` per month, then the DEFAULT partition.
    pub fn partitions_sql(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .months
            .iter()
            .map(|&m| {
                format!(
                    "CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})",
                    self.partition_name(m).sql(),
                    self.parent.sql(),
                    quote_literal(&m.format("%Y-%m-%d").to_string()),
                    quote_literal(&next_month(m).format("%Y-%m-%d").to_string())
                )
            })
            .collect();
        out.push(format!(
            "CREATE TABLE {} PARTITION OF {} DEFAULT",
            self.default_partition().sql(),
            self.parent.sql()
        ));
        out
    }

    /// Every statement [`MonthlyPartitions::create`] runs.
    pub fn create_sql(&self, like: &TableName, primary_key: &[&str]) -> Vec<String> {
        let mut v = self.create_parent_sql(like, primary_key);
        v.extend(self.partitions_sql());
        v
    }

    /// Create the parent, its primary key and every partition in one transaction.
    pub async fn create(
        &self,
        conn: &mut PgConnection,
        like: &TableName,
        primary_key: &[&str],
    ) -> Result<()> {
        let mut tx = conn.begin().await?;
        for s in self.create_sql(like, primary_key) {
            sqlx::query(sqlx::AssertSqlSafe(s))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// `DROP TABLE IF EXISTS parent` (its partitions go with it).
    pub fn drop_sql(&self) -> String {
        format!("DROP TABLE IF EXISTS {}", self.parent.sql())
    }
}

/// The first days of the months of the smallest and largest `key` of `table` (`None` when
/// the table is empty). The dates follow the session's `TimeZone` for `timestamptz` keys,
/// as partition bounds do.
pub async fn key_range(
    conn: &mut PgConnection,
    table: &TableName,
    key: &str,
) -> Result<(Option<NaiveDate>, Option<NaiveDate>)> {
    let k = quote_ident(key);
    let row: (Option<NaiveDate>, Option<NaiveDate>) = sqlx::query_as(sqlf!(
        "SELECT date_trunc('month', min({k}))::date, date_trunc('month', max({k}))::date FROM {}",
        table.sql()
    ))
    .fetch_one(conn)
    .await?;
    Ok(row)
}

/// The first and last months (first days) of the contiguous range from the earliest to
/// the latest month of `table` holding at least `min_rows` rows of `key`: stray rows far
/// outside (a 1970 clock, a 2099 placeholder) do not create hundreds of empty partitions
/// and go to the DEFAULT partition instead. `None` when no month qualifies.
pub async fn dense_key_range(
    conn: &mut PgConnection,
    table: &TableName,
    key: &str,
    min_rows: i64,
) -> Result<Option<(NaiveDate, NaiveDate)>> {
    let k = quote_ident(key);
    let row: (Option<NaiveDate>, Option<NaiveDate>) = sqlx::query_as(sqlf!(
        "SELECT min(m), max(m) FROM (SELECT date_trunc('month', {k})::date AS m FROM {} WHERE {k} IS NOT NULL
           GROUP BY 1 HAVING count(*) >= $1) x",
        table.sql()
    ))
    .bind(min_rows)
    .fetch_one(conn)
    .await?;
    Ok(match row {
        (Some(a), Some(b)) => Some((a, b)),
        _ => None,
    })
}

/// The partitions of `parent` (direct children), in bound order, DEFAULT last.
pub async fn partitions(conn: &mut PgConnection, parent: &TableName) -> Result<Vec<TableName>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT n.nspname::text, c.relname::text
           FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE i.inhparent = to_regclass($1)
          ORDER BY pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT', c.relname",
    )
    .bind(parent.sql())
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(s, n)| match parent.schema {
            Some(_) => TableName::qualified(s, n),
            None => TableName::new(n),
        })
        .collect())
}

/// Rows per partition (every partition, empty ones included), in bound order.
pub async fn partition_counts(
    conn: &mut PgConnection,
    parent: &TableName,
) -> Result<Vec<(String, i64)>> {
    let mut out = Vec::new();
    for p in partitions(conn, parent).await? {
        let (n,): (i64,) = sqlx::query_as(sqlf!("SELECT count(*) FROM ONLY {}", p.sql()))
            .fetch_one(&mut *conn)
            .await?;
        out.push((p.name, n));
    }
    Ok(out)
}

/// What `EXPLAIN` showed for a query bounded to one month.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PruningCheck {
    /// The query explained.
    pub query: String,
    /// Relations the plan scans.
    pub scanned: Vec<String>,
    /// Whether exactly one partition, not the DEFAULT one, is scanned.
    pub pruned: bool,
}

/// `EXPLAIN` a `count(*)` of `parent` bounded to the month starting `month` on `key` and
/// check the plan scans a single month partition (partition pruning works; the DEFAULT
/// partition is pruned too).
pub async fn check_pruning(
    conn: &mut PgConnection,
    parent: &TableName,
    key: &str,
    month: NaiveDate,
) -> Result<PruningCheck> {
    let query = format!(
        "SELECT count(*) FROM {} WHERE {k} >= {} AND {k} < {}",
        parent.sql(),
        quote_literal(&month.format("%Y-%m-%d").to_string()),
        quote_literal(&next_month(month).format("%Y-%m-%d").to_string()),
        k = quote_ident(key)
    );
    let (plan,): (serde_json::Value,) = sqlx::query_as(sqlf!("EXPLAIN (FORMAT JSON) {query}"))
        .fetch_one(&mut *conn)
        .await?;
    let (default,): (Option<String>,) = sqlx::query_as(
        "SELECT (SELECT c.relname::text FROM pg_partitioned_table t JOIN pg_class c ON c.oid = t.partdefid WHERE t.partrelid = to_regclass($1))",
    )
    .bind(parent.sql())
    .fetch_one(&mut *conn)
    .await?;
    let mut scanned = Vec::new();
    collect_relations(&plan, &mut scanned);
    scanned.sort();
    scanned.dedup();
    let pruned = scanned.len() == 1 && Some(&scanned[0]) != default.as_ref();
    Ok(PruningCheck {
        query,
        scanned,
        pruned,
    })
}

fn collect_relations(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(serde_json::Value::String(r)) = m.get("Relation Name") {
                out.push(r.clone());
            }
            m.values().for_each(|x| collect_relations(x, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_relations(x, out)),
        _ => {}
    }
}

/// Build an index on a partitioned table without blocking writes for the whole build:
/// `CREATE INDEX ... ON ONLY parent` (invalid until every partition has its index), then
/// `CREATE INDEX CONCURRENTLY` on each partition and `ALTER INDEX ... ATTACH PARTITION`.
/// Idempotent (existing indexes are kept), so a killed build can be run again.
///
/// Must not run inside a transaction (`CONCURRENTLY`).
pub async fn create_index(
    conn: &mut PgConnection,
    parent: &TableName,
    name: &str,
    columns: &[&str],
) -> Result<()> {
    let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    let cols = cols.join(", ");
    sqlx::query(sqlf!(
        "CREATE INDEX IF NOT EXISTS {} ON ONLY {} ({cols})",
        quote_ident(name),
        parent.sql()
    ))
    .execute(&mut *conn)
    .await?;
    for p in partitions(conn, parent).await? {
        let child = fit_name(&p.name, &format!("_{}", short_hash(name)));
        // A killed CONCURRENTLY build leaves an invalid index: drop it and build again.
        let (invalid,): (bool,) = sqlx::query_as(
            "SELECT coalesce((SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)), false)",
        )
        .bind(p.with_name(child.clone()).sql())
        .fetch_one(&mut *conn)
        .await?;
        if invalid {
            sqlx::query(sqlf!("DROP INDEX {}", p.with_name(child.clone()).sql()))
                .execute(&mut *conn)
                .await?;
        }
        sqlx::query(sqlf!(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} ({cols})",
            quote_ident(&child),
            p.sql()
        ))
        .execute(&mut *conn)
        .await?;
        let (attached,): (bool,) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass($1) AND inhparent = to_regclass($2))",
        )
        .bind(p.with_name(child.clone()).sql())
        .bind(parent.with_name(name.to_owned()).sql())
        .fetch_one(&mut *conn)
        .await?;
        if !attached {
            sqlx::query(sqlf!(
                "ALTER INDEX {} ATTACH PARTITION {}",
                parent.with_name(name.to_owned()).sql(),
                p.with_name(child).sql()
            ))
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

fn short_hash(s: &str) -> String {
    let h = s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    format!("{:06x}", h & 0xff_ffff)
}

/// A foreign key to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    /// Constraint name on the parent.
    pub name: String,
    /// Referencing columns.
    pub columns: Vec<String>,
    /// Referenced table.
    pub references: TableName,
    /// Referenced columns.
    pub ref_columns: Vec<String>,
}

impl ForeignKey {
    /// `FOREIGN KEY (cols) REFERENCES table (ref_cols)`.
    pub fn definition(&self) -> String {
        let q = |v: &[String]| {
            v.iter()
                .map(|c| quote_ident(c))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "FOREIGN KEY ({}) REFERENCES {} ({})",
            q(&self.columns),
            self.references.sql(),
            q(&self.ref_columns)
        )
    }
}

/// Add a foreign key to a partitioned table with short locks: on each partition it is
/// added `NOT VALID` (no scan) and then `VALIDATE`d (a scan that does not block writes),
/// each in its own transaction; finally it is added on the parent, which adopts the
/// validated partition constraints. (PostgreSQL before 18 refuses `NOT VALID` on a
/// partitioned table.) Idempotent.
///
/// The statements run under the session's `lock_timeout`.
pub async fn add_foreign_key(
    conn: &mut PgConnection,
    parent: &TableName,
    fk: &ForeignKey,
) -> Result<()> {
    let def = fk.definition();
    for p in partitions(conn, parent).await? {
        let name = fit_name(&p.name, &format!("_{}", short_hash(&fk.name)));
        if !has_constraint(conn, &p, &name).await? {
            sqlx::query(sqlf!(
                "ALTER TABLE {} ADD CONSTRAINT {} {def} NOT VALID",
                p.sql(),
                quote_ident(&name)
            ))
            .execute(&mut *conn)
            .await?;
        }
        sqlx::query(sqlf!(
            "ALTER TABLE {} VALIDATE CONSTRAINT {}",
            p.sql(),
            quote_ident(&name)
        ))
        .execute(&mut *conn)
        .await?;
    }
    if !has_constraint(conn, parent, &fk.name).await? {
        sqlx::query(sqlf!(
            "ALTER TABLE {} ADD CONSTRAINT {} {def}",
            parent.sql(),
            quote_ident(&fk.name)
        ))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Whether `table` has a constraint named `name`.
pub async fn has_constraint(
    conn: &mut PgConnection,
    table: &TableName,
    name: &str,
) -> Result<bool> {
    let (b,): (bool,) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass($1) AND conname = $2)",
    )
    .bind(table.sql())
    .bind(name)
    .fetch_one(conn)
    .await?;
    Ok(b)
}

/// Drop the foreign key `name` of the partitioned `table`, and the copies of it left on
/// partitions by a half-done [`add_foreign_key`] (added to a partition before the parent).
///
/// # Errors
/// The database's.
pub async fn drop_foreign_key(
    conn: &mut PgConnection,
    table: &TableName,
    name: &str,
) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
        table.sql(),
        quote_ident(name)
    )))
    .execute(&mut *conn)
    .await?;
    // Partition constraints added before the parent's (a half-done step) stay behind.
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.conrelid::regclass::text, c.conname::text FROM pg_constraint c
           JOIN pg_inherits i ON i.inhrelid = c.conrelid
          WHERE i.inhparent = to_regclass($1) AND c.contype = 'f' AND c.conparentid = 0",
    )
    .bind(table.sql())
    .fetch_all(&mut *conn)
    .await?;
    for (rel, con) in rows {
        // `rel` comes from regclass output: already quoted as needed.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER TABLE {rel} DROP CONSTRAINT IF EXISTS {}",
            quote_ident(&con)
        )))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The last month to have a partition when `ahead` months are premade: `ahead` months
/// after the later of `last` (the data's last month) and `today`'s month.
pub fn premade_until(last: NaiveDate, today: NaiveDate, ahead: u32) -> NaiveDate {
    let mut m = month_floor(last.max(today));
    for _ in 0..ahead {
        m = next_month(m);
    }
    m
}

/// The first days of the months that have a partition of their own under `parent`
/// (from the partition bounds; the DEFAULT partition is not one), ascending.
pub async fn partitioned_months(
    conn: &mut PgConnection,
    parent: &TableName,
) -> Result<Vec<NaiveDate>> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
          WHERE i.inhparent = to_regclass($1) AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'",
    )
    .bind(parent.sql())
    .fetch_all(conn)
    .await?;
    let mut out: Vec<NaiveDate> = rows
        .iter()
        .filter_map(|(b,)| {
            // FOR VALUES FROM ('2024-01-01 00:00:00+00') TO ('2024-02-01 00:00:00+00')
            let from = b.split("FROM ('").nth(1)?;
            NaiveDate::parse_from_str(from.get(..10)?, "%Y-%m-%d").ok()
        })
        .map(month_floor)
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// The DEFAULT partition of `parent`, if it has one.
pub async fn default_partition_of(
    conn: &mut PgConnection,
    parent: &TableName,
) -> Result<Option<TableName>> {
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT n.nspname::text, c.relname::text FROM pg_partitioned_table t
           JOIN pg_class c ON c.oid = t.partdefid JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE t.partrelid = to_regclass($1)",
    )
    .bind(parent.sql())
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(s, n)| match parent.schema {
        Some(_) => TableName::qualified(s, n),
        None => TableName::new(n),
    }))
}

/// One month [`maintain`] gave a partition.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MaintainedMonth {
    /// First day of the month.
    pub month: NaiveDate,
    /// The new partition.
    pub partition: String,
    /// Rows moved out of the DEFAULT partition into it.
    pub moved_rows: i64,
}

/// Partition maintenance (from cron, say): every month after the last partitioned month
/// of `parent` up to `until` (inclusive) gets its partition, and the rows of that month
/// waiting in the DEFAULT partition move into it — one transaction per month:
///
/// 1. `LOCK TABLE <default> IN ACCESS EXCLUSIVE MODE` (waits at most `lock_timeout`):
///    until the commit, reads and writes that touch the DEFAULT partition wait (queries
///    pruned to monthly partitions do not); the parent itself is not locked exclusively.
/// 2. `CREATE TABLE <partition> (LIKE <parent> ...)` with a `CHECK` of the month's
///    bounds, so the attach need not scan it.
/// 3. `WITH moved AS (DELETE FROM ONLY <default> WHERE <month> RETURNING ...) INSERT INTO
///    <partition> ...`: the strays, moved in one statement.
/// 4. `ALTER TABLE <parent> ATTACH PARTITION <partition> FOR VALUES FROM .. TO ..`: a
///    `SHARE UPDATE EXCLUSIVE` lock on the parent (writers and readers go on), a scan of
///    the DEFAULT partition (it must hold no row of the month any more); the parent's
///    indexes and foreign keys are built on the new partition under the lock (it holds
///    only the strays). Then the `CHECK` is dropped.
///
/// A month whose strays are referenced by foreign keys of other tables is refused (the
/// delete would fire their `ON DELETE` actions): nothing of that month changes. Months
/// before the first partitioned month are left alone (their rows stay in DEFAULT).
pub async fn maintain(
    conn: &mut PgConnection,
    parent: &TableName,
    key: &str,
    until: NaiveDate,
    lock_timeout: &str,
) -> Result<Vec<MaintainedMonth>> {
    let default = default_partition_of(conn, parent).await?.ok_or_else(|| {
        crate::Error::State(format!(
            "{parent} is not a partitioned table with a DEFAULT partition: nothing to maintain (run the migration first)"
        ))
    })?;
    let have = partitioned_months(conn, parent).await?;
    let Some(&last) = have.last() else {
        return Err(crate::Error::State(format!(
            "{parent} has no monthly partition to continue from"
        )));
    };
    // Partitions are named like the DEFAULT one: `<prefix>_default` -> `<prefix>_y2027m04`.
    let prefix = default
        .name
        .strip_suffix("_default")
        .unwrap_or(&parent.name)
        .to_owned();
    let naming = MonthlyPartitions {
        parent: default.with_name(prefix),
        key: key.to_owned(),
        months: Vec::new(),
    };
    let cols: Vec<String> = crate::move_data::columns(conn, parent)
        .await?
        .into_iter()
        .map(|(c, _)| quote_ident(&c))
        .collect();
    let cols = cols.join(", ");
    let inbound = inbound_foreign_keys(conn, parent).await?;
    let k = quote_ident(key);
    let mut out = Vec::new();
    let mut m = next_month(last);
    while m <= month_floor(until) {
        let part = naming.partition_name(m);
        let (from, to) = (
            quote_literal(&m.format("%Y-%m-%d").to_string()),
            quote_literal(&next_month(m).format("%Y-%m-%d").to_string()),
        );
        let range = format!("{k} >= {from} AND {k} < {to}");
        let mut tx = conn.begin().await?;
        etl_postgres::catalog::set_lock_timeout(
            &mut tx,
            lock_timeout,
            etl_postgres::catalog::Scope::Transaction,
        )
        .await?;
        sqlx::query(sqlf!(
            "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
            default.sql()
        ))
        .execute(&mut *tx)
        .await?;
        for fk in &inbound {
            let on = (fk.columns.iter().zip(&fk.ref_columns))
                .map(|(c, r)| format!("d.{} = c.{}", quote_ident(r), quote_ident(c)))
                .collect::<Vec<_>>()
                .join(" AND ");
            let (n,): (i64,) = sqlx::query_as(sqlf!(
                "SELECT count(*) FROM {} c WHERE EXISTS (SELECT 1 FROM ONLY {} d WHERE {on} AND d.{range})",
                fk.table,
                default.sql()
            ))
            .fetch_one(&mut *tx)
            .await?;
            if n > 0 {
                return Err(crate::Error::State(format!(
                    "maintain {parent}: {n} row(s) of {} reference rows of {} in the DEFAULT partition (foreign key {}); moving them would fire its ON DELETE action, so month {m} keeps no partition of its own — move those rows by hand or drop the key for the maintenance",
                    fk.table,
                    m.format("%Y-%m"),
                    fk.name
                )));
            }
        }
        for s in [
            format!(
                "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING STORAGE)",
                part.sql(),
                parent.sql()
            ),
            format!(
                "ALTER TABLE {} ADD CONSTRAINT ferry_month_bounds CHECK ({k} IS NOT NULL AND {range})",
                part.sql()
            ),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(s))
                .execute(&mut *tx)
                .await?;
        }
        let moved = sqlx::query(sqlf!(
            "WITH moved AS (DELETE FROM ONLY {d} WHERE {range} RETURNING {cols}) INSERT INTO {p} ({cols}) SELECT {cols} FROM moved",
            d = default.sql(),
            p = part.sql()
        ))
        .execute(&mut *tx)
        .await?
        .rows_affected() as i64;
        for s in [
            format!(
                "ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({from}) TO ({to})",
                parent.sql(),
                part.sql()
            ),
            format!(
                "ALTER TABLE {} DROP CONSTRAINT ferry_month_bounds",
                part.sql()
            ),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(s))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        out.push(MaintainedMonth {
            month: m,
            partition: part.to_string(),
            moved_rows: moved,
        });
        m = next_month(m);
    }
    Ok(out)
}

/// A foreign key of another table referencing a table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InboundForeignKey {
    /// The constraint's name.
    pub name: String,
    /// The referencing table (as `regclass` prints it: quoted as needed).
    pub table: String,
    /// Its columns.
    pub columns: Vec<String>,
    /// The referenced columns.
    pub ref_columns: Vec<String>,
    /// `pg_get_constraintdef` (`FOREIGN KEY (..) REFERENCES t(..) ...`).
    pub definition: String,
    /// Whether it is validated.
    pub validated: bool,
}

impl InboundForeignKey {
    /// Whether it can reference a table whose only unique key is `key_columns` (a
    /// partitioned table's primary key: the partition key included): the referenced
    /// columns must be exactly those.
    pub fn fits(&self, key_columns: &[&str]) -> bool {
        let mut a: Vec<&str> = self.ref_columns.iter().map(String::as_str).collect();
        let mut b = key_columns.to_vec();
        a.sort_unstable();
        b.sort_unstable();
        a == b
    }
}

/// The foreign keys of other tables referencing `table` (top-level constraints; not the
/// table's own self-references, nor the copies PostgreSQL keeps per partition).
pub async fn inbound_foreign_keys(
    conn: &mut PgConnection,
    table: &TableName,
) -> Result<Vec<InboundForeignKey>> {
    // name, referencing table, its columns, referenced columns, definition, validated
    type Row = (String, String, Vec<String>, Vec<String>, String, bool);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT c.conname::text, c.conrelid::regclass::text,
                ARRAY(SELECT attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
                        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i),
                ARRAY(SELECT attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
                        JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i),
                pg_get_constraintdef(c.oid), c.convalidated
           FROM pg_constraint c
          WHERE c.contype = 'f' AND c.confrelid = to_regclass($1) AND c.conrelid <> c.confrelid
            AND c.conparentid = 0
          ORDER BY 2, 1",
    )
    .bind(table.sql())
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(name, table, columns, ref_columns, definition, validated)| InboundForeignKey {
                name,
                table,
                columns,
                ref_columns,
                definition,
                validated,
            },
        )
        .collect())
}

/// `VALIDATE CONSTRAINT` every foreign key of other tables that references `table` and is
/// not validated yet (after [`crate::move_data::swap_names`] re-pointed them `NOT VALID`):
/// a scan of the referencing table under `SHARE UPDATE EXCLUSIVE` (its writers go on) and
/// `ROW SHARE` on `table`. Returns the names validated.
pub async fn validate_inbound_foreign_keys(
    conn: &mut PgConnection,
    table: &TableName,
) -> Result<Vec<String>> {
    let mut done = Vec::new();
    for fk in inbound_foreign_keys(conn, table).await? {
        if fk.validated {
            continue;
        }
        sqlx::query(sqlf!(
            "ALTER TABLE {} VALIDATE CONSTRAINT {}",
            fk.table,
            quote_ident(&fk.name)
        ))
        .execute(&mut *conn)
        .await?;
        done.push(format!("{}.{}", fk.table, fk.name));
    }
    Ok(done)
}

/// The verification of a table moved into a partitioned one ([`verify_partitioned`]).
#[derive(Debug, Clone)]
pub struct TableVerification {
    /// Counts, anti-joins and hashes.
    pub cmp: crate::move_data::TableComparison,
    /// Whether pruning was confirmed.
    pub pruned: bool,
    /// Checks for the report.
    pub findings: Vec<etl_core::Finding>,
    /// Figures for the report (`read`, `loaded`, partitions, pruning).
    pub details: serde_json::Value,
}

/// Compare `old` with `new` (the partitioned `name` table, by range of `key`, primary key
/// `pk`; counts, anti-joins both ways, content hash), count rows per partition, and confirm partition pruning with `EXPLAIN` on the busiest month. With
/// `writes_allowed` (an online move already swapped: the application writes to the new
/// table) rows in `new` only are a warning; rows missing from `new` always fail.
pub async fn verify_partitioned(
    conn: &mut PgConnection,
    name: &str,
    old: &TableName,
    new: &TableName,
    key: &str,
    pk: &str,
    writes_allowed: bool,
) -> Result<TableVerification> {
    let cmp = crate::move_data::compare_tables(conn, old, new, &[pk], &[]).await?;
    let parts = partition_counts(conn, new).await?;
    let busiest: Option<(NaiveDate,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT date_trunc('month', {k})::date FROM {} GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1",
        new.sql(),
        k = quote_ident(key)
    )))
    .fetch_optional(&mut *conn)
    .await?;
    let pruning = match busiest {
        Some((m,)) => Some(check_pruning(conn, new, key, m).await?),
        None => None,
    };
    let mut findings = vec![etl_core::Finding::check(
        format!("{name}: no row missing"),
        cmp.missing == 0,
        format!(
            "{} row(s) of {old} are not in {new} (anti-join by {pk})",
            cmp.missing
        ),
    )];
    let same = cmp.extra == 0 && cmp.old_hash == cmp.new_hash && cmp.old_rows == cmp.new_rows;
    let msg = format!(
        "{} rows in {old}, {} in {new}, {} only in {new}; content hash {} vs {}",
        cmp.old_rows, cmp.new_rows, cmp.extra, cmp.old_hash, cmp.new_hash
    );
    findings.push(if same {
        etl_core::Finding::pass(format!("{name}: same rows and content"), msg)
    } else if writes_allowed {
        etl_core::Finding::warn(
            format!("{name}: same rows and content"),
            format!("{msg} (rows written since the swap)"),
        )
    } else {
        etl_core::Finding::fail(format!("{name}: same rows and content"), msg)
    });
    let pruned = pruning.as_ref().is_some_and(|p| p.pruned);
    if let Some(p) = &pruning {
        findings.push(etl_core::Finding::check(
            format!("{name}: partition pruning"),
            p.pruned,
            format!("EXPLAIN {} scans {:?}", p.query, p.scanned),
        ));
    }
    let default_rows = parts.last().map_or(0, |(_, n)| *n);
    findings.push(etl_core::Finding::pass(
        format!("{name}: default partition"),
        format!(
            "{default_rows} row(s) outside every monthly partition are in the DEFAULT partition"
        ),
    ));
    let loaded = if same {
        cmp.new_rows
    } else {
        cmp.old_rows - cmp.missing
    };
    let details = serde_json::json!({
        "read": cmp.old_rows,
        "loaded": loaded,
        "comparison": cmp,
        "partition_counts": parts.iter().map(|(p, n)| serde_json::json!({"partition": p, "rows": n})).collect::<Vec<_>>(),
        "default_rows": default_rows,
        "pruning": pruning,
    });
    Ok(TableVerification {
        cmp,
        pruned,
        findings,
        details,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn months_span_the_data_inclusive() {
        let p = MonthlyPartitions::new(
            TableName::new("t_p"),
            "created_at",
            d(2024, 1, 31),
            d(2025, 11, 1),
        );
        assert_eq!(p.months.len(), 23);
        assert_eq!(p.months[0], d(2024, 1, 1));
        assert_eq!(*p.months.last().unwrap(), d(2025, 11, 1));
        // Reversed bounds are tolerated.
        let q = MonthlyPartitions::new(
            TableName::new("t_p"),
            "created_at",
            d(2025, 11, 1),
            d(2024, 1, 31),
        );
        assert_eq!(p.months, q.months);
        assert_eq!(next_month(d(2024, 12, 15)), d(2025, 1, 1));
    }

    #[test]
    fn ddl_quotes_names_and_adds_the_key_to_the_primary_key() {
        let p = MonthlyPartitions::new(
            TableName::new("we\"ird"),
            "created at",
            d(2024, 12, 3),
            d(2025, 1, 3),
        );
        let sql = p.create_sql(&TableName::new("src"), &["id"]);
        assert_eq!(sql.len(), 2 + 2 + 1);
        assert!(
            sql[0].starts_with("CREATE TABLE \"we\"\"ird\" (LIKE \"src\""),
            "{}",
            sql[0]
        );
        assert!(sql[0].ends_with("PARTITION BY RANGE (\"created at\")"));
        assert!(
            sql[1].ends_with("PRIMARY KEY (\"id\", \"created at\")"),
            "{}",
            sql[1]
        );
        assert_eq!(
            sql[2],
            "CREATE TABLE \"we\"\"ird_y2024m12\" PARTITION OF \"we\"\"ird\" FOR VALUES FROM ('2024-12-01') TO ('2025-01-01')"
        );
        assert_eq!(
            sql[4],
            "CREATE TABLE \"we\"\"ird_default\" PARTITION OF \"we\"\"ird\" DEFAULT"
        );
        let with_key = p.create_parent_sql(&TableName::new("src"), &["id", "created at"]);
        assert!(with_key[1].ends_with("PRIMARY KEY (\"id\", \"created at\")"));
    }

    #[test]
    fn explain_relations_are_collected() {
        let v = serde_json::json!([{"Plan": {"Node Type": "Aggregate", "Plans": [
            {"Node Type": "Seq Scan", "Relation Name": "t_y2024m01"}]}}]);
        let mut out = Vec::new();
        collect_relations(&v, &mut out);
        assert_eq!(out, ["t_y2024m01"]);
    }
}
