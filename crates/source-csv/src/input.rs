//! Opening a file: gzip / zstd decompression (by magic bytes) and Latin-1 transcoding,
//! with a count of the raw bytes read for progress.

use std::fs::File;
use std::io::{self, Cursor, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::options::Encoding;

/// How a file's bytes are stored, recognized by its first bytes (whatever its name).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// Plain text.
    #[default]
    None,
    /// gzip (`1F 8B`; several concatenated members are read as one stream).
    Gzip,
    /// Zstandard (`28 B5 2F FD`; several frames are read as one stream).
    Zstd,
}

impl Compression {
    /// The compression whose magic bytes start `head` (`None` for plain text).
    ///
    /// ```
    /// use etl_source_csv::Compression;
    /// assert_eq!(Compression::detect(b"\x1f\x8b\x08\x00"), Compression::Gzip);
    /// assert_eq!(Compression::detect(b"\x28\xb5\x2f\xfd"), Compression::Zstd);
    /// assert_eq!(Compression::detect(b"id,name\n"), Compression::None);
    /// ```
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// An opened file: its text as UTF-8 (or as is) after decompression and transcoding.
pub(crate) struct Input {
    pub(crate) reader: Box<dyn Read + Send>,
    pub(crate) compression: Compression,
    /// Raw bytes read from the file so far.
    raw: Arc<AtomicU64>,
    /// Whether the bytes decoded differ from the file's (compressed or transcoded).
    pub(crate) transformed: bool,
}

impl Input {
    /// Open `path`, decompressing gzip / zstd and transcoding Latin-1 to UTF-8.
    pub(crate) fn open(path: &Path, encoding: Encoding) -> io::Result<Input> {
        let raw = Arc::new(AtomicU64::new(0));
        let mut file = Counting {
            inner: File::open(path)?,
            count: raw.clone(),
        };
        let mut head = [0u8; 4];
        let mut got = 0;
        while got < head.len() {
            match file.read(&mut head[got..]) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let compression = Compression::detect(&head[..got]);
        let stream = Cursor::new(head[..got].to_vec()).chain(file);
        let reader: Box<dyn Read + Send> = match compression {
            Compression::None => Box::new(stream),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(stream)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(stream)?),
        };
        let reader: Box<dyn Read + Send> = match encoding {
            Encoding::Utf8 => reader,
            Encoding::Latin1 => Box::new(Latin1Reader::new(reader)),
        };
        Ok(Input {
            reader,
            compression,
            raw,
            transformed: compression != Compression::None || encoding != Encoding::Utf8,
        })
    }

    /// Raw bytes read from the file so far (ahead of what was decoded by the
    /// decompressor's and the reader's buffers).
    pub(crate) fn raw_read(&self) -> u64 {
        self.raw.load(Ordering::Relaxed)
    }
}

/// Counts the bytes read through it.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Latin-1 bytes in, UTF-8 out (`0x80`–`0xFF` become two bytes each).
struct Latin1Reader<R> {
    inner: R,
    raw: Vec<u8>,
    /// The second byte of a character that did not fit the last read.
    pending: Option<u8>,
}

impl<R: Read> Latin1Reader<R> {
    fn new(inner: R) -> Self {
        Latin1Reader {
            inner,
            raw: Vec::new(),
            pending: None,
        }
    }
}

impl<R: Read> Read for Latin1Reader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if let Some(b) = self.pending.take() {
            out[0] = b;
            return Ok(1);
        }
        if out.len() == 1 {
            let mut one = [0u8];
            if self.inner.read(&mut one)? == 0 {
                return Ok(0);
            }
            let mut two = Vec::with_capacity(2);
            latin1_to_utf8(&one, &mut two);
            out[0] = two[0];
            self.pending = two.get(1).copied();
            return Ok(1);
        }
        let room = out.len() / 2;
        self.raw.resize(room, 0);
        let n = self.inner.read(&mut self.raw[..room])?;
        let mut w = 0;
        for &c in &self.raw[..n] {
            if c < 0x80 {
                out[w] = c;
                w += 1;
            } else {
                out[w] = 0xC0 | (c >> 6);
                out[w + 1] = 0x80 | (c & 0x3F);
                w += 2;
            }
        }
        Ok(w)
    }
}

/// Append the Latin-1 (ISO-8859-1) text `input` to `out` as UTF-8: for a
/// [`Decoder`](crate::Decoder) fed by hand (a [`CsvSource`](crate::CsvSource) with
/// [`Encoding::Latin1`] transcodes as it reads).
///
/// ```
/// let mut out = Vec::new();
/// etl_source_csv::latin1_to_utf8(b"caf\xe9", &mut out);
/// assert_eq!(out, "café".as_bytes());
/// ```
pub fn latin1_to_utf8(input: &[u8], out: &mut Vec<u8>) {
    out.reserve(input.len());
    for &c in input {
        if c < 0x80 {
            out.push(c);
        } else {
            out.extend_from_slice(&[0xC0 | (c >> 6), 0x80 | (c & 0x3F)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_reader_transcodes_whatever_the_read_size() {
        let input: Vec<u8> = (0u8..=255).cycle().take(1000).collect();
        let mut want = Vec::new();
        latin1_to_utf8(&input, &mut want);
        assert_eq!(
            String::from_utf8(want.clone()).unwrap().chars().count(),
            1000
        );
        for size in [1, 2, 3, 7, 64, 4096] {
            let mut r = Latin1Reader::new(&input[..]);
            let mut got = Vec::new();
            let mut buf = vec![0u8; size];
            loop {
                let n = r.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            assert_eq!(got, want, "read size {size}");
        }
    }
}
