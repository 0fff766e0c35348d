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

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
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
    /// `none` / `uncompressed` for Parquet; only `none` / `uncompressed` for JSON and CSV.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] for another codec.
    pub fn compression(self, codec: &str) -> Result<Compression> {
        match codec.to_ascii_lowercase().as_str() {
            "none" | "uncompressed" => Ok(Compression::UNCOMPRESSED),
            "snappy" if self == FileFormat::Parquet => Ok(Compression::SNAPPY),
            "zstd" if self == FileFormat::Parquet => Ok(Compression::ZSTD(Default::default())),
            _ => Err(SluiceError::InvalidArgument(format!(
                "compression {codec:?} is not supported for {self} files (use {})",
                if self == FileFormat::Parquet { "snappy, zstd or none" } else { "none" }
            ))),
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
    pub(crate) fn write(self, file: &File, batch: &RecordBatch, compression: Compression) -> std::result::Result<(), FileError> {
        let mut out = BufWriter::new(file);
        match self {
            FileFormat::Parquet => parquet::write(&mut out, batch, compression)?,
            FileFormat::Json => json::write(&mut out, batch)?,
            FileFormat::Csv => csv::write(&mut out, batch)?,
        }
        out.flush().map_err(FileError::Io)
    }

    /// Reads the whole file at `path` with `schema` (JSON, CSV; Parquet files carry
    /// theirs), inferring it when `None`; returns the schema and the rows.
    pub(crate) fn read_all(
        self,
        path: &Path,
        schema: Option<ArrowSchemaRef>,
    ) -> std::result::Result<(ArrowSchemaRef, Vec<RecordBatch>), FileError> {
        let file = File::open(path).map_err(FileError::Io)?;
        match self {
            FileFormat::Parquet => parquet::read_all(file),
            FileFormat::Json => json::read_all(BufReader::new(file), schema),
            FileFormat::Csv => csv::read_all(BufReader::new(file), schema, || File::open(path).map(BufReader::new)),
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
