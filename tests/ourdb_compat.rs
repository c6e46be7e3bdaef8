//! herolib compatibility, checked against docs/ourdb-format.md: databases built byte by byte
//! from the document (dense lookup and herolib's sparse dump) open and read back with their
//! history, and the writer produces exactly the bytes the document's worked example shows.

use herojobs::ourdb::{Config, OurDb, OurDbError};
use std::path::Path;

/// `0.db` of the worked example: add("hi"), add("ok"), set(1, "hey").
fn example_data_file() -> Vec<u8> {
    let mut b = vec![0x00];
    // id 1 v1 at 1: size 2, CRC32("hi") LE, no previous, "hi"
    b.extend([
        0x02, 0x00, 0xac, 0x2a, 0x93, 0xd8, 0, 0, 0, 0, 0, 0, b'h', b'i',
    ]);
    // id 2 at 15
    b.extend([
        0x02, 0x00, 0x47, 0xdd, 0xdc, 0x79, 0, 0, 0, 0, 0, 0, b'o', b'k',
    ]);
    // id 1 v2 at 29: previous = file 0, position 1
    b.extend([
        0x03, 0x00, 0xf0, 0x15, 0xd6, 0x88, 0, 0, 0, 0, 0, 1, b'h', b'e', b'y',
    ]);
    assert_eq!(b.len(), 44);
    b
}

fn example_lookup() -> Vec<u8> {
    let mut l = vec![0u8; 6];
    l.extend([0, 0, 0, 0, 0, 0x1d]);
    l.extend([0, 0, 0, 0, 0, 0x0f]);
    l
}

fn keysize6() -> Config {
    Config {
        keysize: Some(6),
        create: false,
        ..Config::default()
    }
}

fn check_example(db: &OurDb) {
    assert_eq!(db.get(1).unwrap(), b"hey");
    assert_eq!(db.get(2).unwrap(), b"ok");
    assert_eq!(
        db.history(1, 10).unwrap(),
        vec![b"hey".to_vec(), b"hi".to_vec()]
    );
    assert_eq!(db.history(2, 10).unwrap(), vec![b"ok".to_vec()]);
    assert_eq!(db.next_id(), 3);
    assert_eq!(db.ids().collect::<Vec<_>>(), vec![1, 2]);
    assert!(db.check().unwrap().is_empty());
}

#[test]
fn hand_built_dense_database_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("0.db"), example_data_file()).unwrap();
    std::fs::create_dir(d.join("lookup")).unwrap();
    std::fs::write(d.join("lookup/data"), example_lookup()).unwrap();
    std::fs::write(d.join("lookup/.inc"), "3").unwrap();
    // herolib records no keysize: opening without one is a clear error.
    assert!(matches!(
        OurDb::open(
            d,
            Config {
                create: false,
                ..Config::default()
            }
        ),
        Err(OurDbError::KeysizeUnknown { .. })
    ));
    let db = OurDb::open(d, keysize6()).unwrap();
    check_example(&db);
    // ... and it keeps working: the next add appends after byte 44.
    assert_eq!(db.add(b"new").unwrap(), 3);
    assert_eq!(db.location(3).unwrap().unwrap().position, 44);
    db.close().unwrap();
    // The keysize is now recorded: it opens without options.
    let db = OurDb::open(d, Config::default()).unwrap();
    assert_eq!(db.get(3).unwrap(), b"new");
}

#[test]
fn hand_built_sparse_dump_is_imported() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("0.db"), example_data_file()).unwrap();
    std::fs::create_dir(d.join("lookup_dump.db")).unwrap();
    let mut dump = Vec::new();
    dump.extend(1u32.to_le_bytes());
    dump.extend([0, 0, 0, 0, 0, 0x1d]);
    dump.extend(2u32.to_le_bytes());
    dump.extend([0, 0, 0, 0, 0, 0x0f]);
    std::fs::write(d.join("lookup_dump.db/data"), dump).unwrap();
    std::fs::write(d.join("lookup_dump.db/.inc"), "3").unwrap();
    let db = OurDb::open(d, keysize6()).unwrap();
    check_example(&db);
    let dense = std::fs::read(d.join("lookup/data")).unwrap();
    assert_eq!(&dense[..18], &example_lookup()[..]);
}

#[test]
fn hand_built_keysize_2_database_reads_back() {
    // keysize 2: entries are the u16 BE position in 0.db.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("0.db"), example_data_file()).unwrap();
    std::fs::create_dir(d.join("lookup")).unwrap();
    std::fs::write(d.join("lookup/data"), [0, 0, 0, 0x1d, 0, 0x0f]).unwrap();
    std::fs::write(d.join("lookup/.inc"), "3\n").unwrap();
    let db = OurDb::open(
        d,
        Config {
            keysize: Some(2),
            create: false,
            ..Config::default()
        },
    )
    .unwrap();
    check_example(&db);
}

fn lookup_prefix(d: &Path, n: usize) -> Vec<u8> {
    std::fs::read(d.join("lookup/data")).unwrap()[..n].to_vec()
}

#[test]
fn writer_produces_the_documented_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = OurDb::open(d, Config::default()).unwrap();
    assert_eq!(
        db.stored_config().keysize,
        6,
        "herolib's rule for its defaults"
    );
    assert_eq!(db.add(b"hi").unwrap(), 1);
    assert_eq!(db.add(b"ok").unwrap(), 2);
    db.set(1, b"hey").unwrap();
    db.close().unwrap();
    assert_eq!(std::fs::read(d.join("0.db")).unwrap(), example_data_file());
    assert_eq!(lookup_prefix(d, 18), example_lookup());
    let rest = std::fs::read(d.join("lookup/data")).unwrap();
    assert!(
        rest[18..].iter().all(|b| *b == 0),
        "table tail must be zero"
    );
    assert_eq!(std::fs::read_to_string(d.join("lookup/.inc")).unwrap(), "3");
}

#[test]
fn writer_large_record_uses_the_documented_extension() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = OurDb::open(d, Config::default()).unwrap();
    let data: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
    db.add(&data).unwrap();
    db.close().unwrap();
    let file = std::fs::read(d.join("0.db")).unwrap();
    let crc = crc32fast::hash(&data);
    let mut expected = vec![0u8, 0x00, 0x00, 0x48, 0x4a, 0x58, 0x31, 0, 0, 0, 0, 0, 0];
    expected.extend(70_000u32.to_le_bytes());
    expected.extend(crc.to_le_bytes());
    expected.extend(&data);
    assert_eq!(file, expected);
    // What a herolib reader does with it: size 0 → no data → CRC 0 ≠ stored field → rejects.
    let stored = u32::from_le_bytes([file[3], file[4], file[5], file[6]]);
    assert_ne!(crc32fast::hash(&[]), stored);
}
