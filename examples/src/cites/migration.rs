//! The CITES migration plan (seed 000, and seed 001 with a scope): backup, staging,
//! load, species mapping, validation gates, atomic switchover, summary rebuild; and the
//! `--switchover`, `--rollback` and `--cleanup` actions.

use std::path::PathBuf;

use anyhow::Context as _;
use chrono::{Datelike, Utc};
use etl_core::cli::CommonArgs;
use etl_core::{
    CancellationToken, Finding, Pipeline, PipelineOptions, RejectSpool, RunInfo, RunReport,
    RunStatus, RunTotals, UnitReport,
};
use etl_sink_postgres::ident::TableName;
use etl_sink_postgres::ledger::LedgerTables;
use etl_sink_postgres::staging::{StagingTable, analyze, backup_tables, count_rows, exists};
use etl_sink_postgres::{PgLoad, connect_options};
use etl_source_csv::CsvSource;
use etl_validate::sql::{SqlCheck, SqlChecks};
use etl_validate::{MatchRate, RejectRate, RowRules, Rule};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

use super::schema::{self, IMPORT_ERRORS, LIVE, MIGRATION_LOG, SUMMARY, cites_schema};
use super::species::{Scope, SpeciesMap, SpeciesMapping, UNMATCHED};

/// Options of the CITES migrations (shared by `cites_trade` and `cites_arctic`).
#[derive(clap::Args, Debug, Clone)]
pub struct CitesArgs {
    /// Common options.
    #[command(flatten)]
    pub common: CommonArgs,
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
    /// Load and validate the staging table, then stop before the switchover.
    #[arg(long, conflicts_with_all = ["switchover", "rollback", "cleanup"])]
    pub no_switchover: bool,
    /// Only switch an already loaded and validated staging table into production.
    #[arg(long, conflicts_with_all = ["rollback", "cleanup"])]
    pub switchover: bool,
    /// Undo the last switchover: the previous table becomes live again.
    #[arg(long, conflicts_with = "cleanup")]
    pub rollback: bool,
    /// Drop the previous table kept by the switchover (and any leftover staging table).
    #[arg(long)]
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
    /// Skip the backup tables made before anything changes.
    #[arg(long)]
    pub no_backup: bool,
    /// How long the switchover may wait for its lock before giving up (PostgreSQL interval).
    #[arg(long, default_value = "10s")]
    pub lock_timeout: String,
}

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Load into staging, validate, and switch if `switch`.
    Load {
        /// Switch after a successful validation.
        switch: bool,
    },
    /// Switch a validated staging table.
    Switchover,
    /// Undo the last switchover.
    Rollback,
    /// Drop the old and staging tables.
    Cleanup,
}

/// A resolved CITES migration.
#[derive(Debug, Clone)]
pub struct CitesConfig {
    /// Migration name in the ledger (`cites_trade`, `cites_arctic`).
    pub migration: String,
    /// The options.
    pub args: CitesArgs,
    /// Release directory.
    pub input: PathBuf,
    /// Species list to add.
    pub species_csv: Option<PathBuf>,
    /// Rows in scope.
    pub scope: Scope,
    /// What to do.
    pub action: Action,
    /// `REINDEX` the live table after the switchover (seed 001 step 4.3).
    pub reindex_after_switch: bool,
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
        let action = if args.switchover {
            Action::Switchover
        } else if args.rollback {
            Action::Rollback
        } else if args.cleanup {
            Action::Cleanup
        } else {
            Action::Load {
                switch: !args.no_switchover,
            }
        };
        CitesConfig {
            migration: migration.to_owned(),
            args,
            input,
            species_csv,
            scope: Scope::default(),
            action,
            reindex_after_switch: false,
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
}

/// Run the configured action against the database at `url`; the report is written to
/// `--report-dir` and returned.
pub async fn run(
    cfg: &CitesConfig,
    url: &str,
    cancel: CancellationToken,
) -> anyhow::Result<RunReport> {
    let started = Utc::now();
    let mut conn = PgConnection::connect(url)
        .await
        .context("connecting to PostgreSQL (check --database-url / DATABASE_URL)")?;
    let ledger = cfg.ledger();
    let dry_load = cfg.args.common.dry_run && matches!(cfg.action, Action::Load { .. });
    if !dry_load {
        // A dry run writes nothing at all, not even empty tables.
        schema::ensure(&mut conn).await?;
        ledger.ensure(&mut conn).await?;
    }
    let report_dir = cfg.args.common.report_dir.clone();
    let mut report = match cfg.action {
        Action::Load { switch } => load(cfg, url, &mut conn, switch, cancel).await?,
        Action::Switchover => {
            let last = ledger
                .last_run(&mut conn, &cfg.migration)
                .await?
                .context("no earlier run to switch over: load first (without --switchover)")?;
            let mut report = ledger_report(cfg, &mut conn, &ledger, last.run_id, started).await?;
            if last.status != "validated" {
                report.status = RunStatus::Failed;
                report.error = Some(format!(
                    "refusing to switch: the last run ({}) is `{}`, not `validated`; run the load again",
                    last.run_id, last.status
                ));
            } else {
                if !cfg.args.no_backup {
                    let b = backup(&mut conn, &cfg.live()).await?;
                    report.extra.insert("backups".into(), b);
                }
                switch_over(cfg, &mut conn, &ledger, last.run_id, &mut report).await;
            }
            report
        }
        Action::Rollback => {
            let mut report = empty_report(cfg, started);
            let st = cfg.staging();
            match st.rollback(&mut conn, &cfg.args.lock_timeout).await {
                Ok(()) => {
                    report.status = RunStatus::RolledBack;
                    if let Some(last) = ledger.last_run(&mut conn, &cfg.migration).await? {
                        ledger
                            .set_status(&mut conn, last.run_id, "rolled_back")
                            .await?;
                        report.run_id = last.run_id.to_string();
                    }
                    let n = super::summary::rebuild(&mut conn, &cfg.live()).await?;
                    analyze(&mut conn, &cfg.live()).await?;
                    let rows = count_rows(&mut conn, &cfg.live()).await?;
                    report.extra.insert(
                        "rollback".into(),
                        json!({ "live_rows": rows, "summary_species": n, "staging_now_holds": st.staging.to_string() }),
                    );
                }
                Err(e) => {
                    report.status = RunStatus::Failed;
                    report.error = Some(e.to_string());
                }
            }
            report
        }
        Action::Cleanup => {
            let mut report = empty_report(cfg, started);
            let dropped = cfg.staging().cleanup(&mut conn).await?;
            report.status = RunStatus::Succeeded;
            report.extra.insert("dropped_tables".into(), json!(dropped));
            report
        }
    };
    report.finished_at = Utc::now();
    report.duration_s = (report.finished_at - started).num_milliseconds() as f64 / 1e3;
    report.started_at = started;
    let spool = RejectSpool::new(&report_dir).ok();
    let with_rejects = matches!(cfg.action, Action::Load { .. });
    report
        .write(
            &report_dir,
            if with_rejects { spool.as_ref() } else { None },
        )
        .context("writing the report")?;
    Ok(report)
}

async fn load(
    cfg: &CitesConfig,
    url: &str,
    conn: &mut PgConnection,
    switch: bool,
    cancel: CancellationToken,
) -> anyhow::Result<RunReport> {
    let args = &cfg.args;
    let dry = args.common.dry_run;
    let ledger = cfg.ledger();
    let st = cfg.staging();
    let live = cfg.live();
    let mut extra = serde_json::Map::new();
    extra.insert("input".into(), json!(cfg.input.display().to_string()));
    extra.insert("database".into(), json!(etl_core::config::redact_url(url)));

    // Species and synonyms first (idempotent), so mapping sees them.
    let species_list = match &cfg.species_csv {
        Some(p) => schema::read_pairs(p)?,
        None => Vec::new(),
    };
    let synonyms = match &args.synonyms_csv {
        Some(p) => schema::read_pairs(p)?,
        None => Vec::new(),
    };
    if !dry {
        let added = schema::add_species(conn, &species_list).await?;
        let syn = schema::add_synonyms(conn, &synonyms).await?;
        extra.insert("species_added".into(), json!(added));
        extra.insert("synonyms_added".into(), json!(syn));
    }
    let mut map = if exists(conn, &TableName::new("species")).await? {
        SpeciesMap::load(conn).await?
    } else {
        SpeciesMap::default()
    };
    if dry {
        // Nothing is written in a dry run: map the listed species as if they were added.
        for (name, _) in &species_list {
            map.insert_if_absent(name, uuid::Uuid::nil());
        }
        map.add_synonyms(&synonyms);
    }
    if !map.ambiguous.is_empty() {
        extra.insert("ambiguous_species_names".into(), json!(map.ambiguous));
    }

    // Run identity: a resume continues the last unfinished run on the same staging table.
    let mut run = RunInfo::new(cfg.migration.clone());
    run.dry_run = dry;
    run.cancel = cancel;
    if args.common.resume && !dry {
        let last = ledger
            .last_run(conn, &cfg.migration)
            .await?
            .context("--resume: there is no earlier run to resume")?;
        if !matches!(last.status.as_str(), "loading" | "loaded" | "failed") {
            anyhow::bail!(
                "--resume: the last run ({}) is `{}`; there is nothing to resume (start a new run without --resume)",
                last.run_id,
                last.status
            );
        }
        if !st.states(conn).await?.staging {
            anyhow::bail!(
                "--resume: the staging table {} is gone; start a new run without --resume",
                st.staging
            );
        }
        run.run_id = last.run_id;
        run.resume = true;
    }

    if switch && !dry && st.states(conn).await?.old {
        anyhow::bail!(
            "{} still holds the data replaced by the previous switchover: drop it with --cleanup \
             (or undo that switchover with --rollback) before loading a new release",
            st.old
        );
    }

    // Pre-migration statistics and backups, before anything changes.
    let pre = table_stats(conn, &live).await?;
    extra.insert("pre_migration".into(), pre);
    if !dry && !run.resume && switch && !args.no_backup {
        extra.insert("backups".into(), backup(conn, &live).await?);
    }
    if !dry && !run.resume {
        st.create(conn).await?;
    }

    // The pipeline.
    let mapping = std::sync::Arc::new(SpeciesMapping::new(map, cfg.scope.clone()));
    let source = CsvSource::glob(cites_schema(), &cfg.input, &args.pattern);
    let rules = RowRules::new(vec![
        Rule::int_range("Year", args.min_year as i64, cfg.max_year() as i64),
        Rule::one_of("Appendix", ["I", "II", "III", "N"]),
        Rule::required("Taxon"),
        Rule::required("Term"),
    ]);
    let load = PgLoad::new(connect_options(url)?, st.staging.clone())
        .with_ledger(ledger.clone())
        .with_staging(st.clone());
    let match_gate = MatchRate {
        name: "species_match_rate".into(),
        matched_counter: "species_matched".into(),
        unmatched_reason: UNMATCHED.into(),
        min: args.min_match_rate,
    };
    let mut pipeline = Pipeline::new(source, load)
        .transform(rules)
        .transform_shared(mapping.clone())
        .validate(RejectRate {
            max: args.max_reject_rate,
        })
        .validate(match_gate.clone())
        .options(PipelineOptions {
            batch_size: args.common.batch_size,
            parallel: args.common.parallel.max(1),
            buffer: 2,
            transform_concurrency: 1,
            progress: args.common.progress(),
            report_dir: Some(args.common.report_dir.clone()),
        });
    if !dry {
        let s = &st.staging;
        pipeline = pipeline.validate(SqlChecks::new(
            url,
            vec![
                SqlCheck::row_count(s),
                SqlCheck::no_orphans(s, "species_id", &TableName::new("species"), "id"),
                SqlCheck::in_range(s, "year", args.min_year as i64, cfg.max_year() as i64),
                SqlCheck::not_null(s, "taxon"),
                SqlCheck::not_null(s, "term"),
                SqlCheck::not_null(s, "appendix"),
                SqlCheck::no_duplicates(s, &["record_id"]),
            ],
        ));
    }
    let mut report = pipeline.run(&run).await;

    // Figures for the report.
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
            "mapped_through_synonyms": mapping.map().via_synonym,
        }),
    );
    extra.insert(
        "staging".into(),
        json!({ "table": st.staging.to_string(), "validated": report.succeeded() && !dry }),
    );
    report.extra.extend(extra);

    if report.succeeded() && switch && !dry {
        switch_over(cfg, conn, &ledger, run.run_id, &mut report).await;
    } else if report.succeeded() && !dry {
        report.extra.insert(
            "next_step".into(),
            json!(format!(
                "staging {} is loaded and validated; switch it into production with --switchover",
                st.staging
            )),
        );
    }
    Ok(report)
}

/// Backup tables of the live table and the summary, before anything changes (only runs
/// that will switch change production).
async fn backup(conn: &mut PgConnection, live: &TableName) -> anyhow::Result<Value> {
    let stamp = Utc::now().format("%Y%m%d_%H%M%S_%3f").to_string();
    let t0 = std::time::Instant::now();
    let backups = backup_tables(conn, &[live.clone(), TableName::new(SUMMARY)], &stamp).await?;
    Ok(json!({
        "tables": backups.iter().map(|(t, n)| json!({"table": t.to_string(), "rows": n})).collect::<Vec<_>>(),
        "seconds": t0.elapsed().as_secs_f64(),
        "restore": "ALTER TABLE ... RENAME, or INSERT INTO cites_trade_records SELECT * FROM <backup>",
    }))
}

async fn table_stats(conn: &mut PgConnection, table: &TableName) -> anyhow::Result<Value> {
    if !exists(conn, table).await? {
        return Ok(json!({ "table": table.to_string(), "exists": false }));
    }
    let (n, species, min_year, max_year): (i64, i64, Option<i32>, Option<i32>) =
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT count(*), count(DISTINCT species_id), min(year), max(year) FROM {}",
            table.sql()
        )))
        .fetch_one(&mut *conn)
        .await?;
    Ok(json!({
        "table": table.to_string(),
        "record_count": n,
        "unique_species": species,
        "min_year": min_year,
        "max_year": max_year,
        "snapshot_time": Utc::now(),
    }))
}

/// Switch, rebuild the summary, analyze; record the outcome in `report`.
async fn switch_over(
    cfg: &CitesConfig,
    conn: &mut PgConnection,
    ledger: &LedgerTables,
    run_id: uuid::Uuid,
    report: &mut RunReport,
) {
    let st = cfg.staging();
    let result: anyhow::Result<Value> = async {
        let t0 = std::time::Instant::now();
        st.switch(conn, &cfg.args.lock_timeout).await?;
        let switch_s = t0.elapsed().as_secs_f64();
        ledger.set_status(conn, run_id, "switched").await?;
        if cfg.reindex_after_switch {
            sqlx::query(sqlx::AssertSqlSafe(format!("REINDEX TABLE {}", st.live.sql())))
                .execute(&mut *conn)
                .await?;
        }
        let t1 = std::time::Instant::now();
        let species = super::summary::rebuild(conn, &st.live).await?;
        let summary_s = t1.elapsed().as_secs_f64();
        analyze(conn, &st.live).await?;
        let post = table_stats(conn, &st.live).await?;
        report.extra.insert(
            "switched".into(),
            json!(format!(
                "{} is live (previous data kept in {}); summary rebuilt for {species} species",
                st.live, st.old
            )),
        );
        Ok(json!({
            "switched": true,
            "switch_seconds": switch_s,
            "previous_table": st.old.to_string(),
            "summary_species": species,
            "summary_seconds": summary_s,
            "post_migration": post,
            "rollback": "run again with --rollback to restore the previous table; --cleanup drops it",
        }))
    }
    .await;
    match result {
        Ok(v) => {
            report.extra.insert("switchover".into(), v);
        }
        Err(e) => {
            report.status = RunStatus::Failed;
            report.error = Some(format!(
                "switchover failed (production unchanged unless noted): {e:#}"
            ));
        }
    }
}

fn empty_report(cfg: &CitesConfig, started: chrono::DateTime<Utc>) -> RunReport {
    RunReport::new(&cfg.migration, "", RunStatus::Succeeded, &[], started)
}

async fn ledger_report(
    cfg: &CitesConfig,
    conn: &mut PgConnection,
    ledger: &LedgerTables,
    run_id: uuid::Uuid,
    started: chrono::DateTime<Utc>,
) -> anyhow::Result<RunReport> {
    let units = ledger.completed_units(conn, run_id).await?;
    let mut report = RunReport::new(
        &cfg.migration,
        &run_id.to_string(),
        RunStatus::Succeeded,
        &units,
        started,
    );
    report.units = units.iter().map(UnitReport::from).collect();
    report.totals = RunTotals::from_units(&units);
    report.validation = vec![Finding::pass(
        "validated_run",
        "switching a staging table validated by an earlier run",
    )];
    Ok(report)
}
