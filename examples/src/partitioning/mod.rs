//! The observations partitioning migration (seed 002): `petri_observations` and
//! `gasifier_observations` moved into monthly range-partitioned tables (months derived
//! from the data, plus a DEFAULT partition), batch or online; report, dashboard and
//! permission tables; views recreated; missing foreign keys added `NOT VALID` then
//! validated; indexes; deprecated columns dropped; old tables kept as `*_old` until
//! `--cleanup`; `ANALYZE`. A [`Migration`](etl_core::migration::Migration) of the run
//! layer: every step is recorded in the journal and has its undo.
//!
//! ```text
//! preflight ─> 001..003 ─> partitioned_tables ─> move_data ─> verify ─> swap ─> 004 ─> foreign_keys ─> indexes ─> 005 ─> analyze ─> (cleanup)
//!  always,      SQL files,   months from the       keyset or     gate      switch   views                                                  optional,
//!  lock probe   markers      data + DEFAULT        --online                                                                               irreversible
//! ```

pub mod generate;
mod migration;
pub mod schema;
pub mod steps;

pub use migration::{MIGRATIONS, NAME, PartitioningArgs, migration, run, status};
