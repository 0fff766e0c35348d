//! # Sluice
//!
//! A micro-batch structured-streaming engine in Rust with Apache Spark Structured
//! Streaming's semantics (3.5), on Arrow and Polars: sources (files, memory) feed
//! incremental DataFrame plans (stateless operations, windowed aggregation with
//! watermarks) whose results go to sinks (console, memory, files, `foreach_batch`) in
//! append, update or complete mode, with an exactly-once checkpoint.
//!
//! ```no_run
//! use sluice::prelude::*;
//!
//! # fn main() -> sluice::Result<()> {
//! let session = Session::new();
//! let schema = Schema::from_iter([
//!     Field::new("time".into(), DataType::Datetime(TimeUnit::Microseconds, None)),
//!     Field::new("channel".into(), DataType::String),
//!     Field::new("added".into(), DataType::Int64),
//! ]);
//! let edits = session.read_stream().format("json").schema(schema)
//!     .option("maxFilesPerTrigger", 1).load("data/in")?;
//! let counts = edits
//!     .with_watermark("time", "1 minute")?
//!     .group_by([window(col("time"), "10 minutes", None, None)?, col("channel")])
//!     .agg([len().alias("edits"), col("added").sum().alias("added")]);
//! let query = counts.write_stream()
//!     .output_mode(OutputMode::Append)
//!     .format("parquet").option("path", "out")
//!     .option("checkpointLocation", "ckpt")
//!     .trigger(Trigger::AvailableNow)
//!     .start()?;
//! query.await_termination()?;
//! # Ok(()) }
//! ```
//!
//! The crates: `sluice-checkpoint` (logs and state files on object_store) ←
//! `sluice-engine` (API, operators, state, trigger loop) ← `sluice-sources`,
//! `sluice-sinks` ← `sluice` (this facade: a [`Session`] with every built-in format).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use sluice_checkpoint as checkpoint;
pub use sluice_engine as engine;
pub use sluice_engine::{
    interval, session_window, window, DataStreamReader, DataStreamWriter, StreamJoinType, OutputMode, ProgressDisplay, Result, SluiceError, StreamingDataFrame,
    StreamingQuery, StreamingQueryProgress, Trigger,
};
pub use sluice_sinks as sinks;
pub use sluice_sources as sources;

use sluice_engine::{Sink, SinkProvider};
use sluice_sinks::{ConsoleSink, MemoryTable};

/// Everything a streaming program needs: Polars' prelude (`col`, `lit`, `len`, `Schema`,
/// `DataType`, ...) and Sluice's types.
pub mod prelude {
    pub use polars::prelude::*;
    pub use sluice_engine::{
        interval, session_window, window, Clock, GroupKey, GroupState, GroupStateTimeout, StreamJoinType,
        ManualClock, OutputMode, ProgressDisplay, StreamingDataFrame, StreamingQuery, Trigger,
    };

    pub use sluice_sources::{from_json, to_json};

    pub use crate::Session;
}

/// A [`sluice_engine::EngineSession`] with the built-in formats registered: sources `json`,
/// `csv`, `parquet`, `rate`, `socket` and (cargo feature `kafka`, on by default) `kafka`;
/// sinks `parquet`, `json`, `csv`, `console`, `memory` and `kafka`.
///
/// Dereferences to the engine's session (`read_stream`, `set_conf`, ...).
#[derive(Clone)]
pub struct Session {
    inner: sluice_engine::EngineSession,
    memory_tables: Arc<Mutex<HashMap<String, MemoryTable>>>,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

struct ConsoleProvider;
impl SinkProvider for ConsoleProvider {
    fn create(&self, options: &sluice_engine::Options) -> Result<Box<dyn Sink>> {
        let num_rows = options.positive_usize("numRows")?.unwrap_or(20);
        Ok(Box::new(ConsoleSink { num_rows }))
    }
}

struct MemoryProvider(Arc<Mutex<HashMap<String, MemoryTable>>>);
impl SinkProvider for MemoryProvider {
    fn create(&self, options: &sluice_engine::Options) -> Result<Box<dyn Sink>> {
        let name = options.get("queryName").map(str::to_string).ok_or_else(|| {
            SluiceError::InvalidArgument("the memory sink needs a query name: call query_name(\"...\")".into())
        })?;
        let table = MemoryTable::new();
        self.0.lock().expect("memory tables lock").insert(name.clone(), table.clone());
        Ok(Box::new(table.sink()))
    }
}

impl Session {
    /// A session with every built-in source and sink format.
    pub fn new() -> Self {
        let inner = sluice_engine::EngineSession::new();
        let memory_tables: Arc<Mutex<HashMap<String, MemoryTable>>> = Arc::default();
        inner.register_source_format("json", Arc::new(sluice_sources::FileSourceFormat::json()));
        inner.register_source_format("csv", Arc::new(sluice_sources::FileSourceFormat::csv()));
        inner.register_source_format("parquet", Arc::new(sluice_sources::FileSourceFormat::parquet()));
        inner.register_source_format("rate", Arc::new(sluice_sources::RateSourceFormat));
        inner.register_source_format("socket", Arc::new(sluice_sources::SocketSourceFormat));
        #[cfg(feature = "kafka")]
        {
            inner.register_source_format("kafka", Arc::new(sluice_sources::KafkaSourceFormat));
            inner.register_sink("kafka", Arc::new(sluice_sinks::KafkaSinkProvider));
        }
        for format in [sinks::FileFormat::Parquet, sinks::FileFormat::Json, sinks::FileFormat::Csv] {
            inner.register_sink(format.name(), Arc::new(sinks::FileSinkProvider::new(format)));
        }
        inner.register_sink("console", Arc::new(ConsoleProvider));
        inner.register_sink("memory", Arc::new(MemoryProvider(memory_tables.clone())));
        Session { inner, memory_tables }
    }

    /// The table of the memory sink of the query named `name` (Spark: `spark.table(name)`).
    pub fn memory_table(&self, name: &str) -> Option<MemoryTable> {
        self.memory_tables.lock().expect("memory tables lock").get(name).cloned()
    }
}

impl std::ops::Deref for Session {
    type Target = sluice_engine::EngineSession;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}
