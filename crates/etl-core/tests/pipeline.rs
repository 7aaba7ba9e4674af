//! The runner with in-memory stages: reconciliation, veto, failure, cancellation, dry run,
//! reports.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_schema::SchemaRef;
use etl_core::testing::{MemoryExtract, MemoryLoad};
use etl_core::{
    Batch, Fate, Finding, Pipeline, PipelineOptions, Result, RunInfo, RunStatus, RunTotals,
    Transform, UnitStatus, Validate,
};
use futures::future::BoxFuture;

struct EveryTenthRejected;
impl Transform for EveryTenthRejected {
    fn name(&self) -> &str {
        "tenth"
    }
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef> {
        Ok(input.clone())
    }
    fn transform(&self, mut batch: Batch) -> Result<Batch> {
        let n = batch.data.column(0).as_primitive::<Int64Type>().clone();
        let fates: Vec<Option<Fate>> = n
            .values()
            .iter()
            .map(|v| match v {
                v if v % 10 == 0 => Some(Fate::Reject {
                    column: Some("n".into()),
                    kind: "round".into(),
                    reason: format!("{v} is round"),
                }),
                v if v % 7 == 0 => Some(Fate::Filter {
                    reason: "sevens".into(),
                }),
                _ => None,
            })
            .collect();
        batch.apply_fates(&fates)?;
        Ok(batch)
    }
}

/// Drops a row without saying so: the runner must catch it.
struct Leaky;
impl Transform for Leaky {
    fn name(&self) -> &str {
        "leaky"
    }
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef> {
        Ok(input.clone())
    }
    fn transform(&self, mut batch: Batch) -> Result<Batch> {
        if batch.num_rows() > 0 {
            batch.data = batch.data.slice(1, batch.num_rows() - 1);
            batch.records.remove(0);
        }
        Ok(batch)
    }
}

struct Veto;
impl Validate for Veto {
    fn name(&self) -> &str {
        "veto"
    }
    fn finish<'a>(&'a self, t: &'a RunTotals) -> BoxFuture<'a, Result<Vec<Finding>>> {
        Box::pin(async move {
            Ok(vec![Finding::check(
                "enough",
                t.loaded > 1_000,
                format!("{} loaded", t.loaded),
            )])
        })
    }
}

struct CountBatches(Arc<AtomicUsize>);
impl Validate for CountBatches {
    fn name(&self) -> &str {
        "count"
    }
    fn check_batch(&self, _b: &Batch) -> Result<()> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    fn finish<'a>(&'a self, _t: &'a RunTotals) -> BoxFuture<'a, Result<Vec<Finding>>> {
        Box::pin(async { Ok(vec![]) })
    }
}

fn opts(dir: Option<&std::path::Path>) -> PipelineOptions {
    PipelineOptions {
        batch_size: 16,
        parallel: 2,
        buffer: 1,
        transform_concurrency: 2,
        progress: false,
        report_dir: dir.map(|d| d.to_path_buf()),
        unit_retries: 0,
        ..Default::default()
    }
}

#[tokio::test]
async fn counts_reconcile_per_unit_and_reports_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let load = MemoryLoad::default();
    let batches = Arc::new(AtomicUsize::new(0));
    let report = Pipeline::new(MemoryExtract::units(&[("a", 100), ("b", 35)]), load.clone())
        .transform(EveryTenthRejected)
        .validate(CountBatches(batches.clone()))
        .options(opts(Some(dir.path())))
        .run(&RunInfo::new("t"))
        .await;
    assert_eq!(report.status, RunStatus::Succeeded, "{:?}", report.error);
    // a: 10 round, 13 sevens (70 is round) -> 77 loaded; b: 3 round, 5 sevens -> 27
    let a = report.units.iter().find(|u| u.name == "a").unwrap();
    assert_eq!(
        (a.read, a.loaded, a.rejected, a.filtered),
        (100, 77, 10, 13)
    );
    let t = &report.totals;
    assert_eq!(
        (t.read, t.loaded, t.rejected, t.filtered),
        (135, 104, 13, 18)
    );
    assert_eq!(load.rows(), 104);
    assert_eq!(load.rejects().len(), 13);
    assert!(load.run_committed());
    assert_eq!(batches.load(Ordering::Relaxed), 7 + 3);
    let csv = std::fs::read_to_string(dir.path().join("rejects.csv")).unwrap();
    assert_eq!(csv.lines().count(), 14);
    assert!(csv.contains("a,30,n,30 is round,30\n"), "{csv}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    for key in [
        "migration",
        "status",
        "totals",
        "units",
        "started_at",
        "finished_at",
        "duration_s",
        "rows_per_s",
    ] {
        assert!(json.get(key).is_some(), "{key}");
    }
    assert_eq!(json["units"][0]["status"], "completed");
    assert!(
        std::fs::read_to_string(dir.path().join("summary.txt"))
            .unwrap()
            .contains("reconciles")
    );
}

#[tokio::test]
async fn a_transform_that_loses_rows_stops_the_run() {
    let load = MemoryLoad::default();
    let report = Pipeline::new(MemoryExtract::numbers("a", 50, 16), load.clone())
        .transform(Leaky)
        .options(opts(None))
        .run(&RunInfo::new("t"))
        .await;
    assert_eq!(report.status, RunStatus::Failed);
    assert!(
        report
            .error
            .unwrap()
            .contains("counts do not reconcile in unit `a` after `leaky`")
    );
    assert_eq!(load.rows(), 0, "nothing of the unit committed");
    assert!(load.run_aborted().is_some());
}

#[tokio::test]
async fn a_failed_gate_aborts_the_run_instead_of_committing() {
    let load = MemoryLoad::default();
    let report = Pipeline::new(MemoryExtract::numbers("a", 50, 16), load.clone())
        .validate(Veto)
        .options(opts(None))
        .run(&RunInfo::new("t"))
        .await;
    assert_eq!(report.status, RunStatus::Failed);
    assert!(
        report
            .error
            .as_deref()
            .unwrap()
            .contains("enough: 50 loaded")
    );
    assert!(!load.run_committed());
    assert!(load.run_aborted().unwrap().contains("validation failed"));
}

#[tokio::test]
async fn a_failing_unit_fails_the_run_and_leaves_it_uncommitted() {
    let load = MemoryLoad::failing_on("b");
    let mut o = opts(None);
    o.parallel = 1;
    let report = Pipeline::new(
        MemoryExtract::units(&[("a", 20), ("b", 20), ("c", 20)]),
        load.clone(),
    )
    .options(o)
    .run(&RunInfo::new("t"))
    .await;
    assert_eq!(report.status, RunStatus::Failed);
    assert!(report.error.unwrap().contains("injected failure in unit b"));
    assert_eq!(load.committed_units(), vec!["a".to_owned()]);
    let status = |n: &str| report.units.iter().find(|u| u.name == n).unwrap().status;
    assert_eq!(status("a"), UnitStatus::Completed);
    assert_eq!(status("b"), UnitStatus::Failed);
    assert_eq!(status("c"), UnitStatus::Pending, "never started");
}

#[tokio::test]
async fn cancellation_stops_before_anything_is_committed() {
    let load = MemoryLoad::default();
    let run = RunInfo::new("t");
    run.cancel.cancel();
    let report = Pipeline::new(MemoryExtract::numbers("a", 1_000, 16), load.clone())
        .options(opts(None))
        .run(&run)
        .await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(report.error.as_deref(), Some("run cancelled"));
    assert_eq!(load.rows(), 0);
}

#[tokio::test]
async fn a_dry_run_never_touches_the_sink() {
    let load = MemoryLoad::default();
    let mut run = RunInfo::new("t");
    run.dry_run = true;
    let report = Pipeline::new(MemoryExtract::numbers("a", 100, 16), load.clone())
        .transform(EveryTenthRejected)
        .options(opts(None))
        .run(&run)
        .await;
    assert_eq!(report.status, RunStatus::DryRun);
    assert_eq!(report.totals.loaded, 77);
    assert_eq!(load.rows(), 0);
    assert!(!load.run_committed() && load.run_aborted().is_none());
    assert_eq!(report.units[0].status, UnitStatus::DryRun);
}

/// A sink whose commit of one unit fails once with a retryable error: either before the
/// data is stored (a connection lost before COMMIT) or after (the COMMIT's answer lost).
#[derive(Clone, Default)]
struct FlakyLoad {
    rows: Arc<std::sync::Mutex<Vec<(String, u64)>>>,
    committed: Arc<std::sync::Mutex<Vec<String>>>,
    fails: Arc<AtomicUsize>,
    after_store: bool,
}

struct FlakyWriter {
    unit: String,
    rows: u64,
    load: FlakyLoad,
}

fn lost_connection() -> etl_core::Error {
    etl_core::Error::component(
        etl_core::Stage::Load,
        "flaky",
        true,
        std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset"),
    )
}

impl etl_core::Load for FlakyLoad {
    type Writer = FlakyWriter;
    fn name(&self) -> &str {
        "flaky"
    }
    async fn begin_run(
        &self,
        _run: &RunInfo,
        _schema: SchemaRef,
    ) -> Result<Vec<etl_core::UnitSummary>> {
        Ok(Vec::new())
    }
    async fn begin_unit(&self, unit: &etl_core::Unit) -> Result<FlakyWriter> {
        Ok(FlakyWriter {
            unit: unit.name.clone(),
            rows: 0,
            load: self.clone(),
        })
    }
    async fn unit_committed(&self, unit: &etl_core::Unit) -> Result<bool> {
        Ok(self.committed.lock().unwrap().contains(&unit.name))
    }
}

impl etl_core::UnitWriter for FlakyWriter {
    async fn write(&mut self, batch: arrow_array::RecordBatch) -> Result<u64> {
        self.rows += batch.num_rows() as u64;
        Ok(batch.num_rows() as u64)
    }
    async fn write_rejects(&mut self, _rejects: &[etl_core::Reject]) -> Result<()> {
        Ok(())
    }
    async fn commit(self, _summary: &etl_core::UnitSummary) -> Result<()> {
        let first_of_b = self.unit == "b" && self.load.fails.fetch_add(1, Ordering::SeqCst) == 0;
        if first_of_b && !self.load.after_store {
            return Err(lost_connection());
        }
        self.load
            .rows
            .lock()
            .unwrap()
            .push((self.unit.clone(), self.rows));
        self.load.committed.lock().unwrap().push(self.unit.clone());
        if first_of_b {
            return Err(lost_connection());
        }
        Ok(())
    }
    async fn abort(self) -> Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_unit_failing_with_a_retryable_error_is_run_again() {
    let load = FlakyLoad::default();
    let report = Pipeline::new(MemoryExtract::units(&[("a", 30), ("b", 40)]), load.clone())
        .options(PipelineOptions {
            unit_retries: 2,
            ..Default::default()
        })
        .run(&RunInfo::new("flaky"))
        .await;
    assert!(report.succeeded(), "{:?}", report.error);
    assert_eq!(report.totals.loaded, 70);
    let b = report.units.iter().find(|u| u.name == "b").unwrap();
    assert_eq!(b.retries, 1);
    assert_eq!(b.status, UnitStatus::Completed);
    let stored: u64 = load.rows.lock().unwrap().iter().map(|(_, n)| n).sum();
    assert_eq!(stored, 70, "stored once");

    // Without retries the same failure fails the run.
    let load = FlakyLoad::default();
    let report = Pipeline::new(MemoryExtract::units(&[("a", 30), ("b", 40)]), load)
        .run(&RunInfo::new("flaky"))
        .await;
    assert_eq!(report.status, RunStatus::Failed);
    assert!(report.error.unwrap().contains("connection reset"));
}

#[tokio::test]
async fn a_commit_whose_answer_was_lost_is_checked_not_redone() {
    let load = FlakyLoad {
        after_store: true,
        ..Default::default()
    };
    let report = Pipeline::new(MemoryExtract::units(&[("a", 30), ("b", 40)]), load.clone())
        .options(PipelineOptions {
            unit_retries: 3,
            ..Default::default()
        })
        .run(&RunInfo::new("lost-ack"))
        .await;
    assert!(report.succeeded(), "{:?}", report.error);
    assert_eq!(report.totals.loaded, 70);
    let b = report.units.iter().find(|u| u.name == "b").unwrap();
    assert_eq!(b.retries, 0, "not redone");
    assert_eq!(b.counters.get("commit_outcome_checked"), Some(&1));
    assert_eq!(load.rows.lock().unwrap().len(), 2, "no duplicate of b");
}
