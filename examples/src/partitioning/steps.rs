//! The observation tables and their proof queries; the partition steps come from
//! [`etl_sink_postgres::partition_steps`], pre-flight, move, swap and cleanup from
//! [`etl_sink_postgres::steps`], the SQL ones are files under
//! `examples/data/partitioning/migrations/`.

use etl_sink_postgres::ident::TableName;
use etl_sink_postgres::partition_steps::PartitionTable;
use etl_sink_postgres::proof::QueryCheck;

/// The partition key.
pub const KEY: &str = "created_at";
/// The primary key of the observation tables.
pub const PK: &str = "observation_id";

/// The two observation tables with their foreign keys and indexes (names distinct from
/// the old tables': index names are per schema).
pub fn tables() -> Vec<PartitionTable> {
    super::schema::TABLES
        .into_iter()
        .map(|t| {
            let short = t.replace("_observations", "_obs");
            PartitionTable::new(TableName::new(t))
                .foreign_key("submission_id", "submissions")
                .foreign_key("site_id", "sites")
                .foreign_key("program_id", "pilot_programs")
                .index(format!("{short}_p_site_created_idx"), &["site_id", KEY])
                .index(
                    format!("{short}_p_program_created_idx"),
                    &["program_id", KEY],
                )
                .index(format!("{short}_p_submission_idx"), &["submission_id"])
        })
        .collect()
}

/// The default proof queries (the dashboards' access paths the new indexes serve): one
/// site's and one program's rows of the data's last 90 days.
pub fn proof_queries() -> Vec<QueryCheck> {
    let recent = "created_at >= (SELECT max(created_at) FROM submissions) - interval '90 days'";
    let first = |col: &str, table: &str| {
        format!("{col} = (SELECT {col} FROM {table} ORDER BY {col} LIMIT 1) AND {recent}")
    };
    vec![
        QueryCheck::new(
            "site_recent",
            format!(
                "SELECT * FROM {{table}} WHERE {}",
                first("site_id", "sites")
            ),
        ),
        QueryCheck::new(
            "program_recent",
            format!(
                "SELECT count(*) FROM {{table}} WHERE {}",
                first("program_id", "pilot_programs")
            ),
        ),
    ]
}

/// What the steps see: the database (its sessions wait at most `--lock-timeout` for a
/// lock); the steps themselves hold their settings.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The database's connection options.
    pub opts: sqlx::postgres::PgConnectOptions,
}
