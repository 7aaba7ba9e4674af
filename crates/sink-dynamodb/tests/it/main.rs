//! Against a real dynalite (started per test on a free loopback port), and through a
//! fault-injecting proxy for throttling and `UnprocessedItems`.

mod proxy;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use etl_core::{Batch, BatchStream, Extract, ExtractOptions, Pipeline, RunInfo, Unit, UnitStatus};
use etl_sink_dynamodb::admin::{TableSpec, count_items, ensure_table, get_item};
use etl_sink_dynamodb::backup::{RestoreMode, backup_source, backup_table, restore_table};
use etl_sink_dynamodb::dynalite::Dynalite;
use etl_sink_dynamodb::mapping::{item_to_plain_json, items_from_batch};
use etl_sink_dynamodb::{
    DynamoError, DynamoLoad, Item, ItemCheck, ItemWriter, JsonCheckpoint, KeySchema,
    MappingOptions, WriteOptions,
};
use futures::StreamExt;
use proxy::{Fault, FaultProxy};

fn keys() -> KeySchema {
    KeySchema::new("PK", Some("SK"))
}

async fn table(client: &aws_sdk_dynamodb::Client, name: &str) {
    ensure_table(
        client,
        &TableSpec {
            name: name.into(),
            keys: keys(),
            indexes: vec![("GSI1".into(), "GSI1PK".into(), Some("GSI1SK".into()))],
        },
    )
    .await
    .unwrap();
}

fn item(pk: &str, sk: &str, value: &str) -> Item {
    HashMap::from([
        ("PK".to_owned(), AttributeValue::S(pk.into())),
        ("SK".to_owned(), AttributeValue::S(sk.into())),
        ("Value".to_owned(), AttributeValue::S(value.into())),
    ])
}

fn fast_retries(max_retries: u32) -> WriteOptions {
    WriteOptions {
        concurrency: 1,
        max_retries,
        retry_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_map_and_read_back_attribute_by_attribute() {
    let dl = Dynalite::start().await.unwrap();
    let client = dl.client(None);
    table(&client, "mapping").await;
    let schema = Arc::new(Schema::new(vec![
        Field::new("PK", DataType::Utf8, false),
        Field::new("SK", DataType::Utf8, false),
        Field::new("Total", DataType::Decimal128(12, 2), true),
        Field::new("Qty", DataType::Int64, true),
        Field::new(
            "Tags",
            DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
            true,
        ),
    ]));
    let mut tags =
        arrow_array::builder::ListBuilder::new(arrow_array::builder::StringBuilder::new());
    tags.values().append_value("GRAINS");
    tags.values().append_value("CORN");
    tags.append(true);
    tags.append_null();
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["SALE#1", "SALE#2"])) as ArrayRef,
            Arc::new(StringArray::from(vec!["#METADATA#sale", "#METADATA#sale"])),
            Arc::new(
                arrow_array::Decimal128Array::from(vec![Some(2_755_000), None])
                    .with_precision_and_scale(12, 2)
                    .unwrap(),
            ),
            Arc::new(Int64Array::from(vec![Some(1000), Some(3)])),
            Arc::new(tags.finish()),
        ],
    )
    .unwrap();
    let items: Vec<Item> = items_from_batch(&batch, &MappingOptions::default())
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let w = ItemWriter::new(client.clone(), "mapping", keys(), WriteOptions::default());
    let out = w.put_items(items.clone()).await.unwrap();
    assert_eq!(out.written, 2);
    for it in &items {
        let key = keys().key_of("mapping", it).unwrap();
        let back = get_item(&client, "mapping", key).await.unwrap().unwrap();
        assert_eq!(item_to_plain_json(&back), item_to_plain_json(it));
    }
    let back = get_item(
        &client,
        "mapping",
        keys().key_of("mapping", &items[0]).unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(back["Total"], AttributeValue::N("27550".into()));
    assert!(matches!(&back["Tags"], AttributeValue::L(l) if l.len() == 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_of_25_dedup_last_wins_and_oversize_refused() {
    let dl = Dynalite::start().await.unwrap();
    let client = dl.client(None);
    table(&client, "dedup").await;
    let mut items: Vec<Item> = (0..55)
        .map(|i| item("P", &format!("{i:03}"), "first"))
        .collect();
    for i in 0..5 {
        items.push(item("P", &format!("{i:03}"), "second"));
    }
    let mut big = item("P", "BIG", "");
    big.insert("Blob".into(), AttributeValue::S("x".repeat(410 * 1024)));
    items.insert(10, big);
    let w = ItemWriter::new(client.clone(), "dedup", keys(), WriteOptions::default());
    let out = w.put_items(items).await.unwrap();
    assert_eq!(out.deduplicated, 5);
    assert_eq!(out.written, 55);
    assert_eq!(out.refused.len(), 1);
    assert_eq!(out.refused[0].key, "PK=P, SK=BIG");
    assert!(
        out.refused[0].reason.contains("400 KB"),
        "{}",
        out.refused[0].reason
    );
    let stats = w.stats();
    assert_eq!(stats.calls, 3, "55 items = 25 + 25 + 5");
    assert_eq!((stats.deduplicated, stats.oversize), (5, 1));
    assert_eq!(count_items(&client, "dedup", None, 3).await.unwrap(), 55);
    let got = get_item(
        &client,
        "dedup",
        keys().key_of("", &item("P", "003", "")).unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        got["Value"],
        AttributeValue::S("second".into()),
        "last wins"
    );
    // Rewriting is idempotent.
    w.put_items(
        (0..55)
            .map(|i| item("P", &format!("{i:03}"), "again"))
            .collect(),
    )
    .await
    .unwrap();
    assert_eq!(count_items(&client, "dedup", None, 1).await.unwrap(), 55);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_unprocessed_items_are_retried() {
    let dl = Dynalite::start().await.unwrap();
    table(&dl.client(None), "retry").await;
    let proxy = FaultProxy::start(
        dl.port(),
        HashMap::from([
            (2, Fault::Throughput),
            (3, Fault::UnprocessedTail(0.4)),
            (5, Fault::ServerError),
            (6, Fault::Throttling),
        ]),
        None,
    )
    .await;
    let client = etl_sink_dynamodb::admin::static_client(
        &proxy.endpoint(),
        "us-east-1",
        Some(RetryConfig::disabled()),
    );
    let w = ItemWriter::new(client, "retry", keys(), fast_retries(5));
    let items: Vec<Item> = (0..100)
        .map(|i| item("R", &format!("{i:03}"), "v"))
        .collect();
    let out = w.put_items(items).await.unwrap();
    assert_eq!(out.written, 100);
    let stats = w.stats();
    // 4 chunks; call 2 throttled (retried as 3, of which 10 unprocessed -> call 4),
    // calls 5 and 6 fail, 7 succeeds, then the 4th chunk as call 8.
    assert_eq!(stats.throttled, 3);
    assert_eq!(stats.unprocessed_retried, 10);
    assert_eq!(stats.calls, 8);
    assert_eq!(proxy.batch_calls(), 8);
    assert_eq!(
        count_items(&dl.client(None), "retry", None, 2)
            .await
            .unwrap(),
        100
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_of_a_writer_share_its_in_flight_limit() {
    let dl = Dynalite::start().await.unwrap();
    table(&dl.client(None), "flight").await;
    // Every call held 40 ms, so calls overlap as much as the writer lets them.
    let proxy = FaultProxy::start(dl.port(), HashMap::new(), Some(Fault::Slow(40))).await;
    let client = etl_sink_dynamodb::admin::static_client(
        &proxy.endpoint(),
        "us-east-1",
        Some(RetryConfig::disabled()),
    );
    let opts = WriteOptions {
        concurrency: 3,
        ..fast_retries(2)
    };
    let w = ItemWriter::new(client, "flight", keys(), opts);
    // Two units writing at once through clones, 8 calls each.
    let batch = |unit: &str| -> Vec<Item> {
        (0..200)
            .map(|i| item(unit, &format!("{i:03}"), "v"))
            .collect()
    };
    let w2 = w.clone();
    let (a, b) = tokio::join!(w.put_items(batch("A")), w2.put_items(batch("B")));
    assert_eq!(a.unwrap().written + b.unwrap().written, 400);
    assert_eq!(proxy.batch_calls(), 16);
    let most = proxy.max_in_flight();
    assert!(
        (2..=3).contains(&most),
        "at most 3 calls in flight in all, and they do overlap: {most}"
    );
    assert_eq!(
        count_items(&dl.client(None), "flight", None, 2)
            .await
            .unwrap(),
        400
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_exhausted_name_the_table_and_keys() {
    let dl = Dynalite::start().await.unwrap();
    table(&dl.client(None), "stuck").await;
    let proxy = FaultProxy::start(dl.port(), HashMap::new(), Some(Fault::Throughput)).await;
    let client = etl_sink_dynamodb::admin::static_client(
        &proxy.endpoint(),
        "us-east-1",
        Some(RetryConfig::disabled()),
    );
    let w = ItemWriter::new(client, "stuck", keys(), fast_retries(2));
    let err = w
        .put_items(vec![item("S", "1", "v"), item("S", "2", "v")])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DynamoError::RetriesExhausted {
                attempts: 3,
                pending: 2,
                ..
            }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("table `stuck`") && msg.contains("[PK=S, SK=1]"),
        "{msg}"
    );
    assert!(
        msg.contains("ProvisionedThroughputExceededException"),
        "{msg}"
    );
    assert_eq!(proxy.batch_calls(), 3);
}

/// Units `u0..u4` of 100 rows each; `fail_unit` fails after its first batch (a crash
/// in the middle of a unit, after some of its items were written).
struct Rows {
    schema: SchemaRef,
    fail_unit: Option<usize>,
}

impl Extract for Rows {
    fn name(&self) -> &str {
        "rows"
    }
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    async fn units(&self) -> etl_core::Result<Vec<Unit>> {
        Ok((0..5).map(|i| Unit::named(format!("u{i}"))).collect())
    }
    fn open(&self, unit: &Unit, _o: ExtractOptions) -> etl_core::Result<BatchStream> {
        let u: usize = unit.name[1..].parse().unwrap();
        let schema = self.schema.clone();
        let fail = self.fail_unit == Some(u);
        let name: Arc<str> = unit.name.as_str().into();
        let batches = (0..4).map(move |b| {
            if fail && b == 1 {
                return Err(etl_core::Error::Config("simulated crash".into()));
            }
            let ids: Vec<i64> = (0..25).map(|i| (u * 100 + b * 25 + i) as i64).collect();
            let pk: Vec<String> = ids.iter().map(|i| format!("ROW#{i}")).collect();
            let value: Vec<f64> = ids
                .iter()
                .map(|i| if i % 50 == 7 { f64::NAN } else { *i as f64 })
                .collect();
            let data = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(pk)) as ArrayRef,
                    Arc::new(StringArray::from(vec!["#METADATA#row"; 25])),
                    Arc::new(Float64Array::from(value)),
                ],
            )?;
            Ok(Batch::new(
                name.clone(),
                data,
                ids.iter().map(|i| *i as u64).collect(),
            ))
        });
        Ok(futures::stream::iter(batches.collect::<Vec<_>>()).boxed())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_load_resumes_without_duplicates_or_losses() {
    let dl = Dynalite::start().await.unwrap();
    let client = dl.client(None);
    table(&client, "resume").await;
    let dir = tempfile::tempdir().unwrap();
    let ckpt = JsonCheckpoint::new(dir.path().join(".checkpoint.json"), "load:rows");
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("PK", DataType::Utf8, false),
        Field::new("SK", DataType::Utf8, false),
        Field::new("Value", DataType::Float64, true),
    ]));
    let sink = || {
        DynamoLoad::new(
            ItemWriter::new(client.clone(), "resume", keys(), WriteOptions::default()),
            MappingOptions::default(),
            ckpt.clone(),
        )
    };
    let check = ItemCheck::new(keys(), MappingOptions::default());
    let mut run = RunInfo::new("rows");
    let first = Pipeline::new(
        Rows {
            schema: schema.clone(),
            fail_unit: Some(3),
        },
        sink(),
    )
    .transform(check.clone())
    .run(&run)
    .await;
    assert!(!first.succeeded());
    let done: Vec<String> = ckpt
        .completed()
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(done.len(), 3, "{done:?}");
    let partial = count_items(&client, "resume", None, 2).await.unwrap();
    assert!(partial > 3 * 98 && partial < 5 * 98, "{partial}");

    run.resume = true;
    let second = Pipeline::new(
        Rows {
            schema,
            fail_unit: None,
        },
        sink(),
    )
    .transform(check)
    .run(&run)
    .await;
    assert!(second.succeeded(), "{:?}", second.error);
    let statuses: Vec<UnitStatus> = second.units.iter().map(|u| u.status).collect();
    assert_eq!(
        statuses,
        [
            UnitStatus::Resumed,
            UnitStatus::Resumed,
            UnitStatus::Resumed,
            UnitStatus::Completed,
            UnitStatus::Completed
        ]
    );
    // 500 rows, 10 NaN values rejected (ids 7, 57, 107, ...) with their reason.
    assert_eq!(second.totals.rejected, 10);
    assert_eq!(second.totals.rejected_by_reason["unmappable"], 10);
    assert_eq!(second.totals.loaded, 490);
    assert_eq!(count_items(&client, "resume", None, 2).await.unwrap(), 490);
    assert_eq!(ckpt.completed().unwrap().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_then_restore_rolls_the_table_back() {
    let dl = Dynalite::start().await.unwrap();
    let client = dl.client(None);
    table(&client, "orders").await;
    let w = ItemWriter::new(client.clone(), "orders", keys(), WriteOptions::default());
    let mut originals: Vec<Item> = (0..300)
        .map(|i| item("O", &format!("{i:04}"), "orig"))
        .collect();
    originals[0].insert(
        "Set".into(),
        AttributeValue::Ss(vec!["a".into(), "b".into()]),
    );
    originals[1].insert(
        "Nested".into(),
        AttributeValue::M(HashMap::from([(
            "N".into(),
            AttributeValue::N("1.5".into()),
        )])),
    );
    w.put_items(originals.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let info = backup_table(&client, "orders", dir.path(), 4)
        .await
        .unwrap();
    assert_eq!(info.items, 300);
    let fname = info
        .path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        fname.starts_with("orders-") && fname.ends_with(".parquet"),
        "{fname}"
    );
    assert_eq!(
        backup_source(&info.path).unwrap(),
        ("orders".to_owned(), keys())
    );

    // The migration: 5 items changed, 20 added.
    w.put_items(
        (0..5)
            .map(|i| item("O", &format!("{i:04}"), "changed"))
            .collect(),
    )
    .await
    .unwrap();
    w.put_items(
        (0..20)
            .map(|i| item("NEW", &format!("{i}"), "new"))
            .collect(),
    )
    .await
    .unwrap();
    assert_eq!(count_items(&client, "orders", None, 2).await.unwrap(), 320);

    let r = restore_table(
        &client,
        &info.path,
        None,
        RestoreMode::Exact,
        WriteOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!((r.restored, r.deleted), (300, 20));
    assert_eq!(count_items(&client, "orders", None, 2).await.unwrap(), 300);
    for it in &originals[..5] {
        let back = get_item(&client, "orders", keys().key_of("", it).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(item_to_plain_json(&back), item_to_plain_json(it));
        assert_eq!(back, *it, "types survive the round trip (SS, M, N)");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backup_step_pair_undoes_a_load_and_a_read_back_sample_shows_changes() {
    use etl_sink_dynamodb::backup::{backup_tables, restore_backups};
    use etl_sink_dynamodb::check::compare_sample;
    let dl = Dynalite::start().await.unwrap();
    let client = dl.client(None);
    let spec = TableSpec {
        name: "missing_yet".into(),
        keys: keys(),
        indexes: Vec::new(),
    };
    let dir = tempfile::tempdir().unwrap();
    // A table missing before the load is created, so the undo has one to restore.
    let backups = backup_tables(&client, &[spec], dir.path()).await.unwrap();
    assert_eq!((backups.len(), backups[0].items), (1, 0));
    let w = ItemWriter::new(
        client.clone(),
        "missing_yet",
        keys(),
        WriteOptions::default(),
    );
    let loaded: Vec<Item> = (0..30).map(|i| item("L", &format!("{i}"), "v")).collect();
    w.put_items(loaded.clone()).await.unwrap();
    let mut sample = loaded[..3].to_vec();
    sample[1].insert("Value".into(), AttributeValue::S("other".into()));
    sample[2].insert("SK".into(), AttributeValue::S("absent".into()));
    let diffs = compare_sample(&client, "missing_yet", &keys(), &sample)
        .await
        .unwrap();
    assert_eq!(diffs.len(), 2, "{diffs:?}");
    assert_eq!(diffs[0]["key"], "L|1");
    assert!(
        diffs[0]["diff"][0]
            .as_str()
            .unwrap()
            .starts_with("Value: expected")
    );
    assert_eq!(diffs[1]["diff"][0], "missing in the target");
    let undone = restore_backups(&client, &backups, WriteOptions::default())
        .await
        .unwrap();
    assert_eq!((undone[0].restored, undone[0].deleted), (0, 30));
    let left = count_items(&client, "missing_yet", None, 2).await.unwrap();
    assert_eq!(left, 0);
}

/// The run-layer steps: a migration whose backup step is [`steps::backup_step`] and whose
/// load is undone by [`steps::undo_from_backups`]; `--rollback` brings the table back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backup_step_and_its_undo_in_a_migration_roll_a_load_back() {
    use etl_core::migration::{Action, FileJournal, Migration, RunOptions, Step, StepKind};
    use etl_sink_dynamodb::steps;
    let dl = Dynalite::start().await.unwrap();
    let client = dl.client(None);
    table(&client, "orders").await;
    let w = ItemWriter::new(client.clone(), "orders", keys(), WriteOptions::default());
    w.put_items(vec![item("A", "1", "before")]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    let spec = TableSpec {
        name: "orders".into(),
        keys: keys(),
        indexes: Vec::new(),
    };
    let m = Migration::new("orders")
        .step(Step::new(
            "backup",
            StepKind::Backup,
            move |c: &Ctx, _cx| {
                let (spec, backups) = (spec.clone(), backups.clone());
                Box::pin(async move { steps::backup_step(&c.0, &[spec], &backups).await })
            },
        ))
        .step(
            Step::new("load", StepKind::Load, |c: &Ctx, _cx| {
                Box::pin(async move {
                    let w = ItemWriter::new(c.0.clone(), "orders", keys(), WriteOptions::default());
                    let items = (0..20).map(|i| item("A", &i.to_string(), "after"));
                    w.put_items(items.collect()).await?;
                    Ok(etl_core::migration::StepOutput::message("20 items"))
                })
            })
            .undo(|c: &Ctx, cx| {
                Box::pin(steps::undo_from_backups(
                    &c.0,
                    cx,
                    "backup",
                    WriteOptions::default(),
                ))
            }),
        );
    struct Ctx(aws_sdk_dynamodb::Client);
    let ctx = Ctx(client.clone());
    let journal = FileJournal::new(dir.path());
    let opts = RunOptions::new(dir.path());
    let r = m.execute(&ctx, &journal, &opts).await.unwrap();
    assert!(r.succeeded(), "{:?}", r.error);
    assert!(
        r.steps[0].message.contains("orders: 1 items -> "),
        "{}",
        r.steps[0].message
    );
    assert_eq!(count_items(&client, "orders", None, 2).await.unwrap(), 20);
    let opts = opts.with_action(Action::Rollback);
    let r = m.execute(&ctx, &journal, &opts).await.unwrap();
    assert_eq!(r.status, etl_core::RunStatus::RolledBack, "{:?}", r.error);
    assert_eq!(r.steps[1].message, "orders: 1 items restored, 19 deleted");
    let key = keys().key_of("orders", &item("A", "1", "")).unwrap();
    let back = etl_sink_dynamodb::admin::get_item(&client, "orders", key)
        .await
        .unwrap();
    assert_eq!(back, Some(item("A", "1", "before")));
    assert_eq!(count_items(&client, "orders", None, 2).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_is_an_endpoint_aws_or_a_throwaway_dynalite() {
    use etl_sink_dynamodb::dynalite::Target;
    let tables = ["a".to_owned(), "b".to_owned()];
    let throwaway = Target::new(None, "us-east-1", false);
    assert!(throwaway.is_throwaway());
    assert!(
        throwaway
            .describe(&tables)
            .starts_with("DynamoDB a, b at a throwaway local dynalite")
    );
    let client = throwaway.client().await.unwrap();
    table(client, "things").await;
    let again = throwaway.client().await.unwrap();
    assert!(
        etl_sink_dynamodb::admin::table_exists(again, "things")
            .await
            .unwrap(),
        "one server"
    );
    let aws = Target::new(None, "eu-west-1", true);
    assert_eq!(aws.describe(&tables), "DynamoDB a, b at AWS eu-west-1");
    let ep = Target::new(Some("http://127.0.0.1:1".into()), "us-east-1", false);
    assert!(!ep.is_throwaway());
    assert_eq!(
        ep.describe(&tables[..1]),
        "DynamoDB a at http://127.0.0.1:1"
    );
}

/// A Parquet file of items loaded row group by row group, the invalid ones left out; a
/// resume skips the row groups written; `verify_table` finds the table as expected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_of_items_loads_by_row_group_resumes_and_verifies() {
    use etl_sink_dynamodb::check::{Invalid, verify_table};
    use etl_sink_dynamodb::json_items::{Attr, item_schema, json_batch};
    use etl_sink_dynamodb::steps::load_items_file;
    let dl = Dynalite::start().await.unwrap();
    let client = dl.client(None);
    table(&client, "items").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("items.parquet");
    let schema = item_schema(
        &keys(),
        &[("PK", Attr::S), ("SK", Attr::S), ("Value", Attr::S)],
    );
    let mut w = etl_parquet::writer(&path, schema.clone()).unwrap();
    for group in 0..2 {
        let rows: Vec<_> = (0..10)
            .map(|i| {
                let v = serde_json::json!({"PK": "P", "SK": format!("{group}-{i}"), "Value": "v"});
                v.as_object().unwrap().clone()
            })
            .collect();
        w.write(&json_batch(&schema, &rows).unwrap()).unwrap();
        w.flush().unwrap(); // one row group each
    }
    w.close().unwrap();
    let invalid = [Invalid {
        entity: "items".into(),
        key: "P|1-3".into(),
        check: "required".into(),
        reason: "planted".into(),
    }];
    let checkpoint = dir.path().join("cp.json");
    let load = |resume: bool| {
        let (path, checkpoint, invalid, client) = (&path, &checkpoint, &invalid, &client);
        async move {
            let writer = ItemWriter::new(client.clone(), "items", keys(), WriteOptions::default());
            let cp = etl_sink_dynamodb::JsonCheckpoint::new(checkpoint, "load:items");
            let run = etl_core::RunInfo {
                resume,
                ..etl_core::RunInfo::new("items")
            };
            let opts = etl_core::PipelineOptions::default();
            load_items_file("items", path, writer, cp, invalid, opts, &run)
                .await
                .unwrap()
        }
    };
    let (report, summary) = load(false).await;
    assert_eq!(
        (report.totals.loaded, report.totals.rejected),
        (19, 1),
        "{summary}"
    );
    assert_eq!(
        (summary["units"].as_u64(), summary["units_resumed"].as_u64()),
        (Some(2), Some(0))
    );
    let (_, summary) = load(true).await;
    assert_eq!(summary["units_resumed"], 2, "{summary}");
    let skip = |k: &str| k == "P|1-3";
    let mut rng = fastrand::Rng::with_seed(1);
    let t = verify_table(&client, "items", &path, &keys(), skip, None, 5, &mut rng)
        .await
        .unwrap();
    assert_eq!((t.rows, t.expected, t.target, t.checked), (20, 19, 19, 5));
    assert!(t.diffs.is_empty(), "{:?}", t.diffs);
}

/// 30 % of the BatchWriteItem calls throttled (both exceptions), answered 500, or with
/// half their items back in `UnprocessedItems`: every item is written exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_of_calls_throttled_5xx_or_partly_unprocessed_still_write_every_item() {
    const FAULTS: &[Fault] = &[
        Fault::Throughput,
        Fault::Throttling,
        Fault::ServerError,
        Fault::UnprocessedTail(0.5),
    ];
    let dl = Dynalite::start().await.unwrap();
    table(&dl.client(None), "rate").await;
    let proxy =
        FaultProxy::start(dl.port(), HashMap::new(), Some(Fault::Random(300, FAULTS))).await;
    let client = etl_sink_dynamodb::admin::static_client(
        &proxy.endpoint(),
        "us-east-1",
        Some(RetryConfig::disabled()),
    );
    let opts = WriteOptions {
        concurrency: 4,
        ..fast_retries(10)
    };
    let w = ItemWriter::new(client, "rate", keys(), opts);
    let items: Vec<Item> = (0..1000)
        .map(|i| item(&format!("P{}", i % 7), &format!("{i:04}"), "v"))
        .collect();
    let out = w.put_items(items).await.unwrap();
    assert_eq!(out.written, 1000);
    let stats = w.stats();
    let injected = proxy.injected();
    assert!(injected >= 5, "faults were injected: {injected}");
    assert!(
        stats.throttled > 0 && stats.unprocessed_retried > 0,
        "{stats:?}"
    );
    assert_eq!(stats.calls as usize, proxy.batch_calls());
    assert_eq!(
        count_items(&dl.client(None), "rate", None, 2)
            .await
            .unwrap(),
        1000
    );
}

/// Calls slower than the client's attempt timeout (on 30 % of them): the SDK gives up on
/// the answer, the writer retries the call; the slow call still reached the table, so the
/// retry writes the same items again (puts are idempotent): every item exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_slower_than_the_timeout_are_retried_without_duplicates() {
    use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
    const SLOW: &[Fault] = &[Fault::Slow(700)];
    let dl = Dynalite::start().await.unwrap();
    table(&dl.client(None), "slow").await;
    let proxy = FaultProxy::start(dl.port(), HashMap::new(), Some(Fault::Random(300, SLOW))).await;
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "test"))
        .endpoint_url(proxy.endpoint())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_millis(250))
                .build(),
        )
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(conf);
    let opts = WriteOptions {
        concurrency: 2,
        ..fast_retries(8)
    };
    let w = ItemWriter::new(client, "slow", keys(), opts);
    let items: Vec<Item> = (0..250)
        .map(|i| item("S", &format!("{i:03}"), "v"))
        .collect();
    let out = w.put_items(items).await.unwrap();
    assert_eq!(out.written, 250);
    assert!(proxy.injected() >= 1, "a call was slow");
    assert!(
        proxy.batch_calls() > 10,
        "the timed-out calls were sent again: {}",
        proxy.batch_calls()
    );
    // Let the last slow call land before counting.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        count_items(&dl.client(None), "slow", None, 2)
            .await
            .unwrap(),
        250
    );
}
