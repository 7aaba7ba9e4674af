//! The plan runner, monthly partitions and keyset moves against a real PostgreSQL.

use chrono::NaiveDate;
use etl_core::{CancellationToken, Progress};
use etl_sink_postgres::ident::TableName;
use etl_sink_postgres::move_data::{KeysetMove, OnlineMove, compare_tables};
use etl_sink_postgres::partition::{self, MonthlyPartitions};
use etl_sink_postgres::plan::{Outcome, Plan, RunOptions, Step, StepContext, StepState};
use sqlx::{Connection, PgConnection};

async fn exec(conn: &mut PgConnection, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(conn)
        .await
        .unwrap();
}

async fn one(conn: &mut PgConnection, sql: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(conn)
        .await
        .unwrap();
    n
}

#[tokio::test]
async fn migrations_run_once_changed_files_are_refused_and_rollback_reverses() {
    let (_db, mut conn) = super::db().await;
    let dir = std::env::temp_dir().join(format!("ferry-plan-it-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = |n: &str| dir.join(n);
    std::fs::write(
        p("001_a.sql"),
        "CREATE TABLE a (id int PRIMARY KEY); INSERT INTO a VALUES (1);",
    )
    .unwrap();
    std::fs::write(p("001_a.down.sql"), "DROP TABLE a;").unwrap();
    std::fs::write(
        p("002_b.sql"),
        "-- ferry:no-transaction\nCREATE TABLE b (id int);\nCREATE INDEX CONCURRENTLY b_id ON b (id);\n",
    )
    .unwrap();
    std::fs::write(p("002_b.down.sql"), "DROP TABLE b;").unwrap();
    std::fs::write(
        p("003_bad.sql"),
        "CREATE TABLE c (id int); SELECT * FROM no_such_table;",
    )
    .unwrap();
    std::fs::write(p("003_bad.down.sql"), "DROP TABLE IF EXISTS c;").unwrap();
    let plan = |files: &[&str]| {
        Plan::new(
            "t",
            files
                .iter()
                .map(|f| Step::migration(f, &p(&format!("{f}.sql"))).unwrap())
                .collect(),
        )
    };
    let ctx = StepContext::new("t");

    // A failing transactional migration leaves nothing behind and stops the plan.
    let out = plan(&["001_a", "002_b", "003_bad"])
        .run(&mut conn, &ctx, &RunOptions::default())
        .await
        .unwrap();
    assert!(
        out.error.as_deref().unwrap().contains("003_bad"),
        "{:?}",
        out.error
    );
    assert_eq!(
        one(
            &mut conn,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'c'"
        )
        .await,
        0
    );
    let st = plan(&["001_a", "002_b", "003_bad"])
        .status(&mut conn)
        .await
        .unwrap();
    let states: Vec<StepState> = st.iter().map(|s| s.state).collect();
    assert_eq!(
        states,
        [
            StepState::Completed,
            StepState::Completed,
            StepState::Failed
        ]
    );

    // Without --resume a half-done plan is refused; with it, completed steps are skipped.
    let e = plan(&["001_a", "002_b", "003_bad"])
        .run(&mut conn, &ctx, &RunOptions::default())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("--resume"), "{e}");
    std::fs::write(p("003_bad.sql"), "CREATE TABLE c (id int);").unwrap();
    let resume = RunOptions {
        resume: true,
        ..Default::default()
    };
    let out = plan(&["001_a", "002_b", "003_bad"])
        .run(&mut conn, &ctx, &resume)
        .await
        .unwrap();
    assert!(out.error.is_none(), "{:?}", out.error);
    assert!(matches!(out.steps[0].outcome, Outcome::Skipped { .. }));
    assert_eq!(out.steps[2].outcome, Outcome::Ran);
    assert_eq!(
        one(&mut conn, "SELECT count(*) FROM a").await,
        1,
        "001 never ran twice"
    );

    // A changed file that already ran is refused before anything runs.
    std::fs::write(p("001_a.sql"), "CREATE TABLE a (id bigint PRIMARY KEY);").unwrap();
    let e = plan(&["001_a", "002_b", "003_bad"])
        .run(&mut conn, &ctx, &RunOptions::default())
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("changed after they were applied")
            && e.to_string().contains("001_a"),
        "{e}"
    );
    let e = plan(&["001_a"]).dry_run(&mut conn, &ctx).await.unwrap_err();
    assert!(e.to_string().contains("001_a"), "{e}");

    // Rollback undoes in reverse; afterwards the plan can run again.
    std::fs::write(
        p("001_a.sql"),
        "CREATE TABLE a (id int PRIMARY KEY); INSERT INTO a VALUES (1);",
    )
    .unwrap();
    let out = plan(&["001_a", "002_b", "003_bad"])
        .rollback(&mut conn, &ctx)
        .await
        .unwrap();
    assert!(out.error.is_none(), "{:?}", out.error);
    let names: Vec<&str> = out.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["003_bad", "002_b", "001_a"]);
    assert_eq!(
        one(
            &mut conn,
            "SELECT count(*) FROM pg_tables WHERE tablename IN ('a', 'b', 'c')"
        )
        .await,
        0
    );
    let out = plan(&["001_a", "002_b", "003_bad"])
        .run(&mut conn, &ctx, &RunOptions::default())
        .await
        .unwrap();
    assert!(out.error.is_none() && out.steps.iter().all(|s| s.outcome == Outcome::Ran));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn partitions_from_data_keyset_move_resumes_and_prunes() {
    let (_db, mut conn) = super::db().await;
    exec(
        &mut conn,
        "SET TimeZone = 'UTC';
         CREATE TABLE obs (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, v text);
         INSERT INTO obs SELECT g, timestamptz '2024-01-01' + g * interval '1 hour', 'v' || g FROM generate_series(1, 3000) g;
         INSERT INTO obs VALUES (100000, '1999-12-31 23:00', 'old');",
    )
    .await;
    let parts = MonthlyPartitions::new(
        TableName::new("obs_p"),
        "created_at",
        NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
        NaiveDate::from_ymd_opt(2024, 5, 1).unwrap(),
    );
    parts
        .create(&mut conn, &TableName::new("obs"), &["id"])
        .await
        .unwrap();
    let derived = MonthlyPartitions::from_data(
        &mut conn,
        &TableName::new("obs"),
        TableName::new("x"),
        "created_at",
        0,
    )
    .await
    .unwrap();
    assert_eq!(
        derived.months.first(),
        Some(&NaiveDate::from_ymd_opt(1999, 12, 1).unwrap())
    );

    let mut mv = KeysetMove::new(
        "obs",
        TableName::new("obs"),
        parts.parent.clone(),
        &["created_at", "id"],
    );
    mv.batch_size = 700;
    // Cancel at once: nothing but committed batches.
    let cancel = CancellationToken::new();
    cancel.cancel();
    let e = mv
        .run(&mut conn, &Progress::hidden(), &cancel, false)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("--resume"), "{e}");
    let s = mv
        .run(
            &mut conn,
            &Progress::hidden(),
            &CancellationToken::new(),
            false,
        )
        .await
        .unwrap();
    assert_eq!(s.total_rows, 3001);
    assert_eq!(s.batches, 5);
    let cp = mv.checkpoint(&mut conn).await.unwrap().unwrap();
    assert!(cp.done && cp.rows == 3001);
    // Finished: a second run copies nothing; a catch-up copies only newer rows.
    assert_eq!(
        mv.run(
            &mut conn,
            &Progress::hidden(),
            &CancellationToken::new(),
            false
        )
        .await
        .unwrap()
        .rows,
        0
    );
    exec(
        &mut conn,
        "INSERT INTO obs VALUES (5000, '2030-01-01', 'future')",
    )
    .await;
    let c = mv
        .run(
            &mut conn,
            &Progress::hidden(),
            &CancellationToken::new(),
            true,
        )
        .await
        .unwrap();
    assert_eq!(c.rows, 1);
    let cmp = compare_tables(
        &mut conn,
        &TableName::new("obs"),
        &parts.parent,
        &["id"],
        &[],
    )
    .await
    .unwrap();
    assert!(cmp.equal(), "{cmp:?}");
    // Rows outside the months went to DEFAULT.
    let counts = partition::partition_counts(&mut conn, &parts.parent)
        .await
        .unwrap();
    assert_eq!(counts.last().unwrap(), &("obs_p_default".to_owned(), 2));
    assert_eq!(counts.iter().map(|c| c.1).sum::<i64>(), 3002);
    exec(&mut conn, "ANALYZE obs_p").await;
    let pr = partition::check_pruning(&mut conn, &parts.parent, "created_at", parts.months[2])
        .await
        .unwrap();
    assert!(pr.pruned, "{pr:?}");
    assert_eq!(pr.scanned, ["obs_p_y2024m03"]);
    let dense = partition::dense_key_range(&mut conn, &TableName::new("obs"), "created_at", 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        dense.0,
        NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
        "the lone 1999 row is left to DEFAULT"
    );
    // Online indexes and foreign keys on the partitioned table.
    partition::create_index(&mut conn, &parts.parent, "obs_p_v", &["v"])
        .await
        .unwrap();
    partition::create_index(&mut conn, &parts.parent, "obs_p_v", &["v"])
        .await
        .unwrap();
    assert_eq!(
        one(&mut conn, "SELECT count(*) FROM pg_index WHERE indrelid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'obs_p'::regclass) AND indisvalid AND NOT indisprimary").await,
        6
    );
    exec(
        &mut conn,
        "CREATE TABLE vs (v text PRIMARY KEY); INSERT INTO vs SELECT DISTINCT v FROM obs",
    )
    .await;
    let fk = partition::ForeignKey {
        name: "obs_p_v_fkey".into(),
        columns: vec!["v".into()],
        references: TableName::new("vs"),
        ref_columns: vec!["v".into()],
    };
    partition::add_foreign_key(&mut conn, &parts.parent, &fk)
        .await
        .unwrap();
    partition::add_foreign_key(&mut conn, &parts.parent, &fk)
        .await
        .unwrap();
    let e = sqlx::query("INSERT INTO obs_p VALUES (99999, '2024-02-02', 'nope')")
        .execute(&mut conn)
        .await;
    assert!(e.is_err(), "the foreign key is enforced");
}

#[tokio::test]
async fn online_move_replays_changes_and_swaps() {
    let (db, mut conn) = super::db().await;
    exec(
        &mut conn,
        "CREATE TABLE t (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, v int);
         INSERT INTO t SELECT g, timestamptz '2024-01-01' + g * interval '1 minute', g FROM generate_series(1, 2000) g;
         CREATE VIEW t_v AS SELECT id, v FROM t;",
    )
    .await;
    let parts = MonthlyPartitions::new(
        TableName::new("t_p"),
        "created_at",
        NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
        NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
    );
    parts
        .create(&mut conn, &TableName::new("t"), &["id"])
        .await
        .unwrap();
    let mut mv = KeysetMove::new(
        "t",
        TableName::new("t"),
        parts.parent.clone(),
        &["created_at", "id"],
    );
    mv.batch_size = 300;
    let online = OnlineMove::new(mv, "id");
    online.install_capture(&mut conn).await.unwrap();
    // Changes during the backfill.
    let mut other = PgConnection::connect(db.url()).await.unwrap();
    exec(&mut other, "UPDATE t SET v = -v WHERE id % 7 = 0; DELETE FROM t WHERE id % 11 = 0; INSERT INTO t VALUES (5000, '2024-03-05', 1)").await;
    let s = online
        .backfill
        .run(
            &mut conn,
            &Progress::hidden(),
            &CancellationToken::new(),
            false,
        )
        .await
        .unwrap();
    assert!(s.rows > 0);
    exec(
        &mut other,
        "UPDATE t SET created_at = created_at + interval '1 day' WHERE id % 13 = 0",
    )
    .await;
    online.replay(&mut conn, 0).await.unwrap();
    exec(&mut other, "DELETE FROM t WHERE id % 17 = 0").await;
    let sw = online.swap(&mut conn, "t_old").await.unwrap();
    assert!(sw.final_changes > 0);
    assert_eq!(sw.views, ["public.t_v"]);
    let cmp = compare_tables(
        &mut conn,
        &TableName::new("t_old"),
        &TableName::new("t"),
        &["id"],
        &[],
    )
    .await
    .unwrap();
    assert!(cmp.equal(), "{cmp:?}");
    assert_eq!(
        one(
            &mut conn,
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 't'::regclass"
        )
        .await,
        2,
        "the partitioned table took the name"
    );
    assert_eq!(
        one(&mut conn, "SELECT count(*) FROM t_v").await,
        cmp.old_rows
    );
    online
        .remove_capture(&mut conn, &TableName::new("t_old"))
        .await
        .unwrap();
    assert_eq!(
        one(
            &mut conn,
            "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal"
        )
        .await,
        0
    );
}
