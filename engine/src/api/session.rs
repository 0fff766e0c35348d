//! [`EngineSession`]: configuration and the registries of source formats and sinks.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use super::{DataFrameReader, DataStreamReader, StreamingDataFrame};
use crate::connector::{SinkProvider, SourceFormat, SourceProviderRef};
use crate::execution::StreamingQueryManager;
use crate::plan::LogicalPlan;

#[derive(Default)]
struct SessionInner {
    conf: RwLock<BTreeMap<String, String>>,
    source_formats: RwLock<HashMap<String, Arc<dyn SourceFormat>>>,
    sinks: RwLock<HashMap<String, Arc<dyn SinkProvider>>>,
    streams: StreamingQueryManager,
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

impl EngineSession {
    pub(crate) fn source_format(&self, name: &str) -> Option<Arc<dyn SourceFormat>> {
        self.inner.source_formats.read().expect("lock").get(&name.to_ascii_lowercase()).cloned()
    }
    /// A snapshot of the configuration.
    pub fn conf_snapshot(&self) -> BTreeMap<String, String> {
        self.inner.conf.read().expect("lock").clone()
    }
}
