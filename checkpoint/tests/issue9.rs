//! The checkpoint defects found by the adversarial run of issue 9, one test each (each
//! failed before its fix), through the public API only.

use std::sync::Arc;

use bytes::Bytes;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use sluice_checkpoint::*;

fn seq(wm: i64) -> OffsetSeq {
    OffsetSeq {
        metadata: OffsetSeqMetadata { batch_watermark_ms: wm, batch_timestamp_ms: 0, conf: Default::default() },
        offsets: vec![Some(serde_json::json!({"logOffset": wm}))],
    }
}

fn commit(wm: i64) -> CommitMetadata {
    CommitMetadata { next_batch_watermark_ms: wm, operator_watermarks_ms: vec![], state_deltas: vec![vec![1]] }
}

/// Every file under `dir`, relative, sorted: what a run wrote.
fn files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

// ---- 1. corrupt files are trusted ----

/// Before: `get` returned the flipped bytes (`Ok(Some(b"ARROW1\0\0sole ipc bytes"))`), the
/// engine then fed them to Arrow.
#[test]
fn a_flipped_byte_in_a_state_delta_is_corrupt_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ck = Checkpoint::local(dir.path()).unwrap();
    let path = ck.paths().state_file(0, 1, 5, StateFileKind::Delta);
    let payload = Bytes::from_static(b"ARROW1\0\0some ipc bytes");
    ck.put(&path, payload.clone(), false).unwrap();
    assert_eq!(ck.get(&path).unwrap().unwrap(), payload, "the caller sees its payload only");
    let file = dir.path().join("state/0/1/5.delta");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[10] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();
    match ck.get(&path) {
        Err(CheckpointError::Corrupt { path, reason }) => {
            assert_eq!(path, file.display().to_string());
            assert!(reason.contains("checksum mismatch"), "{reason}");
        }
        other => panic!("expected Corrupt naming state/0/1/5.delta, got {other:?}"),
    }
    // A file that lost its trailer (or was written without one) is not trusted either.
    std::fs::write(&file, b"ARROW1\0\0some ipc bytes").unwrap();
    let err = ck.get(&path).unwrap_err().to_string();
    assert!(err.contains("state/0/1/5.delta") && err.contains("no checksum trailer"), "{err}");
}

/// The trailer keeps text logs readable: the payload, then one last line.
#[test]
fn text_logs_stay_readable_with_the_trailer_as_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let ck = Checkpoint::local(dir.path()).unwrap();
    ck.commits().add(0, &commit(5)).unwrap();
    let text = std::fs::read_to_string(dir.path().join("commits/0")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0], "v1");
    assert!(lines[1].starts_with("{\"next_batch_watermark_ms\":5"), "{text}");
    assert!(lines[2].starts_with("#sluice crc32=") && lines[2].contains(" len="), "{text}");
    assert_eq!(checksum::open(text.as_bytes()).unwrap(), format!("{}\n{}\n", lines[0], lines[1]).as_bytes());
}

// ---- 2. zombie writer ----

/// Two `Checkpoint`s on one directory: the first claims, the second claims after it; the
/// first's next writes fail with `NotOwner` naming the second run and write nothing.
/// Before: there was no ownership at all (the zombie re-wrote batches 5-38).
#[test]
fn a_superseded_run_writes_nothing_and_names_the_run_that_took_over() {
    let dir = tempfile::tempdir().unwrap();
    let first = Checkpoint::local(dir.path()).unwrap();
    let second = Checkpoint::local(dir.path()).unwrap();
    let mine = first.claim("run-a").unwrap();
    assert_eq!((mine.number, mine.run_id.as_str(), mine.pid), (0, "run-a", std::process::id()));
    first.offsets().add(5, &seq(5)).unwrap();
    first.ensure_owner().unwrap();

    let theirs = second.claim("run-b").unwrap();
    assert_eq!(theirs.number, 1);
    second.offsets().add(6, &seq(6)).unwrap();
    let before = files(dir.path());

    let state = first.paths().state_file(0, 0, 6, StateFileKind::Delta);
    let attempts: Vec<(&str, Result<()>)> = vec![
        ("put", first.put(&state, Bytes::from_static(b"zombie"), false).map(|_| ())),
        ("commits().add", first.commits().add(5, &commit(1)).map(|_| ())),
        ("offsets().add", first.offsets().add(7, &seq(7)).map(|_| ())),
        ("delete", first.delete(&first.offsets().path(6))),
        ("purge_before", first.offsets().purge_before(100)),
        ("ensure_owner", first.ensure_owner()),
    ];
    for (what, result) in attempts {
        match result {
            Err(CheckpointError::NotOwner { claimed_by, run_id, by, ref path, .. }) => {
                assert_eq!(claimed_by, "run-b", "{what}");
                assert_eq!(run_id, "run-a", "{what}");
                assert_eq!(by.claim, theirs, "{what}");
                assert!(by.claim_path.ends_with("runs/1"), "{what}: {}", by.claim_path);
                assert!(!path.is_empty(), "{what}");
            }
            other => panic!("{what}: expected NotOwner, got {other:?}"),
        }
    }
    assert_eq!(files(dir.path()), before, "the superseded run wrote and deleted nothing");
    let msg = first.commits().add(5, &commit(1)).unwrap_err().to_string();
    assert!(msg.contains("run-b") && msg.contains("commits/5") && msg.contains(&theirs.started_at), "{msg}");
    assert!(msg.contains("stop this query"), "says what to do: {msg}");
    // The owner goes on.
    second.commits().add(6, &commit(2)).unwrap();
    second.ensure_owner().unwrap();
}

/// Claiming keeps only the newest few claims, and a run whose own claim was purged (it
/// slept through more than `KEEP_RUN_CLAIMS` restarts) still finds out it was superseded.
#[test]
fn old_claims_are_purged_and_a_long_sleeper_is_still_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sleeper = Checkpoint::local(dir.path()).unwrap();
    sleeper.claim("sleeper").unwrap();
    let mut last = None;
    for i in 0..KEEP_RUN_CLAIMS + 3 {
        let ck = Checkpoint::local(dir.path()).unwrap();
        last = Some(ck.claim(&format!("run-{i}")).unwrap());
    }
    let last = last.unwrap();
    let mut claims: Vec<u64> =
        std::fs::read_dir(dir.path().join("runs")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap().parse().unwrap()).collect();
    claims.sort();
    assert_eq!(claims, ((last.number + 1 - KEEP_RUN_CLAIMS)..=last.number).collect::<Vec<_>>());
    assert!(!dir.path().join("runs/0").exists() && !dir.path().join("runs/1").exists());
    match sleeper.offsets().add(0, &seq(0)) {
        Err(CheckpointError::NotOwner { claimed_by, .. }) => assert_eq!(claimed_by, last.run_id),
        other => panic!("expected NotOwner, got {other:?}"),
    }
    assert!(!dir.path().join("offsets").exists());
}

/// A `Checkpoint` that never claimed behaves as before: no check, no `runs/`.
#[test]
fn an_unclaimed_checkpoint_does_not_check_ownership() {
    let dir = tempfile::tempdir().unwrap();
    let other = Checkpoint::local(dir.path()).unwrap();
    other.claim("someone").unwrap();
    let raw = Checkpoint::local(dir.path()).unwrap();
    raw.offsets().add(0, &seq(0)).unwrap();
    raw.ensure_owner().unwrap();
    assert!(raw.current_claim().is_none());
}

// ---- 3. temporary files ----

/// Before: `list_names` returned `5.delta%231` (a temporary written under a store that
/// lists it) and `claim` did not exist, so `offsets/7#1` stayed forever.
#[test]
fn temporaries_are_never_listed_and_claiming_removes_them() {
    let store = Arc::new(InMemory::new());
    let ck = Checkpoint::with_store(store.clone(), Path::default(), "memory://").unwrap();
    ck.put(&ck.paths().state_file(0, 0, 4, StateFileKind::Delta), Bytes::from_static(b"x"), false).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    for name in ["state/0/0/5.delta#1", "offsets/7#1"] {
        rt.block_on(store.put(&Path::from(name), PutPayload::from_static(b"half"))).unwrap();
        rt.block_on(store.put(&Path::parse(name).unwrap(), PutPayload::from_static(b"half"))).unwrap();
    }
    assert_eq!(ck.list_names(&ck.paths().state_dir(0, 0)).unwrap(), ["4.delta"]);
    assert_eq!(ck.list_recursive(&Path::from("state")).unwrap().len(), 1);
    assert!(ck.offsets().batch_ids().unwrap().is_empty());

    let dir = tempfile::tempdir().unwrap();
    let ck = Checkpoint::local(dir.path()).unwrap();
    ck.offsets().add(6, &seq(6)).unwrap();
    std::fs::write(dir.path().join("offsets/7#1"), b"v1\n{\"batchWat").unwrap();
    std::fs::create_dir_all(dir.path().join("state/0/3")).unwrap();
    std::fs::write(dir.path().join("state/0/3/9.delta#2"), b"ARROW").unwrap();
    std::fs::write(dir.path().join("state/0/3/a#b"), b"not a temporary").unwrap();
    assert_eq!(ck.offsets().batch_ids().unwrap(), [6]);
    assert_eq!(ck.list_names(&ck.paths().state_dir(0, 3)).unwrap(), ["a#b"]);
    ck.claim("run").unwrap();
    assert!(!dir.path().join("offsets/7#1").exists());
    assert!(!dir.path().join("state/0/3/9.delta#2").exists());
    assert!(dir.path().join("state/0/3/a#b").exists(), "only object_store's `#<digits>` temporaries");
}

// ---- 4. a deleted log entry must not be silently skipped ----

/// Before: the file source rebuilt its set of files from `batch_ids()`, which returned
/// `[2, 3]` when `sources/0/1` was deleted (the first entry: no hole to see).
#[test]
fn a_deleted_first_source_log_entry_is_named() {
    let ck = Checkpoint::in_memory().unwrap();
    let log = ck.log::<serde_json::Value>("sources/0");
    assert!(log.entries(1..).unwrap().is_empty(), "an empty log has no entries");
    for b in 1..=3 {
        log.add(b, &serde_json::json!({"files": [format!("f{b}")]})).unwrap();
    }
    let all = log.entries(1..).unwrap();
    assert_eq!(all.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(all[1].1, serde_json::json!({"files": ["f2"]}));
    ck.delete(&log.path(1)).unwrap();
    assert_eq!(log.batch_ids().unwrap(), [2, 3], "a listing alone cannot see it");
    for result in [log.entries(1..).map(|_| ()), log.require_range(1, 3), log.entries(1..=3).map(|_| ())] {
        match result {
            Err(CheckpointError::Missing { path, reason }) => {
                assert!(path.ends_with("sources/0/1"), "{path}");
                assert!(reason.contains("batch 1"), "{reason}");
            }
            other => panic!("expected Missing sources/0/1, got {other:?}"),
        }
    }
    assert_eq!(log.entries(2..).unwrap().len(), 2);
    match log.entries(2..=4) {
        Err(CheckpointError::Missing { path, .. }) => assert!(path.ends_with("sources/0/4"), "{path}"),
        other => panic!("a bounded end must exist: {other:?}"),
    }
}

/// Before: `recovery()` answered `Replay { batch_id: 3 }` for offsets 0..=3 and commits
/// 1..=2 (commits/0 deleted).
#[test]
fn a_commit_log_that_lost_its_first_entries_is_named() {
    let ck = Checkpoint::in_memory().unwrap();
    for b in 0..=3 {
        ck.offsets().add(b, &seq(b as i64)).unwrap();
    }
    for b in 1..=2 {
        ck.commits().add(b, &commit(0)).unwrap();
    }
    match ck.recovery() {
        Err(CheckpointError::Missing { path, reason }) => {
            assert!(path.ends_with("commits/0"), "{path}");
            assert!(reason.contains("commit log starts at batch 1"), "{reason}");
        }
        other => panic!("expected Missing commits/0, got {other:?}"),
    }
    ck.commits().add(0, &commit(0)).unwrap();
    assert_eq!(ck.recovery().unwrap(), Recovery::Replay { batch_id: 3 });
}

/// The purge horizon: purging (offsets first, then commits) and a crash between the two
/// purges are fine; a hole above the horizon is named; a purge goes past a hole.
#[test]
fn purged_entries_are_legitimately_gone_and_holes_are_not() {
    let ck = Checkpoint::in_memory().unwrap();
    for b in 0..=9 {
        ck.offsets().add(b, &seq(b as i64)).unwrap();
        ck.commits().add(b, &commit(0)).unwrap();
    }
    ck.offsets().purge_before(4).unwrap(); // crash before the commit log's purge
    assert_eq!(ck.recovery().unwrap(), Recovery::Continue { last_committed: 9 });
    ck.purge_logs_before(4).unwrap();
    assert_eq!(ck.offsets().batch_ids().unwrap(), (4..=9).collect::<Vec<_>>());
    assert_eq!(ck.recovery().unwrap(), Recovery::Continue { last_committed: 9 });
    ck.delete(&ck.commits().path(6)).unwrap();
    match ck.recovery() {
        Err(CheckpointError::Missing { path, reason }) => {
            assert!(path.ends_with("commits/6"), "{path}");
            assert!(reason.contains("gap"), "{reason}");
        }
        other => panic!("expected the gap at commits/6, got {other:?}"),
    }
    ck.purge_logs_before(8).unwrap();
    assert_eq!(ck.commits().batch_ids().unwrap(), [8, 9], "the purge went past the hole");
}
