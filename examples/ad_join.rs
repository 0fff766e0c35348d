//! # ad_join: attribute ad clicks to impressions with a stream-stream join
//!
//! The oracle job `ad_join`: impressions (`ad_id, impression_time, campaign`, watermark 2
//! hours) joined with clicks (`click_ad_id, click_time, cost`, watermark 3 hours) on the ad
//! and `click_time` within `[impression_time, impression_time + 1 hour]`. Both streams are
//! buffered in the state store; the watermarks and the time range bound that state, and in
//! an outer join an impression nobody clicked is emitted with nulls once the watermark
//! guarantees no click can still come.
//!
//! ```text
//! cargo run --release --example ad_join -- --input DIR --output DIR --checkpoint DIR \
//!     --how leftOuter --mode append      # DIR/impressions, DIR/clicks
//! ```
//! With no `--input` it generates a day of impressions and clicks and explains each step.

#[path = "common/mod.rs"]
mod common;

use std::io::Write;
use std::path::Path;

use clap::Parser;
use sluice::prelude::*;
use sluice::StreamJoinType;

#[derive(Parser, Debug)]
#[command(about = "Impressions joined with clicks (Spark's stream-stream join)")]
struct Args {
    #[command(flatten)]
    io: common::IoArgs,
    /// inner, leftOuter, rightOuter, fullOuter or leftSemi.
    #[arg(long, default_value = "inner")]
    how: String,
    /// Output mode (joins support append).
    #[arg(long, default_value = "append")]
    mode: String,
    /// Watermark delay on impression_time.
    #[arg(long, default_value = "2 hours")]
    impression_watermark: String,
    /// Watermark delay on click_time.
    #[arg(long, default_value = "3 hours")]
    click_watermark: String,
    /// Longest time from impression to click.
    #[arg(long, default_value = "1 hour")]
    max_gap: String,
}

/// Writes `files` JSON lines files per stream: 40 impressions per file, 2 minutes apart
/// per ad; 40% of them clicked 0-70 minutes later (some clicks too late to count).
fn generate(dir: &Path, files: usize) -> anyhow::Result<()> {
    let (imp_dir, click_dir) = (dir.join("impressions"), dir.join("clicks"));
    std::fs::create_dir_all(&imp_dir)?;
    std::fs::create_dir_all(&click_dir)?;
    let base = chrono::DateTime::parse_from_rfc3339("2024-03-01T09:00:00Z")?.with_timezone(&chrono::Utc);
    let mut x: u64 = 42;
    let mut next = move || {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        x >> 33
    };
    for f in 0..files {
        let mut imp = std::fs::File::create(imp_dir.join(format!("part-{f:05}.json")))?;
        let mut clk = std::fs::File::create(click_dir.join(format!("part-{f:05}.json")))?;
        for i in 0..40 {
            let n = f * 40 + i;
            let t = base + chrono::Duration::seconds(n as i64 * 75);
            writeln!(imp, r#"{{"ad_id": "ad{n:05}", "impression_time": "{}", "campaign": "c{}"}}"#, t.to_rfc3339(), next() % 6)?;
            if next() % 10 < 4 {
                let c = t + chrono::Duration::seconds((next() % 4200) as i64);
                writeln!(clk, r#"{{"click_ad_id": "ad{n:05}", "click_time": "{}", "cost": {:.2}}}"#, c.to_rfc3339(), (next() % 300) as f64 / 100.0)?;
            }
        }
    }
    for sub in [&imp_dir, &click_dir] {
        let mut names: Vec<_> = std::fs::read_dir(sub)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
        names.sort();
        common::set_mtimes_in_order(&names)?;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let narrate = args.io.input.is_none();
    let work = std::env::temp_dir().join(format!("sluice-ad-join-{}", std::process::id()));
    let input = match &args.io.input {
        Some(i) => i.clone(),
        None => {
            let dir = work.join("input");
            generate(&dir, 12)?;
            println!("Step 1. Generated 12 files of impressions and 12 of clicks (40% clicked) in {}", dir.display());
            dir
        }
    };
    let output = args.io.output.clone().unwrap_or_else(|| work.join("output"));
    let checkpoint = args.io.checkpoint.clone().unwrap_or_else(|| work.join("checkpoint"));
    let how: StreamJoinType = args.how.parse()?;
    let mode: OutputMode = args.mode.parse()?;
    let session = Session::new();
    let impressions = common::json_source(&session, &input.join("impressions"), common::impressions_schema())?;
    let clicks = common::json_source(&session, &input.join("clicks"), common::clicks_schema())?;
    let joined = common::ad_join(impressions, clicks, how, &args.impression_watermark, &args.click_watermark, &args.max_gap)?;
    if narrate {
        println!(
            "Step 2. {how} join on ad id, click within {} of the impression; watermarks {} / {}. Output columns: {:?}",
            args.max_gap,
            args.impression_watermark,
            args.click_watermark,
            joined.schema()?.iter_names().collect::<Vec<_>>()
        );
    }
    let display = if narrate { ProgressDisplay::Lines } else { ProgressDisplay::Off };
    let progress = common::run_contract(joined, mode, &output, &checkpoint, display)?;
    if narrate {
        let rows: u64 = progress.iter().map(|p| p.sink.num_output_rows).sum();
        println!("Step 3. {} micro-batches wrote {rows} rows to {}", progress.len(), output.display());
        for p in &progress {
            let s = &p.state_operators[0];
            println!(
                "  batch {:>2}: {:>3} rows in, {:>3} out, state: {} impressions + {} clicks, evicted {} / {}",
                p.batch_id,
                p.num_input_rows,
                p.sink.num_output_rows,
                s.custom_metrics.get("leftStateRows").unwrap_or(&0),
                s.custom_metrics.get("rightStateRows").unwrap_or(&0),
                s.custom_metrics.get("leftRowsEvicted").unwrap_or(&0),
                s.custom_metrics.get("rightRowsEvicted").unwrap_or(&0)
            );
        }
        println!("The state stays small: rows leave it as soon as the watermark rules out a match.");
    }
    Ok(())
}
