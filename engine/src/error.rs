//! The engine's error type.

use sluice_checkpoint::{BatchId, CheckpointError};

/// Errors of a streaming query, split by where they arise.
///
/// * [`SluiceError::Analysis`]: the query cannot run as written (found at `start()`,
///   before any batch); the message says what to change.
/// * [`SluiceError::MalformedRecord`]: a source met input it cannot parse (FAILFAST).
/// * [`SluiceError::Checkpoint`]: the checkpoint is damaged or owned by another query.
/// * [`SluiceError::Batch`]: a batch failed; nothing of it was committed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SluiceError {
    /// The query is invalid (Spark's `AnalysisException`).
    #[error("analysis error: {message}")]
    Analysis { message: String },
    /// A SQL text does not parse (Spark's `ParseException`): `line` and `column` count
    /// from 1; the message quotes the text with a caret under the position.
    #[error("{message}")]
    Parse { message: String, line: u64, column: u64 },
    /// A checkpoint file is missing, corrupt, or conflicts with this query.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A record could not be parsed in FAILFAST mode; `line` counts from 1.
    #[error("malformed record in {path} at line {line}: {message} (parse mode FAILFAST; use PERMISSIVE or DROPMALFORMED to keep going)")]
    MalformedRecord { path: String, line: usize, message: String },
    /// A source failed (listing, reading, decoding).
    #[error("source {name}: {message}")]
    Source { name: String, message: String },
    /// A sink failed to write a batch.
    #[error("sink {name}: {message}")]
    Sink { name: String, message: String },
    /// An I/O error on a named file.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// An argument or option is invalid (e.g. an interval string).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A Polars computation failed.
    #[error("polars: {0}")]
    Polars(#[from] polars::error::PolarsError),
    /// An arrow-rs computation failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A micro-batch failed; its state and commit were not written.
    #[error("batch {batch_id} failed: {source}")]
    Batch {
        batch_id: BatchId,
        #[source]
        source: Box<SluiceError>,
    },
    /// A user function (e.g. `foreach_batch`) returned an error or panicked.
    #[error("user function failed: {0}")]
    User(String),
    /// A bug in Sluice: please report it.
    #[error("internal error (likely a bug): {0}")]
    Internal(String),
}

/// Result with [`SluiceError`].
pub type Result<T, E = SluiceError> = std::result::Result<T, E>;

/// Returns early with [`SluiceError::Analysis`].
#[macro_export]
macro_rules! analysis_err {
    ($($arg:tt)*) => { return Err($crate::SluiceError::Analysis { message: format!($($arg)*) }) };
}

impl SluiceError {
    /// An analysis error with `message`.
    pub fn analysis(message: impl Into<String>) -> Self {
        SluiceError::Analysis { message: message.into() }
    }
}
