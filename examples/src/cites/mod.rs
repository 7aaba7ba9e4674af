//! The CITES trade migrations (seeds 000 and 001): a full replacement of
//! `cites_trade_records` from the CITES Trade Database bulk CSV release, through a staging
//! table, species mapping, validation gates and an atomic switchover.

pub mod arctic;
pub mod generate;
pub mod migration;
pub mod schema;
pub mod species;
pub mod summary;

pub use migration::{Cites, CitesArgs, CitesConfig, migration, run, run_cli};
