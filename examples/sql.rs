//! # sql: streaming Spark SQL over views of the input
//!
//! The oracle job `sql`: Spark SQL (`session.sql(query)`) over views made from what the
//! input folder holds: `edits/` the stream `edits` (Wikipedia edits: `time, channel, page,
//! user, isRobot, isNew, delta, added, deleted`), `sensors/` the stream `sensors`
//! (`sensorId, eventTime, value, errorCode`), `channels.csv` the static view `channels`
//! (`channel, language, project`); with `--watermark`, each stream view is watermarked on
//! its time column first.
//!
//! ```text
//! cargo run --release --example sql                     # the walk-through on the bundled edits
//! cargo run --release --example sql -- --input DIR --output DIR --checkpoint DIR \
//!     --query "SELECT window(time, '10 minutes') AS window, channel, count(*) AS edits \
//!              FROM edits GROUP BY window(time, '10 minutes'), channel" \
//!     --watermark "1 minute" --mode append                # the oracle contract
//! ```

#[path = "common/mod.rs"]
mod common;

use clap::Parser;
use sluice::prelude::*;

/// The main wiki_edits job in SQL.
const WIKI_EDITS_SQL: &str = "SELECT window(time, '10 minutes') AS window, channel, count(*) AS edits, \
     sum(added) AS added, sum(deleted) AS deleted, sum(CAST(isRobot AS BIGINT)) AS robot_edits, \
     max(delta) AS max_delta FROM edits GROUP BY window(time, '10 minutes'), channel";

#[derive(Parser, Debug)]
#[command(about = "Streaming Spark SQL over views of the input (the oracle's sql job)")]
struct Args {
    #[command(flatten)]
    io: common::IoArgs,
    /// The query (Spark SQL).
    #[arg(long, default_value = WIKI_EDITS_SQL)]
    query: String,
    /// Watermark delay on each stream view's time column.
    #[arg(long)]
    watermark: Option<String>,
    /// Output mode: append, update or complete.
    #[arg(long, default_value = "append")]
    mode: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mode: OutputMode = args.mode.parse()?;
    let session = Session::new();

    if args.io.run_contract_if_given("sql", mode, |input| common::sql_job(&session, input, &args.query, args.watermark.as_deref()))? {
        return Ok(());
    }

    println!("== sql: the wiki_edits job in Spark SQL ==\n");
    let (base, input, files) = common::wiki::walkthrough_input("sql")?;
    let (checkpoint, output) = (base.join("checkpoint"), base.join("output"));
    common::remove_dirs(&[&checkpoint, &output])?;
    // walkthrough_input writes the files into input/; the views want input/edits/.
    let edits_dir = base.join("views").join("edits");
    common::remove_dirs(&[&base.join("views")])?;
    std::fs::create_dir_all(edits_dir.parent().expect("a parent"))?;
    std::fs::rename(&input, &edits_dir)?;
    println!("Step 1. {files} JSON lines files of 2,000 real edits in {}", edits_dir.display());
    let watermark = args.watermark.as_deref().or(Some("1 minute"));
    let query = common::sql_job(&session, &base.join("views"), &args.query, watermark)?;
    println!("Step 2. The query, planned into the same logical plan as the DataFrame API:\n  {}\n", args.query);
    let progress = common::run_contract(query, mode, &output, &checkpoint, ProgressDisplay::Lines)?;
    let rows: u64 = progress.iter().map(|p| p.sink.num_output_rows).sum();
    println!("\nStep 3. {} batches, {rows} rows in {}/batch-<id>.jsonl", progress.len(), output.display());
    Ok(())
}
