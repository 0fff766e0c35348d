//! [`ConsoleSink`]: prints each batch as a table under a `Batch: N` header (Spark's
//! console sink); [`ConsoleSinkProvider`] creates it by format name (`format("console")`,
//! option `numRows`). Not idempotent: a replayed batch prints again, as in Spark.

use std::io::Write;

use polars::prelude::DataFrame;
use sluice_engine::checkpoint::BatchId;
use sluice_engine::{Options, Result, Sink, SinkProvider};

/// Prints batches to stdout.
pub struct ConsoleSink {
    /// Maximum rows printed per batch (Spark's `numRows`, default 20).
    pub num_rows: usize,
}

impl Default for ConsoleSink {
    fn default() -> Self {
        Self { num_rows: 20 }
    }
}

impl ConsoleSink {
    /// The table text printed for one batch.
    pub fn render(&self, batch_id: BatchId, data: &DataFrame) -> String {
        let shown = data.head(Some(self.num_rows));
        let mut out = format!("-------------------------------------------\nBatch: {batch_id}\n-------------------------------------------\n{shown}\n");
        if data.height() > self.num_rows {
            out.push_str(&format!("only showing top {} of {} rows\n", self.num_rows, data.height()));
        }
        out
    }
}

impl Sink for ConsoleSink {
    fn description(&self) -> String {
        "ConsoleSink".into()
    }
    fn add_batch(&mut self, batch_id: BatchId, data: &DataFrame) -> Result<()> {
        let text = self.render(batch_id, data);
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(text.as_bytes())
            .map_err(|source| sluice_engine::SluiceError::Io { path: "<stdout>".into(), source })
    }
}

/// Creates [`ConsoleSink`]s from the writer's options: `numRows` (positive, default 20).
#[derive(Debug, Clone, Copy, Default)]
pub struct ConsoleSinkProvider;

impl SinkProvider for ConsoleSinkProvider {
    /// # Errors
    /// [`sluice_engine::SluiceError::InvalidArgument`] for a `numRows` that is not a
    /// positive integer.
    fn create(&self, options: &Options) -> Result<Box<dyn Sink>> {
        let num_rows = options.positive_usize("numRows")?.unwrap_or(20);
        Ok(Box::new(ConsoleSink { num_rows }))
    }
    fn known_options(&self) -> &'static [&'static str] {
        &["numRows"]
    }
}

#[cfg(test)]
mod tests {
    use polars::prelude::*;

    use super::*;

    #[test]
    fn renders_the_batch_id_and_at_most_num_rows() {
        let df = df!("channel" => ["#en", "#de", "#fr"], "edits" => [3i64, 2, 1]).unwrap();
        let text = ConsoleSink { num_rows: 2 }.render(7, &df);
        assert!(text.contains("Batch: 7"), "{text}");
        assert!(text.contains("#en") && text.contains("#de"), "{text}");
        assert!(!text.contains("#fr"), "only the first 2 rows: {text}");
        assert!(text.contains("only showing top 2 of 3 rows"), "{text}");
        let all = ConsoleSink::default().render(0, &df);
        assert!(all.contains("#fr") && !all.contains("only showing"), "{all}");
    }
}
