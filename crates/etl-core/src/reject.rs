//! Rejected rows: the second output of every stage.

use std::sync::Arc;

/// One input record that could not be loaded, with where it came from and why.
///
/// Every reject names its unit (file, table range, API type), its record number in that
/// unit (for CSV: the 1-based line on which the record starts), the column at fault when
/// there is one, a short `kind` for counting (`bad_integer`, `field_count`, ...), a
/// human-readable `reason`, and the raw text of the record (or as much of it as exists).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Reject {
    /// Unit of work the record belongs to (a file name, an API type, a table).
    pub unit: Arc<str>,
    /// Record number in the unit: the CSV line, the API position, the row key.
    pub record: u64,
    /// Column at fault, if one.
    pub column: Option<String>,
    /// A short stable code to count by, e.g. `bad_integer`.
    pub kind: String,
    /// What is wrong, for a person.
    pub reason: String,
    /// The raw record text (lossy UTF-8), never a secret.
    pub raw: String,
}

impl Reject {
    /// Build a reject.
    pub fn new(
        unit: Arc<str>,
        record: u64,
        column: Option<&str>,
        kind: impl Into<String>,
        reason: impl Into<String>,
        raw: impl Into<String>,
    ) -> Self {
        Reject {
            unit,
            record,
            column: column.map(str::to_owned),
            kind: kind.into(),
            reason: reason.into(),
            raw: raw.into(),
        }
    }
}

/// Write one CSV field, quoting it when needed (RFC 4180).
pub fn write_csv_field(out: &mut String, value: &str) {
    if value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        for c in value.chars() {
            if c == '"' {
                out.push('"');
            }
            out.push(c);
        }
        out.push('"');
    } else {
        out.push_str(value);
    }
}

/// The header of `rejects.csv`.
pub const REJECTS_CSV_HEADER: &str = "unit,record,column,reason,raw\n";

/// Append `reject` as one `rejects.csv` line (`unit,record,column,reason,raw`).
pub fn reject_csv_line(out: &mut String, reject: &Reject) {
    reject_csv_line_guarded(out, reject, false);
}

/// [`reject_csv_line`], with `guard`: a text field a spreadsheet would run as a formula
/// (starting with `=`, `+`, `-`, `@`, a tab or a carriage return) is written with a `'`
/// in front, so it shows as text (OWASP's advice against CSV injection). The raw line is
/// then no longer byte-exact: an option (`--guard-formulas`), off by default.
pub fn reject_csv_line_guarded(out: &mut String, reject: &Reject, guard: bool) {
    let field = |out: &mut String, v: &str| match guard
        && v.starts_with(['=', '+', '-', '@', '\t', '\r'])
    {
        true => write_csv_field(out, &format!("'{v}")),
        false => write_csv_field(out, v),
    };
    field(out, &reject.unit);
    out.push(',');
    out.push_str(&reject.record.to_string());
    out.push(',');
    field(out, reject.column.as_deref().unwrap_or(""));
    out.push(',');
    field(out, &reject.reason);
    out.push(',');
    field(out, &reject.raw);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_guarded_only_when_asked() {
        let r = Reject::new(
            "u.csv".into(),
            3,
            Some("Name"),
            "bad",
            "=HYPERLINK(\"x\")",
            "@SUM(A1),-2",
        );
        let (mut plain, mut guarded) = (String::new(), String::new());
        reject_csv_line(&mut plain, &r);
        reject_csv_line_guarded(&mut guarded, &r, true);
        assert_eq!(
            plain,
            "u.csv,3,Name,\"=HYPERLINK(\"\"x\"\")\",\"@SUM(A1),-2\"\n"
        );
        assert_eq!(
            guarded,
            "u.csv,3,Name,\"'=HYPERLINK(\"\"x\"\")\",\"'@SUM(A1),-2\"\n"
        );
    }

    #[test]
    fn csv_line_quotes_what_needs_it() {
        let r = Reject::new(
            "trade_db_1.csv".into(),
            7,
            Some("Year"),
            "bad_integer",
            "Year is not an integer: \"19x5\"",
            "\"1\",19x5",
        );
        let mut s = String::new();
        reject_csv_line(&mut s, &r);
        assert_eq!(
            s,
            "trade_db_1.csv,7,Year,\"Year is not an integer: \"\"19x5\"\"\",\"\"\"1\"\",19x5\"\n"
        );
    }
}
