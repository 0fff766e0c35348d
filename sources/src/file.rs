//! The file source: a directory of JSON lines, CSV or Parquet files read as a stream
//! (Spark's `FileStreamSource`).
//!
//! ```text
//!  latest_offset ── list <dir> (non-recursive; skip .hidden and _hidden names), or
//!        │          the files of <dir>/_sluice_metadata when <dir> is a file sink's output
//!        │          unseen files, ordered by (modification time, path)
//!        │          at most maxFilesPerTrigger of them
//!        ▼
//!  sources/<i>/<k+1>   {"files": [{"path": "/abs/in/a.json", "timestamp": <mtime ms>}, ...]}
//!        │          (create-only; the offset returned is {"logOffset": k+1})
//!        ▼
//!  get_batch(k, m) ── files of entries k+1..=m, in order ── arrow-json / arrow-csv /
//!                     parquet decoding into the declared schema ── one Polars frame
//! ```
//!
//! # Why a source log
//! The files a batch takes are decided once, when the batch is planned, and written to
//! the source log before the engine writes `offsets/N`. A restart rebuilds the set of
//! files already taken from that log, so it neither skips nor repeats a file; a batch
//! planned before a crash is replayed with exactly its logged files, and a log entry
//! written just before a crash (no `offsets/N` yet) is reused as is, never re-planned.
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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use arrow::array::timezone::Tz;
use arrow::array::types::{
    ArrowTimestampType, Float32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt32Type, UInt64Type,
};
use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, PrimitiveBuilder, RecordBatch, RecordBatchOptions, StringArray, new_null_array,
};
use arrow::compute::kernels::cast_utils::string_to_datetime;
use arrow::compute::{CastOptions, cast_with_options, concat_batches};
use arrow::datatypes::{
    DataType as ArrowDataType, Field as ArrowField, FieldRef, Schema as ArrowSchema, SchemaRef as ArrowSchemaRef,
    TimeUnit as ArrowTimeUnit,
};
use arrow::error::ArrowError;
use arrow::json::reader::{ArrayDecoder, DecoderContext, DecoderFactory, Tape, TapeElement};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use polars::prelude::{Column, DataFrame, DataType, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};
use sluice_checkpoint::{BatchLog, CheckpointError};
use sluice_engine::interop::record_batches_to_df;
use sluice_engine::manifest::{METADATA_DIR, read_manifest};
use sluice_engine::{
    Offset, Result, EngineSession, SluiceError, Source, SourceContext, SourceFormat, SourceProvider, SourceProviderRef,
    StreamingDataFrame,
};

/// The message of the error returned when a file source has no schema.
const MISSING_SCHEMA: &str = "file sources need a schema (Spark's readStream requires one): call .schema(...)";

/// Non-blank JSON lines decoded together on the fast path.
const JSON_CHUNK_LINES: usize = 8192;

/// The UTF-8 byte-order mark, skipped at the start of JSON and CSV files.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Rows per arrow batch when decoding CSV and Parquet.
const BATCH_ROWS: usize = 8192;

pub use sluice_engine::FileFormat;


/// What to do with a record that cannot be parsed (Spark's option `mode`, JSON and CSV).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ParseMode {
    /// `PERMISSIVE` (default): keep the row; fields that could not be read are null and the
    /// raw record goes to the corrupt-record column (option `columnNameOfCorruptRecord`).
    #[default]
    Permissive,
    /// `DROPMALFORMED`: drop the row.
    DropMalformed,
    /// `FAILFAST`: fail the batch with [`SluiceError::MalformedRecord`].
    FailFast,
}

impl ParseMode {
    /// Spark's name of the mode: `PERMISSIVE`, `DROPMALFORMED`, `FAILFAST`.
    pub fn name(self) -> &'static str {
        match self {
            ParseMode::Permissive => "PERMISSIVE",
            ParseMode::DropMalformed => "DROPMALFORMED",
            ParseMode::FailFast => "FAILFAST",
        }
    }
}

impl FromStr for ParseMode {
    type Err = SluiceError;
    /// Parses Spark's mode names, case-insensitively.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] for any other name.
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_uppercase().as_str() {
            "PERMISSIVE" => Ok(ParseMode::Permissive),
            "DROPMALFORMED" => Ok(ParseMode::DropMalformed),
            "FAILFAST" => Ok(ParseMode::FailFast),
            _ => Err(SluiceError::InvalidArgument(format!(
                "option mode: {s:?} is not a parse mode (PERMISSIVE, DROPMALFORMED or FAILFAST)"
            ))),
        }
    }
}

/// The `json`, `csv` and `parquet` source formats of `read_stream().format(..)`; the
/// `sluice` facade registers one per [`FileFormat`].
///
/// Options (names case-insensitive, as in Spark):
/// * `maxFilesPerTrigger`: positive integer, files per micro-batch (default: all new files).
/// * `mode`: `PERMISSIVE` (default), `DROPMALFORMED`, `FAILFAST` (JSON, CSV).
/// * `columnNameOfCorruptRecord`: name of a String column holding the raw text of
///   malformed records (null for good ones); appended last unless the schema declares it
///   (JSON, CSV).
/// * `header`: `true` or `false` (default), CSV: skip the first line.
/// * `sep` or `delimiter`: one ASCII character (default `,`), CSV.
///
/// Rejected as unsupported: `multiLine=true`, `latestFirst=true`, `cleanSource` other
/// than `off`. Other options are ignored, as Spark ignores options it does not know.
///
/// Files taken: the regular files directly in the directory whose names start with
/// neither `.` nor `_`, oldest (modification time, then path) first. When the directory
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
    fn create(
        &self,
        path: &str,
        schema: Option<SchemaRef>,
        opts_in: &sluice_engine::Options,
    ) -> Result<SourceProviderRef> {
        let options: &BTreeMap<String, String> = &{
            // Interim: the connectors read a plain map until they adopt `Options`.
            for (k, _) in opts_in.iter() {
                opts_in.mark_read(k);
            }
            opts_in.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        Ok(Arc::new(FileSourceProvider::new(self.kind, path, schema, options)?))
    }
}

/// Typed builder of a file source, beside the string-option form of
/// `read_stream().format(..)`:
///
/// ```no_run
/// # use polars::prelude::*;
/// # use sluice_sources::file::FileSource;
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
    options: BTreeMap<String, String>,
}

impl FileSource {
    /// A source of `kind` files in the directory `path`.
    pub fn new(kind: FileFormat, path: impl AsRef<Path>) -> Self {
        Self { kind, path: path.as_ref().to_path_buf(), schema: None, options: BTreeMap::new() }
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
    /// The schema of the rows (required). Timestamps are `Datetime(unit, None)`, read as
    /// UTC; supported types: Boolean, Int32, Int64, UInt32, UInt64, Float32, Float64,
    /// String, Date, Datetime.
    pub fn schema(mut self, schema: Schema) -> Self {
        self.schema = Some(Arc::new(schema));
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
        self.options.insert(key.to_string(), value.to_string());
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
    /// Reads everything once into a static frame (Spark's batch `spark.read`), for the
    /// static side of a stream-static join: `path` is one file, or a directory whose files
    /// are read in (modification time, path) order (only manifest-listed ones for a file
    /// sink's folder). Same schema, options and parse modes as the stream.
    ///
    /// # Errors
    /// As [`FileSourceProvider::new`]; [`SluiceError::Io`] naming an unreadable file;
    /// [`SluiceError::MalformedRecord`] in FAILFAST mode.
    pub fn read_static(self) -> Result<DataFrame> {
        let provider = self.provider()?;
        let cfg = &provider.cfg;
        let files: Vec<String> = if cfg.dir.is_file() {
            vec![cfg.dir.to_string_lossy().into_owned()]
        } else {
            FileStreamSource::new(cfg.clone()).list()?.into_iter().map(|f| f.path).collect()
        };
        let batches = files.iter().map(|f| read_file(cfg, f)).collect::<Result<Vec<_>>>()?;
        conform(record_batches_to_df(&batches, &cfg.out_schema)?, &cfg.schema)
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
    pub fn new(
        kind: FileFormat,
        path: impl AsRef<Path>,
        schema: Option<SchemaRef>,
        options: &BTreeMap<String, String>,
    ) -> Result<Self> {
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
        Ok(Box::new(FileStreamSource::new(self.cfg.clone())))
    }
}

/// Everything a file source needs to know, checked once when the provider is built.
#[derive(Debug)]
struct FileSourceConfig {
    kind: FileFormat,
    /// The directory, absolute, valid UTF-8.
    dir: PathBuf,
    /// The Polars schema of every batch (the corrupt-record column included).
    schema: SchemaRef,
    /// The columns decoded from the files (the corrupt-record column excluded), all nullable.
    data_schema: ArrowSchemaRef,
    /// The arrow schema of every batch (`schema` on the arrow side).
    out_schema: ArrowSchemaRef,
    /// Position of the corrupt-record column in `out_schema`, when configured.
    corrupt_index: Option<usize>,
    max_files_per_trigger: Option<usize>,
    mode: ParseMode,
    header: bool,
    delimiter: u8,
}

fn invalid(message: impl Into<String>) -> SluiceError {
    SluiceError::InvalidArgument(message.into())
}

fn parse_bool_option(key: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(format!("option {key}: {value:?} is not true or false"))),
    }
}

fn parse_delimiter(value: &str) -> Result<u8> {
    let unescaped = match value {
        "\\t" => "\t",
        other => other,
    };
    match unescaped.as_bytes() {
        [b] if b.is_ascii() => Ok(*b),
        _ => Err(invalid(format!("option sep: {value:?} is not a single ASCII character"))),
    }
}

/// The arrow type decoded for a Polars column type (scalars only).
pub(crate) fn arrow_type_of(name: &str, dtype: &DataType) -> Result<ArrowDataType> {
    let unit = |tu: &TimeUnit| match tu {
        TimeUnit::Nanoseconds => ArrowTimeUnit::Nanosecond,
        TimeUnit::Microseconds => ArrowTimeUnit::Microsecond,
        TimeUnit::Milliseconds => ArrowTimeUnit::Millisecond,
    };
    Ok(match dtype {
        DataType::Boolean => ArrowDataType::Boolean,
        DataType::Int32 => ArrowDataType::Int32,
        DataType::Int64 => ArrowDataType::Int64,
        DataType::UInt32 => ArrowDataType::UInt32,
        DataType::UInt64 => ArrowDataType::UInt64,
        DataType::Float32 => ArrowDataType::Float32,
        DataType::Float64 => ArrowDataType::Float64,
        DataType::String => ArrowDataType::Utf8,
        DataType::Date => ArrowDataType::Date32,
        DataType::Datetime(tu, None) => ArrowDataType::Timestamp(unit(tu), None),
        DataType::Datetime(_, Some(tz)) => {
            return Err(invalid(format!(
                "column {name:?}: declare timestamps as Datetime(unit, None), not with time zone {tz}: \
                 Sluice reads event time as UTC"
            )));
        }
        other => {
            return Err(invalid(format!(
                "column {name:?}: file sources cannot read type {other} (supported: Boolean, Int32, Int64, \
                 UInt32, UInt64, Float32, Float64, String, Date, Datetime)"
            )));
        }
    })
}

impl FileSourceConfig {
    fn new(
        kind: FileFormat,
        path: &Path,
        schema: Option<SchemaRef>,
        options: &BTreeMap<String, String>,
    ) -> Result<Self> {
        let user = schema.ok_or_else(|| invalid(MISSING_SCHEMA))?;
        let opts: HashMap<String, &str> = options.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.as_str())).collect();
        let get = |key: &str| opts.get(&key.to_ascii_lowercase()).copied();

        let max_files_per_trigger = match get("maxFilesPerTrigger") {
            None => None,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if n > 0 => Some(n),
                _ => return Err(invalid(format!("option maxFilesPerTrigger: {v:?} is not a positive integer"))),
            },
        };
        let mode = get("mode").map(ParseMode::from_str).transpose()?.unwrap_or_default();
        let header = get("header").map(|v| parse_bool_option("header", v)).transpose()?.unwrap_or(false);
        let delimiter = get("sep").or_else(|| get("delimiter")).map(parse_delimiter).transpose()?.unwrap_or(b',');
        if let Some(v) = get("multiLine") {
            if parse_bool_option("multiLine", v)? {
                return Err(invalid("option multiLine=true is not supported: files must hold one record per line"));
            }
        }
        if let Some(v) = get("latestFirst") {
            if parse_bool_option("latestFirst", v)? {
                return Err(invalid("option latestFirst=true is not supported: files are taken oldest first"));
            }
        }
        if let Some(v) = get("cleanSource") {
            if !v.eq_ignore_ascii_case("off") {
                return Err(invalid(format!("option cleanSource={v} is not supported (only off)")));
            }
        }

        let corrupt_name = match kind {
            FileFormat::Json | FileFormat::Csv => get("columnNameOfCorruptRecord").map(str::to_string),
            FileFormat::Parquet => None,
        };
        let mut data_fields = Vec::with_capacity(user.len());
        let mut out_fields = Vec::with_capacity(user.len() + 1);
        let mut corrupt_index = None;
        for (name, dtype) in user.iter() {
            if Some(name.as_str()) == corrupt_name.as_deref() {
                if dtype != &DataType::String {
                    return Err(invalid(format!(
                        "the corrupt-record column {name:?} must be a String column, not {dtype}"
                    )));
                }
                corrupt_index = Some(out_fields.len());
                out_fields.push(ArrowField::new(name.as_str(), ArrowDataType::Utf8, true));
                continue;
            }
            let field = ArrowField::new(name.as_str(), arrow_type_of(name, dtype)?, true);
            data_fields.push(field.clone());
            out_fields.push(field);
        }
        let mut schema = user.as_ref().clone();
        if let (Some(name), None) = (&corrupt_name, corrupt_index) {
            corrupt_index = Some(out_fields.len());
            out_fields.push(ArrowField::new(name.as_str(), ArrowDataType::Utf8, true));
            schema.with_column(name.as_str().into(), DataType::String);
        }
        if data_fields.is_empty() {
            return Err(invalid("the schema of a file source needs at least one data column"));
        }

        let dir =
            std::path::absolute(path).map_err(|source| SluiceError::Io { path: path.display().to_string(), source })?;
        if dir.to_str().is_none() {
            return Err(invalid(format!("the directory {} is not valid UTF-8", dir.display())));
        }
        Ok(Self {
            kind,
            dir,
            schema: Arc::new(schema),
            data_schema: Arc::new(ArrowSchema::new(data_fields)),
            out_schema: Arc::new(ArrowSchema::new(out_fields)),
            corrupt_index,
            max_files_per_trigger,
            mode,
            header,
            delimiter,
        })
    }

    fn description(&self) -> String {
        format!("FileStreamSource[{}]", self.dir.display())
    }

    fn source_err(&self, message: impl Into<String>) -> SluiceError {
        SluiceError::Source { name: self.description(), message: message.into() }
    }
}

/// One file taken by a batch, as logged in `sources/<i>/<k>` (Spark's `FileEntry`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LoggedFile {
    /// Absolute path.
    path: String,
    /// Modification time, ms since the epoch.
    timestamp: i64,
}

/// A source-log entry: the files of one offset, in reading order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SourceLogEntry {
    files: Vec<LoggedFile>,
}

/// A file found by listing the directory.
#[derive(Debug, Clone)]
struct ListedFile {
    path: String,
    mtime_ns: i128,
}

/// One query run's file source (Spark's `FileStreamSource`).
struct FileStreamSource {
    cfg: Arc<FileSourceConfig>,
    initialized: bool,
    /// Paths of every file in the source log.
    seen: HashSet<String>,
    /// Source-log entries not yet committed (cache of the log).
    entries: BTreeMap<u64, Vec<LoggedFile>>,
    /// The id of the latest source-log entry.
    latest_log_id: Option<u64>,
    /// `Trigger::AvailableNow`: the files present when the query started.
    available_now: Option<HashSet<String>>,
    /// Unseen files left by the latest listing.
    backlog: Option<u64>,
}

/// The metadata of `path`, `None` when it does not exist.
fn stat(path: &Path) -> Result<Option<std::fs::Metadata>> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SluiceError::Io { path: path.display().to_string(), source }),
    }
}

/// The modification time of `path` in ns since the epoch (negative before it).
fn mtime_ns(path: &Path, meta: &std::fs::Metadata) -> Result<i128> {
    let mtime = meta.modified().map_err(|source| SluiceError::Io { path: path.display().to_string(), source })?;
    Ok(match mtime.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    })
}

fn log_offset(id: u64) -> Offset {
    serde_json::json!({ "logOffset": id })
}

impl FileStreamSource {
    fn new(cfg: Arc<FileSourceConfig>) -> Self {
        Self {
            cfg,
            initialized: false,
            seen: HashSet::new(),
            entries: BTreeMap::new(),
            latest_log_id: None,
            available_now: None,
            backlog: None,
        }
    }

    fn parse_offset(&self, offset: Option<&Offset>) -> Result<u64> {
        match offset {
            None => Ok(0),
            Some(v) => v.get("logOffset").and_then(serde_json::Value::as_u64).ok_or_else(|| {
                self.cfg.source_err(format!("offset {v} is not a file source offset {{\"logOffset\": <n>}}"))
            }),
        }
    }

    fn parse_entry(
        log: &BatchLog<'_, serde_json::Value>,
        ctx: SourceContext<'_>,
        id: u64,
        value: serde_json::Value,
    ) -> Result<Vec<LoggedFile>> {
        serde_json::from_value::<SourceLogEntry>(value).map(|e| e.files).map_err(|e| {
            SluiceError::Checkpoint(CheckpointError::Corrupt {
                path: ctx.checkpoint.display_path(&log.path(id)),
                reason: format!("not a file source log entry: {e}"),
            })
        })
    }

    /// Rebuilds the set of files taken from the whole source log.
    fn load_log(&mut self, ctx: SourceContext<'_>) -> Result<()> {
        let log = ctx.checkpoint.log::<serde_json::Value>(ctx.log_name());
        self.seen.clear();
        self.entries.clear();
        self.latest_log_id = None;
        // The log is never purged and starts at 1: a missing entry is named, not skipped.
        for (id, value) in log.entries(1..)? {
            let files = Self::parse_entry(&log, ctx, id, value)?;
            self.seen.extend(files.iter().map(|f| f.path.clone()));
            self.entries.insert(id, files);
            self.latest_log_id = Some(id);
        }
        self.initialized = true;
        tracing::debug!(
            source = %self.cfg.description(),
            entries = self.entries.len(),
            files = self.seen.len(),
            "file source log loaded"
        );
        Ok(())
    }

    fn ensure_initialized(&mut self, ctx: SourceContext<'_>) -> Result<()> {
        if self.initialized { Ok(()) } else { self.load_log(ctx) }
    }

    /// The files to take, by (modification time, path): those listed by the manifest when
    /// the directory is a file sink's output (it has `_sluice_metadata`), otherwise the
    /// regular files directly in the directory, not hidden.
    fn list(&self) -> Result<Vec<ListedFile>> {
        let dir = &self.cfg.dir;
        let meta_dir = dir.join(METADATA_DIR);
        let has_manifest =
            meta_dir.try_exists().map_err(|source| SluiceError::Io { path: meta_dir.display().to_string(), source })?;
        let mut files = if has_manifest { self.list_manifest()? } else { self.list_dir()? };
        files.sort_by(|a, b| a.mtime_ns.cmp(&b.mtime_ns).then_with(|| a.path.cmp(&b.path)));
        Ok(files)
    }

    /// The files listed by the manifest entries of a file sink's output directory (Spark's
    /// `MetadataLogFileIndex`): files of the directory that no entry lists (orphans of a
    /// batch that crashed before its entry was written) are not taken. A listed file that
    /// is gone is skipped, as a file deleted while listing the directory is.
    fn list_manifest(&self) -> Result<Vec<ListedFile>> {
        let dir = &self.cfg.dir;
        let mut names = HashSet::new();
        let mut files = Vec::new();
        for entry in read_manifest(dir)? {
            for f in entry.files {
                if !names.insert(f.path.clone()) {
                    continue;
                }
                let path = dir.join(&f.path);
                let Some(meta) = stat(&path)? else {
                    tracing::warn!(path = %path.display(), batch_id = entry.batch_id,
                        "a file listed by the sink manifest is missing; skipping it");
                    continue;
                };
                if meta.is_file() {
                    // The directory and the manifest's paths are UTF-8.
                    files.push(ListedFile {
                        path: path.to_string_lossy().into_owned(),
                        mtime_ns: mtime_ns(&path, &meta)?,
                    });
                }
            }
        }
        Ok(files)
    }

    /// Regular files directly in the directory, not hidden.
    fn list_dir(&self) -> Result<Vec<ListedFile>> {
        let dir = &self.cfg.dir;
        let io = |source| SluiceError::Io { path: dir.display().to_string(), source };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                tracing::warn!(dir = %dir.display(), "skipping a file whose name is not UTF-8: {name:?}");
                continue;
            };
            if name.starts_with('.') || name.starts_with('_') {
                continue;
            }
            let path = entry.path();
            // Deleted between listing and stat: as if not listed.
            let Some(meta) = stat(&path)? else { continue };
            if !meta.is_file() {
                continue;
            }
            // The directory is UTF-8 (checked at creation) and so is the name.
            files.push(ListedFile { path: path.to_string_lossy().into_owned(), mtime_ns: mtime_ns(&path, &meta)? });
        }
        Ok(files)
    }

    fn files_of(&mut self, ctx: SourceContext<'_>, id: u64) -> Result<Vec<LoggedFile>> {
        if let Some(files) = self.entries.get(&id) {
            return Ok(files.clone());
        }
        let log = ctx.checkpoint.log::<serde_json::Value>(ctx.log_name());
        Self::parse_entry(&log, ctx, id, log.require(id)?)
    }
}

impl Source for FileStreamSource {
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
        let snapshot: HashSet<String> = self.list()?.into_iter().map(|f| f.path).collect();
        let backlog = snapshot.iter().filter(|p| !self.seen.contains(*p)).count();
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
        let log = ctx.checkpoint.log::<serde_json::Value>(ctx.log_name());
        match self.latest_log_id {
            // Planned before a crash but never run: reuse, never re-plan.
            Some(latest) if latest > k => {
                let id = if all_available { latest } else { k + 1 };
                tracing::debug!(source = %self.cfg.description(), id, "reusing a planned source log entry");
                return Ok(Some(log_offset(id)));
            }
            Some(latest) if latest < k => {
                return Err(SluiceError::Checkpoint(CheckpointError::Missing {
                    path: ctx.checkpoint.display_path(&log.path(k)),
                    reason: format!(
                        "the offset log says the file source reached logOffset {k} but its log ends at {latest}"
                    ),
                }));
            }
            None if k > 0 => {
                return Err(SluiceError::Checkpoint(CheckpointError::Missing {
                    path: ctx.checkpoint.display_path(&log.path(k)),
                    reason: format!("the offset log says the file source reached logOffset {k} but its log is empty"),
                }));
            }
            _ => {}
        }

        let mut new_files: Vec<ListedFile> = self
            .list()?
            .into_iter()
            .filter(|f| !self.seen.contains(&f.path))
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
        let entry = SourceLogEntry { files };
        let value = serde_json::to_value(&entry)
            .map_err(|e| SluiceError::Internal(format!("file source log entry does not serialize: {e}")))?;
        log.add(id, &value)?;
        tracing::debug!(source = %self.cfg.description(), id, files = entry.files.len(), "planned new files");
        self.seen.extend(entry.files.iter().map(|f| f.path.clone()));
        self.entries.insert(id, entry.files);
        self.latest_log_id = Some(id);
        Ok(Some(log_offset(id)))
    }

    fn get_batch(&mut self, ctx: SourceContext<'_>, start: Option<&Offset>, end: &Offset) -> Result<DataFrame> {
        self.ensure_initialized(ctx)?;
        let (s, e) = (self.parse_offset(start)?, self.parse_offset(Some(end))?);
        if e < s {
            return Err(self.cfg.source_err(format!("end offset {e} is before start offset {s}")));
        }
        let mut batches = Vec::new();
        for id in s + 1..=e {
            for file in self.files_of(ctx, id)? {
                batches.push(read_file(&self.cfg, &file.path)?);
            }
        }
        let df = record_batches_to_df(&batches, &self.cfg.out_schema)?;
        conform(df, &self.cfg.schema)
    }

    fn commit(&mut self, _ctx: SourceContext<'_>, end: &Offset) -> Result<()> {
        let e = self.parse_offset(Some(end))?;
        self.entries.retain(|id, _| *id > e);
        Ok(())
    }

    fn backlog(&self) -> Option<u64> {
        match &self.available_now {
            Some(snapshot) => Some(snapshot.iter().filter(|p| !self.seen.contains(*p)).count() as u64),
            None => self.backlog,
        }
    }
}

/// Casts columns whose Polars type differs from the declared one (e.g. after arrow's
/// string view conversion), keeping the declared order.
fn conform(df: DataFrame, schema: &Schema) -> Result<DataFrame> {
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

/// Rows decoded from one file: data columns, plus per row the raw text of a malformed
/// record (tracked only with a corrupt-record column).
#[derive(Default)]
struct Decoded {
    batches: Vec<RecordBatch>,
    corrupt: Vec<Option<String>>,
}

impl Decoded {
    fn push_good(&mut self, batch: RecordBatch, track: bool) {
        if track {
            self.corrupt.extend(std::iter::repeat_n(None, batch.num_rows()));
        }
        self.batches.push(batch);
    }
    fn push_bad(&mut self, row: RecordBatch, raw: &[u8], track: bool) {
        if track {
            self.corrupt.push(Some(String::from_utf8_lossy(raw).into_owned()));
        }
        self.batches.push(row);
    }
}

/// Reads one file into a batch of the output schema.
fn read_file(cfg: &FileSourceConfig, path: &str) -> Result<RecordBatch> {
    let batches = match cfg.kind {
        FileFormat::Json | FileFormat::Csv => {
            let bytes = std::fs::read(path).map_err(|source| SluiceError::Io { path: path.to_string(), source })?;
            let decoded = match cfg.kind {
                FileFormat::Json => decode_json(cfg, path, &bytes)?,
                _ => decode_csv(cfg, path, &bytes)?,
            };
            return assemble(cfg, path, decoded);
        }
        FileFormat::Parquet => read_parquet(cfg, path)?,
    };
    assemble(cfg, path, Decoded { batches, corrupt: Vec::new() })
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

/// A one-row batch of nulls.
fn null_row(schema: &ArrowSchemaRef) -> RecordBatch {
    let columns = schema.fields().iter().map(|f| new_null_array(f.data_type(), 1)).collect();
    RecordBatch::try_new_with_options(schema.clone(), columns, &RecordBatchOptions::new().with_row_count(Some(1)))
        .unwrap_or_else(|_| RecordBatch::new_empty(schema.clone()))
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

fn trim_eol(raw: &[u8]) -> &[u8] {
    let mut end = raw.len();
    while end > 0 && (raw[end - 1] == b'\n' || raw[end - 1] == b'\r') {
        end -= 1;
    }
    &raw[..end]
}

/// A result of [`bisect`]: rows decoded from a run of good records, or one bad record.
enum Piece<'a, T> {
    Good(Vec<RecordBatch>),
    Bad(&'a T, ArrowError),
}

/// Decodes `items` with `decode`; a run that fails is split in halves until its bad
/// records are isolated, so a file with a few bad records costs a few extra decodes, not
/// one per record. `visit` sees the pieces in input order (FAILFAST stops at the first).
fn bisect<'a, T>(
    items: &'a [T],
    decode: &impl Fn(&[T]) -> std::result::Result<Vec<RecordBatch>, ArrowError>,
    visit: &mut impl FnMut(Piece<'a, T>) -> Result<()>,
) -> Result<()> {
    match decode(items) {
        Ok(batches) => visit(Piece::Good(batches)),
        Err(e) if items.len() == 1 => visit(Piece::Bad(&items[0], e)),
        Err(_) if items.is_empty() => Ok(()),
        Err(_) => {
            let (left, right) = items.split_at(items.len() / 2);
            bisect(left, decode, visit)?;
            bisect(right, decode, visit)
        }
    }
}

// ---------------------------------------------------------------------------------------
// JSON lines

fn json_builder(schema: &ArrowSchemaRef, lenient: bool, batch_size: usize) -> arrow::json::ReaderBuilder {
    arrow::json::ReaderBuilder::new(schema.clone())
        .with_coerce_primitive(true)
        .with_ignore_type_conflicts(lenient)
        .with_decoder_factory(Arc::new(SparkJsonDecoders))
        .with_batch_size(batch_size)
}

/// Decodes lines that must each hold exactly one JSON object; any error fails them all.
fn decode_json_lines(
    schema: &ArrowSchemaRef,
    lines: &[(usize, &[u8])],
    lenient: bool,
) -> std::result::Result<RecordBatch, ArrowError> {
    let mut decoder = json_builder(schema, lenient, lines.len() + 1).build_decoder()?;
    for (_, line) in lines {
        let before = decoder.len();
        let read = decoder.decode(line)?;
        if read != line.len() || decoder.has_partial_record() || decoder.len() != before + 1 {
            return Err(ArrowError::JsonError(if decoder.has_partial_record() {
                "incomplete JSON value (a record must fit on one line)".into()
            } else {
                "a line must hold exactly one JSON object".into()
            }));
        }
    }
    Ok(decoder.flush()?.unwrap_or_else(|| RecordBatch::new_empty(schema.clone())))
}

fn decode_json(cfg: &FileSourceConfig, path: &str, bytes: &[u8]) -> Result<Decoded> {
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    let mut out = Decoded::default();
    let mut chunk: Vec<(usize, &[u8])> = Vec::new();
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if is_blank(line) {
            continue;
        }
        chunk.push((i + 1, line));
        if chunk.len() == JSON_CHUNK_LINES {
            decode_json_chunk(cfg, path, &chunk, &mut out)?;
            chunk.clear();
        }
    }
    if !chunk.is_empty() {
        decode_json_chunk(cfg, path, &chunk, &mut out)?;
    }
    Ok(out)
}

fn decode_json_chunk(cfg: &FileSourceConfig, path: &str, lines: &[(usize, &[u8])], out: &mut Decoded) -> Result<()> {
    let track = cfg.corrupt_index.is_some();
    let schema = &cfg.data_schema;
    let decode = |part: &[(usize, &[u8])]| decode_json_lines(schema, part, false).map(|b| vec![b]);
    bisect(lines, &decode, &mut |piece| match piece {
        Piece::Good(batches) => {
            batches.into_iter().for_each(|b| out.push_good(b, track));
            Ok(())
        }
        Piece::Bad(&(line_no, line), e) => match cfg.mode {
            ParseMode::FailFast => {
                Err(SluiceError::MalformedRecord { path: path.to_string(), line: line_no, message: e.to_string() })
            }
            ParseMode::DropMalformed => Ok(()),
            ParseMode::Permissive => {
                // Spark 3: keep the fields that converted.
                let row = decode_json_lines(schema, &[(line_no, line)], true)
                    .ok()
                    .filter(|b| b.num_rows() == 1)
                    .unwrap_or_else(|| null_row(schema));
                out.push_bad(row, line, track);
                Ok(())
            }
        },
    })
}

/// Decoders following Spark's JSON conversions where arrow-json is more lenient, and
/// naming the column in every conversion error:
/// * integers accept only integral JSON numbers (`1.5` is malformed, not truncated);
/// * floats accept numbers and the strings `NaN`, `Infinity`, `-Infinity`, `+INF`, `-INF`;
/// * timestamps accept date-time strings (RFC 3339 and the like, naive ones read as UTC)
///   and integral numbers of **seconds** since the epoch.
#[derive(Debug)]
struct SparkJsonDecoders;

impl DecoderFactory for SparkJsonDecoders {
    fn make_default_decoder(
        &self,
        ctx: &DecoderContext,
        field: &FieldRef,
        is_nullable: bool,
    ) -> std::result::Result<Option<Box<dyn ArrayDecoder>>, ArrowError> {
        let lenient = ctx.ignore_type_conflicts();
        let name = field.name().clone();
        let dt = field.data_type().clone();
        let decoder: Box<dyn ArrayDecoder> = match field.data_type() {
            ArrowDataType::Int32 => Box::new(IntDecoder::<Int32Type>::new(name, dt, lenient)),
            ArrowDataType::Int64 => Box::new(IntDecoder::<Int64Type>::new(name, dt, lenient)),
            ArrowDataType::UInt32 => Box::new(IntDecoder::<UInt32Type>::new(name, dt, lenient)),
            ArrowDataType::UInt64 => Box::new(IntDecoder::<UInt64Type>::new(name, dt, lenient)),
            ArrowDataType::Float32 => Box::new(FloatDecoder::<Float32Type>::new(name, dt, lenient)),
            ArrowDataType::Float64 => Box::new(FloatDecoder::<Float64Type>::new(name, dt, lenient)),
            ArrowDataType::Timestamp(unit, tz) => {
                let tz: Tz = tz.as_deref().unwrap_or("+00:00").parse()?;
                match unit {
                    ArrowTimeUnit::Second => {
                        Box::new(TimestampDecoder::<TimestampSecondType>::new(name, dt, tz, lenient))
                    }
                    ArrowTimeUnit::Millisecond => {
                        Box::new(TimestampDecoder::<TimestampMillisecondType>::new(name, dt, tz, lenient))
                    }
                    ArrowTimeUnit::Microsecond => {
                        Box::new(TimestampDecoder::<TimestampMicrosecondType>::new(name, dt, tz, lenient))
                    }
                    ArrowTimeUnit::Nanosecond => {
                        Box::new(TimestampDecoder::<TimestampNanosecondType>::new(name, dt, tz, lenient))
                    }
                }
            }
            ArrowDataType::Struct(_) => return Ok(None),
            _ => Box::new(NamedDecoder { name, inner: ctx.make_builtin_decoder(field, is_nullable)? }),
        };
        Ok(Some(decoder))
    }
}

/// A builtin decoder whose errors name the column.
struct NamedDecoder {
    name: String,
    inner: Box<dyn ArrayDecoder>,
}

impl ArrayDecoder for NamedDecoder {
    fn decode(&mut self, tape: &Tape<'_>, pos: &[u32]) -> std::result::Result<ArrayRef, ArrowError> {
        self.inner.decode(tape, pos).map_err(|e| ArrowError::JsonError(format!("column {:?}: {e}", self.name)))
    }
}

/// The JSON text of a scalar tape element, for messages.
fn describe(tape: &Tape<'_>, p: u32) -> String {
    match tape.get(p) {
        TapeElement::String(i) => format!("{:?}", tape.get_string(i)),
        TapeElement::Number(i) => tape.get_string(i).to_string(),
        TapeElement::True => "true".into(),
        TapeElement::False => "false".into(),
        TapeElement::StartObject(_) => "an object".into(),
        TapeElement::StartList(_) => "an array".into(),
        _ => "a value".into(),
    }
}

/// Shared loop of the scalar decoders: `convert` returns `None` for a value that does not
/// convert, which is an error (or null when lenient).
fn decode_scalars<T: ArrowPrimitiveType>(
    name: &str,
    data_type: &ArrowDataType,
    lenient: bool,
    tape: &Tape<'_>,
    pos: &[u32],
    mut convert: impl FnMut(TapeElement, &Tape<'_>) -> Option<T::Native>,
) -> std::result::Result<ArrayRef, ArrowError> {
    let mut builder = PrimitiveBuilder::<T>::with_capacity(pos.len()).with_data_type(data_type.clone());
    for &p in pos {
        let element = tape.get(p);
        if let TapeElement::Null = element {
            builder.append_null();
            continue;
        }
        match convert(element, tape) {
            Some(v) => builder.append_value(v),
            None if lenient => builder.append_null(),
            None => {
                return Err(ArrowError::JsonError(format!(
                    "column {name:?}: {} is not a valid {data_type}",
                    describe(tape, p)
                )));
            }
        }
    }
    Ok(Arc::new(builder.finish()))
}

struct IntDecoder<T> {
    name: String,
    data_type: ArrowDataType,
    lenient: bool,
    _t: std::marker::PhantomData<fn(T) -> T>,
}

impl<T> IntDecoder<T> {
    fn new(name: String, data_type: ArrowDataType, lenient: bool) -> Self {
        Self { name, data_type, lenient, _t: std::marker::PhantomData }
    }
}

impl<T> ArrayDecoder for IntDecoder<T>
where
    T: ArrowPrimitiveType,
    T::Native: FromStr,
{
    fn decode(&mut self, tape: &Tape<'_>, pos: &[u32]) -> std::result::Result<ArrayRef, ArrowError> {
        decode_scalars::<T>(&self.name, &self.data_type, self.lenient, tape, pos, |e, tape| match e {
            TapeElement::Number(i) => tape.get_string(i).parse::<T::Native>().ok(),
            _ => None,
        })
    }
}

struct FloatDecoder<T> {
    name: String,
    data_type: ArrowDataType,
    lenient: bool,
    _t: std::marker::PhantomData<fn(T) -> T>,
}

impl<T> FloatDecoder<T> {
    fn new(name: String, data_type: ArrowDataType, lenient: bool) -> Self {
        Self { name, data_type, lenient, _t: std::marker::PhantomData }
    }
}

impl<T> ArrayDecoder for FloatDecoder<T>
where
    T: ArrowPrimitiveType,
    T::Native: FromStr,
{
    fn decode(&mut self, tape: &Tape<'_>, pos: &[u32]) -> std::result::Result<ArrayRef, ArrowError> {
        decode_scalars::<T>(&self.name, &self.data_type, self.lenient, tape, pos, |e, tape| match e {
            TapeElement::Number(i) => tape.get_string(i).parse::<T::Native>().ok(),
            // Spark's allowNonNumericNumbers (default true).
            TapeElement::String(i) => match tape.get_string(i) {
                "NaN" => "NaN".parse().ok(),
                "Infinity" | "+Infinity" | "INF" | "+INF" => "inf".parse().ok(),
                "-Infinity" | "-INF" => "-inf".parse().ok(),
                _ => None,
            },
            _ => None,
        })
    }
}

struct TimestampDecoder<T> {
    name: String,
    data_type: ArrowDataType,
    tz: Tz,
    lenient: bool,
    _t: std::marker::PhantomData<fn(T) -> T>,
}

impl<T> TimestampDecoder<T> {
    fn new(name: String, data_type: ArrowDataType, tz: Tz, lenient: bool) -> Self {
        Self { name, data_type, tz, lenient, _t: std::marker::PhantomData }
    }
}

impl<T: ArrowTimestampType> ArrayDecoder for TimestampDecoder<T> {
    fn decode(&mut self, tape: &Tape<'_>, pos: &[u32]) -> std::result::Result<ArrayRef, ArrowError> {
        let tz = self.tz;
        decode_scalars::<T>(&self.name, &self.data_type, self.lenient, tape, pos, |e, tape| match e {
            TapeElement::String(i) => {
                let dt = string_to_datetime(&tz, tape.get_string(i)).ok()?;
                match T::UNIT {
                    ArrowTimeUnit::Second => Some(dt.timestamp()),
                    ArrowTimeUnit::Millisecond => Some(dt.timestamp_millis()),
                    ArrowTimeUnit::Microsecond => Some(dt.timestamp_micros()),
                    ArrowTimeUnit::Nanosecond => dt.timestamp_nanos_opt(),
                }
            }
            // Spark reads an integral number as seconds since the epoch.
            TapeElement::Number(i) => {
                let secs = tape.get_string(i).parse::<i64>().ok()?;
                let per_second: i64 = match T::UNIT {
                    ArrowTimeUnit::Second => 1,
                    ArrowTimeUnit::Millisecond => 1_000,
                    ArrowTimeUnit::Microsecond => 1_000_000,
                    ArrowTimeUnit::Nanosecond => 1_000_000_000,
                };
                secs.checked_mul(per_second)
            }
            _ => None,
        })
    }
}

// ---------------------------------------------------------------------------------------
// CSV

/// Spark's CSV quote and escape characters (options `quote`, `escape`).
const CSV_QUOTE: u8 = b'"';
const CSV_ESCAPE: u8 = b'\\';

fn csv_builder(cfg: &FileSourceConfig, schema: ArrowSchemaRef, batch_size: usize) -> arrow::csv::ReaderBuilder {
    arrow::csv::ReaderBuilder::new(schema)
        .with_header(false)
        .with_delimiter(cfg.delimiter)
        .with_quote(CSV_QUOTE)
        .with_escape(CSV_ESCAPE)
        .with_batch_size(batch_size)
}

/// Decodes CSV text with arrow-csv; any error fails it all.
fn csv_read(builder: arrow::csv::ReaderBuilder, text: &[u8]) -> std::result::Result<Vec<RecordBatch>, ArrowError> {
    builder.build(std::io::Cursor::new(text))?.collect()
}

/// The data schema with every column as a string (to find which fields do not convert).
fn string_schema(schema: &ArrowSchemaRef) -> ArrowSchemaRef {
    Arc::new(ArrowSchema::new(
        schema.fields().iter().map(|f| ArrowField::new(f.name(), ArrowDataType::Utf8, true)).collect::<Vec<_>>(),
    ))
}

/// Where the data starts: after the header line when there is one.
fn csv_body_start(cfg: &FileSourceConfig, bytes: &[u8]) -> usize {
    if !cfg.header {
        return 0;
    }
    let mut pos = 0;
    while pos < bytes.len() && (bytes[pos] == b'\n' || bytes[pos] == b'\r') {
        pos += 1;
    }
    csv_record_end(cfg, bytes, pos)
}

/// The end (exclusive, after its line break) of the CSV record starting at `start`: the
/// first line break outside a quoted field. A quote opens a quoted field only at the start
/// of a field; inside one, the escape character and a doubled quote escape the next quote.
fn csv_record_end(cfg: &FileSourceConfig, bytes: &[u8], start: usize) -> usize {
    let mut i = start;
    let mut field_start = true;
    let mut quoted = false;
    while i < bytes.len() {
        let b = bytes[i];
        if quoted {
            if b == CSV_ESCAPE {
                i += 2;
                continue;
            }
            if b == CSV_QUOTE {
                if bytes.get(i + 1) == Some(&CSV_QUOTE) {
                    i += 2;
                    continue;
                }
                quoted = false;
            }
            i += 1;
            continue;
        }
        if b == b'\n' {
            return i + 1;
        }
        if field_start && b == CSV_QUOTE {
            quoted = true;
            field_start = false;
        } else {
            field_start = b == cfg.delimiter;
        }
        i += 1;
    }
    bytes.len()
}

/// A CSV record: its 1-based first line and byte range (line break included).
#[derive(Debug, Clone, Copy)]
struct CsvRecord {
    line: usize,
    start: usize,
    end: usize,
}

/// The records of `bytes[start..]`, without empty lines (which CSV readers skip).
fn csv_records(cfg: &FileSourceConfig, bytes: &[u8], start: usize) -> Vec<CsvRecord> {
    let mut records = Vec::new();
    let mut line = 1 + bytes[..start].iter().filter(|b| **b == b'\n').count();
    let mut pos = start;
    while pos < bytes.len() {
        let end = csv_record_end(cfg, bytes, pos);
        if !trim_eol(&bytes[pos..end]).is_empty() {
            records.push(CsvRecord { line, start: pos, end });
        }
        line += bytes[pos..end].iter().filter(|b| **b == b'\n').count();
        pos = end;
    }
    records
}

/// Decodes records that must yield exactly one row each.
fn csv_read_records(
    cfg: &FileSourceConfig,
    bytes: &[u8],
    records: &[CsvRecord],
) -> std::result::Result<Vec<RecordBatch>, ArrowError> {
    let (Some(first), Some(last)) = (records.first(), records.last()) else {
        return Ok(Vec::new());
    };
    let batches = csv_read(csv_builder(cfg, cfg.data_schema.clone(), BATCH_ROWS), &bytes[first.start..last.end])?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows != records.len() {
        return Err(ArrowError::CsvError(format!("expected {} records, found {rows}", records.len())));
    }
    Ok(batches)
}

fn decode_csv(cfg: &FileSourceConfig, path: &str, bytes: &[u8]) -> Result<Decoded> {
    let track = cfg.corrupt_index.is_some();
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    let start = csv_body_start(cfg, bytes);
    let mut out = Decoded::default();
    if let Ok(batches) = csv_read(csv_builder(cfg, cfg.data_schema.clone(), BATCH_ROWS), &bytes[start..]) {
        for b in batches {
            out.push_good(b, track);
        }
        return Ok(out);
    }
    // Slow path: isolate the malformed records.
    let records = csv_records(cfg, bytes, start);
    let decode = |part: &[CsvRecord]| csv_read_records(cfg, bytes, part);
    for chunk in records.chunks(BATCH_ROWS) {
        bisect(chunk, &decode, &mut |piece| match piece {
            Piece::Good(batches) => {
                batches.into_iter().for_each(|b| out.push_good(b, track));
                Ok(())
            }
            Piece::Bad(record, e) => {
                let raw = trim_eol(&bytes[record.start..record.end]);
                let (row, message) = csv_partial_row(cfg, raw, &e);
                match cfg.mode {
                    ParseMode::FailFast => {
                        Err(SluiceError::MalformedRecord { path: path.to_string(), line: record.line, message })
                    }
                    ParseMode::DropMalformed => Ok(()),
                    ParseMode::Permissive => {
                        out.push_bad(row, raw, track);
                        Ok(())
                    }
                }
            }
        })?;
    }
    Ok(out)
}

/// For a malformed CSV record: the row Spark keeps in PERMISSIVE mode (fields that convert,
/// nulls elsewhere; missing trailing fields null) and a message naming what failed.
fn csv_partial_row(cfg: &FileSourceConfig, raw: &[u8], error: &ArrowError) -> (RecordBatch, String) {
    let schema = &cfg.data_schema;
    let n = schema.fields().len();
    let strings = string_schema(schema);
    let one_row = |batches: Vec<RecordBatch>| batches.into_iter().find(|b| b.num_rows() == 1);
    let exact = csv_read(csv_builder(cfg, strings.clone(), 1), raw).ok().and_then(one_row);
    let (batch, short) = match exact {
        Some(b) => (b, false),
        None => match csv_read(csv_builder(cfg, strings, 1).with_truncated_rows(true), raw).ok().and_then(one_row) {
            Some(b) => (b, true),
            None => {
                let message = match error {
                    ArrowError::CsvError(m) if m.contains("incorrect number of fields") => {
                        format!("the record has more fields than the {n} columns of the schema")
                    }
                    other => other.to_string(),
                };
                return (null_row(schema), message);
            }
        },
    };
    let mut problems = Vec::new();
    if short {
        problems.push(format!("the record has fewer fields than the {n} columns of the schema"));
    }
    let safe = CastOptions { safe: true, ..Default::default() };
    let mut columns = Vec::with_capacity(n);
    for (field, text) in schema.fields().iter().zip(batch.columns()) {
        let converted = cast_with_options(text, field.data_type(), &safe)
            .unwrap_or_else(|_| new_null_array(field.data_type(), text.len()));
        if converted.null_count() > text.null_count() {
            let value = text.as_any().downcast_ref::<StringArray>().map(|s| s.value(0).to_string()).unwrap_or_default();
            problems.push(format!("column {:?}: {value:?} is not a valid {}", field.name(), field.data_type()));
        }
        columns.push(converted);
    }
    let row =
        RecordBatch::try_new_with_options(schema.clone(), columns, &RecordBatchOptions::new().with_row_count(Some(1)))
            .unwrap_or_else(|_| null_row(schema));
    let message = if problems.is_empty() { error.to_string() } else { problems.join("; ") };
    (row, message)
}

// ---------------------------------------------------------------------------------------
// Parquet
fn read_parquet(cfg: &FileSourceConfig, path: &str) -> Result<Vec<RecordBatch>> {
    let io = |source| SluiceError::Io { path: path.to_string(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    if file.metadata().map_err(io)?.len() == 0 {
        return Ok(Vec::new());
    }
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| cfg.source_err(format!("{path} is not a readable Parquet file: {e}")))?;
    let file_schema = builder.schema().clone();
    let mut roots = Vec::with_capacity(cfg.data_schema.fields().len());
    for field in cfg.data_schema.fields() {
        match file_schema.index_of(field.name()) {
            Ok(i) => roots.push(i),
            Err(_) => {
                let have: Vec<&str> = file_schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(cfg.source_err(format!(
                    "{path} has no column {:?} (its columns: {})",
                    field.name(),
                    have.join(", ")
                )));
            }
        }
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| cfg.source_err(format!("{path}: {e}")))?;
    let strict = CastOptions { safe: false, ..Default::default() };
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| cfg.source_err(format!("{path}: {e}")))?;
        let mut columns = Vec::with_capacity(cfg.data_schema.fields().len());
        for field in cfg.data_schema.fields() {
            let column = batch
                .column_by_name(field.name())
                .ok_or_else(|| cfg.source_err(format!("{path} has no column {:?}", field.name())))?;
            columns.push(if column.data_type() == field.data_type() {
                column.clone()
            } else {
                cast_with_options(column, field.data_type(), &strict).map_err(|e| {
                    cfg.source_err(format!(
                        "{path}: column {:?} of type {} cannot be read as {}: {e}",
                        field.name(),
                        column.data_type(),
                        field.data_type()
                    ))
                })?
            });
        }
        out.push(
            RecordBatch::try_new_with_options(
                cfg.data_schema.clone(),
                columns,
                &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
            )
            .map_err(|e| cfg.source_err(format!("{path}: {e}")))?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(kind: FileFormat, schema: Schema, options: &[(&str, &str)]) -> Result<FileSourceConfig> {
        let options = options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        FileSourceConfig::new(kind, Path::new("/tmp/in"), Some(Arc::new(schema)), &options)
    }

    fn schema() -> Schema {
        Schema::from_iter([
            polars::prelude::Field::new("ts".into(), DataType::Datetime(TimeUnit::Microseconds, None)),
            polars::prelude::Field::new("v".into(), DataType::Float64),
            polars::prelude::Field::new("n".into(), DataType::Int64),
        ])
    }

    #[test]
    fn schema_maps_to_arrow_and_corrupt_column_is_last() {
        let c = cfg(FileFormat::Json, schema(), &[("columnnameofcorruptrecord", "_corrupt_record")]).unwrap();
        assert_eq!(c.data_schema.field(0).data_type(), &ArrowDataType::Timestamp(ArrowTimeUnit::Microsecond, None));
        assert_eq!(c.out_schema.fields().len(), 4);
        assert_eq!(c.corrupt_index, Some(3));
        assert_eq!(c.schema.get("_corrupt_record"), Some(&DataType::String));
        assert_eq!(c.schema.iter().last().map(|(n, _)| n.as_str()), Some("_corrupt_record"));
    }

    #[test]
    fn options_are_checked() {
        let e = FileSourceConfig::new(FileFormat::Json, Path::new("x"), None, &BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains(MISSING_SCHEMA), "{e}");
        assert!(cfg(FileFormat::Json, schema(), &[("maxFilesPerTrigger", "0")]).is_err());
        assert!(cfg(FileFormat::Json, schema(), &[("mode", "LENIENT")]).is_err());
        assert!(cfg(FileFormat::Csv, schema(), &[("sep", ";;")]).is_err());
        assert_eq!(cfg(FileFormat::Csv, schema(), &[("sep", "\\t")]).unwrap().delimiter, b'\t');
        assert_eq!(
            cfg(FileFormat::Json, schema(), &[("MAXFILESPERTRIGGER", "2")]).unwrap().max_files_per_trigger,
            Some(2)
        );
        let tz = Schema::from_iter([polars::prelude::Field::new(
            "t".into(),
            DataType::Datetime(TimeUnit::Microseconds, Some(polars::prelude::TimeZone::UTC)),
        )]);
        assert!(cfg(FileFormat::Json, tz, &[]).is_err());
    }

    #[test]
    fn json_fast_path_rejects_two_objects_on_a_line_and_split_objects() {
        let c = cfg(FileFormat::Json, schema(), &[("mode", "DROPMALFORMED")]).unwrap();
        let text = b"{\"v\": 1}{\"v\": 2}\n{\"v\":\n 3}\n{\"v\": 4}\n";
        let d = decode_json(&c, "f", text).unwrap();
        let rows: usize = d.batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 1, "only the last line is one JSON object");
    }

    #[test]
    fn spark_number_rules() {
        let c = cfg(FileFormat::Json, schema(), &[]).unwrap();
        let text = b"{\"ts\": 60, \"v\": \"NaN\", \"n\": 1.5}\n";
        let b = assemble(&c, "f", decode_json(&c, "f", text).unwrap()).unwrap();
        let ts = b.column(0).as_any().downcast_ref::<arrow::array::TimestampMicrosecondArray>().unwrap();
        assert_eq!(ts.value(0), 60_000_000, "integral JSON timestamps are seconds");
        let v = b.column(1).as_any().downcast_ref::<arrow::array::Float64Array>().unwrap();
        assert!(v.value(0).is_nan());
        assert!(b.column(2).is_null(0), "1.5 is not a long: the field is null");
    }
}
