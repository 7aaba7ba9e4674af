-- The groups of both CITES summaries from the load's rollups ({groups:<table>} is the
-- run's groups of that rollup); summaries.sql follows.
TRUNCATE species_trade_summary, species_trade_summary_annual;
CREATE TEMP TABLE ferry_trade_groups ON COMMIT DROP AS
 SELECT species_id, year, term, NULL::text AS importer, NULL::text AS exporter, rows AS n, quantity AS q, 12 AS g
   FROM {groups:cites_rollup_year_term} y
 UNION ALL SELECT species_id, NULL, NULL, importer, NULL, rows, NULL, 7 FROM {groups:cites_rollup_importer} i
 UNION ALL SELECT species_id, NULL, NULL, NULL, exporter, rows, NULL, 11 FROM {groups:cites_rollup_exporter} e;
