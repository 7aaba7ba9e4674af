//! Your own migration: CSV files of cities replace the `cities` table through staging, a row
//! rule, a gate, the switch and a post-switch SQL step; `--plan`, `--resume`, `--rollback`,
//! `--dry-run`, `--only cleanup` and the reports come from the run layer.
use std::{path::PathBuf, sync::Arc};

use arrow_schema::{DataType::*, Field, Schema};
use etl_core::cli::{CommonArgs, init_tracing, parse_args, run_migration};
use etl_core::migration::{Migration, Step, StepKind, StepOutput};
use etl_core::{Finding, Pipeline};
use etl_sink_postgres::staging::{StagingTable, count_rows};
use etl_sink_postgres::steps::{ReplaceSteps, sql_step};
use etl_sink_postgres::{PgLoad, connect_options, ident::TableName, journal::PgJournal};
use etl_source_csv::CsvSource;
use etl_validate::{RejectRate, RowRules, Rule};
use sqlx::{Connection as _, PgConnection, postgres::PgConnectOptions};

/// Replace the `cities` table with the `cities_*.csv` files of a directory.
#[derive(clap::Parser, Debug)]
#[command(name = "cities", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Directory of `cities_*.csv` files (`id,name,country,population`).
    #[arg(long, default_value_os_t = etl_examples::common::bundled("cities"))]
    input: PathBuf,
    /// Smallest number of rows the new table may have.
    #[arg(long, default_value_t = 1)]
    min_rows: i64,
}

/// What every step can see.
struct Cities {
    opts: PgConnectOptions,
    args: Args,
    tables: StagingTable,
}

const ANALYZE: &str = "ANALYZE cities";
const DDL: &str = "CREATE TABLE IF NOT EXISTS cities (id bigint PRIMARY KEY,
    name text NOT NULL, country text NOT NULL, population bigint CHECK (population >= 0))";

fn migration(c: &Cities) -> Migration<Cities> {
    let replace = ReplaceSteps::new(c.opts.clone(), c.tables.clone());
    Migration::new("cities")
        .restart_unfinished()
        .step(sql_step("schema", StepKind::Prepare, c.opts.clone(), DDL))
        .step(replace.staging())
        .step(Step::pipeline("load", |c: &Cities, cx| {
            let schema = Arc::new(Schema::new(vec![
                Field::new("id", Int64, false),
                Field::new("name", Utf8View, false),
                Field::new("country", Utf8View, false),
                Field::new("population", Int64, true),
            ]));
            let csv = CsvSource::glob(schema, &c.args.input, "cities_*.csv");
            let load = PgLoad::new(c.opts.clone(), c.tables.staging.clone());
            let (batch, parallel) = (c.args.common.batch_size, c.args.common.parallel);
            let rule = Rule::int_range("population", 0, 40_000_000);
            Ok(Pipeline::new(csv, load.with_staging(c.tables.clone()))
                .transform(RowRules::new(vec![rule]))
                .validate(RejectRate { max: 0.5 })
                .options(cx.pipeline_options(batch, parallel)))
        }))
        .step(Step::new("gate", StepKind::Gate, |c: &Cities, _cx| {
            Box::pin(async move {
                let mut conn = PgConnection::connect_with(&c.opts).await?;
                let n = count_rows(&mut conn, &c.tables.staging).await?;
                let ok = n >= c.args.min_rows;
                let f = Finding::check("min_rows", ok, format!("{n} rows staged"));
                Ok(StepOutput::message(format!("{n} rows staged")).with_findings(vec![f]))
            })
        }))
        .step(replace.switch())
        .step(sql_step(
            "analyze",
            StepKind::PostSwitch,
            c.opts.clone(),
            ANALYZE,
        ))
        .step(replace.cleanup())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    etl_examples::common::run_main(async {
        let args: Args = parse_args();
        init_tracing(args.common.verbosity());
        let db = etl_examples::common::Database::for_args(&args.common, "cities").await?;
        let (run, plan) = (db.run_options(&args.common), args.common.plan);
        let (opts, tables) = (connect_options(&db.url)?, TableName::new("cities"));
        let tables = StagingTable::for_live(tables);
        let c = Cities { opts, args, tables };
        let journal = PgJournal::new(c.opts.clone());
        let (code, _) = run_migration(&migration(&c), &c, &journal, &run, plan).await?;
        Ok(code)
    })
    .await
}
