//! The logical plan of a streaming query: a tree of [`LogicalPlan`] nodes built by the
//! [`StreamingDataFrame`](crate::StreamingDataFrame) API and compiled at `start()`.

use std::sync::Arc;

use polars::prelude::*;

use crate::aggregate::AggregatePlan;
use crate::source::SourceProviderRef;
use crate::Result;

/// A node of the logical plan.
#[derive(Clone)]
#[non_exhaustive]
pub enum LogicalPlan {
    /// A streaming source.
    Source { provider: SourceProviderRef },
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
}

impl LogicalPlan {
    /// The node's inputs.
    pub fn inputs(&self) -> Vec<&Arc<LogicalPlan>> {
        match self {
            LogicalPlan::Source { .. } => vec![],
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
        if let LogicalPlan::Aggregate { .. } = self {
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
            LogicalPlan::Source { provider } => provider.schema(),
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
        })
    }
}
