//! Run-layer steps over DynamoDB tables ([`etl_core::migration`]): a backup step before a
//! load and the load's undo that restores what it recorded.
//!
//! ```text
//! backup step:  backup_step(client, specs, dir)   -> details {"backups": [BackupInfo..]}
//! load's undo:  undo_from_backups(client, cx, "backup", options)
//!               reads those details (also from an earlier invocation, via the journal)
//!               and restores every table exactly (items added since are deleted)
//! ```

use std::path::Path;

use aws_sdk_dynamodb::Client;
use etl_core::BoxError;
use etl_core::migration::{StepCx, StepOutput};
use serde_json::json;

use crate::admin::TableSpec;
use crate::backup::{BackupInfo, backup_tables, restore_backups};
use crate::writer::WriteOptions;

/// The body of a backup step: every table of `specs` created if missing and scanned into
/// `dir` ([`backup_tables`]); the output names each file and records them under
/// `backups` for [`undo_from_backups`].
///
/// # Errors
/// A table cannot be created or scanned, a file cannot be written.
pub async fn backup_step(
    client: &Client,
    specs: &[TableSpec],
    dir: &Path,
) -> Result<StepOutput, BoxError> {
    let backups = backup_tables(client, specs, dir).await?;
    let lines: Vec<String> = (backups.iter())
        .map(|b| format!("{}: {} items -> {}", b.table, b.items, b.path.display()))
        .collect();
    Ok(
        StepOutput::message(format!("backed up {}", lines.join("; ")))
            .with_details(json!({ "backups": backups })),
    )
}

/// The backups the step `step` of this run recorded ([`backup_step`]); empty when it
/// recorded none.
pub fn recorded_backups(cx: &StepCx, step: &str) -> Vec<BackupInfo> {
    (cx.details_of(step))
        .and_then(|d| serde_json::from_value(d["backups"].clone()).ok())
        .unwrap_or_default()
}

/// The undo of a load: the backups that step `step` recorded in this run restored exactly
/// into their tables (the items added since are deleted).
///
/// # Errors
/// The run recorded no backup (restore by hand from a file then); a restore failed.
pub async fn undo_from_backups(
    client: &Client,
    cx: &StepCx,
    step: &str,
    options: WriteOptions,
) -> Result<StepOutput, BoxError> {
    let backups = recorded_backups(cx, step);
    if backups.is_empty() {
        return Err(format!(
            "the run recorded no backup (step `{step}`) before its load: restore the tables from a backup file by hand"
        )
        .into());
    }
    let done = restore_backups(client, &backups, options).await?;
    let done: Vec<String> = (done.iter())
        .map(|r| {
            format!(
                "{}: {} items restored, {} deleted",
                r.table, r.restored, r.deleted
            )
        })
        .collect();
    Ok(StepOutput::message(done.join("; ")))
}
