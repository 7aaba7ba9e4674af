//! The error type of `etl-core`, the only error that crosses crate boundaries.

use std::fmt;

/// A boxed error from a connector or a user callback.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The pipeline stage an error comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Reading from a source.
    Extract,
    /// Changing batches.
    Transform,
    /// Checking batches or the whole run.
    Validate,
    /// Writing to a sink.
    Load,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Extract => "extract",
            Stage::Transform => "transform",
            Stage::Validate => "validate",
            Stage::Load => "load",
        })
    }
}

/// Everything that can stop a run. Bad *rows* are never errors: they are [`crate::Reject`]s.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An Arrow kernel or array construction failed.
    #[error("arrow error: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// A file or socket operation failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or resource that failed.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A batch did not have the schema the next stage expects.
    #[error("schema mismatch in {stage} `{component}`: {detail}")]
    Schema {
        /// Stage that noticed the mismatch.
        stage: Stage,
        /// Component name.
        component: String,
        /// What differs.
        detail: String,
    },
    /// A connector (source, sink, transform) failed; `retryable` is decided by the connector.
    #[error("{stage} `{component}` failed: {source}")]
    Component {
        /// Stage of the component.
        stage: Stage,
        /// Component name (`postgres`, `csv`, ...).
        component: String,
        /// Whether retrying the same operation may succeed.
        retryable: bool,
        /// The connector's own error.
        #[source]
        source: BoxError,
    },
    /// A transform lost or invented rows: read != loaded + rejected + filtered.
    #[error(
        "counts do not reconcile in unit `{unit}` after `{component}`: {input} rows in, {output} out + {rejected} rejected + {filtered} filtered"
    )]
    Reconciliation {
        /// Unit of work.
        unit: String,
        /// The transform that broke the invariant.
        component: String,
        /// Rows that went in.
        input: u64,
        /// Rows that came out.
        output: u64,
        /// Rows rejected by it.
        rejected: u64,
        /// Rows filtered by it.
        filtered: u64,
    },
    /// A configuration file or option is invalid.
    #[error("configuration error: {0}")]
    Config(String),
    /// Validation vetoed the commit.
    #[error("validation failed: {0}")]
    Validation(String),
    /// A checkpoint file ([`crate::checkpoint::JsonCheckpoint`]) could not be read or written.
    #[error("checkpoint file {path}: {reason}; delete it to start over without --resume")]
    Checkpoint {
        /// The JSON file.
        path: String,
        /// What failed.
        reason: String,
    },
    /// The run was cancelled (Ctrl-C or a [`tokio_util::sync::CancellationToken`]).
    #[error("run cancelled")]
    Cancelled,
    /// A migration refused to start in the mode asked for (nothing to resume, an unfinished
    /// run in the way, a step that cannot be undone); nothing was changed. The message says
    /// what to do instead.
    #[error("{0}")]
    Refused(String),
    /// The run journal could not be read or written.
    #[error("run journal {location}: {reason}")]
    Journal {
        /// Where the journal lives (a file path, a table).
        location: String,
        /// What failed.
        reason: String,
    },
}

impl Error {
    /// Whether retrying the operation that produced this error may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Component {
                retryable: true,
                ..
            }
        )
    }

    /// Wrap a connector error.
    pub fn component(
        stage: Stage,
        component: impl Into<String>,
        retryable: bool,
        source: impl Into<BoxError>,
    ) -> Self {
        Error::Component {
            stage,
            component: component.into(),
            retryable,
            source: source.into(),
        }
    }

    /// An I/O error on a named path.
    pub fn io(path: impl fmt::Display, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_string(),
            source,
        }
    }
}
