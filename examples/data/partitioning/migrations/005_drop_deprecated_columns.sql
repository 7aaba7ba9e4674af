-- Deprecated columns (seed 002: "clean up deprecated columns"). Dropping a column only
-- changes the catalog: instant, no rewrite. The old tables (*_old) keep them until --cleanup.
ALTER TABLE petri_observations
    DROP COLUMN IF EXISTS legacy_growth_color,
    DROP COLUMN IF EXISTS old_placement_code;
ALTER TABLE gasifier_observations
    DROP COLUMN IF EXISTS legacy_flow_rate;
