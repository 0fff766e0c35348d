//! Session windows (`session_window`): merging across micro-batches, late and null rows,
//! restarts after every batch, and the analysis rules Spark 3.5 applies.

#[path = "../examples/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::Path;

use sluice::prelude::*;
use sluice::connectors::MemoryTable;
use sluice::connectors::MemoryStream;
use sluice::{SluiceError, StreamingQueryProgress};

const BASE_US: i64 = 1_709_280_000_000_000; // 2024-03-01T08:00:00Z

/// Edits `(user, minutes after BASE, added)`; a `None` minute is a null event time.
fn frame(rows: &[(&str, Option<i64>, i64)]) -> DataFrame {
    let u: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let t: Vec<Option<i64>> = rows.iter().map(|r| r.1.map(|m| BASE_US + m * 60_000_000)).collect();
    let a: Vec<i64> = rows.iter().map(|r| r.2).collect();
    df!("time" => t, "user" => u, "added" => a)
        .unwrap()
        .lazy()
        .with_column(col("time").cast(common::ts()))
        .select([col("time"), col("user"), col("added")])
        .collect()
        .unwrap()
}

/// Rows of each batch as sorted strings `user start_min end_min edits added`.
fn canonical(table: &MemoryTable) -> BTreeMap<u64, Vec<String>> {
    let mut out = BTreeMap::new();
    for (id, df) in table.batches() {
        let minutes = |f: &str| {
            ((col("session_window").struct_().field_by_name(f).cast(DataType::Int64) - lit(BASE_US)) / lit(60_000_000i64))
                .alias(f)
        };
        let df = df
            .lazy()
            .select([col("user"), minutes("start"), minutes("end"), col("edits"), col("added")])
            .collect()
            .unwrap();
        let mut rows: Vec<String> = (0..df.height())
            .map(|i| df.get_row(i).unwrap().0.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(" "))
            .collect();
        rows.sort();
        out.insert(id, rows);
    }
    out
}

struct Run {
    session: Session,
    stream: MemoryStream,
    table: MemoryTable,
    query: sluice::StreamingQuery,
}

fn start_query(session: &Session, stream: &MemoryStream, table: &MemoryTable, ck: &Path, mode: OutputMode, gap: &str) -> sluice::StreamingQuery {
    common::start_into(common::wiki_sessions(stream.to_df(session), gap, "5 minutes").unwrap(), mode, ck, table).unwrap()
}

fn run(mode: OutputMode, ck: &Path) -> Run {
    let session = Session::new();
    let stream = MemoryStream::new(frame(&[]).schema().clone());
    let table = MemoryTable::new();
    let query = start_query(&session, &stream, &table, ck, mode, "10 minutes");
    Run { session, stream, table, query }
}

impl Run {
    fn add(&self, rows: &[(&str, Option<i64>, i64)]) -> StreamingQueryProgress {
        self.stream.add_data(frame(rows)).unwrap();
        self.query.process_all_available().unwrap();
        self.query.last_progress().unwrap()
    }
}

#[test]
fn a_row_bridging_two_stored_sessions_merges_them() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(OutputMode::Complete, dir.path());
    // Two sessions of a: [0, 10) and [20, 30); b: [0, 10).
    r.add(&[("a", Some(0), 1), ("a", Some(20), 2), ("b", Some(0), 4)]);
    let p = r.add(&[("b", Some(60), 8)]);
    assert_eq!(p.state_operators[0].num_rows_total, 4);
    // 10 + gap touches both: [10, 20) merges [0, 10) and [20, 30) (Spark merges a start
    // at or before the running end).
    let p = r.add(&[("a", Some(10), 16)]);
    let op = &p.state_operators[0];
    assert_eq!((op.num_rows_total, op.num_rows_updated, op.num_rows_removed), (3, 1, 1), "{op:?}");
    let batches = canonical(&r.table);
    let last = batches.values().last().unwrap();
    assert_eq!(last, &vec!["\"a\" 0 30 3 19".to_string(), "\"b\" 0 10 1 4".into(), "\"b\" 60 70 1 8".into()]);
    r.query.stop().unwrap();
}

#[test]
fn sessions_touching_by_one_microsecond_do_not_merge() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(OutputMode::Complete, dir.path());
    r.add(&[("a", Some(0), 1)]);
    // A row one µs after the session end opens its own session.
    let t = BASE_US + 10 * 60_000_000 + 1;
    let df = df!("time" => [t], "user" => ["a"], "added" => [2i64])
        .unwrap()
        .lazy()
        .with_column(col("time").cast(common::ts()))
        .collect()
        .unwrap();
    r.stream.add_data(df).unwrap();
    r.query.process_all_available().unwrap();
    assert_eq!(r.query.last_progress().unwrap().state_operators[0].num_rows_total, 2);
    r.query.stop().unwrap();
}

#[test]
fn append_emits_a_session_once_the_watermark_passes_its_end_and_drops_late_rows() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(OutputMode::Append, dir.path());
    // a: [0, 15); null time dropped; watermark after: 20 - 5 = 15 min.
    r.add(&[("a", Some(0), 1), ("a", Some(5), 2), ("c", Some(20), 4), ("a", None, 100)]);
    // a@1 ends at 11 <= 15: late, dropped and counted; c@22 extends c to [20, 32).
    r.add(&[("a", Some(1), 8), ("c", Some(22), 16)]);
    let dropped: u64 = r.query.recent_progress().iter().map(|p| p.state_operators[0].num_rows_dropped_by_watermark).sum();
    assert_eq!(dropped, 1);
    // Watermark 60 - 5 = 55 evicts c.
    r.add(&[("d", Some(60), 32)]);
    let batches = canonical(&r.table);
    let all: Vec<&String> = batches.values().flatten().collect();
    assert_eq!(all, vec!["\"a\" 0 15 2 3", "\"c\" 20 32 2 20"], "{batches:?}");
    r.query.stop().unwrap();
}

/// Deterministic frames: 5 users editing in bursts, some bridging earlier sessions, a few
/// late edits and null times.
fn frames() -> Vec<Vec<(&'static str, Option<i64>, i64)>> {
    let mut out = Vec::new();
    let mut x: u64 = 11;
    for b in 0..12i64 {
        let mut rows = Vec::new();
        for i in 0..15i64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let user = ["ann", "bob", "cid", "dee", "eve"][(x >> 20) as usize % 5];
            let jitter = (x >> 33) as i64 % 25;
            let t = if (x >> 45).is_multiple_of(37) { None } else { Some(b * 12 + i - jitter) };
            rows.push((user, t, ((x >> 40) % 100) as i64));
        }
        out.push(rows);
    }
    out
}

fn run_frames(mode: OutputMode, stop_after: Option<usize>) -> BTreeMap<u64, Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    let mut r = run(mode, dir.path());
    for (i, f) in frames().iter().enumerate() {
        r.add(f);
        if stop_after == Some(i + 1) {
            r.query.stop().unwrap();
            r.query = start_query(&r.session, &r.stream, &r.table, dir.path(), mode, "10 minutes");
            r.query.process_all_available().unwrap();
        }
    }
    r.query.stop().unwrap();
    canonical(&r.table)
}

#[test]
fn stop_and_restart_after_each_batch_gives_the_uninterrupted_output() {
    for mode in [OutputMode::Append, OutputMode::Complete] {
        let expected = run_frames(mode, None);
        let rows: usize = expected.values().map(Vec::len).sum();
        assert!(rows > 10, "{mode}: the reference run must emit rows ({rows})");
        for k in 1..12 {
            let got = run_frames(mode, Some(k));
            assert_eq!(got, expected, "{mode} mode, stopped after {k} frames");
        }
    }
}

/// The merge rule against a direct computation: per user, sort the (not late) edits and
/// cut where an edit starts after every earlier edit's `time + gap`.
#[test]
fn complete_output_equals_sessions_computed_in_one_pass() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(OutputMode::Complete, dir.path());
    // No late rows: times only grow.
    let mut all = Vec::new();
    for b in 0..6i64 {
        let rows: Vec<(&str, Option<i64>, i64)> =
            (0..10i64).map(|i| (["p", "q"][(i % 2) as usize], Some(b * 20 + i * i % 17 + b), i)).collect();
        all.extend(rows.iter().cloned());
        r.add(&rows);
    }
    let got = canonical(&r.table).into_values().last().unwrap();
    let mut expected = Vec::new();
    for user in ["p", "q"] {
        let mut edits: Vec<(i64, i64)> = all.iter().filter(|e| e.0 == user).map(|e| (e.1.unwrap(), e.2)).collect();
        edits.sort();
        let mut cur: Option<(i64, i64, i64, i64)> = None; // start, end, edits, added
        for (t, a) in edits {
            cur = match cur {
                Some((s, e, n, sum)) if t <= e => Some((s, e.max(t + 10), n + 1, sum + a)),
                other => {
                    if let Some((s, e, n, sum)) = other {
                        expected.push(format!("\"{user}\" {s} {e} {n} {sum}"));
                    }
                    Some((t, t + 10, 1, a))
                }
            };
        }
        let (s, e, n, sum) = cur.unwrap();
        expected.push(format!("\"{user}\" {s} {e} {n} {sum}"));
    }
    expected.sort();
    assert_eq!(got, expected);
    r.query.stop().unwrap();
}

fn start_error(df: StreamingDataFrame, mode: OutputMode) -> String {
    let dir = tempfile::tempdir().unwrap();
    match df
        .write_stream()
        .output_mode(mode)
        .checkpoint_location(dir.path())
        .sink(Box::new(MemoryTable::new().sink()))
        .start()
    {
        Err(e @ SluiceError::Analysis { .. }) => e.to_string(),
        Err(e) => panic!("expected an analysis error, got {e}"),
        Ok(_) => panic!("the query must not start"),
    }
}

#[test]
fn analysis_errors_follow_spark() {
    let session = Session::new();
    let stream = MemoryStream::new(frame(&[]).schema().clone());
    let edits = stream.to_df(&session);
    let sessions = common::wiki_sessions(edits.clone(), "10 minutes", "5 minutes").unwrap();
    let e = start_error(sessions, OutputMode::Update);
    assert!(e.contains("Update output mode not supported for session window"), "{e}");

    let no_watermark = edits
        .group_by([session_window(col("time"), "10 minutes").unwrap(), col("user")])
        .agg([len().alias("edits")]);
    let e = start_error(no_watermark, OutputMode::Append);
    assert!(e.contains("Append output mode not supported") && e.contains("without watermark"), "{e}");

    let watermarked = edits.with_watermark("time", "5 minutes").unwrap();
    let alone = watermarked.group_by([session_window(col("time"), "10 minutes").unwrap()]).agg([len().alias("edits")]);
    let e = start_error(alone, OutputMode::Append);
    assert!(e.contains("needs another grouping key"), "{e}");

    let both = watermarked
        .group_by([
            session_window(col("time"), "10 minutes").unwrap(),
            window(col("time"), "10 minutes", None, None).unwrap(),
            col("user"),
        ])
        .agg([len().alias("edits")]);
    let e = start_error(both, OutputMode::Append);
    assert!(e.contains("cartesian product"), "{e}");

    for gap in ["0 seconds", "ten minutes"] {
        match session_window(col("time"), gap) {
            Err(SluiceError::InvalidArgument(m)) => assert!(m.contains(gap), "{m}"),
            other => panic!("gap {gap}: {other:?}"),
        }
    }
}

#[test]
fn complete_mode_without_watermark_keeps_every_row() {
    let session = Session::new();
    let stream = MemoryStream::new(frame(&[]).schema().clone());
    let table = MemoryTable::new();
    let dir = tempfile::tempdir().unwrap();
    let sessions = stream
        .to_df(&session)
        .group_by([session_window(col("time"), "10 minutes").unwrap(), col("user")])
        .agg([len().alias("edits"), col("added").sum().alias("added")]);
    let q = common::start_into(sessions, OutputMode::Complete, dir.path(), &table).unwrap();
    stream.add_data(frame(&[("a", Some(100), 1)])).unwrap();
    q.process_all_available().unwrap();
    // Without a watermark nothing is late: an old edit still opens a session.
    stream.add_data(frame(&[("a", Some(0), 2)])).unwrap();
    q.process_all_available().unwrap();
    let last = canonical(&table).into_values().last().unwrap();
    assert_eq!(last, vec!["\"a\" 0 10 1 2".to_string(), "\"a\" 100 110 1 1".into()]);
    q.stop().unwrap();
}
