//! [`JsonCheckpoint`]: committed units (and free values) in a JSON file, written atomically.
//!
//! For sinks whose writes cannot share a transaction with their checkpoint (DynamoDB, files,
//! object stores): a unit's "commit" is every write done (idempotently: puts by key, a file
//! renamed into place), then the unit recorded here. A crash between the two redoes the
//! unit on `--resume`, overwriting the same items; a unit recorded here is never redone.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::UnitSummary;
use serde_json::{Map, Value, json};

use crate::{Error, Result};

/// Serializes read-modify-write of checkpoint files within the process.
static FILE_LOCK: Mutex<()> = Mutex::new(());

/// One scope (`load:sales`) of a checkpoint file shared by several writers.
///
/// File shape: `{"scopes": {"<scope>": {"units": {"<unit>": UnitSummary}, "values": {..}}}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonCheckpoint {
    path: PathBuf,
    scope: String,
}

impl JsonCheckpoint {
    /// Scope `scope` of the file at `path` (created on first write).
    pub fn new(path: impl Into<PathBuf>, scope: impl Into<String>) -> Self {
        JsonCheckpoint {
            path: path.into(),
            scope: scope.into(),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The scope.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    fn err(&self, reason: impl Into<String>) -> Error {
        Error::Checkpoint {
            path: self.path.display().to_string(),
            reason: reason.into(),
        }
    }

    fn read(&self) -> Result<Value> {
        match std::fs::read(&self.path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| self.err(format!("invalid JSON: {e}")))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({"scopes": {}})),
            Err(e) => Err(self.err(e.to_string())),
        }
    }

    fn update(&self, f: impl FnOnce(&mut Map<String, Value>)) -> Result<()> {
        let _guard = FILE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let mut doc = self.read()?;
        let scopes = doc
            .as_object_mut()
            .ok_or_else(|| self.err("not a JSON object"))?
            .entry("scopes")
            .or_insert_with(|| json!({}));
        let scope = scopes
            .as_object_mut()
            .ok_or_else(|| self.err("`scopes` is not an object"))?
            .entry(self.scope.clone())
            .or_insert_with(|| json!({"units": {}, "values": {}}));
        let scope = scope
            .as_object_mut()
            .ok_or_else(|| self.err(format!("scope `{}` is not an object", self.scope)))?;
        f(scope);
        if let Some(obj) = doc.as_object_mut() {
            obj.insert("updated_at".into(), json!(chrono::Utc::now().to_rfc3339()));
        }
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| self.err(e.to_string()))?;
        }
        let bytes = serde_json::to_vec_pretty(&doc).map_err(|e| self.err(e.to_string()))?;
        crate::report::write_atomic(&self.path, &bytes).map_err(|e| self.err(e.to_string()))
    }

    fn scope_value(&self) -> Result<Option<Value>> {
        let doc = self.read()?;
        Ok(doc.get("scopes").and_then(|s| s.get(&self.scope)).cloned())
    }

    /// Units recorded as committed in this scope.
    pub fn completed(&self) -> Result<Vec<UnitSummary>> {
        let Some(scope) = self.scope_value()? else {
            return Ok(Vec::new());
        };
        let Some(units) = scope.get("units").and_then(Value::as_object) else {
            return Ok(Vec::new());
        };
        units
            .values()
            .map(|v| {
                serde_json::from_value(v.clone())
                    .map_err(|e| self.err(format!("bad unit entry in `{}`: {e}", self.scope)))
            })
            .collect()
    }

    /// Record a committed unit.
    pub fn record(&self, summary: &UnitSummary) -> Result<()> {
        let v = serde_json::to_value(summary).map_err(|e| self.err(e.to_string()))?;
        self.update(|scope| {
            if let Some(units) = scope
                .entry("units")
                .or_insert_with(|| json!({}))
                .as_object_mut()
            {
                units.insert(summary.name.clone(), v);
            }
        })
    }

    /// Forget this scope (a fresh, non-resumed run).
    pub fn reset(&self) -> Result<()> {
        self.update(|scope| {
            scope.insert("units".into(), json!({}));
            scope.insert("values".into(), json!({}));
        })
    }

    /// A free value of this scope (`last_key`, `phase_done`).
    pub fn get(&self, key: &str) -> Result<Option<Value>> {
        Ok(self
            .scope_value()?
            .and_then(|s| s.get("values").and_then(|v| v.get(key)).cloned()))
    }

    /// Set a free value of this scope.
    pub fn set(&self, key: &str, value: Value) -> Result<()> {
        self.update(|scope| {
            if let Some(values) = scope
                .entry("values")
                .or_insert_with(|| json!({}))
                .as_object_mut()
            {
                values.insert(key.to_owned(), value);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_share_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/.checkpoint.json");
        let a = JsonCheckpoint::new(&path, "load:sales");
        let b = JsonCheckpoint::new(&path, "load:buyers");
        let mut u = UnitSummary::new("sales[0..100)");
        u.read = 100;
        u.loaded = 100;
        a.record(&u).unwrap();
        b.set("done", json!(true)).unwrap();
        assert_eq!(a.completed().unwrap(), vec![u]);
        assert!(b.completed().unwrap().is_empty());
        assert_eq!(b.get("done").unwrap(), Some(json!(true)));
        a.reset().unwrap();
        assert!(a.completed().unwrap().is_empty());
        assert_eq!(b.get("done").unwrap(), Some(json!(true)));
    }
}
