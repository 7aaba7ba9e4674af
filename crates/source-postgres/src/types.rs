//! The PostgreSQL -> Arrow type map and the row decoders.
//!
//! | PostgreSQL | Arrow |
//! | --- | --- |
//! | `int2`, `int4`, `int8` | `Int16`, `Int32`, `Int64` |
//! | `numeric(p, s)` | `Decimal128(p, s)`; unconstrained `numeric`: `Decimal128(38, default_scale)` |
//! | `float4`, `float8` | `Float32`, `Float64` |
//! | `text`, `varchar`, `char`, `name`, `citext` | `Utf8` |
//! | `bool` | `Boolean` |
//! | `date` | `Date32` |
//! | `timestamp` | `Timestamp(µs, None)` |
//! | `timestamptz` | `Timestamp(µs, "UTC")` |
//! | `uuid` | `Utf8` (canonical hyphenated form) |
//! | `json`, `jsonb` | `Utf8` (the JSON text) |
//! | `text[]`, `varchar[]` | `List<Utf8>` |

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder, Int16Builder,
    Int32Builder, Int64Builder, ListBuilder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use sqlx::Row;
use sqlx::postgres::PgRow;

/// The PostgreSQL type of a column, as far as the Arrow mapping cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgKind {
    /// `int2`.
    Int2,
    /// `int4`.
    Int4,
    /// `int8`.
    Int8,
    /// `numeric(precision, scale)`.
    Numeric {
        /// Decimal digits in all.
        precision: u8,
        /// Digits after the point.
        scale: i8,
    },
    /// `float4`.
    Float4,
    /// `float8`.
    Float8,
    /// `text`, `varchar`, `char`, `name`, `citext`, `uuid`, `json`, `jsonb`: read as text.
    Text,
    /// `bool`.
    Bool,
    /// `date`.
    Date,
    /// `timestamp` (without time zone).
    Timestamp,
    /// `timestamptz`.
    Timestamptz,
    /// `text[]` and `varchar[]`.
    TextArray,
}

impl PgKind {
    /// Map a PostgreSQL type name (`int4`, `INT4`, `_text`, `TEXT[]`, ...) and its type
    /// modifier (`atttypmod`, -1 when unknown) to a kind; `None` if unsupported.
    pub fn from_pg(type_name: &str, typmod: i32, default_scale: i8) -> Option<PgKind> {
        let name = type_name.to_ascii_lowercase();
        let name = match name.strip_suffix("[]") {
            Some(base) => format!("_{base}"),
            None => name,
        };
        Some(match name.as_str() {
            "int2" | "smallint" => PgKind::Int2,
            "int4" | "integer" | "int" => PgKind::Int4,
            "int8" | "bigint" => PgKind::Int8,
            "numeric" | "decimal" => {
                if typmod >= 4 {
                    let m = typmod - 4;
                    let precision = ((m >> 16) & 0xffff) as u8;
                    let scale = (m & 0xffff) as i16 as i8;
                    PgKind::Numeric {
                        precision: precision.clamp(1, 38),
                        scale,
                    }
                } else {
                    PgKind::Numeric {
                        precision: 38,
                        scale: default_scale,
                    }
                }
            }
            "float4" | "real" => PgKind::Float4,
            "float8" | "double precision" => PgKind::Float8,
            "text" | "varchar" | "bpchar" | "char" | "name" | "citext" | "uuid" | "json"
            | "jsonb" | "character varying" | "character" => PgKind::Text,
            "bool" | "boolean" => PgKind::Bool,
            "date" => PgKind::Date,
            "timestamp" | "timestamp without time zone" => PgKind::Timestamp,
            "timestamptz" | "timestamp with time zone" => PgKind::Timestamptz,
            "_text" | "_varchar" | "_bpchar" | "_name" | "_citext" => PgKind::TextArray,
            _ => return None,
        })
    }

    /// The Arrow type of this kind.
    pub fn arrow_type(self) -> DataType {
        match self {
            PgKind::Int2 => DataType::Int16,
            PgKind::Int4 => DataType::Int32,
            PgKind::Int8 => DataType::Int64,
            PgKind::Numeric { precision, scale } => DataType::Decimal128(precision, scale),
            PgKind::Float4 => DataType::Float32,
            PgKind::Float8 => DataType::Float64,
            PgKind::Text => DataType::Utf8,
            PgKind::Bool => DataType::Boolean,
            PgKind::Date => DataType::Date32,
            PgKind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            PgKind::Timestamptz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            PgKind::TextArray => {
                DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
            }
        }
    }

    /// Whether the key column can split into integer ranges.
    pub fn is_integer(self) -> bool {
        matches!(self, PgKind::Int2 | PgKind::Int4 | PgKind::Int8)
    }

    /// The select expression for column expression `expr`: types read as text are cast.
    pub(crate) fn select_expr(self, expr: &str) -> String {
        match self {
            PgKind::Text | PgKind::Numeric { .. } => format!("{expr}::text"),
            PgKind::TextArray => format!("{expr}::text[]"),
            _ => expr.to_owned(),
        }
    }
}

/// One resolved column of an entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgColumn {
    /// Column name.
    pub name: String,
    /// Its kind.
    pub kind: PgKind,
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
            .map(|c| Field::new(&c.name, c.kind.arrow_type(), c.nullable))
            .collect::<Vec<_>>(),
    ))
}

/// Quote an identifier for SQL (`my"col` -> `"my""col"`).
pub fn quote_ident(name: &str) -> String {
    let mut s = String::with_capacity(name.len() + 2);
    s.push('"');
    for c in name.chars() {
        if c == '"' {
            s.push('"');
        }
        s.push(c);
    }
    s.push('"');
    s
}

/// Parse a decimal text (`-12.345`) into a value scaled by `10^scale`, rounding half away
/// from zero; `None` for `NaN`, infinities, bad text or more than `precision` digits.
pub fn parse_decimal(text: &str, precision: u8, scale: i8) -> Option<i128> {
    let t = text.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut v: i128 = 0;
    for b in int.bytes() {
        v = v.checked_mul(10)?.checked_add((b - b'0') as i128)?;
    }
    let mut round_up = false;
    if scale >= 0 {
        let s = scale as usize;
        for i in 0..s {
            let d = frac.as_bytes().get(i).map_or(0, |b| b - b'0');
            v = v.checked_mul(10)?.checked_add(d as i128)?;
        }
        if let Some(next) = frac.as_bytes().get(s) {
            round_up = *next >= b'5';
        }
    } else {
        let div = 10i128.checked_pow((-scale) as u32)?;
        let rem = v % div;
        v /= div;
        round_up = rem * 2 >= div;
    }
    if round_up {
        v = v.checked_add(1)?;
    }
    if v >= 10i128.checked_pow(precision as u32)? {
        return None;
    }
    Some(if neg { -v } else { v })
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
            .map(|c| match c.kind {
                PgKind::Int2 => ColBuilder::I16(Int16Builder::with_capacity(capacity)),
                PgKind::Int4 => ColBuilder::I32(Int32Builder::with_capacity(capacity)),
                PgKind::Int8 => ColBuilder::I64(Int64Builder::with_capacity(capacity)),
                PgKind::Numeric { precision, scale } => {
                    ColBuilder::Dec(Decimal128Builder::with_capacity(capacity), precision, scale)
                }
                PgKind::Float4 => ColBuilder::F32(Float32Builder::with_capacity(capacity)),
                PgKind::Float8 => ColBuilder::F64(Float64Builder::with_capacity(capacity)),
                PgKind::Text => {
                    ColBuilder::Str(StringBuilder::with_capacity(capacity, capacity * 16))
                }
                PgKind::Bool => ColBuilder::Bool(BooleanBuilder::with_capacity(capacity)),
                PgKind::Date => ColBuilder::Date(Date32Builder::with_capacity(capacity)),
                PgKind::Timestamp => {
                    ColBuilder::Ts(TimestampMicrosecondBuilder::with_capacity(capacity), false)
                }
                PgKind::Timestamptz => {
                    ColBuilder::Ts(TimestampMicrosecondBuilder::with_capacity(capacity), true)
                }
                PgKind::TextArray => ColBuilder::List(ListBuilder::new(StringBuilder::new())),
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
        assert_eq!(parse_decimal("25.5", 12, 2), Some(2550));
        assert_eq!(parse_decimal("-0.005", 12, 2), Some(-1));
        assert_eq!(parse_decimal("0.004", 12, 2), Some(0));
        assert_eq!(parse_decimal("1000", 12, 2), Some(100_000));
        assert_eq!(parse_decimal("NaN", 12, 2), None);
        assert_eq!(parse_decimal("123456", 5, 0), None);
        assert_eq!(parse_decimal("1250", 5, -2), Some(13));
    }

    #[test]
    fn types_map_by_name_and_typmod() {
        // numeric(12,2): typmod = ((12 << 16) | 2) + 4
        let typmod = ((12 << 16) | 2) + 4;
        assert_eq!(
            PgKind::from_pg("numeric", typmod, 4),
            Some(PgKind::Numeric {
                precision: 12,
                scale: 2
            })
        );
        assert_eq!(
            PgKind::from_pg("NUMERIC", -1, 4),
            Some(PgKind::Numeric {
                precision: 38,
                scale: 4
            })
        );
        assert_eq!(PgKind::from_pg("TEXT[]", -1, 2), Some(PgKind::TextArray));
        assert_eq!(PgKind::from_pg("_varchar", -1, 2), Some(PgKind::TextArray));
        assert_eq!(PgKind::from_pg("jsonb", -1, 2), Some(PgKind::Text));
        assert_eq!(PgKind::from_pg("point", -1, 2), None);
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }
}
