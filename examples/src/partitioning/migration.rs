//! The plan of seed 002 and the actions around it (`--plan`, `--dry-run`, `--rollback`,
//! `--resume`, `--cleanup`), with the common `report.json`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use etl_core::cli::CommonArgs;
use etl_core::{CancellationToken, Progress, RunReport, RunStatus, UnitStatus, UnitSummary};
use etl_sink_postgres::ident::TableName;
use etl_sink_postgres::plan::{
    Outcome, Plan, PlanOutcome, Preflight, RunOptions, Step, StepContext, StepKind, StepState,
    render_status,
};
use serde_json::json;
use sqlx::{ConnectOptions as _, Connection, PgConnection};

use super::steps::{CodeStep, Shared, What, tables};

/// The plan's name in `ferry_schema_migrations`.
pub const PLAN: &str = "observations_partitioning";

/// Options of `observations_partitioning`.
#[derive(clap::Args, Debug, Clone)]
pub struct PartitioningArgs {
    /// Common options (`--batch-size` is the rows per move transaction).
    #[command(flatten)]
    pub common: CommonArgs,
    /// Move online: capture changes with triggers during the backfill, replay them, and
    /// swap in one short-lock transaction (writers keep writing). Default: batch move
    /// (writers should be stopped).
    #[arg(long)]
    pub online: bool,
    /// Also run the cleanup: drop the old tables (`*_old`) and the move's leftovers.
    /// Irreversible: a rollback is impossible afterwards.
    #[arg(long)]
    pub cleanup: bool,
    /// The longest any statement waits for a lock (PostgreSQL interval); the run refuses to
    /// start when the tables cannot be locked within it.
    #[arg(long, default_value = "5s", value_name = "INTERVAL")]
    pub lock_timeout: String,
    /// Observations to generate when the source tables do not exist (the bundled sample).
    #[arg(long, default_value_t = 20_000, value_name = "N")]
    pub rows: u64,
    /// Stop after this step (see --plan for the names).
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

/// The SQL migration files of the plan, in order: (step name, file stem).
pub const MIGRATIONS: [&str; 5] = [
    "001_report_management",
    "002_dashboard_schema",
    "003_permissions",
    "004_views_with_names",
    "005_drop_deprecated_columns",
];

/// Build the plan.
pub fn build_plan(args: &PartitioningArgs) -> anyhow::Result<Plan> {
    let dir = args
        .migrations
        .clone()
        .unwrap_or_else(|| crate::common::bundled("partitioning/migrations"));
    let shared = Arc::new(Shared {
        plan: PLAN.to_owned(),
        tables: tables(),
        online: args.online,
        batch_size: args.common.batch_size.max(1) as i64,
        pause: Duration::from_millis(args.pause_ms),
        min_month_share: args.min_month_share,
    });
    let code = |what| CodeStep {
        what,
        shared: shared.clone(),
    };
    let sql = |stem: &str| -> anyhow::Result<Step> {
        Step::migration(stem, &dir.join(format!("{stem}.sql")))
            .with_context(|| format!("reading migration {stem} from {}", dir.display()))
    };
    let live: Vec<TableName> = shared.tables.iter().map(|t| t.live()).collect();
    Ok(Plan::new(
        PLAN,
        vec![
            Step::new("preflight", StepKind::Verification, Preflight::new(live)).always(),
            sql(MIGRATIONS[0])?,
            sql(MIGRATIONS[1])?,
            sql(MIGRATIONS[2])?,
            Step::new(
                "partitioned_tables",
                StepKind::Migration,
                code(What::Partitioned),
            ),
            Step::new("move_data", StepKind::DataMove, code(What::Move)),
            Step::new("swap", StepKind::DataMove, code(What::Swap)),
            Step::new("verify", StepKind::Verification, code(What::Verify)),
            sql(MIGRATIONS[3])?,
            Step::new("foreign_keys", StepKind::Migration, code(What::ForeignKeys)),
            Step::new("indexes", StepKind::Migration, code(What::Indexes)),
            sql(MIGRATIONS[4])?,
            Step::new("analyze", StepKind::Migration, code(What::Analyze)),
            Step::new("cleanup", StepKind::Cleanup, code(What::Cleanup)).optional(),
        ],
    ))
}

/// Run what the options ask for against `url`; the report is written to `--report-dir`.
pub async fn run(
    args: &PartitioningArgs,
    url: &str,
    cancel: CancellationToken,
) -> anyhow::Result<RunReport> {
    let started = Utc::now();
    // Long statements are the point here (generation, moves): no slow-statement warnings.
    let opts = etl_sink_postgres::connect_options(url)?
        .log_slow_statements(tracing::log::LevelFilter::Off, Duration::from_secs(3600));
    let mut conn = PgConnection::connect_with(&opts)
        .await
        .context("connecting to PostgreSQL (check --database-url / DATABASE_URL)")?;
    sqlx::query("SET TimeZone = 'UTC'")
        .execute(&mut conn)
        .await?;
    let mut extra = serde_json::Map::new();
    extra.insert("database".into(), json!(etl_core::config::redact_url(url)));
    extra.insert(
        "mode".into(),
        json!(if args.online { "online" } else { "batch" }),
    );
    if !super::schema::exists(&mut conn).await? && !args.common.rollback {
        super::schema::create(&mut conn).await?;
        let g = super::generate::generate(
            &mut conn,
            &super::generate::GenOptions {
                rows: args.rows,
                ..Default::default()
            },
        )
        .await?;
        tracing::info!(
            petri = g.petri,
            gasifier = g.gasifier,
            "generated the sample source tables"
        );
        extra.insert(
            "generated".into(),
            json!({"petri_observations": g.petri, "gasifier_observations": g.gasifier}),
        );
    }
    let plan = build_plan(args)?;
    let ctx = StepContext {
        plan: PLAN.to_owned(),
        lock_timeout: args.lock_timeout.clone(),
        progress: Progress::new(args.common.progress(), plan.steps.len() as u64),
        cancel,
        dry_run: args.common.dry_run,
    };

    let (status, outcome, error) = if args.common.plan {
        let st = plan.status(&mut conn).await?;
        println!("{}", render_status(PLAN, &st));
        (RunStatus::Succeeded, None, None)
    } else if args.common.dry_run {
        let out = plan.dry_run(&mut conn, &ctx).await?;
        for s in &out.steps {
            match &s.outcome {
                Outcome::WouldRun { sql } => {
                    println!("-- step {} ({}): would run", s.name, s.kind.as_str());
                    for q in sql {
                        println!("{q};");
                    }
                }
                Outcome::Ran => {
                    println!("-- step {} (read-only, ran): {}", s.name, s.output.message)
                }
                Outcome::Skipped { reason } => println!("-- step {}: skipped ({reason})", s.name),
                Outcome::Failed { error } => println!("-- step {}: FAILED: {error}", s.name),
                Outcome::RolledBack => {}
            }
        }
        (RunStatus::DryRun, Some(out), None)
    } else if args.common.rollback {
        let out = plan.rollback(&mut conn, &ctx).await?;
        let err = out.error.clone();
        (
            if err.is_some() {
                RunStatus::Failed
            } else {
                RunStatus::RolledBack
            },
            Some(out),
            err,
        )
    } else {
        let opts = RunOptions {
            resume: args.common.resume,
            until: args.until.clone(),
            optional: args.cleanup,
        };
        let out = plan.run(&mut conn, &ctx, &opts).await?;
        let err = out.error.clone();
        (
            if err.is_some() {
                RunStatus::Failed
            } else {
                RunStatus::Succeeded
            },
            Some(out),
            err,
        )
    };
    ctx.progress.finish();

    let status_now = plan.status(&mut conn).await?;
    let units = units(&status_now, outcome.as_ref(), args.common.rollback);
    let mut report = RunReport::new(PLAN, &run_id(&status_now), status, &units, started);
    report.error = error;
    if let Some(out) = &outcome {
        report.validation = out.findings();
        extra.insert("steps".into(), json!(out.steps));
        for name in ["preflight", "move_data", "swap"] {
            if let Some(s) = out.step(name).filter(|s| s.outcome == Outcome::Ran) {
                extra.insert(name.into(), s.output.details.clone());
            }
        }
    }
    extra.insert(
        "plan".into(),
        json!(
            status_now
                .iter()
                .map(|s| json!({"step": s.name, "kind": s.kind, "state": s.state}))
                .collect::<Vec<_>>()
        ),
    );
    extra.insert("plan_text".into(), json!(render_status(PLAN, &status_now)));
    report.extra.extend(extra);
    report
        .write(&args.common.report_dir, None)
        .context("writing the report")?;
    Ok(report)
}

/// One unit per table: read = rows of the old table, loaded = rows verified in the new
/// one (from the verification of this run, or the last one recorded).
fn units(
    status: &[etl_sink_postgres::plan::StepStatus],
    outcome: Option<&PlanOutcome>,
    rolled_back: bool,
) -> Vec<UnitSummary> {
    let verify = (!rolled_back)
        .then_some(outcome)
        .flatten()
        .and_then(|o| o.step("verify"))
        .filter(|s| s.outcome == Outcome::Ran)
        .map(|s| s.output.details.clone())
        .or_else(|| {
            (!rolled_back).then_some(())?;
            status
                .iter()
                .find(|s| s.name == "verify" && s.state == StepState::Completed)
                .and_then(|s| s.details.clone())
        });
    tables()
        .iter()
        .map(|t| {
            let mut u = UnitSummary::new(t.name.clone());
            if let Some(d) = verify.as_ref().and_then(|v| v.get(&t.name)) {
                u.read = d.get("read").and_then(|v| v.as_u64()).unwrap_or(0);
                u.loaded = d.get("loaded").and_then(|v| v.as_u64()).unwrap_or(0);
                u.counters.insert(
                    "default_partition_rows".into(),
                    d.get("default_rows").and_then(|v| v.as_u64()).unwrap_or(0),
                );
                u.status = if rolled_back {
                    UnitStatus::Pending
                } else {
                    UnitStatus::Completed
                };
            }
            u
        })
        .collect()
}

fn run_id(status: &[etl_sink_postgres::plan::StepStatus]) -> String {
    status
        .iter()
        .filter_map(|s| s.finished_at)
        .min()
        .map(|t| format!("{PLAN}@{}", t.to_rfc3339()))
        .unwrap_or_else(|| PLAN.to_owned())
}
