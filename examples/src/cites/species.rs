//! `Taxon` -> `species.id`: the species mapping transform.
//!
//! The species table is loaded once into memory. A `Taxon` matches a species by exact,
//! case-sensitive `scientific_name`, or through the `species_synonyms` table (pairs used in
//! both directions: CITES still writes `Branta canadensis leucopareia` where a newer list
//! says `Branta hutchinsii leucopareia`). A row that matches nothing is never dropped
//! silently: it is *filtered* with reason `unmatched species`, counted per taxon, and the
//! match rate is gated.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{Array, ArrayRef, FixedSizeBinaryArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use etl_core::{Batch, Error, Fate, Result, Stage, Transform};
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
    if (0..1 << 62).contains(&id) {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&ROW_ID_NAMESPACE.as_bytes()[..8]);
        b[6] = (b[6] & 0x0f) | 0x80;
        b[8..].copy_from_slice(&(id as u64 | 1 << 63).to_be_bytes());
        b
    } else {
        *Uuid::new_v5(&ROW_ID_NAMESPACE, &id.to_be_bytes()).as_bytes()
    }
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

/// The species lookup, loaded once.
#[derive(Debug, Clone, Default)]
pub struct SpeciesMap {
    ids: HashMap<String, Uuid>,
    /// Names that appear more than once in `species` (the first by `created_at`, `id` wins).
    pub ambiguous: Vec<String>,
    /// Names reached only through a synonym.
    pub via_synonym: Vec<(String, String)>,
}

impl SpeciesMap {
    /// Load `species` and `species_synonyms`.
    pub async fn load(conn: &mut PgConnection) -> anyhow::Result<Self> {
        let rows: Vec<(String, Uuid, i64)> = sqlx::query_as(
            "SELECT scientific_name, id, count(*) OVER (PARTITION BY scientific_name)
               FROM species ORDER BY scientific_name, created_at NULLS LAST, id",
        )
        .fetch_all(&mut *conn)
        .await?;
        let mut map = SpeciesMap::default();
        for (name, id, n) in rows {
            if n > 1 && !map.ids.contains_key(&name) {
                map.ambiguous.push(name.clone());
            }
            map.ids.entry(name).or_insert(id);
        }
        let synonyms: Vec<(String, String)> =
            sqlx::query_as("SELECT synonym, scientific_name FROM species_synonyms ORDER BY 1")
                .fetch_all(&mut *conn)
                .await?;
        map.add_synonyms(&synonyms);
        Ok(map)
    }

    /// A map from explicit pairs (dry runs and tests).
    pub fn from_pairs(
        species: impl IntoIterator<Item = (String, Uuid)>,
        synonyms: &[(String, String)],
    ) -> Self {
        let mut map = SpeciesMap::default();
        for (n, id) in species {
            map.ids.entry(n).or_insert(id);
        }
        map.add_synonyms(synonyms);
        map
    }

    /// Map each pair's missing side to the id of its present side.
    pub fn add_synonyms(&mut self, pairs: &[(String, String)]) {
        for (a, b) in pairs {
            match (self.ids.get(a).copied(), self.ids.get(b).copied()) {
                (None, Some(id)) => {
                    self.ids.insert(a.clone(), id);
                    self.via_synonym.push((a.clone(), b.clone()));
                }
                (Some(id), None) => {
                    self.ids.insert(b.clone(), id);
                    self.via_synonym.push((b.clone(), a.clone()));
                }
                _ => {}
            }
        }
    }

    /// Map `name` to `id` unless it maps already.
    pub fn insert_if_absent(&mut self, name: &str, id: Uuid) {
        self.ids.entry(name.to_owned()).or_insert(id);
    }

    /// The species id of a taxon.
    pub fn get(&self, taxon: &str) -> Option<Uuid> {
        self.ids.get(taxon).copied()
    }

    /// Number of names (including synonyms) that map.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no name maps.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
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

/// Maps taxa to species, renames the CSV columns to the table's, and adds the row `id`
/// and `species_id`.
#[derive(Debug)]
pub struct SpeciesMapping {
    map: SpeciesMap,
    scope: Scope,
    unmatched: Mutex<HashMap<String, u64>>,
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
        SpeciesMapping {
            map,
            scope,
            unmatched: Mutex::new(HashMap::new()),
            output: Arc::new(Schema::new(fields)),
        }
    }

    /// Unmatched taxa with their row counts, most frequent first.
    pub fn unmatched(&self) -> Vec<(String, u64)> {
        let m = self.unmatched.lock().expect("lock");
        let mut v: Vec<(String, u64)> = m.iter().map(|(k, v)| (k.clone(), *v)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }

    /// The species map.
    pub fn map(&self) -> &SpeciesMap {
        &self.map
    }
}

fn uuid_array(bytes: Vec<u8>) -> ArrayRef {
    Arc::new(FixedSizeBinaryArray::new(16, bytes.into(), None))
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
        let mut unmatched: BTreeMap<&str, u64> = BTreeMap::new();
        let (mut matched, mut not_matched) = (0u64, 0u64);
        {
            let taxa = batch.data.column(3).as_string_view();
            let years = batch.data.column(1).as_primitive::<Int32Type>();
            for (i, fate) in fates.iter_mut().enumerate() {
                let taxon = taxa.value(i);
                if let Some(y) = self.scope.year
                    && years.value(i) != y
                {
                    *fate = Some(Fate::Filter {
                        reason: OTHER_YEAR.into(),
                    });
                    continue;
                }
                if let Some(set) = &self.scope.taxa
                    && !set.contains(taxon)
                {
                    *fate = Some(Fate::Filter {
                        reason: NOT_ARCTIC.into(),
                    });
                    continue;
                }
                match self.map.get(taxon) {
                    Some(id) => {
                        species.extend_from_slice(id.as_bytes());
                        matched += 1;
                    }
                    None => {
                        *unmatched.entry(taxon).or_default() += 1;
                        not_matched += 1;
                        *fate = Some(Fate::Filter {
                            reason: UNMATCHED.into(),
                        });
                    }
                }
            }
        }
        if !unmatched.is_empty() {
            let mut m = self.unmatched.lock().expect("lock");
            for (k, v) in unmatched {
                *m.entry(k.to_owned()).or_default() += v;
            }
        }
        batch.count("species_matched", matched);
        batch.count("species_unmatched", not_matched);
        batch.apply_fates(&fates)?;
        let ids = batch.data.column(0).as_primitive::<Int64Type>();
        let mut row_ids = Vec::with_capacity(ids.len() * 16);
        for id in ids.values().iter() {
            row_ids.extend_from_slice(&row_id(*id));
        }
        debug_assert_eq!(ids.null_count(), 0);
        let mut columns = vec![uuid_array(row_ids), uuid_array(species)];
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
