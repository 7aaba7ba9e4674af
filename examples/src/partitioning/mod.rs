//! The observations partitioning migration (seed 002): `petri_observations` and
//! `gasifier_observations` moved into monthly range-partitioned tables (months from the
//! data, `--premake` months ahead of the data and of today, plus a DEFAULT partition),
//! batch or online; report, dashboard and permission tables (row-level security on the
//! report tables); views recreated; foreign keys of other tables referencing the
//! observation tables re-pointed at the swap (`NOT VALID`, then validated; refused up
//! front when the partitioned table cannot take them); missing foreign keys added `NOT
//! VALID` then validated; indexes; deprecated columns dropped; old tables kept as `*_old`
//! until `--cleanup`; `VACUUM (ANALYZE)`; `--maintain` later adds the next months and
//! moves their rows out of DEFAULT. A [`Migration`](etl_core::migration::Migration) of the
//! run layer: every step is recorded in the journal and has its undo.
//!
//! The batch move captures changes (a trigger and a change log, as the online move): the
//! updates and deletes made during and after the move are replayed before the
//! verification and, for those made since, under the swap's lock.
//!
//! ```text
//! preflight ─> inbound_foreign_keys ─> backup ─> 001..003 ─> partitioned_tables ─> move_data ─> verify ─> swap ─> 004 ─> foreign_keys ─> indexes ─> 005 ─> analyze ─> (maintain) ─> (backup_before_cleanup, cleanup)
//!  always,      always: refuses keys     pg_dump   SQL files,  months from the data   capture +      replay,   log replayed             outbound,                         VACUUM      optional      optional,
//!  lock probe   it cannot re-point                  RLS         + premade + DEFAULT    keyset/online  then gate under the lock                  NOT VALID+VALIDATE                 (ANALYZE)   (--maintain)  irreversible
//! ```

pub mod generate;
mod migration;
pub mod schema;
pub mod steps;

pub use migration::{MIGRATIONS, NAME, PartitioningArgs, migration, run, status};
