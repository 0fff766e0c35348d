//! Arbitrary stateful processing: `flat_map_groups_with_state` and
//! `map_groups_with_state` with [`GroupState`] and timeouts (Spark's
//! `FlatMapGroupsWithStateExec`).
//!
//! ```text
//! input rows ──drop late rows (event-time timeout only: event time <= watermark for late
//!   events)──► key columns, stable sort by key ──► one zero-copy slice per key
//!   ──left-join the distinct keys with state──► per key: f(key, rows, &mut GroupState<S>)
//!   ──► state rows whose timeout < threshold (batch timestamp for processing time, the
//!   eviction watermark for event time), in key order: f(key, no rows, timed out)
//!   ──► output = every call's rows (the declared output schema);
//!       delta = keys whose state or timeout changed (Spark's rule below)
//! ```
//! State is one row per key: the key columns, `__state` (the user's `S` as JSON, null when
//! only a timeout is kept) and `__timeout_ms` (null for none), in the partitioned state
//! store, so it is checkpointed and restored like any operator's.
//!
//! After each call, as in Spark: if the state was removed and no timeout is set, the key's
//! row is deleted; otherwise it is written when the state was updated or removed or the
//! timeout changed. The timeout is reset on every call: a call that does not set it again
//! leaves the key without timeout.
//!
//! A user function that returns an error or panics stops the query with
//! [`SluiceError::User`] naming the key and the batch; nothing of that batch is committed.

use std::any::type_name;
use std::fmt;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use polars::prelude::*;
use polars_plan::utils::expr_output_name;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sluice_checkpoint::Checkpoint;

use crate::interval::parse_interval_ms;
use crate::operator::{BatchContext, StateOperatorProgress, StatefulOperator};
use crate::state::{StateStore, DELETED_COLUMN};
use crate::{OutputMode, Result, SluiceError};

/// State column holding the serialized user state (JSON bytes; null when only a timeout
/// is kept).
pub const STATE_COLUMN: &str = "__state";
/// State column holding the key's timeout, ms since the epoch (null: no timeout).
pub const TIMEOUT_COLUMN: &str = "__timeout_ms";

/// When keys time out (Spark's `GroupStateTimeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupStateTimeout {
    /// Keys never time out (`NoTimeout`).
    NoTimeout,
    /// A key times out when a batch's processing time passes the timeout set with
    /// [`GroupState::set_timeout_duration`] (`ProcessingTimeTimeout`).
    ProcessingTimeTimeout,
    /// A key times out when the watermark passes the timestamp set with
    /// [`GroupState::set_timeout_timestamp`] (`EventTimeTimeout`); needs a watermark.
    EventTimeTimeout,
}

impl fmt::Display for GroupStateTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GroupStateTimeout::NoTimeout => "NoTimeout",
            GroupStateTimeout::ProcessingTimeTimeout => "ProcessingTimeTimeout",
            GroupStateTimeout::EventTimeTimeout => "EventTimeTimeout",
        })
    }
}

/// The key of a group: one value per grouping expression, in `group_by` order.
#[derive(Debug, Clone)]
pub struct GroupKey {
    names: Arc<[String]>,
    values: Vec<AnyValue<'static>>,
}

impl GroupKey {
    /// The key's values, one per grouping expression.
    pub fn values(&self) -> &[AnyValue<'static>] {
        &self.values
    }
    /// The grouping columns' names.
    pub fn names(&self) -> &[String] {
        &self.names
    }
    /// The `i`-th value, if any.
    pub fn get(&self, i: usize) -> Option<&AnyValue<'static>> {
        self.values.get(i)
    }
    /// The `i`-th value as a string (`None` when it is null or not a string).
    pub fn str(&self, i: usize) -> Option<&str> {
        match self.values.get(i)? {
            AnyValue::String(s) => Some(s),
            AnyValue::StringOwned(s) => Some(s.as_str()),
            _ => None,
        }
    }
    /// The `i`-th value as an `i64` (`None` when it is null or not an integer).
    pub fn i64(&self, i: usize) -> Option<i64> {
        self.values.get(i)?.extract::<i64>()
    }
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (n, v)) in self.names.iter().zip(&self.values).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match v {
                AnyValue::String(s) => write!(f, "{n}={s:?}")?,
                AnyValue::StringOwned(s) => write!(f, "{n}={:?}", s.as_str())?,
                other => write!(f, "{n}={other}")?,
            }
        }
        Ok(())
    }
}

/// The state of one group, handed to the user function (Spark's `GroupState[S]`).
///
/// The value `S` is stored as JSON in the state store. The timeout is reset on every
/// call: set it again in each call that should keep it.
#[derive(Debug)]
pub struct GroupState<S> {
    value: Option<S>,
    updated: bool,
    removed: bool,
    timed_out: bool,
    timeout_ms: Option<i64>,
    env: CallEnv,
}

impl<S> GroupState<S> {
    /// Whether the key has state.
    pub fn exists(&self) -> bool {
        self.value.is_some()
    }
    /// The state.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] when there is none (Spark's
    /// `NoSuchElementException`); use [`get_option`](Self::get_option) when it may be absent.
    pub fn get(&self) -> Result<&S> {
        self.value.as_ref().ok_or_else(|| {
            SluiceError::InvalidArgument(
                "GroupState::get: state is either not defined or has already been removed; use get_option()".into(),
            )
        })
    }
    /// The state, if any.
    pub fn get_option(&self) -> Option<&S> {
        self.value.as_ref()
    }
    /// Sets the state (written to the state store after the call).
    pub fn update(&mut self, value: S) {
        self.value = Some(value);
        self.updated = true;
        self.removed = false;
    }
    /// Removes the state (the key's row is deleted unless a timeout is set).
    pub fn remove(&mut self) {
        self.value = None;
        self.updated = false;
        self.removed = true;
    }
    /// Whether this call is for a key that timed out (then the call has no rows).
    pub fn has_timed_out(&self) -> bool {
        self.timed_out
    }
    /// Times the key out once a batch's processing time passes now + `duration_ms`
    /// (the batch's timestamp plus the duration), unless it gets data before.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] unless the timeout is
    /// [`GroupStateTimeout::ProcessingTimeTimeout`], or for a duration `<= 0` (Spark's
    /// rules).
    pub fn set_timeout_duration_ms(&mut self, duration_ms: i64) -> Result<()> {
        if self.env.timeout != GroupStateTimeout::ProcessingTimeTimeout {
            return Err(SluiceError::InvalidArgument(format!(
                "Cannot set timeout duration without enabling processing time timeout in {} \
                 (the query uses {})",
                self.env.op_name, self.env.timeout
            )));
        }
        if duration_ms <= 0 {
            return Err(SluiceError::InvalidArgument(format!(
                "Timeout duration must be positive, not {duration_ms} ms"
            )));
        }
        self.timeout_ms = Some(self.env.batch_timestamp_ms.saturating_add(duration_ms));
        Ok(())
    }
    /// [`set_timeout_duration_ms`](Self::set_timeout_duration_ms) with a Spark interval
    /// string (`"30 seconds"`).
    ///
    /// # Errors
    /// As `set_timeout_duration_ms`, and for an unparsable interval.
    pub fn set_timeout_duration(&mut self, duration: &str) -> Result<()> {
        let ms = parse_interval_ms(duration)?;
        self.set_timeout_duration_ms(ms)
    }
    /// Times the key out once the watermark passes `timestamp_ms` (ms since the epoch),
    /// unless it gets data before.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] unless the timeout is
    /// [`GroupStateTimeout::EventTimeTimeout`], for a timestamp `<= 0`, or one earlier than
    /// the current watermark (Spark: "Timeout timestamp (..) cannot be earlier than the
    /// current watermark (..)").
    pub fn set_timeout_timestamp(&mut self, timestamp_ms: i64) -> Result<()> {
        if self.env.timeout != GroupStateTimeout::EventTimeTimeout {
            return Err(SluiceError::InvalidArgument(format!(
                "Cannot set timeout timestamp without enabling event time timeout in {} \
                 (the query uses {})",
                self.env.op_name, self.env.timeout
            )));
        }
        if timestamp_ms <= 0 {
            return Err(SluiceError::InvalidArgument("Timeout timestamp must be positive".into()));
        }
        if let Some(wm) = self.env.watermark_ms {
            if timestamp_ms < wm {
                return Err(SluiceError::InvalidArgument(format!(
                    "Timeout timestamp ({timestamp_ms}) cannot be earlier than the current watermark ({wm})"
                )));
            }
        }
        self.timeout_ms = Some(timestamp_ms);
        Ok(())
    }
    /// The timeout set in this call, ms since the epoch.
    pub fn timeout_timestamp_ms(&self) -> Option<i64> {
        self.timeout_ms
    }
    /// The watermark of this batch (the eviction watermark), ms since the epoch.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] when the query has no watermark.
    pub fn current_watermark_ms(&self) -> Result<i64> {
        self.env.watermark_ms.ok_or_else(|| {
            SluiceError::InvalidArgument(format!(
                "Cannot get event time watermark timestamp without setting watermark before {}: \
                 call with_watermark() on the input",
                self.env.op_name
            ))
        })
    }
    /// The processing time of this batch (its timestamp), ms since the epoch.
    pub fn current_processing_time_ms(&self) -> i64 {
        self.env.batch_timestamp_ms
    }
}

/// What a call knows about its batch.
#[derive(Debug, Clone, Copy)]
pub struct CallEnv {
    timeout: GroupStateTimeout,
    batch_timestamp_ms: i64,
    watermark_ms: Option<i64>,
    op_name: &'static str,
    batch_id: u64,
}

/// What one call of the user function left behind.
pub struct CallOutput {
    rows: DataFrame,
    exists: bool,
    updated: bool,
    removed: bool,
    timeout_ms: Option<i64>,
    /// The serialized state when it was updated.
    bytes: Option<Vec<u8>>,
}

/// The user function with its state type erased (built by
/// [`flat_map_groups_with_state`](crate::GroupedStreamingDataFrame::flat_map_groups_with_state)).
pub trait GroupFunction: Send {
    /// Decodes `state`, calls the function, encodes the state if updated.
    ///
    /// # Errors
    /// The function's error, or a state that does not decode as the function's type.
    fn call(&mut self, env: CallEnv, key: &GroupKey, rows: DataFrame, state: Option<&[u8]>, timed_out: bool)
        -> Result<CallOutput>;
}

/// A shared, type-erased user function.
pub type GroupFunctionRef = Arc<Mutex<Box<dyn GroupFunction>>>;

struct TypedGroupFunction<S, F> {
    f: F,
    _state: PhantomData<fn() -> S>,
}

impl<S, F> GroupFunction for TypedGroupFunction<S, F>
where
    S: Serialize + DeserializeOwned + 'static,
    F: FnMut(&GroupKey, DataFrame, &mut GroupState<S>) -> Result<DataFrame> + Send,
{
    fn call(
        &mut self,
        env: CallEnv,
        key: &GroupKey,
        rows: DataFrame,
        state: Option<&[u8]>,
        timed_out: bool,
    ) -> Result<CallOutput> {
        let value = match state {
            Some(b) => Some(serde_json::from_slice::<S>(b).map_err(|e| {
                SluiceError::InvalidArgument(format!(
                    "the stored state cannot be read as {}: {e}; did the state type change? \
                     Use a new checkpoint location",
                    type_name::<S>()
                ))
            })?),
            None => None,
        };
        let mut gs = GroupState { value, updated: false, removed: false, timed_out, timeout_ms: None, env };
        let rows = (self.f)(key, rows, &mut gs)?;
        let bytes = match (&gs.value, gs.updated) {
            (Some(v), true) => Some(serde_json::to_vec(v).map_err(|e| {
                SluiceError::InvalidArgument(format!("the state cannot be serialized as JSON: {e}"))
            })?),
            _ => None,
        };
        Ok(CallOutput {
            rows,
            exists: gs.value.is_some(),
            updated: gs.updated,
            removed: gs.removed,
            timeout_ms: gs.timeout_ms,
            bytes,
        })
    }
}

/// Wraps a typed user function.
pub fn group_function<S, F>(f: F) -> GroupFunctionRef
where
    S: Serialize + DeserializeOwned + 'static,
    F: FnMut(&GroupKey, DataFrame, &mut GroupState<S>) -> Result<DataFrame> + Send + 'static,
{
    Arc::new(Mutex::new(Box::new(TypedGroupFunction { f, _state: PhantomData })))
}

/// A `flat_map_groups_with_state` / `map_groups_with_state` node of the plan.
#[derive(Clone)]
pub struct GroupsWithStateSpec {
    /// Grouping expressions.
    pub keys: Vec<Expr>,
    /// The user function.
    pub func: GroupFunctionRef,
    /// The schema of the rows the function returns.
    pub output_schema: SchemaRef,
    /// The operator's output mode (`map_groups_with_state`: Update).
    pub output_mode: OutputMode,
    /// The timeout kind.
    pub timeout: GroupStateTimeout,
    /// `true` for `map_groups_with_state` (exactly one row per call).
    pub is_map: bool,
}

impl GroupsWithStateSpec {
    /// Spark's name of the operation, for messages.
    pub fn op_name(&self) -> &'static str {
        if self.is_map {
            "mapGroupsWithState"
        } else {
            "flatMapGroupsWithState"
        }
    }
}

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
    store: StateStore,
    state: DataFrame,
    next_processing_timeout_ms: Option<i64>,
    pending_delta: Option<DataFrame>,
    progress: StateOperatorProgress,
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
        let store = StateStore {
            op_id: store_id,
            partitions,
            key_columns: key_names.clone(),
            schema: Arc::new(schema),
            snapshot_interval: crate::state::DEFAULT_SNAPSHOT_INTERVAL,
        };
        let state = store.empty();
        Ok(FlatMapGroupsWithStateExec {
            spec,
            key_exprs,
            key_names: key_names.into(),
            input_schema,
            event_time_column,
            store,
            state,
            next_processing_timeout_ms: None,
            pending_delta: None,
            progress: StateOperatorProgress::new("flatMapGroupsWithState"),
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
            "stateSchema": self.store.schema.iter().map(|(n, d)| format!("{n}: {d}")).collect::<Vec<_>>(),
        })
    }

    fn state_store_ids(&self) -> Vec<usize> {
        vec![self.store.op_id]
    }

    fn restore(&mut self, ckpt: &Checkpoint, version: u64) -> Result<()> {
        self.state = self.store.load(ckpt, version)?;
        self.update_next_timeout();
        Ok(())
    }

    fn process(&mut self, mut inputs: Vec<DataFrame>, ctx: &BatchContext) -> Result<DataFrame> {
        let mut input = inputs.pop().ok_or_else(|| SluiceError::Internal("flatMapGroupsWithState without input".into()))?;
        // Late rows: only under an event-time timeout (Spark).
        let mut dropped = 0u64;
        if let (GroupStateTimeout::EventTimeTimeout, Some(c), Some(wm)) =
            (self.spec.timeout, &self.event_time_column, ctx.watermark_for_late_events_ms)
        {
            let t = input
                .column(c)?
                .cast(&DataType::Datetime(TimeUnit::Microseconds, None))?
                .cast(&DataType::Int64)?;
            let late = t.i64()?.lt_eq(wm.saturating_mul(1000)).fill_null_with_values(false)?;
            dropped = late.sum().unwrap_or(0) as u64;
            if dropped > 0 {
                input = input.filter(&!&late)?;
            }
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
        let entries = lookup(&self.state, &keys, &self.key_names)?;

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
        let mut others = self.store.empty();
        if let Some(threshold) = self.timeout_threshold(ctx) {
            let on: Vec<Expr> = self.key_names.iter().map(|k| col(k.as_str())).collect();
            let mut args = JoinArgs::new(polars::prelude::JoinType::Anti);
            args.nulls_equal = true;
            others = self
                .state
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
        let state = self.store.apply_delta(self.state.clone(), &delta)?;

        let mut output = DataFrame::empty_with_schema(&self.spec.output_schema);
        for o in outputs {
            if o.height() > 0 {
                output.vstack_mut_owned(o)?;
            }
        }
        output.rechunk_mut_par();

        self.progress.record_batch((delta.height() - removed) as u64, removed as u64, dropped, &state);
        self.state = state;
        self.pending_delta = Some(delta);
        self.update_next_timeout();
        Ok(output)
    }

    fn commit(&mut self, ckpt: &Checkpoint, version: u64) -> Result<Vec<(usize, Vec<usize>)>> {
        self.progress.num_state_partitions = self.store.partitions as u64;
        Ok(vec![self.store.commit_batch(ckpt, version, self.pending_delta.take(), &self.state)?])
    }

    fn purge(&self, ckpt: &Checkpoint, keep_from_version: u64) -> Result<()> {
        self.store.purge(ckpt, keep_from_version)
    }

    fn should_run_another_batch(&self, new_watermark_ms: i64, ctx: &BatchContext) -> bool {
        self.spec.timeout == GroupStateTimeout::EventTimeTimeout
            && ctx.watermark_for_eviction_ms.is_some_and(|w| new_watermark_ms > w)
    }

    fn next_processing_time_timeout_ms(&self) -> Option<i64> {
        self.next_processing_timeout_ms
    }

    fn progress(&self) -> StateOperatorProgress {
        self.progress.clone()
    }
}
