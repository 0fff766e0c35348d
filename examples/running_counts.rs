//! # running_counts: edits and bytes added per channel, since the start
//!
//! The oracle job `running_counts`: `groupBy(channel)` with `edits = count(*)` and
//! `added = sum(added)`, no watermark, no window. In Complete mode every batch writes the
//! whole table; in Update mode only the channels that changed.
//!
//! ```text
//! cargo run --release --example running_counts -- --input DIR --output DIR --checkpoint DIR --mode complete
//! ```
//! With no `--input` it replays the bundled Wikipedia edits (4,000 per file).

#[path = "common/mod.rs"]
mod common;

use clap::Parser;
use sluice::prelude::*;

#[derive(Parser, Debug)]
#[command(about = "Running counts per channel (no watermark)")]
struct Args {
    #[command(flatten)]
    io: common::IoArgs,
    /// Output mode: complete or update.
    #[arg(long, default_value = "complete")]
    mode: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let narrate = args.io.input.is_none();
    let work = std::env::temp_dir().join(format!("sluice-running-counts-{}", std::process::id()));
    let input = match &args.io.input {
        Some(i) => i.clone(),
        None => {
            let dir = work.join("input");
            let n = common::wiki::split_bundled(&dir, 4000)?;
            println!("Step 1. Replaying the bundled Wikipedia edits as {n} JSON lines files in {}", dir.display());
            dir
        }
    };
    let output = args.io.output.clone().unwrap_or_else(|| work.join("output"));
    let checkpoint = args.io.checkpoint.clone().unwrap_or_else(|| work.join("checkpoint"));
    let mode: OutputMode = args.mode.parse()?;
    let session = Session::new();
    let edits = common::json_source(&session, &input, common::wiki_schema())?;
    let counts = common::running_counts(edits);
    let display = if narrate { ProgressDisplay::Lines } else { ProgressDisplay::Off };
    let progress = common::run_contract(counts, mode, &output, &checkpoint, display)?;
    if narrate {
        let last = progress.last().map(|p| p.batch_id).unwrap_or(0);
        println!("Step 2. {} batches ran. The last one (batch {last}) holds the whole table:", progress.len());
        let text = std::fs::read_to_string(output.join(format!("batch-{last}.jsonl")))?;
        let mut rows: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        rows.sort_by_key(|r| -r["edits"].as_i64().unwrap_or(0));
        for r in rows.iter().take(10) {
            println!("  {:<22} {:>6} edits {:>10} bytes added", r["channel"].as_str().unwrap_or("?"), r["edits"], r["added"]);
        }
    }
    Ok(())
}
