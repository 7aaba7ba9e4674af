//! The Arrow <-> PostgreSQL type map, shared by sources and sinks.

use arrow_schema::{DataType, Field, TimeUnit};
use sqlx::PgConnection;

use crate::ident::TableName;
use crate::{Error, Result};

/// A PostgreSQL column type ferry can read and write in binary form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// `numeric` (any precision and scale)
    Numeric,
    /// `text`, `varchar`, `char`, `name`, and enum types (binary form is the label)
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

impl PgType {
    /// The type for a built-in type OID, `None` for types ferry does not handle.
    pub fn from_oid(oid: u32) -> Option<PgType> {
        Some(match oid {
            16 => PgType::Bool,
            17 => PgType::Bytea,
            19 | 25 | 1042 | 1043 => PgType::Text,
            20 => PgType::Int8,
            21 => PgType::Int2,
            23 => PgType::Int4,
            114 => PgType::Json,
            700 => PgType::Float4,
            701 => PgType::Float8,
            1082 => PgType::Date,
            1114 => PgType::Timestamp,
            1184 => PgType::Timestamptz,
            1700 => PgType::Numeric,
            2950 => PgType::Uuid,
            3802 => PgType::Jsonb,
            1009 | 1015 => PgType::TextArray,
            1007 => PgType::Int4Array,
            1016 => PgType::Int8Array,
            _ => return None,
        })
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

    /// The Arrow type a column of this type reads as.
    pub fn arrow_type(self) -> DataType {
        match self {
            PgType::Bool => DataType::Boolean,
            PgType::Int2 => DataType::Int16,
            PgType::Int4 => DataType::Int32,
            PgType::Int8 => DataType::Int64,
            PgType::Float4 => DataType::Float32,
            PgType::Float8 => DataType::Float64,
            PgType::Numeric => DataType::Decimal128(38, 10),
            PgType::Text | PgType::Json | PgType::Jsonb => DataType::Utf8,
            PgType::Uuid => DataType::FixedSizeBinary(16),
            PgType::Date => DataType::Date32,
            PgType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            PgType::Timestamptz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            PgType::Bytea => DataType::Binary,
            PgType::TextArray => DataType::List(std::sync::Arc::new(Field::new(
                "item",
                DataType::Utf8,
                true,
            ))),
            PgType::Int4Array => DataType::List(std::sync::Arc::new(Field::new(
                "item",
                DataType::Int32,
                true,
            ))),
            PgType::Int8Array => DataType::List(std::sync::Arc::new(Field::new(
                "item",
                DataType::Int64,
                true,
            ))),
        }
    }
}

/// A column of an existing table, as the catalog describes it.
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

/// The columns of `table`, in order. Enum and domain types resolve to their base.
///
/// # Errors
/// The table does not exist (the error names it) or the catalog query fails.
pub async fn table_columns(conn: &mut PgConnection, table: &TableName) -> Result<Vec<PgColumn>> {
    let rows: Vec<(String, i32, String, bool, bool, String, i32)> = sqlx::query_as(
        "SELECT a.attname::text, a.atttypid::int4, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                a.atthasdef, t.typtype::text, t.typbasetype::int4
           FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
          WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
          ORDER BY a.attnum",
    )
    .bind(table.sql())
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Err(Error::NoSuchTable(table.to_string()));
    }
    Ok(rows
        .into_iter()
        .map(
            |(name, oid, type_text, not_null, has_default, typtype, base)| {
                let pg_type = match typtype.as_str() {
                    "e" => Some(PgType::Text),
                    "d" => PgType::from_oid(base as u32),
                    _ => PgType::from_oid(oid as u32),
                };
                PgColumn {
                    name,
                    pg_type,
                    type_text,
                    not_null,
                    has_default,
                }
            },
        )
        .collect())
}
