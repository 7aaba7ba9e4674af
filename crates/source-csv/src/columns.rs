//! Typed column builders the decoder appends to, one value at a time, with rollback.

use std::sync::Arc;

use arrow_array::types::*;
use arrow_array::{ArrayRef, BooleanArray, PrimitiveArray, StringArray, StringViewArray};
use arrow_buffer::{
    BooleanBuffer, BooleanBufferBuilder, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer,
};
use arrow_schema::{DataType, Field, TimeUnit};
use etl_core::codec::{self, DecimalError, Rounding};

use crate::error::CsvError;
use crate::value;

/// Why a value was refused: the reject kind and the end of the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueError {
    /// Empty in a non-nullable column.
    Missing,
    /// Not an integer / out of range.
    Integer { overflow: bool },
    /// Not a floating point number.
    Number,
    /// Not a decimal of the declared precision and scale.
    Decimal(DecimalError),
    /// Not a boolean.
    Boolean,
    /// Not a date.
    Date,
    /// Not a timestamp.
    Timestamp,
    /// A timestamp with a finer fraction than the column's unit.
    TimestampPrecision,
    /// A timestamp outside the column's range (`i64` of its unit).
    TimestampRange,
}

impl ValueError {
    /// The reject kind.
    pub(crate) fn kind(self) -> &'static str {
        match self {
            ValueError::Missing => "missing_value",
            ValueError::Integer { .. } => "bad_integer",
            ValueError::Number => "bad_number",
            ValueError::Decimal(_) => "bad_decimal",
            ValueError::Boolean => "bad_boolean",
            ValueError::Date => "bad_date",
            ValueError::Timestamp | ValueError::TimestampPrecision | ValueError::TimestampRange => {
                "bad_timestamp"
            }
        }
    }

    /// The reason, naming the column and the value.
    pub(crate) fn reason(self, column: &str, data_type: &DataType, raw: &[u8]) -> String {
        let v = shown(raw);
        match self {
            ValueError::Missing => {
                format!("{column}: missing value (empty in a non-nullable column)")
            }
            ValueError::Integer { overflow: false } => format!("{column}: {v:?} is not an integer"),
            ValueError::Integer { overflow: true } => {
                format!("{column}: {v:?} is out of range for {data_type}")
            }
            ValueError::Number => format!("{column}: {v:?} is not a number"),
            ValueError::Decimal(DecimalError::Syntax) => {
                format!("{column}: {v:?} is not a decimal number")
            }
            ValueError::Decimal(DecimalError::Scale) => {
                let scale = match data_type {
                    DataType::Decimal128(_, s) => *s,
                    _ => 0,
                };
                format!("{column}: {v:?} has more than {scale} fractional digits")
            }
            ValueError::Decimal(DecimalError::Precision) => {
                format!("{column}: {v:?} does not fit {data_type}")
            }
            ValueError::Boolean => format!("{column}: {v:?} is not a boolean (true/false/t/f/1/0)"),
            ValueError::Date => format!("{column}: {v:?} is not a date (YYYY-MM-DD)"),
            ValueError::Timestamp => {
                format!("{column}: {v:?} is not a timestamp (YYYY-MM-DD HH:MM:SS[.ffffff][Z])")
            }
            ValueError::TimestampPrecision => {
                format!("{column}: {v:?} has a finer fraction of a second than {data_type} holds")
            }
            ValueError::TimestampRange => {
                format!("{column}: {v:?} is out of range for {data_type}")
            }
        }
    }
}

/// A value for a message: lossy UTF-8, at most 200 characters.
pub(crate) fn shown(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    if s.chars().count() > 200 {
        let mut t: String = s.chars().take(200).collect();
        t.push('…');
        t
    } else {
        s.into_owned()
    }
}

/// Validity bits of a nullable column (none for a non-nullable one).
#[derive(Debug)]
pub(crate) struct Nulls(Option<BooleanBufferBuilder>);

impl Nulls {
    fn new(nullable: bool, cap: usize) -> Self {
        Nulls(nullable.then(|| BooleanBufferBuilder::new(cap)))
    }
    #[inline]
    fn valid(&mut self) {
        if let Some(b) = &mut self.0 {
            b.append(true);
        }
    }
    #[inline]
    fn null(&mut self) {
        if let Some(b) = &mut self.0 {
            b.append(false);
        }
    }
    fn truncate(&mut self, len: usize) {
        if let Some(b) = &mut self.0 {
            b.truncate(len);
        }
    }
    fn finish(&mut self) -> Option<NullBuffer> {
        self.0
            .as_mut()
            .map(|b| NullBuffer::new(b.finish()))
            .filter(|n| n.null_count() > 0)
    }
}

/// Where a field's text lives when it is turned into a view.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ViewSource {
    /// Index of the data buffer (0 = raw record bytes, 1 = unescaped values).
    pub buffer: u32,
    /// Offset in that buffer.
    pub offset: u32,
}

/// The kind of a column, decided once from the field's data type.
#[derive(Debug)]
pub(crate) enum Values {
    /// `Utf8View`: views into the shared batch buffers.
    View(Vec<u128>),
    /// `Utf8`: own offsets and bytes.
    Utf8 {
        offsets: Vec<i32>,
        bytes: Vec<u8>,
    },
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Decimal {
        values: Vec<i128>,
        precision: u8,
        scale: i8,
    },
    Bool(BooleanBufferBuilder),
    Date32(Vec<i32>),
    Timestamp {
        values: Vec<i64>,
        divisor: i128,
        unit: TimeUnit,
        tz: Option<Arc<str>>,
    },
}

/// One typed column being built.
#[derive(Debug)]
pub(crate) struct Column {
    pub values: Values,
    pub nulls: Nulls,
    pub nullable: bool,
    /// Empty text is NULL (strings only; typed columns always treat empty as NULL).
    pub empty_is_null: bool,
    pub field: Arc<Field>,
}

macro_rules! int_push {
    ($v:expr, $s:expr, $t:ty) => {{
        match value::parse_i64($s).and_then(|x| <$t>::try_from(x).ok()) {
            Some(x) => $v.push(x),
            None => {
                return Err(ValueError::Integer {
                    overflow: value::looks_integer($s),
                });
            }
        }
    }};
}

macro_rules! uint_push {
    ($v:expr, $s:expr, $t:ty) => {{
        match value::parse_u64($s).and_then(|x| <$t>::try_from(x).ok()) {
            Some(x) => $v.push(x),
            None => {
                return Err(ValueError::Integer {
                    overflow: value::looks_integer($s),
                });
            }
        }
    }};
}

impl Column {
    /// A builder for `field`, or an error if its type is not supported.
    pub(crate) fn new(
        field: &Arc<Field>,
        empty_is_null: bool,
        null_markers: bool,
        cap: usize,
    ) -> Result<Self, CsvError> {
        let values = match field.data_type() {
            DataType::Utf8View => Values::View(Vec::with_capacity(cap)),
            DataType::Utf8 => Values::Utf8 {
                offsets: {
                    let mut o = Vec::with_capacity(cap + 1);
                    o.push(0);
                    o
                },
                bytes: Vec::new(),
            },
            DataType::Int8 => Values::I8(Vec::with_capacity(cap)),
            DataType::Int16 => Values::I16(Vec::with_capacity(cap)),
            DataType::Int32 => Values::I32(Vec::with_capacity(cap)),
            DataType::Int64 => Values::I64(Vec::with_capacity(cap)),
            DataType::UInt8 => Values::U8(Vec::with_capacity(cap)),
            DataType::UInt16 => Values::U16(Vec::with_capacity(cap)),
            DataType::UInt32 => Values::U32(Vec::with_capacity(cap)),
            DataType::UInt64 => Values::U64(Vec::with_capacity(cap)),
            DataType::Float32 => Values::F32(Vec::with_capacity(cap)),
            DataType::Float64 => Values::F64(Vec::with_capacity(cap)),
            DataType::Decimal128(p, s) if (1..=38).contains(p) => Values::Decimal {
                values: Vec::with_capacity(cap),
                precision: *p,
                scale: *s,
            },
            DataType::Boolean => Values::Bool(BooleanBufferBuilder::new(cap)),
            DataType::Date32 => Values::Date32(Vec::with_capacity(cap)),
            DataType::Timestamp(unit, tz) => Values::Timestamp {
                values: Vec::with_capacity(cap),
                unit: *unit,
                tz: tz.clone(),
                divisor: match unit {
                    TimeUnit::Second => 1_000_000_000,
                    TimeUnit::Millisecond => 1_000_000,
                    TimeUnit::Microsecond => 1_000,
                    TimeUnit::Nanosecond => 1,
                },
            },
            other => {
                return Err(CsvError::UnsupportedType {
                    column: field.name().clone(),
                    data_type: other.clone(),
                });
            }
        };
        Ok(Column {
            values,
            // A view column's validity is derived from its views at the end (see `finish`)
            // unless an empty text is a value and a null marker can still make a NULL.
            nulls: Nulls::new(
                field.is_nullable()
                    && (field.data_type() != &DataType::Utf8View
                        || (null_markers && !empty_is_null)),
                cap,
            ),
            nullable: field.is_nullable(),
            empty_is_null,
            field: field.clone(),
        })
    }

    /// Whether this column's text needs to be valid UTF-8 (strings only).
    pub(crate) fn is_text(&self) -> bool {
        matches!(self.values, Values::View(_) | Values::Utf8 { .. })
    }

    /// Append a NULL (or refuse if the column is non-nullable).
    #[inline]
    pub(crate) fn push_null(&mut self) -> Result<(), ValueError> {
        if !self.nullable {
            return Err(ValueError::Missing);
        }
        self.nulls.null();
        match &mut self.values {
            Values::View(v) => v.push(0),
            Values::Utf8 { offsets, bytes } => offsets.push(bytes.len() as i32),
            Values::I8(v) => v.push(0),
            Values::I16(v) => v.push(0),
            Values::I32(v) => v.push(0),
            Values::I64(v) => v.push(0),
            Values::U8(v) => v.push(0),
            Values::U16(v) => v.push(0),
            Values::U32(v) => v.push(0),
            Values::U64(v) => v.push(0),
            Values::F32(v) => v.push(0.0),
            Values::F64(v) => v.push(0.0),
            Values::Decimal { values, .. } => values.push(0),
            Values::Bool(b) => b.append(false),
            Values::Date32(v) => v.push(0),
            Values::Timestamp { values, .. } => values.push(0),
        }
        Ok(())
    }

    /// Append the value of text `s` whose bytes sit at `src` (for views). `wide` starts
    /// where `s` starts and may run past its end (up to 16 bytes are read from it to make
    /// an inline view without a copy).
    ///
    /// `s` must be valid UTF-8 when the column is a string column.
    #[inline]
    pub(crate) fn push(
        &mut self,
        s: &[u8],
        wide: &[u8],
        src: ViewSource,
    ) -> Result<(), ValueError> {
        if s.is_empty() && (self.empty_is_null || !self.is_text()) {
            return self.push_null();
        }
        match &mut self.values {
            Values::View(v) => v.push(make_view(s, wide, src)),
            Values::Utf8 { offsets, bytes } => {
                bytes.extend_from_slice(s);
                offsets.push(bytes.len() as i32);
            }
            Values::I8(v) => int_push!(v, s, i8),
            Values::I16(v) => int_push!(v, s, i16),
            Values::I32(v) => int_push!(v, s, i32),
            Values::I64(v) => int_push!(v, s, i64),
            Values::U8(v) => uint_push!(v, s, u8),
            Values::U16(v) => uint_push!(v, s, u16),
            Values::U32(v) => uint_push!(v, s, u32),
            Values::U64(v) => uint_push!(v, s, u64),
            Values::F32(v) => v.push(parse_float(s).ok_or(ValueError::Number)? as f32),
            Values::F64(v) => v.push(parse_float(s).ok_or(ValueError::Number)?),
            Values::Decimal {
                values,
                precision,
                scale,
            } => values.push(
                codec::parse_decimal(s, *precision, *scale, Rounding::Exact)
                    .map_err(ValueError::Decimal)?,
            ),
            Values::Bool(b) => b.append(value::parse_bool(s).ok_or(ValueError::Boolean)?),
            Values::Date32(v) => v.push(value::parse_date(s).ok_or(ValueError::Date)?),
            Values::Timestamp {
                values, divisor, ..
            } => {
                let n = value::parse_timestamp_nanos(s).ok_or(ValueError::Timestamp)?;
                if n % *divisor != 0 {
                    return Err(ValueError::TimestampPrecision);
                }
                values.push(i64::try_from(n / *divisor).map_err(|_| ValueError::TimestampRange)?);
            }
        }
        self.nulls.valid();
        Ok(())
    }

    /// Drop values past `len` (a rejected record's partial row).
    pub(crate) fn truncate(&mut self, len: usize) {
        self.nulls.truncate(len);
        match &mut self.values {
            Values::View(v) => v.truncate(len),
            Values::Utf8 { offsets, bytes } => {
                offsets.truncate(len + 1);
                bytes.truncate(*offsets.last().unwrap_or(&0) as usize);
            }
            Values::I8(v) => v.truncate(len),
            Values::I16(v) => v.truncate(len),
            Values::I32(v) => v.truncate(len),
            Values::I64(v) => v.truncate(len),
            Values::U8(v) => v.truncate(len),
            Values::U16(v) => v.truncate(len),
            Values::U32(v) => v.truncate(len),
            Values::U64(v) => v.truncate(len),
            Values::F32(v) => v.truncate(len),
            Values::F64(v) => v.truncate(len),
            Values::Decimal { values, .. } => values.truncate(len),
            Values::Bool(b) => b.truncate(len),
            Values::Date32(v) => v.truncate(len),
            Values::Timestamp { values, .. } => values.truncate(len),
        }
    }

    /// Finish the column into an array; `buffers` are the batch's view data buffers.
    ///
    /// # Safety (internal)
    /// Every view pushed by [`Column::push`] points at valid UTF-8 inside `buffers`.
    pub(crate) fn finish(&mut self, buffers: &Arc<[Buffer]>) -> ArrayRef {
        let mut nulls = self.nulls.finish();
        match &mut self.values {
            Values::View(v) => {
                let views = ScalarBuffer::from(std::mem::take(v));
                // A NULL is pushed as the empty view, and an empty value is NULL when
                // `empty_is_null`; otherwise a string column never holds NULL.
                if self.nullable && self.empty_is_null {
                    let valid = BooleanBuffer::collect_bool(views.len(), |i| views[i] as u32 != 0);
                    nulls = Some(NullBuffer::new(valid)).filter(|n| n.null_count() > 0);
                }
                // Only hand the array the buffers its long strings need.
                let needs_buffers = views.iter().any(|v| (*v as u32) > 12);
                let bufs: Arc<[Buffer]> = if needs_buffers {
                    buffers.clone()
                } else {
                    Arc::from(Vec::new())
                };
                #[cfg(debug_assertions)]
                {
                    StringViewArray::try_new(views.clone(), bufs.clone(), nulls.clone())
                        .expect("views are valid");
                }
                // SAFETY: every view was made by `make_view` from a slice of valid UTF-8
                // (the decoder checks UTF-8 before pushing into a text column) that lies
                // inside buffer `src.buffer` at `src.offset`; inline views hold the bytes.
                Arc::new(unsafe { StringViewArray::new_unchecked(views, bufs, nulls) })
            }
            Values::Utf8 { offsets, bytes } => {
                let offsets = std::mem::replace(offsets, vec![0]);
                let bytes = std::mem::take(bytes);
                // The decoder ends a batch before its raw bytes, which hold every value of
                // this column, reach `i32::MAX` (`decoder::data_limit`), so the `as i32`
                // offsets in `push` never wrap. Checked once per batch all the same: the
                // unsafe constructor below relies on it.
                assert!(
                    i32::try_from(bytes.len()).is_ok(),
                    "Utf8 column {:?}: {} bytes of text in one batch overflow i32 offsets",
                    self.field.name(),
                    bytes.len()
                );
                // SAFETY: offsets are monotonic (no wrap: checked above), start at 0 and end
                // at bytes.len(); each
                // value was checked to be UTF-8 before it was appended.
                Arc::new(unsafe {
                    StringArray::new_unchecked(
                        OffsetBuffer::new_unchecked(ScalarBuffer::from(offsets)),
                        Buffer::from_vec(bytes),
                        nulls,
                    )
                })
            }
            Values::I8(v) => prim::<Int8Type>(v, nulls),
            Values::I16(v) => prim::<Int16Type>(v, nulls),
            Values::I32(v) => prim::<Int32Type>(v, nulls),
            Values::I64(v) => prim::<Int64Type>(v, nulls),
            Values::U8(v) => prim::<UInt8Type>(v, nulls),
            Values::U16(v) => prim::<UInt16Type>(v, nulls),
            Values::U32(v) => prim::<UInt32Type>(v, nulls),
            Values::U64(v) => prim::<UInt64Type>(v, nulls),
            Values::F32(v) => prim::<Float32Type>(v, nulls),
            Values::F64(v) => prim::<Float64Type>(v, nulls),
            Values::Decimal {
                values,
                precision,
                scale,
            } => Arc::new(
                PrimitiveArray::<Decimal128Type>::new(
                    ScalarBuffer::from(std::mem::take(values)),
                    nulls,
                )
                .with_data_type(DataType::Decimal128(*precision, *scale)),
            ),
            Values::Bool(b) => {
                let bits: BooleanBuffer = b.finish();
                Arc::new(BooleanArray::new(bits, nulls))
            }
            Values::Date32(v) => prim::<Date32Type>(v, nulls),
            Values::Timestamp {
                values, unit, tz, ..
            } => {
                let v = ScalarBuffer::from(std::mem::take(values));
                let tz = tz.clone();
                match unit {
                    TimeUnit::Second => Arc::new(
                        PrimitiveArray::<TimestampSecondType>::new(v, nulls).with_timezone_opt(tz),
                    ),
                    TimeUnit::Millisecond => Arc::new(
                        PrimitiveArray::<TimestampMillisecondType>::new(v, nulls)
                            .with_timezone_opt(tz),
                    ),
                    TimeUnit::Microsecond => Arc::new(
                        PrimitiveArray::<TimestampMicrosecondType>::new(v, nulls)
                            .with_timezone_opt(tz),
                    ),
                    TimeUnit::Nanosecond => Arc::new(
                        PrimitiveArray::<TimestampNanosecondType>::new(v, nulls)
                            .with_timezone_opt(tz),
                    ),
                }
            }
        }
    }
}

fn prim<T: arrow_array::ArrowPrimitiveType>(
    v: &mut Vec<T::Native>,
    nulls: Option<NullBuffer>,
) -> ArrayRef {
    Arc::new(PrimitiveArray::<T>::new(
        ScalarBuffer::from(std::mem::take(v)),
        nulls,
    ))
}

/// A float from ASCII text (`1.5`, `-2e3`, `inf`, `NaN`).
#[inline]
fn parse_float(s: &[u8]) -> Option<f64> {
    // The bytes of a number are ASCII; anything else is not a number.
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// The Arrow view of `s` stored at `src`: inline when at most 12 bytes, else a reference.
/// `wide` starts with `s`; when it has 16 bytes the inline view is made with one load.
#[inline]
pub(crate) fn make_view(s: &[u8], wide: &[u8], src: ViewSource) -> u128 {
    let len = s.len();
    if len <= 12 {
        let word = match wide.get(..16) {
            Some(w) => {
                let w = u128::from_le_bytes(w.try_into().expect("16 bytes"));
                // Keep the first `len` bytes (len <= 12, so the shift is < 128).
                w & ((1u128 << (len * 8)) - 1)
            }
            None => {
                let mut b = [0u8; 16];
                for (d, &c) in b.iter_mut().zip(s) {
                    *d = c;
                }
                u128::from_le_bytes(b)
            }
        };
        (word << 32) | len as u128
    } else {
        let prefix = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
        (len as u128)
            | ((prefix as u128) << 32)
            | ((src.buffer as u128) << 64)
            | ((src.offset as u128) << 96)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_views_are_the_same_with_and_without_wide_input() {
        let text = b"Falco rusticolus and more text after it";
        for len in 0..=16 {
            let s = &text[..len];
            let src = ViewSource {
                buffer: 0,
                offset: 7,
            };
            assert_eq!(make_view(s, text, src), make_view(s, s, src), "len {len}");
        }
        let v = make_view(
            b"NA",
            b"NA",
            ViewSource {
                buffer: 0,
                offset: 0,
            },
        );
        assert_eq!(v, 2 | (u128::from(u16::from_le_bytes(*b"NA")) << 32));
    }
}
