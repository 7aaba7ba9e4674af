//! Declared mappings: per Bubble type, the columns of its target table, each with the field
//! it comes from and a conversion, as data (TOML) instead of code. The `ferry` job file's
//! Bubble sources take the same form; a migration adds only the rules that really are its
//! own (a [`Rule`] per type, run after the declared columns).
//!
//! ```toml
//! # ids: UUIDv5 of "<type>:<_id>" in uuid5(NAMESPACE_URL, id_namespace)
//! id_namespace = "https://example.invalid/my-app"
//!
//! [codes.roles]              # source code (lower case) = target code
//! seeker = "client"
//! coach = "coach"
//!
//! [[types]]                  # parents before children
//! bubble_type = "user"
//! table = "users"
//! columns = [
//!   { name = "id", as = "id" },
//!   { name = "email", from = "email", as = "email" },
//!   { name = "role", from = "type", as = "code", map = "roles" },
//!   { name = "is_active", from = "active", as = "bool", default = "true" },
//!   { name = "created_at", as = "created" },
//!   { name = "updated_at", as = "modified" },
//! ]
//!
//! [[types]]
//! bubble_type = "post"
//! table = "posts"
//! columns = [
//!   { name = "id", as = "id" },
//!   { name = "author_id", from = "author", as = "ref", to = "user" },
//!   { name = "title", from = "title", as = "text", required = true, max_chars = 255 },
//! ]
//! ```
//!
//! * [`MappingFile`]: the id namespace, the code maps, the types in dependency order.
//! * [`TypeMapping`]: a type, its table (none: exported only, its things counted as
//!   filtered) and its [`ColumnMap`]s in table order.
//! * [`ColumnMap`]: one target column: `name`, `from` (the Bubble field: its batch column,
//!   which is also its display key unless `key` says otherwise), `as` (the [`Conversion`])
//!   and the conversion's options (`required`, `default`, `max_chars`, `min`, `max`,
//!   `precision`, `scale`, `map`, `to`, `unique`, `key`, `id_key`). Every option is checked
//!   against the conversion ([`MappingFile::validate`]); errors name the type and the column
//!   ([`MappingError`]).
//!
//! The declared source schema of a type ([`TypeMapping::schema`]) follows from its columns:
//! every `from` field once, in the order of first use, with the kind its conversion reads.
//! A thing is mapped by [`MappingFile::row_map`] into a [`RowMap`]: the Created Date is
//! required (`missing_date`), then every column in order (the first failure rejects the
//! thing, with the field as the column at fault), then the migration's [`Rule`], then the
//! `unique` columns.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use etl_core::{Counts, Fate};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::mapping::{MapState, Row, RowMap, code, email, json_text, max_chars, reject};
use crate::{FieldKind, FieldSpec, KeyMode, TypeSchema, parse_decimal};

/// A declared mapping of Bubble types to the tables of a SQL target (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingFile {
    /// Namespace of the new ids: the id of a thing is UUIDv5 of `"<type>:<_id>"` in
    /// `uuid5(NAMESPACE_URL, id_namespace)`, the same on every run (a URL of the migration's
    /// own, `https://example.invalid/my-app`).
    pub id_namespace: String,
    /// Code maps by name (`[codes.roles]`): source code in lower case -> target code;
    /// columns `as = "code"` name one with `map`.
    #[serde(default)]
    pub codes: BTreeMap<String, BTreeMap<String, String>>,
    /// The types, parents before children (a `ref` may only name a type above it).
    pub types: Vec<TypeMapping>,
}

/// One Bubble type and its target table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeMapping {
    /// The Bubble type as in the Data API's URL (`user`, `coach_profile`).
    pub bubble_type: String,
    /// The target table; none: the type is exported only and its things are counted as
    /// filtered.
    #[serde(default)]
    pub table: Option<String>,
    /// The target columns in table order (the rows carry them in this order).
    #[serde(default)]
    pub columns: Vec<ColumnMap>,
}

/// One target column: where its value comes from and how it is converted.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnMap {
    /// The target column.
    pub name: String,
    /// The Bubble field (batch column) it reads; required by every conversion that reads
    /// a field, refused by the others (`id`, `created`, `modified`, `null`, `custom`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The conversion (`as = "decimal"`).
    #[serde(rename = "as")]
    pub conversion: Conversion,
    /// An empty value rejects the thing (`missing_value`) instead of giving `default` or
    /// NULL. (`email`, `code` and `ref` are always required.)
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// The value (as the target's text) of an empty field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// Longest text in characters; a longer one rejects the thing (`too_long`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_chars: Option<usize>,
    /// Smallest value (`int`, `decimal`; inclusive); a smaller one rejects the thing
    /// (`out_of_range`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<String>,
    /// Largest value (`int`, `decimal`; inclusive); a larger one rejects the thing
    /// (`out_of_range`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<String>,
    /// Total digits of a `decimal` (the declared field's precision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<u8>,
    /// Digits after the point of a `decimal`; more (other than zeros) reject the thing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<i8>,
    /// The code map (a name under `[codes]`) of a `code` column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<String>,
    /// The referenced type of a `ref` column (declared above this one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// At most one thing of the type per value of `from` in a run; a later one is rejected
    /// (`duplicate_<name>`). Checked last, so a rejected thing claims nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unique: bool,
    /// The field's display-name key, when it is not `from` (`Hourly Rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The field's generated-id key, when it is not Bubble's default (`<from>_<suffix>`;
    /// for a `ref`: `<from>_user` or `<from>_custom_<to>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_key: Option<String>,
}

/// How a column's value is made. Every value is text the target casts to the column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Conversion {
    /// The thing's new id ([`MappingFile::new_id`]).
    Id,
    /// The Created Date (`2024-05-01 09:30:00.000`, UTC); a thing without one is rejected.
    Created,
    /// The Modified Date, or the Created Date when it is empty.
    Modified,
    /// Text, trimmed; `required`, `default`, `max_chars`.
    #[default]
    Text,
    /// A file or image URL (Bubble's own `//host/path` gets `https:`); `required`,
    /// `default`, `max_chars`.
    File,
    /// An e-mail address in lower case ([`email`]: `missing_email`, `bad_email`).
    Email,
    /// A code through the code map `map` ([`code`], named after the target column:
    /// `missing_code`, `unknown_<name>`).
    Code,
    /// A 3-letter currency code, upper-cased (`bad_currency`); `default`.
    Currency,
    /// yes/no as `true`/`false`; `required`, `default`.
    Bool,
    /// A whole number; `required`, `default`, `min`, `max`.
    Int,
    /// An exact decimal of `precision` and `scale`, printed with `scale` digits;
    /// `required`, `default`, `min`, `max`.
    Decimal,
    /// A date (`2024-05-01 09:30:00.000`, UTC); `required`.
    Date,
    /// A JSON value, checked (`bad_json`) and kept as its text; `required`, `default`.
    Json,
    /// A list of texts as an array literal (`{"a","b"}`); `required`.
    List,
    /// A reference to a thing of type `to`: that thing's new id; an empty, dangling or
    /// rejected parent rejects the thing ([`MapState::parent`]).
    Ref,
    /// Always NULL (a column no field feeds).
    Null,
    /// Set by the migration's [`Rule`] (NULL unless it sets it).
    Custom,
}

impl Conversion {
    /// The kind of the field the conversion reads; `None`: it reads no field.
    pub fn field_kind(self, precision: u8, scale: i8) -> Option<FieldKind> {
        use Conversion as C;
        Some(match self {
            C::Text | C::File | C::Email | C::Code | C::Currency | C::Ref => FieldKind::Text,
            C::Bool => FieldKind::Bool,
            C::Int => FieldKind::Int,
            C::Decimal => FieldKind::Decimal { precision, scale },
            C::Date => FieldKind::Date,
            C::Json => FieldKind::Json,
            C::List => FieldKind::TextList,
            C::Id | C::Created | C::Modified | C::Null | C::Custom => return None,
        })
    }

    /// The options the conversion takes, besides `name`, `as`, `unique`, `key` and `id_key`.
    fn options(self) -> &'static [&'static str] {
        use Conversion as C;
        match self {
            C::Id | C::Created | C::Modified | C::Null | C::Custom => &[],
            C::Text | C::File => &["from", "required", "default", "max_chars"],
            C::Email => &["from"],
            C::Code => &["from", "map"],
            C::Currency => &["from", "default"],
            C::Bool | C::Json => &["from", "required", "default"],
            C::Int => &["from", "required", "default", "min", "max"],
            C::Decimal => &[
                "from",
                "required",
                "default",
                "min",
                "max",
                "precision",
                "scale",
            ],
            C::Date | C::List => &["from", "required"],
            C::Ref => &["from", "to"],
        }
    }
}

/// An invalid mapping, naming the type and the column at fault when there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mapping{}{}: {message}", .bubble_type.as_ref().map(|t| format!(" of type `{t}`")).unwrap_or_default(), .column.as_ref().map(|c| format!(", column `{c}`")).unwrap_or_default())]
pub struct MappingError {
    /// The type at fault.
    pub bubble_type: Option<String>,
    /// The column at fault.
    pub column: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl MappingError {
    fn new(bubble_type: Option<&str>, column: Option<&str>, message: impl Into<String>) -> Self {
        MappingError {
            bubble_type: bubble_type.map(str::to_owned),
            column: column.map(str::to_owned),
            message: message.into(),
        }
    }
}

/// The migration's own rule for a type, run after the declared columns: it sees the thing
/// and the values made so far, may set `custom` columns, count, or reject the thing.
pub type Rule = dyn Fn(&Row<'_>, &mut Values<'_>, &mut Counts) -> Result<(), Fate> + Send + Sync;

/// The values of one target row, by column name (for a [`Rule`]).
pub struct Values<'a> {
    names: &'a [String],
    values: &'a mut [Option<String>],
}

impl Values<'_> {
    fn at(&self, column: &str) -> usize {
        self.names
            .iter()
            .position(|n| n == column)
            .unwrap_or_else(|| panic!("the mapping has no column `{column}`"))
    }

    /// The value of `column` (`None`: NULL).
    ///
    /// # Panics
    /// The mapping has no column `column` (a mistake of the rule, not of the data).
    pub fn get(&self, column: &str) -> Option<&str> {
        self.values[self.at(column)].as_deref()
    }

    /// Set the value of `column`.
    ///
    /// # Panics
    /// The mapping has no column `column`.
    pub fn set(&mut self, column: &str, value: Option<String>) {
        let i = self.at(column);
        self.values[i] = value;
    }
}

impl MappingFile {
    /// Parse and [`validate`](Self::validate) a mapping in TOML. A field that does not
    /// parse is reported with its type and column.
    ///
    /// # Errors
    /// The text is not TOML, has unknown or mistyped options, or does not validate.
    pub fn from_toml(text: &str) -> Result<Self, MappingError> {
        let file: MappingFile = toml::from_str(text).map_err(|e| {
            locate(text).unwrap_or_else(|| MappingError::new(None, None, e.to_string()))
        })?;
        file.validate()?;
        Ok(file)
    }

    /// Check the mapping: an id namespace; types and columns named once; every option
    /// taken by its conversion and the ones it needs present (`from`, `map` naming a code
    /// map, `to` naming a type above, `precision` and `scale`); bounds and defaults that
    /// parse; one kind per field.
    ///
    /// # Errors
    /// The first problem, naming the type and the column.
    pub fn validate(&self) -> Result<(), MappingError> {
        if self.id_namespace.trim().is_empty() {
            return Err(MappingError::new(None, None, "`id_namespace` is empty"));
        }
        let mut seen = HashSet::new();
        for t in &self.types {
            let ty = Some(t.bubble_type.as_str());
            if !seen.insert(t.bubble_type.as_str()) {
                return Err(MappingError::new(ty, None, "the type is declared twice"));
            }
            if t.table.is_none() && !t.columns.is_empty() {
                return Err(MappingError::new(ty, None, "columns without a `table`"));
            }
            let mut names = HashSet::new();
            let mut kinds: HashMap<&str, FieldKind> = HashMap::new();
            for c in &t.columns {
                let err = |m: String| MappingError::new(ty, Some(&c.name), m);
                if !names.insert(c.name.as_str()) {
                    return Err(err("the column is declared twice".into()));
                }
                self.check_column(c, &seen).map_err(err)?;
                if let (Some(f), Some(k)) = (&c.from, c.field_kind()) {
                    match kinds.insert(f, k) {
                        Some(before) if before != k => {
                            return Err(err(format!(
                                "field `{f}` is read as {before:?} by another column and as {k:?} here"
                            )));
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }

    fn check_column(&self, c: &ColumnMap, above: &HashSet<&str>) -> Result<(), String> {
        let conv = c.conversion;
        let set = [
            ("from", c.from.is_some()),
            ("required", c.required),
            ("default", c.default.is_some()),
            ("max_chars", c.max_chars.is_some()),
            ("min", c.min.is_some()),
            ("max", c.max.is_some()),
            ("precision", c.precision.is_some()),
            ("scale", c.scale.is_some()),
            ("map", c.map.is_some()),
            ("to", c.to.is_some()),
        ];
        let takes = conv.options();
        if let Some((o, _)) = set.iter().find(|(o, on)| *on && !takes.contains(o)) {
            return Err(format!("`{o}` does not apply to as = \"{}\"", conv.name()));
        }
        let needs: &[&str] = match conv {
            Conversion::Code => &["from", "map"],
            Conversion::Ref => &["from", "to"],
            Conversion::Decimal => &["from", "precision", "scale"],
            _ if takes.contains(&"from") => &["from"],
            _ => &[],
        };
        if let Some(o) = needs
            .iter()
            .find(|o| !set.iter().any(|(s, on)| s == *o && *on))
        {
            return Err(format!("as = \"{}\" needs `{o}`", conv.name()));
        }
        if c.unique && c.from.is_none() {
            return Err("`unique` needs `from`".into());
        }
        if let Some(m) = &c.map
            && !self.codes.contains_key(m)
        {
            return Err(format!("no code map `{m}` under [codes]"));
        }
        if let Some(to) = &c.to
            && !above.contains(to.as_str())
        {
            return Err(format!(
                "`to = \"{to}\"` is not a type declared above (parents come first)"
            ));
        }
        for v in [&c.min, &c.max].into_iter().flatten() {
            c.bound(v)?;
        }
        match (conv, c.default.as_deref()) {
            (Conversion::Bool, Some(d)) if d != "true" && d != "false" => {
                Err(format!("default `{d}` is not true or false"))
            }
            (Conversion::Int | Conversion::Decimal, Some(d)) => c.bound(d).map(drop),
            (Conversion::Json, Some(d)) => serde_json::from_str::<serde_json::Value>(d)
                .map(drop)
                .map_err(|e| format!("default `{d}` is not JSON ({e})")),
            _ => Ok(()),
        }
    }

    /// The mapping of `bubble_type`.
    pub fn get(&self, bubble_type: &str) -> Option<&TypeMapping> {
        self.types.iter().find(|t| t.bubble_type == bubble_type)
    }

    /// The new id of a thing, the same on every run (see [`MappingFile::id_namespace`]).
    pub fn new_id(&self, bubble_type: &str, bubble_id: &str) -> Uuid {
        let ns = Uuid::new_v5(&Uuid::NAMESPACE_URL, self.id_namespace.as_bytes());
        Uuid::new_v5(&ns, format!("{bubble_type}:{bubble_id}").as_bytes())
    }

    /// The [`RowMap`] of `spec`'s type: typed things to the text rows of its table through
    /// the declared columns, then `rule` (see the module docs). A type without a table (or
    /// not declared) is exported only: its things are filtered.
    ///
    /// # Panics
    /// The mapping was not validated and a bound or a code map is missing.
    pub fn row_map(
        self: &Arc<Self>,
        spec: Arc<TypeSchema>,
        state: Arc<MapState>,
        rule: Option<Arc<Rule>>,
    ) -> RowMap {
        let ty = spec.bubble_type.clone();
        let Some(t) = self.get(&ty).filter(|t| t.table.is_some()) else {
            return RowMap::new(spec, state, &[], |_, _| unreachable!("nothing is mapped"));
        };
        let names: Vec<String> = t.columns.iter().map(|c| c.name.clone()).collect();
        let cols: Vec<&str> = names.iter().map(String::as_str).collect();
        let m = TypeMap {
            file: self.clone(),
            ty: ty.clone(),
            columns: t.columns.clone(),
            names: names.clone(),
            state: state.clone(),
            rule,
            seen: Mutex::default(),
        };
        RowMap::new(spec, state, &cols, move |row, counts| m.map(row, counts))
    }
}

/// The first column or type of `text` that does not deserialize, with its names.
fn locate(text: &str) -> Option<MappingError> {
    let raw: toml::Table = toml::from_str(text).ok()?;
    for t in raw.get("types")?.as_array()? {
        let ty = t.get("bubble_type").and_then(toml::Value::as_str);
        let cols = t.get("columns").and_then(toml::Value::as_array);
        for (i, c) in cols.into_iter().flatten().enumerate() {
            if let Err(e) = c.clone().try_into::<ColumnMap>() {
                let n = c.get("name").and_then(toml::Value::as_str);
                let n = n.map_or_else(|| format!("#{}", i + 1), str::to_owned);
                return Some(MappingError::new(ty, Some(&n), e.message()));
            }
        }
        if let Err(e) = t.clone().try_into::<TypeMapping>() {
            return Some(MappingError::new(ty, None, e.message()));
        }
    }
    None
}

impl TypeMapping {
    /// The declared schema of the type in `mode`: every `from` field once, in the order
    /// of first use, with the kind its conversion reads and its keys, then `overrides`
    /// (`field -> key` of `mode`, an app whose keys differ) applied.
    pub fn schema(&self, mode: KeyMode, overrides: &HashMap<String, String>) -> TypeSchema {
        let mut s = TypeSchema::new(&self.bubble_type, mode);
        for c in &self.columns {
            let (Some(from), Some(kind)) = (&c.from, c.field_kind()) else {
                continue;
            };
            if s.fields.iter().any(|f| &f.column == from) {
                continue;
            }
            let mut f = FieldSpec::new(from, kind);
            if let Some(to) = c.to.as_deref().filter(|_| c.conversion == Conversion::Ref) {
                f = match to {
                    "user" => f.id_key(&format!("{from}_user")),
                    _ => f.id_key(&format!("{from}_custom_{to}")),
                };
            }
            if let Some(k) = &c.key {
                f = f.key(k);
            }
            if let Some(k) = &c.id_key {
                f = f.id_key(k);
            }
            if let Some(k) = overrides.get(from) {
                match mode {
                    KeyMode::DisplayNames => f.key.clone_from(k),
                    KeyMode::GeneratedIds => f.id_key.clone_from(k),
                }
            }
            s = s.field(f);
        }
        s
    }

    /// The target columns, in order.
    pub fn column_names(&self) -> Vec<&str> {
        self.columns.iter().map(|c| c.name.as_str()).collect()
    }
}

impl Conversion {
    fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// A bound or a value of an `int` or `decimal` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Num {
    Int(i64),
    Dec(i128),
}

impl ColumnMap {
    fn field_kind(&self) -> Option<FieldKind> {
        let (p, s) = (self.precision.unwrap_or(38), self.scale.unwrap_or(0));
        self.conversion.field_kind(p, s)
    }

    fn bound(&self, v: &str) -> Result<Num, String> {
        match self.conversion {
            Conversion::Int => v.trim().parse().map(Num::Int).map_err(|e| e.to_string()),
            Conversion::Decimal => {
                let (p, s) = (self.precision.unwrap_or(38), self.scale.unwrap_or(0));
                parse_decimal(v, p, s).map(Num::Dec)
            }
            _ => Err("`min` and `max` apply to int and decimal".into()),
        }
        .map_err(|e| format!("`{v}` is not a value of the column ({e})"))
    }

    /// The value of the column for `row`, before the rule and the `unique` check.
    fn value(&self, m: &TypeMap, row: &Row<'_>) -> Result<Option<String>, Fate> {
        use Conversion as C;
        let f = self.from.as_deref().unwrap_or_default();
        let v: Option<String> = match self.conversion {
            C::Id => Some(m.file.new_id(&m.ty, row.id()).to_string()),
            C::Created => row.ts(crate::schema::CREATED_COLUMN),
            C::Modified => row
                .ts(crate::schema::MODIFIED_COLUMN)
                .or_else(|| row.ts(crate::schema::CREATED_COLUMN)),
            C::Null | C::Custom => None,
            C::Text => max_chars(row.text(f), self.max_chars.unwrap_or(usize::MAX), f)?,
            C::File => max_chars(
                row.file_url(f).as_deref(),
                self.max_chars.unwrap_or(usize::MAX),
                f,
            )?,
            C::Email => Some(email(row.text(f), f)?),
            C::Code => {
                let map = &m.file.codes[self.map.as_deref().unwrap_or_default()];
                let pairs: Vec<(&str, &str)> =
                    map.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
                Some(code(row.text(f), &self.name, &pairs)?)
            }
            C::Currency => match row.text(f) {
                Some(s) if s.len() == 3 && s.bytes().all(|b| b.is_ascii_alphabetic()) => {
                    Some(s.to_ascii_uppercase())
                }
                Some(s) => {
                    let why = format!("currency `{s}` is not a 3-letter code");
                    return Err(reject(f, "bad_currency", why));
                }
                None => None,
            },
            C::Bool => row.bool(f).map(|b| b.to_string()),
            C::Int => match row.int(f) {
                Some(n) => Some(self.in_range(Num::Int(n), &n.to_string(), f)?),
                None => None,
            },
            C::Decimal => match row.dec(f) {
                Some((n, s)) => {
                    let text = etl_core::batch::format_decimal(n, s);
                    Some(self.in_range(Num::Dec(n), &text, f)?)
                }
                None => None,
            },
            C::Date => row.ts(f),
            C::Json => json_text(row.text(f), f)?,
            C::List => row.list(f),
            C::Ref => {
                let to = self.to.as_deref().unwrap_or_default();
                m.state.parent(to, f, row.text(f))?;
                row.text(f).map(|p| m.file.new_id(to, p).to_string())
            }
        };
        match v {
            None if self.required => Err(reject(f, "missing_value", format!("{f} is empty"))),
            None => Ok(self.default.clone()),
            v => Ok(v),
        }
    }

    fn in_range(&self, n: Num, text: &str, f: &str) -> Result<String, Fate> {
        let bound = |b: &Option<String>| b.as_deref().and_then(|b| self.bound(b).ok());
        let (lo, hi) = (bound(&self.min), bound(&self.max));
        if lo.is_some_and(|lo| n < lo) || hi.is_some_and(|hi| n > hi) {
            let (lo, hi) = (self.min.as_deref(), self.max.as_deref());
            let range = match (lo, hi) {
                (Some(lo), Some(hi)) => format!("outside {lo}-{hi}"),
                (Some(lo), None) => format!("below {lo}"),
                (None, _) => format!("above {}", hi.unwrap_or_default()),
            };
            return Err(reject(f, "out_of_range", format!("{f} {text} is {range}")));
        }
        Ok(text.to_owned())
    }
}

/// The compiled mapping of one type (what [`MappingFile::row_map`] runs per thing).
struct TypeMap {
    file: Arc<MappingFile>,
    ty: String,
    columns: Vec<ColumnMap>,
    names: Vec<String>,
    state: Arc<MapState>,
    rule: Option<Arc<Rule>>,
    seen: Mutex<HashSet<(usize, String)>>,
}

impl TypeMap {
    fn map(&self, row: &Row<'_>, counts: &mut Counts) -> Result<Vec<Option<String>>, Fate> {
        if row.ts(crate::schema::CREATED_COLUMN).is_none() {
            return Err(reject(
                crate::schema::CREATED_COLUMN,
                "missing_date",
                "Created Date is empty",
            ));
        }
        let mut values = Vec::with_capacity(self.columns.len());
        for c in &self.columns {
            values.push(c.value(self, row)?);
        }
        if let Some(rule) = &self.rule {
            let mut v = Values {
                names: &self.names,
                values: &mut values,
            };
            rule(row, &mut v, counts)?;
        }
        let keys: Vec<(usize, &str, String)> = (self.columns.iter().enumerate())
            .filter(|(_, c)| c.unique)
            .filter_map(|(i, c)| {
                let f = c.from.as_deref()?;
                Some((i, f, row.text(f)?.to_owned()))
            })
            .collect();
        let mut seen = self.seen.lock().expect("lock");
        if let Some((i, f, v)) = keys
            .iter()
            .find(|(i, _, v)| seen.contains(&(*i, v.clone())))
        {
            let kind = format!("duplicate_{}", self.columns[*i].name);
            let why = format!("{f} `{v}` already has a {}", self.ty);
            return Err(reject(f, &kind, why));
        }
        seen.extend(keys.into_iter().map(|(i, _, v)| (i, v)));
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::cast::AsArray;
    use arrow_array::{ArrayRef, RecordBatch, StringArray};
    use etl_core::{Batch, Transform};

    use super::*;
    use crate::mapping::RejectLog;

    const FILE: &str = r#"
id_namespace = "https://example.invalid/test"

[codes.roles]
seeker = "client"
coach = "coach"

[[types]]
bubble_type = "user"
table = "users"
columns = [
  { name = "id", as = "id" },
  { name = "email", from = "email", as = "email" },
  { name = "role", from = "type", as = "code", map = "roles" },
  { name = "active", from = "active", as = "bool", default = "true" },
  { name = "note", as = "custom" },
  { name = "created_at", as = "created" },
  { name = "updated_at", as = "modified" },
]

[[types]]
bubble_type = "profile"
table = "profiles"
columns = [
  { name = "id", as = "id" },
  { name = "user_id", from = "user", as = "ref", to = "user", unique = true },
  { name = "rate", from = "rate", as = "decimal", precision = 10, scale = 2, min = "25", max = "500", required = true },
  { name = "rating", from = "rating", as = "decimal", precision = 3, scale = 2, default = "0.00" },
  { name = "photo", from = "photo", as = "file", max_chars = 30, id_key = "photo_image" },
  { name = "currency", from = "currency", as = "currency", default = "USD" },
  { name = "tags", from = "tags", as = "list" },
  { name = "prefs", from = "prefs", as = "json", default = "{}" },
  { name = "sessions", from = "sessions", as = "int", min = "0" },
  { name = "payment_id", as = "null" },
]

[[types]]
bubble_type = "log"
"#;

    fn file() -> Arc<MappingFile> {
        Arc::new(MappingFile::from_toml(FILE).unwrap())
    }

    /// A raw batch of `spec` from rows of (column, value) pairs (`_id` and the dates
    /// included).
    fn raw(spec: &TypeSchema, rows: &[&[(&str, &str)]]) -> Batch {
        let schema = spec.raw_schema();
        let cols: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| {
                let v = rows.iter().map(|r| {
                    let d = "2024-01-01T00:00:00.000Z";
                    let dflt = matches!(f.name().as_str(), "created_date" | "modified_date");
                    let got = r.iter().find(|(k, _)| k == f.name()).map(|(_, v)| *v);
                    got.or(dflt.then_some(d))
                });
                Arc::new(StringArray::from_iter(v)) as ArrayRef
            })
            .collect();
        let data = RecordBatch::try_new(schema, cols).unwrap();
        Batch::new("u".into(), data, (1..=rows.len() as u64).collect())
    }

    fn text(b: &Batch, col: &str, row: usize) -> Option<String> {
        let a = b.data.column_by_name(col).unwrap().as_string::<i32>();
        (!arrow_array::Array::is_null(a, row)).then(|| a.value(row).to_owned())
    }

    #[test]
    fn the_schema_follows_from_the_columns() {
        let f = file();
        let p = f.get("profile").unwrap();
        let s = p.schema(KeyMode::GeneratedIds, &HashMap::new());
        let keys: Vec<(&str, &str)> = s
            .fields
            .iter()
            .map(|f| (f.column.as_str(), f.id_key.as_str()))
            .collect();
        assert_eq!(keys[0], ("user", "user_user"));
        assert_eq!(keys[1], ("rate", "rate_number"));
        assert_eq!(keys[3], ("photo", "photo_image"));
        assert_eq!(s.fields.len(), 8);
        assert_eq!(
            s.fields[1].kind,
            FieldKind::Decimal {
                precision: 10,
                scale: 2
            }
        );
        let o = HashMap::from([("rate".to_owned(), "Hourly Rate".to_owned())]);
        let s = p.schema(KeyMode::DisplayNames, &o);
        assert_eq!(s.fields[1].key, "Hourly Rate");
        assert!(
            f.get("log")
                .unwrap()
                .schema(KeyMode::DisplayNames, &o)
                .fields
                .is_empty()
        );
        assert_eq!(p.column_names()[..2], ["id", "user_id"]);
    }

    #[test]
    fn things_map_through_the_declared_columns_and_the_rule() {
        let f = file();
        let state = Arc::new(MapState::new(RejectLog::discard()));
        let spec = Arc::new(
            f.get("user")
                .unwrap()
                .schema(KeyMode::DisplayNames, &HashMap::new()),
        );
        let rule: Arc<Rule> = Arc::new(|row, v, counts| {
            let e = v.get("email").unwrap().to_owned();
            if e.starts_with("taken") {
                return Err(reject("email", "duplicate_email", "taken"));
            }
            v.set("note", Some(format!("{}:{e}", row.id())));
            *counts.entry("noted".into()).or_default() += 1;
            Ok(())
        });
        let users = f.row_map(spec.clone(), state.clone(), Some(rule));
        let out = users
            .transform(raw(
                &spec,
                &[
                    &[("_id", "u1"), ("email", "A@B.io"), ("type", " Seeker ")],
                    &[("_id", "u2"), ("email", "x@y.io"), ("type", "boss")],
                    &[
                        ("_id", "u3"),
                        ("email", "taken@y.io"),
                        ("type", "coach"),
                        ("active", "no"),
                    ],
                    &[
                        ("_id", "u4"),
                        ("email", "c@d.io"),
                        ("type", "coach"),
                        ("active", "no"),
                    ],
                ],
            ))
            .unwrap();
        assert_eq!(out.num_rows(), 2);
        assert_eq!(
            text(&out, "id", 0),
            Some(f.new_id("user", "u1").to_string())
        );
        assert_eq!(text(&out, "email", 0).as_deref(), Some("a@b.io"));
        assert_eq!(text(&out, "role", 0).as_deref(), Some("client"));
        assert_eq!(text(&out, "active", 0).as_deref(), Some("true"));
        assert_eq!(text(&out, "active", 1).as_deref(), Some("false"));
        assert_eq!(text(&out, "note", 1).as_deref(), Some("u4:c@d.io"));
        assert_eq!(
            text(&out, "updated_at", 0).as_deref(),
            Some("2024-01-01 00:00:00.000")
        );
        let kinds: Vec<&str> = out.rejects.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(kinds, ["unknown_role", "duplicate_email"]);
        assert_eq!(out.counters["noted"], 2);

        let spec = Arc::new(
            f.get("profile")
                .unwrap()
                .schema(KeyMode::DisplayNames, &HashMap::new()),
        );
        let profiles = f.row_map(spec.clone(), state, None);
        let out = profiles
            .transform(raw(
                &spec,
                &[
                    &[
                        ("_id", "p1"),
                        ("user", "u1"),
                        ("rate", "25"),
                        ("photo", "//cdn/a.png"),
                        ("tags", "[\"a\",\"b c\"]"),
                        ("currency", "eur"),
                    ],
                    &[("_id", "p2"), ("user", "u1"), ("rate", "30")],
                    &[("_id", "p3"), ("user", "u4"), ("rate", "500.01")],
                    &[("_id", "p4"), ("user", "u2"), ("rate", "30")],
                    &[("_id", "p5"), ("user", "u9"), ("rate", "30")],
                    &[("_id", "p6"), ("user", "u4")],
                    &[
                        ("_id", "p7"),
                        ("user", "u4"),
                        ("rate", "40"),
                        ("prefs", "{"),
                    ],
                    &[
                        ("_id", "p8"),
                        ("user", "u4"),
                        ("rate", "40"),
                        ("currency", "euro"),
                    ],
                    &[
                        ("_id", "p9"),
                        ("user", "u4"),
                        ("rate", "40"),
                        ("sessions", "-1"),
                    ],
                    &[
                        ("_id", "p10"),
                        ("user", "u4"),
                        ("rate", "40"),
                        ("photo", "https://a.very.long.host/with/a/long/path.png"),
                    ],
                    &[("_id", "p11"), ("user", "u4"), ("rate", "40")],
                ],
            ))
            .unwrap();
        let kinds: Vec<&str> = out.rejects.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "duplicate_user_id",
                "out_of_range",
                "parent_rejected",
                "dangling_reference",
                "missing_value",
                "bad_json",
                "bad_currency",
                "out_of_range",
                "too_long"
            ]
        );
        assert_eq!(out.rejects[1].reason, "rate 500.01 is outside 25-500");
        assert_eq!(out.rejects[0].reason, "user `u1` already has a profile");
        assert_eq!(out.num_rows(), 2);
        assert_eq!(
            text(&out, "user_id", 0),
            Some(f.new_id("user", "u1").to_string())
        );
        assert_eq!(text(&out, "rate", 0).as_deref(), Some("25"));
        assert_eq!(text(&out, "rating", 0).as_deref(), Some("0.00"));
        assert_eq!(text(&out, "photo", 0).as_deref(), Some("https://cdn/a.png"));
        assert_eq!(text(&out, "currency", 0).as_deref(), Some("EUR"));
        assert_eq!(text(&out, "currency", 1).as_deref(), Some("USD"));
        assert_eq!(text(&out, "tags", 0).as_deref(), Some("{\"a\",\"b c\"}"));
        assert_eq!(text(&out, "prefs", 1).as_deref(), Some("{}"));
        assert_eq!(text(&out, "payment_id", 0), None);
    }

    #[test]
    fn a_type_without_a_table_is_filtered() {
        let f = file();
        let spec = Arc::new(TypeSchema::new("log", KeyMode::DisplayNames));
        let m = f.row_map(
            spec.clone(),
            Arc::new(MapState::new(RejectLog::discard())),
            None,
        );
        let out = m.transform(raw(&spec, &[&[("_id", "l1")]])).unwrap();
        assert_eq!((out.num_rows(), out.filtered_total()), (0, 1));
    }

    #[test]
    fn errors_name_the_type_and_the_column() {
        let err = |text: &str| MappingFile::from_toml(text).unwrap_err().to_string();
        let one = |col: &str| {
            format!(
                "id_namespace = \"x\"\n[codes.r]\na = \"b\"\n[[types]]\nbubble_type = \"user\"\ntable = \"users\"\ncolumns = [ {col} ]\n"
            )
        };
        let cases = [
            (
                r#"{ name = "e", from = "e", as = "emial" }"#,
                "column `e`: unknown variant `emial`",
            ),
            (
                r#"{ name = "e", from = "e", as = "email", maxchars = 3 }"#,
                "column `e`: unknown field `maxchars`",
            ),
            (r#"{ name = "e", as = "text" }"#, "needs `from`"),
            (
                r#"{ name = "e", from = "e", as = "bool", max_chars = 3 }"#,
                "`max_chars` does not apply to as = \"bool\"",
            ),
            (
                r#"{ name = "e", from = "e", as = "code", map = "x" }"#,
                "no code map `x`",
            ),
            (
                r#"{ name = "e", from = "e", as = "ref", to = "post" }"#,
                "`to = \"post\"` is not a type declared above",
            ),
            (
                r#"{ name = "e", from = "e", as = "decimal", precision = 3, scale = 2, max = "100" }"#,
                "`100` is not a value of the column",
            ),
            (
                r#"{ name = "e", from = "e", as = "int", default = "x" }"#,
                "`x` is not a value",
            ),
            (
                r#"{ name = "e", from = "e", as = "bool", default = "yes" }"#,
                "default `yes` is not true or false",
            ),
            (
                r#"{ name = "e", from = "e", as = "json", default = "{" }"#,
                "default `{` is not JSON",
            ),
            (
                r#"{ name = "e", as = "id" }, { name = "e", as = "id" }"#,
                "declared twice",
            ),
            (
                r#"{ name = "e", from = "e", as = "text" }, { name = "f", from = "e", as = "int" }"#,
                "column `f`: field `e` is read as Text by another column and as Int here",
            ),
        ];
        for (col, want) in cases {
            let got = err(&one(col));
            assert!(got.starts_with("mapping of type `user`"), "{got}");
            assert!(got.contains(want), "{col}: {got} lacks {want}");
        }
        assert!(err("id_namespace = \"\"\ntypes = []").contains("`id_namespace` is empty"));
        assert!(err("types = [").starts_with("mapping: "));
    }

    #[test]
    fn a_mapping_round_trips_through_serde() {
        let f = file();
        let again: MappingFile =
            serde_json::from_value(serde_json::to_value(&*f).unwrap()).unwrap();
        assert_eq!(*f, again);
        again.validate().unwrap();
    }
}
