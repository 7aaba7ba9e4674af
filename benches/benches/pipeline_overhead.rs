//! The pipeline runner's own cost per batch: numbers from memory, one transform-free
//! pass, into memory. `tiny_batches` (64 rows) makes the per-batch work (ledger, progress,
//! metrics) dominate; `metrics` counts into a step's
//! [`Metrics`]; `default_batches` (8,192 rows) is what runs use.
//!
//! `cargo bench -p etl-benches --bench pipeline_overhead`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etl_core::metrics::Metrics;
use etl_core::testing::{MemoryExtract, MemoryLoad};
use etl_core::{Pipeline, PipelineOptions, RunInfo};

const ROWS: u64 = 262_144;

fn run(rt: &tokio::runtime::Runtime, batch_size: usize, info: &RunInfo) -> u64 {
    rt.block_on(async {
        let extract = MemoryExtract::units(&[
            ("a", ROWS / 4),
            ("b", ROWS / 4),
            ("c", ROWS / 4),
            ("d", ROWS / 4),
        ]);
        let report = Pipeline::new(extract, MemoryLoad::default())
            .options(PipelineOptions {
                batch_size,
                parallel: 2,
                ..Default::default()
            })
            .run(info)
            .await;
        assert!(report.succeeded(), "{:?}", report.error);
        report.totals.loaded
    })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for (group, batch) in [("tiny_batches", 64), ("default_batches", 8_192)] {
        let mut g = c.benchmark_group(group);
        g.throughput(Throughput::Elements(ROWS));
        g.sample_size(20);
        g.sampling_mode(criterion::SamplingMode::Flat);
        g.measurement_time(std::time::Duration::from_secs(10));
        g.bench_function("plain", |b| {
            b.iter(|| run(&rt, batch, &RunInfo::new("bench")))
        });
        // The same with the step's metrics counting every batch and unit.
        let info = RunInfo {
            metrics: Some(Metrics::new().for_step("load")),
            ..RunInfo::new("bench")
        };
        g.bench_function("metrics", |b| b.iter(|| run(&rt, batch, &info)));
        g.finish();
    }
    // What the metrics add per batch, alone: the counters and the last-progress time.
    let step = Metrics::new().for_step("load");
    c.bench_function("metrics_per_batch", |b| {
        b.iter(|| {
            step.add_rows(64, 60, 2, 2);
            step.add_bytes(4_096);
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
