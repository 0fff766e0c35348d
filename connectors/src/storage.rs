//! [`Dir`]: a directory on a store, the one way the file connector (source, sink, static
//! reader, manifest) reads, lists and writes files, whether the directory is local or
//! on S3 (see [`sluice_checkpoint::store`] for how a location maps to a store).
//!
//! ```text
//!  "/data/out" ──► LocalFileSystem (fsync on) ─┐
//!                                              ├─► Dir { storage, root, url } ── read / list / put / delete
//!  "s3://b/out" ─► AmazonS3 (s3.* options) ────┘      objects named by URL in logs and errors:
//!                                                     "/data/out/part-00000-….parquet", "s3://b/out/…"
//! ```
//!
//! Every write is whole (a local write goes to a temporary `<name>#<n>`, is fsynced,
//! renamed and its directory fsynced; an S3 PUT is atomic), so no reader ever sees part of
//! a file; a create-only write (the manifest's entries) is a conditional put.

use std::path::Path as FsPath;
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectMeta, PutPayload};
use sluice_checkpoint::CheckpointError;
use sluice_checkpoint::store::{Location, Storage, StoreOptions};
use sluice_engine::{Options, Result, SluiceError};

/// A checkpoint-crate error of the store as the connectors report it: a bad location is
/// an invalid argument, a store failure an I/O error naming the object.
pub(crate) fn store_error(e: CheckpointError) -> SluiceError {
    match e {
        CheckpointError::InvalidLocation { location, reason } => {
            SluiceError::InvalidArgument(format!("invalid location {location}: {reason}"))
        }
        CheckpointError::Store { path, source } => {
            let kind = match &source {
                object_store::Error::NotFound { .. } => std::io::ErrorKind::NotFound,
                object_store::Error::AlreadyExists { .. } => std::io::ErrorKind::AlreadyExists,
                object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
                    std::io::ErrorKind::PermissionDenied
                }
                _ => std::io::ErrorKind::Other,
            };
            SluiceError::Io { path, source: std::io::Error::new(kind, source) }
        }
        other => SluiceError::Checkpoint(other),
    }
}

/// The `s3.*` options of `options` when `location` is remote (they are then recorded as
/// read; a local path leaves them unread, so they are reported as unused).
pub(crate) fn store_options(location: &str, options: &Options) -> StoreOptions {
    if !Location::is_remote(location) {
        return StoreOptions::default();
    }
    StoreOptions::from_pairs(options.prefixed("s3."))
}

/// A directory on a store (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct Dir {
    storage: Arc<Storage>,
    /// The object path of the directory.
    root: Path,
    /// The directory as named in messages: `/abs/dir` or `s3://bucket/prefix`.
    url: String,
}

impl Dir {
    /// The directory `location` (a local path or `s3://bucket/prefix`), with the `s3.*`
    /// options of `options` for S3.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] for a bad location or `s3.*` option, or S3 without
    /// the cargo feature `s3`.
    pub fn open(location: &str, options: &Options) -> Result<Dir> {
        Self::open_with(location, &store_options(location, options))
    }

    /// As [`Dir::open`] with the S3 options given.
    ///
    /// # Errors
    /// As [`Dir::open`].
    pub fn open_with(location: &str, options: &StoreOptions) -> Result<Dir> {
        let parsed = Location::parse(location).map_err(store_error)?;
        let url = parsed.url();
        let (storage, root) = Storage::open(&parsed, options).map_err(store_error)?;
        Ok(Dir { storage: Arc::new(storage), root, url })
    }

    /// A directory on any storage (tests, custom stores).
    pub fn on(storage: Arc<Storage>, root: Path) -> Dir {
        let url = storage.url(&root);
        Dir { storage, root, url }
    }

    /// The directory as named in messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The object path of the directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The local directory, for a local `Dir`.
    pub fn local_dir(&self) -> Option<std::path::PathBuf> {
        self.storage.local_file(&self.root)
    }

    /// The object `rel` below the directory (`rel`: `/`-separated raw segments, e.g.
    /// `date=2024-01-01/part-00000-x.parquet`).
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] when `rel` is not a valid relative object path.
    pub fn child(&self, rel: &str) -> Result<Path> {
        let rel_path = Path::parse(rel).map_err(|e| {
            SluiceError::InvalidArgument(format!("{rel:?} is not a valid path below {}: {e}", self.url))
        })?;
        Ok(self.root.parts().chain(rel_path.parts()).collect())
    }

    /// The directory `root` on the same store.
    pub fn at(&self, root: Path) -> Dir {
        Dir::on(self.storage.clone(), root)
    }

    /// The bytes of the object named `url` (as [`Dir::url_of`] names it).
    ///
    /// # Errors
    /// As [`Dir::object_of`] and [`Dir::read`].
    pub fn read_url(&self, url: &str) -> Result<Bytes> {
        self.read(&self.object_of(url)?)
    }

    /// The name of `object` in messages and logs.
    pub fn url_of(&self, object: &Path) -> String {
        self.storage.url(object)
    }

    /// The object named `url` (as [`Dir::url_of`] names it).
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] when `url` is not on this directory's store.
    pub fn object_of(&self, url: &str) -> Result<Path> {
        self.storage.path_of(url).map_err(store_error)
    }

    /// The bytes of `object`.
    ///
    /// # Errors
    /// [`SluiceError::Io`] naming the object: missing (`NotFound`) or unreadable.
    pub fn read(&self, object: &Path) -> Result<Bytes> {
        match self.storage.get(object).map_err(store_error)? {
            Some(b) => Ok(b),
            None => Err(SluiceError::Io {
                path: self.url_of(object),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or object"),
            }),
        }
    }

    /// The metadata of `object`, `None` when it does not exist.
    ///
    /// # Errors
    /// [`SluiceError::Io`] naming the object.
    pub fn head(&self, object: &Path) -> Result<Option<ObjectMeta>> {
        self.storage.head(object).map_err(store_error)
    }

    /// Every object below `prefix` (the directory itself for `None`), recursively.
    ///
    /// # Errors
    /// [`SluiceError::Io`] naming the prefix.
    pub fn list(&self, prefix: Option<&Path>) -> Result<Vec<ObjectMeta>> {
        self.storage.list(prefix.unwrap_or(&self.root)).map_err(store_error)
    }

    /// The objects directly in `prefix` (not recursive; temporaries of interrupted local
    /// writes left out). A missing prefix lists as empty.
    ///
    /// # Errors
    /// [`SluiceError::Io`] naming the prefix.
    pub fn list_objects(&self, prefix: &Path) -> Result<Vec<ObjectMeta>> {
        Ok(self.storage.list_dir(prefix).map_err(store_error)?.objects)
    }

    /// The names of the objects directly in `prefix` (not recursive).
    ///
    /// # Errors
    /// [`SluiceError::Io`] naming the prefix.
    pub fn list_names(&self, prefix: &Path) -> Result<Vec<String>> {
        let listing = self.storage.list_dir(prefix).map_err(store_error)?;
        Ok(listing.objects.into_iter().filter_map(|m| m.location.filename().map(str::to_string)).collect())
    }

    /// Writes `object` whole (see the module docs); with `create_only`, `Ok(false)` when it
    /// exists already (left untouched).
    ///
    /// # Errors
    /// [`SluiceError::Io`] naming the object.
    pub fn put(&self, object: &Path, bytes: impl Into<PutPayload>, create_only: bool) -> Result<bool> {
        self.storage.put(object, bytes.into(), create_only).map_err(store_error)
    }

    /// Deletes `object` (a missing one is fine).
    ///
    /// # Errors
    /// [`SluiceError::Io`] naming the object.
    pub fn delete(&self, object: &Path) -> Result<()> {
        self.storage.delete(object).map_err(store_error)
    }

    /// Whether the location is a single file rather than a directory (a local file, or an
    /// S3 object at exactly the prefix's key).
    ///
    /// # Errors
    /// [`SluiceError::Io`] naming the location.
    pub fn is_file(&self) -> Result<bool> {
        if let Some(local) = self.local_dir() {
            return Ok(local.is_file());
        }
        if self.root.as_ref().is_empty() {
            return Ok(false);
        }
        Ok(self.head(&self.root)?.is_some())
    }

    /// For a local directory: fails naming it when it does not exist (a missing S3 prefix
    /// is just empty, as S3 has no directories).
    ///
    /// # Errors
    /// [`SluiceError::Io`] (`NotFound`) naming the directory.
    pub fn require_local_dir(&self) -> Result<()> {
        if let Some(local) = self.local_dir() {
            std::fs::metadata(&local).map_err(|source| SluiceError::Io { path: local.display().to_string(), source })?;
        }
        Ok(())
    }
}

/// A local directory as a [`Dir`] (the `read_manifest(path)` family of functions).
///
/// # Errors
/// As [`Dir::open`].
pub(crate) fn local_or_url(path: &FsPath) -> Result<Dir> {
    Dir::open_with(&path.to_string_lossy(), &StoreOptions::default())
}
