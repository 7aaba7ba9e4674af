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
//!
//! [`LoadConfig`] is the `migration` section of a config file in the shape the S9 seed
//! gives it (`batchSize`, `maxRetries`, `retryDelay`, `continueOnError`,
//! `backupBeforeLoad`...), for a migration's own config struct.

use std::path::Path;

use aws_sdk_dynamodb::Client;
use etl_core::checkpoint::JsonCheckpoint;
use etl_core::migration::{Journal, StepCx, StepOutput};
use etl_core::{BoxError, Finding, Pipeline, PipelineOptions, RunInfo, RunReport};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::admin::TableSpec;
use crate::backup::{
    BackupInfo, RestoreInfo, RestoreMode, backup_table, backup_tables, restore_backups,
    restore_table,
};
use crate::check::{ExcludeInvalid, Invalid, Validation, read_items};
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

/// The end of a validation step over `v` (its items checked): the invalid items written
/// to `invalid_file` (the load and its checks read them back with [`read_invalid`]), the
/// first 1,000 logged to the errors log, `validation` in the report (passed, invalid
/// items, entities), and a finding that passes, warns (`continue_on_error`: the load
/// leaves them out) or fails (nothing is loaded).
///
/// # Errors
/// The file or the errors log cannot be written.
pub fn validation_output(
    cx: &StepCx,
    v: &Validation,
    invalid_file: &Path,
    continue_on_error: bool,
) -> etl_core::Result<StepOutput> {
    let json = serde_json::to_vec(&v.invalid).map_err(|e| etl_core::Error::Config(e.to_string()));
    etl_core::report::write_atomic(invalid_file, &json?)?;
    let (passed, n) = (v.passed(), v.invalid.len());
    let entities = v.report()["entities"].clone();
    let summary = json!({"passed": passed, "invalid_items": n, "entities": entities});
    cx.set_extra("validation", summary.clone());
    let line = |i: &Invalid| {
        format!(
            "ERROR validate {}: {} {}: {}",
            i.entity, i.key, i.check, i.reason
        )
    };
    cx.log_errors(v.invalid.iter().take(1000).map(line))?;
    let message = format!("{n} invalid items");
    let finding = if passed {
        Finding::pass("validation", "every item is valid")
    } else if continue_on_error {
        let why = format!("{message}: the load rejects them (migration.continueOnError)");
        Finding::warn("validation", why)
    } else {
        let why = format!("{message} and migration.continueOnError is false: not loading");
        Finding::fail("validation", why)
    };
    Ok(StepOutput::message(message)
        .with_details(summary)
        .with_findings(vec![finding]))
}

/// The invalid items a validation step wrote to `path` ([`validation_output`]).
///
/// # Errors
/// The file is missing (the validation has not run) or unreadable.
pub fn read_invalid(path: &Path) -> etl_core::Result<Vec<Invalid>> {
    let bytes = std::fs::read(path).map_err(|e| {
        etl_core::Error::Config(format!("{}: {e}: run the validation first", path.display()))
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| etl_core::Error::Config(format!("{}: {e}", path.display())))
}

/// A migration's `--backup TABLE` outside its steps (the seed's `utils/backup.py`): each
/// table scanned into `dir` ([`backup_table`]) under the run lock of `migration` (it only
/// reads, but never while a load writes), a line printed for each; returns `[{table,
/// items, file}]`.
///
/// # Errors
/// A run holds the lock; a table cannot be scanned or a file written.
pub async fn backup_by_hand(
    client: &Client,
    journal: &dyn Journal,
    migration: &str,
    tables: &[String],
    dir: &Path,
) -> etl_core::Result<Value> {
    let _lock = journal.lock(migration).await?;
    let mut infos = Vec::new();
    for t in tables {
        let info = backup_table(client, t, dir, 4).await?;
        let (n, file) = (info.items, info.path.display());
        println!("backed up {n} items of {t} into {file}");
        infos.push(json!({ "table": t, "items": info.items, "file": info.path }));
    }
    Ok(Value::Array(infos))
}

/// A migration's `--restore FILE` outside its steps: the backup file restored exactly into
/// its table ([`RestoreMode::Exact`]: the items added since are deleted) under the run
/// lock of `migration` (never while a run is live; released on return), and a line
/// printed.
///
/// # Errors
/// A run holds the lock; the restore failed.
pub async fn restore_by_hand(
    client: &Client,
    journal: &dyn Journal,
    migration: &str,
    file: &Path,
    options: WriteOptions,
) -> etl_core::Result<RestoreInfo> {
    let _lock = journal.lock(migration).await?;
    let info = restore_table(client, file, None, RestoreMode::Exact, options).await?;
    println!(
        "restored {} items into {} from {} ({} items added since the backup deleted)",
        info.restored,
        info.table,
        file.display(),
        info.deleted
    );
    Ok(info)
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

/// How a migration loads DynamoDB, as a config file's `migration` section says it
/// (camelCase keys, unknown keys refused).
///
/// ```
/// use etl_sink_dynamodb::steps::LoadConfig;
/// let c: LoadConfig = serde_json::from_str(r#"{"batchSize": 10, "retryDelay": 5}"#).unwrap();
/// let w = c.write_options(None);
/// assert_eq!((w.batch_size, w.retry_delay.as_secs(), w.concurrency), (10, 5, 32));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct LoadConfig {
    /// Items per BatchWriteItem (at most 25).
    pub batch_size: usize,
    /// Retries of a throttled call.
    pub max_retries: u32,
    /// First retry delay, seconds.
    pub retry_delay: f64,
    /// Double the delay per retry.
    pub exponential_backoff: bool,
    /// Load the valid items even when validation found invalid ones (they are rejected).
    pub continue_on_error: bool,
    /// Back up every target table before loading.
    pub backup_before_load: bool,
    /// BatchWriteItem calls in flight in all (32: enough to hide a 20-50 ms round trip to
    /// DynamoDB; a throttled table is retried with backoff).
    pub concurrency: usize,
    /// Pause after every BatchWriteItem call, milliseconds (`batchDelay`, against rate
    /// limits).
    pub batch_delay: u64,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            batch_size: 25,
            max_retries: 8,
            retry_delay: 0.05,
            exponential_backoff: true,
            continue_on_error: true,
            backup_before_load: true,
            concurrency: 32,
            batch_delay: 0,
        }
    }
}

impl LoadConfig {
    /// The writer's options; `concurrency` (a command-line option) wins over the file's.
    pub fn write_options(&self, concurrency: Option<usize>) -> WriteOptions {
        WriteOptions {
            concurrency: concurrency.unwrap_or(self.concurrency).max(1),
            batch_size: self.batch_size.clamp(1, 25),
            max_retries: self.max_retries,
            retry_delay: std::time::Duration::from_secs_f64(self.retry_delay.max(0.001)),
            exponential_backoff: self.exponential_backoff,
            batch_delay: std::time::Duration::from_millis(self.batch_delay),
            ..Default::default()
        }
    }
}
