//! Streaming functions beside Polars' own: [`window`] (Spark's `window`),
//! [`session_window`] (Spark's `session_window`), [`window_time`], [`interval`] (an
//! `INTERVAL` literal), and the aggregate functions Polars has no streaming form of
//! ([`stddev`], [`collect_set`], [`min_by`], [`count_if`], [`approx_count_distinct`], ...:
//! see [`crate::operators::aggregate::functions`] for each one's state).

use std::sync::Mutex;

use polars::prelude::*;

pub use crate::operators::aggregate::functions::{
    approx_count_distinct, collect_list, collect_set, count_if, max_by, min_by, stddev, stddev_pop, stddev_samp,
    var_pop, var_samp, variance,
};
use crate::time::interval::parse_interval_micros;
use crate::{Result, SluiceError};

/// The name of the column [`window`] produces, as in Spark.
pub const WINDOW_COLUMN: &str = "window";

fn micros_to_ts(e: Expr) -> Expr {
    e.cast(DataType::Datetime(TimeUnit::Microseconds, None))
}

/// The parameters of a [`window`] expression, in microseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowSpec {
    /// The event-time expression.
    pub time: Expr,
    /// Window length, µs.
    pub duration_us: i64,
    /// Slide, µs (equal to the length for tumbling windows).
    pub slide_us: i64,
    /// Offset of window starts from the epoch, µs.
    pub start_us: i64,
}

/// Every window expression built by [`window`], with its parameters, so that a streaming
/// aggregation can recognise it and compute windows as an *Expand* (one vectorized copy
/// of the input per window a row falls in) instead of evaluating the expression per row.
static WINDOWS: Mutex<Vec<(Expr, WindowSpec)>> = Mutex::new(Vec::new());

/// The window parameters of `e` if it is (an alias of) a [`window`] expression, with the
/// output name it is given.
pub fn window_spec(e: &Expr) -> Option<(WindowSpec, String)> {
    let registry = WINDOWS.lock().unwrap_or_else(|p| p.into_inner());
    let find = |x: &Expr| registry.iter().find(|(w, _)| w == x).map(|(_, s)| s.clone());
    if let Some(spec) = find(e) {
        return Some((spec, WINDOW_COLUMN.to_string()));
    }
    // Not reentrant: release the lock before looking inside an alias.
    drop(registry);
    match e {
        Expr::Alias(inner, name) => window_spec(inner).map(|(spec, _)| (spec, name.to_string())),
        _ => None,
    }
}

/// Spark's `window(timeColumn, windowDuration, slideDuration, startTime)`: the time
/// windows containing each row's event time, for use as a `group_by` key.
///
/// * `duration`, `slide` (default: `duration`, a tumbling window) and `start_time`
///   (default `"0 seconds"`) are Spark interval strings (`"10 minutes"`).
/// * Windows are `[start, end)` with `start = ts - ((ts - start_time) mod slide) - i * slide`
///   for `i` in `0..ceil(duration / slide)`, keeping those that contain `ts`.
/// * The result is a struct column `window {start, end}` of UTC timestamps (µs); for a
///   sliding window, a list of them, which the aggregation explodes (one row per window).
///   Rows with a null event time get no window and are dropped by the aggregation.
///
/// # Errors
/// [`SluiceError::InvalidArgument`] for an unparsable interval, a non-positive duration or
/// slide, a slide longer than the window, or `|start_time| >= slide` (Spark's rules).
pub fn window(time: Expr, duration: &str, slide: Option<&str>, start_time: Option<&str>) -> Result<Expr> {
    let d = parse_interval_micros(duration)?;
    let s = match slide {
        Some(s) => parse_interval_micros(s)?,
        None => d,
    };
    let o = match start_time {
        Some(o) => parse_interval_micros(o)?,
        None => 0,
    };
    if d <= 0 {
        return Err(SluiceError::InvalidArgument(format!(
            "the window duration ({duration}) must be greater than 0"
        )));
    }
    if s <= 0 || s > d {
        return Err(SluiceError::InvalidArgument(format!(
            "the slide duration ({}) must be greater than 0 and at most the window duration ({duration})",
            slide.unwrap_or(duration)
        )));
    }
    if o.abs() >= s {
        return Err(SluiceError::InvalidArgument(format!(
            "the absolute value of the start time ({}) must be less than the slide duration ({})",
            start_time.unwrap_or("0"),
            slide.unwrap_or(duration)
        )));
    }
    let ts = time.clone().cast(DataType::Datetime(TimeUnit::Microseconds, None)).cast(DataType::Int64);
    // Non-negative modulo, whatever Polars' sign convention for `%`.
    let rem = ((ts.clone() - lit(o)) % lit(s) + lit(s)) % lit(s);
    let last_start = ts.clone() - rem;
    let n = (d + s - 1) / s;
    let make = |start: Expr| {
        as_struct(vec![
            micros_to_ts(start.clone()).alias("start"),
            micros_to_ts(start + lit(d)).alias("end"),
        ])
    };
    let expr = if n == 1 {
        when(ts.is_not_null()).then(make(last_start)).otherwise(lit(NULL)).alias(WINDOW_COLUMN)
    } else {
        let mut items = Vec::with_capacity(n as usize);
        for i in 0..n {
            let start = last_start.clone() - lit(i * s);
            let contains = start.clone().lt_eq(ts.clone()).and(ts.clone().lt(start.clone() + lit(d)));
            items.push(when(contains).then(make(start)).otherwise(lit(NULL)));
        }
        concat_list(items)?.alias(WINDOW_COLUMN)
    };
    let spec = WindowSpec { time, duration_us: d, slide_us: s, start_us: o };
    let mut registry = WINDOWS.lock().unwrap_or_else(|p| p.into_inner());
    if !registry.iter().any(|(e, _)| *e == expr) {
        registry.push((expr.clone(), spec));
    }
    Ok(expr)
}

/// The name of the column [`session_window`] produces, as in Spark.
pub const SESSION_WINDOW_COLUMN: &str = "session_window";

/// The parameters of a [`session_window`] expression.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionWindowSpec {
    /// The event-time expression.
    pub time: Expr,
    /// The gap, µs: a row at `t` opens the session `[t, t + gap)`.
    pub gap_us: i64,
}

/// Every expression built by [`session_window`], with its parameters, so that a
/// streaming aggregation can recognise a session key (as [`window_spec`] does for windows).
static SESSIONS: Mutex<Vec<(Expr, SessionWindowSpec)>> = Mutex::new(Vec::new());

/// The session parameters of `e` if it is (an alias of) a [`session_window`] expression,
/// with the output name it is given.
pub fn session_window_spec(e: &Expr) -> Option<(SessionWindowSpec, String)> {
    let registry = SESSIONS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, spec)) = registry.iter().find(|(s, _)| s == e) {
        return Some((spec.clone(), SESSION_WINDOW_COLUMN.to_string()));
    }
    drop(registry);
    match e {
        Expr::Alias(inner, name) => session_window_spec(inner).map(|(spec, _)| (spec, name.to_string())),
        _ => None,
    }
}

/// Spark's `session_window(timeColumn, gapDuration)` with a static gap: session windows
/// of event time, for use as a `group_by` key beside at least one other key.
///
/// * `gap` is a Spark interval string (`"10 minutes"`).
/// * Each row opens the window `[t, t + gap)`; in a streaming aggregation the windows of
///   one group key that overlap or touch (a start at or before the running end, Spark's
///   `MergingSessionsIterator`) merge into one session, across micro-batches too.
/// * As an expression on its own it is a struct column `session_window {start, end}` of
///   UTC timestamps (µs) holding the row's own `[t, t + gap)`, null for a null `t`; rows
///   with a null event time are dropped by the aggregation.
///
/// # Errors
/// [`SluiceError::InvalidArgument`] for an unparsable or non-positive gap (Spark would
/// silently drop every row, as their windows are empty).
pub fn session_window(time: Expr, gap: &str) -> Result<Expr> {
    let g = parse_interval_micros(gap)?;
    if g <= 0 {
        return Err(SluiceError::InvalidArgument(format!(
            "the session gap ({gap}) must be greater than 0: a row's session is [time, time + gap)"
        )));
    }
    let ts = time.clone().cast(DataType::Datetime(TimeUnit::Microseconds, None)).cast(DataType::Int64);
    let expr = when(ts.clone().is_not_null())
        .then(as_struct(vec![
            micros_to_ts(ts.clone()).alias("start"),
            micros_to_ts(ts + lit(g)).alias("end"),
        ]))
        .otherwise(lit(NULL))
        .alias(SESSION_WINDOW_COLUMN);
    let spec = SessionWindowSpec { time, gap_us: g };
    let mut registry = SESSIONS.lock().unwrap_or_else(|p| p.into_inner());
    if !registry.iter().any(|(e, _)| *e == expr) {
        registry.push((expr.clone(), spec));
    }
    Ok(expr)
}

/// A Spark interval (`"1 hour"`) as a Polars duration literal (µs), for conditions such as
/// `col("click_time").lt_eq(col("impression_time") + interval("1 hour")?)` (Spark's
/// `INTERVAL 1 HOUR`).
///
/// # Errors
/// [`SluiceError::InvalidArgument`] for a bad interval.
pub fn interval(s: &str) -> Result<Expr> {
    let us = parse_interval_micros(s)?;
    Ok(lit(us).cast(DataType::Duration(TimeUnit::Microseconds)))
}

/// Spark's `window_time(window)`: the event time of a time window, `window.end - 1 µs`
/// (a timestamp inside the window), to aggregate a windowed aggregation's rows again by
/// event time: `group_by([window(window_time(col("window")), "1 hour", None, None)?])`. The
/// result carries the window's watermark, so a downstream aggregation in append mode can
/// emit and evict by it.
pub fn window_time(window: Expr) -> Expr {
    (window.struct_().field_by_name("end") - lit(1i64).cast(DataType::Duration(TimeUnit::Microseconds)))
        .alias("window_time")
}

/// Spark's `first(e, ignoreNulls)` / `first_value`: the first value of the group (kept even
/// when null), or with `ignore_nulls` the first non-null one.
pub fn first_value(e: Expr, ignore_nulls: bool) -> Expr {
    if ignore_nulls {
        e.first_non_null()
    } else {
        e.first()
    }
}

/// Spark's `last(e, ignoreNulls)` / `last_value`: the last value of the group (kept even
/// when null), or with `ignore_nulls` the last non-null one.
pub fn last_value(e: Expr, ignore_nulls: bool) -> Expr {
    if ignore_nulls {
        e.last_non_null()
    } else {
        e.last()
    }
}
