//! Seed 001: the Arctic-species subset of the CITES release — a test load of one year
//! into staging and its validation, then the full load, validation, switchover,
//! `REINDEX` and summary rebuild.

use std::path::PathBuf;

use etl_core::{CancellationToken, RunReport};

use super::migration::{Action, CitesArgs, CitesConfig, run};
use super::schema::read_pairs;
use super::species::Scope;

/// Options of `cites_arctic`.
#[derive(clap::Args, Debug, Clone)]
pub struct ArcticArgs {
    /// The CITES options.
    #[command(flatten)]
    pub cites: CitesArgs,
    /// The Arctic species (`scientific_name,common_name`); rows of other taxa are
    /// filtered as `not an Arctic species`. Default: the bundled list of 43.
    #[arg(long, value_name = "FILE")]
    pub arctic_species: Option<PathBuf>,
    /// Load only this year into staging and validate it (the seed's test load), then stop.
    #[arg(long)]
    pub year: Option<i32>,
    /// The year of the test load that precedes the full load when --year is not given.
    #[arg(long, default_value_t = 2024)]
    pub test_year: i32,
    /// Skip the test load and go straight to the full load.
    #[arg(long)]
    pub skip_test_load: bool,
}

/// The configuration of one step, from the options.
pub fn config(args: &ArcticArgs, year: Option<i32>, switch: bool) -> anyhow::Result<CitesConfig> {
    let mut cites = args.cites.clone();
    let species = args
        .arctic_species
        .clone()
        .unwrap_or_else(|| crate::common::bundled("arctic/arctic_species.csv"));
    if cites.species_csv.is_none() {
        cites.species_csv = Some(species.clone());
    }
    if cites.synonyms_csv.is_none() {
        cites.synonyms_csv = Some(crate::common::bundled("arctic/species_synonyms.csv"));
    }
    if !switch && !cites.switchover && !cites.rollback && !cites.cleanup {
        cites.no_switchover = true;
    }
    let synonyms = read_pairs(cites.synonyms_csv.as_deref().expect("set above"))?;
    let names: Vec<String> = read_pairs(&species)?.into_iter().map(|(n, _)| n).collect();
    let mut cfg = CitesConfig::from_args("cites_arctic", cites);
    cfg.species_csv = Some(cfg.args.species_csv.clone().unwrap_or(species));
    cfg.scope = Scope {
        taxa: Some(Scope::taxa_with_synonyms(&names, &synonyms)),
        year,
    };
    cfg.reindex_after_switch = true;
    Ok(cfg)
}

/// Run the seed-001 plan; returns the report directory and report of every step run
/// (test load, full load).
pub async fn run_plan(
    args: &ArcticArgs,
    url: &str,
    cancel: CancellationToken,
) -> anyhow::Result<Vec<(PathBuf, RunReport)>> {
    let c = &args.cites;
    if c.switchover || c.rollback || c.cleanup {
        let cfg = config(args, None, false)?;
        let r = run(&cfg, url, cancel).await?;
        return Ok(vec![(cfg.args.common.report_dir, r)]);
    }
    if let Some(year) = args.year {
        let cfg = config(args, Some(year), false)?;
        let r = run(&cfg, url, cancel).await?;
        return Ok(vec![(cfg.args.common.report_dir, r)]);
    }
    let mut reports = Vec::new();
    if !args.skip_test_load && !c.common.resume {
        let mut cfg = config(args, Some(args.test_year), false)?;
        cfg.args.common.report_dir = cfg
            .args
            .common
            .report_dir
            .join(format!("test_{}", args.test_year));
        let r = run(&cfg, url, cancel.clone()).await?;
        let ok = r.succeeded() || r.status == etl_core::RunStatus::DryRun;
        reports.push((cfg.args.common.report_dir.clone(), r));
        if !ok {
            tracing::error!(
                "the test load of {} failed validation; stopping before the full load",
                args.test_year
            );
            return Ok(reports);
        }
    }
    let cfg = config(args, None, !c.no_switchover)?;
    debug_assert!(matches!(cfg.action, Action::Load { .. }));
    let r = run(&cfg, url, cancel).await?;
    reports.push((cfg.args.common.report_dir.clone(), r));
    Ok(reports)
}
