//! Crash safety with real processes: a child adds records and prints each acknowledged id;
//! the test SIGKILLs it at a random moment, reopens, and checks that every acknowledged id
//! reads back exactly and that the next id is above all of them; in `periodic` and in
//! `strict` mode (which publishes lookup entries only in the fsync round after the write).
//! The same for a child that is compacting when it dies. And power losses written out as the
//! files a disk could hold: a table entry torn across two pages, by a write or a delete.
//!
//! The child is this test binary itself, re-run with `--exact child_*` and an environment
//! variable that tells the child test to do its work (without it, the child tests return).

use herojobs::ourdb::{Config, Durability, OurDb};
use rand::Rng;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DIR_VAR: &str = "HEROJOBS_TEST_CHILD_DIR";
const STRICT_VAR: &str = "HEROJOBS_TEST_CHILD_STRICT";
const BATCH_VAR: &str = "HEROJOBS_TEST_CHILD_BATCH";

/// The content the child writes for id `id` at version `v`: derived, so the parent can check it.
fn payload(id: u32, v: u32) -> Vec<u8> {
    let len = if id.is_multiple_of(97) {
        70_000
    } else {
        (id as usize * 7 + v as usize) % 600
    };
    (0..len)
        .map(|i| (id as usize * 31 + v as usize * 7 + i) as u8)
        .collect()
}

fn small_files() -> Config {
    Config {
        file_size: 256 * 1024,
        ..Config::default()
    }
}

#[test]
fn child_writer() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    if std::env::var(BATCH_VAR).is_ok() {
        return;
    }
    let mut config = small_files();
    if std::env::var(STRICT_VAR).is_ok() {
        config.durability = Durability::Strict;
    }
    let db = OurDb::open(&dir, config).expect("child open");
    loop {
        let id = db.add(&payload(db.next_id() as u32, 0)).expect("add");
        // The payload must match the id it got; re-set it if a racing id assignment differed.
        if db.get(id).expect("get") != payload(id, 0) {
            db.set(id, &payload(id, 0)).expect("set");
        }
        println!("ACK {id} 0");
        if id.is_multiple_of(5) {
            db.set(id, &payload(id, 1)).expect("set");
            println!("ACK {id} 1");
        }
    }
}

/// Ids below this are never handed out by `add` in the batch child's database (it reserves
/// its first block above them): it writes there with `put_many`, as a fleet's store records
/// jobs another store allocated.
const FOREIGN_GAP: u64 = 20_000;

#[test]
fn child_batch_writer() {
    let Ok(dir) = std::env::var(BATCH_VAR).and(std::env::var(DIR_VAR)) else {
        return;
    };
    let config = Config {
        durability: Durability::Strict,
        ..small_files()
    };
    let db = OurDb::open(&dir, config).expect("child open");
    let mut rng = rand::thread_rng();
    loop {
        let k = rng.gen_range(1..40u64);
        let next = db.next_id().max(FOREIGN_GAP + 1);
        if db.id_limit() == 0 || next + k > db.id_limit() {
            db.reserve_ids(next, next + 1000).expect("reserve");
        }
        let next = db.next_id();
        let datas: Vec<Vec<u8>> = (0..k).map(|i| payload((next + i) as u32, 0)).collect();
        let ids = db
            .add_many(datas.iter().map(|d| d.as_slice()))
            .expect("add_many");
        assert_eq!(ids[0] as u64, next, "one writer: ids are the next ones");
        for id in &ids {
            println!("ACK {id} 0");
        }
        let sets: Vec<(u32, Vec<u8>)> = ids
            .iter()
            .filter(|id| id.is_multiple_of(5))
            .map(|&id| (id, payload(id, 1)))
            .collect();
        if !sets.is_empty() {
            db.set_many(sets.iter().map(|(id, d)| (*id, d.as_slice())))
                .expect("set_many");
            for (id, _) in &sets {
                println!("ACK {id} 1");
            }
        }
        // Foreign ids only ever hold version 0, so a later child writing one again
        // writes the same bytes.
        let puts: Vec<(u32, Vec<u8>)> = (0..3)
            .map(|_| {
                let id = rng.gen_range(1..FOREIGN_GAP as u32);
                (id, payload(id, 0))
            })
            .collect();
        db.put_many(puts.iter().map(|(id, d)| (*id, d.as_slice())))
            .expect("put_many");
        for (id, _) in &puts {
            println!("ACK {id} 0");
        }
    }
}

#[test]
fn child_compactor() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let db = OurDb::open(&dir, small_files()).expect("child open");
    loop {
        db.compact().expect("compact");
        println!("COMPACTED");
    }
}

fn spawn_child(test: &str, dir: &Path, strict: bool) -> std::process::Child {
    let mut cmd = Command::new(std::env::current_exe().expect("current exe"));
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(DIR_VAR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if strict {
        cmd.env(STRICT_VAR, "1");
    }
    if test == "child_batch_writer" {
        cmd.env(BATCH_VAR, "1");
    }
    cmd.spawn().expect("spawn child")
}

/// Reads acknowledged `(id, version)` lines until `stop_after` of them arrived or the deadline.
fn read_acks(child: &mut std::process::Child, stop_after: usize, acked: &mut BTreeMap<u32, u32>) {
    let stdout = child.stdout.take().expect("stdout");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    // libtest prints "test name ... " without a newline before the first line of output.
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if let Some(rest) = line.split_once("ACK ").map(|(_, r)| r) {
            let mut parts = rest.split(' ');
            let id: u32 = parts.next().and_then(|p| p.parse().ok()).expect("ack id");
            let v: u32 = parts
                .next()
                .and_then(|p| p.parse().ok())
                .expect("ack version");
            acked.insert(id, v);
            n += 1;
            if n >= stop_after || Instant::now() > deadline {
                break;
            }
        }
    }
}

#[test]
fn sigkill_at_random_points_loses_no_acknowledged_record() {
    sigkill_rounds(false, 25, 4000);
}

#[test]
fn sigkill_in_strict_mode_loses_no_acknowledged_record() {
    // Every strict write waits for an fsync round: fewer acknowledgements per round.
    sigkill_rounds(true, 20, 1000);
}

/// `strict` batches (one pwrite and one fsync per call, committed by their commit record),
/// sets of several ids at once, and writes at ids OurDB never handed out (`put_many`): after
/// a kill at any instant, open replays the commit records past the table's durable mark.
#[test]
fn sigkill_during_strict_batches_and_foreign_puts_loses_no_acknowledged_record() {
    sigkill_child_rounds("child_batch_writer", true, 20, 3000);
}

fn sigkill_rounds(strict: bool, rounds: usize, max_acks: usize) {
    sigkill_child_rounds("child_writer", strict, rounds, max_acks)
}

fn sigkill_child_rounds(child_test: &str, strict: bool, rounds: usize, max_acks: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = rand::thread_rng();
    let mut acked: BTreeMap<u32, u32> = BTreeMap::new();
    for round in 0..rounds {
        let mut child = spawn_child(child_test, dir.path(), strict);
        let stop_after = rng.gen_range(1..max_acks);
        read_acks(&mut child, stop_after, &mut acked);
        // Let it run on a little past the last ack we read, so the kill lands mid-write.
        std::thread::sleep(Duration::from_micros(rng.gen_range(0..3000)));
        child.kill().expect("kill");
        child.wait().expect("wait");
        if round % 2 == 1 {
            // As after a power loss that lost the (never fsynced) state file's last page:
            // the append position goes back to the start. Open must not trust it and write
            // over acknowledged records (or, in strict mode, into the fill ahead of them).
            forge_stale_append_position(dir.path());
        }

        let db = OurDb::open(dir.path(), small_files()).expect("reopen after kill");
        for (&id, &v) in &acked {
            let got = db
                .get(id)
                .unwrap_or_else(|e| panic!("round {round}: id {id}: {e}"));
            // A version newer than the acknowledged one may have landed before the kill.
            assert!(
                got == payload(id, v) || got == payload(id, v + 1),
                "round {round}: id {id} holds wrong data"
            );
        }
        let max = acked
            .keys()
            .copied()
            .filter(|id| child_test != "child_batch_writer" || *id as u64 > FOREIGN_GAP)
            .max()
            .unwrap_or(0);
        assert!(
            db.next_id() > max as u64,
            "round {round}: next id {} <= acked {max}",
            db.next_id()
        );
        let problems = db.check().expect("check");
        assert!(problems.is_empty(), "round {round}: {problems:?}");
        db.close().expect("close");
    }
    assert!(
        acked.len() > 100,
        "children acknowledged too little: {}",
        acked.len()
    );
}

/// Sets the append position in `ourdb.state` (bytes 16..24, little endian; see
/// docs/ourdb-format.md) to 1, the first position a record can have.
fn forge_stale_append_position(dir: &Path) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("ourdb.state"))
        .expect("open state");
    f.write_all_at(&1u64.to_le_bytes(), 16).expect("forge");
}

#[test]
fn sigkill_during_compaction_leaves_all_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut expected = BTreeMap::new();
    {
        let db = OurDb::open(dir.path(), small_files()).expect("open");
        for i in 0..3000u32 {
            let id = db.add(&payload(i + 1, 0)).expect("add");
            expected.insert(id, payload(id, 0));
            if i.is_multiple_of(3) {
                db.set(id, &payload(id, 1)).expect("set");
                expected.insert(id, payload(id, 1));
            }
            if i.is_multiple_of(7) {
                db.delete(id).expect("delete");
                expected.remove(&id);
            }
        }
        db.close().expect("close");
    }
    let mut rng = rand::thread_rng();
    for round in 0..30 {
        let mut child = spawn_child("child_compactor", dir.path(), false);
        std::thread::sleep(Duration::from_millis(rng.gen_range(5..120)));
        child.kill().expect("kill");
        child.wait().expect("wait");
        let db = OurDb::open(dir.path(), small_files()).expect("reopen after kill");
        for (id, data) in &expected {
            assert_eq!(
                &db.get(*id)
                    .unwrap_or_else(|e| panic!("round {round}: {id}: {e}")),
                data
            );
        }
        assert_eq!(db.ids().count(), expected.len(), "round {round}");
        assert!(
            !dir.path().join(".compact").exists(),
            "round {round}: staging left behind"
        );
        // Writes continue after the interrupted compaction.
        let id = db.add(b"after").expect("add");
        expected.insert(id, b"after".to_vec());
        db.close().expect("close");
    }
}

/// After a power loss a table entry can be torn: its six bytes straddle two pages of
/// `lookup/data`, the kernel wrote one back and not the other, and the entry names a place
/// no version was written at (the file number of one version, the position of another).
/// Open replays the commit records past the mark; such an entry must not outrank them
/// because it *looks* later. Built by hand: the mark of the moment before the second version
/// was acknowledged, and the entry pointed just past that version's start.
#[test]
fn a_torn_table_entry_does_not_outrank_a_replayed_commit() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        durability: Durability::Strict,
        keysize: Some(6),
        ..Config::default()
    };
    let db = OurDb::open(dir.path(), cfg.clone()).unwrap();
    let id = db.add(b"first version").unwrap();
    db.close().unwrap();
    // The mark as it stood with the first version checkpointed.
    let mark_path = dir.path().join("lookup/mark");
    let mark_before = std::fs::read(&mark_path).unwrap();

    let db = OurDb::open(dir.path(), cfg.clone()).unwrap();
    db.set(id, b"second version, acknowledged").unwrap();
    let second = db.location(id).unwrap().unwrap();
    db.close().unwrap();

    // Power loss: the mark is the one from before, the entry torn to a later-looking place.
    std::fs::write(&mark_path, &mark_before).unwrap();
    let torn = herojobs::ourdb::Location {
        file_nr: second.file_nr,
        position: second.position + 5,
    };
    let mut entry = torn.file_nr.to_be_bytes().to_vec();
    entry.extend_from_slice(&torn.position.to_be_bytes());
    let table = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("lookup/data"))
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&table, &entry, id as u64 * 6).unwrap();
    drop(table);

    let db = OurDb::open(dir.path(), cfg).unwrap();
    assert_eq!(db.location(id).unwrap(), Some(second));
    assert_eq!(db.get(id).unwrap(), b"second version, acknowledged");
    assert!(db.check().unwrap().is_empty());
}

/// A closed database in `dir` holding ids 1..=700 (`payload(id, 0)`), keysize 6: id 682's
/// entry lies at bytes 4092..4098 of `lookup/data`, across the first page boundary. Returns
/// its configuration.
fn seven_hundred_records(dir: &Path, durability: Durability) -> Config {
    let cfg = Config {
        durability,
        keysize: Some(6),
        ..Config::default()
    };
    let db = OurDb::open(dir, cfg.clone()).unwrap();
    let data: Vec<Vec<u8>> = (1..=700u32).map(|i| payload(i, 0)).collect();
    db.add_many(data.iter().map(|d| d.as_slice())).unwrap();
    db.close().unwrap();
    cfg
}

/// A delete cut off by a power loss, as the disk could hold it: the delete commit reached the
/// data file (it is made durable first), the mark and the record are as before the delete,
/// and the table entry of the id — six bytes across the 4 KiB page boundary — is torn: one
/// page written back with the cleared entry, the other not. Open must finish the delete (the
/// id reads as not found), not leave an entry pointing between two versions.
#[test]
fn a_delete_cut_off_by_a_power_loss_leaves_no_torn_entry() {
    // Entry of id 682 at bytes 4092..4098 of lookup/data (keysize 6): across two pages.
    let id = 682u32;
    for old_half_kept in [0..4usize, 4..6] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = seven_hundred_records(dir.path(), Durability::Strict);
        let file = |p: &str| dir.path().join(p);
        let read = |p: &str| std::fs::read(file(p)).unwrap();
        let (mark_before, data_before, table_before) =
            (read("lookup/mark"), read("0.db"), read("lookup/data"));

        let db = OurDb::open(dir.path(), cfg.clone()).unwrap();
        db.delete(id).unwrap();
        db.close().unwrap();
        let data_after = read("0.db");
        assert!(
            data_after.len() > data_before.len(),
            "no delete commit appended"
        );

        // The disk after the power loss: the records as before (not zeroed yet) followed by
        // the durable delete commit; the mark from before; the entry torn.
        let mut disk = data_before.clone();
        disk.extend_from_slice(&data_after[data_before.len()..]);
        std::fs::write(file("0.db"), &disk).unwrap();
        std::fs::write(file("lookup/mark"), &mark_before).unwrap();
        let at = id as usize * 6;
        let mut table = read("lookup/data");
        assert_eq!(
            &table[at..at + 6],
            &[0u8; 6],
            "the delete cleared the entry"
        );
        table[at + old_half_kept.start..at + old_half_kept.end]
            .copy_from_slice(&table_before[at + old_half_kept.start..at + old_half_kept.end]);
        std::fs::write(file("lookup/data"), &table).unwrap();

        let db = OurDb::open(dir.path(), cfg).unwrap();
        assert!(
            matches!(
                db.get(id),
                Err(herojobs::ourdb::OurDbError::NotFound { .. })
            ),
            "{:?}",
            db.get(id).map(|d| d.len())
        );
        for other in [id - 1, id + 1, 1, 700] {
            assert_eq!(db.get(other).unwrap(), payload(other, 0));
        }
        assert!(db.check().unwrap().is_empty());
    }
}

/// The other side of replaying delete commits: a write made after a delete whose commit lies
/// past the mark (another process's, after the deleting one died before its checkpoint; or
/// after a delete that failed past its commit) is a later version, and replay keeps it.
#[test]
fn a_write_after_a_delete_commit_past_the_mark_survives_the_replay() {
    let id = 682u32;
    let dir = tempfile::tempdir().unwrap();
    let cfg = seven_hundred_records(dir.path(), Durability::Periodic);
    let mark_before = std::fs::read(dir.path().join("lookup/mark")).unwrap();

    let db = OurDb::open(dir.path(), cfg.clone()).unwrap();
    db.delete(id).unwrap();
    db.set(id, &payload(id, 1)).unwrap();
    db.close().unwrap();
    // The table (synced by the periodic round) names the new version; the mark is the one
    // from before the delete, so both the delete commit and the new record lie past it.
    std::fs::write(dir.path().join("lookup/mark"), &mark_before).unwrap();

    let db = OurDb::open(dir.path(), cfg).unwrap();
    assert_eq!(db.get(id).unwrap(), payload(id, 1));
    assert_eq!(db.get(id + 1).unwrap(), payload(id + 1, 0));
    assert!(db.check().unwrap().is_empty());
}
