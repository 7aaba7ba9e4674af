//! Stable ids for the things of another system: each `(type, source id)` gets the UUIDv5
//! of `"<type>:<source id>"` in a namespace of the migration's own, the same on every run
//! and on every machine, so a child's reference is computed without a lookup, a rerun
//! updates instead of duplicating, and a mapping table `(<prefix>_type, <prefix>_id,
//! new_id, run_id)` records what was migrated (read back on the next run; exported for
//! the systems that still hold the old ids, as JSON `{"<source id>": "<uuid>"}` or CSV).
//!
//! ```
//! use etl_sink_postgres::idmap::IdMap;
//! let ids = IdMap::new("https://example.com/my-migration", "id_map", "source");
//! assert_eq!(ids.id("user", "1644"), ids.id("user", "1644"));
//! assert_ne!(ids.id("user", "1644"), ids.id("order", "1644"));
//! assert!(ids.ddl().contains(r#""source_type" text NOT NULL"#));
//! ```

use std::io::Write as _;
use std::path::Path;

use etl_core::BoxError;
use futures::StreamExt as _;
use sqlx::PgPool;
use uuid::Uuid;

use crate::ident::{TableName, quote_ident};

/// The ids of one migration and its mapping table.
#[derive(Debug, Clone)]
pub struct IdMap {
    namespace: Uuid,
    table: TableName,
    kind_col: String,
    id_col: String,
}

/// The format of [`IdMap::export`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapFormat {
    /// `{"<source id>": "<uuid>", ...}`, one pair a line, ordered by source id.
    Json,
    /// `source_id,new_id` with a header, ordered by source id.
    Csv,
}

impl IdMap {
    /// Ids in the namespace `uuid5(NAMESPACE_URL, namespace)`, mapped in `table`, whose
    /// columns are `<prefix>_type` and `<prefix>_id`.
    pub fn new(namespace: &str, table: &str, prefix: &str) -> Self {
        IdMap {
            namespace: Uuid::new_v5(&Uuid::NAMESPACE_URL, namespace.as_bytes()),
            table: TableName::parse(table),
            kind_col: format!("{prefix}_type"),
            id_col: format!("{prefix}_id"),
        }
    }

    /// The new id of `source_id` of type `kind`.
    pub fn id(&self, kind: &str, source_id: &str) -> Uuid {
        Uuid::new_v5(&self.namespace, format!("{kind}:{source_id}").as_bytes())
    }

    /// The mapping table.
    pub fn table(&self) -> &TableName {
        &self.table
    }

    /// `CREATE TABLE IF NOT EXISTS` of the mapping table.
    pub fn ddl(&self) -> String {
        let (k, i) = (quote_ident(&self.kind_col), quote_ident(&self.id_col));
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({k} text NOT NULL, {i} text NOT NULL, new_id uuid NOT NULL, run_id uuid NOT NULL, PRIMARY KEY ({k}, {i}))",
            self.table.sql()
        )
    }

    /// `(type, source id)` of everything mapped so far; none when the table does not
    /// exist yet (a first run, a dry run on an empty database).
    ///
    /// # Errors
    /// The database's.
    pub async fn mapped(&self, pool: &PgPool) -> Result<Vec<(String, String)>, sqlx::Error> {
        let (exists,): (bool,) = sqlx::query_as("SELECT to_regclass($1) IS NOT NULL")
            .bind(self.table.sql())
            .fetch_one(pool)
            .await?;
        if !exists {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {}, {} FROM {}",
            quote_ident(&self.kind_col),
            quote_ident(&self.id_col),
            self.table.sql()
        );
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(pool)
            .await
    }

    /// Stream the mapping of `kind` to `path` in `format`; returns the pairs written.
    ///
    /// # Errors
    /// The database's, or the file cannot be written.
    pub async fn export(
        &self,
        pool: &PgPool,
        kind: &str,
        path: &Path,
        format: MapFormat,
    ) -> Result<u64, BoxError> {
        let file = std::fs::File::create(path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let mut out = std::io::BufWriter::new(file);
        out.write_all(match format {
            MapFormat::Json => b"{",
            MapFormat::Csv => b"source_id,new_id",
        })?;
        let id = quote_ident(&self.id_col);
        let sql = format!(
            "SELECT {id}, new_id FROM {} WHERE {} = $1 ORDER BY {id}",
            self.table.sql(),
            quote_ident(&self.kind_col)
        );
        let mut rows = sqlx::query_as::<_, (String, Uuid)>(sqlx::AssertSqlSafe(sql))
            .bind(kind)
            .fetch(pool);
        let mut n = 0u64;
        while let Some(r) = rows.next().await {
            let (source, new) = r?;
            match format {
                MapFormat::Json => {
                    let sep = if n == 0 { "" } else { "," };
                    write!(
                        out,
                        "{sep}\n  {}: \"{new}\"",
                        serde_json::to_string(&source)?
                    )?;
                }
                MapFormat::Csv => {
                    let mut field = String::new();
                    etl_core::reject::write_csv_field(&mut field, &source);
                    write!(out, "\n{field},{new}")?;
                }
            }
            n += 1;
        }
        out.write_all(match format {
            MapFormat::Json => b"\n}\n",
            MapFormat::Csv => b"\n",
        })?;
        out.flush()?;
        Ok(n)
    }
}
