//! The aggregate functions a streaming aggregation supports, each kept in state as a
//! small mergeable *partial* (Spark's aggregation buffer), never as a list of rows.
//!
//! | function | partial columns in state | merge of two partials |
//! |---|---|---|
//! | `count(*)`, `count(x)`, `count_if(p)` | Int64 count | sum |
//! | `sum(x)` | sum + count (null when no value) | sum |
//! | `avg(x)` / `mean` | sum + count | sum |
//! | `min`, `max` | the value | min, max |
//! | `first(x)`, `last(x)` (nulls kept, as Spark's default) | the value | first, last |
//! | `first_value(x, true)`, `last_value(x, true)` | the first / last non-null value | first / last non-null |
//! | `stddev`/`stddev_samp`, `stddev_pop`, `variance`/`var_samp`, `var_pop` | count n, mean, M2 (Float64) | Chan's parallel formula |
//! | `collect_list(x)` | List of the non-null values | concatenation |
//! | `collect_set(x)` | List of the distinct non-null values | union |
//! | `min_by(x, ord)`, `max_by(x, ord)` | the extreme `ord` and `x` at it | the row with the smaller / larger `ord` (the earlier on ties) |
//! | `approx_count_distinct(x, rsd)` | a HyperLogLog++ sketch (Binary) | sketch union |
//!
//! A batch is folded into state in two vectorized group-bys: *partial* (each batch's rows
//! per group) and *combine* (the state's partial rows and the batch's, concatenated in
//! that order, per group); the *final* expression turns partials into the result.
//!
//! Functions Polars has are recognised in their Polars form (`len()`, `col(x).count()`,
//! `.sum()`, `.mean()`, `.min()`, `.max()`, `.first()`, `.last()`, `.first_non_null()`,
//! `.last_non_null()`, `.std(ddof)`, `.var(ddof)` with ddof 0 or 1, `.implode(..)`); the
//! others ([`collect_set`], [`min_by`], [`max_by`], [`count_if`],
//! [`approx_count_distinct`]) are built by functions here that return an ordinary Polars
//! expression computing the same thing on a static frame, and register it so that a
//! streaming aggregation recognises it.
//!
//! ## The sketch
//! `approx_count_distinct` keeps a HyperLogLog++ sketch (the `hyperloglogplus` crate: the
//! algorithm of Heule, Nunkesser and Hall that Spark's `HyperLogLogPlusPlus` implements,
//! with its sparse representation for small cardinalities), of precision
//! `p = ceil(2 log2(1.106 / rsd))` as Spark chooses it (rsd 0.05: p = 9, 512 registers;
//! rsd 0.01: p = 14, 16,384 registers), over a 64-bit hash of each value (Polars' fixed-seed
//! row hash, the one that partitions state). Its relative standard error is `rsd`; the
//! sketch is serialized with MessagePack in a Binary state column (a few bytes while
//! sparse, at most about 0.75 * 2^p bytes dense).

use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;

use hyperloglogplus::{HyperLogLog, HyperLogLogPlus};
use polars::prelude::*;

use crate::state::store::seeded_state;
use crate::{Result, SluiceError};

/// Sluice's aggregate functions that Polars has no aggregation for, as registered by the
/// builders below.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SluiceAgg {
    CollectSet(Expr),
    MinBy(Expr, Expr),
    MaxBy(Expr, Expr),
    CountIf(Expr),
    ApproxCountDistinct(Expr, u8),
}

/// Every expression built by the functions below, with what it computes.
static REGISTRY: Mutex<Vec<(Expr, SluiceAgg)>> = Mutex::new(Vec::new());

fn register(expr: Expr, agg: SluiceAgg) -> Expr {
    let mut r = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    if !r.iter().any(|(e, _)| *e == expr) {
        r.push((expr.clone(), agg));
    }
    expr
}

/// The Sluice aggregate `e` was built as, if any.
pub(crate) fn registered(e: &Expr) -> Option<SluiceAgg> {
    let r = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    r.iter().find(|(x, _)| x == e).map(|(_, a)| a.clone())
}

fn stable() -> SortMultipleOptions {
    SortMultipleOptions::default().with_maintain_order(true)
}

fn value_at_extreme(value: Expr, ord: Expr, descending: bool) -> Expr {
    let keep = ord.clone().is_not_null();
    value
        .filter(keep.clone())
        .sort_by([ord.filter(keep)], stable().with_order_descending(descending).with_nulls_last(true))
        .first()
}

/// Spark's `stddev` / `stddev_samp`: the sample standard deviation of the non-null values
/// (Float64); null for fewer than two values. State: count, mean and M2.
pub fn stddev(e: Expr) -> Expr {
    stddev_samp(e)
}

/// Spark's `stddev_samp` (see [`stddev`]).
pub fn stddev_samp(e: Expr) -> Expr {
    e.std(1)
}

/// Spark's `stddev_pop`: the population standard deviation (Float64); 0 for one value,
/// null for none.
pub fn stddev_pop(e: Expr) -> Expr {
    e.std(0)
}

/// Spark's `variance` / `var_samp`: the sample variance (Float64); null for fewer than two
/// values.
pub fn variance(e: Expr) -> Expr {
    var_samp(e)
}

/// Spark's `var_samp` (see [`variance`]).
pub fn var_samp(e: Expr) -> Expr {
    e.var(1)
}

/// Spark's `var_pop`: the population variance (Float64); 0 for one value, null for none.
pub fn var_pop(e: Expr) -> Expr {
    e.var(0)
}

/// Spark's `collect_list`: the non-null values, in arrival order, as a List. State: the
/// list itself (its size grows with the group).
pub fn collect_list(e: Expr) -> Expr {
    e.drop_nulls().implode(true)
}

/// Spark's `collect_set`: the distinct non-null values as a List (in first-arrival order;
/// Spark's order is unspecified: sort it with `list().sort(..)` / SQL `array_sort` to
/// compare). State: the distinct values.
pub fn collect_set(e: Expr) -> Expr {
    let expr = e.clone().drop_nulls().unique_stable().implode(true);
    register(expr, SluiceAgg::CollectSet(e))
}

/// Spark's `min_by(value, ord)`: `value` of the row with the smallest `ord` (rows with a
/// null `ord` ignored; the earliest row on ties). State: the smallest `ord` and its value.
pub fn min_by(value: Expr, ord: Expr) -> Expr {
    let expr = value_at_extreme(value.clone(), ord.clone(), false);
    register(expr, SluiceAgg::MinBy(value, ord))
}

/// Spark's `max_by(value, ord)`: `value` of the row with the largest `ord` (see
/// [`min_by`]).
pub fn max_by(value: Expr, ord: Expr) -> Expr {
    let expr = value_at_extreme(value.clone(), ord.clone(), true);
    register(expr, SluiceAgg::MaxBy(value, ord))
}

/// Spark's `count_if(predicate)`: how many rows the predicate is true for (Int64; 0, never
/// null, for none). State: the count.
pub fn count_if(predicate: Expr) -> Expr {
    let expr = predicate.clone().cast(DataType::Int64).fill_null(lit(0i64)).sum();
    register(expr, SluiceAgg::CountIf(predicate))
}

/// The HyperLogLog++ precision Spark uses for a relative standard deviation `rsd`.
///
/// # Errors
/// [`SluiceError::InvalidArgument`] when `rsd` gives a precision outside 4..=18 (Spark:
/// "HLL++ requires at least 4 bits for addressing. Use a lower error, at most 39%").
pub fn hll_precision(rsd: f64) -> Result<u8> {
    if !(rsd.is_finite() && rsd > 0.0) {
        return Err(SluiceError::InvalidArgument(format!(
            "approx_count_distinct: the relative standard deviation must be a positive number, not {rsd}"
        )));
    }
    let p = (2.0 * (1.106 / rsd).log2()).ceil();
    if p < 4.0 {
        return Err(SluiceError::InvalidArgument(format!(
            "approx_count_distinct: HLL++ requires at least 4 bits for addressing; use a lower error \
             (rsd {rsd}), at most 39%"
        )));
    }
    if p > 18.0 {
        return Err(SluiceError::InvalidArgument(format!(
            "approx_count_distinct: rsd {rsd} needs a precision of {p} bits, above the sketch's 18; use \
             rsd >= 0.0018"
        )));
    }
    Ok(p as u8)
}

/// Spark's `approx_count_distinct(e, rsd)`: an estimate of the number of distinct non-null
/// values (Int64) with relative standard deviation `rsd` (Spark's default 0.05). State: a
/// HyperLogLog++ sketch (see the module docs), not the values.
///
/// # Errors
/// As [`hll_precision`].
pub fn approx_count_distinct(e: Expr, rsd: f64) -> Result<Expr> {
    let p = hll_precision(rsd)?;
    let expr = e.clone().drop_nulls().n_unique().cast(DataType::Int64).alias(format!("approx_count_distinct({rsd})"));
    Ok(register(expr, SluiceAgg::ApproxCountDistinct(e, p)))
}

/// A hasher that passes through the 64-bit hash it is given (values are hashed once, by
/// Polars, before they reach the sketch).
#[derive(Default)]
pub(crate) struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = i;
    }
}

/// The builder of [`PassThroughHasher`]s (serialized with the sketch: it has no state).
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct PassThrough;

impl BuildHasher for PassThrough {
    type Hasher = PassThroughHasher;
    fn build_hasher(&self) -> PassThroughHasher {
        PassThroughHasher::default()
    }
}

type Sketch = HyperLogLogPlus<u64, PassThrough>;

fn sketch_err(e: impl std::fmt::Display) -> SluiceError {
    SluiceError::Internal(format!("approx_count_distinct sketch: {e}"))
}

fn new_sketch(precision: u8) -> Result<Sketch> {
    HyperLogLogPlus::new(precision, PassThrough).map_err(sketch_err)
}

fn encode_sketch(s: &Sketch) -> Result<Vec<u8>> {
    rmp_serde::to_vec(s).map_err(sketch_err)
}

fn decode_sketch(bytes: &[u8]) -> Result<Sketch> {
    rmp_serde::from_slice(bytes).map_err(|e| {
        SluiceError::Internal(format!("an approx_count_distinct sketch in state does not decode: {e}"))
    })
}

/// Sketches of the values in each list of `lists` (a List column: one row per group).
pub(crate) fn sketches_of_lists(lists: &Column, precision: u8) -> Result<Column> {
    let ca = lists.as_materialized_series().list()?.clone();
    let mut out: Vec<Option<Vec<u8>>> = Vec::with_capacity(ca.len());
    for values in (0..ca.len()).map(|i| ca.get_as_series(i)) {
        let mut sketch = new_sketch(precision)?;
        if let Some(values) = values {
            if !values.is_empty() {
                let frame = DataFrame::new(values.len(), vec![values.into_column()])?;
                let hashes = frame.clone().hash_rows(Some(seeded_state()))?;
                for h in hashes.into_no_null_iter() {
                    sketch.insert(&h);
                }
            }
        }
        out.push(Some(encode_sketch(&sketch)?));
    }
    Ok(Column::new(lists.name().clone(), out.iter().map(|b| b.as_deref()).collect::<Vec<_>>()))
}

/// The union of the sketches in each list of `lists` (a List(Binary) column).
pub(crate) fn merge_sketch_lists(lists: &Column, precision: u8) -> Result<Column> {
    let ca = lists.as_materialized_series().list()?.clone();
    let mut out: Vec<Option<Vec<u8>>> = Vec::with_capacity(ca.len());
    for parts in (0..ca.len()).map(|i| ca.get_as_series(i)) {
        let mut merged = new_sketch(precision)?;
        if let Some(parts) = parts {
            let parts = parts.binary()?;
            for bytes in (0..parts.len()).filter_map(|i| parts.get(i)) {
                merged.merge(&decode_sketch(bytes)?).map_err(sketch_err)?;
            }
        }
        out.push(Some(encode_sketch(&merged)?));
    }
    Ok(Column::new(lists.name().clone(), out.iter().map(|b| b.as_deref()).collect::<Vec<_>>()))
}

/// The estimates (Int64) of the sketches in `sketches` (a Binary column).
pub(crate) fn sketch_estimates(sketches: &Column, name: &str) -> Result<Column> {
    let ca = sketches.as_materialized_series().binary()?.clone();
    let mut out: Vec<Option<i64>> = Vec::with_capacity(ca.len());
    for bytes in (0..ca.len()).map(|i| ca.get(i)) {
        out.push(match bytes {
            Some(b) => Some(decode_sketch(b)?.count().round() as i64),
            None => Some(0),
        });
    }
    Ok(Column::new(name.into(), out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_follows_spark() {
        assert_eq!(hll_precision(0.05).unwrap(), 9);
        assert_eq!(hll_precision(0.01).unwrap(), 14);
        assert!(hll_precision(0.5).is_err());
        assert!(hll_precision(0.0).is_err());
        assert!(hll_precision(0.0001).is_err());
    }

    #[test]
    fn sketches_estimate_within_the_bound_and_merge() {
        let values: Vec<i64> = (0..20_000).collect();
        let half = |r: std::ops::Range<usize>| {
            let s = Series::new("v".into(), &values[r]);
            let list = s.implode().unwrap().into_series().into_column();
            sketches_of_lists(&list, 14).unwrap()
        };
        let a = half(0..12_000);
        let b = half(8_000..20_000);
        let both = a.as_materialized_series().clone().append(b.as_materialized_series()).unwrap().clone();
        let merged = merge_sketch_lists(&both.implode().unwrap().into_series().into_column(), 14).unwrap();
        let est = sketch_estimates(&merged, "n").unwrap().i64().unwrap().get(0).unwrap();
        let exact = 20_000f64;
        assert!((est as f64 - exact).abs() <= 3.0 * 0.01 * exact, "{est}");
    }
}
