use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use etl_sink_postgres::ident::TableName;
use etl_sink_postgres::upsert::{SqlCheck, TableChange, TextInsert, Upsert, UpsertTable};
use uuid::Uuid;

const SETUP: &str = "
CREATE TABLE parents (id int PRIMARY KEY, name text NOT NULL, tags text[], amount numeric(10,2), at timestamp);
CREATE TABLE children (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES parents(id) ON DELETE CASCADE, note text);
INSERT INTO parents VALUES (1, 'one', '{a,b}', 1.50, '2024-01-01 10:00:00.123456'),
                           (2, 'two', NULL, 2.00, '2024-01-02'), (3, 'three', '{}', NULL, NULL);
INSERT INTO children VALUES (10, 1, 'first'), (12, 3, NULL);
CREATE SCHEMA stage;
CREATE TABLE stage.parents (LIKE parents, source_id text);
CREATE TABLE stage.children (LIKE children);
";

fn batch(cols: &[(&str, Vec<Option<&str>>)]) -> RecordBatch {
    let arrays: Vec<(&str, ArrayRef)> = cols
        .iter()
        .map(|(n, v)| (*n, Arc::new(StringArray::from(v.clone())) as ArrayRef))
        .collect();
    RecordBatch::try_from_iter(arrays).unwrap()
}

async fn state(conn: &mut sqlx::PgConnection) -> Vec<String> {
    let mut out = Vec::new();
    for t in ["parents", "children"] {
        let (s,): (String,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT coalesce(string_agg(to_jsonb(t)::text, '|' ORDER BY t.id), '') FROM {t} t"
        )))
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        out.push(s);
    }
    out
}

async fn stage(conn: &mut sqlx::PgConnection, amount: &str) {
    sqlx::raw_sql("TRUNCATE stage.parents, stage.children")
        .execute(&mut *conn)
        .await
        .unwrap();
    let casts: HashMap<String, String> = [(
        "tags".to_owned(),
        "ARRAY(SELECT jsonb_array_elements_text({}::jsonb))".to_owned(),
    )]
    .into();
    let parents = batch(&[
        ("source_id", vec![Some("b"), Some("d")]),
        ("id", vec![Some("2"), Some("4")]),
        ("name", vec![Some("two, renamed"), Some("four")]),
        ("tags", vec![Some(r#"["x"]"#), None]),
        ("amount", vec![Some(amount), Some("4.25")]),
        ("at", vec![Some("2025-05-05T05:05:05"), None]),
    ]);
    let fields: Vec<String> = parents
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let ins = TextInsert::new(
        conn,
        &TableName::qualified("stage", "parents"),
        &fields,
        &casts,
    )
    .await
    .unwrap();
    assert_eq!(ins.write(conn, &parents).await.unwrap(), 2);
    let children = batch(&[
        ("id", vec![Some("10"), Some("11")]),
        ("parent_id", vec![Some("1"), Some("4")]),
        ("note", vec![Some("first, edited"), Some("new")]),
    ]);
    let fields: Vec<String> = ["id", "parent_id", "note"].map(String::from).to_vec();
    TextInsert::new(
        conn,
        &TableName::qualified("stage", "children"),
        &fields,
        &HashMap::new(),
    )
    .await
    .unwrap()
    .write(conn, &children)
    .await
    .unwrap();
}

/// A database with the tables, staging holding a parent of amount `amount`; the upsert;
/// the state before it.
async fn setup(amount: &str) -> (etl_testkit::TestDb, sqlx::PgConnection, Upsert, Vec<String>) {
    let (db, mut conn) = super::db().await;
    sqlx::raw_sql(SETUP).execute(&mut conn).await.unwrap();
    stage(&mut conn, amount).await;
    let before = state(&mut conn).await;
    let u = upsert(db.url());
    (db, conn, u, before)
}

fn upsert(url: &str) -> Upsert {
    let opts = etl_sink_postgres::connect_options(url).unwrap();
    Upsert::new(
        opts,
        vec![
            UpsertTable::new(TableName::qualified("stage", "parents"), TableName::new("parents"), &["id"]),
            UpsertTable::new(TableName::qualified("stage", "children"), TableName::new("children"), &["id"]),
        ],
    )
    .checks(vec![
        SqlCheck::none("amount_positive", "SELECT count(*) FROM parents WHERE amount <= 0"),
        SqlCheck::warn(
            "parents_have_children",
            "SELECT count(*) FROM parents p WHERE NOT EXISTS (SELECT 1 FROM children c WHERE c.parent_id = p.id)",
            "parents without children",
        ),
    ])
}

#[tokio::test]
async fn upsert_commits_with_its_checks_and_undo_restores_the_exact_previous_state() {
    let (_db, mut conn, u, before) = setup("2.50").await;
    let run = Uuid::now_v7();

    // A preview changes nothing and leaves no table behind.
    let p = u.run(run, "upsert", true).await.unwrap();
    assert!(!p.committed && p.rollback_sql.is_none());
    assert_eq!(state(&mut conn).await, before);
    let (undo_table,): (bool,) =
        sqlx::query_as("SELECT to_regclass('ferry_upsert_undo') IS NOT NULL")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(!undo_table);
    assert!(!u.applied(run, "upsert").await.unwrap());

    let out = u.run(run, "upsert", false).await.unwrap();
    assert!(out.committed);
    assert_eq!(p.changes, out.changes, "the preview is what the run does");
    assert_eq!(
        out.changes,
        vec![
            TableChange {
                table: "parents".into(),
                inserted: 1,
                updated: 1
            },
            TableChange {
                table: "children".into(),
                inserted: 1,
                updated: 1
            },
        ]
    );
    let warn = out
        .findings
        .iter()
        .find(|f| f.check == "parents_have_children")
        .unwrap();
    assert!(
        !warn.vetoes() && warn.message.starts_with("1 parents"),
        "{warn:?}"
    );
    let (name, tags, at): (String, Vec<String>, String) =
        sqlx::query_as("SELECT name, tags, at::text FROM parents WHERE id = 2")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(
        (name.as_str(), tags, at.as_str()),
        ("two, renamed", vec!["x".to_owned()], "2025-05-05 05:05:05")
    );
    assert!(u.applied(run, "upsert").await.unwrap());
    let after = state(&mut conn).await;
    assert_ne!(after, before);

    // The undo: inserted rows deleted, updated rows restored, to the microsecond.
    let undone = u.undo(run, "upsert").await.unwrap();
    assert_eq!(undone.len(), 2);
    assert_eq!(state(&mut conn).await, before);
    assert!(!u.applied(run, "upsert").await.unwrap());
    assert!(
        u.undo(run, "upsert")
            .await
            .unwrap()
            .iter()
            .all(|c| c.inserted == 0 && c.updated == 0)
    );

    // The DBA script does the same.
    let run2 = Uuid::now_v7();
    let out = u.run(run2, "upsert", false).await.unwrap();
    assert_eq!(state(&mut conn).await, after);
    sqlx::raw_sql(sqlx::AssertSqlSafe(out.rollback_sql.unwrap()))
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(state(&mut conn).await, before);

    // Staging dropped after the switch (a cleanup): the undo still restores the rows.
    let run3 = Uuid::now_v7();
    u.run(run3, "upsert", false).await.unwrap();
    assert_eq!(state(&mut conn).await, after);
    sqlx::raw_sql("DROP SCHEMA stage CASCADE")
        .execute(&mut conn)
        .await
        .unwrap();
    let undone = u.undo(run3, "upsert").await.unwrap();
    assert_eq!(undone.len(), 2);
    assert_eq!(state(&mut conn).await, before);
}

#[tokio::test]
async fn a_vetoing_check_rolls_the_whole_upsert_back() {
    let (_db, mut conn, u, before) = setup("-1").await;
    let run = Uuid::now_v7();
    let out = u.run(run, "upsert", false).await.unwrap();
    assert!(!out.committed);
    let f = out
        .findings
        .iter()
        .find(|f| f.check == "amount_positive")
        .unwrap();
    assert!(f.vetoes() && f.message == "1 violating rows", "{f:?}");
    assert_eq!(state(&mut conn).await, before, "nothing committed");
    assert!(!u.applied(run, "upsert").await.unwrap());
}
