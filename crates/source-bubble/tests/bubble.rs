//! The client against the Bubble-compatible test server (real HTTP on 127.0.0.1).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use etl_core::{Extract, ExtractOptions, Pipeline, RunInfo, Secret};
use etl_parquet::{ExportLoad, ParquetExtract, csv_path, parquet_path};
use etl_source_bubble::test_server::{Fixtures, ServerConfig, TestServer};
use etl_source_bubble::{
    BubbleClient, BubbleConfig, BubbleError, BubbleExtract, FieldKind, FieldSpec, KeyMode,
    PageQuery, TypeSchema, format_datetime,
};
use futures::StreamExt;
use serde_json::{Map, Value, json};

/// `n` things of type `thing`; `per_ms` things share each `Created Date` (ties).
fn things(n: usize, per_ms: usize) -> Vec<Map<String, Value>> {
    let base = 1_708_327_130_811i64;
    (0..n)
        .map(|i| {
            let ms = base + (i / per_ms) as i64 * 1000;
            let created = chrono::DateTime::from_timestamp_millis(ms).unwrap();
            let mut m = Map::new();
            m.insert(
                "_id".into(),
                json!(format!("{ms}x{:018}", i * 7919 % 1_000_003)),
            );
            m.insert("Created Date".into(), json!(format_datetime(created)));
            m.insert("Modified Date".into(), json!(format_datetime(created)));
            m.insert("name".into(), json!(format!("thing {i}")));
            m.insert("Hourly Rate".into(), json!(25 + (i % 50) as i64));
            m.insert("tags".into(), json!(["a", format!("t{}", i % 3)]));
            m
        })
        .collect()
}

fn id_keys() -> HashMap<String, String> {
    HashMap::from([
        ("name".to_owned(), "name_text".to_owned()),
        ("Hourly Rate".to_owned(), "hourly_rate_number".to_owned()),
        ("tags".to_owned(), "tags_list_text".to_owned()),
    ])
}

fn spec(mode: KeyMode) -> TypeSchema {
    TypeSchema::new("thing", mode)
        .field(FieldSpec::new("name", FieldKind::Text))
        .field(
            FieldSpec::new(
                "rate",
                FieldKind::Decimal {
                    precision: 10,
                    scale: 2,
                },
            )
            .key("Hourly Rate")
            .id_key("hourly_rate_number"),
        )
        .field(FieldSpec::new("tags", FieldKind::TextList))
}

async fn server(n: usize, per_ms: usize, config: ServerConfig) -> TestServer {
    let mut f = Fixtures::new();
    f.insert("thing", things(n, per_ms), id_keys());
    TestServer::start(f, config).await.unwrap()
}

fn client(s: &TestServer, tune: impl FnOnce(&mut BubbleConfig)) -> Arc<BubbleClient> {
    let mut c = BubbleConfig::new(s.base_url(), Secret::new(s.token()));
    c.requests_per_minute = 600_000;
    c.backoff_base = Duration::from_millis(20);
    c.backoff_max = Duration::from_millis(200);
    tune(&mut c);
    Arc::new(BubbleClient::new(c).unwrap())
}

/// Every `_id` the extract yields over all its units, with duplicates.
async fn extract_ids(e: &BubbleExtract) -> etl_core::Result<Vec<String>> {
    let mut ids = Vec::new();
    for unit in e.units().await? {
        let mut s = e.open(
            &unit,
            ExtractOptions {
                batch_size: 250,
                buffer: 1,
            },
        )?;
        while let Some(b) = s.next().await {
            let b = b?;
            assert!(b.rejects.is_empty(), "{:?}", b.rejects);
            let col = b.data.column(0).as_string::<i32>();
            ids.extend(col.iter().map(|v| v.unwrap().to_owned()));
        }
    }
    Ok(ids)
}

fn assert_exactly_once(ids: &[String], want: &[Map<String, Value>]) {
    let set: HashSet<&String> = ids.iter().collect();
    assert_eq!(set.len(), ids.len(), "duplicates returned");
    let want: HashSet<&str> = want.iter().map(|t| t["_id"].as_str().unwrap()).collect();
    let got: HashSet<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(got, want, "missing or extra things");
}

#[tokio::test]
async fn keyset_paging_passes_the_offset_cap_with_unstable_ties() {
    let cfg = ServerConfig {
        offset_cap: 500,
        ..ServerConfig::default()
    };
    let s = server(3000, 3, cfg).await;
    let c = client(&s, |_| {});

    // offset paging, as the original exporter did, silently stops at the cap
    let mut offset_total = 0;
    let mut cursor = 0;
    loop {
        let q = PageQuery {
            cursor,
            limit: 100,
            ..PageQuery::default()
        };
        let p = c.fetch_page("thing", &q, 1).await.unwrap();
        if p.results.is_empty() {
            assert!(p.remaining > 0, "the server claims more remain");
            break;
        }
        offset_total += p.results.len();
        cursor += p.results.len() as u64;
    }
    assert_eq!(offset_total, 500);

    let want = things(3000, 3);
    for windows in [1, 4] {
        let e = BubbleExtract::new(c.clone(), spec(KeyMode::DisplayNames)).windows(windows);
        let ids = extract_ids(&e).await.unwrap();
        assert_exactly_once(&ids, &want);
    }
}

#[tokio::test]
async fn a_tie_group_larger_than_a_page_is_walked_with_the_tie_break() {
    let cfg = ServerConfig {
        offset_cap: 500,
        honor_tie_break: true,
        ..ServerConfig::default()
    };
    let s = server(700, 250, cfg).await;
    let e = BubbleExtract::new(client(&s, |_| {}), spec(KeyMode::DisplayNames));
    assert_exactly_once(&extract_ids(&e).await.unwrap(), &things(700, 250));
}

#[tokio::test]
async fn both_key_modes_give_the_same_batches() {
    let mut batches = Vec::new();
    for mode in [KeyMode::DisplayNames, KeyMode::GeneratedIds] {
        let cfg = ServerConfig {
            key_mode: mode,
            honor_tie_break: true,
            ..ServerConfig::default()
        };
        let s = server(150, 1, cfg).await;
        let e = BubbleExtract::new(client(&s, |_| {}), spec(mode));
        let unit = e.units().await.unwrap().remove(0);
        let mut st = e
            .open(
                &unit,
                ExtractOptions {
                    batch_size: 1000,
                    buffer: 1,
                },
            )
            .unwrap();
        let b = st.next().await.unwrap().unwrap();
        assert_eq!(b.num_rows(), 150);
        assert_eq!(b.data.column(3).null_count(), 0, "rate decoded in {mode:?}");
        assert_eq!(b.data.column(5).null_count(), 0, "tags decoded in {mode:?}");
        batches.push(b.data);
    }
    assert_eq!(batches[0], batches[1]);
}

#[tokio::test]
async fn throttling_is_retried_honoring_retry_after() {
    let cfg = ServerConfig {
        rate_limit: Some(5),
        rate_window: Duration::from_millis(500),
        retry_after: Some(Duration::from_millis(300)),
        ..ServerConfig::default()
    };
    let s = server(1000, 1, cfg).await;
    let c = client(&s, |_| {});
    let e = BubbleExtract::new(c.clone(), spec(KeyMode::DisplayNames)).windows(3);
    let t0 = std::time::Instant::now();
    let ids = extract_ids(&e).await.unwrap();
    assert_eq!(ids.len(), 1000);
    assert!(s.throttled() > 0, "the server throttled");
    assert_eq!(
        c.stats()
            .throttled
            .load(std::sync::atomic::Ordering::Relaxed),
        s.throttled()
    );
    // ~13 requests at 5 per 0.5 s cannot take less than ~1 s
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );
}

#[tokio::test]
async fn the_client_rate_limit_keeps_the_server_from_throttling() {
    let cfg = ServerConfig {
        rate_limit: Some(10),
        rate_window: Duration::from_secs(1),
        retry_after: Some(Duration::from_secs(1)),
        ..ServerConfig::default()
    };
    let s = server(1500, 1, cfg).await;
    // 9 per second, over 3 concurrent windows
    let c = client(&s, |c| c.requests_per_minute = 540);
    let e = BubbleExtract::new(c.clone(), spec(KeyMode::DisplayNames)).windows(3);
    let ids = extract_ids(&e).await.unwrap();
    assert_eq!(ids.len(), 1500);
    assert!(s.requests() >= 16);
    assert_eq!(s.throttled(), 0, "no 429 when the client paces itself");
}

#[tokio::test]
async fn legacy_503_and_5xx_are_retried_with_backoff() {
    let cfg = ServerConfig {
        honor_tie_break: true,
        ..ServerConfig::default()
    };
    let s = server(250, 1, cfg).await;
    let c = client(&s, |_| {});
    s.fail_next(3, 503);
    let e = BubbleExtract::new(c.clone(), spec(KeyMode::DisplayNames));
    assert_eq!(extract_ids(&e).await.unwrap().len(), 250);
    assert_eq!(
        c.stats().retries.load(std::sync::atomic::Ordering::Relaxed),
        3
    );
}

#[tokio::test]
async fn exhausted_retries_fail_naming_the_type_and_page() {
    let s = server(
        450,
        1,
        ServerConfig {
            honor_tie_break: true,
            ..ServerConfig::default()
        },
    )
    .await;
    let c = client(&s, |c| c.max_retries = 2);
    let e = BubbleExtract::new(c.clone(), spec(KeyMode::DisplayNames));
    let unit = e.units().await.unwrap().remove(0);
    let mut st = e
        .open(
            &unit,
            ExtractOptions {
                batch_size: 100,
                buffer: 1,
            },
        )
        .unwrap();
    let first = st.next().await.unwrap().unwrap();
    assert_eq!(first.num_rows(), 100);
    s.fail_next(1000, 500);
    let err = st.next().await.unwrap().unwrap_err().to_string();
    assert!(err.contains("type `thing` page 2"), "{err}");
    assert!(err.contains("after 3 attempts"), "{err}");
    assert!(err.contains("HTTP 500"), "{err}");
    assert!(err.contains("incomplete"), "{err}");
}

#[tokio::test]
async fn bad_token_and_unknown_type_fail_at_once() {
    let s = server(10, 1, ServerConfig::default()).await;
    let mut cfg = BubbleConfig::new(s.base_url(), Secret::new("wrong"));
    cfg.max_retries = 5;
    let bad = Arc::new(BubbleClient::new(cfg).unwrap());
    let e = BubbleExtract::new(bad, spec(KeyMode::DisplayNames));
    let err = e.units().await.unwrap_err().to_string();
    assert!(
        err.contains("HTTP 401") && err.contains("BUBBLE_API_KEY"),
        "{err}"
    );
    assert_eq!(s.requests(), 1, "no retry on 401");

    let c = client(&s, |_| {});
    let err = c
        .fetch_page(
            "thingz",
            &PageQuery {
                limit: 1,
                ..PageQuery::default()
            },
            1,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, BubbleError::NotFound { .. }));
    let msg = err.to_string();
    assert!(msg.contains("`thingz` not found (HTTP 404)"), "{msg}");
    assert_eq!(s.requests(), 2, "no retry on 404");
}

#[tokio::test]
async fn single_things_and_the_version_test_database() {
    let s = server(10, 1, ServerConfig::default()).await;
    let mut cfg = BubbleConfig::new(s.version_test_url(), Secret::new(s.token()));
    cfg.requests_per_minute = 60_000;
    let c = BubbleClient::new(cfg).unwrap();
    let t = &things(10, 1)[4];
    let id = t["_id"].as_str().unwrap();
    let got = c.get_thing("thing", id).await.unwrap().unwrap();
    assert_eq!(&got, t);
    assert!(c.get_thing("thing", "nope").await.unwrap().is_none());
}

#[tokio::test]
async fn a_type_is_exported_to_csv_and_parquet_and_read_back() {
    let s = server(1234, 2, ServerConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let e = BubbleExtract::new(client(&s, |_| {}), spec(KeyMode::DisplayNames))
        .raw(true)
        .windows(3);
    let report = Pipeline::new(e, ExportLoad::new(dir.path(), "thing").with_csv())
        .options(etl_core::PipelineOptions {
            parallel: 3,
            batch_size: 300,
            ..Default::default()
        })
        .run(&RunInfo::new("export"))
        .await;
    assert!(report.succeeded(), "{:?}", report.error);
    assert_eq!(report.totals.loaded, 1234);
    assert_eq!(report.units.len(), 3);
    let csv = std::fs::read_to_string(csv_path(dir.path(), "thing")).unwrap();
    assert_eq!(csv.lines().count(), 1235);
    assert!(
        csv.starts_with("_id,created_date,modified_date,name,rate,tags\n"),
        "{}",
        &csv[..80]
    );
    let pq = ParquetExtract::whole("thing", &parquet_path(dir.path(), "thing")).unwrap();
    assert_eq!(pq.rows().unwrap(), 1234);
    let unit = pq.units().await.unwrap().remove(0);
    let mut st = pq
        .open(
            &unit,
            ExtractOptions {
                batch_size: 500,
                buffer: 1,
            },
        )
        .unwrap();
    let mut ids = Vec::new();
    while let Some(b) = st.next().await {
        let b = b.unwrap();
        ids.extend(
            b.data
                .column(0)
                .as_string::<i32>()
                .iter()
                .map(|v| v.unwrap().to_owned()),
        );
    }
    assert_exactly_once(&ids, &things(1234, 2));
}
