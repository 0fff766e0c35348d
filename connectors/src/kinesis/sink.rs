//! [`KinesisSink`]: writes each micro-batch's rows as Kinesis records with PutRecords
//! (`write_stream().format("kinesis")`), at least once; [`KinesisSinkProvider`] creates
//! it by format name.
//!
//! # Columns
//! | column | type | |
//! |---|---|---|
//! | `data` (option `dataColumn`) | Binary or String | required, not null; strings are written as their UTF-8 bytes |
//! | `partitionKey` (option `partitionKeyColumn`) | any, cast to String | required, not null, 1 to 256 characters; or [`KinesisSink::with_partition_key`] computes it with a Polars expression |
//!
//! Other columns are ignored.
//!
//! # Delivery: at least once
//! ```text
//!  add_batch(N): check every row first (key set and 1-256 chars, data set, data + key
//!                at most 1 MiB: else the batch fails naming the row, nothing is sent)
//!       │        then, in row order, PutRecords calls of at most 500 records and 5 MiB:
//!       ▼
//!  PutRecords ── the call fails: the SDK retries it (numRetries), throttling without limit
//!       │     ── some records failed (FailedRecordCount > 0, e.g. ProvisionedThroughputExceeded):
//!       │        those records alone are sent again, with exponential backoff
//!       ▼        (retryIntervalMs .. maxRetryIntervalMs), until none fails or putTimeoutMs
//!  every record acknowledged ── the batch may commit          of backoff passed (the batch fails)
//! ```
//! A batch replayed after a crash between its PutRecords and the engine's commit log is
//! written again: consumers see its records twice (Kinesis has no transactions; dedupe on
//! a key of the data if needed). Records retried after a partial failure may land after
//! records of the same partition key sent later in the same call: Kinesis orders a
//! shard's records by arrival.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType as ArrowDataType;
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use backon::{ExponentialBuilder, Retryable};
use polars::prelude::{DataFrame, DataType, Expr, IntoLazy, col};
use sluice_engine::checkpoint::BatchId;
use sluice_engine::interop::df_to_record_batch;
use sluice_engine::{Options, Result, Sink, SinkContext, SinkProvider, SluiceError};

use super::client::{CLIENT_OPTIONS, ClientCounters, Connection, KinesisClientOptions, describe, retry_throttled};

/// The options the Kinesis sink reads (names case-insensitive).
pub const SINK_OPTIONS: &[&str] = &[
    "streamName",
    "partitionKeyColumn",
    "dataColumn",
    "putTimeoutMs",
    CLIENT_OPTIONS[0],
    CLIENT_OPTIONS[1],
    CLIENT_OPTIONS[2],
    CLIENT_OPTIONS[3],
    CLIENT_OPTIONS[4],
    CLIENT_OPTIONS[5],
    CLIENT_OPTIONS[6],
    CLIENT_OPTIONS[7],
];

/// Most records in one PutRecords call (Kinesis' limit).
pub const MAX_RECORDS_PER_PUT: usize = 500;
/// Most bytes (data and partition keys) in one PutRecords call (Kinesis' limit, 5 MiB).
pub const MAX_BYTES_PER_PUT: usize = 5 * 1024 * 1024;
/// Most bytes of one record, data and partition key (Kinesis' limit, 1 MiB).
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Longest partition key, in Unicode characters.
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

/// Where a record's partition key comes from.
#[derive(Debug, Clone)]
pub enum PartitionKey {
    /// A column (option `partitionKeyColumn`, default `partitionKey`), cast to String.
    Column(String),
    /// A Polars expression over the batch's columns (e.g. `col("channel")`,
    /// `concat_str([col("a"), col("b")], "/", true)`), cast to String.
    Expr(Expr),
}

/// The Kinesis sink's checked configuration.
#[derive(Debug, Clone)]
pub struct KinesisSinkConfig {
    /// Region, endpoint, credentials, retries.
    pub client: KinesisClientOptions,
    /// `streamName`.
    pub stream_name: String,
    /// `partitionKeyColumn`, or an expression.
    pub partition_key: PartitionKey,
    /// `dataColumn` (default `data`).
    pub data_column: String,
    /// `putTimeoutMs` (default 120,000): how long records that PutRecords reported
    /// failed are retried (backoff time) before the batch fails.
    pub put_timeout: Duration,
}

impl KinesisSinkConfig {
    /// Checks the options (names case-insensitive):
    ///
    /// | option | default | |
    /// |---|---|---|
    /// | `streamName` | required | the stream |
    /// | `partitionKeyColumn` | `partitionKey` | the column of partition keys |
    /// | `dataColumn` | `data` | the column of payloads |
    /// | `putTimeoutMs` | 120000 | backoff time spent retrying failed records before the batch fails |
    /// | `region`, `endpointUrl`, `awsAccessKeyId`, `awsSecretKey`, `awsSessionToken`, `numRetries`, `retryIntervalMs`, `maxRetryIntervalMs` | | see [`KinesisClientOptions`] |
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] naming the option.
    pub fn from_options(options: &Options) -> Result<Self> {
        let client = KinesisClientOptions::new(options, "the Kinesis sink")?;
        let stream_name = options.require("streamName", "the Kinesis sink")?.trim().to_string();
        let text = |k: &str, default: &str| options.get(k).map(str::trim).filter(|v| !v.is_empty()).unwrap_or(default).to_string();
        Ok(Self {
            client,
            stream_name,
            partition_key: PartitionKey::Column(text("partitionKeyColumn", "partitionKey")),
            data_column: text("dataColumn", "data"),
            put_timeout: Duration::from_millis(options.positive_u64("putTimeoutMs")?.unwrap_or(120_000)),
        })
    }
}

/// Counters of one Kinesis sink.
#[derive(Debug, Default)]
pub struct KinesisSinkMetrics {
    client: Arc<ClientCounters>,
    records_put: AtomicU64,
    put_records_calls: AtomicU64,
    records_retried: AtomicU64,
}

impl KinesisSinkMetrics {
    /// Records Kinesis acknowledged.
    pub fn records_put(&self) -> u64 {
        self.records_put.load(Ordering::Relaxed)
    }
    /// PutRecords calls that returned.
    pub fn put_records_calls(&self) -> u64 {
        self.put_records_calls.load(Ordering::Relaxed)
    }
    /// Records PutRecords reported failed, each time (all were sent again).
    pub fn records_retried(&self) -> u64 {
        self.records_retried.load(Ordering::Relaxed)
    }
    /// Requests answered with a throttling error, each attempt counted.
    pub fn throttled_requests(&self) -> u64 {
        self.client.throttled()
    }
}

/// Writes micro-batches to a Kinesis stream; see the [module documentation](self).
pub struct KinesisSink {
    cfg: KinesisSinkConfig,
    conn: Option<Connection>,
    metrics: Arc<KinesisSinkMetrics>,
}

impl KinesisSink {
    /// A sink for `cfg`; it connects in [`Sink::initialize`].
    pub fn new(cfg: KinesisSinkConfig) -> Self {
        Self { cfg, conn: None, metrics: Arc::default() }
    }

    /// A sink from writer options (see [`KinesisSinkConfig::from_options`]).
    ///
    /// # Errors
    /// As [`KinesisSinkConfig::from_options`].
    pub fn from_options(options: &Options) -> Result<Self> {
        Ok(Self::new(KinesisSinkConfig::from_options(options)?))
    }

    /// Computes each record's partition key with `expr` (cast to String) instead of a
    /// column.
    pub fn with_partition_key(mut self, expr: Expr) -> Self {
        self.cfg.partition_key = PartitionKey::Expr(expr);
        self
    }

    /// The sink's counters.
    pub fn metrics(&self) -> Arc<KinesisSinkMetrics> {
        self.metrics.clone()
    }

    fn err(&self, message: String) -> SluiceError {
        SluiceError::Sink { name: self.description(), message }
    }

    /// The batch's records, checked, with their row numbers: (row, partition key, data).
    fn records(&self, batch_id: BatchId, data: &DataFrame) -> Result<Vec<(usize, PutRecordsRequestEntry)>> {
        let key = match &self.cfg.partition_key {
            PartitionKey::Column(c) => col(c.as_str()),
            PartitionKey::Expr(e) => e.clone(),
        };
        let column = self.cfg.data_column.as_str();
        let dtype = data.column(column).map_err(|_| {
            self.err(format!("batch {batch_id}: no data column {column:?} (option dataColumn); columns: {:?}", data.get_column_names()))
        })?;
        let payload = match dtype.dtype() {
            DataType::Binary => col(column),
            DataType::String => col(column).cast(DataType::Binary),
            other => {
                return Err(self.err(format!(
                    "batch {batch_id}: data column {column:?} is {other}; it must be Binary or String (to_json(...) makes a row a string)"
                )));
            }
        };
        let selected = data
            .clone()
            .lazy()
            .select([key.cast(DataType::String).alias("key"), payload.alias("data")])
            .collect()
            .map_err(|e| self.err(format!("batch {batch_id}: cannot compute the partition keys: {e}")))?;
        let batch = df_to_record_batch(&selected)?;
        let keys = arrow::compute::cast(batch.column(0), &ArrowDataType::Utf8View)?;
        let values = arrow::compute::cast(batch.column(1), &ArrowDataType::BinaryView)?;
        let (keys, values) = (keys.as_string_view(), values.as_binary_view());
        let mut out = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            if keys.is_null(row) {
                return Err(self.err(format!("batch {batch_id}: row {row} has a null partition key")));
            }
            let k = keys.value(row);
            let chars = k.chars().count();
            if chars == 0 || chars > MAX_PARTITION_KEY_CHARS {
                return Err(self.err(format!(
                    "batch {batch_id}: row {row} has a partition key of {chars} characters; Kinesis takes 1 to 256"
                )));
            }
            if values.is_null(row) {
                return Err(self.err(format!("batch {batch_id}: row {row} has null data")));
            }
            let d = values.value(row);
            let size = d.len() + k.len();
            if size > MAX_RECORD_BYTES {
                return Err(self.err(format!(
                    "batch {batch_id}: row {row} (partition key {k:?}) is a record of {size} bytes (data {} + key {}), \
                     over Kinesis' limit of 1 MiB ({MAX_RECORD_BYTES} bytes); nothing of the batch was written",
                    d.len(),
                    k.len()
                )));
            }
            let entry = PutRecordsRequestEntry::builder()
                .data(Blob::new(d))
                .partition_key(k)
                .build()
                .map_err(|e| SluiceError::Internal(format!("a PutRecords entry: {e}")))?;
            out.push((row, entry));
        }
        Ok(out)
    }
}

/// Splits `records` (in row order) into PutRecords calls of at most
/// [`MAX_RECORDS_PER_PUT`] records and [`MAX_BYTES_PER_PUT`] bytes of data and partition
/// keys, keeping the order.
fn put_records_calls(records: Vec<(usize, PutRecordsRequestEntry)>) -> Vec<Vec<(usize, PutRecordsRequestEntry)>> {
    let mut calls: Vec<Vec<(usize, PutRecordsRequestEntry)>> = Vec::new();
    let (mut count, mut bytes) = (0, 0);
    for (row, entry) in records {
        let size = entry.data.as_ref().len() + entry.partition_key().map_or(0, str::len);
        if calls.is_empty() || count == MAX_RECORDS_PER_PUT || bytes + size > MAX_BYTES_PER_PUT {
            calls.push(Vec::new());
            (count, bytes) = (0, 0);
        }
        if let Some(last) = calls.last_mut() {
            last.push((row, entry));
        }
        count += 1;
        bytes += size;
    }
    calls
}

/// Why a PutRecords round did not write everything.
#[derive(Debug)]
enum PutFailure {
    /// The call itself failed (after the SDK's retries).
    Call(String),
    /// Kinesis reported `count` records failed; the first is `row`.
    Records { count: usize, row: usize, code: String, message: String },
}

/// Sends `chunk` (one PutRecords call's worth) until Kinesis acknowledged every record:
/// records reported failed are sent again with `backoff`, for at most `deadline` of
/// backoff time.
async fn put_chunk(
    client: &Client,
    backoff: ExponentialBuilder,
    stream: &str,
    chunk: Vec<(usize, PutRecordsRequestEntry)>,
    deadline: Duration,
    metrics: &KinesisSinkMetrics,
) -> std::result::Result<(), PutFailure> {
    let pending = RefCell::new(chunk);
    let attempt = || async {
        let entries: Vec<PutRecordsRequestEntry> = pending.borrow().iter().map(|(_, e)| e.clone()).collect();
        let call = || client.put_records().stream_name(stream).set_records(Some(entries.clone())).send();
        let out = retry_throttled(backoff, "PutRecords", call).await.map_err(|e| PutFailure::Call(describe(&e)))?;
        metrics.put_records_calls.fetch_add(1, Ordering::Relaxed);
        let mut still = Vec::new();
        let mut first = None;
        for ((row, entry), result) in pending.borrow().iter().zip(&out.records) {
            match &result.error_code {
                Some(code) => {
                    first.get_or_insert_with(|| (*row, code.clone(), result.error_message.clone().unwrap_or_default()));
                    still.push((*row, entry.clone()));
                }
                None => {
                    metrics.records_put.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if out.records.len() < entries.len() {
            return Err(PutFailure::Call(format!(
                "PutRecords answered {} results for {} records",
                out.records.len(),
                entries.len()
            )));
        }
        *pending.borrow_mut() = still;
        match first {
            None => Ok(()),
            Some((row, code, message)) => {
                let count = pending.borrow().len();
                metrics.records_retried.fetch_add(count as u64, Ordering::Relaxed);
                Err(PutFailure::Records { count, row, code, message })
            }
        }
    };
    attempt
        .retry(backoff.with_total_delay(Some(deadline)))
        .sleep(tokio::time::sleep)
        .when(|e| matches!(e, PutFailure::Records { .. }))
        .notify(|e: &PutFailure, wait: Duration| {
            tracing::debug!(stream, wait_ms = wait.as_millis() as u64, failure = ?e, "PutRecords: records failed; sending them again");
        })
        .await
}

impl Sink for KinesisSink {
    fn description(&self) -> String {
        format!("KinesisSink[{}]", self.cfg.stream_name)
    }

    /// Connects (the region, endpoint and credentials chain).
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] when no AWS region is known.
    fn initialize(&mut self, _ctx: &SinkContext) -> Result<()> {
        if self.conn.is_none() {
            self.conn = Some(Connection::connect(&self.cfg.client, self.metrics.client.clone(), &self.description())?);
        }
        Ok(())
    }

    /// Writes every row as a record (see the [module documentation](self)).
    ///
    /// # Errors
    /// [`SluiceError::Sink`] naming the batch and the row: a missing column, a null or
    /// bad partition key, null data, a record over 1 MiB (nothing is sent then); a
    /// PutRecords call that failed; records still failing when `putTimeoutMs` passed
    /// (with Kinesis' error code and message).
    fn add_batch(&mut self, batch_id: BatchId, data: &DataFrame) -> Result<()> {
        if data.height() == 0 {
            return Ok(());
        }
        if self.conn.is_none() {
            self.conn = Some(Connection::connect(&self.cfg.client, self.metrics.client.clone(), &self.description())?);
        }
        let records = self.records(batch_id, data)?;
        let total = records.len();
        let Some(conn) = &self.conn else { return Err(SluiceError::Internal("the Kinesis sink is not connected".into())) };
        let chunks = put_records_calls(records);
        let stream = self.cfg.stream_name.as_str();
        for chunk in chunks {
            let first_row = chunk.first().map_or(0, |(r, _)| *r);
            let put = put_chunk(&conn.client, conn.backoff, stream, chunk, self.cfg.put_timeout, &self.metrics);
            conn.rt.block_on(put).map_err(|e| match e {
                PutFailure::Call(m) => self.err(format!(
                    "batch {batch_id}: PutRecords to stream {stream} (rows from {first_row}) failed: {m}"
                )),
                PutFailure::Records { count, row, code, message } => self.err(format!(
                    "batch {batch_id}: {count} record(s) of {total} still failed after retrying for {} ms (option \
                     putTimeoutMs) to stream {stream}; the first, row {row}: {code}: {message}",
                    self.cfg.put_timeout.as_millis()
                )),
            })?;
        }
        Ok(())
    }
}

/// The `kinesis` sink format of `write_stream().format("kinesis")`; the `sluice` facade
/// registers it (cargo feature `kinesis`).
#[derive(Debug, Clone, Copy, Default)]
pub struct KinesisSinkProvider;

impl SinkProvider for KinesisSinkProvider {
    /// # Errors
    /// As [`KinesisSinkConfig::from_options`].
    fn create(&self, options: &Options) -> Result<Box<dyn Sink>> {
        Ok(Box::new(KinesisSink::from_options(options)?))
    }
    fn known_options(&self) -> &'static [&'static str] {
        SINK_OPTIONS
    }
}

#[cfg(test)]
mod tests {
    use polars::prelude::*;

    use super::*;

    fn sink(extra: &[(&str, &str)]) -> KinesisSink {
        let o = Options::from_pairs([&[("streamName", "s"), ("region", "us-east-1")][..], extra].concat());
        KinesisSink::from_options(&o).unwrap()
    }

    #[test]
    fn rows_are_checked_before_anything_is_sent() {
        let s = sink(&[]);
        let ok = df!("partitionKey" => ["a", "b"], "data" => ["x", "yy"]).unwrap();
        let recs = s.records(3, &ok).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!((recs[1].0, recs[1].1.partition_key(), recs[1].1.data.as_ref()), (1, Some("b"), &b"yy"[..]));
        let big = "x".repeat(MAX_RECORD_BYTES);
        let over = df!("partitionKey" => ["a", "b"], "data" => ["x", big.as_str()]).unwrap();
        let e = s.records(3, &over).unwrap_err().to_string();
        assert!(e.contains("batch 3: row 1") && e.contains("1048577 bytes") && e.contains("1 MiB"), "{e}");
        let null_key = df!("partitionKey" => [Some("a"), None], "data" => ["x", "y"]).unwrap();
        assert!(s.records(0, &null_key).unwrap_err().to_string().contains("row 1 has a null partition key"));
        let long_key = "k".repeat(257);
        let long = df!("partitionKey" => [long_key.as_str()], "data" => ["x"]).unwrap();
        assert!(s.records(0, &long).unwrap_err().to_string().contains("257 characters"));
        let no_data = df!("partitionKey" => ["a"], "value" => ["x"]).unwrap();
        assert!(s.records(0, &no_data).unwrap_err().to_string().contains("no data column \"data\""));
        // A key expression and another data column.
        let s = sink(&[("dataColumn", "value")]).with_partition_key(col("channel").str().to_uppercase());
        let df = df!("channel" => ["#en"], "value" => ["v"]).unwrap();
        assert_eq!(s.records(0, &df).unwrap()[0].1.partition_key(), Some("#EN"));
        let s = sink(&[("partitionKeyColumn", "n")]);
        let df = df!("n" => [7i64], "data" => ["v"]).unwrap();
        assert_eq!(s.records(0, &df).unwrap()[0].1.partition_key(), Some("7"), "cast to String");
    }

    #[test]
    fn put_records_calls_hold_at_most_500_records_and_5_mib() {
        let entry = |row: usize, bytes: usize| {
            let e = PutRecordsRequestEntry::builder().partition_key("k").data(Blob::new(vec![b'x'; bytes])).build().unwrap();
            (row, e)
        };
        let sizes = |calls: &[Vec<(usize, PutRecordsRequestEntry)>]| calls.iter().map(Vec::len).collect::<Vec<_>>();
        let small = put_records_calls((0..1_200).map(|i| entry(i, 10)).collect());
        assert_eq!(sizes(&small), [500, 500, 200]);
        let rows: Vec<usize> = small.iter().flatten().map(|(r, _)| *r).collect();
        assert_eq!(rows, (0..1_200).collect::<Vec<_>>(), "row order kept");
        // Records of 1,000,000 bytes of data and a 1-byte key: 5 fit in 5 MiB, 6 do not.
        let big = put_records_calls((0..12).map(|i| entry(i, 1_000_000)).collect());
        assert_eq!(sizes(&big), [5, 5, 2]);
        // A record of exactly 1 MiB (the largest allowed) goes alone when the call is full.
        let mixed = put_records_calls(vec![entry(0, 5 * 1024 * 1024 - 2), entry(1, MAX_RECORD_BYTES - 1), entry(2, 1)]);
        assert_eq!(sizes(&mixed), [1, 2]);
        assert!(put_records_calls(Vec::new()).is_empty());
    }

    #[test]
    fn every_option_given_is_read() {
        let mut pairs: Vec<(&str, &str)> = SINK_OPTIONS
            .iter()
            .map(|k| (*k, if k.ends_with("Ms") || *k == "numRetries" { "5" } else { "x" }))
            .collect();
        pairs.push(("stream", "typo"));
        let o = Options::from_pairs(pairs);
        KinesisSinkConfig::from_options(&o).unwrap();
        assert_eq!(o.unread(), ["stream"]);
    }
}
