//! SQL identifiers, always quoted: never format a raw name into SQL.
//!
//! ```
//! use etl_postgres::ident::{TableName, quote_ident, quote_literal};
//! assert_eq!(TableName::parse("s.t").sql(), r#""s"."t""#);
//! assert_eq!(quote_ident(r#"my "col""#), r#""my ""col""""#);
//! assert_eq!(quote_literal("it's"), "'it''s'");
//! ```

use std::fmt;

/// Quote an identifier the way PostgreSQL's `quote_ident` does, but always (so case and
/// reserved words are preserved): `my "table"` -> `"my ""table"""`.
pub fn quote_ident(name: &str) -> String {
    let mut s = String::with_capacity(name.len() + 2);
    s.push('"');
    for c in name.chars() {
        if c == '"' {
            s.push('"');
        }
        s.push(c);
    }
    s.push('"');
    s
}

/// Quote a string literal (`'it''s'`), for the rare DDL that cannot take parameters.
pub fn quote_literal(value: &str) -> String {
    let mut s = String::with_capacity(value.len() + 2);
    if value.contains('\\') {
        s.push('E');
    }
    s.push('\'');
    for c in value.chars() {
        match c {
            '\'' => s.push_str("''"),
            '\\' => s.push_str("\\\\"),
            c => s.push(c),
        }
    }
    s.push('\'');
    s
}

/// A table (or other relation) name with an optional schema.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TableName {
    /// Schema; `None` means the search path (usually `public`).
    pub schema: Option<String>,
    /// Relation name.
    pub name: String,
}

impl TableName {
    /// A name in the search path.
    pub fn new(name: impl Into<String>) -> Self {
        TableName {
            schema: None,
            name: name.into(),
        }
    }

    /// A schema-qualified name.
    pub fn qualified(schema: impl Into<String>, name: impl Into<String>) -> Self {
        TableName {
            schema: Some(schema.into()),
            name: name.into(),
        }
    }

    /// Parse `name` or `schema.name` (no quoting syntax; dots split).
    pub fn parse(s: &str) -> Self {
        match s.split_once('.') {
            Some((schema, name)) => TableName::qualified(schema, name),
            None => TableName::new(s),
        }
    }

    /// The same schema, another name.
    pub fn with_name(&self, name: impl Into<String>) -> Self {
        TableName {
            schema: self.schema.clone(),
            name: name.into(),
        }
    }

    /// The same schema, the name with a suffix (`cites_trade_records` + `_staging`).
    /// Names longer than PostgreSQL's 63 bytes are shortened deterministically.
    pub fn suffixed(&self, suffix: &str) -> Self {
        self.with_name(fit_name(&self.name, suffix))
    }

    /// Quoted SQL form: `"schema"."name"` or `"name"`.
    pub fn sql(&self) -> String {
        match &self.schema {
            Some(s) => format!("{}.{}", quote_ident(s), quote_ident(&self.name)),
            None => quote_ident(&self.name),
        }
    }

    /// The schema to use in catalog queries (`public` when unset).
    pub fn schema_or_public(&self) -> &str {
        self.schema.as_deref().unwrap_or("public")
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// `base + suffix`, cut so it fits PostgreSQL's 63-byte identifiers (the base is shortened
/// and a short hash keeps distinct long names distinct).
pub fn fit_name(base: &str, suffix: &str) -> String {
    const MAX: usize = 63;
    if base.len() + suffix.len() <= MAX {
        return format!("{base}{suffix}");
    }
    let hash = base.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let tag = format!("_{:06x}", hash & 0xff_ffff);
    let mut keep = MAX - suffix.len() - tag.len();
    while !base.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{tag}{suffix}", &base[..keep])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_everything() {
        assert_eq!(quote_ident("a"), "\"a\"");
        assert_eq!(
            quote_ident("Robert\"; DROP TABLE x;--"),
            "\"Robert\"\"; DROP TABLE x;--\""
        );
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b"), "E'a\\\\b'");
        assert_eq!(TableName::parse("s.t").sql(), "\"s\".\"t\"");
        assert_eq!(TableName::new("t").suffixed("_old").sql(), "\"t_old\"");
    }

    #[test]
    fn long_names_fit() {
        let long = "x".repeat(70);
        let a = fit_name(&long, "_staging");
        assert!(a.len() <= 63 && a.ends_with("_staging"), "{a}");
        assert_ne!(
            fit_name(&format!("{long}a"), "_s"),
            fit_name(&format!("{long}b"), "_s")
        );
    }
}
