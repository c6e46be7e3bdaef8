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
