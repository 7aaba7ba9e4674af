//! The CITES migration (seed 000, and seed 001 with a scope) as steps of the run layer:
//!
//! ```text
//! preflight ─> backup ─> species ─> [test_load] ─> staging ─> load ─> indexes ─> gates
//!  always      pg_dump +  reference   seed 001: one    LIKE live  units   after the  SQL checks
//!  checks      copies     data        year first                  (files) load       of staging
//!   ─> switch ─> [reindex] ─> summary ─> analyze ─> (cleanup)
//!      rename     seed 001     rebuilt    stats       optional, irreversible (--cleanup)
//! ```
//!
//! Every step is recorded in the journal (tables `ferry_journal_*` of the target), so a
//! kill anywhere is finished by `--resume` (the load resumes per file, a post-switch step
//! runs again) and `--rollback` swaps the previous table back.

use std::path::PathBuf;

use anyhow::Context as _;
use chrono::{Datelike, Utc};
use etl_core::cli::{BackupArgs, CommonArgs};
use etl_core::migration::{Action, Migration, RunOptions, Step, StepCx, StepKind, StepOutput};
use etl_core::{CancellationToken, Pipeline, RunReport, step_fn};
use etl_sink_postgres::ident::TableName;
use etl_sink_postgres::journal::PgJournal;
use etl_sink_postgres::ledger::LedgerTables;
use etl_sink_postgres::proof::{self, ProofArgs, QueryCheck, TableStats};
use etl_sink_postgres::staging::{StagingTable, analyze, backup_tables, exists};
use etl_sink_postgres::steps::{ReplaceSteps, pg_dump_step, sql_step};
use etl_sink_postgres::{PgLoad, connect_options};
use etl_source_csv::CsvSource;
use etl_validate::sql::{SqlCheck, SqlChecks};
use etl_validate::{MatchRate, RejectRate, RowRules, Rule};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use super::schema::{
    self, IMPORT_ERRORS, LIVE, MIGRATION_LOG, SUMMARY, SUMMARY_ANNUAL, cites_schema,
};
use super::species::{Scope, SpeciesMap, SpeciesMapping, UNMATCHED, load_species};
use super::summary;

/// Options of the CITES migrations (shared by `cites_trade` and `cites_arctic`).
#[derive(clap::Args, Debug, Clone)]
pub struct CitesArgs {
    /// Common options.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Backup options.
    #[command(flatten)]
    pub backup: BackupArgs,
    /// Directory holding the release: every file matching --pattern in it is loaded, in
    /// natural order. Default: the bundled sample (examples/data/cites).
    #[arg(long, value_name = "DIR")]
    pub input: Option<PathBuf>,
    /// File-name pattern of the release files (`*` and `?` wildcards).
    #[arg(long, default_value = "trade_db_*.csv")]
    pub pattern: String,
    /// Species to add before mapping (`scientific_name,common_name`); existing names are
    /// kept as they are. Default with the bundled sample: its species list.
    #[arg(long, value_name = "FILE")]
    pub species_csv: Option<PathBuf>,
    /// Synonym pairs to add (`synonym,scientific_name`), used in both directions.
    #[arg(long, value_name = "FILE")]
    pub synonyms_csv: Option<PathBuf>,
    /// Load and validate the staging table, then stop before the switchover (the run is
    /// `stopped`; --switchover or --resume continues it).
    #[arg(long, conflicts_with_all = ["switchover", "cleanup"])]
    pub no_switchover: bool,
    /// Only switch a staging table that the last run loaded and validated and stopped
    /// before the switch (--no-switchover), then run the steps after the switch.
    #[arg(long, conflicts_with_all = ["cleanup", "resume", "rollback", "dry_run"])]
    pub switchover: bool,
    /// Drop the previous table kept by the switchover (and any leftover staging table).
    /// Irreversible: a run whose cleanup ran can no longer be rolled back.
    #[arg(long, conflicts_with_all = ["resume", "rollback", "dry_run"])]
    pub cleanup: bool,
    /// Smallest acceptable species match rate (matched / (matched + unmatched) rows).
    #[arg(long, default_value_t = 0.95, value_name = "RATE")]
    pub min_match_rate: f64,
    /// Largest acceptable reject rate (rejected / read).
    #[arg(long, default_value_t = 0.01, value_name = "RATE")]
    pub max_reject_rate: f64,
    /// Earliest valid trade year; earlier rows are rejected.
    #[arg(long, default_value_t = 1975)]
    pub min_year: i32,
    /// Latest valid trade year (default: the current year); later rows are rejected.
    #[arg(long)]
    pub max_year: Option<i32>,
    /// Skip the backups made before anything changes (the in-database copies and the
    /// `pg_dump` of the tables the run changes).
    #[arg(long)]
    pub no_backup: bool,
    /// How long the switchover may wait for its lock before giving up (PostgreSQL interval).
    #[arg(long, default_value = "10s")]
    pub lock_timeout: String,
    /// Rows the new table must hold (the seed's expected count, e.g. 27901926): the gates
    /// veto the switch when the load's `loaded` differs.
    #[arg(long, value_name = "N")]
    pub expect_rows: Option<u64>,
    /// Largest number of record Ids of the live table that the new release may lack (a
    /// gate); without it the dropped Ids are counted and sampled in the report only.
    #[arg(long, value_name = "N")]
    pub max_dropped_ids: Option<i64>,
    /// The proof queries before and after the switch.
    #[command(flatten)]
    pub proof: ProofArgs,
    /// Build the summaries from one scan of the new table after the switch instead of
    /// the groups the load computes while the rows stream through it.
    #[arg(long)]
    pub summary_scan: bool,
}

/// The seed's proof queries (000 §4.3 and the Polar Bear pipeline test of §6.3).
const POLAR_BEAR: &str =
    "(SELECT id FROM species WHERE scientific_name = 'Ursus maritimus' ORDER BY id LIMIT 1)";

/// The default proof queries: the seed's query by species and `year >= 2020`, and the
/// Polar Bear pipeline's summary query.
pub fn proof_queries() -> [QueryCheck; 2] {
    [
        QueryCheck::new(
            "species_recent_years",
            format!("SELECT * FROM {{table}} WHERE species_id = {POLAR_BEAR} AND year >= 2020"),
        ),
        QueryCheck::new(
            "polar_bear_summary",
            format!(
                "SELECT year, term, count(*), sum(quantity) FROM {{table}} WHERE species_id = {POLAR_BEAR} GROUP BY year, term"
            ),
        ),
    ]
}

/// A resolved CITES migration.
#[derive(Debug, Clone)]
pub struct CitesConfig {
    /// Migration name in the journal and the ledger (`cites_trade`, `cites_arctic`).
    pub migration: String,
    /// The options.
    pub args: CitesArgs,
    /// Release directory.
    pub input: PathBuf,
    /// Species list to add.
    pub species_csv: Option<PathBuf>,
    /// Rows in scope.
    pub scope: Scope,
    /// `REINDEX` the live table after the switchover (seed 001 step 4.3).
    pub reindex_after_switch: bool,
    /// Load and validate this year alone into staging first, and stop if it fails (seed
    /// 001's test load).
    pub test_year: Option<i32>,
}

impl CitesConfig {
    /// Resolve the options of `cites_trade`.
    pub fn from_args(migration: &str, args: CitesArgs) -> Self {
        let bundled = args.input.is_none();
        let input = args
            .input
            .clone()
            .unwrap_or_else(|| crate::common::bundled("cites"));
        let species_csv = args
            .species_csv
            .clone()
            .or_else(|| bundled.then(|| crate::common::bundled("cites/species.csv")));
        CitesConfig {
            migration: migration.to_owned(),
            args,
            input,
            species_csv,
            scope: Scope::default(),
            reindex_after_switch: false,
            test_year: None,
        }
    }

    fn live(&self) -> TableName {
        TableName::new(LIVE)
    }

    fn staging(&self) -> StagingTable {
        StagingTable::for_live(self.live())
    }

    fn ledger(&self) -> LedgerTables {
        LedgerTables {
            runs: TableName::new("ferry_runs"),
            units: TableName::new(MIGRATION_LOG),
            rejects: TableName::new(IMPORT_ERRORS),
        }
    }

    fn max_year(&self) -> i32 {
        self.args.max_year.unwrap_or_else(|| Utc::now().year())
    }

    /// What the flags ask the run layer to do; `target` says what the run writes to.
    pub fn run_options(&self, cancel: CancellationToken, target: String) -> RunOptions {
        let common = &self.args.common;
        let action = if self.args.cleanup {
            Action::Only(vec!["cleanup".into()])
        } else if self.args.switchover {
            Action::Continue("switch".into())
        } else {
            common.action()
        };
        RunOptions {
            action,
            stop_before: self.args.no_switchover.then(|| "switch".to_owned()),
            report_dir: common.report_dir.clone(),
            progress: common.progress(),
            cancel,
            target: Some(target),
            unit_retries: common.unit_retries,
            guard_formulas: common.guard_formulas,
            metrics: common.metrics(),
        }
    }
}

/// What the steps of a CITES migration share: the configuration and the target.
#[derive(Debug, Clone)]
pub struct Cites {
    /// The configuration.
    pub cfg: CitesConfig,
    /// The target database (never printed: see `etl_core::config::redact_url`).
    pub url: String,
}

impl Cites {
    async fn conn(&self) -> anyhow::Result<PgConnection> {
        PgConnection::connect_with(&connect_options(&self.url)?)
            .await
            .context("connecting to PostgreSQL (check --database-url / DATABASE_URL)")
    }
}

/// The steps of the CITES migration of `c`.
///
/// # Errors
/// The target URL does not parse.
pub fn migration(c: &Cites) -> anyhow::Result<Migration<Cites>> {
    let (cfg, opts) = (&c.cfg, connect_options(&c.url)?);
    let live = cfg.live();
    let replace = ReplaceSteps::new(opts.clone(), cfg.staging())
        .lock_timeout(cfg.args.lock_timeout.clone())
        .ledger(cfg.ledger())
        .after_rollback(format!("{}\nANALYZE {}", summary::rebuild(), live.sql()));
    let mut m = Migration::new(cfg.migration.clone())
        .restart_unfinished()
        .step(
            Step::new("preflight", StepKind::Preflight, step_fn!(preflight))
                .always()
                .in_dry_run()
                .describe("checks the tables in the way and records the live table's statistics"),
        )
        .steps((!cfg.args.no_backup).then(|| {
            let changed = CHANGED.map(TableName::new).to_vec();
            pg_dump_step("backup", &c.url, changed, cfg.args.backup.backup_dir.clone())
        }))
        .step(
            Step::new("copies", StepKind::Backup, step_fn!(copies))
                .describe("migration_stats_pre, and in-database copies of cites_trade_records and species_trade_summary"),
        )
        .step(
            Step::new("species", StepKind::Prepare, step_fn!(species))
                .describe("creates the migration's tables if missing, adds --species-csv and --synonyms-csv"),
        );
    if let Some(year) = cfg.test_year {
        m = m.step(
            Step::new("test_load", StepKind::Load, move |c: &Cites, cx| {
                Box::pin(async move { Ok(test_load(c, cx, year).await?) })
            })
            .in_dry_run()
            .describe(format!(
                "creates staging, loads and validates {year} alone (the seed's test load)"
            )),
        );
    }
    m = m
        .step(replace.staging())
        .step(
            Step::new("load", StepKind::Load, step_fn!(load))
                .in_dry_run()
                .describe("parses, types, maps species and COPYs every file (one transaction each with its log row and rejects); reject-rate and match-rate gates"),
        )
        .step(replace.indexes())
        .step(
            Step::new("gates", StepKind::Gate, step_fn!(gates))
                .describe("row count against the ledger, orphans, year range, required fields, duplicate Ids"),
        )
        .step(replace.switch());
    if cfg.reindex_after_switch {
        let sql = format!("REINDEX TABLE {}", live.sql());
        m = m.step(sql_step("reindex", StepKind::PostSwitch, opts.clone(), sql));
    }
    Ok(m.step(
        Step::new("summary", StepKind::PostSwitch, step_fn!(summary_step))
            .describe("rebuilds species_trade_summary and the seed's per-year species_trade_summary_annual (one transaction) from the load's rollups, or from a scan of the live table"),
    )
    .step(
        Step::new("smoke", StepKind::PostSwitch, step_fn!(smoke))
            .describe("the proof queries on the live table (the seed's post-switch test queries): rows and time"),
    )
    .step(
        Step::new("analyze", StepKind::PostSwitch, step_fn!(analyze_step))
            .describe("ANALYZE of the live table and its statistics after the switch"),
    )
    .step(replace.cleanup()))
}

async fn preflight(c: &Cites, cx: &StepCx) -> anyhow::Result<StepOutput> {
    cx.set_extra("input", json!(c.cfg.input.display().to_string()));
    let mut conn = c.conn().await?;
    let st = c.cfg.staging();
    let switching = !c.cfg.args.no_switchover && !cx.dry_run;
    if switching && cx.attempt == 1 && !c.cfg.args.switchover && st.states(&mut conn).await?.old {
        anyhow::bail!(
            "{} still holds the data replaced by the previous switchover: drop it with --cleanup \
             (or undo that switchover with --rollback) before loading a new release",
            st.old
        );
    }
    let pre = table_stats(&mut conn, &c.cfg.live()).await?;
    // The reference lists and every file's header, before anything is written.
    reference_lists(&c.cfg)?;
    let source = CsvSource::glob(cites_schema(), &c.cfg.input, &c.cfg.args.pattern);
    let units = source.check_headers()?;
    let input = units.iter().filter_map(|u| match u.size {
        Some(etl_core::SizeHint::Bytes(b)) => Some(b),
        _ => None,
    });
    let copies = match c.cfg.args.no_backup {
        true => vec![],
        false => vec![c.cfg.live(), TableName::new(SUMMARY)],
    };
    let disk = proof::disk_check(&mut conn, input.sum(), TABLE_PER_CSV_BYTE, &copies).await?;
    let files = units.len();
    Ok(
        StepOutput::message(format!("nothing in the way; {files} file headers fit"))
            .with_details(json!({ "pre_migration": pre, "files": files, "disk": disk })),
    )
}

/// Bytes of table and indexes per byte of CITES CSV: measured on 200 k generated rows
/// (`gen_cites --files 4 --rows-per-file 50000`): 31.0 MB of CSV became 54.7 MB of
/// `cites_trade_records` with its indexes (1.77 x).
const TABLE_PER_CSV_BYTE: f64 = 1.8;

/// Both summaries from the rollups the load of this run committed with its files, or,
/// when they do not reconcile with the ledger's row count, from one scan of the table.
async fn summary_step(c: &Cites, cx: &StepCx) -> anyhow::Result<StepOutput> {
    let mut conn = c.conn().await?;
    let ledger = c.cfg.ledger();
    let [by_year, ..] = summary::rollups();
    let counts = by_year.reconcile(&mut conn, &ledger, cx.run_id).await;
    let (sql, from) = match counts {
        Ok((Some(rolled), ledgered)) if rolled == ledgered => {
            (summary::from_rollups(cx.run_id), "rollups")
        }
        _ => (summary::rebuild(), "scan"),
    };
    let mut tx = conn.begin().await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let rows = counts.map(|(r, l)| json!({ "rollup_rows": r, "ledger_rows": l }));
    Ok(
        StepOutput::message(format!("rebuilt from the {from}")).with_details(
            json!({ "from": from, "counts": rows.unwrap_or_else(|e| json!(e.to_string())) }),
        ),
    )
}

async fn species(c: &Cites, _cx: &StepCx) -> anyhow::Result<StepOutput> {
    let mut conn = c.conn().await?;
    schema::ensure(&mut conn).await?;
    c.cfg.ledger().ensure(&mut conn).await?;
    let (species, synonyms) = reference_lists(&c.cfg)?;
    let added = schema::add_species(&mut conn, &species).await?;
    let syn = schema::add_synonyms(&mut conn, &synonyms).await?;
    Ok(
        StepOutput::message(format!("{added} species and {syn} synonyms added"))
            .with_details(json!({ "species_added": added, "synonyms_added": syn })),
    )
}

/// `(name, other name)` pairs read from a CSV file.
type Pairs = Vec<(String, String)>;

/// The species and synonym lists of the options.
fn reference_lists(cfg: &CitesConfig) -> anyhow::Result<(Pairs, Pairs)> {
    let species = match &cfg.species_csv {
        Some(p) => etl_source_csv::read_pairs(p)?,
        None => Vec::new(),
    };
    let synonyms = match &cfg.args.synonyms_csv {
        Some(p) => etl_source_csv::read_pairs(p)?,
        None => Vec::new(),
    };
    Ok((species, synonyms))
}

/// The tables a run changes: trade records and the summaries (replaced), species (added
/// to), listings (kept with them).
const CHANGED: [&str; 5] = [LIVE, SUMMARY, SUMMARY_ANNUAL, "species", "cites_listings"];

/// In-database copies (the instant rollback) of the live table and the summary, and the
/// seed's `migration_stats_pre`.
async fn copies(c: &Cites, cx: &StepCx) -> anyhow::Result<StepOutput> {
    let mut conn = c.conn().await?;
    let pre = stats_pre(c, cx, &mut conn).await?;
    if c.cfg.args.no_backup {
        let out = StepOutput::message("skipped (--no-backup)");
        return Ok(out.with_details(json!({ "stats_pre": pre })));
    }
    let stamp = Utc::now().format("%Y%m%d_%H%M%S_%3f").to_string();
    let tables = [c.cfg.live(), TableName::new(SUMMARY)];
    let copies = backup_tables(&mut conn, &tables, &stamp).await?;
    let tables: Vec<_> = copies
        .iter()
        .map(|(t, n)| json!({"table": t.to_string(), "rows": n}))
        .collect();
    Ok(StepOutput::message("backup tables written").with_details(json!({
        "tables": tables,
        "stats_pre": pre,
        "restore": "INSERT INTO cites_trade_records SELECT * FROM <backup table>, or --restore <the backup step's dir>",
    })))
}

/// The seed's `migration_stats_pre` (000 §1.2): the live table's figures before anything
/// changes, as a row of the table (per run) and `migration_stats_pre.csv`.
async fn stats_pre(c: &Cites, cx: &StepCx, conn: &mut PgConnection) -> anyhow::Result<TableStats> {
    let pre = table_stats(conn, &c.cfg.live()).await?;
    let (Some((_, species)), Some((_, min, max))) = (&pre.distinct, &pre.range) else {
        return Ok(pre);
    };
    let (min, max) = (min.map(|y| y as i32), max.map(|y| y as i32));
    schema::ensure(conn).await?;
    sqlx::query("INSERT INTO migration_stats_pre SELECT $1, $2, $3, $4, $5, $6, $7")
        .bind(cx.run_id)
        .bind(LIVE)
        .bind(pre.rows)
        .bind(species)
        .bind(min)
        .bind(max)
        .bind(pre.snapshot_time)
        .execute(&mut *conn)
        .await?;
    let opt = |v: Option<i32>| v.map(|v| v.to_string()).unwrap_or_default();
    let csv = format!(
        "table_name,record_count,unique_species,min_year,max_year,snapshot_time\n{LIVE},{},{species},{},{},{}\n",
        pre.rows,
        opt(min),
        opt(max),
        json!(pre.snapshot_time).as_str().unwrap_or_default()
    );
    std::fs::create_dir_all(&cx.report_dir)?;
    std::fs::write(cx.report_dir.join("migration_stats_pre.csv"), csv)?;
    cx.add_file("migration_stats_pre.csv");
    Ok(pre)
}

/// The seed-001 test load: one year into staging, validated; its figures stay in the
/// step (its units are not the run's: the full load reloads every file).
async fn test_load(c: &Cites, cx: &StepCx, year: i32) -> anyhow::Result<StepOutput> {
    let scope = Scope {
        year: Some(year),
        ..c.cfg.scope.clone()
    };
    // The test load recreates staging, so it always starts over: a run killed after some of
    // its units committed must not resume over the emptied table (the units would be
    // skipped as done and the table stay empty). Each attempt has its own pipeline run id,
    // so the ledger rows of an interrupted attempt are not taken for this one's.
    let mut run = cx.run_info();
    run.resume = false;
    run.run_id = match cx.attempt {
        1 => Uuid::new_v5(&cx.run_id, b"test_load"),
        n => Uuid::new_v5(&cx.run_id, format!("test_load:{n}").as_bytes()),
    };
    if !cx.dry_run {
        c.cfg.staging().create(&mut c.conn().await?).await?;
    }
    let dir = cx.report_dir.join(format!("test_{year}"));
    let (report, _) = run_pipeline(c, cx, scope, &run, dir, true).await?;
    let t = &report.totals;
    let out = StepOutput::message(format!(
        "test load of {year}: read {} = loaded {} + rejected {} + filtered {}",
        t.read, t.loaded, t.rejected, t.filtered
    ))
    .with_details(json!({ "year": year, "totals": report.totals, "status": report.status }))
    .with_findings(
        report
            .validation
            .iter()
            .map(|f| etl_core::Finding {
                check: format!("test_{year}:{}", f.check),
                ..f.clone()
            })
            .collect(),
    );
    if report.status == etl_core::RunStatus::Failed {
        anyhow::bail!(
            "the test load of {year} failed: {}; stopping before the full load",
            report.error.as_deref().unwrap_or("see its report")
        );
    }
    Ok(out)
}

async fn load(c: &Cites, cx: &StepCx) -> anyhow::Result<StepOutput> {
    let run = cx.run_info();
    let (report, extra) = run_pipeline(
        c,
        cx,
        c.cfg.scope.clone(),
        &run,
        cx.report_dir.clone(),
        false,
    )
    .await?;
    for (k, v) in extra {
        cx.set_extra(k, v);
    }
    cx.set_extra(
        "staging",
        json!({ "table": c.cfg.staging().staging.to_string(), "validated": report.succeeded() && !cx.dry_run }),
    );
    Ok(StepOutput::from_pipeline(report))
}

/// Build and run the CITES pipeline into staging; the report and the species-mapping
/// figures. `inline`: build the indexes and run the SQL checks inside the pipeline (the
/// test load); otherwise the `indexes` and `gates` steps do that.
async fn run_pipeline(
    c: &Cites,
    cx: &StepCx,
    scope: Scope,
    run: &etl_core::RunInfo,
    report_dir: PathBuf,
    inline: bool,
) -> anyhow::Result<(RunReport, serde_json::Map<String, Value>)> {
    let cfg = &c.cfg;
    let args = &cfg.args;
    let dry = cx.dry_run;
    let st = cfg.staging();
    let mut extra = serde_json::Map::new();
    let (species_list, synonyms) = reference_lists(cfg)?;
    let mut conn = c.conn().await?;
    let mut map = if exists(&mut conn, &TableName::new("species")).await? {
        load_species(&mut conn).await?
    } else {
        SpeciesMap::default()
    };
    if dry {
        // Nothing is written in a dry run: map the listed species as if they were added.
        for (name, _) in &species_list {
            map.insert_if_absent(name, Uuid::nil());
        }
        map.add_aliases(&synonyms);
    }
    if !map.ambiguous.is_empty() {
        extra.insert("ambiguous_species_names".into(), json!(map.ambiguous));
    }
    let mapping = std::sync::Arc::new(SpeciesMapping::new(map, scope));
    let source = CsvSource::glob(cites_schema(), &cfg.input, &args.pattern);
    let rules = RowRules::new(vec![
        Rule::int_range("Year", args.min_year as i64, cfg.max_year() as i64),
        Rule::one_of("Appendix", ["I", "II", "III", "N"]),
        Rule::required("Taxon"),
        Rule::required("Term"),
    ]);
    let mut load =
        PgLoad::new(connect_options(&c.url)?, st.staging.clone()).with_ledger(cfg.ledger());
    if inline {
        load = load.with_staging(st.clone());
    } else if !args.summary_scan {
        for r in summary::rollups() {
            load = load.with_rollup(r);
        }
    }
    let match_gate = MatchRate {
        name: "species_match_rate".into(),
        matched_counter: "species_matched".into(),
        unmatched_reason: UNMATCHED.into(),
        min: args.min_match_rate,
    };
    let mut options = cx.pipeline_options(args.common.batch_size, args.common.parallel);
    options.report_dir = Some(report_dir);
    let mut pipeline = Pipeline::new(source, load)
        .transform(rules)
        .transform_shared(mapping.clone())
        .validate(RejectRate {
            max: args.max_reject_rate,
        })
        .validate(match_gate.clone())
        .options(options);
    if !dry && inline {
        pipeline = pipeline.validate(sql_checks(c));
    }
    let report = pipeline.run(run).await;
    let unmatched = mapping.unmatched();
    let (matched, unmatched_rows, rate) = match_gate.rate(&report.totals);
    extra.insert(
        "species_mapping".into(),
        json!({
            "matched_rows": matched,
            "unmatched_rows": unmatched_rows,
            "match_rate": rate,
            "min_match_rate": args.min_match_rate,
            "unmatched_taxa": unmatched.len(),
            "unmatched_by_taxon": unmatched.iter().take(100).map(|(t, n)| json!({"taxon": t, "rows": n})).collect::<Vec<_>>(),
            "mapped_through_synonyms": mapping.map().via_alias,
        }),
    );
    Ok((report, extra))
}

/// The seed's checks of the staging table (000 §4): row count against the ledger, no
/// orphan species, years in range, required fields, no duplicate Ids.
fn sql_checks(c: &Cites) -> SqlChecks {
    let (cfg, s) = (&c.cfg, &c.cfg.staging().staging);
    SqlChecks::new(
        &c.url,
        vec![
            SqlCheck::row_count(s),
            SqlCheck::no_orphans(s, "species_id", &TableName::new("species"), "id"),
            SqlCheck::in_range(s, "year", cfg.args.min_year as i64, cfg.max_year() as i64),
            SqlCheck::not_null(s, "taxon"),
            SqlCheck::not_null(s, "term"),
            SqlCheck::not_null(s, "appendix"),
            SqlCheck::no_duplicates(s, &["record_id"]),
        ],
    )
}

/// The SQL gates on the indexed staging table, against the load's totals; the expected
/// row count; the Ids of the live table the release lacks; the proof queries timed on
/// staging and live (plans in the details).
async fn gates(c: &Cites, cx: &StepCx) -> anyhow::Result<StepOutput> {
    let args = &c.cfg.args;
    let totals = cx
        .pipeline_of("load")
        .map(|p| p.totals)
        .context("the load step left no totals in the journal; run the load again")?;
    let mut findings = sql_checks(c).run_all(&totals).await?;
    if let Some(n) = args.expect_rows {
        let msg = format!(
            "{} rows loaded, {n} expected (--expect-rows)",
            totals.loaded
        );
        findings.push(etl_core::Finding::check(
            "expected_rows",
            totals.loaded == n,
            msg,
        ));
    }
    let mut conn = c.conn().await?;
    let st = c.cfg.staging();
    let dropped = proof::dropped_keys(&mut conn, &st.live, &st.staging, &["record_id"], 20).await?;
    if let Some((n, sample)) = &dropped {
        let msg = format!(
            "{n} record Ids of {} are not in the release (sample: {})",
            st.live,
            sample.join(", ")
        );
        findings.push(match args.max_dropped_ids {
            Some(max) => etl_core::Finding::check(
                "dropped_ids",
                *n <= max,
                format!("{msg}; at most {max} allowed"),
            ),
            None if *n > 0 => etl_core::Finding::warn("dropped_ids", msg),
            None => etl_core::Finding::pass("dropped_ids", msg),
        });
    }
    let (proofs, timings) = (args.proof)
        .compare(&mut conn, &st.live, &st.staging, &proof_queries())
        .await?;
    findings.extend(proofs);
    let failed = findings.iter().filter(|f| f.vetoes()).count();
    Ok(
        StepOutput::message(format!("{} checks, {failed} failed", findings.len()))
            .with_details(json!({ "dropped_ids": dropped, "queries": timings }))
            .with_findings(findings),
    )
}

/// The proof queries against the new live table (000 §6.3, 001's post-switchover
/// checks): each must run; its rows and time are recorded.
async fn smoke(c: &Cites, _cx: &StepCx) -> anyhow::Result<StepOutput> {
    let mut conn = c.conn().await?;
    let results = (c.cfg.args.proof)
        .smoke(&mut conn, &c.cfg.live(), &proof_queries())
        .await?;
    let line = results
        .iter()
        .map(|r| format!("{} {} rows", r["query"].as_str().unwrap_or(""), r["rows"]))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(StepOutput::message(line).with_details(json!({ "smoke": results })))
}

async fn analyze_step(c: &Cites, cx: &StepCx) -> anyhow::Result<StepOutput> {
    let mut conn = c.conn().await?;
    analyze(&mut conn, &c.cfg.live()).await?;
    let post = table_stats(&mut conn, &c.cfg.live()).await?;
    let pre = cx.details_of("copies").map(|d| d["stats_pre"].clone());
    let pre: Option<TableStats> = pre.and_then(|p| serde_json::from_value(p).ok());
    // After the switch this only informs: a release may hold fewer records.
    let finding = pre.and_then(|pre| post.comparison(&pre, "stats_post_vs_pre"));
    Ok(StepOutput::message("analyzed")
        .with_details(json!({ "post_migration": post }))
        .with_findings(finding.into_iter().collect()))
}

/// Run the migration as the options say (`--plan` is handled by [`run_cli`]); the report is
/// written to `--report-dir` and returned.
///
/// # Errors
/// Refusals before anything changes (nothing to resume, `--switchover` without a
/// validated staging table, an unfinished run past its switch), and journal errors.
pub async fn run(
    cfg: &CitesConfig,
    url: &str,
    cancel: CancellationToken,
) -> anyhow::Result<RunReport> {
    let target = format!("PostgreSQL {}", etl_core::config::redact_url(url));
    run_on(cfg, url, target, cancel).await
}

/// [`run`], saying in the report what `url` is (`target`).
///
/// # Errors
/// As [`run`].
pub async fn run_on(
    cfg: &CitesConfig,
    url: &str,
    target: String,
    cancel: CancellationToken,
) -> anyhow::Result<RunReport> {
    let c = Cites {
        cfg: cfg.clone(),
        url: url.to_owned(),
    };
    let journal = PgJournal::new(connect_options(url)?);
    let opts = cfg.run_options(cancel, target);
    Ok(migration(&c)?.execute(&c, &journal, &opts).await?)
}

/// The whole binary: `--plan` prints the steps and states; anything else runs.
///
/// # Errors
/// As [`run`].
pub async fn run_cli(
    cfg: &CitesConfig,
    db: &crate::common::Database,
) -> anyhow::Result<std::process::ExitCode> {
    let journal = PgJournal::new(connect_options(&db.url)?);
    let c = Cites {
        cfg: cfg.clone(),
        url: db.url.clone(),
    };
    if cfg.args.common.plan {
        print!("{}", migration(&c)?.status(&journal).await?);
        return Ok(std::process::ExitCode::SUCCESS);
    }
    if let Some(dir) = &cfg.args.backup.restore {
        return crate::common::restore(&migration(&c)?, &journal, &db.url, dir).await;
    }
    let cancel = etl_core::cli::cancel_on_ctrl_c();
    let report = run_on(cfg, &db.url, db.target(), cancel).await?;
    crate::common::print_report(&report, &cfg.args.common.report_dir);
    Ok(crate::common::exit_code(report.status))
}

/// Records, species, and the range of years of `table`.
async fn table_stats(conn: &mut PgConnection, table: &TableName) -> anyhow::Result<TableStats> {
    Ok(TableStats::take(conn, table, Some("species_id"), Some("year")).await?)
}
