//! The file connector: directories of JSON lines, CSV or Parquet files as a source
//! (Spark's `FileStreamSource`) and as an exactly-once sink with a manifest (Spark's
//! `FileStreamSink`). The formats themselves (decoding, encoding, the manifest) live in
//! [`crate::formats`]; this folder holds what makes them a stream.
//!
//! | file | what lives there |
//! |---|---|
//! | `options.rs` | the options, checked once from `Options`: `FileSourceConfig` (source), [`FileSinkOptions`] (sink), the names each reads |
//! | `source.rs` | [`FileSourceFormat`] (`json` / `csv` / `parquet` registry entries), [`FileSource`] (typed builder, `read_static`), [`FileSourceProvider`], `FileStream` (the running source) |
//! | `listing.rs` | which files a source takes: the directory's, or a sink output's manifest-listed ones |
//! | `source_log.rs` | `sources/<i>/<k>`: the files each offset took, so restarts neither skip nor repeat one |
//! | `static_read.rs` | static reads (`session.read()`): a file or directory once, the schema inferred when not given |
//! | `sink.rs` | [`FileSink`], [`FileSinkProvider`], [`read_output`] (a sink's output as one frame) |

mod listing;
mod options;
mod partition;
mod sink;
mod source;
mod source_log;
mod static_read;

pub use options::{FileSinkOptions, SINK_OPTIONS, source_options};
pub use sink::{FileSink, FileSinkProvider, read_output, read_output_with};
pub use source::{FileSource, FileSourceFormat, FileSourceProvider};

pub use crate::formats::{FileFormat, ParseMode};
