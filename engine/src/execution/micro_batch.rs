//! `MicroBatchExecution`: the trigger loop, batch after batch.
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
//! Starting (planning, pinning configuration, checking the checkpoint, restoring state)
//! is [`super::recovery`]'s; what a batch reports is [`super::progress`]'s.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use polars::prelude::*;
use sluice_checkpoint::{BatchId, Checkpoint, CommitMetadata, OffsetSeq, OffsetSeqMetadata};

use super::listener::{now_rfc3339, QueryEvent, QueryIdleEvent, QueryProgressEvent};
use super::manager::ListenerBus;
use super::progress::{ProgressReporter, SinkProgress, SourceProgress, StreamingQueryProgress};
use super::shared::QueryShared;
use super::spec::PinnedConf;
use crate::connector::{Offset, Sink, Source, SourceContext};
use crate::operators::BatchContext;
use crate::plan::PhysicalPlan;
use crate::state::DEFAULT_SNAPSHOT_INTERVAL;
use crate::time::watermark::{ms_to_rfc3339, EventTimeStats, WatermarkTracker};
use crate::time::Clock;
use crate::{OutputMode, Result, SluiceError, Trigger};

/// Runs a query batch after batch on the calling thread (see the module docs).
pub struct MicroBatchExecution {
    pub(super) id: String,
    pub(super) run_id: String,
    pub(super) name: Option<String>,
    pub(super) ckpt: Checkpoint,
    pub(super) sources: Vec<Box<dyn Source>>,
    pub(super) source_schemas: Vec<SchemaRef>,
    pub(super) plan: PhysicalPlan,
    pub(super) sink: Box<dyn Sink>,
    /// The late-rows side output, if any.
    pub(super) late_sink: Option<Box<dyn Sink>>,
    pub(super) mode: OutputMode,
    pub(super) trigger: Trigger,
    pub(super) conf: PinnedConf,
    /// End offsets of the last committed batch, per source.
    pub(super) committed: Vec<Option<Offset>>,
    pub(super) next_batch: BatchId,
    pub(super) watermark: WatermarkTracker,
    /// The watermark the previous batch ran with (late rows are judged by it).
    pub(super) prev_batch_watermark_ms: i64,
    pub(super) pending_no_data: bool,
    /// A batch planned in the offset log but not committed: run it first, as logged.
    pub(super) replay: Option<OffsetSeq>,
    pub(super) shared: Arc<QueryShared>,
    pub(super) reporter: ProgressReporter,
    pub(super) last_trigger_start: Option<Instant>,
    pub(super) clock: Arc<dyn Clock>,
    /// The session's listener bus: progress and idle events go there.
    pub(super) bus: Arc<ListenerBus>,
    /// When the last batch ran or the last idle event was posted (Spark's
    /// `lastNoExecutionProgressEventTime`; `None`: never).
    pub(super) last_batch_or_idle_event: Option<Instant>,
}

fn offsets_differ(a: &[Option<Offset>], b: &[Option<Offset>]) -> bool {
    a.iter().zip(b).any(|(x, y)| x != y)
}

impl MicroBatchExecution {
    /// The query id.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The run id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub(super) fn batch_context(&self, batch_id: BatchId, ts: i64, batch_wm: i64) -> BatchContext {
        let has_wm = self.watermark.is_enabled();
        BatchContext {
            batch_id,
            batch_timestamp_ms: ts,
            watermark_for_late_events_ms: has_wm.then_some(self.prev_batch_watermark_ms),
            watermark_for_eviction_ms: has_wm.then_some(batch_wm),
            output_mode: self.mode,
            keep_late_rows: self.late_sink.is_some(),
            explaining: false,
        }
    }

    /// Takes the rows each operator dropped as late in the batch just run; the side
    /// output's frame when there is a side output.
    fn late_rows(&mut self, ctx: &BatchContext) -> Result<Option<DataFrame>> {
        let wanted = self.late_sink.is_some();
        let contexts = self.plan.operator_contexts(ctx);
        let mut frames = Vec::new();
        for (i, op) in self.plan.operators.iter_mut().enumerate() {
            for rows in op.take_late_rows() {
                if wanted && rows.height() > 0 {
                    let wm = contexts[i].watermark_for_late_events_ms.unwrap_or(0);
                    frames.push(crate::operators::late::output_rows(ctx.batch_id, i, op.name(), wm, &rows)?.lazy());
                }
            }
        }
        if !wanted {
            return Ok(None);
        }
        if frames.is_empty() {
            return Ok(Some(DataFrame::empty_with_schema(&crate::operators::late::output_schema())));
        }
        Ok(Some(concat(frames, UnionArgs::default())?.collect()?))
    }

    /// Publishes every operator's state (as committed after `batch`) for
    /// [`StreamingQuery::state`](crate::StreamingQuery::state).
    pub(super) fn publish_state(&self, batch: Option<BatchId>) {
        let operators = self
            .plan
            .operators
            .iter()
            .map(|op| super::shared::LiveOperator {
                name: op.name().to_string(),
                stores: op.states().iter().map(|s| (s.store().clone(), s.frame().clone())).collect(),
                finalizer: op.state_finalizer(),
            })
            .collect();
        self.shared.publish_state(super::shared::LiveState { batch_id: batch, operators });
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
            let total: u64 = self.sources.iter().filter_map(|s| s.backlog()).sum();
            self.reporter.start_backlog(total);
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
                        self.post_idle_event();
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
                    batch_watermark_ms: self.watermark.current_ms(),
                    batch_timestamp_ms: self.clock.now_ms(),
                    conf: self.conf.entries.clone(),
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
        self.reporter.finish();
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
        let (inputs, source_progress) = self.fetch(&seq)?;
        durations.insert("getBatch".into(), t.elapsed().as_millis() as u64);
        let num_input_rows: u64 = source_progress.iter().map(|s| s.num_input_rows).sum();

        // 4 + 5. execute and write
        let t = Instant::now();
        let (out, stats) = self.plan.execute(&inputs, &ctx)?;
        let late = self.late_rows(&ctx)?;
        // The sink's files are outside the checkpoint: a run that lost the checkpoint to
        // a newer one must not write them.
        self.ckpt.ensure_owner()?;
        self.sink.add_batch(n, &out)?;
        if let (Some(sink), Some(late)) = (&mut self.late_sink, late) {
            // Before the commit, as the sink's: a replayed batch finds it in the side
            // output's manifest (the same late rows: the batch is deterministic).
            sink.add_batch(n, &late)?;
        }
        durations.insert("addBatch".into(), t.elapsed().as_millis() as u64);

        // 6 + 7. state, then the commit log
        let t = Instant::now();
        let mut state_deltas = vec![Vec::new(); self.plan.n_stores];
        for op in &mut self.plan.operators {
            for (store, parts) in op.commit(&self.ckpt, n + 1)? {
                if let Some(slot) = state_deltas.get_mut(store) {
                    *slot = parts;
                }
            }
        }
        let new_wm = self.watermark.advance(&stats);
        self.ckpt.commits().add(
            n,
            &CommitMetadata {
                next_batch_watermark_ms: new_wm,
                operator_watermarks_ms: self.watermark.node_watermarks_ms().to_vec(),
                state_deltas,
            },
        )?;
        self.publish_state(Some(n));
        for (i, end) in seq.offsets.iter().enumerate() {
            if let Some(end) = end {
                let ctx = SourceContext { checkpoint: &self.ckpt, index: i };
                self.sources[i].commit(ctx, end)?;
            }
        }
        durations.insert("commitOffsets".into(), t.elapsed().as_millis() as u64);

        // 8. next batch's watermark, no-data batch
        self.pending_no_data = self.plan.should_run_another_batch(new_wm, &ctx);
        self.prev_batch_watermark_ms = batch_wm;
        self.committed = seq.offsets.clone();
        self.next_batch = n + 1;
        if (n + 1).is_multiple_of(10) {
            self.purge(n)?;
        }

        let total = t0.elapsed() + latest_offset_time;
        durations.insert("triggerExecution".into(), total.as_millis() as u64);
        let mut event_time = BTreeMap::new();
        if self.watermark.is_enabled() {
            event_time = EventTimeStats::progress_map(&stats);
            event_time.insert("watermark".into(), ms_to_rfc3339(batch_wm));
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
            state_operators: self.plan.operators.iter().map(|o| o.progress()).collect(),
            sources: source_progress,
            sink: SinkProgress { description: self.sink.description(), num_output_rows: out.height() as u64 },
        };
        self.reporter.report(&progress);
        self.shared.record_progress(progress.clone());
        self.bus.post(QueryEvent::Progress(Box::new(QueryProgressEvent { progress })), &self.shared);
        self.last_batch_or_idle_event = Some(Instant::now());
        Ok(())
    }

    /// The trigger found no data: a [`QueryIdleEvent`] when none was posted, and no batch
    /// ran, for `sluice.noDataProgressEventInterval` (Spark's rule).
    fn post_idle_event(&mut self) {
        let interval = Duration::from_millis(self.conf.no_data_progress_event_interval_ms);
        if self.last_batch_or_idle_event.is_some_and(|t| t.elapsed() < interval) {
            return;
        }
        let event =
            QueryIdleEvent { id: self.id.clone(), run_id: self.run_id.clone(), name: self.name.clone(), timestamp: now_rfc3339() };
        self.bus.post(QueryEvent::Idle(event), &self.shared);
        self.last_batch_or_idle_event = Some(Instant::now());
    }

    /// Step 3: each source's rows in (last committed end, `seq`'s end].
    fn fetch(&mut self, seq: &OffsetSeq) -> Result<(Vec<DataFrame>, Vec<SourceProgress>)> {
        let mut inputs = Vec::with_capacity(self.sources.len());
        let mut progress = Vec::with_capacity(self.sources.len());
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
            progress.push(SourceProgress {
                description: self.sources[i].description(),
                start_offset: start,
                end_offset: end,
                num_input_rows: (df.height() * self.plan.scans[i]) as u64,
                metrics: self.sources[i].metrics(),
            });
            inputs.push(df);
        }
        Ok((inputs, progress))
    }

    /// Whether a processing-time timeout in state has passed (the clock is beyond it), so
    /// a batch must run even without data.
    fn timeouts_due(&self) -> bool {
        let now = self.clock.now_ms();
        self.plan.operators.iter().filter_map(|o| o.next_processing_time_timeout_ms()).any(|t| t < now)
    }

    fn purge(&self, n: BatchId) -> Result<()> {
        let keep_from = (n + 1).saturating_sub(self.conf.min_batches_to_retain);
        if keep_from == 0 {
            return Ok(());
        }
        for op in &self.plan.operators {
            op.purge(&self.ckpt, keep_from)?;
        }
        // Commit entries must stay as long as the deltas they list.
        let oldest_state = keep_from.saturating_sub(DEFAULT_SNAPSHOT_INTERVAL + 1);
        self.ckpt.purge_logs_before(oldest_state)?;
        Ok(())
    }
}

fn wrap(batch_id: BatchId, e: SluiceError) -> SluiceError {
    match e {
        e @ SluiceError::Batch { .. } => e,
        e => SluiceError::Batch { batch_id, source: Box::new(e) },
    }
}
