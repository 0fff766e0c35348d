//! # sluice-connectors
//!
//! Sluice's built-in sources and sinks, one folder (or file) per connector, each holding
//! both its source and its sink so that a connector's options are parsed in one place
//! (as Spark's `kafka-0-10-sql` holds both):
//!
//! ```text
//!  read_stream().format("json").option(..).load(dir)        write_stream().format("kafka")
//!        │ format name                                             │ format name
//!        ▼                                                         ▼
//!  SourceFormat (registry entry) ── create(path, schema, &Options)  SinkProvider ── create(&Options)
//!        │   options read through Options; the rest is reported    │
//!        ▼   as unused at start() (known_options() lists them)     ▼
//!  SourceProvider (one per DataFrame) ── create() per query run   Sink (one per query run)
//!        ▼                                                         ▲
//!  Source: the stream ── Arrow batches ── formats/ ── Polars ─► engine ─► Polars frames
//! ```
//!
//! The file connector reads, lists and writes through `storage::Dir` (object_store:
//! `LocalFileSystem` with fsync for a local path, S3 for `s3://bucket/prefix`), so a
//! local directory and an S3 prefix take the same code path; where a path points is
//! decided by [`sluice_checkpoint::store`], shared with the checkpoint.
//!
//! | connector | source | sink |
//! |---|---|---|
//! | [`file`] (`json`, `csv`, `parquet`) | directories of files, local or `s3://` (feature `s3`), parse modes, `maxFilesPerTrigger`; also read once by `session.read()` (`SourceFormat::read_static`) | exactly-once files with a `_sluice_metadata` manifest; `partitionBy`, `compression`, `maxRecordsPerFile` |
//! | `kafka` (cargo feature `kafka`) | assigned partitions, offsets in the checkpoint | at least once, or exactly once with transactions |
//! | `kinesis` (cargo feature `kinesis`) | one partition per shard, sequence numbers in the checkpoint, resharding in lineage order | at least once, PutRecords in calls of up to 500 records / 5 MiB |
//! | [`memory`] | `MemoryStream`, fed by the program | queryable tables by query name |
//! | [`console`] | | prints each batch |
//! | [`rate`] | generated `timestamp, value` rows | |
//! | [`socket`] | text lines from a TCP server (not fault-tolerant) | |
//!
//! [`formats`] is the one home of everything about data formats: [`FileFormat`], the
//! Polars → Arrow type mapping, JSON lines / CSV / Parquet decoding and encoding, the
//! manifest, and the column functions [`from_json`] / [`to_json`]. Event time is tagged
//! UTC in exactly one place, `sluice_engine::interop`. `foreach_batch` is the engine's
//! ([`ForeachBatchSink`]). [`register_all`] registers every format with a session.
//!
//! # Naming
//! Every connector follows one rule, `<Kind>` being `File`, `Kafka`, `Rate`, ...:
//!
//! | name | what it is |
//! |---|---|
//! | `<Kind>SourceFormat` | the registry entry of `read_stream().format(..)` (`impl SourceFormat`) |
//! | `<Kind>Source` | the typed builder users call (`FileSource::json(dir)`, `KafkaSource::new(servers)`); it builds the same `Options` as the string form |
//! | `<Kind>SourceProvider` | what a streaming data frame holds (`impl SourceProvider`) |
//! | `<Kind>Stream` | the running source, one per query run (`impl Source`): `FileStream`, `KafkaStream`, `RateStream`, `SocketStream` |
//! | `<Kind>SinkProvider` | the registry entry of `write_stream().format(..)` (`impl SinkProvider`) |
//! | `<Kind>Sink` | the running sink (`impl Sink`) |
//!
//! One exception keeps Spark's name: [`MemoryStream`] is the test source's handle (the
//! program feeds it, and it is its own provider); its running source is
//! `MemoryStreamRun`.

pub mod console;
pub mod file;
pub mod formats;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "kinesis")]
pub mod kinesis;
pub mod memory;
pub mod rate;
pub mod socket;
pub(crate) mod storage;

use std::sync::Arc;

use polars::prelude::SchemaRef;
use sluice_engine::{EngineSession, Result, SluiceError};

pub use console::{ConsoleSink, ConsoleSinkProvider};
pub use file::{FileSink, FileSinkProvider, FileSource, FileSourceFormat, FileSourceProvider, read_output, read_output_with};
pub use formats::functions::{from_json, to_json};
pub use formats::manifest::{
    METADATA_DIR, ManifestEntry, ManifestFile, check_manifest_ids, manifest_entry_path, read_manifest, read_manifest_with,
};
pub use formats::{FileFormat, ParseMode};
#[cfg(feature = "kafka")]
pub use kafka::{KafkaSink, KafkaSinkProvider, KafkaSource, KafkaSourceFormat, KafkaSourceProvider};
#[cfg(feature = "kinesis")]
pub use kinesis::{KinesisSink, KinesisSinkProvider, KinesisSource, KinesisSourceFormat, KinesisSourceProvider};
pub use memory::{MemorySink, MemorySinkProvider, MemoryStream, MemoryTable, MemoryTables};
pub use rate::{RateSource, RateSourceFormat, RateSourceProvider};
pub use sluice_engine::ForeachBatchSink;
/// Where a path points (a local directory or `s3://bucket/prefix`) and the `s3.*`
/// options of an S3 store: shared with the checkpoint.
pub use sluice_checkpoint::store::StoreOptions;
pub use socket::{SocketSource, SocketSourceFormat, SocketSourceProvider};

/// Registers every built-in format with `session`: sources `json`, `csv`, `parquet`,
/// `rate`, `socket`, (cargo feature `kafka`) `kafka` and (cargo feature `kinesis`)
/// `kinesis`; sinks `parquet`, `json`, `csv`, `console`, `memory`, `kafka` and
/// `kinesis`. Returns the memory sink's tables, by query name.
pub fn register_all(session: &EngineSession) -> MemoryTables {
    for kind in FileFormat::ALL {
        session.register_source_format(kind.name(), Arc::new(FileSourceFormat { kind }));
        session.register_sink(kind.name(), Arc::new(FileSinkProvider::new(kind)));
    }
    session.register_source_format("rate", Arc::new(RateSourceFormat));
    session.register_source_format("socket", Arc::new(SocketSourceFormat));
    #[cfg(feature = "kafka")]
    {
        session.register_source_format("kafka", Arc::new(KafkaSourceFormat));
        session.register_sink("kafka", Arc::new(KafkaSinkProvider));
    }
    #[cfg(feature = "kinesis")]
    {
        session.register_source_format("kinesis", Arc::new(KinesisSourceFormat));
        session.register_sink("kinesis", Arc::new(KinesisSinkProvider));
    }
    session.register_sink("console", Arc::new(ConsoleSinkProvider));
    let tables = MemoryTables::new();
    session.register_sink("memory", Arc::new(MemorySinkProvider::new(tables.clone())));
    tables
}

/// Checks that a source without a path or a user schema (Kafka, rate, socket) was given
/// neither: `load("")`, no `.schema(..)`.
///
/// # Errors
/// [`SluiceError::InvalidArgument`]: "`who` takes no path (`path` given): `path_hint`",
/// or `schema_error`.
pub(crate) fn without_path_or_schema(
    who: &str,
    path: &str,
    schema: Option<&SchemaRef>,
    path_hint: &str,
    schema_error: &str,
) -> Result<()> {
    if !path.is_empty() {
        return Err(SluiceError::InvalidArgument(format!("{who} takes no path ({path:?} given): {path_hint}")));
    }
    if schema.is_some() {
        return Err(SluiceError::InvalidArgument(schema_error.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use sluice_engine::{Options, SinkProvider, SourceFormat};

    use super::*;

    /// Every option a connector lists in `known_options` is read when given (so it is
    /// never reported as unused), and an option it does not read is left unread.
    #[test]
    fn connectors_read_the_options_they_list() {
        let valid = |k: &str| match k {
            "numRows" | "rowsPerSecond" | "numPartitions" | "port" => "3",
            "rampUpTime" => "2s",
            "host" => "127.0.0.1",
            "includeTimestamp" => "true",
            _ => "q",
        };
        let all = |known: &[&str]| Options::from_pairs(known.iter().map(|k| (*k, valid(k))).chain([("typo", "1")]));
        let console = ConsoleSinkProvider;
        let o = all(console.known_options());
        console.create(&o).unwrap();
        assert_eq!(o.unread(), ["typo"]);
        let memory = MemorySinkProvider::default();
        let o = all(memory.known_options());
        memory.create(&o).unwrap();
        assert_eq!(o.unread(), ["typo"]);
        assert!(memory.tables().get("q").is_some(), "the table is registered under the query name");
        for format in [&RateSourceFormat as &dyn SourceFormat, &SocketSourceFormat] {
            let o = all(format.known_options());
            format.create("", None, &o).unwrap();
            assert_eq!(o.unread(), ["typo"]);
        }
    }

    #[test]
    fn sources_without_a_path_reject_one() {
        let e = RateSourceFormat.create("x", None, &Options::new()).err().unwrap().to_string();
        assert_eq!(e, "invalid argument: the rate source takes no path (\"x\" given): load(\"\")");
    }
}
