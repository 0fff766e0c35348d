//! # sluice-sources
//!
//! Sources for Sluice: [`file`](mod@file) (JSON lines, CSV, Parquet directories, Spark's
//! `FileStreamSource`) and [`memory`] (`MemoryStream`, for tests).

pub mod file;
pub mod memory;

pub use file::{FileFormat, FileSource, FileSourceFormat, FileSourceProvider, ParseMode};
pub use memory::MemoryStream;
