//! The S9 sales migration to DynamoDB (seed 003) as steps of the run layer, recorded in
//! `<data-dir>/s9_sales.journal.json`:
//!
//! ```text
//! extract_<entity>... ─> transform ─> validate ─> backup ─> load ─> verify
//!  PgSource, one snapshot  S9Transform   checks      Scan ->     ItemCheck,   counts by Scan,
//!  -> extracted/*.parquet  (unknown code -> transformed/  DynamoLoad   a sample compared
//!  (resumes per key range)  = reject)    validation_    backups/    (resumes per  attribute by
//!                                        report.json    *.parquet   row group;    attribute
//!                                                                   undo: restore
//!                                                                   the backup)
//! ```
//!
//! Each phase is a group of steps: `--phase X` runs group X within the latest run
//! ([`Action::Group`]; with `--resume`, the steps not done and the load again, which skips
//! the row groups it wrote); `--full` (the default) runs them all; `--resume`,
//! `--rollback`, `--plan`, `--dry-run` (every step but the writes to DynamoDB), `--only
//! STEP|PHASE`, `-q`/`-v`, `--config` come from the shared CLI ([`CommonArgs`]). The run
//! layer writes `report.json` (with each step's peak RSS), `summary.txt`, `rejects.csv`
//! and `migration_errors.log` (step errors, failed checks, rejects, invalid items); the
//! seed's own files (`validation_report.json`, `load_report.json`, `count_comparison.json`,
//! `integrity_report.json`) are written by their steps next to them; `report.json`
//! `files` lists them all.
//!
//! `--entity buyers --offset N --limit M` (the seed's `--batch-size 100 --offset 100`):
//! rows N..N+M in key order ([`RowWindow`]), with their own artifacts and checkpoints
//! (`buyers.rows-100-200`), named in every report and in every step's fingerprint.
//!
//! With no arguments: a throwaway PostgreSQL loaded with generated data (`--sales N`,
//! default 100,000) and a dynalite, both stopped at exit. Separate phases (`--phase load`)
//! need persistent servers (`--database-url`/`--source-url`/`DATABASE_URL`,
//! `--dynamodb-endpoint` or the config file) to be meaningful.
//!
//! The entities, their items' attributes and the S9 columns copied into them, the code
//! tables and the item checks are `s9/mapping.toml` ([`transform::MAPPING`]).
//!
//! Tables: `salesTable` holds sales and their lines, `buyersTable` buyers, `producersTable`
//! producers (they may all be one table). Each has `PK`/`SK` and GSI1..GSI3 (`GSI<n>PK`,
//! `GSI<n>SK`); tables missing on the server are created on demand.
//!
//! Rollback: `--rollback` restores the backups the `backup` step took before the load
//! (the items added since are deleted); `--restore data/backups/<table>-<ts>.parquet`
//! does it for one file by hand. DynamoDB point-in-time recovery cannot do that: it always
//! restores into a *new* table (the seed's `restore-table-to-point-in-time
//! --target-table-name SalesTable-dev` onto the same name fails).

pub mod bench;
pub mod checks;
pub mod generate;
/// Parquet phase artifacts (the `etl-parquet` crate).
pub use etl_parquet as pq;
pub mod transform;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Parser;
use etl_core::cli::CommonArgs;
use etl_core::migration::{
    Action, FileJournal, Journal, Migration, RunOptions, Status, StepCx, StepKind, StepOutput,
    StepState,
};
use etl_core::{BoxError, Finding, Pipeline, RunReport, RunStatus, step_fn};
use etl_sink_dynamodb::admin::{TableSpec, ensure_table};
use etl_sink_dynamodb::check::{Invalid, verify_table};
use etl_sink_dynamodb::dynalite::Target;
use etl_sink_dynamodb::steps::{
    LoadConfig, backup_by_hand, backup_step, load_items_file, read_invalid, recorded_backups,
    restore_by_hand, undo_from_backups, validation_output,
};
use etl_sink_dynamodb::{ItemWriter, JsonCheckpoint, KeySchema, WriteOptions};
use etl_source_postgres::{
    Entity as PgEntity, Filter, Key, PgSource, PgSourceOptions, RowWindow, ServerConfig,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use transform::{Entity, Lookups, S9Transform};

/// The migration's name: the journal is `<data-dir>/s9_sales.journal.json`.
pub const MIGRATION: &str = "s9_sales";

/// `cargo run --example s9_sales -- [OPTIONS]`.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "s9_sales",
    version,
    about = "Migrate the S9 sales system (PostgreSQL) to DynamoDB, phase by phase",
    mut_arg("database_url", |a| a
        .visible_alias("source-url")
        .help("S9 PostgreSQL URL (else the config's `source`, else a throwaway cluster with generated data); never printed")),
    mut_arg("report_dir", |a| a.default_value("data/reports")),
    mut_arg("dry_run", |a| a.help(
        "Everything but the writes to DynamoDB: extract, transform and validate write their \
         local artifacts, the load prints what it would write; no journal is written")),
    mut_arg("rollback", |a| a.help(
        "Undo the last run: the DynamoDB tables are restored from the backups taken before \
         its load (the items added since are deleted)")),
    mut_arg("config", |a| a.help(
        "The seed's JSON config (`source`, `target`, `migration`) or a TOML/JSON file of long \
         option names; `${ENV_VAR}` (e.g. `${DB_PASSWORD}`) is replaced from the environment")),
)]
pub struct Args {
    /// Options every ferry binary takes.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Run one phase's steps (a group) within the latest run (with --resume: those not
    /// done yet; the load then skips the row groups it wrote): extract (S9 ->
    /// extracted/*.parquet), transform (-> transformed/*.parquet), validate
    /// (validation_report.json), load (backup and load into DynamoDB), verify (counts and
    /// a sample).
    #[arg(long, value_parser = ["extract", "transform", "validate", "load", "verify"],
          conflicts_with_all = ["full", "rollback", "only", "plan"])]
    pub phase: Option<String>,
    /// Run every phase (the default when neither --phase nor --restore is given).
    #[arg(long)]
    pub full: bool,
    /// Only this entity (sales include their lines, producers their certifications).
    #[arg(long, value_enum)]
    pub entity: Option<Entity>,
    /// DynamoDB endpoint (else the config's `target.endpoint`, else a local dynalite).
    #[arg(long, value_name = "URL")]
    pub dynamodb_endpoint: Option<String>,
    /// Where extracted/, transformed/, backups/, .checkpoint.json (key ranges and row
    /// groups written) and the run journal s9_sales.journal.json live.
    #[arg(long, value_name = "DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Restore a backup file into its table (and delete items added since); then exit
    /// unless --phase or --full is given.
    #[arg(long, value_name = "BACKUP")]
    pub restore: Option<PathBuf>,
    /// Back up this DynamoDB table (repeatable; the seed's `utils/backup.py --table`) into
    /// `<data-dir>/backups/<table>-<time>.parquet` (what --restore takes), then exit.
    #[arg(long = "backup", value_name = "TABLE", conflicts_with_all = ["restore", "phase", "full"])]
    pub backup_tables: Vec<String>,
    /// Sales to generate for the throwaway source.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub sales: u32,
    /// Generator seed (also the verify sample's).
    #[arg(long, default_value_t = 9)]
    pub seed: u64,
    /// Extract only sales (and their lines) matching `column OP value` (bound, never pasted).
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    /// Incremental: only sales (and their lines) updated after this timestamp.
    #[arg(long, value_name = "TIMESTAMP")]
    pub since: Option<String>,
    /// A window of the --entity (the seed's `--entity buyers --batch-size 100 --offset
    /// 100`): skip the first N rows in key order (after --filter and --since). Its
    /// artifacts, checkpoints and reports are the window's own (`buyers.rows-100-200`).
    #[arg(long, value_name = "N", requires = "entity")]
    pub offset: Option<u64>,
    /// The window's length in rows (default with --offset: --batch-size, as in the seed).
    #[arg(long, value_name = "M", requires = "entity")]
    pub limit: Option<u64>,
    /// BatchWriteItem calls in flight in all (default: the config's `migration.concurrency`, 32).
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
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
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The S9 database.
    pub source: Option<ServerConfig>,
    /// DynamoDB.
    pub target: TargetConfig,
    /// Batching, retries, backup and errors of the load.
    pub migration: LoadConfig,
}

/// `target` of the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
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

/// The spec of a target table: `PK`/`SK` and GSI1..GSI3 (`GSI<n>PK`, `GSI<n>SK`).
pub fn table_spec(name: &str) -> TableSpec {
    TableSpec::single_table(name, 3)
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    /// The run layer's report (`report.json`).
    pub report: RunReport,
    /// Whether it succeeded (a dry run and a rollback included).
    pub ok: bool,
}

/// The S9 source: one snapshot for every extract step of an invocation.
struct Source {
    pg: PgSource,
    generated: Option<Value>,
    _local: Option<etl_testkit::TempPostgres>,
}

/// What every step sees: the options, the config, and the servers, started on first use
/// (`--plan`, `--phase load` or `--rollback` start no PostgreSQL).
struct S9 {
    args: Args,
    config: Config,
    entities: Vec<Entity>,
    /// `--offset`/`--limit` (the limit defaults to `--batch-size`, as in the seed).
    window: Option<RowWindow>,
    data: PathBuf,
    checkpoint: PathBuf,
    source: OnceCell<Source>,
    dynamo: Target,
    /// The transformed files the load reads, checked against the row groups it recorded.
    inputs: pq::InputGuard,
}

impl S9 {
    async fn new(args: Args) -> anyhow::Result<Self> {
        let config: Config = match &args.common.config {
            Some(p) => etl_core::load_config(p)
                .with_context(|| format!("reading config {}", p.display()))?,
            None => Config::default(),
        };
        if args.filter.is_some() && args.entity.is_some_and(|e| e != Entity::Sales) {
            anyhow::bail!(
                "--filter selects sales (and their lines) only; it cannot filter --entity {:?}: drop --filter, or use --entity sales",
                args.entity.expect("checked")
            );
        }
        let data = args.data_dir.clone();
        // An endpoint (a local server) when given; else, with the seed's config file, AWS
        // with the standard credential chain (environment, shared profile, SSO, web
        // identity, container, instance); else a throwaway dynalite.
        let endpoint = (args.dynamodb_endpoint.clone()).or(config.target.endpoint.clone());
        let mut dynamo = Target::new(endpoint.clone(), &config.target.region, false);
        if endpoint.is_none() && args.common.config.is_some() {
            let conf = aws_sdk_config(&config.target.region).await;
            dynamo =
                dynamo.with_aws_client(etl_sink_dynamodb::aws_sdk_dynamodb::Client::new(&conf));
        }
        Ok(S9 {
            entities: match args.entity {
                None => Entity::ALL.to_vec(),
                Some(Entity::Sales) => vec![Entity::Sales, Entity::SaleLines],
                Some(e) => vec![e],
            },
            window: RowWindow::new(args.offset, args.limit, args.common.batch_size as u64),
            checkpoint: data.join(".checkpoint.json"),
            inputs: pq::InputGuard::new(data.join(".checkpoint.json")),
            data,
            config,
            args,
            source: OnceCell::new(),
            dynamo,
        })
    }

    /// What names an artifact of `name` (files, checkpoint scopes): `buyers`, or for a
    /// window `buyers.rows-100-200`.
    fn stem(&self, name: &str) -> String {
        self.window
            .map_or_else(|| name.to_owned(), |w| w.stem(name))
    }

    /// The rows this run selects (every step's fingerprint: `--resume` goes on only with
    /// the same window, filter and since).
    fn selection(&self) -> String {
        let (a, w) = (&self.args, self.window.map(|w| w.to_string()));
        let (f, since) = (a.filter.as_deref(), a.since.as_deref());
        let (f, since) = (f.unwrap_or("-"), since.unwrap_or("-"));
        format!(
            "{}; filter {f}; since {since}",
            w.as_deref().unwrap_or("all rows")
        )
    }

    /// The window for the reports (`null` without one), also in `report.json`.
    fn window_report(&self, cx: &StepCx) -> Value {
        let w = self.window_json();
        cx.set_extra("window", w.clone());
        w
    }

    fn window_json(&self) -> Value {
        let e = self.entities[0];
        self.window
            .map_or(Value::Null, |w| w.report(e.name(), e.key()))
    }

    fn extracted(&self, name: &str) -> PathBuf {
        pq::parquet_path(&self.data.join("extracted"), &self.stem(name))
    }

    /// A transformed file of this run; missing: run the transform first.
    fn transformed(&self, e: Entity) -> anyhow::Result<PathBuf> {
        Ok(self.files_of("transformed", e.name(), true)?.remove(0))
    }

    /// The files of `name` in `dir` (`extracted`, `transformed`) for an entity this run
    /// does not select but needs (the buyers of sales): this run's, else the whole
    /// entity's, else every window of it.
    fn files_of(&self, dir: &str, name: &str, selected: bool) -> anyhow::Result<Vec<PathBuf>> {
        let (dir, this) = (self.data.join(dir), self.stem(name));
        let files = match selected {
            true => Some(pq::parquet_path(&dir, &this))
                .filter(|p| p.exists())
                .into_iter()
                .collect(),
            false => pq::files_of(&dir, name),
        };
        if files.is_empty() {
            bail!(
                "{} is missing: run --entity {name} (its earlier phases) first",
                dir.join(this).display()
            );
        }
        Ok(files)
    }

    /// The extract units: the selected entities, and the certifications with the producers.
    fn extract_names(&self) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = self.entities.iter().map(|e| e.name()).collect();
        if self.entities.contains(&Entity::Producers) {
            v.push("certifications");
        }
        v
    }

    /// The target tables of the selected entities.
    fn tables(&self) -> Vec<String> {
        let mut t: Vec<String> = (self.entities.iter())
            .map(|e| self.config.target.table(*e).to_owned())
            .collect();
        t.sort();
        t.dedup();
        t
    }

    fn options(&self, cx: &StepCx) -> etl_core::PipelineOptions {
        cx.pipeline_options(self.args.common.batch_size, 1)
    }

    fn write_options(&self) -> WriteOptions {
        self.config.migration.write_options(self.args.concurrency)
    }

    /// The S9 source (one exported snapshot), connected on first use; a throwaway
    /// cluster with generated data when no URL is given.
    async fn source(&self, cx: &StepCx) -> anyhow::Result<&PgSource> {
        let s = self.source.get_or_try_init(|| self.connect(cx)).await?;
        if let Some(g) = &s.generated {
            cx.set_extra("generated", g.clone());
        }
        Ok(&s.pg)
    }

    async fn connect(&self, cx: &StepCx) -> anyhow::Result<Source> {
        let given = (self.args.common.database_url.as_ref())
            .map(|s| s.expose().to_owned())
            .filter(|s| !s.trim().is_empty())
            .or_else(|| self.config.source.as_ref().map(ServerConfig::url));
        let generate = given.is_none();
        let (url, local) = etl_testkit::database_url_or_start(given.as_deref(), "s9").await?;
        let mut generated = None;
        if generate {
            // Our own throwaway cluster: the S9 schema with generated data.
            let opts = generate::GenOptions {
                sales: self.args.sales,
                seed: self.args.seed,
            };
            generated = Some(serde_json::to_value(
                generate::regenerate(&url, opts).await?,
            )?);
        }
        let options = PgSourceOptions {
            default_numeric_scale: 3,
            connect_timeout: self
                .config
                .source
                .as_ref()
                .and_then(ServerConfig::connect_timeout),
            ..Default::default()
        };
        let mut pg = (PgSource::connect_url(&url, 4, self.pg_entities(None)?, options).await)
            .context("point --database-url / --source-url (or DATABASE_URL) at the S9 database, or leave them unset to migrate generated data")?;
        if let Some(w) = self.window {
            let root = self.entities[0].name();
            let cp = JsonCheckpoint::new(&self.checkpoint, format!("window:{}", self.stem(root)));
            let bounds = w.bounds(&pg, root, &cp, &cx.run_id.to_string()).await?;
            cx.set_extra("window_keys", json!({"after": bounds.0, "upto": bounds.1}));
            pg = pg.with_entities(self.pg_entities(Some(bounds))?).await?;
        }
        Ok(Source {
            pg,
            generated,
            _local: local,
        })
    }

    /// The S9 tables and queries of the selected entities, split into key ranges; with a
    /// window's key bounds, the first entity holds the window's rows and the others
    /// (lines, certifications) follow it.
    fn pg_entities(
        &self,
        window: Option<(Option<Key>, Option<Key>)>,
    ) -> anyhow::Result<Vec<PgEntity>> {
        let table = |e: Entity| {
            let t = PgEntity::table(e.name(), e.table(), e.key());
            match (&window, Some(&e) == self.entities.first()) {
                (Some((after, upto)), true) => t.key_range(after.clone(), upto.clone()),
                _ => t,
            }
        };
        let mut sales = table(Entity::Sales);
        if let Some(f) = &self.args.filter {
            sales = sales.filter(f.parse::<Filter>()?);
        }
        if let Some(s) = &self.args.since {
            sales = sales.since("data_atualizacao", s.clone());
        }
        let mut entities = Vec::new();
        for &e in &self.entities {
            let ent = match e {
                Entity::Sales => sales.clone(),
                // Lines follow their sale: the sales' filter and --since select them.
                Entity::SaleLines => table(e).following(&sales, "id_venda"),
                _ => table(e),
            };
            entities.push(ent.split_every(self.args.extract_unit_keys));
        }
        if self.entities.contains(&Entity::Producers) {
            let c = PgEntity::table("certifications", "certificacoes", "id_certificacao");
            let c = c.following(&table(Entity::Producers), "id_produtor");
            entities.push(c.split_every(self.args.extract_unit_keys));
        }
        Ok(entities)
    }

    /// What `--phase` (a group of steps within the latest run) and the shared flags ask.
    fn run_options(&self) -> RunOptions {
        let common = &self.args.common;
        let action = match &self.args.phase {
            Some(p) if !common.dry_run => Action::Group {
                group: p.clone(),
                resume: common.resume,
            },
            _ => common.action(),
        };
        RunOptions {
            action,
            target: Some(self.dynamo.describe(&self.tables())),
            ..common.run_options()
        }
    }

    /// Before anything runs: refuse a `--resume` whose load would continue over a
    /// transformed file that changed since (exit 2; [`pq::InputGuard`]).
    async fn check_resume(&self, journal: &FileJournal) -> anyhow::Result<()> {
        let common = &self.args.common;
        let latest = journal.latest(MIGRATION).await?;
        if !common.resume || common.dry_run {
            return Ok(());
        }
        // A resume goes on with the rows the run started with (window, filter, since): the
        // fingerprint of every step it touched, a killed one too.
        let (now, run) = (self.selection(), latest.as_ref().map(|r| r.run.run_id));
        let touched = latest
            .iter()
            .flat_map(|r| &r.steps)
            .filter(|s| s.attempts > 0);
        if let Some(then) = touched
            .filter_map(|s| s.fingerprint.as_ref())
            .find(|f| **f != now)
        {
            let run = run.map(|r| r.to_string()).unwrap_or_default();
            let why = format!(
                "--resume: the unfinished run {run} selected {then}; this invocation selects {now}: give it the same --entity, --offset/--limit, --filter and --since"
            );
            return Err(etl_core::Error::Refused(why).into());
        }
        let resumes_load = match self.args.phase.as_deref() {
            Some(p) => p == "load",
            None => (latest.and_then(|r| r.step("load").cloned()))
                .is_some_and(|s| s.attempts > 0 && s.state != StepState::Done),
        };
        for e in self.entities.iter().filter(|_| resumes_load) {
            let stem = self.stem(e.name());
            let path = (self.data.join("transformed")).join(format!("{stem}.parquet"));
            self.inputs.check_recorded(&path, &format!("load:{stem}"))?;
        }
        Ok(())
    }
}

// ----- the migration ----------------------------------------------------------------------

type Step = etl_core::migration::Step<S9>;

/// The steps of the selected entities, each in its phase's group; a dry run of one phase
/// (`--phase load --dry-run`) holds that phase only.
fn migration(c: &S9) -> Migration<S9> {
    let extract = (c.extract_names().into_iter()).map(|name| {
        Step::new(format!("extract_{name}"), StepKind::Export, move |c, cx| {
            Box::pin(async move { Ok(extract(c, cx, name).await?) })
        })
        .group("extract")
        .in_dry_run()
        .describe(format!(
            "reads {name} from S9 (one snapshot) into extracted/{name}.parquet, key range by key range"
        ))
    });
    let load = Step::new("load", StepKind::Load, step_fn!(load))
        .group("load")
        .in_dry_run()
        .resumes_itself()
        .describe(
            "writes the valid items with BatchWriteItem, row group by row group (load_report.json)",
        );
    let load = match c.config.migration.backup_before_load {
        true => load.undo(|c, cx| {
            Box::pin(async move {
                let client = c.dynamo.client().await?;
                undo_from_backups(client, cx, "backup", c.write_options()).await
            })
        }),
        false => load.irreversible(
            "migration.backupBeforeLoad is false: no backup was taken before the load",
        ),
    };
    let dry_phase = c.args.phase.as_deref().filter(|_| c.args.common.dry_run);
    Migration::new(MIGRATION)
        .restart_unfinished()
        .errors_log("migration_errors.log")
        .steps(extract.chain([
            Step::new("transform", StepKind::Prepare, step_fn!(transform))
                .group("transform")
                .in_dry_run()
                .describe("maps the extracted rows to DynamoDB items in transformed/*.parquet (unknown codes are rejected)"),
            Step::new("validate", StepKind::Gate, step_fn!(validate))
                .group("validate")
                .in_dry_run()
                .describe("checks required fields, types, enums, keys, foreign keys, totals, duplicates (validation_report.json)"),
            Step::new("backup", StepKind::Backup, step_fn!(backup))
                .group("load")
                .describe("creates missing tables and scans each target table into backups/<table>-<ts>.parquet"),
            load,
            Step::new("verify", StepKind::PostSwitch, step_fn!(verify))
                .group("verify")
                .describe("compares counts by Scan and a random sample attribute by attribute (count_comparison.json, integrity_report.json)"),
        ]).filter(|s| dry_phase.is_none_or(|p| s.group_name() == Some(p)))
        .map(|s| s.fingerprint(c.selection())))
}

/// Parse the process arguments and run; the exit code says whether it succeeded (2: an
/// error or a refusal before anything ran).
pub async fn main_entry() -> std::process::ExitCode {
    crate::common::run_main(async {
        let args: Args = etl_core::cli::parse_args();
        if args.common.plan {
            etl_core::cli::init_tracing(args.common.verbosity());
            print!("{}", plan(args).await?);
            return Ok(std::process::ExitCode::SUCCESS);
        }
        // The seed's `data/reports/migration.log`: everything logged, appended run after run.
        let dir = args.common.report_dir.clone();
        crate::common::init_logging(&dir.join("migration.log"), args.common.verbosity())?;
        let o = run(args).await?;
        crate::common::print_report(&o.report, &dir);
        Ok(crate::common::exit_code(o.report.status))
    })
    .await
}

/// The AWS configuration of `region` from the standard chain (`aws-config`): credentials
/// from the environment, the shared profile files (`AWS_PROFILE`), SSO, web identity,
/// container or instance credentials, in that order. Instance metadata is asked for only
/// when nothing before it answers (and never when `AWS_EC2_METADATA_DISABLED=true`).
pub async fn aws_sdk_config(region: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .load()
        .await
}

/// The steps with their recorded states and what the next invocation would do (`--plan`).
pub async fn plan(args: Args) -> anyhow::Result<Status> {
    let c = S9::new(args).await?;
    Ok(migration(&c).status(&FileJournal::new(&c.data)).await?)
}

/// Run the migration as `args` say.
pub async fn run(args: Args) -> anyhow::Result<Outcome> {
    let started = chrono::Utc::now();
    if args.bench {
        let lines = bench::bench(&args).await?;
        let mut report = RunReport::new("s9_bench", "bench", RunStatus::Succeeded, &[], started);
        report.extra.insert("bench".into(), Value::Array(lines));
        return Ok(Outcome { report, ok: true });
    }
    let c = S9::new(args).await?;
    let reports = &c.args.common.report_dir;
    for d in [&c.data, reports] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let journal = FileJournal::new(&c.data);
    let done = |action: &str, key: &str, details: Value| -> anyhow::Result<Outcome> {
        let mut report = RunReport::new(MIGRATION, action, RunStatus::Succeeded, &[], started);
        report.extra.insert(key.into(), details);
        report.write(reports, None)?;
        Ok(Outcome { report, ok: true })
    };
    let (tables, backups) = (&c.args.backup_tables, c.data.join("backups"));
    if !tables.is_empty() {
        let client = c.dynamo.client().await?;
        let infos = backup_by_hand(client, &journal, MIGRATION, tables, &backups).await?;
        return done("backup", "backups", infos);
    }
    if let Some(backup) = &c.args.restore {
        let (client, wopts) = (c.dynamo.client().await?, c.write_options());
        let info = restore_by_hand(client, &journal, MIGRATION, backup, wopts).await?;
        if c.args.phase.is_none() && !c.args.full {
            return done("restore", "restore", serde_json::to_value(&info)?);
        }
    }
    c.check_resume(&journal).await?;
    if c.dynamo.is_throwaway() {
        tracing::warn!("target: {}", c.dynamo.describe(&c.tables()));
    }
    let report = (migration(&c).execute(&c, &journal, &c.run_options())).await?;
    let ok = report.status != RunStatus::Failed;
    Ok(Outcome { report, ok })
}

// ----- the steps --------------------------------------------------------------------------

/// One part file per key range, each recorded when written: a killed extract resumes at
/// the first range not written; the parts are then joined into extracted/<name>.parquet.
/// In a dry run too: the artifacts are local (the dry run spares DynamoDB).
async fn extract(c: &S9, cx: &StepCx, name: &'static str) -> anyhow::Result<StepOutput> {
    let src = c.source(cx).await?.only(name)?;
    c.window_report(cx);
    let scope = format!("extract-units:{}", c.stem(name));
    let checkpoint = JsonCheckpoint::new(&c.checkpoint, scope);
    let mut run = cx.run_info();
    run.dry_run = false;
    let out = c.extracted(name);
    let (report, rows) = pq::extract_to_file(src, &out, checkpoint, c.options(cx), &run).await?;
    let details = rows.map_or(Value::Null, |rows| json!({ "rows": rows, "file": out }));
    Ok(StepOutput::from_pipeline(report).with_details(details))
}

/// The rows other entities' transforms look up (buyers, producers, certifications).
fn lookups(c: &S9) -> anyhow::Result<Lookups> {
    let mut l = Lookups::default();
    let has = |e| c.entities.contains(&e);
    let (sales, producers) = (has(Entity::Sales), has(Entity::Producers));
    for (name, e) in [
        ("buyers", Some(Entity::Buyers)),
        ("producers", Some(Entity::Producers)),
    ]
    .into_iter()
    .filter(|_| sales)
    .chain(Some(("certifications", None)).filter(|_| producers))
    {
        for path in &c.files_of("extracted", name, has(e.unwrap_or(Entity::Producers)))? {
            pq::read_all(path)?.iter().for_each(|b| l.add(e, b));
        }
    }
    Ok(l)
}

async fn transform(c: &S9, cx: &StepCx) -> anyhow::Result<StepOutput> {
    let lookups = Arc::new(lookups(c)?);
    let dir = c.data.join("transformed");
    let (mut reports, mut rejected) = (Vec::new(), serde_json::Map::new());
    for &e in &c.entities {
        let input = c.files_of("extracted", e.name(), true)?.remove(0);
        let url = c.config.target.invoice_file_url.clone();
        let mut run = cx.run_info();
        (run.dry_run, run.resume) = (false, false);
        let unit = format!("transform/{}", c.stem(e.name()));
        let report = Pipeline::new(
            pq::ParquetExtract::whole(&unit, &input)?,
            pq::ParquetLoad::new(&dir, &c.stem(e.name())),
        )
        .transform(S9Transform::new(e, lookups.clone(), url).into_transform())
        .options(c.options(cx))
        .run(&run)
        .await;
        rejected.insert(e.name().into(), json!(report.totals.rejected));
        let failed = report.status == RunStatus::Failed;
        reports.push(report);
        if failed {
            break;
        }
    }
    Ok(StepOutput::from_pipelines(reports).with_details(json!({ "rejected": rejected })))
}

async fn validate(c: &S9, cx: &StepCx) -> anyhow::Result<StepOutput> {
    let mut v = checks::validation();
    // The selected entities and their parents (foreign keys need them), parents first.
    for e in Entity::ALL {
        let selected = c.entities.contains(&e);
        if selected || c.entities.iter().any(|s| s.parents().contains(&e)) {
            for path in c.files_of("transformed", e.name(), selected)? {
                v.check_file(e.name(), &path)?;
            }
        }
    }
    let mut report = v.report();
    report["window"] = c.window_report(cx);
    cx.write_json("validation_report.json", &report)?;
    let invalid = c.data.join("transformed").join("invalid_items.json");
    let continue_on_error = c.config.migration.continue_on_error;
    Ok(validation_output(cx, &v, &invalid, continue_on_error)?)
}

fn invalid_items(c: &S9) -> etl_core::Result<Vec<Invalid>> {
    read_invalid(&c.data.join("transformed").join("invalid_items.json"))
}

async fn backup(c: &S9, _cx: &StepCx) -> Result<StepOutput, BoxError> {
    if !c.config.migration.backup_before_load {
        return Ok(StepOutput::message(
            "skipped: migration.backupBeforeLoad is false",
        ));
    }
    let specs: Vec<TableSpec> = c.tables().iter().map(|t| table_spec(t)).collect();
    backup_step(c.dynamo.client().await?, &specs, &c.data.join("backups")).await
}

async fn load(c: &S9, cx: &StepCx) -> anyhow::Result<StepOutput> {
    let invalid = invalid_items(c)?;
    let (wopts, client) = (c.write_options(), c.dynamo.client().await?);
    let mut inputs = Value::Null;
    if !cx.dry_run {
        for t in c.tables() {
            ensure_table(client, &table_spec(&t)).await?;
        }
        // Every entity's input checked (resume) or recorded afresh before any is loaded.
        let scopes = c
            .entities
            .iter()
            .map(|e| (e, format!("load:{}", c.stem(e.name()))));
        let inputs_of = scopes.map(|(e, s)| Ok((c.transformed(*e)?, s)));
        let all = inputs_of.collect::<anyhow::Result<Vec<_>>>()?;
        inputs = c.inputs.check_all(all, cx.resuming())?;
    }
    let (mut per_entity, mut reports) = (serde_json::Map::new(), Vec::new());
    for &e in &c.entities {
        let table = c.config.target.table(e);
        let invalid = invalid.iter().filter(|i| i.entity == e.name());
        let writer = ItemWriter::new(client.clone(), table, keys(), wopts.clone());
        let stem = c.stem(e.name());
        let (unit, scope) = (format!("load/{stem}"), format!("load:{stem}"));
        let checkpoint = JsonCheckpoint::new(&c.checkpoint, scope);
        let (path, options, run) = (c.transformed(e)?, c.options(cx), cx.run_info());
        let (report, summary) =
            load_items_file(&unit, &path, writer, checkpoint, invalid, options, &run).await?;
        per_entity.insert(e.name().into(), summary);
        let failed = report.status == RunStatus::Failed;
        reports.push(report);
        if failed {
            break;
        }
    }
    let load_report = json!({
        "generated_at": chrono::Utc::now().to_rfc3339(),
        "options": wopts,
        "window": c.window_report(cx),
        "backups": recorded_backups(cx, "backup"),
        "inputs": inputs,
        "entities": per_entity,
    });
    cx.write_json("load_report.json", &load_report)?;
    cx.set_extra("load", load_report["entities"].clone());
    Ok(StepOutput::from_pipelines(reports))
}

async fn verify(c: &S9, cx: &StepCx) -> anyhow::Result<StepOutput> {
    let invalid = invalid_items(c)?;
    let client = c.dynamo.client().await?;
    let transform = cx.details_of("transform").unwrap_or(Value::Null);
    let (mut counts, mut samples) = (serde_json::Map::new(), serde_json::Map::new());
    let mut mismatched = Vec::new();
    let mut rng = fastrand::Rng::with_seed(c.args.seed);
    for &e in &c.entities {
        let table = c.config.target.table(e).to_owned();
        let source = pq::file_rows(&c.extracted(e.name()))?;
        let bad: HashSet<&str> = (invalid.iter())
            .filter(|i| i.entity == e.name() && i.check != "duplicates")
            .map(|i| i.key.as_str())
            .collect();
        // Streamed: the valid items expected in the table, and a sample of 100 read back;
        // a window's items all (other windows share the table).
        let skip = |k: &str| bad.contains(k);
        let (path, filter) = (c.transformed(e)?, Some(("EntityType", e.entity_type())));
        let n = if c.window.is_some() { usize::MAX } else { 100 };
        let t = verify_table(client, &table, &path, &keys(), skip, filter, n, &mut rng).await?;
        let rejected = transform["rejected"][e.name()].as_u64();
        let (mut count, sample, problems) =
            t.comparison(e.name(), source, rejected, c.window.is_some());
        count["window"] = c.window_json();
        counts.insert(e.name().into(), count);
        samples.insert(e.name().into(), sample);
        mismatched.extend(problems);
    }
    let ok = mismatched.is_empty();
    cx.write_json("count_comparison.json", &counts)?;
    let validation: Value = std::fs::read(cx.report_dir.join("validation_report.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let checks = &validation["checks"];
    let integrity = json!({
        "generated_at": chrono::Utc::now().to_rfc3339(),
        "passed": ok,
        "counts_match": counts.values().all(|c| c["match"] == json!(true)),
        "foreign_keys": checks["foreign_keys"],
        "required_fields": checks["required_fields"],
        "types": checks["types"],
        "business_rules": {"enums": checks["enums"], "totals": checks["totals"], "duplicates": checks["duplicates"]},
        "sample_comparison": samples,
        "window": c.window_report(cx),
    });
    cx.write_json("integrity_report.json", &integrity)?;
    cx.set_extra("count_comparison", Value::Object(counts.clone()));
    mismatched.push("see count_comparison.json and integrity_report.json".into());
    let message = match ok {
        true => "counts and sampled items match".into(),
        false => mismatched.join("; "),
    };
    let finding = Finding::check("verify", ok, &message);
    let out = StepOutput::message(message).with_details(json!({ "counts": counts }));
    Ok(out.with_findings(vec![finding]))
}

/// Paths of the bundled data.
pub fn data_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/data/s9"))
}
