//! `explain()`: the logical and physical plan of a query as a text tree, in the shape of
//! Spark's `Dataset.explain()` / `StreamingQuery.explain()`:
//!
//! ```text
//! == Logical Plan ==
//! Aggregate [keys], [aggregates]
//! +- EventTimeWatermark ts, 10 seconds
//!    +- StreamingRelation <source description>, [columns]
//!
//! == Physical Plan ==
//! WriteToMicroBatchDataSource <sink>, outputMode Append
//! +- StreamingAggregateExec op=0, stores=[0], keys=[window], partitions=4, watermark=ts delay 10 seconds
//!    +- EventTimeWatermark ts, 10 seconds
//!       +- Scan 0 <source description>
//! ```
//! `extended` adds each logical node's output schema and each store's state schema.
//! The text depends only on the query (never on data or time), so tests may assert on it.

use std::fmt::Write;

use super::LogicalPlan;
use crate::time::interval::format_interval_ms;

/// The longest expression `explain(false)` prints whole; a longer one (a `window(..)`
/// key expands to a page) is shown as `<expression>` with its alias.
const SHORT_EXPR: usize = 160;

/// An expression as `explain` shows it: Polars' form, or, when longer than
/// [`SHORT_EXPR`] and not `extended`, `<expression>.alias("name")`.
pub fn expr_text(e: &polars::prelude::Expr, extended: bool) -> String {
    let text = format!("{e:?}");
    if extended || text.len() <= SHORT_EXPR {
        return text;
    }
    match e {
        polars::prelude::Expr::Alias(_, name) => format!("<expression>.alias(\"{name}\")"),
        _ => "<expression>".into(),
    }
}

fn exprs(e: &[polars::prelude::Expr]) -> String {
    format!("[{}]", e.iter().map(|e| expr_text(e, false)).collect::<Vec<_>>().join(", "))
}

/// A child of a tree node: writes itself given its line prefix.
pub(crate) type TreeChild<'a> = Box<dyn FnOnce(&mut String, &str) + 'a>;

/// Writes `children` under `prefix` with Spark's `+- ` / `:  ` tree marks.
pub(crate) fn tree(out: &mut String, prefix: &str, line: &str, children: Vec<TreeChild<'_>>) {
    let _ = writeln!(out, "{line}");
    let n = children.len();
    for (i, child) in children.into_iter().enumerate() {
        let last = i + 1 == n;
        out.push_str(prefix);
        out.push_str(if last { "+- " } else { ":- " });
        let next = format!("{prefix}{}", if last { "   " } else { ":  " });
        child(out, &next);
    }
}

/// A schema as `[name: type, ...]`.
pub fn schema_text(schema: &polars::prelude::Schema) -> String {
    format!("[{}]", schema.iter().map(|(n, t)| format!("{n}: {t}")).collect::<Vec<_>>().join(", "))
}

impl LogicalPlan {
    /// The node's own line in [`explain`](crate::StreamingDataFrame::explain) (without its
    /// inputs).
    pub fn describe(&self) -> String {
        match self {
            LogicalPlan::Source { provider, .. } => {
                let cols: Vec<String> = provider.schema().iter_names().map(|n| n.to_string()).collect();
                format!("StreamingRelation {}, [{}]", provider.description(), cols.join(", "))
            }
            LogicalPlan::Select { exprs: e, .. } => format!("Project {}", exprs(e)),
            LogicalPlan::WithColumns { exprs: e, .. } => format!("WithColumns {}", exprs(e)),
            LogicalPlan::Filter { predicate, .. } => format!("Filter {predicate:?}"),
            LogicalPlan::Watermark { column, delay_ms, .. } => {
                format!("EventTimeWatermark {column}, {}", format_interval_ms(*delay_ms))
            }
            LogicalPlan::Aggregate { keys, aggs, .. } => format!("Aggregate {}, {}", exprs(keys), exprs(aggs)),
            LogicalPlan::Join { left_on, right_on, how, condition, .. } => format!(
                "Join {how:?}, {} = {}{}",
                exprs(left_on),
                exprs(right_on),
                condition.as_ref().map(|c| format!(", condition {c:?}")).unwrap_or_default()
            ),
            LogicalPlan::StaticJoin { left_on, right_on, how, right, .. } => format!(
                "Join {how:?} (static, {} rows), {} = {}",
                right.height(),
                exprs(left_on),
                exprs(right_on)
            ),
            LogicalPlan::FlatMapGroupsWithState { spec, .. } => format!(
                "FlatMapGroupsWithState {}, {}, outputMode {}, timeout {}",
                spec.op_name(),
                exprs(&spec.keys),
                spec.output_mode,
                spec.timeout
            ),
            LogicalPlan::Sort { by, descending, .. } => format!("Sort {}, descending {descending:?}", exprs(by)),
            LogicalPlan::Limit { n, .. } => format!("Limit {n}"),
            LogicalPlan::Deduplicate { keys, within_watermark, .. } => format!(
                "{} [{}]",
                if *within_watermark { "DeduplicateWithinWatermark" } else { "Deduplicate" },
                keys.join(", ")
            ),
        }
    }

    /// The plan as a text tree (see the [module docs](self)); `extended` adds each node's
    /// output schema.
    pub fn tree_string(&self, extended: bool) -> String {
        let mut out = String::new();
        self.write_tree(&mut out, "", extended);
        out
    }

    fn write_tree(&self, out: &mut String, prefix: &str, extended: bool) {
        let mut line = self.describe();
        if extended {
            match self.schema() {
                Ok(s) => line.push_str(&format!(" -> {}", schema_text(&s))),
                Err(e) => line.push_str(&format!(" -> <error: {e}>")),
            }
        }
        let children: Vec<TreeChild<'_>> = self
            .inputs()
            .into_iter()
            .map(|i| Box::new(move |o: &mut String, p: &str| i.write_tree(o, p, extended)) as TreeChild<'_>)
            .collect();
        tree(out, prefix, &line, children);
    }
}

/// The whole `explain` text of `logical` run in `mode` with `partitions` state
/// partitions, writing to `sink` (described as `sink_name`; without a sink, the sink's
/// analysis rules are not checked): the logical plan, the physical plan, and the analysis
/// problems that would make `start()` fail, if any.
///
/// # Errors
/// When an expression does not type-check or an aggregation cannot be planned.
pub fn explain_query(
    logical: &std::sync::Arc<LogicalPlan>,
    mode: crate::OutputMode,
    partitions: usize,
    sink: Option<&dyn crate::connector::Sink>,
    sink_name: &str,
    extended: bool,
) -> crate::Result<String> {
    let (physical, problems) = super::PhysicalPlan::plan_unchecked(logical, mode, partitions, sink)?;
    let mut out = String::from("== Logical Plan ==\n");
    out.push_str(&logical.tree_string(extended));
    out.push_str("\n== Physical Plan ==\n");
    out.push_str(&physical.tree_string(sink_name, mode, extended));
    if !problems.is_empty() {
        out.push_str("\n== Analysis Errors ==\n");
        for p in problems {
            let _ = writeln!(out, "{p}");
        }
    }
    Ok(out)
}
