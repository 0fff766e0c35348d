//! Spark's `UnsupportedOperationChecker` for streaming queries: which operators, output
//! modes and combinations can run incrementally. Every rule is here, with Spark's wording
//! and what to change; the [physical planner](super::physical) applies them while it plans
//! and `start()` fails with the first problem as [`SluiceError::Analysis`](crate::SluiceError).

use super::LogicalPlan;
use crate::operators::aggregate::AggregatePlan;
use crate::operators::group_state::{GroupStateTimeout, GroupsWithStateSpec};
use crate::operators::join::StreamJoinType;
use crate::OutputMode;

/// How many stateful operators of each kind a query has.
#[derive(Debug, Clone, Copy, Default)]
pub struct OperatorCounts {
    /// Streaming aggregations (windowed, session or plain).
    pub aggregations: usize,
    /// `flat_map_groups_with_state` / `map_groups_with_state`.
    pub groups_with_state: usize,
    /// Every stateful operator (aggregations, joins, deduplications, groups with state).
    pub stateful: usize,
}

/// Rules of one streaming aggregation in `mode`: append needs a watermarked event-time
/// key; session windows do not support update mode.
pub fn aggregate(plan: &AggregatePlan, mode: OutputMode) -> Vec<String> {
    let mut out = Vec::new();
    if mode == OutputMode::Append && plan.event_time_key.is_none() {
        out.push(
            "Append output mode not supported when there are streaming aggregations on \
             streaming DataFrames without watermark: call with_watermark(\"<event time>\", \
             \"<delay>\") and group by that column or a window over it, or use Update or \
             Complete output mode"
                .into(),
        );
    }
    if plan.session_window().is_some() && mode == OutputMode::Update {
        out.push(
            "Update output mode not supported for session window on streaming DataFrames/DataSets: a \
             session's start moves when sessions merge, so an updated row cannot replace the previous one; \
             use Append output mode (with a watermark) or Complete output mode"
                .into(),
        );
    }
    out
}

/// Rules of `flat_map_groups_with_state` / `map_groups_with_state` in a query of `mode`;
/// `has_event_time` tells whether its input carries a watermark.
pub fn groups_with_state(spec: &GroupsWithStateSpec, mode: OutputMode, has_event_time: bool) -> Vec<String> {
    let mut out = Vec::new();
    let op_name = spec.op_name();
    if spec.is_map {
        if mode != OutputMode::Update {
            out.push(format!(
                "mapGroupsWithState is not supported with {mode} output mode on a streaming \
                 DataFrame: use Update output mode"
            ));
        }
    } else if spec.output_mode == OutputMode::Complete {
        out.push("flatMapGroupsWithState supports Append or Update as its own output mode, not Complete".into());
    } else if spec.output_mode != mode {
        out.push(format!(
            "flatMapGroupsWithState in {} mode is not supported with {mode} output mode on a \
             streaming DataFrame: use the same output mode for the operator and the query",
            spec.output_mode.to_string().to_lowercase()
        ));
    }
    if spec.timeout == GroupStateTimeout::EventTimeTimeout && !has_event_time {
        out.push(format!(
            "Watermark must be specified in the query using with_watermark() for using event-time \
             timeout in a {op_name}. Event-time timeout not supported without watermark."
        ));
    }
    out
}

/// Rules of a stream-static join: inner or left outer with the stream on the left.
pub fn static_join(how: StreamJoinType) -> Vec<String> {
    if matches!(how, StreamJoinType::Inner | StreamJoinType::LeftOuter) {
        return vec![];
    }
    vec![format!(
        "a stream-static join supports Inner and LeftOuter with the stream on the left, not {how}: \
         the static side has no end, so its unmatched rows could never be emitted"
    )]
}

/// Rules of a stream-stream join of type `how` in `mode`: append only, no stateful input,
/// and every outer side evictable (`evictable(left_side)`: a watermark on both inputs and
/// a time-range condition bounding that side).
pub fn stream_stream_join(
    how: StreamJoinType,
    mode: OutputMode,
    stateful_input: bool,
    evictable: impl Fn(bool) -> bool,
) -> Vec<String> {
    let mut out = Vec::new();
    if stateful_input {
        out.push("a stream-stream join of a stateful result (aggregation or join) is not supported".into());
    }
    if mode != OutputMode::Append {
        out.push(format!("{mode} output mode not supported for stream-stream joins: use Append output mode"));
    }
    let needs = |left_side: bool| match how {
        StreamJoinType::LeftOuter | StreamJoinType::LeftSemi => left_side,
        StreamJoinType::RightOuter => !left_side,
        StreamJoinType::FullOuter => true,
        StreamJoinType::Inner => false,
    };
    for (side, name) in [(true, "left"), (false, "right")] {
        if needs(side) && !evictable(side) {
            out.push(format!(
                "Stream-stream {how} join between two streaming DataFrames is not supported \
                 without a watermark on both inputs and a range condition on event time that \
                 bounds the {name} side (e.g. right_time BETWEEN left_time AND left_time + \
                 interval): without it, unmatched {name} rows could never be emitted"
            ));
            break;
        }
    }
    out
}

/// Rules of a deduplication: not after an aggregation.
pub fn deduplicate(within_watermark: bool, after_aggregation: bool) -> Vec<String> {
    if !after_aggregation {
        return vec![];
    }
    let name = if within_watermark { "dropDuplicatesWithinWatermark" } else { "dropDuplicates" };
    vec![format!(
        "{name} is not supported after aggregation on a streaming DataFrame: deduplicate \
         the rows before group_by"
    )]
}

/// Rules of the whole query: complete mode without aggregation, and whether the sink
/// (described by `sink`) supports `mode`.
pub fn query(counts: OperatorCounts, mode: OutputMode, sink: &str, sink_supports_mode: bool) -> Vec<String> {
    let mut out = Vec::new();
    if mode == OutputMode::Complete && counts.aggregations == 0 {
        out.push(
            "Complete output mode not supported when there are no streaming aggregations on \
             streaming DataFrames: use Append or Update output mode"
                .into(),
        );
    }
    if !sink_supports_mode {
        out.push(format!("{sink} does not support {mode} output mode: use Append output mode, or another sink"));
    }
    out
}

/// Spark's message for a stateful operator downstream of one that can emit rows below the
/// watermark (`checkStreamingQueryGlobalWatermarkLimit`).
pub const CORRECTNESS_ISSUE: &str = "Detected pattern of possible 'correctness' issue due to global watermark. \
    The query contains stateful operation which can emit rows older than the current watermark plus allowed \
    late record delay, which are \"late rows\" in downstream stateful operations and these rows can be \
    discarded: chain stateful operators (aggregation after aggregation, join or deduplication) in Append \
    output mode only, where each operator emits rows at or above its output watermark";

fn is_stateful(p: &LogicalPlan) -> bool {
    matches!(
        p,
        LogicalPlan::Aggregate { .. }
            | LogicalPlan::Join { .. }
            | LogicalPlan::Deduplicate { .. }
            | LogicalPlan::FlatMapGroupsWithState { .. }
    )
}

/// Whether `p` can emit rows older than the watermark to a downstream stateful operator:
/// an aggregation in Update or Complete mode, groups-with-state in Update mode.
fn emits_late_rows(p: &LogicalPlan, mode: OutputMode) -> bool {
    match p {
        LogicalPlan::Aggregate { .. } => mode != OutputMode::Append,
        LogicalPlan::FlatMapGroupsWithState { spec, .. } => spec.output_mode == OutputMode::Update,
        _ => false,
    }
}

fn any_below(p: &LogicalPlan, pred: &dyn Fn(&LogicalPlan) -> bool) -> bool {
    p.inputs().iter().any(|i| pred(i) || any_below(i, pred))
}

/// Rules on how stateful operators combine and on sorting and limits (Spark 3.5): chains
/// of stateful operators only in Append mode (a downstream operator judges rows by the
/// watermark its input propagates); groups-with-state before an aggregation only, in
/// Append mode; sort only after an aggregation in Complete mode; limit not in Update mode.
pub fn combinations(plan: &LogicalPlan, mode: OutputMode) -> Vec<String> {
    let mut out = Vec::new();
    let has_aggregation = |p: &LogicalPlan| {
        matches!(p, LogicalPlan::Aggregate { .. }) || any_below(p, &|q| matches!(q, LogicalPlan::Aggregate { .. }))
    };
    let whole_has_aggregation = has_aggregation(plan);
    let mut chained = false;
    let mut visit = vec![plan];
    while let Some(p) = visit.pop() {
        visit.extend(p.inputs().into_iter().map(|i| i.as_ref()));
        chained |= is_stateful(p) && any_below(p, &|q| emits_late_rows(q, mode));
        match p {
            LogicalPlan::FlatMapGroupsWithState { input, spec } => {
                if spec.is_map && whole_has_aggregation {
                    out.push("mapGroupsWithState is not supported with aggregation on a streaming DataFrame/Dataset".into());
                } else if !spec.is_map && spec.output_mode == OutputMode::Update && whole_has_aggregation {
                    out.push(
                        "flatMapGroupsWithState in update mode is not supported with aggregation on a streaming \
                         DataFrame/Dataset: use Append mode for the operator and the query"
                            .into(),
                    );
                } else if !spec.is_map && has_aggregation(input) {
                    out.push(
                        "flatMapGroupsWithState in append mode is not supported after aggregation on a streaming \
                         DataFrame/Dataset: aggregate its output instead"
                            .into(),
                    );
                }
            }
            LogicalPlan::Sort { input, .. } if mode != OutputMode::Complete || !has_aggregation(input) => {
                out.push(
                    "Sorting is not supported on streaming DataFrames/Datasets, unless it is on aggregated \
                     DataFrame/Dataset in Complete output mode"
                        .into(),
                );
            }
            LogicalPlan::Limit { .. } => match mode {
                OutputMode::Update => {
                    out.push("Limits are not supported on streaming DataFrames/Datasets in Update output mode".into())
                }
                OutputMode::Append => out.push(
                    "limit in Append output mode is not supported by Sluice (Spark keeps a global row count in \
                     state): use Complete output mode after an aggregation, or limit when reading the output"
                        .into(),
                ),
                OutputMode::Complete => {}
            },
            _ => {}
        }
    }
    if chained {
        out.push(CORRECTNESS_ISSUE.to_string());
    }
    out
}
