//! Type names of the job file <-> Arrow types.

use arrow_schema::{DataType, TimeUnit};

/// The Arrow type of a job file type name: `text` (`string`, `varchar`), `bool`,
/// `int16`/`smallint`, `int32`/`int`/`integer`, `int64`/`bigint`, `float32`/`real`,
/// `float64`/`double`, `decimal(p,s)`/`numeric(p,s)` (`numeric` alone is
/// `decimal(38,10)`), `date`, `timestamp` (no time zone), `timestamptz` (UTC), `uuid`,
/// `json` (text). Case-insensitive.
///
/// # Errors
/// An unknown name, or a precision/scale out of range.
pub fn parse(name: &str) -> anyhow::Result<DataType> {
    let n = name.trim().to_ascii_lowercase();
    let t = match n.as_str() {
        "text" | "string" | "varchar" | "json" | "jsonb" => DataType::Utf8View,
        "bool" | "boolean" => DataType::Boolean,
        "int16" | "smallint" => DataType::Int16,
        "int32" | "int" | "integer" => DataType::Int32,
        "int64" | "bigint" => DataType::Int64,
        "float32" | "real" => DataType::Float32,
        "float64" | "double" | "float" => DataType::Float64,
        "numeric" | "decimal" => DataType::Decimal128(38, 10),
        "date" => DataType::Date32,
        "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "timestamptz" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        "uuid" => DataType::FixedSizeBinary(16),
        _ => {
            let inner = n
                .strip_prefix("decimal(")
                .or_else(|| n.strip_prefix("numeric("))
                .and_then(|r| r.strip_suffix(')'));
            let Some(inner) = inner else {
                anyhow::bail!(
                    "unknown type {name:?}: use text, bool, int16, int32, int64, float64, decimal(p,s), date, timestamp, timestamptz or uuid"
                );
            };
            let (p, s) = inner.split_once(',').unwrap_or((inner, "0"));
            let p: u8 = p.trim().parse()?;
            let s: i8 = s.trim().parse()?;
            if !(1..=38).contains(&p) || s < 0 || s as u8 > p {
                anyhow::bail!("{name}: precision must be 1..=38 and scale 0..=precision");
            }
            DataType::Decimal128(p, s)
        }
    };
    Ok(t)
}

/// The job file name of an Arrow type (the inverse of [`parse`] for the types it makes).
pub fn name(t: &DataType) -> String {
    match t {
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => "text".into(),
        DataType::Boolean => "bool".into(),
        DataType::Int8 | DataType::Int16 => "int16".into(),
        DataType::Int32 | DataType::UInt8 | DataType::UInt16 => "int32".into(),
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "int64".into(),
        DataType::Float16 | DataType::Float32 => "float32".into(),
        DataType::Float64 => "float64".into(),
        DataType::Decimal128(p, s) => format!("decimal({p},{s})"),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Timestamp(_, None) => "timestamp".into(),
        DataType::Timestamp(_, Some(_)) => "timestamptz".into(),
        DataType::FixedSizeBinary(16) => "uuid".into(),
        other => format!("{other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for n in [
            "text",
            "bool",
            "int16",
            "int32",
            "int64",
            "float64",
            "decimal(12,2)",
            "date",
            "timestamp",
            "timestamptz",
            "uuid",
        ] {
            assert_eq!(name(&parse(n).unwrap()), n);
        }
        assert!(parse("decimal(40,2)").is_err());
        assert!(
            parse("blob")
                .unwrap_err()
                .to_string()
                .contains("unknown type")
        );
    }
}
