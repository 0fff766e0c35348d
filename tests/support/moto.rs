//! A real S3 protocol server on the loopback for the tests: moto's `moto_server`
//! (`pip install 'moto[server]'`; `.ci/run` installs it when missing), started on a free
//! port, waited for until it answers HTTP, and killed when the [`Moto`] is dropped.
//!
//! [`Moto::start`] returns `None`, after printing why, when the server cannot be started
//! (not installed, or it never answered): the caller then skips its test with that message.
//! With `SLUICE_REQUIRE_MOTO=1` (CI) it panics instead, so that a broken install cannot
//! pass as skipped tests.
//!
//! Nothing here is S3-specific beyond [`Moto::create_bucket`]: moto serves every AWS
//! service on its one port (Kinesis too), so other suites can share this harness.

#![allow(dead_code)] // each suite uses a part

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the server may take to answer its first request (a cold Python start on a
/// loaded machine takes a few seconds).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `moto_server` (killed on drop).
pub struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    /// Starts `moto_server` (or `$MOTO_SERVER`) on a free loopback port and waits until
    /// it answers HTTP; `None`, after printing why, when it cannot be started (see the
    /// module docs for `SLUICE_REQUIRE_MOTO`).
    pub fn start() -> Option<Moto> {
        match Self::try_start() {
            Ok(m) => Some(m),
            Err(why) => {
                if std::env::var("SLUICE_REQUIRE_MOTO").is_ok_and(|v| v == "1") {
                    panic!("SLUICE_REQUIRE_MOTO=1 but moto_server cannot be started: {why}");
                }
                eprintln!(
                    "SKIPPED: moto_server cannot be started ({why}); install it with `pip install 'moto[server]'` \
                     to run the S3 tests"
                );
                None
            }
        }
    }

    fn try_start() -> Result<Moto, String> {
        let program = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let mut last = String::new();
        // A port found free can be taken before the server binds it: try a few.
        for _ in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("no free loopback port: {e}"))?
                .port();
            let child = Command::new(&program)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("{program}: {e}"))?;
            let mut moto = Moto { child, port };
            let deadline = Instant::now() + STARTUP_TIMEOUT;
            loop {
                if let Ok(Some(status)) = moto.child.try_wait() {
                    last = format!("{program} exited with {status} before answering on port {port}");
                    break;
                }
                if moto.request("GET", "/moto-api/data.json").is_ok() {
                    return Ok(moto);
                }
                if Instant::now() > deadline {
                    return Err(format!("{program} did not answer on port {port} within {STARTUP_TIMEOUT:?}"));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Err(last)
    }

    /// The server's URL (`http://127.0.0.1:<port>`), for `s3.endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
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

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
