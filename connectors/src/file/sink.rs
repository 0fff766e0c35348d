//! [`FileSink`]: Parquet, JSON lines and CSV files with a manifest for exactly-once
//! output (Spark's `FileStreamSink`); [`FileSinkProvider`] creates it by format name.
//!
//! # Layout
//! ```text
//! <out>/part-<batch id, 5 digits>-<uuid>.parquet|json|csv   data files of each batch
//! <out>/_sluice_metadata/<batch id>                        manifest entry of each batch
//! ```
//! The manifest's format, reader and writer are in [`crate::formats::manifest`].
//!
//! # Exactly once
//! Per batch the sink writes and fsyncs its data files, then writes the manifest entry
//! atomically. A batch id that already has an entry is skipped, so a batch replayed after
//! a crash is written once. Files no entry lists (left by a crash between the data and
//! the manifest write) are ignored by [`read_manifest`](crate::formats::manifest::read_manifest)
//! / [`read_output`] (and by any reader that trusts only the manifest, as Spark's does
//! with `_spark_metadata`, and as Sluice's file source does when it reads this directory
//! as a stream); the orphaned part files of a replayed batch id are deleted before it is
//! written again.
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

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parquet::basic::Compression;
use polars::prelude::DataFrame;
use sluice_engine::checkpoint::BatchId;
use sluice_engine::interop::{df_to_record_batch, record_batches_to_df};
use sluice_engine::{OutputMode, Options, Result, Sink, SinkContext, SinkProvider, SluiceError};

use super::options::{FileSinkOptions, SINK_OPTIONS};
use crate::formats::manifest::{
    METADATA_DIR, ManifestFile, check_manifest_ids, encode_fields, manifest_entry_path, read_manifest,
    read_manifest_entry, sync_dir, write_manifest_entry,
};
use crate::formats::{FileError, FileFormat};

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SluiceError + '_ {
    move |source| SluiceError::Io { path: path.display().to_string(), source }
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

    /// A sink from the writer's options (`path`, `compression`; see [`FileSinkOptions`]).
    ///
    /// # Errors
    /// As [`FileSinkOptions::new`].
    pub fn from_options(format: FileFormat, options: &Options) -> Result<Self> {
        let o = FileSinkOptions::new(format, options)?;
        let sink = Self::new(o.path, format);
        Ok(match o.compression {
            Some(compression) => Self { compression, ..sink },
            None => sink,
        })
    }

    /// Sets the Parquet compression codec (Spark's `compression` option): `snappy`
    /// (default), `zstd`, `none` / `uncompressed`. JSON and CSV accept only `none` /
    /// `uncompressed`.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] for another codec.
    pub fn with_compression(mut self, codec: &str) -> Result<Self> {
        self.compression = self.format.compression(codec)?;
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

    fn ensure_dirs(&self) -> Result<()> {
        let meta = self.out_dir.join(METADATA_DIR);
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
            self.format.writable(batch).map_err(|e| self.sink_err(format!("batch {batch_id}: {e}")))?;
        let schema = encode_fields(prepared.schema().fields());
        let file = File::create_new(&path).map_err(io_err(&path))?;
        if let Err(e) = self.format.write(&file, &prepared, self.compression) {
            let _ = fs::remove_file(&path);
            return Err(match e {
                FileError::Io(source) => SluiceError::Io { path: path.display().to_string(), source },
                FileError::Format(m) => self.sink_err(format!("writing {}: {m}", path.display())),
            });
        }
        file.sync_all().map_err(io_err(&path))?;
        let size = file.metadata().map_err(io_err(&path))?.len();
        Ok(ManifestFile { path: name, size, rows: prepared.num_rows() as u64, schema: Some(schema) })
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
        self.ensure_dirs()?;
        check_manifest_ids(&self.out_dir)
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
        write_manifest_entry(&self.out_dir, batch_id, &files)
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

fn read_err(path: &Path, e: impl std::fmt::Display) -> SluiceError {
    SluiceError::Sink { name: "FileSink reader".into(), message: format!("cannot read {}: {e}", path.display()) }
}

/// Reads one listed data file into record batches; returns them and the file's schema.
fn read_data_file(out_dir: &Path, f: &ManifestFile) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let path = out_dir.join(&f.path);
    let format = FileFormat::from_path(&path)
        .ok_or_else(|| read_err(&path, "unknown file extension (expected .parquet, .json or .csv)"))?;
    // JSON and CSV read back with their written types; Parquet files carry theirs.
    let stored: Option<SchemaRef> = match format {
        FileFormat::Json | FileFormat::Csv => {
            f.arrow_schema().map_err(|e| read_err(&path, format!("its manifest schema does not decode: {e}")))?
        }
        FileFormat::Parquet => None,
    };
    format.read_all(&path, stored).map_err(|e| match e {
        FileError::Io(source) => SluiceError::Io { path: path.display().to_string(), source },
        FileError::Format(m) => read_err(&path, m),
    })
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
    fn provider_needs_path() {
        let p = FileSinkProvider::new(FileFormat::Json);
        let err = p.create(&Options::new()).err().expect("must fail");
        assert!(matches!(&err, SluiceError::InvalidArgument(m) if m == "the file sink needs option path"), "{err}");
        let opts = Options::from_pairs([("path", "/tmp/x"), ("compression", "zstd")]);
        assert!(p.create(&opts).is_err(), "zstd is not a JSON codec");
        let pq = FileSinkProvider::new(FileFormat::Parquet);
        let sink = pq.create(&opts).expect("parquet zstd");
        assert_eq!(sink.description(), "FileSink[/tmp/x]");
    }
}
