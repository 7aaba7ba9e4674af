//! Run identity, the run ledger (counts per unit) and validation findings.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::batch::Counts;
use crate::{Batch, Error, Result};

/// Identity and mode of one run.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// Run id; a resumed run keeps the id of the run it resumes.
    pub run_id: Uuid,
    /// Migration name (`cites_trade`).
    pub migration: String,
    /// Continue the last unfinished run instead of starting over.
    pub resume: bool,
    /// Read, transform and validate, but write nothing.
    pub dry_run: bool,
    /// Cancelling it stops the run at the next batch.
    pub cancel: CancellationToken,
    /// Where the pipeline counts its rows, units and retries (once per batch and per
    /// unit): the step's handle when the pipeline runs in a migration
    /// ([`StepCx::run_info`](crate::migration::StepCx::run_info)).
    pub metrics: Option<crate::metrics::Metrics>,
}

impl RunInfo {
    /// A new run with a fresh time-ordered id.
    pub fn new(migration: impl Into<String>) -> Self {
        RunInfo {
            run_id: Uuid::now_v7(),
            migration: migration.into(),
            resume: false,
            dry_run: false,
            cancel: CancellationToken::new(),
            metrics: None,
        }
    }
}

/// State of a unit in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitStatus {
    /// Not started.
    Pending,
    /// Being loaded.
    Running,
    /// Loaded and committed in this run.
    Completed,
    /// Committed by an earlier attempt of this run; skipped on resume.
    Resumed,
    /// Failed; nothing of it is visible.
    Failed,
    /// Processed in a dry run; nothing written.
    DryRun,
}

/// The ledger line of one unit: every record read ends as loaded, rejected or filtered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitSummary {
    /// Unit name.
    pub name: String,
    /// Records read from the source.
    pub read: u64,
    /// Rows written to the sink.
    pub loaded: u64,
    /// Records rejected, with reasons below.
    pub rejected: u64,
    /// Records filtered on purpose, with reasons below.
    pub filtered: u64,
    /// Rejects by kind.
    pub rejected_by_reason: Counts,
    /// Filtered rows by reason.
    pub filtered_by_reason: Counts,
    /// Free counters from the stages.
    pub counters: Counts,
    /// State.
    pub status: UnitStatus,
    /// When the unit started.
    pub started_at: Option<DateTime<Utc>>,
    /// When the unit ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Seconds spent.
    pub duration_s: f64,
    /// Error, if it failed.
    pub error: Option<String>,
    /// Times the unit was retried after a retryable error (a lost connection, a server
    /// restart, a serialization failure).
    #[serde(default)]
    pub retries: u32,
    /// The fingerprint of the unit's input when it was read ([`crate::Extract::fingerprint`]).
    #[serde(default)]
    pub fingerprint: Option<String>,
}

impl UnitSummary {
    /// An empty, pending unit.
    pub fn new(name: impl Into<String>) -> Self {
        UnitSummary {
            name: name.into(),
            read: 0,
            loaded: 0,
            rejected: 0,
            filtered: 0,
            rejected_by_reason: Counts::new(),
            filtered_by_reason: Counts::new(),
            counters: Counts::new(),
            status: UnitStatus::Pending,
            started_at: None,
            finished_at: None,
            duration_s: 0.0,
            error: None,
            retries: 0,
            fingerprint: None,
        }
    }

    /// Whether `read = loaded + rejected + filtered`.
    pub fn reconciles(&self) -> bool {
        self.read == self.loaded + self.rejected + self.filtered
    }

    /// Add a batch that left the last transform: `loaded` rows were written.
    pub fn add_batch(&mut self, batch: &Batch, read: u64, loaded: u64) {
        self.read += read;
        self.loaded += loaded;
        self.rejected += batch.rejects.len() as u64;
        for r in &batch.rejects {
            *self.rejected_by_reason.entry(r.kind.clone()).or_default() += 1;
        }
        for (k, v) in &batch.filtered {
            self.filtered += v;
            *self.filtered_by_reason.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &batch.counters {
            *self.counters.entry(k.clone()).or_default() += v;
        }
    }
}

/// Totals over all units.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunTotals {
    /// Records read.
    pub read: u64,
    /// Rows loaded.
    pub loaded: u64,
    /// Records rejected.
    pub rejected: u64,
    /// Records filtered.
    pub filtered: u64,
    /// Rejects by kind over all units.
    #[serde(default)]
    pub rejected_by_reason: Counts,
    /// Filtered rows by reason over all units.
    #[serde(default)]
    pub filtered_by_reason: Counts,
    /// Counters over all units.
    #[serde(default)]
    pub counters: Counts,
}

impl RunTotals {
    /// Sum unit summaries.
    pub fn from_units<'a>(units: impl IntoIterator<Item = &'a UnitSummary>) -> Self {
        let mut t = RunTotals::default();
        for u in units {
            t.add(
                [u.read, u.loaded, u.rejected, u.filtered],
                &u.rejected_by_reason,
                &u.filtered_by_reason,
                &u.counters,
            );
        }
        t
    }

    /// Add one unit's `[read, loaded, rejected, filtered]` and its reasons and counters.
    pub fn add(
        &mut self,
        counts: [u64; 4],
        rejected: &Counts,
        filtered: &Counts,
        counters: &Counts,
    ) {
        let [read, loaded, rej, fil] = counts;
        self.read += read;
        self.loaded += loaded;
        self.rejected += rej;
        self.filtered += fil;
        for (map, from) in [
            (&mut self.rejected_by_reason, rejected),
            (&mut self.filtered_by_reason, filtered),
            (&mut self.counters, counters),
        ] {
            for (k, v) in from {
                *map.entry(k.clone()).or_default() += v;
            }
        }
    }

    /// Whether `read = loaded + rejected + filtered`.
    pub fn reconciles(&self) -> bool {
        self.read == self.loaded + self.rejected + self.filtered
    }
}

/// The in-memory ledger of a run, shared by the unit tasks.
#[derive(Debug, Default)]
pub struct RunLedger {
    units: Mutex<BTreeMap<String, UnitSummary>>,
    order: Mutex<Vec<String>>,
}

impl RunLedger {
    /// Insert or replace a unit's line.
    pub fn put(&self, summary: UnitSummary) {
        let mut units = self.units.lock().expect("ledger lock");
        if !units.contains_key(&summary.name) {
            self.order
                .lock()
                .expect("ledger lock")
                .push(summary.name.clone());
        }
        units.insert(summary.name.clone(), summary);
    }

    /// Every unit, in the order they were first put.
    pub fn units(&self) -> Vec<UnitSummary> {
        let units = self.units.lock().expect("ledger lock");
        self.order
            .lock()
            .expect("ledger lock")
            .iter()
            .filter_map(|n| units.get(n).cloned())
            .collect()
    }

    /// Totals over every unit.
    pub fn totals(&self) -> RunTotals {
        RunTotals::from_units(&self.units())
    }

    /// Fail if any unit does not reconcile.
    pub fn check(&self) -> Result<()> {
        for u in self.units() {
            if !u.reconciles() {
                return Err(Error::Validation(format!(
                    "unit `{}` does not reconcile: read {} != loaded {} + rejected {} + filtered {}",
                    u.name, u.read, u.loaded, u.rejected, u.filtered
                )));
            }
        }
        Ok(())
    }
}

/// How bad a failed check is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Reported, does not stop the run.
    Warn,
    /// Vetoes the commit (switchover, load).
    Error,
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Check name (`match_rate`, `orphan_species_id`).
    pub check: String,
    /// Whether it passed.
    pub passed: bool,
    /// What a failure means.
    pub severity: Severity,
    /// What was found, for a person.
    pub message: String,
}

impl Finding {
    /// A passed check.
    pub fn pass(check: impl Into<String>, message: impl Into<String>) -> Self {
        Finding {
            check: check.into(),
            passed: true,
            severity: Severity::Error,
            message: message.into(),
        }
    }

    /// A failed check that vetoes the commit.
    pub fn fail(check: impl Into<String>, message: impl Into<String>) -> Self {
        Finding {
            check: check.into(),
            passed: false,
            severity: Severity::Error,
            message: message.into(),
        }
    }

    /// A failed check that only warns.
    pub fn warn(check: impl Into<String>, message: impl Into<String>) -> Self {
        Finding {
            check: check.into(),
            passed: false,
            severity: Severity::Warn,
            message: message.into(),
        }
    }

    /// `pass` or `fail` depending on `ok`.
    pub fn check(check: impl Into<String>, ok: bool, message: impl Into<String>) -> Self {
        if ok {
            Self::pass(check, message)
        } else {
            Self::fail(check, message)
        }
    }

    /// Whether this finding vetoes the commit.
    pub fn vetoes(&self) -> bool {
        !self.passed && self.severity == Severity::Error
    }
}
