//! `ferry`: run a migration declared in a job file, or guess and load files in one line.

use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = ferry_cli::commands::Cli::parse();
    etl_core::cli::init_tracing(cli.verbosity());
    match cli.run().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
