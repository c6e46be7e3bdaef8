//! Two real processes adding to one database at once: no id is handed out twice, nothing is
//! corrupted, and a third handle reading meanwhile sees the others' appends.

use herojobs::ourdb::{Config, OurDb};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const DIR_VAR: &str = "HEROJOBS_TEST_CHILD_DIR";
const TAG_VAR: &str = "HEROJOBS_TEST_CHILD_TAG";
const PER_PROCESS: usize = 10_000;

fn payload(tag: &str, i: usize) -> Vec<u8> {
    format!("{tag}-{i}-{}", "x".repeat(i % 50)).into_bytes()
}

#[test]
fn child_adder() {
    let (Ok(dir), Ok(tag)) = (std::env::var(DIR_VAR), std::env::var(TAG_VAR)) else {
        return;
    };
    let db = OurDb::open(&dir, Config::default()).expect("child open");
    for i in 0..PER_PROCESS {
        let id = db.add(&payload(&tag, i)).expect("add");
        println!("ACK {id} {i}");
    }
    db.close().expect("close");
}

#[test]
fn two_processes_adding_never_share_an_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Create the database first so both children open an existing one.
    OurDb::open(dir.path(), Config::default())
        .expect("create")
        .close()
        .expect("close");
    let mut children: Vec<_> = ["p1", "p2"]
        .iter()
        .map(|tag| {
            let child = Command::new(std::env::current_exe().expect("exe"))
                .args(["--exact", "child_adder", "--nocapture", "--test-threads=1"])
                .env(DIR_VAR, dir.path())
                .env(TAG_VAR, tag)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn");
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
    while seen_live < 1000 && handles.iter().any(|h| !h.is_finished()) {
        seen_live = reader.ids().count();
    }
    for h in handles {
        let (tag, acks) = h.join().expect("reader thread");
        assert_eq!(acks.len(), PER_PROCESS, "{tag} acknowledged too few");
        for (id, i) in acks {
            if let Some(prev) = owner.insert(id, (tag.clone(), i)) {
                panic!("id {id} handed to both {prev:?} and {tag}-{i}");
            }
        }
    }
    for (_, c) in children.iter_mut() {
        assert!(c.wait().expect("wait").success());
    }
    assert_eq!(owner.len(), 2 * PER_PROCESS);
    for (id, (tag, i)) in &owner {
        assert_eq!(
            reader.get(*id).expect("read other's record"),
            payload(tag, *i)
        );
    }
    assert!(reader.check().expect("check").is_empty());
    assert_eq!(reader.next_id(), 2 * PER_PROCESS as u64 + 1);
}
