//! Aggregate gates over the run's totals.

use etl_core::{Finding, Result, RunTotals, Validate};
use futures::future::BoxFuture;

/// Fails the run when more than `max` (a fraction, e.g. `0.01`) of the records read were
/// rejected.
#[derive(Debug, Clone)]
pub struct RejectRate {
    /// Largest acceptable `rejected / read`.
    pub max: f64,
}

impl Validate for RejectRate {
    fn name(&self) -> &str {
        "reject_rate"
    }
    fn finish<'a>(&'a self, t: &'a RunTotals) -> BoxFuture<'a, Result<Vec<Finding>>> {
        Box::pin(async move {
            let rate = if t.read == 0 {
                0.0
            } else {
                t.rejected as f64 / t.read as f64
            };
            Ok(vec![Finding::check(
                "reject_rate",
                rate <= self.max,
                format!(
                    "{} of {} records rejected ({:.3}%, maximum {:.3}%)",
                    t.rejected,
                    t.read,
                    rate * 100.0,
                    self.max * 100.0
                ),
            )])
        })
    }
}

/// Fails the run when a lookup matched less than `min` of the rows that reached it:
/// `matched / (matched + unmatched)`, where `matched` is the counter `matched_counter`
/// and `unmatched` the rows filtered with reason `unmatched_reason`.
#[derive(Debug, Clone)]
pub struct MatchRate {
    /// Check name in the report (`species_match_rate`).
    pub name: String,
    /// Counter of matched rows (`species_matched`).
    pub matched_counter: String,
    /// Filter reason of unmatched rows (`unmatched species`).
    pub unmatched_reason: String,
    /// Smallest acceptable rate (e.g. `0.95`).
    pub min: f64,
}

impl MatchRate {
    /// The rate for `totals` (1.0 when nothing reached the lookup).
    pub fn rate(&self, t: &RunTotals) -> (u64, u64, f64) {
        let matched = t.counters.get(&self.matched_counter).copied().unwrap_or(0);
        let unmatched = t
            .filtered_by_reason
            .get(&self.unmatched_reason)
            .copied()
            .unwrap_or(0);
        let total = matched + unmatched;
        let rate = if total == 0 {
            1.0
        } else {
            matched as f64 / total as f64
        };
        (matched, unmatched, rate)
    }
}

impl Validate for MatchRate {
    fn name(&self) -> &str {
        &self.name
    }
    fn finish<'a>(&'a self, t: &'a RunTotals) -> BoxFuture<'a, Result<Vec<Finding>>> {
        Box::pin(async move {
            let (matched, unmatched, rate) = self.rate(t);
            Ok(vec![Finding::check(
                self.name.clone(),
                rate >= self.min,
                format!(
                    "{matched} matched, {unmatched} unmatched: {:.2}% (minimum {:.2}%)",
                    rate * 100.0,
                    self.min * 100.0
                ),
            )])
        })
    }
}
