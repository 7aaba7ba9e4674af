//! Declared schemas of Bubble types and the decoding of Bubble things (JSON objects, or the
//! raw text of an export) into typed Arrow batches.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Decimal128Builder, Float64Builder, Int64Builder, ListBuilder, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use etl_core::codec::{self, DecimalError, Rounding};
use etl_core::{Batch, Reject};
use serde_json::{Map, Value};

/// Key of a thing's unique id, in every key mode.
pub const ID: &str = "_id";
/// Key of the built-in creation date (Bubble sends it with a space).
pub const CREATED_DATE: &str = "Created Date";
/// Key of the built-in modification date.
pub const MODIFIED_DATE: &str = "Modified Date";
/// Column name of `_id` in batches.
pub const ID_COLUMN: &str = "_id";
/// Column name of `Created Date` in batches.
pub const CREATED_COLUMN: &str = "created_date";
/// Column name of `Modified Date` in batches.
pub const MODIFIED_COLUMN: &str = "modified_date";

/// Which field keys the app's Data API uses (an app setting in Bubble).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyMode {
    /// Display names (`email`, `Hourly Rate`).
    #[default]
    DisplayNames,
    /// Generated field ids (`email_text`, `hourly_rate_number`).
    GeneratedIds,
}

/// The Arrow type a field is decoded to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FieldKind {
    /// Text (also references, which are `_id` strings, and file URLs) -> `Utf8`.
    Text,
    /// yes/no -> `Boolean` (`true`/`false`, `yes`/`no`, `1`/`0`).
    Bool,
    /// A whole number -> `Int64`; a fractional value is an error.
    Int,
    /// A number -> `Float64`.
    Number,
    /// An exact decimal -> `Decimal128(precision, scale)`; more fractional digits than
    /// `scale` (other than zeros) or more than `precision` digits is an error, never a rounding.
    Decimal {
        /// Total digits.
        precision: u8,
        /// Digits after the point.
        scale: i8,
    },
    /// A date -> `Timestamp(ms, UTC)`; ISO-8601 and several other formats (see [`parse_datetime`]).
    Date,
    /// Any JSON value -> its JSON text in `Utf8` (a string that holds JSON is kept as is).
    Json,
    /// A list of texts -> `List<Utf8>`; a JSON array, or a string holding one.
    TextList,
}

impl FieldKind {
    /// The Arrow type of the decoded column.
    pub fn data_type(&self) -> DataType {
        match self {
            FieldKind::Text | FieldKind::Json => DataType::Utf8,
            FieldKind::Bool => DataType::Boolean,
            FieldKind::Int => DataType::Int64,
            FieldKind::Number => DataType::Float64,
            FieldKind::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale),
            FieldKind::Date => timestamp_type(),
            FieldKind::TextList => {
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
            }
        }
    }

    /// The suffix Bubble appends to a generated field id for this kind (`text`, `number`, ...).
    pub fn bubble_suffix(&self) -> &'static str {
        match self {
            FieldKind::Text | FieldKind::Json => "text",
            FieldKind::Bool => "boolean",
            FieldKind::Int | FieldKind::Number | FieldKind::Decimal { .. } => "number",
            FieldKind::Date => "date",
            FieldKind::TextList => "list_text",
        }
    }

    fn name(&self) -> &'static str {
        match self {
            FieldKind::Text => "text",
            FieldKind::Bool => "yes/no",
            FieldKind::Int => "integer",
            FieldKind::Number => "number",
            FieldKind::Decimal { .. } => "decimal",
            FieldKind::Date => "date",
            FieldKind::Json => "JSON",
            FieldKind::TextList => "list of texts",
        }
    }
}

/// `Timestamp(Millisecond, "UTC")`, the type of every decoded date.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// One field of a type: the batch column it becomes, its keys in both key modes, its kind.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FieldSpec {
    /// Column name in batches and exports.
    pub column: String,
    /// Key in [`KeyMode::DisplayNames`] mode.
    pub key: String,
    /// Key in [`KeyMode::GeneratedIds`] mode.
    pub id_key: String,
    /// Decoded kind.
    pub kind: FieldKind,
}

impl FieldSpec {
    /// A field whose display key is `column` and whose generated id is `column_<suffix>`.
    pub fn new(column: &str, kind: FieldKind) -> Self {
        FieldSpec {
            column: column.to_owned(),
            key: column.to_owned(),
            id_key: format!("{column}_{}", kind.bubble_suffix()),
            kind,
        }
    }

    /// Set the display-name key.
    pub fn key(mut self, key: &str) -> Self {
        key.clone_into(&mut self.key);
        self
    }

    /// Set the generated-id key.
    pub fn id_key(mut self, key: &str) -> Self {
        key.clone_into(&mut self.id_key);
        self
    }

    /// The key used in `mode`.
    pub fn key_for(&self, mode: KeyMode) -> &str {
        match mode {
            KeyMode::DisplayNames => &self.key,
            KeyMode::GeneratedIds => &self.id_key,
        }
    }
}

/// The declared schema of one Bubble type: `_id`, `Created Date`, `Modified Date` and the
/// fields the migration knows. Keys the schema does not know are ignored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TypeSchema {
    /// The Bubble type name as in the URL (`user`, `coach_profile`).
    pub bubble_type: String,
    /// Which keys the app sends.
    pub key_mode: KeyMode,
    /// The fields, in column order after the three built-ins.
    pub fields: Vec<FieldSpec>,
}

impl TypeSchema {
    /// A schema with only the built-in fields.
    pub fn new(bubble_type: &str, key_mode: KeyMode) -> Self {
        TypeSchema {
            bubble_type: bubble_type.to_owned(),
            key_mode,
            fields: Vec::new(),
        }
    }

    /// Add a field.
    pub fn field(mut self, spec: FieldSpec) -> Self {
        self.fields.push(spec);
        self
    }

    /// Schema of typed batches: `_id` Utf8, the two dates as timestamps, then each field's type.
    pub fn arrow_schema(&self) -> SchemaRef {
        let mut fields = vec![
            Field::new(ID_COLUMN, DataType::Utf8, false),
            Field::new(CREATED_COLUMN, timestamp_type(), true),
            Field::new(MODIFIED_COLUMN, timestamp_type(), true),
        ];
        fields.extend(
            self.fields
                .iter()
                .map(|f| Field::new(&f.column, f.kind.data_type(), true)),
        );
        Arc::new(Schema::new(fields))
    }

    /// Schema of raw batches (the export): the same columns, all `Utf8`, values as sent
    /// (strings as is, other JSON values as JSON text). Lossless: decoding never rejects.
    pub fn raw_schema(&self) -> SchemaRef {
        let mut fields = vec![
            Field::new(ID_COLUMN, DataType::Utf8, false),
            Field::new(CREATED_COLUMN, DataType::Utf8, true),
            Field::new(MODIFIED_COLUMN, DataType::Utf8, true),
        ];
        fields.extend(
            self.fields
                .iter()
                .map(|f| Field::new(&f.column, DataType::Utf8, true)),
        );
        Arc::new(Schema::new(fields))
    }

    fn kinds(&self) -> Vec<FieldKind> {
        let mut k = vec![FieldKind::Text, FieldKind::Date, FieldKind::Date];
        k.extend(self.fields.iter().map(|f| f.kind));
        k
    }

    fn columns(&self) -> Vec<String> {
        let mut c = vec![
            ID_COLUMN.to_owned(),
            CREATED_COLUMN.to_owned(),
            MODIFIED_COLUMN.to_owned(),
        ];
        c.extend(self.fields.iter().map(|f| f.column.clone()));
        c
    }
}

/// One decoded value.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Str(String),
    Bool(bool),
    Int(i64),
    F64(f64),
    Dec(i128),
    Ts(i64),
    List(Vec<String>),
}

/// Parse a date in one of the formats seen in Bubble apps and their CSV exports:
/// RFC 3339 / ISO-8601 (`2024-02-19T07:12:10.811Z`, with or without fraction or offset;
/// naive values are UTC), `2024-02-19 07:12:10`, `2024-02-19`, `02/19/2024 07:12:10`,
/// `02/19/2024 7:12 am`, `02/19/2024`, `Feb 19, 2024 7:12 am`, and epoch milliseconds
/// (10 or more digits).
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    if s.len() >= 10 && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_millis);
    }
    const NAIVE: [&str; 7] = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%m/%d/%Y %H:%M:%S",
        "%m/%d/%Y %I:%M %p",
        "%m/%d/%Y %H:%M",
        "%b %d, %Y %I:%M %p",
    ];
    for f in NAIVE {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc());
        }
    }
    for f in ["%Y-%m-%d", "%m/%d/%Y", "%b %d, %Y"] {
        if let Ok(d) = NaiveDate::parse_from_str(s, f) {
            return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
        }
    }
    None
}

/// Format a timestamp as Bubble does: `2024-02-19T07:12:10.811Z`.
pub fn format_datetime(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Parse an exact decimal string into a value scaled by `10^scale` (the shared parser,
/// [`etl_core::codec::parse_decimal`], plus Bubble's float noise: see below).
///
/// Bubble numbers are binary doubles: `76.49000000000001` is 76.49 plus float noise. Text
/// with 14 or more fractional digits within 1e-6 of a unit in the last place of the scale
/// is rounded to it; real excess digits are refused.
///
/// # Errors
/// A message for a person when the text is not a number, has more fractional digits than
/// `scale` (other than trailing zeros), or more than `precision` digits.
pub fn parse_decimal(s: &str, precision: u8, scale: i8) -> Result<i128, String> {
    let t = s.trim();
    let scale_u = scale.max(0) as usize;
    match codec::parse_decimal(t.as_bytes(), precision, scale, Rounding::Exact) {
        Ok(v) => Ok(v),
        Err(DecimalError::Syntax) => Err(format!("`{s}` is not a number")),
        Err(DecimalError::Precision) => {
            Err(format!("`{s}` does not fit numeric({precision},{scale_u})"))
        }
        Err(DecimalError::Scale) => {
            let mantissa = t.split(['e', 'E']).next().unwrap_or(t);
            let frac = mantissa.split_once('.').map_or("", |(_, f)| f);
            // Float noise (`12.300000000000001`) is what a double prints: at most 17
            // significant digits. Longer text holds real digits that rounding would lose.
            let significant = mantissa
                .chars()
                .filter(char::is_ascii_digit)
                .skip_while(|c| *c == '0')
                .count();
            if frac.trim_end_matches('0').len() >= 14
                && significant <= 17
                && let Ok(f) = t.parse::<f64>()
            {
                let scaled = f * 10f64.powi(i32::from(scale));
                if (scaled - scaled.round()).abs() < 1e-6 {
                    return codec::parse_decimal(
                        t.as_bytes(),
                        precision,
                        scale,
                        Rounding::HalfAwayFromZero,
                    )
                    .map_err(|_| format!("`{s}` does not fit numeric({precision},{scale_u})"));
                }
            }
            Err(format!(
                "`{s}` has more than {scale_u} decimal places (it would be rounded)"
            ))
        }
    }
}

fn parse_bool_str(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "y" | "1" | "t" => Some(true),
        "false" | "no" | "n" | "0" | "f" => Some(false),
        _ => None,
    }
}

fn parse_list_str(s: &str) -> Result<Vec<String>, String> {
    let t = s.trim();
    if t.starts_with('[') {
        let v: Value =
            serde_json::from_str(t).map_err(|e| format!("`{s}` is not a JSON list: {e}"))?;
        return list_from_json(&v);
    }
    Ok(t.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect())
}

fn list_from_json(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::Array(items) => Ok(items
            .iter()
            .filter(|i| !i.is_null())
            .map(|i| match i {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect()),
        other => Err(format!("{other} is not a list")),
    }
}

fn parse_str_cell(kind: FieldKind, s: &str) -> Result<Cell, String> {
    if s.is_empty() {
        return Ok(Cell::Null);
    }
    Ok(match kind {
        FieldKind::Text | FieldKind::Json => Cell::Str(s.to_owned()),
        FieldKind::Bool => {
            Cell::Bool(parse_bool_str(s).ok_or_else(|| format!("`{s}` is not yes/no"))?)
        }
        FieldKind::Int => {
            let t = s.trim();
            match t.parse::<i64>() {
                Ok(v) => Cell::Int(v),
                Err(_) => {
                    let f: f64 = t
                        .parse()
                        .map_err(|_| format!("`{s}` is not a whole number"))?;
                    if f.fract() != 0.0 || !f.is_finite() || f.abs() > 9.0e15 {
                        return Err(format!("`{s}` is not a whole number"));
                    }
                    Cell::Int(f as i64)
                }
            }
        }
        FieldKind::Number => {
            let f: f64 = s
                .trim()
                .parse()
                .map_err(|_| format!("`{s}` is not a number"))?;
            if !f.is_finite() {
                return Err(format!("`{s}` is not a finite number"));
            }
            Cell::F64(f)
        }
        FieldKind::Decimal { precision, scale } => Cell::Dec(parse_decimal(s, precision, scale)?),
        FieldKind::Date => Cell::Ts(
            parse_datetime(s)
                .ok_or_else(|| format!("`{s}` is not a date in a known format"))?
                .timestamp_millis(),
        ),
        FieldKind::TextList => Cell::List(parse_list_str(s)?),
    })
}

fn parse_json_cell(kind: FieldKind, v: &Value) -> Result<Cell, String> {
    match (kind, v) {
        (_, Value::Null) => Ok(Cell::Null),
        (FieldKind::Json, Value::String(s)) => Ok(Cell::Str(s.clone())),
        (FieldKind::Json, other) => Ok(Cell::Str(other.to_string())),
        (FieldKind::TextList, Value::Array(_)) => Ok(Cell::List(list_from_json(v)?)),
        (FieldKind::Bool, Value::Bool(b)) => Ok(Cell::Bool(*b)),
        (FieldKind::Date, Value::Number(n)) => n
            .as_i64()
            .and_then(DateTime::from_timestamp_millis)
            .map(|t| Cell::Ts(t.timestamp_millis()))
            .ok_or_else(|| format!("{n} is not a date")),
        (_, Value::String(s)) => parse_str_cell(kind, s),
        (FieldKind::Text, Value::Number(n)) => Ok(Cell::Str(n.to_string())),
        (FieldKind::Text, Value::Bool(b)) => Ok(Cell::Str(b.to_string())),
        (FieldKind::Int | FieldKind::Number | FieldKind::Decimal { .. }, Value::Number(n)) => {
            parse_str_cell(kind, &n.to_string())
        }
        (kind, other) => Err(format!("{other} is not {}", kind.name())),
    }
}

/// Text of a JSON value in a raw (export) column: strings as is, other values as JSON.
fn raw_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

enum ColBuilder {
    Str(StringBuilder),
    Bool(BooleanBuilder),
    Int(Int64Builder),
    F64(Float64Builder),
    Dec(Decimal128Builder, u8, i8),
    Ts(TimestampMillisecondBuilder),
    List(ListBuilder<StringBuilder>),
}

impl ColBuilder {
    fn new(kind: FieldKind, raw: bool) -> Self {
        if raw {
            return ColBuilder::Str(StringBuilder::new());
        }
        match kind {
            FieldKind::Text | FieldKind::Json => ColBuilder::Str(StringBuilder::new()),
            FieldKind::Bool => ColBuilder::Bool(BooleanBuilder::new()),
            FieldKind::Int => ColBuilder::Int(Int64Builder::new()),
            FieldKind::Number => ColBuilder::F64(Float64Builder::new()),
            FieldKind::Decimal { precision, scale } => {
                ColBuilder::Dec(Decimal128Builder::new(), precision, scale)
            }
            FieldKind::Date => ColBuilder::Ts(TimestampMillisecondBuilder::new()),
            FieldKind::TextList => ColBuilder::List(ListBuilder::new(StringBuilder::new())),
        }
    }

    fn push(&mut self, cell: Cell) {
        match (self, cell) {
            (ColBuilder::Str(b), Cell::Str(s)) => b.append_value(s),
            (ColBuilder::Str(b), _) => b.append_null(),
            (ColBuilder::Bool(b), Cell::Bool(v)) => b.append_value(v),
            (ColBuilder::Bool(b), _) => b.append_null(),
            (ColBuilder::Int(b), Cell::Int(v)) => b.append_value(v),
            (ColBuilder::Int(b), _) => b.append_null(),
            (ColBuilder::F64(b), Cell::F64(v)) => b.append_value(v),
            (ColBuilder::F64(b), _) => b.append_null(),
            (ColBuilder::Dec(b, ..), Cell::Dec(v)) => b.append_value(v),
            (ColBuilder::Dec(b, ..), _) => b.append_null(),
            (ColBuilder::Ts(b), Cell::Ts(v)) => b.append_value(v),
            (ColBuilder::Ts(b), _) => b.append_null(),
            (ColBuilder::List(b), Cell::List(items)) => {
                for i in items {
                    b.values().append_value(i);
                }
                b.append(true);
            }
            (ColBuilder::List(b), _) => b.append(false),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ColBuilder::Str(b) => Arc::new(b.finish()),
            ColBuilder::Bool(b) => Arc::new(b.finish()),
            ColBuilder::Int(b) => Arc::new(b.finish()),
            ColBuilder::F64(b) => Arc::new(b.finish()),
            ColBuilder::Dec(b, p, s) => Arc::new(
                b.finish()
                    .with_precision_and_scale(*p, *s)
                    .expect("precision and scale checked by the schema"),
            ),
            ColBuilder::Ts(b) => Arc::new(b.finish().with_timezone("UTC")),
            ColBuilder::List(b) => Arc::new(b.finish()),
        }
    }
}

/// Builds batches of one type from JSON things (or raw text rows), turning values that do
/// not fit their declared kind into [`Reject`]s with the column and the reason.
pub struct RecordDecoder {
    spec: Arc<TypeSchema>,
    unit: Arc<str>,
    raw: bool,
    kinds: Vec<FieldKind>,
    columns: Vec<String>,
    schema: SchemaRef,
    builders: Vec<ColBuilder>,
    records: Vec<u64>,
    rejects: Vec<Reject>,
    cells: Vec<Cell>,
}

impl RecordDecoder {
    /// A decoder for `spec`; `raw` keeps every value as text (the lossless export form).
    pub fn new(spec: Arc<TypeSchema>, unit: Arc<str>, raw: bool) -> Self {
        let kinds = spec.kinds();
        let schema = if raw {
            spec.raw_schema()
        } else {
            spec.arrow_schema()
        };
        RecordDecoder {
            builders: kinds.iter().map(|k| ColBuilder::new(*k, raw)).collect(),
            columns: spec.columns(),
            kinds,
            schema,
            spec,
            unit,
            raw,
            records: Vec::new(),
            rejects: Vec::new(),
            cells: Vec::new(),
        }
    }

    /// Schema of the batches.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Rows and rejects buffered.
    pub fn len(&self) -> usize {
        self.records.len() + self.rejects.len()
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn commit_or_reject(
        &mut self,
        record: u64,
        raw: impl FnOnce() -> String,
        err: Option<(usize, String)>,
    ) {
        match err {
            None => {
                for (b, c) in self.builders.iter_mut().zip(self.cells.drain(..)) {
                    b.push(c);
                }
                self.records.push(record);
            }
            Some((col, reason)) => {
                self.cells.clear();
                let column = &self.columns[col];
                self.rejects.push(Reject::new(
                    self.unit.clone(),
                    record,
                    Some(column),
                    format!("bad_{}", self.kinds[col].name().replace([' ', '/'], "_")),
                    format!("{}.{column}: {reason}", self.spec.bubble_type),
                    raw(),
                ));
            }
        }
    }

    /// Decode one thing as sent by the Data API; `record` is its position in the unit.
    pub fn push_json(&mut self, record: u64, thing: &Map<String, Value>) {
        self.cells.clear();
        let mode = self.spec.key_mode;
        let mut err = None;
        let keys = [ID, CREATED_DATE, MODIFIED_DATE]
            .into_iter()
            .chain(self.spec.fields.iter().map(|f| f.key_for(mode)));
        for (i, key) in keys.enumerate() {
            let v = thing.get(key).unwrap_or(&Value::Null);
            let cell = if self.raw {
                Ok(raw_text(v).map_or(Cell::Null, Cell::Str))
            } else {
                parse_json_cell(self.kinds[i], v)
            };
            match cell {
                Ok(Cell::Null) if i == 0 => {
                    err = Some((0, "the thing has no `_id`".to_owned()));
                    break;
                }
                Ok(c) => self.cells.push(c),
                Err(e) => {
                    err = Some((i, e));
                    break;
                }
            }
        }
        self.commit_or_reject(record, || Value::Object(thing.clone()).to_string(), err);
    }

    /// Decode one row of raw text values (columns in schema order; `None` is null).
    pub fn push_strs(
        &mut self,
        record: u64,
        values: &[Option<&str>],
        raw_line: impl FnOnce() -> String,
    ) {
        self.cells.clear();
        let mut err = None;
        for (i, v) in values.iter().enumerate().take(self.kinds.len()) {
            let cell = match v {
                None => Ok(Cell::Null),
                Some(s) if self.raw => Ok(Cell::Str((*s).to_owned())),
                Some(s) => parse_str_cell(self.kinds[i], s),
            };
            match cell {
                Ok(Cell::Null) if i == 0 => {
                    err = Some((0, "the thing has no `_id`".to_owned()));
                    break;
                }
                Ok(c) => self.cells.push(c),
                Err(e) => {
                    err = Some((i, e));
                    break;
                }
            }
        }
        self.commit_or_reject(record, raw_line, err);
    }

    /// Take what is buffered as a [`Batch`] (`None` when nothing is).
    pub fn flush(&mut self) -> etl_core::Result<Option<Batch>> {
        if self.is_empty() {
            return Ok(None);
        }
        let columns: Vec<ArrayRef> = self.builders.iter_mut().map(ColBuilder::finish).collect();
        let data = RecordBatch::try_new(self.schema.clone(), columns)?;
        let mut batch = Batch::new(self.unit.clone(), data, std::mem::take(&mut self.records));
        batch.rejects = std::mem::take(&mut self.rejects);
        Ok(Some(batch))
    }
}

/// A [`etl_core::Transform`] from raw (all-text, export) batches of a type to typed ones;
/// a value that does not fit its kind rejects the row with the column and the reason.
///
/// Extra input columns (not in the schema) are dropped.
pub struct TypedTransform {
    spec: Arc<TypeSchema>,
    name: String,
}

impl TypedTransform {
    /// The transform for `spec`.
    pub fn new(spec: Arc<TypeSchema>) -> Self {
        let name = format!("bubble_typed[{}]", spec.bubble_type);
        TypedTransform { spec, name }
    }
}

impl etl_core::Transform for TypedTransform {
    fn name(&self) -> &str {
        &self.name
    }

    fn output_schema(&self, _input: &SchemaRef) -> etl_core::Result<SchemaRef> {
        Ok(self.spec.arrow_schema())
    }

    fn transform(&self, batch: Batch) -> etl_core::Result<Batch> {
        let cols = self.spec.columns();
        let mut arrays = Vec::with_capacity(cols.len());
        for c in &cols {
            let a = batch
                .data
                .column_by_name(c)
                .ok_or_else(|| etl_core::Error::Schema {
                    stage: etl_core::Stage::Transform,
                    component: self.name.clone(),
                    detail: format!("input has no column `{c}`"),
                })?;
            let a = a
                .as_string_opt::<i32>()
                .ok_or_else(|| etl_core::Error::Schema {
                    stage: etl_core::Stage::Transform,
                    component: self.name.clone(),
                    detail: format!("column `{c}` is {} (expected Utf8 text)", a.data_type()),
                })?;
            arrays.push(a.clone());
        }
        let mut dec = RecordDecoder::new(self.spec.clone(), batch.unit.clone(), false);
        let mut values: Vec<Option<&str>> = Vec::with_capacity(cols.len());
        for row in 0..batch.num_rows() {
            values.clear();
            values.extend(
                arrays
                    .iter()
                    .map(|a| (!a.is_null(row)).then(|| a.value(row))),
            );
            dec.push_strs(batch.records[row], &values, || {
                etl_core::batch::render_row(&batch.data, row)
            });
        }
        let schema = dec.schema();
        let mut out = match dec.flush()? {
            Some(b) => b,
            None => Batch::new(
                batch.unit.clone(),
                RecordBatch::new_empty(schema),
                Vec::new(),
            ),
        };
        let mut rejects = batch.rejects;
        rejects.append(&mut out.rejects);
        out.rejects = rejects;
        out.filtered = batch.filtered;
        out.counters = batch.counters;
        out.consumed = batch.consumed;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::types::{Decimal128Type, TimestampMillisecondType};

    fn spec(mode: KeyMode) -> Arc<TypeSchema> {
        Arc::new(
            TypeSchema::new("coach_profile", mode)
                .field(
                    FieldSpec::new(
                        "rate",
                        FieldKind::Decimal {
                            precision: 10,
                            scale: 2,
                        },
                    )
                    .key("Hourly Rate")
                    .id_key("hourly_rate_number"),
                )
                .field(FieldSpec::new("languages", FieldKind::TextList))
                .field(FieldSpec::new("verified", FieldKind::Bool)),
        )
    }

    #[test]
    fn dates_in_several_formats() {
        let want = parse_datetime("2024-02-19T07:12:10.811Z").unwrap();
        assert_eq!(want.timestamp_millis(), 1_708_326_730_811);
        assert_eq!(parse_datetime("1708326730811"), Some(want));
        let t = parse_datetime("2024-02-19 07:12:10").unwrap();
        assert_eq!(parse_datetime("02/19/2024 07:12:10"), Some(t));
        assert_eq!(
            parse_datetime("02/19/2024 7:12 am").unwrap().timestamp(),
            t.timestamp() - 10
        );
        assert_eq!(
            parse_datetime("Feb 19, 2024 7:12 am").unwrap().timestamp(),
            t.timestamp() - 10
        );
        assert_eq!(parse_datetime("2024-02-19T08:12:10+01:00"), Some(t));
        assert!(parse_datetime("19.02.2024x").is_none());
        assert_eq!(format_datetime(want), "2024-02-19T07:12:10.811Z");
    }

    #[test]
    fn decimals_are_exact_or_errors() {
        assert_eq!(parse_decimal("45.5", 10, 2), Ok(4550));
        assert_eq!(parse_decimal("-0.01", 10, 2), Ok(-1));
        assert_eq!(parse_decimal("100.000", 10, 2), Ok(10000));
        assert!(
            parse_decimal("49.999", 10, 2)
                .unwrap_err()
                .contains("decimal places")
        );
        assert!(
            parse_decimal("123456789", 10, 2)
                .unwrap_err()
                .contains("numeric(10,2)")
        );
        assert!(parse_decimal("abc", 10, 2).is_err());
        assert_eq!(parse_decimal("1e2", 10, 2), Ok(10000));
        assert_eq!(parse_decimal(" 76.49000000000001 ", 10, 2), Ok(7649));
        assert!(parse_decimal("76.49123456789012", 10, 2).is_err());
    }

    #[test]
    fn both_key_modes_decode_to_the_same_batch() {
        let a: Map<String, Value> = serde_json::from_str(r#"{"_id":"1x1","Created Date":"2024-02-19T07:12:10.811Z","Hourly Rate":45.5,"languages":["en","fr"],"verified":true,"unknown":1}"#).unwrap();
        let b: Map<String, Value> = serde_json::from_str(r#"{"_id":"1x1","Created Date":"2024-02-19T07:12:10.811Z","hourly_rate_number":45.5,"languages_list_text":["en","fr"],"verified_boolean":true}"#).unwrap();
        let mut da = RecordDecoder::new(spec(KeyMode::DisplayNames), "u".into(), false);
        let mut db = RecordDecoder::new(spec(KeyMode::GeneratedIds), "u".into(), false);
        da.push_json(1, &a);
        db.push_json(1, &b);
        let ba = da.flush().unwrap().unwrap();
        let bb = db.flush().unwrap().unwrap();
        assert_eq!(ba.data, bb.data);
        assert_eq!(
            ba.data.column(3).as_primitive::<Decimal128Type>().value(0),
            4550
        );
        assert_eq!(
            ba.data
                .column(1)
                .as_primitive::<TimestampMillisecondType>()
                .value(0),
            1_708_326_730_811
        );
        assert!(ba.data.column(2).is_null(0));
    }

    #[test]
    fn bad_values_become_rejects_and_raw_round_trips_through_typed() {
        let s = spec(KeyMode::DisplayNames);
        let mut raw = RecordDecoder::new(s.clone(), "u".into(), true);
        for (i, j) in [
            r#"{"_id":"a","Hourly Rate":"cheap"}"#,
            r#"{"_id":"b","Hourly Rate":30,"languages":["en"],"verified":"yes"}"#,
            r#"{"Hourly Rate":30}"#,
        ]
        .iter()
        .enumerate()
        {
            raw.push_json(i as u64 + 1, &serde_json::from_str(j).unwrap());
        }
        let rb = raw.flush().unwrap().unwrap();
        assert_eq!(rb.num_rows(), 2, "raw keeps everything with an _id");
        assert_eq!(rb.rejects.len(), 1);
        let typed = etl_core::Transform::transform(&TypedTransform::new(s), rb).unwrap();
        assert_eq!(typed.num_rows(), 1);
        assert_eq!(typed.rejects.len(), 2);
        assert_eq!(typed.rejects[1].column.as_deref(), Some("rate"));
        assert!(
            typed.rejects[1].reason.contains("`cheap` is not a number"),
            "{}",
            typed.rejects[1].reason
        );
        assert_eq!(typed.records, vec![2]);
        assert_eq!(typed.read(), 3);
    }
}
