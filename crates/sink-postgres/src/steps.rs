//! Ready-made steps of the run layer ([`etl_core::migration`]) for PostgreSQL targets,
//! for any migration context `C`: the staging table, the switch (undone by swapping
//! back), the cleanup, and SQL steps.
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

use std::sync::Arc;

use etl_core::migration::{Step, StepKind, StepOutput};
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use crate::staging::StagingTable;

/// The steps of a full replacement of a table through its staging twin.
#[derive(Debug, Clone)]
pub struct ReplaceSteps {
    opts: Arc<PgConnectOptions>,
    tables: StagingTable,
    lock_timeout: String,
}

async fn connect(opts: &PgConnectOptions) -> Result<PgConnection, etl_core::BoxError> {
    Ok(PgConnection::connect_with(opts).await?)
}

impl ReplaceSteps {
    /// Steps over `tables` in the database of `opts`; the switch waits at most 10 s for
    /// its locks.
    pub fn new(opts: PgConnectOptions, tables: StagingTable) -> Self {
        ReplaceSteps {
            opts: Arc::new(opts),
            tables,
            lock_timeout: "10s".into(),
        }
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
        Step::new("switch", StepKind::Switch, move |_c: &C, cx| {
            let (opts, t, lt) = (opts.clone(), t.clone(), lt.clone());
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
        .undo(move |_c: &C, _cx| {
            let (opts, t, lt) = (opts2.clone(), t2.clone(), lt2.clone());
            Box::pin(async move {
                let mut conn = connect(&opts).await?;
                if !t.states(&mut conn).await?.old {
                    return Ok(StepOutput::message(
                        "the switch had not committed: nothing to swap back",
                    ));
                }
                t.rollback(&mut conn, &lt).await?;
                Ok(StepOutput::message(format!(
                    "the previous data is live again; the rolled-back data is in {}",
                    t.staging
                )))
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
            let mut tx = conn.begin().await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(StepOutput::message("done"))
        })
    })
    .describe(describe)
}
