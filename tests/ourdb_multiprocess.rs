//! Two real processes adding to one database at once: no id is handed out twice, nothing is
//! corrupted, and a third handle reading meanwhile sees the others' appends. In `periodic`
//! and in `strict` mode, where a writer keeps the file lock until its fsync round has
//! published its lookup entries.

use herojobs::ourdb::{Config, Durability, OurDb};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const DIR_VAR: &str = "HEROJOBS_TEST_CHILD_DIR";
const TAG_VAR: &str = "HEROJOBS_TEST_CHILD_TAG";
const COUNT_VAR: &str = "HEROJOBS_TEST_CHILD_COUNT";
const STRICT_VAR: &str = "HEROJOBS_TEST_CHILD_STRICT";

fn payload(tag: &str, i: usize) -> Vec<u8> {
    format!("{tag}-{i}-{}", "x".repeat(i % 50)).into_bytes()
}

#[test]
fn child_adder() {
    let (Ok(dir), Ok(tag), Ok(count)) = (
        std::env::var(DIR_VAR),
        std::env::var(TAG_VAR),
        std::env::var(COUNT_VAR),
    ) else {
        return;
    };
    let count: usize = count.parse().expect("count");
    let config = Config {
        durability: if std::env::var(STRICT_VAR).is_ok() {
            Durability::Strict
        } else {
            Durability::Periodic
        },
        ..Config::default()
    };
    let db = OurDb::open(&dir, config).expect("child open");
    for i in 0..count {
        let id = db.add(&payload(&tag, i)).expect("add");
        println!("ACK {id} {i}");
    }
    db.close().expect("close");
}

#[test]
fn two_processes_adding_never_share_an_id() {
    two_processes_add(10_000, false);
}

#[test]
fn two_processes_adding_in_strict_mode_never_share_an_id() {
    // Each strict add waits for an fsync (≈ 0.1–0.3 ms here): fewer records keep it short.
    two_processes_add(2_000, true);
}

fn two_processes_add(per_process: usize, strict: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    // Create the database first so both children open an existing one.
    OurDb::open(dir.path(), Config::default())
        .expect("create")
        .close()
        .expect("close");
    let mut children: Vec<_> = ["p1", "p2"]
        .iter()
        .map(|tag| {
            let mut cmd = Command::new(std::env::current_exe().expect("exe"));
            cmd.args(["--exact", "child_adder", "--nocapture", "--test-threads=1"])
                .env(DIR_VAR, dir.path())
                .env(TAG_VAR, tag)
                .env(COUNT_VAR, per_process.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit());
            if strict {
                cmd.env(STRICT_VAR, "1");
            }
            let child = cmd.spawn().expect("spawn");
            (tag.to_string(), child)
        })
        .collect();
    let reader = OurDb::open(dir.path(), Config::default()).expect("reader open");
    let mut owner: HashMap<u32, (String, usize)> = HashMap::new();
    let mut seen_live = 0;
    let handles: Vec<_> = children
        .iter_mut()
        .map(|(tag, child)| {
            let out = child.stdout.take().expect("stdout");
            let tag = tag.clone();
            std::thread::spawn(move || {
                let mut acks = Vec::new();
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if let Some(rest) = line.split_once("ACK ").map(|(_, r)| r) {
                        let mut p = rest.split(' ');
                        let id: u32 = p.next().and_then(|s| s.parse().ok()).expect("id");
                        let i: usize = p.next().and_then(|s| s.parse().ok()).expect("i");
                        acks.push((id, i));
                    }
                }
                (tag, acks)
            })
        })
        .collect();
    // While they run, the reader follows the table as it grows.
    while seen_live < per_process / 10 && handles.iter().any(|h| !h.is_finished()) {
        seen_live = reader.ids().count();
    }
    for h in handles {
        let (tag, acks) = h.join().expect("reader thread");
        assert_eq!(acks.len(), per_process, "{tag} acknowledged too few");
        for (id, i) in acks {
            if let Some(prev) = owner.insert(id, (tag.clone(), i)) {
                panic!("id {id} handed to both {prev:?} and {tag}-{i}");
            }
        }
    }
    for (_, c) in children.iter_mut() {
        assert!(c.wait().expect("wait").success());
    }
    assert_eq!(owner.len(), 2 * per_process);
    for (id, (tag, i)) in &owner {
        assert_eq!(
            reader.get(*id).expect("read other's record"),
            payload(tag, *i)
        );
    }
    let problems = reader.check().expect("check");
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(reader.next_id(), 2 * per_process as u64 + 1);
}

/// Where `lookup/mark` says the table is durable up to: (file number, position) of its valid
/// slot with the higher sequence number (docs/ourdb-format.md, "`lookup/mark`").
fn mark_location(dir: &std::path::Path) -> (u16, u64) {
    let bytes = std::fs::read(dir.join("lookup/mark")).expect("mark");
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8"));
    let best = bytes
        .chunks_exact(32)
        .filter(|s| &s[0..4] == b"HJM1")
        .filter(|s| u32::from_le_bytes(s[4..8].try_into().expect("4")) == crc32fast::hash(&s[8..]))
        .max_by_key(|s| word(s, 8))
        .expect("a valid mark slot");
    let at = word(best, 24);
    ((at >> 48) as u16, at & ((1 << 48) - 1))
}

/// A writer killed between checkpoints leaves records past the mark. A handle that was open
/// beside it and wrote nothing makes them durable when it closes (moves the mark past them)
/// rather than leaving them to the kernel until some later writer checkpoints.
#[test]
fn a_reader_closing_after_a_killed_writer_moves_the_mark_past_its_records() {
    // The killed child may have checkpointed right after its last acknowledged add (it does
    // every second): then nothing acknowledged lies past the mark, and the round is run again.
    for _ in 0..5 {
        if reader_close_after_kill() {
            return;
        }
    }
    panic!("in 5 rounds the killed writer never left an acknowledged record past the mark");
}

/// One round; false when the kill left no acknowledged record past the mark.
fn reader_close_after_kill() -> bool {
    let dir = tempfile::tempdir().expect("tempdir");
    OurDb::open(dir.path(), Config::default())
        .expect("create")
        .close()
        .expect("close");
    let reader = OurDb::open(dir.path(), Config::default()).expect("reader open");
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .args(["--exact", "child_adder", "--nocapture", "--test-threads=1"])
        .env(DIR_VAR, dir.path())
        .env(TAG_VAR, "killed")
        .env(COUNT_VAR, "100000000")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    // (id, index of its payload) of every acknowledged add.
    let mut ack = |line: String| -> Option<(u32, usize)> {
        let rest = line.split_once("ACK ")?.1.to_string();
        let (id, i) = rest.split_once(' ')?;
        Some((id.parse().ok()?, i.parse().ok()?))
    };
    let mut last = None;
    let mut seen = 0;
    for a in lines.by_ref().map_while(Result::ok).filter_map(&mut ack) {
        last = Some(a);
        seen += 1;
        if seen == 200 {
            break;
        }
    }
    assert_eq!(seen, 200, "the child acknowledged too few adds");
    child.kill().expect("kill");
    child.wait().expect("wait");
    // What it printed before it died: the last acknowledged add.
    let (id, i) = lines
        .map_while(Result::ok)
        .filter_map(&mut ack)
        .last()
        .or(last)
        .expect("acknowledged adds");
    // The end of that record (12-byte header); the file may end further (a record written
    // but not acknowledged when the kill came).
    let at = reader
        .location(id)
        .expect("location")
        .expect("acknowledged id");
    let acked_end = at.position as u64 + 12 + payload("killed", i).len() as u64;
    if mark_location(dir.path()).1 >= acked_end {
        return false;
    }
    reader.close().expect("reader close");
    let (nr, position) = mark_location(dir.path());
    let data_end = std::fs::metadata(dir.path().join("0.db"))
        .expect("0.db")
        .len();
    assert_eq!(nr, 0);
    assert!(
        (acked_end..=data_end).contains(&position),
        "mark at {position}: not past the acknowledged records (end {acked_end})"
    );
    true
}
