//! The stateful operators, one file or folder each, with its planned node, its per-batch
//! work and its state, and the [`StatefulOperator`] trait the trigger loop drives them by.
//!
//! | operator | Spark's | state |
//! |---|---|---|
//! | [`aggregate`]: `group_by(..).agg(..)`, windows | `StateStoreSaveExec` | one row per group: partial aggregates |
//! | [`session_window`]: `group_by(session_window(..), ..)` | `SessionWindowStateStoreSaveExec` | one row per session |
//! | [`dedup`]: `drop_duplicates(_within_watermark)` | `StreamingDeduplicateExec` | one row per key seen |
//! | [`join`]: stream-stream and stream-static joins | `StreamingSymmetricHashJoinExec` | each side's rows |
//! | [`group_state`]: `(flat_)map_groups_with_state` | `FlatMapGroupsWithStateExec` | one row per key: user state as JSON |
//!
//! Every operator keeps its state in a [`KeyedState`] (a join keeps two), so restore,
//! commit and purge are written once, here.

pub mod aggregate;
pub mod dedup;
pub mod group_state;
pub mod join;
pub mod late;
pub mod session_window;

use std::collections::BTreeMap;

use polars::prelude::DataFrame;
use serde::{Deserialize, Serialize};
use sluice_checkpoint::{BatchId, Checkpoint};

use crate::state::KeyedState;
use crate::{OutputMode, Result};

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
    /// Someone takes the rows the watermark drops (a late-rows side output, see
    /// [`late`], or [`explain_batch`](crate::explain_batch)): operators keep them for
    /// [`StatefulOperator::take_late_rows`]. `false` otherwise: late rows are only counted.
    pub keep_late_rows: bool,
    /// The batch is replayed by [`explain_batch`](crate::explain_batch): operators keep
    /// what explaining asks of them (a join's rows evicted with no match, see
    /// [`StatefulOperator::take_evicted_unmatched`]). `false` in a query's run.
    pub explaining: bool,
}

/// Rows of one side of a stream-stream join that a batch evicted from state by the
/// watermark without ever having matched a row of the other side (Spark: in an inner join
/// they produce nothing; in an outer join, on the outer side, one null-padded row each).
#[derive(Debug, Clone)]
pub struct EvictedUnmatched {
    /// Whether the rows are the left side's.
    pub left_side: bool,
    /// The side's state watermark (ms since the epoch) the rows were at or below.
    pub state_watermark_ms: i64,
    /// The rows: the side's input columns plus [`late::EVENT_TIME`] (µs, the side's
    /// watermark column).
    pub rows: DataFrame,
    /// For each row, the batch whose input it came in with (it waited in state since).
    pub added_in_batch: Vec<u64>,
    /// The null-padded output rows they produced, in the join's output schema (an outer
    /// side); empty otherwise.
    pub null_padded: DataFrame,
}

/// A stateful physical operator.
///
/// # Contract
/// Per batch the engine calls [`process`](Self::process) once, then, after the sink has
/// taken the output, [`commit`](Self::commit) with version `batch_id + 1`. If the batch
/// fails before its commit, the query stops; on restart the engine calls
/// [`restore`](Self::restore) with the last committed version and runs the batch again, so
/// `process` must be deterministic given the restored state and the same input.
///
/// An operator implements [`states`](Self::states) / [`states_mut`](Self::states_mut);
/// restore, commit, purge and the store ids follow from them.
pub trait StatefulOperator: Send {
    /// The operator's name in progress reports, e.g. `StreamingAggregateExec`.
    fn name(&self) -> &'static str;
    /// A description of the operator (its kind and keys), written with each store's index
    /// and state schema to `state/<store>/_metadata`; a restart with a different
    /// description fails (the query's stateful operators changed).
    fn state_description(&self) -> serde_json::Value;
    /// The operator's keyed states: one, or one per side for a join.
    fn states(&self) -> Vec<&KeyedState>;
    /// The operator's keyed states, mutable.
    fn states_mut(&mut self) -> Vec<&mut KeyedState>;
    /// Processes one batch: `inputs` has one frame per input of the operator.
    fn process(&mut self, inputs: Vec<DataFrame>, ctx: &BatchContext) -> Result<DataFrame>;
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
    fn progress(&self) -> StateOperatorProgress;
    /// The input rows the last [`process`](Self::process) dropped as late, taken (a
    /// second call returns nothing): frames of the operator's input columns plus the
    /// columns of [`late`] (event time, window). A join returns one frame per side.
    fn take_late_rows(&mut self) -> Vec<DataFrame> {
        Vec::new()
    }
    /// The watermark of this operator's output given its input watermark `input_ms`
    /// (Spark 3.5's `produceOutputWatermark`): the event time below which it emits no row,
    /// which the next stateful operator downstream judges late rows and evicts by. By
    /// default the input's; `None` when no output column is bound to event time.
    fn output_watermark(&self, input_ms: i64) -> Option<i64> {
        Some(input_ms)
    }
    /// What turns this operator's state rows into the rows they stand for, as the query
    /// would output them (an aggregation: keys and finished aggregates, one row per state
    /// row, in order); `None` when its state rows are shown as they are (`read_state`,
    /// live state).
    fn state_finalizer(&self) -> Option<crate::state::StateFinalizer> {
        None
    }
    /// For explaining a batch: every (input row, window) pair of `inputs` with its event
    /// time and window, as [`late`] columns (an aggregation by an event-time key; `None`
    /// for other operators, whose rows are their inputs as they are).
    fn explain_rows(&self, _inputs: &[DataFrame]) -> Option<Result<DataFrame>> {
        None
    }
    /// For explaining a batch: the state rows the last [`process`](Self::process) evicted
    /// by the watermark without ever having matched, taken (a second call returns
    /// nothing). Kept only when the batch ran with [`BatchContext::explaining`]. Only a stream-stream join has them; one entry per side that evicted
    /// some.
    fn take_evicted_unmatched(&mut self) -> Vec<EvictedUnmatched> {
        Vec::new()
    }
    /// Called after [`restore`](Self::restore) loaded the states (to rebuild derived data).
    fn restored(&mut self) {}

    /// The ids of the state stores this operator owns (folders `state/<id>`).
    fn state_store_ids(&self) -> Vec<usize> {
        self.states().iter().map(|s| s.store().store_id).collect()
    }
    /// Loads the state at `version` from the checkpoint.
    ///
    /// # Errors
    /// [`crate::SluiceError::Checkpoint`] naming a missing or corrupt state file.
    fn restore(&mut self, ckpt: &Checkpoint, version: u64) -> Result<()> {
        for s in self.states_mut() {
            s.restore(ckpt, version)?;
        }
        self.restored();
        Ok(())
    }
    /// Writes the state changes of the last `process` as `version`; returns, per state
    /// store id, the partitions that got a delta file (recorded in the commit log).
    ///
    /// # Errors
    /// [`crate::SluiceError::Checkpoint`] when a file cannot be written.
    fn commit(&mut self, ckpt: &Checkpoint, version: u64) -> Result<Vec<(usize, Vec<usize>)>> {
        self.states_mut().into_iter().map(|s| s.commit(ckpt, version)).collect()
    }
    /// Deletes state files not needed to load versions `>= keep_from_version`.
    ///
    /// # Errors
    /// [`crate::SluiceError::Checkpoint`] when listing or deleting fails.
    fn purge(&self, ckpt: &Checkpoint, keep_from_version: u64) -> Result<()> {
        for s in self.states() {
            s.purge(ckpt, keep_from_version)?;
        }
        Ok(())
    }
}

/// Metrics of one stateful operator in one batch (Spark's `StateOperatorProgress`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StateOperatorProgress {
    /// Operator name, e.g. `stateStoreSave`.
    pub operator_name: String,
    /// State rows after the batch.
    pub num_rows_total: u64,
    /// State rows inserted or updated by the batch.
    pub num_rows_updated: u64,
    /// State rows removed (evicted by the watermark) by the batch.
    pub num_rows_removed: u64,
    /// Input rows dropped as late; for aggregations, counted after partial aggregation
    /// (groups), as in Spark.
    pub num_rows_dropped_by_watermark: u64,
    /// Estimated bytes of the in-memory state.
    pub memory_used_bytes: u64,
    /// Number of state partitions.
    pub num_state_partitions: u64,
    /// Operator-specific metrics (e.g. per join side).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_metrics: BTreeMap<String, i64>,
}

impl StateOperatorProgress {
    /// Empty metrics for an operator named `name`.
    pub fn new(name: &str) -> Self {
        Self { operator_name: name.to_string(), ..Default::default() }
    }
    /// Records a batch of a single-store operator: state rows `updated` and `removed`,
    /// input rows (or groups) `dropped` as late, and the size of `state` after the batch
    /// (`numRowsTotal`, `memoryUsedBytes`, `numStatePartitions`).
    pub fn record_batch(&mut self, updated: u64, removed: u64, dropped: u64, state: &KeyedState) {
        self.num_rows_updated = updated;
        self.num_rows_removed = removed;
        self.num_rows_dropped_by_watermark = dropped;
        self.num_rows_total = state.frame().height() as u64;
        self.memory_used_bytes = state.frame().estimated_size() as u64;
        self.num_state_partitions = state.store().partitions as u64;
    }
}
