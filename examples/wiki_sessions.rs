//! # wiki_sessions: editing sessions of Wikipedia users, merged across micro-batches
//!
//! Replays the bundled sample of 39,244 real Wikipedia edits of 2015-09-12 as a stream of
//! JSON lines files (2,000 edits per file, one file per micro-batch) and groups each
//! user's edits into *sessions*: edits no more than `--gap` apart (Spark's
//! `session_window(time, gap)`). A session can grow, and two sessions can merge when an
//! edit bridges them, in a later micro-batch than the one that opened them; in append mode
//! a session is written once, when the watermark passes its end.
//!
//! ```text
//! cargo run --release --example wiki_sessions                     # the walk-through
//! cargo run --release --example wiki_sessions -- --input DIR --output DIR --checkpoint DIR \
//!     --gap "10 minutes" --watermark "5 minutes" --mode append     # the oracle contract
//! ```

#[path = "common/mod.rs"]
mod common;

use std::time::Instant;

use clap::Parser;
use sluice::prelude::*;

#[derive(Parser, Debug)]
#[command(about = "Wikipedia editing sessions per user (session windows)")]
struct Args {
    #[command(flatten)]
    io: common::IoArgs,
    /// Session gap: edits further apart than this start a new session.
    #[arg(long, default_value = "10 minutes")]
    gap: String,
    /// Watermark delay on `time`.
    #[arg(long, default_value = "5 minutes")]
    watermark: String,
    /// Output mode: append or complete (Spark rejects update for session windows).
    #[arg(long, default_value = "append")]
    mode: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mode: OutputMode = args.mode.parse()?;
    let session = Session::new();

    // The oracle contract: batch-<id>.jsonl per micro-batch.
    if args.io.run_contract_if_given("wiki-sessions", mode, |input| {
        common::wiki_sessions(common::json_source(&session, input, common::user_edits_schema())?, &args.gap, &args.watermark)
    })? {
        return Ok(());
    }

    println!("== wiki_sessions: editing sessions of Wikipedia users (gap {}) ==\n", args.gap);
    let (base, input, files) = common::wiki::walkthrough_input("wiki_sessions")?;
    let checkpoint = base.join("checkpoint");
    common::remove_dirs(&[&checkpoint])?;
    println!("Step 1. Split {} into {files} JSON lines files of 2,000 edits.", common::wiki::bundled().display());

    let edits = common::json_source(&session, &input, common::user_edits_schema())?;
    let sessions = common::wiki_sessions(edits, &args.gap, &args.watermark)?;
    println!(
        "\nStep 2. with_watermark(\"time\", \"{}\"), group_by(session_window(time, \"{}\"), user),\n        \
         edits = len(), added = sum(added). Output columns: {:?}",
        args.watermark,
        args.gap,
        sessions.schema()?.iter().map(|(n, d)| format!("{n}: {d}")).collect::<Vec<_>>()
    );

    println!("\nStep 3. Running with Trigger::AvailableNow, {mode} mode, a memory sink.\n");
    let started = Instant::now();
    let query = sessions
        .write_stream()
        .output_mode(mode)
        .format("memory")
        .query_name("wiki_sessions")
        .checkpoint_location(&checkpoint)
        .trigger(Trigger::AvailableNow)
        .progress(ProgressDisplay::Lines)
        .start()?;
    query.await_termination()?;
    let elapsed = started.elapsed().as_secs_f64();
    let progress = query.recent_progress();
    let table = session.memory_table("wiki_sessions").ok_or_else(|| anyhow::anyhow!("no memory table"))?;
    // In complete mode every batch repeats the whole result: keep the last one.
    let batches = table.batches();
    let rows = match mode {
        OutputMode::Complete => batches.last().map(|(_, df)| df.clone()),
        _ => batches.into_iter().map(|(_, df)| df).reduce(|mut a, b| {
            a.vstack_mut_owned(b).expect("same schema");
            a
        }),
    }
    .ok_or_else(|| anyhow::anyhow!("the query emitted no batch"))?;

    let rows_in: u64 = progress.iter().map(|p| p.num_input_rows).sum();
    let late: u64 = progress.iter().flat_map(|p| &p.state_operators).map(|s| s.num_rows_dropped_by_watermark).sum();
    let open: u64 = progress.last().and_then(|p| p.state_operators.first()).map(|s| s.num_rows_total).unwrap_or(0);
    let sessions = rows
        .lazy()
        .with_columns([
            col("session_window").struct_().field_by_name("start").alias("start"),
            col("session_window").struct_().field_by_name("end").alias("end"),
        ])
        .with_column(((col("end").cast(DataType::Int64) - col("start").cast(DataType::Int64)) / lit(60_000_000i64)).alias("minutes"))
        .select([col("user"), col("start"), col("end"), col("minutes"), col("edits"), col("added")])
        .collect()?;
    println!("\nStep 4. Summary");
    println!("        micro-batches        {}", progress.len());
    println!("        edits in             {rows_in}");
    println!("        sessions out         {}", sessions.height());
    println!("        sessions still open  {open} (their end is after the final watermark)");
    println!("        late edits dropped   {late}");
    println!("        wall time            {elapsed:.2} s ({:.0} edits/s)", rows_in as f64 / elapsed.max(1e-9));
    let single = sessions.clone().lazy().filter(col("edits").eq(lit(1i64))).collect()?.height();
    println!(
        "        sessions of one edit {single} ({:.0}%): a one-edit session lasts exactly the gap",
        100.0 * single as f64 / sessions.height().max(1) as f64
    );

    let desc = SortMultipleOptions::default().with_order_descending(true);
    let longest = sessions.clone().lazy().sort(["minutes"], desc.clone()).limit(8).collect()?;
    println!("\n        Longest sessions (minutes from the first edit to the last edit + gap):\n{longest}");
    let editors = sessions
        .lazy()
        .group_by([col("user")])
        .agg([len().alias("sessions"), col("edits").sum().alias("edits"), col("minutes").sum().alias("minutes")])
        .sort(["edits"], desc)
        .limit(8)
        .collect()?;
    println!("\n        Most active editors (mostly bots: they edit without pause):\n{editors}");
    Ok(())
}
