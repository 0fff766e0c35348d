//! # The stateful operator contract, run by every stateful operator
//!
//! One generic test function, [`operator_contract`], checks what
//! [`StatefulOperator`]'s `# Contract` promises the trigger loop: restoring state and
//! running a batch again gives what the uninterrupted run gave.
//!
//! 1. An operator built fresh processes batches `0..n` against a checkpoint as the engine
//!    does (`execution/micro_batch.rs`, `run_batch`): `process`, then `commit` of version
//!    `N + 1`, then `commits/N` listing, per state store, the partitions that wrote a
//!    delta (what `state/store.rs`, `load`, reads back). Its output and state after each
//!    batch are recorded.
//! 2. For every `N`, a fresh operator `restore`d at version `N` holds the state of the
//!    uninterrupted run after batch `N - 1` (none for `N = 0`); given batch `N`, it
//!    produces exactly the uninterrupted run's output of batch `N` and its state after it
//!    (both as multisets of rows).
//! 3. Late rows: the run of 1. keeps them (`BatchContext::keep_late_rows`, as with a
//!    late-rows side output) and hands some over exactly when it drops some; the replays
//!    of 2. run without keeping them, give the same output and keep none.
//!
//! The batches carry moving watermarks as the engine computes them: batch `N` judges late
//! rows by the previous batch's watermark and evicts by its own, the watermark being the
//! largest event time seen in batches before `N` minus the delay (5 s; for the join the
//! smaller of its two sides'). The input has keys that recur and keys seen once, exact
//! duplicates, rows that are late, rows that are older but not late, null keys, and two
//! no-data batches on which only the watermark moves; with 14 batches, the restores of
//! versions 10 and up start from a snapshot (every 10 versions) and apply deltas. Each
//! implementation also checks that its run evicted state and dropped late rows where the
//! operator does, so that those paths are exercised.
//!
//! Run for: `StreamingAggregateExec` over a window key with a watermark in append, update
//! and complete mode; `SessionWindowAggregateExec` (append); `StreamingDeduplicateExec`,
//! both variants (`drop_duplicates` with the event time among the keys, and
//! `drop_duplicates_within_watermark`); `StreamingSymmetricHashJoinExec`, a full outer
//! join with a time-range condition; `FlatMapGroupsWithStateExec` with an event-time
//! timeout. Each is built through its public constructor. No stateful operator is
//! excluded (the stream-static join keeps no state and is not a `StatefulOperator`).

#[path = "support/rows.rs"]
mod rows;

use polars::prelude::*;
use sluice::checkpoint::{Checkpoint, CommitMetadata};
use sluice::engine::operators::aggregate::{AggregatePlan, StreamingAggregateExec};
use sluice::engine::operators::dedup::{DedupPlan, StreamingDeduplicateExec};
use sluice::engine::operators::group_state::{group_function, FlatMapGroupsWithStateExec, GroupsWithStateSpec};
use sluice::engine::operators::join::{JoinSide, StreamJoinType, StreamingJoinPlan, StreamingSymmetricHashJoinExec};
use sluice::engine::operators::session_window::SessionWindowAggregateExec;
use sluice::engine::operators::{BatchContext, StatefulOperator};
use sluice::engine::state::DEFAULT_STATE_PARTITIONS;
use sluice::engine::{interval, session_window, window, GroupKey, GroupState, GroupStateTimeout, OutputMode};

use rows::{assert_same, assert_same_rows, multiset};

/// One batch of an operator's input: a frame per input, and its context.
struct Batch {
    inputs: Vec<DataFrame>,
    ctx: BatchContext,
}

/// What the uninterrupted run did, summed over its batches, for the implementations to
/// check that eviction and late rows were exercised.
#[derive(Debug)]
struct Summary {
    output_rows: usize,
    rows_removed: u64,
    rows_dropped_by_watermark: u64,
    /// Rows handed over by `take_late_rows` (the run keeps them, as for a side output).
    late_rows_taken: usize,
}

/// The state frames of every keyed state of `op`.
fn states(op: &dyn StatefulOperator) -> Vec<DataFrame> {
    op.states().iter().map(|s| s.frame().clone()).collect()
}

/// The stateful operator contract (see the module docs) for the operators `make` builds,
/// over `batches`.
fn operator_contract(make: &dyn Fn() -> Box<dyn StatefulOperator>, batches: &[Batch]) -> Summary {
    let ck = Checkpoint::in_memory().unwrap();
    let mut op = make();
    let name = op.name();
    let n_stores = op.state_store_ids().into_iter().max().map_or(0, |m| m + 1);
    let mut outputs = Vec::new();
    let mut after = Vec::new();
    let mut summary = Summary { output_rows: 0, rows_removed: 0, rows_dropped_by_watermark: 0, late_rows_taken: 0 };
    for (n, b) in batches.iter().enumerate() {
        let n = n as u64;
        let out = op.process(b.inputs.clone(), &b.ctx).unwrap_or_else(|e| panic!("{name}: batch {n} failed: {e}"));
        let progress = op.progress();
        summary.output_rows += out.height();
        summary.rows_removed += progress.num_rows_removed;
        summary.rows_dropped_by_watermark += progress.num_rows_dropped_by_watermark;
        summary.late_rows_taken += op.take_late_rows().iter().map(DataFrame::height).sum::<usize>();
        outputs.push(out);
        after.push(states(&*op));
        let mut state_deltas = vec![Vec::new(); n_stores];
        for (store, parts) in op.commit(&ck, n + 1).unwrap() {
            state_deltas[store] = parts;
        }
        let next_watermark = batches.get(n as usize + 1).and_then(|b| b.ctx.watermark_for_eviction_ms).unwrap_or(0);
        let commit = CommitMetadata { next_batch_watermark_ms: next_watermark, operator_watermarks_ms: vec![], state_deltas };
        ck.commits().add(n, &commit).unwrap();
    }
    assert!(summary.output_rows > 0, "{name}: the run produced no output at all: {summary:?}");
    assert_eq!(
        summary.late_rows_taken > 0,
        summary.rows_dropped_by_watermark > 0,
        "{name}: rows dropped as late are handed over when kept: {summary:?}"
    );

    for (n, b) in batches.iter().enumerate() {
        let mut fresh = make();
        fresh.restore(&ck, n as u64).unwrap_or_else(|e| panic!("{name}: restore of version {n} failed: {e}"));
        let restored = states(&*fresh);
        for (k, s) in restored.iter().enumerate() {
            let want = if n == 0 { Default::default() } else { multiset(&after[n - 1][k]) };
            assert_same(&format!("{name}: restore of version {n}: state store {k}"), &multiset(s), &want);
        }
        // Replayed without keeping late rows (a query without a side output): the same
        // output, and nothing kept.
        let ctx = BatchContext { keep_late_rows: false, ..b.ctx.clone() };
        let out = fresh.process(b.inputs.clone(), &ctx).unwrap_or_else(|e| panic!("{name}: batch {n} after restore failed: {e}"));
        assert_same_rows(&format!("{name}: output of batch {n} after restoring version {n}"), &out, &outputs[n]);
        let kept: usize = fresh.take_late_rows().iter().map(DataFrame::height).sum();
        assert_eq!(kept, 0, "{name}: batch {n} kept late rows that nobody takes");
        for (k, s) in states(&*fresh).iter().enumerate() {
            assert_same_rows(&format!("{name}: state store {k} after batch {n} after restoring version {n}"), s, &after[n][k]);
        }
    }
    summary
}

// ---------------------------------------------------------------------------------------
// The input

/// 2024-03-01T00:00:00Z in µs.
const BASE_US: i64 = 1_709_251_200_000_000;
const BASE_MS: i64 = BASE_US / 1000;
/// The watermark delay of every event-time column.
const DELAY_MS: i64 = 5_000;
const BATCHES: usize = 14;
/// Batches with no rows, run because the watermark moved (the engine's no-data batches).
const NO_DATA: [usize; 2] = [5, 9];

fn ts_type() -> DataType {
    DataType::Datetime(TimeUnit::Microseconds, None)
}

/// Rows `(key, seconds after BASE, value)` as `key` String, `ts` Datetime(µs), `val` Int64.
fn frame(names: [&str; 3], rows: &[(Option<String>, i64, i64)]) -> DataFrame {
    let keys: Vec<Option<String>> = rows.iter().map(|r| r.0.clone()).collect();
    let ts: Vec<i64> = rows.iter().map(|r| BASE_US + r.1 * 1_000_000).collect();
    let vals: Vec<i64> = rows.iter().map(|r| r.2).collect();
    DataFrame::new(
        rows.len(),
        vec![
            Column::new(names[0].into(), keys),
            Column::new(names[1].into(), ts).cast(&ts_type()).unwrap(),
            Column::new(names[2].into(), vals),
        ],
    )
    .unwrap()
}

fn input_schema() -> SchemaRef {
    frame(["key", "ts", "val"], &[]).schema().clone()
}

/// The rows of batch `n` of a single-input operator (none for a no-data batch): keys
/// `a`, `b`, `c` every batch, an exact duplicate, a key `u<n>` seen once, a null key
/// every fourth batch, an older row that is not late and a late one.
fn single_input_rows(n: usize) -> Vec<(Option<String>, i64, i64)> {
    if NO_DATA.contains(&n) {
        return vec![];
    }
    let n = n as i64;
    let key = |k: &str| Some(k.to_string());
    let mut rows: Vec<(Option<String>, i64, i64)> =
        (0..4).map(|j| (key(["a", "b", "c"][((n + j) % 3) as usize]), n * 10 + j * 3, n * 100 + j)).collect();
    rows.push(rows[0].clone());
    rows.push((Some(format!("u{n}")), n * 10 + 2, n * 100 + 10));
    if n % 4 == 1 {
        rows.push((None, n * 10 + 1, n * 100 + 20));
    }
    if n >= 2 {
        rows.push((key("b"), n * 10 - 12, n * 100 + 50));
    }
    if n >= 3 {
        rows.push((key("a"), n * 10 - 30, n * 100 + 90));
    }
    rows
}

/// The largest event time of `df`'s column `ts_column`, ms.
fn max_event_ms(df: &DataFrame, ts_column: &str) -> Option<i64> {
    let us = df.column(ts_column).unwrap().as_materialized_series().cast(&DataType::Int64).unwrap();
    us.i64().unwrap().max().map(|v| v / 1000)
}

/// Batches over `inputs` (per batch, a frame per input) whose watermarks move as the
/// engine's: per input, the largest event time of the batches before minus the delay;
/// the smallest of the inputs' (the `min` policy); never decreasing, 0 at first.
fn batches(inputs: Vec<Vec<DataFrame>>, ts_columns: &[&str], mode: OutputMode) -> Vec<Batch> {
    let mut max_seen: Vec<Option<i64>> = vec![None; ts_columns.len()];
    let (mut previous, mut current) = (0i64, 0i64);
    let mut out = Vec::new();
    for (n, frames) in inputs.into_iter().enumerate() {
        let ctx = BatchContext {
            batch_id: n as u64,
            batch_timestamp_ms: BASE_MS + n as i64 * 1000,
            watermark_for_late_events_ms: Some(previous),
            watermark_for_eviction_ms: Some(current),
            output_mode: mode,
            keep_late_rows: true,
            explaining: false,
        };
        for (seen, (df, c)) in max_seen.iter_mut().zip(frames.iter().zip(ts_columns)) {
            *seen = (*seen).max(max_event_ms(df, c));
        }
        previous = current;
        if max_seen.iter().all(Option::is_some) {
            let proposed = max_seen.iter().flatten().map(|m| m - DELAY_MS).min().unwrap_or(0);
            current = current.max(proposed);
        }
        out.push(Batch { inputs: frames, ctx });
    }
    out
}

fn single_input_batches(mode: OutputMode) -> Vec<Batch> {
    let inputs = (0..BATCHES).map(|n| vec![frame(["key", "ts", "val"], &single_input_rows(n))]).collect();
    batches(inputs, &["ts"], mode)
}

#[track_caller]
fn assert_exercised(name: &str, s: &Summary, evicts: bool, drops_late: bool) {
    assert_eq!(s.rows_removed > 0, evicts, "{name}: state evicted (rows removed): {s:?}");
    assert_eq!(s.rows_dropped_by_watermark > 0, drops_late, "{name}: late rows dropped: {s:?}");
}

// ---------------------------------------------------------------------------------------
// The implementations

fn windowed_aggregate(mode: OutputMode) -> Box<dyn StatefulOperator> {
    let keys = [window(col("ts"), "10 seconds", None, None).unwrap(), col("key")];
    let aggs = [len().alias("n"), col("val").sum().alias("total"), col("val").max().alias("max"), col("val").mean().alias("mean")];
    let plan = AggregatePlan::new(&input_schema(), &keys, &aggs, &["ts".to_string()]).unwrap();
    Box::new(StreamingAggregateExec::new(plan, 0, DEFAULT_STATE_PARTITIONS, mode))
}

#[test]
fn streaming_aggregate_window_append() {
    let s = operator_contract(&|| windowed_aggregate(OutputMode::Append), &single_input_batches(OutputMode::Append));
    assert_exercised("append", &s, true, true);
}

#[test]
fn streaming_aggregate_window_update() {
    let s = operator_contract(&|| windowed_aggregate(OutputMode::Update), &single_input_batches(OutputMode::Update));
    assert_exercised("update", &s, true, true);
}

#[test]
fn streaming_aggregate_window_complete() {
    let s = operator_contract(&|| windowed_aggregate(OutputMode::Complete), &single_input_batches(OutputMode::Complete));
    assert_exercised("complete", &s, false, false);
}

#[test]
fn session_window_aggregate() {
    let make = || -> Box<dyn StatefulOperator> {
        let keys = [session_window(col("ts"), "5 seconds").unwrap(), col("key")];
        let aggs = [len().alias("n"), col("val").sum().alias("total")];
        let plan = AggregatePlan::new(&input_schema(), &keys, &aggs, &["ts".to_string()]).unwrap();
        Box::new(SessionWindowAggregateExec::new(plan, 0, DEFAULT_STATE_PARTITIONS, OutputMode::Append).unwrap())
    };
    let s = operator_contract(&make, &single_input_batches(OutputMode::Append));
    assert_exercised("session windows", &s, true, true);
}

fn deduplicate(subset: &[&str], within_watermark: bool) -> Box<dyn StatefulOperator> {
    let subset: Vec<String> = subset.iter().map(|s| s.to_string()).collect();
    let plan = DedupPlan::new(input_schema(), &subset, within_watermark, &[("ts".to_string(), DELAY_MS)]).unwrap();
    Box::new(StreamingDeduplicateExec::new(plan, 0, DEFAULT_STATE_PARTITIONS))
}

#[test]
fn streaming_deduplicate() {
    let s = operator_contract(&|| deduplicate(&["key", "ts"], false), &single_input_batches(OutputMode::Append));
    assert_exercised("drop_duplicates", &s, true, true);
}

#[test]
fn streaming_deduplicate_within_watermark() {
    let s = operator_contract(&|| deduplicate(&["key"], true), &single_input_batches(OutputMode::Append));
    assert_exercised("drop_duplicates_within_watermark", &s, true, true);
}

/// Left `key, lt, lval` and right `rkey, rt, rval` rows of batch `n`: pairs matching
/// within the batch, a right row matching a left row of the batch before, rows of each
/// side that never match, and late rows on both sides.
fn join_rows(n: usize) -> (DataFrame, DataFrame) {
    let (left_names, right_names) = (["key", "lt", "lval"], ["rkey", "rt", "rval"]);
    if NO_DATA.contains(&n) {
        return (frame(left_names, &[]), frame(right_names, &[]));
    }
    let n = n as i64;
    let key = |i: i64| Some(["a", "b", "c"][(i.rem_euclid(3)) as usize].to_string());
    let mut left: Vec<(Option<String>, i64, i64)> = (0..3).map(|j| (key(n + j), n * 10 + j * 3, n * 100 + j)).collect();
    left.push((Some(format!("z{n}")), n * 10 + 1, n * 100 + 10));
    let mut right: Vec<(Option<String>, i64, i64)> = (0..2).map(|j| (key(n + j), n * 10 + j * 3 + 2, n * 100 + j)).collect();
    right.push((Some(format!("y{n}")), n * 10 + 5, n * 100 + 20));
    if n >= 1 {
        right.push((key(n - 1), n * 10 - 3, n * 100 + 30));
    }
    if n >= 3 {
        left.push((key(0), n * 10 - 30, n * 100 + 90));
        right.push((key(0), n * 10 - 30, n * 100 + 90));
    }
    (frame(left_names, &left), frame(right_names, &right))
}

#[test]
fn symmetric_hash_join_full_outer_with_time_range() {
    let how = StreamJoinType::FullOuter;
    let make = || -> Box<dyn StatefulOperator> {
        let (l, r) = join_rows(0);
        let (ls, rs) = (l.schema().clone(), r.schema().clone());
        let condition = col("rt").gt_eq(col("lt")).and(col("rt").lt_eq(col("lt") + interval("10 seconds").unwrap()));
        let plan = StreamingJoinPlan {
            how,
            condition: Some(condition),
            output_schema: StreamingSymmetricHashJoinExec::output_schema(&ls, &rs, how),
        };
        let left = JoinSide::new(vec![col("key")], ls, Some("lt".into()), 0, DEFAULT_STATE_PARTITIONS);
        let right = JoinSide::new(vec![col("rkey")], rs, Some("rt".into()), 1, DEFAULT_STATE_PARTITIONS);
        Box::new(StreamingSymmetricHashJoinExec::new(plan, left, right))
    };
    let inputs = (0..BATCHES).map(|n| {
        let (l, r) = join_rows(n);
        vec![l, r]
    });
    let s = operator_contract(&make, &batches(inputs.collect(), &["lt", "rt"], OutputMode::Append));
    assert_exercised("full outer join", &s, true, true);
}

/// Per key: the rows seen and the largest event time (ms).
type Seen = (i64, i64);

#[test]
fn flat_map_groups_with_state_event_time_timeout() {
    let output_schema = Schema::from_iter([
        Field::new("key".into(), DataType::String),
        Field::new("rows".into(), DataType::Int64),
        Field::new("why".into(), DataType::String),
    ]);
    // Counts each key's rows and emits the count on every call; times a key out 5 s of
    // event time after its latest row, emitting the count a last time and removing it.
    let func = |key: &GroupKey, rows: DataFrame, state: &mut GroupState<Seen>| -> sluice::Result<DataFrame> {
        let name = key.str(0).unwrap_or("null").to_string();
        let emit = |count: i64, why: &str| -> sluice::Result<DataFrame> {
            let columns = vec![
                Column::new("key".into(), vec![name.clone()]),
                Column::new("rows".into(), vec![count]),
                Column::new("why".into(), vec![why.to_string()]),
            ];
            Ok(DataFrame::new(1, columns)?)
        };
        if state.has_timed_out() {
            let (count, _) = *state.get()?;
            state.remove();
            return emit(count, "timed out");
        }
        let (count, max_ms) = state.get_option().copied().unwrap_or((0, 0));
        let latest = max_event_ms(&rows, "ts").unwrap_or(max_ms).max(max_ms);
        let count = count + rows.height() as i64;
        state.update((count, latest));
        state.set_timeout_timestamp((latest + DELAY_MS).max(state.current_watermark_ms()?))?;
        emit(count, "data")
    };
    let make = || -> Box<dyn StatefulOperator> {
        let spec = GroupsWithStateSpec {
            keys: vec![col("key")],
            func: group_function(func),
            output_schema: std::sync::Arc::new(output_schema.clone()),
            output_mode: OutputMode::Append,
            timeout: GroupStateTimeout::EventTimeTimeout,
            is_map: false,
        };
        Box::new(FlatMapGroupsWithStateExec::new(spec, input_schema(), Some("ts".into()), 0, DEFAULT_STATE_PARTITIONS).unwrap())
    };
    let s = operator_contract(&make, &single_input_batches(OutputMode::Append));
    assert_exercised("flat_map_groups_with_state", &s, true, true);
}
