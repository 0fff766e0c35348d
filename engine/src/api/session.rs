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
