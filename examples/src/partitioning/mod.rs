//! The observations partitioning migration (seed 002): `petri_observations` and
//! `gasifier_observations` moved into monthly range-partitioned tables (months derived
//! from the data, plus a DEFAULT partition), batch or online; report, dashboard and
//! permission tables; views recreated; missing foreign keys added `NOT VALID` then
//! validated; indexes; deprecated columns dropped; old tables kept as `*_old` until
//! `--cleanup`; `ANALYZE`. Every step is recorded in `ferry_schema_migrations` and has its
//! rollback (see [`etl_sink_postgres::plan`]).

pub mod generate;
mod migration;
pub mod schema;
pub mod steps;

pub use migration::{MIGRATIONS, PLAN, PartitioningArgs, build_plan, run};
