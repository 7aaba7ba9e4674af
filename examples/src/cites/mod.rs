//! The CITES trade migrations (seeds 000 and 001): a full replacement of
//! `cites_trade_records` from the CITES Trade Database bulk CSV release, through a staging
//! table, species mapping, validation gates and an atomic switchover.

pub mod arctic;
/// Deterministic generator of CITES trade bulk CSV files (`gen` is a reserved keyword in
/// edition 2024, hence the raw identifier).
pub mod r#gen;
pub mod migration;
pub mod schema;
pub mod species;
pub mod summary;

pub use migration::{Action, CitesArgs, CitesConfig, run};
