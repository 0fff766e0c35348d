//! # sluice-sources
//!
//! Sources for Sluice: [`file`](mod@file) (JSON lines, CSV, Parquet directories, Spark's
//! `FileStreamSource`), [`memory`] (`MemoryStream`, for tests), `kafka` (with the cargo
//! feature `kafka`: Spark's Kafka source through rdkafka), [`rate`] (generated rows) and
//! [`socket`] (text lines from a TCP server, not fault-tolerant); [`json`] parses JSON
//! columns (`from_json`, `to_json`).

pub mod file;
pub mod json;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod memory;
pub mod rate;
pub mod socket;

pub use file::{FileFormat, FileSource, FileSourceFormat, FileSourceProvider, ParseMode};
pub use json::{from_json, to_json};
#[cfg(feature = "kafka")]
pub use kafka::{KafkaSource, KafkaSourceFormat, KafkaSourceProvider};
pub use memory::MemoryStream;
pub use rate::{RateSource, RateSourceFormat};
pub use socket::{SocketSource, SocketSourceFormat};
