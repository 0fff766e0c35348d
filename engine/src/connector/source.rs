//! The [`Source`] trait: where micro-batches come from.

use std::sync::Arc;

use polars::prelude::{DataFrame, SchemaRef};
use sluice_checkpoint::Checkpoint;

use super::Options;
use crate::Result;

/// A source offset: source-defined JSON, logged verbatim in `offsets/N`
/// (e.g. `{"logOffset": 3}` for files, `{"topic": {"0": 42}}` for Kafka).
pub type Offset = serde_json::Value;

/// What a source may use of the checkpoint: its own log folder `sources/<index>`.
#[derive(Clone, Copy)]
pub struct SourceContext<'a> {
    /// The query's checkpoint.
    pub checkpoint: &'a Checkpoint,
    /// The source's position in the query's list of sources (0-based).
    pub index: usize,
}

impl SourceContext<'_> {
    /// The source's log name, `sources/<index>`, for [`Checkpoint::log`].
    pub fn log_name(&self) -> String {
        format!("sources/{}", self.index)
    }
}

/// A streaming source (Spark's `Source` / `MicroBatchStream`).
///
/// # Contract
/// * Offsets only grow: for the same `start`, a later [`Source::latest_offset`] never
///   returns an offset before an earlier one.
/// * [`Source::get_batch`] is deterministic: the same `(start, end]` yields the same rows
///   after a restart. This is what makes a replayed batch produce the same output.
/// * Data frames have exactly [`Source::schema`]'s columns, in order.
/// * Errors name the file, partition or offset involved; nothing already committed may be
///   lost because of one.
pub trait Source: Send {
    /// A description for progress reports, e.g. `FileStreamSource[/data/in]`.
    fn description(&self) -> String;
    /// The schema of every batch.
    fn schema(&self) -> SchemaRef;
    /// Called once before the first batch; restore from the source log here.
    fn initialize(&mut self, _ctx: SourceContext<'_>) -> Result<()> {
        Ok(())
    }
    /// For `Trigger::AvailableNow`: fix the data to process to what is available now.
    fn prepare_for_available_now(&mut self, _ctx: SourceContext<'_>) -> Result<()> {
        Ok(())
    }
    /// The offset the next batch should end at, given the previous batch ended at `start`,
    /// applying the source's read limit (`maxFilesPerTrigger`, ...). `all_available`
    /// ignores the read limit (`Trigger::Once`). `Ok(None)` when the source has no data yet;
    /// an offset equal to `start` means no new data.
    fn latest_offset(
        &mut self,
        ctx: SourceContext<'_>,
        start: Option<&Offset>,
        all_available: bool,
    ) -> Result<Option<Offset>>;
    /// The rows in `(start, end]`.
    fn get_batch(&mut self, ctx: SourceContext<'_>, start: Option<&Offset>, end: &Offset) -> Result<DataFrame>;
    /// Everything up to `end` is committed and will not be asked for again.
    fn commit(&mut self, _ctx: SourceContext<'_>, _end: &Offset) -> Result<()> {
        Ok(())
    }
    /// How much is left to process, in the source's unit (files, rows), if known: drives
    /// the progress bar of `AvailableNow` backlogs.
    fn backlog(&self) -> Option<u64> {
        None
    }
}

/// Creates a fresh [`Source`] each time a query starts; held by the logical plan.
pub trait SourceProvider: Send + Sync {
    /// A description for messages.
    fn description(&self) -> String;
    /// The schema of the source's batches.
    fn schema(&self) -> SchemaRef;
    /// A new source instance for one query run.
    fn create(&self) -> Result<Box<dyn Source>>;
}

/// Shared handle to a source provider.
pub type SourceProviderRef = Arc<dyn SourceProvider>;

/// Creates sources by format name (`"json"`, `"csv"`, `"parquet"`, `"kafka"`) from the
/// reader's path, schema and options; a format that can also be read once, as a static
/// frame (`session.read()`), implements [`SourceFormat::read_static`].
pub trait SourceFormat: Send + Sync {
    /// A provider for the source at `path` (empty for sources without one, e.g. Kafka)
    /// with `schema` and the reader's options. Options the source does not read are
    /// reported at `start()` (see [`Options::unread`]).
    ///
    /// # Errors
    /// [`crate::SluiceError::InvalidArgument`] naming a missing or invalid option or schema.
    fn create(&self, path: &str, schema: Option<SchemaRef>, options: &Options) -> Result<SourceProviderRef>;
    /// The options this source reads (Spark's names), listed when an option is not used.
    fn known_options(&self) -> &'static [&'static str] {
        &[]
    }
    /// Reads everything at `path` once into a static frame (Spark's batch
    /// `spark.read.format(..).load(path)`), with `schema` when given (a format may infer
    /// one otherwise). Optional: the default fails, naming `read_stream()` as the way
    /// to read this format.
    ///
    /// # Errors
    /// [`crate::SluiceError::InvalidArgument`] when the format has no static reader, or
    /// the format's own errors (a file that cannot be read, a bad option or schema).
    fn read_static(&self, _path: &str, _schema: Option<SchemaRef>, _options: &Options) -> Result<DataFrame> {
        Err(crate::SluiceError::InvalidArgument(
            "this format has no static reader: read it as a stream with read_stream() (and a memory sink or \
             foreach_batch to collect the rows)"
                .into(),
        ))
    }
    /// The options [`read_static`](SourceFormat::read_static) reads, when they differ
    /// from [`known_options`](SourceFormat::known_options).
    fn known_static_options(&self) -> &'static [&'static str] {
        self.known_options()
    }
}
