//! [`MemorySink`]: keeps every batch in memory, queryable through a [`MemoryTable`]
//! (Spark's memory sink).

use std::sync::{Arc, Mutex};

use polars::prelude::{concat, DataFrame, IntoLazy, UnionArgs};
use sluice_engine::checkpoint::BatchId;
use sluice_engine::{OutputMode, Result, Sink, SinkContext};

#[derive(Default)]
struct Table {
    batches: Vec<(BatchId, DataFrame)>,
    complete: bool,
}

/// The queryable side of a [`MemorySink`]. Clones share the table.
#[derive(Clone, Default)]
pub struct MemoryTable {
    inner: Arc<Mutex<Table>>,
}

impl MemoryTable {
    /// A new, empty table.
    pub fn new() -> Self {
        Self::default()
    }
    /// A sink writing into this table.
    pub fn sink(&self) -> MemorySink {
        MemorySink { table: self.clone() }
    }
    /// Every batch written, in order, as `(batch id, rows)`. In Complete mode only the
    /// latest batch is kept (it is the whole result), as in Spark.
    pub fn batches(&self) -> Vec<(BatchId, DataFrame)> {
        self.inner.lock().expect("memory table lock").batches.clone()
    }
    /// All rows written (the latest result in Complete mode), one frame.
    ///
    /// # Errors
    /// [`sluice_engine::SluiceError::Polars`] if batches cannot be concatenated.
    pub fn to_df(&self) -> Result<Option<DataFrame>> {
        let batches = self.batches();
        if batches.is_empty() {
            return Ok(None);
        }
        let lfs: Vec<_> = batches.into_iter().map(|(_, d)| d.lazy()).collect();
        Ok(Some(concat(lfs, UnionArgs::default())?.collect()?))
    }
}

/// Writes batches into a [`MemoryTable`]. A replayed batch id replaces its earlier copy,
/// so every batch is in the table once.
pub struct MemorySink {
    table: MemoryTable,
}

impl Sink for MemorySink {
    fn description(&self) -> String {
        "MemorySink".into()
    }
    fn initialize(&mut self, ctx: &SinkContext) -> Result<()> {
        self.table.inner.lock().expect("memory table lock").complete = ctx.output_mode == OutputMode::Complete;
        Ok(())
    }
    fn add_batch(&mut self, batch_id: BatchId, data: &DataFrame) -> Result<()> {
        let mut t = self.table.inner.lock().expect("memory table lock");
        if t.complete {
            t.batches.clear();
        } else {
            t.batches.retain(|(b, _)| *b != batch_id);
        }
        t.batches.push((batch_id, data.clone()));
        Ok(())
    }
}
