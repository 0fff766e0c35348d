//! Output modes and triggers.

use std::time::Duration;

use crate::time::interval::parse_interval_micros;
use crate::{Result, SluiceError};

/// What a query writes per batch (Spark's `OutputMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum OutputMode {
    /// Only new rows that will never change: for an aggregation, a group once the
    /// watermark passes its event time (requires a watermark on a grouping key).
    Append,
    /// Rows changed by this batch; state past the watermark is evicted silently.
    Update,
    /// The whole result table every batch (aggregations only; state is never evicted).
    Complete,
}

impl std::str::FromStr for OutputMode {
    type Err = SluiceError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "append" => Ok(OutputMode::Append),
            "update" => Ok(OutputMode::Update),
            "complete" => Ok(OutputMode::Complete),
            _ => Err(SluiceError::InvalidArgument(format!(
                "unknown output mode {s:?}: use append, update or complete"
            ))),
        }
    }
}

impl std::fmt::Display for OutputMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OutputMode::Append => "Append",
            OutputMode::Update => "Update",
            OutputMode::Complete => "Complete",
        })
    }
}

/// When batches run (Spark's `Trigger`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A batch every `interval` (a zero interval: as soon as the previous batch ends and
    /// data is there: Spark's default trigger). A late batch starts right away.
    ProcessingTime(Duration),
    /// One batch with everything available, then stop (read limits are ignored).
    Once,
    /// Everything available at start, in as many batches as read limits require, plus the
    /// no-data batch the last watermark calls for; then stop.
    AvailableNow,
}

impl Default for Trigger {
    fn default() -> Self {
        Trigger::ProcessingTime(Duration::ZERO)
    }
}

impl Trigger {
    /// `ProcessingTime` from a Spark interval string, e.g. `"10 seconds"`.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] for a bad interval.
    pub fn processing_time(interval: &str) -> Result<Self> {
        Ok(Trigger::ProcessingTime(Duration::from_micros(parse_interval_micros(interval)? as u64)))
    }
}
