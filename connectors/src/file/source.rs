//! The file source: a directory of JSON lines, CSV or Parquet files read as a stream
//! (Spark's `FileStreamSource`). [`FileSourceFormat`] is the registry entry,
//! [`FileSource`] the typed builder, [`FileSourceProvider`] the provider, and `FileStream`
//! the running source of one query run.
//!
//! ```text
//!  latest_offset ── list <dir> (listing.rs), unseen files, at most maxFilesPerTrigger
//!        ▼
//!  sources/<i>/<k+1>   the files taken (source_log.rs); the offset is {"logOffset": k+1}
//!        ▼
//!  get_batch(k, m) ── files of entries k+1..=m, in order ── formats::{json, csv, parquet}
//!                     decoding into the declared schema ── one Polars frame
//! ```
//!
//! # Reading a file sink's output
//! When the directory has a `_sluice_metadata` manifest (it is the output of Sluice's
//! file sink), only the files its entries list are taken, as Spark's `FileStreamSource`
//! reads a `FileStreamSink`'s output through `MetadataLogFileIndex`: part files a crashed
//! batch left without a manifest entry are never read. A corrupt manifest entry fails
//! the listing with [`SluiceError::Checkpoint`] naming the entry's file.
//!
//! # Decoding
//! The schema is required (as in Spark's `readStream`) and every batch has exactly that
//! schema, plus the corrupt-record column when `columnNameOfCorruptRecord` is set
//! (JSON and CSV). Timestamps are `Datetime(unit, None)` on the Polars side, read as
//! UTC; JSON and CSV accept RFC 3339 strings such as `2015-09-12T00:46:58.771Z`.
//!
//! JSON lines and CSV honour Spark's parse modes (option `mode`):
//! * `PERMISSIVE` (default): a malformed record becomes a row whose fields that could
//!   not be read are null (Spark 3 keeps the fields that converted; a line that is not a
//!   JSON object at all is all-null), with the raw record in the corrupt-record column.
//! * `DROPMALFORMED`: malformed records are dropped.
//! * `FAILFAST`: the first malformed record fails the batch with
//!   [`SluiceError::MalformedRecord`] naming the file and the 1-based line.
//!
//! Files are decoded whole first (the fast path); only a file that fails is decoded
//! again record by record to find its bad records, so clean input costs one pass.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, StringArray, new_null_array};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType as ArrowDataType, Schema as ArrowSchema, SchemaRef as ArrowSchemaRef};
use arrow::error::ArrowError;
use polars::prelude::{Column, DataFrame, Schema, SchemaRef};
use sluice_checkpoint::CheckpointError;
use sluice_engine::interop::record_batches_to_df;
use sluice_engine::{
    EngineSession, Offset, Options, Result, SluiceError, Source, SourceContext, SourceFormat, SourceProvider,
    SourceProviderRef, StreamingDataFrame,
};

use super::listing::{ListedFile, list};
use super::options::{FileSourceConfig, source_options};
use super::source_log::{LoggedFile, SourceLog, log_offset};
use crate::formats::manifest::has_manifest;
use crate::formats::records::{Decoded, RecordDecoding};
use crate::formats::{FileFormat, ParseMode, compression, csv, json, parquet};
use crate::storage::Dir;

/// The `json`, `csv` and `parquet` source formats of `read_stream().format(..)`;
/// [`register_all`](crate::register_all) registers one per [`FileFormat`].
///
/// Options (names case-insensitive, as in Spark; each format reads only its own, see
/// [`SourceFormat::known_options`]):
/// * `maxFilesPerTrigger`: positive integer, files per micro-batch (default: all new files).
/// * `mode`: `PERMISSIVE` (default), `DROPMALFORMED`, `FAILFAST` (JSON, CSV).
/// * `columnNameOfCorruptRecord`: name of a String column holding the raw text of
///   malformed records (null for good ones); appended last unless the schema declares it
///   (JSON, CSV).
/// * `header`: `true` or `false` (default), CSV: skip the first line.
/// * `sep` or `delimiter`: one ASCII character (default `,`), CSV.
///
/// Rejected as unsupported: `multiLine=true` (JSON, CSV), `latestFirst=true`,
/// `cleanSource` other than `off`. Options a format does not read are reported when the
/// query starts, as options nothing used.
///
/// Column types: Boolean, Int32, Int64, UInt32, UInt64, Float32, Float64, String, Date,
/// `Datetime(unit, None)`; in JSON and Parquet also `List` and `Struct` of those (a file
/// sink's `window` column reads back as a struct of two `Datetime`s), in Parquet also
/// `Duration`. CSV holds no nested types: a CSV sink's output has struct fields as
/// `<column>_<field>` columns and lists as text. A file sink's CSV output is read with
/// `header=true` unless option `header` says otherwise (the sink writes a header line).
///
/// # Static reads
/// `session.read().format("parquet" | "json" | "csv").load(path)` (Spark's `spark.read`)
/// reads a file or a directory once, with the same listing, options and decoding as the
/// stream. The schema is optional: without one it is the manifest's for a file sink's
/// output (the Arrow schema each file was written with, so JSON and CSV come back with
/// their timestamps and structs), the first file's for Parquet, inferred from the data
/// for JSON (Spark's rules: numbers, booleans, strings, arrays, objects; timestamps stay
/// strings), and every column a string for CSV (Spark's default; `inferSchema=true`
/// infers types, `header=true` takes the names from the first line, else `_c0`, `_c1`,
/// ...). Durations, which the JSON and CSV sinks write as ISO 8601 text (`PT1.5S`), read
/// back from those formats as that text.
///
/// Files taken: the regular files directly in the directory whose names start with
/// neither `.` nor `_`, oldest (modification time, then path) first. JSON and CSV files
/// ending in `.gz`, `.deflate`, `.zst`, `.bz2` or `.lz4` are decompressed (see
/// [`crate::formats::compression`]); other compressed files are refused, never read as
/// text. When the directory
/// holds a `_sluice_metadata` manifest (the output of a file sink), only the files its
/// entries list are taken (Spark's `MetadataLogFileIndex`); other files there, such as
/// part files orphaned by a crashed batch, are ignored, and a corrupt manifest entry is
/// a [`SluiceError::Checkpoint`] error naming it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSourceFormat {
    /// The file format read.
    pub kind: FileFormat,
}

impl FileSourceFormat {
    /// The `json` format (JSON lines).
    pub fn json() -> Self {
        Self { kind: FileFormat::Json }
    }
    /// The `csv` format.
    pub fn csv() -> Self {
        Self { kind: FileFormat::Csv }
    }
    /// The `parquet` format.
    pub fn parquet() -> Self {
        Self { kind: FileFormat::Parquet }
    }
}

impl SourceFormat for FileSourceFormat {
    /// A [`FileSourceProvider`] reading the directory `path`.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] when `schema` is `None`, an option is invalid, or
    /// the schema has a type file sources cannot read.
    fn create(&self, path: &str, schema: Option<SchemaRef>, options: &Options) -> Result<SourceProviderRef> {
        Ok(Arc::new(FileSourceProvider::new(self.kind, path, schema, options)?))
    }
    fn known_options(&self) -> &'static [&'static str] {
        source_options(self.kind)
    }
    /// Reads the file or directory `path` once (see [`FileSourceFormat`], "Static
    /// reads").
    ///
    /// # Errors
    /// [`SluiceError::Io`] naming a missing path or an unreadable file;
    /// [`SluiceError::InvalidArgument`] when no schema is given and none can be inferred
    /// (no data files), or for a bad option; [`SluiceError::MalformedRecord`] in FAILFAST
    /// mode.
    fn read_static(&self, path: &str, schema: Option<SchemaRef>, options: &Options) -> Result<DataFrame> {
        super::static_read::read_static(self.kind, Path::new(path), schema, options)
    }
    fn known_static_options(&self) -> &'static [&'static str] {
        super::options::static_options(self.kind)
    }
}

/// Typed builder of a file source, beside the string-option form of
/// `read_stream().format(..)`; it builds the same [`Options`]:
///
/// ```no_run
/// # use polars::prelude::*;
/// # use sluice_connectors::file::FileSource;
/// # fn main() -> sluice_engine::Result<()> {
/// let schema = Schema::from_iter([
///     Field::new("time".into(), DataType::Datetime(TimeUnit::Microseconds, None)),
///     Field::new("channel".into(), DataType::String),
/// ]);
/// let provider = FileSource::json("data/in").schema(schema).max_files_per_trigger(1).build()?;
/// # Ok(()) }
/// ```
///
/// The directory may be the output of a file sink: when it has a `_sluice_metadata`
/// manifest, only the files listed there are read (see [`FileSourceFormat`]).
#[derive(Debug, Clone)]
pub struct FileSource {
    kind: FileFormat,
    path: PathBuf,
    schema: Option<SchemaRef>,
    options: Options,
}

impl FileSource {
    /// A source of `kind` files in the directory `path`.
    pub fn new(kind: FileFormat, path: impl AsRef<Path>) -> Self {
        Self { kind, path: path.as_ref().to_path_buf(), schema: None, options: Options::new() }
    }
    /// JSON lines files in `path`.
    pub fn json(path: impl AsRef<Path>) -> Self {
        Self::new(FileFormat::Json, path)
    }
    /// CSV files in `path`.
    pub fn csv(path: impl AsRef<Path>) -> Self {
        Self::new(FileFormat::Csv, path)
    }
    /// Parquet files in `path`.
    pub fn parquet(path: impl AsRef<Path>) -> Self {
        Self::new(FileFormat::Parquet, path)
    }
    /// The schema of the rows (required for a stream). Timestamps are
    /// `Datetime(unit, None)`, read as UTC; the types are listed in [`FileSourceFormat`].
    pub fn schema(mut self, schema: impl Into<SchemaRef>) -> Self {
        self.schema = Some(schema.into());
        self
    }
    /// At most `n` new files per micro-batch (Spark's `maxFilesPerTrigger`; `n >= 1`).
    pub fn max_files_per_trigger(self, n: usize) -> Self {
        self.option("maxFilesPerTrigger", n)
    }
    /// The parse mode for malformed records (Spark's `mode`; JSON and CSV).
    pub fn mode(self, mode: ParseMode) -> Self {
        self.option("mode", mode.name())
    }
    /// The String column receiving the raw text of malformed records (Spark's
    /// `columnNameOfCorruptRecord`; JSON and CSV).
    pub fn column_name_of_corrupt_record(self, name: &str) -> Self {
        self.option("columnNameOfCorruptRecord", name)
    }
    /// Whether CSV files start with a header line to skip (Spark's `header`, default false).
    pub fn header(self, header: bool) -> Self {
        self.option("header", header)
    }
    /// The CSV field delimiter, one ASCII character (Spark's `sep`, default `,`).
    pub fn delimiter(self, delimiter: char) -> Self {
        self.option("sep", delimiter)
    }
    /// Any option of [`FileSourceFormat`], by Spark's name.
    pub fn option(mut self, key: &str, value: impl ToString) -> Self {
        self.options.set(key, value);
        self
    }
    /// The provider to hand to `Session::stream_from`.
    ///
    /// # Errors
    /// As [`FileSourceProvider::new`].
    pub fn build(self) -> Result<SourceProviderRef> {
        Ok(Arc::new(self.provider()?))
    }
    /// The typed provider.
    ///
    /// # Errors
    /// As [`FileSourceProvider::new`].
    pub fn provider(self) -> Result<FileSourceProvider> {
        FileSourceProvider::new(self.kind, &self.path, self.schema, &self.options)
    }
    /// Reads everything once into a static frame (Spark's batch `spark.read`), e.g. for
    /// the static side of a stream-static join: `path` is one file, or a directory whose
    /// files are read in (modification time, path) order (only manifest-listed ones for
    /// a file sink's folder). Same options and parse modes as the stream; without a
    /// schema it is inferred as `session.read()` does (see [`FileSourceFormat`]).
    ///
    /// # Errors
    /// As [`FileSourceProvider::new`]; [`SluiceError::Io`] naming an unreadable file;
    /// [`SluiceError::MalformedRecord`] in FAILFAST mode.
    pub fn read_static(self) -> Result<DataFrame> {
        super::static_read::read_static(self.kind, &self.path, self.schema, &self.options)
    }
    /// A streaming data frame reading this source in `session`.
    ///
    /// # Errors
    /// As [`FileSourceProvider::new`].
    pub fn to_df(self, session: &EngineSession) -> Result<StreamingDataFrame> {
        Ok(session.stream_from(self.build()?))
    }
}

/// Creates [`Source`]s reading one directory; built by [`FileSource`] or
/// [`FileSourceFormat`]. Offsets are `{"logOffset": k}`: the id of the last source-log
/// entry (`sources/<i>/<k>`) included.
#[derive(Debug, Clone)]
pub struct FileSourceProvider {
    cfg: Arc<FileSourceConfig>,
}

impl FileSourceProvider {
    /// A provider reading `kind` files in the directory `path` with `schema` and Spark
    /// options (see [`FileSourceFormat`]). The directory need not exist yet; listing a
    /// missing directory fails the batch.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] when `schema` is `None` ("file sources need a schema
    /// ..."), empty, has a type file sources cannot read, or an option is invalid.
    pub fn new(kind: FileFormat, path: impl AsRef<Path>, schema: Option<SchemaRef>, options: &Options) -> Result<Self> {
        Ok(Self { cfg: Arc::new(FileSourceConfig::new(kind, path.as_ref(), schema, options)?) })
    }
    /// The directory read (absolute).
    pub fn path(&self) -> &Path {
        &self.cfg.dir
    }
    /// The file format read.
    pub fn format(&self) -> FileFormat {
        self.cfg.kind
    }
}

impl SourceProvider for FileSourceProvider {
    fn description(&self) -> String {
        self.cfg.description()
    }
    fn schema(&self) -> SchemaRef {
        self.cfg.schema.clone()
    }
    fn create(&self) -> Result<Box<dyn Source>> {
        Ok(Box::new(FileStream::new(self.cfg.clone())))
    }
}

/// One query run's file source (Spark's `FileStreamSource`).
struct FileStream {
    cfg: Arc<FileSourceConfig>,
    /// The files taken so far and the entries not yet committed.
    log: SourceLog,
    /// `Trigger::AvailableNow`: the files present when the query started.
    available_now: Option<HashSet<String>>,
    /// Unseen files left by the latest listing.
    backlog: Option<u64>,
}

impl FileStream {
    fn new(cfg: Arc<FileSourceConfig>) -> Self {
        Self { cfg, log: SourceLog::default(), available_now: None, backlog: None }
    }

    fn parse_offset(&self, offset: Option<&Offset>) -> Result<u64> {
        match offset {
            None => Ok(0),
            Some(v) => v.get("logOffset").and_then(serde_json::Value::as_u64).ok_or_else(|| {
                self.cfg.source_err(format!("offset {v} is not a file source offset {{\"logOffset\": <n>}}"))
            }),
        }
    }

    /// Rebuilds the set of files taken from the whole source log.
    fn load_log(&mut self, ctx: SourceContext<'_>) -> Result<()> {
        self.log.load(ctx)?;
        tracing::debug!(
            source = %self.cfg.description(),
            entries = self.log.cached(),
            files = self.log.seen.len(),
            "file source log loaded"
        );
        Ok(())
    }

    fn ensure_initialized(&mut self, ctx: SourceContext<'_>) -> Result<()> {
        self.log.ensure_loaded(ctx)
    }
}

impl Source for FileStream {
    fn description(&self) -> String {
        self.cfg.description()
    }

    fn schema(&self) -> SchemaRef {
        self.cfg.schema.clone()
    }

    fn initialize(&mut self, ctx: SourceContext<'_>) -> Result<()> {
        self.load_log(ctx)
    }

    fn prepare_for_available_now(&mut self, ctx: SourceContext<'_>) -> Result<()> {
        self.ensure_initialized(ctx)?;
        let snapshot: HashSet<String> = list(&self.cfg.store)?.into_iter().map(|f| f.path).collect();
        let backlog = snapshot.iter().filter(|p| !self.log.seen.contains(*p)).count();
        self.backlog = Some(backlog as u64);
        self.available_now = Some(snapshot);
        Ok(())
    }

    fn latest_offset(
        &mut self,
        ctx: SourceContext<'_>,
        start: Option<&Offset>,
        all_available: bool,
    ) -> Result<Option<Offset>> {
        self.ensure_initialized(ctx)?;
        let k = self.parse_offset(start)?;
        let missing = |reason: String| {
            let log = ctx.checkpoint.log::<serde_json::Value>(ctx.log_name());
            SluiceError::Checkpoint(CheckpointError::Missing { path: ctx.checkpoint.display_path(&log.path(k)), reason })
        };
        match self.log.latest_id {
            // Planned before a crash but never run: reuse, never re-plan.
            Some(latest) if latest > k => {
                let id = if all_available { latest } else { k + 1 };
                tracing::debug!(source = %self.cfg.description(), id, "reusing a planned source log entry");
                return Ok(Some(log_offset(id)));
            }
            Some(latest) if latest < k => {
                return Err(missing(format!(
                    "the offset log says the file source reached logOffset {k} but its log ends at {latest}"
                )));
            }
            None if k > 0 => {
                return Err(missing(format!(
                    "the offset log says the file source reached logOffset {k} but its log is empty"
                )));
            }
            _ => {}
        }

        let mut new_files: Vec<ListedFile> = list(&self.cfg.store)?
            .into_iter()
            .filter(|f| !self.log.seen.contains(&f.path))
            .filter(|f| self.available_now.as_ref().is_none_or(|s| s.contains(&f.path)))
            .collect();
        let unseen = new_files.len();
        if !all_available {
            if let Some(max) = self.cfg.max_files_per_trigger {
                new_files.truncate(max);
            }
        }
        self.backlog = Some((unseen - new_files.len()) as u64);
        if new_files.is_empty() {
            return Ok(start.cloned());
        }

        let id = k + 1;
        let files: Vec<LoggedFile> = new_files
            .into_iter()
            .map(|f| LoggedFile { path: f.path, timestamp: (f.mtime_ns.div_euclid(1_000_000)) as i64 })
            .collect();
        let count = files.len();
        self.log.add(ctx, id, files)?;
        tracing::debug!(source = %self.cfg.description(), id, files = count, "planned new files");
        Ok(Some(log_offset(id)))
    }

    fn get_batch(&mut self, ctx: SourceContext<'_>, start: Option<&Offset>, end: &Offset) -> Result<DataFrame> {
        self.ensure_initialized(ctx)?;
        let (s, e) = (self.parse_offset(start)?, self.parse_offset(Some(end))?);
        if e < s {
            return Err(self.cfg.source_err(format!("end offset {e} is before start offset {s}")));
        }
        let mut batches = Vec::new();
        let sink_output = is_sink_output(&self.cfg.store)?;
        for id in s + 1..=e {
            for file in self.log.files_of(ctx, id)? {
                batches.push(read_file(&self.cfg, &file.path, sink_output)?);
            }
        }
        let df = record_batches_to_df(&batches, &self.cfg.out_schema)?;
        conform(df, &self.cfg.schema)
    }

    fn commit(&mut self, _ctx: SourceContext<'_>, end: &Offset) -> Result<()> {
        let e = self.parse_offset(Some(end))?;
        self.log.commit(e);
        Ok(())
    }

    fn backlog(&self) -> Option<u64> {
        match &self.available_now {
            Some(snapshot) => Some(snapshot.iter().filter(|p| !self.log.seen.contains(*p)).count() as u64),
            None => self.backlog,
        }
    }
}

/// Whether `dir` is a file sink's output (it has a `_sluice_metadata` manifest).
pub(crate) fn is_sink_output(dir: &Dir) -> Result<bool> {
    has_manifest(dir)
}

/// Casts columns whose Polars type differs from the declared one (e.g. after arrow's
/// string view conversion), keeping the declared order.
pub(crate) fn conform(df: DataFrame, schema: &Schema) -> Result<DataFrame> {
    let same = df.width() == schema.len()
        && df.columns().iter().zip(schema.iter()).all(|(c, (n, dt))| c.name() == n && c.dtype() == dt);
    if same {
        return Ok(df);
    }
    let height = df.height();
    let cols = schema
        .iter()
        .map(|(name, dtype)| {
            let c = df.column(name.as_str())?;
            Ok(if c.dtype() == dtype { c.clone() } else { c.cast(dtype)? })
        })
        .collect::<Result<Vec<Column>>>()?;
    Ok(DataFrame::new(height, cols)?)
}

/// Reads one file into a batch of the output schema; `sink_output`: the file is part of
/// a file sink's output (a CSV one has a header line). Columns of the schema that the
/// file's path names as partition directories (`col=value/`, Hive-style, as the file
/// sink's `partitionBy` writes them) are taken from the path, cast to their declared
/// type, not from the file.
pub(crate) fn read_file(cfg: &FileSourceConfig, path: &str, sink_output: bool) -> Result<RecordBatch> {
    let from_path = partition_columns(cfg, path);
    let read_schema: ArrowSchemaRef = if from_path.is_empty() {
        cfg.data_schema.clone()
    } else {
        let fields: Vec<_> = cfg
            .data_schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(i, _)| !from_path.iter().any(|(j, _)| j == i))
            .map(|(_, f)| f.clone())
            .collect();
        Arc::new(ArrowSchema::new(fields))
    };
    let how = RecordDecoding { schema: &read_schema, ..cfg.decoding() };
    let bytes = cfg.store.read(&cfg.store.object_of(path)?)?;
    let mut decoded = match cfg.kind {
        FileFormat::Json | FileFormat::Csv => {
            // Decompressed by extension; a compressed file is never parsed as text.
            let bytes = compression::text_of(path, bytes)?;
            match cfg.kind {
                FileFormat::Json => json::decode(&how, path, &bytes)?,
                _ => csv::decode(&cfg.csv_for(sink_output), &how, path, &bytes)?,
            }
        }
        FileFormat::Parquet => {
            let batches = parquet::read_projected(&read_schema, path, bytes, &|m| cfg.source_err(m))?;
            Decoded { batches, corrupt: Vec::new() }
        }
    };
    if !from_path.is_empty() {
        let mut full = Vec::with_capacity(decoded.batches.len());
        for b in &decoded.batches {
            let mut cols = b.columns().to_vec();
            for (i, value) in &from_path {
                let field = cfg.data_schema.field(*i);
                cols.insert(*i, super::partition::constant_column(field, value.as_deref(), b.num_rows(), path)?);
            }
            full.push(
                RecordBatch::try_new_with_options(
                    cfg.data_schema.clone(),
                    cols,
                    &RecordBatchOptions::new().with_row_count(Some(b.num_rows())),
                )
                .map_err(|e| cfg.source_err(format!("{path}: {e}")))?,
            );
        }
        decoded.batches = full;
    }
    assemble(cfg, path, decoded)
}

/// The columns of the source's schema (index in `data_schema`, ascending) whose values
/// `path` holds in a `col=value/` directory below the source's directory.
fn partition_columns(cfg: &FileSourceConfig, path: &str) -> Vec<(usize, Option<String>)> {
    let Some(rel) = path.strip_prefix(&*cfg.dir.to_string_lossy()).and_then(|r| r.strip_prefix('/')) else {
        return Vec::new();
    };
    let values = super::partition::path_values(rel);
    let mut out: Vec<(usize, Option<String>)> = values
        .into_iter()
        .filter_map(|(k, v)| cfg.data_schema.index_of(&k).ok().map(|i| (i, v)))
        .collect();
    out.sort_by_key(|(i, _)| *i);
    out.dedup_by_key(|(i, _)| *i);
    out
}

/// Concatenates a file's batches and inserts the corrupt-record column.
fn assemble(cfg: &FileSourceConfig, path: &str, decoded: Decoded) -> Result<RecordBatch> {
    let err = |e: ArrowError| cfg.source_err(format!("{path}: {e}"));
    let data = concat_batches(&cfg.data_schema, &decoded.batches).map_err(err)?;
    let rows = data.num_rows();
    let mut columns: Vec<ArrayRef> = data.columns().to_vec();
    if let Some(i) = cfg.corrupt_index {
        let corrupt: ArrayRef = if decoded.corrupt.len() == rows {
            Arc::new(StringArray::from(decoded.corrupt))
        } else {
            new_null_array(&ArrowDataType::Utf8, rows)
        };
        columns.insert(i, corrupt);
    }
    RecordBatch::try_new_with_options(
        cfg.out_schema.clone(),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .map_err(err)
}

#[cfg(test)]
mod tests {
    use arrow::array::Array;
    use polars::prelude::{DataType, Field, TimeUnit};

    use super::*;

    fn cfg(kind: FileFormat, options: &[(&str, &str)]) -> FileSourceConfig {
        let schema = Schema::from_iter([
            Field::new("ts".into(), DataType::Datetime(TimeUnit::Microseconds, None)),
            Field::new("v".into(), DataType::Float64),
            Field::new("n".into(), DataType::Int64),
        ]);
        let options = Options::from_pairs(options.iter().copied());
        FileSourceConfig::new(kind, Path::new("/tmp/in"), Some(Arc::new(schema)), &options).unwrap()
    }

    #[test]
    fn json_fast_path_rejects_two_objects_on_a_line_and_split_objects() {
        let c = cfg(FileFormat::Json, &[("mode", "DROPMALFORMED")]);
        let text = b"{\"v\": 1}{\"v\": 2}\n{\"v\":\n 3}\n{\"v\": 4}\n";
        let d = json::decode(&c.decoding(), "f", text).unwrap();
        let rows: usize = d.batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 1, "only the last line is one JSON object");
    }

    #[test]
    fn spark_number_rules() {
        let c = cfg(FileFormat::Json, &[]);
        let text = b"{\"ts\": 60, \"v\": \"NaN\", \"n\": 1.5}\n";
        let b = assemble(&c, "f", json::decode(&c.decoding(), "f", text).unwrap()).unwrap();
        let ts = b.column(0).as_any().downcast_ref::<arrow::array::TimestampMicrosecondArray>().unwrap();
        assert_eq!(ts.value(0), 60_000_000, "integral JSON timestamps are seconds");
        let v = b.column(1).as_any().downcast_ref::<arrow::array::Float64Array>().unwrap();
        assert!(v.value(0).is_nan());
        assert!(b.column(2).is_null(0), "1.5 is not a long: the field is null");
    }
}
