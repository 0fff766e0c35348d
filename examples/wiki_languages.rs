//! # wiki_languages: real wiki edits enriched with a channel table, per language
//!
//! The oracle job `wiki_languages`: the stream of Wikipedia edits (`time, channel, user,
//! added`) is joined with a static CSV table of channels (`channel, language, project`)
//! on every micro-batch (Spark's stream-static join), then counted per 10-minute window
//! and language with a 1-minute watermark.
//!
//! ```text
//! cargo run --release --example wiki_languages -- --input DIR --output DIR --checkpoint DIR \
//!     --how inner --window "10 minutes" --watermark "1 minute" --mode append
//! ```
//! `DIR/edits` holds the stream, `DIR/channels.csv` the table. With no `--input` it uses
//! the bundled real edits and a channel table derived from them.

#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::io::Write;

use clap::Parser;
use sluice::prelude::*;
use sluice::StreamJoinType;

#[derive(Parser, Debug)]
#[command(about = "Wiki edits joined with a static channel table (stream-static join)")]
struct Args {
    #[command(flatten)]
    io: common::IoArgs,
    /// inner or left.
    #[arg(long, default_value = "inner")]
    how: String,
    /// Window length; without it the joined rows themselves are written.
    #[arg(long)]
    window: Option<String>,
    /// Watermark delay on time.
    #[arg(long, default_value = "1 minute")]
    watermark: String,
    /// Output mode.
    #[arg(long, default_value = "append")]
    mode: String,
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    let narrate = args.io.input.is_none();
    let work = std::env::temp_dir().join(format!("sluice-wiki-languages-{}", std::process::id()));
    let input = match &args.io.input {
        Some(i) => i.clone(),
        None => {
            let dir = work.join("input");
            let n = common::wiki::split_bundled(&dir.join("edits"), 2500)?;
            // A channel table: "#xx.wikipedia" -> language "xx", project "wikipedia".
            let mut channels = BTreeSet::new();
            for e in std::fs::read_dir(dir.join("edits"))? {
                for line in std::fs::read_to_string(e?.path())?.lines() {
                    let v: serde_json::Value = serde_json::from_str(line)?;
                    if let Some(c) = v["channel"].as_str() {
                        channels.insert(c.to_string());
                    }
                }
            }
            let mut csv = std::fs::File::create(dir.join("channels.csv"))?;
            writeln!(csv, "channel,language,project")?;
            for c in &channels {
                let (lang, project) = c.trim_start_matches('#').split_once('.').unwrap_or((c, ""));
                writeln!(csv, "{c},{lang},{project}")?;
            }
            args.window.get_or_insert_with(|| "10 minutes".into());
            println!("Step 1. {n} files of real edits and a table of {} channels in {}", channels.len(), dir.display());
            dir
        }
    };
    let output = args.io.output.clone().unwrap_or_else(|| work.join("output"));
    let checkpoint = args.io.checkpoint.clone().unwrap_or_else(|| work.join("checkpoint"));
    let how: StreamJoinType = args.how.parse()?;
    let mode: OutputMode = args.mode.parse()?;
    let session = Session::new();
    let channels = common::read_channels(&input.join("channels.csv"))?;
    if narrate {
        println!("Step 2. The static table, read once:\n{}", channels.head(Some(5)));
    }
    let edits = common::json_source(&session, &input.join("edits"), common::edits_schema())?;
    let result = common::wiki_languages(edits, channels, how, args.window.as_deref(), &args.watermark)?;
    let display = if narrate { ProgressDisplay::Lines } else { ProgressDisplay::Off };
    let progress = common::run_contract(result, mode, &output, &checkpoint, display)?;
    if narrate {
        let mut per_language: std::collections::BTreeMap<String, i64> = Default::default();
        for p in &progress {
            let text = std::fs::read_to_string(output.join(format!("batch-{}.jsonl", p.batch_id))).unwrap_or_default();
            for line in text.lines() {
                let v: serde_json::Value = serde_json::from_str(line)?;
                *per_language.entry(v["language"].as_str().unwrap_or("?").to_string()).or_default() += v["edits"].as_i64().unwrap_or(0);
            }
        }
        let mut top: Vec<_> = per_language.into_iter().collect();
        top.sort_by_key(|(_, n)| -n);
        println!("Step 3. {} batches. Edits per language (top 8):", progress.len());
        for (lang, n) in top.into_iter().take(8) {
            println!("  {lang:<6} {n:>6}");
        }
    }
    Ok(())
}
