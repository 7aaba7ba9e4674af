//! The [`Pipeline`] runner: extract -> transform* -> validate* -> load, unit by unit.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arrow_schema::SchemaRef;
use chrono::Utc;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::report::{RejectSpool, RunReport, RunStatus};
use crate::{
    Batch, Error, Extract, ExtractOptions, Finding, Load, Progress, Result, RunInfo, RunLedger,
    SharedTransform, SharedValidate, SizeHint, Stage, Transform, Unit, UnitStatus, UnitSummary,
    UnitWriter, Validate,
};

/// How the runner runs.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Target rows per batch.
    pub batch_size: usize,
    /// Units processed at once.
    pub parallel: usize,
    /// Batches buffered between stages (memory bound: about
    /// `parallel * (2 * buffer + transform_concurrency) * batch_size` rows in flight).
    pub buffer: usize,
    /// Batches of one unit transformed at once on the blocking pool.
    pub transform_concurrency: usize,
    /// Show progress bars (only on a terminal).
    pub progress: bool,
    /// Write `report.json`, `summary.txt` and `rejects.csv` here at the end.
    pub report_dir: Option<PathBuf>,
    /// Times a unit that failed with a retryable error (a lost connection, a server
    /// restart, a serialization failure) is run again, after a jittered backoff, before
    /// the run fails. Each retry is counted in the unit's report line.
    pub unit_retries: u32,
    /// Guard `rejects.csv` against spreadsheet formulas
    /// ([`RejectSpool::guard_formulas`](crate::RejectSpool::guard_formulas)).
    pub guard_formulas: bool,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            batch_size: 8_192,
            parallel: 1,
            buffer: 2,
            transform_concurrency: 1,
            progress: false,
            report_dir: None,
            unit_retries: 0,
            guard_formulas: false,
        }
    }
}

/// A migration: one source, a chain of transforms, validators, one sink.
///
/// # Examples
/// ```
/// # use etl_core::testing::{MemoryExtract, MemoryLoad};
/// # use etl_core::{Pipeline, RunInfo, RunStatus};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let extract = MemoryExtract::numbers("unit-1", 10, 4);
/// let load = MemoryLoad::default();
/// let report = Pipeline::new(extract, load.clone()).run(&RunInfo::new("demo")).await;
/// assert_eq!(report.status, RunStatus::Succeeded);
/// assert_eq!(report.totals.loaded, 10);
/// assert_eq!(load.rows(), 10);
/// # }
/// ```
pub struct Pipeline<E: Extract, L: Load> {
    extract: Arc<E>,
    transforms: Vec<SharedTransform>,
    validators: Vec<SharedValidate>,
    load: Arc<L>,
    options: PipelineOptions,
}

impl<E: Extract, L: Load> Pipeline<E, L> {
    /// A pipeline from `extract` to `load` with default options.
    pub fn new(extract: E, load: L) -> Self {
        Pipeline {
            extract: Arc::new(extract),
            transforms: Vec::new(),
            validators: Vec::new(),
            load: Arc::new(load),
            options: PipelineOptions::default(),
        }
    }

    /// Append a transform.
    pub fn transform(mut self, t: impl Transform) -> Self {
        self.transforms.push(Arc::new(t));
        self
    }

    /// Append a shared transform (to read its statistics after the run).
    pub fn transform_shared(mut self, t: SharedTransform) -> Self {
        self.transforms.push(t);
        self
    }

    /// Append a validator.
    pub fn validate(mut self, v: impl Validate) -> Self {
        self.validators.push(Arc::new(v));
        self
    }

    /// Append a shared validator.
    pub fn validate_shared(mut self, v: SharedValidate) -> Self {
        self.validators.push(v);
        self
    }

    /// Set the options.
    pub fn options(mut self, options: PipelineOptions) -> Self {
        self.options = options;
        self
    }

    /// The sink.
    pub fn load(&self) -> &L {
        &self.load
    }

    /// The schema that reaches the sink.
    pub fn output_schema(&self) -> Result<SchemaRef> {
        let mut schema = self.extract.schema();
        for t in &self.transforms {
            schema = t.output_schema(&schema)?;
        }
        Ok(schema)
    }

    /// Run: `begin_run`, every unit (skipping those committed earlier when resuming),
    /// `end_load`, validators, then `commit_run` or `abort_run`.
    ///
    /// Never panics on a data or I/O problem: the returned report has `status: failed`
    /// and `error` set. The report is also written to `options.report_dir` when set.
    pub async fn run(&self, run: &RunInfo) -> RunReport {
        let started_at = Utc::now();
        // The handle of the step (or the scope `pipeline`), so batches only touch atomics.
        let run = &RunInfo {
            metrics: run.metrics.as_ref().map(|m| {
                m.set_migration(&run.migration);
                m.scoped()
            }),
            ..run.clone()
        };
        let ledger = RunLedger::default();
        let spool = self
            .options
            .report_dir
            .as_ref()
            .map(|d| RejectSpool::new(d).map(|s| s.guard_formulas(self.options.guard_formulas)))
            .transpose();
        let phases = Phases::default();
        let (status, error, validation) = match spool {
            Ok(spool) => self.run_inner(run, &ledger, spool.as_ref(), &phases).await,
            Err(e) => (RunStatus::Failed, Some(e.to_string()), Vec::new()),
        };
        let units = ledger.units();
        let mut report = RunReport::new(
            &run.migration,
            &run.run_id.to_string(),
            status,
            &units,
            started_at,
        );
        report.error = error;
        report.validation = validation;
        report.extra.insert("phases".into(), phases.to_json());
        if let Some(dir) = &self.options.report_dir {
            let spool = RejectSpool::new(dir).ok();
            if let Err(e) = report.write(dir, spool.as_ref()) {
                tracing::error!(error = %e, "cannot write the run report");
                report.status = RunStatus::Failed;
                report.error.get_or_insert_with(|| e.to_string());
            }
        }
        report
    }

    async fn run_inner(
        &self,
        run: &RunInfo,
        ledger: &RunLedger,
        spool: Option<&RejectSpool>,
        phases: &Phases,
    ) -> (RunStatus, Option<String>, Vec<Finding>) {
        let schema = match self.output_schema() {
            Ok(s) => s,
            Err(e) => return (RunStatus::Failed, Some(e.to_string()), Vec::new()),
        };
        let units = match self.extract.units().await {
            Ok(u) => u,
            Err(e) => return (RunStatus::Failed, Some(e.to_string()), Vec::new()),
        };
        let mut done = Vec::new();
        if !run.dry_run {
            match self.load.begin_run(run, schema).await {
                Ok(d) => done = d,
                Err(e) => {
                    let _ = self.load.abort_run(&e.to_string()).await;
                    return (RunStatus::Failed, Some(e.to_string()), Vec::new());
                }
            }
        }
        if let Some(spool) = spool
            && !run.resume
        {
            spool.clear_units(units.iter().map(|u| u.name.as_str()));
        }
        if run.resume
            && let Err(e) = self.check_inputs_unchanged(&units, &done).await
        {
            let _ = self.load.abort_run(&e.to_string()).await;
            return (RunStatus::Failed, Some(e.to_string()), Vec::new());
        }
        if let Some(m) = &run.metrics {
            m.units_listed(units.len() as u64);
        }
        let mut todo = Vec::new();
        for unit in units {
            if let Some(prev) = done.iter().find(|d| d.name == unit.name) {
                let mut prev = prev.clone();
                prev.status = UnitStatus::Resumed;
                if let Some(spool) = spool {
                    let _ = spool.seal(&unit.name);
                }
                tracing::info!(unit = %unit.name, rows = prev.loaded, "unit already committed; skipped");
                if let Some(m) = &run.metrics {
                    m.unit_done();
                }
                ledger.put(prev);
            } else {
                ledger.put(UnitSummary::new(&unit.name));
                todo.push(unit);
            }
        }
        let progress = Progress::new(self.options.progress, todo.len() as u64);
        let cancel = run.cancel.child_token();
        let rows = Arc::new(AtomicU64::new(0));
        let t0 = Instant::now();
        let mut first_error: Option<Error> = None;
        {
            let mut results = futures::stream::iter(todo.into_iter().map(|unit| {
                let progress = progress.clone();
                let cancel = cancel.clone();
                let rows = rows.clone();
                async move {
                    let r = self
                        .run_unit(&unit, run, ledger, spool, &progress, &cancel, &rows, t0)
                        .await;
                    (unit, r)
                }
            }))
            .buffer_unordered(self.options.parallel.max(1));
            while let Some((unit, r)) = results.next().await {
                if let Err(e) = r {
                    tracing::error!(unit = %unit.name, error = %e, "unit failed");
                    if first_error.is_none() {
                        cancel.cancel();
                        first_error = Some(e);
                    }
                }
            }
        }
        progress.finish();
        phases.set(&phases.load_s, t0.elapsed().as_secs_f64());
        if let Some(e) = first_error {
            let msg = if matches!(e, Error::Cancelled) && run.cancel.is_cancelled() {
                "run cancelled".to_owned()
            } else {
                e.to_string()
            };
            if !run.dry_run {
                let _ = self.load.abort_run(&msg).await;
            }
            return (RunStatus::Failed, Some(msg), Vec::new());
        }
        let t1 = Instant::now();
        let ended = if run.dry_run {
            Ok(())
        } else {
            self.load.end_load().await
        };
        phases.set(&phases.end_load_s, t1.elapsed().as_secs_f64());
        if let Err(e) = ended {
            let _ = self.load.abort_run(&e.to_string()).await;
            return (RunStatus::Failed, Some(e.to_string()), Vec::new());
        }
        let totals = ledger.totals();
        let mut findings = vec![Finding::check(
            "counts_reconcile",
            ledger.check().is_ok() && totals.reconciles(),
            format!(
                "read {} = loaded {} + rejected {} + filtered {}",
                totals.read, totals.loaded, totals.rejected, totals.filtered
            ),
        )];
        let t2 = Instant::now();
        for v in &self.validators {
            match v.finish(&totals).await {
                Ok(f) => findings.extend(f),
                Err(e) => findings.push(Finding::fail(
                    v.name().to_owned(),
                    format!("check could not run: {e}"),
                )),
            }
        }
        phases.set(&phases.validate_s, t2.elapsed().as_secs_f64());
        let vetoes: Vec<String> = findings
            .iter()
            .filter(|f| f.vetoes())
            .map(|f| format!("{}: {}", f.check, f.message))
            .collect();
        if run.dry_run {
            return (RunStatus::DryRun, None, findings);
        }
        if !vetoes.is_empty() {
            let msg = format!("validation failed: {}", vetoes.join("; "));
            let _ = self.load.abort_run(&msg).await;
            return (RunStatus::Failed, Some(msg), findings);
        }
        if let Err(e) = self.load.commit_run(&totals).await {
            return (RunStatus::Failed, Some(e.to_string()), findings);
        }
        (RunStatus::Succeeded, None, findings)
    }

    /// On resume: every unit an earlier attempt committed must still be in the input, with
    /// the content it had (its recorded fingerprint), or the resumed run would mix two
    /// versions of the input.
    async fn check_inputs_unchanged(&self, units: &[Unit], done: &[UnitSummary]) -> Result<()> {
        for d in done {
            let Some(then) = &d.fingerprint else { continue };
            let Some(unit) = units.iter().find(|u| u.name == d.name) else {
                return Err(Error::Validation(format!(
                    "--resume: `{}` was committed by the interrupted run but is no longer in the input; restore it, or start a new run without --resume",
                    d.name
                )));
            };
            let now = self.extract.fingerprint(unit).await?;
            if let Some(now) = now
                && &now != then
            {
                return Err(Error::Validation(format!(
                    "--resume: `{}` changed since the interrupted run committed it (then {then}, now {now}); a resume would mix two versions of the input — restore the file, or start a new run without --resume",
                    d.name
                )));
            }
        }
        Ok(())
    }

    /// One unit, run again after a retryable error up to `unit_retries` times.
    #[allow(clippy::too_many_arguments)]
    async fn run_unit(
        &self,
        unit: &Unit,
        run: &RunInfo,
        ledger: &RunLedger,
        spool: Option<&RejectSpool>,
        progress: &Progress,
        cancel: &CancellationToken,
        rows: &AtomicU64,
        t0: Instant,
    ) -> Result<()> {
        // 0.5-1 s, 1-2 s, 2-4 s, ...: long enough for a server restart to complete.
        let backoff = crate::retry::Backoff::new(
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(30),
            self.options.unit_retries,
        );
        let mut retries = backoff.retries().uncounted();
        let metrics = run.metrics.as_ref();
        loop {
            let r = self
                .run_unit_once(
                    unit,
                    run,
                    ledger,
                    spool,
                    progress,
                    cancel,
                    rows,
                    t0,
                    retries.attempts(),
                )
                .await;
            if let Some(m) = metrics {
                match &r {
                    Ok(()) => m.unit_done(),
                    Err(Error::Cancelled) => {}
                    Err(_) => m.unit_failed(),
                }
            }
            match r {
                Err(e) if e.is_retryable() && !cancel.is_cancelled() => {
                    let Some(delay) = retries.next_delay(None) else {
                        return Err(e);
                    };
                    tracing::warn!(
                        unit = %unit.name, error = %e, retry = retries.attempts(),
                        of = self.options.unit_retries, delay_ms = delay.as_millis() as u64,
                        "unit failed with a retryable error; running it again"
                    );
                    if let Some(m) = metrics {
                        m.unit_retried();
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = cancel.cancelled() => return Err(e),
                    }
                }
                r => return r,
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_unit_once(
        &self,
        unit: &Unit,
        run: &RunInfo,
        ledger: &RunLedger,
        spool: Option<&RejectSpool>,
        progress: &Progress,
        cancel: &CancellationToken,
        rows: &AtomicU64,
        t0: Instant,
        retries: u32,
    ) -> Result<()> {
        if cancel.is_cancelled() {
            // Not started: stays pending in the ledger; a resume will do it.
            return Err(Error::Cancelled);
        }
        let mut summary = UnitSummary::new(&unit.name);
        summary.retries = retries;
        summary.status = UnitStatus::Running;
        summary.started_at = Some(Utc::now());
        ledger.put(summary.clone());
        let bar = progress.unit(&unit.name, unit.size);
        let started = Instant::now();
        let mut writer = if run.dry_run {
            None
        } else {
            match self.load.begin_unit(unit).await {
                Ok(w) => Some(w),
                Err(e) => {
                    return self
                        .fail_unit(unit, summary, None, e, ledger, started, &bar)
                        .await;
                }
            }
        };
        // The input's fingerprint is taken while the unit is read (the source hashes on
        // another thread), and committed with the unit.
        let (result, fingerprint) = futures::join!(
            self.pump(
                unit,
                &mut summary,
                writer.as_mut(),
                spool,
                &bar,
                cancel,
                rows,
                progress,
                t0,
                run.metrics.as_ref(),
            ),
            async {
                if run.dry_run {
                    Ok(None)
                } else {
                    self.extract.fingerprint(unit).await
                }
            }
        );
        let result = result.and_then(|()| {
            summary.fingerprint = fingerprint?;
            Ok(())
        });
        if let Err(e) = result {
            return self
                .fail_unit(unit, summary, writer, e, ledger, started, &bar)
                .await;
        }
        summary.status = if run.dry_run {
            UnitStatus::DryRun
        } else {
            UnitStatus::Completed
        };
        summary.finished_at = Some(Utc::now());
        summary.duration_s = started.elapsed().as_secs_f64();
        if let Some(w) = writer
            && let Err(e) = w.commit(&summary).await
        {
            // The COMMIT may have reached the server and only its answer been lost: ask
            // the sink's durable record before calling the unit failed (loading it again
            // would duplicate it).
            let committed = self.load.unit_committed(unit).await.unwrap_or_else(|check| {
                tracing::warn!(unit = %unit.name, error = %check, "cannot tell whether the unit committed");
                false
            });
            if !committed {
                return self
                    .fail_unit(unit, summary, None, e, ledger, started, &bar)
                    .await;
            }
            tracing::warn!(unit = %unit.name, error = %e, "the unit's commit got no answer, but the sink's record shows it committed: kept as completed");
            *summary
                .counters
                .entry("commit_outcome_checked".into())
                .or_default() += 1;
        }
        if let Some(spool) = spool {
            spool.seal(&unit.name)?;
        }
        tracing::info!(
            unit = %unit.name, read = summary.read, loaded = summary.loaded,
            rejected = summary.rejected, filtered = summary.filtered,
            secs = format!("{:.2}", summary.duration_s), "unit done"
        );
        ledger.put(summary);
        bar.finish();
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn fail_unit(
        &self,
        unit: &Unit,
        mut summary: UnitSummary,
        writer: Option<L::Writer>,
        error: Error,
        ledger: &RunLedger,
        started: Instant,
        bar: &crate::progress::UnitProgress,
    ) -> Result<()> {
        if let Some(w) = writer
            && let Err(e) = w.abort().await
        {
            tracing::warn!(unit = %unit.name, error = %e, "abort failed (the transaction is rolled back when its connection closes)");
        }
        let _ = self.load.unit_failed(unit, &error.to_string()).await;
        summary.status = UnitStatus::Failed;
        summary.error = Some(error.to_string());
        summary.finished_at = Some(Utc::now());
        summary.duration_s = started.elapsed().as_secs_f64();
        ledger.put(summary);
        bar.finish();
        Err(error)
    }

    #[allow(clippy::too_many_arguments)]
    async fn pump(
        &self,
        unit: &Unit,
        summary: &mut UnitSummary,
        mut writer: Option<&mut L::Writer>,
        spool: Option<&RejectSpool>,
        bar: &crate::progress::UnitProgress,
        cancel: &CancellationToken,
        rows: &AtomicU64,
        progress: &Progress,
        t0: Instant,
        metrics: Option<&Metrics>,
    ) -> Result<()> {
        let in_bytes = matches!(unit.size, Some(SizeHint::Bytes(_)));
        let opts = ExtractOptions {
            batch_size: self.options.batch_size,
            buffer: self.options.buffer.max(1),
        };
        let stream = self.extract.open(unit, opts)?;
        let (tx, mut rx) = mpsc::channel::<Result<(u64, Batch)>>(self.options.buffer.max(1));
        let transforms = self.transforms.clone();
        let concurrency = self.options.transform_concurrency.max(1);
        let unit_name = unit.name.clone();
        let producer = tokio::spawn(async move {
            let mut stream = stream
                .map(move |item| {
                    let transforms = transforms.clone();
                    let unit_name = unit_name.clone();
                    async move {
                        let batch = item?;
                        let read = batch.read();
                        if transforms.is_empty() {
                            return Ok((read, batch));
                        }
                        tokio::task::spawn_blocking(move || {
                            apply_transforms(&unit_name, &transforms, batch).map(|b| (read, b))
                        })
                        .await
                        .map_err(|e| Error::component(Stage::Transform, "runner", false, e))?
                    }
                })
                .buffered(concurrency);
            while let Some(item) = stream.next().await {
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    break;
                }
            }
        });
        let _abort_producer = AbortOnDrop(producer);
        let mut unit_spool = spool.map(|s| s.open(&unit.name)).transpose()?;
        loop {
            let item = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(Error::Cancelled),
                item = rx.recv() => item,
            };
            let Some(item) = item else { break };
            let (read, batch) = item?;
            for v in &self.validators {
                v.check_batch(&batch)?;
            }
            let n = batch.num_rows() as u64;
            let loaded = match writer.as_deref_mut() {
                Some(w) => {
                    let written = if n > 0 {
                        w.write(batch.data.clone()).await?
                    } else {
                        0
                    };
                    if !batch.rejects.is_empty() {
                        w.write_rejects(&batch.rejects).await?;
                    }
                    written
                }
                None => n,
            };
            if let Some(s) = unit_spool.as_mut()
                && !batch.rejects.is_empty()
            {
                s.append(&batch.rejects)?;
            }
            summary.add_batch(&batch, read, loaded);
            if let Some(m) = metrics {
                m.add_rows(
                    read,
                    loaded,
                    batch.rejects.len() as u64,
                    batch.filtered_total(),
                );
                if in_bytes {
                    m.add_bytes(batch.consumed);
                }
            }
            bar.advance(batch.consumed, summary.read);
            let total = rows.fetch_add(read, Ordering::Relaxed) + read;
            progress.set_rows(total, total as f64 / t0.elapsed().as_secs_f64().max(1e-9));
        }
        if !summary.reconciles() {
            return Err(Error::Validation(format!(
                "unit `{}` does not reconcile: read {} != loaded {} + rejected {} + filtered {} (the sink wrote a different number of rows than it was given)",
                unit.name, summary.read, summary.loaded, summary.rejected, summary.filtered
            )));
        }
        if let Some(s) = unit_spool.as_mut() {
            s.sync()?;
        }
        Ok(())
    }
}

/// Wall seconds of the run's phases, for the report (`extra.phases`).
#[derive(Debug, Default)]
struct Phases {
    load_s: std::sync::Mutex<Option<f64>>,
    end_load_s: std::sync::Mutex<Option<f64>>,
    validate_s: std::sync::Mutex<Option<f64>>,
}

impl Phases {
    fn set(&self, slot: &std::sync::Mutex<Option<f64>>, v: f64) {
        *slot.lock().expect("phases lock") = Some(v);
    }
    fn to_json(&self) -> serde_json::Value {
        let get = |m: &std::sync::Mutex<Option<f64>>| *m.lock().expect("phases lock");
        serde_json::json!({
            "load_s": get(&self.load_s),
            "end_load_s": get(&self.end_load_s),
            "validate_s": get(&self.validate_s),
        })
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Apply `transforms` in order, checking after each that no row was lost or invented.
pub fn apply_transforms(
    unit: &str,
    transforms: &[SharedTransform],
    mut batch: Batch,
) -> Result<Batch> {
    for t in transforms {
        let input = batch.read();
        let (rej0, fil0) = (batch.rejects.len() as u64, batch.filtered_total());
        batch = t.transform(batch)?;
        if batch.read() != input {
            return Err(Error::Reconciliation {
                unit: unit.to_owned(),
                component: t.name().to_owned(),
                input,
                output: batch.num_rows() as u64,
                rejected: batch.rejects.len() as u64 - rej0.min(batch.rejects.len() as u64),
                filtered: batch.filtered_total().saturating_sub(fil0),
            });
        }
    }
    Ok(batch)
}
