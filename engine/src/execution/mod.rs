//! Running a query: the trigger loop alone ([`micro_batch`]), starting and resuming on a
//! checkpoint ([`recovery`]) from a [`spec`], the handle users hold ([`query`]), what it
//! shares with the query thread ([`shared`]), what each batch reports ([`progress`]),
//! the session's queries and listener bus ([`manager`]) and the listener events
//! ([`listener`]).

pub mod explain_batch;
pub mod http;
pub mod listener;
pub mod manager;
pub mod micro_batch;
pub mod progress;
pub mod query;
pub mod recovery;
pub mod shared;
pub mod spec;

pub use listener::{QueryIdleEvent, QueryProgressEvent, QueryStartedEvent, QueryTerminatedEvent, StreamingQueryListener};
pub use explain_batch::{explain_batch, BatchExplanation};
pub use manager::StreamingQueryManager;
pub use micro_batch::MicroBatchExecution;
pub use progress::{ProgressDisplay, SinkProgress, SourceProgress, StreamingQueryProgress};
pub use query::{start, StreamingQuery};
pub use spec::{
    QuerySpec, CONF_MIN_BATCHES_TO_RETAIN, CONF_NO_DATA_PROGRESS_EVENT_INTERVAL, CONF_STATE_PARTITIONS,
    CONF_WATERMARK_POLICY,
};
