//! Schema drift: the declared schema of a type against what the app describes (`/meta`) and
//! what it sends.
//!
//! Bubble leaves empty fields out of a thing, so a declared key missing from one thing, or
//! from a few, is normal. The rules:
//!
//! 1. **Up front** ([`check_meta`], from [`crate::BubbleExtract`]'s `units`): when the app
//!    serves `/meta`, every declared field must be one of the type's fields there (by its key
//!    in the app's key mode), and a declared list must be a `list.*` field and a declared
//!    scalar not one. Otherwise the extract fails before reading a thing.
//! 2. **On every page of at least [`DRIFT_MIN_THINGS`] things** ([`DriftGuard::check`]),
//!    before the page is decoded:
//!    * a declared field whose present values (at least [`SHAPE_MIN_VALUES`]) all have
//!      another shape (a list for a text, an object for a number, ...) has changed shape:
//!      loud error. A single odd value is a row reject of the typed decoding instead (the raw
//!      export keeps it as its JSON text; the typed transform rejects it);
//!    * a declared field absent from every thing of the page is a suspect: with `/meta`,
//!      `/meta` is asked again and decides (a field it still lists is only empty here, and is
//!      not asked about again until it shows up in a page); without `/meta`, the field is
//!      drift when earlier pages of the unit carried it and this page carries keys no earlier
//!      page did (a rename mid-run). Without `/meta`, a field removed (or renamed before the
//!      run) cannot be told from an empty one: it is logged as a warning.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::client::{AppMeta, BubbleClient};
use crate::error::{BubbleError, Result};
use crate::schema::{CREATED_DATE, FieldKind, FieldSpec, ID, KeyMode, MODIFIED_DATE, TypeSchema};

/// Pages with fewer things than this are not judged for absent fields or shapes (the last,
/// short page of a window says little).
pub const DRIFT_MIN_THINGS: usize = 20;
/// A field changes shape when at least this many of its values on a page have the wrong one.
pub const SHAPE_MIN_VALUES: usize = 5;

fn drift(spec: &TypeSchema, f: &FieldSpec, detail: String) -> BubbleError {
    BubbleError::SchemaDrift {
        bubble_type: spec.bubble_type.clone(),
        field: f.column.clone(),
        key: f.key_for(spec.key_mode).to_owned(),
        detail,
    }
}

fn is_builtin(k: &str) -> bool {
    [ID, CREATED_DATE, MODIFIED_DATE].contains(&k) || k == "Created By" || k == "Slug"
}

/// Whether a JSON value can be a value of `kind` (null always can).
fn fits(kind: FieldKind, v: &Value) -> bool {
    match (kind, v) {
        (_, Value::Null) | (FieldKind::Json, _) => true,
        (FieldKind::TextList, v) => v.is_array() || v.is_string(),
        (_, v) => !v.is_array() && !v.is_object(),
    }
}

fn shape(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "lists",
        Value::Object(_) => "objects",
        Value::String(_) => "texts",
        Value::Number(_) => "numbers",
        Value::Bool(_) => "yes/no values",
        Value::Null => "nulls",
    }
}

/// The declared schema against the app's `/meta`: every declared field listed for the type
/// (by its key in the app's key mode), lists declared as lists.
///
/// # Errors
/// [`BubbleError::SchemaDrift`] naming the type and the first field that is not there (with
/// the type's undeclared fields, among which a renamed one is) or has another shape.
pub fn check_meta(spec: &TypeSchema, meta: &AppMeta) -> Result<()> {
    let Some(ty) = meta.types.get(&spec.bubble_type) else {
        tracing::warn!(bubble_type = %spec.bubble_type, "the app's /meta does not describe this type: its declared schema is checked against the things only");
        return Ok(());
    };
    let key_of = |m: &crate::client::MetaField| match spec.key_mode {
        KeyMode::DisplayNames => m.display.clone(),
        KeyMode::GeneratedIds => m.id.clone(),
    };
    for f in &spec.fields {
        let key = f.key_for(spec.key_mode);
        let Some(m) = ty.fields.iter().find(|m| key_of(m) == key) else {
            let declared: HashSet<&str> = spec
                .fields
                .iter()
                .map(|f| f.key_for(spec.key_mode))
                .collect();
            let mut others: Vec<String> = ty
                .fields
                .iter()
                .map(key_of)
                .filter(|k| !declared.contains(k.as_str()) && !is_builtin(k))
                .map(|k| format!("`{k}`"))
                .collect();
            others.sort();
            return Err(drift(
                spec,
                f,
                format!(
                    "the app's /meta no longer lists it (renamed or removed); its fields not declared: {}",
                    if others.is_empty() {
                        "none".to_owned()
                    } else {
                        others.join(", ")
                    }
                ),
            ));
        };
        let list = m.kind.starts_with("list.");
        let want_list = f.kind == FieldKind::TextList;
        if f.kind != FieldKind::Json && list != want_list {
            return Err(drift(
                spec,
                f,
                format!(
                    "declared as {}, the app's /meta says `{}`",
                    if want_list {
                        "a list"
                    } else {
                        "a single value"
                    },
                    m.kind
                ),
            ));
        }
    }
    Ok(())
}

/// Watches the pages of one unit for schema drift (rule 2 of the module docs).
#[derive(Debug)]
pub struct DriftGuard {
    client: Arc<BubbleClient>,
    spec: Arc<TypeSchema>,
    meta: bool,
    /// Keys seen on earlier pages.
    seen: HashSet<String>,
    /// Keys `/meta` confirmed while they were absent from a page (empty, not gone), until
    /// they show up again.
    confirmed: HashSet<String>,
    warned: HashSet<String>,
}

impl DriftGuard {
    /// A guard for `spec`; `meta`: the app serves `/meta` (asked again about suspects).
    pub fn new(client: Arc<BubbleClient>, spec: Arc<TypeSchema>, meta: bool) -> Self {
        DriftGuard {
            client,
            spec,
            meta,
            seen: HashSet::new(),
            confirmed: HashSet::new(),
            warned: HashSet::new(),
        }
    }

    /// Judge one page of things (`page`: its number in the unit, for messages).
    ///
    /// # Errors
    /// [`BubbleError::SchemaDrift`] as the module docs say; the errors of
    /// [`BubbleClient::meta`].
    pub async fn check(&mut self, things: &[Map<String, Value>], page: u64) -> Result<()> {
        let spec = self.spec.clone();
        let mode = spec.key_mode;
        let mut page_keys: HashSet<&str> = HashSet::new();
        for t in things {
            page_keys.extend(
                t.iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, _)| k.as_str()),
            );
        }
        if things.len() >= DRIFT_MIN_THINGS {
            let mut absent = Vec::new();
            for f in &spec.fields {
                let key = f.key_for(mode);
                let values: Vec<&Value> = things
                    .iter()
                    .filter_map(|t| t.get(key))
                    .filter(|v| !v.is_null())
                    .collect();
                let misfits: Vec<&&Value> = values.iter().filter(|v| !fits(f.kind, v)).collect();
                if values.len() >= SHAPE_MIN_VALUES && misfits.len() == values.len() {
                    return Err(drift(
                        &spec,
                        f,
                        format!(
                            "it changed shape: all {} values on page {page} are {}, not {}",
                            values.len(),
                            shape(misfits[0]),
                            f.kind.data_type()
                        ),
                    ));
                }
                if values.is_empty() && !self.confirmed.contains(key) {
                    absent.push(f);
                }
            }
            if !absent.is_empty() {
                let new_keys: Vec<String> = {
                    let declared: HashSet<&str> =
                        spec.fields.iter().map(|f| f.key_for(mode)).collect();
                    let mut k: Vec<String> = page_keys
                        .iter()
                        .filter(|k| {
                            !is_builtin(k) && !declared.contains(*k) && !self.seen.contains(**k)
                        })
                        .map(|k| format!("`{k}`"))
                        .collect();
                    k.sort();
                    k
                };
                if self.meta
                    && let Some(m) = self.client.meta().await?
                {
                    check_meta(&spec, &m)?;
                    self.confirmed
                        .extend(absent.iter().map(|f| f.key_for(mode).to_owned()));
                } else {
                    for f in absent {
                        let key = f.key_for(mode);
                        if self.seen.contains(key) && !new_keys.is_empty() {
                            return Err(drift(
                                &spec,
                                f,
                                format!(
                                    "earlier pages carried it, none of the {} things of page {page} does, and they carry keys no earlier page did: {} (renamed?)",
                                    things.len(),
                                    new_keys.join(", ")
                                ),
                            ));
                        }
                        if self.warned.insert(key.to_owned()) {
                            tracing::warn!(bubble_type = %spec.bubble_type, field = %f.column, key, page,
                                "a declared field is absent from every thing of a page; without the app's /meta an empty field cannot be told from a removed one");
                        }
                    }
                }
            }
        }
        for k in page_keys {
            self.confirmed.remove(k);
            if !self.seen.contains(k) {
                self.seen.insert(k.to_owned());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert!(fits(FieldKind::Text, &Value::from("a")));
        assert!(fits(FieldKind::Text, &Value::from(3)));
        assert!(!fits(FieldKind::Text, &serde_json::json!(["a"])));
        assert!(fits(FieldKind::TextList, &serde_json::json!(["a"])));
        assert!(!fits(FieldKind::TextList, &Value::from(3)));
        assert!(fits(FieldKind::Json, &serde_json::json!({"a": 1})));
        assert!(!fits(FieldKind::Number, &serde_json::json!({"a": 1})));
    }
}
