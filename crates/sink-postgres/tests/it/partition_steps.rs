//! `PartitionSteps` in a user's own migration (context `()`): the inbound-foreign-key
//! pre-flight refuses a key the partitioned table cannot take, a run moves a table into
//! its monthly-partitioned twin row for row, and the rollback restores the original.

use etl_core::RunStatus;
use etl_core::migration::{Action, Migration, RunOptions};
use etl_sink_postgres::ident::TableName;
use etl_sink_postgres::journal::PgJournal;
use etl_sink_postgres::partition_steps::{PartitionSteps, PartitionTable};
use sqlx::PgConnection;

use super::plan::exec;

async fn text(conn: &mut PgConnection, sql: &str) -> String {
    let (s,): (String,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(conn)
        .await
        .unwrap();
    s
}

#[tokio::test]
async fn a_users_migration_partitions_a_table_row_for_row_and_rolls_back() {
    let (db, mut conn) = super::db().await;
    exec(
        &mut conn,
        "CREATE TABLE sites (site_id int PRIMARY KEY);
         INSERT INTO sites SELECT g FROM generate_series(1, 5) g;
         CREATE TABLE events (id bigint PRIMARY KEY, site_id int NOT NULL,
                              created_at timestamptz NOT NULL, v text);
         INSERT INTO events SELECT g, 1 + g % 5,
                timestamptz '2024-01-01' + (g % 180) * interval '1 day', md5(g::text)
           FROM generate_series(1, 600) g;
         CREATE TABLE notes (id int PRIMARY KEY, event_id bigint REFERENCES events (id));",
    )
    .await;
    let opts = etl_sink_postgres::connect_options(db.url()).unwrap();
    let table = PartitionTable::new(TableName::new("events"))
        .foreign_key("site_id", "sites")
        .index("events_p_site_idx", &["site_id", "created_at"]);
    let p = PartitionSteps::new(opts.clone(), "events_p", vec![table], "created_at", "id");
    let m = Migration::<()>::new("events_p")
        .restart_unfinished()
        .step(p.inbound_foreign_keys())
        .step(p.partitioned_tables())
        .step(p.mv.move_data())
        .step(p.verify())
        .step(p.mv.swap())
        .step(p.foreign_keys())
        .step(p.indexes())
        .step(p.analyze());
    let journal = PgJournal::new(opts);
    let reports = std::env::temp_dir().join(format!("ferry-pst-{}", uuid::Uuid::new_v4()));
    let run = |a: Action| RunOptions::new(&reports).with_action(a);
    let digest = "SELECT count(*) || ':' || sum(hashtextextended(t::text, 0)) FROM events t";
    let before = text(&mut conn, digest).await;

    // `notes.event_id` references `id` alone: the pre-flight refuses before any write.
    let r = m.execute(&(), &journal, &run(Action::Run)).await.unwrap();
    assert_eq!(r.status, RunStatus::Failed, "{:?}", r.error);
    let detail = format!("{:?} {:?}", r.error, r.steps[0].error);
    assert!(
        detail.contains("only unique key is (id, created_at)"),
        "{detail}"
    );
    let kind = "SELECT relkind::text FROM pg_class WHERE relname = 'events'";
    assert_eq!(text(&mut conn, kind).await, "r");

    exec(
        &mut conn,
        "ALTER TABLE notes DROP CONSTRAINT notes_event_id_fkey",
    )
    .await;
    let r = m.execute(&(), &journal, &run(Action::Run)).await.unwrap();
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
    assert_eq!(text(&mut conn, kind).await, "p");
    assert_eq!(text(&mut conn, digest).await, before);
    let verify = r.steps.iter().find(|s| s.name == "verify").unwrap();
    assert!(
        verify
            .message
            .contains("600 rows old, 600 new, 0 missing, 0 extra"),
        "{}",
        verify.message
    );
    let parts = "SELECT count(*)::text FROM pg_inherits WHERE inhparent = 'events'::regclass";
    // January to June 2024 and the premade months up to now + 3, plus DEFAULT.
    assert!(text(&mut conn, parts).await.parse::<i64>().unwrap() >= 7);
    let fk = "SELECT count(*)::text FROM pg_constraint WHERE conname = 'events_site_id_fkey'
              AND conrelid = 'events'::regclass AND convalidated";
    assert_eq!(text(&mut conn, fk).await, "1");
    let idx = "SELECT count(*)::text FROM pg_class WHERE relname = 'events_p_site_idx'";
    assert_eq!(text(&mut conn, idx).await, "1");

    // The rollback swaps the original back and drops what the run created.
    let r = m
        .execute(&(), &journal, &run(Action::Rollback))
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::RolledBack, "{:?}", r.error);
    assert_eq!(text(&mut conn, kind).await, "r");
    assert_eq!(text(&mut conn, digest).await, before);
    let left =
        "SELECT count(*)::text FROM pg_class WHERE relname IN ('events_partitioned', 'events_old')";
    assert_eq!(text(&mut conn, left).await, "0");
    std::fs::remove_dir_all(&reports).ok();
}
