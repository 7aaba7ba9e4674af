//! # etl-source-postgres
//!
//! A PostgreSQL table or query streamed as Arrow batches, for ferry pipelines:
//!
//! * **consistent**: every entity is read from one snapshot, in `REPEATABLE READ READ ONLY`
//!   transactions that import a snapshot exported with `pg_export_snapshot()`, so several
//!   connections read in parallel and still see one instant ([`Snapshot`]);
//! * **streamed**: keyset pages of the batch size (`WHERE key > $last ORDER BY key LIMIT n`),
//!   never the whole result in memory;
//! * **resumable**: units are entities or integer key ranges (`vendas[0..50000)`), and a
//!   unit can restart after the last key it delivered ([`PgSource::open_after`]);
//! * **safe**: filter values and `since` checkpoints are bound as parameters and cast
//!   server-side to the column's type; identifiers are quoted.
//!
//! [`RowWindow`]: rows `offset..offset + limit` in key order (a migration in batches),
//! resolved once per run to key bounds and read keyset by keyset.
//!
//! [`ServerConfig`] is a server as config files describe it (host, port, database, user,
//! password, ssl) and its URL.
//!
//! The type map is `etl_postgres::types` (shared with the sink); the decoders are in
//! [`types`]. Implements [`etl_core::Extract`].

#![warn(missing_docs)]

mod entity;
mod error;
mod server;
mod source;
pub mod types;
mod window;

pub use entity::{Entity, Filter, Key, Op, Relation};
pub use error::{PgSourceError, Result};
pub use server::ServerConfig;
pub use source::{BEGIN_SNAPSHOT, PgSource, PgSourceOptions, ResolvedEntity, Snapshot};
pub use types::{PgColumn, PgType, quote_ident};
pub use window::RowWindow;
