//! What each micro-batch did: [`StreamingQueryProgress`] in Spark's JSON shape, and how
//! it is shown on the terminal ([`ProgressDisplay`], [`ProgressReporter`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::operators::StateOperatorProgress;

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

/// How a running query reports progress on the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressDisplay {
    /// One line per batch on stderr, prefixed with the query name (else the first 8
    /// characters of its id), so that the lines of concurrent queries tell apart.
    Lines,
    /// An indicatif progress bar (best for `AvailableNow` backlogs).
    Bar,
    /// Nothing (progress is still available through the query handle and `tracing`).
    Off,
}

/// Shows each batch's progress as [`ProgressDisplay`] says, and logs it with `tracing`
/// (target `sluice::progress`).
pub struct ProgressReporter {
    display: ProgressDisplay,
    /// The line prefix: the query name, else the first 8 characters of its id.
    label: String,
    bar: Option<indicatif::ProgressBar>,
}

impl ProgressReporter {
    /// A reporter for the query `id`, named `name` (if any).
    pub fn new(display: ProgressDisplay, name: Option<String>, id: &str) -> Self {
        let label = name.unwrap_or_else(|| id.chars().take(8).collect());
        ProgressReporter { display, label, bar: None }
    }

    /// An `AvailableNow` run knows its backlog (`total`, in the sources' units): show a
    /// bar when the display is [`ProgressDisplay::Bar`].
    pub fn start_backlog(&mut self, total: u64) {
        if self.display != ProgressDisplay::Bar {
            return;
        }
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        self.bar = Some(bar);
    }

    /// Reports one batch.
    pub fn report(&self, progress: &StreamingQueryProgress) {
        let line = format!("[{}] {}", self.label, progress.summary_line());
        match (&self.bar, self.display) {
            (Some(bar), _) => {
                bar.inc(1);
                bar.set_message(line.clone());
            }
            (None, ProgressDisplay::Lines | ProgressDisplay::Bar) => eprintln!("{line}"),
            (None, ProgressDisplay::Off) => {}
        }
        tracing::info!(target: "sluice::progress", query_id = %progress.id, run_id = %progress.run_id, "{line}");
    }

    /// Clears the bar, if any.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
