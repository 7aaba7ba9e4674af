//! The partition-specific steps (the SQL ones are files under
//! `examples/data/partitioning/migrations/`; pre-flight, move, swap and cleanup come from
//! [`etl_sink_postgres::steps`]): partitioned tables, verification, foreign keys, indexes,
//! ANALYZE — each with its undo.

use chrono::NaiveDate;
use etl_core::migration::{Step, StepCx, StepKind, StepOutput};
use etl_core::{BoxError, Finding, RunReport, RunStatus, UnitStatus, UnitSummary};
use etl_sink_postgres::Result;
use etl_sink_postgres::ident::{TableName, quote_ident};
use etl_sink_postgres::move_data::{self, compare_tables};
use etl_sink_postgres::partition::{self, ForeignKey, MonthlyPartitions};
use etl_sink_postgres::staging::{count_rows, exists};
use etl_sink_postgres::steps::MoveTable;
use serde_json::{Value, json};
use sqlx::{Connection as _, PgConnection};

/// The partition key.
pub const KEY: &str = "created_at";
/// The primary key of the observation tables.
pub const PK: &str = "observation_id";

/// One observation table of the migration.
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// Live, partitioned (`<name>_partitioned` while built) and previous (`<name>_old`).
    pub t: MoveTable,
    /// Foreign keys the new table gets.
    pub foreign_keys: Vec<ForeignKey>,
    /// Indexes the new table gets: (name, columns).
    pub indexes: Vec<(String, Vec<String>)>,
}

/// The two observation tables with their keys and indexes.
pub fn tables() -> Vec<TableSpec> {
    let fk = |table: &str, col: &str, parent: &str| ForeignKey {
        name: format!("{table}_{col}_fkey"),
        columns: vec![col.to_owned()],
        references: TableName::new(parent),
        ref_columns: vec![col.to_owned()],
    };
    let idx = |name: String, cols: &[&str]| (name, cols.iter().map(|c| (*c).to_owned()).collect());
    super::schema::TABLES
        .into_iter()
        .map(|t| {
            let short = t.replace("_observations", "_obs");
            TableSpec {
                t: MoveTable::new(TableName::new(t), "_partitioned"),
                foreign_keys: [
                    "submission_id:submissions",
                    "site_id:sites",
                    "program_id:pilot_programs",
                ]
                .map(|s| {
                    s.split_once(':')
                        .map(|(c, p)| fk(t, c, p))
                        .expect("col:parent")
                })
                .to_vec(),
                // Names distinct from the old table's (index names are per schema).
                indexes: vec![
                    idx(format!("{short}_p_site_created_idx"), &["site_id", KEY]),
                    idx(
                        format!("{short}_p_program_created_idx"),
                        &["program_id", KEY],
                    ),
                    idx(format!("{short}_p_submission_idx"), &["submission_id"]),
                ],
            }
        })
        .collect()
}

/// What the partition steps see.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The database (its sessions wait at most `--lock-timeout` for a lock).
    pub opts: sqlx::postgres::PgConnectOptions,
    /// The tables.
    pub tables: Vec<TableSpec>,
    /// Online move (the verification then tolerates rows written after the swap).
    pub online: bool,
    /// Months holding fewer than this share of a table's rows (outside the dense range)
    /// get no partition of their own (their rows go to DEFAULT).
    pub min_month_share: f64,
}

impl Ctx {
    async fn conn(&self) -> std::result::Result<PgConnection, BoxError> {
        Ok(PgConnection::connect_with(&self.opts).await?)
    }

    async fn partitions_for(
        &self,
        conn: &mut PgConnection,
        t: &MoveTable,
    ) -> Result<MonthlyPartitions> {
        let n = count_rows(conn, &t.live).await?;
        // At least 10 rows, so a handful of strays in a small table do not count as busy.
        let min_rows = ((n as f64) * self.min_month_share).ceil().max(10.0) as i64;
        let today = chrono::Utc::now().date_naive();
        let (first, last) = partition::dense_key_range(conn, &t.live, KEY, min_rows)
            .await?
            .unwrap_or((today, today));
        // One spare month after the data; later rows go to DEFAULT until their month's
        // partition is added.
        Ok(MonthlyPartitions::new(
            t.new.clone(),
            KEY,
            first,
            partition::next_month(last),
        ))
    }

    /// The table the foreign keys and indexes go on: the live one after the swap.
    async fn target(&self, conn: &mut PgConnection, t: &MoveTable) -> Result<TableName> {
        Ok(if t.swapped(conn).await? {
            t.live.clone()
        } else {
            t.new.clone()
        })
    }
}

/// A step of `kind` running `f` for every table with one connection; the messages are
/// joined and the details keyed by table.
macro_rules! per_table {
    ($name:expr, $kind:expr, |$c:ident, $cx:ident, $conn:ident, $spec:ident| $body:expr) => {
        Step::new($name, $kind, |$c: &Ctx, $cx: &StepCx| {
            Box::pin(async move {
                let mut $conn = $c.conn().await?;
                let (mut msgs, mut details) = (Vec::new(), serde_json::Map::new());
                for $spec in &$c.tables {
                    let (m, d): (String, Value) = $body;
                    msgs.push(m);
                    if !d.is_null() {
                        details.insert($spec.t.live.name.clone(), d);
                    }
                }
                Ok(StepOutput::message(msgs.join("; ")).with_details(Value::Object(details)))
            })
        })
    };
}

/// `partitioned_tables`: monthly partitions from the data, plus DEFAULT (in a dry run:
/// their SQL). Undone by dropping them.
pub fn partitioned_tables() -> Step<Ctx> {
    per_table!("partitioned_tables", StepKind::Prepare, |c, cx, conn, s| {
        let t = &s.t;
        if cx.dry_run {
            let p = c.partitions_for(&mut conn, t).await?;
            (format!("would create {} with {} partitions", t.new, p.months.len() + 1), json!({ "sql": p.create_sql(&t.live, &[PK]) }))
        } else if exists(&mut conn, &t.new).await? || t.swapped(&mut conn).await? {
            (format!("{} exists", t.new), Value::Null)
        } else {
            let p = c.partitions_for(&mut conn, t).await?;
            p.create(&mut conn, &t.live, &[PK]).await?;
            (
                format!("{}: {} monthly partitions + DEFAULT", p.parent, p.months.len()),
                json!({ "first_month": p.months.first(), "last_month": p.months.last(),
                        "partitions": p.months.len() + 1, "default": p.default_partition().to_string() }),
            )
        }
    })
    .in_dry_run()
    .undo(|c: &Ctx, _cx| {
        Box::pin(async move {
            let mut conn = c.conn().await?;
            for s in &c.tables {
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {}", s.t.new.sql())))
                    .execute(&mut conn)
                    .await?;
            }
            Ok(StepOutput::message("partitioned tables dropped"))
        })
    })
    .describe("creates <table>_partitioned: monthly range partitions from the data, plus DEFAULT")
}

/// `verify` (a gate): old and new tables compared (counts, anti-joins both ways, content
/// hash), rows per partition, partition pruning. Its units (read = rows of the old table,
/// loaded = rows verified in the new one) are the run report's.
pub fn verify() -> Step<Ctx> {
    Step::new("verify", StepKind::Gate, |c: &Ctx, cx: &StepCx| {
        Box::pin(async move {
            let mut conn = c.conn().await?;
            let (mut msgs, mut details, mut findings, mut units) = (Vec::new(), serde_json::Map::new(), Vec::new(), Vec::new());
            for s in &c.tables {
                let t = &s.t;
                let swapped = t.swapped(&mut conn).await?;
                let (old, new) = if swapped {
                    (t.old.clone(), t.live.clone())
                } else if exists(&mut conn, &t.new).await? {
                    (t.live.clone(), t.new.clone())
                } else {
                    msgs.push(format!("{}: nothing to verify yet", t.live));
                    continue;
                };
                let v = verify_table(&mut conn, &t.live.name, &old, &new, c.online && swapped).await?;
                msgs.push(format!(
                    "{}: {} rows old, {} new, {} missing, {} extra, pruning {}",
                    t.live, v.cmp.old_rows, v.cmp.new_rows, v.cmp.missing, v.cmp.extra,
                    if v.pruned { "ok" } else { "NOT confirmed" }
                ));
                let mut u = UnitSummary::new(t.live.name.clone());
                (u.read, u.loaded, u.status) = (v.cmp.old_rows as u64, v.details["loaded"].as_u64().unwrap_or(0), UnitStatus::Completed);
                u.counters.insert("default_partition_rows".into(), v.details["default_rows"].as_u64().unwrap_or(0));
                units.push(u);
                findings.extend(v.findings);
                details.insert(t.live.name.clone(), v.details);
            }
            // The per-table units join the run's report as a pipeline's would.
            let report = RunReport::new(&cx.migration, &cx.run_id.to_string(), RunStatus::Succeeded, &units, chrono::Utc::now());
            let mut out = StepOutput::message(msgs.join("; ")).with_details(Value::Object(details)).with_findings(findings);
            out.pipeline = (!units.is_empty()).then(|| Box::new(report));
            Ok(out)
        })
    })
    .in_dry_run()
    .describe("compares old and new tables (counts, anti-joins, hashes), rows per partition, partition pruning")
}

/// `foreign_keys`: added `NOT VALID` then validated, per partition. Undone by dropping them.
pub fn foreign_keys() -> Step<Ctx> {
    per_table!("foreign_keys", StepKind::Index, |c, cx, conn, s| {
        if cx.dry_run {
            (String::new(), json!({ "sql": s.foreign_keys.iter().map(|fk| format!(
                "-- per partition: ADD CONSTRAINT ... NOT VALID, then VALIDATE CONSTRAINT\nALTER TABLE {} ADD CONSTRAINT {} {}",
                s.t.live.sql(), quote_ident(&fk.name), fk.definition())).collect::<Vec<_>>() }))
        } else {
            let target = c.target(&mut conn, &s.t).await?;
            for fk in &s.foreign_keys {
                partition::add_foreign_key(&mut conn, &target, fk).await?;
            }
            (format!("{}: {} foreign keys validated", s.t.live, s.foreign_keys.len()), Value::Null)
        }
    })
    .in_dry_run()
    .undo(|c: &Ctx, _cx| {
        Box::pin(async move {
            let mut conn = c.conn().await?;
            for s in &c.tables {
                let target = c.target(&mut conn, &s.t).await?;
                if exists(&mut conn, &target).await? {
                    for fk in &s.foreign_keys {
                        drop_constraint_everywhere(&mut conn, &target, &fk.name).await?;
                    }
                }
            }
            Ok(StepOutput::message("foreign keys dropped"))
        })
    })
    .describe("foreign keys NOT VALID, then VALIDATE, per partition")
}

/// `indexes`: on the parent only, then concurrently per partition and attached. Undone by
/// dropping them.
pub fn indexes() -> Step<Ctx> {
    per_table!("indexes", StepKind::Index, |c, cx, conn, s| {
        if cx.dry_run {
            (String::new(), json!({ "sql": s.indexes.iter().map(|(n, cols)| format!(
                "CREATE INDEX IF NOT EXISTS {} ON ONLY {} ({}) -- then CREATE INDEX CONCURRENTLY per partition and ATTACH",
                quote_ident(n), s.t.live.sql(), cols.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", "))).collect::<Vec<_>>() }))
        } else {
            let target = c.target(&mut conn, &s.t).await?;
            for (name, cols) in &s.indexes {
                let cols: Vec<&str> = cols.iter().map(String::as_str).collect();
                partition::create_index(&mut conn, &target, name, &cols).await?;
            }
            (format!("{}: {} indexes", s.t.live, s.indexes.len()), Value::Null)
        }
    })
    .in_dry_run()
    .undo(|c: &Ctx, _cx| {
        Box::pin(async move {
            let mut conn = c.conn().await?;
            for (name, _) in c.tables.iter().flat_map(|s| &s.indexes) {
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP INDEX IF EXISTS {}", TableName::new(name).sql())))
                    .execute(&mut conn)
                    .await?;
            }
            Ok(StepOutput::message("indexes dropped"))
        })
    })
    .describe("indexes on the parent, built concurrently per partition")
}

/// `analyze`: statistics for the new tables.
pub fn analyze() -> Step<Ctx> {
    per_table!("analyze", StepKind::PostSwitch, |_c, _cx, conn, s| {
        etl_sink_postgres::staging::analyze(&mut conn, &s.t.live).await?;
        (format!("analyzed {}", s.t.live), Value::Null)
    })
    .describe("ANALYZE the partitioned tables")
}

async fn drop_constraint_everywhere(
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

/// The verification of one table.
#[derive(Debug, Clone)]
pub struct TableVerification {
    /// Counts, anti-joins and hashes.
    pub cmp: move_data::TableComparison,
    /// Whether pruning was confirmed.
    pub pruned: bool,
    /// Checks for the report.
    pub findings: Vec<Finding>,
    /// Figures for the report (`read`, `loaded`, partitions, pruning).
    pub details: Value,
}

/// Compare `old` with `new` (the new `name` table; counts, anti-joins both ways, content hash), count rows per
/// partition, and confirm partition pruning with `EXPLAIN` on the busiest month. With
/// `writes_allowed` (an online move already swapped: the application writes to the new
/// table) rows in `new` only are a warning; rows missing from `new` always fail.
pub async fn verify_table(
    conn: &mut PgConnection,
    name: &str,
    old: &TableName,
    new: &TableName,
    writes_allowed: bool,
) -> Result<TableVerification> {
    let cmp = compare_tables(conn, old, new, &[PK], &[]).await?;
    let parts = partition::partition_counts(conn, new).await?;
    let busiest: Option<(NaiveDate,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT date_trunc('month', {k})::date FROM {} GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1",
        new.sql(),
        k = quote_ident(KEY)
    )))
    .fetch_optional(&mut *conn)
    .await?;
    let pruning = match busiest {
        Some((m,)) => Some(partition::check_pruning(conn, new, KEY, m).await?),
        None => None,
    };
    let mut findings = vec![Finding::check(
        format!("{name}: no row missing"),
        cmp.missing == 0,
        format!(
            "{} row(s) of {old} are not in {new} (anti-join by {PK})",
            cmp.missing
        ),
    )];
    let same = cmp.extra == 0 && cmp.old_hash == cmp.new_hash && cmp.old_rows == cmp.new_rows;
    let msg = format!(
        "{} rows in {old}, {} in {new}, {} only in {new}; content hash {} vs {}",
        cmp.old_rows, cmp.new_rows, cmp.extra, cmp.old_hash, cmp.new_hash
    );
    findings.push(if same {
        Finding::pass(format!("{name}: same rows and content"), msg)
    } else if writes_allowed {
        Finding::warn(
            format!("{name}: same rows and content"),
            format!("{msg} (rows written since the swap)"),
        )
    } else {
        Finding::fail(format!("{name}: same rows and content"), msg)
    });
    let pruned = pruning.as_ref().is_some_and(|p| p.pruned);
    if let Some(p) = &pruning {
        findings.push(Finding::check(
            format!("{name}: partition pruning"),
            p.pruned,
            format!("EXPLAIN {} scans {:?}", p.query, p.scanned),
        ));
    }
    let default_rows = parts.last().map_or(0, |(_, n)| *n);
    findings.push(Finding::pass(
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
    let details = json!({
        "read": cmp.old_rows,
        "loaded": loaded,
        "comparison": cmp,
        "partition_counts": parts.iter().map(|(p, n)| json!({"partition": p, "rows": n})).collect::<Vec<_>>(),
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
