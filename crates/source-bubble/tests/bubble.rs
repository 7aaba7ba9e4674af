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

/// The first batch (up to 1,000 things) of the first unit of `e`.
async fn first_batch(e: &BubbleExtract) -> etl_core::Batch {
    let unit = e.units().await.unwrap().remove(0);
    let opts = ExtractOptions {
        batch_size: 1000,
        buffer: 1,
    };
    e.open(&unit, opts).unwrap().next().await.unwrap().unwrap()
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
        let b = first_batch(&e).await;
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

/// Rows of every batch of one unit until the stream ends or fails: `(rows, error)`.
async fn drain(e: &BubbleExtract) -> (Vec<arrow_array::RecordBatch>, Option<etl_core::Error>) {
    let units = match e.units().await {
        Ok(u) => u,
        Err(err) => return (Vec::new(), Some(err)),
    };
    let mut out = Vec::new();
    for unit in units {
        let mut s = e
            .open(
                &unit,
                ExtractOptions {
                    batch_size: 100,
                    buffer: 1,
                },
            )
            .unwrap();
        while let Some(b) = s.next().await {
            match b {
                Ok(b) => out.push(b.data),
                Err(err) => return (out, Some(err)),
            }
        }
    }
    (out, None)
}

/// 429, 5xx, bodies cut short, bodies that are not JSON and answers slower than the
/// client's timeout, on 20 % of the requests: every thing arrives exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_on_a_fifth_of_the_requests_are_retried_to_exact_results() {
    use etl_source_bubble::test_server::{Fault, Faults};
    let mut faults = Faults::transient(0.2);
    faults.kinds.push(Fault::Slow(Duration::from_millis(800)));
    let cfg = ServerConfig {
        offset_cap: 500,
        faults,
        ..ServerConfig::default()
    };
    let s = server(4000, 3, cfg).await;
    let c = client(&s, |c| {
        c.timeout = Duration::from_millis(300);
        c.max_retries = 10;
    });
    let want = things(4000, 3);
    for windows in [1, 3] {
        let e = BubbleExtract::new(c.clone(), spec(KeyMode::DisplayNames)).windows(windows);
        assert_exactly_once(&extract_ids(&e).await.unwrap(), &want);
    }
    let retries = c.stats().retries.load(std::sync::atomic::Ordering::Relaxed);
    assert!(s.injected() >= 10, "faults were injected: {}", s.injected());
    assert_eq!(retries, s.injected(), "every fault was retried once");
}

/// A 200 answer whose body is cut short or is not JSON, every time: retried a bounded
/// number of times, then a loud error naming the type, the page and where it starts.
#[tokio::test]
async fn truncated_or_malformed_bodies_that_persist_fail_naming_type_and_page() {
    use etl_source_bubble::test_server::{Fault, Faults};
    for fault in [Fault::Truncated, Fault::Malformed] {
        let cfg = ServerConfig {
            faults: Faults::new(1.0, &[fault]),
            meta: false,
            ..ServerConfig::default()
        };
        let s = server(50, 1, cfg).await;
        let c = client(&s, |c| c.max_retries = 2);
        let (rows, err) = drain(&BubbleExtract::new(c, spec(KeyMode::DisplayNames))).await;
        assert!(rows.is_empty());
        let err = err.expect("fails").to_string();
        assert!(
            err.contains("type `thing` page 0 (cursor 0, constraints [])")
                && err.contains("after 3 attempts")
                && err.contains("cannot read the answer"),
            "{fault:?}: {err}"
        );
    }
}

/// Schema drift before the run: a declared field renamed (or removed) in the app fails
/// the extract up front, naming the type, the field and the new name, before a thing is
/// read; a list declared as text likewise.
#[tokio::test]
async fn a_field_renamed_or_reshaped_before_the_run_fails_up_front() {
    use etl_source_bubble::test_server::Drift;
    let s = server(300, 1, ServerConfig::default()).await;
    s.drift_after(
        0,
        "thing",
        Drift::Rename {
            from: "name".into(),
            to: "title".into(),
        },
    );
    let (rows, err) = drain(&BubbleExtract::new(
        client(&s, |_| {}),
        spec(KeyMode::DisplayNames),
    ))
    .await;
    assert!(rows.is_empty());
    let err = err.expect("fails").to_string();
    assert!(
        err.contains("Bubble type `thing`: schema drift on the declared field `name` (key `name`)")
            && err.contains(
                "no longer lists it (renamed or removed); its fields not declared: `title`"
            ),
        "{err}"
    );
    assert_eq!(s.requests(), 1, "only /meta was asked");

    let s = server(300, 1, ServerConfig::default()).await;
    s.drift_after(0, "thing", Drift::ToList("name".into()));
    let (_, err) = drain(&BubbleExtract::new(
        client(&s, |_| {}),
        spec(KeyMode::DisplayNames),
    ))
    .await;
    let err = err.expect("fails").to_string();
    assert!(
        err.contains("field `name`")
            && err.contains("declared as a single value, the app's /meta says `list.text`"),
        "{err}"
    );
}

/// Schema drift in the middle of a run: a field renamed, removed or turned into a list
/// after some pages were read fails the extract naming the field, and no row with the
/// field empty (or holding the list's text) is ever yielded: with `/meta` (asked again
/// when a field vanishes) and, for a rename, without it.
#[tokio::test]
async fn a_field_renamed_removed_or_reshaped_mid_run_fails_before_a_null_is_yielded() {
    use etl_source_bubble::test_server::Drift;
    let rename = Drift::Rename {
        from: "name".into(),
        to: "title".into(),
    };
    let cases = [
        (
            true,
            rename.clone(),
            "no longer lists it (renamed or removed); its fields not declared: `title`",
        ),
        (
            false,
            rename,
            "things of page 4 does, and they carry keys no earlier page did: `title` (renamed?)",
        ),
        (
            true,
            Drift::Remove("name".into()),
            "no longer lists it (renamed or removed); its fields not declared: none",
        ),
        (
            false,
            Drift::ToList("name".into()),
            "values on page 4 are lists, not Utf8",
        ),
    ];
    for (meta, d, want) in cases {
        let cfg = ServerConfig {
            meta,
            honor_tie_break: true,
            ..ServerConfig::default()
        };
        let s = server(1000, 1, cfg).await;
        // /meta (answered or 404), the first-thing edge, then pages 1..=3 as they were.
        let before = 2 + 3;
        s.drift_after(before + 1, "thing", d.clone());
        let (rows, err) = drain(&BubbleExtract::new(
            client(&s, |_| {}),
            spec(KeyMode::DisplayNames),
        ))
        .await;
        let err = err
            .unwrap_or_else(|| panic!("{d:?} goes unnoticed"))
            .to_string();
        assert!(
            err.contains("schema drift on the declared field `name`") && err.contains(want),
            "{d:?}: {err}"
        );
        let n: usize = rows.iter().map(arrow_array::RecordBatch::num_rows).sum();
        // 100 + 99 + 99: each page after the first asks its first thing's date again.
        assert_eq!(n, 298, "{d:?}: the pages before the drift");
        for b in &rows {
            assert_eq!(b.column(3).null_count(), 0, "{d:?}: no name written empty");
        }
    }
}

/// A field that is only empty (left out of every thing of a page, as Bubble does) is not
/// drift: `/meta` still lists it. One odd value of another shape is a row reject naming
/// the column, not an error.
#[tokio::test]
async fn an_empty_field_is_not_drift_and_one_odd_value_is_a_row_reject() {
    let mut t = things(300, 1);
    for (i, x) in t.iter_mut().enumerate() {
        if (100..200).contains(&i) {
            x.remove("name");
        }
        if i == 250 {
            x.insert("name".into(), json!(["odd"]));
        }
    }
    let mut f = Fixtures::new();
    f.insert("thing", t, id_keys());
    let s = TestServer::start(
        f,
        ServerConfig {
            honor_tie_break: true,
            ..ServerConfig::default()
        },
    )
    .await
    .unwrap();
    let e = BubbleExtract::new(client(&s, |_| {}), spec(KeyMode::DisplayNames));
    let b = first_batch(&e).await;
    assert_eq!(b.num_rows(), 299);
    assert_eq!(
        b.data.column(3).null_count(),
        100,
        "the empty page stays empty"
    );
    assert_eq!(b.rejects.len(), 1);
    assert_eq!(b.rejects[0].column.as_deref(), Some("name"));
    assert!(
        b.rejects[0].reason.contains("is not text"),
        "{}",
        b.rejects[0].reason
    );
}
