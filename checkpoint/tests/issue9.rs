//! The checkpoint defects found by the adversarial run of issue 9, one test each (each
//! failed before its fix), through the public API only.

use bytes::Bytes;
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
