//! The CITES Trade Database release migration (seed 000): every `trade_db_*.csv` of a
//! release fully replaces `cites_trade_records` — backup, staging table, species mapping
//! with match-rate gate, import-error table, migration log, validation, atomic rename
//! switchover, summary rebuild. `--rollback` undoes the switch, `--cleanup` drops the old
//! table, `--resume` continues a killed run.
//!
//! With no arguments it loads the bundled sample into a throwaway PostgreSQL:
//! `cargo run --release --example cites_trade`.

use clap::Parser;
use etl_examples::cites::{CitesArgs, CitesConfig, run_cli};
use etl_examples::common::Database;

/// Fully replace `cites_trade_records` with a CITES Trade Database release.
///
/// Steps: species added from --species-csv; backup tables of cites_trade_records and
/// species_trade_summary; a staging table like the live one (indexes built after the
/// load); every file parsed, typed, species-mapped and binary-COPYed, one transaction
/// per file with its migration-log row and rejected lines; validation gates (counts
/// reconcile, match rate, reject rate, no orphans, years in range, required fields, no
/// duplicate Ids); then one-transaction rename switchover and summary rebuild.
/// Production is untouched until the switchover, which happens only if every gate passes.
/// Every step is recorded in the journal (ferry_journal_* tables): --plan shows them,
/// --resume continues at the first step not done (a kill after the rename included),
/// --rollback swaps the previous table back.
#[derive(Parser, Debug)]
#[command(name = "cites_trade", version, verbatim_doc_comment)]
struct Args {
    #[command(flatten)]
    cites: CitesArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    etl_examples::common::run_main(real_main()).await
}

async fn real_main() -> anyhow::Result<std::process::ExitCode> {
    let args: Args = etl_core::cli::parse_args();
    etl_core::cli::init_tracing(args.cites.common.verbosity());
    let common = &args.cites.common;
    let db = Database::for_args(common, "cites_trade").await?;
    let cfg = CitesConfig::from_args("cites_trade", args.cites);
    let code = run_cli(&cfg, &db).await?;
    drop(db);
    Ok(code)
}
