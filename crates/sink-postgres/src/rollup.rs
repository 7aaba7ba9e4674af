//! [`Rollup`]: group-by counts and sums of the rows a [`PgLoad`](crate::PgLoad) writes,
//! computed while the batches stream through the load and committed in each unit's own
//! transaction, so a summary after the load needs no second scan of the table.
//!
//! Each unit writes its partial groups (`run_id`, `unit`, the key columns, `rows`, one sum
//! per summed column) into the rollup table in the transaction that commits the unit's
//! rows and its ledger row: a unit retried or reloaded by `--resume` replaces its partial
//! groups, a unit rolled back leaves none. [`Rollup::groups_sql`] sums the partials of the
//! units the ledger records as completed, which is exactly what the load table holds.
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

/// Group-by counts and sums of the loaded rows, kept per unit in `table` (see the module
/// docs).
#[derive(Debug, Clone)]
pub struct Rollup {
    /// The table of partial groups (created by the load when missing).
    pub table: TableName,
    /// The columns grouped by (names of the load's batch columns and target columns).
    pub keys: Vec<String>,
    /// The columns summed (integers, decimals or floats); NULLs are skipped.
    pub sums: Vec<String>,
}

impl Rollup {
    /// Partial groups of `keys` with the row count and the sums of `sums`, kept in `table`.
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

    /// A query of the groups of run `run_id` (`$1`): the key columns, `rows` and the sums,
    /// summed over the units `ledger` records as completed in that run.
    pub fn groups_sql(&self, ledger: &LedgerTables) -> String {
        let keys: Vec<String> = self.keys.iter().map(|k| quote_ident(k)).collect();
        let mut cols = keys.clone();
        cols.push("sum(r.rows)::bigint AS rows".into());
        for s in &self.sums {
            let q = quote_ident(s);
            cols.push(format!("sum(r.{q}) AS {q}"));
        }
        format!(
            "SELECT {} FROM {} r JOIN {} u ON u.run_id = r.run_id AND u.file_name = r.unit AND u.status = 'completed'
              WHERE r.run_id = $1 GROUP BY {}",
            cols.join(", "),
            self.table.sql(),
            ledger.units.sql(),
            keys.join(", ")
        )
    }

    /// The rows of run `run_id`'s completed units according to the rollup, and according
    /// to the ledger: equal when every completed unit wrote its partial groups.
    ///
    /// # Errors
    /// A query failed (the rollup table is missing, ...).
    pub async fn reconcile(
        &self,
        conn: &mut PgConnection,
        ledger: &LedgerTables,
        run_id: Uuid,
    ) -> Result<(i64, i64)> {
        let sql = sqlf!(
            "SELECT (SELECT coalesce(sum(r.rows), 0)::bigint FROM {t} r JOIN {u} u
                       ON u.run_id = r.run_id AND u.file_name = r.unit AND u.status = 'completed'
                      WHERE r.run_id = $1),
                    (SELECT coalesce(sum(records_inserted), 0)::bigint FROM {u}
                      WHERE run_id = $1 AND status = 'completed')",
            t = self.table.sql(),
            u = ledger.units.sql()
        );
        Ok(sqlx::query_as(sql).bind(run_id).fetch_one(conn).await?)
    }

    /// Create the rollup table when missing, typed like `target`'s key columns; on a new
    /// run (not `resume`), drop the partial groups of every other run.
    pub(crate) async fn begin_run(
        &self,
        conn: &mut PgConnection,
        target: &TableName,
        run_id: Uuid,
        resume: bool,
    ) -> Result<()> {
        let columns = crate::types::table_columns(conn, target).await?;
        let mut defs = vec![
            "run_id uuid NOT NULL".to_owned(),
            "unit text NOT NULL".into(),
        ];
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
             CREATE INDEX IF NOT EXISTS {} ON {t} (run_id, unit)",
            defs.join(", "),
            quote_ident(&format!("{}_run_unit_idx", self.table.name))
        ))
        .execute(&mut *conn)
        .await?;
        if !resume {
            sqlx::query(sqlf!("DELETE FROM {t} WHERE run_id <> $1"))
                .bind(run_id)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}

/// The groups of one unit for one [`Rollup`], filled batch by batch.
pub(crate) struct Groups {
    rollup: Arc<Rollup>,
    converter: Option<RowConverter>,
    index: HashMap<Box<[u8]>, usize>,
    keys: Vec<Box<[u8]>>,
    rows: Vec<i64>,
    sums: Vec<Vec<Sum>>,
    sum_types: Vec<DataType>,
}

impl std::fmt::Debug for Groups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Groups")
            .field("table", &self.rollup.table)
            .field("groups", &self.keys.len())
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

impl Groups {
    pub(crate) fn new(rollup: Arc<Rollup>) -> Self {
        let n = rollup.sums.len();
        Groups {
            rollup,
            converter: None,
            index: HashMap::new(),
            keys: Vec::new(),
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

    /// Add the rows of `batch`.
    pub(crate) fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        let keys = self
            .rollup
            .keys
            .iter()
            .map(|k| Self::column(batch, k).cloned())
            .collect::<Result<Vec<_>>>()?;
        if self.converter.is_none() {
            let fields = keys
                .iter()
                .map(|a| SortField::new(a.data_type().clone()))
                .collect();
            self.converter = Some(RowConverter::new(fields).map_err(arrow)?);
        }
        let rows = self
            .converter
            .as_ref()
            .expect("set above")
            .convert_columns(&keys)
            .map_err(arrow)?;
        let mut group = Vec::with_capacity(batch.num_rows());
        for row in rows.iter() {
            let bytes = row.as_ref();
            let g = match self.index.get(bytes) {
                Some(&g) => g,
                None => {
                    let g = self.keys.len();
                    self.index.insert(bytes.into(), g);
                    self.keys.push(bytes.into());
                    self.rows.push(0);
                    for s in &mut self.sums {
                        s.push(Sum::Null);
                    }
                    g
                }
            };
            self.rows[g] += 1;
            group.push(g);
        }
        for (i, name) in self.rollup.sums.clone().iter().enumerate() {
            let col = Self::column(batch, name)?;
            if self.sum_types.len() <= i {
                self.sum_types.push(col.data_type().clone());
            }
            add_sums(&mut self.sums[i], &group, col.as_ref(), name)?;
        }
        Ok(())
    }

    /// The groups as a batch of the rollup table's columns.
    fn batch(&self, run_id: Uuid, unit: &str) -> Result<Option<RecordBatch>> {
        let Some(converter) = &self.converter else {
            return Ok(None);
        };
        let parser = converter.parser();
        let keys = converter
            .convert_rows(self.keys.iter().map(|k| parser.parse(k)))
            .map_err(arrow)?;
        let n = self.keys.len();
        let mut fields = vec![
            Field::new("run_id", DataType::Utf8, false),
            Field::new("unit", DataType::Utf8, false),
        ];
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![run_id.to_string(); n])),
            Arc::new(StringArray::from(vec![unit; n])),
        ];
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

    /// Replace the unit's partial groups in the rollup table (inside the unit's
    /// transaction on `conn`).
    pub(crate) async fn write(
        &self,
        conn: &mut PgConnection,
        run_id: Uuid,
        unit: &str,
    ) -> Result<()> {
        let t = self.rollup.table.sql();
        sqlx::query(sqlf!("DELETE FROM {t} WHERE run_id = $1 AND unit = $2"))
            .bind(run_id)
            .bind(unit)
            .execute(&mut *conn)
            .await?;
        let Some(batch) = self.batch(run_id, unit)? else {
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
                let s = match sums[*g] {
                    Sum::Int(s) => s,
                    _ => 0,
                };
                let s = s.checked_add(v.into()).ok_or_else(|| {
                    Error::Mapping(format!("rollup sum of `{name}` overflows 128 bits"))
                })?;
                sums[*g] = Sum::Int(s);
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
