//! Seed 002 as a migration of the run layer, recorded in the journal of the target
//! (`ferry_journal_*`), with the flags every migration has (`--plan`, `--dry-run`,
//! `--resume`, `--rollback`, `--only STEP`) and its own `--until`, `--online`, `--cleanup`,
//! `--premake`, `--maintain`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use etl_core::cli::{BackupArgs, CommonArgs};
use etl_core::migration::{Action, Journal, Migration, RunState, Status, StepKind, StepState};
use etl_core::{CancellationToken, RunReport};
use etl_sink_postgres::journal::PgJournal;
use etl_sink_postgres::partition_steps::PartitionSteps;
use etl_sink_postgres::proof::ProofArgs;
use etl_sink_postgres::sql_file::{SqlMigration, check_unchanged};
use etl_sink_postgres::steps::{pg_dump_step, preflight, sql_migration};
use sqlx::{ConnectOptions as _, Connection, PgConnection};

use super::steps::{Ctx, KEY, PK, proof_queries, tables};

/// The migration's name in the journal and the markers.
pub const NAME: &str = "observations_partitioning";

/// Options of `observations_partitioning`.
#[derive(clap::Args, Debug, Clone)]
pub struct PartitioningArgs {
    /// Common options (`--batch-size` is the rows per move transaction).
    #[command(flatten)]
    pub common: CommonArgs,
    /// Backups (`pg_dump` before the move and before `--cleanup`) and `--restore`.
    #[command(flatten)]
    pub backup: BackupArgs,
    /// The proof queries, timed on the new tables and the previous ones after the indexes
    /// are built (default: one site's and one program's last 90 days).
    #[command(flatten)]
    pub proof: ProofArgs,
    /// Move online: capture changes with triggers during the backfill, replay them, and
    /// swap in one short-lock transaction (writers keep writing). Default: batch move
    /// (writers should be stopped).
    #[arg(long)]
    pub online: bool,
    /// Run the cleanup: a `pg_dump` of the live and old tables first
    /// (`backup_before_cleanup`), then drop the old tables (`*_old`) and the move's
    /// leftovers. Irreversible: a rollback is impossible afterwards (`--restore` of a
    /// backup is what remains).
    #[arg(long)]
    pub cleanup: bool,
    /// Partitions premade after the later of the data's last month and the current month
    /// (rows of later months go to DEFAULT until `--maintain` adds their month).
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub premake: u32,
    /// Partition maintenance (e.g. from cron, after the migration): add the partitions up
    /// to --premake months after the current month and move the rows of those months out
    /// of DEFAULT, one short transaction per month (runs the `maintain` step only).
    #[arg(long, conflicts_with_all = ["cleanup", "rollback", "resume", "dry_run"])]
    pub maintain: bool,
    /// The longest any statement waits for a lock (PostgreSQL interval); the run refuses to
    /// start when the tables cannot be locked within it.
    #[arg(long, default_value = "5s", value_name = "INTERVAL")]
    pub lock_timeout: String,
    /// Observations to generate when the source tables do not exist (the bundled sample).
    #[arg(long, default_value_t = 20_000, value_name = "N")]
    pub rows: u64,
    /// Stop after this step (see --plan for the names); --resume continues.
    #[arg(long, value_name = "STEP")]
    pub until: Option<String>,
    /// Pause between move batches, in milliseconds (gives other sessions room).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub pause_ms: u64,
    /// Months holding less than this share of a table's rows, before the first or after
    /// the last busy month, get no partition: their rows go to the DEFAULT partition (a
    /// busy month holds at least 10 rows whatever the share).
    #[arg(long, default_value_t = 0.001, value_name = "SHARE")]
    pub min_month_share: f64,
    /// Directory of the SQL migrations (`NNN_name.sql` + `NNN_name.down.sql`). Default:
    /// the bundled examples/data/partitioning/migrations.
    #[arg(long, value_name = "DIR")]
    pub migrations: Option<PathBuf>,
}

/// The SQL migration files, in order (file stems: the step names).
pub const MIGRATIONS: [&str; 5] = [
    "001_report_management",
    "002_dashboard_schema",
    "003_permissions",
    "004_views_with_names",
    "005_drop_deprecated_columns",
];

fn files(args: &PartitioningArgs) -> Vec<PathBuf> {
    let dir = (args.migrations.clone())
        .unwrap_or_else(|| crate::common::bundled("partitioning/migrations"));
    MIGRATIONS
        .iter()
        .map(|m| dir.join(format!("{m}.sql")))
        .collect()
}

/// The context and the migration for `args` against `url`.
pub fn migration(args: &PartitioningArgs, url: &str) -> anyhow::Result<(Ctx, Migration<Ctx>)> {
    // Every session waits at most --lock-timeout for a lock; long statements are the
    // point here (generation, moves): no slow-statement warnings.
    let opts = etl_sink_postgres::connect_options(url)?
        .options([("lock_timeout", args.lock_timeout.as_str())])
        .log_slow_statements(tracing::log::LevelFilter::Off, Duration::from_secs(3600));
    let mut p = PartitionSteps::new(opts.clone(), NAME, tables(), KEY, PK);
    (p.mv.batch_size, p.mv.pause) = (
        args.common.batch_size.max(1) as i64,
        Duration::from_millis(args.pause_ms),
    );
    (p.mv.lock_timeout, p.mv.online) = (args.lock_timeout.clone(), args.online);
    (p.min_month_share, p.premake) = (args.min_month_share, args.premake);
    (p.proof, p.queries) = (args.proof.clone(), proof_queries());
    let ctx = Ctx { opts: opts.clone() };
    let sql = |i: usize| {
        let f = &files(args)[i];
        sql_migration(opts.clone(), f).with_context(|| format!("reading migration {}", f.display()))
    };
    let live: Vec<_> = p.mv.tables().iter().map(|t| t.live.clone()).collect();
    let old = p.mv.tables().iter().map(|t| t.old.clone());
    let dir = args.backup.backup_dir.clone();
    let before_cleanup = live.iter().cloned().chain(old).collect();
    let m = Migration::new(NAME)
        .step(preflight(opts.clone(), live.clone(), &args.lock_timeout))
        .step(p.inbound_foreign_keys())
        .step(pg_dump_step("backup", url, live, dir.clone()))
        .steps([sql(0)?, sql(1)?, sql(2)?])
        .step(p.partitioned_tables())
        .step(p.mv.move_data())
        .step(p.verify())
        .step(p.mv.swap())
        .step(sql(3)?)
        .step(p.foreign_keys())
        .step(p.indexes())
        .step(sql(4)?)
        .step(p.analyze())
        .step(p.proof())
        .step(p.maintain())
        .step(pg_dump_step("backup_before_cleanup", url, before_cleanup, dir).optional())
        .step(p.mv.cleanup());
    Ok((ctx, m))
}

/// `--plan`: the steps, their states and what `--resume` would do next.
pub async fn status(args: &PartitioningArgs, url: &str) -> anyhow::Result<Status> {
    let (ctx, m) = migration(args, url)?;
    Ok(m.status(&PgJournal::new(ctx.opts.clone())).await?)
}

/// Run what the options ask for against `url` (generating the sample source when the
/// tables do not exist); the report is written to `--report-dir`.
///
/// # Errors
/// Refusals before any step runs (a SQL migration changed after it was applied, a plain
/// run while the latest run is unfinished, nothing to resume or roll back, ...).
pub async fn run(
    args: &PartitioningArgs,
    url: &str,
    cancel: CancellationToken,
) -> anyhow::Result<RunReport> {
    anyhow::ensure!(!args.common.plan, "--plan reads only: call `status`");
    let (ctx, m) = migration(args, url)?;
    let mut conn = PgConnection::connect_with(&ctx.opts)
        .await
        .context("connecting to PostgreSQL (check --database-url / DATABASE_URL)")?;
    if !args.common.rollback && !super::schema::exists(&mut conn).await? {
        // Runs started together generate the sample once, and none sees the tables before
        // their rows (a run that did would migrate them empty): one transaction, under a
        // lock the others wait for; they then find the tables and meet the run lock.
        let key = "hashtext('ferry observations_partitioning sample')";
        let lock =
            format!("BEGIN; SET LOCAL lock_timeout = 0; SELECT pg_advisory_lock({key}); COMMIT");
        sqlx::raw_sql(sqlx::AssertSqlSafe(lock))
            .execute(&mut conn)
            .await?;
        let made = async {
            // A transaction begun after the wait sees the tables made meanwhile.
            let mut tx = conn.begin().await?;
            if !super::schema::exists(&mut tx).await? {
                generate(&mut tx, args.rows).await?;
            }
            anyhow::Ok(tx.commit().await?)
        }
        .await;
        let unlock = format!("SELECT pg_advisory_unlock({key})");
        sqlx::raw_sql(sqlx::AssertSqlSafe(unlock))
            .execute(&mut conn)
            .await?;
        made?;
    }
    let journal = PgJournal::new(ctx.opts.clone());
    let mut opts = args.common.run_options();
    (opts.cancel, opts.target) = (cancel, Some(etl_core::config::redact_url(url)));
    if args.cleanup {
        opts.action = Action::Only(vec!["backup_before_cleanup".into(), "cleanup".into()]);
    } else if args.maintain {
        opts.action = Action::Only(vec!["maintain".into()]);
    }
    if opts.action != Action::Rollback {
        let sql: Vec<SqlMigration> = files(args)
            .iter()
            .map(|f| SqlMigration::from_file(f))
            .collect::<Result<_, _>>()?;
        check_unchanged(&mut conn, NAME, &sql).await?;
    }
    if opts.action == Action::Run && failed_at_preflight(&m, &journal).await? {
        // Nothing was changed: the run that was refused at its start is taken up again.
        opts.action = Action::Resume;
    }
    if let Some(until) = &args.until {
        let names: Vec<&str> = m.step_list().iter().map(|s| s.name()).collect();
        let i = names.iter().position(|n| n == until).with_context(|| {
            format!(
                "--until {until}: no such step (the steps: {})",
                names.join(", ")
            )
        })?;
        opts.stop_before = names.get(i + 1).map(|s| (*s).to_owned());
    }
    let report = m.execute(&ctx, &journal, &opts).await?;
    if opts.action == Action::DryRun {
        for s in report
            .steps
            .iter()
            .filter(|s| s.details.get("sql").is_some())
        {
            println!("-- step {} ({}): would run", s.name, s.kind.as_str());
            for q in s.details["sql"].as_array().into_iter().flatten() {
                println!("{};", q.as_str().unwrap_or_default());
            }
        }
    }
    Ok(report)
}

/// Whether the latest run failed in its pre-flight and touched nothing else.
async fn failed_at_preflight(m: &Migration<Ctx>, journal: &PgJournal) -> anyhow::Result<bool> {
    let Some(run) = journal.latest(m.name()).await? else {
        return Ok(false);
    };
    Ok(run.run.state == RunState::Failed
        && run
            .steps
            .iter()
            .all(|s| s.kind == StepKind::Preflight || !s.state.touched())
        && run
            .steps
            .iter()
            .any(|s| s.kind == StepKind::Preflight && s.state == StepState::Failed))
}

async fn generate(conn: &mut PgConnection, rows: u64) -> anyhow::Result<()> {
    super::schema::create(conn).await?;
    let g = super::generate::generate(
        conn,
        &super::generate::GenOptions {
            rows,
            ..Default::default()
        },
    )
    .await?;
    tracing::info!(
        petri = g.petri,
        gasifier = g.gasifier,
        "generated the sample source tables"
    );
    Ok(())
}
