//! Issue 13, seeing inside a stream: `explain()` of a data frame, a writer and a running
//! query; the state of a checkpoint read at rest (`read_state`, its change feed and
//! metadata) on oracle case p02's job.

#[path = "../examples/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sluice::prelude::*;

fn case_input(case: &str, work: &Path) -> PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/cases").join(case).join("input");
    let to = work.join("in");
    common::copy_ordered(&from, &to).unwrap();
    to
}

/// p02's job: sliding 10-minute windows every 5 minutes per sensor, watermark 10 minutes.
fn p02_job(session: &Session, input: &Path) -> StreamingDataFrame {
    let src = common::json_source(session, input, common::sensor_schema()).unwrap();
    common::windowed_agg(src, "10 minutes", Some("5 minutes"), Some("10 minutes")).unwrap()
}

#[test]
fn explain_shows_the_plans_operators_watermark_mode_and_sink() {
    let work = tempfile::tempdir().unwrap();
    let session = Session::new();
    let df = p02_job(&session, &work.path().join("in"));
    let text = df.explain(false).unwrap();
    let logical = text.split("== Physical Plan ==").next().unwrap();
    assert!(logical.starts_with("== Logical Plan ==\nAggregate ["), "{text}");
    assert!(logical.contains("+- EventTimeWatermark ts, 10 minutes\n"), "{text}");
    assert!(logical.contains("   +- StreamingRelation "), "{text}");
    assert!(text.contains("WriteToMicroBatchDataSource <not started>, outputMode Append\n"), "{text}");
    assert!(
        text.contains("+- StreamingAggregateExec op=0, stores=[0], keys=[window, sensor], partitions=4, watermark=ts delay 10 minutes\n"),
        "{text}"
    );
    assert!(!text.contains("== Analysis Errors =="), "{text}");
    // the same text every time
    assert_eq!(text, df.explain(false).unwrap());

    let extended = df.explain(true).unwrap();
    assert!(extended.contains("state0=[window: i64, sensor: str, __p0: i64"), "{extended}");
    assert!(extended.contains("-> [sensor: str, ts: datetime[μs], v: f64]"), "{extended}");
    assert!(text.contains("Aggregate [<expression>.alias(\"window\"), col(\"sensor\")], [len().alias(\"n\")"), "{text}");

    // the writer knows the sink and the mode, and what start() would refuse
    let writer = df.write_stream().output_mode(OutputMode::Complete).format("json").option("path", "out");
    let text = writer.explain(false).unwrap();
    assert!(text.contains("WriteToMicroBatchDataSource json[out], outputMode Complete\n"), "{text}");
    let no_wm = common::windowed_agg(
        common::json_source(&session, &work.path().join("in"), common::sensor_schema()).unwrap(),
        "10 minutes",
        None,
        None,
    )
    .unwrap();
    let text = no_wm.explain(false).unwrap();
    assert!(text.contains("== Analysis Errors ==\n"), "{text}");
    assert!(text.contains("watermark=none"), "{text}");
}

#[test]
fn a_running_query_explains_its_plan_with_its_sink() {
    let work = tempfile::tempdir().unwrap();
    let input = case_input("p02_sliding_append", work.path());
    let session = Session::new();
    let table = sluice::connectors::MemoryTable::new();
    let query = common::start_into(p02_job(&session, &input), OutputMode::Update, &work.path().join("ck"), &table).unwrap();
    let text = query.explain(false);
    assert!(text.contains("outputMode Update\n"), "{text}");
    assert!(text.contains("StreamingAggregateExec op=0"), "{text}");
    assert!(query.explain(true).contains("state0="), "{}", query.explain(true));
    query.stop().unwrap();
}

/// The checkpoint's files with their sizes and modification times: reading state must
/// leave them as they are.
fn listing(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), m.len(), m.modified().unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn rfc3339_us(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_micros()
}

/// A finished run of p02's job: the checkpoint, the input rows with the batch that read
/// them, and each batch's watermark (µs).
struct P02 {
    work: tempfile::TempDir,
    session: Session,
    df: StreamingDataFrame,
    rows: DataFrame,
    watermarks: Vec<i64>,
}

fn run_p02() -> P02 {
    let work = tempfile::tempdir().unwrap();
    let input = case_input("p02_sliding_append", work.path());
    let session = Session::new();
    let df = p02_job(&session, &input);
    let progress =
        common::run_contract(df.clone(), OutputMode::Append, &work.path().join("out"), &work.path().join("ck"), ProgressDisplay::Off)
            .unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&input).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut files = files.into_iter();
    let mut frames = Vec::new();
    let mut watermarks = Vec::new();
    for (i, p) in progress.iter().enumerate() {
        assert_eq!(p.batch_id, i as u64);
        watermarks.push(rfc3339_us(&p.event_time["watermark"]));
        if p.num_input_rows > 0 {
            let f = files.next().unwrap();
            let rows = session.read().schema(common::sensor_schema()).json(&f).unwrap();
            assert_eq!(rows.height() as u64, p.num_input_rows);
            frames.push(rows.lazy().with_column(lit(i as u64).cast(DataType::UInt64).alias("batch")));
        }
    }
    let rows = concat(frames, UnionArgs::default()).unwrap().collect().unwrap();
    P02 { work, session, df, rows, watermarks }
}

/// `(window start µs, sensor, n, nv, s)` rows, sorted, `s` rounded.
fn groups(df: DataFrame) -> Vec<(i64, String, i64, i64, i64)> {
    let df = df
        .lazy()
        .select([
            col("start").cast(DataType::Int64),
            col("sensor"),
            col("n").cast(DataType::Int64),
            col("nv").cast(DataType::Int64),
            (col("s") * lit(1000.0)).round(0, RoundMode::HalfAwayFromZero).cast(DataType::Int64).alias("s"),
        ])
        .sort(["start", "sensor"], Default::default())
        .collect()
        .unwrap();
    let c = |n: &str| df.column(n).unwrap().as_materialized_series().clone();
    let (start, sensor, n, nv, s) = (c("start"), c("sensor"), c("n"), c("nv"), c("s"));
    (0..df.height())
        .map(|i| {
            (
                start.i64().unwrap().get(i).unwrap(),
                sensor.str().unwrap().get(i).unwrap().to_string(),
                n.i64().unwrap().get(i).unwrap(),
                nv.i64().unwrap().get(i).unwrap(),
                s.i64().unwrap().get(i).unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn read_state_after_each_batch_is_the_aggregation_of_the_rows_not_yet_emitted() {
    let run = run_p02();
    let ck = run.work.path().join("ck");
    let before = listing(&ck);
    let (slide, width) = (300_000_000i64, 600_000_000i64);
    // each row in its two sliding windows, with the batch that read it
    let windows = run
        .rows
        .clone()
        .lazy()
        .with_column(col("ts").cast(DataType::Int64).alias("t"))
        .with_column((col("t") - col("t") % lit(slide)).alias("s1"))
        .with_column(concat_list([col("s1"), col("s1") - lit(slide)]).unwrap().alias("start"))
        .explode(by_name(["start"], true, false), ExplodeOptions { empty_as_null: false, keep_nulls: false })
        .with_column((col("start") + lit(width)).alias("end"))
        .collect()
        .unwrap();
    let late_wm: Vec<i64> = (0..run.watermarks.len()).map(|b| if b == 0 { 0 } else { run.watermarks[b - 1] }).collect();
    let lates = df!("batch" => (0..late_wm.len() as u64).collect::<Vec<_>>(), "late_wm" => late_wm).unwrap();
    for (n, wm) in run.watermarks.iter().enumerate() {
        // a batch's rows count in a window unless its end is at or before the previous
        // batch's watermark (late); a window leaves state (is emitted) once its end is
        // at or before the batch's watermark
        let expected = windows
            .clone()
            .lazy()
            .filter(col("batch").lt_eq(lit(n as u64)))
            .join(lates.clone().lazy(), [col("batch")], [col("batch")], JoinArgs::new(JoinType::Left))
            .filter(col("end").gt(col("late_wm")).and(col("end").gt(lit(*wm))))
            .group_by([col("start"), col("sensor")])
            .agg([len().cast(DataType::Int64).alias("n"), col("v").count().alias("nv"), col("v").sum().alias("s")])
            .collect()
            .unwrap();
        let state = run.session.read_state(&ck).operator(0).batch(n as u64).query(&run.df).load().unwrap();
        assert!(state.column("partition_id").is_ok());
        assert!(state.column("raw.__p0").is_ok(), "{state}");
        let state = state.lazy().with_column(col("window").struct_().field_by_name("start").alias("start")).collect().unwrap();
        assert_eq!(groups(state), groups(expected), "state after batch {n}");
    }
    // without the query: the raw state rows
    let raw = run.session.read_state(&ck).load().unwrap();
    let names: Vec<String> = raw.get_column_names().iter().map(|s| s.to_string()).collect();
    assert_eq!(names, ["partition_id", "window", "sensor", "__p0", "__p1", "__p2", "__p3", "__p4"]);
    assert_eq!(listing(&ck), before, "reading state wrote to the checkpoint");
}

#[test]
fn the_change_feed_replayed_over_the_first_snapshot_equals_the_last_and_metadata_lists_the_store() {
    let run = run_p02();
    let ck = run.work.path().join("ck");
    let before = listing(&ck);
    let last = run.watermarks.len() as u64 - 1;
    let key = |df: &DataFrame, i: usize| -> (i64, String) {
        (
            df.column("window").unwrap().i64().unwrap().get(i).unwrap(),
            df.column("sensor").unwrap().str().unwrap().get(i).unwrap().to_string(),
        )
    };
    let value = |df: &DataFrame, i: usize| -> String {
        ["__p0", "__p1", "__p2"].iter().map(|c| format!("{:?}", df.column(c).unwrap().get(i).unwrap())).collect::<Vec<_>>().join("|")
    };
    let as_map = |df: &DataFrame| -> std::collections::BTreeMap<(i64, String), String> {
        (0..df.height()).map(|i| (key(df, i), value(df, i))).collect()
    };
    let first = run.session.read_state(&ck).batch(0).load().unwrap();
    let mut state = as_map(&first);
    let changes = run.session.read_state_changes(&ck, 1, last).operator(0).load().unwrap();
    assert!(changes.height() > 0);
    let batches = changes.column("batch_id").unwrap().u64().unwrap().clone();
    assert!(batches.into_no_null_iter().is_sorted(), "changes in batch order");
    let kinds = changes.column("change_type").unwrap().str().unwrap().clone();
    let mut deletes = 0;
    for i in 0..changes.height() {
        match kinds.get(i).unwrap() {
            "update" => {
                state.insert(key(&changes, i), value(&changes, i));
            }
            "delete" => {
                deletes += 1;
                // a window opened and emitted by the same batch is deleted without having
                // been in a committed version
                state.remove(&key(&changes, i));
            }
            other => panic!("change type {other}"),
        }
    }
    assert!(deletes > 0, "append mode evicts emitted windows");
    let last_state = run.session.read_state(&ck).batch(last).load().unwrap();
    assert_eq!(state, as_map(&last_state));

    let meta = run.session.read_state_metadata(&ck).unwrap();
    assert_eq!(meta.height(), 1);
    assert_eq!(meta.column("operator_name").unwrap().str().unwrap().get(0), Some("StreamingAggregateExec"));
    assert_eq!(meta.column("keys").unwrap().str().unwrap().get(0), Some("window, sensor"));
    assert_eq!(meta.column("num_partitions").unwrap().u32().unwrap().get(0), Some(4));
    assert_eq!(meta.column("max_batch_id").unwrap().u64().unwrap().get(0), Some(last));
    // a batch not committed, an operator that does not exist
    assert!(run.session.read_state(&ck).batch(last + 1).load().unwrap_err().to_string().contains("not committed"));
    assert!(run.session.read_state(&ck).operator(1).load().is_err());
    assert_eq!(listing(&ck), before, "reading state wrote to the checkpoint");
}

/// Per-user counts and sums of a memory stream: the live state after each batch is the
/// aggregation of every row so far, and a key lookup finds its row.
#[test]
fn live_state_and_key_lookup_during_a_run_match_a_recomputation() {
    let work = tempfile::tempdir().unwrap();
    let schema = common::schema(&[("user", DataType::String), ("v", DataType::Int64)]);
    let session = Session::new();
    let stream = MemoryStream::new(schema);
    let df = stream.to_df(&session).group_by([col("user")]).agg([len().alias("n"), col("v").sum().alias("total")]);
    let ck = work.path().join("ck");
    let table = sluice::connectors::MemoryTable::new();
    let query = common::start_into(df.clone(), OutputMode::Update, &ck, &table).unwrap();
    assert_eq!(query.state_batch_id(), None);
    assert_eq!(query.state(0).unwrap().height(), 0);
    let batches = [
        df!("user" => ["u1", "u2", "u1"], "v" => [1i64, 2, 3]).unwrap(),
        df!("user" => ["u3", "u1"], "v" => [10i64, 20]).unwrap(),
        df!("user" => ["u2", "u4", "u4", "u4"], "v" => [5i64, 1, 1, 1]).unwrap(),
    ];
    let mut all = DataFrame::empty_with_schema(batches[0].schema());
    let sorted = |df: DataFrame| -> Vec<(String, i64, i64)> {
        let df = df.sort(["user"], Default::default()).unwrap();
        (0..df.height())
            .map(|i| {
                (
                    df.column("user").unwrap().str().unwrap().get(i).unwrap().to_string(),
                    df.column("n").unwrap().cast(&DataType::Int64).unwrap().i64().unwrap().get(i).unwrap(),
                    df.column("total").unwrap().i64().unwrap().get(i).unwrap(),
                )
            })
            .collect()
    };
    for (b, rows) in batches.iter().enumerate() {
        stream.add_data(rows.clone()).unwrap();
        query.process_all_available().unwrap();
        all.vstack_mut(rows).unwrap();
        let expected = all
            .clone()
            .lazy()
            .group_by([col("user")])
            .agg([len().alias("n"), col("v").sum().alias("total")])
            .collect()
            .unwrap();
        assert_eq!(query.state_batch_id(), Some(b as u64));
        let live = query.state(0).unwrap();
        assert!(live.column("partition_id").is_ok() && live.column("raw.__p0").is_ok(), "{live}");
        assert_eq!(sorted(live), sorted(expected.clone()), "after batch {b}");
        for user in ["u1", "u2", "u3", "u4"] {
            let want = sorted(expected.clone().lazy().filter(col("user").eq(lit(user))).collect().unwrap());
            assert_eq!(sorted(query.state_lookup(0, &[("key", user)]).unwrap()), want, "{user} after batch {b}");
            assert_eq!(sorted(query.state_lookup(0, &[("user", user)]).unwrap()), want);
        }
    }
    assert!(query.state_lookup(0, &[("nope", "x")]).unwrap_err().to_string().contains("no column"));
    assert!(query.state(1).is_err());
    query.stop().unwrap();
    // a restarted query shows the committed state before its first batch
    let query = common::start_into(df.clone(), OutputMode::Update, &ck, &table).unwrap();
    assert_eq!(query.state_batch_id(), Some(2));
    assert_eq!(sorted(query.state(0).unwrap()).len(), 4);
    query.stop().unwrap();
    // and the same rows read at rest
    let at_rest = session.read_state(&ck).query(&df).load().unwrap();
    assert_eq!(sorted(at_rest).len(), 4);
}

/// Runs the sliding-window job of `case` with its late rows to a Parquet side output,
/// restarting after every batch (the sink fails at the next one, which the restart
/// replays as logged), then replays the last batch once more (its commit removed): returns
/// the work folder, the output rows, the late rows and the final state.
fn run_with_late_rows(case: &str) -> (tempfile::TempDir, BTreeMap<u64, String>, DataFrame, DataFrame) {
    let work = tempfile::tempdir().unwrap();
    let input = case_input(case, work.path());
    let (out, ck, late) = (work.path().join("out"), work.path().join("ck"), work.path().join("late"));
    let session = Session::new();
    let run = |fail_at: Option<u64>| -> bool {
        let o = out.clone();
        let q = p02_job(&session, &input)
            .write_stream()
            .output_mode(OutputMode::Append)
            .trigger(Trigger::AvailableNow)
            .checkpoint_location(&ck)
            .progress(ProgressDisplay::Off)
            .with_late_rows("parquet", late.display())
            .foreach_batch(move |df, id| {
                if Some(id) == fail_at {
                    return Err(SluiceError::User(format!("injected failure in batch {id}")));
                }
                common::write_batch_jsonl(&o, df, id)
            })
            .start()
            .unwrap();
        q.await_termination().is_ok()
    };
    let mut k = 1;
    while !run(Some(k)) {
        k += 1;
    }
    // the last batch once more: its commit lost, it is replayed
    let last = std::fs::read_dir(ck.join("commits"))
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str().and_then(|n| n.parse::<u64>().ok()))
        .max()
        .unwrap();
    std::fs::remove_file(ck.join("commits").join(last.to_string())).unwrap();
    assert!(run(None));
    let rows = sluice::connectors::read_output(&late).unwrap();
    let state = session.read_state(&ck).query(&p02_job(&session, &input)).load().unwrap();
    (work, common::read_batch_files(&out).unwrap(), rows, state)
}

type Group = (String, i64); // (sensor, window start µs)

/// Every (input row, window) pair of `case` is counted in exactly one place: an emitted
/// window, a window still in state, or the late-rows output, which names each dropped
/// pair once, with a window end at or before the watermark it failed.
fn late_rows_are_exactly_the_dropped_rows(case: &str) -> usize {
    let (work, out, late, state) = run_with_late_rows(case);
    let (slide, width) = (300_000_000i64, 600_000_000i64);
    let mut input: BTreeMap<Group, i64> = BTreeMap::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(work.path().join("in")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for f in files {
        for line in std::fs::read_to_string(f).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let t = rfc3339_us(v["ts"].as_str().unwrap());
            let s1 = t - t.rem_euclid(slide);
            for start in [s1, s1 - slide] {
                *input.entry((v["sensor"].as_str().unwrap().to_string(), start)).or_default() += 1;
            }
        }
    }
    let mut counted: BTreeMap<Group, i64> = BTreeMap::new();
    for text in out.values() {
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let start = rfc3339_us(&format!("{}Z", v["window"]["start"].as_str().unwrap().trim_end_matches('Z')));
            *counted.entry((v["sensor"].as_str().unwrap().to_string(), start)).or_default() += v["n"].as_i64().unwrap();
        }
    }
    // what was emitted is Spark's output
    let mut spark: BTreeMap<Group, i64> = BTreeMap::new();
    let expected = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/cases").join(case).join("expected.jsonl");
    for line in std::fs::read_to_string(expected).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        *spark.entry((v["sensor"].as_str().unwrap().to_string(), rfc3339_us(v["window_start"].as_str().unwrap()))).or_default() +=
            v["n"].as_i64().unwrap();
    }
    assert_eq!(counted, spark, "{case}: the emitted windows are Spark's");
    let state = state.lazy().with_column(col("window").struct_().field_by_name("start").cast(DataType::Int64).alias("start")).collect().unwrap();
    for i in 0..state.height() {
        let g = (
            state.column("sensor").unwrap().str().unwrap().get(i).unwrap().to_string(),
            state.column("start").unwrap().i64().unwrap().get(i).unwrap(),
        );
        *counted.entry(g).or_default() += state.column("n").unwrap().i64().unwrap().get(i).unwrap();
    }
    let mut dropped: BTreeMap<Group, i64> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    if late.height() > 0 {
        let names: Vec<String> = late.get_column_names().iter().map(|s| s.to_string()).collect();
        assert_eq!(names, ["batch_id", "operator_id", "operator", "watermark", "event_time", "window_start", "window_end", "row"]);
        let us = |c: &str, i: usize| late.column(c).unwrap().cast(&DataType::Int64).unwrap().i64().unwrap().get(i).unwrap();
        for i in 0..late.height() {
            let row: serde_json::Value = serde_json::from_str(late.column("row").unwrap().str().unwrap().get(i).unwrap()).unwrap();
            let (start, end, wm, et) = (us("window_start", i), us("window_end", i), us("watermark", i), us("event_time", i));
            assert!(end <= wm, "a late row's window ends after the watermark it failed");
            assert_eq!(end - start, width);
            assert!(start <= et && et < end);
            assert_eq!(late.column("operator").unwrap().str().unwrap().get(i), Some("StreamingAggregateExec"));
            let sensor = row["sensor"].as_str().unwrap().to_string();
            assert!(seen.insert((sensor.clone(), start, row.to_string())), "late row written twice: {row}");
            *dropped.entry((sensor, start)).or_default() += 1;
        }
    }
    for (g, n) in &input {
        let c = counted.get(g).copied().unwrap_or(0);
        let d = dropped.get(g).copied().unwrap_or(0);
        assert_eq!(c + d, *n, "{case}: window {g:?}: {c} counted + {d} late != {n} input rows");
    }
    assert!(dropped.keys().all(|g| input.contains_key(g)));
    late.height()
}

#[test]
fn late_rows_of_p01_and_p02_are_exactly_the_dropped_rows_across_restarts() {
    // p01's handmade rows: the 00:02 row arrives late but its windows are still open
    assert_eq!(late_rows_are_exactly_the_dropped_rows("p01_handmade"), 0);
    assert!(late_rows_are_exactly_the_dropped_rows("p02_sliding_append") > 0);
}

/// Deduplication's late rows go to a foreach-style side output with the operator, the
/// watermark and the event time; the progress counter still counts them.
/// Late rows collected by a `with_late_rows_foreach` side output: (batch id, rows) per call.
type LateCalls = std::sync::Arc<std::sync::Mutex<Vec<(u64, DataFrame)>>>;

/// Starts `df` in append mode into a memory table, its late rows to a foreach side output.
fn start_with_late_rows_foreach(df: StreamingDataFrame) -> (StreamingQuery, sluice::connectors::MemoryTable, LateCalls) {
    let seen = LateCalls::default();
    let sink = seen.clone();
    let table = sluice::connectors::MemoryTable::new();
    let query = df
        .write_stream()
        .output_mode(OutputMode::Append)
        .progress(ProgressDisplay::Off)
        .with_late_rows_foreach(move |rows, id| {
            sink.lock().unwrap().push((id, rows.clone()));
            Ok(())
        })
        .sink(Box::new(table.sink()))
        .start()
        .unwrap();
    (query, table, seen)
}

/// A minute in µs.
const MINUTE_US: i64 = 60_000_000;

/// Rows `id` (String), `t` (timestamp, `minutes[i]` minutes after the epoch): the input
/// of the deduplication tests.
fn id_minute_rows(ids: &[&str], minutes: &[i64]) -> DataFrame {
    df!("id" => ids, "t" => minutes.iter().map(|m| m * MINUTE_US).collect::<Vec<_>>())
        .unwrap()
        .lazy()
        .with_column(col("t").cast(common::ts()))
        .collect()
        .unwrap()
}

#[test]
fn dedup_late_rows_reach_a_foreach_side_output() {
    let session = Session::new();
    let schema = common::schema(&[("id", DataType::String), ("t", common::ts())]);
    let stream = MemoryStream::new(schema);
    let df = stream.to_df(&session).with_watermark("t", "1 minute").unwrap().drop_duplicates(["id", "t"]).unwrap();
    let (query, _table, seen) = start_with_late_rows_foreach(df);
    let frame = id_minute_rows;
    stream.add_data(frame(&["a", "b"], &[10, 20])).unwrap();
    query.process_all_available().unwrap();
    // the watermark is now 19 minutes: "c" at 5 minutes is late
    stream.add_data(frame(&["c", "d"], &[5, 30])).unwrap();
    query.process_all_available().unwrap();
    let dropped: u64 = query.recent_progress().iter().map(|p| p.state_operators[0].num_rows_dropped_by_watermark).sum();
    query.stop().unwrap();
    assert_eq!(dropped, 1);
    let seen = seen.lock().unwrap();
    let late: Vec<&(u64, DataFrame)> = seen.iter().filter(|(_, d)| d.height() > 0).collect();
    assert_eq!(late.len(), 1, "{seen:?}");
    let (batch, rows) = late[0];
    let row: serde_json::Value = serde_json::from_str(rows.column("row").unwrap().str().unwrap().get(0).unwrap()).unwrap();
    assert_eq!(row["id"], "c");
    assert_eq!(rows.column("batch_id").unwrap().u64().unwrap().get(0), Some(*batch));
    assert_eq!(rows.column("operator").unwrap().str().unwrap().get(0), Some("StreamingDeduplicateExec"));
    let us = |c: &str| rows.column(c).unwrap().cast(&DataType::Int64).unwrap().i64().unwrap().get(0);
    assert_eq!(us("event_time"), Some(5 * MINUTE_US));
    assert_eq!(us("watermark"), Some(19 * MINUTE_US));
    assert_eq!(us("window_start"), None);
}

/// `explain_batch` for every batch of p01 and p05: the replayed output is the sink's
/// batch, every operator input pair has a rule, emitted pairs belong to emitted windows,
/// nothing is written to the checkpoint, and a sink that differs is reported as
/// corruption.
#[test]
fn explain_batch_reproduces_every_batch_of_p01_and_p05_and_names_each_rule() {
    for (case, sliding) in [("p01_handmade", true), ("p05_wiki_edits", false)] {
        let work = tempfile::tempdir().unwrap();
        let input = case_input(case, work.path());
        let session = Session::new();
        let df = if sliding {
            p02_job(&session, &input)
        } else {
            let src = common::json_source(&session, &input, common::wiki_schema()).unwrap();
            common::wiki_edits(src, "10 minutes", "1 minute").unwrap()
        };
        let (out, ck) = (work.path().join("out"), work.path().join("ck"));
        let progress = common::run_contract(df.clone(), OutputMode::Append, &out, &ck, ProgressDisplay::Off).unwrap();
        let sink = common::read_batch_files(&out).unwrap();
        let before = listing(&ck);
        let mut late_pairs = 0;
        for p in &progress {
            let n = p.batch_id;
            let e = sluice::engine::explain_batch(&df, OutputMode::Append, &ck, n).unwrap();
            // the replayed output is what the sink holds
            let replayed_dir = work.path().join("replayed");
            common::write_batch_jsonl(&replayed_dir, &e.output.drop("reason").unwrap(), n).unwrap();
            let replayed = common::read_batch_files(&replayed_dir).unwrap();
            assert_eq!(replayed.get(&n), sink.get(&n), "{case} batch {n}");
            e.verify(&e.output.drop("reason").unwrap()).unwrap();
            if e.output.height() > 0 {
                let tampered = e.output.drop("reason").unwrap().slice(1, e.output.height());
                let err = e.verify(&tampered).unwrap_err().to_string();
                assert!(err.contains("corruption: batch"), "{err}");
            }
            assert!(e.output.column("reason").unwrap().str().unwrap().iter().all(|r| r.unwrap().starts_with("window end ")));
            // one pair per (input row, window): 2 per row for p01's sliding windows, 1 for p05
            assert_eq!(e.rows.height() as u64, p.num_input_rows * if sliding { 2 } else { 1 }, "{case} batch {n}");
            let emitted_windows: std::collections::BTreeSet<i64> = if e.output.height() > 0 {
                let w = e.output.column("window").unwrap().as_materialized_series().struct_().unwrap().field_by_name("start").unwrap();
                w.cast(&DataType::Int64).unwrap().i64().unwrap().into_no_null_iter().collect()
            } else {
                Default::default()
            };
            let outcome = e.rows.column("outcome").unwrap().str().unwrap().clone();
            let reason = e.rows.column("reason").unwrap().str().unwrap().clone();
            let start = e.rows.column("window_start").unwrap().cast(&DataType::Int64).unwrap().i64().unwrap().clone();
            for r in 0..e.rows.height() {
                let (o, why) = (outcome.get(r).unwrap(), reason.get(r).unwrap());
                match o {
                    "late" => {
                        late_pairs += 1;
                        assert!(why.starts_with("late: event time ") && why.contains(&format!("of batch {}", n.saturating_sub(1))), "{why}");
                    }
                    "in state" => assert!(why.starts_with("in state: window end ") && why.contains("not final yet"), "{why}"),
                    "emitted" => {
                        assert!(why.starts_with("emitted: window end "), "{why}");
                        assert!(emitted_windows.contains(&start.get(r).unwrap()), "{case} batch {n}: {why}");
                    }
                    other => panic!("{case} batch {n}: outcome {other}"),
                }
            }
            let text = e.to_text();
            assert!(text.starts_with(&format!("batch {n}: watermark ")), "{text}");
        }
        // the rows progress counted as dropped are the late ones
        let dropped: u64 = progress.iter().map(|p| p.state_operators[0].num_rows_dropped_by_watermark).sum();
        assert_eq!(late_pairs > 0, dropped > 0, "{case}");
        assert!(sluice::engine::explain_batch(&df, OutputMode::Append, &ck, progress.len() as u64 + 5).is_err());
        assert_eq!(listing(&ck), before, "explaining a batch wrote to the checkpoint");
    }
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, text.split_once("\r\n\r\n").unwrap().1.to_string())
}

/// The HTTP endpoint answers while the query runs: the list of queries, Spark's progress
/// JSON, and the state by key as JSON rows; it stops with the query.
#[test]
fn the_http_endpoint_answers_while_the_query_runs() {
    let session = Session::new();
    let schema = common::schema(&[("user", DataType::String), ("v", DataType::Int64)]);
    let stream = MemoryStream::new(schema);
    let df = stream.to_df(&session).group_by([col("user")]).agg([len().alias("n"), col("v").sum().alias("total")]);
    let query = df
        .write_stream()
        .output_mode(OutputMode::Update)
        .format("memory")
        .query_name("per_user")
        .option("sluice.http.port", 0)
        .progress(ProgressDisplay::Off)
        .start()
        .unwrap();
    assert!(query.warnings().is_empty(), "{:?}", query.warnings());
    let port = query.http_port().unwrap();
    stream.add_data(df!("user" => ["u1", "u2", "u1"], "v" => [1i64, 2, 3]).unwrap()).unwrap();
    query.process_all_available().unwrap();

    let (status, body) = http_get(port, "/queries");
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list[0]["name"], "per_user");
    assert_eq!(list[0]["stateBatchId"], 0);

    let (status, body) = http_get(port, "/queries/per_user/progress");
    assert_eq!(status, 200, "{body}");
    let progress: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(progress["batchId"], 0);
    assert_eq!(progress["numInputRows"], 3);

    let (status, body) = http_get(port, "/queries/per_user/state?key=u1");
    assert_eq!(status, 200, "{body}");
    let rows: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1, "{body}");
    assert_eq!(rows[0]["user"], "u1");
    assert_eq!(rows[0]["n"], 2);
    assert_eq!(rows[0]["total"], 4);
    let (_, body) = http_get(port, "/queries/per_user/state");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap().as_array().unwrap().len(), 2);
    let (_, body) = http_get(port, "/queries/per_user/state?user=nobody");
    assert_eq!(body, "[]");
    // Errors are JSON too: an unknown query or route is a 404, a key column the state
    // does not have or an operator / store that is not a number is a 400.
    for (path, status) in [
        ("/queries/nope/state", 404),
        ("/queries/nope/progress", 404),
        ("/queries/per_user/nothing", 404),
        ("/elsewhere", 404),
        ("/queries/per_user/state?color=red", 400),
        ("/queries/per_user/state?operator=first", 400),
        ("/queries/per_user/state?store=-1", 400),
    ] {
        let (got, body) = http_get(port, path);
        assert_eq!(got, status, "{path}: {body}");
        let error: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        assert!(error["error"].as_str().is_some_and(|m| !m.is_empty()), "{path}: {body}");
    }
    assert!(http_get(port, "/queries/nope/state").1.contains("nope"));
    assert!(http_get(port, "/queries/per_user/state?operator=first").1.contains("operator"));
    // Only GET is served.
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(s, "POST /queries HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.1 405"), "{text}");
    }
    query.stop().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "the endpoint stops with the query");
}

/// `explain_batch` of a deduplication names the batch that first saw a duplicate's key
/// (from the change feed), duplicates within the batch, and late rows.
#[test]
fn explain_batch_names_the_batch_that_saw_a_duplicate_key() {
    let work = tempfile::tempdir().unwrap();
    let ck = work.path().join("ck");
    let session = Session::new();
    let schema = common::schema(&[("id", DataType::String), ("t", common::ts())]);
    let stream = MemoryStream::new(schema);
    let df = stream.to_df(&session).with_watermark("t", "1 minute").unwrap().drop_duplicates(["id"]).unwrap();
    let table = sluice::connectors::MemoryTable::new();
    let query = common::start_into(df.clone(), OutputMode::Append, &ck, &table).unwrap();
    let frame = id_minute_rows;
    for rows in [frame(&["a", "b"], &[10, 11]), frame(&["x"], &[20]), frame(&["a", "c", "c", "z"], &[25, 26, 27, 1])] {
        stream.add_data(rows).unwrap();
        query.process_all_available().unwrap();
    }
    query.stop().unwrap();
    let last = query.recent_progress().iter().filter(|p| p.num_input_rows == 4).map(|p| p.batch_id).next().unwrap();
    let e = sluice::engine::explain_batch(&df, OutputMode::Append, &ck, last).unwrap();
    let reasons: Vec<String> = e.rows.column("reason").unwrap().str().unwrap().iter().map(|r| r.unwrap().to_string()).collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(reasons.iter().any(|r| r.starts_with("late: event time 1970-01-01T00:01:00")), "{reasons:?}");
    assert!(reasons.contains(&r#"duplicate of key {"id":"a"} seen in batch 0"#.to_string()), "{reasons:?}");
    assert!(reasons.contains(&r#"emitted: the first row of key {"id":"c"}"#.to_string()), "{reasons:?}");
    assert!(reasons.contains(&format!(r#"duplicate of key {{"id":"c"}} seen earlier in batch {last}"#)), "{reasons:?}");
    let batch_rows = table.batches().into_iter().find(|(b, _)| *b == last).map(|(_, d)| d).unwrap();
    e.verify(&batch_rows).unwrap();
}

/// A frame of `cols` (all of one length).
fn frame_of(cols: Vec<Column>) -> DataFrame {
    let h = cols[0].len();
    DataFrame::new(h, cols).unwrap()
}

/// A timestamp column of seconds after 2024-03-01T08:00:00Z.
fn ts_after_8(name: &str, secs: Vec<i64>) -> Column {
    let base = 1_709_280_000_000_000i64; // 2024-03-01T08:00:00Z
    Column::new(name.into(), secs.into_iter().map(|s| base + s * 1_000_000).collect::<Vec<_>>()).cast(&common::ts()).unwrap()
}

/// `explain_batch` of a stream-stream join names the left row that never matched in the
/// batch whose watermark evicts it from state (inner: it produced nothing; left outer: it
/// produced the null-padded output row, which says so), and every batch's replayed output
/// is the sink's.
#[test]
fn explain_batch_names_a_join_row_evicted_with_no_match() {
    for how in [sluice::StreamJoinType::Inner, sluice::StreamJoinType::LeftOuter] {
        let work = tempfile::tempdir().unwrap();
        let ck = work.path().join("ck");
        let session = Session::new();
        let imp = sluice::connectors::MemoryStream::new(std::sync::Arc::new(common::impressions_schema()));
        let clk = sluice::connectors::MemoryStream::new(std::sync::Arc::new(common::clicks_schema()));
        // click_time in [impression_time, impression_time + 1 hour], 10-minute watermarks
        let df = common::ad_join(imp.to_df(&session), clk.to_df(&session), how, "10 minutes", "10 minutes", "1 hour").unwrap();
        let table = sluice::connectors::MemoryTable::new();
        let query = common::start_into(df.clone(), OutputMode::Append, &ck, &table).unwrap();
        // a is clicked, c never is; then time moves on by 5 hours, which evicts both.
        imp.add_data(common::impressions_at(&["a", "c"], &[0, 20], "k").unwrap()).unwrap();
        clk.add_data(common::clicks_at(&["a"], &[60], &[1.0]).unwrap()).unwrap();
        query.process_all_available().unwrap();
        imp.add_data(common::impressions_at(&["later"], &[5 * 3600], "k").unwrap()).unwrap();
        clk.add_data(common::clicks_at(&["none"], &[5 * 3600], &[0.0]).unwrap()).unwrap();
        query.process_all_available().unwrap();
        query.stop().unwrap();
        let batches: Vec<u64> = query.recent_progress().iter().map(|p| p.batch_id).collect();
        assert!(batches.len() >= 3, "{how}: the watermark's move runs a no-data batch: {batches:?}");
        let sink = table.batches();
        let mut evictions = Vec::new();
        for &b in &batches {
            let e = sluice::engine::explain_batch(&df, OutputMode::Append, &ck, b).unwrap();
            let sink_rows = sink.iter().find(|(id, _)| *id == b).map(|(_, d)| d.clone()).unwrap_or_default();
            e.verify(&sink_rows).unwrap_or_else(|err| panic!("{how}: batch {b}: {err}"));
            let col = |c: &str| -> Vec<String> { e.rows.column(c).unwrap().str().unwrap().iter().map(|r| r.unwrap_or("").to_string()).collect() };
            let (rows, outcomes, reasons) = (col("row"), col("outcome"), col("reason"));
            for r in 0..rows.len() {
                if reasons[r].contains("with no match") {
                    evictions.push((b, rows[r].clone(), outcomes[r].clone(), reasons[r].clone()));
                }
            }
            let out_reasons: Vec<String> =
                e.output.column("reason").unwrap().str().unwrap().iter().map(|r| r.unwrap_or("").to_string()).collect();
            let padded: Vec<&String> = out_reasons.iter().filter(|r| r.starts_with("outer join:")).collect();
            if how == sluice::StreamJoinType::LeftOuter && !evictions.is_empty() && evictions.iter().all(|(eb, ..)| *eb == b) {
                // the batch that evicted c output its null-padded row, and says why
                assert_eq!(padded, vec!["outer join: evicted with no match at watermark 2024-03-01T11:49:59.999Z"], "{how}: batch {b}: {out_reasons:?}");
                let ids = e.output.column("ad_id").unwrap().str().unwrap().clone();
                let clicks = e.output.column("click_ad_id").unwrap().str().unwrap().clone();
                assert!((0..e.output.height()).any(|r| ids.get(r) == Some("c") && clicks.get(r).is_none() && out_reasons[r].starts_with("outer join:")));
            } else {
                assert!(padded.is_empty(), "{how}: batch {b}: {out_reasons:?}");
            }
        }
        // Only c: a matched (its eviction is no news), "later" and "none" stay in state.
        assert_eq!(evictions.len(), 1, "{how}: {evictions:?}");
        let (b, row, outcome, reason) = &evictions[0];
        assert!(*b > 0, "{how}: evicted by the first batch?");
        assert!(row.contains(r#""ad_id":"c""#), "{how}: {row}");
        // the watermark after batch 1 is 12:50 (5 h - 10 min): a click can still come for
        // an impression after 12:50 - 1 hour, and the left state watermark is 1 ms below
        // 11:50 (the join condition's `>=` solved as Spark does).
        let why = "with no match (event time 2024-03-01T08:00:20.000Z <= state watermark 2024-03-01T11:49:59.999Z), in state since batch 0";
        match how {
            sluice::StreamJoinType::Inner => {
                assert_eq!(outcome, "evicted");
                assert_eq!(reason, &format!("evicted join row {why}"));
            }
            _ => {
                assert_eq!(outcome, "emitted");
                assert_eq!(reason, &format!("outer join: evicted {why}: emitted null-padded"));
            }
        }
    }
}

/// Session-window edits `(user, minutes after 08:00, added)`.
fn edits(rows: &[(&str, i64, i64)]) -> DataFrame {
    frame_of(vec![
        ts_after_8("time", rows.iter().map(|r| r.1 * 60).collect()),
        Column::new("user".into(), rows.iter().map(|r| r.0).collect::<Vec<_>>()),
        Column::new("added".into(), rows.iter().map(|r| r.2).collect::<Vec<_>>()),
    ])
}

/// A session window's late row (its own session ended at or before the watermark) goes to
/// the late-rows output once, with its batch, operator, watermark, event time and
/// session, and is not counted in the output; every batch fails once in the sink and is
/// replayed by a new query on the checkpoint, and the late row's batch is replayed once
/// more after its commit is lost: still one late row.
#[test]
fn session_window_late_rows_are_written_once_across_restarts() {
    let work = tempfile::tempdir().unwrap();
    let (ck, late) = (work.path().join("ck"), work.path().join("late"));
    let session = Session::new();
    let stream = MemoryStream::new(edits(&[]).schema().clone());
    type Outputs = std::sync::Arc<std::sync::Mutex<BTreeMap<u64, DataFrame>>>;
    let out: Outputs = Default::default();
    let failed: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<u64>>> = Default::default();
    let start = || {
        let (out, failed) = (out.clone(), failed.clone());
        common::wiki_sessions(stream.to_df(&session), "10 minutes", "5 minutes")
            .unwrap()
            .write_stream()
            .output_mode(OutputMode::Append)
            .checkpoint_location(&ck)
            .progress(ProgressDisplay::Off)
            .with_late_rows("parquet", late.display())
            .foreach_batch(move |df, id| {
                if failed.lock().unwrap().insert(id) {
                    return Err(SluiceError::User(format!("injected failure in batch {id}")));
                }
                out.lock().unwrap().insert(id, df.clone());
                Ok(())
            })
            .start()
            .unwrap()
    };
    // Runs until all data is processed, restarting after each failed batch.
    let run = || {
        for _ in 0..10 {
            let q = start();
            let ok = q.process_all_available().is_ok();
            let _ = q.stop();
            if ok {
                return;
            }
        }
        panic!("the query kept failing");
    };
    let last_commit = || {
        std::fs::read_dir(ck.join("commits"))
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().to_str().and_then(|n| n.parse::<u64>().ok()))
            .max()
            .unwrap()
    };
    // a: [0, 15), c: [20, 30); the watermark after is 20 - 5 = 15 minutes.
    stream.add_data(edits(&[("a", 0, 1), ("a", 5, 2), ("c", 20, 4)])).unwrap();
    run();
    // a@1's own session [1, 11) ends at 11 <= 15: late; c@18 extends c to [18, 30)
    // (and, no later than c@20, leaves the watermark where it is: no no-data batch).
    stream.add_data(edits(&[("a", 1, 8), ("c", 18, 16)])).unwrap();
    run();
    let late_batch = last_commit();
    std::fs::remove_file(ck.join("commits").join(late_batch.to_string())).unwrap();
    run(); // replays the late row's batch: its late rows are in the side output's manifest
    // The watermark 60 - 5 = 55 evicts c.
    stream.add_data(edits(&[("d", 60, 32)])).unwrap();
    run();

    let late = sluice::connectors::read_output(&late).unwrap();
    assert_eq!(late.height(), 1, "{late}");
    let row: serde_json::Value = serde_json::from_str(late.column("row").unwrap().str().unwrap().get(0).unwrap()).unwrap();
    assert_eq!((row["user"].as_str(), row["added"].as_i64()), (Some("a"), Some(8)), "{row}");
    assert_eq!(late.column("batch_id").unwrap().u64().unwrap().get(0), Some(late_batch));
    assert_eq!(late.column("operator").unwrap().str().unwrap().get(0), Some("SessionWindowAggregateExec"));
    let base = 1_709_280_000_000_000i64;
    let us = |c: &str| late.column(c).unwrap().cast(&DataType::Int64).unwrap().i64().unwrap().get(0);
    assert_eq!(us("watermark"), Some(base + 15 * MINUTE_US));
    assert_eq!(us("event_time"), Some(base + MINUTE_US));
    assert_eq!((us("window_start"), us("window_end")), (Some(base + MINUTE_US), Some(base + 11 * MINUTE_US)));

    // The output counts a's two on-time edits only.
    let mut sessions = Vec::new();
    for df in out.lock().unwrap().values() {
        for i in 0..df.height() {
            let get = |c: &str| df.column(c).unwrap().get(i).unwrap().to_string();
            sessions.push(format!("{} {} {}", get("user"), get("edits"), get("added")));
        }
    }
    sessions.sort();
    assert_eq!(sessions, vec![r#""a" 2 3"#, r#""c" 2 20"#]);
}

/// A stream-stream join's late row (its event time at or before the watermark for late
/// events) goes to a foreach-style late-rows output once, naming the join, and produces
/// no joined row although a click for it arrives on time.
#[test]
fn join_late_rows_reach_the_side_output_once_and_not_the_output() {
    let session = Session::new();
    let imp = MemoryStream::new(std::sync::Arc::new(common::impressions_schema()));
    let clk = MemoryStream::new(std::sync::Arc::new(common::clicks_schema()));
    let df = common::ad_join(imp.to_df(&session), clk.to_df(&session), sluice::StreamJoinType::Inner, "10 minutes", "10 minutes", "1 hour")
        .unwrap();
    let (query, table, seen) = start_with_late_rows_foreach(df);
    let add = |ids: &[&str], imp_secs: Vec<i64>, clicks: &[&str], click_secs: Vec<i64>| {
        imp.add_data(common::impressions_at(ids, &imp_secs, "k").unwrap()).unwrap();
        clk.add_data(common::clicks_at(clicks, &click_secs, &vec![1.0; clicks.len()]).unwrap()).unwrap();
        query.process_all_available().unwrap();
    };
    add(&["a"], vec![0], &["a"], vec![60]);
    // both watermarks move to 5 h - 10 min = 12:50
    add(&["later"], vec![5 * 3600], &["none"], vec![5 * 3600]);
    // x's impression at 12:00 is late; its click at 12:55 is on time and would match it
    add(&["x", "y"], vec![4 * 3600, 5 * 3600 + 60], &["x", "y"], vec![4 * 3600 + 55 * 60, 5 * 3600 + 120]);
    let dropped: u64 = query.recent_progress().iter().map(|p| p.state_operators[0].num_rows_dropped_by_watermark).sum();
    // the batch of the third frame (4 rows); a no-data batch may follow it
    let last = query.recent_progress().iter().find(|p| p.num_input_rows == 4).unwrap().batch_id;
    query.stop().unwrap();
    assert_eq!(dropped, 1, "the progress counter still counts it");

    let seen = seen.lock().unwrap();
    let late: Vec<&(u64, DataFrame)> = seen.iter().filter(|(_, d)| d.height() > 0).collect();
    assert_eq!(late.len(), 1, "{seen:?}");
    let (batch, rows) = late[0];
    assert_eq!(rows.height(), 1, "{rows}");
    assert_eq!(*batch, last);
    assert_eq!(rows.column("batch_id").unwrap().u64().unwrap().get(0), Some(last));
    let row: serde_json::Value = serde_json::from_str(rows.column("row").unwrap().str().unwrap().get(0).unwrap()).unwrap();
    assert_eq!(row["ad_id"], "x", "{row}");
    assert_eq!(rows.column("operator").unwrap().str().unwrap().get(0), Some("StreamingSymmetricHashJoinExec"));
    assert_eq!(rows.column("operator_id").unwrap().u32().unwrap().get(0), Some(0));
    let base = 1_709_280_000_000_000i64;
    let us = |c: &str| rows.column(c).unwrap().cast(&DataType::Int64).unwrap().i64().unwrap().get(0);
    assert_eq!(us("watermark"), Some(base + (5 * 3600 - 600) * 1_000_000));
    assert_eq!(us("event_time"), Some(base + 4 * 3600 * 1_000_000));
    assert_eq!(us("window_start"), None);

    let all = table.to_df().unwrap().unwrap();
    let mut pairs: Vec<String> = (0..all.height())
        .map(|i| format!("{}|{}", all.column("ad_id").unwrap().get(i).unwrap(), all.column("click_ad_id").unwrap().get(i).unwrap()))
        .collect();
    pairs.sort();
    assert_eq!(pairs, vec![r#""a"|"a""#, r#""y"|"y""#], "the late impression joins nothing");
}

/// `explain_batch` names the rows of a batch's own input that the batch evicts with no
/// match: a data batch whose watermark for eviction is ahead of the one for late rows
/// (files read one per batch, back to back). The impression q (11:00) enters state and is
/// evicted (left state watermark ~11:50); the click r (12:00) is past the right state
/// watermark (~12:50) on arrival and never enters state; the click m (12:40) is past it too but
/// matched, so it is no eviction to explain.
#[test]
fn explain_batch_names_rows_of_the_batch_evicted_with_no_match_on_arrival() {
    let work = tempfile::tempdir().unwrap();
    let (imp_dir, clk_dir, ck) = (work.path().join("imp"), work.path().join("clk"), work.path().join("ck"));
    let files = [
        (&imp_dir, vec![r#"{"ad_id": "a", "impression_time": "2024-03-01T08:00:00Z", "campaign": "k"}"#]),
        (&imp_dir, vec![r#"{"ad_id": "later", "impression_time": "2024-03-01T13:00:00Z", "campaign": "k"}"#]),
        (&imp_dir, vec![
            r#"{"ad_id": "q", "impression_time": "2024-03-01T11:00:00Z", "campaign": "k"}"#,
            r#"{"ad_id": "m", "impression_time": "2024-03-01T12:30:00Z", "campaign": "k"}"#,
        ]),
        (&clk_dir, vec![r#"{"click_ad_id": "a", "click_time": "2024-03-01T08:01:00Z", "cost": 1.0}"#]),
        (&clk_dir, vec![r#"{"click_ad_id": "none", "click_time": "2024-03-01T13:00:00Z", "cost": 1.0}"#]),
        (&clk_dir, vec![
            r#"{"click_ad_id": "r", "click_time": "2024-03-01T12:00:00Z", "cost": 1.0}"#,
            r#"{"click_ad_id": "m", "click_time": "2024-03-01T12:40:00Z", "cost": 1.0}"#,
        ]),
    ];
    for (i, (dir, lines)) in files.iter().enumerate() {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(format!("part-{:05}.json", i % 3)), lines.join("\n") + "\n").unwrap();
    }
    let session = Session::new();
    let build = || {
        let imp = common::json_source(&session, &imp_dir, common::impressions_schema()).unwrap();
        let clk = common::json_source(&session, &clk_dir, common::clicks_schema()).unwrap();
        common::ad_join(imp, clk, sluice::StreamJoinType::Inner, "10 minutes", "10 minutes", "1 hour").unwrap()
    };
    let table = sluice::connectors::MemoryTable::new();
    let query = build()
        .write_stream()
        .output_mode(OutputMode::Append)
        .trigger(Trigger::AvailableNow)
        .checkpoint_location(&ck)
        .progress(ProgressDisplay::Off)
        .sink(Box::new(table.sink()))
        .start()
        .unwrap();
    query.await_termination().unwrap();
    let third = query.recent_progress().iter().filter(|p| p.num_input_rows > 0).map(|p| p.batch_id).nth(2).unwrap();
    let e = sluice::engine::explain_batch(&build(), OutputMode::Append, &ck, third).unwrap();
    let sink_rows = table.batches().into_iter().find(|(b, _)| *b == third).map(|(_, d)| d).unwrap_or_default();
    e.verify(&sink_rows).unwrap();
    assert_eq!(e.output.height(), 1, "m joins m: {}", e.output);
    let col = |c: &str| -> Vec<String> { e.rows.column(c).unwrap().str().unwrap().iter().map(|r| r.unwrap_or("").to_string()).collect() };
    let mut got: Vec<(String, String, String)> =
        col("row").into_iter().zip(col("outcome")).zip(col("reason")).map(|((r, o), why)| (r, o, why)).collect();
    got.sort();
    let id = |row: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(row).unwrap();
        v.get("ad_id").or(v.get("click_ad_id")).and_then(|s| s.as_str()).unwrap_or("").to_string()
    };
    let summary: Vec<(String, String, String)> = got.iter().map(|(r, o, why)| (id(r), o.clone(), why.clone())).collect();
    let mut ids: Vec<&str> = summary.iter().map(|(i, ..)| i.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["m", "m", "q", "r"], "each input row once: {summary:?}");
    for (i, outcome, why) in &summary {
        match i.as_str() {
            "q" => {
                assert_eq!(outcome, "evicted", "{summary:?}");
                assert!(why.starts_with("evicted join row with no match (event time 2024-03-01T11:00:00.000Z <= state watermark 2024-03-01T11:49:59.999Z)"), "{why}");
                assert!(!why.contains("in state since"), "q came in this batch: {why}");
            }
            "r" => {
                assert_eq!(outcome, "evicted", "{summary:?}");
                assert!(why.starts_with("evicted join row with no match (event time 2024-03-01T12:00:00.000Z <= state watermark 2024-03-01T12:49:59.999Z)"), "{why}");
            }
            _ => assert_eq!(outcome, "passed to the operator", "{summary:?}"),
        }
    }
}
