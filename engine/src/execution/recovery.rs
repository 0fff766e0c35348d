//! Starting a query on its checkpoint: the configuration pinned at the first batch, the
//! checkpoint's metadata and state layout, and where to resume.
//!
//! ```text
//! start(QuerySpec)
//!   pin conf: sluice.state.partitions, sluice.multipleWatermarkPolicy from offsets/<latest>
//!             (what the checkpoint pinned wins), else the session's, else defaults
//!   plan:     PhysicalPlan::plan (Spark's analysis rules; warnings of unread options)
//!   claim:    runs/<k> (this run owns the checkpoint; an older run fails at its next write)
//!   metadata: <ckpt>/metadata, written at the first start (the query id)
//!   layout:   each state store's _metadata equals the operator's (else: the query changed)
//!   recover:  sluice_checkpoint::recovery_plan over offsets/ and commits/:
//!             Fresh | Continue after the last commit | Replay the planned batch as logged
//! ```

use std::sync::Arc;
use std::time::Instant;

use polars::prelude::*;
use sluice_checkpoint::{BatchId, Checkpoint, CheckpointError, CheckpointMetadata, OffsetSeq, Recovery};

use super::micro_batch::MicroBatchExecution;
use super::progress::{ProgressDisplay, ProgressReporter};
use super::shared::QueryShared;
use super::spec::{PinnedConf, QuerySpec};
use crate::connector::{SinkContext, SourceContext};
use crate::plan::PhysicalPlan;
use crate::state::check_layout;
use crate::time::watermark::WatermarkTracker;
use crate::{Result, SluiceError};

/// Configuration key of the number of state partitions (pinned at the first batch).
pub const CONF_STATE_PARTITIONS: &str = "sluice.state.partitions";
/// Configuration key of the number of batches whose checkpoint files are kept.
pub const CONF_MIN_BATCHES_TO_RETAIN: &str = "sluice.minBatchesToRetain";
/// Configuration key of the global watermark policy: `min` (default) or `max`.
pub const CONF_WATERMARK_POLICY: &str = "sluice.multipleWatermarkPolicy";

impl MicroBatchExecution {
    /// Plans and analyses the query, opens its checkpoint and restores its state (see the
    /// module docs).
    ///
    /// # Errors
    /// [`SluiceError::Analysis`] for an invalid query or one whose stateful operators differ
    /// from the checkpoint's; [`SluiceError::Checkpoint`] for a damaged checkpoint.
    pub(crate) fn start(spec: QuerySpec, shared: Arc<QueryShared>) -> Result<Self> {
        let QuerySpec {
            plan,
            conf,
            output_mode: mode,
            trigger,
            mut sink,
            late_rows,
            name,
            checkpoint: ckpt,
            progress,
            clock,
            warnings,
            manager,
        } = spec;
        let latest = ckpt.offsets().latest()?;
        let conf = PinnedConf::resolve(latest.as_ref().map(|(_, o)| o), &conf)?;
        let physical = PhysicalPlan::plan(&plan, mode, conf.partitions, sink.as_ref())?;
        let explain = |extended| -> String {
            let mut out = String::from("== Logical Plan ==\n");
            out.push_str(&plan.tree_string(extended));
            out.push_str("\n== Physical Plan ==\n");
            out.push_str(&physical.tree_string(&sink.description(), mode, extended));
            out
        };
        shared.set_explain(explain(false), explain(true));

        // A query that passed analysis owns the checkpoint from here on: a run still
        // writing to it stops at its next write (NotOwner), and the temporaries of killed
        // writes are removed. The logs are read again once owned.
        let run_id = uuid::Uuid::new_v4().to_string();
        ckpt.claim(&run_id)?;
        let recovery = ckpt.recovery()?;
        let mut all_warnings = physical.warnings.clone();
        all_warnings.extend(warnings);
        for w in &all_warnings {
            tracing::warn!("{w}");
            if progress != ProgressDisplay::Off {
                eprintln!("warning: {w}");
            }
        }
        shared.set_warnings(all_warnings);

        let meta = open_metadata(&ckpt, recovery)?;
        check_state_layout(&ckpt, &physical, recovery == Recovery::Fresh)?;

        let sources = physical.sources.iter().map(|p| p.create()).collect::<Result<Vec<_>>>()?;
        let source_schemas: Vec<SchemaRef> = sources.iter().map(|s| s.schema()).collect();
        sink.initialize(&SinkContext { query_id: meta.id.clone(), output_mode: mode })?;
        let mut late_sink = late_rows;
        if let Some(s) = &mut late_sink {
            s.initialize(&SinkContext { query_id: meta.id.clone(), output_mode: crate::OutputMode::Append })?;
        }
        let n_sources = sources.len();
        let watermark = WatermarkTracker::new(physical.watermarks.clone(), conf.use_max_policy);
        let mut exec = MicroBatchExecution {
            id: meta.id.clone(),
            run_id,
            reporter: ProgressReporter::new(progress, name.clone(), &meta.id),
            name,
            ckpt,
            sources,
            source_schemas,
            plan: physical,
            sink,
            late_sink,
            mode,
            trigger,
            conf,
            committed: vec![None; n_sources],
            next_batch: 0,
            watermark,
            prev_batch_watermark_ms: 0,
            pending_no_data: false,
            replay: None,
            shared,
            last_trigger_start: None::<Instant>,
            clock,
            bus: manager.bus().clone(),
            last_batch_or_idle_event: None,
        };
        for (i, s) in exec.sources.iter_mut().enumerate() {
            s.initialize(SourceContext { checkpoint: &exec.ckpt, index: i })?;
        }
        let last_committed = exec.recover(recovery)?;
        exec.publish_state(last_committed);
        Ok(exec)
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

    /// Restores what `recovery` says; returns the last committed batch.
    fn recover(&mut self, recovery: Recovery) -> Result<Option<BatchId>> {
        Ok(match recovery {
            Recovery::Fresh => None,
            Recovery::Continue { last_committed } => {
                let seq = self.ckpt.offsets().require(last_committed)?;
                self.check_offsets_shape(&seq, last_committed)?;
                let commit = self.ckpt.commits().require(last_committed)?;
                self.committed = seq.offsets.clone();
                self.prev_batch_watermark_ms = seq.metadata.batch_watermark_ms;
                self.watermark.restore(commit.next_batch_watermark_ms, &commit.operator_watermarks_ms);
                self.next_batch = last_committed + 1;
                for op in &mut self.plan.operators {
                    op.restore(&self.ckpt, last_committed + 1)?;
                }
                let ctx = self.batch_context(last_committed, seq.metadata.batch_timestamp_ms, seq.metadata.batch_watermark_ms);
                let wm = self.watermark.current_ms();
                self.pending_no_data = self.plan.should_run_another_batch(wm, &ctx);
                Some(last_committed)
            }
            Recovery::Replay { batch_id } => {
                let seq = self.ckpt.offsets().require(batch_id)?;
                self.check_offsets_shape(&seq, batch_id)?;
                if batch_id > 0 {
                    let prev = self.ckpt.offsets().require(batch_id - 1)?;
                    let commit = self.ckpt.commits().require(batch_id - 1)?;
                    self.committed = prev.offsets.clone();
                    self.prev_batch_watermark_ms = prev.metadata.batch_watermark_ms;
                    self.watermark.restore(commit.next_batch_watermark_ms, &commit.operator_watermarks_ms);
                }
                self.watermark.set_current_ms(seq.metadata.batch_watermark_ms);
                self.next_batch = batch_id;
                for op in &mut self.plan.operators {
                    op.restore(&self.ckpt, batch_id)?;
                }
                tracing::info!(batch_id, "replaying batch {batch_id}: planned in the offset log but not committed");
                self.replay = Some(seq);
                batch_id.checked_sub(1)
            }
        })
    }
}

/// The checkpoint's `metadata` (the query id), written at the first start.
///
/// # Errors
/// [`SluiceError::Checkpoint`] when a used checkpoint has none, or it is unreadable.
fn open_metadata(ckpt: &Checkpoint, recovery: Recovery) -> Result<CheckpointMetadata> {
    if let Some(m) = ckpt.read_metadata()? {
        return Ok(m);
    }
    if recovery != Recovery::Fresh {
        return Err(CheckpointError::Missing {
            path: ckpt.display_path(&ckpt.paths().metadata()),
            reason: "the checkpoint has offsets but no metadata".into(),
        }
        .into());
    }
    let m = CheckpointMetadata { id: uuid::Uuid::new_v4().to_string() };
    ckpt.write_metadata(&m)?;
    Ok(m)
}

/// Every stateful operator's stores must be those the checkpoint was written with, and
/// the checkpoint must have no store beyond them.
///
/// # Errors
/// [`SluiceError::Analysis`] naming the store that differs (use a new checkpoint location).
fn check_state_layout(ckpt: &Checkpoint, plan: &PhysicalPlan, fresh: bool) -> Result<()> {
    for op in &plan.operators {
        for (k, state) in op.states().into_iter().enumerate() {
            let mut want = op.state_description();
            want["store"] = serde_json::json!(k);
            let schema = &state.store().schema;
            want["stateSchema"] = schema.iter().map(|(n, d)| format!("{n}: {d}")).collect();
            check_layout(ckpt, state.store().store_id, &want, op.name(), fresh)?;
        }
    }
    let extra = ckpt.paths().state_metadata(plan.n_stores);
    if ckpt.get(&extra)?.is_some() {
        return Err(SluiceError::analysis(format!(
            "the query's stateful operators changed: the checkpoint has state store {} ({}) that this \
             query does not; use a new checkpoint location",
            plan.n_stores,
            ckpt.display_path(&extra)
        )));
    }
    Ok(())
}
