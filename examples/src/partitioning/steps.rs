//! The code steps of the plan (the SQL ones are files under
//! `examples/data/partitioning/migrations/`): partitioned tables, data move, swap,
//! verification, foreign keys, indexes, ANALYZE, cleanup — each with its rollback.

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use etl_core::Finding;
use etl_sink_postgres::ident::TableName;
use etl_sink_postgres::move_data::{self, KeysetMove, OnlineMove, compare_tables, swap_names};
use etl_sink_postgres::partition::{self, ForeignKey, MonthlyPartitions};
use etl_sink_postgres::plan::{StepAction, StepContext, StepOutput};
use etl_sink_postgres::staging::{count_rows, exists};
use etl_sink_postgres::{Error, Result};
use futures::future::BoxFuture;
use serde_json::{Value, json};
use sqlx::PgConnection;

/// The partition key.
pub const KEY: &str = "created_at";
/// The primary key of the observation tables.
pub const PK: &str = "observation_id";

/// One observation table of the plan.
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// The live name (`petri_observations`).
    pub name: String,
    /// Foreign keys the new table gets.
    pub foreign_keys: Vec<ForeignKey>,
    /// Indexes the new table gets: (name, columns).
    pub indexes: Vec<(String, Vec<String>)>,
}

impl TableSpec {
    /// The live table.
    pub fn live(&self) -> TableName {
        TableName::new(&self.name)
    }
    /// The partitioned table while it is built (`<name>_partitioned`).
    pub fn new_table(&self) -> TableName {
        self.live().suffixed("_partitioned")
    }
    /// The previous table after the swap (`<name>_old`).
    pub fn old(&self) -> TableName {
        self.live().suffixed("_old")
    }
}

/// The two observation tables with their keys and indexes.
pub fn tables() -> Vec<TableSpec> {
    let fk = |table: &str, col: &str, parent: &str| ForeignKey {
        name: format!("{table}_{col}_fkey"),
        columns: vec![col.to_owned()],
        references: TableName::new(parent),
        ref_columns: vec![col.to_owned()],
    };
    ["petri_observations", "gasifier_observations"]
        .into_iter()
        .map(|t| {
            let short = if t.starts_with("petri") {
                "petri_obs"
            } else {
                "gasifier_obs"
            };
            TableSpec {
                name: t.to_owned(),
                foreign_keys: vec![
                    fk(t, "submission_id", "submissions"),
                    fk(t, "site_id", "sites"),
                    fk(t, "program_id", "pilot_programs"),
                ],
                // Names distinct from the old table's (index names are per schema).
                indexes: vec![
                    (
                        format!("{short}_p_site_created_idx"),
                        vec!["site_id".into(), KEY.into()],
                    ),
                    (
                        format!("{short}_p_program_created_idx"),
                        vec!["program_id".into(), KEY.into()],
                    ),
                    (
                        format!("{short}_p_submission_idx"),
                        vec!["submission_id".into()],
                    ),
                ],
            }
        })
        .collect()
}

/// Settings every code step shares.
#[derive(Debug, Clone)]
pub struct Shared {
    /// Plan name (checkpoint names start with it).
    pub plan: String,
    /// The tables.
    pub tables: Vec<TableSpec>,
    /// Online move (change capture, replay, short-lock swap) instead of batch.
    pub online: bool,
    /// Rows per batch transaction.
    pub batch_size: i64,
    /// Pause between batches.
    pub pause: Duration,
    /// Months holding fewer than this share of a table's rows (outside the dense range)
    /// get no partition of their own (their rows go to DEFAULT).
    pub min_month_share: f64,
}

/// Which code step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    /// Create the partitioned tables (months from the data, DEFAULT partition).
    Partitioned,
    /// Move the rows (batch, or online with the swap).
    Move,
    /// Swap names (batch mode; the online move swaps itself).
    Swap,
    /// Compare old and new tables, per-partition counts, partition pruning.
    Verify,
    /// Foreign keys, NOT VALID then VALIDATE per partition.
    ForeignKeys,
    /// Indexes, concurrently per partition.
    Indexes,
    /// ANALYZE the new tables.
    Analyze,
    /// Drop the old tables and the move's leftovers (irreversible).
    Cleanup,
}

/// A code step of the plan.
#[derive(Debug, Clone)]
pub struct CodeStep {
    /// Which one.
    pub what: What,
    /// Shared settings.
    pub shared: Arc<Shared>,
}

impl CodeStep {
    fn keyset(&self, t: &TableSpec) -> KeysetMove {
        let mut mv = KeysetMove::new(
            format!("{}:{}", self.shared.plan, t.name),
            t.live(),
            t.new_table(),
            &[KEY, PK],
        );
        mv.batch_size = self.shared.batch_size;
        mv.pause = self.shared.pause;
        mv
    }

    fn online(&self, t: &TableSpec, lock_timeout: &str) -> OnlineMove {
        let mut o = OnlineMove::new(self.keyset(t), PK);
        o.lock_timeout = lock_timeout.to_owned();
        o
    }

    async fn partitions_for(
        &self,
        conn: &mut PgConnection,
        t: &TableSpec,
    ) -> Result<MonthlyPartitions> {
        let n = count_rows(conn, &t.live()).await?;
        // At least 10 rows, so a handful of strays in a small table do not count as busy.
        let min_rows = ((n as f64) * self.shared.min_month_share).ceil().max(10.0) as i64;
        let today = chrono::Utc::now().date_naive();
        let (first, last) = partition::dense_key_range(conn, &t.live(), KEY, min_rows)
            .await?
            .unwrap_or((today, today));
        // One spare month after the data; later rows go to DEFAULT until their month's
        // partition is added.
        let last = partition::next_month(last);
        Ok(MonthlyPartitions::new(t.new_table(), KEY, first, last))
    }

    async fn run_inner(&self, conn: &mut PgConnection, ctx: &StepContext) -> Result<StepOutput> {
        let sh = &self.shared;
        let mut details = serde_json::Map::new();
        let mut findings = Vec::new();
        let mut msgs = Vec::new();
        for t in &sh.tables {
            let swapped = swapped(conn, t).await?;
            match self.what {
                What::Partitioned => {
                    if exists(conn, &t.new_table()).await? || swapped {
                        msgs.push(format!("{} exists", t.new_table()));
                        continue;
                    }
                    let p = self.partitions_for(conn, t).await?;
                    p.create(conn, &t.live(), &[PK]).await?;
                    msgs.push(format!(
                        "{}: {} monthly partitions + DEFAULT",
                        p.parent,
                        p.months.len()
                    ));
                    details.insert(
                        t.name.clone(),
                        json!({
                            "table": p.parent.to_string(),
                            "first_month": p.months.first(),
                            "last_month": p.months.last(),
                            "partitions": p.months.len() + 1,
                            "default": p.default_partition().to_string(),
                        }),
                    );
                }
                What::Move => {
                    if swapped {
                        msgs.push(format!("{} already swapped in", t.name));
                        continue;
                    }
                    if sh.online {
                        let o = self.online(t, &ctx.lock_timeout);
                        let st = o
                            .run(conn, &t.old().name, &ctx.progress, &ctx.cancel)
                            .await?;
                        msgs.push(format!(
                            "{}: {} rows backfilled, {} changes replayed, swapped with the lock held {:.1} ms",
                            t.name,
                            st.backfill.total_rows,
                            st.replay.changes + st.swap.final_changes,
                            st.swap.lock_held_ms
                        ));
                        details.insert(t.name.clone(), json!(st));
                    } else {
                        let st = self
                            .keyset(t)
                            .run(conn, &ctx.progress, &ctx.cancel, false)
                            .await?;
                        msgs.push(format!(
                            "{}: {} rows in {} batches",
                            t.name, st.total_rows, st.batches
                        ));
                        details.insert(t.name.clone(), json!({ "backfill": st }));
                    }
                }
                What::Swap => {
                    if swapped {
                        msgs.push(format!("{} already swapped in", t.name));
                        continue;
                    }
                    // Batch mode: copy what arrived after the move's last key, then swap.
                    let catch_up = self
                        .keyset(t)
                        .run(conn, &ctx.progress, &ctx.cancel, true)
                        .await?;
                    let (views, held) = swap_names(
                        conn,
                        &t.live(),
                        &t.new_table(),
                        &t.old().name,
                        &ctx.lock_timeout,
                    )
                    .await?;
                    msgs.push(format!(
                        "{} is partitioned now (previous table: {}), lock held {held:.1} ms",
                        t.name,
                        t.old()
                    ));
                    details.insert(
                        t.name.clone(),
                        json!({ "catch_up_rows": catch_up.rows, "lock_held_ms": held, "views": views }),
                    );
                }
                What::Verify => {
                    let (old, new) = if swapped {
                        (t.old(), t.live())
                    } else if exists(conn, &t.new_table()).await? {
                        (t.live(), t.new_table())
                    } else {
                        msgs.push(format!("{}: nothing to verify yet", t.name));
                        continue;
                    };
                    let v = verify_table(conn, &t.name, &old, &new, sh.online && swapped).await?;
                    msgs.push(format!(
                        "{}: {} rows old, {} new, {} missing, {} extra, pruning {}",
                        t.name,
                        v.cmp.old_rows,
                        v.cmp.new_rows,
                        v.cmp.missing,
                        v.cmp.extra,
                        if v.pruned { "ok" } else { "NOT confirmed" }
                    ));
                    findings.extend(v.findings);
                    details.insert(t.name.clone(), v.details);
                }
                What::ForeignKeys => {
                    for fk in &t.foreign_keys {
                        partition::add_foreign_key(conn, &t.live(), fk).await?;
                    }
                    msgs.push(format!(
                        "{}: {} foreign keys validated",
                        t.name,
                        t.foreign_keys.len()
                    ));
                }
                What::Indexes => {
                    for (name, cols) in &t.indexes {
                        let cols: Vec<&str> = cols.iter().map(String::as_str).collect();
                        partition::create_index(conn, &t.live(), name, &cols).await?;
                    }
                    msgs.push(format!("{}: {} indexes", t.name, t.indexes.len()));
                }
                What::Analyze => {
                    etl_sink_postgres::staging::analyze(conn, &t.live()).await?;
                    msgs.push(format!("analyzed {}", t.name));
                }
                What::Cleanup => {
                    let o = self.online(t, &ctx.lock_timeout);
                    let had_old = exists(conn, &t.old()).await?;
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP TABLE IF EXISTS {}",
                        t.old().sql()
                    )))
                    .execute(&mut *conn)
                    .await?;
                    o.remove_capture(conn, &t.live()).await?;
                    self.keyset(t).reset(conn).await?;
                    msgs.push(if had_old {
                        format!("dropped {}", t.old())
                    } else {
                        format!("{} was already gone", t.old())
                    });
                }
            }
        }
        Ok(StepOutput {
            message: msgs.join("; "),
            details: Value::Object(details),
            findings,
        })
    }

    async fn rollback_inner(
        &self,
        conn: &mut PgConnection,
        ctx: &StepContext,
    ) -> Result<StepOutput> {
        let mut msgs = Vec::new();
        for t in &self.shared.tables {
            match self.what {
                What::Partitioned => {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP TABLE IF EXISTS {}",
                        t.new_table().sql()
                    )))
                    .execute(&mut *conn)
                    .await?;
                    msgs.push(format!("dropped {}", t.new_table()));
                }
                What::Move | What::Swap => {
                    if swapped(conn, t).await? {
                        // The partitioned table goes back to <name>_partitioned.
                        swap_names(
                            conn,
                            &t.live(),
                            &t.old(),
                            &t.new_table().name,
                            &ctx.lock_timeout,
                        )
                        .await?;
                        msgs.push(format!("{} is the previous table again", t.name));
                    }
                    if self.what == What::Move {
                        self.online(t, &ctx.lock_timeout)
                            .remove_capture(conn, &t.live())
                            .await?;
                        self.keyset(t).reset(conn).await?;
                        if exists(conn, &t.new_table()).await? {
                            sqlx::query(sqlx::AssertSqlSafe(format!(
                                "TRUNCATE {}",
                                t.new_table().sql()
                            )))
                            .execute(&mut *conn)
                            .await?;
                        }
                        msgs.push(format!("{}: moved rows removed", t.new_table()));
                    }
                }
                What::ForeignKeys => {
                    let target = if swapped(conn, t).await? {
                        t.live()
                    } else {
                        t.new_table()
                    };
                    if exists(conn, &target).await? {
                        for fk in &t.foreign_keys {
                            drop_constraint_everywhere(conn, &target, &fk.name).await?;
                        }
                    }
                    msgs.push(format!("{}: foreign keys dropped", t.name));
                }
                What::Indexes => {
                    for (name, _) in &t.indexes {
                        sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP INDEX IF EXISTS {}",
                            TableName::new(name).sql()
                        )))
                        .execute(&mut *conn)
                        .await?;
                    }
                    msgs.push(format!("{}: indexes dropped", t.name));
                }
                What::Verify | What::Analyze => {}
                What::Cleanup => {
                    return Err(Error::State(
                        "the cleanup dropped the old tables; it cannot be undone (restore from a backup)".into(),
                    ));
                }
            }
        }
        Ok(StepOutput::message(msgs.join("; ")))
    }

    async fn preview_inner(
        &self,
        conn: &mut PgConnection,
        ctx: &StepContext,
    ) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for t in &self.shared.tables {
            match self.what {
                What::Partitioned => {
                    let p = self.partitions_for(conn, t).await?;
                    out.extend(p.create_sql(&t.live(), &[PK]));
                }
                What::Move => {
                    let mut mv = self.keyset(t);
                    let cols = move_data::columns(conn, &t.live()).await?;
                    mv.columns = Some(cols.into_iter().map(|(n, _)| n).collect());
                    if self.shared.online {
                        out.extend(self.online(t, &ctx.lock_timeout).capture_sql(conn).await?);
                    }
                    let b = mv.batch_sql(conn, false).await?;
                    out.push(format!(
                        "-- repeated until a window comes back short, each batch in its own transaction with its checkpoint:\n{};\n-- (the last window: {});\n{}",
                        b.window_end, b.last_key, b.insert
                    ));
                    if self.shared.online {
                        out.push(format!(
                            "-- replay the change log, then in one transaction: LOCK TABLE {} IN ACCESS EXCLUSIVE MODE; replay the rest; \
                             ALTER TABLE {} RENAME TO {}; ALTER TABLE {} RENAME TO {}; views re-created",
                            t.live().sql(),
                            t.live().sql(),
                            t.old().sql(),
                            t.new_table().sql(),
                            t.live().sql()
                        ));
                    }
                }
                What::Swap if !self.shared.online => out.push(format!(
                    "BEGIN; LOCK TABLE {l}, {n} IN ACCESS EXCLUSIVE MODE; ALTER TABLE {l} RENAME TO {o}; ALTER TABLE {n} RENAME TO {l}; -- views re-created\nCOMMIT",
                    l = t.live().sql(),
                    n = t.new_table().sql(),
                    o = etl_sink_postgres::ident::quote_ident(&t.old().name)
                )),
                What::Swap => out.push("-- (the online move swaps the tables)".into()),
                What::Verify => {}
                What::ForeignKeys => {
                    for fk in &t.foreign_keys {
                        out.push(format!(
                            "-- per partition: ALTER TABLE <partition> ADD CONSTRAINT ... {} NOT VALID; ALTER TABLE <partition> VALIDATE CONSTRAINT ...\nALTER TABLE {} ADD CONSTRAINT {} {}",
                            fk.definition(),
                            t.live().sql(),
                            etl_sink_postgres::ident::quote_ident(&fk.name),
                            fk.definition()
                        ));
                    }
                }
                What::Indexes => {
                    for (name, cols) in &t.indexes {
                        out.push(format!(
                            "CREATE INDEX IF NOT EXISTS {} ON ONLY {} ({}) -- then CREATE INDEX CONCURRENTLY per partition and ALTER INDEX ... ATTACH PARTITION",
                            etl_sink_postgres::ident::quote_ident(name),
                            t.live().sql(),
                            cols.iter().map(|c| etl_sink_postgres::ident::quote_ident(c)).collect::<Vec<_>>().join(", ")
                        ));
                    }
                }
                What::Analyze => out.push(format!("ANALYZE {}", t.live().sql())),
                What::Cleanup => out.push(format!("DROP TABLE IF EXISTS {}", t.old().sql())),
            }
        }
        Ok(out)
    }
}

impl StepAction for CodeStep {
    fn run<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        ctx: &'a StepContext,
    ) -> BoxFuture<'a, Result<StepOutput>> {
        Box::pin(self.run_inner(conn, ctx))
    }
    fn rollback<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        ctx: &'a StepContext,
    ) -> BoxFuture<'a, Result<StepOutput>> {
        Box::pin(self.rollback_inner(conn, ctx))
    }
    fn preview<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        ctx: &'a StepContext,
    ) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(self.preview_inner(conn, ctx))
    }
    fn read_only(&self) -> bool {
        self.what == What::Verify
    }
    fn reversible(&self) -> bool {
        self.what != What::Cleanup
    }
}

/// Whether `t` was swapped: `<name>_old` exists and `<name>_partitioned` does not.
pub async fn swapped(conn: &mut PgConnection, t: &TableSpec) -> Result<bool> {
    Ok(exists(conn, &t.old()).await? && !exists(conn, &t.new_table()).await?)
}

async fn drop_constraint_everywhere(
    conn: &mut PgConnection,
    table: &TableName,
    name: &str,
) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
        table.sql(),
        etl_sink_postgres::ident::quote_ident(name)
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
            etl_sink_postgres::ident::quote_ident(&con)
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
        k = etl_sink_postgres::ident::quote_ident(KEY)
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
