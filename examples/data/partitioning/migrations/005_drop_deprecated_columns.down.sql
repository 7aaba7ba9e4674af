-- Put the columns back and refill them from the old tables (kept as *_old until --cleanup).
ALTER TABLE petri_observations
    ADD COLUMN IF NOT EXISTS legacy_growth_color text,
    ADD COLUMN IF NOT EXISTS old_placement_code text;
ALTER TABLE gasifier_observations
    ADD COLUMN IF NOT EXISTS legacy_flow_rate numeric(8,3);
UPDATE petri_observations n
   SET legacy_growth_color = o.legacy_growth_color, old_placement_code = o.old_placement_code
  FROM petri_observations_old o
 WHERE o.observation_id = n.observation_id AND o.created_at = n.created_at
   AND (o.legacy_growth_color IS NOT NULL OR o.old_placement_code IS NOT NULL);
UPDATE gasifier_observations n
   SET legacy_flow_rate = o.legacy_flow_rate
  FROM gasifier_observations_old o
 WHERE o.observation_id = n.observation_id AND o.created_at = n.created_at
   AND o.legacy_flow_rate IS NOT NULL;
