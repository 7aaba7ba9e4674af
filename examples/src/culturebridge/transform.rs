//! Mapping of typed Bubble things to target rows: the columns of every type are declared in
//! `mapping.toml` ([`declared`]: codes, JSON, lists, decimals, ranges, UUIDv5 ids, references
//! through [`MapState`], one profile per user); the rules of the migration's own are here:
//! one e-mail per user and the password columns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use etl_sink_postgres::idmap::IdMap;
use etl_source_bubble::TypeSchema;
use etl_source_bubble::declared::{MappingFile, Rule};
use etl_source_bubble::mapping::{MapState, RejectLog, RowMap, reject};
use uuid::Uuid;

/// The declared mapping (`mapping.toml`, checked when first used and by a unit test).
pub fn declared() -> &'static Arc<MappingFile> {
    static FILE: OnceLock<Arc<MappingFile>> = OnceLock::new();
    FILE.get_or_init(|| {
        let file = MappingFile::from_toml(include_str!("mapping.toml"));
        Arc::new(file.unwrap_or_else(|e| panic!("culturebridge/mapping.toml: {e}")))
    })
}

/// The ids of the migration ([`MappingFile::new_id`]), mapped in `bubble_id_map`.
pub fn id_map() -> IdMap {
    IdMap::new(&declared().id_namespace, "bubble_id_map", "bubble")
}

/// The new id of a Bubble thing, the same on every run.
pub fn new_id(bubble_type: &str, bubble_id: &str) -> Uuid {
    declared().new_id(bubble_type, bubble_id)
}

/// What the mappings of one run share: references and rejects ([`MapState`]) and who keeps
/// each e-mail.
pub struct Ctx {
    /// Accepted and rejected ids, the reject log, the high-water mark.
    pub state: Arc<MapState>,
    /// Lower-cased e-mail -> the Bubble id that keeps it (earliest `Created Date`, or the
    /// user already in the database).
    pub email_owner: Mutex<HashMap<String, String>>,
}

impl Ctx {
    /// A context writing rejects to `log`.
    pub fn new(log: RejectLog) -> Self {
        Ctx {
            state: Arc::new(MapState::new(log)),
            email_owner: Mutex::default(),
        }
    }
}

/// The mapping of `spec`'s type into its target table (filtered when not migrated).
pub fn mapping(spec: Arc<TypeSchema>, ctx: Arc<Ctx>) -> RowMap {
    let state = ctx.state.clone();
    if spec.bubble_type != "user" {
        return declared().row_map(spec, state, None);
    }
    // A user keeps an e-mail only if it is its owner; the Data API returns no passwords,
    // so a user without a hash from `--users-csv` must reset it.
    let rule: Arc<Rule> = Arc::new(move |row, values, counts| {
        let email = values.get("email").unwrap_or_default();
        if let Some(owner) = ctx.email_owner.lock().expect("lock").get(email)
            && owner != row.id()
        {
            let why = format!("email `{email}` is already used by user `{owner}`");
            return Err(reject("email", "duplicate_email", why));
        }
        let hash = row.raw("password_hash");
        if hash.is_none() {
            *counts.entry("password_reset_required".into()).or_default() += 1;
        }
        values.set("password_hash", hash.map(str::to_owned));
        values.set("password_reset_required", Some(hash.is_none().to_string()));
        Ok(())
    });
    declared()
        .row_map(spec, state, Some(rule))
        .keep_raw(&["password_hash"])
}
