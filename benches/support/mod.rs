//! Helpers shared by the bench binaries (`windowed_agg`, `ad_join`): the row-counting
//! sink log that times batches, percentiles, per-phase means, PySpark plumbing, formatting.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use sluice::prelude::*;
use sluice::{QueryProgressEvent, StreamingQueryListener, StreamingQueryProgress};

/// Every progress report of a session's queries, by batch id, as a listener receives
/// them: each report is delivered once, where polling `recent_progress` would clone up to
/// 100 of them per poll on the bench's own thread, competing with the query for the two
/// cores (about a third of the engine's own instructions in the 1,000-row case).
#[derive(Default)]
pub struct ProgressLog {
    all: Mutex<BTreeMap<u64, StreamingQueryProgress>>,
    /// The batch id a waiter waits for: only its report wakes the waiter, so that a
    /// bench thread waiting for the last of 500 batches does not wake at every one.
    wanted: AtomicU64,
    arrived: Condvar,
}

impl ProgressLog {
    /// A log registered as a listener of `session`'s queries.
    pub fn attach(session: &Session) -> Arc<Self> {
        let log = Arc::new(Self::default());
        session.streams().add_listener(log.clone());
        log
    }

    /// The reports so far, by batch id.
    pub fn progress(&self) -> Vec<StreamingQueryProgress> {
        self.all.lock().expect("progress log").values().cloned().collect()
    }

    /// The latest batch id reported.
    pub fn last_batch(&self) -> Option<u64> {
        self.all.lock().expect("progress log").keys().next_back().copied()
    }

    /// Waits until a batch later than `after` has reported (any batch for `None`); the
    /// latest batch id then, or `None` after `timeout`.
    pub fn wait_past(&self, after: Option<u64>, timeout: Duration) -> Option<u64> {
        let deadline = Instant::now() + timeout;
        let mut all = self.all.lock().expect("progress log");
        self.wanted.store(after.map_or(0, |b| b + 1), Ordering::SeqCst);
        loop {
            let last = all.keys().next_back().copied();
            if last.is_some() && last > after {
                return last;
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            all = self.arrived.wait_timeout(all, left).expect("progress log").0;
        }
    }
}

impl StreamingQueryListener for ProgressLog {
    fn on_query_progress(&self, event: &QueryProgressEvent) {
        let batch = event.progress.batch_id;
        self.all.lock().expect("progress log").insert(batch, event.progress.clone());
        if batch >= self.wanted.load(Ordering::SeqCst) {
            self.arrived.notify_all();
        }
    }
}

/// SplitMix64: a small seeded generator (no extra dependency).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Runs `df` with `AvailableNow` into a row-counting, batch-timing sink, with a
/// checkpoint in `ck` and progress off; returns the wall time from start to the end,
/// every batch's progress and the sink log.
///
/// # Errors
/// When the query fails to start or stops with an error.
pub fn run_available_now(
    df: StreamingDataFrame,
    mode: OutputMode,
    ck: &Path,
) -> sluice::Result<(Duration, Vec<StreamingQueryProgress>, SinkLog)> {
    let log = SinkLog::default();
    let l = log.clone();
    let t0 = Instant::now();
    let query = df
        .write_stream()
        .output_mode(mode)
        .trigger(Trigger::AvailableNow)
        .checkpoint_location(ck)
        .progress(ProgressDisplay::Off)
        .foreach_batch(move |batch, id| {
            l.record(batch, id);
            Ok(())
        })
        .start()?;
    query.await_termination()?;
    Ok((t0.elapsed(), query.recent_progress(), log))
}

/// Runs `df` over `frames` back to back: `frames[0]` is in `stream` before the start, and
/// the `foreach_batch` sink of batch `n` adds frame `n + 1`, so the engine always finds
/// exactly one new frame and never idles. The checkpoint is `ck`, progress display off,
/// append mode. `session` is the one `df` was built in (its listener collects the
/// reports). Returns the wall time from start to the last frame's report, every batch's
/// progress and the sink log.
///
/// # Errors
/// When the query fails to start, stops with an error, or is not done after 30 minutes.
pub fn run_back_to_back(
    session: &Session,
    df: StreamingDataFrame,
    stream: &sluice::connectors::MemoryStream,
    frames: &[DataFrame],
    ck: sluice::checkpoint::Checkpoint,
) -> anyhow::Result<(Duration, Vec<StreamingQueryProgress>, SinkLog)> {
    let reports = ProgressLog::attach(session);
    let log = SinkLog::default();
    let (l, feed) = (log.clone(), stream.clone());
    let mut pending = frames.iter().skip(1).cloned().collect::<Vec<_>>().into_iter();
    if let Some(first) = frames.first() {
        stream.add_data(first.clone())?;
    }
    let t0 = Instant::now();
    let query = df
        .write_stream()
        .output_mode(OutputMode::Append)
        .checkpoint(ck)
        .progress(ProgressDisplay::Off)
        .foreach_batch(move |batch, id| {
            l.record(batch, id);
            if let Some(f) = pending.next() {
                feed.add_data(f)?;
            }
            Ok(())
        })
        .start()?;
    let last = frames.len().saturating_sub(1) as u64;
    // Woken by the last frame's report only (or every second, to notice a failure).
    while reports.last_batch().is_none_or(|b| b < last) {
        anyhow::ensure!(query.is_active(), "query stopped: {:?}", query.exception());
        anyhow::ensure!(t0.elapsed() < Duration::from_secs(1800), "not done after 30 minutes");
        reports.wait_past(last.checked_sub(1), Duration::from_secs(1));
    }
    let wall = t0.elapsed();
    query.process_all_available()?;
    query.stop()?;
    Ok((wall, reports.progress(), log))
}

/// Sink call instants by batch id, and output rows.
#[derive(Clone, Default)]
pub struct SinkLog {
    pub calls: Arc<Mutex<Vec<(u64, Instant)>>>,
    pub out_rows: Arc<AtomicU64>,
}

impl SinkLog {
    pub fn record(&self, batch: &DataFrame, id: u64) {
        self.calls.lock().expect("sink log").push((id, Instant::now()));
        self.out_rows.fetch_add(batch.height() as u64, Ordering::Relaxed);
    }
    /// Latency of each batch `b >= 1` that read data: sink(b) - sink(b - 1).
    pub fn latencies(&self, progress: &[StreamingQueryProgress]) -> Vec<Duration> {
        let calls: BTreeMap<u64, Instant> = self.calls.lock().expect("sink log").iter().copied().collect();
        progress
            .iter()
            .filter(|p| p.num_input_rows > 0 && p.batch_id > 0)
            .filter_map(|p| Some(*calls.get(&p.batch_id)? - *calls.get(&(p.batch_id - 1))?))
            .collect()
    }
}

pub fn fmt_dur(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_default()
}

pub fn percentile(v: &[Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let mut s = v.to_vec();
    s.sort();
    s[((p * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1]
}

pub fn phases(progress: &[StreamingQueryProgress]) -> BTreeMap<String, f64> {
    let data: Vec<_> = progress.iter().filter(|p| p.num_input_rows > 0).collect();
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    for p in &data {
        for (k, v) in &p.duration_ms {
            *sums.entry(k.clone()).or_default() += *v as f64;
        }
    }
    sums.values_mut().for_each(|v| *v /= data.len().max(1) as f64);
    sums
}

pub fn pyspark_available() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import pyspark"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The `RESULT <json>` lines of a finished PySpark script run.
///
/// # Errors
/// When the script failed (its output is in the message) or a line is not JSON.
pub fn python_results(script: &Path, out: &std::process::Output) -> anyhow::Result<Vec<serde_json::Value>> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "{} failed ({}):\n{stdout}\n{}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .map(|l| Ok(serde_json::from_str(l)?))
        .collect()
}
