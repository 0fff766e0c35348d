//! What a Spark user reaches for after the first query (issue 12): the session's
//! `StreamingQueryManager` and listeners, the static reader over a file sink's output,
//! using-column joins, readable errors.
//!
//! * Listeners: two queries in one session, every progress event seen (as many as
//!   batches ran, with the right names, in order, between started and terminated);
//!   `await_any_termination` returns when one stops and reports a failed one; a
//!   panicking listener stops neither the query nor the other listeners; idle events;
//!   query names unique among active queries.
//! * Static reads: each file sink format written by a query, then read back with
//!   `session.read()`, equals what was written (structs, lists, timestamps); the same
//!   output is the next query's stream; files the manifest does not list are not read;
//!   schemas inferred as Spark does elsewhere.
//! * `join_on` / `join_on_static`: one key column per join type (coalesced for full
//!   outer).

#[path = "../examples/common/mod.rs"]
mod common;
#[path = "support/rich_rows.rs"]
mod rich_rows;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rich_rows::{rich_rows, BASE_US};
use sluice::connectors::MemoryTable;
use sluice::prelude::*;

/// Records every event as a line: `started <name>`, `progress <name> <batch>`,
/// `idle <name>`, `terminated <name> <error or ->`.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Recorder {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    /// The events of query `name`, idle ones left out (how many depends on timing).
    fn of(&self, name: &str) -> Vec<String> {
        self.lines().into_iter().filter(|l| l.split(' ').nth(1) == Some(name) && !l.starts_with("idle")).collect()
    }
}

fn name_of(n: &Option<String>) -> String {
    n.clone().unwrap_or_else(|| "-".into())
}

impl StreamingQueryListener for Recorder {
    fn on_query_started(&self, e: &QueryStartedEvent) {
        self.0.lock().unwrap().push(format!("started {}", name_of(&e.name)));
    }
    fn on_query_progress(&self, e: &QueryProgressEvent) {
        self.0.lock().unwrap().push(format!("progress {} {}", name_of(&e.progress.name), e.progress.batch_id));
    }
    fn on_query_idle(&self, e: &QueryIdleEvent) {
        self.0.lock().unwrap().push(format!("idle {}", name_of(&e.name)));
    }
    fn on_query_terminated(&self, e: &QueryTerminatedEvent) {
        let error = if e.exception.is_some() { "error" } else { "-" };
        self.0.lock().unwrap().push(format!("terminated {} {error}", name_of(&e.name)));
    }
}

fn readings(values: &[i64]) -> DataFrame {
    df!("sensor" => values.iter().map(|v| format!("s{}", v % 3)).collect::<Vec<_>>(), "value" => values).unwrap()
}

/// JSON lines files `part-<i>.json` of `rows` rows each in `dir`.
fn write_json_files(dir: &Path, files: usize, rows: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for f in 0..files {
        let lines: String = (0..rows).map(|i| format!("{{\"sensor\":\"s{}\",\"value\":{}}}\n", i % 3, f * rows + i)).collect();
        std::fs::write(dir.join(format!("part-{f}.json")), lines).unwrap();
    }
}

/// The sequence a listener must see for one query: started, each batch's progress in
/// order (as many as `recent_progress` holds), terminated.
fn expected_events(name: &str, q: &StreamingQuery, error: bool) -> Vec<String> {
    let mut want = vec![format!("started {name}")];
    want.extend(q.recent_progress().iter().map(|p| format!("progress {name} {}", p.batch_id)));
    want.push(format!("terminated {name} {}", if error { "error" } else { "-" }));
    want
}

#[test]
fn two_queries_every_batch_seen_and_await_any_termination() {
    let dir = tempfile::tempdir().unwrap();
    write_json_files(&dir.path().join("in"), 4, 25);
    let session = Session::new();
    let recorder = Arc::new(Recorder::default());
    session.streams().add_listener(recorder.clone());

    let schema = Schema::from_iter([
        Field::new("sensor".into(), DataType::String),
        Field::new("value".into(), DataType::Int64),
    ]);
    let files = session.read_stream().format("json").schema(schema).option("maxFilesPerTrigger", 1).load(dir.path().join("in")).unwrap();
    let memory = MemoryStream::new(readings(&[]).schema().as_ref().clone());
    let q_files = files
        .write_stream()
        .query_name("files")
        .format("memory")
        .trigger(Trigger::AvailableNow)
        .progress(ProgressDisplay::Off)
        .checkpoint_location(dir.path().join("ck1"))
        .start()
        .unwrap();
    let q_mem = memory.to_df(&session).write_stream().query_name("mem").format("memory").progress(ProgressDisplay::Off).start().unwrap();
    assert!(session.streams().get(q_mem.id()).is_some(), "the running query is active");
    assert!(session.streams().active().iter().any(|q| q.name() == Some("mem")));

    for i in 0..3 {
        memory.add_data(readings(&[i, i + 1])).unwrap();
        q_mem.process_all_available().unwrap();
    }
    // The AvailableNow query stops by itself: await_any_termination returns.
    assert!(session.streams().await_any_termination(Some(Duration::from_secs(60))).unwrap());
    q_files.await_termination().unwrap();
    let active: Vec<String> = session.streams().active().iter().map(|q| q.name().unwrap().to_string()).collect();
    assert_eq!(active, ["mem"]);
    assert!(session.streams().get(q_files.id()).is_none(), "a stopped query is not active");
    // Delivered before await_termination returned: the files query's record is complete.
    assert_eq!(recorder.of("files"), expected_events("files", &q_files, false));
    assert_eq!(q_files.recent_progress().len(), 4, "one batch per file");

    // It stays terminated until reset.
    assert!(session.streams().await_any_termination(Some(Duration::ZERO)).unwrap());
    session.streams().reset_terminated();
    assert!(!session.streams().await_any_termination(Some(Duration::from_millis(50))).unwrap());

    q_mem.stop().unwrap();
    assert!(session.streams().active().is_empty());
    let mem = recorder.of("mem");
    assert_eq!(mem.iter().filter(|l| l.starts_with("progress")).count(), q_mem.recent_progress().len());
    assert_eq!(q_mem.recent_progress().len(), 3);
    assert_eq!(mem, expected_events("mem", &q_mem, false));
    assert_eq!(session.streams().listener_failures(), 0);
}

struct Panicker;

impl StreamingQueryListener for Panicker {
    fn on_query_progress(&self, e: &QueryProgressEvent) {
        panic!("listener bug at batch {}", e.progress.batch_id);
    }
}

#[test]
fn a_panicking_listener_stops_neither_the_query_nor_other_listeners() {
    let session = Session::new();
    let recorder = Arc::new(Recorder::default());
    session.streams().add_listener(Arc::new(Panicker));
    session.streams().add_listener(recorder.clone());
    let memory = MemoryStream::new(readings(&[]).schema().as_ref().clone());
    let q = memory.to_df(&session).write_stream().query_name("p").format("memory").progress(ProgressDisplay::Off).start().unwrap();
    for i in 0..3 {
        memory.add_data(readings(&[i])).unwrap();
        q.process_all_available().unwrap();
    }
    q.stop().unwrap();
    assert_eq!(q.exception(), None);
    assert_eq!(q.recent_progress().len(), 3);
    assert_eq!(recorder.of("p"), expected_events("p", &q, false));
    assert_eq!(session.streams().listener_failures(), 3);
    let warnings = q.warnings();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(
        warnings[0].contains("Panicker panicked in on_query_progress for batch 0 of query p")
            && warnings[0].contains("listener bug at batch 0"),
        "{warnings:?}"
    );
    assert_eq!(session.memory_table("p").unwrap().to_df().unwrap().unwrap().height(), 3);
}

#[test]
fn a_failed_query_is_reported_by_await_any_termination_and_its_terminated_event() {
    let session = Session::new();
    let recorder = Arc::new(Recorder::default());
    session.streams().add_listener(recorder.clone());
    let memory = MemoryStream::new(readings(&[]).schema().as_ref().clone());
    let q = memory
        .to_df(&session)
        .write_stream()
        .query_name("failing")
        .progress(ProgressDisplay::Off)
        .foreach_batch(|_, _| Err(SluiceError::User("the warehouse is down".into())))
        .start()
        .unwrap();
    memory.add_data(readings(&[1])).unwrap();
    let e = session.streams().await_any_termination(Some(Duration::from_secs(60))).unwrap_err();
    assert!(matches!(&e, SluiceError::QueryFailed { query, .. } if query == "failing"), "{e:?}");
    assert!(e.to_string().contains("the warehouse is down"), "{e}");
    // Reported until reset.
    assert!(session.streams().await_any_termination(Some(Duration::ZERO)).is_err());
    assert!(q.await_termination().unwrap_err().to_string().contains("the warehouse is down"));
    assert_eq!(recorder.lines().last().unwrap(), "terminated failing error");
    session.streams().reset_terminated();
    assert!(!session.streams().await_any_termination(Some(Duration::from_millis(10))).unwrap());
}

#[test]
fn idle_events_names_and_listener_removal() {
    let session = Session::new();
    session.set_conf("sluice.noDataProgressEventInterval", "50");
    let recorder = Arc::new(Recorder::default());
    session.streams().add_listener(recorder.clone());
    let memory = MemoryStream::new(readings(&[]).schema().as_ref().clone());
    let q = memory.to_df(&session).write_stream().query_name("idle").format("memory").progress(ProgressDisplay::Off).start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !recorder.lines().iter().any(|l| l == "idle idle") {
        assert!(Instant::now() < deadline, "no idle event: {:?}", recorder.lines());
        std::thread::sleep(Duration::from_millis(10));
    }
    // A second query of the same name is refused while the first runs (Spark's rule),
    // before it touches anything.
    let again = memory.to_df(&session).write_stream().query_name("idle").format("memory").start();
    let e = again.expect_err("same name twice");
    assert!(e.to_string().contains("a query with that name is already active"), "{e}");

    let as_dyn: Arc<dyn StreamingQueryListener> = recorder.clone();
    assert!(session.streams().remove_listener(&as_dyn));
    assert!(!session.streams().remove_listener(&recorder));
    let seen = recorder.lines().len();
    memory.add_data(readings(&[1])).unwrap();
    q.process_all_available().unwrap();
    q.stop().unwrap();
    assert_eq!(recorder.lines().len(), seen, "a removed listener hears nothing");
    // The name is free again once the query stopped.
    let q2 = memory.to_df(&session).write_stream().query_name("idle").format("memory").progress(ProgressDisplay::Off).start().unwrap();
    q2.stop().unwrap();
}

// ---------------------------------------------------------------------------------------
// Static reads of the file sink's output
// ---------------------------------------------------------------------------------------

/// Writes `rich_rows(0..6)` and `rich_rows(6..10)` as two batches through a `format` file sink
/// into `<dir>/out`; returns the rows written (`columns` of them).
fn write_through_sink(session: &Session, dir: &Path, format: &str, columns: &[&str]) -> DataFrame {
    let pick = |df: DataFrame| df.select(columns.iter().copied()).unwrap();
    let stream = MemoryStream::new(pick(rich_rows(&[0])).schema().clone());
    let q = stream
        .to_df(session)
        .write_stream()
        .format(format)
        .option("path", dir.join("out").display())
        .checkpoint_location(dir.join("ck"))
        .progress(ProgressDisplay::Off)
        .start()
        .unwrap();
    let batches = [pick(rich_rows(&[0, 1, 2, 3, 4, 5])), pick(rich_rows(&[6, 7, 8, 9]))];
    for b in &batches {
        stream.add_data(b.clone()).unwrap();
        q.process_all_available().unwrap();
    }
    q.stop().unwrap();
    let mut all = batches[0].clone();
    all.vstack_mut(&batches[1]).unwrap();
    all
}

fn sorted(df: &DataFrame) -> DataFrame {
    df.sort(["id"], Default::default()).unwrap()
}

fn assert_frames_equal(got: &DataFrame, want: &DataFrame, what: &str) {
    assert_eq!(got.schema(), want.schema(), "{what}: schema");
    assert!(sorted(got).equals_missing(&sorted(want)), "{what}:\n{got}\nwanted\n{want}");
}

/// Reads `out` as a stream with `schema` (AvailableNow, into memory): the next query's view.
fn read_as_stream(session: &Session, format: &str, out: &Path, schema: SchemaRef, ck: &Path) -> DataFrame {
    let table = MemoryTable::new();
    let q = session
        .read_stream()
        .format(format)
        .schema(schema)
        .load(out)
        .unwrap()
        .write_stream()
        .sink(Box::new(table.sink()))
        .trigger(Trigger::AvailableNow)
        .checkpoint_location(ck)
        .progress(ProgressDisplay::Off)
        .start()
        .unwrap();
    q.await_termination().unwrap();
    table.to_df().unwrap().unwrap()
}

#[test]
fn parquet_and_json_sink_output_reads_back_equal_and_streams_again() {
    let all = ["id", "name", "t", "window", "tags", "times"];
    for format in ["parquet", "json"] {
        let dir = tempfile::tempdir().unwrap();
        let session = Session::new();
        let written = write_through_sink(&session, dir.path(), format, &all);
        let out = dir.path().join("out");
        // No schema: the manifest (JSON) or the files (Parquet) give it.
        let back = session.read().format(format).load(&out).unwrap();
        assert_frames_equal(&back, &written, &format!("{format} read back"));
        assert!(matches!(back.column("window").unwrap().dtype(), DataType::Struct(_)));
        // With a schema, and through the shorthand.
        let schema = written.schema().clone();
        let shorthand = match format {
            "parquet" => session.read().schema(schema.clone()).parquet(&out),
            _ => session.read().schema(schema.clone()).json(&out),
        };
        assert_frames_equal(&shorthand.unwrap(), &written, &format!("{format} with a schema"));
        // The same output as the next query's stream.
        let streamed = read_as_stream(&session, format, &out, schema, &dir.path().join("ck2"));
        assert_frames_equal(&streamed, &written, &format!("{format} as a stream"));
    }
}

#[test]
fn csv_sink_output_reads_back_with_structs_flattened_and_lists_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let session = Session::new();
    let written = write_through_sink(&session, dir.path(), "csv", &["id", "name", "t", "window", "tags"]);
    let out = dir.path().join("out");
    let back = sorted(&session.read().csv(&out).unwrap());
    let names: Vec<&str> = back.get_column_names().iter().map(|n| n.as_str()).collect();
    assert_eq!(names, ["id", "name", "t", "window_start", "window_end", "tags"], "{back}");
    let want = sorted(&written);
    for c in ["id", "name", "t"] {
        assert!(back.column(c).unwrap().equals_missing(want.column(c).unwrap()), "{c}: {back}");
    }
    let window = want.column("window").unwrap().struct_().unwrap().clone();
    for f in ["start", "end"] {
        let field = window.field_by_name(f).unwrap();
        assert!(back.column(&format!("window_{f}")).unwrap().as_materialized_series().equals_missing(&field), "{f}");
    }
    let tags: Vec<Option<&str>> = back.column("tags").unwrap().str().unwrap().iter().collect();
    assert_eq!(&tags[..4], [Some("[a0, b]"), Some("[a1, b]"), Some("[]"), None], "lists are written as their text");
    // Streamed again with the read-back schema.
    let streamed = read_as_stream(&session, "csv", &out, back.schema().clone(), &dir.path().join("ck2"));
    assert_frames_equal(&streamed, &back, "csv as a stream");
}

#[test]
fn files_the_manifest_does_not_list_are_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let session = Session::new();
    let written = write_through_sink(&session, dir.path(), "parquet", &["id", "t", "window"]);
    let out = dir.path().join("out");
    let listed: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    assert_eq!(listed.len(), 2);
    // A crashed batch's orphan: a real Parquet file, with a part name, in no manifest entry.
    let orphan = out.join("part-00007-orphan.parquet");
    std::fs::copy(&listed[0], &orphan).unwrap();
    let back = session.read().parquet(&out).unwrap();
    assert_eq!(back.height(), written.height(), "the orphan is not read");
    assert_frames_equal(&back, &written, "manifest files only");
    // Read as a file on its own, it is.
    assert!(session.read().parquet(&orphan).unwrap().height() > 0);
}

#[test]
fn schemas_are_inferred_outside_a_sink_output_as_spark_does() {
    let dir = tempfile::tempdir().unwrap();
    let session = Session::new();
    let json = dir.path().join("json");
    std::fs::create_dir_all(&json).unwrap();
    std::fs::write(json.join("a.json"), "{\"k\":\"x\",\"n\":1,\"s\":{\"a\":1.5},\"l\":[1,2]}\n{\"k\":\"y\",\"n\":null}\n").unwrap();
    std::fs::write(json.join("b.json"), "{\"k\":\"z\",\"n\":3,\"t\":\"2024-01-01T00:00:00Z\"}\n").unwrap();
    let df = session.read().json(&json).unwrap().sort(["k"], Default::default()).unwrap();
    assert_eq!(df.height(), 3);
    assert_eq!(df.column("n").unwrap().dtype(), &DataType::Int64);
    assert_eq!(df.column("t").unwrap().dtype(), &DataType::String, "timestamps stay strings (inferTimestamp=false)");
    assert!(matches!(df.column("s").unwrap().dtype(), DataType::Struct(_)));
    assert_eq!(df.column("l").unwrap().dtype(), &DataType::List(Box::new(DataType::Int64)));

    let csv = dir.path().join("csv");
    std::fs::create_dir_all(&csv).unwrap();
    std::fs::write(csv.join("a.csv"), "k,n\nx,1\ny,2\n").unwrap();
    let strings = session.read().option("header", true).csv(&csv).unwrap();
    assert_eq!(strings.schema().iter_names().map(|n| n.as_str()).collect::<Vec<_>>(), ["k", "n"]);
    assert_eq!(strings.column("n").unwrap().dtype(), &DataType::String, "CSV columns are strings by default");
    let typed = session.read().option("header", true).option("inferSchema", true).csv(&csv).unwrap();
    assert_eq!(typed.column("n").unwrap().dtype(), &DataType::Int64);
    let positional = session.read().csv(&csv).unwrap();
    assert_eq!(positional.schema().iter_names().map(|n| n.as_str()).collect::<Vec<_>>(), ["_c0", "_c1"]);
    assert_eq!(positional.height(), 3, "without header the first line is a row");

    let missing = session.read().parquet(dir.path().join("nope")).unwrap_err();
    assert!(matches!(&missing, SluiceError::Io { path, .. } if path.ends_with("nope")), "{missing}");
    std::fs::create_dir_all(dir.path().join("empty")).unwrap();
    let empty = session.read().json(dir.path().join("empty")).unwrap_err().to_string();
    assert!(empty.contains("cannot infer a schema") && empty.contains(".schema("), "{empty}");
    let unknown = session.read().format("rate").load("").unwrap_err().to_string();
    assert!(unknown.contains("no static reader"), "{unknown}");
    // An unregistered format: both readers name it and list the registered ones.
    let static_err = session.read().format("avro").load("x").unwrap_err().to_string();
    let stream_err = session.read_stream().format("avro").load("x").err().map(|e| e.to_string()).unwrap_or_default();
    for e in [&static_err, &stream_err] {
        assert!(e.contains("unknown format \"avro\"") && e.contains("json") && e.contains("parquet"), "{e}");
    }
}

// ---------------------------------------------------------------------------------------
// Using-column joins
// ---------------------------------------------------------------------------------------

#[test]
fn join_on_static_keeps_one_key_column() {
    let session = Session::new();
    let customers = df!("customerId" => ["c0", "c1"], "tier" => ["gold", "silver"]).unwrap();
    for (how, rows) in [(StreamJoinType::Inner, 2), (StreamJoinType::LeftOuter, 3)] {
        let buys = MemoryStream::new(df!("customerId" => ["c0"], "amount" => [1i64]).unwrap().schema().clone());
        let joined = buys.to_df(&session).join_on_static(customers.clone(), ["customerId"], how);
        let names: Vec<String> = joined.schema().unwrap().iter_names().map(|n| n.to_string()).collect();
        assert_eq!(names, ["customerId", "amount", "tier"], "{how}");
        let table = MemoryTable::new();
        let q = joined.write_stream().sink(Box::new(table.sink())).progress(ProgressDisplay::Off).start().unwrap();
        buys.add_data(df!("customerId" => ["c0", "c1", "c9"], "amount" => [1i64, 2, 3]).unwrap()).unwrap();
        q.process_all_available().unwrap();
        q.stop().unwrap();
        let out = table.to_df().unwrap().unwrap();
        assert_eq!(out.height(), rows, "{how}: {out}");
        assert_eq!(out.width(), 3, "{how}: {out}");
    }
}

#[test]
fn join_on_two_streams_keeps_one_key_column_coalesced_for_full_outer() {
    let run = |how: StreamJoinType| -> (Vec<String>, Vec<String>) {
        let session = Session::new();
        let imp = MemoryStream::new(common::impressions_schema());
        let clk = MemoryStream::new(common::clicks_schema());
        let impressions = imp.to_df(&session).with_watermark("impression_time", "10 minutes").unwrap();
        let clicks = clk
            .to_df(&session)
            .select([col("click_ad_id").alias("ad_id"), col("click_time"), col("cost")])
            .with_watermark("click_time", "10 minutes")
            .unwrap();
        let within = col("click_time")
            .gt_eq(col("impression_time"))
            .and(col("click_time").lt_eq(col("impression_time") + interval("1 hour").unwrap()));
        let joined = impressions.join_on(&clicks, ["ad_id"], how, Some(within));
        let names = joined.schema().unwrap().iter_names().map(|n| n.to_string()).collect();
        let table = MemoryTable::new();
        let q = joined.write_stream().sink(Box::new(table.sink())).progress(ProgressDisplay::Off).start().unwrap();
        // a: clicked in time; b: clicked too late; c: never clicked; z: a click alone.
        common::feed_small_join_example(&imp, &clk, &q).unwrap();
        q.stop().unwrap();
        let all = table.to_df().unwrap().unwrap();
        let mut rows: Vec<String> = (0..all.height())
            .map(|i| {
                let get = |c: &str| all.column(c).ok().and_then(|c| c.get(i).ok()).map(|v| v.to_string()).unwrap_or("-".into());
                format!("{}|{}|{}", get("ad_id"), get("campaign"), get("cost"))
            })
            .collect();
        rows.sort();
        (names, rows)
    };
    let both = ["ad_id", "impression_time", "campaign", "click_time", "cost"];
    assert_eq!(run(StreamJoinType::Inner), (both.map(String::from).to_vec(), vec!["\"a\"|\"k\"|1.0".to_string()]));
    let (names, rows) = run(StreamJoinType::LeftOuter);
    assert_eq!(names, both);
    assert_eq!(rows, ["\"a\"|\"k\"|1.0", "\"b\"|\"k\"|null", "\"c\"|\"k\"|null"]);
    let (names, rows) = run(StreamJoinType::RightOuter);
    assert_eq!(names, both);
    assert_eq!(rows, ["\"a\"|\"k\"|1.0", "\"b\"|null|2.0", "\"z\"|null|3.0"], "the key is the right side's");
    let (names, rows) = run(StreamJoinType::FullOuter);
    assert_eq!(names, both);
    assert_eq!(
        rows,
        ["\"a\"|\"k\"|1.0", "\"b\"|\"k\"|null", "\"b\"|null|2.0", "\"c\"|\"k\"|null", "\"z\"|null|3.0"],
        "the key is coalesced: every row has one"
    );
    let (names, rows) = run(StreamJoinType::LeftSemi);
    assert_eq!(names, ["ad_id", "impression_time", "campaign"]);
    assert_eq!(rows, ["\"a\"|\"k\"|-"]);
}

#[test]
fn errors_debug_print_their_message() {
    let session = Session::new();
    let stream = MemoryStream::new(readings(&[]).schema().as_ref().clone()).to_df(&session);
    let e = stream.with_watermark("time", "1 minute").err().unwrap();
    let debug = format!("{e:?}");
    assert_eq!(debug, e.to_string());
    assert!(debug.starts_with("analysis error: cannot set a watermark on \"time\": no such column"), "{debug}");
    assert!(!debug.contains("Analysis {"), "{debug}");
}

/// Every scalar type the sink writes reads back without a schema, with its type; in JSON
/// and CSV a duration is ISO 8601 text (`PT1S`), so it reads back as that string.
#[test]
fn scalar_types_read_back_with_their_types() {
    let mut df = df!(
        "id" => [1i64, 2],
        "b" => [Some(true), None],
        "i32" => [1i32, -2],
        "u32" => [1u32, 2],
        "u64" => [1u64, u64::MAX],
        "f32" => [1.5f32, -2.5],
        "f64" => [1.5f64, 1e300],
        "s" => [Some("x, \"quoted\""), None],
    )
    .unwrap();
    df.with_column(Column::new("d".into(), [19_000i32, 19_001]).cast(&DataType::Date).unwrap()).unwrap();
    df.with_column(Column::new("dur".into(), [1_000_000i64, 2]).cast(&DataType::Duration(TimeUnit::Microseconds)).unwrap()).unwrap();
    df.with_column(Column::new("t".into(), [BASE_US, BASE_US + 1]).cast(&common::ts()).unwrap()).unwrap();
    for format in ["parquet", "json", "csv"] {
        let dir = tempfile::tempdir().unwrap();
        let session = Session::new();
        let stream = MemoryStream::new(df.schema().clone());
        let q = stream
            .to_df(&session)
            .write_stream()
            .format(format)
            .option("path", dir.path().join("out").display())
            .progress(ProgressDisplay::Off)
            .start()
            .unwrap();
        stream.add_data(df.clone()).unwrap();
        q.process_all_available().unwrap();
        q.stop().unwrap();
        let back = session.read().format(format).load(dir.path().join("out")).unwrap();
        let mut want = df.clone();
        if format != "parquet" {
            want.with_column(Column::new("dur".into(), ["PT1S", "PT0.000002S"])).unwrap();
        }
        assert_frames_equal(&back, &want, format);
    }
}

/// Stops the query it hears about: at its start, or after batch `at_batch`.
struct Stopper {
    manager: StreamingQueryManager,
    at_batch: Option<u64>,
    stopped: Mutex<Vec<String>>,
}

impl Stopper {
    fn stop(&self, id: &str) {
        if let Some(q) = self.manager.get(id) {
            q.stop().unwrap();
            self.stopped.lock().unwrap().push(id.to_string());
        }
    }
}

impl StreamingQueryListener for Stopper {
    fn on_query_started(&self, e: &QueryStartedEvent) {
        if self.at_batch.is_none() {
            self.stop(&e.id);
        }
    }
    fn on_query_progress(&self, e: &QueryProgressEvent) {
        if self.at_batch == Some(e.progress.batch_id) {
            self.stop(&e.progress.id);
        }
    }
}

/// A listener may stop a query, from its start event or a progress event, without
/// deadlocking the bus, the query or `start()`.
#[test]
fn a_listener_can_stop_the_query_it_hears_about() {
    for at_batch in [None, Some(1)] {
        let session = Session::new();
        let stopper =
            Arc::new(Stopper { manager: session.streams().clone(), at_batch, stopped: Mutex::new(Vec::new()) });
        session.streams().add_listener(stopper.clone());
        let memory = MemoryStream::new(readings(&[]).schema().as_ref().clone());
        let q = memory
            .to_df(&session)
            .write_stream()
            .format("memory")
            .query_name("stopped")
            .progress(ProgressDisplay::Off)
            .start()
            .unwrap();
        for i in 0..5 {
            if !q.is_active() {
                break;
            }
            memory.add_data(readings(&[i])).unwrap();
            q.process_all_available().unwrap();
        }
        q.await_termination().unwrap();
        assert!(!q.is_active());
        assert_eq!(*stopper.stopped.lock().unwrap(), [q.id().to_string()], "{at_batch:?}");
        if let Some(b) = at_batch {
            assert!(q.recent_progress().len() as u64 > b, "{at_batch:?}");
        }
    }
}
