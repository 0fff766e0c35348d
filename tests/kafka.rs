//! The Kafka source and sink against librdkafka's mock cluster: a real Kafka-protocol
//! broker started in this process, reached over TCP through the real client.
//!
//! Source: offsets per batch (Spark's JSON in `offsets/N`), replay of logged ranges after
//! a failure, `maxOffsetsPerTrigger` split by lag, every `startingOffsets` form, new
//! partitions picked up, data loss under both `failOnDataLoss` settings. Sink: records
//! read back (keys, values, headers, partitions), producer errors naming topic and
//! partition, exactly-once transactions across a crash between the sink's write and the
//! commit log. End to end: the kafka_wiki job equals Spark's oracle case p05 batch by
//! batch; `tests/crash.rs` SIGKILLs it at random moments with the other example jobs.

#[path = "../examples/kafka_wiki.rs"]
#[allow(dead_code)]
mod kafka_wiki;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice::prelude::*;
use sluice::connectors::kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use sluice::connectors::kafka::rdkafka::message::{Headers, Message};
use sluice::connectors::kafka::rdkafka::mocking::MockCluster;
use sluice::connectors::kafka::rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use sluice::connectors::kafka::rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use sluice::connectors::kafka::rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sluice::connectors::kafka::{kafka_schema, KafkaSource};
use sluice::connectors::MemoryStream;

/// A mock cluster with one broker.
struct Kafka {
    mock: MockCluster<'static, DefaultProducerContext>,
    servers: String,
    producer: BaseProducer,
}

impl Kafka {
    fn new() -> Self {
        let mock = MockCluster::new(1).unwrap();
        let servers = mock.bootstrap_servers();
        let producer = ClientConfig::new().set("bootstrap.servers", &servers).set("linger.ms", "0").create().unwrap();
        Kafka { mock, servers, producer }
    }

    fn topic(&self, name: &str, partitions: i32) {
        self.mock.create_topic(name, partitions, 1).unwrap();
    }

    /// Produces `values` to `topic` partition `partition` (keys `k<value>`), flushed.
    fn produce(&self, topic: &str, partition: i32, values: impl IntoIterator<Item = String>) {
        for v in values {
            let key = format!("k{v}");
            self.producer.send(BaseRecord::to(topic).partition(partition).key(&key).payload(&v)).unwrap();
        }
        self.producer.flush(Duration::from_secs(30)).unwrap();
    }

    fn source(&self) -> KafkaSource {
        KafkaSource::new(&self.servers)
    }

    /// (low, high) offsets of a partition.
    fn watermarks(&self, topic: &str, partition: i32) -> (i64, i64) {
        let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &self.servers).create().unwrap();
        c.fetch_watermarks(topic, partition, Duration::from_secs(10)).unwrap()
    }

    /// Every record of `topic` (read_committed), in partition then offset order.
    fn read_back(&self, topic: &str) -> Vec<Record> {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.servers)
            .set("group.id", "test-reader")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .create()
            .unwrap();
        let md = c.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
        let mut tpl = TopicPartitionList::new();
        let mut pending = 0;
        for p in md.topics()[0].partitions() {
            let (lo, hi) = c.fetch_watermarks(topic, p.id(), Duration::from_secs(10)).unwrap();
            if hi > lo {
                tpl.add_partition_offset(topic, p.id(), Offset::Offset(lo)).unwrap();
                pending += 1;
            }
        }
        let mut out = Vec::new();
        if pending == 0 {
            return out;
        }
        c.assign(&tpl).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while pending > 0 {
            assert!(Instant::now() < deadline, "reading {topic} back timed out");
            match c.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => out.push(Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    value: m.payload().map(|v| String::from_utf8_lossy(v).into_owned()),
                    headers: m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| (h.key.to_string(), h.value.map(|v| String::from_utf8_lossy(v).into_owned())))
                                .collect()
                        })
                        .unwrap_or_default(),
                }),
                Some(Err(_)) => pending -= 1, // partition EOF
                None => {}
            }
        }
        out.sort_by_key(|r| (r.partition, r.offset));
        out
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Record {
    partition: i32,
    offset: i64,
    key: Option<String>,
    value: Option<String>,
    headers: Vec<(String, Option<String>)>,
}

fn vals(range: std::ops::Range<usize>, prefix: &str) -> impl Iterator<Item = String> + '_ {
    range.map(move |i| format!("{prefix}{i}"))
}

type Batches = Arc<Mutex<Vec<(u64, DataFrame)>>>;

/// Runs `df` to completion with `trigger`, collecting each batch; `fail_at` makes the
/// sink fail on that batch id.
fn run(df: &StreamingDataFrame, ck: &Path, trigger: Trigger, fail_at: Option<u64>) -> (Vec<(u64, DataFrame)>, sluice::Result<()>) {
    let got: Batches = Arc::default();
    let g = got.clone();
    let q = df
        .write_stream()
        .trigger(trigger)
        .checkpoint_location(ck)
        .progress(ProgressDisplay::Off)
        .foreach_batch(move |d, id| {
            if Some(id) == fail_at {
                return Err(sluice::SluiceError::User(format!("sink fails at batch {id}")));
            }
            g.lock().unwrap().push((id, d.clone()));
            Ok(())
        })
        .start()
        .unwrap();
    let result = q.await_termination();
    let batches = got.lock().unwrap().clone();
    (batches, result)
}

/// The source offset logged in `<ck>/offsets/<n>` (the line after the batch metadata).
fn logged_offset(ck: &Path, n: u64) -> serde_json::Value {
    let text = std::fs::read_to_string(ck.join(format!("offsets/{n}"))).unwrap();
    serde_json::from_str(text.lines().nth(2).unwrap()).unwrap()
}

fn strings(df: &DataFrame, column: &str) -> Vec<String> {
    let c = df.column(column).unwrap();
    match c.dtype() {
        DataType::Binary => {
            c.binary().unwrap().iter().map(|v| String::from_utf8_lossy(v.unwrap_or(b"")).into_owned()).collect()
        }
        _ => c.cast(&DataType::String).unwrap().str().unwrap().iter().map(|v| v.unwrap_or("").to_string()).collect(),
    }
}

fn all_values(batches: &[(u64, DataFrame)]) -> Vec<String> {
    batches.iter().flat_map(|(_, d)| strings(d, "value")).collect()
}

#[test]
fn offsets_per_batch_are_sparks_json_and_rows_carry_sparks_columns() {
    let k = Kafka::new();
    k.topic("t", 2);
    k.produce("t", 0, vals(0..12, "a"));
    k.produce("t", 1, vals(0..8, "b"));
    let session = Session::new();
    let df = session
        .read_stream()
        .format("kafka")
        .option("kafka.bootstrap.servers", &k.servers)
        .option("subscribe", "t")
        .option("startingOffsets", "earliest")
        .option("maxOffsetsPerTrigger", 10)
        .load("")
        .unwrap();
    assert_eq!(df.schema().unwrap().as_ref(), &kafka_schema(false));
    let ck = tempfile::tempdir().unwrap();
    let started_ms = chrono::Utc::now().timestamp_millis() - 60_000;
    let (batches, result) = run(&df, ck.path(), Trigger::AvailableNow, None);
    result.unwrap();
    // Lags 12 and 8 of 20: shares 6 and 4 of 10, then the rest.
    assert_eq!(logged_offset(ck.path(), 0), serde_json::json!({"t": {"0": 6, "1": 4}}));
    assert_eq!(logged_offset(ck.path(), 1), serde_json::json!({"t": {"0": 12, "1": 8}}));
    assert!(!ck.path().join("offsets/2").exists(), "no third batch");
    let initial = std::fs::read_to_string(ck.path().join("sources/0/0")).unwrap();
    assert_eq!(initial.as_bytes(), sluice::checkpoint::checksum::seal(b"v1\n{\"t\":{\"0\":0,\"1\":0}}\n"), "the resolved startingOffsets are logged");
    assert_eq!(batches.len(), 2);
    let (id, b0) = &batches[0];
    assert_eq!(*id, 0);
    assert_eq!(b0.height(), 10);
    let mut got: Vec<(i32, i64, String, String)> = b0
        .column("partition")
        .unwrap()
        .i32()
        .unwrap()
        .into_no_null_iter()
        .zip(b0.column("offset").unwrap().i64().unwrap().into_no_null_iter())
        .zip(strings(b0, "key").into_iter().zip(strings(b0, "value")))
        .map(|((p, o), (k, v))| (p, o, k, v))
        .collect();
    assert!(got.windows(2).all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)), "rows in partition, offset order: {got:?}");
    got.sort();
    let mut want: Vec<(i32, i64, String, String)> = (0..6).map(|i| (0, i, format!("ka{i}"), format!("a{i}"))).collect();
    want.extend((0..4).map(|i| (1, i, format!("kb{i}"), format!("b{i}"))));
    assert_eq!(got, want);
    assert!(strings(b0, "topic").iter().all(|t| t == "t"));
    assert!(b0.column("timestampType").unwrap().i32().unwrap().into_no_null_iter().all(|t| t == 0), "CreateTime");
    let ts = b0.column("timestamp").unwrap().datetime().unwrap().physical().clone();
    assert!(ts.into_no_null_iter().all(|us| us / 1000 > started_ms), "record timestamps, in µs");
    assert_eq!(batches[1].1.height(), 10);
}

#[test]
fn a_restarted_query_replays_the_logged_ranges() {
    let k = Kafka::new();
    k.topic("t", 1);
    k.produce("t", 0, vals(0..10, "v"));
    let session = Session::new();
    let df = k.source().subscribe(["t"]).starting_offsets("earliest").max_offsets_per_trigger(4).to_df(&session).unwrap();
    let ck = tempfile::tempdir().unwrap();
    let (first, result) = run(&df, ck.path(), Trigger::AvailableNow, Some(1));
    assert!(result.is_err(), "the sink fails batch 1");
    assert_eq!(all_values(&first), vals(0..4, "v").collect::<Vec<_>>());
    assert_eq!(logged_offset(ck.path(), 1), serde_json::json!({"t": {"0": 8}}));
    // More data arrives before the restart; batch 1 must still read exactly [4, 8).
    k.produce("t", 0, vals(10..20, "v"));
    let (second, result) = run(&df, ck.path(), Trigger::AvailableNow, None);
    result.unwrap();
    assert_eq!(second[0].0, 1);
    assert_eq!(strings(&second[0].1, "value"), vals(4..8, "v").collect::<Vec<_>>());
    assert_eq!(all_values(&second), vals(4..20, "v").collect::<Vec<_>>());
    assert_eq!(second.len(), 4, "batches 1..=4 of 4 records");

    // startingOffsets=latest: a query that failed its first batch restarts from the
    // offsets it first resolved (logged in sources/0/0), not from the new latest.
    k.topic("u", 1);
    k.produce("u", 0, vals(0..10, "u"));
    let df = k.source().subscribe(["u"]).starting_offsets("latest").to_df(&session).unwrap();
    let ck = tempfile::tempdir().unwrap();
    let (_, result) = run(&df, ck.path(), Trigger::Once, Some(0));
    assert!(result.is_err());
    k.produce("u", 0, vals(10..15, "u"));
    let (batches, result) = run(&df, ck.path(), Trigger::AvailableNow, None);
    result.unwrap();
    assert_eq!(batches[0].0, 0);
    assert_eq!(batches[0].1.height(), 0, "batch 0 replays its logged (empty) range");
    assert_eq!(all_values(&batches), vals(10..15, "u").collect::<Vec<_>>());
}

#[test]
fn max_offsets_per_trigger_is_split_across_partitions_by_lag() {
    let k = Kafka::new();
    k.topic("t", 3);
    k.produce("t", 0, vals(0..10, "a"));
    k.produce("t", 1, vals(0..20, "b"));
    k.produce("t", 2, vals(0..70, "c"));
    let session = Session::new();
    let df = k.source().subscribe(["t"]).starting_offsets("earliest").max_offsets_per_trigger(10).to_df(&session).unwrap();
    let ck = tempfile::tempdir().unwrap();
    let (batches, result) = run(&df, ck.path(), Trigger::AvailableNow, Some(1));
    assert!(result.is_err(), "stopped by the sink at batch 1");
    assert_eq!(logged_offset(ck.path(), 0), serde_json::json!({"t": {"0": 1, "1": 2, "2": 7}}));
    assert_eq!(batches[0].1.height(), 10);
    // Lags 9, 18, 63 of 90: shares 1, 2, 7 again.
    assert_eq!(logged_offset(ck.path(), 1), serde_json::json!({"t": {"0": 2, "1": 4, "2": 14}}));
    // A restart replays the logged batch 1; then Trigger::Once ignores the limit
    // (Spark's Once reads everything available).
    let (batches, result) = run(&df, ck.path(), Trigger::Once, None);
    result.unwrap();
    assert_eq!((batches[0].0, batches[0].1.height()), (1, 10));
    let (batches, result) = run(&df, ck.path(), Trigger::Once, None);
    result.unwrap();
    assert_eq!((batches[0].0, batches[0].1.height()), (2, 80));
    // Without a limit, one batch takes everything.
    let df = k.source().subscribe(["t"]).starting_offsets("earliest").to_df(&session).unwrap();
    let (batches, _) = run(&df, tempfile::tempdir().unwrap().path(), Trigger::AvailableNow, None);
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].1.height(), 100);
}

#[test]
fn starting_offsets_earliest_latest_and_json() {
    let k = Kafka::new();
    k.topic("t", 2);
    k.produce("t", 0, vals(0..5, "a"));
    k.produce("t", 1, vals(0..5, "b"));
    let session = Session::new();

    // latest: only what arrives after the start.
    let latest = k.source().subscribe(["t"]).to_df(&session).unwrap();
    let ck_latest = tempfile::tempdir().unwrap();
    let (batches, result) = run(&latest, ck_latest.path(), Trigger::AvailableNow, None);
    result.unwrap();
    assert_eq!(all_values(&batches).len(), 0);
    assert_eq!(logged_offset(ck_latest.path(), 0), serde_json::json!({"t": {"0": 5, "1": 5}}));
    k.produce("t", 0, vals(5..7, "a"));
    let (batches, _) = run(&latest, ck_latest.path(), Trigger::AvailableNow, None);
    assert_eq!(all_values(&batches), ["a5", "a6"]);

    // earliest: everything.
    let earliest = k.source().subscribe(["t"]).starting_offsets("earliest").to_df(&session).unwrap();
    let (batches, _) = run(&earliest, tempfile::tempdir().unwrap().path(), Trigger::AvailableNow, None);
    assert_eq!(all_values(&batches).len(), 12);

    // JSON: an offset for partition 0, -2 (earliest) for partition 1.
    let json = k.source().subscribe(["t"]).starting_offsets(r#"{"t":{"0":3,"1":-2}}"#).to_df(&session).unwrap();
    let (batches, _) = run(&json, tempfile::tempdir().unwrap().path(), Trigger::AvailableNow, None);
    let mut got = all_values(&batches);
    got.sort();
    assert_eq!(got, ["a3", "a4", "a5", "a6", "b0", "b1", "b2", "b3", "b4"]);
    // -1 is latest.
    let json = k.source().subscribe(["t"]).starting_offsets(r#"{"t":{"0":-1,"1":4}}"#).to_df(&session).unwrap();
    let (batches, _) = run(&json, tempfile::tempdir().unwrap().path(), Trigger::AvailableNow, None);
    assert_eq!(all_values(&batches), ["b4"]);

    // Every partition must be named (Spark's rule for subscribe).
    let partial = k.source().subscribe(["t"]).starting_offsets(r#"{"t":{"0":1}}"#).to_df(&session).unwrap();
    let (_, result) = run(&partial, tempfile::tempdir().unwrap().path(), Trigger::AvailableNow, None);
    let e = result.unwrap_err().to_string();
    assert!(e.contains("must specify all topic partitions") && e.contains("t-1"), "{e}");
    // An offset beyond the partition's end is data loss.
    let beyond = k.source().subscribe(["t"]).starting_offsets(r#"{"t":{"0":100,"1":0}}"#).to_df(&session).unwrap();
    let (_, result) = run(&beyond, tempfile::tempdir().unwrap().path(), Trigger::AvailableNow, None);
    let e = result.unwrap_err().to_string();
    assert!(e.contains("startingOffsets for t-0 was 100") && e.contains("failOnDataLoss"), "{e}");
    // assign: exactly the partitions named.
    let assign = k
        .source()
        .assign(&[sluice::connectors::kafka::TopicPartition::new("t", 1)])
        .starting_offsets("earliest")
        .to_df(&session)
        .unwrap();
    let (batches, _) = run(&assign, tempfile::tempdir().unwrap().path(), Trigger::AvailableNow, None);
    assert_eq!(all_values(&batches), vals(0..5, "b").collect::<Vec<_>>());
}

#[test]
fn partitions_added_mid_run_are_read_from_their_earliest_offset() {
    // librdkafka's mock cannot grow a topic (no CreatePartitions), so partitions are
    // added as a new topic matching the subscribed pattern; the source code path is the
    // same: a partition in the latest offsets that the previous batch did not have.
    let k = Kafka::new();
    k.topic("ev-a", 1);
    k.produce("ev-a", 0, vals(0..3, "a"));
    let session = Session::new();
    let df = k.source().subscribe_pattern("ev-.*").starting_offsets("earliest").to_df(&session).unwrap();
    let ck = tempfile::tempdir().unwrap();
    let (batches, result) = run(&df, ck.path(), Trigger::AvailableNow, None);
    result.unwrap();
    assert_eq!(all_values(&batches), ["a0", "a1", "a2"]);
    assert_eq!(logged_offset(ck.path(), 0), serde_json::json!({"ev-a": {"0": 3}}));

    k.topic("ev-b", 2);
    k.topic("other", 1);
    k.produce("ev-b", 0, vals(0..2, "b"));
    k.produce("ev-b", 1, vals(2..4, "b"));
    k.produce("other", 0, vals(0..2, "x"));
    k.produce("ev-a", 0, vals(3..4, "a"));
    let (batches, result) = run(&df, ck.path(), Trigger::AvailableNow, None);
    result.unwrap();
    let mut got = all_values(&batches);
    got.sort();
    assert_eq!(got, ["a3", "b0", "b1", "b2", "b3"], "the new partitions from offset 0; `other` does not match");
    assert_eq!(logged_offset(ck.path(), 1), serde_json::json!({"ev-a": {"0": 4}, "ev-b": {"0": 2, "1": 2}}));

    // A subscribed topic that does not exist yet: its partitions appear later.
    let later = k.source().subscribe(["later"]).to_df(&session).unwrap();
    let ck = tempfile::tempdir().unwrap();
    let (batches, _) = run(&later, ck.path(), Trigger::AvailableNow, None);
    assert_eq!(all_values(&batches).len(), 0);
    assert_eq!(logged_offset(ck.path(), 0), serde_json::json!({}));
    k.topic("later", 1);
    k.produce("later", 0, vals(0..2, "l"));
    let (batches, _) = run(&later, ck.path(), Trigger::AvailableNow, None);
    assert_eq!(all_values(&batches), ["l0", "l1"]);
}

/// Produces records big enough that the mock broker (5 MiB per partition) drops the
/// oldest ones, as retention would.
fn age_out(k: &Kafka, topic: &str, low_above: i64) {
    let big = "x".repeat(100_000);
    for _ in 0..70 {
        k.producer.send(BaseRecord::<str, str>::to(topic).partition(0).payload(&big)).unwrap();
        k.producer.flush(Duration::from_secs(30)).unwrap();
    }
    let (low, _) = k.watermarks(topic, 0);
    assert!(low > low_above, "the mock dropped the oldest records (earliest offset {low})");
}

#[test]
fn data_loss_fails_the_batch_or_is_skipped_with_a_metric() {
    let k = Kafka::new();
    k.topic("t", 1);
    k.produce("t", 0, vals(0..20, "v"));
    let session = Session::new();
    let ck = tempfile::tempdir().unwrap();
    let failing = k.source().subscribe(["t"]).starting_offsets("earliest").max_offsets_per_trigger(10);
    // Batch 0 reads [0, 10); batch 1, [10, 20), is planned but fails in the sink.
    let (batches, result) = run(&failing.to_df(&session).unwrap(), ck.path(), Trigger::AvailableNow, Some(1));
    assert!(result.is_err());
    assert_eq!(batches[0].1.height(), 10);
    age_out(&k, "t", 20);
    let (low, high) = k.watermarks("t", 0);

    // failOnDataLoss=true (default): the batch fails naming topic, partition, offsets.
    let (_, result) = run(&failing.to_df(&session).unwrap(), ck.path(), Trigger::AvailableNow, None);
    let e = result.unwrap_err().to_string();
    assert!(e.contains("batch 1") && e.contains("topic t partition 0"), "{e}");
    assert!(e.contains("offsets [10, 20)") && e.contains(&format!("earliest available offset is {low}")), "{e}");
    assert!(e.contains("failOnDataLoss"), "{e}");

    // failOnDataLoss=false: the same (replayed) batch skips the lost records, warns and
    // counts them.
    let provider = failing.clone().fail_on_data_loss(false).provider().unwrap();
    let metrics = provider.metrics();
    let df = session.stream_from(Arc::new(provider));
    let (batches, result) = run(&df, ck.path(), Trigger::AvailableNow, None);
    result.unwrap();
    let offsets: Vec<i64> =
        batches.iter().flat_map(|(_, d)| d.column("offset").unwrap().i64().unwrap().into_no_null_iter().collect::<Vec<_>>()).collect();
    assert_eq!(offsets.first().copied(), Some(low), "reading resumes at the earliest available offset");
    assert_eq!(offsets.len() as i64, high - low);
    assert!(metrics.data_loss_events() >= 1);
    assert_eq!(metrics.records_skipped(), (low - 10) as u64);
    assert_eq!(metrics.to_map()["recordsSkipped"], (low - 10).to_string());
}

#[test]
fn the_sink_writes_values_keys_topics_partitions_and_headers_at_least_once() {
    let k = Kafka::new();
    k.topic("out", 2);
    k.topic("other", 1);
    let session = Session::new();
    let rows = df!(
        "key" => [Some("a"), None, Some("c")],
        "value" => ["1", "2", "3"],
        "topic" => ["out", "out", "other"],
        "partition" => [Some(1i32), Some(0), None],
    )
    .unwrap();
    let headers = Series::new("h".into(), [Some("h1"), None, Some("h3")]);
    let rows = rows
        .lazy()
        .with_column(
            concat_list([as_struct(vec![lit("trace").alias("key"), lit(headers).cast(DataType::Binary).alias("value")])])
                .unwrap()
                .alias("headers"),
        )
        .collect()
        .unwrap();
    let stream = MemoryStream::new(rows.schema().clone());
    stream.add_data(rows).unwrap();
    let ck = tempfile::tempdir().unwrap();
    let q = stream
        .to_df(&session)
        .write_stream()
        .format("kafka")
        .option("kafka.bootstrap.servers", &k.servers)
        .checkpoint_location(ck.path())
        .trigger(Trigger::AvailableNow)
        .progress(ProgressDisplay::Off)
        .start()
        .unwrap();
    q.await_termination().unwrap();
    let out = k.read_back("out");
    assert_eq!(out.len(), 2);
    assert_eq!((out[0].partition, out[0].key.as_deref(), out[0].value.as_deref()), (0, None, Some("2")));
    assert_eq!(out[0].headers, [("trace".to_string(), None)]);
    assert_eq!((out[1].partition, out[1].key.as_deref(), out[1].value.as_deref()), (1, Some("a"), Some("1")));
    assert_eq!(out[1].headers, [("trace".to_string(), Some("h1".to_string()))]);
    let other = k.read_back("other");
    assert_eq!(other.iter().map(|r| r.value.as_deref()).collect::<Vec<_>>(), [Some("3")]);

    // The source reads the headers back.
    let df = k.source().subscribe(["out"]).starting_offsets("earliest").include_headers(true).to_df(&session).unwrap();
    let (batches, _) = run(&df, tempfile::tempdir().unwrap().path(), Trigger::AvailableNow, None);
    let b = &batches[0].1;
    let h = b
        .clone()
        .lazy()
        .sort(["value"], Default::default())
        .select([col("headers").list().first().struct_().field_by_name("value").cast(DataType::String).alias("h")])
        .collect()
        .unwrap();
    assert_eq!(h.column("h").unwrap().str().unwrap().iter().collect::<Vec<_>>(), [Some("h1"), None]);
}

#[test]
fn producer_errors_fail_the_batch_naming_topic_partition_and_error() {
    let k = Kafka::new();
    k.topic("out", 1);
    let session = Session::new();
    // Kept until the end: the queries write their checkpoints while they run.
    let (ck, ck_missing_value) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let stream = MemoryStream::new(df!("value" => ["x"]).unwrap().schema().clone());
    stream.add_data(df!("value" => ["x"]).unwrap()).unwrap();
    k.mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 5],
    );
    let q = stream
        .to_df(&session)
        .write_stream()
        .format("kafka")
        .option("kafka.bootstrap.servers", &k.servers)
        .option("topic", "out")
        .checkpoint_location(ck.path())
        .trigger(Trigger::AvailableNow)
        .progress(ProgressDisplay::Off)
        .start()
        .unwrap();
    let e = q.await_termination().unwrap_err().to_string();
    assert!(e.contains("batch 0") && e.contains("topic out partition 0"), "{e}");
    assert!(e.to_lowercase().contains("authorization"), "librdkafka's error: {e}");

    // A missing value column fails as in Spark.
    let stream = MemoryStream::new(df!("v" => ["x"]).unwrap().schema().clone());
    stream.add_data(df!("v" => ["x"]).unwrap()).unwrap();
    let q = stream
        .to_df(&session)
        .write_stream()
        .format("kafka")
        .option("kafka.bootstrap.servers", &k.servers)
        .option("topic", "out")
        .checkpoint_location(ck_missing_value.path())
        .trigger(Trigger::AvailableNow)
        .progress(ProgressDisplay::Off)
        .start()
        .unwrap();
    let e = q.await_termination().unwrap_err().to_string();
    assert!(e.contains("'value' not found"), "{e}");
}

/// Kafka -> Kafka: copies `in` to `out`; returns the values of `out` (read_committed)
/// after a full run, a crash between the sink's write of the last batch and its commit
/// log entry (simulated by deleting that entry), and a restart.
fn copy_with_crash_before_commit(k: &Kafka, delivery: &str, out: &str) -> Vec<String> {
    let session = Session::new();
    let df = k
        .source()
        .subscribe(["in"])
        .starting_offsets("earliest")
        .max_offsets_per_trigger(5)
        .to_df(&session)
        .unwrap()
        .select([col("key"), col("value")]);
    let ck = tempfile::tempdir().unwrap();
    let start = || {
        df.write_stream()
            .format("kafka")
            .option("kafka.bootstrap.servers", &k.servers)
            .option("topic", out)
            .option("deliveryGuarantee", delivery)
            .checkpoint_location(ck.path())
            .trigger(Trigger::AvailableNow)
            .progress(ProgressDisplay::Off)
            .start()
            .unwrap()
    };
    start().await_termination().unwrap();
    assert!(ck.path().join("commits/2").exists() && !ck.path().join("offsets/3").exists());
    // The crash: batch 2 reached Kafka, its commit log entry did not reach the disk.
    std::fs::remove_file(ck.path().join("commits/2")).unwrap();
    start().await_termination().unwrap();
    assert!(ck.path().join("commits/2").exists(), "batch 2 was replayed and committed");
    k.read_back(out).into_iter().filter_map(|r| r.value).collect()
}

#[test]
fn exactly_once_transactions_write_each_batch_once_across_a_crash_before_the_commit_log() {
    let k = Kafka::new();
    k.topic("in", 1);
    k.topic("out-eo", 1);
    k.topic("out-alo", 1);
    k.topic(sluice::connectors::kafka::DEFAULT_PROGRESS_TOPIC, 1);
    k.produce("in", 0, vals(0..15, "v"));
    let exactly_once = copy_with_crash_before_commit(&k, "exactly-once", "out-eo");
    assert_eq!(exactly_once, vals(0..15, "v").collect::<Vec<_>>(), "every batch once");
    // The markers committed with each transaction: batches 0, 1, 2.
    let markers: Vec<u64> = k
        .read_back(sluice::connectors::kafka::DEFAULT_PROGRESS_TOPIC)
        .iter()
        .filter_map(|r| serde_json::from_str::<serde_json::Value>(r.value.as_deref()?).ok()?["batchId"].as_u64())
        .collect();
    assert_eq!(markers, [0, 1, 2]);
    // At least once, the replayed batch is written again: the test can tell them apart.
    let at_least_once = copy_with_crash_before_commit(&k, "at-least-once", "out-alo");
    assert_eq!(at_least_once.len(), 20, "batch 2 twice: {at_least_once:?}");
}

// ---------------------------------------------------------------------------------------
// End to end: the kafka_wiki job

fn produce_wiki(k: &Kafka) -> usize {
    k.topic("wiki_edits", 1);
    kafka_wiki::produce_wiki_edits(&k.servers, "wiki_edits").unwrap()
}

fn wiki_job(servers: &str, output_topic: &str, checkpoint: &Path, files: kafka_wiki::FilesOut) -> kafka_wiki::Job {
    kafka_wiki::Job {
        servers: servers.to_string(),
        input_topic: "wiki_edits".into(),
        output_topic: output_topic.into(),
        max_offsets_per_trigger: 2000,
        window: "10 minutes".into(),
        watermark: "1 minute".into(),
        mode: OutputMode::Append,
        delivery: "exactly-once".into(),
        checkpoint: checkpoint.to_path_buf(),
        files,
        progress: ProgressDisplay::Off,
    }
}

#[test]
fn kafka_wiki_on_one_partition_matches_spark_oracle_p05_batch_by_batch() {
    let k = Kafka::new();
    assert_eq!(produce_wiki(&k), 39_244);
    k.topic("wiki_windows", 1);
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let job = wiki_job(&k.servers, "wiki_windows", &work.path().join("ck"), kafka_wiki::FilesOut::Jsonl(out.clone()));
    let progress = kafka_wiki::run_job(&job).unwrap();
    let rows: Vec<u64> = progress.iter().map(|p| p.num_input_rows).collect();
    assert_eq!(rows.len(), 21, "20 batches of up to 2,000 edits and the no-data batch");
    assert!(rows[..19].iter().all(|r| *r == 2000) && rows[19] == 1244 && rows[20] == 0, "{rows:?}");
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/cases/p05_wiki_edits");
    let result = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/compare.py"))
        .arg(&case)
        .arg(&out)
        .output()
        .expect("python3 runs the oracle's compare.py");
    let text = String::from_utf8_lossy(&result.stdout);
    assert!(result.status.success(), "differs from Spark:\n{text}{}", String::from_utf8_lossy(&result.stderr));
    assert!(text.contains(": match"), "{text}");
    // The same windows went to Kafka, once each.
    let written: usize = progress.iter().map(|p| p.sink.num_output_rows as usize).sum();
    assert_eq!(k.read_back("wiki_windows").len(), written);
}
