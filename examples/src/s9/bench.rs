//! `s9_sales --bench`: items/s loading the transformed S9 items into a fresh local dynalite,
//! three ways in one run: ferry's sink (the load phase's pipeline), a minimal concurrent
//! writer (the server's ceiling), and sequential 25-item calls (the seed's single-threaded
//! `batch_writer`). Needs `data/transformed/` from an earlier run. With
//! `--bench-latency-ms`, every call crosses a [`LatencyProxy`] holding each response that
//! long (a network round trip to DynamoDB).

use std::time::{Duration, Instant};

use etl_core::{Pipeline, PipelineOptions, RunInfo};
use etl_sink_dynamodb::admin::{count_items, ensure_table, static_client};
use etl_sink_dynamodb::aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use etl_sink_dynamodb::dynalite::Dynalite;
use etl_sink_dynamodb::mapping::{MappingOptions, items_from_batch};
use etl_sink_dynamodb::{DynamoLoad, ItemCheck, ItemWriter, JsonCheckpoint, WriteOptions};
use etl_testkit::LatencyProxy;
use futures::StreamExt;
use serde_json::json;

use super::transform::Entity;
use super::{Args, keys, pq, table_spec};

/// Run the three writers; prints one JSON line per method and returns them.
pub async fn bench(args: &Args) -> anyhow::Result<Vec<serde_json::Value>> {
    let concurrency = args.concurrency.unwrap_or(32);
    let files: Vec<(Entity, std::path::PathBuf)> = Entity::ALL
        .iter()
        .map(|e| {
            (
                *e,
                args.data_dir
                    .join("transformed")
                    .join(format!("{}.parquet", e.name())),
            )
        })
        .collect();
    for (_, f) in &files {
        anyhow::ensure!(
            f.exists(),
            "{} is missing: run s9_sales once first",
            f.display()
        );
    }
    let mut out = Vec::new();
    for method in ["ferry", "ceiling", "sequential"] {
        let dl = Dynalite::start().await?;
        // A network round trip in front of the local server, when asked: DynamoDB is
        // remote, and concurrency pays off against latency, not against a saturated CPU.
        let proxy = match args.bench_latency_ms {
            0 => None,
            ms => Some(LatencyProxy::start(dl.port(), Duration::from_millis(ms)).await?),
        };
        let client = match &proxy {
            Some(p) => static_client(&p.endpoint(), "us-east-1", None),
            None => dl.client(None),
        };
        let table = "BenchTable";
        ensure_table(&client, &table_spec(table)).await?;
        let t = Instant::now();
        let mut items = 0u64;
        match method {
            "ferry" => {
                let ckpt = tempfile_path();
                for (e, f) in &files {
                    let writer = ItemWriter::new(
                        client.clone(),
                        table,
                        keys(),
                        WriteOptions {
                            concurrency,
                            ..Default::default()
                        },
                    );
                    let sink = DynamoLoad::new(
                        writer,
                        MappingOptions::default(),
                        JsonCheckpoint::new(&ckpt, format!("bench:{}", e.name())),
                    );
                    let report = Pipeline::new(pq::ParquetExtract::open(e.name(), f)?, sink)
                        .transform(ItemCheck::new(keys(), MappingOptions::default()))
                        .options(PipelineOptions {
                            batch_size: 10_000,
                            ..Default::default()
                        })
                        .run(&RunInfo::new("s9_bench"))
                        .await;
                    anyhow::ensure!(report.succeeded(), "{:?}", report.error);
                    items += report.totals.loaded;
                }
                let _ = std::fs::remove_file(&ckpt);
            }
            _ => {
                let c = if method == "ceiling" { concurrency } else { 1 };
                for (_, f) in &files {
                    for batch in pq::read_all(f)? {
                        let reqs: Vec<WriteRequest> =
                            items_from_batch(&batch, &MappingOptions::default())
                                .into_iter()
                                .filter_map(Result::ok)
                                .map(|i| {
                                    WriteRequest::builder()
                                        .put_request(
                                            PutRequest::builder()
                                                .set_item(Some(i))
                                                .build()
                                                .expect("item"),
                                        )
                                        .build()
                                })
                                .collect();
                        // Duplicate keys in one call are refused by the server: send one
                        // request per key per call, as the seed's batch_writer would dedupe.
                        let chunks: Vec<Vec<WriteRequest>> = dedup_chunks(reqs);
                        items += chunks.iter().map(|c| c.len() as u64).sum::<u64>();
                        let mut calls = futures::stream::iter(chunks.into_iter().map(|chunk| {
                            let client = client.clone();
                            async move {
                                let mut pending = chunk;
                                loop {
                                    let o = client
                                        .batch_write_item()
                                        .request_items(table, pending)
                                        .send()
                                        .await?;
                                    match o.unprocessed_items.and_then(|mut m| m.remove(table)) {
                                        Some(rest) if !rest.is_empty() => pending = rest,
                                        _ => return anyhow::Ok(()),
                                    }
                                }
                            }
                        }))
                        .buffer_unordered(c);
                        while let Some(r) = calls.next().await {
                            r?;
                        }
                    }
                }
            }
        }
        let secs = t.elapsed().as_secs_f64();
        let stored = count_items(&client, table, None, 4).await?;
        let line = json!({
            "method": method,
            "concurrency": if method == "sequential" { 1 } else { concurrency },
            "latency_ms": args.bench_latency_ms,
            "items": items,
            "stored": stored,
            "seconds": (secs * 100.0).round() / 100.0,
            "items_per_s": (items as f64 / secs).round(),
        });
        println!("{line}");
        out.push(line);
        drop(proxy);
        dl.stop().await;
    }
    Ok(out)
}

fn tempfile_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("s9-bench-{}.json", std::process::id()))
}

fn dedup_chunks(reqs: Vec<WriteRequest>) -> Vec<Vec<WriteRequest>> {
    let mut out: Vec<Vec<WriteRequest>> = Vec::new();
    let mut cur: Vec<WriteRequest> = Vec::new();
    let mut keys_in: std::collections::HashSet<String> = Default::default();
    for r in reqs {
        let k = r
            .put_request()
            .map(|p| super::checks::item_key(p.item()))
            .unwrap_or_default();
        if cur.len() == 25 || keys_in.contains(&k) {
            out.push(std::mem::take(&mut cur));
            keys_in.clear();
        }
        keys_in.insert(k);
        cur.push(r);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}
