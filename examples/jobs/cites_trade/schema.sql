-- The CITES database objects (idempotent); used by the cites_trade example and
-- examples/jobs/cites_trade.toml.
CREATE TABLE IF NOT EXISTS species (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    scientific_name text NOT NULL,
    common_name text NOT NULL DEFAULT '',
    kingdom text NOT NULL DEFAULT '',
    phylum text NOT NULL DEFAULT '',
    class text NOT NULL DEFAULT '',
    order_name text NOT NULL DEFAULT '',
    family text NOT NULL DEFAULT '',
    genus text NOT NULL DEFAULT '',
    species_name text NOT NULL DEFAULT '',
    authority text,
    sis_id integer,
    inaturalist_id integer,
    created_at timestamptz DEFAULT now()
);
CREATE INDEX IF NOT EXISTS species_scientific_name_idx ON species (scientific_name);
CREATE TABLE IF NOT EXISTS species_synonyms (
    synonym text PRIMARY KEY,
    scientific_name text NOT NULL,
    note text
);
CREATE TABLE IF NOT EXISTS cites_listings (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    species_id uuid NOT NULL REFERENCES species(id) ON DELETE CASCADE,
    appendix text NOT NULL,
    listing_date date NOT NULL,
    notes text,
    is_current boolean DEFAULT false
);
CREATE TABLE IF NOT EXISTS cites_trade_records (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    species_id uuid NOT NULL REFERENCES species(id) ON DELETE CASCADE,
    record_id text,
    year integer NOT NULL,
    appendix text NOT NULL,
    taxon text NOT NULL,
    class text,
    order_name text,
    family text,
    genus text,
    term text NOT NULL,
    quantity numeric,
    unit text,
    importer text,
    exporter text,
    origin text,
    purpose text,
    source text,
    reporter_type text,
    import_permit text,
    export_permit text,
    origin_permit text
);
CREATE INDEX IF NOT EXISTS cites_trade_records_species_id_idx ON cites_trade_records (species_id);
CREATE INDEX IF NOT EXISTS cites_trade_records_year_idx ON cites_trade_records (year);
CREATE INDEX IF NOT EXISTS cites_trade_records_record_id_idx ON cites_trade_records (record_id);
CREATE INDEX IF NOT EXISTS idx_cites_trade_species_year ON cites_trade_records (species_id, year);
CREATE TABLE IF NOT EXISTS migration_stats_pre (
    run_id uuid,
    table_name text,
    record_count bigint,
    unique_species bigint,
    min_year integer,
    max_year integer,
    snapshot_time timestamptz
);
CREATE TABLE IF NOT EXISTS species_trade_summary (
    species_id uuid PRIMARY KEY REFERENCES species(id) ON DELETE CASCADE,
    last_updated_at timestamptz,
    total_trade_records integer,
    overall_min_year integer,
    overall_max_year integer,
    overall_total_quantity numeric,
    distinct_years jsonb,
    distinct_terms jsonb,
    distinct_importers jsonb,
    distinct_exporters jsonb,
    annual_summaries jsonb
);
CREATE TABLE IF NOT EXISTS species_trade_summary_annual (
    species_id uuid NOT NULL REFERENCES species(id) ON DELETE CASCADE,
    year integer NOT NULL,
    total_records integer NOT NULL,
    total_quantity numeric NOT NULL,
    min_year integer NOT NULL,
    max_year integer NOT NULL,
    summary_type text NOT NULL DEFAULT 'annual'
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_summary_species_year
    ON species_trade_summary_annual (species_id, year);
