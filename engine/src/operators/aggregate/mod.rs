//! `StreamingAggregateExec`: incremental group-by aggregation with watermarks
//! (Spark's `StateStoreRestoreExec` + `StateStoreSaveExec`).
//!
//! Each aggregate is split into *partials* that merge associatively (count, sum, min, max,
//! first, last; a mean is a sum and a count; a standard deviation a count, a mean and M2;
//! see [`functions`] for every function and its state). Per batch:
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

pub mod functions;

use functions::SluiceAgg;

use super::{BatchContext, StateOperatorProgress, StatefulOperator};
use crate::state::{KeyedState, StateStore};
use crate::time::event_time::{evict, micros, EventTimeColumn};
use crate::{OutputMode, Result, SluiceError};

const UPDATED: &str = "__updated";

/// One partial column of the state: what it holds, from which input expressions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartialKind {
    /// Rows (Int64).
    Len,
    /// Non-null values (Int64).
    Count,
    /// Sum (Int64 or Float64).
    Sum,
    Min,
    Max,
    /// First value, nulls kept.
    First,
    /// Last value, nulls kept.
    Last,
    FirstNonNull,
    LastNonNull,
    /// Rows where the predicate is true (Int64, never null).
    CountIf,
    /// Mean of the non-null values (Float64); merged weighted by the `Count` partial at
    /// the given index.
    Mean { count: usize },
    /// Sum of squared deviations from the mean (Float64; Chan's merge with the count and
    /// mean partials at the given indexes).
    M2 { count: usize, mean: usize },
    /// The non-null values (List).
    List,
    /// The distinct non-null values (List).
    Set,
    /// The smallest / largest ordering value.
    MinOrd,
    MaxOrd,
    /// The value at the smallest / largest ordering value (the `MinOrd` / `MaxOrd`
    /// partial at the given index).
    MinByValue { ord: usize },
    MaxByValue { ord: usize },
    /// A HyperLogLog++ sketch of the given precision (Binary).
    Sketch { precision: u8 },
}

#[derive(Debug, Clone, PartialEq)]
struct Partial {
    kind: PartialKind,
    input: Option<Expr>,
    /// The ordering expression of `min_by` / `max_by`.
    by: Option<Expr>,
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
    /// The output column that carries event time downstream (the event-time key: a window
    /// struct, a session struct or a timestamp) and the watermarked input column it comes
    /// from (Spark keeps the watermark metadata on the grouping key).
    pub event_time_output: Option<(String, String)>,
}

fn pname(i: usize) -> String {
    format!("__p{i}")
}

/// The type `e` evaluates to over `schema`.
fn dtype_of(e: &Expr, schema: &Schema) -> Result<DataType> {
    Ok(DataFrame::empty_with_schema(schema)
        .lazy()
        .select([e.clone().alias("x")])
        .collect_schema()?
        .get("x")
        .cloned()
        .unwrap_or(DataType::Null))
}

/// Checks that `e` is numeric (or boolean) for `what`; returns the type its sum has
/// (Spark's: Int64 for integers and booleans, Float64 for floats).
fn numeric(e: &Expr, schema: &Schema, what: &str) -> Result<DataType> {
    let dt = dtype_of(e, schema)?;
    if dt.is_float() {
        Ok(DataType::Float64)
    } else if dt.is_integer() || dt == DataType::Boolean || dt == DataType::Null {
        Ok(DataType::Int64)
    } else {
        Err(SluiceError::analysis(format!("{what} needs a numeric column, but {e:?} is of type {dt}")))
    }
}

fn stable_sort(descending: bool) -> SortMultipleOptions {
    SortMultipleOptions::default().with_maintain_order(true).with_order_descending(descending).with_nulls_last(true)
}

/// The expression computing partial `kind` from a batch's rows of one group.
fn partial_expr(kind: PartialKind, input: Option<Expr>, by: Option<Expr>, schema: &Schema) -> Result<Expr> {
    let need = |x: Option<Expr>| x.ok_or_else(|| SluiceError::Internal("partial without input".into()));
    Ok(match kind {
        PartialKind::Len => len().cast(DataType::Int64),
        PartialKind::Count => need(input)?.count().cast(DataType::Int64),
        PartialKind::Sum => {
            let e = need(input)?;
            let target = numeric(&e, schema, "sum/mean")?;
            e.cast(target).sum()
        }
        PartialKind::Min => need(input)?.min(),
        PartialKind::Max => need(input)?.max(),
        PartialKind::First => need(input)?.first(),
        PartialKind::Last => need(input)?.last(),
        PartialKind::FirstNonNull => need(input)?.first_non_null(),
        PartialKind::LastNonNull => need(input)?.last_non_null(),
        PartialKind::CountIf => {
            let p = need(input)?;
            let dt = dtype_of(&p, schema)?;
            if dt != DataType::Boolean && dt != DataType::Null {
                return Err(SluiceError::analysis(format!("count_if needs a boolean predicate, but {p:?} is of type {dt}")));
            }
            p.cast(DataType::Int64).sum()
        }
        PartialKind::Mean { .. } => need(input)?.cast(DataType::Float64).mean(),
        PartialKind::M2 { .. } => {
            let e = need(input)?.cast(DataType::Float64);
            // n * population variance = the sum of squared deviations; null without values.
            e.clone().var(0) * e.count().cast(DataType::Float64)
        }
        PartialKind::List => need(input)?.drop_nulls().implode(true),
        PartialKind::Set => need(input)?.drop_nulls().unique_stable().implode(true),
        PartialKind::MinOrd => need(input)?.min(),
        PartialKind::MaxOrd => need(input)?.max(),
        PartialKind::MinByValue { .. } | PartialKind::MaxByValue { .. } => {
            let (value, ord) = (need(input)?, need(by)?);
            let keep = ord.clone().is_not_null();
            let descending = matches!(kind, PartialKind::MaxByValue { .. });
            value.filter(keep.clone()).sort_by([ord.filter(keep)], stable_sort(descending)).first()
        }
        // The distinct values; turned into a sketch after the group-by.
        PartialKind::Sketch { .. } => need(input)?.drop_nulls().unique().implode(true),
    })
}

/// The expression merging the partial column `i` of kind `kind` over the rows of one
/// group (the state's row first, then the batch's), named as the partial.
fn combine_expr(kind: PartialKind, i: usize) -> Expr {
    let c = col(pname(i));
    let f64_col = |j: usize| col(pname(j)).cast(DataType::Float64);
    let e = match kind {
        PartialKind::Len | PartialKind::Count | PartialKind::Sum | PartialKind::CountIf => c.sum(),
        PartialKind::Min | PartialKind::MinOrd => c.min(),
        PartialKind::Max | PartialKind::MaxOrd => c.max(),
        PartialKind::First => c.first(),
        PartialKind::Last => c.last(),
        PartialKind::FirstNonNull => c.first_non_null(),
        PartialKind::LastNonNull => c.last_non_null(),
        PartialKind::Mean { count } => {
            let n = f64_col(count);
            let total = n.clone().sum();
            when(total.clone().eq(lit(0.0))).then(lit(NULL).cast(DataType::Float64)).otherwise((n * c.fill_null(lit(0.0))).sum() / total)
        }
        PartialKind::M2 { count, mean } => {
            // Chan et al.: M2 = sum(M2_i) + sum(n_i * (mean_i - mean)^2).
            let n = f64_col(count);
            let m = f64_col(mean).fill_null(lit(0.0));
            let total = n.clone().sum();
            let grand_mean = (n.clone() * m.clone()).sum() / total.clone();
            let spread = (n * (m - grand_mean).pow(2)).sum();
            when(total.eq(lit(0.0))).then(lit(NULL).cast(DataType::Float64)).otherwise(c.fill_null(lit(0.0)).sum() + spread)
        }
        PartialKind::List => c.explode(ExplodeOptions { empty_as_null: false, keep_nulls: false }),
        PartialKind::Set => c.explode(ExplodeOptions { empty_as_null: false, keep_nulls: false }).unique_stable(),
        PartialKind::MinByValue { ord } | PartialKind::MaxByValue { ord } => {
            let o = col(pname(ord));
            let keep = o.clone().is_not_null();
            let descending = matches!(kind, PartialKind::MaxByValue { .. });
            c.filter(keep.clone()).sort_by([o.filter(keep)], stable_sort(descending)).first()
        }
        // The batch's and the state's sketches, merged after the group-by.
        PartialKind::Sketch { .. } => c.implode(true),
    };
    e.alias(pname(i))
}

fn unsupported(e: &Expr) -> SluiceError {
    SluiceError::analysis(format!(
        "{e:?} is not supported in a streaming aggregation: use len(), count, sum, mean, min, max, \
         first, last, first_non_null, last_non_null, std/var (ddof 0 or 1), implode, or Sluice's \
         stddev, variance, collect_list, collect_set, min_by, max_by, count_if, \
         approx_count_distinct (combined with arithmetic, casts and literals)"
    ))
}

fn distinct_unsupported() -> SluiceError {
    SluiceError::analysis(
        "Distinct aggregations are not supported on streaming DataFrames/Datasets. Consider using \
         approx_count_distinct() instead.",
    )
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
            event_time_output: None,
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
        plan.combine_exprs = plan.partials.iter().enumerate().map(|(i, p)| combine_expr(p.kind, i)).collect();
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
            if let Some(root) = roots.iter().find(|r| watermark_columns.iter().any(|w| w.as_str() == r.as_str())) {
                plan.event_time_key = Some(key);
                plan.event_time_output = Some((name.clone(), root.to_string()));
                break;
            }
        }
        Ok(plan)
    }

    fn partial(&mut self, kind: PartialKind, input: Option<Expr>, input_schema: &Schema) -> Result<Expr> {
        self.partial_by(kind, input, None, input_schema)
    }

    /// The column of the partial `kind` of `input` (and `by`), added when new.
    fn partial_by(&mut self, kind: PartialKind, input: Option<Expr>, by: Option<Expr>, input_schema: &Schema) -> Result<Expr> {
        let p = Partial { kind, input: input.clone(), by: by.clone() };
        if let Some(i) = self.partials.iter().position(|q| *q == p) {
            return Ok(col(pname(i)));
        }
        let i = self.partials.len();
        let e = partial_expr(kind, input, by, input_schema)?;
        self.partials.push(p);
        self.partial_exprs.push(e.alias(pname(i)));
        Ok(col(pname(i)))
    }

    /// The count, mean and M2 partials of `input`, as columns.
    fn moments(&mut self, input: &Expr, schema: &Schema) -> Result<(Expr, Expr, Expr)> {
        numeric(input, schema, "stddev/variance")?;
        let n = self.partial(PartialKind::Count, Some(input.clone()), schema)?;
        let count = self.index_of(PartialKind::Count, input);
        let mean = self.partial(PartialKind::Mean { count }, Some(input.clone()), schema)?;
        let mean_i = self.index_of(PartialKind::Mean { count }, input);
        let m2 = self.partial(PartialKind::M2 { count, mean: mean_i }, Some(input.clone()), schema)?;
        Ok((n, mean, m2))
    }

    fn index_of(&self, kind: PartialKind, input: &Expr) -> usize {
        self.partials.iter().position(|q| q.kind == kind && q.input.as_ref() == Some(input)).unwrap_or(0)
    }

    /// Rewrites an aggregation expression into a final expression over partial columns.
    fn rewrite(&mut self, e: &Expr, schema: &Schema) -> Result<Expr> {
        let null_if_empty = |cnt: Expr, v: Expr| when(cnt.eq(lit(0i64))).then(lit(NULL)).otherwise(v);
        if let Some(agg) = functions::registered(e) {
            return self.rewrite_sluice(agg, schema);
        }
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
                AggExpr::FirstNonNull(input) => {
                    self.partial(PartialKind::FirstNonNull, Some(input.as_ref().clone()), schema)?
                }
                AggExpr::LastNonNull(input) => {
                    self.partial(PartialKind::LastNonNull, Some(input.as_ref().clone()), schema)?
                }
                AggExpr::Std(input, ddof) | AggExpr::Var(input, ddof) if *ddof <= 1 => {
                    let (n, _, m2) = self.moments(input, schema)?;
                    let n = n.cast(DataType::Float64);
                    let min = if *ddof == 1 { 2.0 } else { 1.0 };
                    let var = m2 / (n.clone() - lit(f64::from(*ddof)));
                    let var = when(n.gt_eq(lit(min))).then(var).otherwise(lit(NULL).cast(DataType::Float64));
                    if matches!(a, AggExpr::Std(..)) {
                        var.sqrt()
                    } else {
                        var
                    }
                }
                AggExpr::Implode { input, .. } => self.partial(PartialKind::List, Some(input.as_ref().clone()), schema)?,
                AggExpr::NUnique(_) => return Err(distinct_unsupported()),
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

    fn rewrite_sluice(&mut self, agg: SluiceAgg, schema: &Schema) -> Result<Expr> {
        Ok(match agg {
            SluiceAgg::CollectSet(input) => self.partial(PartialKind::Set, Some(input), schema)?,
            SluiceAgg::CountIf(predicate) => self.partial(PartialKind::CountIf, Some(predicate), schema)?,
            SluiceAgg::MinBy(value, ord) => {
                let _ord = self.partial(PartialKind::MinOrd, Some(ord.clone()), schema)?;
                let o = self.index_of(PartialKind::MinOrd, &ord);
                self.partial_by(PartialKind::MinByValue { ord: o }, Some(value), Some(ord), schema)?
            }
            SluiceAgg::MaxBy(value, ord) => {
                let _ord = self.partial(PartialKind::MaxOrd, Some(ord.clone()), schema)?;
                let o = self.index_of(PartialKind::MaxOrd, &ord);
                self.partial_by(PartialKind::MaxByValue { ord: o }, Some(value), Some(ord), schema)?
            }
            SluiceAgg::ApproxCountDistinct(input, precision) => {
                self.partial(PartialKind::Sketch { precision }, Some(input), schema)?
            }
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

    /// The rows [`partial_aggregate`](Self::partial_aggregate) groups: the input with the
    /// key columns, one copy per window a row falls in (a window key: its start, Int64
    /// µs), a session key as the row's event time (Int64 µs); rows without event time
    /// left out.
    fn expand(&self, input: &DataFrame) -> Result<LazyFrame> {
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
        if let Some(s) = &self.session {
            let ts = micros(s.spec.time.clone());
            lf = lf.with_column(ts.alias(s.name.as_str())).filter(col(s.name.as_str()).is_not_null());
        }
        Ok(lf)
    }

    /// The input rows that [`partial_aggregate_on_time`](Self::partial_aggregate_on_time)
    /// drops as late, as [`crate::operators::late`] defines them: a row per window (or
    /// session) whose end is at or before `late_watermark_ms`, with its event time and
    /// window.
    ///
    /// # Errors
    /// As `partial_aggregate`.
    pub fn late_rows(&self, input: &DataFrame, key: &EventTimeColumn, late_watermark_ms: i64) -> Result<DataFrame> {
        use crate::operators::late::{EVENT_TIME, WINDOW_END, WINDOW_START};
        let mut lf = self.expand(input)?;
        let (event_time, window) = match (&self.window, &self.session) {
            (Some(w), _) => (col(TS), Some((col(w.name.as_str()), col(w.name.as_str()) + lit(w.spec.duration_us)))),
            (_, Some(s)) => {
                let end = col(s.name.as_str()) + lit(s.spec.gap_us);
                lf = lf.with_column(end.clone().alias(SESSION_END));
                (col(s.name.as_str()), Some((col(s.name.as_str()), end)))
            }
            _ => (micros(col(key.column.as_str())), None),
        };
        let expanded = lf.collect()?;
        let mask = key.at_or_before(&expanded, late_watermark_ms)?;
        let late = expanded.filter(&mask)?;
        let mut exprs: Vec<Expr> = input.get_column_names().iter().map(|c| col(c.as_str())).collect();
        exprs.push(event_time.alias(EVENT_TIME));
        if let Some((start, end)) = window {
            exprs.push(start.alias(WINDOW_START));
            exprs.push(end.alias(WINDOW_END));
        }
        Ok(late.lazy().select(exprs).collect()?)
    }

    /// Evaluates keys and the partial aggregates of `input`: one row per key. A window key
    /// is computed as Spark's Expand: for each of the `ceil(length / slide)` windows a row
    /// may fall in, a copy of the input keyed by that window's start (Int64 µs), keeping
    /// the rows the window contains; rows with a null event time get no window. A session
    /// key is the row's event time (Int64 µs, the start of its own session) and the rows
    /// get a last column [`SESSION_END`] = start + gap (µs).
    pub fn partial_aggregate(&self, input: &DataFrame) -> Result<DataFrame> {
        let lf = self.expand(input)?;
        let mut aggs = self.partial_exprs.clone();
        if let Some(s) = &self.session {
            aggs.push((col(s.name.as_str()) + lit(s.spec.gap_us)).max().alias(SESSION_END));
        }
        let keys: Vec<Expr> = self.key_names.iter().map(|k| col(k.as_str())).collect();
        // A global aggregation (no key) has exactly one group, also over no rows (Spark).
        let mut out = if keys.is_empty() { lf.select(aggs).collect()? } else { lf.group_by(keys).agg(aggs).collect()? };
        for (i, p) in self.partials.iter().enumerate() {
            if let PartialKind::Sketch { precision } = p.kind {
                let sketches = functions::sketches_of_lists(out.column(&pname(i))?, precision)?;
                out.with_column(sketches)?;
            }
        }
        Ok(out)
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
        let mut state = state.clone();
        for (i, p) in self.partials.iter().enumerate() {
            if let PartialKind::Sketch { .. } = p.kind {
                let estimates = functions::sketch_estimates(state.column(&pname(i))?, &pname(i))?;
                state.with_column(estimates)?;
            }
        }
        Ok(state.lazy().select(exprs).collect()?)
    }

    /// After a group-by with the [`combine_exprs`](Self::combine_exprs), merges the lists
    /// of sketches it left in each sketch partial column into one sketch.
    ///
    /// # Errors
    /// [`SluiceError::Internal`] when a sketch in state does not decode.
    pub(crate) fn merge_sketches(&self, combined: &mut DataFrame) -> Result<()> {
        for (i, p) in self.partials.iter().enumerate() {
            if let PartialKind::Sketch { precision } = p.kind {
                let sketches = functions::merge_sketch_lists(combined.column(&pname(i))?, precision)?;
                combined.with_column(sketches)?;
            }
        }
        Ok(())
    }

    /// Merges partial rows into state: returns (new state, updated rows).
    fn merge(&self, state: &DataFrame, partial: &DataFrame) -> Result<(DataFrame, DataFrame)> {
        let keys: Vec<Expr> = self.key_names.iter().map(|k| col(k.as_str())).collect();
        let mut aggs = self.combine_exprs.clone();
        aggs.push(col(UPDATED).max());
        let rows = concat(
            [
                state.clone().lazy().with_column(lit(false).alias(UPDATED)),
                partial.clone().lazy().with_column(lit(true).alias(UPDATED)),
            ],
            UnionArgs::default(),
        )?;
        let mut merged = if keys.is_empty() { rows.select(aggs).collect()? } else { rows.group_by(keys).agg(aggs).collect()? };
        self.merge_sketches(&mut merged)?;
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
    /// The rows dropped as late by the last batch (see [`crate::operators::late`]).
    late: Vec<DataFrame>,
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
        StreamingAggregateExec { plan, mode, state, progress: StateOperatorProgress::new("stateStoreSave"), late: Vec::new() }
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
        })
    }

    fn states(&self) -> Vec<&KeyedState> {
        vec![&self.state]
    }

    fn explain_rows(&self, inputs: &[DataFrame]) -> Option<Result<DataFrame>> {
        let (key, input) = (self.watermarked()?, inputs.first()?);
        // every pair: "late" at a watermark no event time reaches
        Some(self.plan.late_rows(input, key, i64::MAX / 2000))
    }

    fn state_finalizer(&self) -> Option<crate::state::StateFinalizer> {
        let plan = self.plan.clone();
        Some(std::sync::Arc::new(move |state: &DataFrame| plan.finalize(state)))
    }

    fn states_mut(&mut self) -> Vec<&mut KeyedState> {
        vec![&mut self.state]
    }

    fn process(&mut self, mut inputs: Vec<DataFrame>, ctx: &BatchContext) -> Result<DataFrame> {
        let input = inputs.pop().ok_or_else(|| SluiceError::Internal("aggregate without input".into()))?;
        let (partial, dropped) =
            self.plan.partial_aggregate_on_time(&input, self.watermarked(), ctx.watermark_for_late_events_ms)?;
        self.late.clear();
        if let (true, Some(key), Some(wm)) = (dropped > 0 && ctx.keep_late_rows, self.watermarked(), ctx.watermark_for_late_events_ms) {
            self.late.push(self.plan.late_rows(&input, key, wm)?);
        }
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
        // Spark's StateStoreSaveExec: in append and update mode, whenever the input
        // watermark moves (even when no key carries event time: a global or per-key
        // aggregation in update mode runs a no-data batch too).
        self.mode != OutputMode::Complete && ctx.watermark_for_eviction_ms.is_some_and(|w| new_watermark_ms > w)
    }

    fn progress(&self) -> StateOperatorProgress {
        self.progress.clone()
    }

    fn take_late_rows(&mut self) -> Vec<DataFrame> {
        std::mem::take(&mut self.late)
    }
}
