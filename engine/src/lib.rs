//! # sluice-engine
//!
//! The engine of Sluice, a micro-batch structured-streaming engine with Apache Spark
//! Structured Streaming's semantics, on Arrow and Polars.
//!
//! ```text
//!  EngineSession ──read_stream()──► StreamingDataFrame ──select/filter/with_watermark/group_by──►
//!  LogicalPlan ──write_stream().start()──► MicroBatchExecution (own thread)
//!     sources ──Arrow→Polars──► stateless ops ──► watermark stats ──► StatefulOperator(s)
//!     ──► sink ──► state deltas ──► commit log           handle: StreamingQuery
//! ```
//!
//! * [`dataframe`]: the API ([`EngineSession`], [`StreamingDataFrame`], [`DataStreamWriter`]).
//! * [`execution`]: the trigger loop and recovery (diagram there).
//! * [`aggregate`]: incremental windowed aggregation with watermarks.
//! * [`dedup`]: streaming deduplication (`drop_duplicates`, within a watermark or not).
//! * [`session`]: session-window aggregation (sessions merged across batches).
//! * [`state`]: the partitioned, versioned state store on the checkpoint.
//! * [`source`] / [`sink`]: the extension traits. [`interop`]: Arrow ↔ Polars, zero-copy.
//!
//! Why micro-batches over Polars: every step of a batch (projection, partial aggregation,
//! state merge, eviction) is a vectorized Polars operation over whole columns; the state
//! lives as columnar frames, never as per-row objects.

pub mod aggregate;
pub mod clock;
pub mod dataframe;
pub mod dedup;
mod error;
pub mod execution;
mod format;
pub mod functions;
pub mod group_state;
pub mod interop;
pub mod interval;
pub mod join;
pub mod manifest;
mod modes;
pub mod operator;
pub mod plan;
pub mod progress;
pub mod query;
pub mod session;
pub mod connector;
pub mod state;

pub use dataframe::{
    CheckpointLocation, DataStreamReader, DataStreamWriter, GroupedStreamingDataFrame, ProgressDisplay, EngineSession,
    StreamingDataFrame,
};
pub use error::{Result, SluiceError};
pub use format::FileFormat;
pub use clock::{Clock, ManualClock, SystemClock};
pub use functions::{session_window, window};
pub use group_state::{GroupKey, GroupState, GroupStateTimeout};
pub use join::{interval, JoinType};
pub use modes::{OutputMode, Trigger};
pub use progress::{StateOperatorProgress, StreamingQueryProgress};
pub use query::StreamingQuery;
pub use sluice_checkpoint as checkpoint;
pub use connector::{
    ForeachBatchSink, Offset, Options, Sink, SinkContext, SinkProvider, Source, SourceContext, SourceFormat, SourceProvider,
    SourceProviderRef,
};
