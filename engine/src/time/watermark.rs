//! The query's event-time watermark (Spark's `WatermarkTracker`).
//!
//! ```text
//! batch N: every with_watermark(column, delay) node observes its rows' event times
//!          (min, max, avg, count; µs truncated to ms as Spark does)
//! after N: each node that saw rows proposes max - delay; its watermark never decreases;
//!          a node that has seen nothing yet counts as 0 (so under `min` one silent
//!          input holds the watermark at 0); the query's watermark is the min (policy
//!          `min`, default) or max of the nodes', and never decreases
//! batch N+1 runs with it (logged in offsets/N+1); operators drop late rows with the
//! previous batch's watermark and evict state with the current one
//! ```

use std::collections::BTreeMap;

use polars::prelude::*;

use super::event_time::micros_of;
use crate::Result;

/// A `with_watermark(column, delay)` node of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatermarkSpec {
    /// The event-time column.
    pub column: String,
    /// The delay (lateness bound), ms.
    pub delay_ms: i64,
}

/// Event-time statistics of the rows one watermark node saw in one batch, ms since the
/// epoch (µs truncated by integer division, as Spark does).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EventTimeStats {
    /// Smallest event time, ms.
    pub min_ms: i64,
    /// Largest event time, ms.
    pub max_ms: i64,
    /// Sum of event times, ms (for the average).
    pub sum_ms: f64,
    /// Rows with a non-null event time.
    pub count: u64,
}

impl EventTimeStats {
    /// Adds the non-null values of `column` (a timestamp) to the statistics.
    ///
    /// # Errors
    /// [`crate::SluiceError::Polars`] when the column is not a timestamp.
    pub fn observe(&mut self, column: &Column) -> Result<()> {
        let us = micros_of(column)?;
        let count = (us.len() - us.null_count()) as u64;
        if count == 0 {
            return Ok(());
        }
        let max = us.max().unwrap_or(0) / 1000;
        let min = us.min().unwrap_or(0) / 1000;
        let sum: f64 = us.iter().flatten().map(|v| (v / 1000) as f64).sum();
        if self.count == 0 {
            *self = EventTimeStats { min_ms: min, max_ms: max, sum_ms: sum, count };
        } else {
            self.min_ms = self.min_ms.min(min);
            self.max_ms = self.max_ms.max(max);
            self.sum_ms += sum;
            self.count += count;
        }
        Ok(())
    }

    /// Spark's `eventTime` progress map over several nodes' statistics: `min`, `max`, `avg`
    /// (RFC 3339) of the rows seen, empty when no node saw a row.
    pub fn progress_map(all: &[EventTimeStats]) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let seen: Vec<&EventTimeStats> = all.iter().filter(|s| s.count > 0).collect();
        if seen.is_empty() {
            return out;
        }
        let min = seen.iter().map(|s| s.min_ms).min().unwrap_or(0);
        let max = seen.iter().map(|s| s.max_ms).max().unwrap_or(0);
        let count: u64 = seen.iter().map(|s| s.count).sum();
        let sum: f64 = seen.iter().map(|s| s.sum_ms).sum();
        out.insert("min".into(), ms_to_rfc3339(min));
        out.insert("max".into(), ms_to_rfc3339(max));
        out.insert("avg".into(), ms_to_rfc3339((sum / count as f64) as i64));
        out
    }
}

/// `ms` since the epoch as RFC 3339 UTC with milliseconds (`2015-09-12T00:10:00.000Z`).
pub fn ms_to_rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// The query's watermark: per-node watermarks and the global one (see the module docs).
#[derive(Debug, Clone)]
pub struct WatermarkTracker {
    specs: Vec<WatermarkSpec>,
    use_max_policy: bool,
    /// Per node: its watermark, `None` until the first batch after which it counts.
    node_watermarks_ms: Vec<Option<i64>>,
    /// The global watermark, ms (0 before any).
    current_ms: i64,
}

impl WatermarkTracker {
    /// A tracker for the plan's watermark nodes; `use_max_policy` selects Spark's
    /// `multipleWatermarkPolicy=max`.
    pub fn new(specs: Vec<WatermarkSpec>, use_max_policy: bool) -> Self {
        let n = specs.len();
        WatermarkTracker { specs, use_max_policy, node_watermarks_ms: vec![None; n], current_ms: 0 }
    }

    /// The watermark nodes.
    pub fn specs(&self) -> &[WatermarkSpec] {
        &self.specs
    }

    /// Whether the query has any watermark.
    pub fn is_enabled(&self) -> bool {
        !self.specs.is_empty()
    }

    /// The current global watermark, ms.
    pub fn current_ms(&self) -> i64 {
        self.current_ms
    }

    /// The per-node watermarks, as persisted in `commits/N`.
    pub fn node_watermarks_ms(&self) -> &[Option<i64>] {
        &self.node_watermarks_ms
    }

    /// Restores the global watermark and, when their number matches the plan's, the
    /// per-node ones (from `commits/N`).
    pub fn restore(&mut self, current_ms: i64, node_watermarks_ms: &[Option<i64>]) {
        self.current_ms = current_ms;
        if node_watermarks_ms.len() == self.node_watermarks_ms.len() {
            self.node_watermarks_ms = node_watermarks_ms.to_vec();
        }
    }

    /// Sets the global watermark (a replayed batch runs with its logged one).
    pub fn set_current_ms(&mut self, ms: i64) {
        self.current_ms = ms;
    }

    /// Advances the watermark after a batch whose nodes saw `stats` (one per node); returns
    /// the new global watermark (never lower than before).
    pub fn advance(&mut self, stats: &[EventTimeStats]) -> i64 {
        if self.specs.is_empty() {
            return self.current_ms;
        }
        for (i, (spec, s)) in self.specs.iter().zip(stats).enumerate() {
            if s.count > 0 {
                let candidate = s.max_ms - spec.delay_ms;
                if self.node_watermarks_ms[i].is_none_or(|w| candidate > w) {
                    self.node_watermarks_ms[i] = Some(candidate);
                }
            } else if self.node_watermarks_ms[i].is_none() {
                // A node that has seen no row yet holds the min policy at 0 (Spark).
                self.node_watermarks_ms[i] = Some(0);
            }
        }
        let values = self.node_watermarks_ms.iter().flatten().copied();
        let chosen = if self.use_max_policy { values.max() } else { values.min() };
        if let Some(c) = chosen {
            if c > self.current_ms {
                self.current_ms = c;
            }
        }
        self.current_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(max_ms: i64) -> EventTimeStats {
        EventTimeStats { min_ms: max_ms, max_ms, sum_ms: max_ms as f64, count: 1 }
    }

    #[test]
    fn min_policy_waits_for_every_node_and_never_goes_back() {
        let spec = |c: &str| WatermarkSpec { column: c.into(), delay_ms: 10 };
        let mut t = WatermarkTracker::new(vec![spec("a"), spec("b")], false);
        assert_eq!(t.advance(&[stats(100), EventTimeStats::default()]), 0, "b saw nothing: held at 0");
        assert_eq!(t.advance(&[stats(100), stats(50)]), 40);
        assert_eq!(t.advance(&[stats(20), stats(30)]), 40, "never decreases");
        let mut m = WatermarkTracker::new(vec![spec("a"), spec("b")], true);
        assert_eq!(m.advance(&[stats(100), EventTimeStats::default()]), 90);
    }
}
