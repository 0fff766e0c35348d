//! # dedup: streaming deduplication, with and without a watermark bound
//!
//! The oracle job `dedup` (see `../shared/oracle/README.md`): events
//! `event_id string, ts timestamp, v long` with a watermark on `ts`, then
//! `dropDuplicates([event_id, ts])`, or with `--within-watermark`
//! `dropDuplicatesWithinWatermark([event_id])` (`--keys` picks other key columns).
//!
//! ```text
//! cargo run --release --example dedup                 # the walk-through on real edits
//! cargo run --release --example dedup -- --input DIR --output DIR --checkpoint DIR \
//!     --watermark "10 minutes" --within-watermark true --mode append   # the oracle contract
//! ```
//! With no `--input` it replays the bundled day of real Wikipedia edits and keeps only
//! the first edit of each burst of edits by one user on one page:
//! `drop_duplicates_within_watermark(["user", "page"])` with a 10-minute watermark drops
//! a user's further edits of a page until the watermark passes the first edit's time
//! plus 10 minutes; then the pair leaves state, and the next edit opens a new burst. The
//! same query with `drop_duplicates(["user", "page"])` keeps every pair ever seen.

#[path = "common/mod.rs"]
mod common;

use std::path::Path;

use clap::{ArgAction, Parser};
use sluice::prelude::*;
use sluice::StreamingQueryProgress;

#[derive(Parser, Debug)]
#[command(about = "Streaming deduplication (Spark's dropDuplicates and dropDuplicatesWithinWatermark)")]
struct Args {
    #[command(flatten)]
    io: common::IoArgs,
    /// Watermark delay on `ts`; none when absent (not allowed with --within-watermark).
    #[arg(long)]
    watermark: Option<String>,
    /// dropDuplicatesWithinWatermark instead of dropDuplicates (`--within-watermark` or
    /// `--within-watermark true`).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value_t = false, action = ArgAction::Set)]
    within_watermark: bool,
    /// Key columns, comma-separated (default: event_id,ts; with --within-watermark: event_id).
    #[arg(long)]
    keys: Option<String>,
    /// Then count the unique rows per window of this length (`n = count(*)`, `v = sum(v)`).
    #[arg(long)]
    count_window: Option<String>,
    /// Output mode: append or update.
    #[arg(long, default_value = "append")]
    mode: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mode: OutputMode = args.mode.parse()?;
    let session = Session::new();

    let contract = args.io.run_contract_if_given("dedup", mode, |input| {
        let events = common::json_source(&session, input, common::dedup_schema())?;
        let result = common::dedup(events, args.watermark.as_deref(), args.within_watermark, args.keys.as_deref())?;
        match &args.count_window {
            Some(w) => common::window_counts(result, w),
            None => Ok(result),
        }
    })?;
    if contract {
        return Ok(());
    }
    walk_through(&session)
}

struct Totals {
    batches: usize,
    rows_in: u64,
    rows_out: u64,
    duplicates: i64,
    late: u64,
    state_max: u64,
    state_last: u64,
}

fn totals(progress: &[StreamingQueryProgress]) -> Totals {
    let ops = || progress.iter().flat_map(|p| &p.state_operators);
    Totals {
        batches: progress.len(),
        rows_in: progress.iter().map(|p| p.num_input_rows).sum(),
        rows_out: progress.iter().map(|p| p.sink.num_output_rows).sum(),
        duplicates: ops().filter_map(|s| s.custom_metrics.get("numDroppedDuplicateRows")).sum(),
        late: ops().map(|s| s.num_rows_dropped_by_watermark).sum(),
        state_max: ops().map(|s| s.num_rows_total).max().unwrap_or(0),
        state_last: progress.last().and_then(|p| p.state_operators.first()).map(|s| s.num_rows_total).unwrap_or(0),
    }
}

fn run(session: &Session, input: &Path, base: &Path, within: bool) -> anyhow::Result<Totals> {
    let name = if within { "within" } else { "plain" };
    let (out, ck) = (base.join(format!("{name}-output")), base.join(format!("{name}-checkpoint")));
    common::remove_dirs(&[&out, &ck])?;
    let edits = common::json_source(session, input, common::wiki_schema())?.with_watermark("time", "10 minutes")?;
    let firsts = if within {
        edits.drop_duplicates_within_watermark(["user", "page"])?
    } else {
        edits.drop_duplicates(["user", "page"])?
    };
    let progress = common::run_contract(firsts, OutputMode::Append, &out, &ck, ProgressDisplay::Off)?;
    Ok(totals(&progress))
}

fn walk_through(session: &Session) -> anyhow::Result<()> {
    println!("== dedup: the first edit of each burst of edits by one user on one page ==\n");
    let (base, input, files) = common::wiki::walkthrough_input("dedup")?;
    println!("Step 1. Split {} into {files} JSON lines files of 2,000 edits.", common::wiki::bundled().display());

    println!(
        "\nStep 2. with_watermark(\"time\", \"10 minutes\").drop_duplicates_within_watermark([\"user\", \"page\"]):\n        \
         a (user, page) pair is remembered until the watermark passes its first edit + 10 minutes;\n        \
         its edits meanwhile are dropped as repeats, later ones start a new burst."
    );
    let w = run(session, &input, &base, true)?;
    println!("        micro-batches            {} (the last one without data: it only evicts)", w.batches);
    println!("        edits in                 {}", w.rows_in);
    println!("        first edits of bursts    {}", w.rows_out);
    println!("        repeats dropped          {}", w.duplicates);
    println!("        late edits dropped       {} (at or before the previous batch's watermark)", w.late);
    println!("        state: at most {} pairs, {} at the end", w.state_max, w.state_last);

    println!("\nStep 3. The same with drop_duplicates([\"user\", \"page\"]): the keys hold no event time,");
    println!("        so no pair ever leaves state (Spark's rule); each pair is emitted once per day.");
    let p = run(session, &input, &base, false)?;
    println!("        first edits of pairs     {}", p.rows_out);
    println!("        repeats dropped          {}", p.duplicates);
    println!("        late edits dropped       {}", p.late);
    println!("        state at the end         {} pairs", p.state_last);

    let bursts_again = w.rows_out.saturating_sub(p.rows_out);
    println!(
        "\nSo {bursts_again} times a user came back to a page more than 10 minutes (of watermark) after a burst began,\n\
         and the bounded state held at most {} pairs where the unbounded one ended with {}.",
        w.state_max, p.state_last
    );
    println!("Output: {}/within-output/batch-<id>.jsonl", base.display());
    Ok(())
}
