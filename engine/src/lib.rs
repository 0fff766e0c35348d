//! # sluice-engine
//!
//! The engine of Sluice, a micro-batch structured-streaming engine with Apache Spark
//! Structured Streaming's semantics, on Arrow and Polars.
//!
//! ```text
//!  api/        EngineSession ─read_stream()─► StreamingDataFrame ─select/filter/with_watermark/
//!              group_by/join/...─► LogicalPlan ─write_stream().start()─┐
//!  plan/       LogicalPlan ─analysis (Spark's rules)─► PhysicalPlan     │
//!              (stateless Polars steps + stateful operators)            │
//!  execution/  StreamingQuery (handle) ◄── MicroBatchExecution (own thread): per batch
//!              offsets/N ─► sources (connector/) ─Arrow→Polars─► PhysicalPlan ─► sink
//!              ─► state deltas ─► commits/N ─► next watermark (time/)
//!              ─► progress ─► session's listener bus ─► StreamingQueryListeners
//!  api/        EngineSession ─read()─► DataFrameReader ─► SourceFormat::read_static ─► DataFrame
//!  operators/  aggregate · session_window · dedup · join · group_state, each on a
//!  state/      KeyedState over a partitioned, versioned StateStore in the checkpoint
//! ```
//!
//! * [`api`]: what users call ([`EngineSession`], [`StreamingDataFrame`],
//!   [`DataStreamWriter`], [`window`], the static [`DataFrameReader`], ...).
//! * [`plan`]: the logical plan, Spark's analysis rules, the physical plan.
//! * [`execution`]: the trigger loop ([`execution::micro_batch`]), starting and recovery
//!   ([`execution::recovery`]), the query handle, progress, the session's
//!   [`StreamingQueryManager`] and its [`StreamingQueryListener`]s.
//! * [`operators`]: each stateful operator, with the [`StatefulOperator`] trait.
//! * [`state`]: the state store and the keyed state every operator keeps.
//! * [`sql`]: Spark SQL over streaming and static views ([`EngineSession::sql`]), planned
//!   into the same logical plan.
//! * [`time`]: intervals, event time, watermarks, clocks.
//! * [`connector`]: the [`Source`] and [`Sink`] traits and their [`Options`]; the
//!   built-in connectors live in `sluice-connectors`. [`interop`]: Arrow ↔ Polars,
//!   zero-copy.
//!
//! Why micro-batches over Polars: every step of a batch (projection, partial aggregation,
//! state merge, eviction) is a vectorized Polars operation over whole columns; the state
//! lives as columnar frames, never as per-row objects.

pub mod api;
pub mod connector;
mod error;
pub mod execution;
pub mod interop;
pub mod operators;
pub mod plan;
pub mod sql;
pub mod state;
pub mod time;

pub use api::{
    approx_count_distinct, collect_list, collect_set, count_if, first_value, interval, last_value, max_by, min_by,
    session_window, stddev, stddev_pop, stddev_samp, var_pop, var_samp, variance, window, window_time, CheckpointLocation,
    DataFrameReader, DataStreamReader, DataStreamWriter, EngineSession, GroupedStreamingDataFrame, OutputMode,
    StreamingDataFrame, Trigger,
};
pub use connector::{
    ForeachBatchSink, Offset, Options, Sink, SinkContext, SinkProvider, Source, SourceContext, SourceFormat, SourceProvider,
    SourceProviderRef,
};
pub use error::{Result, SluiceError};
pub use execution::{
    explain_batch, BatchExplanation, ProgressDisplay, QueryIdleEvent, QueryProgressEvent, QueryStartedEvent, QueryTerminatedEvent, StreamingQuery,
    StreamingQueryListener, StreamingQueryManager, StreamingQueryProgress,
};
pub use operators::group_state::{GroupKey, GroupState, GroupStateTimeout};
pub use operators::join::StreamJoinType;
pub use operators::{StateOperatorProgress, StatefulOperator};
pub use sql::{SqlFrame, StaticViewExt};
pub use sluice_checkpoint as checkpoint;
pub use time::{Clock, ManualClock, SystemClock};
