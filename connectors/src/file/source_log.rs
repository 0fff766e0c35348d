//! The file source's log, `sources/<i>/<k>`: which files each offset took.
//!
//! ```text
//!  sources/<i>/<k>   {"files": [{"path": "/abs/in/a.json", "timestamp": <mtime ms>}, ...]}
//!  offset            {"logOffset": k}: entries 1..=k are in the batches so far
//! ```
//!
//! # Why a source log
//! The files a batch takes are decided once, when the batch is planned, and written to
//! the source log before the engine writes `offsets/N`. A restart rebuilds the set of
//! files already taken from that log, so it neither skips nor repeats a file; a batch
//! planned before a crash is replayed with exactly its logged files, and a log entry
//! written just before a crash (no `offsets/N` yet) is reused as is, never re-planned.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use sluice_checkpoint::{BatchLog, CheckpointError};
use sluice_engine::{Offset, Result, SluiceError, SourceContext};

/// One file taken by a batch, as logged (Spark's `FileEntry`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LoggedFile {
    /// Absolute path.
    pub path: String,
    /// Modification time, ms since the epoch.
    pub timestamp: i64,
}

/// A source-log entry: the files of one offset, in reading order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SourceLogEntry {
    files: Vec<LoggedFile>,
}

/// The offset `{"logOffset": id}`.
pub(crate) fn log_offset(id: u64) -> Offset {
    serde_json::json!({ "logOffset": id })
}

/// The source log as one query run knows it: every file taken, and the entries not yet
/// committed.
#[derive(Debug, Default)]
pub(crate) struct SourceLog {
    loaded: bool,
    /// Paths of every file in the log.
    pub seen: HashSet<String>,
    /// Entries not yet committed (cache of the log).
    entries: BTreeMap<u64, Vec<LoggedFile>>,
    /// The id of the latest entry.
    pub latest_id: Option<u64>,
}

fn parse_entry(
    log: &BatchLog<'_, serde_json::Value>,
    ctx: SourceContext<'_>,
    id: u64,
    value: serde_json::Value,
) -> Result<Vec<LoggedFile>> {
    serde_json::from_value::<SourceLogEntry>(value).map(|e| e.files).map_err(|e| {
        SluiceError::Checkpoint(CheckpointError::Corrupt {
            path: ctx.checkpoint.display_path(&log.path(id)),
            reason: format!("not a file source log entry: {e}"),
        })
    })
}

impl SourceLog {
    /// Rebuilds the set of files taken from the whole log.
    ///
    /// # Errors
    /// [`SluiceError::Checkpoint`] naming an entry that is not a file source log entry,
    /// or (`Missing`) the first entry missing below the last one.
    pub fn load(&mut self, ctx: SourceContext<'_>) -> Result<()> {
        let log = ctx.checkpoint.log::<serde_json::Value>(ctx.log_name());
        *self = Self::default();
        // The log is never purged and starts at 1: a missing entry (the first one
        // included) is named, not skipped, so no file is ever taken twice.
        for (id, value) in log.entries(1..)? {
            let files = parse_entry(&log, ctx, id, value)?;
            self.seen.extend(files.iter().map(|f| f.path.clone()));
            self.entries.insert(id, files);
            self.latest_id = Some(id);
        }
        self.loaded = true;
        Ok(())
    }

    /// Loads the log unless it is loaded.
    pub fn ensure_loaded(&mut self, ctx: SourceContext<'_>) -> Result<()> {
        if self.loaded { Ok(()) } else { self.load(ctx) }
    }

    /// The number of entries cached (not yet committed).
    pub fn cached(&self) -> usize {
        self.entries.len()
    }

    /// The files of entry `id`.
    pub fn files_of(&self, ctx: SourceContext<'_>, id: u64) -> Result<Vec<LoggedFile>> {
        if let Some(files) = self.entries.get(&id) {
            return Ok(files.clone());
        }
        let log = ctx.checkpoint.log::<serde_json::Value>(ctx.log_name());
        parse_entry(&log, ctx, id, log.require(id)?)
    }

    /// Writes entry `id` (create-only) and records its files as taken.
    pub fn add(&mut self, ctx: SourceContext<'_>, id: u64, files: Vec<LoggedFile>) -> Result<()> {
        let entry = SourceLogEntry { files };
        let value = serde_json::to_value(&entry)
            .map_err(|e| SluiceError::Internal(format!("file source log entry does not serialize: {e}")))?;
        ctx.checkpoint.log::<serde_json::Value>(ctx.log_name()).add(id, &value)?;
        self.seen.extend(entry.files.iter().map(|f| f.path.clone()));
        self.entries.insert(id, entry.files);
        self.latest_id = Some(id);
        Ok(())
    }

    /// Forgets the cached entries up to `id` (committed).
    pub fn commit(&mut self, id: u64) {
        self.entries.retain(|e, _| *e > id);
    }
}
