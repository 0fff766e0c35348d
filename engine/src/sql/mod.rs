//! Spark SQL over streaming and static views: [`EngineSession::sql`] parses a query in
//! Spark's dialect and translates it into the same [`LogicalPlan`](crate::plan::LogicalPlan)
//! that the [`StreamingDataFrame`] API builds. One engine, two front ends: no second
//! executor; Polars expressions do the per-row work.
//!
//! ```text
//!  text ─parser.rs (sqlparser, SparkSqlDialect; errors with line and column)─► AST
//!   ─planner.rs: FROM (views, subqueries, JOIN ... ON / USING) ─► WHERE ─► GROUP BY /
//!    aggregates ─► HAVING ─► SELECT ─► DISTINCT ─► ORDER BY ─► LIMIT
//!     each step one StreamingDataFrame call (select, filter, join, join_static,
//!     group_by(..).agg, drop_duplicates, ...) on a stream, or a Polars LazyFrame step
//!     when every view the query reads is static
//!   ─ resolve.rs: names (view.column, alias.column, *), candidates for unknown names
//!   ─ expr.rs: SQL expressions ─► Polars Expr (Spark's types: `/` is double, ...)
//!   ─ functions.rs: the function table (scalar, time, aggregate)
//! ```
//!
//! Views are registered per session: [`StreamingDataFrame::create_or_replace_temp_view`]
//! for streams and [`StaticViewExt::create_or_replace_temp_view`] for Polars frames.
//! A query that reads at least one stream is a [`SqlFrame::Stream`]; one that reads only
//! static views is computed at once into a [`SqlFrame::Static`].
//!
//! Spark's streaming rules that depend on the output mode (append needs a watermark, sorting
//! only in complete mode, ...) are checked where the DataFrame API checks them, at
//! `start()`; what SQL alone can tell (unknown names, `count(DISTINCT x)` on a stream, a
//! join Spark cannot run) fails in [`EngineSession::sql`] with the position in the text.

mod expr;
mod functions;
mod parser;
mod planner;
mod resolve;

use std::sync::Arc;

use polars::prelude::*;

use crate::api::{EngineSession, StreamingDataFrame};
use crate::plan::LogicalPlan;
use crate::{Result, SluiceError};

pub use functions::function_names;

/// A registered view: the plan of a streaming data frame, or a static Polars frame.
#[derive(Clone)]
pub(crate) enum View {
    Stream(Arc<LogicalPlan>),
    Static(DataFrame),
}

/// The result of [`EngineSession::sql`]: a streaming data frame when the query reads at
/// least one streaming view, else the computed static result.
#[derive(Clone)]
pub enum SqlFrame {
    /// An unbounded result, to be started with `write_stream()`.
    Stream(StreamingDataFrame),
    /// The result of a query over static views only, computed at once.
    Static(DataFrame),
}

impl std::fmt::Debug for SqlFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SqlFrame::Stream(df) => write!(f, "SqlFrame::Stream({:?})", df.schema().ok()),
            SqlFrame::Static(df) => write!(f, "SqlFrame::Static({df:?})"),
        }
    }
}

impl SqlFrame {
    /// Whether the query reads a stream.
    pub fn is_streaming(&self) -> bool {
        matches!(self, SqlFrame::Stream(_))
    }

    /// The output schema.
    ///
    /// # Errors
    /// As [`StreamingDataFrame::schema`].
    pub fn schema(&self) -> Result<SchemaRef> {
        match self {
            SqlFrame::Stream(df) => df.schema(),
            SqlFrame::Static(df) => Ok(df.schema().clone()),
        }
    }

    /// The streaming data frame.
    ///
    /// # Errors
    /// [`SluiceError::Analysis`] when the query read static views only.
    pub fn into_stream(self) -> Result<StreamingDataFrame> {
        match self {
            SqlFrame::Stream(df) => Ok(df),
            SqlFrame::Static(_) => Err(SluiceError::analysis(
                "the query reads static views only, so its result is a static DataFrame, not a stream: \
                 use SqlFrame::into_static, or read a streaming view",
            )),
        }
    }

    /// The static result.
    ///
    /// # Errors
    /// [`SluiceError::Analysis`] when the query reads a stream (Spark: "Queries with
    /// streaming sources must be executed with writeStream.start()").
    pub fn into_static(self) -> Result<DataFrame> {
        match self {
            SqlFrame::Static(df) => Ok(df),
            SqlFrame::Stream(_) => Err(SluiceError::analysis(
                "Queries with streaming sources must be executed with writeStream.start(): \
                 use SqlFrame::into_stream and write_stream()",
            )),
        }
    }
}

/// Static Polars frames as SQL views (Spark's `createOrReplaceTempView` on a batch
/// DataFrame). In `sluice::prelude`.
pub trait StaticViewExt {
    /// Registers this frame as the view `name` of `session` (replacing any view of that
    /// name; names are case-insensitive, as Spark's). The frame is copied cheaply (Polars
    /// columns are reference-counted).
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] for an empty name.
    fn create_or_replace_temp_view(&self, session: &EngineSession, name: &str) -> Result<()>;
}

impl StaticViewExt for DataFrame {
    fn create_or_replace_temp_view(&self, session: &EngineSession, name: &str) -> Result<()> {
        session.register_view(name, View::Static(self.clone()))
    }
}

impl StreamingDataFrame {
    /// Registers this streaming data frame as the view `name` of its session, for
    /// [`EngineSession::sql`] (Spark's `createOrReplaceTempView`). Watermarks declared
    /// before (`with_watermark`) come with it.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] for an empty name.
    pub fn create_or_replace_temp_view(&self, name: &str) -> Result<()> {
        self.session.register_view(name, View::Stream(self.plan.clone()))
    }
}

impl EngineSession {
    /// Runs a Spark SQL query over this session's views (Spark's `spark.sql`): a
    /// [`SqlFrame::Stream`] when it reads a streaming view, else the static result.
    ///
    /// Supported: `SELECT` lists with aliases, `*` and `t.*`; `WHERE`; `GROUP BY`
    /// expressions, select aliases and ordinals, with `window`, `session_window` and the
    /// aggregate functions; `HAVING`; `DISTINCT`; subqueries in `FROM`; `JOIN` / `LEFT JOIN`
    /// with `ON` or `USING` (stream-static, and stream-stream with equality keys and a time
    /// range); `ORDER BY` and `LIMIT` (complete mode on streams); Spark's scalar functions
    /// listed by [`function_names`].
    ///
    /// # Errors
    /// [`SluiceError::Parse`] with line and column for a syntax error;
    /// [`SluiceError::Analysis`] for an unknown view, column or function (naming the
    /// closest candidates, as Spark's `UNRESOLVED_COLUMN.WITH_SUGGESTION`), or an operation
    /// Spark refuses on streams. Never panics, whatever the text.
    pub fn sql(&self, text: &str) -> Result<SqlFrame> {
        let statement = parser::parse(text)?;
        planner::plan_query(self, &statement).map_err(|e| match e {
            // A Polars type error while planning: the query does not type-check.
            SluiceError::Polars(p) => SluiceError::analysis(format!(
                "[DATATYPE_MISMATCH] the query does not type-check: {}",
                p.to_string().lines().next().unwrap_or_default()
            )),
            other => other,
        })
    }
}
