//! Everything about data formats, in one home: the file connector's readers and writers
//! and the JSON column functions use it; no connector defines a format of its own.
//!
//! | file | what lives there |
//! |---|---|
//! | `mod.rs` | [`FileFormat`] (`json` / `csv` / `parquet`: names, extensions) |
//! | [`types`] | the Polars → Arrow *type* mapping of declared schemas (file sources, `from_json`) and the cast helper of the writers |
//! | [`compression`] | compressed JSON lines and CSV input (`.gz`, `.deflate`, `.zst`, `.bz2`, `.lz4`), by extension |
//! | [`records`] | what JSON and CSV decoding share: Spark's [`ParseMode`], the rows decoded from one file, isolating malformed records by bisection |
//! | [`json`] | JSON lines: decoding with Spark's parse modes and Spark's scalar conversions; the writer |
//! | [`csv`] | CSV: decoding with Spark's parse modes; the writer (structs flattened) |
//! | [`parquet`] | Parquet: the projecting, casting reader; the writer |
//! | [`manifest`] | the file sink's `_sluice_metadata` manifest: format, reader and writer |
//! | [`functions`] | [`from_json`](functions::from_json) / [`to_json`](functions::to_json) on columns |
//!
//! # Time zones
//! Event time is a time-zone-naive `Datetime` inside Polars, read as UTC, and a UTC-tagged
//! Arrow `Timestamp` outside. Exactly one place tags it: `sluice_engine::interop`
//! (`df_to_record_batch`: top-level columns, struct fields and list items), which every
//! writer here goes through; the writers only choose how a timestamp is spelt (RFC 3339
//! with `Z`). Readers give timestamps of any zone back as the same UTC instants.

pub mod compression;
pub mod csv;
pub mod functions;
pub mod json;
pub mod manifest;
pub mod parquet;
pub mod records;
pub mod types;

use std::io::{BufWriter, Write};
use std::path::Path;
use std::str::FromStr;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef as ArrowSchemaRef;
use ::parquet::basic::Compression;
use sluice_engine::{Result, SluiceError};

pub use csv::CsvOptions;
pub use records::ParseMode;

/// How the writers spell timestamps in JSON and CSV: RFC 3339 in UTC, the fraction only
/// when needed (chrono's `%.f`: nothing, or 3, 6 or 9 digits).
pub(crate) const WRITE_TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.fZ";

/// An error reading or writing a data file: I/O (the caller names the file) or the
/// format's own (a message).
#[derive(Debug)]
pub(crate) enum FileError {
    Io(std::io::Error),
    Format(String),
}

impl FileError {
    pub(crate) fn format(e: impl std::fmt::Display) -> Self {
        FileError::Format(e.to_string())
    }
}

/// A file format (Spark's `format("json" | "csv" | "parquet")`), shared by the file
/// source and the file sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileFormat {
    /// Apache Parquet (arrow-rs `parquet`); extension `parquet`.
    Parquet,
    /// JSON lines, one object per line (Spark's `json` with `multiLine=false`); extension `json`.
    Json,
    /// Comma-separated values (Spark's `csv`); extension `csv`.
    Csv,
}

impl FileFormat {
    /// Every format, in registration order.
    pub const ALL: [FileFormat; 3] = [FileFormat::Parquet, FileFormat::Json, FileFormat::Csv];

    /// The format name, also the file extension: `"parquet"`, `"json"`, `"csv"`.
    pub fn name(self) -> &'static str {
        match self {
            FileFormat::Parquet => "parquet",
            FileFormat::Json => "json",
            FileFormat::Csv => "csv",
        }
    }

    /// The format of a data file by its extension, `None` for any other file.
    pub fn from_path(path: &Path) -> Option<FileFormat> {
        path.extension().and_then(|e| e.to_str()).and_then(|e| e.parse().ok())
    }
}

/// Writing and reading back whole files (the file sink and its reader).
impl FileFormat {
    /// The Parquet compression codec for Spark's `compression` option: `snappy`, `zstd`,
    /// `gzip`, `none` / `uncompressed` for Parquet; JSON and CSV files are compressed as
    /// a whole ([`FileFormat::text_codec`]), so for them every codec but `none` /
    /// `uncompressed` maps to Parquet's `UNCOMPRESSED` here.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] for a codec the format does not support.
    pub fn compression(self, codec: &str) -> Result<Compression> {
        let lower = codec.to_ascii_lowercase();
        match (self, lower.as_str()) {
            (_, "none" | "uncompressed") => Ok(Compression::UNCOMPRESSED),
            (FileFormat::Parquet, "snappy") => Ok(Compression::SNAPPY),
            (FileFormat::Parquet, "zstd") => Ok(Compression::ZSTD(Default::default())),
            (FileFormat::Parquet, "gzip") => Ok(Compression::GZIP(Default::default())),
            (FileFormat::Json | FileFormat::Csv, "gzip" | "zstd") => Ok(Compression::UNCOMPRESSED),
            _ => Err(SluiceError::InvalidArgument(format!(
                "compression {codec:?} is not supported for {self} files (use {})",
                if self == FileFormat::Parquet { "snappy, zstd, gzip or none" } else { "gzip, zstd or none" }
            ))),
        }
    }

    /// For JSON and CSV: the codec that compresses whole files for Spark's `compression`
    /// option (`gzip` -> `.json.gz`, `zstd` -> `.csv.zst`), `None` for `none` /
    /// `uncompressed` and for Parquet (compressed inside the file).
    ///
    /// # Errors
    /// As [`FileFormat::compression`].
    pub fn text_codec(self, codec: &str) -> Result<Option<compression::Codec>> {
        self.compression(codec)?;
        Ok(match (self, codec.to_ascii_lowercase().as_str()) {
            (FileFormat::Json | FileFormat::Csv, "gzip") => Some(compression::Codec::Gzip),
            (FileFormat::Json | FileFormat::Csv, "zstd") => Some(compression::Codec::Zstd),
            _ => None,
        })
    }

    /// The format of a data file by its extension, also under a codec extension
    /// (`x.json.gz`), with the codec; `None` for any other file.
    pub fn of_data_file(name: &str) -> Option<(FileFormat, Option<compression::Codec>)> {
        let p = Path::new(name);
        match compression::Codec::from_path(p) {
            Some(codec) => Some((FileFormat::from_path(Path::new(p.file_stem()?))?, Some(codec))),
            None => Some((FileFormat::from_path(p)?, None)),
        }
    }

    /// `batch` with the columns this format writes (CSV flattens structs; the others keep
    /// the batch as is). Its schema is the one recorded in the manifest.
    ///
    /// # Errors
    /// A message naming a column the format cannot write.
    pub(crate) fn writable(self, batch: &RecordBatch) -> std::result::Result<RecordBatch, String> {
        match self {
            FileFormat::Csv => csv::flatten_batch(batch),
            FileFormat::Parquet | FileFormat::Json => Ok(batch.clone()),
        }
    }

    /// Writes a [`writable`](Self::writable) batch to `file` (`compression`: Parquet only).
    pub(crate) fn write(
        self,
        out: &mut (impl Write + Send),
        batch: &RecordBatch,
        compression: Compression,
    ) -> std::result::Result<(), FileError> {
        let mut out = BufWriter::new(out);
        match self {
            FileFormat::Parquet => parquet::write(&mut out, batch, compression)?,
            FileFormat::Json => json::write(&mut out, batch)?,
            FileFormat::Csv => csv::write(&mut out, batch)?,
        }
        out.flush().map_err(FileError::Io)
    }

    /// Reads the whole file `bytes` with `schema` (JSON, CSV; Parquet files carry theirs),
    /// inferring it when `None`; returns the schema and the rows.
    pub(crate) fn read_bytes(
        self,
        bytes: bytes::Bytes,
        schema: Option<ArrowSchemaRef>,
    ) -> std::result::Result<(ArrowSchemaRef, Vec<RecordBatch>), FileError> {
        match self {
            FileFormat::Parquet => parquet::read_all(bytes),
            FileFormat::Json => json::read_all(std::io::Cursor::new(bytes.as_ref()), schema),
            FileFormat::Csv => {
                csv::read_all(std::io::Cursor::new(bytes.as_ref()), schema, || Ok(std::io::Cursor::new(bytes.as_ref())))
            }
        }
    }
}

impl std::fmt::Display for FileFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FileFormat {
    type Err = SluiceError;
    /// Parses `parquet`, `json` or `csv` (any case).
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] for any other name.
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "parquet" => Ok(FileFormat::Parquet),
            "json" => Ok(FileFormat::Json),
            "csv" => Ok(FileFormat::Csv),
            _ => Err(SluiceError::InvalidArgument(format!("unknown file format {s:?}: use parquet, json or csv"))),
        }
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
}
