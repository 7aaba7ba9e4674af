//! Items built as JSON objects, for a transform that reshapes source rows into a DynamoDB
//! design (keys, renamed and nested attributes, code maps) and hands the pipeline an Arrow
//! batch the [`DynamoLoad`](crate::DynamoLoad) maps back into items:
//!
//! * [`Row`]: a source row read by column name in the forms of [`mapping`](crate::mapping)
//!   (text trimmed of `char(n)` padding, decimals as exact text, ISO-8601 `Z` timestamps,
//!   `YYYY-MM-DD` dates);
//! * [`Attr`] and [`item_schema`]: the Arrow schema of the items (strings, integers,
//!   decimals, maps of strings, lists of strings or of such maps);
//! * [`json_batch`]: JSON objects -> a batch of that schema; [`map_rows`]: a whole
//!   transform step (one object or one reject per row); [`ItemTransform`]: the
//!   [`etl_core::Transform`] of a function of a row.
//!
//! ```
//! use etl_sink_dynamodb::KeySchema;
//! use etl_sink_dynamodb::json_items::{Attr, item_schema, json_batch};
//! let schema = item_schema(&KeySchema::new("PK", None), &[
//!     ("PK", Attr::S),
//!     ("Total", Attr::Dec(18, 2)),
//!     ("Address", Attr::Map(&["Street", "City"])),
//! ]);
//! let row = serde_json::json!({"PK": "ORDER#1", "Total": "12.50", "Address": {"City": "Lisboa"}});
//! let batch = json_batch(&schema, &[row.as_object().unwrap().clone()]).unwrap();
//! assert_eq!(batch.num_rows(), 1);
//! ```

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType,
};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Decimal128Array, Int64Array, ListArray, RecordBatch,
    StringArray, StructArray,
};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{ArrowError, DataType, Field, Fields, Schema, SchemaRef};
use etl_core::codec::{Rounding, parse_decimal};
use etl_core::{Batch, Fate};
use serde_json::{Map, Value};

use crate::mapping::{KeySchema, format_timestamp};

/// The type of an item attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attr {
    /// A string (`S`).
    S,
    /// An integer (`N`).
    Int,
    /// A decimal of this precision and scale (`N`, exact).
    Dec(u8, i8),
    /// A map of these string attributes (`M`).
    Map(&'static [&'static str]),
    /// A list of strings (`L`).
    StrList,
    /// A list of maps of these string attributes (`L` of `M`).
    MapList(&'static [&'static str]),
}

fn strings(names: &[&str]) -> Fields {
    (names.iter())
        .map(|n| Field::new(*n, DataType::Utf8, true))
        .collect()
}

impl Attr {
    /// Its Arrow type.
    pub fn data_type(self) -> DataType {
        let list = |t| DataType::List(Arc::new(Field::new_list_field(t, true)));
        match self {
            Attr::S => DataType::Utf8,
            Attr::Int => DataType::Int64,
            Attr::Dec(p, s) => DataType::Decimal128(p, s),
            Attr::Map(f) => DataType::Struct(strings(f)),
            Attr::StrList => list(DataType::Utf8),
            Attr::MapList(f) => list(DataType::Struct(strings(f))),
        }
    }
}

/// The Arrow schema of items with these attributes, in this order; the key attributes
/// are not nullable.
pub fn item_schema(keys: &KeySchema, attrs: &[(&str, Attr)]) -> SchemaRef {
    let key = |n: &str| n == keys.partition || keys.sort.as_deref() == Some(n);
    let fields: Vec<Field> = (attrs.iter())
        .map(|(n, a)| Field::new(*n, a.data_type(), !key(n)))
        .collect();
    Arc::new(Schema::new(fields))
}

fn error(message: String) -> ArrowError {
    ArrowError::InvalidArgumentError(message)
}

/// One array of type `field` from JSON values (`None`/`null` = null): strings (other
/// values as their JSON text), integers, booleans, decimals from strings or numbers,
/// structs from objects, lists from arrays.
///
/// # Errors
/// A decimal that does not fit, a type with no conversion.
pub fn json_array(field: &Field, values: &[Option<&Value>]) -> Result<ArrayRef, ArrowError> {
    let present: Vec<bool> = values
        .iter()
        .map(|v| v.is_some_and(|v| !v.is_null()))
        .collect();
    fn value<'v>(v: &Option<&'v Value>) -> Option<&'v Value> {
        v.filter(|v| !v.is_null())
    }
    Ok(match field.data_type() {
        DataType::Utf8 => Arc::new(
            (values.iter().map(value))
                .map(|v| v.map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                .collect::<StringArray>(),
        ),
        DataType::Int64 => Arc::new(
            values
                .iter()
                .map(|v| v.and_then(Value::as_i64))
                .collect::<Int64Array>(),
        ),
        DataType::Boolean => Arc::new(
            values
                .iter()
                .map(|v| v.and_then(Value::as_bool))
                .collect::<BooleanArray>(),
        ),
        DataType::Decimal128(p, s) => {
            let parse = |v: &Value| {
                let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                let bytes = text.trim().as_bytes();
                parse_decimal(bytes, *p, *s, Rounding::HalfAwayFromZero).map_err(|_| {
                    error(format!(
                        "{}: {text} does not fit Decimal128({p}, {s})",
                        field.name()
                    ))
                })
            };
            let out: Vec<Option<i128>> = (values.iter().map(value))
                .map(|v| v.map(parse).transpose())
                .collect::<Result<_, _>>()?;
            Arc::new(Decimal128Array::from(out).with_precision_and_scale(*p, *s)?)
        }
        DataType::Struct(fields) => {
            let children = (fields.iter())
                .map(|f| {
                    let child: Vec<Option<&Value>> = values
                        .iter()
                        .map(|v| v.and_then(|v| v.get(f.name())))
                        .collect();
                    json_array(f, &child)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let nulls = Some(NullBuffer::from(present));
            Arc::new(StructArray::try_new(fields.clone(), children, nulls)?)
        }
        DataType::List(item) => {
            let lists: Vec<&[Value]> = (values.iter())
                .map(|v| v.and_then(Value::as_array).map_or(&[][..], Vec::as_slice))
                .collect();
            let flat: Vec<Option<&Value>> = lists.iter().flat_map(|l| l.iter().map(Some)).collect();
            let offsets = OffsetBuffer::from_lengths(lists.iter().map(|l| l.len()));
            let child = json_array(item, &flat)?;
            let nulls = Some(NullBuffer::from(present));
            Arc::new(ListArray::try_new(item.clone(), offsets, child, nulls)?)
        }
        other => return Err(error(format!("no JSON conversion to {other}"))),
    })
}

/// Rows (JSON objects) -> a batch of `schema`; attributes not in the schema are ignored.
///
/// # Errors
/// See [`json_array`].
pub fn json_batch(
    schema: &SchemaRef,
    rows: &[Map<String, Value>],
) -> Result<RecordBatch, ArrowError> {
    let columns = (schema.fields().iter())
        .map(|f| json_array(f, &rows.iter().map(|r| r.get(f.name())).collect::<Vec<_>>()))
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

/// The body of a transform: `item` turns every row of `batch` into an object or a fate
/// (a reject); the batch becomes the objects, as a batch of `schema`. `name` names the
/// transform in errors.
///
/// # Errors
/// The objects do not fit `schema` ([`json_array`]).
pub fn map_rows(
    name: &str,
    batch: &mut Batch,
    schema: &SchemaRef,
    item: impl Fn(&Row<'_>) -> Result<Map<String, Value>, Fate>,
) -> etl_core::Result<()> {
    let (mut fates, mut rows) = (Vec::with_capacity(batch.num_rows()), Vec::new());
    for r in 0..batch.num_rows() {
        match item(&Row::new(&batch.data, r)) {
            Ok(m) => {
                rows.push(m);
                fates.push(None);
            }
            Err(f) => fates.push(Some(f)),
        }
    }
    batch.apply_fates(&fates)?;
    batch.data = json_batch(schema, &rows).map_err(|e| {
        etl_core::Error::component(etl_core::Stage::Transform, name, false, e.to_string())
    })?;
    Ok(())
}

/// A transform from a function of a source row ([`map_rows`]): every row becomes the
/// item `item` returns, as a batch of `schema`, or the reject it returns.
///
/// ```
/// use etl_core::Transform;
/// use etl_sink_dynamodb::KeySchema;
/// use etl_sink_dynamodb::json_items::{Attr, ItemTransform, item_schema, need};
/// let schema = item_schema(&KeySchema::new("PK", None), &[("PK", Attr::S)]);
/// let t = ItemTransform::new("orders", schema, |row| {
///     let id = need(row.i("id"), "id")?;
///     Ok(serde_json::json!({"PK": format!("ORDER#{id}")}).as_object().unwrap().clone())
/// });
/// assert_eq!(t.name(), "orders");
/// ```
pub struct ItemTransform<F> {
    name: String,
    schema: SchemaRef,
    item: F,
}

impl<F> ItemTransform<F>
where
    F: Fn(&Row<'_>) -> Result<Map<String, Value>, Fate> + Send + Sync + 'static,
{
    /// The transform `name` making items of `schema` with `item`.
    pub fn new(name: impl Into<String>, schema: SchemaRef, item: F) -> Self {
        ItemTransform {
            name: name.into(),
            schema,
            item,
        }
    }
}

impl<F> etl_core::Transform for ItemTransform<F>
where
    F: Fn(&Row<'_>) -> Result<Map<String, Value>, Fate> + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn output_schema(&self, _input: &SchemaRef) -> etl_core::Result<SchemaRef> {
        Ok(self.schema.clone())
    }

    fn transform(&self, mut batch: Batch) -> etl_core::Result<Batch> {
        map_rows(&self.name, &mut batch, &self.schema, &self.item)?;
        Ok(batch)
    }
}

/// A reject of `column` (its `kind` and `reason`), for a row that cannot become an item.
pub fn reject(column: &str, kind: &str, reason: impl Into<String>) -> Fate {
    Fate::Reject {
        column: Some(column.to_owned()),
        kind: kind.to_owned(),
        reason: reason.into(),
    }
}

/// A value the item cannot do without; else a `missing_value` reject of `column`.
pub fn need<T>(v: Option<T>, column: &str) -> Result<T, Fate> {
    v.ok_or_else(|| reject(column, "missing_value", format!("{column} is null")))
}

/// A code table: source codes and their target values.
pub type Codes = &'static [(&'static str, &'static str)];

/// The target value of `code` (trimmed) in `codes`; else an `unknown_code` reject of
/// `column`: `<what> "<code>" is not one of <codes>`.
pub fn map_code<'a>(
    codes: &[(&'a str, &'a str)],
    code: &str,
    column: &str,
    what: &str,
) -> Result<&'a str, Fate> {
    let found = codes.iter().find(|(c, _)| *c == code.trim());
    found.map(|(_, v)| *v).ok_or_else(|| {
        let known: Vec<&str> = codes.iter().map(|(c, _)| *c).collect();
        let why = format!("{what} {code:?} is not one of {}", known.join("/"));
        reject(column, "unknown_code", why)
    })
}

/// One row of a source batch, read by column name; every reader is `None` for a null or
/// a missing column.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    batch: &'a RecordBatch,
    row: usize,
}

impl<'a> Row<'a> {
    /// Row `row` of `batch`.
    pub fn new(batch: &'a RecordBatch, row: usize) -> Self {
        Row { batch, row }
    }

    fn col(&self, name: &str) -> Option<&'a ArrayRef> {
        let c = self.batch.column_by_name(name)?;
        (!c.is_null(self.row)).then_some(c)
    }

    /// Text, trimmed of `char(n)` padding; other types as they are rendered.
    pub fn s(&self, name: &str) -> Option<String> {
        let c = self.col(name)?;
        Some(match c.data_type() {
            DataType::Utf8 => c.as_string::<i32>().value(self.row).trim_end().to_owned(),
            _ => etl_core::batch::render_value(c, self.row),
        })
    }

    /// An integer (16, 32 or 64 bits).
    pub fn i(&self, name: &str) -> Option<i64> {
        let (c, r) = (self.col(name)?, self.row);
        Some(match c.data_type() {
            DataType::Int16 => c.as_primitive::<Int16Type>().value(r).into(),
            DataType::Int32 => c.as_primitive::<Int32Type>().value(r).into(),
            DataType::Int64 => c.as_primitive::<Int64Type>().value(r),
            _ => return None,
        })
    }

    /// A decimal as exact text (`25.5`), as a JSON string.
    pub fn dec(&self, name: &str) -> Option<Value> {
        let c = self.col(name)?;
        Some(Value::String(match c.data_type() {
            DataType::Decimal128(_, s) => etl_core::batch::format_decimal(
                c.as_primitive::<Decimal128Type>().value(self.row),
                *s,
            ),
            _ => etl_core::batch::render_value(c, self.row),
        }))
    }

    /// A timestamp (microseconds) as ISO-8601 UTC: `2026-01-30T14:30:00Z`.
    pub fn ts(&self, name: &str) -> Option<String> {
        let c = self.col(name)?;
        let micros = c
            .as_primitive_opt::<TimestampMicrosecondType>()?
            .value(self.row);
        format_timestamp(micros).ok()
    }

    /// A date as `YYYY-MM-DD`.
    pub fn date(&self, name: &str) -> Option<String> {
        let days = self
            .col(name)?
            .as_primitive_opt::<Date32Type>()?
            .value(self.row);
        chrono::NaiveDate::from_num_days_from_ce_opt(days + 719_163).map(|d| d.to_string())
    }

    /// The value in the form its column's type calls for: text ([`Row::s`]), an integer,
    /// a boolean, a decimal ([`Row::dec`]), a timestamp ([`Row::ts`]), a date
    /// ([`Row::date`]); other types as they are rendered.
    pub fn value(&self, name: &str) -> Option<Value> {
        let c = self.col(name)?;
        match c.data_type() {
            DataType::Int16 | DataType::Int32 | DataType::Int64 => self.i(name).map(Value::from),
            DataType::Boolean => Some(Value::Bool(c.as_boolean().value(self.row))),
            DataType::Decimal128(..) => self.dec(name),
            DataType::Timestamp(..) => self.ts(name).map(Value::String),
            DataType::Date32 => self.date(name).map(Value::String),
            _ => self.s(name).map(Value::String),
        }
    }

    /// Copy columns into attributes of `m` as they are ([`Row::value`]): `(attribute,
    /// column)` pairs; an empty column name, a null or a missing column copies nothing.
    pub fn copy_into<'n>(
        &self,
        m: &mut Map<String, Value>,
        columns: impl IntoIterator<Item = (&'n str, &'n str)>,
    ) {
        for (attr, column) in columns {
            if let Some(v) = (!column.is_empty()).then(|| self.value(column)).flatten() {
                m.insert(attr.to_owned(), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn codes_map_or_reject_with_the_known_ones() {
        const CODES: Codes = &[("A", "ACTIVE"), ("I", "INACTIVE")];
        assert_eq!(map_code(CODES, "I ", "status", "status"), Ok("INACTIVE"));
        let Err(Fate::Reject {
            column,
            kind,
            reason,
        }) = map_code(CODES, "X", "st", "status")
        else {
            panic!("not a reject")
        };
        assert_eq!(
            (column.as_deref(), kind.as_str()),
            (Some("st"), "unknown_code")
        );
        assert_eq!(reason, "status \"X\" is not one of A/I");
        assert!(
            matches!(need(None::<i64>, "id"), Err(Fate::Reject { kind, .. }) if kind == "missing_value")
        );
        assert_eq!(need(Some(1), "id"), Ok(1));
    }

    use super::*;
    use crate::mapping::{MappingOptions, items_from_batch, to_plain_json};

    #[test]
    fn json_objects_become_items_of_the_schema() {
        let schema = item_schema(
            &KeySchema::new("PK", None),
            &[
                ("PK", Attr::S),
                ("N", Attr::Int),
                ("Total", Attr::Dec(18, 2)),
                ("Address", Attr::Map(&["City"])),
                ("Tags", Attr::StrList),
                ("Certs", Attr::MapList(&["Type"])),
            ],
        );
        assert!(!schema.field(0).is_nullable());
        let rows = serde_json::json!([
            {"PK": "A", "N": 3, "Total": "12.5", "Address": {"City": "Lisboa"}, "Tags": ["x", "y"],
             "Certs": [{"Type": "ISO"}]},
            {"PK": "B", "Total": 7}
        ]);
        let rows: Vec<Map<String, Value>> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_object().unwrap().clone())
            .collect();
        let batch = json_batch(&schema, &rows).unwrap();
        let items: Vec<Value> = items_from_batch(&batch, &MappingOptions::default())
            .into_iter()
            .map(|i| {
                let i = i.unwrap();
                let mut m: Vec<(String, Value)> = i
                    .iter()
                    .map(|(k, v)| (k.clone(), to_plain_json(v)))
                    .collect();
                m.sort_by(|a, b| a.0.cmp(&b.0));
                Value::Object(m.into_iter().collect())
            })
            .collect();
        assert_eq!(items[0]["Total"], serde_json::json!(12.5));
        assert_eq!(items[0]["Address"]["City"], "Lisboa");
        assert_eq!(items[0]["Tags"], serde_json::json!(["x", "y"]));
        assert_eq!(items[0]["Certs"][0]["Type"], "ISO");
        assert_eq!(items[1], serde_json::json!({"PK": "B", "Total": 7}));
        let row = Row::new(&batch, 0);
        assert_eq!(
            (row.s("PK").as_deref(), row.i("N"), row.dec("Total")),
            (Some("A"), Some(3), Some(Value::String("12.5".into())))
        );
        assert_eq!(row.s("missing"), None);
        let mut m = Map::new();
        let columns = [
            ("Id", "PK"),
            ("Count", "N"),
            ("Sum", "Total"),
            ("X", ""),
            ("Y", "nope"),
        ];
        row.copy_into(&mut m, columns);
        let copied = serde_json::json!({"Id": "A", "Count": 3, "Sum": "12.5"});
        assert_eq!(Value::Object(m), copied);
        let mut m = Map::new();
        row.copy_into(
            &mut m,
            [
                ("Id", "PK"),
                ("Count", "N"),
                ("Sum", "Total"),
                ("X", ""),
                ("Y", "nope"),
            ],
        );
        assert_eq!(
            Value::Object(m),
            serde_json::json!({"Id": "A", "Count": 3, "Sum": "12.5"})
        );
        let too_big = [serde_json::json!({"PK": "C", "Total": "1e30"})
            .as_object()
            .unwrap()
            .clone()];
        assert!(
            json_batch(&schema, &too_big)
                .unwrap_err()
                .to_string()
                .contains("Total")
        );
    }
}
