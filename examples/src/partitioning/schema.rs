//! The source schema the migration starts from (the seed does not give it): sites, pilot
//! programs and submissions, and the two observation tables referencing them — with some
//! foreign keys missing, deprecated columns, and the views the application reads.

use sqlx::PgConnection;

/// The observation tables the migration partitions.
pub const TABLES: [&str; 2] = ["petri_observations", "gasifier_observations"];

/// The source schema (idempotent only as a whole: run on a database without it).
pub const SOURCE_DDL: &str = r#"
CREATE TABLE sites (
    site_id    uuid PRIMARY KEY,
    name       text NOT NULL,
    site_type  text NOT NULL CHECK (site_type IN ('Greenhouse', 'Storage', 'Transport', 'Production')),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE pilot_programs (
    program_id uuid PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    status     text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')),
    start_date date NOT NULL,
    end_date   date NOT NULL
);
CREATE TABLE submissions (
    submission_id        uuid PRIMARY KEY,
    site_id              uuid NOT NULL REFERENCES sites (site_id),
    program_id           uuid NOT NULL REFERENCES pilot_programs (program_id),
    global_submission_id bigint NOT NULL UNIQUE,
    temperature          numeric(5,2),
    humidity             numeric(5,2),
    created_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX submissions_site_idx ON submissions (site_id);

CREATE TABLE petri_observations (
    observation_id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    submission_id              uuid NOT NULL REFERENCES submissions (submission_id),
    site_id                    uuid NOT NULL REFERENCES sites (site_id),
    program_id                 uuid NOT NULL,           -- no foreign key yet
    petri_code                 text NOT NULL,
    fungicide_used             text NOT NULL CHECK (fungicide_used IN ('Yes', 'No')),
    surrounding_water_schedule text,
    placement                  text,
    growth_index               numeric(6,2),
    outdoor_temperature        numeric(5,2),
    image_url                  text,
    notes                      text,
    legacy_growth_color        text,                    -- deprecated
    old_placement_code         text,                    -- deprecated
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX petri_observations_created_id_idx ON petri_observations (created_at, observation_id);
CREATE INDEX petri_observations_submission_idx ON petri_observations (submission_id);

CREATE TABLE gasifier_observations (
    observation_id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    submission_id         uuid NOT NULL,                -- no foreign keys at all
    site_id               uuid NOT NULL,
    program_id            uuid NOT NULL,
    gasifier_code         text NOT NULL,
    chemical_type         text NOT NULL CHECK (chemical_type IN ('Geraniol', 'CLO2', 'Acetic Acid', 'Citronella Blend', 'Essential Oils Blend')),
    measure               numeric(8,3),
    anomaly               boolean NOT NULL DEFAULT false,
    placement_height      text,
    directional_placement text,
    linear_reading        numeric(6,2),
    image_url             text,
    notes                 text,
    legacy_flow_rate      numeric(8,3),                 -- deprecated
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX gasifier_observations_created_id_idx ON gasifier_observations (created_at, observation_id);

CREATE VIEW petri_observations_with_names AS
SELECT o.observation_id, o.submission_id, o.petri_code, o.growth_index, o.created_at,
       s.name AS site_name
  FROM petri_observations o JOIN sites s ON s.site_id = o.site_id;

CREATE VIEW gasifier_observations_with_names AS
SELECT o.observation_id, o.submission_id, o.gasifier_code, o.measure, o.created_at,
       s.name AS site_name
  FROM gasifier_observations o JOIN sites s ON s.site_id = o.site_id;
"#;

/// Whether the source tables exist.
pub async fn exists(conn: &mut PgConnection) -> anyhow::Result<bool> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM unnest($1::text[]) t WHERE to_regclass(t) IS NOT NULL",
    )
    .bind(TABLES.map(str::to_owned).to_vec())
    .fetch_one(conn)
    .await?;
    Ok(n == TABLES.len() as i64)
}

/// Create the source schema.
pub async fn create(conn: &mut PgConnection) -> anyhow::Result<()> {
    sqlx::raw_sql(SOURCE_DDL).execute(conn).await?;
    Ok(())
}
