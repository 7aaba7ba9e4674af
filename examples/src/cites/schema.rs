//! The CITES database objects, created idempotently with the original project's columns
//! (see `examples/data/README.md`), and the species / synonym seed lists (read with
//! [`etl_source_csv::read_pairs`]).

use std::sync::Arc;

use anyhow::Context as _;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use sqlx::{Executor, PgConnection};

/// Tables of the CITES migration.
pub const LIVE: &str = "cites_trade_records";
/// Per-file migration log (seed 000 §1.3).
pub const MIGRATION_LOG: &str = "cites_migration_log";
/// Rejected lines (seed 000 §3.1).
pub const IMPORT_ERRORS: &str = "cites_trade_import_errors";
/// Aggregated summaries, one row per species.
pub const SUMMARY: &str = "species_trade_summary";
/// The seed's summary shape (000 §6.2: one row per species and year, `summary_type =
/// 'annual'`, index `idx_summary_species_year`), beside the application's table.
pub const SUMMARY_ANNUAL: &str = "species_trade_summary_annual";

/// Every statement is idempotent (`IF NOT EXISTS`), so it runs on every start.
///
/// Differences from the original, on purpose: `quantity` is `numeric` (the original
/// `numeric(10,2)` overflowed and rounded real quantities); every CSV column is kept
/// (`record_id`, `reporter_type`, the three permit ids); `record_id` gets an index (the
/// duplicate check and lookups by CITES id use it); the seed's `(species_id, year)` index
/// (§4.3) is on the live table, so staging gets it too; `migration_stats_pre` (§1.2) keeps
/// one row per run; the seed's per-year summary (§6.2) is its own table,
/// `species_trade_summary_annual`, since `species_trade_summary` is keyed by species and
/// the application reads its JSON shape. `species.scientific_name` stays
/// non-unique as in production.
pub const DDL: &str = r#"
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
"#;

/// Create every table the migration needs (idempotent).
pub async fn ensure(conn: &mut PgConnection) -> anyhow::Result<()> {
    conn.execute(DDL)
        .await
        .context("creating the CITES tables")?;
    Ok(())
}

/// Add species (`scientific_name,common_name`) that are not there yet; returns how many
/// were added. Existing rows are never changed.
pub async fn add_species(
    conn: &mut PgConnection,
    species: &[(String, String)],
) -> anyhow::Result<u64> {
    let names: Vec<&str> = species.iter().map(|(n, _)| n.as_str()).collect();
    let commons: Vec<&str> = species.iter().map(|(_, c)| c.as_str()).collect();
    let r = sqlx::query(
        "INSERT INTO species (scientific_name, common_name, genus, species_name)
         SELECT DISTINCT ON (n) n, c, split_part(n, ' ', 1), n
           FROM UNNEST($1::text[], $2::text[]) AS s(n, c)
          WHERE NOT EXISTS (SELECT 1 FROM species sp WHERE sp.scientific_name = s.n)",
    )
    .bind(&names)
    .bind(&commons)
    .execute(conn)
    .await
    .context("adding species")?;
    Ok(r.rows_affected())
}

/// Add synonym pairs (`synonym,scientific_name`), replacing an existing pair's target.
pub async fn add_synonyms(
    conn: &mut PgConnection,
    pairs: &[(String, String)],
) -> anyhow::Result<u64> {
    let a: Vec<&str> = pairs.iter().map(|(x, _)| x.as_str()).collect();
    let b: Vec<&str> = pairs.iter().map(|(_, y)| y.as_str()).collect();
    let r = sqlx::query(
        "INSERT INTO species_synonyms (synonym, scientific_name)
         SELECT * FROM UNNEST($1::text[], $2::text[])
         ON CONFLICT (synonym) DO UPDATE SET scientific_name = EXCLUDED.scientific_name",
    )
    .bind(&a)
    .bind(&b)
    .execute(conn)
    .await
    .context("adding species synonyms")?;
    Ok(r.rows_affected())
}

/// The header names of the CITES trade database CSV files, in file order.
pub const CITES_COLUMNS: [&str; 20] = [
    "Id",
    "Year",
    "Appendix",
    "Taxon",
    "Class",
    "Order",
    "Family",
    "Genus",
    "Term",
    "Quantity",
    "Unit",
    "Importer",
    "Exporter",
    "Origin",
    "Purpose",
    "Source",
    "Reporter.type",
    "Import.permit.RandomID",
    "Export.permit.RandomID",
    "Origin.permit.RandomID",
];

/// The schema of the CITES trade database, with the CSV header names as field names.
///
/// `Id` Int64 and `Year` Int32 (non-null); `Quantity` Decimal128(38, 10) (nullable:
/// quantities are fractional and reach billions); `Appendix`, `Taxon`, `Term` non-null
/// Utf8View; every other column nullable Utf8View.
///
/// ```
/// let schema = etl_examples::cites::schema::cites_schema();
/// assert_eq!(schema.fields().len(), 20);
/// assert_eq!(schema.field(9).name(), "Quantity");
/// ```
pub fn cites_schema() -> SchemaRef {
    let fields = CITES_COLUMNS
        .iter()
        .map(|&name| match name {
            "Id" => Field::new(name, DataType::Int64, false),
            "Year" => Field::new(name, DataType::Int32, false),
            "Quantity" => Field::new(name, DataType::Decimal128(38, 10), true),
            "Appendix" | "Taxon" | "Term" => Field::new(name, DataType::Utf8View, false),
            _ => Field::new(name, DataType::Utf8View, true),
        })
        .collect::<Vec<_>>();
    Arc::new(Schema::new(fields))
}
