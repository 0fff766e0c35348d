//! [`StreamingQuery`]: the handle of a running query (Spark's `StreamingQuery`).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::listener::{now_rfc3339, QueryEvent, QueryStartedEvent, QueryTerminatedEvent};
use super::manager::{panic_message, ListenerBus};
use super::micro_batch::MicroBatchExecution;
use super::progress::StreamingQueryProgress;
use super::shared::QueryShared;
use super::spec::QuerySpec;
use crate::{Result, SluiceError};

/// The handle of a running query (Spark's `StreamingQuery`). Cheap to clone: clones (and
/// those [`StreamingQueryManager::active`](super::StreamingQueryManager::active) returns)
/// are handles of the same query. Dropping them does not stop the query: call
/// [`StreamingQuery::stop`].
///
/// # Examples
///
/// Start a query with a processing-time trigger, feed it, watch its progress, stop it:
///
/// ```
/// use std::time::Duration;
/// use polars::prelude::*;
/// use sluice_connectors::{register_all, MemoryStream};
/// use sluice_engine::{EngineSession, OutputMode, Trigger};
///
/// # fn main() -> sluice_engine::Result<()> {
/// let session = EngineSession::new();
/// register_all(&session);
/// let input = MemoryStream::new(Schema::from_iter([Field::new("x".into(), DataType::Int64)]));
/// let query = input.to_df(&session).write_stream().format("memory").query_name("xs")
///     .output_mode(OutputMode::Append)
///     .trigger(Trigger::ProcessingTime(Duration::from_millis(10)))
///     .start()?;
/// input.add_data(df!("x" => [1i64, 2])?)?;
/// query.process_all_available()?;      // returns once every row added so far is processed
/// assert!(query.is_active());
/// let rows: u64 = query.recent_progress().iter().map(|p| p.num_input_rows).sum();
/// assert_eq!(rows, 2);
/// query.stop()?;
/// assert!(!query.is_active());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct StreamingQuery {
    inner: Arc<QueryHandle>,
}

struct QueryHandle {
    id: String,
    run_id: String,
    name: Option<String>,
    shared: Arc<QueryShared>,
    bus: Arc<ListenerBus>,
    /// The query thread, until a handle joined it (held while joining, so that other
    /// handles wait for the result).
    thread: Mutex<Option<JoinHandle<Result<()>>>>,
    /// The outcome, once joined.
    result: Mutex<Option<Result<(), String>>>,
    /// The HTTP endpoint's port, if any.
    http_port: Mutex<Option<u16>>,
}

/// Starts the query `spec` on a new thread named `sluice-query-<name or id>`: plans and
/// restores it on the calling thread (so analysis and checkpoint errors return here),
/// registers it with the session's [`StreamingQueryManager`](super::StreamingQueryManager)
/// and posts [`QueryStartedEvent`]; the thread runs batches until the query stops, and
/// this returns once the listeners have seen the started event.
///
/// # Errors
/// [`SluiceError::Analysis`] for an invalid query or a name already used by an active
/// query of the session; [`SluiceError::Checkpoint`] for a damaged checkpoint;
/// [`SluiceError::Io`] when the thread cannot be spawned.
pub fn start(spec: QuerySpec) -> Result<StreamingQuery> {
    let name = spec.name.clone();
    let manager = spec.manager.clone();
    // Before the checkpoint is claimed: a second query of the same name must not take a
    // running query's checkpoint over.
    manager.check_name_free(name.as_deref())?;
    let shared = Arc::new(QueryShared::default());
    shared.state.lock().expect("query state lock").active = true;
    let mut exec = MicroBatchExecution::start(spec, shared.clone())?;
    let id = exec.id().to_string();
    let run_id = exec.run_id().to_string();
    let bus = manager.bus().clone();
    let query = StreamingQuery {
        inner: Arc::new(QueryHandle {
            id: id.clone(),
            run_id: run_id.clone(),
            name: name.clone(),
            shared: shared.clone(),
            bus: bus.clone(),
            thread: Mutex::new(None),
            result: Mutex::new(None),
            http_port: Mutex::new(None),
        }),
    };
    manager.register(&query)?;
    let started = QueryStartedEvent { id: id.clone(), run_id: run_id.clone(), name: name.clone(), timestamp: now_rfc3339() };
    // Posted before the thread runs, so that it comes before the first batch's progress;
    // waited for once the thread runs, so that a listener may stop the query from
    // on_query_started.
    let started_seq = bus.post(QueryEvent::Started(started), &shared);

    let thread_shared = shared.clone();
    let thread_manager = manager.clone();
    let thread = std::thread::Builder::new()
        .name(format!("sluice-query-{}", name.as_deref().unwrap_or(&id[..8])))
        .spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| exec.run())).unwrap_or_else(|panic| {
                Err(SluiceError::User(format!("a panic stopped the query: {}", panic_message(panic.as_ref()))))
            });
            if let Err(e) = &result {
                tracing::error!(query_id = %id, "query stopped with an error: {e}");
            }
            let exception = result.as_ref().err().map(|e| e.to_string());
            let event = QueryTerminatedEvent {
                id: id.clone(),
                run_id: run_id.clone(),
                name: name.clone(),
                timestamp: now_rfc3339(),
                exception: exception.clone(),
            };
            let seq = bus.post(QueryEvent::Terminated(event), &thread_shared);
            thread_shared.finish(exception.clone(), seq);
            let who = name.clone().unwrap_or_else(|| id.clone());
            thread_manager.terminated(&run_id, exception.map(|m| (who, m)), seq);
            result
        });
    let thread = match thread {
        Ok(t) => t,
        Err(e) => {
            let message = format!("the query thread could not start: {e}");
            shared.finish(Some(message.clone()), None);
            manager.terminated(query.run_id(), Some((query.display_name(), message)), None);
            return Err(SluiceError::Io { path: "<query thread>".into(), source: e });
        }
    };
    *query.inner.thread.lock().expect("thread lock") = Some(thread);
    query.inner.bus.wait_delivered(started_seq);
    Ok(query)
}

impl StreamingQuery {
    /// The query id: the same for every run on one checkpoint.
    pub fn id(&self) -> &str {
        &self.inner.id
    }
    /// The run id: new at every start.
    pub fn run_id(&self) -> &str {
        &self.inner.run_id
    }
    /// The query name, if set.
    pub fn name(&self) -> Option<&str> {
        self.inner.name.as_deref()
    }
    /// The name, else the id: how messages name the query.
    fn display_name(&self) -> String {
        self.inner.name.clone().unwrap_or_else(|| self.inner.id.clone())
    }
    fn shared(&self) -> &QueryShared {
        &self.inner.shared
    }
    /// Whether the query thread is still running.
    pub fn is_active(&self) -> bool {
        self.shared().state.lock().expect("query state lock").active
    }
    /// The latest status message.
    pub fn status(&self) -> String {
        self.shared().state.lock().expect("query state lock").status.clone()
    }
    /// The error that stopped the query, if any.
    pub fn exception(&self) -> Option<String> {
        self.shared().state.lock().expect("query state lock").error_message.clone()
    }
    /// Warnings: options that no source or sink read (misspelt ones, most likely), each
    /// naming the options the source or sink knows, found at start; then listeners that
    /// panicked while the query ran.
    pub fn warnings(&self) -> Vec<String> {
        self.shared().state.lock().unwrap_or_else(|e| e.into_inner()).warnings.clone()
    }
    /// The query's plan as text (Spark's `StreamingQuery.explain()`): the logical plan
    /// and the physical plan as planned at start, with the output mode and the sink (see
    /// [`crate::plan::explain`]); `extended` adds schemas.
    pub fn explain(&self, extended: bool) -> String {
        let e = self.shared().explain.lock().unwrap_or_else(|e| e.into_inner());
        if extended { e.1.clone() } else { e.0.clone() }
    }
    /// The last committed batch whose state [`state`](Self::state) shows (`None`: none
    /// committed yet).
    pub fn state_batch_id(&self) -> Option<u64> {
        self.shared().live_state().batch_id
    }
    /// A snapshot of stateful operator `operator`'s state (plan order, the `op=` of
    /// [`explain`](Self::explain)) as of the last committed batch, never a half-applied
    /// one: `partition_id`, then the rows as [`read_state`](crate::EngineSession::read_state)
    /// shows them given the query (an aggregation's results, then its raw partials as
    /// `raw.<column>`). A join's left side; [`state_store`](Self::state_store) for its
    /// right.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] for an operator the query does not have.
    pub fn state(&self, operator: usize) -> Result<polars::prelude::DataFrame> {
        self.state_store(operator, 0)
    }
    /// As [`state`](Self::state), for store `store` of the operator (a join: 0 left, 1
    /// right).
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] for an operator or store the query does not have.
    pub fn state_store(&self, operator: usize, store: usize) -> Result<polars::prelude::DataFrame> {
        let live = self.shared().live_state();
        let op = live.operators.get(operator).ok_or_else(|| {
            SluiceError::InvalidArgument(format!("the query has {} stateful operators, not {}", live.operators.len(), operator + 1))
        })?;
        let (st, frame) = op
            .stores
            .get(store)
            .ok_or_else(|| SluiceError::InvalidArgument(format!("operator {operator} ({}) has no store {store}", op.name)))?;
        let pids: Vec<u32> = st.partition_ids(frame)?.into_iter().map(|p| p as u32).collect();
        let mut shown = crate::state::view::show(frame, &st.key_columns, op.finalizer.as_ref())?;
        shown.insert_column(0, polars::prelude::Column::new("partition_id".into(), pids))?;
        Ok(shown)
    }
    /// The port of the query's HTTP endpoint (`sluice.http.port`; the bound one when 0
    /// was asked), if it has one.
    pub fn http_port(&self) -> Option<u16> {
        *self.inner.http_port.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub(crate) fn set_http_port(&self, port: u16) {
        *self.inner.http_port.lock().unwrap_or_else(|e| e.into_inner()) = Some(port);
    }
    /// The key columns of store `store` of stateful operator `operator`.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] for an operator or store the query does not have.
    pub fn state_key_columns(&self, operator: usize, store: usize) -> Result<Vec<String>> {
        let live = self.shared().live_state();
        live.operators
            .get(operator)
            .and_then(|o| o.stores.get(store))
            .map(|(s, _)| s.key_columns.clone())
            .ok_or_else(|| SluiceError::InvalidArgument(format!("no store {store} of operator {operator}")))
    }
    /// The rows of [`state`](Self::state) whose key matches `key`: `(column, value)`
    /// pairs compared as text (see [`crate::state::view::lookup`]; `"key"` names the first
    /// key column; a `window` matches on its start, e.g. `2024-03-01 08:30:00`). ksqlDB's
    /// pull query.
    ///
    /// # Errors
    /// As [`state`](Self::state); [`SluiceError::InvalidArgument`] for an unknown column.
    pub fn state_lookup(&self, operator: usize, key: &[(&str, &str)]) -> Result<polars::prelude::DataFrame> {
        let shown = self.state(operator)?;
        let live = self.shared().live_state();
        let keys = live.operators[operator].stores[0].0.key_columns.clone();
        let key: Vec<(String, String)> = key.iter().map(|(c, v)| (c.to_string(), v.to_string())).collect();
        crate::state::view::lookup(&shown, &keys, &key)
    }
    /// The progress of the last batch.
    pub fn last_progress(&self) -> Option<StreamingQueryProgress> {
        self.shared().state.lock().expect("query state lock").recent.back().cloned()
    }
    /// The progress of the last (up to 100) batches, oldest first.
    pub fn recent_progress(&self) -> Vec<StreamingQueryProgress> {
        self.shared().state.lock().expect("query state lock").recent.iter().cloned().collect()
    }

    /// Waits for the query thread to end, then for the listeners to have seen its
    /// terminated event; the query's outcome.
    fn join(&self) -> Result<()> {
        let outcome = {
            let mut thread = self.inner.thread.lock().expect("thread lock");
            match thread.take() {
                Some(h) => {
                    let r = h.join().unwrap_or_else(|_| Err(SluiceError::Internal("query thread panicked".into())));
                    *self.inner.result.lock().expect("result lock") = Some(r.as_ref().map(|_| ()).map_err(|e| e.to_string()));
                    Some(r)
                }
                None => None,
            }
        };
        let outcome = match outcome {
            Some(r) => r,
            None => {
                // Joined by another handle, or the thread is being set up: wait for the
                // end through the shared state.
                let mut s = self.shared().state.lock().expect("query state lock");
                while s.active {
                    s = self.shared().changed.wait(s).expect("query state lock");
                }
                let stored = self.inner.result.lock().expect("result lock").clone();
                match stored.unwrap_or_else(|| s.error_message.clone().map_or(Ok(()), Err)) {
                    Ok(()) => Ok(()),
                    Err(message) => Err(SluiceError::QueryFailed { query: self.display_name(), message }),
                }
            }
        };
        let event = self.shared().state.lock().unwrap_or_else(|e| e.into_inner()).terminated_event;
        self.inner.bus.wait_delivered(event);
        outcome
    }

    /// Blocks until the query stops (by itself with `Once`/`AvailableNow`, by `stop()`,
    /// or by an error), and the listeners have seen its terminated event.
    ///
    /// # Errors
    /// The error that stopped the query (the first call that waits gets the error
    /// itself, later ones [`SluiceError::QueryFailed`] with its message).
    pub fn await_termination(&self) -> Result<()> {
        self.join()
    }

    /// Blocks until everything available in the sources when called has been processed
    /// (and the no-data batches it calls for), or the query stops (testing aid, as in Spark).
    ///
    /// # Errors
    /// The error that stopped the query, if it stopped.
    pub fn process_all_available(&self) -> Result<()> {
        let shared = self.shared();
        let mut s = shared.state.lock().expect("query state lock");
        let target = s.idle_checks + 2;
        while s.active && s.idle_checks < target {
            s = shared.changed.wait(s).expect("query state lock");
        }
        let stopped = !s.active;
        drop(s);
        if stopped {
            return self.join();
        }
        Ok(())
    }

    /// Stops the query after the batch in progress and waits for its thread (and for the
    /// listeners to have seen its terminated event).
    ///
    /// # Errors
    /// The error that had stopped the query, if any.
    pub fn stop(&self) -> Result<()> {
        let shared = self.shared();
        shared.stop.store(true, Ordering::SeqCst);
        shared.changed.notify_all();
        self.join()
    }
}

impl std::fmt::Debug for StreamingQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingQuery")
            .field("id", &self.inner.id)
            .field("run_id", &self.inner.run_id)
            .field("name", &self.inner.name)
            .field("active", &self.is_active())
            .finish()
    }
}
