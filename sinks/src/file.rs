//! [`FileSink`]: Parquet, JSON lines and CSV files with a manifest for exactly-once
//! output (Spark's `FileStreamSink`).
//!
//! # Layout
//! ```text
//! <out>/part-<batch id, 5 digits>-<uuid>.parquet|json|csv   data files of each batch
//! <out>/_sluice_metadata/<batch id>                        manifest entry of each batch
//! ```
//! A manifest entry is `"v1\n"` followed by one JSON line per data file of the batch:
//! `{"path": "part-00003-<uuid>.parquet", "size": <bytes>, "rows": <n>, "schema": [...]}`
//! (`path` relative to `<out>`; `schema` is the Arrow type of the rows, see
//! [`ManifestFile::schema`]). A batch with no rows has an entry with no file lines. The
//! format and its reader ([`read_manifest`]) are defined in [`sluice_engine::manifest`]
//! and re-exported here.
//!
//! # Exactly once
//! Per batch the sink writes and fsyncs its data files, then writes the manifest entry
//! atomically (temporary file in `_sluice_metadata`, fsync, rename, fsync of the
//! directory). A batch id that already has an entry is skipped, so a batch replayed after
//! a crash is written once. Files no entry lists (left by a crash between the data and
//! the manifest write) are ignored by [`read_manifest`] / [`read_output`] (and by any
//! reader that trusts only the manifest, as Spark's does with `_spark_metadata`, and as
//! Sluice's file source does when it reads this directory as a stream); the
//! orphaned part files of a replayed batch id are deleted before it is written again.
//!
//! # Types
//! * Parquet (`parquet::arrow::ArrowWriter`, snappy by default): the batch's Arrow schema
//!   as is: strings `Utf8View`, event time `Timestamp(Microsecond, "+00:00")` (Parquet
//!   `TIMESTAMP(MICROS, isAdjustedToUTC = true)`, Spark's `timestamp`), structs
//!   (e.g. a `window {start, end}` column) nested.
//! * JSON lines (arrow-json): one object per row, structs as nested objects, null fields
//!   omitted (Spark's `ignoreNullFields=true`), timestamps as RFC 3339 UTC strings
//!   (`"2024-01-01T00:05:00Z"`, with a fraction when not whole seconds).
//! * CSV (arrow-csv, with a header line): struct fields flattened into `<col>_<field>`
//!   columns (recursively), list columns written as their text form (`[1, 2]`),
//!   timestamps as in JSON, nulls as empty fields.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, RecordBatchOptions, StructArray};
use arrow::compute::{can_cast_types, cast};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use polars::prelude::DataFrame;
use sluice_engine::checkpoint::BatchId;
use sluice_engine::interop::{df_to_record_batch, record_batches_to_df, UTC_TAG};
use sluice_engine::manifest::{encode_fields, read_manifest_entry, MANIFEST_VERSION};
use sluice_engine::{OutputMode, Result, Sink, SinkContext, SinkProvider, SluiceError};

// The manifest's format and reader live in the engine (`sluice_engine::manifest`) so that
// sources can read it too; re-exported here as part of the file sink's API.
pub use sluice_engine::manifest::{manifest_entry_path, read_manifest, ManifestEntry, ManifestFile, METADATA_DIR};

/// How timestamps are written in JSON and CSV: RFC 3339 in UTC, the fraction only when
/// needed (chrono's `%.f`: nothing, or 3, 6 or 9 digits).
const TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.fZ";

pub use sluice_engine::FileFormat;


fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SluiceError + '_ {
    move |source| SluiceError::Io { path: path.display().to_string(), source }
}

/// Fsyncs a directory so that entries created or renamed in it survive a crash. A no-op
/// where directories cannot be opened as files (not Unix).
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Writes a streaming query's output as files plus a manifest, exactly once per batch
/// (Spark's `FileStreamSink`). Append output mode only.
///
/// See the [module documentation](self) for the layout, the protocol and how types are
/// written.
#[derive(Debug, Clone)]
pub struct FileSink {
    out_dir: PathBuf,
    format: FileFormat,
    compression: Compression,
}

impl FileSink {
    /// A sink writing `format` files into `out_dir` (created on the first batch if
    /// missing). Parquet files are snappy-compressed (Spark's default).
    pub fn new(out_dir: impl Into<PathBuf>, format: FileFormat) -> Self {
        Self { out_dir: out_dir.into(), format, compression: Compression::SNAPPY }
    }

    /// Sets the Parquet compression codec (Spark's `compression` option): `snappy`
    /// (default), `zstd`, `none` / `uncompressed`. JSON and CSV accept only `none` /
    /// `uncompressed`.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] for another codec.
    pub fn with_compression(mut self, codec: &str) -> Result<Self> {
        let c = match codec.to_ascii_lowercase().as_str() {
            "none" | "uncompressed" => Compression::UNCOMPRESSED,
            "snappy" if self.format == FileFormat::Parquet => Compression::SNAPPY,
            "zstd" if self.format == FileFormat::Parquet => Compression::ZSTD(Default::default()),
            _ => {
                return Err(SluiceError::InvalidArgument(format!(
                    "compression {codec:?} is not supported for {} files (use {})",
                    self.format,
                    if self.format == FileFormat::Parquet { "snappy, zstd or none" } else { "none" }
                )))
            }
        };
        self.compression = c;
        Ok(self)
    }

    /// The output directory.
    pub fn out_dir(&self) -> &Path {
        &self.out_dir
    }

    /// The file format.
    pub fn format(&self) -> FileFormat {
        self.format
    }

    fn sink_err(&self, message: String) -> SluiceError {
        SluiceError::Sink { name: self.description(), message }
    }

    fn metadata_dir(&self) -> PathBuf {
        self.out_dir.join(METADATA_DIR)
    }

    fn ensure_dirs(&self) -> Result<()> {
        let meta = self.metadata_dir();
        fs::create_dir_all(&meta).map_err(io_err(&meta))
    }

    /// Deletes the part files of `batch_id` left by an attempt that crashed before its
    /// manifest entry was written. Best effort: a file that cannot be deleted stays and is
    /// ignored by readers.
    fn remove_orphans(&self, batch_id: BatchId) -> Result<()> {
        let prefix = format!("part-{batch_id:05}-");
        let dir = fs::read_dir(&self.out_dir).map_err(io_err(&self.out_dir))?;
        for entry in dir {
            let entry = entry.map_err(io_err(&self.out_dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = entry.path();
            if name.starts_with(&prefix) && FileFormat::from_path(&path).is_some() && path.is_file() {
                match fs::remove_file(&path) {
                    Ok(()) => {
                        tracing::info!(path = %path.display(), batch_id, "removed orphaned part file of a replayed batch")
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot remove orphaned part file; readers ignore it")
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes `batch` to a new file in the output directory and fsyncs it; returns its
    /// manifest line.
    fn write_data_file(&self, batch_id: BatchId, batch: &RecordBatch) -> Result<ManifestFile> {
        let name = format!("part-{batch_id:05}-{}.{}", uuid::Uuid::new_v4(), self.format.name());
        let path = self.out_dir.join(&name);
        let prepared =
            prepare_batch(batch, self.format).map_err(|e| self.sink_err(format!("batch {batch_id}: {e}")))?;
        let schema = encode_fields(prepared.schema().fields());
        let file = File::create_new(&path).map_err(io_err(&path))?;
        let written = self.encode(&file, &prepared);
        if let Err(e) = written {
            let _ = fs::remove_file(&path);
            return Err(match e {
                EncodeError::Io(source) => SluiceError::Io { path: path.display().to_string(), source },
                EncodeError::Other(m) => self.sink_err(format!("writing {}: {m}", path.display())),
            });
        }
        file.sync_all().map_err(io_err(&path))?;
        let size = file.metadata().map_err(io_err(&path))?.len();
        Ok(ManifestFile { path: name, size, rows: prepared.num_rows() as u64, schema: Some(schema) })
    }

    fn encode(&self, file: &File, batch: &RecordBatch) -> std::result::Result<(), EncodeError> {
        let mut out = BufWriter::new(file);
        match self.format {
            FileFormat::Parquet => {
                let props = WriterProperties::builder().set_compression(self.compression).build();
                let mut w = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).map_err(EncodeError::other)?;
                w.write(batch).map_err(EncodeError::other)?;
                w.close().map_err(EncodeError::other)?;
            }
            FileFormat::Json => {
                let mut w = arrow::json::WriterBuilder::new()
                    .with_timestamp_tz_format(TIMESTAMP_FORMAT.to_string())
                    .with_timestamp_format(TIMESTAMP_FORMAT.to_string())
                    .build::<_, arrow::json::writer::LineDelimited>(&mut out);
                w.write(batch).map_err(EncodeError::other)?;
                w.finish().map_err(EncodeError::other)?;
            }
            FileFormat::Csv => {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .with_timestamp_tz_format(TIMESTAMP_FORMAT.to_string())
                    .with_timestamp_format(TIMESTAMP_FORMAT.to_string())
                    .build(&mut out);
                w.write(batch).map_err(EncodeError::other)?;
            }
        }
        out.flush().map_err(EncodeError::Io)
    }

    /// Writes the manifest entry of `batch_id` atomically: temporary file in the same
    /// directory, fsync, rename, fsync of the directory.
    fn write_manifest_entry(&self, batch_id: BatchId, files: &[ManifestFile]) -> Result<()> {
        let meta = self.metadata_dir();
        let target = manifest_entry_path(&self.out_dir, batch_id);
        let mut text = String::from(MANIFEST_VERSION);
        text.push('\n');
        for f in files {
            let line = serde_json::to_string(f)
                .map_err(|e| SluiceError::Internal(format!("cannot encode manifest line: {e}")))?;
            text.push_str(&line);
            text.push('\n');
        }
        let tmp = meta.join(format!(".{batch_id}.{}.tmp", uuid::Uuid::new_v4()));
        let result = (|| {
            let mut f = File::create_new(&tmp).map_err(io_err(&tmp))?;
            f.write_all(text.as_bytes()).map_err(io_err(&tmp))?;
            f.sync_all().map_err(io_err(&tmp))?;
            drop(f);
            fs::rename(&tmp, &target).map_err(io_err(&target))?;
            sync_dir(&meta)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

enum EncodeError {
    Io(std::io::Error),
    Other(String),
}

impl EncodeError {
    fn other(e: impl std::fmt::Display) -> Self {
        EncodeError::Other(e.to_string())
    }
}

impl Sink for FileSink {
    /// `FileSink[<out dir>]`.
    fn description(&self) -> String {
        format!("FileSink[{}]", self.out_dir.display())
    }

    /// Only [`OutputMode::Append`]: files, once written, are never rewritten (as in
    /// Spark, whose file sink rejects Update and Complete at `start()`).
    fn supports_output_mode(&self, mode: OutputMode) -> bool {
        mode == OutputMode::Append
    }

    /// Creates the output and manifest directories.
    ///
    /// # Errors
    /// [`SluiceError::Analysis`] for an output mode other than Append;
    /// [`SluiceError::Io`] naming the directory that cannot be created.
    fn initialize(&mut self, ctx: &SinkContext) -> Result<()> {
        if !self.supports_output_mode(ctx.output_mode) {
            return Err(SluiceError::analysis(format!(
                "the {} file sink supports only the Append output mode, not {}",
                self.format, ctx.output_mode
            )));
        }
        self.ensure_dirs()
    }

    /// Writes the rows of `batch_id` as one data file (none when `data` has no rows) and
    /// then its manifest entry; skips the batch if its entry exists.
    ///
    /// # Errors
    /// [`SluiceError::Io`] naming the file on I/O failure; [`SluiceError::Checkpoint`]
    /// (`Corrupt`) if the batch's existing manifest entry is unreadable;
    /// [`SluiceError::Sink`] if the rows cannot be encoded in the format.
    fn add_batch(&mut self, batch_id: BatchId, data: &DataFrame) -> Result<()> {
        self.ensure_dirs()?;
        let entry_path = manifest_entry_path(&self.out_dir, batch_id);
        if entry_path.exists() {
            // Validate it: a damaged entry must not be silently trusted.
            let entry = read_manifest_entry(&entry_path, batch_id)?;
            tracing::info!(batch_id, files = entry.files.len(), sink = %self.description(),
                "batch already in the manifest; skipping (replay)");
            return Ok(());
        }
        self.remove_orphans(batch_id)?;
        let mut files = Vec::new();
        if data.height() > 0 {
            let batch = df_to_record_batch(data)?;
            files.push(self.write_data_file(batch_id, &batch)?);
            sync_dir(&self.out_dir)?;
        }
        self.write_manifest_entry(batch_id, &files)
    }
}

/// Creates [`FileSink`]s for one format from the writer's options; the facade registers
/// one per format as `"parquet"`, `"json"` and `"csv"`.
///
/// Options: `path` (required, the output directory), `compression` (optional, see
/// [`FileSink::with_compression`]).
#[derive(Debug, Clone, Copy)]
pub struct FileSinkProvider {
    format: FileFormat,
}

impl FileSinkProvider {
    /// A provider of `format` sinks.
    pub fn new(format: FileFormat) -> Self {
        Self { format }
    }

    /// The format of the sinks it creates.
    pub fn format(&self) -> FileFormat {
        self.format
    }
}

impl SinkProvider for FileSinkProvider {
    /// # Errors
    /// [`SluiceError::InvalidArgument`] without option `path` (or with an empty one) or
    /// with an unsupported `compression`.
    fn create(&self, opts_in: &sluice_engine::Options) -> Result<Box<dyn Sink>> {
        let options: &BTreeMap<String, String> = &{
            // Interim: the connectors read a plain map until they adopt `Options`.
            for (k, _) in opts_in.iter() {
                opts_in.mark_read(k);
            }
            opts_in.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let path = options
            .get("path")
            .filter(|p| !p.is_empty())
            .ok_or_else(|| SluiceError::InvalidArgument("the file sink needs option path".into()))?;
        let mut sink = FileSink::new(path, self.format);
        if let Some(codec) = options.get("compression") {
            sink = sink.with_compression(codec)?;
        }
        Ok(Box::new(sink))
    }
}

// ---------------------------------------------------------------------------------------
// Preparing a batch for a format
// ---------------------------------------------------------------------------------------

/// The type an array is written as in JSON / CSV: timestamps tagged UTC with the
/// engine's [`UTC_TAG`] (values are UTC epoch offsets, so only the tag changes; a fixed
/// offset because arrow-rs parses named zones only with `chrono-tz`), recursively through
/// structs and lists.
fn utc_type(dt: &DataType) -> DataType {
    match dt {
        DataType::Timestamp(unit, _) => DataType::Timestamp(*unit, Some(UTC_TAG.into())),
        DataType::Struct(fields) => DataType::Struct(map_fields(fields, utc_type)),
        DataType::List(f) => DataType::List(Arc::new(f.as_ref().clone().with_data_type(utc_type(f.data_type())))),
        DataType::LargeList(f) => {
            DataType::LargeList(Arc::new(f.as_ref().clone().with_data_type(utc_type(f.data_type()))))
        }
        DataType::FixedSizeList(f, n) => {
            DataType::FixedSizeList(Arc::new(f.as_ref().clone().with_data_type(utc_type(f.data_type()))), *n)
        }
        other => other.clone(),
    }
}

fn map_fields(fields: &Fields, f: fn(&DataType) -> DataType) -> Fields {
    fields.iter().map(|x| Arc::new(x.as_ref().clone().with_data_type(f(x.data_type())))).collect()
}

fn cast_to(array: &ArrayRef, to: &DataType) -> std::result::Result<ArrayRef, String> {
    if array.data_type() == to {
        return Ok(array.clone());
    }
    cast(array, to).map_err(|e| format!("cannot convert {} to {to}: {e}", array.data_type()))
}

/// Adds the CSV columns of one top-level or nested column: structs flattened into
/// `<name>_<field>`, lists and other nested types as their text form, timestamps UTC.
fn flatten_for_csv(
    name: &str,
    field: &Field,
    array: &ArrayRef,
    out_fields: &mut Vec<Field>,
    out_arrays: &mut Vec<ArrayRef>,
) -> std::result::Result<(), String> {
    if let (DataType::Struct(children), Some(s)) = (field.data_type(), array.as_any().downcast_ref::<StructArray>()) {
        for (child, column) in children.iter().zip(s.columns()) {
            // A null struct makes its fields null in the flat columns.
            let column = match s.nulls() {
                Some(nulls) if nulls.null_count() > 0 => {
                    let merged = arrow::buffer::NullBuffer::union(Some(nulls), column.nulls());
                    let data = column.to_data().into_builder().nulls(merged).build().map_err(|e| e.to_string())?;
                    arrow::array::make_array(data)
                }
                _ => column.clone(),
            };
            flatten_for_csv(&format!("{name}_{}", child.name()), child, &column, out_fields, out_arrays)?;
        }
        return Ok(());
    }
    let target = match field.data_type() {
        dt if dt.is_nested() => {
            if !can_cast_types(dt, &DataType::Utf8) {
                return Err(format!("column {name:?} of type {dt} cannot be written as CSV; use json or parquet"));
            }
            DataType::Utf8
        }
        dt => utc_type(dt),
    };
    out_arrays.push(cast_to(array, &target).map_err(|e| format!("column {name:?}: {e}"))?);
    out_fields.push(Field::new(name, target, true));
    Ok(())
}

/// The batch as written in `format` (see the module documentation).
fn prepare_batch(batch: &RecordBatch, format: FileFormat) -> std::result::Result<RecordBatch, String> {
    let schema = batch.schema();
    let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = match format {
        FileFormat::Parquet => return Ok(batch.clone()),
        FileFormat::Json => {
            let mut fields = Vec::with_capacity(batch.num_columns());
            let mut arrays = Vec::with_capacity(batch.num_columns());
            for (f, a) in schema.fields().iter().zip(batch.columns()) {
                let target = utc_type(f.data_type());
                arrays.push(cast_to(a, &target).map_err(|e| format!("column {:?}: {e}", f.name()))?);
                fields.push(f.as_ref().clone().with_data_type(target));
            }
            (fields, arrays)
        }
        FileFormat::Csv => {
            let mut fields = Vec::new();
            let mut arrays = Vec::new();
            for (f, a) in schema.fields().iter().zip(batch.columns()) {
                flatten_for_csv(f.name(), f, a, &mut fields, &mut arrays)?;
            }
            let mut seen = HashSet::new();
            for f in &fields {
                if !seen.insert(f.name().as_str()) {
                    return Err(format!(
                        "flattening struct columns for CSV gives two columns named {:?}; rename one",
                        f.name()
                    ));
                }
            }
            (fields, arrays)
        }
    };
    RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        arrays,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
    .map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------
// Reading what the sink wrote
// ---------------------------------------------------------------------------------------

fn read_err(path: &Path, e: impl std::fmt::Display) -> SluiceError {
    SluiceError::Sink { name: "FileSink reader".into(), message: format!("cannot read {}: {e}", path.display()) }
}

/// Reads one listed data file into record batches; returns them and the file's schema.
fn read_data_file(out_dir: &Path, f: &ManifestFile) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let path = out_dir.join(&f.path);
    let format = FileFormat::from_path(&path)
        .ok_or_else(|| read_err(&path, "unknown file extension (expected .parquet, .json or .csv)"))?;
    let file = File::open(&path).map_err(io_err(&path))?;
    let stored: Option<SchemaRef> = match format {
        FileFormat::Json | FileFormat::Csv => {
            f.arrow_schema().map_err(|e| read_err(&path, format!("its manifest schema does not decode: {e}")))?
        }
        FileFormat::Parquet => None,
    };
    match format {
        FileFormat::Parquet => {
            let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| read_err(&path, e))?;
            let schema = builder.schema().clone();
            let reader = builder.build().map_err(|e| read_err(&path, e))?;
            let batches = reader.collect::<std::result::Result<Vec<_>, _>>().map_err(|e| read_err(&path, e))?;
            Ok((schema, batches))
        }
        FileFormat::Json => {
            let mut buf = BufReader::new(file);
            let schema = match stored {
                Some(s) => s,
                None => {
                    let (s, _) = arrow::json::reader::infer_json_schema_from_seekable(&mut buf, None)
                        .map_err(|e| read_err(&path, e))?;
                    Arc::new(s)
                }
            };
            let reader = arrow::json::ReaderBuilder::new(schema.clone()).build(buf).map_err(|e| read_err(&path, e))?;
            let batches = reader.collect::<std::result::Result<Vec<_>, _>>().map_err(|e| read_err(&path, e))?;
            Ok((schema, batches))
        }
        FileFormat::Csv => {
            let schema = match stored {
                Some(s) => s,
                None => {
                    let mut probe = BufReader::new(File::open(&path).map_err(io_err(&path))?);
                    let (s, _) = arrow::csv::reader::Format::default()
                        .with_header(true)
                        .infer_schema(&mut probe, None)
                        .map_err(|e| read_err(&path, e))?;
                    Arc::new(s)
                }
            };
            let reader = arrow::csv::ReaderBuilder::new(schema.clone())
                .with_header(true)
                .build(BufReader::new(file))
                .map_err(|e| read_err(&path, e))?;
            let batches = reader.collect::<std::result::Result<Vec<_>, _>>().map_err(|e| read_err(&path, e))?;
            Ok((schema, batches))
        }
    }
}

/// The rows of every file listed in the manifest of `out_dir`, in batch id then file
/// order, as one Polars frame (strings `String`, timestamps `Datetime(us)` read as UTC,
/// structs as Polars structs; CSV output comes back flattened). Files the manifest does
/// not list are ignored. With no listed file the frame is empty with no columns.
///
/// Used by tests to compare the output of a crashed-and-restarted query with a clean run.
///
/// # Errors
/// Those of [`read_manifest`]; [`SluiceError::Io`] naming a listed file that is missing
/// or unreadable; [`SluiceError::Sink`] naming a file that does not decode;
/// [`SluiceError::Polars`] if the files' schemas differ.
pub fn read_output(out_dir: impl AsRef<Path>) -> Result<DataFrame> {
    let out_dir = out_dir.as_ref();
    let mut schema: Option<SchemaRef> = None;
    let mut batches = Vec::new();
    for entry in read_manifest(out_dir)? {
        for f in &entry.files {
            let (s, b) = read_data_file(out_dir, f)?;
            schema.get_or_insert(s);
            batches.extend(b);
        }
    }
    match schema {
        Some(s) => record_batches_to_df(&batches, &s),
        None => Ok(DataFrame::empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names() {
        for f in FileFormat::ALL {
            assert_eq!(f.name().parse::<FileFormat>().unwrap(), f);
            assert_eq!(FileFormat::from_path(Path::new(&format!("part-00001-x.{}", f.name()))), Some(f));
        }
        assert!("orc".parse::<FileFormat>().is_err());
        assert_eq!(FileFormat::from_path(Path::new("part-00001-x.tmp")), None);
    }

    #[test]
    fn provider_needs_path() {
        let p = FileSinkProvider::new(FileFormat::Json);
        let err = p.create(&sluice_engine::Options::new()).err().expect("must fail");
        assert!(matches!(&err, SluiceError::InvalidArgument(m) if m == "the file sink needs option path"), "{err}");
        let opts = sluice_engine::Options::from_pairs([("path", "/tmp/x"), ("compression", "zstd")]);
        assert!(p.create(&opts).is_err(), "zstd is not a JSON codec");
        let pq = FileSinkProvider::new(FileFormat::Parquet);
        let sink = pq.create(&opts).expect("parquet zstd");
        assert_eq!(sink.description(), "FileSink[/tmp/x]");
    }
}
