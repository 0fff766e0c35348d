//! The Kafka source (Spark's `KafkaMicroBatchStream`, `format("kafka")`), through
//! rdkafka (librdkafka).
//!
//! ```text
//!  latest_offset(start) ── first batch: startingOffsets resolved once ─► sources/<i>/0
//!        │                 (earliest | latest | {"t":{"0":42,"1":-2}}), re-read on restart
//!        │                 partitions of subscribe / subscribePattern / assign (metadata)
//!        │                 latest offsets (ListOffsets), capped by maxOffsetsPerTrigger,
//!        ▼                 split across partitions by lag (Spark's rateLimit)
//!  offsets/N  {"topic":{"0":2000,"1":1700}}   next offset to read, per partition
//!        │
//!        ▼
//!  get_batch(start, end) ── per partition: assign(topic, partition, from) on one
//!                           BaseConsumer, poll until offset end-1 (or the position passes
//!                           end: control records, compaction) ── key, value, topic,
//!                           partition, offset, timestamp, timestampType[, headers]
//! ```
//!
//! # Why Sluice assigns partitions itself
//! The offsets a batch reads are decided once, written to `offsets/N` before the batch
//! runs, and read again exactly on replay; no consumer group and no committed group
//! offsets are involved (as in Spark), so a restart never depends on state outside the
//! checkpoint. The consumer is a plain rdkafka [`BaseConsumer`] driven from the query's
//! own thread: every call blocks, with timeouts, which fits the synchronous trigger loop.
//!
//! # Semantics (Spark 3.5)
//! * Offsets are the offset of the next record to read, per topic and partition:
//!   `{"wiki":{"0":2000}}`. A batch reads `[start, end)` of each partition.
//! * `startingOffsets` (default `latest`) applies only when a query starts with a fresh
//!   checkpoint; the resolved offsets are logged in `sources/<i>/0`, so a query restarted
//!   before its first commit starts where it first decided to.
//! * Partitions that appear later (a new topic matching `subscribePattern`, partitions
//!   added to a topic) are read from their earliest offset; a new partition whose earliest
//!   offset is not 0, a partition that disappeared, an offset that went backwards, and
//!   records aged out of retention before they were read are *data loss*.
//! * Data loss with `failOnDataLoss=true` (default) fails the batch with
//!   [`SluiceError::Source`] naming the topic, the partition and the offsets; with
//!   `false` the records are skipped with a warning and counted in
//!   [`KafkaSourceMetrics`].
//! * `kafka.isolation.level` defaults to `read_uncommitted`, as with Spark's Java consumer;
//!   set `read_committed` to read transactional producers' committed records only (then
//!   the latest offset is the last stable offset).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryViewBuilder, Int32Builder, Int64Builder, ListArray, RecordBatch, StringViewBuilder, StructArray,
    TimestampMicrosecondBuilder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType as ArrowDataType, Field as ArrowField, Fields, Schema as ArrowSchema, TimeUnit as ArrowTimeUnit};
use polars::prelude::{DataFrame, DataType, Field, Schema, SchemaRef, TimeUnit};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, DefaultConsumerContext};
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message, Timestamp};
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};
use serde_json::Value;
use sluice_engine::interop::record_batches_to_df;
use sluice_engine::{
    Offset, Result, EngineSession, SluiceError, Source, SourceContext, SourceFormat, SourceProvider, SourceProviderRef,
    StreamingDataFrame,
};

/// The rdkafka crate Sluice is built with (for `rdkafka::mocking::MockCluster` in tests
/// and examples, and for custom client configuration).
pub use rdkafka;

/// Timeout of one metadata or list-offsets request to the cluster.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one `poll` waits before the reader checks the consumer's position.
const POLL_SLICE: Duration = Duration::from_millis(100);
/// Spark's advice appended to data-loss errors.
const FAIL_ON_DATA_LOSS_TRUE: &str = "Some data may have been lost because they are not available in Kafka any \
     more; either the data was aged out by Kafka or the topic may have been deleted before all the data in the topic \
     was processed. If you don't want your streaming query to fail on such cases, set the source option \
     \"failOnDataLoss\" to \"false\".";
/// Spark's note appended to data-loss warnings.
const FAIL_ON_DATA_LOSS_FALSE: &str = "Some data may have been lost because they are not available in Kafka any \
     more; either the data was aged out by Kafka or the topic may have been deleted before all the data in the topic \
     was processed. If you want your streaming query to fail on such cases, set the source option \
     \"failOnDataLoss\" to \"true\".";

/// A topic and partition number (Kafka's `TopicPartition`; displayed `topic-3`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// The topic name.
    pub topic: String,
    /// The partition number (0-based).
    pub partition: i32,
}

impl TopicPartition {
    /// `topic`, partition `partition`.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self { topic: topic.into(), partition }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

fn tp_list(tps: impl IntoIterator<Item = impl std::borrow::Borrow<TopicPartition>>) -> String {
    let names: Vec<String> = tps.into_iter().map(|t| t.borrow().to_string()).collect();
    format!("[{}]", names.join(", "))
}

/// Offsets per topic partition (Spark's `KafkaSourceOffset`): for each partition, the
/// offset of the next record to read. Its JSON, logged in `offsets/N`, is Spark's:
/// `{"topic":{"0":42,"1":7}}`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KafkaSourceOffset {
    /// Next offset per partition.
    pub partitions: BTreeMap<TopicPartition, i64>,
}

impl KafkaSourceOffset {
    /// Spark's JSON form, partitions in numeric order.
    pub fn to_json(&self) -> Value {
        let mut topics: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
        for (tp, off) in &self.partitions {
            topics.entry(tp.topic.as_str()).or_default().push((tp.partition, *off));
        }
        let mut out = serde_json::Map::new();
        for (topic, parts) in topics {
            let mut m = serde_json::Map::new();
            for (p, o) in parts {
                m.insert(p.to_string(), Value::from(o));
            }
            out.insert(topic.to_string(), Value::Object(m));
        }
        Value::Object(out)
    }

    /// Parses Spark's JSON form `{"topic":{"0":42}}` (used for offsets and for
    /// `startingOffsets`, where -2 means earliest and -1 latest).
    ///
    /// # Errors
    /// A message saying what is wrong when `v` has another shape.
    pub fn from_json(v: &Value) -> std::result::Result<Self, String> {
        let topics = v.as_object().ok_or_else(|| format!("expected a JSON object {{\"topic\":{{\"0\":23}}}}, got {v}"))?;
        let mut partitions = BTreeMap::new();
        for (topic, parts) in topics {
            let parts = parts
                .as_object()
                .ok_or_else(|| format!("topic {topic:?}: expected an object of partition offsets, got {parts}"))?;
            for (p, off) in parts {
                let partition: i32 =
                    p.parse().map_err(|_| format!("topic {topic:?}: partition {p:?} is not a partition number"))?;
                let off = off.as_i64().ok_or_else(|| format!("{topic}-{partition}: offset {off} is not an integer"))?;
                partitions.insert(TopicPartition::new(topic.clone(), partition), off);
            }
        }
        Ok(Self { partitions })
    }

    fn parse(v: &Value, source: &str) -> Result<Self> {
        Self::from_json(v).map_err(|m| SluiceError::Source { name: source.into(), message: format!("bad offset: {m}") })
    }
}

/// Spark's `rateLimit`: caps the `until` offsets so that at most about `limit` records
/// are read, split across partitions in proportion to their lag (`until - from`). A
/// partition's share is floored, except that a share below one record is rounded up so
/// that small partitions are not starved (the total can then exceed `limit` slightly).
/// Partitions absent from `from` start at `from_new`.
pub fn rate_limit(
    limit: u64,
    from: &BTreeMap<TopicPartition, i64>,
    until: &BTreeMap<TopicPartition, i64>,
    from_new: &BTreeMap<TopicPartition, i64>,
) -> BTreeMap<TopicPartition, i64> {
    let begin_of = |tp: &TopicPartition| from.get(tp).or_else(|| from_new.get(tp)).copied();
    let sizes: BTreeMap<&TopicPartition, i64> = until
        .iter()
        .filter_map(|(tp, end)| begin_of(tp).map(|b| (tp, end - b)).filter(|(_, s)| *s > 0))
        .collect();
    let total: f64 = sizes.values().map(|s| *s as f64).sum();
    if total < 1.0 {
        return until.clone();
    }
    until
        .iter()
        .map(|(tp, end)| {
            let capped = match (sizes.get(tp), begin_of(tp)) {
                (Some(size), Some(begin)) => {
                    let prorate = limit as f64 * (*size as f64 / total);
                    let share = if prorate < 1.0 { prorate.ceil() } else { prorate.floor() } as i64;
                    let off = if share > i64::MAX - begin { i64::MAX } else { begin + share };
                    off.min(*end)
                }
                _ => *end,
            };
            (tp.clone(), capped)
        })
        .collect()
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
    /// `kafka.bootstrap.servers`.
    pub bootstrap_servers: String,
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
    /// The `kafka.`-prefixed options without the prefix, handed to librdkafka.
    pub kafka_params: BTreeMap<String, String>,
}

fn invalid(message: impl Into<String>) -> SluiceError {
    SluiceError::InvalidArgument(message.into())
}

fn parse_bool(key: &str, v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(format!("option {key}: {v:?} is not true or false"))),
    }
}

fn parse_positive(key: &str, v: &str) -> Result<u64> {
    match v.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(invalid(format!("option {key}: {v:?} is not a positive integer"))),
    }
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
    pub fn from_options(options: &BTreeMap<String, String>) -> Result<Self> {
        let opts: HashMap<String, &str> = options.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.as_str())).collect();
        let get = |key: &str| opts.get(&key.to_ascii_lowercase()).copied();
        let mut kafka_params = BTreeMap::new();
        for (k, v) in options {
            if k.len() > 6 && k[..6].eq_ignore_ascii_case("kafka.") {
                kafka_params.insert(k[6..].to_ascii_lowercase(), v.clone());
            }
        }
        let bootstrap_servers = kafka_params
            .remove("bootstrap.servers")
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| invalid("option 'kafka.bootstrap.servers' must be specified for the Kafka source"))?;
        for (param, why) in [
            (
                "auto.offset.reset",
                "set the source option 'startingOffsets' to 'earliest' or 'latest' instead: Sluice manages the \
                 offsets it reads, and a restarted query always continues where it left off",
            ),
            ("enable.auto.commit", "Sluice commits no offsets to Kafka: they are kept in the checkpoint"),
            ("key.deserializer", "keys are read as bytes: use DataFrame operations to decode them"),
            ("value.deserializer", "values are read as bytes: use DataFrame operations (from_json) to decode them"),
            ("interceptor.classes", "Sluice does not run Java interceptors"),
        ] {
            if kafka_params.contains_key(param) {
                return Err(invalid(format!("Kafka option 'kafka.{param}' is not supported: {why}")));
            }
        }
        for unsupported in ["startingOffsetsByTimestamp", "startingTimestamp", "minOffsetsPerTrigger", "maxTriggerDelay"]
        {
            if get(unsupported).is_some() {
                return Err(invalid(format!("option {unsupported} is not supported by Sluice's Kafka source")));
            }
        }
        if get("endingOffsets").is_some() {
            return Err(invalid("option endingOffsets is not valid in streaming queries (Spark rejects it too)"));
        }

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
        let max_offsets_per_trigger =
            get("maxOffsetsPerTrigger").map(|v| parse_positive("maxOffsetsPerTrigger", v)).transpose()?;
        let fail_on_data_loss = get("failOnDataLoss").map(|v| parse_bool("failOnDataLoss", v)).transpose()?.unwrap_or(true);
        let include_headers = get("includeHeaders").map(|v| parse_bool("includeHeaders", v)).transpose()?.unwrap_or(false);
        let poll_timeout = Duration::from_millis(
            get("kafkaConsumer.pollTimeoutMs")
                .map(|v| parse_positive("kafkaConsumer.pollTimeoutMs", v))
                .transpose()?
                .unwrap_or(120_000),
        );
        let fetch_offset_retries = match get("fetchOffset.numRetries") {
            None => 3,
            Some(v) => v
                .trim()
                .parse::<u32>()
                .map_err(|_| invalid(format!("option fetchOffset.numRetries: {v:?} is not a count")))?,
        };
        let fetch_offset_retry_interval = Duration::from_millis(match get("fetchOffset.retryIntervalMs") {
            None => 10,
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map_err(|_| invalid(format!("option fetchOffset.retryIntervalMs: {v:?} is not a number of ms")))?,
        });
        Ok(Self {
            bootstrap_servers,
            subscription,
            starting_offsets,
            max_offsets_per_trigger,
            fail_on_data_loss,
            include_headers,
            poll_timeout,
            fetch_offset_retries,
            fetch_offset_retry_interval,
            kafka_params,
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

fn header_fields() -> Fields {
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
    data_loss_events: AtomicU64,
    records_skipped: AtomicU64,
    records_read: AtomicU64,
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
    fn record_lag(&self, end: &BTreeMap<TopicPartition, i64>, latest: &BTreeMap<TopicPartition, i64>) {
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
    fn create(&self, path: &str, schema: Option<SchemaRef>, opts_in: &sluice_engine::Options) -> Result<SourceProviderRef> {
        let options: &BTreeMap<String, String> = &{
            // Interim: the connectors read a plain map until they adopt `Options`.
            for (k, _) in opts_in.iter() {
                opts_in.mark_read(k);
            }
            opts_in.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        if !path.is_empty() {
            return Err(invalid(format!(
                "the Kafka source takes no path ({path:?} given): call load(\"\") and name the topics with the \
                 option subscribe, subscribePattern or assign"
            )));
        }
        if schema.is_some() {
            return Err(invalid("the Kafka source has a fixed schema and cannot be set with a custom one"));
        }
        Ok(Arc::new(KafkaSourceProvider::new(KafkaSourceConfig::from_options(options)?)))
    }
}

/// Typed builder of a Kafka source, beside `read_stream().format("kafka")`:
///
/// ```no_run
/// # use sluice_sources::kafka::KafkaSource;
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
    options: BTreeMap<String, String>,
}

impl KafkaSource {
    /// A source reading from the cluster at `bootstrap_servers` (`host:port,...`).
    pub fn new(bootstrap_servers: &str) -> Self {
        Self { options: BTreeMap::from([("kafka.bootstrap.servers".to_string(), bootstrap_servers.to_string())]) }
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
        self.options.insert(key.to_string(), value.to_string());
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
        Ok(Box::new(KafkaMicroBatchStream {
            cfg: self.cfg.clone(),
            name: self.cfg.description(),
            metrics: self.metrics.clone(),
            consumer: Arc::new(create_consumer(&self.cfg)?),
            queues: BTreeMap::new(),
            meta: create_consumer(&self.cfg)?,
            initial: None,
            available_now: None,
            backlog: None,
            assigned: BTreeMap::new(),
        }))
    }
}

/// A consumer for `cfg`: no group, no commits, partition EOF events, and
/// `auto.offset.reset=error` so that an offset out of range is reported, never reset.
fn create_consumer(cfg: &KafkaSourceConfig) -> Result<BaseConsumer> {
    // librdkafka's `assign` needs a group id, though the group is never joined and no
    // offsets are committed (Spark also makes up a unique one per query).
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &cfg.bootstrap_servers)
        .set("group.id", format!("sluice-kafka-source-{}-{nanos}", std::process::id()))
        // Spark's Java consumer reads uncommitted records unless told otherwise.
        .set("isolation.level", "read_uncommitted")
        // A new assignment waits for the fetch in flight: keep long polls short.
        .set("fetch.wait.max.ms", "100");
    for (k, v) in &cfg.kafka_params {
        config.set(k, v);
    }
    config
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "error");
    config.create().map_err(|e| SluiceError::Source {
        name: cfg.description(),
        message: format!("cannot create the Kafka consumer (bootstrap servers {}): {e}", cfg.bootstrap_servers),
    })
}

/// Earliest or latest offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edge {
    Earliest,
    Latest,
}

/// One query run's Kafka source.
struct KafkaMicroBatchStream {
    cfg: Arc<KafkaSourceConfig>,
    name: String,
    metrics: Arc<KafkaSourceMetrics>,
    /// Reads records (`assign`, then one queue per partition).
    consumer: Arc<BaseConsumer>,
    /// The queue of each assigned partition.
    queues: BTreeMap<TopicPartition, PartitionQueue<DefaultConsumerContext>>,
    /// Lists partitions and offsets, on its own connections: requests on the reader's
    /// would wait behind its long-polling fetches.
    meta: BaseConsumer,
    /// The resolved `startingOffsets` (`sources/<i>/0`).
    initial: Option<KafkaSourceOffset>,
    /// `Trigger::AvailableNow`: the latest offsets when the query started.
    available_now: Option<BTreeMap<TopicPartition, i64>>,
    backlog: Option<u64>,
    /// The partitions the reader is assigned to, with the offset of the record their
    /// queue hands out next: a range starting there needs no new assignment.
    assigned: BTreeMap<TopicPartition, i64>,
}

/// Rows being built for one batch.
struct Rows {
    key: BinaryViewBuilder,
    value: BinaryViewBuilder,
    topic: StringViewBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    timestamp: TimestampMicrosecondBuilder,
    timestamp_type: Int32Builder,
    headers: Option<HeaderRows>,
}

struct HeaderRows {
    keys: StringViewBuilder,
    values: BinaryViewBuilder,
    offsets: Vec<i32>,
    valid: Vec<bool>,
}

impl Rows {
    fn new(include_headers: bool) -> Self {
        Self {
            key: BinaryViewBuilder::new(),
            value: BinaryViewBuilder::new(),
            topic: StringViewBuilder::new(),
            partition: Int32Builder::new(),
            offset: Int64Builder::new(),
            timestamp: TimestampMicrosecondBuilder::new(),
            timestamp_type: Int32Builder::new(),
            headers: include_headers.then(|| HeaderRows {
                keys: StringViewBuilder::new(),
                values: BinaryViewBuilder::new(),
                offsets: vec![0],
                valid: Vec::new(),
            }),
        }
    }

    fn push<M: Message>(&mut self, tp: &TopicPartition, m: &M) -> Result<()> {
        self.key.append_option(m.key());
        self.value.append_option(m.payload());
        self.topic.append_value(&tp.topic);
        self.partition.append_value(tp.partition);
        self.offset.append_value(m.offset());
        // Spark: `timestamp` from the record's epoch ms (-1 when absent), `timestampType`
        // Kafka's id (-1 none, 0 CreateTime, 1 LogAppendTime).
        let (ms, kind) = match m.timestamp() {
            Timestamp::NotAvailable => (-1, -1),
            Timestamp::CreateTime(ms) => (ms, 0),
            Timestamp::LogAppendTime(ms) => (ms, 1),
        };
        self.timestamp.append_value(ms.saturating_mul(1000));
        self.timestamp_type.append_value(kind);
        if let Some(h) = &mut self.headers {
            match m.headers() {
                Some(headers) if headers.count() > 0 => {
                    for header in headers.iter() {
                        h.keys.append_value(header.key);
                        h.values.append_option(header.value);
                    }
                    let n = i32::try_from(h.keys.len()).map_err(|_| {
                        SluiceError::Internal("more than 2^31 Kafka headers in one micro-batch".into())
                    })?;
                    h.offsets.push(n);
                    h.valid.push(true);
                }
                _ => {
                    let last = h.offsets.last().copied().unwrap_or(0);
                    h.offsets.push(last);
                    h.valid.push(false);
                }
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<RecordBatch> {
        let mut fields = vec![
            ArrowField::new("key", ArrowDataType::BinaryView, true),
            ArrowField::new("value", ArrowDataType::BinaryView, true),
            ArrowField::new("topic", ArrowDataType::Utf8View, false),
            ArrowField::new("partition", ArrowDataType::Int32, false),
            ArrowField::new("offset", ArrowDataType::Int64, false),
            ArrowField::new("timestamp", ArrowDataType::Timestamp(ArrowTimeUnit::Microsecond, None), false),
            ArrowField::new("timestampType", ArrowDataType::Int32, false),
        ];
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.key.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.topic.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.timestamp.finish()),
            Arc::new(self.timestamp_type.finish()),
        ];
        if let Some(mut h) = self.headers.take() {
            let entries = StructArray::try_new(
                header_fields(),
                vec![Arc::new(h.keys.finish()), Arc::new(h.values.finish())],
                None,
            )?;
            let item = Arc::new(ArrowField::new("item", ArrowDataType::Struct(header_fields()), true));
            let list = ListArray::try_new(
                item.clone(),
                OffsetBuffer::new(h.offsets.into()),
                Arc::new(entries),
                Some(h.valid.into()),
            )?;
            fields.push(ArrowField::new("headers", ArrowDataType::List(item), true));
            columns.push(Arc::new(list));
        }
        Ok(RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), columns)?)
    }
}

impl KafkaMicroBatchStream {
    fn err(&self, message: impl Into<String>) -> SluiceError {
        SluiceError::Source { name: self.name.clone(), message: message.into() }
    }

    fn kafka_err(&self, what: &str, e: &KafkaError) -> SluiceError {
        self.err(format!("{what} (bootstrap servers {}): {e}", self.cfg.bootstrap_servers))
    }

    /// Data loss: fails with `message` (`failOnDataLoss=true`), or logs a warning and
    /// counts the event and the `skipped` records.
    fn data_loss(&self, message: String, skipped: u64) -> Result<()> {
        if self.cfg.fail_on_data_loss {
            return Err(self.err(format!("data loss: {message}. {FAIL_ON_DATA_LOSS_TRUE}")));
        }
        tracing::warn!(source = %self.name, "{message}. {FAIL_ON_DATA_LOSS_FALSE}");
        self.metrics.data_loss_events.fetch_add(1, Ordering::Relaxed);
        self.metrics.records_skipped.fetch_add(skipped, Ordering::Relaxed);
        Ok(())
    }

    /// The partitions the subscription covers now.
    fn partitions(&self) -> Result<BTreeSet<TopicPartition>> {
        let subscription = &self.cfg.subscription;
        if let Subscription::Assign(tps) = subscription {
            return Ok(tps.clone());
        }
        let consumer = &self.meta;
        let mut out = BTreeSet::new();
        let mut add_topic = |t: &rdkafka::metadata::MetadataTopic| {
            if t.error().is_none() {
                for p in t.partitions() {
                    out.insert(TopicPartition::new(t.name(), p.id()));
                }
            }
        };
        match subscription {
            Subscription::Subscribe(topics) => {
                for topic in topics {
                    let md = consumer.fetch_metadata(Some(topic), REQUEST_TIMEOUT);
                    match md {
                        Ok(md) => md.topics().iter().filter(|t| t.name() == topic).for_each(&mut add_topic),
                        Err(e) => return Err(self.kafka_err(&format!("cannot list the partitions of topic {topic}"), &e)),
                    }
                }
            }
            Subscription::Pattern(re) => {
                let md = consumer
                    .fetch_metadata(None, REQUEST_TIMEOUT)
                    .map_err(|e| self.kafka_err("cannot list the cluster's topics", &e))?;
                md.topics().iter().filter(|t| re.is_match(t.name())).for_each(&mut add_topic);
            }
            Subscription::Assign(_) => {} // returned above
        }
        Ok(out)
    }

    /// Earliest or latest offsets of `tps` (ListOffsets), retried
    /// `fetchOffset.numRetries` times; partitions that do not exist are left out.
    fn list_offsets(&self, tps: &BTreeSet<TopicPartition>, edge: Edge) -> Result<BTreeMap<TopicPartition, i64>> {
        if tps.is_empty() {
            return Ok(BTreeMap::new());
        }
        let retries = self.cfg.fetch_offset_retries;
        let interval = self.cfg.fetch_offset_retry_interval;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_list_offsets(tps, edge) {
                Ok(m) => return Ok(m),
                Err(e) if attempt > retries => return Err(e),
                Err(e) => {
                    tracing::warn!(source = %self.name, attempt, error = %e, "listing Kafka offsets failed; retrying");
                    std::thread::sleep(interval);
                }
            }
        }
    }

    fn try_list_offsets(&self, tps: &BTreeSet<TopicPartition>, edge: Edge) -> Result<BTreeMap<TopicPartition, i64>> {
        let mut tpl = TopicPartitionList::with_capacity(tps.len());
        let query = match edge {
            Edge::Earliest => KafkaOffset::Beginning,
            Edge::Latest => KafkaOffset::End,
        };
        for tp in tps {
            tpl.add_partition_offset(&tp.topic, tp.partition, query)
                .map_err(|e| self.kafka_err(&format!("cannot ask for the offsets of {tp}"), &e))?;
        }
        let what = match edge {
            Edge::Earliest => "earliest",
            Edge::Latest => "latest",
        };
        let result = self
            .meta
            .offsets_for_times(tpl, REQUEST_TIMEOUT)
            .map_err(|e| self.err(format!("cannot list the {what} offsets of {}: {e}", tp_list(tps))))?;
        let mut out = BTreeMap::new();
        for elem in result.elements() {
            let tp = TopicPartition::new(elem.topic(), elem.partition());
            match elem.error() {
                Ok(()) => {}
                Err(KafkaError::OffsetFetch(RDKafkaErrorCode::UnknownTopicOrPartition)) => continue,
                Err(e) => return Err(self.err(format!("cannot list the {what} offset of {tp}: {e}"))),
            }
            match elem.offset() {
                KafkaOffset::Offset(o) => {
                    out.insert(tp, o);
                }
                other => return Err(self.err(format!("the cluster returned no {what} offset for {tp} ({other:?})"))),
            }
        }
        Ok(out)
    }

    /// The initial offsets logged in `sources/<i>/0` by an earlier run, if any.
    fn logged_initial_offsets(&mut self, ctx: SourceContext<'_>) -> Result<Option<KafkaSourceOffset>> {
        if self.initial.is_none() {
            let log = ctx.checkpoint.log::<Value>(ctx.log_name());
            if let Some(v) = log.get(0)? {
                let parsed = KafkaSourceOffset::from_json(&v).map_err(|m| {
                    SluiceError::Checkpoint(sluice_engine::checkpoint::CheckpointError::Corrupt {
                        path: ctx.checkpoint.display_path(&log.path(0)),
                        reason: format!("not the Kafka source's initial offsets: {m}"),
                    })
                })?;
                self.initial = Some(parsed);
            }
        }
        Ok(self.initial.clone())
    }

    /// The offsets the query starts from: `sources/<i>/0` when logged, else
    /// `startingOffsets` resolved now and logged.
    fn initial_offsets(&mut self, ctx: SourceContext<'_>) -> Result<KafkaSourceOffset> {
        if let Some(logged) = self.logged_initial_offsets(ctx)? {
            return Ok(logged);
        }
        let resolved = self.resolve_starting_offsets()?;
        let json = resolved.to_json();
        // Create-only: a conflicting entry (another run got there first) is an error.
        ctx.checkpoint.log::<Value>(ctx.log_name()).add(0, &json)?;
        tracing::info!(source = %self.name, offsets = %json, "initial Kafka offsets");
        self.initial = Some(resolved.clone());
        Ok(resolved)
    }

    fn resolve_starting_offsets(&self) -> Result<KafkaSourceOffset> {
        let partitions = self.partitions()?;
        let partitions = match self.cfg.starting_offsets.clone() {
            StartingOffsets::Earliest => self.list_offsets(&partitions, Edge::Earliest)?,
            StartingOffsets::Latest => self.list_offsets(&partitions, Edge::Latest)?,
            StartingOffsets::Specific(specified) => {
                let given: BTreeSet<TopicPartition> = specified.keys().cloned().collect();
                let check_all = !matches!(self.cfg.subscription, Subscription::Assign(_));
                if (check_all && given != partitions) || (!check_all && !given.is_subset(&partitions)) {
                    return Err(self.err(format!(
                        "if startingOffsets contains specific offsets, you must specify all topic partitions (use -1 \
                         for latest, -2 for earliest); specified {}, assigned {}",
                        tp_list(&given),
                        tp_list(&partitions)
                    )));
                }
                let earliest = self.list_offsets(&given, Edge::Earliest)?;
                let latest = self.list_offsets(&given, Edge::Latest)?;
                let mut out = BTreeMap::new();
                for (tp, off) in specified {
                    let (Some(lo), Some(hi)) = (earliest.get(&tp).copied(), latest.get(&tp).copied()) else {
                        return Err(self.err(format!("startingOffsets names {tp}, which does not exist")));
                    };
                    let resolved = match off {
                        -2 => lo,
                        -1 => hi,
                        o if o < lo => {
                            self.data_loss(
                                format!(
                                    "startingOffsets for {tp} was {o} but the partition's earliest offset is {lo}; \
                                     starting from {lo}"
                                ),
                                (lo - o) as u64,
                            )?;
                            lo
                        }
                        o if o > hi => {
                            self.data_loss(
                                format!(
                                    "startingOffsets for {tp} was {o} but the partition's latest offset is {hi}; \
                                     starting from {hi}"
                                ),
                                0,
                            )?;
                            hi
                        }
                        o => o,
                    };
                    out.insert(tp, resolved);
                }
                out
            }
        };
        Ok(KafkaSourceOffset { partitions })
    }

    /// Latest offsets of the partitions covered now.
    fn fetch_latest(&self) -> Result<BTreeMap<TopicPartition, i64>> {
        let partitions = self.partitions()?;
        self.list_offsets(&partitions, Edge::Latest)
    }

    /// Reads `[from, until)` of every partition in `ranges` into `rows`, handling data
    /// loss. All the partitions are assigned at once, each with its own queue
    /// (librdkafka fetches them in parallel); records a partition fetched beyond its
    /// range stay in its queue, so a next batch that continues where this one ended
    /// reads on without a new assignment. Any other start re-assigns.
    fn read_ranges(
        &mut self,
        ranges: BTreeMap<TopicPartition, (i64, i64)>,
        rows: &mut BTreeMap<TopicPartition, Rows>,
    ) -> Result<()> {
        let mut pending: BTreeMap<TopicPartition, (i64, i64)> = ranges.into_iter().filter(|(_, (f, u))| f < u).collect();
        let poll_timeout = self.cfg.poll_timeout;
        'assignment: loop {
            if pending.is_empty() {
                return Ok(());
            }
            let continues = pending.iter().all(|(tp, (from, _))| self.assigned.get(tp) == Some(from));
            if !continues {
                self.assign(&mut pending)?;
                if pending.is_empty() {
                    return Ok(());
                }
            }
            let mut last_progress = Instant::now();
            let mut last_check: Option<Instant> = None;
            while !pending.is_empty() {
                let mut check_positions = false;
                let mut progressed = false;
                let wait = if pending.len() == 1 { POLL_SLICE } else { Duration::ZERO };
                let tps: Vec<TopicPartition> = pending.keys().cloned().collect();
                for tp in tps {
                    let Some(queue) = self.queues.get(&tp) else {
                        return Err(SluiceError::Internal(format!("no queue for {tp}")));
                    };
                    let Some(&(start, until)) = pending.get(&tp) else { continue };
                    let out = rows.entry(tp.clone()).or_insert_with(|| Rows::new(self.cfg.include_headers));
                    // Where this partition's queue stands: the next offset it hands out,
                    // `None` once it handed out a record past the range.
                    let mut next = Some(start);
                    let mut read = 0u64;
                    // Up to a fetched chunk from this partition, then the next one.
                    while read < 10_000 && next.is_some_and(|n| n < until) {
                        match queue.poll(wait) {
                            None => break,
                            Some(Ok(m)) => {
                                let offset = m.offset();
                                if next.is_some_and(|n| offset < n) {
                                    continue;
                                }
                                if offset >= until {
                                    // Past the range (its end was control records or
                                    // compacted away): this record is consumed, so the
                                    // next range needs a fresh assignment.
                                    next = None;
                                    break;
                                }
                                out.push(&tp, &m)?;
                                read += 1;
                                next = Some(offset + 1);
                            }
                            Some(Err(KafkaError::PartitionEOF(_))) => {
                                check_positions = true;
                                break;
                            }
                            Some(Err(KafkaError::MessageConsumption(
                                RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange,
                            ))) => {
                                // Retention removed records while we read: check again.
                                self.assigned.clear();
                                continue 'assignment;
                            }
                            Some(Err(e @ KafkaError::MessageConsumptionFatal(_))) => {
                                let at = next.unwrap_or(until);
                                return Err(self.kafka_err(&format!("reading {tp} at offset {at}"), &e));
                            }
                            Some(Err(e)) => {
                                tracing::warn!(source = %self.name, partition = %tp, error = %e, "Kafka consumer error; retrying");
                                break;
                            }
                        }
                    }
                    if read > 0 {
                        progressed = true;
                        self.metrics.records_read.fetch_add(read, Ordering::Relaxed);
                    }
                    match next {
                        Some(n) if n < until => {
                            pending.insert(tp.clone(), (n, until));
                            self.assigned.insert(tp, n);
                        }
                        Some(n) => {
                            pending.remove(&tp);
                            self.assigned.insert(tp, n);
                        }
                        None => {
                            pending.remove(&tp);
                            self.assigned.remove(&tp);
                        }
                    }
                }
                // Serve the consumer's own queue (errors, statistics); records of split
                // partitions never arrive there.
                let main_wait = if progressed || pending.len() <= 1 { Duration::ZERO } else { Duration::from_millis(5) };
                if let Some(Err(e)) = self.consumer.poll(main_wait) {
                    tracing::warn!(source = %self.name, error = %e, "Kafka consumer error");
                }
                if progressed {
                    last_progress = Instant::now();
                    continue;
                }
                let idle = last_progress.elapsed();
                if idle >= poll_timeout {
                    let (tp, (from, until)) = pending.iter().next().map(|(t, r)| (t.clone(), *r)).unwrap_or((TopicPartition::new("?", -1), (0, 0)));
                    self.assigned.clear();
                    return Err(self.err(format!(
                        "timed out after {} ms reading offsets [{from}, {until}) of topic {} partition {} (option \
                         kafkaConsumer.pollTimeoutMs)",
                        poll_timeout.as_millis(),
                        tp.topic,
                        tp.partition
                    )));
                }
                check_positions |= !pending.is_empty()
                    && idle >= POLL_SLICE * 2
                    && last_check.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
                if check_positions {
                    last_check = Some(Instant::now());
                    self.settle_ends(&mut pending)?;
                }
            }
            return Ok(());
        }
    }

    /// Assigns the partitions of `pending` at their start offsets, after skipping (or
    /// failing on) records aged out of retention, and splits off one queue per partition.
    fn assign(&mut self, pending: &mut BTreeMap<TopicPartition, (i64, i64)>) -> Result<()> {
        let tps: BTreeSet<TopicPartition> = pending.keys().cloned().collect();
        let earliest = self.list_offsets(&tps, Edge::Earliest)?;
        for (tp, (from, until)) in pending.iter_mut() {
            let low = earliest.get(tp).copied().unwrap_or(*from);
            if *from < low {
                let lost_to = low.min(*until);
                self.data_loss(
                    format!(
                        "cannot read offsets [{from}, {lost_to}) of topic {} partition {}: the earliest available \
                         offset is {low}",
                        tp.topic, tp.partition
                    ),
                    (lost_to - *from) as u64,
                )?;
                *from = lost_to;
            }
        }
        pending.retain(|_, (f, u)| f < u);
        self.queues.clear();
        self.assigned.clear();
        if pending.is_empty() {
            return Ok(());
        }
        let tpl = tp_list_at(pending.iter().map(|(tp, (from, _))| (tp, *from)))?;
        self.consumer.assign(&tpl).map_err(|e| self.kafka_err("cannot assign partitions", &e))?;
        for (tp, (from, _)) in pending.iter() {
            let queue = self
                .consumer
                .split_partition_queue(&tp.topic, tp.partition)
                .ok_or_else(|| self.err(format!("cannot read {tp}: librdkafka gave no queue for it")))?;
            self.queues.insert(tp.clone(), queue);
            self.assigned.insert(tp.clone(), *from);
        }
        Ok(())
    }

    /// At the end of a partition, or after nothing came for a while: finishes the
    /// ranges the consumer's position has passed (their end was control records or
    /// compacted away), and handles ranges whose end is no longer in the partition
    /// (data loss).
    fn settle_ends(&mut self, pending: &mut BTreeMap<TopicPartition, (i64, i64)>) -> Result<()> {
        let positions = self.positions()?;
        pending.retain(|tp, (_, until)| match positions.get(tp) {
            Some(p) if p >= until => {
                self.assigned.insert(tp.clone(), *p);
                false
            }
            _ => true,
        });
        if pending.is_empty() {
            return Ok(());
        }
        let tps: BTreeSet<TopicPartition> = pending.keys().cloned().collect();
        let latest = self.list_offsets(&tps, Edge::Latest)?;
        for (tp, (from, until)) in pending.iter_mut() {
            let high = latest.get(tp).copied().unwrap_or(0);
            if high < *until {
                let lost_from = high.max(*from);
                self.data_loss(
                    format!(
                        "cannot read offsets [{lost_from}, {until}) of topic {} partition {}: the partition now ends \
                         at offset {high}",
                        tp.topic, tp.partition
                    ),
                    (*until - lost_from) as u64,
                )?;
                *until = lost_from;
                self.assigned.remove(tp);
            }
        }
        pending.retain(|_, (f, u)| f < u);
        Ok(())
    }

    /// The reader's position per assigned partition: the offset after the last record
    /// or control record it handed out.
    fn positions(&self) -> Result<BTreeMap<TopicPartition, i64>> {
        let position = self.consumer.position().map_err(|e| self.kafka_err("cannot get the consumer's position", &e))?;
        Ok(position
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                KafkaOffset::Offset(o) => Some((TopicPartition::new(e.topic(), e.partition()), o)),
                _ => None,
            })
            .collect())
    }
}

/// A partition list with offsets.
fn tp_list_at<'a>(tps: impl IntoIterator<Item = (&'a TopicPartition, i64)>) -> Result<TopicPartitionList> {
    let mut tpl = TopicPartitionList::new();
    for (tp, offset) in tps {
        tpl.add_partition_offset(&tp.topic, tp.partition, KafkaOffset::Offset(offset))
            .map_err(|e| SluiceError::Internal(format!("cannot list {tp} at offset {offset}: {e}")))?;
    }
    Ok(tpl)
}

impl Source for KafkaMicroBatchStream {
    fn description(&self) -> String {
        self.name.clone()
    }

    fn schema(&self) -> SchemaRef {
        Arc::new(self.cfg.schema())
    }

    /// Reads the logged initial offsets (`sources/<i>/0`) when there are any.
    ///
    /// # Errors
    /// [`SluiceError::Checkpoint`] naming the file when it is not Kafka offsets.
    fn initialize(&mut self, ctx: SourceContext<'_>) -> Result<()> {
        self.logged_initial_offsets(ctx).map(|_| ())
    }

    /// Fixes the end of an `AvailableNow` run: the latest offsets now.
    fn prepare_for_available_now(&mut self, _ctx: SourceContext<'_>) -> Result<()> {
        let latest = self.fetch_latest()?;
        self.available_now = Some(latest);
        Ok(())
    }

    /// The latest offsets, capped by `maxOffsetsPerTrigger` unless `all_available`.
    ///
    /// # Errors
    /// [`SluiceError::Source`] when the cluster cannot be reached or listed within the
    /// retries, or startingOffsets names partitions that do not match.
    fn latest_offset(&mut self, ctx: SourceContext<'_>, start: Option<&Offset>, all_available: bool) -> Result<Option<Offset>> {
        let start = match start {
            Some(v) => KafkaSourceOffset::parse(v, &self.name)?,
            None => self.initial_offsets(ctx)?,
        };
        let latest = match &self.available_now {
            Some(fixed) => fixed.clone(),
            None => self.fetch_latest()?,
        };
        let end = match self.cfg.max_offsets_per_trigger {
            Some(limit) if !all_available => {
                let new: BTreeSet<TopicPartition> =
                    latest.keys().filter(|tp| !start.partitions.contains_key(*tp)).cloned().collect();
                let from_new = self.list_offsets(&new, Edge::Earliest)?;
                rate_limit(limit, &start.partitions, &latest, &from_new)
            }
            _ => latest.clone(),
        };
        let lag: i64 = latest
            .iter()
            .map(|(tp, l)| (l - end.get(tp).copied().unwrap_or(0)).max(0))
            .sum();
        self.backlog = Some(lag as u64);
        self.metrics.record_lag(&end, &latest);
        Ok(Some(KafkaSourceOffset { partitions: end }.to_json()))
    }

    /// The records of `[start, end)` of every partition (partitions absent from `start`
    /// from their earliest offset), ordered by topic, partition and offset.
    ///
    /// # Errors
    /// [`SluiceError::Source`] naming topic, partition and offsets on data loss with
    /// `failOnDataLoss=true`, on a read that makes no progress within
    /// `kafkaConsumer.pollTimeoutMs`, and on cluster errors.
    fn get_batch(&mut self, ctx: SourceContext<'_>, start: Option<&Offset>, end: &Offset) -> Result<DataFrame> {
        let from = match start {
            Some(v) => KafkaSourceOffset::parse(v, &self.name)?,
            None => self.initial_offsets(ctx)?,
        };
        let until = KafkaSourceOffset::parse(end, &self.name)?;
        let new: BTreeSet<TopicPartition> =
            until.partitions.keys().filter(|tp| !from.partitions.contains_key(*tp)).cloned().collect();
        let new_starts = self.list_offsets(&new, Edge::Earliest)?;
        let missing: Vec<&TopicPartition> = new.iter().filter(|tp| !new_starts.contains_key(*tp)).collect();
        if !missing.is_empty() {
            self.data_loss(format!("cannot find the earliest offsets of {}", tp_list(missing)), 0)?;
        }
        for (tp, o) in new_starts.iter().filter(|(_, o)| **o != 0) {
            tracing::info!(source = %self.name, partition = %tp, "new partition");
            self.data_loss(format!("added partition {tp} starts from {o} instead of 0"), *o as u64)?;
        }
        let gone: Vec<&TopicPartition> = from.partitions.keys().filter(|tp| !until.partitions.contains_key(*tp)).collect();
        if !gone.is_empty() {
            self.data_loss(format!("{} are gone", tp_list(gone)), 0)?;
        }
        let mut ranges = BTreeMap::new();
        for (tp, &until_o) in &until.partitions {
            let Some(&from_o) = from.partitions.get(tp).or_else(|| new_starts.get(tp)) else { continue };
            if until_o < from_o {
                self.data_loss(
                    format!(
                        "partition {tp}'s offset was changed from {from_o} to {until_o}, some data may have been missed"
                    ),
                    0,
                )?;
                continue;
            }
            ranges.insert(tp.clone(), (from_o, until_o));
        }
        // Rows per partition, concatenated in partition order: the same order on replay,
        // whatever order the partitions were fetched in.
        let mut rows = BTreeMap::new();
        self.read_ranges(ranges, &mut rows)?;
        let batches = rows.into_values().map(Rows::finish).collect::<Result<Vec<_>>>()?;
        let schema = match batches.first() {
            Some(b) => b.schema(),
            None => Rows::new(self.cfg.include_headers).finish()?.schema(),
        };
        let df = record_batches_to_df(&batches, &schema)?;
        tracing::debug!(source = %self.name, rows = df.height(), "read Kafka batch");
        Ok(df)
    }

    fn backlog(&self) -> Option<u64> {
        self.backlog
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(t: &str, p: i32) -> TopicPartition {
        TopicPartition::new(t, p)
    }

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn offsets_json_is_sparks() {
        let o = KafkaSourceOffset {
            partitions: BTreeMap::from([(tp("a", 0), 42), (tp("a", 10), 3), (tp("a", 2), 7), (tp("b", 0), 0)]),
        };
        let v = o.to_json();
        assert_eq!(v, serde_json::json!({"a": {"0": 42, "2": 7, "10": 3}, "b": {"0": 0}}));
        assert_eq!(KafkaSourceOffset::from_json(&v).unwrap(), o);
        assert!(KafkaSourceOffset::from_json(&serde_json::json!({"a": {"x": 1}})).is_err());
        assert!(KafkaSourceOffset::from_json(&serde_json::json!({"a": [1]})).is_err());
        assert!(KafkaSourceOffset::from_json(&serde_json::json!(3)).is_err());
    }

    #[test]
    fn rate_limit_splits_by_lag_like_spark() {
        let from = BTreeMap::from([(tp("t", 0), 0), (tp("t", 1), 100), (tp("t", 2), 5)]);
        let until = BTreeMap::from([(tp("t", 0), 10), (tp("t", 1), 120), (tp("t", 2), 75)]);
        // lags 10, 20, 70 of 100: shares 1, 2, 7 of 10.
        let got = rate_limit(10, &from, &until, &BTreeMap::new());
        assert_eq!(got, BTreeMap::from([(tp("t", 0), 1), (tp("t", 1), 102), (tp("t", 2), 12)]));
        // A tiny partition is not starved: its share 0.05 rounds up to 1.
        let from = BTreeMap::from([(tp("t", 0), 0), (tp("t", 1), 0)]);
        let until = BTreeMap::from([(tp("t", 0), 1), (tp("t", 1), 199)]);
        let got = rate_limit(10, &from, &until, &BTreeMap::new());
        assert_eq!(got, BTreeMap::from([(tp("t", 0), 1), (tp("t", 1), 9)]));
        // Under the limit: everything.
        let got = rate_limit(1000, &from, &until, &BTreeMap::new());
        assert_eq!(got, until);
        // A new partition (a grown topic) starts at its earliest offset.
        let from = BTreeMap::from([(tp("t", 0), 50)]);
        let until = BTreeMap::from([(tp("t", 0), 100), (tp("t", 1), 50)]);
        let got = rate_limit(20, &from, &until, &BTreeMap::from([(tp("t", 1), 0)]));
        assert_eq!(got, BTreeMap::from([(tp("t", 0), 60), (tp("t", 1), 10)]));
        // No lag anywhere: unchanged.
        let got = rate_limit(5, &until, &until, &BTreeMap::new());
        assert_eq!(got, until);
    }

    #[test]
    fn options_are_checked_like_spark() {
        let base = [("kafka.bootstrap.servers", "h:1")];
        let with = |extra: &[(&str, &str)]| {
            let mut o = opts(&base);
            o.extend(opts(extra));
            KafkaSourceConfig::from_options(&o)
        };
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
        assert_eq!(c.kafka_params.get("isolation.level").map(String::as_str), Some("read_committed"));
        assert_eq!(c.description(), "KafkaV2[Subscribe[a,b]]");
        assert_eq!(c.schema().len(), 8);
        let p = with(&[("subscribePattern", "wiki-.*")]).unwrap();
        let Subscription::Pattern(re) = &p.subscription else { panic!("a pattern") };
        assert!(re.is_match("wiki-en") && !re.is_match("xwiki-en"), "the whole name must match");
        let a = with(&[("assign", r#"{"t":[1,0]}"#)]).unwrap();
        assert!(matches!(&a.subscription, Subscription::Assign(s) if s.len() == 2));
    }
}
