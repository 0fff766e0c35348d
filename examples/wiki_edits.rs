//! # wiki_edits: a day of real Wikipedia edits, per 10-minute window and channel
//!
//! The main example. It replays the bundled sample of 39,244 real Wikipedia edits of
//! 2015-09-12 (Apache Druid's quickstart data) as a stream of JSON lines files, 2,000
//! edits per file, one file per micro-batch, and computes per 10-minute window and channel
//! the number of edits, bytes added and deleted, robot edits and the largest delta, with a
//! 1-minute watermark in append mode: each window is written once, when the watermark
//! says no more edits can arrive for it. Results go to Parquet through the file sink.
//!
//! ```text
//! cargo run --release --example wiki_edits                       # the walk-through
//! cargo run --release --example wiki_edits -- --input DIR --output DIR --checkpoint DIR \
//!     --window "10 minutes" --watermark "1 minute" --mode append  # the oracle contract
//! ```

#[path = "common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use sluice::prelude::*;

#[derive(Parser, Debug)]
#[command(about = "Wikipedia edits per window and channel (the main Sluice example)")]
struct Args {
    #[command(flatten)]
    io: common::IoArgs,
    /// Window length.
    #[arg(long, default_value = "10 minutes")]
    window: String,
    /// Watermark delay on `time`.
    #[arg(long, default_value = "1 minute")]
    watermark: String,
    /// Output mode: append, update or complete.
    #[arg(long, default_value = "append")]
    mode: String,
    /// Where the walk-through writes its Parquet output (default target/wiki_edits).
    #[arg(long)]
    parquet_out: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mode: OutputMode = args.mode.parse()?;
    let session = Session::new();

    // The oracle contract: batch-<id>.jsonl per micro-batch.
    if args.io.run_contract_if_given("wiki-edits", mode, |input| {
        common::wiki_edits(common::json_source(&session, input, common::wiki_schema())?, &args.window, &args.watermark)
    })? {
        return Ok(());
    }

    println!("== wiki_edits: a day of real Wikipedia edits, per {} window and channel ==\n", args.window);
    let (base, input, files) = common::wiki::walkthrough_input("wiki_edits")?;
    let out = args.parquet_out.clone().unwrap_or_else(|| base.join("output"));
    let checkpoint = base.join("checkpoint");
    common::remove_dirs(&[&out, &checkpoint])?;
    println!("Step 1. Split {} into {files} JSON lines files of 2,000 edits:\n        {}", common::wiki::bundled().display(), input.display());

    let edits = common::json_source(&session, &input, common::wiki_schema())?;
    println!("\nStep 2. A file source with a schema, one file per micro-batch. Its columns:\n        {:?}", edits.schema()?.iter_names().collect::<Vec<_>>());

    let per_window = common::wiki_edits(edits, &args.window, &args.watermark)?;
    println!(
        "\nStep 3. with_watermark(\"time\", \"{}\"), group_by(window(time, \"{}\"), channel), five aggregates.\n        Output columns: {:?}",
        args.watermark,
        args.window,
        per_window.schema()?.iter().map(|(n, d)| format!("{n}: {d}")).collect::<Vec<_>>()
    );

    println!("\nStep 4. Running with Trigger::AvailableNow, {mode} mode, Parquet file sink -> {}\n", out.display());
    let started = Instant::now();
    let query = per_window
        .write_stream()
        .output_mode(mode)
        .format("parquet")
        .option("path", out.display())
        .checkpoint_location(&checkpoint)
        .trigger(Trigger::AvailableNow)
        .progress(ProgressDisplay::Lines)
        .start()?;
    query.await_termination()?;
    let elapsed = started.elapsed().as_secs_f64();
    let progress = query.recent_progress();

    let rows_in: u64 = progress.iter().map(|p| p.num_input_rows).sum();
    let rows_out: u64 = progress.iter().map(|p| p.sink.num_output_rows).sum();
    let late: u64 = progress.iter().flat_map(|p| &p.state_operators).map(|s| s.num_rows_dropped_by_watermark).sum();
    println!("\nStep 5. Summary");
    println!("        micro-batches      {}", progress.len());
    println!("        edits in           {rows_in}");
    println!("        window rows out    {rows_out}");
    println!("        late groups dropped {late}");
    println!("        wall time          {elapsed:.2} s ({:.0} edits/s)", rows_in as f64 / elapsed.max(1e-9));

    let written = sluice::connectors::read_output(&out)?;
    println!("        rows in the manifest-listed Parquet files: {}", written.height());
    let top = written
        .lazy()
        .group_by([col("channel")])
        .agg([col("edits").sum(), col("added").sum(), col("robot_edits").sum()])
        .sort(["edits"], SortMultipleOptions::default().with_order_descending(true))
        .limit(8)
        .collect()?;
    println!("\n        Top channels by edits:\n{top}");
    println!("\nOutput: {} (read it with any Parquet reader; trust only files listed in _sluice_metadata/)", out.display());

    // Inside the stream: the plan, then the batch that emitted the most windows, re-run
    // read-only from the checkpoint and explained.
    println!("\nStep 6. The plan (query.explain):\n{}", query.explain(false));
    let busiest = progress
        .iter()
        .max_by_key(|p| (p.sink.num_output_rows, std::cmp::Reverse(p.batch_id)))
        .map(|p| p.batch_id)
        .unwrap_or(0);
    let explained = sluice::engine::explain_batch(&per_window, mode, &checkpoint, busiest)?;
    let outcomes = explained
        .rows
        .clone()
        .lazy()
        .group_by([col("outcome")])
        .agg([len().alias("edit x window pairs")])
        .sort(["outcome"], Default::default())
        .collect()?;
    println!("Step 7. The busiest batch, {busiest}, explained (sluice::engine::explain_batch):\n{outcomes}");
    let text = explained.to_text();
    let lines: Vec<&str> = text.lines().collect();
    for l in lines.iter().take(8) {
        println!("        {l}");
    }
    if lines.len() > 8 {
        println!("        ... ({} more lines; late rows and open windows below the output)", lines.len() - 8);
    }
    for l in lines.iter().filter(|l| l.contains("-- late:")).take(3) {
        println!("        {l}");
    }
    Ok(())
}
