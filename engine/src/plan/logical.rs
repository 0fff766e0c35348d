//! The logical plan of a streaming query: a tree of [`LogicalPlan`] nodes built by the
//! [`StreamingDataFrame`](crate::StreamingDataFrame) API (and the SQL front end), planned
//! into a physical plan at `start()`.

use std::sync::Arc;

use polars::prelude::*;

use crate::connector::SourceProviderRef;
use crate::operators::aggregate::AggregatePlan;
use crate::operators::group_state::GroupsWithStateSpec;
use crate::operators::join::{static_join, StreamJoinType, StreamingSymmetricHashJoinExec};
use crate::Result;

/// A node of the logical plan.
#[derive(Clone)]
#[non_exhaustive]
pub enum LogicalPlan {
    /// A streaming source; `warnings` about its options (unread ones) are reported at
    /// `start()`.
    Source { provider: SourceProviderRef, warnings: Vec<String> },
    /// `select(exprs)`.
    Select { input: Arc<LogicalPlan>, exprs: Vec<Expr> },
    /// `with_columns(exprs)`.
    WithColumns { input: Arc<LogicalPlan>, exprs: Vec<Expr> },
    /// `filter(predicate)`.
    Filter { input: Arc<LogicalPlan>, predicate: Expr },
    /// `with_watermark(column, delay)`: tracks event time, filters nothing.
    Watermark { input: Arc<LogicalPlan>, column: String, delay_ms: i64 },
    /// `group_by(keys).agg(aggs)`.
    Aggregate { input: Arc<LogicalPlan>, keys: Vec<Expr>, aggs: Vec<Expr> },
    /// A stream-stream join (`join`).
    Join {
        left: Arc<LogicalPlan>,
        right: Arc<LogicalPlan>,
        left_on: Vec<Expr>,
        right_on: Vec<Expr>,
        how: StreamJoinType,
        condition: Option<Expr>,
    },
    /// A stream-static join (`join_static`): the stream is the left side.
    StaticJoin { input: Arc<LogicalPlan>, right: DataFrame, left_on: Vec<Expr>, right_on: Vec<Expr>, how: StreamJoinType },
    /// `group_by(keys).flat_map_groups_with_state(..)` / `map_groups_with_state(..)`.
    FlatMapGroupsWithState { input: Arc<LogicalPlan>, spec: GroupsWithStateSpec },
    /// `sort(by, descending)`: only after an aggregation in complete mode (Spark).
    Sort { input: Arc<LogicalPlan>, by: Vec<Expr>, descending: Vec<bool> },
    /// `limit(n)`: only after an aggregation in complete mode.
    Limit { input: Arc<LogicalPlan>, n: usize },
    /// `drop_duplicates(keys)` or, with `within_watermark`,
    /// `drop_duplicates_within_watermark(keys)`; empty `keys` mean all columns.
    Deduplicate { input: Arc<LogicalPlan>, keys: Vec<String>, within_watermark: bool },
}

impl LogicalPlan {
    /// The node's inputs.
    pub fn inputs(&self) -> Vec<&Arc<LogicalPlan>> {
        match self {
            LogicalPlan::Source { .. } => vec![],
            LogicalPlan::Join { left, right, .. } => vec![left, right],
            LogicalPlan::StaticJoin { input, .. } => vec![input],
            LogicalPlan::FlatMapGroupsWithState { input, .. } => vec![input],
            LogicalPlan::Deduplicate { input, .. } => vec![input],
            LogicalPlan::Sort { input, .. } | LogicalPlan::Limit { input, .. } => vec![input],
            LogicalPlan::Select { input, .. }
            | LogicalPlan::WithColumns { input, .. }
            | LogicalPlan::Filter { input, .. }
            | LogicalPlan::Watermark { input, .. }
            | LogicalPlan::Aggregate { input, .. } => vec![input],
        }
    }

    /// Columns carrying a watermark in this node's output.
    pub fn watermark_columns(&self) -> Vec<String> {
        self.watermarks().into_iter().map(|(c, _)| c).collect()
    }

    /// Columns carrying a watermark in this node's output, with the delay (ms) of the
    /// `with_watermark` that declared them.
    pub fn watermarks(&self) -> Vec<(String, i64)> {
        match self {
            // Spark: no column of a (flat)MapGroupsWithState output is bound to a watermark.
            LogicalPlan::FlatMapGroupsWithState { .. } => return vec![],
            // The event-time grouping key (a window, a session, a timestamp) keeps its
            // watermark, so a downstream aggregation can group by window_time(window).
            LogicalPlan::Aggregate { input, keys, aggs } => {
                let upstream = input.watermarks();
                let columns: Vec<String> = upstream.iter().map(|(c, _)| c.clone()).collect();
                let plan = input.schema().ok().and_then(|s| AggregatePlan::new(s.as_ref(), keys, aggs, &columns).ok());
                return plan
                    .and_then(|p| p.event_time_output)
                    .and_then(|(out, root)| upstream.iter().find(|(c, _)| *c == root).map(|(_, d)| (out, *d)))
                    .into_iter()
                    .collect();
            }
            _ => {}
        }
        let mut out: Vec<(String, i64)> = self.inputs().iter().flat_map(|i| i.watermarks()).collect();
        if let LogicalPlan::Watermark { column, delay_ms, .. } = self {
            out.push((column.clone(), *delay_ms));
        }
        out
    }

    /// The output schema of this node.
    ///
    /// # Errors
    /// [`crate::SluiceError::Polars`] when an expression does not type-check (unknown
    /// column, bad types), [`crate::SluiceError::Analysis`] for a bad aggregation.
    pub fn schema(&self) -> Result<SchemaRef> {
        let lazy = |input: &Arc<LogicalPlan>| -> Result<LazyFrame> {
            Ok(DataFrame::empty_with_schema(input.schema()?.as_ref()).lazy())
        };
        Ok(match self {
            LogicalPlan::Source { provider, .. } => provider.schema(),
            LogicalPlan::Select { input, exprs } => lazy(input)?.select(exprs.clone()).collect_schema()?,
            LogicalPlan::WithColumns { input, exprs } => {
                lazy(input)?.with_columns(exprs.clone()).collect_schema()?
            }
            LogicalPlan::Filter { input, predicate } => {
                lazy(input)?.filter(predicate.clone()).collect_schema()?
            }
            LogicalPlan::Watermark { input, .. } => input.schema()?,
            LogicalPlan::Aggregate { input, keys, aggs } => {
                AggregatePlan::new(input.schema()?.as_ref(), keys, aggs, &input.watermark_columns())?.output_schema
            }
            LogicalPlan::Join { left, right, how, condition, .. } => {
                let (ls, rs) = (left.schema()?, right.schema()?);
                if let Some(c) = condition {
                    // type-check the condition against all joined columns (also for semi joins)
                    let joined = StreamingSymmetricHashJoinExec::output_schema(&ls, &rs, StreamJoinType::Inner);
                    DataFrame::empty_with_schema(&joined).lazy().filter(c.clone()).collect_schema()?;
                }
                StreamingSymmetricHashJoinExec::output_schema(&ls, &rs, *how)
            }
            LogicalPlan::StaticJoin { input, right, left_on, right_on, how } => {
                static_join(lazy(input)?, right, left_on, right_on, *how)?.collect_schema()?
            }
            LogicalPlan::FlatMapGroupsWithState { input, spec } => {
                lazy(input)?.select(spec.keys.clone()).collect_schema()?;
                spec.output_schema.clone()
            }
            LogicalPlan::Sort { input, by, descending } => {
                lazy(input)?.sort_by_exprs(by.clone(), sort_options(descending)).collect_schema()?
            }
            LogicalPlan::Limit { input, .. } => input.schema()?,
            LogicalPlan::Deduplicate { input, keys, .. } => {
                let schema = input.schema()?;
                crate::operators::dedup::resolve_keys(&schema, keys)?;
                schema
            }
        })
    }
}


/// Spark's sort order: ascending puts nulls first, descending puts them last.
pub fn sort_options(descending: &[bool]) -> SortMultipleOptions {
    SortMultipleOptions::default()
        .with_order_descending_multi(descending.to_vec())
        .with_nulls_last_multi(descending.to_vec())
        .with_maintain_order(true)
}
