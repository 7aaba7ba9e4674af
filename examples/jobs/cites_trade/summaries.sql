-- Both CITES summaries from the groups in ferry_trade_groups (g = GROUPING(importer,
-- exporter, year, term): 12 per species, year and term; 7 per importer; 11 per exporter),
-- after groups_scan.sql or groups_rollups.sql, in the same transaction.
INSERT INTO species_trade_summary (species_id, last_updated_at, total_trade_records,
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
  FROM ferry_trade_groups WHERE g = 12 GROUP BY species_id, year;
