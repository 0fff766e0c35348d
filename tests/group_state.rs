//! flat_map_groups_with_state / map_groups_with_state beyond oracle p13: restarts,
//! processing-time timeouts on a manual clock, failing user functions, and the analysis
//! rules of Spark's UnsupportedOperationChecker.

#[path = "../examples/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sluice::prelude::*;
use sluice::connectors::MemoryTable;
use sluice::connectors::MemoryStream;
use sluice::SluiceError;

const P13: &str = "tests/oracle/cases/p13_wiki_user_state/input";

fn p13_input(dir: &Path) {
    common::copy_ordered(&Path::new(env!("CARGO_MANIFEST_DIR")).join(P13), dir).unwrap();
}

fn user_state_job(session: &Session, input: &Path) -> StreamingDataFrame {
    let src = common::json_source(session, input, common::user_edits_schema()).unwrap();
    common::wiki_user_state(src, 30, "5 minutes").unwrap()
}

/// Runs the p13 job per the contract, after a first run whose sink fails at batch
/// `fail_at`: before writing it, or (`after_write`) once it is written but before the
/// batch commits, so the restart replays a batch the sink already has.
fn run_user_state(fail_at: Option<u64>, after_write: bool) -> BTreeMap<u64, String> {
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("in");
    p13_input(&input);
    let (out, ck) = (work.path().join("out"), work.path().join("ck"));
    let session = Session::new();
    if let Some(k) = fail_at {
        let o = out.clone();
        let q = user_state_job(&session, &input)
            .write_stream()
            .trigger(Trigger::AvailableNow)
            .checkpoint_location(&ck)
            .progress(ProgressDisplay::Off)
            .foreach_batch(move |df, id| {
                if id == k && !after_write {
                    return Err(SluiceError::User(format!("injected failure in batch {id}")));
                }
                common::write_batch_jsonl(&o, df, id)?;
                if id == k {
                    return Err(SluiceError::User(format!("injected failure after writing batch {id}")));
                }
                Ok(())
            })
            .start()
            .unwrap();
        assert!(q.await_termination().is_err());
    }
    common::run_contract(user_state_job(&session, &input), OutputMode::Append, &out, &ck, ProgressDisplay::Off).unwrap();
    common::read_batch_files(&out).unwrap()
}

fn assert_same(expected: &BTreeMap<u64, String>, got: &BTreeMap<u64, String>, what: &str) {
    let differing: Vec<u64> = expected.keys().chain(got.keys()).filter(|b| got.get(b) != expected.get(b)).copied().collect();
    assert!(differing.is_empty(), "{what}: batches differing from the uninterrupted run: {differing:?}");
}

#[test]
fn wiki_user_state_restarts_after_each_batch_with_the_uninterrupted_output() {
    let expected = run_user_state(None, false);
    let rows: usize = expected.values().map(|t| t.lines().count()).sum();
    assert_eq!(rows, 12_711, "the uninterrupted run emits oracle p13's rows");
    assert_eq!(expected.len(), 21);
    for k in 0..21 {
        assert_same(&expected, &run_user_state(Some(k), false), &format!("failure in batch {k}"));
    }
    for k in [0, 1, 7, 19, 20] {
        assert_same(&expected, &run_user_state(Some(k), true), &format!("failure after writing batch {k}"));
    }
}

fn events(rows: &[(&str, i64)]) -> DataFrame {
    let k: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let v: Vec<i64> = rows.iter().map(|r| r.1).collect();
    df!("key" => k, "v" => v).unwrap()
}

fn timeout_schema() -> Schema {
    common::schema(&[("key", DataType::String), ("count", DataType::Int64), ("why", DataType::String), ("now", DataType::Int64)])
}

/// Counts rows per key; a key without data for 10 s (processing time) times out, emits
/// its count and is removed.
fn counting_with_processing_timeout(session: &Session, stream: &MemoryStream) -> StreamingDataFrame {
    stream.to_df(session).group_by([col("key")]).flat_map_groups_with_state(
        OutputMode::Update,
        GroupStateTimeout::ProcessingTimeTimeout,
        timeout_schema(),
        |key: &GroupKey, rows: DataFrame, state: &mut GroupState<i64>| {
            let now = state.current_processing_time_ms();
            let row = |count: i64, why: &str| {
                df!("key" => [key.str(0)], "count" => [count], "why" => [why], "now" => [now])
            };
            if state.has_timed_out() {
                assert_eq!(rows.height(), 0, "a timed-out call has no rows");
                let count = *state.get()?;
                state.remove();
                return Ok(row(count, "timeout")?);
            }
            let count = state.get_option().copied().unwrap_or(0) + rows.height() as i64;
            state.update(count);
            state.set_timeout_duration("10 seconds")?;
            Ok(row(count, "data")?)
        },
    )
}

fn rows_of(table: &MemoryTable) -> Vec<(u64, String, i64, String, i64)> {
    let mut out = Vec::new();
    for (id, df) in table.batches() {
        for i in 0..df.height() {
            let r = df.get_row(i).unwrap().0;
            let s = |v: &AnyValue| v.get_str().unwrap_or_default().to_string();
            out.push((id, s(&r[0]), r[1].extract::<i64>().unwrap(), s(&r[2]), r[3].extract::<i64>().unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn processing_time_timeouts_fire_when_the_manual_clock_passes_them() {
    let session = Session::new();
    let stream = MemoryStream::new(events(&[]).schema().clone());
    let clock = ManualClock::new(1_000_000);
    let table = MemoryTable::new();
    let q = counting_with_processing_timeout(&session, &stream)
        .write_stream()
        .output_mode(OutputMode::Update)
        .clock(Arc::new(clock.clone()))
        .progress(ProgressDisplay::Off)
        .sink(Box::new(table.sink()))
        .start()
        .unwrap();
    let t0 = 1_000_000;
    stream.add_data(events(&[("a", 1), ("b", 1), ("a", 2)])).unwrap();
    q.process_all_available().unwrap(); // batch 0 at t0: a and b time out at t0 + 10 s
    clock.advance_ms(5_000);
    stream.add_data(events(&[("a", 3)])).unwrap();
    q.process_all_available().unwrap(); // batch 1 at t0 + 5 s: a's timeout moves to t0 + 15 s
    clock.advance_ms(5_000);
    q.process_all_available().unwrap(); // t0 + 10 s: b's timeout is not < now: nothing runs
    assert_eq!(q.recent_progress().len(), 2, "a timeout equal to the batch time does not fire (Spark: <)");
    clock.advance_ms(1);
    q.process_all_available().unwrap(); // batch 2 (no data): b times out
    clock.advance_ms(4_998);
    q.process_all_available().unwrap(); // t0 + 14.999 s: nothing
    assert_eq!(q.recent_progress().len(), 3);
    clock.advance_ms(2);
    q.process_all_available().unwrap(); // batch 3 (no data): a times out
    clock.advance_ms(60_000);
    q.process_all_available().unwrap(); // state is empty: no further batch
    let progress = q.recent_progress();
    q.stop().unwrap();
    assert_eq!(progress.len(), 4);
    assert_eq!(progress.iter().map(|p| p.num_input_rows).collect::<Vec<_>>(), vec![3, 1, 0, 0]);
    assert_eq!(progress[3].state_operators[0].num_rows_total, 0, "timed-out keys were removed");
    let s = |x: &str| x.to_string();
    assert_eq!(
        rows_of(&table),
        vec![
            (0, s("a"), 2, s("data"), t0),
            (0, s("b"), 1, s("data"), t0),
            (1, s("a"), 3, s("data"), t0 + 5_000),
            (2, s("b"), 1, s("timeout"), t0 + 10_001),
            (3, s("a"), 3, s("timeout"), t0 + 15_001),
        ]
    );
}

/// A small event-time stream: (key, event time in minutes after 2024-01-01).
fn timed(rows: &[(&str, i64)]) -> DataFrame {
    let base = 1_704_067_200_000_000i64;
    let k: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let t: Vec<i64> = rows.iter().map(|r| base + r.1 * 60_000_000).collect();
    df!("key" => k, "time" => t).unwrap().lazy().with_column(col("time").cast(common::ts())).collect().unwrap()
}

fn count_schema() -> Schema {
    common::schema(&[("key", DataType::String), ("count", DataType::Int64)])
}

#[test]
fn a_failing_or_panicking_function_names_key_and_batch_and_commits_nothing() {
    for panics in [false, true] {
        let session = Session::new();
        let stream = MemoryStream::new(events(&[]).schema().clone());
        let dir = tempfile::tempdir().unwrap();
        let fail = Arc::new(AtomicBool::new(true));
        let start = |table: &MemoryTable| {
            let fail = fail.clone();
            let counts = stream
                .to_df(&session)
                .group_by([col("key")])
                .flat_map_groups_with_state(
                    OutputMode::Update,
                    GroupStateTimeout::NoTimeout,
                    count_schema(),
                    move |key: &GroupKey, rows: DataFrame, state: &mut GroupState<i64>| {
                        let count = state.get_option().copied().unwrap_or(0) + rows.height() as i64;
                        if key.str(0) == Some("bad") && fail.load(Ordering::SeqCst) {
                            if panics {
                                panic!("boom on purpose");
                            }
                            return Err(SluiceError::InvalidArgument("cannot count this key".into()));
                        }
                        state.update(count);
                        Ok(df!("key" => [key.str(0)], "count" => [count])?)
                    },
                );
            common::start_into(counts, OutputMode::Update, dir.path(), table).unwrap()
        };
        let table = MemoryTable::new();
        let q = start(&table);
        stream.add_data(events(&[("a", 1), ("a", 2)])).unwrap();
        q.process_all_available().unwrap();
        stream.add_data(events(&[("a", 3), ("bad", 1)])).unwrap();
        let err = q.await_termination().unwrap_err().to_string();
        assert!(err.contains("key=\"bad\"") && err.contains("batch 1"), "{panics}: {err}");
        assert!(err.contains(if panics { "boom on purpose" } else { "cannot count this key" }), "{err}");
        assert!(!dir.path().join("commits/1").exists(), "the failed batch is not committed");
        // Fixed function, restart: batch 1 runs again from the state of batch 0.
        fail.store(false, Ordering::SeqCst);
        let table = MemoryTable::new();
        let q = start(&table);
        q.process_all_available().unwrap();
        q.stop().unwrap();
        let batches = table.batches();
        assert_eq!(batches.len(), 1);
        let (id, df) = &batches[0];
        assert_eq!(*id, 1);
        let df = df.sort(["key"], SortMultipleOptions::default()).unwrap();
        assert_eq!(df, df!("key" => ["a", "bad"], "count" => [3i64, 1]).unwrap(), "state of a was 2 after batch 0");
    }
}

#[test]
fn an_event_time_timeout_before_the_watermark_is_an_error() {
    let session = Session::new();
    let stream = MemoryStream::new(timed(&[]).schema().clone());
    let q = stream
        .to_df(&session)
        .with_watermark("time", "1 minute")
        .unwrap()
        .group_by([col("key")])
        .flat_map_groups_with_state(
            OutputMode::Append,
            GroupStateTimeout::EventTimeTimeout,
            count_schema(),
            |_key: &GroupKey, _rows: DataFrame, state: &mut GroupState<i64>| {
                state.update(1);
                // one ms before the watermark: Spark refuses it
                let wm = state.current_watermark_ms()?;
                state.set_timeout_timestamp(if wm > 0 { wm - 1 } else { 1_000 })?;
                Ok(DataFrame::empty_with_schema(&count_schema()))
            },
        )
        .write_stream()
        .progress(ProgressDisplay::Off)
        .foreach_batch(|_, _| Ok(()))
        .start()
        .unwrap();
    stream.add_data(timed(&[("a", 0)])).unwrap();
    q.process_all_available().ok();
    stream.add_data(timed(&[("a", 100)])).unwrap();
    let err = q.await_termination().unwrap_err().to_string();
    assert!(err.contains("cannot be earlier than the current watermark") && err.contains("key=\"a\""), "{err}");
}

#[test]
fn map_groups_with_state_keeps_a_running_count_in_update_mode() {
    let session = Session::new();
    let stream = MemoryStream::new(events(&[]).schema().clone());
    let table = MemoryTable::new();
    let q = stream
        .to_df(&session)
        .group_by([col("key")])
        .map_groups_with_state(
            GroupStateTimeout::NoTimeout,
            count_schema(),
            |key: &GroupKey, rows: DataFrame, state: &mut GroupState<i64>| {
                let count = state.get_option().copied().unwrap_or(0) + rows.column("v")?.i64()?.sum().unwrap_or(0);
                state.update(count);
                Ok(df!("key" => [key.str(0)], "count" => [count])?)
            },
        )
        .write_stream()
        .output_mode(OutputMode::Update)
        .progress(ProgressDisplay::Off)
        .sink(Box::new(table.sink()))
        .start()
        .unwrap();
    stream.add_data(events(&[("a", 1), ("b", 10), ("a", 2)])).unwrap();
    q.process_all_available().unwrap();
    stream.add_data(events(&[("b", 5)])).unwrap();
    q.process_all_available().unwrap();
    let p = q.recent_progress();
    q.stop().unwrap();
    let got: Vec<(u64, Vec<(String, i64)>)> = table
        .batches()
        .into_iter()
        .map(|(id, df)| {
            let df = df.sort(["key"], SortMultipleOptions::default()).unwrap();
            let k = df.column("key").unwrap().str().unwrap().iter().map(|s| s.unwrap_or_default().to_string()).collect::<Vec<_>>();
            let c = df.column("count").unwrap().i64().unwrap().into_no_null_iter().collect::<Vec<_>>();
            (id, k.into_iter().zip(c).collect())
        })
        .collect();
    assert_eq!(got, vec![(0, vec![("a".into(), 3), ("b".into(), 10)]), (1, vec![("b".into(), 15)])]);
    assert_eq!(p[1].state_operators[0].num_rows_total, 2);
    assert_eq!(p[1].state_operators[0].num_rows_updated, 1);
}

#[test]
fn map_groups_with_state_must_return_one_row() {
    let session = Session::new();
    let stream = MemoryStream::new(events(&[]).schema().clone());
    let q = stream
        .to_df(&session)
        .group_by([col("key")])
        .map_groups_with_state(
            GroupStateTimeout::NoTimeout,
            count_schema(),
            |_key: &GroupKey, _rows: DataFrame, _state: &mut GroupState<i64>| Ok(DataFrame::empty_with_schema(&count_schema())),
        )
        .write_stream()
        .output_mode(OutputMode::Update)
        .progress(ProgressDisplay::Off)
        .foreach_batch(|_, _| Ok(()))
        .start()
        .unwrap();
    stream.add_data(events(&[("a", 1)])).unwrap();
    let err = q.await_termination().unwrap_err().to_string();
    assert!(err.contains("returned 0 rows for key key=\"a\" in batch 0"), "{err}");
}

#[test]
fn unsupported_uses_fail_at_start_with_a_reason() {
    let session = Session::new();
    let stream = MemoryStream::new(timed(&[]).schema().clone());
    let f = |_key: &GroupKey, _rows: DataFrame, _state: &mut GroupState<i64>| Ok(DataFrame::empty_with_schema(&count_schema()));
    let fmgws = |mode: OutputMode, timeout: GroupStateTimeout, watermark: bool| {
        let df = stream.to_df(&session);
        let df = if watermark { df.with_watermark("time", "1 minute").unwrap() } else { df };
        df.group_by([col("key")]).flat_map_groups_with_state(mode, timeout, count_schema(), f)
    };
    let start_err = |df: StreamingDataFrame, mode: OutputMode| {
        df.write_stream().output_mode(mode).foreach_batch(|_, _| Ok(())).start().err().map(|e| e.to_string()).unwrap_or_default()
    };
    let e = start_err(fmgws(OutputMode::Update, GroupStateTimeout::NoTimeout, false), OutputMode::Append);
    assert!(e.contains("flatMapGroupsWithState in update mode is not supported with Append output mode"), "{e}");
    let e = start_err(fmgws(OutputMode::Append, GroupStateTimeout::NoTimeout, false), OutputMode::Update);
    assert!(e.contains("flatMapGroupsWithState in append mode is not supported with Update output mode"), "{e}");
    let e = start_err(fmgws(OutputMode::Append, GroupStateTimeout::EventTimeTimeout, false), OutputMode::Append);
    assert!(e.contains("Event-time timeout not supported without watermark"), "{e}");
    let map = stream.to_df(&session).group_by([col("key")]).map_groups_with_state(GroupStateTimeout::NoTimeout, count_schema(), f);
    let e = start_err(map, OutputMode::Append);
    assert!(e.contains("mapGroupsWithState is not supported with Append output mode"), "{e}");
    let chained = fmgws(OutputMode::Update, GroupStateTimeout::NoTimeout, false).group_by([col("key")]).count();
    let e = start_err(chained, OutputMode::Update);
    assert!(e.contains("flatMapGroupsWithState in update mode is not supported with aggregation"), "{e}");
    let windows = stream
        .to_df(&session)
        .with_watermark("time", "1 minute")
        .unwrap()
        .group_by([window(col("time"), "1 minute", None, None).unwrap(), col("key")])
        .count();
    let after_agg = windows.group_by([col("key")]).flat_map_groups_with_state(
        OutputMode::Append,
        GroupStateTimeout::NoTimeout,
        count_schema(),
        |_key: &GroupKey, _rows: DataFrame, _state: &mut GroupState<i64>| Ok(DataFrame::empty_with_schema(&count_schema())),
    );
    let e = start_err(after_agg, OutputMode::Append);
    assert!(e.contains("flatMapGroupsWithState in append mode is not supported after aggregation"), "{e}");
    // The valid combination starts.
    let ok = fmgws(OutputMode::Append, GroupStateTimeout::EventTimeTimeout, true);
    let q = ok.write_stream().output_mode(OutputMode::Append).progress(ProgressDisplay::Off).foreach_batch(|_, _| Ok(())).start().unwrap();
    q.stop().unwrap();
}

#[test]
fn timeout_setters_check_the_timeout_kind() {
    let session = Session::new();
    let stream = MemoryStream::new(events(&[]).schema().clone());
    let q = stream
        .to_df(&session)
        .group_by([col("key")])
        .flat_map_groups_with_state(
            OutputMode::Update,
            GroupStateTimeout::NoTimeout,
            count_schema(),
            |_key: &GroupKey, _rows: DataFrame, state: &mut GroupState<i64>| {
                state.set_timeout_duration("1 minute")?;
                Ok(DataFrame::empty_with_schema(&count_schema()))
            },
        )
        .write_stream()
        .output_mode(OutputMode::Update)
        .progress(ProgressDisplay::Off)
        .foreach_batch(|_, _| Ok(()))
        .start()
        .unwrap();
    stream.add_data(events(&[("a", 1)])).unwrap();
    let err = q.await_termination().unwrap_err().to_string();
    assert!(err.contains("Cannot set timeout duration without enabling processing time timeout"), "{err}");
}
