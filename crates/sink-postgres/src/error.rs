//! The error type of `etl-sink-postgres`.

use etl_core::Stage;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong writing to PostgreSQL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database answered with an error or the connection failed.
    #[error("postgres: {0}")]
    Sql(#[from] sqlx::Error),
    /// A table ferry needs does not exist.
    #[error(
        "table `{0}` does not exist; create it first (the example does this on an empty database)"
    )]
    NoSuchTable(String),
    /// A batch's columns cannot be mapped onto the table's.
    #[error("column mapping: {0}")]
    Mapping(String),
    /// A value could not be encoded for COPY.
    #[error("cannot encode column `{column}` row {row}: {detail}")]
    Encode {
        /// Target column.
        column: String,
        /// Row in the batch.
        row: usize,
        /// What is wrong with the value.
        detail: String,
    },
    /// A switchover, rollback or cleanup was refused because the tables are not in the
    /// state it needs.
    #[error("{0}")]
    State(String),
    /// A backup or restore failed (`pg_dump` / `pg_restore` missing or failing, a changed
    /// dump file, a restored table that differs from its manifest).
    #[error("backup: {0}")]
    Backup(String),
    /// The connection task stopped unexpectedly.
    #[error("the COPY connection task stopped: {0}")]
    Task(String),
}

impl Error {
    /// Whether retrying may succeed (connection loss, serialization failure, deadlock, a
    /// server shutting down or starting: `57P01` admin shutdown, `57P02` crash shutdown,
    /// `57P03` "the database system is shutting down / starting up").
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Sql(
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed,
            ) => true,
            Error::Sql(sqlx::Error::Database(db)) => {
                matches!(
                    db.code().as_deref(),
                    Some("40001" | "40P01" | "57P01" | "57P02" | "57P03" | "08006" | "08003")
                )
            }
            _ => false,
        }
    }
}

impl From<Error> for etl_core::Error {
    fn from(e: Error) -> Self {
        let retryable = e.is_retryable();
        etl_core::Error::component(Stage::Load, "postgres", retryable, e)
    }
}
