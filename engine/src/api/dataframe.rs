//! [`StreamingDataFrame`] (Spark's streaming `DataFrame`) and
//! [`GroupedStreamingDataFrame`]: the transformations that build a [`LogicalPlan`].

use std::sync::Arc;

use polars::prelude::*;

use super::{DataStreamWriter, EngineSession};
use crate::operators::group_state::{group_function, GroupFunctionRef, GroupKey, GroupState, GroupStateTimeout, GroupsWithStateSpec};
use crate::operators::join::StreamJoinType;
use crate::plan::LogicalPlan;
use crate::time::interval::parse_interval_ms;
use crate::{OutputMode, Result, SluiceError};

/// An unbounded table defined by a source and transformations (Spark's streaming
/// `DataFrame`). Transformations are lazy: nothing runs until [`DataStreamWriter::start`].
#[derive(Clone)]
pub struct StreamingDataFrame {
    pub(crate) plan: Arc<LogicalPlan>,
    pub(crate) session: EngineSession,
}

impl StreamingDataFrame {
    pub(crate) fn new(plan: Arc<LogicalPlan>, session: EngineSession) -> Self {
        StreamingDataFrame { plan, session }
    }
    /// The session this frame was read in.
    pub fn session(&self) -> &EngineSession {
        &self.session
    }
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
    /// [`crate::operators::join`]). Outer and semi joins need watermarks and a condition that lets the
    /// outer side's state be evicted, else `start()` fails with an analysis error.
    ///
    /// # Examples
    ///
    /// Ad impressions joined with the clicks that follow them within an hour (Spark's
    /// stream-stream inner join):
    ///
    /// ```
    /// use polars::prelude::*;
    /// use sluice_connectors::{register_all, MemoryStream};
    /// use sluice_engine::{interval, EngineSession, OutputMode, StreamJoinType, Trigger};
    ///
    /// # fn main() -> sluice_engine::Result<()> {
    /// let session = EngineSession::new();
    /// let tables = register_all(&session);
    /// let ts = DataType::Datetime(TimeUnit::Microseconds, None);
    /// let side = |time: &str| MemoryStream::new(Schema::from_iter([
    ///     Field::new("adId".into(), DataType::Int64),
    ///     Field::new(time.into(), ts.clone()),
    /// ]));
    /// let (impressions, clicks) = (side("impressionTime"), side("clickTime"));
    /// let minute = 60_000_000i64; // µs
    /// impressions.add_data(df!("adId" => [1i64, 2], "impressionTime" => [minute, 2 * minute])?
    ///     .lazy().with_column(col("impressionTime").cast(ts.clone())).collect()?)?;
    /// clicks.add_data(df!("adId" => [1i64, 2], "clickTime" => [5 * minute, 90 * minute])?
    ///     .lazy().with_column(col("clickTime").cast(ts.clone())).collect()?)?;
    /// let left = impressions.to_df(&session).with_watermark("impressionTime", "2 hours")?;
    /// let right = clicks.to_df(&session).with_watermark("clickTime", "3 hours")?;
    /// let within_an_hour = col("clickTime").gt_eq(col("impressionTime"))
    ///     .and(col("clickTime").lt_eq(col("impressionTime") + interval("1 hour")?));
    /// let joined = left.join(&right, [col("adId")], [col("adId")], StreamJoinType::Inner, Some(within_an_hour));
    /// let query = joined.write_stream().format("memory").query_name("joined")
    ///     .output_mode(OutputMode::Append).trigger(Trigger::AvailableNow).start()?;
    /// query.await_termination()?;
    /// let out = tables.get("joined").expect("table").to_df()?.expect("rows");
    /// assert_eq!(out.column("adId")?.i64()?.to_vec(), [Some(1)]); // ad 2's click came too late
    /// # Ok(()) }
    /// ```
    pub fn join<E: AsRef<[Expr]>>(
        &self,
        right: &StreamingDataFrame,
        left_on: E,
        right_on: E,
        how: StreamJoinType,
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
    pub fn join_static<E: AsRef<[Expr]>>(&self, right: DataFrame, left_on: E, right_on: E, how: StreamJoinType) -> Self {
        self.with(LogicalPlan::StaticJoin {
            input: self.plan.clone(),
            right,
            left_on: left_on.as_ref().to_vec(),
            right_on: right_on.as_ref().to_vec(),
            how,
        })
    }
    /// Groups by `keys` (columns, expressions, or a [`window`](crate::window)).
    ///
    /// # Examples
    ///
    /// Spark's `groupBy(window($"time", "10 minutes"), $"channel").count()` with a
    /// watermark, in append mode: a window is emitted once the watermark passes its end.
    ///
    /// ```
    /// use polars::prelude::*;
    /// use sluice_connectors::{register_all, MemoryStream};
    /// use sluice_engine::{window, EngineSession, OutputMode, Trigger};
    ///
    /// # fn main() -> sluice_engine::Result<()> {
    /// let session = EngineSession::new();
    /// let tables = register_all(&session);
    /// let ts = DataType::Datetime(TimeUnit::Microseconds, None);
    /// let edits = MemoryStream::new(Schema::from_iter([
    ///     Field::new("time".into(), ts.clone()),
    ///     Field::new("channel".into(), DataType::String),
    /// ]));
    /// let minute = 60_000_000i64; // µs
    /// let batch = df!("time" => [minute, 2 * minute, 25 * minute], "channel" => ["#en", "#en", "#fr"])?;
    /// edits.add_data(batch.lazy().with_column(col("time").cast(ts)).collect()?)?;
    /// let counts = edits.to_df(&session)
    ///     .with_watermark("time", "1 minute")?
    ///     .group_by([window(col("time"), "10 minutes", None, None)?, col("channel")])
    ///     .agg([len().alias("edits")]);
    /// let query = counts.write_stream().format("memory").query_name("counts")
    ///     .output_mode(OutputMode::Append).trigger(Trigger::AvailableNow).start()?;
    /// query.await_termination()?;
    /// // The watermark (25 - 1 = 24 minutes) closed [0, 10) only; [20, 30) waits for more data.
    /// let out = tables.get("counts").expect("table").to_df()?.expect("rows");
    /// assert_eq!(out.height(), 1);
    /// assert_eq!(out.column("edits")?.cast(&DataType::Int64)?.i64()?.get(0), Some(2));
    /// # Ok(()) }
    /// ```
    pub fn group_by<E: AsRef<[Expr]>>(&self, keys: E) -> GroupedStreamingDataFrame {
        GroupedStreamingDataFrame { df: self.clone(), keys: keys.as_ref().to_vec() }
    }
    /// The logical and physical plan as text (Spark's `explain()`; see
    /// [`crate::plan::explain`]): planned in Append output mode with the session's state
    /// partitions, the sink not yet known (the writer's and the running query's
    /// [`explain`](crate::DataStreamWriter::explain) show both). `extended` adds the output
    /// schema of every logical node and the state schema of every store. Analysis problems
    /// that would make `start()` fail in Append mode are listed at the end.
    ///
    /// # Errors
    /// When an expression does not type-check.
    pub fn explain(&self, extended: bool) -> Result<String> {
        crate::plan::explain::explain_query(&self.plan, OutputMode::Append, self.session.state_partitions(), None, "<not started>", extended)
    }
    /// Starts describing where and how results are written (Spark's `writeStream`).
    ///
    /// # Examples
    ///
    /// Parquet files with a checkpoint, so that a restart resumes exactly where the last
    /// committed batch ended:
    ///
    /// ```
    /// use polars::prelude::*;
    /// use sluice_connectors::{register_all, MemoryStream};
    /// use sluice_engine::{EngineSession, OutputMode, Trigger};
    ///
    /// # fn main() -> sluice_engine::Result<()> {
    /// let dir = tempfile::tempdir().expect("temp dir");
    /// let session = EngineSession::new();
    /// register_all(&session);
    /// let input = MemoryStream::new(Schema::from_iter([Field::new("x".into(), DataType::Int64)]));
    /// input.add_data(df!("x" => [1i64, 2, 3])?)?;
    /// let query = input.to_df(&session).filter(col("x").gt(lit(1))).write_stream()
    ///     .format("parquet")
    ///     .option("path", dir.path().join("out").to_str().expect("utf-8"))
    ///     .option("checkpointLocation", dir.path().join("ckpt").to_str().expect("utf-8"))
    ///     .output_mode(OutputMode::Append)
    ///     .trigger(Trigger::AvailableNow)
    ///     .start()?;
    /// query.await_termination()?;
    /// let progress = query.last_progress().expect("one batch ran");
    /// assert_eq!(progress.num_input_rows, 3);
    /// # Ok(()) }
    /// ```
    pub fn write_stream(&self) -> DataStreamWriter {
        DataStreamWriter::new(self.clone())
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
    /// (see [`GroupStateTimeout`](GroupStateTimeout)): processing time against the
    /// batch timestamp (an injectable [`Clock`](crate::Clock)), event time against the
    /// watermark; with an event-time timeout, input rows at or before the previous batch's
    /// watermark are dropped as late.
    ///
    /// `output_mode` is the operator's: Append (each row emitted once, final) or Update.
    /// It must equal the query's output mode, else `start()` fails as in Spark; an
    /// event-time timeout needs `with_watermark` on the input. A panic or error in `func`
    /// stops the query with [`SluiceError::User`] naming the key and batch; nothing of that
    /// batch is committed.
    ///
    /// # Examples
    ///
    /// A running total per user, kept in a serde state and emitted on every update:
    ///
    /// ```
    /// use polars::prelude::*;
    /// use sluice_connectors::{register_all, MemoryStream};
    /// use sluice_engine::{EngineSession, GroupKey, GroupState, GroupStateTimeout, OutputMode, Trigger};
    ///
    /// # fn main() -> sluice_engine::Result<()> {
    /// let session = EngineSession::new();
    /// let tables = register_all(&session);
    /// let edits = MemoryStream::new(Schema::from_iter([
    ///     Field::new("user".into(), DataType::String),
    ///     Field::new("added".into(), DataType::Int64),
    /// ]));
    /// edits.add_data(df!("user" => ["ann", "bob", "ann"], "added" => [1i64, 10, 2])?)?;
    /// let output = Schema::from_iter([
    ///     Field::new("user".into(), DataType::String),
    ///     Field::new("total".into(), DataType::Int64),
    /// ]);
    /// let totals = edits.to_df(&session).group_by([col("user")]).flat_map_groups_with_state(
    ///     OutputMode::Update,
    ///     GroupStateTimeout::NoTimeout,
    ///     output,
    ///     |key: &GroupKey, rows: DataFrame, state: &mut GroupState<i64>| {
    ///         let total = state.get_option().copied().unwrap_or(0) + rows.column("added")?.i64()?.sum().unwrap_or(0);
    ///         state.update(total);
    ///         Ok(df!("user" => [key.str(0).unwrap_or_default()], "total" => [total])?)
    ///     },
    /// );
    /// let query = totals.write_stream().format("memory").query_name("totals")
    ///     .output_mode(OutputMode::Update).trigger(Trigger::AvailableNow).start()?;
    /// query.await_termination()?;
    /// let out = tables.get("totals").expect("table").to_df()?.expect("rows").sort(["user"], Default::default())?;
    /// assert_eq!(out.column("total")?.i64()?.to_vec(), [Some(3), Some(10)]);
    /// # Ok(()) }
    /// ```
    pub fn flat_map_groups_with_state<S, F>(
        self,
        output_mode: OutputMode,
        timeout: GroupStateTimeout,
        output_schema: Schema,
        func: F,
    ) -> StreamingDataFrame
    where
        S: serde::Serialize + serde::de::DeserializeOwned + 'static,
        F: FnMut(&GroupKey, DataFrame, &mut GroupState<S>) -> Result<DataFrame> + Send + 'static,
    {
        self.groups_with_state(output_mode, timeout, output_schema, false, group_function(func))
    }
    /// Spark's `mapGroupsWithState`: as
    /// [`flat_map_groups_with_state`](Self::flat_map_groups_with_state) in Update mode,
    /// but `func` returns exactly one row per call (else the query stops with
    /// [`SluiceError::User`]). The query must use Update output mode.
    pub fn map_groups_with_state<S, F>(
        self,
        timeout: GroupStateTimeout,
        output_schema: Schema,
        func: F,
    ) -> StreamingDataFrame
    where
        S: serde::Serialize + serde::de::DeserializeOwned + 'static,
        F: FnMut(&GroupKey, DataFrame, &mut GroupState<S>) -> Result<DataFrame> + Send + 'static,
    {
        self.groups_with_state(OutputMode::Update, timeout, output_schema, true, group_function(func))
    }
    fn groups_with_state(
        self,
        output_mode: OutputMode,
        timeout: GroupStateTimeout,
        output_schema: Schema,
        is_map: bool,
        func: GroupFunctionRef,
    ) -> StreamingDataFrame {
        let spec = GroupsWithStateSpec {
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

/// Deduplication (see [`crate::operators::dedup`]).
impl StreamingDataFrame {
    fn deduplicate<I, S>(&self, subset: I, within_watermark: bool) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let keys: Vec<String> = subset.into_iter().map(|s| s.as_ref().to_string()).collect();
        crate::operators::dedup::resolve_keys(self.schema()?.as_ref(), &keys)?;
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

/// Global aggregation, sorting and limits (Spark's `agg`, `orderBy`, `limit`).
impl StreamingDataFrame {
    /// Aggregates the whole stream as one group (Spark's `df.agg(..)` / `groupBy().agg(..)`):
    /// `group_by([]).agg(aggs)`. The result has exactly one row, also before any input
    /// (counts 0, other aggregates null), and is emitted in Update output mode every batch,
    /// in Complete mode as a whole every batch; Append mode is refused at `start()` (the
    /// one row never becomes final), as in Spark.
    pub fn agg<E: AsRef<[Expr]>>(&self, aggs: E) -> StreamingDataFrame {
        self.group_by([] as [Expr; 0]).agg(aggs)
    }

    /// Sorts the rows by `by` (`descending[i]` for `by[i]`; a missing entry is ascending;
    /// nulls first ascending, last descending, as Spark). Only after an aggregation in
    /// Complete output mode, where every batch emits the whole result; anywhere else
    /// `start()` fails with Spark's "Sorting is not supported on streaming
    /// DataFrames/Datasets, unless it is on aggregated DataFrame/Dataset in Complete output
    /// mode".
    pub fn sort<E: AsRef<[Expr]>>(&self, by: E, descending: &[bool]) -> StreamingDataFrame {
        let by = by.as_ref().to_vec();
        let descending = (0..by.len()).map(|i| descending.get(i).copied().unwrap_or(false)).collect();
        self.with(LogicalPlan::Sort { input: self.plan.clone(), by, descending })
    }

    /// Keeps the first `n` rows of each batch's output (Spark's `limit`): after a sorted
    /// aggregation in Complete output mode this is a top-n of the whole result. Refused at
    /// `start()` in Update mode (Spark) and in Append mode (Spark keeps a global count in
    /// state for it; Sluice does not).
    pub fn limit(&self, n: usize) -> StreamingDataFrame {
        self.with(LogicalPlan::Limit { input: self.plan.clone(), n })
    }
}

/// Joins on columns of the same name on both sides (Spark's `join(other, usingColumns)`),
/// which keep one key column each.
impl StreamingDataFrame {
    /// Joins with another stream on the columns `on`, present with the same name on both
    /// sides (Spark's `join(right, Seq("customerId"), joinType)`, with an optional extra
    /// `condition` over the joined columns as in [`join`](Self::join)).
    ///
    /// Output columns, as in Spark: the keys once, then this stream's other columns, then
    /// `right`'s other columns (a name already present gets the suffix `_right`); a left
    /// semi join keeps the keys and this stream's columns. Each key is this stream's
    /// value for inner, left outer and left semi joins, `right`'s for right outer joins,
    /// and `coalesce(left, right)` for full outer joins (the side that matched, for
    /// null-padded rows). A `condition` refers to `right`'s key as `<key>_right`.
    ///
    /// Analysis (watermarks, the condition bounding state) is [`join`](Self::join)'s; a
    /// key missing on either side fails at `start()`.
    pub fn join_on<S: AsRef<str>>(
        &self,
        right: &StreamingDataFrame,
        on: impl IntoIterator<Item = S>,
        how: StreamJoinType,
        condition: Option<Expr>,
    ) -> Self {
        let on: Vec<String> = on.into_iter().map(|s| s.as_ref().to_string()).collect();
        let keys: Vec<Expr> = on.iter().map(|k| col(k.as_str())).collect();
        self.join(right, keys.clone(), keys, how, condition).select(using_columns(&on, how))
    }

    /// Joins every micro-batch with a static frame on the columns `on`, present with the
    /// same name on both sides (Spark's stream-static `join(static, Seq("customerId"))`):
    /// `Inner` or `LeftOuter`, the stream on the left. Output columns: the keys once (the
    /// stream's values), then the stream's other columns, then the static frame's other
    /// columns (a name already present gets the suffix `_right`).
    pub fn join_on_static<S: AsRef<str>>(&self, right: DataFrame, on: impl IntoIterator<Item = S>, how: StreamJoinType) -> Self {
        let on: Vec<String> = on.into_iter().map(|s| s.as_ref().to_string()).collect();
        let keys: Vec<Expr> = on.iter().map(|k| col(k.as_str())).collect();
        self.join_static(right, keys.clone(), keys, how).select(using_columns(&on, how))
    }
}

/// The projection of a using-columns join's output (Spark's `commonNaturalJoinProcessing`):
/// one column per key (left's, right's or their coalesce by join type), then every other
/// column in join order without the right side's copies of the keys (`<key>_right`).
fn using_columns(on: &[String], how: StreamJoinType) -> Vec<Expr> {
    let right_name = |k: &str| format!("{k}_right");
    let mut exprs: Vec<Expr> = on
        .iter()
        .map(|k| match how {
            StreamJoinType::Inner | StreamJoinType::LeftOuter | StreamJoinType::LeftSemi => col(k.as_str()),
            StreamJoinType::RightOuter => col(right_name(k).as_str()).alias(k.as_str()),
            StreamJoinType::FullOuter => coalesce(&[col(k.as_str()), col(right_name(k).as_str())]).alias(k.as_str()),
        })
        .collect();
    let mut hidden: Vec<PlSmallStr> = on.iter().map(|k| PlSmallStr::from(k.as_str())).collect();
    if how != StreamJoinType::LeftSemi {
        hidden.extend(on.iter().map(|k| PlSmallStr::from(right_name(k))));
    }
    exprs.push(all().exclude_cols(hidden).as_expr());
    exprs
}
