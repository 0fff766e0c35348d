//! Benchmark of the `windowed_agg` query (window 10 minutes, slide 5 minutes, watermark
//! 10 minutes, append mode; per window and sensor `n`, `nv`, `s`, `avg`, `min`, `max`):
//!
//! 1. throughput over 2,000,000 generated rows in 20 JSON lines files and the same rows in
//!    20 Parquet files, `AvailableNow`, `maxFilesPerTrigger` 1, a row-counting
//!    `foreach_batch` sink, with a local checkpoint folder (fsync on);
//! 2. latency of 1,000-row batches from a `MemoryStream`, with a local checkpoint (fsync
//!    on) and with `Checkpoint::in_memory()`;
//! 3. state bytes per aggregation group (`memoryUsedBytes / numRowsTotal` at the peak),
//!    also of a statistical variant over the JSON files (per window and sensor `n`, `avg`,
//!    `stddev(v)` and `collect_set(cast(v / 10 as bigint))`): the moments' and the set's cost;
//! 4. PySpark 3.5 `local[2]` on the same files (`benches/pyspark_windowed_agg.py`), when
//!    `python3 -c "import pyspark"` works.
//!
//! Per-batch latency is measured here, not taken from the whole-millisecond progress
//! durations: batches run back to back and a batch's latency is the time between the sink
//! calls of consecutive batches (one full cycle: commit of the previous batch, planning,
//! write-ahead log, read, execution, sink). For the memory stream the sink of batch `n`
//! adds frame `n + 1`, so the engine always finds exactly one new frame and never idles.
//! The "e2e" case instead adds a frame to an idle query and waits for its progress report:
//! that includes the trigger loop's idle poll (10 ms).
//!
//! `nice -n 19 cargo bench --bench windowed_agg`. Environment: `SLUICE_BENCH_ROWS`
//! (default 2000000), `SLUICE_BENCH_MEM_BATCHES` (default 500), `SLUICE_BENCH_SKIP_PYSPARK=1`, `SLUICE_BENCH_SPARK_PARTITIONS`
//! (default `200,2`).

#[path = "../examples/common/mod.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sluice::checkpoint::Checkpoint;
use sluice::prelude::*;
use sluice::StreamingQueryProgress;
use support::{
    fmt_dur, loadavg, percentile, phases, pyspark_available, python_results, run_available_now, run_back_to_back, ProgressLog, Rng,
    SinkLog,
};

const SENSORS: usize = 1000;
const FILES: usize = 20;
const MEM_BATCH_ROWS: usize = 1000;
const E2E_BATCHES: usize = 100;
/// 2024-03-01T00:00:00Z in microseconds.
const START_US: i64 = 1_709_251_200_000_000;

// ---------------------------------------------------------------------------------------
// Data

/// Generated rows: random sensor of 1,000; event time advancing 10 ms per row with up to
/// 2 s of disorder (whole milliseconds); v in [-50, 50] with 3 decimals, 0.5 % nulls.
struct Rows {
    sensor: Vec<u32>,
    ts_us: Vec<i64>,
    v: Vec<Option<f64>>,
}

fn generate(n: usize, seed: u64) -> Rows {
    let mut rng = Rng(seed);
    let mut rows = Rows { sensor: Vec::with_capacity(n), ts_us: Vec::with_capacity(n), v: Vec::with_capacity(n) };
    for i in 0..n {
        rows.sensor.push(rng.below(SENSORS as u64) as u32);
        let jitter_ms = rng.below(2001) as i64;
        rows.ts_us.push(START_US + (i as i64 * 10 - jitter_ms).max(0) * 1000);
        rows.v.push(if rng.below(200) == 0 { None } else { Some(((rng.unit() * 100.0 - 50.0) * 1000.0).round() / 1000.0) });
    }
    rows
}

fn sensor_names() -> Vec<String> {
    (0..SENSORS).map(|i| format!("s{i:04}")).collect()
}

fn write_json_files(dir: &Path, rows: &Rows, names: &[String]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let per_file = rows.sensor.len().div_ceil(FILES);
    let mut paths = Vec::new();
    for (f, start) in (0..rows.sensor.len()).step_by(per_file).enumerate() {
        let end = (start + per_file).min(rows.sensor.len());
        let path = dir.join(format!("part-{f:05}.json"));
        let mut w = std::io::BufWriter::new(std::fs::File::create(&path)?);
        for i in start..end {
            let ts = chrono::DateTime::from_timestamp_micros(rows.ts_us[i]).context("timestamp")?;
            write!(w, "{{\"sensor\":\"{}\",\"ts\":\"{}\",\"v\":", names[rows.sensor[i] as usize], ts.format("%Y-%m-%dT%H:%M:%S%.3fZ"))?;
            match rows.v[i] {
                Some(v) => writeln!(w, "{v}}}")?,
                None => writeln!(w, "null}}")?,
            }
        }
        w.flush()?;
        paths.push(path);
    }
    common::set_mtimes_in_order(&paths)
}

fn write_parquet_files(dir: &Path, rows: &Rows, names: &[String]) -> anyhow::Result<()> {
    use arrow::array::{ArrayRef, Float64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType as A, Field as AField, Schema as ASchema, TimeUnit as ATimeUnit};
    use arrow::record_batch::RecordBatch;
    use parquet::arrow::ArrowWriter;
    use parquet::basic::Compression;
    use parquet::file::properties::WriterProperties;

    std::fs::create_dir_all(dir)?;
    // Timestamps adjusted to UTC, as Spark writes its `timestamp` type.
    let schema = Arc::new(ASchema::new(vec![
        AField::new("sensor", A::Utf8, true),
        AField::new("ts", A::Timestamp(ATimeUnit::Microsecond, Some("UTC".into())), true),
        AField::new("v", A::Float64, true),
    ]));
    let per_file = rows.sensor.len().div_ceil(FILES);
    let mut paths = Vec::new();
    for (f, start) in (0..rows.sensor.len()).step_by(per_file).enumerate() {
        let end = (start + per_file).min(rows.sensor.len());
        let sensor: ArrayRef =
            Arc::new(StringArray::from_iter_values(rows.sensor[start..end].iter().map(|s| names[*s as usize].as_str())));
        let ts: ArrayRef = Arc::new(TimestampMicrosecondArray::from(rows.ts_us[start..end].to_vec()).with_timezone("UTC"));
        let v: ArrayRef = Arc::new(Float64Array::from(rows.v[start..end].to_vec()));
        let batch = RecordBatch::try_new(schema.clone(), vec![sensor, ts, v])?;
        let path = dir.join(format!("part-{f:05}.parquet"));
        let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
        let mut w = ArrowWriter::try_new(std::fs::File::create(&path)?, schema.clone(), Some(props))?;
        w.write(&batch)?;
        w.close()?;
        paths.push(path);
    }
    common::set_mtimes_in_order(&paths)
}

/// Rows `start..end` as a frame of the sensor schema.
fn frame(rows: &Rows, names: &[String], start: usize, end: usize) -> anyhow::Result<DataFrame> {
    let sensor = Series::new(
        "sensor".into(),
        rows.sensor[start..end].iter().map(|s| names[*s as usize].as_str()).collect::<Vec<_>>(),
    );
    let ts = Series::new("ts".into(), rows.ts_us[start..end].to_vec()).cast(&common::ts())?;
    let v = Series::new("v".into(), rows.v[start..end].to_vec());
    Ok(DataFrame::new(end - start, vec![sensor.into_column(), ts.into_column(), v.into_column()])?)
}

// ---------------------------------------------------------------------------------------
// Measures

#[derive(Default)]
struct Measure {
    case: String,
    rows: u64,
    batches: usize,
    wall: Duration,
    /// Per-batch latencies, measured here.
    latencies: Vec<Duration>,
    /// Peak memoryUsedBytes / numRowsTotal of the first stateful operator, and that peak's rows.
    state_bytes_per_group: f64,
    state_rows_at_peak: u64,
    /// Mean ms per progress phase over the batches that read data.
    phases: BTreeMap<String, f64>,
    out_rows: u64,
    spark: Option<(String, String)>,
}

fn state_peak(progress: &[StreamingQueryProgress]) -> (f64, u64) {
    progress
        .iter()
        .filter_map(|p| p.state_operators.first())
        .filter(|s| s.num_rows_total > 0)
        .max_by_key(|s| s.memory_used_bytes)
        .map_or((0.0, 0), |s| (s.memory_used_bytes as f64 / s.num_rows_total as f64, s.num_rows_total))
}

/// The statistical variant of the query: per window and sensor `n`, `avg`, `stddev(v)`
/// and `collect_set(cast(v / 10 as bigint))`.
fn stats_query(src: StreamingDataFrame) -> anyhow::Result<StreamingDataFrame> {
    Ok(src
        .with_watermark("ts", "10 minutes")?
        .group_by([window(col("ts"), "10 minutes", Some("5 minutes"), None)?, col("sensor")])
        .agg([
            len().alias("n"),
            col("v").mean().alias("avg"),
            stddev(col("v")).alias("sd"),
            collect_set((col("v") / lit(10.0)).cast(DataType::Int64)).alias("deciles"),
        ]))
}

/// Case 1: the file source over `dir`, AvailableNow, one file per batch; `stats` runs the
/// statistical variant.
fn run_files(case: &str, format: &str, dir: &Path, work: &Path, stats: bool) -> anyhow::Result<Measure> {
    let session = Session::new();
    let src = session
        .read_stream()
        .format(format)
        .schema(common::sensor_schema())
        .option("maxFilesPerTrigger", 1)
        .load(dir)?;
    let df = if stats {
        stats_query(src)?
    } else {
        common::windowed_agg(src, "10 minutes", Some("5 minutes"), Some("10 minutes"))?
    };
    let ck = work.join(format!("ck-{format}-{stats}"));
    let (wall, progress, log) = run_available_now(df, OutputMode::Append, &ck)?;
    Ok(measure(case, wall, &progress, &log))
}

/// The figures of one run from its progress reports and sink log.
fn measure(case: &str, wall: Duration, progress: &[StreamingQueryProgress], log: &SinkLog) -> Measure {
    let (bpg, rows_at_peak) = state_peak(progress);
    Measure {
        case: case.into(),
        rows: progress.iter().map(|p| p.num_input_rows).sum(),
        batches: progress.len(),
        wall,
        latencies: log.latencies(progress),
        state_bytes_per_group: bpg,
        state_rows_at_peak: rows_at_peak,
        phases: phases(progress),
        out_rows: log.out_rows.load(Ordering::Relaxed),
        spark: None,
    }
}

/// Case 2: 1,000-row frames from a MemoryStream, back to back (the sink of batch n adds
/// frame n + 1).
fn run_memory(case: &str, frames: &[DataFrame], ckpt: Checkpoint) -> anyhow::Result<Measure> {
    let session = Session::new();
    let stream = sluice::connectors::MemoryStream::new(Arc::new(common::sensor_schema()));
    let df = common::windowed_agg(stream.to_df(&session), "10 minutes", Some("5 minutes"), Some("10 minutes"))?;
    let (wall, progress, log) = run_back_to_back(&session, df, &stream, frames, ckpt).with_context(|| case.to_string())?;
    Ok(measure(case, wall, &progress, &log))
}

/// Case 2b: add one frame to an idle query, time until its progress report appears.
fn run_memory_e2e(case: &str, frames: &[DataFrame], ckpt: Checkpoint) -> anyhow::Result<Measure> {
    let session = Session::new();
    let reports = ProgressLog::attach(&session);
    let stream = sluice::connectors::MemoryStream::new(Arc::new(common::sensor_schema()));
    let df = common::windowed_agg(stream.to_df(&session), "10 minutes", Some("5 minutes"), Some("10 minutes"))?;
    let log = SinkLog::default();
    let l = log.clone();
    let query = df
        .write_stream()
        .output_mode(OutputMode::Append)
        .checkpoint(ckpt)
        .progress(ProgressDisplay::Off)
        .foreach_batch(move |batch, id| {
            l.record(batch, id);
            Ok(())
        })
        .start()?;
    let mut latencies = Vec::new();
    let t0 = Instant::now();
    for f in frames {
        // Let a pending no-data batch run first, so that the next report is this frame's.
        query.process_all_available()?;
        let before = query.last_progress().map(|p| p.batch_id);
        let t = Instant::now();
        stream.add_data(f.clone())?;
        // No batch is pending, so the next report is this frame's batch (a no-data batch
        // may follow it before the listener wakes this thread: then the time is slightly
        // overstated). Reports reach the listener after the query published them.
        let reported = reports.wait_past(before, Duration::from_secs(60));
        anyhow::ensure!(query.is_active(), "query stopped: {:?}", query.exception());
        anyhow::ensure!(reported.is_some(), "no batch within 60 s of adding a frame");
        latencies.push(t.elapsed());
    }
    let wall = t0.elapsed();
    query.stop()?;
    let progress = reports.progress();
    let (bpg, rows_at_peak) = state_peak(&progress);
    Ok(Measure {
        case: case.into(),
        rows: progress.iter().map(|p| p.num_input_rows).sum(),
        batches: progress.len(),
        wall,
        latencies,
        state_bytes_per_group: bpg,
        state_rows_at_peak: rows_at_peak,
        phases: phases(&progress),
        out_rows: log.out_rows.load(Ordering::Relaxed),
        spark: None,
    })
}

// ---------------------------------------------------------------------------------------
// PySpark

/// Runs the PySpark script on the same files; one JSON value per run.
fn run_pyspark(json_dir: &Path, parquet_dir: &Path, partitions: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/pyspark_windowed_agg.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg("--json")
        .arg(json_dir)
        .arg("--parquet")
        .arg(parquet_dir)
        .arg("--stats")
        .arg(json_dir)
        .arg("--partitions")
        .arg(partitions)
        .output()
        .context("running python3")?;
    python_results(&script, &out)
}

// ---------------------------------------------------------------------------------------

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M", r / 1e6)
    } else {
        format!("{:.0} k", r / 1e3)
    }
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; nothing to parse.
    let total: usize = std::env::var("SLUICE_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000_000);
    let work = tempfile::Builder::new().prefix("sluice-bench-windowed-agg-").tempdir()?;
    let names = sensor_names();

    let t = Instant::now();
    let rows = generate(total, 42);
    let json_dir = work.path().join("json");
    let parquet_dir = work.path().join("parquet");
    write_json_files(&json_dir, &rows, &names)?;
    write_parquet_files(&parquet_dir, &rows, &names)?;
    let mem_batches: usize = std::env::var("SLUICE_BENCH_MEM_BATCHES").ok().and_then(|v| v.parse().ok()).unwrap_or(500);
    let mem_rows = generate(mem_batches * MEM_BATCH_ROWS, 7);
    let frames: Vec<DataFrame> = (0..mem_batches)
        .map(|b| frame(&mem_rows, &names, b * MEM_BATCH_ROWS, (b + 1) * MEM_BATCH_ROWS))
        .collect::<anyhow::Result<_>>()?;
    let dir_bytes = |d: &Path| -> u64 {
        std::fs::read_dir(d).map(|r| r.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0)
    };
    println!(
        "data: {total} rows, {SENSORS} sensors, {FILES} files: JSON {:.1} MB, Parquet {:.1} MB ({:.1} s to generate); load avg {}",
        dir_bytes(&json_dir) as f64 / 1e6,
        dir_bytes(&parquet_dir) as f64 / 1e6,
        t.elapsed().as_secs_f64(),
        loadavg()
    );

    let mut results = vec![
        run_files("json, 20 files, ckpt dir", "json", &json_dir, work.path(), false)?,
        run_files("parquet, 20 files, ckpt dir", "parquet", &parquet_dir, work.path(), false)?,
        run_files("json stats (stddev, collect_set)", "json", &json_dir, work.path(), true)?,
    ];
    let mut local = Checkpoint::local(work.path().join("ck-mem-local"))?;
    local.set_fsync(true);
    results.push(run_memory(&format!("memory {mem_batches}x1k, ckpt dir+fsync"), &frames, local)?);
    results.push(run_memory(&format!("memory {mem_batches}x1k, in-memory ckpt"), &frames, Checkpoint::in_memory()?)?);
    let e2e = E2E_BATCHES.min(mem_batches);
    results.push(run_memory_e2e(&format!("memory {e2e}x1k e2e idle, in-mem"), &frames[..e2e], Checkpoint::in_memory()?)?);

    // PySpark on the same files.
    let partitions = std::env::var("SLUICE_BENCH_SPARK_PARTITIONS").unwrap_or_else(|_| "200,2".into());
    let mut spark_notes = Vec::new();
    if std::env::var("SLUICE_BENCH_SKIP_PYSPARK").is_ok_and(|v| v == "1") {
        spark_notes.push("PySpark skipped (SLUICE_BENCH_SKIP_PYSPARK=1)".to_string());
    } else if !pyspark_available() {
        spark_notes.push("PySpark skipped: `python3 -c \"import pyspark\"` fails (pip install 'pyspark==3.5.*')".into());
    } else {
        match run_pyspark(&json_dir, &parquet_dir, &partitions) {
            Ok(runs) => {
                for (m, format) in results.iter_mut().take(3).zip(["json", "parquet", "json-stats"]) {
                    let mine: Vec<_> = runs.iter().filter(|r| r["format"] == format).collect();
                    let rates: Vec<String> = mine
                        .iter()
                        .map(|r| fmt_rate(r["rows_per_s"].as_f64().unwrap_or(0.0)))
                        .collect();
                    let ours = m.rows as f64 / m.wall.as_secs_f64();
                    let ratios: Vec<String> = mine
                        .iter()
                        .map(|r| format!("{:.1}x", ours / r["rows_per_s"].as_f64().unwrap_or(f64::NAN)))
                        .collect();
                    m.spark = Some((rates.join(" / "), ratios.join(" / ")));
                }
                for r in &runs {
                    spark_notes.push(format!(
                        "PySpark {} shuffle.partitions={}: {} rows ({} out) in {:.2} s = {:.0} rows/s, {} batches, \
                         triggerExecution p50 {} ms p99 {} ms, state {:.0} B/group ({} rows at peak)",
                        r["format"].as_str().unwrap_or("?"),
                        r["partitions"],
                        r["rows"],
                        r["out_rows"],
                        r["wall_s"].as_f64().unwrap_or(0.0),
                        r["rows_per_s"].as_f64().unwrap_or(0.0),
                        r["batches"],
                        r["p50_ms"],
                        r["p99_ms"],
                        r["state_bytes_per_group"].as_f64().unwrap_or(0.0),
                        r["state_rows_peak"],
                    ));
                }
            }
            Err(e) => spark_notes.push(format!("PySpark run failed: {e:#}")),
        }
    }

    println!();
    println!(
        "{:<32} {:>9} {:>8} {:>10} {:>10} {:>10} {:>9}  {:<22} speed-up",
        "case",
        "rows",
        "batches",
        "rows/s",
        "p50",
        "p99",
        "B/group",
        format!("PySpark rows/s ({})", partitions.replace(',', "/")),
    );
    for m in &results {
        let (spark_rate, ratio) = m.spark.clone().unwrap_or_else(|| ("-".into(), "-".into()));
        println!(
            "{:<32} {:>9} {:>8} {:>10} {:>10} {:>10} {:>9.0}  {:<22} {}",
            m.case,
            m.rows,
            m.batches,
            fmt_rate(m.rows as f64 / m.wall.as_secs_f64()),
            fmt_dur(percentile(&m.latencies, 0.50)),
            fmt_dur(percentile(&m.latencies, 0.99)),
            m.state_bytes_per_group,
            spark_rate,
            ratio
        );
    }
    println!();
    for m in &results {
        let ph: Vec<String> = m.phases.iter().map(|(k, v)| format!("{k} {v:.1}")).collect();
        println!(
            "{}: wall {:.3} s, {} output rows, state {} rows at peak; mean ms per data batch: {}",
            m.case,
            m.wall.as_secs_f64(),
            m.out_rows,
            m.state_rows_at_peak,
            ph.join(", ")
        );
    }
    for n in &spark_notes {
        println!("{n}");
    }
    println!("load avg at end: {}", loadavg());
    Ok(())
}
