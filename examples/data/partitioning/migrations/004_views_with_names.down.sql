-- The views as they were before the migration (site name only).
DROP VIEW IF EXISTS petri_observations_with_names;
CREATE VIEW petri_observations_with_names AS
SELECT o.observation_id, o.submission_id, o.petri_code, o.growth_index, o.created_at,
       s.name AS site_name
  FROM petri_observations o JOIN sites s ON s.site_id = o.site_id;

DROP VIEW IF EXISTS gasifier_observations_with_names;
CREATE VIEW gasifier_observations_with_names AS
SELECT o.observation_id, o.submission_id, o.gasifier_code, o.measure, o.created_at,
       s.name AS site_name
  FROM gasifier_observations o JOIN sites s ON s.site_id = o.site_id;
