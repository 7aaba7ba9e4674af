//! CSV bytes -> typed Arrow batch for the 20 CITES columns: ferry's `Decoder` against
//! arrow-csv 60.1's `Decoder` on the same bytes into the same schema (`Utf8View` strings,
//! `Int64`/`Int32` ids and years, `Decimal128(38, 10)` quantities).
//!
//! `cargo bench -p etl-benches --bench csv_decode`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etl_examples::cites::schema::{CITES_COLUMNS, cites_schema};
use etl_source_csv::Decoder;

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

/// CPU time of this thread in nanoseconds (Linux `/proc/thread-self/schedstat`), so the
/// figure does not depend on how busy the shared machine is.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Rows per second of CPU time over `iters` runs of `f`.
fn cpu_rows_per_sec(iters: u32, mut f: impl FnMut() -> usize) -> Option<f64> {
    f();
    let t0 = thread_cpu_ns()?;
    let mut rows = 0;
    for _ in 0..iters {
        rows += f();
    }
    let ns = thread_cpu_ns()? - t0;
    Some(rows as f64 / (ns as f64 / 1e9))
}

fn bench(c: &mut Criterion) {
    let csv = cites_csv(ROWS);
    let header_len = csv.iter().position(|&b| b == b'\n').unwrap() + 1;
    let body = &csv[header_len..];
    assert_eq!(ferry(body), ROWS);
    assert_eq!(arrow_csv(&csv), ROWS);
    eprintln!(
        "csv_decode: {ROWS} rows, {} bytes ({:.0} bytes/row)",
        csv.len(),
        csv.len() as f64 / ROWS as f64
    );
    if let (Some(f), Some(a)) = (
        cpu_rows_per_sec(10, || ferry(body)),
        cpu_rows_per_sec(10, || arrow_csv(&csv)),
    ) {
        eprintln!(
            "csv_decode CPU time: ferry {:.2} M rows/s, arrow-csv {:.2} M rows/s, ratio {:.2}x",
            f / 1e6,
            a / 1e6,
            f / a
        );
    }
    let mut g = c.benchmark_group("csv_decode");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.sample_size(20);
    g.bench_function("ferry_decoder", |b| b.iter(|| ferry(black_box(body))));
    g.bench_function("arrow_csv_decoder", |b| {
        b.iter(|| arrow_csv(black_box(&csv)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
