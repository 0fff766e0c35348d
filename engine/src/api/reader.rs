//! [`DataStreamReader`]: Spark's `readStream`, the builder of a streaming source.

use std::sync::Arc;

use polars::prelude::*;

use super::{EngineSession, StreamingDataFrame};
use crate::connector::Options;
use crate::plan::LogicalPlan;
use crate::Result;

/// Describes a streaming source (Spark's `DataStreamReader`).
pub struct DataStreamReader {
    session: EngineSession,
    format: Option<String>,
    schema: Option<SchemaRef>,
    options: Options,
}

impl DataStreamReader {
    pub(crate) fn new(session: EngineSession) -> Self {
        DataStreamReader { session, format: None, schema: None, options: Options::new() }
    }
    /// The format: `json` (JSON lines), `csv`, `parquet`, or any registered one.
    pub fn format(mut self, format: &str) -> Self {
        self.format = Some(format.to_string());
        self
    }
    /// The schema of the rows (required by file sources, as in Spark): a `Schema`, or a
    /// shared `SchemaRef`.
    pub fn schema(mut self, schema: impl Into<SchemaRef>) -> Self {
        self.schema = Some(schema.into());
        self
    }
    /// A source option, e.g. `maxFilesPerTrigger`, `mode`, `header`.
    pub fn option(mut self, key: &str, value: impl ToString) -> Self {
        self.options.set(key, value);
        self
    }
    /// Builds the source reading `path`. Options the source does not read are reported
    /// as a warning when the query starts ([`StreamingQuery::warnings`](crate::StreamingQuery::warnings)).
    ///
    /// # Errors
    /// [`crate::SluiceError::InvalidArgument`] for an unknown format; the format's own errors
    /// (missing schema, bad option).
    pub fn load(self, path: impl AsRef<std::path::Path>) -> Result<StreamingDataFrame> {
        let name = self.format.clone().unwrap_or_else(|| "parquet".into()).to_ascii_lowercase();
        let format = self.session.require_source_format(&name)?;
        let provider = format.create(&path.as_ref().to_string_lossy(), self.schema, &self.options)?;
        let warnings = self.options.unread_warning(&provider.description(), format.known_options()).into_iter().collect();
        Ok(StreamingDataFrame::new(Arc::new(LogicalPlan::Source { provider, warnings }), self.session))
    }
}
