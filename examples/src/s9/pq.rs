//! Parquet phase artifacts: a source over files (units = row groups) and a sink writing
//! one file per unit, atomically.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use etl_core::{
    Batch, BatchStream, Extract, ExtractOptions, Load, Reject, RunInfo, SizeHint, Unit,
    UnitSummary, UnitWriter,
};
use futures::StreamExt;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

fn err(path: &Path, e: impl std::fmt::Display) -> etl_core::Error {
    etl_core::Error::Config(format!("parquet file {}: {e}", path.display()))
}

/// Rows per row group of the artifacts (the resume granularity of the load).
pub const ROW_GROUP: usize = 10_000;

/// The schema of a Parquet file.
pub fn file_schema(path: &Path) -> etl_core::Result<SchemaRef> {
    let f = std::fs::File::open(path).map_err(|e| etl_core::Error::io(path.display(), e))?;
    Ok(ParquetRecordBatchReaderBuilder::try_new(f)
        .map_err(|e| err(path, e))?
        .schema()
        .clone())
}

/// Rows of a Parquet file (from its footer).
pub fn file_rows(path: &Path) -> etl_core::Result<u64> {
    let f = std::fs::File::open(path).map_err(|e| etl_core::Error::io(path.display(), e))?;
    let b = ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| err(path, e))?;
    Ok(b.metadata().file_metadata().num_rows().max(0) as u64)
}

/// Every batch of a Parquet file (for the small lookup tables and tests).
pub fn read_all(path: &Path) -> etl_core::Result<Vec<RecordBatch>> {
    let f = std::fs::File::open(path).map_err(|e| etl_core::Error::io(path.display(), e))?;
    let r = ParquetRecordBatchReaderBuilder::try_new(f)
        .map_err(|e| err(path, e))?
        .build()
        .map_err(|e| err(path, e))?;
    r.map(|b| b.map_err(|e| err(path, e))).collect()
}

/// A source over one Parquet file: each row group is a unit (`sales#3`), so a load resumes
/// per row group; or, with [`ParquetExtract::whole`], the file is one unit (for a sink that
/// writes one file).
#[derive(Debug, Clone)]
pub struct ParquetExtract {
    name: String,
    path: PathBuf,
    schema: SchemaRef,
    whole: bool,
}

impl ParquetExtract {
    /// A source named `name` (unit prefix) over `path`, one unit per row group.
    pub fn open(name: &str, path: &Path) -> etl_core::Result<Self> {
        Ok(ParquetExtract {
            name: name.to_owned(),
            path: path.to_owned(),
            schema: file_schema(path)?,
            whole: false,
        })
    }

    /// The whole file as one unit named `name`.
    pub fn whole(name: &str, path: &Path) -> etl_core::Result<Self> {
        Ok(ParquetExtract {
            whole: true,
            ..Self::open(name, path)?
        })
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
        let f = std::fs::File::open(&self.path)
            .map_err(|e| etl_core::Error::io(self.path.display(), e))?;
        let b = ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| err(&self.path, e))?;
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
        let (tx, rx) = tokio::sync::mpsc::channel::<etl_core::Result<Batch>>(options.buffer.max(1));
        let batch_size = options.batch_size;
        tokio::task::spawn_blocking(move || {
            let run = || -> etl_core::Result<()> {
                let Some(group) = group else { return Ok(()) };
                let f = std::fs::File::open(&path)
                    .map_err(|e| etl_core::Error::io(path.display(), e))?;
                let b = ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| err(&path, e))?;
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
                let mut next = first as u64 + 1;
                for batch in reader {
                    let data = batch.map_err(|e| err(&path, e))?;
                    let n = data.num_rows() as u64;
                    let mut b = Batch::new(name.clone(), data, (next..next + n).collect());
                    b.consumed = n;
                    next += n;
                    if tx.blocking_send(Ok(b)).is_err() {
                        return Ok(());
                    }
                }
                Ok(())
            };
            if let Err(e) = run() {
                let _ = tx.blocking_send(Err(e));
            }
        });
        Ok(tokio_stream(rx).boxed())
    }
}

fn tokio_stream<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A sink writing each unit to `<dir>/<file>.parquet` (via `.part`, renamed on commit).
#[derive(Debug, Clone)]
pub struct ParquetLoad {
    dir: PathBuf,
    file: String,
    schema: Arc<std::sync::Mutex<Option<SchemaRef>>>,
    unit: Arc<std::sync::Mutex<Option<String>>>,
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

/// Writer of one Parquet artifact.
pub struct ParquetUnitWriter {
    writer: ArrowWriter<std::fs::File>,
    part: PathBuf,
    path: PathBuf,
}

/// Open a Parquet writer (snappy, row groups of [`ROW_GROUP`] rows).
pub fn writer(path: &Path, schema: SchemaRef) -> etl_core::Result<ArrowWriter<std::fs::File>> {
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP))
        .build();
    let f = std::fs::File::create(path).map_err(|e| etl_core::Error::io(path.display(), e))?;
    ArrowWriter::try_new(f, schema, Some(props)).map_err(|e| err(path, e))
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
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| etl_core::Error::io(self.dir.display(), e))?;
        *self.schema.lock().expect("schema") = Some(schema);
        Ok(Vec::new())
    }

    async fn begin_unit(&self, unit: &Unit) -> etl_core::Result<ParquetUnitWriter> {
        {
            // One file per sink: a second unit would overwrite the first.
            let mut u = self.unit.lock().expect("unit");
            match u.as_deref() {
                Some(prev) if prev != unit.name => {
                    return Err(etl_core::Error::Config(format!(
                        "ParquetLoad writes one file ({}) but got a second unit `{}` after `{prev}`: use a single-unit source (ParquetExtract::whole)",
                        self.path().display(),
                        unit.name
                    )));
                }
                _ => *u = Some(unit.name.clone()),
            }
        }
        let schema = self
            .schema
            .lock()
            .expect("schema")
            .clone()
            .expect("begin_run first");
        let path = self.path();
        let part = path.with_extension("parquet.part");
        Ok(ParquetUnitWriter {
            writer: writer(&part, schema)?,
            part,
            path,
        })
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

/// A sink writing each unit to its own file `<dir>/<unit>.parquet` (via `.part`, renamed on
/// commit) and recording it in a checkpoint, so an interrupted extract resumes at the
/// first unit (key range) not yet written; [`merge_parts`] then joins the parts into the
/// phase artifact.
#[derive(Debug, Clone)]
pub struct ParquetPartsLoad {
    dir: PathBuf,
    checkpoint: etl_sink_dynamodb::JsonCheckpoint,
    schema: Arc<std::sync::Mutex<Option<SchemaRef>>>,
}

impl ParquetPartsLoad {
    /// Parts in `dir`, committed units recorded in `checkpoint`.
    pub fn new(dir: &Path, checkpoint: etl_sink_dynamodb::JsonCheckpoint) -> Self {
        ParquetPartsLoad {
            dir: dir.to_owned(),
            checkpoint,
            schema: Arc::default(),
        }
    }

    /// The file of unit `unit` (its name with anything but `[A-Za-z0-9_-]` replaced).
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
        let ck = |e: etl_sink_dynamodb::DynamoError| etl_core::Error::Config(e.to_string());
        if !run.resume {
            let _ = std::fs::remove_dir_all(&self.dir);
            self.checkpoint.reset().map_err(ck)?;
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| etl_core::Error::io(self.dir.display(), e))?;
        *self.schema.lock().expect("schema") = Some(schema);
        // A unit counts as done only if its file is there too.
        Ok(self
            .checkpoint
            .completed()
            .map_err(ck)?
            .into_iter()
            .filter(|u| Self::part_path(&self.dir, &u.name).exists())
            .collect())
    }

    async fn begin_unit(&self, unit: &Unit) -> etl_core::Result<ParquetPartWriter> {
        let schema = self
            .schema
            .lock()
            .expect("schema")
            .clone()
            .expect("begin_run first");
        let path = Self::part_path(&self.dir, &unit.name);
        let part = path.with_extension("parquet.part");
        Ok(ParquetPartWriter {
            file: ParquetUnitWriter {
                writer: writer(&part, schema)?,
                part,
                path,
            },
            checkpoint: self.checkpoint.clone(),
        })
    }
}

/// Writer of one part of [`ParquetPartsLoad`].
pub struct ParquetPartWriter {
    file: ParquetUnitWriter,
    checkpoint: etl_sink_dynamodb::JsonCheckpoint,
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
        self.checkpoint
            .record(summary)
            .map_err(|e| etl_core::Error::Config(e.to_string()))
    }

    async fn abort(self) -> etl_core::Result<()> {
        self.file.abort().await
    }
}

/// Join the part files of `units` (in that order) from `dir` into `out` (via `.part`,
/// renamed at the end), streaming one batch at a time; returns the rows written.
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
        let f = std::fs::File::open(&p).map_err(|e| etl_core::Error::io(p.display(), e))?;
        let r = ParquetRecordBatchReaderBuilder::try_new(f)
            .map_err(|e| err(&p, e))?
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
