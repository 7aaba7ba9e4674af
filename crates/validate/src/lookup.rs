//! Lookups: a text column mapped to a 16-byte id (a UUID) through a reference list held in
//! memory, with aliases used in both directions.
//!
//! A row whose value maps to nothing is never dropped silently: it is *filtered* with a
//! reason (count it with [`MatchRate`](crate::MatchRate)), and its value is counted in
//! [`Unmatched`] for the report. [`LookupTransform`] is the whole transform (it appends the
//! id column); [`Lookup::resolve`] is its kernel, for a transform that decides more about a
//! row in the same pass (a scope filter, say) and applies every fate at once.
//!
//! ```
//! use etl_validate::lookup::Lookup;
//! use uuid::Uuid;
//! let id = Uuid::from_u128(7);
//! let pairs = [("Ursus maritimus".to_owned(), id)];
//! let aliases = [("Thalarctos maritimus".to_owned(), "Ursus maritimus".to_owned())];
//! let lookup = Lookup::from_pairs(pairs, &aliases);
//! assert_eq!(lookup.get("Thalarctos maritimus"), Some(id));
//! assert_eq!(lookup.via_alias, aliases);
//! ```

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayAccessor, FixedSizeBinaryArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use etl_core::{Batch, Error, Fate, Result, Stage, Transform};
use uuid::Uuid;

/// Values mapped to ids, loaded once.
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    ids: HashMap<String, Uuid>,
    /// Values listed more than once with different rows (the first listed wins).
    pub ambiguous: Vec<String>,
    /// `(alias, value)`: names that map only through an alias of `value`.
    pub via_alias: Vec<(String, String)>,
}

/// What [`Lookup::resolve`] found in a batch.
#[derive(Debug, Default)]
pub struct Resolved<'a> {
    /// Rows mapped (their ids were appended).
    pub matched: u64,
    /// Rows filtered as unmatched.
    pub unmatched: u64,
    /// Unmatched rows per value (a NULL counts under `""`).
    pub by_value: BTreeMap<&'a str, u64>,
}

impl Lookup {
    /// A lookup from `(value, id)` pairs (the first of a value wins) and alias pairs.
    pub fn from_pairs(
        values: impl IntoIterator<Item = (String, Uuid)>,
        aliases: &[(String, String)],
    ) -> Self {
        let mut lookup = Lookup::default();
        let mut ambiguous = HashSet::new();
        for (value, id) in values {
            match lookup.ids.entry(value) {
                Entry::Vacant(e) => {
                    e.insert(id);
                }
                Entry::Occupied(e) if ambiguous.insert(e.key().clone()) => {
                    lookup.ambiguous.push(e.key().clone());
                }
                Entry::Occupied(_) => {}
            }
        }
        lookup.add_aliases(aliases);
        lookup
    }

    /// Load `(text, uuid)` rows of `values_sql` (in priority order: the first row of a
    /// value wins, a repeated value is listed in [`ambiguous`](Self::ambiguous)) and the
    /// `(text, text)` alias pairs of `aliases_sql`.
    ///
    /// # Errors
    /// A query fails.
    #[cfg(feature = "postgres")]
    pub async fn load(
        conn: &mut sqlx::PgConnection,
        values_sql: &str,
        aliases_sql: Option<&str>,
    ) -> Result<Self> {
        let err = |e| Error::component(Stage::Transform, "lookup", true, e);
        let values: Vec<(String, Uuid)> = sqlx::query_as(sqlx::AssertSqlSafe(values_sql))
            .fetch_all(&mut *conn)
            .await
            .map_err(err)?;
        let aliases: Vec<(String, String)> = match aliases_sql {
            Some(sql) => sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .fetch_all(&mut *conn)
                .await
                .map_err(err)?,
            None => Vec::new(),
        };
        Ok(Self::from_pairs(values, &aliases))
    }

    /// Alias pairs, used both ways: the side that does not map gets the id of the side
    /// that does (recorded in [`via_alias`](Self::via_alias)); pairs where both or
    /// neither map change nothing.
    pub fn add_aliases(&mut self, pairs: &[(String, String)]) {
        for (a, b) in pairs {
            let (alias, of, id) = match (self.get(a), self.get(b)) {
                (None, Some(id)) => (a, b, id),
                (Some(id), None) => (b, a, id),
                _ => continue,
            };
            self.ids.insert(alias.clone(), id);
            self.via_alias.push((alias.clone(), of.clone()));
        }
    }

    /// Map `value` to `id` unless it maps already.
    pub fn insert_if_absent(&mut self, value: &str, id: Uuid) {
        self.ids.entry(value.to_owned()).or_insert(id);
    }

    /// The id of `value`.
    pub fn get(&self, value: &str) -> Option<Uuid> {
        self.ids.get(value).copied()
    }

    /// Number of values (aliases included) that map.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no value maps.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// One pass over `column` (Utf8, Utf8View or LargeUtf8): a row whose fate is already
    /// set is skipped; otherwise `decide(row, value)` may give it a fate (a scope filter);
    /// otherwise its id is appended to `ids` (16 bytes per matched row, in row order) or
    /// it is filtered with `reason`. Nothing is allocated per matched row.
    ///
    /// # Errors
    /// `column` is not text.
    pub fn resolve<'a>(
        &self,
        column: &'a dyn Array,
        fates: &mut [Option<Fate>],
        ids: &mut Vec<u8>,
        reason: &str,
        decide: impl FnMut(usize, &str) -> Option<Fate>,
    ) -> Result<Resolved<'a>> {
        match column.data_type() {
            DataType::Utf8View => {
                Ok(self.pass(column.as_string_view(), fates, ids, reason, decide))
            }
            DataType::Utf8 => Ok(self.pass(column.as_string::<i32>(), fates, ids, reason, decide)),
            DataType::LargeUtf8 => {
                Ok(self.pass(column.as_string::<i64>(), fates, ids, reason, decide))
            }
            other => Err(Error::Config(format!(
                "a lookup maps a text column, not {other}"
            ))),
        }
    }

    fn pass<'a, A: ArrayAccessor<Item = &'a str>>(
        &self,
        values: A,
        fates: &mut [Option<Fate>],
        ids: &mut Vec<u8>,
        reason: &str,
        mut decide: impl FnMut(usize, &str) -> Option<Fate>,
    ) -> Resolved<'a> {
        let mut r = Resolved::default();
        let has_nulls = values.null_count() > 0;
        for (i, fate) in fates.iter_mut().enumerate() {
            if fate.is_some() {
                continue;
            }
            let null = has_nulls && values.is_null(i);
            let value = if null { "" } else { values.value(i) };
            if let Some(f) = decide(i, value) {
                *fate = Some(f);
                continue;
            }
            match if null { None } else { self.ids.get(value) } {
                Some(id) => {
                    ids.extend_from_slice(id.as_bytes());
                    r.matched += 1;
                }
                None => {
                    *r.by_value.entry(value).or_default() += 1;
                    r.unmatched += 1;
                    *fate = Some(Fate::Filter {
                        reason: reason.to_owned(),
                    });
                }
            }
        }
        r
    }
}

/// Unmatched values and their row counts over a run (shared by the transform's workers).
#[derive(Debug, Default)]
pub struct Unmatched(Mutex<HashMap<String, u64>>);

impl Unmatched {
    /// Add a batch's counts.
    pub fn add(&self, by_value: BTreeMap<&str, u64>) {
        if by_value.is_empty() {
            return;
        }
        let mut m = self.0.lock().expect("lock");
        for (k, v) in by_value {
            *m.entry(k.to_owned()).or_default() += v;
        }
    }

    /// Every unmatched value with its rows, most frequent first (then by value).
    pub fn sorted(&self) -> Vec<(String, u64)> {
        let m = self.0.lock().expect("lock");
        let mut v: Vec<(String, u64)> = m.iter().map(|(k, v)| (k.clone(), *v)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }
}

/// A 16-byte id column from the ids [`Lookup::resolve`] appended.
pub fn id_array(bytes: Vec<u8>) -> Arc<FixedSizeBinaryArray> {
    Arc::new(FixedSizeBinaryArray::new(16, bytes.into(), None))
}

/// `input` with `column` (a UUID: FixedSizeBinary(16), non-null) at the end, in place of
/// a column of that name.
pub(crate) fn with_id_column(input: &SchemaRef, column: &str) -> SchemaRef {
    let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.retain(|f| f.name() != column);
    fields.push(Field::new(column, DataType::FixedSizeBinary(16), false));
    Arc::new(Schema::new(fields))
}

/// A transform that maps `column` through a [`Lookup`] and appends `id_column`
/// (FixedSizeBinary(16), non-null); unmatched rows are filtered with `reason`, and the
/// counters `<counter>_matched` / `<counter>_unmatched` are kept for
/// [`MatchRate`](crate::MatchRate).
#[derive(Debug)]
pub struct LookupTransform {
    /// The lookup.
    pub lookup: Lookup,
    /// The text column mapped.
    pub column: String,
    /// The id column appended.
    pub id_column: String,
    /// Filter reason of unmatched rows.
    pub reason: String,
    /// Prefix of the counters.
    pub counter: String,
    /// Unmatched values over the run.
    pub unmatched: Unmatched,
}

impl LookupTransform {
    /// Map `column` to `id_column`; unmatched rows are filtered as `unmatched <column>`,
    /// counters `<column>_matched` / `<column>_unmatched`.
    pub fn new(lookup: Lookup, column: &str, id_column: &str) -> Self {
        LookupTransform {
            lookup,
            column: column.to_owned(),
            id_column: id_column.to_owned(),
            reason: format!("unmatched {column}"),
            counter: column.to_owned(),
            unmatched: Unmatched::default(),
        }
    }

    fn error(&self, detail: String) -> Error {
        Error::Schema {
            stage: Stage::Transform,
            component: "lookup".into(),
            detail,
        }
    }
}

impl Transform for LookupTransform {
    fn name(&self) -> &str {
        "lookup"
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef> {
        let f = input
            .field_with_name(&self.column)
            .map_err(|_| self.error(format!("no column `{}` to look up", self.column)))?;
        if !matches!(
            f.data_type(),
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
        ) {
            return Err(self.error(format!("`{}` is {}, not text", self.column, f.data_type())));
        }
        Ok(with_id_column(input, &self.id_column))
    }

    fn transform(&self, mut batch: Batch) -> Result<Batch> {
        let schema = self.output_schema(&batch.data.schema())?;
        let n = batch.num_rows();
        let mut fates: Vec<Option<Fate>> = vec![None; n];
        let mut ids = Vec::with_capacity(n * 16);
        let col = batch
            .data
            .column_by_name(&self.column)
            .expect("checked")
            .clone();
        let r = self
            .lookup
            .resolve(col.as_ref(), &mut fates, &mut ids, &self.reason, |_, _| {
                None
            })?;
        let (matched, unmatched) = (r.matched, r.unmatched);
        self.unmatched.add(r.by_value);
        batch.count(&format!("{}_matched", self.counter), matched);
        batch.count(&format!("{}_unmatched", self.counter), unmatched);
        batch.apply_fates(&fates)?;
        // An input column of the id column's name is replaced.
        let input = batch.data.schema();
        let mut columns: Vec<_> = (input.fields().iter().zip(batch.data.columns()))
            .filter(|(f, _)| f.name() != &self.id_column)
            .map(|(_, c)| c.clone())
            .collect();
        columns.push(id_array(ids));
        batch.data = RecordBatch::try_new(schema, columns)?;
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int32Array, StringArray, StringViewArray};

    fn lookup() -> Lookup {
        Lookup::from_pairs(
            [
                ("a".to_owned(), Uuid::from_u128(1)),
                ("b".to_owned(), Uuid::from_u128(2)),
                ("a".to_owned(), Uuid::from_u128(3)),
            ],
            &[
                ("a2".to_owned(), "a".to_owned()),
                ("b".to_owned(), "b-old".to_owned()),
                ("x".to_owned(), "y".to_owned()),
            ],
        )
    }

    #[test]
    fn first_value_wins_and_aliases_work_both_ways() {
        let l = lookup();
        assert_eq!(l.get("a"), Some(Uuid::from_u128(1)));
        assert_eq!(l.ambiguous, ["a"]);
        assert_eq!(l.get("a2"), Some(Uuid::from_u128(1)));
        assert_eq!(l.get("b-old"), Some(Uuid::from_u128(2)));
        assert_eq!(l.get("x"), None);
        assert_eq!(l.len(), 4);
        assert_eq!(
            l.via_alias,
            [("a2".into(), "a".into()), ("b-old".into(), "b".into())]
        );
    }

    #[test]
    fn the_transform_appends_ids_and_filters_unmatched_rows_with_a_reason() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int32, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let data = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int32Array::from(vec![1, 2, 3, 4, 5])),
                Arc::new(StringArray::from(vec![
                    Some("a"),
                    Some("zz"),
                    None,
                    Some("b-old"),
                    Some("zz"),
                ])),
            ],
        )
        .unwrap();
        let t = LookupTransform::new(lookup(), "name", "name_id");
        assert_eq!(t.output_schema(&schema).unwrap().fields().len(), 3);
        let out = t
            .transform(Batch::new("u".into(), data, (1..=5).collect()))
            .unwrap();
        assert_eq!(out.num_rows(), 2);
        let ids = out.data.column(2).as_fixed_size_binary();
        assert_eq!(ids.value(0), Uuid::from_u128(1).as_bytes());
        assert_eq!(ids.value(1), Uuid::from_u128(2).as_bytes());
        assert_eq!(out.counters["name_matched"], 2);
        assert_eq!(out.counters["name_unmatched"], 3);
        assert_eq!(out.filtered["unmatched name"], 3);
        assert_eq!(out.records, [1, 4]);
        assert_eq!(t.unmatched.sorted(), [("zz".into(), 2), ("".into(), 1)]);
        let bad = Arc::new(Schema::new(vec![Field::new("name", DataType::Int32, true)]));
        assert!(t.output_schema(&bad).is_err());
    }

    #[test]
    fn resolve_skips_decided_rows_and_lets_the_caller_decide_in_the_same_pass() {
        let col = StringViewArray::from(vec!["a", "b", "zz", "a"]);
        let mut fates = vec![
            None,
            Some(Fate::Filter {
                reason: "earlier".into(),
            }),
            None,
            None,
        ];
        let mut ids = Vec::new();
        let l = lookup();
        let r = l
            .resolve(&col, &mut fates, &mut ids, "unmatched", |i, _| {
                (i == 3).then(|| Fate::Filter {
                    reason: "scope".into(),
                })
            })
            .unwrap();
        assert_eq!((r.matched, r.unmatched), (1, 1));
        assert_eq!(ids, Uuid::from_u128(1).as_bytes());
        assert!(matches!(&fates[2], Some(Fate::Filter { reason }) if reason == "unmatched"));
        assert!(matches!(&fates[3], Some(Fate::Filter { reason }) if reason == "scope"));
    }
}
