//! [`CsvOptions`]: how files are read.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
/// Input is UTF-8 by default (a UTF-8 byte order mark before the header is skipped), read
/// without a copy: a field of a declared text column that is not valid UTF-8 (Latin-1 `é`
/// is the byte `0xE9`, UTF-16 has NUL bytes everywhere) rejects its record as
/// `invalid_utf8` naming the column and the byte; a header that is not UTF-8 stops the file
/// ([`CsvError::InvalidHeader`]). Latin-1 files are read with
/// [`with_encoding(Encoding::Latin1)`](Self::with_encoding), which transcodes as the file
/// is read (only then); convert other encodings first (`iconv -f cp1252 -t utf-8`).
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
///
/// # Dialects
///
/// Besides the delimiter: the quote byte ([`with_quote`](Self::with_quote), `"` by default,
/// or none), an escape byte inside quoted fields ([`with_escape`](Self::with_escape), e.g.
/// `\\`), the [`Encoding`] (UTF-8 or Latin-1), the [`HeaderMode`] and null markers
/// ([`with_null_markers`](Self::with_null_markers)). [`Dialect`] holds the same settings as
/// a serde-deserializable struct for a job file. gzip and zstd files are decompressed
/// transparently by [`CsvSource`](crate::CsvSource) (recognized by their first bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    delimiter: u8,
    max_record_bytes: usize,
    empty_is_null: bool,
    chunk_size: usize,
    ignore_extra_columns: bool,
    quote: Option<u8>,
    escape: Option<u8>,
    encoding: Encoding,
    header: HeaderMode,
    columns: Vec<String>,
    null_markers: Vec<String>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            delimiter: b',',
            max_record_bytes: 1 << 20,
            empty_is_null: true,
            chunk_size: 2 << 20,
            ignore_extra_columns: false,
            quote: Some(b'"'),
            escape: None,
            encoding: Encoding::Utf8,
            header: HeaderMode::Present,
            columns: Vec::new(),
            null_markers: Vec::new(),
        }
    }
}

/// The character encoding of the input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Encoding {
    /// UTF-8 (the default; a UTF-8 byte order mark is skipped). Read as is, no copy.
    #[default]
    #[serde(rename = "utf-8", alias = "utf8", alias = "UTF-8", alias = "UTF8")]
    Utf8,
    /// ISO-8859-1 (Latin-1): every byte is one character; bytes `0x80`–`0xFF` are
    /// transcoded to UTF-8 (two bytes each) as the file is read. Windows-1252 files read as
    /// Latin-1 except for its `0x80`–`0x9F` characters (`€`, curly quotes), which come out
    /// as C1 control characters.
    #[serde(
        rename = "latin-1",
        alias = "latin1",
        alias = "LATIN1",
        alias = "iso-8859-1",
        alias = "ISO-8859-1"
    )]
    Latin1,
}

/// Whether the first line of a file names its columns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeaderMode {
    /// The first line is a header; columns are matched to the schema by name (the default).
    #[default]
    Present,
    /// The first line is a header but is skipped: columns are taken by position, named by
    /// [`CsvOptions::with_columns`] or, when that is empty, by the schema's fields in order.
    /// For headers whose names are not the schema's (`Unit Price` loaded as `unit_price`).
    Skip,
    /// There is no header: the first line is data (line 1), columns are taken by position
    /// as for [`HeaderMode::Skip`].
    Absent,
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

    /// The quote byte (default `Some(b'"')`); `None`: fields are never quoted, a `"` is
    /// text like any other byte.
    pub fn with_quote(mut self, quote: Option<u8>) -> Self {
        self.quote = quote;
        self
    }

    /// An escape byte inside quoted fields (default none: a quote in a quoted field is
    /// doubled, `""`). With `Some(b'\\')`, `\"` is a quote and `\\` a backslash inside
    /// quotes (the byte after the escape is taken literally); doubled quotes still work.
    /// Outside quotes the escape byte is plain text.
    pub fn with_escape(mut self, escape: Option<u8>) -> Self {
        self.escape = escape;
        self
    }

    /// The input's [`Encoding`] (default UTF-8).
    pub fn with_encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// Whether files have a header line ([`HeaderMode`], default `Present`).
    pub fn with_header(mut self, header: HeaderMode) -> Self {
        self.header = header;
        self
    }

    /// The names of the file's columns in file order, for [`HeaderMode::Skip`] and
    /// [`HeaderMode::Absent`] (default empty: the schema's fields in order). Names the
    /// schema does not declare are columns to skip (with
    /// [`with_ignore_extra_columns`](Self::with_ignore_extra_columns)).
    pub fn with_columns<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.columns = columns.into_iter().map(Into::into).collect();
        self
    }

    /// Texts that are NULL in every column (default none), e.g. `NA`, `\\N`, `NULL`. Only
    /// an **unquoted** field matches (as in PostgreSQL's `COPY … CSV`): `"NA"` stays a value
    /// (Namibia) while `NA` is NULL. In a non-nullable column a marker rejects the record as
    /// `missing_value`. The empty field is NULL as before (see
    /// [`with_empty_is_null`](Self::with_empty_is_null)); a `""` marker makes an empty
    /// unquoted text field NULL even when `empty_is_null` is off.
    pub fn with_null_markers<S: Into<String>>(
        mut self,
        markers: impl IntoIterator<Item = S>,
    ) -> Self {
        self.null_markers = markers.into_iter().map(Into::into).collect();
        self
    }

    /// Apply a [`Dialect`] (delimiter, quote, escape, encoding, header, null markers, empty
    /// as NULL).
    ///
    /// # Errors
    /// [`CsvError::InvalidOption`] for a delimiter, quote or escape that is not one ASCII
    /// character.
    pub fn with_dialect(self, dialect: &Dialect) -> Result<Self> {
        let byte = |what: &str, c: char| -> Result<u8> {
            if c.is_ascii() {
                Ok(c as u8)
            } else {
                Err(CsvError::InvalidOption(format!(
                    "{what} {c:?} must be one ASCII character"
                )))
            }
        };
        let opts = self
            .with_delimiter(byte("delimiter", dialect.delimiter)?)
            .with_quote(dialect.quote.map(|c| byte("quote", c)).transpose()?)
            .with_escape(dialect.escape.map(|c| byte("escape", c)).transpose()?)
            .with_encoding(dialect.encoding)
            .with_header(dialect.header)
            .with_null_markers(dialect.null_markers.iter().cloned())
            .with_empty_is_null(dialect.empty_is_null);
        opts.validate()?;
        Ok(opts)
    }

    /// The quote byte, if fields may be quoted.
    pub fn quote(&self) -> Option<u8> {
        self.quote
    }

    /// The escape byte inside quoted fields, if any.
    pub fn escape(&self) -> Option<u8> {
        self.escape
    }

    /// The input's encoding.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Whether files have a header line.
    pub fn header(&self) -> HeaderMode {
        self.header
    }

    /// The file's column names for a skipped or absent header (empty: the schema's).
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The null markers.
    pub fn null_markers(&self) -> &[String] {
        &self.null_markers
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
    /// [`CsvError::InvalidOption`] for a delimiter that is the quote, CR or LF, a quote or
    /// escape that is CR, LF or the delimiter, an escape equal to the quote, a
    /// `max_record_bytes` of 0 or above 1 GiB, or a chunk size of 0.
    pub fn validate(&self) -> Result<()> {
        if matches!(self.delimiter, b'\r' | b'\n') || Some(self.delimiter) == self.quote {
            return Err(CsvError::InvalidOption(format!(
                "delimiter {:?} cannot be the quote or a line break",
                self.delimiter as char
            )));
        }
        for (what, b) in [("quote", self.quote), ("escape", self.escape)] {
            if let Some(b) = b
                && (matches!(b, b'\r' | b'\n' | b'\0' | 0x80..) || b == self.delimiter)
            {
                return Err(CsvError::InvalidOption(format!(
                    "{what} {:?} cannot be a line break, NUL, non-ASCII or the delimiter",
                    char::from(b)
                )));
            }
        }
        if self.escape.is_some() && (self.escape == self.quote || self.quote.is_none()) {
            return Err(CsvError::InvalidOption(
                "escape must differ from the quote, and needs a quote (it applies inside quoted fields)".into(),
            ));
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

/// How the text of a CSV file is written: the part of a job file that describes the files
/// (a serde struct; every field has a default). Apply it with
/// [`CsvOptions::with_dialect`]; [`guess`](crate::guess()) returns one.
///
/// ```
/// use etl_source_csv::{CsvOptions, Dialect, Encoding, HeaderMode};
/// let d: Dialect = toml::from_str(r#"
///     delimiter = ";"
///     encoding = "latin-1"
///     header = "absent"
///     null_markers = ["NA", "\\N"]
/// "#).unwrap();
/// assert_eq!(d.quote, Some('"'));
/// assert_eq!(d.encoding, Encoding::Latin1);
/// let opts = CsvOptions::default().with_dialect(&d).unwrap();
/// assert_eq!(opts.delimiter(), b';');
/// assert_eq!(opts.header(), HeaderMode::Absent);
/// assert_eq!(opts.null_markers(), ["NA", "\\N"]);
/// // No quoting at all: `quote = ""` (or "none").
/// let d: Dialect = toml::from_str("quote = \"\"").unwrap();
/// assert_eq!(d.quote, None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Dialect {
    /// The field delimiter, one ASCII character (default `,`; `\t` for tab-separated).
    pub delimiter: char,
    /// The quote character (default `"`); `""` or `"none"` in a job file: no quoting.
    #[serde(
        serialize_with = "serialize_opt_char",
        deserialize_with = "deserialize_opt_char"
    )]
    pub quote: Option<char>,
    /// The escape character inside quoted fields (default none: quotes are doubled); `\\`
    /// for backslash style (`\"` is a quote).
    #[serde(
        serialize_with = "serialize_opt_char",
        deserialize_with = "deserialize_opt_char"
    )]
    pub escape: Option<char>,
    /// `utf-8` (default) or `latin-1` (also `iso-8859-1`).
    pub encoding: Encoding,
    /// `present` (default: the first line names the columns, matched by name), `skip` (a
    /// header line taken as columns by position) or `absent` (no header line).
    pub header: HeaderMode,
    /// Unquoted texts that are NULL in every column, e.g. `["NA", "\\N", "NULL"]` (default
    /// none; the empty field is always NULL in typed columns).
    pub null_markers: Vec<String>,
    /// Whether an empty field of a text column is NULL (default `true`) rather than `''`.
    pub empty_is_null: bool,
}

impl Default for Dialect {
    fn default() -> Self {
        Dialect {
            delimiter: ',',
            quote: Some('"'),
            escape: None,
            encoding: Encoding::Utf8,
            header: HeaderMode::Present,
            null_markers: Vec::new(),
            empty_is_null: true,
        }
    }
}

fn serialize_opt_char<S: Serializer>(
    c: &Option<char>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match c {
        Some(c) => s.serialize_char(*c),
        None => s.serialize_str(""),
    }
}

fn deserialize_opt_char<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<char>, D::Error> {
    let s = String::deserialize(d)?;
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (None, _) => Ok(None),
        (Some(c), None) => Ok(Some(c)),
        _ if s.eq_ignore_ascii_case("none") => Ok(None),
        _ => Err(serde::de::Error::custom(format!(
            "{s:?}: expected one character, or \"\" / \"none\""
        ))),
    }
}
