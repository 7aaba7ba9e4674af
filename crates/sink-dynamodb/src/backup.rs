//! Backup of a table to Parquet by a parallel-segment `Scan`, and restore from it.
//!
//! A backup is `<dir>/<table>-<YYYYMMDD-HHMMSS>.parquet` with one column `item`: each item
//! in DynamoDB's JSON form (lossless: every type, sets and binaries included), plus
//! key-value metadata `ferry.table`, `ferry.partition_key`, `ferry.sort_key`,
//! `ferry.created_at`.
//!
//! ### Why not point-in-time recovery
//! DynamoDB's PITR (and on-demand backups) always restore into a **new** table: they
//! cannot roll a table back in place under its own name, so an application keeps writing
//! to the migrated table. [`restore_table`] writes the backup back into the same table
//! instead, and with [`RestoreMode::Exact`] also deletes the items the backup does not
//! hold, leaving the table as it was at the backup.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use aws_sdk_dynamodb::Client;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use crate::admin::{describe_keys, scan_items};
use crate::error::{DynamoError, Result};
use crate::mapping::{Item, KeySchema, item_from_dynamo_json, item_to_dynamo_json};
use crate::writer::{ItemWriter, WriteOptions};

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    /// The Parquet file.
    pub path: PathBuf,
    /// The table.
    pub table: String,
    /// Items saved.
    pub items: u64,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreInfo {
    /// The table written.
    pub table: String,
    /// Items put back.
    pub restored: u64,
    /// Items deleted because the backup did not hold them ([`RestoreMode::Exact`]).
    pub deleted: u64,
}

/// How a restore treats items that are in the table but not in the backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestoreMode {
    /// Delete them: the table ends exactly as it was at the backup (a rollback).
    #[default]
    Exact,
    /// Keep them: only put the backup's items back.
    PutOnly,
}

fn backup_err(path: &Path, reason: impl std::fmt::Display) -> DynamoError {
    DynamoError::Backup {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Scan `table` with `segments` parallel segments into a new Parquet file under `dir`.
///
/// Memory: one page per segment plus one Parquet row group (10,000 items) at a time.
pub async fn backup_table(
    client: &Client,
    table: &str,
    dir: &Path,
    segments: u32,
) -> Result<BackupInfo> {
    let keys = describe_keys(client, table).await?;
    std::fs::create_dir_all(dir).map_err(|e| backup_err(dir, e))?;
    let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S");
    let mut path = dir.join(format!("{table}-{stamp}.parquet"));
    let mut n = 1;
    while path.exists() {
        n += 1;
        path = dir.join(format!("{table}-{stamp}-{n}.parquet"));
    }
    let tmp = path.with_extension("parquet.part");
    let schema = Arc::new(Schema::new(vec![Field::new("item", DataType::Utf8, false)]));
    let mut meta = vec![
        KeyValue::new("ferry.table".to_owned(), table.to_owned()),
        KeyValue::new("ferry.partition_key".to_owned(), keys.partition.clone()),
        KeyValue::new(
            "ferry.created_at".to_owned(),
            chrono::Utc::now().to_rfc3339(),
        ),
    ];
    if let Some(sk) = &keys.sort {
        meta.push(KeyValue::new("ferry.sort_key".to_owned(), sk.clone()));
    }
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_key_value_metadata(Some(meta))
        .build();
    let file = etl_core::report::create_private(&tmp).map_err(|e| backup_err(&tmp, e))?;
    let writer =
        ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|e| backup_err(&tmp, e))?;
    struct Sink {
        writer: ArrowWriter<std::fs::File>,
        pending: Vec<String>,
        error: Option<String>,
        schema: Arc<Schema>,
    }
    impl Sink {
        fn flush(&mut self) {
            if self.pending.is_empty() || self.error.is_some() {
                return;
            }
            let array: ArrayRef = Arc::new(StringArray::from(std::mem::take(&mut self.pending)));
            let r = RecordBatch::try_new(self.schema.clone(), vec![array])
                .map_err(|e| e.to_string())
                .and_then(|b| self.writer.write(&b).map_err(|e| e.to_string()));
            if let Err(e) = r {
                self.error = Some(e);
            }
        }
    }
    let sink = Mutex::new(Sink {
        writer,
        pending: Vec::new(),
        error: None,
        schema,
    });
    let items = scan_items(client, table, None, segments, |page| {
        let mut s = sink.lock().expect("backup sink");
        for item in &page {
            s.pending.push(item_to_dynamo_json(item).to_string());
        }
        if s.pending.len() >= 10_000 {
            s.flush();
        }
    })
    .await?;
    let mut s = sink.into_inner().expect("backup sink");
    s.flush();
    if let Some(e) = s.error {
        let _ = std::fs::remove_file(&tmp);
        return Err(backup_err(&tmp, e));
    }
    s.writer.close().map_err(|e| backup_err(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| backup_err(&path, e))?;
    tracing::info!(table, items, path = %path.display(), "table backed up");
    Ok(BackupInfo {
        path,
        table: table.to_owned(),
        items,
    })
}

/// The table and key schema a backup file was made from.
pub fn backup_source(path: &Path) -> Result<(String, KeySchema)> {
    let file = std::fs::File::open(path).map_err(|e| backup_err(path, e))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| backup_err(path, e))?;
    let kv = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default();
    let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
    let table = get("ferry.table").ok_or_else(|| {
        backup_err(
            path,
            "not a ferry DynamoDB backup (no ferry.table metadata)",
        )
    })?;
    let partition = get("ferry.partition_key")
        .ok_or_else(|| backup_err(path, "no ferry.partition_key metadata"))?;
    Ok((
        table,
        KeySchema {
            partition,
            sort: get("ferry.sort_key"),
        },
    ))
}

/// The items of a backup file, in batches of up to 8,192 (one batch in memory at a time).
pub fn open_backup(path: &Path) -> Result<impl Iterator<Item = Result<Vec<Item>>> + use<>> {
    let file = std::fs::File::open(path).map_err(|e| backup_err(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| backup_err(path, e))?
        .with_batch_size(8192)
        .build()
        .map_err(|e| backup_err(path, e))?;
    let path = path.to_owned();
    Ok(reader.map(move |batch| {
        let batch = batch.map_err(|e| backup_err(&path, e))?;
        let col = batch
            .column_by_name("item")
            .ok_or_else(|| backup_err(&path, "no `item` column"))?
            .as_string::<i32>();
        let mut items = Vec::with_capacity(col.len());
        for text in col.iter().flatten() {
            let v: serde_json::Value =
                serde_json::from_str(text).map_err(|e| backup_err(&path, e))?;
            items.push(item_from_dynamo_json(&v).map_err(|e| backup_err(&path, e))?);
        }
        Ok(items)
    }))
}

/// Write a backup back into `table` (the backup's own table when `None`).
///
/// With [`RestoreMode::Exact`] the keys of the backup are kept in memory (a few dozen
/// bytes per item) to delete the items added since.
pub async fn restore_table(
    client: &Client,
    path: &Path,
    table: Option<&str>,
    mode: RestoreMode,
    options: WriteOptions,
) -> Result<RestoreInfo> {
    let (source_table, keys) = backup_source(path)?;
    let table = table.unwrap_or(&source_table).to_owned();
    let writer = ItemWriter::new(client.clone(), &table, keys.clone(), options);
    let mut restored = 0;
    let mut kept: HashSet<String> = HashSet::new();
    for items in open_backup(path)? {
        let items = items?;
        if mode == RestoreMode::Exact {
            kept.extend(items.iter().map(|i| keys.describe(i)));
        }
        let outcome = writer.put_items(items).await?;
        restored += outcome.written;
        if let Some(r) = outcome.refused.first() {
            return Err(backup_err(
                path,
                format!("item {} refused: {}", r.key, r.reason),
            ));
        }
    }
    let mut deleted = 0;
    if mode == RestoreMode::Exact {
        let extra: Mutex<Vec<Item>> = Mutex::new(Vec::new());
        scan_items(client, &table, None, 4, |page| {
            let mut extra = extra.lock().expect("restore");
            for item in page {
                if !kept.contains(&keys.describe(&item))
                    && let Ok(k) = keys.key_of(&table, &item)
                {
                    extra.push(k);
                }
            }
        })
        .await?;
        let extra = extra.into_inner().expect("restore");
        if !extra.is_empty() {
            deleted = writer.delete_keys(extra).await?;
        }
    }
    tracing::info!(table = %table, restored, deleted, path = %path.display(), "table restored");
    Ok(RestoreInfo {
        table,
        restored,
        deleted,
    })
}

/// The backup step of a migration to DynamoDB, before its load: each table of `specs`
/// created when missing (so that an undo has a table to restore) and scanned into a new
/// file under `dir` ([`backup_table`], 4 segments). The [`BackupInfo`]s are what
/// [`restore_backups`] needs; a migration keeps them in its journal (the step's details).
pub async fn backup_tables(
    client: &Client,
    specs: &[crate::admin::TableSpec],
    dir: &Path,
) -> Result<Vec<BackupInfo>> {
    let mut backups = Vec::new();
    for spec in specs {
        crate::admin::ensure_table(client, spec).await?;
        let info = backup_table(client, &spec.name, dir, 4).await?;
        tracing::info!(table = %spec.name, items = info.items, file = %info.path.display(), "backed up");
        backups.push(info);
    }
    Ok(backups)
}

/// The undo of a load: every backup of [`backup_tables`] restored exactly into its table
/// (the items added since are deleted, [`RestoreMode::Exact`]).
pub async fn restore_backups(
    client: &Client,
    backups: &[BackupInfo],
    options: WriteOptions,
) -> Result<Vec<RestoreInfo>> {
    let mut done = Vec::new();
    for b in backups {
        done.push(restore_table(client, &b.path, None, RestoreMode::Exact, options.clone()).await?);
    }
    Ok(done)
}
