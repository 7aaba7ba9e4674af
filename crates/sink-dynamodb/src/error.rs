//! The error type of `etl-sink-dynamodb`.

use etl_core::Stage;

/// `Result` with [`DynamoError`].
pub type Result<T, E = DynamoError> = std::result::Result<T, E>;

/// Everything that can stop a DynamoDB load, backup or restore.
///
/// Rows that cannot become items (a NaN, an item over 400 KB) are rejects with a reason,
/// not errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DynamoError {
    /// A DynamoDB call failed and is not worth retrying (validation, missing table, auth).
    #[error("DynamoDB {operation} on table `{table}` failed: {message}")]
    Call {
        /// The API (`BatchWriteItem`, `Scan`, ...).
        operation: &'static str,
        /// Table name.
        table: String,
        /// The service's error code and message, or the transport error.
        message: String,
        /// Whether retrying later may succeed.
        retryable: bool,
    },
    /// Throttling or `UnprocessedItems` persisted past `max_retries`.
    #[error(
        "DynamoDB BatchWriteItem on table `{table}` still failing after {attempts} attempts ({last}); {pending} items not written, keys: {keys}. Raise max_retries or the table's capacity, lower concurrency, then rerun with --resume (puts are idempotent)"
    )]
    RetriesExhausted {
        /// Table name.
        table: String,
        /// Attempts made.
        attempts: u32,
        /// The last reason (`ProvisionedThroughputExceededException`, `3 unprocessed items`).
        last: String,
        /// Items not written.
        pending: usize,
        /// Their keys (the first few).
        keys: String,
    },
    /// A row could not be mapped to an item (unsupported Arrow type, non-string map key).
    #[error("cannot map column `{column}` to a DynamoDB attribute: {reason}")]
    Mapping {
        /// Column (attribute) name.
        column: String,
        /// Why.
        reason: String,
    },
    /// An item is missing a key attribute or has one of the wrong type.
    #[error(
        "item for table `{table}` has no usable key attribute `{attribute}` (keys must be S, N or B): {item}"
    )]
    MissingKey {
        /// Table name.
        table: String,
        /// Key attribute.
        attribute: String,
        /// The item's other key attributes, for finding it.
        item: String,
    },
    /// A backup file could not be read or written.
    #[error("backup file {path}: {reason}")]
    Backup {
        /// The Parquet file.
        path: String,
        /// What failed.
        reason: String,
    },
    /// The local server could not be installed or started.
    #[error("local DynamoDB server: {0}")]
    Server(String),
    /// Invalid options.
    #[error("DynamoDB sink misconfigured: {0}")]
    Config(String),
}

impl DynamoError {
    /// Whether retrying the same operation may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            DynamoError::Call { retryable, .. } => *retryable,
            DynamoError::RetriesExhausted { .. } => true,
            _ => false,
        }
    }
}

impl From<DynamoError> for etl_core::Error {
    fn from(e: DynamoError) -> Self {
        let retryable = e.is_retryable();
        etl_core::Error::component(Stage::Load, "dynamodb", retryable, e)
    }
}
