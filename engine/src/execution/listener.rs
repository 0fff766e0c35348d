//! [`StreamingQueryListener`] (Spark's) and the events it receives, with their Spark
//! JSON field names.
//!
//! ```text
//!  start() ──► QueryStartedEvent                    (delivered before start() returns)
//!  each batch ──► QueryProgressEvent { progress }   (the StreamingQueryProgress of the batch)
//!  idle (ProcessingTime, no data) ──► QueryIdleEvent (at most one per sluice.noDataProgressEventInterval)
//!  stop / end / error ──► QueryTerminatedEvent { exception }
//!                         (delivered before await_termination() returns)
//! ```
//!
//! Listeners are registered with
//! [`StreamingQueryManager::add_listener`](super::StreamingQueryManager::add_listener)
//! and called from the session's listener-bus thread (see [`super::manager`]).

use serde::{Deserialize, Serialize};

use super::progress::StreamingQueryProgress;

/// Receives the lifecycle events of every query of a session (Spark's
/// `StreamingQueryListener`). Every method has an empty default body: implement the
/// ones you need.
///
/// # Contract
/// * Every event is delivered, to every listener registered when it is dispatched, in
///   the order the queries posted them (per query: started, progress and idle events in
///   batch order, terminated last). Nothing is dropped, however slow a listener is.
/// * Calls come from one thread per session (the listener bus), never concurrently.
///   A slow listener delays later deliveries, not the queries' batches (except that
///   `start()` waits for `on_query_started` and `await_termination()` for
///   `on_query_terminated`, so that what a listener recorded is complete when they
///   return).
/// * A listener that panics is reported (a `tracing` error, a warning in the query's
///   [`warnings`](super::StreamingQuery::warnings), the manager's
///   [`listener_failures`](super::StreamingQueryManager::listener_failures) count) and
///   called again for later events; the query and the other listeners go on.
/// * Calling `stop()` or `await_termination()` of a query from a listener works, but
///   they return without waiting for the listener deliveries still queued behind the
///   current one.
pub trait StreamingQueryListener: Send + Sync {
    /// A query started (before `start()` returns).
    fn on_query_started(&self, _event: &QueryStartedEvent) {}
    /// A micro-batch completed: its progress.
    fn on_query_progress(&self, _event: &QueryProgressEvent) {}
    /// The query found no new data and ran no batch (at most one event per
    /// `sluice.noDataProgressEventInterval`, 10 seconds by default, as in Spark).
    fn on_query_idle(&self, _event: &QueryIdleEvent) {}
    /// A query stopped: by `stop()`, by its trigger (`Once`, `AvailableNow`), or with an
    /// error (`exception`).
    fn on_query_terminated(&self, _event: &QueryTerminatedEvent) {}
    /// A name for reports about this listener (default: its type name).
    fn name(&self) -> String {
        std::any::type_name::<Self>().to_string()
    }
}

/// A query started (Spark's `QueryStartedEvent`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryStartedEvent {
    /// The query id (stable across restarts on one checkpoint).
    pub id: String,
    /// The run id (new at every start).
    pub run_id: String,
    /// The query name, if set.
    pub name: Option<String>,
    /// When it started, RFC 3339 UTC with milliseconds.
    pub timestamp: String,
}

/// A micro-batch completed (Spark's `QueryProgressEvent`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryProgressEvent {
    /// The batch's progress, as [`StreamingQuery::recent_progress`](super::StreamingQuery::recent_progress) holds it.
    pub progress: StreamingQueryProgress,
}

/// The query looked for new data and found none (Spark's `QueryIdleEvent`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryIdleEvent {
    /// The query id.
    pub id: String,
    /// The run id.
    pub run_id: String,
    /// The query name, if set (not in Spark's event).
    pub name: Option<String>,
    /// When the query found no data, RFC 3339 UTC with milliseconds.
    pub timestamp: String,
}

/// A query stopped (Spark's `QueryTerminatedEvent`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryTerminatedEvent {
    /// The query id.
    pub id: String,
    /// The run id.
    pub run_id: String,
    /// The query name, if set (not in Spark's event).
    pub name: Option<String>,
    /// When it stopped, RFC 3339 UTC with milliseconds (not in Spark's event).
    pub timestamp: String,
    /// The error that stopped it (its whole message); `None` when it stopped normally.
    pub exception: Option<String>,
}

/// One event on the listener bus.
#[derive(Debug, Clone)]
pub(crate) enum QueryEvent {
    Started(QueryStartedEvent),
    Progress(Box<QueryProgressEvent>),
    Idle(QueryIdleEvent),
    Terminated(QueryTerminatedEvent),
}

impl QueryEvent {
    /// The callback's name, for reports.
    pub(crate) fn callback(&self) -> &'static str {
        match self {
            QueryEvent::Started(_) => "on_query_started",
            QueryEvent::Progress(_) => "on_query_progress",
            QueryEvent::Idle(_) => "on_query_idle",
            QueryEvent::Terminated(_) => "on_query_terminated",
        }
    }

    /// Which event of which query, for reports.
    pub(crate) fn describe(&self) -> String {
        let who = |id: &str, name: &Option<String>| match name {
            Some(n) => format!("query {n} ({id})"),
            None => format!("query {id}"),
        };
        match self {
            QueryEvent::Started(e) => format!("the start of {}", who(&e.id, &e.name)),
            QueryEvent::Progress(e) => {
                format!("batch {} of {}", e.progress.batch_id, who(&e.progress.id, &e.progress.name))
            }
            QueryEvent::Idle(e) => format!("an idle trigger of {}", who(&e.id, &e.name)),
            QueryEvent::Terminated(e) => format!("the end of {}", who(&e.id, &e.name)),
        }
    }

    /// Calls the listener's method for this event.
    pub(crate) fn deliver(&self, listener: &dyn StreamingQueryListener) {
        match self {
            QueryEvent::Started(e) => listener.on_query_started(e),
            QueryEvent::Progress(e) => listener.on_query_progress(e),
            QueryEvent::Idle(e) => listener.on_query_idle(e),
            QueryEvent::Terminated(e) => listener.on_query_terminated(e),
        }
    }
}

/// Now as RFC 3339 UTC with milliseconds (Spark's event timestamps).
pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
