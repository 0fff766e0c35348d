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
use std::sync::{Arc, Mutex};

use polars::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::time::interval::parse_interval_ms;
use crate::{OutputMode, Result, SluiceError};

mod exec;
pub use exec::FlatMapGroupsWithStateExec;

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
/// [`flat_map_groups_with_state`](crate::api::GroupedStreamingDataFrame::flat_map_groups_with_state)).
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

