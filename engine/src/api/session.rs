//! [`EngineSession`]: configuration and the registries of source formats and sinks.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use super::{DataFrameReader, DataStreamReader, StreamingDataFrame};
use crate::connector::{SinkProvider, SourceFormat, SourceProviderRef};
use crate::execution::StreamingQueryManager;
use crate::plan::LogicalPlan;
use crate::sql::View;
use crate::{Result, SluiceError};

#[derive(Default)]
struct SessionInner {
    conf: RwLock<BTreeMap<String, String>>,
    source_formats: RwLock<HashMap<String, Arc<dyn SourceFormat>>>,
    sinks: RwLock<HashMap<String, Arc<dyn SinkProvider>>>,
    streams: StreamingQueryManager,
    /// SQL views by lower-case name (`create_or_replace_temp_view`).
    views: RwLock<HashMap<String, View>>,
}

/// The engine's session (Spark's `SparkSession` without its connectors): configuration
/// and the registries of source formats and sinks. Cheap to clone; clones share
/// everything.
///
/// `EngineSession::new()` knows no formats. Users start from `sluice::Session`, which is
/// an `EngineSession` with the built-in connectors registered (`json`, `csv`, `parquet`,
/// `kafka`, `console`, `memory`, ...) and dereferences to it.
///
/// # Examples
///
/// A count per word over an in-memory stream, written to an in-memory table
/// (`sluice::Session::new()` does the `register_all` for you):
///
/// ```
/// use polars::prelude::*;
/// use sluice_connectors::{register_all, MemoryStream};
/// use sluice_engine::{EngineSession, OutputMode, Trigger};
///
/// # fn main() -> sluice_engine::Result<()> {
/// let session = EngineSession::new();
/// let tables = register_all(&session);
/// let words = MemoryStream::new(Schema::from_iter([Field::new("word".into(), DataType::String)]));
/// words.add_data(df!("word" => ["a", "b", "a"])?)?;
/// let counts = words.to_df(&session).group_by([col("word")]).count();
/// let query = counts.write_stream().format("memory").query_name("counts")
///     .output_mode(OutputMode::Complete).trigger(Trigger::AvailableNow).start()?;
/// query.await_termination()?;
/// let out = tables.get("counts").expect("the memory sink registers its table").to_df()?.expect("one batch");
/// let out = out.sort(["word"], Default::default())?;
/// assert_eq!(out.column("count")?.cast(&DataType::Int64)?.i64()?.to_vec(), [Some(2), Some(1)]);
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct EngineSession {
    inner: Arc<SessionInner>,
}

impl EngineSession {
    /// A session with no registered formats.
    pub fn new() -> Self {
        Self::default()
    }
    /// Registers a source format under `name` (e.g. `"json"`).
    pub fn register_source_format(&self, name: &str, format: Arc<dyn SourceFormat>) {
        self.inner.source_formats.write().expect("lock").insert(name.to_ascii_lowercase(), format);
    }
    /// Registers a sink under `name` (e.g. `"parquet"`).
    pub fn register_sink(&self, name: &str, sink: Arc<dyn SinkProvider>) {
        self.inner.sinks.write().expect("lock").insert(name.to_ascii_lowercase(), sink);
    }
    /// Sets a configuration value (e.g. `sluice.state.partitions`).
    pub fn set_conf(&self, key: &str, value: &str) {
        self.inner.conf.write().expect("lock").insert(key.to_string(), value.to_string());
    }
    /// A configuration value.
    pub fn conf(&self, key: &str) -> Option<String> {
        self.inner.conf.read().expect("lock").get(key).cloned()
    }
    /// Starts describing a streaming read (Spark's `readStream`).
    ///
    /// # Examples
    ///
    /// Every JSON-lines file of a directory, one file per micro-batch:
    ///
    /// ```
    /// use polars::prelude::*;
    /// use sluice_connectors::register_all;
    /// use sluice_engine::{EngineSession, OutputMode, Trigger};
    ///
    /// # fn main() -> sluice_engine::Result<()> {
    /// let dir = tempfile::tempdir().expect("temp dir");
    /// std::fs::write(dir.path().join("part-0.json"), "{\"user\":\"ann\",\"added\":3}\n{\"user\":\"bob\",\"added\":4}\n").expect("write");
    /// let session = EngineSession::new();
    /// let tables = register_all(&session);
    /// let schema = Schema::from_iter([
    ///     Field::new("user".into(), DataType::String),
    ///     Field::new("added".into(), DataType::Int64),
    /// ]);
    /// let edits = session.read_stream().format("json").schema(schema)
    ///     .option("maxFilesPerTrigger", 1).load(dir.path().to_str().expect("utf-8"))?;
    /// let query = edits.write_stream().format("memory").query_name("edits")
    ///     .output_mode(OutputMode::Append).trigger(Trigger::AvailableNow).start()?;
    /// query.await_termination()?;
    /// assert_eq!(tables.get("edits").expect("table").to_df()?.expect("rows").height(), 2);
    /// # Ok(()) }
    /// ```
    pub fn read_stream(&self) -> DataStreamReader {
        DataStreamReader::new(self.clone())
    }
    /// Starts describing a static (batch) read into a Polars `DataFrame` (Spark's
    /// `read`), e.g. a file sink's output: `session.read().parquet("out")?`.
    pub fn read(&self) -> DataFrameReader {
        DataFrameReader::new(self.clone())
    }
    /// The queries of this session and their listeners (Spark's `spark.streams`).
    pub fn streams(&self) -> &StreamingQueryManager {
        &self.inner.streams
    }
    /// A streaming data frame over a source provider (typed sources such as `MemoryStream`).
    pub fn stream_from(&self, provider: SourceProviderRef) -> StreamingDataFrame {
        StreamingDataFrame::new(Arc::new(LogicalPlan::Source { provider, warnings: vec![] }), self.clone())
    }
    pub(crate) fn sink_provider(&self, name: &str) -> Option<Arc<dyn SinkProvider>> {
        self.inner.sinks.read().expect("lock").get(&name.to_ascii_lowercase()).cloned()
    }
}

/// SQL views (see [`crate::sql`]).
impl EngineSession {
    pub(crate) fn register_view(&self, name: &str, view: View) -> Result<()> {
        if name.trim().is_empty() {
            return Err(SluiceError::InvalidArgument("a view needs a non-empty name".into()));
        }
        self.inner.views.write().expect("lock").insert(name.to_lowercase(), view);
        Ok(())
    }
    pub(crate) fn view(&self, name: &str) -> Option<View> {
        self.inner.views.read().expect("lock").get(&name.to_lowercase()).cloned()
    }
    /// The names of the registered views (lower case), sorted.
    pub fn view_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inner.views.read().expect("lock").keys().cloned().collect();
        names.sort();
        names
    }
    /// Removes the view `name`; returns whether it existed (Spark's `dropTempView`).
    pub fn drop_temp_view(&self, name: &str) -> bool {
        self.inner.views.write().expect("lock").remove(&name.to_lowercase()).is_some()
    }
}

impl EngineSession {
    pub(crate) fn source_format(&self, name: &str) -> Option<Arc<dyn SourceFormat>> {
        self.inner.source_formats.read().expect("lock").get(&name.to_ascii_lowercase()).cloned()
    }
    /// The source format `name` (case-insensitive), for the streaming and the static
    /// reader alike.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] naming the format and listing the registered ones.
    pub(crate) fn require_source_format(&self, name: &str) -> Result<Arc<dyn SourceFormat>> {
        self.source_format(name).ok_or_else(|| {
            let mut known: Vec<String> = self.inner.source_formats.read().expect("lock").keys().cloned().collect();
            known.sort();
            SluiceError::InvalidArgument(format!(
                "unknown format {name:?}: registered formats are {} (sluice::Session registers the built-in ones)",
                known.join(", ")
            ))
        })
    }
    /// `sluice.state.partitions` as set, else the default (a checkpoint pins its own at
    /// its first batch).
    pub fn state_partitions(&self) -> usize {
        self.conf(crate::execution::CONF_STATE_PARTITIONS)
            .and_then(|v| v.parse().ok())
            .filter(|p| *p > 0)
            .unwrap_or(crate::state::DEFAULT_STATE_PARTITIONS)
    }
    /// Reads the state of a checkpoint at rest as a data frame (Spark 4.0's `statestore`
    /// reader): `session.read_state("ckpt").operator(0).batch(3).load()?`. Read-only: the
    /// query need not run, nothing is written. See [`crate::state::reader`].
    pub fn read_state(&self, checkpoint: impl Into<std::path::PathBuf>) -> crate::state::StateReader {
        crate::state::StateReader::new(checkpoint.into(), None)
    }
    /// The change feed of a store over batches `from..=to`: each key written (`update`)
    /// or removed (`delete`) by each batch, from the delta files. Pick the operator with
    /// `.operator(id)`, then `.load()`.
    pub fn read_state_changes(
        &self,
        checkpoint: impl Into<std::path::PathBuf>,
        from: sluice_checkpoint::BatchId,
        to: sluice_checkpoint::BatchId,
    ) -> crate::state::StateReader {
        crate::state::StateReader::new(checkpoint.into(), Some((from, to)))
    }
    /// The operators, stores, partitions and readable batches of a checkpoint (Spark's
    /// `state-metadata` source), one row per store.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] when `checkpoint` is not one; checkpoint errors.
    pub fn read_state_metadata(&self, checkpoint: impl AsRef<std::path::Path>) -> Result<polars::prelude::DataFrame> {
        let ckpt = crate::state::reader::open_checkpoint(checkpoint.as_ref())?;
        crate::state::reader::metadata(&ckpt)
    }
    /// A snapshot of the configuration.
    pub fn conf_snapshot(&self) -> BTreeMap<String, String> {
        self.inner.conf.read().expect("lock").clone()
    }
}
