//! The engine through its public API: triggers, the query handle, sinks by name,
//! progress in Spark's JSON shape, checkpoint retention, and bad input end to end.

#[path = "../examples/common/mod.rs"]
mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice::prelude::*;
use sluice::connectors::MemoryTable;
use sluice::connectors::MemoryStream;

fn readings(rows: &[(&str, Option<i64>, f64)]) -> DataFrame {
    let base = 1_704_067_200_000_000i64; // 2024-01-01T00:00:00Z, µs
    let s: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let t: Vec<Option<i64>> = rows.iter().map(|r| r.1.map(|m| base + m * 60_000_000)).collect();
    let v: Vec<f64> = rows.iter().map(|r| r.2).collect();
    df!("sensor" => s, "ts" => t, "v" => v).unwrap().lazy().with_column(col("ts").cast(common::ts())).collect().unwrap()
}

fn windowed(session: &Session, stream: &MemoryStream) -> StreamingDataFrame {
    common::windowed_agg(stream.to_df(session), "10 minutes", None, Some("5 minutes")).unwrap()
}

/// The windowed query in update mode into `table`, with `trigger`.
fn start_update(session: &Session, stream: &MemoryStream, table: &MemoryTable, trigger: Trigger) -> sluice::StreamingQuery {
    windowed(session, stream)
        .write_stream()
        .output_mode(OutputMode::Update)
        .trigger(trigger)
        .progress(ProgressDisplay::Off)
        .sink(Box::new(table.sink()))
        .start()
        .unwrap()
}

#[test]
fn trigger_once_runs_one_batch_with_everything_available() {
    let session = Session::new();
    let stream = MemoryStream::new(readings(&[]).schema().clone());
    for m in [1, 2, 3] {
        stream.add_data(readings(&[("a", Some(m), 1.0)])).unwrap();
    }
    let table = MemoryTable::new();
    let q = start_update(&session, &stream, &table, Trigger::Once);
    q.await_termination().unwrap();
    let p = q.recent_progress();
    assert_eq!(p.len(), 1, "Once runs exactly one batch");
    assert_eq!(p[0].num_input_rows, 3);
    assert!(!q.is_active());
}

#[test]
fn processing_time_trigger_and_process_all_available() {
    let session = Session::new();
    let stream = MemoryStream::new(readings(&[]).schema().clone());
    let table = MemoryTable::new();
    let q = start_update(&session, &stream, &table, Trigger::processing_time("50 milliseconds").unwrap());
    stream.add_data(readings(&[("a", Some(1), 1.0), ("b", Some(2), 2.0)])).unwrap();
    q.process_all_available().unwrap();
    assert_eq!(table.to_df().unwrap().unwrap().height(), 2);
    stream.add_data(readings(&[("a", Some(3), 5.0)])).unwrap();
    q.process_all_available().unwrap();
    let all = table.to_df().unwrap().unwrap();
    let a = all.lazy().filter(col("sensor").eq(lit("a"))).collect().unwrap();
    let counts: Vec<Option<i64>> = a.column("n").unwrap().i64().unwrap().iter().collect();
    assert_eq!(counts, vec![Some(1), Some(2)], "update mode re-emits the changed group");
    assert!(q.is_active());
    assert_eq!(q.status(), "Waiting for data to arrive");
    q.stop().unwrap();
    assert!(!q.is_active());
    // Batches started at least 50 ms apart.
    let p = q.recent_progress();
    assert!(p.len() >= 2);
}

#[test]
fn memory_sink_by_name_and_progress_in_spark_json() {
    let session = Session::new();
    let stream = MemoryStream::new(readings(&[]).schema().clone());
    stream.add_data(readings(&[("a", Some(1), 1.0), ("a", Some(30), 2.0), ("a", None, 3.0)])).unwrap();
    let q = windowed(&session, &stream)
        .write_stream()
        .output_mode(OutputMode::Append)
        .format("memory")
        .query_name("counts")
        .trigger(Trigger::AvailableNow)
        .progress(ProgressDisplay::Off)
        .start()
        .unwrap();
    q.await_termination().unwrap();
    let table = session.memory_table("counts").expect("registered under the query name");
    let out = table.to_df().unwrap().unwrap();
    // The 00:01 window closed (watermark 00:25); the null event time got no window.
    assert_eq!(out.height(), 1);
    assert_eq!(out.column("n").unwrap().i64().unwrap().get(0), Some(1));
    let p = q.recent_progress();
    assert_eq!(p.len(), 2, "a data batch, then the no-data batch the watermark calls for");
    let json = serde_json::to_value(&p[0]).unwrap();
    for key in ["id", "runId", "batchId", "numInputRows", "inputRowsPerSecond", "processedRowsPerSecond", "durationMs", "eventTime", "stateOperators", "sources", "sink"] {
        assert!(json.get(key).is_some(), "progress JSON has {key}: {json}");
    }
    assert_eq!(json["numInputRows"], 3);
    assert_eq!(json["eventTime"]["max"], "2024-01-01T00:30:00.000Z");
    assert_eq!(json["stateOperators"][0]["numRowsTotal"], 2);
    assert!(json["stateOperators"][0]["memoryUsedBytes"].as_u64().unwrap() > 0);
    assert_eq!(p[1].event_time["watermark"], "2024-01-01T00:25:00.000Z");
    assert_eq!(p[1].state_operators[0].num_rows_removed, 1);
    let back: sluice::StreamingQueryProgress = serde_json::from_value(json).unwrap();
    assert_eq!(back, p[0]);
}

#[test]
fn late_rows_are_dropped_and_counted() {
    let session = Session::new();
    let stream = MemoryStream::new(readings(&[]).schema().clone());
    let table = MemoryTable::new();
    let q = start_update(&session, &stream, &table, Trigger::default());
    stream.add_data(readings(&[("a", Some(40), 1.0)])).unwrap();
    q.process_all_available().unwrap(); // watermark becomes 00:35 for the next batch
    stream.add_data(readings(&[("a", Some(41), 1.0)])).unwrap();
    q.process_all_available().unwrap(); // this batch filters with 00:35 from now on
    stream.add_data(readings(&[("a", Some(2), 1.0), ("b", Some(45), 1.0)])).unwrap();
    q.process_all_available().unwrap();
    let last = q.recent_progress().into_iter().rfind(|p| p.num_input_rows == 2).unwrap();
    q.stop().unwrap();
    assert_eq!(last.state_operators[0].num_rows_dropped_by_watermark, 1, "the 00:02 row's window ended at 00:10");
    assert_eq!(last.sink.num_output_rows, 1, "only b's window is updated");
}

#[test]
fn old_checkpoint_files_are_purged_and_restart_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    let session = Session::new();
    session.set_conf("sluice.minBatchesToRetain", "5");
    let stream = MemoryStream::new(readings(&[]).schema().clone());
    let table = MemoryTable::new();
    let start = |t: &MemoryTable| {
        common::windowed_agg(stream.to_df(&session), "10 minutes", None, None)
            .unwrap()
            .write_stream()
            .output_mode(OutputMode::Complete)
            .checkpoint_location(&ck)
            .progress(ProgressDisplay::Off)
            .sink(Box::new(t.sink()))
            .start()
            .unwrap()
    };
    let q = start(&table);
    for i in 0..45 {
        stream.add_data(readings(&[("a", Some(i * 3), 1.0)])).unwrap();
        q.process_all_available().unwrap();
    }
    q.stop().unwrap();
    let count = |sub: &str| std::fs::read_dir(ck.join(sub)).map(|d| d.count()).unwrap_or(0);
    assert!(count("offsets") < 30, "offsets purged: {}", count("offsets"));
    assert!(count("commits") < 30, "commits purged: {}", count("commits"));
    let state_files: usize = (0..4).map(|p| count(&format!("state/0/{p}"))).sum();
    assert!(state_files < 4 * 30, "state files purged: {state_files}");
    // The restarted query continues from the retained snapshot and deltas.
    let table2 = MemoryTable::new();
    let q = start(&table2);
    stream.add_data(readings(&[("a", Some(200), 1.0)])).unwrap();
    q.process_all_available().unwrap();
    q.stop().unwrap();
    let total: i64 = table2.to_df().unwrap().unwrap().column("n").unwrap().i64().unwrap().sum().unwrap();
    assert_eq!(total, 46, "every row ever added is counted once");
}

fn write(dir: &Path, name: &str, text: &str, i: u64) {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    let f = std::fs::File::options().write(true).open(&p).unwrap();
    f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + i)).unwrap();
}

/// Malformed JSON, wrong types and null event times under each parse mode, through a
/// whole windowed query: no panic, Spark's outcome.
#[test]
fn bad_input_under_each_parse_mode() {
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    write(&input, "a.json", "{\"sensor\": \"a\", \"ts\": \"2024-01-01T00:01:00Z\", \"v\": 1.0}\n{\"sensor\": \"a\", \"ts\": \n{\"sensor\": \"a\", \"ts\": \"2024-01-01T00:02:00Z\", \"v\": \"abc\"}\n{\"sensor\": \"a\", \"ts\": null, \"v\": 4.0}\n\u{0}\u{1}garbage\n", 0);
    write(&input, "b.json", "{\"sensor\": \"b\", \"ts\": \"2024-01-01T00:03:00Z\", \"v\": 2.0}\n", 1);
    let run = |mode: &str| -> (sluice::Result<()>, Vec<(u64, DataFrame)>) {
        let session = Session::new();
        let src = session
            .read_stream()
            .format("json")
            .schema(common::sensor_schema())
            .option("mode", mode)
            .option("maxFilesPerTrigger", 1)
            .load(&input)
            .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let q = common::windowed_agg(src, "10 minutes", None, None)
            .unwrap()
            .write_stream()
            .output_mode(OutputMode::Complete)
            .trigger(Trigger::AvailableNow)
            .progress(ProgressDisplay::Off)
            .checkpoint_location(work.path().join(format!("ck-{mode}")))
            .foreach_batch(move |df, id| {
                s.lock().unwrap().push((id, df.clone()));
                Ok(())
            })
            .start()
            .unwrap();
        let r = q.await_termination();
        let v = seen.lock().unwrap().clone();
        (r, v)
    };
    let n_of = |batches: &[(u64, DataFrame)], sensor: &str| -> Option<i64> {
        let (_, last) = batches.last()?;
        let f = last.clone().lazy().filter(col("sensor").eq(lit(sensor))).collect().ok()?;
        f.column("n").ok()?.i64().ok()?.get(0)
    };
    // PERMISSIVE: the malformed rows become nulls (no window: dropped); the wrong-typed
    // value keeps its row with v null; the good rows count.
    let (r, b) = run("PERMISSIVE");
    r.unwrap();
    assert_eq!(n_of(&b, "a"), Some(2), "a's good row and the row whose v was not a number");
    assert_eq!(n_of(&b, "b"), Some(1));
    // DROPMALFORMED: only well-formed rows, the wrong-typed one is dropped.
    let (r, b) = run("DROPMALFORMED");
    r.unwrap();
    assert_eq!(n_of(&b, "a"), Some(1));
    assert_eq!(n_of(&b, "b"), Some(1));
    // FAILFAST: the query stops at the first bad line, naming file and line; nothing of
    // that batch was emitted.
    let (r, b) = run("FAILFAST");
    let err = r.unwrap_err().to_string();
    assert!(err.contains("a.json") && err.contains("line 2"), "{err}");
    assert!(b.is_empty());
}

#[test]
fn options_a_connector_does_not_read_are_reported_at_start() {
    let session = Session::new();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let schema = Schema::from_iter([Field::new("v".into(), DataType::Int64)]);
    let warnings = |source: &[(&str, &str)], sink: &[(&str, &str)], name: &str| {
        let mut reader = session.read_stream().format("json").schema(schema.clone());
        for (k, v) in source {
            reader = reader.option(k, v);
        }
        let mut writer = reader
            .load(&input)
            .unwrap()
            .write_stream()
            .format("parquet")
            .option("path", dir.path().join(name).display())
            .checkpoint_location(dir.path().join(format!("{name}-ck")))
            .trigger(Trigger::AvailableNow)
            .progress(ProgressDisplay::Off);
        for (k, v) in sink {
            writer = writer.option(k, v);
        }
        let q = writer.start().unwrap();
        q.await_termination().unwrap();
        q.warnings()
    };
    let read = [
        ("maxFilesPerTrigger", "1"),
        ("mode", "DROPMALFORMED"),
        ("columnNameOfCorruptRecord", "_bad"),
        ("multiLine", "false"),
        ("latestFirst", "false"),
        ("cleanSource", "off"),
    ];
    let none = warnings(&read, &[("compression", "zstd")], "all-read");
    assert!(none.is_empty(), "every option given is read: {none:?}");

    // A CSV option given to the JSON source, a misspelt one, and a misspelt sink option.
    let w = warnings(&[("header", "true"), ("maxFilesPerTriger", "1")], &[("compresion", "zstd")], "unused");
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].contains("option(s) header, maxFilesPerTriger given to FileStreamSource["), "{}", w[0]);
    assert!(w[0].contains("its options are: maxFilesPerTrigger, latestFirst, cleanSource, mode"), "{}", w[0]);
    assert!(w[1].contains("option(s) compresion given to the parquet sink"), "{}", w[1]);
    assert!(w[1].contains("its options are: path, compression"), "{}", w[1]);
}
