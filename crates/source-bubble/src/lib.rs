//! # etl-source-bubble
//!
//! The [Bubble](https://bubble.io) Data API as a ferry source.
//!
//! * [`BubbleClient`]: `GET {base}/obj/{type}` with `Authorization: Bearer`, a request rate
//!   it never exceeds (shared by every task using it), `Retry-After`, backoff with jitter on
//!   429/503/5xx, loud errors naming the type and page when retries run out, immediate
//!   errors on 401/404.
//! * [`KeysetPager`]: pages by `Created Date` then `_id`, seeking with `greater than`, never
//!   by offset (the API stops returning things past an offset of ~50,000 while `remaining`
//!   stays positive), de-duplicating boundary ids and stopping on an empty page.
//! * [`TypeSchema`]: a declared schema per type, with keys in both key modes (display names
//!   or generated ids); [`RecordDecoder`] turns things into typed Arrow batches (values
//!   that do not fit are rejects with a reason) or lossless raw text batches.
//! * [`BubbleExtract`]: a type as an [`etl_core::Extract`] whose units are disjoint
//!   `Created Date` windows, paged concurrently.
//! * [`drift`]: schema drift (a declared field renamed, removed or changing shape) fails the
//!   extract loudly, naming the type and the field, before anything showing it is written.
//! * [`export`]: the export steps of a migration on the run layer: a type to Parquet and
//!   CSV (an ordinary pipeline from [`BubbleExtract`] `.raw(true)` into
//!   `etl_parquet::ExportLoad`), each file recording the run that wrote it, so a resume or
//!   a reuse never reads another run's (or a dry run's, or a changed) export.
//! * [`mapping`]: things of a type mapped to the text rows of a SQL target table, with the
//!   references between types checked (children of rejected parents rejected) and a
//!   reject log; [`declared`]: the same mapping declared as data (TOML: per type, the
//!   target columns with their field and conversion), plus a migration's own rules;
//!   [`passwords`]: bcrypt for the passwords the Data API never returns; [`sample`]: loaded
//!   things fetched again and mapped again, for a check against what was loaded.
//! * `test_server` (feature `test-server`): a Bubble-compatible server on 127.0.0.1.

#![warn(missing_docs)]

mod client;
pub mod declared;
pub mod drift;
mod error;
pub mod export;
mod extract;
pub mod mapping;
pub mod passwords;
pub mod report;
pub mod sample;
pub mod schema;
#[cfg(feature = "test-server")]
pub mod test_server;

pub use client::{
    AppMeta, BubbleClient, BubbleConfig, ClientStats, Constraint, KeysetPager, MAX_PAGE_SIZE,
    MetaField, MetaType, PACE_HEADROOM, Page, PageQuery, Window,
};
pub use error::{BubbleError, Result};
pub use extract::BubbleExtract;
pub use schema::{
    FieldKind, FieldSpec, KeyMode, RecordDecoder, TypeSchema, TypedTransform, format_datetime,
    parse_datetime, parse_decimal,
};
