//! # kinesis_wiki: the wiki_edits job, from a Kinesis stream
//!
//! Starts a local Kinesis server (moto's `moto_server`, on a free loopback port) unless
//! `--endpoint URL` names one, creates the stream `wiki_edits` with `--shards N` shards
//! (default 4), puts the 39,244 bundled Wikipedia edits into it in file order (PutRecords
//! of 500, the channel as partition key, so each channel's edits stay in order in one
//! shard), then runs the wiki_edits query (per 10-minute window and channel: edits, bytes
//! added and deleted, robot edits, largest delta; watermark 1 minute, append mode)
//! reading the stream from `TRIM_HORIZON` with `maxRecordsPerTrigger` 2,000, and writes
//! each window through the file sink (Parquet, exactly once) and into the stream
//! `wiki_windows` (the Kinesis sink, at least once, keyed by channel). Built with the
//! `s3` feature too and on the local server, its checkpoint and Parquet output go to S3 on
//! that same server (`s3://kinesis-wiki/{checkpoint,output}`), partitioned by `date` and
//! `channel`, zstd-compressed.
//!
//! ```text
//! cargo run --release --features kinesis,s3 --example kinesis_wiki              # the walk-through, on S3
//! cargo run --release --features kinesis --example kinesis_wiki -- --shards 1 --output DIR --checkpoint DIR
//!                                   # batch-<id>.jsonl per micro-batch (oracle contract)
//! cargo run --release --features kinesis --example kinesis_wiki -- --endpoint https://kinesis.eu-west-1.amazonaws.com --region eu-west-1
//!                                   # a real service (credentials: the standard AWS chain)
//! ```
//! On one shard, batch `N` reads records `2000·N .. 2000·(N+1)`: the same edits as the
//! file source's `part-0000N.json` in oracle case p05, so the output matches Spark's
//! batch by batch (`tests/kinesis.rs` checks it with the oracle's `compare.py`). On
//! several shards each batch takes an even share of every shard, so shards of quiet
//! channels run ahead in event time and the watermark drops the busy shard's late edits
//! (4 shards: 881 window rows instead of 3,572), as Spark does with Kinesis or Kafka.

#[path = "common/mod.rs"]
pub(crate) mod common;
#[path = "../tests/support/moto.rs"]
pub(crate) mod moto;

use std::io::BufRead;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use sluice::connectors::kinesis::aws_sdk_kinesis::Client;
use sluice::connectors::kinesis::aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use sluice::connectors::kinesis::aws_sdk_kinesis::primitives::Blob;
use sluice::connectors::kinesis::aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType, StreamStatus};
use sluice::connectors::kinesis::{KinesisSink, KinesisSource};
use sluice::connectors::{FileFormat, FileSink, ForeachBatchSink, from_json, to_json};
use sluice::engine::{Options, Sink, SinkContext};
use sluice::prelude::*;
use sluice::StreamingQueryProgress;

/// Credentials a local server accepts (moto checks none).
pub const LOCAL_KEY: (&str, &str) = ("testing", "testing");

#[derive(Parser, Debug, Clone)]
#[command(about = "Wikipedia edits per window and channel, from a Kinesis stream")]
pub struct Args {
    /// Shards of the stream created on the local server.
    #[arg(long, default_value_t = 4)]
    pub shards: i32,
    /// Folder receiving one `batch-<id>.jsonl` per micro-batch (the oracle contract)
    /// instead of the Parquet file sink's output.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Checkpoint folder (default: target/kinesis_wiki/checkpoint, emptied first). With
    /// the local server give a new folder each run: its streams start empty.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// A Kinesis endpoint (`https://kinesis.<region>.amazonaws.com` or a server of your
    /// own) instead of a local moto server started here.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// The region (default: the AWS chain's; us-east-1 for the local server).
    #[arg(long)]
    pub region: Option<String>,
    /// Do not create the stream nor put the edits (the stream already holds them).
    #[arg(long)]
    pub skip_put: bool,
    /// The stream of the edits.
    #[arg(long, default_value = "wiki_edits")]
    pub stream: String,
    /// The stream the windows are written to (created with one shard on the local
    /// server).
    #[arg(long, default_value = "wiki_windows")]
    pub output_stream: String,
    /// Records per micro-batch.
    #[arg(long, default_value_t = 2000)]
    pub max_records_per_trigger: u64,
}

/// One run of the job against a stream that holds the edits.
#[derive(Debug, Clone)]
pub struct Job {
    /// The Kinesis endpoint; `None` for the AWS chain's.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Static credentials (the local server), else the AWS chain.
    pub credentials: Option<(String, String)>,
    pub stream: String,
    /// Where the windows also go (the Kinesis sink), if anywhere.
    pub output_stream: Option<String>,
    pub max_records_per_trigger: u64,
    /// A local folder or `s3://bucket/prefix`.
    pub checkpoint: PathBuf,
    pub files: FilesOut,
    /// `s3.*` writer options (endpoint, credentials) for an S3 checkpoint and output.
    pub s3_options: Vec<(String, String)>,
    pub progress: ProgressDisplay,
}

/// Where a run's file output goes.
#[derive(Debug, Clone)]
pub enum FilesOut {
    /// The Parquet file sink (manifest, exactly once).
    Parquet(PathBuf),
    /// `batch-<id>.jsonl` per micro-batch (the oracle contract).
    Jsonl(PathBuf),
    /// The Parquet file sink on `s3://bucket/prefix` (cargo feature `s3`), partitioned by
    /// `date` (of the window's start) and `channel`, zstd-compressed.
    S3Parquet(String),
}

impl Job {
    fn client_options(&self) -> Vec<(&'static str, String)> {
        let mut o = Vec::new();
        if let Some(e) = &self.endpoint {
            o.push(("endpointUrl", e.clone()));
        }
        if let Some(r) = &self.region {
            o.push(("region", r.clone()));
        }
        if let Some((id, secret)) = &self.credentials {
            o.push(("awsAccessKeyId", id.clone()));
            o.push(("awsSecretKey", secret.clone()));
        }
        o
    }
}

/// Writes each batch to the file output, then to Kinesis.
struct Tee {
    files: Box<dyn Sink>,
    kinesis: Option<KinesisSink>,
}

impl Sink for Tee {
    fn description(&self) -> String {
        match &self.kinesis {
            Some(k) => format!("{} + {}", self.files.description(), k.description()),
            None => self.files.description(),
        }
    }
    fn initialize(&mut self, ctx: &SinkContext) -> sluice::Result<()> {
        self.files.initialize(ctx)?;
        match &mut self.kinesis {
            Some(k) => k.initialize(ctx),
            None => Ok(()),
        }
    }
    fn add_batch(&mut self, batch_id: u64, data: &DataFrame) -> sluice::Result<()> {
        self.files.add_batch(batch_id, data)?;
        let Some(kinesis) = &mut self.kinesis else { return Ok(()) };
        // Kinesis records: the whole row as JSON, keyed by channel (the sink's
        // partitionKey expression).
        let names: Vec<Expr> = data.get_column_names().into_iter().map(|n| col(n.clone())).collect();
        let records = data.clone().lazy().with_column(to_json(as_struct(names)).alias("data")).collect()?;
        kinesis.add_batch(batch_id, &records)
    }
}

/// The wiki edits read from `job.stream`: Kinesis' binary `data` parsed with the wiki
/// schema.
pub fn edits_from_kinesis(session: &Session, job: &Job) -> anyhow::Result<StreamingDataFrame> {
    let mut source = KinesisSource::new(&job.stream)
        .starting_position("TRIM_HORIZON")
        .max_records_per_trigger(job.max_records_per_trigger)
        // The local server answers at once; a real stream allows 5 reads per second and shard.
        .option("idleTimeBetweenReadsMs", if job.credentials.is_some() { 100 } else { 1000 });
    for (k, v) in job.client_options() {
        source = source.option(k, v);
    }
    let raw = source.to_df(session)?;
    let schema = common::wiki_schema();
    let fields: Vec<Expr> =
        schema.iter_names().map(|n| col("edit").struct_().field_by_name(n.as_str()).alias(n.clone())).collect();
    Ok(raw.select([from_json(col("data"), &schema)?.alias("edit")]).select(fields))
}

/// Runs the job until every shard is caught up (AvailableNow).
pub fn run_job(job: &Job) -> anyhow::Result<Vec<StreamingQueryProgress>> {
    let session = Session::new();
    let edits = edits_from_kinesis(&session, job)?;
    let mut windows = common::wiki_edits(edits, "10 minutes", "1 minute")?;
    if let FilesOut::S3Parquet(_) = &job.files {
        // The partition column `date`: the day of the window's start.
        windows = windows.with_column(col("window").struct_().field_by_name("start").cast(DataType::Date).alias("date"));
    }
    let files: Box<dyn Sink> = match &job.files {
        FilesOut::S3Parquet(url) => {
            let mut o = Options::new().with("path", url);
            for (k, v) in &job.s3_options {
                o.set(k, v);
            }
            Box::new(
                FileSink::from_options(FileFormat::Parquet, &o)?
                    .with_compression("zstd")?
                    .with_partition_by(["date", "channel"]),
            )
        }
        FilesOut::Parquet(dir) => Box::new(FileSink::new(dir, FileFormat::Parquet)),
        FilesOut::Jsonl(dir) => {
            let dir = dir.clone();
            Box::new(ForeachBatchSink::new(move |df: &DataFrame, id: u64| common::write_batch_jsonl(&dir, df, id)))
        }
    };
    let kinesis = match &job.output_stream {
        Some(stream) => {
            let mut o = Options::new().with("streamName", stream);
            for (k, v) in job.client_options() {
                o.set(k, v);
            }
            Some(KinesisSink::from_options(&o)?.with_partition_key(col("channel")))
        }
        None => None,
    };
    let mut writer = windows.write_stream();
    for (k, v) in &job.s3_options {
        writer = writer.option(k, v);
    }
    let query = writer
        .output_mode(OutputMode::Append)
        .trigger(Trigger::AvailableNow)
        .checkpoint_location(&job.checkpoint)
        .progress(job.progress)
        .sink(Box::new(Tee { files, kinesis }))
        .start()?;
    query.await_termination()?;
    Ok(query.recent_progress())
}

/// A small blocking Kinesis client for setting streams up and reading them back (the
/// example, the tests and the bench).
pub struct KinesisAdmin {
    pub rt: tokio::runtime::Runtime,
    pub client: Client,
}

impl KinesisAdmin {
    /// A client of `endpoint` (`None`: the AWS chain's) with static `credentials` or the
    /// AWS chain's.
    pub fn new(endpoint: Option<&str>, region: Option<&str>, credentials: Option<(&str, &str)>) -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let shared = rt.block_on(async {
            let mut loader = aws_config_loader();
            if let Some(r) = region.or(endpoint.map(|_| "us-east-1")) {
                loader = loader.region(Region::new(r.to_string()));
            }
            if let Some((id, secret)) = credentials {
                loader = loader.credentials_provider(Credentials::new(id, secret, None, None, "kinesis_wiki"));
            }
            loader.load().await
        });
        let mut config = sluice::connectors::kinesis::aws_sdk_kinesis::config::Builder::from(&shared);
        if let Some(e) = endpoint {
            config = config.endpoint_url(e);
        }
        Ok(Self { rt, client: Client::from_conf(config.build()) })
    }

    /// A client of a local server.
    pub fn local(endpoint: &str) -> anyhow::Result<Self> {
        Self::new(Some(endpoint), None, Some(LOCAL_KEY))
    }

    /// Creates `stream` with `shards` shards and waits until it is active.
    pub fn create_stream(&self, stream: &str, shards: i32) -> anyhow::Result<()> {
        self.rt.block_on(async {
            self.client.create_stream().stream_name(stream).shard_count(shards).send().await?;
            for _ in 0..600 {
                let d = self.client.describe_stream_summary().stream_name(stream).send().await?;
                if d.stream_description_summary().is_some_and(|s| s.stream_status() == &StreamStatus::Active) {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            anyhow::bail!("stream {stream} did not become active within 60 s")
        })
    }

    /// Puts `records` (partition key, data) in order, in PutRecords calls of up to 500,
    /// sending failed records again; returns (shard id, sequence number) per record.
    pub fn put(&self, stream: &str, records: &[(String, Vec<u8>)]) -> anyhow::Result<Vec<(String, String)>> {
        let mut out = Vec::with_capacity(records.len());
        for chunk in records.chunks(500) {
            let mut pending: Vec<usize> = (0..chunk.len()).collect();
            let mut done: Vec<Option<(String, String)>> = vec![None; chunk.len()];
            for attempt in 0.. {
                anyhow::ensure!(attempt < 100, "records of stream {stream} kept failing");
                let entries: Vec<PutRecordsRequestEntry> = pending
                    .iter()
                    .map(|i| PutRecordsRequestEntry::builder().partition_key(&chunk[*i].0).data(Blob::new(chunk[*i].1.clone())).build())
                    .collect::<Result<_, _>>()?;
                let res = self.rt.block_on(self.client.put_records().stream_name(stream).set_records(Some(entries)).send())?;
                let mut still = Vec::new();
                for (i, r) in pending.iter().zip(res.records()) {
                    match (r.shard_id(), r.sequence_number()) {
                        (Some(shard), Some(seq)) => done[*i] = Some((shard.to_string(), seq.to_string())),
                        _ => still.push(*i),
                    }
                }
                pending = still;
                if pending.is_empty() {
                    break;
                }
            }
            out.extend(done.into_iter().flatten());
        }
        Ok(out)
    }

    /// The stream's shards: (id, parent ids, closed).
    pub fn shards(&self, stream: &str) -> anyhow::Result<Vec<(String, Vec<String>, bool)>> {
        let out = self.rt.block_on(self.client.list_shards().stream_name(stream).send())?;
        Ok(out
            .shards()
            .iter()
            .map(|s| {
                let parents = s.parent_shard_id().into_iter().chain(s.adjacent_parent_shard_id()).map(String::from).collect();
                let closed = s.sequence_number_range().and_then(|r| r.ending_sequence_number()).is_some();
                (s.shard_id().to_string(), parents, closed)
            })
            .collect())
    }

    /// Splits `shard` of `stream` in the middle of its hash range (the first shard of a
    /// 1-shard stream: 2^127).
    pub fn split_in_half(&self, stream: &str, shard: &str) -> anyhow::Result<()> {
        let out = self.rt.block_on(self.client.list_shards().stream_name(stream).send())?;
        let s = out.shards().iter().find(|s| s.shard_id() == shard).context("no such shard")?;
        let range = s.hash_key_range().context("a hash key range")?;
        let (lo, hi): (u128, u128) = (range.starting_hash_key().parse()?, range.ending_hash_key().parse()?);
        let mid = lo + (hi - lo) / 2 + 1;
        self.rt.block_on(
            self.client.split_shard().stream_name(stream).shard_to_split(shard).new_starting_hash_key(mid.to_string()).send(),
        )?;
        Ok(())
    }

    /// Every record of `shard` from its trim horizon: (partition key, data, sequence number).
    pub fn read_shard(&self, stream: &str, shard: &str) -> anyhow::Result<Vec<(String, Vec<u8>, String)>> {
        self.rt.block_on(async {
            let it = self
                .client
                .get_shard_iterator()
                .stream_name(stream)
                .shard_id(shard)
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await?;
            let mut it = it.shard_iterator;
            let mut out = Vec::new();
            while let Some(i) = it {
                let r = self.client.get_records().shard_iterator(i).send().await?;
                let n = r.records.len();
                for rec in r.records {
                    out.push((rec.partition_key.unwrap_or_default(), rec.data.into_inner(), rec.sequence_number));
                }
                it = r.next_shard_iterator;
                if n == 0 && r.millis_behind_latest.unwrap_or(0) == 0 {
                    break;
                }
            }
            Ok(out)
        })
    }
}

fn aws_config_loader() -> sluice::connectors::kinesis::aws_config::ConfigLoader {
    sluice::connectors::kinesis::aws_config::defaults(BehaviorVersion::latest())
}

/// The bundled edits in file order: (channel, the edit's JSON line).
pub fn wiki_records() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let gz = std::fs::File::open(common::wiki::bundled())?;
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(gz));
    let mut out = Vec::new();
    for line in reader.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let edit: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("edit {} is not JSON", out.len()))?;
        let channel = edit["channel"].as_str().unwrap_or_default().to_string();
        out.push((if channel.is_empty() { "-".into() } else { channel }, line.into_bytes()));
    }
    Ok(out)
}

#[allow(dead_code)]
fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/kinesis_wiki");
    let contract = args.output.is_some();
    let say = |s: String| {
        if !contract {
            println!("{s}");
        }
    };
    say("== kinesis_wiki: the wiki_edits job from a Kinesis stream ==\n".into());

    // Step 1: a Kinesis server.
    let local = match &args.endpoint {
        Some(_) => None,
        None => Some(moto::Moto::start().context(
            "moto_server is not installed: `pip install 'moto[server]'`, or give --endpoint URL of a Kinesis service",
        )?),
    };
    let (endpoint, credentials) = match (&args.endpoint, &local) {
        (Some(e), _) => (Some(e.clone()), None),
        (None, Some(m)) => (Some(m.endpoint.clone()), Some((LOCAL_KEY.0.to_string(), LOCAL_KEY.1.to_string()))),
        (None, None) => anyhow::bail!("no Kinesis server"),
    };
    let admin = KinesisAdmin::new(
        endpoint.as_deref(),
        args.region.as_deref(),
        credentials.as_ref().map(|(a, b)| (a.as_str(), b.as_str())),
    )?;
    match &local {
        Some(m) => say(format!("Step 1. Started a local Kinesis server (moto) at {}", m.endpoint)),
        None => say(format!("Step 1. Using the Kinesis endpoint {}", endpoint.as_deref().unwrap_or("of the AWS chain"))),
    }

    // Step 2: the edits.
    if !args.skip_put {
        let t = Instant::now();
        admin.create_stream(&args.stream, args.shards)?;
        admin.create_stream(&args.output_stream, 1)?;
        let records = wiki_records()?;
        admin.put(&args.stream, &records)?;
        say(format!(
            "Step 2. Put {} edits of {} in file order into stream {} ({} shard(s), keyed by channel; {:.2} s)",
            records.len(),
            common::wiki::bundled().display(),
            args.stream,
            args.shards,
            t.elapsed().as_secs_f64()
        ));
    }

    // Step 3: the query.
    let mut checkpoint = args.checkpoint.clone().unwrap_or_else(|| base.join("checkpoint"));
    let mut parquet = base.join("output");
    if args.checkpoint.is_none() {
        common::remove_dirs(&[&checkpoint, &parquet])?;
    }
    // With the `s3` feature and the local server, the checkpoint and the Parquet output go
    // to S3 on that same server (moto serves S3 and Kinesis on one port), partitioned by
    // date and channel and zstd-compressed.
    let mut s3_options = Vec::new();
    let mut files = match &args.output {
        Some(dir) => FilesOut::Jsonl(dir.clone()),
        None => FilesOut::Parquet(parquet.clone()),
    };
    if let (true, Some(m), None, None) = (cfg!(feature = "s3"), &local, &args.output, &args.checkpoint) {
        m.create_bucket("kinesis-wiki");
        s3_options = m.s3_options().into_iter().map(|(k, v)| (format!("s3.{k}"), v)).collect();
        checkpoint = PathBuf::from("s3://kinesis-wiki/checkpoint");
        parquet = PathBuf::from("s3://kinesis-wiki/output");
        files = FilesOut::S3Parquet("s3://kinesis-wiki/output".into());
    }
    let job = Job {
        endpoint,
        region: args.region.clone(),
        credentials,
        stream: args.stream.clone(),
        output_stream: Some(args.output_stream.clone()),
        max_records_per_trigger: args.max_records_per_trigger,
        checkpoint: checkpoint.clone(),
        files,
        s3_options: s3_options.clone(),
        progress: if contract { ProgressDisplay::Off } else { ProgressDisplay::Lines },
    };
    say(format!(
        "Step 3. Kinesis source (stream {}, TRIM_HORIZON, maxRecordsPerTrigger {}), from_json(data),\n        \
         with_watermark(time, 1 minute), group_by(window(time, 10 minutes), channel), five aggregates;\n        \
         Parquet file sink ({}) and Kinesis sink (stream {}, keyed by channel), AvailableNow\n",
        job.stream,
        job.max_records_per_trigger,
        parquet.display(),
        args.output_stream
    ));
    let t = Instant::now();
    let progress = run_job(&job)?;
    if contract {
        return Ok(());
    }
    let elapsed = t.elapsed().as_secs_f64();
    let rows_in: u64 = progress.iter().map(|p| p.num_input_rows).sum();
    let rows_out: u64 = progress.iter().map(|p| p.sink.num_output_rows).sum();
    let metrics = progress.last().and_then(|p| p.sources.first()).map(|s| s.metrics.clone()).unwrap_or_default();
    println!("\nStep 4. Summary");
    println!("        micro-batches       {}", progress.len());
    println!("        edits read          {rows_in}");
    println!("        window rows out     {rows_out}");
    println!("        wall time           {elapsed:.2} s ({:.0} edits/s)", rows_in as f64 / elapsed.max(1e-9));
    println!("        source metrics      {}", serde_json::to_string(&metrics)?);
    let out_shards = admin.shards(&args.output_stream)?;
    let mut windows = 0;
    for (id, _, _) in &out_shards {
        windows += admin.read_shard(&args.output_stream, id)?.len();
    }
    println!("        records in {:<12} {windows}", args.output_stream);
    let mut reader = Session::new().read().format("parquet");
    for (k, v) in &s3_options {
        reader = reader.option(k, v);
    }
    let written = reader.load(&parquet)?;
    println!("        rows in the Parquet output: {} ({}{})", written.height(), parquet.display(),
        if s3_options.is_empty() { "" } else { ", partitioned by date and channel, zstd" });
    println!("        checkpoint: {}", checkpoint.display());
    Ok(())
}
