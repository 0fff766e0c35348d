//! The stream-stream join (`StreamingSymmetricHashJoinExec`, Spark's symmetric hash
//! join): both sides buffered in their own state store.
//!
//! ```text
//! batch rows L, R ──drop late rows (own event time <= watermark for late events)──►
//! left pass:  L ⋈ state(R) ─► output; L rows above the left state watermark join state(L)
//! right pass: R ⋈ state(L) ─► output; R rows above the right state watermark join state(R)
//!             (matched flags of state rows are set as they match)
//! evict: state rows at or below their side's state watermark leave state; for an outer
//!        side, those never matched are emitted null-padded
//! ```
//! A side's *state watermark* is solved from the join condition (see [`super::condition`]).

use polars::prelude::*;

use super::condition::state_value_watermark;
use super::StreamJoinType;
use crate::operators::{BatchContext, EvictedUnmatched, StateOperatorProgress, StatefulOperator};
use crate::state::{KeyedState, StateStore, DELETED_COLUMN};
use crate::time::EventTimeColumn;
use crate::{Result, SluiceError};

/// The key column of a join side's state: a row id.
pub(crate) const ROW_ID: &str = "__row_id";
const MATCHED: &str = "__matched";
const LROW: &str = "__left_row";
const RROW: &str = "__right_row";
const FLAG: &str = "__flag";

/// One side of a stream-stream join.
pub struct JoinSide {
    /// Key expressions on this side's columns.
    pub on: Vec<Expr>,
    /// The side's input schema.
    pub schema: SchemaRef,
    /// The side's watermark column, if any.
    pub watermark_column: Option<String>,
    state: KeyedState,
}

impl JoinSide {
    /// A side with its own state store `store_id`.
    pub fn new(on: Vec<Expr>, schema: SchemaRef, watermark_column: Option<String>, store_id: usize, partitions: usize) -> Self {
        let mut state_schema = schema.as_ref().clone();
        state_schema.with_column(ROW_ID.into(), DataType::UInt64);
        state_schema.with_column(MATCHED.into(), DataType::Boolean);
        let state = KeyedState::new(StateStore {
            store_id,
            partitions,
            key_columns: vec![ROW_ID.to_string()],
            schema: Arc::new(state_schema),
            snapshot_interval: crate::state::DEFAULT_SNAPSHOT_INTERVAL,
        });
        JoinSide { on, schema, watermark_column, state }
    }
    fn columns(&self) -> Vec<String> {
        self.schema.iter_names().map(|n| n.to_string()).collect()
    }
    /// Rows whose watermark column is at or below `wm_ms` (never null).
    fn at_or_below(&self, df: &DataFrame, wm_ms: i64) -> Result<BooleanChunked> {
        match &self.watermark_column {
            Some(c) => EventTimeColumn::new(c.as_str()).at_or_before(df, wm_ms),
            None => Ok(BooleanChunked::full("m".into(), false, df.height())),
        }
    }
}

/// The planned shape of a stream-stream join.
pub struct StreamingJoinPlan {
    /// Join type.
    pub how: StreamJoinType,
    /// Extra condition over the joined columns (after the equi-join).
    pub condition: Option<Expr>,
    /// Output schema: left columns, then right columns (right names that collide get the
    /// suffix `_right`); left columns only for a left semi join.
    pub output_schema: SchemaRef,
}

/// Spark's `StreamingSymmetricHashJoinExec` (see the module docs).
pub struct StreamingSymmetricHashJoinExec {
    plan: StreamingJoinPlan,
    left: JoinSide,
    right: JoinSide,
    progress: StateOperatorProgress,
    /// The rows dropped as late by the last batch (see [`crate::operators::late`]).
    late: Vec<DataFrame>,
    /// The state rows the last batch evicted without a match (for explaining a batch).
    evicted_unmatched: Vec<EvictedUnmatched>,
}

fn with_ids(df: &DataFrame, name: &str, batch_id: u64) -> Result<DataFrame> {
    let base = batch_id << 32;
    let ids: Vec<u64> = (0..df.height() as u64).map(|i| base | i).collect();
    let mut out = df.clone();
    out.with_column(Column::new(name.into(), ids))?;
    Ok(out)
}

impl StreamingSymmetricHashJoinExec {
    /// A join of `left` and `right` with empty state.
    pub fn new(plan: StreamingJoinPlan, left: JoinSide, right: JoinSide) -> Self {
        StreamingSymmetricHashJoinExec {
            plan,
            left,
            right,
            progress: StateOperatorProgress::new("symmetricHashJoin"),
            late: Vec::new(),
            evicted_unmatched: Vec::new(),
        }
    }

    /// The output schema of joining `left` and `right` schemas.
    pub fn output_schema(left: &Schema, right: &Schema, how: StreamJoinType) -> SchemaRef {
        let mut out = left.clone();
        if how != StreamJoinType::LeftSemi {
            for (n, d) in right.iter() {
                let name = if left.contains(n) { format!("{n}_right") } else { n.to_string() };
                out.with_column(name.into(), d.clone());
            }
        }
        Arc::new(out)
    }

    /// Whether this side's state can be evicted (an outer side must be).
    ///
    /// The condition names the joined columns, where a right column whose name the left
    /// side has too is `<name>_right` (a self-join: `time` and `time_right`), so each
    /// side's columns are taken by those names.
    pub fn side_watermark(&self, left_side: bool, watermark_ms: i64) -> Option<i64> {
        let (this, other) = if left_side { (&self.left, &self.right) } else { (&self.right, &self.left) };
        this.watermark_column.as_ref()?;
        let joined = |from_left: bool, c: &str| {
            if !from_left && self.left.schema.contains(c) { format!("{c}_right") } else { c.to_string() }
        };
        let names = |side: &JoinSide, from_left: bool| side.columns().iter().map(|c| joined(from_left, c)).collect::<Vec<_>>();
        state_value_watermark(
            self.plan.condition.as_ref(),
            &names(this, left_side),
            &names(other, !left_side),
            other.watermark_column.as_deref().map(|c| joined(!left_side, c)).as_deref(),
            watermark_ms,
        )
    }

    /// `probe ⋈ build` on the keys and condition: joined rows with both row ids.
    fn matches(&self, probe: &DataFrame, probe_is_left: bool, build_state: &DataFrame) -> Result<DataFrame> {
        let (l, r, lon, ron) = if probe_is_left {
            (probe.clone(), build_state.clone(), &self.left.on, &self.right.on)
        } else {
            (build_state.clone(), probe.clone(), &self.left.on, &self.right.on)
        };
        let l = l.lazy().rename([ROW_ID], [LROW], true).drop(by_name([MATCHED], false, false));
        let r = r.lazy().rename([ROW_ID], [RROW], true).drop(by_name([MATCHED], false, false));
        let mut lf = l.join(r, lon.clone(), ron.clone(), JoinArgs::new(polars::prelude::JoinType::Inner).with_coalesce(JoinCoalesce::KeepColumns));
        if let Some(c) = &self.plan.condition {
            lf = lf.filter(c.clone());
        }
        Ok(lf.collect()?)
    }

    fn output_rows(&self, m: &DataFrame) -> Result<DataFrame> {
        let names: Vec<PlSmallStr> = self.plan.output_schema.iter_names().cloned().collect();
        if self.plan.how == StreamJoinType::LeftSemi {
            let dedup = m.clone().lazy().unique_stable(Some(by_name([LROW], true, false)), UniqueKeepStrategy::First);
            return Ok(dedup.select(names.iter().map(|n| col(n.clone())).collect::<Vec<_>>()).collect()?);
        }
        Ok(m.select(names)?)
    }

    fn null_padded(&self, rows: &DataFrame, left_side: bool) -> Result<DataFrame> {
        let exprs: Vec<Expr> = self
            .plan
            .output_schema
            .iter()
            .enumerate()
            .map(|(i, (n, d))| {
                let from_this = if left_side { i < self.left.schema.len() } else { i >= self.left.schema.len() };
                if from_this {
                    let src = if left_side { n.to_string() } else { self.right.schema.get_at_index(i - self.left.schema.len()).map(|(s, _)| s.to_string()).unwrap_or_default() };
                    col(src.as_str()).alias(n.clone())
                } else {
                    lit(NULL).cast(d.clone()).alias(n.clone())
                }
            })
            .collect();
        Ok(rows.clone().lazy().select(exprs).collect()?)
    }
}

/// Sets `__matched` for state rows whose id is in `ids`; returns (new state, changed rows).
fn mark_matched(state: &DataFrame, ids: &Series) -> Result<(DataFrame, DataFrame)> {
    if ids.is_empty() || state.height() == 0 {
        return Ok((state.clone(), state.clear()));
    }
    let hits = DataFrame::new(ids.len(), vec![Column::from(ids.clone().with_name(ROW_ID.into()))])?
        .lazy()
        .unique(None, UniqueKeepStrategy::Any)
        .with_column(lit(true).alias(FLAG));
    let joined = state
        .clone()
        .lazy()
        .join(hits, [col(ROW_ID)], [col(ROW_ID)], JoinArgs::new(polars::prelude::JoinType::Left))
        .collect()?;
    let flag = joined.column(FLAG)?.bool()?.fill_null_with_values(false)?;
    let was = joined.column(MATCHED)?.bool()?.clone();
    let changed_mask = &flag & &!&was;
    let now = &was | &flag;
    let mut out = joined.drop(FLAG)?;
    out.with_column(Column::from(now.into_series().with_name(MATCHED.into())))?;
    let changed = out.filter(&changed_mask)?;
    Ok((out, changed))
}

impl StatefulOperator for StreamingSymmetricHashJoinExec {
    fn name(&self) -> &'static str {
        "StreamingSymmetricHashJoinExec"
    }

    fn state_description(&self) -> serde_json::Value {
        serde_json::json!({
            "operator": self.name(),
            "how": self.plan.how,
            "left": self.left.columns(),
            "right": self.right.columns(),
        })
    }

    fn states(&self) -> Vec<&KeyedState> {
        vec![&self.left.state, &self.right.state]
    }

    fn states_mut(&mut self) -> Vec<&mut KeyedState> {
        vec![&mut self.left.state, &mut self.right.state]
    }

    fn process(&mut self, mut inputs: Vec<DataFrame>, ctx: &BatchContext) -> Result<DataFrame> {
        let r_in = inputs.pop().ok_or_else(|| SluiceError::Internal("join without right input".into()))?;
        let l_in = inputs.pop().ok_or_else(|| SluiceError::Internal("join without left input".into()))?;
        // 1. Late rows: own event time at or below the watermark for late events.
        let mut dropped = [0u64; 2];
        let (mut l_new, mut r_new) = (l_in, r_in);
        self.late.clear();
        if let Some(wm) = ctx.watermark_for_late_events_ms {
            let late = self.left.at_or_below(&l_new, wm)?;
            dropped[0] = late.sum().unwrap_or(0) as u64;
            if let (true, Some(c)) = (ctx.keep_late_rows && late.any(), &self.left.watermark_column) {
                self.late.push(crate::operators::late::late_rows(&l_new, &late, c)?);
            }
            l_new = l_new.filter(&!&late)?;
            let late = self.right.at_or_below(&r_new, wm)?;
            dropped[1] = late.sum().unwrap_or(0) as u64;
            if let (true, Some(c)) = (ctx.keep_late_rows && late.any(), &self.right.watermark_column) {
                self.late.push(crate::operators::late::late_rows(&r_new, &late, c)?);
            }
            r_new = r_new.filter(&!&late)?;
        }
        let l_new = with_ids(&l_new, ROW_ID, ctx.batch_id)?;
        let r_new = with_ids(&r_new, ROW_ID, ctx.batch_id)?;
        let evict_wm = ctx.watermark_for_eviction_ms;
        let wl = evict_wm.and_then(|w| self.side_watermark(true, w));
        let wr = evict_wm.and_then(|w| self.side_watermark(false, w));
        let semi = self.plan.how == StreamJoinType::LeftSemi;

        // 2. Left pass: new left rows against the right state.
        let mut right_state = self.right.state.frame().clone();
        let m1 = self.matches(&l_new, true, &right_state)?;
        let mut outputs = vec![self.output_rows(&m1)?];
        let (rs, r_changed) = mark_matched(&right_state, m1.column(RROW)?.as_materialized_series())?;
        right_state = rs;
        let matched_l: Series = m1.column(LROW)?.as_materialized_series().clone();
        let mut l_added = mark_new(&l_new, &matched_l)?;
        if semi {
            // A left row that matched is emitted now and never buffered.
            l_added = l_added.filter(&!l_added.column(MATCHED)?.bool()?.clone())?;
        }
        // Every left row enters state, even one evicted later in this batch: it has not yet
        // met this batch's right rows (Spark 3.5).
        let mut left_state = self.left.state.frame().clone();
        left_state.vstack_mut_owned(l_added.clone())?;

        // 3. Right pass: new right rows against the left state (now with this batch's rows).
        let probe_state = if semi {
            left_state.filter(&!left_state.column(MATCHED)?.bool()?.clone())?
        } else {
            left_state.clone()
        };
        let m2 = self.matches(&r_new, false, &probe_state)?;
        outputs.push(self.output_rows(&m2)?);
        let (ls, l_changed) = mark_matched(&left_state, m2.column(LROW)?.as_materialized_series())?;
        left_state = ls;
        let mut r_added = mark_new(&r_new, m2.column(RROW)?.as_materialized_series())?;
        // Right rows past their state watermark that matched nothing and never enter
        // state (not an outer right side): evicted with no match, for explaining a batch
        // (collected only then).
        let mut r_expired_unmatched = self.right.state.empty();
        if let Some(w) = wr {
            // A right row already past its state watermark is kept only to be emitted as
            // unmatched by a right or full outer join in this batch's eviction (Spark 3.5).
            let expired = self.right.at_or_below(&r_added, w)?;
            let unmatched = !r_added.column(MATCHED)?.bool()?.clone();
            let keep = if matches!(self.plan.how, StreamJoinType::RightOuter | StreamJoinType::FullOuter) {
                &!&expired | &unmatched
            } else {
                if ctx.explaining {
                    r_expired_unmatched = r_added.filter(&(&expired & &unmatched))?;
                }
                !&expired
            };
            r_added = r_added.filter(&keep)?;
        }
        right_state.vstack_mut_owned(r_added.clone())?;

        // 4. Eviction; unmatched rows of an outer side are emitted null-padded.
        let mut evicted = [self.left.state.empty(), self.right.state.empty()];
        if let Some(w) = wl {
            let m = self.left.at_or_below(&left_state, w)?;
            evicted[0] = left_state.filter(&m)?;
            left_state = left_state.filter(&!&m)?;
        }
        if let Some(w) = wr {
            let m = self.right.at_or_below(&right_state, w)?;
            evicted[1] = right_state.filter(&m)?;
            right_state = right_state.filter(&!&m)?;
        }
        self.evicted_unmatched.clear();
        for (i, left_side, side_wm) in [(0usize, true, wl), (1, false, wr)] {
            let outer = match self.plan.how {
                StreamJoinType::LeftOuter => left_side,
                StreamJoinType::RightOuter => !left_side,
                StreamJoinType::FullOuter => true,
                _ => false,
            };
            let (Some(w), true) = (side_wm, evicted[i].height() > 0 || (!left_side && r_expired_unmatched.height() > 0)) else {
                continue;
            };
            let mut unmatched = evicted[i].filter(&!evicted[i].column(MATCHED)?.bool()?.clone())?;
            let padded = if outer {
                let padded = self.null_padded(&unmatched, left_side)?;
                outputs.push(padded.clone());
                padded
            } else if ctx.explaining {
                self.output_rows_schema_empty()?
            } else {
                DataFrame::empty()
            };
            if !left_side && r_expired_unmatched.height() > 0 {
                unmatched.vstack_mut_owned(r_expired_unmatched.clone())?;
            }
            // Kept only when the batch is being explained (a query's run has no use for them).
            if ctx.explaining && unmatched.height() > 0 {
                let side = if left_side { &self.left } else { &self.right };
                self.evicted_unmatched.push(evicted_record(side, left_side, w, &unmatched, padded)?);
            }
        }

        // 5. Deltas: rows added or re-flagged and still in state, then evicted ids.
        let delta = |side: &JoinSide, added: &DataFrame, changed: &DataFrame, evicted: &DataFrame, state: &DataFrame| -> Result<DataFrame> {
            let keep_ids = state.select([ROW_ID])?;
            // A row both added and re-flagged in this batch: the re-flagged copy wins.
            // (Set logic, not row order: joins do not keep order.)
            let added_only = added.clone().lazy().join(
                changed.clone().lazy().select([col(ROW_ID)]),
                [col(ROW_ID)],
                [col(ROW_ID)],
                JoinArgs::new(polars::prelude::JoinType::Anti),
            );
            let upserts = concat([changed.clone().lazy(), added_only], UnionArgs::default())?
                .join(keep_ids.lazy(), [col(ROW_ID)], [col(ROW_ID)], JoinArgs::new(polars::prelude::JoinType::Semi))
                .with_column(lit(false).alias(DELETED_COLUMN));
            let removed = evicted.clone().lazy().with_column(lit(true).alias(DELETED_COLUMN));
            let names: Vec<Expr> = side.state.store().schema.iter_names().map(|n| col(n.clone())).chain([col(DELETED_COLUMN)]).collect();
            Ok(concat([upserts.select(names.clone()), removed.select(names)], UnionArgs::default())?.collect()?)
        };
        let dl = delta(&self.left, &l_added, &l_changed, &evicted[0], &left_state)?;
        let dr = delta(&self.right, &r_added, &r_changed, &evicted[1], &right_state)?;

        let p = &mut self.progress;
        p.num_rows_total = (left_state.height() + right_state.height()) as u64;
        p.num_rows_updated = (l_added.height() + r_added.height()) as u64;
        p.num_rows_removed = (evicted[0].height() + evicted[1].height()) as u64;
        p.num_rows_dropped_by_watermark = dropped[0] + dropped[1];
        p.memory_used_bytes = (left_state.estimated_size() + right_state.estimated_size()) as u64;
        p.num_state_partitions = self.left.state.store().partitions as u64;
        p.custom_metrics = [
            ("leftStateRows", left_state.height() as i64),
            ("rightStateRows", right_state.height() as i64),
            ("leftRowsEvicted", evicted[0].height() as i64),
            ("rightRowsEvicted", evicted[1].height() as i64),
            ("leftRowsDroppedByWatermark", dropped[0] as i64),
            ("rightRowsDroppedByWatermark", dropped[1] as i64),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        self.left.state.set_with_delta(left_state, dl);
        self.right.state.set_with_delta(right_state, dr);

        let mut out = self.output_rows_schema_empty()?;
        for o in outputs {
            if o.height() > 0 {
                out.vstack_mut_owned(o)?;
            }
        }
        Ok(out)
    }

    /// Spark: the minimum of both sides' state watermarks and the input watermark, so
    /// that either side's event time in the output is above it.
    fn output_watermark(&self, input_ms: i64) -> Option<i64> {
        [self.side_watermark(true, input_ms), self.side_watermark(false, input_ms), Some(input_ms)]
            .into_iter()
            .flatten()
            .min()
    }

    fn should_run_another_batch(&self, new_watermark_ms: i64, ctx: &BatchContext) -> bool {
        let cleans = self.side_watermark(true, new_watermark_ms).is_some() || self.side_watermark(false, new_watermark_ms).is_some();
        cleans && ctx.watermark_for_eviction_ms.is_some_and(|w| new_watermark_ms > w)
    }

    fn progress(&self) -> StateOperatorProgress {
        self.progress.clone()
    }

    fn take_late_rows(&mut self) -> Vec<DataFrame> {
        std::mem::take(&mut self.late)
    }

    fn take_evicted_unmatched(&mut self) -> Vec<EvictedUnmatched> {
        std::mem::take(&mut self.evicted_unmatched)
    }
}

/// The [`EvictedUnmatched`] record of a side's `unmatched` evicted state rows (state
/// schema: the side's columns, row id, matched flag), evicted at state watermark `w`.
fn evicted_record(side: &JoinSide, left_side: bool, w: i64, unmatched: &DataFrame, null_padded: DataFrame) -> Result<EvictedUnmatched> {
    // A row id is the batch it came in with (high 32 bits) and its index in that batch.
    let added_in_batch: Vec<u64> = unmatched.column(ROW_ID)?.u64()?.iter().map(|id| id.unwrap_or(0) >> 32).collect();
    let rows = unmatched.select(side.schema.iter_names().cloned())?;
    let all = BooleanChunked::full("all".into(), true, rows.height());
    let rows = match &side.watermark_column {
        Some(c) => crate::operators::late::late_rows(&rows, &all, c)?,
        None => rows,
    };
    Ok(EvictedUnmatched { left_side, state_watermark_ms: w, rows, added_in_batch, null_padded })
}

impl StreamingSymmetricHashJoinExec {
    fn output_rows_schema_empty(&self) -> Result<DataFrame> {
        Ok(DataFrame::empty_with_schema(&self.plan.output_schema))
    }
}

/// New rows of a side with `__matched` set for those whose id is in `matched`.
fn mark_new(rows: &DataFrame, matched: &Series) -> Result<DataFrame> {
    let mut with = rows.clone();
    with.with_column(Column::new_scalar(MATCHED.into(), Scalar::from(false), rows.height()))?;
    Ok(mark_matched(&with, matched)?.0)
}
