//! The error type of `etl-source-postgres`.

use etl_core::Stage;

/// `Result` with [`PgSourceError`].
pub type Result<T, E = PgSourceError> = std::result::Result<T, E>;

/// Everything that can stop a PostgreSQL extraction. Bad *values* (a numeric too large
/// for its Arrow decimal) are rejects, not errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgSourceError {
    /// A statement failed on the server or the connection broke.
    #[error("postgres failed while {context}: {source}")]
    Query {
        /// What the source was doing (`reading page of vendas after key 1200`).
        context: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The table of an entity does not exist or is not visible to the user.
    #[error(
        "table {table} of entity `{entity}` does not exist or is not visible: check the schema name, the search_path and the grants of the user"
    )]
    TableNotFound {
        /// Entity name.
        entity: String,
        /// Qualified, quoted table name.
        table: String,
    },
    /// A column (key, filter or projected) is not in the entity.
    #[error("column `{column}` is not a column of entity `{entity}` (columns: {available})")]
    ColumnNotFound {
        /// Entity name.
        entity: String,
        /// The missing column.
        column: String,
        /// The columns the entity has.
        available: String,
    },
    /// A column type has no Arrow mapping.
    #[error(
        "column `{column}` of entity `{entity}` has type `{pg_type}`, which has no Arrow mapping; use a query entity that casts it (e.g. `{column}::text`)"
    )]
    UnsupportedType {
        /// Entity name.
        entity: String,
        /// Column.
        column: String,
        /// PostgreSQL type name.
        pg_type: String,
    },
    /// A filter expression could not be parsed.
    #[error(
        "invalid filter `{filter}`: {reason}; the form is `column OP value` with OP one of = != <> < <= > >= (the value is bound as a parameter, never pasted into SQL)"
    )]
    Filter {
        /// The filter text.
        filter: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Options are inconsistent (a unit locator this source did not make, ...).
    #[error("postgres source misconfigured: {0}")]
    Config(String),
    /// An Arrow array could not be built.
    #[error("arrow error while building a batch of `{entity}`: {source}")]
    Arrow {
        /// Entity name.
        entity: String,
        /// Arrow's error.
        #[source]
        source: arrow_schema::ArrowError,
    },
}

impl PgSourceError {
    /// Wrap a driver error with what was being done.
    pub fn query(context: impl Into<String>, source: sqlx::Error) -> Self {
        PgSourceError::Query {
            context: context.into(),
            source,
        }
    }

    /// Whether retrying the same operation may succeed (connection and I/O problems).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            PgSourceError::Query {
                source: sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed,
                ..
            }
        )
    }
}

impl From<PgSourceError> for etl_core::Error {
    fn from(e: PgSourceError) -> Self {
        let retryable = e.is_retryable();
        etl_core::Error::component(Stage::Extract, "postgres", retryable, e)
    }
}
