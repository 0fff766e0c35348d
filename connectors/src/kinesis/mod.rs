//! The Kinesis connector (cargo feature `kinesis`), through the official AWS SDK for
//! Rust (`aws-sdk-kinesis`): the source (`read_stream().format("kinesis")`) and the sink
//! (`write_stream().format("kinesis")`) in one folder, so that the client options they
//! share are parsed in one place.
//!
//! | file | what lives there |
//! |---|---|
//! | `client.rs` | [`KinesisClientOptions`] (`region`, `endpointUrl`, credentials, retries), the SDK client with its throttle counter, the retry of throttled calls |
//! | `offsets.rs` | [`ShardPosition`], [`KinesisSourceOffset`] (the offset JSON), [`split_limit`] |
//! | `source.rs` | [`KinesisSourceFormat`], [`KinesisSource`] (typed builder), [`KinesisSourceProvider`], [`KinesisSourceConfig`], [`KinesisSourceMetrics`] |
//! | `stream.rs` | `KinesisStream`: one query run's source (lineage, read-ahead, replays) |
//! | `sink.rs` | [`KinesisSink`] (PutRecords batching and retries), [`KinesisSinkProvider`], [`KinesisSinkConfig`] |
//!
//! # Semantics
//! * **One partition per shard**, no KCL lease table and no DynamoDB: as with Kafka, the
//!   positions a batch reads are decided before it runs, written to `offsets/N`, and read
//!   again exactly on replay. The offset is one position per shard (see
//!   [`offsets`](ShardPosition)): the sequence number of the last record read (a batch
//!   reads `AFTER_SEQUENCE_NUMBER` its start, up to and including its end),
//!   `TRIM_HORIZON` / `AT_TIMESTAMP:<ms>` for a shard nothing was read from yet, or
//!   `SHARD_END` for a closed shard read to its end:
//!   `{"wiki":{"shardId-000000000000":"49590338271490256608559692538361571095921575989136588898"}}`.
//! * **Planning reads ahead.** Kinesis has no "latest offset" and sequence numbers are
//!   not contiguous, so the end of a batch is known only by reading: `latest_offset`
//!   fetches each shard's share of the batch (GetRecords, shards concurrently) and keeps
//!   it in memory until the batch commits; `get_batch` serves it from there. A batch
//!   replayed after a restart reads its logged range again from Kinesis.
//! * **`startingPosition`** (`LATEST` by default, `TRIM_HORIZON`, `AT_TIMESTAMP` with
//!   `startingTimestamp`) applies only when a query starts on a fresh checkpoint; it is
//!   resolved once for every shard listed then and logged in `sources/<i>/0`. `LATEST` is
//!   pinned as `AT_TIMESTAMP` of the start time, so that a replay of the first batch
//!   reads the same records (a skew between this machine's clock and Kinesis' moves that
//!   boundary by the skew).
//! * **Resharding as the KCL does it**: a shard is read only once its parents (the split
//!   shard, or both merged shards) are read to their end (`SHARD_END` in the offset), and
//!   from its `TRIM_HORIZON`; the parent's end is detected by the iterator Kinesis stops
//!   giving at a closed shard's end (or, on servers that keep giving one, by the
//!   `EndingSequenceNumber` ListShards reports). A batch's rows come in shard id order,
//!   so a parent's records come before its children's. A finished shard leaves the
//!   offset once ListShards no longer lists it (expired); a shard that expires before it
//!   was read to its end is data loss (`failOnDataLoss`).
//! * **`maxRecordsPerTrigger`** is shared across the readable shards, evenly where they
//!   have the data (max-min fair: a shard with less gives what it has, the others share
//!   the rest), at most `maxFetchRecordsPerShard` per shard (default 100,000; also the
//!   bound without `maxRecordsPerTrigger`, since a batch's records are held in memory).
//!   A shard found caught up (`MillisBehindLatest` 0) is not read again for
//!   `idleTimeBetweenReadsMs`. `Trigger::AvailableNow` ends when every shard is caught up
//!   or ended.
//! * **Throttling** (`ProvisionedThroughputExceededException`, `LimitExceededException`)
//!   is retried with exponential backoff, by the SDK and then without limit, so it never
//!   fails a batch; every throttled request is counted in the source's progress metrics
//!   (`throttledRequests`, see [`KinesisSourceMetrics::to_map`]) and the sink's
//!   [`KinesisSinkMetrics`].
//! * **The sink is at least once**: see [`KinesisSink`].

mod client;
mod offsets;
mod sink;
mod source;
mod stream;

/// The AWS SDK crates Sluice is built with (for tests, examples and custom clients).
pub use {aws_config, aws_sdk_kinesis};

pub use client::{ClientCounters, KinesisClientOptions};
pub use offsets::{KinesisSourceOffset, ShardPosition, compare_sequence_numbers, is_sequence_number, split_limit};
pub use sink::{
    KinesisSink, KinesisSinkConfig, KinesisSinkMetrics, KinesisSinkProvider, MAX_BYTES_PER_PUT, MAX_PARTITION_KEY_CHARS,
    MAX_RECORD_BYTES, MAX_RECORDS_PER_PUT, PartitionKey, SINK_OPTIONS,
};
pub use source::{
    KinesisSource, KinesisSourceConfig, KinesisSourceFormat, KinesisSourceMetrics, KinesisSourceProvider,
    MAX_RECORDS_PER_READ, SOURCE_OPTIONS, StartingPosition, kinesis_schema,
};
