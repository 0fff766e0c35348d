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
//! `sluice-engine` (API, operators, state, trigger loop) ← `sluice-connectors` (sources
//! and sinks, one folder per connector: [`connectors`]) ← `sluice` (this facade: a
//! [`Session`] with every built-in format).

pub use sluice_checkpoint as checkpoint;
pub use sluice_engine as engine;
pub use sluice_engine::{
    interval, session_window, window, DataFrameReader, DataStreamReader, DataStreamWriter, OutputMode, ProgressDisplay,
    QueryIdleEvent, QueryProgressEvent, QueryStartedEvent, QueryTerminatedEvent, Result, SluiceError, StreamJoinType,
    StreamingDataFrame, StreamingQuery, StreamingQueryListener, StreamingQueryManager, StreamingQueryProgress, Trigger,
};
pub use sluice_connectors as connectors;

use sluice_connectors::{MemoryTable, MemoryTables};

/// Everything a streaming program needs: Polars' prelude (`col`, `lit`, `len`, `Schema`,
/// `DataType`, `DataFrame`, `df!`, ...) and Sluice's types, every one a README snippet
/// uses.
///
/// Sluice's join type is [`StreamJoinType`]; `JoinType`
/// in this prelude is Polars' own (for Polars joins of static frames).
pub mod prelude {
    pub use polars::prelude::*;
    pub use sluice_engine::{
        approx_count_distinct, collect_list, collect_set, count_if, first_value, interval, last_value, max_by, min_by,
        session_window, stddev, stddev_pop, stddev_samp, var_pop, var_samp, variance, window, window_time, Clock,
        DataFrameReader, DataStreamReader, DataStreamWriter, GroupKey, GroupState, GroupStateTimeout, ManualClock,
        OutputMode, ProgressDisplay, QueryIdleEvent, QueryProgressEvent, QueryStartedEvent, QueryTerminatedEvent,
        SluiceError, StreamJoinType, StreamingDataFrame, StreamingQuery, StreamingQueryListener, StreamingQueryManager,
        StreamingQueryProgress, Trigger,
    };

    pub use sluice_connectors::{from_json, to_json, FileSource, MemoryStream, ParseMode};

    pub use crate::Session;
}

/// A [`sluice_engine::EngineSession`] with the built-in formats registered by
/// [`sluice_connectors::register_all`]: sources `json`, `csv`, `parquet`, `rate`,
/// `socket` and (cargo feature `kafka`, on by default) `kafka`; sinks `parquet`, `json`,
/// `csv`, `console`, `memory` and `kafka`.
///
/// Dereferences to the engine's session (`read_stream`, `set_conf`, ...).
#[derive(Clone)]
pub struct Session {
    inner: sluice_engine::EngineSession,
    memory_tables: MemoryTables,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    /// A session with every built-in source and sink format.
    pub fn new() -> Self {
        let inner = sluice_engine::EngineSession::new();
        let memory_tables = sluice_connectors::register_all(&inner);
        Session { inner, memory_tables }
    }

    /// The table of the memory sink of the query named `name` (Spark: `spark.table(name)`).
    pub fn memory_table(&self, name: &str) -> Option<MemoryTable> {
        self.memory_tables.get(name)
    }
}

impl std::ops::Deref for Session {
    type Target = sluice_engine::EngineSession;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}
