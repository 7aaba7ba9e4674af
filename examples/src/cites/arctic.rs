//! Seed 001: the Arctic-species subset of the CITES release — a test load of one year
//! into staging and its validation, then the full load, validation, switchover,
//! `REINDEX` and summary rebuild: the CITES steps (see [`super::migration()`]) with a
//! `test_staging` + `test_load` pair before the full load and a `reindex` step after the
//! switch.

use std::path::PathBuf;

use super::migration::{CitesArgs, CitesConfig};
use super::species::Scope;
use etl_source_csv::read_pairs;

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

/// The configuration from the options: the Arctic scope, its synonyms, `REINDEX` after
/// the switch, and the test load of `--test-year` first (unless `--year`, `--skip-test-load`
/// or a `--switchover` / `--cleanup` / `--rollback` of an earlier run).
///
/// # Errors
/// The species or synonym list cannot be read.
pub fn config(args: &ArcticArgs) -> anyhow::Result<CitesConfig> {
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
    // The subset of a release must not lose Arctic records the live table has.
    cites.max_dropped_ids = cites.max_dropped_ids.or(Some(0));
    if args.year.is_some() {
        // One year only: load and validate it into staging, then stop (never switch).
        cites.no_switchover = true;
    }
    let synonyms = read_pairs(cites.synonyms_csv.as_deref().expect("set above"))?;
    let names: Vec<String> = read_pairs(&species)?.into_iter().map(|(n, _)| n).collect();
    let mut cfg = CitesConfig::from_args("cites_arctic", cites);
    cfg.species_csv = Some(cfg.args.species_csv.clone().unwrap_or(species));
    cfg.scope = Scope {
        taxa: Some(Scope::taxa_with_synonyms(&names, &synonyms)),
        year: args.year,
    };
    cfg.reindex_after_switch = true;
    cfg.test_year = (args.year.is_none() && !args.skip_test_load).then_some(args.test_year);
    Ok(cfg)
}
