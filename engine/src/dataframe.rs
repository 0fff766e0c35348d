//! The user-facing API: [`EngineSession`], [`DataStreamReader`], [`StreamingDataFrame`],
//! [`GroupedStreamingDataFrame`] and [`DataStreamWriter`] (Spark's names, Rust idioms).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use polars::prelude::*;
use sluice_checkpoint::Checkpoint;

use crate::interval::parse_interval_ms;
use crate::plan::LogicalPlan;
use crate::query::StreamingQuery;
use crate::connector::{ForeachBatchSink, Options, Sink, SinkProvider, SourceFormat, SourceProviderRef};
use crate::{OutputMode, Result, SluiceError, Trigger};

#[derive(Default)]
struct SessionInner {
    conf: RwLock<BTreeMap<String, String>>,
    source_formats: RwLock<HashMap<String, Arc<dyn SourceFormat>>>,
    sinks: RwLock<HashMap<String, Arc<dyn SinkProvider>>>,
}

/// The engine's session (Spark's `SparkSession` without its connectors): configuration
/// and the registries of source formats and sinks. Cheap to clone; clones share
/// everything.
///
/// `EngineSession::new()` knows no formats. Users start from `sluice::Session`, which is
/// an `EngineSession` with the built-in connectors registered (`json`, `csv`, `parquet`,
/// `kafka`, `console`, `memory`, ...) and dereferences to it.
#[derive(Clone, Default)]
pub struct EngineSession {
    inner: Arc<SessionInner>,
}

impl EngineSession {
    /// A session with no registered formats.
    pub fn new() -> Self {
        Self::default()
    }
    /// Registers a source format under `name` (e.g. `"json"`).
    pub fn register_source_format(&self, name: &str, format: Arc<dyn SourceFormat>) {
        self.inner.source_formats.write().expect("lock").insert(name.to_ascii_lowercase(), format);
    }
    /// Registers a sink under `name` (e.g. `"parquet"`).
    pub fn register_sink(&self, name: &str, sink: Arc<dyn SinkProvider>) {
        self.inner.sinks.write().expect("lock").insert(name.to_ascii_lowercase(), sink);
    }
    /// Sets a configuration value (e.g. `sluice.state.partitions`).
    pub fn set_conf(&self, key: &str, value: &str) {
        self.inner.conf.write().expect("lock").insert(key.to_string(), value.to_string());
    }
    /// A configuration value.
    pub fn conf(&self, key: &str) -> Option<String> {
        self.inner.conf.read().expect("lock").get(key).cloned()
    }
    /// Starts describing a streaming read (Spark's `readStream`).
    pub fn read_stream(&self) -> DataStreamReader {
        DataStreamReader { session: self.clone(), format: None, schema: None, options: Options::new() }
    }
    /// A streaming data frame over a source provider (typed sources such as `MemoryStream`).
    pub fn stream_from(&self, provider: SourceProviderRef) -> StreamingDataFrame {
        StreamingDataFrame { plan: Arc::new(LogicalPlan::Source { provider, warnings: vec![] }), session: self.clone() }
    }
    pub(crate) fn sink_provider(&self, name: &str) -> Option<Arc<dyn SinkProvider>> {
        self.inner.sinks.read().expect("lock").get(&name.to_ascii_lowercase()).cloned()
    }
}

/// Describes a streaming source (Spark's `DataStreamReader`).
pub struct DataStreamReader {
    session: EngineSession,
    format: Option<String>,
    schema: Option<SchemaRef>,
    options: Options,
}

impl DataStreamReader {
    /// The format: `json` (JSON lines), `csv`, `parquet`, or any registered one.
    pub fn format(mut self, format: &str) -> Self {
        self.format = Some(format.to_string());
        self
    }
    /// The schema of the rows (required by file sources, as in Spark).
    pub fn schema(mut self, schema: Schema) -> Self {
        self.schema = Some(Arc::new(schema));
        self
    }
    /// A source option, e.g. `maxFilesPerTrigger`, `mode`, `header`.
    pub fn option(mut self, key: &str, value: impl ToString) -> Self {
        self.options.set(key, value);
        self
    }
    /// Builds the source reading `path`. Options the source does not read are reported
    /// as a warning when the query starts ([`StreamingQuery::warnings`]).
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] for an unknown format; the format's own errors
    /// (missing schema, bad option).
    pub fn load(self, path: impl AsRef<std::path::Path>) -> Result<StreamingDataFrame> {
        let name = self.format.clone().unwrap_or_else(|| "parquet".into()).to_ascii_lowercase();
        let format = self.session.inner.source_formats.read().expect("lock").get(&name).cloned();
        let format = format.ok_or_else(|| {
            SluiceError::InvalidArgument(format!("unknown source format {name:?}"))
        })?;
        let provider = format.create(&path.as_ref().to_string_lossy(), self.schema, &self.options)?;
        let warnings = self.options.unread_warning(&provider.description(), format.known_options()).into_iter().collect();
        Ok(StreamingDataFrame { plan: Arc::new(LogicalPlan::Source { provider, warnings }), session: self.session })
    }
}

/// An unbounded table defined by a source and transformations (Spark's streaming
/// `DataFrame`). Transformations are lazy: nothing runs until [`DataStreamWriter::start`].
#[derive(Clone)]
pub struct StreamingDataFrame {
    pub(crate) plan: Arc<LogicalPlan>,
    pub(crate) session: EngineSession,
}

impl StreamingDataFrame {
    fn with(&self, plan: LogicalPlan) -> Self {
        Self { plan: Arc::new(plan), session: self.session.clone() }
    }
    /// The logical plan.
    pub fn plan(&self) -> &Arc<LogicalPlan> {
        &self.plan
    }
    /// The output schema.
    ///
    /// # Errors
    /// When an expression does not type-check against its input.
    pub fn schema(&self) -> Result<SchemaRef> {
        self.plan.schema()
    }
    /// Projects to `exprs` (Spark's `select`).
    pub fn select<E: AsRef<[Expr]>>(&self, exprs: E) -> Self {
        self.with(LogicalPlan::Select { input: self.plan.clone(), exprs: exprs.as_ref().to_vec() })
    }
    /// Adds or replaces columns (Spark's `withColumn`).
    pub fn with_columns<E: AsRef<[Expr]>>(&self, exprs: E) -> Self {
        self.with(LogicalPlan::WithColumns { input: self.plan.clone(), exprs: exprs.as_ref().to_vec() })
    }
    /// Adds or replaces one column.
    pub fn with_column(&self, expr: Expr) -> Self {
        self.with_columns([expr])
    }
    /// Keeps rows where `predicate` is true (Spark's `filter` / `where`).
    pub fn filter(&self, predicate: Expr) -> Self {
        self.with(LogicalPlan::Filter { input: self.plan.clone(), predicate })
    }
    /// Declares `column` (a timestamp) as event time with a lateness bound `delay`
    /// (a Spark interval string, e.g. `"10 minutes"`): Spark's `withWatermark`.
    ///
    /// After each batch the watermark becomes `max(event time seen) - delay` (never
    /// decreasing); stateful operators drop rows at or before it and evict state.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] for a bad interval; [`SluiceError::Analysis`]
    /// when `column` is missing or not a timestamp.
    pub fn with_watermark(&self, column: &str, delay: &str) -> Result<Self> {
        let delay_ms = parse_interval_ms(delay)?;
        let schema = self.schema()?;
        match schema.get(column) {
            None => return Err(SluiceError::analysis(format!(
                "cannot set a watermark on {column:?}: no such column (columns: {})",
                schema.iter_names().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")
            ))),
            Some(DataType::Datetime(_, _)) => {}
            Some(other) => return Err(SluiceError::analysis(format!(
                "event time must be defined on a timestamp column, but {column:?} is of type {other}"
            ))),
        }
        Ok(self.with(LogicalPlan::Watermark { input: self.plan.clone(), column: column.to_string(), delay_ms }))
    }
    /// Joins with another stream (Spark's stream-stream join): equality of `left_on` and
    /// `right_on`, plus an optional `condition` over the joined columns, typically an
    /// event-time range such as
    /// `col("click_time").gt_eq(col("impression_time")).and(col("click_time").lt_eq(col("impression_time") + interval("1 hour")?))`.
    ///
    /// Output columns: this stream's, then `right`'s (a name already present gets the
    /// suffix `_right`); a left semi join keeps this stream's columns only. Both sides are
    /// buffered in the state store; watermarks and the condition bound that state (see
    /// [`crate::join`]). Outer and semi joins need watermarks and a condition that lets the
    /// outer side's state be evicted, else `start()` fails with an analysis error.
    pub fn join<E: AsRef<[Expr]>>(
        &self,
        right: &StreamingDataFrame,
        left_on: E,
        right_on: E,
        how: crate::join::JoinType,
        condition: Option<Expr>,
    ) -> Self {
        self.with(LogicalPlan::Join {
            left: self.plan.clone(),
            right: right.plan.clone(),
            left_on: left_on.as_ref().to_vec(),
            right_on: right_on.as_ref().to_vec(),
            how,
            condition,
        })
    }
    /// Joins every micro-batch with a static frame (Spark's stream-static join): `Inner`
    /// or `LeftOuter`, the stream on the left; other types fail at `start()`. Output
    /// columns: the stream's, then the static frame's (both key columns kept; a name
    /// already present gets the suffix `_right`). Null keys never match, as in Spark.
    pub fn join_static<E: AsRef<[Expr]>>(&self, right: DataFrame, left_on: E, right_on: E, how: crate::join::JoinType) -> Self {
        self.with(LogicalPlan::StaticJoin {
            input: self.plan.clone(),
            right,
            left_on: left_on.as_ref().to_vec(),
            right_on: right_on.as_ref().to_vec(),
            how,
        })
    }
    /// Groups by `keys` (columns, expressions, or a [`window`](crate::window)).
    pub fn group_by<E: AsRef<[Expr]>>(&self, keys: E) -> GroupedStreamingDataFrame {
        GroupedStreamingDataFrame { df: self.clone(), keys: keys.as_ref().to_vec() }
    }
    /// Starts describing where and how results are written (Spark's `writeStream`).
    pub fn write_stream(&self) -> DataStreamWriter {
        DataStreamWriter {
            df: self.clone(),
            output_mode: OutputMode::Append,
            trigger: Trigger::default(),
            format: None,
            options: Options::new(),
            sink: None,
            query_name: None,
            checkpoint: None,
            progress: ProgressDisplay::Lines,
            clock: Arc::new(crate::clock::SystemClock),
            warnings: Vec::new(),
        }
    }
}

/// A grouped streaming data frame, waiting for its aggregates.
pub struct GroupedStreamingDataFrame {
    df: StreamingDataFrame,
    keys: Vec<Expr>,
}

impl GroupedStreamingDataFrame {
    /// Aggregates each group: `len()`, `col(c).count()` (non-null), `sum`, `mean`, `min`,
    /// `max`, `first`, `last`, and arithmetic or casts over them. Output columns: the keys,
    /// then one column per aggregate, named by its alias. Counts are `Int64`, sums of
    /// integers `Int64`, sums of floats and means `Float64` (Spark's types).
    pub fn agg<E: AsRef<[Expr]>>(self, aggs: E) -> StreamingDataFrame {
        self.df.with(LogicalPlan::Aggregate {
            input: self.df.plan.clone(),
            keys: self.keys,
            aggs: aggs.as_ref().to_vec(),
        })
    }
    /// `agg([len().alias("count")])`.
    pub fn count(self) -> StreamingDataFrame {
        self.agg([len().alias("count")])
    }
    /// Arbitrary stateful processing (Spark's `groupByKey(..).flatMapGroupsWithState`):
    /// per batch, `func(key, rows, &mut state)` is called once for every key with rows
    /// (`rows`: the input columns, in input order) and once, with no rows and
    /// [`GroupState::has_timed_out`](crate::GroupState::has_timed_out) true, for every key
    /// whose timeout passed, also in batches without data. It returns zero or more rows of
    /// `output_schema` (exactly those columns and types).
    ///
    /// The state `S` (stored as JSON) is checkpointed and restored on restart. Timeouts
    /// (see [`GroupStateTimeout`](crate::GroupStateTimeout)): processing time against the
    /// batch timestamp (an injectable [`Clock`](crate::Clock)), event time against the
    /// watermark; with an event-time timeout, input rows at or before the previous batch's
    /// watermark are dropped as late.
    ///
    /// `output_mode` is the operator's: Append (each row emitted once, final) or Update.
    /// It must equal the query's output mode, else `start()` fails as in Spark; an
    /// event-time timeout needs `with_watermark` on the input. A panic or error in `func`
    /// stops the query with [`SluiceError::User`] naming the key and batch; nothing of that
    /// batch is committed.
    pub fn flat_map_groups_with_state<S, F>(
        self,
        output_mode: OutputMode,
        timeout: crate::GroupStateTimeout,
        output_schema: Schema,
        func: F,
    ) -> StreamingDataFrame
    where
        S: serde::Serialize + serde::de::DeserializeOwned + 'static,
        F: FnMut(&crate::GroupKey, DataFrame, &mut crate::GroupState<S>) -> Result<DataFrame> + Send + 'static,
    {
        self.groups_with_state(output_mode, timeout, output_schema, false, crate::group_state::group_function(func))
    }
    /// Spark's `mapGroupsWithState`: as
    /// [`flat_map_groups_with_state`](Self::flat_map_groups_with_state) in Update mode,
    /// but `func` returns exactly one row per call (else the query stops with
    /// [`SluiceError::User`]). The query must use Update output mode.
    pub fn map_groups_with_state<S, F>(
        self,
        timeout: crate::GroupStateTimeout,
        output_schema: Schema,
        func: F,
    ) -> StreamingDataFrame
    where
        S: serde::Serialize + serde::de::DeserializeOwned + 'static,
        F: FnMut(&crate::GroupKey, DataFrame, &mut crate::GroupState<S>) -> Result<DataFrame> + Send + 'static,
    {
        self.groups_with_state(OutputMode::Update, timeout, output_schema, true, crate::group_state::group_function(func))
    }
    fn groups_with_state(
        self,
        output_mode: OutputMode,
        timeout: crate::GroupStateTimeout,
        output_schema: Schema,
        is_map: bool,
        func: crate::group_state::GroupFunctionRef,
    ) -> StreamingDataFrame {
        let spec = crate::group_state::GroupsWithStateSpec {
            keys: self.keys,
            func,
            output_schema: Arc::new(output_schema),
            output_mode,
            timeout,
            is_map,
        };
        self.df.with(LogicalPlan::FlatMapGroupsWithState { input: self.df.plan.clone(), spec })
    }
}

/// How a running query reports progress on the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressDisplay {
    /// One line per batch on stderr.
    Lines,
    /// An indicatif progress bar (best for `AvailableNow` backlogs).
    Bar,
    /// Nothing (progress is still available through the query handle and `tracing`).
    Off,
}

/// Where the checkpoint of a query lives.
pub enum CheckpointLocation {
    /// A local directory.
    Dir(PathBuf),
    /// A ready checkpoint (any object store, or in memory).
    Custom(Checkpoint),
}

/// Describes the sink, output mode, trigger and checkpoint of a query (Spark's
/// `DataStreamWriter`).
pub struct DataStreamWriter {
    pub(crate) df: StreamingDataFrame,
    pub(crate) output_mode: OutputMode,
    pub(crate) trigger: Trigger,
    pub(crate) format: Option<String>,
    pub(crate) options: Options,
    pub(crate) sink: Option<Box<dyn Sink>>,
    pub(crate) query_name: Option<String>,
    pub(crate) checkpoint: Option<CheckpointLocation>,
    pub(crate) progress: ProgressDisplay,
    pub(crate) clock: Arc<dyn crate::clock::Clock>,
    pub(crate) warnings: Vec<String>,
}

impl DataStreamWriter {
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
    /// A sink option (`path`, `queryName`, ...); `checkpointLocation` sets the checkpoint.
    pub fn option(mut self, key: &str, value: impl ToString) -> Self {
        let value = value.to_string();
        if key.eq_ignore_ascii_case("checkpointLocation") {
            self.checkpoint = Some(CheckpointLocation::Dir(PathBuf::from(&value)));
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
    /// The query name (also the memory sink's table name).
    pub fn query_name(mut self, name: &str) -> Self {
        self.query_name = Some(name.to_string());
        self.options.set("queryName", name);
        self
    }
    /// A checkpoint directory.
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
    pub fn clock(mut self, clock: Arc<dyn crate::clock::Clock>) -> Self {
        self.clock = clock;
        self
    }
    /// Analyses the query and starts it on a new thread.
    ///
    /// # Errors
    /// [`SluiceError::Analysis`] when the query cannot run as written (output mode rules,
    /// sink capabilities, unsupported aggregates); [`SluiceError::Checkpoint`] when the
    /// checkpoint is damaged or belongs to a different query.
    pub fn start(mut self) -> Result<StreamingQuery> {
        if self.sink.is_none() {
            let name = self.format.clone().ok_or_else(|| {
                SluiceError::InvalidArgument(
                    "no sink: call format(\"parquet\"/\"console\"/...), sink() or foreach_batch()".into(),
                )
            })?;
            let provider = self.df.session.sink_provider(&name).ok_or_else(|| {
                SluiceError::InvalidArgument(format!("unknown sink format {name:?}"))
            })?;
            self.sink = Some(provider.create(&self.options)?);
            // Consumed by the engine itself, whatever the sink reads.
            self.options.mark_read("checkpointLocation");
            self.options.mark_read("queryName");
            if let Some(w) = self.options.unread_warning(&format!("the {name} sink"), provider.known_options()) {
                self.warnings.push(w);
            }
        }
        crate::query::start(self)
    }
}

/// Deduplication (see [`crate::dedup`]).
impl StreamingDataFrame {
    fn deduplicate<I, S>(&self, subset: I, within_watermark: bool) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let keys: Vec<String> = subset.into_iter().map(|s| s.as_ref().to_string()).collect();
        crate::dedup::resolve_keys(self.schema()?.as_ref(), &keys)?;
        Ok(self.with(LogicalPlan::Deduplicate { input: self.plan.clone(), keys, within_watermark }))
    }

    /// Drops rows whose `subset` columns (all columns when `subset` is empty) equal those
    /// of an earlier row (Spark's `dropDuplicates`): of the rows of one key, only the first
    /// ever seen is emitted (within a batch, the first in input order); nulls compare
    /// equal. Output: the input's columns, unchanged. Works in Append and Update output
    /// mode.
    ///
    /// State holds every key seen. With a watermark on the input, rows at or before the
    /// previous batch's watermark are dropped as late; and when the watermarked column is
    /// in `subset`, keys whose event time is at or before the watermark leave state, so it
    /// stays bounded. Without the event-time column among the keys the state grows without
    /// bound (as in Spark): prefer
    /// [`drop_duplicates_within_watermark`](Self::drop_duplicates_within_watermark).
    ///
    /// # Errors
    /// [`SluiceError::Analysis`] for a column of `subset` that does not exist or is a list.
    /// At `start()`: an analysis error when this follows an aggregation.
    pub fn drop_duplicates<I, S>(&self, subset: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.deduplicate(subset, false)
    }

    /// Drops rows whose `subset` columns (all columns when empty) equal those of an earlier
    /// row still within the watermark (Spark 3.5's `dropDuplicatesWithinWatermark`): the
    /// first row of a key is emitted and remembered until the watermark reaches its event
    /// time plus the watermark delay (`expiry <= watermark`, µs); later rows of the key
    /// are dropped meanwhile, even when their own event time differs. The event-time column
    /// need not be in `subset`. Rows at or before the previous batch's watermark are
    /// dropped as late. Output: the input's columns. Append and Update output mode.
    ///
    /// # Errors
    /// [`SluiceError::Analysis`] for a column of `subset` that does not exist or is a list.
    /// At `start()`: an analysis error when the input has no watermark (call
    /// [`with_watermark`](Self::with_watermark) first) or this follows an aggregation.
    pub fn drop_duplicates_within_watermark<I, S>(&self, subset: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.deduplicate(subset, true)
    }
}
