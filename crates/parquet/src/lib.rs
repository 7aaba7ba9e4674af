//! # etl-parquet
//!
//! Parquet files in ferry pipelines: phase artifacts that can be inspected, re-read by the
//! next phase, and written so that a killed run never leaves a half file that looks whole.
//!
//! * [`ParquetExtract`]: a file as a source; each row group is a unit (so a load from it
//!   resumes per row group), or the whole file is one unit ([`ParquetExtract::whole`]).
//!   Record numbers are 1-based row numbers in the file.
//! * [`ParquetLoad`]: a sink writing one file (a single-unit source), via `.part`, renamed
//!   when the unit commits.
//! * [`ParquetPartsLoad`]: a sink writing one file per unit and recording each in a
//!   [`JsonCheckpoint`], so an interrupted run resumes at the first unit not written;
//!   [`merge_parts`] then joins the parts into one file, streaming.
//! * [`ExportLoad`]: a sink writing every unit of a run (units may run concurrently) into
//!   one `<dir>/<name>.parquet` and, optionally, one `<dir>/<name>.csv`, via `.part`
//!   names renamed when the run commits: a file that exists is a complete export.
//! * [`Fingerprint`], [`InputGuard`]: a resumed step continues only over the input file
//!   its units were recorded from.
//! * [`writer`], [`read_all`], [`file_rows`], [`file_schema`], [`files_of`]: the small
//!   helpers around them.
//!
//! Memory stays flat: files are read and written one batch at a time, and a writer holds at
//! most one row group ([`ROW_GROUP`] rows) before flushing it.
//!
//! ```
//! use etl_core::testing::MemoryExtract;
//! use etl_core::{Pipeline, RunInfo};
//! use etl_parquet::{ParquetExtract, ParquetLoad, file_rows};
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! let dir = tempfile::tempdir().unwrap();
//! let sink = ParquetLoad::new(dir.path(), "numbers");
//! let path = sink.path();
//! let report = Pipeline::new(MemoryExtract::numbers("numbers", 25_000, 1_000), sink)
//!     .run(&RunInfo::new("to_parquet"))
//!     .await;
//! assert!(report.succeeded(), "{:?}", report.error);
//! assert_eq!(file_rows(&path).unwrap(), 25_000);
//! // Read back: one unit per row group of 10,000 rows.
//! let back = ParquetExtract::open("numbers", &path).unwrap();
//! # use etl_core::Extract;
//! assert_eq!(back.units().await.unwrap().len(), 3);
//! # }
//! ```

#![warn(missing_docs)]

mod input;
pub use input::{Fingerprint, InputGuard};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use etl_core::checkpoint::JsonCheckpoint;
use etl_core::{
    Batch, BatchStream, Extract, ExtractOptions, Load, Reject, RunInfo, SizeHint, Unit,
    UnitSummary, UnitWriter, blocking_stream,
};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

/// Rows per row group of the files written here (and so the resume granularity of a
/// load that reads them with [`ParquetExtract::open`]).
pub const ROW_GROUP: usize = 10_000;

fn err(path: &Path, e: impl std::fmt::Display) -> etl_core::Error {
    etl_core::Error::Config(format!("parquet file {}: {e}", path.display()))
}

fn open_file(path: &Path) -> etl_core::Result<std::fs::File> {
    std::fs::File::open(path).map_err(|e| etl_core::Error::io(path.display(), e))
}

fn builder(path: &Path) -> etl_core::Result<ParquetRecordBatchReaderBuilder<std::fs::File>> {
    ParquetRecordBatchReaderBuilder::try_new(open_file(path)?).map_err(|e| err(path, e))
}

fn create_dir(dir: &Path) -> etl_core::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| etl_core::Error::io(dir.display(), e))
}

/// The Arrow schema of a Parquet file.
pub fn file_schema(path: &Path) -> etl_core::Result<SchemaRef> {
    Ok(builder(path)?.schema().clone())
}

/// Rows of a Parquet file (from its footer, without reading the data).
pub fn file_rows(path: &Path) -> etl_core::Result<u64> {
    Ok(builder(path)?.metadata().file_metadata().num_rows().max(0) as u64)
}

/// Every batch of a Parquet file, in memory: for small lookup tables and tests.
pub fn read_all(path: &Path) -> etl_core::Result<Vec<RecordBatch>> {
    let r = builder(path)?.build().map_err(|e| err(path, e))?;
    r.map(|b| b.map_err(|e| err(path, e))).collect()
}

/// A Parquet writer for `path` (snappy, row groups of [`ROW_GROUP`] rows). The file is
/// owner-only (mode 0600): artifacts, exports and backups hold the migrated data.
pub fn writer(path: &Path, schema: SchemaRef) -> etl_core::Result<ArrowWriter<std::fs::File>> {
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP))
        .build();
    let f = etl_core::report::create_private(path)
        .map_err(|e| etl_core::Error::io(path.display(), e))?;
    ArrowWriter::try_new(f, schema, Some(props)).map_err(|e| err(path, e))
}

/// A Parquet file as a source: each row group is a unit named `<name>#<i>` (so a load
/// resumes per row group), or with [`ParquetExtract::whole`] the file is one unit named
/// `<name>`.
#[derive(Debug, Clone)]
pub struct ParquetExtract {
    name: String,
    path: PathBuf,
    schema: SchemaRef,
    whole: bool,
}

impl ParquetExtract {
    /// A source named `name` (the unit prefix) over `path`, one unit per row group.
    ///
    /// # Errors
    /// A missing or unreadable file, naming it.
    pub fn open(name: &str, path: &Path) -> etl_core::Result<Self> {
        Ok(ParquetExtract {
            name: name.to_owned(),
            path: path.to_owned(),
            schema: file_schema(path)?,
            whole: false,
        })
    }

    /// The whole file as one unit named `name` (for a sink that writes one file).
    ///
    /// # Errors
    /// A missing or unreadable file, naming it.
    pub fn whole(name: &str, path: &Path) -> etl_core::Result<Self> {
        Ok(ParquetExtract {
            whole: true,
            ..Self::open(name, path)?
        })
    }

    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rows in the file.
    pub fn rows(&self) -> etl_core::Result<u64> {
        file_rows(&self.path)
    }
}

impl Extract for ParquetExtract {
    fn name(&self) -> &str {
        "parquet"
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    async fn units(&self) -> etl_core::Result<Vec<Unit>> {
        let b = builder(&self.path)?;
        let groups = b.metadata().row_groups();
        if self.whole {
            let rows: i64 = groups.iter().map(|g| g.num_rows()).sum();
            return Ok(vec![Unit {
                name: self.name.clone(),
                locator: "all".into(),
                size: Some(SizeHint::Rows(rows.max(0) as u64)),
            }]);
        }
        let mut units: Vec<Unit> = groups
            .iter()
            .enumerate()
            .map(|(i, g)| Unit {
                name: format!("{}#{i}", self.name),
                locator: i.to_string(),
                size: Some(SizeHint::Rows(g.num_rows().max(0) as u64)),
            })
            .collect();
        if units.is_empty() {
            units.push(Unit {
                name: format!("{}#0", self.name),
                locator: "empty".into(),
                size: Some(SizeHint::Rows(0)),
            });
        }
        Ok(units)
    }

    fn open(&self, unit: &Unit, options: ExtractOptions) -> etl_core::Result<BatchStream> {
        let path = self.path.clone();
        let name: Arc<str> = unit.name.as_str().into();
        // `all`: every row group; a number: that row group; `empty`: nothing.
        let all = unit.locator == "all";
        let group: Option<usize> = if all {
            Some(0)
        } else {
            unit.locator.parse().ok()
        };
        let batch_size = options.batch_size.max(1);
        Ok(blocking_stream(options.buffer, move |tx| {
            let Some(group) = group else { return Ok(()) };
            let b = builder(&path)?;
            let n_groups = b.metadata().num_row_groups();
            let first: i64 = b.metadata().row_groups()[..group.min(n_groups)]
                .iter()
                .map(|g| g.num_rows())
                .sum();
            let groups = if all {
                (0..n_groups).collect()
            } else {
                vec![group]
            };
            let reader = b
                .with_row_groups(groups)
                .with_batch_size(batch_size)
                .build()
                .map_err(|e| err(&path, e))?;
            let mut next = first.max(0) as u64 + 1;
            for batch in reader {
                let data = batch.map_err(|e| err(&path, e))?;
                let n = data.num_rows() as u64;
                let mut b = Batch::new(name.clone(), data, (next..next + n).collect());
                b.consumed = n;
                next += n;
                if !tx.send(b) {
                    break;
                }
            }
            Ok(())
        }))
    }
}

/// A sink writing its one unit to `<dir>/<file>.parquet` (via `.part`, renamed on commit,
/// so the file exists only when complete).
#[derive(Debug, Clone)]
pub struct ParquetLoad {
    dir: PathBuf,
    file: String,
    schema: Arc<Mutex<Option<SchemaRef>>>,
    unit: Arc<Mutex<Option<String>>>,
}

impl ParquetLoad {
    /// Write into `dir/<file>.parquet`.
    pub fn new(dir: &Path, file: &str) -> Self {
        ParquetLoad {
            dir: dir.to_owned(),
            file: file.to_owned(),
            schema: Arc::default(),
            unit: Arc::default(),
        }
    }

    /// The file written.
    pub fn path(&self) -> PathBuf {
        self.dir.join(format!("{}.parquet", self.file))
    }
}

fn schema_of(slot: &Mutex<Option<SchemaRef>>) -> etl_core::Result<SchemaRef> {
    slot.lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .ok_or_else(|| etl_core::Error::Config("begin_unit before begin_run".into()))
}

/// Writer of one Parquet file: `.part` while written, renamed on commit, removed on abort.
pub struct ParquetUnitWriter {
    writer: ArrowWriter<std::fs::File>,
    part: PathBuf,
    path: PathBuf,
}

impl ParquetUnitWriter {
    /// Start writing `path` (as `<path>.part` until [`UnitWriter::commit`]).
    pub fn create(path: PathBuf, schema: SchemaRef) -> etl_core::Result<Self> {
        let part = path.with_extension("parquet.part");
        Ok(ParquetUnitWriter {
            writer: writer(&part, schema)?,
            part,
            path,
        })
    }
}

impl Load for ParquetLoad {
    type Writer = ParquetUnitWriter;

    fn name(&self) -> &str {
        "parquet"
    }

    async fn begin_run(
        &self,
        _run: &RunInfo,
        schema: SchemaRef,
    ) -> etl_core::Result<Vec<UnitSummary>> {
        create_dir(&self.dir)?;
        *self.schema.lock().unwrap_or_else(|p| p.into_inner()) = Some(schema);
        Ok(Vec::new())
    }

    async fn begin_unit(&self, unit: &Unit) -> etl_core::Result<ParquetUnitWriter> {
        {
            // One file per sink: a second unit would overwrite the first.
            let mut u = self.unit.lock().unwrap_or_else(|p| p.into_inner());
            match u.as_deref() {
                Some(prev) if prev != unit.name => {
                    return Err(etl_core::Error::Config(format!(
                        "ParquetLoad writes one file ({}) but got a second unit `{}` after `{prev}`: use a single-unit source (ParquetExtract::whole) or ParquetPartsLoad",
                        self.path().display(),
                        unit.name
                    )));
                }
                _ => *u = Some(unit.name.clone()),
            }
        }
        ParquetUnitWriter::create(self.path(), schema_of(&self.schema)?)
    }
}

impl UnitWriter for ParquetUnitWriter {
    async fn write(&mut self, batch: RecordBatch) -> etl_core::Result<u64> {
        self.writer.write(&batch).map_err(|e| err(&self.part, e))?;
        Ok(batch.num_rows() as u64)
    }

    async fn write_rejects(&mut self, _rejects: &[Reject]) -> etl_core::Result<()> {
        Ok(())
    }

    async fn commit(self, _summary: &UnitSummary) -> etl_core::Result<()> {
        self.writer.close().map_err(|e| err(&self.part, e))?;
        std::fs::rename(&self.part, &self.path)
            .map_err(|e| etl_core::Error::io(self.path.display(), e))
    }

    async fn abort(self) -> etl_core::Result<()> {
        drop(self.writer);
        let _ = std::fs::remove_file(&self.part);
        Ok(())
    }
}

/// A sink writing each unit to its own file `<dir>/<unit>.parquet` (via `.part`, renamed
/// on commit) and recording it in a checkpoint, so an interrupted run resumes
/// (`RunInfo::resume`) at the first unit not yet written; [`merge_parts`] then joins the
/// parts into one file. A run that does not resume first deletes the `*.parquet` and
/// `*.parquet.part` files in `dir` (the parts of an earlier run) and resets the checkpoint.
#[derive(Debug, Clone)]
pub struct ParquetPartsLoad {
    dir: PathBuf,
    checkpoint: JsonCheckpoint,
    schema: Arc<Mutex<Option<SchemaRef>>>,
}

impl ParquetPartsLoad {
    /// Parts in `dir`, committed units recorded in `checkpoint`.
    pub fn new(dir: &Path, checkpoint: JsonCheckpoint) -> Self {
        ParquetPartsLoad {
            dir: dir.to_owned(),
            checkpoint,
            schema: Arc::default(),
        }
    }

    /// The file of unit `unit` in `dir` (its name with anything but `[A-Za-z0-9_-]`
    /// replaced by `_`).
    pub fn part_path(dir: &Path, unit: &str) -> PathBuf {
        let safe: String = unit
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        dir.join(format!("{safe}.parquet"))
    }
}

impl Load for ParquetPartsLoad {
    type Writer = ParquetPartWriter;

    fn name(&self) -> &str {
        "parquet-parts"
    }

    async fn begin_run(
        &self,
        run: &RunInfo,
        schema: SchemaRef,
    ) -> etl_core::Result<Vec<UnitSummary>> {
        create_dir(&self.dir)?;
        if !run.resume {
            // Parts of an earlier run only: nothing else in `dir` is touched.
            let entries = std::fs::read_dir(&self.dir)
                .map_err(|e| etl_core::Error::io(self.dir.display(), e))?;
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.ends_with(".parquet") || name.ends_with(".parquet.part") {
                    std::fs::remove_file(entry.path())
                        .map_err(|e| etl_core::Error::io(entry.path().display(), e))?;
                }
            }
            self.checkpoint.reset()?;
        }
        *self.schema.lock().unwrap_or_else(|p| p.into_inner()) = Some(schema);
        // A unit counts as done only if its file is there too.
        Ok(self
            .checkpoint
            .completed()?
            .into_iter()
            .filter(|u| Self::part_path(&self.dir, &u.name).exists())
            .collect())
    }

    async fn begin_unit(&self, unit: &Unit) -> etl_core::Result<ParquetPartWriter> {
        Ok(ParquetPartWriter {
            file: ParquetUnitWriter::create(
                Self::part_path(&self.dir, &unit.name),
                schema_of(&self.schema)?,
            )?,
            checkpoint: self.checkpoint.clone(),
        })
    }
}

/// Writer of one part of [`ParquetPartsLoad`].
pub struct ParquetPartWriter {
    file: ParquetUnitWriter,
    checkpoint: JsonCheckpoint,
}

impl UnitWriter for ParquetPartWriter {
    async fn write(&mut self, batch: RecordBatch) -> etl_core::Result<u64> {
        self.file.write(batch).await
    }

    async fn write_rejects(&mut self, _rejects: &[Reject]) -> etl_core::Result<()> {
        Ok(())
    }

    async fn commit(self, summary: &UnitSummary) -> etl_core::Result<()> {
        // File first, then the checkpoint: a crash in between redoes (overwrites) the unit.
        self.file.commit(summary).await?;
        self.checkpoint.record(summary)
    }

    async fn abort(self) -> etl_core::Result<()> {
        self.file.abort().await
    }
}

/// Extract `src` into the Parquet file `out`, resumably: each unit is written to its own
/// part file under `<out>.parts/` and recorded in `checkpoint` ([`ParquetPartsLoad`]), so
/// a killed run resumed (`run.resume`) continues at the first unit not written; once every
/// unit is written the parts are joined into `out` ([`merge_parts`]) and removed. Returns
/// the pipeline's report and the rows of `out` (`None` when the pipeline failed).
///
/// # Errors
/// The units cannot be listed, the parts cannot be joined or removed.
pub async fn extract_to_file<E: Extract>(
    src: E,
    out: &Path,
    checkpoint: JsonCheckpoint,
    options: etl_core::PipelineOptions,
    run: &RunInfo,
) -> etl_core::Result<(etl_core::RunReport, Option<u64>)> {
    let units: Vec<String> = src.units().await?.into_iter().map(|u| u.name).collect();
    let schema = src.schema();
    let parts = out.with_extension("parts");
    let load = ParquetPartsLoad::new(&parts, checkpoint);
    let report = etl_core::Pipeline::new(src, load)
        .options(options)
        .run(run)
        .await;
    if report.status == etl_core::RunStatus::Failed {
        return Ok((report, None));
    }
    let (dir, file) = (parts.clone(), out.to_owned());
    let rows = tokio::task::spawn_blocking(move || merge_parts(&dir, &units, schema, &file))
        .await
        .map_err(|e| etl_core::Error::Config(format!("joining {}: {e}", parts.display())))??;
    std::fs::remove_dir_all(&parts).map_err(|e| etl_core::Error::io(parts.display(), e))?;
    Ok((report, Some(rows)))
}

/// Join the part files of `units` (in that order) from `dir` into `out` (via `.part`,
/// renamed at the end), one batch at a time; returns the rows written. Blocking: call it
/// from `spawn_blocking` in async code.
pub fn merge_parts(
    dir: &Path,
    units: &[String],
    schema: SchemaRef,
    out: &Path,
) -> etl_core::Result<u64> {
    let part = out.with_extension("parquet.part");
    let mut w = writer(&part, schema)?;
    let mut rows = 0u64;
    for u in units {
        let p = ParquetPartsLoad::part_path(dir, u);
        let r = builder(&p)?
            .with_batch_size(ROW_GROUP)
            .build()
            .map_err(|e| err(&p, e))?;
        for b in r {
            let b = b.map_err(|e| err(&p, e))?;
            rows += b.num_rows() as u64;
            w.write(&b).map_err(|e| err(&part, e))?;
        }
    }
    w.close().map_err(|e| err(&part, e))?;
    std::fs::rename(&part, out).map_err(|e| etl_core::Error::io(out.display(), e))?;
    Ok(rows)
}

/// The Parquet files of `name` in `dir`: `<name>.parquet`, else those of its windows of
/// rows (`<name>.rows-<from>-<to>.parquet`, as `etl_source_postgres::RowWindow::stem`
/// names them), sorted; empty when there is none.
pub fn files_of(dir: &Path, name: &str) -> Vec<PathBuf> {
    let whole = parquet_path(dir, name);
    if whole.exists() {
        return vec![whole];
    }
    let prefix = format!("{name}.rows-");
    let mut files: Vec<PathBuf> = (std::fs::read_dir(dir).into_iter().flatten().flatten())
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            n.starts_with(&prefix) && n.ends_with(".parquet")
        })
        .collect();
    files.sort();
    files
}

/// `<dir>/<name>.csv`.
pub fn csv_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.csv"))
}

/// `<dir>/<name>.parquet`.
pub fn parquet_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.parquet"))
}

fn part_of(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

struct ExportWriters {
    csv: Option<arrow_csv::Writer<std::io::BufWriter<std::fs::File>>>,
    parquet: ArrowWriter<std::fs::File>,
}

/// A sink writing every batch of a run, whatever its unit, to `<dir>/<name>.parquet` and
/// (with [`ExportLoad::with_csv`]) `<dir>/<name>.csv` (header row, Arrow's CSV encoding).
///
/// Units may run concurrently; their rows are appended in arrival order. Both files are
/// written to `.part` names and renamed when the run commits, so a file that exists is a
/// complete export; an aborted run removes its `.part` files. Memory stays flat: batches
/// are written as they come, row groups are capped at [`ROW_GROUP`] rows. Rejects are not
/// written here (the runner's `rejects.csv` has them).
///
/// ```
/// use etl_core::testing::MemoryExtract;
/// use etl_core::{Pipeline, RunInfo};
/// use etl_parquet::{ExportLoad, csv_path, file_rows, parquet_path};
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() {
/// let dir = tempfile::tempdir().unwrap();
/// let sink = ExportLoad::new(dir.path(), "numbers").with_csv();
/// let report = Pipeline::new(MemoryExtract::numbers("n", 2_500, 100), sink)
///     .run(&RunInfo::new("export"))
///     .await;
/// assert!(report.succeeded(), "{:?}", report.error);
/// assert_eq!(file_rows(&parquet_path(dir.path(), "numbers")).unwrap(), 2_500);
/// let csv = std::fs::read_to_string(csv_path(dir.path(), "numbers")).unwrap();
/// assert_eq!(csv.lines().count(), 2_501);
/// # }
/// ```
#[derive(Clone)]
pub struct ExportLoad {
    dir: PathBuf,
    name: String,
    csv: bool,
    writers: Arc<Mutex<Option<ExportWriters>>>,
}

impl std::fmt::Debug for ExportLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportLoad")
            .field("dir", &self.dir)
            .field("name", &self.name)
            .field("csv", &self.csv)
            .finish()
    }
}

impl ExportLoad {
    /// Export to `<dir>/<name>.parquet`.
    pub fn new(dir: impl Into<PathBuf>, name: &str) -> Self {
        ExportLoad {
            dir: dir.into(),
            name: name.to_owned(),
            csv: false,
            writers: Arc::default(),
        }
    }

    /// Also write `<dir>/<name>.csv`.
    pub fn with_csv(mut self) -> Self {
        self.csv = true;
        self
    }

    fn paths(&self) -> Vec<PathBuf> {
        let mut v = vec![parquet_path(&self.dir, &self.name)];
        if self.csv {
            v.push(csv_path(&self.dir, &self.name));
        }
        v
    }
}

/// The per-unit writer of [`ExportLoad`].
pub struct ExportUnitWriter {
    writers: Arc<Mutex<Option<ExportWriters>>>,
    path: PathBuf,
}

impl Load for ExportLoad {
    type Writer = ExportUnitWriter;

    fn name(&self) -> &str {
        "export"
    }

    async fn begin_run(
        &self,
        _run: &RunInfo,
        schema: SchemaRef,
    ) -> etl_core::Result<Vec<UnitSummary>> {
        create_dir(&self.dir)?;
        let pq = part_of(&parquet_path(&self.dir, &self.name));
        let parquet = writer(&pq, schema)?;
        let csv = if self.csv {
            let p = part_of(&csv_path(&self.dir, &self.name));
            let f = etl_core::report::create_private(&p)
                .map_err(|e| etl_core::Error::io(p.display(), e))?;
            Some(
                arrow_csv::WriterBuilder::new()
                    .with_header(true)
                    .build(std::io::BufWriter::new(f)),
            )
        } else {
            None
        };
        *self.writers.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(ExportWriters { csv, parquet });
        Ok(Vec::new())
    }

    async fn begin_unit(&self, _unit: &Unit) -> etl_core::Result<ExportUnitWriter> {
        Ok(ExportUnitWriter {
            writers: self.writers.clone(),
            path: self.dir.join(&self.name),
        })
    }

    async fn commit_run(&self, _totals: &etl_core::RunTotals) -> etl_core::Result<()> {
        let w = self
            .writers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(ExportWriters { csv, parquet }) = w else {
            return Ok(());
        };
        if let Some(csv) = csv {
            let p = csv_path(&self.dir, &self.name);
            let mut buf = csv.into_inner();
            std::io::Write::flush(&mut buf).map_err(|e| etl_core::Error::io(p.display(), e))?;
            buf.get_ref()
                .sync_all()
                .map_err(|e| etl_core::Error::io(p.display(), e))?;
        }
        let pq = parquet_path(&self.dir, &self.name);
        parquet.close().map_err(|e| err(&pq, e))?;
        for p in self.paths() {
            std::fs::rename(part_of(&p), &p).map_err(|e| etl_core::Error::io(p.display(), e))?;
        }
        Ok(())
    }

    async fn abort_run(&self, _reason: &str) -> etl_core::Result<()> {
        self.writers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        for p in self.paths() {
            let _ = std::fs::remove_file(part_of(&p));
        }
        Ok(())
    }
}

impl UnitWriter for ExportUnitWriter {
    async fn write(&mut self, batch: RecordBatch) -> etl_core::Result<u64> {
        let mut g = self.writers.lock().unwrap_or_else(|p| p.into_inner());
        let w = g
            .as_mut()
            .ok_or_else(|| err(&self.path, "the export was aborted or not begun"))?;
        if let Some(csv) = w.csv.as_mut() {
            csv.write(&batch).map_err(|e| err(&self.path, e))?;
        }
        w.parquet.write(&batch).map_err(|e| err(&self.path, e))?;
        Ok(batch.num_rows() as u64)
    }

    async fn write_rejects(&mut self, _rejects: &[Reject]) -> etl_core::Result<()> {
        Ok(())
    }

    async fn commit(self, _summary: &UnitSummary) -> etl_core::Result<()> {
        Ok(())
    }

    async fn abort(self) -> etl_core::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn files_of_a_name_are_the_whole_file_else_its_windows() {
        let dir = tempfile::tempdir().unwrap();
        let touch = |n: &str| std::fs::write(dir.path().join(n), b"").unwrap();
        assert!(super::files_of(dir.path(), "buyers").is_empty());
        for n in [
            "buyers.rows-100-200.parquet",
            "buyers.rows-0-100.parquet",
            "buyersx.parquet",
        ] {
            touch(n);
        }
        let names = |v: Vec<std::path::PathBuf>| -> Vec<String> {
            v.iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            names(super::files_of(dir.path(), "buyers")),
            ["buyers.rows-0-100.parquet", "buyers.rows-100-200.parquet"]
        );
        touch("buyers.parquet");
        assert_eq!(
            names(super::files_of(dir.path(), "buyers")),
            ["buyers.parquet"]
        );
    }
}
