//! Mapping Bubble things to the rows of a SQL target, one thing at a time, with the
//! references between types checked: the part of a migration off Bubble that is not the
//! migration's own rules.
//!
//! * [`RowMap`]: a [`Transform`] from raw (export) batches of one type to text rows of
//!   its target table (`key` column then the target columns, every value text, so the
//!   database casts it to the column's type), through [`TypedTransform`] and a function
//!   of the migration that maps one typed [`Row`] or rejects it ([`reject`]). A type with
//!   no target columns is exported only: its things are counted as filtered.
//! * [`MapState`]: what the mappings of one run share: the Bubble ids accepted and rejected
//!   per type, so a child of a rejected parent is rejected as `parent rejected` (kind
//!   `parent_rejected`, counted) and a dangling reference as `dangling_reference`
//!   ([`MapState::parent`]); the reject log; the latest `Modified Date` seen (the
//!   high-water mark of an incremental run).
//! * [`max_chars`], [`json_text`], [`code`], [`email`]: the checks most mappings make (a
//!   length limit, valid JSON, a code map, an e-mail address), rejecting with a kind and a reason.
//! * [`RejectLog`]: `entity_type,record_id,error_message,timestamp`, the error log
//!   migrations off Bubble are asked for, one line per rejected thing.
//!
//! ```
//! use std::sync::Arc;
//! use etl_source_bubble::mapping::{MapState, RejectLog, RowMap, reject};
//! use etl_source_bubble::{FieldKind, FieldSpec, KeyMode, TypeSchema};
//!
//! let spec = TypeSchema::new("user", KeyMode::DisplayNames)
//!     .field(FieldSpec::new("email", FieldKind::Text));
//! let state = Arc::new(MapState::new(RejectLog::discard()));
//! let users = RowMap::new(Arc::new(spec), state, &["email"], |row, _counts| {
//!     let email = row.text("email").ok_or_else(|| reject("email", "missing_email", "email is empty"))?;
//!     Ok(vec![Some(email.to_ascii_lowercase())])
//! });
//! # let _ = users;
//! ```

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::sync::{Arc, Mutex};

use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use etl_core::{Batch, Counts, Fate, Reject, Transform};

use crate::{TypeSchema, TypedTransform};

/// The fate of a rejected thing: `column` at fault, `kind` to count by, `reason` for people.
pub fn reject(column: &str, kind: &str, reason: impl Into<String>) -> Fate {
    Fate::Reject {
        column: Some(column.to_owned()),
        kind: kind.to_owned(),
        reason: reason.into(),
    }
}

/// `v` if it has at most `max` characters; else the thing is rejected (`too_long`).
///
/// # Errors
/// The [`Fate`] of the thing.
pub fn max_chars(v: Option<&str>, max: usize, column: &str) -> Result<Option<String>, Fate> {
    match v {
        Some(s) if s.chars().count() > max => Err(reject(
            column,
            "too_long",
            format!("{column} is longer than {max} characters"),
        )),
        other => Ok(other.map(str::to_owned)),
    }
}

/// `v` if it is valid JSON; else the thing is rejected (`bad_json`).
///
/// # Errors
/// The [`Fate`] of the thing.
pub fn json_text(v: Option<&str>, column: &str) -> Result<Option<String>, Fate> {
    let Some(s) = v else { return Ok(None) };
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(_) => Ok(Some(s.to_owned())),
        Err(e) => Err(reject(
            column,
            "bad_json",
            format!("{column} is not valid JSON ({e})"),
        )),
    }
}

/// The target code of `v` (trimmed, compared without case) in `map` (`(source, target)`
/// pairs, source codes in lower case); an empty value (`missing_code`) or an unknown one
/// (`unknown_<column>`) rejects the thing.
///
/// # Errors
/// The [`Fate`] of the thing.
pub fn code(v: Option<&str>, column: &str, map: &[(&str, &str)]) -> Result<String, Fate> {
    let s = v.ok_or_else(|| reject(column, "missing_code", format!("{column} is empty")))?;
    let key = s.trim().to_ascii_lowercase();
    match map.iter().find(|(from, _)| *from == key) {
        Some((_, to)) => Ok((*to).to_owned()),
        None => Err(reject(
            column,
            &format!("unknown_{column}"),
            format!("unknown {column} `{s}`"),
        )),
    }
}

/// `v` in lower case if it is an e-mail address
/// (`^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}$`); an empty value
/// (`missing_email`) or another (`bad_email`) rejects the thing.
///
/// # Errors
/// The [`Fate`] of the thing.
pub fn email(v: Option<&str>, column: &str) -> Result<String, Fate> {
    let e = v.ok_or_else(|| reject(column, "missing_email", format!("{column} is empty")))?;
    let e = e.to_ascii_lowercase();
    let part = |s: &str, extra: &[u8]| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
    };
    let ok = e.split_once('@').is_some_and(|(local, domain)| {
        domain.rsplit_once('.').is_some_and(|(host, tld)| {
            part(local, b"._%+-")
                && part(host, b".-")
                && tld.len() >= 2
                && tld.bytes().all(|b| b.is_ascii_alphabetic())
        })
    });
    match ok {
        true => Ok(e),
        false => Err(reject(
            column,
            "bad_email",
            format!("{column} `{e}` is not a valid address"),
        )),
    }
}

/// `entity_type,record_id,error_message,timestamp` (CSV, one line per rejected thing).
pub struct RejectLog {
    out: Box<dyn std::io::Write + Send>,
}

impl RejectLog {
    /// Create the file at `path` with its header.
    ///
    /// # Errors
    /// The file cannot be created.
    pub fn create(path: &std::path::Path) -> std::io::Result<Self> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        out.write_all(b"entity_type,record_id,error_message,timestamp\n")?;
        Ok(RejectLog { out: Box::new(out) })
    }

    /// A log that writes nothing: for mappings whose rejects are not the run's (a check
    /// that maps things again).
    pub fn discard() -> Self {
        RejectLog {
            out: Box::new(std::io::sink()),
        }
    }

    fn line(&mut self, entity: &str, id: &str, msg: &str) {
        let mut s = String::new();
        for (i, f) in [entity, id, msg, &chrono::Utc::now().to_rfc3339()]
            .iter()
            .enumerate()
        {
            if i > 0 {
                s.push(',');
            }
            etl_core::reject::write_csv_field(&mut s, f);
        }
        s.push('\n');
        let _ = self.out.write_all(s.as_bytes());
    }
}

type Ids = Mutex<HashMap<String, HashSet<String>>>;

/// What the mappings of one run share (see the module docs).
pub struct MapState {
    accepted: Ids,
    rejected: Ids,
    log: Mutex<RejectLog>,
    max_modified: Mutex<Option<i64>>,
}

impl MapState {
    /// A state writing rejects to `log`.
    pub fn new(log: RejectLog) -> Self {
        MapState {
            accepted: Mutex::default(),
            rejected: Mutex::default(),
            log: Mutex::new(log),
            max_modified: Mutex::new(None),
        }
    }

    /// Mark ids of `bubble_type` as accepted (loaded by an earlier run, staged earlier).
    pub fn accept_all(&self, bubble_type: &str, ids: impl IntoIterator<Item = String>) {
        let mut a = self.accepted.lock().expect("lock");
        a.entry(bubble_type.to_owned()).or_default().extend(ids);
    }

    /// Mark as rejected (without logging again) the ids of `bubble_type` that are not
    /// accepted: the parents an earlier invocation of the run rejected.
    pub fn reject_unaccepted(&self, bubble_type: &str, ids: impl IntoIterator<Item = String>) {
        let accepted = self.accepted.lock().expect("lock");
        let ok = accepted.get(bubble_type);
        let mut rejected = self.rejected.lock().expect("lock");
        let set = rejected.entry(bubble_type.to_owned()).or_default();
        set.extend(
            ids.into_iter()
                .filter(|i| !ok.is_some_and(|a| a.contains(i))),
        );
    }

    /// Mark one id rejected and log it with `reason`.
    pub fn reject(&self, bubble_type: &str, id: &str, reason: &str) {
        let mut r = self.rejected.lock().expect("lock");
        r.entry(bubble_type.to_owned())
            .or_default()
            .insert(id.to_owned());
        self.log.lock().expect("lock").line(bubble_type, id, reason);
    }

    fn has(set: &Ids, bubble_type: &str, id: &str) -> bool {
        let s = set.lock().expect("lock");
        s.get(bubble_type).is_some_and(|s| s.contains(id))
    }

    /// `Ok` if `parent_id` (the value of reference `field`) of `parent_type` was accepted;
    /// else the reject: empty, `parent rejected`, or dangling.
    ///
    /// # Errors
    /// The [`Fate`] of the child, as above.
    pub fn parent(
        &self,
        parent_type: &str,
        field: &str,
        parent_id: Option<&str>,
    ) -> Result<(), Fate> {
        let Some(pid) = parent_id else {
            return Err(reject(
                field,
                "missing_reference",
                format!("{field} is empty"),
            ));
        };
        if Self::has(&self.accepted, parent_type, pid) {
            Ok(())
        } else if Self::has(&self.rejected, parent_type, pid) {
            Err(reject(field, "parent_rejected", "parent rejected"))
        } else {
            Err(reject(
                field,
                "dangling_reference",
                format!("{field} references {parent_type} `{pid}`, which does not exist"),
            ))
        }
    }

    /// Flush the reject log.
    ///
    /// # Errors
    /// The log cannot be written.
    pub fn flush(&self) -> std::io::Result<()> {
        self.log.lock().expect("lock").out.flush()
    }

    /// The latest `Modified Date` of a thing mapped (the next incremental run starts there).
    pub fn high_water_mark(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let m = self.max_modified.lock().expect("lock");
        m.and_then(chrono::DateTime::from_timestamp_millis)
    }
}

/// One thing of a typed batch ([`TypedTransform`]'s columns), with typed accessors that
/// return `None` for null (and, for text, blank) values.
pub struct Row<'a> {
    batch: &'a RecordBatch,
    row: usize,
    raw: &'a HashMap<String, Option<String>>,
}

impl Row<'_> {
    fn col(&self, name: &str) -> &ArrayRef {
        self.batch
            .column_by_name(name)
            .unwrap_or_else(|| panic!("declared column `{name}`"))
    }

    fn valid(&self, a: &ArrayRef) -> bool {
        !a.is_null(self.row)
    }

    /// The thing's `_id`.
    pub fn id(&self) -> &str {
        self.batch.column(0).as_string::<i32>().value(self.row)
    }

    /// A text field, trimmed; `None` when null or blank.
    pub fn text(&self, name: &str) -> Option<&str> {
        let a = self.col(name);
        let v = self.valid(a).then(|| a.as_string::<i32>().value(self.row));
        v.map(str::trim).filter(|s| !s.is_empty())
    }

    /// A yes/no field.
    pub fn bool(&self, name: &str) -> Option<bool> {
        let a = self.col(name);
        self.valid(a).then(|| a.as_boolean().value(self.row))
    }

    /// An integer field.
    pub fn int(&self, name: &str) -> Option<i64> {
        let a = self.col(name);
        self.valid(a)
            .then(|| a.as_primitive::<Int64Type>().value(self.row))
    }

    /// A decimal field: `(unscaled value, scale)`.
    pub fn dec(&self, name: &str) -> Option<(i128, i8)> {
        let a = self.col(name);
        let DataType::Decimal128(_, s) = a.data_type() else {
            return None;
        };
        let v = a.as_primitive::<Decimal128Type>();
        self.valid(a).then(|| (v.value(self.row), *s))
    }

    /// A date field as a timestamp without time zone in UTC (`2024-05-01 09:30:00.000`).
    pub fn ts(&self, name: &str) -> Option<String> {
        let a = self.col(name);
        let v = self
            .valid(a)
            .then(|| a.as_primitive::<TimestampMillisecondType>().value(self.row));
        v.and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.naive_utc().format("%Y-%m-%d %H:%M:%S%.3f").to_string())
    }

    /// A file or image field as a URL: Bubble sends its own files as `//host/path`,
    /// which gets `https:`.
    pub fn file_url(&self, name: &str) -> Option<String> {
        let v = self.text(name)?;
        Some(if v.starts_with("//") {
            format!("https:{v}")
        } else {
            v.to_owned()
        })
    }

    /// A list of texts as a PostgreSQL array literal (`{"a","b \"c\""}`).
    pub fn list(&self, name: &str) -> Option<String> {
        let a = self.col(name);
        if !self.valid(a) {
            return None;
        }
        let v = a.as_list::<i32>().value(self.row);
        let items: Vec<String> = v.as_string::<i32>().iter().map(array_item).collect();
        Some(format!("{{{}}}", items.join(",")))
    }

    /// A column of the raw batch kept with [`RowMap::keep_raw`] (a column the declared
    /// schema does not have, such as a password hash from another source).
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.raw.get(name).and_then(Option::as_deref)
    }
}

fn array_item(v: Option<&str>) -> String {
    match v {
        None => "NULL".to_owned(),
        Some(s) => format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
    }
}

type MapFn = dyn Fn(&Row<'_>, &mut Counts) -> Result<Vec<Option<String>>, Fate> + Send + Sync;

/// Raw batches of one type -> typed -> text rows of the target (see the module docs).
pub struct RowMap {
    ty: String,
    typed: TypedTransform,
    state: Arc<MapState>,
    schema: SchemaRef,
    keep: Vec<String>,
    map: Box<MapFn>,
    name: String,
}

impl RowMap {
    /// The mapping of `spec`'s type to `columns` (none: exported only, filtered) by `map`,
    /// which returns one value per column or the reject, and may count. The output's
    /// first column is `bubble_id`.
    pub fn new(
        spec: Arc<TypeSchema>,
        state: Arc<MapState>,
        columns: &[&str],
        map: impl Fn(&Row<'_>, &mut Counts) -> Result<Vec<Option<String>>, Fate> + Send + Sync + 'static,
    ) -> Self {
        let fields = std::iter::once("bubble_id").chain(columns.iter().copied());
        RowMap {
            ty: spec.bubble_type.clone(),
            name: format!("map[{}]", spec.bubble_type),
            typed: TypedTransform::new(spec),
            state,
            schema: Arc::new(Schema::new(
                fields
                    .map(|c| Field::new(c, DataType::Utf8, c != "bubble_id"))
                    .collect::<Vec<_>>(),
            )),
            keep: Vec::new(),
            map: Box::new(map),
        }
    }

    /// Hand the raw columns `names` to the mapping ([`Row::raw`]).
    pub fn keep_raw(mut self, names: &[&str]) -> Self {
        self.keep = names.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    fn filter_all(&self, mut batch: Batch) -> etl_core::Result<Batch> {
        let reason = format!("{} not migrated (exported only)", self.ty);
        let fates = vec![Some(Fate::Filter { reason }); batch.num_rows()];
        batch.apply_fates(&fates)?;
        batch.data = RecordBatch::new_empty(self.schema.clone());
        Ok(batch)
    }
}

impl Transform for RowMap {
    fn name(&self) -> &str {
        &self.name
    }

    fn output_schema(&self, _input: &SchemaRef) -> etl_core::Result<SchemaRef> {
        Ok(self.schema.clone())
    }

    fn transform(&self, batch: Batch) -> etl_core::Result<Batch> {
        if self.schema.fields().len() == 1 {
            return self.filter_all(batch);
        }
        // the Bubble id and the kept raw columns of every record, before typing
        let text = |n: &str| {
            batch
                .data
                .column_by_name(n)
                .map(|a| a.as_string::<i32>().clone())
        };
        let ids = text("_id");
        let kept: Vec<(String, Option<StringArray>)> =
            self.keep.iter().map(|n| (n.clone(), text(n))).collect();
        let at: HashMap<u64, usize> = batch
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| (*r, i))
            .collect();
        let value = |a: Option<&StringArray>, rec: u64| {
            let i = *at.get(&rec)?;
            a.filter(|a| !a.is_null(i)).map(|a| a.value(i).to_owned())
        };
        let before = batch.rejects.len();
        let typed = self.typed.transform(batch)?;
        for r in &typed.rejects[before..] {
            let id = value(ids.as_ref(), r.record).unwrap_or_default();
            self.state.reject(&self.ty, &id, &r.reason);
        }
        let mut builders: Vec<StringBuilder> = (0..self.schema.fields().len())
            .map(|_| StringBuilder::new())
            .collect();
        let (mut records, mut rejects, mut counters) =
            (Vec::new(), typed.rejects.clone(), typed.counters.clone());
        let modified = typed
            .data
            .column(2)
            .as_primitive::<TimestampMillisecondType>();
        let mut max_mod = None::<i64>;
        for row in 0..typed.num_rows() {
            let rec = typed.records[row];
            let raw = kept
                .iter()
                .map(|(n, a)| (n.clone(), value(a.as_ref(), rec)))
                .collect();
            let r = Row {
                batch: &typed.data,
                row,
                raw: &raw,
            };
            match (self.map)(&r, &mut counters) {
                Ok(values) => {
                    builders[0].append_value(r.id());
                    for (b, v) in builders[1..].iter_mut().zip(values) {
                        b.append_option(v);
                    }
                    records.push(rec);
                    self.state.accept_all(&self.ty, [r.id().to_owned()]);
                    if !modified.is_null(row) {
                        max_mod = max_mod.max(Some(modified.value(row)));
                    }
                }
                Err(Fate::Reject {
                    column,
                    kind,
                    reason,
                }) => {
                    self.state.reject(&self.ty, r.id(), &reason);
                    if kind == "parent_rejected" {
                        *counters.entry(kind.clone()).or_default() += 1;
                    }
                    let raw = etl_core::batch::render_row(&typed.data, row);
                    let unit = typed.unit.clone();
                    rejects.push(Reject {
                        unit,
                        record: rec,
                        column,
                        kind,
                        reason,
                        raw,
                    });
                }
                Err(Fate::Filter { .. }) => unreachable!("a mapping rejects, never filters"),
            }
        }
        {
            let mut m = self.state.max_modified.lock().expect("lock");
            *m = (*m).max(max_mod);
        }
        let arrays: Vec<ArrayRef> = builders
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        let data = RecordBatch::try_new(self.schema.clone(), arrays)?;
        let mut out = Batch::new(typed.unit.clone(), data, records);
        out.rejects = rejects;
        out.filtered = typed.filtered;
        out.counters = counters;
        out.consumed = typed.consumed;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FieldKind, FieldSpec, KeyMode};

    fn raw(ty: &TypeSchema, rows: &[[&str; 4]]) -> Batch {
        let cols: Vec<ArrayRef> = (0..4)
            .map(|c| Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r[c]))) as ArrayRef)
            .collect();
        let data = RecordBatch::try_new(ty.raw_schema(), cols).unwrap();
        Batch::new("u".into(), data, (1..=rows.len() as u64).collect())
    }

    #[test]
    fn checks_reject_with_kind_and_reason() {
        let kind = |f: Fate| match f {
            Fate::Reject { kind, reason, .. } => format!("{kind}: {reason}"),
            Fate::Filter { .. } => unreachable!(),
        };
        assert_eq!(
            max_chars(Some("abc"), 3, "x").unwrap().as_deref(),
            Some("abc")
        );
        assert_eq!(
            kind(max_chars(Some("abcd"), 3, "x").unwrap_err()),
            "too_long: x is longer than 3 characters"
        );
        assert_eq!(
            json_text(Some("{\"a\": 1}"), "j").unwrap().as_deref(),
            Some("{\"a\": 1}")
        );
        assert!(
            kind(json_text(Some("{"), "j").unwrap_err())
                .starts_with("bad_json: j is not valid JSON")
        );
        let roles = [("seeker", "client"), ("coach", "coach")];
        assert_eq!(code(Some(" Seeker "), "role", &roles).unwrap(), "client");
        assert_eq!(
            kind(code(Some("boss"), "role", &roles).unwrap_err()),
            "unknown_role: unknown role `boss`"
        );
        assert_eq!(
            kind(code(None, "role", &roles).unwrap_err()),
            "missing_code: role is empty"
        );
    }

    #[test]
    fn children_of_rejected_parents_are_rejected_and_counted() {
        let state = Arc::new(MapState::new(RejectLog::discard()));
        let spec = |t: &str, f: &str| {
            Arc::new(
                TypeSchema::new(t, KeyMode::DisplayNames).field(FieldSpec::new(f, FieldKind::Text)),
            )
        };
        let (u, p, c) = (
            spec("user", "email"),
            spec("post", "author"),
            spec("comment", "body"),
        );
        let users = RowMap::new(u.clone(), state.clone(), &["email"], |r, _| {
            Ok(vec![Some(
                r.text("email")
                    .ok_or_else(|| reject("email", "missing_email", "email is empty"))?
                    .to_owned(),
            )])
        });
        let d = "2024-01-01T00:00:00.000Z";
        let out = users
            .transform(raw(&u, &[["u1", d, d, "a@b.c"], ["u2", d, d, " "]]))
            .unwrap();
        assert_eq!((out.num_rows(), out.rejects.len()), (1, 1));
        let s = state.clone();
        let posts = RowMap::new(p.clone(), state.clone(), &["author"], move |r, _| {
            s.parent("user", "author", r.text("author"))?;
            Ok(vec![r.text("author").map(str::to_owned)])
        });
        let out = posts
            .transform(raw(
                &p,
                &[["p1", d, d, "u1"], ["p2", d, d, "u2"], ["p3", d, d, "u9"]],
            ))
            .unwrap();
        let kinds: Vec<&str> = out.rejects.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(kinds, ["parent_rejected", "dangling_reference"]);
        assert_eq!(out.counters["parent_rejected"], 1);
        assert_eq!(out.data.column(0).as_string::<i32>().value(0), "p1");
        assert!(state.high_water_mark().is_some());
        let exported = RowMap::new(c.clone(), state, &[], |_, _| unreachable!());
        let out = exported.transform(raw(&c, &[["c1", d, d, "x"]])).unwrap();
        assert_eq!((out.num_rows(), out.filtered_total()), (0, 1));
    }
}
