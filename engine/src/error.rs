//! The engine's error type.

use sluice_checkpoint::{BatchId, CheckpointError};

/// Errors of a streaming query, split by where they arise.
///
/// * [`SluiceError::Analysis`]: the query cannot run as written (found at `start()`,
///   before any batch); the message says what to change.
/// * [`SluiceError::MalformedRecord`]: a source met input it cannot parse (FAILFAST).
/// * [`SluiceError::Checkpoint`]: the checkpoint is damaged or owned by another query.
/// * [`SluiceError::Batch`]: a batch failed; nothing of it was committed.
///
/// # Display and Debug
/// `Display` is the whole message, causes included (a batch failure carries the message
/// of what failed in it), and every variant's message ends with what to change.
/// `Debug` prints the same text, as `anyhow::Error` does, so that
/// `fn main() -> sluice::Result<()>` shows the message rather than an escaped struct;
/// `{:#?}` prints the structured form.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum SluiceError {
    /// The query is invalid (Spark's `AnalysisException`); the message says what to
    /// change in the query.
    #[error("analysis error: {message}")]
    Analysis { message: String },
    /// A checkpoint file is missing, corrupt, or conflicts with this query. The message
    /// names the file; restore it, stop the other run, or use a new checkpoint location.
    #[error("{0}{hint}", hint = checkpoint_hint(.0))]
    Checkpoint(#[from] CheckpointError),
    /// A record could not be parsed in FAILFAST mode; `line` counts from 1.
    #[error("malformed record in {path} at line {line}: {message} (parse mode FAILFAST; use PERMISSIVE or DROPMALFORMED to keep going)")]
    MalformedRecord { path: String, line: usize, message: String },
    /// A source failed (listing, reading, decoding); the message names the file,
    /// partition or offset to look at.
    #[error("source {name}: {message}")]
    Source { name: String, message: String },
    /// A sink failed to write a batch; the message names the file or topic to look at.
    #[error("sink {name}: {message}")]
    Sink { name: String, message: String },
    /// An I/O error on a named file: check that it exists and that this process may read
    /// or write it.
    #[error("I/O error on {path}: {source} (check that the path exists and this process may read and write it)")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// An argument or option is invalid (e.g. an interval string); the message names it
    /// and what it accepts.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A Polars computation failed, typically an expression that does not fit its input
    /// (an unknown column, a type mismatch).
    #[error("polars: {0} (check the column names and types the query's expressions use)")]
    Polars(#[from] polars::error::PolarsError),
    /// An arrow-rs computation failed (converting or encoding rows).
    #[error("arrow: {0} (check the column types written or read)")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A micro-batch failed; its state and commit were not written, so a restart on the
    /// same checkpoint runs it again.
    #[error("batch {batch_id} failed: {source}")]
    Batch {
        batch_id: BatchId,
        #[source]
        source: Box<SluiceError>,
    },
    /// A query stopped with an error, reported again by a call that did not run it
    /// (`await_any_termination`, a second `await_termination`): `query` is its name or id,
    /// `message` the error's whole message.
    #[error("query {query} stopped with an error: {message}")]
    QueryFailed { query: String, message: String },
    /// A user function (e.g. `foreach_batch`) returned an error or panicked; the message
    /// is the function's.
    #[error("user function failed: {0}")]
    User(String),
    /// A bug in Sluice: please report it.
    #[error("internal error (likely a bug; please report it with this message): {0}")]
    Internal(String),
}

/// What to do about a checkpoint error, unless its message already says it.
fn checkpoint_hint(e: &CheckpointError) -> &'static str {
    let text = e.to_string();
    if text.contains("use a new checkpoint location") || text.contains("stop this query") {
        return "";
    }
    match e {
        CheckpointError::Corrupt { .. } | CheckpointError::Missing { .. } => {
            " (restore the file from a copy of the checkpoint, or start the query on a new checkpoint location)"
        }
        _ => " (check that the checkpoint location is reachable and writable)",
    }
}

/// The readable message, as `anyhow::Error` prints it: `fn main() -> sluice::Result<()>`
/// shows this text. `{:#?}` gives the structured form.
impl std::fmt::Debug for SluiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !f.alternate() {
            return std::fmt::Display::fmt(self, f);
        }
        match self {
            SluiceError::Analysis { message } => f.debug_struct("Analysis").field("message", message).finish(),
            SluiceError::Checkpoint(e) => f.debug_tuple("Checkpoint").field(e).finish(),
            SluiceError::MalformedRecord { path, line, message } => f
                .debug_struct("MalformedRecord")
                .field("path", path)
                .field("line", line)
                .field("message", message)
                .finish(),
            SluiceError::Source { name, message } => {
                f.debug_struct("Source").field("name", name).field("message", message).finish()
            }
            SluiceError::Sink { name, message } => {
                f.debug_struct("Sink").field("name", name).field("message", message).finish()
            }
            SluiceError::Io { path, source } => f.debug_struct("Io").field("path", path).field("source", source).finish(),
            SluiceError::InvalidArgument(m) => f.debug_tuple("InvalidArgument").field(m).finish(),
            SluiceError::Polars(e) => f.debug_tuple("Polars").field(e).finish(),
            SluiceError::Arrow(e) => f.debug_tuple("Arrow").field(e).finish(),
            SluiceError::Batch { batch_id, source } => {
                f.debug_struct("Batch").field("batch_id", batch_id).field("source", source).finish()
            }
            SluiceError::QueryFailed { query, message } => {
                f.debug_struct("QueryFailed").field("query", query).field("message", message).finish()
            }
            SluiceError::User(m) => f.debug_tuple("User").field(m).finish(),
            SluiceError::Internal(m) => f.debug_tuple("Internal").field(m).finish(),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_the_readable_message() {
        let e = SluiceError::analysis("col(\"x\") is not a column: use one of a, b");
        assert_eq!(format!("{e:?}"), "analysis error: col(\"x\") is not a column: use one of a, b");
        assert_eq!(format!("{e:?}"), e.to_string());
        assert!(format!("{e:#?}").starts_with("Analysis {"), "{e:#?}");
        let batch = SluiceError::Batch { batch_id: 3, source: Box::new(e) };
        assert_eq!(format!("{batch:?}"), "batch 3 failed: analysis error: col(\"x\") is not a column: use one of a, b");
    }

    #[test]
    fn checkpoint_errors_say_what_to_do() {
        let e = SluiceError::from(CheckpointError::Corrupt { path: "ck/offsets/3".into(), reason: "torn".into() });
        assert!(e.to_string().starts_with("checkpoint file ck/offsets/3 is corrupt: torn (restore"), "{e}");
    }
}
