//! A moto server (`moto_server` from PyPI's `moto[server]`, an S3 and Kinesis protocol
//! server on one HTTP port) on a free loopback port, for the tests, benches and examples:
//! started by [`Moto::start`], waited for until it answers HTTP, killed when dropped.
//! Self-contained (std only) so that any test, bench or example can include it with
//! `#[path = "support/moto.rs"]`.
//!
//! The server is `$MOTO_SERVER` when set, else `moto_server` on the `PATH`.
//! [`Moto::start`] returns `None`, after printing why, when it cannot be started (not
//! installed, or it never answered): the caller then skips its test with that message.
//! With `SLUICE_REQUIRE_MOTO=1` (CI) it panics instead, so that a broken install cannot
//! pass as skipped tests.
//!
//! # What the harness changes in moto (Kinesis only)
//! moto 5.2's Kinesis differs from Kinesis where Sluice's tests look, so the harness
//! loads a `sitecustomize.py` into moto's Python (through `PYTHONPATH`) that patches it:
//! * **resharding**: moto routes a record to the first listed shard whose hash range
//!   holds its key, closed or not, so after a split every record kept going to the closed
//!   parent; and a split or merge re-put the parents' records. Patched as Kinesis
//!   behaves: records go to the open shard of their key, a parent keeps its records.
//! * **faults on demand** (moto never throttles): with `SLUICE_MOTO_THROTTLE_GET_RECORDS=n`
//!   every n-th GetRecords call answers `ProvisionedThroughputExceededException`; with
//!   `SLUICE_MOTO_FAIL_PUT_RECORDS=n` every n-th record of PutRecords calls is reported
//!   failed (`ProvisionedThroughputExceededException`, not stored), as Kinesis does when a
//!   shard is over its write limit.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The patches described in the module docs; Python, imported at interpreter start.
const SITECUSTOMIZE: &str = r#"
# Sluice's test harness (tests/support/moto.rs): makes moto's Kinesis reshard as Kinesis
# does, and injects throttling on demand. Loaded through PYTHONPATH by moto_server only.
import hashlib, itertools, os
try:
    from moto.kinesis import models as _models
    from moto.kinesis.exceptions import InvalidArgumentError as _Invalid
    from moto.core.exceptions import JsonRESTError as _JsonRESTError
except Exception:
    _models = None

if _models is not None:
    def _get_shard_for_key(self, partition_key, explicit_hash_key):
        if not isinstance(partition_key, str) or len(partition_key) > 256:
            raise _Invalid("partition_key")
        if explicit_hash_key:
            key = int(explicit_hash_key)
            if key >= 2 ** 128:
                raise _Invalid("explicit_hash_key")
        else:
            key = int(hashlib.md5(partition_key.encode("utf-8")).hexdigest(), 16)
        for shard in self.shards.values():
            if shard.is_open and shard.starting_hash <= key <= shard.ending_hash:
                return shard
        return None

    def _next_id(self):
        return max(s._shard_id for s in self.shards.values()) + 1

    def _split_shard(self, shard_to_split, new_starting_hash_key):
        start = int(new_starting_hash_key)
        shard = self.shards[shard_to_split]
        if not (shard.starting_hash < start < shard.ending_hash):
            raise _Invalid(f"NewStartingHashKey {start} is not inside shard {shard_to_split}")
        if not shard.is_open:
            raise _Invalid(f"Shard {shard_to_split} has already been merged or split")
        first = _next_id(self)
        for i, (lo, hi) in enumerate([(shard.starting_hash, start - 1), (start, shard.ending_hash)]):
            child = _models.Shard(first + i, starting_hash=lo, ending_hash=hi, parent=shard.shard_id)
            self.shards[child.shard_id] = child
        shard.is_open = False

    def _merge_shards(self, shard_to_merge, adjacent_shard_to_merge):
        a, b = self.shards[shard_to_merge], self.shards[adjacent_shard_to_merge]
        if a.ending_hash + 1 != b.starting_hash and b.ending_hash + 1 != a.starting_hash:
            raise _Invalid(adjacent_shard_to_merge)
        child = _models.Shard(_next_id(self), starting_hash=min(a.starting_hash, b.starting_hash),
                              ending_hash=max(a.ending_hash, b.ending_hash),
                              parent=a.shard_id, adjacent_parent=b.shard_id)
        self.shards[child.shard_id] = child
        a.is_open = False
        b.is_open = False

    _models.Stream.get_shard_for_key = _get_shard_for_key
    _models.Stream.split_shard = _split_shard
    _models.Stream.merge_shards = _merge_shards

    _throttle_every = int(os.environ.get("SLUICE_MOTO_THROTTLE_GET_RECORDS", "0") or 0)
    if _throttle_every > 0:
        _get_records = _models.KinesisBackend.get_records
        _get_calls = itertools.count(1)

        def _throttled_get_records(self, *args, **kwargs):
            if next(_get_calls) % _throttle_every == 0:
                raise _JsonRESTError("ProvisionedThroughputExceededException",
                                     "Rate exceeded for shard (injected by Sluice's test harness)")
            return _get_records(self, *args, **kwargs)

        _models.KinesisBackend.get_records = _throttled_get_records

    _fail_every = int(os.environ.get("SLUICE_MOTO_FAIL_PUT_RECORDS", "0") or 0)
    if _fail_every > 0:
        _put_records = _models.KinesisBackend.put_records
        _put_count = itertools.count(1)

        def _failing_put_records(self, stream_arn, stream_name, records):
            failed = {i for i in range(len(records)) if next(_put_count) % _fail_every == 0}
            kept = [r for i, r in enumerate(records) if i not in failed]
            done = iter(_put_records(self, stream_arn, stream_name, kept)["Records"])
            results = [
                {"ErrorCode": "ProvisionedThroughputExceededException",
                 "ErrorMessage": "Rate exceeded for shard (injected by Sluice's test harness)"}
                if i in failed else next(done)
                for i in range(len(records))
            ]
            return {"FailedRecordCount": len(failed), "Records": results}

        _models.KinesisBackend.put_records = _failing_put_records
"#;

/// How long the server may take to answer its first request (a cold Python start on a
/// loaded machine takes a few seconds).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running moto server; killed when dropped.
pub struct Moto {
    child: Child,
    port: u16,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    dir: PathBuf,
}

/// The server to run: `$MOTO_SERVER`, else `moto_server` on the `PATH`, if any.
pub fn moto_server_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MOTO_SERVER") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("moto_server")).find(|p| p.is_file())
}

impl Moto {
    /// Starts the server on a free loopback port and waits until it answers HTTP. `None`,
    /// after printing why on stderr, when it cannot be started (see the module docs for
    /// `SLUICE_REQUIRE_MOTO`).
    pub fn start() -> Option<Moto> {
        Self::start_with(&[])
    }

    /// [`Moto::start`] with extra environment variables for the server (the fault
    /// switches of the module docs).
    pub fn start_with(env: &[(&str, &str)]) -> Option<Moto> {
        match Self::try_start(env) {
            Ok(m) => Some(m),
            Err(why) => {
                if std::env::var("SLUICE_REQUIRE_MOTO").is_ok_and(|v| v == "1") {
                    panic!("SLUICE_REQUIRE_MOTO=1 but moto_server cannot be started: {why}");
                }
                eprintln!(
                    "SKIPPED: moto_server cannot be started ({why}); install it with `pip install 'moto[server]'` \
                     (.ci/run does) to run this test against a local S3 / Kinesis server"
                );
                None
            }
        }
    }

    fn try_start(env: &[(&str, &str)]) -> Result<Moto, String> {
        let server = moto_server_path().ok_or("moto_server is not on the PATH and MOTO_SERVER is not set")?;
        let mut last = String::new();
        // A port found free can be taken before the server binds it: try a few.
        for _ in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("no free loopback port: {e}"))?
                .port();
            let dir = std::env::temp_dir().join(format!("sluice-moto-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            std::fs::write(dir.join("sitecustomize.py"), SITECUSTOMIZE).map_err(|e| format!("sitecustomize.py: {e}"))?;
            let pythonpath = match std::env::var_os("PYTHONPATH") {
                Some(p) => {
                    let mut all = vec![dir.clone()];
                    all.extend(std::env::split_paths(&p));
                    std::env::join_paths(all).map_err(|e| format!("PYTHONPATH: {e}"))?
                }
                None => dir.clone().into_os_string(),
            };
            let log = std::fs::File::create(dir.join("server.log")).map_err(|e| format!("the server's log: {e}"))?;
            let log2 = log.try_clone().map_err(|e| format!("the server's log: {e}"))?;
            let mut cmd = Command::new(&server);
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("PYTHONPATH", pythonpath)
                .stdin(Stdio::null())
                .stdout(log2)
                .stderr(log);
            for (k, v) in env {
                cmd.env(k, v);
            }
            let child = cmd.spawn().map_err(|e| format!("{}: {e}", server.display()))?;
            let mut moto = Moto { child, port, endpoint: format!("http://127.0.0.1:{port}"), dir };
            let deadline = Instant::now() + STARTUP_TIMEOUT;
            loop {
                if let Ok(Some(status)) = moto.child.try_wait() {
                    last = format!("{} exited with {status} before answering on port {port}: {}", server.display(), read_log(&moto.dir));
                    break;
                }
                if moto.request("GET", "/moto-api/data.json").is_ok() {
                    return Ok(moto);
                }
                if Instant::now() > deadline {
                    return Err(format!("{} did not answer on port {port} within {STARTUP_TIMEOUT:?}: {}", server.display(), read_log(&moto.dir)));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Err(last)
    }

    /// The server's URL (`http://127.0.0.1:<port>`), for `s3.endpoint` / `endpointUrl`.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// The `s3.*` options (without the prefix) that point a client at this server.
    pub fn s3_options(&self) -> Vec<(&'static str, String)> {
        vec![
            ("endpoint", self.endpoint()),
            ("allowHttp", "true".into()),
            ("region", "us-east-1".into()),
            ("accessKeyId", "test".into()),
            ("secretAccessKey", "test".into()),
        ]
    }

    /// Creates bucket `name` (an unsigned `PUT /<name>`, which moto accepts).
    pub fn create_bucket(&self, name: &str) {
        let status = self.request("PUT", &format!("/{name}")).unwrap_or_else(|e| panic!("create bucket {name}: {e}"));
        assert_eq!(status, 200, "create bucket {name}: HTTP {status}");
    }

    /// One HTTP/1.1 request without a body; the response's status code.
    fn request(&self, method: &str, path: &str) -> std::io::Result<u16> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", self.port)?;
        let mut response = String::new();
        s.read_to_string(&mut response)?;
        response
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:.80}")))
    }
}

fn read_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
