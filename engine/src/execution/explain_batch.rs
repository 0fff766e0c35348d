//! Explaining a batch: [`explain_batch`] re-runs batch `N` of a checkpoint read-only and
//! says why each output row was emitted and why each input row produced nothing.
//!
//! How it reproduces the batch: the query (its [`StreamingDataFrame`]) is planned as at
//! start; each stateful operator loads state version `N` (the state after batch `N - 1`)
//! from the checkpoint; each source reads the rows between batch `N - 1`'s and batch
//! `N`'s logged end offsets (`offsets/N-1`, `offsets/N`); the batch runs with its logged
//! watermark (eviction) and batch `N - 1`'s (late rows) and its logged timestamp. Nothing
//! is written: no state, no commit, no sink, no claim of the checkpoint. The output is
//! what the sink got for batch `N` (see [`BatchExplanation::verify`]).
//!
//! What it says, per operator input row ([`BatchExplanation::rows`]): for an aggregation
//! by an event-time key one line per (row, window), like the late-rows side output:
//! `late` (window end `E` at or before the watermark `W` of batch `N-1`), `emitted`
//! (window end `E <= W`, the batch's watermark, in append mode; `key updated` in update
//! mode; `in the complete result` in complete mode) or `in state` (window end `E > W`:
//! not final yet); for a deduplication `late`, `emitted` (the first row of its key) or
//! `duplicate` (of a key seen in batch `K`, found in the change feed, or earlier in this
//! batch); for a stream-stream join `late` rows, the rows the batch evicted from either
//! side's state (from earlier batches or this one) without ever having matched:
//! `evicted` with `evicted join row with no match (event time T <= state watermark W)`
//! (an inner side: they produce nothing) or `emitted` with `outer join: evicted with no
//! match (..): emitted null-padded` (an outer side), and the rest as `passed to the
//! operator`; for groups-with-state `late` rows and the rest as `passed to the operator`.
//! Each output row gets a `reason` ([`BatchExplanation::output`]); an outer join's
//! null-padded row `outer join: evicted with no match at watermark W` (the side's state
//! watermark).

use std::path::Path;

use polars::prelude::*;
use sluice_checkpoint::BatchId;

use crate::operators::late::{output_rows, rows_as_json, EVENT_TIME, WINDOW_END};
use crate::operators::BatchContext;
use crate::plan::PhysicalPlan;
use crate::time::watermark::ms_to_rfc3339;
use crate::{OutputMode, Result, SluiceError, SourceContext, StreamingDataFrame};

/// A re-run batch and its reasons (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct BatchExplanation {
    /// The batch.
    pub batch_id: BatchId,
    /// The watermark the batch evicted and emitted by (ms), from `offsets/N`.
    pub watermark_ms: i64,
    /// The watermark late rows were judged by (ms): batch `N - 1`'s.
    pub late_watermark_ms: i64,
    /// The rows the batch output, with a last column `reason`.
    pub output: DataFrame,
    /// Each stateful operator's input rows with what became of them: the columns of the
    /// late-rows side output ([`crate::operators::late::output_schema`]; `watermark` is
    /// the one that decided: a join's state watermark for its evicted rows) plus `outcome`
    /// (`late`, `emitted`, `in state`, `duplicate`, `evicted`, `passed to the operator`)
    /// and `reason`.
    pub rows: DataFrame,
}

impl BatchExplanation {
    /// Checks that `sink_rows` (what the sink holds for the batch) are the replayed
    /// output, as multisets of rows (columns compared by name, values as JSON).
    ///
    /// # Errors
    /// [`SluiceError::Checkpoint`] (corrupt) whose reason starts with `corruption:` and
    /// names the first row that differs, when they are not.
    pub fn verify(&self, sink_rows: &DataFrame) -> Result<()> {
        let replayed = self.output.drop("reason")?;
        if sink_rows.width() == 0 && sink_rows.height() == 0 && replayed.height() == 0 {
            return Ok(()); // a sink output with no rows has no columns either
        }
        let corrupt = |reason: String| {
            SluiceError::Checkpoint(sluice_checkpoint::CheckpointError::Corrupt { path: format!("the sink's batch {}", self.batch_id), reason })
        };
        let names: Vec<PlSmallStr> = replayed.get_column_names().into_iter().cloned().collect();
        let sink = sink_rows.select(names.clone()).map_err(|e| {
            corrupt(format!("corruption: batch {}: the sink's rows lack the query's columns: {e}", self.batch_id))
        })?;
        let mut a = rows_as_json(&replayed)?;
        let mut b = rows_as_json(&sink)?;
        a.sort();
        b.sort();
        if a != b {
            let first = a.iter().find(|r| !b.contains(r)).map(|r| format!("replayed row {r} is not in the sink"));
            let first = first.or_else(|| b.iter().find(|r| !a.contains(r)).map(|r| format!("sink row {r} was not replayed")));
            return Err(corrupt(format!(
                "corruption: batch {} replayed gives {} rows but the sink holds {}: {}",
                self.batch_id,
                a.len(),
                b.len(),
                first.unwrap_or_else(|| "rows differ in multiplicity".into())
            )));
        }
        Ok(())
    }

    /// The explanation as text: the output rows with their reason, then every operator
    /// input row that produced no output in this batch, with why.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "batch {}: watermark {} (late rows judged by batch {}'s watermark {})\n",
            self.batch_id,
            ms_to_rfc3339(self.watermark_ms),
            self.batch_id.saturating_sub(1),
            ms_to_rfc3339(self.late_watermark_ms)
        );
        out.push_str(&format!("output: {} rows\n", self.output.height()));
        if let Ok(lines) = rows_as_json(&self.output.drop("reason").unwrap_or_default()) {
            let reasons = self.output.column("reason").ok().and_then(|c| c.str().ok().cloned());
            for (i, l) in lines.iter().enumerate() {
                let r = reasons.as_ref().and_then(|r| r.get(i)).unwrap_or("");
                out.push_str(&format!("  {l}  <- {r}\n"));
            }
        }
        let n = self.rows.height();
        out.push_str(&format!("operator input rows: {n}\n"));
        let get = |c: &str, i: usize| self.rows.column(c).ok().and_then(|c| c.str().ok().and_then(|s| s.get(i).map(str::to_string)));
        for i in 0..n {
            if get("outcome", i).as_deref() == Some("emitted") {
                continue;
            }
            out.push_str(&format!(
                "  {}  -- {}: {}\n",
                get("row", i).unwrap_or_default(),
                get("outcome", i).unwrap_or_default(),
                get("reason", i).unwrap_or_default()
            ));
        }
        out
    }
}

/// A deduplication's input rows (not late): the first of its key emitted, the others
/// duplicates of a key seen in an earlier batch (found in the change feed) or earlier in
/// this batch.
#[allow(clippy::too_many_arguments)]
fn dedup_rows(
    ckpt: &sluice_checkpoint::Checkpoint,
    batch: BatchId,
    op_id: usize,
    name: &str,
    wm: i64,
    input: &DataFrame,
    late: &[DataFrame],
    store: &crate::state::StateStore,
    state: &DataFrame,
) -> Result<DataFrame> {
    let keys = &store.key_columns;
    let key_of = |df: &DataFrame| -> Result<Vec<String>> { rows_as_json(&df.select(keys.iter().map(|k| k.as_str()))?) };
    let late_rows: std::collections::HashSet<String> = late
        .iter()
        .map(|l| rows_as_json(&l.select(input.get_column_names().into_iter().cloned())?))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    let rows = rows_as_json(input)?;
    let mask: BooleanChunked = rows.iter().map(|r| !late_rows.contains(r)).collect();
    let rest = input.filter(&mask)?;
    let rest_keys = key_of(&rest)?;
    let in_state: std::collections::HashSet<String> = key_of(state)?.into_iter().collect();
    // the batch that first wrote each key still in state, from the change feed
    let mut seen_in: std::collections::HashMap<String, BatchId> = Default::default();
    let wanted: std::collections::HashSet<&String> = rest_keys.iter().filter(|k| in_state.contains(*k)).collect();
    for b in (0..batch).rev() {
        if wanted.iter().all(|k| seen_in.contains_key(*k)) {
            break;
        }
        for p in 0..store.partitions {
            let Ok(Some(delta)) = store.read_delta(ckpt, p, b + 1) else { continue };
            let upserts = delta.filter(&!delta.column(crate::state::DELETED_COLUMN)?.bool()?.clone())?;
            for k in key_of(&upserts)? {
                if wanted.contains(&k) {
                    seen_in.insert(k, b); // scanning backwards: the earliest batch wins
                }
            }
        }
    }
    let mut first: std::collections::HashSet<String> = Default::default();
    let (mut outcome, mut reason) = (Vec::new(), Vec::new());
    for k in &rest_keys {
        if in_state.contains(k) {
            outcome.push("duplicate");
            reason.push(match seen_in.get(k) {
                Some(b) => format!("duplicate of key {k} seen in batch {b}"),
                None => format!("duplicate of key {k} seen in an earlier batch"),
            });
        } else if !first.insert(k.clone()) {
            outcome.push("duplicate");
            reason.push(format!("duplicate of key {k} seen earlier in batch {batch}"));
        } else {
            outcome.push("emitted");
            reason.push(format!("emitted: the first row of key {k}"));
        }
    }
    let mut f = output_rows(batch, op_id, name, wm, &rest)?;
    f.with_column(Column::new("outcome".into(), outcome))?;
    f.with_column(Column::new("reason".into(), reason))?;
    Ok(f)
}

/// Counts of equal rows (as JSON): a multiset to take rows out of one at a time.
#[derive(Default)]
struct RowBag(std::collections::HashMap<String, usize>);

impl RowBag {
    fn add(&mut self, row: String) {
        *self.0.entry(row).or_default() += 1;
    }
    /// Takes one `row` out; whether there was one.
    fn take(&mut self, row: &str) -> bool {
        match self.0.get_mut(row) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }
}

/// The reason of a join row evicted by the state watermark without a match.
fn evicted_reason(e: &crate::operators::EvictedUnmatched, event_time_us: i64, added_in: u64, batch: BatchId) -> String {
    let why = format!("(event time {} <= state watermark {})", ts(event_time_us), ms_to_rfc3339(e.state_watermark_ms));
    let since = if added_in < batch { format!(", in state since batch {added_in}") } else { String::new() };
    if e.null_padded.height() > 0 {
        format!("outer join: evicted with no match {why}{since}: emitted null-padded")
    } else {
        format!("evicted join row with no match {why}{since}")
    }
}

/// A stream-stream join's rows: each side's input rows that are not late (`passed to
/// the operator`), except those evicted in this batch without a match, which are listed
/// with the rows from state (earlier batches) evicted with no match: `evicted` (inner
/// side: no output) or `emitted` (outer side: a null-padded row), with the side's state
/// watermark.
fn join_rows(
    batch: BatchId,
    op_id: usize,
    name: &str,
    op_wm: i64,
    inputs: &[DataFrame],
    late: &[DataFrame],
    evicted: &[crate::operators::EvictedUnmatched],
) -> Result<Vec<DataFrame>> {
    let strip = |df: &DataFrame| -> Result<Vec<String>> {
        let cols: Vec<PlSmallStr> = df.get_column_names().into_iter().filter(|c| c.as_str() != EVENT_TIME).cloned().collect();
        rows_as_json(&df.select(cols)?)
    };
    let mut late_bag = RowBag::default();
    for l in late {
        strip(l)?.into_iter().for_each(|r| late_bag.add(r));
    }
    let mut frames = Vec::new();
    // per side, the rows of this batch's input evicted in it
    let mut evicted_now = [RowBag::default(), RowBag::default()];
    for e in evicted {
        let times = e.rows.column(EVENT_TIME)?.i64()?.clone();
        let json = strip(&e.rows)?;
        let mut reasons = Vec::with_capacity(e.rows.height());
        for (r, row) in json.into_iter().enumerate() {
            let added = e.added_in_batch.get(r).copied().unwrap_or(batch);
            if added == batch {
                evicted_now[usize::from(!e.left_side)].add(row);
            }
            reasons.push(evicted_reason(e, times.get(r).unwrap_or(0), added, batch));
        }
        let outcome = if e.null_padded.height() > 0 { "emitted" } else { "evicted" };
        let mut f = output_rows(batch, op_id, name, e.state_watermark_ms, &e.rows)?;
        let n = f.height();
        f.with_column(Column::new_scalar("outcome".into(), Scalar::from(PlSmallStr::from(outcome)), n))?;
        f.with_column(Column::new("reason".into(), reasons))?;
        frames.push(f);
    }
    for (side, input) in inputs.iter().enumerate() {
        let json = rows_as_json(input)?;
        let keep: BooleanChunked = json
            .iter()
            .map(|r| !late_bag.take(r) && !evicted_now.get_mut(side).is_some_and(|b| b.take(r)))
            .collect();
        let passed = input.filter(&keep)?;
        let mut f = output_rows(batch, op_id, name, op_wm, &passed)?;
        let n = f.height();
        if n == 0 {
            continue;
        }
        f.with_column(Column::new_scalar("outcome".into(), Scalar::from(PlSmallStr::from("passed to the operator")), n))?;
        f.with_column(Column::new_scalar("reason".into(), Scalar::from(PlSmallStr::from(format!("processed by {name} (not late)"))), n))?;
        frames.push(f);
    }
    Ok(frames)
}

/// Relabels the output rows that are an outer join's null-padded rows of rows evicted
/// with no match (matched on the output columns the join's output has too).
fn outer_join_reasons(output: &DataFrame, evicted: &[crate::operators::EvictedUnmatched], reason: &mut [String]) -> Result<()> {
    for e in evicted.iter().filter(|e| e.null_padded.height() > 0) {
        let common: Vec<PlSmallStr> =
            e.null_padded.get_column_names().into_iter().filter(|c| output.schema().contains(c.as_str())).cloned().collect();
        if common.is_empty() {
            continue;
        }
        let mut bag = RowBag::default();
        rows_as_json(&e.null_padded.select(common.clone())?)?.into_iter().for_each(|r| bag.add(r));
        for (r, row) in rows_as_json(&output.select(common)?)?.iter().enumerate() {
            if bag.take(row) {
                if let Some(slot) = reason.get_mut(r) {
                    *slot = format!("outer join: evicted with no match at watermark {}", ms_to_rfc3339(e.state_watermark_ms));
                }
            }
        }
    }
    Ok(())
}

fn ts(us: i64) -> String {
    ms_to_rfc3339(us.div_euclid(1000))
}

/// Re-runs batch `batch` of the checkpoint in `checkpoint` for the query `df` in
/// `mode` (see the [module docs](self)); writes nothing.
///
/// # Errors
/// [`SluiceError::InvalidArgument`] when the batch is not in the offset log;
/// checkpoint, source and planning errors.
pub fn explain_batch(df: &StreamingDataFrame, mode: OutputMode, checkpoint: &Path, batch: BatchId) -> Result<BatchExplanation> {
    let ckpt = crate::state::reader::open_checkpoint(checkpoint)?;
    let seq = ckpt.offsets().get(batch)?.ok_or_else(|| {
        SluiceError::InvalidArgument(format!("batch {batch} is not in {}'s offset log", checkpoint.display()))
    })?;
    let prev = if batch == 0 { None } else { Some(ckpt.offsets().require(batch - 1)?) };
    let partitions = seq
        .metadata
        .conf
        .get(crate::execution::CONF_STATE_PARTITIONS)
        .and_then(|p| p.parse().ok())
        .unwrap_or(crate::state::DEFAULT_STATE_PARTITIONS);
    let (mut plan, _) = PhysicalPlan::plan_unchecked(df.plan(), mode, partitions, None)?;
    plan.capture_inputs = true;
    for op in &mut plan.operators {
        op.restore(&ckpt, batch)?;
    }
    let mut inputs = Vec::with_capacity(plan.sources.len());
    for (i, provider) in plan.sources.iter().enumerate() {
        let mut source = provider.create()?;
        let ctx = SourceContext { checkpoint: &ckpt, index: i };
        source.initialize(SourceContext { checkpoint: &ckpt, index: i })?;
        let start = prev.as_ref().and_then(|p| p.offsets.get(i).cloned().flatten());
        let end = seq.offsets.get(i).cloned().flatten();
        let df = match &end {
            Some(e) if Some(e) != start.as_ref() => source.get_batch(ctx, start.as_ref(), e)?,
            _ => DataFrame::empty_with_schema(&provider.schema()),
        };
        inputs.push(df);
    }
    let has_wm = !plan.watermarks.is_empty();
    let late_wm = prev.as_ref().map(|p| p.metadata.batch_watermark_ms).unwrap_or(0);
    let wm = seq.metadata.batch_watermark_ms;
    let ctx = BatchContext {
        batch_id: batch,
        batch_timestamp_ms: seq.metadata.batch_timestamp_ms,
        watermark_for_late_events_ms: has_wm.then_some(late_wm),
        watermark_for_eviction_ms: has_wm.then_some(wm),
        output_mode: mode,
        keep_late_rows: true,
        explaining: true,
    };
    // each operator's state before the batch (version N), for the rules that need it
    let before: Vec<Vec<(crate::state::StateStore, DataFrame)>> = plan
        .operators
        .iter()
        .map(|op| op.states().iter().map(|s| (s.store().clone(), s.frame().clone())).collect())
        .collect();
    let (output, _) = plan.execute(&inputs, &ctx)?;
    let contexts = plan.operator_contexts(&ctx);

    // each operator's input rows and what became of them
    let mut frames = Vec::new();
    // rows a stream-stream join evicted with no match (an outer side's became output rows)
    let mut padded: Vec<crate::operators::EvictedUnmatched> = Vec::new();
    for (i, op) in plan.operators.iter_mut().enumerate() {
        let op_late = contexts[i].watermark_for_late_events_ms.unwrap_or(0);
        let op_wm = contexts[i].watermark_for_eviction_ms.unwrap_or(0);
        let late = op.take_late_rows();
        let evicted = op.take_evicted_unmatched();
        let op_inputs = plan.captured_inputs.get(i).cloned().unwrap_or_default();
        match op.explain_rows(&op_inputs) {
            Some(pairs) => {
                let pairs = pairs?;
                let end = pairs.column(WINDOW_END).ok().map(|c| c.i64().cloned()).transpose()?;
                let key_time = pairs.column(EVENT_TIME)?.i64()?.clone();
                let mut outcome = Vec::with_capacity(pairs.height());
                let mut reason = Vec::with_capacity(pairs.height());
                let mut decided = Vec::with_capacity(pairs.height());
                for r in 0..pairs.height() {
                    let t = end.as_ref().and_then(|e| e.get(r)).or(key_time.get(r)).unwrap_or(i64::MIN);
                    let what = if end.is_some() { "window end" } else { "event time" };
                    if has_wm && t <= op_late * 1000 {
                        outcome.push("late");
                        reason.push(format!(
                            "late: event time {}, {what} {} <= watermark {} of batch {}",
                            ts(key_time.get(r).unwrap_or(0)),
                            ts(t),
                            ms_to_rfc3339(op_late),
                            batch.saturating_sub(1)
                        ));
                        decided.push(op_late);
                    } else {
                        decided.push(op_wm);
                        match mode {
                            OutputMode::Append if has_wm && t <= op_wm * 1000 => {
                                outcome.push("emitted");
                                reason.push(format!("emitted: {what} {} <= watermark {} (append)", ts(t), ms_to_rfc3339(op_wm)));
                            }
                            OutputMode::Append => {
                                outcome.push("in state");
                                reason.push(format!(
                                    "in state: {what} {} > watermark {}: not final yet (append)",
                                    ts(t),
                                    ms_to_rfc3339(op_wm)
                                ));
                            }
                            OutputMode::Update => {
                                outcome.push("emitted");
                                reason.push(format!("emitted: key updated in batch {batch} (update)"));
                            }
                            OutputMode::Complete => {
                                outcome.push("emitted");
                                reason.push("emitted: in the complete result (complete)".into());
                            }
                        }
                    }
                }
                let mut f = output_rows(batch, i, op.name(), 0, &pairs)?;
                f.with_column(Column::new("watermark".into(), decided).cast(&DataType::Int64)?.cast(&DataType::Datetime(TimeUnit::Milliseconds, None))?.cast(&DataType::Datetime(TimeUnit::Microseconds, None))?)?;
                f.with_column(Column::new("outcome".into(), outcome))?;
                f.with_column(Column::new("reason".into(), reason))?;
                frames.push(f.lazy());
            }
            None => {
                for l in &late {
                    let mut f = output_rows(batch, i, op.name(), op_late, l)?;
                    let n = f.height();
                    let times = f.column("event_time")?.cast(&DataType::Int64)?.i64()?.clone();
                    let reason: Vec<String> = (0..n)
                        .map(|r| {
                            format!(
                                "late: event time {} <= watermark {} of batch {}",
                                ts(times.get(r).unwrap_or(0)),
                                ms_to_rfc3339(op_late),
                                batch.saturating_sub(1)
                            )
                        })
                        .collect();
                    f.with_column(Column::new_scalar("outcome".into(), Scalar::from(PlSmallStr::from("late")), n))?;
                    f.with_column(Column::new("reason".into(), reason))?;
                    frames.push(f.lazy());
                }
                let passed: usize = op_inputs.iter().map(DataFrame::height).sum::<usize>() - late.iter().map(DataFrame::height).sum::<usize>();
                if passed > 0 && op.name() == "StreamingDeduplicateExec" {
                    let (store, state) = &before[i][0];
                    frames.push(dedup_rows(&ckpt, batch, i, op.name(), op_wm, &op_inputs[0], &late, store, state)?.lazy());
                } else if op.name() == "StreamingSymmetricHashJoinExec" {
                    let rows = join_rows(batch, i, op.name(), op_wm, &op_inputs, &late, &evicted)?;
                    frames.extend(rows.into_iter().map(IntoLazy::lazy));
                    padded.extend(evicted);
                } else if passed > 0 {
                    for input in &op_inputs {
                        let mut f = output_rows(batch, i, op.name(), op_wm, input)?;
                        let n = f.height();
                        f.with_column(Column::new_scalar("outcome".into(), Scalar::from(PlSmallStr::from("passed to the operator")), n))?;
                        f.with_column(Column::new_scalar(
                            "reason".into(),
                            Scalar::from(PlSmallStr::from(format!("processed by {} (not late)", op.name()))),
                            n,
                        ))?;
                        frames.push(f.lazy());
                    }
                }
            }
        }
    }
    let rows = if frames.is_empty() {
        let mut s = crate::operators::late::output_schema();
        s.with_column("outcome".into(), DataType::String);
        s.with_column("reason".into(), DataType::String);
        DataFrame::empty_with_schema(&s)
    } else {
        concat(frames, UnionArgs::default())?.collect()?
    };

    // why each output row was emitted
    let n = output.height();
    let reason: Vec<String> = match (mode, output.column("window").ok().filter(|c| matches!(c.dtype(), DataType::Struct(_)))) {
        (OutputMode::Append, Some(w)) => {
            let ends = w.as_materialized_series().struct_()?.field_by_name("end")?.cast(&DataType::Int64)?;
            let ends = ends.i64()?.clone();
            (0..n)
                .map(|r| format!("window end {} <= watermark {} (append)", ts(ends.get(r).unwrap_or(0)), ms_to_rfc3339(wm)))
                .collect()
        }
        (OutputMode::Append, None) if plan.operators.is_empty() => vec!["a stateless query emits every input row".into(); n],
        (OutputMode::Append, None) => vec![format!("final at watermark {} (append)", ms_to_rfc3339(wm)); n],
        (OutputMode::Update, _) => vec![format!("key updated in batch {batch} (update)"); n],
        (OutputMode::Complete, _) => vec!["the complete result (complete)".into(); n],
    };
    let mut reason = reason;
    outer_join_reasons(&output, &padded, &mut reason)?;
    let mut output = output;
    output.with_column(Column::new("reason".into(), reason))?;
    Ok(BatchExplanation { batch_id: batch, watermark_ms: wm, late_watermark_ms: late_wm, output, rows })
}
