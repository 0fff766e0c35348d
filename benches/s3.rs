//! S3 checkpoint batch latency beside the local-directory one: the same query (the
//! windowed aggregation of `windowed_agg`: 10-minute windows sliding every 5 minutes,
//! watermark 10 minutes, append) over 1,000-row batches fed back to back from a
//! `MemoryStream` into a `foreach_batch` sink, once per checkpoint:
//!
//! 1. in memory (no I/O: the engine's own cost);
//! 2. a local directory, fsync on (Sluice's default);
//! 3. `s3://` on moto's S3 server on the loopback (`moto_server`, started here on a free
//!    port; the case is skipped, saying so, when moto cannot be started).
//!
//! Prints per case the batches' `triggerExecution` p50 / p99 and the median of each
//! phase that touches the checkpoint (`walCommit`: the offset log; `commitOffsets`: the
//! state delta and the commit log). `cargo bench --bench s3 --features s3`; `BATCHES`
//! (default 200) sets the number of batches.

#[path = "../examples/common/mod.rs"]
mod common;
#[path = "../tests/support/moto.rs"]
mod moto;
#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sluice::checkpoint::Checkpoint;
use sluice::prelude::*;

/// `n` 1,000-row frames of sensor readings, event time advancing a minute per frame.
fn frames(n: usize) -> Vec<DataFrame> {
    let mut x: u64 = 42;
    (0..n)
        .map(|b| {
            let (mut s, mut t, mut v) = (Vec::new(), Vec::new(), Vec::new());
            for i in 0..1000i64 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                s.push(format!("s{}", (x >> 33) % 100));
                t.push(1_709_280_000_000_000i64 + (b as i64 * 60 + i % 60) * 1_000_000);
                v.push(((x >> 40) % 1000) as f64 / 10.0);
            }
            df!("sensor" => s, "ts" => t, "v" => v)
                .unwrap()
                .lazy()
                .with_column(col("ts").cast(common::ts()))
                .collect()
                .unwrap()
        })
        .collect()
}

struct Measure {
    batches: usize,
    wall: Duration,
    trigger: Vec<u64>,
    phases: BTreeMap<String, Vec<u64>>,
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Runs the query over `frames` back to back (the sink of batch n adds frame n + 1).
fn run(frames: &[DataFrame], ck: Checkpoint) -> anyhow::Result<Measure> {
    let session = Session::new();
    let stream = sluice::connectors::MemoryStream::new(Arc::new(common::sensor_schema()));
    let df = common::windowed_agg(stream.to_df(&session), "10 minutes", Some("5 minutes"), Some("10 minutes"))?;
    let (wall, progress, _) = support::run_back_to_back(&session, df, &stream, frames, ck)?;
    let data: Vec<_> = progress.into_iter().filter(|p| p.num_input_rows > 0).collect();
    let mut trigger: Vec<u64> = data.iter().map(|p| p.duration_ms.get("triggerExecution").copied().unwrap_or(0)).collect();
    trigger.sort_unstable();
    let mut phases: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for p in &data {
        for (k, v) in &p.duration_ms {
            phases.entry(k.clone()).or_default().push(*v);
        }
    }
    phases.values_mut().for_each(|v| v.sort_unstable());
    Ok(Measure { batches: data.len(), wall, trigger, phases })
}

fn report(case: &str, m: &Measure) {
    let phase = |k: &str| m.phases.get(k).map_or(0, |v| pct(v, 0.5));
    println!(
        "{case:<34} {:>4} batches in {:>6.2} s  triggerExecution p50 {:>3} ms p99 {:>3} ms  (p50 walCommit {} ms, addBatch {} ms, commitOffsets {} ms)",
        m.batches,
        m.wall.as_secs_f64(),
        pct(&m.trigger, 0.5),
        pct(&m.trigger, 0.99),
        phase("walCommit"),
        phase("addBatch"),
        phase("commitOffsets"),
    );
}

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("BATCHES").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let frames = frames(n);
    println!("S3 checkpoint bench: {n} batches of 1,000 rows, windowed aggregation, append");
    report("checkpoint in memory", &run(&frames, Checkpoint::in_memory()?)?);
    let dir = tempfile::tempdir()?;
    report("checkpoint in a local dir (fsync)", &run(&frames, Checkpoint::local(dir.path().join("ck"))?)?);
    let Some(moto) = moto::Moto::start() else { return Ok(()) };
    moto.create_bucket("bench");
    let options = sluice_checkpoint::store::StoreOptions::from_pairs(moto.s3_options());
    let ck = Checkpoint::open("s3://bench/ck", &options)?;
    report("checkpoint on S3 (moto, loopback)", &run(&frames, ck)?);
    Ok(())
}
