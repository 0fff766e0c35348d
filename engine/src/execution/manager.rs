//! [`StreamingQueryManager`] (Spark's `spark.streams`): the active queries of a session,
//! `await_any_termination`, and the listener bus that calls every
//! [`StreamingQueryListener`].
//!
//! # The listener bus
//! ```text
//!  query thread ──post(event)──► unbounded FIFO (seq 1, 2, 3, ...) ──► bus thread ──► listener 1, 2, ...
//!       │                                                                 │ (catch_unwind per call)
//!       └── start(): waits until seq(started) delivered                  └─► delivered = seq, notify
//!  await_termination(): join the query thread, wait until seq(terminated) delivered
//! ```
//! One bus thread per session (`sluice-listener-bus`, started on the first event and
//! gone after 5 idle seconds) drains one unbounded queue, so:
//! * nothing is dropped (Spark's bus drops events when its bounded queue is full; here a
//!   slow listener only lets the queue grow);
//! * events are delivered in the order they were posted: per query, started, then its
//!   batches in order, then terminated;
//! * a slow listener does not slow the batches (it runs on the bus thread, not the query
//!   thread), and listeners are never called concurrently;
//! * `start()` returns after `on_query_started` ran (as Spark delivers that event
//!   synchronously) and `await_termination()` / `await_any_termination()` / `stop()`
//!   after `on_query_terminated` ran, so what a listener recorded is complete then.
//!
//! Calling listeners synchronously on the query thread would give the same guarantees
//! with less machinery, but every batch would wait for every listener; the bus keeps
//! that cost off the trigger loop, as Spark does. With no listener registered nothing is
//! queued.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, Weak};
use std::time::{Duration, Instant};

use super::listener::{QueryEvent, StreamingQueryListener};
use super::query::StreamingQuery;
use super::shared::QueryShared;
use crate::{Result, SluiceError};

/// How long the bus thread waits for a new event before it ends (a new one starts with
/// the next event).
const BUS_LINGER: Duration = Duration::from_secs(5);

thread_local! {
    /// Whether this thread is a listener-bus thread (then waiting for deliveries would
    /// wait for itself).
    static ON_BUS_THREAD: Cell<bool> = const { Cell::new(false) };
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking listener never holds these locks; recover from poisoning anyway.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One queued event, with the query it belongs to (to report listener failures to).
struct Posted {
    seq: u64,
    event: QueryEvent,
    query: Weak<QueryShared>,
}

#[derive(Default)]
struct BusState {
    queue: VecDeque<Posted>,
    /// The sequence number of the last event posted.
    posted: u64,
    /// The sequence number of the last event every listener was called with.
    delivered: u64,
    /// Whether a bus thread is running.
    running: bool,
}

/// The session's listener bus (see the module docs).
#[derive(Default)]
pub(crate) struct ListenerBus {
    listeners: RwLock<Vec<Arc<dyn StreamingQueryListener>>>,
    state: Mutex<BusState>,
    changed: Condvar,
    failures: AtomicU64,
}

impl ListenerBus {
    fn listeners(&self) -> Vec<Arc<dyn StreamingQueryListener>> {
        self.listeners.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Queues `event` of `query` for every listener; its sequence number, or `None` when
    /// no listener is registered (nothing to deliver, nothing to wait for).
    pub(crate) fn post(self: &Arc<Self>, event: QueryEvent, query: &Arc<QueryShared>) -> Option<u64> {
        if self.listeners.read().unwrap_or_else(|e| e.into_inner()).is_empty() {
            return None;
        }
        let mut s = lock(&self.state);
        s.posted += 1;
        let seq = s.posted;
        s.queue.push_back(Posted { seq, event, query: Arc::downgrade(query) });
        if !s.running {
            let bus = self.clone();
            let spawned = std::thread::Builder::new().name("sluice-listener-bus".into()).spawn(move || bus.run());
            match spawned {
                Ok(_) => s.running = true,
                Err(e) => {
                    // No thread: deliver on this one rather than drop anything.
                    tracing::warn!("cannot start the listener bus thread ({e}); calling listeners on the query thread");
                    drop(s);
                    self.drain_inline();
                    return Some(seq);
                }
            }
        }
        self.changed.notify_all();
        Some(seq)
    }

    /// The next queued event; `None` once the queue stayed empty for [`BUS_LINGER`]
    /// (the thread then ends, marked not running under the lock).
    fn next(&self) -> Option<Posted> {
        let mut s = lock(&self.state);
        let deadline = Instant::now() + BUS_LINGER;
        loop {
            if let Some(p) = s.queue.pop_front() {
                return Some(p);
            }
            let now = Instant::now();
            if now >= deadline {
                s.running = false;
                return None;
            }
            s = self.changed.wait_timeout(s, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    fn run(self: Arc<Self>) {
        ON_BUS_THREAD.with(|b| b.set(true));
        while let Some(p) = self.next() {
            self.dispatch(p);
        }
    }

    /// Delivers everything queued on the calling thread (when no bus thread can start).
    fn drain_inline(&self) {
        loop {
            let next = lock(&self.state).queue.pop_front();
            match next {
                Some(p) => self.dispatch(p),
                None => return,
            }
        }
    }

    /// Calls every listener with `p`'s event, each call isolated from the others' panics.
    fn dispatch(&self, p: Posted) {
        for listener in self.listeners() {
            let call = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.event.deliver(listener.as_ref())));
            if let Err(panic) = call {
                let failures = self.failures.fetch_add(1, Ordering::SeqCst) + 1;
                let message = format!(
                    "the streaming query listener {} panicked in {} for {}: {}; the query goes on and the listener \
                     is called again for later events (fix the listener)",
                    listener.name(),
                    p.event.callback(),
                    p.event.describe(),
                    panic_message(panic.as_ref())
                );
                tracing::error!(listener_failures = failures, "{message}");
                if let Some(q) = p.query.upgrade() {
                    q.push_warning(message);
                }
            }
        }
        let mut s = lock(&self.state);
        s.delivered = s.delivered.max(p.seq);
        self.changed.notify_all();
    }

    /// Waits until the event `seq` was delivered to every listener. Returns at once on
    /// the bus thread itself (a listener that waits for a query would wait for itself).
    pub(crate) fn wait_delivered(&self, seq: Option<u64>) {
        let Some(seq) = seq else { return };
        if ON_BUS_THREAD.with(|b| b.get()) {
            return;
        }
        let mut s = lock(&self.state);
        while s.delivered < seq {
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The message of a caught panic.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

#[derive(Default)]
struct ManagerState {
    active: Vec<StreamingQuery>,
    /// Whether a query terminated since the last `reset_terminated` (Spark's
    /// `lastTerminatedQuery != null`).
    terminated: bool,
    /// The query (name or id) and error of the last query that terminated with one
    /// since the reset.
    exception: Option<(String, String)>,
    /// The listener-bus sequence number of the last terminated event.
    terminated_event: Option<u64>,
}

#[derive(Default)]
struct ManagerInner {
    state: Mutex<ManagerState>,
    changed: Condvar,
    bus: Arc<ListenerBus>,
}

/// The queries of a session and their listeners (Spark's `StreamingQueryManager`,
/// `spark.streams`): [`EngineSession::streams`](crate::EngineSession::streams). Cheap to
/// clone; clones share everything.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use sluice_engine::{EngineSession, StreamingQueryListener, QueryProgressEvent};
/// struct Log;
/// impl StreamingQueryListener for Log {
///     fn on_query_progress(&self, event: &QueryProgressEvent) {
///         println!("{}", event.progress.summary_line());
///     }
/// }
/// # let session = EngineSession::new();
/// session.streams().add_listener(Arc::new(Log));
/// // ... start queries ...
/// for q in session.streams().active() {
///     println!("{} {:?}", q.id(), q.name());
/// }
/// session.streams().await_any_termination(None)?;
/// # Ok::<(), sluice_engine::SluiceError>(())
/// ```
#[derive(Clone, Default)]
pub struct StreamingQueryManager {
    inner: Arc<ManagerInner>,
}

impl StreamingQueryManager {
    /// The queries of this session that are running, in start order.
    pub fn active(&self) -> Vec<StreamingQuery> {
        lock(&self.inner.state).active.iter().filter(|q| q.is_active()).cloned().collect()
    }

    /// The active query with query id `id` (Spark's `get(id)`), if any.
    pub fn get(&self, id: &str) -> Option<StreamingQuery> {
        self.active().into_iter().find(|q| q.id() == id)
    }

    /// Blocks until a query of this session terminates (or one did since the last
    /// [`reset_terminated`](Self::reset_terminated)), or `timeout` passes (`None`: no
    /// limit). `Ok(true)` when a query terminated, `Ok(false)` on timeout. Listeners have
    /// seen the terminated event when it returns.
    ///
    /// # Errors
    /// [`SluiceError::QueryFailed`] when a query terminated with an error since the last
    /// reset (every call reports it until [`reset_terminated`](Self::reset_terminated)).
    pub fn await_any_termination(&self, timeout: Option<Duration>) -> Result<bool> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut s = lock(&self.inner.state);
        while !s.terminated {
            match deadline {
                None => s = self.inner.changed.wait(s).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(false);
                    }
                    s = self.inner.changed.wait_timeout(s, d - now).unwrap_or_else(|e| e.into_inner()).0;
                }
            }
        }
        let seq = s.terminated_event;
        let failure = s
            .exception
            .as_ref()
            .map(|(query, message)| SluiceError::QueryFailed { query: query.clone(), message: message.clone() });
        drop(s);
        self.inner.bus.wait_delivered(seq);
        match failure {
            Some(e) => Err(e),
            None => Ok(true),
        }
    }

    /// Forgets the queries that terminated so far, so that
    /// [`await_any_termination`](Self::await_any_termination) waits for a new one.
    pub fn reset_terminated(&self) {
        let mut s = lock(&self.inner.state);
        s.terminated = false;
        s.exception = None;
        s.terminated_event = None;
    }

    /// Registers `listener` for the events of every query of this session (those
    /// already running included) from the next event on.
    pub fn add_listener(&self, listener: Arc<dyn StreamingQueryListener>) {
        self.inner.bus.listeners.write().unwrap_or_else(|e| e.into_inner()).push(listener);
    }

    /// Unregisters `listener` (the same `Arc`, compared by address); `false` when it was
    /// not registered. Events already queued are still delivered to the listeners
    /// registered when they are dispatched.
    pub fn remove_listener<L: StreamingQueryListener + ?Sized>(&self, listener: &Arc<L>) -> bool {
        let target = Arc::as_ptr(listener) as *const ();
        let mut listeners = self.inner.bus.listeners.write().unwrap_or_else(|e| e.into_inner());
        let before = listeners.len();
        listeners.retain(|l| Arc::as_ptr(l) as *const () != target);
        listeners.len() != before
    }

    /// How many listener calls panicked in this session (each is also a `tracing` error
    /// and a warning of the query concerned).
    pub fn listener_failures(&self) -> u64 {
        self.inner.bus.failures.load(Ordering::SeqCst)
    }

    pub(crate) fn bus(&self) -> &Arc<ListenerBus> {
        &self.inner.bus
    }

    /// Fails when an active query of this session already has the name `name`.
    ///
    /// # Errors
    /// [`SluiceError::Analysis`] naming the query (Spark's rule).
    pub(crate) fn check_name_free(&self, name: Option<&str>) -> Result<()> {
        self.check_name_locked(&lock(&self.inner.state), name)
    }

    fn check_name_locked(&self, s: &ManagerState, name: Option<&str>) -> Result<()> {
        let Some(name) = name else { return Ok(()) };
        if let Some(q) = s.active.iter().find(|q| q.is_active() && q.name() == Some(name)) {
            return Err(SluiceError::analysis(format!(
                "cannot start query with name {name} as a query with that name is already active in this session \
                 (id {}): stop it first, or give this query another query_name",
                q.id()
            )));
        }
        Ok(())
    }

    /// Adds a started query to the active ones.
    ///
    /// # Errors
    /// As [`check_name_free`](Self::check_name_free), checked again atomically.
    pub(crate) fn register(&self, query: &StreamingQuery) -> Result<()> {
        let mut s = lock(&self.inner.state);
        self.check_name_locked(&s, query.name())?;
        s.active.retain(|q| q.is_active());
        s.active.push(query.clone());
        Ok(())
    }

    /// The query run `run_id` terminated (with `exception`: the query's name or id and
    /// the error's message); its terminated event has bus sequence number `event`.
    pub(crate) fn terminated(&self, run_id: &str, exception: Option<(String, String)>, event: Option<u64>) {
        let mut s = lock(&self.inner.state);
        s.active.retain(|q| q.run_id() != run_id);
        s.terminated = true;
        if exception.is_some() {
            s.exception = exception;
        }
        if event.is_some() {
            s.terminated_event = event;
        }
        self.inner.changed.notify_all();
    }
}
