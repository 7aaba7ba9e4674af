//! The S9 sales migration to DynamoDB (seed 003): extract -> transform -> validate -> load ->
//! verify, phase by phase, resumable, with backups, restore and reports.
//!
//! ```text
//! PostgreSQL (S9) ──PgSource, one snapshot──> data/extracted/<entity>.parquet
//!   ──S9Transform (code maps; unknown code = reject)──> data/transformed/<entity>.parquet
//!   ──validation (required, types, enums, keys, FKs, totals, duplicates)──> validation_report.json
//!   ──backup (Scan -> data/backups/<table>-<ts>.parquet), ItemCheck, DynamoLoad──> DynamoDB
//!   ──verify (counts by Scan, random sample compared attribute by attribute)
//! ```
//!
//! With no arguments: a throwaway PostgreSQL loaded with generated data (`--sales N`, default
//! 100,000) and a dynalite, every phase, both servers stopped at exit. Separate phases
//! (`--phase load`) keep their state in `data/` and need persistent servers
//! (`--source-url`, `--dynamodb-endpoint` or the config file) to be meaningful.
//!
//! Tables: `salesTable` holds sales and their lines, `buyersTable` buyers, `producersTable`
//! producers (they may all be one table). Each has `PK`/`SK` and GSI1..GSI3 (`GSI<n>PK`,
//! `GSI<n>SK`); tables missing on the server are created on demand.
//!
//! Rollback: `--restore data/backups/<table>-<ts>.parquet` writes the backup back into the
//! same table and deletes the items added since. DynamoDB point-in-time recovery cannot do
//! that: it always restores into a *new* table (the seed's
//! `restore-table-to-point-in-time --target-table-name SalesTable-dev` onto the same name
//! fails).

pub mod bench;
pub mod checks;
pub mod generate;
/// Parquet phase artifacts (the `etl-parquet` crate).
pub use etl_parquet as pq;
pub mod transform;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use etl_core::report::write_atomic;
use etl_core::{
    Batch, Extract, Fate, Pipeline, PipelineOptions, RunInfo, RunReport, RunStatus, Secret,
    Transform, UnitStatus, UnitSummary,
};
use etl_sink_dynamodb::admin::{TableSpec, count_items, ensure_table, get_item, static_client};
use etl_sink_dynamodb::aws_sdk_dynamodb::Client;
use etl_sink_dynamodb::backup::{RestoreMode, backup_table, restore_table};
use etl_sink_dynamodb::dynalite::Dynalite;
use etl_sink_dynamodb::mapping::{MappingOptions, item_to_dynamo_json, items_from_batch};
use etl_sink_dynamodb::{
    DynamoLoad, ItemCheck, ItemWriter, JsonCheckpoint, KeySchema, WriteOptions,
};
use etl_source_postgres::{Entity as PgEntity, Filter, PgSource, PgSourceOptions, quote_ident};
use serde::Deserialize;
use serde_json::{Value, json};

use checks::{Invalid, Validation, diff_items, item_key};
use transform::{Entity, Lookups, S9Transform};

/// A phase of the migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    /// S9 -> data/extracted/*.parquet.
    Extract,
    /// extracted -> data/transformed/*.parquet.
    Transform,
    /// transformed -> validation_report.json.
    Validate,
    /// transformed -> DynamoDB (after a backup).
    Load,
    /// DynamoDB vs source: counts and a sample.
    Verify,
}

/// What `--entity` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EntityArg {
    /// compradores.
    Buyers,
    /// produtores and their certifications.
    Producers,
    /// vendas and their lines.
    Sales,
}

/// `cargo run --example s9_sales -- [OPTIONS]`.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "s9_sales",
    about = "Migrate the S9 sales system (PostgreSQL) to DynamoDB, phase by phase"
)]
pub struct Args {
    /// Run one phase only.
    #[arg(long, value_enum)]
    pub phase: Option<Phase>,
    /// Run every phase (the default when neither --phase nor --restore is given).
    #[arg(long)]
    pub full: bool,
    /// Only this entity (sales include their lines, producers their certifications).
    #[arg(long, value_enum)]
    pub entity: Option<EntityArg>,
    /// Everything but writes to DynamoDB: prints what would be written.
    #[arg(long)]
    pub dry_run: bool,
    /// The seed's JSON config (`source`, `target`, `migration`); `${DB_PASSWORD}` is
    /// substituted from the environment.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Continue from data/.checkpoint.json: finished phases, entities and load units are skipped.
    #[arg(long)]
    pub resume: bool,
    /// More logging.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// S9 PostgreSQL URL (else the config's `source`, else a throwaway cluster with generated data).
    #[arg(
        long,
        env = "S9_SOURCE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub source_url: Option<Secret>,
    /// DynamoDB endpoint (else the config's `target.endpoint`, else a local dynalite).
    #[arg(long, value_name = "URL")]
    pub dynamodb_endpoint: Option<String>,
    /// Where the reports go.
    #[arg(long, value_name = "DIR", default_value = "data/reports")]
    pub report_dir: PathBuf,
    /// Where extracted/, transformed/, backups/ and .checkpoint.json live.
    #[arg(long, value_name = "DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Restore a backup file into its table (and delete items added since), then exit.
    #[arg(long, value_name = "BACKUP")]
    pub restore: Option<PathBuf>,
    /// Sales to generate for the throwaway source.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub sales: u32,
    /// Generator seed.
    #[arg(long, default_value_t = 9)]
    pub seed: u64,
    /// Extract only sales (and their lines) matching `column OP value` (bound, never pasted).
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    /// Incremental: only sales (and their lines) updated after this timestamp.
    #[arg(long, value_name = "TIMESTAMP")]
    pub since: Option<String>,
    /// BatchWriteItem calls in flight in all (default: the config's `migration.concurrency`, 32).
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Rows per Arrow batch.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub batch_size: usize,
    /// Key values per extract unit: each range is written and checkpointed on its own, so
    /// an interrupted extract resumes (--resume) at the first range not written.
    #[arg(long, value_name = "N", default_value_t = 50_000)]
    pub extract_unit_keys: u64,
    /// Benchmark: load data/transformed/ into fresh dynalites with ferry's sink, a minimal
    /// concurrent writer and sequential 25-item calls (see benches/s9_dynamodb.sh).
    #[arg(long, hide = true)]
    pub bench: bool,
    /// Benchmark: round-trip milliseconds added to every call (0: none).
    #[arg(long, hide = true, default_value_t = 0)]
    pub bench_latency_ms: u64,
}

/// The seed's config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    /// The S9 database.
    pub source: Option<SourceConfig>,
    /// DynamoDB.
    pub target: TargetConfig,
    /// Batching and retries.
    pub migration: MigrationConfig,
}

/// `source` of the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceConfig {
    /// Always `postgresql`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// Host.
    pub host: String,
    /// Port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Database.
    pub database: String,
    /// User.
    pub username: String,
    /// Password (use `${DB_PASSWORD}`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// TLS required.
    #[serde(default)]
    pub ssl: bool,
}

fn default_port() -> u16 {
    5432
}

/// `target` of the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TargetConfig {
    /// AWS region.
    pub region: String,
    /// Sales and sale lines.
    pub sales_table: String,
    /// Buyers.
    pub buyers_table: String,
    /// Producers.
    pub producers_table: String,
    /// Endpoint (a local server); AWS's when absent.
    pub endpoint: Option<String>,
    /// `InvoiceFileUrl` template: `{year}`, `{month}`, `{sale_id}`.
    pub invoice_file_url: String,
}

impl Default for TargetConfig {
    fn default() -> Self {
        TargetConfig {
            region: "us-east-1".into(),
            sales_table: "SalesTable-dev".into(),
            buyers_table: "BuyersTable-dev".into(),
            producers_table: "ProducersTable-dev".into(),
            endpoint: None,
            invoice_file_url:
                "s3://sale-module-invoices-production/{year}/{month}/{sale_id}-invoice.pdf".into(),
        }
    }
}

/// `migration` of the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MigrationConfig {
    /// Items per BatchWriteItem (at most 25).
    pub batch_size: usize,
    /// Retries of a throttled call.
    pub max_retries: u32,
    /// First retry delay, seconds.
    pub retry_delay: f64,
    /// Double the delay per retry.
    pub exponential_backoff: bool,
    /// Load the valid items even when validation found invalid ones (they are rejected).
    pub continue_on_error: bool,
    /// Back up every target table before loading.
    pub backup_before_load: bool,
    /// BatchWriteItem calls in flight in all (32: enough to hide a 20-50 ms round trip to
    /// DynamoDB; a throttled table is retried with backoff).
    pub concurrency: usize,
}

impl Default for MigrationConfig {
    fn default() -> Self {
        MigrationConfig {
            batch_size: 25,
            max_retries: 8,
            retry_delay: 0.05,
            exponential_backoff: true,
            continue_on_error: true,
            backup_before_load: true,
            concurrency: 32,
        }
    }
}

impl TargetConfig {
    /// The table of an entity.
    pub fn table(&self, e: Entity) -> &str {
        match e {
            Entity::Buyers => &self.buyers_table,
            Entity::Producers => &self.producers_table,
            Entity::Sales | Entity::SaleLines => &self.sales_table,
        }
    }
}

/// The key of every table.
pub fn keys() -> KeySchema {
    KeySchema::new("PK", Some("SK"))
}

fn table_spec(name: &str) -> TableSpec {
    TableSpec {
        name: name.to_owned(),
        keys: keys(),
        indexes: (1..=3)
            .map(|i| {
                (
                    format!("GSI{i}"),
                    format!("GSI{i}PK"),
                    Some(format!("GSI{i}SK")),
                )
            })
            .collect(),
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    /// The combined report.
    pub report: RunReport,
    /// Whether every selected phase succeeded (verify included).
    pub ok: bool,
}

struct Ctx {
    args: Args,
    config: Config,
    entities: Vec<Entity>,
    data: PathBuf,
    reports: PathBuf,
    checkpoint: PathBuf,
    runs: Vec<RunReport>,
    errors: Vec<String>,
    extra: serde_json::Map<String, Value>,
    ok: bool,
}

impl Ctx {
    fn extracted(&self, name: &str) -> PathBuf {
        self.data.join("extracted").join(format!("{name}.parquet"))
    }
    fn transformed(&self, e: Entity) -> PathBuf {
        self.data
            .join("transformed")
            .join(format!("{}.parquet", e.name()))
    }
    fn phases(&self) -> JsonCheckpoint {
        JsonCheckpoint::new(&self.checkpoint, "phases")
    }
    fn done(&self, what: &str) -> bool {
        self.args.resume && self.phases().get(what).ok().flatten() == Some(json!(true))
    }
    fn mark(&self, what: &str) -> anyhow::Result<()> {
        Ok(self.phases().set(what, json!(true))?)
    }
    fn options(&self, dir: &str) -> PipelineOptions {
        PipelineOptions {
            batch_size: self.args.batch_size,
            report_dir: Some(self.reports.join("runs").join(dir)),
            ..Default::default()
        }
    }
    fn record(&mut self, phase: &str, report: RunReport) {
        if !report.succeeded() && report.status != RunStatus::DryRun {
            self.ok = false;
            self.errors.push(format!(
                "{phase}: {}",
                report.error.clone().unwrap_or_else(|| "failed".into())
            ));
        }
        self.runs.push(report);
    }
}

fn selected(e: Option<EntityArg>) -> Vec<Entity> {
    match e {
        None => Entity::ALL.to_vec(),
        Some(EntityArg::Buyers) => vec![Entity::Buyers],
        Some(EntityArg::Producers) => vec![Entity::Producers],
        Some(EntityArg::Sales) => vec![Entity::Sales, Entity::SaleLines],
    }
}

/// Parse the process arguments and run; the exit code says whether it succeeded.
pub async fn main_entry() -> std::process::ExitCode {
    let args = Args::parse();
    etl_core::cli::init_tracing(args.verbose as i8);
    match run(args).await {
        Ok(o) => {
            println!("{}", o.report.summary_text());
            if o.ok {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("s9_sales failed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Run the migration as `args` say.
pub async fn run(args: Args) -> anyhow::Result<Outcome> {
    if args.bench {
        let lines = bench::bench(&args).await?;
        let mut report = RunReport::new(
            "s9_bench",
            "bench",
            RunStatus::Succeeded,
            &[],
            chrono::Utc::now(),
        );
        report.extra.insert("bench".into(), Value::Array(lines));
        return Ok(Outcome { report, ok: true });
    }
    let config: Config = match &args.config {
        Some(p) => {
            etl_core::load_config(p).with_context(|| format!("reading config {}", p.display()))?
        }
        None => Config::default(),
    };
    let data = args.data_dir.clone();
    let reports = args.report_dir.clone();
    std::fs::create_dir_all(&reports).with_context(|| format!("creating {}", reports.display()))?;
    let mut ctx = Ctx {
        entities: selected(args.entity),
        checkpoint: data.join(".checkpoint.json"),
        data,
        reports,
        config,
        runs: Vec::new(),
        errors: Vec::new(),
        extra: serde_json::Map::new(),
        ok: true,
        args,
    };
    let started = chrono::Utc::now();
    let phases: Vec<Phase> = match (ctx.args.phase, &ctx.args.restore) {
        (Some(p), _) => vec![p],
        (None, Some(_)) => vec![],
        (None, None) => vec![
            Phase::Extract,
            Phase::Transform,
            Phase::Validate,
            Phase::Load,
            Phase::Verify,
        ],
    };
    if !ctx.args.resume && phases.len() > 1 {
        ctx.phases().reset()?;
    }

    // DynamoDB, if needed.
    let needs_dynamo = ctx.args.restore.is_some()
        || phases
            .iter()
            .any(|p| matches!(p, Phase::Load | Phase::Verify));
    let mut _dynalite = None;
    let client = if needs_dynamo {
        let endpoint = ctx
            .args
            .dynamodb_endpoint
            .clone()
            .or(ctx.config.target.endpoint.clone());
        Some(match endpoint {
            Some(ep) => static_or_env_client(Some(&ep), &ctx.config.target.region),
            None if std::env::var("AWS_ACCESS_KEY_ID").is_ok() && ctx.args.config.is_some() => {
                static_or_env_client(None, &ctx.config.target.region)
            }
            None => {
                let d = Dynalite::start().await.context("starting dynalite")?;
                tracing::info!(endpoint = %d.endpoint(), "started a local dynalite (no --dynamodb-endpoint given)");
                let c = d.client(None);
                _dynalite = Some(d);
                c
            }
        })
    } else {
        None
    };

    if let Some(backup) = ctx.args.restore.clone() {
        let client = client.as_ref().expect("client for restore");
        let info = restore_table(
            client,
            &backup,
            None,
            RestoreMode::Exact,
            write_options(&ctx),
        )
        .await?;
        println!(
            "restored {} items into {} from {} ({} items added since the backup deleted)",
            info.restored,
            info.table,
            backup.display(),
            info.deleted
        );
        ctx.extra
            .insert("restore".into(), serde_json::to_value(&info)?);
    }

    // PostgreSQL, if needed.
    let mut _pg = None;
    let mut pool = None;
    if phases.contains(&Phase::Extract) {
        let given = ctx
            .args
            .source_url
            .as_ref()
            .map(|s| s.expose().to_owned())
            .or_else(|| {
                ctx.config.source.as_ref().map(|s| {
                    let pw = s
                        .password
                        .as_ref()
                        .map(|p| format!(":{}", urlencode(p.expose())))
                        .unwrap_or_default();
                    let ssl = if s.ssl { "?sslmode=require" } else { "" };
                    format!(
                        "postgres://{}{pw}@{}:{}/{}{ssl}",
                        urlencode(&s.username),
                        s.host,
                        s.port,
                        s.database
                    )
                })
            });
        let generate = given.is_none();
        let (url, guard) = etl_testkit::database_url_or_start(given.as_deref(), "s9").await?;
        _pg = guard;
        let p = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(&url)
            .await?;
        if generate {
            // Our own throwaway cluster: recreate the S9 schema with generated data.
            sqlx::raw_sql(
                "DROP TABLE IF EXISTS compradores, produtores, vendas, linhas_venda, certificacoes",
            )
            .execute(&p)
            .await?;
            let t = Instant::now();
            let counts = generate::generate(
                &p,
                generate::GenOptions {
                    sales: ctx.args.sales,
                    seed: ctx.args.seed,
                },
            )
            .await?;
            tracing::info!(
                ?counts,
                secs = format!("{:.1}", t.elapsed().as_secs_f64()),
                "generated S9 data"
            );
            ctx.extra
                .insert("generated".into(), serde_json::to_value(counts)?);
        }
        pool = Some(p);
    }

    let mut phase_rss = serde_json::Map::new();
    for phase in phases {
        let t = Instant::now();
        etl_core::mem::reset_peak_rss();
        let r = match phase {
            Phase::Extract => extract(&mut ctx, pool.clone().expect("pool")).await,
            Phase::Transform => transform_phase(&mut ctx).await,
            Phase::Validate => validate(&mut ctx).map(|_| ()),
            Phase::Load => load(&mut ctx, client.as_ref().expect("client")).await,
            Phase::Verify if ctx.args.dry_run => {
                println!("[dry run] verify skipped: nothing was written");
                Ok(())
            }
            Phase::Verify => verify(&mut ctx, client.as_ref().expect("client")).await,
        };
        let peak = etl_core::mem::peak_rss_bytes().map(etl_core::mem::mib);
        tracing::info!(phase = ?phase, secs = format!("{:.1}", t.elapsed().as_secs_f64()), peak_rss_mib = ?peak, "phase done");
        phase_rss.insert(format!("{phase:?}").to_lowercase(), json!(peak));
        if let Err(e) = r {
            ctx.ok = false;
            ctx.errors.push(format!("{phase:?}: {e:#}"));
            break;
        }
        if !ctx.ok {
            break;
        }
    }
    // This process only: the servers it may have started are not counted.
    ctx.extra
        .insert("peak_rss_mib".into(), Value::Object(phase_rss));
    let report = write_reports(&mut ctx, started)?;
    Ok(Outcome { report, ok: ctx.ok })
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A client for `endpoint` (static local credentials), or for AWS with the credentials in
/// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`(/`AWS_SESSION_TOKEN`).
fn static_or_env_client(endpoint: Option<&str>, region: &str) -> Client {
    match endpoint {
        Some(ep) => static_client(ep, region, None),
        None => {
            use etl_sink_dynamodb::aws_sdk_dynamodb::config::{
                BehaviorVersion, Credentials, Region,
            };
            let var = |k: &str| std::env::var(k).ok();
            let creds = Credentials::new(
                var("AWS_ACCESS_KEY_ID").unwrap_or_default(),
                var("AWS_SECRET_ACCESS_KEY").unwrap_or_default(),
                var("AWS_SESSION_TOKEN"),
                None,
                "environment",
            );
            let conf = etl_sink_dynamodb::aws_sdk_dynamodb::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new(region.to_owned()))
                .credentials_provider(creds)
                .build();
            Client::from_conf(conf)
        }
    }
}

fn write_options(ctx: &Ctx) -> WriteOptions {
    let m = &ctx.config.migration;
    WriteOptions {
        concurrency: ctx.args.concurrency.unwrap_or(m.concurrency).max(1),
        batch_size: m.batch_size.clamp(1, 25),
        max_retries: m.max_retries,
        retry_delay: std::time::Duration::from_secs_f64(m.retry_delay.max(0.001)),
        exponential_backoff: m.exponential_backoff,
        ..Default::default()
    }
}

// ----- extract ----------------------------------------------------------------------------

async fn extract(ctx: &mut Ctx, pool: sqlx::PgPool) -> anyhow::Result<()> {
    let mut entities: Vec<PgEntity> = Vec::new();
    let wanted: Vec<&str> = ctx.entities.iter().map(|e| e.name()).collect();
    let sale_filter = ctx
        .args
        .filter
        .as_deref()
        .map(str::parse::<Filter>)
        .transpose()?;
    let since = ctx.args.since.clone();
    let split = ctx.args.extract_unit_keys;
    for e in &ctx.entities {
        let mut ent = PgEntity::table(e.name(), e.table(), e.key());
        match e {
            Entity::Sales => {
                if let Some(f) = &sale_filter {
                    ent = ent.filter(f.clone());
                }
                if let Some(s) = &since {
                    ent = ent.since("data_atualizacao", s.clone());
                }
            }
            Entity::SaleLines if sale_filter.is_some() || since.is_some() => {
                // Lines follow their sale: filter on the sale's columns.
                let mut cols = vec!["data_atualizacao".to_owned()];
                if let Some(f) = &sale_filter {
                    cols.push(f.column.clone());
                }
                let extra: Vec<String> = cols
                    .iter()
                    .map(|c| {
                        format!(
                            "v.{} AS {}",
                            quote_ident(c),
                            quote_ident(&format!("venda_{c}"))
                        )
                    })
                    .collect();
                let sql = format!(
                    "SELECT l.*, {} FROM linhas_venda l JOIN vendas v ON v.id_venda = l.id_venda",
                    extra.join(", ")
                );
                ent = PgEntity::query(e.name(), sql, e.key());
                if let Some(f) = &sale_filter {
                    ent = ent.filter(Filter::new(
                        format!("venda_{}", f.column),
                        f.op,
                        f.value.clone(),
                    ));
                }
                if let Some(s) = &since {
                    ent = ent.since("venda_data_atualizacao", s.clone());
                }
            }
            _ => {}
        }
        entities.push(ent.split_every(split));
    }
    if wanted.contains(&"producers") {
        entities.push(
            PgEntity::table("certifications", "certificacoes", "id_certificacao")
                .split_every(split),
        );
    }
    let source = PgSource::connect(
        pool,
        entities,
        PgSourceOptions {
            default_numeric_scale: 3,
            ..Default::default()
        },
    )
    .await?;
    let dir = ctx.data.join("extracted");
    let names: Vec<String> = source.entities().map(|e| e.entity.name.clone()).collect();
    for name in names {
        let key = format!("extract:{name}");
        if ctx.done(&key) {
            tracing::info!(entity = %name, "extract already done; skipped (--resume)");
            continue;
        }
        // One part file per key range, each recorded when written: a killed extract
        // resumes (--resume) at the first range not written; the parts are then joined
        // into extracted/<entity>.parquet.
        let src = source.only(&name)?;
        let units: Vec<String> = src.units().await?.into_iter().map(|u| u.name).collect();
        let schema = src.schema();
        let parts = dir.join(format!("{name}.parts"));
        let sink = pq::ParquetPartsLoad::new(
            &parts,
            JsonCheckpoint::new(&ctx.checkpoint, format!("extract-units:{name}")),
        );
        let mut info = RunInfo::new(format!("s9_extract_{name}"));
        info.resume = ctx.args.resume;
        let report = Pipeline::new(src, sink)
            .options(ctx.options(&format!("extract-{name}")))
            .run(&info)
            .await;
        let ok = report.succeeded();
        ctx.record(&format!("extract {name}"), report);
        if !ok {
            break;
        }
        let out = dir.join(format!("{name}.parquet"));
        let merge = (parts.clone(), out.clone());
        let rows = tokio::task::spawn_blocking(move || {
            pq::merge_parts(&merge.0, &units, schema, &merge.1)
        })
        .await??;
        tracing::info!(entity = %name, rows, file = %out.display(), "extracted");
        std::fs::remove_dir_all(&parts).with_context(|| format!("removing {}", parts.display()))?;
        ctx.mark(&key)?;
    }
    Ok(())
}

// ----- transform --------------------------------------------------------------------------

fn lookups(ctx: &Ctx, need: &[Entity]) -> anyhow::Result<Lookups> {
    let mut l = Lookups::default();
    for (name, e) in [
        ("buyers", Some(Entity::Buyers)),
        ("producers", Some(Entity::Producers)),
        ("certifications", None),
    ] {
        let wanted = match e {
            Some(Entity::Buyers) | Some(Entity::Producers) => need.contains(&Entity::Sales),
            _ => need.contains(&Entity::Producers),
        };
        let path = ctx.extracted(name);
        if wanted && path.exists() {
            for b in pq::read_all(&path)? {
                l.add(e, &b);
            }
        } else if wanted {
            bail!("{} is missing: run --phase extract first", path.display());
        }
    }
    Ok(l)
}

async fn transform_phase(ctx: &mut Ctx) -> anyhow::Result<()> {
    let lookups = Arc::new(lookups(ctx, &ctx.entities)?);
    let dir = ctx.data.join("transformed");
    for e in ctx.entities.clone() {
        let key = format!("transform:{}", e.name());
        if ctx.done(&key) {
            continue;
        }
        let input = ctx.extracted(e.name());
        if !input.exists() {
            bail!("{} is missing: run --phase extract first", input.display());
        }
        let t = S9Transform::new(
            e,
            lookups.clone(),
            ctx.config.target.invoice_file_url.clone(),
        );
        let report = Pipeline::new(
            pq::ParquetExtract::whole(e.name(), &input)?,
            pq::ParquetLoad::new(&dir, e.name()),
        )
        .transform(t)
        .options(ctx.options(&format!("transform-{}", e.name())))
        .run(&RunInfo::new(format!("s9_transform_{}", e.name())))
        .await;
        let rejected = report.totals.rejected;
        let ok = report.succeeded();
        ctx.record(&format!("transform {}", e.name()), report);
        if !ok {
            break;
        }
        ctx.phases()
            .set(&format!("transform_rejected:{}", e.name()), json!(rejected))?;
        ctx.mark(&key)?;
    }
    Ok(())
}

// ----- validate ---------------------------------------------------------------------------

fn validate(ctx: &mut Ctx) -> anyhow::Result<Validation> {
    let mut v = Validation::default();
    // FKs need every entity, so all are checked whatever --entity says.
    for e in Entity::ALL {
        let path = ctx.transformed(e);
        if !path.exists() {
            bail!("{} is missing: run --phase transform first", path.display());
        }
        let mut failed = None;
        v.check_entity(
            e,
            checks::item_stream(&path)?.map_while(|r| match r {
                Ok(i) => Some(i),
                Err(err) => {
                    failed = Some(err);
                    None
                }
            }),
        );
        if let Some(err) = failed {
            return Err(err.into());
        }
    }
    let report = v.report();
    write_atomic(
        &ctx.reports.join("validation_report.json"),
        &serde_json::to_vec_pretty(&report)?,
    )?;
    write_atomic(
        &ctx.data.join("transformed").join("invalid_items.json"),
        &serde_json::to_vec(&v.invalid)?,
    )?;
    ctx.extra.insert("validation".into(), json!({"passed": v.passed(), "invalid_items": v.invalid.len(), "entities": report["entities"]}));
    if !v.passed() {
        for i in v.invalid.iter().take(1000) {
            ctx.errors.push(format!(
                "validate {}: {} {}: {}",
                i.entity, i.key, i.check, i.reason
            ));
        }
        if !ctx.config.migration.continue_on_error {
            ctx.ok = false;
            ctx.errors.push(format!(
                "validation found {} invalid items and migration.continueOnError is false: not loading",
                v.invalid.len()
            ));
        }
    }
    Ok(v)
}

fn invalid_items(ctx: &Ctx) -> anyhow::Result<Vec<Invalid>> {
    let p = ctx.data.join("transformed").join("invalid_items.json");
    if !p.exists() {
        bail!("{} is missing: run --phase validate first", p.display());
    }
    Ok(serde_json::from_slice(&std::fs::read(&p)?)?)
}

/// Rejects items that failed validation, with the check and reason.
struct ExcludeInvalid {
    keys: std::collections::HashMap<String, (String, String)>,
}

impl Transform for ExcludeInvalid {
    fn name(&self) -> &str {
        "exclude_invalid"
    }
    fn output_schema(
        &self,
        input: &arrow_schema::SchemaRef,
    ) -> etl_core::Result<arrow_schema::SchemaRef> {
        Ok(input.clone())
    }
    fn transform(&self, mut batch: Batch) -> etl_core::Result<Batch> {
        let pk = batch.data.column_by_name("PK").cloned();
        let sk = batch.data.column_by_name("SK").cloned();
        let (Some(pk), Some(sk)) = (pk, sk) else {
            return Ok(batch);
        };
        let mut seen: HashSet<String> = HashSet::new();
        let fates: Vec<Option<Fate>> = (0..batch.num_rows())
            .map(|r| {
                let key = format!(
                    "{}|{}",
                    etl_core::batch::render_value(&pk, r),
                    etl_core::batch::render_value(&sk, r)
                );
                // Duplicates: the first occurrence is valid, later ones are not.
                let first = seen.insert(key.clone());
                self.keys.get(&key).and_then(|(check, reason)| {
                    (check != "duplicates" || !first).then(|| Fate::Reject {
                        column: None,
                        kind: format!("validation:{check}"),
                        reason: reason.clone(),
                    })
                })
            })
            .collect();
        batch.apply_fates(&fates)?;
        Ok(batch)
    }
}

// ----- load -------------------------------------------------------------------------------

async fn load(ctx: &mut Ctx, client: &Client) -> anyhow::Result<()> {
    let invalid = invalid_items(ctx)?;
    let wopts = write_options(ctx);
    let mut per_entity = serde_json::Map::new();
    let mut backups = Vec::new();
    let tables: Vec<String> = {
        let mut t: Vec<String> = ctx
            .entities
            .iter()
            .map(|e| ctx.config.target.table(*e).to_owned())
            .collect();
        t.sort();
        t.dedup();
        t
    };
    if !ctx.args.dry_run {
        for t in &tables {
            ensure_table(client, &table_spec(t)).await?;
            let key = format!("backup:{t}");
            if ctx.config.migration.backup_before_load && !ctx.done(&key) {
                let info = backup_table(client, t, &ctx.data.join("backups"), 4).await?;
                println!(
                    "backup of {t}: {} items -> {}",
                    info.items,
                    info.path.display()
                );
                backups.push(serde_json::to_value(&info)?);
                ctx.phases().set(&key, json!(true))?;
            }
        }
    }
    for e in ctx.entities.clone() {
        let path = ctx.transformed(e);
        if !path.exists() {
            bail!("{} is missing: run --phase transform first", path.display());
        }
        let table = ctx.config.target.table(e).to_owned();
        let mut keys_map = std::collections::HashMap::new();
        for i in invalid.iter().filter(|i| i.entity == e.name()) {
            keys_map
                .entry(i.key.clone())
                .or_insert((i.check.clone(), i.reason.clone()));
        }
        let writer = ItemWriter::new(client.clone(), &table, keys(), wopts.clone());
        let sink = DynamoLoad::new(
            writer,
            MappingOptions::default(),
            JsonCheckpoint::new(&ctx.checkpoint, format!("load:{}", e.name())),
        );
        let stats_handle = sink.clone();
        let mut run = RunInfo::new(format!("s9_load_{}", e.name()));
        run.resume = ctx.args.resume;
        run.dry_run = ctx.args.dry_run;
        let t = Instant::now();
        let report = Pipeline::new(pq::ParquetExtract::open(e.name(), &path)?, sink)
            .transform(ExcludeInvalid { keys: keys_map })
            .transform(ItemCheck::new(keys(), MappingOptions::default()))
            .options(ctx.options(&format!("load-{}", e.name())))
            .run(&run)
            .await;
        let secs = t.elapsed().as_secs_f64();
        if ctx.args.dry_run {
            println!(
                "[dry run] would write {} items to {table} ({} rejected); first items:",
                report.totals.loaded, report.totals.rejected
            );
            if let Some(b) = pq::read_all(&path)?.first() {
                for it in
                    items_from_batch(&b.slice(0, b.num_rows().min(2)), &MappingOptions::default())
                        .into_iter()
                        .flatten()
                {
                    println!("  PutRequest {}", item_to_dynamo_json(&it));
                }
            }
        }
        let loaded_now: u64 = report
            .units
            .iter()
            .filter(|u| u.status == UnitStatus::Completed)
            .map(|u| u.loaded)
            .sum();
        per_entity.insert(
            e.name().into(),
            json!({
                "table": table,
                "status": report.status.as_str(),
                "read": report.totals.read,
                "loaded": report.totals.loaded,
                "rejected": report.totals.rejected,
                "rejected_by_reason": report.totals.rejected_by_reason,
                "units": report.units.len(),
                "units_resumed": report.units.iter().filter(|u| u.status == UnitStatus::Resumed).count(),
                "seconds": secs,
                "items_per_s": if secs > 0.0 { loaded_now as f64 / secs } else { 0.0 },
                "writes": stats_handle.stats(),
                "dry_run": ctx.args.dry_run,
            }),
        );
        let ok = report.succeeded() || report.status == RunStatus::DryRun;
        ctx.record(&format!("load {}", e.name()), report);
        if !ok {
            break;
        }
    }
    let load_report = json!({
        "generated_at": chrono::Utc::now().to_rfc3339(),
        "options": wopts,
        "backups": backups,
        "entities": per_entity,
    });
    write_atomic(
        &ctx.reports.join("load_report.json"),
        &serde_json::to_vec_pretty(&load_report)?,
    )?;
    ctx.extra
        .insert("load".into(), load_report["entities"].clone());
    Ok(())
}

// ----- verify -----------------------------------------------------------------------------

async fn verify(ctx: &mut Ctx, client: &Client) -> anyhow::Result<()> {
    let invalid = invalid_items(ctx)?;
    let mut counts = serde_json::Map::new();
    let mut samples = serde_json::Map::new();
    let mut ok = true;
    let mut rng = fastrand::Rng::with_seed(ctx.args.seed);
    for e in ctx.entities.clone() {
        let table = ctx.config.target.table(e).to_owned();
        let source = pq::file_rows(&ctx.extracted(e.name()))?;
        let bad: HashSet<&str> = invalid
            .iter()
            .filter(|i| i.entity == e.name() && i.check != "duplicates")
            .map(|i| i.key.as_str())
            .collect();
        // Streamed: the keys of the valid items, and a reservoir sample of 100 of them.
        let mut unique: HashSet<String> = HashSet::new();
        let mut sample: Vec<etl_sink_dynamodb::Item> = Vec::new();
        let mut rows = 0u64;
        for it in checks::item_stream(&ctx.transformed(e))? {
            let it = it?;
            rows += 1;
            let k = item_key(&it);
            if bad.contains(k.as_str()) || !unique.insert(k) {
                continue;
            }
            if sample.len() < 100 {
                sample.push(it);
            } else {
                let j = rng.usize(..unique.len());
                if j < 100 {
                    sample[j] = it;
                }
            }
        }
        let expected = unique.len() as u64;
        // Every source row is accounted for: transformed + rejected by the transform.
        let transform_rejected = ctx
            .phases()
            .get(&format!("transform_rejected:{}", e.name()))?
            .and_then(|v| v.as_u64());
        let accounted = transform_rejected.is_none_or(|r| rows + r == source);
        let target = count_items(client, &table, Some(("EntityType", e.entity_type())), 4).await?;
        let matched = target == expected && accounted;
        ok &= matched;
        counts.insert(
            e.name().into(),
            json!({
                "source": source,
                "target": target,
                "rejected": source.saturating_sub(expected),
                "rejected_by_transform": transform_rejected,
                "rejected_by_validation": rows - expected,
                "match": matched,
            }),
        );
        // A random sample read back and compared attribute by attribute.
        let n = sample.len();
        let mut mismatches = Vec::new();
        for want in &sample {
            let key = keys().key_of(&table, want)?;
            match get_item(client, &table, key).await? {
                None => mismatches
                    .push(json!({"key": item_key(want), "diff": ["missing in the target"]})),
                Some(got) => {
                    let d = diff_items(want, &got);
                    if !d.is_empty() {
                        mismatches.push(json!({"key": item_key(want), "diff": d}));
                    }
                }
            }
        }
        ok &= mismatches.is_empty();
        samples.insert(e.name().into(), json!({"checked": n, "mismatched": mismatches.len(), "examples": mismatches.iter().take(10).collect::<Vec<_>>()}));
        for m in &mismatches {
            ctx.errors.push(format!("verify {}: {m}", e.name()));
        }
    }
    write_atomic(
        &ctx.reports.join("count_comparison.json"),
        &serde_json::to_vec_pretty(&counts)?,
    )?;
    let validation: Value = std::fs::read(ctx.reports.join("validation_report.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let integrity = json!({
        "generated_at": chrono::Utc::now().to_rfc3339(),
        "passed": ok,
        "counts_match": counts.values().all(|c| c["match"] == json!(true)),
        "foreign_keys": validation["checks"]["foreign_keys"],
        "required_fields": validation["checks"]["required_fields"],
        "types": validation["checks"]["types"],
        "business_rules": {"enums": validation["checks"]["enums"], "totals": validation["checks"]["totals"], "duplicates": validation["checks"]["duplicates"]},
        "sample_comparison": samples,
    });
    write_atomic(
        &ctx.reports.join("integrity_report.json"),
        &serde_json::to_vec_pretty(&integrity)?,
    )?;
    ctx.extra
        .insert("count_comparison".into(), Value::Object(counts));
    if !ok {
        ctx.ok = false;
        ctx.errors.push("verify: counts or sampled items differ (see count_comparison.json and integrity_report.json)".into());
    }
    Ok(())
}

// ----- reports ----------------------------------------------------------------------------

fn summary_of(u: &etl_core::UnitReport) -> UnitSummary {
    let mut s = UnitSummary::new(&u.name);
    s.read = u.read;
    s.loaded = u.loaded;
    s.rejected = u.rejected;
    s.filtered = u.filtered;
    s.rejected_by_reason = u.rejected_by_reason.clone();
    s.filtered_by_reason = u.filtered_by_reason.clone();
    s.counters = u.counters.clone();
    s.status = u.status;
    s.duration_s = u.duration_s;
    s.error = u.error.clone();
    s
}

fn write_reports(
    ctx: &mut Ctx,
    started: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<RunReport> {
    let mut units = Vec::new();
    for r in &ctx.runs {
        let phase = r.migration.trim_start_matches("s9_");
        for u in &r.units {
            let mut s = summary_of(u);
            s.name = format!("{}/{}", phase.split('_').next().unwrap_or(phase), u.name);
            units.push(s);
        }
    }
    let status = if ctx.ok {
        if ctx.args.dry_run {
            RunStatus::DryRun
        } else {
            RunStatus::Succeeded
        }
    } else {
        RunStatus::Failed
    };
    let mut report = RunReport::new(
        "s9_sales",
        &uuid::Uuid::now_v7().to_string(),
        status,
        &units,
        started,
    );
    report.validation = ctx.runs.iter().flat_map(|r| r.validation.clone()).collect();
    report.error = ctx
        .errors
        .iter()
        .find(|e| !e.starts_with("validate ") && !e.starts_with("verify "))
        .cloned();
    report.extra = std::mem::take(&mut ctx.extra);
    // rejects.csv: every sub-run's, in order.
    let mut rejects = String::from(etl_core::reject::REJECTS_CSV_HEADER);
    let mut log = String::new();
    let now = chrono::Utc::now().to_rfc3339();
    for r in &ctx.runs {
        let dir = ctx.reports.join("runs").join(run_dir(&r.migration));
        if let Ok(text) = std::fs::read_to_string(dir.join("rejects.csv")) {
            for line in text.lines().skip(1) {
                rejects.push_str(line);
                rejects.push('\n');
                log.push_str(&format!("{now} REJECT {} {line}\n", r.migration));
            }
        }
    }
    for e in &ctx.errors {
        log.push_str(&format!("{now} ERROR {e}\n"));
    }
    write_atomic(&ctx.reports.join("rejects.csv"), rejects.as_bytes())?;
    // The errors log accumulates over runs (phases run separately append to it).
    {
        use std::io::Write as _;
        let path = ctx.reports.join("migration_errors.log");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        f.write_all(log.as_bytes())?;
    }
    report.write(&ctx.reports, None)?;
    Ok(report)
}

fn run_dir(migration: &str) -> String {
    // s9_extract_buyers -> extract-buyers
    let rest = migration.trim_start_matches("s9_");
    match rest.split_once('_') {
        Some((phase, entity)) => format!("{phase}-{entity}"),
        None => rest.to_owned(),
    }
}

/// Paths of the bundled data.
pub fn data_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/data/s9"))
}
