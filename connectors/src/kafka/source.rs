//! The Kafka source's registry entry, typed builder and provider (Spark's
//! `KafkaSourceProvider`, `format("kafka")`): [`KafkaSourceFormat`], [`KafkaSource`],
//! [`KafkaSourceProvider`], and their checked options ([`KafkaSourceConfig`]). The
//! running source, one per query run, is `KafkaStream` (`stream.rs`).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use arrow::datatypes::{DataType as ArrowDataType, Field as ArrowField, Fields};
use polars::prelude::{DataType, Field, Schema, SchemaRef, TimeUnit};
use rdkafka::consumer::BaseConsumer;
use serde_json::Value;
use sluice_engine::{
    EngineSession, Options, Result, SluiceError, Source, SourceFormat, SourceProvider, SourceProviderRef,
    StreamingDataFrame,
};

use super::client::KafkaClientOptions;
use super::offsets::{KafkaSourceOffset, TopicPartition};
use super::stream::KafkaStream;
use crate::without_path_or_schema;

/// The librdkafka parameters Spark's Kafka source rejects, and why.
const REJECTED_PARAMS: &[(&str, &str)] = &[
    (
        "auto.offset.reset",
        "set the source option 'startingOffsets' to 'earliest' or 'latest' instead: Sluice manages the \
         offsets it reads, and a restarted query always continues where it left off",
    ),
    ("enable.auto.commit", "Sluice commits no offsets to Kafka: they are kept in the checkpoint"),
    ("key.deserializer", "keys are read as bytes: use DataFrame operations to decode them"),
    ("value.deserializer", "values are read as bytes: use DataFrame operations (from_json) to decode them"),
    ("interceptor.classes", "Sluice does not run Java interceptors"),
];

/// The options the Kafka source reads (Spark's names); `kafka.*` stands for every
/// librdkafka property.
pub const SOURCE_OPTIONS: &[&str] = &[
    "kafka.bootstrap.servers",
    "subscribe",
    "subscribePattern",
    "assign",
    "startingOffsets",
    "maxOffsetsPerTrigger",
    "failOnDataLoss",
    "includeHeaders",
    "kafkaConsumer.pollTimeoutMs",
    "fetchOffset.numRetries",
    "fetchOffset.retryIntervalMs",
    "kafka.*",
];

fn invalid(message: impl Into<String>) -> SluiceError {
    SluiceError::InvalidArgument(message.into())
}

/// Which partitions the source reads (Spark's `subscribe`, `subscribePattern`, `assign`).
#[derive(Debug, Clone)]
pub enum Subscription {
    /// Every partition of these topics (`subscribe`, comma-separated).
    Subscribe(Vec<String>),
    /// Every partition of every topic whose whole name matches the regular expression
    /// (`subscribePattern`).
    Pattern(regex::Regex),
    /// Exactly these partitions (`assign`, JSON `{"topicA":[0,1],"topicB":[2,4]}`).
    Assign(BTreeSet<TopicPartition>),
}

impl fmt::Display for Subscription {
    /// Spark's form: `Subscribe[a,b]`, `SubscribePattern[a.*]`, `Assign[a-0, a-1]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subscription::Subscribe(t) => write!(f, "Subscribe[{}]", t.join(",")),
            Subscription::Pattern(p) => write!(f, "SubscribePattern[{}]", p.as_str()),
            Subscription::Assign(tps) => {
                write!(f, "Assign[{}]", tps.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", "))
            }
        }
    }
}

/// Where a new query starts (Spark's `startingOffsets`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartingOffsets {
    /// The earliest offset of every partition.
    Earliest,
    /// The latest offset of every partition (the default).
    Latest,
    /// Per partition, an offset, or -2 for earliest and -1 for latest. With `subscribe`
    /// or `subscribePattern` every partition must be listed.
    Specific(BTreeMap<TopicPartition, i64>),
}

/// The Kafka source's checked configuration.
#[derive(Debug, Clone)]
pub struct KafkaSourceConfig {
    /// `kafka.bootstrap.servers` and the other `kafka.*` options.
    pub client: KafkaClientOptions,
    /// `subscribe`, `subscribePattern` or `assign`.
    pub subscription: Subscription,
    /// `startingOffsets`.
    pub starting_offsets: StartingOffsets,
    /// `maxOffsetsPerTrigger`: records per micro-batch, over all partitions.
    pub max_offsets_per_trigger: Option<u64>,
    /// `failOnDataLoss` (default true).
    pub fail_on_data_loss: bool,
    /// `includeHeaders` (default false): adds the `headers` column.
    pub include_headers: bool,
    /// `kafkaConsumer.pollTimeoutMs` (default 120,000 ms): how long reading a range may
    /// wait for records before failing the batch.
    pub poll_timeout: Duration,
    /// `fetchOffset.numRetries` (default 3): attempts to list offsets before failing.
    pub fetch_offset_retries: u32,
    /// `fetchOffset.retryIntervalMs` (default 10 ms).
    pub fetch_offset_retry_interval: Duration,
}

impl KafkaSourceConfig {
    /// Checks Spark's options (names case-insensitive):
    ///
    /// | option | default | meaning |
    /// |---|---|---|
    /// | `kafka.bootstrap.servers` | required | `host:port,...` |
    /// | `subscribe` / `subscribePattern` / `assign` | exactly one | topics, a regex over topic names, or `{"t":[0,1]}` |
    /// | `startingOffsets` | `latest` | `earliest`, `latest` or `{"t":{"0":23,"1":-2}}` (-2 earliest, -1 latest) |
    /// | `maxOffsetsPerTrigger` | none | records per batch, split across partitions by lag |
    /// | `failOnDataLoss` | `true` | fail (true) or warn and skip (false) on lost records |
    /// | `includeHeaders` | `false` | add the `headers` column |
    /// | `kafkaConsumer.pollTimeoutMs` | 120000 | how long reading a range may wait |
    /// | `fetchOffset.numRetries`, `fetchOffset.retryIntervalMs` | 3, 10 | listing offsets |
    /// | `kafka.<librdkafka property>` | | passed to librdkafka (`kafka.isolation.level`, `kafka.security.protocol`, ...) |
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] naming the option: a missing or second
    /// subscription, a bad value, options Spark rejects (`kafka.auto.offset.reset`,
    /// `kafka.enable.auto.commit`, `kafka.key.deserializer`, `kafka.value.deserializer`,
    /// `endingOffsets` in a stream) and those Sluice does not implement
    /// (`startingOffsetsByTimestamp`, `startingTimestamp`, `minOffsetsPerTrigger`,
    /// `maxTriggerDelay`).
    pub fn from_options(options: &Options) -> Result<Self> {
        let client = KafkaClientOptions::new(options, "the Kafka source", REJECTED_PARAMS)?;
        for unsupported in ["startingOffsetsByTimestamp", "startingTimestamp", "minOffsetsPerTrigger", "maxTriggerDelay"]
        {
            options.reject(unsupported, "Sluice's Kafka source does not implement it")?;
        }
        options.reject("endingOffsets", "it is not valid in streaming queries (Spark rejects it too)")?;
        let get = |key: &str| options.get(key);

        let given: Vec<&str> =
            ["subscribe", "subscribePattern", "assign"].into_iter().filter(|k| get(k).is_some()).collect();
        let subscription = match given.as_slice() {
            ["subscribe"] => {
                let topics: Vec<String> = get("subscribe")
                    .unwrap_or_default()
                    .split(',')
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .collect();
                if topics.is_empty() {
                    return Err(invalid("option subscribe: no valid topics in the comma-separated list"));
                }
                Subscription::Subscribe(topics)
            }
            ["subscribePattern"] => {
                let p = get("subscribePattern").unwrap_or_default().trim();
                if p.is_empty() {
                    return Err(invalid("option subscribePattern: the pattern is empty"));
                }
                let re = regex::Regex::new(&format!("^(?:{p})$"))
                    .map_err(|e| invalid(format!("option subscribePattern: {p:?} is not a valid pattern: {e}")))?;
                Subscription::Pattern(re)
            }
            ["assign"] => {
                let text = get("assign").unwrap_or_default();
                let v: Value = serde_json::from_str(text).map_err(|e| {
                    invalid(format!("option assign: {text:?} is not JSON like {{\"topicA\":[0,1]}}: {e}"))
                })?;
                let mut tps = BTreeSet::new();
                let topics =
                    v.as_object().ok_or_else(|| invalid(format!("option assign: expected {{\"topicA\":[0,1]}}, got {v}")))?;
                for (topic, parts) in topics {
                    for p in parts.as_array().into_iter().flatten() {
                        let p = p.as_i64().and_then(|p| i32::try_from(p).ok()).filter(|p| *p >= 0).ok_or_else(|| {
                            invalid(format!("option assign: topic {topic:?} lists {p}, not a partition number"))
                        })?;
                        tps.insert(TopicPartition::new(topic.clone(), p));
                    }
                }
                if tps.is_empty() {
                    return Err(invalid("option assign: no topic partitions given"));
                }
                Subscription::Assign(tps)
            }
            [] => {
                return Err(invalid(
                    "one of the options subscribe, subscribePattern or assign must be specified for the Kafka source",
                ));
            }
            many => {
                return Err(invalid(format!(
                    "only one of the options subscribe, subscribePattern, assign can be specified for the Kafka \
                     source, not {}",
                    many.join(" and ")
                )));
            }
        };

        let starting_offsets = match get("startingOffsets").map(str::trim) {
            None => StartingOffsets::Latest,
            Some(s) if s.eq_ignore_ascii_case("latest") => StartingOffsets::Latest,
            Some(s) if s.eq_ignore_ascii_case("earliest") => StartingOffsets::Earliest,
            Some(s) => {
                let v: Value = serde_json::from_str(s).map_err(|_| {
                    invalid(format!(
                        "option startingOffsets: {s:?} is not earliest, latest or JSON like {{\"topic\":{{\"0\":23,\"1\":-2}}}}"
                    ))
                })?;
                let parsed = KafkaSourceOffset::from_json(&v).map_err(|m| invalid(format!("option startingOffsets: {m}")))?;
                if let Some((tp, off)) = parsed.partitions.iter().find(|(_, o)| **o < -2) {
                    return Err(invalid(format!(
                        "option startingOffsets: {off} for {tp} is not an offset (use -2 for earliest, -1 for latest)"
                    )));
                }
                StartingOffsets::Specific(parsed.partitions)
            }
        };
        let max_offsets_per_trigger = options.positive_u64("maxOffsetsPerTrigger")?;
        let fail_on_data_loss = options.bool("failOnDataLoss")?.unwrap_or(true);
        let include_headers = options.bool("includeHeaders")?.unwrap_or(false);
        let poll_timeout = Duration::from_millis(options.positive_u64("kafkaConsumer.pollTimeoutMs")?.unwrap_or(120_000));
        let fetch_offset_retries = options.parse::<u32>("fetchOffset.numRetries", "a count")?.unwrap_or(3);
        let fetch_offset_retry_interval =
            Duration::from_millis(options.parse::<u64>("fetchOffset.retryIntervalMs", "a number of ms")?.unwrap_or(10));
        Ok(Self {
            client,
            subscription,
            starting_offsets,
            max_offsets_per_trigger,
            fail_on_data_loss,
            include_headers,
            poll_timeout,
            fetch_offset_retries,
            fetch_offset_retry_interval,
        })
    }

    /// `KafkaV2[Subscribe[topic]]`, as Spark names the source in progress reports.
    pub fn description(&self) -> String {
        format!("KafkaV2[{}]", self.subscription)
    }

    /// The Polars schema of every batch (Spark's Kafka source schema):
    ///
    /// | column | type | |
    /// |---|---|---|
    /// | `key` | Binary | null when the record has no key |
    /// | `value` | Binary | null for tombstones |
    /// | `topic` | String | |
    /// | `partition` | Int32 | |
    /// | `offset` | Int64 | |
    /// | `timestamp` | Datetime(µs) | the record's timestamp (ms precision), UTC |
    /// | `timestampType` | Int32 | 0 CreateTime, 1 LogAppendTime, -1 none |
    /// | `headers` | List(Struct{key: String, value: Binary}) | with `includeHeaders`; null when none |
    pub fn schema(&self) -> Schema {
        kafka_schema(self.include_headers)
    }
}

pub(crate) fn header_fields() -> Fields {
    Fields::from(vec![
        ArrowField::new("key", ArrowDataType::Utf8View, false),
        ArrowField::new("value", ArrowDataType::BinaryView, true),
    ])
}

/// The schema of Kafka source batches; see [`KafkaSourceConfig::schema`].
pub fn kafka_schema(include_headers: bool) -> Schema {
    let mut fields = vec![
        Field::new("key".into(), DataType::Binary),
        Field::new("value".into(), DataType::Binary),
        Field::new("topic".into(), DataType::String),
        Field::new("partition".into(), DataType::Int32),
        Field::new("offset".into(), DataType::Int64),
        Field::new("timestamp".into(), DataType::Datetime(TimeUnit::Microseconds, None)),
        Field::new("timestampType".into(), DataType::Int32),
    ];
    if include_headers {
        fields.push(Field::new(
            "headers".into(),
            DataType::List(Box::new(DataType::Struct(vec![
                Field::new("key".into(), DataType::String),
                Field::new("value".into(), DataType::Binary),
            ]))),
        ));
    }
    Schema::from_iter(fields)
}

/// Counters of one Kafka source across its query runs (shared by the provider and every
/// source it creates). Spark reports the lag as `minOffsetsBehindLatest` /
/// `maxOffsetsBehindLatest` / `avgOffsetsBehindLatest`; see [`KafkaSourceMetrics::to_map`].
#[derive(Debug, Default)]
pub struct KafkaSourceMetrics {
    pub(crate) data_loss_events: AtomicU64,
    pub(crate) records_skipped: AtomicU64,
    pub(crate) records_read: AtomicU64,
    min_behind: AtomicU64,
    max_behind: AtomicU64,
    sum_behind: AtomicU64,
    partitions: AtomicU64,
}

impl KafkaSourceMetrics {
    /// Data-loss events skipped with a warning (`failOnDataLoss=false`).
    pub fn data_loss_events(&self) -> u64 {
        self.data_loss_events.load(Ordering::Relaxed)
    }
    /// Offsets skipped because of data loss (records aged out, partitions gone).
    pub fn records_skipped(&self) -> u64 {
        self.records_skipped.load(Ordering::Relaxed)
    }
    /// Records read by `get_batch`, replays included.
    pub fn records_read(&self) -> u64 {
        self.records_read.load(Ordering::Relaxed)
    }
    /// Spark's source metrics after the latest planned batch: `minOffsetsBehindLatest`,
    /// `maxOffsetsBehindLatest`, `avgOffsetsBehindLatest` (records between the batch's end
    /// and the latest offset, per partition), plus Sluice's `dataLossEvents`,
    /// `recordsSkipped`, `recordsRead`.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let n = self.partitions.load(Ordering::Relaxed);
        let avg = if n == 0 { 0.0 } else { self.sum_behind.load(Ordering::Relaxed) as f64 / n as f64 };
        BTreeMap::from([
            ("minOffsetsBehindLatest".into(), self.min_behind.load(Ordering::Relaxed).to_string()),
            ("maxOffsetsBehindLatest".into(), self.max_behind.load(Ordering::Relaxed).to_string()),
            ("avgOffsetsBehindLatest".into(), format!("{avg:.1}")),
            ("dataLossEvents".into(), self.data_loss_events().to_string()),
            ("recordsSkipped".into(), self.records_skipped().to_string()),
            ("recordsRead".into(), self.records_read().to_string()),
        ])
    }
    pub(crate) fn record_lag(&self, end: &BTreeMap<TopicPartition, i64>, latest: &BTreeMap<TopicPartition, i64>) {
        let lags: Vec<u64> = end.iter().map(|(tp, e)| latest.get(tp).map_or(0, |l| (l - e).max(0) as u64)).collect();
        self.min_behind.store(lags.iter().copied().min().unwrap_or(0), Ordering::Relaxed);
        self.max_behind.store(lags.iter().copied().max().unwrap_or(0), Ordering::Relaxed);
        self.sum_behind.store(lags.iter().sum(), Ordering::Relaxed);
        self.partitions.store(lags.len() as u64, Ordering::Relaxed);
    }
}

/// The `kafka` source format of `read_stream().format("kafka")`; the `sluice` facade
/// registers it. The path given to `load` must be empty (`load("")`, Spark's `load()`);
/// the options are those of [`KafkaSourceConfig::from_options`].
#[derive(Debug, Clone, Copy, Default)]
pub struct KafkaSourceFormat;

impl SourceFormat for KafkaSourceFormat {
    /// # Errors
    /// [`SluiceError::InvalidArgument`] for a non-empty path, a user schema (the Kafka
    /// source's schema is fixed, as in Spark) or a bad option.
    fn create(&self, path: &str, schema: Option<SchemaRef>, options: &Options) -> Result<SourceProviderRef> {
        without_path_or_schema(
            "the Kafka source",
            path,
            schema.as_ref(),
            "call load(\"\") and name the topics with the option subscribe, subscribePattern or assign",
            "the Kafka source has a fixed schema and cannot be set with a custom one",
        )?;
        Ok(Arc::new(KafkaSourceProvider::new(KafkaSourceConfig::from_options(options)?)))
    }
    fn known_options(&self) -> &'static [&'static str] {
        SOURCE_OPTIONS
    }
}

/// Typed builder of a Kafka source, beside `read_stream().format("kafka")`:
///
/// ```no_run
/// # use sluice_connectors::kafka::KafkaSource;
/// # fn main() -> sluice_engine::Result<()> {
/// let provider = KafkaSource::new("localhost:9092")
///     .subscribe(["wiki"])
///     .starting_offsets("earliest")
///     .max_offsets_per_trigger(2000)
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct KafkaSource {
    options: Options,
}

impl KafkaSource {
    /// A source reading from the cluster at `bootstrap_servers` (`host:port,...`).
    pub fn new(bootstrap_servers: &str) -> Self {
        Self { options: Options::new().with("kafka.bootstrap.servers", bootstrap_servers) }
    }
    /// Every partition of `topics` (Spark's `subscribe`).
    pub fn subscribe<I, S>(self, topics: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let list: Vec<String> = topics.into_iter().map(|t| t.as_ref().to_string()).collect();
        self.option("subscribe", list.join(","))
    }
    /// Every partition of the topics whose whole name matches `regex` (Spark's
    /// `subscribePattern`), re-listed at every batch.
    pub fn subscribe_pattern(self, regex: &str) -> Self {
        self.option("subscribePattern", regex)
    }
    /// Exactly these partitions (Spark's `assign`).
    pub fn assign(self, partitions: &[TopicPartition]) -> Self {
        let mut m: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for tp in partitions {
            m.entry(tp.topic.as_str()).or_default().push(tp.partition);
        }
        self.option("assign", serde_json::to_string(&m).unwrap_or_default())
    }
    /// `earliest`, `latest` or JSON `{"topic":{"0":23,"1":-2}}` (Spark's `startingOffsets`).
    pub fn starting_offsets(self, s: &str) -> Self {
        self.option("startingOffsets", s)
    }
    /// At most about `n` records per micro-batch, over all partitions.
    pub fn max_offsets_per_trigger(self, n: u64) -> Self {
        self.option("maxOffsetsPerTrigger", n)
    }
    /// Whether lost records fail the query (default true).
    pub fn fail_on_data_loss(self, fail: bool) -> Self {
        self.option("failOnDataLoss", fail)
    }
    /// Adds the `headers` column.
    pub fn include_headers(self, include: bool) -> Self {
        self.option("includeHeaders", include)
    }
    /// Any option of [`KafkaSourceConfig::from_options`], e.g. `kafka.isolation.level`.
    pub fn option(mut self, key: &str, value: impl ToString) -> Self {
        self.options.set(key, value);
        self
    }
    /// The typed provider (its [`KafkaSourceProvider::metrics`] are shared with the query).
    ///
    /// # Errors
    /// As [`KafkaSourceConfig::from_options`].
    pub fn provider(&self) -> Result<KafkaSourceProvider> {
        Ok(KafkaSourceProvider::new(KafkaSourceConfig::from_options(&self.options)?))
    }
    /// The provider to hand to `Session::stream_from`.
    ///
    /// # Errors
    /// As [`KafkaSourceConfig::from_options`].
    pub fn build(&self) -> Result<SourceProviderRef> {
        Ok(Arc::new(self.provider()?))
    }
    /// A streaming data frame reading this source in `session`.
    ///
    /// # Errors
    /// As [`KafkaSourceConfig::from_options`].
    pub fn to_df(&self, session: &EngineSession) -> Result<StreamingDataFrame> {
        Ok(session.stream_from(self.build()?))
    }
}

/// Creates Kafka sources; cheap to clone (clones share config and metrics).
#[derive(Debug, Clone)]
pub struct KafkaSourceProvider {
    cfg: Arc<KafkaSourceConfig>,
    schema: SchemaRef,
    metrics: Arc<KafkaSourceMetrics>,
}

impl KafkaSourceProvider {
    /// A provider for `cfg`.
    pub fn new(cfg: KafkaSourceConfig) -> Self {
        let schema = Arc::new(cfg.schema());
        Self { cfg: Arc::new(cfg), schema, metrics: Arc::default() }
    }
    /// The configuration.
    pub fn config(&self) -> &KafkaSourceConfig {
        &self.cfg
    }
    /// The metrics of every source this provider created.
    pub fn metrics(&self) -> Arc<KafkaSourceMetrics> {
        self.metrics.clone()
    }
}

impl SourceProvider for KafkaSourceProvider {
    fn description(&self) -> String {
        self.cfg.description()
    }
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    /// # Errors
    /// [`SluiceError::Source`] when librdkafka rejects the client configuration.
    fn create(&self) -> Result<Box<dyn Source>> {
        Ok(Box::new(KafkaStream::new(self.cfg.clone(), self.metrics.clone())?))
    }
}

/// A consumer for `cfg`: no group, no commits, partition EOF events, and
/// `auto.offset.reset=error` so that an offset out of range is reported, never reset.
pub(crate) fn create_consumer(cfg: &KafkaSourceConfig) -> Result<BaseConsumer> {
    // librdkafka's `assign` needs a group id, though the group is never joined and no
    // offsets are committed (Spark also makes up a unique one per query).
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let group = format!("sluice-kafka-source-{}-{nanos}", std::process::id());
    let mut config = cfg.client.client_config(&[
        ("group.id", &group),
        // Spark's Java consumer reads uncommitted records unless told otherwise.
        ("isolation.level", "read_uncommitted"),
        // A new assignment waits for the fetch in flight: keep long polls short.
        ("fetch.wait.max.ms", "100"),
    ]);
    // Whatever the user's parameters say: Sluice keeps the offsets.
    config
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "error");
    config.create().map_err(|e| SluiceError::Source {
        name: cfg.description(),
        message: format!("cannot create the Kafka consumer (bootstrap servers {}): {e}", cfg.client.bootstrap_servers),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(t: &str, p: i32) -> TopicPartition {
        TopicPartition::new(t, p)
    }

    fn opts(pairs: &[(&str, &str)]) -> Options {
        Options::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn options_are_checked_like_spark() {
        let base = [("kafka.bootstrap.servers", "h:1")];
        let with = |extra: &[(&str, &str)]| KafkaSourceConfig::from_options(&opts(&[&base[..], extra].concat()));
        let e = with(&[]).unwrap_err().to_string();
        assert!(e.contains("subscribe, subscribePattern or assign"), "{e}");
        let e = with(&[("subscribe", "a"), ("assign", r#"{"a":[0]}"#)]).unwrap_err().to_string();
        assert!(e.contains("only one"), "{e}");
        let e = KafkaSourceConfig::from_options(&opts(&[("subscribe", "a")])).unwrap_err().to_string();
        assert!(e.contains("kafka.bootstrap.servers"), "{e}");
        assert!(with(&[("subscribe", "a"), ("kafka.auto.offset.reset", "earliest")]).is_err());
        assert!(with(&[("subscribe", "a"), ("maxOffsetsPerTrigger", "0")]).is_err());
        assert!(with(&[("subscribe", "a"), ("startingOffsets", "first")]).is_err());
        assert!(with(&[("subscribe", "a"), ("startingOffsets", r#"{"a":{"0":-3}}"#)]).is_err());
        assert!(with(&[("subscribe", "a"), ("endingOffsets", "latest")]).is_err());
        assert!(with(&[("subscribePattern", "(")]).is_err());
        let c = with(&[
            ("SUBSCRIBE", " a , b "),
            ("startingoffsets", r#"{"a":{"0":5,"1":-2}}"#),
            ("maxOffsetsPerTrigger", "100"),
            ("failOnDataLoss", "false"),
            ("includeHeaders", "true"),
            ("kafka.isolation.level", "read_committed"),
        ])
        .unwrap();
        assert!(matches!(&c.subscription, Subscription::Subscribe(t) if t == &["a", "b"]));
        assert_eq!(c.starting_offsets, StartingOffsets::Specific(BTreeMap::from([(tp("a", 0), 5), (tp("a", 1), -2)])));
        assert_eq!(c.max_offsets_per_trigger, Some(100));
        assert!(!c.fail_on_data_loss && c.include_headers);
        assert_eq!(c.client.params.get("isolation.level").map(String::as_str), Some("read_committed"));
        assert_eq!(c.description(), "KafkaV2[Subscribe[a,b]]");
        assert_eq!(c.schema().len(), 8);
        let p = with(&[("subscribePattern", "wiki-.*")]).unwrap();
        let Subscription::Pattern(re) = &p.subscription else { panic!("a pattern") };
        assert!(re.is_match("wiki-en") && !re.is_match("xwiki-en"), "the whole name must match");
        let a = with(&[("assign", r#"{"t":[1,0]}"#)]).unwrap();
        assert!(matches!(&a.subscription, Subscription::Assign(s) if s.len() == 2));
    }

    #[test]
    fn every_option_given_is_read() {
        let o = opts(&[
            ("kafka.bootstrap.servers", "h:1"),
            ("subscribe", "a"),
            ("startingOffsets", "earliest"),
            ("maxOffsetsPerTrigger", "5"),
            ("failOnDataLoss", "false"),
            ("includeHeaders", "true"),
            ("kafkaConsumer.pollTimeoutMs", "10"),
            ("fetchOffset.numRetries", "1"),
            ("fetchOffset.retryIntervalMs", "1"),
            ("kafka.client.id", "x"),
            ("subscibe", "typo"),
        ]);
        KafkaSourceConfig::from_options(&o).unwrap();
        assert_eq!(o.unread(), ["subscibe"]);
    }
}
