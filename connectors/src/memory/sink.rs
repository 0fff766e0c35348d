//! [`MemorySink`]: keeps every batch in memory, queryable through a [`MemoryTable`]
//! (Spark's memory sink); [`MemorySinkProvider`] creates it by format name and keeps the
//! tables by query name ([`MemoryTables`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use polars::prelude::{DataFrame, IntoLazy, UnionArgs, concat};
use sluice_engine::checkpoint::BatchId;
use sluice_engine::{OutputMode, Options, Result, Sink, SinkContext, SinkProvider, SluiceError};

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

/// The memory sinks' tables by query name (Spark's `spark.table(name)` for a memory
/// sink). Clones share the registry.
#[derive(Clone, Default)]
pub struct MemoryTables {
    inner: Arc<Mutex<HashMap<String, MemoryTable>>>,
}

impl MemoryTables {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }
    /// The table of the memory sink of the query named `name`.
    pub fn get(&self, name: &str) -> Option<MemoryTable> {
        self.inner.lock().expect("memory tables lock").get(name).cloned()
    }
    fn insert(&self, name: String, table: MemoryTable) {
        self.inner.lock().expect("memory tables lock").insert(name, table);
    }
}

/// Creates [`MemorySink`]s from the writer's options (`format("memory")`): each into a
/// new table registered in its [`MemoryTables`] under the query name (option `queryName`,
/// set by `query_name(..)`), replacing a table of the same name.
#[derive(Clone, Default)]
pub struct MemorySinkProvider {
    tables: MemoryTables,
}

/// The option the memory sink reads.
const SINK_OPTIONS: &[&str] = &["queryName"];

impl MemorySinkProvider {
    /// A provider registering its tables in `tables`.
    pub fn new(tables: MemoryTables) -> Self {
        Self { tables }
    }
    /// The registry of the tables it creates.
    pub fn tables(&self) -> &MemoryTables {
        &self.tables
    }
}

impl SinkProvider for MemorySinkProvider {
    /// # Errors
    /// [`SluiceError::InvalidArgument`] without a query name.
    fn create(&self, options: &Options) -> Result<Box<dyn Sink>> {
        let name = options.get("queryName").map(str::to_string).ok_or_else(|| {
            SluiceError::InvalidArgument("the memory sink needs a query name: call query_name(\"...\")".into())
        })?;
        let table = MemoryTable::new();
        self.tables.insert(name, table.clone());
        Ok(Box::new(table.sink()))
    }
    fn known_options(&self) -> &'static [&'static str] {
        SINK_OPTIONS
    }
}
