//! Operator state read as Polars data frames (Spark 4.0's `statestore` and
//! `state-metadata` readers): from a checkpoint at rest ([`StateReader`], through
//! [`EngineSession::read_state`](crate::EngineSession::read_state),
//! [`read_state_changes`](crate::EngineSession::read_state_changes) and
//! [`read_state_metadata`](crate::EngineSession::read_state_metadata)).
//!
//! Reading never writes to the checkpoint and never claims it: it works on the
//! checkpoint of a stopped query (and on a running one's, reading committed versions).
//!
//! * **Which state**: `operator(i)` is the i-th stateful operator in plan order (the
//!   `op=` of [`explain`](crate::StreamingDataFrame::explain)); a stream-stream join has
//!   two stores, `store(0)` (left, the default) and `store(1)` (right). `batch(n)` reads
//!   the state as committed after batch `n` (store version `n + 1`), by default after the
//!   last committed batch.
//! * **Columns**: `partition_id`, then the state row: its keys, then its values. An
//!   aggregation's values are partial aggregates (`__p0`, `__p1`, ...: counts, sums,
//!   sketches). Given the query ([`StateReader::query`]), an aggregation's rows are shown
//!   as the query outputs them (keys such as `window` as structs, each aggregate's
//!   result under its alias) followed by the raw partials as `raw.<column>`; without it,
//!   the raw state rows as stored (the checkpoint records the operator and its keys, not
//!   the aggregate expressions).
//! * **Change feed** ([`read_state_changes`](crate::EngineSession::read_state_changes)):
//!   `batch_id`, `change_type` (`update` or `delete`), `partition_id`, then the state
//!   row, read from the delta files: one row per key written or removed by each batch.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use polars::prelude::*;
use sluice_checkpoint::{BatchId, Checkpoint};

use super::{StateStore, DEFAULT_SNAPSHOT_INTERVAL, DEFAULT_STATE_PARTITIONS, DELETED_COLUMN};
use crate::plan::{LogicalPlan, PhysicalPlan};
use crate::{OutputMode, Result, SluiceError, StreamingDataFrame};

/// One state store as recorded in `state/<store>/_metadata`.
#[derive(Debug, Clone)]
pub struct StoreInfo {
    /// The store's id (its folder `state/<store>`).
    pub store_id: usize,
    /// The stateful operator owning it, in plan order.
    pub operator_id: usize,
    /// The store's index within its operator (a join: 0 left, 1 right).
    pub store_index: usize,
    /// The operator's name, e.g. `StreamingAggregateExec`.
    pub operator: String,
    /// The key columns of the state rows.
    pub keys: Vec<String>,
    /// The state rows' columns and types, as recorded (`name: type`).
    pub state_schema: Vec<String>,
}

/// Opens `dir` read-only: it must exist (a checkpoint is never created by a reader).
pub(crate) fn open_checkpoint(dir: &Path) -> Result<Checkpoint> {
    if !dir.join("metadata").exists() && !dir.join("offsets").exists() {
        return Err(SluiceError::InvalidArgument(format!("{} is not a checkpoint (no metadata, no offsets)", dir.display())));
    }
    Ok(Checkpoint::local(dir)?)
}

/// The stores of the checkpoint, in store-id order.
///
/// # Errors
/// [`SluiceError::Checkpoint`] for an unreadable metadata file.
pub fn stores(ckpt: &Checkpoint) -> Result<Vec<StoreInfo>> {
    let mut out: Vec<StoreInfo> = Vec::new();
    for store_id in 0.. {
        let path = ckpt.paths().state_metadata(store_id);
        let Some(bytes) = ckpt.get(&path)? else { break };
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| SluiceError::Internal(format!("{}: {e}", ckpt.display_path(&path))))?;
        let store_index = v["store"].as_u64().unwrap_or(0) as usize;
        let operator_id = match out.last() {
            None => 0,
            Some(prev) if store_index > 0 => prev.operator_id,
            Some(prev) => prev.operator_id + 1,
        };
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
        };
        let operator = v["operator"].as_str().unwrap_or_default().to_string();
        let keys = match v.get("keys") {
            Some(k) => strings(k),
            None if operator.contains("Join") => vec![crate::operators::join::symmetric_hash::ROW_ID.to_string()],
            None => vec![],
        };
        out.push(StoreInfo { store_id, operator_id, store_index, operator, keys, state_schema: strings(&v["stateSchema"]) });
    }
    Ok(out)
}

/// The number of state partitions the checkpoint pinned.
fn partitions_of(ckpt: &Checkpoint) -> Result<usize> {
    Ok(ckpt
        .offsets()
        .latest()?
        .and_then(|(_, o)| o.metadata.conf.get(crate::execution::CONF_STATE_PARTITIONS).and_then(|p| p.parse().ok()))
        .unwrap_or(DEFAULT_STATE_PARTITIONS))
}

/// The checkpoint's operators and stores as a frame (Spark's `state-metadata` source):
/// `operator_id`, `operator_name`, `store_id`, `store_index`, `keys`, `state_schema`,
/// `num_partitions`, `min_batch_id`, `max_batch_id` (the committed batches whose state can
/// be read), one row per store.
///
/// # Errors
/// [`SluiceError::Checkpoint`] for an unreadable checkpoint.
pub fn metadata(ckpt: &Checkpoint) -> Result<DataFrame> {
    let stores = stores(ckpt)?;
    let partitions = partitions_of(ckpt)? as u32;
    let commits = ckpt.commits().batch_ids()?;
    let (min, max) = (commits.first().copied(), commits.last().copied());
    let n = stores.len();
    Ok(df!(
        "operator_id" => stores.iter().map(|s| s.operator_id as u32).collect::<Vec<_>>(),
        "operator_name" => stores.iter().map(|s| s.operator.clone()).collect::<Vec<_>>(),
        "store_id" => stores.iter().map(|s| s.store_id as u32).collect::<Vec<_>>(),
        "store_index" => stores.iter().map(|s| s.store_index as u32).collect::<Vec<_>>(),
        "keys" => stores.iter().map(|s| s.keys.join(", ")).collect::<Vec<_>>(),
        "state_schema" => stores.iter().map(|s| s.state_schema.join(", ")).collect::<Vec<_>>(),
        "num_partitions" => vec![partitions; n],
        "min_batch_id" => vec![min; n],
        "max_batch_id" => vec![max; n],
    )?)
}

/// Reads one store's state at rest (see the [module docs](self)).
#[must_use]
pub struct StateReader {
    dir: PathBuf,
    operator: usize,
    store: usize,
    batch: Option<BatchId>,
    changes: Option<(BatchId, BatchId)>,
    query: Option<Arc<LogicalPlan>>,
}

impl StateReader {
    pub(crate) fn new(dir: PathBuf, changes: Option<(BatchId, BatchId)>) -> Self {
        StateReader { dir, operator: 0, store: 0, batch: None, changes, query: None }
    }
    /// The stateful operator, in plan order (default 0).
    pub fn operator(mut self, id: usize) -> Self {
        self.operator = id;
        self
    }
    /// The store of the operator: a join's 0 (left, default) or 1 (right).
    pub fn store(mut self, index: usize) -> Self {
        self.store = index;
        self
    }
    /// The state as committed after batch `n` (default: the last committed batch).
    pub fn batch(mut self, n: BatchId) -> Self {
        self.batch = Some(n);
        self
    }
    /// The query that wrote the checkpoint: its plan gives the state's exact schema and
    /// turns an aggregation's partials into its results.
    pub fn query(mut self, df: &StreamingDataFrame) -> Self {
        self.query = Some(df.plan().clone());
        self
    }

    /// Reads the state (or, for [`read_state_changes`](crate::EngineSession::read_state_changes),
    /// the change feed).
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] for an operator, store or batch the checkpoint does
    /// not have; [`SluiceError::Checkpoint`] for a missing or corrupt state file.
    pub fn load(self) -> Result<DataFrame> {
        let ckpt = open_checkpoint(&self.dir)?;
        let (store, finalize) = self.resolve(&ckpt)?;
        let last = ckpt.commits().latest()?.map(|(b, _)| b);
        let committed = |b: BatchId| -> Result<()> {
            match last {
                Some(l) if b <= l => Ok(()),
                _ => Err(SluiceError::InvalidArgument(format!(
                    "batch {b} is not committed in {} (last committed: {last:?})",
                    self.dir.display()
                ))),
            }
        };
        if let Some((from, to)) = self.changes {
            committed(to)?;
            let mut frames = Vec::new();
            for b in from..=to {
                for p in 0..store.partitions {
                    let Some(delta) = store.read_delta(&ckpt, p, b + 1)? else { continue };
                    let deleted = delta.column(DELETED_COLUMN)?.bool()?.clone();
                    let kind: StringChunked =
                        deleted.iter().map(|d| Some(if d.unwrap_or(false) { "delete" } else { "update" })).collect();
                    let mut rows = delta.drop(DELETED_COLUMN)?;
                    let h = rows.height();
                    rows.insert_column(0, Column::new_scalar("partition_id".into(), Scalar::from(p as u32), h))?;
                    rows.insert_column(0, kind.with_name("change_type".into()).into_column())?;
                    rows.insert_column(0, Column::new_scalar("batch_id".into(), Scalar::from(b), h))?;
                    frames.push(rows.lazy());
                }
            }
            if frames.is_empty() {
                let mut empty = store.empty();
                empty.insert_column(0, Column::new_empty("partition_id".into(), &DataType::UInt32))?;
                empty.insert_column(0, Column::new_empty("change_type".into(), &DataType::String))?;
                empty.insert_column(0, Column::new_empty("batch_id".into(), &DataType::UInt64))?;
                return Ok(empty);
            }
            return Ok(concat(frames, UnionArgs { to_supertypes: true, ..Default::default() })?.collect()?);
        }
        let batch = match self.batch {
            Some(b) => {
                committed(b)?;
                b
            }
            None => last.ok_or_else(|| {
                SluiceError::InvalidArgument(format!("{} has no committed batch", self.dir.display()))
            })?,
        };
        let parts = store.load_partitions(&ckpt, batch + 1)?;
        let mut frames = Vec::new();
        for (p, part) in parts.into_iter().enumerate() {
            let mut part = super::view::show(&part, &store.key_columns, finalize.as_ref())?;
            let h = part.height();
            part.insert_column(0, Column::new_scalar("partition_id".into(), Scalar::from(p as u32), h))?;
            frames.push(part.lazy());
        }
        Ok(concat(frames, UnionArgs { to_supertypes: true, ..Default::default() })?.collect()?)
    }

    /// The store to read, and the planned operator when the query was given and shows
    /// results.
    fn resolve(&self, ckpt: &Checkpoint) -> Result<(StateStore, Option<super::StateFinalizer>)> {
        let partitions = partitions_of(ckpt)?;
        let stores = stores(ckpt)?;
        let info = stores
            .iter()
            .find(|s| s.operator_id == self.operator && s.store_index == self.store)
            .ok_or_else(|| {
                SluiceError::InvalidArgument(format!(
                    "{} has no state store {} of operator {} (it has {} stores: see read_state_metadata)",
                    self.dir.display(),
                    self.store,
                    self.operator,
                    stores.len()
                ))
            })?;
        if let Some(plan) = &self.query {
            let (mut physical, _) = PhysicalPlan::plan_unchecked(plan, OutputMode::Append, partitions, None)?;
            if physical.operators.len() > self.operator {
                let op = physical.operators.swap_remove(self.operator);
                let mut store = op.states().get(self.store).map(|s| s.store().clone()).ok_or_else(|| {
                    SluiceError::InvalidArgument(format!("operator {} has no store {}", self.operator, self.store))
                })?;
                store.partitions = partitions;
                return Ok((store, op.state_finalizer()));
            }
        }
        Ok((self.inferred_store(ckpt, info, partitions)?, None))
    }

    /// A store whose schema comes from its first state file (the checkpoint records its
    /// schema as text only).
    fn inferred_store(&self, ckpt: &Checkpoint, info: &StoreInfo, partitions: usize) -> Result<StateStore> {
        let mut store = StateStore {
            store_id: info.store_id,
            partitions,
            key_columns: info.keys.clone(),
            schema: Arc::new(Schema::default()),
            snapshot_interval: DEFAULT_SNAPSHOT_INTERVAL,
        };
        for p in 0..partitions {
            let dir = ckpt.paths().state_dir(info.store_id, p);
            let file = ckpt.list_names(&dir)?.into_iter().find(|n| n.ends_with(".delta") || n.ends_with(".snapshot"));
            if let Some(name) = file {
                let path = dir.clone().join(name.as_str());
                if let Some(data) = ckpt.get(&path)? {
                    let df = store.decode(ckpt, &path, data)?;
                    let mut schema = df.schema().as_ref().clone();
                    schema.shift_remove(DELETED_COLUMN);
                    store.schema = Arc::new(schema);
                    return Ok(store);
                }
            }
        }
        // nothing written yet: the recorded column names
        store.schema = Arc::new(
            info.state_schema
                .iter()
                .map(|c| Field::new(c.split(':').next().unwrap_or(c).trim().into(), DataType::Null))
                .collect(),
        );
        Ok(store)
    }
}
