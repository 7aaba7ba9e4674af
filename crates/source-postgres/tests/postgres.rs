//! Against a real PostgreSQL (etl-testkit: $DATABASE_URL or a throwaway cluster).

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use etl_core::testing::MemoryLoad;
use etl_core::{Extract, ExtractOptions, Pipeline, RunInfo};
use etl_source_postgres::{Entity, Filter, Key, PgSource, PgSourceOptions};
use etl_testkit::TestDb;
use futures::TryStreamExt;
use sqlx::PgPool;

async fn fixture() -> (TestDb, PgPool) {
    let db = TestDb::create().await.expect("test database");
    let pool = db.pool().await.expect("pool");
    sqlx::raw_sql(
        r#"
        CREATE TABLE "all types" (
            id int8 PRIMARY KEY,
            s int2, i int4 NOT NULL,
            price numeric(12,2), free numeric,
            f4 float4, f8 float8,
            t text, v varchar(10), c char(3),
            b bool, d date, ts timestamp, tz timestamptz,
            u uuid, j jsonb, tags text[]
        );
        INSERT INTO "all types"
        SELECT g, (g % 100)::int2, g::int4, g * 1.25, g / 3.0,
               g / 2.0, g / 4.0,
               'text ' || g, 'v' || g, 'abc', g % 2 = 0,
               date '2026-01-01' + g, timestamp '2026-01-30 14:30:00' + g * interval '1 second',
               timestamptz '2026-01-30 14:30:00+00' + g * interval '1 second',
               ('00000000-0000-0000-0000-00000000000' || (g % 10)::text)::uuid,
               jsonb_build_object('n', g), ARRAY['a' || g, 'b']
        FROM generate_series(1, 1000) g;
        INSERT INTO "all types" (id, i) VALUES (1001, 1001);
        "#,
    )
    .execute(&pool)
    .await
    .expect("fixture");
    (db, pool)
}

async fn read_all(source: &PgSource, batch_size: usize) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for unit in source.units().await.unwrap() {
        let s = source
            .open(
                &unit,
                ExtractOptions {
                    batch_size,
                    buffer: 1,
                },
            )
            .unwrap();
        let batches: Vec<_> = s.try_collect().await.unwrap();
        out.extend(batches.into_iter().map(|b| b.data));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_maps_and_pages_stream() {
    let (_db, pool) = fixture().await;
    let source = PgSource::connect(
        pool,
        vec![Entity::table("all", "all types", "id")],
        PgSourceOptions::default(),
    )
    .await
    .unwrap();
    let schema = source.schema();
    let ty = |n: &str| schema.field_with_name(n).unwrap().data_type().clone();
    assert_eq!(ty("s"), DataType::Int16);
    assert_eq!(ty("i"), DataType::Int32);
    assert!(!schema.field_with_name("i").unwrap().is_nullable());
    assert_eq!(ty("price"), DataType::Decimal128(12, 2));
    assert_eq!(ty("free"), DataType::Decimal128(38, 6));
    assert_eq!(ty("f4"), DataType::Float32);
    assert_eq!(ty("c"), DataType::Utf8);
    assert_eq!(ty("d"), DataType::Date32);
    assert_eq!(ty("ts"), DataType::Timestamp(TimeUnit::Microsecond, None));
    assert_eq!(
        ty("tz"),
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    assert!(matches!(ty("tags"), DataType::List(_)));

    let batches = read_all(&source, 128).await;
    assert_eq!(batches.len(), 8, "1001 rows in pages of 128");
    assert!(batches.iter().all(|b| b.num_rows() <= 128));
    let b = &batches[0];
    let col = |n: &str| b.column(schema.index_of(n).unwrap()).clone();
    assert_eq!(col("id").as_primitive::<Int64Type>().value(0), 1);
    assert_eq!(col("price").as_primitive::<Decimal128Type>().value(3), 500); // 4 * 1.25
    assert_eq!(
        col("free").as_primitive::<Decimal128Type>().value(0),
        333_333
    ); // 1/3 at scale 6
    assert_eq!(col("c").as_string::<i32>().value(0), "abc");
    assert_eq!(col("d").as_primitive::<Date32Type>().value(0), 20_455); // 2026-01-02
    let ts = col("ts")
        .as_primitive::<TimestampMicrosecondType>()
        .value(0);
    assert_eq!(
        chrono::DateTime::from_timestamp_micros(ts)
            .unwrap()
            .to_rfc3339(),
        "2026-01-30T14:30:01+00:00"
    );
    assert_eq!(
        col("u").as_string::<i32>().value(1),
        "00000000-0000-0000-0000-000000000002"
    );
    assert_eq!(col("j").as_string::<i32>().value(0), r#"{"n": 1}"#);
    let tags = col("tags");
    let first = tags.as_list::<i32>().value(0);
    assert_eq!(first.as_string::<i32>().value(0), "a1");
    let last = batches.last().unwrap();
    assert_eq!(last.num_rows(), 1001 - 7 * 128);
    let lc = last.column(schema.index_of("tags").unwrap());
    assert!(lc.is_null(last.num_rows() - 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_snapshot_for_every_unit_and_split_units() {
    let (_db, pool) = fixture().await;
    let source = PgSource::connect(
        pool.clone(),
        vec![Entity::table("all", "all types", "id").split_every(300)],
        PgSourceOptions::default(),
    )
    .await
    .unwrap();
    // Written after the snapshot: invisible to the extraction.
    sqlx::query(
        r#"INSERT INTO "all types" (id, i) SELECT g, g FROM generate_series(2000, 2099) g"#,
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(r#"DELETE FROM "all types" WHERE id <= 10"#)
        .execute(&pool)
        .await
        .unwrap();
    let units = source.units().await.unwrap();
    let names: Vec<_> = units.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "all[1..301)",
            "all[301..601)",
            "all[601..901)",
            "all[901..1201)"
        ]
    );
    let rows: usize = read_all(&source, 1000)
        .await
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(rows, 1001);
    assert_eq!(source.count("all").await.unwrap(), 1001);
    drop(source);
    let fresh = PgSource::connect(
        pool,
        vec![Entity::table("all", "all types", "id")],
        PgSourceOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(fresh.count("all").await.unwrap(), 1001 + 100 - 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_the_last_key_and_bound_filters() {
    let (_db, pool) = fixture().await;
    let source = PgSource::connect(
        pool.clone(),
        vec![
            Entity::table("all", "all types", "id")
                .columns(["id", "t", "ts"])
                .filter("ts >= '2026-01-30 14:35:00'".parse::<Filter>().unwrap())
                .since("id", "100"),
        ],
        PgSourceOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(source.schema().fields().len(), 3);
    let unit = &source.units().await.unwrap()[0];
    let opts = ExtractOptions {
        batch_size: 50,
        buffer: 1,
    };
    // ts >= 14:35:00 means id >= 300; since id > 100.
    let mut stream = source.open(unit, opts).unwrap();
    let first = stream.try_next().await.unwrap().unwrap();
    assert_eq!(first.records[0], 300);
    let entity = source.entity("all").unwrap();
    let key = entity.last_key(&first.data).unwrap();
    assert_eq!(key, Key::Int(349));
    drop(stream); // "killed"
    let rest: Vec<_> = source
        .open_after(unit, Some(key), opts)
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let ids: Vec<i64> = rest
        .iter()
        .flat_map(|b| {
            b.data
                .column(0)
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect();
    assert_eq!(ids.first(), Some(&350));
    assert_eq!(ids.last(), Some(&1000));
    assert_eq!(ids.len(), 651);

    // A hostile value is a value, not SQL.
    let evil = PgSource::connect(
        pool,
        vec![Entity::table("all", "all types", "id").filter(Filter::new(
            "t",
            etl_source_postgres::Op::Eq,
            "x' OR '1'='1",
        ))],
        PgSourceOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(evil.count("all").await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_entities_and_oversized_numerics_become_rejects() {
    let (_db, pool) = fixture().await;
    sqlx::raw_sql("CREATE TABLE big (k text PRIMARY KEY, n numeric); INSERT INTO big VALUES ('a', 1.5), ('b', 1e40), ('c', 'NaN'), ('d', NULL);")
        .execute(&pool)
        .await
        .unwrap();
    let source = PgSource::connect(
        pool,
        vec![Entity::query(
            "big",
            "SELECT k, n, n > 1 AS gt FROM big",
            "k",
        )],
        PgSourceOptions {
            default_numeric_scale: 2,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        source.schema().field(1).data_type(),
        &DataType::Decimal128(38, 2)
    );
    let load = MemoryLoad::default();
    let report = Pipeline::new(source, load.clone())
        .run(&RunInfo::new("query"))
        .await;
    assert!(report.succeeded(), "{:?}", report.error);
    assert_eq!(report.totals.read, 4);
    assert_eq!(report.totals.loaded, 2);
    assert_eq!(report.totals.rejected, 2);
    assert_eq!(report.totals.rejected_by_reason["bad_value"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_rows_follow_the_filter_and_since_of_their_parent() {
    let db = TestDb::create().await.expect("test database");
    let pool = db.pool().await.expect("pool");
    sqlx::raw_sql(
        "CREATE TABLE orders (id int8 PRIMARY KEY, day date NOT NULL, updated timestamp NOT NULL);
         CREATE TABLE lines (id int8 PRIMARY KEY, order_id int8 NOT NULL REFERENCES orders, qty int4);
         INSERT INTO orders SELECT g, date '2026-01-01' + g, timestamp '2026-01-01' + g * interval '1 hour'
           FROM generate_series(1, 20) g;
         INSERT INTO lines SELECT g, 1 + g % 20, g FROM generate_series(1, 100) g;",
    )
    .execute(&pool)
    .await
    .unwrap();
    let orders = Entity::table("orders", "orders", "id")
        .filter("day >= '2026-01-11'".parse::<Filter>().unwrap())
        .since("updated", "2026-01-01 15:00:00");
    let lines = Entity::table("lines", "lines", "id")
        .following(&orders, "order_id")
        .split_every(30);
    let source = PgSource::connect(pool.clone(), vec![lines], PgSourceOptions::default())
        .await
        .unwrap();
    let got: usize = read_all(&source, 7)
        .await
        .iter()
        .map(|b| b.num_rows())
        .sum();
    let want: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM lines l JOIN orders o ON o.id = l.order_id
         WHERE o.day >= '2026-01-11' AND o.updated > '2026-01-01 15:00:00'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(want > 0 && want < 100);
    assert_eq!(got as i64, want);
    // Without a filter on the parent, the child is its plain table.
    let plain = Entity::table("lines", "lines", "id");
    let all = plain
        .clone()
        .following(&Entity::table("orders", "orders", "id"), "order_id");
    assert_eq!(all, plain);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_windows_split_the_filtered_rows_in_key_order() {
    let (_db, pool) = fixture().await;
    // Even ids only: 500 rows (2..=1000) and the odd 1001 left out.
    let even = Entity::table("all", "all types", "id")
        .columns(["id"])
        .filter("b = true".parse::<Filter>().unwrap())
        .split_every(64);
    let source = PgSource::connect(pool, vec![even.clone()], PgSourceOptions::default())
        .await
        .unwrap();
    let mut seen = Vec::new();
    for offset in (0..600).step_by(150) {
        let (after, upto) = source.key_window("all", offset, 150).await.unwrap();
        if offset == 0 {
            assert_eq!((after.clone(), upto.clone()), (None, Some(Key::Int(300))));
        }
        let w = source
            .with_entities(vec![even.clone().key_range(after, upto)])
            .await
            .unwrap();
        let ids: Vec<i64> = read_all(&w, 40)
            .await
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        assert_eq!(
            ids.len(),
            150.min(500 - offset.min(500)) as usize,
            "{offset}"
        );
        seen.extend(ids);
    }
    assert_eq!(seen, (1..=500).map(|i| i * 2).collect::<Vec<i64>>());
}
