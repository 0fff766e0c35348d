//! Exactly-once across stops, failures and restarts, checkpoint corruption, and the
//! output-mode rules checked at `start()`.

#[path = "../examples/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice::prelude::*;
use sluice::connectors::MemoryTable;
use sluice::connectors::MemoryStream;
use sluice::SluiceError;

fn sensor_frame(rows: &[(&str, i64, f64)]) -> DataFrame {
    let base = 1_709_280_000_000_000i64; // 2024-03-01T08:00:00Z in µs
    let s: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let t: Vec<i64> = rows.iter().map(|r| base + r.1 * 1_000_000).collect();
    let v: Vec<f64> = rows.iter().map(|r| r.2).collect();
    df!("sensor" => s, "ts" => t, "v" => v)
        .unwrap()
        .lazy()
        .with_column(col("ts").cast(common::ts()))
        .collect()
        .unwrap()
}

/// 12 frames of readings from 3 sensors, seconds advancing with some disorder and a few
/// late rows, so that windows open, close and rows get dropped.
fn frames() -> Vec<DataFrame> {
    let mut out = Vec::new();
    let mut x: u64 = 7;
    for b in 0..12i64 {
        let mut rows = Vec::new();
        for i in 0..20i64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let jitter = (x >> 33) as i64 % 600;
            let sensor = ["s1", "s2", "s3"][(x >> 20) as usize % 3];
            rows.push((sensor, b * 120 + i * 6 - jitter, ((x >> 40) % 1000) as f64 / 10.0));
        }
        out.push(sensor_frame(&rows.iter().map(|(s, t, v)| (*s, *t, *v)).collect::<Vec<_>>()));
    }
    out
}

fn query_df(session: &Session, stream: &MemoryStream) -> StreamingDataFrame {
    common::windowed_agg(stream.to_df(session), "2 minutes", Some("1 minute"), Some("3 minutes")).unwrap()
}

/// Rows of each batch as sorted JSON-ish strings, for exact comparison.
fn canonical(table: &MemoryTable) -> BTreeMap<u64, Vec<String>> {
    let mut out = BTreeMap::new();
    for (id, df) in table.batches() {
        let df = df
            .lazy()
            .with_columns([
                col("window").struct_().field_by_name("start").cast(DataType::Int64).alias("window_start"),
                col("window").struct_().field_by_name("end").cast(DataType::Int64).alias("window_end"),
            ])
            .drop(by_name(["window"], true, false))
            .collect()
            .unwrap();
        let mut rows: Vec<String> = (0..df.height())
            .map(|i| format!("{:?}", df.get_row(i).unwrap().0))
            .collect();
        rows.sort();
        out.insert(id, rows);
    }
    out
}

fn start(session: &Session, stream: &MemoryStream, table: &MemoryTable, ck: &Path, mode: OutputMode) -> sluice::StreamingQuery {
    common::start_into(query_df(session, stream), mode, ck, table).unwrap()
}

/// Feeds frames one at a time, waiting for each (and its no-data batches) to finish;
/// stops and restarts the query after `stop_after` frames.
fn run_memory(mode: OutputMode, stop_after: Option<usize>) -> BTreeMap<u64, Vec<String>> {
    let session = Session::new();
    let frames = frames();
    let stream = MemoryStream::new(frames[0].schema().clone());
    let table = MemoryTable::new();
    let dir = tempfile::tempdir().unwrap();
    let mut q = start(&session, &stream, &table, dir.path(), mode);
    for (i, f) in frames.into_iter().enumerate() {
        stream.add_data(f).unwrap();
        q.process_all_available().unwrap();
        if stop_after == Some(i + 1) {
            q.stop().unwrap();
            q = start(&session, &stream, &table, dir.path(), mode);
            q.process_all_available().unwrap();
        }
    }
    q.stop().unwrap();
    canonical(&table)
}

#[test]
fn stop_and_restart_after_each_batch_gives_the_uninterrupted_output() {
    for mode in [OutputMode::Append, OutputMode::Update, OutputMode::Complete] {
        let expected = run_memory(mode, None);
        let rows: usize = expected.values().map(Vec::len).sum();
        assert!(rows > 20, "{mode}: the reference run must emit rows ({rows})");
        for k in 1..12 {
            let got = run_memory(mode, Some(k));
            let differing: Vec<_> = expected
                .iter()
                .filter(|(b, rows)| got.get(b) != Some(rows))
                .map(|(b, rows)| (b, rows, got.get(b)))
                .take(2)
                .collect();
            assert!(
                got.len() == expected.len() && differing.is_empty(),
                "{mode} mode, stopped after {k} frames: {} vs {} batches; first differences {differing:#?}",
                got.len(),
                expected.len()
            );
        }
    }
}

/// Runs the p02 oracle input through the file source; the sink fails at batch
/// `fail_at` (after the batch was planned in the offset log), then the query restarts.
fn run_files_failing_at(fail_at: Option<u64>, mode: OutputMode) -> BTreeMap<u64, String> {
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("in");
    common::copy_ordered(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/cases/p02_sliding_append/input"), &input).unwrap();
    let out = work.path().join("out");
    let ck = work.path().join("ck");
    let session = Session::new();
    let build = || {
        let src = common::json_source(&session, &input, common::sensor_schema()).unwrap();
        common::windowed_agg(src, "10 minutes", Some("5 minutes"), Some("10 minutes")).unwrap()
    };
    if let Some(k) = fail_at {
        let o = out.clone();
        let q = build()
            .write_stream()
            .output_mode(mode)
            .trigger(Trigger::AvailableNow)
            .checkpoint_location(&ck)
            .progress(ProgressDisplay::Off)
            .foreach_batch(move |df, id| {
                if id == k {
                    return Err(SluiceError::User(format!("injected failure in batch {id}")));
                }
                common::write_batch_jsonl(&o, df, id)
            })
            .start()
            .unwrap();
        let err = q.await_termination().unwrap_err().to_string();
        assert!(err.contains(&format!("batch {k} failed")) && err.contains("injected"), "{err}");
    }
    common::run_contract(build(), mode, &out, &ck, ProgressDisplay::Off).unwrap();
    common::read_batch_files(&out).unwrap()
}

#[test]
fn a_failed_batch_is_replayed_with_its_logged_offsets() {
    for mode in [OutputMode::Append, OutputMode::Update] {
        let expected = run_files_failing_at(None, mode);
        assert!(expected.len() >= 25, "{}", expected.len());
        for k in [0, 1, 2, 9, 10, 11, 17, 24] {
            assert_eq!(run_files_failing_at(Some(k), mode), expected, "{mode}: failure injected in batch {k}");
        }
    }
}

/// Runs 8 frames into a checkpoint and stops.
fn checkpoint_with_batches() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    let session = Session::new();
    let frames = frames();
    let stream = MemoryStream::new(frames[0].schema().clone());
    let table = MemoryTable::new();
    let q = start(&session, &stream, &table, &ck, OutputMode::Append);
    for f in frames.into_iter().take(8) {
        stream.add_data(f).unwrap();
        q.process_all_available().unwrap();
    }
    q.stop().unwrap();
    (dir, ck)
}

fn restart_error(ck: &Path) -> String {
    let session = Session::new();
    let stream = MemoryStream::new(frames()[0].schema().clone());
    let table = MemoryTable::new();
    match query_df(&session, &stream)
        .write_stream()
        .checkpoint_location(ck)
        .progress(ProgressDisplay::Off)
        .sink(Box::new(table.sink()))
        .start()
    {
        Ok(q) => {
            let _ = q.stop();
            panic!("restart on a damaged checkpoint must fail at start()")
        }
        Err(e) => e.to_string(),
    }
}

fn last_batch(ck: &Path) -> u64 {
    std::fs::read_dir(ck.join("commits")).unwrap().filter_map(|e| e.unwrap().file_name().to_str()?.parse().ok()).max().unwrap()
}

#[test]
fn an_empty_offset_file_is_named() {
    let (_d, ck) = checkpoint_with_batches();
    let n = last_batch(&ck);
    std::fs::write(ck.join(format!("offsets/{n}")), b"").unwrap();
    let err = restart_error(&ck);
    assert!(err.contains(&format!("offsets/{n}")) && err.contains("empty"), "{err}");
}

#[test]
fn a_torn_commit_file_is_named() {
    let (_d, ck) = checkpoint_with_batches();
    let n = last_batch(&ck);
    let path = ck.join(format!("commits/{n}"));
    let text = std::fs::read(&path).unwrap();
    std::fs::write(&path, &text[..text.len() / 2]).unwrap();
    let err = restart_error(&ck);
    assert!(err.contains(&format!("commits/{n}")) && err.contains("corrupt"), "{err}");
}

#[test]
fn a_gap_in_the_offset_log_is_named() {
    let (_d, ck) = checkpoint_with_batches();
    std::fs::remove_file(ck.join("offsets/2")).unwrap();
    let err = restart_error(&ck);
    assert!(err.contains("offsets/2") && err.contains("gap"), "{err}");
}

#[test]
fn a_missing_commit_behind_two_planned_batches_is_named() {
    let (_d, ck) = checkpoint_with_batches();
    let n = last_batch(&ck);
    std::fs::remove_file(ck.join(format!("commits/{n}"))).unwrap();
    std::fs::remove_file(ck.join(format!("commits/{}", n - 1))).unwrap();
    let err = restart_error(&ck);
    assert!(err.contains(&format!("commits/{}", n - 1)), "{err}");
}

#[test]
fn a_missing_state_delta_is_named() {
    let (_d, ck) = checkpoint_with_batches();
    let n = last_batch(&ck);
    // The latest version's delta files are listed in commits/n.
    let mut removed = None;
    for p in 0..4 {
        let f = ck.join(format!("state/0/{p}/{}.delta", n + 1));
        if f.exists() {
            std::fs::remove_file(&f).unwrap();
            removed = Some(format!("state/0/{p}/{}.delta", n + 1));
            break;
        }
    }
    let removed = removed.expect("the last batch wrote a delta");
    let err = restart_error(&ck);
    assert!(err.contains(&removed) && err.contains("missing"), "{err}");
}

#[test]
fn a_corrupt_state_file_is_named() {
    let (_d, ck) = checkpoint_with_batches();
    let n = last_batch(&ck);
    let f = (0..4).map(|p| ck.join(format!("state/0/{p}/{}.delta", n + 1))).find(|f| f.exists()).unwrap();
    std::fs::write(&f, sluice::checkpoint::checksum::seal(b"not arrow")).unwrap();
    let err = restart_error(&ck);
    assert!(err.contains(&f.display().to_string()) && err.contains("Arrow IPC"), "{err}");
}

#[test]
fn a_changed_stateful_operator_is_refused() {
    let (_d, ck) = checkpoint_with_batches();
    let session = Session::new();
    let stream = MemoryStream::new(frames()[0].schema().clone());
    let changed = stream
        .to_df(&session)
        .with_watermark("ts", "3 minutes")
        .unwrap()
        .group_by([window(col("ts"), "2 minutes", Some("1 minute"), None).unwrap()])
        .agg([len().alias("n")]);
    let err = changed
        .write_stream()
        .checkpoint_location(&ck)
        .progress(ProgressDisplay::Off)
        .sink(Box::new(MemoryTable::new().sink()))
        .start()
        .expect_err("a different aggregation must not reuse the checkpoint")
        .to_string();
    assert!(err.contains("stateful operators changed") && err.contains("state/0/_metadata"), "{err}");
}

#[test]
fn a_planned_batch_is_replayed_exactly_as_logged() {
    let (_d, ck) = checkpoint_with_batches();
    let n = last_batch(&ck);
    // Batch n+1 planned (as a crash right after its write-ahead entry leaves it) with the
    // same source offsets as batch n: its replay reads no new rows and commits it.
    let text = std::fs::read_to_string(ck.join(format!("offsets/{n}"))).unwrap();
    std::fs::write(ck.join(format!("offsets/{}", n + 1)), &text).unwrap();
    let session = Session::new();
    let frames = frames();
    let stream = MemoryStream::new(frames[0].schema().clone());
    for f in frames.into_iter().take(8) {
        stream.add_data(f).unwrap();
    }
    let q = start(&session, &stream, &MemoryTable::new(), &ck, OutputMode::Append);
    q.process_all_available().unwrap();
    let replayed = q.recent_progress().into_iter().find(|p| p.batch_id == n + 1).expect("batch n+1 ran");
    q.stop().unwrap();
    assert_eq!(replayed.num_input_rows, 0, "the replay used the logged offsets");
    assert!(ck.join(format!("commits/{}", n + 1)).exists());
}

fn analysis_error(df: StreamingDataFrame, mode: OutputMode, format: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let w = df.write_stream().output_mode(mode).progress(ProgressDisplay::Off);
    let w = match format {
        Some(f) => w.format(f).option("path", dir.path().join("out").display()),
        None => w.sink(Box::new(MemoryTable::new().sink())),
    };
    match w.start() {
        Ok(q) => {
            let _ = q.stop();
            panic!("expected an analysis error")
        }
        Err(SluiceError::Analysis { message }) => message,
        Err(other) => panic!("expected an analysis error, got {other}"),
    }
}

#[test]
fn output_mode_rules_are_checked_at_start() {
    let session = Session::new();
    let stream = MemoryStream::new(Arc::new(common::sensor_schema()));
    let events = stream.to_df(&session);
    let no_watermark = events.group_by([col("sensor")]).agg([len().alias("n")]);
    let m = analysis_error(no_watermark.clone(), OutputMode::Append, None);
    assert!(m.contains("Append output mode not supported") && m.contains("with_watermark"), "{m}");
    let m = analysis_error(events.clone(), OutputMode::Complete, None);
    assert!(m.contains("Complete output mode not supported") && m.contains("no streaming aggregations"), "{m}");
    // A watermark that is not on a grouping key does not make append possible.
    let unrelated = events.with_watermark("ts", "1 minute").unwrap().group_by([col("sensor")]).agg([len().alias("n")]);
    let m = analysis_error(unrelated, OutputMode::Append, None);
    assert!(m.contains("Append output mode not supported"), "{m}");
    // The file sink is append only.
    let m = analysis_error(no_watermark.clone(), OutputMode::Update, Some("parquet"));
    assert!(m.contains("does not support Update output mode"), "{m}");
    // Valid combinations start.
    for mode in [OutputMode::Update, OutputMode::Complete] {
        let q = no_watermark.write_stream().output_mode(mode).progress(ProgressDisplay::Off)
            .sink(Box::new(MemoryTable::new().sink())).start().unwrap();
        q.stop().unwrap();
    }
    let stateless = events.filter(col("v").gt(lit(1.0)));
    let q = stateless.write_stream().output_mode(OutputMode::Append).progress(ProgressDisplay::Off)
        .sink(Box::new(MemoryTable::new().sink())).start().unwrap();
    q.stop().unwrap();
}

#[test]
fn unsupported_aggregates_and_bad_watermarks_are_explained() {
    let session = Session::new();
    let stream = MemoryStream::new(Arc::new(common::sensor_schema()));
    let events = stream.to_df(&session);
    let err = events.with_watermark("sensor", "1 minute").err().unwrap().to_string();
    assert!(err.contains("timestamp") && err.contains("sensor"), "{err}");
    let err = events.with_watermark("nope", "1 minute").err().unwrap().to_string();
    assert!(err.contains("no such column"), "{err}");
    let err = events.with_watermark("ts", "ten minutes").err().unwrap().to_string();
    assert!(err.contains("ten minutes"), "{err}");
    let median = events.group_by([col("sensor")]).agg([col("v").median().alias("m")]);
    let m = analysis_error(median, OutputMode::Update, None);
    assert!(m.contains("not supported in a streaming aggregation"), "{m}");
    let bare = events.group_by([col("sensor")]).agg([col("v")]);
    let m = analysis_error(bare, OutputMode::Update, None);
    assert!(m.contains("neither a grouping key nor inside an aggregate"), "{m}");
}
