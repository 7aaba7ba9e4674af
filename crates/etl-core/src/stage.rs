//! The four stage traits: [`Extract`], [`Transform`], [`Validate`] and [`Load`].

use std::future::Future;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use futures::future::BoxFuture;
use futures::stream::BoxStream;

use crate::{Batch, Finding, Reject, Result, RunInfo, UnitSummary};

/// A stream of batches of one unit. Dropping it cancels the extraction.
pub type BatchStream = BoxStream<'static, Result<Batch>>;

/// How big a unit is, for progress bars and ETAs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum SizeHint {
    /// Bytes of a file.
    Bytes(u64),
    /// Rows of a table or API type.
    Rows(u64),
}

/// One unit of work: a file, a key range of a table, an API type.
///
/// Units are the granularity of checkpoints: a unit is loaded and recorded as done in
/// one transaction, so `--resume` redoes at most the units that were not done.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Unit {
    /// Stable name, unique in the run (`trade_db_1.csv`, `user`, `vendas[0..10000)`).
    pub name: String,
    /// Where to find it (a path, a URL, a query), opaque to the runner.
    pub locator: String,
    /// Size, when known up front.
    pub size: Option<SizeHint>,
}

impl Unit {
    /// A unit whose locator is its name.
    pub fn named(name: impl Into<String>) -> Self {
        let name = name.into();
        Unit {
            locator: name.clone(),
            name,
            size: None,
        }
    }
}

/// Options the runner passes to [`Extract::open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractOptions {
    /// Target rows per batch.
    pub batch_size: usize,
    /// Batches buffered between the reader and the next stage (backpressure bound).
    pub buffer: usize,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            batch_size: 65_536,
            buffer: 2,
        }
    }
}

/// A source: lists its units of work and opens a stream of typed batches for each.
///
/// Opening is cheap and synchronous; the work happens while the stream is polled, so
/// nothing is read before the next stage is ready.
pub trait Extract: Send + Sync + 'static {
    /// Short stable name for logs and errors (`csv`, `postgres`, `bubble`).
    fn name(&self) -> &str;
    /// Schema of every batch `open` yields.
    fn schema(&self) -> SchemaRef;
    /// Discover the units of work (files matching a glob, tables, API types).
    fn units(&self) -> impl Future<Output = Result<Vec<Unit>>> + Send;
    /// Start extracting `unit`. Bad records become [`Reject`]s inside the batches.
    fn open(&self, unit: &Unit, options: ExtractOptions) -> Result<BatchStream>;
    /// A fingerprint of the unit's content as it is now (a file's size and a fast hash of
    /// its bytes), or `None` when the source cannot tell. The runner records it with each
    /// committed unit (computed while the unit is read, on another thread) and, on
    /// `--resume`, refuses to continue when a committed unit's input changed since, so a
    /// resumed run never mixes two versions of its input.
    fn fingerprint(&self, unit: &Unit) -> impl Future<Output = Result<Option<String>>> + Send {
        let _ = unit;
        async { Ok(None) }
    }
}

/// A synchronous, CPU-only change of batches.
///
/// Rows that fail move to `batch.rejects`, rows dropped on purpose to `batch.filtered`
/// (see [`Batch::apply_fates`]); `Err` stops the run. The runner calls it on the blocking
/// pool, so a heavy transform (bcrypt) does not stall the async runtime.
pub trait Transform: Send + Sync + 'static {
    /// Short stable name.
    fn name(&self) -> &str;
    /// Schema of the output for a given input schema; called once before the run.
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef>;
    /// Transform one batch.
    fn transform(&self, batch: Batch) -> Result<Batch>;
}

/// Checks: per batch (observe and accumulate) and at the end of the run (may veto).
///
/// A `Validate` never changes rows; row-level rules are [`Transform`]s that reject.
pub trait Validate: Send + Sync + 'static {
    /// Short stable name.
    fn name(&self) -> &str;
    /// Observe one accepted batch, after transforms and before load.
    fn check_batch(&self, batch: &Batch) -> Result<()> {
        let _ = batch;
        Ok(())
    }
    /// End of run, after every unit was loaded and before the run is committed.
    /// A failed finding of [`crate::Severity::Error`] vetoes the commit.
    fn finish<'a>(&'a self, totals: &'a crate::RunTotals) -> BoxFuture<'a, Result<Vec<Finding>>>;
}

/// A sink: staged, per-unit transactional writes, and a run-level commit that validation
/// can veto.
///
/// The runner calls `begin_run` once, then for every unit `begin_unit`, `write`* and
/// `commit` (or `abort`), then `end_load`, runs the validators, and finally `commit_run`
/// or `abort_run`.
pub trait Load: Send + Sync + 'static {
    /// The per-unit writer.
    type Writer: UnitWriter;
    /// Short stable name.
    fn name(&self) -> &str;
    /// Prepare the run (create staging and ledger tables). On `run.resume`, keep what an
    /// earlier attempt of the same run committed and return the units it completed.
    fn begin_run(
        &self,
        run: &RunInfo,
        schema: SchemaRef,
    ) -> impl Future<Output = Result<Vec<UnitSummary>>> + Send;
    /// Start writing one unit. Must be idempotent: a unit begun again after a crash
    /// starts from nothing.
    fn begin_unit(&self, unit: &Unit) -> impl Future<Output = Result<Self::Writer>> + Send;
    /// Record that a unit failed (outside its rolled-back transaction).
    fn unit_failed(&self, unit: &Unit, error: &str) -> impl Future<Output = Result<()>> + Send {
        let _ = (unit, error);
        async { Ok(()) }
    }
    /// Whether `unit` is committed in this run, asked after its commit failed without an
    /// answer (a connection lost while `COMMIT` was on the wire): the server may have
    /// committed it. Implementations ask the durable record (a ledger row written in the
    /// unit's transaction) over a new connection. The default says no: the unit is then
    /// failed (and a resume loads it again), which is right only for sinks whose commit
    /// is idempotent.
    fn unit_committed(&self, unit: &Unit) -> impl Future<Output = Result<bool>> + Send {
        let _ = unit;
        async { Ok(false) }
    }
    /// Every unit is written: finish the load (build indexes, analyze).
    fn end_load(&self) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }
    /// Validation passed: make the run committed.
    fn commit_run(&self, totals: &crate::RunTotals) -> impl Future<Output = Result<()>> + Send {
        let _ = totals;
        async { Ok(()) }
    }
    /// The run failed or validation vetoed it: leave production untouched.
    fn abort_run(&self, reason: &str) -> impl Future<Output = Result<()>> + Send {
        let _ = reason;
        async { Ok(()) }
    }
}

/// Writes one unit; its data, rejects and checkpoint become visible together on `commit`.
///
/// ### Note
/// Either `commit` or `abort` must be called. Dropping a writer without either must
/// leave nothing visible (a dropped database transaction rolls back).
pub trait UnitWriter: Send + 'static {
    /// Write accepted rows; returns the rows written.
    fn write(&mut self, batch: RecordBatch) -> impl Future<Output = Result<u64>> + Send;
    /// Store rejects durably with the unit (in the same transaction when the sink can).
    fn write_rejects(&mut self, rejects: &[Reject]) -> impl Future<Output = Result<()>> + Send;
    /// Commit the unit with its checkpoint (`summary`).
    fn commit(self, summary: &UnitSummary) -> impl Future<Output = Result<()>> + Send;
    /// Discard what was written for the unit.
    fn abort(self) -> impl Future<Output = Result<()>> + Send;
}

/// Shared handle to a transform.
pub type SharedTransform = Arc<dyn Transform>;
/// Shared handle to a validator.
pub type SharedValidate = Arc<dyn Validate>;
