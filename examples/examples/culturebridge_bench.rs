//! Figures for BENCHMARKS.md (issue 5): export throughput of 20,000 users + 60,000 bookings
//! from the Bubble-compatible test server at 300 ms latency and 1,000 requests/minute,
//! concurrent `Created Date` windows vs sequential paging, the server's 429 count, bcrypt
//! hashes/s vs cores x the single-thread rate, and peak RSS.
//!
//! `cargo run --release --example culturebridge_bench -- [USERS] [WINDOWS] [SEQ_USERS]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use etl_core::{Pipeline, PipelineOptions, RunInfo, Secret};
use etl_examples::culturebridge::{fixtures, passwords::bcrypt_rate, schema::type_schema};
use etl_parquet::ExportLoad;
use etl_source_bubble::test_server::{Fixtures, ServerConfig, TestServer};
use etl_source_bubble::{BubbleClient, BubbleConfig, BubbleExtract, KeyMode};

fn rss_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn export(
    fx: Fixtures,
    types: &[&str],
    windows: usize,
    rpm: u32,
    dir: &std::path::Path,
) -> anyhow::Result<(u64, f64, u64, u64, u64)> {
    let cfg = ServerConfig {
        latency: Duration::from_millis(300),
        rate_limit: Some(1000),
        rate_window: Duration::from_secs(60),
        retry_after: Some(Duration::from_secs(1)),
        ..ServerConfig::default()
    };
    let server = TestServer::start(fx, cfg).await?;
    let mut c = BubbleConfig::new(server.base_url(), Secret::new(server.token()));
    c.requests_per_minute = rpm;
    let client = Arc::new(BubbleClient::new(c)?);
    let rss = rss_kb("VmRSS:");
    let t0 = Instant::now();
    let jobs = types.iter().map(|t| {
        let e = BubbleExtract::new(
            client.clone(),
            type_schema(t, KeyMode::DisplayNames, &Default::default()),
        )
        .raw(true)
        .windows(windows);
        let p = Pipeline::new(e, ExportLoad::new(dir, t).with_csv()).options(PipelineOptions {
            parallel: windows,
            batch_size: etl_examples::culturebridge::EXPORT_BATCH,
            ..Default::default()
        });
        async move { p.run(&RunInfo::new("bench")).await }
    });
    let mut records = 0;
    for r in futures::future::join_all(jobs).await {
        anyhow::ensure!(r.succeeded(), "{:?}", r.error);
        records += r.totals.loaded;
    }
    Ok((
        records,
        t0.elapsed().as_secs_f64(),
        server.requests(),
        server.throttled(),
        rss,
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Two malloc arenas: a flat peak RSS (see etl_core::mem).
    etl_core::mem::limit_malloc_arenas(2);
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|s| s.parse().ok())
        .collect();
    let users = a.first().copied().unwrap_or(20_000);
    let windows = a.get(1).copied().unwrap_or(8);
    let seq_users = a.get(2).copied().unwrap_or(5_000);
    let dir = tempfile_dir()?;
    let (fx, _) = fixtures::generate(fixtures::Sizes {
        users,
        bookings_per_user: 3,
        seed: 4,
    });
    let n = fx.things("user").len() + fx.things("booking").len();
    let rss0 = rss_kb("VmRSS:");
    println!(
        "fixtures: {} users + {} bookings = {n} things; RSS after generating them {} MiB",
        fx.things("user").len(),
        fx.things("booking").len(),
        rss0 / 1024
    );
    let ceiling = 1000.0 / 60.0 * 100.0;

    let (rec, secs, req, throttled, rss1) =
        export(fx, &["user", "booking"], windows, 1000, &dir.join("conc")).await?;
    let conc = rec as f64 / secs;
    let hwm = rss_kb("VmHWM:");
    println!(
        "concurrent ({windows} windows/type, 1000 req/min): {rec} records in {secs:.1} s = {conc:.0} records/s = {:.2} x ceiling {ceiling:.0}; {req} requests, {throttled} x 429",
        conc / ceiling
    );

    let (fx_seq, _) = fixtures::generate(fixtures::Sizes {
        users: seq_users,
        bookings_per_user: 0,
        seed: 4,
    });
    let (rec_s, secs_s, req_s, thr_s, _) =
        export(fx_seq, &["user"], 1, 1000, &dir.join("seq")).await?;
    let seq = rec_s as f64 / secs_s;
    println!(
        "sequential (1 window, same server settings): {rec_s} records in {secs_s:.1} s = {seq:.0} records/s; {req_s} requests, {thr_s} x 429"
    );
    println!("concurrent / sequential = {:.2}x", conc / seq);
    println!(
        "peak RSS {} MiB (fixtures {} MiB, server started {} MiB; the export added {} MiB for {rec} records)",
        hwm / 1024,
        rss0 / 1024,
        rss1 / 1024,
        hwm.saturating_sub(rss1) / 1024
    );

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cost = 12;
    let single = bcrypt_rate(cost, 1, 4);
    let multi = bcrypt_rate(cost, cores, 4 * cores);
    println!(
        "bcrypt cost {cost}: 1 thread {single:.2} hashes/s; {cores} threads {multi:.2} hashes/s = {:.2} x (cores x single)",
        multi / (cores as f64 * single)
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("culturebridge_bench_{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
