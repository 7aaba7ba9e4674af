//! The observations partitioning migration (seed 002): `petri_observations` and
//! `gasifier_observations` become monthly range-partitioned tables (months from the data,
//! plus DEFAULT), moved in keyset batches (or `--online`: change capture, replay, a short
//! lock for the swap); report, dashboard and permission tables; views, foreign keys,
//! indexes; deprecated columns dropped; old tables kept as `*_old` until `--cleanup`.
//!
//! With no arguments it generates a sample source into a throwaway PostgreSQL and runs the
//! whole migration: `cargo run --example observations_partitioning`.

use clap::Parser;
use etl_examples::common::{Database, cancel_on_ctrl_c, print_report};
use etl_examples::partitioning::{PartitioningArgs, run, status};

/// Partition the observation tables by month, as recorded, reversible steps.
///
/// Steps (see --plan): preflight (sizes, foreign keys, locks; refuses to start when the
/// tables cannot be locked within --lock-timeout), inbound_foreign_keys (refuses keys of
/// other tables the partitioned tables cannot take), backup, 001-003
/// report/dashboard/permission tables (RLS on the report tables), partitioned_tables
/// (months of the data + --premake months ahead + DEFAULT), move_data (change capture and
/// keyset batches, or --online), verify (the change log replayed; counts, anti-joins,
/// hashes, per-partition counts, partition pruning), swap (the rest of the log replayed
/// under the lock; views and other tables' foreign keys re-pointed), 004 views,
/// foreign_keys, indexes, 005 deprecated columns, analyze (VACUUM ANALYZE), maintain
/// (only with --maintain: the next months' partitions, DEFAULT strays moved into them),
/// and cleanup (only with --cleanup or --only cleanup).
#[derive(Parser, Debug)]
#[command(name = "observations_partitioning", version, verbatim_doc_comment)]
struct Args {
    #[command(flatten)]
    p: PartitioningArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    etl_examples::common::run_main(real_main()).await
}

async fn real_main() -> anyhow::Result<std::process::ExitCode> {
    let args: Args = etl_core::cli::parse_args();
    etl_core::cli::init_tracing(args.p.common.verbosity());
    let url = args.p.common.database_url.as_ref();
    let db = Database::open(url, "observations_partitioning").await?;
    if let Some(dir) = &args.p.backup.restore {
        let (ctx, m) = etl_examples::partitioning::migration(&args.p, &db.url)?;
        let journal = etl_sink_postgres::journal::PgJournal::new(ctx.opts);
        return etl_examples::common::restore(&m, &journal, &db.url, dir).await;
    }
    if args.p.common.plan {
        print!("{}", status(&args.p, &db.url).await?);
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let report = run(&args.p, &db.url, cancel_on_ctrl_c()).await?;
    print_report(&report, &args.p.common.report_dir);
    drop(db);
    Ok(etl_examples::common::exit_code(report.status))
}
