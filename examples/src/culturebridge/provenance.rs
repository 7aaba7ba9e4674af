//! Which run wrote each export file: `<type>.export.json` beside `<type>.parquet` records
//! the run, whether it was a dry run, and the Parquet file's fingerprint, so that
//! `--resume` loads only what its own run exported and `--skip-export` never loads a dry
//! run's export (or a file changed since it was written).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use etl_parquet::parquet_path;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::artifact::Fingerprint;

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
    pub parquet: Fingerprint,
}

impl ExportRecord {
    /// `run <id>` or `dry run <id>`.
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
pub fn record(dir: &Path, ty: &str, run_id: Uuid, dry_run: bool) -> anyhow::Result<ExportRecord> {
    let r = ExportRecord {
        ty: ty.to_owned(),
        run_id,
        dry_run,
        written_at: Utc::now(),
        parquet: Fingerprint::of(&parquet_path(dir, ty))?,
    };
    etl_core::report::write_atomic(&record_path(dir, ty), &serde_json::to_vec_pretty(&r)?)?;
    Ok(r)
}

/// The record of `<dir>/<type>.parquet`, refused (`what` says who asks) when there is
/// none or when the file's content changed since it was written. `hash`: always compare
/// the content (else only when the size or time differ from the record's).
///
/// # Errors
/// [`etl_core::Error::Refused`] as above; the files cannot be read.
pub fn verified(dir: &Path, ty: &str, what: &str, hash: bool) -> anyhow::Result<ExportRecord> {
    let p = parquet_path(dir, ty);
    let rp = record_path(dir, ty);
    let refuse = |why: String| -> anyhow::Error {
        etl_core::Error::Refused(format!(
            "{what}: {} (Bubble type `{ty}`) {why}",
            p.display()
        ))
        .into()
    };
    if !p.exists() {
        return Err(refuse("is missing; run once without --skip-export".into()));
    }
    let r: ExportRecord = match std::fs::read(&rp) {
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| refuse(format!("has an unreadable record {}: {e}", rp.display())))?,
        Err(_) => {
            return Err(refuse(format!(
                "has no record of the run that wrote it ({} is missing); export again without --skip-export",
                rp.display()
            )));
        }
    };
    let unchanged = !hash && Fingerprint::times(&p)? == (r.parquet.size, r.parquet.modified_ns);
    let changes = match unchanged {
        true => Vec::new(),
        false => Fingerprint::of(&p)?.changes_since(&r.parquet),
    };
    if !changes.is_empty() {
        return Err(refuse(format!(
            "changed since {} wrote it ({}); export again without --skip-export",
            r.writer(),
            changes.join(", ")
        )));
    }
    Ok(r)
}
