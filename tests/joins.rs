//! Joins beyond the oracle cases: restart mid-join, bounded state over a long run, the
//! analysis errors of unsupported joins, and the join types on a small exact example.

#[path = "../examples/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use sluice::prelude::*;
use sluice::connectors::{MemoryStream, MemoryTable};
use sluice::{StreamJoinType, SluiceError};

/// Runs p08's input as a left outer ad join; the sink fails once at batch `fail_at`.
fn run_join_failing_at(fail_at: Option<u64>, how: StreamJoinType) -> BTreeMap<u64, String> {
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("in");
    common::copy_ordered(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/cases/p08_ad_join_left_outer/input"), &input).unwrap();
    let (out, ck) = (work.path().join("out"), work.path().join("ck"));
    let session = Session::new();
    let build = || {
        let imp = common::json_source(&session, &input.join("impressions"), common::impressions_schema()).unwrap();
        let clk = common::json_source(&session, &input.join("clicks"), common::clicks_schema()).unwrap();
        common::ad_join(imp, clk, how, "2 hours", "3 hours", "1 hour").unwrap()
    };
    if let Some(k) = fail_at {
        let o = out.clone();
        let q = build()
            .write_stream()
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
        assert!(q.await_termination().is_err());
    }
    common::run_contract(build(), OutputMode::Append, &out, &ck, ProgressDisplay::Off).unwrap();
    common::read_batch_files(&out).unwrap()
}

#[test]
fn restart_mid_join_after_each_batch_gives_the_uninterrupted_output() {
    for how in [StreamJoinType::LeftOuter, StreamJoinType::FullOuter] {
        let expected = run_join_failing_at(None, how);
        let rows: usize = expected.values().map(|v| v.lines().count()).sum();
        assert!(rows > 400, "{how}: {rows} rows");
        for k in 0..16 {
            let got = run_join_failing_at(Some(k), how);
            let differing: Vec<(u64, usize, usize)> = expected
                .keys()
                .chain(got.keys())
                .filter(|b| got.get(b) != expected.get(b))
                .map(|b| {
                    let n = |m: &BTreeMap<u64, String>| m.get(b).map(|t| t.lines().count()).unwrap_or(0);
                    (*b, n(&expected), n(&got))
                })
                .collect();
            assert!(differing.is_empty(), "{how}: after a failure in batch {k}, (batch, expected rows, got rows): {differing:?}");
        }
    }
}

/// 1,000,000 impressions (one a second), 40% clicked within the hour, in 100 batches of
/// 10,000: the join state stays within what the watermarks allow, whatever the input size,
/// and every click is attributed exactly once.
#[test]
fn join_state_stays_bounded_by_the_watermark_horizon() {
    let session = Session::new();
    let imp_stream = MemoryStream::new(Arc::new(common::impressions_schema()));
    let clk_stream = MemoryStream::new(Arc::new(common::clicks_schema()));
    let joined = common::ad_join(
        imp_stream.to_df(&session),
        clk_stream.to_df(&session),
        StreamJoinType::Inner,
        "2 hours",
        "3 hours",
        "1 hour",
    )
    .unwrap();
    let table = MemoryTable::new();
    let q = joined.write_stream().progress(ProgressDisplay::Off).sink(Box::new(table.sink())).start().unwrap();
    let (batches, per_batch) = (100i64, 10_000i64);
    let mut x: u64 = 1;
    let mut clicks_total = 0usize;
    let mut state_per_batch = Vec::new();
    for b in 0..batches {
        let ids: Vec<i64> = (b * per_batch..(b + 1) * per_batch).collect();
        let (mut click_ids, mut click_secs) = (Vec::new(), Vec::new());
        for &i in &ids {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            if (x >> 33) % 10 < 4 {
                click_ids.push(format!("ad{i}"));
                click_secs.push(i + ((x >> 40) % 3600) as i64);
            }
        }
        clicks_total += click_ids.len();
        let n_clicks = click_ids.len();
        imp_stream
            .add_data(common::impressions_at(&ids.iter().map(|i| format!("ad{i}")).collect::<Vec<_>>(), &ids, "c").unwrap()).unwrap();
        clk_stream
            .add_data(common::clicks_at(&click_ids, &click_secs, &vec![0.5; n_clicks]).unwrap()).unwrap();
        q.process_all_available().unwrap();
        let p = q.recent_progress();
        state_per_batch.push(p.iter().map(|p| p.state_operators[0].num_rows_total).max().unwrap_or(0));
    }
    q.stop().unwrap();
    // Every click matches its impression once.
    let out_rows: usize = table.batches().iter().map(|(_, d)| d.height()).sum();
    assert_eq!(out_rows, clicks_total, "inner join output");
    // The horizon: impressions stay until the global watermark (about 2 h behind the
    // newest event) passes impression_time + 1 h, clicks until it passes click_time; plus
    // up to two batches in flight. Rows per second: 1 impression + 0.4 clicks.
    let horizon_s = 2 * 3600 + 3600 + 3600;
    let bound = ((horizon_s + 2 * per_batch) as f64 * 1.4) as u64;
    let max_state = *state_per_batch.iter().max().unwrap();
    assert!(max_state < bound, "max state rows {max_state} >= bound {bound}");
    // Not growing: the second half peaks no higher than the first half's peak plus a batch.
    let (first, second) = state_per_batch.split_at(50);
    let (m1, m2) = (*first.iter().max().unwrap(), *second.iter().max().unwrap());
    assert!(m2 <= m1 + (per_batch as u64), "state grows with input: {m1} then {m2}");
    assert!(max_state * 20 < (batches * per_batch) as u64, "state {max_state} is not small against the input");
}

fn analysis(df: StreamingDataFrame, mode: OutputMode) -> String {
    match df.write_stream().output_mode(mode).progress(ProgressDisplay::Off).sink(Box::new(MemoryTable::new().sink())).start() {
        Ok(q) => {
            let _ = q.stop();
            panic!("expected an analysis error")
        }
        Err(SluiceError::Analysis { message }) => message,
        Err(e) => panic!("expected an analysis error, got {e}"),
    }
}

#[test]
fn unsupported_joins_fail_at_start_with_a_reason() {
    let session = Session::new();
    let imp = MemoryStream::new(Arc::new(common::impressions_schema())).to_df(&session);
    let clk = MemoryStream::new(Arc::new(common::clicks_schema())).to_df(&session);
    let on = |a: &str| [col(a)];
    // Outer join without watermarks.
    let m = analysis(imp.join(&clk, on("ad_id"), on("click_ad_id"), StreamJoinType::LeftOuter, None), OutputMode::Append);
    assert!(m.contains("LeftOuter join") && m.contains("watermark"), "{m}");
    // Watermarks but no range condition.
    let imp_w = imp.with_watermark("impression_time", "2 hours").unwrap();
    let clk_w = clk.with_watermark("click_time", "3 hours").unwrap();
    let m = analysis(imp_w.join(&clk_w, on("ad_id"), on("click_ad_id"), StreamJoinType::FullOuter, None), OutputMode::Append);
    assert!(m.contains("FullOuter join") && m.contains("range condition"), "{m}");
    // A condition that bounds only one side is not enough for a full outer join.
    let only_clicks = col("click_time").gt_eq(col("impression_time"));
    let m = analysis(
        imp_w.join(&clk_w, on("ad_id"), on("click_ad_id"), StreamJoinType::FullOuter, Some(only_clicks.clone())),
        OutputMode::Append,
    );
    assert!(m.contains("bounds the left side"), "{m}");
    // ... but it is for a right outer join (clicks are the outer side).
    let q = imp_w
        .join(&clk_w, on("ad_id"), on("click_ad_id"), StreamJoinType::RightOuter, Some(only_clicks))
        .write_stream()
        .progress(ProgressDisplay::Off)
        .sink(Box::new(MemoryTable::new().sink()))
        .start()
        .unwrap();
    q.stop().unwrap();
    // Joins are append only.
    let m = analysis(imp.join(&clk, on("ad_id"), on("click_ad_id"), StreamJoinType::Inner, None), OutputMode::Update);
    assert!(m.contains("Update output mode not supported for stream-stream joins"), "{m}");
    // Stream-static: only inner and left outer.
    let static_df = df!("ad_id" => ["a"], "owner" => ["x"]).unwrap();
    let m = analysis(imp.join_static(static_df, on("ad_id"), on("ad_id"), StreamJoinType::RightOuter), OutputMode::Append);
    assert!(m.contains("stream-static join supports Inner and LeftOuter"), "{m}");
}

/// The join types on a tiny exact example, through the whole engine.
#[test]
fn join_types_on_a_small_example() {
    let run = |how: StreamJoinType| -> Vec<String> {
        let session = Session::new();
        let imp = MemoryStream::new(Arc::new(common::impressions_schema()));
        let clk = MemoryStream::new(Arc::new(common::clicks_schema()));
        let joined = common::ad_join(imp.to_df(&session), clk.to_df(&session), how, "10 minutes", "10 minutes", "1 hour").unwrap();
        let table = MemoryTable::new();
        let q = joined.write_stream().progress(ProgressDisplay::Off).sink(Box::new(table.sink())).start().unwrap();
        // a: clicked in time; b: clicked too late (after 1 hour); c: never clicked;
        // z: a click without impression. Then time moves on by 5 hours.
        common::feed_small_join_example(&imp, &clk, &q).unwrap();
        q.stop().unwrap();
        let all = table.to_df().unwrap().unwrap();
        let mut rows: Vec<String> = (0..all.height())
            .map(|i| {
                let get = |c: &str| all.column(c).ok().and_then(|c| c.get(i).ok()).map(|v| v.to_string()).unwrap_or("-".into());
                format!("{}|{}", get("ad_id"), get("click_ad_id"))
            })
            .collect();
        rows.sort();
        rows
    };
    assert_eq!(run(StreamJoinType::Inner), vec!["\"a\"|\"a\""]);
    assert_eq!(run(StreamJoinType::LeftOuter), vec!["\"a\"|\"a\"", "\"b\"|null", "\"c\"|null"]);
    assert_eq!(run(StreamJoinType::RightOuter), vec!["\"a\"|\"a\"", "null|\"b\"", "null|\"z\""]);
    assert_eq!(run(StreamJoinType::FullOuter), vec!["\"a\"|\"a\"", "\"b\"|null", "\"c\"|null", "null|\"b\"", "null|\"z\""]);
    assert_eq!(run(StreamJoinType::LeftSemi), vec!["\"a\"|-"]);
}

/// Two watermarks combine with the `min` policy by default, `max` when configured
/// (Spark's `spark.sql.streaming.multipleWatermarkPolicy`).
#[test]
fn multiple_watermarks_combine_with_min_or_max() {
    let run = |policy: Option<&str>| -> String {
        let session = Session::new();
        if let Some(p) = policy {
            session.set_conf("sluice.multipleWatermarkPolicy", p);
        }
        let imp = MemoryStream::new(Arc::new(common::impressions_schema()));
        let clk = MemoryStream::new(Arc::new(common::clicks_schema()));
        let joined = common::ad_join(imp.to_df(&session), clk.to_df(&session), StreamJoinType::Inner, "2 hours", "3 hours", "1 hour").unwrap();
        let q = joined.write_stream().progress(ProgressDisplay::Off).sink(Box::new(MemoryTable::new().sink())).start().unwrap();
        imp.add_data(common::impressions_at(&["a"], &[10 * 3600], "k").unwrap()).unwrap();
        clk.add_data(common::clicks_at(&["a"], &[10 * 3600], &[1.0]).unwrap()).unwrap();
        q.process_all_available().unwrap();
        let wm = q.last_progress().unwrap().event_time["watermark"].clone();
        q.stop().unwrap();
        wm
    };
    // Events at 18:00; impressions lag 2 hours, clicks 3 hours.
    assert_eq!(run(None), "2024-03-01T15:00:00.000Z", "min policy");
    assert_eq!(run(Some("max")), "2024-03-01T16:00:00.000Z", "max policy");
}
