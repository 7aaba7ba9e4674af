//! `Taxon` -> `species.id`: the species mapping transform.
//!
//! The species table is loaded once into memory (an [`etl_validate::lookup::Lookup`]). A
//! `Taxon` matches a species by exact, case-sensitive `scientific_name`, or through the
//! `species_synonyms` table (pairs used in both directions: CITES still writes `Branta
//! canadensis leucopareia` where a newer list says `Branta hutchinsii leucopareia`). A row
//! that matches nothing is never dropped silently: it is *filtered* with reason `unmatched
//! species`, counted per taxon, and the match rate is gated.

use std::collections::HashSet;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use etl_core::{Batch, Error, Fate, Result, Stage, Transform};
use etl_validate::lookup::{Lookup, Unmatched, id_array};
use sqlx::PgConnection;
use uuid::Uuid;

use super::schema::CITES_COLUMNS;

/// Filter reason of rows whose taxon is not in the species table.
pub const UNMATCHED: &str = "unmatched species";
/// Filter reason of rows outside the Arctic list (seed 001).
pub const NOT_ARCTIC: &str = "not an Arctic species";
/// Filter reason of rows outside `--year`.
pub const OTHER_YEAR: &str = "outside --year";

/// Namespace of the deterministic row ids, so a rerun or a resume gives every record the
/// same id (see [`row_id`]).
pub const ROW_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6a1e_6c2e_0b6f_4c3e_9d2a_5f3b_c1e7_a001);

/// The row id of CITES record `id`: a version-8 UUID whose first half is the namespace and
/// whose second half is the record id itself (with the RFC 9562 variant bits, which a
/// CITES id — ten digits, far below 2^62 — never uses). Unique exactly when the record ids
/// are, deterministic, and free to compute (no hashing: 28 M SHA-1s would cost seconds).
/// Ids outside `0..2^62` fall back to a version-5 UUID of the id.
pub fn row_id(id: i64) -> [u8; 16] {
    etl_validate::columns::embedded_id(&ROW_ID_NAMESPACE, id)
}

/// Target column of each CSV column, in [`CITES_COLUMNS`] order.
pub const TARGET_COLUMNS: [&str; 20] = [
    "record_id",
    "year",
    "appendix",
    "taxon",
    "class",
    "order_name",
    "family",
    "genus",
    "term",
    "quantity",
    "unit",
    "importer",
    "exporter",
    "origin",
    "purpose",
    "source",
    "reporter_type",
    "import_permit",
    "export_permit",
    "origin_permit",
];

/// The species lookup: `scientific_name` -> `species.id` (the first by `created_at`, `id`
/// wins; repeated names are listed in `ambiguous`), with `species_synonyms` both ways.
pub type SpeciesMap = Lookup;

/// Load the species lookup from `species` and `species_synonyms`.
///
/// # Errors
/// A query fails.
pub async fn load_species(conn: &mut PgConnection) -> etl_core::Result<SpeciesMap> {
    let species = "SELECT scientific_name, id FROM species ORDER BY scientific_name, created_at NULLS LAST, id";
    let synonyms = "SELECT synonym, scientific_name FROM species_synonyms ORDER BY 1";
    Lookup::load(conn, species, Some(synonyms)).await
}

/// Which rows are in scope.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Only these taxa (and their synonyms); others are filtered `not an Arctic species`.
    pub taxa: Option<HashSet<String>>,
    /// Only this year; others are filtered `outside --year`.
    pub year: Option<i32>,
}

impl Scope {
    /// Restrict to `names`, extended with their synonyms from `pairs`.
    pub fn taxa_with_synonyms(names: &[String], pairs: &[(String, String)]) -> HashSet<String> {
        let mut set: HashSet<String> = names.iter().cloned().collect();
        for (a, b) in pairs {
            if set.contains(a) || set.contains(b) {
                set.insert(a.clone());
                set.insert(b.clone());
            }
        }
        set
    }
}

/// Maps taxa to species ([`Lookup::resolve`], with the scope decided in the same pass),
/// renames the CSV columns to the table's, and adds the row `id` and `species_id`.
#[derive(Debug)]
pub struct SpeciesMapping {
    map: SpeciesMap,
    scope: Scope,
    unmatched: Unmatched,
    output: SchemaRef,
}

impl SpeciesMapping {
    /// A mapping over `map` for rows in `scope`.
    pub fn new(map: SpeciesMap, scope: Scope) -> Self {
        let input = super::schema::cites_schema();
        let mut fields = vec![
            Field::new("id", DataType::FixedSizeBinary(16), false),
            Field::new("species_id", DataType::FixedSizeBinary(16), false),
        ];
        for (f, target) in input.fields().iter().zip(TARGET_COLUMNS) {
            fields.push(Field::new(target, f.data_type().clone(), f.is_nullable()));
        }
        let (unmatched, output) = (Unmatched::default(), Arc::new(Schema::new(fields)));
        SpeciesMapping {
            map,
            scope,
            unmatched,
            output,
        }
    }

    /// Unmatched taxa with their row counts, most frequent first.
    pub fn unmatched(&self) -> Vec<(String, u64)> {
        self.unmatched.sorted()
    }

    /// The species map.
    pub fn map(&self) -> &SpeciesMap {
        &self.map
    }
}

impl Transform for SpeciesMapping {
    fn name(&self) -> &str {
        "species_mapping"
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef> {
        let names: Vec<&str> = input.fields().iter().map(|f| f.name().as_str()).collect();
        if names != CITES_COLUMNS {
            return Err(Error::Schema {
                stage: Stage::Transform,
                component: "species_mapping".into(),
                detail: format!("expected the CITES columns, got {names:?}"),
            });
        }
        Ok(self.output.clone())
    }

    fn transform(&self, mut batch: Batch) -> Result<Batch> {
        let n = batch.num_rows();
        let mut fates: Vec<Option<Fate>> = vec![None; n];
        let mut species: Vec<u8> = Vec::with_capacity(n * 16);
        let data = batch.data.clone();
        let years = data.column(1).as_primitive::<Int32Type>();
        let filter = |reason: &str| {
            Some(Fate::Filter {
                reason: reason.into(),
            })
        };
        let r = self.map.resolve(
            data.column(3),
            &mut fates,
            &mut species,
            UNMATCHED,
            |i, taxon| match (self.scope.year, &self.scope.taxa) {
                (Some(y), _) if years.value(i) != y => filter(OTHER_YEAR),
                (_, Some(set)) if !set.contains(taxon) => filter(NOT_ARCTIC),
                _ => None,
            },
        )?;
        batch.count("species_matched", r.matched);
        batch.count("species_unmatched", r.unmatched);
        self.unmatched.add(r.by_value);
        batch.apply_fates(&fates)?;
        let ids = batch.data.column(0).as_primitive::<Int64Type>();
        debug_assert_eq!(ids.null_count(), 0);
        let mut row_ids = Vec::with_capacity(ids.len() * 16);
        for id in ids.values().iter() {
            row_ids.extend_from_slice(&row_id(*id));
        }
        let mut columns: Vec<ArrayRef> = vec![id_array(row_ids), id_array(species)];
        columns.extend(batch.data.columns().iter().cloned());
        batch.data = RecordBatch::try_new(self.output.clone(), columns)?;
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_ids_are_valid_deterministic_uuids_that_keep_the_record_id() {
        let u = Uuid::from_bytes(row_id(7_592_925_716));
        assert_eq!(u.get_version_num(), 8);
        assert_eq!(u.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(u, Uuid::from_bytes(row_id(7_592_925_716)));
        assert_ne!(u, Uuid::from_bytes(row_id(7_592_925_717)));
        assert_eq!(u.as_u128() as u64 & !(1 << 63), 7_592_925_716);
        assert_eq!(Uuid::from_bytes(row_id(-1)).get_version_num(), 5);
    }
}
