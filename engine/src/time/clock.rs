//! The clock that stamps each micro-batch with its processing time (Spark's
//! `batchTimestampMs`): the system clock, or a [`ManualClock`] that tests advance by hand
//! (Spark's `StreamManualClock`).
//!
//! The batch timestamp is what processing-time timeouts of
//! [`flat_map_groups_with_state`](crate::GroupedStreamingDataFrame::flat_map_groups_with_state)
//! are measured against, and it is logged in `offsets/<batch id>` so that a replayed batch
//! sees the same time.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// A source of processing time, in ms since the Unix epoch.
pub trait Clock: Send + Sync {
    /// The current time, ms since the epoch.
    fn now_ms(&self) -> i64;
}

/// The system's wall clock (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

/// A clock that only moves when told to: for tests of processing-time timeouts.
/// Clones share the same time.
///
/// ```
/// use sluice_engine::time::{Clock, ManualClock};
/// let clock = ManualClock::new(1_000);
/// clock.advance_ms(500);
/// assert_eq!(clock.now_ms(), 1_500);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    ms: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock standing at `start_ms` (ms since the epoch).
    pub fn new(start_ms: i64) -> Self {
        ManualClock { ms: Arc::new(AtomicI64::new(start_ms)) }
    }
    /// Moves the clock forward by `ms` milliseconds.
    pub fn advance_ms(&self, ms: i64) {
        self.ms.fetch_add(ms, Ordering::SeqCst);
    }
    /// Sets the clock to `ms` (ms since the epoch).
    pub fn set_ms(&self, ms: i64) {
        self.ms.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.ms.load(Ordering::SeqCst)
    }
}
