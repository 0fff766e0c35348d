//! Which files a file source can take: the files directly in its directory (a local
//! directory or an S3 prefix) whose names start with neither `.` nor `_`, or, when the
//! directory is a file sink's output (it has `_sluice_metadata`), the files the manifest
//! lists (Spark's `MetadataLogFileIndex`); ordered by (modification time, path).

use std::collections::HashSet;

use object_store::ObjectMeta;
use sluice_engine::{Result, SluiceError};

use crate::formats::manifest::{has_manifest, read_all};
use crate::storage::Dir;

/// A file found by listing the directory.
#[derive(Debug, Clone)]
pub(crate) struct ListedFile {
    /// The file as named in messages and the source log: an absolute local path or an
    /// `s3://bucket/key` URL ([`Dir::url_of`]).
    pub path: String,
    pub mtime_ns: i128,
}

/// The modification time of an object in ns since the epoch (negative before it).
fn mtime_ns(meta: &ObjectMeta) -> i128 {
    let t = meta.last_modified;
    i128::from(t.timestamp()) * 1_000_000_000 + i128::from(t.timestamp_subsec_nanos())
}

/// The files to take from `dir`, by (modification time, path): those listed by the
/// manifest when the directory is a file sink's output, otherwise the files directly in
/// the directory, not hidden.
///
/// # Errors
/// [`SluiceError::Io`] naming the directory that cannot be listed (or a local one that
/// does not exist) or a manifest-listed file that is missing; [`SluiceError::Checkpoint`]
/// naming a corrupt or missing manifest entry.
pub(crate) fn list(dir: &Dir) -> Result<Vec<ListedFile>> {
    let mut files = if has_manifest(dir)? { list_manifest(dir)? } else { list_dir(dir)? };
    files.sort_by(|a, b| a.mtime_ns.cmp(&b.mtime_ns).then_with(|| a.path.cmp(&b.path)));
    Ok(files)
}

/// The files listed by the manifest entries of a file sink's output directory: files of
/// the directory that no entry lists (orphans of a batch that crashed before its entry
/// was written) are not taken. A missing or damaged entry, or a listed file that is
/// gone, is an error naming it: the sink's output is immutable, so either means lost
/// output, never something to skip.
fn list_manifest(dir: &Dir) -> Result<Vec<ListedFile>> {
    let mut names = HashSet::new();
    let mut files = Vec::new();
    for entry in read_all(dir)? {
        for f in entry.files {
            if !names.insert(f.path.clone()) {
                continue;
            }
            let object = dir.child(&f.path)?;
            let Some(meta) = dir.head(&object)? else {
                return Err(SluiceError::Io {
                    path: dir.url_of(&object),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("listed by the file sink's manifest entry of batch {} but missing", entry.batch_id),
                    ),
                });
            };
            files.push(ListedFile { path: dir.url_of(&object), mtime_ns: mtime_ns(&meta) });
        }
    }
    Ok(files)
}

/// The files directly in the directory, not hidden.
fn list_dir(dir: &Dir) -> Result<Vec<ListedFile>> {
    dir.require_local_dir()?;
    let mut files = Vec::new();
    for meta in dir.list_objects(dir.root())? {
        let Some(name) = meta.location.filename() else { continue };
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        files.push(ListedFile { path: dir.url_of(&meta.location), mtime_ns: mtime_ns(&meta) });
    }
    Ok(files)
}
