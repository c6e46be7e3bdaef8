//! OurDB and job-store hardening against real files and processes: atomic first creation
//! (threads and processes), a crash mid-creation, an absurd next id, `check` on databases it
//! used to misread, reads that never create, and a bounded number of open databases.

use herojobs::ourdb::{Config, OurDb, OurDbError};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};

fn herojobs() -> Command {
    Command::new(env!("CARGO_BIN_EXE_herojobs"))
}

#[test]
fn hundred_concurrent_first_opens_from_threads_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("new");
    let barrier = Arc::new(Barrier::new(100));
    let handles: Vec<_> = (0..100)
        .map(|i| {
            let d = d.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let db = OurDb::open(&d, Config::default()).map_err(|e| format!("{i}: {e}"))?;
                let id = db
                    .add(format!("thread {i}").as_bytes())
                    .map_err(|e| e.to_string())?;
                db.close().map_err(|e| e.to_string())?;
                Ok::<u32, String>(id)
            })
        })
        .collect();
    let mut ids: Vec<u32> = handles
        .into_iter()
        .map(|h| h.join().unwrap().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, (1..=100).collect::<Vec<_>>());
}

#[test]
fn hundred_concurrent_first_opens_from_processes_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("new");
    let children: Vec<_> = (0..100)
        .map(|i| {
            let mut c = herojobs()
                .args(["ourdb", "add"])
                .arg(&d)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(format!("process {i}").as_bytes())
                .unwrap();
            c
        })
        .collect();
    let mut ids = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a first open failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ids.push(
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse::<u32>()
                .unwrap(),
        );
    }
    ids.sort();
    assert_eq!(ids, (1..=100).collect::<Vec<_>>());
}

/// Every prefix of a creation (what a crash at each step leaves) opens as a new database.
#[test]
fn creation_cut_short_at_any_step_opens() {
    type Step = fn(&Path);
    let steps: [(&str, Step); 5] = [
        ("empty directory", |_| {}),
        ("lookup/ only", |d| {
            std::fs::create_dir_all(d.join("lookup")).unwrap()
        }),
        ("lock files and an empty 0.db", |d| {
            std::fs::create_dir_all(d.join("lookup")).unwrap();
            std::fs::write(d.join("ourdb.lock"), "").unwrap();
            std::fs::write(d.join("ourdb.open"), "").unwrap();
            std::fs::write(d.join("0.db"), "").unwrap();
        }),
        ("a torn ourdb.json.tmp", |d| {
            std::fs::create_dir_all(d.join("lookup")).unwrap();
            std::fs::write(d.join("ourdb.json.tmp"), "{\"format\":").unwrap();
        }),
        ("preamble-only 0.db and a garbage state file", |d| {
            std::fs::create_dir_all(d.join("lookup")).unwrap();
            std::fs::write(d.join("0.db"), [0u8]).unwrap();
            std::fs::write(d.join("ourdb.state"), [7u8; 64]).unwrap();
        }),
    ];
    for (what, make) in steps {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("db");
        std::fs::create_dir_all(&d).unwrap();
        make(&d);
        let db = OurDb::open(&d, Config::default()).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(db.add(b"first").unwrap(), 1, "{what}");
        db.close().unwrap();
        let db = OurDb::open(&d, Config::default()).unwrap();
        assert_eq!(db.get(1).unwrap(), b"first", "{what}");
    }
}

/// Processes killed at random moments of a first open leave a database that opens.
#[test]
fn killed_during_creation_leaves_a_database_that_opens() {
    for round in 0..20u64 {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("db");
        let mut c = herojobs()
            .args(["ourdb", "add"])
            .arg(&d)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill at a different point of the process's life each round (from at once to
        // after it likely finished); what matters is that every outcome opens.
        std::thread::sleep(std::time::Duration::from_micros(round * round * 250));
        let _ = c.kill();
        let _ = c.wait();
        if !d.exists() {
            continue;
        }
        let db =
            OurDb::open(&d, Config::default()).unwrap_or_else(|e| panic!("round {round}: {e}"));
        let id = db.add(b"after the crash").unwrap();
        assert!(id == 1 || id == 2, "round {round}: id {id}");
        db.close().unwrap();
    }
}

#[test]
fn absurd_next_id_is_refused_and_the_table_does_not_grow() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = OurDb::open(d, Config::default()).unwrap();
    db.add(b"one").unwrap();
    db.close().unwrap();
    std::fs::write(d.join("lookup/.inc"), "4294967295").unwrap();
    let table_before = std::fs::metadata(d.join("lookup/data")).unwrap().len();
    match OurDb::open(d, Config::default()) {
        Err(OurDbError::NextIdImplausible {
            next, bound, path, ..
        }) => {
            assert_eq!(next, 4294967295);
            assert!(bound < 1 << 25, "bound {bound}");
            assert!(path.ends_with("lookup/.inc"));
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("an absurd next id was accepted"),
    }
    assert_eq!(
        std::fs::metadata(d.join("lookup/data")).unwrap().len(),
        table_before
    );
    // The message says what to do; following it (deleting .inc) recovers.
    std::fs::remove_file(d.join("lookup/.inc")).unwrap();
    let db = OurDb::open(d, Config::default()).unwrap();
    assert_eq!(db.add(b"two").unwrap(), 2);
    db.close().unwrap();
    // A plausible gap (ids handed out, never written) is accepted.
    std::fs::write(d.join("lookup/.inc"), "100000").unwrap();
    let db = OurDb::open(d, Config::default()).unwrap();
    assert_eq!(db.add(b"later").unwrap(), 100000);
}

fn make_thirty(d: &Path) {
    let db = OurDb::open(d, Config::default()).unwrap();
    for i in 0..30 {
        db.add(format!("record {i}").as_bytes()).unwrap();
    }
    db.close().unwrap();
}

fn check_cli(d: &Path) -> (bool, String) {
    let out = herojobs().args(["ourdb", "check"]).arg(d).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn check_fails_when_lookup_data_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_thirty(d);
    assert!(check_cli(d).0);
    // Only the dense table lost: it is rebuilt from herolib's dump, nothing is invisible.
    std::fs::remove_file(d.join("lookup/data")).unwrap();
    let (ok, text) = check_cli(d);
    assert!(ok, "{text}");
    assert!(text.contains("30 live records"), "{text}");
    // Table and dump lost: 30 records invisible, and check says so.
    std::fs::remove_dir_all(d.join("lookup_dump.db")).unwrap();
    let (ok, text) = check_cli(d);
    assert!(!ok, "check passed with every record invisible: {text}");
    assert!(text.contains("30 intact records"), "{text}");
}

/// A database whose `lookup/` directory was taken away is rebuilt from herolib's dump when
/// there is one; without it, open says what is missing instead of starting an empty table
/// over records that would all be invisible.
#[test]
fn open_without_the_lookup_directory_rebuilds_from_the_dump_or_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_thirty(d);
    std::fs::remove_dir_all(d.join("lookup")).unwrap();
    let db = OurDb::open(d, Config::default()).unwrap();
    assert_eq!(db.get(30).unwrap(), b"record 29");
    db.close().unwrap();
    std::fs::remove_dir_all(d.join("lookup")).unwrap();
    std::fs::remove_dir_all(d.join("lookup_dump.db")).unwrap();
    match OurDb::open(d, Config::default()) {
        Err(OurDbError::Io { path, source, .. }) => {
            assert!(path.ends_with("lookup/data"), "{}", path.display());
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("opened a database whose table is gone, as if it were empty"),
    }
    assert!(
        !d.join("lookup").exists(),
        "the failed open created lookup/"
    );
}

#[test]
fn check_fails_when_keysize_is_edited() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_thirty(d);
    let json = std::fs::read_to_string(d.join("ourdb.json")).unwrap();
    let edited = json.replace("\"keysize\": 6", "\"keysize\": 2");
    assert_ne!(json, edited);
    std::fs::write(d.join("ourdb.json"), edited).unwrap();
    let (ok, text) = check_cli(d);
    assert!(
        !ok,
        "check passed on a table read with the wrong keysize: {text}"
    );
    assert!(text.contains("keysize"), "{text}");
    // The same without the dump to help: the entries beyond the next id still show it.
    std::fs::remove_dir_all(d.join("lookup_dump.db")).unwrap();
    let (ok, text) = check_cli(d);
    assert!(!ok, "{text}");
    assert!(text.contains("handed out"), "{text}");
}

/// An id reservation that hands out the block asked for (no fleet: this store is alone).
/// A read-only handle (what `herojobs ourdb check` uses) beside a live writer: records the
/// writer adds after the read-only open are no "entries beyond the next id", and writes
/// through the read-only handle are refused.
#[test]
fn read_only_check_beside_a_live_writer_passes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let writer = OurDb::open(d, Config::default()).unwrap();
    for i in 0..10 {
        writer.add(format!("before {i}").as_bytes()).unwrap();
    }
    let ro_cfg = Config {
        read_only: true,
        ..Config::default()
    };
    let reader = OurDb::open(d, ro_cfg).unwrap();
    for i in 0..10 {
        writer.add(format!("after {i}").as_bytes()).unwrap();
    }
    assert_eq!(reader.get(15).unwrap(), b"after 4");
    let problems = reader.check().unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert!(matches!(
        reader.add(b"no"),
        Err(OurDbError::ReadOnly { .. })
    ));
    drop(reader);
    writer.close().unwrap();
}

/// A fleet's id block far ahead of this database's table (other stores handed out the ids
/// between) is not an implausible next id: `reserve_ids` grows the table over the skipped
/// ids (sparsely), so the database reopens, and herolib's dump stays O(live ids).
#[test]
fn reserved_block_far_ahead_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = OurDb::open(d, Config::default()).unwrap();
    db.add(b"first").unwrap();
    assert!(db.reserve_ids(50_000_000, 50_001_000).unwrap());
    assert_eq!(db.add(b"far").unwrap(), 50_000_000);
    db.close().unwrap();
    let db = OurDb::open(d, Config::default()).unwrap();
    assert_eq!(db.get(50_000_000).unwrap(), b"far");
    assert!(db.check().unwrap().is_empty());
    db.close().unwrap();
    let dump = std::fs::metadata(d.join("lookup_dump.db/data"))
        .unwrap()
        .len();
    assert_eq!(dump, 2 * 10, "a mostly-gap table dumps its live ids only");
}
