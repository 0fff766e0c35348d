//! Streaming deduplication: `drop_duplicates` (Spark's `StreamingDeduplicateExec`) and
//! `drop_duplicates_within_watermark` (Spark 3.5's
//! `StreamingDeduplicateWithinWatermarkExec`).
//!
//! ```text
//! input rows ──drop late rows (event time <= watermark for late events; only when the
//!   input has a watermarked column)──► keep the first row of each key in input order
//!   ──anti-join with the keys in state──► output (new keys), in input order
//! state: + new keys (within watermark: with expiry = event time + delay, µs)
//!        - evicted keys: dropDuplicates when the event time is a key and it is at or
//!          before the watermark for eviction; within watermark when expiry <= watermark
//! ```
//! Output rows keep every input column. The state is one frame: the key columns (and
//! `__expires_at_us` for the within-watermark variant); keys compare with nulls equal, as
//! Spark's key rows do. As in Spark:
//! * a key of `drop_duplicates` whose columns do not include the event-time column is
//!   never evicted: its state grows without bound;
//! * late rows are dropped against the previous batch's watermark whenever the input has a
//!   watermarked column, whether or not it is a key;
//! * `drop_duplicates_within_watermark` needs a watermark on its input (analysis error
//!   otherwise); its keys need not include the event-time column; a key's later rows are
//!   dropped until the watermark reaches `first event time + delay`, then it leaves state.
//! * a watermark move runs a no-data batch, which evicts (`shouldRunAnotherBatch`).
//!
//! Every step is a Polars operation over whole columns.

use std::sync::Arc;

use polars::prelude::*;

use super::{BatchContext, StateOperatorProgress, StatefulOperator};
use crate::state::{KeyedState, StateStore};
use crate::time::event_time::{evict, micros, EventTimeColumn};
use crate::{Result, SluiceError};

/// The state column of `drop_duplicates_within_watermark`: when a key expires, µs since
/// the epoch (Spark's `expiresAtMicros`).
pub const EXPIRES_AT_COLUMN: &str = "__expires_at_us";

const ROW: &str = "__dedup_row";

/// A planned deduplication: resolved keys and the event-time column it uses.
#[derive(Debug, Clone)]
pub struct DedupPlan {
    /// The key columns (all input columns when the subset was empty).
    pub keys: Vec<String>,
    /// The watermarked (event-time) column of the input, if any.
    pub event_time: Option<String>,
    /// `Some(delay in ms)` for `drop_duplicates_within_watermark`: the delay of the
    /// event-time column's watermark; `None` for `drop_duplicates`.
    pub within_watermark_delay_ms: Option<i64>,
    /// The input (and output) schema.
    pub schema: SchemaRef,
}

/// Resolves a deduplication subset against `schema`: an empty subset means all columns;
/// repeated names count once.
///
/// # Errors
/// [`SluiceError::Analysis`] naming a column that does not exist, or a list column (lists
/// cannot be compared as keys here).
pub fn resolve_keys(schema: &Schema, subset: &[String]) -> Result<Vec<String>> {
    let names: Vec<String> = if subset.is_empty() {
        schema.iter_names().map(|n| n.to_string()).collect()
    } else {
        let mut out: Vec<String> = Vec::new();
        for k in subset {
            if !out.contains(k) {
                out.push(k.clone());
            }
        }
        out
    };
    for k in &names {
        match schema.get(k) {
            None => {
                return Err(SluiceError::analysis(format!(
                    "cannot resolve column {k:?} of drop_duplicates among ({}): name existing columns",
                    schema.iter_names().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")
                )))
            }
            Some(DataType::List(_)) => {
                return Err(SluiceError::analysis(format!(
                    "drop_duplicates cannot use the list column {k:?} as a key: leave it out of the \
                     subset, or explode it first"
                )))
            }
            Some(_) => {}
        }
    }
    Ok(names)
}

impl DedupPlan {
    /// Plans `drop_duplicates(subset)` (or, with `within_watermark`,
    /// `drop_duplicates_within_watermark(subset)`) over input of `schema` whose watermarked
    /// columns are `watermarks` (`(column, delay ms)`, from the plan below).
    ///
    /// # Errors
    /// [`SluiceError::Analysis`] for an unknown key column, for a within-watermark
    /// deduplication whose input has no watermark or more than one watermarked column.
    pub fn new(schema: SchemaRef, subset: &[String], within_watermark: bool, watermarks: &[(String, i64)]) -> Result<Self> {
        let keys = resolve_keys(&schema, subset)?;
        let mut event_times: Vec<String> = Vec::new();
        for (c, _) in watermarks {
            if schema.contains(c) && !event_times.contains(c) {
                event_times.push(c.clone());
            }
        }
        let within_watermark_delay_ms = if within_watermark {
            let column = match event_times.as_slice() {
                [] => {
                    return Err(SluiceError::analysis(
                        "dropDuplicatesWithinWatermark is not supported on streaming DataFrames without \
                         watermark: call with_watermark(\"<event time column>\", \"<delay>\") before \
                         drop_duplicates_within_watermark, or use drop_duplicates",
                    ))
                }
                [one] => one,
                many => {
                    return Err(SluiceError::analysis(format!(
                        "More than one event time column is available ({}): drop_duplicates_within_watermark \
                         needs exactly one; drop or rename the others first",
                        many.join(", ")
                    )))
                }
            };
            Some(watermarks.iter().find(|(c, _)| c == column).map(|(_, d)| *d).ok_or_else(|| {
                SluiceError::Internal(format!("no watermark node found for the event-time column {column:?}"))
            })?)
        } else {
            None
        };
        // For drop_duplicates, an event-time column among the keys is the one that evicts.
        let event_time = event_times
            .iter()
            .find(|c| keys.contains(c))
            .or_else(|| event_times.first())
            .cloned();
        Ok(DedupPlan { keys, event_time, within_watermark_delay_ms, schema })
    }

    /// Whether state keys carry the event time (then `drop_duplicates` evicts them).
    pub fn event_time_is_key(&self) -> bool {
        self.event_time.as_ref().is_some_and(|c| self.keys.contains(c))
    }

    /// The schema of the state rows: the key columns, then [`EXPIRES_AT_COLUMN`] (Int64,
    /// µs) for the within-watermark variant.
    pub fn state_schema(&self) -> SchemaRef {
        let mut s: Schema = self
            .keys
            .iter()
            .filter_map(|k| self.schema.get(k).map(|d| Field::new(k.as_str().into(), d.clone())))
            .collect();
        if self.within_watermark_delay_ms.is_some() {
            s.insert(EXPIRES_AT_COLUMN.into(), DataType::Int64);
        }
        Arc::new(s)
    }
}

/// The physical deduplication operator, either variant (see the module docs).
pub struct StreamingDeduplicateExec {
    plan: DedupPlan,
    state: KeyedState,
    progress: StateOperatorProgress,
    /// The rows dropped as late by the last batch (see [`crate::operators::late`]).
    late: Vec<DataFrame>,
}

impl StreamingDeduplicateExec {
    /// A new operator with empty state in store `store_id` (call
    /// [`StatefulOperator::restore`] to load).
    pub fn new(plan: DedupPlan, store_id: usize, partitions: usize) -> Self {
        let state = KeyedState::new(StateStore {
            store_id,
            partitions,
            key_columns: plan.keys.clone(),
            schema: plan.state_schema(),
            snapshot_interval: crate::state::DEFAULT_SNAPSHOT_INTERVAL,
        });
        let short = if plan.within_watermark_delay_ms.is_some() { "dedupeWithinWatermark" } else { "dedupe" };
        StreamingDeduplicateExec { plan, state, progress: StateOperatorProgress::new(short), late: Vec::new() }
    }

    /// The state column whose event time evicts a key (none when the state is not
    /// evictable).
    fn eviction_key(&self) -> Option<EventTimeColumn> {
        match (&self.plan.within_watermark_delay_ms, &self.plan.event_time) {
            (Some(_), _) => Some(EventTimeColumn::new(EXPIRES_AT_COLUMN)),
            (None, Some(et)) if self.plan.event_time_is_key() => Some(EventTimeColumn::new(et.as_str())),
            _ => None,
        }
    }
}

impl StatefulOperator for StreamingDeduplicateExec {
    fn name(&self) -> &'static str {
        if self.plan.within_watermark_delay_ms.is_some() {
            "StreamingDeduplicateWithinWatermarkExec"
        } else {
            "StreamingDeduplicateExec"
        }
    }

    fn state_description(&self) -> serde_json::Value {
        serde_json::json!({
            "operator": self.name(),
            "keys": self.plan.keys,
        })
    }

    fn states(&self) -> Vec<&KeyedState> {
        vec![&self.state]
    }

    fn states_mut(&mut self) -> Vec<&mut KeyedState> {
        vec![&mut self.state]
    }

    fn process(&mut self, mut inputs: Vec<DataFrame>, ctx: &BatchContext) -> Result<DataFrame> {
        let input = inputs.pop().ok_or_else(|| SluiceError::Internal("deduplication without input".into()))?;
        let keys: Vec<Expr> = self.plan.keys.iter().map(|k| col(k.as_str())).collect();
        let mut kept = input.lazy().with_row_index(ROW, None).collect()?;
        let mut dropped = 0u64;
        self.late.clear();
        if let Some(et) = &self.plan.event_time {
            let late;
            (kept, dropped, late) = super::late::drop_late_rows(kept, et, ctx.watermark_for_late_events_ms, ctx.keep_late_rows)?;
            if let Some(late) = late {
                self.late.push(late.drop(ROW)?);
            }
        }
        let first = kept
            .clone()
            .lazy()
            .unique_stable(Some(by_name(self.plan.keys.iter().map(String::as_str), true, false)), UniqueKeepStrategy::First);
        let mut args = JoinArgs::new(JoinType::Anti);
        args.nulls_equal = true;
        let new_rows = first
            .join(self.state.frame().clone().lazy().select(keys.clone()), keys.clone(), keys.clone(), args)
            .sort([ROW], Default::default())
            .drop(by_name([ROW], true, false))
            .collect()?;

        // New state rows: the keys (and their expiry).
        let mut key_sel = keys.clone();
        if let Some(delay_ms) = self.plan.within_watermark_delay_ms {
            let et = self.plan.event_time.as_deref().unwrap_or_default();
            // A null event time counts as 0, as Spark reads it from its row.
            key_sel.push(
                (micros(col(et)).fill_null(lit(0i64)) + lit(delay_ms.saturating_mul(1000))).alias(EXPIRES_AT_COLUMN),
            );
        }
        let added = new_rows.clone().lazy().select(key_sel).collect()?;
        let state = self.state.frame().vstack(&added)?;
        let (mut state, evicted, upserts) = evict(
            state,
            added.clone(),
            self.eviction_key().as_ref(),
            ctx.watermark_for_eviction_ms,
        )?;
        state.rechunk_mut_par();
        let removed = evicted.height() as u64;
        // Keys added and evicted in this batch never reached the checkpoint: their delete
        // in the delta is a no-op.
        self.state.set(state, &upserts, &[&evicted])?;
        self.progress.record_batch(added.height() as u64, removed, dropped, &self.state);
        self.progress
            .custom_metrics
            .insert("numDroppedDuplicateRows".into(), (kept.height() - new_rows.height()) as i64);
        Ok(new_rows)
    }

    fn should_run_another_batch(&self, new_watermark_ms: i64, ctx: &BatchContext) -> bool {
        // Spark: whenever the watermark moves, whatever the keys.
        ctx.watermark_for_eviction_ms.is_some_and(|w| new_watermark_ms > w)
    }

    fn progress(&self) -> StateOperatorProgress {
        self.progress.clone()
    }

    fn take_late_rows(&mut self) -> Vec<DataFrame> {
        std::mem::take(&mut self.late)
    }
}
