//! Arrow -> DynamoDB `AttributeValue`, usable by any pipeline, and the JSON forms of items.
//!
//! | Arrow | DynamoDB |
//! | --- | --- |
//! | `Utf8`, `LargeUtf8`, `Utf8View` | `S` |
//! | integers, floats, `Decimal128` | `N` (decimals without trailing zeros; NaN/∞ is an error) |
//! | `Boolean` | `BOOL` |
//! | `Date32` | `S` `YYYY-MM-DD` |
//! | `Timestamp(_, _)` | `S` ISO-8601 UTC with `Z` (`2026-01-30T14:30:00Z`) |
//! | `Binary`, `LargeBinary` | `B` |
//! | `List`, `LargeList` | `L`, or `SS`/`NS` for columns named in [`MappingOptions::sets`] |
//! | `Struct` | `M` (nested structs -> nested `M`) |
//! | `Map<Utf8, _>` | `M` |
//! | null | attribute omitted ([`NullMode::Omit`], the default) or `NULL` |
//!
//! Nulls inside lists and maps are always `NULL`.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;

use crate::error::{DynamoError, Result};

/// A DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

/// The largest item DynamoDB accepts (400 KB, names and values counted).
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

/// What a null column value becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NullMode {
    /// No attribute (sparse items; keeps nulls out of GSI keys).
    #[default]
    Omit,
    /// A `NULL` attribute.
    Null,
}

/// How rows become items.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MappingOptions {
    /// What a null becomes.
    pub nulls: NullMode,
    /// List columns written as string or number sets (`SS`/`NS`); an empty set is omitted
    /// (DynamoDB has no empty sets) and duplicates collapse.
    pub sets: BTreeSet<String>,
    /// Columns not written.
    pub skip: BTreeSet<String>,
}

/// The key attributes of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySchema {
    /// Partition key attribute.
    pub partition: String,
    /// Sort key attribute, if the table has one.
    pub sort: Option<String>,
}

impl KeySchema {
    /// A key of partition key `partition` and optional sort key `sort`.
    pub fn new(partition: impl Into<String>, sort: Option<&str>) -> Self {
        KeySchema {
            partition: partition.into(),
            sort: sort.map(str::to_owned),
        }
    }

    /// The key attributes of `item`, for `DeleteRequest`s and restore diffs.
    pub fn key_of(&self, table: &str, item: &Item) -> Result<Item> {
        let mut key = Item::new();
        for attr in std::iter::once(&self.partition).chain(self.sort.as_ref()) {
            match item.get(attr) {
                Some(v @ (AttributeValue::S(_) | AttributeValue::N(_) | AttributeValue::B(_))) => {
                    key.insert(attr.clone(), v.clone());
                }
                _ => {
                    return Err(DynamoError::MissingKey {
                        table: table.to_owned(),
                        attribute: attr.clone(),
                        item: self.describe(item),
                    });
                }
            }
        }
        Ok(key)
    }

    /// The key of `item` as text (`PK=SALE#1, SK=LINE#001`), for messages and de-duplication.
    pub fn describe(&self, item: &Item) -> String {
        let mut s = String::new();
        for attr in std::iter::once(&self.partition).chain(self.sort.as_ref()) {
            if !s.is_empty() {
                s.push_str(", ");
            }
            let v = item
                .get(attr)
                .map_or_else(|| "<missing>".to_owned(), scalar_text);
            let _ = write!(s, "{attr}={v}");
        }
        s
    }
}

fn scalar_text(v: &AttributeValue) -> String {
    match v {
        AttributeValue::S(s) | AttributeValue::N(s) => s.clone(),
        AttributeValue::B(b) => base64_encode(b.as_ref()),
        other => to_plain_json(other).to_string(),
    }
}

/// Map every row of `batch` to an item; a row that cannot be mapped is an `Err` with the
/// reason (the caller rejects it).
pub fn items_from_batch(batch: &RecordBatch, options: &MappingOptions) -> Vec<Result<Item>> {
    let schema = batch.schema();
    let cols: Vec<(&str, &ArrayRef, bool)> = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(f, _)| !options.skip.contains(f.name()))
        .map(|(f, c)| (f.name().as_str(), c, options.sets.contains(f.name())))
        .collect();
    (0..batch.num_rows())
        .map(|row| {
            let mut item = Item::with_capacity(cols.len());
            for (name, col, as_set) in &cols {
                let v = if *as_set {
                    set_value(col, row).map_err(|reason| DynamoError::Mapping {
                        column: (*name).to_owned(),
                        reason,
                    })?
                } else {
                    value(col.as_ref(), row).map_err(|reason| DynamoError::Mapping {
                        column: (*name).to_owned(),
                        reason,
                    })?
                };
                match v {
                    Some(v) => {
                        item.insert((*name).to_owned(), v);
                    }
                    // An empty set: DynamoDB has none, so no attribute.
                    None if *as_set && !col.is_null(row) => {}
                    None if options.nulls == NullMode::Null => {
                        item.insert((*name).to_owned(), AttributeValue::Null(true));
                    }
                    None => {}
                }
            }
            Ok(item)
        })
        .collect()
}

fn number(v: f64) -> std::result::Result<AttributeValue, String> {
    if !v.is_finite() {
        return Err(format!("{v} is not a number DynamoDB can store"));
    }
    Ok(AttributeValue::N(format!("{v}")))
}

/// The attribute value of `array[row]`; `Ok(None)` for null.
pub fn value(array: &dyn Array, row: usize) -> std::result::Result<Option<AttributeValue>, String> {
    if array.is_null(row) {
        return Ok(None);
    }
    let v = match array.data_type() {
        DataType::Utf8 => AttributeValue::S(array.as_string::<i32>().value(row).to_owned()),
        DataType::LargeUtf8 => AttributeValue::S(array.as_string::<i64>().value(row).to_owned()),
        DataType::Utf8View => AttributeValue::S(array.as_string_view().value(row).to_owned()),
        DataType::Boolean => AttributeValue::Bool(array.as_boolean().value(row)),
        DataType::Int8 => {
            AttributeValue::N(array.as_primitive::<Int8Type>().value(row).to_string())
        }
        DataType::Int16 => {
            AttributeValue::N(array.as_primitive::<Int16Type>().value(row).to_string())
        }
        DataType::Int32 => {
            AttributeValue::N(array.as_primitive::<Int32Type>().value(row).to_string())
        }
        DataType::Int64 => {
            AttributeValue::N(array.as_primitive::<Int64Type>().value(row).to_string())
        }
        DataType::UInt8 => {
            AttributeValue::N(array.as_primitive::<UInt8Type>().value(row).to_string())
        }
        DataType::UInt16 => {
            AttributeValue::N(array.as_primitive::<UInt16Type>().value(row).to_string())
        }
        DataType::UInt32 => {
            AttributeValue::N(array.as_primitive::<UInt32Type>().value(row).to_string())
        }
        DataType::UInt64 => {
            AttributeValue::N(array.as_primitive::<UInt64Type>().value(row).to_string())
        }
        DataType::Float32 => number(array.as_primitive::<Float32Type>().value(row) as f64)?,
        DataType::Float64 => number(array.as_primitive::<Float64Type>().value(row))?,
        DataType::Decimal128(_, scale) => AttributeValue::N(etl_core::batch::format_decimal(
            array.as_primitive::<Decimal128Type>().value(row),
            *scale,
        )),
        DataType::Date32 => {
            let days = array.as_primitive::<Date32Type>().value(row);
            let d = chrono::NaiveDate::from_num_days_from_ce_opt(days + 719_163)
                .ok_or_else(|| format!("date {days} days from 1970 is out of range"))?;
            AttributeValue::S(d.format("%Y-%m-%d").to_string())
        }
        DataType::Timestamp(unit, _) => {
            let micros = match unit {
                TimeUnit::Second => array
                    .as_primitive::<TimestampSecondType>()
                    .value(row)
                    .saturating_mul(1_000_000),
                TimeUnit::Millisecond => array
                    .as_primitive::<TimestampMillisecondType>()
                    .value(row)
                    .saturating_mul(1_000),
                TimeUnit::Microsecond => {
                    array.as_primitive::<TimestampMicrosecondType>().value(row)
                }
                TimeUnit::Nanosecond => {
                    array.as_primitive::<TimestampNanosecondType>().value(row) / 1_000
                }
            };
            AttributeValue::S(format_timestamp(micros)?)
        }
        DataType::Binary => AttributeValue::B(Blob::new(array.as_binary::<i32>().value(row))),
        DataType::LargeBinary => AttributeValue::B(Blob::new(array.as_binary::<i64>().value(row))),
        DataType::List(_) => list(&array.as_list::<i32>().value(row))?,
        DataType::LargeList(_) => list(&array.as_list::<i64>().value(row))?,
        DataType::Struct(fields) => {
            let s = array.as_struct();
            let mut m = HashMap::with_capacity(fields.len());
            for (f, c) in fields.iter().zip(s.columns()) {
                if let Some(v) = value(c.as_ref(), row)? {
                    m.insert(f.name().clone(), v);
                }
            }
            AttributeValue::M(m)
        }
        DataType::Map(_, _) => {
            let entries = array.as_map().value(row);
            let keys = entries.column(0);
            let values = entries.column(1);
            let mut m = HashMap::with_capacity(entries.len());
            for i in 0..entries.len() {
                let k = match value(keys.as_ref(), i)? {
                    Some(AttributeValue::S(k)) => k,
                    _ => return Err("map keys must be non-null strings".to_owned()),
                };
                m.insert(
                    k,
                    value(values.as_ref(), i)?.unwrap_or(AttributeValue::Null(true)),
                );
            }
            AttributeValue::M(m)
        }
        other => return Err(format!("Arrow type {other} has no DynamoDB mapping")),
    };
    Ok(Some(v))
}

fn list(values: &ArrayRef) -> std::result::Result<AttributeValue, String> {
    let mut out = Vec::with_capacity(values.len());
    for i in 0..values.len() {
        out.push(value(values.as_ref(), i)?.unwrap_or(AttributeValue::Null(true)));
    }
    Ok(AttributeValue::L(out))
}

fn set_value(array: &ArrayRef, row: usize) -> std::result::Result<Option<AttributeValue>, String> {
    let Some(AttributeValue::L(items)) = value(array.as_ref(), row)? else {
        return match value(array.as_ref(), row)? {
            None => Ok(None),
            Some(_) => Err("only list columns can be written as sets".to_owned()),
        };
    };
    let mut strings = BTreeSet::new();
    let mut numbers = BTreeSet::new();
    for v in items {
        match v {
            AttributeValue::S(s) => {
                strings.insert(s);
            }
            AttributeValue::N(n) => {
                numbers.insert(n);
            }
            AttributeValue::Null(_) => {}
            _ => return Err("set elements must be strings or numbers".to_owned()),
        }
    }
    Ok(match (strings.is_empty(), numbers.is_empty()) {
        (true, true) => None,
        (false, true) => Some(AttributeValue::Ss(strings.into_iter().collect())),
        (true, false) => Some(AttributeValue::Ns(numbers.into_iter().collect())),
        (false, false) => return Err("a set cannot mix strings and numbers".to_owned()),
    })
}

/// `2026-01-30T14:30:00Z` (fractional seconds only when there are some).
pub fn format_timestamp(micros: i64) -> std::result::Result<String, String> {
    let t = chrono::DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| format!("timestamp {micros} µs is out of range"))?;
    Ok(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

/// The size DynamoDB counts for an item: attribute names plus values (an estimate within
/// a few bytes for numbers).
pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn number_size(n: &str) -> usize {
    let digits = n
        .trim_start_matches('-')
        .split(['e', 'E'])
        .next()
        .unwrap_or("")
        .chars()
        .filter(char::is_ascii_digit)
        .count();
    digits.div_ceil(2) + 1
}

fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number_size(n),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::L(l) => 3 + l.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, v)| 1 + k.len() + value_size(v))
                .sum::<usize>()
        }
        AttributeValue::Ss(s) => s.iter().map(String::len).sum(),
        AttributeValue::Ns(s) => s.iter().map(|n| number_size(n)).sum(),
        AttributeValue::Bs(s) => s.iter().map(|b| b.as_ref().len()).sum(),
        _ => 0,
    }
}

/// The decimal value of number text (`-012.50e1` -> `(true, "125", 0)`): sign, significant
/// digits, exponent of the last digit; `None` if it is not number text.
fn decimal_value(s: &str) -> Option<(bool, String, i64)> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (mantissa, exp) = match s.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i64>().ok()?),
        None => (s, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty()
        || !(int.bytes().chain(frac.bytes())).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    let trimmed = digits.trim_end_matches('0');
    if trimmed.is_empty() {
        return Some((false, String::new(), 0));
    }
    let exp = exp - frac.len() as i64 + (digits.len() - trimmed.len()) as i64;
    Some((neg, trimmed.to_owned(), exp))
}

/// An item as plain JSON (`{"Total": 27550, "Address": {"City": "São Paulo"}}`): numbers as
/// JSON numbers, except those a JSON reader would get wrong (more significant digits than
/// a double holds: `12345678901234567.89`; doubles serde_json does not read back exactly),
/// which are strings of the exact number; sets as arrays.
pub fn to_plain_json(v: &AttributeValue) -> Value {
    match v {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => match n.parse::<serde_json::Number>() {
            Ok(num) if num.is_i64() || num.is_u64() => Value::Number(num),
            // The JSON text of the double is the number, and reads back as the double
            // (serde_json's default parser is not exact for every double it prints).
            Ok(num)
                if num.as_f64().is_some_and(|f| {
                    let text = num.to_string();
                    decimal_value(&text).is_some_and(|d| Some(d) == decimal_value(n))
                        && serde_json::from_str::<f64>(&text).ok() == Some(f)
                }) =>
            {
                Value::Number(num)
            }
            _ => Value::String(n.clone()),
        },
        AttributeValue::B(b) => Value::String(base64_encode(b.as_ref())),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::L(l) => Value::Array(l.iter().map(to_plain_json).collect()),
        AttributeValue::M(m) => item_to_plain_json(m),
        AttributeValue::Ss(s) => Value::Array(s.iter().cloned().map(Value::String).collect()),
        AttributeValue::Ns(s) => Value::Array(
            s.iter()
                .map(|n| to_plain_json(&AttributeValue::N(n.clone())))
                .collect(),
        ),
        AttributeValue::Bs(s) => Value::Array(
            s.iter()
                .map(|b| Value::String(base64_encode(b.as_ref())))
                .collect(),
        ),
        _ => Value::Null,
    }
}

/// An item as plain JSON with sorted keys.
pub fn item_to_plain_json(item: &Item) -> Value {
    let sorted: std::collections::BTreeMap<&String, Value> =
        item.iter().map(|(k, v)| (k, to_plain_json(v))).collect();
    Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
}

/// An attribute value in DynamoDB's JSON form (`{"S": "x"}`, `{"N": "1.5"}`), lossless.
pub fn to_dynamo_json(v: &AttributeValue) -> Value {
    let (tag, inner) = match v {
        AttributeValue::S(s) => ("S", Value::String(s.clone())),
        AttributeValue::N(n) => ("N", Value::String(n.clone())),
        AttributeValue::B(b) => ("B", Value::String(base64_encode(b.as_ref()))),
        AttributeValue::Bool(b) => ("BOOL", Value::Bool(*b)),
        AttributeValue::Null(_) => ("NULL", Value::Bool(true)),
        AttributeValue::L(l) => ("L", Value::Array(l.iter().map(to_dynamo_json).collect())),
        AttributeValue::M(m) => ("M", item_to_dynamo_json(m)),
        AttributeValue::Ss(s) => (
            "SS",
            Value::Array(s.iter().cloned().map(Value::String).collect()),
        ),
        AttributeValue::Ns(s) => (
            "NS",
            Value::Array(s.iter().cloned().map(Value::String).collect()),
        ),
        AttributeValue::Bs(s) => (
            "BS",
            Value::Array(
                s.iter()
                    .map(|b| Value::String(base64_encode(b.as_ref())))
                    .collect(),
            ),
        ),
        _ => ("NULL", Value::Bool(true)),
    };
    let mut m = serde_json::Map::with_capacity(1);
    m.insert(tag.to_owned(), inner);
    Value::Object(m)
}

/// An item in DynamoDB's JSON form.
pub fn item_to_dynamo_json(item: &Item) -> Value {
    let sorted: std::collections::BTreeMap<&String, Value> =
        item.iter().map(|(k, v)| (k, to_dynamo_json(v))).collect();
    Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
}

/// Parse DynamoDB's JSON form of one attribute value.
pub fn from_dynamo_json(v: &Value) -> std::result::Result<AttributeValue, String> {
    let obj = v
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or_else(|| format!("expected {{\"TYPE\": value}}, found {v}"))?;
    let (tag, inner) = obj.iter().next().expect("one entry");
    let str_of = |x: &Value| {
        x.as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("{tag} expects a string, found {x}"))
    };
    let arr_of = |x: &Value| {
        x.as_array()
            .cloned()
            .ok_or_else(|| format!("{tag} expects an array, found {x}"))
    };
    Ok(match tag.as_str() {
        "S" => AttributeValue::S(str_of(inner)?),
        "N" => AttributeValue::N(str_of(inner)?),
        "B" => AttributeValue::B(Blob::new(base64_decode(&str_of(inner)?)?)),
        "BOOL" => AttributeValue::Bool(inner.as_bool().ok_or("BOOL expects true or false")?),
        "NULL" => AttributeValue::Null(true),
        "L" => AttributeValue::L(
            arr_of(inner)?
                .iter()
                .map(from_dynamo_json)
                .collect::<std::result::Result<_, _>>()?,
        ),
        "M" => AttributeValue::M(item_from_dynamo_json(inner)?),
        "SS" => AttributeValue::Ss(
            arr_of(inner)?
                .iter()
                .map(str_of)
                .collect::<std::result::Result<_, _>>()?,
        ),
        "NS" => AttributeValue::Ns(
            arr_of(inner)?
                .iter()
                .map(str_of)
                .collect::<std::result::Result<_, _>>()?,
        ),
        "BS" => AttributeValue::Bs(
            arr_of(inner)?
                .iter()
                .map(|x| str_of(x).and_then(|s| base64_decode(&s)).map(Blob::new))
                .collect::<std::result::Result<_, _>>()?,
        ),
        other => return Err(format!("unknown DynamoDB type tag `{other}`")),
    })
}

/// Parse an item in DynamoDB's JSON form.
pub fn item_from_dynamo_json(v: &Value) -> std::result::Result<Item, String> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("an item must be a JSON object, found {v}"))?;
    obj.iter()
        .map(|(k, v)| from_dynamo_json(v).map(|av| (k.clone(), av)))
        .collect()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decode standard base64 (padding optional).
pub fn base64_decode(text: &str) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = B64
            .iter()
            .position(|b| *b == c)
            .ok_or_else(|| format!("invalid base64 character {:?}", c as char))?
            as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits & 0xff) as u8);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow_array::builder::{ListBuilder, StringBuilder};
    use arrow_array::{
        BooleanArray, Decimal128Array, Float64Array, Int64Array, StringArray, StructArray,
        TimestampMicrosecondArray,
    };
    use arrow_schema::{Field, Fields, Schema};

    fn batch() -> RecordBatch {
        let mut tags = ListBuilder::new(StringBuilder::new());
        tags.values().append_value("b");
        tags.values().append_value("a");
        tags.values().append_value("a");
        tags.append(true);
        tags.append(true); // empty
        let tags = tags.finish();
        let addr_fields = Fields::from(vec![
            Field::new("City", DataType::Utf8, true),
            Field::new("Number", DataType::Utf8, true),
        ]);
        let addr = StructArray::new(
            addr_fields.clone(),
            vec![
                Arc::new(StringArray::from(vec![Some("São Paulo"), Some("x")])),
                Arc::new(StringArray::from(vec![Some("1000"), None])),
            ],
            None,
        );
        let schema = Arc::new(Schema::new(vec![
            Field::new("PK", DataType::Utf8, false),
            Field::new("N", DataType::Int64, true),
            Field::new("Price", DataType::Decimal128(12, 2), true),
            Field::new("F", DataType::Float64, true),
            Field::new("B", DataType::Boolean, true),
            Field::new(
                "At",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("Tags", tags.data_type().clone(), true),
            Field::new("Address", DataType::Struct(addr_fields), true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["SALE#1", "SALE#2"])),
                Arc::new(Int64Array::from(vec![Some(1000), None])),
                Arc::new(
                    Decimal128Array::from(vec![Some(2550), Some(-5)])
                        .with_precision_and_scale(12, 2)
                        .unwrap(),
                ),
                Arc::new(Float64Array::from(vec![2.0, f64::NAN])),
                Arc::new(BooleanArray::from(vec![Some(true), None])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Some(1_769_783_400_000_000), None])
                        .with_timezone("UTC"),
                ),
                Arc::new(tags),
                Arc::new(addr),
            ],
        )
        .unwrap()
    }

    #[test]
    fn plain_json_numbers_are_exact_or_strings() {
        let plain = |n: &str| to_plain_json(&AttributeValue::N(n.to_owned()));
        assert_eq!(plain("27550"), serde_json::json!(27550));
        assert_eq!(plain("-12.5"), serde_json::json!(-12.5));
        assert_eq!(
            plain("0.30000000000000004"),
            serde_json::json!(0.30000000000000004)
        );
        assert_eq!(plain("1e+28"), serde_json::json!(1e28));
        assert_eq!(plain(&i64::MIN.to_string()), serde_json::json!(i64::MIN));
        // A double would round these: a reader of the JSON would get another number.
        assert_eq!(
            plain("1234567890123456.78"),
            serde_json::json!("1234567890123456.78")
        );
        assert_eq!(
            plain("9999999999999999999999999999.9999999999"),
            serde_json::json!("9999999999999999999999999999.9999999999")
        );
        // Its JSON text would be 79506074861474.12 (serde_json's double printing).
        assert_eq!(
            plain("79506074861474.13"),
            serde_json::json!("79506074861474.13")
        );
        assert_eq!(
            decimal_value("-012.50e1"),
            Some((true, "125".to_owned(), 0))
        );
        assert_eq!(decimal_value("0.000"), Some((false, String::new(), 0)));
        assert_eq!(decimal_value("1.2.3"), None);
    }
    #[test]
    fn rows_become_items() {
        let items = items_from_batch(&batch(), &MappingOptions::default());
        let first = items[0].as_ref().unwrap();
        assert_eq!(first["PK"], AttributeValue::S("SALE#1".into()));
        assert_eq!(first["N"], AttributeValue::N("1000".into()));
        assert_eq!(first["Price"], AttributeValue::N("25.5".into()));
        assert_eq!(first["F"], AttributeValue::N("2".into()));
        assert_eq!(first["B"], AttributeValue::Bool(true));
        assert_eq!(
            first["At"],
            AttributeValue::S("2026-01-30T14:30:00Z".into())
        );
        assert_eq!(
            first["Tags"],
            AttributeValue::L(vec![
                AttributeValue::S("b".into()),
                AttributeValue::S("a".into()),
                AttributeValue::S("a".into())
            ])
        );
        let AttributeValue::M(addr) = &first["Address"] else {
            panic!("struct -> M")
        };
        assert_eq!(addr["City"], AttributeValue::S("São Paulo".into()));
        // NaN is a row error naming the column.
        let err = items[1].as_ref().unwrap_err().to_string();
        assert!(err.contains("`F`"), "{err}");
    }

    #[test]
    fn nulls_sets_and_skips_follow_the_options() {
        let mut b = batch();
        // drop the NaN column
        let idx = b.schema().index_of("F").unwrap();
        b.remove_column(idx);
        let opts = MappingOptions {
            nulls: NullMode::Null,
            sets: ["Tags".to_owned()].into(),
            skip: ["B".to_owned()].into(),
        };
        let items: Vec<Item> = items_from_batch(&b, &opts)
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(
            items[0]["Tags"],
            AttributeValue::Ss(vec!["a".into(), "b".into()])
        );
        assert!(!items[1].contains_key("Tags"), "empty set omitted");
        assert_eq!(items[1]["N"], AttributeValue::Null(true));
        assert!(!items[0].contains_key("B"));
        let AttributeValue::M(addr) = &items[1]["Address"] else {
            panic!()
        };
        assert!(!addr.contains_key("Number"), "null struct fields omitted");
        let items = items_from_batch(&b, &MappingOptions::default());
        assert!(
            !items[1].as_ref().unwrap().contains_key("N"),
            "omitted by default"
        );
    }

    #[test]
    fn json_forms_round_trip_and_sizes_count() {
        let item: Item = items_from_batch(&batch(), &MappingOptions::default())
            .remove(0)
            .unwrap();
        let mut with_bin = item.clone();
        with_bin.insert(
            "Bin".into(),
            AttributeValue::B(Blob::new(vec![0u8, 1, 2, 250, 251])),
        );
        with_bin.insert(
            "NS".into(),
            AttributeValue::Ns(vec!["1".into(), "2.5".into()]),
        );
        let json = item_to_dynamo_json(&with_bin);
        assert_eq!(item_from_dynamo_json(&json).unwrap(), with_bin);
        let plain = item_to_plain_json(&item);
        assert_eq!(plain["Price"], serde_json::json!(25.5));
        assert_eq!(plain["Address"]["City"], "São Paulo");
        assert_eq!(base64_encode(b"hello"), "aGVsbG8=");
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        let size = item_size(&item);
        assert!(size > 40 && size < 200, "{size}");
        let keys = KeySchema::new("PK", None);
        assert_eq!(keys.describe(&item), "PK=SALE#1");
        assert!(KeySchema::new("PK", Some("SK")).key_of("t", &item).is_err());
    }
}
