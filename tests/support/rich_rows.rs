//! One frame with every kind of column the file sink writes, for the tests that read a
//! sink's output back (`user_api.rs` with Sluice's static reader, `python_readers.rs`
//! with pyarrow, Polars and DuckDB).

use polars::prelude::*;

/// 2024-03-01T08:00:00Z in µs.
pub const BASE_US: i64 = 1_709_280_000_000_000;

/// Rows `ids`, as a windowed aggregation writes them: `id` Int64, `name` String (null
/// when `id % 3 == 2`), `t` timestamp (µs; `id` minutes after [`BASE_US`], plus
/// 0.123456 s for odd ids), `window` struct {start, end} (the 10-minute window of
/// `id / 10`), `tags` list of strings (empty when `id % 4 == 2`, null when 3), `times`
/// list of two timestamps (`t` of `id` and of `id + 1`).
pub fn rich_rows(ids: &[i64]) -> DataFrame {
    let us = |i: i64| BASE_US + i * 60_000_000 + if i % 2 == 1 { 123_456 } else { 0 };
    let dt = DataType::Datetime(TimeUnit::Microseconds, None);
    let names: Vec<Option<String>> = ids.iter().map(|i| (i % 3 != 2).then(|| format!("user-{i}"))).collect();
    let start = Series::new("start".into(), ids.iter().map(|i| BASE_US + (i / 10) * 600_000_000).collect::<Vec<_>>()).cast(&dt).unwrap();
    let end = Series::new("end".into(), ids.iter().map(|i| BASE_US + (i / 10 + 1) * 600_000_000).collect::<Vec<_>>()).cast(&dt).unwrap();
    let window = StructChunked::from_series("window".into(), ids.len(), [start, end].iter()).unwrap().into_series();
    let tags: Vec<Option<Series>> = ids
        .iter()
        .map(|i| match i % 4 {
            3 => None,
            2 => Some(Series::new_empty("".into(), &DataType::String)),
            _ => Some(Series::new("".into(), vec![format!("a{i}"), "b".to_string()])),
        })
        .collect();
    let times: Vec<Series> = ids.iter().map(|i| Series::new("".into(), vec![us(*i), us(*i + 1)]).cast(&dt).unwrap()).collect();
    DataFrame::new(
        ids.len(),
        vec![
            Column::new("id".into(), ids),
            Column::new("name".into(), names),
            Column::from(Series::new("t".into(), ids.iter().map(|i| us(*i)).collect::<Vec<_>>()).cast(&dt).unwrap()),
            Column::from(window),
            Column::new("tags".into(), tags),
            Column::new("times".into(), times),
        ],
    )
    .unwrap()
}
