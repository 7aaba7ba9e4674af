//! # etl-sink-postgres
//!
//! Loading Arrow batches into PostgreSQL the fast and safe way:
//!
//! * [`copy::CopyEncoder`]: Arrow -> binary `COPY` bytes (no per-row `INSERT`s);
//! * [`PgLoad`]: the `etl_core::Load` — one transaction per unit holding its rows, its
//!   rejects and its checkpoint, so `--resume` neither duplicates nor skips;
//! * [`staging::StagingTable`]: a staging twin of a production table, indexes built after
//!   the load, an atomic rename switchover, rollback and cleanup;
//! * [`ledger::LedgerTables`]: runs, per-unit migration log and import errors;
//! * [`ident`]: identifiers always quoted; [`types`]: the Arrow <-> PostgreSQL type map.
//!
//! ```no_run
//! use etl_sink_postgres::{PgLoad, ident::TableName, staging::StagingTable};
//! # fn demo(opts: sqlx::postgres::PgConnectOptions) {
//! let staging = StagingTable::for_live(TableName::new("cites_trade_records"));
//! let load = PgLoad::new(opts, staging.staging.clone()).with_staging(staging);
//! # }
//! ```

#![warn(missing_docs)]

/// `format!` for SQL whose dynamic parts are quoted identifiers or literals (see [`ident`]).
macro_rules! sqlf {
    ($($t:tt)*) => { sqlx::AssertSqlSafe(format!($($t)*)) };
}

pub mod copy;
mod error;
pub mod ident;
pub mod journal;
pub mod ledger;
mod load;
pub mod move_data;
pub mod partition;
pub mod plan;
pub mod staging;
pub mod steps;
pub mod types;

pub use error::{Error, Result};
pub use load::{PgLoad, PgUnitWriter, insert_rejects};
pub use sqlx;

/// Parse a PostgreSQL URL into connect options (statement logging turned down).
pub fn connect_options(url: &str) -> Result<sqlx::postgres::PgConnectOptions> {
    use sqlx::ConnectOptions;
    let opts: sqlx::postgres::PgConnectOptions = url.parse()?;
    Ok(opts
        .log_statements(tracing::log::LevelFilter::Debug)
        .application_name("ferry"))
}
