//! [`DataStreamWriter`]: Spark's `writeStream`, the builder of a running query (sink,
//! output mode, trigger, checkpoint), and [`CheckpointLocation`].

use std::path::PathBuf;
use std::sync::Arc;

use polars::prelude::*;
use sluice_checkpoint::store::{Location, StoreOptions};
use sluice_checkpoint::Checkpoint;

use super::StreamingDataFrame;
use crate::connector::{ForeachBatchSink, Options, Sink};
use crate::execution::{ProgressDisplay, QuerySpec, StreamingQuery};
use crate::time::Clock;
use crate::{OutputMode, Result, SluiceError, Trigger};

/// Where the checkpoint of a query lives.
pub enum CheckpointLocation {
    /// A location: a local directory, or `s3://bucket/prefix` (cargo feature `s3` of the
    /// checkpoint crate, which the `sluice` facade's `s3` feature turns on), opened at
    /// `start()` with the writer's `s3.*` options (see
    /// [`sluice_checkpoint::store`]).
    Dir(PathBuf),
    /// A ready checkpoint (any object store, or in memory).
    Custom(Checkpoint),
}

/// Describes the sink, output mode, trigger and checkpoint of a query (Spark's
/// `DataStreamWriter`).
pub struct DataStreamWriter {
    df: StreamingDataFrame,
    output_mode: OutputMode,
    trigger: Trigger,
    format: Option<String>,
    options: Options,
    sink: Option<Box<dyn Sink>>,
    query_name: Option<String>,
    checkpoint: Option<CheckpointLocation>,
    progress: ProgressDisplay,
    clock: Arc<dyn Clock>,
    warnings: Vec<String>,
    /// The `path` option as given (for `explain`, without marking it read).
    path: Option<String>,
    /// The late-rows side output: a sink, or a file format and path.
    late_rows: Option<LateRows>,
}

enum LateRows {
    Sink(Box<dyn Sink>),
    File { format: String, path: String },
}

impl DataStreamWriter {
    pub(crate) fn new(df: StreamingDataFrame) -> Self {
        DataStreamWriter {
            df,
            output_mode: OutputMode::Append,
            trigger: Trigger::default(),
            format: None,
            options: Options::new(),
            sink: None,
            query_name: None,
            checkpoint: None,
            progress: ProgressDisplay::Lines,
            clock: Arc::new(crate::time::SystemClock),
            warnings: Vec::new(),
            path: None,
            late_rows: None,
        }
    }
    /// The output mode (default append).
    pub fn output_mode(mut self, mode: OutputMode) -> Self {
        self.output_mode = mode;
        self
    }
    /// The trigger (default: the next batch as soon as the previous one ends).
    pub fn trigger(mut self, trigger: Trigger) -> Self {
        self.trigger = trigger;
        self
    }
    /// A registered sink by name: `parquet`, `json`, `csv`, `console`, `memory`.
    pub fn format(mut self, format: &str) -> Self {
        self.format = Some(format.to_string());
        self
    }
    /// A sink option (`path`, `queryName`, ...); `checkpointLocation` sets the checkpoint
    /// (a local directory or `s3://bucket/prefix`); `s3.*` options configure S3 for the
    /// checkpoint and for a file sink's path (see [`sluice_checkpoint::store`]).
    /// `partitionBy` is [`partition_by`](Self::partition_by)'s option form.
    pub fn option(mut self, key: &str, value: impl ToString) -> Self {
        let value = value.to_string();
        if key.eq_ignore_ascii_case("checkpointLocation") {
            self.checkpoint = Some(CheckpointLocation::Dir(PathBuf::from(&value)));
        }
        if key.eq_ignore_ascii_case("path") {
            self.path = Some(value.clone());
        }
        self.options.set(key, value);
        self
    }
    /// A sink instance.
    pub fn sink(mut self, sink: Box<dyn Sink>) -> Self {
        self.sink = Some(sink);
        self
    }
    /// Calls `f(rows, batch_id)` for every batch (Spark's `foreachBatch`). An error
    /// fails the batch, which runs again on restart with the same rows and batch id.
    pub fn foreach_batch<F>(self, f: F) -> Self
    where
        F: FnMut(&DataFrame, u64) -> Result<()> + Send + 'static,
    {
        self.sink(Box::new(ForeachBatchSink::new(f)))
    }
    /// Writes every input row a watermark drops (aggregation, session window,
    /// deduplication, stream-stream join, an event-time timeout of groups-with-state) to
    /// a side output: the file sink `format` (`parquet`, `json`, `csv`) at `path`, with
    /// its manifest, so that each batch's late rows are there exactly once across
    /// restarts. Columns and what one late row is: [`crate::operators::late`]. The
    /// progress counters (`numRowsDroppedByWatermark`) still count them.
    pub fn with_late_rows(mut self, format: &str, path: impl ToString) -> Self {
        self.late_rows = Some(LateRows::File { format: format.to_string(), path: path.to_string() });
        self
    }
    /// As [`with_late_rows`](Self::with_late_rows), calling `f(late_rows, batch_id)` for
    /// every batch (also with no rows); a replayed batch calls it again with the same rows.
    pub fn with_late_rows_foreach<F>(mut self, f: F) -> Self
    where
        F: FnMut(&DataFrame, u64) -> Result<()> + Send + 'static,
    {
        self.late_rows = Some(LateRows::Sink(Box::new(ForeachBatchSink::new(f))));
        self
    }
    /// The query name (also the memory sink's table name).
    pub fn query_name(mut self, name: &str) -> Self {
        self.query_name = Some(name.to_string());
        self.options.set("queryName", name);
        self
    }
    /// Partitions a file sink's output by these columns (Spark's `partitionBy`):
    /// Hive-style `col=value/` directories, the columns left out of the files. Sets the
    /// option `partitionBy` to the columns as a JSON array.
    pub fn partition_by<I, S>(self, columns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let columns: Vec<String> = columns.into_iter().map(|c| c.as_ref().to_string()).collect();
        let json = serde_json::to_string(&columns).expect("strings serialize");
        self.option("partitionBy", json)
    }
    /// The checkpoint location: a local directory, or `s3://bucket/prefix` (see
    /// [`CheckpointLocation::Dir`]).
    pub fn checkpoint_location(mut self, dir: impl Into<PathBuf>) -> Self {
        self.checkpoint = Some(CheckpointLocation::Dir(dir.into()));
        self
    }
    /// A ready checkpoint (object store, in memory).
    pub fn checkpoint(mut self, ckpt: Checkpoint) -> Self {
        self.checkpoint = Some(CheckpointLocation::Custom(ckpt));
        self
    }
    /// How progress is shown (default one line per batch on stderr).
    pub fn progress(mut self, display: ProgressDisplay) -> Self {
        self.progress = display;
        self
    }
    /// The clock that stamps batches with their processing time (default: the system
    /// clock). Tests of processing-time timeouts pass a [`ManualClock`](crate::ManualClock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
    /// The query's plan as text, as [`StreamingDataFrame::explain`] with this writer's
    /// output mode and sink (a sink instance's description, else the format and its
    /// `path` option); the analysis problems `start()` would fail with are listed last.
    ///
    /// # Errors
    /// When an expression does not type-check.
    pub fn explain(&self, extended: bool) -> Result<String> {
        let sink_name = match (&self.sink, &self.format) {
            (Some(s), _) => s.description(),
            (None, Some(f)) => match &self.path {
                Some(p) => format!("{f}[{p}]"),
                None => f.clone(),
            },
            (None, None) => "<no sink>".into(),
        };
        crate::plan::explain::explain_query(
            self.df.plan(),
            self.output_mode,
            self.df.session().state_partitions(),
            self.sink.as_deref(),
            &sink_name,
            extended,
        )
    }
    /// Analyses the query and starts it on a new thread.
    ///
    /// # Errors
    /// [`SluiceError::Analysis`] when the query cannot run as written (output mode rules,
    /// sink capabilities, unsupported aggregates); [`SluiceError::Checkpoint`] when the
    /// checkpoint is damaged or belongs to a different query.
    pub fn start(mut self) -> Result<StreamingQuery> {
        // The checkpoint reads its `s3.*` options first, so that they are not reported as
        // unused by a sink that has no S3 path.
        let checkpoint = match self.checkpoint.take() {
            Some(CheckpointLocation::Dir(d)) => {
                let location = d.to_string_lossy();
                let mut store_options = StoreOptions::default();
                if Location::is_remote(&location) {
                    for (k, v) in self.options.prefixed("s3.") {
                        store_options.set(&k, v);
                    }
                }
                Checkpoint::open(&location, &store_options)?
            }
            Some(CheckpointLocation::Custom(c)) => c,
            None => Checkpoint::in_memory()?,
        };
        if self.sink.is_none() {
            let name = self.format.clone().ok_or_else(|| {
                SluiceError::InvalidArgument(
                    "no sink: call format(\"parquet\"/\"console\"/...), sink() or foreach_batch()".into(),
                )
            })?;
            let provider = self.df.session().sink_provider(&name).ok_or_else(|| {
                SluiceError::InvalidArgument(format!("unknown sink format {name:?}"))
            })?;
            self.sink = Some(provider.create(&self.options)?);
            // Consumed by the engine itself, whatever the sink reads.
            self.options.mark_read("checkpointLocation");
            self.options.mark_read("queryName");
            self.options.mark_read(crate::execution::http::HTTP_PORT_OPTION);
            if let Some(w) = self.options.unread_warning(&format!("the {name} sink"), provider.known_options()) {
                self.warnings.push(w);
            }
        }
        let sink = self.sink.take().ok_or_else(|| SluiceError::Internal("no sink".into()))?;
        let late_rows = match self.late_rows.take() {
            None => None,
            Some(LateRows::Sink(s)) => Some(s),
            Some(LateRows::File { format, path }) => {
                let provider = self.df.session().sink_provider(&format).ok_or_else(|| {
                    SluiceError::InvalidArgument(format!("unknown sink format {format:?} for the late rows"))
                })?;
                Some(provider.create(&Options::from_pairs([("path", path)]))?)
            }
        };
        let http_port = match self.options.get(crate::execution::http::HTTP_PORT_OPTION) {
            Some(p) => Some(p.parse::<u16>().map_err(|_| {
                SluiceError::InvalidArgument(format!("option {}: {p:?} is not a port", crate::execution::http::HTTP_PORT_OPTION))
            })?),
            None => None,
        };
        let manager = self.df.session().streams().clone();
        let query = crate::execution::start(QuerySpec {
            conf: self.df.session().conf_snapshot(),
            plan: self.df.plan().clone(),
            output_mode: self.output_mode,
            trigger: self.trigger,
            sink,
            late_rows,
            name: self.query_name,
            checkpoint,
            progress: self.progress,
            clock: self.clock,
            warnings: self.warnings,
            manager: manager.clone(),
        })?;
        if let Some(port) = http_port {
            let bound = crate::execution::http::serve(manager, port, query.clone())?;
            query.set_http_port(bound);
        }
        Ok(query)
    }
}
