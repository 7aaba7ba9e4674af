//! # etl-source-csv
//!
//! A ferry [`Extract`](etl_core::Extract) source that streams many CSV files into **typed
//! Arrow batches** with an explicit schema. Every malformed record becomes an
//! [`etl_core::Reject`] (line number, column, kind, reason, raw text) while the rest of the
//! file loads.
//!
//! * [`CsvSource`]: the files of a directory matching a glob (`trade_db_*.csv`) or an
//!   explicit list, one unit per file in natural order, read on a thread per unit through
//!   a bounded channel.
//! * [`Decoder`]: the pure push decoder underneath (bytes in, [`etl_core::Batch`]es out),
//!   usable without files. [`Header`] parses a header line.
//!
//! * Dialects ([`CsvOptions`], or [`Dialect`] from a job file): delimiter, quote (or none),
//!   backslash-style escape, UTF-8 or Latin-1 ([`Encoding`]), a header or a column list
//!   ([`HeaderMode`]), null markers (`NA`, `\N`). gzip and zstd files are read
//!   transparently ([`Compression`], by their first bytes).
//! * [`guess()`]: reads a sample of files and guesses their dialect and a schema, with the
//!   evidence (the skeleton of a job file).
//!
//! Strings are decoded into `Utf8View` columns whose long values point into one shared
//! buffer holding the batch's raw record bytes, so a string column costs 16 bytes a row
//! and no copy. By default only the empty field is NULL: `"NA"` (Namibia) is a value;
//! null markers ([`CsvOptions::with_null_markers`]) match unquoted fields only.
//!
//! Reject kinds: `field_count`, `bad_integer`, `bad_number`, `bad_decimal`, `bad_boolean`,
//! `bad_date`, `bad_timestamp`, `missing_value`, `invalid_utf8`, `nul_byte`,
//! `unterminated_quote`, `record_too_long`.
//!
//! A reject's `record` is the **line on which the record starts** (the header is line 1,
//! blank lines count, a CRLF or LF ends a line; a lone CR does not), so a quoted field that
//! spans lines gives its record the number of its first line and the next record the line
//! after its last. What is promised for encodings, NUL bytes and header names (matched by
//! name; missing, duplicate and extra names) is in [`CsvOptions`]. The test corpus
//! `tests/corpus/` holds one file per bad input and its expected outcome.
//!
//! ```
//! use std::sync::Arc;
//! use arrow_schema::{DataType, Field, Schema};
//! use etl_source_csv::Decoder;
//!
//! let schema = Arc::new(Schema::new(vec![
//!     Field::new("Id", DataType::Int64, false),
//!     Field::new("Year", DataType::Int32, false),
//!     Field::new("Code", DataType::Utf8View, true),
//! ]));
//! let mut dec = Decoder::new(schema, &["Id", "Year", "Code"]).unwrap();
//! let rows = b"\"1\",2001,\"NA\"\n\
//!              \"2\",19x5,\"CA\"\n";
//! dec.decode_eof(rows).unwrap();
//! let batch = dec.flush().unwrap().unwrap();
//! assert_eq!(batch.num_rows(), 1);
//! assert_eq!(batch.rejects[0].kind, "bad_integer");
//! assert_eq!(batch.rejects[0].record, 3);
//! ```

#![warn(missing_docs)]

mod columns;
mod decoder;
mod error;
pub mod guess;
mod input;
mod options;
mod reference;
mod source;
mod value;

pub use decoder::{Decoder, DecoderBuilder, Header};
pub use error::{CsvError, Result};
pub use guess::{Guess, guess};
pub use input::{Compression, latin1_to_utf8};
pub use options::{CsvOptions, Dialect, Encoding, HeaderMode};
pub use reference::read_pairs;
pub use source::{CsvSource, file_fingerprint, glob_files, glob_match, natural_cmp};
