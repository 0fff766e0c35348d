//! The rate and socket sources through the facade's `format("rate")` and
//! `format("socket")`, on 127.0.0.1 only.

use std::io::Write;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use sluice::prelude::*;
use sluice::connectors::MemoryTable;

fn start(df: &StreamingDataFrame, table: &MemoryTable, ck: &std::path::Path) -> sluice::StreamingQuery {
    df.write_stream()
        .trigger(Trigger::processing_time("100 milliseconds").unwrap())
        .checkpoint_location(ck)
        .progress(ProgressDisplay::Off)
        .sink(Box::new(table.sink()))
        .start()
        .unwrap()
}

/// (value, timestamp µs) of every row written, sorted by value.
fn rate_rows(table: &MemoryTable) -> Vec<(i64, i64)> {
    let Some(df) = table.to_df().unwrap() else { return Vec::new() };
    let v = df.column("value").unwrap().i64().unwrap().clone();
    let t = df.column("timestamp").unwrap().datetime().unwrap().physical().clone();
    let mut rows: Vec<(i64, i64)> = v.into_no_null_iter().zip(t.into_no_null_iter()).collect();
    rows.sort();
    rows
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn rate_source_generates_contiguous_values_spread_over_each_second_across_restarts() {
    let session = Session::new();
    let df = session.read_stream().format("rate").option("rowsPerSecond", 50).load("").unwrap();
    assert_eq!(
        df.schema().unwrap().iter().map(|(n, d)| (n.to_string(), d.clone())).collect::<Vec<_>>(),
        [("timestamp".to_string(), DataType::Datetime(TimeUnit::Microseconds, None)), ("value".to_string(), DataType::Int64)]
    );
    let ck = tempfile::tempdir().unwrap();
    let table = MemoryTable::new();
    let q = start(&df, &table, ck.path());
    wait_until("two seconds of rows", || rate_rows(&table).len() >= 100);
    q.stop().unwrap();
    let first = rate_rows(&table);
    // A restart continues from the checkpoint with the logged creation time.
    let q = start(&df, &table, ck.path());
    wait_until("rows after the restart", || rate_rows(&table).len() >= first.len() + 50);
    q.stop().unwrap();
    let rows = rate_rows(&table);
    let values: Vec<i64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(values, (0..rows.len() as i64).collect::<Vec<_>>(), "contiguous, no value twice");
    assert_eq!(rows.len() % 50, 0, "whole seconds of 50 rows");
    // 50 rows per second: value v is 20 ms after value 0.
    let t0 = rows[0].1;
    assert!(rows.iter().all(|(v, t)| *t == t0 + v * 20_000), "timestamps spread evenly");
    let creation_ms: i64 = std::fs::read_to_string(ck.path().join("sources/0/0")).unwrap().lines().nth(1).unwrap().parse().unwrap();
    assert_eq!(t0, creation_ms * 1000, "value 0 at the logged creation time");

    let e = session.read_stream().format("rate").option("rowsPerSecond", 0).load("").err().unwrap().to_string();
    assert!(e.contains("rowsPerSecond"), "{e}");
}

#[test]
fn socket_source_reads_lines_and_names_the_address_it_cannot_reach() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(b"first line\nsecond\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(400));
        conn.write_all("third, \u{e9}t\u{e9}\nfour".as_bytes()).unwrap();
        conn.write_all(b"th\n").unwrap();
        std::thread::sleep(Duration::from_millis(300));
        // Closing the connection ends the stream; the query keeps running.
    });
    let session = Session::new();
    let df = session
        .read_stream()
        .format("socket")
        .option("host", "127.0.0.1")
        .option("port", port)
        .option("includeTimestamp", true)
        .load("")
        .unwrap();
    let table = MemoryTable::new();
    let ck = tempfile::tempdir().unwrap();
    let started_us = chrono::Utc::now().timestamp_micros();
    let q = start(&df, &table, ck.path());
    let lines = || -> Vec<String> {
        table
            .to_df()
            .unwrap()
            .map(|d| d.column("value").unwrap().str().unwrap().iter().flatten().map(str::to_string).collect())
            .unwrap_or_default()
    };
    wait_until("four lines", || lines().len() >= 4);
    q.stop().unwrap();
    server.join().unwrap();
    assert_eq!(lines(), ["first line", "second", "third, été", "fourth"]);
    assert!(table.batches().len() >= 2, "lines arrive in more than one batch");
    let df = table.to_df().unwrap().unwrap();
    let ts = df.column("timestamp").unwrap().datetime().unwrap().physical().clone();
    assert!(ts.into_no_null_iter().all(|t| t >= started_us), "arrival times");
    let last = std::fs::read_dir(ck.path().join("offsets")).unwrap().count() - 1;
    let text = std::fs::read_to_string(ck.path().join(format!("offsets/{last}"))).unwrap();
    assert_eq!(text.lines().nth(2), Some("3"), "the offset is the number of the last line (from 0)");

    // Nobody listens any more: start() fails naming the address.
    let e = start_err(&session, port);
    assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
}

fn start_err(session: &Session, port: u16) -> String {
    let df = session.read_stream().format("socket").option("host", "127.0.0.1").option("port", port).load("").unwrap();
    match df.write_stream().progress(ProgressDisplay::Off).sink(Box::new(MemoryTable::new().sink())).start() {
        Ok(q) => q.await_termination().err().map(|e| e.to_string()).unwrap_or_default(),
        Err(e) => e.to_string(),
    }
}
