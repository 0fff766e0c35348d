//! `KafkaStream`, the running Kafka source of one query run (Spark's
//! `KafkaMicroBatchStream`): resolves the starting offsets, plans each batch's ranges
//! and reads them.
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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryViewBuilder, Int32Builder, Int64Builder, ListArray, RecordBatch, StringViewBuilder,
    StructArray, TimestampMicrosecondBuilder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType as ArrowDataType, Field as ArrowField, Schema as ArrowSchema, TimeUnit as ArrowTimeUnit};
use polars::prelude::{DataFrame, SchemaRef};
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer, DefaultConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message, Timestamp};
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};
use serde_json::Value;
use sluice_engine::interop::record_batches_to_df;
use sluice_engine::{Offset, Result, SluiceError, Source, SourceContext};

use super::offsets::{KafkaSourceOffset, TopicPartition, rate_limit, tp_list, tp_list_at};
use super::source::{KafkaSourceConfig, KafkaSourceMetrics, StartingOffsets, Subscription, create_consumer, header_fields};
use super::REQUEST_TIMEOUT;

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


/// Earliest or latest offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edge {
    Earliest,
    Latest,
}

/// One query run's Kafka source (Spark's `KafkaMicroBatchStream`).
pub(crate) struct KafkaStream {
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

impl KafkaStream {
    /// A run of the source configured by `cfg`, counting into `metrics`; connects its
    /// reader and metadata consumers.
    ///
    /// # Errors
    /// [`SluiceError::Source`] when librdkafka rejects the client configuration.
    pub(crate) fn new(cfg: Arc<KafkaSourceConfig>, metrics: Arc<KafkaSourceMetrics>) -> Result<Self> {
        Ok(Self {
            name: cfg.description(),
            consumer: Arc::new(create_consumer(&cfg)?),
            meta: create_consumer(&cfg)?,
            cfg,
            metrics,
            queues: BTreeMap::new(),
            initial: None,
            available_now: None,
            backlog: None,
            assigned: BTreeMap::new(),
        })
    }

    fn err(&self, message: impl Into<String>) -> SluiceError {
        SluiceError::Source { name: self.name.clone(), message: message.into() }
    }

    fn kafka_err(&self, what: &str, e: &KafkaError) -> SluiceError {
        self.err(format!("{what} (bootstrap servers {}): {e}", self.cfg.client.bootstrap_servers))
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


impl Source for KafkaStream {
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

    /// [`KafkaSourceMetrics::to_map`]: Spark's lag metrics and Sluice's data-loss counters.
    fn metrics(&self) -> BTreeMap<String, String> {
        self.metrics.to_map()
    }
}

