//! Hot paths of the CITES load after decoding: species mapping of a batch, and a mapped
//! batch -> binary COPY bytes. Input: rows from the deterministic CITES generator.
//!
//! `cargo bench -p etl-benches --bench cites_pipeline`

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etl_core::{Batch, Transform};
use etl_examples::cites::generate::{GenOptions, generate, known_taxa};
use etl_examples::cites::schema::{CITES_COLUMNS, cites_schema};
use etl_examples::cites::species::{Scope, SpeciesMap, SpeciesMapping};
use etl_sink_postgres::copy::{ColumnMapping, CopyEncoder};
use etl_sink_postgres::types::PgType;
use etl_source_csv::Decoder;

const ROWS: usize = 65_536;

fn decoded_batch() -> Batch {
    let dir = std::env::temp_dir().join(format!("ferry-bench-{}", std::process::id()));
    let opts = GenOptions {
        files: 1,
        rows_per_file: ROWS,
        bad_row_rate: 0.0,
        ..Default::default()
    };
    generate(&dir, &opts).expect("generate");
    let csv = std::fs::read(dir.join("trade_db_1.csv")).expect("read");
    let _ = std::fs::remove_dir_all(&dir);
    let body_start = csv.iter().position(|&b| b == b'\n').unwrap() + 1;
    let mut dec = Decoder::builder(cites_schema())
        .batch_size(ROWS)
        .build(&CITES_COLUMNS)
        .unwrap();
    dec.decode_eof(&csv[body_start..]).unwrap();
    dec.flush().unwrap().expect("one batch")
}

fn species_map() -> SpeciesMap {
    SpeciesMap::from_pairs(
        known_taxa()
            .enumerate()
            .map(|(i, t)| (t.name.to_owned(), uuid::Uuid::from_u128(i as u128 + 1))),
        &[],
    )
}

fn encoder(mapping: &SpeciesMapping) -> CopyEncoder {
    let schema = mapping.output_schema(&cites_schema()).unwrap();
    let columns = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| ColumnMapping {
            source: i,
            target: f.name().clone(),
            pg_type: match f.name().as_str() {
                "id" | "species_id" => PgType::Uuid,
                "record_id" => PgType::Text,
                "year" => PgType::Int4,
                "quantity" => PgType::Numeric,
                _ => PgType::Text,
            },
        })
        .collect();
    CopyEncoder::new(&schema, columns).unwrap()
}

fn bench(c: &mut Criterion) {
    let batch = decoded_batch();
    let mapping = SpeciesMapping::new(species_map(), Scope::default());
    let mapped = mapping.transform(batch.clone()).unwrap();
    let enc = encoder(&mapping);
    let mut probe = BytesMut::new();
    enc.encode(&mapped.data, &mut probe).unwrap();
    eprintln!(
        "cites_pipeline: {} rows in, {} mapped, {} COPY bytes ({:.0} bytes/row)",
        batch.num_rows(),
        mapped.num_rows(),
        probe.len(),
        probe.len() as f64 / mapped.num_rows() as f64
    );

    let mut g = c.benchmark_group("species_mapping");
    g.throughput(Throughput::Elements(batch.num_rows() as u64));
    g.bench_function("map_batch_65536", |b| {
        b.iter(|| black_box(mapping.transform(batch.clone()).unwrap()))
    });
    g.finish();

    let mut g = c.benchmark_group("copy_encode");
    g.throughput(Throughput::Elements(mapped.num_rows() as u64));
    g.bench_function("encode_batch_65536", |b| {
        let mut buf = BytesMut::with_capacity(probe.len() + 1024);
        b.iter(|| {
            buf.clear();
            enc.encode(&mapped.data, &mut buf).unwrap();
            black_box(buf.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
