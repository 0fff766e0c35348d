//! The Kinesis source and sink against a local Kinesis server: moto's `moto_server`
//! started on a free loopback port by `tests/support/moto.rs` (killed at the end of each
//! test), reached over HTTP through the real AWS SDK. Each test prints a SKIPPED line and
//! passes when `moto_server` is not installed (`.ci/run` installs it).
//!
//! Source: offsets per shard per batch (`offsets/N`, `sources/0/0`), `maxRecordsPerTrigger`
//! shared across shards, replay of logged ranges after a failure (also for `LATEST`), a
//! shard split mid-run (nothing lost or repeated, the parent read to its end before its
//! children), throttling (injected by the harness into moto: every n-th GetRecords
//! answers `ProvisionedThroughputExceededException`) retried and counted in the
//! progress. Sink: records read back with their partition keys, PutRecords split in
//! calls of 500, records reported failed (injected) sent again, a record over 1 MiB
//! failing its batch naming the row. End to end: the kinesis_wiki job on one shard
//! equals Spark's oracle case p05 batch by batch.

#[path = "../examples/kinesis_wiki.rs"]
#[allow(dead_code)]
mod kinesis_wiki;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use kinesis_wiki::moto::Moto;
use kinesis_wiki::KinesisAdmin;
use sluice::connectors::kinesis::{kinesis_schema, KinesisSink, KinesisSource};
use sluice::connectors::MemoryStream;
use sluice::engine::Options;
use sluice::prelude::*;
use sluice::StreamingQueryProgress;

/// The source of `stream` on the local server, with short backoffs and idle times.
fn source(m: &Moto, stream: &str) -> KinesisSource {
    KinesisSource::new(stream)
        .endpoint_url(&m.endpoint)
        .credentials("testing", "testing")
        .option("idleTimeBetweenReadsMs", 20)
        .option("retryIntervalMs", 10)
        .option("maxRetryIntervalMs", 100)
}

/// Records `(key, value)` with keys `k<i>` and values `<prefix><i>`.
fn recs(range: std::ops::Range<usize>, prefix: &str) -> Vec<(String, Vec<u8>)> {
    range.map(|i| (format!("k{i}"), format!("{prefix}{i}").into_bytes())).collect()
}

type Batches = Arc<Mutex<Vec<(u64, DataFrame)>>>;

/// Runs `df` to completion with `trigger`, collecting each batch; `fail_at` makes the
/// sink fail on that batch id.
fn run(df: &StreamingDataFrame, ck: &Path, trigger: Trigger, fail_at: Option<u64>) -> (Vec<(u64, DataFrame)>, sluice::Result<Vec<StreamingQueryProgress>>) {
    let got: Batches = Arc::default();
    let g = got.clone();
    let q = df
        .write_stream()
        .trigger(trigger)
        .checkpoint_location(ck)
        .progress(ProgressDisplay::Off)
        .foreach_batch(move |d, id| {
            if Some(id) == fail_at {
                return Err(sluice::SluiceError::User(format!("sink fails at batch {id}")));
            }
            g.lock().unwrap().push((id, d.clone()));
            Ok(())
        })
        .start()
        .unwrap();
    let result = q.await_termination().map(|_| q.recent_progress());
    let batches = got.lock().unwrap().clone();
    (batches, result)
}

/// The source offset logged in `<ck>/offsets/<n>`.
fn logged_offset(ck: &Path, n: u64) -> serde_json::Value {
    let text = std::fs::read_to_string(ck.join(format!("offsets/{n}"))).unwrap();
    serde_json::from_str(text.lines().nth(2).unwrap()).unwrap()
}

fn strings(df: &DataFrame, column: &str) -> Vec<String> {
    let c = df.column(column).unwrap();
    match c.dtype() {
        DataType::Binary => c.binary().unwrap().iter().map(|v| String::from_utf8_lossy(v.unwrap_or(b"")).into_owned()).collect(),
        _ => c.str().unwrap().iter().map(|v| v.unwrap_or("").to_string()).collect(),
    }
}

fn all_data(batches: &[(u64, DataFrame)]) -> Vec<String> {
    batches.iter().flat_map(|(_, d)| strings(d, "data")).collect()
}

/// `(shard, sequence number)` of each row of `df`.
fn positions(df: &DataFrame) -> Vec<(String, String)> {
    strings(df, "shardId").into_iter().zip(strings(df, "sequenceNumber")).collect()
}

#[test]
fn offsets_per_shard_per_batch_and_the_rows_columns() {
    let Some(m) = Moto::start() else { return };
    let admin = KinesisAdmin::local(&m.endpoint).unwrap();
    admin.create_stream("t", 2).unwrap();
    let put = admin.put("t", &recs(0..40, "v")).unwrap();
    let per_shard = |shard: &str| put.iter().filter(|(s, _)| s == shard).map(|(_, q)| q.clone()).collect::<Vec<_>>();
    let (s0, s1) = (per_shard("shardId-000000000000"), per_shard("shardId-000000000001"));
    assert!(s0.len() >= 5 && s1.len() >= 5, "both shards hold records: {} and {}", s0.len(), s1.len());

    let session = Session::new();
    let df = session
        .read_stream()
        .format("kinesis")
        .option("streamName", "t")
        .option("endpointUrl", &m.endpoint)
        .option("awsAccessKeyId", "testing")
        .option("awsSecretKey", "testing")
        .option("startingPosition", "TRIM_HORIZON")
        .option("maxRecordsPerTrigger", 10)
        .load("")
        .unwrap();
    assert_eq!(df.schema().unwrap().as_ref(), &kinesis_schema());
    let ck = tempfile::tempdir().unwrap();
    let before_ms = chrono::Utc::now().timestamp_millis() - 60_000;
    let (batches, result) = run(&df, ck.path(), Trigger::AvailableNow, None);
    let progress = result.unwrap();
    // The starting position of every shard, resolved once.
    let initial = std::fs::read_to_string(ck.path().join("sources/0/0")).unwrap();
    assert!(
        initial.contains(r#"{"t":{"shardId-000000000000":"TRIM_HORIZON","shardId-000000000001":"TRIM_HORIZON"}}"#),
        "{initial}"
    );
    // Batch 0: 5 records of each shard, the offset is the last sequence number read.
    assert_eq!(logged_offset(ck.path(), 0), serde_json::json!({"t": {"shardId-000000000000": s0[4], "shardId-000000000001": s1[4]}}));
    let b0 = &batches[0].1;
    assert_eq!(b0.height(), 10);
    let mut want: Vec<(String, String)> = s0[..5].iter().map(|q| ("shardId-000000000000".into(), q.clone())).collect();
    want.extend(s1[..5].iter().map(|q| ("shardId-000000000001".into(), q.clone())));
    assert_eq!(positions(b0), want, "rows in shard, then sequence-number order");
    // Every batch's range is (previous offset, its offset] of each shard: all records once,
    // each shard in order.
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, b) in &batches {
        assert!(b.height() <= 10, "batch {id}");
        for (shard, seq) in positions(b) {
            seen.entry(shard).or_default().push(seq);
        }
        let logged = logged_offset(ck.path(), *id);
        for (shard, seqs) in &seen {
            assert_eq!(logged["t"][shard].as_str(), Some(seqs.last().unwrap().as_str()), "offsets/{id} ends where the rows end");
        }
    }
    assert_eq!(seen["shardId-000000000000"], s0);
    assert_eq!(seen["shardId-000000000001"], s1);
    let mut data = all_data(&batches);
    data.sort();
    let mut values: Vec<String> = (0..40).map(|i| format!("v{i}")).collect();
    values.sort();
    assert_eq!(data, values);
    // The other columns.
    assert!(strings(b0, "stream").iter().all(|s| s == "t"));
    let keys = strings(b0, "partitionKey");
    let data0 = strings(b0, "data");
    assert!(keys.iter().zip(&data0).all(|(k, v)| k[1..] == v[1..]), "keys k<i> with values v<i>");
    let ts = b0.column("approximateArrivalTimestamp").unwrap().datetime().unwrap().physical().clone();
    assert!(ts.into_no_null_iter().all(|us| us / 1000 > before_ms), "arrival timestamps in µs");
    // Progress carries the source's metrics.
    let metrics = &progress.last().unwrap().sources[0].metrics;
    assert_eq!(metrics["recordsRead"], "40");
    assert_eq!(metrics["throttledRequests"], "0");
}

#[test]
fn max_records_per_trigger_is_shared_max_min_fair() {
    let Some(m) = Moto::start() else { return };
    let admin = KinesisAdmin::local(&m.endpoint).unwrap();
    // Learn which keys land in which shard of a 2-shard stream (the hash ranges are the
    // same for every such stream), then fill one shard with 2 records, the other with 20.
    admin.create_stream("probe", 2).unwrap();
    let probe = admin.put("probe", &recs(0..100, "p")).unwrap();
    let keys_of = |shard: &str| probe.iter().enumerate().filter(|(_, (s, _))| s == shard).map(|(i, _)| i).collect::<Vec<_>>();
    let (a, b) = (keys_of("shardId-000000000000"), keys_of("shardId-000000000001"));
    admin.create_stream("t", 2).unwrap();
    let mut records: Vec<(String, Vec<u8>)> = a[..2].iter().map(|i| (format!("k{i}"), format!("a{i}").into_bytes())).collect();
    records.extend(b[..20].iter().map(|i| (format!("k{i}"), format!("b{i}").into_bytes())));
    admin.put("t", &records).unwrap();
    let session = Session::new();
    let df = source(&m, "t").starting_position("TRIM_HORIZON").max_records_per_trigger(10).to_df(&session).unwrap();
    let ck = tempfile::tempdir().unwrap();
    let (batches, result) = run(&df, ck.path(), Trigger::AvailableNow, None);
    result.unwrap();
    let per_shard = |df: &DataFrame| {
        let shards = strings(df, "shardId");
        (shards.iter().filter(|s| *s == "shardId-000000000000").count(), shards.iter().filter(|s| *s == "shardId-000000000001").count())
    };
    // The small shard gives its 2, the other takes the rest of the 10.
    assert_eq!(per_shard(&batches[0].1), (2, 8));
    assert_eq!(per_shard(&batches[1].1), (0, 10));
    assert_eq!(per_shard(&batches[2].1), (0, 2));
    assert_eq!(batches.len(), 3);
    // Trigger::Once ignores the limit.
    admin.put("t", &recs(100..130, "c")).unwrap();
    let (batches, result) = run(&df, ck.path(), Trigger::Once, None);
    result.unwrap();
    assert_eq!(batches[0].1.height(), 30);
}

#[test]
fn a_restarted_query_replays_the_logged_ranges() {
    let Some(m) = Moto::start() else { return };
    let admin = KinesisAdmin::local(&m.endpoint).unwrap();
    admin.create_stream("t", 1).unwrap();
    let put = admin.put("t", &recs(0..10, "v")).unwrap();
    let session = Session::new();
    let provider = source(&m, "t").starting_position("TRIM_HORIZON").max_records_per_trigger(4).provider().unwrap();
    let metrics = provider.metrics();
    let df = session.stream_from(Arc::new(provider));
    let ck = tempfile::tempdir().unwrap();
    let (first, result) = run(&df, ck.path(), Trigger::AvailableNow, Some(1));
    assert!(result.is_err(), "the sink fails batch 1");
    assert_eq!(all_data(&first), (0..4).map(|i| format!("v{i}")).collect::<Vec<_>>());
    assert_eq!(logged_offset(ck.path(), 1), serde_json::json!({"t": {"shardId-000000000000": put[7].1}}));
    // More data arrives before the restart; batch 1 must still read exactly records 4..8,
    // read again from Kinesis (the new run has nothing in memory).
    admin.put("t", &recs(10..20, "v")).unwrap();
    let replayed_before = metrics.replayed_records();
    let (second, result) = run(&df, ck.path(), Trigger::AvailableNow, None);
    result.unwrap();
    assert_eq!(second[0].0, 1);
    assert_eq!(strings(&second[0].1, "data"), (4..8).map(|i| format!("v{i}")).collect::<Vec<_>>());
    assert_eq!(metrics.replayed_records() - replayed_before, 4, "the logged range was read again");
    assert_eq!(all_data(&second), (4..20).map(|i| format!("v{i}")).collect::<Vec<_>>());
    assert_eq!(second.len(), 4, "batches 1..=4 of 4 records");

    // LATEST: pinned when the query first starts (sources/0/0), so a query that failed
    // its first batch restarts from there, not from the new latest.
    admin.create_stream("u", 1).unwrap();
    admin.put("u", &recs(0..10, "old")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let df = source(&m, "u").to_df(&session).unwrap();
    let ck = tempfile::tempdir().unwrap();
    let (_, result) = run(&df, ck.path(), Trigger::Once, Some(0));
    assert!(result.is_err());
    let initial = std::fs::read_to_string(ck.path().join("sources/0/0")).unwrap();
    assert!(initial.contains(r#""shardId-000000000000":"AT_TIMESTAMP:"#), "{initial}");
    admin.put("u", &recs(10..15, "new")).unwrap();
    let (batches, result) = run(&df, ck.path(), Trigger::AvailableNow, None);
    result.unwrap();
    assert_eq!(batches[0].0, 0);
    assert_eq!(batches[0].1.height(), 0, "batch 0 replays its logged (empty) range");
    assert_eq!(all_data(&batches), (10..15).map(|i| format!("new{i}")).collect::<Vec<_>>());

    // AT_TIMESTAMP: the records that arrived at or after the time.
    let df = source(&m, "u").starting_timestamp(chrono::Utc::now().timestamp_millis() - 3_600_000).to_df(&session).unwrap();
    let (batches, result) = run(&df, tempfile::tempdir().unwrap().path(), Trigger::AvailableNow, None);
    result.unwrap();
    assert_eq!(all_data(&batches).len(), 15);
}

#[test]
fn a_shard_split_mid_run_loses_and_repeats_nothing() {
    let Some(m) = Moto::start() else { return };
    let admin = KinesisAdmin::local(&m.endpoint).unwrap();
    admin.create_stream("t", 1).unwrap();
    admin.put("t", &recs(0..30, "a")).unwrap();
    let session = Session::new();
    let df = source(&m, "t").starting_position("TRIM_HORIZON").max_records_per_trigger(20).to_df(&session).unwrap();
    let ck = tempfile::tempdir().unwrap();
    // Batch 0 reads 20 records; batch 1 (the other 10) is planned, then fails.
    let (first, result) = run(&df, ck.path(), Trigger::AvailableNow, Some(1));
    assert!(result.is_err());
    assert_eq!(first.len(), 1);
    // The shard splits while the query is down; new records go to the two children.
    admin.split_in_half("t", "shardId-000000000000").unwrap();
    let shards = admin.shards("t").unwrap();
    assert_eq!(shards.len(), 3);
    assert!(shards[0].2 && !shards[1].2 && shards[1].1 == ["shardId-000000000000"], "{shards:?}");
    admin.put("t", &recs(0..40, "b")).unwrap();
    let (second, result) = run(&df, ck.path(), Trigger::AvailableNow, None);
    result.unwrap();
    // Batch 1 replays exactly the parent's last 10 records, then the parent is at its end
    // and the children are read.
    assert_eq!(second[0].0, 1);
    assert_eq!(strings(&second[0].1, "data"), (20..30).map(|i| format!("a{i}")).collect::<Vec<_>>());
    assert!(strings(&second[0].1, "shardId").iter().all(|s| s == "shardId-000000000000"));
    let b2 = logged_offset(ck.path(), 2);
    assert_eq!(b2["t"]["shardId-000000000000"], "SHARD_END", "{b2}");
    assert!(b2["t"]["shardId-000000000001"].is_string() && b2["t"]["shardId-000000000002"].is_string(), "{b2}");
    for (id, b) in &second[1..] {
        assert!(strings(b, "shardId").iter().all(|s| s != "shardId-000000000000"), "batch {id}: children only");
        assert!(b.height() <= 20);
    }
    // Nothing lost, nothing repeated; each key's records in order (parent, then child).
    let all: Vec<(u64, DataFrame)> = first.into_iter().chain(second).collect();
    let mut data = all_data(&all);
    let n = data.len();
    data.sort();
    data.dedup();
    assert_eq!(data.len(), n, "no record twice");
    let mut want: Vec<String> = (0..30).map(|i| format!("a{i}")).chain((0..40).map(|i| format!("b{i}"))).collect();
    want.sort();
    assert_eq!(data, want, "every record");
    let order: Vec<String> = all_data(&all);
    for i in 0..30 {
        let (a, b) = (order.iter().position(|v| *v == format!("a{i}")), order.iter().position(|v| *v == format!("b{i}")));
        assert!(a < b, "key k{i}: the parent's record before the child's");
    }
    // A fresh query from TRIM_HORIZON follows the same lineage.
    let (batches, result) = run(&df, tempfile::tempdir().unwrap().path(), Trigger::AvailableNow, None);
    result.unwrap();
    assert_eq!(all_data(&batches).len(), 70);
}

#[test]
fn throttling_is_retried_and_counted_never_failing_a_batch() {
    // moto never throttles: the harness makes every 2nd GetRecords call answer
    // ProvisionedThroughputExceededException.
    let Some(m) = Moto::start_with(&[("SLUICE_MOTO_THROTTLE_GET_RECORDS", "2")]) else { return };
    let admin = KinesisAdmin::local(&m.endpoint).unwrap();
    admin.create_stream("t", 2).unwrap();
    admin.put("t", &recs(0..60, "v")).unwrap();
    let session = Session::new();
    // numRetries 0: the SDK gives up at once and the source's own backoff (backon) retries;
    // then the default 3: the SDK's retry strategy absorbs it. Both count every throttle.
    for retries in ["0", "3"] {
        let provider = source(&m, "t")
            .starting_position("TRIM_HORIZON")
            .max_records_per_trigger(7)
            .option("maxRecordsPerRead", 5)
            .option("numRetries", retries)
            .provider()
            .unwrap();
        let metrics = provider.metrics();
        let df = session.stream_from(Arc::new(provider));
        let (batches, result) = run(&df, tempfile::tempdir().unwrap().path(), Trigger::AvailableNow, None);
        let progress = result.unwrap_or_else(|e| panic!("numRetries {retries}: throttling failed the query: {e}"));
        let mut data = all_data(&batches);
        data.sort();
        let mut want: Vec<String> = (0..60).map(|i| format!("v{i}")).collect();
        want.sort();
        assert_eq!(data, want, "numRetries {retries}: every record once");
        assert!(metrics.throttled_requests() >= 5, "numRetries {retries}: throttled {}", metrics.throttled_requests());
        // Each batch's progress carries the count so far (the planning after the last
        // batch, which finds nothing new, may be throttled too).
        let reported: Vec<u64> =
            progress.iter().map(|p| p.sources[0].metrics["throttledRequests"].parse().unwrap()).collect();
        assert!(reported.windows(2).all(|w| w[0] <= w[1]), "numRetries {retries}: {reported:?}");
        let last = *reported.last().unwrap();
        assert!(last >= 5 && last <= metrics.throttled_requests(), "numRetries {retries}: reported {reported:?}");
    }
}

#[test]
fn the_sink_writes_records_with_their_partition_keys_retrying_failed_ones() {
    // Every 7th record of a PutRecords call is reported failed (not stored), as Kinesis
    // does for a shard over its write limit.
    let Some(m) = Moto::start_with(&[("SLUICE_MOTO_FAIL_PUT_RECORDS", "7")]) else { return };
    let admin = KinesisAdmin::local(&m.endpoint).unwrap();
    admin.create_stream("out", 2).unwrap();
    let n = 1_200;
    let rows = df!(
        "user" => (0..n).map(|i| format!("u{}", i % 13)).collect::<Vec<_>>(),
        "data" => (0..n).map(|i| format!("row {i}")).collect::<Vec<_>>(),
    )
    .unwrap();
    let stream = MemoryStream::new(rows.schema().clone());
    stream.add_data(rows).unwrap();
    let session = Session::new();
    let options = Options::from_pairs([
        ("streamName", "out"),
        ("endpointUrl", m.endpoint.as_str()),
        ("awsAccessKeyId", "testing"),
        ("awsSecretKey", "testing"),
        ("partitionKeyColumn", "user"),
        ("retryIntervalMs", "10"),
        ("maxRetryIntervalMs", "50"),
    ]);
    let sink = KinesisSink::from_options(&options).unwrap();
    let metrics = sink.metrics();
    let ck = tempfile::tempdir().unwrap();
    let q = stream
        .to_df(&session)
        .write_stream()
        .checkpoint_location(ck.path())
        .trigger(Trigger::AvailableNow)
        .progress(ProgressDisplay::Off)
        .sink(Box::new(sink))
        .start()
        .unwrap();
    q.await_termination().unwrap();
    let mut got: Vec<(String, String)> = Vec::new();
    let mut shard_of_key: BTreeMap<String, String> = BTreeMap::new();
    for (shard, _, _) in admin.shards("out").unwrap() {
        for (key, data, _) in admin.read_shard("out", &shard).unwrap() {
            assert_eq!(shard_of_key.entry(key.clone()).or_insert(shard.clone()), &shard, "a key's records in one shard");
            got.push((key, String::from_utf8(data).unwrap()));
        }
    }
    got.sort();
    let mut want: Vec<(String, String)> = (0..n).map(|i| (format!("u{}", i % 13), format!("row {i}"))).collect();
    want.sort();
    assert_eq!(got, want, "every row once, with its partition key");
    assert_eq!(shard_of_key.values().collect::<std::collections::BTreeSet<_>>().len(), 2, "both shards used");
    assert_eq!(metrics.records_put(), n as u64);
    assert!(metrics.records_retried() >= (n / 7) as u64, "failed records sent again: {}", metrics.records_retried());
    assert!(metrics.put_records_calls() >= 3 * 2, "calls of at most 500 records, then retries: {}", metrics.put_records_calls());

    // A record over 1 MiB fails its batch naming the row; nothing of the batch is sent.
    let big = "x".repeat(1024 * 1024);
    let rows = df!("partitionKey" => ["a", "b", "c"], "data" => ["small", big.as_str(), "small"]).unwrap();
    let stream = MemoryStream::new(rows.schema().clone());
    stream.add_data(rows).unwrap();
    admin.create_stream("big", 1).unwrap();
    let ck = tempfile::tempdir().unwrap();
    let q = stream
        .to_df(&session)
        .write_stream()
        .format("kinesis")
        .option("streamName", "big")
        .option("endpointUrl", &m.endpoint)
        .option("awsAccessKeyId", "testing")
        .option("awsSecretKey", "testing")
        .checkpoint_location(ck.path())
        .trigger(Trigger::AvailableNow)
        .progress(ProgressDisplay::Off)
        .start()
        .unwrap();
    let e = q.await_termination().unwrap_err().to_string();
    assert!(e.contains("batch 0: row 1") && e.contains("1 MiB"), "{e}");
    assert!(admin.read_shard("big", "shardId-000000000000").unwrap().is_empty());
}

#[test]
fn kinesis_wiki_on_one_shard_matches_spark_oracle_p05_batch_by_batch() {
    let Some(m) = Moto::start() else { return };
    let admin = KinesisAdmin::local(&m.endpoint).unwrap();
    admin.create_stream("wiki_edits", 1).unwrap();
    admin.create_stream("wiki_windows", 1).unwrap();
    let records = kinesis_wiki::wiki_records().unwrap();
    assert_eq!(records.len(), 39_244);
    admin.put("wiki_edits", &records).unwrap();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let job = kinesis_wiki::Job {
        endpoint: Some(m.endpoint.clone()),
        region: None,
        credentials: Some(("testing".into(), "testing".into())),
        stream: "wiki_edits".into(),
        output_stream: Some("wiki_windows".into()),
        max_records_per_trigger: 2000,
        checkpoint: work.path().join("ck"),
        files: kinesis_wiki::FilesOut::Jsonl(out.clone()),
        s3_options: vec![],
        progress: ProgressDisplay::Off,
    };
    let progress = kinesis_wiki::run_job(&job).unwrap();
    let rows: Vec<u64> = progress.iter().map(|p| p.num_input_rows).collect();
    assert_eq!(rows.len(), 21, "20 batches of up to 2,000 edits and the no-data batch: {rows:?}");
    assert!(rows[..19].iter().all(|r| *r == 2000) && rows[19] == 1244 && rows[20] == 0, "{rows:?}");
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/cases/p05_wiki_edits");
    let result = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/compare.py"))
        .arg(&case)
        .arg(&out)
        .output()
        .expect("python3 runs the oracle's compare.py");
    let text = String::from_utf8_lossy(&result.stdout);
    assert!(result.status.success(), "differs from Spark:\n{text}{}", String::from_utf8_lossy(&result.stderr));
    assert!(text.contains(": match"), "{text}");
    // The same windows went to the output stream, keyed by channel.
    let written: usize = progress.iter().map(|p| p.sink.num_output_rows as usize).sum();
    let back = admin.read_shard("wiki_windows", "shardId-000000000000").unwrap();
    assert_eq!(back.len(), written);
    assert!(back.iter().all(|(k, d, _)| String::from_utf8_lossy(d).contains(&format!("\"channel\":\"{k}\""))));
}
