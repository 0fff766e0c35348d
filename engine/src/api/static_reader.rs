//! [`DataFrameReader`]: Spark's `spark.read`, a static (batch) read into a Polars
//! `DataFrame`, through the same registry of formats as `read_stream()`.
//!
//! ```text
//!  session.read().format("parquet").option(..).schema(..).load(path)
//!        │ format name ─► the session's SourceFormat registry (sluice-connectors registers json, csv, parquet)
//!        ▼
//!  SourceFormat::read_static(path, schema, &options) ─► polars DataFrame
//! ```
//! The engine knows no file format: what a format reads, and how it finds the files of
//! a directory (only those of a file sink's manifest, for a sink's output), is the
//! connector's.

use polars::prelude::{DataFrame, SchemaRef};

use super::EngineSession;
use crate::connector::Options;
use crate::{Result, SluiceError};

/// Describes a static read (Spark's `DataFrameReader`, `spark.read`): a format, options
/// and an optional schema, then [`load`](DataFrameReader::load) or a format shorthand
/// ([`parquet`](DataFrameReader::parquet), [`json`](DataFrameReader::json),
/// [`csv`](DataFrameReader::csv)).
///
/// ```no_run
/// # fn f(session: &sluice_engine::EngineSession) -> sluice_engine::Result<()> {
/// // A file sink's output: only the files its manifest lists, with their written types.
/// let windows = session.read().parquet("out")?;
/// let rows = session.read().format("json").load("out-json")?;
/// # Ok(()) }
/// ```
pub struct DataFrameReader {
    session: EngineSession,
    format: Option<String>,
    schema: Option<SchemaRef>,
    options: Options,
}

impl DataFrameReader {
    pub(crate) fn new(session: EngineSession) -> Self {
        DataFrameReader { session, format: None, schema: None, options: Options::new() }
    }
    /// The format: `parquet` (default), `json` (JSON lines), `csv`, or any registered
    /// one that has a static reader.
    pub fn format(mut self, format: &str) -> Self {
        self.format = Some(format.to_string());
        self
    }
    /// The schema of the rows. Optional for a file sink's output (its manifest records
    /// each file's schema) and for Parquet (files carry theirs); JSON elsewhere is
    /// inferred, CSV elsewhere reads every column as a string (Spark's defaults).
    pub fn schema(mut self, schema: impl Into<SchemaRef>) -> Self {
        self.schema = Some(schema.into());
        self
    }
    /// An option of the format, e.g. `header`, `sep`, `mode` (Spark's names).
    pub fn option(mut self, key: &str, value: impl ToString) -> Self {
        self.options.set(key, value);
        self
    }
    /// Reads `path` (a file, or a directory) with the format.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] for an unknown format or one without a static
    /// reader; the format's errors (an unreadable file, a schema that does not fit).
    pub fn load(self, path: impl AsRef<std::path::Path>) -> Result<DataFrame> {
        let name = self.format.clone().unwrap_or_else(|| "parquet".into()).to_ascii_lowercase();
        let format = self.session.require_source_format(&name)?;
        let path = path.as_ref().to_string_lossy().into_owned();
        let df = format.read_static(&path, self.schema.clone(), &self.options).map_err(|e| match e {
            SluiceError::InvalidArgument(m) => SluiceError::InvalidArgument(format!("reading {path:?} as {name}: {m}")),
            other => other,
        })?;
        if let Some(w) = self.options.unread_warning(&format!("the static {name} reader"), format.known_static_options()) {
            tracing::warn!("{w}");
        }
        Ok(df)
    }
    /// `format("parquet").load(path)`.
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn parquet(self, path: impl AsRef<std::path::Path>) -> Result<DataFrame> {
        self.format("parquet").load(path)
    }
    /// `format("json").load(path)`: JSON lines.
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn json(self, path: impl AsRef<std::path::Path>) -> Result<DataFrame> {
        self.format("json").load(path)
    }
    /// `format("csv").load(path)`.
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn csv(self, path: impl AsRef<std::path::Path>) -> Result<DataFrame> {
        self.format("csv").load(path)
    }
}
