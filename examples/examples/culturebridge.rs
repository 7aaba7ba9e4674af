//! CultureBridge: the Bubble Data API into PostgreSQL (seed 004). See
//! `etl_examples::culturebridge`. With no arguments it starts a Bubble-compatible test
//! server and a throwaway PostgreSQL and runs the whole migration.

use etl_examples::culturebridge::{Args, main_with};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Two malloc arenas: a flat peak RSS (see etl_core::mem).
    etl_core::mem::limit_malloc_arenas(2);
    let args: Args = etl_core::cli::parse_args();
    if !main_with(args).await? {
        std::process::exit(1);
    }
    Ok(())
}
