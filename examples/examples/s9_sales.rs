//! The S9 sales migration (PostgreSQL -> DynamoDB), phase by phase. With no arguments it
//! starts a throwaway PostgreSQL and a local dynalite, generates 100,000 sales and runs
//! every phase. See `etl_examples::s9` and `--help`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Two malloc arenas: a flat peak RSS (see etl_core::mem).
    etl_core::mem::limit_malloc_arenas(2);
    etl_examples::s9::main_entry().await
}
