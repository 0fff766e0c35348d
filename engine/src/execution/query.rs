//! [`StreamingQuery`]: the handle of a running query (Spark's `StreamingQuery`).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::micro_batch::MicroBatchExecution;
use super::progress::StreamingQueryProgress;
use super::shared::QueryShared;
use super::spec::QuerySpec;
use crate::{Result, SluiceError};

/// The handle of a running query. Dropping it does not stop the query: call
/// [`StreamingQuery::stop`].
pub struct StreamingQuery {
    id: String,
    run_id: String,
    name: Option<String>,
    shared: Arc<QueryShared>,
    thread: Mutex<Option<JoinHandle<Result<()>>>>,
    result: Mutex<Option<Result<(), String>>>,
}

/// Starts the query `spec` on a new thread named `sluice-query-<name or id>`: plans and
/// restores it on the calling thread (so analysis and checkpoint errors return here),
/// then runs batches until it stops.
///
/// # Errors
/// [`SluiceError::Analysis`] for an invalid query; [`SluiceError::Checkpoint`] for a
/// damaged checkpoint; [`SluiceError::Io`] when the thread cannot be spawned.
pub fn start(spec: QuerySpec) -> Result<StreamingQuery> {
    let name = spec.name.clone();
    let shared = Arc::new(QueryShared::default());
    shared.state.lock().expect("query state lock").active = true;
    let mut exec = MicroBatchExecution::start(spec, shared.clone())?;
    let id = exec.id().to_string();
    let run_id = exec.run_id().to_string();
    let thread_shared = shared.clone();
    let thread = std::thread::Builder::new()
        .name(format!("sluice-query-{}", name.as_deref().unwrap_or(&id[..8])))
        .spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| exec.run()))
                .unwrap_or_else(|panic| {
                    let msg = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "unknown panic".into());
                    Err(SluiceError::User(format!("a panic stopped the query: {msg}")))
                });
            if let Err(e) = &result {
                tracing::error!("query stopped with an error: {e}");
            }
            thread_shared.finish(result.as_ref().err().map(|e| e.to_string()));
            result
        })
        .map_err(|e| SluiceError::Io { path: "<query thread>".into(), source: e })?;
    Ok(StreamingQuery { id, run_id, name, shared, thread: Mutex::new(Some(thread)), result: Mutex::new(None) })
}

impl StreamingQuery {
    /// The query id: the same for every run on one checkpoint.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The run id: new at every start.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }
    /// The query name, if set.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    /// Whether the query thread is still running.
    pub fn is_active(&self) -> bool {
        self.shared.state.lock().expect("query state lock").active
    }
    /// The latest status message.
    pub fn status(&self) -> String {
        self.shared.state.lock().expect("query state lock").status.clone()
    }
    /// The error that stopped the query, if any.
    pub fn exception(&self) -> Option<String> {
        self.shared.state.lock().expect("query state lock").error_message.clone()
    }
    /// Warnings found when the query started: options that no source or sink read
    /// (misspelt ones, most likely), each naming the options the source or sink knows.
    pub fn warnings(&self) -> Vec<String> {
        self.shared.state.lock().expect("query state lock").warnings.clone()
    }
    /// The progress of the last batch.
    pub fn last_progress(&self) -> Option<StreamingQueryProgress> {
        self.shared.state.lock().expect("query state lock").recent.back().cloned()
    }
    /// The progress of the last (up to 100) batches, oldest first.
    pub fn recent_progress(&self) -> Vec<StreamingQueryProgress> {
        self.shared.state.lock().expect("query state lock").recent.iter().cloned().collect()
    }

    fn join(&self) -> Result<()> {
        let handle = self.thread.lock().expect("thread lock").take();
        if let Some(h) = handle {
            let r = h.join().unwrap_or_else(|_| Err(SluiceError::Internal("query thread panicked".into())));
            *self.result.lock().expect("result lock") = Some(r.as_ref().map(|_| ()).map_err(|e| e.to_string()));
            return r;
        }
        match self.result.lock().expect("result lock").clone() {
            Some(Err(m)) => Err(SluiceError::User(m)),
            _ => Ok(()),
        }
    }

    /// Blocks until the query stops (by itself with `Once`/`AvailableNow`, by `stop()`,
    /// or by an error).
    ///
    /// # Errors
    /// The error that stopped the query.
    pub fn await_termination(&self) -> Result<()> {
        self.join()
    }

    /// Blocks until everything available in the sources when called has been processed
    /// (and the no-data batches it calls for), or the query stops (testing aid, as in Spark).
    ///
    /// # Errors
    /// The error that stopped the query, if it stopped.
    pub fn process_all_available(&self) -> Result<()> {
        let mut s = self.shared.state.lock().expect("query state lock");
        let target = s.idle_checks + 2;
        while s.active && s.idle_checks < target {
            s = self.shared.changed.wait(s).expect("query state lock");
        }
        let stopped = !s.active;
        drop(s);
        if stopped {
            return self.join();
        }
        Ok(())
    }

    /// Stops the query after the batch in progress and waits for its thread.
    ///
    /// # Errors
    /// The error that had stopped the query, if any.
    pub fn stop(&self) -> Result<()> {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.changed.notify_all();
        self.join()
    }
}
