//! The Arctic-species CITES migration (seed 001): staging -> validate -> switchover ->
//! reindex, restricted to the Arctic species list, with a one-year test load first.
//!
//! `cargo run --example cites_arctic` runs the whole plan on the bundled sample and a
//! throwaway PostgreSQL.

use clap::Parser;
use etl_examples::cites::arctic::{ArcticArgs, run_plan};
use etl_examples::common::{Database, cancel_on_ctrl_c, print_report};

/// Migrate the CITES trade records of the Arctic species (seed 001).
///
/// Plan: add the Arctic species and the synonym pairs; test-load one year (--test-year,
/// default 2024) into staging and validate it; then load every year, validate, switch
/// the staging table into production in one transaction, REINDEX, and rebuild
/// species_trade_summary. Rows of other taxa are counted as filtered (`not an Arctic
/// species`), never silently dropped. --year Y loads and validates only that year and
/// stops before the switchover.
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
    let db = Database::open(common.database_url.as_ref(), "cites_arctic").await?;
    let reports = run_plan(&args.arctic, &db.url, cancel_on_ctrl_c()).await?;
    let mut failed = false;
    for (dir, r) in &reports {
        print_report(r, dir);
        failed |= r.status == etl_core::RunStatus::Failed;
    }
    drop(db);
    Ok(if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    })
}
