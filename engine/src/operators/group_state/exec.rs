//! The physical `flatMapGroupsWithState` operator: per batch, sorts the rows by key, calls
//! the user function per key (and per timed-out key), and turns the calls' state changes
//! into the state delta (see the parent module's docs).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use polars::prelude::*;
use polars_plan::utils::expr_output_name;

use super::{CallEnv, CallOutput, GroupFunction, GroupKey, GroupStateTimeout, GroupsWithStateSpec, STATE_COLUMN, TIMEOUT_COLUMN};
use crate::operators::{BatchContext, StateOperatorProgress, StatefulOperator};
use crate::state::{KeyedState, StateStore, DELETED_COLUMN};
use crate::{Result, SluiceError};

/// One state change decided after a call.
enum Write {
    Delete,
    Put { bytes: Option<Vec<u8>>, timeout_ms: Option<i64> },
}

/// A key's stored entry as seen by a call.
#[derive(Clone)]
struct Entry {
    present: bool,
    bytes: Option<Vec<u8>>,
    timeout_ms: Option<i64>,
}

/// Spark's `onIteratorCompletion`: what to write after a call.
fn decide(before: &Entry, out: &mut CallOutput) -> Option<Write> {
    if out.removed && out.timeout_ms.is_none() {
        return before.present.then_some(Write::Delete);
    }
    let timeout_changed = out.timeout_ms != before.timeout_ms;
    if out.updated || out.removed || timeout_changed {
        let bytes = match (out.exists, out.bytes.take()) {
            (false, _) => None,
            (true, Some(b)) => Some(b),
            (true, None) => before.bytes.clone(),
        };
        return Some(Write::Put { bytes, timeout_ms: out.timeout_ms });
    }
    None
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

/// The physical `flatMapGroupsWithState` operator (see the module docs).
pub struct FlatMapGroupsWithStateExec {
    spec: GroupsWithStateSpec,
    key_exprs: Vec<Expr>,
    key_names: Arc<[String]>,
    input_schema: SchemaRef,
    event_time_column: Option<String>,
    state: KeyedState,
    next_processing_timeout_ms: Option<i64>,
    progress: StateOperatorProgress,
    /// The rows dropped as late by the last batch (see [`crate::operators::late`]).
    late: Vec<DataFrame>,
}

const KEY_PREFIX: &str = "__key";
const GROUP: &str = "__group";
const PRESENT: &str = "__present";

impl FlatMapGroupsWithStateExec {
    /// A new operator over input of `input_schema`; `event_time_column` is the input's
    /// watermarked column (late rows are dropped against it under `EventTimeTimeout`).
    ///
    /// # Errors
    /// [`SluiceError::Polars`] when a grouping expression does not type-check.
    pub fn new(
        spec: GroupsWithStateSpec,
        input_schema: SchemaRef,
        event_time_column: Option<String>,
        store_id: usize,
        partitions: usize,
    ) -> Result<Self> {
        let mut key_names = Vec::new();
        let mut key_exprs = Vec::new();
        for (i, k) in spec.keys.iter().enumerate() {
            let name = expr_output_name(k)?.to_string();
            if key_names.contains(&name) {
                return Err(SluiceError::analysis(format!("grouping key {name:?} appears twice")));
            }
            key_exprs.push(k.clone().alias(format!("{KEY_PREFIX}{i}")));
            key_names.push(name);
        }
        let key_schema = DataFrame::empty_with_schema(&input_schema)
            .lazy()
            .select(key_exprs.clone())
            .collect_schema()?;
        let mut schema = Schema::default();
        for (name, (_, dt)) in key_names.iter().zip(key_schema.iter()) {
            schema.insert(name.as_str().into(), dt.clone());
        }
        schema.insert(STATE_COLUMN.into(), DataType::Binary);
        schema.insert(TIMEOUT_COLUMN.into(), DataType::Int64);
        let state = KeyedState::new(StateStore {
            store_id,
            partitions,
            key_columns: key_names.clone(),
            schema: Arc::new(schema),
            snapshot_interval: crate::state::DEFAULT_SNAPSHOT_INTERVAL,
        });
        Ok(FlatMapGroupsWithStateExec {
            spec,
            key_exprs,
            key_names: key_names.into(),
            input_schema,
            event_time_column,
            state,
            next_processing_timeout_ms: None,
            progress: StateOperatorProgress::new("flatMapGroupsWithState"), late: Vec::new(),
        })
    }

    fn key_at(&self, keys: &DataFrame, row: usize) -> Result<GroupKey> {
        let mut values = Vec::with_capacity(self.key_names.len());
        for k in self.key_names.iter() {
            values.push(keys.column(k)?.get(row)?.into_static());
        }
        Ok(GroupKey { names: self.key_names.clone(), values })
    }

    /// Calls the user function, catching its errors and panics.
    fn call(
        &self,
        func: &mut dyn GroupFunction,
        env: CallEnv,
        key: &GroupKey,
        rows: DataFrame,
        state: Option<&[u8]>,
        timed_out: bool,
    ) -> Result<CallOutput> {
        let op = self.spec.op_name();
        let batch_id = env.batch_id;
        let out = match catch_unwind(AssertUnwindSafe(|| func.call(env, key, rows, state, timed_out))) {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => {
                return Err(SluiceError::User(format!(
                    "the {op} function failed for key {key} in batch {batch_id}: {e}"
                )))
            }
            Err(p) => {
                return Err(SluiceError::User(format!(
                    "the {op} function panicked for key {key} in batch {batch_id}: {}",
                    panic_message(p.as_ref())
                )))
            }
        };
        let want = &self.spec.output_schema;
        if out.rows.schema().as_ref() != want.as_ref() {
            let show = |s: &Schema| s.iter().map(|(n, d)| format!("{n}: {d}")).collect::<Vec<_>>().join(", ");
            return Err(SluiceError::User(format!(
                "the {op} function returned columns [{}] for key {key} in batch {batch_id}, but the declared \
                 output schema is [{}]",
                show(out.rows.schema()),
                show(want)
            )));
        }
        if self.spec.is_map && out.rows.height() != 1 {
            return Err(SluiceError::User(format!(
                "the mapGroupsWithState function returned {} rows for key {key} in batch {batch_id}: it must \
                 return exactly one (use flat_map_groups_with_state for zero or many)",
                out.rows.height()
            )));
        }
        Ok(out)
    }

    fn timeout_threshold(&self, ctx: &BatchContext) -> Option<i64> {
        match self.spec.timeout {
            GroupStateTimeout::NoTimeout => None,
            GroupStateTimeout::ProcessingTimeTimeout => Some(ctx.batch_timestamp_ms),
            GroupStateTimeout::EventTimeTimeout => ctx.watermark_for_eviction_ms,
        }
    }

    fn update_next_timeout(&mut self) {
        self.next_processing_timeout_ms = match self.spec.timeout {
            GroupStateTimeout::ProcessingTimeTimeout => self
                .state
                .frame()
                .column(TIMEOUT_COLUMN)
                .ok()
                .and_then(|c| c.as_materialized_series().i64().ok().and_then(|c| c.min())),
            _ => None,
        };
    }

    /// Builds delta rows: `keys` rows at `rows`, with the writes.
    fn delta_rows(&self, keys: &DataFrame, writes: &[(usize, Write)]) -> Result<DataFrame> {
        let idx = IdxCa::from_vec("".into(), writes.iter().map(|(i, _)| *i as IdxSize).collect());
        let mut df = keys.select(self.key_names.iter().map(|s| s.as_str()))?.take(&idx)?;
        let bytes: BinaryChunked = writes
            .iter()
            .map(|(_, w)| match w {
                Write::Put { bytes, .. } => bytes.as_deref(),
                Write::Delete => None,
            })
            .collect();
        let timeouts: Int64Chunked = writes
            .iter()
            .map(|(_, w)| match w {
                Write::Put { timeout_ms, .. } => *timeout_ms,
                Write::Delete => None,
            })
            .collect();
        let deleted: BooleanChunked = writes.iter().map(|(_, w)| Some(matches!(w, Write::Delete))).collect();
        df.with_column(bytes.into_series().with_name(STATE_COLUMN.into()).into_column())?;
        df.with_column(timeouts.into_series().with_name(TIMEOUT_COLUMN.into()).into_column())?;
        df.with_column(deleted.into_series().with_name(DELETED_COLUMN.into()).into_column())?;
        Ok(df)
    }
}

/// Entries of `keys` (distinct key rows) looked up in `state`, in `keys` order.
fn lookup(state: &DataFrame, keys: &DataFrame, key_names: &[String]) -> Result<Vec<Entry>> {
    let on: Vec<Expr> = key_names.iter().map(|k| col(k.as_str())).collect();
    let mut args = JoinArgs::new(polars::prelude::JoinType::Left);
    args.nulls_equal = true;
    let joined = keys
        .clone()
        .lazy()
        .with_row_index(GROUP, None)
        .join(state.clone().lazy().with_column(lit(true).alias(PRESENT)), on.clone(), on, args)
        .sort([GROUP], SortMultipleOptions::default())
        .collect()?;
    let present = joined.column(PRESENT)?.bool()?;
    let bytes = joined.column(STATE_COLUMN)?.binary()?;
    let timeouts = joined.column(TIMEOUT_COLUMN)?.i64()?;
    Ok((0..joined.height())
        .map(|i| Entry {
            present: present.get(i).unwrap_or(false),
            bytes: bytes.get(i).map(|b| b.to_vec()),
            timeout_ms: timeouts.get(i),
        })
        .collect())
}

impl StatefulOperator for FlatMapGroupsWithStateExec {
    fn name(&self) -> &'static str {
        "FlatMapGroupsWithStateExec"
    }

    fn state_description(&self) -> serde_json::Value {
        serde_json::json!({
            "operator": self.name(),
            "function": self.spec.op_name(),
            "keys": self.key_names.to_vec(),
            "timeout": self.spec.timeout.to_string(),
            "stateEncoding": "json",
        })
    }

    fn states(&self) -> Vec<&KeyedState> {
        vec![&self.state]
    }

    fn states_mut(&mut self) -> Vec<&mut KeyedState> {
        vec![&mut self.state]
    }

    fn restored(&mut self) {
        self.update_next_timeout();
    }

    fn process(&mut self, mut inputs: Vec<DataFrame>, ctx: &BatchContext) -> Result<DataFrame> {
        let mut input = inputs.pop().ok_or_else(|| SluiceError::Internal("flatMapGroupsWithState without input".into()))?;
        // Late rows: only under an event-time timeout (Spark).
        let mut dropped = 0u64;
        self.late.clear();
        if let (GroupStateTimeout::EventTimeTimeout, Some(c)) = (self.spec.timeout, &self.event_time_column) {
            let late;
            (input, dropped, late) =
                crate::operators::late::drop_late_rows(input, c, ctx.watermark_for_late_events_ms, ctx.keep_late_rows)?;
            self.late.extend(late);
        }
        let env = CallEnv {
            timeout: self.spec.timeout,
            batch_timestamp_ms: ctx.batch_timestamp_ms,
            watermark_ms: ctx.watermark_for_eviction_ms,
            op_name: self.spec.op_name(),
            batch_id: ctx.batch_id,
        };
        let input_names: Vec<PlSmallStr> = self.input_schema.iter_names().cloned().collect();
        let internal: Vec<PlSmallStr> = (0..self.key_names.len()).map(|i| format!("{KEY_PREFIX}{i}").into()).collect();
        let sorted = input
            .lazy()
            .with_columns(self.key_exprs.clone())
            .sort(internal.clone(), SortMultipleOptions::default().with_maintain_order(true))
            .collect()?;
        let rows = sorted.select(input_names.clone())?;
        let mut keys_all = sorted.select(internal.clone())?;
        keys_all.set_column_names(&self.key_names.iter().map(|s| s.as_str()).collect::<Vec<_>>())?;

        // Group boundaries: contiguous after the sort.
        let mut spans: Vec<(usize, usize)> = Vec::new();
        if sorted.height() > 0 {
            let gb = sorted.group_by_stable(internal.iter().cloned())?;
            for g in gb.get_groups().iter() {
                spans.push((g.first() as usize, g.len()));
            }
        }
        let firsts = IdxCa::from_vec("".into(), spans.iter().map(|(f, _)| *f as IdxSize).collect());
        let keys = keys_all.take(&firsts)?;
        let entries = lookup(self.state.frame(), &keys, &self.key_names)?;

        let func = self.spec.func.clone();
        let mut func = func.lock().unwrap_or_else(|p| p.into_inner());
        let mut outputs: Vec<DataFrame> = Vec::new();
        let mut writes: Vec<Option<Write>> = Vec::with_capacity(spans.len());
        for (g, (first, len)) in spans.iter().enumerate() {
            let key = self.key_at(&keys, g)?;
            let before = &entries[g];
            let slice = rows.slice(*first as i64, *len);
            let mut out = self.call(&mut **func, env, &key, slice, before.bytes.as_deref(), false)?;
            outputs.push(std::mem::take(&mut out.rows));
            writes.push(decide(before, &mut out));
        }

        // Timed-out keys: in state, timeout < threshold (Spark), after the new data. A key
        // called with data this batch cannot be among them: its timeout was reset by the
        // call, and the setters only accept a batch timestamp + a positive duration or a
        // timestamp at or after the watermark, never one below the threshold.
        let empty_rows = DataFrame::empty_with_schema(&self.input_schema);
        let mut other_writes: Vec<(usize, Write)> = Vec::new();
        let mut others = self.state.empty();
        if let Some(threshold) = self.timeout_threshold(ctx) {
            let on: Vec<Expr> = self.key_names.iter().map(|k| col(k.as_str())).collect();
            let mut args = JoinArgs::new(polars::prelude::JoinType::Anti);
            args.nulls_equal = true;
            others = self
                .state
                .frame()
                .clone()
                .lazy()
                .filter(col(TIMEOUT_COLUMN).lt(lit(threshold)))
                .join(keys.clone().lazy(), on.clone(), on, args)
                .sort(self.key_names.iter().map(|s| s.as_str()).collect::<Vec<_>>(), SortMultipleOptions::default())
                .collect()?;
            let bytes = others.column(STATE_COLUMN)?.binary()?.clone();
            let timeouts = others.column(TIMEOUT_COLUMN)?.i64()?.clone();
            for i in 0..others.height() {
                let key = self.key_at(&others, i)?;
                let before = Entry { present: true, bytes: bytes.get(i).map(|b| b.to_vec()), timeout_ms: timeouts.get(i) };
                let mut out = self.call(&mut **func, env, &key, empty_rows.clone(), before.bytes.as_deref(), true)?;
                outputs.push(std::mem::take(&mut out.rows));
                if let Some(w) = decide(&before, &mut out) {
                    other_writes.push((i, w));
                }
            }
        }
        drop(func);

        // The delta and the new state.
        let batch_writes: Vec<(usize, Write)> =
            writes.into_iter().enumerate().filter_map(|(g, w)| w.map(|w| (g, w))).collect();
        let mut delta = self.delta_rows(&keys, &batch_writes)?;
        delta.vstack_mut_owned(self.delta_rows(&others, &other_writes)?)?;
        let removed = batch_writes.iter().chain(&other_writes).filter(|(_, w)| matches!(w, Write::Delete)).count();
        let state = self.state.store().apply_delta(self.state.frame().clone(), &delta)?;

        let mut output = DataFrame::empty_with_schema(&self.spec.output_schema);
        for o in outputs {
            if o.height() > 0 {
                output.vstack_mut_owned(o)?;
            }
        }
        output.rechunk_mut_par();

        let upserted = (delta.height() - removed) as u64;
        self.state.set_with_delta(state, delta);
        self.progress.record_batch(upserted, removed as u64, dropped, &self.state);
        self.update_next_timeout();
        Ok(output)
    }

    fn should_run_another_batch(&self, new_watermark_ms: i64, ctx: &BatchContext) -> bool {
        self.spec.timeout == GroupStateTimeout::EventTimeTimeout
            && ctx.watermark_for_eviction_ms.is_some_and(|w| new_watermark_ms > w)
    }

    /// Spark: no output column of the user function is bound to the watermark.
    fn output_watermark(&self, _input_ms: i64) -> Option<i64> {
        None
    }

    fn next_processing_time_timeout_ms(&self) -> Option<i64> {
        self.next_processing_timeout_ms
    }

    fn progress(&self) -> StateOperatorProgress {
        self.progress.clone()
    }

    fn take_late_rows(&mut self) -> Vec<DataFrame> {
        std::mem::take(&mut self.late)
    }
}
