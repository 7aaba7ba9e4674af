//! Schema drift: the declared schema of a type against what the app describes (`/meta`) and
//! what it sends.
//!
//! Bubble leaves empty fields out of a thing, so a declared key missing from one thing, or
//! from a few, is normal. The rules:
//!
//! 1. **Up front** ([`check_meta`], from [`crate::BubbleExtract`]'s `units`): when the app
//!    serves `/meta`, every declared field must be one of the type's fields there (by its key
//!    in the app's key mode, case, spaces and punctuation aside), and a declared list must
//!    be a `list.*` field and a declared scalar not one. Otherwise the extract fails before
//!    reading a thing. (When `/meta` matches none of the declared fields, it is taken to
//!    describe the type in another form and the pages are judged without it.)
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

/// A key as compared with `/meta`: the Data API sends a sanitized form of a display name,
/// so case, spaces and punctuation are ignored.
fn normalized(k: &str) -> String {
    k.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The declared schema against the app's `/meta`: every declared field listed for the type
/// (by its key in the app's key mode, case, spaces and punctuation aside), lists declared
/// as lists. Returns whether `/meta` could judge the type: it cannot when it does not
/// describe the type, or when none of the declared fields matches one of its fields (a
/// description in another form than expected, more likely than every field renamed at
/// once); the pages are then judged without it.
///
/// # Errors
/// [`BubbleError::SchemaDrift`] naming the type and the first field that is not there (with
/// the type's undeclared fields, among which a renamed one is) or has another shape.
pub fn check_meta(spec: &TypeSchema, meta: &AppMeta) -> Result<bool> {
    let Some(ty) = meta.types.get(&spec.bubble_type) else {
        tracing::warn!(bubble_type = %spec.bubble_type, "the app's /meta does not describe this type: its declared schema is checked against the things only");
        return Ok(false);
    };
    let key_of = |m: &crate::client::MetaField| match spec.key_mode {
        KeyMode::DisplayNames => m.display.clone(),
        KeyMode::GeneratedIds => m.id.clone(),
    };
    let find = |key: &str| {
        let n = normalized(key);
        ty.fields.iter().find(|m| normalized(&key_of(m)) == n)
    };
    if !spec.fields.is_empty()
        && spec
            .fields
            .iter()
            .all(|f| find(f.key_for(spec.key_mode)).is_none())
    {
        tracing::warn!(bubble_type = %spec.bubble_type, "none of the declared fields is in the app's /meta description of the type: its declared schema is checked against the things only");
        return Ok(false);
    }
    for f in &spec.fields {
        let key = f.key_for(spec.key_mode);
        let Some(m) = find(key) else {
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
    Ok(true)
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
                let meta = if self.meta {
                    self.client.meta().await?
                } else {
                    None
                };
                let judged = match meta {
                    Some(m) => check_meta(&spec, &m)?,
                    None => false,
                };
                if judged {
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

    fn meta(fields: &[(&str, &str, &str)]) -> AppMeta {
        let fields: Vec<Value> = fields
            .iter()
            .map(|(d, i, t)| serde_json::json!({"display": d, "id": i, "type": t}))
            .collect();
        serde_json::from_value(
            serde_json::json!({"types": {"coach": {"display": "Coach", "fields": fields}}}),
        )
        .unwrap()
    }

    #[test]
    fn meta_keys_match_sanitized_and_a_foreign_form_is_not_judged() {
        let spec = TypeSchema::new("coach", KeyMode::DisplayNames)
            .field(
                FieldSpec::new("rate", FieldKind::Number)
                    .key("Hourly Rate")
                    .id_key("hourly_rate_number"),
            )
            .field(FieldSpec::new("bio", FieldKind::Text));
        let m = meta(&[
            ("hourly rate", "hourly_rate_number", "number"),
            ("Bio", "bio_text", "text"),
        ]);
        assert!(check_meta(&spec, &m).unwrap());
        let renamed = meta(&[
            ("hourly rate", "hourly_rate_number", "number"),
            ("About", "bio_text", "text"),
        ]);
        let err = check_meta(&spec, &renamed).unwrap_err().to_string();
        assert!(
            err.contains("field `bio` (key `bio`)") && err.contains("`About`"),
            "{err}"
        );
        // Nothing matches: a description in another form, not judged.
        let foreign = meta(&[("x", "y", "text")]);
        assert!(!check_meta(&spec, &foreign).unwrap());
        let generated = TypeSchema {
            key_mode: KeyMode::GeneratedIds,
            ..spec
        };
        assert!(check_meta(&generated, &m).unwrap());
    }
}
