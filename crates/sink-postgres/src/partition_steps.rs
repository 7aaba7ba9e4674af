//! Ready-made steps for moving whole tables into monthly range-partitioned twins, for any
//! migration context `C` ([`PartitionSteps`]): the partitioned tables (months from the
//! data, premade months, DEFAULT), the pre-flight of foreign keys other tables hold on
//! them, the verification gate (counts, anti-joins, hashes, rows per partition, pruning),
//! foreign keys, indexes, `VACUUM (ANALYZE)`, the proof queries and partition maintenance.
//! The move and swap themselves are [`MoveSteps`]'s (kept in [`PartitionSteps::mv`]).
//!
//! ```no_run
//! use etl_core::migration::Migration;
//! use etl_sink_postgres::{connect_options, ident::TableName};
//! use etl_sink_postgres::partition_steps::{PartitionSteps, PartitionTable};
//! # fn demo() -> etl_sink_postgres::Result<()> {
//! let opts = connect_options("postgres://localhost/app")?;
//! let table = PartitionTable::new(TableName::new("events"));
//! let p = PartitionSteps::new(opts, "events_partitioning", vec![table], "created_at", "id");
//! let m: Migration<()> = Migration::new("events_partitioning")
//!     .step(p.inbound_foreign_keys())
//!     .step(p.partitioned_tables())
//!     .step(p.mv.move_data())
//!     .step(p.verify())
//!     .step(p.mv.swap())
//!     .step(p.foreign_keys())
//!     .step(p.indexes())
//!     .step(p.analyze())
//!     .step(p.proof())
//!     .step(p.maintain())
//!     .step(p.mv.cleanup());
//! # Ok(()) }
//! ```

use std::sync::Arc;

use etl_core::migration::{Step, StepCx, StepKind, StepOutput};
use etl_core::{BoxError, Finding, RunReport, RunStatus, UnitStatus, UnitSummary};
use serde_json::{Value, json};
use sqlx::PgConnection;
use sqlx::postgres::PgConnectOptions;

use crate::Result;
use crate::ident::{TableName, quote_ident};
use crate::partition::{self, ForeignKey, MonthlyPartitions, verify_partitioned};
use crate::proof::{ProofArgs, QueryCheck};
use crate::staging::{count_rows, exists};
use crate::steps::{MoveSteps, MoveTable, connect_with_timeout};

/// One table moved into a partitioned twin, with what the twin gets after the move.
#[derive(Debug, Clone)]
pub struct PartitionTable {
    /// Live, partitioned (`<name>_partitioned` while built) and previous (`<name>_old`).
    pub t: MoveTable,
    /// Foreign keys the new table gets (added `NOT VALID`, then validated, per partition).
    pub foreign_keys: Vec<ForeignKey>,
    /// Indexes the new table gets: (name, columns). Index names are per schema: they must
    /// differ from the live table's.
    pub indexes: Vec<(String, Vec<String>)>,
}

impl PartitionTable {
    /// `live` moved into `<live>_partitioned`, with no foreign keys or indexes yet.
    pub fn new(live: TableName) -> Self {
        PartitionTable {
            t: MoveTable::new(live, "_partitioned"),
            foreign_keys: Vec::new(),
            indexes: Vec::new(),
        }
    }

    /// The foreign key `<table>_<column>_fkey`: `column` references `parent (column)`.
    pub fn foreign_key(mut self, column: &str, parent: &str) -> Self {
        self.foreign_keys.push(ForeignKey {
            name: format!("{}_{column}_fkey", self.t.live.name),
            columns: vec![column.to_owned()],
            references: TableName::new(parent),
            ref_columns: vec![column.to_owned()],
        });
        self
    }

    /// The index `name` on `columns`.
    pub fn index(mut self, name: impl Into<String>, columns: &[&str]) -> Self {
        let cols = columns.iter().map(|c| (*c).to_owned()).collect();
        self.indexes.push((name.into(), cols));
        self
    }
}

/// The per-table steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum What {
    Partitioned,
    ForeignKeys,
    Indexes,
    Analyze,
}

/// The steps of a move of whole tables into monthly range-partitioned twins inside one
/// database (see the [module](self)). Configure the public fields, then make the steps.
#[derive(Debug, Clone)]
pub struct PartitionSteps {
    opts: Arc<PgConnectOptions>,
    tables: Vec<PartitionTable>,
    key: String,
    pk: String,
    /// The move and the swap (batch size, pause, lock timeout, online): its steps go in
    /// the migration next to these; the verification replays its change log first.
    pub mv: MoveSteps,
    /// Months holding fewer than this share of a table's rows (outside the dense range)
    /// get no partition of their own (their rows go to DEFAULT; at least 10 rows make a
    /// month busy whatever the share). Default 0.001.
    pub min_month_share: f64,
    /// Months premade after the later of the data's last month and the current month.
    /// Default 3.
    pub premake: u32,
    /// The proof queries' options (`--query` replaces [`Self::queries`]).
    pub proof: ProofArgs,
    /// The default proof queries (`{table}` for the table). Default: none.
    pub queries: Vec<QueryCheck>,
}

impl PartitionSteps {
    /// Steps moving `tables` of the database of `opts` into twins partitioned by month of
    /// `key` (a date or timestamp column), `pk` the primary key (the twins' is (`pk`,
    /// `key`)); the move ([`MoveSteps`], its checkpoints named `<name>:<live>`) goes in
    /// keyset order (`key`, `pk`).
    pub fn new(
        opts: PgConnectOptions,
        name: &str,
        tables: Vec<PartitionTable>,
        key: &str,
        pk: &str,
    ) -> Self {
        let moved = tables.iter().map(|s| s.t.clone()).collect();
        PartitionSteps {
            mv: MoveSteps::new(opts.clone(), name, moved, &[key, pk], pk),
            opts: Arc::new(opts),
            tables,
            key: key.to_owned(),
            pk: pk.to_owned(),
            min_month_share: 0.001,
            premake: 3,
            proof: ProofArgs {
                queries: Vec::new(),
                max_query_slowdown: 2.0,
                query_floor_ms: 5.0,
            },
            queries: Vec::new(),
        }
    }

    /// The tables.
    pub fn tables(&self) -> &[PartitionTable] {
        &self.tables
    }

    async fn conn(&self) -> std::result::Result<PgConnection, BoxError> {
        connect_with_timeout(&self.opts, &self.mv.lock_timeout).await
    }

    /// The partitions of `t`'s twin: the months of its data (without sparse months at
    /// either end) up to [`Self::premake`] months after the data and after today.
    ///
    /// # Errors
    /// The database's.
    pub async fn partitions_for(
        &self,
        conn: &mut PgConnection,
        t: &MoveTable,
    ) -> Result<MonthlyPartitions> {
        let n = count_rows(conn, &t.live).await?;
        // At least 10 rows, so a handful of strays in a small table do not count as busy.
        let min_rows = ((n as f64) * self.min_month_share).ceil().max(10.0) as i64;
        let today = chrono::Utc::now().date_naive();
        let (first, last) = partition::dense_key_range(conn, &t.live, &self.key, min_rows)
            .await?
            .unwrap_or((today, today));
        // Later rows go to DEFAULT until `maintain` adds their month.
        let until = partition::premade_until(last, today, self.premake);
        Ok(MonthlyPartitions::new(
            t.new.clone(),
            &self.key,
            first,
            until,
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

    /// A step of `kind` doing `what` for every table with one connection (in a dry run: its
    /// SQL, in details `sql`); the messages are joined, the details keyed by table.
    fn per_table<C: Send + Sync + 'static>(
        &self,
        name: &str,
        kind: StepKind,
        what: What,
    ) -> Step<C> {
        let (me, me2) = (Arc::new(self.clone()), Arc::new(self.clone()));
        Step::new(name, kind, move |_c: &C, cx: &StepCx| {
            let me = me.clone();
            Box::pin(async move {
                let mut conn = me.conn().await?;
                let (mut msgs, mut details) = (Vec::new(), serde_json::Map::new());
                for s in &me.tables {
                    let (m, d) = me.table_step(cx, &mut conn, s, what).await?;
                    msgs.push(m);
                    if !d.is_null() {
                        details.insert(s.t.live.name.clone(), d);
                    }
                }
                let out = StepOutput::message(msgs.join("; "));
                Ok(out.with_details(Value::Object(details)))
            })
        })
        .in_dry_run()
        .undo(move |_c: &C, _cx| {
            let me = me2.clone();
            Box::pin(async move { me.undo(what).await })
        })
    }

    /// What a dry run of `what` on `s` shows (the partitions' SQL needs the data).
    fn preview_sql(s: &PartitionTable, what: What) -> Vec<String> {
        let live = &s.t.live;
        match what {
            What::Partitioned => Vec::new(),
            What::ForeignKeys => (s.foreign_keys.iter())
                .map(|fk| {
                    format!(
                        "-- per partition: ADD CONSTRAINT ... NOT VALID, then VALIDATE\n\
                         ALTER TABLE {} ADD CONSTRAINT {} {}",
                        live.sql(),
                        quote_ident(&fk.name),
                        fk.definition()
                    )
                })
                .collect(),
            What::Indexes => (s.indexes.iter())
                .map(|(n, cols)| {
                    let cols: Vec<String> = cols.iter().map(|c| quote_ident(c)).collect();
                    format!(
                        "CREATE INDEX IF NOT EXISTS {} ON ONLY {} ({}) \
                         -- then CREATE INDEX CONCURRENTLY per partition and ATTACH",
                        quote_ident(n),
                        live.sql(),
                        cols.join(", ")
                    )
                })
                .collect(),
            What::Analyze => vec![format!(
                "VACUUM (ANALYZE) {} -- outside any transaction",
                live.sql()
            )],
        }
    }

    async fn table_step(
        &self,
        cx: &StepCx,
        conn: &mut PgConnection,
        s: &PartitionTable,
        what: What,
    ) -> Result<(String, Value)> {
        let t = &s.t;
        if cx.dry_run {
            let sql = match what {
                What::Partitioned => {
                    (self.partitions_for(conn, t).await?).create_sql(&t.live, &[self.pk.as_str()])
                }
                _ => Self::preview_sql(s, what),
            };
            return Ok((String::new(), json!({ "sql": sql })));
        }
        let target = self.target(conn, t).await?;
        Ok(match what {
            What::Partitioned if exists(conn, &t.new).await? || t.swapped(conn).await? => {
                (format!("{} exists", t.new), Value::Null)
            }
            What::Partitioned => {
                let p = self.partitions_for(conn, t).await?;
                p.create(conn, &t.live, &[self.pk.as_str()]).await?;
                let (n, first, last) = (p.months.len(), p.months.first(), p.months.last());
                let default = p.default_partition().to_string();
                let d = json!({ "first_month": first, "last_month": last,
                                "partitions": n + 1, "default": default });
                (format!("{}: {n} monthly partitions + DEFAULT", p.parent), d)
            }
            What::ForeignKeys => {
                for fk in &s.foreign_keys {
                    partition::add_foreign_key(conn, &target, fk).await?;
                }
                let n = s.foreign_keys.len();
                let msg = format!("{}: {n} foreign keys validated", t.live);
                (msg, Value::Null)
            }
            What::Indexes => {
                for (name, cols) in &s.indexes {
                    let cols: Vec<&str> = cols.iter().map(String::as_str).collect();
                    partition::create_index(conn, &target, name, &cols).await?;
                }
                let msg = format!("{}: {} indexes", t.live, s.indexes.len());
                (msg, Value::Null)
            }
            What::Analyze => {
                // VACUUM cannot run in a transaction: one simple-protocol statement on a
                // connection with none open. On a partitioned table it covers every
                // partition and gathers the parent's statistics too.
                let sql = format!("VACUUM (ANALYZE) {}", t.live.sql());
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(conn)
                    .await?;
                (format!("vacuumed and analyzed {}", t.live), Value::Null)
            }
        })
    }

    async fn undo(&self, what: What) -> std::result::Result<StepOutput, BoxError> {
        let mut conn = self.conn().await?;
        for s in &self.tables {
            let target = self.target(&mut conn, &s.t).await?;
            let run = |sql: String| sqlx::raw_sql(sqlx::AssertSqlSafe(sql));
            match what {
                What::Partitioned => {
                    let sql = format!("DROP TABLE IF EXISTS {}", s.t.new.sql());
                    run(sql).execute(&mut conn).await?;
                }
                What::ForeignKeys if exists(&mut conn, &target).await? => {
                    for fk in &s.foreign_keys {
                        partition::drop_foreign_key(&mut conn, &target, &fk.name).await?;
                    }
                }
                What::Indexes => {
                    for (name, _) in &s.indexes {
                        let sql = format!("DROP INDEX IF EXISTS {}", TableName::new(name).sql());
                        run(sql).execute(&mut conn).await?;
                    }
                }
                What::ForeignKeys | What::Analyze => {}
            }
        }
        Ok(StepOutput::message("undone"))
    }

    /// `partitioned_tables` ([`StepKind::Prepare`]): `<table>_partitioned` with monthly
    /// partitions from the data ([`Self::partitions_for`]) plus DEFAULT. Undone by dropping
    /// them.
    pub fn partitioned_tables<C: Send + Sync + 'static>(&self) -> Step<C> {
        self.per_table("partitioned_tables", StepKind::Prepare, What::Partitioned)
            .describe(
                "creates <table>_partitioned: monthly range partitions from the data + DEFAULT",
            )
    }

    /// `foreign_keys` ([`StepKind::Index`]): added `NOT VALID` then validated, per
    /// partition. Undone by dropping them.
    pub fn foreign_keys<C: Send + Sync + 'static>(&self) -> Step<C> {
        self.per_table("foreign_keys", StepKind::Index, What::ForeignKeys)
            .describe("foreign keys NOT VALID, then VALIDATE, per partition")
    }

    /// `indexes` ([`StepKind::Index`]): on the parent only, then concurrently per
    /// partition and attached. Undone by dropping them.
    pub fn indexes<C: Send + Sync + 'static>(&self) -> Step<C> {
        self.per_table("indexes", StepKind::Index, What::Indexes)
            .describe("indexes on the parent, built concurrently per partition")
    }

    /// `analyze` ([`StepKind::PostSwitch`]): `VACUUM (ANALYZE)` of the new tables, a step
    /// of its own outside any transaction.
    pub fn analyze<C: Send + Sync + 'static>(&self) -> Step<C> {
        self.per_table("analyze", StepKind::PostSwitch, What::Analyze)
            .describe("VACUUM (ANALYZE) the new tables, outside any transaction")
    }

    /// `proof` ([`StepKind::PostSwitch`], after the indexes and `ANALYZE`): the proof
    /// queries timed on each new table and on the previous one it replaced; a query more
    /// than `max_query_slowdown` times slower fails the step (findings
    /// `<table>:<query>`), and a rollback swaps the previous tables back.
    pub fn proof<C: Send + Sync + 'static>(&self) -> Step<C> {
        let me = Arc::new(self.clone());
        Step::new("proof", StepKind::PostSwitch, move |_c: &C, _cx: &StepCx| {
            let me = me.clone();
            Box::pin(async move {
                let mut conn = me.conn().await?;
                let (mut findings, mut details) = (Vec::new(), serde_json::Map::new());
                for t in me.tables.iter().map(|s| &s.t) {
                    if !exists(&mut conn, &t.old).await? {
                        continue;
                    }
                    let (found, timings) = (me.proof)
                        .compare(&mut conn, &t.old, &t.live, &me.queries)
                        .await?;
                    findings.extend(found.into_iter().map(|f| Finding {
                        check: format!("{}:{}", t.live.name, f.check),
                        ..f
                    }));
                    details.insert(t.live.name.clone(), timings);
                }
                let failed = findings.iter().filter(|f| f.vetoes()).count();
                let msg = format!("{} queries compared, {failed} slower", findings.len());
                Ok(StepOutput::message(msg)
                    .with_details(Value::Object(details))
                    .with_findings(findings))
            })
        })
        .describe("times the proof queries on the new tables and the previous ones (--query, --max-query-slowdown)")
    }

    /// `inbound_foreign_keys` ([`StepKind::Preflight`], always, before any write): the
    /// foreign keys of other tables referencing the moved tables. The swap re-points them
    /// at the new tables (`NOT VALID`, then `VALIDATE CONSTRAINT`), and the rollback back;
    /// but a partitioned table can be referenced only through a unique key holding its
    /// partition key, and the twins' only one is (`pk`, `key`). A foreign key referencing
    /// anything else (the usual `pk` alone) is a vetoing finding saying how to make it
    /// fit.
    pub fn inbound_foreign_keys<C: Send + Sync + 'static>(&self) -> Step<C> {
        let me = Arc::new(self.clone());
        Step::new("inbound_foreign_keys", StepKind::Preflight, move |_c: &C, _cx: &StepCx| {
            let me = me.clone();
            Box::pin(async move {
                let (pk, key) = (me.pk.as_str(), me.key.as_str());
                let mut conn = me.conn().await?;
                let (mut msgs, mut findings, mut all) = (Vec::new(), Vec::new(), Vec::new());
                for s in &me.tables {
                    // Before the swap the application's table is `live`; after it, `old`
                    // holds no key any more (they followed the swap).
                    let live = &s.t.live;
                    let fks = partition::inbound_foreign_keys(&mut conn, live).await?;
                    for fk in &fks {
                        let (cols, table) = (fk.columns.join(", "), &fk.table);
                        findings.push(Finding::check(
                            format!("{live}: foreign key {} of {table} can follow", fk.name),
                            fk.fits(&[pk, key]),
                            format!(
                                "{table} ({cols}) references {live} ({}); the partitioned table's only unique key is ({pk}, {key}): \
                                 add a column holding the referenced row's {key} to {table}, a unique index ({pk}, {key}) on {live} \
                                 and make the key ({cols}, <that column>) REFERENCES {live} ({pk}, {key}) — or drop it — then run again",
                                fk.ref_columns.join(", "),
                            ),
                        ));
                    }
                    msgs.push(format!("{live}: {} referencing foreign key(s)", fks.len()));
                    all.extend(fks);
                }
                Ok(StepOutput::message(msgs.join("; "))
                    .with_details(json!({ "foreign_keys": all }))
                    .with_findings(findings))
            })
        })
        .always()
        .in_dry_run()
        .describe("foreign keys of other tables on the moved tables: re-pointable at the swap?")
    }

    /// `maintain` ([`StepKind::PostSwitch`], optional: run it by name, e.g. from cron):
    /// every month after the last partitioned one up to [`Self::premake`] months after the
    /// current month gets its partition, and the rows of those months waiting in DEFAULT
    /// move into them, one transaction per month (locks: [`partition::maintain`]).
    /// Nothing to undo: the new partitions belong to the partitioned tables.
    pub fn maintain<C: Send + Sync + 'static>(&self) -> Step<C> {
        let me = Arc::new(self.clone());
        Step::new(
            "maintain",
            StepKind::PostSwitch,
            move |_c: &C, _cx: &StepCx| {
                let me = me.clone();
                Box::pin(async move {
                    let mut conn = me.conn().await?;
                    let today = chrono::Utc::now().date_naive();
                    let until = partition::premade_until(today, today, me.premake);
                    let (mut msgs, mut details) = (Vec::new(), serde_json::Map::new());
                    for s in &me.tables {
                        let t = &s.t.live;
                        let lt = &me.mv.lock_timeout;
                        let done = partition::maintain(&mut conn, t, &me.key, until, lt).await?;
                        let moved: i64 = done.iter().map(|m| m.moved_rows).sum();
                        msgs.push(format!(
                        "{t}: {} partition(s) added up to {}, {moved} row(s) moved out of DEFAULT",
                        done.len(),
                        until.format("%Y-%m")
                    ));
                        details.insert(t.name.clone(), json!({ "until": until, "added": done }));
                    }
                    Ok(StepOutput::message(msgs.join("; ")).with_details(Value::Object(details)))
                })
            },
        )
        .optional()
        .describe(
            "adds the next months' partitions and moves their rows out of DEFAULT (--maintain)",
        )
    }

    /// `verify` ([`StepKind::Gate`]): old and new tables compared (counts, anti-joins both
    /// ways, content hash), rows per partition, partition pruning; in batch mode the
    /// changes made since the move are replayed first. Its units (one per table: read =
    /// rows of the old table, loaded = rows verified in the new one, counter
    /// `default_partition_rows`) join the run report as a pipeline's would.
    pub fn verify<C: Send + Sync + 'static>(&self) -> Step<C> {
        let me = Arc::new(self.clone());
        Step::new("verify", StepKind::Gate, move |_c: &C, cx: &StepCx| {
            let me = me.clone();
            Box::pin(async move { me.run_verify(cx).await })
        })
        .in_dry_run()
        .describe("compares old and new tables (counts, anti-joins, hashes), partitions, pruning")
    }

    async fn run_verify(&self, cx: &StepCx) -> std::result::Result<StepOutput, BoxError> {
        let mut conn = self.conn().await?;
        let (mut msgs, mut details) = (Vec::new(), serde_json::Map::new());
        let (mut findings, mut units) = (Vec::new(), Vec::new());
        let online = self.mv.online;
        for t in self.tables.iter().map(|s| &s.t) {
            let swapped = t.swapped(&mut conn).await?;
            let (old, new) = if swapped {
                (&t.old, &t.live)
            } else if exists(&mut conn, &t.new).await? {
                if !cx.dry_run && !online {
                    // Changes made during (or since) the batch move first.
                    let n = self.mv.catch_up(&mut conn, t, &cx.cancel).await?;
                    msgs.push(format!("{}: {n} change(s) replayed", t.live));
                }
                (&t.live, &t.new)
            } else {
                msgs.push(format!("{}: nothing to verify yet", t.live));
                continue;
            };
            // After an online swap the application writes to the new table.
            let (name, key, pk) = (&t.live.name, &self.key, &self.pk);
            let v = verify_partitioned(&mut conn, name, old, new, key, pk, online && swapped);
            let v = v.await?;
            let cmp = &v.cmp;
            let pruning = if v.pruned { "ok" } else { "NOT confirmed" };
            msgs.push(format!(
                "{}: {} rows old, {} new, {} missing, {} extra, pruning {pruning}",
                t.live, cmp.old_rows, cmp.new_rows, cmp.missing, cmp.extra,
            ));
            let mut u = UnitSummary::new(t.live.name.clone());
            let figure = |k: &str| v.details[k].as_u64().unwrap_or(0);
            (u.read, u.loaded) = (cmp.old_rows as u64, figure("loaded"));
            u.status = UnitStatus::Completed;
            u.counters
                .insert("default_partition_rows".into(), figure("default_rows"));
            units.push(u);
            findings.extend(v.findings);
            details.insert(t.live.name.clone(), v.details);
        }
        let (id, now) = (cx.run_id.to_string(), chrono::Utc::now());
        let report = RunReport::new(&cx.migration, &id, RunStatus::Succeeded, &units, now);
        let mut out = StepOutput::message(msgs.join("; "))
            .with_details(Value::Object(details))
            .with_findings(findings);
        out.pipeline = (!units.is_empty()).then(|| Box::new(report));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> PartitionTable {
        PartitionTable::new(TableName::new("events"))
            .foreign_key("site_id", "sites")
            .index("events_p_site_idx", &["site_id", "created_at"])
    }

    #[test]
    fn builders_name_keys_and_twins() {
        let t = table();
        assert_eq!(t.t.new.name, "events_partitioned");
        assert_eq!(t.t.old.name, "events_old");
        let fk = &t.foreign_keys[0];
        assert_eq!(fk.name, "events_site_id_fkey");
        assert_eq!(fk.references.name, "sites");
        assert_eq!(fk.ref_columns, ["site_id"]);
        assert_eq!(t.indexes[0].1, ["site_id", "created_at"]);
    }

    #[test]
    fn dry_run_sql_of_each_step() {
        let t = table();
        let fks = PartitionSteps::preview_sql(&t, What::ForeignKeys);
        assert_eq!(fks.len(), 1);
        assert!(
            fks[0].contains("ADD CONSTRAINT \"events_site_id_fkey\" FOREIGN KEY"),
            "{fks:?}"
        );
        let idx = PartitionSteps::preview_sql(&t, What::Indexes);
        assert!(
            idx[0].starts_with("CREATE INDEX IF NOT EXISTS \"events_p_site_idx\" ON ONLY"),
            "{idx:?}"
        );
        assert!(idx[0].contains("(\"site_id\", \"created_at\")"), "{idx:?}");
        let an = PartitionSteps::preview_sql(&t, What::Analyze);
        assert!(an[0].starts_with("VACUUM (ANALYZE)"), "{an:?}");
    }

    #[test]
    fn new_moves_in_key_order_with_defaults() {
        let opts = crate::connect_options("postgres://localhost/app").unwrap();
        let p = PartitionSteps::new(opts, "m", vec![table()], "created_at", "id");
        assert_eq!(p.mv.tables().len(), 1);
        assert_eq!(p.mv.tables()[0].new.name, "events_partitioned");
        assert_eq!((p.premake, p.min_month_share), (3, 0.001));
        let step: Step<()> = p.partitioned_tables();
        assert_eq!(step.name(), "partitioned_tables");
    }
}
