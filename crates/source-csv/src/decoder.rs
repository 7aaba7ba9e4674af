//! The push decoder: CSV bytes in, typed [`Batch`]es with [`Reject`]s out. No I/O.

use std::sync::Arc;

use arrow_array::{RecordBatch, RecordBatchOptions};
use arrow_buffer::Buffer;
use arrow_schema::{Schema, SchemaRef};
use etl_core::{Batch, Reject};
use memchr::memchr;

use crate::columns::{Column, ValueError, ViewSource, shown};
use crate::error::{CsvError, Result};
use crate::options::{CsvOptions, HeaderMode};

/// Raw text kept in a reject of an over-long record.
const MAX_RAW: usize = 1024;
/// The reason of a `nul_byte` reject (after the column name).
const NUL_REASON: &str = "NUL byte (0x00) in text: PostgreSQL text cannot hold it";

/// Raw bytes a batch may hold before the next record: with at most `max_record_bytes`
/// more, a batch's raw bytes (and so the text of any one column, `Utf8` offsets are `i32`,
/// and every view offset, `u32`) stay below `i32::MAX`. One comparison per record.
fn data_limit(max_record_bytes: usize) -> usize {
    (i32::MAX as usize).saturating_sub(max_record_bytes + 2)
}

/// The bytes that structure records: delimiter, quote and escape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Syntax {
    pub(crate) delim: u8,
    pub(crate) quote: Option<u8>,
    pub(crate) escape: Option<u8>,
}

impl Syntax {
    pub(crate) fn of(options: &CsvOptions) -> Self {
        Syntax {
            delim: options.delimiter(),
            quote: options.quote(),
            escape: options.escape(),
        }
    }
}

/// What [`split`] needs of a dialect. [`Standard`] makes the quote a constant, so that the
/// default dialect (`"` quotes, doubled inside) compiles to the same code as before
/// dialects existed; [`Syntax`] serves the others.
pub(crate) trait Dialectal: Copy {
    fn delim(self) -> u8;
    fn quote(self) -> Option<u8>;
    fn escape(self) -> Option<u8>;
}

impl Dialectal for Syntax {
    #[inline(always)]
    fn delim(self) -> u8 {
        self.delim
    }
    #[inline(always)]
    fn quote(self) -> Option<u8> {
        self.quote
    }
    #[inline(always)]
    fn escape(self) -> Option<u8> {
        self.escape
    }
}

/// The default dialect with its delimiter: `"` quotes, no escape byte.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Standard(u8);

impl Dialectal for Standard {
    #[inline(always)]
    fn delim(self) -> u8 {
        self.0
    }
    #[inline(always)]
    fn quote(self) -> Option<u8> {
        Some(b'"')
    }
    #[inline(always)]
    fn escape(self) -> Option<u8> {
        None
    }
}

/// Where one field lies in the input.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FieldPos {
    /// Start of the value (after the opening quote), or of the raw quoted text if `escaped`.
    pub(crate) start: usize,
    /// End of the value (before the closing quote), or of the raw text if `escaped`.
    pub(crate) end: usize,
    /// The raw text must be unescaped (`""` inside, or text after the closing quote).
    pub(crate) escaped: bool,
    /// The field was quoted (null markers match unquoted fields only).
    pub(crate) quoted: bool,
}

/// Position of the first `a` or `b` in `hay`.
///
/// Fields are short, so an inlined 16-byte SSE2 scan beats a call into `memchr2` (whose
/// dispatch and set-up cost more than the scan of a typical 10-byte field).
#[inline(always)]
fn find2(a: u8, b: u8, hay: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        let mut i = 0;
        // SAFETY: SSE2 is part of the x86_64 baseline; every load reads 16 bytes inside
        // `hay` (`i + 16 <= hay.len()`), unaligned loads are allowed.
        unsafe {
            let va = _mm_set1_epi8(a as i8);
            let vb = _mm_set1_epi8(b as i8);
            while i + 16 <= hay.len() {
                let v = _mm_loadu_si128(hay.as_ptr().add(i) as *const __m128i);
                let m =
                    _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, va), _mm_cmpeq_epi8(v, vb)));
                if m != 0 {
                    return Some(i + m.trailing_zeros() as usize);
                }
                i += 16;
            }
        }
        hay[i..]
            .iter()
            .position(|&c| c == a || c == b)
            .map(|k| i + k)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        memchr::memchr2(a, b, hay)
    }
}

/// What the splitter found at a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Split {
    /// A record: text up to `end` (without terminator); the next record starts at `next`.
    Record {
        end: usize,
        next: usize,
        newlines: u32,
        spanned: bool,
    },
    /// An empty line; the next record starts at `next`.
    Blank { next: usize },
    /// The input ends inside the record; `spanned` if a quoted field already crossed a line.
    Incomplete { spanned: bool },
    /// A quoted field crossed a line and the record went wrong: reject the first line.
    StrayQuote,
}

/// Split one record starting at `start` into `fields`.
///
/// `expect` is the expected field count: once a record that crossed a line inside quotes
/// has more fields than that, it is a stray quote (no need to read further).
#[inline]
pub(crate) fn split(
    fields: &mut Vec<FieldPos>,
    syn: impl Dialectal,
    expect: usize,
    buf: &[u8],
    start: usize,
    eof: bool,
) -> Split {
    let n = buf.len();
    let delim = syn.delim();
    fields.clear();
    match buf.get(start) {
        Some(b'\n') => return Split::Blank { next: start + 1 },
        Some(b'\r') => match buf.get(start + 1) {
            Some(b'\n') => return Split::Blank { next: start + 2 },
            None if eof => return Split::Blank { next: start + 1 },
            None => return Split::Incomplete { spanned: false },
            _ => {}
        },
        _ => {}
    }
    let mut i = start;
    let mut newlines = 0u32;
    let mut spanned = false;
    loop {
        // At the start of a field.
        if let Some(quote) = syn.quote()
            && i < n
            && buf[i] == quote
        {
            let open = i;
            let mut j = i + 1;
            let mut escaped = false;
            let close = loop {
                let found = match syn.escape() {
                    None => find2(quote, b'\n', &buf[j..]),
                    Some(e) => memchr::memchr3(quote, b'\n', e, &buf[j..]),
                };
                match found {
                    None => {
                        return if eof && spanned {
                            Split::StrayQuote
                        } else if eof {
                            // Opened on the last line and never closed: that line is bad.
                            Split::StrayQuote
                        } else {
                            Split::Incomplete { spanned }
                        };
                    }
                    Some(k) => {
                        let q = j + k;
                        if buf[q] == b'\n' {
                            newlines += 1;
                            spanned = true;
                            j = q + 1;
                            continue;
                        }
                        if syn.escape().is_some() && Some(buf[q]) == syn.escape() {
                            // The byte after the escape is literal (a line end counts).
                            escaped = true;
                            match buf.get(q + 1) {
                                Some(b'\n') => {
                                    newlines += 1;
                                    spanned = true;
                                }
                                Some(_) => {}
                                None if eof => return Split::StrayQuote,
                                None => return Split::Incomplete { spanned },
                            }
                            j = q + 2;
                            continue;
                        }
                        if q + 1 < n {
                            if buf[q + 1] == quote {
                                escaped = true;
                                j = q + 2;
                                continue;
                            }
                            break q;
                        } else if eof {
                            break q;
                        } else {
                            return Split::Incomplete { spanned };
                        }
                    }
                }
            };
            let mut k = close + 1;
            // What follows the closing quote: a delimiter, a line end, the end, or junk.
            let junk = if k < n {
                let c = buf[k];
                if c == delim || c == b'\n' {
                    false
                } else if c == b'\r' {
                    match buf.get(k + 1) {
                        Some(b'\n') => false,
                        Some(_) => true,
                        None if eof => false,
                        None => return Split::Incomplete { spanned },
                    }
                } else {
                    true
                }
            } else {
                false
            };
            if junk {
                if spanned {
                    // Text after a closing quote once a quote crossed a line: the quotes
                    // are out of step (a stray quote earlier on the first line).
                    return Split::StrayQuote;
                }
                escaped = true;
                match find2(delim, b'\n', &buf[k..]) {
                    Some(x) => k += x,
                    None if eof => k = n,
                    None => return Split::Incomplete { spanned },
                }
            }
            if escaped {
                let mut end = k;
                if (k == n || buf[k] == b'\n') && buf[end - 1] == b'\r' && end - 1 > close {
                    end -= 1;
                }
                fields.push(FieldPos {
                    start: open,
                    end,
                    escaped: true,
                    quoted: true,
                });
            } else {
                fields.push(FieldPos {
                    start: open + 1,
                    end: close,
                    escaped: false,
                    quoted: true,
                });
            }
            i = k;
        } else {
            let fs = i;
            let e = match find2(delim, b'\n', &buf[i..]) {
                Some(x) => i + x,
                None if eof => n,
                None => return Split::Incomplete { spanned },
            };
            let mut fe = e;
            if (e == n || buf[e] == b'\n') && fe > fs && buf[fe - 1] == b'\r' {
                fe -= 1;
            }
            fields.push(FieldPos {
                start: fs,
                end: fe,
                escaped: false,
                quoted: false,
            });
            i = e;
        }
        // After a field: delimiter, line end or end of input.
        if i == n {
            let end = if n > start && buf[n - 1] == b'\r' {
                n - 1
            } else {
                n
            };
            return Split::Record {
                end,
                next: n,
                newlines,
                spanned,
            };
        }
        let c = buf[i];
        if c == delim {
            i += 1;
            if spanned && fields.len() > expect {
                return Split::StrayQuote;
            }
            continue;
        }
        // `\n`, or `\r\n` after a quoted field.
        let nl = if c == b'\r' { i + 1 } else { i };
        let end = if nl > start && buf[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        return Split::Record {
            end,
            next: (nl + 1).min(n),
            newlines,
            spanned,
        };
    }
}

/// Unescape the raw text of a quoted field (`"a""b"c` -> `a"bc`, with an escape `\\`
/// also `"a\"b"` -> `a"b`) into `out`.
pub(crate) fn unescape_into(raw: &[u8], syn: Syntax, out: &mut Vec<u8>) {
    let Some(quote) = syn.quote else {
        out.extend_from_slice(raw);
        return;
    };
    debug_assert_eq!(raw.first(), Some(&quote));
    let mut i = 1;
    while i < raw.len() {
        let found = match syn.escape {
            None => memchr(quote, &raw[i..]),
            Some(e) => memchr::memchr2(quote, e, &raw[i..]),
        };
        match found {
            None => {
                out.extend_from_slice(&raw[i..]);
                return;
            }
            Some(k) => {
                out.extend_from_slice(&raw[i..i + k]);
                let q = i + k;
                if raw[q] != quote {
                    // The escape: the next byte is literal.
                    if let Some(&c) = raw.get(q + 1) {
                        out.push(c);
                    }
                    i = q + 2;
                    continue;
                }
                if raw.get(q + 1) == Some(&quote) {
                    out.push(quote);
                    i = q + 2;
                } else {
                    // Closing quote: whatever follows is taken literally.
                    out.extend_from_slice(&raw[q + 1..]);
                    return;
                }
            }
        }
    }
}

/// The header line of a file: column names, and how many bytes and lines it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Column names, in file order.
    pub names: Vec<String>,
    /// Bytes of the header, including a UTF-8 BOM, blank lines before it and its line end.
    pub len: usize,
    /// Line number of the first line after the header (2 for a one-line header).
    pub next_line: u64,
}

impl Header {
    /// Parse the header at the start of `buf` (a UTF-8 BOM and blank lines before it are
    /// skipped). `Ok(None)` when `buf` does not hold the whole header yet and `eof` is false.
    ///
    /// # Errors
    /// [`CsvError::NoHeader`] for an empty input, [`CsvError::InvalidHeader`] for a header
    /// that is not UTF-8, has an unterminated quote, is longer than `max_record_bytes` or
    /// holds a carriage return in a name (CR-only line ends).
    ///
    /// # Examples
    /// ```
    /// use etl_source_csv::{CsvOptions, Header};
    /// let h = Header::parse("a.csv", b"\xEF\xBB\xBFId,\"Year\"\r\n1,2\r\n", &CsvOptions::default(), false)
    ///     .unwrap()
    ///     .unwrap();
    /// assert_eq!(h.names, ["Id", "Year"]);
    /// assert_eq!((h.len, h.next_line), (14, 2));
    /// ```
    pub fn parse(
        unit: &str,
        buf: &[u8],
        options: &CsvOptions,
        eof: bool,
    ) -> Result<Option<Header>> {
        let invalid = |reason: &str| CsvError::InvalidHeader {
            unit: unit.to_owned(),
            reason: reason.to_owned(),
        };
        not_utf16(unit, buf)?;
        let mut pos = if buf.starts_with(b"\xEF\xBB\xBF") {
            3
        } else if !eof && b"\xEF\xBB\xBF".starts_with(buf) {
            return Ok(None);
        } else {
            0
        };
        let mut line = 1u64;
        let mut fields = Vec::new();
        loop {
            if pos >= buf.len() && eof {
                return Err(CsvError::NoHeader {
                    unit: unit.to_owned(),
                });
            }
            match split(&mut fields, Syntax::of(options), usize::MAX, buf, pos, eof) {
                Split::Blank { next } => {
                    pos = next;
                    line += 1;
                }
                // The same verdict whether the header arrives whole or in pieces: longer
                // than the limit once `max_record_bytes + 2` bytes (room for a CRLF) hold
                // no whole header.
                Split::Incomplete { .. } => {
                    if buf.len() - pos > options.max_record_bytes() + 1 {
                        return Err(invalid("longer than max_record_bytes"));
                    }
                    return Ok(None);
                }
                Split::StrayQuote => return Err(invalid("unterminated quoted field")),
                Split::Record { end, .. } if end - pos > options.max_record_bytes() => {
                    return Err(invalid("longer than max_record_bytes"));
                }
                Split::Record { next, newlines, .. } => {
                    let mut names = Vec::with_capacity(fields.len());
                    let mut scratch = Vec::new();
                    for f in &fields {
                        let bytes = if f.escaped {
                            scratch.clear();
                            unescape_into(&buf[f.start..f.end], Syntax::of(options), &mut scratch);
                            &scratch[..]
                        } else {
                            &buf[f.start..f.end]
                        };
                        let name = std::str::from_utf8(bytes).map_err(|_| {
                            invalid("column names are not valid UTF-8 (convert the file to UTF-8)")
                        })?;
                        if name.contains('\r') {
                            return Err(invalid(
                                "a column name holds a carriage return: line ends are CR only (classic Mac OS), which is not supported; convert them to LF or CRLF",
                            ));
                        }
                        names.push(name.to_owned());
                    }
                    return Ok(Some(Header {
                        names,
                        len: next,
                        next_line: line + 1 + newlines as u64,
                    }));
                }
            }
        }
    }
}

impl Header {
    /// The header of a file read with `options`, whatever its [`HeaderMode`]:
    /// [`Header::parse`] for `Present`; for `Skip` the first line is parsed and skipped and
    /// the names are the column list ([`CsvOptions::with_columns`], or else the schema's
    /// fields in order); for `Absent` nothing but a UTF-8 byte order mark is consumed, the
    /// names are those of `Skip` and the data starts on line 1. `Ok(None)` as for
    /// [`Header::parse`].
    ///
    /// # Errors
    /// As [`Header::parse`]; for `Skip` also [`CsvError::InvalidHeader`] when the header
    /// line has another number of columns than the column list.
    ///
    /// # Examples
    /// ```
    /// use arrow_schema::{DataType, Field, Schema};
    /// use etl_source_csv::{CsvOptions, Header, HeaderMode};
    /// let schema = Schema::new(vec![Field::new("id", DataType::Int64, false)]);
    /// let opts = CsvOptions::default().with_header(HeaderMode::Absent);
    /// let h = Header::read("a.csv", b"7\n8\n", &opts, &schema, true).unwrap().unwrap();
    /// assert_eq!((h.names.as_slice(), h.len, h.next_line), (&["id".to_string()][..], 0, 1));
    /// ```
    pub fn read(
        unit: &str,
        buf: &[u8],
        options: &CsvOptions,
        schema: &Schema,
        eof: bool,
    ) -> Result<Option<Header>> {
        let names = || -> Vec<String> {
            if options.columns().is_empty() {
                schema.fields().iter().map(|f| f.name().clone()).collect()
            } else {
                options.columns().to_vec()
            }
        };
        match options.header() {
            HeaderMode::Present => Header::parse(unit, buf, options, eof),
            HeaderMode::Skip => {
                let Some(h) = Header::parse(unit, buf, options, eof)? else {
                    return Ok(None);
                };
                let names = names();
                if h.names.len() != names.len() {
                    return Err(CsvError::InvalidHeader {
                        unit: unit.to_owned(),
                        reason: format!(
                            "the header line has {} columns, the column list {} ({})",
                            h.names.len(),
                            names.len(),
                            names.join(", ")
                        ),
                    });
                }
                Ok(Some(Header { names, ..h }))
            }
            HeaderMode::Absent => {
                const BOM: &[u8] = b"\xEF\xBB\xBF";
                not_utf16(unit, buf)?;
                let len = if buf.starts_with(BOM) {
                    BOM.len()
                } else if !eof && BOM.starts_with(buf) {
                    return Ok(None);
                } else {
                    0
                };
                Ok(Some(Header {
                    names: names(),
                    len,
                    next_line: 1,
                }))
            }
        }
    }
}

/// [`CsvError::InvalidHeader`] if `buf` starts with a UTF-16 byte order mark.
fn not_utf16(unit: &str, buf: &[u8]) -> Result<()> {
    if buf.starts_with(b"\xFF\xFE") || buf.starts_with(b"\xFE\xFF") {
        return Err(CsvError::InvalidHeader {
            unit: unit.to_owned(),
            reason:
                "the file is UTF-16 (it starts with a UTF-16 byte order mark); convert it to UTF-8"
                    .into(),
        });
    }
    Ok(())
}

/// Builds a [`Decoder`]: the schema, the unit name for rejects, options, batch size.
#[derive(Debug, Clone)]
pub struct DecoderBuilder {
    schema: SchemaRef,
    unit: Arc<str>,
    options: CsvOptions,
    batch_size: usize,
    first_line: u64,
}

impl DecoderBuilder {
    /// The unit (file) name put in rejects and errors (default empty).
    pub fn unit(mut self, unit: impl Into<Arc<str>>) -> Self {
        self.unit = unit.into();
        self
    }

    /// Reading options (delimiter, `max_record_bytes`, empty as NULL).
    pub fn options(mut self, options: CsvOptions) -> Self {
        self.options = options;
        self
    }

    /// Records (rows + rejects) per batch (default 65 536).
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Line number of the first byte given to `decode` (default 2: after a one-line header).
    pub fn first_line(mut self, line: u64) -> Self {
        self.first_line = line;
        self
    }

    /// Match the schema's columns with the file's `header` by name and build the decoder.
    ///
    /// Header columns may come in any order. See [`CsvOptions`] (Headers) for the rules.
    ///
    /// # Errors
    /// [`CsvError::DuplicateColumn`] for a declared name found twice,
    /// [`CsvError::MissingColumns`] naming every declared column the header lacks (and the
    /// header), [`CsvError::ExtraColumns`] listing undeclared header columns unless
    /// [`CsvOptions::with_ignore_extra_columns`], [`CsvError::UnsupportedType`],
    /// [`CsvError::InvalidOption`].
    pub fn build<S: AsRef<str>>(self, header: &[S]) -> Result<Decoder> {
        self.options.validate()?;
        let mut col_to_file = Vec::with_capacity(self.schema.fields().len());
        let mut missing = Vec::new();
        for f in self.schema.fields() {
            let mut at = header
                .iter()
                .enumerate()
                .filter(|(_, h)| h.as_ref() == f.name())
                .map(|(i, _)| i);
            match (at.next(), at.next()) {
                (Some(first), Some(second)) => {
                    return Err(CsvError::DuplicateColumn {
                        unit: self.unit.to_string(),
                        column: f.name().clone(),
                        first: first + 1,
                        second: second + 1,
                    });
                }
                (Some(i), None) => col_to_file.push(i),
                _ => missing.push(f.name().clone()),
            }
        }
        if !missing.is_empty() {
            return Err(CsvError::MissingColumns {
                unit: self.unit.to_string(),
                columns: missing,
                header: header.iter().map(|h| h.as_ref().to_owned()).collect(),
            });
        }
        let extra = header
            .iter()
            .enumerate()
            .filter(|(_, h)| self.schema.field_with_name(h.as_ref()).is_err())
            .map(|(i, h)| (h.as_ref().to_owned(), i + 1))
            .collect::<Vec<_>>();
        if !extra.is_empty() {
            if !self.options.ignore_extra_columns() {
                return Err(CsvError::ExtraColumns {
                    unit: self.unit.to_string(),
                    columns: extra,
                });
            }
            tracing::warn!(
                unit = %self.unit,
                columns = ?extra,
                "header columns not in the schema are skipped (ignore_extra_columns)"
            );
        }
        let cap = self.batch_size.min(1 << 16);
        let columns = self
            .schema
            .fields()
            .iter()
            .map(|f| {
                Column::new(
                    f,
                    self.options.empty_is_null(),
                    !self.options.null_markers().is_empty(),
                    cap,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Decoder {
            schema: self.schema,
            unit: self.unit,
            columns,
            col_to_file,
            file_fields: header.len(),
            syntax: Syntax::of(&self.options),
            null_markers: self
                .options
                .null_markers()
                .iter()
                .map(|m| m.as_bytes().into())
                .collect(),
            max_record_bytes: self.options.max_record_bytes(),
            data_limit: data_limit(self.options.max_record_bytes()),
            batch_size: self.batch_size,
            line: self.first_line,
            skipping: false,
            data: Vec::new(),
            extra: Vec::new(),
            records: Vec::with_capacity(cap),
            rejects: Vec::new(),
            rows: 0,
            consumed: 0,
            fields: Vec::with_capacity(header.len() + 1),
            scratch: Vec::new(),
            data_hint: 0,
        })
    }
}

/// A push decoder from CSV bytes (after the header) to typed batches with rejects.
///
/// Feed it with [`decode`](Decoder::decode) (consumes whole records only; give the rest
/// back with more bytes) and, at the end of the input, [`decode_eof`](Decoder::decode_eof);
/// take batches with [`flush`](Decoder::flush) whenever [`capacity`](Decoder::capacity) is 0
/// and at the end. Every malformed record becomes a [`Reject`] in the batch; the others load.
///
/// # Examples
/// ```
/// use std::sync::Arc;
/// use arrow_array::Array;
/// use arrow_array::cast::AsArray;
/// use arrow_array::types::Int32Type;
/// use arrow_schema::{DataType, Field, Schema};
/// use etl_source_csv::Decoder;
///
/// let schema = Arc::new(Schema::new(vec![
///     Field::new("name", DataType::Utf8View, true),
///     Field::new("year", DataType::Int32, false),
/// ]));
/// // Columns are matched by name, in any order.
/// let mut dec = Decoder::new(schema, &["year", "name"]).unwrap();
/// let input = b"2001,\"Falco rusticolus\"\n19x5,\"NA\"\n2003,\n";
/// assert_eq!(dec.decode_eof(input).unwrap(), input.len());
/// let batch = dec.flush().unwrap().unwrap();
/// assert_eq!(batch.records, [2, 4]);
/// let names = batch.data.column(0).as_string_view();
/// assert_eq!(names.value(0), "Falco rusticolus");
/// assert!(names.is_null(1));
/// assert_eq!(batch.data.column(1).as_primitive::<Int32Type>().values(), &[2001, 2003]);
/// assert_eq!(batch.rejects[0].record, 3);
/// assert_eq!(batch.rejects[0].reason, "year: \"19x5\" is not an integer");
/// ```
#[derive(Debug)]
pub struct Decoder {
    schema: SchemaRef,
    unit: Arc<str>,
    columns: Vec<Column>,
    /// Declared column -> field index in the file.
    col_to_file: Vec<usize>,
    /// Fields per record in the file (the header's length).
    file_fields: usize,
    syntax: Syntax,
    /// Unquoted texts that are NULL.
    null_markers: Vec<Box<[u8]>>,
    max_record_bytes: usize,
    /// Raw bytes after which the batch is full (see [`data_limit`]).
    data_limit: usize,
    batch_size: usize,
    /// Line on which the next record starts.
    line: u64,
    /// Inside an over-long record: drop bytes up to the next line end.
    skipping: bool,
    /// Raw bytes of the records consumed into this batch (view buffer 0).
    data: Vec<u8>,
    /// Unescaped values (view buffer 1).
    extra: Vec<u8>,
    records: Vec<u64>,
    rejects: Vec<Reject>,
    rows: usize,
    consumed: u64,
    fields: Vec<FieldPos>,
    scratch: Vec<u8>,
    data_hint: usize,
}

impl Decoder {
    /// A decoder for `schema` over a file whose header is `header`, default options.
    ///
    /// # Errors
    /// As [`DecoderBuilder::build`].
    pub fn new<S: AsRef<str>>(schema: SchemaRef, header: &[S]) -> Result<Self> {
        Self::builder(schema).build(header)
    }

    /// A builder, to set the unit name, options and batch size.
    pub fn builder(schema: SchemaRef) -> DecoderBuilder {
        DecoderBuilder {
            schema,
            unit: Arc::from(""),
            options: CsvOptions::default(),
            batch_size: 65_536,
            first_line: 2,
        }
    }

    /// The schema of the batches.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Records (rows or rejects) that can still be decoded before [`flush`](Self::flush)
    /// must be called.
    pub fn capacity(&self) -> usize {
        if self.data.len() >= self.data_limit {
            return 0;
        }
        self.batch_size
            .saturating_sub(self.rows + self.rejects.len())
    }

    /// Line number on which the next record starts.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Whether a flush would yield something (rows, rejects or consumed bytes).
    pub fn has_pending(&self) -> bool {
        self.rows > 0 || !self.rejects.is_empty() || self.consumed > 0
    }

    /// Decode the whole records at the start of `buf`; returns the bytes consumed.
    ///
    /// Stops when the batch is full ([`capacity`](Self::capacity) 0) or at the first
    /// incomplete record: the caller keeps the unconsumed bytes and passes them again,
    /// followed by more input. The caller's buffer must be able to hold
    /// `max_record_bytes + 2` bytes, after which an incomplete record is rejected.
    ///
    /// # Errors
    /// None today; the `Result` leaves room for fatal input errors.
    pub fn decode(&mut self, buf: &[u8]) -> Result<usize> {
        Ok(self.decode_inner(buf, false))
    }

    /// Like [`decode`](Self::decode), but `buf` is the end of the input: the last record
    /// needs no line end, and an unterminated quote is rejected.
    ///
    /// # Errors
    /// As [`decode`](Self::decode).
    pub fn decode_eof(&mut self, buf: &[u8]) -> Result<usize> {
        Ok(self.decode_inner(buf, true))
    }

    fn reject(&mut self, line: u64, column: Option<&str>, kind: &str, reason: String, raw: &[u8]) {
        let raw = if raw.len() > MAX_RAW {
            let mut s = String::from_utf8_lossy(&raw[..MAX_RAW]).into_owned();
            s.push('…');
            s
        } else {
            String::from_utf8_lossy(raw).into_owned()
        };
        self.rejects.push(Reject {
            unit: self.unit.clone(),
            record: line,
            column: column.map(str::to_owned),
            kind: kind.to_owned(),
            reason,
            raw,
        });
    }

    /// Reject the record starting on `line` as longer than `max_record_bytes`; its raw
    /// text is cut at `min(max_record_bytes, 1024)` bytes.
    fn reject_too_long(&mut self, line: u64, raw: &[u8]) {
        let keep = raw.len().min(self.max_record_bytes).min(MAX_RAW);
        let mut text = String::from_utf8_lossy(&raw[..keep]).into_owned();
        if keep < raw.len() {
            text.push('…');
        }
        let reason = format!(
            "record is longer than max_record_bytes ({} bytes)",
            self.max_record_bytes
        );
        self.rejects.push(Reject {
            unit: self.unit.clone(),
            record: line,
            column: None,
            kind: "record_too_long".to_owned(),
            reason,
            raw: text,
        });
    }

    /// Reject the first line of the record at `pos`, whose quote crossed a line and went
    /// wrong: as `record_too_long` if that line alone is past the limit (the verdict of a
    /// reader that gets the line in pieces and cannot look past the limit), else as a stray
    /// quote. Returns where the next record starts.
    fn reject_first_line(&mut self, buf: &[u8], pos: usize) -> usize {
        let nl = memchr(b'\n', &buf[pos..]);
        let line_end = nl.map_or(buf.len(), |k| pos + k);
        if line_end - pos > self.max_record_bytes + 1 {
            self.reject_too_long(self.line, &buf[pos..line_end]);
            self.line += 1;
            nl.map_or(buf.len(), |k| pos + k + 1)
        } else {
            self.reject_stray_quote(buf, pos)
        }
    }

    /// Reject the first line of the record at `pos` (a stray quote); returns where the
    /// next record starts.
    fn reject_stray_quote(&mut self, buf: &[u8], pos: usize) -> usize {
        let (end, next) = match memchr(b'\n', &buf[pos..]) {
            Some(k) => (pos + k, pos + k + 1),
            None => (buf.len(), buf.len()),
        };
        let end = if end > pos && buf[end - 1] == b'\r' {
            end - 1
        } else {
            end
        };
        self.reject(
            self.line,
            None,
            "unterminated_quote",
            "unterminated quoted field: the quote opened on this line is not closed before the record goes wrong; line skipped".into(),
            &buf[pos..end],
        );
        self.line += 1;
        next
    }

    fn decode_inner(&mut self, buf: &[u8], eof: bool) -> usize {
        // One loop per kind of dialect, so that the default one pays for no other.
        let syn = self.syntax;
        match (syn.quote, syn.escape, self.null_markers.is_empty()) {
            (Some(b'"'), None, true) => self.decode_with::<_, false>(buf, eof, Standard(syn.delim)),
            (_, _, true) => self.decode_with::<_, false>(buf, eof, syn),
            (_, _, false) => self.decode_with::<_, true>(buf, eof, syn),
        }
    }

    /// [`decode_inner`](Self::decode_inner) for a dialect; `MARKERS`: null markers are set.
    #[inline(always)]
    fn decode_with<D: Dialectal, const MARKERS: bool>(
        &mut self,
        buf: &[u8],
        eof: bool,
        syn: D,
    ) -> usize {
        let n = buf.len();
        let mut pos = 0;
        if self.skipping {
            match memchr(b'\n', buf) {
                Some(k) => {
                    pos = k + 1;
                    self.skipping = false;
                    self.line += 1;
                }
                None => {
                    if eof {
                        self.skipping = false;
                        self.line += 1;
                    }
                    self.consumed += n as u64;
                    return n;
                }
            }
        }
        let copy_from = pos;
        let base = self.data.len();
        // UTF-8 is checked once for the whole input; records past the first bad byte are
        // checked one by one.
        let mut utf8_ok_until = copy_from;
        // NUL bytes are searched for the same way.
        let mut nul = NulScan {
            until: copy_from,
            found: None,
        };
        while pos < n && self.capacity() > 0 && base + (pos - copy_from) < self.data_limit {
            let split = split(&mut self.fields, syn, self.file_fields, buf, pos, eof);
            match split {
                Split::Blank { next } => {
                    self.line += 1;
                    pos = next;
                }
                Split::StrayQuote => pos = self.reject_first_line(buf, pos),
                Split::Incomplete { spanned } => {
                    if n - pos <= self.max_record_bytes + 1 {
                        break;
                    }
                    if spanned {
                        pos = self.reject_first_line(buf, pos);
                    } else {
                        // One line longer than the limit: reject it and drop it up to its end.
                        self.reject_too_long(self.line, &buf[pos..]);
                        self.skipping = true;
                        self.data.extend_from_slice(&buf[copy_from..pos]);
                        self.consumed += n as u64;
                        return n;
                    }
                }
                Split::Record {
                    end,
                    next,
                    newlines,
                    spanned,
                } => {
                    let line = self.line;
                    let nfields = self.fields.len();
                    let too_long = end - pos > self.max_record_bytes;
                    if spanned && (nfields != self.file_fields || too_long) {
                        pos = self.reject_first_line(buf, pos);
                        continue;
                    }
                    self.line += 1 + newlines as u64;
                    if too_long {
                        self.reject_too_long(line, &buf[pos..end]);
                    } else if nfields != self.file_fields {
                        let reason =
                            format!("expected {} fields, found {nfields}", self.file_fields);
                        self.reject(line, None, "field_count", reason, &buf[pos..end]);
                    } else {
                        if end > utf8_ok_until {
                            utf8_ok_until = extend_utf8(buf, utf8_ok_until, end);
                        }
                        let good = if end > utf8_ok_until {
                            // Bad bytes in this record: look at it field by field.
                            utf8_ok_until = next;
                            self.check_utf8(buf, pos, end, line)
                        } else {
                            true
                        };
                        if good
                            && (!nul.within(buf, pos, end) || self.check_nul(buf, pos, end, line))
                        {
                            self.push_record::<MARKERS>(buf, pos, end, line, base, copy_from);
                        }
                    }
                    pos = next;
                }
            }
        }
        self.data.extend_from_slice(&buf[copy_from..pos]);
        self.consumed += pos as u64;
        pos
    }

    /// Slow path for a record with invalid UTF-8 somewhere: reject it if a declared
    /// column's field is not UTF-8; returns whether the record is good.
    #[cold]
    fn check_utf8(&mut self, buf: &[u8], pos: usize, end: usize, line: u64) -> bool {
        for ci in 0..self.columns.len() {
            let f = self.fields[self.col_to_file[ci]];
            if let Err(e) = std::str::from_utf8(&buf[f.start..f.end]) {
                let name = self.columns[ci].field.name().clone();
                let at = f.start - pos + e.valid_up_to() + 1;
                let reason = format!(
                    "{name}: invalid UTF-8 at byte {at} of the record in {:?}",
                    shown(&buf[f.start..f.end])
                );
                self.reject(line, Some(&name), "invalid_utf8", reason, &buf[pos..end]);
                return false;
            }
        }
        true
    }

    /// Slow path for a record with a NUL byte somewhere: reject it if a declared text
    /// column's field holds one (other columns fail their own parse); returns whether
    /// the record is good.
    #[cold]
    fn check_nul(&mut self, buf: &[u8], pos: usize, end: usize, line: u64) -> bool {
        for ci in 0..self.columns.len() {
            let f = self.fields[self.col_to_file[ci]];
            if self.columns[ci].is_text() && memchr(0, &buf[f.start..f.end]).is_some() {
                let name = self.columns[ci].field.name().clone();
                let reason = format!("{name}: {NUL_REASON}");
                self.reject(line, Some(&name), "nul_byte", reason, &buf[pos..end]);
                return false;
            }
        }
        true
    }

    /// Append the fields of a good record to the columns, or reject it on the first bad
    /// value. `buf[copy_from]` goes to position `base` of the batch's raw buffer.
    #[inline]
    fn push_record<const MARKERS: bool>(
        &mut self,
        buf: &[u8],
        pos: usize,
        end: usize,
        line: u64,
        base: usize,
        copy_from: usize,
    ) {
        let row = self.rows;
        for ci in 0..self.columns.len() {
            let f = self.fields[self.col_to_file[ci]];
            let marker = MARKERS
                && !f.quoted
                && self.null_markers.iter().any(|m| **m == buf[f.start..f.end]);
            let col = &mut self.columns[ci];
            let res = if marker {
                col.push_null()
            } else if !f.escaped {
                col.push(
                    &buf[f.start..f.end],
                    &buf[f.start..(f.start + 16).min(buf.len())],
                    ViewSource {
                        buffer: 0,
                        offset: (base + f.start - copy_from) as u32,
                    },
                )
            } else if col.is_text() {
                let off = self.extra.len();
                unescape_into(&buf[f.start..f.end], self.syntax, &mut self.extra);
                col.push(
                    &self.extra[off..],
                    &self.extra[off..],
                    ViewSource {
                        buffer: 1,
                        offset: off as u32,
                    },
                )
            } else {
                self.scratch.clear();
                unescape_into(&buf[f.start..f.end], self.syntax, &mut self.scratch);
                col.push(
                    &self.scratch,
                    &self.scratch,
                    ViewSource {
                        buffer: 1,
                        offset: 0,
                    },
                )
            };
            if let Err(e) = res {
                self.bad_value(buf, pos, end, line, row, ci, e);
                return;
            }
        }
        self.rows += 1;
        self.records.push(line);
    }

    #[cold]
    #[allow(clippy::too_many_arguments)]
    fn bad_value(
        &mut self,
        buf: &[u8],
        pos: usize,
        end: usize,
        line: u64,
        row: usize,
        ci: usize,
        e: ValueError,
    ) {
        for c in &mut self.columns[..ci] {
            c.truncate(row);
        }
        let f = self.fields[self.col_to_file[ci]];
        let mut value = Vec::new();
        if f.escaped {
            unescape_into(&buf[f.start..f.end], self.syntax, &mut value);
        } else {
            value.extend_from_slice(&buf[f.start..f.end]);
        }
        let field = self.columns[ci].field.clone();
        let reason = e.reason(field.name(), field.data_type(), &value);
        self.reject(line, Some(field.name()), e.kind(), reason, &buf[pos..end]);
    }

    /// Take the decoded rows and rejects as a [`Batch`] (`None` if nothing is pending).
    ///
    /// `Batch.consumed` is the bytes consumed since the previous flush.
    ///
    /// # Errors
    /// [`CsvError::Arrow`] if the arrays do not make a record batch (a bug).
    pub fn flush(&mut self) -> Result<Option<Batch>> {
        if !self.has_pending() {
            return Ok(None);
        }
        self.data_hint = self.data_hint.max(self.data.len());
        let data = std::mem::replace(&mut self.data, Vec::with_capacity(self.data_hint));
        let mut buffers = vec![Buffer::from_vec(data)];
        if !self.extra.is_empty() {
            buffers.push(Buffer::from_vec(std::mem::take(&mut self.extra)));
        }
        let buffers: Arc<[Buffer]> = buffers.into();
        let arrays = self
            .columns
            .iter_mut()
            .map(|c| c.finish(&buffers))
            .collect::<Vec<_>>();
        let data = RecordBatch::try_new_with_options(
            self.schema.clone(),
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(self.rows)),
        )?;
        let records = std::mem::replace(&mut self.records, Vec::with_capacity(self.rows));
        let mut batch = Batch::new(self.unit.clone(), data, records);
        batch.rejects = std::mem::take(&mut self.rejects);
        batch.consumed = std::mem::take(&mut self.consumed);
        self.rows = 0;
        Ok(Some(batch))
    }
}

/// Where the decoder has looked for NUL bytes in its input: none before `until`, except
/// the one at `found`. Searched in windows of 64 KiB, so a file without NUL costs one
/// `memchr` pass and a batch boundary does not search the rest of the input again.
struct NulScan {
    until: usize,
    found: Option<usize>,
}

impl NulScan {
    /// Whether `buf[pos..end]` holds a NUL byte (records are asked about in order).
    #[inline]
    fn within(&mut self, buf: &[u8], pos: usize, end: usize) -> bool {
        loop {
            if let Some(z) = self.found {
                if z >= pos {
                    return z < end;
                }
                self.found = None;
                self.until = pos;
            }
            let from = self.until.max(pos);
            if from >= end {
                return false;
            }
            let stop = (from + (1 << 16)).max(end).min(buf.len());
            match memchr(0, &buf[from..stop]) {
                Some(k) => self.found = Some(from + k),
                None => self.until = stop,
            }
        }
    }
}

/// Extend the checked UTF-8 prefix of `buf` from `ok` to cover `want` (in windows of
/// 64 KiB so that a full batch does not re-check the rest of the input); returns the new
/// end of the valid prefix, which stops at the first invalid byte.
#[inline]
fn extend_utf8(buf: &[u8], mut ok: usize, want: usize) -> usize {
    while ok < want {
        let stop = (ok + (1 << 16)).max(want).min(buf.len());
        match std::str::from_utf8(&buf[ok..stop]) {
            Ok(_) => ok = stop,
            Err(e) => {
                ok += e.valid_up_to();
                // A real error, or a character cut by the end of the input.
                if e.error_len().is_some() || stop == buf.len() || e.valid_up_to() == 0 {
                    return ok;
                }
            }
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMA: Syntax = Syntax {
        delim: b',',
        quote: Some(b'"'),
        escape: None,
    };

    fn fields(input: &str, eof: bool) -> (Split, Vec<String>) {
        fields_with(COMMA, input, eof)
    }

    fn fields_with(syn: Syntax, input: &str, eof: bool) -> (Split, Vec<String>) {
        let mut f = Vec::new();
        let s = split(&mut f, syn, 3, input.as_bytes(), 0, eof);
        let v = f
            .iter()
            .map(|p| {
                let raw = &input.as_bytes()[p.start..p.end];
                let mut out = Vec::new();
                if p.escaped {
                    unescape_into(raw, syn, &mut out);
                } else {
                    out.extend_from_slice(raw);
                }
                String::from_utf8(out).unwrap()
            })
            .collect();
        (s, v)
    }

    #[test]
    fn splits_quoted_unquoted_and_escaped_fields() {
        let (s, v) = fields("\"a,b\",12,\"say \"\"hi\"\"\"\nrest", false);
        assert_eq!(v, ["a,b", "12", "say \"hi\""]);
        assert_eq!(
            s,
            Split::Record {
                end: 21,
                next: 22,
                newlines: 0,
                spanned: false
            }
        );
        let (s, v) = fields("x,,\"\"\r\n", false);
        assert_eq!(v, ["x", "", ""]);
        assert!(matches!(
            s,
            Split::Record {
                end: 5,
                next: 7,
                ..
            }
        ));
        let (_, v) = fields("\"ab\"cd,e\"f,g\r\n", false);
        assert_eq!(v, ["abcd", "e\"f", "g"]);
    }

    #[test]
    fn backslash_escapes_and_no_quote() {
        let esc = Syntax {
            escape: Some(b'\\'),
            ..COMMA
        };
        let (s, v) = fields_with(esc, "\"a\\\"b\",\"c\\\\\",\"x\"\"y\"\n", false);
        assert_eq!(v, ["a\"b", "c\\", "x\"y"]);
        assert!(matches!(s, Split::Record { next: 20, .. }), "{s:?}");
        // An escaped line end inside quotes is text and counts as a line.
        let (s, v) = fields_with(esc, "\"a\\\nb\",c,d\n", false);
        assert_eq!(v, ["a\nb", "c", "d"]);
        assert!(matches!(s, Split::Record { newlines: 1, .. }), "{s:?}");
        // Outside quotes the escape is text.
        assert_eq!(fields_with(esc, "a\\,b,c\n", false).1, ["a\\", "b", "c"]);
        assert_eq!(
            fields_with(esc, "\"a\\", false).0,
            Split::Incomplete { spanned: false }
        );
        assert_eq!(fields_with(esc, "\"a\\", true).0, Split::StrayQuote);
        let bare = Syntax {
            quote: None,
            ..COMMA
        };
        assert_eq!(
            fields_with(bare, "\"a,b\",c\n", false).1,
            ["\"a", "b\"", "c"]
        );
    }

    #[test]
    fn a_batch_ends_before_its_text_can_overflow_i32_offsets() {
        use arrow_array::Array;
        use arrow_schema::{DataType, Field, Schema};
        assert_eq!(data_limit(1 << 30), (i32::MAX as usize) - (1 << 30) - 2);
        assert!(data_limit(1 << 30) + (1 << 30) + 2 <= i32::MAX as usize);
        let schema = Arc::new(Schema::new(vec![Field::new("t", DataType::Utf8, false)]));
        let mut dec = Decoder::new(schema, &["t"]).unwrap();
        // The limit scaled down: a batch takes records until 100 raw bytes are in.
        dec.data_limit = 100;
        let input = "0123456789012345678\n".repeat(20);
        let mut pos = 0;
        let mut sizes = Vec::new();
        loop {
            pos += dec.decode_eof(&input.as_bytes()[pos..]).unwrap();
            let b = dec.flush().unwrap().unwrap();
            let text = b.data.column(0).to_data().buffers()[1].len();
            assert!(text <= 100 + 19, "{text}");
            sizes.push(b.num_rows());
            if pos == input.len() {
                break;
            }
        }
        assert_eq!(sizes, [5, 5, 5, 5]);
    }

    #[test]
    fn nul_scan_finds_every_nul_in_order() {
        let buf = b"ab\0c\nde\nf\0\0\n";
        let mut s = NulScan {
            until: 0,
            found: None,
        };
        assert!(s.within(buf, 0, 4));
        assert!(!s.within(buf, 5, 7));
        assert!(s.within(buf, 8, 11));
        let mut s = NulScan {
            until: 0,
            found: None,
        };
        assert!(!s.within(buf, 5, 7));
        assert!(s.within(buf, 8, 11));
    }

    #[test]
    fn find2_matches_a_plain_search() {
        let hay: Vec<u8> = (0..100u8).map(|i| b'a' + i % 26).collect();
        for start in 0..hay.len() {
            for (a, b) in [(b'z', b'\n'), (b'c', b'q'), (b'!', b'?')] {
                let want = hay[start..].iter().position(|&c| c == a || c == b);
                assert_eq!(find2(a, b, &hay[start..]), want);
            }
        }
    }

    #[test]
    fn incomplete_and_eof() {
        assert_eq!(fields("a,b", false).0, Split::Incomplete { spanned: false });
        assert!(matches!(
            fields("a,b", true).0,
            Split::Record {
                end: 3,
                next: 3,
                ..
            }
        ));
        assert_eq!(fields("\"a", false).0, Split::Incomplete { spanned: false });
        assert_eq!(
            fields("\"a\"", false).0,
            Split::Incomplete { spanned: false }
        );
        assert_eq!(
            fields("\"a\"\r", false).0,
            Split::Incomplete { spanned: false }
        );
        assert_eq!(
            fields("\"a\nb", false).0,
            Split::Incomplete { spanned: true }
        );
        assert_eq!(fields("\"a\nb", true).0, Split::StrayQuote);
        assert_eq!(fields("\r", false).0, Split::Incomplete { spanned: false });
        assert_eq!(fields("\r\n", false).0, Split::Blank { next: 2 });
        let (s, v) = fields("\"a\nb\",c,d\n", false);
        assert_eq!(v, ["a\nb", "c", "d"]);
        assert!(matches!(
            s,
            Split::Record {
                newlines: 1,
                spanned: true,
                ..
            }
        ));
    }
}
