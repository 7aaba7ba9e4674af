//! SQL migration steps and the pre-flight on the run layer, monthly partitions and keyset
//! moves against a real PostgreSQL.

use chrono::NaiveDate;
use etl_core::migration::{Action, Migration, RunOptions, StepKind};
use etl_core::{CancellationToken, Progress, RunStatus};
use etl_sink_postgres::ident::TableName;
use etl_sink_postgres::journal::PgJournal;
use etl_sink_postgres::move_data::{KeysetMove, OnlineMove, compare_tables};
use etl_sink_postgres::partition::{self, MonthlyPartitions};
use etl_sink_postgres::sql_file::{SqlMigration, check_unchanged};
use etl_sink_postgres::steps::{preflight, sql_migration};
use sqlx::{Connection, PgConnection};

pub(crate) async fn exec(conn: &mut PgConnection, sql: &str) {
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
async fn sql_migrations_run_once_changed_files_are_refused_and_rollback_reverses() {
    let (db, mut conn) = super::db().await;
    let opts = etl_sink_postgres::connect_options(db.url()).unwrap();
    let dir = std::env::temp_dir().join(format!("ferry-plan-it-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let reports = dir.join("reports");
    let p = |n: &str| dir.join(n);
    std::fs::write(
        p("001_a.sql"),
        "CREATE TABLE a (id int PRIMARY KEY); INSERT INTO a VALUES (1);",
    )
    .unwrap();
    std::fs::write(p("001_a.down.sql"), "DROP TABLE a;").unwrap();
    std::fs::write(
        p("002_b.sql"),
        "-- ferry:no-transaction\nCREATE TABLE IF NOT EXISTS b (id int);\nCREATE INDEX CONCURRENTLY IF NOT EXISTS b_id ON b (id);\n",
    )
    .unwrap();
    std::fs::write(p("002_b.down.sql"), "DROP TABLE b;").unwrap();
    std::fs::write(
        p("003_bad.sql"),
        "CREATE TABLE c (id int); SELECT * FROM no_such_table;",
    )
    .unwrap();
    std::fs::write(p("003_bad.down.sql"), "DROP TABLE IF EXISTS c;").unwrap();
    let files = ["001_a", "002_b", "003_bad"];
    let m = || {
        Migration::<()>::new("t")
            .steps(files.map(|f| sql_migration(opts.clone(), &p(&format!("{f}.sql"))).unwrap()))
    };
    let journal = PgJournal::new(opts.clone());
    let run = |a: Action| RunOptions::new(&reports).with_action(a);
    let tables = "SELECT count(*) FROM pg_tables WHERE tablename IN ('a', 'b', 'c')";

    // A dry run lists the statements and writes nothing, not even the journal or markers.
    let r = m()
        .execute(&(), &journal, &run(Action::DryRun))
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::DryRun, "{:?}", r.error);
    assert_eq!(r.steps[0].details["sql"][1], "INSERT INTO a VALUES (1)");
    assert_eq!(one(&mut conn, tables).await, 0);
    assert_eq!(
        one(
            &mut conn,
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'ferry%'"
        )
        .await,
        0
    );

    // A failing transactional migration leaves nothing behind and stops the run.
    let r = m().execute(&(), &journal, &run(Action::Run)).await.unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    assert!(
        r.error.as_deref().unwrap().contains("003_bad"),
        "{:?}",
        r.error
    );
    assert_eq!(
        one(
            &mut conn,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'c'"
        )
        .await,
        0
    );
    let states: Vec<&str> = r.steps.iter().map(|s| s.state.as_str()).collect();
    assert_eq!(states, ["done", "done", "failed"]);
    assert_eq!(
        one(
            &mut conn,
            "SELECT count(*) FROM ferry_sql_migrations WHERE migration = 't'"
        )
        .await,
        2
    );

    // A file changed after it was applied: --resume refuses (its fingerprint), the
    // markers name it, and a run of the step itself refuses too.
    std::fs::write(p("001_a.sql"), "CREATE TABLE a (id bigint PRIMARY KEY);").unwrap();
    let e = m()
        .execute(&(), &journal, &run(Action::Resume))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("001_a") && e.to_string().contains("changed"),
        "{e}"
    );
    let now = [SqlMigration::from_file(&p("001_a.sql")).unwrap()];
    let e = check_unchanged(&mut conn, "t", &now).await.unwrap_err();
    assert!(
        e.to_string().contains("changed after they were applied")
            && e.to_string().contains("001_a"),
        "{e}"
    );
    let r = Migration::<()>::new("t")
        .step(sql_migration(opts.clone(), &p("001_a.sql")).unwrap())
        .execute(&(), &journal, &run(Action::DryRun))
        .await
        .unwrap();
    assert!(
        r.error.as_deref().unwrap_or_default().contains("001_a"),
        "{:?}",
        r.error
    );
    std::fs::write(
        p("001_a.sql"),
        "CREATE TABLE a (id int PRIMARY KEY); INSERT INTO a VALUES (1);",
    )
    .unwrap();

    // Without --resume a half-done run is refused; with it, done steps are skipped.
    let e = m()
        .execute(&(), &journal, &run(Action::Run))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("--resume"), "{e}");
    std::fs::write(p("003_bad.sql"), "CREATE TABLE c (id int);").unwrap();
    // (003's fingerprint changed, but it never completed: that is allowed.)
    let r = m()
        .execute(&(), &journal, &run(Action::Resume))
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
    let outcomes: Vec<&str> = r.steps.iter().map(|s| s.outcome.as_str()).collect();
    assert_eq!(outcomes, ["skipped", "skipped", "ran"]);
    assert_eq!(
        one(&mut conn, "SELECT count(*) FROM a").await,
        1,
        "001 never ran twice"
    );

    // A kill between a file's COMMIT and the journal's record: the journal says the step
    // was running, the marker says it was applied; the rerun applies nothing.
    exec(
        &mut conn,
        "UPDATE ferry_journal_steps SET state = 'running' WHERE step IN ('001_a', '002_b');
                     UPDATE ferry_journal_runs SET state = 'running'",
    )
    .await;
    let r = m()
        .execute(&(), &journal, &run(Action::Resume))
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
    for s in &r.steps[..2] {
        assert!(
            s.outcome == "ran" && s.message.contains("already applied"),
            "{s:?}"
        );
    }
    assert_eq!(
        one(&mut conn, "SELECT count(*) FROM a").await,
        1,
        "001 never ran twice"
    );

    // Rollback undoes newest first (markers included); afterwards the files apply again.
    let r = m()
        .execute(&(), &journal, &run(Action::Rollback))
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::RolledBack, "{:?}", r.error);
    let (order,): (Vec<String>,) = sqlx::query_as(
        "SELECT array_agg(step ORDER BY finished_at) FROM ferry_journal_steps WHERE state = 'rolled_back'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(order, ["003_bad", "002_b", "001_a"]);
    assert_eq!(one(&mut conn, tables).await, 0);
    assert_eq!(
        one(&mut conn, "SELECT count(*) FROM ferry_sql_migrations").await,
        0
    );
    let r = m().execute(&(), &journal, &run(Action::Run)).await.unwrap();
    assert!(
        r.error.is_none()
            && r.steps
                .iter()
                .all(|s| s.outcome == "ran" && s.message.starts_with("applied")),
        "{r:#?}"
    );
    assert_eq!(one(&mut conn, tables).await, 3);

    // A file without a .down.sql cannot be undone: the rollback is refused up front.
    std::fs::write(p("004_x.sql"), "CREATE TABLE x (id int);").unwrap();
    let m4 = Migration::<()>::new("t4").step(sql_migration(opts.clone(), &p("004_x.sql")).unwrap());
    m4.execute(&(), &journal, &run(Action::Run)).await.unwrap();
    let e = m4
        .execute(&(), &journal, &run(Action::Rollback))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no rollback script"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_held_lock_refuses_the_start() {
    let (db, mut conn) = super::db().await;
    let opts = etl_sink_postgres::connect_options(db.url()).unwrap();
    exec(&mut conn, "CREATE TABLE obs (id int)").await;
    let dir = std::env::temp_dir().join(format!("ferry-preflight-it-{}", uuid::Uuid::new_v4()));
    let m = Migration::<()>::new("p")
        .step(preflight(
            opts.clone(),
            vec![TableName::new("obs")],
            "200ms",
        ))
        .step(etl_sink_postgres::steps::sql_step(
            "write",
            StepKind::Schema,
            opts.clone(),
            "CREATE TABLE written (id int)",
        ));
    let journal = PgJournal::new(opts.clone());
    let mut holder = PgConnection::connect(db.url()).await.unwrap();
    exec(&mut holder, "BEGIN; SELECT count(*) FROM obs;").await;
    let r = m
        .execute(&(), &journal, &RunOptions::new(&dir))
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    let e = r.error.unwrap();
    assert!(
        e.contains("refusing to start") && e.contains("AccessShareLock"),
        "{e}"
    );
    assert_eq!(
        one(
            &mut conn,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'written'"
        )
        .await,
        0
    );
    // In a dry run the probe does not run (it would wait): the step reports the holder.
    let r = m
        .execute(
            &(),
            &journal,
            &RunOptions::new(&dir).with_action(Action::DryRun),
        )
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::DryRun, "{:?}", r.error);
    assert_eq!(
        r.steps[0].details["lock_holders"][0]["mode"],
        "AccessShareLock"
    );
    exec(&mut holder, "ROLLBACK").await;
    let r = m
        .execute(
            &(),
            &journal,
            &RunOptions::new(&dir).with_action(Action::Resume),
        )
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
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
