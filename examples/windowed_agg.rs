//! # windowed_agg: sensor readings per sliding window, with a watermark
//!
//! The oracle job `windowed_agg` (see `../shared/oracle/README.md`): readings
//! `sensor string, ts timestamp, v double` are grouped per `window(ts, window, slide)` and
//! sensor; each group gets `n = count(*)`, `nv = count(v)`, `s = sum(v)`, `avg`, `min`
//! and `max` of v.
//!
//! ```text
//! cargo run --release --example windowed_agg -- --input DIR --output DIR --checkpoint DIR \
//!     --window "10 minutes" --slide "5 minutes" --watermark "10 minutes" --mode append
//! ```
//! With no `--input`, it generates a small stream of readings and explains each step.

#[path = "common/mod.rs"]
mod common;

use std::path::PathBuf;

use clap::Parser;
use sluice::prelude::*;

#[derive(Parser, Debug)]
#[command(about = "Windowed aggregation of sensor readings (Spark's window + withWatermark)")]
struct Args {
    #[command(flatten)]
    io: common::IoArgs,
    /// Window length, a Spark interval string.
    #[arg(long, default_value = "10 minutes")]
    window: String,
    /// Slide (default: the window length, a tumbling window).
    #[arg(long)]
    slide: Option<String>,
    /// Watermark delay on `ts`; none when absent.
    #[arg(long)]
    watermark: Option<String>,
    /// Output mode: append, update or complete.
    #[arg(long, default_value = "append")]
    mode: String,
}

fn generate(dir: &std::path::Path) -> anyhow::Result<()> {
    // Six files of readings from two sensors, a little out of order, one of them late.
    std::fs::create_dir_all(dir)?;
    let rows = [
        ("a", "2024-01-01T00:01:00Z", 1.0),
        ("a", "2024-01-01T00:07:00Z", 2.0),
        ("b", "2024-01-01T00:12:00Z", 3.0),
        ("a", "2024-01-01T00:03:00Z", 4.0),
        ("a", "2024-01-01T00:31:00Z", 5.0),
        ("a", "2024-01-01T00:02:00Z", 6.0),
    ];
    let mut paths = Vec::new();
    for (i, (s, t, v)) in rows.iter().enumerate() {
        let path = dir.join(format!("part-{i:05}.json"));
        std::fs::write(&path, format!("{{\"sensor\": \"{s}\", \"ts\": \"{t}\", \"v\": {v}}}\n"))?;
        paths.push(path);
    }
    common::set_mtimes_in_order(&paths)
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    let narrate = args.io.input.is_none();
    let work = std::env::temp_dir().join(format!("sluice-windowed-agg-{}", std::process::id()));
    let input = match &args.io.input {
        Some(i) => i.clone(),
        None => {
            let dir = work.join("input");
            generate(&dir)?;
            args.watermark.get_or_insert_with(|| "10 minutes".into());
            args.slide.get_or_insert_with(|| "5 minutes".into());
            println!("Step 1. Generated 6 JSON lines files of sensor readings in {}", dir.display());
            dir
        }
    };
    let output = args.io.output.clone().unwrap_or_else(|| work.join("output"));
    let checkpoint = args.io.checkpoint.clone().unwrap_or_else(|| work.join("checkpoint"));
    let mode: OutputMode = args.mode.parse()?;

    let session = Session::new();
    let readings = common::json_source(&session, &input, common::sensor_schema())?;
    let result = common::windowed_agg(readings, &args.window, args.slide.as_deref(), args.watermark.as_deref())?;
    if narrate {
        println!(
            "Step 2. The query: window {} sliding every {}, watermark {}, {mode} mode. Output schema:\n{:?}",
            args.window,
            args.slide.as_deref().unwrap_or(&args.window),
            args.watermark.as_deref().unwrap_or("none"),
            result.schema()?
        );
    }
    let display = if narrate { ProgressDisplay::Lines } else { ProgressDisplay::Off };
    let progress = common::run_contract(result, mode, &output, &checkpoint, display)?;
    if narrate {
        println!("Step 3. Ran {} micro-batches; each wrote {}/batch-<id>.jsonl:", progress.len(), output.display());
        for p in &progress {
            let path = output.join(format!("batch-{}.jsonl", p.batch_id));
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            println!(
                "  batch {} (watermark {}): {} rows in, {} rows out",
                p.batch_id,
                p.event_time.get("watermark").map(String::as_str).unwrap_or("-"),
                p.num_input_rows,
                p.sink.num_output_rows
            );
            for line in text.lines() {
                println!("    {line}");
            }
        }
        println!(
            "Windows are emitted once, when the watermark passes their end; the reading at 00:02 in \
             the last file was still on time for the watermark of the batch before it."
        );
    }
    let _ = PathBuf::new();
    Ok(())
}
