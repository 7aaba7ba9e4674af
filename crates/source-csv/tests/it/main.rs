//! Integration tests of etl-source-csv (one binary; modules by subject).

mod corpus;
mod decoder;
mod dialect;
mod guess;
mod props;
mod source;

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use etl_core::{Batch, Reject};
use etl_source_csv::{CsvError, CsvOptions, Decoder, Header};

/// The header names of the CITES trade database CSV files, in file order (a local copy of
/// the example's: the crate holds no domain schema).
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

/// The CITES schema the tests decode with (a local copy of the example's).
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

/// Path of a fixture.
pub fn data(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The schema of `rejects.csv`: one column of every supported kind.
pub fn typed_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("flag", DataType::Boolean, true),
        Field::new("day", DataType::Date32, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new("amount", DataType::Decimal128(10, 2), true),
        Field::new("score", DataType::Float64, true),
        Field::new("name", DataType::Utf8View, false),
        Field::new("note", DataType::Utf8, true),
        Field::new("small", DataType::Int16, true),
    ]))
}

/// Decode a whole file (header included) feeding it `chunk` bytes at a time, the way a
/// reader with a growing buffer does.
pub fn decode_in_chunks(
    schema: SchemaRef,
    input: &[u8],
    chunk: usize,
    batch_size: usize,
    options: CsvOptions,
) -> Result<Vec<Batch>, CsvError> {
    decode_unit_in_chunks("t.csv", schema, input, chunk, batch_size, options)
}

/// [`decode_in_chunks`] with the unit (file) name put in rejects and errors.
pub fn decode_unit_in_chunks(
    unit: &str,
    schema: SchemaRef,
    input: &[u8],
    chunk: usize,
    batch_size: usize,
    options: CsvOptions,
) -> Result<Vec<Batch>, CsvError> {
    let mut buf = Vec::new();
    let mut fed = 0;
    let mut feed = |buf: &mut Vec<u8>| {
        let k = (fed + chunk).min(input.len());
        buf.extend_from_slice(&input[fed..k]);
        fed = k;
        fed == input.len()
    };
    let mut eof = input.is_empty();
    let header = loop {
        if let Some(h) = Header::parse(unit, &buf, &options, eof)? {
            break h;
        }
        eof = feed(&mut buf);
    };
    let mut dec = Decoder::builder(schema)
        .unit(unit)
        .options(options)
        .batch_size(batch_size)
        .first_line(header.next_line)
        .build(&header.names)?;
    buf.drain(..header.len);
    let mut out = Vec::new();
    loop {
        let n = if eof {
            dec.decode_eof(&buf)?
        } else {
            dec.decode(&buf)?
        };
        buf.drain(..n);
        if dec.capacity() == 0 {
            out.extend(dec.flush()?);
            continue;
        }
        if eof {
            assert!(buf.is_empty(), "decode_eof consumes everything");
            break;
        }
        eof = feed(&mut buf);
    }
    out.extend(dec.flush()?);
    Ok(out)
}

/// Every row as (line, CSV rendering), and every reject, across batches.
pub fn flatten(batches: &[Batch]) -> (Vec<(u64, String)>, Vec<Reject>) {
    let mut rows = Vec::new();
    let mut rejects = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            rows.push((b.records[r], etl_core::batch::render_row(&b.data, r)));
        }
        rejects.extend(b.rejects.iter().cloned());
    }
    (rows, rejects)
}
