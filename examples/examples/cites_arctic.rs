//! The Arctic-species CITES migration (seed 001): staging -> validate -> switchover ->
//! reindex, restricted to the Arctic species list, with a one-year test load first.
//!
//! `cargo run --example cites_arctic` runs the whole plan on the bundled sample and a
//! throwaway PostgreSQL.

use clap::Parser;
use etl_examples::cites::arctic::{ArcticArgs, config};
use etl_examples::common::Database;

/// Load the Arctic-species subset of a CITES release (seed 001).
///
/// Steps (see --plan): preflight, species, backup, test_staging + test_load (the
/// --test-year alone, validated; the run stops if it fails), staging, load (every file,
/// Arctic taxa and their synonyms only, indexes, gates), switch, reindex, summary,
/// analyze; cleanup with --cleanup. --year Y loads and validates one year and stops
/// before the switch.
#[derive(Parser, Debug)]
#[command(name = "cites_arctic", version, verbatim_doc_comment)]
struct Args {
    #[command(flatten)]
    arctic: ArcticArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    etl_examples::common::run_main(real_main()).await
}

async fn real_main() -> anyhow::Result<std::process::ExitCode> {
    let args: Args = etl_core::cli::parse_args();
    let common = &args.arctic.cites.common;
    etl_core::cli::init_tracing(common.verbosity());
    let db = Database::for_args(common, "cites_arctic").await?;
    let cfg = config(&args.arctic)?;
    let code = etl_examples::cites::run_cli(&cfg, &db).await?;
    drop(db);
    Ok(code)
}
