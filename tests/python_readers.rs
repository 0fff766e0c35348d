//! The file sink's output read by the tools its users have: pyarrow, Polars (Python) and
//! DuckDB, each where installed (`.ci/run` installs them), check the values and the
//! types of Parquet, JSON lines and CSV output written by a query (timestamps as UTC
//! instants, `window` structs as structs, lists as lists). The script is
//! `tests/python/read_sink_output.py`; `SLUICE_PYTHON` picks the interpreter (default
//! `python3`). Without Python the test says so and passes.

#[path = "../examples/common/mod.rs"]
mod common;
#[path = "support/rich_rows.rs"]
mod rich_rows;

use std::path::Path;
use std::process::Command;

use rich_rows::{rich_rows as rows, BASE_US};
use sluice::prelude::*;

/// What every reader must find, as JSON: per row the id, name, instants in µs since the
/// epoch, the window's bounds and the tags.
fn expected(ids: &[i64]) -> serde_json::Value {
    let us = |i: i64| BASE_US + i * 60_000_000 + if i % 2 == 1 { 123_456 } else { 0 };
    serde_json::Value::Array(
        ids.iter()
            .map(|&i| {
                serde_json::json!({
                    "id": i,
                    "name": (i % 3 != 2).then(|| format!("user-{i}")),
                    "t_us": us(i),
                    "window_start_us": BASE_US + (i / 10) * 600_000_000,
                    "window_end_us": BASE_US + (i / 10 + 1) * 600_000_000,
                    "tags": match i % 4 { 3 => serde_json::Value::Null, 2 => serde_json::json!([]), _ => serde_json::json!([format!("a{i}"), "b"]) },
                    "times_us": [us(i), us(i + 1)],
                })
            })
            .collect(),
    )
}

fn write(session: &Session, dir: &Path, format: &str, batches: &[Vec<i64>]) {
    let columns: &[&str] = if format == "csv" { &["id", "name", "t", "window", "tags"] } else { &["id", "name", "t", "window", "tags", "times"] };
    let pick = |df: DataFrame| df.select(columns.iter().copied()).unwrap();
    let stream = MemoryStream::new(pick(rows(&[0])).schema().clone());
    let q = stream
        .to_df(session)
        .write_stream()
        .format(format)
        .option("path", dir.join(format).display())
        .checkpoint_location(dir.join(format!("ck-{format}")))
        .progress(ProgressDisplay::Off)
        .start()
        .unwrap();
    for ids in batches {
        stream.add_data(pick(rows(ids))).unwrap();
        q.process_all_available().unwrap();
    }
    q.stop().unwrap();
}

#[test]
fn pyarrow_polars_and_duckdb_read_the_sink_output() {
    let python = std::env::var("SLUICE_PYTHON").unwrap_or_else(|_| "python3".into());
    if Command::new(&python).arg("--version").output().is_err() {
        eprintln!("SKIPPED: no {python}: the sink output was not checked with Python readers");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let batches = [vec![0, 1, 2, 3, 4, 5, 6, 7], vec![8, 9, 10, 11, 12]];
    let session = Session::new();
    for format in ["parquet", "json", "csv"] {
        write(&session, dir.path(), format, &batches);
    }
    let all: Vec<i64> = batches.concat();
    std::fs::write(dir.path().join("expected.json"), expected(&all).to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/read_sink_output.py");
    let out = Command::new(&python).arg(&script).arg(dir.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    if let Ok(keep) = std::env::var("SLUICE_KEEP_OUTPUT") {
        let _ = std::fs::remove_dir_all(&keep);
        std::fs::rename(dir.path(), &keep).unwrap();
    }
    assert!(out.status.success(), "a Python reader disagrees with what the sink wrote:\n{stdout}\n{stderr}");
}
