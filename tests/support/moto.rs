//! A moto server (`moto_server` from PyPI's `moto[server]`, an S3 and Kinesis protocol
//! server) on a free loopback port, for the tests, benches and examples: started by
//! [`Moto::start`], killed when dropped. Self-contained (std only) so that any test,
//! bench or example can include it with `#[path = "support/moto.rs"]`.
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

/// A running moto server; killed when dropped.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    dir: PathBuf,
}

/// `moto_server` on the `PATH`, if any.
pub fn moto_server_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("moto_server")).find(|p| p.is_file())
}

impl Moto {
    /// Starts `moto_server` on a free loopback port and waits until it accepts
    /// connections. `None`, after printing why on stderr, when `moto_server` is not on
    /// the `PATH` (`pip install 'moto[server]'`; `.ci/run` installs it).
    ///
    /// # Panics
    /// When the server does not come up within 60 s.
    pub fn start() -> Option<Moto> {
        Self::start_with(&[])
    }

    /// [`Moto::start`] with extra environment variables for the server (the fault
    /// switches of the module docs).
    pub fn start_with(env: &[(&str, &str)]) -> Option<Moto> {
        let Some(server) = moto_server_path() else {
            eprintln!(
                "SKIPPED: moto_server is not on the PATH; install it with `pip install 'moto[server]'` (.ci/run does) \
                 to run this test against a local Kinesis server"
            );
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let dir = std::env::temp_dir().join(format!("sluice-moto-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("the harness's folder");
        std::fs::write(dir.join("sitecustomize.py"), SITECUSTOMIZE).expect("sitecustomize.py");
        let pythonpath = match std::env::var_os("PYTHONPATH") {
            Some(p) => {
                let mut all = vec![dir.clone()];
                all.extend(std::env::split_paths(&p));
                std::env::join_paths(all).expect("PYTHONPATH")
            }
            None => dir.clone().into_os_string(),
        };
        let log = std::fs::File::create(dir.join("server.log")).expect("the server's log");
        let mut cmd = Command::new(&server);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("PYTHONPATH", pythonpath)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", server.display()));
        let started = Instant::now();
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("moto_server exited ({status}) before listening: {}", read_log(&dir));
            }
            assert!(started.elapsed() < Duration::from_secs(60), "moto_server did not listen within 60 s: {}", read_log(&dir));
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Moto { child, endpoint: format!("http://127.0.0.1:{port}"), dir })
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
