//! The error type of `etl-source-bubble`.

/// `Result` with [`BubbleError`].
pub type Result<T, E = BubbleError> = std::result::Result<T, E>;

/// Everything that can stop reading from a Bubble app.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BubbleError {
    /// The app refused the API token (HTTP 401/403).
    #[error(
        "Bubble refused the API token for type `{bubble_type}` (HTTP {status}) at {url}: check BUBBLE_API_KEY (an admin API token of the app) and that the Data API is enabled for this type"
    )]
    Unauthorized {
        /// Type being read.
        bubble_type: String,
        /// 401 or 403.
        status: u16,
        /// URL without query.
        url: String,
    },
    /// The type does not exist or is not exposed by the Data API (HTTP 404).
    #[error(
        "Bubble type `{bubble_type}` not found (HTTP 404) at {url}: check the type name, the base URL (it ends in /api/1.1, or /version-test/api/1.1 for the dev database) and that the type is exposed in Settings > API"
    )]
    NotFound {
        /// Type being read.
        bubble_type: String,
        /// URL without query.
        url: String,
    },
    /// A retryable failure (429, 503, 5xx, connection) persisted through every retry.
    #[error(
        "Bubble type `{bubble_type}` page {page} ({position}) failed after {attempts} attempts, last: {last}; nothing after this page was read, so the export is incomplete: rerun later or lower the request rate"
    )]
    RetriesExhausted {
        /// Type being read.
        bubble_type: String,
        /// 1-based page number within the unit.
        page: u64,
        /// Where the page starts (constraints and cursor), for a person.
        position: String,
        /// Requests made for this page.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// The app answered with a non-retryable error status.
    #[error("Bubble type `{bubble_type}` page {page}: HTTP {status}: {body}")]
    Status {
        /// Type being read.
        bubble_type: String,
        /// 1-based page number.
        page: u64,
        /// HTTP status.
        status: u16,
        /// Body (truncated).
        body: String,
    },
    /// The answer was not the Data API's JSON.
    #[error("Bubble type `{bubble_type}` page {page}: unexpected answer: {detail}")]
    Decode {
        /// Type being read.
        bubble_type: String,
        /// 1-based page number.
        page: u64,
        /// What is wrong.
        detail: String,
    },
    /// The app's schema no longer matches the declared one: a declared field is gone
    /// (renamed or removed) or its values changed shape. Raised before the things that show
    /// it are decoded, so none of them is written with the field empty.
    #[error(
        "Bubble type `{bubble_type}`: schema drift on the declared field `{field}` (key `{key}`): {detail}; no thing showing the drift was written: update the declared schema (or --keys) or the app, then run again"
    )]
    SchemaDrift {
        /// Type being read.
        bubble_type: String,
        /// The declared field (its column).
        field: String,
        /// Its key in the app's key mode.
        key: String,
        /// What changed.
        detail: String,
    },
    /// A thing cannot be paged by key (no or bad `Created Date`).
    #[error(
        "Bubble type `{bubble_type}`: thing `{id}` has no valid `Created Date` ({detail}); keyset paging needs it"
    )]
    NoCreatedDate {
        /// Type being read.
        bubble_type: String,
        /// The thing's `_id`.
        id: String,
        /// What was found.
        detail: String,
    },
    /// The client configuration is invalid.
    #[error("Bubble client configuration: {0}")]
    Config(String),
    /// Building the HTTP client failed.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// A local file failed (export).
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl BubbleError {
    /// Whether trying the same read again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, BubbleError::RetriesExhausted { .. })
    }
}

impl From<BubbleError> for etl_core::Error {
    fn from(e: BubbleError) -> Self {
        match e {
            BubbleError::Io { path, source } => etl_core::Error::Io { path, source },
            BubbleError::Config(m) => etl_core::Error::Config(m),
            e => {
                let retryable = e.is_retryable();
                etl_core::Error::component(etl_core::Stage::Extract, "bubble", retryable, e)
            }
        }
    }
}
