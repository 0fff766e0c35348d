//! The file source through the `Source` trait, as the trigger loop drives it: offsets,
//! the source log across restarts, AvailableNow, parse modes, CSV and Parquet.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use arrow::array::{Int32Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{
    DataType as ArrowDataType, Field as ArrowField, Schema as ArrowSchema, TimeUnit as ArrowTimeUnit,
};
use arrow::record_batch::RecordBatch;
use polars::prelude::{DataFrame, DataType, Field, Schema, TimeUnit};
use serde_json::{Value, json};
use sluice_checkpoint::{Checkpoint, CheckpointError};
use sluice_engine::{SluiceError, Source, SourceContext, SourceFormat};
use sluice_connectors::{FileSource, FileSourceFormat, ParseMode};

const T0: u64 = 1_700_000_000;

/// Writes `name` in `dir` with modification time `T0 + secs`.
fn write(dir: &Path, name: &str, text: &str, secs: u64) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let f = std::fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(UNIX_EPOCH + Duration::from_secs(T0 + secs)).unwrap();
    path
}

fn ctx(ck: &Checkpoint) -> SourceContext<'_> {
    SourceContext { checkpoint: ck, index: 0 }
}

fn off(k: u64) -> Value {
    json!({ "logOffset": k })
}

fn events_schema() -> Schema {
    Schema::from_iter([
        Field::new("sensor".into(), DataType::String),
        Field::new("ts".into(), DataType::Datetime(TimeUnit::Microseconds, None)),
        Field::new("v".into(), DataType::Float64),
    ])
}

fn line(sensor: &str) -> String {
    format!("{{\"sensor\": \"{sensor}\", \"ts\": \"2024-01-01T00:01:00Z\", \"v\": 1.0}}\n")
}

fn json_source(dir: &Path, max_files: Option<usize>) -> Box<dyn Source> {
    let mut b = FileSource::json(dir).schema(events_schema());
    if let Some(n) = max_files {
        b = b.max_files_per_trigger(n);
    }
    b.build().unwrap().create().unwrap()
}

fn strings(df: &DataFrame, col: &str) -> Vec<Option<String>> {
    let s = df.column(col).unwrap().as_materialized_series().clone();
    let ca = s.str().unwrap();
    (0..ca.len()).map(|i| ca.get(i).map(str::to_string)).collect()
}

fn floats(df: &DataFrame, col: &str) -> Vec<Option<f64>> {
    let s = df.column(col).unwrap().as_materialized_series().clone();
    let ca = s.f64().unwrap();
    (0..ca.len()).map(|i| ca.get(i)).collect()
}

fn ints(df: &DataFrame, col: &str) -> Vec<Option<i64>> {
    let s = df.column(col).unwrap().as_materialized_series().cast(&DataType::Int64).unwrap();
    let ca = s.i64().unwrap();
    (0..ca.len()).map(|i| ca.get(i)).collect()
}

/// The file names logged in source-log entry `id`.
fn logged_names(ck: &Checkpoint, id: u64) -> Vec<String> {
    let entry = ck.log::<Value>("sources/0").require(id).unwrap();
    entry["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| Path::new(f["path"].as_str().unwrap()).file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn offsets_advance_per_max_files_in_mtime_then_path_order() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.json", &line("a"), 30);
    write(dir.path(), "c.json", &line("c"), 10);
    write(dir.path(), "b.json", &line("b"), 10);
    write(dir.path(), ".hidden.json", &line("hidden"), 1);
    write(dir.path(), "_temporary.json", &line("temporary"), 1);
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    write(&dir.path().join("sub"), "nested.json", &line("nested"), 1);
    let ck = Checkpoint::in_memory().unwrap();
    let mut src = json_source(dir.path(), Some(1));
    src.initialize(ctx(&ck)).unwrap();

    let mut start: Option<Value> = None;
    let mut seen = Vec::new();
    for expected in 1..=3 {
        let end = src.latest_offset(ctx(&ck), start.as_ref(), false).unwrap().unwrap();
        assert_eq!(end, off(expected));
        let df = src.get_batch(ctx(&ck), start.as_ref(), &end).unwrap();
        assert_eq!(df.height(), 1);
        seen.extend(strings(&df, "sensor").into_iter().flatten());
        src.commit(ctx(&ck), &end).unwrap();
        start = Some(end);
    }
    assert_eq!(seen, ["b", "c", "a"], "(mtime, path) order; hidden, _ and sub-folders skipped");
    assert_eq!(logged_names(&ck, 2), ["c.json"]);
    // Nothing new: the same offset back.
    assert_eq!(src.latest_offset(ctx(&ck), start.as_ref(), false).unwrap(), start);
    assert_eq!(src.backlog(), Some(0));
}

#[test]
fn no_files_means_no_offset_and_all_available_ignores_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let ck = Checkpoint::in_memory().unwrap();
    let mut src = json_source(dir.path(), Some(1));
    src.initialize(ctx(&ck)).unwrap();
    assert_eq!(src.latest_offset(ctx(&ck), None, false).unwrap(), None);
    for (i, name) in ["x.json", "y.json", "z.json"].into_iter().enumerate() {
        write(dir.path(), name, &line(name), i as u64);
    }
    let end = src.latest_offset(ctx(&ck), None, true).unwrap().unwrap();
    assert_eq!(end, off(1));
    assert_eq!(logged_names(&ck, 1), ["x.json", "y.json", "z.json"]);
    let df = src.get_batch(ctx(&ck), None, &end).unwrap();
    assert_eq!(strings(&df, "sensor"), [Some("x.json".into()), Some("y.json".into()), Some("z.json".into())]);
}

#[test]
fn restart_neither_skips_nor_repeats_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let ckdir = tempfile::tempdir().unwrap();
    for (i, name) in ["f1.json", "f2.json", "f3.json"].into_iter().enumerate() {
        write(dir.path(), name, &line(name), i as u64);
    }
    let mut taken = Vec::new();
    let start;
    {
        let ck = Checkpoint::local(ckdir.path()).unwrap();
        let mut src = json_source(dir.path(), Some(2));
        src.initialize(ctx(&ck)).unwrap();
        let end = src.latest_offset(ctx(&ck), None, false).unwrap().unwrap();
        taken.extend(strings(&src.get_batch(ctx(&ck), None, &end).unwrap(), "sensor").into_iter().flatten());
        src.commit(ctx(&ck), &end).unwrap();
        start = end;
    }
    // A file arrives while the query is down, with an older modification time.
    write(dir.path(), "f0.json", &line("f0.json"), 0);
    let ck = Checkpoint::local(ckdir.path()).unwrap();
    let mut src = json_source(dir.path(), Some(2));
    src.initialize(ctx(&ck)).unwrap();
    let end = src.latest_offset(ctx(&ck), Some(&start), false).unwrap().unwrap();
    assert_eq!(end, off(2));
    taken.extend(strings(&src.get_batch(ctx(&ck), Some(&start), &end).unwrap(), "sensor").into_iter().flatten());
    assert_eq!(src.latest_offset(ctx(&ck), Some(&end), false).unwrap(), Some(end.clone()));
    taken.sort();
    assert_eq!(taken, ["f0.json", "f1.json", "f2.json", "f3.json"]);
}

#[test]
fn a_planned_but_uncommitted_entry_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    let ck = Checkpoint::in_memory().unwrap();
    write(dir.path(), "a.json", &line("a"), 5);
    write(dir.path(), "b.json", &line("b"), 6);
    {
        let mut src = json_source(dir.path(), Some(1));
        src.initialize(ctx(&ck)).unwrap();
        assert_eq!(src.latest_offset(ctx(&ck), None, false).unwrap(), Some(off(1)));
        // Crash: offsets/0 was never written, nothing committed.
    }
    // A file that sorts first arrives before the restart: it must not change batch 1.
    write(dir.path(), "0-early.json", &line("early"), 1);
    let mut src = json_source(dir.path(), Some(1));
    src.initialize(ctx(&ck)).unwrap();
    let end = src.latest_offset(ctx(&ck), None, false).unwrap().unwrap();
    assert_eq!(end, off(1));
    assert_eq!(strings(&src.get_batch(ctx(&ck), None, &end).unwrap(), "sensor"), [Some("a".to_string())]);
    let next = src.latest_offset(ctx(&ck), Some(&end), false).unwrap().unwrap();
    assert_eq!(next, off(2));
    assert_eq!(strings(&src.get_batch(ctx(&ck), Some(&end), &next).unwrap(), "sensor"), [Some("early".to_string())]);
}

#[test]
fn available_now_ignores_files_arriving_later() {
    let dir = tempfile::tempdir().unwrap();
    let ck = Checkpoint::in_memory().unwrap();
    write(dir.path(), "a.json", &line("a"), 1);
    write(dir.path(), "b.json", &line("b"), 2);
    let mut src = json_source(dir.path(), Some(1));
    src.initialize(ctx(&ck)).unwrap();
    src.prepare_for_available_now(ctx(&ck)).unwrap();
    assert_eq!(src.backlog(), Some(2));
    write(dir.path(), "c.json", &line("c"), 3);
    let first = src.latest_offset(ctx(&ck), None, false).unwrap().unwrap();
    assert_eq!(src.backlog(), Some(1));
    let second = src.latest_offset(ctx(&ck), Some(&first), false).unwrap().unwrap();
    assert_eq!(second, off(2));
    assert_eq!(src.latest_offset(ctx(&ck), Some(&second), false).unwrap(), Some(second.clone()));
    assert_eq!(src.backlog(), Some(0));
    let df = src.get_batch(ctx(&ck), None, &second).unwrap();
    assert_eq!(strings(&df, "sensor"), [Some("a".to_string()), Some("b".to_string())]);
}

#[test]
fn an_empty_file_is_a_batch_with_no_rows() {
    let dir = tempfile::tempdir().unwrap();
    let ck = Checkpoint::in_memory().unwrap();
    write(dir.path(), "empty.json", "", 1);
    let mut src = json_source(dir.path(), None);
    src.initialize(ctx(&ck)).unwrap();
    let end = src.latest_offset(ctx(&ck), None, false).unwrap().unwrap();
    let df = src.get_batch(ctx(&ck), None, &end).unwrap();
    assert_eq!(df.height(), 0);
    assert_eq!(df.schema().as_ref(), &events_schema());
}

#[test]
fn timestamps_decode_from_rfc3339_and_nulls_are_fine() {
    let dir = tempfile::tempdir().unwrap();
    let ck = Checkpoint::in_memory().unwrap();
    write(
        dir.path(),
        "t.json",
        "{\"sensor\": \"a\", \"ts\": \"2015-09-12T00:46:58.771Z\", \"v\": 2}\n\
         {\"sensor\": \"b\", \"ts\": null, \"v\": null}\n\
         {\"sensor\": \"c\", \"extra\": [1, 2]}\n",
        1,
    );
    let mut src = json_source(dir.path(), None);
    src.initialize(ctx(&ck)).unwrap();
    let end = src.latest_offset(ctx(&ck), None, false).unwrap().unwrap();
    let df = src.get_batch(ctx(&ck), None, &end).unwrap();
    let declared = events_schema();
    assert!(df.schema().iter().eq(declared.iter()), "{:?}", df.schema());
    assert_eq!(ints(&df, "ts"), [Some(1_442_018_818_771_000), None, None]);
    assert_eq!(floats(&df, "v"), [Some(2.0), None, None]);
}

const MALFORMED: &str = "{\"sensor\": \"good1\", \"ts\": \"2024-01-01T00:01:00Z\", \"v\": 1.5}\n\
not json at all\n\
\n\
{\"sensor\": \"wrongtype\", \"ts\": \"2024-01-01T00:02:00Z\", \"v\": \"abc\"}\n\
{\"sensor\": \"good2\", \"v\": 2}\n";

fn malformed_batch(mode: ParseMode, corrupt: bool) -> Result<DataFrame, SluiceError> {
    let dir = tempfile::tempdir().unwrap();
    let ck = Checkpoint::in_memory().unwrap();
    write(dir.path(), "bad.json", MALFORMED, 1);
    let mut b = FileSource::json(dir.path()).schema(events_schema()).mode(mode);
    if corrupt {
        b = b.column_name_of_corrupt_record("_corrupt_record");
    }
    let provider = b.build().unwrap();
    let mut src = provider.create().unwrap();
    assert_eq!(src.schema(), provider.schema());
    src.initialize(ctx(&ck)).unwrap();
    let end = src.latest_offset(ctx(&ck), None, false).unwrap().unwrap();
    let df = src.get_batch(ctx(&ck), None, &end)?;
    assert!(df.schema().iter().eq(src.schema().iter()), "{:?} vs {:?}", df.schema(), src.schema());
    Ok(df)
}

#[test]
fn permissive_keeps_malformed_rows_with_the_raw_line() {
    let df = malformed_batch(ParseMode::Permissive, true).unwrap();
    assert_eq!(df.get_column_names().last().map(|n| n.as_str()), Some("_corrupt_record"));
    assert_eq!(df.height(), 4, "blank lines are skipped");
    assert_eq!(
        strings(&df, "sensor"),
        [Some("good1".into()), None, Some("wrongtype".into()), Some("good2".into())],
        "a line that is not JSON is all null; a wrong type nulls only that field (Spark 3)"
    );
    assert_eq!(floats(&df, "v"), [Some(1.5), None, None, Some(2.0)]);
    assert_eq!(ints(&df, "ts")[2], Some(1_704_067_320_000_000));
    assert_eq!(
        strings(&df, "_corrupt_record"),
        [
            None,
            Some("not json at all".into()),
            Some("{\"sensor\": \"wrongtype\", \"ts\": \"2024-01-01T00:02:00Z\", \"v\": \"abc\"}".into()),
            None
        ]
    );
}

#[test]
fn permissive_without_corrupt_column_keeps_the_declared_schema() {
    let df = malformed_batch(ParseMode::Permissive, false).unwrap();
    assert_eq!(df.width(), 3);
    assert_eq!(df.height(), 4);
}

#[test]
fn dropmalformed_drops_bad_lines() {
    let df = malformed_batch(ParseMode::DropMalformed, false).unwrap();
    assert_eq!(strings(&df, "sensor"), [Some("good1".to_string()), Some("good2".to_string())]);
}

#[test]
fn failfast_names_the_file_and_line() {
    match malformed_batch(ParseMode::FailFast, false) {
        Err(SluiceError::MalformedRecord { path, line, message }) => {
            assert!(path.ends_with("bad.json"), "{path}");
            assert_eq!(line, 2);
            assert!(!message.is_empty());
        }
        other => panic!("expected MalformedRecord, got {other:?}"),
    }
    // The first bad line being a type error: the message names the column.
    let dir = tempfile::tempdir().unwrap();
    let ck = Checkpoint::in_memory().unwrap();
    write(dir.path(), "t.json", "{\"sensor\": \"ok\"}\n\n{\"sensor\": \"x\", \"v\": \"abc\"}\n", 1);
    let mut src = FileSource::json(dir.path())
        .schema(events_schema())
        .mode(ParseMode::FailFast)
        .build()
        .unwrap()
        .create()
        .unwrap();
    let end = src.latest_offset(ctx(&ck), None, false).unwrap().unwrap();
    match src.get_batch(ctx(&ck), None, &end) {
        Err(SluiceError::MalformedRecord { line, message, .. }) => {
            assert_eq!(line, 3);
            assert!(message.contains("\"v\"") && message.contains("abc"), "{message}");
        }
        other => panic!("expected MalformedRecord, got {other:?}"),
    }
}

#[test]
fn csv_with_header_and_parse_modes() {
    let dir = tempfile::tempdir().unwrap();
    let ck = Checkpoint::in_memory().unwrap();
    write(
        dir.path(),
        "a.csv",
        "sensor,ts,v\na,2024-01-01T00:01:00Z,1.5\nb,,\nc,2024-01-01T00:03:00Z,oops\nd,2024-01-01 00:04:00,4\n",
        1,
    );
    let schema = events_schema();
    let make = |mode: ParseMode| {
        FileSource::csv(dir.path())
            .schema(schema.clone())
            .header(true)
            .mode(mode)
            .column_name_of_corrupt_record("_corrupt_record")
            .build()
            .unwrap()
            .create()
            .unwrap()
    };
    let mut src = make(ParseMode::Permissive);
    src.initialize(ctx(&ck)).unwrap();
    let end = src.latest_offset(ctx(&ck), None, false).unwrap().unwrap();
    let df = src.get_batch(ctx(&ck), None, &end).unwrap();
    assert_eq!(strings(&df, "sensor"), [Some("a".into()), Some("b".into()), Some("c".into()), Some("d".into())]);
    assert_eq!(floats(&df, "v"), [Some(1.5), None, None, Some(4.0)]);
    assert_eq!(
        ints(&df, "ts"),
        [Some(1_704_067_260_000_000), None, Some(1_704_067_380_000_000), Some(1_704_067_440_000_000)]
    );
    assert_eq!(strings(&df, "_corrupt_record"), [None, None, Some("c,2024-01-01T00:03:00Z,oops".into()), None]);

    let mut src = make(ParseMode::DropMalformed);
    let df = src.get_batch(ctx(&ck), None, &end).unwrap();
    assert_eq!(strings(&df, "sensor"), [Some("a".into()), Some("b".into()), Some("d".into())]);

    let mut src = make(ParseMode::FailFast);
    match src.get_batch(ctx(&ck), None, &end) {
        Err(SluiceError::MalformedRecord { path, line, message }) => {
            assert!(path.ends_with("a.csv"), "{path}");
            assert_eq!(line, 4);
            assert!(message.contains("oops"), "{message}");
        }
        other => panic!("expected MalformedRecord, got {other:?}"),
    }
}

#[test]
fn csv_wrong_field_counts_are_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let ck = Checkpoint::in_memory().unwrap();
    write(dir.path(), "a.csv", "a,2024-01-01T00:01:00Z,1\nshort,2024-01-01T00:01:00Z\nlong,,2,extra\nz,,3\n", 1);
    let mut src = FileSource::csv(dir.path())
        .schema(events_schema())
        .column_name_of_corrupt_record("bad")
        .build()
        .unwrap()
        .create()
        .unwrap();
    let end = src.latest_offset(ctx(&ck), None, false).unwrap().unwrap();
    let df = src.get_batch(ctx(&ck), None, &end).unwrap();
    // Spark 3.5: extra tokens are dropped (the row is still marked corrupt), missing ones null.
    assert_eq!(strings(&df, "sensor"), [Some("a".into()), Some("short".into()), Some("long".into()), Some("z".into())]);
    assert_eq!(
        strings(&df, "bad"),
        [None, Some("short,2024-01-01T00:01:00Z".into()), Some("long,,2,extra".into()), None]
    );
    let mut src = FileSource::csv(dir.path())
        .schema(events_schema())
        .delimiter(',')
        .mode(ParseMode::FailFast)
        .build()
        .unwrap()
        .create()
        .unwrap();
    match src.get_batch(ctx(&ck), None, &end) {
        Err(SluiceError::MalformedRecord { line, .. }) => assert_eq!(line, 2),
        other => panic!("expected MalformedRecord, got {other:?}"),
    }
}

fn write_parquet(path: &Path, batch: &RecordBatch) {
    let file = std::fs::File::create(path).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
}

#[test]
fn parquet_round_trip_projects_and_casts_to_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let ck = Checkpoint::in_memory().unwrap();
    // Columns in another order, an extra column, a UTC timestamp and an Int32 for an Int64.
    let schema = Arc::new(ArrowSchema::new(vec![
        ArrowField::new("n", ArrowDataType::Int32, false),
        ArrowField::new("extra", ArrowDataType::Utf8, true),
        ArrowField::new("ts", ArrowDataType::Timestamp(ArrowTimeUnit::Microsecond, Some("UTC".into())), true),
        ArrowField::new("sensor", ArrowDataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int32Array::from(vec![1, 2])),
            Arc::new(StringArray::from(vec![Some("x"), None])),
            Arc::new(TimestampMicrosecondArray::from(vec![Some(5), None]).with_timezone("UTC")),
            Arc::new(StringArray::from(vec![Some("a"), Some("b")])),
        ],
    )
    .unwrap();
    let path = dir.path().join("part-0.parquet");
    write_parquet(&path, &batch);
    write(dir.path(), "part-1.parquet", "", 0); // empty: no rows
    let declared = Schema::from_iter([
        Field::new("sensor".into(), DataType::String),
        Field::new("ts".into(), DataType::Datetime(TimeUnit::Microseconds, None)),
        Field::new("n".into(), DataType::Int64),
    ]);
    let options = sluice_engine::Options::from_pairs([("maxFilesPerTrigger", "5")]);
    let provider = FileSourceFormat::parquet()
        .create(&dir.path().to_string_lossy(), Some(Arc::new(declared.clone())), &options)
        .unwrap();
    let mut src = provider.create().unwrap();
    src.initialize(ctx(&ck)).unwrap();
    let end = src.latest_offset(ctx(&ck), None, false).unwrap().unwrap();
    let df = src.get_batch(ctx(&ck), None, &end).unwrap();
    assert!(df.schema().iter().eq(declared.iter()), "{:?}", df.schema());
    assert_eq!(strings(&df, "sensor"), [Some("a".into()), Some("b".into())]);
    assert_eq!(ints(&df, "ts"), [Some(5), None]);
    assert_eq!(ints(&df, "n"), [Some(1), Some(2)]);

    // A declared column the file lacks: an error naming the file and the column.
    let missing = Schema::from_iter([Field::new("nope".into(), DataType::Int64)]);
    let mut src = FileSource::parquet(dir.path()).schema(missing).build().unwrap().create().unwrap();
    let ck = Checkpoint::in_memory().unwrap();
    let end = src.latest_offset(ctx(&ck), None, false).unwrap().unwrap();
    let err = src.get_batch(ctx(&ck), None, &end).unwrap_err().to_string();
    assert!(err.contains("part-0.parquet") && err.contains("nope"), "{err}");
}

#[test]
fn the_schema_is_required_and_options_are_checked() {
    let err = FileSourceFormat::json().create("/tmp/in", None, &sluice_engine::Options::new()).err().unwrap();
    assert!(matches!(err, SluiceError::InvalidArgument(_)));
    assert!(
        err.to_string().contains("file sources need a schema (Spark's readStream requires one): call .schema(...)"),
        "{err}"
    );
    let err = FileSource::csv("/tmp/in").schema(events_schema()).option("maxFilesPerTrigger", "many").build();
    assert!(matches!(err, Err(SluiceError::InvalidArgument(_))));
}

#[test]
fn a_file_gone_after_planning_is_an_io_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let ck = Checkpoint::in_memory().unwrap();
    let path = write(dir.path(), "gone.json", &line("a"), 1);
    let mut src = json_source(dir.path(), None);
    let end = src.latest_offset(ctx(&ck), None, false).unwrap().unwrap();
    std::fs::remove_file(&path).unwrap();
    match src.get_batch(ctx(&ck), None, &end) {
        Err(SluiceError::Io { path, .. }) => assert!(path.ends_with("gone.json"), "{path}"),
        other => panic!("expected Io, got {other:?}"),
    }
    let missing = FileSource::json(dir.path().join("no-such-dir")).schema(events_schema()).build().unwrap();
    let fresh = Checkpoint::in_memory().unwrap();
    let err = missing.create().unwrap().latest_offset(ctx(&fresh), None, false).unwrap_err();
    assert!(err.to_string().contains("no-such-dir"), "{err}");
}

/// Writes the manifest entry `<dir>/_sluice_metadata/<batch_id>` as the file sink does:
/// `v1` then one JSON line per data file, sealed with the checksum trailer.
fn write_manifest_entry(dir: &Path, batch_id: u64, files: &[&str]) {
    let meta = dir.join("_sluice_metadata");
    std::fs::create_dir_all(&meta).unwrap();
    let mut text = String::from("v1\n");
    for name in files {
        let size = std::fs::metadata(dir.join(name)).unwrap().len();
        text.push_str(&format!("{}\n", json!({ "path": name, "size": size, "rows": 1 })));
    }
    std::fs::write(meta.join(batch_id.to_string()), sluice_checkpoint::checksum::seal(text.as_bytes())).unwrap();
}

#[test]
fn a_file_sink_output_is_read_through_its_manifest_only() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "part-00000-x.json", &line("a"), 20);
    write(dir.path(), "part-00001-x.json", &line("b"), 10);
    write_manifest_entry(dir.path(), 0, &["part-00000-x.json"]);
    write_manifest_entry(dir.path(), 1, &["part-00001-x.json"]);
    // Orphans: a part file of a batch that crashed before its entry (the oldest file), a
    // file dropped in by hand, and a temporary entry of an interrupted manifest write.
    write(dir.path(), "part-00002-x.json", &line("orphan"), 1);
    write(dir.path(), "stray.json", &line("stray"), 15);
    std::fs::write(dir.path().join("_sluice_metadata").join(".2.tmp"), "").unwrap();

    let ck = Checkpoint::in_memory().unwrap();
    let mut src = json_source(dir.path(), Some(1));
    src.initialize(ctx(&ck)).unwrap();
    let mut start: Option<Value> = None;
    let mut seen = Vec::new();
    while let Some(end) =
        src.latest_offset(ctx(&ck), start.as_ref(), false).unwrap().filter(|e| Some(e) != start.as_ref())
    {
        let df = src.get_batch(ctx(&ck), start.as_ref(), &end).unwrap();
        seen.extend(strings(&df, "sensor").into_iter().flatten());
        src.commit(ctx(&ck), &end).unwrap();
        start = Some(end);
    }
    assert_eq!(seen, ["b", "a"], "only manifest-listed files, in (mtime, path) order");
    assert_eq!(start, Some(off(2)));
    assert_eq!(logged_names(&ck, 1), ["part-00001-x.json"]);
    assert_eq!(src.backlog(), Some(0), "unlisted files are not a backlog");

    // The replayed batch's entry lists the orphan: now it is taken.
    write_manifest_entry(dir.path(), 2, &["part-00002-x.json"]);
    let end = src.latest_offset(ctx(&ck), start.as_ref(), false).unwrap().unwrap();
    assert_eq!(end, off(3));
    assert_eq!(logged_names(&ck, 3), ["part-00002-x.json"]);
    let df = src.get_batch(ctx(&ck), start.as_ref(), &end).unwrap();
    assert_eq!(strings(&df, "sensor"), [Some("orphan".into())]);
    src.commit(ctx(&ck), &end).unwrap();
    start = Some(end);

    // A corrupt (empty) entry fails the listing, naming the entry.
    std::fs::write(dir.path().join("_sluice_metadata").join("3"), "").unwrap();
    match src.latest_offset(ctx(&ck), start.as_ref(), false) {
        Err(SluiceError::Checkpoint(CheckpointError::Corrupt { path, reason })) => {
            assert!(Path::new(&path).ends_with("_sluice_metadata/3"), "{path}");
            assert!(reason.contains("empty"), "{reason}");
        }
        other => panic!("expected a corrupt manifest entry, got {other:?}"),
    }
}

#[test]
fn an_empty_manifest_directory_lists_no_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "part-00000-x.json", &line("orphan"), 1);
    std::fs::create_dir(dir.path().join("_sluice_metadata")).unwrap();
    let ck = Checkpoint::in_memory().unwrap();
    let mut src = json_source(dir.path(), None);
    src.initialize(ctx(&ck)).unwrap();
    assert_eq!(src.latest_offset(ctx(&ck), None, true).unwrap(), None, "a sink that has committed no batch yet");
}

/// Runs `read_stream().format("json")` with AvailableNow on `ckdir`, returning each
/// batch's id and sensors.
fn run_available_now(input: &Path, ckdir: &Path) -> Vec<(u64, Vec<Option<String>>)> {
    use sluice_engine::{EngineSession as Session, ProgressDisplay, Trigger};
    use std::sync::Mutex;
    let session = Session::new();
    session.register_source_format("json", Arc::new(FileSourceFormat::json()));
    let df = session
        .read_stream()
        .format("json")
        .schema(events_schema())
        .option("maxFilesPerTrigger", 1)
        .load(input)
        .unwrap();
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = out.clone();
    let query = df
        .write_stream()
        .trigger(Trigger::AvailableNow)
        .checkpoint_location(ckdir)
        .progress(ProgressDisplay::Off)
        .foreach_batch(move |rows: &DataFrame, id| {
            sink.lock().unwrap().push((id, strings(rows, "sensor")));
            Ok(())
        })
        .start()
        .unwrap();
    query.await_termination().unwrap();
    let batches = out.lock().unwrap().clone();
    batches
}

#[test]
fn end_to_end_one_file_per_batch_across_a_restart() {
    let input = tempfile::tempdir().unwrap();
    let ckdir = tempfile::tempdir().unwrap();
    write(input.path(), "part-00001.json", &line("b"), 2);
    write(input.path(), "part-00000.json", &format!("{}{}", line("a1"), line("a2")), 1);
    write(input.path(), "part-00002.json", "", 3);
    let first = run_available_now(input.path(), ckdir.path());
    assert_eq!(first, [(0, vec![Some("a1".into()), Some("a2".into())]), (1, vec![Some("b".into())]), (2, vec![]),]);
    write(input.path(), "part-00003.json", &line("c"), 4);
    let second = run_available_now(input.path(), ckdir.path());
    assert_eq!(second, [(3, vec![Some("c".into())])]);
}

/// Every 7th record bad, in both formats: rows stay in file order, the corrupt column marks
/// exactly the bad ones, FAILFAST stops at the first.
#[test]
fn many_bad_records_keep_their_order() {
    for (kind, ext) in [("json", "json"), ("csv", "csv")] {
        let dir = tempfile::tempdir().unwrap();
        let ck = Checkpoint::in_memory().unwrap();
        let mut text = String::new();
        for i in 1..=1000 {
            let bad = i % 7 == 0;
            text.push_str(&match (kind, bad) {
                ("json", false) => format!("{{\"sensor\": \"s{i}\", \"v\": {i}}}\n"),
                ("json", true) => format!("{{\"sensor\": \"s{i}\", \"v\": \"x{i}\"}}\n"),
                (_, false) => format!("s{i},,{i}\n"),
                (_, true) => format!("s{i},,x{i}\n"),
            });
        }
        write(dir.path(), &format!("f.{ext}"), &text, 1);
        let base = |mode: ParseMode| {
            let b = if kind == "json" { FileSource::json(dir.path()) } else { FileSource::csv(dir.path()) };
            b.schema(events_schema()).mode(mode).column_name_of_corrupt_record("_corrupt_record")
        };
        let mut src = base(ParseMode::Permissive).build().unwrap().create().unwrap();
        let end = src.latest_offset(ctx(&ck), None, false).unwrap().unwrap();
        let df = src.get_batch(ctx(&ck), None, &end).unwrap();
        assert_eq!(df.height(), 1000, "{kind}");
        let sensors = strings(&df, "sensor");
        let values = floats(&df, "v");
        let corrupt = strings(&df, "_corrupt_record");
        for i in 1..=1000usize {
            assert_eq!(sensors[i - 1], Some(format!("s{i}")), "{kind} row {i}");
            assert_eq!(corrupt[i - 1].is_some(), i % 7 == 0, "{kind} row {i}");
            assert_eq!(values[i - 1], (i % 7 != 0).then_some(i as f64), "{kind} row {i}");
        }
        let mut src = base(ParseMode::DropMalformed).build().unwrap().create().unwrap();
        assert_eq!(src.get_batch(ctx(&ck), None, &end).unwrap().height(), 1000 - 1000 / 7, "{kind}");
        let mut src = base(ParseMode::FailFast).build().unwrap().create().unwrap();
        match src.get_batch(ctx(&ck), None, &end) {
            Err(SluiceError::MalformedRecord { line, message, .. }) => {
                assert_eq!(line, 7, "{kind}");
                assert!(message.contains("x7"), "{kind}: {message}");
            }
            other => panic!("{kind}: expected MalformedRecord, got {other:?}"),
        }
    }
}
