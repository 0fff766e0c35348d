//! `MicroBatchExecution`: the trigger loop.
//!
//! ```text
//!            ┌──────────────────────── next trigger ◄──────────────────────────┐
//!            ▼                                                                 │
//!  1 latest offsets ──new data or pending no-data batch?──no──► wait / stop    │
//!            │yes                                                              │
//!  2 offsets/N  (write-ahead: end offsets, batch watermark, timestamp, conf)   │
//!  3 get_batch (prev end, N's end] per source                                  │
//!  4 run plan: stateless ops → watermark stats → stateful ops (state N → N+1)  │
//!  5 sink.add_batch(N)            (idempotent per batch id)                    │
//!  6 state deltas of version N+1  (partitions written → commit)                │
//!  7 commits/N  (next watermark, per-operator watermarks, state deltas)        │
//!  8 new watermark = min over watermark operators of (max event time - delay) ─┘
//!    if it advanced and a stateful operator would evict/emit: a no-data batch
//! ```
//! On start the logs decide (see [`sluice_checkpoint::recovery_plan`]): continue after
//! the last commit, or replay the one planned batch with exactly its logged offsets,
//! watermark and timestamp.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use polars::prelude::*;
use sluice_checkpoint::{
    BatchId, Checkpoint, CheckpointError, CheckpointMetadata, CommitMetadata, OffsetSeq, OffsetSeqMetadata,
    Recovery,
};

use crate::aggregate::{AggregatePlan, StreamingAggregateExec};
use crate::clock::Clock;
use crate::group_state::{FlatMapGroupsWithStateExec, GroupStateTimeout};
use crate::join::{JoinSide, JoinType, StreamingJoinPlan, StreamingSymmetricHashJoinExec};
use crate::dataframe::{DataStreamWriter, ProgressDisplay};
use crate::operator::{BatchContext, StatefulOperator};
use crate::plan::LogicalPlan;
use crate::progress::{SinkProgress, SourceProgress, StreamingQueryProgress};
use crate::query::QueryShared;
use crate::connector::{Offset, Sink, SinkContext, Source, SourceContext, SourceProviderRef};
use crate::state::DEFAULT_STATE_PARTITIONS;
use crate::{OutputMode, Result, SluiceError, Trigger};

/// Configuration key of the number of state partitions (pinned at the first batch).
pub const CONF_STATE_PARTITIONS: &str = "sluice.state.partitions";
/// Configuration key of the number of batches whose checkpoint files are kept.
pub const CONF_MIN_BATCHES_TO_RETAIN: &str = "sluice.minBatchesToRetain";
/// Configuration key of the global watermark policy: `min` (default) or `max`.
pub const CONF_WATERMARK_POLICY: &str = "sluice.multipleWatermarkPolicy";

enum PhysNode {
    Scan(usize),
    Select(Box<PhysNode>, Vec<Expr>),
    WithColumns(Box<PhysNode>, Vec<Expr>),
    Filter(Box<PhysNode>, Expr),
    Watermark(Box<PhysNode>, usize),
    Stateful(Vec<PhysNode>, usize),
    StaticJoin(Box<PhysNode>, DataFrame, Vec<Expr>, Vec<Expr>, crate::join::JoinType),
}

struct WatermarkSpec {
    column: String,
    delay_ms: i64,
}

#[derive(Clone, Copy, Default)]
struct EventTimeStats {
    min_ms: i64,
    max_ms: i64,
    sum_ms: f64,
    count: u64,
}

struct Compiler<'a> {
    providers: Vec<SourceProviderRef>,
    watermarks: Vec<WatermarkSpec>,
    ops: Vec<Box<dyn StatefulOperator>>,
    next_store: usize,
    aggregations: usize,
    groups_with_state: usize,
    mode: OutputMode,
    partitions: usize,
    problems: Vec<String>,
    warnings: Vec<String>,
    _p: std::marker::PhantomData<&'a ()>,
}

impl Compiler<'_> {
    fn compile(&mut self, plan: &Arc<LogicalPlan>) -> Result<PhysNode> {
        Ok(match plan.as_ref() {
            LogicalPlan::Source { provider, warnings } => {
                self.warnings.extend(warnings.iter().cloned());
                let idx = match self.providers.iter().position(|p| Arc::ptr_eq(p, provider)) {
                    Some(i) => i,
                    None => {
                        self.providers.push(provider.clone());
                        self.providers.len() - 1
                    }
                };
                PhysNode::Scan(idx)
            }
            LogicalPlan::Select { input, exprs } => PhysNode::Select(Box::new(self.compile(input)?), exprs.clone()),
            LogicalPlan::WithColumns { input, exprs } => {
                PhysNode::WithColumns(Box::new(self.compile(input)?), exprs.clone())
            }
            LogicalPlan::Filter { input, predicate } => {
                PhysNode::Filter(Box::new(self.compile(input)?), predicate.clone())
            }
            LogicalPlan::Watermark { input, column, delay_ms } => {
                let inner = self.compile(input)?;
                self.watermarks.push(WatermarkSpec { column: column.clone(), delay_ms: *delay_ms });
                PhysNode::Watermark(Box::new(inner), self.watermarks.len() - 1)
            }
            LogicalPlan::Aggregate { input, keys, aggs } => {
                let inner = self.compile(input)?;
                self.aggregations += 1;
                let agg = AggregatePlan::new(input.schema()?.as_ref(), keys, aggs, &input.watermark_columns())?;
                if self.mode == OutputMode::Append && agg.event_time_key.is_none() {
                    self.problems.push(
                        "Append output mode not supported when there are streaming aggregations on \
                         streaming DataFrames without watermark: call with_watermark(\"<event time>\", \
                         \"<delay>\") and group by that column or a window over it, or use Update or \
                         Complete output mode"
                            .into(),
                    );
                }
                let store = self.next_store;
                self.next_store += 1;
                if agg.session_window().is_some() {
                    self.problems.extend(crate::session::analysis_problems(&agg, self.mode));
                    let op = crate::session::SessionWindowAggregateExec::new(agg, store, self.partitions, self.mode)?;
                    self.ops.push(Box::new(op));
                } else {
                    self.ops.push(Box::new(StreamingAggregateExec::new(agg, store, self.partitions, self.mode)));
                }
                PhysNode::Stateful(vec![inner], self.ops.len() - 1)
            }
            LogicalPlan::FlatMapGroupsWithState { input, spec } => {
                let inner = self.compile(input)?;
                self.groups_with_state += 1;
                let op_name = spec.op_name();
                let query = self.mode;
                if spec.is_map {
                    if query != OutputMode::Update {
                        self.problems.push(format!(
                            "mapGroupsWithState is not supported with {query} output mode on a streaming \
                             DataFrame: use Update output mode"
                        ));
                    }
                } else if spec.output_mode == OutputMode::Complete {
                    self.problems.push(
                        "flatMapGroupsWithState supports Append or Update as its own output mode, not Complete".into(),
                    );
                } else if spec.output_mode != query {
                    self.problems.push(format!(
                        "flatMapGroupsWithState in {} mode is not supported with {query} output mode on a \
                         streaming DataFrame: use the same output mode for the operator and the query",
                        spec.output_mode.to_string().to_lowercase()
                    ));
                }
                let input_schema = input.schema()?;
                let event_time = input.watermark_columns().into_iter().find(|c| input_schema.contains(c));
                if spec.timeout == GroupStateTimeout::EventTimeTimeout && event_time.is_none() {
                    self.problems.push(format!(
                        "Watermark must be specified in the query using with_watermark() for using event-time \
                         timeout in a {op_name}. Event-time timeout not supported without watermark."
                    ));
                }
                let store = self.next_store;
                self.next_store += 1;
                let op = FlatMapGroupsWithStateExec::new(spec.clone(), input_schema, event_time, store, self.partitions)?;
                self.ops.push(Box::new(op));
                PhysNode::Stateful(vec![inner], self.ops.len() - 1)
            }
            LogicalPlan::StaticJoin { input, right, left_on, right_on, how } => {
                let inner = self.compile(input)?;
                if !matches!(how, JoinType::Inner | JoinType::LeftOuter) {
                    self.problems.push(format!(
                        "a stream-static join supports Inner and LeftOuter with the stream on the left, not {how}: \
                         the static side has no end, so its unmatched rows could never be emitted"
                    ));
                }
                PhysNode::StaticJoin(Box::new(inner), right.clone(), left_on.clone(), right_on.clone(), *how)
            }
            LogicalPlan::Join { left, right, left_on, right_on, how, condition } => {
                let ops_before = self.ops.len();
                let l = self.compile(left)?;
                let r = self.compile(right)?;
                if self.ops.len() > ops_before {
                    self.problems.push(
                        "a stream-stream join of a stateful result (aggregation or join) is not supported".into(),
                    );
                }
                if self.mode != OutputMode::Append {
                    self.problems.push(format!(
                        "{} output mode not supported for stream-stream joins: use Append output mode",
                        self.mode
                    ));
                }
                let (ls, rs) = (left.schema()?, right.schema()?);
                let wm_of = |p: &Arc<LogicalPlan>, s: &Schema| {
                    p.watermark_columns().into_iter().find(|c| s.contains(c))
                };
                let plan = StreamingJoinPlan {
                    how: *how,
                    condition: condition.clone(),
                    output_schema: StreamingSymmetricHashJoinExec::output_schema(&ls, &rs, *how),
                };
                let left_side = JoinSide::new(left_on.clone(), ls.clone(), wm_of(left, &ls), self.next_store, self.partitions);
                let right_side = JoinSide::new(right_on.clone(), rs.clone(), wm_of(right, &rs), self.next_store + 1, self.partitions);
                self.next_store += 2;
                let op = StreamingSymmetricHashJoinExec::new(plan, left_side, right_side);
                // Outer sides must be evictable: a watermark on both inputs and a condition
                // that bounds the outer side's event time by the other side's watermark.
                let needs = |left_side: bool| match how {
                    JoinType::LeftOuter | JoinType::LeftSemi => left_side,
                    JoinType::RightOuter => !left_side,
                    JoinType::FullOuter => true,
                    JoinType::Inner => false,
                };
                for (side, name) in [(true, "left"), (false, "right")] {
                    if needs(side) && op.side_watermark(side, 0).is_none() {
                        self.problems.push(format!(
                            "Stream-stream {how} join between two streaming DataFrames is not supported \
                             without a watermark on both inputs and a range condition on event time that \
                             bounds the {name} side (e.g. right_time BETWEEN left_time AND left_time + \
                             interval): without it, unmatched {name} rows could never be emitted"
                        ));
                        break;
                    }
                }
                self.ops.push(Box::new(op));
                PhysNode::Stateful(vec![l, r], self.ops.len() - 1)
            }
            LogicalPlan::Deduplicate { input, keys, within_watermark } => {
                let aggregations_before = self.aggregations;
                let inner = self.compile(input)?;
                if self.aggregations > aggregations_before {
                    let name = if *within_watermark { "dropDuplicatesWithinWatermark" } else { "dropDuplicates" };
                    self.problems.push(format!(
                        "{name} is not supported after aggregation on a streaming DataFrame: deduplicate \
                         the rows before group_by"
                    ));
                }
                let plan = crate::dedup::DedupPlan::new(input, keys, *within_watermark)?;
                self.ops.push(Box::new(crate::dedup::StreamingDeduplicateExec::new(plan, self.next_store, self.partitions)));
                self.next_store += 1;
                PhysNode::Stateful(vec![inner], self.ops.len() - 1)
            }
        })
    }
}

/// Runs a query batch after batch on the calling thread (see the module docs).
pub struct MicroBatchExecution {
    id: String,
    run_id: String,
    name: Option<String>,
    ckpt: Checkpoint,
    sources: Vec<Box<dyn Source>>,
    source_schemas: Vec<SchemaRef>,
    root: PhysNode,
    ops: Vec<Box<dyn StatefulOperator>>,
    n_stores: usize,
    watermarks: Vec<WatermarkSpec>,
    sink: Box<dyn Sink>,
    mode: OutputMode,
    trigger: Trigger,
    conf: BTreeMap<String, String>,
    use_max_policy: bool,
    retain: u64,
    committed: Vec<Option<Offset>>,
    next_batch: BatchId,
    watermark_ms: i64,
    prev_batch_watermark_ms: i64,
    op_watermarks: Vec<Option<i64>>,
    pending_no_data: bool,
    replay: Option<OffsetSeq>,
    shared: Arc<QueryShared>,
    progress_display: ProgressDisplay,
    bar: Option<indicatif::ProgressBar>,
    last_trigger_start: Option<Instant>,
    clock: Arc<dyn Clock>,
}

fn offsets_differ(a: &[Option<Offset>], b: &[Option<Offset>]) -> bool {
    a.iter().zip(b).any(|(x, y)| x != y)
}

fn ms_to_rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

impl MicroBatchExecution {
    /// Compiles and analyses the query, opens its checkpoint and restores its state.
    ///
    /// # Errors
    /// [`SluiceError::Analysis`] for an invalid query; [`SluiceError::Checkpoint`] for a
    /// damaged checkpoint or one whose stateful operators differ from this query's.
    pub(crate) fn new(writer: DataStreamWriter, ckpt: Checkpoint, shared: Arc<QueryShared>) -> Result<Self> {
        let DataStreamWriter { df, output_mode: mode, trigger, sink, query_name, progress, clock, warnings: writer_warnings, .. } = writer;
        let mut sink = sink.ok_or_else(|| SluiceError::Internal("no sink".into()))?;
        let session = df.session.clone();

        // What the checkpoint pinned wins over the session's configuration.
        let recovery = ckpt.recovery()?;
        let mut conf = BTreeMap::new();
        let latest = ckpt.offsets().latest()?;
        let partitions = match latest.as_ref().and_then(|(_, o)| o.metadata.conf.get(CONF_STATE_PARTITIONS)) {
            Some(p) => p.clone(),
            None => session.conf(CONF_STATE_PARTITIONS).unwrap_or_else(|| DEFAULT_STATE_PARTITIONS.to_string()),
        };
        let partitions: usize = partitions.parse().ok().filter(|p| *p > 0).ok_or_else(|| {
            SluiceError::InvalidArgument(format!("{CONF_STATE_PARTITIONS} must be a positive integer, not {partitions:?}"))
        })?;
        conf.insert(CONF_STATE_PARTITIONS.to_string(), partitions.to_string());
        let policy = latest
            .as_ref()
            .and_then(|(_, o)| o.metadata.conf.get(CONF_WATERMARK_POLICY).cloned())
            .or_else(|| session.conf(CONF_WATERMARK_POLICY))
            .unwrap_or_else(|| "min".into());
        let use_max_policy = match policy.to_ascii_lowercase().as_str() {
            "min" => false,
            "max" => true,
            other => return Err(SluiceError::InvalidArgument(format!(
                "{CONF_WATERMARK_POLICY} must be min or max, not {other:?}"
            ))),
        };
        conf.insert(CONF_WATERMARK_POLICY.to_string(), policy.to_ascii_lowercase());
        let retain: u64 = session
            .conf(CONF_MIN_BATCHES_TO_RETAIN)
            .map(|v| v.parse().map_err(|_| SluiceError::InvalidArgument(format!("{CONF_MIN_BATCHES_TO_RETAIN}: {v:?}"))))
            .transpose()?
            .unwrap_or(100)
            .max(1);

        // Compile and analyse.
        let mut c = Compiler {
            providers: vec![],
            watermarks: vec![],
            ops: vec![],
            next_store: 0,
            aggregations: 0,
            groups_with_state: 0,
            mode,
            partitions,
            problems: vec![],
            warnings: vec![],
            _p: Default::default(),
        };
        df.plan.schema()?; // type-check every expression first
        let root = c.compile(&df.plan)?;
        if c.groups_with_state > 0 && c.ops.len() > 1 {
            c.problems.push(
                "flatMapGroupsWithState / mapGroupsWithState together with another stateful operation \
                 (aggregation, join, deduplication or a second groups-with-state) in one query is not supported yet"
                    .into(),
            );
        }
        if c.aggregations > 1 {
            c.problems.push("multiple streaming aggregations are not supported in one query".into());
        }
        if mode == OutputMode::Complete && c.aggregations == 0 {
            c.problems.push(
                "Complete output mode not supported when there are no streaming aggregations on \
                 streaming DataFrames: use Append or Update output mode"
                    .into(),
            );
        }
        if !sink.supports_output_mode(mode) {
            c.problems.push(format!(
                "{} does not support {mode} output mode: use Append output mode, or another sink",
                sink.description()
            ));
        }
        if let Some(p) = c.problems.first() {
            return Err(SluiceError::analysis(p.clone()));
        }
        let Compiler { providers, watermarks, ops, next_store: n_stores, warnings: mut source_warnings, .. } = c;
        source_warnings.extend(writer_warnings);
        for w in &source_warnings {
            tracing::warn!("{w}");
            if progress != ProgressDisplay::Off {
                eprintln!("warning: {w}");
            }
        }
        shared.set_warnings(source_warnings);

        let meta = match ckpt.read_metadata()? {
            Some(m) => m,
            None => {
                if recovery != Recovery::Fresh {
                    return Err(CheckpointError::Missing {
                        path: ckpt.display_path(&ckpt.paths().metadata()),
                        reason: "the checkpoint has offsets but no metadata".into(),
                    }
                    .into());
                }
                let m = CheckpointMetadata { id: uuid::Uuid::new_v4().to_string() };
                ckpt.write_metadata(&m)?;
                m
            }
        };
        // Stateful operators must be those the checkpoint was written with.
        for op in ops.iter() {
            for (k, i) in op.state_store_ids().into_iter().enumerate() {
                let path = ckpt.paths().state_metadata(i);
                let mut want = op.state_description();
                want["store"] = serde_json::json!(k);
                match ckpt.get(&path)? {
                    None if recovery == Recovery::Fresh => {
                        ckpt.put(&path, bytes::Bytes::from(serde_json::to_string(&want).expect("json") + "\n"), false)?;
                    }
                    None => {
                        return Err(SluiceError::analysis(format!(
                            "the query's stateful operators changed: {} is missing, so state store {i} ({}) \
                             did not exist when this checkpoint was written; use a new checkpoint location",
                            ckpt.display_path(&path),
                            op.name()
                        )))
                    }
                    Some(have) => {
                        let have: serde_json::Value = serde_json::from_slice(&have).map_err(|e| {
                            SluiceError::Checkpoint(CheckpointError::Corrupt { path: ckpt.display_path(&path), reason: e.to_string() })
                        })?;
                        if have != want {
                            return Err(SluiceError::analysis(format!(
                                "the query's stateful operators changed: {} records {have} but the query has {want}; \
                                 use a new checkpoint location",
                                ckpt.display_path(&path)
                            )));
                        }
                    }
                }
            }
        }
        let extra = ckpt.paths().state_metadata(n_stores);
        if ckpt.get(&extra)?.is_some() {
            return Err(SluiceError::analysis(format!(
                "the query's stateful operators changed: the checkpoint has state store {n_stores} ({}) that this \
                 query does not; use a new checkpoint location",
                ckpt.display_path(&extra)
            )));
        }

        let sources = providers.iter().map(|p| p.create()).collect::<Result<Vec<_>>>()?;
        let source_schemas = sources.iter().map(|s| s.schema()).collect();
        sink.initialize(&SinkContext { query_id: meta.id.clone(), output_mode: mode })?;
        let n_sources = sources.len();
        let n_wm = watermarks.len();
        let mut exec = MicroBatchExecution {
            id: meta.id,
            run_id: uuid::Uuid::new_v4().to_string(),
            name: query_name,
            ckpt,
            sources,
            source_schemas,
            root,
            ops,
            n_stores,
            watermarks,
            sink,
            mode,
            trigger,
            conf,
            use_max_policy,
            retain,
            committed: vec![None; n_sources],
            next_batch: 0,
            watermark_ms: 0,
            prev_batch_watermark_ms: 0,
            op_watermarks: vec![None; n_wm],
            pending_no_data: false,
            replay: None,
            shared,
            progress_display: progress,
            bar: None,
            last_trigger_start: None,
            clock,
        };
        for (i, s) in exec.sources.iter_mut().enumerate() {
            s.initialize(SourceContext { checkpoint: &exec.ckpt, index: i })?;
        }
        exec.recover(recovery)?;
        Ok(exec)
    }

    /// The query id.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The run id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    fn check_offsets_shape(&self, seq: &OffsetSeq, n: BatchId) -> Result<()> {
        if seq.offsets.len() != self.sources.len() {
            return Err(SluiceError::analysis(format!(
                "the checkpoint's offsets/{n} has {} sources but the query has {}: the query's sources \
                 changed; use a new checkpoint location",
                seq.offsets.len(),
                self.sources.len()
            )));
        }
        Ok(())
    }

    fn recover(&mut self, recovery: Recovery) -> Result<()> {
        match recovery {
            Recovery::Fresh => {}
            Recovery::Continue { last_committed } => {
                let seq = self.ckpt.offsets().require(last_committed)?;
                self.check_offsets_shape(&seq, last_committed)?;
                let commit = self.ckpt.commits().require(last_committed)?;
                self.committed = seq.offsets.clone();
                self.prev_batch_watermark_ms = seq.metadata.batch_watermark_ms;
                self.watermark_ms = commit.next_batch_watermark_ms;
                self.restore_op_watermarks(&commit);
                self.next_batch = last_committed + 1;
                for op in &mut self.ops {
                    op.restore(&self.ckpt, last_committed + 1)?;
                }
                let ctx = self.batch_context(last_committed, seq.metadata.batch_timestamp_ms, seq.metadata.batch_watermark_ms);
                self.pending_no_data = self.ops.iter().any(|o| o.should_run_another_batch(self.watermark_ms, &ctx));
            }
            Recovery::Replay { batch_id } => {
                let seq = self.ckpt.offsets().require(batch_id)?;
                self.check_offsets_shape(&seq, batch_id)?;
                if batch_id > 0 {
                    let prev = self.ckpt.offsets().require(batch_id - 1)?;
                    let commit = self.ckpt.commits().require(batch_id - 1)?;
                    self.committed = prev.offsets.clone();
                    self.prev_batch_watermark_ms = prev.metadata.batch_watermark_ms;
                    self.restore_op_watermarks(&commit);
                }
                self.watermark_ms = seq.metadata.batch_watermark_ms;
                self.next_batch = batch_id;
                for op in &mut self.ops {
                    op.restore(&self.ckpt, batch_id)?;
                }
                tracing::info!(batch_id, "replaying batch {batch_id}: planned in the offset log but not committed");
                self.replay = Some(seq);
            }
        }
        Ok(())
    }

    fn restore_op_watermarks(&mut self, commit: &CommitMetadata) {
        if commit.operator_watermarks_ms.len() == self.op_watermarks.len() {
            self.op_watermarks = commit.operator_watermarks_ms.clone();
        }
    }

    fn batch_context(&self, batch_id: BatchId, ts: i64, batch_wm: i64) -> BatchContext {
        let has_wm = !self.watermarks.is_empty();
        BatchContext {
            batch_id,
            batch_timestamp_ms: ts,
            watermark_for_late_events_ms: has_wm.then_some(self.prev_batch_watermark_ms),
            watermark_for_eviction_ms: has_wm.then_some(batch_wm),
            output_mode: self.mode,
        }
    }

    /// Runs batches until the trigger says stop, `stop()` is called, or a batch fails.
    ///
    /// # Errors
    /// The first failure, wrapped in [`SluiceError::Batch`] when a batch was running.
    pub fn run(&mut self) -> Result<()> {
        if let Some(seq) = self.replay.take() {
            let n = self.next_batch;
            self.run_batch(n, seq, Duration::ZERO).map_err(|e| wrap(n, e))?;
            if self.trigger == Trigger::Once {
                return Ok(());
            }
        }
        if self.trigger == Trigger::AvailableNow {
            for i in 0..self.sources.len() {
                let ctx = SourceContext { checkpoint: &self.ckpt, index: i };
                self.sources[i].prepare_for_available_now(ctx)?;
            }
            if self.progress_display == ProgressDisplay::Bar {
                let total: u64 = self.sources.iter().filter_map(|s| s.backlog()).sum();
                let bar = indicatif::ProgressBar::new(total);
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                self.bar = Some(bar);
            }
        }
        loop {
            if self.shared.stop_requested() {
                break;
            }
            let started = Instant::now();
            let all_available = self.trigger == Trigger::Once;
            let mut ends = Vec::with_capacity(self.sources.len());
            for i in 0..self.sources.len() {
                let start = self.committed[i].clone();
                let ctx = SourceContext { checkpoint: &self.ckpt, index: i };
                let end = self.sources[i].latest_offset(ctx, start.as_ref(), all_available)?;
                ends.push(end.or(start));
            }
            let has_data = offsets_differ(&ends, &self.committed);
            if !has_data && !self.pending_no_data && !self.timeouts_due() {
                match self.trigger {
                    Trigger::Once | Trigger::AvailableNow => break,
                    Trigger::ProcessingTime(interval) => {
                        self.shared.mark_idle();
                        let wait = interval.max(Duration::from_millis(10));
                        if self.shared.wait_for_stop(wait.min(Duration::from_millis(100))) {
                            break;
                        }
                        continue;
                    }
                }
            }
            let n = self.next_batch;
            let seq = OffsetSeq {
                metadata: OffsetSeqMetadata {
                    batch_watermark_ms: self.watermark_ms,
                    batch_timestamp_ms: self.clock.now_ms(),
                    conf: self.conf.clone(),
                },
                offsets: ends,
            };
            let latest_offset_time = started.elapsed();
            self.run_batch(n, seq, latest_offset_time).map_err(|e| wrap(n, e))?;
            match self.trigger {
                Trigger::Once => break,
                Trigger::ProcessingTime(interval) if !interval.is_zero() => {
                    let elapsed = started.elapsed();
                    if elapsed < interval && self.shared.wait_for_stop(interval - elapsed) {
                        break;
                    }
                }
                _ => {}
            }
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        Ok(())
    }

    fn run_batch(&mut self, n: BatchId, seq: OffsetSeq, latest_offset_time: Duration) -> Result<()> {
        let t0 = Instant::now();
        let mut durations = BTreeMap::new();
        durations.insert("latestOffset".to_string(), latest_offset_time.as_millis() as u64);
        // 2. write-ahead
        self.ckpt.offsets().add(n, &seq)?;
        durations.insert("walCommit".into(), t0.elapsed().as_millis() as u64);
        let batch_wm = seq.metadata.batch_watermark_ms;
        let ctx = self.batch_context(n, seq.metadata.batch_timestamp_ms, batch_wm);

        // 3. fetch
        let t = Instant::now();
        let mut inputs = Vec::with_capacity(self.sources.len());
        let mut source_progress = Vec::new();
        for i in 0..self.sources.len() {
            let start = self.committed[i].clone();
            let end = seq.offsets[i].clone();
            let df = match &end {
                Some(e) if Some(e) != start.as_ref() => {
                    let ctx = SourceContext { checkpoint: &self.ckpt, index: i };
                    let df = self.sources[i].get_batch(ctx, start.as_ref(), e)?;
                    let want = &self.source_schemas[i];
                    if df.schema().as_ref() != want.as_ref() {
                        return Err(SluiceError::Source {
                            name: self.sources[i].description(),
                            message: format!("batch schema {:?} differs from the declared {:?}", df.schema(), want),
                        });
                    }
                    df
                }
                _ => DataFrame::empty_with_schema(&self.source_schemas[i]),
            };
            source_progress.push(SourceProgress {
                description: self.sources[i].description(),
                start_offset: start,
                end_offset: end,
                num_input_rows: df.height() as u64,
            });
            inputs.push(df);
        }
        durations.insert("getBatch".into(), t.elapsed().as_millis() as u64);
        let num_input_rows: u64 = inputs.iter().map(|d| d.height() as u64).sum();

        // 4 + 5. execute and write
        let t = Instant::now();
        let mut stats = vec![EventTimeStats::default(); self.watermarks.len()];
        let root = std::mem::replace(&mut self.root, PhysNode::Scan(0));
        let out = self.eval(&root, &inputs, &ctx, &mut stats).and_then(|lf| Ok(lf.collect()?));
        self.root = root;
        let out = out?;
        self.sink.add_batch(n, &out)?;
        durations.insert("addBatch".into(), t.elapsed().as_millis() as u64);

        // 6 + 7. state, then the commit log
        let t = Instant::now();
        let mut state_deltas = vec![Vec::new(); self.n_stores];
        for op in &mut self.ops {
            for (store, parts) in op.commit(&self.ckpt, n + 1)? {
                if let Some(slot) = state_deltas.get_mut(store) {
                    *slot = parts;
                }
            }
        }
        let new_wm = self.advance_watermark(&stats);
        self.ckpt.commits().add(
            n,
            &CommitMetadata {
                next_batch_watermark_ms: new_wm,
                operator_watermarks_ms: self.op_watermarks.clone(),
                state_deltas,
            },
        )?;
        for i in 0..self.sources.len() {
            if let Some(end) = seq.offsets[i].clone() {
                let ctx = SourceContext { checkpoint: &self.ckpt, index: i };
                self.sources[i].commit(ctx, &end)?;
            }
        }
        durations.insert("commitOffsets".into(), t.elapsed().as_millis() as u64);

        // 8. next batch's watermark, no-data batch
        self.pending_no_data = self.ops.iter().any(|o| o.should_run_another_batch(new_wm, &ctx));
        self.prev_batch_watermark_ms = batch_wm;
        self.watermark_ms = new_wm;
        self.committed = seq.offsets.clone();
        self.next_batch = n + 1;
        if (n + 1).is_multiple_of(10) {
            self.purge(n)?;
        }

        let total = t0.elapsed() + latest_offset_time;
        durations.insert("triggerExecution".into(), total.as_millis() as u64);
        let mut event_time = BTreeMap::new();
        if !self.watermarks.is_empty() {
            event_time.insert("watermark".into(), ms_to_rfc3339(batch_wm));
            let seen: Vec<&EventTimeStats> = stats.iter().filter(|s| s.count > 0).collect();
            if !seen.is_empty() {
                let min = seen.iter().map(|s| s.min_ms).min().unwrap_or(0);
                let max = seen.iter().map(|s| s.max_ms).max().unwrap_or(0);
                let count: u64 = seen.iter().map(|s| s.count).sum();
                let sum: f64 = seen.iter().map(|s| s.sum_ms).sum();
                event_time.insert("min".into(), ms_to_rfc3339(min));
                event_time.insert("max".into(), ms_to_rfc3339(max));
                event_time.insert("avg".into(), ms_to_rfc3339((sum / count as f64) as i64));
            }
        }
        let since_last = self.last_trigger_start.map(|t| t.elapsed().as_secs_f64()).unwrap_or(0.0);
        self.last_trigger_start = Some(t0);
        let secs = total.as_secs_f64().max(1e-9);
        let progress = StreamingQueryProgress {
            id: self.id.clone(),
            run_id: self.run_id.clone(),
            name: self.name.clone(),
            timestamp: ms_to_rfc3339(seq.metadata.batch_timestamp_ms),
            batch_id: n,
            num_input_rows,
            input_rows_per_second: if since_last > 0.0 { num_input_rows as f64 / since_last } else { 0.0 },
            processed_rows_per_second: num_input_rows as f64 / secs,
            duration_ms: durations,
            event_time,
            state_operators: self.ops.iter().map(|o| o.progress()).collect(),
            sources: source_progress,
            sink: SinkProgress { description: self.sink.description(), num_output_rows: out.height() as u64 },
        };
        match (&self.bar, self.progress_display) {
            (Some(bar), _) => {
                bar.inc(1);
                bar.set_message(progress.summary_line());
            }
            (None, ProgressDisplay::Lines | ProgressDisplay::Bar) => eprintln!("{}", progress.summary_line()),
            (None, ProgressDisplay::Off) => {}
        }
        tracing::info!(target: "sluice::progress", "{}", progress.summary_line());
        self.shared.record_progress(progress);
        Ok(())
    }

    /// Whether a processing-time timeout in state has passed (the clock is beyond it), so
    /// a batch must run even without data.
    fn timeouts_due(&self) -> bool {
        let now = self.clock.now_ms();
        self.ops.iter().filter_map(|o| o.next_processing_time_timeout_ms()).any(|t| t < now)
    }

    fn advance_watermark(&mut self, stats: &[EventTimeStats]) -> i64 {
        if self.watermarks.is_empty() {
            return self.watermark_ms;
        }
        for (i, (spec, s)) in self.watermarks.iter().zip(stats).enumerate() {
            if s.count > 0 {
                let candidate = s.max_ms - spec.delay_ms;
                if self.op_watermarks[i].is_none_or(|w| candidate > w) {
                    self.op_watermarks[i] = Some(candidate);
                }
            } else if self.op_watermarks[i].is_none() {
                // An operator that has seen no row yet holds the min policy at 0 (Spark).
                self.op_watermarks[i] = Some(0);
            }
        }
        let values = self.op_watermarks.iter().flatten().copied();
        let chosen = if self.use_max_policy { values.max() } else { values.min() };
        match chosen {
            Some(c) if c > self.watermark_ms => c,
            _ => self.watermark_ms,
        }
    }

    fn purge(&self, n: BatchId) -> Result<()> {
        let keep_from = (n + 1).saturating_sub(self.retain);
        if keep_from == 0 {
            return Ok(());
        }
        for op in &self.ops {
            op.purge(&self.ckpt, keep_from)?;
        }
        // Commit entries must stay as long as the deltas they list.
        let oldest_state = keep_from.saturating_sub(crate::state::DEFAULT_SNAPSHOT_INTERVAL + 1);
        self.ckpt.offsets().purge_before(oldest_state)?;
        self.ckpt.commits().purge_before(oldest_state)?;
        Ok(())
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
                let column = &self.watermarks[*i].column;
                let ms = df
                    .column(column)?
                    .cast(&DataType::Datetime(TimeUnit::Microseconds, None))?
                    .cast(&DataType::Int64)?;
                let ca = ms.i64()?;
                let count = (ca.len() - ca.null_count()) as u64;
                if count > 0 {
                    // µs to ms as Spark does (integer division).
                    let max = ca.max().unwrap_or(0) / 1000;
                    let min = ca.min().unwrap_or(0) / 1000;
                    let sum: f64 = ca.iter().flatten().map(|v| (v / 1000) as f64).sum::<f64>();
                    let s = &mut stats[*i];
                    if s.count == 0 {
                        *s = EventTimeStats { min_ms: min, max_ms: max, sum_ms: sum, count };
                    } else {
                        s.min_ms = s.min_ms.min(min);
                        s.max_ms = s.max_ms.max(max);
                        s.sum_ms += sum;
                        s.count += count;
                    }
                }
                df.lazy()
            }
            PhysNode::StaticJoin(input, right, left_on, right_on, how) => {
                crate::plan::static_join(self.eval(input, inputs, ctx, stats)?, right, left_on, right_on, *how)?
            }
            PhysNode::Stateful(children, op) => {
                let mut frames = Vec::with_capacity(children.len());
                for c in children {
                    frames.push(self.eval(c, inputs, ctx, stats)?.collect()?);
                }
                self.ops[*op].process(frames, ctx)?.lazy()
            }
        })
    }
}

fn wrap(batch_id: BatchId, e: SluiceError) -> SluiceError {
    match e {
        e @ SluiceError::Batch { .. } => e,
        e => SluiceError::Batch { batch_id, source: Box::new(e) },
    }
}
