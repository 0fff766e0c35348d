//! # The `Sink` contract, run by every exactly-once sink
//!
//! One generic test function, [`sink_contract`], drives a sink through the [`Sink`]
//! trait as the trigger loop does across restarts (a new sink instance for the same
//! output and query id, `initialize`d, at each restart) and reads the output back as its
//! readers would. It checks the trait's `# Contract`:
//!
//! * **a replayed batch id writes nothing twice**: batches 0 and 1 are written, then, on a
//!   new instance (the engine replays batch 1 because its commit log entry is missing),
//!   batch 1 is written again with the same rows: the output holds its rows once; batch 2
//!   is then written normally;
//! * **an empty batch is fine**: an empty batch 3 is accepted and adds nothing, also when
//!   it is replayed on a new instance; batch 4 after it is written normally.
//!
//! The output is compared after each step, as a multiset of rows, with the rows of the
//! batches written so far.
//!
//! Run for: the file sink in each format (JSON lines, CSV, Parquet; read back through its
//! manifest, `read_output`), the memory sink (its table), and the Kafka sink with
//! `deliveryGuarantee=exactly-once` against librdkafka's in-process mock cluster (cargo
//! feature `kafka`; read back with `isolation.level=read_committed`). One check is out of
//! the mock's reach: that a batch whose transaction was left open by a crash before the
//! sink's commit is invisible to `read_committed` readers once the restarted sink aborts
//! it, because the mock cluster does not hide aborted transactions from such readers.
//! The contract's replay (a batch the sink committed, handed again after a restart) is
//! checked in full: the restarted sink finds the batch's marker in the progress topic and
//! skips it.
//!
//! Excluded: `foreach_batch` and the console sink, which give no replay guarantee, as in
//! Spark (a replayed batch calls the closure, or prints, again: deduplicating by batch id
//! is the user's job), and the Kafka sink's default `at-least-once` delivery, which writes
//! a replayed batch again by design.

#[path = "support/rows.rs"]
mod rows;

use polars::prelude::*;
use sluice::connectors::{read_output, FileFormat, FileSink, MemoryTable};
use sluice::engine::{OutputMode, Sink, SinkContext};

use rows::assert_same;

/// One implementation under test: a sink and a way to read its output.
trait SinkFixture {
    /// A new sink writing to the fixture's output, as a (re)started query creates it.
    fn sink(&self) -> Box<dyn Sink>;
    /// Every row the output holds, as a reader of the output sees it, with the columns of
    /// [`batch`]'s rows (`key`, `value`, both String).
    fn read_back(&self) -> DataFrame;
}

/// The rows of batch `id`: `n` rows of `key`, `value` (String).
fn batch(id: u64, n: usize) -> DataFrame {
    let keys: Vec<String> = (0..n).map(|i| format!("k{}", i % 2)).collect();
    let values: Vec<String> = (0..n).map(|i| format!("batch {id} row {i}")).collect();
    DataFrame::new(n, vec![Column::new("key".into(), keys), Column::new("value".into(), values)]).unwrap()
}

/// A new sink of `fixture`, initialized as the engine does at each start.
fn start(fixture: &dyn SinkFixture) -> Box<dyn Sink> {
    let mut sink = fixture.sink();
    assert!(sink.supports_output_mode(OutputMode::Append));
    let ctx = SinkContext { query_id: "0b4c3c55-sink-contract".into(), output_mode: OutputMode::Append };
    sink.initialize(&ctx).unwrap_or_else(|e| panic!("{}: initialize failed: {e}", sink.description()));
    sink
}

#[track_caller]
fn write(sink: &mut dyn Sink, id: u64, rows: &DataFrame) {
    sink.add_batch(id, rows).unwrap_or_else(|e| panic!("{}: add_batch({id}) failed: {e}", sink.description()));
}

/// The `Sink` contract (see the module docs), for the sink `fixture` provides.
fn sink_contract(fixture: &dyn SinkFixture) {
    let batches: Vec<DataFrame> = vec![batch(0, 3), batch(1, 2), batch(2, 4), batch(3, 0), batch(4, 1)];
    let expect = |what: &str, ids: &[usize]| {
        assert_same(what, &rows::multiset(&fixture.read_back()), &rows::multiset_of(ids.iter().map(|i| &batches[*i])));
    };

    let mut first = start(fixture);
    write(&mut *first, 0, &batches[0]);
    write(&mut *first, 1, &batches[1]);
    expect("batches 0 and 1 written", &[0, 1]);
    drop(first);

    let mut second = start(fixture);
    write(&mut *second, 1, &batches[1]);
    expect("a replayed batch id (1, on a new sink instance) writes nothing twice", &[0, 1]);
    write(&mut *second, 2, &batches[2]);
    expect("after a replay, the next batch (2) is written normally", &[0, 1, 2]);
    write(&mut *second, 3, &batches[3]);
    expect("an empty batch (3) is fine and adds nothing", &[0, 1, 2]);
    drop(second);

    let mut third = start(fixture);
    write(&mut *third, 3, &batches[3]);
    expect("a replayed empty batch (3) adds nothing", &[0, 1, 2]);
    write(&mut *third, 4, &batches[4]);
    expect("after the empty batch, batch 4 is written normally", &[0, 1, 2, 4]);
}

// ---------------------------------------------------------------------------------------
// The implementations

/// A file sink writing into a temporary directory, read back through its manifest.
struct FileFixture {
    format: FileFormat,
    out: tempfile::TempDir,
}

impl SinkFixture for FileFixture {
    fn sink(&self) -> Box<dyn Sink> {
        Box::new(FileSink::new(self.out.path(), self.format))
    }
    fn read_back(&self) -> DataFrame {
        read_output(self.out.path()).unwrap()
    }
}

#[test]
fn json_file_sink() {
    sink_contract(&FileFixture { format: FileFormat::Json, out: tempfile::tempdir().unwrap() });
}

#[test]
fn csv_file_sink() {
    sink_contract(&FileFixture { format: FileFormat::Csv, out: tempfile::tempdir().unwrap() });
}

#[test]
fn parquet_file_sink() {
    sink_contract(&FileFixture { format: FileFormat::Parquet, out: tempfile::tempdir().unwrap() });
}

/// The memory sink: every instance writes into the same table, as a restarted query's
/// sink named by the same query name does.
struct MemoryFixture {
    table: MemoryTable,
}

impl SinkFixture for MemoryFixture {
    fn sink(&self) -> Box<dyn Sink> {
        Box::new(self.table.sink())
    }
    fn read_back(&self) -> DataFrame {
        self.table.to_df().unwrap().unwrap_or_else(|| batch(0, 0))
    }
}

#[test]
fn memory_sink() {
    sink_contract(&MemoryFixture { table: MemoryTable::new() });
}

#[cfg(feature = "kafka")]
mod kafka {
    use std::time::{Duration, Instant};

    use polars::prelude::*;
    use sluice::connectors::kafka::rdkafka::consumer::{BaseConsumer, Consumer};
    use sluice::connectors::kafka::rdkafka::message::Message;
    use sluice::connectors::kafka::rdkafka::mocking::MockCluster;
    use sluice::connectors::kafka::rdkafka::producer::DefaultProducerContext;
    use sluice::connectors::kafka::rdkafka::{ClientConfig, Offset, TopicPartitionList};
    use sluice::connectors::kafka::KafkaSink;
    use sluice::engine::{Options, Sink};

    use super::{sink_contract, SinkFixture};

    /// The exactly-once Kafka sink writing topic `out` (two partitions, the partitioner
    /// choosing by key) on librdkafka's mock cluster.
    struct KafkaFixture {
        _mock: MockCluster<'static, DefaultProducerContext>,
        servers: String,
    }

    impl SinkFixture for KafkaFixture {
        fn sink(&self) -> Box<dyn Sink> {
            let options = Options::from_pairs([
                ("kafka.bootstrap.servers", self.servers.as_str()),
                ("topic", "out"),
                ("deliveryGuarantee", "exactly-once"),
                ("progressTopic", "progress"),
                ("flushTimeoutMs", "30000"),
            ]);
            Box::new(KafkaSink::from_options(&options).unwrap())
        }
        /// Every record of `out`, read with `isolation.level=read_committed`.
        fn read_back(&self) -> DataFrame {
            let c: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &self.servers)
                .set("group.id", "sink-contract-reader")
                .set("isolation.level", "read_committed")
                .set("enable.partition.eof", "true")
                .set("fetch.wait.max.ms", "10")
                .create()
                .unwrap();
            let mut tpl = TopicPartitionList::new();
            let mut pending = 0;
            for p in 0..2 {
                let (lo, hi) = c.fetch_watermarks("out", p, Duration::from_secs(10)).unwrap();
                if hi > lo {
                    tpl.add_partition_offset("out", p, Offset::Offset(lo)).unwrap();
                    pending += 1;
                }
            }
            let (mut keys, mut values) = (Vec::<String>::new(), Vec::<String>::new());
            if pending > 0 {
                c.assign(&tpl).unwrap();
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            while pending > 0 {
                assert!(Instant::now() < deadline, "reading topic out back timed out");
                match c.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => {
                        let text = |b: Option<&[u8]>| String::from_utf8(b.expect("set").to_vec()).unwrap();
                        keys.push(text(m.key()));
                        values.push(text(m.payload()));
                    }
                    Some(Err(_)) => pending -= 1, // partition EOF
                    None => {}
                }
            }
            DataFrame::new(keys.len(), vec![Column::new("key".into(), keys), Column::new("value".into(), values)]).unwrap()
        }
    }

    #[test]
    fn kafka_exactly_once_sink() {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic("out", 2, 1).unwrap();
        mock.create_topic("progress", 1, 1).unwrap();
        let servers = mock.bootstrap_servers();
        sink_contract(&KafkaFixture { _mock: mock, servers });
    }
}
