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
//! * [`cites_schema`]: the 20 columns of the CITES trade database.
//!
//! Strings are decoded into `Utf8View` columns whose long values point into one shared
//! buffer holding the batch's raw record bytes, so a string column costs 16 bytes a row
//! and no copy. Only the empty field is NULL: `"NA"` (Namibia) is a value.
//!
//! Reject kinds: `field_count`, `bad_integer`, `bad_number`, `bad_decimal`, `bad_boolean`,
//! `bad_date`, `bad_timestamp`, `missing_value`, `invalid_utf8`, `unterminated_quote`,
//! `record_too_long`.
//!
//! ```
//! use etl_source_csv::{cites_schema, Decoder, CITES_COLUMNS};
//!
//! let mut dec = Decoder::new(cites_schema(), &CITES_COLUMNS).unwrap();
//! let rows = b"\"1\",2001,\"II\",\"Falco rusticolus\",\"Aves\",,,,\"live\",2,,\"NA\",\"CA\",,\"T\",\"W\",\"E\",,,\n\
//!              \"2\",19x5,\"II\",\"Falco rusticolus\",,,,,\"live\",1,,,,,,,,,,\n";
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
mod options;
mod source;
mod value;

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};

pub use decoder::{Decoder, DecoderBuilder, Header};
pub use error::{CsvError, Result};
pub use options::CsvOptions;
pub use source::{CsvSource, glob_match, natural_cmp};

/// The header names of the CITES trade database CSV files, in file order.
pub const CITES_COLUMNS: [&str; 20] = [
    "Id",
    "Year",
    "Appendix",
    "Taxon",
    "Class",
    "Order",
    "Family",
    "Genus",
    "Term",
    "Quantity",
    "Unit",
    "Importer",
    "Exporter",
    "Origin",
    "Purpose",
    "Source",
    "Reporter.type",
    "Import.permit.RandomID",
    "Export.permit.RandomID",
    "Origin.permit.RandomID",
];

/// The schema of the CITES trade database, with the CSV header names as field names.
///
/// `Id` Int64 and `Year` Int32 (non-null); `Quantity` Decimal128(38, 10) (nullable:
/// quantities are fractional and reach billions); `Appendix`, `Taxon`, `Term` non-null
/// Utf8View; every other column nullable Utf8View.
///
/// ```
/// let schema = etl_source_csv::cites_schema();
/// assert_eq!(schema.fields().len(), 20);
/// assert_eq!(schema.field(9).name(), "Quantity");
/// ```
pub fn cites_schema() -> SchemaRef {
    let fields = CITES_COLUMNS
        .iter()
        .map(|&name| match name {
            "Id" => Field::new(name, DataType::Int64, false),
            "Year" => Field::new(name, DataType::Int32, false),
            "Quantity" => Field::new(name, DataType::Decimal128(38, 10), true),
            "Appendix" | "Taxon" | "Term" => Field::new(name, DataType::Utf8View, false),
            _ => Field::new(name, DataType::Utf8View, true),
        })
        .collect::<Vec<_>>();
    Arc::new(Schema::new(fields))
}
