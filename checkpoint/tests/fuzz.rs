//! Byte-mutation fuzzing of every kind of file the checkpoint writes, through the public
//! API: each mutated file reads back as the original value or as `Corrupt` / `Missing`
//! naming the file, never a panic, never another value.
//!
//! Seeded (`SLUICE_FUZZ_SEED`, default fixed) and bounded: every byte flipped (a random
//! non-zero mask, and one bit), every truncation, then random multi-byte mutations (several
//! bytes changed, a byte inserted or removed, a chunk repeated or moved) until a time
//! budget (`SLUICE_FUZZ_MILLIS`, default 1000 ms per file kind). `cargo test -p
//! sluice-checkpoint --test fuzz -- --nocapture` prints the counts.
//!
//! Each file is written once through the API to a local directory (the real format), then
//! each mutation of its bytes is stored raw in an in-memory object store, as a damaged disk
//! would hold it, and read back through a `Checkpoint` on that store: the read path after
//! the store returns the bytes is the same for every store, and memory keeps the loop fast.

#[path = "../../tests/support/rng.rs"]
mod rng;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use rng::Rng;
use sluice_checkpoint::*;

/// One kind of file: how to write it and read it back, as a comparable value.
struct Kind {
    name: &'static str,
    file: &'static str,
    write: fn(&Checkpoint),
    read: fn(&Checkpoint) -> Result<Option<String>>,
}

fn seq() -> OffsetSeq {
    let mut conf = std::collections::BTreeMap::new();
    conf.insert("sluice.state.partitions".to_string(), "4".to_string());
    OffsetSeq {
        metadata: OffsetSeqMetadata { batch_watermark_ms: 1_442_016_000_000, batch_timestamp_ms: 1_700_000_000_123, conf },
        offsets: vec![Some(serde_json::json!({"logOffset": 12})), None, Some(serde_json::json!({"t": {"0": 6, "1": 4}}))],
    }
}

fn commit() -> CommitMetadata {
    CommitMetadata {
        next_batch_watermark_ms: 1_442_016_060_000,
        operator_watermarks_ms: vec![Some(1_442_016_060_000), None],
        state_deltas: vec![vec![0, 2, 3], vec![]],
    }
}

fn source_entry() -> serde_json::Value {
    serde_json::json!({"files": [{"path": "/data/in/part-0007.json", "timestamp": 1_700_000_007_000_i64},
                                 {"path": "/data/in/été 8.json", "timestamp": 1_700_000_008_000_i64}]})
}

/// An arbitrary binary payload (as a state delta's Arrow IPC bytes): random bytes with
/// newlines, the Arrow magic, and a fake trailer-looking text inside and near the end.
fn binary_payload() -> Vec<u8> {
    let mut rng = Rng(0x5eed_0001);
    let mut b: Vec<u8> = b"ARROW1\0\0".to_vec();
    b.extend((0..1500).map(|_| rng.next() as u8));
    b.extend_from_slice(b"\n#sluice crc32=00000000 len=7\n");
    b.extend((0..400).map(|_| rng.next() as u8));
    b.extend_from_slice(b"#sluice crc32=");
    b.extend((0..20).map(|_| rng.next() as u8));
    b
}

fn state_path(ck: &Checkpoint) -> object_store::path::Path {
    ck.paths().state_file(0, 3, 42, StateFileKind::Delta)
}

fn kinds() -> Vec<Kind> {
    vec![
        Kind {
            name: "offset entry",
            file: "offsets/7",
            write: |ck| assert!(ck.offsets().add(7, &seq()).unwrap()),
            read: |ck| Ok(ck.offsets().get(7)?.map(|v| format!("{v:?}"))),
        },
        Kind {
            name: "commit entry",
            file: "commits/7",
            write: |ck| assert!(ck.commits().add(7, &commit()).unwrap()),
            read: |ck| Ok(ck.commits().get(7)?.map(|v| format!("{v:?}"))),
        },
        Kind {
            name: "metadata",
            file: "metadata",
            write: |ck| ck.write_metadata(&CheckpointMetadata { id: "0f8fad5b-d9cb-469f-a165-70867728950e".into() }).unwrap(),
            read: |ck| Ok(ck.read_metadata()?.map(|v| format!("{v:?}"))),
        },
        Kind {
            name: "source log entry",
            file: "sources/0/3",
            write: |ck| assert!(ck.log::<serde_json::Value>("sources/0").add(3, &source_entry()).unwrap()),
            read: |ck| Ok(ck.log::<serde_json::Value>("sources/0").get(3)?.map(|v| v.to_string())),
        },
        Kind {
            name: "state payload (binary)",
            file: "state/0/3/42.delta",
            write: |ck| assert!(ck.put(&state_path(ck), Bytes::from(binary_payload()), false).unwrap()),
            read: |ck| Ok(ck.get(&state_path(ck))?.map(|b| format!("{:?}", b.as_ref()))),
        },
    ]
}

#[derive(Default, Debug)]
struct Tally {
    mutations: u64,
    original: u64,
    corrupt: u64,
    missing: u64,
}

/// A checkpoint on an in-memory store, with the store to damage it and a runtime to do so.
struct Damageable {
    ck: Checkpoint,
    store: Arc<InMemory>,
    rt: tokio::runtime::Runtime,
}

impl Damageable {
    fn new() -> Self {
        let store = Arc::new(InMemory::new());
        let ck = Checkpoint::with_store(store.clone(), Path::default(), "memory://").unwrap();
        Self { ck, store, rt: tokio::runtime::Builder::new_current_thread().build().unwrap() }
    }
    fn write_raw(&self, path: &Path, bytes: &[u8]) {
        self.rt.block_on(self.store.put(path, PutPayload::from(bytes.to_vec()))).unwrap();
    }
}

/// Stores `bytes` as the file, reads it back, and checks the outcome.
fn check(d: &Damageable, kind: &Kind, original: &str, bytes: &[u8], what: &str, tally: &mut Tally) {
    let path = Path::from(kind.file);
    d.write_raw(&path, bytes);
    tally.mutations += 1;
    let outcome = catch_unwind(AssertUnwindSafe(|| (kind.read)(&d.ck)));
    let shown = d.ck.display_path(&path);
    match outcome {
        Err(_) => panic!("{} {}: reading panicked after {what}", kind.name, kind.file),
        Ok(Ok(Some(v))) if v == original => tally.original += 1,
        Ok(Err(CheckpointError::Corrupt { path, reason })) if path == shown && !reason.is_empty() => tally.corrupt += 1,
        Ok(Err(CheckpointError::Missing { path, .. })) if path == shown => tally.missing += 1,
        Ok(other) => panic!("{} {}: after {what}, read {other:?} instead of the original or Corrupt naming {shown}", kind.name, kind.file),
    }
}

#[test]
fn every_mutation_of_every_file_kind_is_the_original_or_named_corrupt() {
    let seed: u64 = std::env::var("SLUICE_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x9e37_79b9_7f4a_7c15);
    let budget = Duration::from_millis(
        std::env::var("SLUICE_FUZZ_MILLIS").ok().and_then(|s| s.parse().ok()).unwrap_or(1000),
    );
    let mut rng = Rng(seed | 1);
    let started = Instant::now();
    let mut total = Tally::default();
    for kind in kinds() {
        let dir = tempfile::tempdir().unwrap();
        let local = Checkpoint::local(dir.path()).unwrap();
        (kind.write)(&local);
        let sealed = std::fs::read(dir.path().join(kind.file)).unwrap();
        let original = (kind.read)(&local).unwrap().expect("written");
        let d = Damageable::new();
        d.write_raw(&Path::from(kind.file), &sealed);
        assert_eq!((kind.read)(&d.ck).unwrap().unwrap(), original, "{}: the same bytes in memory", kind.name);
        let mut tally = Tally::default();
        let t0 = Instant::now();

        // Every byte: a random non-zero mask, then a single bit.
        for i in 0..sealed.len() {
            for mask in [rng.nonzero_byte(), 1u8 << (i % 8)] {
                let mut b = sealed.clone();
                b[i] ^= mask;
                check(&d, &kind, &original, &b, &format!("byte {i} ^= {mask:#04x}"), &mut tally);
            }
        }
        // Every truncation.
        for len in 0..sealed.len() {
            check(&d, &kind, &original, &sealed[..len], &format!("truncation to {len} bytes"), &mut tally);
        }
        let exhaustive = tally.mutations;
        // Random multi-byte mutations until the budget.
        let deadline = Instant::now() + budget;
        while Instant::now() < deadline {
            let mut b = sealed.clone();
            let what = match rng.below(5) {
                0 => {
                    let n = 2 + rng.below(7);
                    for _ in 0..n {
                        let i = rng.below(b.len());
                        b[i] ^= rng.nonzero_byte();
                    }
                    format!("{n} random bytes changed")
                }
                1 => {
                    let i = rng.below(b.len() + 1);
                    b.insert(i, rng.next() as u8);
                    format!("a byte inserted at {i}")
                }
                2 => {
                    let i = rng.below(b.len());
                    b.remove(i);
                    format!("byte {i} removed")
                }
                3 => {
                    let (i, n) = (rng.below(b.len()), 1 + rng.below(64));
                    let chunk: Vec<u8> = b[i..(i + n).min(b.len())].to_vec();
                    let at = rng.below(b.len() + 1);
                    b.splice(at..at, chunk);
                    format!("{n} bytes from {i} repeated at {at}")
                }
                _ => {
                    let (i, j) = (rng.below(b.len()), rng.below(b.len()));
                    b.swap(i, j);
                    if b == sealed {
                        continue;
                    }
                    format!("bytes {i} and {j} swapped")
                }
            };
            if b == sealed {
                continue;
            }
            check(&d, &kind, &original, &b, &format!("{what} (seed {seed})"), &mut tally);
        }
        // The parsers behind the checksum: payloads damaged *and resealed* (as a bug that
        // wrote garbage would leave them) never panic; any outcome but a panic is allowed.
        let payload = checksum::open(&sealed).unwrap().to_vec();
        let mut resealed = 0u64;
        for i in 0..payload.len() {
            let mut p = payload.clone();
            p[i] ^= rng.nonzero_byte();
            for bytes in [checksum::seal(&p), checksum::seal(&payload[..i])] {
                d.write_raw(&Path::from(kind.file), &bytes);
                resealed += 1;
                if catch_unwind(AssertUnwindSafe(|| (kind.read)(&d.ck))).is_err() {
                    panic!("{} {}: parsing a resealed payload panicked (byte {i})", kind.name, kind.file);
                }
            }
        }
        // The file itself gone: `None` for a plain read (the caller decides), no panic.
        d.rt.block_on(d.store.delete(&Path::from(kind.file))).unwrap();
        assert!(matches!((kind.read)(&d.ck), Ok(None)), "{}: a deleted file reads as absent", kind.name);
        // And the intact file still reads back.
        d.write_raw(&Path::from(kind.file), &sealed);
        assert_eq!((kind.read)(&d.ck).unwrap().unwrap(), original);
        println!(
            "{:<24} {:>5} bytes: {:>6} mutations ({exhaustive} exhaustive) in {:>5} ms: {} corrupt, {} missing, {} original; \
             {resealed} resealed payloads parsed without panic",
            kind.name,
            sealed.len(),
            tally.mutations,
            t0.elapsed().as_millis(),
            tally.corrupt,
            tally.missing,
            tally.original
        );
        total.mutations += tally.mutations;
        total.original += tally.original;
        total.corrupt += tally.corrupt;
        total.missing += tally.missing;
    }
    println!("total: {total:?} in {} ms, seed {seed}", started.elapsed().as_millis());
    assert!(total.corrupt > 0);
}
