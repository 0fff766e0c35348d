//! Benchmark of the Kafka source and sink against librdkafka's mock cluster (in this
//! process, over TCP through the real client):
//!
//! 1. produce 1,000,000 messages of 200 bytes (a 10-byte key, a 200-byte value) with a
//!    plain rdkafka producer: the rate the input is written at;
//! 2. the Kafka source into a trivial query (a `foreach_batch` sink counting each
//!    batch's rows), `AvailableNow`, with a local checkpoint: rows/s and MB/s of values,
//!    with `maxOffsetsPerTrigger` 100,000 (10 batches) and without a limit (one batch);
//! 3. the Kafka sink writing 1,000,000 rows of 200-byte values from a `MemoryStream` in
//!    10 batches: rows/s at least once and exactly once (one transaction per batch).
//!
//! The mock broker keeps at most 5 MiB per partition (it drops older records beyond), so
//! the topics have 64 partitions. `nice -n 19 cargo bench --bench kafka`. Environment:
//! `SLUICE_BENCH_KAFKA_MESSAGES` (default 1000000), `SLUICE_BENCH_KAFKA_PARTITIONS`
//! (default 64), `SLUICE_BENCH_KAFKA_SERVERS` (a real cluster instead of the mock; its
//! topics `sluice-bench-in`, `sluice-bench-out-alo`, `sluice-bench-out-eo` must exist).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::prelude::*;
use sluice::connectors::kafka::rdkafka::error::{KafkaError, RDKafkaErrorCode};
use sluice::connectors::kafka::rdkafka::mocking::MockCluster;
use sluice::connectors::kafka::rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use sluice::connectors::kafka::rdkafka::ClientConfig;
use sluice::connectors::kafka::KafkaSource;
use sluice::connectors::MemoryStream;

const VALUE_BYTES: usize = 200;

fn env_or(key: &str, default: usize) -> usize {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A 200-byte value for message `i`: its number, then printable filler.
fn value(i: usize) -> String {
    let mut v = format!("{i:010}:");
    let fill = b"abcdefghijklmnopqrstuvwxyz0123456789";
    while v.len() < VALUE_BYTES {
        v.push(fill[(i + v.len()) % fill.len()] as char);
    }
    v
}

fn produce(servers: &str, topic: &str, n: usize) -> anyhow::Result<Duration> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let started = Instant::now();
    for i in 0..n {
        let (key, payload) = (format!("{:010}", i % 100_000), value(i));
        let mut record = BaseRecord::to(topic).key(&key).payload(&payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => anyhow::bail!("producing message {i}: {e}"),
            }
        }
        if i % 10_000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(300))?;
    Ok(started.elapsed())
}

/// Reads the whole topic with the Kafka source into a row-counting sink.
fn read(servers: &str, topic: &str, max_offsets: Option<u64>) -> anyhow::Result<(u64, usize, Duration)> {
    let session = Session::new();
    let mut source = KafkaSource::new(servers).subscribe([topic]).starting_offsets("earliest");
    if let Some(m) = max_offsets {
        source = source.max_offsets_per_trigger(m);
    }
    let df = source.to_df(&session)?;
    let rows = Arc::new(AtomicU64::new(0));
    let batches = Arc::new(AtomicU64::new(0));
    let (r, b) = (rows.clone(), batches.clone());
    let ck = tempfile::tempdir()?;
    let started = Instant::now();
    let q = df
        .write_stream()
        .trigger(Trigger::AvailableNow)
        .checkpoint_location(ck.path())
        .progress(ProgressDisplay::Off)
        .foreach_batch(move |d, _| {
            r.fetch_add(d.height() as u64, Ordering::Relaxed);
            b.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .start()?;
    q.await_termination()?;
    Ok((rows.load(Ordering::Relaxed), batches.load(Ordering::Relaxed) as usize, started.elapsed()))
}

/// Writes `n` rows in 10 batches through the Kafka sink.
fn write(servers: &str, topic: &str, n: usize, delivery: &str) -> anyhow::Result<Duration> {
    let per_batch = n.div_ceil(10);
    let frames: Vec<DataFrame> = (0..10)
        .map(|b| {
            let values: Vec<String> = (b * per_batch..((b + 1) * per_batch).min(n)).map(value).collect();
            df!("value" => values)
        })
        .collect::<Result<_, _>>()?;
    let stream = MemoryStream::new(frames[0].schema().clone());
    let session = Session::new();
    let ck = tempfile::tempdir()?;
    let q = stream
        .to_df(&session)
        .write_stream()
        .format("kafka")
        .option("kafka.bootstrap.servers", servers)
        .option("kafka.linger.ms", 5)
        .option("topic", topic)
        .option("deliveryGuarantee", delivery)
        .checkpoint_location(ck.path())
        .progress(ProgressDisplay::Off)
        .start()?;
    // One frame per batch: each is added once the previous one is written.
    let started = Instant::now();
    for f in frames {
        stream.add_data(f)?;
        q.process_all_available()?;
    }
    let took = started.elapsed();
    q.stop()?;
    anyhow::ensure!(q.recent_progress().len() == 10, "{} batches", q.recent_progress().len());
    Ok(took)
}

fn main() -> anyhow::Result<()> {
    let n = env_or("SLUICE_BENCH_KAFKA_MESSAGES", 1_000_000);
    let partitions = env_or("SLUICE_BENCH_KAFKA_PARTITIONS", 64) as i32;
    let (in_topic, alo_topic, eo_topic) = ("sluice-bench-in", "sluice-bench-out-alo", "sluice-bench-out-eo");
    let (_mock, servers) = match std::env::var("SLUICE_BENCH_KAFKA_SERVERS") {
        Ok(s) => (None, s),
        Err(_) => {
            let mock = MockCluster::new(1)?;
            for t in [in_topic, alo_topic, eo_topic] {
                mock.create_topic(t, partitions, 1)?;
            }
            let servers = mock.bootstrap_servers();
            (Some(mock), servers)
        }
    };
    let mb = |rows: f64| rows * VALUE_BYTES as f64 / 1e6;
    println!("Kafka benchmark: {n} messages of {VALUE_BYTES} bytes, {partitions} partitions, cluster {servers}\n");
    println!("| case | rows | time | rows/s | MB/s (values) |");
    println!("|---|---|---|---|---|");
    let row = |name: &str, rows: f64, t: Duration| {
        let s = t.as_secs_f64();
        println!("| {name} | {rows:.0} | {s:.2} s | {:.0} | {:.1} |", rows / s, mb(rows) / s);
    };

    let t = produce(&servers, in_topic, n)?;
    row("rdkafka producer (input)", n as f64, t);

    // Warm-up (connections, metadata), then the measured reads.
    for (name, limit) in [("source, maxOffsetsPerTrigger 100000", Some(100_000)), ("source, one batch", None)] {
        let (rows, batches, t) = read(&servers, in_topic, limit)?;
        anyhow::ensure!(rows as usize == n, "{name}: read {rows} rows, not {n}");
        row(&format!("{name} ({batches} batches)"), rows as f64, t);
    }
    for (name, topic, delivery) in
        [("sink, at-least-once", alo_topic, "at-least-once"), ("sink, exactly-once", eo_topic, "exactly-once")]
    {
        let t = write(&servers, topic, n, delivery)?;
        row(&format!("{name} (10 batches)"), n as f64, t);
    }
    Ok(())
}
