//! Connectors' side of the engine: the [`Source`](source::Source) and
//! [`Sink`](sink::Sink) traits every source and sink implements, the format registries'
//! traits ([`SourceFormat`](source::SourceFormat), [`SinkProvider`](sink::SinkProvider))
//! and their [`Options`](options::Options). The built-in connectors (files, Kafka, ...)
//! live in the `sluice-connectors` crate; `foreach_batch` lives here.

pub mod options;
pub mod sink;
pub mod source;

pub use options::Options;
pub use sink::{ForeachBatchSink, Sink, SinkContext, SinkProvider};
pub use source::{Offset, Source, SourceContext, SourceFormat, SourceProvider, SourceProviderRef};
