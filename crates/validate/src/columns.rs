//! Column transforms a declarative job needs: rename, cast, default, filter, and
//! deterministic UUID ids.
//!
//! Each is a [`Transform`] whose output schema is decided once, before the run; a value that
//! cannot be converted rejects its row (naming the column and the value), never the run.
//!
//! ```
//! use etl_validate::columns::{Rename, IdMethod, UuidIds};
//! let rename = Rename::new([("Id", "record_id"), ("Order", "order_name")]);
//! let ids = UuidIds::new("id", ["Id"], uuid::Uuid::NAMESPACE_OID, IdMethod::V5);
//! assert_eq!(ids.id_for(&["42"]), ids.id_for(&["42"]));
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray, new_null_array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use etl_core::{Batch, Error, Fate, Result, Stage, Transform};
use uuid::Uuid;

use crate::lookup::id_array;

fn schema_error(component: &str, detail: String) -> Error {
    Error::Schema {
        stage: Stage::Transform,
        component: component.into(),
        detail,
    }
}

fn field<'a>(input: &'a SchemaRef, column: &str, component: &str) -> Result<&'a Field> {
    input.field_with_name(column).map_err(|_| {
        let names: Vec<&str> = input.fields().iter().map(|f| f.name().as_str()).collect();
        schema_error(
            component,
            format!(
                "no column `{column}` (the columns are {})",
                names.join(", ")
            ),
        )
    })
}

/// Renames columns (`from` -> `to`); the arrays are not touched. Columns not named keep
/// their names; renaming a column that does not exist is an error before the run.
#[derive(Debug, Clone)]
pub struct Rename {
    pairs: Vec<(String, String)>,
}

impl Rename {
    /// Rename every `(from, to)`.
    pub fn new<A: Into<String>, B: Into<String>>(pairs: impl IntoIterator<Item = (A, B)>) -> Self {
        Rename {
            pairs: pairs
                .into_iter()
                .map(|(a, b)| (a.into(), b.into()))
                .collect(),
        }
    }
}

impl Transform for Rename {
    fn name(&self) -> &str {
        "rename"
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef> {
        let map: HashMap<&str, &str> = self
            .pairs
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        for (from, _) in &self.pairs {
            field(input, from, "rename")?;
        }
        let fields: Vec<Field> = input
            .fields()
            .iter()
            .map(|f| match map.get(f.name().as_str()) {
                Some(to) => f.as_ref().clone().with_name(*to),
                None => f.as_ref().clone(),
            })
            .collect();
        let mut seen = HashSet::new();
        for f in &fields {
            if !seen.insert(f.name().as_str()) {
                return Err(schema_error(
                    "rename",
                    format!("two columns would be named `{}`", f.name()),
                ));
            }
        }
        Ok(Arc::new(Schema::new(fields)))
    }

    fn transform(&self, mut batch: Batch) -> Result<Batch> {
        let schema = self.output_schema(&batch.data.schema())?;
        batch.data = RecordBatch::try_new(schema, batch.data.columns().to_vec())?;
        Ok(batch)
    }
}

/// Drops columns the target does not take.
#[derive(Debug, Clone)]
pub struct Drop {
    columns: Vec<String>,
}

impl Drop {
    /// Drop `columns`.
    pub fn new<S: Into<String>>(columns: impl IntoIterator<Item = S>) -> Self {
        Drop {
            columns: columns.into_iter().map(Into::into).collect(),
        }
    }

    fn kept(&self, input: &SchemaRef) -> Result<Vec<usize>> {
        for c in &self.columns {
            field(input, c, "drop")?;
        }
        Ok((0..input.fields().len())
            .filter(|&i| !self.columns.contains(input.field(i).name()))
            .collect())
    }
}

impl Transform for Drop {
    fn name(&self) -> &str {
        "drop"
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef> {
        Ok(Arc::new(input.project(&self.kept(input)?)?))
    }

    fn transform(&self, mut batch: Batch) -> Result<Batch> {
        let kept = self.kept(&batch.data.schema())?;
        batch.data = batch.data.project(&kept)?;
        Ok(batch)
    }
}

/// Casts columns to another Arrow type (text to integer, decimal, date, timestamp, …).
/// A non-NULL value that does not convert rejects its row (`cast_failed`, naming the
/// column, the value and the type).
#[derive(Debug, Clone)]
pub struct Cast {
    columns: Vec<(String, DataType)>,
}

impl Cast {
    /// Cast every `(column, type)`.
    pub fn new<S: Into<String>>(columns: impl IntoIterator<Item = (S, DataType)>) -> Self {
        Cast {
            columns: columns.into_iter().map(|(c, t)| (c.into(), t)).collect(),
        }
    }
}

impl Transform for Cast {
    fn name(&self) -> &str {
        "cast"
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef> {
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        for (column, to) in &self.columns {
            let f = field(input, column, "cast")?;
            if !arrow_cast::can_cast_types(f.data_type(), to) {
                return Err(schema_error(
                    "cast",
                    format!("`{column}` is {} and cannot be cast to {to}", f.data_type()),
                ));
            }
            let i = input.index_of(column)?;
            fields[i] = fields[i].clone().with_data_type(to.clone());
        }
        Ok(Arc::new(Schema::new(fields)))
    }

    fn transform(&self, mut batch: Batch) -> Result<Batch> {
        let schema = self.output_schema(&batch.data.schema())?;
        let n = batch.num_rows();
        let mut fates: Vec<Option<Fate>> = vec![None; n];
        let mut columns = batch.data.columns().to_vec();
        for (column, to) in &self.columns {
            let i = schema.index_of(column)?;
            let from = columns[i].clone();
            let cast = arrow_cast::cast(&from, to)?;
            for (row, fate) in fates.iter_mut().enumerate() {
                if fate.is_none() && cast.is_null(row) && !from.is_null(row) {
                    let value =
                        arrow_cast::display::array_value_to_string(&from, row).unwrap_or_default();
                    *fate = Some(Fate::Reject {
                        column: Some(column.clone()),
                        kind: "cast_failed".into(),
                        reason: format!("`{column}`: {value:?} is not a valid {to}"),
                    });
                }
            }
            columns[i] = cast;
        }
        batch.data = RecordBatch::try_new(schema, columns)?;
        batch.apply_fates(&fates)?;
        Ok(batch)
    }
}

/// Fills NULLs of a column with a value (given as text, converted to the column's type
/// once), or adds the column with that value for every row when the input lacks it (as
/// text unless `data_type` is set).
#[derive(Debug, Clone)]
pub struct Default {
    column: String,
    value: String,
    data_type: Option<DataType>,
}

impl Default {
    /// `column` defaults to `value`.
    pub fn new(column: impl Into<String>, value: impl Into<String>) -> Self {
        Default {
            column: column.into(),
            value: value.into(),
            data_type: None,
        }
    }

    /// The type of the column when it is added.
    pub fn with_type(mut self, data_type: DataType) -> Self {
        self.data_type = Some(data_type);
        self
    }

    fn constant(&self, data_type: &DataType, n: usize) -> Result<ArrayRef> {
        let text: ArrayRef = Arc::new(StringArray::from(vec![self.value.as_str(); n]));
        let v = arrow_cast::cast(&text, data_type)?;
        if n > 0 && v.is_null(0) {
            return Err(schema_error(
                "default",
                format!(
                    "the default {:?} of `{}` is not a valid {data_type}",
                    self.value, self.column
                ),
            ));
        }
        Ok(v)
    }
}

impl Transform for Default {
    fn name(&self) -> &str {
        "default"
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef> {
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        match input.index_of(&self.column) {
            Ok(i) => {
                self.constant(fields[i].data_type(), 1)?;
                fields[i] = fields[i].clone().with_nullable(false);
            }
            Err(_) => {
                let t = self.data_type.clone().unwrap_or(DataType::Utf8);
                self.constant(&t, 1)?;
                fields.push(Field::new(&self.column, t, false));
            }
        }
        Ok(Arc::new(Schema::new(fields)))
    }

    fn transform(&self, mut batch: Batch) -> Result<Batch> {
        let schema = self.output_schema(&batch.data.schema())?;
        let n = batch.num_rows();
        let mut columns = batch.data.columns().to_vec();
        let i = schema.index_of(&self.column)?;
        let t = schema.field(i).data_type().clone();
        let constant = self.constant(&t, n)?;
        if i < columns.len() {
            let col = &columns[i];
            if let Some(nulls) = col.logical_nulls().filter(|n| n.null_count() > 0) {
                // The validity bitmap inverted: true where the value is NULL.
                let is_null = BooleanArray::new(!nulls.inner(), None);
                columns[i] = arrow_select::zip::zip(&is_null, &constant, col)?;
            }
        } else {
            columns.push(constant);
        }
        batch.data = RecordBatch::try_new(schema, columns)?;
        Ok(batch)
    }
}

/// Which rows a [`Filter`] keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keep {
    /// Rows whose value is one of the values.
    In,
    /// Rows whose value is none of the values (NULLs are kept).
    NotIn,
    /// Rows whose value is not NULL.
    NotNull,
}

/// Drops rows on purpose: they are counted as *filtered* with `reason` (never lost:
/// read = loaded + rejected + filtered).
#[derive(Debug, Clone)]
pub struct Filter {
    column: String,
    keep: Keep,
    values: HashSet<String>,
    reason: String,
}

impl Filter {
    /// Keep the rows of `column` that `keep` says, comparing its text form with `values`.
    pub fn new<S: Into<String>>(
        column: impl Into<String>,
        keep: Keep,
        values: impl IntoIterator<Item = S>,
        reason: impl Into<String>,
    ) -> Self {
        Filter {
            column: column.into(),
            keep,
            values: values.into_iter().map(Into::into).collect(),
            reason: reason.into(),
        }
    }
}

impl Transform for Filter {
    fn name(&self) -> &str {
        "filter"
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef> {
        field(input, &self.column, "filter")?;
        Ok(input.clone())
    }

    fn transform(&self, mut batch: Batch) -> Result<Batch> {
        let col = batch
            .data
            .column_by_name(&self.column)
            .ok_or_else(|| schema_error("filter", format!("no column `{}`", self.column)))?
            .clone();
        let text = arrow_cast::cast(&col, &DataType::Utf8)?;
        let text = text.as_string::<i32>();
        let fates: Vec<Option<Fate>> = (0..text.len())
            .map(|i| {
                let keep = match (&self.keep, text.is_null(i)) {
                    (Keep::NotNull, null) => !null,
                    (Keep::In, true) => false,
                    (Keep::NotIn, true) => true,
                    (Keep::In, false) => self.values.contains(text.value(i)),
                    (Keep::NotIn, false) => !self.values.contains(text.value(i)),
                };
                (!keep).then(|| Fate::Filter {
                    reason: self.reason.clone(),
                })
            })
            .collect();
        batch.apply_fates(&fates)?;
        Ok(batch)
    }
}

/// How [`UuidIds`] makes an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdMethod {
    /// A version-5 UUID of the key columns' text joined by `\u{1f}` (any key, one SHA-1
    /// per row).
    V5,
    /// For one Int64 key column: the namespace's first 8 bytes and the key itself (a
    /// version-8 UUID, RFC 9562 variant; no hashing, free to compute, the key readable in
    /// the id); keys outside `0..2^62` fall back to [`IdMethod::V5`] of the key's bytes.
    Embed,
}

/// Deterministic row ids: the same key gives the same id in every run, so a rerun, a
/// resume or a second system computing ids agrees; the key columns are kept, so a
/// mapping table (key -> id) is one `INSERT … SELECT` away.
#[derive(Debug, Clone)]
pub struct UuidIds {
    column: String,
    from: Vec<String>,
    namespace: Uuid,
    method: IdMethod,
}

/// The [`IdMethod::Embed`] id of `key` in `namespace`.
pub fn embedded_id(namespace: &Uuid, key: i64) -> [u8; 16] {
    if (0..1 << 62).contains(&key) {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&namespace.as_bytes()[..8]);
        b[6] = (b[6] & 0x0f) | 0x80;
        b[8..].copy_from_slice(&(key as u64 | 1 << 63).to_be_bytes());
        b
    } else {
        *Uuid::new_v5(namespace, &key.to_be_bytes()).as_bytes()
    }
}

impl UuidIds {
    /// Add `column` (a UUID as FixedSizeBinary(16)) computed from the `from` columns.
    pub fn new<S: Into<String>>(
        column: impl Into<String>,
        from: impl IntoIterator<Item = S>,
        namespace: Uuid,
        method: IdMethod,
    ) -> Self {
        UuidIds {
            column: column.into(),
            from: from.into_iter().map(Into::into).collect(),
            namespace,
            method,
        }
    }

    /// The [`IdMethod::V5`] id of a key given as its columns' text.
    pub fn id_for(&self, key: &[&str]) -> Uuid {
        Uuid::new_v5(&self.namespace, key.join("\u{1f}").as_bytes())
    }
}

impl Transform for UuidIds {
    fn name(&self) -> &str {
        "uuid"
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef> {
        if self.from.is_empty() {
            return Err(schema_error("uuid", "no key columns (`from`)".into()));
        }
        for c in &self.from {
            let f = field(input, c, "uuid")?;
            if self.method == IdMethod::Embed
                && (self.from.len() != 1 || f.data_type() != &DataType::Int64)
            {
                return Err(schema_error(
                    "uuid",
                    format!(
                        "method `embed` takes one Int64 key column; `{c}` is {}",
                        f.data_type()
                    ),
                ));
            }
        }
        Ok(crate::lookup::with_id_column(input, &self.column))
    }

    fn transform(&self, mut batch: Batch) -> Result<Batch> {
        let schema = self.output_schema(&batch.data.schema())?;
        let n = batch.num_rows();
        let mut bytes = Vec::with_capacity(n * 16);
        let mut fates: Vec<Option<Fate>> = vec![None; n];
        let keys: Vec<ArrayRef> = self
            .from
            .iter()
            .map(|c| batch.data.column_by_name(c).expect("checked").clone())
            .collect();
        let missing = |row: usize| {
            keys.iter()
                .position(|k| k.is_null(row))
                .map(|i| Fate::Reject {
                    column: Some(self.from[i].clone()),
                    kind: "missing_key".into(),
                    reason: format!("`{}` is empty: no id can be made", self.from[i]),
                })
        };
        match self.method {
            IdMethod::Embed => {
                let k = keys[0].as_primitive::<Int64Type>();
                for (row, v) in k.values().iter().enumerate() {
                    fates[row] = missing(row);
                    bytes.extend_from_slice(&embedded_id(&self.namespace, *v));
                }
            }
            IdMethod::V5 => {
                let text: Vec<ArrayRef> = keys
                    .iter()
                    .map(|k| arrow_cast::cast(k, &DataType::Utf8))
                    .collect::<std::result::Result<_, _>>()?;
                let text: Vec<_> = text.iter().map(|t| t.as_string::<i32>()).collect();
                let mut key = String::new();
                for (row, fate) in fates.iter_mut().enumerate() {
                    *fate = missing(row);
                    key.clear();
                    for (i, t) in text.iter().enumerate() {
                        if i > 0 {
                            key.push('\u{1f}');
                        }
                        key.push_str(t.value(row));
                    }
                    bytes.extend_from_slice(
                        Uuid::new_v5(&self.namespace, key.as_bytes()).as_bytes(),
                    );
                }
            }
        }
        let mut columns: Vec<ArrayRef> = batch
            .data
            .schema()
            .fields()
            .iter()
            .zip(batch.data.columns())
            .filter(|(f, _)| f.name() != &self.column)
            .map(|(_, c)| c.clone())
            .collect();
        columns.push(id_array(bytes));
        batch.data = RecordBatch::try_new(schema, columns)?;
        batch.apply_fates(&fates)?;
        Ok(batch)
    }
}

/// A NULL column of `data_type` and `n` rows (for a target column the source lacks).
pub fn null_column(data_type: &DataType, n: usize) -> ArrayRef {
    new_null_array(data_type, n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringViewArray};

    fn batch() -> Batch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("Id", DataType::Int64, true),
            Field::new("n", DataType::Utf8View, true),
        ]));
        let data = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(1), Some(2), None, Some(4)])),
                Arc::new(StringViewArray::from(vec![
                    Some("10"),
                    Some("x"),
                    None,
                    Some("7"),
                ])),
            ],
        )
        .unwrap();
        Batch::new("t".into(), data, vec![1, 2, 3, 4])
    }

    #[test]
    fn cast_rejects_what_does_not_convert_and_keeps_nulls() {
        let out = Cast::new([("n", DataType::Int32)])
            .transform(batch())
            .unwrap();
        assert_eq!(out.num_rows(), 3);
        assert_eq!(out.rejects.len(), 1);
        assert!(
            out.rejects[0].reason.contains("\"x\""),
            "{:?}",
            out.rejects[0]
        );
        assert_eq!(out.data.column(1).data_type(), &DataType::Int32);
    }

    #[test]
    fn rename_default_filter_and_ids() {
        let b = Rename::new([("Id", "record_id")])
            .transform(batch())
            .unwrap();
        assert_eq!(b.data.schema().field(0).name(), "record_id");
        let b = Default::new("n", "0").transform(b).unwrap();
        assert_eq!(b.data.column(1).null_count(), 0);
        let b = Filter::new("n", Keep::NotIn, ["x"], "no x")
            .transform(b)
            .unwrap();
        assert_eq!(b.num_rows(), 3);
        assert_eq!(b.filtered.get("no x"), Some(&1));
        let ids = UuidIds::new("id", ["record_id"], Uuid::NAMESPACE_OID, IdMethod::Embed);
        let b = ids.transform(b).unwrap();
        // The row with no record_id is rejected, not given an id.
        assert_eq!(b.num_rows(), 2);
        assert_eq!(b.rejects[0].kind, "missing_key");
        let col = b.data.column_by_name("id").unwrap().as_fixed_size_binary();
        assert_eq!(col.value(0), embedded_id(&Uuid::NAMESPACE_OID, 1));
        let v5 = UuidIds::new("id", ["n"], Uuid::NAMESPACE_OID, IdMethod::V5);
        let b = v5.transform(b).unwrap();
        let col = b.data.column_by_name("id").unwrap().as_fixed_size_binary();
        assert_eq!(col.value(0), v5.id_for(&["10"]).as_bytes());
    }
}
