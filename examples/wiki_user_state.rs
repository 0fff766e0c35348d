//! # wiki_user_state: per-user activity with flat_map_groups_with_state and event-time timeouts
//!
//! Replays the bundled 39,244 real Wikipedia edits of 2015-09-12 as a stream (2,000 edits
//! per file, one file per micro-batch) and keeps, per user, an arbitrary Rust state
//! (`UserActivity`: edits, bytes added, first and last edit time) in the state store.
//! Each batch with new edits pushes the user's event-time timeout to
//! `max(last edit + 30 minutes, watermark + 1 ms)`; once the watermark passes it, the
//! user's activity is over: the function is called with no rows and `has_timed_out()`,
//! emits one row and removes the state. Append mode: every row is final.
//!
//! ```text
//! cargo run --release --example wiki_user_state                    # the walk-through
//! cargo run --release --example wiki_user_state -- --input DIR --output DIR --checkpoint DIR \
//!     --timeout-minutes 30 --watermark "5 minutes" --mode append   # the oracle contract
//! ```

#[path = "common/mod.rs"]
mod common;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use clap::Parser;
use sluice::prelude::*;

#[derive(Parser, Debug)]
#[command(about = "Per-user activity sessions with flat_map_groups_with_state (event-time timeout)")]
struct Args {
    #[command(flatten)]
    io: common::IoArgs,
    /// Minutes of inactivity (in event time) after which a user's activity is emitted.
    #[arg(long, default_value_t = 30)]
    timeout_minutes: i64,
    /// Watermark delay on `time`.
    #[arg(long, default_value = "5 minutes")]
    watermark: String,
    /// Output mode (the operator runs in append mode, so must the query).
    #[arg(long, default_value = "append")]
    mode: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mode: OutputMode = args.mode.parse()?;
    let session = Session::new();

    if args.io.run_contract_if_given("wiki-user-state", mode, |input| {
        let edits = common::json_source(&session, input, common::user_edits_schema())?;
        common::wiki_user_state(edits, args.timeout_minutes, &args.watermark)
    })? {
        return Ok(());
    }

    println!(
        "== wiki_user_state: per-user activity, emitted after {} minutes without edits (event time) ==\n",
        args.timeout_minutes
    );
    let (base, input, files) = common::wiki::walkthrough_input("wiki_user_state")?;
    let checkpoint = base.join("checkpoint");
    common::remove_dirs(&[&checkpoint])?;
    println!("Step 1. Split {} into {files} files of 2,000 edits (one per micro-batch).", common::wiki::bundled().display());

    let edits = common::json_source(&session, &input, common::user_edits_schema())?;
    let activity = common::wiki_user_state(edits, args.timeout_minutes, &args.watermark)?;
    println!(
        "\nStep 2. with_watermark(\"time\", \"{}\"), group_by(user), flat_map_groups_with_state(Append, EventTimeTimeout).\n        \
         State per user: UserActivity {{ edits, added, first_us, last_us }} (serde, JSON in the state store).\n        \
         Output columns: {:?}",
        args.watermark,
        activity.schema()?.iter().map(|(n, d)| format!("{n}: {d}")).collect::<Vec<_>>()
    );

    println!("\nStep 3. Running with Trigger::AvailableNow, {mode} mode:\n");
    let collected: Arc<Mutex<Vec<(u64, DataFrame)>>> = Arc::default();
    let sink = collected.clone();
    let started = Instant::now();
    let query = activity
        .write_stream()
        .output_mode(mode)
        .checkpoint_location(&checkpoint)
        .trigger(Trigger::AvailableNow)
        .progress(ProgressDisplay::Lines)
        .foreach_batch(move |df, id| {
            sink.lock().map_err(|_| sluice::SluiceError::Internal("lock".into()))?.push((id, df.clone()));
            Ok(())
        })
        .start()?;
    query.await_termination()?;
    let elapsed = started.elapsed().as_secs_f64();
    let progress = query.recent_progress();

    let batches = collected.lock().map_err(|_| anyhow::anyhow!("lock"))?.clone();
    let mut all = DataFrame::empty_with_schema(&common::user_activity_schema());
    for (_, df) in &batches {
        all.vstack_mut(df)?;
    }
    let rows_in: u64 = progress.iter().map(|p| p.num_input_rows).sum();
    let late: u64 = progress.iter().flat_map(|p| &p.state_operators).map(|s| s.num_rows_dropped_by_watermark).sum();
    let left = progress.last().and_then(|p| p.state_operators.first()).map(|s| s.num_rows_total).unwrap_or(0);
    let bytes = progress.last().and_then(|p| p.state_operators.first()).map(|s| s.memory_used_bytes).unwrap_or(0);
    println!("\nStep 4. Summary");
    println!("        micro-batches           {} (a last one without data runs because the watermark moved)", progress.len());
    println!("        edits in                {rows_in} ({late} late, dropped)");
    println!("        activities emitted      {}", all.height());
    println!("        users still in state    {left} (their timeout is beyond the final watermark)");
    println!("        state in memory         {bytes} bytes");
    println!("        wall time               {elapsed:.2} s");
    let per_batch: Vec<String> = batches.iter().filter(|(_, d)| d.height() > 0).map(|(i, d)| format!("{i}:{}", d.height())).collect();
    println!("        rows per batch          {}", per_batch.join(" "));

    let top = all
        .clone()
        .lazy()
        .with_column(((col("last_edit") - col("first_edit")).dt().total_minutes(false)).alias("minutes"))
        .sort(["edits"], SortMultipleOptions::default().with_order_descending(true))
        .limit(8)
        .collect()?;
    println!("\n        Busiest activities (edits without a {}-minute pause):\n{top}", args.timeout_minutes);
    Ok(())
}
