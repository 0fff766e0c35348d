//! Benchmark of `flat_map_groups_with_state`: 1,000,000 events over 100,000 keys.
//!
//! Query: `group_by(user).flat_map_groups_with_state(Update, NoTimeout)` keeping per user
//! a running count and sum of `v` (a serde struct, JSON in the state store) and emitting
//! one row `user, count, total` per user and batch. Input: 10 JSON lines files of 100,000
//! events (`user` one of 100,000 uniformly at random, `time` advancing 10 ms per event,
//! `v` in 0..1000), `maxFilesPerTrigger` 1, `AvailableNow`, a row-counting `foreach_batch`
//! sink, a local checkpoint folder.
//!
//! Prints rows/s, per-batch latency (p50 / max, between sink calls), state rows and bytes
//! (`stateOperators[0]` of the last batch: `numRowsTotal`, `memoryUsedBytes`) and bytes
//! per key, plus the checkpoint's state files per key; then the same query in PySpark 3.5
//! `local[2]` with `applyInPandasWithState` (`benches/pyspark_groups_with_state.py`) on
//! the same files, when `python3 -c "import pyspark, pandas, pyarrow"` works.
//!
//! `nice -n 19 cargo bench --bench groups_with_state`. Environment:
//! `SLUICE_BENCH_ROWS` (default 1000000), `SLUICE_BENCH_KEYS` (default 100000),
//! `SLUICE_BENCH_SKIP_PYSPARK=1`, `SLUICE_BENCH_SPARK_PARTITIONS` (default `2`).

#[path = "../examples/common/mod.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;

use anyhow::Context;
use sluice::prelude::*;
use support::{fmt_dur, loadavg, percentile, python_results, run_available_now, Rng};

const FILES: usize = 10;
/// 2024-03-01T00:00:00Z in milliseconds.
const START_MS: i64 = 1_709_251_200_000;

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Running {
    count: i64,
    total: i64,
}

fn write_files(dir: &Path, rows: usize, keys: u64) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut rng = Rng(0x5eed);
    let per_file = rows.div_ceil(FILES);
    let mut paths = Vec::new();
    for (f, start) in (0..rows).step_by(per_file).enumerate() {
        let path = dir.join(format!("part-{f:05}.json"));
        let mut w = std::io::BufWriter::new(std::fs::File::create(&path)?);
        for i in start..(start + per_file).min(rows) {
            let t = chrono::DateTime::from_timestamp_millis(START_MS + i as i64 * 10).context("timestamp")?;
            let (k, v) = (rng.below(keys), rng.below(1000));
            writeln!(w, "{{\"user\":\"u{k:06}\",\"time\":\"{}\",\"v\":{v}}}", t.format("%Y-%m-%dT%H:%M:%S%.3fZ"))?;
        }
        w.flush()?;
        paths.push(path);
    }
    common::set_mtimes_in_order(&paths)
}

fn out_schema() -> Schema {
    common::schema(&[("user", DataType::String), ("count", DataType::Int64), ("total", DataType::Int64)])
}

fn dir_bytes(d: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(d) {
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            total += if m.is_dir() { dir_bytes(&e.path()) } else { m.len() };
        }
    }
    total
}

fn main() -> anyhow::Result<()> {
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let rows = env("SLUICE_BENCH_ROWS", 1_000_000) as usize;
    let keys = env("SLUICE_BENCH_KEYS", 100_000);
    let work = tempfile::Builder::new().prefix("sluice-bench-gws-").tempdir()?;
    let input = work.path().join("input");
    write_files(&input, rows, keys)?;
    println!(
        "data: {rows} events over {keys} keys, {FILES} JSON lines files ({:.1} MB); load avg {}",
        dir_bytes(&input) as f64 / 1e6,
        loadavg()
    );

    let session = Session::new();
    let schema = common::schema(&[("user", DataType::String), ("time", common::ts()), ("v", DataType::Int64)]);
    let df = common::json_source(&session, &input, schema)?.group_by([col("user")]).flat_map_groups_with_state(
        OutputMode::Update,
        GroupStateTimeout::NoTimeout,
        out_schema(),
        |key: &GroupKey, rows: DataFrame, state: &mut GroupState<Running>| {
            let mut r = state.get_option().cloned().unwrap_or(Running { count: 0, total: 0 });
            r.count += rows.height() as i64;
            r.total += rows.column("v")?.i64()?.sum().unwrap_or(0);
            let out = df!("user" => [key.str(0)], "count" => [r.count], "total" => [r.total])?;
            state.update(r);
            Ok(out)
        },
    );
    let ck = work.path().join("ck");
    let (wall, progress, log) = run_available_now(df, OutputMode::Update, &ck)?;
    let rows_in: u64 = progress.iter().map(|p| p.num_input_rows).sum();
    let lat = log.latencies(&progress);
    let last = progress.last().and_then(|p| p.state_operators.first()).context("no state operator progress")?;
    let state_files = dir_bytes(&ck.join("state"));
    let rate = rows_in as f64 / wall.as_secs_f64();
    println!(
        "sluice: {rows_in} rows ({} out) in {:.2} s = {:.0} rows/s, {} batches, batch p50 {} max {}, \
         state {} keys / {:.1} MB in memory = {:.0} B/key, checkpoint state files {:.1} MB",
        log.out_rows.load(Ordering::Relaxed),
        wall.as_secs_f64(),
        rate,
        progress.len(),
        fmt_dur(percentile(&lat, 0.5)),
        fmt_dur(percentile(&lat, 1.0)),
        last.num_rows_total,
        last.memory_used_bytes as f64 / 1e6,
        last.memory_used_bytes as f64 / last.num_rows_total.max(1) as f64,
        state_files as f64 / 1e6,
    );

    if std::env::var("SLUICE_BENCH_SKIP_PYSPARK").is_ok_and(|v| v == "1") {
        println!("PySpark skipped (SLUICE_BENCH_SKIP_PYSPARK=1)");
        return Ok(());
    }
    let ok = std::process::Command::new("python3")
        .args(["-c", "import pyspark, pandas, pyarrow"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        println!("PySpark skipped: `python3 -c \"import pyspark, pandas, pyarrow\"` fails (pip install 'pyspark==3.5.*' pandas pyarrow)");
        return Ok(());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/pyspark_groups_with_state.py");
    let partitions = std::env::var("SLUICE_BENCH_SPARK_PARTITIONS").unwrap_or_else(|_| "2".into());
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg("--input")
        .arg(&input)
        .arg("--partitions")
        .arg(&partitions)
        .output()
        .context("running python3")?;
    for r in python_results(&script, &out)? {
        let spark_rate = r["rows_per_s"].as_f64().unwrap_or(0.0);
        println!(
            "PySpark applyInPandasWithState shuffle.partitions={}: {} rows ({} out) in {:.2} s = {:.0} rows/s, {} batches, \
             triggerExecution p50 {} ms, state {} keys / {:.1} MB = {:.0} B/key; Sluice is {:.1}x faster",
            r["partitions"],
            r["rows"],
            r["out_rows"],
            r["wall_s"].as_f64().unwrap_or(0.0),
            spark_rate,
            r["batches"],
            r["p50_ms"],
            r["state_rows"],
            r["state_bytes"].as_f64().unwrap_or(0.0) / 1e6,
            r["state_bytes_per_key"].as_f64().unwrap_or(0.0),
            rate / spark_rate.max(1e-9),
        );
    }
    Ok(())
}
