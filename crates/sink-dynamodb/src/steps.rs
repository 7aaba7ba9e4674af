//! Run-layer steps over DynamoDB tables ([`etl_core::migration`]): a backup step before a
//! load and the load's undo that restores what it recorded.
//!
//! ```text
//! backup step:  backup_step(client, specs, dir)   -> details {"backups": [BackupInfo..]}
//! load's undo:  undo_from_backups(client, cx, "backup", options)
//!               reads those details (also from an earlier invocation, via the journal)
//!               and restores every table exactly (items added since are deleted)
//! load step:    load_items_file(unit, file, writer, checkpoint, invalid, ..)
//!               a Parquet file of items, row group by row group (resumable)
//! ```

use std::path::Path;

use aws_sdk_dynamodb::Client;
use etl_core::checkpoint::JsonCheckpoint;
use etl_core::migration::{StepCx, StepOutput};
use etl_core::{BoxError, Pipeline, PipelineOptions, RunInfo, RunReport};
use serde_json::{Value, json};

use crate::admin::TableSpec;
use crate::backup::{BackupInfo, backup_tables, restore_backups};
use crate::check::{ExcludeInvalid, Invalid, read_items};
use crate::mapping::{MappingOptions, item_to_dynamo_json};
use crate::writer::{ItemWriter, WriteOptions};
use crate::{DynamoLoad, ItemCheck};

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

/// Load the items of a Parquet file into the writer's table, row group by row group (each
/// a unit named `<unit>#<i>` recorded in `checkpoint`: a resumed run skips those written),
/// leaving out the items `invalid` names ([`ExcludeInvalid`]) and rejecting the rows that
/// cannot be items ([`ItemCheck`]). In a dry run nothing is written: it says what it
/// would write and prints the first two items. Returns the pipeline's report and the
/// load's summary ([`DynamoLoad::summary`], with `dry_run`).
///
/// # Errors
/// The file cannot be opened or read (a failed write fails the report instead).
pub async fn load_items_file<'a>(
    unit: &str,
    path: &Path,
    writer: ItemWriter,
    checkpoint: JsonCheckpoint,
    invalid: impl IntoIterator<Item = &'a Invalid>,
    options: PipelineOptions,
    run: &RunInfo,
) -> etl_core::Result<(RunReport, Value)> {
    let (keys, table) = (writer.keys().clone(), writer.table().to_owned());
    let sink = DynamoLoad::new(writer, MappingOptions::default(), checkpoint);
    let (stats, t) = (sink.clone(), std::time::Instant::now());
    let report = Pipeline::new(etl_parquet::ParquetExtract::open(unit, path)?, sink)
        .transform(ExcludeInvalid::new(keys.clone(), invalid))
        .transform(ItemCheck::new(keys, MappingOptions::default()))
        .options(options)
        .run(run)
        .await;
    if run.dry_run {
        let (n, rejected) = (report.totals.loaded, report.totals.rejected);
        println!("[dry run] would write {n} items to {table} ({rejected} rejected); first items:");
        for it in read_items(path)?.take(2) {
            println!("  PutRequest {}", item_to_dynamo_json(&it?));
        }
    }
    let mut summary = stats.summary(&report, t.elapsed().as_secs_f64());
    summary["dry_run"] = json!(run.dry_run);
    Ok((report, summary))
}
