//! Checks of items before a load and after it, for any migration to DynamoDB.
//!
//! * [`Validation`]: the items of several entities checked against their [`ItemRules`]:
//!   required attributes, number attributes, values from a list, any rule of the caller's,
//!   duplicate keys and references to the valid items of another entity (foreign keys).
//!   Errors make an item [`Invalid`] (the load leaves it out with [`ExcludeInvalid`]),
//!   warnings are only counted; [`Validation::report`] is a JSON report of both.
//!   Keys are kept as 128-bit digests, so checking millions of items holds a few MB.
//! * [`read_items`]: the items of a Parquet file (one batch at a time), as the load maps
//!   them; [`diff_items`]: two items compared attribute by attribute (a sample read back).
//!
//! ```no_run
//! use etl_sink_dynamodb::KeySchema;
//! use etl_sink_dynamodb::check::{ItemRules, Severity, Validation};
//! # fn main() -> etl_core::Result<()> {
//! let keys = KeySchema::new("PK", Some("SK"));
//! let mut v = Validation::new(keys, vec![
//!     ItemRules::new("customers").required(&["PK", "SK", "Name"]),
//!     ItemRules::new("orders")
//!         .required(&["PK", "SK", "Total"])
//!         .numbers(&["Total"])
//!         .one_of("Status", &["OPEN", "SHIPPED"])
//!         .rule("totals", Severity::Warning, |item| None)
//!         .references("CustomerId", "customers", |id| format!("CUSTOMER#{id}|#METADATA")),
//! ]);
//! for entity in ["customers", "orders"] {
//!     v.check_file(entity, std::path::Path::new(&format!("{entity}.parquet")))?;
//! }
//! println!("{}", v.report());
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use arrow_schema::SchemaRef;
use aws_sdk_dynamodb::types::AttributeValue;
use etl_core::{Batch, Fate, Transform};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::mapping::{Item, KeySchema, MappingOptions, items_from_batch, to_plain_json};

/// Whether a failed check makes the item invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The item is invalid: it is listed in [`Validation::invalid`].
    Error,
    /// Counted and reported only.
    Warning,
}

type RuleFn = Box<dyn Fn(&Item) -> Option<String> + Send + Sync>;
type KeyFn = Box<dyn Fn(&str) -> String + Send + Sync>;

/// What the items of one entity must satisfy.
pub struct ItemRules {
    entity: String,
    required: Vec<String>,
    numbers: Vec<String>,
    rules: Vec<(String, Severity, RuleFn)>,
    references: Vec<(String, String, KeyFn)>,
}

impl std::fmt::Debug for ItemRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rules: Vec<&String> = self.rules.iter().map(|r| &r.0).collect();
        (f.debug_struct("ItemRules").field("entity", &self.entity))
            .field("required", &self.required)
            .field("numbers", &self.numbers)
            .field("rules", &rules)
            .finish_non_exhaustive()
    }
}

impl ItemRules {
    /// No rules yet for the items of `entity`.
    pub fn new(entity: impl Into<String>) -> Self {
        ItemRules {
            entity: entity.into(),
            required: Vec::new(),
            numbers: Vec::new(),
            rules: Vec::new(),
            references: Vec::new(),
        }
    }

    /// These attributes must be present (check `required_fields`, an error).
    pub fn required(mut self, attrs: &[&str]) -> Self {
        self.required.extend(attrs.iter().map(|a| a.to_string()));
        self
    }

    /// These attributes, when present, must be numbers (`N`; check `types`, an error).
    pub fn numbers(mut self, attrs: &[&str]) -> Self {
        self.numbers.extend(attrs.iter().map(|a| a.to_string()));
        self
    }

    /// `attr`, when present, must be a string among `values` (check `enums`, an error).
    pub fn one_of(self, attr: &str, values: &[&str]) -> Self {
        let (attr, values) = (attr.to_owned(), values.join("/"));
        self.rule("enums", Severity::Error, move |item| {
            let v = text(item, &attr)?;
            (!values.split('/').any(|x| x == v))
                .then(|| format!("{attr} {v} is not one of {values}"))
        })
    }

    /// A rule of the caller's, named `check`: `f` returns why an item fails it.
    pub fn rule(
        mut self,
        check: &str,
        severity: Severity,
        f: impl Fn(&Item) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.rules.push((check.to_owned(), severity, Box::new(f)));
        self
    }

    /// `attr`, when present, must name a valid item of `parent` (checked before this
    /// entity): `key` turns its value into that item's key text (see [`key_text`]). Check
    /// `foreign_keys`, an error.
    pub fn references(
        mut self,
        attr: &str,
        parent: &str,
        key: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> Self {
        (self.references).push((attr.to_owned(), parent.to_owned(), Box::new(key)));
        self
    }
}

/// The value of a string attribute.
pub fn text<'a>(item: &'a Item, attr: &str) -> Option<&'a str> {
    match item.get(attr) {
        Some(AttributeValue::S(s)) => Some(s),
        _ => None,
    }
}

/// The value of a number attribute.
pub fn number(item: &Item, attr: &str) -> Option<f64> {
    match item.get(attr) {
        Some(AttributeValue::N(s)) => s.parse().ok(),
        _ => None,
    }
}

/// The key of an item as text: the partition key's value, then `|` and the sort key's
/// (`SALE#1|LINE#001`); a missing attribute is empty.
pub fn key_text(keys: &KeySchema, item: &Item) -> String {
    let value = |a: &str| match item.get(a) {
        Some(AttributeValue::S(v) | AttributeValue::N(v)) => v.clone(),
        _ => String::new(),
    };
    match &keys.sort {
        Some(sort) => format!("{}|{}", value(&keys.partition), value(sort)),
        None => value(&keys.partition),
    }
}

/// One item that failed a check of severity [`Severity::Error`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Invalid {
    /// Its entity.
    pub entity: String,
    /// Its key ([`key_text`]).
    pub key: String,
    /// The check.
    pub check: String,
    /// What is wrong.
    pub reason: String,
}

#[derive(Debug, Serialize)]
struct CheckStats {
    severity: Severity,
    failed: u64,
    examples: Vec<Value>,
}

/// The validation of the items of several entities; see the [module](self) docs.
#[derive(Debug)]
pub struct Validation {
    keys: KeySchema,
    rules: Vec<ItemRules>,
    checks: BTreeMap<String, CheckStats>,
    entities: BTreeMap<String, Value>,
    /// The items that failed an error check, in the order found.
    pub invalid: Vec<Invalid>,
    /// Digests of the valid keys of the entities another one references.
    valid_keys: HashMap<String, HashSet<u128>>,
}

/// A 128-bit digest of a key: 16 bytes instead of a string and its allocation (a false
/// match needs about 2^64 keys).
fn digest(key: &str) -> u128 {
    use std::hash::{DefaultHasher, Hasher};
    let half = |salt: u8| {
        let mut h = DefaultHasher::new();
        h.write_u8(salt);
        h.write(key.as_bytes());
        h.finish()
    };
    (u128::from(half(1)) << 64) | u128::from(half(2))
}

impl Validation {
    /// A validation of items with key `keys` against `rules` (one per entity).
    pub fn new(keys: KeySchema, rules: Vec<ItemRules>) -> Self {
        Validation {
            keys,
            rules,
            checks: BTreeMap::new(),
            entities: BTreeMap::new(),
            invalid: Vec::new(),
            valid_keys: HashMap::new(),
        }
    }

    fn note(&mut self, check: &str, severity: Severity, entity: &str, key: &str, why: String) {
        let c = self.stats(check, severity);
        c.failed += 1;
        if c.examples.len() < 20 {
            (c.examples).push(json!({"entity": entity, "key": key, "reason": why}));
        }
        if severity == Severity::Error {
            self.invalid.push(Invalid {
                entity: entity.to_owned(),
                key: key.to_owned(),
                check: check.to_owned(),
                reason: why,
            });
        }
    }

    fn stats(&mut self, check: &str, severity: Severity) -> &mut CheckStats {
        (self.checks.entry(check.to_owned())).or_insert_with(|| CheckStats {
            severity,
            failed: 0,
            examples: Vec::new(),
        })
    }

    /// Check the items of `entity` (after the entities it references). An entity without
    /// rules is only checked for duplicate keys.
    pub fn check(&mut self, entity: &str, items: impl IntoIterator<Item = Item>) {
        let at = self.rules.iter().position(|r| r.entity == entity);
        let rules = at.map_or_else(|| ItemRules::new(entity), |i| self.rules.remove(i));
        let parent = (self.rules.iter().flat_map(|r| &r.references)).any(|r| r.1 == entity);
        let mut names = vec![("duplicates", Severity::Error)];
        names.extend((!rules.required.is_empty()).then_some(("required_fields", Severity::Error)));
        names.extend((!rules.numbers.is_empty()).then_some(("types", Severity::Error)));
        names.extend(rules.rules.iter().map(|r| (r.0.as_str(), r.1)));
        names.extend((!rules.references.is_empty()).then_some(("foreign_keys", Severity::Error)));
        for (name, severity) in names {
            self.stats(name, severity);
        }
        let (mut seen, mut valid) = (HashSet::new(), HashSet::new());
        let (mut checked, mut invalid, mut warnings) = (0u64, 0u64, 0u64);
        for item in items {
            checked += 1;
            let key = key_text(&self.keys, &item);
            let mut failed: Vec<(&str, Severity, String)> = Vec::new();
            let missing = rules.required.iter().filter(|a| !item.contains_key(*a));
            failed.extend(missing.map(|a| {
                (
                    "required_fields",
                    Severity::Error,
                    format!("{a} is missing"),
                )
            }));
            let not_n = (rules.numbers.iter()).filter(|a| {
                item.get(*a)
                    .is_some_and(|v| !matches!(v, AttributeValue::N(_)))
            });
            failed
                .extend(not_n.map(|a| ("types", Severity::Error, format!("{a} is not a Number"))));
            for (name, severity, f) in &rules.rules {
                failed.extend(f(&item).map(|why| (name.as_str(), *severity, why)));
            }
            if !seen.insert(digest(&key)) {
                let why = format!("key {key} appears more than once; the first is loaded");
                failed.push(("duplicates", Severity::Error, why));
            }
            for (attr, to, key_of) in &rules.references {
                let Some(id) = text(&item, attr) else {
                    continue;
                };
                let known = self.valid_keys.get(to);
                if !known.is_some_and(|k| k.contains(&digest(&key_of(id)))) {
                    let why = format!("{attr} {id} is not a valid {to} item in the target");
                    failed.push(("foreign_keys", Severity::Error, why));
                }
            }
            let bad = failed.iter().any(|f| f.1 == Severity::Error);
            warnings += failed.iter().filter(|f| f.1 == Severity::Warning).count() as u64;
            for (name, severity, why) in failed {
                self.note(name, severity, entity, &key, why);
            }
            if bad {
                invalid += 1;
            } else if parent {
                valid.insert(digest(&key));
            }
        }
        let counts = json!({"checked": checked, "valid": checked - invalid, "invalid": invalid, "warnings": warnings});
        self.entities.insert(entity.to_owned(), counts);
        self.valid_keys.insert(entity.to_owned(), valid);
    }

    /// [`Validation::check`] the items of a Parquet file ([`read_items`]), streamed.
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn check_file(&mut self, entity: &str, path: &Path) -> etl_core::Result<()> {
        let mut failed = None;
        let items = read_items(path)?.map_while(|r| r.map_err(|e| failed = Some(e)).ok());
        self.check(entity, items);
        failed.map_or(Ok(()), Err)
    }

    /// Whether no error was found.
    pub fn passed(&self) -> bool {
        self.invalid.is_empty()
    }

    /// The report: `passed`, per entity the items `checked`, `valid`, `invalid` and
    /// `warnings`, per check its `severity`, how many `failed` and 20 `examples`, and the
    /// `invalid_items`.
    pub fn report(&self) -> Value {
        json!({
            "generated_at": chrono::Utc::now().to_rfc3339(),
            "passed": self.passed(),
            "entities": self.entities,
            "checks": self.checks,
            "invalid_items": self.invalid,
        })
    }
}

/// Rejects the rows of items that failed validation (`validation:<check>`, with the
/// reason); of duplicate keys the first row is kept.
#[derive(Debug, Clone)]
pub struct ExcludeInvalid {
    keys: KeySchema,
    invalid: HashMap<String, (String, String)>,
}

impl ExcludeInvalid {
    /// Leaves out `invalid` (those of the entity loaded) from items of key `keys`.
    pub fn new<'a>(keys: KeySchema, invalid: impl IntoIterator<Item = &'a Invalid>) -> Self {
        let mut map = HashMap::new();
        for i in invalid {
            map.entry(i.key.clone())
                .or_insert((i.check.clone(), i.reason.clone()));
        }
        ExcludeInvalid { keys, invalid: map }
    }
}

impl Transform for ExcludeInvalid {
    fn name(&self) -> &str {
        "exclude_invalid"
    }

    fn output_schema(&self, input: &SchemaRef) -> etl_core::Result<SchemaRef> {
        Ok(input.clone())
    }

    fn transform(&self, mut batch: Batch) -> etl_core::Result<Batch> {
        let column = |a: &String| batch.data.column_by_name(a).cloned();
        let Some(pk) = column(&self.keys.partition) else {
            return Ok(batch);
        };
        let sk = match &self.keys.sort {
            Some(a) => match column(a) {
                None => return Ok(batch),
                c => c,
            },
            None => None,
        };
        let mut seen: HashSet<String> = HashSet::new();
        let fates: Vec<Option<Fate>> = (0..batch.num_rows())
            .map(|r| {
                let mut key = etl_core::batch::render_value(&pk, r);
                if let Some(sk) = &sk {
                    key = format!("{key}|{}", etl_core::batch::render_value(sk, r));
                }
                // Duplicates: the first occurrence is valid, later ones are not.
                let first = seen.insert(key.clone());
                let (check, reason) = self.invalid.get(&key)?;
                (check != "duplicates" || !first).then(|| Fate::Reject {
                    column: None,
                    kind: format!("validation:{check}"),
                    reason: reason.clone(),
                })
            })
            .collect();
        batch.apply_fates(&fates)?;
        Ok(batch)
    }
}

/// The items of a Parquet file as the load maps them ([`MappingOptions::default`]), read
/// one batch at a time (memory stays flat).
///
/// # Errors
/// The file cannot be opened or read.
pub fn read_items(
    path: &Path,
) -> etl_core::Result<impl Iterator<Item = etl_core::Result<Item>> + use<>> {
    let f = std::fs::File::open(path).map_err(|e| etl_core::Error::io(path.display(), e))?;
    let p = path.display().to_string();
    let bad =
        move |e: &dyn std::fmt::Display| etl_core::Error::Config(format!("parquet file {p}: {e}"));
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .and_then(|b| b.with_batch_size(8192).build())
        .map_err(|e| bad(&e))?;
    Ok(reader.flat_map(move |b| -> Vec<etl_core::Result<Item>> {
        match b {
            Ok(b) => (items_from_batch(&b, &MappingOptions::default()).into_iter())
                .map(|r| r.map_err(etl_core::Error::from))
                .collect(),
            Err(e) => vec![Err(bad(&e))],
        }
    }))
}

/// What a table should hold after loading a file of items: [`Expected::scan`].
#[derive(Debug, Default)]
pub struct Expected {
    /// Items in the file.
    pub rows: u64,
    /// Distinct keys among the items not left out: the items the table should hold.
    pub items: u64,
    /// A uniform random sample of those items (reservoir sampling), to read back.
    pub sample: Vec<Item>,
}

impl Expected {
    /// Read the items of `path` ([`read_items`], streamed), leaving out those whose key
    /// ([`key_text`]) `skip` names, and keep a sample of `size` of the others drawn with
    /// `rng`. Holds the distinct keys and the sample only.
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn scan(
        path: &Path,
        keys: &KeySchema,
        skip: impl Fn(&str) -> bool,
        size: usize,
        rng: &mut fastrand::Rng,
    ) -> etl_core::Result<Self> {
        let (mut e, mut unique) = (Expected::default(), HashSet::new());
        for item in read_items(path)? {
            let item = item?;
            e.rows += 1;
            let key = key_text(keys, &item);
            if skip(&key) || !unique.insert(digest(&key)) {
                continue;
            }
            if e.sample.len() < size {
                e.sample.push(item);
            } else if let Some(slot) = e.sample.get_mut(rng.usize(..unique.len())) {
                *slot = item;
            }
        }
        e.items = unique.len() as u64;
        Ok(e)
    }
}

/// Read every item of `sample` back from `table` by its key and compare it with
/// [`diff_items`]: one `{"key", "diff"}` per item that differs or is missing.
///
/// # Errors
/// An item without its key attributes, a failed `GetItem`.
pub async fn compare_sample(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    keys: &KeySchema,
    sample: &[Item],
) -> crate::Result<Vec<Value>> {
    let mut diffs = Vec::new();
    for want in sample {
        let diff = match crate::admin::get_item(client, table, keys.key_of(table, want)?).await? {
            None => vec!["missing in the target".to_owned()],
            Some(got) => diff_items(want, &got),
        };
        if !diff.is_empty() {
            diffs.push(json!({"key": key_text(keys, want), "diff": diff}));
        }
    }
    Ok(diffs)
}

/// A table checked against the file of items loaded into it ([`verify_table`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableCheck {
    /// Items in the file.
    pub rows: u64,
    /// Distinct keys among the items not left out: what the table should hold.
    pub expected: u64,
    /// Items the table holds (those matching the filter), counted by `Scan`.
    pub target: u64,
    /// Sampled items read back.
    pub checked: usize,
    /// The sampled items that differ or are missing ([`compare_sample`]).
    pub diffs: Vec<Value>,
}

impl TableCheck {
    /// The items of the file found in the table, when every one was read back (a
    /// `sample` of all of them): those expected minus those missing.
    pub fn found(&self) -> u64 {
        let missing = json!(["missing in the target"]);
        self.expected - self.diffs.iter().filter(|d| d["diff"] == missing).count() as u64
    }

    /// The comparison of entity `name`, loaded from `source` rows of which
    /// `rejected_before` (by a transform; `None`: unknown) never became items: the count
    /// entry (`source`, `target`, `rejected`, `rejected_by_transform`,
    /// `rejected_by_validation`, `match`, `table_items`), the sample entry (`checked`,
    /// `mismatched`, `examples`) and what does not match (empty when all does). With
    /// `read_back_all` (every item was read back: other loads share the table), `target`
    /// is [`TableCheck::found`] instead of the table's count.
    pub fn comparison(
        &self,
        name: &str,
        source: u64,
        rejected_before: Option<u64>,
        read_back_all: bool,
    ) -> (Value, Value, Vec<String>) {
        let target = if read_back_all {
            self.found()
        } else {
            self.target
        };
        // Every source row is accounted for: items + rejected before.
        let accounted = rejected_before.is_none_or(|r| self.rows + r == source);
        let matched = target == self.expected && accounted;
        let count = json!({
            "source": source,
            "target": target,
            "rejected": source.saturating_sub(self.expected),
            "rejected_by_transform": rejected_before,
            "rejected_by_validation": self.rows - self.expected,
            "match": matched,
            "table_items": self.target,
        });
        let mut problems = Vec::new();
        if !matched {
            problems.push(format!(
                "{name}: {target} items, {} expected",
                self.expected
            ));
        }
        if let Some(d) = self.diffs.first() {
            let n = self.diffs.len();
            problems.push(format!("{name}: {n} sampled items differ, e.g. {d}"));
        }
        let examples: Vec<&Value> = self.diffs.iter().take(10).collect();
        let sample =
            json!({"checked": self.checked, "mismatched": self.diffs.len(), "examples": examples});
        (count, sample, problems)
    }
}

/// Check `table` after loading the items of `path` into it: count what it holds (with
/// `filter` `(attribute, value)`, e.g. an entity type in a single-table design) against
/// the distinct keys of the file that `skip` does not leave out ([`Expected::scan`]), and
/// read back a random sample of `sample` of them attribute by attribute.
///
/// # Errors
/// The file cannot be read; a `Scan` or `GetItem` failed.
#[allow(clippy::too_many_arguments)] // what to compare, and how much
pub async fn verify_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    path: &Path,
    keys: &KeySchema,
    skip: impl Fn(&str) -> bool,
    filter: Option<(&str, &str)>,
    sample: usize,
    rng: &mut fastrand::Rng,
) -> etl_core::Result<TableCheck> {
    let want = Expected::scan(path, keys, skip, sample, rng)?;
    let target = crate::admin::count_items(client, table, filter, 4).await?;
    let diffs = compare_sample(client, table, keys, &want.sample).await?;
    Ok(TableCheck {
        rows: want.rows,
        expected: want.items,
        target,
        checked: want.sample.len(),
        diffs,
    })
}

/// Two items compared attribute by attribute: `Total: expected 10 found 12`, `X: missing
/// in the target`, `Y: unexpected in the target`; empty when they are equal.
pub fn diff_items(expected: &Item, actual: &Item) -> Vec<String> {
    let mut names: Vec<&String> = expected.keys().chain(actual.keys()).collect();
    names.sort();
    names.dedup();
    let diff = |k: &String| match (expected.get(k), actual.get(k)) {
        (Some(a), Some(b)) if a != b => Some(format!(
            "{k}: expected {} found {}",
            to_plain_json(a),
            to_plain_json(b)
        )),
        (Some(_), None) => Some(format!("{k}: missing in the target")),
        (None, Some(_)) => Some(format!("{k}: unexpected in the target")),
        _ => None,
    };
    names.into_iter().filter_map(diff).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(pairs: &[(&str, AttributeValue)]) -> Item {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.into())
    }

    #[test]
    fn errors_make_items_invalid_and_references_need_valid_parents() {
        let keys = KeySchema::new("PK", Some("SK"));
        let mut v = Validation::new(
            keys,
            vec![
                ItemRules::new("parents").required(&["Name"]),
                ItemRules::new("children")
                    .numbers(&["Total"])
                    .one_of("Status", &["A", "B"])
                    .rule("big", Severity::Warning, |i| {
                        (number(i, "Total")? > 9.0).then(|| "big".into())
                    })
                    .references("Parent", "parents", |id| format!("P#{id}|M")),
            ],
        );
        let p = |id: &str, name: bool| {
            let mut i = item(&[("PK", s(&format!("P#{id}"))), ("SK", s("M"))]);
            if name {
                i.insert("Name".into(), s("n"));
            }
            i
        };
        v.check("parents", [p("1", true), p("2", false), p("1", true)]);
        let c = |pk: &str, parent: &str, status: &str, total: &str| {
            item(&[
                ("PK", s(pk)),
                ("SK", s("C")),
                ("Parent", s(parent)),
                ("Status", s(status)),
                ("Total", AttributeValue::N(total.into())),
            ])
        };
        v.check(
            "children",
            [
                c("1", "1", "A", "1"),
                c("2", "2", "A", "1"),
                c("3", "1", "Z", "10"),
            ],
        );
        let found: Vec<(&str, &str)> = v
            .invalid
            .iter()
            .map(|i| (i.key.as_str(), i.check.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                ("P#2|M", "required_fields"),
                ("P#1|M", "duplicates"),
                ("2|C", "foreign_keys"),
                ("3|C", "enums"),
            ]
        );
        let r = v.report();
        assert_eq!(r["checks"]["big"]["failed"], 1);
        assert_eq!(r["checks"]["big"]["severity"], "warning");
        assert_eq!(r["entities"]["children"]["warnings"], 1);
        assert_eq!(r["entities"]["parents"]["invalid"], 2);
        assert!(!v.passed());
    }

    #[test]
    fn expected_items_leave_out_skipped_and_duplicate_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.parquet");
        let schema = crate::json_items::item_schema(
            &KeySchema::new("PK", None),
            &[("PK", crate::json_items::Attr::S)],
        );
        let rows: Vec<serde_json::Map<String, Value>> = ["a", "b", "b", "c", "d"]
            .iter()
            .map(|k| json!({"PK": k}).as_object().unwrap().clone())
            .collect();
        let batch = crate::json_items::json_batch(&schema, &rows).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&path).unwrap(),
            schema,
            None,
        )
        .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let keys = KeySchema::new("PK", None);
        let mut rng = fastrand::Rng::with_seed(1);
        let e = Expected::scan(&path, &keys, |k| k == "c", 2, &mut rng).unwrap();
        assert_eq!((e.rows, e.items, e.sample.len()), (5, 3, 2));
        assert!(e.sample.iter().all(|i| text(i, "PK") != Some("c")));
    }

    #[test]
    fn a_diff_names_each_differing_attribute() {
        let a = item(&[("A", s("1")), ("B", s("x"))]);
        let b = item(&[("A", s("2")), ("C", s("y"))]);
        assert_eq!(
            diff_items(&a, &b),
            [
                "A: expected \"1\" found \"2\"",
                "B: missing in the target",
                "C: unexpected in the target",
            ]
        );
        assert!(diff_items(&a, &a).is_empty());
    }
}
