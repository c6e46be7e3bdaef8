//! OurDB's API contract on real files: add/get/set/history/delete, reopen, ids, modes,
//! large records, compaction and the errors for bad use.

use herojobs::ourdb::{Config, Durability, OurDb, OurDbError};

fn open_strict(dir: &std::path::Path) -> OurDb {
    let cfg = Config {
        durability: Durability::Strict,
        ..Config::default()
    };
    OurDb::open(dir, cfg).unwrap()
}

fn open(dir: &std::path::Path) -> OurDb {
    OurDb::open(dir, Config::default()).unwrap()
}

#[test]
fn add_get_set_history_delete_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    assert_eq!(db.next_id(), 1);
    let a = db.add(b"alpha").unwrap();
    let b = db.add(b"beta").unwrap();
    assert_eq!((a, b), (1, 2));
    db.set(a, b"alpha v2").unwrap();
    db.set(a, b"alpha v3").unwrap();
    assert_eq!(db.get(a).unwrap(), b"alpha v3");
    assert_eq!(
        db.history(a, 10).unwrap(),
        vec![
            b"alpha v3".to_vec(),
            b"alpha v2".to_vec(),
            b"alpha".to_vec()
        ]
    );
    assert_eq!(db.history(a, 2).unwrap().len(), 2);
    db.delete(b).unwrap();
    assert!(matches!(db.get(b), Err(OurDbError::NotFound { id: 2 })));
    assert!(matches!(db.delete(b), Err(OurDbError::NotFound { id: 2 })));
    assert_eq!(db.ids().collect::<Vec<_>>(), vec![1]);
    db.close().unwrap();

    let db = open(dir.path());
    assert_eq!(db.get(a).unwrap(), b"alpha v3");
    assert_eq!(db.history(a, 10).unwrap().len(), 3);
    // The deleted id is never handed out again.
    assert_eq!(db.add(b"gamma").unwrap(), 3);
    assert!(db.check().unwrap().is_empty());
}

#[test]
fn bad_use_gives_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    assert!(matches!(db.get(0), Err(OurDbError::ZeroId)));
    assert!(matches!(db.get(99), Err(OurDbError::NotFound { id: 99 })));
    assert!(matches!(
        db.set(5, b"x"),
        Err(OurDbError::IdNotAllocated { id: 5, next: 1 })
    ));
    let cfg = Config {
        record_size_max: 1000,
        ..Config::default()
    };
    let dir2 = tempfile::tempdir().unwrap();
    let small = OurDb::open(dir2.path(), cfg).unwrap();
    assert!(matches!(
        small.add(&[0u8; 1001]),
        Err(OurDbError::RecordTooLarge {
            size: 1001,
            max: 1000
        })
    ));
}

#[test]
fn key_value_mode_takes_caller_ids() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        incremental: false,
        ..Config::default()
    };
    let db = OurDb::open(dir.path(), cfg).unwrap();
    assert!(matches!(db.add(b"x"), Err(OurDbError::NotIncremental)));
    db.set(1000, b"thousand").unwrap();
    db.set(7, b"seven").unwrap();
    assert_eq!(db.get(1000).unwrap(), b"thousand");
    assert_eq!(db.ids().collect::<Vec<_>>(), vec![7, 1000]);
}

#[test]
fn records_beyond_the_u16_size_field_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let sizes = [0usize, 1, 65_535, 65_536, 1 << 20, 16 << 20];
    let mut ids = Vec::new();
    for (i, n) in sizes.iter().enumerate() {
        let data: Vec<u8> = (0..*n).map(|j| (j * 31 + i) as u8).collect();
        ids.push((db.add(&data).unwrap(), data));
    }
    db.close().unwrap();
    let db = open(dir.path());
    for (id, data) in &ids {
        assert_eq!(&db.get(*id).unwrap(), data, "id {id}");
    }
    assert!(db.check().unwrap().is_empty());
}

#[test]
fn data_files_roll_over_at_the_configured_size() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        file_size: 4096,
        ..Config::default()
    };
    let db = OurDb::open(dir.path(), cfg.clone()).unwrap();
    let ids: Vec<u32> = (0..100).map(|i| db.add(&[i as u8; 200]).unwrap()).collect();
    let stats = db.stats().unwrap();
    assert!(stats.data_files > 3, "{stats:?}");
    db.close().unwrap();
    let db = OurDb::open(dir.path(), cfg).unwrap();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(db.get(*id).unwrap(), vec![i as u8; 200]);
    }
    // A reopened handle appends to the last file, not over the first.
    let more = db.add(b"after reopen").unwrap();
    assert_eq!(db.get(more).unwrap(), b"after reopen");
    assert_eq!(db.get(ids[0]).unwrap(), vec![0u8; 200]);
}

#[test]
fn compaction_keeps_latest_versions_and_reclaims_space() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        file_size: 64 * 1024,
        ..Config::default()
    };
    let db = OurDb::open(dir.path(), cfg.clone()).unwrap();
    for i in 0..500u32 {
        let id = db.add(&[1u8; 300]).unwrap();
        db.set(id, format!("v2 of {i}").as_bytes()).unwrap();
        if i.is_multiple_of(2) {
            db.delete(id).unwrap();
        }
    }
    let before = db.stats().unwrap();
    let report = db.compact().unwrap();
    assert_eq!(report.records, 250);
    let after = db.stats().unwrap();
    assert!(
        after.data_bytes < before.data_bytes / 10,
        "{before:?} {after:?}"
    );
    for id in db.ids() {
        assert_eq!(db.get(id).unwrap(), format!("v2 of {}", id - 1).as_bytes());
        assert_eq!(db.history(id, 5).unwrap().len(), 1);
    }
    let next = db.add(b"after compaction").unwrap();
    assert_eq!(next, 501);
    db.close().unwrap();
    let db = OurDb::open(dir.path(), cfg).unwrap();
    assert_eq!(db.get(next).unwrap(), b"after compaction");
    assert_eq!(db.ids().count(), 251);
    assert!(db.check().unwrap().is_empty());
}

#[test]
fn strict_mode_group_commits_concurrent_writers() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_strict(dir.path());
    let per_thread = 200;
    std::thread::scope(|s| {
        for t in 0..8u8 {
            let db = &db;
            s.spawn(move || {
                for _ in 0..per_thread {
                    db.add(&[t; 64]).unwrap();
                }
            });
        }
    });
    assert_eq!(db.next_id(), 8 * per_thread + 1);
    // Group commit: fewer fsync rounds than acknowledged writes.
    assert!(
        db.fsync_rounds() < 8 * per_thread,
        "rounds {}",
        db.fsync_rounds()
    );
}

#[test]
fn readers_see_concurrent_writes_without_torn_values() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let id = db.add(&[0u8; 100]).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            for v in 1..2000u32 {
                db.set(id, &[(v % 251) as u8; 100]).unwrap();
            }
        });
        s.spawn(|| {
            for _ in 0..20_000 {
                let got = db.get(id).unwrap();
                assert_eq!(got.len(), 100);
                assert!(got.iter().all(|b| *b == got[0]), "torn read");
            }
        });
    });
}

#[test]
fn releasing_resident_pages_loses_nothing() {
    // The lookup table is a writable shared map: dropping its pages from the resident set
    // must keep every entry written before and after.
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let first: Vec<u32> = (0..5000u32)
        .map(|i| db.add(&i.to_le_bytes()).unwrap())
        .collect();
    db.release_resident().unwrap();
    for (i, id) in first.iter().enumerate() {
        assert_eq!(db.get(*id).unwrap(), (i as u32).to_le_bytes());
    }
    let more: Vec<u32> = (0..5000u32)
        .map(|i| db.add(&(i + 5000).to_le_bytes()).unwrap())
        .collect();
    db.release_resident().unwrap();
    db.close().unwrap();
    let db = open(dir.path());
    for (i, id) in first.iter().chain(more.iter()).enumerate() {
        assert_eq!(db.get(*id).unwrap(), (i as u32).to_le_bytes());
    }
}

/// `strict` publishes entries only in their fsync round: concurrent writers of one id must
/// still chain every version (each `set` sees the unpublished one before it).
#[test]
fn strict_mode_concurrent_sets_keep_every_version() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_strict(dir.path());
    let id = db.add(b"first").unwrap();
    let per_thread = 50;
    std::thread::scope(|s| {
        for t in 0..8u32 {
            let db = &db;
            s.spawn(move || {
                for i in 0..per_thread {
                    db.set(id, format!("{t}-{i}").as_bytes()).unwrap();
                }
            });
        }
    });
    let history = db.history(id, 1000).unwrap();
    assert_eq!(history.len(), 8 * per_thread as usize + 1);
    assert_eq!(history.last().unwrap(), b"first");
    assert_eq!(history[0], db.get(id).unwrap());
    let distinct: std::collections::HashSet<_> = history.iter().collect();
    assert_eq!(distinct.len(), history.len(), "a version appears twice");
    // Each thread's versions appear in its own order (newest first).
    for t in 0..8u32 {
        let mine: Vec<u32> = history
            .iter()
            .filter_map(|v| {
                let v = std::str::from_utf8(v).ok()?;
                let (thread, i) = v.split_once('-')?;
                (thread == t.to_string()).then(|| i.parse().ok())?
            })
            .collect();
        let expected: Vec<u32> = (0..per_thread).rev().collect();
        assert_eq!(mine, expected, "thread {t}");
    }
}

/// A compaction racing `strict` writers must publish their pending entries first and keep
/// every acknowledged record.
#[test]
fn strict_mode_writers_racing_compaction_and_deletes_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_strict(dir.path());
    let acked: Vec<Vec<(u32, Vec<u8>)>> = std::thread::scope(|s| {
        let writers: Vec<_> = (0..4u8)
            .map(|t| {
                let db = &db;
                s.spawn(move || {
                    let mut mine = Vec::new();
                    for i in 0..150u32 {
                        let data = format!("{t}:{i}").into_bytes();
                        let id = db.add(&data).unwrap();
                        if i % 10 == 3 {
                            db.delete(id).unwrap();
                        } else {
                            mine.push((id, data));
                        }
                    }
                    mine
                })
            })
            .collect();
        let db = &db;
        let compactor = s.spawn(move || {
            for _ in 0..5 {
                db.compact().unwrap();
            }
        });
        compactor.join().unwrap();
        writers.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let check = |db: &OurDb| {
        for (id, data) in acked.iter().flatten() {
            assert_eq!(&db.get(*id).unwrap(), data, "id {id}");
        }
        assert_eq!(db.ids().count(), acked.iter().flatten().count());
        assert!(db.check().unwrap().is_empty());
    };
    check(&db);
    db.close().unwrap();
    let db = OurDb::open(dir.path(), Config::default()).unwrap();
    check(&db);
}

#[test]
fn set_many_writes_in_order_in_one_round_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_strict(dir.path());
    let a = db.add(b"a0").unwrap();
    let b = db.add(b"b0").unwrap();
    let rounds = db.fsync_rounds();
    db.set_many([(a, &b"a1"[..]), (b, &b"b1"[..]), (a, &b"a2"[..])])
        .unwrap();
    assert_eq!(
        db.fsync_rounds(),
        rounds + 1,
        "one fsync round for the batch"
    );
    assert_eq!(
        db.history(a, 5).unwrap(),
        [b"a2".to_vec(), b"a1".to_vec(), b"a0".to_vec()]
    );
    assert_eq!(db.get(b).unwrap(), b"b1");
    // A bad item anywhere: an error, and nothing of the batch written.
    let next = db.next_id() as u32;
    assert!(matches!(
        db.set_many([(a, &b"a3"[..]), (next, &b"x"[..])]),
        Err(OurDbError::IdNotAllocated { .. })
    ));
    assert!(matches!(
        db.set_many([(a, &b"a3"[..]), (0, &b"x"[..])]),
        Err(OurDbError::ZeroId)
    ));
    assert_eq!(db.get(a).unwrap(), b"a2");
    assert!(db.set_many(std::iter::empty()).is_ok());
}

/// `strict` writers fill the data file ahead of their appends (an fsync after an append that
/// grows the file costs a journal commit, one into existing bytes does not). Another handle
/// appends into that fill too; the last handle to close cuts it, so a closed database is
/// exactly herolib's layout.
#[test]
fn strict_fill_ahead_is_used_while_open_and_cut_at_the_last_close() {
    let dir = tempfile::tempdir().unwrap();
    let data_file = dir.path().join("0.db");
    let len = |p: &std::path::Path| std::fs::metadata(p).unwrap().len();
    let a = open_strict(dir.path());
    let first = a.add(&[7u8; 100]).unwrap();
    let end_of = |db: &OurDb, id: u32, size: u64| {
        db.location(id).unwrap().unwrap().position as u64 + 12 + size
    };
    // A strict write ends with its commit record (the ids it names, for crash recovery).
    let end = end_of(&a, first, 100) + herojobs::ourdb::format::COMMIT_FIXED as u64;
    assert!(len(&data_file) > end, "no fill ahead of the strict append");
    let tail = std::fs::read(&data_file).unwrap()[end as usize..].to_vec();
    assert!(tail.iter().all(|&b| b == 0xFF), "the fill is 0xFF bytes");
    // A second handle (open while the first is) appends right after the last record.
    let b = open(dir.path());
    let second = b.add(&[8u8; 50]).unwrap();
    assert_eq!(b.location(second).unwrap().unwrap().position as u64, end);
    let end = end_of(&b, second, 50);
    a.close().unwrap();
    assert!(len(&data_file) > end, "cut while another handle was open");
    b.close().unwrap();
    assert_eq!(len(&data_file), end, "the last close leaves no fill");
    let db = open(dir.path());
    assert_eq!(db.get(first).unwrap(), [7u8; 100]);
    assert_eq!(db.get(second).unwrap(), [8u8; 50]);
    let third = db.add(b"after").unwrap();
    assert_eq!(db.location(third).unwrap().unwrap().position as u64, end);
    assert!(db.check().unwrap().is_empty());
}
