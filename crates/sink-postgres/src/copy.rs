//! Arrow record batches -> PostgreSQL binary `COPY` bytes.
//!
//! The encoder is pure (batches in, bytes out) so it is tested without a server and can
//! run on the blocking pool while the previous chunk is on the wire.

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Schema, TimeUnit};
use bytes::{BufMut, BytesMut};
use etl_core::codec;

use crate::types::{PgColumn, PgType};
use crate::{Error, Result};

/// The 19-byte binary COPY header (signature, flags, extension length).
pub const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The binary COPY trailer (field count -1).
pub const COPY_TRAILER: &[u8] = &[0xff, 0xff];

/// Microseconds between 1970-01-01 and PostgreSQL's epoch 2000-01-01.
const PG_EPOCH_US: i64 = 946_684_800_000_000;
/// Days between 1970-01-01 and 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;
/// PostgreSQL's `timestamp` range in microseconds since 2000-01-01: from 4714-11-24 BC
/// (`MIN_TIMESTAMP`) to before 294277-01-01 (`END_TIMESTAMP`); `timestamp_recv` refuses
/// anything else.
const PG_TS_RANGE: std::ops::Range<i64> = -211_813_488_000_000_000..9_223_371_331_200_000_000;
/// PostgreSQL's `date` range in days since 2000-01-01: Julian day 0 (4714-11-24 BC) to
/// before 5874898-01-01 (`DATE_END_JULIAN`).
const PG_DATE_RANGE: std::ops::Range<i64> = -2_451_545..2_145_031_949;

/// An Arrow timestamp (`v * mul / div` microseconds since 1970, the division rounding
/// down) in PostgreSQL's microseconds since 2000, or `None` outside PostgreSQL's range
/// (never a wrapped value).
#[inline]
fn pg_timestamp(v: i64, mul: i64, div: i64) -> Option<i64> {
    let us = v
        .checked_mul(mul)?
        .div_euclid(div)
        .checked_sub(PG_EPOCH_US)?;
    PG_TS_RANGE.contains(&us).then_some(us)
}

/// An Arrow `Date32` (days since 1970) in PostgreSQL's days since 2000, or `None` outside
/// PostgreSQL's range.
#[inline]
fn pg_date(days: i32) -> Option<i32> {
    let d = days as i64 - PG_EPOCH_DAYS as i64;
    PG_DATE_RANGE.contains(&d).then_some(d as i32)
}

/// Which Arrow column goes to which PostgreSQL column, with the target type.
#[derive(Debug, Clone)]
pub struct ColumnMapping {
    /// Index of the Arrow column in the batch.
    pub source: usize,
    /// Target column name.
    pub target: String,
    /// Target type.
    pub pg_type: PgType,
}

/// Encodes batches of one schema into binary COPY tuples for a list of target columns.
#[derive(Debug, Clone)]
pub struct CopyEncoder {
    columns: Vec<ColumnMapping>,
}

impl CopyEncoder {
    /// Map every Arrow field to the target column of the same name.
    ///
    /// # Errors
    /// A field has no column of that name, or its type cannot be written to the column's
    /// type (the error names both); a target column ferry cannot encode.
    pub fn for_table(schema: &Schema, table_columns: &[PgColumn]) -> Result<Self> {
        let mut columns = Vec::new();
        for (i, f) in schema.fields().iter().enumerate() {
            let col = table_columns
                .iter()
                .find(|c| c.name == *f.name())
                .ok_or_else(|| Error::Mapping(format!("no target column `{}`", f.name())))?;
            let pg_type = col.pg_type.ok_or_else(|| {
                Error::Mapping(format!(
                    "column `{}` has type {} which ferry cannot write",
                    col.name, col.type_text
                ))
            })?;
            columns.push(ColumnMapping {
                source: i,
                target: col.name.clone(),
                pg_type,
            });
        }
        Self::new(schema, columns)
    }

    /// An encoder for explicit mappings.
    ///
    /// # Errors
    /// An Arrow type cannot be written to its target type.
    pub fn new(schema: &Schema, columns: Vec<ColumnMapping>) -> Result<Self> {
        for c in &columns {
            let f = schema.fields().get(c.source).ok_or_else(|| {
                Error::Mapping(format!("no source column #{} for `{}`", c.source, c.target))
            })?;
            if !supported(f.data_type(), c.pg_type) {
                return Err(Error::Mapping(format!(
                    "cannot write Arrow {} (field `{}`) to PostgreSQL {} (column `{}`)",
                    f.data_type(),
                    f.name(),
                    c.pg_type.sql_name(),
                    c.target
                )));
            }
        }
        Ok(CopyEncoder { columns })
    }

    /// The target columns, in COPY order.
    pub fn columns(&self) -> &[ColumnMapping] {
        &self.columns
    }

    /// The column list for the COPY statement: `("a", "b")`.
    pub fn column_list_sql(&self) -> String {
        let names: Vec<String> = self
            .columns
            .iter()
            .map(|c| crate::ident::quote_ident(&c.target))
            .collect();
        format!("({})", names.join(", "))
    }

    /// About how many bytes [`CopyEncoder::encode`] writes for `batch` (exact for
    /// fixed-width and text columns). Shared Utf8View buffers are not counted once per
    /// column, unlike `RecordBatch::get_array_memory_size`.
    pub fn encoded_size_hint(&self, batch: &RecordBatch) -> usize {
        let n = batch.num_rows();
        let mut size = n * (2 + 4 * self.columns.len());
        for m in &self.columns {
            let a = batch.column(m.source);
            size += match a.data_type() {
                DataType::Utf8 => a.as_string::<i32>().value_data().len(),
                DataType::LargeUtf8 => a.as_string::<i64>().value_data().len(),
                DataType::Utf8View => a
                    .as_string_view()
                    .views()
                    .iter()
                    .map(|v| *v as u32 as usize)
                    .sum::<usize>(),
                DataType::Decimal128(_, _) => n * 16,
                DataType::FixedSizeBinary(w) => n * *w as usize,
                d if d.is_primitive() => n * d.primitive_width().unwrap_or(8),
                _ => n * 16,
            } + usize::from(m.pg_type == PgType::Jsonb) * n;
        }
        size
    }

    /// Append the tuples of `batch` to `out` (no header or trailer).
    ///
    /// # Errors
    /// A value does not fit its target (an integer out of range, text that is not a uuid
    /// or number); the error names the column and the row in the batch.
    pub fn encode(&self, batch: &RecordBatch, out: &mut BytesMut) -> Result<()> {
        let cols: Vec<Col<'_>> = self
            .columns
            .iter()
            .map(|m| Col::new(batch.column(m.source), m))
            .collect::<Result<_>>()?;
        let n = batch.num_rows();
        out.reserve(self.encoded_size_hint(batch));
        let ncols = cols.len() as i16;
        for row in 0..n {
            out.put_i16(ncols);
            for c in &cols {
                c.write(row, out).map_err(|detail| Error::Encode {
                    column: c.name.to_owned(),
                    row,
                    detail,
                })?;
            }
        }
        Ok(())
    }
}

fn is_str(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

fn is_int(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
    )
}

fn supported(dt: &DataType, pg: PgType) -> bool {
    use PgType::*;
    match dt {
        DataType::Null => true,
        DataType::Boolean => pg == Bool,
        d if is_int(d) => matches!(pg, Int2 | Int4 | Int8 | Numeric | Float8 | Float4 | Text),
        DataType::Float32 | DataType::Float64 => matches!(pg, Float4 | Float8 | Numeric),
        DataType::Decimal128(_, _) => matches!(pg, Numeric | Float8 | Float4),
        d if is_str(d) => matches!(pg, Text | Json | Jsonb | Uuid | Numeric),
        DataType::FixedSizeBinary(16) => matches!(pg, Uuid | Bytea),
        DataType::Binary | DataType::LargeBinary => pg == Bytea,
        DataType::Date32 => pg == Date,
        DataType::Timestamp(_, _) => matches!(pg, Timestamp | Timestamptz),
        DataType::List(f) => match f.data_type() {
            d if is_str(d) => pg == TextArray,
            DataType::Int32 => pg == Int4Array,
            DataType::Int64 => matches!(pg, Int8Array),
            _ => false,
        },
        _ => false,
    }
}

enum Vals<'a> {
    Null,
    Bool(&'a arrow_array::BooleanArray),
    I8(&'a [i8]),
    I16(&'a [i16]),
    I32(&'a [i32]),
    I64(&'a [i64]),
    U8(&'a [u8]),
    U16(&'a [u16]),
    U32(&'a [u32]),
    U64(&'a [u64]),
    F32(&'a [f32]),
    F64(&'a [f64]),
    Dec(&'a [i128], i8),
    Utf8(&'a arrow_array::StringArray),
    LargeUtf8(&'a arrow_array::LargeStringArray),
    View(&'a arrow_array::StringViewArray),
    Fixed(&'a arrow_array::FixedSizeBinaryArray),
    Bin(&'a arrow_array::BinaryArray),
    LargeBin(&'a arrow_array::LargeBinaryArray),
    Date(&'a [i32]),
    Ts(&'a [i64], i64, i64),
    List(&'a arrow_array::ListArray),
}

struct Col<'a> {
    name: &'a str,
    nulls: Option<&'a arrow_buffer::NullBuffer>,
    vals: Vals<'a>,
    pg: PgType,
}

impl<'a> Col<'a> {
    fn new(array: &'a ArrayRef, m: &'a ColumnMapping) -> Result<Self> {
        let vals = match array.data_type() {
            DataType::Null => Vals::Null,
            DataType::Boolean => Vals::Bool(array.as_boolean()),
            DataType::Int8 => Vals::I8(array.as_primitive::<Int8Type>().values()),
            DataType::Int16 => Vals::I16(array.as_primitive::<Int16Type>().values()),
            DataType::Int32 => Vals::I32(array.as_primitive::<Int32Type>().values()),
            DataType::Int64 => Vals::I64(array.as_primitive::<Int64Type>().values()),
            DataType::UInt8 => Vals::U8(array.as_primitive::<UInt8Type>().values()),
            DataType::UInt16 => Vals::U16(array.as_primitive::<UInt16Type>().values()),
            DataType::UInt32 => Vals::U32(array.as_primitive::<UInt32Type>().values()),
            DataType::UInt64 => Vals::U64(array.as_primitive::<UInt64Type>().values()),
            DataType::Float32 => Vals::F32(array.as_primitive::<Float32Type>().values()),
            DataType::Float64 => Vals::F64(array.as_primitive::<Float64Type>().values()),
            DataType::Decimal128(_, s) => {
                Vals::Dec(array.as_primitive::<Decimal128Type>().values(), *s)
            }
            DataType::Utf8 => Vals::Utf8(array.as_string::<i32>()),
            DataType::LargeUtf8 => Vals::LargeUtf8(array.as_string::<i64>()),
            DataType::Utf8View => Vals::View(array.as_string_view()),
            DataType::FixedSizeBinary(_) => Vals::Fixed(array.as_fixed_size_binary()),
            DataType::Binary => Vals::Bin(array.as_binary::<i32>()),
            DataType::LargeBinary => Vals::LargeBin(array.as_binary::<i64>()),
            DataType::Date32 => Vals::Date(array.as_primitive::<Date32Type>().values()),
            DataType::Timestamp(unit, _) => {
                let (v, mul, div) = match unit {
                    TimeUnit::Second => (
                        array
                            .as_primitive::<TimestampSecondType>()
                            .values()
                            .as_ref(),
                        1_000_000,
                        1,
                    ),
                    TimeUnit::Millisecond => (
                        array
                            .as_primitive::<TimestampMillisecondType>()
                            .values()
                            .as_ref(),
                        1_000,
                        1,
                    ),
                    TimeUnit::Microsecond => (
                        array
                            .as_primitive::<TimestampMicrosecondType>()
                            .values()
                            .as_ref(),
                        1,
                        1,
                    ),
                    TimeUnit::Nanosecond => (
                        array
                            .as_primitive::<TimestampNanosecondType>()
                            .values()
                            .as_ref(),
                        1,
                        1_000,
                    ),
                };
                Vals::Ts(v, mul, div)
            }
            DataType::List(_) => Vals::List(array.as_list::<i32>()),
            other => {
                return Err(Error::Mapping(format!(
                    "cannot encode Arrow {other} (column `{}`)",
                    m.target
                )));
            }
        };
        Ok(Col {
            name: &m.target,
            nulls: array.nulls(),
            vals,
            pg: m.pg_type,
        })
    }

    #[inline]
    fn write(&self, row: usize, out: &mut BytesMut) -> std::result::Result<(), String> {
        if self.nulls.is_some_and(|n| n.is_null(row)) {
            out.put_i32(-1);
            return Ok(());
        }
        match &self.vals {
            Vals::Null => out.put_i32(-1),
            Vals::Bool(a) => {
                out.put_i32(1);
                out.put_u8(a.value(row) as u8);
            }
            Vals::I8(v) => write_int(v[row] as i128, self.pg, out)?,
            Vals::I16(v) => write_int(v[row] as i128, self.pg, out)?,
            Vals::I32(v) => write_int(v[row] as i128, self.pg, out)?,
            Vals::I64(v) => write_int(v[row] as i128, self.pg, out)?,
            Vals::U8(v) => write_int(v[row] as i128, self.pg, out)?,
            Vals::U16(v) => write_int(v[row] as i128, self.pg, out)?,
            Vals::U32(v) => write_int(v[row] as i128, self.pg, out)?,
            Vals::U64(v) => write_int(v[row] as i128, self.pg, out)?,
            Vals::F32(v) => write_float(v[row] as f64, self.pg, out)?,
            Vals::F64(v) => write_float(v[row], self.pg, out)?,
            Vals::Dec(v, s) => match self.pg {
                PgType::Numeric => write_numeric_scaled(v[row], *s, out)?,
                _ => write_float(v[row] as f64 / 10f64.powi(*s as i32), self.pg, out)?,
            },
            Vals::Utf8(a) => write_str(a.value(row), self.pg, out)?,
            Vals::LargeUtf8(a) => write_str(a.value(row), self.pg, out)?,
            Vals::View(a) => write_str(a.value(row), self.pg, out)?,
            Vals::Fixed(a) => write_bytes(a.value(row), out),
            Vals::Bin(a) => write_bytes(a.value(row), out),
            Vals::LargeBin(a) => write_bytes(a.value(row), out),
            Vals::Date(v) => {
                let d = pg_date(v[row]).ok_or_else(|| {
                    format!(
                        "date {} days from 1970-01-01 is outside PostgreSQL's date range (4714-11-24 BC to 5874897-12-31)",
                        v[row]
                    )
                })?;
                out.put_i32(4);
                out.put_i32(d);
            }
            Vals::Ts(v, mul, div) => {
                let us = pg_timestamp(v[row], *mul, *div).ok_or_else(|| {
                    format!(
                        "timestamp {} ({}) is outside PostgreSQL's timestamp range (4714-11-24 BC to 294276-12-31)",
                        v[row],
                        match (*mul, *div) {
                            (1_000_000, _) => "seconds from 1970",
                            (1_000, _) => "milliseconds from 1970",
                            (_, 1_000) => "nanoseconds from 1970",
                            _ => "microseconds from 1970",
                        }
                    )
                })?;
                out.put_i32(8);
                out.put_i64(us);
            }
            Vals::List(a) => write_list(&a.value(row), self.pg, out)?,
        }
        Ok(())
    }
}

#[inline]
fn write_bytes(b: &[u8], out: &mut BytesMut) {
    out.put_i32(b.len() as i32);
    out.put_slice(b);
}

#[inline]
fn write_int(v: i128, pg: PgType, out: &mut BytesMut) -> std::result::Result<(), String> {
    match pg {
        PgType::Int2 => {
            let x = i16::try_from(v).map_err(|_| format!("{v} does not fit smallint"))?;
            out.put_i32(2);
            out.put_i16(x);
        }
        PgType::Int4 => {
            let x = i32::try_from(v).map_err(|_| format!("{v} does not fit integer"))?;
            out.put_i32(4);
            out.put_i32(x);
        }
        PgType::Int8 => {
            let x = i64::try_from(v).map_err(|_| format!("{v} does not fit bigint"))?;
            out.put_i32(8);
            out.put_i64(x);
        }
        PgType::Numeric => write_numeric_scaled(v, 0, out)?,
        PgType::Text => {
            let mut digits = [0u8; 40];
            let mut i = digits.len();
            let mut x = v.unsigned_abs();
            loop {
                i -= 1;
                digits[i] = b'0' + (x % 10) as u8;
                x /= 10;
                if x == 0 {
                    break;
                }
            }
            if v < 0 {
                i -= 1;
                digits[i] = b'-';
            }
            write_bytes(&digits[i..], out);
        }
        _ => write_float(v as f64, pg, out)?,
    }
    Ok(())
}

#[inline]
fn write_float(v: f64, pg: PgType, out: &mut BytesMut) -> std::result::Result<(), String> {
    match pg {
        PgType::Float4 => {
            out.put_i32(4);
            out.put_f32(v as f32);
        }
        PgType::Numeric => {
            if v.is_nan() {
                out.put_i32(8);
                out.put_i16(0);
                out.put_i16(0);
                out.put_u16(0xC000);
                out.put_i16(0);
            } else if v.is_infinite() {
                return Err(format!("{v} cannot be stored as numeric"));
            } else {
                write_numeric_text(&format!("{v}"), out)?;
            }
        }
        _ => {
            out.put_i32(8);
            out.put_f64(v);
        }
    }
    Ok(())
}

fn write_str(s: &str, pg: PgType, out: &mut BytesMut) -> std::result::Result<(), String> {
    match pg {
        PgType::Jsonb => {
            out.put_i32(s.len() as i32 + 1);
            out.put_u8(1);
            out.put_slice(s.as_bytes());
        }
        PgType::Uuid => {
            let u = parse_uuid(s).ok_or_else(|| format!("{s:?} is not a uuid"))?;
            out.put_i32(16);
            out.put_slice(&u);
        }
        PgType::Numeric => write_numeric_text(s, out)?,
        _ => write_bytes(s.as_bytes(), out),
    }
    Ok(())
}

fn write_list(
    values: &ArrayRef,
    pg: PgType,
    out: &mut BytesMut,
) -> std::result::Result<(), String> {
    // Binary array: ndim, has_null, elem oid, (dim, lower bound), elements.
    let len_pos = out.len();
    out.put_i32(0);
    let start = out.len();
    let n = values.len();
    let elem_oid: u32 = match pg {
        PgType::TextArray => 25,
        PgType::Int4Array => 23,
        _ => 20,
    };
    if n == 0 {
        out.put_i32(0);
        out.put_i32(0);
        out.put_u32(elem_oid);
    } else {
        out.put_i32(1);
        out.put_i32(values.null_count().min(1) as i32);
        out.put_u32(elem_oid);
        out.put_i32(n as i32);
        out.put_i32(1);
        for i in 0..n {
            if values.is_null(i) {
                out.put_i32(-1);
                continue;
            }
            match values.data_type() {
                DataType::Utf8 => write_bytes(values.as_string::<i32>().value(i).as_bytes(), out),
                DataType::LargeUtf8 => {
                    write_bytes(values.as_string::<i64>().value(i).as_bytes(), out)
                }
                DataType::Utf8View => write_bytes(values.as_string_view().value(i).as_bytes(), out),
                DataType::Int32 => {
                    out.put_i32(4);
                    out.put_i32(values.as_primitive::<Int32Type>().value(i));
                }
                DataType::Int64 => {
                    out.put_i32(8);
                    out.put_i64(values.as_primitive::<Int64Type>().value(i));
                }
                other => return Err(format!("cannot encode list of {other}")),
            }
        }
    }
    let len = (out.len() - start) as i32;
    out[len_pos..len_pos + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Parse `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (or 32 hex digits) into 16 bytes.
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    let mut n = 0;
    let mut hi: Option<u8> = None;
    for b in s.bytes() {
        if b == b'-' {
            continue;
        }
        let d = (b as char).to_digit(16)? as u8;
        match hi.take() {
            None => hi = Some(d),
            Some(h) => {
                if n == 16 {
                    return None;
                }
                out[n] = h << 4 | d;
                n += 1;
            }
        }
    }
    (n == 16 && hi.is_none()).then_some(out)
}

/// Write a scaled integer (`value` × 10^-`scale`) as a binary `numeric`; the display
/// scale drops trailing fractional zeros (`25.50` is stored as `25.5`).
pub fn write_numeric_scaled(
    value: i128,
    scale: i8,
    out: &mut BytesMut,
) -> std::result::Result<(), String> {
    let neg = value < 0;
    let mut abs = value.unsigned_abs();
    let mut scale = scale as i32;
    if scale < 0 {
        abs = abs
            .checked_mul(10u128.pow((-scale) as u32))
            .ok_or("numeric overflow")?;
        scale = 0;
    }
    while scale > 0 && abs.is_multiple_of(10) && abs != 0 {
        abs /= 10;
        scale -= 1;
    }
    if abs == 0 {
        scale = 0;
    }
    write_numeric_parts(neg, abs, scale as u32, out)
}

/// `abs × 10^-scale` as numeric, with `scale` as the display scale.
fn write_numeric_parts(
    neg: bool,
    abs: u128,
    scale: u32,
    out: &mut BytesMut,
) -> std::result::Result<(), String> {
    // Base-10000 groups, least significant first: the fractional part padded to whole
    // groups, then the integer part. (Padding the whole value instead overflows u128 for
    // 38-digit values.)
    let (mut int, mut frac) = match 10u128.checked_pow(scale) {
        Some(p) => (abs / p, abs % p),
        None => (0, abs),
    };
    let frac_groups = scale.div_ceil(4);
    let mut groups: Vec<i16> = Vec::with_capacity(12);
    let partial = scale % 4;
    if partial != 0 {
        let p = 10u128.pow(partial);
        groups.push(((frac % p) * 10u128.pow(4 - partial)) as i16);
        frac /= p;
    }
    while (groups.len() as u32) < frac_groups {
        groups.push((frac % 10_000) as i16);
        frac /= 10_000;
    }
    while int > 0 {
        groups.push((int % 10_000) as i16);
        int /= 10_000;
    }
    groups.reverse();
    let mut weight = groups.len() as i32 - frac_groups as i32 - 1;
    let lead = groups.iter().take_while(|g| **g == 0).count();
    groups.drain(..lead);
    weight -= lead as i32;
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    out.put_i32(8 + 2 * groups.len() as i32);
    out.put_i16(groups.len() as i16);
    out.put_i16(weight as i16);
    out.put_u16(if neg && !groups.is_empty() { 0x4000 } else { 0 });
    out.put_i16(scale as i16);
    for g in groups {
        out.put_i16(g);
    }
    Ok(())
}

/// Write decimal text (`-12.50`, `1e+05`, `.5`, padded with spaces or not) as a binary
/// `numeric`, exactly (the shared parser: [`etl_core::codec::parse_decimal_digits`]).
pub fn write_numeric_text(s: &str, out: &mut BytesMut) -> std::result::Result<(), String> {
    let d = codec::parse_decimal_digits(s.trim().as_bytes())
        .map_err(|_| format!("{s:?} is not a number"))?;
    write_numeric_parts(d.negative, d.digits, d.scale, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_dates_out_of_range_are_errors_never_wrapped() {
        // In range, every unit, rounding down.
        assert_eq!(pg_timestamp(0, 1, 1), Some(-PG_EPOCH_US));
        assert_eq!(pg_timestamp(1, 1_000_000, 1), Some(1_000_000 - PG_EPOCH_US));
        assert_eq!(pg_timestamp(-1_500, 1, 1_000), Some(-2 - PG_EPOCH_US));
        assert_eq!(
            pg_timestamp(i64::MAX, 1, 1_000),
            Some(i64::MAX / 1_000 - PG_EPOCH_US)
        );
        assert_eq!(
            pg_timestamp(i64::MIN, 1, 1_000),
            Some(i64::MIN / 1_000 - 1 - PG_EPOCH_US)
        );
        // Past i64 after the multiply, or past PostgreSQL's range.
        assert_eq!(pg_timestamp(i64::MAX, 1_000_000, 1), None);
        assert_eq!(pg_timestamp(i64::MIN / 999, 1_000, 1), None);
        // (i64::MAX µs from 1970 is before PostgreSQL's end: it fits.)
        assert_eq!(pg_timestamp(i64::MAX, 1, 1), Some(i64::MAX - PG_EPOCH_US));
        assert_eq!(pg_timestamp(i64::MIN, 1, 1), None);
        // 4714-11-24 BC is the first.
        let first = PG_TS_RANGE.start + PG_EPOCH_US;
        assert!(pg_timestamp(first, 1, 1).is_some());
        assert!(pg_timestamp(first - 1, 1, 1).is_none());
        // (The end, 294277-01-01, lies past i64 microseconds from 1970.)
        assert_eq!(pg_date(PG_EPOCH_DAYS), Some(0));
        assert_eq!(pg_date(i32::MAX), None);
        assert_eq!(pg_date(i32::MIN), None);
        assert_eq!(pg_date(-2_440_588), Some(-2_451_545));
        assert_eq!(pg_date(-2_440_589), None);

        // Through the encoder: an error naming the column, the row and the value.
        use arrow_array::{Date32Array, TimestampSecondArray};
        use arrow_schema::Field;
        use std::sync::Arc;
        let schema = Schema::new(vec![
            Field::new("ts", DataType::Timestamp(TimeUnit::Second, None), true),
            Field::new("d", DataType::Date32, true),
        ]);
        let enc = CopyEncoder::new(
            &schema,
            vec![
                ColumnMapping {
                    source: 0,
                    target: "ts".into(),
                    pg_type: PgType::Timestamp,
                },
                ColumnMapping {
                    source: 1,
                    target: "d".into(),
                    pg_type: PgType::Date,
                },
            ],
        )
        .unwrap();
        let batch = |ts: i64, d: i32| {
            RecordBatch::try_new(
                Arc::new(schema.clone()),
                vec![
                    Arc::new(TimestampSecondArray::from(vec![0, ts])),
                    Arc::new(Date32Array::from(vec![0, d])),
                ],
            )
            .unwrap()
        };
        let mut out = BytesMut::new();
        let err = enc
            .encode(&batch(i64::MAX / 2, 0), &mut out)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "cannot encode column `ts` row 1: timestamp {} (seconds from 1970) is outside PostgreSQL's timestamp range (4714-11-24 BC to 294276-12-31)",
                i64::MAX / 2
            )
        );
        let err = enc
            .encode(&batch(0, i32::MAX), &mut out)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("cannot encode column `d` row 1: date 2147483647 days"),
            "{err}"
        );
        enc.encode(&batch(253_402_300_799, 2_932_896), &mut out)
            .unwrap();
    }

    fn numeric(s: &str) -> Vec<u8> {
        let mut b = BytesMut::new();
        write_numeric_text(s, &mut b).unwrap();
        b.to_vec()
    }

    #[test]
    fn numeric_encoding_matches_postgres() {
        // 12.5 -> ndigits 2, weight 0, sign 0, dscale 1, digits [12, 5000]
        assert_eq!(
            numeric("12.5"),
            vec![0, 0, 0, 12, 0, 2, 0, 0, 0, 0, 0, 1, 0, 12, 0x13, 0x88]
        );
        // 0 -> no digits
        assert_eq!(numeric("0"), vec![0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0]);
        // 2500000000 -> [25, 0, 0] weight 2 -> trailing zero groups dropped: [25], weight 2
        assert_eq!(
            numeric("2500000000"),
            vec![0, 0, 0, 10, 0, 1, 0, 2, 0, 0, 0, 0, 0, 25]
        );
        // -0.0005 -> [5], weight -1, dscale 4
        assert_eq!(
            numeric("-0.0005"),
            vec![0, 0, 0, 10, 0, 1, 0xff, 0xff, 0x40, 0, 0, 4, 0, 5]
        );
        assert_eq!(numeric("1e+05"), numeric("100000"));
        let mut b = BytesMut::new();
        write_numeric_scaled(255_000_000_000, 10, &mut b).unwrap();
        assert_eq!(b.to_vec(), numeric("25.5"));
        assert_eq!(numeric(" 12.5 "), numeric("12.5"));
        // 38 digits at a scale that is not a multiple of 4 (padding the whole value to
        // base-10000 groups overflowed u128: "numeric value too large").
        let mut b = BytesMut::new();
        write_numeric_scaled(10i128.pow(38) - 1, 1, &mut b).unwrap();
        assert_eq!(
            b.to_vec(),
            numeric("9999999999999999999999999999999999999.9")
        );
        assert_eq!(b[4..12], [0, 11, 0, 9, 0, 0, 0, 1]);
        assert!(write_numeric_text("1.2.3", &mut b).is_err());
        assert!(write_numeric_text("abc", &mut b).is_err());
    }

    #[test]
    fn uuids_parse() {
        let u = parse_uuid("67e55044-10b1-426f-9247-bb680e5fe0c8").unwrap();
        assert_eq!(u[0], 0x67);
        assert_eq!(u[15], 0xc8);
        assert!(parse_uuid("67e55044").is_none());
    }
}
