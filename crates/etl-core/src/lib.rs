//! # etl-core
//!
//! The core of **ferry**: the four stage traits over Arrow record batches, the
//! [`Pipeline`] runner, the run ledger, rejects, reports, progress bars and the shared
//! CLI helper.
//!
//! A migration is a pipeline of [`Batch`]es (a [`arrow_array::RecordBatch`] plus the
//! record number of every row and the rows that left the flow):
//!
//! ```text
//! Extract ──batches──> Transform* ──batches──> Validate* ──batches──> Load
//!    │  rejects            │ rejects/filtered      │ findings             │ commit / abort
//!    └────────────── run ledger: read = loaded + rejected + filtered ─────┘
//! ```
//!
//! * [`Extract`] lists units of work (files, table ranges, API types) and opens a stream
//!   of typed batches for each.
//! * [`Transform`] moves bad rows to rejects and out-of-scope rows to filtered, never
//!   losing one: the runner checks the count after every transform.
//! * [`Validate`] observes batches and, at the end, may veto the commit.
//! * [`Load`] writes each unit with its checkpoint in one transaction, so `--resume`
//!   neither duplicates nor skips rows.
//!
//! ```
//! use etl_core::testing::{MemoryExtract, MemoryLoad};
//! use etl_core::{Batch, Fate, Pipeline, Result, RunInfo, Transform};
//! use arrow_array::cast::AsArray;
//! use arrow_array::types::Int64Type;
//! use arrow_schema::SchemaRef;
//!
//! /// Drops odd numbers (filtered) and rejects multiples of 10.
//! struct EvenOnly;
//! impl Transform for EvenOnly {
//!     fn name(&self) -> &str { "even_only" }
//!     fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef> { Ok(input.clone()) }
//!     fn transform(&self, mut batch: Batch) -> Result<Batch> {
//!         let n = batch.data.column(0).as_primitive::<Int64Type>().clone();
//!         let fates: Vec<Option<Fate>> = n.values().iter().map(|v| match v {
//!             v if v % 10 == 0 => Some(Fate::Reject {
//!                 column: Some("n".into()), kind: "round".into(), reason: format!("{v} is round"),
//!             }),
//!             v if v % 2 == 1 => Some(Fate::Filter { reason: "odd".into() }),
//!             _ => None,
//!         }).collect();
//!         batch.apply_fates(&fates)?;
//!         Ok(batch)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let load = MemoryLoad::default();
//! let report = Pipeline::new(MemoryExtract::numbers("numbers", 100, 16), load.clone())
//!     .transform(EvenOnly)
//!     .run(&RunInfo::new("demo"))
//!     .await;
//! assert!(report.succeeded());
//! let t = &report.totals;
//! assert_eq!((t.read, t.loaded, t.rejected, t.filtered), (100, 40, 10, 50));
//! assert_eq!(load.rows(), 40);
//! # }
//! ```

#![warn(missing_docs)]

pub mod batch;
mod blocking;
pub mod checkpoint;
#[cfg(feature = "cli")]
pub mod cli;
pub mod codec;
pub mod config;
mod error;
pub mod mem;
pub mod metrics;
pub mod migration;
pub mod pipeline;
pub mod progress;
pub mod reject;
pub mod report;
pub mod retry;
mod run;
mod stage;
pub mod testing;

pub use arrow_array;
pub use arrow_schema;
pub use batch::{Batch, Counts, Fate};
pub use blocking::{BlockingSender, blocking_stream};
pub use config::{Secret, load_config, substitute_env};
pub use error::{BoxError, Error, Result, Stage};
pub use pipeline::{Pipeline, PipelineOptions};
pub use progress::Progress;
pub use reject::Reject;
pub use report::{RejectSpool, RunReport, RunStatus, UnitReport};
pub use run::{Finding, RunInfo, RunLedger, RunTotals, Severity, UnitStatus, UnitSummary};
pub use stage::{
    BatchStream, Extract, ExtractOptions, Load, SharedTransform, SharedValidate, SizeHint,
    Transform, Unit, UnitWriter, Validate,
};
pub use tokio_util::sync::CancellationToken;
