//! [`Rollup`]: group-by counts and sums of the rows a [`PgLoad`](crate::PgLoad) writes,
//! computed while the batches stream through the load, so a summary after the load needs
//! no second scan of the table.
//!
//! Each unit's writer groups its batches; when the unit has committed, its groups are
//! merged into the run's (a unit that failed or was retried contributes only its committed
//! attempt). At the end of the load the run's groups are written to the rollup table
//! (`run_id`, the key columns, `rows`, one sum per summed column) — when this process
//! loaded every unit of the run. A load resumed after a kill did not see the units
//! committed before it, so it writes no groups: [`Rollup::reconcile`] then tells the
//! summary to scan the table instead (its row count is compared with the ledger's, which
//! commits with the units).
//!
//! ```no_run
//! use etl_sink_postgres::{PgLoad, ident::TableName, rollup::Rollup};
//! # fn demo(opts: sqlx::postgres::PgConnectOptions) {
//! let by_year = Rollup::new(TableName::new("trade_by_year"), ["species_id", "year"], ["quantity"]);
//! let load = PgLoad::new(opts, TableName::new("trade_staging")).with_rollup(by_year);
//! # }
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
};
use arrow_array::{
    Array, ArrayRef, Decimal128Array, Float64Array, Int64Array, RecordBatch, StringArray,
};
use arrow_row::{RowConverter, SortField};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use bytes::BytesMut;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::copy::{COPY_HEADER, COPY_TRAILER, CopyEncoder};
use crate::ident::{TableName, quote_ident};
use crate::ledger::LedgerTables;
use crate::{Error, Result};

/// Group-by counts and sums of the loaded rows, written to `table` at the end of the load
/// (see the module docs).
#[derive(Debug, Clone)]
pub struct Rollup {
    /// The table of the run's groups (created by the load when missing).
    pub table: TableName,
    /// The columns grouped by (names of the load's batch columns and target columns).
    pub keys: Vec<String>,
    /// The columns summed (integers, decimals or floats); NULLs are skipped.
    pub sums: Vec<String>,
}

impl Rollup {
    /// Groups of `keys` with the row count and the sums of `sums`, written to `table`.
    pub fn new<K, S>(
        table: TableName,
        keys: impl IntoIterator<Item = K>,
        sums: impl IntoIterator<Item = S>,
    ) -> Self
    where
        K: Into<String>,
        S: Into<String>,
    {
        Rollup {
            table,
            keys: keys.into_iter().map(Into::into).collect(),
            sums: sums.into_iter().map(Into::into).collect(),
        }
    }

    /// A query of the groups of run `run_id`: the key columns, `rows` and the sums (the
    /// run id is a literal, so the query can stand as a subquery of a multi-statement
    /// script).
    pub fn groups_sql(&self, run_id: Uuid) -> String {
        let mut cols: Vec<String> = self.keys.iter().map(|k| quote_ident(k)).collect();
        cols.push("rows".into());
        cols.extend(self.sums.iter().map(|s| quote_ident(s)));
        format!(
            "SELECT {} FROM {} WHERE run_id = '{run_id}'::uuid",
            cols.join(", "),
            self.table.sql()
        )
    }

    /// The rows of run `run_id` according to the rollup table (`None` when it holds no
    /// groups of the run: a resumed load, or no rollup table), and according to `ledger`
    /// (the rows its completed units loaded): the groups describe the loaded table exactly
    /// when both are equal.
    ///
    /// # Errors
    /// A query failed.
    pub async fn reconcile(
        &self,
        conn: &mut PgConnection,
        ledger: &LedgerTables,
        run_id: Uuid,
    ) -> Result<(Option<i64>, i64)> {
        let rolled: Option<i64> = if crate::staging::exists(conn, &self.table).await? {
            sqlx::query_scalar(sqlf!(
                "SELECT sum(rows)::bigint FROM {} WHERE run_id = $1",
                self.table.sql()
            ))
            .bind(run_id)
            .fetch_one(&mut *conn)
            .await?
        } else {
            None
        };
        let ledgered: i64 = sqlx::query_scalar(sqlf!(
            "SELECT coalesce(sum(records_inserted), 0)::bigint FROM {}
              WHERE run_id = $1 AND status = 'completed'",
            ledger.units.sql()
        ))
        .bind(run_id)
        .fetch_one(&mut *conn)
        .await?;
        Ok((rolled, ledgered))
    }

    /// Create the rollup table when missing, typed like `target`'s key columns, and drop
    /// its groups (of every run: this run's are written again at the end of its load).
    pub(crate) async fn begin_run(
        &self,
        conn: &mut PgConnection,
        target: &TableName,
    ) -> Result<()> {
        let columns = crate::types::table_columns(conn, target).await?;
        let mut defs = vec!["run_id uuid NOT NULL".to_owned()];
        for k in &self.keys {
            let c = columns.iter().find(|c| &c.name == k).ok_or_else(|| {
                Error::Mapping(format!("rollup key `{k}` is not a column of {target}"))
            })?;
            defs.push(format!("{} {}", quote_ident(k), c.type_text));
        }
        defs.push("rows bigint NOT NULL".into());
        for s in &self.sums {
            let c = columns.iter().find(|c| &c.name == s).ok_or_else(|| {
                Error::Mapping(format!("rollup sum `{s}` is not a column of {target}"))
            })?;
            let ty = if c.type_text == "real" || c.type_text == "double precision" {
                "double precision"
            } else {
                "numeric"
            };
            defs.push(format!("{} {ty}", quote_ident(s)));
        }
        let t = self.table.sql();
        sqlx::raw_sql(sqlf!(
            "CREATE TABLE IF NOT EXISTS {t} ({});
             CREATE INDEX IF NOT EXISTS {} ON {t} (run_id)",
            defs.join(", "),
            quote_ident(&format!("{}_run_idx", self.table.name))
        ))
        .execute(&mut *conn)
        .await?;
        sqlx::query(sqlf!("DELETE FROM {t}"))
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

/// The groups of one [`Rollup`]: of one unit's batches, or of the run's committed units.
pub(crate) struct Groups {
    rollup: Arc<Rollup>,
    fields: Vec<SortField>,
    converter: Option<RowConverter>,
    index: HashMap<Box<[u8]>, usize>,
    rows: Vec<i64>,
    sums: Vec<Vec<Sum>>,
    sum_types: Vec<DataType>,
}

impl std::fmt::Debug for Groups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Groups")
            .field("table", &self.rollup.table)
            .field("groups", &self.rows.len())
            .finish()
    }
}

#[derive(Clone, Copy, Default)]
enum Sum {
    #[default]
    Null,
    Int(i128),
    Float(f64),
}

impl Sum {
    fn plus(self, other: Sum, name: &str) -> Result<Sum> {
        Ok(match (self, other) {
            (Sum::Null, x) | (x, Sum::Null) => x,
            (Sum::Int(a), Sum::Int(b)) => Sum::Int(a.checked_add(b).ok_or_else(|| {
                Error::Mapping(format!("rollup sum of `{name}` overflows 128 bits"))
            })?),
            (Sum::Float(a), Sum::Float(b)) => Sum::Float(a + b),
            _ => {
                return Err(Error::Mapping(format!(
                    "rollup sum of `{name}`: mixed types"
                )));
            }
        })
    }
}

impl Groups {
    pub(crate) fn new(rollup: Arc<Rollup>) -> Self {
        let n = rollup.sums.len();
        Groups {
            rollup,
            fields: Vec::new(),
            converter: None,
            index: HashMap::new(),
            rows: Vec::new(),
            sums: vec![Vec::new(); n],
            sum_types: Vec::new(),
        }
    }

    fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
        batch
            .column_by_name(name)
            .ok_or_else(|| Error::Mapping(format!("rollup column `{name}` is not in the batch")))
    }

    /// The group of the key `bytes` (row format), created when new.
    fn slot(&mut self, bytes: &[u8]) -> usize {
        if let Some(&g) = self.index.get(bytes) {
            return g;
        }
        let g = self.rows.len();
        self.index.insert(bytes.into(), g);
        self.rows.push(0);
        for s in &mut self.sums {
            s.push(Sum::Null);
        }
        g
    }

    /// Add the rows of `batch`.
    pub(crate) fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        let keys = self
            .rollup
            .keys
            .iter()
            .map(|k| Self::column(batch, k).cloned())
            .collect::<Result<Vec<_>>>()?;
        if self.converter.is_none() {
            self.fields = keys
                .iter()
                .map(|a| SortField::new(a.data_type().clone()))
                .collect();
            self.converter = Some(RowConverter::new(self.fields.clone()).map_err(arrow)?);
        }
        let rows = (self.converter.as_ref().expect("set above"))
            .convert_columns(&keys)
            .map_err(arrow)?;
        let mut group = Vec::with_capacity(batch.num_rows());
        for row in rows.iter() {
            let g = self.slot(row.as_ref());
            self.rows[g] += 1;
            group.push(g);
        }
        for (i, name) in self.rollup.sums.iter().enumerate() {
            let col = Self::column(batch, name)?;
            if self.sum_types.len() <= i {
                self.sum_types.push(col.data_type().clone());
            }
            add_sums(&mut self.sums[i], &group, col.as_ref(), name)?;
        }
        Ok(())
    }

    /// The keys, in group order (each key is held once, by the index).
    fn keys_in_order(&self) -> Vec<&[u8]> {
        let mut keys = vec![&[][..]; self.rows.len()];
        for (k, &g) in &self.index {
            keys[g] = k;
        }
        keys
    }

    /// Add the groups of `other` (of the same rollup).
    pub(crate) fn merge(&mut self, other: Groups) -> Result<()> {
        if other.converter.is_none() {
            return Ok(());
        }
        if self.converter.is_none() {
            self.converter = Some(RowConverter::new(other.fields.clone()).map_err(arrow)?);
            (self.fields, self.sum_types) = (other.fields.clone(), other.sum_types.clone());
        }
        let rollup = self.rollup.clone();
        for (key, &i) in &other.index {
            let g = self.slot(key);
            self.rows[g] += other.rows[i];
            for (c, name) in rollup.sums.iter().enumerate() {
                self.sums[c][g] = self.sums[c][g].plus(other.sums[c][i], name)?;
            }
        }
        Ok(())
    }

    /// The groups as a batch of the rollup table's columns.
    fn batch(&self, run_id: Uuid) -> Result<Option<RecordBatch>> {
        let Some(converter) = &self.converter else {
            return Ok(None);
        };
        let parser = converter.parser();
        let keys = converter
            .convert_rows(self.keys_in_order().into_iter().map(|k| parser.parse(k)))
            .map_err(arrow)?;
        let n = self.rows.len();
        let mut fields = vec![Field::new("run_id", DataType::Utf8, false)];
        let mut columns: Vec<ArrayRef> =
            vec![Arc::new(StringArray::from(vec![run_id.to_string(); n]))];
        for (k, a) in self.rollup.keys.iter().zip(keys) {
            fields.push(Field::new(k, a.data_type().clone(), true));
            columns.push(a);
        }
        fields.push(Field::new("rows", DataType::Int64, false));
        columns.push(Arc::new(Int64Array::from(self.rows.clone())));
        for ((name, sums), ty) in self.rollup.sums.iter().zip(&self.sums).zip(&self.sum_types) {
            let (field, array): (Field, ArrayRef) = match ty {
                DataType::Float32 | DataType::Float64 => (
                    Field::new(name, DataType::Float64, true),
                    Arc::new(
                        sums.iter()
                            .map(|s| match s {
                                Sum::Float(f) => Some(*f),
                                _ => None,
                            })
                            .collect::<Float64Array>(),
                    ),
                ),
                _ => {
                    let scale = match ty {
                        DataType::Decimal128(_, s) => *s,
                        _ => 0,
                    };
                    let a = sums
                        .iter()
                        .map(|s| match s {
                            Sum::Int(v) => Some(*v),
                            _ => None,
                        })
                        .collect::<Decimal128Array>()
                        .with_precision_and_scale(38, scale)
                        .map_err(arrow)?;
                    (Field::new(name, a.data_type().clone(), true), Arc::new(a))
                }
            };
            fields.push(field);
            columns.push(array);
        }
        let schema: SchemaRef = Arc::new(Schema::new(fields));
        Ok(Some(RecordBatch::try_new(schema, columns).map_err(arrow)?))
    }

    /// Write the groups as run `run_id`'s into the rollup table (replacing the run's).
    pub(crate) async fn write(&self, conn: &mut PgConnection, run_id: Uuid) -> Result<()> {
        let t = self.rollup.table.sql();
        sqlx::query(sqlf!("DELETE FROM {t} WHERE run_id = $1"))
            .bind(run_id)
            .execute(&mut *conn)
            .await?;
        let Some(batch) = self.batch(run_id)? else {
            return Ok(());
        };
        let columns = crate::types::table_columns(conn, &self.rollup.table).await?;
        let encoder = CopyEncoder::for_table(&batch.schema(), &columns)?;
        let mut buf = BytesMut::with_capacity(encoder.encoded_size_hint(&batch) + 64);
        buf.extend_from_slice(COPY_HEADER);
        encoder.encode(&batch, &mut buf)?;
        buf.extend_from_slice(COPY_TRAILER);
        let mut copy = conn
            .copy_in_raw(&format!(
                "COPY {t} {} FROM STDIN (FORMAT binary)",
                encoder.column_list_sql()
            ))
            .await?;
        copy.send(buf.freeze()).await?;
        copy.finish().await?;
        Ok(())
    }
}

fn arrow(e: arrow_schema::ArrowError) -> Error {
    Error::Mapping(format!("rollup: {e}"))
}

fn add_sums(sums: &mut [Sum], group: &[usize], col: &dyn Array, name: &str) -> Result<()> {
    fn ints<I: Into<i128> + Copy>(
        sums: &mut [Sum],
        group: &[usize],
        values: impl Iterator<Item = Option<I>>,
        name: &str,
    ) -> Result<()> {
        for (g, v) in group.iter().zip(values) {
            if let Some(v) = v {
                sums[*g] = sums[*g].plus(Sum::Int(v.into()), name)?;
            }
        }
        Ok(())
    }
    fn floats(sums: &mut [Sum], group: &[usize], values: impl Iterator<Item = Option<f64>>) {
        for (g, v) in group.iter().zip(values) {
            if let Some(v) = v {
                let s = match sums[*g] {
                    Sum::Float(s) => s,
                    _ => 0.0,
                };
                sums[*g] = Sum::Float(s + v);
            }
        }
    }
    match col.data_type() {
        DataType::Int8 => ints(sums, group, col.as_primitive::<Int8Type>().iter(), name),
        DataType::Int16 => ints(sums, group, col.as_primitive::<Int16Type>().iter(), name),
        DataType::Int32 => ints(sums, group, col.as_primitive::<Int32Type>().iter(), name),
        DataType::Int64 => ints(sums, group, col.as_primitive::<Int64Type>().iter(), name),
        DataType::Decimal128(_, _) => ints(
            sums,
            group,
            col.as_primitive::<Decimal128Type>().iter(),
            name,
        ),
        DataType::Float32 => {
            let v = col.as_primitive::<Float32Type>().iter();
            floats(sums, group, v.map(|x| x.map(f64::from)));
            Ok(())
        }
        DataType::Float64 => {
            floats(sums, group, col.as_primitive::<Float64Type>().iter());
            Ok(())
        }
        other => Err(Error::Mapping(format!(
            "rollup sum of `{name}`: cannot sum Arrow {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{FixedSizeBinaryArray, Int32Array, StringViewArray};

    /// `cargo test --release -p etl-sink-postgres rollup_speed -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn rollup_speed() {
        let n = 8192;
        let species: Vec<[u8; 16]> = (0..278u128).map(|i| (i * 7919).to_be_bytes()).collect();
        let terms: Vec<String> = (0..20).map(|i| format!("term {i}")).collect();
        let countries: Vec<String> = (0..200).map(|i| format!("C{i:02}")).collect();
        let mut batches = Vec::new();
        for b in 0..61 {
            let r = |i: usize, m: usize| {
                let x = ((i + b * n) as u64 ^ (m as u64) << 40).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                ((x >> 29) ^ x) as usize % m
            };
            let sp =
                FixedSizeBinaryArray::try_from_iter((0..n).map(|i| species[r(i, 278)])).unwrap();
            let year = Int32Array::from_iter_values((0..n).map(|i| 1975 + (r(i, 51) % 50) as i32));
            let term = StringViewArray::from_iter_values((0..n).map(|i| &terms[r(i, 21) % 20]));
            let imp =
                StringViewArray::from_iter_values((0..n).map(|i| &countries[r(i, 201) % 200]));
            let qty = Decimal128Array::from_iter_values((0..n).map(|i| i as i128))
                .with_precision_and_scale(38, 10)
                .unwrap();
            let schema = Arc::new(Schema::new(vec![
                Field::new("species_id", DataType::FixedSizeBinary(16), false),
                Field::new("year", DataType::Int32, false),
                Field::new("term", DataType::Utf8View, false),
                Field::new("importer", DataType::Utf8View, false),
                Field::new("quantity", DataType::Decimal128(38, 10), false),
            ]));
            let cols: Vec<ArrayRef> = vec![
                Arc::new(sp),
                Arc::new(year),
                Arc::new(term),
                Arc::new(imp),
                Arc::new(qty),
            ];
            batches.push(RecordBatch::try_new(schema, cols).unwrap());
        }
        let t = TableName::new("x");
        let rollups = [
            Rollup::new(t.clone(), ["species_id", "year", "term"], ["quantity"]),
            Rollup::new(t.clone(), ["species_id", "importer"], [] as [&str; 0]),
        ];
        for r in rollups {
            let mut g = Groups::new(Arc::new(r));
            let t0 = std::time::Instant::now();
            for b in &batches {
                g.add(b).unwrap();
            }
            let el = t0.elapsed();
            println!(
                "{:?}: {} rows in {:?} = {:.0} ns/row, {} groups",
                g.rollup.keys,
                n * batches.len(),
                el,
                el.as_nanos() as f64 / (n * batches.len()) as f64,
                g.rows.len()
            );
        }
    }
}
