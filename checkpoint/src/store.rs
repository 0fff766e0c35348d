//! Where a path points, and blocking access to the store behind it: the one place that
//! maps a location string to an [`ObjectStore`], shared by the checkpoint
//! ([`Checkpoint::open`](crate::Checkpoint::open)) and the file connector (source, sink,
//! static reader, manifest).
//!
//! ```text
//!  "s3://bucket/a/b", "s3a://bucket/a/b" ─► S3: AmazonS3 for `bucket` (cargo feature `s3`),
//!                                           objects under the key prefix `a/b`
//!  "file:///data/in", "/data/in", "in"    ─► Local: LocalFileSystem rooted at `/` (fsync on),
//!                                           objects under `data/in` (relative paths made absolute)
//!  "gs://..", "az://..", "hdfs://.."      ─► refused, naming the schemes Sluice reads
//! ```
//!
//! # S3 configuration
//! An S3 store is configured, in increasing precedence, from the standard AWS
//! environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, `AWS_REGION` / `AWS_DEFAULT_REGION`, `AWS_ENDPOINT` /
//! `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, ...: object_store's
//! `AmazonS3Builder::from_env`) and then from [`StoreOptions`], the `s3.*` options of a
//! reader or writer without their prefix, case-insensitive (see [`S3_OPTIONS`]):
//! `s3.endpoint`, `s3.region`, `s3.accessKeyId`, `s3.secretAccessKey`,
//! `s3.sessionToken`, `s3.allowHttp`, `s3.virtualHostedStyleRequest`,
//! `s3.conditionalPut` (`etag`, the default, or `disabled`), ... and the retry settings
//! `s3.maxRetries`, `s3.retryTimeoutMs`, `s3.backoffInitialMs`, `s3.backoffMaxMs`,
//! `s3.backoffBase`. An unknown `s3.*` option is an error naming it.
//!
//! # Retries
//! Transient failures (HTTP 5xx, 429, 408, connection errors, timeouts of idempotent
//! requests) are retried by object_store itself, with exponential backoff and jitter
//! (its `RetryConfig`: by default up to 10 retries within 3 minutes, backoff from 100 ms
//! doubling up to 15 s); Sluice adds no retry loop of its own. What is left is a
//! permanent error, and every error of this module names the object (`s3://bucket/key`
//! or the local file).
//!
//! # Blocking
//! [`Storage`] drives the async store from synchronous code on its own current-thread
//! tokio runtime. Call it from a plain thread, not from inside a tokio runtime. One
//! `Storage` per component (each has its own HTTP client, whose connections live on its
//! runtime).

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ListResult, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::{CheckpointError, Result};

/// The URL schemes of S3 locations.
const S3_SCHEMES: [&str; 2] = ["s3://", "s3a://"];

/// A parsed location: a local directory or an S3 prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local path, absolute (a relative one is made absolute against the working
    /// directory, without resolving symbolic links).
    Local(PathBuf),
    /// `s3://bucket/key`: the objects under `key` in `bucket`.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix (no leading or trailing `/`; empty for the bucket's root).
        key: Path,
    },
}

fn invalid(location: &str, reason: impl Into<String>) -> CheckpointError {
    CheckpointError::InvalidLocation { location: location.to_string(), reason: reason.into() }
}

impl Location {
    /// Parses `location` (see the module docs).
    ///
    /// # Errors
    /// [`CheckpointError::InvalidLocation`] for an empty location, an S3 URL without a
    /// bucket or with a key object_store cannot hold (empty segments, `.`, `..`), or a
    /// scheme Sluice does not read.
    pub fn parse(location: &str) -> Result<Location> {
        if location.trim().is_empty() {
            return Err(invalid(location, "the location is empty"));
        }
        if let Some(rest) = S3_SCHEMES.iter().find_map(|s| strip_prefix_ci(location, s)) {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid(location, "an S3 location needs a bucket: s3://<bucket>/<prefix>"));
            }
            let key = Path::parse(key.trim_end_matches('/'))
                .map_err(|e| invalid(location, format!("not a valid object key prefix: {e}")))?;
            return Ok(Location::S3 { bucket: bucket.to_string(), key });
        }
        let local = match strip_prefix_ci(location, "file://") {
            Some(path) => path,
            None => {
                if let Some((scheme, _)) = location.split_once("://") {
                    if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) {
                        return Err(invalid(
                            location,
                            format!("the scheme {scheme}:// is not supported: use a local path or s3://<bucket>/<prefix>"),
                        ));
                    }
                }
                location
            }
        };
        let abs = std::path::absolute(local)
            .map_err(|e| invalid(location, format!("cannot make the path absolute: {e}")))?;
        if abs.to_str().is_none() {
            return Err(invalid(location, "the path is not valid UTF-8"));
        }
        Ok(Location::Local(abs))
    }

    /// Whether `location` names a remote store (`s3://`, `s3a://`), by its scheme alone.
    pub fn is_remote(location: &str) -> bool {
        S3_SCHEMES.iter().any(|s| strip_prefix_ci(location, s).is_some())
    }

    /// The location as written in messages and logs: the absolute local path, or
    /// `s3://bucket/key`.
    pub fn url(&self) -> String {
        match self {
            Location::Local(p) => p.display().to_string(),
            Location::S3 { bucket, key } if key.as_ref().is_empty() => format!("s3://{bucket}"),
            Location::S3 { bucket, key } => format!("s3://{bucket}/{key}"),
        }
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

/// The `s3.*` options (without the prefix) that configure an S3 store, keys
/// case-insensitive. Build it from a reader's or writer's options, e.g. from
/// `Options::prefixed("s3.")` in the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// Lower-cased key (without `s3.`) -> value.
    entries: BTreeMap<String, String>,
}

impl StoreOptions {
    /// Options from `(key, value)` pairs, keys without the `s3.` prefix.
    pub fn from_pairs<K: AsRef<str>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self { entries: pairs.into_iter().map(|(k, v)| (k.as_ref().to_ascii_lowercase(), v.into())).collect() }
    }
    /// Sets one option (`key` without `s3.`).
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.entries.insert(key.to_ascii_lowercase(), value.into());
    }
    /// `self` with `key` set.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.set(key, value);
        self
    }
    /// The value of `key` (any case).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(&key.to_ascii_lowercase()).map(String::as_str)
    }
    /// Whether there is no option.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// `(lower-cased key, value)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// The `s3.*` options Sluice reads (after the prefix), with the object_store
/// configuration key each one sets; the retry settings are Sluice's names for the
/// fields of object_store's `RetryConfig`.
pub const S3_OPTIONS: &[(&str, &str)] = &[
    ("endpoint", "endpoint"),
    ("region", "region"),
    ("accessKeyId", "access_key_id"),
    ("secretAccessKey", "secret_access_key"),
    ("sessionToken", "token"),
    ("allowHttp", "allow_http"),
    ("virtualHostedStyleRequest", "virtual_hosted_style_request"),
    ("conditionalPut", "conditional_put"),
    ("skipSignature", "skip_signature"),
    ("unsignedPayload", "unsigned_payload"),
    ("checksumAlgorithm", "checksum_algorithm"),
    ("requestPayer", "request_payer"),
    ("s3Express", "s3_express"),
    ("imdsv1Fallback", "imdsv1_fallback"),
    ("metadataEndpoint", "metadata_endpoint"),
    ("roleArn", "role_arn"),
    ("roleSessionName", "role_session_name"),
    ("webIdentityTokenFile", "web_identity_token_file"),
    ("serverSideEncryption", "server_side_encryption"),
    ("sseKmsKeyId", "sse_kms_key_id"),
    ("sseBucketKeyEnabled", "sse_bucket_key_enabled"),
    ("timeout", "timeout"),
    ("connectTimeout", "connect_timeout"),
    ("proxyUrl", "proxy_url"),
    ("allowInvalidCertificates", "allow_invalid_certificates"),
    ("maxRetries", "RetryConfig::max_retries"),
    ("retryTimeoutMs", "RetryConfig::retry_timeout"),
    ("backoffInitialMs", "BackoffConfig::init_backoff"),
    ("backoffMaxMs", "BackoffConfig::max_backoff"),
    ("backoffBase", "BackoffConfig::base"),
];

/// The option names of [`S3_OPTIONS`] as users write them (`s3.endpoint`, ...).
pub fn s3_option_names() -> Vec<String> {
    S3_OPTIONS.iter().map(|(name, _)| format!("s3.{name}")).collect()
}

/// Blocking access to one object store (see the module docs): the store, its own
/// runtime, and how its objects are named in messages and logs.
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    rt: tokio::runtime::Runtime,
    /// What [`Storage::url`] puts before an object path: `""` for the local file system
    /// (paths are absolute: `/` + the object path), `s3://bucket`, or any base given to
    /// [`Storage::with_store`].
    base: String,
    local: bool,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").field("base", &self.base).field("store", &self.store.to_string()).finish()
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| CheckpointError::Io { path: "<tokio runtime>".into(), source })
}

/// A store error on the object named `url`.
fn store_err(url: String, source: object_store::Error) -> CheckpointError {
    CheckpointError::Store { path: url, source }
}

impl Storage {
    /// The storage of `location` and the object path of the location itself (the prefix
    /// its objects live under). Local: the file system (fsync on: every write is flushed
    /// with its directory before it returns). S3: see the module docs for `options`.
    ///
    /// # Errors
    /// [`CheckpointError::InvalidLocation`] naming the location for a bad `s3.*` option,
    /// an S3 location in a build without the cargo feature `s3`, or a local path
    /// object_store cannot name.
    pub fn open(location: &Location, options: &StoreOptions) -> Result<(Storage, Path)> {
        match location {
            Location::Local(dir) => {
                let root = Path::from_absolute_path(dir)
                    .map_err(|e| invalid(&location.url(), format!("not a path object_store can name: {e}")))?;
                let store = LocalFileSystem::new().with_fsync(true);
                Ok((Storage { store: Arc::new(store), rt: runtime()?, base: String::new(), local: true }, root))
            }
            Location::S3 { bucket, key } => {
                let store = s3_store(&location.url(), bucket, options)?;
                let base = format!("s3://{bucket}");
                Ok((Storage { store, rt: runtime()?, base, local: false }, key.clone()))
            }
        }
    }

    /// Opens `location` (a string, see [`Location::parse`]).
    ///
    /// # Errors
    /// As [`Location::parse`] and [`Storage::open`].
    pub fn open_str(location: &str, options: &StoreOptions) -> Result<(Storage, Path)> {
        Self::open(&Location::parse(location)?, options)
    }

    /// Any store (tests, custom stores): objects are named `<base>/<object path>` in
    /// messages and logs.
    ///
    /// # Errors
    /// [`CheckpointError::Io`] when the runtime cannot be created.
    pub fn with_store(store: Arc<dyn ObjectStore>, base: &str) -> Result<Storage> {
        Ok(Storage { store, rt: runtime()?, base: base.trim_end_matches('/').to_string(), local: false })
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Whether this is the local file system.
    pub fn is_local(&self) -> bool {
        self.local
    }

    /// The name of object `path` in messages and logs: `/abs/file` (local) or
    /// `s3://bucket/key`. [`Storage::path_of`] is its inverse.
    pub fn url(&self, path: &Path) -> String {
        if self.local || !path.as_ref().is_empty() {
            format!("{}/{}", self.base, path)
        } else {
            self.base.clone()
        }
    }

    /// The object path named `url` (as [`Storage::url`] writes it).
    ///
    /// # Errors
    /// [`CheckpointError::InvalidLocation`] when `url` is not on this store or is not a
    /// valid object path.
    pub fn path_of(&self, url: &str) -> Result<Path> {
        let rest = url
            .strip_prefix(&self.base)
            .and_then(|r| r.strip_prefix('/').or(r.is_empty().then_some(r)))
            .ok_or_else(|| invalid(url, format!("not an object of {}", if self.local { "the local file system" } else { &self.base })))?;
        Path::parse(rest).map_err(|e| invalid(url, format!("not a valid object path: {e}")))
    }

    /// Runs `f` on this storage's runtime (for callers that need the async API).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The bytes of object `path`; `Ok(None)` when it does not exist.
    ///
    /// # Errors
    /// [`CheckpointError::Store`] naming the object.
    pub fn get(&self, path: &Path) -> Result<Option<Bytes>> {
        let res = self.rt.block_on(async {
            match self.store.get(path).await {
                Ok(r) => r.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        res.map_err(|e| store_err(self.url(path), e))
    }

    /// The metadata of object `path`; `Ok(None)` when it does not exist.
    ///
    /// # Errors
    /// [`CheckpointError::Store`] naming the object.
    pub fn head(&self, path: &Path) -> Result<Option<ObjectMeta>> {
        match self.rt.block_on(self.store.head(path)) {
            Ok(m) => Ok(Some(m)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_err(self.url(path), e)),
        }
    }

    /// Writes object `path` whole (no reader ever sees part of it: a local write goes to
    /// a temporary `<name>#<n>`, is fsynced and renamed; an S3 PUT is atomic). With
    /// `create_only` it is a conditional put ([`PutMode::Create`]): an existing object
    /// is left untouched and `Ok(false)` returned.
    ///
    /// # Errors
    /// [`CheckpointError::Store`] naming the object (a store that cannot do conditional
    /// puts fails `create_only` writes with object_store's `NotImplemented`).
    pub fn put(&self, path: &Path, payload: PutPayload, create_only: bool) -> Result<bool> {
        let mode = if create_only { PutMode::Create } else { PutMode::Overwrite };
        match self.rt.block_on(self.store.put_opts(path, payload, PutOptions::from(mode))) {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) if create_only => Ok(false),
            Err(e) => Err(store_err(self.url(path), e)),
        }
    }

    /// Deletes object `path`; a missing one is not an error.
    ///
    /// # Errors
    /// [`CheckpointError::Store`] naming the object.
    pub fn delete(&self, path: &Path) -> Result<()> {
        match self.rt.block_on(self.store.delete(path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_err(self.url(path), e)),
        }
    }

    /// Every object under `prefix`, recursively, in no particular order, without the
    /// temporaries of interrupted local writes (see [`crate::is_temporary_name`]). A
    /// missing prefix lists as empty.
    ///
    /// # Errors
    /// [`CheckpointError::Store`] naming the prefix.
    pub fn list(&self, prefix: &Path) -> Result<Vec<ObjectMeta>> {
        let res = self.rt.block_on(self.store.list(Some(prefix)).try_collect::<Vec<_>>());
        match res {
            Ok(v) => Ok(v.into_iter().filter(|m| !m.location.filename().is_some_and(crate::is_temporary_name)).collect()),
            Err(object_store::Error::NotFound { .. }) => Ok(vec![]),
            Err(e) => Err(store_err(self.url(prefix), e)),
        }
    }

    /// The objects and sub-folders directly under `prefix` (temporaries left out). A
    /// missing prefix lists as empty.
    ///
    /// # Errors
    /// [`CheckpointError::Store`] naming the prefix.
    pub fn list_dir(&self, prefix: &Path) -> Result<ListResult> {
        match self.rt.block_on(self.store.list_with_delimiter(Some(prefix))) {
            Ok(mut r) => {
                r.objects.retain(|m| !m.location.filename().is_some_and(crate::is_temporary_name));
                Ok(r)
            }
            Err(object_store::Error::NotFound { .. }) => Ok(ListResult { common_prefixes: vec![], objects: vec![], extensions: Default::default() }),
            Err(e) => Err(store_err(self.url(prefix), e)),
        }
    }

    /// The local file of object `path` (local storage only).
    pub fn local_file(&self, path: &Path) -> Option<PathBuf> {
        self.local.then(|| FsPath::new("/").join(path.as_ref()))
    }
}

#[cfg(feature = "s3")]
fn s3_store(url: &str, bucket: &str, options: &StoreOptions) -> Result<Arc<dyn ObjectStore>> {
    use std::str::FromStr;
    use std::time::Duration;

    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
    use object_store::RetryConfig;

    let normalize = |s: &str| s.replace('_', "").to_ascii_lowercase();
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    let mut retry = RetryConfig::default();
    for (key, value) in options.iter() {
        let bad = |what: &str| invalid(url, format!("option s3.{key}: {value:?} is not {what}"));
        let ms = || value.trim().parse::<u64>().map(Duration::from_millis).map_err(|_| bad("a number of milliseconds"));
        match normalize(key).as_str() {
            "maxretries" => retry.max_retries = value.trim().parse().map_err(|_| bad("a non-negative integer"))?,
            "retrytimeoutms" => retry.retry_timeout = ms()?,
            "backoffinitialms" => retry.backoff.init_backoff = ms()?,
            "backoffmaxms" => retry.backoff.max_backoff = ms()?,
            "backoffbase" => {
                retry.backoff.base = value.trim().parse::<f64>().ok().filter(|b| *b >= 1.0).ok_or_else(|| bad("a number >= 1"))?
            }
            other => {
                let Some((_, config_key)) = S3_OPTIONS.iter().find(|(name, _)| normalize(name) == other) else {
                    return Err(invalid(
                        url,
                        format!("unknown option s3.{key}; the S3 options are: {}", s3_option_names().join(", ")),
                    ));
                };
                let config_key = AmazonS3ConfigKey::from_str(config_key)
                    .map_err(|e| invalid(url, format!("option s3.{key}: {e}")))?;
                builder = builder.with_config(config_key, value);
            }
        }
    }
    let store = builder
        .with_retry(retry)
        .build()
        .map_err(|e| invalid(url, format!("cannot configure the S3 client: {e}")))?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "s3"))]
fn s3_store(url: &str, _bucket: &str, _options: &StoreOptions) -> Result<Arc<dyn ObjectStore>> {
    Err(invalid(url, "this Sluice was built without S3 support: enable the cargo feature `s3` (sluice/s3)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse() {
        let s3 = Location::parse("s3://bucket/a/b/").unwrap();
        assert_eq!(s3, Location::S3 { bucket: "bucket".into(), key: Path::from("a/b") });
        assert_eq!(s3.url(), "s3://bucket/a/b");
        assert_eq!(Location::parse("S3A://b").unwrap().url(), "s3://b");
        assert!(Location::is_remote("s3a://x/y") && !Location::is_remote("/tmp/s3://"));
        assert_eq!(Location::parse("file:///tmp/x").unwrap(), Location::Local("/tmp/x".into()));
        assert!(matches!(Location::parse("relative/dir").unwrap(), Location::Local(p) if p.is_absolute()));
        for bad in ["", "s3:///key", "s3://b/a//c", "gs://bucket/x", "hdfs://nn/x"] {
            assert!(matches!(Location::parse(bad), Err(CheckpointError::InvalidLocation { .. })), "{bad}");
        }
        assert!(Location::parse("gs://b/x").unwrap_err().to_string().contains("gs:// is not supported"));
    }

    #[test]
    fn local_urls_are_file_paths_and_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let (storage, root) = Storage::open_str(dir.path().to_str().unwrap(), &StoreOptions::default()).unwrap();
        // Local object paths name files literally (`%` and `#` included).
        let obj = Path::parse(format!("{root}/channel=%23en/a b#1x.json")).unwrap();
        assert!(storage.put(&obj, PutPayload::from_static(b"x"), true).unwrap());
        assert!(!storage.put(&obj, PutPayload::from_static(b"y"), true).unwrap(), "create-only");
        let url = storage.url(&obj);
        assert_eq!(url, dir.path().join("channel=%23en/a b#1x.json").display().to_string());
        assert!(FsPath::new(&url).is_file(), "the object is the file its url names");
        assert_eq!(storage.path_of(&url).unwrap(), obj);
        assert_eq!(storage.get(&obj).unwrap().unwrap().as_ref(), b"x");
        let listed: Vec<_> = storage.list(&root).unwrap().into_iter().map(|m| m.location).collect();
        assert_eq!(listed, std::slice::from_ref(&obj));
        assert_eq!(storage.local_file(&obj).unwrap(), FsPath::new(&url));
    }

    #[cfg(not(feature = "s3"))]
    #[test]
    fn s3_needs_the_feature() {
        let e = Storage::open_str("s3://b/k", &StoreOptions::default()).unwrap_err().to_string();
        assert!(e.contains("cargo feature `s3`"), "{e}");
    }

    #[cfg(feature = "s3")]
    #[test]
    fn s3_options_are_checked() {
        let ok = StoreOptions::from_pairs([("endpoint", "http://127.0.0.1:1"), ("ALLOWHTTP", "true"), ("maxRetries", "2")]);
        Storage::open_str("s3://b/k", &ok).unwrap();
        let e = Storage::open_str("s3://b/k", &StoreOptions::from_pairs([("endpiont", "x")])).unwrap_err().to_string();
        assert!(e.contains("unknown option s3.endpiont") && e.contains("s3.endpoint"), "{e}");
        let e = Storage::open_str("s3://b/k", &StoreOptions::from_pairs([("retryTimeoutMs", "soon")])).unwrap_err();
        assert!(e.to_string().contains("option s3.retrytimeoutms"), "{e}");
    }
}
