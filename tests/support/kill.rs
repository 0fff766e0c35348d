//! One run of a crash loop (`tests/crash.rs`, `tests/s3.rs`): a child job process either
//! runs to its end or is killed with SIGKILL at a random moment of a batch.

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// How one run of a crash loop ended.
pub enum RunEnd {
    /// Killed (SIGKILL) before it ended by itself.
    Killed,
    /// It ended by itself with this status.
    Exited(ExitStatus),
}

/// With `kill`, waits (polling every `poll`, at most 60 s) until the child has planned a
/// batch (`planned()` moves past `before`, the count before it started), then a random
/// time of up to two batches' worth (`batch_ms` each, drawn from `seed`, an LCG that it
/// advances): mid-fetch, mid-sink-write or mid-commit; then kills the child if it still
/// runs. Otherwise, or when it ended first, waits for its end.
pub fn run_or_kill(mut child: Child, kill: bool, planned: impl Fn() -> usize, before: usize, poll: Duration, batch_ms: u64, seed: &mut u64) -> RunEnd {
    if kill {
        let waited = Instant::now();
        while planned() == before && child.try_wait().unwrap().is_none() && waited.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(poll);
        }
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis((*seed >> 33) % (2 * batch_ms)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            return RunEnd::Killed;
        }
    }
    RunEnd::Exited(child.wait().unwrap())
}
