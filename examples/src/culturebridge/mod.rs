//! The CultureBridge migration from the Bubble Data API (seed 004), on the run layer
//! ([`etl_core::migration`]) with its journal in the target database ([`PgJournal`]):
//!
//! ```text
//!  preflight ─ schema ─ export_<type> x8 ─ staging ─ load_<type> x8 ─ checks ─ switch ─ reports ─ mappings ─ analyze ─ [cleanup]
//! ```
//!
//! * **export_&lt;type&gt;**: each type (users, profiles, bookings, payments, and posts,
//!   comments, resources) is a pipeline from the Data API ([`etl_source_bubble::BubbleExtract`], keyset pages
//!   over concurrent `Created Date` windows under one request-rate limit) into
//!   `<export dir>/<type>.parquet` and `.csv` ([`etl_parquet::ExportLoad`], lossless text), with
//!   `<type>.export.json` recording the run that wrote it and the file's fingerprint
//!   ([`provenance`]); `--resume` exports only the types whose step is not done and
//!   refuses files another run wrote since (a dry run's, say), `--skip-export` reuses the
//!   files of one earlier real run (never a dry run's) and the report names it
//!   (`export_from`).
//! * **staging**, **load_&lt;type&gt;**: parents first, each type is read back from Parquet
//!   and mapped as `mapping.toml` declares ([`etl_source_bubble::declared`]: roles,
//!   statuses, JSON, lists, decimals, ranges, dates, UUIDv5 ids, references) plus the rules
//!   in [`transform`] (one e-mail per user, passwords) into `cb_staging.<table>` ([`TextLoad`]);
//!   a child of a rejected parent is rejected with `parent rejected`.
//! * **checks** (a gate): staged rows per table against the pipelines' counts, the seed's
//!   checks (10.3) on the state the switch would produce (upserted and rolled back), and
//!   `--sample N` random staged things per type compared field by field with the API
//!   ([`sample`]).
//! * **switch**: one transaction upserts staging into the target tables, the id map and the
//!   run log ([`Upsert`]), runs the checks again and commits only if none vetoes; the
//!   before-image it keeps is how `--rollback` restores the exact previous state, and
//!   `rollback_migration_<ts>.sql` is the same for a DBA.
//! * **reports**: `migration_summary_<ts>.txt`, `migration_report_<ts>.json` (beside
//!   `migration_errors_<ts>.csv`, `rollback_migration_<ts>.sql`, `migration_<ts>.log`),
//!   all listed in the run layer's `report.json`; **mappings**: `user_id_mapping.json` and
//!   `booking_id_mapping.json` in the export dir ([`etl_sink_postgres::idmap`]).
//!
//! `--dry-run` runs everything that reads and writes nothing to the target database: the
//! export (files), the mapping of every type with its rejects (nothing staged), the
//! reports. With no `BUBBLE_API_URL` it starts the Bubble-compatible test server on
//! generated fixtures; with no `DATABASE_URL` a throwaway PostgreSQL.

pub mod fixtures;
pub mod sample;
pub mod schema;
pub mod transform;

pub use etl_source_bubble::export::{self as provenance, ExportFigures};
pub use etl_source_bubble::passwords;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arrow_array::cast::AsArray;
use chrono::{DateTime, Utc};
use etl_core::cli::CommonArgs;
use etl_core::migration::{Migration, Step, StepCx, StepKind, StepOutput};
use etl_core::testing::MemoryLoad;
use etl_core::{BoxError, Finding, Pipeline, RunReport, Secret};
use etl_parquet::{ParquetExtract, parquet_path};
use etl_sink_postgres::ident::TableName;
use etl_sink_postgres::idmap::MapFormat;
use etl_sink_postgres::journal::PgJournal;
use etl_sink_postgres::steps::{pg_dump_step, sql_step};
use etl_sink_postgres::upsert::{
    SqlCheck, TextLoad, Upsert, UpsertTable, changes_json, changes_line, undo_line,
};
use etl_source_bubble::export::{ExportSpec, check_exports, export_step, own_export};
use etl_source_bubble::mapping::RejectLog;
use etl_source_bubble::report::{TypeTotals, export_sources, findings_of, write_run_report};
use etl_source_bubble::test_server::{ServerConfig, TestServer};
use etl_source_bubble::{
    BubbleClient, BubbleConfig, KeyMode, PageQuery, TypeSchema, parse_datetime,
};
use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;

pub use self::sample::sample_check;
use self::schema::{KeyOverrides, MIGRATED, NOT_MIGRATED, table_of, type_schema};
use self::transform::{Ctx, id_map, mapping};
pub use crate::common::{init_logging, timestamp};
/// Command line of `cargo run --example culturebridge`.
#[derive(clap::Parser, Debug, Clone)]
#[command(about = "Migrate CultureBridge from the Bubble Data API into PostgreSQL (seed 004)")]
pub struct Args {
    /// Options every ferry binary takes.
    #[command(flatten)]
    pub common: CommonArgs,
    /// The `pg_dump` backup of the target tables before the switch, and `--restore`.
    #[command(flatten)]
    pub backup: etl_core::cli::BackupArgs,
    /// Base URL of the Data API, ending in /api/1.1. Unset: start the bundled test server.
    #[arg(long, env = "BUBBLE_API_URL")]
    pub bubble_api_url: Option<String>,
    /// Admin API token of the app.
    #[arg(long, env = "BUBBLE_API_KEY", hide_env_values = true)]
    pub bubble_api_key: Option<Secret>,
    /// Where the export (CSV, Parquet) and the id mappings go.
    #[arg(long, env = "MIGRATION_EXPORT_DIR", default_value = "migration_data")]
    pub export_dir: PathBuf,
    /// Where the migration reports go (overrides --report-dir).
    #[arg(long, env = "MIGRATION_REPORT_DIR")]
    pub migration_report_dir: Option<PathBuf>,
    /// Rows per batch (overrides --batch-size).
    #[arg(long, env = "MIGRATION_BATCH_SIZE")]
    pub migration_batch_size: Option<usize>,
    /// Reuse the export files of an earlier run instead of reading the API.
    #[arg(long)]
    pub skip_export: bool,
    /// Only things modified after this date (ISO-8601); upserts them.
    #[arg(long)]
    pub since: Option<String>,
    /// Start at the high-water mark of `Modified Date` of the last successful run.
    #[arg(long)]
    pub incremental: bool,
    /// A CSV export of users from the old system that carries a `password` column
    /// (plaintext or bcrypt hashes); replaces the API's users.
    #[arg(long)]
    pub users_csv: Option<PathBuf>,
    /// bcrypt cost for plaintext passwords.
    #[arg(long, default_value_t = 12)]
    pub bcrypt_cost: u32,
    /// Requests per minute the client never exceeds.
    #[arg(long, default_value_t = 1000)]
    pub requests_per_minute: u32,
    /// Disjoint Created Date windows paged concurrently per type.
    #[arg(long, default_value_t = 8)]
    pub windows: usize,
    /// Field keys of the app: display names or generated ids.
    #[arg(long, value_enum, default_value = "display")]
    pub key_mode: KeyModeArg,
    /// JSON file of field-key overrides: {"user": {"email": "Email Address"}, ...}.
    #[arg(long)]
    pub keys: Option<PathBuf>,
    /// Things compared field by field with the API after the load, per type.
    #[arg(long, default_value_t = 10)]
    pub sample: usize,
    /// Test server: users to generate (bookings = 3x).
    #[arg(long, default_value_t = 2000)]
    pub users: usize,
    /// Test server: latency per request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Test server: requests per minute it accepts before answering 429.
    #[arg(long)]
    pub server_rate_limit: Option<u32>,
    /// Test server: offset past which it returns nothing.
    #[arg(long, default_value_t = 500)]
    pub offset_cap: usize,
}

/// `--key-mode`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyModeArg {
    /// Display names (`email`, `Hourly Rate`).
    Display,
    /// Generated ids (`email_text`).
    Generated,
}

impl From<KeyModeArg> for KeyMode {
    fn from(k: KeyModeArg) -> Self {
        match k {
            KeyModeArg::Display => KeyMode::DisplayNames,
            KeyModeArg::Generated => KeyMode::GeneratedIds,
        }
    }
}

/// Things per batch of the export (10 API pages): the export's memory is bounded by
/// windows x types x this, not by the size of the app.
pub const EXPORT_BATCH: usize = 1_000;

/// The seed's files of a run, named with its timestamp.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `migration_summary_<ts>.txt`.
    pub summary: PathBuf,
    /// `migration_errors_<ts>.csv`.
    pub errors: PathBuf,
    /// `migration_report_<ts>.json`.
    pub json: PathBuf,
    /// `rollback_migration_<ts>.sql`.
    pub rollback: PathBuf,
    /// `migration_<ts>.log`.
    pub log: PathBuf,
}

impl Paths {
    /// The paths for timestamp `ts` (`YYYYmmdd_HHMMSS`) under `dir`.
    pub fn new(dir: &Path, ts: &str) -> Self {
        let at = |name: &str| dir.join(name.replace("TS", ts));
        Paths {
            summary: at("migration_summary_TS.txt"),
            errors: at("migration_errors_TS.csv"),
            json: at("migration_report_TS.json"),
            rollback: at("rollback_migration_TS.sql"),
            log: at("migration_TS.log"),
        }
    }
}

/// What a run did.
pub struct Outcome {
    /// The combined report (also in `report.json` and `migration_report_<ts>.json`).
    pub report: RunReport,
    /// Report files.
    pub paths: Paths,
    /// Export figures (records, seconds, requests, throttled), when exported.
    pub export: Option<ExportFigures>,
}

/// The report directory of `args`.
pub fn report_dir(args: &Args) -> PathBuf {
    args.migration_report_dir
        .clone()
        .unwrap_or_else(|| args.common.report_dir.clone())
}

/// Start the bundled Bubble-compatible server on fixtures of `users` users.
///
/// # Errors
/// The server cannot start.
pub async fn start_test_server(args: &Args) -> anyhow::Result<(TestServer, fixtures::Expected)> {
    let (fx, expected) = fixtures::generate(fixtures::Sizes {
        users: args.users,
        ..Default::default()
    });
    let cfg = ServerConfig {
        key_mode: args.key_mode.into(),
        offset_cap: args.offset_cap,
        latency: Duration::from_millis(args.latency_ms),
        rate_limit: args.server_rate_limit,
        retry_after: Some(Duration::from_secs(1)),
        ..ServerConfig::default()
    };
    let server = TestServer::start(fx, cfg)
        .await
        .context("cannot start the Bubble test server")?;
    tracing::info!(url = %server.base_url(), users = args.users, "started the Bubble-compatible test server (no BUBBLE_API_URL given)");
    Ok((server, expected))
}

/// The declared schema of every exported type, in the key mode of `args` with its
/// `--keys` overrides applied.
///
/// # Errors
/// `--keys` cannot be read.
pub fn schemas(args: &Args) -> anyhow::Result<HashMap<String, TypeSchema>> {
    let overrides: KeyOverrides = match &args.keys {
        Some(p) => etl_core::load_config(p)?,
        None => KeyOverrides::new(),
    };
    let empty = HashMap::new();
    let mode = args.key_mode.into();
    Ok(all_types()
        .map(|t| {
            (
                t.to_owned(),
                type_schema(t, mode, overrides.get(t).unwrap_or(&empty)),
            )
        })
        .collect())
}

/// Every type exported, migrated ones first (parents first).
fn all_types() -> impl Iterator<Item = &'static str> {
    MIGRATED.iter().chain(NOT_MIGRATED.iter()).copied()
}

/// What every step sees: the arguments, the database, the Data API client, the declared
/// schemas, the mapping state of this invocation and the upsert into the target tables.
pub struct Cb {
    /// The command line.
    pub args: Args,
    /// This invocation's report files.
    pub paths: Paths,
    /// The target database.
    pub opts: PgConnectOptions,
    /// A pool on it.
    pub pool: PgPool,
    /// The target database (a throwaway one when none was given).
    pub db: crate::common::Database,
    client: Result<Arc<BubbleClient>, String>,
    /// Declared schema per type.
    pub schemas: HashMap<String, TypeSchema>,
    map: tokio::sync::Mutex<Option<Arc<Ctx>>>,
    upsert: Upsert,
    batch_size: usize,
}

impl Cb {
    /// Connect (or start a throwaway PostgreSQL) and build the client: the bundled test
    /// `server` when given, else `--bubble-api-url` (only steps that read the API need it).
    ///
    /// # Errors
    /// The database cannot be reached, `--keys` cannot be read.
    pub async fn open(args: &Args, ts: &str, server: Option<&TestServer>) -> anyhow::Result<Self> {
        let rdir = report_dir(args);
        std::fs::create_dir_all(&rdir)
            .with_context(|| format!("cannot create {}", rdir.display()))?;
        let db = crate::common::Database::for_args(&args.common, "culturebridge").await?;
        let opts = etl_sink_postgres::connect_options(&db.url)?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(&db.url)
            .await
            .with_context(|| format!("cannot connect to {}", db.redacted()))?;
        let endpoint = match (server, &args.bubble_api_url, &args.bubble_api_key) {
            (Some(s), _, _) => Ok((s.base_url(), Secret::new(s.token()))),
            (None, Some(u), Some(k)) => Ok((u.clone(), k.clone())),
            (None, Some(_), None) => {
                Err("BUBBLE_API_KEY is not set (the app's admin API token)".to_owned())
            }
            (None, None, _) => Err("BUBBLE_API_URL is not set".to_owned()),
        };
        let client = match endpoint {
            Ok((url, key)) => {
                let mut cfg = BubbleConfig::new(url, key);
                cfg.requests_per_minute = args.requests_per_minute;
                Ok(Arc::new(BubbleClient::new(cfg)?))
            }
            Err(e) => Err(e),
        };
        let paths = Paths::new(&rdir, ts);
        Ok(Cb {
            upsert: upsert(opts.clone()).rollback_script(&paths.rollback, PRIVATE),
            paths,
            opts,
            pool,
            db,
            client,
            schemas: schemas(args)?,
            map: tokio::sync::Mutex::new(None),
            batch_size: args
                .migration_batch_size
                .unwrap_or(args.common.batch_size)
                .max(1),
            args: args.clone(),
        })
    }

    fn client(&self) -> Result<&Arc<BubbleClient>, BoxError> {
        self.client.as_ref().map_err(|e| e.clone().into())
    }

    /// The mapping state of this invocation, made on first use: the ids committed by
    /// earlier runs and staged by earlier steps of this run are accepted parents, those
    /// that load steps of an earlier invocation of this run rejected (exported, not staged)
    /// are rejected parents, the e-mail owners are known; rejects go to
    /// `migration_errors_<ts>.csv`.
    async fn map_ctx(&self, cx: &StepCx) -> Result<Arc<Ctx>, BoxError> {
        let mut g = self.map.lock().await;
        if let Some(c) = g.as_ref() {
            return Ok(c.clone());
        }
        let ctx = Arc::new(Ctx::new(RejectLog::create(&self.paths.errors)?));
        prepare_ctx(&ctx, &self.pool, &self.args.export_dir, !cx.dry_run).await?;
        for ty in MIGRATED {
            let done_before = cx.details_of(&format!("load_{ty}")).is_some();
            if !done_before || (ty == "user" && self.args.users_csv.is_some()) {
                continue;
            }
            for b in etl_parquet::read_all(&parquet_path(&self.args.export_dir, ty))? {
                if let Some(ids) = b.column_by_name("_id") {
                    let ids = ids.as_string::<i32>();
                    let ids = ids.iter().flatten().map(str::to_owned);
                    ctx.state.reject_unaccepted(ty, ids);
                }
            }
        }
        *g = Some(ctx.clone());
        Ok(ctx)
    }
}

/// The upsert of staging into the target tables, the id map and the run log, with the
/// seed's checks (10.3).
fn upsert(opts: PgConnectOptions) -> Upsert {
    let stage = |t: &str| TableName::qualified("cb_staging", t);
    let mut tables: Vec<UpsertTable> = MIGRATED
        .iter()
        .map(|ty| UpsertTable::new(stage(table_of(ty)), TableName::new(table_of(ty)), &["id"]))
        .collect();
    tables.push(
        UpsertTable::new(
            stage("id_map"),
            TableName::new("bubble_id_map"),
            &["bubble_type", "bubble_id"],
        )
        .insert_only(),
    );
    tables.push(UpsertTable::new(
        stage("migration_runs"),
        TableName::new("migration_runs"),
        &["run_id"],
    ));
    let none = |n: &str, from: &str| SqlCheck::none(n, &format!("SELECT count(*) FROM {from}"));
    let warn = |n: &str, from: &str, what: &str| {
        SqlCheck::warn(n, &format!("SELECT count(*) FROM {from}"), what)
    };
    Upsert::new(opts, tables).checks(vec![
        none("fk_client_profiles_user", "client_profiles c LEFT JOIN users u ON u.id = c.user_id WHERE u.id IS NULL"),
        none("fk_coach_profiles_user", "coach_profiles c LEFT JOIN users u ON u.id = c.user_id WHERE u.id IS NULL"),
        none("fk_bookings_client", "bookings b LEFT JOIN users u ON u.id = b.client_id WHERE u.id IS NULL"),
        none("fk_bookings_coach", "bookings b LEFT JOIN users u ON u.id = b.coach_id WHERE u.id IS NULL"),
        none("fk_payments_booking", "payments p LEFT JOIN bookings b ON b.id = p.booking_id WHERE b.id IS NULL"),
        none("email_format", r"users WHERE email !~ '^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}$'"),
        none("coach_rate_25_500", "coach_profiles WHERE hourly_rate < 25 OR hourly_rate > 500"),
        none("booking_duration_positive", "bookings WHERE duration_minutes <= 0"),
        none("payment_amount_positive", "payments WHERE amount <= 0"),
        warn("clients_have_profiles", "users u WHERE u.role = 'client' AND NOT EXISTS (SELECT 1 FROM client_profiles p WHERE p.user_id = u.id)", "client users without a client profile (rejected or never existed)"),
        warn("coaches_have_profiles", "users u WHERE u.role = 'coach' AND NOT EXISTS (SELECT 1 FROM coach_profiles p WHERE p.user_id = u.id)", "coach users without a coach profile (rejected or never existed)"),
        warn("confirmed_bookings_have_payments", "bookings b WHERE b.status IN ('confirmed', 'completed') AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.booking_id = b.id)", "confirmed or completed bookings without a payment (rejected or never existed)"),
    ])
}

/// The rollback script's first lines: before-images of users hold their password hashes
/// (bcrypt), so it is written owner-only (0600), before the switch commits.
const PRIVATE: &str = "-- PRIVATE: this script restores rows from their before-images, users' password\n-- hashes (bcrypt) included. Keep it owner-only (it is written with mode 0600).\n";

const DROP_STAGING: &str = "DROP SCHEMA IF EXISTS cb_staging CASCADE";

/// The migration's steps.
pub fn migration(c: &Cb) -> Migration<Cb> {
    let mut m = Migration::new("culturebridge")
        .restart_unfinished()
        .step(
            Step::new("preflight", StepKind::Preflight, |c: &Cb, _cx| {
                Box::pin(preflight(c))
            })
            .in_dry_run()
            .describe("the Data API answers, --users-csv exists, the --since / --incremental mark"),
        )
        .step(
            sql_step("schema", StepKind::Schema, c.opts.clone(), schema::DDL).describe(
                "creates the target tables, types and cb_staging if missing (idempotent)",
            ),
        );
    for t in all_types() {
        m = m.step(
            Step::new(
                format!("export_{t}"),
                StepKind::Export,
                move |c: &Cb, cx| Box::pin(export(c, cx, t)),
            )
            .in_dry_run()
            .describe(format!(
                "Bubble `{t}` -> {t}.parquet and {t}.csv in the export dir"
            )),
        );
    }
    m = m.step(
        Step::new("staging", StepKind::Prepare, |c: &Cb, cx| {
            Box::pin(staging(c, cx))
        })
        .undo(|c: &Cb, _cx| {
            let pool = c.pool.clone();
            Box::pin(async move {
                sqlx::raw_sql(DROP_STAGING).execute(&pool).await?;
                Ok(StepOutput::message("cb_staging dropped"))
            })
        })
        .describe(
            "(re)creates the scratch schema cb_staging: a table per target table, the id map view",
        ),
    );
    for t in all_types() {
        let what = match table_of(t) {
            "" => format!("maps `{t}` (not migrated: counted as filtered)"),
            table => format!("maps `{t}` into cb_staging.{table} (a dry run maps only)"),
        };
        m = m.step(
            Step::new(format!("load_{t}"), StepKind::Load, move |c: &Cb, cx| {
                Box::pin(load(c, cx, t))
            })
            .in_dry_run()
            .describe(what),
        );
    }
    let undo = c.upsert.clone();
    let targets = MIGRATED
        .iter()
        .map(|t| table_of(t))
        .chain(["bubble_id_map", "migration_runs"]);
    let targets = targets.map(TableName::new).collect();
    let dir = c.args.backup.backup_dir.clone();
    m.step(
        Step::new("checks", StepKind::Gate, |c: &Cb, cx| Box::pin(checks(c, cx)))
            .describe("staged counts, the seed's checks on the upserted state (rolled back), the API sample"),
    )
    .step(pg_dump_step("backup", &c.db.url, targets, dir))
    .step(
        Step::new("switch", StepKind::Switch, |c: &Cb, cx| Box::pin(switch(c, cx)))
            .undo(move |_c: &Cb, cx| {
                let u = undo.clone();
                Box::pin(async move { Ok(StepOutput::message(undo_line(&u.undo(cx.run_id, &cx.step).await?))) })
            })
            .describe("upserts staging into the target tables, the id map and the run log in one transaction, with the checks"),
    )
    .step(
        Step::new("reports", StepKind::Other, |c: &Cb, cx| Box::pin(reports(c, cx)))
            .in_dry_run()
            .always()
            .describe("migration_summary_<ts>.txt, migration_report_<ts>.json"),
    )
    .step(
        Step::new("mappings", StepKind::PostSwitch, |c: &Cb, _cx| Box::pin(mappings(c)))
            .describe("user_id_mapping.json, booking_id_mapping.json in the export dir"),
    )
    .step(sql_step(
        "analyze",
        StepKind::PostSwitch,
        c.opts.clone(),
        "ANALYZE users, client_profiles, coach_profiles, bookings, payments, bubble_id_map",
    ))
    .step(
        sql_step("cleanup", StepKind::Cleanup, c.opts.clone(), DROP_STAGING)
            .optional()
            .describe("drops the scratch schema cb_staging (asked for by name; --rollback still works)"),
    )
}

async fn preflight(c: &Cb) -> Result<StepOutput, BoxError> {
    let a = &c.args;
    std::fs::create_dir_all(&a.export_dir)
        .map_err(|e| format!("cannot create {}: {e}", a.export_dir.display()))?;
    let mut notes = Vec::new();
    if a.skip_export {
        notes.push("export files verified (--skip-export)".to_owned());
    } else {
        let q = PageQuery {
            limit: 1,
            ..PageQuery::default()
        };
        c.client()?.fetch_page("user", &q, 1).await?;
        notes.push("the Data API answers".to_owned());
    }
    if let Some(p) = &a.users_csv
        && !p.is_file()
    {
        return Err(format!("--users-csv {} does not exist", p.display()).into());
    }
    let since = match (&a.since, a.incremental) {
        (Some(s), _) => {
            Some(parse_datetime(s).ok_or_else(|| format!("--since `{s}` is not a date"))?)
        }
        (None, true) => {
            let (exists,): (bool,) =
                sqlx::query_as("SELECT to_regclass('public.migration_runs') IS NOT NULL")
                    .fetch_one(&c.pool)
                    .await?;
            let mut h = None;
            if exists {
                (h,) = sqlx::query_as(
                    "SELECT max(high_water_mark) FROM migration_runs WHERE status = 'succeeded'",
                )
                .fetch_one(&c.pool)
                .await?;
            }
            h
        }
        (None, false) => None,
    };
    if let Some(s) = since {
        notes.push(format!("only things modified after {}", s.to_rfc3339()));
    }
    Ok(StepOutput::message(notes.join("; "))
        .with_details(json!({ "since": since, "started_at": Utc::now() })))
}

fn since_of(cx: &StepCx) -> Option<DateTime<Utc>> {
    cx.details_of("preflight")
        .and_then(|d| serde_json::from_value(d["since"].clone()).ok())
        .flatten()
}

async fn export(c: &Cb, cx: &StepCx, t: &'static str) -> Result<StepOutput, BoxError> {
    let spec = ExportSpec {
        client: c.client()?,
        schema: &c.schemas[t],
        dir: &c.args.export_dir,
        windows: c.args.windows,
        since: since_of(cx),
        batch_size: c.batch_size.min(EXPORT_BATCH),
    };
    export_step(&spec, cx, c.args.skip_export).await
}

async fn staging(c: &Cb, cx: &StepCx) -> Result<StepOutput, BoxError> {
    let mut sql =
        String::from("DROP SCHEMA IF EXISTS cb_staging CASCADE; CREATE SCHEMA cb_staging;\n");
    let mut view = Vec::new();
    for ty in MIGRATED {
        let t = table_of(ty);
        sql.push_str(&format!("CREATE TABLE cb_staging.{t} (LIKE public.{t} INCLUDING DEFAULTS, bubble_id text NOT NULL);\n"));
        view.push(format!("SELECT '{ty}'::text AS bubble_type, bubble_id, id AS new_id, '{}'::uuid AS run_id FROM cb_staging.{t}", cx.run_id));
    }
    sql.push_str("CREATE TABLE cb_staging.migration_runs (LIKE public.migration_runs);\n");
    sql.push_str(&format!(
        "CREATE VIEW cb_staging.id_map AS {};",
        view.join("\nUNION ALL ")
    ));
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&c.pool)
        .await?;
    Ok(StepOutput::message("cb_staging created"))
}

async fn load(c: &Cb, cx: &StepCx, t: &'static str) -> Result<StepOutput, BoxError> {
    own_export(cx, &c.args.export_dir, t)?;
    let ctx = c.map_ctx(cx).await?;
    let spec = Arc::new(c.schemas[t].clone());
    let map = mapping(spec.clone(), ctx.clone());
    let opts = cx.pipeline_options(c.batch_size, c.args.common.parallel);
    // In a dry run the pipeline reads and maps, and writes nothing (not even to staging).
    let run = cx.run_info();
    let table = TableName::qualified("cb_staging", table_of(t));
    let stage = TextLoad::new(c.opts.clone(), table);
    let parquet = || ParquetExtract::whole(t, &parquet_path(&c.args.export_dir, t));
    let report = match (&c.args.users_csv, table_of(t)) {
        (Some(csv), _) if t == "user" => {
            // the old system's users, with a `password` column hashed before anything else
            let e = etl_source_csv::CsvSource::files(passwords::with_password(&spec), [csv]);
            let hash = passwords::PasswordTransform::new(c.args.bcrypt_cost);
            let p = Pipeline::new(e, stage).transform(hash);
            p.transform(map).options(opts).run(&run).await
        }
        (_, "") => {
            let p = Pipeline::new(parquet()?, MemoryLoad::default());
            p.transform(map).options(opts).run(&run).await
        }
        _ => {
            let p = Pipeline::new(parquet()?, stage);
            p.transform(map).options(opts).run(&run).await
        }
    };
    ctx.state.flush()?;
    cx.add_file(file_name(&c.paths.errors));
    Ok(StepOutput::from_pipeline(report)
        .with_details(json!({ "high_water_mark": ctx.state.high_water_mark() })))
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

async fn checks(c: &Cb, cx: &StepCx) -> Result<StepOutput, BoxError> {
    let preview = c.upsert.run(cx.run_id, &cx.step, true).await?;
    let mut findings = Vec::new();
    for ty in MIGRATED {
        let t = table_of(ty);
        let want = cx
            .pipeline_of(&format!("load_{ty}"))
            .map_or(0, |p| p.totals.loaded);
        let (ins, upd) = preview
            .changes
            .iter()
            .find(|x| x.table == t)
            .map_or((0, 0), |x| (x.inserted, x.updated));
        findings.push(Finding::check(
            format!("count_{t}"),
            ins + upd == want,
            format!("{} rows staged in cb_staging.{t} from Bubble `{ty}` (read - rejected - filtered = {want}); the switch inserts {ins} and updates {upd}", ins + upd),
        ));
    }
    findings.extend(preview.findings);
    // A full export must hold every thing the Data API counts (what the loads read, also
    // when `--skip-export` reused the files); an incremental one only what changed.
    if since_of(cx).is_none() {
        let read = |t: &str| {
            cx.pipeline_of(&format!("load_{t}"))
                .map_or(0, |p| p.totals.read)
        };
        let read: Vec<(&str, u64)> = all_types().map(|t| (t, read(t))).collect();
        findings.extend(etl_source_bubble::export::api_totals(c.client()?, read).await?);
    }
    findings.extend(
        sample_check(
            c.client()?,
            &c.pool,
            &c.schemas,
            &c.args.export_dir,
            c.args.sample,
        )
        .await?,
    );
    let failed = findings.iter().filter(|f| f.vetoes()).count();
    Ok(StepOutput::message(format!(
        "{} checks, {failed} failed; the switch would do: {}",
        findings.len(),
        changes_line(&preview.changes)
    ))
    .with_details({
        let ch = changes_json(&preview.changes);
        json!({ "inserted": ch["inserted"], "updated": ch["updated"], "findings": findings })
    })
    .with_findings(findings))
}

/// The latest `Modified Date` the load steps of this run saw.
fn high_water_mark(cx: &StepCx) -> Option<DateTime<Utc>> {
    all_types()
        .filter_map(|t| cx.details_of(&format!("load_{t}")))
        .filter_map(|d| {
            serde_json::from_value::<Option<DateTime<Utc>>>(d["high_water_mark"].clone())
                .ok()
                .flatten()
        })
        .max()
}

async fn switch(c: &Cb, cx: &StepCx) -> Result<StepOutput, BoxError> {
    if cx.resuming() && c.upsert.applied(cx.run_id, &cx.step).await? {
        return Ok(StepOutput::message(
            "the switch had committed before the interruption",
        ));
    }
    let started: Option<DateTime<Utc>> = cx
        .details_of("preflight")
        .and_then(|d| serde_json::from_value(d["started_at"].clone()).ok());
    let (since, hwm) = (since_of(cx), high_water_mark(cx));
    sqlx::query("DELETE FROM cb_staging.migration_runs")
        .execute(&c.pool)
        .await?;
    sqlx::query("INSERT INTO cb_staging.migration_runs (run_id, started_at, finished_at, since, high_water_mark, status) VALUES ($1, coalesce($2, now()), now(), $3, $4, 'succeeded')")
        .bind(cx.run_id)
        .bind(started)
        .bind(since)
        .bind(hwm)
        .execute(&c.pool)
        .await?;
    let out = c.upsert.run(cx.run_id, &cx.step, false).await?;
    if out.rollback_sql.is_some() {
        cx.add_file(file_name(&c.paths.rollback));
    }
    let ch = changes_json(&out.changes);
    let details = json!({
        "inserted": ch["inserted"],
        "updated": ch["updated"],
        "since": since,
        "high_water_mark": hwm,
        "rollback_script": out.rollback_sql.as_ref().map(|_| c.paths.rollback.display().to_string()),
    });
    // Passing checks were reported by the gate; here only one that vetoes (the state
    // changed since) is news, and fails the step with nothing committed.
    let vetoes: Vec<Finding> = out.findings.into_iter().filter(Finding::vetoes).collect();
    Ok(StepOutput::message(changes_line(&out.changes))
        .with_details(details)
        .with_findings(vetoes))
}

async fn reports(c: &Cb, cx: &StepCx) -> Result<StepOutput, BoxError> {
    let totals = TypeTotals::of(cx, all_types());
    let (export_runs, export_from) = export_sources(cx, all_types(), c.args.skip_export);
    let switch = cx.details_of("switch").unwrap_or_default();
    let counter = |k: &str| json!(totals.counter(k));
    let extra = serde_json::from_value(json!({
        "inserted": switch["inserted"],
        "updated": switch["updated"],
        "password_reset_required": counter("password_reset_required"),
        "passwords_hashed": counter("passwords_hashed"),
        "parent_rejected": counter("parent_rejected"),
        "since": since_of(cx),
        "high_water_mark": high_water_mark(cx),
        "export": ExportFigures::sum(all_types().filter_map(|t| cx.details_of(&format!("export_{t}")))),
        "export_runs": export_runs,
        "export_from": export_from,
        "database": c.db.redacted(),
        "rollback_script": switch["rollback_script"],
    }))?;
    let (p, checks) = (&c.paths, findings_of(cx, "checks"));
    let title = "CultureBridge migration (Bubble -> PostgreSQL)";
    write_run_report(cx, title, &totals, &checks, extra, &p.json, &p.summary)?;
    for f in [&p.summary, &p.json, &p.errors, &p.rollback, &p.log] {
        if f.exists() {
            cx.add_file(file_name(f));
        }
    }
    Ok(StepOutput::message(format!(
        "wrote {} and {}",
        file_name(&p.summary),
        file_name(&p.json)
    )))
}

async fn mappings(c: &Cb) -> Result<StepOutput, BoxError> {
    for (ty, file) in [
        ("user", "user_id_mapping.json"),
        ("booking", "booking_id_mapping.json"),
    ] {
        let path = c.args.export_dir.join(file);
        id_map().export(&c.pool, ty, &path, MapFormat::Json).await?;
    }
    Ok(StepOutput::message(
        "user_id_mapping.json, booking_id_mapping.json written",
    ))
}

/// Run the migration as the flags say (`--dry-run`, `--resume`, `--rollback`, `--only`).
/// `server` is the bundled test server when one was started.
///
/// # Errors
/// The database cannot be reached; a refusal of the run layer (`--resume` with nothing to
/// resume, `--rollback` with nothing to undo).
pub async fn run(
    args: &Args,
    ts: &str,
    server: Option<(&TestServer, fixtures::Expected)>,
) -> anyhow::Result<Outcome> {
    let server = server.map(|(s, _expected)| s);
    let c = Cb::open(args, ts, server).await?;
    let journal = PgJournal::new(c.opts.clone());
    let mut opts = c.db.run_options(&args.common);
    opts.report_dir = report_dir(args);
    let types: Vec<&str> = all_types().collect();
    let (action, dir) = (args.common.action(), &args.export_dir);
    check_exports(
        &journal,
        "culturebridge",
        &action,
        dir,
        &types,
        args.skip_export,
    )
    .await
    .map_err(|e| match e.downcast::<etl_core::Error>() {
        Ok(e) => anyhow::Error::from(*e),
        Err(e) => anyhow::Error::from_boxed(e),
    })?;
    let report = migration(&c).execute(&c, &journal, &opts).await?;
    let export = ExportFigures::sum(
        report
            .steps
            .iter()
            .filter(|s| s.name.starts_with("export_") && s.outcome == "ran")
            .map(|s| s.details.clone()),
    );
    Ok(Outcome {
        report,
        paths: c.paths.clone(),
        export,
    })
}

/// What `--plan` prints: the steps with their recorded states and what the next
/// invocation would do.
///
/// # Errors
/// The database or the journal cannot be read.
pub async fn plan(args: &Args) -> anyhow::Result<String> {
    let c = Cb::open(args, &timestamp(), None).await?;
    let journal = PgJournal::new(c.opts.clone());
    Ok(migration(&c).status(&journal).await?.to_string())
}

/// Load what earlier runs committed (accepted ids, e-mail owners), with `staged` what
/// this run staged, and who keeps each e-mail among the exported users (earliest
/// `Created Date`, then smallest `_id`). Reads only: on an empty database (a dry run)
/// nothing was committed.
async fn prepare_ctx(
    ctx: &Ctx,
    pool: &PgPool,
    export_dir: &Path,
    staged: bool,
) -> anyhow::Result<()> {
    let mut mapped = id_map().mapped(pool).await?;
    if staged {
        mapped.extend(
            sqlx::query_as::<_, (String, String)>(
                "SELECT bubble_type, bubble_id FROM cb_staging.id_map",
            )
            .fetch_all(pool)
            .await?,
        );
    }
    for (t, b) in mapped {
        ctx.state.accept_all(&t, [b]);
    }
    let (exists,): (bool,) = sqlx::query_as("SELECT to_regclass('public.users') IS NOT NULL AND to_regclass('public.bubble_id_map') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    let existing: Vec<(String, Option<String>)> = match exists {
        false => Vec::new(),
        true => sqlx::query_as("SELECT lower(u.email), m.bubble_id FROM users u LEFT JOIN bubble_id_map m ON m.new_id = u.id AND m.bubble_type = 'user'")
            .fetch_all(pool)
            .await?,
    };
    let outside = "(an account created outside the migration)";
    let mut owners: HashMap<String, (i64, String)> = existing
        .into_iter()
        .map(|(email, b)| (email, (i64::MIN, b.unwrap_or_else(|| outside.into()))))
        .collect();
    let p = parquet_path(export_dir, "user");
    for b in if p.exists() {
        etl_parquet::read_all(&p)?
    } else {
        Vec::new()
    } {
        let col = |n: &str| b.column_by_name(n).map(|a| a.as_string::<i32>().clone());
        let (Some(ids), Some(created), Some(emails)) =
            (col("_id"), col("created_date"), col("email"))
        else {
            break;
        };
        for ((id, email), c) in ids.iter().zip(emails.iter()).zip(created.iter()) {
            let (Some(id), Some(email)) = (id, email) else {
                continue;
            };
            let c = c
                .and_then(parse_datetime)
                .map_or(i64::MAX, |d| d.timestamp_millis());
            let cand = (c, id.to_owned());
            let o = owners
                .entry(email.trim().to_ascii_lowercase())
                .or_insert_with(|| cand.clone());
            if cand < *o {
                *o = cand;
            }
        }
    }
    *ctx.email_owner.lock().expect("lock") = owners.into_iter().map(|(k, v)| (k, v.1)).collect();
    Ok(())
}

/// The example's `main`: parse, log, start what is missing, run, print the summary.
///
/// # Errors
/// As [`run`].
pub async fn main_with(args: Args) -> anyhow::Result<std::process::ExitCode> {
    if let Some(dir) = &args.backup.restore {
        let c = Cb::open(&args, &timestamp(), None).await?;
        let journal = PgJournal::new(c.opts.clone());
        return crate::common::restore(&migration(&c), &journal, &c.db.url, dir).await;
    }
    if args.common.plan {
        print!("{}", plan(&args).await?);
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let ts = timestamp();
    let paths = Paths::new(&report_dir(&args), &ts);
    init_logging(&paths.log, args.common.verbosity())?;
    let server = if args.bubble_api_url.is_none() && !args.common.rollback {
        Some(start_test_server(&args).await?)
    } else {
        None
    };
    let out = run(&args, &ts, server.as_ref().map(|(s, e)| (s, e.clone()))).await?;
    println!("{}", out.report.summary_text());
    for f in &out.report.files {
        println!("wrote {}", report_dir(&args).join(f).display());
    }
    Ok(crate::common::exit_code(out.report.status))
}
