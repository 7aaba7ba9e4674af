//! CultureBridge: the Bubble Data API into PostgreSQL (seed 004). See
//! `etl_examples::culturebridge`. With no arguments it starts a Bubble-compatible test
//! server and a throwaway PostgreSQL and runs the whole migration; `--plan`, `--resume`,
//! `--rollback`, `--dry-run` and `--only STEP` come from the run layer.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    etl_examples::common::run_main(async {
        let args: etl_examples::culturebridge::Args = etl_core::cli::parse_args();
        etl_examples::culturebridge::main_with(args).await
    })
    .await
}
