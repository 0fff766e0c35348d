//! The Kafka connector (Spark's `kafka-0-10-sql`), through rdkafka (librdkafka): the
//! source (`read_stream().format("kafka")`) and the sink (`write_stream().format("kafka")`)
//! in one folder, so that the client options they share are parsed in one place.
//!
//! | file | what lives there |
//! |---|---|
//! | `client.rs` | [`KafkaClientOptions`]: `kafka.bootstrap.servers`, the `kafka.*` passthrough to librdkafka, the rejected parameters; parsed once for source and sink |
//! | `offsets.rs` | [`TopicPartition`], [`KafkaSourceOffset`] (Spark's offset JSON), [`rate_limit`] |
//! | `source.rs` | [`KafkaSourceFormat`], [`KafkaSource`] (typed builder), [`KafkaSourceProvider`], [`KafkaSourceConfig`], [`KafkaSourceMetrics`] |
//! | `stream.rs` | `KafkaStream`: one query run's source (plans and reads offset ranges) |
//! | `sink.rs` | [`KafkaSink`] (delivery guarantees, exactly-once protocol), [`KafkaSinkProvider`], [`KafkaSinkConfig`], [`DeliveryGuarantee`] |
//!
//! # Why Sluice assigns partitions itself
//! The offsets a batch reads are decided once, written to `offsets/N` before the batch
//! runs, and read again exactly on replay; no consumer group and no committed group
//! offsets are involved (as in Spark), so a restart never depends on state outside the
//! checkpoint. The consumer is a plain rdkafka [`BaseConsumer`](rdkafka::consumer::BaseConsumer) driven from the query's
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
//!   [`SluiceError::Source`](sluice_engine::SluiceError::Source) naming the topic, the partition and the offsets; with
//!   `false` the records are skipped with a warning and counted in
//!   [`KafkaSourceMetrics`].
//! * `kafka.isolation.level` defaults to `read_uncommitted`, as with Spark's Java consumer;
//!   set `read_committed` to read transactional producers' committed records only (then
//!   the latest offset is the last stable offset).

use std::time::Duration;

mod client;
mod offsets;
mod sink;
mod source;
mod stream;

/// The rdkafka crate Sluice is built with (for `rdkafka::mocking::MockCluster` in tests
/// and examples, and for custom client configuration).
pub use rdkafka;

pub use client::KafkaClientOptions;
pub use offsets::{KafkaSourceOffset, TopicPartition, rate_limit};
pub use sink::{
    DEFAULT_PROGRESS_TOPIC, DEFAULT_TRANSACTIONAL_ID_PREFIX, DeliveryGuarantee, KafkaSink, KafkaSinkConfig,
    KafkaSinkProvider, SINK_OPTIONS,
};
pub use source::{
    KafkaSource, KafkaSourceConfig, KafkaSourceFormat, KafkaSourceMetrics, KafkaSourceProvider, SOURCE_OPTIONS,
    StartingOffsets, Subscription, kafka_schema,
};

/// Timeout of one metadata or list-offsets request to the cluster.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
