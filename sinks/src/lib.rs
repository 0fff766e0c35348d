//! # sluice-sinks
//!
//! Sinks for Sluice: [`console`], [`memory`], [`file`](mod@file) (Parquet, JSON lines, CSV with a
//! manifest for exactly-once output), `kafka` (with the cargo feature `kafka`: at least
//! once, or exactly once with Kafka transactions) and `foreach_batch` (re-exported from the
//! engine).

pub mod console;
pub mod file;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod memory;

pub use console::ConsoleSink;
pub use file::{
    manifest_entry_path, read_manifest, read_output, FileFormat, FileSink, FileSinkProvider, ManifestEntry, ManifestFile,
};
#[cfg(feature = "kafka")]
pub use kafka::{DeliveryGuarantee, KafkaSink, KafkaSinkConfig, KafkaSinkProvider};
pub use memory::{MemorySink, MemoryTable};
pub use sluice_engine::ForeachBatchSink;
