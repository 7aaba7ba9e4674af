//! The Arrow <-> PostgreSQL type map (from `etl-postgres`, shared with the source) and the
//! columns of a target table.

use sqlx::PgConnection;

pub use etl_postgres::types::{PgColumn, PgType, numeric_precision_scale};

use crate::ident::TableName;
use crate::{Error, Result};

/// The columns of `table`, in order. Enum and domain types resolve to their base.
///
/// # Errors
/// The table does not exist (the error names it) or the catalog query fails.
pub async fn table_columns(conn: &mut PgConnection, table: &TableName) -> Result<Vec<PgColumn>> {
    let cols = etl_postgres::catalog::table_columns(conn, table).await?;
    if cols.is_empty() {
        return Err(Error::NoSuchTable(table.to_string()));
    }
    Ok(cols.iter().map(|c| c.to_pg_column()).collect())
}
