//! An independent reader (and writer) of herolib's layout, written from docs/ourdb-format.md
//! and not from herojobs' code: it reads a database the way stock herolib (`ourdb.new()`)
//! does — the sparse dump `lookup_dump.db/` imported into an in-memory table, then records
//! from `N.db` — and checks every id's data against what herojobs was told to store.

mod common;

use herojobs::ourdb::{Config, OurDb};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// A database as stock herolib sees it after `ourdb.new()`: its in-memory table and next id.
struct HerolibView {
    keysize: usize,
    /// id -> (file number, position), ids whose entry is not all zero.
    table: BTreeMap<u32, (u16, u32)>,
    next_id: u64,
}

/// Reads `lookup_dump.db/` as herolib's import does: records of 4-byte LE id + keysize-byte
/// big-endian entry; in incremental mode each id must be at most the running next id (which
/// starts at 1 and rises by one when an id equal to it is set), else herolib refuses to open.
fn herolib_open(dir: &Path, keysize: usize, incremental: bool) -> Result<HerolibView, String> {
    let dump = dir.join("lookup_dump.db");
    let bytes = std::fs::read(dump.join("data")).map_err(|e| format!("read dump: {e}"))?;
    let rec = 4 + keysize;
    if bytes.len() % rec != 0 {
        return Err(format!(
            "dump length {} not a multiple of {rec}",
            bytes.len()
        ));
    }
    let mut running = 1u64;
    let mut table = BTreeMap::new();
    for chunk in bytes.chunks_exact(rec) {
        let id = u32::from_le_bytes(chunk[..4].try_into().unwrap());
        let e = &chunk[4..];
        let (file, pos) = match keysize {
            6 => (
                u16::from_be_bytes([e[0], e[1]]),
                u32::from_be_bytes([e[2], e[3], e[4], e[5]]),
            ),
            n => {
                let mut p = [0u8; 4];
                p[4 - n..].copy_from_slice(e);
                (0, u32::from_be_bytes(p))
            }
        };
        if incremental {
            if id as u64 == running {
                running += 1;
            } else if id as u64 > running {
                return Err(format!(
                    "herolib refuses the dump: id {id} above its next id {running}"
                ));
            }
        }
        if file != 0 || pos != 0 {
            table.insert(id, (file, pos));
        } else {
            table.remove(&id);
        }
    }
    let inc = std::fs::read_to_string(dump.join(".inc")).map_err(|e| format!("read .inc: {e}"))?;
    let next_id = inc
        .trim()
        .parse()
        .map_err(|e| format!(".inc {inc:?}: {e}"))?;
    Ok(HerolibView {
        keysize,
        table,
        next_id,
    })
}

/// A classic record: size u16 LE, CRC32 u32 LE, previous location (u16 BE, u32 BE), data.
fn read_record(dir: &Path, file: u16, pos: u32) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(dir.join(format!("{file}.db"))).map_err(|e| e.to_string())?;
    let p = pos as usize;
    if p == 0 || p + 12 > bytes.len() {
        return Err(format!("{file}.db@{pos}: header out of range"));
    }
    let size = u16::from_le_bytes([bytes[p], bytes[p + 1]]) as usize;
    let crc = u32::from_le_bytes(bytes[p + 2..p + 6].try_into().unwrap());
    let data = bytes
        .get(p + 12..p + 12 + size)
        .ok_or(format!("{file}.db@{pos}: data out of range"))?;
    if crc32fast::hash(data) != crc {
        return Err(format!("{file}.db@{pos}: CRC mismatch"));
    }
    Ok(data.to_vec())
}

impl HerolibView {
    fn get(&self, dir: &Path, id: u32) -> Option<Result<Vec<u8>, String>> {
        let &(file, pos) = self.table.get(&id)?;
        Some(read_record(dir, file, pos))
    }
}

/// Asserts herolib reads exactly `model` (every id's data; ids not in it have no record) and
/// would hand out no id that has one.
fn assert_herolib_reads(dir: &Path, keysize: usize, model: &BTreeMap<u32, Vec<u8>>) {
    let view = herolib_open(dir, keysize, true).expect("herolib opens the database");
    assert_eq!(view.keysize, keysize);
    for (id, data) in model {
        match view.get(dir, *id) {
            Some(Ok(d)) => assert_eq!(&d, data, "id {id}"),
            Some(Err(e)) => panic!("id {id}: {e}"),
            None => panic!("id {id}: herolib sees no record"),
        }
    }
    for id in view.table.keys() {
        assert!(
            model.contains_key(id),
            "herolib sees id {id}, which has no record"
        );
    }
    let highest = model.keys().next_back().copied().unwrap_or(0) as u64;
    assert!(
        view.next_id > highest,
        "herolib would hand out {} again",
        view.next_id
    );
}

fn payload(id: u32, v: u32) -> Vec<u8> {
    format!(
        "record {id} version {v} {}",
        "x".repeat((id as usize * 7) % 300)
    )
    .into_bytes()
}

#[test]
fn herolib_reads_what_herojobs_wrote_updated_deleted_and_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut model = BTreeMap::new();
    let db = OurDb::open(d, Config::default()).unwrap();
    let ks = db.stored_config().keysize as usize;
    assert_eq!(ks, 6);
    for i in 1..=60u32 {
        let id = db.add(&payload(i, 1)).unwrap();
        model.insert(id, payload(i, 1));
    }
    db.sync().unwrap();
    // Readable while the writer is still open, at the moment it has synced.
    assert_herolib_reads(d, ks, &model);
    for id in (1..=60).step_by(3) {
        db.set(id, &payload(id, 2)).unwrap();
        model.insert(id, payload(id, 2));
    }
    for id in [5u32, 6, 7, 30, 60] {
        db.delete(id).unwrap();
        model.remove(&id);
    }
    db.sync().unwrap();
    assert_herolib_reads(d, ks, &model);
    db.close().unwrap();
    assert_herolib_reads(d, ks, &model);

    let db = OurDb::open(d, Config::default()).unwrap();
    let report = db.compact().unwrap();
    assert_eq!(report.records, model.len() as u64);
    // Compaction moved every record: the dump follows at once.
    assert_herolib_reads(d, ks, &model);
    let id = db.add(b"after compaction").unwrap();
    assert_eq!(id, 61, "deleted ids are never handed out again");
    model.insert(id, b"after compaction".to_vec());
    db.close().unwrap();
    assert_herolib_reads(d, ks, &model);
}

/// The previous location of the classic record at (file, pos): what herolib follows for
/// history (u16 BE file, u32 BE position at bytes 6..12).
fn prev_of(dir: &Path, file: u16, pos: u32) -> (u16, u32) {
    let bytes = std::fs::read(dir.join(format!("{file}.db"))).unwrap();
    let p = pos as usize + 6;
    (
        u16::from_be_bytes([bytes[p], bytes[p + 1]]),
        u32::from_be_bytes(bytes[p + 2..p + 6].try_into().unwrap()),
    )
}

/// An online compaction with history retention (and deleted ids dropped): herolib
/// reads every current version, and following previous locations it reads the kept history,
/// newest first, ending in a zero location.
#[test]
fn herolib_reads_an_online_compaction_with_history() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = OurDb::open(d, Config::default()).unwrap();
    let ks = db.stored_config().keysize as usize;
    let mut versions: BTreeMap<u32, Vec<Vec<u8>>> = BTreeMap::new();
    for i in 1..=200u32 {
        let id = db.add(&payload(i, 1)).unwrap();
        versions.insert(id, vec![payload(i, 1)]);
        for v in 2..=(i % 4 + 1) {
            db.set(id, &payload(i, v)).unwrap();
            versions.get_mut(&id).unwrap().push(payload(i, v));
        }
    }
    for id in [3u32, 50, 51] {
        db.delete(id).unwrap();
        versions.remove(&id);
    }
    let report = db
        .compact_with(herojobs::ourdb::CompactOptions::keep_history(3))
        .unwrap();
    assert_eq!(report.records, versions.len() as u64);
    let model: BTreeMap<u32, Vec<u8>> = versions
        .iter()
        .map(|(id, v)| (*id, v.last().unwrap().clone()))
        .collect();
    assert_herolib_reads(d, ks, &model);
    let view = herolib_open(d, ks, true).unwrap();
    for (id, v) in &versions {
        let mut at = view.table[id];
        let mut seen = Vec::new();
        while at != (0, 0) {
            seen.push(read_record(d, at.0, at.1).unwrap());
            at = prev_of(d, at.0, at.1);
        }
        let want: Vec<Vec<u8>> = v.iter().rev().take(3).cloned().collect();
        assert_eq!(seen, want, "history of id {id}");
    }
    db.close().unwrap();
    assert_herolib_reads(d, ks, &model);
}

#[test]
fn background_dump_follows_writes_without_sync() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = Config {
        dump_interval: Duration::from_millis(20),
        ..Config::default()
    };
    let db = OurDb::open(d, cfg).unwrap();
    let mut model = BTreeMap::new();
    for i in 1..=10u32 {
        model.insert(db.add(&payload(i, 1)).unwrap(), payload(i, 1));
    }
    common::wait_until(
        "the dump names all 10 records",
        Duration::from_secs(30),
        || herolib_open(d, 6, true).is_ok_and(|v| v.table.len() == 10 && v.next_id == 11),
    );
    assert_herolib_reads(d, 6, &model);
    db.delete(4).unwrap();
    model.remove(&4);
    common::wait_until(
        "the dump drops the deleted id",
        Duration::from_secs(30),
        || herolib_open(d, 6, true).is_ok_and(|v| !v.table.contains_key(&4)),
    );
    assert_herolib_reads(d, 6, &model);
    drop(db);
}

/// Writes a database the way herolib leaves one: `0.db` (zero byte, then classic records),
/// `lookup_dump.db/data` (ascending ids, keysize-6 entries) and `lookup_dump.db/.inc`; no
/// `lookup/`, no `ourdb.json`.
fn write_herolib_database(dir: &Path, records: &[(u32, &[u8])]) {
    let mut data = vec![0u8];
    let mut dump = Vec::new();
    for (id, rec) in records {
        let pos = data.len() as u32;
        data.extend_from_slice(&(rec.len() as u16).to_le_bytes());
        data.extend_from_slice(&crc32fast::hash(rec).to_le_bytes());
        data.extend_from_slice(&[0u8; 6]);
        data.extend_from_slice(rec);
        dump.extend_from_slice(&id.to_le_bytes());
        dump.extend_from_slice(&[0, 0]);
        dump.extend_from_slice(&pos.to_be_bytes());
    }
    std::fs::write(dir.join("0.db"), data).unwrap();
    std::fs::create_dir(dir.join("lookup_dump.db")).unwrap();
    std::fs::write(dir.join("lookup_dump.db/data"), dump).unwrap();
    let next = records.iter().map(|r| r.0).max().unwrap_or(0) + 1;
    std::fs::write(dir.join("lookup_dump.db/.inc"), next.to_string()).unwrap();
}

#[test]
fn herolib_database_changed_by_herojobs_reads_correctly_in_herolib() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let originals: Vec<(u32, Vec<u8>)> = (1..=5).map(|i| (i, payload(i, 1))).collect();
    let refs: Vec<(u32, &[u8])> = originals.iter().map(|(i, r)| (*i, r.as_slice())).collect();
    write_herolib_database(d, &refs);
    let mut model: BTreeMap<u32, Vec<u8>> = originals.into_iter().collect();
    // The reader reads its own database (a sanity check of the reader).
    assert_herolib_reads(d, 6, &model);

    let cfg = Config {
        keysize: Some(6),
        ..Config::default()
    };
    let db = OurDb::open(d, cfg.clone()).unwrap();
    for (id, data) in &model {
        assert_eq!(&db.get(*id).unwrap(), data);
    }
    db.set(2, b"two, by herojobs").unwrap();
    model.insert(2, b"two, by herojobs".to_vec());
    db.delete(3).unwrap();
    model.remove(&3);
    let id = db.add(b"six, by herojobs").unwrap();
    assert_eq!(id, 6);
    model.insert(6, b"six, by herojobs".to_vec());
    db.close().unwrap();
    assert_herolib_reads(d, 6, &model);

    // And once more after a reopen by herojobs (now with its own table and ourdb.json).
    let db = OurDb::open(d, Config::default()).unwrap();
    db.set(1, b"one, again").unwrap();
    model.insert(1, b"one, again".to_vec());
    db.close().unwrap();
    assert_herolib_reads(d, 6, &model);
}

#[test]
fn key_value_database_dump_holds_live_ids_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = Config {
        incremental: false,
        ..Config::default()
    };
    let db = OurDb::open(d, cfg).unwrap();
    db.set(10, b"ten").unwrap();
    db.set(1000, b"thousand").unwrap();
    db.close().unwrap();
    let view = herolib_open(d, 6, false).unwrap();
    assert_eq!(view.table.keys().copied().collect::<Vec<_>>(), [10, 1000]);
    let len = std::fs::metadata(d.join("lookup_dump.db/data"))
        .unwrap()
        .len();
    assert_eq!(len, 2 * 10, "no zero entries for the ids between");
    assert_eq!(view.get(d, 1000).unwrap().unwrap(), b"thousand");
}
