//! # etl-sink-dynamodb
//!
//! DynamoDB for ferry pipelines. Library code takes an [`aws_sdk_dynamodb::Client`] from
//! the caller (credentials, region, endpoint and SDK retries are the caller's choice).
//!
//! * [`mapping`]: Arrow rows -> items (`S`, `N`, `BOOL`, `NULL`, `L`, `M`, `SS`/`NS`, `B`),
//!   for any pipeline; the JSON forms of items.
//! * [`ItemWriter`]: `BatchWriteItem` in calls of 25, `concurrency` in flight, keys
//!   de-duplicated (last wins, counted), items over 400 KB refused before sending,
//!   `UnprocessedItems` and throttling retried with jittered exponential backoff up to
//!   `max_retries`, then a failure naming the table and the keys.
//! * [`DynamoLoad`]: the [`etl_core::Load`]; units are idempotent by key and recorded in a
//!   [`JsonCheckpoint`] file, so `--resume` neither loses nor duplicates. [`ItemCheck`]
//!   rejects rows that cannot become items, with their reason.
//! * [`backup`]: parallel-segment `Scan` to Parquet and restore into the same table (PITR
//!   cannot do that: it always creates a new table).
//! * [`check`]: items validated before the load (required, types, enums, keys, duplicates,
//!   references between entities) and compared after it.
//! * [`json_items`]: items built as JSON objects from source rows read by column name, as
//!   Arrow batches of a declared item schema (a transform's output).
//! * [`spec`]: a mapping file (entities, attributes and their source columns, code
//!   tables, checks) that a transform and a [`check::Validation`] are built from.
//! * [`admin`]: tables, counts by `Scan` (`Select=COUNT`), static-credential clients.
//! * [`steps`]: run-layer step bodies: a backup before the load and its undo.
//! * `dynalite` (feature `dynalite`): a local server launcher for tests and examples.

#![warn(missing_docs)]

pub mod admin;
pub mod backup;
pub mod check;
#[cfg(feature = "dynalite")]
pub mod dynalite;
mod error;
pub mod json_items;
mod load;
pub mod mapping;
pub mod spec;
pub mod steps;
mod writer;

pub use aws_sdk_dynamodb;
pub use error::{DynamoError, Result};
/// Re-exported from [`etl_core::checkpoint`], where it now lives.
pub use etl_core::checkpoint::JsonCheckpoint;
pub use load::{DynamoLoad, DynamoUnitWriter, ItemCheck};
pub use mapping::{Item, KeySchema, MappingOptions, NullMode};
pub use writer::{
    BATCH_WRITE_MAX, ItemWriter, PutOutcome, RefusedItem, WriteOptions, WriteStats, classify,
};
