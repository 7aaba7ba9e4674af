//! CultureBridge: the Bubble Data API into PostgreSQL (seed 004). See
//! `etl_examples::culturebridge`. With no arguments it starts a Bubble-compatible test
//! server and a throwaway PostgreSQL and runs the whole migration.

use etl_examples::culturebridge::{Args, main_with};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Args = etl_core::cli::parse_args();
    if !main_with(args).await? {
        std::process::exit(1);
    }
    Ok(())
}
