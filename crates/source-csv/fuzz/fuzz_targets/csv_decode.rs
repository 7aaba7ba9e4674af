//! Fuzz the CSV decoder: any bytes after a fixed header, with typed columns, decoded
//! whole and in small pieces with small batches. It must never panic, and both ways must
//! give the same rows and rejects.
#![no_main]

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, TimeUnit};
use etl_core::Batch;
use etl_source_csv::{CsvOptions, Decoder, Header};
use libfuzzer_sys::fuzz_target;

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8View, true),
        Field::new("note", DataType::Utf8, true),
        Field::new("amount", DataType::Decimal128(10, 2), true),
        Field::new("day", DataType::Date32, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
        Field::new("flag", DataType::Boolean, true),
    ]))
}

/// Every row rendered and every reject, in order.
fn decode(input: &[u8], chunk: usize, batch: usize) -> Option<(Vec<String>, Vec<String>)> {
    let opts = CsvOptions::default()
        .with_max_record_bytes(256)
        .with_ignore_extra_columns(true);
    let mut fed = 0;
    let mut buf = Vec::new();
    let mut eof = input.is_empty();
    let header = loop {
        match Header::parse("f.csv", &buf, &opts, eof) {
            Ok(Some(h)) => break h,
            Ok(None) => {}
            Err(_) => return None,
        }
        let k = (fed + chunk).min(input.len());
        buf.extend_from_slice(&input[fed..k]);
        fed = k;
        eof = fed == input.len();
    };
    let mut dec = Decoder::builder(schema())
        .options(opts)
        .batch_size(batch)
        .first_line(header.next_line)
        .build(&header.names)
        .ok()?;
    buf.drain(..header.len);
    let mut batches: Vec<Batch> = Vec::new();
    loop {
        let n = if eof {
            dec.decode_eof(&buf)
        } else {
            dec.decode(&buf)
        }
        .unwrap();
        buf.drain(..n);
        if dec.capacity() == 0 {
            batches.extend(dec.flush().unwrap());
            continue;
        }
        if eof {
            assert!(buf.is_empty());
            break;
        }
        let k = (fed + chunk).min(input.len());
        buf.extend_from_slice(&input[fed..k]);
        fed = k;
        eof = fed == input.len();
    }
    batches.extend(dec.flush().unwrap());
    let mut rows = Vec::new();
    let mut rejects = Vec::new();
    for b in &batches {
        for r in 0..b.num_rows() {
            rows.push(format!(
                "{}: {}",
                b.records[r],
                etl_core::batch::render_row(&b.data, r)
            ));
        }
        rejects.extend(
            b.rejects
                .iter()
                .map(|j| format!("{} {} {}", j.record, j.kind, j.reason)),
        );
    }
    Some((rows, rejects))
}

fuzz_target!(|data: &[u8]| {
    let mut input = b"id,name,note,amount,day,ts,flag\n".to_vec();
    input.extend_from_slice(data);
    let whole = decode(&input, input.len() + 1, 1 << 16);
    let pieces = decode(&input, 3, 2);
    assert_eq!(whole, pieces);
});
