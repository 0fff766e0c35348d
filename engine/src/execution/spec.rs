//! What a query is started with ([`QuerySpec`]) and the configuration its checkpoint pins
//! ([`PinnedConf`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_checkpoint::{Checkpoint, OffsetSeq};

use super::manager::StreamingQueryManager;
use super::progress::ProgressDisplay;
use crate::connector::Sink;
use crate::plan::LogicalPlan;
use crate::state::DEFAULT_STATE_PARTITIONS;
use crate::time::Clock;
use crate::{OutputMode, Result, SluiceError, Trigger};

/// Configuration key of the number of state partitions (pinned at the first batch).
pub const CONF_STATE_PARTITIONS: &str = "sluice.state.partitions";
/// Configuration key of the number of batches whose checkpoint files are kept.
pub const CONF_MIN_BATCHES_TO_RETAIN: &str = "sluice.minBatchesToRetain";
/// Configuration key of the global watermark policy: `min` (default) or `max`.
pub const CONF_WATERMARK_POLICY: &str = "sluice.multipleWatermarkPolicy";
/// Configuration key of the least time between two [`QueryIdleEvent`](super::QueryIdleEvent)s
/// of a query, and between its last batch and the first one, in milliseconds (Spark's
/// `spark.sql.streaming.noDataProgressEventInterval`; default 10000).
pub const CONF_NO_DATA_PROGRESS_EVENT_INTERVAL: &str = "sluice.noDataProgressEventInterval";

/// Everything a query needs to start, as the writer (`DataStreamWriter::start`) gathered it.
pub struct QuerySpec {
    /// What to compute.
    pub plan: Arc<LogicalPlan>,
    /// The session's configuration when the query started.
    pub conf: BTreeMap<String, String>,
    /// The output mode.
    pub output_mode: OutputMode,
    /// The trigger.
    pub trigger: Trigger,
    /// Where the rows go.
    pub sink: Box<dyn Sink>,
    /// Where the rows dropped as late go (see [`crate::operators::late`]), if anywhere.
    pub late_rows: Option<Box<dyn Sink>>,
    /// The query name, if set.
    pub name: Option<String>,
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// How progress is shown.
    pub progress: ProgressDisplay,
    /// The clock stamping batches.
    pub clock: Arc<dyn Clock>,
    /// Warnings found by the writer (options the sink did not read).
    pub warnings: Vec<String>,
    /// The session's queries and listeners: the query registers there and posts its
    /// events to its listener bus.
    pub manager: StreamingQueryManager,
}

/// The configuration a checkpoint pins at its first batch (logged in every `offsets/N`).
#[derive(Debug, Clone)]
pub struct PinnedConf {
    /// The pinned entries, as logged.
    pub entries: BTreeMap<String, String>,
    /// `sluice.state.partitions`.
    pub partitions: usize,
    /// `sluice.multipleWatermarkPolicy` is `max`.
    pub use_max_policy: bool,
    /// `sluice.minBatchesToRetain` (not pinned: the session's, default 100).
    pub min_batches_to_retain: u64,
    /// `sluice.noDataProgressEventInterval` in ms (not pinned: the session's, default
    /// 10000).
    pub no_data_progress_event_interval_ms: u64,
}

impl PinnedConf {
    /// What the checkpoint's latest offset entry pinned, else the session's `conf`, else
    /// the defaults.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] naming a key whose value is invalid.
    pub fn resolve(latest: Option<&OffsetSeq>, conf: &BTreeMap<String, String>) -> Result<Self> {
        let pinned = |key: &str| latest.and_then(|o| o.metadata.conf.get(key)).or_else(|| conf.get(key)).cloned();
        let mut entries = BTreeMap::new();
        let partitions = pinned(CONF_STATE_PARTITIONS).unwrap_or_else(|| DEFAULT_STATE_PARTITIONS.to_string());
        let partitions: usize = partitions.parse().ok().filter(|p| *p > 0).ok_or_else(|| {
            SluiceError::InvalidArgument(format!("{CONF_STATE_PARTITIONS} must be a positive integer, not {partitions:?}"))
        })?;
        entries.insert(CONF_STATE_PARTITIONS.to_string(), partitions.to_string());
        let policy = pinned(CONF_WATERMARK_POLICY).unwrap_or_else(|| "min".into()).to_ascii_lowercase();
        let use_max_policy = match policy.as_str() {
            "min" => false,
            "max" => true,
            other => {
                return Err(SluiceError::InvalidArgument(format!(
                    "{CONF_WATERMARK_POLICY} must be min or max, not {other:?}"
                )))
            }
        };
        entries.insert(CONF_WATERMARK_POLICY.to_string(), policy);
        let min_batches_to_retain = conf
            .get(CONF_MIN_BATCHES_TO_RETAIN)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| SluiceError::InvalidArgument(format!("{CONF_MIN_BATCHES_TO_RETAIN}: {v:?}")))
            })
            .transpose()?
            .unwrap_or(100)
            .max(1);
        let no_data_progress_event_interval_ms = conf
            .get(CONF_NO_DATA_PROGRESS_EVENT_INTERVAL)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    SluiceError::InvalidArgument(format!(
                        "{CONF_NO_DATA_PROGRESS_EVENT_INTERVAL} must be a number of milliseconds, not {v:?}"
                    ))
                })
            })
            .transpose()?
            .unwrap_or(10_000);
        Ok(PinnedConf { entries, partitions, use_max_policy, min_batches_to_retain, no_data_progress_event_interval_ms })
    }
}

