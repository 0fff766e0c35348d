//! `sluice explain` on the checkpoint of a `sluice sql` run over oracle case p05's wiki
//! edits: every batch is re-run, explained, and equals what the Parquet sink holds.

use std::path::{Path, PathBuf};
use std::process::Command;

fn sluice(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn copy_ordered(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    let mut names: Vec<PathBuf> = std::fs::read_dir(from).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    for (i, f) in names.iter().enumerate() {
        let d = to.join(f.file_name().unwrap());
        std::fs::copy(f, &d).unwrap();
        let file = std::fs::File::options().write(true).open(&d).unwrap();
        file.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000 + i as u64)).unwrap();
    }
}

#[test]
fn explain_replays_each_batch_of_a_sluice_sql_checkpoint() {
    let work = std::env::temp_dir().join(format!("sluice-cli-explain-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    copy_ordered(&root.join("tests/oracle/cases/p05_wiki_edits/input"), &work.join("in"));
    let (ck, out) = (work.join("ck"), work.join("out"));
    let (ok, _, err) = sluice(&[
        "sql",
        "SELECT window(time, '10 minutes') AS window, channel, count(*) AS edits FROM edits GROUP BY window(time, '10 minutes'), channel",
        "--source",
        &format!("edits=json:{}", work.join("in").display()),
        "--schema",
        "edits=time timestamp, channel string, page string, user string, isRobot boolean, isNew boolean, delta bigint, added bigint, deleted bigint",
        "--option",
        "edits.maxFilesPerTrigger=1",
        "--watermark",
        "edits.time=1 minute",
        "--trigger",
        "available-now",
        "--checkpoint",
        &ck.display().to_string(),
        "--sink",
        &format!("parquet:{}", out.display()),
    ]);
    assert!(ok, "{err}");
    let batches = std::fs::read_dir(ck.join("commits")).unwrap().count() as u64;
    assert!(batches >= 20);
    for n in 0..batches {
        let (ok, stdout, err) = sluice(&["explain", "--checkpoint", &ck.display().to_string(), "--batch", &n.to_string()]);
        assert!(ok, "batch {n}: {err}");
        assert!(stdout.starts_with(&format!("batch {n}: watermark ")), "{stdout}");
        assert!(stdout.contains(&format!("the replay equals the sink's batch {n}")), "{stdout}");
        assert!(!stdout.contains("-- emitted"), "emitted rows are listed as output");
    }
    // --where keeps the rows of one channel, in the output and among the input rows
    let last = (batches - 1).to_string();
    let (ok, all, err) = sluice(&["explain", "--checkpoint", &ck.display().to_string(), "--batch", &last]);
    assert!(ok, "{err}");
    let (ok, some, err) =
        sluice(&["explain", "--checkpoint", &ck.display().to_string(), "--batch", &last, "--where", "channel = '#en.wikipedia'"]);
    assert!(ok, "{err}");
    assert!(some.starts_with("(only rows where channel = '#en.wikipedia')"), "{some}");
    let rows = |t: &str| t.lines().filter(|l| l.starts_with("  {")).count();
    assert!(rows(&some) < rows(&all), "{some}");
    for l in some.lines().filter(|l| l.starts_with("  {")) {
        assert!(l.contains("#en.wikipedia"), "{l}");
    }
    let (ok, _, err) = sluice(&["explain", "--checkpoint", &work.join("in").display().to_string(), "--batch", "0"]);
    assert!(!ok && err.contains("holds no query"), "{err}");
    let _ = std::fs::remove_dir_all(&work);
}
