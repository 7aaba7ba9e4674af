//! Partition maintenance, foreign keys of other tables following a swap, and the change
//! log of a batch move, against a real PostgreSQL.

use std::time::Duration;

use chrono::NaiveDate;
use etl_core::{CancellationToken, Progress};
use etl_sink_postgres::ident::TableName;
use etl_sink_postgres::move_data::{KeysetMove, OnlineMove, compare_tables, swap_names};
use etl_sink_postgres::partition::{self, MonthlyPartitions};
use sqlx::{Connection, PgConnection};

async fn one(conn: &mut PgConnection, sql: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(conn)
        .await
        .unwrap();
    n
}

fn d(y: i32, m: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, 1).unwrap()
}

/// `ev` partitioned by month 2024-01..2024-03 + DEFAULT, with rows in every month and 7 in
/// 2024-05 and 2 in 2024-06 waiting in DEFAULT (and one 1999 row that stays there).
async fn events(conn: &mut PgConnection) {
    sqlx::raw_sql("CREATE TABLE ev_src (id bigint PRIMARY KEY, at timestamptz NOT NULL, v text)")
        .execute(&mut *conn)
        .await
        .unwrap();
    let p = MonthlyPartitions::new(TableName::new("ev"), "at", d(2024, 1), d(2024, 3));
    p.create(conn, &TableName::new("ev_src"), &["id"])
        .await
        .unwrap();
    sqlx::raw_sql(
        "CREATE INDEX ev_v_idx ON ev (v);
         INSERT INTO ev SELECT g, timestamptz '2024-01-01' + (g % 90) * interval '1 day', 'v' || g FROM generate_series(1, 300) g;
         INSERT INTO ev SELECT 1000 + g, timestamptz '2024-05-10' + g * interval '1 hour', 'may' FROM generate_series(1, 7) g;
         INSERT INTO ev SELECT 2000 + g, timestamptz '2024-06-03', 'june' FROM generate_series(1, 2) g;
         INSERT INTO ev VALUES (9999, '1999-12-31', 'stray');",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
}

#[tokio::test]
async fn maintain_adds_the_next_months_and_moves_default_rows_into_them() {
    let (_db, mut conn) = super::db().await;
    events(&mut conn).await;
    let ev = TableName::new("ev");
    assert_eq!(
        one(&mut conn, "SELECT count(*) FROM ONLY ev_default").await,
        10
    );
    let before = one(&mut conn, "SELECT count(*) FROM ev").await;
    let done = partition::maintain(&mut conn, &ev, "at", d(2024, 7), "2s")
        .await
        .unwrap();
    let got: Vec<(NaiveDate, &str, i64)> = (done.iter())
        .map(|m| (m.month, m.partition.as_str(), m.moved_rows))
        .collect();
    assert_eq!(
        got,
        [
            (d(2024, 4), "ev_y2024m04", 0),
            (d(2024, 5), "ev_y2024m05", 7),
            (d(2024, 6), "ev_y2024m06", 2),
            (d(2024, 7), "ev_y2024m07", 0),
        ]
    );
    assert_eq!(
        one(&mut conn, "SELECT count(*) FROM ONLY ev_default").await,
        1
    );
    assert_eq!(
        one(&mut conn, "SELECT count(*) FROM ONLY ev_y2024m05").await,
        7
    );
    assert_eq!(one(&mut conn, "SELECT count(*) FROM ev").await, before);
    assert_eq!(
        partition::partitioned_months(&mut conn, &ev).await.unwrap(),
        (1..=7).map(|m| d(2024, m)).collect::<Vec<_>>()
    );
    // The parent's indexes (primary key, ev_v_idx) are on the new partitions; the month
    // CHECK used for the attach is gone.
    assert_eq!(
        one(
            &mut conn,
            "SELECT count(*) FROM pg_index WHERE indrelid = 'ev_y2024m06'::regclass"
        )
        .await,
        2
    );
    assert_eq!(
        one(&mut conn, "SELECT count(*) FROM pg_constraint WHERE conrelid = 'ev_y2024m06'::regclass AND contype = 'c' AND conname = 'ferry_month_bounds'").await,
        0
    );
    // New rows of a maintained month land in its partition.
    sqlx::query("INSERT INTO ev VALUES (3000, '2024-07-04', 'july')")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        one(&mut conn, "SELECT count(*) FROM ONLY ev_y2024m07").await,
        1
    );
    // Again: nothing to do.
    let again = partition::maintain(&mut conn, &ev, "at", d(2024, 7), "2s")
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");
    // A table that is not partitioned is refused with a clear message.
    let e = partition::maintain(&mut conn, &TableName::new("ev_src"), "at", d(2024, 7), "2s")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not a partitioned table"), "{e}");
}

#[tokio::test]
async fn maintain_refuses_a_month_whose_default_rows_other_tables_reference() {
    let (_db, mut conn) = super::db().await;
    events(&mut conn).await;
    sqlx::raw_sql(
        "CREATE TABLE ev_notes (id bigint, at timestamptz, FOREIGN KEY (id, at) REFERENCES ev (id, at) ON DELETE CASCADE);
         INSERT INTO ev_notes VALUES (1003, timestamptz '2024-05-10' + 3 * interval '1 hour');",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let e = partition::maintain(&mut conn, &TableName::new("ev"), "at", d(2024, 7), "2s")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("1 row(s) of ev_notes reference rows of 2024-05") && e.contains("ON DELETE"),
        "{e}"
    );
    // April was added (nothing referenced); May changed nothing, its note is still there.
    assert_eq!(
        one(&mut conn, "SELECT count(*) FROM ONLY ev_default").await,
        10
    );
    assert_eq!(one(&mut conn, "SELECT count(*) FROM ev_notes").await, 1);
    assert_eq!(
        one(
            &mut conn,
            "SELECT count(*) FROM pg_class WHERE relname IN ('ev_y2024m04', 'ev_y2024m05')"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn foreign_keys_of_other_tables_follow_the_swap_and_back() {
    let (_db, mut conn) = super::db().await;
    sqlx::raw_sql(
        "CREATE TABLE obs (id bigint PRIMARY KEY, at timestamptz NOT NULL);
         CREATE UNIQUE INDEX obs_id_at ON obs (id, at);
         INSERT INTO obs SELECT g, timestamptz '2024-01-01' + g * interval '1 day' FROM generate_series(1, 50) g;
         CREATE TABLE notes (id bigint, at timestamptz,
            CONSTRAINT notes_obs_fkey FOREIGN KEY (id, at) REFERENCES obs (id, at));
         INSERT INTO notes SELECT id, at FROM obs WHERE id % 5 = 0;
         CREATE TABLE obs_new (LIKE obs) PARTITION BY RANGE (at);
         ALTER TABLE obs_new ADD PRIMARY KEY (id, at);
         CREATE TABLE obs_new_all PARTITION OF obs_new DEFAULT;
         INSERT INTO obs_new SELECT * FROM obs;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let fk = |rel: &str| {
        format!(
            "SELECT count(*) FROM pg_constraint WHERE conname = 'notes_obs_fkey' AND confrelid = '{rel}'::regclass AND convalidated"
        )
    };
    let (obs, new) = (TableName::new("obs"), TableName::new("obs_new"));
    let (_, fks, _) = swap_names(&mut conn, &obs, &new, "obs_old", "2s")
        .await
        .unwrap();
    assert_eq!(fks, ["notes.notes_obs_fkey"]);
    // Re-pointed NOT VALID under the swap's lock, validated after.
    assert_eq!(one(&mut conn, &fk("obs")).await, 0);
    let v = partition::validate_inbound_foreign_keys(&mut conn, &obs)
        .await
        .unwrap();
    assert_eq!(v, ["notes.notes_obs_fkey"]);
    assert_eq!(one(&mut conn, &fk("obs")).await, 1);
    assert_eq!(
        one(
            &mut conn,
            "SELECT count(*) FROM pg_class WHERE oid = 'obs'::regclass AND relkind = 'p'"
        )
        .await,
        1
    );
    // Back again.
    let (_, fks, _) = swap_names(&mut conn, &obs, &TableName::new("obs_old"), "obs_new", "2s")
        .await
        .unwrap();
    assert_eq!(fks, ["notes.notes_obs_fkey"]);
    partition::validate_inbound_foreign_keys(&mut conn, &obs)
        .await
        .unwrap();
    assert_eq!(one(&mut conn, &fk("obs")).await, 1);
    assert_eq!(
        one(
            &mut conn,
            "SELECT count(*) FROM pg_class WHERE oid = 'obs'::regclass AND relkind = 'r'"
        )
        .await,
        1
    );
    // A key on `id` alone cannot reference the partitioned table: the swap is refused,
    // nothing renamed.
    sqlx::raw_sql("CREATE TABLE tags (id bigint CONSTRAINT tags_obs_fkey REFERENCES obs (id));")
        .execute(&mut conn)
        .await
        .unwrap();
    let e = swap_names(&mut conn, &obs, &new, "obs_old", "2s")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tags_obs_fkey")
            && e.contains("partition key")
            && e.contains("nothing was swapped"),
        "{e}"
    );
    assert_eq!(
        one(
            &mut conn,
            "SELECT count(*) FROM pg_class WHERE oid = 'obs'::regclass AND relkind = 'r'"
        )
        .await,
        1
    );
    assert_eq!(
        one(
            &mut conn,
            "SELECT count(*) FROM pg_class WHERE relname = 'obs_new'"
        )
        .await,
        1
    );
}

async fn src_and_dst(conn: &mut PgConnection) -> etl_sink_postgres::move_data::TableComparison {
    let (src, dst) = (TableName::new("src"), TableName::new("dst"));
    compare_tables(conn, &src, &dst, &["id"], &[])
        .await
        .unwrap()
}

#[tokio::test]
async fn updates_and_deletes_between_batches_are_replayed_from_the_change_log() {
    let (db, mut conn) = super::db().await;
    sqlx::raw_sql(
        "CREATE TABLE src (id bigint PRIMARY KEY, at timestamptz NOT NULL, v text);
         INSERT INTO src SELECT g, timestamptz '2024-01-01' + g * interval '1 minute', 'v' || g FROM generate_series(1, 2000) g;
         CREATE TABLE dst (LIKE src INCLUDING ALL);",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let mut mv = KeysetMove::new(
        "t",
        TableName::new("src"),
        TableName::new("dst"),
        &["at", "id"],
    );
    (mv.batch_size, mv.pause) = (200, Duration::from_millis(150));
    let o = OnlineMove::new(mv.clone(), "id");
    o.install_capture(&mut conn).await.unwrap();
    // A writer changes rows already moved while the batches run.
    let url = db.url().to_owned();
    let writer = tokio::spawn(async move {
        let mut c = PgConnection::connect(&url).await.unwrap();
        loop {
            let n = one(&mut c, "SELECT count(*) FROM dst").await;
            if n >= 400 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sqlx::raw_sql(
            "UPDATE src SET v = 'updated during the move' WHERE id IN (5, 6);
             DELETE FROM src WHERE id IN (7, 8, 9);
             INSERT INTO src VALUES (5000, '2023-01-01', 'inserted behind the keyset');",
        )
        .execute(&mut c)
        .await
        .unwrap();
        one(&mut c, "SELECT count(*) FROM dst").await
    });
    mv.run(
        &mut conn,
        &Progress::hidden(),
        &CancellationToken::new(),
        false,
    )
    .await
    .unwrap();
    let moved_when_changed = writer.await.unwrap();
    assert!(
        moved_when_changed < 2000,
        "the changes came during the move"
    );
    // Without the replay the copy is stale ...
    let stale = src_and_dst(&mut conn).await;
    assert!(!stale.equal(), "{stale:?}");
    // ... with it, the same row for row.
    let r = o.replay(&mut conn, 0).await.unwrap();
    assert_eq!(r.keys, 6, "{r:?}");
    let cmp = src_and_dst(&mut conn).await;
    assert!(cmp.equal(), "{cmp:?}");
    assert_eq!(cmp.new_rows, 2000 - 3 + 1);
    assert_eq!(
        one(
            &mut conn,
            "SELECT count(*) FROM dst WHERE v = 'updated during the move'"
        )
        .await,
        2
    );
}
