//! Event time as the stateful operators compare it with watermarks: one µs cast, one
//! late/expired mask, one split.
//!
//! Spark keeps event time as µs since the epoch and watermarks as ms; a row (or a state
//! row) is *late* / *expired* when its event time is at or before the watermark:
//! `event_time_us <= watermark_ms * 1000`. Null event times are never late. A window key
//! is held in state as its start (Int64 µs) and its event time is its end, so an
//! [`EventTimeColumn`] carries an offset added to the column (the window's length).

use polars::prelude::*;

use crate::Result;

/// `e` as µs since the epoch (Int64; null stays null). Works on `Datetime` columns of any
/// unit and on Int64 columns already holding µs.
pub fn micros(e: Expr) -> Expr {
    e.cast(DataType::Datetime(TimeUnit::Microseconds, None)).cast(DataType::Int64)
}

/// The values of `column` as µs since the epoch (see [`micros`]).
///
/// # Errors
/// [`crate::SluiceError::Polars`] when the column cannot be cast to a timestamp.
pub fn micros_of(column: &Column) -> Result<Int64Chunked> {
    let us = column
        .as_materialized_series()
        .cast(&DataType::Datetime(TimeUnit::Microseconds, None))?
        .cast(&DataType::Int64)?;
    Ok(us.i64()?.clone())
}

/// A watermark in ms as the µs bound rows are compared with (saturating).
pub fn watermark_micros(watermark_ms: i64) -> i64 {
    watermark_ms.saturating_mul(1000)
}

/// Where a frame's event time is: `column` (a timestamp, or Int64 µs) plus `offset_us`
/// (a window's length when `column` holds window starts; 0 otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTimeColumn {
    /// The column name.
    pub column: String,
    /// µs added to the column's value to get the event time.
    pub offset_us: i64,
}

impl EventTimeColumn {
    /// The event time is the column's value.
    pub fn new(column: impl Into<String>) -> Self {
        Self { column: column.into(), offset_us: 0 }
    }

    /// The event time is the column's value plus `offset_us`.
    pub fn with_offset(column: impl Into<String>, offset_us: i64) -> Self {
        Self { column: column.into(), offset_us }
    }

    /// `true` for rows of `df` whose event time is at or before `watermark_ms`; never null
    /// (a null event time is not late).
    ///
    /// # Errors
    /// [`crate::SluiceError::Polars`] when the column is missing or not a timestamp.
    pub fn at_or_before(&self, df: &DataFrame, watermark_ms: i64) -> Result<BooleanChunked> {
        let limit = watermark_micros(watermark_ms).saturating_sub(self.offset_us);
        let us = micros_of(df.column(&self.column)?)?;
        Ok(us.lt_eq(limit).fill_null_with_values(false)?)
    }

    /// Splits `df` into (rows after `watermark_ms`, rows at or before it).
    ///
    /// # Errors
    /// As [`at_or_before`](Self::at_or_before).
    pub fn split(&self, df: &DataFrame, watermark_ms: i64) -> Result<(DataFrame, DataFrame)> {
        let mask = self.at_or_before(df, watermark_ms)?;
        split(df, &mask)
    }

    /// `df` without its late rows (at or before `late_watermark_ms`), and how many were
    /// dropped. Without a watermark (`None`) nothing is late.
    ///
    /// # Errors
    /// As [`at_or_before`](Self::at_or_before).
    pub fn drop_late(&self, df: DataFrame, late_watermark_ms: Option<i64>) -> Result<(DataFrame, u64)> {
        let Some(wm) = late_watermark_ms else { return Ok((df, 0)) };
        let late = self.at_or_before(&df, wm)?;
        let dropped = late.sum().unwrap_or(0) as u64;
        if dropped == 0 {
            return Ok((df, 0));
        }
        Ok((df.filter(&!&late)?, dropped))
    }
}

/// Splits `df` by `mask` into (rows where it is false, rows where it is true).
///
/// # Errors
/// [`crate::SluiceError::Polars`] when the lengths differ.
pub fn split(df: &DataFrame, mask: &BooleanChunked) -> Result<(DataFrame, DataFrame)> {
    if !mask.any() {
        return Ok((df.clone(), df.clear()));
    }
    Ok((df.filter(&!mask)?, df.filter(mask)?))
}

/// Removes from `state` the rows whose event time `key` is at or before `watermark_ms`:
/// returns (kept state, evicted rows, `upserts` without the evicted ones: rows updated and
/// evicted in the same batch leave state, so they are not upserts). Without key or
/// watermark nothing is evicted.
///
/// # Errors
/// [`crate::SluiceError::Polars`] when the key column is missing or not a time.
pub fn evict(
    state: DataFrame,
    upserts: DataFrame,
    key: Option<&EventTimeColumn>,
    watermark_ms: Option<i64>,
) -> Result<(DataFrame, DataFrame, DataFrame)> {
    let (Some(key), Some(wm)) = (key, watermark_ms) else {
        let none = state.clear();
        return Ok((state, none, upserts));
    };
    let (kept, evicted) = key.split(&state, wm)?;
    if evicted.height() == 0 {
        return Ok((kept, evicted, upserts));
    }
    let (upserts, _) = key.split(&upserts, wm)?;
    Ok((kept, evicted, upserts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_means_at_or_before_and_nulls_are_never_late() {
        let df = df!("t" => [Some(1_000_000i64), Some(2_000_000), None], "w" => [Some(0i64), Some(1_000_000), Some(-5)])
            .unwrap();
        let t = EventTimeColumn::new("t");
        let bools = |m: BooleanChunked| (0..m.len()).map(|i| m.get(i)).collect::<Vec<_>>();
        assert_eq!(bools(t.at_or_before(&df, 1_000).unwrap()), [Some(true), Some(false), Some(false)]);
        // A window starting at w of length 1 s: its event time (end) is w + 1 s.
        let w = EventTimeColumn::with_offset("w", 1_000_000);
        assert_eq!(bools(w.at_or_before(&df, 1_000).unwrap()), [Some(true), Some(false), Some(true)]);
        let (kept, dropped) = t.drop_late(df.clone(), Some(1_000)).unwrap();
        assert_eq!((kept.height(), dropped), (2, 1));
        let (kept, late) = w.split(&df, 1_000).unwrap();
        assert_eq!((kept.height(), late.height()), (1, 2));
        assert_eq!(t.drop_late(df, None).unwrap().1, 0);
    }
}
