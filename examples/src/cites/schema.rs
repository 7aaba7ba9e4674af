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
pub const DDL: &str = include_str!("../../jobs/cites_trade/schema.sql");

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
