//! The state store: versioned, columnar operator state, hash-partitioned into a fixed
//! number of partitions in the checkpoint.
//!
//! An operator keeps its state in memory as one Polars data frame (key columns, then value
//! columns) and merges each batch into it with vectorized group-bys and joins. At commit,
//! the batch's changes (a *delta*: upserted rows, and removed keys flagged `__deleted`) are
//! split by `hash(key) mod partitions` and written as Arrow IPC files,
//! `state/<store>/<partition>/<version>.delta`; every `snapshot_interval` versions each
//! partition also gets a full `<version>.snapshot`. Version `V` is the state after batch
//! `V - 1` (version 0 is empty), as in Spark.
//!
//! Which partitions a version wrote is recorded in `commits/<V-1>`, so a lost delta is
//! reported by name instead of silently read as "no change".

use std::io::Cursor;

use polars::prelude::*;
use sluice_checkpoint::{Checkpoint, CheckpointError, StateFileKind};

use crate::interop::{df_to_record_batch, record_batch_to_df};
use crate::{Result, SluiceError};

/// The fixed seed of the hashes kept in state (the partitioning hash, sketches): a key
/// must hash the same in every run, or deltas and snapshots would disagree.
pub(crate) fn seeded_state() -> PlSeedableRandomStateQuality {
    PlSeedableRandomStateQuality::seed_from_u64(0x51_u64 << 32 | 0xce)
}

/// The name of the flag column of delta files: `true` for a removed key.
pub const DELETED_COLUMN: &str = "__deleted";

/// A delta frame: `upserts` (state rows written by the batch), then every frame of
/// `removed` (state rows whose keys leave state), each with [`DELETED_COLUMN`] set
/// accordingly. All frames have the state schema.
///
/// # Errors
/// [`SluiceError::Polars`] when the frames' schemas differ.
pub fn delta_of(upserts: &DataFrame, removed: &[&DataFrame]) -> Result<DataFrame> {
    let flag = |df: &DataFrame, deleted: bool| -> Result<DataFrame> {
        let mut df = df.clone();
        df.with_column(Column::new_scalar(DELETED_COLUMN.into(), Scalar::from(deleted), df.height()))?;
        Ok(df)
    };
    let mut delta = flag(upserts, false)?;
    for r in removed {
        delta.vstack_mut_owned(flag(r, true)?)?;
    }
    Ok(delta)
}

/// Default number of state partitions (pinned at a query's first batch as
/// `sluice.state.partitions`; Spark's `spark.sql.shuffle.partitions`).
pub const DEFAULT_STATE_PARTITIONS: usize = 4;

/// Default number of versions between snapshots.
pub const DEFAULT_SNAPSHOT_INTERVAL: u64 = 10;

/// Persists one operator's state (see the module docs).
#[derive(Debug, Clone)]
pub struct StateStore {
    /// The store's id in the plan (its folder `state/<store>`); a join owns two stores.
    pub store_id: usize,
    /// Number of partitions, fixed for the checkpoint's life.
    pub partitions: usize,
    /// Columns forming the key.
    pub key_columns: Vec<String>,
    /// The schema of the state rows (keys then values).
    pub schema: SchemaRef,
    /// Versions between snapshots.
    pub snapshot_interval: u64,
}

fn corrupt(ckpt: &Checkpoint, path: &object_store::path::Path, reason: String) -> SluiceError {
    SluiceError::Checkpoint(CheckpointError::Corrupt { path: ckpt.display_path(path), reason })
}

/// Copies string and binary *view* columns into fresh buffers holding only their own
/// values. Polars' views after a filter or gather still point into the whole input's
/// buffers, which the IPC writer would otherwise write out in full for every delta.
fn compact_views(batch: arrow::array::RecordBatch) -> Result<arrow::array::RecordBatch> {
    use arrow::array::{Array, ArrayRef, BinaryViewArray, StringViewArray};
    use arrow::datatypes::DataType as A;
    let mut changed = false;
    let cols: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| match c.data_type() {
            A::Utf8View => {
                changed = true;
                c.as_any().downcast_ref::<StringViewArray>().map_or_else(|| c.clone(), |a| std::sync::Arc::new(a.gc()) as ArrayRef)
            }
            A::BinaryView => {
                changed = true;
                c.as_any().downcast_ref::<BinaryViewArray>().map_or_else(|| c.clone(), |a| std::sync::Arc::new(a.gc()) as ArrayRef)
            }
            _ => c.clone(),
        })
        .collect();
    if !changed {
        return Ok(batch);
    }
    Ok(arrow::array::RecordBatch::try_new_with_options(
        batch.schema(),
        cols,
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )?)
}

impl StateStore {
    /// An empty state frame of this store's schema.
    pub fn empty(&self) -> DataFrame {
        DataFrame::empty_with_schema(&self.schema)
    }

    /// Partition id of each row of `df` (which holds at least the key columns).
    ///
    /// # Errors
    /// [`SluiceError::Polars`] if a key column is missing.
    pub fn partition_ids(&self, df: &DataFrame) -> Result<Vec<usize>> {
        let mut cols: Vec<Column> = Vec::new();
        for k in &self.key_columns {
            let c = df.column(k)?;
            if let DataType::Struct(_) = c.dtype() {
                let s = c.as_materialized_series().struct_()?;
                cols.extend(s.fields_as_series().into_iter().map(Column::from));
            } else {
                cols.push(c.clone());
            }
        }
        if cols.is_empty() {
            return Ok(vec![0; df.height()]);
        }
        let mut keys = DataFrame::new(df.height(), cols)?;
        let hashes = keys.hash_rows(Some(seeded_state()))?;
        let p = self.partitions as u64;
        Ok(hashes.into_no_null_iter().map(|h| (h % p) as usize).collect())
    }

    fn encode(&self, df: &DataFrame) -> Result<bytes::Bytes> {
        let batch = compact_views(df_to_record_batch(df)?)?;
        let mut buf = Vec::new();
        {
            let mut w = arrow::ipc::writer::FileWriter::try_new(&mut buf, &batch.schema())?;
            w.write(&batch)?;
            w.finish()?;
        }
        Ok(bytes::Bytes::from(buf))
    }

    pub(crate) fn decode(&self, ckpt: &Checkpoint, path: &object_store::path::Path, data: bytes::Bytes) -> Result<DataFrame> {
        if data.is_empty() {
            return Err(corrupt(ckpt, path, "the file is empty (torn write?)".into()));
        }
        let reader = arrow::ipc::reader::FileReader::try_new(Cursor::new(data), None)
            .map_err(|e| corrupt(ckpt, path, format!("not a readable Arrow IPC file: {e}")))?;
        let mut out: Option<DataFrame> = None;
        for b in reader {
            let b = b.map_err(|e| corrupt(ckpt, path, format!("bad Arrow IPC batch: {e}")))?;
            let df = record_batch_to_df(&b)?;
            match &mut out {
                None => out = Some(df),
                Some(acc) => {
                    acc.vstack_mut_owned(df)?;
                }
            }
        }
        out.ok_or_else(|| corrupt(ckpt, path, "no record batch in the file".into()))
    }

    /// Writes the delta of `version` (rows of `delta`: the state schema plus
    /// [`DELETED_COLUMN`]) for the partitions it touches, and a snapshot of `full` when the
    /// version is a snapshot version. Returns the partitions that got a delta file.
    ///
    /// # Errors
    /// [`SluiceError::Checkpoint`] when a file cannot be written.
    pub fn commit(&self, ckpt: &Checkpoint, version: u64, delta: &DataFrame, full: &DataFrame) -> Result<Vec<usize>> {
        let mut written = Vec::new();
        if delta.height() > 0 {
            let pids = self.partition_ids(delta)?;
            for p in 0..self.partitions {
                let mask: BooleanChunked = pids.iter().map(|&x| x == p).collect();
                let part = delta.filter(&mask)?;
                if part.height() == 0 {
                    continue;
                }
                let path = ckpt.paths().state_file(self.store_id, p, version, StateFileKind::Delta);
                ckpt.put(&path, self.encode(&part)?, false)?;
                written.push(p);
            }
        }
        if self.snapshot_interval > 0 && version.is_multiple_of(self.snapshot_interval) {
            let pids = self.partition_ids(full)?;
            for p in 0..self.partitions {
                let mask: BooleanChunked = pids.iter().map(|&x| x == p).collect();
                let part = full.filter(&mask)?;
                let path = ckpt.paths().state_file(self.store_id, p, version, StateFileKind::Snapshot);
                ckpt.put(&path, self.encode(&part)?, false)?;
            }
        }
        Ok(written)
    }

    /// Applies a delta to a state frame: removes the delta's keys, then appends its
    /// non-deleted rows.
    pub fn apply_delta(&self, state: DataFrame, delta: &DataFrame) -> Result<DataFrame> {
        if delta.height() == 0 {
            return Ok(state);
        }
        let keys: Vec<Expr> = self.key_columns.iter().map(|k| col(k.as_str())).collect();
        let upserts = delta
            .clone()
            .lazy()
            .filter(col(DELETED_COLUMN).not())
            .drop(by_name([DELETED_COLUMN], true, false));
        let mut args = JoinArgs::new(JoinType::Anti);
        args.nulls_equal = true;
        let kept = state.lazy().join(delta.clone().lazy().select(keys.clone()), keys.clone(), keys, args);
        Ok(concat([kept, upserts], UnionArgs::default())?.collect()?)
    }

    /// Loads the state at `version` (0 is empty): per partition, the latest snapshot at or
    /// before it, then the deltas after it, as listed in the commit log.
    ///
    /// # Errors
    /// [`SluiceError::Checkpoint`] naming a delta that the commit log lists but that is
    /// missing, or a file that is empty or unreadable.
    pub fn load(&self, ckpt: &Checkpoint, version: u64) -> Result<DataFrame> {
        if version == 0 {
            return Ok(self.empty());
        }
        let parts: Vec<LazyFrame> = self.load_partitions(ckpt, version)?.into_iter().map(|p| p.lazy()).collect();
        let mut out = concat(parts, UnionArgs::default())?.collect()?;
        out.rechunk_mut_par();
        // Restore the declared column types (an empty IPC file round-trips them too, but
        // be strict about order).
        let names: Vec<PlSmallStr> = self.schema.iter_names().cloned().collect();
        Ok(out.select(names)?)
    }

    /// Reads the delta file of `version` in `partition`, if the commit log lists one
    /// (`None`: the version changed nothing there).
    ///
    /// # Errors
    /// [`SluiceError::Checkpoint`] for a listed file that is missing or unreadable.
    pub fn read_delta(&self, ckpt: &Checkpoint, partition: usize, version: u64) -> Result<Option<DataFrame>> {
        if version == 0 {
            return Ok(None);
        }
        let commit = ckpt.commits().require(version - 1)?;
        if !commit.state_deltas.get(self.store_id).is_some_and(|l| l.contains(&partition)) {
            return Ok(None);
        }
        let path = ckpt.paths().state_file(self.store_id, partition, version, StateFileKind::Delta);
        let data = ckpt.get(&path)?.ok_or_else(|| {
            SluiceError::Checkpoint(CheckpointError::Missing {
                path: ckpt.display_path(&path),
                reason: format!("commits/{} lists a state delta for partition {partition}", version - 1),
            })
        })?;
        Ok(Some(self.decode(ckpt, &path, data)?))
    }

    /// The state at `version`, one frame per partition (see [`load`](Self::load)).
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn load_partitions(&self, ckpt: &Checkpoint, version: u64) -> Result<Vec<DataFrame>> {
        if version == 0 {
            return Ok(vec![self.empty(); self.partitions]);
        }
        let mut parts = Vec::with_capacity(self.partitions);
        let mut delta_lists: std::collections::HashMap<u64, Vec<usize>> = Default::default();
        for p in 0..self.partitions {
            let dir = ckpt.paths().state_dir(self.store_id, p);
            let mut snapshot = 0u64;
            for name in ckpt.list_names(&dir)? {
                if let Some(v) = name.strip_suffix(".snapshot").and_then(|v| v.parse::<u64>().ok()) {
                    if v <= version && v > snapshot {
                        snapshot = v;
                    }
                }
            }
            let mut state = if snapshot == 0 {
                self.empty()
            } else {
                let path = ckpt.paths().state_file(self.store_id, p, snapshot, StateFileKind::Snapshot);
                let data = ckpt.get(&path)?.ok_or_else(|| corrupt(ckpt, &path, "listed but unreadable".into()))?;
                self.decode(ckpt, &path, data)?
            };
            for v in snapshot + 1..=version {
                let list = match delta_lists.get(&v) {
                    Some(l) => l.clone(),
                    None => {
                        let commit = ckpt.commits().require(v - 1)?;
                        let l = commit.state_deltas.get(self.store_id).cloned().unwrap_or_default();
                        delta_lists.insert(v, l.clone());
                        l
                    }
                };
                if !list.contains(&p) {
                    continue;
                }
                let path = ckpt.paths().state_file(self.store_id, p, v, StateFileKind::Delta);
                let data = ckpt.get(&path)?.ok_or_else(|| {
                    SluiceError::Checkpoint(CheckpointError::Missing {
                        path: ckpt.display_path(&path),
                        reason: format!("commits/{} lists a state delta for partition {p}", v - 1),
                    })
                })?;
                let delta = self.decode(ckpt, &path, data)?;
                state = self.apply_delta(state, &delta)?;
            }
            parts.push(state);
        }
        Ok(parts)
    }

    /// Deletes state files no longer needed to load any version `>= keep_from`.
    pub fn purge(&self, ckpt: &Checkpoint, keep_from: u64) -> Result<()> {
        for p in 0..self.partitions {
            let dir = ckpt.paths().state_dir(self.store_id, p);
            let names = ckpt.list_names(&dir)?;
            // the latest snapshot at or before keep_from is still needed
            let base = names
                .iter()
                .filter_map(|n| n.strip_suffix(".snapshot").and_then(|v| v.parse::<u64>().ok()))
                .filter(|v| *v <= keep_from)
                .max();
            let Some(base) = base else { continue };
            for n in names {
                let v = n.split('.').next().and_then(|v| v.parse::<u64>().ok());
                if v.is_some_and(|v| v < base) {
                    ckpt.delete(&dir.clone().join(n.as_str()))?;
                }
            }
        }
        Ok(())
    }
}

/// Checks that the checkpoint's `state/<store>/_metadata` records `description` (the
/// operator and its state layout), writing it when the query starts on a fresh
/// checkpoint (`fresh`). `operator` names the operator in messages.
///
/// # Errors
/// [`SluiceError::Analysis`] when the file is missing on a used checkpoint or records
/// another layout (the query's stateful operators changed: use a new checkpoint
/// location); [`SluiceError::Checkpoint`] when it is unreadable.
pub fn check_layout(
    ckpt: &Checkpoint,
    store_id: usize,
    description: &serde_json::Value,
    operator: &str,
    fresh: bool,
) -> Result<()> {
    let path = ckpt.paths().state_metadata(store_id);
    match ckpt.get(&path)? {
        None if fresh => {
            let text = serde_json::to_string(description).map_err(|e| SluiceError::Internal(e.to_string()))?;
            ckpt.put(&path, bytes::Bytes::from(text + "\n"), false)?;
            Ok(())
        }
        None => Err(SluiceError::analysis(format!(
            "the query's stateful operators changed: {} is missing, so state store {store_id} ({operator}) \
             did not exist when this checkpoint was written; use a new checkpoint location",
            ckpt.display_path(&path),
        ))),
        Some(have) => {
            let have: serde_json::Value =
                serde_json::from_slice(&have).map_err(|e| corrupt(ckpt, &path, e.to_string()))?;
            if &have != description {
                return Err(SluiceError::analysis(format!(
                    "the query's stateful operators changed: {} records {have} but the query has {description}; \
                     use a new checkpoint location",
                    ckpt.display_path(&path)
                )));
            }
            Ok(())
        }
    }
}
