//! Rebuild `species_trade_summary` in its real shape (one row per species, JSON
//! aggregates) and the seed's per-year shape in `species_trade_summary_annual` (000 §6.2:
//! one row per species and year, `summary_type = 'annual'`, `idx_summary_species_year`),
//! in one transaction.
//!
//! The seed's rebuild (`GROUP BY species_id, year` into per-year columns) targets columns
//! that do not exist in `species_trade_summary` and would violate its primary key; the
//! application reads the JSON shape, so the seed's rows get their own table.
//!
//! Both come from one set of groups (`ferry_trade_groups`: per species, year and term, and
//! per species and importer, per species and exporter). After a load, they come from the
//! load's [`rollups`] (computed while the rows streamed through it), so no second scan of
//! the table (the grouping scan of 5 M rows takes 13-15 s, most of the step: see
//! BENCHMARKS.md). After a rollback, or when the rollups do not reconcile with the ledger
//! (a load resumed after a kill), they come from one scan of the live table ([`rebuild`]).

use etl_sink_postgres::ident::TableName;
use etl_sink_postgres::rollup::Rollup;
use uuid::Uuid;

/// The load's rollups: per species, year and term (rows and quantity), per species and
/// importer, per species and exporter (rows).
pub fn rollups() -> [Rollup; 3] {
    let table = |t: &str| TableName::new(format!("cites_rollup_{t}"));
    [
        Rollup::new(
            table("year_term"),
            ["species_id", "year", "term"],
            ["quantity"],
        ),
        Rollup::new(
            table("importer"),
            ["species_id", "importer"],
            [] as [&str; 0],
        ),
        Rollup::new(
            table("exporter"),
            ["species_id", "exporter"],
            [] as [&str; 0],
        ),
    ]
}

/// The groups from one scan of the live table (also the job file's fallback).
const GROUPS_BY_SCAN: &str = include_str!("../../jobs/cites_trade/groups_scan.sql");

/// The groups from the rollups; `{groups:<table>}` stands for the run's groups.
const GROUPS_FROM_ROLLUPS: &str = include_str!("../../jobs/cites_trade/groups_rollups.sql");

/// Both summaries from the groups.
const SUMMARIES: &str = include_str!("../../jobs/cites_trade/summaries.sql");

/// The rebuild from one scan of the live table (statements for one transaction: the
/// rollback after the previous table is live again, and the fallback of [`from_rollups`]).
pub fn rebuild() -> String {
    format!("{GROUPS_BY_SCAN}\n{SUMMARIES}")
}

/// The rebuild from the rollups of run `run_id` (statements for one transaction).
pub fn from_rollups(run_id: Uuid) -> String {
    let mut sql = format!("{GROUPS_FROM_ROLLUPS}\n{SUMMARIES}");
    for r in rollups() {
        sql = sql.replace(
            &format!("{{groups:{}}}", r.table),
            &format!("({})", r.groups_sql(run_id)),
        );
    }
    sql
}
