//! The state watermark of each join side, solved from the join condition as Spark's
//! `StreamingJoinHelper.getStateValueWatermark`: each conjunct `a < b` (or `<=`, `>`,
//! `>=`) whose two sides are `time + constants` is rearranged to bound this side's event
//! time by the other side's watermark; `<=`/`>=` subtract 1 ms; the smallest bound wins.
//! State rows whose event time is at or below it can no longer match and are evicted.

use polars::prelude::*;

#[derive(Debug)]
enum Term {
    Column(String, bool),
    Constant(i64),
}

/// Evaluates a column-free expression to µs (durations, timestamps, integers as seconds).
fn constant_micros(e: &Expr) -> Option<i64> {
    let df = DataFrame::empty().lazy().select([e.clone().alias("c")]).collect().ok()?;
    let c = df.column("c").ok()?;
    let us = match c.dtype() {
        DataType::Duration(_) => c.cast(&DataType::Duration(TimeUnit::Microseconds)).ok()?,
        DataType::Datetime(_, _) => c.cast(&DataType::Datetime(TimeUnit::Microseconds, None)).ok()?,
        DataType::Float64 | DataType::Float32 => {
            // numbers are seconds in Spark's interpretation
            return c.f64().ok()?.get(0).map(|v| (v * 1e6) as i64);
        }
        dt if dt.is_integer() => return c.cast(&DataType::Int64).ok()?.i64().ok()?.get(0).map(|v| v * 1_000_000),
        _ => return None,
    };
    us.cast(&DataType::Int64).ok()?.i64().ok()?.get(0)
}

fn collect_terms(e: &Expr, negate: bool, out: &mut Vec<Term>) -> Option<()> {
    // A column-free part is one constant (e.g. `interval("1 hour")`, a cast literal).
    if polars_plan::utils::expr_to_leaf_column_names(e).is_empty() {
        let v = constant_micros(e)?;
        out.push(Term::Constant(if negate { -v } else { v }));
        return Some(());
    }
    match e {
        Expr::BinaryExpr { left, op: Operator::Plus, right } => {
            collect_terms(left, negate, out)?;
            collect_terms(right, negate, out)
        }
        Expr::BinaryExpr { left, op: Operator::Minus, right } => {
            collect_terms(left, negate, out)?;
            collect_terms(right, !negate, out)
        }
        Expr::Cast { expr, .. } | Expr::Alias(expr, _) => collect_terms(expr, negate, out),
        Expr::Column(name) => {
            out.push(Term::Column(name.to_string(), negate));
            Some(())
        }
        _ => None,
    }
}

fn conjuncts(e: &Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::BinaryExpr { left, op: Operator::And | Operator::LogicalAnd, right } => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        other => out.push(other.clone()),
    }
}

/// The state watermark of the side whose columns are `this_cols`, given the other side's
/// watermark column `other_wm_col` and the event-time watermark `watermark_ms`: Spark's
/// `getStateValueWatermark`. `None` when the condition bounds nothing.
pub fn state_value_watermark(
    condition: Option<&Expr>,
    this_cols: &[String],
    other_cols: &[String],
    other_wm_col: Option<&str>,
    watermark_ms: i64,
) -> Option<i64> {
    let condition = condition?;
    let other_wm_col = other_wm_col?;
    let mut parts = Vec::new();
    conjuncts(condition, &mut parts);
    // `l < r` solved for this side's time, for each comparison.
    let solve = |l: &Expr, r: &Expr| -> Option<i64> {
        let mut terms = Vec::new();
        collect_terms(l, false, &mut terms)?;
        collect_terms(r, true, &mut terms)?;
        let mut this_term = None;
        let mut sum: i64 = 0;
        let (mut n_this, mut n_other) = (0, 0);
        for t in &terms {
            match t {
                Term::Column(c, neg) if this_cols.contains(c) => {
                    n_this += 1;
                    this_term = Some(*neg);
                }
                Term::Column(c, neg) if other_cols.contains(c) && c == other_wm_col => {
                    n_other += 1;
                    let v = watermark_ms.checked_mul(1000)?;
                    sum = sum.checked_add(if *neg { -v } else { v })?;
                }
                Term::Column(..) => return None,
                Term::Constant(v) => sum = sum.checked_add(*v)?,
            }
        }
        // Exactly one term of this side, negated: `other + c - this < 0` => this > other + c.
        if n_this != 1 || n_other > 1 || this_term != Some(true) {
            return None;
        }
        Some(((sum as f64) / 1000.0) as i64)
    };
    parts
        .iter()
        .filter_map(|p| match p {
            Expr::BinaryExpr { left, op, right } => match op {
                Operator::Lt => solve(left, right),
                Operator::LtEq => solve(left, right).map(|w| w - 1),
                Operator::Gt => solve(right, left),
                Operator::GtEq => solve(right, left).map(|w| w - 1),
                _ => None,
            },
            _ => None,
        })
        .min()
}

