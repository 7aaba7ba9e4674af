//! [`CsvOptions`]: how files are read.

use crate::error::{CsvError, Result};

/// How CSV text is read. Build with [`CsvOptions::default`] and the `with_*` methods.
///
/// ```
/// use etl_source_csv::CsvOptions;
/// let opts = CsvOptions::default().with_delimiter(b';').with_empty_is_null(false);
/// assert_eq!(opts.delimiter(), b';');
/// assert_eq!(opts.max_record_bytes(), 1 << 20);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    delimiter: u8,
    max_record_bytes: usize,
    empty_is_null: bool,
    chunk_size: usize,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            delimiter: b',',
            max_record_bytes: 1 << 20,
            empty_is_null: true,
            chunk_size: 2 << 20,
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
