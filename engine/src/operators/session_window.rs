//! `SessionWindowAggregateExec`: streaming aggregation over
//! [`session_window`](crate::api::functions::session_window) keys (Spark's
//! `SessionWindowStateStoreRestoreExec` + `MergingSessionsExec` +
//! `SessionWindowStateStoreSaveExec`).
//!
//! State holds one row per session: the other group keys, the session start (the key
//! column, Int64 µs), the partial aggregates `__p<i>` of its rows and its end
//! ([`SESSION_END`], Int64 µs); it is keyed by (group keys, start). Per batch:
//!
//! ```text
//! input rows ──drop null event time; key = (keys, t); end = t + gap──► partial group-by
//!   ──drop late rows (end <= watermark for late events)──►
//!   state sessions of the keys in the batch + new rows
//!   ──sort by (keys, start); a row opens a new session when its start is after the
//!     running max of the ends before it (touching sessions merge)──►
//!   group-by session: start = min, end = max, combine partials──► merged sessions
//!   ──replace the keys' old sessions (delta: upsert merged rows that took new rows,
//!     delete absorbed starts)──►
//!   evict (append only: end <= watermark for eviction)──►
//! output: append = finalized evicted sessions; complete = finalized whole state
//! ```
//! Spark 3.5 rejects update mode for session windows ("Update output mode not supported
//! for session window on streaming DataFrames/DataSets"), and so does Sluice at
//! `start()`. In complete mode late rows are still dropped (Spark's restore operator
//! filters them), but nothing is evicted. A merge is associative: it combines partial
//! aggregates with the [`AggregatePlan`]'s combine expressions, so a row bridging two
//! stored sessions joins both into one.
//!
//! Everything is a Polars operation over whole columns except the running max of session
//! ends, a single pass over the sorted Int64 columns (Polars' `cum_max` is behind its
//! `cum_agg` feature, which this build does not enable).

use polars::prelude::*;

use super::aggregate::{AggregatePlan, SESSION_END};
use super::{BatchContext, StateOperatorProgress, StatefulOperator};
use crate::state::{KeyedState, StateStore};
use crate::time::event_time::{evict, EventTimeColumn};
use crate::{OutputMode, Result, SluiceError};

const UPDATED: &str = "__updated";
const SESSION_ID: &str = "__session_id";

/// The physical session-window aggregation operator (see the module docs).
pub struct SessionWindowAggregateExec {
    plan: AggregatePlan,
    mode: OutputMode,
    /// The grouping keys without the session key.
    group_keys: Vec<String>,
    /// The session key column (its start, Int64 µs).
    start: String,
    gap_us: i64,
    state: KeyedState,
    progress: StateOperatorProgress,
    /// The rows dropped as late by the last batch (see [`crate::operators::late`]).
    late: Vec<DataFrame>,
}

fn join_args(how: JoinType) -> JoinArgs {
    let mut args = JoinArgs::new(how);
    args.nulls_equal = true;
    args
}

fn cols(names: &[String]) -> Vec<Expr> {
    names.iter().map(|k| col(k.as_str())).collect()
}

impl SessionWindowAggregateExec {
    /// A new operator with empty state (call [`StatefulOperator::restore`] to load).
    ///
    /// # Errors
    /// [`SluiceError::Internal`] when `plan` has no session window key.
    pub fn new(plan: AggregatePlan, store_id: usize, partitions: usize, mode: OutputMode) -> Result<Self> {
        let (start, gap_us) = plan
            .session_window()
            .map(|(s, g)| (s.to_string(), g))
            .ok_or_else(|| SluiceError::Internal("a session-window aggregation without session_window()".into()))?;
        let group_keys: Vec<String> = plan.key_names().iter().filter(|k| **k != start).cloned().collect();
        let state = KeyedState::new(StateStore {
            store_id,
            partitions,
            key_columns: plan.key_names().to_vec(),
            schema: plan.state_schema.clone(),
            snapshot_interval: crate::state::DEFAULT_SNAPSHOT_INTERVAL,
        });
        Ok(SessionWindowAggregateExec {
            plan,
            mode,
            group_keys,
            start,
            gap_us,
            state,
            progress: StateOperatorProgress::new("sessionWindowStateStoreSaveExec"), late: Vec::new(),
        })
    }

    /// Late filtering applies in every mode when the session's time is watermarked.
    fn late_key(&self) -> Option<&EventTimeColumn> {
        self.plan.event_time_key.as_ref()
    }

    /// The event time evicting sessions: in append mode only (complete keeps every session).
    fn eviction_key(&self) -> Option<&EventTimeColumn> {
        self.plan.event_time_key.as_ref().filter(|_| self.mode == OutputMode::Append)
    }

    /// Merges the sessions of `old` (stored, disjoint per key) with `new` (partial rows of
    /// this batch): returns every resulting session of their keys, with a last column
    /// `__updated` telling whether it took rows of `new`.
    pub(crate) fn merge_sessions(&self, old: &DataFrame, new: &DataFrame) -> Result<DataFrame> {
        let mut sort_by = self.group_keys.clone();
        sort_by.push(self.start.clone());
        let sorted = concat(
            [
                old.clone().lazy().with_column(lit(false).alias(UPDATED)),
                new.clone().lazy().with_column(lit(true).alias(UPDATED)),
            ],
            UnionArgs::default(),
        )?
        .sort(sort_by, SortMultipleOptions::default())
        .with_column(self.key_changes().alias("__key_changed"))
        .collect()?;
        let ids: Vec<u32> = session_ids(
            sorted.column(&self.start)?.as_materialized_series().i64()?,
            sorted.column(SESSION_END)?.as_materialized_series().i64()?,
            sorted.column("__key_changed")?.as_materialized_series().bool()?,
        );
        let mut aggs: Vec<Expr> = cols(&self.group_keys).into_iter().map(|k| k.first()).collect();
        aggs.push(col(self.start.as_str()).min());
        aggs.extend(self.plan.combine_exprs().iter().cloned());
        aggs.push(col(SESSION_END).max());
        aggs.push(col(UPDATED).max());
        let mut names: Vec<PlSmallStr> = self.state.store().schema.iter_names().cloned().collect();
        names.push(UPDATED.into());
        let mut sorted = sorted;
        sorted.with_column(Column::new(SESSION_ID.into(), ids))?;
        let mut merged = sorted.lazy().group_by([col(SESSION_ID)]).agg(aggs).collect()?;
        self.plan.merge_sketches(&mut merged)?;
        Ok(merged.select(names)?)
    }

    /// `true` where the group keys differ from the previous row's (nulls equal).
    fn key_changes(&self) -> Expr {
        self.group_keys
            .iter()
            .map(|k| col(k.as_str()).neq_missing(col(k.as_str()).shift(lit(1))))
            .reduce(|a, b| a.or(b))
            .unwrap_or(lit(false))
    }
}

/// Session ids of rows sorted by (keys, start): a row opens a new session at a key change
/// or when its start is after the running max of the ends of its key's rows before it.
fn session_ids(start: &Int64Chunked, end: &Int64Chunked, key_changed: &BooleanChunked) -> Vec<u32> {
    let mut ids = Vec::with_capacity(start.len());
    let mut id = 0u32;
    let mut run_end = i64::MIN;
    let rows = start.iter().zip(end.iter()).zip(key_changed.iter());
    for (i, ((s, e), changed)) in rows.enumerate() {
        let (s, e) = (s.unwrap_or(i64::MIN), e.unwrap_or(i64::MIN));
        if i > 0 && (changed.unwrap_or(false) || s > run_end) {
            id += 1;
            run_end = i64::MIN;
        }
        run_end = run_end.max(e);
        ids.push(id);
    }
    ids
}

impl StatefulOperator for SessionWindowAggregateExec {
    fn name(&self) -> &'static str {
        "SessionWindowAggregateExec"
    }

    fn state_description(&self) -> serde_json::Value {
        serde_json::json!({
            "operator": self.name(),
            "keys": self.plan.key_names(),
            "sessionWindow": {"column": self.start, "gapUs": self.gap_us},
        })
    }

    fn states(&self) -> Vec<&KeyedState> {
        vec![&self.state]
    }

    fn explain_rows(&self, inputs: &[DataFrame]) -> Option<Result<DataFrame>> {
        let (key, input) = (self.late_key()?, inputs.first()?);
        // every pair: "late" at a watermark no event time reaches
        Some(self.plan.late_rows(input, key, i64::MAX / 2000))
    }

    fn state_finalizer(&self) -> Option<crate::state::StateFinalizer> {
        let plan = self.plan.clone();
        Some(std::sync::Arc::new(move |state: &DataFrame| plan.finalize(state)))
    }

    fn states_mut(&mut self) -> Vec<&mut KeyedState> {
        vec![&mut self.state]
    }

    fn process(&mut self, mut inputs: Vec<DataFrame>, ctx: &BatchContext) -> Result<DataFrame> {
        let input = inputs.pop().ok_or_else(|| SluiceError::Internal("session aggregate without input".into()))?;
        let (partial, dropped) =
            self.plan.partial_aggregate_on_time(&input, self.late_key(), ctx.watermark_for_late_events_ms)?;
        self.late.clear();
        if let (true, Some(key), Some(wm)) = (dropped > 0 && ctx.keep_late_rows, self.late_key(), ctx.watermark_for_late_events_ms) {
            self.late.push(self.plan.late_rows(&input, key, wm)?);
        }
        let mut state_key = self.group_keys.clone();
        state_key.push(self.start.clone());
        let keys = cols(&self.group_keys);
        let (state, upserts, absorbed) = if partial.height() > 0 {
            let touched_keys = partial.clone().lazy().select(keys.clone());
            let old = self.state.frame().clone().lazy();
            let touched = old
                .clone()
                .join(touched_keys.clone(), keys.clone(), keys.clone(), join_args(JoinType::Semi))
                .collect()?;
            let untouched = old.join(touched_keys, keys.clone(), keys.clone(), join_args(JoinType::Anti));
            let merged = self.merge_sessions(&touched, &partial)?;
            let sk = cols(&state_key);
            // Old sessions whose start is no longer a session's start were absorbed.
            let absorbed = touched
                .clone()
                .lazy()
                .join(merged.clone().lazy().select(sk.clone()), sk.clone(), sk, join_args(JoinType::Anti))
                .collect()?;
            let mask = merged.column(UPDATED)?.bool()?.clone();
            let merged = merged.drop(UPDATED)?;
            let upserts = merged.filter(&mask)?;
            let state = concat([untouched, merged.lazy()], UnionArgs::default())?.collect()?;
            (state, upserts, absorbed)
        } else {
            (self.state.frame().clone(), self.state.empty(), self.state.empty())
        };
        let updated_rows = upserts.height();
        let (state, evicted, upserts) = evict(state, upserts, self.eviction_key(), ctx.watermark_for_eviction_ms)?;
        let output = match self.mode {
            OutputMode::Complete => self.plan.finalize(&state)?,
            _ => self.plan.finalize(&evicted)?,
        };
        let removed = (absorbed.height() + evicted.height()) as u64;
        self.state.set(state, &upserts, &[&absorbed, &evicted])?;
        self.progress.record_batch(updated_rows as u64, removed, dropped, &self.state);
        Ok(output)
    }

    fn should_run_another_batch(&self, new_watermark_ms: i64, ctx: &BatchContext) -> bool {
        self.eviction_key().is_some() && ctx.watermark_for_eviction_ms.is_some_and(|w| new_watermark_ms > w)
    }

    fn progress(&self) -> StateOperatorProgress {
        self.progress.clone()
    }

    fn take_late_rows(&mut self) -> Vec<DataFrame> {
        std::mem::take(&mut self.late)
    }
}
