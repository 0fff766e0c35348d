//! `KinesisStream`, the running Kinesis source of one query run: resolves the starting
//! position, follows the shard lineage, plans each batch's ranges by reading ahead, and
//! serves or re-reads them.
//!
//! ```text
//!  latest_offset(start) ── first batch: startingPosition resolved once per shard ─► sources/<i>/0
//!        │   ListShards (at most once a second, or when a shard ended): shards, parents, closed or not
//!        │   a shard is read once its parents are at SHARD_END (or expired): KCL's order
//!        │   GetRecords per shard, concurrently, until each has its share of
//!        │   maxRecordsPerTrigger (max-min fair), is caught up (MillisBehindLatest 0),
//!        ▼   or ended (closed and read to its end); the records are kept in memory
//!  offsets/N  {"stream":{"shardId-0":"4959...","shardId-1":"SHARD_END","shardId-2":"TRIM_HORIZON"}}
//!        │
//!        ▼
//!  get_batch(start, end) ── per shard, the records after start up to end: from memory when
//!        │                  read ahead by this run, else (a replay after a restart) read
//!        ▼                  again with an iterator AFTER_SEQUENCE_NUMBER start, up to end
//!  commit(end) ── drops the records up to end from memory
//! ```

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow::array::{ArrayRef, BinaryViewBuilder, RecordBatch, StringViewBuilder, TimestampMicrosecondBuilder};
use arrow::datatypes::{DataType as ArrowDataType, Field as ArrowField, Schema as ArrowSchema, TimeUnit as ArrowTimeUnit};
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::ShardIteratorType;
use backon::ExponentialBuilder;
use futures::future::join_all;
use polars::prelude::{DataFrame, SchemaRef};
use serde_json::Value;
use sluice_engine::interop::record_batches_to_df;
use sluice_engine::{Offset, Result, SluiceError, Source, SourceContext};

use super::client::{Connection, describe, retry_throttled};
use super::offsets::{KinesisSourceOffset, ShardPosition, compare_sequence_numbers, split_limit};
use super::source::{KinesisSourceConfig, KinesisSourceMetrics, StartingPosition};

/// How often the shard list is refreshed at most (unless a shard ended).
const LIST_INTERVAL: Duration = Duration::from_secs(1);
/// Empty GetRecords answers in a row, while behind the tip, before a read gives up for
/// now (planning) or fails (a replay that cannot find its end).
const MAX_EMPTY_READS: u32 = 50;

/// A shard as ListShards describes it.
#[derive(Debug, Clone)]
struct ShardInfo {
    /// `ParentShardId` and `AdjacentParentShardId` (a merge has two).
    parents: Vec<String>,
    /// `EndingSequenceNumber`: set once the shard is closed (split or merged).
    ending: Option<String>,
}

/// One fetched record.
#[derive(Debug, Clone)]
struct Rec {
    seq: String,
    key: String,
    data: Vec<u8>,
    arrival_us: i64,
}

/// What this run has read of one shard and not yet committed.
#[derive(Debug)]
struct ShardReader {
    /// The position just before the first buffered record.
    base: ShardPosition,
    /// Records after `base`, in sequence-number order.
    buffer: Vec<Rec>,
    /// An iterator continuing after the last buffered record (None: make one).
    iterator: Option<String>,
    /// The shard is closed and everything of it is buffered.
    ended: bool,
    /// The shard was caught up: not read again before then.
    idle_until: Option<Instant>,
    /// `MillisBehindLatest` of the latest read.
    millis_behind: i64,
}

impl ShardReader {
    fn at(base: ShardPosition) -> Self {
        let ended = base == ShardPosition::ShardEnd;
        Self { base, buffer: Vec::new(), iterator: None, ended, idle_until: None, millis_behind: 0 }
    }

    /// How many buffered records `p` covers, if `p` is within the buffer.
    fn index_of(&self, p: &ShardPosition) -> Option<usize> {
        if *p == self.base {
            return Some(0);
        }
        match p {
            ShardPosition::After(seq) => self.buffer.iter().position(|r| &r.seq == seq).map(|i| i + 1),
            ShardPosition::ShardEnd if self.ended => Some(self.buffer.len()),
            _ => None,
        }
    }

    /// The position after the last buffered record.
    fn tail(&self) -> ShardPosition {
        match self.buffer.last() {
            Some(r) => ShardPosition::After(r.seq.clone()),
            None => self.base.clone(),
        }
    }

    /// The buffered records after `from` up to `until`, if both are within the buffer.
    fn slice(&self, from: &ShardPosition, until: &ShardPosition) -> Option<&[Rec]> {
        let (i, j) = (self.index_of(from)?, self.index_of(until)?);
        (i <= j).then(|| &self.buffer[i..j])
    }
}

/// How a read of a shard ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadState {
    /// More may follow.
    More,
    /// At the tip: nothing more now.
    CaughtUp,
    /// A closed shard read to its end.
    Ended,
}

/// Reading one shard: the calls, shared by planning (read ahead) and replays.
struct ShardCalls<'a> {
    client: &'a Client,
    backoff: ExponentialBuilder,
    stream: &'a str,
    shard: &'a str,
    info: Option<&'a ShardInfo>,
    metrics: &'a KinesisSourceMetrics,
    max_per_read: u32,
}

impl ShardCalls<'_> {
    fn err(&self, what: &str, e: impl std::fmt::Display) -> String {
        format!("{what} of stream {} shard {}: {e}", self.stream, self.shard)
    }

    /// An iterator starting after `p` (`None` at SHARD_END).
    async fn iterator(&self, p: &ShardPosition) -> std::result::Result<Option<String>, String> {
        let req = self.client.get_shard_iterator().stream_name(self.stream).shard_id(self.shard);
        let req = match p {
            ShardPosition::ShardEnd => return Ok(None),
            ShardPosition::TrimHorizon => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
            ShardPosition::AtTimestamp(ms) => {
                req.shard_iterator_type(ShardIteratorType::AtTimestamp).timestamp(DateTime::from_millis(*ms))
            }
            ShardPosition::After(seq) => {
                req.shard_iterator_type(ShardIteratorType::AfterSequenceNumber).starting_sequence_number(seq)
            }
        };
        let out = retry_throttled(self.backoff, "GetShardIterator", || req.clone().send())
            .await
            .map_err(|e| self.err(&format!("cannot get an iterator at {p}"), describe(&e)))?;
        Ok(out.shard_iterator)
    }

    /// One GetRecords call of up to `limit` records with the iterator of `reader` (made
    /// from its tail when it has none); appends the records and tells where the read
    /// stands.
    async fn read(&self, reader: &mut ShardReader, limit: u32) -> std::result::Result<ReadState, String> {
        let it = match reader.iterator.take() {
            Some(it) => it,
            None => match self.iterator(&reader.tail()).await? {
                Some(it) => it,
                None => {
                    reader.ended = true;
                    return Ok(ReadState::Ended);
                }
            },
        };
        let limit = limit.clamp(1, self.max_per_read) as i32;
        let call = || self.client.get_records().shard_iterator(&it).limit(limit).send();
        let out = match retry_throttled(self.backoff, "GetRecords", call).await {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_expired_iterator_exception()) => {
                // Iterators live 5 minutes: make a new one at the same place.
                return Ok(ReadState::More);
            }
            Err(e) => return Err(self.err("cannot read records", describe(&e))),
        };
        self.metrics.get_records_calls.fetch_add(1, Ordering::Relaxed);
        let n = out.records.len();
        let mut bytes = 0u64;
        for r in out.records {
            let arrival_us = r.approximate_arrival_timestamp.map_or(0, |t| {
                t.secs().saturating_mul(1_000_000).saturating_add(i64::from(t.subsec_nanos() / 1000))
            });
            let data = r.data.into_inner();
            bytes += data.len() as u64;
            reader.buffer.push(Rec { seq: r.sequence_number, key: r.partition_key.unwrap_or_default(), data, arrival_us });
        }
        self.metrics.records_read.fetch_add(n as u64, Ordering::Relaxed);
        self.metrics.bytes_read.fetch_add(bytes, Ordering::Relaxed);
        reader.millis_behind = out.millis_behind_latest.unwrap_or(0);
        reader.iterator = out.next_shard_iterator;
        let closed_end = self.info.and_then(|i| i.ending.as_deref());
        let at_end = match (&reader.iterator, closed_end) {
            // Kinesis: no next iterator past a closed shard's last record.
            (None, _) => true,
            (Some(_), Some(end)) => {
                // Some servers (moto) keep handing out iterators: the shard's ending
                // sequence number, or an empty answer at the tip of a closed shard, is
                // its end.
                let reached = match reader.tail() {
                    ShardPosition::After(last) => compare_sequence_numbers(&last, end) != CmpOrdering::Less,
                    ShardPosition::ShardEnd => true,
                    _ => false,
                };
                reached || (n == 0 && reader.millis_behind == 0)
            }
            (Some(_), None) => false,
        };
        if at_end {
            reader.ended = true;
            reader.iterator = None;
            return Ok(ReadState::Ended);
        }
        if reader.millis_behind == 0 && (n as i32) < limit {
            return Ok(ReadState::CaughtUp);
        }
        Ok(ReadState::More)
    }

    /// Reads ahead until `reader` holds `want` records (or the shard is caught up or
    /// ended), at most `MAX_EMPTY_READS` empty answers in a row.
    async fn read_ahead(&self, reader: &mut ShardReader, want: usize, idle: Duration) -> std::result::Result<(), String> {
        let mut empty = 0;
        while reader.buffer.len() < want && !reader.ended {
            if reader.idle_until.is_some_and(|t| Instant::now() < t) {
                return Ok(());
            }
            let before = reader.buffer.len();
            let limit = u32::try_from(want - before).unwrap_or(u32::MAX);
            match self.read(reader, limit).await? {
                ReadState::Ended => return Ok(()),
                ReadState::CaughtUp => {
                    reader.idle_until = Some(Instant::now() + idle);
                    return Ok(());
                }
                ReadState::More if reader.buffer.len() == before => {
                    empty += 1;
                    if empty >= MAX_EMPTY_READS {
                        return Ok(());
                    }
                }
                ReadState::More => empty = 0,
            }
        }
        Ok(())
    }

    /// The records after `from` up to `until` (a replay): a new iterator at `from`, read
    /// until the record numbered `until`, or the shard's end for `SHARD_END`.
    async fn read_range(&self, from: &ShardPosition, until: &ShardPosition) -> std::result::Result<Vec<Rec>, String> {
        let mut reader = ShardReader::at(from.clone());
        let mut empty = 0;
        loop {
            let before = reader.buffer.len();
            let state = self.read(&mut reader, self.max_per_read).await?;
            if let ShardPosition::After(end) = until {
                if let Some(i) = reader.buffer[before..].iter().position(|r| &r.seq == end) {
                    reader.buffer.truncate(before + i + 1);
                    return Ok(reader.buffer);
                }
                if let Some(past) = reader.buffer[before..]
                    .iter()
                    .find(|r| compare_sequence_numbers(&r.seq, end) == CmpOrdering::Greater)
                {
                    return Err(self.err(
                        &format!("cannot replay ({from}, {end}]"),
                        format!("sequence number {end} is not in the shard (the next record is {})", past.seq),
                    ));
                }
            }
            match state {
                ReadState::Ended if *until == ShardPosition::ShardEnd => return Ok(reader.buffer),
                ReadState::Ended => {
                    return Err(self.err(
                        &format!("cannot replay ({from}, {until}]"),
                        "the shard ended before the batch's last record (trimmed past its retention?)",
                    ));
                }
                _ if reader.buffer.len() > before => empty = 0,
                _ => {
                    empty += 1;
                    if empty >= MAX_EMPTY_READS {
                        return Err(self.err(
                            &format!("cannot replay ({from}, {until}]"),
                            format!("{MAX_EMPTY_READS} reads in a row found nothing before the batch's last record"),
                        ));
                    }
                }
            }
        }
    }
}

/// Rows being built for one batch.
struct Rows {
    data: BinaryViewBuilder,
    stream: StringViewBuilder,
    key: StringViewBuilder,
    seq: StringViewBuilder,
    shard: StringViewBuilder,
    arrival: TimestampMicrosecondBuilder,
}

impl Rows {
    fn new() -> Self {
        Self {
            data: BinaryViewBuilder::new(),
            stream: StringViewBuilder::new(),
            key: StringViewBuilder::new(),
            seq: StringViewBuilder::new(),
            shard: StringViewBuilder::new(),
            arrival: TimestampMicrosecondBuilder::new(),
        }
    }

    fn push_all(&mut self, stream: &str, shard: &str, recs: &[Rec]) {
        for r in recs {
            self.data.append_value(&r.data);
            self.stream.append_value(stream);
            self.key.append_value(&r.key);
            self.seq.append_value(&r.seq);
            self.shard.append_value(shard);
            self.arrival.append_value(r.arrival_us);
        }
    }

    fn finish(mut self) -> Result<RecordBatch> {
        let text = |name: &str| ArrowField::new(name, ArrowDataType::Utf8View, false);
        let schema = ArrowSchema::new(vec![
            ArrowField::new("data", ArrowDataType::BinaryView, false),
            text("stream"),
            text("partitionKey"),
            text("sequenceNumber"),
            text("shardId"),
            ArrowField::new("approximateArrivalTimestamp", ArrowDataType::Timestamp(ArrowTimeUnit::Microsecond, None), false),
        ]);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.data.finish()),
            Arc::new(self.stream.finish()),
            Arc::new(self.key.finish()),
            Arc::new(self.seq.finish()),
            Arc::new(self.shard.finish()),
            Arc::new(self.arrival.finish()),
        ];
        Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// One query run's Kinesis source.
pub(crate) struct KinesisStream {
    cfg: Arc<KinesisSourceConfig>,
    name: String,
    metrics: Arc<KinesisSourceMetrics>,
    conn: Connection,
    /// The resolved starting positions (`sources/<i>/0`).
    initial: Option<KinesisSourceOffset>,
    /// The stream's shards, as last listed.
    shards: BTreeMap<String, ShardInfo>,
    listed_at: Option<Instant>,
    /// What this run read ahead, per shard.
    readers: BTreeMap<String, ShardReader>,
}

impl KinesisStream {
    /// A run of the source configured by `cfg`, counting into `metrics`.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] when no AWS region is known.
    pub(crate) fn new(cfg: Arc<KinesisSourceConfig>, metrics: Arc<KinesisSourceMetrics>) -> Result<Self> {
        let name = cfg.description();
        let conn = Connection::connect(&cfg.client, metrics.client.clone(), &name)?;
        Ok(Self { cfg, name, metrics, conn, initial: None, shards: BTreeMap::new(), listed_at: None, readers: BTreeMap::new() })
    }

    fn err(&self, message: impl Into<String>) -> SluiceError {
        SluiceError::Source { name: self.name.clone(), message: message.into() }
    }

    /// Lists the stream's shards (every page of ListShards), unless listed less than a
    /// second ago and `force` is false.
    fn refresh_shards(&mut self, force: bool) -> Result<()> {
        if !force && self.listed_at.is_some_and(|t| t.elapsed() < LIST_INTERVAL) {
            return Ok(());
        }
        let stream = self.cfg.stream_name.clone();
        let (client, backoff) = (&self.conn.client, self.conn.backoff);
        let listed = self.conn.rt.block_on(async {
            let mut shards = BTreeMap::new();
            let mut token: Option<String> = None;
            loop {
                let req = match &token {
                    // With a token, ListShards takes no stream name.
                    Some(t) => client.list_shards().next_token(t),
                    None => client.list_shards().stream_name(&stream),
                };
                let out = retry_throttled(backoff, "ListShards", || req.clone().send()).await.map_err(|e| describe(&e))?;
                for s in out.shards.unwrap_or_default() {
                    let mut parents = Vec::new();
                    parents.extend(s.parent_shard_id.clone());
                    parents.extend(s.adjacent_parent_shard_id.clone());
                    let ending = s.sequence_number_range.and_then(|r| r.ending_sequence_number);
                    shards.insert(s.shard_id, ShardInfo { parents, ending });
                }
                token = out.next_token;
                if token.is_none() {
                    return Ok::<_, String>(shards);
                }
            }
        });
        let listed = listed.map_err(|e| self.err(format!("cannot list the shards of stream {stream}: {e}")))?;
        self.shards = listed;
        self.listed_at = Some(Instant::now());
        Ok(())
    }

    /// The logged starting positions (`sources/<i>/0`) of an earlier run, if any.
    fn logged_initial(&mut self, ctx: SourceContext<'_>) -> Result<Option<KinesisSourceOffset>> {
        if self.initial.is_none() {
            let log = ctx.checkpoint.log::<Value>(ctx.log_name());
            if let Some(v) = log.get(0)? {
                let parsed = KinesisSourceOffset::from_json(&v, &self.cfg.stream_name).map_err(|m| {
                    SluiceError::Checkpoint(sluice_engine::checkpoint::CheckpointError::Corrupt {
                        path: ctx.checkpoint.display_path(&log.path(0)),
                        reason: format!("not the Kinesis source's starting positions: {m}"),
                    })
                })?;
                self.initial = Some(parsed);
            }
        }
        Ok(self.initial.clone())
    }

    /// The positions the query starts from: `sources/<i>/0` when logged, else
    /// `startingPosition` resolved now for every listed shard, and logged.
    fn initial_offsets(&mut self, ctx: SourceContext<'_>) -> Result<KinesisSourceOffset> {
        if let Some(logged) = self.logged_initial(ctx)? {
            return Ok(logged);
        }
        self.refresh_shards(true)?;
        let position = match self.cfg.starting_position {
            StartingPosition::TrimHorizon => ShardPosition::TrimHorizon,
            StartingPosition::Latest => ShardPosition::AtTimestamp(now_ms()),
            StartingPosition::AtTimestamp(ms) => ShardPosition::AtTimestamp(ms),
        };
        let resolved =
            KinesisSourceOffset::new(&self.cfg.stream_name, self.shards.keys().map(|id| (id.clone(), position.clone())).collect());
        let json = resolved.to_json();
        // Create-only: a conflicting entry (another run got there first) is an error.
        ctx.checkpoint.log::<Value>(ctx.log_name()).add(0, &json)?;
        tracing::info!(source = %self.name, positions = %json, "initial Kinesis positions");
        self.initial = Some(resolved.clone());
        Ok(resolved)
    }

    /// Where a shard absent from an offset starts: its logged starting position, or
    /// (a shard born after the query started) `TRIM_HORIZON`.
    fn start_of(&self, shard: &str) -> ShardPosition {
        self.initial.as_ref().and_then(|i| i.shards.get(shard).cloned()).unwrap_or(ShardPosition::TrimHorizon)
    }

    /// Whether `shard` may be read given `positions`: each parent is read to its end, or
    /// no longer listed (expired, or never seen).
    fn parents_done(&self, shard: &str, positions: &BTreeMap<String, ShardPosition>) -> bool {
        self.shards.get(shard).is_none_or(|info| {
            info.parents
                .iter()
                .all(|p| !self.shards.contains_key(p) || positions.get(p) == Some(&ShardPosition::ShardEnd))
        })
    }

    /// Data loss: fails (`failOnDataLoss=true`), or warns and counts.
    fn data_loss(&self, message: String) -> Result<()> {
        if self.cfg.fail_on_data_loss {
            return Err(self.err(format!(
                "data loss: {message}. Set the source option failOnDataLoss to false to skip it with a warning."
            )));
        }
        tracing::warn!(source = %self.name, "data loss: {message}");
        self.metrics.data_loss_events.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Reads ahead the shards of `round` (concurrently) so that each holds its share of
    /// `budget` after its position in `end`, shared max-min fair; moves their positions
    /// in `end` to the last record planned (or SHARD_END). Returns the records planned.
    fn plan_round(&mut self, round: &[String], end: &mut BTreeMap<String, ShardPosition>, budget: Option<u64>) -> Result<u64> {
        // Readers that continue exactly where the positions stand; others start afresh.
        let mut index = BTreeMap::new();
        for id in round {
            let pos = end[id].clone();
            let aligned = self.readers.get(id).and_then(|r| r.index_of(&pos));
            let i = match aligned {
                Some(i) => i,
                None => {
                    self.readers.insert(id.clone(), ShardReader::at(pos));
                    0
                }
            };
            index.insert(id.clone(), i);
        }
        let cap = self.cfg.max_fetch_records_per_shard;
        let available = |readers: &BTreeMap<String, ShardReader>, id: &String| (readers[id].buffer.len() - index[id]) as u64;
        // Shards whose whole content (for now) is known: they can give no more.
        let mut exhausted: BTreeMap<String, u64> = BTreeMap::new();
        let shares = loop {
            let wanted: BTreeMap<String, u64> =
                round.iter().map(|id| (id.clone(), exhausted.get(id).copied().unwrap_or(cap).min(cap))).collect();
            let shares = match budget {
                Some(limit) => split_limit(limit, &wanted),
                None => wanted,
            };
            let todo: Vec<&String> = round
                .iter()
                .filter(|id| !exhausted.contains_key(*id) && available(&self.readers, id) < shares[*id])
                .collect();
            if todo.is_empty() {
                break shares;
            }
            let want: BTreeMap<&String, usize> = todo.iter().map(|id| (*id, index[*id] + shares[*id] as usize)).collect();
            let (client, backoff, rt) = (&self.conn.client, self.conn.backoff, &self.conn.rt);
            let (stream, metrics, shards) = (self.cfg.stream_name.as_str(), &*self.metrics, &self.shards);
            let (max_per_read, idle) = (self.cfg.max_records_per_read, self.cfg.idle_time_between_reads);
            let reads = self.readers.iter_mut().filter(|(id, _)| want.contains_key(id)).map(|(id, reader)| {
                let calls = ShardCalls { client, backoff, stream, shard: id, info: shards.get(id), metrics, max_per_read };
                let target = want[id];
                async move { calls.read_ahead(reader, target, idle).await }
            });
            let results = rt.block_on(join_all(reads));
            if let Some(e) = results.into_iter().find_map(|r| r.err()) {
                return Err(self.err(e));
            }
            for id in todo {
                let have = available(&self.readers, id);
                if have < shares[id] {
                    exhausted.insert(id.clone(), have);
                }
            }
        };
        let mut planned = 0;
        for id in round {
            let reader = &self.readers[id];
            let (i, take) = (index[id], (shares[id].min(available(&self.readers, id))) as usize);
            planned += take as u64;
            let last = i + take;
            let pos = if reader.ended && last == reader.buffer.len() {
                ShardPosition::ShardEnd
            } else if take > 0 {
                ShardPosition::After(reader.buffer[last - 1].seq.clone())
            } else {
                continue;
            };
            end.insert(id.clone(), pos);
        }
        Ok(planned)
    }
}

impl Source for KinesisStream {
    fn description(&self) -> String {
        self.name.clone()
    }

    fn schema(&self) -> SchemaRef {
        Arc::new(self.cfg.schema())
    }

    /// Reads the logged starting positions (`sources/<i>/0`) when there are any.
    ///
    /// # Errors
    /// [`SluiceError::Checkpoint`] naming the file when it is not Kinesis positions.
    fn initialize(&mut self, ctx: SourceContext<'_>) -> Result<()> {
        self.logged_initial(ctx).map(|_| ())
    }

    /// Reads ahead and returns the positions after the records the next batch takes:
    /// `maxRecordsPerTrigger` shared across the readable shards unless `all_available`,
    /// at most `maxFetchRecordsPerShard` per shard.
    ///
    /// # Errors
    /// [`SluiceError::Source`] naming stream and shard when listing or reading fails
    /// (throttling is retried, never an error), or a shard expired unread with
    /// `failOnDataLoss=true`.
    fn latest_offset(&mut self, ctx: SourceContext<'_>, start: Option<&Offset>, all_available: bool) -> Result<Option<Offset>> {
        let start = match start {
            Some(v) => KinesisSourceOffset::parse(v, &self.cfg.stream_name, &self.name)?,
            None => self.initial_offsets(ctx)?,
        };
        // A shard found ended while the listing still says open (Kinesis ends a shard's
        // iterators first): list again to find its children.
        let stale = self.readers.iter().any(|(id, r)| r.ended && self.shards.get(id).is_some_and(|s| s.ending.is_none()));
        self.refresh_shards(stale)?;
        let mut end = start.shards.clone();
        for (id, pos) in &start.shards {
            if !self.shards.contains_key(id) {
                if *pos != ShardPosition::ShardEnd {
                    self.data_loss(format!(
                        "shard {id} of stream {} is gone (expired past the retention period?) before it was read \
                         to its end; read up to {pos}",
                        self.cfg.stream_name
                    ))?;
                }
                end.remove(id);
            }
        }
        let mut budget = if all_available { None } else { self.cfg.max_records_per_trigger };
        let mut fresh = BTreeSet::new();
        let mut planned = BTreeSet::new();
        loop {
            // Shards whose parents are read to their end join, at their starting position.
            let ids: Vec<String> = self.shards.keys().cloned().collect();
            for id in ids {
                if !end.contains_key(&id) && self.parents_done(&id, &end) {
                    end.insert(id.clone(), self.start_of(&id));
                    fresh.insert(id);
                }
            }
            let round: Vec<String> = end
                .iter()
                .filter(|(id, p)| **p != ShardPosition::ShardEnd && !planned.contains(*id) && self.parents_done(id, &end))
                .map(|(id, _)| id.clone())
                .collect();
            if round.is_empty() {
                break;
            }
            let taken = self.plan_round(&round, &mut end, budget)?;
            planned.extend(round);
            if let Some(b) = &mut budget {
                *b = b.saturating_sub(taken);
                if *b == 0 {
                    break;
                }
            }
        }
        // A shard that joined but gave nothing stays out of the offset until it does.
        for id in fresh {
            if end.get(&id) == Some(&self.start_of(&id)) {
                end.remove(&id);
            }
        }
        let open = self.shards.values().filter(|s| s.ending.is_none()).count();
        self.metrics.open_shards.store(open as u64, Ordering::Relaxed);
        let behind = self.readers.values().map(|r| r.millis_behind.max(0) as u64).max().unwrap_or(0);
        self.metrics.millis_behind_latest.store(behind, Ordering::Relaxed);
        Ok(Some(KinesisSourceOffset::new(&self.cfg.stream_name, end).to_json()))
    }

    /// The records after `start` up to `end` of every shard, shards in id order (a
    /// parent before its children). Served from what `latest_offset` read ahead when it
    /// covers the range, else read again from Kinesis: a logged range replays exactly.
    ///
    /// # Errors
    /// [`SluiceError::Source`] naming stream, shard and range when a replay cannot find
    /// the range's records (trimmed past the retention period).
    fn get_batch(&mut self, ctx: SourceContext<'_>, start: Option<&Offset>, end: &Offset) -> Result<DataFrame> {
        let from = match start {
            Some(v) => KinesisSourceOffset::parse(v, &self.cfg.stream_name, &self.name)?,
            None => self.initial_offsets(ctx)?,
        };
        let until = KinesisSourceOffset::parse(end, &self.cfg.stream_name, &self.name)?;
        let mut rows = Rows::new();
        let stream = self.cfg.stream_name.clone();
        for (id, u) in &until.shards {
            let f = from.shards.get(id).cloned().unwrap_or_else(|| self.start_of(id));
            if f == *u || !u.is_started() {
                continue;
            }
            if let Some(recs) = self.readers.get(id).and_then(|r| r.slice(&f, u)) {
                rows.push_all(&stream, id, recs);
                continue;
            }
            if !self.shards.contains_key(id) {
                // A replay after a restart: closed shards' ends come from the listing.
                self.refresh_shards(true)?;
            }
            let calls = ShardCalls {
                client: &self.conn.client,
                backoff: self.conn.backoff,
                stream: &stream,
                shard: id,
                info: self.shards.get(id),
                metrics: &self.metrics,
                max_per_read: self.cfg.max_records_per_read,
            };
            let recs = self.conn.rt.block_on(calls.read_range(&f, u)).map_err(|e| self.err(e))?;
            self.metrics.replayed_records.fetch_add(recs.len() as u64, Ordering::Relaxed);
            rows.push_all(&stream, id, &recs);
        }
        let batch = rows.finish()?;
        let df = record_batches_to_df(std::slice::from_ref(&batch), &batch.schema())?;
        tracing::debug!(source = %self.name, rows = df.height(), "read Kinesis batch");
        Ok(df)
    }

    /// Drops the records up to `end` from memory; shards no longer in the offset are
    /// forgotten.
    fn commit(&mut self, _ctx: SourceContext<'_>, end: &Offset) -> Result<()> {
        let end = KinesisSourceOffset::parse(end, &self.cfg.stream_name, &self.name)?;
        let shards = &self.shards;
        self.readers.retain(|id, _| end.shards.contains_key(id) || shards.contains_key(id));
        for (id, pos) in &end.shards {
            if let Some(reader) = self.readers.get_mut(id) {
                if let Some(i) = reader.index_of(pos) {
                    reader.buffer.drain(..i);
                    if *pos == ShardPosition::ShardEnd && reader.base != ShardPosition::ShardEnd {
                        self.metrics.closed_shards_read.fetch_add(1, Ordering::Relaxed);
                    }
                    reader.base = pos.clone();
                }
            }
        }
        Ok(())
    }

    /// [`KinesisSourceMetrics::to_map`]: throttled requests, records and bytes read, ...
    fn metrics(&self) -> BTreeMap<String, String> {
        self.metrics.to_map()
    }
}
