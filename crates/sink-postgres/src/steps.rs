//! Ready-made steps of the run layer ([`etl_core::migration`]) for PostgreSQL targets,
//! for any migration context `C`: the staging table, the switch (undone by swapping
//! back), the cleanup, and SQL steps ([`ReplaceSteps`], [`sql_step`]); SQL migration files
//! with idempotency markers ([`sql_migration`]); the lock pre-flight ([`preflight()`]);
//! moves of whole tables inside the database, batch or online, with their swap
//! ([`MoveSteps`]).
//!
//! ```no_run
//! use etl_core::migration::{Migration, StepKind};
//! use etl_sink_postgres::{connect_options, ident::TableName, staging::StagingTable};
//! use etl_sink_postgres::steps::{ReplaceSteps, sql_step};
//! # fn demo() -> etl_sink_postgres::Result<()> {
//! let opts = connect_options("postgres://localhost/app")?;
//! let replace = ReplaceSteps::new(opts.clone(), StagingTable::for_live(TableName::new("cities")));
//! let m: Migration<()> = Migration::new("cities")
//!     .step(replace.staging())
//!     // ... a pipeline step loading `cities_staging`, gates ...
//!     .step(replace.switch())
//!     .step(sql_step("analyze", StepKind::PostSwitch, opts, "ANALYZE cities"))
//!     .step(replace.cleanup());
//! # Ok(()) }
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use etl_core::migration::{Step, StepCx, StepKind, StepOutput};
use etl_core::{Finding, Progress};
use etl_postgres::catalog::{self, Scope};
use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use crate::ident::TableName;
use crate::ledger::LedgerTables;
use crate::move_data::{self, KeysetMove, OnlineMove, swap_names};
use crate::partition::validate_inbound_foreign_keys;
use crate::preflight;
use crate::sql_file::{MARKERS, SqlMigration, check_unchanged, split_statements};
use crate::staging::{StagingTable, count_rows, exists};

/// The steps of a full replacement of a table through its staging twin.
#[derive(Debug, Clone)]
pub struct ReplaceSteps {
    opts: Arc<PgConnectOptions>,
    tables: StagingTable,
    lock_timeout: String,
    ledger: Option<LedgerTables>,
    after_rollback: Option<Arc<str>>,
}

async fn connect(opts: &PgConnectOptions) -> Result<PgConnection, etl_core::BoxError> {
    Ok(crate::ConnectSettings::default().connect(opts).await?)
}

impl ReplaceSteps {
    /// Steps over `tables` in the database of `opts`; the switch waits at most 10 s for
    /// its locks.
    pub fn new(opts: PgConnectOptions, tables: StagingTable) -> Self {
        ReplaceSteps {
            opts: Arc::new(opts),
            tables,
            lock_timeout: "10s".into(),
            ledger: None,
            after_rollback: None,
        }
    }

    /// Record the switch and its undo in the run ledger the load wrote (run status
    /// `switched` / `rolled_back`, see [`LedgerTables::set_status`]).
    pub fn ledger(mut self, ledger: LedgerTables) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// SQL run (in one transaction) after the switch's undo has made the previous data
    /// live again: the rebuild of tables derived from the live one (a summary), `ANALYZE`.
    pub fn after_rollback(mut self, sql: impl Into<String>) -> Self {
        self.after_rollback = Some(sql.into().into());
        self
    }

    /// The longest the switch (and its undo) waits for a lock (a PostgreSQL interval).
    pub fn lock_timeout(mut self, interval: impl Into<String>) -> Self {
        self.lock_timeout = interval.into();
        self
    }

    /// The tables.
    pub fn tables(&self) -> &StagingTable {
        &self.tables
    }

    /// `staging` ([`StepKind::Prepare`]): drop and create the staging table like the live
    /// one, without indexes ([`StagingTable::create`]). Its undo drops the staging table
    /// unless the switch made it live.
    pub fn staging<C: Send + Sync + 'static>(&self) -> Step<C> {
        let (opts, t) = (self.opts.clone(), self.tables.clone());
        let (opts2, t2) = (self.opts.clone(), self.tables.clone());
        Step::new("staging", StepKind::Prepare, move |_c: &C, _cx| {
            let (opts, t) = (opts.clone(), t.clone());
            Box::pin(async move {
                let mut conn = connect(&opts).await?;
                t.create(&mut conn).await?;
                Ok(StepOutput::message(format!(
                    "{} created like {}",
                    t.staging, t.live
                )))
            })
        })
        .undo(move |_c: &C, cx| {
            let (opts, t) = (opts2.clone(), t2.clone());
            Box::pin(async move {
                if cx.details_of("switch").is_some() {
                    // The switch's undo put the new data back into staging: keep it.
                    return Ok(StepOutput::message(format!("{} kept", t.staging)));
                }
                let mut conn = connect(&opts).await?;
                sqlx::query(sqlf!("DROP TABLE IF EXISTS {}", t.staging.sql()))
                    .execute(&mut conn)
                    .await?;
                Ok(StepOutput::message(format!("{} dropped", t.staging)))
            })
        })
        .describe(format!(
            "creates {} like {} (indexes are built after the load)",
            self.tables.staging, self.tables.live
        ))
    }

    /// `indexes` ([`StepKind::Index`]): the live table's indexes, keys and foreign keys
    /// built on the loaded staging table ([`StagingTable::build_indexes`], with 512 MB of
    /// `maintenance_work_mem`); a bulk load into an unindexed table is several times
    /// faster. Idempotent: a rerun after a kill skips what exists.
    pub fn indexes<C: Send + Sync + 'static>(&self) -> Step<C> {
        let (opts, t) = (self.opts.clone(), self.tables.clone());
        Step::new("indexes", StepKind::Index, move |_c: &C, _cx| {
            let (opts, t) = (opts.clone(), t.clone());
            Box::pin(async move {
                let mut conn = connect(&opts).await?;
                sqlx::query("SET maintenance_work_mem = '512MB'")
                    .execute(&mut conn)
                    .await?;
                let built = t.build_indexes(&mut conn).await?;
                Ok(StepOutput::message(format!(
                    "{} indexes and keys built on {}",
                    built.len(),
                    t.staging
                ))
                .with_details(json!({ "built": built })))
            })
        })
        .describe(format!(
            "builds the indexes and keys of {} on {}",
            self.tables.live, self.tables.staging
        ))
    }

    /// `switch` ([`StepKind::Switch`]): staging becomes live and live becomes `_old` in
    /// one transaction ([`StagingTable::switch`]). Run again after a kill that followed
    /// its commit, it sees the switch done and does nothing. Its undo swaps back
    /// ([`StagingTable::rollback`]): the previous data is live again, the new data in
    /// staging.
    pub fn switch<C: Send + Sync + 'static>(&self) -> Step<C> {
        let (opts, t, lt) = (
            self.opts.clone(),
            self.tables.clone(),
            self.lock_timeout.clone(),
        );
        let (opts2, t2, lt2) = (
            self.opts.clone(),
            self.tables.clone(),
            self.lock_timeout.clone(),
        );
        let (ledger, ledger2, after) = (
            self.ledger.clone(),
            self.ledger.clone(),
            self.after_rollback.clone(),
        );
        Step::new("switch", StepKind::Switch, move |_c: &C, cx| {
            let (opts, t, lt, ledger) = (opts.clone(), t.clone(), lt.clone(), ledger.clone());
            Box::pin(async move {
                let mut conn = connect(&opts).await?;
                if cx.resuming() && t.switched(&mut conn).await? {
                    return Ok(StepOutput::message(format!(
                        "{} was already live (the switch had committed before the interruption)",
                        t.live
                    )));
                }
                let t0 = std::time::Instant::now();
                t.switch(&mut conn, &lt).await?;
                if let Some(l) = &ledger {
                    l.set_status(&mut conn, cx.run_id, "switched").await?;
                }
                Ok(StepOutput::message(format!(
                    "{} is live; the previous data is in {}",
                    t.live, t.old
                ))
                .with_details(json!({
                    "switch_seconds": t0.elapsed().as_secs_f64(),
                    "previous_table": t.old.to_string(),
                })))
            })
        })
        .undo(move |_c: &C, cx| {
            let (opts, t, lt) = (opts2.clone(), t2.clone(), lt2.clone());
            let (ledger2, after) = (ledger2.clone(), after.clone());
            Box::pin(async move {
                let mut conn = connect(&opts).await?;
                if !t.states(&mut conn).await?.old {
                    return Ok(StepOutput::message(
                        "the switch had not committed: nothing to swap back",
                    ));
                }
                t.rollback(&mut conn, &lt).await?;
                if let Some(l) = &ledger2 {
                    l.set_status(&mut conn, cx.run_id, "rolled_back").await?;
                }
                if let Some(sql) = &after {
                    run_sql(&mut conn, sql).await?;
                }
                let rows = count_rows(&mut conn, &t.live).await?;
                Ok(StepOutput::message(format!(
                    "the previous data is live again ({rows} rows); the rolled-back data is in {}",
                    t.staging
                ))
                .with_details(
                    json!({ "live_rows": rows, "staging_now_holds": t.staging.to_string() }),
                ))
            })
        })
        .describe(format!(
            "renames {} -> {} and {} -> {} in one transaction",
            self.tables.live, self.tables.old, self.tables.staging, self.tables.live
        ))
    }

    /// `cleanup` ([`StepKind::Cleanup`], optional, irreversible): drop `_old` and any
    /// leftover staging table ([`StagingTable::cleanup`]).
    pub fn cleanup<C: Send + Sync + 'static>(&self) -> Step<C> {
        let (opts, t) = (self.opts.clone(), self.tables.clone());
        Step::new("cleanup", StepKind::Cleanup, move |_c: &C, _cx| {
            let (opts, t) = (opts.clone(), t.clone());
            Box::pin(async move {
                let mut conn = connect(&opts).await?;
                let dropped = t.cleanup(&mut conn).await?;
                Ok(
                    StepOutput::message(format!("dropped {}", dropped.join(", ")))
                        .with_details(json!({ "dropped_tables": dropped })),
                )
            })
        })
        .optional()
        .irreversible(format!(
            "the cleanup dropped {}: restore the previous data from a backup",
            self.tables.old
        ))
        .describe(format!(
            "drops {} and any leftover {} (asked for by name)",
            self.tables.old, self.tables.staging
        ))
    }
}

/// `name` ([`StepKind::Backup`]), to place before anything changes: a `pg_dump` of
/// `tables` with its manifest ([`crate::backup::dump`]) into
/// [`etl_core::migration::backup_dir`] (under `backup_dir`, else `<report-dir>/backups`);
/// details: `dir` (what `--restore` takes, see [`crate::backup::restore`]) and the
/// `manifest`. Run again after a kill it takes a new backup of the same, unchanged tables.
/// Nothing to undo: the backup stays.
pub fn pg_dump_step<C: Send + Sync + 'static>(
    name: &str,
    url: &str,
    tables: Vec<TableName>,
    backup_dir: Option<std::path::PathBuf>,
) -> Step<C> {
    let url: Arc<str> = url.into();
    let tables = Arc::new(tables);
    let list = tables
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    Step::new(name, StepKind::Backup, move |_c: &C, cx| {
        let (url, tables, base) = (url.clone(), tables.clone(), backup_dir.clone());
        Box::pin(async move {
            let dir =
                etl_core::migration::backup_dir(base.as_deref(), &cx.report_dir, &cx.migration);
            let manifest = crate::backup::dump(&url, &tables, &dir).await?;
            Ok(StepOutput::message(format!(
                "pg_dump of {} tables ({} bytes) in {}",
                manifest.tables.len(),
                manifest.bytes,
                dir.display()
            ))
            .with_details(json!({ "dir": dir, "manifest": manifest })))
        })
    })
    .describe(format!(
        "pg_dump of {list} with a checksummed manifest (--restore puts them back)"
    ))
}

/// A step that runs `sql` (one or more statements) in one transaction: idempotent SQL
/// (`CREATE ... IF NOT EXISTS`, `ANALYZE`, a rebuild in one transaction) is safe to run
/// again after a kill. Nothing to undo.
pub fn sql_step<C: Send + Sync + 'static>(
    name: &str,
    kind: StepKind,
    opts: PgConnectOptions,
    sql: impl Into<String>,
) -> Step<C> {
    let sql: Arc<str> = sql.into().into();
    let describe = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    let opts = Arc::new(opts);
    Step::new(name, kind, move |_c: &C, _cx| {
        let (opts, sql) = (opts.clone(), sql.clone());
        Box::pin(async move {
            let mut conn = connect(&opts).await?;
            run_sql(&mut conn, &sql).await?;
            Ok(StepOutput::message("done"))
        })
    })
    .describe(describe)
}

/// `sql` (one or more statements) in one transaction.
async fn run_sql(conn: &mut PgConnection, sql: &str) -> crate::Result<()> {
    let mut tx = conn.begin().await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// A connection of `opts` with `lock_timeout` set for the session.
pub(crate) async fn connect_with_timeout(
    opts: &PgConnectOptions,
    lock_timeout: &str,
) -> Result<PgConnection, etl_core::BoxError> {
    let mut conn = connect(opts).await?;
    catalog::set_lock_timeout(&mut conn, lock_timeout, Scope::Session).await?;
    Ok(conn)
}

/// A step applying the SQL migration file `path` ([`StepKind::Schema`], named after the
/// file without `.sql`): the file and its idempotency marker commit in one transaction
/// ([`SqlMigration::apply`]), so a rerun after a kill between that commit and the
/// journal's record reports "already applied"; a file applied before with other content
/// is refused. Fingerprinted with the file's SHA-256 (`--resume` refuses a changed file).
/// Undone by `NAME.down.sql` and the marker's removal; irreversible without one. In a dry
/// run it lists its statements (details `sql`) and checks the marker.
///
/// # Errors
/// The file cannot be read.
pub fn sql_migration<C: Send + Sync + 'static>(
    opts: PgConnectOptions,
    path: &Path,
) -> crate::Result<Step<C>> {
    let file = Arc::new(SqlMigration::from_file(path)?);
    let opts = Arc::new(opts);
    let (f2, opts2) = (file.clone(), opts.clone());
    let statements = split_statements(&file.up).len();
    let step = Step::new(file.name.clone(), StepKind::Schema, move |_c: &C, cx| {
        let (f, opts) = (file.clone(), opts.clone());
        Box::pin(async move {
            let mut conn = connect(&opts).await?;
            let shown = f.path.display().to_string();
            if cx.dry_run {
                check_unchanged(&mut conn, &cx.migration, std::slice::from_ref(&*f)).await?;
                return Ok(if f.applied(&mut conn, &cx.migration).await?.is_some() {
                    StepOutput::message(format!("{shown} already applied"))
                } else {
                    StepOutput::message(format!("would apply {shown}"))
                        .with_details(json!({ "sql": split_statements(&f.up) }))
                });
            }
            let applied = f.apply(&mut conn, &cx.migration, cx.run_id).await?;
            Ok(StepOutput::message(if applied {
                format!("applied {shown}")
            } else {
                format!("{shown} already applied (its marker is in {MARKERS})")
            })
            .with_details(json!({ "file": shown, "sha256": f.sha256(), "applied_now": applied })))
        })
    })
    .in_dry_run()
    .fingerprint(f2.sha256())
    .describe(format!(
        "applies {} ({statements} statement(s){})",
        f2.path
            .file_name()
            .map_or(f2.path.display(), |n| std::path::Path::new(n).display()),
        if SqlMigration::in_transaction(&f2.up) {
            ", one transaction"
        } else {
            ", no transaction"
        }
    ));
    Ok(if f2.down.is_none() {
        let why = format!(
            "{} has no rollback script ({} beside it would undo it)",
            f2.path.display(),
            f2.path.with_extension("down.sql").display()
        );
        step.irreversible(why)
    } else {
        step.undo(move |_c: &C, cx| {
            let (f, opts) = (f2.clone(), opts2.clone());
            Box::pin(async move {
                let mut conn = connect(&opts).await?;
                Ok(StepOutput::message(
                    if f.revert(&mut conn, &cx.migration).await? {
                        format!("rolled back {}", f.path.display())
                    } else {
                        format!("{} was not applied: nothing to undo", f.path.display())
                    },
                ))
            })
        })
    })
}

/// The pre-flight step (`preflight`, [`StepKind::Preflight`], runs on every invocation
/// and in dry runs): table sizes and row counts, foreign-key dependencies, the locks other
/// sessions hold on `tables`; outside a dry run it refuses to go on when `tables` cannot be
/// locked within `lock_timeout` ([`preflight::probe_locks`]).
pub fn preflight<C: Send + Sync + 'static>(
    opts: PgConnectOptions,
    tables: Vec<TableName>,
    lock_timeout: &str,
) -> Step<C> {
    let (opts, tables, lt) = (Arc::new(opts), Arc::new(tables), lock_timeout.to_owned());
    let what = format!(
        "sizes, foreign keys and lock holders; refuses to start when {} cannot be locked within {lt}",
        tables
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Step::new("preflight", StepKind::Preflight, move |_c: &C, cx| {
        let (opts, tables, lt) = (opts.clone(), tables.clone(), lt.clone());
        Box::pin(async move {
            let mut conn = connect(&opts).await?;
            let sizes = preflight::table_sizes(&mut conn).await?;
            let fks = preflight::foreign_keys(&mut conn).await?;
            let holders = preflight::lock_holders(&mut conn, &tables).await?;
            let mut findings = Vec::new();
            if !cx.dry_run {
                preflight::probe_locks(&mut conn, &tables, &lt).await?;
                findings.push(Finding::pass(
                    "locks_available",
                    format!("the tables can be locked within {lt}"),
                ));
            }
            let rows: i64 = sizes
                .iter()
                .filter(|s| tables.iter().any(|t| t.name == s.table))
                .map(|s| s.row_count)
                .sum();
            Ok(StepOutput::message(format!(
                "{} tables, {} foreign keys, {} lock(s) held by other sessions on the tables, ~{rows} rows",
                sizes.len(),
                fks.len(),
                holders.len()
            ))
            .with_details(json!({ "table_sizes": sizes, "foreign_keys": fks, "lock_holders": holders }))
            .with_findings(findings))
        })
    })
    .always()
    .in_dry_run()
    .describe(what)
}

/// One table moved by [`MoveSteps`]: rows of `live` go into `new`; the swap renames `live`
/// to `old` and `new` to `live`.
#[derive(Debug, Clone)]
pub struct MoveTable {
    /// The table the application uses.
    pub live: TableName,
    /// Its replacement, filled by the move.
    pub new: TableName,
    /// The name `live` gets at the swap.
    pub old: TableName,
}

impl MoveTable {
    /// `live`, `<live>_partitioned` (or another `suffix`) and `<live>_old`.
    pub fn new(live: TableName, suffix: &str) -> Self {
        MoveTable {
            new: live.suffixed(suffix),
            old: live.suffixed("_old"),
            live,
        }
    }

    /// Whether the swap happened: `old` exists and `new` does not.
    ///
    /// # Errors
    /// The database's.
    pub async fn swapped(&self, conn: &mut PgConnection) -> crate::Result<bool> {
        Ok(exists(conn, &self.old).await? && !exists(conn, &self.new).await?)
    }
}

/// The steps of a move of whole tables into replacements inside one database
/// ([`move_data`]): `move_data` (keyset batches with checkpoints, or online: change
/// capture, backfill, replay and a short-lock swap), `swap` and the optional `cleanup`.
#[derive(Debug, Clone)]
pub struct MoveSteps {
    opts: Arc<PgConnectOptions>,
    name: String,
    tables: Vec<MoveTable>,
    key: Vec<String>,
    pk: String,
    /// Rows per batch transaction.
    pub batch_size: i64,
    /// Pause between batches.
    pub pause: Duration,
    /// The longest the swap (and every statement of these steps) waits for a lock.
    pub lock_timeout: String,
    /// Online move instead of batches.
    pub online: bool,
}

impl MoveSteps {
    /// Moves of `tables` in the database of `opts`, in batches ordered by `key` (unique,
    /// e.g. `created_at, id`), with `pk` the primary key; checkpoints are named
    /// `<name>:<live>`. 10,000 rows a batch, no pause, a 5 s lock timeout, batch mode.
    pub fn new(
        opts: PgConnectOptions,
        name: &str,
        tables: Vec<MoveTable>,
        key: &[&str],
        pk: &str,
    ) -> Self {
        MoveSteps {
            opts: Arc::new(opts),
            name: name.to_owned(),
            tables,
            key: key.iter().map(|k| (*k).to_owned()).collect(),
            pk: pk.to_owned(),
            batch_size: 10_000,
            pause: Duration::ZERO,
            lock_timeout: "5s".into(),
            online: false,
        }
    }

    /// The tables.
    pub fn tables(&self) -> &[MoveTable] {
        &self.tables
    }

    /// The keyset move of `t`.
    pub fn keyset(&self, t: &MoveTable) -> KeysetMove {
        let key: Vec<&str> = self.key.iter().map(String::as_str).collect();
        let mut mv = KeysetMove::new(
            format!("{}:{}", self.name, t.live.name),
            t.live.clone(),
            t.new.clone(),
            &key,
        );
        mv.batch_size = self.batch_size;
        mv.pause = self.pause;
        mv
    }

    /// The online move of `t`.
    pub fn online_move(&self, t: &MoveTable) -> OnlineMove {
        let mut o = OnlineMove::new(self.keyset(t), &self.pk);
        o.lock_timeout = self.lock_timeout.clone();
        o
    }

    async fn conn(&self) -> Result<PgConnection, etl_core::BoxError> {
        connect_with_timeout(&self.opts, &self.lock_timeout).await
    }

    /// Swap back what was swapped; with `undo_move`, also remove the change capture, the
    /// checkpoints and the moved rows.
    async fn swap_back(&self, undo_move: bool) -> Result<StepOutput, etl_core::BoxError> {
        let mut conn = self.conn().await?;
        let mut msgs = Vec::new();
        for t in &self.tables {
            if t.swapped(&mut conn).await? {
                let (_, fks, _) =
                    swap_names(&mut conn, &t.live, &t.old, &t.new.name, &self.lock_timeout).await?;
                validate_inbound_foreign_keys(&mut conn, &t.live).await?;
                msgs.push(format!("{} is the previous table again", t.live));
                if !fks.is_empty() {
                    msgs.push(format!("{} re-pointed at it", fks.join(", ")));
                }
            }
            if undo_move {
                self.online_move(t)
                    .remove_capture(&mut conn, &t.live)
                    .await?;
                self.keyset(t).reset(&mut conn).await?;
                if exists(&mut conn, &t.new).await? {
                    sqlx::query(sqlf!("TRUNCATE {}", t.new.sql()))
                        .execute(&mut conn)
                        .await?;
                }
                msgs.push(format!("{}: moved rows removed", t.new));
            }
        }
        Ok(StepOutput::message(msgs.join("; ")))
    }

    async fn preview(&self, conn: &mut PgConnection, t: &MoveTable) -> crate::Result<Vec<String>> {
        let mut out = Vec::new();
        let mut mv = self.keyset(t);
        let cols = move_data::columns(conn, &t.live).await?;
        mv.columns = Some(cols.into_iter().map(|(n, _)| n).collect());
        // Both modes capture changes: online replays them before its swap, batch mode before
        // the verification and under the swap's lock.
        out.extend(self.online_move(t).capture_sql(conn).await?);
        let b = mv.batch_sql(conn, false).await?;
        out.push(format!(
            "-- repeated until a window comes back short, each batch in its own transaction with its checkpoint:\n{};\n-- (the last window: {});\n{}",
            b.window_end, b.last_key, b.insert
        ));
        if self.online {
            out.push(format!(
                "-- replay the change log, then in one transaction: LOCK TABLE {l} IN ACCESS EXCLUSIVE MODE; replay the rest; \
                 ALTER TABLE {l} RENAME TO {o}; ALTER TABLE {n} RENAME TO {l}; views re-created",
                l = t.live.sql(),
                o = t.old.sql(),
                n = t.new.sql()
            ));
        }
        Ok(out)
    }

    async fn run_move(&self, cx: &StepCx) -> Result<StepOutput, etl_core::BoxError> {
        let mut conn = self.conn().await?;
        let progress = Progress::new(cx.progress, self.tables.len() as u64);
        let (mut msgs, mut details, mut sql) = (Vec::new(), serde_json::Map::new(), Vec::new());
        for t in &self.tables {
            if cx.dry_run {
                sql.extend(self.preview(&mut conn, t).await.unwrap_or_else(|e| {
                    vec![format!(
                        "-- (the SQL depends on earlier steps and cannot be shown yet: {e})"
                    )]
                }));
                continue;
            }
            if t.swapped(&mut conn).await? {
                msgs.push(format!("{} already swapped in", t.live));
                continue;
            }
            if self.online {
                let o = self.online_move(t);
                let st = o.run(&mut conn, &t.old.name, &progress, &cx.cancel).await?;
                msgs.push(format!(
                    "{}: {} rows backfilled, {} changes replayed, swapped with the lock held {:.1} ms",
                    t.live,
                    st.backfill.total_rows,
                    st.replay.changes + st.swap.final_changes,
                    st.swap.lock_held_ms
                ));
                validate_inbound_foreign_keys(&mut conn, &t.live).await?;
                details.insert(t.live.name.clone(), json!(st));
            } else {
                // The change capture goes in before the first batch: updates and deletes of
                // rows already moved are logged and replayed (verify, swap).
                let o = self.online_move(t);
                o.install_capture(&mut conn).await?;
                let mv = self.keyset(t);
                let st = mv.run(&mut conn, &progress, &cx.cancel, false).await?;
                let replay = o.replay(&mut conn, 0).await?;
                let (rows, batches) = (st.total_rows, st.batches);
                msgs.push(format!(
                    "{}: {rows} rows in {batches} batches, {} changes made meanwhile replayed",
                    t.live, replay.changes
                ));
                details.insert(
                    t.live.name.clone(),
                    json!({ "backfill": st, "replay": replay }),
                );
            }
        }
        progress.finish();
        if cx.dry_run {
            msgs.push("would move the rows (details: sql)".into());
            details.insert("sql".into(), json!(sql));
        }
        Ok(StepOutput::message(msgs.join("; ")).with_details(Value::Object(details)))
    }

    /// `move_data` ([`StepKind::DataMove`]): every table's rows into its replacement, in
    /// keyset batches that each commit with their checkpoint (a rerun after a kill
    /// continues after the last one), or online (the swap included). Details per table:
    /// the move's figures. In a dry run it lists the SQL (details `sql`). Its undo swaps
    /// back, removes the capture and the checkpoints, and empties the replacements.
    pub fn move_data<C: Send + Sync + 'static>(&self) -> Step<C> {
        let (me, me2) = (Arc::new(self.clone()), Arc::new(self.clone()));
        Step::new("move_data", StepKind::DataMove, move |_c: &C, cx| {
            let me = me.clone();
            Box::pin(async move { me.run_move(cx).await })
        })
        .undo(move |_c: &C, _cx| {
            let me = me2.clone();
            Box::pin(async move { me.swap_back(true).await })
        })
        .in_dry_run()
        .describe(if self.online {
            "online move: change capture, keyset backfill, replay, swap under a short lock"
        } else {
            "change capture, then keyset batches, each committed with its checkpoint"
        })
    }

    /// Bring `t.new` up to date with `t.live` before the verification (batch mode): the
    /// change log replayed (rows inserted, updated or deleted since the move began), or,
    /// for a move begun without the capture, the rows after the move's last key copied.
    /// Returns the changes replayed (or rows copied).
    ///
    /// # Errors
    /// The database's.
    pub async fn catch_up(
        &self,
        conn: &mut PgConnection,
        t: &MoveTable,
        cancel: &etl_core::CancellationToken,
    ) -> crate::Result<u64> {
        let o = self.online_move(t);
        if exists(conn, &o.log).await? {
            Ok(o.replay(conn, 0).await?.changes)
        } else {
            let st = (self.keyset(t))
                .run(conn, &Progress::hidden(), cancel, true)
                .await?;
            Ok(st.rows)
        }
    }

    async fn run_swap(&self, cx: &StepCx) -> Result<StepOutput, etl_core::BoxError> {
        let mut conn = self.conn().await?;
        let (mut msgs, mut details) = (Vec::new(), serde_json::Map::new());
        for t in &self.tables {
            if t.swapped(&mut conn).await? {
                msgs.push(format!("{} already swapped in", t.live));
                continue;
            }
            let o = self.online_move(t);
            let (views, fks, held, replayed) = if exists(&mut conn, &o.log).await? {
                // The changes since the verification, replayed under the swap's lock.
                o.replay(&mut conn, o.swap_backlog).await?;
                let st = o.swap(&mut conn, &t.old.name).await?;
                (st.views, st.foreign_keys, st.lock_held_ms, st.final_changes)
            } else {
                let caught = self.catch_up(&mut conn, t, &cx.cancel).await?;
                let lt = &self.lock_timeout;
                let (v, f, held) = swap_names(&mut conn, &t.live, &t.new, &t.old.name, lt).await?;
                (v, f, held, caught)
            };
            let validated = validate_inbound_foreign_keys(&mut conn, &t.live).await?;
            msgs.push(format!(
                "{} is the new table now (previous: {}), lock held {held:.1} ms",
                t.live, t.old
            ));
            if !fks.is_empty() {
                msgs.push(format!(
                    "foreign keys {} re-pointed at it (NOT VALID, then validated)",
                    fks.join(", ")
                ));
            }
            details.insert(
                t.live.name.clone(),
                json!({ "caught_up": replayed, "lock_held_ms": held, "views": views,
                        "foreign_keys": fks, "validated": validated }),
            );
        }
        Ok(StepOutput::message(msgs.join("; ")).with_details(Value::Object(details)))
    }

    /// `swap` ([`StepKind::Switch`]): batch mode takes the lock, replays the changes logged
    /// since the verification (or, for a move begun without the capture, copies what
    /// arrived after the move's last key) and swaps the names, the views and the foreign
    /// keys of other tables (`NOT VALID`, validated after the commit) in one transaction
    /// per table; after an online move it only confirms the swap. Its undo swaps back.
    pub fn swap<C: Send + Sync + 'static>(&self) -> Step<C> {
        let (me, me2) = (Arc::new(self.clone()), Arc::new(self.clone()));
        let renames: Vec<String> = (self.tables.iter())
            .map(|t| format!("{} -> {}, {} -> {}", t.live, t.old, t.new, t.live))
            .collect();
        Step::new("swap", StepKind::Switch, move |_c: &C, cx| {
            let me = me.clone();
            Box::pin(async move { me.run_swap(cx).await })
        })
        .undo(move |_c: &C, _cx| {
            let me = me2.clone();
            Box::pin(async move { me.swap_back(false).await })
        })
        .describe(format!(
            "renames {} in one short-lock transaction per table (changes since the verification replayed under the lock, views re-created, other tables' foreign keys re-pointed NOT VALID and validated after)",
            renames.join("; ")
        ))
    }

    async fn run_cleanup(&self) -> Result<StepOutput, etl_core::BoxError> {
        let mut conn = self.conn().await?;
        let mut msgs = Vec::new();
        for t in &self.tables {
            let had = exists(&mut conn, &t.old).await?;
            sqlx::query(sqlf!("DROP TABLE IF EXISTS {}", t.old.sql()))
                .execute(&mut conn)
                .await?;
            self.online_move(t)
                .remove_capture(&mut conn, &t.live)
                .await?;
            self.keyset(t).reset(&mut conn).await?;
            msgs.push(if had {
                format!("dropped {}", t.old)
            } else {
                format!("{} was already gone", t.old)
            });
        }
        Ok(StepOutput::message(msgs.join("; ")))
    }

    /// `cleanup` ([`StepKind::Cleanup`], optional, irreversible): drop the previous tables,
    /// the change capture and the checkpoints.
    pub fn cleanup<C: Send + Sync + 'static>(&self) -> Step<C> {
        let me = Arc::new(self.clone());
        let olds: Vec<String> = self.tables.iter().map(|t| t.old.to_string()).collect();
        let olds = olds.join(", ");
        Step::new("cleanup", StepKind::Cleanup, move |_c: &C, _cx| {
            let me = me.clone();
            Box::pin(async move { me.run_cleanup().await })
        })
        .optional()
        .irreversible(format!(
            "the cleanup dropped {olds}: restore them from a backup"
        ))
        .describe(format!(
            "drops {olds} and the move's leftovers (asked for by name)"
        ))
    }
}
