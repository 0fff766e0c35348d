//! The checkpoint defects found by the adversarial run of issue 9, one test each (each
//! failed before its fix), through the public API only.

use bytes::Bytes;
use sluice_checkpoint::*;

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

