//! The Kinesis source's registry entry, typed builder and provider
//! (`read_stream().format("kinesis")`): [`KinesisSourceFormat`], [`KinesisSource`],
//! [`KinesisSourceProvider`], their checked options ([`KinesisSourceConfig`]) and
//! counters ([`KinesisSourceMetrics`]). The running source, one per query run, is
//! `KinesisStream` (`stream.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use polars::prelude::{DataType, Field, Schema, SchemaRef, TimeUnit};
use sluice_engine::{
    EngineSession, Options, Result, SluiceError, Source, SourceFormat, SourceProvider, SourceProviderRef,
    StreamingDataFrame,
};

use super::client::{CLIENT_OPTIONS, ClientCounters, KinesisClientOptions};
use super::stream::KinesisStream;
use crate::without_path_or_schema;

/// The options the Kinesis source reads (names case-insensitive).
pub const SOURCE_OPTIONS: &[&str] = &[
    "streamName",
    "startingPosition",
    "startingTimestamp",
    "maxRecordsPerTrigger",
    "maxFetchRecordsPerShard",
    "maxRecordsPerRead",
    "idleTimeBetweenReadsMs",
    "failOnDataLoss",
    CLIENT_OPTIONS[0],
    CLIENT_OPTIONS[1],
    CLIENT_OPTIONS[2],
    CLIENT_OPTIONS[3],
    CLIENT_OPTIONS[4],
    CLIENT_OPTIONS[5],
    CLIENT_OPTIONS[6],
    CLIENT_OPTIONS[7],
];

/// Most records one GetRecords call may return (Kinesis' limit).
pub const MAX_RECORDS_PER_READ: u32 = 10_000;

fn invalid(message: impl Into<String>) -> SluiceError {
    SluiceError::InvalidArgument(message.into())
}

/// Where a new query starts reading (option `startingPosition`). Resolved once, when a
/// query first starts on a fresh checkpoint, and logged in `sources/<i>/0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartingPosition {
    /// `TRIM_HORIZON`: the oldest record of every shard.
    TrimHorizon,
    /// `LATEST` (the default): records that arrive after the query starts. Pinned as
    /// `AT_TIMESTAMP` of the start time (this machine's clock), so that a replay of the
    /// first batch reads the same records.
    Latest,
    /// `AT_TIMESTAMP` with `startingTimestamp`: records that arrived at or after this
    /// time, in ms since the epoch.
    AtTimestamp(i64),
}

/// The Kinesis source's checked configuration.
#[derive(Debug, Clone)]
pub struct KinesisSourceConfig {
    /// Region, endpoint, credentials, retries.
    pub client: KinesisClientOptions,
    /// `streamName`.
    pub stream_name: String,
    /// `startingPosition` (with `startingTimestamp`).
    pub starting_position: StartingPosition,
    /// `maxRecordsPerTrigger`: records per micro-batch over all shards.
    pub max_records_per_trigger: Option<u64>,
    /// `maxFetchRecordsPerShard` (default 100,000): records one batch reads from one
    /// shard at most, with or without `maxRecordsPerTrigger` (bounds memory: a batch's
    /// records are held until it commits).
    pub max_fetch_records_per_shard: u64,
    /// `maxRecordsPerRead` (default 10,000, Kinesis' maximum): the `Limit` of each
    /// GetRecords call.
    pub max_records_per_read: u32,
    /// `idleTimeBetweenReadsMs` (default 1,000, the KCL's): after a shard was found
    /// caught up, how long before it is read again (Kinesis allows 5 reads per second
    /// and shard).
    pub idle_time_between_reads: Duration,
    /// `failOnDataLoss` (default true): whether a shard that expired before it was read
    /// to its end fails the query (else it is skipped with a warning and counted).
    pub fail_on_data_loss: bool,
}

impl KinesisSourceConfig {
    /// Checks the options (names case-insensitive):
    ///
    /// | option | default | |
    /// |---|---|---|
    /// | `streamName` | required | the stream |
    /// | `startingPosition` | `LATEST` | `TRIM_HORIZON`, `LATEST` or `AT_TIMESTAMP` (then `startingTimestamp`) |
    /// | `startingTimestamp` | | with `AT_TIMESTAMP`: RFC 3339 (`2015-09-12T00:00:00Z`) or epoch ms |
    /// | `maxRecordsPerTrigger` | none | records per batch over all shards, shared evenly (max-min fair) |
    /// | `maxFetchRecordsPerShard` | 100000 | records per batch and shard at most |
    /// | `maxRecordsPerRead` | 10000 | `Limit` of each GetRecords call |
    /// | `idleTimeBetweenReadsMs` | 1000 | pause before reading a caught-up shard again |
    /// | `failOnDataLoss` | `true` | fail (true) or warn and skip (false) when a shard expired unread |
    /// | `region`, `endpointUrl`, `awsAccessKeyId`, `awsSecretKey`, `awsSessionToken`, `numRetries`, `retryIntervalMs`, `maxRetryIntervalMs` | | see [`KinesisClientOptions`] |
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] naming the option.
    pub fn from_options(options: &Options) -> Result<Self> {
        let client = KinesisClientOptions::new(options, "the Kinesis source")?;
        let stream_name = options.require("streamName", "the Kinesis source")?.trim().to_string();
        let timestamp = options.get("startingTimestamp").map(str::trim).map(parse_timestamp_ms).transpose()?;
        let starting_position = match options.get("startingPosition").map(|v| v.trim().to_ascii_uppercase()) {
            None => StartingPosition::Latest,
            Some(v) if v == "LATEST" => StartingPosition::Latest,
            Some(v) if v == "TRIM_HORIZON" => StartingPosition::TrimHorizon,
            Some(v) if v == "AT_TIMESTAMP" => StartingPosition::AtTimestamp(timestamp.ok_or_else(|| {
                invalid("option startingPosition AT_TIMESTAMP needs the option startingTimestamp (RFC 3339 or epoch ms)")
            })?),
            Some(v) => {
                return Err(invalid(format!(
                    "option startingPosition: {v:?} is not TRIM_HORIZON, LATEST or AT_TIMESTAMP"
                )));
            }
        };
        if timestamp.is_some() && !matches!(starting_position, StartingPosition::AtTimestamp(_)) {
            return Err(invalid("option startingTimestamp needs startingPosition=AT_TIMESTAMP"));
        }
        let max_records_per_read = match options.positive_u64("maxRecordsPerRead")? {
            None => MAX_RECORDS_PER_READ,
            Some(n) if n <= u64::from(MAX_RECORDS_PER_READ) => n as u32,
            Some(n) => return Err(invalid(format!("option maxRecordsPerRead: {n} is above Kinesis' limit of 10000"))),
        };
        Ok(Self {
            client,
            stream_name,
            starting_position,
            max_records_per_trigger: options.positive_u64("maxRecordsPerTrigger")?,
            max_fetch_records_per_shard: options.positive_u64("maxFetchRecordsPerShard")?.unwrap_or(100_000),
            max_records_per_read,
            idle_time_between_reads: Duration::from_millis(options.u64("idleTimeBetweenReadsMs")?.unwrap_or(1000)),
            fail_on_data_loss: options.bool("failOnDataLoss")?.unwrap_or(true),
        })
    }

    /// `KinesisSource[<stream>]`.
    pub fn description(&self) -> String {
        format!("KinesisSource[{}]", self.stream_name)
    }

    /// The Polars schema of every batch:
    ///
    /// | column | type | |
    /// |---|---|---|
    /// | `data` | Binary | the record's payload |
    /// | `stream` | String | the stream's name |
    /// | `partitionKey` | String | |
    /// | `sequenceNumber` | String | decimal, up to 129 digits (compare by length, then text) |
    /// | `shardId` | String | e.g. `shardId-000000000000` |
    /// | `approximateArrivalTimestamp` | Datetime(µs), UTC | when Kinesis received the record (ms precision) |
    ///
    /// Rows come in shard id order (a parent shard before its children), each shard's in
    /// sequence-number order.
    pub fn schema(&self) -> Schema {
        kinesis_schema()
    }
}

/// The schema of Kinesis source batches; see [`KinesisSourceConfig::schema`].
pub fn kinesis_schema() -> Schema {
    Schema::from_iter([
        Field::new("data".into(), DataType::Binary),
        Field::new("stream".into(), DataType::String),
        Field::new("partitionKey".into(), DataType::String),
        Field::new("sequenceNumber".into(), DataType::String),
        Field::new("shardId".into(), DataType::String),
        Field::new("approximateArrivalTimestamp".into(), DataType::Datetime(TimeUnit::Microseconds, None)),
    ])
}

/// An RFC 3339 time or epoch milliseconds, in ms.
fn parse_timestamp_ms(v: &str) -> Result<i64> {
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| t.timestamp_millis())
        .map_err(|_| invalid(format!("option startingTimestamp: {v:?} is not RFC 3339 (2015-09-12T00:00:00Z) or epoch ms")))
}

/// Counters of one Kinesis source across its query runs (shared by the provider and
/// every run it creates); reported in each batch's progress by [`KinesisSourceMetrics::to_map`].
#[derive(Debug, Default)]
pub struct KinesisSourceMetrics {
    pub(crate) client: Arc<ClientCounters>,
    pub(crate) records_read: AtomicU64,
    pub(crate) bytes_read: AtomicU64,
    pub(crate) get_records_calls: AtomicU64,
    pub(crate) replayed_records: AtomicU64,
    pub(crate) millis_behind_latest: AtomicU64,
    pub(crate) open_shards: AtomicU64,
    pub(crate) closed_shards_read: AtomicU64,
    pub(crate) data_loss_events: AtomicU64,
}

impl KinesisSourceMetrics {
    /// Requests answered `ProvisionedThroughputExceededException` or
    /// `LimitExceededException`, each attempt counted (all were retried).
    pub fn throttled_requests(&self) -> u64 {
        self.client.throttled()
    }
    /// Records fetched from Kinesis (replays and prefetches included).
    pub fn records_read(&self) -> u64 {
        self.records_read.load(Ordering::Relaxed)
    }
    /// Bytes of `data` fetched.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }
    /// GetRecords calls that returned (throttled attempts are not in it).
    pub fn get_records_calls(&self) -> u64 {
        self.get_records_calls.load(Ordering::Relaxed)
    }
    /// Records read again from Kinesis for a logged range not in memory (a replay).
    pub fn replayed_records(&self) -> u64 {
        self.replayed_records.load(Ordering::Relaxed)
    }
    /// Data-loss events skipped with a warning (`failOnDataLoss=false`).
    pub fn data_loss_events(&self) -> u64 {
        self.data_loss_events.load(Ordering::Relaxed)
    }
    /// The source's progress metrics: `throttledRequests`, `recordsRead`, `bytesRead`,
    /// `getRecordsCalls`, `replayedRecords`, `maxMillisBehindLatest` (of the latest
    /// planning's reads), `openShards`, `closedShardsRead`, `dataLossEvents`.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
        BTreeMap::from([
            ("throttledRequests".into(), self.throttled_requests().to_string()),
            ("recordsRead".into(), get(&self.records_read)),
            ("bytesRead".into(), get(&self.bytes_read)),
            ("getRecordsCalls".into(), get(&self.get_records_calls)),
            ("replayedRecords".into(), get(&self.replayed_records)),
            ("maxMillisBehindLatest".into(), get(&self.millis_behind_latest)),
            ("openShards".into(), get(&self.open_shards)),
            ("closedShardsRead".into(), get(&self.closed_shards_read)),
            ("dataLossEvents".into(), get(&self.data_loss_events)),
        ])
    }
}

/// The `kinesis` source format of `read_stream().format("kinesis")`; the `sluice`
/// facade registers it (cargo feature `kinesis`). The path given to `load` must be empty
/// (`load("")`); the options are those of [`KinesisSourceConfig::from_options`].
#[derive(Debug, Clone, Copy, Default)]
pub struct KinesisSourceFormat;

impl SourceFormat for KinesisSourceFormat {
    /// # Errors
    /// [`SluiceError::InvalidArgument`] for a non-empty path, a user schema (the schema
    /// is fixed) or a bad option.
    fn create(&self, path: &str, schema: Option<SchemaRef>, options: &Options) -> Result<SourceProviderRef> {
        without_path_or_schema(
            "the Kinesis source",
            path,
            schema.as_ref(),
            "call load(\"\") and name the stream with the option streamName",
            "the Kinesis source has a fixed schema and cannot be set with a custom one",
        )?;
        Ok(Arc::new(KinesisSourceProvider::new(KinesisSourceConfig::from_options(options)?)))
    }
    fn known_options(&self) -> &'static [&'static str] {
        SOURCE_OPTIONS
    }
}

/// Typed builder of a Kinesis source, beside `read_stream().format("kinesis")`:
///
/// ```no_run
/// # use sluice_connectors::kinesis::KinesisSource;
/// # fn main() -> sluice_engine::Result<()> {
/// let provider = KinesisSource::new("wiki_edits")
///     .region("eu-west-1")
///     .starting_position("TRIM_HORIZON")
///     .max_records_per_trigger(2000)
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct KinesisSource {
    options: Options,
}

impl KinesisSource {
    /// A source reading the stream `stream_name`.
    pub fn new(stream_name: &str) -> Self {
        Self { options: Options::new().with("streamName", stream_name) }
    }
    /// The stream's region.
    pub fn region(self, region: &str) -> Self {
        self.option("region", region)
    }
    /// Another endpoint, e.g. a local server `http://127.0.0.1:5000`.
    pub fn endpoint_url(self, url: &str) -> Self {
        self.option("endpointUrl", url)
    }
    /// Static credentials instead of the standard chain.
    pub fn credentials(self, access_key_id: &str, secret_key: &str) -> Self {
        self.option("awsAccessKeyId", access_key_id).option("awsSecretKey", secret_key)
    }
    /// `TRIM_HORIZON`, `LATEST` or `AT_TIMESTAMP` (then [`KinesisSource::starting_timestamp`]).
    pub fn starting_position(self, position: &str) -> Self {
        self.option("startingPosition", position)
    }
    /// `AT_TIMESTAMP` at `ms` since the epoch.
    pub fn starting_timestamp(self, ms: i64) -> Self {
        self.option("startingPosition", "AT_TIMESTAMP").option("startingTimestamp", ms)
    }
    /// At most `n` records per micro-batch over all shards.
    pub fn max_records_per_trigger(self, n: u64) -> Self {
        self.option("maxRecordsPerTrigger", n)
    }
    /// Any option of [`KinesisSourceConfig::from_options`].
    pub fn option(mut self, key: &str, value: impl ToString) -> Self {
        self.options.set(key, value);
        self
    }
    /// The typed provider (its [`KinesisSourceProvider::metrics`] are shared with the
    /// query).
    ///
    /// # Errors
    /// As [`KinesisSourceConfig::from_options`].
    pub fn provider(&self) -> Result<KinesisSourceProvider> {
        Ok(KinesisSourceProvider::new(KinesisSourceConfig::from_options(&self.options)?))
    }
    /// The provider to hand to `Session::stream_from`.
    ///
    /// # Errors
    /// As [`KinesisSourceConfig::from_options`].
    pub fn build(&self) -> Result<SourceProviderRef> {
        Ok(Arc::new(self.provider()?))
    }
    /// A streaming data frame reading this source in `session`.
    ///
    /// # Errors
    /// As [`KinesisSourceConfig::from_options`].
    pub fn to_df(&self, session: &EngineSession) -> Result<StreamingDataFrame> {
        Ok(session.stream_from(self.build()?))
    }
}

/// Creates Kinesis sources; cheap to clone (clones share config and metrics).
#[derive(Debug, Clone)]
pub struct KinesisSourceProvider {
    cfg: Arc<KinesisSourceConfig>,
    schema: SchemaRef,
    metrics: Arc<KinesisSourceMetrics>,
}

impl KinesisSourceProvider {
    /// A provider for `cfg`.
    pub fn new(cfg: KinesisSourceConfig) -> Self {
        Self { schema: Arc::new(cfg.schema()), cfg: Arc::new(cfg), metrics: Arc::default() }
    }
    /// The configuration.
    pub fn config(&self) -> &KinesisSourceConfig {
        &self.cfg
    }
    /// The metrics of every source this provider created.
    pub fn metrics(&self) -> Arc<KinesisSourceMetrics> {
        self.metrics.clone()
    }
}

impl SourceProvider for KinesisSourceProvider {
    fn description(&self) -> String {
        self.cfg.description()
    }
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    /// # Errors
    /// [`SluiceError::InvalidArgument`] when no AWS region is known.
    fn create(&self) -> Result<Box<dyn Source>> {
        Ok(Box::new(KinesisStream::new(self.cfg.clone(), self.metrics.clone())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> Options {
        Options::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn options_are_checked() {
        let with = |extra: &[(&str, &str)]| KinesisSourceConfig::from_options(&opts(&[&[("streamName", "s")][..], extra].concat()));
        assert!(KinesisSourceConfig::from_options(&opts(&[])).unwrap_err().to_string().contains("streamName"));
        let c = with(&[]).unwrap();
        assert_eq!(c.starting_position, StartingPosition::Latest);
        assert_eq!((c.max_records_per_read, c.max_fetch_records_per_shard), (10_000, 100_000));
        assert_eq!(c.description(), "KinesisSource[s]");
        assert_eq!(with(&[("startingposition", "trim_horizon")]).unwrap().starting_position, StartingPosition::TrimHorizon);
        let t = with(&[("startingPosition", "AT_TIMESTAMP"), ("startingTimestamp", "2015-09-12T00:00:00Z")]).unwrap();
        assert_eq!(t.starting_position, StartingPosition::AtTimestamp(1_442_016_000_000));
        let t = with(&[("startingPosition", "AT_TIMESTAMP"), ("startingTimestamp", "1442016000000")]).unwrap();
        assert_eq!(t.starting_position, StartingPosition::AtTimestamp(1_442_016_000_000));
        for bad in [
            &[("startingPosition", "AT_TIMESTAMP")][..],
            &[("startingPosition", "EARLIEST")],
            &[("startingTimestamp", "1")],
            &[("maxRecordsPerRead", "10001")],
            &[("maxRecordsPerTrigger", "0")],
            &[("awsAccessKeyId", "a")],
            &[("awsSessionToken", "t")],
            &[("retryIntervalMs", "500"), ("maxRetryIntervalMs", "100")],
        ] {
            assert!(with(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_option_given_is_read() {
        let mut pairs: Vec<(&str, &str)> = SOURCE_OPTIONS
            .iter()
            .map(|k| {
                (*k, match *k {
                    "startingPosition" => "AT_TIMESTAMP",
                    "startingTimestamp" | "maxRecordsPerTrigger" | "maxFetchRecordsPerShard" | "maxRecordsPerRead" => "5",
                    "idleTimeBetweenReadsMs" | "numRetries" | "retryIntervalMs" | "maxRetryIntervalMs" => "5",
                    "failOnDataLoss" => "false",
                    _ => "x",
                })
            })
            .collect();
        pairs.push(("streamNmae", "typo"));
        let o = opts(&pairs);
        KinesisSourceConfig::from_options(&o).unwrap();
        assert_eq!(o.unread(), ["streamNmae"]);
    }
}
