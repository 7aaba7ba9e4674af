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

/// The groups from one scan of the live table.
const GROUPS_BY_SCAN: &str = "CREATE TEMP TABLE ferry_trade_groups ON COMMIT DROP AS
 SELECT species_id, year, term, importer, exporter, count(*) AS n, sum(quantity) AS q,
        GROUPING(importer, exporter, year, term) AS g
   FROM cites_trade_records
  GROUP BY GROUPING SETS ((species_id, year, term), (species_id, importer), (species_id, exporter));";

/// Both summaries from `ferry_trade_groups` (`g` is `GROUPING(importer, exporter, year,
/// term)`: 12 per species, year and term; 7 per importer; 11 per exporter).
const FROM_GROUPS: &str = "INSERT INTO species_trade_summary (species_id, last_updated_at, total_trade_records,
       overall_min_year, overall_max_year, overall_total_quantity, distinct_years,
       distinct_terms, distinct_importers, distinct_exporters, annual_summaries)
SELECT s.species_id, now(), s.records, s.min_year, s.max_year, s.quantity, s.years, s.terms,
       coalesce(i.codes, '[]'::jsonb), coalesce(e.codes, '[]'::jsonb), a.annual
  FROM (SELECT species_id, sum(n)::int AS records, min(year) AS min_year, max(year) AS max_year,
               coalesce(sum(q), 0) AS quantity,
               jsonb_agg(DISTINCT year ORDER BY year) AS years,
               jsonb_agg(DISTINCT term ORDER BY term) AS terms
          FROM ferry_trade_groups WHERE g = 12 GROUP BY species_id) s
  JOIN (SELECT species_id, jsonb_agg(jsonb_build_object('year', year, 'terms_summary', terms) ORDER BY year) AS annual
          FROM (SELECT species_id, year,
                       jsonb_agg(jsonb_build_object('term', term, 'records', n, 'quantity', coalesce(q, 0)) ORDER BY term) AS terms
                  FROM ferry_trade_groups WHERE g = 12 GROUP BY species_id, year) y
         GROUP BY species_id) a USING (species_id)
  LEFT JOIN (SELECT species_id, jsonb_agg(jsonb_build_object('code', importer, 'name', NULL) ORDER BY importer) AS codes
               FROM ferry_trade_groups WHERE g = 7 AND importer IS NOT NULL GROUP BY species_id) i USING (species_id)
  LEFT JOIN (SELECT species_id, jsonb_agg(jsonb_build_object('code', exporter, 'name', NULL) ORDER BY exporter) AS codes
               FROM ferry_trade_groups WHERE g = 11 AND exporter IS NOT NULL GROUP BY species_id) e USING (species_id);
INSERT INTO species_trade_summary_annual (species_id, year, total_records, total_quantity,
       min_year, max_year, summary_type)
SELECT species_id, year, sum(n)::int, coalesce(sum(q), 0), year, year, 'annual'
  FROM ferry_trade_groups WHERE g = 12 GROUP BY species_id, year;";

/// The rebuild from one scan of the live table (statements for one transaction: the
/// rollback after the previous table is live again, and the fallback of [`from_rollups`]).
pub fn rebuild() -> String {
    format!("{TRUNCATE}{GROUPS_BY_SCAN}\n{FROM_GROUPS}")
}

const TRUNCATE: &str = "TRUNCATE species_trade_summary, species_trade_summary_annual;\n";

/// The rebuild from the rollups of run `run_id` (statements for one transaction).
pub fn from_rollups(run_id: Uuid) -> String {
    let [year, importer, exporter] = rollups().map(|r| r.groups_sql(run_id));
    format!(
        "{TRUNCATE}CREATE TEMP TABLE ferry_trade_groups ON COMMIT DROP AS
 SELECT species_id, year, term, NULL::text AS importer, NULL::text AS exporter, rows AS n, quantity AS q, 12 AS g
   FROM ({year}) y
 UNION ALL SELECT species_id, NULL, NULL, importer, NULL, rows, NULL, 7 FROM ({importer}) i
 UNION ALL SELECT species_id, NULL, NULL, NULL, exporter, rows, NULL, 11 FROM ({exporter}) e;
{FROM_GROUPS}"
    )
}
