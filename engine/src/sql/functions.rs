//! The function table: every SQL function Sluice knows, as Polars expressions with Spark's
//! semantics (1-based `substring`, `round` half up, `size(NULL) = -1`, `concat` null when
//! an argument is, `regexp_extract` empty when nothing matches, ...).
//!
//! Aggregates come in two forms: over a stream they are the expressions the engine's
//! incremental aggregation accepts (`len()`, `count`, `sum`, `mean`, `min`, `max`, `first`,
//! `last` and those of [`crate::api::functions`]: `stddev`, `collect_set`,
//! `approx_count_distinct`, ...); over static views, plain Polars aggregations.

use polars::prelude::*;
use sqlparser::ast::{Expr as SqlExpr, FunctionArgExpr};

use super::expr::{int_literal, string_literal, ts_type, Translator};
use super::resolve::{error_at, quote, suggestions};
use crate::Result;

/// Scalar functions, by name.
const SCALARS: &[&str] = &[
    "abs", "array_contains", "array_sort", "bigint", "boolean", "ceil", "ceiling", "char_length", "character_length",
    "coalesce", "concat", "concat_ws", "current_date", "current_timestamp", "date", "date_format", "date_trunc", "day",
    "dayofmonth", "dayofweek", "double", "endswith", "float", "floor", "greatest", "hour", "if", "ifnull", "int",
    "isnotnull", "isnull", "lcase", "least", "length", "lower", "ltrim", "minute", "month", "now", "nullif", "nvl",
    "regexp_extract", "replace", "round", "rtrim", "second", "session_window", "size", "split", "startswith", "string",
    "substr", "substring", "timestamp", "to_date", "to_timestamp", "trim", "ucase", "unix_timestamp", "upper", "window",
    "window_time", "year",
];

/// Aggregate functions, by name.
const AGGREGATES: &[&str] = &[
    "any_value", "approx_count_distinct", "array_agg", "avg", "collect_list", "collect_set", "count", "count_if", "first",
    "first_value", "last", "last_value", "max", "max_by", "mean", "min", "min_by", "std", "stddev", "stddev_pop",
    "stddev_samp", "sum", "var_pop", "var_samp", "variance",
];

/// Every function name Sluice's SQL knows, sorted.
pub fn function_names() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = SCALARS.iter().chain(AGGREGATES).copied().collect();
    v.sort();
    v
}

pub(crate) fn is_aggregate(name: &str) -> bool {
    AGGREGATES.contains(&name)
}

fn n_args(name: &str, args: &[FunctionArgExpr], min: usize, max: usize, node: &SqlExpr) -> Result<()> {
    if args.len() < min || args.len() > max {
        let expected = if min == max { format!("{min}") } else if max == usize::MAX { format!("at least {min}") } else { format!("[{min}, {max}]") };
        return Err(error_at(
            node,
            format!(
                "[WRONG_NUM_ARGS.WITHOUT_SUGGESTION] The {} requires {expected} parameters but the actual number is {}.",
                quote(name),
                args.len()
            ),
        ));
    }
    Ok(())
}

fn sql_arg<'b>(a: &'b FunctionArgExpr, node: &SqlExpr) -> Result<&'b SqlExpr> {
    match a {
        FunctionArgExpr::Expr(x) => Ok(x),
        _ => Err(error_at(node, "`*` is only allowed in count(*)")),
    }
}

fn str_arg(a: &FunctionArgExpr, what: &str, node: &SqlExpr) -> Result<String> {
    let x = sql_arg(a, node)?;
    string_literal(x).ok_or_else(|| error_at(x, format!("{what} must be a string literal")))
}

fn bool_arg(a: &FunctionArgExpr, node: &SqlExpr) -> Result<bool> {
    let x = sql_arg(a, node)?;
    match x {
        SqlExpr::Value(v) => match &v.value {
            sqlparser::ast::Value::Boolean(b) => Ok(*b),
            _ => Err(error_at(x, "expected true or false")),
        },
        _ => Err(error_at(x, "expected true or false")),
    }
}

/// An aggregate call over input rows (`row` translates the arguments per row).
pub(crate) fn aggregate(row: &Translator, name: &str, args: &[FunctionArgExpr], distinct: bool, node: &SqlExpr) -> Result<Expr> {
    let streaming = row.streaming;
    let arg = |i: usize| -> Result<Expr> { row.arg(&args[i], node) };
    let f64_of = |e: Expr| e.cast(DataType::Float64);
    if distinct {
        if streaming {
            return Err(error_at(
                node,
                "Distinct aggregations are not supported on streaming DataFrames/Datasets. Consider using \
                 approx_count_distinct() instead.",
            ));
        }
        n_args(name, args, 1, 1, node)?;
        let x = arg(0)?.drop_nulls().unique();
        return Ok(match name {
            "count" => x.count().cast(DataType::Int64),
            "sum" => x.sum(),
            "avg" | "mean" => f64_of(x).mean(),
            "min" => x.min(),
            "max" => x.max(),
            "collect_set" | "collect_list" | "array_agg" => x.implode(false),
            _ => return Err(error_at(node, format!("{name}(DISTINCT ...) is not supported"))),
        });
    }
    Ok(match name {
        "count" => {
            let star = matches!(args, [FunctionArgExpr::Wildcard]);
            let constant = args.len() == 1 && matches!(&args[0], FunctionArgExpr::Expr(SqlExpr::Value(v)) if !matches!(v.value, sqlparser::ast::Value::Null));
            if star || constant {
                return Ok(if streaming { len() } else { len().cast(DataType::Int64) });
            }
            n_args(name, args, 1, usize::MAX, node)?;
            let x = if args.len() == 1 {
                arg(0)?
            } else {
                let mut all = lit(true);
                for i in 0..args.len() {
                    all = all.and(arg(i)?.is_not_null());
                }
                when(all).then(lit(1i32)).otherwise(lit(NULL))
            };
            if streaming { x.count() } else { x.count().cast(DataType::Int64) }
        }
        "sum" => {
            n_args(name, args, 1, 1, node)?;
            let x = arg(0)?;
            if streaming {
                x.sum()
            } else {
                let t = match row.dtype(&x) {
                    Some(t) if t.is_float() => DataType::Float64,
                    Some(t) if t.is_integer() || t == DataType::Boolean => DataType::Int64,
                    Some(t) => return Err(error_at(node, format!("sum needs a numeric argument, not {t}"))),
                    None => DataType::Float64,
                };
                let x = x.cast(t);
                when(x.clone().count().eq(lit(0u32))).then(lit(NULL)).otherwise(x.sum())
            }
        }
        "avg" | "mean" => {
            n_args(name, args, 1, 1, node)?;
            let x = arg(0)?;
            if streaming { x.mean() } else { f64_of(x).mean() }
        }
        "min" => {
            n_args(name, args, 1, 1, node)?;
            arg(0)?.min()
        }
        "max" => {
            n_args(name, args, 1, 1, node)?;
            arg(0)?.max()
        }
        "first" | "first_value" | "any_value" | "last" | "last_value" => {
            n_args(name, args, 1, 2, node)?;
            let ignore_nulls = if args.len() == 2 { bool_arg(&args[1], node)? } else { false };
            let x = arg(0)?;
            let first = !name.starts_with("last");
            match (ignore_nulls, streaming) {
                (false, _) if first => x.first(),
                (false, _) => x.last(),
                (true, true) if first => crate::api::functions::first_value(x, true),
                (true, true) => crate::api::functions::last_value(x, true),
                (true, false) if first => x.drop_nulls().first(),
                (true, false) => x.drop_nulls().last(),
            }
        }
        "stddev" | "std" | "stddev_samp" | "stddev_pop" | "variance" | "var_samp" | "var_pop" => {
            n_args(name, args, 1, 1, node)?;
            if streaming {
                use crate::api::functions as f;
                let x = arg(0)?;
                return Ok(match name {
                    "stddev_pop" => f::stddev_pop(x),
                    "var_pop" => f::var_pop(x),
                    "variance" => f::variance(x),
                    "var_samp" => f::var_samp(x),
                    "stddev_samp" => f::stddev_samp(x),
                    _ => f::stddev(x),
                });
            }
            let x = f64_of(arg(0)?);
            match name {
                "stddev_pop" => x.std(0),
                "var_pop" => x.var(0),
                "variance" | "var_samp" => x.var(1),
                _ => x.std(1),
            }
        }
        "collect_list" | "array_agg" | "collect_set" => {
            n_args(name, args, 1, 1, node)?;
            let x = arg(0)?;
            if streaming {
                return Ok(if name == "collect_set" { crate::api::functions::collect_set(x) } else { crate::api::functions::collect_list(x) });
            }
            if name == "collect_set" { x.drop_nulls().unique_stable().implode(false) } else { x.drop_nulls().implode(false) }
        }
        "approx_count_distinct" => {
            n_args(name, args, 1, 2, node)?;
            let x = arg(0)?;
            let mut rsd = 0.05; // Spark's default
            if args.len() == 2 {
                let r = sql_arg(&args[1], node)?;
                rsd = match r {
                    SqlExpr::Value(v) => match &v.value {
                        sqlparser::ast::Value::Number(n, _) => n.parse::<f64>().ok(),
                        _ => None,
                    },
                    _ => None,
                }
                .filter(|r| *r > 0.0 && *r < 1.0)
                .ok_or_else(|| error_at(r, "the relative standard deviation of approx_count_distinct must be a number between 0 and 1"))?;
            }
            if streaming {
                return crate::api::functions::approx_count_distinct(x, rsd).map_err(|e| error_at(node, e));
            }
            x.drop_nulls().n_unique().cast(DataType::Int64)
        }
        "min_by" | "max_by" => {
            n_args(name, args, 2, 2, node)?;
            let (x, ord) = (arg(0)?, arg(1)?);
            if streaming {
                return Ok(if name == "min_by" { crate::api::functions::min_by(x, ord) } else { crate::api::functions::max_by(x, ord) });
            }
            let opts = SortMultipleOptions::default().with_order_descending(name == "max_by").with_nulls_last(true);
            x.filter(ord.clone().is_not_null()).sort_by([ord.clone().filter(ord.is_not_null())], opts).first()
        }
        "count_if" => {
            n_args(name, args, 1, 1, node)?;
            let p = arg(0)?;
            if streaming {
                return Ok(crate::api::functions::count_if(p));
            }
            p.cast(DataType::Int64).sum()
        }
        other => return Err(error_at(node, format!("{other} is not an aggregate function"))),
    })
}

/// A scalar function call.
pub(crate) fn scalar(tr: &Translator, name: &str, args: &[FunctionArgExpr], node: &SqlExpr) -> Result<Expr> {
    let arg = |i: usize| -> Result<Expr> { tr.arg(&args[i], node) };
    let all = || -> Result<Vec<Expr>> { (0..args.len()).map(arg).collect() };
    let n = |min: usize, max: usize| n_args(name, args, min, max, node);
    Ok(match name {
        // strings
        "lower" | "lcase" => {
            n(1, 1)?;
            arg(0)?.str().to_lowercase()
        }
        "upper" | "ucase" => {
            n(1, 1)?;
            arg(0)?.str().to_uppercase()
        }
        "length" | "char_length" | "character_length" => {
            n(1, 1)?;
            arg(0)?.cast(DataType::String).str().len_chars().cast(DataType::Int32)
        }
        "concat" => {
            n(1, usize::MAX)?;
            let parts: Vec<Expr> = all()?.into_iter().map(|e| e.cast(DataType::String)).collect();
            concat_str(parts, "", false)
        }
        "concat_ws" => {
            n(1, usize::MAX)?;
            let sep = str_arg(&args[0], "the separator of concat_ws", node)?;
            let parts: Vec<Expr> = (1..args.len()).map(arg).collect::<Result<Vec<_>>>()?.into_iter().map(|e| e.cast(DataType::String)).collect();
            if parts.is_empty() {
                lit("")
            } else {
                concat_str(parts, &sep, true)
            }
        }
        "trim" | "ltrim" | "rtrim" => {
            n(1, 2)?;
            let what = if args.len() == 2 { arg(1)? } else { lit(" ") };
            let s = arg(0)?.str();
            match name {
                "ltrim" => s.strip_chars_start(what),
                "rtrim" => s.strip_chars_end(what),
                _ => s.strip_chars(what),
            }
        }
        "substring" | "substr" => {
            n(2, 3)?;
            let len = if args.len() == 3 { Some(arg(2)?) } else { None };
            substring(arg(0)?, arg(1)?, len)
        }
        "split" => {
            n(2, 3)?;
            let pat = str_arg(&args[1], "the pattern of split", node)?;
            if args.len() == 3 {
                return Err(error_at(node, "split with a limit is not supported"));
            }
            let literal = unescape_literal_regex(&pat).ok_or_else(|| {
                error_at(node, "split supports a pattern that is a plain string (regular expressions with operators are not supported)")
            })?;
            arg(0)?.str().split(lit(literal))
        }
        "regexp_extract" => {
            n(2, 3)?;
            let pat = str_arg(&args[1], "the pattern of regexp_extract", node)?;
            let idx = if args.len() == 3 {
                let i = sql_arg(&args[2], node)?;
                int_literal(i).filter(|v| *v >= 0).ok_or_else(|| error_at(i, "the group index of regexp_extract must be a non-negative integer"))?
            } else {
                1
            };
            if regex_groups(&pat) < idx as usize {
                return Err(error_at(
                    node,
                    format!("[INVALID_PARAMETER_VALUE.REGEX_GROUP_INDEX] The regex has {} groups, but the index is {idx}", regex_groups(&pat)),
                ));
            }
            let s = arg(0)?;
            when(s.clone().is_null()).then(lit(NULL).cast(DataType::String)).otherwise(s.str().extract(lit(pat), idx as usize).fill_null(lit("")))
        }
        "replace" => {
            n(2, 3)?;
            let with = if args.len() == 3 { arg(2)? } else { lit("") };
            arg(0)?.str().replace_all(arg(1)?, with, true)
        }
        "startswith" | "endswith" => {
            n(2, 2)?;
            if name == "startswith" { arg(0)?.str().starts_with(arg(1)?) } else { arg(0)?.str().ends_with(arg(1)?) }
        }
        // math
        "abs" => {
            n(1, 1)?;
            arg(0)?.abs()
        }
        "round" => {
            n(1, 2)?;
            let scale = if args.len() == 2 {
                let s = sql_arg(&args[1], node)?;
                int_literal(s).ok_or_else(|| error_at(s, "the scale of round must be an integer literal"))?
            } else {
                0
            };
            let x = arg(0)?;
            spark_round(x.clone(), scale.clamp(-30, 30) as i32, tr.dtype(&x))
        }
        "floor" | "ceil" | "ceiling" => {
            n(1, 1)?;
            ceil_floor(arg(0)?, name != "floor", tr)
        }
        "greatest" | "least" => {
            n(2, usize::MAX)?;
            let xs = all()?;
            if name == "greatest" { polars::lazy::dsl::max_horizontal(xs)? } else { polars::lazy::dsl::min_horizontal(xs)? }
        }
        // conditionals
        "coalesce" => {
            n(1, usize::MAX)?;
            coalesce(&all()?)
        }
        "nvl" | "ifnull" => {
            n(2, 2)?;
            coalesce(&all()?)
        }
        "nullif" => {
            n(2, 2)?;
            let (a, b) = tr.coerce(arg(0)?, arg(1)?);
            when(a.clone().eq(b)).then(lit(NULL)).otherwise(a)
        }
        "if" => {
            n(3, 3)?;
            when(arg(0)?).then(arg(1)?).otherwise(arg(2)?)
        }
        "isnull" => {
            n(1, 1)?;
            arg(0)?.is_null()
        }
        "isnotnull" => {
            n(1, 1)?;
            arg(0)?.is_not_null()
        }
        // casts by type name
        "int" | "bigint" | "double" | "float" | "string" | "boolean" | "timestamp" | "date" => {
            n(1, 1)?;
            let t = match name {
                "int" => DataType::Int32,
                "bigint" => DataType::Int64,
                "double" => DataType::Float64,
                "float" => DataType::Float32,
                "string" => DataType::String,
                "boolean" => DataType::Boolean,
                "timestamp" => ts_type(),
                _ => DataType::Date,
            };
            tr.cast(arg(0)?, t)
        }
        // arrays
        "array_sort" => {
            n(1, 1)?;
            arg(0)?.list().sort(SortOptions::default().with_nulls_last(true))
        }
        "size" => {
            n(1, 1)?;
            let a = arg(0)?;
            when(a.clone().is_null()).then(lit(-1i32)).otherwise(a.list().len().cast(DataType::Int32))
        }
        "array_contains" => {
            n(2, 2)?;
            arg(0)?.list().contains(arg(1)?, false)
        }
        // time
        "hour" | "minute" | "second" | "year" | "month" | "day" | "dayofmonth" | "dayofweek" => {
            n(1, 1)?;
            let x = to_ts(arg(0)?, tr);
            date_part(name, x).ok_or_else(|| error_at(node, format!("{name} is not supported")))?
        }
        "to_date" | "to_timestamp" => {
            n(1, 2)?;
            let fmt = if args.len() == 2 { Some(java_to_strftime(&str_arg(&args[1], "the format", node)?)) } else { None };
            let x = arg(0)?;
            let t = match (tr.dtype(&x), fmt) {
                (Some(DataType::String), fmt) => parse_timestamp(x, fmt.as_deref()),
                (_, _) => tr.cast(x, ts_type()),
            };
            if name == "to_date" { t.cast(DataType::Date) } else { t }
        }
        "date_trunc" => {
            n(2, 2)?;
            let unit = str_arg(&args[0], "the unit of date_trunc", node)?;
            let every = match unit.to_lowercase().as_str() {
                "year" | "yyyy" | "yy" => "1y",
                "quarter" => "1q",
                "month" | "mon" | "mm" => "1mo",
                "week" => "1w",
                "day" | "dd" => "1d",
                "hour" => "1h",
                "minute" => "1m",
                "second" => "1s",
                "millisecond" => "1ms",
                "microsecond" => "1us",
                other => return Err(error_at(node, format!("date_trunc does not know the unit {other:?}"))),
            };
            to_ts(arg(1)?, tr).dt().truncate(lit(every))
        }
        "date_format" => {
            n(2, 2)?;
            let fmt = java_to_strftime(&str_arg(&args[1], "the format of date_format", node)?);
            to_ts(arg(0)?, tr).dt().strftime(&fmt)
        }
        "unix_timestamp" => {
            n(0, 2)?;
            let t = match args.len() {
                0 => now(),
                1 => to_ts(arg(0)?, tr),
                _ => parse_timestamp(arg(0)?, Some(&java_to_strftime(&str_arg(&args[1], "the format", node)?))),
            };
            t.cast(DataType::Int64).floor_div(lit(1_000_000i64))
        }
        "current_timestamp" | "now" => {
            n(0, 0)?;
            now()
        }
        "current_date" => {
            n(0, 0)?;
            now().cast(DataType::Date)
        }
        // streaming windows
        "window" => {
            n(2, 4)?;
            let time = arg(0)?;
            let d = str_arg(&args[1], "the window duration", node)?;
            let s = if args.len() > 2 { Some(str_arg(&args[2], "the slide duration", node)?) } else { None };
            let o = if args.len() > 3 { Some(str_arg(&args[3], "the start time", node)?) } else { None };
            if !matches!(tr.dtype(&time), Some(DataType::Datetime(..)) | None) {
                return Err(error_at(node, "window() needs a timestamp column"));
            }
            crate::api::functions::window(time, &d, s.as_deref(), o.as_deref()).map_err(|e| error_at(node, e))?
        }
        "session_window" => {
            n(2, 2)?;
            let time = arg(0)?;
            let gap = str_arg(&args[1], "the session gap (a literal; dynamic gaps are not supported)", node)?;
            crate::api::functions::session_window(time, &gap).map_err(|e| error_at(node, e))?
        }
        "window_time" => {
            n(1, 1)?;
            // The window's end minus 1 µs (Spark), carrying the window's watermark.
            crate::api::functions::window_time(arg(0)?)
        }
        _ => {
            let mut candidates: Vec<&str> = function_names();
            candidates.retain(|c| *c != name);
            let close: Vec<String> = suggestions(name, candidates).into_iter().take(3).map(|s| quote(&s)).collect();
            return Err(error_at(
                node,
                format!(
                    "[UNRESOLVED_ROUTINE] Cannot resolve function {} on search path [`system`.`builtin`, `system`.`session`, \
                     `spark_catalog`.`default`]. Did you mean one of the following? [{}].",
                    quote(name),
                    close.join(", ")
                ),
            ));
        }
    })
}

/// Spark's `substring(s, pos, len)` (`UTF8String.substringSQL`): 1-based `pos`, 0 counts
/// as 1, negative counts from the end; a start before the beginning shortens the length.
pub(crate) fn substring(s: Expr, pos: Expr, len: Option<Expr>) -> Expr {
    let s = s.cast(DataType::String);
    let pos = pos.cast(DataType::Int64);
    let chars = s.clone().str().len_chars().cast(DataType::Int64);
    let start = when(pos.clone().gt(lit(0i64)))
        .then(pos.clone() - lit(1i64))
        .when(pos.clone().lt(lit(0i64)))
        .then(chars + pos)
        .otherwise(lit(0i64));
    let begin = when(start.clone().lt(lit(0i64))).then(lit(0i64)).otherwise(start.clone());
    let length = match len {
        Some(l) => {
            let n = start + l.cast(DataType::Int64) - begin.clone();
            when(n.clone().lt(lit(0i64))).then(lit(0i64)).otherwise(n)
        }
        None => lit(i64::MAX),
    };
    s.str().slice(begin, length.cast(DataType::UInt64))
}

/// `ceil` / `floor`: a `bigint` for numbers (Spark).
pub(crate) fn ceil_floor(x: Expr, ceil: bool, tr: &Translator) -> Expr {
    match tr.dtype(&x) {
        Some(t) if t.is_integer() => x.cast(DataType::Int64),
        _ => {
            let x = x.cast(DataType::Float64);
            (if ceil { x.ceil() } else { x.floor() }).cast(DataType::Int64)
        }
    }
}

/// A timestamp from a timestamp, date or string.
fn to_ts(x: Expr, tr: &Translator) -> Expr {
    match tr.dtype(&x) {
        Some(DataType::String) => parse_timestamp(x, None),
        Some(DataType::Datetime(..)) => x,
        _ => x.cast(ts_type()),
    }
}

/// A part of a timestamp as an `int` (Spark's `hour`, `minute`, ...; `dayofweek` 1 =
/// Sunday).
pub(crate) fn date_part(name: &str, x: Expr) -> Option<Expr> {
    let dt = x.clone().dt();
    Some(
        match name {
            "hour" => dt.hour(),
            "minute" => dt.minute(),
            "second" => dt.second(),
            "year" => dt.year(),
            "month" => dt.month(),
            "day" | "dayofmonth" => dt.day(),
            "dayofweek" | "dow" => return Some((x.dt().weekday().cast(DataType::Int32) % lit(7i32)) + lit(1i32)),
            _ => return None,
        }
        .cast(DataType::Int32),
    )
}

/// The time at evaluation (each micro-batch reads the clock when it runs).
fn now() -> Expr {
    lit(0i64).map(
        |c| {
            let us = chrono::Utc::now().timestamp_micros();
            Column::new(c.name().clone(), [us]).cast(&ts_type())
        },
        |_, f| Ok(Field::new(f.name().clone(), ts_type())),
    )
}

/// Strings to timestamps (µs, UTC), with a strftime format or Spark's default forms.
pub(crate) fn parse_timestamp(x: Expr, fmt: Option<&str>) -> Expr {
    match fmt {
        Some(f) => x.str().to_datetime(
            Some(TimeUnit::Microseconds),
            None,
            StrptimeOptions { format: Some(f.into()), strict: false, exact: true, cache: true },
            lit("raise"),
        ),
        None => x.map(
            |c| {
                let s = c.str()?;
                let v: Int64Chunked = s.iter().map(|o| o.and_then(parse_timestamp_str)).collect();
                Ok(v.into_series().with_name(c.name().clone()).cast(&ts_type())?.into())
            },
            |_, f| Ok(Field::new(f.name().clone(), ts_type())),
        ),
    }
}

/// `yyyy-MM-dd`, `yyyy-MM-dd HH:mm[:ss[.f]]` (or `T`), optional `Z` or offset: µs (UTC).
pub(crate) fn parse_timestamp_str(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(t) = chrono::DateTime::parse_from_str(s, f) {
            return Some(t.timestamp_micros());
        }
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc().timestamp_micros())
}

/// A Java `DateTimeFormatter` pattern (Spark's) as a strftime format.
pub(crate) fn java_to_strftime(p: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = p.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '\'' {
                out.push(chars[j]);
                j += 1;
            }
            if j == i + 1 && j < chars.len() {
                out.push('\''); // '' is a quote
            }
            i = j + 1;
            continue;
        }
        let mut run = 1;
        while i + run < chars.len() && chars[i + run] == c {
            run += 1;
        }
        let spec = match (c, run) {
            ('y', 2) => "%y".to_string(),
            ('y', _) | ('u', _) => "%Y".to_string(),
            ('M', 1) => "%-m".to_string(),
            ('M', 2) => "%m".to_string(),
            ('M', 3) => "%b".to_string(),
            ('M', _) => "%B".to_string(),
            ('d', 1) => "%-d".to_string(),
            ('d', _) => "%d".to_string(),
            ('H', 1) => "%-H".to_string(),
            ('H', _) => "%H".to_string(),
            ('h', 1) => "%-I".to_string(),
            ('h', _) => "%I".to_string(),
            ('m', 1) => "%-M".to_string(),
            ('m', _) => "%M".to_string(),
            ('s', 1) => "%-S".to_string(),
            ('s', _) => "%S".to_string(),
            ('S', n) => format!("%{}f", n.min(9)),
            ('a', _) => "%p".to_string(),
            ('E', 1..=3) => "%a".to_string(),
            ('E', _) => "%A".to_string(),
            ('D', _) => "%j".to_string(),
            ('%', _) => "%%".repeat(run),
            (c, n) if c.is_ascii_alphabetic() => c.to_string().repeat(n),
            (c, n) => c.to_string().repeat(n),
        };
        out.push_str(&spec);
        i += run;
    }
    out
}

/// Spark's `round(x, d)`: half up (away from zero) on the decimal value of `x` as printed
/// (so `round(2.675, 2)` is 2.68, as in Spark, not 2.67 as binary arithmetic gives).
fn spark_round(x: Expr, scale: i32, dtype: Option<DataType>) -> Expr {
    match dtype {
        Some(t) if t.is_integer() && scale >= 0 => x,
        Some(t) if t.is_integer() => {
            let p = 10i64.checked_pow((-scale) as u32).unwrap_or(i64::MAX);
            let half = p / 2;
            let x64 = x.clone().cast(DataType::Int64);
            let up = ((x64.clone().abs() + lit(half)).floor_div(lit(p))) * lit(p);
            when(x64.lt(lit(0i64))).then(lit(0i64) - up.clone()).otherwise(up).cast(t)
        }
        _ => x.cast(DataType::Float64).map(
            move |c| {
                let v = c.f64()?;
                let out: Float64Chunked = v.iter().map(|o| o.map(|f| round_half_up(f, scale))).collect();
                Ok(out.into_series().with_name(c.name().clone()).into())
            },
            |_, f| Ok(Field::new(f.name().clone(), DataType::Float64)),
        ),
    }
}

/// `v` rounded half up at `scale` decimals, on its shortest decimal form.
pub(crate) fn round_half_up(v: f64, scale: i32) -> f64 {
    if !v.is_finite() {
        return v;
    }
    let neg = v < 0.0;
    let s = format!("{}", v.abs());
    let (int, frac) = s.split_once('.').unwrap_or((&s, ""));
    let digits: Vec<u8> = int.bytes().chain(frac.bytes()).map(|b| b - b'0').collect();
    let point = int.len() as i64;
    let keep = point + scale as i64;
    if keep < 0 {
        return if neg { -0.0 } else { 0.0 };
    }
    let keep = keep as usize;
    if keep >= digits.len() {
        return v;
    }
    let mut kept: Vec<u8> = digits[..keep].to_vec();
    if digits[keep] >= 5 {
        let mut i = kept.len();
        loop {
            if i == 0 {
                kept.insert(0, 1);
                break;
            }
            i -= 1;
            if kept[i] == 9 {
                kept[i] = 0;
            } else {
                kept[i] += 1;
                break;
            }
        }
    }
    let carried = kept.len() as i64 - keep as i64; // 1 when a carry added a digit
    let point = (point + carried) as usize;
    let mut text = String::new();
    for (i, d) in kept.iter().enumerate() {
        if i == point {
            text.push('.');
        }
        text.push((b'0' + d) as char);
    }
    for _ in kept.len()..point {
        text.push('0');
    }
    let r: f64 = if text.is_empty() { 0.0 } else { text.parse().unwrap_or(v.abs()) };
    if neg { -r } else { r }
}

/// The literal text a regular expression matches, if it has no operators (`\.` etc. are
/// escaped characters).
fn unescape_literal_regex(p: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '.' | '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$' => return None,
            other => out.push(other),
        }
    }
    Some(out)
}

/// The number of capture groups of a regular expression (`(` not followed by `?`).
fn regex_groups(p: &str) -> usize {
    let b = p.as_bytes();
    let mut n = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'(' if b.get(i + 1) != Some(&b'?') => n += 1,
            _ => {}
        }
        i += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_is_half_up_on_the_decimal_value() {
        assert_eq!(round_half_up(2.675, 2), 2.68);
        assert_eq!(round_half_up(-2.5, 0), -3.0);
        assert_eq!(round_half_up(2.4, 0), 2.0);
        assert_eq!(round_half_up(9.995, 2), 10.0);
        assert_eq!(round_half_up(123.456, -1), 120.0);
        assert_eq!(round_half_up(0.0001, 2), 0.0);
    }

    #[test]
    fn java_patterns_become_strftime() {
        assert_eq!(java_to_strftime("yyyy-MM-dd HH:mm:ss"), "%Y-%m-%d %H:%M:%S");
        assert_eq!(java_to_strftime("yyyy-MM-dd'T'HH:mm"), "%Y-%m-%dT%H:%M");
    }

    #[test]
    fn timestamps_parse_in_spark_forms() {
        assert_eq!(parse_timestamp_str("1970-01-01 00:00:01"), Some(1_000_000));
        assert_eq!(parse_timestamp_str("1970-01-01T00:00:00.5Z"), Some(500_000));
        assert_eq!(parse_timestamp_str("1970-01-02"), Some(86_400_000_000));
        assert_eq!(parse_timestamp_str("yesterday"), None);
    }
}
