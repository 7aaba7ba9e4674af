//! [`RowWindow`]: rows `offset..offset + limit` of an entity in key order (a migration in
//! batches: `--offset 0 --limit 100`, then `--offset 100`), as key bounds recorded once
//! per run so that a resumed run reads exactly the rows it started with.

use etl_core::checkpoint::JsonCheckpoint;
use serde_json::{Value, json};

use crate::entity::Key;
use crate::error::{PgSourceError, Result};
use crate::source::PgSource;

/// Rows `offset..offset + limit` of an entity in key order (after its filters).
///
/// ```
/// use etl_source_postgres::RowWindow;
/// let w = RowWindow::new(Some(100), None, 100).unwrap();
/// assert_eq!(w.stem("buyers"), "buyers.rows-100-200");
/// assert_eq!(w.to_string(), "rows 100..200 in key order");
/// assert!(RowWindow::new(None, None, 100).is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowWindow {
    /// Rows skipped, in key order.
    pub offset: u64,
    /// Rows in the window.
    pub limit: u64,
}

impl std::fmt::Display for RowWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rows {}..{} in key order", self.offset, self.end())
    }
}

impl RowWindow {
    /// A window when `offset` or `limit` is given; `limit` defaults to `default_limit`.
    pub fn new(offset: Option<u64>, limit: Option<u64>, default_limit: u64) -> Option<Self> {
        (offset.is_some() || limit.is_some()).then(|| RowWindow {
            offset: offset.unwrap_or(0),
            limit: limit.unwrap_or(default_limit),
        })
    }

    /// The first row after the window.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.limit)
    }

    /// The name of an artifact of `name` in this window: `buyers.rows-100-200`.
    pub fn stem(&self, name: &str) -> String {
        format!("{name}.rows-{}-{}", self.offset, self.end())
    }

    /// The window in a report: `entity`, `key` (the order), `offset`, `limit`, `rows`.
    pub fn report(&self, entity: &str, key: &str) -> Value {
        json!({"entity": entity, "key": key, "offset": self.offset, "limit": self.limit,
               "rows": format!("{}..{}", self.offset, self.end())})
    }

    /// The key bounds of the window of entity `name` of `src` ([`PgSource::key_window`]),
    /// for [`Entity::key_range`](crate::Entity::key_range): found once per run (`run`)
    /// and recorded under `bounds` in `checkpoint`, read back when the run asks again
    /// (a resumed run, in a later snapshot, reads the rows it started with).
    ///
    /// # Errors
    /// The query fails; the checkpoint cannot be read or written.
    pub async fn bounds(
        &self,
        src: &PgSource,
        name: &str,
        checkpoint: &JsonCheckpoint,
        run: &str,
    ) -> Result<(Option<Key>, Option<Key>)> {
        let cp = |e: etl_core::Error| PgSourceError::Config(e.to_string());
        let recorded = (checkpoint.get("bounds").map_err(cp)?).filter(|b| b["run"] == run);
        if let Some(keys) = recorded.and_then(|b| serde_json::from_value(b["keys"].clone()).ok()) {
            return Ok(keys);
        }
        let keys = src.key_window(name, self.offset, self.limit).await?;
        checkpoint
            .set("bounds", json!({"run": run, "keys": keys}))
            .map_err(cp)?;
        Ok(keys)
    }
}
