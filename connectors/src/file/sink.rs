//! [`FileSink`]: Parquet, JSON lines and CSV files with a manifest for exactly-once
//! output (Spark's `FileStreamSink`); [`FileSinkProvider`] creates it by format name.
//!
//! # Layout
//! ```text
//! <out>/part-<batch id, 5 digits>-<uuid>.parquet|json|csv[.gz|.zst]   data files of each batch
//! <out>/<col>=<value>/.../part-…                                       with partitionBy (Hive-style)
//! <out>/_sluice_metadata/<batch id>                                    manifest entry of each batch
//! ```
//! `<out>` is a local directory or `s3://bucket/prefix`: every read, list and write goes
//! through object_store ([`crate::storage::Dir`]), `LocalFileSystem` (fsync on) or S3
//! (the writer's `s3.*` options, see [`sluice_checkpoint::store`]), one code path. The
//! manifest's format, reader and writer are in [`crate::formats::manifest`].
//!
//! # Options (Spark's)
//! * `compression`: Parquet `snappy` (default), `zstd`, `gzip`, `none`; JSON and CSV
//!   `gzip` or `zstd` compress whole files (`.json.gz`, `.csv.zst`; readers decompress by
//!   extension), `none` (default).
//! * `partitionBy` (or `DataStreamWriter::partition_by`): the rows of each distinct value
//!   of the columns go under `col=value/` directories, the columns left out of the files;
//!   the manifest lists each file with its partition path and the columns' types, and
//!   the readers put the columns back (see [`super::partition`]).
//! * `maxRecordsPerFile`: at most that many rows per data file (0: no limit).
//!
//! # Exactly once
//! Per batch the sink writes its data files whole (a local file through a fsynced
//! temporary renamed into place, its directory fsynced; an S3 object in one PUT), then
//! the manifest entry, create-only (a hard link on a local disk, `If-None-Match: *` on
//! S3): the batch's files appear at once, with the entry. A batch id that already has an
//! entry is skipped, so a batch replayed after a crash is written once; of two writers of
//! one batch (a run that lost its checkpoint and had not noticed yet) only one entry
//! lands, and the other's files are deleted. Files no entry lists (left by a crash
//! between the data and the manifest write) are ignored by
//! [`read_manifest`](crate::formats::manifest::read_manifest) / [`read_output`] (and by
//! any reader that trusts only the manifest, as Spark's does with `_spark_metadata`, and
//! as Sluice's file source does when it reads this directory as a stream); the orphaned
//! part files of a replayed batch id are deleted before it is written again.
//!
//! # Types
//! Rows come from `sluice_engine::interop::df_to_record_batch`, which tags event time
//! UTC; the formats write them as they are:
//! * Parquet (snappy by default): the batch's Arrow schema as is (see
//!   [`crate::formats::parquet`]).
//! * JSON lines: one object per row, structs as nested objects, null fields omitted
//!   (Spark's `ignoreNullFields=true`), timestamps as RFC 3339 UTC strings
//!   (`"2024-01-01T00:05:00Z"`, with a fraction when not whole seconds).
//! * CSV (with a header line): struct fields flattened into `<col>_<field>` columns
//!   (recursively), list columns written as their text form (`[1, 2]`), timestamps as in
//!   JSON, nulls as empty fields.

use std::path::{Path, PathBuf};

use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::{FieldRef, Fields, Schema, SchemaRef};
use bytes::Bytes;
use parquet::basic::Compression;
use polars::prelude::DataFrame;
use sluice_checkpoint::store::StoreOptions;
use sluice_engine::checkpoint::BatchId;
use sluice_engine::interop::{df_to_record_batch, record_batches_to_df};
use sluice_engine::{OutputMode, Options, Result, Sink, SinkContext, SinkProvider, SluiceError};

use super::options::{FileSinkOptions, SINK_OPTIONS};
use super::partition::{self, Partition};
use crate::formats::manifest::{METADATA_DIR, ManifestFile, encode_fields, entry_object, list_ids, read_all, read_entry, write_entry};
use crate::formats::compression::{self, Codec};
use crate::formats::{FileError, FileFormat};
use crate::storage::{Dir, store_options};

/// Writes a streaming query's output as files plus a manifest, exactly once per batch
/// (Spark's `FileStreamSink`). Append output mode only.
///
/// See the [module documentation](self) for the layout, the protocol and how types are
/// written.
#[derive(Debug, Clone)]
pub struct FileSink {
    /// The output location as given: a local directory or `s3://bucket/prefix`.
    out_dir: PathBuf,
    format: FileFormat,
    compression: Compression,
    /// JSON and CSV: the codec of whole files (`compression` gzip or zstd).
    text_codec: Option<Codec>,
    /// `partitionBy`: Hive-style `col=value/` directories.
    partition_by: Vec<String>,
    /// `maxRecordsPerFile`.
    max_records_per_file: Option<usize>,
    /// The `s3.*` options for an S3 output.
    store_options: StoreOptions,
    /// The output directory's store, opened by the first call that needs it.
    dir: Option<Dir>,
}

impl FileSink {
    /// A sink writing `format` files into `out_dir` (a local directory, created on the
    /// first batch if missing, or `s3://bucket/prefix` with S3 configured by the AWS
    /// environment variables). Parquet files are snappy-compressed (Spark's default).
    pub fn new(out_dir: impl Into<PathBuf>, format: FileFormat) -> Self {
        Self {
            out_dir: out_dir.into(),
            format,
            compression: Compression::SNAPPY,
            text_codec: None,
            partition_by: Vec::new(),
            max_records_per_file: None,
            store_options: StoreOptions::default(),
            dir: None,
        }
    }

    /// A sink from the writer's options (`path`, `compression`, and `s3.*` for an S3
    /// path; see [`FileSinkOptions`]).
    ///
    /// # Errors
    /// As [`FileSinkOptions::new`].
    pub fn from_options(format: FileFormat, options: &Options) -> Result<Self> {
        let o = FileSinkOptions::new(format, options)?;
        let store_options = store_options(&o.path.to_string_lossy(), options);
        let sink = Self {
            store_options,
            text_codec: o.text_codec,
            partition_by: o.partition_by,
            max_records_per_file: o.max_records_per_file,
            ..Self::new(o.path, format)
        };
        Ok(match o.compression {
            Some(compression) => Self { compression, ..sink },
            None => sink,
        })
    }

    /// Sets the compression codec (Spark's `compression` option): Parquet `snappy`
    /// (default), `zstd`, `gzip`, `none` / `uncompressed`; JSON and CSV `gzip`
    /// (`.json.gz`), `zstd` (`.csv.zst`), `none` / `uncompressed` (default).
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] for another codec.
    pub fn with_compression(mut self, codec: &str) -> Result<Self> {
        self.compression = self.format.compression(codec)?;
        self.text_codec = self.format.text_codec(codec)?;
        Ok(self)
    }

    /// Partitions the output by `columns` (Spark's `partitionBy`; see
    /// [`partition`](super::partition)).
    pub fn with_partition_by<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.partition_by = columns.into_iter().map(Into::into).collect();
        self
    }

    /// At most `n` rows per data file (Spark's `maxRecordsPerFile`; `None`: no limit).
    pub fn with_max_records_per_file(mut self, n: Option<usize>) -> Self {
        self.max_records_per_file = n.filter(|n| *n > 0);
        self
    }

    /// The output directory (a local path, or the `s3://` URL as given).
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

    /// The output directory's store (opened on first use).
    fn dir(&mut self) -> Result<Dir> {
        if self.dir.is_none() {
            self.dir = Some(Dir::open_with(&self.out_dir.to_string_lossy(), &self.store_options)?);
        }
        Ok(self.dir.clone().expect("opened above"))
    }

    /// Creates a local output directory and its manifest folder (an S3 prefix needs none).
    fn ensure_dirs(dir: &Dir) -> Result<()> {
        if let Some(local) = dir.local_dir() {
            let meta = local.join(METADATA_DIR);
            std::fs::create_dir_all(&meta).map_err(|source| SluiceError::Io { path: meta.display().to_string(), source })?;
        }
        Ok(())
    }

    /// Deletes the part files of `batch_id` left by an attempt that crashed before its
    /// manifest entry was written. Best effort: a file that cannot be deleted stays and is
    /// ignored by readers.
    fn remove_orphans(&self, dir: &Dir, batch_id: BatchId) -> Result<()> {
        let prefix = format!("part-{batch_id:05}-");
        let listed = if self.partition_by.is_empty() { dir.list_objects(dir.root())? } else { dir.list(None)? };
        for meta in listed {
            let object = meta.location;
            let Some(name) = object.filename() else { continue };
            if name.starts_with(&prefix) && FileFormat::of_data_file(name).is_some() {
                match dir.delete(&object) {
                    Ok(()) => {
                        tracing::info!(path = %dir.url_of(&object), batch_id, "removed orphaned part file of a replayed batch")
                    }
                    Err(e) => {
                        tracing::warn!(path = %dir.url_of(&object), error = %e, "cannot remove orphaned part file; readers ignore it")
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes `batch` to a new file in the output directory (under `sub`, a partition's
    /// `col=value/...` directories, when not empty), whole (on a local disk fsynced with
    /// its directory); returns its manifest line.
    fn write_data_file(
        &self,
        dir: &Dir,
        batch_id: BatchId,
        sub: &str,
        batch: &RecordBatch,
        partitions: Option<&serde_json::Value>,
    ) -> Result<ManifestFile> {
        let mut name = format!("part-{batch_id:05}-{}.{}", uuid::Uuid::new_v4(), self.format.name());
        if let Some(codec) = self.text_codec {
            name = format!("{name}.{}", codec.extension());
        }
        let rel = if sub.is_empty() { name } else { format!("{sub}/{name}") };
        let object = dir.child(&rel)?;
        let prepared =
            self.format.writable(batch).map_err(|e| self.sink_err(format!("batch {batch_id}: {e}")))?;
        let schema = encode_fields(prepared.schema().fields());
        let mut buf = Vec::new();
        self.format.write(&mut buf, &prepared, self.compression).map_err(|e| match e {
            FileError::Io(source) => SluiceError::Io { path: dir.url_of(&object), source },
            FileError::Format(m) => self.sink_err(format!("writing {}: {m}", dir.url_of(&object))),
        })?;
        if let Some(codec) = self.text_codec {
            buf = codec.compress(&buf).map_err(|source| SluiceError::Io { path: dir.url_of(&object), source })?;
        }
        let size = buf.len() as u64;
        dir.put(&object, Bytes::from(buf), false)?;
        Ok(ManifestFile {
            path: rel,
            size,
            rows: prepared.num_rows() as u64,
            schema: Some(schema),
            partitions: partitions.cloned(),
        })
    }

    /// Writes the rows of a batch as data files: one per partition (all rows when not
    /// partitioned), each split in files of at most `maxRecordsPerFile` rows.
    fn write_data_files(&self, dir: &Dir, batch_id: BatchId, batch: &RecordBatch) -> Result<Vec<ManifestFile>> {
        let (partitions, parts) = if self.partition_by.is_empty() {
            (None, vec![Partition { dir: String::new(), rows: batch.clone() }])
        } else {
            let (fields, parts) = partition::split(batch, &self.partition_by)?;
            (Some(encode_fields(&Fields::from(fields))), parts)
        };
        let mut files = Vec::new();
        for p in parts {
            let n = p.rows.num_rows();
            let per_file = self.max_records_per_file.unwrap_or(n).max(1);
            let mut offset = 0;
            while offset < n {
                let len = per_file.min(n - offset);
                files.push(self.write_data_file(dir, batch_id, &p.dir, &p.rows.slice(offset, len), partitions.as_ref())?);
                offset += len;
            }
        }
        Ok(files)
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

    /// Creates the output and manifest directories, and checks that the manifest has no
    /// gap (a lost entry would hide that batch's output from every reader).
    ///
    /// # Errors
    /// [`SluiceError::Analysis`] for an output mode other than Append;
    /// [`SluiceError::Io`] naming the directory that cannot be created;
    /// [`SluiceError::Checkpoint`] (`Missing`) naming a missing manifest entry.
    fn initialize(&mut self, ctx: &SinkContext) -> Result<()> {
        if !self.supports_output_mode(ctx.output_mode) {
            return Err(SluiceError::analysis(format!(
                "the {} file sink supports only the Append output mode, not {}",
                self.format, ctx.output_mode
            )));
        }
        let dir = self.dir()?;
        Self::ensure_dirs(&dir)?;
        list_ids(&dir).map(|_| ())
    }

    /// Writes the rows of `batch_id` as one data file (none when `data` has no rows) and
    /// then its manifest entry; skips the batch if its entry exists.
    ///
    /// # Errors
    /// [`SluiceError::Io`] naming the file on I/O failure; [`SluiceError::Checkpoint`]
    /// (`Corrupt`) if the batch's existing manifest entry is unreadable;
    /// [`SluiceError::Sink`] if the rows cannot be encoded in the format.
    fn add_batch(&mut self, batch_id: BatchId, data: &DataFrame) -> Result<()> {
        let dir = self.dir()?;
        Self::ensure_dirs(&dir)?;
        if dir.head(&entry_object(&dir, batch_id)?)?.is_some() {
            // Validate it: a damaged entry must not be silently trusted.
            let entry = read_entry(&dir, batch_id)?;
            tracing::info!(batch_id, files = entry.files.len(), sink = %self.description(),
                "batch already in the manifest; skipping (replay)");
            return Ok(());
        }
        self.remove_orphans(&dir, batch_id)?;
        let mut files = Vec::new();
        if data.height() > 0 {
            let batch = df_to_record_batch(data)?;
            files = self.write_data_files(&dir, batch_id, &batch)?;
        }
        if !write_entry(&dir, batch_id, &files)? {
            // Another writer of this batch (a run that lost the checkpoint but had not
            // noticed yet) created the entry between our check and our write: its files
            // are the batch's output, ours are orphans.
            for f in &files {
                let _ = dir.delete(&dir.child(&f.path)?);
            }
            tracing::warn!(batch_id, sink = %self.description(),
                "another writer wrote this batch's manifest entry first; its files are the batch's output");
        }
        Ok(())
    }
}

/// Creates [`FileSink`]s for one format from the writer's options;
/// [`register_all`](crate::register_all) registers one per format as `"parquet"`,
/// `"json"` and `"csv"`.
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
    fn create(&self, options: &Options) -> Result<Box<dyn Sink>> {
        Ok(Box::new(FileSink::from_options(self.format, options)?))
    }
    fn known_options(&self) -> &'static [&'static str] {
        SINK_OPTIONS
    }
}

// ---------------------------------------------------------------------------------------
// Reading what the sink wrote
// ---------------------------------------------------------------------------------------

fn read_err(path: &str, e: impl std::fmt::Display) -> SluiceError {
    SluiceError::Sink { name: "FileSink reader".into(), message: format!("cannot read {path}: {e}") }
}

/// Reads one listed data file into record batches; returns them and the file's schema.
fn read_data_file(dir: &Dir, f: &ManifestFile) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let object = dir.child(&f.path)?;
    let path = dir.url_of(&object);
    let (format, codec) = FileFormat::of_data_file(&f.path)
        .ok_or_else(|| read_err(&path, "unknown file extension (expected .parquet, .json or .csv)"))?;
    // JSON and CSV read back with their written types; Parquet files carry theirs.
    let stored: Option<SchemaRef> = match format {
        FileFormat::Json | FileFormat::Csv => {
            f.arrow_schema().map_err(|e| read_err(&path, format!("its manifest schema does not decode: {e}")))?
        }
        FileFormat::Parquet => None,
    };
    let mut bytes = dir.read(&object)?;
    if codec.is_some() {
        bytes = compression::text_of(&path, bytes)?;
    }
    let (schema, batches) = format.read_bytes(bytes, stored).map_err(|e| match e {
        FileError::Io(source) => SluiceError::Io { path: path.clone(), source },
        FileError::Format(m) => read_err(&path, m),
    })?;
    // A partitioned output's columns from the path, after the file's (as Spark puts them).
    let pfields = f.partition_fields().map_err(|e| read_err(&path, format!("its manifest partitions do not decode: {e}")))?;
    if pfields.is_empty() {
        return Ok((schema, batches));
    }
    let values = partition::path_values(&f.path);
    let mut fields: Vec<FieldRef> = schema.fields().iter().cloned().collect();
    fields.extend(pfields.iter().cloned());
    let full = Arc::new(Schema::new(fields));
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        let mut cols = b.columns().to_vec();
        for pf in pfields.iter() {
            let v = values.iter().find(|(k, _)| k == pf.name()).ok_or_else(|| {
                read_err(&path, format!("its path has no directory for partition column {:?}", pf.name()))
            })?;
            cols.push(partition::constant_column(pf, v.1.as_deref(), b.num_rows(), &path)?);
        }
        out.push(
            RecordBatch::try_new_with_options(full.clone(), cols, &RecordBatchOptions::new().with_row_count(Some(b.num_rows())))
                .map_err(|e| read_err(&path, e))?,
        );
    }
    Ok((full, out))
}

/// The rows of every file listed in the manifest of `out_dir` (a local directory, or
/// `s3://bucket/prefix` with S3 configured by the AWS environment variables; see
/// [`read_output_with`] for options), in batch id then file order, as one Polars frame
/// (strings `String`, timestamps `Datetime(us)` read as UTC, structs as Polars structs;
/// CSV output comes back flattened). Files the manifest does not list are ignored. With
/// no listed file the frame is empty with no columns.
///
/// Used by tests to compare the output of a crashed-and-restarted query with a clean run.
///
/// # Errors
/// Those of [`read_manifest`](crate::formats::manifest::read_manifest);
/// [`SluiceError::Io`] naming a listed file that is missing or unreadable;
/// [`SluiceError::Sink`] naming a file that does not decode; [`SluiceError::Polars`] if
/// the files' schemas differ.
pub fn read_output(out_dir: impl AsRef<Path>) -> Result<DataFrame> {
    read_output_with(&out_dir.as_ref().to_string_lossy(), &StoreOptions::default())
}

/// [`read_output`] of `location` with the S3 options `s3` (the `s3.*` options without
/// their prefix, e.g. `endpoint`, `region`, `accessKeyId`).
///
/// # Errors
/// As [`read_output`]; [`SluiceError::InvalidArgument`] for a bad location or option.
pub fn read_output_with(location: &str, s3: &StoreOptions) -> Result<DataFrame> {
    let dir = Dir::open_with(location, s3)?;
    let mut schema: Option<SchemaRef> = None;
    let mut batches = Vec::new();
    for entry in read_all(&dir)? {
        for f in &entry.files {
            let (s, b) = read_data_file(&dir, f)?;
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
    fn provider_needs_path() {
        let p = FileSinkProvider::new(FileFormat::Json);
        let err = p.create(&Options::new()).err().expect("must fail");
        assert!(matches!(&err, SluiceError::InvalidArgument(m) if m == "the file sink needs option path"), "{err}");
        let opts = Options::from_pairs([("path", "/tmp/x"), ("compression", "zstd")]);
        assert!(p.create(&opts).is_ok(), "zstd compresses JSON files whole");
        let snappy = Options::from_pairs([("path", "/tmp/x"), ("compression", "snappy")]);
        assert!(p.create(&snappy).is_err(), "snappy is not a JSON file codec");
        let pq = FileSinkProvider::new(FileFormat::Parquet);
        let sink = pq.create(&opts).expect("parquet zstd");
        assert_eq!(sink.description(), "FileSink[/tmp/x]");
    }
}
