//! Validation of the transformed items before load, and verification after it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use aws_sdk_dynamodb::types::AttributeValue;
use etl_sink_dynamodb::aws_sdk_dynamodb;
use etl_sink_dynamodb::mapping::{Item, MappingOptions, items_from_batch, to_plain_json};
use serde::Serialize;
use serde_json::{Value, json};

use super::transform::Entity;

/// The key of an item as `PK|SK`.
pub fn item_key(item: &Item) -> String {
    let s = |k: &str| match item.get(k) {
        Some(AttributeValue::S(v)) => v.clone(),
        _ => String::new(),
    };
    format!("{}|{}", s("PK"), s("SK"))
}

/// One item that failed a check.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Invalid {
    /// Entity.
    pub entity: String,
    /// `PK|SK`.
    pub key: String,
    /// Check name.
    pub check: String,
    /// What is wrong.
    pub reason: String,
}

#[derive(Debug, Default, Serialize)]
struct CheckStats {
    severity: &'static str,
    failed: u64,
    examples: Vec<Value>,
}

/// The validation of every entity's transformed items.
#[derive(Debug, Default)]
pub struct Validation {
    checks: BTreeMap<String, CheckStats>,
    entities: BTreeMap<String, Value>,
    /// Items excluded from the load (errors).
    pub invalid: Vec<Invalid>,
    /// Digests of the valid keys of the parent entities (buyers, producers, sales).
    valid_keys: HashMap<Entity, HashSet<u128>>,
}

/// A 128-bit digest of a key. The duplicate and foreign-key checks keep these instead of
/// the keys themselves: 16 bytes a key instead of a ~40-byte string and its allocation, so
/// validating 400,000 items holds a few MB (a false match needs about 2^64 keys).
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

fn n(v: Option<&AttributeValue>) -> Option<f64> {
    match v {
        Some(AttributeValue::N(s)) => s.parse().ok(),
        _ => None,
    }
}

fn s(v: Option<&AttributeValue>) -> Option<&str> {
    match v {
        Some(AttributeValue::S(s)) => Some(s),
        _ => None,
    }
}

fn key_format_ok(entity: Entity, item: &Item) -> bool {
    let digits = |t: &str, prefix: &str| {
        t.strip_prefix(prefix)
            .is_some_and(|d| d.len() >= 3 && d.bytes().all(|b| b.is_ascii_digit()))
    };
    let (pk, sk) = (
        s(item.get("PK")).unwrap_or(""),
        s(item.get("SK")).unwrap_or(""),
    );
    match entity {
        Entity::Buyers => digits(pk, "BUYER#BUYER") && sk == "#METADATA#buyer",
        Entity::Producers => digits(pk, "PRODUCER#PRODUCER") && sk == "#METADATA#producer",
        Entity::Sales => digits(pk, "SALE#SALE") && sk == "#METADATA#sale",
        Entity::SaleLines => digits(pk, "SALE#SALE") && digits(sk, "LINE#"),
    }
}

impl Validation {
    fn note(
        &mut self,
        check: &str,
        severity: &'static str,
        entity: Entity,
        key: &str,
        reason: String,
    ) -> bool {
        let c = self.checks.entry(check.to_owned()).or_default();
        c.severity = severity;
        c.failed += 1;
        if c.examples.len() < 20 {
            c.examples
                .push(json!({"entity": entity.name(), "key": key, "reason": reason}));
        }
        if severity == "error" {
            self.invalid.push(Invalid {
                entity: entity.name().into(),
                key: key.to_owned(),
                check: check.to_owned(),
                reason,
            });
        }
        severity == "error"
    }

    fn pass(&mut self, check: &str, severity: &'static str) {
        self.checks.entry(check.to_owned()).or_default().severity = severity;
    }

    /// Check the items of `entity` (call in load order: buyers, producers, sales, lines).
    pub fn check_entity(&mut self, entity: Entity, items: impl Iterator<Item = Item>) {
        let required: &[&str] = match entity {
            Entity::Buyers => &[
                "PK",
                "SK",
                "EntityType",
                "BuyerId",
                "Name",
                "Document",
                "Status",
                "CreatedAt",
            ],
            Entity::Producers => &[
                "PK",
                "SK",
                "EntityType",
                "ProducerId",
                "Name",
                "Document",
                "Status",
                "CreatedAt",
            ],
            Entity::Sales => &[
                "PK",
                "SK",
                "EntityType",
                "SaleId",
                "BuyerId",
                "ProducerId",
                "SaleDate",
                "Status",
                "Total",
                "Currency",
                "CreatedAt",
            ],
            Entity::SaleLines => &[
                "PK",
                "SK",
                "EntityType",
                "SaleId",
                "LineNumber",
                "ProductCode",
                "Quantity",
                "Total",
            ],
        };
        let numbers: &[&str] = match entity {
            Entity::Buyers => &["CreditLimit"],
            Entity::Producers => &[],
            Entity::Sales | Entity::SaleLines => &[
                "Quantity",
                "UnitPrice",
                "Subtotal",
                "Discount",
                "Tax",
                "Total",
            ],
        };
        let statuses: &[&str] = match entity {
            Entity::Sales => &[
                "DRAFT",
                "CONFIRMED",
                "INVOICED",
                "SHIPPED",
                "DELIVERED",
                "CANCELLED",
            ],
            Entity::SaleLines => &[],
            _ => &["ACTIVE", "INACTIVE", "BLOCKED", "SUSPENDED"],
        };
        for c in [
            "required_fields",
            "types",
            "enums",
            "key_format",
            "duplicates",
            "foreign_keys",
        ] {
            self.pass(c, "error");
        }
        self.pass("totals", "warning");
        let mut seen = HashSet::new();
        let (mut checked, mut invalid, mut warnings) = (0u64, 0u64, 0u64);
        let mut valid = HashSet::new();
        for item in items {
            checked += 1;
            let key = item_key(&item);
            let mut bad = false;
            for r in required {
                if !item.contains_key(*r) {
                    bad |= self.note(
                        "required_fields",
                        "error",
                        entity,
                        &key,
                        format!("{r} is missing"),
                    );
                }
            }
            for f in numbers {
                if let Some(v) = item.get(*f)
                    && !matches!(v, AttributeValue::N(_))
                {
                    bad |= self.note(
                        "types",
                        "error",
                        entity,
                        &key,
                        format!("{f} is not a Number"),
                    );
                }
            }
            if !statuses.is_empty()
                && let Some(st) = s(item.get("Status"))
                && !statuses.contains(&st)
            {
                bad |= self.note(
                    "enums",
                    "error",
                    entity,
                    &key,
                    format!("Status {st} is not one of {}", statuses.join("/")),
                );
            }
            if let Some(t) = s(item.get("PaymentTerms"))
                && t.strip_suffix("_DAYS")
                    .is_none_or(|d| d.parse::<u32>().is_err())
            {
                bad |= self.note(
                    "enums",
                    "error",
                    entity,
                    &key,
                    format!("PaymentTerms {t} is not N_DAYS"),
                );
            }
            if let Some(t) = s(item.get("DocumentType"))
                && !["CNPJ", "CPF"].contains(&t)
            {
                bad |= self.note(
                    "enums",
                    "error",
                    entity,
                    &key,
                    format!("DocumentType {t} is not CNPJ/CPF"),
                );
            }
            if !key_format_ok(entity, &item) {
                bad |= self.note(
                    "key_format",
                    "error",
                    entity,
                    &key,
                    format!(
                        "key {key} does not follow the {} key format",
                        entity.entity_type()
                    ),
                );
            }
            if !seen.insert(digest(&key)) {
                bad |= self.note(
                    "duplicates",
                    "error",
                    entity,
                    &key,
                    format!("key {key} appears more than once; the first is loaded"),
                );
            }
            let fk = |e: Entity, attr: &str, prefix: &str| -> Option<String> {
                let id = s(item.get(attr))?;
                let k = format!("{prefix}{id}|#METADATA#{}", e.entity_type().to_lowercase());
                let ok = self
                    .valid_keys
                    .get(&e)
                    .is_some_and(|set| set.contains(&digest(&k)));
                (!ok).then(|| {
                    format!(
                        "{attr} {id} is not a valid {} in the target",
                        e.entity_type().to_lowercase()
                    )
                })
            };
            let fk_errors: Vec<String> = match entity {
                Entity::Sales => [
                    fk(Entity::Buyers, "BuyerId", "BUYER#"),
                    fk(Entity::Producers, "ProducerId", "PRODUCER#"),
                ]
                .into_iter()
                .flatten()
                .collect(),
                Entity::SaleLines => fk(Entity::Sales, "SaleId", "SALE#").into_iter().collect(),
                _ => Vec::new(),
            };
            for e in fk_errors {
                bad |= self.note("foreign_keys", "error", entity, &key, e);
            }
            if matches!(entity, Entity::Sales | Entity::SaleLines)
                && let (Some(t), Some(st), Some(d), Some(x)) = (
                    n(item.get("Total")),
                    n(item.get("Subtotal")),
                    n(item.get("Discount")),
                    n(item.get("Tax")),
                )
                && (t - (st - d + x)).abs() > 0.01
            {
                warnings += 1;
                self.note(
                    "totals",
                    "warning",
                    entity,
                    &key,
                    format!("Total {t} != Subtotal {st} - Discount {d} + Tax {x}"),
                );
            }
            if bad {
                invalid += 1;
            } else if entity != Entity::SaleLines {
                // Lines are nobody's parent: their keys need not be kept.
                valid.insert(digest(&key));
            }
        }
        self.entities.insert(
            entity.name().into(),
            json!({"checked": checked, "valid": checked - invalid, "invalid": invalid, "warnings": warnings}),
        );
        self.valid_keys.insert(entity, valid);
    }

    /// Whether no error was found.
    pub fn passed(&self) -> bool {
        self.invalid.is_empty()
    }

    /// `validation_report.json`.
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

/// The items of a transformed Parquet file.
pub fn items_of(path: &Path) -> etl_core::Result<Vec<Item>> {
    item_stream(path)?.collect()
}

/// The items of a transformed Parquet file, read one batch at a time (memory stays flat).
pub fn item_stream(path: &Path) -> etl_core::Result<impl Iterator<Item = etl_core::Result<Item>>> {
    let f = std::fs::File::open(path).map_err(|e| etl_core::Error::io(path.display(), e))?;
    let p = path.display().to_string();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .and_then(|b| b.with_batch_size(8192).build())
        .map_err(|e| etl_core::Error::Config(format!("parquet file {p}: {e}")))?;
    Ok(reader.flat_map(move |b| -> Vec<etl_core::Result<Item>> {
        match b {
            Ok(b) => items_from_batch(&b, &MappingOptions::default())
                .into_iter()
                .map(|r| r.map_err(etl_core::Error::from))
                .collect(),
            Err(e) => vec![Err(etl_core::Error::Config(format!(
                "parquet file {p}: {e}"
            )))],
        }
    }))
}

/// Compare two items attribute by attribute; returns the differences.
pub fn diff_items(expected: &Item, actual: &Item) -> Vec<String> {
    let mut out = Vec::new();
    let mut names: Vec<&String> = expected.keys().chain(actual.keys()).collect();
    names.sort();
    names.dedup();
    for k in names {
        match (expected.get(k), actual.get(k)) {
            (Some(a), Some(b)) if a == b => {}
            (Some(a), Some(b)) => out.push(format!(
                "{k}: expected {} found {}",
                to_plain_json(a),
                to_plain_json(b)
            )),
            (Some(_), None) => out.push(format!("{k}: missing in the target")),
            (None, Some(_)) => out.push(format!("{k}: unexpected in the target")),
            (None, None) => {}
        }
    }
    out
}

/// Plain JSON with every number as f64 (so `2.0` equals `2`), for golden comparisons.
pub fn normalize(v: &Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_f64()),
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), normalize(v))).collect())
        }
        other => other.clone(),
    }
}
