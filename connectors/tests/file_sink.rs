//! The file sink through the `Sink` trait: manifest, exactly-once replay, orphans,
//! corruption, and the JSON / CSV / Parquet encodings.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use polars::prelude::*;
use sluice_engine::checkpoint::CheckpointError;
use sluice_engine::{OutputMode, Sink, SinkContext, SluiceError};
use sluice_connectors::METADATA_DIR;
use sluice_connectors::{manifest_entry_path, read_manifest, read_output, FileFormat, FileSink};

/// 2024-01-01T00:05:00Z in microseconds.
const T0: i64 = 1_704_067_500_000_000;
const MINUTE: i64 = 60_000_000;

/// `n` rows starting at `first`: `id` i64, `name` string (one null), `t` Datetime(us)
/// (the second row has a fraction), `window` struct {start, end} of Datetime(us).
fn batch(first: i64, n: usize) -> DataFrame {
    let ids: Vec<i64> = (first..first + n as i64).collect();
    let names: Vec<Option<String>> =
        ids.iter().map(|i| if i % 3 == 2 { None } else { Some(format!("user-{i}")) }).collect();
    let times: Vec<i64> = ids.iter().map(|i| T0 + i * MINUTE + if i % 2 == 1 { 123_456 } else { 0 }).collect();
    let starts: Vec<i64> = ids.iter().map(|i| T0 + (i / 10) * 10 * MINUTE).collect();
    let ends: Vec<i64> = starts.iter().map(|s| s + 10 * MINUTE).collect();
    let dt = DataType::Datetime(TimeUnit::Microseconds, None);
    let start = Series::new("start".into(), starts).cast(&dt).unwrap();
    let end = Series::new("end".into(), ends).cast(&dt).unwrap();
    let window = StructChunked::from_series("window".into(), n, [start, end].iter()).unwrap().into_series();
    DataFrame::new(
        n,
        vec![
            Column::from(Series::new("id".into(), ids)),
            Column::from(Series::new("name".into(), names)),
            Column::from(Series::new("t".into(), times).cast(&dt).unwrap()),
            Column::from(window),
        ],
    )
    .unwrap()
}

fn ctx(mode: OutputMode) -> SinkContext {
    SinkContext { query_id: "q".into(), output_mode: mode }
}

fn sink(dir: &Path, format: FileFormat) -> FileSink {
    let mut s = FileSink::new(dir, format);
    s.initialize(&ctx(OutputMode::Append)).unwrap();
    s
}

/// The names of the data files (`part-*`) in `dir`.
fn part_files(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("part-"))
        .collect()
}

fn listed_files(dir: &Path) -> BTreeSet<String> {
    read_manifest(dir).unwrap().into_iter().flat_map(|e| e.files.into_iter().map(|f| f.path)).collect()
}

fn concat_frames(frames: &[&DataFrame]) -> DataFrame {
    let mut out = frames[0].clone();
    for f in &frames[1..] {
        out.vstack_mut(f).unwrap();
    }
    out
}

fn assert_frames_equal(got: &DataFrame, want: &DataFrame) {
    assert_eq!(got.schema(), want.schema(), "schemas differ:\n{got}\n{want}");
    assert!(got.equals_missing(want), "frames differ:\ngot {got}\nwant {want}");
}

#[test]
fn two_parquet_batches_are_listed_exactly_and_replay_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let mut s = sink(out, FileFormat::Parquet);
    let (b0, b1) = (batch(0, 5), batch(5, 7));
    s.add_batch(0, &b0).unwrap();
    s.add_batch(1, &b1).unwrap();

    let manifest = read_manifest(out).unwrap();
    assert_eq!(manifest.iter().map(|e| e.batch_id).collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(manifest[0].files.len(), 1);
    assert_eq!(manifest[1].files.len(), 1);
    assert_eq!(manifest[0].rows(), 5);
    assert_eq!(manifest[1].rows(), 7);
    assert!(manifest[0].files[0].path.starts_with("part-00000-"), "{}", manifest[0].files[0].path);
    assert!(manifest[1].files[0].path.starts_with("part-00001-"), "{}", manifest[1].files[0].path);
    assert!(manifest[1].files[0].path.ends_with(".parquet"));
    for f in manifest.iter().flat_map(|e| &e.files) {
        assert_eq!(fs::metadata(out.join(&f.path)).unwrap().len(), f.size, "size of {}", f.path);
    }
    // Exactly the listed files are on disk.
    assert_eq!(part_files(out), listed_files(out));

    // The manifest entry's text format.
    let text = fs::read_to_string(manifest_entry_path(out, 1)).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("v1"));
    let line: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(line["rows"], 7);
    assert_eq!(line["path"], manifest[1].files[0].path.as_str());
    assert!(line["size"].as_u64().unwrap() > 0);
    assert!(lines.next().unwrap().starts_with("#sluice crc32="), "the checksum trailer");
    assert_eq!(lines.next(), None);

    let before = read_output(out).unwrap();
    assert_frames_equal(&before, &concat_frames(&[&b0, &b1]));

    // Replay batch 1 (even with different rows, as a buggy source might): nothing changes.
    let files_before = part_files(out);
    let entry_before = fs::read(manifest_entry_path(out, 1)).unwrap();
    let mut again = sink(out, FileFormat::Parquet);
    again.add_batch(1, &batch(100, 3)).unwrap();
    assert_eq!(part_files(out), files_before);
    assert_eq!(fs::read(manifest_entry_path(out, 1)).unwrap(), entry_before);
    assert_frames_equal(&read_output(out).unwrap(), &before);
}

#[test]
fn parquet_keeps_utc_timestamps_and_structs() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = sink(dir.path(), FileFormat::Parquet);
    s.add_batch(0, &batch(0, 3)).unwrap();
    let f = &read_manifest(dir.path()).unwrap()[0].files[0];
    let file = fs::File::open(dir.path().join(&f.path)).unwrap();
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let schema = builder.schema();
    let utc = arrow::datatypes::DataType::Timestamp(
        arrow::datatypes::TimeUnit::Microsecond,
        Some(sluice_engine::interop::UTC_TAG.into()),
    );
    assert_eq!(schema.field_with_name("t").unwrap().data_type(), &utc);
    match schema.field_with_name("window").unwrap().data_type() {
        arrow::datatypes::DataType::Struct(fields) => {
            assert_eq!(fields.iter().map(|f| f.name().as_str()).collect::<Vec<_>>(), ["start", "end"]);
            assert_eq!(fields[0].data_type(), &utc);
        }
        other => panic!("window is {other}"),
    }
}

#[test]
fn empty_batch_gets_an_entry_but_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let mut s = sink(out, FileFormat::Parquet);
    s.add_batch(0, &batch(0, 0)).unwrap();
    assert!(part_files(out).is_empty());
    let m = read_manifest(out).unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].batch_id, 0);
    assert!(m[0].files.is_empty());
    assert_eq!(fs::read(manifest_entry_path(out, 0)).unwrap(), sluice_checkpoint::checksum::seal(b"v1\n"));
    assert_eq!(read_output(out).unwrap().height(), 0);
    s.add_batch(1, &batch(0, 2)).unwrap();
    assert_eq!(read_output(out).unwrap().height(), 2);
}

#[test]
fn unlisted_part_files_are_ignored_and_cleaned_on_replay() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let mut s = sink(out, FileFormat::Parquet);
    let b0 = batch(0, 4);
    s.add_batch(0, &b0).unwrap();
    let listed = listed_files(out);
    let real = listed.iter().next().unwrap();
    // A crash between the data write of batch 1 and its manifest entry leaves this.
    let orphan = "part-00001-00000000-0000-0000-0000-000000000000.parquet";
    fs::copy(out.join(real), out.join(orphan)).unwrap();
    // Temporary manifest files of an interrupted write are ignored too.
    fs::write(out.join(METADATA_DIR).join(".1.abc.tmp"), "v1\n{\"pa").unwrap();

    assert_eq!(read_manifest(out).unwrap().len(), 1);
    assert_frames_equal(&read_output(out).unwrap(), &b0);

    // Re-running batch 1 removes the orphan and writes the batch once.
    let b1 = batch(4, 2);
    s.add_batch(1, &b1).unwrap();
    assert!(!out.join(orphan).exists());
    assert_eq!(part_files(out), listed_files(out));
    assert_frames_equal(&read_output(out).unwrap(), &concat_frames(&[&b0, &b1]));
}

fn assert_corrupt_naming(err: &SluiceError, file: &Path) {
    let shown = file.display().to_string();
    match err {
        SluiceError::Checkpoint(CheckpointError::Corrupt { path, .. }) => assert_eq!(path, &shown),
        other => panic!("expected a Corrupt error naming {shown}, got {other:?}"),
    }
    assert!(err.to_string().contains(&shown), "{err}");
}

#[test]
fn corrupt_manifest_entries_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let mut s = sink(out, FileFormat::Parquet);
    s.add_batch(0, &batch(0, 2)).unwrap();

    // Empty.
    let bad = manifest_entry_path(out, 1);
    fs::write(&bad, "").unwrap();
    assert_corrupt_naming(&read_manifest(out).unwrap_err(), &bad);
    assert_corrupt_naming(&read_output(out).unwrap_err(), &bad);
    // The sink does not trust it either when the batch is replayed.
    assert_corrupt_naming(&s.add_batch(1, &batch(2, 2)).unwrap_err(), &bad);

    // Torn (the last line is cut).
    fs::write(&bad, "v1\n{\"path\": \"part-00001-x.parquet\", \"si").unwrap();
    assert_corrupt_naming(&read_manifest(out).unwrap_err(), &bad);
    // Wrong header.
    fs::write(&bad, "v9\n").unwrap();
    assert_corrupt_naming(&read_manifest(out).unwrap_err(), &bad);
    // A line that is not a file status.
    fs::write(&bad, "v1\n{\"nope\": 1}\n").unwrap();
    assert_corrupt_naming(&read_manifest(out).unwrap_err(), &bad);
    // A path escaping the output directory.
    fs::write(&bad, "v1\n{\"path\": \"../x.parquet\", \"size\": 1, \"rows\": 1}\n").unwrap();
    assert_corrupt_naming(&read_manifest(out).unwrap_err(), &bad);
}

#[test]
fn missing_listed_file_is_an_io_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let mut s = sink(out, FileFormat::Parquet);
    s.add_batch(0, &batch(0, 2)).unwrap();
    let name = listed_files(out).into_iter().next().unwrap();
    fs::remove_file(out.join(&name)).unwrap();
    match read_output(out).unwrap_err() {
        SluiceError::Io { path, .. } => assert!(path.ends_with(&name), "{path}"),
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

#[test]
fn json_lines_parse_with_utc_timestamps_and_nested_windows() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let mut s = sink(out, FileFormat::Json);
    let (b0, b1) = (batch(0, 3), batch(3, 2));
    s.add_batch(0, &b0).unwrap();
    s.add_batch(1, &b1).unwrap();
    let files = listed_files(out);
    assert_eq!(files.len(), 2);
    assert_eq!(part_files(out), files);

    let first = files.iter().find(|f| f.starts_with("part-00000-")).unwrap();
    assert!(first.ends_with(".json"));
    let text = fs::read_to_string(out.join(first)).unwrap();
    let rows: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["id"], 0);
    assert_eq!(rows[0]["name"], "user-0");
    assert_eq!(rows[0]["t"], "2024-01-01T00:05:00Z");
    assert_eq!(rows[1]["t"], "2024-01-01T00:06:00.123456Z");
    assert_eq!(rows[0]["window"]["start"], "2024-01-01T00:05:00Z");
    assert_eq!(rows[0]["window"]["end"], "2024-01-01T00:15:00Z");
    // Null fields are omitted, as in Spark (ignoreNullFields).
    assert!(rows[2].get("name").is_none(), "{}", rows[2]);
    for r in &rows {
        assert!(r["t"].as_str().unwrap().ends_with('Z'));
    }

    assert_frames_equal(&read_output(out).unwrap(), &concat_frames(&[&b0, &b1]));
}

#[test]
fn csv_has_a_header_and_flattened_windows() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let mut s = sink(out, FileFormat::Csv);
    let b0 = batch(0, 3);
    s.add_batch(0, &b0).unwrap();
    let files = listed_files(out);
    assert_eq!(files.len(), 1);
    let name = files.iter().next().unwrap();
    assert!(name.ends_with(".csv"));
    let text = fs::read_to_string(out.join(name)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "id,name,t,window_start,window_end");
    assert_eq!(lines[1], "0,user-0,2024-01-01T00:05:00Z,2024-01-01T00:05:00Z,2024-01-01T00:15:00Z");
    assert_eq!(lines[2], "1,user-1,2024-01-01T00:06:00.123456Z,2024-01-01T00:05:00Z,2024-01-01T00:15:00Z");
    assert_eq!(lines.len(), 4);

    // Read back flattened, with the written types.
    let got = read_output(out).unwrap();
    let names: Vec<&str> = got.get_column_names().iter().map(|n| n.as_str()).collect();
    assert_eq!(names, ["id", "name", "t", "window_start", "window_end"]);
    assert_eq!(got.height(), 3);
    assert!(got.column("t").unwrap().as_materialized_series().equals(b0.column("t").unwrap().as_materialized_series()));
    assert!(got
        .column("window_end")
        .unwrap()
        .as_materialized_series()
        .equals(&b0.column("window").unwrap().struct_().unwrap().field_by_name("end").unwrap()));
}

#[test]
fn only_append_mode_is_supported() {
    let dir = tempfile::tempdir().unwrap();
    for format in FileFormat::ALL {
        let mut s = FileSink::new(dir.path(), format);
        assert!(s.supports_output_mode(OutputMode::Append));
        assert!(!s.supports_output_mode(OutputMode::Update));
        assert!(!s.supports_output_mode(OutputMode::Complete));
        assert!(matches!(s.initialize(&ctx(OutputMode::Update)), Err(SluiceError::Analysis { .. })));
        assert!(matches!(s.initialize(&ctx(OutputMode::Complete)), Err(SluiceError::Analysis { .. })));
    }
}

#[test]
fn no_manifest_means_no_output() {
    let dir = tempfile::tempdir().unwrap();
    assert!(read_manifest(dir.path()).unwrap().is_empty());
    assert_eq!(read_output(dir.path()).unwrap().height(), 0);
}

/// Timestamps are tagged UTC once, by the engine's interop, before any format sees them:
/// the manifest records the type written, for top-level columns and struct fields.
#[test]
fn written_timestamps_carry_the_utc_tag_of_interop() {
    let dir = tempfile::tempdir().unwrap();
    let utc = arrow::datatypes::DataType::Timestamp(
        arrow::datatypes::TimeUnit::Microsecond,
        Some(sluice_engine::interop::UTC_TAG.into()),
    );
    for format in FileFormat::ALL {
        let out = dir.path().join(format.name());
        let mut s = sink(&out, format);
        s.add_batch(0, &batch(0, 2)).unwrap();
        let entry = read_manifest(&out).unwrap().remove(0);
        let schema = entry.files[0].arrow_schema().unwrap().unwrap();
        assert_eq!(schema.field_with_name("t").unwrap().data_type(), &utc, "{format}");
        let start = match format {
            FileFormat::Csv => schema.field_with_name("window_start").unwrap().data_type().clone(),
            _ => match schema.field_with_name("window").unwrap().data_type() {
                arrow::datatypes::DataType::Struct(fields) => fields[0].data_type().clone(),
                other => panic!("{format}: window is {other}"),
            },
        };
        assert_eq!(start, utc, "{format}");
    }
}
