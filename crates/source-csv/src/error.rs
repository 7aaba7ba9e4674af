//! The error type of this crate.

use arrow_schema::{ArrowError, DataType};
use etl_core::Stage;

/// `Result` with [`CsvError`].
pub type Result<T, E = CsvError> = std::result::Result<T, E>;

/// Everything that stops reading a CSV unit. Bad *records* are never errors: they become
/// [`etl_core::Reject`]s.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CsvError {
    /// Reading a file or listing a directory failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The glob pattern matched no file.
    #[error("no file in {dir} matches {pattern:?}")]
    NoFiles {
        /// The directory searched.
        dir: String,
        /// The file-name pattern.
        pattern: String,
    },
    /// Two input files have the same file name (unit names must be unique).
    #[error("two input files are named {name:?}: unit names must be unique")]
    DuplicateUnit {
        /// The file name.
        name: String,
    },
    /// The unit is not one of this source's files.
    #[error("unknown unit {name:?}")]
    UnknownUnit {
        /// The unit name.
        name: String,
    },
    /// The file has no header line (it is empty).
    #[error("{unit}: no header line (the file is empty)")]
    NoHeader {
        /// The file.
        unit: String,
    },
    /// The header line cannot be read (bad UTF-8, unterminated quote, too long).
    #[error("{unit}: invalid header: {reason}")]
    InvalidHeader {
        /// The file.
        unit: String,
        /// What is wrong.
        reason: String,
    },
    /// Columns of the schema are not in the header.
    #[error("{unit}: missing column(s) {} (the header has {})", .columns.join(", "), names_shown(.header))]
    MissingColumns {
        /// The file.
        unit: String,
        /// Every declared column the header lacks.
        columns: Vec<String>,
        /// The header found, in file order.
        header: Vec<String>,
    },
    /// A declared column's name appears twice in the header (which one holds the data?).
    #[error(
        "{unit}: column {column:?} appears twice in the header, at positions {first} and {second}"
    )]
    DuplicateColumn {
        /// The file.
        unit: String,
        /// The column name.
        column: String,
        /// 1-based position of its first occurrence.
        first: usize,
        /// 1-based position of its second occurrence.
        second: usize,
    },
    /// The header has columns the schema does not declare (and the options do not say to
    /// ignore them: [`CsvOptions::with_ignore_extra_columns`](crate::CsvOptions::with_ignore_extra_columns)).
    #[error(
        "{unit}: column(s) not in the schema: {}; declare them, or set ignore_extra_columns to skip them",
        .columns.iter().map(|(n, p)| format!("{n:?} (position {p})")).collect::<Vec<_>>().join(", ")
    )]
    ExtraColumns {
        /// The file.
        unit: String,
        /// Every undeclared column with its 1-based position.
        columns: Vec<(String, usize)>,
    },
    /// The schema has a column type this source cannot parse.
    #[error("column {column:?}: unsupported data type {data_type}")]
    UnsupportedType {
        /// The column.
        column: String,
        /// Its type.
        data_type: DataType,
    },
    /// An option is invalid (e.g. a quote or newline as delimiter).
    #[error("invalid csv option: {0}")]
    InvalidOption(String),
    /// A record of a reference list read whole ([`crate::read_pairs`]) is bad: a reference
    /// list has no rejects, it is right or the run stops.
    #[error("{unit}:{line}: {reason}")]
    InvalidReference {
        /// File.
        unit: String,
        /// Line of the record.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// Building an Arrow array failed.
    #[error("arrow error: {0}")]
    Arrow(#[from] ArrowError),
}

/// Header names for a message: quoted (so spaces show), at most 40.
fn names_shown(names: &[String]) -> String {
    let mut s = names
        .iter()
        .take(40)
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > 40 {
        s.push_str(&format!(", … ({} columns)", names.len()));
    }
    if names.is_empty() {
        s.push_str("no column");
    }
    s
}

impl From<CsvError> for etl_core::Error {
    fn from(e: CsvError) -> Self {
        match e {
            CsvError::Io { path, source } => etl_core::Error::Io { path, source },
            other => etl_core::Error::component(Stage::Extract, "csv", false, other),
        }
    }
}
