//! Late rows: the input rows a stateful operator drops because the watermark passed their
//! event time, captured for the late-rows side output
//! ([`DataStreamWriter::with_late_rows`](crate::DataStreamWriter::with_late_rows)).
//!
//! An operator hands them over ([`StatefulOperator::take_late_rows`](super::StatefulOperator::take_late_rows))
//! as its input columns plus [`EVENT_TIME`] (µs) and, for a windowed or session
//! aggregation, [`WINDOW_START`] / [`WINDOW_END`] (µs). What counts as one late row:
//!
//! | operator | a late row | `event_time` |
//! |---|---|---|
//! | aggregation by `window` | an input row *and one window it falls in* whose end is at or before the watermark: a row of a sliding window is written once per window that dropped it (and not for a window that still counted it) | the row's event time |
//! | aggregation by a timestamp column | an input row whose key time is at or before the watermark | the key time |
//! | session window | an input row whose own session (event time + gap) ends at or before the watermark | the row's event time |
//! | deduplication, flatMapGroupsWithState (event-time timeout) | an input row whose event time is at or before the watermark | the row's event time |
//! | stream-stream join | an input row of either side whose event time is at or before the watermark | the row's event time |

use polars::prelude::*;

use crate::Result;

/// The event time (µs) a late row failed the watermark with.
pub const EVENT_TIME: &str = "__late_event_time";
/// The start (µs) of the window (or session) a late row was dropped from.
pub const WINDOW_START: &str = "__late_window_start";
/// The end (µs) of that window.
pub const WINDOW_END: &str = "__late_window_end";

/// The rows of `df` where `mask` is true, with [`EVENT_TIME`] from `time_column` (a
/// timestamp or Int64 µs).
///
/// # Errors
/// When `time_column` is missing.
pub fn late_rows(df: &DataFrame, mask: &BooleanChunked, time_column: &str) -> Result<DataFrame> {
    let mut late = df.filter(mask)?;
    let us = crate::time::event_time::micros_of(late.column(time_column)?)?;
    late.with_column(us.with_name(EVENT_TIME.into()).into_column())?;
    Ok(late)
}

/// `df` without its late rows (event time in `time_column` at or before
/// `late_watermark_ms`; none without a watermark), how many were dropped, and with `keep`
/// the dropped rows as [`late_rows`] gives them. One late mask serves all three.
///
/// # Errors
/// When `time_column` is missing or not a timestamp / Int64 µs column.
pub fn drop_late_rows(
    df: DataFrame,
    time_column: &str,
    late_watermark_ms: Option<i64>,
    keep: bool,
) -> Result<(DataFrame, u64, Option<DataFrame>)> {
    let Some(wm) = late_watermark_ms else { return Ok((df, 0, None)) };
    let mask = crate::time::EventTimeColumn::new(time_column).at_or_before(&df, wm)?;
    let dropped = mask.sum().unwrap_or(0) as u64;
    if dropped == 0 {
        return Ok((df, 0, None));
    }
    let late = if keep { Some(late_rows(&df, &mask, time_column)?) } else { None };
    Ok((df.filter(&!&mask)?, dropped, late))
}

/// The columns of the late-rows side output, in order: `batch_id` (UInt64),
/// `operator_id` (UInt32, plan order as in `explain`), `operator` (its name),
/// `watermark` (the operator's watermark for late events that the row failed),
/// `event_time`, `window_start`, `window_end` (timestamps; the window null for operators
/// without one), `row` (the input row as a JSON object, so that every operator's rows,
/// whatever their columns, share one schema).
pub fn output_schema() -> Schema {
    let ts = DataType::Datetime(TimeUnit::Microseconds, None);
    Schema::from_iter([
        Field::new("batch_id".into(), DataType::UInt64),
        Field::new("operator_id".into(), DataType::UInt32),
        Field::new("operator".into(), DataType::String),
        Field::new("watermark".into(), ts.clone()),
        Field::new("event_time".into(), ts.clone()),
        Field::new("window_start".into(), ts.clone()),
        Field::new("window_end".into(), ts),
        Field::new("row".into(), DataType::String),
    ])
}

/// Each row of `df` as a JSON object (Arrow's JSON writer; nulls written as `null`).
///
/// # Errors
/// When a column type has no JSON form.
pub fn rows_as_json(df: &DataFrame) -> Result<Vec<String>> {
    use arrow::datatypes::DataType as A;
    if df.width() == 0 {
        return Ok(vec!["{}".to_string(); df.height()]);
    }
    let batch = crate::interop::df_to_record_batch(df)?;
    let mut fields = Vec::new();
    let mut cols = Vec::new();
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        let to = match f.data_type() {
            A::Utf8View => Some(A::Utf8),
            A::BinaryView => Some(A::Binary),
            _ => None,
        };
        match to {
            Some(t) => {
                cols.push(arrow::compute::cast(c, &t)?);
                fields.push(f.as_ref().clone().with_data_type(t));
            }
            None => {
                cols.push(c.clone());
                fields.push(f.as_ref().clone());
            }
        }
    }
    let batch = arrow::array::RecordBatch::try_new(std::sync::Arc::new(arrow::datatypes::Schema::new(fields)), cols)?;
    let mut buf = Vec::new();
    {
        let mut w = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow::json::writer::LineDelimited>(&mut buf);
        w.write(&batch)?;
        w.finish()?;
    }
    let text = String::from_utf8(buf).map_err(|e| crate::SluiceError::Internal(e.to_string()))?;
    Ok(text.lines().map(str::to_string).collect())
}

/// The side-output rows of one operator's late `rows` (input columns plus this module's
/// columns) in batch `batch_id`, failed against `watermark_ms`.
///
/// # Errors
/// When a column has no JSON form.
pub fn output_rows(batch_id: u64, operator_id: usize, operator: &str, watermark_ms: i64, rows: &DataFrame) -> Result<DataFrame> {
    let n = rows.height();
    let ts = DataType::Datetime(TimeUnit::Microseconds, None);
    let time = |name: &str| -> Result<Column> {
        Ok(match rows.column(name) {
            Ok(c) => c.cast(&DataType::Int64)?.cast(&ts)?,
            Err(_) => Column::full_null(name.into(), n, &ts),
        })
    };
    let input: Vec<PlSmallStr> = rows
        .get_column_names()
        .into_iter()
        .filter(|c| ![EVENT_TIME, WINDOW_START, WINDOW_END].contains(&c.as_str()))
        .cloned()
        .collect();
    let json = rows_as_json(&rows.select(input)?)?;
    let cols = vec![
        Column::new_scalar("batch_id".into(), Scalar::from(batch_id), n),
        Column::new_scalar("operator_id".into(), Scalar::from(operator_id as u32), n),
        Column::new_scalar("operator".into(), Scalar::from(PlSmallStr::from(operator)), n),
        Column::new_scalar("watermark".into(), Scalar::new(ts.clone(), AnyValue::Datetime(watermark_ms * 1000, TimeUnit::Microseconds, None)), n),
        time(EVENT_TIME)?.with_name("event_time".into()),
        time(WINDOW_START)?.with_name("window_start".into()),
        time(WINDOW_END)?.with_name("window_end".into()),
        Column::new("row".into(), json),
    ];
    Ok(DataFrame::new(n, cols)?)
}
