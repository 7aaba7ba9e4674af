//! The run report: `report.json`, `summary.txt`, `rejects.csv` and `report.html` ([`html`])
//! in `--report-dir`.

pub mod html;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::reject::{REJECTS_CSV_HEADER, reject_csv_line_guarded};
use crate::{Error, Finding, Reject, Result, RunTotals, UnitSummary};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Everything loaded and every gate passed.
    Succeeded,
    /// An error or a failed gate; production untouched.
    Failed,
    /// Nothing was written.
    DryRun,
    /// A rollback restored the previous state.
    RolledBack,
}

impl RunStatus {
    /// The lowercase name used in reports and ledgers.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::DryRun => "dry_run",
            RunStatus::RolledBack => "rolled_back",
        }
    }
}

/// Everything a run did, as written to `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// Migration name.
    pub migration: String,
    /// Run id.
    pub run_id: String,
    /// How it ended.
    pub status: RunStatus,
    /// The error that stopped it, if any.
    pub error: Option<String>,
    /// Totals over all units.
    pub totals: RunTotals,
    /// One line per unit.
    pub units: Vec<UnitReport>,
    /// Results of every validation check.
    pub validation: Vec<Finding>,
    /// Start time (UTC).
    pub started_at: DateTime<Utc>,
    /// End time (UTC).
    pub finished_at: DateTime<Utc>,
    /// Wall seconds.
    pub duration_s: f64,
    /// Records read per second of wall time.
    pub rows_per_s: f64,
    /// Migration-specific figures (unmatched taxa, match rate, switchover, ...).
    #[serde(default)]
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// The steps of a whole migration ([`crate::migration`]), with states and timings;
    /// empty for a lone pipeline.
    #[serde(default)]
    pub steps: Vec<crate::migration::StepReport>,
    /// What the invocation did (`run`, `resume`, `rollback`, `dry_run`, `only`).
    #[serde(default)]
    pub action: Option<String>,
    /// The run's state in the journal after this invocation (`done`, `stopped`, ...).
    #[serde(default)]
    pub run_state: Option<String>,
    /// Where the run journal is.
    #[serde(default)]
    pub journal: Option<String>,
    /// What the run wrote to (redacted: no password).
    #[serde(default)]
    pub target: Option<String>,
    /// The files of the run in the report directory (`report.json`, `summary.txt`,
    /// `rejects.csv` and the migration's own).
    #[serde(default)]
    pub files: Vec<String>,
}

/// One unit's line in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitReport {
    /// Unit name.
    pub name: String,
    /// Records read.
    pub read: u64,
    /// Rows loaded.
    pub loaded: u64,
    /// Records rejected.
    pub rejected: u64,
    /// Records filtered.
    pub filtered: u64,
    /// `completed`, `resumed`, `failed`, ...
    pub status: crate::UnitStatus,
    /// Seconds spent.
    pub duration_s: f64,
    /// Rejects by kind.
    pub rejected_by_reason: crate::batch::Counts,
    /// Filtered by reason.
    pub filtered_by_reason: crate::batch::Counts,
    /// Stage counters.
    pub counters: crate::batch::Counts,
    /// The unit's error, if any.
    pub error: Option<String>,
    /// Times the unit was retried after a retryable error.
    #[serde(default)]
    pub retries: u32,
}

impl From<&UnitSummary> for UnitReport {
    fn from(u: &UnitSummary) -> Self {
        UnitReport {
            name: u.name.clone(),
            read: u.read,
            loaded: u.loaded,
            rejected: u.rejected,
            filtered: u.filtered,
            status: u.status,
            duration_s: u.duration_s,
            rejected_by_reason: u.rejected_by_reason.clone(),
            filtered_by_reason: u.filtered_by_reason.clone(),
            counters: u.counters.clone(),
            error: u.error.clone(),
            retries: u.retries,
        }
    }
}

impl RunReport {
    /// Build a report from the ledger lines.
    pub fn new(
        migration: &str,
        run_id: &str,
        status: RunStatus,
        units: &[UnitSummary],
        started_at: DateTime<Utc>,
    ) -> Self {
        let finished_at = Utc::now();
        let duration_s = (finished_at - started_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
        let totals = RunTotals::from_units(units);
        let rows_per_s = if duration_s > 0.0 {
            totals.read as f64 / duration_s
        } else {
            0.0
        };
        RunReport {
            migration: migration.to_owned(),
            run_id: run_id.to_owned(),
            status,
            error: None,
            totals,
            units: units.iter().map(UnitReport::from).collect(),
            validation: Vec::new(),
            started_at,
            finished_at,
            duration_s,
            rows_per_s,
            extra: serde_json::Map::new(),
            steps: Vec::new(),
            action: None,
            run_state: None,
            journal: None,
            target: None,
            files: Vec::new(),
        }
    }

    /// Replace the units (e.g. those of several pipelines, one per type, making one
    /// migration) and recompute the totals and rows/s from them.
    pub fn set_units(&mut self, units: Vec<UnitReport>) {
        let mut t = RunTotals::default();
        for u in &units {
            t.add(
                [u.read, u.loaded, u.rejected, u.filtered],
                &u.rejected_by_reason,
                &u.filtered_by_reason,
                &u.counters,
            );
        }
        self.totals = t;
        self.units = units;
        self.rows_per_s = if self.duration_s > 0.0 {
            self.totals.read as f64 / self.duration_s
        } else {
            0.0
        };
    }

    /// Whether the run succeeded.
    pub fn succeeded(&self) -> bool {
        self.status == RunStatus::Succeeded
    }

    /// The human summary (`summary.txt`).
    pub fn summary_text(&self) -> String {
        let mut s = String::new();
        let t = &self.totals;
        let _ = writeln!(s, "migration   {}", self.migration);
        let _ = writeln!(s, "run         {}", self.run_id);
        let _ = writeln!(s, "status      {}", self.status.as_str());
        if let Some(e) = &self.error {
            let _ = writeln!(s, "error       {e}");
        }
        if let Some(t) = &self.target {
            let _ = writeln!(s, "target      {t}");
        }
        let _ = writeln!(
            s,
            "started     {}\nfinished    {}\nduration    {:.1} s ({:.0} rows/s)",
            self.started_at.to_rfc3339(),
            self.finished_at.to_rfc3339(),
            self.duration_s,
            self.rows_per_s
        );
        let _ = writeln!(
            s,
            "\nread {}  =  loaded {}  +  rejected {}  +  filtered {}   [{}]",
            t.read,
            t.loaded,
            t.rejected,
            t.filtered,
            if t.reconciles() {
                "reconciles"
            } else {
                "DOES NOT RECONCILE"
            }
        );
        if !t.rejected_by_reason.is_empty() {
            let _ = writeln!(s, "\nrejected by reason:");
            for (k, v) in &t.rejected_by_reason {
                let _ = writeln!(s, "  {v:>10}  {k}");
            }
        }
        if !t.filtered_by_reason.is_empty() {
            let _ = writeln!(s, "\nfiltered by reason:");
            for (k, v) in &t.filtered_by_reason {
                let _ = writeln!(s, "  {v:>10}  {k}");
            }
        }
        if !self.units.is_empty() {
            let _ = writeln!(
                s,
                "\n{:<32} {:>10} {:>10} {:>9} {:>9} {:>9} {:>8}",
                "unit", "read", "loaded", "rejected", "filtered", "status", "secs"
            );
            for u in &self.units {
                let status = serde_json::to_value(u.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let _ = writeln!(
                    s,
                    "{:<32} {:>10} {:>10} {:>9} {:>9} {:>9} {:>8.2}",
                    u.name, u.read, u.loaded, u.rejected, u.filtered, status, u.duration_s
                );
            }
        }
        if !self.steps.is_empty() {
            let _ = writeln!(
                s,
                "\n{:>3}  {:<24} {:<12} {:<12} {:>8}  note",
                "#", "step", "kind", "outcome", "secs"
            );
            for st in &self.steps {
                let note = st.error.as_deref().unwrap_or(&st.message);
                let _ = writeln!(
                    s,
                    "{:>3}  {:<24} {:<12} {:<12} {:>8}  {}",
                    st.position,
                    st.name,
                    st.kind.as_str(),
                    st.outcome,
                    st.seconds
                        .filter(|_| st.outcome == "ran"
                            || st.outcome == "failed"
                            || st.outcome == "rolled_back")
                        .map(|x| format!("{x:.2}"))
                        .unwrap_or_default(),
                    note
                );
            }
        }
        if !self.validation.is_empty() {
            let _ = writeln!(s, "\nvalidation:");
            for f in &self.validation {
                let mark = if f.passed {
                    "ok  "
                } else if f.vetoes() {
                    "FAIL"
                } else {
                    "warn"
                };
                let _ = writeln!(s, "  [{mark}] {:<28} {}", f.check, f.message);
            }
        }
        for (k, v) in &self.extra {
            if let Some(text) = v.as_str() {
                let _ = writeln!(s, "\n{k}: {text}");
            }
        }
        s
    }

    /// Write `report.json` and `summary.txt` into `dir` (atomically: temp file then rename),
    /// merge the spooled rejects into `rejects.csv` if `rejects` is given, then write
    /// `report.html` ([`html::render_html`], with a few examples from `rejects.csv`; owner-only,
    /// as it shows rejected records).
    pub fn write(&self, dir: &Path, rejects: Option<&RejectSpool>) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::Config(format!("cannot serialize report: {e}")))?;
        write_atomic(&dir.join("report.json"), &json)?;
        write_atomic(&dir.join("summary.txt"), self.summary_text().as_bytes())?;
        match rejects {
            Some(spool) => {
                let names: Vec<&str> = self.units.iter().map(|u| u.name.as_str()).collect();
                spool.merge_into(&dir.join("rejects.csv"), &names)?;
            }
            None => {
                let path = dir.join("rejects.csv");
                if !path.exists() {
                    write_atomic(&path, REJECTS_CSV_HEADER.as_bytes())?;
                }
            }
        }
        let examples = html::reject_examples(&dir.join("rejects.csv"), 3, 30).unwrap_or_default();
        let page = html::render_html(self, &examples);
        write_private_atomic(&dir.join("report.html"), page.as_bytes())
    }
}

/// Create (or truncate) `path` readable and writable by its owner only (mode 0600 on
/// Unix): for files that hold personal data or secrets (rejected rows, rollback scripts
/// with before-images, backups).
///
/// # Errors
/// The file cannot be created.
pub fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        o.mode(0o600);
        let f = o.open(path)?;
        // An existing file keeps its mode through `open`: set it.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        Ok(f)
    }
    #[cfg(not(unix))]
    o.open(path)
}

/// [`create_private`] and write `bytes`.
///
/// # Errors
/// The file cannot be written.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    create_private(path)?.write_all(bytes)
}

/// [`write_private`], atomically: an owner-only temp file beside `path`, written and
/// fsynced, then renamed over it; a failed write (a full disk) leaves `path` as it was.
///
/// # Errors
/// The temp file cannot be written or renamed (the error names it).
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_via_temp(path, bytes, create_private)
}

/// Write a file atomically: write a temp file beside it, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_via_temp(path, bytes, |p| std::fs::File::create(p))
}

/// `bytes` into a temp file beside `path` made by `create`, fsynced, renamed over `path`;
/// a failed write removes the temp file.
fn write_via_temp(
    path: &Path,
    bytes: &[u8],
    create: impl Fn(&Path) -> std::io::Result<std::fs::File>,
) -> Result<()> {
    let tmp = path.with_extension("tmp~");
    let written = create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(tmp.display(), e));
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path.display(), e))
}

/// Rejects spooled to disk per unit, so memory stays flat and a resumed run still has the
/// rejects of the units an earlier attempt committed.
///
/// Each unit writes `DIR/rejects/<unit>.csv.part`; [`RejectSpool::seal`] (called right
/// after the unit's commit) renames it to `<unit>.csv`. A resumed run promotes a leftover
/// `.part` of a unit the sink says is complete (a crash between commit and rename).
#[derive(Debug, Clone)]
pub struct RejectSpool {
    dir: PathBuf,
    guard_formulas: bool,
}

/// The open spool file of one unit.
#[derive(Debug)]
pub struct UnitSpool {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    buf: String,
    guard_formulas: bool,
}

impl RejectSpool {
    /// A spool under `report_dir/rejects/`.
    pub fn new(report_dir: &Path) -> Result<Self> {
        let dir = report_dir.join("rejects");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
        Ok(RejectSpool {
            dir,
            guard_formulas: false,
        })
    }

    /// Write text fields a spreadsheet would run as formulas with a `'` in front
    /// ([`crate::reject::reject_csv_line_guarded`]).
    pub fn guard_formulas(mut self, on: bool) -> Self {
        self.guard_formulas = on;
        self
    }

    fn file_name(unit: &str) -> String {
        unit.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }

    fn sealed(&self, unit: &str) -> PathBuf {
        self.dir.join(format!("{}.csv", Self::file_name(unit)))
    }

    fn part(&self, unit: &str) -> PathBuf {
        self.dir.join(format!("{}.csv.part", Self::file_name(unit)))
    }

    /// Start (or restart) the spool of a unit.
    pub fn open(&self, unit: &str) -> Result<UnitSpool> {
        let path = self.part(unit);
        let file = create_private(&path).map_err(|e| Error::io(path.display(), e))?;
        Ok(UnitSpool {
            path,
            file: std::io::BufWriter::new(file),
            buf: String::new(),
            guard_formulas: self.guard_formulas,
        })
    }

    /// The unit committed: keep its rejects.
    pub fn seal(&self, unit: &str) -> Result<()> {
        let part = self.part(unit);
        if part.exists() {
            std::fs::rename(&part, self.sealed(unit)).map_err(|e| Error::io(part.display(), e))?;
        }
        Ok(())
    }

    /// Forget a unit's spooled rejects (a fresh, non-resumed run).
    pub fn clear(&self) -> Result<()> {
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(())
    }

    /// Forget the spooled rejects of these units only (a fresh run of one pipeline of a
    /// migration that has several: the others' rejects stay).
    pub fn clear_units<'a>(&self, units: impl IntoIterator<Item = &'a str>) {
        for u in units {
            let _ = std::fs::remove_file(self.sealed(u));
            let _ = std::fs::remove_file(self.part(u));
        }
    }

    /// Concatenate the sealed spools of `units` (in that order) into `path`.
    pub fn merge_into(&self, path: &Path, units: &[&str]) -> Result<()> {
        let tmp = path.with_extension("tmp~");
        let out = create_private(&tmp).map_err(|e| Error::io(tmp.display(), e))?;
        let mut out = std::io::BufWriter::new(out);
        out.write_all(REJECTS_CSV_HEADER.as_bytes())
            .map_err(|e| Error::io(tmp.display(), e))?;
        for unit in units {
            let p = self.sealed(unit);
            if let Ok(mut f) = std::fs::File::open(&p) {
                std::io::copy(&mut f, &mut out).map_err(|e| Error::io(p.display(), e))?;
            }
        }
        out.flush().map_err(|e| Error::io(tmp.display(), e))?;
        drop(out);
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path.display(), e))
    }
}

impl UnitSpool {
    /// Append rejects.
    pub fn append(&mut self, rejects: &[Reject]) -> Result<()> {
        self.buf.clear();
        for r in rejects {
            reject_csv_line_guarded(&mut self.buf, r, self.guard_formulas);
        }
        self.file
            .write_all(self.buf.as_bytes())
            .map_err(|e| Error::io(self.path.display(), e))
    }

    /// Flush and fsync, before the unit commits.
    pub fn sync(&mut self) -> Result<()> {
        self.file
            .flush()
            .and_then(|_| self.file.get_ref().sync_data())
            .map_err(|e| Error::io(self.path.display(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guarded_spool_writes_formulas_as_text_and_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let spool = RejectSpool::new(dir.path()).unwrap().guard_formulas(true);
        let mut unit = spool.open("u.csv").unwrap();
        let r = Reject::new("u.csv".into(), 2, None, "bad", "why", "=cmd|' /C calc'!A0");
        unit.append(&[r]).unwrap();
        unit.sync().unwrap();
        drop(unit);
        spool.seal("u.csv").unwrap();
        let out = dir.path().join("rejects.csv");
        spool.merge_into(&out, &["u.csv"]).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.ends_with(",'=cmd|' /C calc'!A0\n"), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&out).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
