//! The CultureBridge migration from the Bubble Data API (seed 004).
//!
//! 1. **Export**: every type (users, profiles, bookings, payments, and posts, comments,
//!    resources) is paged by keyset from the Data API, concurrently over disjoint
//!    `Created Date` windows under one request-rate limit, and streamed to
//!    `<export dir>/<type>.csv` and `.parquet` (lossless text). `--skip-export` reuses them.
//! 2. **Migrate**: each type, parents first, is read back from Parquet, typed with its
//!    declared schema, mapped (roles, statuses, JSON, lists, decimals, dates, UUIDv5 ids,
//!    passwords) and staged in `cb_staging`; a child of a rejected parent is rejected with
//!    `parent rejected`.
//! 3. **Switch**: `--sample N` random staged things of every migrated type are re-read from
//!    the API and compared column by column with staging ([`sample`]); then one transaction
//!    upserts staging into the target tables, records the id map and the run (with its
//!    `Modified Date` high-water mark), runs the seed's checks (10.3) and the sample's
//!    verdict, writes `rollback_migration_<ts>.sql`, and commits only if no check vetoes.
//! 4. **Reports**: `migration_summary_<ts>.txt`, `migration_errors_<ts>.csv`,
//!    `migration_report_<ts>.json`, `rollback_migration_<ts>.sql`, `migration_<ts>.log`,
//!    etl-core's `report.json`/`summary.txt`, and `user_id_mapping.json` /
//!    `booking_id_mapping.json` in the export dir.
//!
//! With no `BUBBLE_API_URL` it starts the Bubble-compatible test server on generated
//! fixtures; with no `DATABASE_URL` a throwaway PostgreSQL.

pub mod fixtures;
pub mod load;
pub mod passwords;
pub mod sample;
pub mod schema;
pub mod transform;

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use arrow_array::Array;
use arrow_array::cast::AsArray;
use chrono::{DateTime, Utc};
use etl_core::cli::CommonArgs;
use etl_core::testing::MemoryLoad;
use etl_core::{
    Extract, ExtractOptions, Pipeline, PipelineOptions, RunInfo, RunReport, RunStatus, Secret,
};
use etl_source_bubble::export::{ExportLoad, ParquetExtract, csv_path, parquet_path};
use etl_source_bubble::test_server::{ServerConfig, TestServer};
use etl_source_bubble::{
    BubbleClient, BubbleConfig, BubbleExtract, KeyMode, TypeSchema, parse_datetime,
};
use futures::StreamExt;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

pub use self::sample::sample_check;
use self::schema::{KeyOverrides, MIGRATED, NOT_MIGRATED, table_of, type_schema};
use self::transform::{Ctx, ErrorLog, MapTransform};

/// Command line of `cargo run --example culturebridge`.
#[derive(clap::Parser, Debug, Clone)]
#[command(about = "Migrate CultureBridge from the Bubble Data API into PostgreSQL (seed 004)")]
pub struct Args {
    /// Options every ferry binary takes.
    #[command(flatten)]
    pub common: CommonArgs,
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

/// The files a run wrote.
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
        Paths {
            summary: dir.join(format!("migration_summary_{ts}.txt")),
            errors: dir.join(format!("migration_errors_{ts}.csv")),
            json: dir.join(format!("migration_report_{ts}.json")),
            rollback: dir.join(format!("rollback_migration_{ts}.sql")),
            log: dir.join(format!("migration_{ts}.log")),
        }
    }
}

/// What a run did.
pub struct Outcome {
    /// The combined report (also in `report.json` and `migration_report_<ts>.json`).
    pub report: RunReport,
    /// Report files.
    pub paths: Paths,
    /// Fixture expectations, when the bundled test server was used.
    pub expected: Option<fixtures::Expected>,
    /// Export figures (records, seconds, requests, throttled), when exported.
    pub export: Option<ExportFigures>,
    /// The database URL used.
    pub database_url: String,
}

/// Figures of the export phase.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ExportFigures {
    /// Things exported.
    pub records: u64,
    /// Wall seconds.
    pub seconds: f64,
    /// HTTP requests sent.
    pub requests: u64,
    /// 429/503 answers received.
    pub throttled: u64,
}

/// The report directory of `args`.
pub fn report_dir(args: &Args) -> PathBuf {
    args.migration_report_dir
        .clone()
        .unwrap_or_else(|| args.common.report_dir.clone())
}

/// A timestamp for report names: `YYYYmmdd_HHMMSS`.
pub fn timestamp() -> String {
    Utc::now().format("%Y%m%d_%H%M%S").to_string()
}

/// Start the bundled Bubble-compatible server on fixtures of `users` users.
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
pub fn schemas(args: &Args) -> anyhow::Result<HashMap<String, TypeSchema>> {
    let overrides: KeyOverrides = match &args.keys {
        Some(p) => etl_core::load_config(p)?,
        None => KeyOverrides::new(),
    };
    let empty = HashMap::new();
    Ok(MIGRATED
        .iter()
        .chain(NOT_MIGRATED.iter())
        .map(|t| {
            (
                (*t).to_owned(),
                type_schema(t, args.key_mode.into(), overrides.get(*t).unwrap_or(&empty)),
            )
        })
        .collect())
}

/// Run the whole migration. `server` is the bundled test server when one was started.
pub async fn run(
    args: &Args,
    ts: &str,
    server: Option<(&TestServer, fixtures::Expected)>,
) -> anyhow::Result<Outcome> {
    let rdir = report_dir(args);
    std::fs::create_dir_all(&rdir).with_context(|| format!("cannot create {}", rdir.display()))?;
    std::fs::create_dir_all(&args.export_dir)
        .with_context(|| format!("cannot create {}", args.export_dir.display()))?;
    let paths = Paths::new(&rdir, ts);
    let run = RunInfo::new("culturebridge");
    let started = Utc::now();
    let (base_url, key, expected) = match server {
        Some((s, e)) => (s.base_url(), Secret::new(s.token()), Some(e)),
        None => (
            args.bubble_api_url
                .clone()
                .context("BUBBLE_API_URL is not set")?,
            args.bubble_api_key
                .clone()
                .context("BUBBLE_API_KEY is not set (the app's admin API token)")?,
            None,
        ),
    };
    let mut bcfg = BubbleConfig::new(base_url, key);
    bcfg.requests_per_minute = args.requests_per_minute;
    let client = Arc::new(BubbleClient::new(bcfg)?);
    let schemas = schemas(args)?;
    let batch_size = args
        .migration_batch_size
        .unwrap_or(args.common.batch_size)
        .max(1);

    let db =
        crate::common::Database::open(args.common.database_url.as_ref(), "culturebridge").await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&db.url)
        .await
        .with_context(|| format!("cannot connect to {}", db.redacted()))?;
    sqlx::raw_sql(schema::DDL)
        .execute(&pool)
        .await
        .context("cannot create the target schema")?;

    let since = match (&args.since, args.incremental) {
        (Some(s), _) => {
            Some(parse_datetime(s).with_context(|| format!("--since `{s}` is not a date"))?)
        }
        (None, true) => {
            let (h,): (Option<DateTime<Utc>>,) = sqlx::query_as(
                "SELECT max(high_water_mark) FROM migration_runs WHERE status = 'succeeded'",
            )
            .fetch_one(&pool)
            .await?;
            h
        }
        (None, false) => None,
    };
    if let Some(s) = since {
        tracing::info!(since = %s, "incremental run: only things modified after the mark");
    }

    // 1. export
    let export = if args.skip_export {
        for t in MIGRATED.iter().chain(NOT_MIGRATED.iter()) {
            let p = parquet_path(&args.export_dir, t);
            if !p.exists() {
                bail!(
                    "--skip-export: {} is missing; run once without --skip-export",
                    p.display()
                );
            }
        }
        None
    } else {
        let t0 = Instant::now();
        // --resume: a type whose files exist was exported completely (they are renamed
        // into place only when its export commits), so only the others are read again.
        let todo: Vec<&str> = MIGRATED
            .iter()
            .chain(NOT_MIGRATED.iter())
            .copied()
            .filter(|t| {
                let done = args.common.resume
                    && parquet_path(&args.export_dir, t).exists()
                    && csv_path(&args.export_dir, t).exists();
                if done {
                    tracing::info!(r#type = %t, "export already complete; skipped (--resume)");
                }
                !done
            })
            .collect();
        let jobs = todo.into_iter().map(|t| {
            let e = BubbleExtract::new(client.clone(), schemas[t].clone())
                .raw(true)
                .windows(args.windows)
                .since(since);
            let p =
                Pipeline::new(e, ExportLoad::new(&args.export_dir, t)).options(PipelineOptions {
                    // Each window fills its batch page by page (100 things a page): batches
                    // of at most EXPORT_BATCH things keep the export's memory at
                    // windows x types x EXPORT_BATCH things, whatever the app's size.
                    batch_size: batch_size.min(EXPORT_BATCH),
                    parallel: args.windows.max(1),
                    ..PipelineOptions::default()
                });
            let run = RunInfo::new(format!("culturebridge_export_{t}"));
            async move { (t, p.run(&run).await) }
        });
        let results = futures::future::join_all(jobs).await;
        let mut records = 0;
        for (t, r) in &results {
            if !r.succeeded() {
                bail!(
                    "export of Bubble type `{t}` failed: {}",
                    r.error.clone().unwrap_or_default()
                );
            }
            records += r.totals.loaded;
        }
        let f = ExportFigures {
            records,
            seconds: t0.elapsed().as_secs_f64(),
            requests: client.stats().requests.load(Ordering::Relaxed),
            throttled: client.stats().throttled.load(Ordering::Relaxed),
        };
        tracing::info!(
            records,
            secs = format!("{:.1}", f.seconds),
            requests = f.requests,
            throttled = f.throttled,
            "export done"
        );
        Some(f)
    };

    // 2. migrate, parents first
    let ctx = Arc::new(Ctx::new(ErrorLog::create(&paths.errors)?));
    prepare_ctx(&ctx, &pool, &args.export_dir).await?;
    let mut units = Vec::new();
    let mut staged = Vec::new();
    let mut per_type = serde_json::Map::new();
    for t in MIGRATED.iter().chain(NOT_MIGRATED.iter()) {
        let spec = Arc::new(schemas[*t].clone());
        let opts = PipelineOptions {
            batch_size,
            report_dir: Some(rdir.join("pipeline").join(t)),
            ..PipelineOptions::default()
        };
        let map = MapTransform::new(spec.clone(), ctx.clone());
        let report = if *t == "user"
            && let Some(csv) = &args.users_csv
        {
            let e = passwords::CsvExtract::open(csv, "user", &spec)?;
            let p = Pipeline::new(e, load::StagingLoad::new(pool.clone(), t))
                .transform(passwords::PasswordTransform::new(args.bcrypt_cost))
                .transform(map)
                .options(opts);
            p.run(&run).await
        } else {
            let e = ParquetExtract::whole(t, &parquet_path(&args.export_dir, t))?;
            if table_of(t).is_empty() {
                Pipeline::new(e, MemoryLoad::default())
                    .transform(map)
                    .options(opts)
                    .run(&run)
                    .await
            } else {
                Pipeline::new(e, load::StagingLoad::new(pool.clone(), t))
                    .transform(map)
                    .options(opts)
                    .run(&run)
                    .await
            }
        };
        if !report.succeeded() {
            ctx.flush()?;
            bail!(
                "migration of `{t}` failed: {}",
                report.error.clone().unwrap_or_default()
            );
        }
        let tt = &report.totals;
        per_type.insert(
            (*t).to_owned(),
            json!({"read": tt.read, "loaded": tt.loaded, "rejected": tt.rejected, "filtered": tt.filtered,
                   "rejected_by_reason": tt.rejected_by_reason, "counters": tt.counters}),
        );
        if !table_of(t).is_empty() {
            staged.push(((*t).to_owned(), tt.loaded));
        }
        units.extend(report.units);
    }
    ctx.flush()?;

    // 3. compare a sample with the API, then switch
    let sample = sample_check(&client, &pool, &schemas, &args.export_dir, args.sample).await?;
    let hwm = ctx.high_water_mark();
    let sw = load::switch(
        &pool,
        run.run_id,
        since,
        hwm,
        &staged,
        sample,
        &paths.rollback,
        args.common.dry_run,
    )
    .await?;
    if sw.committed {
        for (ty, file) in [
            ("user", "user_id_mapping.json"),
            ("booking", "booking_id_mapping.json"),
        ] {
            write_mapping(&pool, ty, &args.export_dir.join(file)).await?;
        }
    }

    // 4. reports
    let mut report = RunReport::new(
        "culturebridge",
        &run.run_id.to_string(),
        RunStatus::Succeeded,
        &[],
        started,
    );
    report.set_units(units);
    report.validation = sw.findings;
    let vetoed = report.validation.iter().any(|f| f.vetoes());
    if args.common.dry_run && !vetoed {
        // Everything ran and was rolled back: the figures are what a real run would do.
        report.status = RunStatus::DryRun;
    } else if !sw.committed {
        report.status = RunStatus::Failed;
        let vetoes: Vec<String> = report
            .validation
            .iter()
            .filter(|f| f.vetoes())
            .map(|f| format!("{}: {}", f.check, f.message))
            .collect();
        report.error = Some(format!(
            "validation failed, nothing committed: {}",
            vetoes.join("; ")
        ));
    }
    let e = &mut report.extra;
    e.insert("per_type".into(), Value::Object(per_type));
    e.insert(
        "inserted".into(),
        json!(sw.inserted.iter().cloned().collect::<HashMap<_, _>>()),
    );
    e.insert(
        "updated".into(),
        json!(sw.updated.iter().cloned().collect::<HashMap<_, _>>()),
    );
    e.insert(
        "password_reset_required".into(),
        json!(
            report
                .totals
                .counters
                .get("password_reset_required")
                .copied()
                .unwrap_or(0)
        ),
    );
    e.insert(
        "passwords_hashed".into(),
        json!(
            report
                .totals
                .counters
                .get("passwords_hashed")
                .copied()
                .unwrap_or(0)
        ),
    );
    e.insert(
        "parent_rejected".into(),
        json!(
            report
                .totals
                .counters
                .get("parent_rejected")
                .copied()
                .unwrap_or(0)
        ),
    );
    e.insert("since".into(), json!(since.map(|s| s.to_rfc3339())));
    e.insert("high_water_mark".into(), json!(hwm.map(|s| s.to_rfc3339())));
    e.insert("export".into(), json!(export));
    e.insert("database".into(), json!(db.redacted()));
    e.insert(
        "rollback_script".into(),
        json!(paths.rollback.display().to_string()),
    );
    report.write(&rdir, None)?;
    std::fs::write(&paths.json, serde_json::to_vec_pretty(&report)?)?;
    std::fs::write(&paths.summary, summary_text(&report))?;
    Ok(Outcome {
        report,
        paths,
        expected,
        export,
        database_url: db.url.clone(),
    })
}

fn summary_text(r: &RunReport) -> String {
    let mut s = String::from("CultureBridge migration (Bubble -> PostgreSQL)\n\n");
    s.push_str(&r.summary_text());
    if let Some(Value::Object(pt)) = r.extra.get("per_type") {
        s.push_str(&format!(
            "\n{:<16} {:>8} {:>8} {:>9} {:>9}\n",
            "type", "read", "loaded", "rejected", "filtered"
        ));
        for (t, v) in pt {
            s.push_str(&format!(
                "{t:<16} {:>8} {:>8} {:>9} {:>9}\n",
                v["read"].as_u64().unwrap_or(0),
                v["loaded"].as_u64().unwrap_or(0),
                v["rejected"].as_u64().unwrap_or(0),
                v["filtered"].as_u64().unwrap_or(0)
            ));
        }
    }
    for k in [
        "password_reset_required",
        "passwords_hashed",
        "parent_rejected",
        "inserted",
        "updated",
        "export",
        "rollback_script",
    ] {
        if let Some(v) = r.extra.get(k) {
            s.push_str(&format!("{k}: {v}\n"));
        }
    }
    s
}

/// Load what earlier runs committed (accepted ids, e-mail owners) and who keeps each e-mail
/// among the exported users (earliest `Created Date`, then smallest `_id`).
async fn prepare_ctx(ctx: &Ctx, pool: &PgPool, export_dir: &Path) -> anyhow::Result<()> {
    let mapped: Vec<(String, String)> =
        sqlx::query_as("SELECT bubble_type, bubble_id FROM bubble_id_map")
            .fetch_all(pool)
            .await?;
    let mut by_type: HashMap<String, Vec<String>> = HashMap::new();
    for (t, b) in mapped {
        by_type.entry(t).or_default().push(b);
    }
    for (t, ids) in by_type {
        ctx.accept_all(&t, ids);
    }
    let existing: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT lower(u.email), m.bubble_id FROM users u LEFT JOIN bubble_id_map m ON m.new_id = u.id AND m.bubble_type = 'user'",
    )
    .fetch_all(pool)
    .await?;
    let mut owners: HashMap<String, (i64, String)> = HashMap::new();
    for (email, bubble) in existing {
        owners.insert(
            email,
            (
                i64::MIN,
                bubble.unwrap_or_else(|| "(an account created outside the migration)".into()),
            ),
        );
    }
    let p = parquet_path(export_dir, "user");
    if p.exists() {
        let e = ParquetExtract::whole("user", &p)?;
        let unit = e.units().await?.remove(0);
        let mut s = e.open(&unit, ExtractOptions::default())?;
        while let Some(b) = s.next().await {
            let b = b?;
            let (Some(ids), Some(created), Some(emails)) = (
                b.data.column_by_name("_id"),
                b.data.column_by_name("created_date"),
                b.data.column_by_name("email"),
            ) else {
                break;
            };
            let (ids, created, emails) = (
                ids.as_string::<i32>(),
                created.as_string::<i32>(),
                emails.as_string::<i32>(),
            );
            for i in 0..b.num_rows() {
                let (Some(id), Some(email)) = (
                    ids.is_valid(i).then(|| ids.value(i)),
                    emails.is_valid(i).then(|| emails.value(i)),
                ) else {
                    continue;
                };
                let c = created
                    .is_valid(i)
                    .then(|| created.value(i))
                    .and_then(parse_datetime)
                    .map_or(i64::MAX, |d| d.timestamp_millis());
                let cand = (c, id.to_owned());
                owners
                    .entry(email.trim().to_ascii_lowercase())
                    .and_modify(|o| {
                        if cand < *o {
                            *o = cand.clone();
                        }
                    })
                    .or_insert(cand);
            }
        }
    }
    *ctx.email_owner.lock().expect("lock") = owners.into_iter().map(|(k, v)| (k, v.1)).collect();
    Ok(())
}

/// `{bubble_id: uuid}` of every mapped thing of `bubble_type`, streamed to `path`.
async fn write_mapping(pool: &PgPool, bubble_type: &str, path: &Path) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    out.write_all(b"{")?;
    let mut rows = sqlx::query_as::<_, (String, Uuid)>(
        "SELECT bubble_id, new_id FROM bubble_id_map WHERE bubble_type = $1 ORDER BY bubble_id",
    )
    .bind(bubble_type)
    .fetch(pool);
    let mut first = true;
    while let Some(r) = rows.next().await {
        let (b, n) = r?;
        if !first {
            out.write_all(b",")?;
        }
        first = false;
        write!(out, "\n  {}: \"{n}\"", serde_json::to_string(&b)?)?;
    }
    out.write_all(b"\n}\n")?;
    out.flush()?;
    Ok(())
}

/// Log to stderr and to `migration_<ts>.log` (`RUST_LOG` overrides the level).
pub fn init_logging(log: &Path, verbosity: i8) -> anyhow::Result<()> {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    let level = match verbosity {
        i8::MIN..=-2 => "error",
        -1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{level},sqlx=warn,hyper=warn,reqwest=warn"))
    });
    if let Some(d) = log.parent() {
        std::fs::create_dir_all(d)?;
    }
    let file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false)
        .with_writer(std::io::stderr.and(std::sync::Mutex::new(file)))
        .try_init();
    Ok(())
}

/// The example's `main`: parse, log, start what is missing, run, print the summary.
pub async fn main_with(args: Args) -> anyhow::Result<bool> {
    let ts = timestamp();
    let paths = Paths::new(&report_dir(&args), &ts);
    init_logging(&paths.log, args.common.verbosity())?;
    let server = if args.bubble_api_url.is_none() {
        Some(start_test_server(&args).await?)
    } else {
        None
    };
    let out = run(&args, &ts, server.as_ref().map(|(s, e)| (s, e.clone()))).await?;
    println!("{}", summary_text(&out.report));
    for p in [
        &out.paths.summary,
        &out.paths.errors,
        &out.paths.json,
        &out.paths.rollback,
        &out.paths.log,
    ] {
        if p.exists() {
            println!("wrote {}", p.display());
        }
    }
    if out.report.status == RunStatus::DryRun {
        println!(
            "dry run: everything was staged, checked and rolled back; the target tables are unchanged"
        );
    }
    Ok(out.report.succeeded() || out.report.status == RunStatus::DryRun)
}
