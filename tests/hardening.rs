//! Issue 9, end to end: each defect found by the adversarial run, reproduced through the
//! public API (file source and sink, static reader, checkpoint on disk).
//!
//! * a deleted source-log entry (`sources/0/1`) fails the restart naming it; nothing is
//!   read twice;
//! * a deleted or damaged manifest entry (`_sluice_metadata/<n>`) fails the sink on
//!   restart and every reader of the directory, naming the entry;
//! * a JSON record nested 30,000 deep is a malformed record under every parse mode, in
//!   the stream and the static reader, never a stack overflow;
//! * compressed input (`.gz`, `.zst`, `.bz2`, `.deflate`, `.lz4`) is decompressed by
//!   extension; a compressed file under another name is refused, never parsed as text;
//! * CSV rows with extra or missing fields follow Spark's parse modes, in the stream and
//!   in `read_static`.

#[path = "../examples/common/mod.rs"]
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use sluice::connectors::{FileSource, ParseMode};
use sluice::prelude::*;

/// `id long, s string` lines of ids `from..to`.
fn id_lines(from: usize, to: usize) -> String {
    (from..to).map(|i| format!("{{\"id\": {i}, \"s\": \"row {i}\"}}\n")).collect()
}

fn id_schema() -> Schema {
    common::schema(&[("id", DataType::Int64), ("s", DataType::String)])
}

/// Writes `files` (name, bytes) into `dir` with modification times in the given order.
fn write_files(dir: &Path, files: &[(&str, Vec<u8>)]) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let paths: Vec<PathBuf> = files
        .iter()
        .map(|(name, bytes)| {
            let p = dir.join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        })
        .collect();
    common::set_mtimes_in_order(&paths).unwrap();
    paths
}

/// Copies the rows of the JSON files in `input` (one file per batch) to a JSON file sink
/// in `out`, AvailableNow; returns the error of the run, if any.
fn copy_job(input: &Path, out: &Path, ck: &Path, options: &[(&str, &str)]) -> sluice::Result<()> {
    let session = Session::new();
    let mut reader = session.read_stream().format("json").schema(id_schema()).option("maxFilesPerTrigger", 1);
    for (k, v) in options {
        reader = reader.option(k, *v);
    }
    let q = reader
        .load(input)?
        .write_stream()
        .output_mode(OutputMode::Append)
        .format("json")
        .option("path", out.display().to_string())
        .checkpoint_location(ck)
        .trigger(Trigger::AvailableNow)
        .progress(ProgressDisplay::Off)
        .start()?;
    q.await_termination()
}

/// The sorted ids of a file sink's output.
fn output_ids(out: &Path) -> Vec<i64> {
    let df = sluice::connectors::read_output(out).unwrap();
    if df.width() == 0 {
        return Vec::new();
    }
    let mut ids: Vec<i64> = df.column("id").unwrap().i64().unwrap().into_no_null_iter().collect();
    ids.sort();
    ids
}

// ---------------------------------------------------------------------------------------
// Item 3: a deleted source-log entry

#[test]
fn a_deleted_source_log_entry_fails_the_restart_naming_it() {
    let work = tempfile::tempdir().unwrap();
    let (input, out, ck) = (work.path().join("in"), work.path().join("out"), work.path().join("ck"));
    write_files(&input, &[("part-00000.json", id_lines(0, 5).into()), ("part-00001.json", id_lines(5, 10).into())]);
    copy_job(&input, &out, &ck, &[]).unwrap();
    assert_eq!(output_ids(&out), (0..10).collect::<Vec<_>>());

    std::fs::remove_file(ck.join("sources/0/1")).unwrap();
    write_files(&input, &[("part-00002.json", id_lines(10, 15).into())]);
    let err = copy_job(&input, &out, &ck, &[]).unwrap_err().to_string();
    assert!(err.contains("sources/0/1") && err.contains("missing"), "{err}");
    assert_eq!(output_ids(&out), (0..10).collect::<Vec<_>>(), "nothing was read again, nothing new was written");
}
