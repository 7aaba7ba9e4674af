//! The observations partitioning migration (seed 002) against a real PostgreSQL: a full
//! run, rollback after every step, resume after a real kill, the online move under
//! concurrent writes, rows outside every expected month, a changed migration file refused,
//! a dry run that writes nothing, the lock pre-flight, and `--plan` after a stopped run.

mod support;
use support::example_binary;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use clap::Parser;
use etl_core::RunStatus;
use etl_core::migration::StepKind;
use etl_examples::partitioning::generate::{GenOptions, generate, strays};
use etl_examples::partitioning::{PartitioningArgs, run, schema};
use etl_sink_postgres::ident::TableName;
use etl_sink_postgres::move_data::{compare_tables, table_hash};
use sqlx::{Connection, PgConnection};

#[derive(Parser, Debug)]
struct A {
    #[command(flatten)]
    p: PartitioningArgs,
}

struct Env {
    db: etl_testkit::TestDb,
    dir: tempfile::TempDir,
}

impl Env {
    async fn new() -> Self {
        Env {
            db: etl_testkit::TestDb::create().await.unwrap(),
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn reports(&self, name: &str) -> PathBuf {
        self.dir.path().join("reports").join(name)
    }
    fn args(&self, report: &str, extra: &[&str]) -> PartitioningArgs {
        let mut argv = vec![
            "observations_partitioning".to_owned(),
            "--report-dir".into(),
            self.reports(report).display().to_string(),
            "--rows".into(),
            "3000".into(),
            "-q".into(),
        ];
        if !extra.contains(&"--batch-size") {
            argv.extend(["--batch-size".to_owned(), "700".to_owned()]);
        }
        argv.extend(extra.iter().map(|s| s.to_string()));
        A::try_parse_from(argv).unwrap().p
    }
    async fn try_run(&self, report: &str, extra: &[&str]) -> anyhow::Result<etl_core::RunReport> {
        run(&self.args(report, extra), self.db.url(), Default::default()).await
    }
    async fn run(&self, report: &str, extra: &[&str]) -> etl_core::RunReport {
        self.try_run(report, extra).await.unwrap()
    }
    async fn conn(&self) -> PgConnection {
        PgConnection::connect(self.db.url()).await.unwrap()
    }
    /// The source tables with `rows` observations over `months` months.
    async fn source(&self, rows: u64, months: u32) -> PgConnection {
        let mut c = self.conn().await;
        schema::create(&mut c).await.unwrap();
        generate(
            &mut c,
            &GenOptions {
                rows,
                months,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        c
    }
}

/// Monthly partitions from 2024-01 (the sample's first month) to `premake` months after the
/// later of 2025-11 (its last) and the current month.
fn months_premade(premake: u32) -> i64 {
    use chrono::Datelike;
    let today = chrono::Utc::now().date_naive();
    let last = chrono::NaiveDate::from_ymd_opt(2025, 11, 1).unwrap();
    let until = etl_sink_postgres::partition::premade_until(last, today, premake);
    i64::from(until.year() - 2024) * 12 + i64::from(until.month())
}

/// `petri_observations_old` compared with `petri_observations` by id and content.
async fn old_and_new_petri(c: &mut PgConnection) -> etl_sink_postgres::move_data::TableComparison {
    let (old, new) = ("petri_observations_old", "petri_observations");
    compare_tables(
        c,
        &TableName::new(old),
        &TableName::new(new),
        &["observation_id"],
        &[],
    )
    .await
    .unwrap()
}

/// The details a step recorded in the run's report.
fn details(r: &etl_core::RunReport, step: &str) -> serde_json::Value {
    let s = r.steps.iter().find(|s| s.name == step);
    s.unwrap_or_else(|| panic!("no step {step}"))
        .details
        .clone()
}

async fn one(conn: &mut PgConnection, sql: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(conn)
        .await
        .unwrap();
    n
}

/// Everything of the public schema except ferry's own tables: relations, columns,
/// indexes, constraints, views, triggers, functions, and the observation tables' content.
async fn fingerprint(conn: &mut PgConnection) -> Vec<String> {
    let (mut v,): (Vec<String>,) = sqlx::query_as(
        "SELECT array_agg(x ORDER BY x) FROM (
           SELECT 'rel ' || c.relname || ' ' || c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relname NOT LIKE 'ferry\\_%'
           UNION ALL SELECT 'col ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnum
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v') AND a.attnum > 0 AND NOT a.attisdropped AND c.relname NOT LIKE 'ferry\\_%'
           UNION ALL SELECT 'idx ' || indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename NOT LIKE 'ferry\\_%'
           UNION ALL SELECT 'con ' || conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid) || ' ' || convalidated
             FROM pg_constraint WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text NOT LIKE 'ferry\\_%'
           UNION ALL SELECT 'view ' || viewname || ' ' || definition FROM pg_views WHERE schemaname = 'public'
           UNION ALL SELECT 'trg ' || tgname FROM pg_trigger WHERE NOT tgisinternal
           UNION ALL SELECT 'fn ' || proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace) s(x)",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    for t in ["petri_observations", "gasifier_observations"] {
        let cols: Vec<(String,)> = sqlx::query_as(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        )
        .bind(t)
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        let cols: Vec<String> = cols.into_iter().map(|(c,)| c).collect();
        v.push(format!(
            "data {t} {}",
            table_hash(conn, &TableName::new(t), &cols).await.unwrap()
        ));
    }
    v
}

#[tokio::test]
async fn full_run_partitions_moves_verifies_and_cleans_up() {
    let env = Env::new().await;
    let r = env.run("full", &[]).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
    let t = &r.totals;
    assert_eq!((t.read, t.loaded), (3000, 3000));
    assert_eq!(r.units.len(), 2);
    assert_eq!(
        (r.units[0].name.as_str(), r.units[0].read),
        ("petri_observations", 1800)
    );
    assert!(r.validation.iter().all(|f| f.passed), "{:#?}", r.validation);
    assert!(env.reports("full").join("report.json").exists());

    let mut c = env.conn().await;
    // The live names are partitioned tables; the previous tables are kept as *_old.
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM pg_partitioned_table WHERE partrelid IN ('petri_observations'::regclass, 'gasifier_observations'::regclass)").await,
        2
    );
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM petri_observations_old").await,
        1800
    );
    // Months 2024-01 .. 2025-11, then --premake (3) months after the later of the data's
    // last month and today, and DEFAULT; the strays are in DEFAULT.
    let parts = one(
        &mut c,
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'petri_observations'::regclass",
    )
    .await;
    assert_eq!(parts, months_premade(3) + 1);
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM petri_observations_partitioned_default"
        )
        .await as u64,
        strays(1800)
    );
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM petri_observations_partitioned_default WHERE extract(year FROM created_at) NOT IN (1970, 2099)").await,
        0
    );
    assert!(
        strays(1800) > 0,
        "the sample has rows outside every expected month"
    );
    // VACUUM (ANALYZE) went over the new tables' partitions.
    assert!(
        one(&mut c, "SELECT count(*) FROM pg_stat_user_tables WHERE relname LIKE 'petri_observations_partitioned_y%' AND last_vacuum IS NOT NULL AND last_analyze IS NOT NULL").await > 0
    );
    // Views read the new tables, with names.
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM petri_observations_with_names WHERE program_name LIKE 'Program %' AND site_name LIKE 'Site %'").await,
        1800
    );
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid WHERE r.ev_class = 'gasifier_observations_with_names'::regclass AND d.refobjid = 'gasifier_observations_old'::regclass").await,
        0,
        "the view no longer reads the old table"
    );
    assert!(
        one(&mut c, "SELECT count(*) FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid WHERE r.ev_class = 'gasifier_observations_with_names'::regclass AND d.refobjid = 'gasifier_observations'::regclass").await > 0,
        "the view reads the partitioned table"
    );
    // Foreign keys validated, on every partition; deprecated columns gone; new tables there.
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM pg_constraint WHERE conrelid = 'gasifier_observations'::regclass AND contype = 'f' AND convalidated").await,
        3
    );
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'petri_observations'::regclass AND attname IN ('legacy_growth_color', 'old_placement_code') AND NOT attisdropped").await,
        0
    );
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM pg_tables WHERE tablename IN ('report_folders','report_folder_permissions','saved_reports','report_data_snapshots','report_version_history','dashboards','dashboard_widgets','dashboard_permissions')").await,
        8
    );
    let bad = sqlx::query("INSERT INTO petri_observations (submission_id, site_id, program_id, petri_code, fungicide_used) SELECT submission_id, site_id, gen_random_uuid(), 'x', 'No' FROM submissions LIMIT 1")
        .execute(&mut c)
        .await;
    assert!(bad.is_err(), "the new program_id foreign key is enforced");

    // A second run (a new run of the run layer) changes nothing: the SQL files are
    // already applied (their markers), the tables already swapped.
    let before = fingerprint(&mut c).await;
    let again = env.run("again", &[]).await;
    assert_eq!(again.status, RunStatus::Succeeded, "{:?}", again.error);
    assert_eq!(fingerprint(&mut c).await, before);
    for m in etl_examples::partitioning::MIGRATIONS {
        let s = again.steps.iter().find(|s| s.name == m).unwrap();
        assert!(s.message.contains("already applied"), "{s:?}");
    }
    let mv = again.steps.iter().find(|s| s.name == "move_data").unwrap();
    assert!(mv.message.contains("already swapped in"), "{mv:?}");

    // Cleanup drops the old tables; afterwards a rollback is refused.
    let cl = env.run("cleanup", &["--cleanup"]).await;
    assert_eq!(cl.status, RunStatus::Succeeded, "{:?}", cl.error);
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE '%\\_old'"
        )
        .await,
        0
    );
    let e = env.try_run("rb", &["--rollback"]).await.unwrap_err();
    assert!(e.to_string().contains("cleanup"), "{e}");
}

#[tokio::test]
async fn rollback_after_every_step_restores_the_original_database() {
    let env = Env::new().await;
    let mut c = env.source(1500, 3).await;
    let before = fingerprint(&mut c).await;
    let (_, m) = etl_examples::partitioning::migration(&env.args("x", &[]), env.db.url()).unwrap();
    let steps: Vec<String> = m
        .step_list()
        .iter()
        // The backups write nothing to the database (pg_dump files only).
        .filter(|s| !matches!(s.kind(), StepKind::Cleanup | StepKind::Backup))
        // `maintain` is optional (--maintain): a plain run does not run it.
        .filter(|s| s.name() != "maintain")
        .map(|s| s.name().to_owned())
        .collect();
    assert_eq!(steps.len(), 15);
    for (i, step) in steps.iter().enumerate() {
        // Alternate batch and online moves so both rollbacks are exercised.
        let mode: &[&str] = if i % 2 == 0 { &[] } else { &["--online"] };
        let mut a = vec!["--until", step.as_str()];
        a.extend_from_slice(mode);
        let r = env.run(&format!("until_{step}"), &a).await;
        assert_eq!(
            r.status,
            RunStatus::Succeeded,
            "until {step}: {:?}",
            r.error
        );
        let rb = env.run(&format!("rollback_{step}"), &["--rollback"]).await;
        assert_eq!(
            rb.status,
            RunStatus::RolledBack,
            "rollback after {step}: {:?}",
            rb.error
        );
        let after = fingerprint(&mut c).await;
        let diff: Vec<_> = before
            .iter()
            .filter(|x| !after.contains(x))
            .map(|x| format!("- {x}"))
            .chain(
                after
                    .iter()
                    .filter(|x| !before.contains(x))
                    .map(|x| format!("+ {x}")),
            )
            .collect();
        assert!(
            diff.is_empty(),
            "after rolling back `{step}`:\n{}",
            diff.join("\n")
        );
    }
}

/// Waits until the move of `run` has committed `rows` rows (its checkpoints), `run` still
/// running.
async fn moved(c: &mut PgConnection, run: &mut tokio::process::Child, rows: i64) {
    let t0 = std::time::Instant::now();
    loop {
        let n: Result<(i64,), _> = sqlx::query_as(
            "SELECT coalesce(sum(rows_moved), 0)::bigint FROM ferry_move_checkpoints",
        )
        .fetch_one(&mut *c)
        .await;
        if matches!(n, Ok((x,)) if x >= rows) {
            break;
        }
        assert!(t0.elapsed().as_secs() < 120, "the move never started");
        assert!(run.try_wait().unwrap().is_none(), "the run ended");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn resume_after_a_real_kill_moves_every_row_exactly_once() {
    let env = Env::new().await;
    let mut c = env.source(30_000, 23).await;
    let bin = example_binary("observations_partitioning");
    let mut child = tokio::process::Command::new(&bin)
        .args([
            "--report-dir",
            &env.reports("killed").display().to_string(),
            "--batch-size",
            "500",
            "--pause-ms",
            "20",
            "-q",
        ])
        .env("DATABASE_URL", env.db.url())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    moved(&mut c, &mut child, 2000).await;
    child.start_kill().unwrap(); // SIGKILL: no cleanup, no rollback from the client
    child.wait().await.unwrap();
    let moved = one(
        &mut c,
        "SELECT rows_moved FROM ferry_move_checkpoints WHERE move_name LIKE '%:petri_observations'",
    )
    .await;
    assert!(
        moved < 18_000,
        "the kill came too late to test anything ({moved} rows moved)"
    );
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM petri_observations_partitioned"
        )
        .await,
        moved,
        "the checkpoint matches the committed rows exactly"
    );
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM ferry_journal_steps WHERE step = 'move_data' AND state = 'running'").await,
        1
    );
    // A plain rerun is refused; --resume continues from the checkpoint.
    let e = env.try_run("rerun", &[]).await.unwrap_err();
    assert!(e.to_string().contains("--resume"), "{e}");
    let r = env
        .run("resumed", &["--resume", "--batch-size", "500"])
        .await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
    assert_eq!((r.totals.read, r.totals.loaded), (30_000, 30_000));
    let mv = &details(&r, "move_data")["petri_observations"]["backfill"];
    assert_eq!(
        mv["resumed_after"].as_array().map(|a| a.len()),
        Some(2),
        "{mv}"
    );
    assert_eq!(mv["rows"].as_i64().unwrap() + moved, 18_000, "{mv}");
    assert_eq!(
        one(
            &mut c,
            "SELECT count(DISTINCT observation_id) FROM petri_observations"
        )
        .await,
        18_000
    );
    let cmp = old_and_new_petri(&mut c).await;
    assert!(cmp.equal(), "{cmp:?}");
}

/// Writes to `petri_observations` by name until one lands in the new table (the swap has
/// happened): that write is rolled back, so the old table stays a frozen copy of the
/// moment of the swap. Returns the writes committed.
async fn writer(url: String, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) -> u64 {
    let mut c = PgConnection::connect(&url).await.unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let g = rng.u64(1..18_000);
        let id = format!("a0000000-0000-4000-8000-{g:012x}");
        let mut tx = c.begin().await.unwrap();
        let landed: Option<(String,)> = match rng.u8(0..4) {
            0 => sqlx::query_as(
                "INSERT INTO petri_observations (submission_id, site_id, program_id, petri_code, fungicide_used, notes, created_at)
                 SELECT submission_id, site_id, program_id, 'W' || $1, 'No', 'written during the move',
                        CASE WHEN $1 % 2 = 0 THEN now() ELSE timestamptz '2024-06-01' + $1 * interval '1 minute' END
                   FROM submissions WHERE global_submission_id = 100001 + $1 % 100
                 RETURNING tableoid::regclass::text",
            )
            .bind(g as i64)
            .fetch_optional(&mut *tx)
            .await
            .unwrap(),
            1 => sqlx::query_as(
                "UPDATE petri_observations SET growth_index = 12.34, notes = 'updated', updated_at = now()
                  WHERE observation_id = $1::uuid RETURNING tableoid::regclass::text",
            )
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await
            .unwrap(),
            2 => sqlx::query_as(
                "UPDATE petri_observations SET created_at = created_at + interval '40 days'
                  WHERE observation_id = $1::uuid RETURNING tableoid::regclass::text",
            )
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await
            .unwrap(),
            _ => sqlx::query_as(
                "DELETE FROM petri_observations WHERE observation_id = $1::uuid RETURNING tableoid::regclass::text",
            )
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await
            .unwrap(),
        };
        if landed
            .as_ref()
            .is_some_and(|(t,)| t != "petri_observations")
        {
            tx.rollback().await.unwrap();
            break;
        }
        tx.commit().await.unwrap();
        n += 1;
        done.store(n, Ordering::Relaxed);
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    n
}

#[tokio::test]
async fn online_move_under_concurrent_writes_equals_the_old_table_row_for_row() {
    let env = Env::new().await;
    let mut c = env.source(30_000, 23).await;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let w = tokio::spawn(writer(env.db.url().to_owned(), stop.clone(), done.clone()));
    // The writer is running before the move starts.
    while done.load(Ordering::Relaxed) < 20 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let r = env
        .run(
            "online",
            &["--online", "--batch-size", "1000", "--pause-ms", "10"],
        )
        .await;
    stop.store(true, Ordering::Relaxed);
    let writes = w.await.unwrap();
    assert_eq!(
        r.status,
        RunStatus::Succeeded,
        "{:?} {:#?}",
        r.error,
        r.validation
    );
    let petri = &details(&r, "move_data")["petri_observations"];
    let replayed = petri["replay"]["changes"].as_u64().unwrap()
        + petri["swap"]["final_changes"].as_u64().unwrap();
    let lock_ms = petri["swap"]["lock_held_ms"].as_f64().unwrap();
    assert!(writes >= 50, "the writer wrote only {writes} times");
    assert!(replayed > 0, "no change was captured: {petri}");
    assert!(lock_ms < 1000.0, "the swap held its lock {lock_ms} ms");
    // The old table froze at the swap; the new one must equal it row for row.
    let cmp = old_and_new_petri(&mut c).await;
    assert!(cmp.equal(), "{cmp:?}");
    assert!(
        one(
            &mut c,
            "SELECT count(*) FROM petri_observations WHERE notes = 'written during the move'"
        )
        .await
            > 0
    );
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgname LIKE '%ferry%'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn a_changed_migration_file_is_refused() {
    let env = Env::new().await;
    let dir = env.dir.path().join("migrations");
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(etl_examples::common::bundled("partitioning/migrations")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    let m = dir.display().to_string();
    let r = env
        .run("first", &["--migrations", &m, "--until", "003_permissions"])
        .await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
    let f = dir.join("002_dashboard_schema.sql");
    let text = std::fs::read_to_string(&f).unwrap();
    std::fs::write(
        &f,
        text.replace("is_public    boolean", "is_shared    boolean"),
    )
    .unwrap();
    let e = env
        .try_run("changed", &["--migrations", &m, "--resume"])
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("002_dashboard_schema") && msg.contains("changed after they were applied"),
        "{msg}"
    );
    let e = env
        .try_run("changed_dry", &["--migrations", &m, "--dry-run"])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("002_dashboard_schema"), "{e}");
    // Nothing ran: the move never started.
    let mut c = env.conn().await;
    let (tables,): (Vec<String>,) = sqlx::query_as(
        "SELECT coalesce(array_agg(tablename::text), '{}') FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE '%partitioned%'",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert!(tables.is_empty(), "{tables:?}");
    // Restoring the file lets the plan continue.
    std::fs::write(&f, text).unwrap();
    let r = env.run("restored", &["--migrations", &m, "--resume"]).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
}

#[tokio::test]
async fn a_dry_run_writes_nothing_and_a_held_lock_refuses_the_start() {
    let env = Env::new().await;
    let mut c = env.source(2000, 3).await;
    let before = fingerprint(&mut c).await;
    let r = env.run("dry", &["--dry-run"]).await;
    assert_eq!(r.status, RunStatus::DryRun, "{:?}", r.error);
    let move_sql = details(&r, "move_data")["sql"].to_string();
    assert!(
        move_sql
            .contains("ORDER BY \\\"created_at\\\", \\\"observation_id\\\" OFFSET $2 - 1 LIMIT 1"),
        "{move_sql}"
    );
    // OFFSET only seeks the end of one window after the keyset WHERE, once per table.
    assert_eq!(move_sql.matches("OFFSET").count(), 2, "{move_sql}");
    assert!(
        move_sql.contains("INSERT INTO \\\"petri_observations_partitioned\\\""),
        "{move_sql}"
    );
    assert_eq!(fingerprint(&mut c).await, before);
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'ferry\\_%'"
        )
        .await,
        0
    );

    // Another session keeps a transaction open on the table: the run refuses to start.
    let mut holder = env.conn().await;
    sqlx::raw_sql("BEGIN; SELECT count(*) FROM petri_observations;")
        .execute(&mut holder)
        .await
        .unwrap();
    let r = env.run("locked", &["--lock-timeout", "300ms"]).await;
    assert_eq!(r.status, RunStatus::Failed);
    let err = r.error.unwrap();
    assert!(
        err.contains("refusing to start") && err.contains("AccessShareLock"),
        "{err}"
    );
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'report%'"
        )
        .await,
        0
    );
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .unwrap();
    let r = env.run("unlocked", &["--lock-timeout", "300ms"]).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
}

#[tokio::test]
async fn plan_lists_every_step_with_its_state_and_what_resume_does_next() {
    let env = Env::new().await;
    env.source(1500, 3).await;
    let plan = || {
        let out = std::process::Command::new(example_binary("observations_partitioning"))
            .args(["--plan", "-q"])
            .env("DATABASE_URL", env.db.url())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let fresh = plan();
    assert!(
        fresh.contains("next: a run starts at step 1 `preflight`"),
        "{fresh}"
    );
    let r = env.run("until_move", &["--until", "move_data"]).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
    let text = plan();
    let (_, m) = etl_examples::partitioning::migration(&env.args("x", &[]), env.db.url()).unwrap();
    let line = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no line for {name}:\n{text}"))
            .to_owned()
    };
    for (i, s) in m.step_list().iter().enumerate() {
        let l = line(s.name());
        let state = if i <= 7 {
            "done"
        } else if s.kind() == StepKind::Cleanup
            || ["backup_before_cleanup", "maintain"].contains(&s.name())
        {
            "optional"
        } else {
            "pending"
        };
        assert_eq!(l.split_whitespace().nth(3), Some(state), "{l}");
    }
    assert!(
        text.contains(&format!("latest run {}: stopped", r.run_id)),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "next: --resume continues run {} at step 9 `verify`",
            r.run_id
        )),
        "{text}"
    );
    assert!(
        text.contains(
            "--rollback would undo, in this order: move_data, partitioned_tables, 003_permissions"
        ),
        "{text}"
    );
    // And --resume does what it said.
    let r = env.run("resumed", &["--resume"]).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
    let outcome = |n: &str| {
        r.steps
            .iter()
            .find(|s| s.name == n)
            .unwrap()
            .outcome
            .as_str()
    };
    let seen = [
        "preflight",
        "move_data",
        "verify",
        "swap",
        "analyze",
        "proof",
    ]
    .map(outcome);
    assert_eq!(seen, ["ran", "skipped", "ran", "ran", "ran", "ran"]);
    // The proof queries ran on each new table and the previous one, both plans kept.
    let proof = &r.steps.iter().find(|s| s.name == "proof").unwrap().details;
    for t in ["petri_observations", "gasifier_observations"] {
        let timings = proof[t].as_array().unwrap_or_else(|| panic!("{proof}"));
        assert_eq!(timings.len(), 2, "{proof}");
        assert!(
            timings[0]["new_plan"].as_str().unwrap().contains("Plan"),
            "{proof}"
        );
    }
}

/// The columns of `table`, in order.
async fn columns(conn: &mut PgConnection, table: &str) -> Vec<String> {
    let cols: Vec<(String,)> = sqlx::query_as(
        "SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
    )
    .bind(table)
    .fetch_all(conn)
    .await
    .unwrap();
    cols.into_iter().map(|(c,)| c).collect()
}

/// One run per target, with the real binary: while a run's move waits on a lock another
/// session holds, a second run (plain, `--resume`, `--rollback`) exits 2 naming the first
/// run and its process, and `--plan` says the run is live. Killed (SIGKILL), `--plan` says
/// it was interrupted, and `--resume` takes the lock and finishes: every row exactly once,
/// the content of the source (what a clean run gives).
#[tokio::test]
async fn a_second_run_is_refused_while_one_runs_and_a_killed_run_is_finished_by_resume() {
    let env = Env::new().await;
    let mut c = env.source(12_000, 12).await;
    let mut source = Vec::new();
    for t in ["petri_observations", "gasifier_observations"] {
        let cols = columns(&mut c, t).await;
        source.push(table_hash(&mut c, &TableName::new(t), &cols).await.unwrap());
    }
    let bin = example_binary("observations_partitioning");
    let binary = |report: &str, args: &[&str]| {
        std::process::Command::new(&bin)
            .args([
                "--report-dir",
                &env.reports(report).display().to_string(),
                "-q",
            ])
            .args(args)
            .env("DATABASE_URL", env.db.url())
            .output()
            .unwrap()
    };
    let mut first = tokio::process::Command::new(&bin)
        .args([
            "--report-dir",
            &env.reports("first").display().to_string(),
            "--batch-size",
            "300",
            "--pause-ms",
            "10",
            "--lock-timeout",
            "60s",
            "-q",
        ])
        .env("DATABASE_URL", env.db.url())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = first.id().unwrap();
    // Once the move has committed a few batches, another session locks both new tables:
    // the move's next batch (or the verify, or the swap) waits for it.
    moved(&mut c, &mut first, 600).await;
    let mut blocker = env.conn().await;
    let mut tx = blocker.begin().await.unwrap();
    sqlx::query("LOCK TABLE petri_observations_partitioned, gasifier_observations_partitioned IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .expect("the new tables exist: the first run has not swapped yet");
    support::wait_for_a_lock_wait(env.db.url(), &mut first).await;
    let (run_id,): (String,) = sqlx::query_as(
        "SELECT run_id::text FROM ferry_journal_runs WHERE migration = 'observations_partitioning'
          ORDER BY started_at DESC LIMIT 1",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();

    // One run at a time: a plain run, --resume and --rollback are refused, naming it.
    support::assert_one_run_at_a_time(&binary, pid, &run_id, &[]);

    // Killed while it waits: the committed batches and their checkpoints stay.
    first.start_kill().unwrap(); // SIGKILL
    first.wait().await.unwrap();
    tx.rollback().await.unwrap();
    let plan = support::plan(&binary);
    assert!(plan.contains("the run was interrupted"), "{plan}");
    assert!(
        plan.contains(&format!(
            "--resume continues run {run_id} at step 8 `move_data` (it was running"
        )),
        "{plan}"
    );

    // --resume takes the lock and finishes the same run.
    let o = binary("resumed", &["--resume", "--batch-size", "300"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.reports("resumed").join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["run_id"], run_id.as_str());
    assert_eq!(report["run_state"], "done");
    assert_eq!(report["totals"]["loaded"], 12_000);
    let moved = &report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "move_data")
        .unwrap()["details"]["petri_observations"]["backfill"];
    assert!(
        moved["resumed_after"].is_array() && moved["rows"].as_i64().unwrap() < 7_200,
        "the move continued at its checkpoint: {moved}"
    );
    for (t, before) in ["petri_observations", "gasifier_observations"]
        .iter()
        .zip(&source)
    {
        let n = one(&mut c, &format!("SELECT count(*) FROM {t}")).await;
        let distinct = one(
            &mut c,
            &format!("SELECT count(DISTINCT observation_id) FROM {t}"),
        )
        .await;
        assert_eq!(n, distinct, "{t}: no duplicates");
        // The old table is the untouched source; the new one holds its rows in the
        // columns it kept (005 drops the deprecated ones).
        let old = TableName::new(format!("{t}_old"));
        let all = columns(&mut c, &format!("{t}_old")).await;
        assert_eq!(
            &table_hash(&mut c, &old, &all).await.unwrap(),
            before,
            "{t}"
        );
        let kept = columns(&mut c, t).await;
        assert_eq!(
            table_hash(&mut c, &TableName::new(*t), &kept)
                .await
                .unwrap(),
            table_hash(&mut c, &old, &kept).await.unwrap(),
            "{t}: the content of the source"
        );
    }
}

/// Two plain runs started together on an empty database (the sample mode: a run generates
/// the source first): exactly one runs, the other is refused by the run lock (exit 2,
/// naming it), and the tables hold the generated rows once.
#[tokio::test]
async fn two_runs_started_on_an_empty_database_run_once() {
    let env = Env::new().await;
    let bin = example_binary("observations_partitioning");
    let start = |report: &str| {
        tokio::process::Command::new(&bin)
            .args(["--report-dir", &env.reports(report).display().to_string()])
            .args(["--rows", "20000", "-q"])
            .env("DATABASE_URL", env.db.url())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = start("first");
    let second = start("second");
    let mut c = env.conn().await;
    let (a, b) = (
        first.wait_with_output().await.unwrap(),
        second.wait_with_output().await.unwrap(),
    );
    let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let mut codes = [a.status.code(), b.status.code()];
    codes.sort();
    assert_eq!(codes, [Some(0), Some(2)], "{}\n{}", text(&a), text(&b));
    let refused = if a.status.code() == Some(2) { &a } else { &b };
    assert!(
        text(refused).contains("is being run by"),
        "{}",
        text(refused)
    );
    for (t, n) in [
        ("petri_observations", 12_000),
        ("gasifier_observations", 8_000),
    ] {
        assert_eq!(one(&mut c, &format!("SELECT count(*) FROM {t}")).await, n);
        assert_eq!(
            one(
                &mut c,
                &format!("SELECT count(DISTINCT observation_id) FROM {t}")
            )
            .await,
            n
        );
        assert_eq!(
            one(&mut c, &format!("SELECT count(*) FROM {t}_old")).await,
            n
        );
    }
}

/// Backup before the move → migration → `--cleanup` (backed up first) → `--restore` of
/// the first backup: both observation tables are back, unpartitioned, with the checksum
/// they had before the migration.
#[tokio::test]
async fn restore_of_the_backup_gives_back_the_tables_before_the_migration() {
    use etl_sink_postgres::backup::table_checksum;
    let env = Env::new().await;
    let mut c = env.source(3000, 6).await;
    let tables = schema::TABLES.map(TableName::new);
    let mut before = Vec::new();
    for t in &tables {
        before.push(table_checksum(&mut c, t).await.unwrap());
    }
    let r = env.run("full", &[]).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
    let dir = details(&r, "backup")["dir"].as_str().unwrap().to_owned();
    let r = env.run("cleanup", &["--cleanup"]).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
    let kept = &details(&r, "backup_before_cleanup")["manifest"];
    assert_eq!(
        kept["tables"].as_array().unwrap().len(),
        4,
        "live and old: {kept}"
    );
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM pg_partitioned_table").await,
        2
    );
    let o = std::process::Command::new(example_binary("observations_partitioning"))
        .args(["--restore", &dir, "--report-dir"])
        .arg(env.reports("restore"))
        .env("DATABASE_URL", env.db.url())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (t, b) in tables.iter().zip(&before) {
        assert_eq!(&table_checksum(&mut c, t).await.unwrap(), b, "{t}");
    }
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM pg_partitioned_table").await,
        0
    );
}

/// The name of the monthly partition of `parent_prefix` for the month `months` after the
/// current one.
fn month_ahead(months: u32) -> (chrono::NaiveDate, String) {
    use chrono::Datelike;
    let today = chrono::Utc::now().date_naive();
    let m = etl_sink_postgres::partition::premade_until(today, today, months);
    (
        m,
        format!(
            "petri_observations_partitioned_y{:04}m{:02}",
            m.year(),
            m.month()
        ),
    )
}

#[tokio::test]
async fn premade_partitions_exist_and_maintain_moves_default_strays() {
    let env = Env::new().await;
    let r = env.run("full", &["--premake", "1"]).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
    let mut c = env.conn().await;
    let parts = "SELECT count(*) FROM pg_inherits WHERE inhparent = 'petri_observations'::regclass";
    assert_eq!(one(&mut c, parts).await, months_premade(1) + 1);
    // The next month is premade: a row written for it lands in its partition, not DEFAULT.
    let (_, next) = month_ahead(1);
    assert_eq!(
        one(
            &mut c,
            &format!("SELECT count(*) FROM pg_class WHERE relname = '{next}'")
        )
        .await,
        1
    );
    // Rows of months 2 and 3 ahead go to DEFAULT (no partition yet): 5 and 3 of them.
    let default = "SELECT count(*) FROM petri_observations_partitioned_default";
    let strays_before = one(&mut c, default).await;
    assert_eq!(strays_before as u64, strays(1800));
    for (ahead, n) in [(2, 5), (3, 3)] {
        let (m, _) = month_ahead(ahead);
        sqlx::query(
            "INSERT INTO petri_observations (submission_id, site_id, program_id, petri_code, fungicide_used, created_at)
             SELECT submission_id, site_id, program_id, 'ahead', 'No', $1::date + interval '9 days 3 hours'
               FROM submissions ORDER BY submission_id LIMIT $2",
        )
        .bind(m)
        .bind(n)
        .execute(&mut c)
        .await
        .unwrap();
    }
    assert_eq!(one(&mut c, default).await, strays_before + 8);
    let total = one(&mut c, "SELECT count(*) FROM petri_observations").await;
    async fn hash(c: &mut PgConnection) -> String {
        let cols = ["observation_id", "created_at", "petri_code", "site_id"].map(String::from);
        table_hash(c, &TableName::new("petri_observations"), &cols)
            .await
            .unwrap()
    }
    let content = hash(&mut c).await;

    // --maintain (3 months ahead) adds months 2 and 3 and moves their rows out of DEFAULT.
    let m = env.run("maintain", &["--maintain", "--premake", "3"]).await;
    assert_eq!(m.status, RunStatus::Succeeded, "{:?}", m.error);
    let step = m.steps.iter().find(|s| s.name == "maintain").unwrap();
    assert_eq!(step.outcome.as_str(), "ran", "{step:?}");
    assert_eq!(one(&mut c, parts).await, months_premade(1) + 1 + 2);
    assert_eq!(one(&mut c, default).await, strays_before);
    for (ahead, n) in [(2, 5), (3, 3)] {
        let (_, name) = month_ahead(ahead);
        let sql = format!("SELECT count(*) FROM ONLY {name}");
        assert_eq!(one(&mut c, &sql).await, n, "{name}");
        let attached = format!(
            "SELECT count(*) FROM pg_inherits WHERE inhrelid = '{name}'::regclass AND inhparent = 'petri_observations'::regclass"
        );
        assert_eq!(one(&mut c, &attached).await, 1);
    }
    let added = &step.details["petri_observations"]["added"];
    let moved: Vec<i64> = (added.as_array().unwrap().iter())
        .map(|a| a["moved_rows"].as_i64().unwrap())
        .collect();
    assert_eq!(moved, [5, 3], "{added}");
    // Every row is still there, once, with the same content; the new partitions have the
    // parent's indexes and foreign keys.
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM petri_observations").await,
        total
    );
    assert_eq!(hash(&mut c).await, content);
    let (_, name) = month_ahead(3);
    assert!(
        one(
            &mut c,
            &format!("SELECT count(*) FROM pg_index WHERE indrelid = '{name}'::regclass")
        )
        .await
            >= 4
    );
    assert_eq!(
        one(&mut c, &format!("SELECT count(*) FROM pg_constraint WHERE conrelid = '{name}'::regclass AND contype = 'f'")).await,
        3
    );
    // Maintenance again: nothing to add, nothing moved.
    let again = env
        .run("maintain2", &["--maintain", "--premake", "3"])
        .await;
    assert_eq!(again.status, RunStatus::Succeeded, "{:?}", again.error);
    let s = again.steps.iter().find(|s| s.name == "maintain").unwrap();
    assert!(s.message.contains("0 partition(s) added"), "{}", s.message);
    assert_eq!(one(&mut c, parts).await, months_premade(1) + 1 + 2);
}

#[tokio::test]
async fn a_batch_move_carries_updates_and_deletes_made_during_the_move() {
    let env = Env::new().await;
    let mut c = env.source(3000, 23).await;
    let r = env.run("moved", &["--until", "move_data"]).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
    let ids: Vec<(uuid::Uuid,)> = sqlx::query_as(
        "SELECT observation_id FROM petri_observations ORDER BY created_at, observation_id LIMIT 4",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    let ids: Vec<uuid::Uuid> = ids.into_iter().map(|(i,)| i).collect();
    let new = "petri_observations_partitioned";
    // Moved already: the change happens behind the move.
    assert_eq!(
        one(
            &mut c,
            &format!(
                "SELECT count(*) FROM {new} WHERE observation_id = '{}'",
                ids[0]
            )
        )
        .await,
        1
    );
    async fn change(c: &mut PgConnection, upd: uuid::Uuid, del: uuid::Uuid, note: &str) {
        sqlx::query("UPDATE petri_observations SET notes = $2, growth_index = 42.5 WHERE observation_id = $1")
            .bind(upd)
            .bind(note)
            .execute(&mut *c)
            .await
            .unwrap();
        sqlx::query("DELETE FROM petri_observations WHERE observation_id = $1")
            .bind(del)
            .execute(&mut *c)
            .await
            .unwrap();
    }
    // After the move, before the verification (replayed by it) ...
    change(&mut c, ids[0], ids[1], "changed after the move").await;
    let r = env
        .run("verified", &["--resume", "--until", "verify"])
        .await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
    assert!(r.validation.iter().all(|f| f.passed), "{:#?}", r.validation);
    // ... and after the verification, before the swap (replayed under the swap's lock).
    change(&mut c, ids[2], ids[3], "changed before the swap").await;
    let r = env.run("swapped", &["--resume"]).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
    let note = |id: uuid::Uuid| {
        format!(
            "SELECT count(*) FROM petri_observations WHERE observation_id = '{id}' AND growth_index = 42.5 AND notes LIKE 'changed %'"
        )
    };
    let row = |id: uuid::Uuid| {
        format!("SELECT count(*) FROM petri_observations WHERE observation_id = '{id}'")
    };
    assert_eq!(one(&mut c, &note(ids[0])).await, 1, "update after the move");
    assert_eq!(
        one(&mut c, &note(ids[2])).await,
        1,
        "update before the swap"
    );
    assert_eq!(one(&mut c, &row(ids[1])).await, 0, "delete after the move");
    assert_eq!(one(&mut c, &row(ids[3])).await, 0, "delete before the swap");
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM pg_partitioned_table WHERE partrelid = 'petri_observations'::regclass").await,
        1
    );
    // The new table equals the old one row for row.
    let cmp = old_and_new_petri(&mut c).await;
    assert!(cmp.equal(), "{cmp:?}");
    assert_eq!(cmp.new_rows, 1800 - 2);
}

const REVIEWS: &str = "
CREATE UNIQUE INDEX petri_observations_id_created_key ON petri_observations (observation_id, created_at);
CREATE TABLE petri_reviews (
    review_id              serial PRIMARY KEY,
    observation_id         uuid NOT NULL,
    observation_created_at timestamptz NOT NULL,
    verdict                text NOT NULL,
    CONSTRAINT petri_reviews_observation_fkey FOREIGN KEY (observation_id, observation_created_at)
        REFERENCES petri_observations (observation_id, created_at) ON DELETE CASCADE
);
INSERT INTO petri_reviews (observation_id, observation_created_at, verdict)
SELECT observation_id, created_at, 'ok' FROM petri_observations ORDER BY observation_id LIMIT 50;
";

#[tokio::test]
async fn foreign_keys_of_other_tables_follow_the_swap_and_the_rollback() {
    foreign_keys_follow(&[], "swap").await;
}

#[tokio::test]
async fn foreign_keys_of_other_tables_follow_the_online_swap_and_the_rollback() {
    foreign_keys_follow(&["--online"], "move_data").await;
}

/// A table referencing petri_observations through (observation_id, created_at): the key
/// follows the swap of a run with `extra` (done by step `swap_step`) and the rollback.
async fn foreign_keys_follow(extra: &[&str], swap_step: &str) {
    let env = Env::new().await;
    let mut c = env.source(1500, 3).await;
    sqlx::raw_sql(REVIEWS).execute(&mut c).await.unwrap();
    let before = fingerprint(&mut c).await;
    let r = env.run("full", extra).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
    let fk = "SELECT count(*) FROM pg_constraint WHERE conname = 'petri_reviews_observation_fkey' AND conrelid = 'petri_reviews'::regclass";
    assert_eq!(
        one(
            &mut c,
            &format!("{fk} AND confrelid = 'petri_observations'::regclass AND convalidated")
        )
        .await,
        1,
        "re-pointed at the partitioned table and validated"
    );
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM pg_class WHERE oid = 'petri_observations'::regclass AND relkind = 'p'").await,
        1
    );
    let swap = details(&r, swap_step);
    let fks = &swap["petri_observations"];
    let fks = fks
        .get("foreign_keys")
        .unwrap_or(&fks["swap"]["foreign_keys"]);
    assert_eq!(
        *fks,
        serde_json::json!(["petri_reviews.petri_reviews_observation_fkey"]),
        "{swap}"
    );
    // Enforced against the new table: an observation written after the swap can be
    // reviewed, a missing one cannot; the old table can go.
    sqlx::raw_sql(
        "INSERT INTO petri_observations (observation_id, submission_id, site_id, program_id, petri_code, fungicide_used, created_at)
         SELECT '00000000-0000-4000-8000-00000000abcd', submission_id, site_id, program_id, 'new', 'No', '2024-02-03' FROM submissions LIMIT 1;
         INSERT INTO petri_reviews (observation_id, observation_created_at, verdict) VALUES ('00000000-0000-4000-8000-00000000abcd', '2024-02-03', 'new');",
    )
    .execute(&mut c)
    .await
    .unwrap();
    let bad = sqlx::query("INSERT INTO petri_reviews (observation_id, observation_created_at, verdict) VALUES (gen_random_uuid(), now(), 'x')")
        .execute(&mut c)
        .await;
    assert!(bad.is_err(), "the re-pointed key is enforced");
    sqlx::raw_sql("DELETE FROM petri_observations WHERE observation_id = '00000000-0000-4000-8000-00000000abcd'")
        .execute(&mut c)
        .await
        .unwrap();
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM petri_reviews WHERE verdict = 'new'"
        )
        .await,
        0,
        "ON DELETE CASCADE followed too"
    );
    // The rollback points the key at the original table again, validated.
    let rb = env.run("rollback", &["--rollback"]).await;
    assert_eq!(rb.status, RunStatus::RolledBack, "{:?}", rb.error);
    assert_eq!(fingerprint(&mut c).await, before);
    assert_eq!(
        one(
            &mut c,
            &format!("{fk} AND confrelid = 'petri_observations'::regclass AND convalidated")
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_foreign_key_the_partitioned_table_cannot_take_refuses_the_run() {
    let env = Env::new().await;
    let mut c = env.source(1500, 3).await;
    sqlx::raw_sql(
        "CREATE TABLE gasifier_alerts (alert_id serial PRIMARY KEY,
           observation_id uuid NOT NULL REFERENCES gasifier_observations (observation_id))",
    )
    .execute(&mut c)
    .await
    .unwrap();
    let before = fingerprint(&mut c).await;
    let r = env.run("refused", &[]).await;
    assert_eq!(r.status, RunStatus::Failed);
    let step = r
        .steps
        .iter()
        .find(|s| s.name == "inbound_foreign_keys")
        .unwrap();
    assert_eq!(step.outcome.as_str(), "failed", "{step:?}");
    let f = r.validation.iter().find(|f| !f.passed).unwrap();
    assert!(
        f.message.contains(
            "gasifier_alerts (observation_id) references gasifier_observations (observation_id)"
        ) && f
            .message
            .contains("only unique key is (observation_id, created_at)"),
        "{f:?}"
    );
    // Nothing was written.
    assert_eq!(fingerprint(&mut c).await, before);
}

#[tokio::test]
async fn report_tables_have_row_level_security_for_the_application_role() {
    let env = Env::new().await;
    let r = env.run("full", &["--until", "003_permissions"]).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
    let mut c = env.conn().await;
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM pg_class WHERE relname IN ('report_folders','report_folder_permissions','saved_reports','report_data_snapshots','report_version_history') AND relrowsecurity").await,
        5
    );
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM pg_policies WHERE schemaname = 'public'"
        )
        .await,
        14
    );
    let role = format!("ferry_app_{}", uuid::Uuid::new_v4().simple());
    let (u1, u2) = (
        "00000000-0000-4000-8000-0000000000a1",
        "00000000-0000-4000-8000-0000000000a2",
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {role} NOLOGIN;
         GRANT USAGE ON SCHEMA public TO {role};
         GRANT SELECT, INSERT, UPDATE, DELETE ON report_folders, report_folder_permissions, saved_reports,
               report_data_snapshots, report_version_history TO {role};
         INSERT INTO report_folders (folder_id, name, owner_id) VALUES
           ('00000000-0000-4000-8000-0000000000f1', 'mine', '{u1}'),
           ('00000000-0000-4000-8000-0000000000f2', 'shared with me', '{u2}'),
           ('00000000-0000-4000-8000-0000000000f3', 'not mine', '{u2}');
         INSERT INTO report_folder_permissions (folder_id, user_id, permission) VALUES
           ('00000000-0000-4000-8000-0000000000f2', '{u1}', 'view');
         INSERT INTO saved_reports (report_id, folder_id, name, owner_id, report_type, data_source, is_public) VALUES
           ('00000000-0000-4000-8000-0000000000b1', '00000000-0000-4000-8000-0000000000f3', 'private', '{u2}', 'table', 'submissions', false),
           ('00000000-0000-4000-8000-0000000000b2', '00000000-0000-4000-8000-0000000000f3', 'public', '{u2}', 'table', 'submissions', true),
           ('00000000-0000-4000-8000-0000000000b3', '00000000-0000-4000-8000-0000000000f2', 'in shared', '{u2}', 'chart', 'submissions', false),
           ('00000000-0000-4000-8000-0000000000b4', NULL, 'own', '{u1}', 'map', 'submissions', false);
         INSERT INTO report_data_snapshots (report_id, data) VALUES
           ('00000000-0000-4000-8000-0000000000b1', '[]'), ('00000000-0000-4000-8000-0000000000b3', '[]');"
    )))
    .execute(&mut c)
    .await
    .unwrap();
    // (folders, permission rows, reports, snapshots) seen as `user`.
    async fn seen(c: &mut PgConnection, role: &str, user: Option<&str>) -> [i64; 4] {
        let mut tx = c.begin().await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET LOCAL ROLE {role}")))
            .execute(&mut *tx)
            .await
            .unwrap();
        if let Some(u) = user {
            sqlx::query("SELECT set_config('app.user_id', $1, true)")
                .bind(u)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        let mut out = [0; 4];
        for (i, t) in [
            "report_folders",
            "report_folder_permissions",
            "saved_reports",
            "report_data_snapshots",
        ]
        .iter()
        .enumerate()
        {
            out[i] = one(&mut tx, &format!("SELECT count(*) FROM {t}")).await;
        }
        tx.rollback().await.unwrap();
        out
    }
    assert_eq!(
        seen(&mut c, &role, Some(u1)).await,
        [2, 1, 3, 1],
        "u1: own + shared folder"
    );
    assert_eq!(
        seen(&mut c, &role, Some(u2)).await,
        [2, 1, 3, 2],
        "u2: owns f2, f3"
    );
    assert_eq!(
        seen(&mut c, &role, None).await,
        [0, 0, 1, 0],
        "nobody: public reports only"
    );
    // A user cannot create a folder for someone else, nor change another's report.
    let mut tx = c.begin().await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET LOCAL ROLE {role}; SELECT set_config('app.user_id', '{u1}', true)"
    )))
    .execute(&mut *tx)
    .await
    .unwrap();
    let e = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO report_folders (name, owner_id) VALUES ('forged', '{u2}')"
    )))
    .execute(&mut *tx)
    .await;
    assert!(e.unwrap_err().to_string().contains("row-level security"));
    tx.rollback().await.unwrap();
    let mut tx = c.begin().await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET LOCAL ROLE {role}; SELECT set_config('app.user_id', '{u1}', true)"
    )))
    .execute(&mut *tx)
    .await
    .unwrap();
    let n = sqlx::query("UPDATE saved_reports SET name = 'taken' WHERE report_id = '00000000-0000-4000-8000-0000000000b3'")
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(n, 0, "a report u1 may only see is not changed");
    tx.rollback().await.unwrap();
    // The down file removes them with the tables.
    let rb = env.run("rollback", &["--rollback"]).await;
    assert_eq!(rb.status, RunStatus::RolledBack, "{:?}", rb.error);
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM pg_policies WHERE schemaname = 'public'"
        )
        .await,
        0
    );
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM pg_proc WHERE proname = 'report_folder_owner'"
        )
        .await,
        0
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP OWNED BY {role}; DROP ROLE {role}"
    )))
    .execute(&mut c)
    .await
    .unwrap();
}
