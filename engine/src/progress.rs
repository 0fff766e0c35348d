//! `StreamingQueryProgress`: what each micro-batch did, in Spark's JSON shape.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Progress of one micro-batch (Spark's `StreamingQueryProgress`; same JSON field names).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StreamingQueryProgress {
    /// Query id (stable across restarts).
    pub id: String,
    /// Run id (new at every start).
    pub run_id: String,
    /// Query name, if set.
    pub name: Option<String>,
    /// When the batch started, RFC 3339 UTC.
    pub timestamp: String,
    /// The batch id.
    pub batch_id: u64,
    /// Rows read from all sources in this batch.
    pub num_input_rows: u64,
    /// Input rows per second of wall time since the previous batch started.
    pub input_rows_per_second: f64,
    /// Input rows per second of this batch's processing time.
    pub processed_rows_per_second: f64,
    /// Milliseconds per phase: `latestOffset`, `walCommit`, `getBatch`, `addBatch`
    /// (plan execution and sink), `commitOffsets` (state and commit log), `triggerExecution`
    /// (the whole batch).
    pub duration_ms: BTreeMap<String, u64>,
    /// Event-time statistics of this batch's input (`min`, `max`, `avg` of the watermark
    /// column, RFC 3339) and the `watermark` the batch ran with; empty without watermark.
    pub event_time: BTreeMap<String, String>,
    /// One entry per stateful operator.
    pub state_operators: Vec<StateOperatorProgress>,
    /// One entry per source.
    pub sources: Vec<SourceProgress>,
    /// The sink.
    pub sink: SinkProgress,
}

/// Metrics of one stateful operator in one batch (Spark's `StateOperatorProgress`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StateOperatorProgress {
    /// Operator name, e.g. `stateStoreSave`.
    pub operator_name: String,
    /// State rows after the batch.
    pub num_rows_total: u64,
    /// State rows inserted or updated by the batch.
    pub num_rows_updated: u64,
    /// State rows removed (evicted by the watermark) by the batch.
    pub num_rows_removed: u64,
    /// Input rows dropped as late; for aggregations, counted after partial aggregation
    /// (groups), as in Spark.
    pub num_rows_dropped_by_watermark: u64,
    /// Estimated bytes of the in-memory state.
    pub memory_used_bytes: u64,
    /// Number of state partitions.
    pub num_state_partitions: u64,
    /// Operator-specific metrics (e.g. per join side).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_metrics: BTreeMap<String, i64>,
}

impl StateOperatorProgress {
    /// Empty metrics for an operator named `name`.
    pub fn new(name: &str) -> Self {
        Self { operator_name: name.to_string(), ..Default::default() }
    }
    /// Records a batch of a single-store operator: state rows `updated` and `removed`,
    /// input rows (or groups) `dropped` as late, and the size of `state` after the batch
    /// (`numRowsTotal`, `memoryUsedBytes`).
    pub fn record_batch(&mut self, updated: u64, removed: u64, dropped: u64, state: &polars::prelude::DataFrame) {
        self.num_rows_updated = updated;
        self.num_rows_removed = removed;
        self.num_rows_dropped_by_watermark = dropped;
        self.num_rows_total = state.height() as u64;
        self.memory_used_bytes = state.estimated_size() as u64;
    }
}

/// Progress of one source in one batch.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SourceProgress {
    /// Source description.
    pub description: String,
    /// Offset the batch started after (`null` for the first batch).
    pub start_offset: Option<serde_json::Value>,
    /// Offset the batch ended at.
    pub end_offset: Option<serde_json::Value>,
    /// Rows read in this batch.
    pub num_input_rows: u64,
}

/// Progress of the sink in one batch.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SinkProgress {
    /// Sink description.
    pub description: String,
    /// Rows written in this batch.
    pub num_output_rows: u64,
}

impl StreamingQueryProgress {
    /// One concise line: batch, rows, rate, duration, watermark, state rows.
    pub fn summary_line(&self) -> String {
        let state: u64 = self.state_operators.iter().map(|s| s.num_rows_total).sum();
        let dropped: u64 = self.state_operators.iter().map(|s| s.num_rows_dropped_by_watermark).sum();
        let mut line = format!(
            "batch {:>4}: {:>7} rows in, {:>6} out, {:>9.0} rows/s, {:>5} ms",
            self.batch_id,
            self.num_input_rows,
            self.sink.num_output_rows,
            self.processed_rows_per_second,
            self.duration_ms.get("triggerExecution").copied().unwrap_or(0)
        );
        if let Some(wm) = self.event_time.get("watermark") {
            line.push_str(&format!(", watermark {wm}"));
        }
        if !self.state_operators.is_empty() {
            line.push_str(&format!(", state {state} rows"));
        }
        if dropped > 0 {
            line.push_str(&format!(", {dropped} late dropped"));
        }
        line
    }
}
