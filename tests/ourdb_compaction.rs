//! Online compaction and the live/dead byte counter, on real files: dead bytes are exact
//! after a known sequence of writes; compaction keeps every live record byte-identical under
//! its id (and history, when asked, in order); writers in other threads lose nothing that
//! was acknowledged while a compaction runs; readers never see an error or wrong bytes
//! across the switch. No timing: overlap is counted, never assumed.

use herojobs::ourdb::{CompactOptions, Config, Durability, OurDb, OurDbError};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

fn cfg(durability: Durability) -> Config {
    Config {
        durability,
        ..Config::default()
    }
}

/// Record bytes on disk of `len` bytes of data: the classic header is 12 bytes, the
/// large-record one 20 (docs/ourdb-format.md).
fn rec(len: usize) -> u64 {
    len as u64 + if len < 65_536 { 12 } else { 20 }
}

#[test]
fn dead_bytes_are_exact_after_adds_sets_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    // `none`: no commit records, so every data byte is a record or the preamble.
    let db = OurDb::open(dir.path(), cfg(Durability::None)).unwrap();
    let empty = db.space().unwrap();
    assert_eq!(
        (empty.data_bytes, empty.live_bytes, empty.dead_bytes),
        (1, 0, 1)
    );
    let a = db.add(b"aaaa").unwrap();
    let b = db.add(b"bb").unwrap();
    let big = vec![7u8; 70_000];
    let c = db.add(&big).unwrap();
    db.set(a, b"ccccccc").unwrap();
    // Two versions of one id in one batch: the first is dead at once.
    db.set_many([(b, &b"x"[..]), (b, &b"yy"[..])]).unwrap();
    db.delete(c).unwrap();
    let live = rec(7) + rec(2);
    let data = 1 + rec(4) + rec(2) + rec(70_000) + rec(7) + rec(1) + rec(2);
    let s = db.space().unwrap();
    assert_eq!(s.data_bytes, data);
    assert_eq!(s.live_bytes, live);
    assert_eq!(s.dead_bytes, data - live);
    assert_eq!(db.stats().unwrap().space, s);
    db.close().unwrap();

    // The counter survives a clean close (no scan needed, same figures) ...
    let db = OurDb::open(dir.path(), cfg(Durability::None)).unwrap();
    assert_eq!(db.space().unwrap(), s);
    db.close().unwrap();
    // ... and is rebuilt by a scan when the state file is gone.
    std::fs::remove_file(dir.path().join("ourdb.state")).unwrap();
    let db = OurDb::open(dir.path(), cfg(Durability::None)).unwrap();
    assert_eq!(db.space().unwrap().live_bytes, live);
    // A read-only handle computes the same.
    let ro = OurDb::open(
        dir.path(),
        Config {
            read_only: true,
            ..Config::default()
        },
    )
    .unwrap();
    assert_eq!(ro.space().unwrap().live_bytes, live);
    drop(ro);

    // Compaction leaves only live bytes and the preamble.
    let r = db.compact().unwrap();
    assert_eq!(r.live_bytes, live);
    assert_eq!(r.bytes_before, data);
    assert_eq!(r.bytes_after, live + 1);
    assert_eq!(r.reclaimed(), data - live - 1);
    let s = db.space().unwrap();
    assert_eq!(
        (s.data_bytes, s.live_bytes, s.dead_bytes),
        (live + 1, live, 1)
    );
}

#[test]
fn strict_mode_counts_the_same_live_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let db = OurDb::open(dir.path(), cfg(Durability::Strict)).unwrap();
    let a = db.add(b"aaaa").unwrap();
    let b = db.add(b"bb").unwrap();
    db.set(a, b"ccccccc").unwrap();
    db.delete(b).unwrap();
    let s = db.space().unwrap();
    assert_eq!(s.live_bytes, rec(7));
    // Commit records are dead bytes: 18 per single-record call, and 18 for the delete's.
    assert_eq!(s.data_bytes, 1 + rec(4) + rec(2) + rec(7) + 4 * 18);
}

type Model = BTreeMap<u32, Vec<Vec<u8>>>;

fn payload(id: u32, v: u32) -> Vec<u8> {
    format!(
        "{id}/{v}/{}",
        "q".repeat((id as usize * 31 + v as usize * 7) % 500)
    )
    .into_bytes()
}

fn build(db: &OurDb, n: u32) -> Model {
    let mut model = Model::new();
    for i in 0..n {
        let id = db.add(&payload(i + 1, 0)).unwrap();
        let mut versions = vec![payload(i + 1, 0)];
        for v in 1..=(i % 5) {
            db.set(id, &payload(i + 1, v)).unwrap();
            versions.push(payload(i + 1, v));
        }
        if i % 9 == 4 {
            db.delete(id).unwrap();
        } else {
            model.insert(id, versions);
        }
    }
    model
}

fn assert_model(db: &OurDb, model: &Model, keep: usize) {
    assert_eq!(
        db.ids().collect::<Vec<_>>(),
        model.keys().copied().collect::<Vec<_>>()
    );
    for (id, versions) in model {
        assert_eq!(&db.get(*id).unwrap(), versions.last().unwrap(), "id {id}");
        let want: Vec<Vec<u8>> = versions.iter().rev().take(keep).cloned().collect();
        assert_eq!(db.history(*id, 100).unwrap(), want, "history of id {id}");
    }
    let problems = db.check().unwrap();
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn compaction_keeps_live_records_identical_and_history_in_order() {
    for (keep, blocking) in [
        (0usize, false),
        (1, false),
        (3, false),
        (10, false),
        (3, true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let db = OurDb::open(
            dir.path(),
            Config {
                file_size: 16 * 1024,
                ..cfg(Durability::Periodic)
            },
        )
        .unwrap();
        let model = build(&db, 600);
        let before = db.space().unwrap();
        let next = db.next_id();
        let opts = CompactOptions::keep_history(keep);
        let r = db
            .compact_with(if blocking { opts.blocking() } else { opts })
            .unwrap();
        let kept = keep.max(1);
        assert_eq!(r.records, model.len() as u64);
        assert_eq!(
            r.versions,
            model
                .values()
                .map(|v| v.len().min(kept) as u64)
                .sum::<u64>()
        );
        assert_eq!(r.live_bytes, before.live_bytes);
        assert_model(&db, &model, kept);
        // Dead bytes after: the kept older versions and each file's preamble.
        let s = db.space().unwrap();
        let older: u64 = model
            .values()
            .flat_map(|v| v.iter().rev().take(kept).skip(1))
            .map(|d| rec(d.len()))
            .sum();
        assert_eq!(s.dead_bytes, older + r.files_after as u64, "keep {keep}");
        assert_eq!(db.next_id(), next, "ids are not renumbered");
        db.close().unwrap();
        let db = OurDb::open(dir.path(), Config::default()).unwrap();
        assert_model(&db, &model, kept);
    }
}

/// What one writer thread did, acknowledged only.
#[derive(Default)]
struct Acked {
    live: BTreeMap<u32, Vec<u8>>,
    deleted: Vec<u32>,
}

/// Writers add, set and delete (each on its own ids) while another thread compacts, until
/// some writes have completed entirely inside a compaction; then every acknowledged write is
/// in the database.
fn writers_during_compaction(durability: Durability) {
    let dir = tempfile::tempdir().unwrap();
    let db = OurDb::open(dir.path(), cfg(durability)).unwrap();
    let base = build(&db, 3000);
    // Odd while a compaction runs.
    let epoch = AtomicU64::new(0);
    let inside = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let reports = std::thread::scope(|s| {
        let writers: Vec<_> = (0..2u32)
            .map(|t| {
                let (db, epoch, inside, stop) = (&db, &epoch, &inside, &stop);
                s.spawn(move || {
                    let mut acked = Acked::default();
                    let mut n = 0u32;
                    while !stop.load(Ordering::Acquire) {
                        n += 1;
                        let before = epoch.load(Ordering::Acquire);
                        let data = format!("t{t} n{n}").into_bytes();
                        match n % 4 {
                            0 | 1 => {
                                let id = db.add(&data).unwrap();
                                acked.live.insert(id, data);
                            }
                            2 => {
                                if let Some((&id, _)) = acked.live.iter().nth(n as usize % 7) {
                                    db.set(id, &data).unwrap();
                                    acked.live.insert(id, data);
                                }
                            }
                            _ => {
                                if let Some((&id, _)) = acked.live.iter().next() {
                                    db.delete(id).unwrap();
                                    acked.live.remove(&id);
                                    acked.deleted.push(id);
                                }
                            }
                        }
                        if before % 2 == 1 && epoch.load(Ordering::Acquire) == before {
                            inside.fetch_add(1, Ordering::AcqRel);
                        }
                    }
                    acked
                })
            })
            .collect();
        let mut reports = Vec::new();
        // Until writes overlapped compactions (bounded: no test may spin for ever).
        while reports.len() < 3 || inside.load(Ordering::Acquire) == 0 {
            assert!(
                reports.len() < 2000,
                "no write ever overlapped a compaction"
            );
            epoch.fetch_add(1, Ordering::AcqRel);
            let r = db.compact();
            epoch.fetch_add(1, Ordering::AcqRel);
            reports.push(r.unwrap());
        }
        stop.store(true, Ordering::Release);
        let acked: Vec<Acked> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        (reports, acked)
    });
    let (reports, acked) = reports;
    assert!(inside.load(Ordering::Acquire) > 0);
    let check = |db: &OurDb| {
        for (id, versions) in &base {
            assert_eq!(&db.get(*id).unwrap(), versions.last().unwrap());
        }
        for a in &acked {
            for (id, data) in &a.live {
                assert_eq!(&db.get(*id).unwrap(), data, "acknowledged write of id {id}");
            }
            for id in &a.deleted {
                assert!(matches!(db.get(*id), Err(OurDbError::NotFound { .. })));
            }
        }
        let live = base.len() + acked.iter().map(|a| a.live.len()).sum::<usize>();
        assert_eq!(db.ids().count(), live);
        assert!(db.check().unwrap().is_empty());
    };
    check(&db);
    // The counter followed the concurrent writes exactly.
    let space = db.space().unwrap();
    db.close().unwrap();
    std::fs::remove_file(dir.path().join("ourdb.state")).unwrap();
    let db = OurDb::open(dir.path(), cfg(durability)).unwrap();
    assert_eq!(db.space().unwrap().live_bytes, space.live_bytes);
    check(&db);
    let _ = reports;
}

#[test]
fn writers_in_other_threads_lose_nothing_during_compaction_periodic() {
    writers_during_compaction(Durability::Periodic);
}

#[test]
fn writers_in_other_threads_lose_nothing_during_compaction_strict() {
    writers_during_compaction(Durability::Strict);
}

/// Readers read every id while compactions switch under them (and a writer keeps setting
/// new versions): never an error, never bytes that are not one of the id's versions.
#[test]
fn readers_never_see_an_error_or_wrong_bytes_across_the_switch() {
    let dir = tempfile::tempdir().unwrap();
    let db = OurDb::open(dir.path(), cfg(Durability::Periodic)).unwrap();
    let ids: Vec<u32> = (0..2000u32)
        .map(|i| db.add(&payload(i + 1, 0)).unwrap())
        .collect();
    let epoch = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let during = AtomicU64::new(0);
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|r| {
                let (db, ids, epoch, stop, during) = (&db, &ids, &epoch, &stop, &during);
                s.spawn(move || {
                    let mut i = r * 997;
                    while !stop.load(Ordering::Acquire) {
                        i = (i + 1) % ids.len();
                        let id = ids[i];
                        let before = epoch.load(Ordering::Acquire);
                        let got = db.get(id).unwrap_or_else(|e| panic!("read {id}: {e}"));
                        let text = String::from_utf8(got.clone()).unwrap();
                        let (head, v) = text
                            .split_once('/')
                            .and_then(|(h, rest)| Some((h, rest.split_once('/')?.0)))
                            .unwrap_or_else(|| panic!("id {id}: {text:?}"));
                        assert_eq!(head, id.to_string(), "id {id} read another record");
                        assert_eq!(got, payload(id, v.parse().unwrap()), "id {id}");
                        let h = db
                            .history(id, 3)
                            .unwrap_or_else(|e| panic!("history {id}: {e}"));
                        assert!(h.iter().all(|d| d.starts_with(format!("{id}/").as_bytes())));
                        if before % 2 == 1 && epoch.load(Ordering::Acquire) != before {
                            // This read spanned the end of a compaction (its switch).
                            during.fetch_add(1, Ordering::AcqRel);
                        }
                    }
                })
            })
            .collect();
        let writer = {
            let (db, ids, stop) = (&db, &ids, &stop);
            s.spawn(move || {
                let mut v = 1;
                while !stop.load(Ordering::Acquire) {
                    for &id in ids.iter().step_by(17) {
                        db.set(id, &payload(id, v)).unwrap();
                    }
                    v += 1;
                }
            })
        };
        let mut n = 0;
        while n < 5 || during.load(Ordering::Acquire) == 0 {
            assert!(n < 5000, "no read ever spanned a switch");
            epoch.fetch_add(1, Ordering::AcqRel);
            db.compact_with(CompactOptions::keep_history(2)).unwrap();
            epoch.fetch_add(1, Ordering::AcqRel);
            n += 1;
        }
        stop.store(true, Ordering::Release);
        for r in readers {
            r.join().unwrap();
        }
        writer.join().unwrap();
    });
    assert!(db.check().unwrap().is_empty());
}

#[test]
fn a_second_handle_sees_the_compacted_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = OurDb::open(dir.path(), cfg(Durability::Periodic)).unwrap();
    let b = OurDb::open(dir.path(), cfg(Durability::Periodic)).unwrap();
    let model = build(&a, 300);
    assert_model(&b, &model, 10);
    a.compact_with(CompactOptions::keep_history(2)).unwrap();
    assert_model(&b, &model, 2);
    let id = b.add(b"from b").unwrap();
    assert_eq!(a.get(id).unwrap(), b"from b");
}

/// `space()` on a handle that has only read, with the live count unknown, scans as the one
/// writer. Writers keep the file lock for their burst and the background thread hands it
/// back; a handle without that thread once kept it for good, so another handle's next add
/// waited forever (the fleet test hung on it: an engine's compaction check beside a
/// client's submits on one base).
#[test]
fn space_on_a_reading_handle_never_keeps_the_writer_lock() {
    let dir = tempfile::tempdir().unwrap();
    let db = OurDb::open(dir.path(), cfg(Durability::Periodic)).unwrap();
    for i in 0..100u32 {
        db.add(&payload(i, 0)).unwrap();
    }
    db.close().unwrap();
    // No state file: the live count is unknown and `space` must scan.
    std::fs::remove_file(dir.path().join("ourdb.state")).unwrap();
    let reader = OurDb::open(dir.path(), cfg(Durability::Periodic)).unwrap();
    let writer = std::sync::Arc::new(OurDb::open(dir.path(), cfg(Durability::Periodic)).unwrap());
    assert!(reader.space().unwrap().live_bytes > 0);
    let (tx, rx) = std::sync::mpsc::channel();
    let w = std::sync::Arc::clone(&writer);
    std::thread::spawn(move || {
        let _ = tx.send(w.add(b"after the scan"));
    });
    // A generous deadline on a loaded machine: the add needs only the reader's background
    // thread to hand the lock back (1 ms after its last write).
    let added = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("an add on a second handle waited 60 s for the writer lock after space()");
    let id = added.unwrap();
    assert_eq!(writer.get(id).unwrap(), b"after the scan");
    assert!(reader.get(id).is_ok());
}
