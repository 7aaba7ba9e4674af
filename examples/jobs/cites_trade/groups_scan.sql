-- The groups of both CITES summaries from one scan of the live table (the fallback of
-- groups_rollups.sql, and the rebuild after a rollback); summaries.sql follows.
TRUNCATE species_trade_summary, species_trade_summary_annual;
CREATE TEMP TABLE ferry_trade_groups ON COMMIT DROP AS
 SELECT species_id, year, term, importer, exporter, count(*) AS n, sum(quantity) AS q,
        GROUPING(importer, exporter, year, term) AS g
   FROM cites_trade_records
  GROUP BY GROUPING SETS ((species_id, year, term), (species_id, importer), (species_id, exporter));
