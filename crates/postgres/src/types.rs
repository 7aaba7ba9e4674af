//! The ONE Arrow <-> PostgreSQL type map, shared by the source and the sink.
//!
//! | PostgreSQL ([`PgType`]) | reads as (Arrow) | written from (Arrow) |
//! | --- | --- | --- |
//! | `boolean` | `Boolean` | `Boolean` |
//! | `smallint`, `integer`, `bigint` | `Int16`, `Int32`, `Int64` | any integer |
//! | `real`, `double precision` | `Float32`, `Float64` | integers, floats, decimals |
//! | `numeric(p, s)` | `Decimal128(p, s)`; unconstrained: `Decimal128(38, default scale)` | integers, floats, decimals, decimal text |
//! | `text`, `varchar`, `char`, `name`, `citext`, enums | `Utf8` | strings, integers |
//! | `json`, `jsonb` | `Utf8` (the JSON text) | strings |
//! | `uuid` | `Utf8` (canonical hyphenated form) | strings, `FixedSizeBinary(16)` |
//! | `date` | `Date32` | `Date32` |
//! | `timestamp` | `Timestamp(µs, None)` | `Timestamp(_, _)` |
//! | `timestamptz` | `Timestamp(µs, "UTC")` | `Timestamp(_, _)` |
//! | `bytea` | `Binary` | binary, `FixedSizeBinary(16)` |
//! | `text[]`, `varchar[]` | `List<Utf8>` | `List<Utf8 \| Utf8View \| LargeUtf8>` |
//! | `integer[]`, `bigint[]` | `List<Int32>`, `List<Int64>` | the same |
//!
//! A type is known by its OID ([`PgType::from_oid`]) or by its name
//! ([`PgType::from_name`]: `pg_type.typname`, sqlx's type names, SQL spellings such as
//! `double precision` or `TEXT[]`). Both look up one table.

use std::sync::Arc;

use arrow_schema::{DataType, Field, TimeUnit};

/// A PostgreSQL column type ferry can read and write in binary form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PgType {
    /// `boolean`
    Bool,
    /// `smallint`
    Int2,
    /// `integer`
    Int4,
    /// `bigint`
    Int8,
    /// `real`
    Float4,
    /// `double precision`
    Float8,
    /// `numeric` (any precision and scale; see [`numeric_precision_scale`])
    Numeric,
    /// `text`, `varchar`, `char`, `name`, `citext`, and enum types (binary form is the label)
    Text,
    /// `json`
    Json,
    /// `jsonb`
    Jsonb,
    /// `uuid`
    Uuid,
    /// `date`
    Date,
    /// `timestamp without time zone`
    Timestamp,
    /// `timestamp with time zone`
    Timestamptz,
    /// `bytea`
    Bytea,
    /// `text[]` / `varchar[]`
    TextArray,
    /// `integer[]`
    Int4Array,
    /// `bigint[]`
    Int8Array,
}

/// OID (0: none fixed, looked up by name only), `pg_type.typname`, type.
const TYPES: &[(u32, &str, PgType)] = &[
    (16, "bool", PgType::Bool),
    (17, "bytea", PgType::Bytea),
    (19, "name", PgType::Text),
    (20, "int8", PgType::Int8),
    (21, "int2", PgType::Int2),
    (23, "int4", PgType::Int4),
    (25, "text", PgType::Text),
    (114, "json", PgType::Json),
    (700, "float4", PgType::Float4),
    (701, "float8", PgType::Float8),
    (1042, "bpchar", PgType::Text),
    (1043, "varchar", PgType::Text),
    (1082, "date", PgType::Date),
    (1114, "timestamp", PgType::Timestamp),
    (1184, "timestamptz", PgType::Timestamptz),
    (1700, "numeric", PgType::Numeric),
    (2950, "uuid", PgType::Uuid),
    (3802, "jsonb", PgType::Jsonb),
    (1007, "_int4", PgType::Int4Array),
    (1009, "_text", PgType::TextArray),
    (1015, "_varchar", PgType::TextArray),
    (1016, "_int8", PgType::Int8Array),
    // No fixed OID (extensions), or read as text but not written by OID.
    (0, "citext", PgType::Text),
    (0, "_bpchar", PgType::TextArray),
    (0, "_name", PgType::TextArray),
    (0, "_citext", PgType::TextArray),
];

/// SQL spellings of built-in type names -> `typname`.
const ALIASES: &[(&str, &str)] = &[
    ("boolean", "bool"),
    ("smallint", "int2"),
    ("integer", "int4"),
    ("int", "int4"),
    ("bigint", "int8"),
    ("real", "float4"),
    ("double precision", "float8"),
    ("decimal", "numeric"),
    ("character varying", "varchar"),
    ("character", "bpchar"),
    ("char", "bpchar"),
    ("timestamp without time zone", "timestamp"),
    ("timestamp with time zone", "timestamptz"),
];

impl PgType {
    /// The type for a built-in type OID, `None` for types ferry does not handle.
    pub fn from_oid(oid: u32) -> Option<PgType> {
        if oid == 0 {
            return None;
        }
        TYPES.iter().find(|(o, _, _)| *o == oid).map(|(_, _, t)| *t)
    }

    /// The type for a type name, any case: a `pg_type.typname` (`int4`, `_text`,
    /// `citext`), a SQL spelling (`integer`, `double precision`) or an array written
    /// `TEXT[]`; `None` for types ferry does not handle.
    ///
    /// ```
    /// use etl_postgres::types::PgType;
    /// assert_eq!(PgType::from_name("INT4"), Some(PgType::Int4));
    /// assert_eq!(PgType::from_name("character varying[]"), Some(PgType::TextArray));
    /// assert_eq!(PgType::from_name("point"), None);
    /// ```
    pub fn from_name(type_name: &str) -> Option<PgType> {
        let name = type_name.trim().to_ascii_lowercase();
        let resolve = |n: &str| -> String {
            ALIASES
                .iter()
                .find(|(alias, _)| *alias == n)
                .map_or_else(|| n.to_owned(), |(_, typname)| (*typname).to_owned())
        };
        let typname = match name.strip_suffix("[]") {
            Some(base) => format!("_{}", resolve(base.trim_end())),
            None => resolve(&name),
        };
        TYPES
            .iter()
            .find(|(_, n, _)| *n == typname)
            .map(|(_, _, t)| *t)
    }

    /// The SQL name used in DDL.
    pub fn sql_name(self) -> &'static str {
        match self {
            PgType::Bool => "boolean",
            PgType::Int2 => "smallint",
            PgType::Int4 => "integer",
            PgType::Int8 => "bigint",
            PgType::Float4 => "real",
            PgType::Float8 => "double precision",
            PgType::Numeric => "numeric",
            PgType::Text => "text",
            PgType::Json => "json",
            PgType::Jsonb => "jsonb",
            PgType::Uuid => "uuid",
            PgType::Date => "date",
            PgType::Timestamp => "timestamp",
            PgType::Timestamptz => "timestamptz",
            PgType::Bytea => "bytea",
            PgType::TextArray => "text[]",
            PgType::Int4Array => "integer[]",
            PgType::Int8Array => "bigint[]",
        }
    }

    /// The natural PostgreSQL type for an Arrow type (for `CREATE TABLE` from a schema).
    pub fn for_arrow(dt: &DataType) -> Option<PgType> {
        Some(match dt {
            DataType::Boolean => PgType::Bool,
            DataType::Int8 | DataType::Int16 | DataType::UInt8 => PgType::Int2,
            DataType::Int32 | DataType::UInt16 => PgType::Int4,
            DataType::Int64 | DataType::UInt32 => PgType::Int8,
            DataType::UInt64 | DataType::Decimal128(_, _) | DataType::Decimal256(_, _) => {
                PgType::Numeric
            }
            DataType::Float16 | DataType::Float32 => PgType::Float4,
            DataType::Float64 => PgType::Float8,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => PgType::Text,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => PgType::Bytea,
            DataType::FixedSizeBinary(16) => PgType::Uuid,
            DataType::Date32 => PgType::Date,
            DataType::Timestamp(_, None) => PgType::Timestamp,
            DataType::Timestamp(_, Some(_)) => PgType::Timestamptz,
            DataType::List(f) | DataType::LargeList(f) => match f.data_type() {
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => PgType::TextArray,
                DataType::Int32 => PgType::Int4Array,
                DataType::Int64 => PgType::Int8Array,
                _ => return None,
            },
            _ => return None,
        })
    }

    /// The Arrow type a column of this type reads as; unconstrained `numeric` as
    /// `Decimal128(38, 10)` (see [`PgType::arrow_type_for`] for a column's own precision
    /// and scale).
    pub fn arrow_type(self) -> DataType {
        self.arrow_type_for(-1, 10)
    }

    /// The Arrow type a column of this type and type modifier (`atttypmod`, -1 when
    /// unknown) reads as: `numeric(p, s)` as `Decimal128(p, s)` (precision capped at 38),
    /// unconstrained `numeric` as `Decimal128(38, default_scale)`.
    ///
    /// ```
    /// use arrow_schema::DataType;
    /// use etl_postgres::types::PgType;
    /// let numeric_12_2 = ((12 << 16) | 2) + 4;
    /// assert_eq!(PgType::Numeric.arrow_type_for(numeric_12_2, 6), DataType::Decimal128(12, 2));
    /// assert_eq!(PgType::Numeric.arrow_type_for(-1, 6), DataType::Decimal128(38, 6));
    /// ```
    pub fn arrow_type_for(self, typmod: i32, default_scale: i8) -> DataType {
        let list = |dt| DataType::List(Arc::new(Field::new_list_field(dt, true)));
        match self {
            PgType::Bool => DataType::Boolean,
            PgType::Int2 => DataType::Int16,
            PgType::Int4 => DataType::Int32,
            PgType::Int8 => DataType::Int64,
            PgType::Float4 => DataType::Float32,
            PgType::Float8 => DataType::Float64,
            PgType::Numeric => {
                let (p, s) = numeric_precision_scale(typmod).unwrap_or((38, default_scale));
                DataType::Decimal128(p, s)
            }
            PgType::Text | PgType::Json | PgType::Jsonb | PgType::Uuid => DataType::Utf8,
            PgType::Date => DataType::Date32,
            PgType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            PgType::Timestamptz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            PgType::Bytea => DataType::Binary,
            PgType::TextArray => list(DataType::Utf8),
            PgType::Int4Array => list(DataType::Int32),
            PgType::Int8Array => list(DataType::Int64),
        }
    }

    /// Whether the type is an integer (a key that can split into integer ranges).
    pub fn is_integer(self) -> bool {
        matches!(self, PgType::Int2 | PgType::Int4 | PgType::Int8)
    }
}

/// `(precision, scale)` of a `numeric(p, s)` type modifier (precision clamped to 1..=38,
/// Decimal128's range); `None` for unconstrained `numeric` (typmod -1).
pub fn numeric_precision_scale(typmod: i32) -> Option<(u8, i8)> {
    if typmod < 4 {
        return None;
    }
    let m = typmod - 4;
    let precision = ((m >> 16) & 0xffff) as u8;
    let scale = (m & 0xffff) as i16 as i8;
    Some((precision.clamp(1, 38), scale))
}

/// A column of an existing table, as the sink sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgColumn {
    /// Column name.
    pub name: String,
    /// The type ferry encodes for; `None` if ferry does not handle it.
    pub pg_type: Option<PgType>,
    /// `format_type()` text, for messages (`numeric(10,2)`).
    pub type_text: String,
    /// `NOT NULL`.
    pub not_null: bool,
    /// Has a default (so it may be left out of a COPY).
    pub has_default: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_map_by_name_and_typmod() {
        // numeric(12,2): typmod = ((12 << 16) | 2) + 4
        let typmod = ((12 << 16) | 2) + 4;
        assert_eq!(numeric_precision_scale(typmod), Some((12, 2)));
        assert_eq!(
            PgType::from_name("NUMERIC").map(|t| t.arrow_type_for(-1, 4)),
            Some(DataType::Decimal128(38, 4))
        );
        assert_eq!(PgType::from_name("TEXT[]"), Some(PgType::TextArray));
        assert_eq!(PgType::from_name("_varchar"), Some(PgType::TextArray));
        assert_eq!(PgType::from_name("jsonb"), Some(PgType::Jsonb));
        assert_eq!(PgType::from_name("double precision"), Some(PgType::Float8));
        assert_eq!(PgType::from_name("citext"), Some(PgType::Text));
        assert_eq!(PgType::from_name("point"), None);
    }

    #[test]
    fn oids_and_names_agree() {
        for (oid, name, t) in TYPES {
            assert_eq!(PgType::from_name(name), Some(*t), "{name}");
            if *oid != 0 {
                assert_eq!(PgType::from_oid(*oid), Some(*t), "{oid}");
            }
        }
        assert_eq!(PgType::from_oid(0), None);
        assert_eq!(PgType::from_oid(600), None);
        // A type's natural Arrow type maps back to it where the write map is one to one.
        for t in [
            PgType::Bool,
            PgType::Int8,
            PgType::Float8,
            PgType::Date,
            PgType::TextArray,
        ] {
            assert_eq!(PgType::for_arrow(&t.arrow_type()), Some(t));
        }
    }
}
