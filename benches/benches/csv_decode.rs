//! CSV bytes -> typed Arrow batch for the 20 CITES columns: ferry's `Decoder` against
//! arrow-csv 60.1's `Decoder` and against csv-async 1.3's `AsyncReader` (tokio) on the
//! same bytes into the same schema (`Utf8View` strings, `Int64`/`Int32` ids and years,
//! `Decimal128(38, 10)` quantities).
//!
//! `cargo bench -p etl-benches --bench csv_decode`

use std::hint::black_box;
use std::sync::Arc;

use arrow_array::builder::{Decimal128Builder, Int32Builder, Int64Builder, StringViewBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etl_core::codec::{Rounding, parse_decimal};
use etl_examples::cites::schema::{CITES_COLUMNS, cites_schema};
use etl_source_csv::Decoder;
use tokio::runtime::Runtime;

const ROWS: usize = 100_000;
const BATCH: usize = 65_536;

/// ~100 000 CITES-shaped rows: every text field quoted, `Year` and `Quantity` unquoted.
fn cites_csv(rows: usize) -> Vec<u8> {
    const TAXA: [(&str, &str, &str, &str, &str); 6] = [
        (
            "Falco rusticolus",
            "Aves",
            "Falconiformes",
            "Falconidae",
            "Falco",
        ),
        (
            "Ursus maritimus",
            "Mammalia",
            "Carnivora",
            "Ursidae",
            "Ursus",
        ),
        (
            "Branta canadensis leucopareia",
            "Aves",
            "Anseriformes",
            "Anatidae",
            "Branta",
        ),
        (
            "Nyctea scandiaca",
            "Aves",
            "Strigiformes",
            "Strigidae",
            "Nyctea",
        ),
        (
            "Odobenus rosmarus",
            "Mammalia",
            "Carnivora",
            "Odobenidae",
            "Odobenus",
        ),
        (
            "Monodon monoceros",
            "Mammalia",
            "Cetacea",
            "Monodontidae",
            "Monodon",
        ),
    ];
    const TERMS: [&str; 5] = ["live", "skins", "tusks", "specimens", "feathers"];
    const ISO: [&str; 8] = ["NA", "CA", "US", "GB", "DE", "RU", "NO", "DK"];
    const QTY: [&str; 6] = ["1", "2.5", "0.25", "1500000000.75", "12", "3.125"];
    let mut out = CITES_COLUMNS.join(",").into_bytes();
    out.push(b'\n');
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for i in 0..rows {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let r = x as usize;
        let (taxon, class, order, family, genus) = TAXA[r % TAXA.len()];
        let permit = if !r.is_multiple_of(3) {
            format!("{:010x}", x >> 24)
        } else {
            String::new()
        };
        let row = format!(
            "\"{id}\",{year},\"{app}\",\"{taxon}\",\"{class}\",\"{order}\",\"{family}\",\"{genus}\",\"{term}\",{qty},\"{unit}\",\"{imp}\",\"{exp}\",\"{orig}\",\"{purpose}\",\"{source}\",\"{rep}\",\"\",\"{permit}\",\"\"\n",
            id = 9_100_000_000u64 + i as u64,
            year = 1975 + r % 50,
            app = ["I", "II", "III"][r % 3],
            term = TERMS[(r >> 3) % TERMS.len()],
            qty = QTY[(r >> 5) % QTY.len()],
            unit = if r.is_multiple_of(4) { "kg" } else { "" },
            imp = ISO[(r >> 7) % ISO.len()],
            exp = ISO[(r >> 10) % ISO.len()],
            orig = if r.is_multiple_of(5) {
                ISO[(r >> 13) % ISO.len()]
            } else {
                ""
            },
            purpose = ["T", "S", "P", "Q", "H"][(r >> 16) % 5],
            source = ["W", "C", "A", "F"][(r >> 19) % 4],
            rep = if r.is_multiple_of(2) { "E" } else { "I" },
        );
        out.extend_from_slice(row.as_bytes());
    }
    out
}

fn ferry(body: &[u8]) -> usize {
    let mut dec = Decoder::builder(cites_schema())
        .batch_size(BATCH)
        .build(&CITES_COLUMNS)
        .unwrap();
    let mut rows = 0;
    let mut pos = 0;
    loop {
        pos += dec.decode_eof(&body[pos..]).unwrap();
        let Some(batch) = dec.flush().unwrap() else {
            break;
        };
        assert!(batch.rejects.is_empty());
        rows += batch.num_rows();
        black_box(&batch);
        if pos == body.len() && !dec.has_pending() {
            break;
        }
    }
    rows
}

fn arrow_csv(csv: &[u8]) -> usize {
    let mut dec = arrow_csv::ReaderBuilder::new(cites_schema())
        .with_header(true)
        .with_batch_size(BATCH)
        .build_decoder();
    let mut rows = 0;
    let mut pos = 0;
    loop {
        let n = dec.decode(&csv[pos..]).unwrap();
        pos += n;
        if n == 0 || dec.capacity() == 0 {
            match dec.flush().unwrap() {
                Some(b) => {
                    rows += b.num_rows();
                    black_box(&b);
                }
                None if n == 0 => break,
                None => {}
            }
        }
    }
    rows
}

/// The columns of one batch being built from csv-async records: what ferry's decoder does
/// for the same schema (integers parsed without allocation, decimals through the same
/// `etl_core::codec::parse_decimal`, strings checked as UTF-8 and appended to `Utf8View`
/// builders, only the empty field NULL, the line of every record kept).
struct AsyncColumns {
    schema: SchemaRef,
    id: Int64Builder,
    year: Int32Builder,
    quantity: Decimal128Builder,
    text: Vec<StringViewBuilder>,
    lines: Vec<u64>,
}

impl AsyncColumns {
    fn new(schema: SchemaRef) -> Self {
        AsyncColumns {
            schema,
            id: Int64Builder::with_capacity(BATCH),
            year: Int32Builder::with_capacity(BATCH),
            quantity: Decimal128Builder::with_capacity(BATCH)
                .with_precision_and_scale(38, 10)
                .unwrap(),
            text: (0..17)
                .map(|_| StringViewBuilder::with_capacity(BATCH))
                .collect(),
            lines: Vec::with_capacity(BATCH),
        }
    }

    /// Appends one record (the 20 fields in `CITES_COLUMNS` order); `false` when a field
    /// would be a reject in ferry (none is in this input).
    fn push(&mut self, rec: &csv_async::ByteRecord) -> bool {
        if rec.len() != CITES_COLUMNS.len() {
            return false;
        }
        self.lines.push(rec.position().map_or(0, |p| p.line()));
        let mut text = self.text.iter_mut();
        for (i, field) in rec.iter().enumerate() {
            match i {
                0 => match parse_int(field) {
                    Some(v) => self.id.append_value(v),
                    None => return false,
                },
                1 => match parse_int(field).and_then(|v| i32::try_from(v).ok()) {
                    Some(v) => self.year.append_value(v),
                    None => return false,
                },
                9 if field.is_empty() => self.quantity.append_null(),
                9 => match parse_decimal(field, 38, 10, Rounding::Exact) {
                    Ok(v) => self.quantity.append_value(v),
                    Err(_) => return false,
                },
                _ => {
                    let b = text.next().unwrap();
                    let Ok(s) = std::str::from_utf8(field) else {
                        return false;
                    };
                    match (s.is_empty(), i) {
                        // Appendix, Taxon, Term: non-null columns.
                        (true, 2 | 3 | 8) => return false,
                        (true, _) => b.append_null(),
                        (false, _) => b.append_value(s),
                    }
                }
            }
        }
        true
    }

    fn finish(&mut self) -> RecordBatch {
        let mut text = self.text.iter_mut();
        let columns: Vec<ArrayRef> = (0..CITES_COLUMNS.len())
            .map(|i| -> ArrayRef {
                match i {
                    0 => Arc::new(self.id.finish()),
                    1 => Arc::new(self.year.finish()),
                    9 => Arc::new(self.quantity.finish()),
                    _ => Arc::new(text.next().unwrap().finish()),
                }
            })
            .collect();
        self.lines.clear();
        RecordBatch::try_new(self.schema.clone(), columns).unwrap()
    }
}

/// A signed decimal integer without allocation (ferry's fast path: at most 18 digits).
fn parse_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let v = digits.iter().try_fold(0i64, |v, &b| {
        let d = b.wrapping_sub(b'0');
        (d <= 9).then_some(v * 10 + i64::from(d))
    })?;
    Some(if neg { -v } else { v })
}

/// csv-async's `AsyncReader` over the same bytes (header checked, one reused
/// `ByteRecord`, batches of `BATCH` rows), on a current-thread tokio runtime so the
/// thread's CPU time is the decode's.
fn csv_async(csv: &[u8], rt: &Runtime) -> usize {
    rt.block_on(async {
        let mut rdr = csv_async::AsyncReaderBuilder::new()
            .has_headers(true)
            .create_reader(csv);
        let header = rdr.byte_headers().await.unwrap();
        assert!(header.iter().eq(CITES_COLUMNS.iter().map(|c| c.as_bytes())));
        let mut cols = AsyncColumns::new(cites_schema());
        let mut rec = csv_async::ByteRecord::new();
        let mut rows = 0;
        while rdr.read_byte_record(&mut rec).await.unwrap() {
            assert!(cols.push(&rec), "a reject at {:?}", rec.position());
            if cols.lines.len() == BATCH {
                rows += black_box(cols.finish()).num_rows();
            }
        }
        if !cols.lines.is_empty() {
            rows += black_box(cols.finish()).num_rows();
        }
        rows
    })
}

/// CPU time of this thread in nanoseconds (Linux `/proc/thread-self/schedstat`), so the
/// figure does not depend on how busy the shared machine is.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Rows per second of CPU time of each decoder over `rounds` rounds, the decoders taking
/// turns within each round (so a change in the machine's load hits them alike).
fn cpu_rows_per_sec(rounds: u32, decoders: &mut [&mut dyn FnMut() -> usize]) -> Option<Vec<f64>> {
    let mut rows = vec![0usize; decoders.len()];
    let mut ns = vec![0u64; decoders.len()];
    for f in decoders.iter_mut() {
        f();
    }
    for _ in 0..rounds {
        for (i, f) in decoders.iter_mut().enumerate() {
            let t0 = thread_cpu_ns()?;
            rows[i] += f();
            ns[i] += thread_cpu_ns()? - t0;
        }
    }
    Some(
        rows.iter()
            .zip(&ns)
            .map(|(&r, &n)| r as f64 / (n as f64 / 1e9))
            .collect(),
    )
}

fn bench(c: &mut Criterion) {
    let csv = cites_csv(ROWS);
    let header_len = csv.iter().position(|&b| b == b'\n').unwrap() + 1;
    let body = &csv[header_len..];
    assert_eq!(ferry(body), ROWS);
    assert_eq!(arrow_csv(&csv), ROWS);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(csv_async(&csv, &rt), ROWS);
    eprintln!(
        "csv_decode: {ROWS} rows, {} bytes ({:.0} bytes/row)",
        csv.len(),
        csv.len() as f64 / ROWS as f64
    );
    if let Some(r) = cpu_rows_per_sec(
        10,
        &mut [&mut || ferry(body), &mut || arrow_csv(&csv), &mut || {
            csv_async(&csv, &rt)
        }],
    ) {
        eprintln!(
            "csv_decode CPU time (interleaved): ferry {:.2} M rows/s, arrow-csv {:.2} M rows/s \
             (ferry {:.2}x), csv-async {:.2} M rows/s (ferry {:.2}x)",
            r[0] / 1e6,
            r[1] / 1e6,
            r[0] / r[1],
            r[2] / 1e6,
            r[0] / r[2]
        );
    }
    let mut g = c.benchmark_group("csv_decode");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.sample_size(20);
    g.bench_function("ferry_decoder", |b| b.iter(|| ferry(black_box(body))));
    g.bench_function("arrow_csv_decoder", |b| {
        b.iter(|| arrow_csv(black_box(&csv)))
    });
    g.bench_function("csv_async_reader", |b| {
        b.iter(|| csv_async(black_box(&csv), &rt))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
