//! Items described in a mapping file (TOML or JSON, any serde format): each entity's
//! attributes with their types and the source columns copied into them as they are, the
//! code tables, the fields of map attributes, and the checks of its items. A transform
//! then computes only what a file cannot say (keys, lookups, split values).
//!
//! ```
//! use etl_sink_dynamodb::KeySchema;
//! use etl_sink_dynamodb::spec::MappingSpec;
//! let spec: MappingSpec = serde_json::from_value(serde_json::json!({
//!     "codes": {"status": ["A=ACTIVE", "I=INACTIVE"]},
//!     "fields": {"Address": ["Street", "City=cidade"]},
//!     "groups": {"KEY": ["PK S", "SK S"]},
//!     "entities": [{"name": "buyers", "table": "compradores",
//!         "attributes": ["KEY", "Name S nome", "Limit dec(18,2) limite", "Address map:Address"],
//!         "required": ["PK", "Name"], "one_of": {"Status": ["ACTIVE", "INACTIVE"]}}],
//! })).unwrap();
//! let buyers = spec.entity("buyers").unwrap();
//! assert_eq!(buyers.extra["table"], "compradores");
//! let attrs = spec.attributes("buyers").unwrap();
//! assert_eq!(attrs[2].column.as_deref(), Some("nome"));
//! assert_eq!(spec.schema("buyers", &KeySchema::new("PK", Some("SK"))).unwrap().fields().len(), 5);
//! assert_eq!(spec.codes("status").unwrap()[1], ("I", "INACTIVE"));
//! assert_eq!(spec.fields("Address").unwrap()[1], ("City", "cidade"));
//! ```
//!
//! Attribute lines are `Name Type [column]`: types `S`, `Int`, `dec(p,s)`, `strs` (a list
//! of strings), `map:F` and `maps:F` (a map, a list of maps, of the string fields `F` of
//! `fields`); an attribute without a column is computed by the transform. An entity's
//! `attributes` may name a group of `groups` instead of an attribute. The field names of
//! map attributes are allocated once per mapping, for the life of the process (an
//! [`Attr`] holds `&'static` names): parse a mapping once (e.g. in a `LazyLock`).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use arrow_schema::SchemaRef;
use serde::Deserialize;
use serde_json::Value;

use crate::check::ItemRules;
use crate::json_items::{Attr, item_schema};
use crate::mapping::KeySchema;

/// A mapping file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingSpec {
    /// Code tables: `SOURCE=TARGET` pairs, in order.
    #[serde(default)]
    pub codes: BTreeMap<String, Vec<String>>,
    /// The fields of map attributes: `Attribute` (computed) or `Attribute=column`.
    #[serde(default)]
    pub fields: BTreeMap<String, Vec<String>>,
    /// Named lists of attribute lines, shared by entities.
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    /// The entities, in order.
    pub entities: Vec<EntitySpec>,
    /// The names of every `fields` entry, allocated once (for [`Attr::Map`]).
    #[serde(skip)]
    names: OnceLock<BTreeMap<String, &'static [&'static str]>>,
}

/// One entity of a [`MappingSpec`].
#[derive(Debug, Clone, Deserialize)]
pub struct EntitySpec {
    /// Its name (in files and reports).
    pub name: String,
    /// Attribute lines and group names, in column order.
    pub attributes: Vec<String>,
    /// Attributes every item must have ([`ItemRules::required`]).
    #[serde(default)]
    pub required: Vec<String>,
    /// Attributes that must be numbers when present ([`ItemRules::numbers`]).
    #[serde(default)]
    pub numbers: Vec<String>,
    /// Attributes whose value must be one of these ([`ItemRules::one_of`]).
    #[serde(default)]
    pub one_of: BTreeMap<String, Vec<String>>,
    /// Anything else the file says of the entity (a source table, a key column...), for
    /// the migration's own code.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// An attribute of an entity's items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrSpec {
    /// Its name.
    pub name: String,
    /// Its type.
    pub attr: Attr,
    /// The source column copied into it as it is; `None`: the transform computes it.
    pub column: Option<String>,
}

fn bad(what: impl std::fmt::Display) -> etl_core::Error {
    etl_core::Error::Config(format!("mapping: {what}"))
}

fn pair(p: &str) -> (&str, &str) {
    p.split_once('=').unwrap_or((p, ""))
}

impl MappingSpec {
    /// The entity named `name`.
    ///
    /// # Errors
    /// No such entity.
    pub fn entity(&self, name: &str) -> etl_core::Result<&EntitySpec> {
        (self.entities.iter().find(|e| e.name == name))
            .ok_or_else(|| bad(format!("no entity `{name}`")))
    }

    /// The code table `name` as `(source, target)` pairs.
    ///
    /// # Errors
    /// No such table; a pair without `=`.
    pub fn codes(&self, name: &str) -> etl_core::Result<Vec<(&str, &str)>> {
        let pairs = (self.codes.get(name)).ok_or_else(|| bad(format!("no codes `{name}`")))?;
        (pairs.iter())
            .map(|p| {
                p.split_once('=')
                    .ok_or_else(|| bad(format!("code `{p}` of `{name}` is not SOURCE=TARGET")))
            })
            .collect()
    }

    /// The fields of the map attributes `name`: `(attribute, column)`, the column empty
    /// when computed.
    ///
    /// # Errors
    /// No such fields.
    pub fn fields(&self, name: &str) -> etl_core::Result<Vec<(&str, &str)>> {
        let f = (self.fields.get(name)).ok_or_else(|| bad(format!("no fields `{name}`")))?;
        Ok(f.iter().map(|f| pair(f)).collect())
    }

    fn attr(&self, t: &str) -> etl_core::Result<Attr> {
        let names = self.names.get_or_init(|| {
            let leak = |s: &str| -> &'static str { Box::leak(s.to_owned().into_boxed_str()) };
            (self.fields.iter())
                .map(|(k, f)| {
                    let v: Vec<&'static str> = f.iter().map(|f| leak(pair(f).0)).collect();
                    (k.clone(), &*Box::leak(v.into_boxed_slice()))
                })
                .collect()
        });
        let names = |f: &str| {
            names
                .get(f)
                .copied()
                .ok_or_else(|| bad(format!("no fields `{f}`")))
        };
        let dec = |s: &str| {
            let (p, s) = (s.strip_suffix(')')?.split_once(','))?;
            Some(Attr::Dec(p.trim().parse().ok()?, s.trim().parse().ok()?))
        };
        Ok(match t {
            "S" => Attr::S,
            "Int" => Attr::Int,
            "strs" => Attr::StrList,
            _ if t.starts_with("map:") => Attr::Map(names(&t[4..])?),
            _ if t.starts_with("maps:") => Attr::MapList(names(&t[5..])?),
            _ => (t.strip_prefix("dec(").and_then(dec))
                .ok_or_else(|| bad(format!("unknown attribute type `{t}`")))?,
        })
    }

    /// The attributes of entity `name`'s items, in order (groups expanded).
    ///
    /// # Errors
    /// No such entity; an unknown group, type or map fields; a line that is not `Name
    /// Type [column]`.
    pub fn attributes(&self, name: &str) -> etl_core::Result<Vec<AttrSpec>> {
        let mut out = Vec::new();
        for a in &self.entity(name)?.attributes {
            let lines = self
                .groups
                .get(a)
                .cloned()
                .unwrap_or_else(|| vec![a.clone()]);
            for line in lines {
                let mut w = line.split_whitespace();
                let (Some(n), Some(t), column, None) = (w.next(), w.next(), w.next(), w.next())
                else {
                    return Err(bad(format!(
                        "`{line}` of `{name}` is not `Name Type [column]`"
                    )));
                };
                let (name, column) = (n.to_owned(), column.map(str::to_owned));
                out.push(AttrSpec {
                    name,
                    attr: self.attr(t)?,
                    column,
                });
            }
        }
        Ok(out)
    }

    /// The Arrow schema of entity `name`'s items ([`item_schema`]).
    ///
    /// # Errors
    /// As [`MappingSpec::attributes`].
    pub fn schema(&self, name: &str, keys: &KeySchema) -> etl_core::Result<SchemaRef> {
        let attrs = self.attributes(name)?;
        let attrs: Vec<(&str, Attr)> = attrs.iter().map(|a| (a.name.as_str(), a.attr)).collect();
        Ok(item_schema(keys, &attrs))
    }

    /// The checks the file gives entity `name`'s items (required, numbers, one of); add
    /// the migration's own rules and references to them.
    ///
    /// # Errors
    /// No such entity.
    pub fn rules(&self, name: &str) -> etl_core::Result<ItemRules> {
        let e = self.entity(name)?;
        fn strs(v: &[String]) -> Vec<&str> {
            v.iter().map(String::as_str).collect()
        }
        let mut r = ItemRules::new(name)
            .required(&strs(&e.required))
            .numbers(&strs(&e.numbers));
        for (attr, values) in &e.one_of {
            r = r.one_of(attr, &strs(values));
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_expand_and_bad_lines_are_named() {
        let spec: MappingSpec = serde_json::from_value(serde_json::json!({
            "fields": {"Cert": ["Type=tipo", "Number"]},
            "groups": {"KEY": ["PK S", "SK S"]},
            "entities": [
                {"name": "a", "attributes": ["KEY", "N Int", "C maps:Cert", "D dec(7,2) d"]},
                {"name": "b", "attributes": ["X"]},
                {"name": "c", "attributes": ["X float"]},
            ],
        }))
        .unwrap();
        let a = spec.attributes("a").unwrap();
        let names: Vec<&str> = a.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["PK", "SK", "N", "C", "D"]);
        assert_eq!(a[3].attr, Attr::MapList(&["Type", "Number"]));
        assert_eq!(
            (a[4].attr, a[4].column.as_deref()),
            (Attr::Dec(7, 2), Some("d"))
        );
        let err = spec.attributes("b").unwrap_err().to_string();
        assert!(
            err.contains("`X` of `b` is not `Name Type [column]`"),
            "{err}"
        );
        let err = spec.attributes("c").unwrap_err().to_string();
        assert!(err.contains("unknown attribute type `float`"), "{err}");
        assert!(spec.codes("none").is_err() && spec.entity("z").is_err());
    }
}
