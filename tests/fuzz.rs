//! Fuzz tests of the engine and connectors (issue 9): seeded byte mutations, bounded in
//! time. Nothing may panic or abort; every error names the file it concerns.
//!
//! * **Input lines** (`input_lines_never_panic_and_errors_name_the_file`): JSON lines and
//!   CSV files mutated at random (bytes flipped, replaced by JSON/CSV syntax, inserted,
//!   deleted, chunks repeated, deep nesting spliced in) and read through the file source's
//!   decoders (`read_static`, the path every micro-batch takes) under each parse mode,
//!   compressed copies (every codec, some damaged), and the same values through
//!   `from_json`. PERMISSIVE keeps one
//!   row per non-blank JSON line; FAILFAST errors name the file and line. A few mutated
//!   directories also go through a streaming query.
//! * **Checkpoint files the engine writes** (`every_byte_of_checkpoint_files_is_checked`):
//!   a real windowed aggregation into a JSON file sink, then every byte of its latest state
//!   snapshot and delta, commit, offset and source-log entries flipped in turn, each
//!   followed by a restart of the query; every byte of a manifest entry flipped, each
//!   followed by reading the output (file source, static reader, `read_output`). Each
//!   must fail naming the file.
//!
//! `SLUICE_FUZZ_SEED` (default fixed) and `SLUICE_FUZZ_MILLIS` (input mutations per
//! format, default 1000 ms) tune it; `--nocapture` prints the counts.

#[path = "../examples/common/mod.rs"]
mod common;
#[path = "support/rng.rs"]
mod rng;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sluice::connectors::{FileSource, ParseMode};
use rng::Rng;
use sluice::prelude::*;

fn seed() -> u64 {
    std::env::var("SLUICE_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_f022)
}

fn budget() -> Duration {
    Duration::from_millis(std::env::var("SLUICE_FUZZ_MILLIS").ok().and_then(|s| s.parse().ok()).unwrap_or(1000))
}

/// Bytes that mean something to a JSON or CSV parser, or to UTF-8.
const INTERESTING: &[u8] = b"{}[]\",:\\\n\r\t 0-+.eENIaftn\x00\xff\xc3\xa9\x80";

/// One to four random mutations of `text`.
fn mutate(rng: &mut Rng, text: &[u8]) -> Vec<u8> {
    let mut b = text.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(b.len() + 1);
        match rng.below(8) {
            0 if at < b.len() => b[at] ^= 1 << rng.below(8),
            1 if at < b.len() => b[at] = INTERESTING[rng.below(INTERESTING.len())],
            2 => b.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
            3 if at < b.len() => {
                b.remove(at);
            }
            4 => {
                let end = (at + rng.below(40)).min(b.len());
                let chunk = b[at..end].to_vec();
                let to = rng.below(b.len() + 1);
                b.splice(to..to, chunk);
            }
            5 => {
                let depth = [10, 999, 1000, 1001, 5000][rng.below(5)];
                let open = if rng.below(2) == 0 { "[" } else { "{\"a\":" };
                b.splice(at..at, open.repeat(depth).into_bytes());
            }
            6 if at < b.len() => b[at] = rng.next() as u8,
            _ => {
                let end = (at + rng.below(20)).min(b.len());
                b.drain(at..end);
            }
        }
    }
    b
}

fn schema() -> Schema {
    common::schema(&[
        ("t", common::ts()),
        ("s", DataType::String),
        ("n", DataType::Int64),
        ("v", DataType::Float64),
        ("b", DataType::Boolean),
    ])
}

const JSON_SEED: &str = r#"{"t": "2024-01-01T00:00:01Z", "s": "plain", "n": 1, "v": 1.5, "b": true}
{"t": "2024-01-01T00:00:02.250+01:00", "s": {"nested": [1, 2.5, "x\"y"]}, "n": -7, "v": NaN, "b": false}
{"t": 1704067200, "s": "é\u00e9\n", "n": 9223372036854775807, "v": -Infinity, "b": null}
{"s": [[[]]], "v": "Infinity", "extra": {"deep": [[[[1]]]]}}

{"t": null, "s": 12.50, "n": null, "v": 1e400, "b": true}
"#;

const CSV_SEED: &str = "2024-01-01T00:00:01Z,plain,1,1.5,true\n\
2024-01-01T00:00:02Z,\"quoted, with comma\",2,NaN,false\n\
,\"with \"\"quotes\"\" and \\\" escape\",,-Infinity,\n\
2024-01-01T00:00:03Z,\"multi\nline\",3,2.5e10,true\n\
2024-01-01T00:00:04Z,extra,4,4.0,true,more,fields\n\
2024-01-01T00:00:05Z,short\n";

fn non_blank_lines(bytes: &[u8]) -> usize {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    bytes.split(|b| *b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)).count()
}

/// `bytes` compressed with the codec of extension `ext`.
fn compress(ext: &str, bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    match ext {
        "gz" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(bytes).unwrap();
            e.finish().unwrap()
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(bytes).unwrap();
            e.finish().unwrap()
        }
        "zst" => zstd::encode_all(bytes, 1).unwrap(),
        "bz2" => {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            e.write_all(bytes).unwrap();
            e.finish().unwrap()
        }
        _ => {
            // Hadoop's Lz4Codec block stream: uncompressed length, compressed length, block.
            let block = lz4_flex::block::compress(bytes);
            let mut out = (bytes.len() as u32).to_be_bytes().to_vec();
            out.extend_from_slice(&(block.len() as u32).to_be_bytes());
            out.extend_from_slice(&block);
            out
        }
    }
}

const CODECS: [&str; 5] = ["gz", "deflate", "zst", "bz2", "lz4"];

/// Reads `file` with the file source's decoders in `mode`, catching panics.
fn read(format: &str, file: &Path, mode: ParseMode) -> std::thread::Result<sluice::Result<DataFrame>> {
    let source = match format {
        "json" => FileSource::json(file),
        _ => FileSource::csv(file),
    };
    let source = source.schema(schema()).mode(mode);
    let source = if mode == ParseMode::Permissive { source.column_name_of_corrupt_record("_corrupt") } else { source };
    catch_unwind(AssertUnwindSafe(|| source.read_static()))
}

/// Runs the mutation loop for one format; returns (mutations, reads, errors).
fn fuzz_format(format: &str, seed_text: &str, dir: &Path, rng: &mut Rng, kept: &mut Vec<Vec<u8>>) -> (usize, usize, usize) {
    let file = dir.join(format!("input.{format}"));
    let name = file.file_name().unwrap().to_str().unwrap().to_string();
    let (mut mutations, mut reads, mut errors) = (0, 0, 0);
    let started = Instant::now();
    while started.elapsed() < budget() {
        mutations += 1;
        let bytes = mutate(rng, seed_text.as_bytes());
        std::fs::write(&file, &bytes).unwrap();
        for mode in [ParseMode::Permissive, ParseMode::DropMalformed, ParseMode::FailFast] {
            reads += 1;
            let result = read(format, &file, mode)
                .unwrap_or_else(|_| panic!("{format} {mode:?} panicked on {:?}", String::from_utf8_lossy(&bytes)));
            match result {
                Ok(df) => {
                    if format == "json" && mode == ParseMode::Permissive {
                        assert_eq!(df.height(), non_blank_lines(&bytes), "one row per line: {:?}", String::from_utf8_lossy(&bytes));
                    }
                }
                Err(e) => {
                    errors += 1;
                    let text = e.to_string();
                    assert!(text.contains(&name), "{format} {mode:?}: the error does not name the file: {text}");
                    if mode != ParseMode::FailFast {
                        // Only invalid UTF-8 a String column cannot hold may fail the read.
                        assert!(!matches!(e, sluice::SluiceError::MalformedRecord { .. }), "{text}");
                    }
                }
            }
        }
        // The same bytes compressed with each codec in turn, and the compressed bytes
        // damaged (every other time).
        if mutations % 4 == 0 {
            let ext = CODECS[(mutations / 4) % CODECS.len()];
            let mut compressed = compress(ext, &bytes);
            if mutations % 8 == 0 {
                let at = rng.below(compressed.len());
                compressed[at] ^= 1 << rng.below(8);
            }
            let path = dir.join(format!("{name}.{ext}"));
            std::fs::write(&path, &compressed).unwrap();
            reads += 1;
            let result = read(format, &path, ParseMode::DropMalformed).expect("no panic on compressed input");
            if let Err(e) = result {
                errors += 1;
                assert!(e.to_string().contains(&format!("{name}.{ext}")), "{e}");
            }
            std::fs::remove_file(&path).unwrap();
        }
        if kept.len() < 40 && mutations % 25 == 0 {
            kept.push(bytes);
        }
    }
    std::fs::remove_file(&file).unwrap();
    (mutations, reads, errors)
}

#[test]
fn input_lines_never_panic_and_errors_name_the_file() {
    let work = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed());
    let mut report = Vec::new();
    for (format, seed_text) in [("json", JSON_SEED), ("csv", CSV_SEED)] {
        let mut kept = Vec::new();
        let started = Instant::now();
        let (mutations, reads, errors) = fuzz_format(format, seed_text, work.path(), &mut rng, &mut kept);
        // Streaming queries over a directory of kept mutations, each parse mode.
        let dir = work.path().join(format!("stream-{format}"));
        std::fs::create_dir_all(&dir).unwrap();
        for (i, b) in kept.iter().enumerate() {
            std::fs::write(dir.join(format!("part-{i:05}.{format}")), b).unwrap();
        }
        let mut streamed = 0;
        for mode in ["PERMISSIVE", "DROPMALFORMED", "FAILFAST"] {
            let ck = work.path().join(format!("ck-{format}-{mode}"));
            let session = Session::new();
            let result = catch_unwind(AssertUnwindSafe(|| -> sluice::Result<()> {
                let q = session
                    .read_stream()
                    .format(format)
                    .schema(schema())
                    .option("mode", mode)
                    .load(&dir)?
                    .write_stream()
                    .checkpoint_location(&ck)
                    .trigger(Trigger::AvailableNow)
                    .progress(ProgressDisplay::Off)
                    .foreach_batch(|_, _| Ok(()))
                    .start()?;
                q.await_termination()
            }))
            .unwrap_or_else(|_| panic!("a {format} stream panicked in {mode} mode"));
            if let Err(e) = result {
                assert!(e.to_string().contains("part-"), "{format} {mode}: {e}");
            }
            streamed += 1;
        }
        report.push(format!(
            "  {format}: {mutations} mutated files, {reads} reads ({errors} errors, each naming its file), {streamed} streams over {} of them, {:.1} s",
            kept.len(),
            started.elapsed().as_secs_f64()
        ));
    }

    // from_json over mutated values (Kafka's binary values), all in one column.
    let started = Instant::now();
    let mut values: Vec<String> = Vec::new();
    while started.elapsed() < budget() / 3 && values.len() < 20_000 {
        let line = JSON_SEED.lines().nth(rng.below(4)).unwrap();
        values.push(String::from_utf8_lossy(&mutate(&mut rng, line.as_bytes())).into_owned());
    }
    let n = values.len();
    let column = Series::new("value".into(), values);
    let out = catch_unwind(AssertUnwindSafe(|| {
        DataFrame::new(n, vec![column.into()])
            .unwrap()
            .lazy()
            .select([sluice::connectors::from_json(col("value"), &schema()).unwrap().alias("v")])
            .collect()
    }))
    .expect("from_json panicked")
    .unwrap();
    assert_eq!(out.height(), n);
    report.push(format!("  from_json: {n} mutated values in one column, {:.1} s", started.elapsed().as_secs_f64()));
    eprintln!("input fuzz (seed {:#x}):\n{}", seed(), report.join("\n"));
}

// ---------------------------------------------------------------------------------------
// Checkpoint files

/// Sensor readings: `files` files of 4 rows each, minutes apart, so windows close.
fn sensor_input(dir: &Path, files: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut paths = Vec::new();
    for f in 0..files {
        let text: String = (0..4)
            .map(|i| {
                let minute = f * 4 + i;
                format!(
                    "{{\"sensor\": \"s{}\", \"ts\": \"2024-01-01T{:02}:{:02}:00Z\", \"v\": {}.5}}\n",
                    i % 2,
                    minute / 60,
                    minute % 60,
                    minute
                )
            })
            .collect();
        let p = dir.join(format!("part-{f:05}.json"));
        std::fs::write(&p, text).unwrap();
        paths.push(p);
    }
    common::set_mtimes_in_order(&paths).unwrap();
}

/// The windowed aggregation over `input` into a JSON file sink; one state partition.
fn run_job(input: &Path, out: &Path, ck: &Path) -> sluice::Result<()> {
    let session = Session::new();
    session.set_conf("sluice.state.partitions", "1");
    let src = common::json_source(&session, input, common::sensor_schema()).map_err(|e| sluice::SluiceError::User(e.to_string()))?;
    let q = common::windowed_agg(src, "10 minutes", None, Some("5 minutes"))
        .map_err(|e| sluice::SluiceError::User(e.to_string()))?
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

/// The file with the largest numeric stem in `dir` ending in `suffix`.
fn latest(dir: &Path, suffix: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name()?.to_str()?.to_string();
            let n = name.strip_suffix(suffix)?.parse::<u64>().ok()?;
            Some((n, p))
        })
        .max()
        .unwrap()
        .1
}

/// The engine's state store over the checkpoint's store 0, its schema taken from the
/// intact `snapshot` (keys first: the window and the sensor).
fn state_store(snapshot: &Path) -> sluice::engine::state::StateStore {
    let sealed = std::fs::read(snapshot).unwrap();
    let ipc = sluice::engine::checkpoint::checksum::open(&sealed).unwrap().to_vec();
    let reader = arrow::ipc::reader::FileReader::try_new(std::io::Cursor::new(ipc), None).unwrap();
    let batch = reader.into_iter().next().unwrap().unwrap();
    let df = sluice::engine::interop::record_batch_to_df(&batch).unwrap();
    sluice::engine::state::StateStore {
        store_id: 0,
        partitions: 1,
        key_columns: df.get_column_names().iter().take(2).map(|n| n.to_string()).collect(),
        schema: std::sync::Arc::new(df.schema().as_ref().clone()),
        snapshot_interval: sluice::engine::state::DEFAULT_SNAPSHOT_INTERVAL,
    }
}

#[test]
fn every_byte_of_checkpoint_files_is_checked() {
    let work = tempfile::tempdir().unwrap();
    let (input, out, ck) = (work.path().join("in"), work.path().join("out"), work.path().join("ck"));
    sensor_input(&input, 12);
    run_job(&input, &out, &ck).unwrap();
    let expected = sluice::connectors::read_output(&out).unwrap();
    assert!(expected.height() > 5);
    let state = ck.join("state/0/0");
    let (snapshot, delta) = (latest(&state, ".snapshot"), latest(&state, ".delta"));
    let version: u64 = delta.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    let store = state_store(&snapshot);
    let checkpoint = sluice::engine::checkpoint::Checkpoint::local(&ck).unwrap();
    assert!(store.load(&checkpoint, version).unwrap().height() > 0, "the intact state loads");
    // The largest manifest entry (one listing a file).
    let manifest = (0..sluice::connectors::read_manifest(&out).unwrap().len() as u64)
        .map(|n| sluice::connectors::manifest_entry_path(&out, n))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();

    /// How a damaged file is read back.
    #[derive(Clone, Copy, PartialEq)]
    enum Check {
        /// A restart of the query, for every byte.
        Restart,
        /// The engine's state loader for every byte, a restart for some.
        StateLoad,
        /// The readers of the sink's output.
        Readers,
    }
    let targets = [
        (snapshot.clone(), Check::StateLoad),
        (delta.clone(), Check::StateLoad),
        (latest(&ck.join("commits"), ""), Check::Restart),
        (latest(&ck.join("offsets"), ""), Check::Restart),
        (latest(&ck.join("sources/0"), ""), Check::Restart),
        (manifest.clone(), Check::Readers),
    ];
    let mut rng = Rng(seed());
    let mut report = Vec::new();
    let started = Instant::now();
    let (mut total_flips, mut total_restarts) = (0, 0);
    for (target, check) in &targets {
        let original = std::fs::read(target).unwrap();
        let rel = target.strip_prefix(work.path()).unwrap().to_str().unwrap().trim_start_matches("ck/").to_string();
        let t = Instant::now();
        let mut restarts = 0;
        for i in 0..original.len() {
            let mut bytes = original.clone();
            bytes[i] ^= (rng.next() % 255) as u8 + 1;
            std::fs::write(target, &bytes).unwrap();
            let restart = *check == Check::Restart || (*check == Check::StateLoad && rng.below(original.len() / 16) == 0);
            let mut errors: Vec<String> = Vec::new();
            match check {
                Check::Readers => {
                    for r in [
                        sluice::connectors::read_output(&out).map(|_| ()),
                        FileSource::json(&out).schema(common::sensor_schema()).read_static().map(|_| ()),
                    ] {
                        errors.push(r.expect_err("a damaged manifest entry is read as valid").to_string());
                    }
                }
                Check::StateLoad => {
                    let r = catch_unwind(AssertUnwindSafe(|| store.load(&checkpoint, version)))
                        .unwrap_or_else(|_| panic!("the state loader panicked with byte {i} of {rel} changed"));
                    errors.push(r.expect_err("a damaged state file is loaded as valid").to_string());
                }
                Check::Restart => {}
            }
            if restart {
                restarts += 1;
                let r = catch_unwind(AssertUnwindSafe(|| run_job(&input, &out, &ck)))
                    .unwrap_or_else(|_| panic!("restart panicked with byte {i} of {rel} changed"));
                errors.push(r.expect_err("a damaged checkpoint file is read as valid").to_string());
            }
            for e in errors {
                assert!(e.contains(&rel), "byte {i} of {rel}: the error does not name the file: {e}");
            }
        }
        std::fs::write(target, &original).unwrap();
        total_flips += original.len();
        total_restarts += restarts;
        let how = match check {
            Check::Restart => "a restart each".to_string(),
            Check::StateLoad => format!("the state loader each, {restarts} restarts"),
            Check::Readers => "read_output and the file source each".to_string(),
        };
        report.push(format!("  {rel}: {} bytes flipped ({how}), {:.1} s", original.len(), t.elapsed().as_secs_f64()));
    }
    // Intact again: the query goes on, its output unchanged.
    run_job(&input, &out, &ck).unwrap();
    assert!(sluice::connectors::read_output(&out).unwrap().equals_missing(&expected));
    eprintln!(
        "checkpoint fuzz: {total_flips} single-byte changes, {total_restarts} restarts, each an error naming the file ({:.1} s):\n{}",
        started.elapsed().as_secs_f64(),
        report.join("\n")
    );
}
