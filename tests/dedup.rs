//! Streaming deduplication beyond the oracle cases: stop and restart after every batch
//! (both variants), state bounds, metrics, and the analysis errors raised at `start()`.

#[path = "../examples/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::Path;

use sluice::prelude::*;
use sluice::connectors::MemoryTable;
use sluice::connectors::MemoryStream;
use sluice::{SluiceError, StreamingQueryProgress};

const BASE_US: i64 = 1_709_280_000_000_000; // 2024-03-01T08:00:00Z

fn events(rows: &[(String, i64, i64)]) -> DataFrame {
    let ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let ts: Vec<i64> = rows.iter().map(|r| BASE_US + r.1 * 1_000_000).collect();
    let v: Vec<i64> = rows.iter().map(|r| r.2).collect();
    df!("event_id" => ids, "ts" => ts, "v" => v)
        .unwrap()
        .lazy()
        .with_column(col("ts").cast(common::ts()))
        .collect()
        .unwrap()
}

/// 12 frames of 25 events each, seconds advancing 60 per frame with some disorder, plus
/// re-deliveries (same id and time), retries (same id, later time) and late new events.
fn frames() -> Vec<DataFrame> {
    let mut x: u64 = 11;
    let mut next = || {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        x >> 33
    };
    let mut seen: Vec<(String, i64, i64)> = Vec::new();
    let mut out = Vec::new();
    let mut n = 0;
    for b in 0..12i64 {
        let mut rows = Vec::new();
        for i in 0..25i64 {
            let r = next() % 100;
            let row = if r < 15 && !seen.is_empty() {
                seen[seen.len() - 1 - (next() as usize % seen.len().min(60))].clone()
            } else if r < 30 && !seen.is_empty() {
                let (id, t, _) = seen[seen.len() - 1 - (next() as usize % seen.len().min(60))].clone();
                (id, t + 1 + (next() % 200) as i64, (next() % 100) as i64)
            } else if r < 36 {
                n += 1;
                (format!("late{n}"), b * 60 - 100 - (next() % 300) as i64, (next() % 100) as i64)
            } else {
                n += 1;
                (format!("e{n}"), b * 60 + i * 2 - (next() % 30) as i64, (next() % 100) as i64)
            };
            seen.push(row.clone());
            rows.push(row);
        }
        out.push(events(&rows));
    }
    out
}

fn query(session: &Session, stream: &MemoryStream, within: bool) -> StreamingDataFrame {
    common::dedup(stream.to_df(session), Some("1 minute"), within, None).unwrap()
}

fn start(session: &Session, stream: &MemoryStream, table: &MemoryTable, ck: &Path, within: bool) -> sluice::StreamingQuery {
    common::start_into(query(session, stream, within), OutputMode::Append, ck, table).unwrap()
}

/// Rows of each batch, sorted, as strings.
fn canonical(table: &MemoryTable) -> BTreeMap<u64, Vec<String>> {
    table
        .batches()
        .into_iter()
        .map(|(id, df)| {
            let mut rows: Vec<String> = (0..df.height()).map(|i| format!("{:?}", df.get_row(i).unwrap().0)).collect();
            rows.sort();
            (id, rows)
        })
        .collect()
}

/// Feeds the frames one at a time; stops and restarts after `stop_after` frames.
fn run_memory(within: bool, stop_after: Option<usize>) -> (BTreeMap<u64, Vec<String>>, Vec<StreamingQueryProgress>) {
    let session = Session::new();
    let frames = frames();
    let stream = MemoryStream::new(frames[0].schema().clone());
    let table = MemoryTable::new();
    let dir = tempfile::tempdir().unwrap();
    let mut progress = Vec::new();
    let mut q = start(&session, &stream, &table, dir.path(), within);
    for (i, f) in frames.into_iter().enumerate() {
        stream.add_data(f).unwrap();
        q.process_all_available().unwrap();
        if stop_after == Some(i + 1) {
            progress.extend(q.recent_progress());
            q.stop().unwrap();
            q = start(&session, &stream, &table, dir.path(), within);
            q.process_all_available().unwrap();
        }
    }
    progress.extend(q.recent_progress());
    q.stop().unwrap();
    (canonical(&table), progress)
}

#[test]
fn stop_and_restart_after_each_batch_gives_the_uninterrupted_output() {
    for within in [false, true] {
        let (expected, _) = run_memory(within, None);
        let rows: usize = expected.values().map(Vec::len).sum();
        assert!(rows > 100 && rows < 300, "within {within}: the reference run keeps most rows, not all ({rows})");
        for k in 1..12 {
            let (got, _) = run_memory(within, Some(k));
            assert_eq!(got, expected, "within {within}: stopped and restarted after {k} frames");
        }
    }
}

#[test]
fn metrics_count_late_and_duplicate_rows_and_state_is_evicted() {
    for within in [false, true] {
        let (out, progress) = run_memory(within, None);
        let input: u64 = progress.iter().map(|p| p.num_input_rows).sum();
        let output: usize = out.values().map(Vec::len).sum();
        let ops: Vec<_> = progress.iter().flat_map(|p| &p.state_operators).collect();
        let late: u64 = ops.iter().map(|o| o.num_rows_dropped_by_watermark).sum();
        let dups: i64 = ops.iter().filter_map(|o| o.custom_metrics.get("numDroppedDuplicateRows")).sum();
        let added: u64 = ops.iter().map(|o| o.num_rows_updated).sum();
        let removed: u64 = ops.iter().map(|o| o.num_rows_removed).sum();
        let last = ops.last().unwrap();
        assert_eq!(input, 300);
        assert!(late > 0 && dups > 0, "within {within}: late {late}, duplicates {dups}");
        assert_eq!(late + dups as u64 + output as u64, input, "within {within}: every row is output, late or a duplicate");
        assert_eq!(added, output as u64, "within {within}: each output row added one key");
        assert!(removed > 0, "within {within}: the watermark evicts keys");
        assert_eq!(last.num_rows_total, added - removed, "within {within}: state = added - removed");
        assert_eq!(last.operator_name, if within { "dedupeWithinWatermark" } else { "dedupe" });
    }
}

/// Without the event time among the keys, drop_duplicates never evicts (Spark's rule).
#[test]
fn drop_duplicates_without_event_time_key_keeps_every_key() {
    let session = Session::new();
    let frames = frames();
    let stream = MemoryStream::new(frames[0].schema().clone());
    let table = MemoryTable::new();
    let dir = tempfile::tempdir().unwrap();
    let dedup = common::dedup(stream.to_df(&session), Some("1 minute"), false, Some("event_id")).unwrap();
    let q = common::start_into(dedup, OutputMode::Append, dir.path(), &table).unwrap();
    for f in frames {
        stream.add_data(f).unwrap();
        q.process_all_available().unwrap();
    }
    let progress = q.recent_progress();
    q.stop().unwrap();
    let ops: Vec<_> = progress.iter().flat_map(|p| &p.state_operators).collect();
    let output: usize = canonical(&table).values().map(Vec::len).sum();
    assert!(ops.iter().all(|o| o.num_rows_removed == 0));
    assert_eq!(ops.last().unwrap().num_rows_total, output as u64);
    // Retries with a later time are duplicates here, not with [event_id, ts].
    let (with_ts, _) = run_memory(false, None);
    assert!(output < with_ts.values().map(Vec::len).sum::<usize>());
}

fn start_error(df: StreamingDataFrame, mode: OutputMode) -> String {
    let dir = tempfile::tempdir().unwrap();
    match df
        .write_stream()
        .output_mode(mode)
        .checkpoint_location(dir.path())
        .progress(ProgressDisplay::Off)
        .sink(Box::new(MemoryTable::new().sink()))
        .start()
    {
        Err(SluiceError::Analysis { message }) => message,
        Err(other) => panic!("expected an analysis error, got {other}"),
        Ok(q) => {
            q.stop().unwrap();
            panic!("the query started")
        }
    }
}

#[test]
fn within_watermark_needs_a_watermark() {
    let session = Session::new();
    let stream = MemoryStream::new(frames()[0].schema().clone());
    let df = stream.to_df(&session).drop_duplicates_within_watermark(["event_id"]).unwrap();
    let msg = start_error(df, OutputMode::Append);
    assert!(msg.contains("without watermark") && msg.contains("with_watermark"), "{msg}");
    // With one, it starts.
    let ok = stream.to_df(&session).with_watermark("ts", "1 minute").unwrap().drop_duplicates_within_watermark(["event_id"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let q = ok
        .write_stream()
        .checkpoint_location(dir.path())
        .progress(ProgressDisplay::Off)
        .sink(Box::new(MemoryTable::new().sink()))
        .start()
        .unwrap();
    q.stop().unwrap();
}

#[test]
fn deduplication_after_an_aggregation_and_in_complete_mode_are_rejected() {
    let session = Session::new();
    let stream = MemoryStream::new(frames()[0].schema().clone());
    let counted = stream.to_df(&session).group_by([col("event_id")]).agg([len().alias("n")]);
    let msg = start_error(counted.drop_duplicates(["event_id"]).unwrap(), OutputMode::Update);
    assert!(msg.contains("dropDuplicates is not supported after aggregation"), "{msg}");
    let msg = start_error(stream.to_df(&session).drop_duplicates(Vec::<String>::new()).unwrap(), OutputMode::Complete);
    assert!(msg.contains("Complete output mode not supported"), "{msg}");
}

#[test]
fn unknown_key_columns_are_rejected_at_once() {
    let session = Session::new();
    let stream = MemoryStream::new(frames()[0].schema().clone());
    match stream.to_df(&session).drop_duplicates(["event_id", "nope"]) {
        Err(SluiceError::Analysis { message }) => assert!(message.contains("\"nope\""), "{message}"),
        Err(other) => panic!("expected an analysis error, got {other}"),
        Ok(_) => panic!("an unknown column was accepted"),
    }
}

fn per_id(table: &MemoryTable, count: Option<&str>) -> BTreeMap<String, u32> {
    let mut out: BTreeMap<String, u32> = BTreeMap::new();
    for (_, df) in table.batches() {
        let ids = df.column("event_id").unwrap().str().unwrap().clone();
        let n = match count {
            Some(c) => df.column(c).unwrap().cast(&DataType::UInt32).unwrap().u32().unwrap().clone(),
            None => UInt32Chunked::full("n".into(), 1, df.height()),
        };
        for (id, n) in ids.iter().zip(n.iter()) {
            let (id, n) = (id.unwrap().to_string(), n.unwrap());
            match count {
                Some(_) => out.insert(id, n),
                None => out.insert(id.clone(), out.get(&id).copied().unwrap_or(0) + n),
            };
        }
    }
    out
}

/// An empty subset deduplicates on all columns; a deduplication can feed an aggregation,
/// which counts exactly the rows the deduplication lets through.
#[test]
fn all_columns_and_an_aggregation_downstream() {
    let run = |aggregate: bool| {
        let session = Session::new();
        let frames = frames();
        let stream = MemoryStream::new(frames[0].schema().clone());
        let table = MemoryTable::new();
        let dir = tempfile::tempdir().unwrap();
        let dedup = stream.to_df(&session).with_watermark("ts", "1 minute").unwrap().drop_duplicates(Vec::<String>::new()).unwrap();
        let df = if aggregate { dedup.group_by([col("event_id")]).agg([len().alias("n")]) } else { dedup };
        let q = common::start_into(df, OutputMode::Update, dir.path(), &table).unwrap();
        for f in frames {
            stream.add_data(f).unwrap();
            q.process_all_available().unwrap();
        }
        q.stop().unwrap();
        per_id(&table, aggregate.then_some("n"))
    };
    let rows = run(false);
    assert!(rows.values().any(|n| *n > 1), "retries with a new time or value are distinct rows");
    assert_eq!(run(true), rows);
}
