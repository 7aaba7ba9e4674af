//! The export steps of a migration off Bubble, on the run layer ([`etl_core::migration`]):
//! each type goes from the Data API into `<dir>/<type>.parquet` and `.csv` (lossless text)
//! through an ordinary pipeline ([`BubbleExtract`] `.raw(true)` into
//! [`etl_parquet::ExportLoad`]), and `<type>.export.json` beside it records the run that
//! wrote it, whether that was a dry run, and the Parquet file's size, time and SHA-256.
//! With that record the steps that read the files trust them only when they should:
//!
//! * [`export_step`]: exports one type (or, with `reuse`, verifies and reuses the file
//!   an earlier run exported) and returns the step's output: figures ([`ExportFigures`])
//!   and `export_run`, the run whose file the later steps read ([`export_run_of`]);
//! * [`own_export`]: a load refuses a file another run wrote since the export step (a dry
//!   run, say, while this one was interrupted);
//! * [`api_totals`]: a full export holds every thing the Data API counts;
//! * [`check_exports`]: before anything runs, `--resume` continues only over the files its
//!   own run wrote, and a reuse (`--skip-export`) never takes a dry run's export, the files
//!   of several runs, or a file changed since it was written.
//!
//! Refusals are [`etl_core::Error::Refused`].

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use chrono::{DateTime, Utc};
use etl_core::migration::{Action, Journal, StepCx, StepOutput, StepState};
use etl_core::{BoxError, Pipeline};
use etl_parquet::{ExportLoad, parquet_path};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Digest as _;
use uuid::Uuid;

use crate::{BubbleClient, BubbleExtract, TypeSchema};

/// A file's size, modification time (nanoseconds since the Unix epoch) and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    /// Bytes.
    pub size: u64,
    /// Modification time.
    pub modified_ns: i128,
    /// SHA-256 of the content, hex.
    pub sha256: String,
}

fn times(path: &Path) -> std::io::Result<(u64, i128)> {
    let meta = std::fs::metadata(path)?;
    let since = meta.modified()?.duration_since(std::time::UNIX_EPOCH);
    Ok((meta.len(), since.map_or(0, |d| d.as_nanos() as i128)))
}

impl FileStamp {
    /// The stamp of the file at `path` (read once).
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn of(path: &Path) -> std::io::Result<Self> {
        let (size, modified_ns) = times(path)?;
        let (mut f, mut h) = (std::fs::File::open(path)?, sha2::Sha256::new());
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match f.read(&mut buf)? {
                0 => break,
                n => h.update(&buf[..n]),
            }
        }
        let sha256 = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok(FileStamp {
            size,
            modified_ns,
            sha256,
        })
    }
}

/// The record of one export file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRecord {
    /// The Bubble type.
    #[serde(rename = "type")]
    pub ty: String,
    /// The run that wrote it.
    pub run_id: Uuid,
    /// Whether that run was a dry run.
    pub dry_run: bool,
    /// When.
    pub written_at: DateTime<Utc>,
    /// The Parquet file as it was written.
    pub parquet: FileStamp,
}

impl ExportRecord {
    /// `run <id> at <time>` or `dry run <id> at <time>`.
    pub fn writer(&self) -> String {
        let dry = if self.dry_run { "dry run" } else { "run" };
        format!("{dry} {} at {}", self.run_id, self.written_at.to_rfc3339())
    }
}

/// `<dir>/<type>.export.json`.
pub fn record_path(dir: &Path, ty: &str) -> PathBuf {
    dir.join(format!("{ty}.export.json"))
}

/// Record that `run_id` wrote `<dir>/<type>.parquet` as it is now.
///
/// # Errors
/// The file cannot be read or the record written.
pub fn record(dir: &Path, ty: &str, run_id: Uuid, dry_run: bool) -> Result<ExportRecord, BoxError> {
    let parquet = FileStamp::of(&parquet_path(dir, ty))?;
    let written_at = Utc::now();
    let r = ExportRecord {
        ty: ty.to_owned(),
        run_id,
        dry_run,
        written_at,
        parquet,
    };
    etl_core::report::write_atomic(&record_path(dir, ty), &serde_json::to_vec_pretty(&r)?)?;
    Ok(r)
}

fn refused(msg: String) -> BoxError {
    Box::new(etl_core::Error::Refused(msg))
}

/// The record of `<dir>/<type>.parquet`, refused (`what` says who asks) when there is
/// none or when the file's content changed since it was written. `hash`: always compare
/// the content (else only when the size or time differ from the record's).
///
/// # Errors
/// [`etl_core::Error::Refused`] as above; the files cannot be read.
pub fn verified(dir: &Path, ty: &str, what: &str, hash: bool) -> Result<ExportRecord, BoxError> {
    let (p, rp) = (parquet_path(dir, ty), record_path(dir, ty));
    let refuse = |why: String| {
        refused(format!(
            "{what}: {} (Bubble type `{ty}`) {why}",
            p.display()
        ))
    };
    if !p.exists() {
        return Err(refuse("is missing; run once without --skip-export".into()));
    }
    let bytes = std::fs::read(&rp).map_err(|_| {
        refuse(format!("has no record of the run that wrote it ({} is missing); export again without --skip-export", rp.display()))
    })?;
    let r: ExportRecord = serde_json::from_slice(&bytes)
        .map_err(|e| refuse(format!("has an unreadable record {}: {e}", rp.display())))?;
    let same_times = !hash && times(&p)? == (r.parquet.size, r.parquet.modified_ns);
    if !same_times {
        let now = FileStamp::of(&p)?;
        if now.size != r.parquet.size || now.sha256 != r.parquet.sha256 {
            let how = format!(
                "{} -> {} bytes, SHA-256 {:.12} -> {:.12}",
                r.parquet.size, now.size, r.parquet.sha256, now.sha256
            );
            return Err(refuse(format!(
                "changed since {} wrote it ({how}); export again without --skip-export",
                r.writer()
            )));
        }
    }
    Ok(r)
}

/// Figures of one export step, or of several added up.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct ExportFigures {
    /// Things exported.
    pub records: u64,
    /// Wall seconds.
    pub seconds: f64,
    /// HTTP requests sent.
    pub requests: u64,
    /// 429/503 answers received.
    pub throttled: u64,
}

impl ExportFigures {
    /// The sum of the figures in the details of export steps (`None` when none exported).
    pub fn sum(details: impl Iterator<Item = serde_json::Value>) -> Option<Self> {
        details
            .filter_map(|d| serde_json::from_value::<ExportFigures>(d).ok())
            .reduce(|a, b| ExportFigures {
                records: a.records + b.records,
                seconds: a.seconds + b.seconds,
                requests: a.requests + b.requests,
                throttled: a.throttled + b.throttled,
            })
    }
}

/// What an export step reads and where it writes.
pub struct ExportSpec<'a> {
    /// The client (its request rate is shared by every step using it).
    pub client: &'a Arc<BubbleClient>,
    /// The declared schema of the type.
    pub schema: &'a TypeSchema,
    /// The export directory.
    pub dir: &'a Path,
    /// Concurrent `Created Date` windows.
    pub windows: usize,
    /// Only things modified after this.
    pub since: Option<DateTime<Utc>>,
    /// Things per batch (the export's memory is windows x this).
    pub batch_size: usize,
}

/// The export step of one type (see the module docs); with `reuse`, the file of an
/// earlier run is verified and reused instead (`--skip-export`). The files are artifacts,
/// not the target: a dry run writes them too, and records that it did.
///
/// # Errors
/// The export failed (after the client's retries); a reused file is refused.
pub async fn export_step(
    s: &ExportSpec<'_>,
    cx: &StepCx,
    reuse: bool,
) -> Result<StepOutput, BoxError> {
    let (ty, dir) = (s.schema.bubble_type.as_str(), s.dir);
    if reuse {
        let r = verified(dir, ty, "--skip-export", false)?;
        let msg = format!(
            "--skip-export: {} reused, exported by {}",
            parquet_path(dir, ty).display(),
            r.writer()
        );
        let details =
            json!({ "skipped": true, "export_run": r.run_id, "exported_at": r.written_at });
        return Ok(StepOutput::message(msg).with_details(details));
    }
    let stats = s.client.stats();
    let (r0, th0, t0) = (
        stats.requests.load(Ordering::Relaxed),
        stats.throttled.load(Ordering::Relaxed),
        Instant::now(),
    );
    let e = BubbleExtract::new(s.client.clone(), s.schema.clone())
        .raw(true)
        .windows(s.windows)
        .since(s.since);
    let mut run = cx.run_info();
    run.dry_run = false;
    let mut opts = cx.pipeline_options(s.batch_size, s.windows);
    opts.report_dir = None;
    let report = Pipeline::new(e, ExportLoad::new(dir, ty).with_csv())
        .options(opts)
        .run(&run)
        .await;
    if !report.succeeded() {
        return Err(format!(
            "export of Bubble type `{ty}` failed: {}",
            report.error.unwrap_or_default()
        )
        .into());
    }
    record(dir, ty, cx.run_id, cx.dry_run)?;
    let f = ExportFigures {
        records: report.totals.loaded,
        seconds: t0.elapsed().as_secs_f64(),
        requests: stats.requests.load(Ordering::Relaxed) - r0,
        throttled: stats.throttled.load(Ordering::Relaxed) - th0,
    };
    let mut details = json!(f);
    details["export_run"] = json!(cx.run_id);
    let msg = format!(
        "{} things in {:.1} s ({} requests, {} throttled)",
        f.records, f.seconds, f.requests, f.throttled
    );
    Ok(StepOutput::message(msg).with_details(details))
}

/// The run whose export of `ty` this run uses (its own, or the one reused), from the
/// details of the step `export_<ty>`.
pub fn export_run_of(cx: &StepCx, ty: &str) -> Option<Uuid> {
    cx.details_of(&format!("export_{ty}"))
        .and_then(|d| serde_json::from_value(d["export_run"].clone()).ok())
}

/// Findings `api_total_<type>`: the things of each type a full export read (`(type,
/// read)`) against the things the Data API counts (`count + remaining` of a one-thing
/// page). An incremental export holds only what changed: do not compare it.
///
/// # Errors
/// A request that fails after the client's retries.
pub async fn api_totals(
    client: &BubbleClient,
    exported: impl IntoIterator<Item = (&str, u64)>,
) -> Result<Vec<etl_core::Finding>, BoxError> {
    let one = crate::PageQuery {
        limit: 1,
        ..Default::default()
    };
    let mut findings = Vec::new();
    for (ty, read) in exported {
        let p = client.fetch_page(ty, &one, 0).await?;
        let n = p.count + p.remaining;
        findings.push(etl_core::Finding::check(
            format!("api_total_{ty}"),
            read == n,
            format!("{read} `{ty}` things exported; the Data API counts {n}"),
        ));
    }
    Ok(findings)
}

/// Refuse to read an export file another run wrote since this run's step `export_<ty>`.
///
/// # Errors
/// [`etl_core::Error::Refused`]; the files cannot be read.
pub fn own_export(cx: &StepCx, dir: &Path, ty: &str) -> Result<(), BoxError> {
    let r = verified(dir, ty, "load", false)?;
    let want = export_run_of(cx, ty).unwrap_or(cx.run_id);
    if r.run_id != want {
        let p = parquet_path(dir, ty);
        return Err(refused(format!(
            "{} (Bubble type `{ty}`) was written by {}, not by run {want} whose export this run loads",
            p.display(),
            r.writer()
        )));
    }
    Ok(())
}

/// Before migration `migration` runs with `action`: a resume continues only over the
/// export files of `types` its own run wrote (or reused), and with `reuse` the files
/// must be one earlier real run's, unchanged (content hashed). Rollbacks and `--only`
/// read no export.
///
/// # Errors
/// [`etl_core::Error::Refused`]; the journal or the files cannot be read.
pub async fn check_exports(
    journal: &dyn Journal,
    migration: &str,
    action: &Action,
    dir: &Path,
    types: &[&str],
    reuse: bool,
) -> Result<(), BoxError> {
    let latest = match action {
        Action::Resume | Action::Continue(_) => journal.latest(migration).await?,
        Action::Run | Action::DryRun => None,
        Action::Rollback | Action::Only(_) | Action::Group { .. } => return Ok(()),
    };
    let mut reused: Vec<ExportRecord> = Vec::new();
    for ty in types {
        let done = latest
            .as_ref()
            .and_then(|r| r.step(&format!("export_{ty}")).map(|s| (r, s)));
        if let Some((r, s)) = done.filter(|(_, s)| s.state == StepState::Done) {
            let want: Uuid =
                serde_json::from_value(s.details["export_run"].clone()).unwrap_or(r.run.run_id);
            let got = verified(dir, ty, "--resume", true)?;
            if got.run_id != want {
                return Err(refused(format!(
                    "--resume: {} (Bubble type `{ty}`) was written by {}, not by run {want} that is resumed: \
                     the run would load another run's export; start a new run without --resume, or --rollback this one",
                    parquet_path(dir, ty).display(),
                    got.writer()
                )));
            }
        } else if reuse {
            let got = verified(dir, ty, "--skip-export", true)?;
            if got.dry_run && *action != Action::DryRun {
                return Err(refused(format!(
                    "--skip-export: {} (Bubble type `{ty}`) was written by {}: a dry run's export is never loaded; export again without --skip-export",
                    parquet_path(dir, ty).display(),
                    got.writer()
                )));
            }
            reused.push(got);
        }
    }
    reused.sort_by_key(|r| r.run_id);
    reused.dedup_by_key(|r| r.run_id);
    if reused.len() > 1 {
        let runs: Vec<String> = reused
            .iter()
            .map(|r| format!("{} ({})", r.writer(), r.ty))
            .collect();
        return Err(refused(format!(
            "--skip-export: the export files in {} were written by several runs: {}; export again without --skip-export",
            dir.display(),
            runs.join(", ")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_refused_and_one_copied_back_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let p = parquet_path(dir.path(), "user");
        std::fs::write(&p, b"hello").unwrap();
        let run = Uuid::new_v4();
        let r = record(dir.path(), "user", run, true).unwrap();
        assert_eq!((r.run_id, r.dry_run, r.parquet.size), (run, true, 5));
        assert_eq!(verified(dir.path(), "user", "load", true).unwrap(), r);
        std::fs::write(&p, b"hellp").unwrap();
        let e = verified(dir.path(), "user", "load", false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("(Bubble type `user`) changed since dry run"),
            "{e}"
        );
        std::fs::write(&p, b"hello").unwrap();
        assert!(verified(dir.path(), "user", "load", true).is_ok());
        let e = verified(dir.path(), "post", "load", false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is missing"), "{e}");
    }
}
