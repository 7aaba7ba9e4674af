//! [`DynamoLoad`]: the [`etl_core::Load`] of a DynamoDB table, and [`ItemCheck`], the
//! transform that rejects rows that cannot become items before they reach it.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use etl_core::{Batch, Fate, Load, Reject, RunInfo, Transform, Unit, UnitSummary, UnitWriter};

use crate::error::DynamoError;
use crate::mapping::{KeySchema, MAX_ITEM_BYTES, MappingOptions, item_size, items_from_batch};
use crate::writer::{BATCH_WRITE_MAX, ItemWriter, WriteStats};
use etl_core::checkpoint::JsonCheckpoint;

/// Loads batches into one DynamoDB table: every row becomes an item (see
/// [`crate::mapping`]) put with [`ItemWriter`].
///
/// DynamoDB has no multi-item transactions of this size, so a unit is made idempotent by
/// key instead: its items are put (a rerun overwrites the same keys), then the unit is
/// recorded in a [`JsonCheckpoint`]; `--resume` skips recorded units and redoes the rest.
/// `abort` cannot take back items already put; they are overwritten when the unit is redone.
///
/// Rows that cannot become items make `write` fail: put [`ItemCheck`] before the sink so
/// they are rejected with their reason instead.
#[derive(Debug, Clone)]
pub struct DynamoLoad {
    writer: ItemWriter,
    mapping: Arc<MappingOptions>,
    checkpoint: JsonCheckpoint,
}

impl DynamoLoad {
    /// A sink writing with `writer`, mapping rows with `mapping`, recording units in
    /// `checkpoint`.
    pub fn new(writer: ItemWriter, mapping: MappingOptions, checkpoint: JsonCheckpoint) -> Self {
        DynamoLoad {
            writer,
            mapping: Arc::new(mapping),
            checkpoint,
        }
    }

    /// Counters of the writes so far.
    pub fn stats(&self) -> WriteStats {
        self.writer.stats()
    }

    /// The item writer.
    pub fn writer(&self) -> &ItemWriter {
        &self.writer
    }

    /// A summary of `report`, a run of this load that took `seconds`, for a migration's
    /// report: `table`, `status`, `read`, `loaded`, `rejected`, `rejected_by_reason`,
    /// `units`, `units_resumed` (skipped as recorded), `seconds`, `items_per_s` (of the
    /// units written by this run) and `writes` ([`WriteStats`]).
    pub fn summary(&self, report: &etl_core::RunReport, seconds: f64) -> serde_json::Value {
        use etl_core::UnitStatus;
        let (t, units) = (&report.totals, &report.units);
        let now = units.iter().filter(|u| u.status == UnitStatus::Completed);
        let loaded_now: u64 = now.map(|u| u.loaded).sum();
        let resumed = units
            .iter()
            .filter(|u| u.status == UnitStatus::Resumed)
            .count();
        serde_json::json!({
            "table": self.writer.table(),
            "status": report.status.as_str(),
            "read": t.read,
            "loaded": t.loaded,
            "rejected": t.rejected,
            "rejected_by_reason": t.rejected_by_reason,
            "units": units.len(),
            "units_resumed": resumed,
            "seconds": seconds,
            "items_per_s": if seconds > 0.0 { loaded_now as f64 / seconds } else { 0.0 },
            "writes": self.stats(),
        })
    }
}

impl Load for DynamoLoad {
    type Writer = DynamoUnitWriter;

    fn name(&self) -> &str {
        "dynamodb"
    }

    async fn begin_run(
        &self,
        run: &RunInfo,
        schema: SchemaRef,
    ) -> etl_core::Result<Vec<UnitSummary>> {
        let keys = self.writer.keys();
        for attr in std::iter::once(&keys.partition).chain(keys.sort.as_ref()) {
            if schema.field_with_name(attr).is_err() {
                return Err(DynamoError::Config(format!(
                    "the batches have no column `{attr}`, the key of table `{}` (columns: {})",
                    self.writer.table(),
                    schema
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .into());
            }
        }
        if run.resume {
            self.checkpoint.completed()
        } else {
            self.checkpoint.reset()?;
            Ok(Vec::new())
        }
    }

    async fn begin_unit(&self, unit: &Unit) -> etl_core::Result<DynamoUnitWriter> {
        Ok(DynamoUnitWriter {
            writer: self.writer.clone(),
            mapping: self.mapping.clone(),
            checkpoint: self.checkpoint.clone(),
            unit: unit.name.clone(),
        })
    }
}

/// Writes one unit's items; records the unit in the checkpoint on commit.
#[derive(Debug)]
pub struct DynamoUnitWriter {
    writer: ItemWriter,
    mapping: Arc<MappingOptions>,
    checkpoint: JsonCheckpoint,
    unit: String,
}

impl UnitWriter for DynamoUnitWriter {
    async fn write(&mut self, batch: RecordBatch) -> etl_core::Result<u64> {
        // Items (maps of attribute values) take several times the room of their Arrow
        // rows: convert and send a slice at a time, four calls per slot in flight, so
        // memory does not follow the batch size. A key repeated in two slices is written
        // twice in order, the last winning, as within one slice.
        let o = self.writer.options();
        let slice = (o.concurrency.max(1) * o.batch_size.clamp(1, BATCH_WRITE_MAX) * 4).max(1);
        let mut n = 0u64;
        let mut start = 0;
        while start < batch.num_rows() {
            let len = slice.min(batch.num_rows() - start);
            let part = batch.slice(start, len);
            let mut items = Vec::with_capacity(len);
            for (row, item) in items_from_batch(&part, &self.mapping)
                .into_iter()
                .enumerate()
            {
                items.push(item.map_err(|e| {
                    DynamoError::Config(format!(
                        "unit `{}`, row {} of a batch: {e} (put ItemCheck before the sink to reject such rows)",
                        self.unit,
                        start + row
                    ))
                })?);
            }
            n += items.len() as u64;
            let outcome = self.writer.put_items(items).await?;
            if let Some(r) = outcome.refused.first() {
                return Err(DynamoError::Config(format!(
                    "unit `{}`: item {} refused: {} (put ItemCheck before the sink to reject such rows)",
                    self.unit, r.key, r.reason
                ))
                .into());
            }
            start += len;
        }
        Ok(n)
    }

    async fn write_rejects(&mut self, rejects: &[Reject]) -> etl_core::Result<()> {
        // The runner spools rejects into the report directory; DynamoDB keeps none.
        let _ = rejects;
        Ok(())
    }

    async fn commit(self, summary: &UnitSummary) -> etl_core::Result<()> {
        self.checkpoint.record(summary)
    }

    async fn abort(self) -> etl_core::Result<()> {
        tracing::warn!(unit = %self.unit, table = %self.writer.table(), "unit aborted: items already put stay and are overwritten when the unit is redone");
        Ok(())
    }
}

/// Rejects rows that cannot become DynamoDB items, with their reason: a value with no
/// mapping (NaN), a missing or non-scalar key attribute, an item over 400 KB.
#[derive(Debug, Clone)]
pub struct ItemCheck {
    keys: KeySchema,
    mapping: MappingOptions,
}

impl ItemCheck {
    /// A check for items of a table with key `keys`, mapped with `mapping`.
    pub fn new(keys: KeySchema, mapping: MappingOptions) -> Self {
        ItemCheck { keys, mapping }
    }
}

impl Transform for ItemCheck {
    fn name(&self) -> &str {
        "dynamodb_item_check"
    }

    fn output_schema(&self, input: &SchemaRef) -> etl_core::Result<SchemaRef> {
        Ok(input.clone())
    }

    fn transform(&self, mut batch: Batch) -> etl_core::Result<Batch> {
        let fates: Vec<Option<Fate>> = items_from_batch(&batch.data, &self.mapping)
            .into_iter()
            .map(|item| match item {
                Err(DynamoError::Mapping { column, reason }) => Some(Fate::Reject {
                    column: Some(column),
                    kind: "unmappable".into(),
                    reason,
                }),
                Err(e) => Some(Fate::Reject {
                    column: None,
                    kind: "unmappable".into(),
                    reason: e.to_string(),
                }),
                Ok(item) => {
                    if let Err(e) = self.keys.key_of("", &item) {
                        let column = match &e {
                            DynamoError::MissingKey { attribute, .. } => Some(attribute.clone()),
                            _ => None,
                        };
                        return Some(Fate::Reject {
                            column,
                            kind: "missing_key".into(),
                            reason: e.to_string(),
                        });
                    }
                    let size = item_size(&item);
                    (size > MAX_ITEM_BYTES).then(|| Fate::Reject {
                        column: None,
                        kind: "item_too_large".into(),
                        reason: format!(
                            "item {} is {size} bytes, over DynamoDB's 400 KB limit ({MAX_ITEM_BYTES} bytes)",
                            self.keys.describe(&item)
                        ),
                    })
                }
            })
            .collect();
        batch.apply_fates(&fates)?;
        Ok(batch)
    }
}
