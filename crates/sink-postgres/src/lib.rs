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
//! * [`idmap`]: stable UUIDv5 ids for another system's things, with a mapping table;
//!   [`compare`]: staged rows compared column by column with rows derived again;
//! * [`rollup::Rollup`]: group-by counts and sums of the loaded rows, committed per unit,
//!   so a summary after the load needs no second scan;
//! * [`ident`], [`types`], [`catalog`], [`connect_options`]: re-exported from `etl-postgres`
//!   (identifiers always quoted, the Arrow <-> PostgreSQL type map, catalog helpers,
//!   connect options).
//!
//! ```no_run
//! use etl_sink_postgres::{PgLoad, ident::TableName, staging::StagingTable};
//! # fn demo(opts: sqlx::postgres::PgConnectOptions) {
//! let staging = StagingTable::for_live(TableName::new("cites_trade_records"));
//! let load = PgLoad::new(opts, staging.staging.clone()).with_staging(staging);
//! # }
//! ```

#![warn(missing_docs)]

#[macro_use]
extern crate etl_postgres;

pub mod backup;
pub mod compare;
pub mod copy;
mod error;
pub mod idmap;
pub mod journal;
pub mod ledger;
mod load;
pub mod move_data;
pub mod partition;
pub mod partition_steps;
pub mod preflight;
pub mod proof;
pub mod rollup;
pub mod sql_file;
pub mod staging;
pub mod steps;
pub mod types;
pub mod upsert;

pub use error::{Error, Result};
pub use etl_postgres::{ConnectSettings, catalog, connect_options, ident};
pub use load::{PgLoad, PgUnitWriter, insert_rejects};
pub use sqlx;
