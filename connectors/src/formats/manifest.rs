//! The manifest of a file sink's output directory (Spark's `_spark_metadata`): its
//! format, its reader and its writer. The file sink ([`crate::file::FileSink`]) writes
//! it; readers, Sluice's own file source included, trust only the files it lists.
//!
//! # Layout
//! ```text
//! <out>/part-<batch id, 5 digits>-<uuid>.parquet|json|csv   data files of each batch
//! <out>/_sluice_metadata/<batch id>                        manifest entry of each batch
//! ```
//! A manifest entry is `"v1\n"` followed by one JSON line per data file of the batch:
//! `{"path": "part-00003-<uuid>.parquet", "size": <bytes>, "rows": <n>, "schema": [...]}`
//! (`path` relative to `<out>`; `schema` is the Arrow type of the rows, see
//! [`ManifestFile::schema`]), sealed with the checkpoint's checksum trailer
//! `#sluice crc32=<hex> len=<bytes>` as its last line
//! ([`sluice_checkpoint::checksum`]). A batch with no rows has an entry with no file
//! lines.
//!
//! ```text
//! v1
//! {"path":"part-00003-6f1c....parquet","size":2412,"rows":130,"schema":[...]}
//! #sluice crc32=1c291ca3 len=96
//! ```
//!
//! Files no entry lists (left by a crash between the data and the manifest write) are
//! ignored by every reader that goes through [`read_manifest`]. An entry is written
//! whole and create-only ([`write_manifest_entry`]: on a local disk a temporary
//! `<id>#<n>` in `_sluice_metadata`, fsynced, hard-linked into place, the directory
//! fsynced; on S3 one PUT with `If-None-Match: *`), so a reader sees a whole entry or
//! none, and of two writers of the same batch (a zombie run) only one entry lands.
//!
//! The output may be local or on S3 (`s3://bucket/prefix`): every function here goes
//! through [`crate::storage::Dir`]; the `impl AsRef<Path>` ones take a local path or an
//! `s3://` URL (S3 then configured by the AWS environment variables).
//!
//! # Damage is an error, never less output
//! The file sink writes an entry for every batch, from batch 0, so the entries are
//! `0..=N` without a gap. Every reader ([`read_manifest`]: the file source, the static
//! reader, [`read_output`](crate::file::read_output)) and the sink at start
//! ([`check_manifest_ids`]) fail when one is missing, naming it
//! ([`CheckpointError::Missing`]), rather than silently returning the output of the
//! others; an entry whose checksum, header or lines do not check out is
//! [`CheckpointError::Corrupt`] naming it. (Entries written before the trailer existed
//! are reported as corrupt too.) There is no compaction: readers read every entry.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use serde::{Deserialize, Serialize};
use sluice_checkpoint::{BatchId, CheckpointError, checksum};

use crate::storage::{Dir, local_or_url};

use sluice_engine::{Result, SluiceError};

/// The directory under the output directory that holds the manifest (Spark's
/// `_spark_metadata`).
pub const METADATA_DIR: &str = "_sluice_metadata";

/// The first line of every manifest entry.
pub const MANIFEST_VERSION: &str = "v1";

/// One data file listed by a manifest entry (one JSON line of it; Spark's
/// `SinkFileStatus`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// The file name relative to the output directory, e.g.
    /// `part-00003-6f1c...-....parquet`.
    pub path: String,
    /// The file size in bytes.
    pub size: u64,
    /// The number of rows in the file.
    pub rows: u64,
    /// The Arrow schema of the file's rows, so JSON and CSV files read back with their
    /// written types (timestamps, structs) rather than inferred ones: a JSON array of
    /// fields `{"name": .., "nullable": .., "type": ..}` where `type` is arrow's
    /// `DataType` display form (e.g. `"Timestamp(µs, \"+00:00\")"`) for non-nested types,
    /// and `"Struct"` with `"fields": [..]`, `"List"` / `"LargeList"` with `"item": {..}`,
    /// or `"FixedSizeList"` with `"size"` and `"item"` for nested ones. Encode it with
    /// [`encode_fields`], decode it with [`ManifestFile::arrow_schema`]. Absent in
    /// entries written by other tools; readers then infer the schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<serde_json::Value>,
    /// For a partitioned output (`partitionBy`), the partition columns, in directory
    /// order, with the Arrow types they had when written (the same encoding as
    /// [`schema`](Self::schema)); their values are in the file's `path`, Hive-style
    /// (`date=2024-01-01/channel=%23en/part-….parquet`), and not in the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<serde_json::Value>,
}

impl ManifestFile {
    /// The decoded [`ManifestFile::schema`], `None` when the entry has none.
    ///
    /// # Errors
    /// A message saying what does not decode.
    pub fn arrow_schema(&self) -> std::result::Result<Option<SchemaRef>, String> {
        match &self.schema {
            None => Ok(None),
            Some(v) => Ok(Some(Arc::new(Schema::new(decode_fields(v)?)))),
        }
    }

    /// The decoded [`ManifestFile::partitions`], empty when the output is not partitioned.
    ///
    /// # Errors
    /// A message saying what does not decode.
    pub fn partition_fields(&self) -> std::result::Result<Fields, String> {
        match &self.partitions {
            None => Ok(Fields::empty()),
            Some(v) => decode_fields(v),
        }
    }
}

/// Encodes fields for [`ManifestFile::schema`].
pub fn encode_fields(fields: &Fields) -> serde_json::Value {
    serde_json::Value::Array(fields.iter().map(|f| encode_field(f)).collect())
}

fn encode_field(f: &Field) -> serde_json::Value {
    use serde_json::json;
    let mut v = json!({"name": f.name(), "nullable": f.is_nullable()});
    let m = v.as_object_mut().expect("object");
    match f.data_type() {
        DataType::Struct(children) => {
            m.insert("type".into(), json!("Struct"));
            m.insert("fields".into(), encode_fields(children));
        }
        DataType::List(item) => {
            m.insert("type".into(), json!("List"));
            m.insert("item".into(), encode_field(item));
        }
        DataType::LargeList(item) => {
            m.insert("type".into(), json!("LargeList"));
            m.insert("item".into(), encode_field(item));
        }
        DataType::FixedSizeList(item, size) => {
            m.insert("type".into(), json!("FixedSizeList"));
            m.insert("size".into(), json!(size));
            m.insert("item".into(), encode_field(item));
        }
        other => {
            m.insert("type".into(), json!(other.to_string()));
        }
    }
    v
}

fn decode_fields(v: &serde_json::Value) -> std::result::Result<Fields, String> {
    let arr = v.as_array().ok_or_else(|| format!("schema is not an array of fields: {v}"))?;
    arr.iter().map(decode_field).collect::<std::result::Result<Vec<_>, _>>().map(Fields::from)
}

fn decode_field(v: &serde_json::Value) -> std::result::Result<Field, String> {
    let name = v.get("name").and_then(|n| n.as_str()).ok_or_else(|| format!("field without a name: {v}"))?;
    let nullable = v.get("nullable").and_then(|n| n.as_bool()).unwrap_or(true);
    let ty = v.get("type").and_then(|t| t.as_str()).ok_or_else(|| format!("field {name:?} without a type"))?;
    let item = || -> std::result::Result<Arc<Field>, String> {
        Ok(Arc::new(decode_field(v.get("item").ok_or_else(|| format!("list field {name:?} without an item"))?)?))
    };
    let dt = match ty {
        "Struct" => DataType::Struct(decode_fields(
            v.get("fields").ok_or_else(|| format!("struct field {name:?} without fields"))?,
        )?),
        "List" => DataType::List(item()?),
        "LargeList" => DataType::LargeList(item()?),
        "FixedSizeList" => {
            let size = v
                .get("size")
                .and_then(|s| s.as_i64())
                .and_then(|s| i32::try_from(s).ok())
                .ok_or_else(|| format!("fixed-size list field {name:?} without a size"))?;
            DataType::FixedSizeList(item()?, size)
        }
        other => DataType::from_str(other).map_err(|e| format!("field {name:?}: type {other:?}: {e}"))?,
    };
    Ok(Field::new(name, dt, nullable))
}

/// The manifest entry of one batch: the data files it wrote (none for an empty batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// The batch id (the entry's file name under `_sluice_metadata`).
    pub batch_id: BatchId,
    /// The batch's data files, in the order written.
    pub files: Vec<ManifestFile>,
}

impl ManifestEntry {
    /// The total number of rows of the batch.
    pub fn rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }
}

/// The path of the manifest entry of `batch_id`: `<out_dir>/_sluice_metadata/<batch_id>`.
pub fn manifest_entry_path(out_dir: impl AsRef<Path>, batch_id: BatchId) -> PathBuf {
    out_dir.as_ref().join(METADATA_DIR).join(batch_id.to_string())
}

/// The object of the manifest entry of `batch_id` in the output directory `out`.
pub(crate) fn entry_object(out: &Dir, batch_id: BatchId) -> Result<ObjectPath> {
    out.child(&format!("{METADATA_DIR}/{batch_id}"))
}

fn corrupt(path: &str, reason: impl Into<String>) -> SluiceError {
    SluiceError::Checkpoint(CheckpointError::Corrupt { path: path.to_string(), reason: reason.into() })
}

/// Parses the bytes of the manifest entry of batch `batch_id` (named `path` in errors),
/// checking its checksum trailer first.
fn parse_entry(path: &str, sealed: &[u8], batch_id: BatchId) -> Result<ManifestEntry> {
    if sealed.is_empty() {
        return Err(corrupt(path, "empty file"));
    }
    let bytes = checksum::open(sealed).map_err(|reason| corrupt(path, reason))?;
    let text = std::str::from_utf8(bytes).map_err(|_| corrupt(path, "not UTF-8"))?;
    if !text.ends_with('\n') {
        return Err(corrupt(path, "torn: the last line is incomplete"));
    }
    let mut lines = text.lines();
    match lines.next() {
        Some(MANIFEST_VERSION) => {}
        Some(other) => {
            return Err(corrupt(path, format!("unknown header {other:?}, expected {MANIFEST_VERSION:?}")));
        }
        None => return Err(corrupt(path, "no header")),
    }
    let mut files = Vec::new();
    for (i, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let f: ManifestFile = serde_json::from_str(line).map_err(|e| corrupt(path, format!("line {}: {e}", i + 2)))?;
        let rel = Path::new(&f.path);
        if f.path.is_empty()
            || rel.is_absolute()
            || rel.components().any(|c| !matches!(c, std::path::Component::Normal(_)))
            || ObjectPath::parse(&f.path).is_err()
        {
            return Err(corrupt(
                path,
                format!("line {}: file path {:?} is not relative to the output directory", i + 2, f.path),
            ));
        }
        files.push(f);
    }
    Ok(ManifestEntry { batch_id, files })
}

/// Reads and parses the manifest entry of `batch_id` in `out`.
///
/// # Errors
/// As [`read_manifest_entry`].
pub(crate) fn read_entry(out: &Dir, batch_id: BatchId) -> Result<ManifestEntry> {
    let object = entry_object(out, batch_id)?;
    let sealed = out.read(&object)?;
    parse_entry(&out.url_of(&object), &sealed, batch_id)
}

/// Parses the manifest entry at `path` (of batch `batch_id`; a local file, or
/// `s3://bucket/out/_sluice_metadata/<id>` with S3 configured by the environment),
/// checking its checksum trailer first.
///
/// # Errors
/// [`SluiceError::Checkpoint`] (`CheckpointError::Corrupt`, naming the file) for an
/// empty, torn, damaged (checksum), header-less or unparsable entry, or one listing a
/// path that is not relative to the output directory; [`SluiceError::Io`] naming the
/// file when it cannot be read.
pub fn read_manifest_entry(path: &Path, batch_id: BatchId) -> Result<ManifestEntry> {
    let out = path.parent().and_then(Path::parent).ok_or_else(|| {
        SluiceError::InvalidArgument(format!("{} is not <output>/{METADATA_DIR}/<batch id>", path.display()))
    })?;
    read_entry(&local_or_url(out)?, batch_id)
}

/// The batch ids of the entries under `<out>/_sluice_metadata`, sorted, checked to be
/// `0..=N`. Objects whose names are not batch ids (temporaries) are ignored; a missing
/// manifest directory means no batch was written (empty list).
pub(crate) fn list_ids(out: &Dir) -> Result<Vec<BatchId>> {
    let meta = out.child(METADATA_DIR)?;
    let mut ids = Vec::new();
    for name in out.list_names(&meta)? {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(id) = name.parse::<BatchId>() {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    // The sink writes an entry for every batch from 0: a hole is a lost entry.
    for (expected, id) in ids.iter().enumerate() {
        let expected = expected as BatchId;
        if *id != expected {
            return Err(SluiceError::Checkpoint(CheckpointError::Missing {
                path: out.url_of(&entry_object(out, expected)?),
                reason: format!(
                    "the file sink's manifest has entries up to batch {} but not this one: the output of batch \
                     {expected} would be silently missing (restore the entry, or write to a new output directory)",
                    ids.last().copied().unwrap_or(*id)
                ),
            }));
        }
    }
    Ok(ids)
}

/// Whether `out` has a manifest (at least one entry, or the manifest folder on a local
/// disk): it is a file sink's output.
pub(crate) fn has_manifest(out: &Dir) -> Result<bool> {
    if let Some(local) = out.local_dir() {
        let meta = local.join(METADATA_DIR);
        return meta.try_exists().map_err(|source| SluiceError::Io { path: meta.display().to_string(), source });
    }
    Ok(!out.list_names(&out.child(METADATA_DIR)?)?.is_empty())
}

/// Every manifest entry of `out`, by batch id.
///
/// # Errors
/// As [`read_manifest`].
pub(crate) fn read_all(out: &Dir) -> Result<Vec<ManifestEntry>> {
    list_ids(out)?.into_iter().map(|id| read_entry(out, id)).collect()
}

/// Checks that the manifest of `out_dir` has no gap (a listing only, no entry read): what
/// the file sink does when a query starts. `out_dir` is a local directory, or an
/// `s3://` URL with S3 configured by the environment.
///
/// # Errors
/// [`SluiceError::Checkpoint`] (`CheckpointError::Missing`) naming the first missing
/// entry; [`SluiceError::Io`] naming the directory that cannot be listed.
pub fn check_manifest_ids(out_dir: impl AsRef<Path>) -> Result<()> {
    list_ids(&local_or_url(out_dir.as_ref())?).map(|_| ())
}

/// Every manifest entry under `<out_dir>/_sluice_metadata`, sorted by batch id. Files
/// whose names are not batch ids (e.g. temporary files of an interrupted write) are
/// ignored; a missing manifest directory means no batch was written (empty list).
/// `out_dir` is a local directory, or an `s3://` URL with S3 configured by the
/// environment.
///
/// # Errors
/// [`SluiceError::Checkpoint`]: `CheckpointError::Missing` naming the first missing
/// entry below the last one (entries are `0..=N`); `CheckpointError::Corrupt` naming an
/// empty, torn, damaged (checksum), header-less or unparsable entry.
/// [`SluiceError::Io`] naming the directory or file that cannot be read.
pub fn read_manifest(out_dir: impl AsRef<Path>) -> Result<Vec<ManifestEntry>> {
    read_all(&local_or_url(out_dir.as_ref())?)
}

/// [`read_manifest`] of `location` (a local directory or `s3://bucket/prefix`) with the
/// S3 options `s3` (the `s3.*` options without their prefix).
///
/// # Errors
/// As [`read_manifest`]; [`SluiceError::InvalidArgument`] for a bad location or option.
pub fn read_manifest_with(location: &str, s3: &sluice_checkpoint::store::StoreOptions) -> Result<Vec<ManifestEntry>> {
    read_all(&Dir::open_with(location, s3)?)
}

/// The text of the manifest entry listing `files`, sealed with its checksum trailer.
fn entry_bytes(files: &[ManifestFile]) -> Result<Vec<u8>> {
    let mut text = String::from(MANIFEST_VERSION);
    text.push('\n');
    for f in files {
        let line =
            serde_json::to_string(f).map_err(|e| SluiceError::Internal(format!("cannot encode manifest line: {e}")))?;
        text.push_str(&line);
        text.push('\n');
    }
    Ok(checksum::seal(text.as_bytes()))
}

/// Writes the manifest entry of `batch_id` listing `files` in `out`, whole and
/// create-only (a conditional put; on a local disk a fsynced temporary hard-linked into
/// place, then the directory fsynced): `Ok(false)` when the entry exists already (another
/// writer of the same batch got there first), which is left untouched.
///
/// # Errors
/// [`SluiceError::Io`] naming the entry when it cannot be written.
pub(crate) fn write_entry(out: &Dir, batch_id: BatchId, files: &[ManifestFile]) -> Result<bool> {
    out.put(&entry_object(out, batch_id)?, Bytes::from(entry_bytes(files)?), true)
}

/// Writes the manifest entry of `batch_id` listing `files` under
/// `<out_dir>/_sluice_metadata`, sealed with its checksum trailer, atomically and
/// create-only (see the module docs); an existing entry is left as it is.
///
/// # Errors
/// [`SluiceError::Io`] naming the file that cannot be written.
pub fn write_manifest_entry(out_dir: &Path, batch_id: BatchId, files: &[ManifestFile]) -> Result<()> {
    write_entry(&local_or_url(out_dir)?, batch_id, files).map(|_| ())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use arrow::datatypes::TimeUnit;

    #[test]
    fn manifest_schema_roundtrips() {
        let dt = DataType::Struct(Fields::from(vec![
            Field::new("s", DataType::Utf8View, true),
            Field::new("t", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
            Field::new(
                "window",
                DataType::Struct(Fields::from(vec![
                    Field::new("start", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
                    Field::new("end", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
                ])),
                true,
            ),
            Field::new("weird \"name\"", DataType::Int64, false),
        ]));
        let DataType::Struct(fields) = &dt else { unreachable!() };
        let f = ManifestFile { path: "p".into(), size: 1, rows: 1, schema: Some(encode_fields(fields)), partitions: None };
        let line = serde_json::to_string(&f).unwrap();
        let back: ManifestFile = serde_json::from_str(&line).unwrap();
        assert_eq!(back.arrow_schema().unwrap().unwrap().fields(), fields);
        let list = Fields::from(vec![
            Field::new("l", DataType::LargeList(Arc::new(Field::new("item", dt.clone(), true))), true),
            Field::new("f", DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float64, false)), 3), true),
        ]);
        let f = ManifestFile { schema: Some(encode_fields(&list)), ..f };
        assert_eq!(f.arrow_schema().unwrap().unwrap().fields(), &list);
    }

    #[test]
    fn written_entries_read_back() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join(METADATA_DIR)).unwrap();
        let f = ManifestFile { path: "part-00004-x.json".into(), size: 9, rows: 2, schema: None, partitions: None };
        write_manifest_entry(dir.path(), 0, std::slice::from_ref(&f)).unwrap();
        write_manifest_entry(dir.path(), 1, &[]).unwrap();
        let entries = read_manifest(dir.path()).unwrap();
        assert_eq!(entries, [ManifestEntry { batch_id: 0, files: vec![f] }, ManifestEntry { batch_id: 1, files: vec![] }]);
        let names: Vec<_> = fs::read_dir(dir.path().join(METADATA_DIR)).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
    }

    #[test]
    fn entries_are_read_in_batch_order_and_damage_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_manifest(dir.path()).unwrap().is_empty(), "no manifest directory: no batch");
        fs::create_dir(dir.path().join(METADATA_DIR)).unwrap();
        let line = |p: &str| format!("{{\"path\": \"{p}\", \"size\": 3, \"rows\": 2}}\n");
        let put = |id: u64, text: &str| fs::write(manifest_entry_path(dir.path(), id), checksum::seal(text.as_bytes())).unwrap();
        for id in 0..=10 {
            put(id, "v1\n");
        }
        put(10, &format!("v1\n{}", line("b.json")));
        put(2, &format!("v1\n{}{}", line("a.json"), line("c.json")));
        fs::write(dir.path().join(METADATA_DIR).join(".11.tmp"), "").unwrap();
        let entries = read_manifest(dir.path()).unwrap();
        assert_eq!(entries.iter().map(|e| e.batch_id).collect::<Vec<_>>(), (0..=10).collect::<Vec<_>>());
        assert_eq!(entries[2].files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["a.json", "c.json"]);
        assert_eq!(entries[2].rows(), 4);
        assert_eq!(entries[10].files[0].schema, None);

        let path = manifest_entry_path(dir.path(), 11);
        for (bytes, reason) in [
            (Vec::new(), "empty file"),
            (b"v1\n".to_vec(), "no checksum trailer"),
            (checksum::seal(b"v1\n{\"path\": \"x\""), "torn"),
            (checksum::seal(b"v9\n"), "unknown header"),
            (checksum::seal(b"v1\n{\"path\": \"../x\", \"size\": 1, \"rows\": 1}\n"), "not relative"),
            (checksum::seal(b"v1\nnot json\n"), "line 2"),
            (checksum::seal(b"v1\n").into_iter().enumerate().map(|(i, b)| if i == 1 { b'2' } else { b }).collect(), "checksum"),
        ] {
            fs::write(&path, &bytes).unwrap();
            match read_manifest(dir.path()) {
                Err(SluiceError::Checkpoint(CheckpointError::Corrupt { path: p, reason: r })) => {
                    assert!(p.ends_with("11"), "{p}");
                    assert!(r.contains(reason), "{bytes:?}: {r}");
                }
                other => panic!("{bytes:?}: expected Corrupt, got {other:?}"),
            }
        }
        fs::remove_file(&path).unwrap();

        // A missing entry below the last one is named, by readers and by the sink's check.
        fs::remove_file(manifest_entry_path(dir.path(), 5)).unwrap();
        for err in [read_manifest(dir.path()).map(|_| ()).unwrap_err(), check_manifest_ids(dir.path()).unwrap_err()] {
            match err {
                SluiceError::Checkpoint(CheckpointError::Missing { path, reason }) => {
                    assert!(path.ends_with("_sluice_metadata/5"), "{path}");
                    assert!(reason.contains("up to batch 10"), "{reason}");
                }
                other => panic!("expected Missing, got {other:?}"),
            }
        }
        // So is a missing first entry.
        fs::remove_file(manifest_entry_path(dir.path(), 0)).unwrap();
        let err = read_manifest(dir.path()).unwrap_err().to_string();
        assert!(err.contains("_sluice_metadata/0"), "{err}");
    }
}
