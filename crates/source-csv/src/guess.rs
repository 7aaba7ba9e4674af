//! [`guess()`]: read the first rows of some CSV files and guess how they are written (the
//! [`Dialect`]) and what their columns hold (a schema), with the evidence: rows sampled,
//! NULLs seen, and the values that ruled out a narrower type, with their line numbers.
//!
//! What is guessed, and how:
//!
//! * **Compression**: gzip and zstd files are read decompressed ([`Compression`], by their
//!   first bytes).
//! * **Encoding**: UTF-8 if every sampled byte is valid UTF-8, else Latin-1 (the first
//!   byte that is not UTF-8 is named in [`Guess::notes`]).
//! * **Delimiter**: the one of `,` `;` tab `|` that splits the sampled records into the
//!   same number of fields (more than one) most consistently; ties go to that order.
//! * **Quote and escape**: `"`; backslash escapes inside quotes when they make the records
//!   more consistent, or as consistent and `\"` occurs.
//! * **Header**: the first line is a header when one of its values does not fit the type
//!   of the rest of its column (`amount` above numbers), or, when every column is text,
//!   when its values are distinct and not found again in their columns.
//! * **Null markers**: `NA`, `N/A`, `#N/A`, `NULL`, `null`, `None` and `\N`, unquoted, in a
//!   column whose other values are not text (`\N` and `NULL` wherever they occur). They
//!   are NULL in *every* column when loading; a note names the text columns where a
//!   marker occurs too (`NA` could be Namibia there).
//! * **Types**, narrowest first: `Int32`, `Int64`, `Boolean` (`true`/`false` in any
//!   case, `t`/`f`, with `1`/`0`; not `T`/`F`, more often codes), `Decimal128` (every value with a fraction has the same number of fractional
//!   digits: money-like; precision 18, or 38 when the sample needs more than 18 digits),
//!   `Float64`, `Date32` (`YYYY-MM-DD`), `Timestamp` (microseconds, or nanoseconds when a
//!   value has more fractional digits; `UTC` when a value has a zone), else `Utf8View`.
//!   Numbers with leading zeros (`007`, zip codes) are text. Empty fields and null
//!   markers are NULL; a column is nullable when the sample has a NULL in it (a NOT NULL
//!   guess holds for the sample only: see [`FileSample::whole`]).
//! * **Names**: the header's, as SQL identifiers (`Unit Price` → `unit_price`,
//!   `Reporter.type` → `reporter_type`, accents dropped, at most 63 bytes, duplicates
//!   numbered); `column_1`, `column_2`… without a header. When a name changed, the
//!   dialect's header mode is [`HeaderMode::Skip`] (columns by position).

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Serialize;

use crate::decoder::{FieldPos, Split, Syntax, split, unescape_into};
use crate::error::{CsvError, Result};
use crate::input::{Compression, Input, latin1_to_utf8};
use crate::options::{CsvOptions, Dialect, Encoding, HeaderMode};
use crate::value;

/// Bytes read from one file at most.
const MAX_SAMPLE_BYTES: usize = 32 << 20;
/// Values kept as evidence per column.
const MAX_MISFITS: usize = 5;
/// Texts taken for NULL when they stand unquoted in a column of another type.
const MARKERS: [&str; 7] = ["NA", "N/A", "#N/A", "NULL", "null", "None", "\\N"];
/// Markers that are NULL wherever they stand.
const SURE_MARKERS: [&str; 2] = ["\\N", "NULL"];
/// Delimiters tried, in order of preference.
const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

/// What [`guess()`] found: a dialect, a schema and the evidence.
///
/// Serializable (serde) as the skeleton of a job file. [`Guess::schema`] and
/// [`Guess::options`] read the files as guessed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Guess {
    /// How the files are written.
    pub dialect: Dialect,
    /// The files sampled.
    pub files: Vec<FileSample>,
    /// Data rows sampled in all files (header lines not counted).
    pub rows_sampled: u64,
    /// The columns in file order.
    pub columns: Vec<ColumnGuess>,
    /// Remarks: why the encoding, records skipped (wrong field count, stray quotes),
    /// null markers that also stand in text columns.
    pub notes: Vec<String>,
}

/// One sampled file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileSample {
    /// The path given.
    pub path: String,
    /// How it is compressed.
    pub compression: Compression,
    /// Data rows sampled.
    pub rows: u64,
    /// Whether the whole file was read (the guess then holds for every row of it).
    pub whole: bool,
}

/// One column as guessed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnGuess {
    /// A SQL identifier (lower case, `_`; `column_N` without a header).
    pub name: String,
    /// The header's name for it, as written, if the files have a header.
    pub header: Option<String>,
    /// The Arrow type (not serialized: `type_name` says it, [`data_type`] reads it back).
    #[serde(skip)]
    pub data_type: DataType,
    /// The type in short: `int32`, `int64`, `boolean`, `decimal(18,2)`, `float64`, `date`,
    /// `timestamp(us)`, `timestamp(us, UTC)`, `text` ([`data_type`] reads it).
    pub type_name: String,
    /// Whether the sample has a NULL in this column.
    pub nullable: bool,
    /// Non-NULL values sampled.
    pub values: u64,
    /// NULLs sampled (empty fields and null markers).
    pub nulls: u64,
    /// Values that ruled out a narrower type that other values fitted (the first few).
    pub did_not_fit: Vec<Misfit>,
}

/// A sampled value that did not fit some types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Misfit {
    /// The file.
    pub file: String,
    /// Its line (the line on which the record starts, as in rejects).
    pub line: u64,
    /// The value (at most 200 characters).
    pub value: String,
    /// The types it did not fit (`int32`, `decimal(18,2)`: a scale other than the
    /// column's, …).
    pub types: Vec<String>,
}

impl Guess {
    /// The guessed schema (names, types, nullability).
    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(&c.name, c.data_type.clone(), c.nullable))
                .collect::<Vec<_>>(),
        ))
    }

    /// Reading options for the guessed dialect (defaults otherwise).
    ///
    /// # Errors
    /// As [`CsvOptions::with_dialect`] (not for a guessed dialect).
    pub fn options(&self) -> Result<CsvOptions> {
        CsvOptions::default().with_dialect(&self.dialect)
    }
}

/// One record of a sample.
struct Rec {
    file: usize,
    line: u64,
    fields: Vec<(String, bool)>,
}

/// The bytes sampled from one file.
struct Sample {
    path: String,
    compression: Compression,
    bytes: Vec<u8>,
    whole: bool,
}

/// Read up to `sample_rows` data rows from the start of each file and guess the dialect,
/// the column names and types, with the evidence (see the [module](self) documentation).
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("prices.csv");
/// std::fs::write(&path, "Item;Unit Price;Sold on\nTea;2.50;2024-01-02\nCake;NA;2024-01-03\n").unwrap();
/// let g = etl_source_csv::guess(&[path], 1000).unwrap();
/// assert_eq!(g.dialect.delimiter, ';');
/// assert_eq!(g.dialect.null_markers, ["NA"]);
/// let types: Vec<_> = g.columns.iter().map(|c| (c.name.as_str(), c.type_name.as_str())).collect();
/// assert_eq!(types, [("item", "text"), ("unit_price", "decimal(18,2)"), ("sold_on", "date")]);
/// assert!(g.columns[1].nullable);
/// ```
///
/// # Errors
/// [`CsvError::Io`] if a file cannot be read, [`CsvError::InvalidOption`] without files or
/// with a `sample_rows` of 0, [`CsvError::NoHeader`] if every file is empty.
pub fn guess(files: &[PathBuf], sample_rows: usize) -> Result<Guess> {
    if files.is_empty() || sample_rows == 0 {
        return Err(CsvError::InvalidOption(
            "guess needs at least one file and one row".into(),
        ));
    }
    let mut notes = Vec::new();
    let mut samples = files
        .iter()
        .map(|p| read_sample(p, sample_rows))
        .collect::<Result<Vec<_>>>()?;
    let mut encoding = Encoding::Utf8;
    for s in &samples {
        if let Err(e) = std::str::from_utf8(&s.bytes) {
            let at = e.valid_up_to();
            let line = 1 + s.bytes[..at].iter().filter(|&&b| b == b'\n').count();
            notes.push(format!(
                "encoding: {} line {line} has the byte 0x{:02X}, which is not UTF-8: read as Latin-1",
                s.path, s.bytes[at]
            ));
            encoding = Encoding::Latin1;
            break;
        }
    }
    if encoding == Encoding::Latin1 {
        for s in &mut samples {
            let mut out = Vec::with_capacity(s.bytes.len() + s.bytes.len() / 8);
            latin1_to_utf8(&s.bytes, &mut out);
            s.bytes = out;
        }
    }
    for s in &mut samples {
        if s.bytes.starts_with(b"\xEF\xBB\xBF") {
            s.bytes.drain(..3);
        }
    }
    if samples.iter().all(|s| s.bytes.is_empty()) {
        return Err(CsvError::NoHeader {
            unit: samples[0].path.clone(),
        });
    }

    // Delimiter, then escape: whichever splits records most consistently.
    let quoted = |delim| Syntax {
        delim,
        quote: Some(b'"'),
        escape: None,
    };
    let (mut syn, mut score) = DELIMITERS
        .iter()
        .map(|&d| (quoted(d), consistency(&samples, quoted(d), sample_rows)))
        .fold(
            None,
            |best: Option<(Syntax, (f64, usize))>, (syn, sc)| match best {
                Some((_, b)) if !(sc.1 > 1 && (b.1 <= 1 || sc.0 > b.0)) => best,
                _ => Some((syn, sc)),
            },
        )
        .expect("four delimiters");
    let esc = Syntax {
        escape: Some(b'\\'),
        ..syn
    };
    let esc_score = consistency(&samples, esc, sample_rows);
    let has_backslash_quote = samples
        .iter()
        .any(|s| memchr::memmem::find(&s.bytes, b"\\\"").is_some());
    if esc_score.0 > score.0 || (esc_score.0 == score.0 && has_backslash_quote) {
        (syn, score) = (esc, esc_score);
    }
    let width = score.1.max(1);

    // Records of the expected width; the others are noted (they will be rejected).
    let mut recs = Vec::new();
    let mut skipped = 0usize;
    for (fi, s) in samples.iter_mut().enumerate() {
        let (rs, all) = records(
            (fi, &s.path),
            &s.bytes,
            syn,
            s.whole,
            sample_rows + 1,
            &mut notes,
        );
        s.whole &= all;
        for r in rs {
            if r.fields.len() == width {
                recs.push(r);
            } else {
                skipped += 1;
                if skipped <= 3 {
                    notes.push(format!(
                        "{} line {}: {} fields where the others have {width}: not sampled (it would be a field_count reject)",
                        s.path,
                        r.line,
                        r.fields.len()
                    ));
                }
            }
        }
    }
    if skipped > 3 {
        notes.push(format!(
            "{skipped} records in all have another number of fields"
        ));
    }

    // Header: the first record of the first file against the rest of its columns.
    let first_of = |fi: usize| recs.iter().position(|r| r.file == fi);
    let header = match first_of(0).or_else(|| first_of(recs.first().map_or(0, |r| r.file))) {
        Some(h) => is_header(&recs, h, width),
        None => false,
    };
    let mut names_in_file = None;
    if header {
        let mut heads = HashSet::new();
        for fi in 0..samples.len() {
            if let Some(h) = first_of(fi) {
                heads.insert(h);
                names_in_file.get_or_insert_with(|| {
                    recs[h]
                        .fields
                        .iter()
                        .map(|f| f.0.clone())
                        .collect::<Vec<_>>()
                });
            }
        }
        let mut k = 0;
        recs.retain(|_| {
            k += 1;
            !heads.contains(&(k - 1))
        });
    }
    let recs = recs;
    let data_rows = |fi: usize| recs.iter().filter(|r| r.file == fi).count() as u64;

    // Null markers: in a column whose other values are not text.
    let mut markers: Vec<&str> = Vec::new();
    for c in 0..width {
        let stats = infer(&recs, c, &[], &MARKERS);
        for m in MARKERS {
            let seen = recs.iter().any(|r| !r.fields[c].1 && r.fields[c].0 == m);
            if seen
                && (SURE_MARKERS.contains(&m) || stats.chosen().is_some())
                && !markers.contains(&m)
            {
                markers.push(m);
            }
        }
    }
    markers.sort_by_key(|m| MARKERS.iter().position(|x| x == m));

    let mut columns = Vec::with_capacity(width);
    let mut used = HashSet::new();
    for c in 0..width {
        let stats = infer(&recs, c, &markers, &[]);
        let (data_type, type_name) = stats.data_type();
        if data_type == DataType::Utf8View {
            for m in &markers {
                let lines: Vec<u64> = recs
                    .iter()
                    .filter(|r| !r.fields[c].1 && r.fields[c].0 == *m)
                    .map(|r| r.line)
                    .take(3)
                    .collect();
                if !lines.is_empty() && stats.values > 0 {
                    notes.push(format!(
                        "null marker {m:?} also stands unquoted in text column {} (lines {}): it will be NULL there too",
                        c + 1,
                        lines
                            .iter()
                            .map(u64::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
        }
        let header_name = names_in_file.as_ref().map(|n: &Vec<String>| n[c].clone());
        let base = header_name
            .as_deref()
            .map(sql_name)
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("column_{}", c + 1));
        let mut name = base.clone();
        let mut k = 2;
        while !used.insert(name.clone()) {
            name = format!("{base}_{k}");
            k += 1;
        }
        let did_not_fit = stats.misfits(&samples);
        columns.push(ColumnGuess {
            name,
            header: header_name,
            data_type,
            type_name,
            nullable: stats.nulls > 0,
            values: stats.values,
            nulls: stats.nulls,
            did_not_fit,
        });
    }
    let header_mode = match &names_in_file {
        None => HeaderMode::Absent,
        Some(n) if n.iter().zip(&columns).all(|(h, c)| *h == c.name) => HeaderMode::Present,
        Some(_) => HeaderMode::Skip,
    };
    let dialect = Dialect {
        delimiter: char::from(syn.delim),
        quote: syn.quote.map(char::from),
        escape: syn.escape.map(char::from),
        encoding,
        header: header_mode,
        null_markers: markers.iter().map(|m| m.to_string()).collect(),
        empty_is_null: true,
    };
    let files = samples
        .iter()
        .enumerate()
        .map(|(fi, s)| FileSample {
            path: s.path.clone(),
            compression: s.compression,
            rows: data_rows(fi),
            whole: s.whole,
        })
        .collect::<Vec<_>>();
    Ok(Guess {
        dialect,
        rows_sampled: files.iter().map(|f| f.rows).sum(),
        files,
        columns,
        notes,
    })
}

/// Read the start of a file: at least `rows + 1` lines (or the whole file), cut after a
/// line end unless the file ended.
fn read_sample(path: &Path, rows: usize) -> Result<Sample> {
    let io = |source| CsvError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut input = Input::open(path, Encoding::Utf8).map_err(io)?;
    let mut bytes = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    let mut lines = 0usize;
    let whole = loop {
        let n = match input.reader.read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        };
        lines += memchr::memchr_iter(b'\n', &chunk[..n]).count();
        bytes.extend_from_slice(&chunk[..n]);
        // A few lines more than asked, for quoted fields that span lines.
        if lines > rows + rows / 8 + 8 || bytes.len() >= MAX_SAMPLE_BYTES {
            break false;
        }
    };
    if !whole {
        let keep = memchr::memrchr(b'\n', &bytes).map_or(0, |k| k + 1);
        bytes.truncate(keep);
    }
    Ok(Sample {
        path: path.display().to_string(),
        compression: input.compression,
        bytes,
        whole,
    })
}

/// Up to `max` records of `buf` with their lines, and whether that was all of `buf`;
/// stray quotes are noted and skipped.
fn records(
    (file, path): (usize, &str),
    buf: &[u8],
    syn: Syntax,
    eof: bool,
    max: usize,
    notes: &mut Vec<String>,
) -> (Vec<Rec>, bool) {
    let mut out = Vec::new();
    let mut fields: Vec<FieldPos> = Vec::new();
    let (mut pos, mut line) = (0usize, 1u64);
    let mut scratch = Vec::new();
    while pos < buf.len() && out.len() < max {
        match split(&mut fields, syn, usize::MAX, buf, pos, eof) {
            Split::Blank { next } => {
                pos = next;
                line += 1;
            }
            Split::Incomplete { .. } => break,
            Split::StrayQuote => {
                notes.push(format!(
                    "{path} line {line}: unterminated quote (it would be a reject)"
                ));
                pos = memchr::memchr(b'\n', &buf[pos..]).map_or(buf.len(), |k| pos + k + 1);
                line += 1;
            }
            Split::Record { next, newlines, .. } => {
                let fs = fields
                    .iter()
                    .map(|f| {
                        let bytes = if f.escaped {
                            scratch.clear();
                            unescape_into(&buf[f.start..f.end], syn, &mut scratch);
                            &scratch[..]
                        } else {
                            &buf[f.start..f.end]
                        };
                        (String::from_utf8_lossy(bytes).into_owned(), f.quoted)
                    })
                    .collect();
                out.push(Rec {
                    file,
                    line,
                    fields: fs,
                });
                line += 1 + newlines as u64;
                pos = next;
            }
        }
    }
    // Blank lines at the end are nothing left out.
    let rest = buf[pos.min(buf.len())..]
        .iter()
        .all(|b| matches!(b, b'\r' | b'\n'));
    (out, rest)
}

/// How consistently `syn` splits the samples: the share of records having the most
/// common field count, and that count.
fn consistency(samples: &[Sample], syn: Syntax, rows: usize) -> (f64, usize) {
    let mut counts = std::collections::HashMap::<usize, usize>::new();
    let mut total = 0;
    let mut fields: Vec<FieldPos> = Vec::new();
    for s in samples {
        let (mut pos, mut n) = (0, 0);
        while pos < s.bytes.len() && n <= rows.min(1000) {
            match split(&mut fields, syn, usize::MAX, &s.bytes, pos, s.whole) {
                Split::Blank { next } => pos = next,
                Split::Incomplete { .. } => break,
                Split::StrayQuote => {
                    // A record this dialect cannot read counts against it.
                    total += 1;
                    n += 1;
                    pos = memchr::memchr(b'\n', &s.bytes[pos..])
                        .map_or(s.bytes.len(), |k| pos + k + 1);
                }
                Split::Record { next, .. } => {
                    *counts.entry(fields.len()).or_default() += 1;
                    total += 1;
                    n += 1;
                    pos = next;
                }
            }
        }
    }
    let (width, hits) = counts
        .into_iter()
        .max_by_key(|&(w, c)| (c, w))
        .unwrap_or((1, 0));
    (hits as f64 / total.max(1) as f64, width)
}

/// Whether record `h` is a header above the records after it.
fn is_header(recs: &[Rec], h: usize, width: usize) -> bool {
    let file = recs[h].file;
    let rest: Vec<&Rec> = recs[h + 1..].iter().filter(|r| r.file == file).collect();
    let first = &recs[h].fields;
    let mut all_text = true;
    for (c, (v, _)) in first.iter().enumerate().take(width) {
        let stats = infer_over(rest.iter().copied(), c, &[], &MARKERS);
        if let Some(k) = stats.chosen() {
            all_text = false;
            if !v.is_empty() && !MARKERS.contains(&v.as_str()) && !fits(k, v, &mut Fit::default()) {
                return true;
            }
        }
    }
    if !all_text {
        return false;
    }
    let distinct: HashSet<&str> = first.iter().map(|f| f.0.as_str()).collect();
    distinct.len() == first.len()
        && first.iter().all(|f| !f.0.is_empty())
        && first.iter().enumerate().all(|(c, f)| {
            rest.iter().all(|r| r.fields[c].0 != f.0)
                && (!rest.is_empty() || f.0.parse::<f64>().is_err())
        })
}

/// The candidate types, narrowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int32,
    Int64,
    Boolean,
    Decimal,
    Float64,
    Date,
    Timestamp,
}

const KINDS: [Kind; 7] = [
    Kind::Int32,
    Kind::Int64,
    Kind::Boolean,
    Kind::Decimal,
    Kind::Float64,
    Kind::Date,
    Kind::Timestamp,
];

/// What the values of a column needed so far: the decimal scale and digits, the
/// timestamp zone and fraction.
#[derive(Debug, Default, Clone, Copy)]
struct Fit {
    scale: Option<u32>,
    int_digits: u32,
    zone: bool,
    nanos: bool,
}

/// The statistics of one column over a sample.
struct Stats {
    alive: [bool; 7],
    matched: [u64; 7],
    /// The first values each kind refused: (file, line, value).
    fails: [Vec<(usize, u64, String)>; 7],
    fit: Fit,
    values: u64,
    nulls: u64,
}

impl Stats {
    /// The narrowest kind every value fitted (`None`: text, or no value).
    fn chosen(&self) -> Option<Kind> {
        if self.values == 0 {
            return None;
        }
        KINDS
            .iter()
            .zip(self.alive)
            .find(|(_, a)| *a)
            .map(|(k, _)| *k)
    }

    fn data_type(&self) -> (DataType, String) {
        let f = &self.fit;
        match self.chosen() {
            None => (DataType::Utf8View, "text".into()),
            Some(Kind::Int32) => (DataType::Int32, "int32".into()),
            Some(Kind::Int64) => (DataType::Int64, "int64".into()),
            Some(Kind::Boolean) => (DataType::Boolean, "boolean".into()),
            Some(Kind::Decimal) => {
                let scale = f.scale.unwrap_or(0);
                let p = if f.int_digits + scale <= 18 { 18 } else { 38 };
                (
                    DataType::Decimal128(p, scale as i8),
                    format!("decimal({p},{scale})"),
                )
            }
            Some(Kind::Float64) => (DataType::Float64, "float64".into()),
            Some(Kind::Date) => (DataType::Date32, "date".into()),
            Some(Kind::Timestamp) => {
                let (unit, u) = if f.nanos {
                    (TimeUnit::Nanosecond, "ns")
                } else {
                    (TimeUnit::Microsecond, "us")
                };
                if f.zone {
                    (
                        DataType::Timestamp(unit, Some("UTC".into())),
                        format!("timestamp({u}, UTC)"),
                    )
                } else {
                    (DataType::Timestamp(unit, None), format!("timestamp({u})"))
                }
            }
        }
    }

    /// The values that ruled out kinds narrower than the chosen one which other values
    /// fitted, merged by value.
    fn misfits(&self, samples: &[Sample]) -> Vec<Misfit> {
        let chosen = self.chosen();
        let mut out: Vec<Misfit> = Vec::new();
        for (i, k) in KINDS.iter().enumerate() {
            if Some(*k) == chosen {
                break;
            }
            if self.matched[i] == 0 {
                continue;
            }
            for (file, line, value) in &self.fails[i] {
                let name = kind_name(*k, &self.fit);
                let path = &samples[*file].path;
                let same = out
                    .iter()
                    .position(|m| m.line == *line && m.file == *path && m.value == *value);
                match same {
                    Some(k) => out[k].types.push(name),
                    None if out.len() < MAX_MISFITS => out.push(Misfit {
                        file: path.clone(),
                        line: *line,
                        value: crate::columns::shown(value.as_bytes()),
                        types: vec![name],
                    }),
                    None => {}
                }
            }
        }
        out.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        out
    }
}

fn kind_name(k: Kind, fit: &Fit) -> String {
    match k {
        Kind::Int32 => "int32".into(),
        Kind::Int64 => "int64".into(),
        Kind::Boolean => "boolean".into(),
        Kind::Decimal => match fit.scale {
            Some(s) => format!("decimal (scale {s})"),
            None => "decimal".into(),
        },
        Kind::Float64 => "float64".into(),
        Kind::Date => "date".into(),
        Kind::Timestamp => "timestamp".into(),
    }
}

/// Column `c` of `recs`: `nulls` are NULL when unquoted, `skip` values are left out.
fn infer(recs: &[Rec], c: usize, nulls: &[&str], skip: &[&str]) -> Stats {
    infer_over(recs.iter(), c, nulls, skip)
}

fn infer_over<'a>(
    recs: impl Iterator<Item = &'a Rec>,
    c: usize,
    nulls: &[&str],
    skip: &[&str],
) -> Stats {
    let mut st = Stats {
        alive: [true; 7],
        matched: [0; 7],
        fails: Default::default(),
        fit: Fit::default(),
        values: 0,
        nulls: 0,
    };
    for r in recs {
        let (v, quoted) = &r.fields[c];
        if v.is_empty() || (!quoted && nulls.contains(&v.as_str())) {
            st.nulls += 1;
            continue;
        }
        if !quoted && skip.contains(&v.as_str()) {
            continue;
        }
        st.values += 1;
        for (i, k) in KINDS.iter().enumerate() {
            // A refused kind is still tried for evidence until it has three misfits.
            if !st.alive[i] && st.fails[i].len() >= 3 {
                continue;
            }
            let mut fit = st.fit;
            if fits(*k, v, &mut fit) {
                st.matched[i] += 1;
                if st.alive[i] {
                    st.fit = fit;
                }
            } else {
                st.alive[i] = false;
                if st.fails[i].len() < 3 {
                    st.fails[i].push((r.file, r.line, v.clone()));
                }
            }
        }
    }
    st
}

/// Whether `v` is a value of kind `k`, given (and updating) what the column needs.
fn fits(k: Kind, v: &str, fit: &mut Fit) -> bool {
    let b = v.as_bytes();
    match k {
        Kind::Int32 => {
            plain_int(b) && value::parse_i64(b).is_some_and(|x| i32::try_from(x).is_ok())
        }
        Kind::Int64 => plain_int(b) && value::parse_i64(b).is_some(),
        // Upper-case `T` and `F` are more often codes than booleans.
        Kind::Boolean => {
            matches!(b, b"t" | b"f" | b"1" | b"0")
                || b.eq_ignore_ascii_case(b"true")
                || b.eq_ignore_ascii_case(b"false")
        }
        Kind::Decimal => {
            let Some((int_digits, scale)) = plain_decimal(b) else {
                return false;
            };
            let scale = match (fit.scale, scale) {
                (Some(s), 0) => Some(s),
                (Some(s), t) if s != t => return false,
                (_, 0) => None,
                (_, t) => Some(t),
            };
            let digits = int_digits.max(fit.int_digits);
            if digits + scale.unwrap_or(0) > 38 {
                return false;
            }
            (fit.scale, fit.int_digits) = (scale, digits);
            true
        }
        Kind::Float64 => !leading_zero(b) && v.parse::<f64>().is_ok(),
        Kind::Date => value::parse_date(b).is_some(),
        Kind::Timestamp => {
            if value::parse_timestamp_nanos(b).is_none() {
                return false;
            }
            let frac = b
                .get(19..)
                .filter(|r| r.first() == Some(&b'.'))
                .map_or(0, |r| {
                    r[1..].iter().take_while(|c| c.is_ascii_digit()).count()
                });
            fit.nanos |= frac > 6;
            fit.zone |= b.len() > 19 + if frac > 0 { frac + 1 } else { 0 };
            true
        }
    }
}

/// Digits with an optional sign, no leading zero (`007` is an identifier, not a number).
fn plain_int(b: &[u8]) -> bool {
    value::looks_integer(b) && !leading_zero(b)
}

/// Whether the integer part of a number has a leading zero (`007`, `-01.5`).
fn leading_zero(b: &[u8]) -> bool {
    let d = match b.first() {
        Some(b'-' | b'+') => &b[1..],
        _ => b,
    };
    d.len() > 1 && d[0] == b'0' && d[1].is_ascii_digit()
}

/// `[+-]digits[.digits]` (no exponent, no leading zero): (integer digits, scale).
fn plain_decimal(b: &[u8]) -> Option<(u32, u32)> {
    if leading_zero(b) {
        return None;
    }
    let d = match b.first()? {
        b'-' | b'+' => &b[1..],
        _ => b,
    };
    let (int, frac) = match memchr::memchr(b'.', d) {
        Some(k) => (&d[..k], &d[k + 1..]),
        None => (d, &d[d.len()..]),
    };
    if int.is_empty() && frac.is_empty()
        || !int.iter().all(u8::is_ascii_digit)
        || !frac.iter().all(u8::is_ascii_digit)
        || (memchr::memchr(b'.', d).is_some() && frac.is_empty())
    {
        return None;
    }
    let significant = int.iter().skip_while(|&&c| c == b'0').count();
    Some((significant as u32, frac.len() as u32))
}

/// The Arrow type of a type name as [`ColumnGuess::type_name`] writes it (for a job file):
/// `boolean`, `int16`, `int32`, `int64`, `float32`, `float64`, `decimal(P,S)`, `date`,
/// `timestamp(s|ms|us|ns)` with an optional `, UTC`, `text`; spaces and case do not
/// matter. `None` for anything else.
///
/// ```
/// use arrow_schema::{DataType, TimeUnit};
/// use etl_source_csv::guess::data_type;
/// assert_eq!(data_type("decimal(18,2)"), Some(DataType::Decimal128(18, 2)));
/// assert_eq!(data_type("Timestamp(us, UTC)"), Some(DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))));
/// assert_eq!(data_type("text"), Some(DataType::Utf8View));
/// assert_eq!(data_type("decimal(40,2)"), None);
/// ```
pub fn data_type(name: &str) -> Option<DataType> {
    let n: String = name
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    let args = |prefix: &str| {
        n.strip_prefix(prefix)?
            .strip_prefix('(')?
            .strip_suffix(')')
            .map(|a| a.split(',').map(str::to_owned).collect::<Vec<_>>())
    };
    Some(match n.as_str() {
        "boolean" => DataType::Boolean,
        "int16" => DataType::Int16,
        "int32" => DataType::Int32,
        "int64" => DataType::Int64,
        "float32" => DataType::Float32,
        "float64" => DataType::Float64,
        "date" => DataType::Date32,
        "text" => DataType::Utf8View,
        _ if n.starts_with("decimal(") => {
            let a = args("decimal")?;
            let [p, s] = a.as_slice() else { return None };
            let (p, s): (u8, i8) = (p.parse().ok()?, s.parse().ok()?);
            if !(1..=38).contains(&p) || s < 0 || s as u8 > p {
                return None;
            }
            DataType::Decimal128(p, s)
        }
        _ if n.starts_with("timestamp(") => {
            let a = args("timestamp")?;
            let unit = match a.first()?.as_str() {
                "s" => TimeUnit::Second,
                "ms" => TimeUnit::Millisecond,
                "us" => TimeUnit::Microsecond,
                "ns" => TimeUnit::Nanosecond,
                _ => return None,
            };
            match a.get(1).map(String::as_str) {
                None if a.len() == 1 => DataType::Timestamp(unit, None),
                Some("utc") if a.len() == 2 => DataType::Timestamp(unit, Some("UTC".into())),
                _ => return None,
            }
        }
        _ => return None,
    })
}

/// A header name as a SQL identifier: lower case ASCII letters, digits and `_` (camel case
/// and punctuation become `_`, accents are dropped), not starting with a digit, at most 63
/// bytes. Empty when nothing is left.
///
/// ```
/// use etl_source_csv::guess::sql_name;
/// assert_eq!(sql_name("Unit Price"), "unit_price");
/// assert_eq!(sql_name("Reporter.type"), "reporter_type");
/// assert_eq!(sql_name("Import.permit.RandomID"), "import_permit_random_id");
/// assert_eq!(sql_name("Prénom"), "prenom");
/// assert_eq!(sql_name("2019 total"), "_2019_total");
/// assert_eq!(sql_name("  "), "");
/// ```
pub fn sql_name(header: &str) -> String {
    let mut out = String::new();
    let mut prev: Option<char> = None;
    let chars: Vec<char> = header.trim().chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let c = fold_accent(c);
        for c in c.chars() {
            if c.is_ascii_alphanumeric() {
                let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
                // camelCase, and the end of an acronym (`RandomID`, `HTTPCode`).
                let camel = c.is_ascii_uppercase()
                    && prev.is_some_and(|p| {
                        p.is_ascii_lowercase()
                            || p.is_ascii_digit()
                            || (p.is_ascii_uppercase() && next_lower)
                    });
                if camel && !out.ends_with('_') {
                    out.push('_');
                }
                out.push(c.to_ascii_lowercase());
            } else if !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
            prev = Some(c);
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out.truncate(63);
    out
}

/// A Latin letter with a diacritic as its base letter(s).
fn fold_accent(c: char) -> String {
    let s = match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => "a",
        'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' => "A",
        'ç' => "c",
        'Ç' => "C",
        'è' | 'é' | 'ê' | 'ë' => "e",
        'È' | 'É' | 'Ê' | 'Ë' => "E",
        'ì' | 'í' | 'î' | 'ï' => "i",
        'Ì' | 'Í' | 'Î' | 'Ï' => "I",
        'ñ' => "n",
        'Ñ' => "N",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' => "o",
        'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' | 'Ø' => "O",
        'ù' | 'ú' | 'û' | 'ü' => "u",
        'Ù' | 'Ú' | 'Û' | 'Ü' => "U",
        'ý' | 'ÿ' => "y",
        'Ý' => "Y",
        'ß' => "ss",
        'æ' => "ae",
        'Æ' => "AE",
        'œ' => "oe",
        'Œ' => "OE",
        _ => return c.to_string(),
    };
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_numbers() {
        assert_eq!(plain_decimal(b"12.50"), Some((2, 2)));
        assert_eq!(plain_decimal(b"-0.5"), Some((0, 1)));
        assert_eq!(plain_decimal(b"7"), Some((1, 0)));
        assert_eq!(plain_decimal(b"007"), None);
        assert_eq!(plain_decimal(b"1e5"), None);
        assert_eq!(plain_decimal(b"1."), None);
        assert_eq!(plain_decimal(b"."), None);
        assert!(plain_int(b"-12") && !plain_int(b"0123") && plain_int(b"0"));
    }

    #[test]
    fn decimal_scale_is_fixed() {
        let mut f = Fit::default();
        assert!(fits(Kind::Decimal, "12.50", &mut f));
        assert!(fits(Kind::Decimal, "3", &mut f));
        assert!(!fits(Kind::Decimal, "1.5", &mut f));
        assert_eq!((f.scale, f.int_digits), (Some(2), 2));
    }
}
