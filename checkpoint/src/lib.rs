//! # sluice-checkpoint
//!
//! The checkpoint of a Sluice streaming query: the write-ahead offset log, the commit log,
//! source logs and state-store files, stored on any [`object_store::ObjectStore`] (a local
//! directory by default, [`object_store::memory::InMemory`] in tests).
//!
//! ```text
//! <ckpt>/metadata                            {"id": <uuid>}
//! <ckpt>/runs/<k>                            {"runId", "startedAt", "host", "pid"}: the k-th run's claim
//! <ckpt>/offsets/<N>                         v1 / batch metadata JSON / one offset JSON per source
//! <ckpt>/commits/<N>                         v1 / {"next_batch_watermark_ms": ...}
//! <ckpt>/sources/<i>/<N>                     v1 / source log entry of batch N (e.g. files taken)
//! <ckpt>/state/<op>/_metadata                the stateful operator's kind and schema
//! <ckpt>/state/<op>/<partition>/<V>.delta    Arrow IPC: upserted rows and removed keys of version V
//! <ckpt>/state/<op>/<partition>/<V>.snapshot Arrow IPC: all rows of version V
//! ```
//!
//! ## Every file is sealed
//! Every object written through [`Checkpoint::put`] (so every file above, text or Arrow)
//! is its payload followed by a trailer line `#sluice crc32=<8 hex> len=<bytes>\n` (see
//! [`checksum`]). [`Checkpoint::get`] verifies and strips it, so callers only ever see the
//! payload they wrote. A file that is empty, lacks the trailer, has a garbled trailer, or
//! whose length or CRC-32 disagrees with it is [`CheckpointError::Corrupt`] naming the file
//! and saying why; a log entry that is intact but lacks its `v1` header or does not parse
//! is `Corrupt` too. No byte of any file makes a read panic or return another value than
//! the one written. Sluice never guesses past a damaged checkpoint. (Files written by a
//! Sluice without trailers are reported as `Corrupt`: use a new checkpoint location.)
//!
//! ## Protocol
//! A batch `N` is *planned* when `offsets/N` exists and *done* when `commits/N` exists.
//! Both logs are create-only: writing an entry that already exists with the same content is
//! a no-op (a replay), with different content it is [`CheckpointError::Conflict`] (another
//! query owns the checkpoint). [`recovery_plan`] is the pure decision of what to do at
//! start, given the two logs' listings.
//!
//! Every file is written whole (object_store writes a temporary object and renames it) and,
//! on a local directory, fsynced with its parent directory before the call returns, so a
//! file either exists complete or not at all.
//!
//! ## Ownership: one writing run per checkpoint
//! A run (one start of a query) claims the checkpoint with [`Checkpoint::claim`] before it
//! writes: it creates `runs/<k>`, `k` one above the newest claim, create-only. Losing that
//! race means another run claimed the checkpoint at the same moment:
//! [`CheckpointError::NotOwner`] naming it. From then on, every write through this
//! `Checkpoint` ([`put`](Checkpoint::put), [`delete`](Checkpoint::delete),
//! [`BatchLog::add`], [`BatchLog::purge_before`]) first checks that `runs/<k+1>` does not
//! exist and `runs/<k>` still does (two small requests, a GET and a HEAD; an open and a
//! stat on a local disk; the second one is what catches a run whose own claim was purged
//! because it slept through more than [`KEEP_RUN_CLAIMS`] newer claims), and
//! fails with `NotOwner`, naming the run that took over and when, if a newer run claimed the
//! checkpoint. The engine calls [`Checkpoint::ensure_owner`] before it hands a batch to the
//! sink, whose files are outside the checkpoint. The newest claim wins: a run started on a
//! checkpoint that another process still uses takes it over, and the older run stops at
//! its next write (as Spark's `stopActiveRunOnRestart`). Only the newest
//! [`KEEP_RUN_CLAIMS`] claims are kept.
//!
//! **The window.** Check-then-write is not a fence: a run that passed the check and is then
//! paused (SIGSTOP, a long GC-like stall, a slow network) before its write lands can still
//! complete that one write after a newer run claimed the checkpoint. Object stores offer no
//! conditional write on another object, so no client-side protocol can close this window;
//! it is bounded to the one write in flight per writing thread (the next write checks
//! again and fails). That is enough here because the writes that decide what a batch is are
//! create-only: a stale `offsets/N` or `commits/N` that differs from the new owner's is
//! refused ([`CheckpointError::Conflict`]) whichever lands second, and an overwritten state
//! file holds the state of the same version computed from the same logged offsets (a
//! deterministic query). The one visible leftover possible is a single stale log entry
//! re-created below the purge horizon: the next purge deletes it, and a start before that
//! reports a gap just above it (delete the stray, lowest, entry). A `Checkpoint` that
//! never called `claim` (tests using the raw API) does not check ownership.
//!
//! ## Temporary files
//! object_store's local store writes `<name>#<n>` and renames it; a killed process leaves
//! such files behind (`offsets/7#1`). No listing of this crate ever returns one (nor a
//! hidden `.name`, in a batch log), so nothing reads them, and [`Checkpoint::claim`]
//! deletes those of a local checkpoint: a claiming run is the only writer from then on.
//!
//! ## Gaps and the purge horizon
//! Log entries are purged in ascending order ([`BatchLog::purge_before`]), the offset log
//! before the commit log ([`Checkpoint::purge_logs_before`]). So, even after a crash in the
//! middle of a purge:
//! 1. the entries of a log are contiguous from its first present entry (its *horizon*) to
//!    its last: a hole is damage, [`BatchLog::batch_ids`] fails with
//!    [`CheckpointError::Missing`] naming the first missing entry;
//! 2. the commit log never starts after the offset log: if it does, [`Checkpoint::recovery`]
//!    fails with `Missing` naming `commits/<first offset>`;
//! 3. entries below the horizon of both logs are taken as purged: they are indistinguishable
//!    from deleted ones, and recovery needs only the latest entries (the state store
//!    requires, and names, any commit entry it reads).
//!
//! A log that is never purged (a source log) has a horizon its owner knows (the file
//! source's first entry is 1): [`BatchLog::entries`] and [`BatchLog::require_range`] with
//! that first id report a missing first entry, which a listing alone cannot see.
//!
//! [`CheckpointPaths`] builds every object name, so all readers and writers agree on them.

use std::ops::{Bound, RangeBounds};
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub mod checksum;
pub mod store;

/// A micro-batch id: 0 for the first batch a query runs, then 1, 2, ... (Spark's `batchId`).
pub type BatchId = u64;

/// The version header of every log file Sluice writes.
pub const LOG_VERSION_HEADER: &str = "v1";

/// How many run claims `runs/<k>` [`Checkpoint::claim`] keeps: the newest 5 (older ones
/// are deleted when a run claims).
pub const KEEP_RUN_CLAIMS: u64 = 5;

/// Errors of the checkpoint layer. Each names the object it concerns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// A checkpoint file exists but is empty, torn or damaged (its checksum trailer is
    /// missing, garbled, or disagrees with its content), lacks its header or does not parse.
    /// `path` is the file (a full local path where there is one), `reason` says why.
    #[error("checkpoint file {path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
    /// A file the checkpoint protocol requires is missing: `path` is the first missing one.
    #[error("checkpoint file {path} is missing: {reason}")]
    Missing { path: String, reason: String },
    /// A create-only log entry exists with other content: another query wrote this batch.
    #[error(
        "checkpoint file {path} already exists with different content: another query is \
         writing to this checkpoint, or the query was changed; use a new checkpoint location"
    )]
    Conflict { path: String },
    /// This `Checkpoint` claimed the checkpoint for run `run_id`, and a newer run has claimed
    /// it since (or claimed it first, when [`Checkpoint::claim`] lost the race): nothing was
    /// written. `path` is what the run was about to write (`its next batch's output` for
    /// [`Checkpoint::ensure_owner`]), `location` the checkpoint, `claimed_by` the newer
    /// run's id and `by` its whole claim (when, host, pid, claim file).
    #[error(
        "checkpoint {location} was taken over by {by}; this run ({run_id}) no longer owns it and did not \
         write {path}. Only one run may use a checkpoint at a time: stop this query (the other run \
         continues it), or stop the other run and restart this query, which claims the checkpoint again"
    )]
    NotOwner { path: String, location: String, run_id: String, claimed_by: String, by: Box<Takeover> },
    /// The object store failed.
    #[error("checkpoint store error on {path}: {source}")]
    Store {
        path: String,
        #[source]
        source: object_store::Error,
    },
    /// Local file-system I/O failed (creating the directory, fsync, removing a temporary).
    #[error("checkpoint I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A location (a checkpoint's, or any path [`store`] opens) or one of its `s3.*`
    /// options is invalid, or needs what this build lacks (the cargo feature `s3`).
    #[error("invalid location {location}: {reason}")]
    InvalidLocation { location: String, reason: String },
    /// The store cannot do what the checkpoint protocol relies on: `location` is the
    /// checkpoint, `reason` says what is missing (create-only writes, found by the probe
    /// of [`Checkpoint::claim`]). Nothing was written.
    #[error("checkpoint {location} cannot be used: {reason}")]
    Unsupported { location: String, reason: String },
}

/// Result of checkpoint operations.
pub type Result<T, E = CheckpointError> = std::result::Result<T, E>;

/// Builds every object name of a checkpoint, relative to its root.
#[derive(Debug, Clone, Default)]
pub struct CheckpointPaths {
    root: Path,
}

impl CheckpointPaths {
    /// Paths under `root` (an object-store prefix; empty for the store's root).
    pub fn new(root: Path) -> Self {
        Self { root }
    }
    fn join(&self, rel: &str) -> Path {
        let mut p = self.root.clone();
        for part in rel.split('/') {
            p = p.join(part);
        }
        p
    }
    /// `metadata`: the query id.
    pub fn metadata(&self) -> Path {
        self.join("metadata")
    }
    /// `runs/`: the run claims.
    pub fn runs_dir(&self) -> Path {
        self.join("runs")
    }
    /// `runs/<k>`: the claim of the `k`-th run (from 0).
    pub fn run_claim(&self, k: u64) -> Path {
        self.join(&format!("runs/{k}"))
    }
    /// Folder of a batch log (`offsets`, `commits`, `sources/<i>`).
    pub fn log_dir(&self, log: &str) -> Path {
        self.join(log)
    }
    /// One entry of a batch log.
    pub fn log_entry(&self, log: &str, batch_id: BatchId) -> Path {
        self.join(&format!("{log}/{batch_id}"))
    }
    /// `state/<op>/_metadata`: a stateful operator's description.
    pub fn state_metadata(&self, op: usize) -> Path {
        self.join(&format!("state/{op}/_metadata"))
    }
    /// `state/<op>/<partition>/`.
    pub fn state_dir(&self, op: usize, partition: usize) -> Path {
        self.join(&format!("state/{op}/{partition}"))
    }
    /// `state/<op>/<partition>/<version>.<kind>`.
    pub fn state_file(&self, op: usize, partition: usize, version: u64, kind: StateFileKind) -> Path {
        self.join(&format!("state/{op}/{partition}/{version}.{}", kind.extension()))
    }
}

/// Whether `name` (a file name, no folder) is a temporary of an interrupted write:
/// `<name>#<digits>` as object_store's local store stages its writes (or `%23<digits>`,
/// the same name percent-encoded in an object path).
pub fn is_temporary_name(name: &str) -> bool {
    let digits_after = |sep: &str| {
        name.rsplit_once(sep)
            .is_some_and(|(_, suffix)| !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()))
    };
    digits_after("#") || digits_after("%23")
}

/// The two kinds of state-store files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StateFileKind {
    /// Rows upserted and keys removed by one version.
    Delta,
    /// All rows of one version.
    Snapshot,
}

impl StateFileKind {
    fn extension(self) -> &'static str {
        match self {
            StateFileKind::Delta => "delta",
            StateFileKind::Snapshot => "snapshot",
        }
    }
}

/// `metadata`: written once, when a query first starts on a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMetadata {
    /// The query's id (Spark's `StreamingQuery.id`), stable across restarts.
    pub id: String,
}

/// A run's claim of a checkpoint, the file `runs/<number>` (see [`Checkpoint::claim`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunClaim {
    /// The claim's number `k` (its file is `runs/<k>`): one above the claim before it.
    #[serde(skip)]
    pub number: u64,
    /// The run's id (Spark's `StreamingQuery.runId`): new at each start.
    #[serde(rename = "runId")]
    pub run_id: String,
    /// When the run claimed the checkpoint, RFC 3339 in UTC with milliseconds.
    #[serde(rename = "startedAt")]
    pub started_at: String,
    /// The host name of the claiming process (`unknown` when it cannot be read).
    pub host: String,
    /// The claiming process's id.
    pub pid: u32,
}

/// The run that took a checkpoint over, in [`CheckpointError::NotOwner`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Takeover {
    /// The newer run's claim.
    pub claim: RunClaim,
    /// Its claim file, for messages (a full local path where there is one).
    pub claim_path: String,
}

impl std::fmt::Display for Takeover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.claim;
        write!(
            f,
            "run {} (host {}, pid {}), which claimed it at {} ({})",
            c.run_id, c.host, c.pid, c.started_at, self.claim_path
        )
    }
}

/// One entry of the offset log, `offsets/N`: the write-ahead record of batch `N`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OffsetSeq {
    /// Batch metadata: watermark, timestamp, pinned configuration.
    pub metadata: OffsetSeqMetadata,
    /// The end offset of each source for this batch, in source order (`None`: the source
    /// has produced nothing yet). Offsets are source-defined JSON.
    pub offsets: Vec<Option<serde_json::Value>>,
}

/// Batch metadata in `offsets/N` (Spark's `OffsetSeqMetadata`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OffsetSeqMetadata {
    /// The event-time watermark batch `N` runs with, ms since the epoch.
    #[serde(rename = "batchWatermarkMs")]
    pub batch_watermark_ms: i64,
    /// The processing time batch `N` runs at, ms since the epoch.
    #[serde(rename = "batchTimestampMs")]
    pub batch_timestamp_ms: i64,
    /// Configuration pinned at the first batch (e.g. `sluice.state.partitions`).
    pub conf: std::collections::BTreeMap<String, String>,
}

/// One entry of the commit log, `commits/N`: batch `N` is done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitMetadata {
    /// The watermark the next batch runs with, ms since the epoch.
    pub next_batch_watermark_ms: i64,
    /// Each watermark operator's own watermark after this batch (ms), in plan order:
    /// restored on restart so that the `min` policy continues exactly where it stopped.
    #[serde(default)]
    pub operator_watermarks_ms: Vec<Option<i64>>,
    /// Per stateful operator (in plan order), the state partitions that wrote a delta file
    /// for this batch's version: a listed file that is missing is corruption.
    #[serde(default)]
    pub state_deltas: Vec<Vec<usize>>,
}

/// What a query does on start, given its logs (see [`recovery_plan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// No batch was ever planned: start with batch 0.
    Fresh,
    /// Batch `0..=last` are committed: continue with `last + 1`.
    Continue { last_committed: BatchId },
    /// Batch `batch_id` was planned but not committed: run it again with its logged offsets.
    Replay { batch_id: BatchId },
}

/// Decides how to resume from the latest offset and commit log entries. Pure logic.
///
/// # Errors
/// [`CheckpointError::Missing`] when the commit log is ahead of the offset log or more than
/// one batch behind it (a gap), naming the missing file.
pub fn recovery_plan(
    paths: &CheckpointPaths,
    latest_offset: Option<BatchId>,
    latest_commit: Option<BatchId>,
) -> Result<Recovery> {
    match (latest_offset, latest_commit) {
        (None, None) => Ok(Recovery::Fresh),
        (None, Some(c)) => Err(CheckpointError::Missing {
            path: paths.log_entry("offsets", c).to_string(),
            reason: format!("commits/{c} exists but the offset log is empty"),
        }),
        (Some(0), None) => Ok(Recovery::Replay { batch_id: 0 }),
        (Some(o), None) => Err(CheckpointError::Missing {
            path: paths.log_entry("commits", o - 1).to_string(),
            reason: format!("offsets/{o} exists but no batch was ever committed"),
        }),
        (Some(o), Some(c)) if c == o => Ok(Recovery::Continue { last_committed: c }),
        (Some(o), Some(c)) if c + 1 == o => Ok(Recovery::Replay { batch_id: o }),
        (Some(o), Some(c)) if c > o => Err(CheckpointError::Missing {
            path: paths.log_entry("offsets", c).to_string(),
            reason: format!("commits/{c} is ahead of the latest offsets/{o}"),
        }),
        (Some(o), Some(c)) => Err(CheckpointError::Missing {
            path: paths.log_entry("commits", c + 1).to_string(),
            reason: format!("offsets/{o} is planned but the last commit is commits/{c}"),
        }),
    }
}

/// The ownership state of one `Checkpoint` value.
#[derive(Debug, Default)]
struct Ownership {
    /// The claim this `Checkpoint` made; `None`: it never claimed (no checks).
    claim: Option<RunClaim>,
    /// The newer claim found by a check: once superseded, always superseded.
    superseded_by: Option<RunClaim>,
}

/// A checkpoint location: an object store, a root prefix, and a small runtime that drives
/// the store's async API from the synchronous trigger loop.
///
/// All methods block. Call them from a plain thread, not from inside a tokio runtime.
pub struct Checkpoint {
    store: Arc<dyn ObjectStore>,
    paths: CheckpointPaths,
    local_root: Option<PathBuf>,
    fsync: bool,
    rt: tokio::runtime::Runtime,
    description: String,
    /// What [`Checkpoint::display_path`] puts before an object path of a store that is
    /// not a local directory (`s3://bucket`; the description for [`Checkpoint::with_store`]).
    url_base: String,
    /// Whether [`Checkpoint::claim`] must first check that the store honours create-only
    /// writes (any store but the local directory and the in-memory one); cleared once it did.
    probe_conditional_put: std::sync::atomic::AtomicBool,
    /// Boxed: keeps `Checkpoint` small (it is moved around in enums by the engine).
    ownership: Mutex<Box<Ownership>>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint").field("location", &self.description).finish()
    }
}

use store::runtime;

/// The host name, for run claims: the kernel's, else `$HOSTNAME`, else `unknown`.
fn host_name() -> String {
    let from_file = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_string());
    from_file("/proc/sys/kernel/hostname")
        .or_else(|| from_file("/etc/hostname"))
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

impl Checkpoint {
    /// A checkpoint in a local directory, created if absent. Files are fsynced.
    ///
    /// # Errors
    /// [`CheckpointError::Io`] when the directory cannot be created.
    pub fn local(dir: impl AsRef<FsPath>) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir)
            .map_err(|source| CheckpointError::Io { path: dir.display().to_string(), source })?;
        let dir = dir
            .canonicalize()
            .map_err(|source| CheckpointError::Io { path: dir.display().to_string(), source })?;
        let store = LocalFileSystem::new_with_prefix(&dir).map_err(|source| {
            CheckpointError::Store { path: dir.display().to_string(), source }
        })?;
        Ok(Self {
            store: Arc::new(store),
            paths: CheckpointPaths::default(),
            local_root: Some(dir.clone()),
            fsync: true,
            rt: runtime()?,
            description: dir.display().to_string(),
            url_base: String::new(),
            probe_conditional_put: false.into(),
            ownership: Mutex::default(),
        })
    }

    /// A checkpoint held in memory (tests; lost when dropped).
    pub fn in_memory() -> Result<Self> {
        let ck = Self::with_store(Arc::new(InMemory::new()), Path::default(), "memory://")?;
        ck.probe_conditional_put.store(false, std::sync::atomic::Ordering::Relaxed);
        Ok(ck)
    }

    /// A checkpoint at `prefix` in any object store (S3, GCS, Azure, ...). Objects are
    /// named `<description>/<object path>` in messages. The store must honour create-only
    /// writes ([`PutMode::Create`]): [`Checkpoint::claim`] checks it once.
    pub fn with_store(store: Arc<dyn ObjectStore>, prefix: Path, description: &str) -> Result<Self> {
        Ok(Self {
            store,
            paths: CheckpointPaths::new(prefix),
            local_root: None,
            fsync: false,
            rt: runtime()?,
            description: description.to_string(),
            url_base: description.trim_end_matches('/').to_string(),
            probe_conditional_put: true.into(),
            ownership: Mutex::default(),
        })
    }

    /// The checkpoint at `location`: a local directory (as [`Checkpoint::local`]), or
    /// `s3://bucket/prefix` (cargo feature `s3`) configured by the AWS environment
    /// variables and `options` (the writer's `s3.*` options; see [`store`]). Objects are
    /// named `s3://bucket/prefix/offsets/3` in messages. The S3 store must honour
    /// create-only writes (`If-None-Match: *`, which AWS S3 has since 2024):
    /// [`Checkpoint::claim`] probes it once and fails with
    /// [`CheckpointError::Unsupported`] where it does not.
    ///
    /// # Errors
    /// [`CheckpointError::InvalidLocation`] for a bad location or option, or `s3://`
    /// without the feature; as [`Checkpoint::local`].
    pub fn open(location: &str, options: &store::StoreOptions) -> Result<Self> {
        match store::Location::parse(location)? {
            store::Location::Local(dir) => Self::local(dir),
            loc @ store::Location::S3 { .. } => {
                let (storage, prefix) = store::Storage::open(&loc, options)?;
                let url = loc.url();
                let mut ck = Self::with_store(storage.store().clone(), prefix, &url)?;
                if let store::Location::S3 { bucket, .. } = &loc {
                    ck.url_base = format!("s3://{bucket}");
                }
                Ok(ck)
            }
        }
    }

    /// Turns fsync of local files on or off (on by default; off trades durability against
    /// power loss for latency, a process crash still loses nothing).
    pub fn set_fsync(&mut self, fsync: bool) {
        self.fsync = fsync;
    }

    /// The paths builder of this checkpoint.
    pub fn paths(&self) -> &CheckpointPaths {
        &self.paths
    }

    /// Where the checkpoint lives, for messages.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// A display name of `path` for error messages: the full local path where there is one.
    pub fn display_path(&self, path: &Path) -> String {
        match &self.local_root {
            Some(root) => root.join(path.as_ref()).display().to_string(),
            None => format!("{}/{}", self.url_base, path),
        }
    }

    fn store_err(&self, path: &Path, source: object_store::Error) -> CheckpointError {
        CheckpointError::Store { path: self.display_path(path), source }
    }

    fn corrupt(&self, path: &Path, reason: impl Into<String>) -> CheckpointError {
        CheckpointError::Corrupt { path: self.display_path(path), reason: reason.into() }
    }

    /// Reads an object and returns its payload: the bytes that [`put`](Self::put) was
    /// given, after verifying and stripping the checksum trailer (see [`checksum`]).
    /// `Ok(None)` when the object does not exist.
    ///
    /// # Errors
    /// [`CheckpointError::Corrupt`] naming the object when it is empty, has no trailer or a
    /// garbled one, or its length or CRC-32 disagree with the trailer;
    /// [`CheckpointError::Store`] on any other store failure.
    pub fn get(&self, path: &Path) -> Result<Option<Bytes>> {
        let Some(object) = self.get_raw(path)? else { return Ok(None) };
        let len = checksum::open(&object).map_err(|reason| self.corrupt(path, reason))?.len();
        Ok(Some(object.slice(..len)))
    }

    fn get_raw(&self, path: &Path) -> Result<Option<Bytes>> {
        let store = self.store.clone();
        let p = path.clone();
        let res = self.rt.block_on(async move {
            match store.get(&p).await {
                Ok(r) => r.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        res.map_err(|e| self.store_err(path, e))
    }

    /// Writes an object whole: `data` followed by its checksum trailer (see [`checksum`];
    /// [`get`](Self::get) returns `data`). With `create_only`, an existing object is left
    /// untouched and `Ok(false)` is returned; otherwise `Ok(true)`.
    ///
    /// # Errors
    /// [`CheckpointError::NotOwner`] (nothing written) when this `Checkpoint` claimed the
    /// checkpoint and a newer run has claimed it since; [`CheckpointError::Store`] on store
    /// failure, [`CheckpointError::Io`] when fsync fails.
    pub fn put(&self, path: &Path, data: Bytes, create_only: bool) -> Result<bool> {
        self.check_owner(&self.display_path(path))?;
        self.put_unchecked(path, data, create_only)
    }

    fn put_unchecked(&self, path: &Path, data: Bytes, create_only: bool) -> Result<bool> {
        let store = self.store.clone();
        let p = path.clone();
        let mode = if create_only { PutMode::Create } else { PutMode::Overwrite };
        // One contiguous part: an in-memory store keeps it without copying, and a Vec
        // behind a unique `Bytes` (what the encoders hand over) takes the trailer in place.
        let trailer = checksum::trailer(&data);
        let mut sealed = Vec::<u8>::from(data);
        sealed.extend_from_slice(trailer.as_bytes());
        let payload = PutPayload::from(sealed);
        let res = self.rt.block_on(async move { store.put_opts(&p, payload, PutOptions::from(mode)).await });
        match res {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) if create_only => return Ok(false),
            Err(e) => return Err(self.store_err(path, e)),
        }
        self.sync(path)?;
        Ok(true)
    }

    fn sync(&self, path: &Path) -> Result<()> {
        let (Some(root), true) = (&self.local_root, self.fsync) else { return Ok(()) };
        let file = root.join(path.as_ref());
        let io = |source, p: &FsPath| CheckpointError::Io { path: p.display().to_string(), source };
        std::fs::File::open(&file).and_then(|f| f.sync_all()).map_err(|e| io(e, &file))?;
        if let Some(parent) = file.parent() {
            std::fs::File::open(parent).and_then(|f| f.sync_all()).map_err(|e| io(e, parent))?;
        }
        Ok(())
    }

    /// Deletes an object; a missing one is not an error.
    ///
    /// # Errors
    /// [`CheckpointError::NotOwner`] (nothing deleted) when a newer run claimed the
    /// checkpoint; [`CheckpointError::Store`] on store failure.
    pub fn delete(&self, path: &Path) -> Result<()> {
        self.check_owner(&self.display_path(path))?;
        self.delete_unchecked(path)
    }

    fn delete_unchecked(&self, path: &Path) -> Result<()> {
        let store = self.store.clone();
        let p = path.clone();
        match self.rt.block_on(async move { store.delete(&p).await }) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.store_err(path, e)),
        }
    }

    /// Names of the objects directly under `dir` (file names only, no sub-folders), in no
    /// particular order; never a temporary of an interrupted write (see
    /// [`is_temporary_name`]). An absent `dir` lists as empty.
    ///
    /// # Errors
    /// [`CheckpointError::Store`] when the store cannot list.
    pub fn list_names(&self, dir: &Path) -> Result<Vec<String>> {
        let store = self.store.clone();
        let d = dir.clone();
        let res = self.rt.block_on(async move {
            match store.list_with_delimiter(Some(&d)).await {
                Ok(r) => Ok(r.objects),
                Err(object_store::Error::NotFound { .. }) => Ok(vec![]),
                Err(e) => Err(e),
            }
        });
        let objects = res.map_err(|e| self.store_err(dir, e))?;
        Ok(objects
            .into_iter()
            .filter_map(|m| m.location.filename().map(str::to_string))
            .filter(|name| !is_temporary_name(name))
            .collect())
    }

    /// All object paths under `prefix`, recursively, in no particular order; never a
    /// temporary of an interrupted write (see [`is_temporary_name`]).
    ///
    /// # Errors
    /// [`CheckpointError::Store`] when the store cannot list.
    pub fn list_recursive(&self, prefix: &Path) -> Result<Vec<Path>> {
        let store = self.store.clone();
        let p = prefix.clone();
        let res = self.rt.block_on(async move {
            store.list(Some(&p)).map_ok(|m| m.location).try_collect::<Vec<_>>().await
        });
        match res {
            Ok(v) => Ok(v.into_iter().filter(|p| !p.filename().is_some_and(is_temporary_name)).collect()),
            Err(object_store::Error::NotFound { .. }) => Ok(vec![]),
            Err(e) => Err(self.store_err(prefix, e)),
        }
    }

    /// Reads `metadata`, `Ok(None)` when absent.
    ///
    /// # Errors
    /// [`CheckpointError::Corrupt`] when it exists but is damaged or does not parse.
    pub fn read_metadata(&self) -> Result<Option<CheckpointMetadata>> {
        let path = self.paths.metadata();
        match self.get(&path)? {
            None => Ok(None),
            Some(b) => {
                let text = self.text(&path, &b)?;
                serde_json::from_str(text.trim()).map(Some).map_err(|e| self.corrupt(&path, e.to_string()))
            }
        }
    }

    /// Writes `metadata` (create-only; an existing one is kept).
    ///
    /// # Errors
    /// As [`put`](Self::put).
    pub fn write_metadata(&self, meta: &CheckpointMetadata) -> Result<()> {
        let body = serde_json::to_string(meta).expect("metadata serializes");
        self.put(&self.paths.metadata(), Bytes::from(body + "\n"), true)?;
        Ok(())
    }

    fn text<'a>(&self, path: &Path, bytes: &'a [u8]) -> Result<&'a str> {
        if bytes.is_empty() {
            return Err(self.corrupt(path, "the file is empty (torn write?)"));
        }
        std::str::from_utf8(bytes).map_err(|e| self.corrupt(path, format!("not UTF-8: {e}")))
    }

    /// The log named `name` (`offsets`, `commits`, `sources/0`, ...).
    pub fn log<T: LogEntry>(&self, name: impl Into<String>) -> BatchLog<'_, T> {
        BatchLog { ckpt: self, name: name.into(), _t: std::marker::PhantomData }
    }

    /// The offset log, `offsets/`.
    pub fn offsets(&self) -> BatchLog<'_, OffsetSeq> {
        self.log("offsets")
    }

    /// The commit log, `commits/`.
    pub fn commits(&self) -> BatchLog<'_, CommitMetadata> {
        self.log("commits")
    }

    /// Decides how to resume (see [`recovery_plan`]) after checking both logs against the
    /// gap rule of the crate docs.
    ///
    /// # Errors
    /// [`CheckpointError::Missing`] naming the first missing entry: a hole in either log,
    /// a commit log that starts after the offset log (`commits/<first offset>`), or the
    /// inconsistencies of [`recovery_plan`]; [`CheckpointError::Corrupt`] for a file in a
    /// log whose name is not a batch id.
    pub fn recovery(&self) -> Result<Recovery> {
        let offsets = self.offsets().batch_ids()?;
        let commits = self.commits().batch_ids()?;
        if let (Some(&first_offset), Some(&first_commit)) = (offsets.first(), commits.first()) {
            if first_commit > first_offset {
                return Err(CheckpointError::Missing {
                    path: self.display_path(&self.paths.log_entry("commits", first_offset)),
                    reason: format!(
                        "the commit log starts at batch {first_commit} but the offset log at batch {first_offset}: \
                         a purge removes offset entries before commit entries, so commits \
                         {first_offset}..{} were deleted",
                        first_commit - 1
                    ),
                });
            }
        }
        recovery_plan(&self.paths, offsets.last().copied(), commits.last().copied())
    }

    /// Purges both logs below `threshold` ([`BatchLog::purge_before`]): the offset log
    /// first, then the commit log, the order the gap rule relies on (the commit log never
    /// starts after the offset log).
    ///
    /// # Errors
    /// As [`BatchLog::purge_before`].
    pub fn purge_logs_before(&self, threshold: BatchId) -> Result<()> {
        self.offsets().purge_before(threshold)?;
        self.commits().purge_before(threshold)
    }

    // ---- ownership ----

    /// Claims the checkpoint for run `run_id` (Spark's `runId`, new at each start): creates
    /// `runs/<k>` (create-only), `k` one above the newest claim, holding `{"runId",
    /// "startedAt", "host", "pid"}`. Then deletes the claims older than the newest
    /// [`KEEP_RUN_CLAIMS`] and, on a local checkpoint, the temporaries left by interrupted
    /// writes (`<name>#<n>`). From then on every write through this `Checkpoint` checks
    /// that no newer claim exists (see the crate docs). Call it once per run, before the
    /// first write; claiming again (a new run id) replaces this value's claim.
    ///
    /// # Errors
    /// [`CheckpointError::NotOwner`] naming the other run when it created `runs/<k>` first
    /// (two runs started at once); [`CheckpointError::Corrupt`] when a name in `runs/` is
    /// not a number; [`CheckpointError::Store`] / [`CheckpointError::Io`] on store or file
    /// system failures.
    pub fn claim(&self, run_id: &str) -> Result<RunClaim> {
        if self.probe_conditional_put.load(std::sync::atomic::Ordering::Relaxed) {
            self.check_conditional_put(run_id)?;
            self.probe_conditional_put.store(false, std::sync::atomic::Ordering::Relaxed);
        }
        let existing = self.claim_numbers()?;
        let number = existing.last().map_or(0, |k| k + 1);
        self.claim_as(run_id, number, &existing)
    }

    /// Creates claim `number` (the rest of [`claim`](Self::claim); `existing`: the claims
    /// listed before).
    fn claim_as(&self, run_id: &str, number: u64, existing: &[u64]) -> Result<RunClaim> {
        let claim = RunClaim {
            number,
            run_id: run_id.to_string(),
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            host: host_name(),
            pid: std::process::id(),
        };
        let path = self.paths.run_claim(number);
        let body = serde_json::to_string(&claim).expect("a run claim serializes") + "\n";
        if !self.put_unchecked(&path, Bytes::from(body), true)? {
            let winner = self.read_claim(number)?.ok_or_else(|| CheckpointError::Missing {
                path: self.display_path(&path),
                reason: "another run created this claim first, then it vanished".into(),
            })?;
            // A retried conditional put whose first attempt landed (its answer was lost)
            // finds this run's own claim: the claim is ours.
            if winner.run_id != run_id {
                return Err(self.not_owner(run_id, &winner, &self.display_path(&path)));
            }
        }
        **self.ownership.lock().unwrap_or_else(|e| e.into_inner()) =
            Ownership { claim: Some(claim.clone()), superseded_by: None };
        for &old in existing.iter().filter(|&&k| k + KEEP_RUN_CLAIMS <= number) {
            self.delete(&self.paths.run_claim(old))?;
        }
        let removed = self.remove_temporaries()?;
        tracing::info!(
            checkpoint = %self.description, run_id, claim = number, temporaries_removed = removed,
            "claimed the checkpoint"
        );
        Ok(claim)
    }

    /// Checks, once per `Checkpoint` on a store other than a local directory or memory,
    /// that the store honours create-only writes, which keep two runs from both writing a
    /// batch: a conditional put ([`PutMode::Create`], S3's `If-None-Match: *`) of a new
    /// object `runs/.create-only-probe-<run id>` must succeed, a second one of the same
    /// object must be refused as existing; then the probe is deleted. Three requests.
    ///
    /// # Errors
    /// [`CheckpointError::Unsupported`] when the store refuses conditional puts
    /// (object_store's `NotImplemented`, e.g. `s3.conditionalPut=disabled`) or accepts the
    /// second one (it ignores the condition and would let two writers overwrite each
    /// other's log entries); [`CheckpointError::Store`] naming the probe when the store
    /// fails otherwise.
    fn check_conditional_put(&self, run_id: &str) -> Result<()> {
        let path = self.paths.runs_dir().join(format!(".create-only-probe-{run_id}").as_str());
        let unsupported = |reason: String| CheckpointError::Unsupported {
            location: self.description.clone(),
            reason: format!(
                "{reason}. Sluice's offset and commit logs are create-only, so that two runs on one checkpoint can \
                 never both write a batch; this store cannot guarantee that. Use a store with conditional puts \
                 (AWS S3, MinIO, Cloudflare R2 and moto do; for S3 leave s3.conditionalPut at its default, etag)"
            ),
        };
        let put = || {
            let payload = PutPayload::from(Bytes::from(checksum::seal(b"create-only probe\n")));
            self.rt.block_on(self.store.put_opts(&path, payload, PutOptions::from(PutMode::Create)))
        };
        let probe = self.display_path(&path);
        match put() {
            Ok(_) => {}
            Err(object_store::Error::NotImplemented { operation, .. }) => {
                return Err(unsupported(format!(
                    "the store does not do conditional puts (a create-only write of {probe} failed: {operation} is \
                     not implemented)"
                )))
            }
            Err(e) => return Err(self.store_err(&path, e)),
        }
        let second = put();
        self.delete_unchecked(&path)?;
        match second {
            Err(object_store::Error::AlreadyExists { .. }) => {
                tracing::debug!(checkpoint = %self.description, "the store honours create-only writes");
                Ok(())
            }
            Ok(_) => Err(unsupported(format!(
                "the store ignores the condition of create-only writes (If-None-Match: *): a second create-only \
                 write of {probe} succeeded instead of being refused"
            ))),
            Err(object_store::Error::NotImplemented { operation, .. }) => Err(unsupported(format!(
                "the store does not do conditional puts ({operation} is not implemented)"
            ))),
            Err(e) => Err(self.store_err(&path, e)),
        }
    }

    /// The claim this `Checkpoint` made, if any.
    pub fn current_claim(&self) -> Option<RunClaim> {
        self.ownership.lock().unwrap_or_else(|e| e.into_inner()).claim.clone()
    }

    /// Checks that this `Checkpoint` still owns the checkpoint: `Ok` when it never claimed
    /// it, or when no newer claim exists (two requests: a GET of `runs/<k+1>` finds
    /// nothing, a HEAD of `runs/<k>` finds this run's claim). Every write of this crate
    /// makes the same check; the engine calls this one before handing a batch to the sink,
    /// whose files are outside the checkpoint. Once superseded, it fails without I/O.
    ///
    /// # Errors
    /// [`CheckpointError::NotOwner`] (its `path` is `its next batch's output`) naming the
    /// newer run; [`CheckpointError::Missing`] when this run's own claim vanished and no
    /// newer one exists; [`CheckpointError::Corrupt`] when the newer claim is damaged (no
    /// write either way); [`CheckpointError::Store`] when the store cannot answer.
    pub fn ensure_owner(&self) -> Result<()> {
        self.check_owner("its next batch's output")
    }

    /// The ownership check before a write of `what` (a display path).
    fn check_owner(&self, what: &str) -> Result<()> {
        let mut own = self.ownership.lock().unwrap_or_else(|e| e.into_inner());
        let Some(claim) = own.claim.clone() else { return Ok(()) };
        if let Some(newer) = &own.superseded_by {
            return Err(self.not_owner(&claim.run_id, newer, what));
        }
        let (next, own_exists) = self.next_claim_and_own(claim.number)?;
        let newer = match next {
            Some(newer) => Some(newer),
            None if own_exists => return Ok(()),
            // Our claim was purged: newer runs claimed since (at least KEEP_RUN_CLAIMS).
            None => match self.claim_numbers()?.last() {
                Some(&k) if k > claim.number => self.read_claim(k)?,
                _ => None,
            },
        };
        let Some(newer) = newer else {
            return Err(CheckpointError::Missing {
                path: self.display_path(&self.paths.run_claim(claim.number)),
                reason: format!(
                    "the claim of this run ({}) was deleted and no newer claim exists, so it cannot tell whether \
                     it still owns the checkpoint; not writing {what}",
                    claim.run_id
                ),
            });
        };
        let err = self.not_owner(&claim.run_id, &newer, what);
        tracing::warn!("{err}");
        own.superseded_by = Some(newer);
        Err(err)
    }

    fn not_owner(&self, run_id: &str, newer: &RunClaim, what: &str) -> CheckpointError {
        CheckpointError::NotOwner {
            path: what.to_string(),
            location: self.description.clone(),
            run_id: run_id.to_string(),
            claimed_by: newer.run_id.clone(),
            by: Box::new(Takeover {
                claim: newer.clone(),
                claim_path: self.display_path(&self.paths.run_claim(newer.number)),
            }),
        }
    }

    /// The numbers of the claims in `runs/`, ascending.
    fn claim_numbers(&self) -> Result<Vec<u64>> {
        let dir = self.paths.runs_dir();
        let mut numbers = Vec::new();
        for name in self.list_names(&dir)? {
            if name.starts_with('.') {
                continue;
            }
            let k = name.parse::<u64>().map_err(|_| {
                self.corrupt(&dir.clone().join(name.as_str()), "a file in runs/ whose name is not a claim number")
            })?;
            numbers.push(k);
        }
        numbers.sort_unstable();
        Ok(numbers)
    }

    /// Reads `runs/<k>`; `Ok(None)` when absent.
    fn read_claim(&self, k: u64) -> Result<Option<RunClaim>> {
        let path = self.paths.run_claim(k);
        let object = self.get_raw(&path)?;
        self.decode_claim(k, &path, object)
    }

    /// The claim after `k` (`runs/<k+1>`, `None` when absent) and whether `runs/<k>` still
    /// exists: the two reads of the ownership check. On a local checkpoint two file
    /// system calls on this thread (object_store's local store would hand each to tokio's
    /// blocking pool, two thread switches per read, before every checkpoint write);
    /// elsewhere issued together, one round trip on S3.
    fn next_claim_and_own(&self, k: u64) -> Result<(Option<RunClaim>, bool)> {
        let (store, next, own) = (self.store.clone(), self.paths.run_claim(k + 1), self.paths.run_claim(k));
        if let Some(root) = &self.local_root {
            let io = |source, p: &FsPath| CheckpointError::Io { path: p.display().to_string(), source };
            let next_file = root.join(next.as_ref());
            let next_object = match std::fs::read(&next_file) {
                Ok(bytes) => Some(Bytes::from(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(io(e, &next_file)),
            };
            let own_file = root.join(own.as_ref());
            let own_exists = match std::fs::metadata(&own_file) {
                Ok(_) => true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(e) => return Err(io(e, &own_file)),
            };
            return Ok((self.decode_claim(k + 1, &next, next_object)?, own_exists));
        }
        let (n, o) = (next.clone(), own.clone());
        let (next_object, own_head) = self.rt.block_on(async move {
            let next_object = async {
                match store.get(&n).await {
                    Ok(r) => r.bytes().await.map(Some),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            };
            tokio::join!(next_object, store.head(&o))
        });
        let next_object = next_object.map_err(|e| self.store_err(&next, e))?;
        let own_exists = match own_head {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => return Err(self.store_err(&own, e)),
        };
        Ok((self.decode_claim(k + 1, &next, next_object)?, own_exists))
    }

    /// A claim object as read (`None`: absent): checksum verified, JSON decoded.
    fn decode_claim(&self, k: u64, path: &Path, object: Option<Bytes>) -> Result<Option<RunClaim>> {
        let Some(object) = object else { return Ok(None) };
        let len = checksum::open(&object).map_err(|reason| self.corrupt(path, reason))?.len();
        let mut claim: RunClaim = serde_json::from_slice(&object[..len])
            .map_err(|e| self.corrupt(path, format!("not a run claim: {e}")))?;
        claim.number = k;
        Ok(Some(claim))
    }

    /// Deletes the temporaries of interrupted writes under a local checkpoint's directory
    /// (not following symbolic links). Returns how many.
    fn remove_temporaries(&self) -> Result<usize> {
        let Some(root) = &self.local_root else { return Ok(0) };
        let io = |source, p: &FsPath| CheckpointError::Io { path: p.display().to_string(), source };
        let mut removed = 0;
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(e, &dir)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| io(e, &dir))?;
                let file_type = entry.file_type().map_err(|e| io(e, &entry.path()))?;
                if file_type.is_dir() {
                    dirs.push(entry.path());
                } else if file_type.is_file() && entry.file_name().to_str().is_some_and(is_temporary_name) {
                    match std::fs::remove_file(entry.path()) {
                        Ok(()) => removed += 1,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io(e, &entry.path())),
                    }
                    tracing::debug!(path = %entry.path().display(), "removed the temporary of an interrupted write");
                }
            }
        }
        Ok(removed)
    }
}

/// A value stored as one entry of a [`BatchLog`]: text lines after the `v1` header.
pub trait LogEntry: Sized {
    /// The lines of the entry (without the header).
    fn to_lines(&self) -> Vec<String>;
    /// Parses the lines after the header; `Err` carries the reason.
    fn from_lines(lines: &[&str]) -> std::result::Result<Self, String>;
}

fn json_line<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("log entries serialize to JSON")
}

fn parse_line<T: DeserializeOwned>(line: &str, what: &str) -> std::result::Result<T, String> {
    serde_json::from_str(line).map_err(|e| format!("{what}: {e}"))
}

impl LogEntry for OffsetSeq {
    fn to_lines(&self) -> Vec<String> {
        let mut lines = vec![json_line(&self.metadata)];
        lines.extend(self.offsets.iter().map(|o| match o {
            Some(v) => json_line(v),
            None => "-".to_string(),
        }));
        lines
    }
    fn from_lines(lines: &[&str]) -> std::result::Result<Self, String> {
        let (meta, rest) = lines.split_first().ok_or("missing the batch metadata line")?;
        let metadata = parse_line(meta, "batch metadata")?;
        let offsets = rest
            .iter()
            .enumerate()
            .map(|(i, l)| {
                if *l == "-" {
                    Ok(None)
                } else {
                    parse_line(l, &format!("offset of source {i}")).map(Some)
                }
            })
            .collect::<std::result::Result<_, _>>()?;
        Ok(OffsetSeq { metadata, offsets })
    }
}

impl LogEntry for CommitMetadata {
    fn to_lines(&self) -> Vec<String> {
        vec![json_line(self)]
    }
    fn from_lines(lines: &[&str]) -> std::result::Result<Self, String> {
        match lines {
            [one] => parse_line(one, "commit metadata"),
            _ => Err(format!("expected one JSON line, found {}", lines.len())),
        }
    }
}

/// A source log entry: any JSON value per batch (e.g. the files a file source took).
impl LogEntry for serde_json::Value {
    fn to_lines(&self) -> Vec<String> {
        vec![json_line(self)]
    }
    fn from_lines(lines: &[&str]) -> std::result::Result<Self, String> {
        match lines {
            [one] => parse_line(one, "log entry"),
            _ => Err(format!("expected one JSON line, found {}", lines.len())),
        }
    }
}

/// A create-only log with one file per batch id (Spark's `HDFSMetadataLog`).
pub struct BatchLog<'a, T> {
    ckpt: &'a Checkpoint,
    name: String,
    _t: std::marker::PhantomData<T>,
}

impl<T: LogEntry + PartialEq> BatchLog<'_, T> {
    /// The object path of entry `batch_id`.
    pub fn path(&self, batch_id: BatchId) -> Path {
        self.ckpt.paths.log_entry(&self.name, batch_id)
    }

    fn missing(&self, batch_id: BatchId, reason: String) -> CheckpointError {
        CheckpointError::Missing { path: self.ckpt.display_path(&self.path(batch_id)), reason }
    }

    /// Writes entry `batch_id` (create-only). Returns `Ok(true)` when written, `Ok(false)`
    /// when an identical entry already existed (a replayed batch).
    ///
    /// # Errors
    /// [`CheckpointError::Conflict`] when an entry exists with different content;
    /// [`CheckpointError::Corrupt`] when the existing entry is damaged;
    /// [`CheckpointError::NotOwner`] (nothing written) when a newer run claimed the
    /// checkpoint.
    pub fn add(&self, batch_id: BatchId, entry: &T) -> Result<bool> {
        let path = self.path(batch_id);
        let mut text = String::from(LOG_VERSION_HEADER);
        for line in entry.to_lines() {
            text.push('\n');
            text.push_str(&line);
        }
        text.push('\n');
        if self.ckpt.put(&path, Bytes::from(text), true)? {
            return Ok(true);
        }
        match self.get(batch_id)? {
            Some(existing) if existing == *entry => Ok(false),
            _ => Err(CheckpointError::Conflict { path: self.ckpt.display_path(&path) }),
        }
    }

    /// Reads entry `batch_id`; `Ok(None)` when absent.
    ///
    /// # Errors
    /// [`CheckpointError::Corrupt`] when damaged (see [`Checkpoint::get`]), without the
    /// `v1` header, or unparsable.
    pub fn get(&self, batch_id: BatchId) -> Result<Option<T>> {
        let path = self.path(batch_id);
        let Some(bytes) = self.ckpt.get(&path)? else { return Ok(None) };
        let text = self.ckpt.text(&path, &bytes)?;
        let corrupt = |reason: String| self.ckpt.corrupt(&path, reason);
        if !text.ends_with('\n') {
            return Err(corrupt("the entry does not end with a newline (torn write?)".into()));
        }
        let mut lines = text.lines();
        match lines.next() {
            Some(LOG_VERSION_HEADER) => {}
            Some(other) => {
                return Err(corrupt(format!(
                    "unsupported log version {other:?} (this Sluice reads {LOG_VERSION_HEADER})"
                )))
            }
            None => return Err(corrupt("missing the version header".into())),
        }
        let body: Vec<&str> = lines.collect();
        T::from_lines(&body).map(Some).map_err(corrupt)
    }

    /// Reads entry `batch_id`, which must exist.
    ///
    /// # Errors
    /// [`CheckpointError::Missing`] when absent; see [`BatchLog::get`].
    pub fn require(&self, batch_id: BatchId) -> Result<T> {
        self.get(batch_id)?
            .ok_or_else(|| self.missing(batch_id, format!("the {} log has no entry for batch {batch_id}", self.name)))
    }

    /// The ids present, ascending, without any check.
    fn listed_ids(&self) -> Result<Vec<BatchId>> {
        let dir = self.ckpt.paths.log_dir(&self.name);
        let mut ids = Vec::new();
        for name in self.ckpt.list_names(&dir)? {
            if name.starts_with('.') {
                continue; // hidden files are not entries
            }
            let id = name.parse::<BatchId>().map_err(|_| {
                self.ckpt.corrupt(&dir.clone().join(name.as_str()), "a file in a batch log whose name is not a batch id")
            })?;
            ids.push(id);
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// The batch ids present, ascending and contiguous from the first present one (the
    /// log's horizon: entries below it are taken as purged, see the crate docs).
    ///
    /// # Errors
    /// [`CheckpointError::Missing`] naming the first missing entry when there is a hole;
    /// [`CheckpointError::Corrupt`] for a file whose name is not a batch id.
    pub fn batch_ids(&self) -> Result<Vec<BatchId>> {
        let ids = self.listed_ids()?;
        for w in ids.windows(2) {
            if w[1] != w[0] + 1 {
                return Err(self.missing(
                    w[0] + 1,
                    format!("gap in the {} log: batch {} is followed by batch {}", self.name, w[0], w[1]),
                ));
            }
        }
        Ok(ids)
    }

    /// Checks that every entry `from..=to` exists (one listing, no read). An empty range
    /// (`from > to`) checks nothing.
    ///
    /// # Errors
    /// [`CheckpointError::Missing`] naming the first missing entry;
    /// [`CheckpointError::Corrupt`] for a file whose name is not a batch id.
    pub fn require_range(&self, from: BatchId, to: BatchId) -> Result<()> {
        let ids: std::collections::BTreeSet<BatchId> = self.listed_ids()?.into_iter().collect();
        let mut want = from;
        while want <= to {
            if !ids.contains(&want) {
                return Err(self.missing(
                    want,
                    format!("the {} log must hold every entry {from}..={to}, and has no entry for batch {want}", self.name),
                ));
            }
            want += 1;
        }
        Ok(())
    }

    /// Reads the entries of `range`, ascending, requiring each: an unbounded start is the
    /// first present entry, an unbounded end the last present one. A log that is never
    /// purged passes its first id: the file source reads its whole log with `entries(1..)`,
    /// which names `sources/<i>/1` when that entry is gone. A bounded end must exist even
    /// past the last entry. `entries(1..)` on an empty log is empty.
    ///
    /// # Errors
    /// [`CheckpointError::Missing`] naming the first missing entry of the range;
    /// [`CheckpointError::Corrupt`] for a damaged entry (see [`BatchLog::get`]).
    pub fn entries(&self, range: impl RangeBounds<BatchId>) -> Result<Vec<(BatchId, T)>> {
        let ids = self.listed_ids()?;
        let from = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => match ids.first() {
                Some(&f) => f,
                None => return Ok(vec![]),
            },
        };
        let to = match range.end_bound() {
            Bound::Included(&e) => Some(e),
            Bound::Excluded(&0) => None,
            Bound::Excluded(&e) => Some(e - 1),
            Bound::Unbounded => ids.last().copied(),
        };
        let Some(to) = to.filter(|t| *t >= from) else { return Ok(vec![]) };
        self.require_range(from, to)?;
        (from..=to).map(|id| Ok((id, self.require(id)?))).collect()
    }

    /// The latest entry, if any.
    ///
    /// # Errors
    /// As [`batch_ids`](Self::batch_ids) and [`get`](Self::get).
    pub fn latest(&self) -> Result<Option<(BatchId, T)>> {
        match self.batch_ids()?.last() {
            None => Ok(None),
            Some(&id) => Ok(Some((id, self.require(id)?))),
        }
    }

    /// Deletes every entry with an id below `threshold` (retention), in ascending order so
    /// that an interrupted purge leaves the log contiguous. A hole does not stop it.
    ///
    /// # Errors
    /// [`CheckpointError::NotOwner`] (nothing more deleted) when a newer run claimed the
    /// checkpoint; store errors.
    pub fn purge_before(&self, threshold: BatchId) -> Result<()> {
        for id in self.listed_ids()? {
            if id >= threshold {
                break;
            }
            self.ckpt.delete(&self.path(id))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(wm: i64) -> OffsetSeq {
        OffsetSeq {
            metadata: OffsetSeqMetadata {
                batch_watermark_ms: wm,
                batch_timestamp_ms: 7,
                conf: Default::default(),
            },
            offsets: vec![Some(serde_json::json!({"logOffset": 3})), None],
        }
    }

    #[test]
    fn offset_log_roundtrip_and_create_only() {
        let dir = tempfile::tempdir().unwrap();
        let ck = Checkpoint::local(dir.path()).unwrap();
        assert!(ck.offsets().add(0, &seq(1)).unwrap());
        assert!(!ck.offsets().add(0, &seq(1)).unwrap(), "identical replay is a no-op");
        assert!(matches!(ck.offsets().add(0, &seq(2)), Err(CheckpointError::Conflict { .. })));
        assert_eq!(ck.offsets().require(0).unwrap(), seq(1));
        let text = std::fs::read_to_string(dir.path().join("offsets/0")).unwrap();
        assert!(text.starts_with("v1\n{"), "{text}");
        let (body, trailer) = text.rsplit_once("-\n").unwrap();
        assert!(body.ends_with("}\n"), "{text}");
        assert!(trailer.starts_with(checksum::TRAILER_MARKER) && trailer.ends_with('\n'), "{text}");
    }

    #[test]
    fn corrupt_and_gap_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let ck = Checkpoint::local(dir.path()).unwrap();
        ck.offsets().add(0, &seq(1)).unwrap();
        ck.offsets().add(2, &seq(1)).unwrap();
        match ck.offsets().batch_ids() {
            Err(CheckpointError::Missing { path, .. }) => assert!(path.ends_with("offsets/1")),
            other => panic!("{other:?}"),
        }
        std::fs::write(dir.path().join("offsets/2"), b"").unwrap();
        match ck.offsets().get(2) {
            Err(CheckpointError::Corrupt { path, reason }) => {
                assert!(path.ends_with("offsets/2"));
                assert!(reason.contains("empty"));
            }
            other => panic!("{other:?}"),
        }
        std::fs::write(dir.path().join("offsets/2"), checksum::seal(b"v1\n{\"batchWater")).unwrap();
        assert!(matches!(ck.offsets().get(2), Err(CheckpointError::Corrupt { .. })));
    }

    #[test]
    fn recovery_decisions() {
        let p = CheckpointPaths::default();
        assert_eq!(recovery_plan(&p, None, None).unwrap(), Recovery::Fresh);
        assert_eq!(recovery_plan(&p, Some(0), None).unwrap(), Recovery::Replay { batch_id: 0 });
        assert_eq!(
            recovery_plan(&p, Some(4), Some(4)).unwrap(),
            Recovery::Continue { last_committed: 4 }
        );
        assert_eq!(recovery_plan(&p, Some(5), Some(4)).unwrap(), Recovery::Replay { batch_id: 5 });
        assert!(recovery_plan(&p, Some(6), Some(4)).is_err());
        assert!(recovery_plan(&p, Some(3), Some(4)).is_err());
        assert!(recovery_plan(&p, None, Some(0)).is_err());
    }

    #[test]
    fn in_memory_store_works() {
        let ck = Checkpoint::in_memory().unwrap();
        ck.commits()
            .add(0, &CommitMetadata { next_batch_watermark_ms: 5, operator_watermarks_ms: vec![], state_deltas: vec![] })
            .unwrap();
        assert_eq!(ck.commits().latest().unwrap().unwrap().1.next_batch_watermark_ms, 5);
        assert!(ck.recovery().unwrap_err().to_string().contains("offset log is empty"));
    }

    /// Two runs list `runs/` at the same moment and both create the next claim: the one
    /// that loses the create race fails, naming the winner, and owns nothing.
    #[test]
    fn losing_the_claim_race_names_the_winner() {
        let dir = tempfile::tempdir().unwrap();
        let winner = Checkpoint::local(dir.path()).unwrap();
        let loser = Checkpoint::local(dir.path()).unwrap();
        let listed = loser.claim_numbers().unwrap(); // empty: both will create runs/0
        let won = winner.claim("run-w").unwrap();
        assert_eq!(won.number, 0);
        match loser.claim_as("run-l", 0, &listed) {
            Err(CheckpointError::NotOwner { claimed_by, run_id, path, .. }) => {
                assert_eq!((claimed_by.as_str(), run_id.as_str()), ("run-w", "run-l"));
                assert!(path.ends_with("runs/0"), "{path}");
            }
            other => panic!("expected NotOwner, got {other:?}"),
        }
        assert!(loser.current_claim().is_none());
        winner.offsets().add(0, &seq(0)).unwrap();
    }

    #[test]
    fn temporary_names() {
        for t in ["7#1", "5.delta#12", "x%233"] {
            assert!(is_temporary_name(t), "{t}");
        }
        for n in ["7", "5.delta", "a#b", "a#", "_metadata"] {
            assert!(!is_temporary_name(n), "{n}");
        }
    }
}
