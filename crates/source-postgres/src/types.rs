//! The row decoders, over the shared type map of `etl-postgres`
//! ([`etl_postgres::types`]):
//!
//! every type of the map is read except `bytea` and integer arrays ([`readable`]); types
//! read as text (`text`, `uuid`, `json`, `jsonb`, `numeric`) are cast to `text` in the
//! select list, and `numeric` text is parsed into `Decimal128(p, s)`.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder, Int16Builder,
    Int32Builder, Int64Builder, ListBuilder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use etl_core::codec::{self, Rounding};
pub use etl_postgres::ident::quote_ident;
pub use etl_postgres::types::PgType;
use sqlx::Row;
use sqlx::postgres::PgRow;

/// Whether the source reads columns of this type (everything in the map but `bytea` and
/// integer arrays).
pub fn readable(t: PgType) -> bool {
    !matches!(t, PgType::Bytea | PgType::Int4Array | PgType::Int8Array)
}

/// The select expression for column expression `expr`: types read as text are cast.
pub(crate) fn select_expr(t: PgType, expr: &str) -> String {
    match t {
        PgType::Text | PgType::Json | PgType::Jsonb | PgType::Uuid | PgType::Numeric => {
            format!("{expr}::text")
        }
        PgType::TextArray => format!("{expr}::text[]"),
        _ => expr.to_owned(),
    }
}

/// One resolved column of an entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgColumn {
    /// Column name.
    pub name: String,
    /// Its PostgreSQL type, in the shared map.
    pub pg_type: PgType,
    /// The Arrow type it reads as (`numeric(p, s)` with its own precision and scale).
    pub data_type: DataType,
    /// The SQL type text usable in a cast (`timestamp without time zone`, `numeric(12,2)`).
    pub sql_type: String,
    /// Whether it may be null.
    pub nullable: bool,
}

/// The Arrow schema of `columns`.
pub fn arrow_schema(columns: &[PgColumn]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(&c.name, c.data_type.clone(), c.nullable))
            .collect::<Vec<_>>(),
    ))
}

/// Parse numeric text (`-12.345`, as PostgreSQL prints it) into a value scaled by
/// `10^scale`, rounding half away from zero; `None` for `NaN`, infinities, bad text or
/// more than `precision` digits. The shared parser is [`etl_core::codec::parse_decimal`].
pub fn parse_decimal(text: &str, precision: u8, scale: i8) -> Option<i128> {
    codec::parse_decimal(
        text.trim().as_bytes(),
        precision,
        scale,
        Rounding::HalfAwayFromZero,
    )
    .ok()
}

/// Appends decoded rows to Arrow builders, one per column.
pub(crate) struct RowDecoder {
    schema: SchemaRef,
    columns: Vec<PgColumn>,
    builders: Vec<ColBuilder>,
    rows: usize,
}

enum ColBuilder {
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    Dec(Decimal128Builder, u8, i8),
    F32(Float32Builder),
    F64(Float64Builder),
    Str(StringBuilder),
    Bool(BooleanBuilder),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder, bool),
    List(ListBuilder<StringBuilder>),
}

/// Why a row could not be decoded into its Arrow types (it becomes a reject).
pub(crate) struct BadValue {
    pub column: String,
    pub reason: String,
}

impl RowDecoder {
    pub(crate) fn new(columns: &[PgColumn], schema: SchemaRef, capacity: usize) -> Self {
        let builders = columns
            .iter()
            .map(|c| match (c.pg_type, &c.data_type) {
                (PgType::Int2, _) => ColBuilder::I16(Int16Builder::with_capacity(capacity)),
                (PgType::Int4, _) => ColBuilder::I32(Int32Builder::with_capacity(capacity)),
                (PgType::Int8, _) => ColBuilder::I64(Int64Builder::with_capacity(capacity)),
                (PgType::Numeric, DataType::Decimal128(precision, scale)) => ColBuilder::Dec(
                    Decimal128Builder::with_capacity(capacity),
                    *precision,
                    *scale,
                ),
                (PgType::Float4, _) => ColBuilder::F32(Float32Builder::with_capacity(capacity)),
                (PgType::Float8, _) => ColBuilder::F64(Float64Builder::with_capacity(capacity)),
                (PgType::Bool, _) => ColBuilder::Bool(BooleanBuilder::with_capacity(capacity)),
                (PgType::Date, _) => ColBuilder::Date(Date32Builder::with_capacity(capacity)),
                (PgType::Timestamp, _) => {
                    ColBuilder::Ts(TimestampMicrosecondBuilder::with_capacity(capacity), false)
                }
                (PgType::Timestamptz, _) => {
                    ColBuilder::Ts(TimestampMicrosecondBuilder::with_capacity(capacity), true)
                }
                (PgType::TextArray, _) => ColBuilder::List(ListBuilder::new(StringBuilder::new())),
                // Text, json, jsonb, uuid (read as text); the rest is refused by `readable`.
                _ => ColBuilder::Str(StringBuilder::with_capacity(capacity, capacity * 16)),
            })
            .collect();
        RowDecoder {
            schema,
            columns: columns.to_vec(),
            builders,
            rows: 0,
        }
    }

    /// Rows appended so far.
    pub(crate) fn len(&self) -> usize {
        self.rows
    }

    /// Decode `row` and append it; a value that does not fit its Arrow type is returned as
    /// a [`BadValue`] and nothing of the row is appended.
    pub(crate) fn append(&mut self, row: &PgRow) -> Result<Result<(), BadValue>, sqlx::Error> {
        // First pass: values that may be bad (decimals), so a bad row appends nothing.
        let mut decimals: Vec<Option<i128>> = Vec::new();
        for (i, b) in self.builders.iter().enumerate() {
            if let ColBuilder::Dec(_, p, s) = b {
                let text: Option<String> = row.try_get(i)?;
                match text {
                    None => decimals.push(None),
                    Some(t) => match parse_decimal(&t, *p, *s) {
                        Some(v) => decimals.push(Some(v)),
                        None => {
                            return Ok(Err(BadValue {
                                column: self.columns[i].name.clone(),
                                reason: format!(
                                    "numeric value {t} does not fit Decimal128({p}, {s})"
                                ),
                            }));
                        }
                    },
                }
            }
        }
        let mut dec = decimals.into_iter();
        for (i, b) in self.builders.iter_mut().enumerate() {
            match b {
                ColBuilder::I16(b) => b.append_option(row.try_get::<Option<i16>, _>(i)?),
                ColBuilder::I32(b) => b.append_option(row.try_get::<Option<i32>, _>(i)?),
                ColBuilder::I64(b) => b.append_option(row.try_get::<Option<i64>, _>(i)?),
                ColBuilder::Dec(b, _, _) => b.append_option(dec.next().flatten()),
                ColBuilder::F32(b) => b.append_option(row.try_get::<Option<f32>, _>(i)?),
                ColBuilder::F64(b) => b.append_option(row.try_get::<Option<f64>, _>(i)?),
                ColBuilder::Str(b) => b.append_option(row.try_get::<Option<&str>, _>(i)?),
                ColBuilder::Bool(b) => b.append_option(row.try_get::<Option<bool>, _>(i)?),
                ColBuilder::Date(b) => {
                    let d: Option<chrono::NaiveDate> = row.try_get(i)?;
                    b.append_option(d.map(|d| {
                        (d - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days()
                            as i32
                    }));
                }
                ColBuilder::Ts(b, tz) => {
                    let v = if *tz {
                        row.try_get::<Option<chrono::DateTime<chrono::Utc>>, _>(i)?
                            .map(|t| t.timestamp_micros())
                    } else {
                        row.try_get::<Option<chrono::NaiveDateTime>, _>(i)?
                            .map(|t| t.and_utc().timestamp_micros())
                    };
                    b.append_option(v);
                }
                ColBuilder::List(b) => {
                    let v: Option<Vec<Option<String>>> = row.try_get(i)?;
                    match v {
                        None => b.append_null(),
                        Some(items) => {
                            for item in items {
                                b.values().append_option(item);
                            }
                            b.append(true);
                        }
                    }
                }
            }
        }
        self.rows += 1;
        Ok(Ok(()))
    }

    /// Finish the arrays appended so far into a batch and start over.
    pub(crate) fn flush(&mut self) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let arrays: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(|b| -> Result<ArrayRef, arrow_schema::ArrowError> {
                Ok(match b {
                    ColBuilder::I16(b) => Arc::new(b.finish()),
                    ColBuilder::I32(b) => Arc::new(b.finish()),
                    ColBuilder::I64(b) => Arc::new(b.finish()),
                    ColBuilder::Dec(b, p, s) => {
                        Arc::new(b.finish().with_precision_and_scale(*p, *s)?)
                    }
                    ColBuilder::F32(b) => Arc::new(b.finish()),
                    ColBuilder::F64(b) => Arc::new(b.finish()),
                    ColBuilder::Str(b) => Arc::new(b.finish()),
                    ColBuilder::Bool(b) => Arc::new(b.finish()),
                    ColBuilder::Date(b) => Arc::new(b.finish()),
                    ColBuilder::Ts(b, tz) => {
                        let a = b.finish();
                        if *tz {
                            Arc::new(a.with_timezone("UTC"))
                        } else {
                            Arc::new(a)
                        }
                    }
                    ColBuilder::List(b) => Arc::new(b.finish()),
                })
            })
            .collect::<Result<_, _>>()?;
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), arrays)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_with_scale_and_rounding() {
        assert_eq!(parse_decimal("25.50", 12, 2), Some(2550));
        assert_eq!(parse_decimal(" -0.005 ", 12, 2), Some(-1));
        assert_eq!(parse_decimal("NaN", 12, 2), None);
    }

    #[test]
    fn text_like_types_are_cast() {
        assert_eq!(select_expr(PgType::Uuid, "r.id"), "r.id::text");
        assert_eq!(select_expr(PgType::TextArray, "r.tags"), "r.tags::text[]");
        assert_eq!(select_expr(PgType::Int8, "r.n"), "r.n");
        assert!(!readable(PgType::Bytea));
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }
}
