//! # The `Source` contract, run by every fault-tolerant source
//!
//! One generic test function, [`source_contract`], drives a source through the
//! [`Source`] trait as the trigger loop does (`latest_offset`, `get_batch`, `commit`, a
//! checkpoint reopened at each restart) and checks the trait's `# Contract`:
//!
//! * **offsets advance**: after new data, `latest_offset(start)` returns an offset other
//!   than `start` whose range holds rows; for the same start, a later call never returns
//!   an offset before an earlier one (the earlier range's rows are a prefix of the later
//!   range's: `(start, earlier]` then `(earlier, later]` are exactly `(start, later]`);
//! * **a logged range replays to the same rows**: a new source from the provider,
//!   `initialize`d against the reopened checkpoint, returns for each range the first
//!   instance read (the uncommitted one the engine replays, and a committed one) exactly
//!   the rows the first instance returned;
//! * **restart mid-stream**: after some ranges are committed and a later one was planned
//!   but never logged by the engine, a fresh instance continuing from the committed end
//!   reads every remaining row once: the committed ranges plus what it reads equal the
//!   fixture's ground truth, compared as multisets (no row repeated, none skipped);
//! * **schema**: every batch has exactly `schema()`'s columns and types, and `schema()` is
//!   the provider's.
//!
//! Run for: the file source in each format (JSON lines, CSV, Parquet), `MemoryStream`,
//! the rate source (its rows depend on time; replay is deterministic from the creation
//! time it logs in `sources/<i>/0`, which is also the ground truth's), Kafka against
//! librdkafka's in-process mock cluster (cargo feature `kafka`), and Kinesis against a
//! local moto server (cargo feature `kinesis`; skipped with a message when `moto_server`
//! is not installed).
//!
//! Excluded: the socket source. It is not fault-tolerant, as in Spark (its lines live
//! only in the memory of the run that received them, so a restarted query can neither
//! replay a range nor continue without loss); it is tested on its own in
//! `rate_socket.rs`.

#[path = "support/rows.rs"]
mod rows;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use polars::prelude::*;
use serde_json::Value;
use sluice::checkpoint::Checkpoint;
use sluice::connectors::{FileFormat, FileSource, MemoryStream, RateSource};
use sluice::engine::{Offset, Source, SourceContext, SourceProviderRef};

use rows::{assert_same, assert_same_rows, multiset, multiset_of};

/// One implementation under test: a source and the data it reads.
trait SourceFixture {
    /// A provider of the source, as a (re)started query builds it.
    fn provider(&self) -> SourceProviderRef;
    /// Makes new rows available to the source (round `round`, from 0): writes files,
    /// adds frames, produces records, or lets time pass. `ctx` is the checkpoint of the
    /// current run.
    fn add_data(&mut self, ctx: SourceContext<'_>, round: usize);
    /// The ground truth: every row the source must deliver in `(start of stream, end]`,
    /// where `end` is the offset the stream was read up to (all data added so far).
    fn expected(&self, ctx: SourceContext<'_>, end: &Offset) -> DataFrame;
}

/// `latest_offset(start)` right after new data: an offset other than `start`.
#[track_caller]
fn latest_after_new_data(source: &mut dyn Source, ctx: SourceContext<'_>, start: Option<&Offset>, what: &str) -> Offset {
    let end = source
        .latest_offset(ctx, start, false)
        .unwrap_or_else(|e| panic!("{what}: latest_offset({start:?}) failed: {e}"))
        .unwrap_or_else(|| panic!("{what}: latest_offset({start:?}) is None after new data"));
    assert_ne!(Some(&end), start, "{what}: offsets advance: after new data latest_offset returned its start");
    end
}

/// `get_batch(start, end)`, checked against `schema()`.
#[track_caller]
fn fetch(source: &mut dyn Source, ctx: SourceContext<'_>, start: Option<&Offset>, end: &Offset, what: &str) -> DataFrame {
    let df = source
        .get_batch(ctx, start, end)
        .unwrap_or_else(|e| panic!("{what}: get_batch({start:?}, {end}) failed: {e}"));
    assert_eq!(df.schema().as_ref(), source.schema().as_ref(), "{what}: the batch's columns are not schema()'s");
    df
}

/// The `Source` contract (see the module docs), for the source `fixture` provides.
fn source_contract(fixture: &mut dyn SourceFixture) {
    let dir = tempfile::tempdir().unwrap();
    let open = || Checkpoint::local(dir.path()).unwrap();
    let start = |provider: &SourceProviderRef, ck: &Checkpoint| -> Box<dyn Source> {
        let mut s = provider.create().unwrap();
        assert_eq!(s.schema().as_ref(), provider.schema().as_ref(), "schema() is the provider's");
        s.initialize(SourceContext { checkpoint: ck, index: 0 }).unwrap();
        s
    };

    // First run: ranges 0 = (None, end0] and 1 = (end0, end1]; range 0 is committed,
    // range 1 is planned (logged in offsets/1) when the query "crashes".
    let ck = open();
    let ctx = SourceContext { checkpoint: &ck, index: 0 };
    let mut a = start(&fixture.provider(), &ck);
    fixture.add_data(ctx, 0);
    let earlier = latest_after_new_data(&mut *a, ctx, None, "first offset");
    let earlier_rows = fetch(&mut *a, ctx, None, &earlier, "first range");
    assert!(earlier_rows.height() > 0, "offsets advance: the range after new data holds rows");
    fixture.add_data(ctx, 1);
    let end0 = a.latest_offset(ctx, None, false).unwrap().expect("an offset");
    let rows0 = fetch(&mut *a, ctx, None, &end0, "range 0");
    let between = fetch(&mut *a, ctx, Some(&earlier), &end0, "from the earlier to the later offset");
    assert_same(
        "for the same start, a later latest_offset is not before an earlier one: (start, earlier] then \
         (earlier, later] are (start, later]",
        &multiset_of([&earlier_rows, &between]),
        &multiset(&rows0),
    );
    fixture.add_data(ctx, 2);
    let end1 = latest_after_new_data(&mut *a, ctx, Some(&end0), "range 1");
    let rows1 = fetch(&mut *a, ctx, Some(&end0), &end1, "range 1");
    assert!(rows1.height() > 0, "offsets advance: range 1 holds the new rows");
    a.commit(ctx, &end0).unwrap();
    drop(a);
    drop(ck);

    // Restart: a fresh source replays the logged ranges to the same rows, then plans a
    // range 2 that the engine never logs (it "crashes" before offsets/2).
    let ck = open();
    let ctx = SourceContext { checkpoint: &ck, index: 0 };
    let mut b = start(&fixture.provider(), &ck);
    let replay1 = fetch(&mut *b, ctx, Some(&end0), &end1, "replay of range 1");
    assert_same_rows("a logged range replays to the same rows (range 1, uncommitted)", &replay1, &rows1);
    let replay0 = fetch(&mut *b, ctx, None, &end0, "replay of range 0");
    assert_same_rows("a logged range replays to the same rows (range 0, committed)", &replay0, &rows0);
    b.commit(ctx, &end1).unwrap();
    fixture.add_data(ctx, 3);
    let end2 = latest_after_new_data(&mut *b, ctx, Some(&end1), "range 2");
    fetch(&mut *b, ctx, Some(&end1), &end2, "range 2");
    drop(b);
    drop(ck);

    // Restart mid-stream: a fresh source continues from the committed end, end1.
    let ck = open();
    let ctx = SourceContext { checkpoint: &ck, index: 0 };
    let mut c = start(&fixture.provider(), &ck);
    let mut read = vec![rows0, rows1];
    let mut at = end1;
    for i in 0.. {
        assert!(i < 20, "latest_offset keeps advancing without new data");
        let end = c.latest_offset(ctx, Some(&at), false).unwrap().expect("an offset");
        if end == at {
            break;
        }
        read.push(fetch(&mut *c, ctx, Some(&at), &end, "after the restart"));
        c.commit(ctx, &end).unwrap();
        at = end;
    }
    assert_same(
        "restart mid-stream: the committed ranges and what a fresh source reads from their end hold every row once",
        &multiset_of(&read),
        &multiset(&fixture.expected(ctx, &at)),
    );
}

// ---------------------------------------------------------------------------------------
// The implementations

/// 2024-03-01T00:00:00Z in µs.
const BASE_US: i64 = 1_709_251_200_000_000;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn timestamps(name: &str, micros: Vec<i64>) -> Column {
    Column::new(name.into(), micros).cast(&DataType::Datetime(TimeUnit::Microseconds, None)).unwrap()
}

/// `id` Int64, `name` String, `ts` Datetime(µs), `v` Float64 (null every fourth row).
fn file_schema() -> Schema {
    Schema::from_iter([
        Field::new("id".into(), DataType::Int64),
        Field::new("name".into(), DataType::String),
        Field::new("ts".into(), DataType::Datetime(TimeUnit::Microseconds, None)),
        Field::new("v".into(), DataType::Float64),
    ])
}

/// Files in a directory, two per round, in the fixture's format.
struct FileFixture {
    kind: FileFormat,
    dir: tempfile::TempDir,
    /// Rows written so far, one frame per file.
    written: Vec<DataFrame>,
    next_id: i64,
}

impl FileFixture {
    fn new(kind: FileFormat) -> Self {
        Self { kind, dir: tempfile::tempdir().unwrap(), written: Vec::new(), next_id: 0 }
    }

    fn rows(&mut self, n: i64) -> DataFrame {
        let ids: Vec<i64> = (self.next_id..self.next_id + n).collect();
        self.next_id += n;
        let names: Vec<String> = ids.iter().map(|i| format!("n{i}")).collect();
        let ts: Vec<i64> = ids.iter().map(|i| BASE_US + i * 1_250_000).collect();
        let v: Vec<Option<f64>> = ids.iter().map(|i| (i % 4 != 3).then_some(*i as f64 * 0.5)).collect();
        DataFrame::new(
            ids.len(),
            vec![Column::new("id".into(), ids), Column::new("name".into(), names), timestamps("ts", ts), Column::new("v".into(), v)],
        )
        .unwrap()
    }

    fn write(&self, path: &Path, df: &DataFrame) {
        let ids = df.column("id").unwrap().i64().unwrap();
        let names = df.column("name").unwrap().str().unwrap();
        let ts = df.column("ts").unwrap().datetime().unwrap().physical().clone();
        let v = df.column("v").unwrap().f64().unwrap();
        let rfc3339 = |us: i64| {
            chrono::DateTime::from_timestamp_micros(us).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        };
        let mut text = String::new();
        match self.kind {
            FileFormat::Json => {
                for i in 0..df.height() {
                    let v = v.get(i).map_or("null".to_string(), |x| format!("{x:?}"));
                    text += &format!(
                        "{{\"id\": {}, \"name\": \"{}\", \"ts\": \"{}\", \"v\": {v}}}\n",
                        ids.get(i).unwrap(),
                        names.get(i).unwrap(),
                        rfc3339(ts.get(i).unwrap())
                    );
                }
            }
            FileFormat::Csv => {
                text += "id,name,ts,v\n";
                for i in 0..df.height() {
                    let v = v.get(i).map_or(String::new(), |x| format!("{x:?}"));
                    text += &format!("{},{},{},{v}\n", ids.get(i).unwrap(), names.get(i).unwrap(), rfc3339(ts.get(i).unwrap()));
                }
            }
            FileFormat::Parquet => {
                let batch = sluice::engine::interop::df_to_record_batch(df).unwrap();
                let file = std::fs::File::create(path).unwrap();
                let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
                w.write(&batch).unwrap();
                w.close().unwrap();
                return;
            }
        }
        std::fs::write(path, text).unwrap();
    }
}

impl SourceFixture for FileFixture {
    fn provider(&self) -> SourceProviderRef {
        let b = FileSource::new(self.kind, self.dir.path()).schema(file_schema());
        let b = if self.kind == FileFormat::Csv { b.header(true) } else { b };
        b.build().unwrap()
    }
    fn add_data(&mut self, _ctx: SourceContext<'_>, round: usize) {
        for f in 0..2 {
            let df = self.rows(3 + f as i64);
            let path = self.dir.path().join(format!("r{round}-f{f}.{}", self.kind.name()));
            self.write(&path, &df);
            // Taken in (modification time, path) order: one second per file.
            let mtime = UNIX_EPOCH + Duration::from_secs(1_700_000_000 + self.written.len() as u64);
            std::fs::File::options().write(true).open(&path).unwrap().set_modified(mtime).unwrap();
            self.written.push(df);
        }
    }
    fn expected(&self, _ctx: SourceContext<'_>, _end: &Offset) -> DataFrame {
        concat_frames(&self.written, &file_schema())
    }
}

fn concat_frames(frames: &[DataFrame], schema: &Schema) -> DataFrame {
    let mut out = DataFrame::empty_with_schema(schema);
    for f in frames {
        out.vstack_mut(f).unwrap();
    }
    out
}

#[test]
fn json_file_source() {
    source_contract(&mut FileFixture::new(FileFormat::Json));
}

#[test]
fn csv_file_source() {
    source_contract(&mut FileFixture::new(FileFormat::Csv));
}

#[test]
fn parquet_file_source() {
    source_contract(&mut FileFixture::new(FileFormat::Parquet));
}

/// A `MemoryStream` fed one or two frames per round.
struct MemoryFixture {
    schema: Schema,
    stream: MemoryStream,
    added: Vec<DataFrame>,
}

impl SourceFixture for MemoryFixture {
    fn provider(&self) -> SourceProviderRef {
        Arc::new(self.stream.clone())
    }
    fn add_data(&mut self, _ctx: SourceContext<'_>, round: usize) {
        for f in 0..1 + round % 2 {
            let base = (round * 10 + f * 5) as i64;
            let keys = vec![format!("k{round}"), format!("k{f}"), "same".to_string()];
            let df = DataFrame::new(3, vec![Column::new("key".into(), keys), Column::new("n".into(), vec![base, base + 1, 7])])
                .unwrap();
            self.stream.add_data(df.clone()).unwrap();
            self.added.push(df);
        }
    }
    fn expected(&self, _ctx: SourceContext<'_>, _end: &Offset) -> DataFrame {
        concat_frames(&self.added, &self.schema)
    }
}

#[test]
fn memory_stream() {
    let schema = Schema::from_iter([Field::new("key".into(), DataType::String), Field::new("n".into(), DataType::Int64)]);
    let stream = MemoryStream::new(Arc::new(schema.clone()));
    source_contract(&mut MemoryFixture { schema, stream, added: Vec::new() });
}

/// The rate source at 10 rows per second; new data is the next whole second since the
/// creation time the source logged in `sources/0/0`.
struct RateFixture;

const RATE: i64 = 10;

fn creation_time_ms(ctx: SourceContext<'_>) -> i64 {
    let logged = ctx.checkpoint.log::<Value>(ctx.log_name()).get(0).unwrap();
    logged.and_then(|v| v.as_i64()).expect("the rate source logs its creation time at initialize")
}

impl SourceFixture for RateFixture {
    fn provider(&self) -> SourceProviderRef {
        RateSource::new(RATE as u32).build().unwrap()
    }
    fn add_data(&mut self, ctx: SourceContext<'_>, _round: usize) {
        let creation = creation_time_ms(ctx);
        let next_second = (now_ms() - creation).div_euclid(1000) + 1;
        let wait = creation + next_second * 1000 + 20 - now_ms();
        std::thread::sleep(Duration::from_millis(wait.max(0) as u64));
    }
    /// Values `0 .. 10·end`, value `v` at creation + `v`·100 ms (Spark's rows for
    /// `rowsPerSecond=10` without ramp-up).
    fn expected(&self, ctx: SourceContext<'_>, end: &Offset) -> DataFrame {
        let creation = creation_time_ms(ctx);
        let values: Vec<i64> = (0..RATE * end.as_i64().expect("a rate offset is whole seconds")).collect();
        let ts: Vec<i64> = values.iter().map(|v| (creation + v * 1000 / RATE) * 1000).collect();
        DataFrame::new(values.len(), vec![timestamps("timestamp", ts), Column::new("value".into(), values)]).unwrap()
    }
}

#[test]
fn rate_source() {
    source_contract(&mut RateFixture);
}

#[cfg(feature = "kafka")]
mod kafka {
    use std::time::Duration;

    use polars::prelude::*;
    use sluice::connectors::kafka::rdkafka::mocking::MockCluster;
    use sluice::connectors::kafka::rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
    use sluice::connectors::kafka::rdkafka::ClientConfig;
    use sluice::connectors::kafka::KafkaSource;
    use sluice::engine::{Offset, SourceContext, SourceProviderRef};

    use super::{source_contract, timestamps, SourceFixture};

    /// Topic `in` with two partitions on librdkafka's mock cluster; each round produces
    /// three records to partition 0 and two to partition 1, with set timestamps.
    struct KafkaFixture {
        _mock: MockCluster<'static, DefaultProducerContext>,
        servers: String,
        producer: BaseProducer,
        /// (key, value, partition, offset, timestamp ms) of every record produced.
        produced: Vec<(String, String, i32, i64, i64)>,
    }

    impl SourceFixture for KafkaFixture {
        fn provider(&self) -> SourceProviderRef {
            KafkaSource::new(&self.servers).subscribe(["in"]).starting_offsets("earliest").build().unwrap()
        }
        fn add_data(&mut self, _ctx: SourceContext<'_>, round: usize) {
            for (partition, n) in [(0, 3), (1, 2)] {
                for i in 0..n {
                    let offset = self.produced.iter().filter(|r| r.2 == partition).count() as i64;
                    let (key, value) = (format!("k{round}-{i}"), format!("v{round}-{partition}-{i}"));
                    let ts = 1_709_251_200_000 + (round * 10 + i) as i64;
                    let record = BaseRecord::to("in").partition(partition).key(&key).payload(&value).timestamp(ts);
                    self.producer.send(record).map_err(|(e, _)| e).unwrap();
                    self.produced.push((key, value, partition, offset, ts));
                }
            }
            self.producer.flush(Duration::from_secs(30)).unwrap();
        }
        fn expected(&self, _ctx: SourceContext<'_>, _end: &Offset) -> DataFrame {
            let p = &self.produced;
            let binary = |name: &str, v: Vec<String>| Column::new(name.into(), v).cast(&DataType::Binary).unwrap();
            DataFrame::new(
                p.len(),
                vec![
                    binary("key", p.iter().map(|r| r.0.clone()).collect()),
                    binary("value", p.iter().map(|r| r.1.clone()).collect()),
                    Column::new("topic".into(), vec!["in"; p.len()]),
                    Column::new("partition".into(), p.iter().map(|r| r.2).collect::<Vec<i32>>()),
                    Column::new("offset".into(), p.iter().map(|r| r.3).collect::<Vec<i64>>()),
                    timestamps("timestamp", p.iter().map(|r| r.4 * 1000).collect()),
                    Column::new("timestampType".into(), vec![0i32; p.len()]),
                ],
            )
            .unwrap()
        }
    }

    #[test]
    fn kafka_source() {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic("in", 2, 1).unwrap();
        let servers = mock.bootstrap_servers();
        let producer = ClientConfig::new().set("bootstrap.servers", &servers).set("linger.ms", "0").create().unwrap();
        source_contract(&mut KafkaFixture { _mock: mock, servers, producer, produced: Vec::new() });
    }
}

// The Kinesis fixture's server and client helpers (moto, stream set-up).
#[cfg(feature = "kinesis")]
#[path = "../examples/kinesis_wiki.rs"]
#[allow(dead_code)]
mod kinesis_wiki;

#[cfg(feature = "kinesis")]
mod kinesis {
    use polars::prelude::*;
    use sluice::connectors::kinesis::aws_sdk_kinesis::types::ShardIteratorType;
    use sluice::connectors::kinesis::KinesisSource;
    use sluice::engine::{Offset, SourceContext, SourceProviderRef};

    use super::kinesis_wiki::moto::Moto;
    use super::kinesis_wiki::KinesisAdmin;
    use super::{source_contract, timestamps, SourceFixture};

    /// Stream `in` with two shards on a local moto server; each round puts five records
    /// (keys spread over both shards).
    struct KinesisFixture {
        moto: Moto,
        admin: KinesisAdmin,
    }

    impl SourceFixture for KinesisFixture {
        fn provider(&self) -> SourceProviderRef {
            KinesisSource::new("in")
                .endpoint_url(&self.moto.endpoint)
                .credentials("testing", "testing")
                .starting_position("TRIM_HORIZON")
                .option("idleTimeBetweenReadsMs", 0)
                .build()
                .unwrap()
        }
        fn add_data(&mut self, _ctx: SourceContext<'_>, round: usize) {
            let records: Vec<(String, Vec<u8>)> =
                (0..5).map(|i| (format!("k{round}-{i}"), format!("v{round}-{i}").into_bytes())).collect();
            self.admin.put("in", &records).unwrap();
        }
        /// Every record of the stream, read back with the SDK (the arrival timestamps are
        /// the server's).
        fn expected(&self, _ctx: SourceContext<'_>, _end: &Offset) -> DataFrame {
            let (mut data, mut keys, mut seqs, mut shards, mut arrival) = (vec![], vec![], vec![], vec![], vec![]);
            for (shard, _, _) in self.admin.shards("in").unwrap() {
                let client = &self.admin.client;
                self.admin.rt.block_on(async {
                    let it = client
                        .get_shard_iterator()
                        .stream_name("in")
                        .shard_id(&shard)
                        .shard_iterator_type(ShardIteratorType::TrimHorizon)
                        .send()
                        .await
                        .unwrap();
                    let mut it = it.shard_iterator;
                    while let Some(i) = it {
                        let r = client.get_records().shard_iterator(i).send().await.unwrap();
                        let n = r.records.len();
                        for rec in r.records {
                            let t = rec.approximate_arrival_timestamp.unwrap();
                            arrival.push(t.secs() * 1_000_000 + i64::from(t.subsec_nanos() / 1000));
                            data.push(rec.data.into_inner());
                            keys.push(rec.partition_key.unwrap_or_default());
                            seqs.push(rec.sequence_number);
                            shards.push(shard.clone());
                        }
                        it = r.next_shard_iterator;
                        if n == 0 {
                            break;
                        }
                    }
                });
            }
            let n = data.len();
            DataFrame::new(
                n,
                vec![
                    Column::new("data".into(), data.iter().map(|d| d.as_slice()).collect::<Vec<&[u8]>>()),
                    Column::new("stream".into(), vec!["in"; n]),
                    Column::new("partitionKey".into(), keys),
                    Column::new("sequenceNumber".into(), seqs),
                    Column::new("shardId".into(), shards),
                    timestamps("approximateArrivalTimestamp", arrival),
                ],
            )
            .unwrap()
        }
    }

    #[test]
    fn kinesis_source() {
        let Some(moto) = Moto::start() else { return };
        let admin = KinesisAdmin::local(&moto.endpoint).unwrap();
        admin.create_stream("in", 2).unwrap();
        source_contract(&mut KinesisFixture { moto, admin });
    }
}
