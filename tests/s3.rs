//! Sluice on S3 (cargo feature `s3`), against a real S3 protocol server on the loopback:
//! moto's `moto_server`, started per test on a free port and killed at its end
//! (`support/moto.rs`; a test is skipped, saying so, only when moto cannot be started).
//!
//! | test | checks |
//! |---|---|
//! | `checkpoint_on_s3_survives_stop_and_restart` | a query stopped and restarted on its S3 checkpoint writes what one uninterrupted run writes |
//! | `checkpoint_on_s3_survives_sigkill_mid_batch` | killed with SIGKILL at random moments (mid-batch too) and restarted, every round equals the uninterrupted run |
//! | `two_queries_on_one_s3_checkpoint` | a second query on a running query's S3 checkpoint: one of the two fails, every batch is in the output once |
//! | `store_without_conditional_puts_fails_start` | `s3.conditionalPut=disabled` makes `start()` fail saying why, writing nothing |
//! | `bad_s3_options_fail_start_naming_them` | an unknown `s3.*` option fails `start()` naming it |
//!
//! The job is `wiki_edits` (windowed aggregation with a watermark, append) over oracle
//! case p05's 20 input files, one file per batch, into the Parquet file sink; its output
//! is compared as the sorted manifest-listed rows.

#[path = "../examples/common/mod.rs"]
mod common;
#[path = "support/kill.rs"]
mod kill;
#[path = "support/moto.rs"]
mod moto;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use kill::{run_or_kill, RunEnd};
use moto::Moto;
use sluice::prelude::*;
use sluice_checkpoint::store::{Storage, StoreOptions};

const BUCKET: &str = "sluice";

/// The p05 input copied to `dir` with its files' modification times in name order.
fn input(dir: &Path) -> PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/cases/p05_wiki_edits/input");
    let to = dir.join("input");
    common::copy_ordered(&from, &to).unwrap();
    to
}

/// Starts `wiki_edits` over `input` into the Parquet file sink at `out`, checkpoint `ck`
/// (`s3://...` or a local directory), with `s3` as its `s3.*` options.
fn start_wiki(input: &Path, out: &Path, ck: &str, s3: &[(&str, String)], trigger: Trigger) -> anyhow::Result<StreamingQuery> {
    let session = Session::new();
    let edits = common::json_source(&session, input, common::wiki_schema())?;
    let mut w = common::wiki_edits(edits, "10 minutes", "1 minute")?
        .write_stream()
        .output_mode(OutputMode::Append)
        .format("parquet")
        .option("path", out.display().to_string())
        .option("checkpointLocation", ck)
        .trigger(trigger)
        .progress(ProgressDisplay::Off);
    for (k, v) in s3 {
        w = w.option(&format!("s3.{k}"), v);
    }
    Ok(w.start()?)
}

fn run_wiki(input: &Path, out: &Path, ck: &str, s3: &[(&str, String)]) -> anyhow::Result<()> {
    start_wiki(input, out, ck, s3, Trigger::AvailableNow)?.await_termination()?;
    Ok(())
}

/// The output of a run: the manifest's batches are numbered without gaps and list each
/// file once; then the sorted rows.
fn written(out: &Path) -> DataFrame {
    let entries = sluice::connectors::read_manifest(out).unwrap();
    let mut files = std::collections::BTreeSet::new();
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.batch_id, i as u64, "manifest batch ids are contiguous");
        for f in &e.files {
            assert!(files.insert(f.path.clone()), "{} is listed twice in the manifest", f.path);
        }
    }
    common::sorted_window_output(out).unwrap()
}

fn assert_same(got: &DataFrame, expected: &DataFrame, what: &str) {
    assert!(expected.height() > 0, "the reference run wrote rows");
    assert!(
        got.height() == expected.height() && got.equals_missing(expected),
        "{what}: {} rows differ from the uninterrupted run's {}:\n{got}\n{expected}",
        got.height(),
        expected.height()
    );
}

/// The planned batches of the checkpoint at `ck` (its `offsets/<n>` objects).
fn planned(ck: &str, s3: &[(&str, String)]) -> usize {
    let (storage, prefix) = Storage::open_str(ck, &StoreOptions::from_pairs(s3.iter().cloned())).unwrap();
    let listed = storage.list(&prefix.clone().join("offsets")).unwrap();
    listed.iter().filter(|m| m.location.filename().is_some_and(|n| n.parse::<u64>().is_ok())).count()
}

#[test]
fn checkpoint_on_s3_survives_stop_and_restart() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket(BUCKET);
    let s3 = moto.s3_options();
    let work = tempfile::tempdir().unwrap();
    let all = input(work.path());

    let ref_out = work.path().join("ref-out");
    let ref_ck = work.path().join("ref-ck");
    run_wiki(&all, &ref_out, &ref_ck.display().to_string(), &[]).unwrap();
    let expected = written(&ref_out);

    // The same files arriving in two halves, a stop between them.
    let staged = work.path().join("staged");
    std::fs::create_dir(&staged).unwrap();
    let mut names: Vec<_> = std::fs::read_dir(&all).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    let (first, second) = names.split_at(names.len() / 2);
    let copy = |names: &[std::ffi::OsString]| {
        let paths: Vec<PathBuf> = names.iter().map(|n| staged.join(n)).collect();
        for (n, p) in names.iter().zip(&paths) {
            std::fs::copy(all.join(n), p).unwrap();
        }
        paths
    };
    let mut paths = copy(first);
    let out = work.path().join("out");
    let ck = format!("s3://{BUCKET}/restart/ck");
    run_wiki(&staged, &out, &ck, &s3).unwrap();
    let after_first = planned(&ck, &s3);
    assert!(after_first >= first.len(), "one batch per file: {after_first} planned");
    paths.extend(copy(second));
    common::set_mtimes_in_order(&paths).unwrap();
    run_wiki(&staged, &out, &ck, &s3).unwrap();
    assert!(planned(&ck, &s3) >= names.len(), "the restarted run went on where the first stopped");
    assert_same(&written(&out), &expected, "stopped and restarted on an S3 checkpoint");
    // A third run finds nothing new and writes nothing.
    let batches = sluice::connectors::read_manifest(&out).unwrap().len();
    run_wiki(&staged, &out, &ck, &s3).unwrap();
    assert_eq!(sluice::connectors::read_manifest(&out).unwrap().len(), batches);
}

/// The child of `checkpoint_on_s3_survives_sigkill_mid_batch`: `wiki_edits` with the
/// folders and the checkpoint in environment variables.
#[test]
#[ignore = "entry point of the child processes of checkpoint_on_s3_survives_sigkill_mid_batch"]
fn s3_child() {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is set by the parent test"));
    let s3: Vec<(&str, String)> = vec![
        ("endpoint", var("SLUICE_S3_ENDPOINT")),
        ("allowHttp", "true".into()),
        ("region", "us-east-1".into()),
        ("accessKeyId", "test".into()),
        ("secretAccessKey", "test".into()),
    ];
    run_wiki(Path::new(&var("SLUICE_S3_INPUT")), Path::new(&var("SLUICE_S3_OUT")), &var("SLUICE_S3_CK"), &s3).unwrap();
}

fn spawn_child(moto: &Moto, input: &Path, out: &Path, ck: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "s3_child", "--nocapture", "--test-threads", "1"])
        .env("SLUICE_S3_ENDPOINT", moto.endpoint())
        .env("SLUICE_S3_INPUT", input)
        .env("SLUICE_S3_OUT", out)
        .env("SLUICE_S3_CK", ck)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// SIGKILLs in all, over rounds of fresh output and checkpoint.
const KILLS: usize = 8;

#[test]
fn checkpoint_on_s3_survives_sigkill_mid_batch() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket(BUCKET);
    let s3 = moto.s3_options();
    let work = tempfile::tempdir().unwrap();
    let input = input(work.path());

    let started = Instant::now();
    let ref_out = work.path().join("ref-out");
    let ref_ck = format!("s3://{BUCKET}/sigkill/ref-ck");
    let status = spawn_child(&moto, &input, &ref_out, &ref_ck).wait().unwrap();
    assert!(status.success(), "the uninterrupted run failed");
    let full_run = started.elapsed();
    let expected = written(&ref_out);
    let batches = planned(&ref_ck, &s3).max(1) as u64;
    let batch_ms = (full_run.as_millis() as u64 / batches).clamp(5, 2000);

    let mut seed = 0x5eed_u64;
    let (mut kills, mut runs, mut rounds) = (0, 0, 0);
    while kills < KILLS {
        rounds += 1;
        assert!(rounds <= 10, "only {kills} kills in {rounds} rounds");
        let out = work.path().join(format!("out-{rounds}"));
        let ck = format!("s3://{BUCKET}/sigkill/ck-{rounds}");
        loop {
            runs += 1;
            assert!(runs < 200, "the job never completed");
            let before = planned(&ck, &s3);
            let child = spawn_child(&moto, &input, &out, &ck);
            // Killed a random time (up to two batches' worth) after the run planned a
            // new batch: mid-fetch, mid-sink-write, mid-commit.
            let planned_now = || planned(&ck, &s3);
            match run_or_kill(child, kills < KILLS, planned_now, before, Duration::from_millis(2), batch_ms, &mut seed) {
                RunEnd::Killed => kills += 1,
                RunEnd::Exited(status) => {
                    assert!(status.success(), "a restarted run failed after {kills} kills");
                    break;
                }
            }
        }
        assert_same(&written(&out), &expected, &format!("after {kills} SIGKILLs"));
    }
    println!(
        "S3 checkpoint crash loop: {kills} SIGKILLs, {runs} runs, {rounds} round(s), uninterrupted run {} ms ({} batches), \
         every round equal to the uninterrupted run ({} rows)",
        full_run.as_millis(),
        batches,
        expected.height()
    );
}

#[test]
fn two_queries_on_one_s3_checkpoint() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket(BUCKET);
    let s3 = moto.s3_options();
    let work = tempfile::tempdir().unwrap();
    let input = input(work.path());
    let ref_out = work.path().join("ref-out");
    run_wiki(&input, &ref_out, &work.path().join("ref-ck").display().to_string(), &[]).unwrap();
    let expected = written(&ref_out);

    let out = work.path().join("out");
    let ck = format!("s3://{BUCKET}/two/ck");
    // The first query runs a batch every 300 ms; the second starts on its checkpoint
    // after its second batch, and runs to the end of the input.
    let first = start_wiki(&input, &out, &ck, &s3, Trigger::ProcessingTime(Duration::from_millis(300))).unwrap();
    let waited = Instant::now();
    while first.last_progress().is_none_or(|p| p.batch_id < 1) {
        assert!(waited.elapsed() < Duration::from_secs(60), "the first query made no progress");
        assert!(first.is_active(), "the first query stopped: {:?}", first.exception());
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = start_wiki(&input, &out, &ck, &s3, Trigger::AvailableNow).and_then(|q| {
        q.await_termination()?;
        Ok(q)
    });
    // The older run stops at its next write (the newest claim owns the checkpoint).
    let waited = Instant::now();
    while first.is_active() && waited.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let first_result = if first.is_active() {
        first.stop().unwrap();
        None
    } else {
        first.await_termination().err()
    };
    let failures = [first_result.as_ref().map(ToString::to_string), second.as_ref().err().map(ToString::to_string)];
    println!("two queries on one S3 checkpoint: first {:?}, second {:?}", failures[0], failures[1]);
    assert_eq!(failures.iter().flatten().count(), 1, "exactly one of the two queries fails: {failures:?}");
    let failure = failures.iter().flatten().next().unwrap();
    assert!(
        failure.contains("claimed") || failure.contains("owner") || failure.contains("another run"),
        "the failure says another run owns the checkpoint: {failure}"
    );
    // Whatever the losing query left undone, a run on the checkpoint completes.
    run_wiki(&input, &out, &ck, &s3).unwrap();
    assert_same(&written(&out), &expected, "two queries on one S3 checkpoint");
}

#[test]
fn store_without_conditional_puts_fails_start() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket(BUCKET);
    let mut s3 = moto.s3_options();
    s3.push(("conditionalPut", "disabled".into()));
    let work = tempfile::tempdir().unwrap();
    let input = input(work.path());
    let out = work.path().join("out");
    let ck = format!("s3://{BUCKET}/no-conditional/ck");
    let e = start_wiki(&input, &out, &ck, &s3, Trigger::AvailableNow).and_then(|q| Ok(q.await_termination()?));
    let e = e.expect_err("start() refuses a store without conditional puts").to_string();
    assert!(e.contains("conditional puts") && e.contains(&ck), "the error says why and names the checkpoint: {e}");
    assert_eq!(planned(&ck, &moto.s3_options()), 0, "no batch was planned");
    assert!(!out.join("_sluice_metadata").exists() || sluice::connectors::read_manifest(&out).unwrap().is_empty());
}

#[test]
fn bad_s3_options_fail_start_naming_them() {
    let Some(moto) = Moto::start() else { return };
    let work = tempfile::tempdir().unwrap();
    let input = input(work.path());
    let mut s3 = moto.s3_options();
    s3.push(("endpiont", "http://x".into()));
    let e = start_wiki(&input, &work.path().join("out"), &format!("s3://{BUCKET}/ck"), &s3, Trigger::AvailableNow)
        .map(|_| ())
        .expect_err("an unknown s3 option fails start()")
        .to_string();
    assert!(e.contains("s3.endpiont") && e.contains("s3.endpoint"), "{e}");
}


/// A wiki_edits output in a comparable form: the window flattened, fixed column order,
/// sorted (a partitioned output has its partition column last).
fn normalised(df: DataFrame) -> DataFrame {
    df.lazy()
        .with_columns([
            col("window").struct_().field_by_name("start").alias("window_start"),
            col("window").struct_().field_by_name("end").alias("window_end"),
        ])
        .select([
            col("window_start"),
            col("window_end"),
            col("channel").cast(DataType::String),
            col("edits"),
            col("added"),
            col("deleted"),
            col("robot_edits"),
            col("max_delta"),
        ])
        .sort(["window_start", "channel"], Default::default())
        .collect()
        .unwrap()
}

#[test]
fn partitioned_compressed_output_on_s3_reads_back() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket(BUCKET);
    let s3 = moto.s3_options();
    let store_options = StoreOptions::from_pairs(s3.iter().cloned());
    let work = tempfile::tempdir().unwrap();
    let input = input(work.path());
    let ref_out = work.path().join("ref-out");
    run_wiki(&input, &ref_out, &work.path().join("ref-ck").display().to_string(), &[]).unwrap();
    let expected = normalised(sluice::connectors::read_output(&ref_out).unwrap());
    assert!(expected.height() > 0);

    for (format, codec, ext) in [("parquet", "zstd", ".parquet"), ("json", "gzip", ".json.gz")] {
        let out = format!("s3://{BUCKET}/parts/{format}");
        let session = Session::new();
        let edits = common::json_source(&session, &input, common::wiki_schema()).unwrap();
        let mut w = common::wiki_edits(edits, "10 minutes", "1 minute")
            .unwrap()
            .write_stream()
            .output_mode(OutputMode::Append)
            .format(format)
            .option("path", &out)
            .option("checkpointLocation", format!("s3://{BUCKET}/parts/{format}-ck"))
            .partition_by(["channel"])
            .option("compression", codec)
            .option("maxRecordsPerFile", 3)
            .trigger(Trigger::AvailableNow)
            .progress(ProgressDisplay::Off);
        for (k, v) in &s3 {
            w = w.option(&format!("s3.{k}"), v);
        }
        let q = w.start().unwrap();
        q.await_termination().unwrap();
        assert!(q.warnings().is_empty(), "{format}: {:?}", q.warnings());

        let entries = sluice::connectors::read_manifest_with(&out, &store_options).unwrap();
        let files: Vec<_> = entries.iter().flat_map(|e| e.files.iter()).collect();
        assert!(files.len() > entries.iter().filter(|e| !e.files.is_empty()).count(), "{format}: several files per batch");
        for f in &files {
            assert!(f.path.starts_with("channel=") && f.path.ends_with(ext), "{format}: {}", f.path);
            assert!(f.rows <= 3 && f.rows > 0, "{format}: maxRecordsPerFile: {} rows in {}", f.rows, f.path);
            assert!(f.partitions.is_some(), "{format}: the manifest records the partition columns");
        }
        let got = normalised(sluice::connectors::read_output_with(&out, &store_options).unwrap());
        assert_same(&got, &expected, &format!("{format} ({codec}) partitioned on S3, the sink's reader"));

        let mut r = session.read().format(format);
        for (k, v) in &s3 {
            r = r.option(&format!("s3.{k}"), v);
        }
        let read = r.load(&out).unwrap();
        assert_same(&normalised(read.clone()), &expected, &format!("{format} on S3, the static reader"));

        // The file source streams the same files back, the partition column from the path.
        let mut rs = session.read_stream().format(format).schema(read.schema().clone());
        for (k, v) in &s3 {
            rs = rs.option(&format!("s3.{k}"), v);
        }
        let collected = std::sync::Arc::new(std::sync::Mutex::new(Vec::<DataFrame>::new()));
        let sink = collected.clone();
        let q = rs
            .load(&out)
            .unwrap()
            .write_stream()
            .trigger(Trigger::AvailableNow)
            .progress(ProgressDisplay::Off)
            .foreach_batch(move |df, _| {
                sink.lock().unwrap().push(df.clone());
                Ok(())
            })
            .start()
            .unwrap();
        q.await_termination().unwrap();
        let mut frames = collected.lock().unwrap().clone().into_iter();
        let mut all = frames.next().expect("the file source read batches");
        for f in frames {
            all.vstack_mut(&f).unwrap();
        }
        assert_same(&normalised(all), &expected, &format!("{format} on S3, the file source"));
    }
}
