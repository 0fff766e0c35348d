//! Benchmark of the `ad_join` query (impressions joined with clicks on the ad id and
//! `click_time BETWEEN impression_time AND impression_time + 1 hour`; impression watermark
//! 2 hours, click watermark 3 hours; append mode):
//!
//! 1. throughput of the inner join and, once, the left outer join over 1,000,000 generated
//!    impressions and their clicks (40% clicked, 0-60 minutes after the impression), 20
//!    JSON lines files per stream (`impressions/`, `clicks/`), `maxFilesPerTrigger` 1 per
//!    source, `AvailableNow`, a row-counting `foreach_batch` sink, a local checkpoint
//!    folder;
//! 2. per-batch latency (p50 / p99), peak state rows and bytes (`stateOperators[0]`
//!    `numRowsTotal` and `memoryUsedBytes`, maxima over the batches) and bytes per state
//!    row (at the peak of `memoryUsedBytes`);
//! 3. PySpark 3.5 `local[2]` on the same files (`benches/pyspark_ad_join.py`), when
//!    `python3 -c "import pyspark"` works: the inner join with each
//!    `spark.sql.shuffle.partitions` value, and the left outer join with the last one.
//!
//! Per-batch latency is the time between the sink calls of consecutive batches (one full
//! cycle: commit of the previous batch, planning, write-ahead log, read, execution, sink),
//! as in `benches/windowed_agg.rs`.
//!
//! Data: impression `i` has the unique ad id `ad{i:07}` (so each click matches exactly one
//! impression), an event time advancing 1 s per impression with up to 2 s of disorder
//! (whole milliseconds), and one of 50 campaigns. Click file `f` holds the clicks of the
//! impressions of impression file `f`, in click-time order.
//!
//! `nice -n 19 cargo bench --bench ad_join`. Environment: `SLUICE_BENCH_ROWS` (impressions,
//! default 1000000), `SLUICE_BENCH_SKIP_PYSPARK=1`, `SLUICE_BENCH_SPARK_PARTITIONS`
//! (default `200,2`).

#[path = "../examples/common/mod.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use sluice::prelude::*;
use sluice::{StreamJoinType, StreamingQueryProgress};
use support::{fmt_dur, loadavg, percentile, phases, pyspark_available, python_results, run_available_now, Rng};

const FILES: usize = 20;
const CAMPAIGNS: u64 = 50;
/// Share of impressions clicked, in percent.
const CLICKED_PCT: u64 = 40;
/// 2024-03-01T00:00:00Z in milliseconds.
const START_MS: i64 = 1_709_251_200_000;

// ---------------------------------------------------------------------------------------
// Data

struct Click {
    impression: usize,
    time_ms: i64,
    cost_cents: u64,
}

/// Impressions (time, campaign) by index, and clicks grouped by impression file.
struct Data {
    imp_ms: Vec<i64>,
    campaign: Vec<u8>,
    clicks: Vec<Vec<Click>>,
}

impl Data {
    fn clicks(&self) -> usize {
        self.clicks.iter().map(Vec::len).sum()
    }
}

fn generate(n: usize, seed: u64) -> Data {
    let mut rng = Rng(seed);
    let per_file = n.div_ceil(FILES);
    let mut d = Data { imp_ms: Vec::with_capacity(n), campaign: Vec::with_capacity(n), clicks: Vec::new() };
    for i in 0..n {
        if i % per_file == 0 {
            d.clicks.push(Vec::new());
        }
        let t = START_MS + (i as i64 * 1000 - rng.below(2001) as i64).max(0);
        d.imp_ms.push(t);
        d.campaign.push(rng.below(CAMPAIGNS) as u8);
        if rng.below(100) < CLICKED_PCT {
            let c = Click { impression: i, time_ms: t + rng.below(3_600_001) as i64, cost_cents: rng.below(300) };
            d.clicks.last_mut().expect("a click file").push(c);
        }
    }
    for f in &mut d.clicks {
        f.sort_by_key(|c| (c.time_ms, c.impression));
    }
    d
}

fn rfc3339(ms: i64) -> anyhow::Result<String> {
    let t = chrono::DateTime::from_timestamp_millis(ms).context("timestamp")?;
    Ok(t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

/// `dir/impressions/part-NNNNN.json` and `dir/clicks/part-NNNNN.json`, `FILES` each.
fn write_json_files(dir: &Path, d: &Data) -> anyhow::Result<()> {
    let (imp_dir, click_dir) = (dir.join("impressions"), dir.join("clicks"));
    std::fs::create_dir_all(&imp_dir)?;
    std::fs::create_dir_all(&click_dir)?;
    let n = d.imp_ms.len();
    let per_file = n.div_ceil(FILES);
    let (mut imp_paths, mut click_paths) = (Vec::new(), Vec::new());
    for (f, start) in (0..n).step_by(per_file).enumerate() {
        let path = imp_dir.join(format!("part-{f:05}.json"));
        let mut w = std::io::BufWriter::new(std::fs::File::create(&path)?);
        for i in start..(start + per_file).min(n) {
            writeln!(
                w,
                "{{\"ad_id\":\"ad{i:07}\",\"impression_time\":\"{}\",\"campaign\":\"c{:02}\"}}",
                rfc3339(d.imp_ms[i])?,
                d.campaign[i]
            )?;
        }
        w.flush()?;
        imp_paths.push(path);

        let path = click_dir.join(format!("part-{f:05}.json"));
        let mut w = std::io::BufWriter::new(std::fs::File::create(&path)?);
        for c in &d.clicks[f] {
            writeln!(
                w,
                "{{\"click_ad_id\":\"ad{:07}\",\"click_time\":\"{}\",\"cost\":{}.{:02}}}",
                c.impression,
                rfc3339(c.time_ms)?,
                c.cost_cents / 100,
                c.cost_cents % 100
            )?;
        }
        w.flush()?;
        click_paths.push(path);
    }
    common::set_mtimes_in_order(&imp_paths)?;
    common::set_mtimes_in_order(&click_paths)
}

// ---------------------------------------------------------------------------------------
// Measures

struct Measure {
    case: String,
    rows: u64,
    batches: usize,
    data_batches: usize,
    wall: Duration,
    latencies: Vec<Duration>,
    peak_state_rows: u64,
    peak_state_bytes: u64,
    bytes_per_row: f64,
    phases: BTreeMap<String, f64>,
    out_rows: u64,
    spark: Vec<serde_json::Value>,
}

/// Max numRowsTotal, max memoryUsedBytes, and bytes per row at the peak of the bytes.
fn state_peak(progress: &[StreamingQueryProgress]) -> (u64, u64, f64) {
    let ops: Vec<_> = progress.iter().filter_map(|p| p.state_operators.first()).collect();
    let rows = ops.iter().map(|s| s.num_rows_total).max().unwrap_or(0);
    let bytes = ops.iter().map(|s| s.memory_used_bytes).max().unwrap_or(0);
    let per_row = ops
        .iter()
        .filter(|s| s.num_rows_total > 0)
        .max_by_key(|s| s.memory_used_bytes)
        .map_or(0.0, |s| s.memory_used_bytes as f64 / s.num_rows_total as f64);
    (rows, bytes, per_row)
}

/// One run of the query over `input/impressions` and `input/clicks`.
fn run(how: StreamJoinType, input: &Path, work: &Path) -> anyhow::Result<Measure> {
    let session = Session::new();
    let impressions = common::json_source(&session, &input.join("impressions"), common::impressions_schema())?;
    let clicks = common::json_source(&session, &input.join("clicks"), common::clicks_schema())?;
    let df = common::ad_join(impressions, clicks, how, "2 hours", "3 hours", "1 hour")?;
    let ck = work.join(format!("ck-{how:?}"));
    let (wall, progress, log) = run_available_now(df, OutputMode::Append, &ck)?;
    let (peak_state_rows, peak_state_bytes, bytes_per_row) = state_peak(&progress);
    Ok(Measure {
        case: format!("{how:?}"),
        rows: progress.iter().map(|p| p.num_input_rows).sum(),
        batches: progress.len(),
        data_batches: progress.iter().filter(|p| p.num_input_rows > 0).count(),
        wall,
        latencies: log.latencies(&progress),
        peak_state_rows,
        peak_state_bytes,
        bytes_per_row,
        phases: phases(&progress),
        out_rows: log.out_rows.load(Ordering::Relaxed),
        spark: Vec::new(),
    })
}

// ---------------------------------------------------------------------------------------
// PySpark

/// Runs the PySpark script on the same files; one JSON value per run.
fn run_pyspark(input: &Path, runs: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/pyspark_ad_join.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg("--input")
        .arg(input)
        .arg("--runs")
        .arg(runs)
        .output()
        .context("running python3")?;
    python_results(&script, &out)
}

// ---------------------------------------------------------------------------------------

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M", r / 1e6)
    } else {
        format!("{:.1} k", r / 1e3)
    }
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; nothing to parse.
    let total: usize = std::env::var("SLUICE_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let work = tempfile::Builder::new().prefix("sluice-bench-ad-join-").tempdir()?;

    let t = Instant::now();
    let data = generate(total, 42);
    let input = work.path().join("input");
    write_json_files(&input, &data)?;
    let dir_bytes = |d: &Path| -> u64 {
        std::fs::read_dir(d).map(|r| r.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0)
    };
    println!(
        "data: {total} impressions + {} clicks, {FILES} files per stream: JSON {:.1} + {:.1} MB ({:.1} s to generate); load avg {}",
        data.clicks(),
        dir_bytes(&input.join("impressions")) as f64 / 1e6,
        dir_bytes(&input.join("clicks")) as f64 / 1e6,
        t.elapsed().as_secs_f64(),
        loadavg()
    );

    let mut results = vec![run(StreamJoinType::Inner, &input, work.path())?, run(StreamJoinType::LeftOuter, &input, work.path())?];

    // PySpark on the same files: inner with each partition count, leftOuter with the last.
    let partitions = std::env::var("SLUICE_BENCH_SPARK_PARTITIONS").unwrap_or_else(|_| "200,2".into());
    let parts: Vec<&str> = partitions.split(',').filter(|p| !p.is_empty()).collect();
    let mut runs: Vec<String> = parts.iter().map(|p| format!("inner:{p}")).collect();
    if let Some(last) = parts.last() {
        runs.push(format!("leftOuter:{last}"));
    }
    let mut spark_notes = Vec::new();
    if std::env::var("SLUICE_BENCH_SKIP_PYSPARK").is_ok_and(|v| v == "1") {
        spark_notes.push("PySpark skipped (SLUICE_BENCH_SKIP_PYSPARK=1)".to_string());
    } else if !pyspark_available() {
        spark_notes.push("PySpark skipped: `python3 -c \"import pyspark\"` fails (pip install 'pyspark==3.5.*')".into());
    } else {
        match run_pyspark(&input, &runs.join(",")) {
            Ok(spark) => {
                for m in &mut results {
                    let how = if m.case == "Inner" { "inner" } else { "leftOuter" };
                    m.spark = spark.iter().filter(|r| r["how"] == how).cloned().collect();
                }
                for r in &spark {
                    spark_notes.push(format!(
                        "PySpark {} shuffle.partitions={}: {} rows ({} out) in {:.2} s = {:.0} rows/s, {} batches, \
                         triggerExecution p50 {} ms p99 {} ms, state peak {} rows / {:.1} MB ({:.0} B/row)",
                        r["how"].as_str().unwrap_or("?"),
                        r["partitions"],
                        r["rows"],
                        r["out_rows"],
                        r["wall_s"].as_f64().unwrap_or(0.0),
                        r["rows_per_s"].as_f64().unwrap_or(0.0),
                        r["batches"],
                        r["p50_ms"],
                        r["p99_ms"],
                        r["state_rows_peak"],
                        r["state_bytes_peak"].as_f64().unwrap_or(0.0) / 1e6,
                        r["state_bytes_per_row"].as_f64().unwrap_or(0.0),
                    ));
                }
            }
            Err(e) => spark_notes.push(format!("PySpark run failed: {e:#}")),
        }
    }

    println!();
    println!(
        "{:<10} {:>9} {:>9} {:>8} {:>10} {:>10} {:>10} {:>10} {:>9} {:>6}  {:<22} speed-up",
        "case",
        "rows in",
        "rows out",
        "batches",
        "rows/s",
        "p50",
        "p99",
        "state rows",
        "state MB",
        "B/row",
        "PySpark rows/s (parts)",
    );
    for m in &results {
        let ours = m.rows as f64 / m.wall.as_secs_f64();
        let rates: Vec<String> = m
            .spark
            .iter()
            .map(|r| format!("{} ({})", fmt_rate(r["rows_per_s"].as_f64().unwrap_or(0.0)), r["partitions"]))
            .collect();
        let ratios: Vec<String> =
            m.spark.iter().map(|r| format!("{:.1}x", ours / r["rows_per_s"].as_f64().unwrap_or(f64::NAN))).collect();
        println!(
            "{:<10} {:>9} {:>9} {:>8} {:>10} {:>10} {:>10} {:>10} {:>9.1} {:>6.0}  {:<22} {}",
            m.case,
            m.rows,
            m.out_rows,
            m.batches,
            fmt_rate(ours),
            fmt_dur(percentile(&m.latencies, 0.50)),
            fmt_dur(percentile(&m.latencies, 0.99)),
            m.peak_state_rows,
            m.peak_state_bytes as f64 / 1e6,
            m.bytes_per_row,
            if rates.is_empty() { "-".into() } else { rates.join(" / ") },
            if ratios.is_empty() { "-".into() } else { ratios.join(" / ") },
        );
    }
    println!();
    for m in &results {
        let ph: Vec<String> = m.phases.iter().map(|(k, v)| format!("{k} {v:.1}")).collect();
        println!(
            "{}: wall {:.3} s, {} batches ({} with data), {} output rows; mean ms per data batch: {}",
            m.case,
            m.wall.as_secs_f64(),
            m.batches,
            m.data_batches,
            m.out_rows,
            ph.join(", ")
        );
    }
    for n in &spark_notes {
        println!("{n}");
    }
    println!("load avg at end: {}", loadavg());
    Ok(())
}
