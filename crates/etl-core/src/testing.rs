//! In-memory sources and sinks for tests and doc examples.

use std::sync::{Arc, Mutex};

use arrow_array::{Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use crate::{
    Batch, BatchStream, Error, Extract, ExtractOptions, Load, Reject, Result, RunInfo, Stage, Unit,
    UnitSummary, UnitWriter,
};

/// A source of `Int64` numbers `1..=rows` in one column `n`, split into units.
#[derive(Debug, Clone)]
pub struct MemoryExtract {
    units: Vec<(String, u64)>,
    schema: SchemaRef,
}

impl MemoryExtract {
    /// One unit named `unit` with `rows` numbers in batches of `batch` rows.
    pub fn numbers(unit: &str, rows: u64, batch: usize) -> Self {
        let _ = batch;
        MemoryExtract {
            units: vec![(unit.to_owned(), rows)],
            schema: Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)])),
        }
    }

    /// Several units with the given row counts.
    pub fn units(units: &[(&str, u64)]) -> Self {
        MemoryExtract {
            units: units.iter().map(|(n, r)| ((*n).to_owned(), *r)).collect(),
            schema: Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)])),
        }
    }
}

impl Extract for MemoryExtract {
    fn name(&self) -> &str {
        "memory"
    }
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    async fn units(&self) -> Result<Vec<Unit>> {
        Ok(self.units.iter().map(|(n, _)| Unit::named(n)).collect())
    }
    fn open(&self, unit: &Unit, options: ExtractOptions) -> Result<BatchStream> {
        let rows = self
            .units
            .iter()
            .find(|(n, _)| *n == unit.name)
            .map(|(_, r)| *r)
            .ok_or_else(|| Error::Config(format!("no unit {}", unit.name)))?;
        let schema = self.schema.clone();
        let name: Arc<str> = unit.name.as_str().into();
        let size = options.batch_size.max(1) as u64;
        let batches: Vec<Result<Batch>> = (0..rows.div_ceil(size))
            .map(|i| {
                let from = i * size + 1;
                let to = ((i + 1) * size).min(rows);
                let values: Vec<i64> = (from as i64..=to as i64).collect();
                let records: Vec<u64> = (from..=to).collect();
                let data =
                    RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))])?;
                Ok(Batch::new(name.clone(), data, records))
            })
            .collect();
        Ok(Box::pin(futures::stream::iter(batches)))
    }
}

#[derive(Debug, Default)]
struct MemoryState {
    committed: Vec<(String, Vec<RecordBatch>)>,
    rejects: Vec<Reject>,
    run_committed: bool,
    run_aborted: Option<String>,
}

/// A sink that keeps committed units in memory; can be told to fail a unit.
#[derive(Debug, Clone, Default)]
pub struct MemoryLoad {
    state: Arc<Mutex<MemoryState>>,
    fail_unit: Option<String>,
}

impl MemoryLoad {
    /// A sink whose writer fails on unit `name`.
    pub fn failing_on(name: &str) -> Self {
        MemoryLoad {
            fail_unit: Some(name.to_owned()),
            ..Default::default()
        }
    }
    /// Rows committed.
    pub fn rows(&self) -> usize {
        let s = self.state.lock().unwrap();
        s.committed
            .iter()
            .flat_map(|(_, b)| b)
            .map(RecordBatch::num_rows)
            .sum()
    }
    /// Names of committed units.
    pub fn committed_units(&self) -> Vec<String> {
        let s = self.state.lock().unwrap();
        s.committed.iter().map(|(n, _)| n.clone()).collect()
    }
    /// Rejects stored.
    pub fn rejects(&self) -> Vec<Reject> {
        self.state.lock().unwrap().rejects.clone()
    }
    /// Whether `commit_run` was called.
    pub fn run_committed(&self) -> bool {
        self.state.lock().unwrap().run_committed
    }
    /// The reason given to `abort_run`, if called.
    pub fn run_aborted(&self) -> Option<String> {
        self.state.lock().unwrap().run_aborted.clone()
    }
}

/// Writer of [`MemoryLoad`].
#[derive(Debug)]
pub struct MemoryWriter {
    unit: String,
    batches: Vec<RecordBatch>,
    rejects: Vec<Reject>,
    state: Arc<Mutex<MemoryState>>,
    fail: bool,
}

impl Load for MemoryLoad {
    type Writer = MemoryWriter;
    fn name(&self) -> &str {
        "memory"
    }
    async fn begin_run(&self, _run: &RunInfo, _schema: SchemaRef) -> Result<Vec<UnitSummary>> {
        Ok(Vec::new())
    }
    async fn begin_unit(&self, unit: &Unit) -> Result<MemoryWriter> {
        Ok(MemoryWriter {
            unit: unit.name.clone(),
            batches: Vec::new(),
            rejects: Vec::new(),
            state: self.state.clone(),
            fail: self.fail_unit.as_deref() == Some(unit.name.as_str()),
        })
    }
    async fn commit_run(&self, _totals: &crate::RunTotals) -> Result<()> {
        self.state.lock().unwrap().run_committed = true;
        Ok(())
    }
    async fn abort_run(&self, reason: &str) -> Result<()> {
        self.state.lock().unwrap().run_aborted = Some(reason.to_owned());
        Ok(())
    }
}

impl UnitWriter for MemoryWriter {
    async fn write(&mut self, batch: RecordBatch) -> Result<u64> {
        if self.fail {
            return Err(Error::component(
                Stage::Load,
                "memory",
                false,
                format!("injected failure in unit {}", self.unit),
            ));
        }
        let n = batch.num_rows() as u64;
        self.batches.push(batch);
        Ok(n)
    }
    async fn write_rejects(&mut self, rejects: &[Reject]) -> Result<()> {
        self.rejects.extend_from_slice(rejects);
        Ok(())
    }
    async fn commit(self, _summary: &UnitSummary) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        s.committed.push((self.unit, self.batches));
        s.rejects.extend(self.rejects);
        Ok(())
    }
    async fn abort(self) -> Result<()> {
        Ok(())
    }
}
