//! [`FileFormat`]: the file formats of the file source and the file sink.

use std::path::Path;
use std::str::FromStr;

use crate::{Result, SluiceError};

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
