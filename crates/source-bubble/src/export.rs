//! Export of a type to `<dir>/<type>.csv` and `<dir>/<type>.parquet` ([`ExportLoad`], an
//! [`etl_core::Load`]), and reading an exported Parquet file back ([`ParquetExtract`], from
//! the `etl-parquet` crate).
//!
//! Both files are written to `.part` names while the export runs and renamed when the run
//! commits, so a file that exists is a complete export. Memory stays flat: batches are
//! written as they come and Parquet row groups are capped at [`etl_parquet::ROW_GROUP`] (10,000) rows,
//! so an export holds at most that many rows per type, whatever its size.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use etl_core::{Load, Reject, RunInfo, Unit, UnitSummary, UnitWriter};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use crate::error::BubbleError;

/// `<dir>/<name>.csv`.
pub fn csv_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.csv"))
}

/// `<dir>/<name>.parquet`.
pub fn parquet_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.parquet"))
}

fn part(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

struct Writers {
    csv: arrow_csv::Writer<BufWriter<File>>,
    parquet: ArrowWriter<File>,
}

/// Writes every batch of a run to `<dir>/<name>.csv` and `<dir>/<name>.parquet`.
///
/// Units (windows) may run concurrently; their rows are appended in arrival order.
/// Rejects are not written here (the runner's `rejects.csv` has them).
pub struct ExportLoad {
    dir: PathBuf,
    name: String,
    writers: Arc<Mutex<Option<Writers>>>,
}

impl ExportLoad {
    /// Export to `dir` under `name` (usually the Bubble type).
    pub fn new(dir: impl Into<PathBuf>, name: &str) -> Self {
        ExportLoad {
            dir: dir.into(),
            name: name.to_owned(),
            writers: Arc::new(Mutex::new(None)),
        }
    }

    fn err(path: &Path, e: impl std::fmt::Display) -> etl_core::Error {
        BubbleError::Export {
            path: path.display().to_string(),
            detail: e.to_string(),
        }
        .into()
    }
}

/// The per-unit writer of [`ExportLoad`].
pub struct ExportWriter {
    writers: Arc<Mutex<Option<Writers>>>,
    path: PathBuf,
}

impl Load for ExportLoad {
    type Writer = ExportWriter;

    fn name(&self) -> &str {
        "bubble_export"
    }

    async fn begin_run(
        &self,
        _run: &RunInfo,
        schema: SchemaRef,
    ) -> etl_core::Result<Vec<UnitSummary>> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| etl_core::Error::io(self.dir.display(), e))?;
        let csv_p = part(&csv_path(&self.dir, &self.name));
        let pq_p = part(&parquet_path(&self.dir, &self.name));
        let csv_f = File::create(&csv_p).map_err(|e| etl_core::Error::io(csv_p.display(), e))?;
        let pq_f = File::create(&pq_p).map_err(|e| etl_core::Error::io(pq_p.display(), e))?;
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(etl_parquet::ROW_GROUP))
            .build();
        let parquet =
            ArrowWriter::try_new(pq_f, schema, Some(props)).map_err(|e| Self::err(&pq_p, e))?;
        let csv = arrow_csv::WriterBuilder::new()
            .with_header(true)
            .build(BufWriter::new(csv_f));
        *self.writers.lock().expect("export lock") = Some(Writers { csv, parquet });
        Ok(Vec::new())
    }

    async fn begin_unit(&self, _unit: &Unit) -> etl_core::Result<ExportWriter> {
        Ok(ExportWriter {
            writers: self.writers.clone(),
            path: self.dir.join(&self.name),
        })
    }

    async fn commit_run(&self, _totals: &etl_core::RunTotals) -> etl_core::Result<()> {
        let w = self.writers.lock().expect("export lock").take();
        let Some(Writers { csv, parquet }) = w else {
            return Ok(());
        };
        let csv_p = csv_path(&self.dir, &self.name);
        let pq_p = parquet_path(&self.dir, &self.name);
        let mut buf = csv.into_inner();
        std::io::Write::flush(&mut buf).map_err(|e| etl_core::Error::io(csv_p.display(), e))?;
        buf.get_ref()
            .sync_all()
            .map_err(|e| etl_core::Error::io(csv_p.display(), e))?;
        parquet.close().map_err(|e| Self::err(&pq_p, e))?;
        for p in [&csv_p, &pq_p] {
            std::fs::rename(part(p), p).map_err(|e| etl_core::Error::io(p.display(), e))?;
        }
        Ok(())
    }

    async fn abort_run(&self, _reason: &str) -> etl_core::Result<()> {
        self.writers.lock().expect("export lock").take();
        for p in [
            csv_path(&self.dir, &self.name),
            parquet_path(&self.dir, &self.name),
        ] {
            let _ = std::fs::remove_file(part(&p));
        }
        Ok(())
    }
}

impl UnitWriter for ExportWriter {
    async fn write(&mut self, batch: RecordBatch) -> etl_core::Result<u64> {
        let mut g = self.writers.lock().expect("export lock");
        let w = g
            .as_mut()
            .ok_or_else(|| ExportLoad::err(&self.path, "the export was aborted or not begun"))?;
        w.csv
            .write(&batch)
            .map_err(|e| ExportLoad::err(&self.path, e))?;
        w.parquet
            .write(&batch)
            .map_err(|e| ExportLoad::err(&self.path, e))?;
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

/// An exported Parquet file read back: `ParquetExtract::whole(type, &parquet_path(dir, type))`
/// gives one unit with the type's name (re-exported from the `etl-parquet` crate).
pub use etl_parquet::ParquetExtract;
