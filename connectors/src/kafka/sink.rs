//! [`KafkaSink`]: writes each micro-batch's rows as Kafka records (Spark's Kafka sink,
//! `format("kafka")`), at least once by default or exactly once with Kafka transactions;
//! [`KafkaSinkProvider`] creates it by format name.
//!
//! # Columns (as in Spark)
//! | column | type | |
//! |---|---|---|
//! | `value` | String or Binary | required; null writes a tombstone |
//! | `key` | String or Binary | optional; null writes no key |
//! | `topic` | String | required unless the option `topic` is set, which overrides it |
//! | `partition` | Int32 | optional; null lets the producer's partitioner choose |
//! | `headers` | List(Struct{key: String, value: Binary or String}) | optional |
//!
//! Other columns are ignored. Strings are written as their UTF-8 bytes.
//!
//! # Delivery
//! ```text
//!  at-least-once (default)                 exactly-once (deliveryGuarantee=exactly-once)
//!  send every row                          initialize: init_transactions (fences an older
//!  flush; every delivery report must be      instance, aborts its open transaction), read
//!    a success, else the batch fails         the last committed batch id of this query
//!  (a replayed batch is written again)     per batch: skip if already committed, else
//!                                            begin; send rows; send the marker
//!                                            {"batchId": N} to <progressTopic>-0; flush;
//!                                            check every delivery; commit (abort on error)
//! ```
//! In exactly-once mode the marker record (key: the transactional id) is committed in the
//! same transaction as the rows, so "batch N's rows are visible" and "the marker says N"
//! are one atomic fact for `read_committed` readers. After a crash between the sink's
//! commit and the engine's commit log, the replayed batch N finds its marker and is
//! skipped; after a crash before the sink's commit, `init_transactions` aborts the open
//! transaction and the batch is written again. The transactional id is
//! `<transactionalIdPrefix><query id>` (stable across restarts of a checkpoint), or the
//! option `kafka.transactional.id`.
//!
//! The progress topic (default `_sluice_sink_commits`) holds one small record per
//! committed batch and query; Sluice reads its partition 0 backwards from the end at
//! start-up. Create it with one partition and `cleanup.policy=compact` on clusters that
//! do not auto-create topics. Consumers of the output must use `isolation.level =
//! read_committed` to see each batch once. (librdkafka's mock cluster, used by the tests,
//! does not hide aborted transactions: there, only the crash after a sink commit is
//! covered.)
//!
//! # Errors
//! A record the producer rejects or fails to deliver fails the batch with
//! [`SluiceError::Sink`] naming the batch, the topic, the partition and librdkafka's
//! error; in exactly-once mode the transaction is aborted first.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StructArray};
use arrow::datatypes::DataType;
use polars::prelude::DataFrame;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset as KafkaOffset, TopicPartitionList};
use sluice_engine::checkpoint::BatchId;
use sluice_engine::interop::df_to_record_batch;
use sluice_engine::{Options, Result, Sink, SinkContext, SinkProvider, SluiceError};

use super::REQUEST_TIMEOUT;
use super::client::KafkaClientOptions;

/// Default of the option `progressTopic`.
pub const DEFAULT_PROGRESS_TOPIC: &str = "_sluice_sink_commits";
/// Default of the option `transactionalIdPrefix`.
pub const DEFAULT_TRANSACTIONAL_ID_PREFIX: &str = "sluice-";
/// Records of the progress topic read per step when looking for the last marker.
const PROGRESS_SCAN_WINDOW: i64 = 1000;

/// Delivery guarantee of the Kafka sink (option `deliveryGuarantee`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeliveryGuarantee {
    /// `at-least-once` (default): every record is acknowledged before the batch commits;
    /// a replayed batch is written again.
    #[default]
    AtLeastOnce,
    /// `exactly-once`: one Kafka transaction per batch, skipped when replayed.
    ExactlyOnce,
}

/// The librdkafka parameters Spark's Kafka sink rejects, and why.
const REJECTED_PARAMS: &[(&str, &str)] = &[("key.serializer", SERIALIZERS), ("value.serializer", SERIALIZERS)];
const SERIALIZERS: &str =
    "keys and values are written as bytes; use DataFrame operations to make them strings or binary";

/// The options the Kafka sink reads (Spark's names and Sluice's exactly-once ones);
/// `kafka.*` stands for every librdkafka property.
pub const SINK_OPTIONS: &[&str] = &[
    "kafka.bootstrap.servers",
    "topic",
    "deliveryGuarantee",
    "transactionalIdPrefix",
    "progressTopic",
    "flushTimeoutMs",
    "kafka.*",
];

/// The Kafka sink's checked configuration.
#[derive(Debug, Clone)]
pub struct KafkaSinkConfig {
    /// `kafka.bootstrap.servers` and the other `kafka.*` options (without
    /// `kafka.transactional.id`, which is [`KafkaSinkConfig::transactional_id`]).
    pub client: KafkaClientOptions,
    /// `topic`: the topic of every row (overrides a `topic` column).
    pub topic: Option<String>,
    /// `deliveryGuarantee`.
    pub delivery: DeliveryGuarantee,
    /// `kafka.transactional.id`, when given explicitly.
    pub transactional_id: Option<String>,
    /// `transactionalIdPrefix` (default `sluice-`), followed by the query id.
    pub transactional_id_prefix: String,
    /// `progressTopic` (default `_sluice_sink_commits`), exactly-once mode.
    pub progress_topic: String,
    /// `flushTimeoutMs` (default 120,000): how long a batch may wait for its deliveries
    /// and its transaction commit.
    pub flush_timeout: Duration,
}

impl KafkaSinkConfig {
    /// Checks the options (names case-insensitive):
    ///
    /// | option | default | |
    /// |---|---|---|
    /// | `kafka.bootstrap.servers` | required | `host:port,...` |
    /// | `topic` | none | topic of every row; else the `topic` column |
    /// | `deliveryGuarantee` | `at-least-once` | or `exactly-once` |
    /// | `transactionalIdPrefix` | `sluice-` | exactly-once: the transactional id is prefix + query id |
    /// | `progressTopic` | `_sluice_sink_commits` | exactly-once: where committed batch ids are recorded |
    /// | `flushTimeoutMs` | 120000 | per batch |
    /// | `kafka.<librdkafka property>` | | e.g. `kafka.linger.ms`, `kafka.compression.type`, `kafka.transactional.id` |
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] naming the option, including Spark's rejected
    /// `kafka.key.serializer` / `kafka.value.serializer`.
    pub fn from_options(options: &Options) -> Result<Self> {
        let mut client = KafkaClientOptions::new(options, "the Kafka sink", REJECTED_PARAMS)?;
        let get = |key: &str| options.get(key);
        let delivery = match get("deliveryGuarantee").map(|v| v.trim().to_ascii_lowercase().replace('_', "-")) {
            None => DeliveryGuarantee::AtLeastOnce,
            Some(v) if v == "at-least-once" => DeliveryGuarantee::AtLeastOnce,
            Some(v) if v == "exactly-once" => DeliveryGuarantee::ExactlyOnce,
            Some(v) => {
                return Err(invalid(format!(
                    "option deliveryGuarantee: {v:?} is not at-least-once or exactly-once"
                )));
            }
        };
        let transactional_id = client.params.remove("transactional.id");
        if transactional_id.is_some() && delivery != DeliveryGuarantee::ExactlyOnce {
            return Err(invalid(
                "option kafka.transactional.id needs deliveryGuarantee=exactly-once (Sluice runs the transactions)",
            ));
        }
        let flush_timeout = Duration::from_millis(options.positive_u64("flushTimeoutMs")?.unwrap_or(120_000));
        let topic = get("topic").map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
        Ok(Self {
            client,
            topic,
            delivery,
            transactional_id,
            transactional_id_prefix: get("transactionalIdPrefix").unwrap_or(DEFAULT_TRANSACTIONAL_ID_PREFIX).to_string(),
            progress_topic: get("progressTopic").unwrap_or(DEFAULT_PROGRESS_TOPIC).trim().to_string(),
            flush_timeout,
        })
    }
}

fn invalid(message: impl Into<String>) -> SluiceError {
    SluiceError::InvalidArgument(message.into())
}

/// Counts delivery reports of the current batch.
#[derive(Default)]
struct DeliveryTracker {
    delivered: AtomicU64,
    failed: AtomicU64,
    /// The first failure: (topic, partition, librdkafka error).
    first_failure: Mutex<Option<(String, i32, String)>>,
}

impl DeliveryTracker {
    fn reset(&self) {
        self.delivered.store(0, Ordering::SeqCst);
        self.failed.store(0, Ordering::SeqCst);
        if let Ok(mut f) = self.first_failure.lock() {
            *f = None;
        }
    }
}

impl ClientContext for DeliveryTracker {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(error = %error, reason, "Kafka producer error");
    }
}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::SeqCst);
            }
            Err((e, m)) => {
                self.failed.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut f) = self.first_failure.lock() {
                    f.get_or_insert_with(|| (m.topic().to_string(), m.partition(), e.to_string()));
                }
            }
        }
    }
}

/// Writes micro-batches to Kafka; see the [module documentation](self).
pub struct KafkaSink {
    cfg: KafkaSinkConfig,
    producer: Option<BaseProducer<DeliveryTracker>>,
    transactional_id: Option<String>,
    /// Exactly-once: the last batch whose transaction committed.
    last_committed: Option<BatchId>,
    query_id: String,
}

impl KafkaSink {
    /// A sink for `cfg`; it connects in [`Sink::initialize`].
    pub fn new(cfg: KafkaSinkConfig) -> Self {
        Self { cfg, producer: None, transactional_id: None, last_committed: None, query_id: String::new() }
    }

    /// A sink from writer options (see [`KafkaSinkConfig::from_options`]).
    ///
    /// # Errors
    /// As [`KafkaSinkConfig::from_options`].
    pub fn from_options(options: &Options) -> Result<Self> {
        Ok(Self::new(KafkaSinkConfig::from_options(options)?))
    }

    /// The transactional id (exactly-once mode, after `initialize`).
    pub fn transactional_id(&self) -> Option<&str> {
        self.transactional_id.as_deref()
    }

    /// Exactly-once mode: the last batch committed to Kafka by this query, as found at
    /// `initialize` and updated by each batch.
    pub fn last_committed_batch(&self) -> Option<BatchId> {
        self.last_committed
    }

    fn err(&self, message: String) -> SluiceError {
        SluiceError::Sink { name: self.description(), message }
    }

    fn producer(&self) -> Result<&BaseProducer<DeliveryTracker>> {
        self.producer.as_ref().ok_or_else(|| SluiceError::Internal("the Kafka sink was not initialized".into()))
    }

    /// Exactly-once: the highest batch id recorded for `txn_id` in the progress topic,
    /// reading partition 0 backwards in windows from its end (read_committed).
    fn read_last_committed(&self, txn_id: &str) -> Result<Option<BatchId>> {
        let topic = self.cfg.progress_topic.as_str();
        // Producer properties among the options are ignored by librdkafka (with a notice).
        let mut c = self.cfg.client.client_config(&[]);
        c.set("group.id", format!("{txn_id}-progress-reader"))
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "error");
        let consumer: BaseConsumer = c.create().map_err(|e| self.err(format!("cannot create a Kafka consumer: {e}")))?;
        let (low, high) = match consumer.fetch_watermarks(topic, 0, REQUEST_TIMEOUT) {
            Ok(w) => w,
            Err(KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownPartition)) => {
                return Ok(None);
            }
            Err(e) => return Err(self.err(format!("cannot list the offsets of progress topic {topic} partition 0: {e}"))),
        };
        let mut end = high;
        while end > low {
            let start = (end - PROGRESS_SCAN_WINDOW).max(low);
            let mut found: Option<BatchId> = None;
            let mut tpl = TopicPartitionList::with_capacity(1);
            tpl.add_partition_offset(topic, 0, KafkaOffset::Offset(start))
                .and_then(|_| consumer.assign(&tpl))
                .map_err(|e| self.err(format!("cannot read progress topic {topic} partition 0: {e}")))?;
            let started = Instant::now();
            let mut last_check = Instant::now();
            loop {
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => {
                        if m.offset() >= end {
                            break;
                        }
                        if m.key() == Some(txn_id.as_bytes()) {
                            let batch = m
                                .payload()
                                .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
                                .and_then(|v| v.get("batchId").and_then(|b| b.as_u64()));
                            if let Some(b) = batch {
                                found = Some(found.map_or(b, |f| f.max(b)));
                            }
                        }
                        if m.offset() >= end - 1 {
                            break;
                        }
                    }
                    Some(Err(KafkaError::PartitionEOF(_))) => break,
                    Some(Err(e)) => {
                        return Err(self.err(format!("cannot read progress topic {topic} partition 0: {e}")));
                    }
                    None => {
                        // Control records at the end: the position passes them.
                        if last_check.elapsed() >= Duration::from_millis(200) {
                            last_check = Instant::now();
                            let reached = consumer.position().ok().and_then(|p| {
                                p.find_partition(topic, 0).and_then(|e| match e.offset() {
                                    KafkaOffset::Offset(o) => Some(o >= end),
                                    _ => None,
                                })
                            });
                            if reached == Some(true) {
                                break;
                            }
                        }
                        if started.elapsed() >= self.cfg.flush_timeout {
                            return Err(self.err(format!(
                                "timed out reading offsets [{start}, {end}) of progress topic {topic} partition 0"
                            )));
                        }
                    }
                }
            }
            if found.is_some() {
                return Ok(found);
            }
            end = start;
        }
        Ok(None)
    }

    /// Sends every row of `batch`; returns the number of records sent.
    fn send_rows(&self, batch_id: BatchId, batch: &RecordBatch) -> Result<u64> {
        let producer = self.producer()?;
        let columns = Columns::of(batch, self.cfg.topic.is_some()).map_err(|m| self.err(format!("batch {batch_id}: {m}")))?;
        let mut sent = 0u64;
        for row in 0..batch.num_rows() {
            let topic = match (&self.cfg.topic, &columns.topic) {
                (Some(t), _) => t.as_str(),
                (None, Some(col)) => bytes_at(col, row).and_then(|b| std::str::from_utf8(b).ok()).ok_or_else(|| {
                    self.err(format!(
                        "batch {batch_id}: row {row} has a null topic; set the option topic or fill the topic column"
                    ))
                })?,
                (None, None) => return Err(SluiceError::Internal("no topic column checked".into())),
            };
            let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
            if let Some(v) = bytes_at(&columns.value, row) {
                record = record.payload(v);
            }
            if let Some(k) = columns.key.as_ref().and_then(|k| bytes_at(k, row)) {
                record = record.key(k);
            }
            if let Some(p) = &columns.partition {
                if p.is_valid(row) {
                    record = record.partition(p.value(row));
                }
            }
            if let Some(h) = &columns.headers {
                if let Some(headers) = headers_at(h, row) {
                    record = record.headers(headers);
                }
            }
            let partition = record.partition;
            send(producer, record).map_err(|e| {
                let partition = partition.map_or("(partitioner's choice)".to_string(), |p| p.to_string());
                self.err(format!("batch {batch_id}: cannot send row {row} to topic {topic} partition {partition}: {e}"))
            })?;
            sent += 1;
            if sent.is_multiple_of(1024) {
                producer.poll(Duration::ZERO);
            }
        }
        Ok(sent)
    }

    /// Flushes and checks that all `sent` records were acknowledged.
    fn await_deliveries(&self, batch_id: BatchId, sent: u64) -> Result<()> {
        let producer = self.producer()?;
        let flushed = producer.flush(self.cfg.flush_timeout);
        let tracker = producer.context();
        let failed = tracker.failed.load(Ordering::SeqCst);
        if failed > 0 {
            let first = tracker.first_failure.lock().ok().and_then(|f| f.clone());
            let (topic, partition, error) = first.unwrap_or_else(|| ("?".into(), -1, "unknown error".into()));
            return Err(self.err(format!(
                "batch {batch_id}: {failed} of {sent} records were not delivered; the first to topic {topic} \
                 partition {partition}: {error}"
            )));
        }
        if let Err(e) = flushed {
            return Err(self.err(format!(
                "batch {batch_id}: {} of {sent} records still unacknowledged after {} ms (option flushTimeoutMs): {e}",
                sent.saturating_sub(tracker.delivered.load(Ordering::SeqCst)),
                self.cfg.flush_timeout.as_millis()
            )));
        }
        let delivered = tracker.delivered.load(Ordering::SeqCst);
        if delivered < sent {
            return Err(self.err(format!("batch {batch_id}: only {delivered} of {sent} records were acknowledged")));
        }
        Ok(())
    }

    fn write_transactional(&mut self, batch_id: BatchId, batch: &RecordBatch) -> Result<()> {
        let txn_id = self.transactional_id.clone().unwrap_or_default();
        let producer = self.producer()?;
        producer.context().reset();
        producer.begin_transaction().map_err(|e| self.err(format!("batch {batch_id}: cannot begin a transaction: {e}")))?;
        let result = (|| {
            let mut sent = self.send_rows(batch_id, batch)?;
            let marker = serde_json::json!({"batchId": batch_id, "queryId": self.query_id, "records": sent}).to_string();
            let record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.cfg.progress_topic)
                .partition(0)
                .key(txn_id.as_bytes())
                .payload(marker.as_bytes());
            send(self.producer()?, record).map_err(|e| {
                self.err(format!(
                    "batch {batch_id}: cannot send the commit marker to topic {} partition 0: {e}",
                    self.cfg.progress_topic
                ))
            })?;
            sent += 1;
            self.await_deliveries(batch_id, sent)?;
            self.producer()?
                .commit_transaction(self.cfg.flush_timeout)
                .map_err(|e| self.err(format!("batch {batch_id}: cannot commit the transaction of {txn_id}: {e}")))
        })();
        if let Err(e) = result {
            if let Err(abort) = self.producer()?.abort_transaction(self.cfg.flush_timeout) {
                tracing::warn!(batch_id, error = %abort, "cannot abort the Kafka transaction");
            }
            return Err(e);
        }
        self.last_committed = Some(batch_id);
        Ok(())
    }
}

/// Sends `record`, waiting while the producer's queue is full.
fn send(producer: &BaseProducer<DeliveryTracker>, mut record: BaseRecord<'_, [u8], [u8]>) -> std::result::Result<(), KafkaError> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// The sink's columns of one batch.
struct Columns {
    value: ArrayRef,
    key: Option<ArrayRef>,
    topic: Option<ArrayRef>,
    partition: Option<arrow::array::Int32Array>,
    /// A List or LargeList of structs.
    headers: Option<ArrayRef>,
}

fn is_bytes(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Binary | DataType::LargeBinary | DataType::BinaryView
    )
}

fn is_string(dt: &DataType) -> bool {
    matches!(dt, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

impl Columns {
    fn of(batch: &RecordBatch, topic_option: bool) -> std::result::Result<Self, String> {
        let col = |name: &str| batch.column_by_name(name).cloned();
        let value = col("value").ok_or("required attribute 'value' not found (a String or Binary column)")?;
        if !is_bytes(value.data_type()) {
            return Err(format!("value attribute type must be a string or binary, not {}", value.data_type()));
        }
        let key = col("key");
        if let Some(k) = &key {
            if !is_bytes(k.data_type()) {
                return Err(format!("key attribute type must be a string or binary, not {}", k.data_type()));
            }
        }
        let topic = col("topic");
        match &topic {
            Some(t) if !is_string(t.data_type()) && !topic_option => {
                return Err(format!("topic attribute type must be a string, not {}", t.data_type()));
            }
            None if !topic_option => {
                return Err("topic option required when no 'topic' attribute is present; use the topic option for \
                            setting a topic"
                    .into());
            }
            _ => {}
        }
        let partition = match col("partition") {
            None => None,
            Some(p) => match p.data_type() {
                DataType::Int32 => Some(p.as_primitive::<arrow::datatypes::Int32Type>().clone()),
                other => return Err(format!("partition attribute type must be an int, not {other}")),
            },
        };
        let headers = match col("headers") {
            None => None,
            Some(h) => {
                let ok = match h.data_type() {
                    DataType::List(f) | DataType::LargeList(f) => match f.data_type() {
                        DataType::Struct(fs) => {
                            fs.len() == 2
                                && fs[0].name() == "key"
                                && is_string(fs[0].data_type())
                                && fs[1].name() == "value"
                                && is_bytes(fs[1].data_type())
                        }
                        _ => false,
                    },
                    _ => false,
                };
                if !ok {
                    return Err(format!(
                        "headers attribute type must be a list of struct {{key: string, value: binary}}, not {}",
                        h.data_type()
                    ));
                }
                Some(h)
            }
        };
        Ok(Self { value, key, topic: if topic_option { None } else { topic }, partition, headers })
    }
}

/// The bytes of row `i` of a String or Binary array (`None` when null).
fn bytes_at(a: &ArrayRef, i: usize) -> Option<&[u8]> {
    if a.is_null(i) {
        return None;
    }
    Some(match a.data_type() {
        DataType::Utf8View => a.as_string_view().value(i).as_bytes(),
        DataType::Utf8 => a.as_string::<i32>().value(i).as_bytes(),
        DataType::LargeUtf8 => a.as_string::<i64>().value(i).as_bytes(),
        DataType::BinaryView => a.as_binary_view().value(i),
        DataType::Binary => a.as_binary::<i32>().value(i),
        DataType::LargeBinary => a.as_binary::<i64>().value(i),
        _ => return None,
    })
}

fn headers_at(list: &ArrayRef, row: usize) -> Option<OwnedHeaders> {
    if list.is_null(row) {
        return None;
    }
    let entries = match list.data_type() {
        DataType::List(_) => list.as_list::<i32>().value(row),
        DataType::LargeList(_) => list.as_list::<i64>().value(row),
        _ => return None,
    };
    let entries: &StructArray = entries.as_struct();
    let (keys, values) = (entries.column(0), entries.column(1));
    let mut headers = OwnedHeaders::new_with_capacity(entries.len());
    for i in 0..entries.len() {
        let Some(key) = bytes_at(keys, i).and_then(|k| std::str::from_utf8(k).ok()) else { continue };
        headers = headers.insert(Header { key, value: bytes_at(values, i) });
    }
    Some(headers)
}

impl Sink for KafkaSink {
    /// `KafkaSink[<topic or "topic column">, at-least-once|exactly-once]`.
    fn description(&self) -> String {
        let mode = match self.cfg.delivery {
            DeliveryGuarantee::AtLeastOnce => "at-least-once",
            DeliveryGuarantee::ExactlyOnce => "exactly-once",
        };
        format!("KafkaSink[{}, {mode}]", self.cfg.topic.as_deref().unwrap_or("topic column"))
    }

    /// Creates the producer; in exactly-once mode initializes transactions (fencing an
    /// older instance of this query) and reads the last committed batch id.
    ///
    /// # Errors
    /// [`SluiceError::Sink`] when librdkafka rejects the configuration or the cluster
    /// cannot be reached within `flushTimeoutMs`.
    fn initialize(&mut self, ctx: &SinkContext) -> Result<()> {
        self.query_id = ctx.query_id.clone();
        let mut config = self.cfg.client.client_config(&[]);
        if self.cfg.delivery == DeliveryGuarantee::ExactlyOnce {
            let txn_id = self
                .cfg
                .transactional_id
                .clone()
                .unwrap_or_else(|| format!("{}{}", self.cfg.transactional_id_prefix, ctx.query_id));
            config.set("transactional.id", &txn_id);
            self.transactional_id = Some(txn_id);
        }
        let producer: BaseProducer<DeliveryTracker> = config
            .create_with_context(DeliveryTracker::default())
            .map_err(|e| self.err(format!("cannot create the Kafka producer: {e}")))?;
        if let Some(txn_id) = self.transactional_id.clone() {
            producer
                .init_transactions(self.cfg.flush_timeout)
                .map_err(|e| self.err(format!("cannot initialize transactions for {txn_id}: {e}")))?;
            self.producer = Some(producer);
            self.last_committed = self.read_last_committed(&txn_id)?;
            tracing::info!(transactional_id = %txn_id, last_committed = ?self.last_committed, "Kafka sink ready");
        } else {
            self.producer = Some(producer);
        }
        Ok(())
    }

    /// Writes the rows of `batch_id` (see the [module documentation](self)).
    ///
    /// # Errors
    /// [`SluiceError::Sink`] naming the batch, topic, partition and librdkafka error when
    /// a record is rejected or not delivered, or a column has the wrong type.
    fn add_batch(&mut self, batch_id: BatchId, data: &DataFrame) -> Result<()> {
        if self.cfg.delivery == DeliveryGuarantee::ExactlyOnce {
            if let Some(last) = self.last_committed {
                if batch_id <= last {
                    tracing::info!(batch_id, last, sink = %self.description(), "batch already committed to Kafka; skipping (replay)");
                    return Ok(());
                }
            }
        }
        let batch = df_to_record_batch(data)?;
        if self.cfg.delivery == DeliveryGuarantee::ExactlyOnce {
            return self.write_transactional(batch_id, &batch);
        }
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.producer()?.context().reset();
        let sent = self.send_rows(batch_id, &batch)?;
        self.await_deliveries(batch_id, sent)
    }
}

/// Creates [`KafkaSink`]s from the writer's options; [`register_all`](crate::register_all)
/// registers it as `kafka`.
#[derive(Debug, Clone, Copy, Default)]
pub struct KafkaSinkProvider;

impl SinkProvider for KafkaSinkProvider {
    /// # Errors
    /// As [`KafkaSinkConfig::from_options`].
    fn create(&self, options: &Options) -> Result<Box<dyn Sink>> {
        Ok(Box::new(KafkaSink::from_options(options)?))
    }
    fn known_options(&self) -> &'static [&'static str] {
        SINK_OPTIONS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::{BinaryArray, Int32Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    fn opts(pairs: &[(&str, &str)]) -> Options {
        Options::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn options_are_checked() {
        assert!(KafkaSinkConfig::from_options(&opts(&[("topic", "t")])).is_err());
        let base = [("kafka.bootstrap.servers", "h:1")];
        let with = |extra: &[(&str, &str)]| KafkaSinkConfig::from_options(&opts(&[&base[..], extra].concat()));
        assert!(with(&[("kafka.value.serializer", "x")]).is_err());
        assert!(with(&[("deliveryGuarantee", "maybe")]).is_err());
        assert!(with(&[("kafka.transactional.id", "x")]).is_err(), "transactions need exactly-once");
        let c = with(&[("deliveryguarantee", "EXACTLY_ONCE"), ("topic", "out"), ("kafka.linger.ms", "5")]).unwrap();
        assert_eq!(c.delivery, DeliveryGuarantee::ExactlyOnce);
        assert_eq!(c.topic.as_deref(), Some("out"));
        assert_eq!(c.progress_topic, DEFAULT_PROGRESS_TOPIC);
        assert_eq!(c.client.params.get("linger.ms").map(String::as_str), Some("5"));
    }

    #[test]
    fn columns_are_checked_like_spark() {
        let batch = |fields: Vec<(Field, ArrayRef)>| {
            let (f, a): (Vec<Field>, Vec<ArrayRef>) = fields.into_iter().unzip();
            RecordBatch::try_new(Arc::new(Schema::new(f)), a).unwrap()
        };
        let s = |v: &str| Arc::new(StringArray::from(vec![v])) as ArrayRef;
        let no_value = batch(vec![(Field::new("key", DataType::Utf8, true), s("k"))]);
        assert!(Columns::of(&no_value, true).err().unwrap().contains("'value' not found"));
        let int_value = batch(vec![(Field::new("value", DataType::Int32, true), Arc::new(Int32Array::from(vec![1])))]);
        assert!(Columns::of(&int_value, true).err().unwrap().contains("string or binary"));
        let no_topic = batch(vec![(Field::new("value", DataType::Binary, true), Arc::new(BinaryArray::from(vec![&b"v"[..]])))]);
        assert!(Columns::of(&no_topic, false).err().unwrap().contains("topic option required"));
        assert!(Columns::of(&no_topic, true).is_ok());
        let with_topic = batch(vec![
            (Field::new("value", DataType::Utf8, true), s("v")),
            (Field::new("topic", DataType::Utf8, true), s("t")),
        ]);
        let c = Columns::of(&with_topic, false).unwrap();
        assert_eq!(bytes_at(c.topic.as_ref().unwrap(), 0), Some(&b"t"[..]));
        assert_eq!(bytes_at(&c.value, 0), Some(&b"v"[..]));
    }
}
