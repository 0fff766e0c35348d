//! # sensor_stats: the sensor examples of "Learning Spark" (chapter 8), on generated readings
//!
//! Readings `sensorId string, eventTime timestamp, value double, errorCode string` (the
//! oracle's `sensors` schema) go through the book's three aggregations:
//!
//! 1. `sensorReadings.groupBy().count()`: a global count, complete mode;
//! 2. `groupBy("sensorId").agg(count("*"), mean("value"), stddev("value"),
//!    collect_set("errorCode"), approx_count_distinct("errorCode"))`, update mode;
//! 3. `withWatermark("eventTime", "2 minutes").groupBy(window("eventTime", "5 minutes"),
//!    "sensorId").agg(...)` with a HAVING, append mode: each window once, when final.
//!
//! ```text
//! cargo run --release --example sensor_stats                  # generated readings
//! cargo run --release --example sensor_stats -- --input DIR   # a folder of JSON lines files
//! ```
//! With no `--input` it writes 8 files of 250 readings of 6 sensors (some late, some
//! without a value, error codes E1..E7 on about one reading in six) and narrates.

#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use clap::Parser;
use sluice::prelude::*;

#[derive(Parser, Debug)]
#[command(about = "The sensor aggregations of Learning Spark's chapter 8: global count, per-sensor stats, windows")]
struct Args {
    /// A folder of JSON lines files of readings (default: generated).
    #[arg(long)]
    input: Option<PathBuf>,
}

fn schema() -> Schema {
    common::schema(&[
        ("sensorId", DataType::String),
        ("eventTime", common::ts()),
        ("value", DataType::Float64),
        ("errorCode", DataType::String),
    ])
}

/// 8 files x 250 readings of sensors s0..s5, event time advancing ~1.2 s per reading with up
/// to 3 minutes of disorder; values around 20 per sensor; 1 in 6 has an error code.
fn generate(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut seed: u64 = 0x5e45;
    let mut next = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) as f64 / (1u64 << 31) as f64
    };
    let start = chrono::DateTime::parse_from_rfc3339("2024-03-01T08:00:00Z")?.timestamp_millis();
    let mut paths = Vec::new();
    for f in 0..8 {
        let mut text = String::new();
        for i in 0..250 {
            let n = f * 250 + i;
            let sensor = (next() * 6.0) as usize;
            let t = start + n as i64 * 1200 - (next() * 180_000.0) as i64;
            let time = chrono::DateTime::from_timestamp_millis(t).map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
            let value = if next() < 0.03 { "null".to_string() } else { format!("{:.3}", 15.0 + sensor as f64 + next() * 10.0) };
            let code = if next() < 0.17 { format!("\"E{}\"", 1 + (next() * 7.0) as usize) } else { "null".into() };
            text += &format!(
                "{{\"sensorId\": \"s{sensor}\", \"eventTime\": \"{}\", \"value\": {value}, \"errorCode\": {code}}}\n",
                time.unwrap_or_default()
            );
        }
        let path = dir.join(format!("part-{f:05}.json"));
        std::fs::write(&path, text)?;
        paths.push(path);
    }
    common::set_mtimes_in_order(&paths)
}

/// Runs `df` in `mode` over all input with AvailableNow; returns the last batch's rows
/// (complete mode: the whole result) and every batch's rows.
fn run(df: StreamingDataFrame, mode: OutputMode, ck: &Path) -> anyhow::Result<(usize, DataFrame)> {
    let table = sluice::connectors::MemoryTable::new();
    let q = df
        .write_stream()
        .output_mode(mode)
        .trigger(Trigger::AvailableNow)
        .checkpoint_location(ck)
        .progress(ProgressDisplay::Off)
        .sink(Box::new(table.sink()))
        .start()?;
    q.await_termination()?;
    let rows = table.to_df()?.unwrap_or_default();
    Ok((q.recent_progress().len(), rows))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let work = std::env::temp_dir().join(format!("sluice-sensor-stats-{}", std::process::id()));
    let input = match args.input {
        Some(i) => i,
        None => {
            let dir = work.join("input");
            generate(&dir)?;
            println!("Generated 8 JSON lines files of 250 sensor readings in {}", dir.display());
            dir
        }
    };
    let session = Session::new();
    let readings = || common::json_source(&session, &input, schema());

    // 1. The global count, complete mode: one row, the whole result every batch.
    let (batches, counts) = run(readings()?.agg([len().alias("count")]), OutputMode::Complete, &work.join("ck1"))?;
    println!("\n1. sensorReadings.groupBy().count(), complete mode, {batches} batches; the last batch's result:\n{}", counts.tail(Some(1)));

    // 2. Per-sensor statistics, update mode: each batch emits the sensors it changed.
    let stats = readings()?
        .group_by([col("sensorId")])
        .agg([
            len().alias("readings"),
            col("value").mean().alias("baselineValue"),
            stddev(col("value")).alias("sd"),
            collect_set(col("errorCode")).alias("allErrorCodes"),
            approx_count_distinct(col("errorCode"), 0.05)?.alias("errorKinds"),
        ])
        .with_columns([col("allErrorCodes").list().sort(SortOptions::default())]);
    let (batches, updates) = run(stats, OutputMode::Update, &work.join("ck2"))?;
    let latest = updates.sort(["readings"], SortMultipleOptions::default().with_order_descending(true))?
        .unique_stable(Some(&["sensorId".to_string()]), UniqueKeepStrategy::First, None)?
        .sort(["sensorId"], SortMultipleOptions::default())?;
    println!("\n2. groupBy(sensorId).agg(count, mean, stddev, collect_set, approx_count_distinct), update mode: {} updated rows in {batches} batches; each sensor's latest:\n{latest}", updates.height());

    // 3. Windows with a watermark and a HAVING, append mode: each window once, when final.
    let windows = readings()?
        .with_watermark("eventTime", "2 minutes")?
        .group_by([window(col("eventTime"), "5 minutes", None, None)?, col("sensorId")])
        .agg([
            len().alias("readings"),
            col("value").mean().alias("avgValue"),
            col("value").max().alias("maxValue"),
            count_if(col("errorCode").is_not_null()).alias("errors"),
        ])
        .filter(col("readings").gt_eq(lit(5)));
    let (batches, final_windows) = run(windows, OutputMode::Append, &work.join("ck3"))?;
    println!(
        "\n3. 5-minute windows per sensor (watermark 2 minutes, HAVING readings >= 5), append mode: {} final windows in {batches} batches; the first ones:\n{}",
        final_windows.height(),
        final_windows.head(Some(6))
    );
    println!("\nState per group: count 8 B, mean 8+8 B (sum, count), stddev 24 B (n, mean, M2), collect_set the distinct values, approx_count_distinct a HyperLogLog++ sketch (see the README's aggregation table).");
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
