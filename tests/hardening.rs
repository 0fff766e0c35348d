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

// ---------------------------------------------------------------------------------------
// Item 1: a poison pill nested 30,000 deep; item 8: JSON values as Spark reads them

/// `{"id": 1, "s": {"a":{"a":...1...}}}`, 30,000 objects deep: a 180 KB line.
fn deep_line(id: usize) -> String {
    format!("{{\"id\": {id}, \"s\": {}1{}}}", "{\"a\":".repeat(30_000), "}".repeat(30_000))
}

/// A stream over `input` with `options`, run AvailableNow into a memory table; the rows.
fn read_stream_rows(format: &str, input: &Path, schema: Schema, options: &[(&str, &str)]) -> sluice::Result<DataFrame> {
    let session = Session::new();
    let mut reader = session.read_stream().format(format).schema(schema);
    for (k, v) in options {
        reader = reader.option(k, *v);
    }
    let table = sluice::connectors::MemoryTable::new();
    let ck = tempfile::tempdir().unwrap();
    let q = reader
        .load(input)?
        .write_stream()
        .output_mode(OutputMode::Append)
        .checkpoint_location(ck.path())
        .trigger(Trigger::AvailableNow)
        .progress(ProgressDisplay::Off)
        .sink(Box::new(table.sink()))
        .start()?;
    q.await_termination()?;
    let frames: Vec<DataFrame> = table.batches().into_iter().map(|(_, df)| df).filter(|df| df.width() > 0).collect();
    let mut all = frames.first().cloned().unwrap_or_default();
    for f in &frames[1..] {
        all.vstack_mut(f).unwrap();
    }
    Ok(all)
}

fn strings(df: &DataFrame, column: &str) -> Vec<Option<String>> {
    df.column(column).unwrap().str().unwrap().iter().map(|v| v.map(str::to_string)).collect()
}

fn longs(df: &DataFrame, column: &str) -> Vec<Option<i64>> {
    df.column(column).unwrap().i64().unwrap().iter().collect()
}

#[test]
fn a_json_record_nested_30000_deep_is_malformed_not_a_stack_overflow() {
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("in");
    let text = format!("{{\"id\": 0, \"s\": \"a\"}}\n{}\n{{\"id\": 2, \"s\": \"b\"}}\n", deep_line(1));
    assert!(text.len() > 180_000);
    write_files(&input, &[("part-00000.json", text.clone().into())]);
    let corrupt = [("mode", "PERMISSIVE"), ("columnNameOfCorruptRecord", "_corrupt")];

    // The stream, under each parse mode.
    let rows = read_stream_rows("json", &input, id_schema(), &corrupt).unwrap();
    assert_eq!(longs(&rows, "id"), [Some(0), None, Some(2)], "PERMISSIVE: the deep record is all null");
    assert_eq!(strings(&rows, "s"), [Some("a".into()), None, Some("b".into())]);
    assert_eq!(strings(&rows, "_corrupt"), [None, Some(deep_line(1)), None]);
    let rows = read_stream_rows("json", &input, id_schema(), &[("mode", "DROPMALFORMED")]).unwrap();
    assert_eq!(longs(&rows, "id"), [Some(0), Some(2)], "DROPMALFORMED: dropped");
    let err = read_stream_rows("json", &input, id_schema(), &[("mode", "FAILFAST")]).unwrap_err().to_string();
    assert!(err.contains("part-00000.json at line 2") && err.contains("deeper than 1000"), "{err}");

    // The static reader.
    let static_read = |mode: ParseMode| FileSource::json(&input).schema(id_schema()).mode(mode).read_static();
    assert_eq!(longs(&static_read(ParseMode::Permissive).unwrap(), "id"), [Some(0), None, Some(2)]);
    assert_eq!(longs(&static_read(ParseMode::DropMalformed).unwrap(), "id"), [Some(0), Some(2)]);
    let err = static_read(ParseMode::FailFast).unwrap_err().to_string();
    assert!(err.contains("part-00000.json at line 2"), "{err}");

    // from_json (Kafka values): the deep value is a struct of nulls.
    let values = Series::new("value".into(), [r#"{"id": 0, "s": "a"}"#.to_string(), deep_line(1)]);
    let out = DataFrame::new(2, vec![values.into()])
        .unwrap()
        .lazy()
        .select([sluice::connectors::from_json(col("value"), &id_schema()).unwrap().alias("v")])
        .select([col("v").struct_().field_by_name("id"), col("v").struct_().field_by_name("s")])
        .collect()
        .unwrap();
    assert_eq!(longs(&out, "id"), [Some(0), None]);
    assert_eq!(strings(&out, "s"), [Some("a".into()), None]);
}

/// What Spark 3.5.9 gives for the same lines: `tests/oracle/extra/json_values`.
#[test]
fn json_values_are_read_as_spark_reads_them() {
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("in");
    let lines = [
        r#"{"id": 1, "s": {"a": 1, "b": [true, null, "x\"y"], "c": {"d": 1.50}}}"#,
        r#"{"id": 2, "s": [1, 2.0, 1e3, "é\n"]}"#,
        r#"{"id": 3, "s": "plain"}"#,
        r#"{"id": 4, "s": 12.50}"#,
        r#"{"id": 5, "s": true}"#,
        r#"{"id": 6, "s": { "a" :  [ ] }}"#,
        r#"{"id": 7, "s": NaN}"#,
        r#"{"id": 8, "s": -Infinity}"#,
        r#"{"id": NaN, "s": "partial"}"#,
    ];
    write_files(&input, &[("part-00000.json", lines.join("\n").into())]);
    let corrupt = [("columnNameOfCorruptRecord", "_corrupt")];
    let rows = read_stream_rows("json", &input, id_schema(), &corrupt).unwrap();
    assert_eq!(
        strings(&rows, "s"),
        [
            r#"{"a":1,"b":[true,null,"x\"y"],"c":{"d":1.5}}"#,
            r#"[1,2.0,1000.0,"é\n"]"#,
            "plain",
            "12.5",
            "true",
            r#"{"a":[]}"#,
            r#""NaN""#,
            r#""-Infinity""#,
            "partial",
        ]
        .map(|s| Some(s.to_string()))
    );
    assert_eq!(longs(&rows, "id"), [Some(1), Some(2), Some(3), Some(4), Some(5), Some(6), Some(7), Some(8), None]);
    let corrupt_col = strings(&rows, "_corrupt");
    assert_eq!(corrupt_col[8].as_deref(), Some(lines[8]), "the raw line, as read");
    assert!(corrupt_col[..8].iter().all(Option::is_none), "{corrupt_col:?}");

    let doubles = common::schema(&[("id", DataType::Int64), ("v", DataType::Float64)]);
    let input2 = work.path().join("in2");
    let numbers = [
        "NaN", "Infinity", "-Infinity", "+INF", "-INF", "+Infinity", "INF", "1e400", "-1e400", "1e-400", r#""NaN""#,
        r#""Infinity""#, r#""-INF""#, "nan", r#""+INF""#, r#""INF""#,
    ];
    let text: String = numbers.iter().enumerate().map(|(i, v)| format!("{{\"id\": {}, \"v\": {v}}}\n", i + 1)).collect();
    write_files(&input2, &[("part-00000.json", text.into())]);
    let rows = read_stream_rows("json", &input2, doubles.clone(), &corrupt).unwrap();
    let v: Vec<String> = rows.column("v").unwrap().f64().unwrap().iter().map(|v| format!("{v:?}")).collect();
    let (inf, ninf, nan) = ("Some(inf)", "Some(-inf)", "Some(NaN)");
    assert_eq!(
        v,
        [nan, inf, ninf, inf, ninf, inf, "None", inf, ninf, "Some(0.0)", nan, inf, ninf, "None", inf, "None"],
        "Spark: bare INF and nan are malformed records, the string \"INF\" a null field"
    );
    let ids = longs(&rows, "id");
    assert_eq!((ids[6], ids[13], ids[15]), (None, None, Some(16)), "{ids:?}");
    let dropped = read_stream_rows("json", &input2, doubles, &[("mode", "DROPMALFORMED")]).unwrap();
    assert_eq!(dropped.height(), 13);
}

#[test]
fn non_finite_floats_are_written_as_spark_writes_them() {
    let work = tempfile::tempdir().unwrap();
    let (input, out, ck) = (work.path().join("in"), work.path().join("out"), work.path().join("ck"));
    let text = "{\"id\": 1, \"v\": NaN}\n{\"id\": 2, \"v\": 1e400}\n{\"id\": 3, \"v\": -Infinity}\n{\"id\": 4}\n";
    write_files(&input, &[("part-00000.json", text.into())]);
    let schema = common::schema(&[("id", DataType::Int64), ("v", DataType::Float64)]);
    let session = Session::new();
    let q = session
        .read_stream()
        .format("json")
        .schema(schema)
        .load(&input)
        .unwrap()
        .write_stream()
        .format("json")
        .option("path", out.display().to_string())
        .checkpoint_location(&ck)
        .trigger(Trigger::AvailableNow)
        .progress(ProgressDisplay::Off)
        .start()
        .unwrap();
    q.await_termination().unwrap();
    let entry = &sluice::connectors::read_manifest(&out).unwrap()[0];
    let written = std::fs::read_to_string(out.join(&entry.files[0].path)).unwrap();
    assert_eq!(
        written.lines().collect::<Vec<_>>(),
        [r#"{"id":1,"v":"NaN"}"#, r#"{"id":2,"v":"Infinity"}"#, r#"{"id":3,"v":"-Infinity"}"#, r#"{"id":4}"#],
        "Spark's write.json spelling"
    );
    let back = sluice::connectors::read_output(&out).unwrap();
    let v: Vec<String> = back.column("v").unwrap().f64().unwrap().iter().map(|v| format!("{v:?}")).collect();
    assert_eq!(v, ["Some(NaN)", "Some(inf)", "Some(-inf)", "None"]);

    let json = back
        .lazy()
        .select([sluice::connectors::to_json(as_struct(vec![col("id"), col("v")])).alias("j")])
        .collect()
        .unwrap();
    assert_eq!(
        strings(&json, "j"),
        [r#"{"id":1,"v":"NaN"}"#, r#"{"id":2,"v":"Infinity"}"#, r#"{"id":3,"v":"-Infinity"}"#, r#"{"id":4}"#]
            .map(|s| Some(s.to_string())),
        "Spark's to_json spelling"
    );
}

// ---------------------------------------------------------------------------------------
// Item 6: compressed input

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn compressed_files_are_decompressed_by_extension_and_never_read_as_text() {
    use std::io::Write;
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("in");
    let bz2 = {
        let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        e.write_all(id_lines(6, 8).as_bytes()).unwrap();
        e.finish().unwrap()
    };
    let deflate = {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(id_lines(8, 10).as_bytes()).unwrap();
        e.finish().unwrap()
    };
    let lz4 = {
        let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
        e.write_all(id_lines(10, 12).as_bytes()).unwrap();
        e.finish().unwrap()
    };
    write_files(
        &input,
        &[
            ("part-00000.json", id_lines(0, 2).into()),
            ("part-00001.json.gz", gzip(id_lines(2, 4).as_bytes())),
            ("part-00002.json.zst", zstd::encode_all(id_lines(4, 6).as_bytes(), 3).unwrap()),
            ("part-00003.json.bz2", bz2),
            ("part-00004.json.deflate", deflate),
            ("part-00005.json.lz4", lz4),
        ],
    );
    for mode in ["PERMISSIVE", "FAILFAST"] {
        let rows = read_stream_rows("json", &input, id_schema(), &[("mode", mode)]).unwrap();
        assert_eq!(longs(&rows, "id"), (0..12).map(Some).collect::<Vec<_>>(), "{mode}: every row of every file");
    }
    let rows = FileSource::json(&input).schema(id_schema()).read_static().unwrap();
    assert_eq!(rows.height(), 12, "the static reader too");

    // CSV too.
    let csv_dir = work.path().join("csv");
    write_files(&csv_dir, &[("channels.csv.gz", gzip(b"channel,language,project\n#en.wikipedia,en,wikipedia\n"))]);
    let channels = common::read_channels(&csv_dir).unwrap();
    assert_eq!(strings(&channels, "language"), [Some("en".to_string())]);

    // A gzip file without its extension, a truncated one, an unsupported codec: errors
    // naming the file, in every parse mode; never rows of garbage.
    for (name, bytes) in [
        ("part-00003.json", gzip(id_lines(0, 2).as_bytes())),
        ("part-00003.json.gz", gzip(id_lines(0, 2).as_bytes())[..20].to_vec()),
        ("part-00003.json.snappy", b"\xff\x06\x00\x00sNaPpY".to_vec()),
    ] {
        let dir = work.path().join(format!("bad-{name}"));
        write_files(&dir, &[(name, bytes)]);
        for mode in ["PERMISSIVE", "DROPMALFORMED"] {
            let err = read_stream_rows("json", &dir, id_schema(), &[("mode", mode)]).unwrap_err().to_string();
            assert!(err.contains(name), "{name} {mode}: {err}");
        }
        let err = FileSource::json(&dir).schema(id_schema()).read_static().unwrap_err().to_string();
        assert!(err.contains(name), "{name} static: {err}");
    }
}

// ---------------------------------------------------------------------------------------
// Item 7: CSV rows with more or fewer fields than the schema

#[test]
fn csv_rows_with_extra_or_missing_fields_follow_sparks_parse_modes() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("channels");
    let text = "channel,language,project\n#en.wikipedia,en,wikipedia,extra1,extra2\n#de.wikipedia,de\n#fr.wikipedia,fr,wikipedia\n";
    write_files(&dir, &[("channels.csv", text.into())]);
    let read = |mode: ParseMode| {
        FileSource::csv(&dir)
            .schema(common::channels_schema())
            .header(true)
            .mode(mode)
            .column_name_of_corrupt_record("_corrupt")
            .read_static()
    };
    // As Spark 3.5.9 (tests/oracle/extra/json_values/spark_output.txt).
    let rows = read(ParseMode::Permissive).unwrap();
    assert_eq!(strings(&rows, "channel"), ["#en.wikipedia", "#de.wikipedia", "#fr.wikipedia"].map(|s| Some(s.to_string())));
    assert_eq!(strings(&rows, "language"), ["en", "de", "fr"].map(|s| Some(s.to_string())));
    assert_eq!(strings(&rows, "project"), [Some("wikipedia".to_string()), None, Some("wikipedia".to_string())]);
    assert_eq!(
        strings(&rows, "_corrupt"),
        [Some("#en.wikipedia,en,wikipedia,extra1,extra2".to_string()), Some("#de.wikipedia,de".to_string()), None]
    );
    assert_eq!(strings(&read(ParseMode::DropMalformed).unwrap(), "channel"), [Some("#fr.wikipedia".to_string())]);
    let err = read(ParseMode::FailFast).unwrap_err().to_string();
    assert!(err.contains("channels.csv at line 2") && err.contains("more fields"), "{err}");

    // The stream reads the same rows.
    let opts = [("header", "true"), ("columnNameOfCorruptRecord", "_corrupt")];
    let rows = read_stream_rows("csv", &dir, common::channels_schema(), &opts).unwrap();
    assert_eq!(strings(&rows, "language"), ["en", "de", "fr"].map(|s| Some(s.to_string())));
    let opts = [("header", "true"), ("mode", "FAILFAST")];
    let err = read_stream_rows("csv", &dir, common::channels_schema(), &opts).unwrap_err().to_string();
    assert!(err.contains("channels.csv at line 2"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Item 4: a deleted or damaged manifest entry

#[test]
fn a_deleted_or_damaged_manifest_entry_fails_the_sink_and_every_reader() {
    let work = tempfile::tempdir().unwrap();
    let (input, out, ck) = (work.path().join("in"), work.path().join("out"), work.path().join("ck"));
    let files: Vec<(String, Vec<u8>)> =
        (0..4).map(|i| (format!("part-{i:05}.json"), id_lines(i * 5, i * 5 + 5).into_bytes())).collect();
    let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    write_files(&input, &refs);
    copy_job(&input, &out, &ck, &[]).unwrap();
    assert_eq!(output_ids(&out), (0..20).collect::<Vec<_>>());
    let entry = |n: u64| sluice::connectors::manifest_entry_path(&out, n);
    let readers = |out: &Path| -> Vec<(&'static str, String)> {
        let stream = read_stream_rows("json", out, id_schema(), &[]).map(|_| ()).unwrap_err().to_string();
        let static_read = FileSource::json(out).schema(id_schema()).read_static().map(|_| ()).unwrap_err().to_string();
        let output = sluice::connectors::read_output(out).map(|_| ()).unwrap_err().to_string();
        vec![("file source", stream), ("static reader", static_read), ("read_output", output)]
    };

    // Deleted: the sink at restart and every reader name the missing entry.
    let saved = std::fs::read(entry(1)).unwrap();
    std::fs::remove_file(entry(1)).unwrap();
    write_files(&input, &[("part-00004.json", id_lines(20, 25).into())]);
    let err = copy_job(&input, &out, &ck, &[]).unwrap_err().to_string();
    assert!(err.contains("_sluice_metadata/1") && err.contains("missing"), "sink at restart: {err}");
    for (who, err) in readers(&out) {
        assert!(err.contains("_sluice_metadata/1") && err.contains("missing"), "{who}: {err}");
    }

    // One flipped byte: Corrupt, naming the entry.
    let mut flipped = saved.clone();
    flipped[5] ^= 0x01;
    std::fs::write(entry(1), &flipped).unwrap();
    for (who, err) in readers(&out) {
        assert!(err.contains("_sluice_metadata/1") && err.contains("checksum"), "{who}: {err}");
    }

    // Restored: the restart goes on, nothing lost or repeated.
    std::fs::write(entry(1), &saved).unwrap();
    copy_job(&input, &out, &ck, &[]).unwrap();
    assert_eq!(output_ids(&out), (0..25).collect::<Vec<_>>());
}
