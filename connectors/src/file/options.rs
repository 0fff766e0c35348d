//! The file connector's options, checked once from [`Options`] when a source or sink is
//! built: [`FileSourceConfig`] for the source, [`FileSinkOptions`] for the sink, and the
//! names each of them reads ([`source_options`], [`SINK_OPTIONS`]).
//!
//! A format reads only its own options (Spark's names): `header` given to a JSON source
//! is not read, so the engine reports it as unused at `start()`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{DataType as ArrowDataType, Field as ArrowField, Schema as ArrowSchema, SchemaRef as ArrowSchemaRef};
use parquet::basic::Compression;
use polars::prelude::{DataType, SchemaRef};
use sluice_engine::{Options, Result, SluiceError};

use crate::formats::records::RecordDecoding;
use crate::formats::types::file_arrow_type;
use crate::formats::{CsvOptions, FileFormat, ParseMode};
use crate::storage::Dir;

/// The message of the error returned when a file source has no schema.
pub(crate) const MISSING_SCHEMA: &str =
    "file sources need a schema (Spark's readStream requires one): call .schema(...)";

/// The options every file source reads.
const COMMON: [&str; 3] = ["maxFilesPerTrigger", "latestFirst", "cleanSource"];
/// The options of the `json` source.
const JSON: [&str; 6] = [COMMON[0], COMMON[1], COMMON[2], "mode", "columnNameOfCorruptRecord", "multiLine"];
/// The options of the `csv` source.
const CSV: [&str; 9] = [
    COMMON[0],
    COMMON[1],
    COMMON[2],
    "mode",
    "columnNameOfCorruptRecord",
    "multiLine",
    "header",
    "sep",
    "delimiter",
];

/// The options (Spark's names) the `kind` file source reads.
pub fn source_options(kind: FileFormat) -> &'static [&'static str] {
    match kind {
        FileFormat::Json => &JSON,
        FileFormat::Csv => &CSV,
        FileFormat::Parquet => &COMMON,
    }
}

/// The options of a static `csv` read: the stream's and `inferSchema`.
const CSV_STATIC: [&str; 10] = [CSV[0], CSV[1], CSV[2], CSV[3], CSV[4], CSV[5], CSV[6], CSV[7], CSV[8], "inferSchema"];

/// The options (Spark's names) a static read of `kind` files reads: the source's, and
/// for `csv` also `inferSchema`.
pub(crate) fn static_options(kind: FileFormat) -> &'static [&'static str] {
    match kind {
        FileFormat::Csv => &CSV_STATIC,
        other => source_options(other),
    }
}

/// The options the file sinks read (`checkpointLocation` and `queryName` are the
/// engine's), and for an `s3://` path the `s3.*` options of [`sluice_checkpoint::store`].
pub const SINK_OPTIONS: &[&str] = &["path", "compression", "partitionBy", "maxRecordsPerFile"];

fn invalid(message: impl Into<String>) -> SluiceError {
    SluiceError::InvalidArgument(message.into())
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

/// Everything a file source needs to know, checked once when the provider is built.
#[derive(Debug)]
pub(crate) struct FileSourceConfig {
    pub kind: FileFormat,
    /// The directory, absolute, valid UTF-8; for S3 its `s3://bucket/prefix` URL.
    pub dir: PathBuf,
    /// The directory's store: all listing and reading goes through it.
    pub store: Dir,
    /// The Polars schema of every batch (the corrupt-record column included).
    pub schema: SchemaRef,
    /// The columns decoded from the files (the corrupt-record column excluded), all nullable.
    pub data_schema: ArrowSchemaRef,
    /// The arrow schema of every batch (`schema` on the arrow side).
    pub out_schema: ArrowSchemaRef,
    /// Position of the corrupt-record column in `out_schema`, when configured.
    pub corrupt_index: Option<usize>,
    pub max_files_per_trigger: Option<usize>,
    pub mode: ParseMode,
    pub csv: CsvOptions,
    /// Whether option `header` was given (otherwise a file sink's CSV output, which
    /// always starts with a header line, is read with `header=true`).
    pub csv_header_given: bool,
}

impl FileSourceConfig {
    /// Checks the schema and the options `kind` reads (see
    /// [`FileSourceFormat`](super::FileSourceFormat)).
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] naming the missing schema, the bad option or the
    /// column whose type file sources cannot read.
    pub fn new(kind: FileFormat, path: &Path, schema: Option<SchemaRef>, options: &Options) -> Result<Self> {
        let user = schema.ok_or_else(|| invalid(MISSING_SCHEMA))?;
        let text = matches!(kind, FileFormat::Json | FileFormat::Csv);

        let max_files_per_trigger = options.positive_usize("maxFilesPerTrigger")?;
        if options.bool("latestFirst")? == Some(true) {
            return Err(invalid("option latestFirst=true is not supported: files are taken oldest first"));
        }
        if let Some(v) = options.get("cleanSource") {
            if !v.eq_ignore_ascii_case("off") {
                return Err(invalid(format!("option cleanSource={v} is not supported (only off)")));
            }
        }
        let mut mode = ParseMode::default();
        let mut corrupt_name = None;
        if text {
            mode = options.get("mode").map(str::parse).transpose()?.unwrap_or_default();
            corrupt_name = options.get("columnNameOfCorruptRecord").map(str::to_string);
            if options.bool("multiLine")? == Some(true) {
                return Err(invalid("option multiLine=true is not supported: files must hold one record per line"));
            }
        }
        let mut csv = CsvOptions::default();
        let mut csv_header_given = false;
        if kind == FileFormat::Csv {
            let header = options.bool("header")?;
            csv_header_given = header.is_some();
            csv.header = header.unwrap_or(false);
            if let Some(d) = options.get("sep").or_else(|| options.get("delimiter")) {
                csv.delimiter = parse_delimiter(d)?;
            }
        }

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
            let field = ArrowField::new(name.as_str(), file_arrow_type(kind, name, dtype)?, true);
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

        let store = Dir::open(&path.to_string_lossy(), options)?;
        let dir = PathBuf::from(store.url());
        Ok(Self {
            kind,
            dir,
            store,
            schema: Arc::new(schema),
            data_schema: Arc::new(ArrowSchema::new(data_fields)),
            out_schema: Arc::new(ArrowSchema::new(out_fields)),
            corrupt_index,
            max_files_per_trigger,
            mode,
            csv,
            csv_header_given,
        })
    }

    /// `FileStreamSource[<dir>]`, Spark's name in progress reports.
    pub fn description(&self) -> String {
        format!("FileStreamSource[{}]", self.dir.display())
    }

    /// An error of this source.
    pub fn source_err(&self, message: impl Into<String>) -> SluiceError {
        SluiceError::Source { name: self.description(), message: message.into() }
    }

    /// The CSV options for a file of a file sink's output (`sink_output`): a header line
    /// unless option `header` says otherwise.
    pub fn csv_for(&self, sink_output: bool) -> CsvOptions {
        if sink_output && !self.csv_header_given {
            return CsvOptions { header: true, ..self.csv };
        }
        self.csv
    }

    /// How JSON and CSV records are decoded.
    pub fn decoding(&self) -> RecordDecoding<'_> {
        RecordDecoding { schema: &self.data_schema, mode: self.mode, keep_corrupt: self.corrupt_index.is_some() }
    }
}

/// The file sink's checked options.
#[derive(Debug, Clone)]
pub struct FileSinkOptions {
    /// `path` (required): the output directory, local or `s3://bucket/prefix`.
    pub path: PathBuf,
    /// `compression` (optional, see [`FileFormat::compression`]; default snappy for
    /// Parquet).
    pub compression: Option<Compression>,
    /// `compression` for JSON and CSV: the codec of whole files (gzip, zstd).
    pub text_codec: Option<crate::formats::compression::Codec>,
    /// `partitionBy` (optional): the partition columns, as a JSON array of names (what
    /// `DataStreamWriter::partition_by` sets) or comma-separated.
    pub partition_by: Vec<String>,
    /// `maxRecordsPerFile` (optional, Spark's; 0 or negative: no limit): at most this
    /// many rows per data file.
    pub max_records_per_file: Option<usize>,
}

impl FileSinkOptions {
    /// Checks `path`, `compression`, `partitionBy` and `maxRecordsPerFile` for `format`
    /// files.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] without `path` (or with an empty one), with a
    /// codec `format` does not support, a `partitionBy` that is not a list of names, or a
    /// `maxRecordsPerFile` that is not an integer.
    pub fn new(format: FileFormat, options: &Options) -> Result<Self> {
        let path = options
            .get("path")
            .filter(|p| !p.is_empty())
            .ok_or_else(|| invalid("the file sink needs option path"))?;
        let compression = options.get("compression").map(|c| format.compression(c)).transpose()?;
        let text_codec = options.get("compression").map(|c| format.text_codec(c)).transpose()?.flatten();
        let partition_by = match options.get("partitionBy").map(str::trim) {
            None | Some("") => Vec::new(),
            Some(v) if v.starts_with('[') => serde_json::from_str::<Vec<String>>(v)
                .map_err(|e| invalid(format!("option partitionBy: {v:?} is not a JSON array of column names: {e}")))?,
            Some(v) => v.split(',').map(|c| c.trim().to_string()).collect(),
        };
        if partition_by.iter().any(String::is_empty) {
            return Err(invalid("option partitionBy: a column name is empty"));
        }
        let max_records_per_file = match options.get("maxRecordsPerFile") {
            None => None,
            Some(v) => {
                let n: i64 = v
                    .trim()
                    .parse()
                    .map_err(|_| invalid(format!("option maxRecordsPerFile: {v:?} is not an integer")))?;
                (n > 0).then_some(n as usize)
            }
        };
        Ok(Self { path: PathBuf::from(path), compression, text_codec, partition_by, max_records_per_file })
    }
}

#[cfg(test)]
mod tests {
    use polars::prelude::{Field, Schema, TimeUnit};

    use super::*;

    fn cfg(kind: FileFormat, schema: Schema, options: &[(&str, &str)]) -> Result<FileSourceConfig> {
        FileSourceConfig::new(kind, Path::new("/tmp/in"), Some(Arc::new(schema)), &Options::from_pairs(options.iter().copied()))
    }

    fn schema() -> Schema {
        Schema::from_iter([
            Field::new("ts".into(), DataType::Datetime(TimeUnit::Microseconds, None)),
            Field::new("v".into(), DataType::Float64),
            Field::new("n".into(), DataType::Int64),
        ])
    }

    #[test]
    fn schema_maps_to_arrow_and_corrupt_column_is_last() {
        let c = cfg(FileFormat::Json, schema(), &[("columnnameofcorruptrecord", "_corrupt_record")]).unwrap();
        assert_eq!(
            c.data_schema.field(0).data_type(),
            &ArrowDataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None)
        );
        assert_eq!(c.out_schema.fields().len(), 4);
        assert_eq!(c.corrupt_index, Some(3));
        assert_eq!(c.schema.get("_corrupt_record"), Some(&DataType::String));
        assert_eq!(c.schema.iter().last().map(|(n, _)| n.as_str()), Some("_corrupt_record"));
    }

    #[test]
    fn options_are_checked() {
        let e = FileSourceConfig::new(FileFormat::Json, Path::new("x"), None, &Options::new()).unwrap_err();
        assert!(e.to_string().contains(MISSING_SCHEMA), "{e}");
        assert!(cfg(FileFormat::Json, schema(), &[("maxFilesPerTrigger", "0")]).is_err());
        assert!(cfg(FileFormat::Json, schema(), &[("mode", "LENIENT")]).is_err());
        assert!(cfg(FileFormat::Csv, schema(), &[("sep", ";;")]).is_err());
        assert_eq!(cfg(FileFormat::Csv, schema(), &[("sep", "\\t")]).unwrap().csv.delimiter, b'\t');
        assert_eq!(
            cfg(FileFormat::Json, schema(), &[("MAXFILESPERTRIGGER", "2")]).unwrap().max_files_per_trigger,
            Some(2)
        );
        let tz = Schema::from_iter([Field::new(
            "t".into(),
            DataType::Datetime(TimeUnit::Microseconds, Some(polars::prelude::TimeZone::UTC)),
        )]);
        assert!(cfg(FileFormat::Json, tz, &[]).is_err());
    }

    #[test]
    fn each_format_reads_exactly_its_options() {
        for kind in FileFormat::ALL {
            let known = source_options(kind);
            let valid = |k: &str| match k {
                "maxFilesPerTrigger" => "2",
                "mode" => "DROPMALFORMED",
                "columnNameOfCorruptRecord" => "_bad",
                "cleanSource" => "off",
                "sep" | "delimiter" => ";",
                _ => "false",
            };
            // `delimiter` is read only without `sep` (they are one option).
            let given: Vec<(&str, &str)> =
                known.iter().filter(|k| **k != "delimiter").map(|k| (*k, valid(k))).collect();
            let options = Options::from_pairs(given.iter().copied());
            FileSourceConfig::new(kind, Path::new("/tmp/in"), Some(Arc::new(schema())), &options).unwrap();
            assert!(options.unread().is_empty(), "{kind}: {:?} unread", options.unread());
            let options = Options::from_pairs([("delimiter", ";"), ("maxFilesPerTriger", "1")]);
            FileSourceConfig::new(kind, Path::new("/tmp/in"), Some(Arc::new(schema())), &options).unwrap();
            let unread = options.unread();
            assert!(unread.contains(&"maxFilesPerTriger".to_string()), "{kind}: {unread:?}");
            assert_eq!(unread.contains(&"delimiter".to_string()), kind != FileFormat::Csv, "{kind}: {unread:?}");
        }
        let sink = Options::from_pairs([
            ("path", "/tmp/out"),
            ("compression", "gzip"),
            ("partitionBy", r#"["a","b"]"#),
            ("maxRecordsPerFile", "10"),
            ("numRows", "3"),
        ]);
        let o = FileSinkOptions::new(FileFormat::Json, &sink).unwrap();
        assert_eq!((o.partition_by, o.max_records_per_file), (vec!["a".to_string(), "b".to_string()], Some(10)));
        assert_eq!(o.text_codec, Some(crate::formats::compression::Codec::Gzip));
        assert_eq!(sink.unread(), ["numRows"]);
        assert!(SINK_OPTIONS.iter().all(|k| sink.get(k).is_some()));
    }
}
