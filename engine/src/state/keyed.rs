//! [`KeyedState`]: one operator's keyed state: its [`StateStore`] in the checkpoint, the
//! state rows in memory (one Polars frame) and the delta of the batch being processed.
//!
//! Every stateful operator holds one (a join holds one per side) and follows the same
//! protocol, driven by the engine through [`StatefulOperator`](crate::operators::StatefulOperator):
//!
//! ```text
//! restore(ckpt, V)          frame = state version V (snapshot + deltas)
//! process batch N:          new frame and its delta (upserts, deleted keys) -> set(frame, delta)
//! commit(ckpt, N + 1)       delta files of the partitions it touches (+ snapshot when due)
//! purge(ckpt, keep_from)    files no version >= keep_from needs
//! ```

use polars::prelude::*;
use sluice_checkpoint::Checkpoint;

use super::{delta_of, StateStore};
use crate::Result;

/// The state of one store (see the module docs).
#[derive(Debug, Clone)]
pub struct KeyedState {
    store: StateStore,
    frame: DataFrame,
    pending: Option<DataFrame>,
}

impl KeyedState {
    /// Empty state in `store`.
    pub fn new(store: StateStore) -> Self {
        let frame = store.empty();
        KeyedState { store, frame, pending: None }
    }

    /// The store (id, partitions, key columns, schema).
    pub fn store(&self) -> &StateStore {
        &self.store
    }

    /// The state rows (keys, then values), as of the last [`set`](Self::set) or restore.
    pub fn frame(&self) -> &DataFrame {
        &self.frame
    }

    /// An empty frame of the state's schema.
    pub fn empty(&self) -> DataFrame {
        self.store.empty()
    }

    /// Loads state version `version` from the checkpoint; forgets any pending delta.
    ///
    /// # Errors
    /// [`crate::SluiceError::Checkpoint`] naming a missing or corrupt state file.
    pub fn restore(&mut self, ckpt: &Checkpoint, version: u64) -> Result<()> {
        self.frame = self.store.load(ckpt, version)?;
        self.pending = None;
        Ok(())
    }

    /// Replaces the state after a batch: the new `frame`, with `upserts` (rows written)
    /// and `removed` (rows whose keys left state) as the batch's delta.
    ///
    /// # Errors
    /// [`crate::SluiceError::Polars`] when the frames' schemas differ from the state's.
    pub fn set(&mut self, frame: DataFrame, upserts: &DataFrame, removed: &[&DataFrame]) -> Result<()> {
        self.pending = Some(delta_of(upserts, removed)?);
        self.frame = frame;
        Ok(())
    }

    /// As [`set`](Self::set) with a ready delta frame (state schema plus
    /// [`DELETED_COLUMN`](super::DELETED_COLUMN)).
    pub fn set_with_delta(&mut self, frame: DataFrame, delta: DataFrame) {
        self.pending = Some(delta);
        self.frame = frame;
    }

    /// Writes the pending delta (nothing when the batch changed nothing) as `version`,
    /// with a snapshot when due. Returns the store id and the partitions that got a delta
    /// file: the commit log's entry for this store.
    ///
    /// # Errors
    /// [`crate::SluiceError::Checkpoint`] when a file cannot be written.
    pub fn commit(&mut self, ckpt: &Checkpoint, version: u64) -> Result<(usize, Vec<usize>)> {
        let delta = self.pending.take().unwrap_or_else(|| self.store.empty());
        Ok((self.store.store_id, self.store.commit(ckpt, version, &delta, &self.frame)?))
    }

    /// Deletes the files no version `>= keep_from_version` needs.
    ///
    /// # Errors
    /// [`crate::SluiceError::Checkpoint`] when listing or deleting fails.
    pub fn purge(&self, ckpt: &Checkpoint, keep_from_version: u64) -> Result<()> {
        self.store.purge(ckpt, keep_from_version)
    }
}
