//! How state rows are shown to users (by [`read_state`](crate::EngineSession::read_state),
//! [`StreamingQuery::state`](crate::StreamingQuery::state) and the HTTP endpoint): an
//! aggregation's rows as the query outputs them, followed by its raw partial aggregates
//! as `raw.<column>`; other operators' rows as stored. And key lookups over them.

use std::sync::Arc;

use polars::prelude::*;

use crate::Result;

/// Turns an operator's state rows into the rows it stands for (an aggregation: keys and
/// finished aggregates, one row per state row, in order).
pub type StateFinalizer = Arc<dyn Fn(&DataFrame) -> Result<DataFrame> + Send + Sync>;

/// `state` as shown: with a `finalizer`, its output followed by the non-key columns of
/// `state` as `raw.<column>`; without, `state` itself.
///
/// # Errors
/// When the finalizer fails on `state`.
pub fn show(state: &DataFrame, key_columns: &[String], finalizer: Option<&StateFinalizer>) -> Result<DataFrame> {
    let Some(f) = finalizer else { return Ok(state.clone()) };
    let mut shown = f(state)?;
    for c in state.columns() {
        if !key_columns.iter().any(|k| k == c.name().as_str()) {
            shown.with_column(c.clone().with_name(format!("raw.{}", c.name()).into()))?;
        }
    }
    Ok(shown)
}

/// The rows of `shown` matching every `(column, value)` of `key`, values compared as
/// text: a column is cast to a string (a timestamp reads `2024-03-01 08:30:00`); a
/// struct column (a `window`) matches on its `start` field. The column `key` stands for
/// the first of `key_columns`.
///
/// # Errors
/// [`crate::SluiceError::InvalidArgument`] for a column `shown` does not have.
pub fn lookup(shown: &DataFrame, key_columns: &[String], key: &[(String, String)]) -> Result<DataFrame> {
    let mut predicate = lit(true);
    for (c, v) in key {
        let name = if c == "key" { key_columns.first().cloned().unwrap_or_else(|| c.clone()) } else { c.clone() };
        let dtype = shown.column(&name).map_err(|_| {
            crate::SluiceError::InvalidArgument(format!(
                "no column {name:?} in the state (columns: {})",
                shown.get_column_names().iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")
            ))
        })?.dtype().clone();
        let e = match dtype {
            DataType::Struct(_) => col(name.as_str()).struct_().field_by_name("start"),
            _ => col(name.as_str()),
        };
        predicate = predicate.and(e.cast(DataType::String).eq(lit(v.clone())));
    }
    Ok(shown.clone().lazy().filter(predicate).collect()?)
}
