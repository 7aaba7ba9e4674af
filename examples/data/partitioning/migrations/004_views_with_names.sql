-- Views recreated against the partitioned tables (seed 002, phase 4.1; the original
-- 034_create_petri_observations_with_names_view.sql), now with program and submission
-- names. Explicit column lists: a view on o.* would block dropping deprecated columns.
DROP VIEW IF EXISTS petri_observations_with_names;
CREATE VIEW petri_observations_with_names AS
SELECT o.observation_id, o.submission_id, o.site_id, o.program_id, o.petri_code,
       o.fungicide_used, o.placement, o.growth_index, o.outdoor_temperature, o.image_url,
       o.notes, o.created_at, o.updated_at,
       s.name AS site_name, p.name AS program_name, sub.global_submission_id
  FROM petri_observations o
  JOIN sites s ON s.site_id = o.site_id
  JOIN pilot_programs p ON p.program_id = o.program_id
  JOIN submissions sub ON sub.submission_id = o.submission_id;

DROP VIEW IF EXISTS gasifier_observations_with_names;
CREATE VIEW gasifier_observations_with_names AS
SELECT o.observation_id, o.submission_id, o.site_id, o.program_id, o.gasifier_code,
       o.chemical_type, o.measure, o.anomaly, o.placement_height, o.directional_placement,
       o.linear_reading, o.image_url, o.notes, o.created_at, o.updated_at,
       s.name AS site_name, p.name AS program_name, sub.global_submission_id
  FROM gasifier_observations o
  JOIN sites s ON s.site_id = o.site_id
  JOIN pilot_programs p ON p.program_id = o.program_id
  JOIN submissions sub ON sub.submission_id = o.submission_id;
