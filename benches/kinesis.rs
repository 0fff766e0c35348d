//! Benchmark of the Kinesis source (and sink) against a local Kinesis server: moto's
//! `moto_server` on a free loopback port (`tests/support/moto.rs`), reached over HTTP
//! through the real AWS SDK, as the tests do.
//!
//! 1. put `SLUICE_BENCH_KINESIS_RECORDS` (default 100,000) records of 200 bytes into a
//!    stream of `SLUICE_BENCH_KINESIS_SHARDS` (default 4) shards with PutRecords calls
//!    of 500 (the input's write rate, moto's PutRecords speed);
//! 2. the plain SDK reading every shard with GetRecords (moto's read rate), then the
//!    Kinesis source (`TRIM_HORIZON`) into a trivial query (a `foreach_batch` sink
//!    counting each batch's rows), `AvailableNow`, with a local checkpoint: rows/s and
//!    MB/s of `data`, with `maxRecordsPerTrigger` 20,000 and without a limit;
//! 3. the Kinesis sink writing the same number of 200-byte rows from a `MemoryStream` in
//!    10 batches.
//!
//! moto is a single-threaded Python server, so the figures measure mostly moto: they are
//! a floor for Sluice, not Kinesis' rates (a real shard serves 2 MB/s of reads and takes
//! 1 MB/s of writes). `cargo bench --features kinesis --bench kinesis`; prints
//! "SKIPPED" when `moto_server` is not installed.

#[path = "../examples/kinesis_wiki.rs"]
#[allow(dead_code)]
mod kinesis_wiki;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kinesis_wiki::KinesisAdmin;
use kinesis_wiki::moto::Moto;
use sluice::connectors::MemoryStream;
use sluice::connectors::kinesis::{KinesisSink, KinesisSource};
use sluice::engine::Options;
use sluice::prelude::*;

const VALUE_BYTES: usize = 200;

fn env_or(key: &str, default: usize) -> usize {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A 200-byte value for record `i`: its number, then printable filler.
fn value(i: usize) -> String {
    let mut v = format!("{i:010}:");
    let fill = b"abcdefghijklmnopqrstuvwxyz0123456789";
    while v.len() < VALUE_BYTES {
        v.push(fill[(i + v.len()) % fill.len()] as char);
    }
    v
}

/// Reads the whole stream with the Kinesis source into a row-counting sink: (rows,
/// batches, time, throttled requests).
fn read(endpoint: &str, stream: &str, max_per_trigger: Option<u64>) -> anyhow::Result<(u64, usize, Duration, u64)> {
    let session = Session::new();
    let mut source = KinesisSource::new(stream)
        .endpoint_url(endpoint)
        .credentials("testing", "testing")
        .starting_position("TRIM_HORIZON")
        .option("idleTimeBetweenReadsMs", 50)
        .option("maxFetchRecordsPerShard", 1_000_000);
    if let Some(m) = max_per_trigger {
        source = source.max_records_per_trigger(m);
    }
    let provider = source.provider()?;
    let metrics = provider.metrics();
    let rows = Arc::new(AtomicU64::new(0));
    let r = rows.clone();
    let ck = tempfile::tempdir()?;
    let started = Instant::now();
    let q = session
        .stream_from(Arc::new(provider))
        .write_stream()
        .trigger(Trigger::AvailableNow)
        .checkpoint_location(ck.path())
        .progress(ProgressDisplay::Off)
        .foreach_batch(move |df, _| {
            r.fetch_add(df.height() as u64, Ordering::Relaxed);
            Ok(())
        })
        .start()?;
    q.await_termination()?;
    let elapsed = started.elapsed();
    let batches = q.recent_progress().iter().filter(|p| p.num_input_rows > 0).count();
    Ok((rows.load(Ordering::Relaxed), batches, elapsed, metrics.throttled_requests()))
}

/// Writes `n` rows of 200-byte values through the Kinesis sink in 10 batches.
fn write(endpoint: &str, stream: &str, n: usize) -> anyhow::Result<Duration> {
    let session = Session::new();
    let schema = df!("partitionKey" => [""], "data" => [""])?.schema().clone();
    let input = MemoryStream::new(schema);
    let per = n.div_ceil(10);
    for b in 0..10 {
        let range = (b * per)..((b + 1) * per).min(n);
        input.add_data(df!(
            "partitionKey" => range.clone().map(|i| format!("{:06}", i % 100_000)).collect::<Vec<_>>(),
            "data" => range.map(value).collect::<Vec<_>>(),
        )?)?;
    }
    let sink = KinesisSink::from_options(&Options::from_pairs([
        ("streamName", stream),
        ("endpointUrl", endpoint),
        ("awsAccessKeyId", "testing"),
        ("awsSecretKey", "testing"),
    ]))?;
    let ck = tempfile::tempdir()?;
    let started = Instant::now();
    let q = input
        .to_df(&session)
        .write_stream()
        .trigger(Trigger::AvailableNow)
        .checkpoint_location(ck.path())
        .progress(ProgressDisplay::Off)
        .sink(Box::new(sink))
        .start()?;
    q.await_termination()?;
    Ok(started.elapsed())
}

fn main() -> anyhow::Result<()> {
    // `cargo test --benches` runs bench binaries with --bench absent: stay quick then.
    if !std::env::args().any(|a| a == "--bench") && std::env::var_os("SLUICE_BENCH_KINESIS_RECORDS").is_none() {
        println!("kinesis bench: run with `cargo bench --features kinesis --bench kinesis`");
        return Ok(());
    }
    let Some(m) = Moto::start() else { return Ok(()) };
    let n = env_or("SLUICE_BENCH_KINESIS_RECORDS", 100_000);
    let shards = env_or("SLUICE_BENCH_KINESIS_SHARDS", 4) as i32;
    let admin = KinesisAdmin::local(&m.endpoint)?;
    admin.create_stream("bench_in", shards)?;
    admin.create_stream("bench_out", shards)?;
    let records: Vec<(String, Vec<u8>)> = (0..n).map(|i| (format!("{:06}", i % 100_000), value(i).into_bytes())).collect();
    let mb = (n * VALUE_BYTES) as f64 / 1e6;
    println!("Kinesis bench: {n} records of {VALUE_BYTES} bytes ({mb:.1} MB), {shards} shards, moto at {}", m.endpoint);
    let t = Instant::now();
    admin.put("bench_in", &records)?;
    let put = t.elapsed().as_secs_f64();
    println!("| case | rows | batches | time | rows/s | MB/s of data |");
    println!("|---|---|---|---|---|---|");
    println!("| plain SDK PutRecords of 500 (the input) | {n} | | {put:.2} s | {:.0} | {:.2} |", n as f64 / put, mb / put);
    // moto's own read rate: the plain SDK reading every shard from TRIM_HORIZON, one
    // shard after the other (GetRecords of up to 10,000 records).
    let t = Instant::now();
    let mut plain = 0;
    for (shard, _, _) in admin.shards("bench_in")? {
        plain += admin.read_shard("bench_in", &shard)?.len();
    }
    let s = t.elapsed().as_secs_f64();
    anyhow::ensure!(plain == n, "the plain read found {plain} records of {n}");
    println!("| plain SDK GetRecords, shard after shard | {n} | | {s:.2} s | {:.0} | {:.2} |", n as f64 / s, mb / s);
    for limit in [Some(20_000), None] {
        let (rows, batches, elapsed, throttled) = read(&m.endpoint, "bench_in", limit)?;
        anyhow::ensure!(rows == n as u64, "read {rows} rows of {n}");
        let s = elapsed.as_secs_f64();
        let case = match limit {
            Some(l) => format!("Kinesis source, maxRecordsPerTrigger {l}"),
            None => "Kinesis source, no limit".to_string(),
        };
        println!(
            "| {case} | {rows} | {batches} | {s:.2} s | {:.0} | {:.2} |{}",
            rows as f64 / s,
            mb / s,
            if throttled > 0 { format!(" ({throttled} throttled)") } else { String::new() }
        );
    }
    let s = write(&m.endpoint, "bench_out", n)?.as_secs_f64();
    println!("| Kinesis sink, 10 batches | {n} | 10 | {s:.2} s | {:.0} | {:.2} |", n as f64 / s, mb / s);
    Ok(())
}
