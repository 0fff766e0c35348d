//! [`QueryShared`]: what the query thread and its handle share: the stop flag, the status,
//! the recent progress reports and the start-up warnings.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use polars::prelude::DataFrame;

use crate::state::{StateFinalizer, StateStore};
use std::time::Duration;

use super::progress::StreamingQueryProgress;

/// How many progress reports a query keeps (Spark's default 100).
pub const RECENT_PROGRESS_KEPT: usize = 100;

#[derive(Default)]
pub(super) struct SharedState {
    pub(super) active: bool,
    pub(super) error_message: Option<String>,
    pub(super) recent: VecDeque<StreamingQueryProgress>,
    pub(super) idle_checks: u64,
    pub(super) status: String,
    pub(super) warnings: Vec<String>,
    /// The listener-bus sequence number of the query's terminated event (`None`: not
    /// posted yet, or no listener).
    pub(super) terminated_event: Option<u64>,
}

/// One stateful operator's state as last committed (see [`LiveState`]).
#[derive(Clone)]
pub struct LiveOperator {
    /// The operator's name, e.g. `StreamingAggregateExec`.
    pub name: String,
    /// Each store (a join has two) and its rows.
    pub stores: Vec<(StateStore, DataFrame)>,
    /// Shows an aggregation's rows as the query outputs them.
    pub finalizer: Option<StateFinalizer>,
}

/// The state of every operator as of the last committed batch, published by the query
/// thread after each commit (never a half-applied batch). Frames are cheap clones of the
/// operators' own (Polars shares the column buffers).
#[derive(Clone, Default)]
pub struct LiveState {
    /// The last committed batch (`None`: none yet).
    pub batch_id: Option<u64>,
    /// The operators, in plan order.
    pub operators: Vec<LiveOperator>,
}

/// State shared between the handle and the query thread.
#[derive(Default)]
pub struct QueryShared {
    pub(super) stop: AtomicBool,
    pub(super) state: Mutex<SharedState>,
    pub(super) changed: Condvar,
    /// `explain(false)` and `explain(true)` of the planned query.
    pub(super) explain: Mutex<(String, String)>,
    /// The operators' state as of the last commit.
    pub(super) live: RwLock<Arc<LiveState>>,
}

impl QueryShared {
    pub(crate) fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
    /// Sleeps up to `d`; `true` when stop was requested meanwhile.
    pub(crate) fn wait_for_stop(&self, d: Duration) -> bool {
        let guard = self.state.lock().expect("query state lock");
        let _unused = self
            .changed
            .wait_timeout_while(guard, d, |_| !self.stop.load(Ordering::SeqCst))
            .expect("query state lock");
        self.stop_requested()
    }
    /// The loop looked for data and found none.
    pub(crate) fn mark_idle(&self) {
        let mut s = self.state.lock().expect("query state lock");
        s.idle_checks += 1;
        s.status = "Waiting for data to arrive".into();
        self.changed.notify_all();
    }
    pub(crate) fn publish_state(&self, state: LiveState) {
        *self.live.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(state);
    }
    pub(crate) fn live_state(&self) -> Arc<LiveState> {
        self.live.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
    pub(crate) fn set_explain(&self, plain: String, extended: String) {
        *self.explain.lock().unwrap_or_else(|e| e.into_inner()) = (plain, extended);
    }
    pub(crate) fn set_warnings(&self, warnings: Vec<String>) {
        self.state.lock().expect("query state lock").warnings = warnings;
    }
    /// A warning found while the query runs (e.g. a listener that panicked).
    pub(crate) fn push_warning(&self, warning: String) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).warnings.push(warning);
    }
    pub(crate) fn record_progress(&self, p: StreamingQueryProgress) {
        let mut s = self.state.lock().expect("query state lock");
        if s.recent.len() == RECENT_PROGRESS_KEPT {
            s.recent.pop_front();
        }
        s.recent.push_back(p);
        s.status = "Processing new data".into();
        self.changed.notify_all();
    }
    pub(super) fn finish(&self, error: Option<String>, terminated_event: Option<u64>) {
        let mut s = self.state.lock().expect("query state lock");
        s.active = false;
        s.terminated_event = terminated_event;
        s.error_message = error;
        s.status = "Stopped".into();
        self.changed.notify_all();
    }
}

