//! The [`Sink`] trait: where each micro-batch's result goes.

use polars::prelude::DataFrame;
use sluice_checkpoint::BatchId;

use super::Options;
use crate::{OutputMode, Result};

/// What a sink is told when its query starts.
#[derive(Debug, Clone)]
pub struct SinkContext {
    /// The query id (stable across restarts of the same checkpoint).
    pub query_id: String,
    /// The output mode of the query.
    pub output_mode: OutputMode,
}

/// A streaming sink (Spark's `Sink` / `StreamingWrite`).
///
/// # Contract
/// * [`Sink::add_batch`] is idempotent per batch id: after a crash the engine hands the
///   same batch id with the same rows again, and an exactly-once sink writes it once
///   (the file sink checks its manifest; the memory sink its last batch id).
/// * `data` holds the batch's output rows: for `Append` new final rows, for `Update` the
///   rows changed by this batch, for `Complete` the whole result.
/// * A returned error fails the batch; nothing of it is committed and it is re-run on
///   restart.
pub trait Sink: Send {
    /// A description for progress reports, e.g. `FileSink[/out]`.
    fn description(&self) -> String;
    /// Whether the sink accepts `mode`; checked at `start()`.
    fn supports_output_mode(&self, _mode: OutputMode) -> bool {
        true
    }
    /// Called once before the first batch.
    fn initialize(&mut self, _ctx: &SinkContext) -> Result<()> {
        Ok(())
    }
    /// Writes the rows of batch `batch_id`.
    fn add_batch(&mut self, batch_id: BatchId, data: &DataFrame) -> Result<()>;
}

/// Creates sinks by format name (`"parquet"`, `"console"`, ...) from options.
pub trait SinkProvider: Send + Sync {
    /// A new sink for one query run, configured by the writer's options (`path`, ...).
    /// Options the sink does not read are reported at `start()` (see [`Options::unread`]).
    ///
    /// # Errors
    /// [`crate::SluiceError::InvalidArgument`] naming a missing or invalid option.
    fn create(&self, options: &Options) -> Result<Box<dyn Sink>>;
    /// The options this sink reads (Spark's names), listed when an option is not used.
    fn known_options(&self) -> &'static [&'static str] {
        &[]
    }
}

/// Calls a closure with each batch's rows and id (Spark's `foreachBatch`).
pub struct ForeachBatchSink<F> {
    f: F,
}

impl<F> ForeachBatchSink<F>
where
    F: FnMut(&DataFrame, BatchId) -> Result<()> + Send,
{
    /// A sink calling `f(rows, batch_id)`.
    pub fn new(f: F) -> Self {
        Self { f }
    }
}

impl<F> Sink for ForeachBatchSink<F>
where
    F: FnMut(&DataFrame, BatchId) -> Result<()> + Send,
{
    fn description(&self) -> String {
        "ForeachBatchSink".into()
    }
    fn add_batch(&mut self, batch_id: BatchId, data: &DataFrame) -> Result<()> {
        (self.f)(data, batch_id)
    }
}
