use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use etl_sink_postgres::compare::{ColumnDiff, diff_rows, random_keys};
use etl_sink_postgres::ident::TableName;
use etl_sink_postgres::idmap::{IdMap, MapFormat};

#[tokio::test]
async fn fresh_rows_differ_from_staged_ones_only_in_content() {
    let db = etl_testkit::TestDb::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE staged (key text PRIMARY KEY, amount numeric(10,2), doc jsonb, tags text[], note text);
         INSERT INTO staged VALUES ('a', 1.50, '{\"x\": 1, \"y\": 2}', '{p,q}', 'kept'), ('b', 2, NULL, NULL, 'old'), ('c', 3, NULL, NULL, NULL);",
    )
    .execute(&pool)
    .await
    .unwrap();
    let staged = TableName::new("staged");
    let mut keys = random_keys(&pool, &staged, "key", 10).await.unwrap();
    keys.sort();
    assert_eq!(keys, ["a", "b", "c"]);
    let col = |v: Vec<Option<&str>>| Arc::new(StringArray::from(v)) as ArrayRef;
    let fresh = RecordBatch::try_from_iter([
        ("key", col(vec![Some("a"), Some("b"), Some("gone")])),
        ("amount", col(vec![Some("1.5"), Some("2.01"), Some("9")])),
        ("doc", col(vec![Some("{\"y\":2,\"x\":1}"), None, None])),
        ("tags", col(vec![Some("{\"p\",\"q\"}"), None, None])),
        ("note", col(vec![Some("ignored"), Some("new"), None])),
    ])
    .unwrap();
    let mut tx = pool.begin().await.unwrap();
    let (n, diffs) = diff_rows(&mut tx, &staged, "key", &fresh, &[])
        .await
        .unwrap();
    let d = |k: &str, c: &str, s: Option<&str>, f: Option<&str>| ColumnDiff {
        key: k.into(),
        column: c.into(),
        staged: s.map(Into::into),
        fresh: f.map(Into::into),
    };
    assert_eq!(n, 2);
    assert_eq!(
        diffs,
        [
            d("a", "note", Some("kept"), Some("ignored")),
            d("b", "amount", Some("2.00"), Some("2.01")),
            d("b", "note", Some("old"), Some("new"))
        ]
    );
    let (_, skipped) = diff_rows(&mut tx, &staged, "key", &fresh, &["note"])
        .await
        .unwrap();
    assert_eq!(skipped, [d("b", "amount", Some("2.00"), Some("2.01"))]);
    tx.rollback().await.unwrap();
    let (temps,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM pg_class WHERE relname LIKE 'ferry_fresh_%'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(temps, 0, "the temporary table ends with the transaction");
}

#[tokio::test]
async fn an_id_map_is_stable_read_back_and_exported() {
    let db = etl_testkit::TestDb::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    let ids = IdMap::new("https://ferry.invalid/test", "public.id_map", "source");
    assert!(ids.mapped(&pool).await.unwrap().is_empty(), "no table yet");
    sqlx::raw_sql(sqlx::AssertSqlSafe(ids.ddl()))
        .execute(&pool)
        .await
        .unwrap();
    let run = uuid::Uuid::nil();
    for (k, s) in [("user", "b\"2"), ("user", "a1"), ("order", "a1")] {
        sqlx::query("INSERT INTO id_map VALUES ($1, $2, $3, $4)")
            .bind(k)
            .bind(s)
            .bind(ids.id(k, s))
            .bind(run)
            .execute(&pool)
            .await
            .unwrap();
    }
    assert_eq!(
        ids.id("user", "a1"),
        IdMap::new("https://ferry.invalid/test", "x", "y").id("user", "a1")
    );
    let mut mapped = ids.mapped(&pool).await.unwrap();
    mapped.sort();
    assert_eq!(mapped.len(), 3);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("users.json");
    assert_eq!(
        ids.export(&pool, "user", &json, MapFormat::Json)
            .await
            .unwrap(),
        2
    );
    let m: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(m["b\"2"], ids.id("user", "b\"2").to_string());
    let csv = dir.path().join("orders.csv");
    ids.export(&pool, "order", &csv, MapFormat::Csv)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(&csv).unwrap(),
        format!("source_id,new_id\na1,{}\n", ids.id("order", "a1"))
    );
}
