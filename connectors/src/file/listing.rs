//! Which files a file source can take: the regular files directly in its directory whose
//! names start with neither `.` nor `_`, or, when the directory is a file sink's output
//! (it has `_sluice_metadata`), the files the manifest lists (Spark's
//! `MetadataLogFileIndex`); ordered by (modification time, path).

use std::collections::HashSet;
use std::path::Path;
use std::time::UNIX_EPOCH;

use sluice_engine::{Result, SluiceError};

use crate::formats::manifest::{METADATA_DIR, read_manifest};

/// A file found by listing the directory.
#[derive(Debug, Clone)]
pub(crate) struct ListedFile {
    pub path: String,
    pub mtime_ns: i128,
}

/// The metadata of `path`, `None` when it does not exist.
fn stat(path: &Path) -> Result<Option<std::fs::Metadata>> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SluiceError::Io { path: path.display().to_string(), source }),
    }
}

/// The modification time of `path` in ns since the epoch (negative before it).
fn mtime_ns(path: &Path, meta: &std::fs::Metadata) -> Result<i128> {
    let mtime = meta.modified().map_err(|source| SluiceError::Io { path: path.display().to_string(), source })?;
    Ok(match mtime.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    })
}

/// The files to take from `dir` (absolute, UTF-8), by (modification time, path): those
/// listed by the manifest when the directory is a file sink's output, otherwise the
/// regular files directly in the directory, not hidden.
///
/// # Errors
/// [`SluiceError::Io`] naming the directory that cannot be listed or a manifest-listed
/// file that is missing; [`SluiceError::Checkpoint`] naming a corrupt or missing
/// manifest entry.
pub(crate) fn list(dir: &Path) -> Result<Vec<ListedFile>> {
    let meta_dir = dir.join(METADATA_DIR);
    let has_manifest =
        meta_dir.try_exists().map_err(|source| SluiceError::Io { path: meta_dir.display().to_string(), source })?;
    let mut files = if has_manifest { list_manifest(dir)? } else { list_dir(dir)? };
    files.sort_by(|a, b| a.mtime_ns.cmp(&b.mtime_ns).then_with(|| a.path.cmp(&b.path)));
    Ok(files)
}

/// The files listed by the manifest entries of a file sink's output directory: files of
/// the directory that no entry lists (orphans of a batch that crashed before its entry
/// was written) are not taken. A missing or damaged entry, or a listed file that is
/// gone, is an error naming it: the sink's output is immutable, so either means lost
/// output, never something to skip.
fn list_manifest(dir: &Path) -> Result<Vec<ListedFile>> {
    let mut names = HashSet::new();
    let mut files = Vec::new();
    for entry in read_manifest(dir)? {
        for f in entry.files {
            if !names.insert(f.path.clone()) {
                continue;
            }
            let path = dir.join(&f.path);
            let Some(meta) = stat(&path)? else {
                return Err(SluiceError::Io {
                    path: path.display().to_string(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("listed by the file sink's manifest entry of batch {} but missing", entry.batch_id),
                    ),
                });
            };
            if meta.is_file() {
                // The directory and the manifest's paths are UTF-8.
                files.push(ListedFile { path: path.to_string_lossy().into_owned(), mtime_ns: mtime_ns(&path, &meta)? });
            }
        }
    }
    Ok(files)
}

/// Regular files directly in the directory, not hidden.
fn list_dir(dir: &Path) -> Result<Vec<ListedFile>> {
    let io = |source| SluiceError::Io { path: dir.display().to_string(), source };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            tracing::warn!(dir = %dir.display(), "skipping a file whose name is not UTF-8: {name:?}");
            continue;
        };
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let path = entry.path();
        // Deleted between listing and stat: as if not listed.
        let Some(meta) = stat(&path)? else { continue };
        if !meta.is_file() {
            continue;
        }
        // The directory is UTF-8 (checked at creation) and so is the name.
        files.push(ListedFile { path: path.to_string_lossy().into_owned(), mtime_ns: mtime_ns(&path, &meta)? });
    }
    Ok(files)
}
