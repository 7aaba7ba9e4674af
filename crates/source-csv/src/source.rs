//! [`CsvSource`]: many CSV files as units, each streamed into typed batches.

use std::cmp::Ordering;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_schema::{Schema, SchemaRef};
use etl_core::{Batch, BatchStream, Extract, ExtractOptions, SizeHint, Unit};
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::decoder::{Decoder, Header};
use crate::error::{CsvError, Result};
use crate::input::Input;
use crate::options::CsvOptions;

/// Which files a [`CsvSource`] reads.
#[derive(Debug, Clone)]
enum Files {
    /// Files of `dir` whose name matches `pattern`.
    Glob { dir: PathBuf, pattern: String },
    /// These files.
    List(Vec<PathBuf>),
}

/// A source of CSV files with an explicit schema: one unit per file.
///
/// Units are named by file name (the locator is the path) and sorted in natural order
/// (`trade_db_2.csv` before `trade_db_10.csv`). Columns are matched by name in each file's
/// header; a missing, duplicate or (unless [`CsvOptions::with_ignore_extra_columns`])
/// undeclared header column stops the file with an error naming it. Every malformed record becomes an
/// [`etl_core::Reject`] with its line number; the rest of the file loads.
///
/// gzip and zstd files (whatever their names) are decompressed as they are read, and
/// Latin-1 files transcoded ([`CsvOptions::with_encoding`]); line numbers and rejects are
/// those of the text. The units' sizes and fingerprints are those of the files as stored,
/// and the batches' `consumed` bytes too: for such files a batch reports the file bytes
/// read since the previous one, which runs ahead of the rows decoded by the
/// decompressor's and the reader's buffers (progress is approximate per batch, exact in
/// total).
///
/// Decoding runs on a dedicated thread per opened unit that reads the file in chunks and
/// sends batches through a bounded channel of `ExtractOptions::buffer` batches, so memory
/// stays flat whatever the file size. Dropping the stream stops the thread.
///
/// # Examples
/// ```
/// use std::sync::Arc;
/// use arrow_schema::{DataType, Field, Schema};
/// use etl_core::{Extract, ExtractOptions};
/// use etl_source_csv::CsvSource;
/// use futures::StreamExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let schema = Arc::new(Schema::new(vec![
///     Field::new("Id", DataType::Int64, false),
///     Field::new("Taxon", DataType::Utf8View, false),
///     Field::new("Quantity", DataType::Decimal128(38, 10), true),
/// ]));
/// let dir = tempfile::tempdir()?;
/// for n in [10, 2] {
///     let row = format!("\"{n}\",\"Falco rusticolus\",1.5");
///     std::fs::write(dir.path().join(format!("trade_db_{n}.csv")), format!("Id,Taxon,Quantity\n{row}\n"))?;
/// }
/// let source = CsvSource::glob(schema, dir.path(), "trade_db_*.csv");
/// let units = source.units().await?;
/// assert_eq!(units[0].name, "trade_db_2.csv");
/// let mut stream = source.open(&units[0], ExtractOptions::default())?;
/// let batch = stream.next().await.unwrap()?;
/// assert_eq!(batch.num_rows(), 1);
/// assert_eq!(batch.records, [2]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CsvSource {
    schema: SchemaRef,
    files: Files,
    options: CsvOptions,
}

impl CsvSource {
    /// The files of `dir` whose name matches `pattern` (`*` any run of characters, `?`
    /// one character; no path separators).
    pub fn glob(schema: SchemaRef, dir: impl Into<PathBuf>, pattern: impl Into<String>) -> Self {
        CsvSource {
            schema,
            files: Files::Glob {
                dir: dir.into(),
                pattern: pattern.into(),
            },
            options: CsvOptions::default(),
        }
    }

    /// These files (their file names must be distinct).
    pub fn files<P: Into<PathBuf>>(schema: SchemaRef, files: impl IntoIterator<Item = P>) -> Self {
        CsvSource {
            schema,
            files: Files::List(files.into_iter().map(Into::into).collect()),
            options: CsvOptions::default(),
        }
    }

    /// Set the reading options.
    pub fn with_options(mut self, options: CsvOptions) -> Self {
        self.options = options;
        self
    }

    /// The reading options.
    pub fn options(&self) -> &CsvOptions {
        &self.options
    }

    /// Check the header of every file against the schema before anything is loaded (a
    /// pre-flight): the same rules as the read (columns by name, a missing, duplicate or
    /// undeclared column is an error naming the file). Reads only the headers. Returns the
    /// files checked (with their sizes, as [`CsvSource::list_units`]).
    ///
    /// # Errors
    /// The first file whose header does not fit, or that cannot be read; as
    /// [`CsvSource::list_units`].
    pub fn check_headers(&self) -> Result<Vec<Unit>> {
        let units = self.list_units()?;
        for u in &units {
            let path = PathBuf::from(&u.locator);
            let mut input =
                Input::open(&path, self.options.encoding()).map_err(|source| CsvError::Io {
                    path: path.display().to_string(),
                    source,
                })?;
            let (mut buf, mut start) = (Vec::new(), 0);
            let (h, _) = read_header(
                &mut input.reader,
                &self.schema,
                &u.name,
                &path,
                &self.options,
                &mut buf,
                &mut start,
            )?;
            Decoder::builder(self.schema.clone())
                .unit(Arc::from(u.name.as_str()))
                .options(self.options.clone())
                .build(&h.names)?;
        }
        Ok(units)
    }

    /// The units, synchronously (what [`Extract::units`] runs on the blocking pool).
    ///
    /// # Errors
    /// [`CsvError::Io`] if the directory or a file cannot be read,
    /// [`CsvError::NoFiles`] if nothing matches, [`CsvError::DuplicateUnit`] if two listed
    /// files share a name.
    pub fn list_units(&self) -> Result<Vec<Unit>> {
        let paths = match &self.files {
            Files::Glob { dir, pattern } => glob_files(dir, pattern)?,
            Files::List(list) => list.clone(),
        };
        let mut units = Vec::with_capacity(paths.len());
        for path in paths {
            let meta = std::fs::metadata(&path).map_err(|source| CsvError::Io {
                path: path.display().to_string(),
                source,
            })?;
            units.push(Unit {
                name: file_name(&path),
                locator: path.display().to_string(),
                size: Some(SizeHint::Bytes(meta.len())),
            });
        }
        units.sort_by(|a, b| natural_cmp(&a.name, &b.name));
        if let Some(w) = units.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(CsvError::DuplicateUnit {
                name: w[0].name.clone(),
            });
        }
        Ok(units)
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

impl Extract for CsvSource {
    fn name(&self) -> &str {
        "csv"
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    async fn units(&self) -> etl_core::Result<Vec<Unit>> {
        let this = self.clone();
        let units = tokio::task::spawn_blocking(move || this.list_units())
            .await
            .map_err(|e| etl_core::Error::component(etl_core::Stage::Extract, "csv", false, e))??;
        Ok(units)
    }

    /// `size=<bytes> xxh3=<hex>` of the file: its size and an xxh3-64 hash of every byte,
    /// computed on the blocking pool (a second, sequential read of a file the decoder is
    /// reading at the same time, so mostly from the page cache).
    async fn fingerprint(&self, unit: &Unit) -> etl_core::Result<Option<String>> {
        let path = PathBuf::from(&unit.locator);
        tokio::task::spawn_blocking(move || file_fingerprint(&path))
            .await
            .map_err(|e| etl_core::Error::component(etl_core::Stage::Extract, "csv", false, e))?
            .map(Some)
    }

    fn open(&self, unit: &Unit, options: ExtractOptions) -> etl_core::Result<BatchStream> {
        self.options.validate()?;
        let job = ReadJob {
            schema: self.schema.clone(),
            unit: Arc::from(unit.name.as_str()),
            path: PathBuf::from(&unit.locator),
            options: self.options.clone(),
            batch_size: options.batch_size.max(1),
        };
        let buffer = options.buffer.max(1);
        // Nothing is read before the stream is polled.
        let stream = futures::stream::once(async move {
            let (tx, rx) = mpsc::channel(buffer);
            let spawned = std::thread::Builder::new()
                .name(format!("csv:{}", job.unit))
                .spawn(move || job.run(&tx));
            match spawned {
                Ok(_) => tokio_stream(rx).boxed(),
                Err(e) => futures::stream::once(async move {
                    Err(etl_core::Error::component(
                        etl_core::Stage::Extract,
                        "csv",
                        true,
                        e,
                    ))
                })
                .boxed(),
            }
        })
        .flatten();
        Ok(stream.boxed())
    }
}

fn tokio_stream(
    mut rx: mpsc::Receiver<etl_core::Result<Batch>>,
) -> impl futures::Stream<Item = etl_core::Result<Batch>> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// One file being read on its own thread.
struct ReadJob {
    schema: SchemaRef,
    unit: Arc<str>,
    path: PathBuf,
    options: CsvOptions,
    batch_size: usize,
}

type Sender = mpsc::Sender<etl_core::Result<Batch>>;

impl ReadJob {
    fn run(self, tx: &Sender) {
        if let Err(e) = self.read(tx) {
            let _ = tx.blocking_send(Err(e.into()));
        }
    }

    /// Read the file; `Ok` also when the receiver went away (the stream was dropped).
    fn read(&self, tx: &Sender) -> Result<()> {
        let io = |source| CsvError::Io {
            path: self.path.display().to_string(),
            source,
        };
        let mut input = Input::open(&self.path, self.options.encoding()).map_err(io)?;
        let chunk = self.options.chunk_size();
        let mut buf: Vec<u8> = Vec::with_capacity(chunk);
        let mut start = 0usize;
        let (header, mut eof) = read_header(
            &mut input.reader,
            &self.schema,
            &self.unit,
            &self.path,
            &self.options,
            &mut buf,
            &mut start,
        )?;
        let mut decoder = Decoder::builder(self.schema.clone())
            .unit(self.unit.clone())
            .options(self.options.clone())
            .batch_size(self.batch_size)
            .first_line(header.next_line)
            .build(&header.names)?;
        start = header.len;
        let header_bytes = header.len as u64;
        // Header bytes count towards the first batch's `consumed`.
        let mut extra = header_bytes;
        let mut sent = false;
        // A compressed or transcoded file reports the file bytes read instead.
        let mut progress = input.transformed.then_some(0u64);
        loop {
            let n = if eof {
                decoder.decode_eof(&buf[start..])?
            } else {
                decoder.decode(&buf[start..])?
            };
            start += n;
            if decoder.capacity() == 0 {
                let raw = input.raw_read();
                if !self.send(tx, &mut decoder, &mut extra, &mut sent, &mut progress, raw)? {
                    return Ok(());
                }
                continue;
            }
            if eof {
                // At the end of the input `decode_eof` consumes everything.
                break;
            }
            eof = fill(
                &mut input.reader,
                &mut buf,
                &mut start,
                chunk,
                self.options.max_record_bytes(),
            )
            .map_err(io)?;
        }
        let raw = input.raw_read();
        if decoder.has_pending() {
            self.send(tx, &mut decoder, &mut extra, &mut sent, &mut progress, raw)?;
        } else if !sent {
            // No data rows at all: one empty batch still reports the bytes read.
            let consumed = progress.map_or(extra, |p| raw - p);
            let _ = tx.blocking_send(Ok(empty_batch(&self.schema, &self.unit, consumed)));
        }
        Ok(())
    }

    /// Flush the decoder and send the batch; `false` if the stream was dropped.
    ///
    /// `progress` is the file bytes already reported for a compressed or transcoded file,
    /// whose batches report the file bytes read since (`raw`) rather than decoded bytes:
    /// approximate per batch (the decompressor reads ahead), exact in total.
    fn send(
        &self,
        tx: &Sender,
        decoder: &mut Decoder,
        extra: &mut u64,
        sent: &mut bool,
        progress: &mut Option<u64>,
        raw: u64,
    ) -> Result<bool> {
        if let Some(mut batch) = decoder.flush()? {
            batch.consumed += std::mem::take(extra);
            if let Some(p) = progress {
                batch.consumed = raw - *p;
                *p = raw;
            }
            *sent = true;
            return Ok(tx.blocking_send(Ok(batch)).is_ok());
        }
        Ok(true)
    }
}

fn empty_batch(schema: &SchemaRef, unit: &Arc<str>, consumed: u64) -> Batch {
    let mut b = Batch::new(
        unit.clone(),
        arrow_array::RecordBatch::new_empty(schema.clone()),
        Vec::new(),
    );
    b.consumed = consumed;
    b
}

/// Drop the consumed prefix of `buf` and read about `chunk` more bytes; returns whether
/// the end of the file was reached.
/// Read `file` until its header is whole: the header, and whether the file ended (`buf`
/// holds what was read, `start` where reading stopped).
fn read_header(
    file: &mut dyn Read,
    schema: &Schema,
    unit: &str,
    path: &std::path::Path,
    options: &CsvOptions,
    buf: &mut Vec<u8>,
    start: &mut usize,
) -> Result<(Header, bool)> {
    let io = |source| CsvError::Io {
        path: path.display().to_string(),
        source,
    };
    loop {
        let eof = fill(
            file,
            buf,
            start,
            options.chunk_size(),
            options.max_record_bytes(),
        )
        .map_err(io)?;
        if let Some(h) = Header::read(unit, buf, options, schema, eof)? {
            return Ok((h, eof));
        }
        if eof {
            return Err(CsvError::NoHeader {
                unit: unit.to_string(),
            });
        }
    }
}

fn fill(
    file: &mut dyn Read,
    buf: &mut Vec<u8>,
    start: &mut usize,
    chunk: usize,
    max: usize,
) -> std::io::Result<bool> {
    buf.drain(..*start);
    *start = 0;
    let want = buf.len() + chunk.max(max.min(1 << 16));
    let mut eof = false;
    let old = buf.len();
    buf.resize(want, 0);
    let mut filled = old;
    while filled < want {
        match file.read(&mut buf[filled..]) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(k) => filled += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                buf.truncate(filled);
                return Err(e);
            }
        }
    }
    buf.truncate(filled);
    Ok(eof)
}

/// The files of `dir` whose name matches `pattern` ([`glob_match`]), in natural order of
/// their names ([`natural_cmp`]).
///
/// # Errors
/// [`CsvError::Io`] when `dir` cannot be listed, [`CsvError::NoFiles`] when nothing matches.
pub fn glob_files(dir: &Path, pattern: &str) -> Result<Vec<PathBuf>> {
    let io = |source| CsvError::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if glob_match(pattern, name) && entry.path().is_file() {
            paths.push(entry.path());
        }
    }
    if paths.is_empty() {
        return Err(CsvError::NoFiles {
            dir: dir.display().to_string(),
            pattern: pattern.to_owned(),
        });
    }
    paths.sort_by(|a, b| natural_cmp(&file_name(a), &file_name(b)));
    Ok(paths)
}

/// Whether `name` matches `pattern`: `*` any run of characters, `?` one character.
///
/// ```
/// use etl_source_csv::glob_match;
/// assert!(glob_match("trade_db_*.csv", "trade_db_12.csv"));
/// assert!(glob_match("?.csv", "a.csv"));
/// assert!(!glob_match("trade_db_*.csv", "trade_db_1.csv.gz"));
/// ```
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = name.chars().collect();
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Natural order: runs of digits compare as numbers (`file2` < `file10`); ties fall back
/// to plain string order.
///
/// ```
/// use etl_source_csv::natural_cmp;
/// use std::cmp::Ordering;
/// assert_eq!(natural_cmp("trade_db_2.csv", "trade_db_10.csv"), Ordering::Less);
/// ```
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < x.len() && j < y.len() {
        if x[i].is_ascii_digit() && y[j].is_ascii_digit() {
            let si = i;
            while i < x.len() && x[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < y.len() && y[j].is_ascii_digit() {
                j += 1;
            }
            let da = trim_zeros(&x[si..i]);
            let db = trim_zeros(&y[sj..j]);
            let ord = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
            if ord != Ordering::Equal {
                return ord;
            }
        } else {
            if x[i] != y[j] {
                return x[i].cmp(&y[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (x.len() - i).cmp(&(y.len() - j)).then_with(|| a.cmp(b))
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let k = d.iter().position(|&c| c != b'0').unwrap_or(d.len());
    &d[k..]
}

/// `size=<bytes> xxh3=<hex>` of a file (see [`CsvSource`]'s `Extract::fingerprint`).
///
/// # Errors
/// The file cannot be read.
pub fn file_fingerprint(path: &Path) -> etl_core::Result<String> {
    use std::hash::Hasher as _;
    let io = |e| etl_core::Error::io(path.display(), e);
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut hasher = twox_hash::XxHash3_64::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size: u64 = 0;
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.write(&buf[..n]);
    }
    Ok(format!("size={size} xxh3={:016x}", hasher.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*", "anything"));
        assert!(glob_match("*.csv", ".csv"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(glob_match("a*b*c", "abc"));
        assert!(!glob_match("a*b*c", "abcd"));
        assert!(glob_match("trade_db_??.csv", "trade_db_10.csv"));
        assert!(!glob_match("trade_db_??.csv", "trade_db_1.csv"));
        assert!(!glob_match("trade_db_*.csv", "other.csv"));
        assert!(glob_match("*db*", "trade_db_1.csv"));
    }

    #[test]
    fn natural_order() {
        let mut v = vec![
            "trade_db_10.csv",
            "trade_db_2.csv",
            "trade_db_1.csv",
            "trade_db_02.csv",
            "a.csv",
            "trade_db_100.csv",
        ];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            v,
            [
                "a.csv",
                "trade_db_1.csv",
                "trade_db_02.csv",
                "trade_db_2.csv",
                "trade_db_10.csv",
                "trade_db_100.csv"
            ]
        );
    }
}
