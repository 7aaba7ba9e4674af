//! The partition-specific steps (the SQL ones are files under
//! `examples/data/partitioning/migrations/`; pre-flight, move, swap and cleanup come from
//! [`etl_sink_postgres::steps`]): partitioned tables, verification, foreign keys, indexes,
//! ANALYZE — each with its undo.

use etl_core::migration::{Step, StepCx, StepKind, StepOutput};
use etl_core::{BoxError, RunReport, RunStatus, UnitStatus, UnitSummary};
use etl_sink_postgres::Result;
use etl_sink_postgres::ident::{TableName, quote_ident};
use etl_sink_postgres::partition::{self, ForeignKey, MonthlyPartitions, verify_partitioned};
use etl_sink_postgres::proof::{ProofArgs, QueryCheck};
use etl_sink_postgres::staging::{count_rows, exists};
use etl_sink_postgres::steps::{MoveSteps, MoveTable};
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
    /// Months premade after the later of the data's last month and the current month
    /// (`--premake`).
    pub premake: u32,
    /// The longest a statement waits for a lock (`--lock-timeout`).
    pub lock_timeout: String,
    /// The move (the verification replays its change log first).
    pub mv: MoveSteps,
    /// The proof queries and their limits.
    pub proof: ProofArgs,
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
        // --premake months after the data and after today; later rows go to DEFAULT until
        // `maintain` adds their month.
        Ok(MonthlyPartitions::new(
            t.new.clone(),
            KEY,
            first,
            partition::premade_until(last, today, self.premake),
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

/// The per-table steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum What {
    Partitioned,
    ForeignKeys,
    Indexes,
    Analyze,
}

/// A step of `kind` doing `what` for every table with one connection (in a dry run: its
/// SQL, in details `sql`); the messages are joined, the details keyed by table.
fn per_table(name: &str, kind: StepKind, what: What) -> Step<Ctx> {
    Step::new(name, kind, move |c: &Ctx, cx: &StepCx| {
        Box::pin(async move {
            let mut conn = c.conn().await?;
            let (mut msgs, mut details) = (Vec::new(), serde_json::Map::new());
            for s in &c.tables {
                let (m, d) = table_step(c, cx, &mut conn, s, what).await?;
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
    .undo(move |c: &Ctx, _cx| Box::pin(async move { Ok(undo(c, what).await?) }))
}

async fn table_step(
    c: &Ctx,
    cx: &StepCx,
    conn: &mut PgConnection,
    s: &TableSpec,
    what: What,
) -> Result<(String, Value)> {
    let t = &s.t;
    let ident = |n: &String| quote_ident(n);
    if cx.dry_run {
        let sql: Vec<String> = match what {
            What::Partitioned => c.partitions_for(conn, t).await?.create_sql(&t.live, &[PK]),
            What::ForeignKeys => (s.foreign_keys.iter())
                .map(|fk| {
                    let (name, def) = (quote_ident(&fk.name), fk.definition());
                    format!(
                        "-- per partition: ADD CONSTRAINT ... NOT VALID, then VALIDATE\n\
                         ALTER TABLE {} ADD CONSTRAINT {name} {def}",
                        t.live.sql()
                    )
                })
                .collect(),
            What::Indexes => (s.indexes.iter())
                .map(|(n, cols)| {
                    let cols = cols.iter().map(ident).collect::<Vec<_>>().join(", ");
                    format!(
                        "CREATE INDEX IF NOT EXISTS {} ON ONLY {} ({cols}) \
                         -- then CREATE INDEX CONCURRENTLY per partition and ATTACH",
                        ident(n),
                        t.live.sql()
                    )
                })
                .collect(),
            What::Analyze => vec![format!(
                "VACUUM (ANALYZE) {} -- outside any transaction",
                t.live.sql()
            )],
        };
        return Ok((String::new(), json!({ "sql": sql })));
    }
    let target = c.target(conn, t).await?;
    Ok(match what {
        What::Partitioned if exists(conn, &t.new).await? || t.swapped(conn).await? => {
            (format!("{} exists", t.new), Value::Null)
        }
        What::Partitioned => {
            let p = c.partitions_for(conn, t).await?;
            p.create(conn, &t.live, &[PK]).await?;
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
            (
                format!("{}: {n} foreign keys validated", t.live),
                Value::Null,
            )
        }
        What::Indexes => {
            for (name, cols) in &s.indexes {
                let cols: Vec<&str> = cols.iter().map(String::as_str).collect();
                partition::create_index(conn, &target, name, &cols).await?;
            }
            (
                format!("{}: {} indexes", t.live, s.indexes.len()),
                Value::Null,
            )
        }
        What::Analyze => {
            // VACUUM cannot run in a transaction: one simple-protocol statement on a
            // connection with none open. On a partitioned table it covers every partition
            // (visibility map, free space) and gathers the parent's statistics too.
            let sql = format!("VACUUM (ANALYZE) {}", t.live.sql());
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(conn)
                .await?;
            (format!("vacuumed and analyzed {}", t.live), Value::Null)
        }
    })
}

async fn undo(c: &Ctx, what: What) -> Result<StepOutput> {
    let mut conn = PgConnection::connect_with(&c.opts).await?;
    for s in &c.tables {
        let target = c.target(&mut conn, &s.t).await?;
        match what {
            What::Partitioned => {
                let sql = format!("DROP TABLE IF EXISTS {}", s.t.new.sql());
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await?;
            }
            What::ForeignKeys if exists(&mut conn, &target).await? => {
                for fk in &s.foreign_keys {
                    partition::drop_foreign_key(&mut conn, &target, &fk.name).await?;
                }
            }
            What::Indexes => {
                for (name, _) in &s.indexes {
                    let sql = format!("DROP INDEX IF EXISTS {}", TableName::new(name).sql());
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&mut conn)
                        .await?;
                }
            }
            What::ForeignKeys | What::Analyze => {}
        }
    }
    Ok(StepOutput::message("undone"))
}

/// `partitioned_tables`: monthly partitions from the data, plus DEFAULT. Undone by
/// dropping them.
pub fn partitioned_tables() -> Step<Ctx> {
    per_table("partitioned_tables", StepKind::Prepare, What::Partitioned)
        .describe("creates <table>_partitioned: monthly range partitions from the data + DEFAULT")
}

/// `foreign_keys`: added `NOT VALID` then validated, per partition. Undone by dropping them.
pub fn foreign_keys() -> Step<Ctx> {
    per_table("foreign_keys", StepKind::Index, What::ForeignKeys)
        .describe("foreign keys NOT VALID, then VALIDATE, per partition")
}

/// `indexes`: on the parent only, then concurrently per partition and attached. Undone by
/// dropping them.
pub fn indexes() -> Step<Ctx> {
    per_table("indexes", StepKind::Index, What::Indexes)
        .describe("indexes on the parent, built concurrently per partition")
}

/// `analyze`: `VACUUM (ANALYZE)` of the new tables, a step of its own outside any
/// transaction (seed 002 §5.2).
pub fn analyze() -> Step<Ctx> {
    per_table("analyze", StepKind::PostSwitch, What::Analyze)
        .describe("VACUUM (ANALYZE) the new tables, outside any transaction")
}

/// The default proof queries (the dashboards' access paths the new indexes serve): one
/// site's and one program's rows of the data's last 90 days.
pub fn proof_queries() -> [QueryCheck; 2] {
    let recent = "created_at >= (SELECT max(created_at) FROM submissions) - interval '90 days'";
    [
        QueryCheck::new(
            "site_recent",
            format!(
                "SELECT * FROM {{table}} WHERE site_id = (SELECT site_id FROM sites ORDER BY site_id LIMIT 1) AND {recent}"
            ),
        ),
        QueryCheck::new(
            "program_recent",
            format!(
                "SELECT count(*) FROM {{table}} WHERE program_id = (SELECT program_id FROM pilot_programs ORDER BY program_id LIMIT 1) AND {recent}"
            ),
        ),
    ]
}

/// `proof` (after the indexes and `ANALYZE`): the proof queries timed on each new table
/// and on the previous one it replaced (seed 002: "query performance improved or same");
/// a query more than `--max-query-slowdown` times slower fails the step, and `--rollback`
/// swaps the previous tables back.
pub fn proof() -> Step<Ctx> {
    Step::new("proof", StepKind::PostSwitch, |c: &Ctx, _cx: &StepCx| {
        Box::pin(async move {
            let mut conn = c.conn().await?;
            let (mut findings, mut details) = (Vec::new(), serde_json::Map::new());
            for t in c.tables.iter().map(|s| &s.t) {
                if !exists(&mut conn, &t.old).await? {
                    continue;
                }
                let (found, timings) = (c.proof)
                    .compare(&mut conn, &t.old, &t.live, &proof_queries())
                    .await?;
                findings.extend(found.into_iter().map(|f| etl_core::Finding {
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

/// `inbound_foreign_keys` (pre-flight, before any write): the foreign keys of other tables
/// referencing the observation tables. The swap re-points them at the new tables (`NOT
/// VALID`, then `VALIDATE CONSTRAINT`), and the rollback back; but a partitioned table can
/// be referenced only through a unique key holding its partition key, and the new tables'
/// only one is their primary key (`observation_id`, `created_at`). A key referencing
/// anything else (the usual `observation_id` alone) refuses the run here, saying how to
/// make it fit.
pub fn inbound_foreign_keys() -> Step<Ctx> {
    Step::new(
        "inbound_foreign_keys",
        StepKind::Preflight,
        |c: &Ctx, _cx: &StepCx| {
            Box::pin(async move {
                let mut conn = c.conn().await?;
                let (mut msgs, mut findings, mut all) = (Vec::new(), Vec::new(), Vec::new());
                for s in &c.tables {
                    // Before the swap the application's table is `live`; after it, `old`
                    // holds no key any more (they followed the swap).
                    let fks = partition::inbound_foreign_keys(&mut conn, &s.t.live).await?;
                    for fk in &fks {
                        let fits = fk.fits(&[PK, KEY]);
                        findings.push(etl_core::Finding::check(
                            format!("{}: foreign key {} of {} can follow", s.t.live, fk.name, fk.table),
                            fits,
                            format!(
                                "{} ({}) references {} ({}); the partitioned table's only unique key is ({PK}, {KEY}):                                  add a column holding the observation's {KEY} to {}, a unique index ({PK}, {KEY}) on {}                                  and make the key ({}, <that column>) REFERENCES {} ({PK}, {KEY}) — or drop it — then run again",
                                fk.table,
                                fk.columns.join(", "),
                                s.t.live,
                                fk.ref_columns.join(", "),
                                fk.table,
                                s.t.live,
                                fk.columns.join(", "),
                                s.t.live,
                            ),
                        ));
                    }
                    msgs.push(format!("{}: {} referencing foreign key(s)", s.t.live, fks.len()));
                    all.extend(fks);
                }
                Ok(StepOutput::message(msgs.join("; "))
                    .with_details(json!({ "foreign_keys": all }))
                    .with_findings(findings))
            })
        },
    )
    .always()
    .in_dry_run()
    .describe("foreign keys of other tables on the observation tables: re-pointable at the swap?")
}

/// `maintain` (optional: `--maintain`, e.g. from cron, or `--only maintain`): every month
/// after the last partitioned one up to `--premake` months after the current month gets
/// its partition, and the rows of those months waiting in DEFAULT move into them, one
/// transaction per month (locks: [`partition::maintain`]). Nothing to undo: the new
/// partitions belong to the partitioned tables (a rollback swaps those out).
pub fn maintain() -> Step<Ctx> {
    Step::new("maintain", StepKind::PostSwitch, |c: &Ctx, _cx: &StepCx| {
        Box::pin(async move {
            let mut conn = c.conn().await?;
            let today = chrono::Utc::now().date_naive();
            let until = partition::premade_until(today, today, c.premake);
            let (mut msgs, mut details) = (Vec::new(), serde_json::Map::new());
            for s in &c.tables {
                let t = &s.t.live;
                let done = partition::maintain(&mut conn, t, KEY, until, &c.lock_timeout).await?;
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
    })
    .optional()
    .describe("adds the next months' partitions and moves their rows out of DEFAULT (--maintain)")
}

/// `verify` (a gate): old and new tables compared (counts, anti-joins both ways, content
/// hash), rows per partition, partition pruning. Its units (read = rows of the old table,
/// loaded = rows verified in the new one) are the run report's.
pub fn verify() -> Step<Ctx> {
    Step::new("verify", StepKind::Gate, |c: &Ctx, cx: &StepCx| {
        Box::pin(async move {
            let mut conn = c.conn().await?;
            let (mut msgs, mut details) = (Vec::new(), serde_json::Map::new());
            let (mut findings, mut units) = (Vec::new(), Vec::new());
            for s in &c.tables {
                let t = &s.t;
                let swapped = t.swapped(&mut conn).await?;
                let (old, new) = if swapped {
                    (t.old.clone(), t.live.clone())
                } else if exists(&mut conn, &t.new).await? {
                    if !cx.dry_run && !c.online {
                        // Changes made during (or since) the batch move first.
                        let n = c.mv.catch_up(&mut conn, t, &cx.cancel).await?;
                        msgs.push(format!("{}: {n} change(s) replayed", t.live));
                    }
                    (t.live.clone(), t.new.clone())
                } else {
                    msgs.push(format!("{}: nothing to verify yet", t.live));
                    continue;
                };
                let writes = c.online && swapped;
                let v = verify_partitioned(&mut conn, &t.live.name, &old, &new, KEY, PK, writes);
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
            // The per-table units join the run's report as a pipeline's would.
            let (id, now) = (cx.run_id.to_string(), chrono::Utc::now());
            let report = RunReport::new(&cx.migration, &id, RunStatus::Succeeded, &units, now);
            let mut out = StepOutput::message(msgs.join("; "))
                .with_details(Value::Object(details))
                .with_findings(findings);
            out.pipeline = (!units.is_empty()).then(|| Box::new(report));
            Ok(out)
        })
    })
    .in_dry_run()
    .describe("compares old and new tables (counts, anti-joins, hashes), partitions, pruning")
}
