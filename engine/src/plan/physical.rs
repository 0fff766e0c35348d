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
//! Sort / Limit ─► Sort / Limit (complete mode: over the whole result)
//! ```
//! State store ids are handed out in plan order (a join takes two), and must be the
//! same at every start on one checkpoint.
//!
//! ## Per-operator watermarks (Spark 3.5's `PropagateWatermarkSimulator`)
//! Each stateful operator judges late rows and evicts by its *input* watermark: a
//! `with_watermark` node outputs the query's (global) watermark, stateless steps pass
//! their input's on, a stateful operator outputs
//! [`StatefulOperator::output_watermark`] of its input's (an aggregation: the same; a
//! stream-stream join: lower, by the time range of its condition; groups-with-state:
//! none), and an operator's input watermark is the smallest of its inputs' (inputs
//! without one are left out; an operator with none gets 0). Late rows are judged by the
//! input watermark computed from the previous batch's global watermark, eviction by the
//! current one's.

use std::sync::Arc;

use polars::prelude::*;

use super::analysis::{self, OperatorCounts};
use super::logical::sort_options;
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
    Sort(Box<PhysNode>, Vec<Expr>, Vec<bool>),
    Limit(Box<PhysNode>, usize),
}

/// A planned query (see the module docs).
pub struct PhysicalPlan {
    root: PhysNode,
    /// The sources, in scan order (the order of `offsets/N`'s entries).
    pub sources: Vec<SourceProviderRef>,
    /// How many times the plan scans each source (a self-join scans one twice; Spark
    /// counts the rows of each scan in `numInputRows`).
    pub scans: Vec<usize>,
    /// The `with_watermark` nodes, in plan order.
    pub watermarks: Vec<WatermarkSpec>,
    /// The stateful operators, in plan order.
    pub operators: Vec<Box<dyn StatefulOperator>>,
    /// The number of state stores (a join owns two).
    pub n_stores: usize,
    /// Warnings of the sources (options nothing read).
    pub warnings: Vec<String>,
    /// The watermarked columns (and their delays, ms) of each stateful operator's input,
    /// in plan order (for `explain`).
    pub operator_event_time: Vec<Vec<(String, i64)>>,
    /// The number of state partitions.
    pub partitions: usize,
    /// When set, [`execute`](Self::execute) keeps each stateful operator's input frames
    /// in [`captured_inputs`](Self::captured_inputs) (explaining a batch).
    pub capture_inputs: bool,
    /// The input frames of each stateful operator in the last batch, when captured.
    pub captured_inputs: Vec<Vec<DataFrame>>,
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
        let (plan, problems) = Self::plan_unchecked(logical, mode, partitions, Some(sink))?;
        if let Some(first) = problems.into_iter().next() {
            return Err(SluiceError::analysis(first));
        }
        Ok(plan)
    }

    /// Plans `logical` as [`plan`](Self::plan) does, but returns the analysis problems
    /// beside the plan instead of failing (`explain` shows them); without a `sink` the
    /// sink's rules are not checked.
    ///
    /// # Errors
    /// [`SluiceError::Polars`] when an expression does not type-check,
    /// [`SluiceError::Analysis`] for an aggregation that cannot be planned at all.
    pub fn plan_unchecked(
        logical: &Arc<LogicalPlan>,
        mode: OutputMode,
        partitions: usize,
        sink: Option<&dyn Sink>,
    ) -> Result<(Self, Vec<String>)> {
        logical.schema()?; // type-check every expression first
        let empty = PhysicalPlan {
            root: PhysNode::Scan(0),
            sources: vec![],
            scans: vec![],
            watermarks: vec![],
            operators: vec![],
            n_stores: 0,
            warnings: vec![],
            operator_event_time: vec![],
            partitions,
            capture_inputs: false,
            captured_inputs: vec![],
        };
        let mut p = Planner { plan: empty, counts: OperatorCounts::default(), mode, partitions, problems: vec![] };
        p.plan.root = p.node(logical)?;
        p.counts.stateful = p.plan.operators.len();
        p.problems.extend(analysis::combinations(logical, mode));
        if let Some(sink) = sink {
            p.problems.extend(analysis::query(p.counts, mode, &sink.description(), sink.supports_output_mode(mode)));
        } else {
            p.problems.extend(analysis::query(p.counts, mode, "the sink", true));
        }
        Ok((p.plan, p.problems))
    }

    /// The physical plan as a text tree (see [`super::explain`]), under a
    /// `WriteToMicroBatchDataSource` line naming `sink` and `mode`; `extended` adds each
    /// store's state schema.
    pub fn tree_string(&self, sink: &str, mode: OutputMode, extended: bool) -> String {
        let mut out = String::new();
        let line = format!("WriteToMicroBatchDataSource {sink}, outputMode {mode}");
        let root: super::explain::TreeChild<'_> = Box::new(move |o: &mut String, p: &str| self.write_node(&self.root, o, p, extended));
        super::explain::tree(&mut out, "", &line, vec![root]);
        out
    }

    /// The line `explain` prints for stateful operator `op`.
    pub fn describe_operator(&self, op: usize) -> String {
        let o = &self.operators[op];
        let desc = o.state_description();
        let keys = match &desc["keys"] {
            serde_json::Value::Array(a) => a.iter().map(|k| k.as_str().map(str::to_string).unwrap_or_else(|| k.to_string())).collect::<Vec<_>>(),
            _ => o.states().iter().flat_map(|s| s.store().key_columns.clone()).collect(),
        };
        let watermark = match self.operator_event_time.get(op).map(Vec::as_slice) {
            Some([]) | None => "none".to_string(),
            Some(w) => w
                .iter()
                .map(|(c, d)| format!("{c} delay {}", crate::time::interval::format_interval_ms(*d)))
                .collect::<Vec<_>>()
                .join(" | "),
        };
        format!(
            "{} op={op}, stores={:?}, keys=[{}], partitions={}, watermark={watermark}",
            o.name(),
            o.state_store_ids(),
            keys.join(", "),
            self.partitions
        )
    }

    fn child<'a>(&'a self, n: &'a PhysNode, extended: bool) -> super::explain::TreeChild<'a> {
        Box::new(move |o: &mut String, p: &str| self.write_node(n, o, p, extended))
    }

    fn write_node<'a>(&'a self, node: &'a PhysNode, out: &mut String, prefix: &str, extended: bool) {
        type Child<'a> = super::explain::TreeChild<'a>;
        let child = |n: &'a PhysNode| -> Child<'a> { self.child(n, extended) };
        let list = |e: &[Expr]| format!("[{}]", e.iter().map(|e| super::explain::expr_text(e, extended)).collect::<Vec<_>>().join(", "));
        let (line, children): (String, Vec<Child<'_>>) = match node {
            PhysNode::Scan(i) => (format!("Scan {i} {}", self.sources[*i].description()), vec![]),
            PhysNode::Select(input, e) => (format!("Project {}", list(e)), vec![child(input)]),
            PhysNode::WithColumns(input, e) => (format!("WithColumns {}", list(e)), vec![child(input)]),
            PhysNode::Filter(input, e) => (format!("Filter {e:?}"), vec![child(input)]),
            PhysNode::Watermark(input, i) => {
                let w = &self.watermarks[*i];
                (format!("EventTimeWatermark {}, {}", w.column, crate::time::interval::format_interval_ms(w.delay_ms)), vec![child(input)])
            }
            PhysNode::StaticJoin(input, right, l, r, how) => {
                (format!("StaticJoin {how:?} ({} rows), {} = {}", right.height(), list(l), list(r)), vec![child(input)])
            }
            PhysNode::Sort(input, by, d) => (format!("Sort {}, descending {d:?}", list(by)), vec![child(input)]),
            PhysNode::Limit(input, n) => (format!("Limit {n}"), vec![child(input)]),
            PhysNode::Stateful(inputs, op) => {
                let mut line = self.describe_operator(*op);
                if extended {
                    for s in self.operators[*op].states() {
                        line.push_str(&format!(
                            ", state{}={}",
                            s.store().store_id,
                            super::explain::schema_text(&s.store().schema)
                        ));
                    }
                }
                (line, inputs.iter().map(child).collect())
            }
        };
        super::explain::tree(out, prefix, &line, children);
    }

    /// Runs one batch over `inputs` (one frame per source, in [`sources`](Self::sources)
    /// order): the stateless steps, then each stateful operator against its state, each
    /// with its own input watermarks derived from the batch's global ones in `batch` (see
    /// the module docs). Returns the output rows and the event-time statistics of each
    /// watermark node.
    ///
    /// # Errors
    /// The first failing step's error (Polars, an operator, a user function).
    pub fn execute(&mut self, inputs: &[DataFrame], batch: &BatchContext) -> Result<(DataFrame, Vec<EventTimeStats>)> {
        let contexts = self.operator_contexts(batch);
        let mut stats = vec![EventTimeStats::default(); self.watermarks.len()];
        let root = std::mem::replace(&mut self.root, PhysNode::Scan(0));
        let out = self.eval(&root, inputs, &contexts, &mut stats).and_then(|lf| Ok(lf.collect()?));
        self.root = root;
        Ok((out?, stats))
    }

    /// Whether a no-data batch should run after a batch run with `batch`, now that the
    /// global watermark is `new_watermark_ms` (Spark's `shouldRunAnotherBatch` of any
    /// operator, each given its new input watermark).
    pub fn should_run_another_batch(&self, new_watermark_ms: i64, batch: &BatchContext) -> bool {
        let contexts = self.operator_contexts(batch);
        let new = self.input_watermarks(new_watermark_ms);
        self.operators
            .iter()
            .zip(contexts.iter().zip(new))
            .any(|(op, (ctx, wm))| op.should_run_another_batch(wm.unwrap_or(0).max(0), ctx))
    }

    /// The input watermark of each stateful operator when the global one is `global_ms`
    /// (`None` for an operator none of whose inputs carries a watermark).
    pub fn input_watermarks(&self, global_ms: i64) -> Vec<Option<i64>> {
        let mut out = vec![None; self.operators.len()];
        self.simulate(&self.root, global_ms, &mut out);
        out
    }

    fn simulate(&self, node: &PhysNode, global_ms: i64, out: &mut [Option<i64>]) -> Option<i64> {
        match node {
            PhysNode::Scan(_) => None,
            PhysNode::Watermark(input, _) => {
                self.simulate(input, global_ms, out);
                Some(global_ms)
            }
            PhysNode::Select(input, _)
            | PhysNode::WithColumns(input, _)
            | PhysNode::Filter(input, _)
            | PhysNode::StaticJoin(input, ..)
            | PhysNode::Sort(input, ..)
            | PhysNode::Limit(input, _) => self.simulate(input, global_ms, out),
            PhysNode::Stateful(children, op) => {
                let inputs: Vec<Option<i64>> = children.iter().map(|c| self.simulate(c, global_ms, out)).collect();
                let input = inputs.into_iter().flatten().min();
                out[*op] = input;
                input.and_then(|wm| self.operators[*op].output_watermark(wm))
            }
        }
    }

    /// Each stateful operator's context in a batch whose global watermarks are `batch`'s.
    pub fn operator_contexts(&self, batch: &BatchContext) -> Vec<BatchContext> {
        let per_op = |global: Option<i64>| -> Vec<Option<i64>> {
            match global {
                // Spark: an operator without an input watermark still gets 0.
                Some(g) => self.input_watermarks(g).into_iter().map(|w| Some(w.unwrap_or(0).max(0))).collect(),
                None => vec![None; self.operators.len()],
            }
        };
        let late = per_op(batch.watermark_for_late_events_ms);
        let eviction = per_op(batch.watermark_for_eviction_ms);
        late.into_iter()
            .zip(eviction)
            .map(|(l, e)| BatchContext { watermark_for_late_events_ms: l, watermark_for_eviction_ms: e, ..batch.clone() })
            .collect()
    }

    fn eval(
        &mut self,
        node: &PhysNode,
        inputs: &[DataFrame],
        ctx: &[BatchContext],
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
            PhysNode::Sort(input, by, descending) => {
                self.eval(input, inputs, ctx, stats)?.sort_by_exprs(by.clone(), sort_options(descending))
            }
            PhysNode::Limit(input, n) => self.eval(input, inputs, ctx, stats)?.limit(*n as IdxSize),
            PhysNode::Stateful(children, op) => {
                let mut frames = Vec::with_capacity(children.len());
                for c in children {
                    frames.push(self.eval(c, inputs, ctx, stats)?.collect()?);
                }
                if self.capture_inputs {
                    if self.captured_inputs.len() < self.operators.len() {
                        self.captured_inputs.resize(self.operators.len(), Vec::new());
                    }
                    self.captured_inputs[*op] = frames.clone();
                }
                self.operators[*op].process(frames, &ctx[*op])?.lazy()
            }
        })
    }
}

impl Planner {
    fn stateful(&mut self, children: Vec<PhysNode>, op: Box<dyn StatefulOperator>, inputs: &[&Arc<LogicalPlan>]) -> PhysNode {
        self.plan.operators.push(op);
        self.plan.operator_event_time.push(inputs.iter().flat_map(|i| i.watermarks()).collect());
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
                        self.plan.scans.push(0);
                        sources.len() - 1
                    }
                };
                self.plan.scans[idx] += 1;
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
                self.stateful(vec![inner], op, &[input])
            }
            LogicalPlan::FlatMapGroupsWithState { input, spec } => {
                let inner = self.node(input)?;
                self.counts.groups_with_state += 1;
                let input_schema = input.schema()?;
                let event_time = input.watermark_columns().into_iter().find(|c| input_schema.contains(c));
                self.problems.extend(analysis::groups_with_state(spec, self.mode, event_time.is_some()));
                let store = self.next_store();
                let op = FlatMapGroupsWithStateExec::new(spec.clone(), input_schema, event_time, store, self.partitions)?;
                self.stateful(vec![inner], Box::new(op), &[input])
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
                self.stateful(vec![l, r], Box::new(op), &[left, right])
            }
            LogicalPlan::Sort { input, by, descending } => {
                PhysNode::Sort(Box::new(self.node(input)?), by.clone(), descending.clone())
            }
            LogicalPlan::Limit { input, n } => PhysNode::Limit(Box::new(self.node(input)?), *n),
            LogicalPlan::Deduplicate { input, keys, within_watermark } => {
                let aggregations_before = self.counts.aggregations;
                let inner = self.node(input)?;
                self.problems.extend(analysis::deduplicate(*within_watermark, self.counts.aggregations > aggregations_before));
                let plan = DedupPlan::new(input.schema()?, keys, *within_watermark, &input.watermarks())?;
                let store = self.next_store();
                self.stateful(vec![inner], Box::new(StreamingDeduplicateExec::new(plan, store, self.partitions)), &[input])
            }
        })
    }
}
