//! The logical plan of a streaming query: a tree of [`LogicalPlan`] nodes built by the
//! [`StreamingDataFrame`](crate::StreamingDataFrame) API and compiled at `start()`.

use std::sync::Arc;

use polars::prelude::*;

use crate::aggregate::AggregatePlan;
use crate::group_state::GroupsWithStateSpec;
use crate::join::{JoinType, StreamingSymmetricHashJoinExec};
use crate::connector::SourceProviderRef;
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
        how: JoinType,
        condition: Option<Expr>,
    },
    /// A stream-static join (`join_static`): the stream is the left side.
    StaticJoin { input: Arc<LogicalPlan>, right: DataFrame, left_on: Vec<Expr>, right_on: Vec<Expr>, how: JoinType },
    /// `group_by(keys).flat_map_groups_with_state(..)` / `map_groups_with_state(..)`.
    FlatMapGroupsWithState { input: Arc<LogicalPlan>, spec: GroupsWithStateSpec },
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
            LogicalPlan::Select { input, .. }
            | LogicalPlan::WithColumns { input, .. }
            | LogicalPlan::Filter { input, .. }
            | LogicalPlan::Watermark { input, .. }
            | LogicalPlan::Aggregate { input, .. } => vec![input],
        }
    }

    /// Columns carrying a watermark in this node's output.
    pub fn watermark_columns(&self) -> Vec<String> {
        let mut out: Vec<String> = self.inputs().iter().flat_map(|i| i.watermark_columns()).collect();
        if let LogicalPlan::Watermark { column, .. } = self {
            out.push(column.clone());
        }
        if let LogicalPlan::Aggregate { .. } | LogicalPlan::FlatMapGroupsWithState { .. } = self {
            out.clear();
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
                    let joined = StreamingSymmetricHashJoinExec::output_schema(&ls, &rs, JoinType::Inner);
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
            LogicalPlan::Deduplicate { input, keys, .. } => {
                let schema = input.schema()?;
                crate::dedup::resolve_keys(&schema, keys)?;
                schema
            }
        })
    }
}

/// The per-batch lazy join of a stream with a static frame (inner or left outer, the
/// stream on the left; Spark's null keys never match).
pub fn static_join(stream: LazyFrame, right: &DataFrame, left_on: &[Expr], right_on: &[Expr], how: JoinType) -> Result<LazyFrame> {
    let polars_how = match how {
        JoinType::Inner => polars::prelude::JoinType::Inner,
        JoinType::LeftOuter => polars::prelude::JoinType::Left,
        other => {
            return Err(crate::SluiceError::analysis(format!(
                "a stream-static join supports Inner and LeftOuter with the stream on the left, not {other}: \
                 a static side cannot be outer-joined because the stream never ends"
            )))
        }
    };
    Ok(stream.join(
        right.clone().lazy(),
        left_on.to_vec(),
        right_on.to_vec(),
        JoinArgs::new(polars_how).with_coalesce(JoinCoalesce::KeepColumns),
    ))
}
