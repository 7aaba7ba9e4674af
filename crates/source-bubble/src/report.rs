//! The report files of a Bubble migration's run, beside the run layer's `report.json`: per
//! type what its `load_<type>` pipeline read, loaded, rejected and filtered ([`TypeTotals`]),
//! which run's export each type was loaded from ([`export_sources`]), the gate's checks and
//! the run's own figures, written as a JSON document and a text summary
//! ([`write_run_report`], [`summary_text`]).

use std::collections::BTreeMap;
use std::path::Path;

use chrono::Utc;
use etl_core::migration::StepCx;
use etl_core::{BoxError, Finding};
use serde_json::{Map, Value, json};

use crate::export::export_run_of;

/// The figures of the `load_<type>` pipelines of a run.
#[derive(Debug, Clone, Default)]
pub struct TypeTotals {
    /// Per type that was loaded: `read`, `loaded`, `rejected`, `filtered`,
    /// `rejected_by_reason` and `counters`.
    pub per_type: Map<String, Value>,
    /// The transforms' counters summed over the types.
    pub counters: BTreeMap<String, u64>,
}

impl TypeTotals {
    /// The totals of the steps `load_<type>` of `types` that ran a pipeline in this run.
    pub fn of<'a>(cx: &StepCx, types: impl IntoIterator<Item = &'a str>) -> Self {
        let mut out = TypeTotals::default();
        for t in types {
            let Some(p) = cx.pipeline_of(&format!("load_{t}")) else {
                continue;
            };
            let tt = &p.totals;
            out.per_type.insert(t.to_owned(), json!({"read": tt.read, "loaded": tt.loaded, "rejected": tt.rejected, "filtered": tt.filtered,
                "rejected_by_reason": tt.rejected_by_reason, "counters": tt.counters}));
            for (k, v) in &tt.counters {
                *out.counters.entry(k.clone()).or_default() += v;
            }
        }
        out
    }

    /// The summed counter `k` (0 when no transform counted it).
    pub fn counter(&self, k: &str) -> u64 {
        self.counters.get(k).copied().unwrap_or(0)
    }
}

/// `(export_runs, export_from)`: per type the run whose export file its load read
/// ([`export_run_of`]), and, when all are one run's, `{"run_id", "reused"}` (`reused`:
/// another run's files were taken, `--skip-export`), else null.
pub fn export_sources<'a>(
    cx: &StepCx,
    types: impl IntoIterator<Item = &'a str>,
    reused: bool,
) -> (Value, Value) {
    let runs: Map<String, Value> = types
        .into_iter()
        .filter_map(|t| export_run_of(cx, t).map(|r| (t.to_owned(), json!(r))))
        .collect();
    let mut from: Vec<&Value> = runs.values().collect();
    from.dedup();
    let export_from = match from.as_slice() {
        [run] => json!({"run_id": run, "reused": reused}),
        _ => Value::Null,
    };
    (Value::Object(runs), export_from)
}

/// The findings a step recorded in its details under `findings` (a gate's checks).
pub fn findings_of(cx: &StepCx, step: &str) -> Vec<Finding> {
    cx.details_of(step)
        .and_then(|d| serde_json::from_value(d["findings"].clone()).ok())
        .unwrap_or_default()
}

/// The text summary: `title`, the run, a table of the types' figures, a line per check
/// (`ok`, `FAILED` when it vetoes, `warn`) and a line per figure of `extra` that is not
/// null (but `per_type`, which is the table).
pub fn summary_text(
    title: &str,
    run_id: &str,
    dry_run: bool,
    totals: &TypeTotals,
    checks: &[Finding],
    extra: &Map<String, Value>,
) -> String {
    let dry = match dry_run {
        true => " (dry run: nothing was written to the target database)",
        false => "",
    };
    let mut s = format!(
        "{title}, run {run_id}{dry}\n\n{:<16} {:>8} {:>8} {:>9} {:>9}\n",
        "type", "read", "loaded", "rejected", "filtered"
    );
    for (t, v) in &totals.per_type {
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        let (r, l, j, f) = (n("read"), n("loaded"), n("rejected"), n("filtered"));
        s.push_str(&format!("{t:<16} {r:>8} {l:>8} {j:>9} {f:>9}\n"));
    }
    s.push('\n');
    for f in checks {
        let state = match (f.passed, f.vetoes()) {
            (true, _) => "ok",
            (false, true) => "FAILED",
            (false, false) => "warn",
        };
        s.push_str(&format!("{state:<6} {}: {}\n", f.check, f.message));
    }
    for (k, v) in extra {
        if k != "per_type" && !v.is_null() {
            s.push_str(&format!("{k}: {v}\n"));
        }
    }
    s
}

/// Write the run's JSON document to `json_path` (`migration`, `run_id`, `dry_run`,
/// `written_at`, `checks`, `per_type` and every figure of `extra`) and its
/// [`summary_text`] to `summary_path`; `per_type` and `extra` also go into the run
/// layer's `report.json` ([`StepCx::set_extra`]).
///
/// # Errors
/// A file cannot be written.
pub fn write_run_report(
    cx: &StepCx,
    title: &str,
    totals: &TypeTotals,
    checks: &[Finding],
    extra: Map<String, Value>,
    json_path: &Path,
    summary_path: &Path,
) -> Result<(), BoxError> {
    let mut all = Map::new();
    all.insert("per_type".into(), Value::Object(totals.per_type.clone()));
    all.extend(extra);
    let mut doc = json!({"migration": cx.migration, "run_id": cx.run_id, "dry_run": cx.dry_run,
        "written_at": Utc::now(), "checks": checks});
    for (k, v) in &all {
        cx.set_extra(k.clone(), v.clone());
        doc[k] = v.clone();
    }
    let run = cx.run_id.to_string();
    let summary = summary_text(title, &run, cx.dry_run, totals, checks, &all);
    std::fs::write(json_path, serde_json::to_vec_pretty(&doc)?)?;
    std::fs::write(summary_path, summary)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_has_the_types_table_the_checks_and_the_figures() {
        let mut totals = TypeTotals::default();
        let user = json!({"read": 10, "loaded": 8, "rejected": 1, "filtered": 1});
        totals.per_type.insert("user".into(), user);
        let checks = [
            Finding::check("count_users", true, "8 rows"),
            Finding::check("fk", false, "2 orphans"),
        ];
        let mut extra = Map::new();
        extra.insert("per_type".into(), json!({}));
        extra.insert("since".into(), Value::Null);
        extra.insert("passwords_hashed".into(), json!(3));
        let s = summary_text("X migration", "r1", true, &totals, &checks, &extra);
        assert!(
            s.starts_with("X migration, run r1 (dry run: nothing was written"),
            "{s}"
        );
        assert!(
            s.contains("user                   10        8         1         1\n"),
            "{s}"
        );
        assert!(s.contains("ok     count_users: 8 rows\n"), "{s}");
        assert!(s.contains("FAILED fk: 2 orphans\n"), "{s}");
        assert!(s.contains("passwords_hashed: 3\n"), "{s}");
        assert!(!s.contains("since") && !s.contains("per_type"), "{s}");
        let s = summary_text("X", "r2", false, &TypeTotals::default(), &[], &Map::new());
        assert_eq!(s.lines().next(), Some("X, run r2"));
    }

    #[test]
    fn counters_default_to_zero() {
        let mut t = TypeTotals::default();
        t.counters.insert("parent_rejected".into(), 4);
        assert_eq!((t.counter("parent_rejected"), t.counter("other")), (4, 0));
    }
}
