//! `StreamingAggregateExec`: incremental group-by aggregation with watermarks
//! (Spark's `StateStoreRestoreExec` + `StateStoreSaveExec`).
//!
//! Each aggregate is split into *partials* that merge associatively (count, sum, min, max,
//! first, last; a mean is a sum and a count). Per batch:
//!
//! ```text
//! input rows ──eval keys; a window key as Spark's Expand: one vectorized copy of the
//!   input per window a row falls in, keyed by window start (Int64 µs)──► partial group-by
//!   ──drop late groups (event time <= watermark for late events)──►
//!   concat(state, partials) ──group-by keys, combine partials──► new state, updated keys
//!   ──evict (event time <= watermark for eviction; append/update only)──►
//! output: append = finalized evicted rows; update = finalized updated rows;
//!         complete = finalized whole state
//! ```
//! A group's event time is its window's `end` for a window key, or the key itself for a
//! timestamp key (Spark's rule). All steps are Polars operations over whole columns. State
//! keeps a window as its start (8 bytes); the `{start, end}` struct is built for output.

use polars::prelude::*;
use polars_plan::utils::{expr_output_name, expr_to_leaf_column_names};

use super::{BatchContext, StateOperatorProgress, StatefulOperator};
use crate::state::{KeyedState, StateStore};
use crate::time::event_time::{evict, micros, EventTimeColumn};
use crate::{OutputMode, Result, SluiceError};

const UPDATED: &str = "__updated";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartialKind {
    Len,
    Count,
    Sum,
    Min,
    Max,
    First,
    Last,
}

#[derive(Debug, Clone, PartialEq)]
struct Partial {
    kind: PartialKind,
    input: Option<Expr>,
}

const TS: &str = "__event_time_us";
const LAST_START: &str = "__last_window_start_us";

#[derive(Clone)]
struct WindowKey {
    name: String,
    spec: crate::api::functions::WindowSpec,
}

/// The state column holding a session's end (Int64 µs); the session key column holds its
/// start.
pub const SESSION_END: &str = "__session_end_us";

#[derive(Clone)]
struct SessionKey {
    name: String,
    spec: crate::api::functions::SessionWindowSpec,
}

/// A planned streaming aggregation: partial, combine and final expressions, schemas.
#[derive(Clone)]
pub struct AggregatePlan {
    key_exprs: Vec<Expr>,
    key_names: Vec<String>,
    window: Option<WindowKey>,
    session: Option<SessionKey>,
    partials: Vec<Partial>,
    partial_exprs: Vec<Expr>,
    combine_exprs: Vec<Expr>,
    final_exprs: Vec<Expr>,
    /// The schema of the state rows: keys, then partial columns `__p<i>`.
    pub state_schema: SchemaRef,
    /// The schema of the output rows: keys, then aggregates.
    pub output_schema: SchemaRef,
    /// Where a state row's event time is, if a watermarked column is grouped on: the
    /// key column (a window key: its start plus the window's length; a session: the state
    /// column [`SESSION_END`]).
    pub event_time_key: Option<EventTimeColumn>,
}

fn pname(i: usize) -> String {
    format!("__p{i}")
}

fn unsupported(e: &Expr) -> SluiceError {
    SluiceError::analysis(format!(
        "{e:?} is not supported in a streaming aggregation: use len(), count, sum, mean, min, \
         max, first or last of a column (combined with arithmetic, casts and literals)"
    ))
}

impl AggregatePlan {
    /// Plans `group_by(keys).agg(aggs)` over input of `input_schema`. `watermark_columns`
    /// are the columns that carry a watermark upstream.
    ///
    /// # Errors
    /// [`SluiceError::Analysis`] for an aggregate that cannot be computed incrementally,
    /// or a column used outside an aggregate that is not a key.
    pub fn new(input_schema: &Schema, keys: &[Expr], aggs: &[Expr], watermark_columns: &[String]) -> Result<Self> {
        let empty = DataFrame::empty_with_schema(input_schema);
        let mut key_names = Vec::new();
        let mut key_exprs = Vec::new();
        let mut window = None;
        let mut session: Option<SessionKey> = None;
        let cartesian = || {
            SluiceError::analysis(
                "Multiple time/session window expressions would result in a cartesian product of rows, \
                 therefore they are currently not supported: group by one window() or session_window()",
            )
        };
        for k in keys {
            let (name, is_window) = match (crate::api::functions::window_spec(k), crate::api::functions::session_window_spec(k)) {
                (Some((spec, name)), _) => {
                    if window.is_some() || session.is_some() {
                        return Err(cartesian());
                    }
                    window = Some(WindowKey { name: name.clone(), spec });
                    (name, true)
                }
                (None, Some((spec, name))) => {
                    if window.is_some() || session.is_some() {
                        return Err(cartesian());
                    }
                    session = Some(SessionKey { name: name.clone(), spec });
                    (name, true)
                }
                (None, None) => (expr_output_name(k)?.to_string(), false),
            };
            if key_names.contains(&name) {
                return Err(SluiceError::analysis(format!("grouping key {name:?} appears twice")));
            }
            if !is_window {
                key_exprs.push(k.clone().alias(name.as_str()));
            }
            key_names.push(name);
        }
        if session.is_some() && keys.len() < 2 {
            return Err(SluiceError::analysis(
                "a session_window() needs another grouping key beside it (Spark: \"Grouping key must be \
                 specified when using sessionWindow\"): group by e.g. session_window(time, gap) and a user column",
            ));
        }
        let key_df = empty.clone().lazy().with_columns(key_exprs.clone()).collect()?;
        if let Some(c) = key_df.columns().iter().find(|c| matches!(c.dtype(), DataType::List(_))) {
            return Err(SluiceError::analysis(format!(
                "grouping key {:?} is a list; group by its elements after exploding it",
                c.name()
            )));
        }

        let mut plan = AggregatePlan {
            key_exprs,
            key_names: key_names.clone(),
            window,
            session,
            partials: vec![],
            partial_exprs: vec![],
            combine_exprs: vec![],
            final_exprs: vec![],
            state_schema: Arc::new(Schema::default()),
            output_schema: Arc::new(Schema::default()),
            event_time_key: None,
        };
        let mut finals = Vec::new();
        for a in aggs {
            let name = expr_output_name(a).map_err(|_| unsupported(a))?;
            let f = plan.rewrite(a, input_schema)?;
            if key_names.iter().any(|k| k == name.as_str()) {
                return Err(SluiceError::analysis(format!(
                    "aggregate output {name:?} has the name of a grouping key; alias it"
                )));
            }
            finals.push(f.alias(name));
        }
        plan.final_exprs = finals;
        for (i, p) in plan.partials.iter().enumerate() {
            let c = col(pname(i));
            plan.combine_exprs.push(
                match p.kind {
                    PartialKind::Len | PartialKind::Count | PartialKind::Sum => c.sum(),
                    PartialKind::Min => c.min(),
                    PartialKind::Max => c.max(),
                    PartialKind::First => c.first(),
                    PartialKind::Last => c.last(),
                }
                .alias(pname(i)),
            );
        }
        // Schemas, by running the plan on no rows.
        let state = plan.partial_aggregate(&empty)?;
        plan.state_schema = state.schema().clone();
        plan.output_schema = plan.finalize(&state)?.schema().clone();

        // The event-time key: a key computed from a watermarked column.
        for (k, name) in keys.iter().zip(&key_names) {
            let (roots, key) = match (&plan.window, &plan.session) {
                (Some(w), _) if &w.name == name => (
                    expr_to_leaf_column_names(&w.spec.time),
                    EventTimeColumn::with_offset(name.as_str(), w.spec.duration_us),
                ),
                (_, Some(s)) if &s.name == name => {
                    (expr_to_leaf_column_names(&s.spec.time), EventTimeColumn::new(SESSION_END))
                }
                _ => (expr_to_leaf_column_names(k), EventTimeColumn::new(name.as_str())),
            };
            if roots.iter().any(|r| watermark_columns.iter().any(|w| w.as_str() == r.as_str())) {
                plan.event_time_key = Some(key);
                break;
            }
        }
        Ok(plan)
    }

    fn partial(&mut self, kind: PartialKind, input: Option<Expr>, input_schema: &Schema) -> Result<Expr> {
        let p = Partial { kind, input: input.clone() };
        if let Some(i) = self.partials.iter().position(|q| *q == p) {
            return Ok(col(pname(i)));
        }
        let i = self.partials.len();
        let e = match (kind, input) {
            (PartialKind::Len, _) => len().cast(DataType::Int64),
            (PartialKind::Count, Some(e)) => e.count().cast(DataType::Int64),
            (PartialKind::Sum, Some(e)) => {
                let dt = DataFrame::empty_with_schema(input_schema)
                    .lazy()
                    .select([e.clone().alias("x")])
                    .collect_schema()?
                    .get("x")
                    .cloned()
                    .unwrap_or(DataType::Null);
                let target = if dt.is_float() {
                    DataType::Float64
                } else if dt.is_integer() || dt == DataType::Boolean {
                    DataType::Int64
                } else {
                    return Err(SluiceError::analysis(format!(
                        "sum/mean need a numeric column, but {e:?} is of type {dt}"
                    )));
                };
                e.cast(target).sum()
            }
            (PartialKind::Min, Some(e)) => e.min(),
            (PartialKind::Max, Some(e)) => e.max(),
            (PartialKind::First, Some(e)) => e.first(),
            (PartialKind::Last, Some(e)) => e.last(),
            _ => return Err(SluiceError::Internal("partial without input".into())),
        };
        self.partials.push(p);
        self.partial_exprs.push(e.alias(pname(i)));
        Ok(col(pname(i)))
    }

    /// Rewrites an aggregation expression into a final expression over partial columns.
    fn rewrite(&mut self, e: &Expr, schema: &Schema) -> Result<Expr> {
        let null_if_empty = |cnt: Expr, v: Expr| when(cnt.eq(lit(0i64))).then(lit(NULL)).otherwise(v);
        Ok(match e {
            Expr::Alias(inner, _) => self.rewrite(inner, schema)?,
            Expr::Len => self.partial(PartialKind::Len, None, schema)?,
            Expr::Agg(a) => match a {
                AggExpr::Count { input, include_nulls: false } => {
                    self.partial(PartialKind::Count, Some(input.as_ref().clone()), schema)?
                }
                AggExpr::Count { include_nulls: true, .. } => self.partial(PartialKind::Len, None, schema)?,
                AggExpr::Sum(input) => {
                    let s = self.partial(PartialKind::Sum, Some(input.as_ref().clone()), schema)?;
                    let c = self.partial(PartialKind::Count, Some(input.as_ref().clone()), schema)?;
                    null_if_empty(c, s)
                }
                AggExpr::Mean(input) => {
                    let s = self.partial(PartialKind::Sum, Some(input.as_ref().clone()), schema)?;
                    let c = self.partial(PartialKind::Count, Some(input.as_ref().clone()), schema)?;
                    null_if_empty(
                        c.clone(),
                        s.cast(DataType::Float64) / c.cast(DataType::Float64),
                    )
                }
                AggExpr::Min { input, .. } => self.partial(PartialKind::Min, Some(input.as_ref().clone()), schema)?,
                AggExpr::Max { input, .. } => self.partial(PartialKind::Max, Some(input.as_ref().clone()), schema)?,
                AggExpr::First(input) => self.partial(PartialKind::First, Some(input.as_ref().clone()), schema)?,
                AggExpr::Last(input) => self.partial(PartialKind::Last, Some(input.as_ref().clone()), schema)?,
                _ => return Err(unsupported(e)),
            },
            Expr::Cast { expr, dtype, options } => Expr::Cast {
                expr: Arc::new(self.rewrite(expr, schema)?),
                dtype: dtype.clone(),
                options: *options,
            },
            Expr::BinaryExpr { left, op, right } => Expr::BinaryExpr {
                left: Arc::new(self.rewrite(left, schema)?),
                op: *op,
                right: Arc::new(self.rewrite(right, schema)?),
            },
            Expr::Ternary { predicate, truthy, falsy } => Expr::Ternary {
                predicate: Arc::new(self.rewrite(predicate, schema)?),
                truthy: Arc::new(self.rewrite(truthy, schema)?),
                falsy: Arc::new(self.rewrite(falsy, schema)?),
            },
            Expr::Function { input, function } => Expr::Function {
                input: input.iter().map(|i| self.rewrite(i, schema)).collect::<Result<_>>()?,
                function: function.clone(),
            },
            Expr::Literal(_) => e.clone(),
            Expr::Column(name) if self.key_names.iter().any(|k| k == name.as_str()) => e.clone(),
            Expr::Column(name) => {
                return Err(SluiceError::analysis(format!(
                    "column {name:?} is neither a grouping key nor inside an aggregate function; \
                     add it to group_by or aggregate it (e.g. col(\"{name}\").first())"
                )))
            }
            _ => return Err(unsupported(e)),
        })
    }

    /// The grouping key columns' names.
    pub fn key_names(&self) -> &[String] {
        &self.key_names
    }

    /// For a `group_by` with a [`session_window`](crate::api::functions::session_window) key:
    /// the key's column name (holding the session start, Int64 µs, in state) and the gap
    /// in µs.
    pub fn session_window(&self) -> Option<(&str, i64)> {
        self.session.as_ref().map(|s| (s.name.as_str(), s.spec.gap_us))
    }

    /// Expressions combining partial columns `__p<i>` of rows of one group (sum of counts
    /// and sums, min, max, first, last), one per partial, named as the partial.
    pub(crate) fn combine_exprs(&self) -> &[Expr] {
        &self.combine_exprs
    }

    /// Evaluates keys and the partial aggregates of `input`: one row per key. A window key
    /// is computed as Spark's Expand: for each of the `ceil(length / slide)` windows a row
    /// may fall in, a copy of the input keyed by that window's start (Int64 µs), keeping
    /// the rows the window contains; rows with a null event time get no window. A session
    /// key is the row's event time (Int64 µs, the start of its own session) and the rows
    /// get a last column [`SESSION_END`] = start + gap (µs).
    pub fn partial_aggregate(&self, input: &DataFrame) -> Result<DataFrame> {
        let mut lf = input.clone().lazy();
        if !self.key_exprs.is_empty() {
            lf = lf.with_columns(self.key_exprs.clone());
        }
        if let Some(w) = &self.window {
            let (d, s, o) = (w.spec.duration_us, w.spec.slide_us, w.spec.start_us);
            let ts = micros(w.spec.time.clone());
            // Non-negative modulo, whatever Polars' sign convention for `%`.
            let rem = ((col(TS) - lit(o)) % lit(s) + lit(s)) % lit(s);
            let base = lf
                .with_column(ts.alias(TS))
                .filter(col(TS).is_not_null())
                .with_column((col(TS) - rem).alias(LAST_START));
            let n = (d + s - 1) / s;
            lf = if n == 1 {
                base.with_column(col(LAST_START).alias(w.name.as_str()))
            } else {
                let copies: Vec<LazyFrame> = (0..n)
                    .map(|i| {
                        base.clone()
                            .with_column((col(LAST_START) - lit(i * s)).alias(w.name.as_str()))
                            .filter(col(TS).lt(col(w.name.as_str()) + lit(d)))
                    })
                    .collect();
                concat(copies, UnionArgs::default())?
            };
        }
        let mut aggs = self.partial_exprs.clone();
        if let Some(s) = &self.session {
            let ts = micros(s.spec.time.clone());
            lf = lf.with_column(ts.alias(s.name.as_str())).filter(col(s.name.as_str()).is_not_null());
            aggs.push((col(s.name.as_str()) + lit(s.spec.gap_us)).max().alias(SESSION_END));
        }
        let keys: Vec<Expr> = self.key_names.iter().map(|k| col(k.as_str())).collect();
        Ok(lf.group_by(keys).agg(aggs).collect()?)
    }

    /// Final output rows (keys, aggregates) for state rows.
    pub fn finalize(&self, state: &DataFrame) -> Result<DataFrame> {
        let dt = DataType::Datetime(TimeUnit::Microseconds, None);
        let mut exprs: Vec<Expr> = self
            .key_names
            .iter()
            .map(|k| match (&self.window, &self.session) {
                (Some(w), _) if &w.name == k => as_struct(vec![
                    col(k.as_str()).cast(dt.clone()).alias("start"),
                    (col(k.as_str()) + lit(w.spec.duration_us)).cast(dt.clone()).alias("end"),
                ])
                .alias(k.as_str()),
                (_, Some(s)) if &s.name == k => as_struct(vec![
                    col(k.as_str()).cast(dt.clone()).alias("start"),
                    col(SESSION_END).cast(dt.clone()).alias("end"),
                ])
                .alias(k.as_str()),
                _ => col(k.as_str()),
            })
            .collect();
        exprs.extend(self.final_exprs.iter().cloned());
        Ok(state.clone().lazy().select(exprs).collect()?)
    }

    /// Merges partial rows into state: returns (new state, updated rows).
    fn merge(&self, state: &DataFrame, partial: &DataFrame) -> Result<(DataFrame, DataFrame)> {
        let keys: Vec<Expr> = self.key_names.iter().map(|k| col(k.as_str())).collect();
        let mut aggs = self.combine_exprs.clone();
        aggs.push(col(UPDATED).max());
        let merged = concat(
            [
                state.clone().lazy().with_column(lit(false).alias(UPDATED)),
                partial.clone().lazy().with_column(lit(true).alias(UPDATED)),
            ],
            UnionArgs::default(),
        )?
        .group_by(keys)
        .agg(aggs)
        .collect()?;
        let mask = merged.column(UPDATED)?.bool()?.clone();
        let new_state = merged.drop(UPDATED)?;
        let updated = new_state.filter(&mask)?;
        Ok((new_state, updated))
    }

    /// [`partial_aggregate`](Self::partial_aggregate) of `input` without the groups that
    /// are late: event time (per `key`) at or before `late_watermark_ms`, the previous
    /// batch's watermark. Returns the partials and the number of late groups dropped
    /// (Spark counts groups after partial aggregation). Without key or watermark, nothing
    /// is late.
    ///
    /// # Errors
    /// As `partial_aggregate`.
    pub fn partial_aggregate_on_time(
        &self,
        input: &DataFrame,
        key: Option<&EventTimeColumn>,
        late_watermark_ms: Option<i64>,
    ) -> Result<(DataFrame, u64)> {
        let partial = self.partial_aggregate(input)?;
        match key {
            Some(key) => key.drop_late(partial, late_watermark_ms),
            None => Ok((partial, 0)),
        }
    }
}

/// The physical streaming aggregation operator.
pub struct StreamingAggregateExec {
    plan: AggregatePlan,
    mode: OutputMode,
    state: KeyedState,
    progress: StateOperatorProgress,
}

impl StreamingAggregateExec {
    /// A new operator with empty state in store `store_id` (call
    /// [`StatefulOperator::restore`] to load).
    pub fn new(plan: AggregatePlan, store_id: usize, partitions: usize, mode: OutputMode) -> Self {
        let state = KeyedState::new(StateStore {
            store_id,
            partitions,
            key_columns: plan.key_names.clone(),
            schema: plan.state_schema.clone(),
            snapshot_interval: crate::state::DEFAULT_SNAPSHOT_INTERVAL,
        });
        StreamingAggregateExec { plan, mode, state, progress: StateOperatorProgress::new("stateStoreSave") }
    }

    fn watermarked(&self) -> Option<&EventTimeColumn> {
        match self.mode {
            OutputMode::Complete => None,
            _ => self.plan.event_time_key.as_ref(),
        }
    }
}

impl StatefulOperator for StreamingAggregateExec {
    fn name(&self) -> &'static str {
        "StreamingAggregateExec"
    }

    fn state_description(&self) -> serde_json::Value {
        serde_json::json!({
            "operator": self.name(),
            "keys": self.plan.key_names,
            "window": self.plan.window.as_ref().map(|w| {
                serde_json::json!({"column": w.name, "durationUs": w.spec.duration_us, "slideUs": w.spec.slide_us, "startUs": w.spec.start_us})
            }),
            "stateSchema": self.plan.state_schema.iter().map(|(n, d)| format!("{n}: {d}")).collect::<Vec<_>>(),
        })
    }

    fn states(&self) -> Vec<&KeyedState> {
        vec![&self.state]
    }

    fn states_mut(&mut self) -> Vec<&mut KeyedState> {
        vec![&mut self.state]
    }

    fn process(&mut self, mut inputs: Vec<DataFrame>, ctx: &BatchContext) -> Result<DataFrame> {
        let input = inputs.pop().ok_or_else(|| SluiceError::Internal("aggregate without input".into()))?;
        let (partial, dropped) =
            self.plan.partial_aggregate_on_time(&input, self.watermarked(), ctx.watermark_for_late_events_ms)?;
        let (state, updated) = if partial.height() > 0 {
            self.plan.merge(self.state.frame(), &partial)?
        } else {
            (self.state.frame().clone(), self.state.empty())
        };
        let (state, evicted, upserts) =
            evict(state, updated.clone(), self.watermarked(), ctx.watermark_for_eviction_ms)?;
        let output = match self.mode {
            OutputMode::Append => self.plan.finalize(&evicted)?,
            OutputMode::Update => self.plan.finalize(&updated)?,
            OutputMode::Complete => self.plan.finalize(&state)?,
        };
        self.state.set(state, &upserts, &[&evicted])?;
        self.progress.record_batch(updated.height() as u64, evicted.height() as u64, dropped, &self.state);
        Ok(output)
    }

    fn should_run_another_batch(&self, new_watermark_ms: i64, ctx: &BatchContext) -> bool {
        self.watermarked().is_some()
            && ctx.watermark_for_eviction_ms.is_some_and(|w| new_watermark_ms > w)
    }

    fn progress(&self) -> StateOperatorProgress {
        self.progress.clone()
    }
}
