//! The [`StatefulOperator`] trait: what every stateful physical operator implements
//! (aggregation now; joins, deduplication and `flat_map_groups_with_state` alike).

use polars::prelude::DataFrame;
use sluice_checkpoint::{BatchId, Checkpoint};

use crate::progress::StateOperatorProgress as Progress;
use crate::{OutputMode, Result};

pub use crate::progress::StateOperatorProgress;

/// What a stateful operator knows about the batch it runs in.
#[derive(Debug, Clone)]
pub struct BatchContext {
    /// The batch id.
    pub batch_id: BatchId,
    /// The batch's processing time, ms since the epoch (for processing-time timeouts).
    pub batch_timestamp_ms: i64,
    /// Rows with event time at or before this are late and dropped: the previous batch's
    /// watermark (Spark's `eventTimeWatermarkForLateEvents`). `None` without watermark.
    pub watermark_for_late_events_ms: Option<i64>,
    /// State with event time at or before this is evicted: this batch's watermark
    /// (Spark's `eventTimeWatermarkForEviction`). `None` without watermark.
    pub watermark_for_eviction_ms: Option<i64>,
    /// The query's output mode.
    pub output_mode: OutputMode,
}

/// A stateful physical operator.
///
/// # Contract
/// Per batch the engine calls [`process`](Self::process) once, then, after the sink has
/// taken the output, [`commit`](Self::commit) with version `batch_id + 1`. If the batch
/// fails before its commit, the query stops; on restart the engine calls
/// [`restore`](Self::restore) with the last committed version and runs the batch again, so
/// `process` must be deterministic given the restored state and the same input.
pub trait StatefulOperator: Send {
    /// The operator's name in progress reports, e.g. `StreamingAggregateExec`.
    fn name(&self) -> &'static str;
    /// A description of the state layout, written to `state/<op>/_metadata`; a restart
    /// with a different description fails (the query's stateful operators changed).
    fn state_description(&self) -> serde_json::Value;
    /// The ids of the state stores this operator owns (folders `state/<id>`): one for an
    /// aggregation, one per side for a join.
    fn state_store_ids(&self) -> Vec<usize>;
    /// Loads the state at `version` from the checkpoint.
    fn restore(&mut self, ckpt: &Checkpoint, version: u64) -> Result<()>;
    /// Processes one batch: `inputs` has one frame per input of the operator.
    fn process(&mut self, inputs: Vec<DataFrame>, ctx: &BatchContext) -> Result<DataFrame>;
    /// Writes the state changes of the last `process` as `version`; returns, per state
    /// store id, the partitions that got a delta file (recorded in the commit log).
    fn commit(&mut self, ckpt: &Checkpoint, version: u64) -> Result<Vec<(usize, Vec<usize>)>>;
    /// Deletes state files not needed to load versions `>= keep_from_version`.
    fn purge(&self, ckpt: &Checkpoint, keep_from_version: u64) -> Result<()>;
    /// Whether a no-data batch should run because the watermark moved to
    /// `new_watermark_ms` (Spark's `shouldRunAnotherBatch`).
    fn should_run_another_batch(&self, new_watermark_ms: i64, ctx: &BatchContext) -> bool;
    /// The earliest processing-time timeout in state, ms since the epoch: once the clock
    /// passes it, the engine runs a batch (a no-data batch if need be) so the key can time
    /// out. Only `flat_map_groups_with_state` with `ProcessingTimeTimeout` has one.
    fn next_processing_time_timeout_ms(&self) -> Option<i64> {
        None
    }
    /// Metrics of the last batch.
    fn progress(&self) -> Progress;
}
