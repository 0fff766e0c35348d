//! Physical planning: a [`LogicalPlan`] becomes a [`PhysicalPlan`]: a tree of stateless
//! steps (Polars lazy operations) with the stateful operators at its joints, the list of
//! sources it scans and the watermark nodes it tracks. Planning applies Spark's
//! [analysis](super::analysis) rules.
//!
//! ```text
//! Source ─► Scan(i)            Select / WithColumns / Filter ─► lazy Polars steps
//! Watermark ─► Watermark(j)    (observes event-time statistics, filters nothing)
//! Aggregate / Join / Deduplicate / FlatMapGroupsWithState ─► Stateful(children, k)
//! StaticJoin ─► StaticJoin     (a per-batch Polars join)
//! ```
//! State store ids are handed out in plan order (a join takes two), and must be the
//! same at every start on one checkpoint.

use std::sync::Arc;

use polars::prelude::*;

use super::analysis::{self, OperatorCounts};
use super::LogicalPlan;
use crate::connector::{Sink, SourceProviderRef};
use crate::operators::aggregate::{AggregatePlan, StreamingAggregateExec};
use crate::operators::dedup::{DedupPlan, StreamingDeduplicateExec};
use crate::operators::group_state::FlatMapGroupsWithStateExec;
use crate::operators::join::{static_join, JoinSide, StreamJoinType, StreamingJoinPlan, StreamingSymmetricHashJoinExec};
use crate::operators::session_window::SessionWindowAggregateExec;
use crate::operators::{BatchContext, StatefulOperator};
use crate::time::watermark::{EventTimeStats, WatermarkSpec};
use crate::{OutputMode, Result, SluiceError};

enum PhysNode {
    Scan(usize),
    Select(Box<PhysNode>, Vec<Expr>),
    WithColumns(Box<PhysNode>, Vec<Expr>),
    Filter(Box<PhysNode>, Expr),
    Watermark(Box<PhysNode>, usize),
    Stateful(Vec<PhysNode>, usize),
    StaticJoin(Box<PhysNode>, DataFrame, Vec<Expr>, Vec<Expr>, StreamJoinType),
}

/// A planned query (see the module docs).
pub struct PhysicalPlan {
    root: PhysNode,
    /// The sources, in scan order (the order of `offsets/N`'s entries).
    pub sources: Vec<SourceProviderRef>,
    /// The `with_watermark` nodes, in plan order.
    pub watermarks: Vec<WatermarkSpec>,
    /// The stateful operators, in plan order.
    pub operators: Vec<Box<dyn StatefulOperator>>,
    /// The number of state stores (a join owns two).
    pub n_stores: usize,
    /// Warnings of the sources (options nothing read).
    pub warnings: Vec<String>,
}

struct Planner {
    plan: PhysicalPlan,
    counts: OperatorCounts,
    mode: OutputMode,
    partitions: usize,
    problems: Vec<String>,
}

impl PhysicalPlan {
    /// Plans `logical` for a query in `mode` writing to `sink`, with state in `partitions`
    /// partitions.
    ///
    /// # Errors
    /// [`SluiceError::Analysis`] with the first of Spark's analysis rules the query breaks;
    /// [`SluiceError::Polars`] when an expression does not type-check.
    pub fn plan(logical: &Arc<LogicalPlan>, mode: OutputMode, partitions: usize, sink: &dyn Sink) -> Result<Self> {
        logical.schema()?; // type-check every expression first
        let empty = PhysicalPlan {
            root: PhysNode::Scan(0),
            sources: vec![],
            watermarks: vec![],
            operators: vec![],
            n_stores: 0,
            warnings: vec![],
        };
        let mut p = Planner { plan: empty, counts: OperatorCounts::default(), mode, partitions, problems: vec![] };
        p.plan.root = p.node(logical)?;
        p.counts.stateful = p.plan.operators.len();
        p.problems.extend(analysis::query(p.counts, mode, &sink.description(), sink.supports_output_mode(mode)));
        if let Some(first) = p.problems.into_iter().next() {
            return Err(SluiceError::analysis(first));
        }
        Ok(p.plan)
    }

    /// Runs one batch over `inputs` (one frame per source, in [`sources`](Self::sources)
    /// order): the stateless steps, then each stateful operator against its state.
    /// Returns the output rows and the event-time statistics of each watermark node.
    ///
    /// # Errors
    /// The first failing step's error (Polars, an operator, a user function).
    pub fn execute(&mut self, inputs: &[DataFrame], ctx: &BatchContext) -> Result<(DataFrame, Vec<EventTimeStats>)> {
        let mut stats = vec![EventTimeStats::default(); self.watermarks.len()];
        let root = std::mem::replace(&mut self.root, PhysNode::Scan(0));
        let out = self.eval(&root, inputs, ctx, &mut stats).and_then(|lf| Ok(lf.collect()?));
        self.root = root;
        Ok((out?, stats))
    }

    fn eval(
        &mut self,
        node: &PhysNode,
        inputs: &[DataFrame],
        ctx: &BatchContext,
        stats: &mut [EventTimeStats],
    ) -> Result<LazyFrame> {
        Ok(match node {
            PhysNode::Scan(i) => inputs[*i].clone().lazy(),
            PhysNode::Select(input, exprs) => self.eval(input, inputs, ctx, stats)?.select(exprs.clone()),
            PhysNode::WithColumns(input, exprs) => self.eval(input, inputs, ctx, stats)?.with_columns(exprs.clone()),
            PhysNode::Filter(input, predicate) => self.eval(input, inputs, ctx, stats)?.filter(predicate.clone()),
            PhysNode::Watermark(input, i) => {
                let df = self.eval(input, inputs, ctx, stats)?.collect()?;
                stats[*i].observe(df.column(&self.watermarks[*i].column)?)?;
                df.lazy()
            }
            PhysNode::StaticJoin(input, right, left_on, right_on, how) => {
                static_join(self.eval(input, inputs, ctx, stats)?, right, left_on, right_on, *how)?
            }
            PhysNode::Stateful(children, op) => {
                let mut frames = Vec::with_capacity(children.len());
                for c in children {
                    frames.push(self.eval(c, inputs, ctx, stats)?.collect()?);
                }
                self.operators[*op].process(frames, ctx)?.lazy()
            }
        })
    }
}

impl Planner {
    fn stateful(&mut self, children: Vec<PhysNode>, op: Box<dyn StatefulOperator>) -> PhysNode {
        self.plan.operators.push(op);
        PhysNode::Stateful(children, self.plan.operators.len() - 1)
    }

    fn next_store(&mut self) -> usize {
        self.plan.n_stores += 1;
        self.plan.n_stores - 1
    }

    fn node(&mut self, logical: &Arc<LogicalPlan>) -> Result<PhysNode> {
        Ok(match logical.as_ref() {
            LogicalPlan::Source { provider, warnings } => {
                self.plan.warnings.extend(warnings.iter().cloned());
                let sources = &mut self.plan.sources;
                let idx = match sources.iter().position(|p| Arc::ptr_eq(p, provider)) {
                    Some(i) => i,
                    None => {
                        sources.push(provider.clone());
                        sources.len() - 1
                    }
                };
                PhysNode::Scan(idx)
            }
            LogicalPlan::Select { input, exprs } => PhysNode::Select(Box::new(self.node(input)?), exprs.clone()),
            LogicalPlan::WithColumns { input, exprs } => PhysNode::WithColumns(Box::new(self.node(input)?), exprs.clone()),
            LogicalPlan::Filter { input, predicate } => PhysNode::Filter(Box::new(self.node(input)?), predicate.clone()),
            LogicalPlan::Watermark { input, column, delay_ms } => {
                let inner = self.node(input)?;
                self.plan.watermarks.push(WatermarkSpec { column: column.clone(), delay_ms: *delay_ms });
                PhysNode::Watermark(Box::new(inner), self.plan.watermarks.len() - 1)
            }
            LogicalPlan::Aggregate { input, keys, aggs } => {
                let inner = self.node(input)?;
                self.counts.aggregations += 1;
                let agg = AggregatePlan::new(input.schema()?.as_ref(), keys, aggs, &input.watermark_columns())?;
                self.problems.extend(analysis::aggregate(&agg, self.mode));
                let store = self.next_store();
                let op: Box<dyn StatefulOperator> = if agg.session_window().is_some() {
                    Box::new(SessionWindowAggregateExec::new(agg, store, self.partitions, self.mode)?)
                } else {
                    Box::new(StreamingAggregateExec::new(agg, store, self.partitions, self.mode))
                };
                self.stateful(vec![inner], op)
            }
            LogicalPlan::FlatMapGroupsWithState { input, spec } => {
                let inner = self.node(input)?;
                self.counts.groups_with_state += 1;
                let input_schema = input.schema()?;
                let event_time = input.watermark_columns().into_iter().find(|c| input_schema.contains(c));
                self.problems.extend(analysis::groups_with_state(spec, self.mode, event_time.is_some()));
                let store = self.next_store();
                let op = FlatMapGroupsWithStateExec::new(spec.clone(), input_schema, event_time, store, self.partitions)?;
                self.stateful(vec![inner], Box::new(op))
            }
            LogicalPlan::StaticJoin { input, right, left_on, right_on, how } => {
                let inner = self.node(input)?;
                self.problems.extend(analysis::static_join(*how));
                PhysNode::StaticJoin(Box::new(inner), right.clone(), left_on.clone(), right_on.clone(), *how)
            }
            LogicalPlan::Join { left, right, left_on, right_on, how, condition } => {
                let ops_before = self.plan.operators.len();
                let l = self.node(left)?;
                let r = self.node(right)?;
                let (ls, rs) = (left.schema()?, right.schema()?);
                let wm_of = |p: &Arc<LogicalPlan>, s: &Schema| p.watermark_columns().into_iter().find(|c| s.contains(c));
                let plan = StreamingJoinPlan {
                    how: *how,
                    condition: condition.clone(),
                    output_schema: StreamingSymmetricHashJoinExec::output_schema(&ls, &rs, *how),
                };
                let (left_store, right_store) = (self.next_store(), self.next_store());
                let left_side = JoinSide::new(left_on.clone(), ls.clone(), wm_of(left, &ls), left_store, self.partitions);
                let right_side = JoinSide::new(right_on.clone(), rs.clone(), wm_of(right, &rs), right_store, self.partitions);
                let op = StreamingSymmetricHashJoinExec::new(plan, left_side, right_side);
                let stateful_input = self.plan.operators.len() > ops_before;
                self.problems.extend(analysis::stream_stream_join(*how, self.mode, stateful_input, |left_side| {
                    op.side_watermark(left_side, 0).is_some()
                }));
                self.stateful(vec![l, r], Box::new(op))
            }
            LogicalPlan::Deduplicate { input, keys, within_watermark } => {
                let aggregations_before = self.counts.aggregations;
                let inner = self.node(input)?;
                self.problems.extend(analysis::deduplicate(*within_watermark, self.counts.aggregations > aggregations_before));
                let plan = DedupPlan::new(input.schema()?, keys, *within_watermark, &input.watermarks())?;
                let store = self.next_store();
                self.stateful(vec![inner], Box::new(StreamingDeduplicateExec::new(plan, store, self.partitions)))
            }
        })
    }
}
