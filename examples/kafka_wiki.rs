//! # kafka_wiki: the wiki_edits job, from Kafka to Kafka and files
//!
//! Starts librdkafka's mock cluster in this process (a real Kafka-protocol broker on a
//! local TCP port), produces the 39,244 bundled Wikipedia edits into the topic
//! `wiki_edits` in file order (JSON values, the channel as key, one partition unless
//! `--partitions N`), then runs the wiki_edits query (per 10-minute window and channel:
//! edits, bytes added and deleted, robot edits, largest delta; watermark 1 minute, append
//! mode) reading the topic with `maxOffsetsPerTrigger` 2,000, and writes each window
//! both to the topic `wiki_windows` (exactly once, with Kafka transactions) and through
//! the file sink (Parquet, exactly once, with a manifest).
//!
//! ```text
//! cargo run --release --example kafka_wiki                            # the walk-through
//! cargo run --release --example kafka_wiki -- --output DIR [--checkpoint DIR]
//!                                   # batch-<id>.jsonl per micro-batch (oracle contract)
//! cargo run --release --example kafka_wiki -- --bootstrap-servers host:9092 [--skip-produce]
//!                                   # the same job against a real cluster
//! ```
//! On one partition, batch `N` reads offsets `[2000·N, 2000·(N+1))`: the same edits as
//! the file source's `part-0000N.json` in oracle case p05, so the output matches Spark's
//! batch by batch (`tests/kafka.rs` checks it with the oracle's `compare.py`).

#[path = "common/mod.rs"]
pub(crate) mod common;

use std::io::BufRead;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use sluice::engine::{Options, Sink, SinkContext};
use sluice::prelude::*;
use sluice::connectors::kafka::KafkaSink;
use sluice::connectors::{FileFormat, FileSink, ForeachBatchSink};
use sluice::connectors::kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use sluice::connectors::kafka::rdkafka::error::{KafkaError, RDKafkaErrorCode};
use sluice::connectors::kafka::rdkafka::message::Message;
use sluice::connectors::kafka::rdkafka::mocking::MockCluster;
use sluice::connectors::kafka::rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use sluice::connectors::kafka::rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sluice::connectors::kafka::KafkaSource;
use sluice::connectors::{from_json, to_json};
use sluice::StreamingQueryProgress;

#[derive(Parser, Debug, Clone)]
#[command(about = "Wikipedia edits per window and channel, from Kafka to Kafka and files")]
pub struct Args {
    /// Folder receiving one `batch-<id>.jsonl` per micro-batch (the oracle contract)
    /// instead of the Parquet file sink's output.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Checkpoint folder (default: target/kafka_wiki/checkpoint, emptied first). With the
    /// mock cluster give a new folder each run: the mock's topics start empty.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Where the Parquet file sink writes (default target/kafka_wiki/output).
    #[arg(long)]
    pub parquet_out: Option<PathBuf>,
    /// A real cluster (`host:port,...`) instead of the in-process mock cluster.
    #[arg(long)]
    pub bootstrap_servers: Option<String>,
    /// Do not produce the edits (the input topic already holds them).
    #[arg(long)]
    pub skip_produce: bool,
    /// Partitions of the input topic created in the mock cluster.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// The topic of the edits.
    #[arg(long, default_value = "wiki_edits")]
    pub input_topic: String,
    /// The topic of the windows.
    #[arg(long, default_value = "wiki_windows")]
    pub output_topic: String,
    /// Records per micro-batch.
    #[arg(long, default_value_t = 2000)]
    pub max_offsets_per_trigger: u64,
    /// Window length.
    #[arg(long, default_value = "10 minutes")]
    pub window: String,
    /// Watermark delay on `time`.
    #[arg(long, default_value = "1 minute")]
    pub watermark: String,
    /// Output mode: append, update or complete.
    #[arg(long, default_value = "append")]
    pub mode: String,
    /// Kafka sink delivery: exactly-once or at-least-once.
    #[arg(long, default_value = "exactly-once")]
    pub delivery: String,
}

/// Where a run's file output goes.
#[derive(Debug, Clone)]
pub enum FilesOut {
    /// The Parquet file sink (manifest, exactly once).
    Parquet(PathBuf),
    /// `batch-<id>.jsonl` per micro-batch (the oracle contract).
    Jsonl(PathBuf),
}

/// One run of the job against a cluster whose input topic holds the edits.
#[derive(Debug, Clone)]
pub struct Job {
    pub servers: String,
    pub input_topic: String,
    pub output_topic: String,
    pub max_offsets_per_trigger: u64,
    pub window: String,
    pub watermark: String,
    pub mode: OutputMode,
    pub delivery: String,
    pub checkpoint: PathBuf,
    pub files: FilesOut,
    pub progress: ProgressDisplay,
}

/// Writes each batch to the file output and to Kafka; both are idempotent per batch id.
struct Tee {
    files: Box<dyn Sink>,
    kafka: KafkaSink,
}

impl Sink for Tee {
    fn description(&self) -> String {
        format!("{} + {}", self.files.description(), self.kafka.description())
    }
    fn supports_output_mode(&self, mode: OutputMode) -> bool {
        self.files.supports_output_mode(mode) && self.kafka.supports_output_mode(mode)
    }
    fn initialize(&mut self, ctx: &SinkContext) -> sluice::Result<()> {
        self.files.initialize(ctx)?;
        self.kafka.initialize(ctx)
    }
    fn add_batch(&mut self, batch_id: u64, data: &DataFrame) -> sluice::Result<()> {
        self.files.add_batch(batch_id, data)?;
        // Kafka records: the channel as key, the whole row as JSON.
        let names: Vec<Expr> = data.get_column_names().into_iter().map(|n| col(n.clone())).collect();
        let records = data
            .clone()
            .lazy()
            .select([col("channel").cast(DataType::String).alias("key"), to_json(as_struct(names)).alias("value")])
            .collect()?;
        self.kafka.add_batch(batch_id, &records)
    }
}

/// The wiki edits read from `topic`: Kafka's binary `value` parsed with the wiki schema.
pub fn edits_from_kafka(session: &Session, servers: &str, topic: &str, max_offsets: u64) -> anyhow::Result<StreamingDataFrame> {
    let raw = KafkaSource::new(servers)
        .subscribe([topic])
        .starting_offsets("earliest")
        .max_offsets_per_trigger(max_offsets)
        .to_df(session)?;
    let schema = common::wiki_schema();
    let fields: Vec<Expr> =
        schema.iter_names().map(|n| col("edit").struct_().field_by_name(n.as_str()).alias(n.clone())).collect();
    Ok(raw.select([from_json(col("value"), &schema)?.alias("edit")]).select(fields))
}

/// Runs the job until the input available at start is processed (AvailableNow).
pub fn run_job(job: &Job) -> anyhow::Result<Vec<StreamingQueryProgress>> {
    let session = Session::new();
    let edits = edits_from_kafka(&session, &job.servers, &job.input_topic, job.max_offsets_per_trigger)?;
    let windows = common::wiki_edits(edits, &job.window, &job.watermark)?;
    let files: Box<dyn Sink> = match &job.files {
        FilesOut::Parquet(dir) => Box::new(FileSink::new(dir, FileFormat::Parquet)),
        FilesOut::Jsonl(dir) => {
            let dir = dir.clone();
            Box::new(ForeachBatchSink::new(move |df: &DataFrame, id: u64| common::write_batch_jsonl(&dir, df, id)))
        }
    };
    let kafka = KafkaSink::from_options(&Options::from_pairs([
        ("kafka.bootstrap.servers", job.servers.as_str()),
        ("topic", job.output_topic.as_str()),
        ("deliveryGuarantee", job.delivery.as_str()),
    ]))?;
    let query = windows
        .write_stream()
        .output_mode(job.mode)
        .trigger(Trigger::AvailableNow)
        .checkpoint_location(&job.checkpoint)
        .progress(job.progress)
        .sink(Box::new(Tee { files, kafka }))
        .start()?;
    query.await_termination()?;
    Ok(query.recent_progress())
}

/// Produces the bundled edits, in file order, into `topic` (JSON values, the channel as
/// key; idempotent producer, so retries keep the order). Returns the number produced.
pub fn produce_wiki_edits(servers: &str, topic: &str) -> anyhow::Result<usize> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        // Compressed batches: librdkafka's mock broker keeps 5 MiB per partition.
        .set("compression.type", "lz4")
        .create()?;
    let gz = std::fs::File::open(common::wiki::bundled())?;
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(gz));
    let mut n = 0;
    for line in reader.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let edit: serde_json::Value = serde_json::from_str(&line).with_context(|| format!("edit {n} is not JSON"))?;
        let channel = edit["channel"].as_str().unwrap_or_default().to_string();
        let mut record = BaseRecord::to(topic).key(&channel).payload(&line);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => anyhow::bail!("cannot produce edit {n} to {topic}: {e}"),
            }
        }
        n += 1;
    }
    producer.flush(Duration::from_secs(60))?;
    Ok(n)
}

/// The records of `topic` (every partition, read_committed): (key, value) pairs.
pub fn read_topic(servers: &str, topic: &str) -> anyhow::Result<Vec<(Option<String>, Option<String>)>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", "kafka-wiki-reader")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = Vec::new();
    for t in md.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            let (lo, hi) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
            if hi > lo {
                tpl.add_partition_offset(topic, p.id(), Offset::Offset(lo))?;
                ends.push((p.id(), hi));
            }
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return Ok(out);
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut done = std::collections::HashSet::new();
    while done.len() < ends.len() && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
                out.push((text(m.key()), text(m.payload())));
                if ends.iter().any(|(p, hi)| *p == m.partition() && m.offset() + 1 >= *hi) {
                    done.insert(m.partition());
                }
            }
            Some(Err(e)) => anyhow::bail!("reading {topic}: {e}"),
            None => {
                // Control records at the end of a partition: the position passes them.
                for e in consumer.position()?.elements() {
                    if let Offset::Offset(o) = e.offset() {
                        if ends.iter().any(|(p, hi)| *p == e.partition() && o >= *hi) {
                            done.insert(e.partition());
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

#[allow(dead_code)]
fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/kafka_wiki");
    let contract = args.output.is_some();
    if !contract {
        println!("== kafka_wiki: the wiki_edits job from Kafka to Kafka and Parquet ==\n");
    }

    // Step 1: a cluster.
    let mock = match &args.bootstrap_servers {
        Some(_) => None,
        None => {
            let mock = MockCluster::new(1)?;
            mock.create_topic(&args.input_topic, args.partitions, 1)?;
            mock.create_topic(&args.output_topic, 1, 1)?;
            Some(mock)
        }
    };
    let servers = match (&args.bootstrap_servers, &mock) {
        (Some(s), _) => s.clone(),
        (None, Some(m)) => m.bootstrap_servers(),
        (None, None) => anyhow::bail!("no cluster"),
    };
    if !contract {
        match &mock {
            Some(_) => println!(
                "Step 1. Started librdkafka's mock cluster at {servers}: topic {} ({} partition(s)), topic {}",
                args.input_topic, args.partitions, args.output_topic
            ),
            None => println!("Step 1. Using the cluster at {servers}"),
        }
    }

    // Step 2: the edits.
    if !args.skip_produce {
        let t = Instant::now();
        let n = produce_wiki_edits(&servers, &args.input_topic)?;
        if !contract {
            println!(
                "Step 2. Produced {n} edits of {} in file order into {} ({:.2} s)",
                common::wiki::bundled().display(),
                args.input_topic,
                t.elapsed().as_secs_f64()
            );
        }
    }

    // Step 3: the query.
    let checkpoint = args.checkpoint.clone().unwrap_or_else(|| base.join("checkpoint"));
    let parquet = args.parquet_out.clone().unwrap_or_else(|| base.join("output"));
    if args.checkpoint.is_none() {
        common::remove_dirs(&[&checkpoint, &parquet])?;
    }
    let job = Job {
        servers: servers.clone(),
        input_topic: args.input_topic.clone(),
        output_topic: args.output_topic.clone(),
        max_offsets_per_trigger: args.max_offsets_per_trigger,
        window: args.window.clone(),
        watermark: args.watermark.clone(),
        mode: args.mode.parse()?,
        delivery: args.delivery.clone(),
        checkpoint,
        files: match &args.output {
            Some(dir) => FilesOut::Jsonl(dir.clone()),
            None => FilesOut::Parquet(parquet.clone()),
        },
        progress: if contract { ProgressDisplay::Off } else { ProgressDisplay::Lines },
    };
    if !contract {
        println!(
            "Step 3. Kafka source (subscribe {}, startingOffsets earliest, maxOffsetsPerTrigger {}), from_json(value),\n        \
             with_watermark(time, {}), group_by(window(time, {}), channel), five aggregates;\n        \
             Kafka sink ({}, {}) and Parquet file sink ({}), AvailableNow\n",
            job.input_topic, job.max_offsets_per_trigger, job.watermark, job.window, job.output_topic, job.delivery,
            parquet.display()
        );
    }
    let t = Instant::now();
    let progress = run_job(&job)?;
    if contract {
        return Ok(());
    }
    let elapsed = t.elapsed().as_secs_f64();
    let rows_in: u64 = progress.iter().map(|p| p.num_input_rows).sum();
    let rows_out: u64 = progress.iter().map(|p| p.sink.num_output_rows).sum();
    println!("\nStep 4. Summary");
    println!("        micro-batches       {}", progress.len());
    println!("        edits read          {rows_in}");
    println!("        window rows out     {rows_out}");
    println!("        wall time           {elapsed:.2} s ({:.0} edits/s)", rows_in as f64 / elapsed.max(1e-9));
    let records = read_topic(&servers, &job.output_topic)?;
    println!("        records in {:<12} {} (read_committed)", job.output_topic, records.len());
    if let Some((k, v)) = records.first() {
        println!("        first record        key {:?}\n                            value {}", k.as_deref().unwrap_or(""), v.as_deref().unwrap_or(""));
    }
    let written = sluice::connectors::read_output(&parquet)?;
    println!("        rows in the Parquet output: {} ({})", written.height(), parquet.display());
    show_top(&written)?;
    Ok(())
}

fn show_top(written: &DataFrame) -> anyhow::Result<()> {
    if written.height() == 0 {
        return Ok(());
    }
    let top = written
        .clone()
        .lazy()
        .group_by([col("channel")])
        .agg([col("edits").sum(), col("added").sum(), col("robot_edits").sum()])
        .sort(["edits"], SortMultipleOptions::default().with_order_descending(true))
        .limit(5)
        .collect()?;
    println!("\n        Top channels by edits:\n{top}");
    Ok(())
}
