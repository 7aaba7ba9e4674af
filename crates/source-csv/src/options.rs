//! [`CsvOptions`]: how files are read.

use crate::error::{CsvError, Result};

/// How CSV text is read. Build with [`CsvOptions::default`] and the `with_*` methods.
///
/// ```
/// use etl_source_csv::CsvOptions;
/// let opts = CsvOptions::default().with_delimiter(b';').with_empty_is_null(false);
/// assert_eq!(opts.delimiter(), b';');
/// assert_eq!(opts.max_record_bytes(), 1 << 20);
/// assert!(!opts.ignore_extra_columns());
/// ```
///
/// # Encodings
///
/// Input must be UTF-8 (a UTF-8 byte order mark before the header is skipped). Nothing is
/// transcoded: a field of a declared text column that is not valid UTF-8 (Latin-1 `é` is
/// the byte `0xE9`, UTF-16 has NUL bytes everywhere) rejects its record as `invalid_utf8`
/// naming the column and the byte; a header that is not UTF-8 stops the file
/// ([`CsvError::InvalidHeader`]). Convert other encodings first (`iconv -f latin1 -t utf-8`).
/// A NUL byte in a text field rejects its record as `nul_byte` (PostgreSQL `text` cannot
/// hold it).
///
/// # Headers
///
/// Columns are matched to the schema **by name**, exactly (case and spaces count), in any
/// order. Every declared column must be in the header ([`CsvError::MissingColumns`], which
/// shows the header found). A declared name twice in the header is ambiguous and always an
/// error ([`CsvError::DuplicateColumn`], naming both positions). A header column the schema
/// does not declare is an error by default ([`CsvError::ExtraColumns`], listing them):
/// a migration should not drop a column of its input without being told to, and a renamed
/// column shows up as one extra and one missing name in the same message. Set
/// [`with_ignore_extra_columns`](Self::with_ignore_extra_columns) to read such files and
/// skip those columns (the decoder logs them at `warn` level once per file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    delimiter: u8,
    max_record_bytes: usize,
    empty_is_null: bool,
    chunk_size: usize,
    ignore_extra_columns: bool,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            delimiter: b',',
            max_record_bytes: 1 << 20,
            empty_is_null: true,
            chunk_size: 2 << 20,
            ignore_extra_columns: false,
        }
    }
}

impl CsvOptions {
    /// Field delimiter (default `,`).
    pub fn with_delimiter(mut self, delimiter: u8) -> Self {
        self.delimiter = delimiter;
        self
    }

    /// Longest record accepted, in bytes (default 1 MiB); longer ones are rejected as
    /// `record_too_long`. Also bounds how far an unterminated quote is followed.
    pub fn with_max_record_bytes(mut self, bytes: usize) -> Self {
        self.max_record_bytes = bytes;
        self
    }

    /// Whether an empty field in a string column is NULL (default `true`); when `false`
    /// it is the empty string. Typed columns always read an empty field as NULL. Only the
    /// empty field is ever NULL: `"NA"` is a value (Namibia).
    pub fn with_empty_is_null(mut self, yes: bool) -> Self {
        self.empty_is_null = yes;
        self
    }

    /// Bytes read from a file at a time (default 2 MiB).
    pub fn with_chunk_size(mut self, bytes: usize) -> Self {
        self.chunk_size = bytes;
        self
    }

    /// Whether header columns the schema does not declare are skipped (default `false`:
    /// they are an error, [`CsvError::ExtraColumns`]). Duplicate names among the skipped
    /// columns are then allowed too; a duplicate declared name is always an error.
    pub fn with_ignore_extra_columns(mut self, yes: bool) -> Self {
        self.ignore_extra_columns = yes;
        self
    }

    /// Whether undeclared header columns are skipped rather than an error.
    pub fn ignore_extra_columns(&self) -> bool {
        self.ignore_extra_columns
    }

    /// The field delimiter.
    pub fn delimiter(&self) -> u8 {
        self.delimiter
    }

    /// The longest record accepted, in bytes.
    pub fn max_record_bytes(&self) -> usize {
        self.max_record_bytes
    }

    /// Whether an empty field in a string column is NULL.
    pub fn empty_is_null(&self) -> bool {
        self.empty_is_null
    }

    /// Bytes read at a time.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Check the options.
    ///
    /// # Errors
    /// [`CsvError::InvalidOption`] for a delimiter that is a quote, CR or LF, a
    /// `max_record_bytes` of 0 or above 1 GiB, or a chunk size of 0.
    pub fn validate(&self) -> Result<()> {
        if matches!(self.delimiter, b'"' | b'\r' | b'\n') {
            return Err(CsvError::InvalidOption(format!(
                "delimiter {:?} cannot be a quote or a line break",
                self.delimiter as char
            )));
        }
        if self.max_record_bytes == 0 || self.max_record_bytes > 1 << 30 {
            return Err(CsvError::InvalidOption(
                "max_record_bytes must be between 1 and 1 GiB".into(),
            ));
        }
        if self.chunk_size == 0 {
            return Err(CsvError::InvalidOption(
                "chunk_size must be positive".into(),
            ));
        }
        Ok(())
    }
}
