//! Model-based: a random sequence of add/add_many/set/set_many/put_many/delete/get/reopen/
//! compact against OurDB and a HashMap; after every step they must agree. In `none` mode, or
//! in `strict` mode, whose writes publish their lookup entries in the fsync round after the
//! records and whose table is synced only by checkpoints. Two crash steps: a torn tail of
//! garbage after the data (ignored by the next open), and — `strict` only — a power loss
//! that lost everything of the lookup table, the mark, `.inc` and the state since the last
//! checkpoint (open must rebuild it from the commit records in the data files).
#![no_main]

use arbitrary::Arbitrary;
use herojobs::ourdb::{Config, Durability, OurDb, OurDbError};
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::path::Path;

/// `add` hands out ids above this; `put_many` writes below it, at ids OurDB never handed out.
const GAP: u32 = 200;

#[derive(Arbitrary, Debug)]
enum Op {
    Add(Vec<u8>),
    AddLarge(u8),
    AddMany(Vec<Vec<u8>>),
    Set(u8, Vec<u8>),
    SetMany(Vec<(u8, Vec<u8>)>),
    PutMany(Vec<(u8, Vec<u8>)>),
    Delete(u8),
    Get(u8),
    History(u8),
    Reopen,
    Compact,
    TornTail(Vec<u8>),
    PowerLoss,
}

#[derive(Arbitrary, Debug)]
struct Input {
    strict: bool,
    ops: Vec<Op>,
}

fn cfg(strict: bool) -> Config {
    Config {
        file_size: 2048,
        durability: if strict {
            Durability::Strict
        } else {
            Durability::None
        },
        ..Config::default()
    }
}

/// The files a power loss may take back to their last checkpoint.
const CHECKPOINTED: [&str; 4] = ["lookup/data", "lookup/mark", "lookup/.inc", "ourdb.state"];

/// Their content now (taken right after a checkpoint: a close, a delete, a compaction).
fn snapshot(dir: &Path) -> Vec<Option<Vec<u8>>> {
    CHECKPOINTED
        .iter()
        .map(|f| std::fs::read(dir.join(f)).ok())
        .collect()
}

fn restore(dir: &Path, snap: &[Option<Vec<u8>>]) {
    for (f, content) in CHECKPOINTED.iter().zip(snap) {
        match content {
            Some(bytes) => std::fs::write(dir.join(f), bytes).expect("restore"),
            None => {
                let _ = std::fs::remove_file(dir.join(f));
            }
        }
    }
}

fn last_data_file(dir: &Path) -> std::path::PathBuf {
    let mut n = 0;
    while dir.join(format!("{}.db", n + 1)).exists() {
        n += 1;
    }
    dir.join(format!("{n}.db"))
}

fuzz_target!(|input: Input| {
    let Input { strict, ops } = input;
    let dir = tempfile::tempdir().expect("tempdir");
    let d0 = OurDb::open(dir.path(), cfg(strict)).expect("open");
    d0.reserve_ids(GAP as u64 + 1, u32::MAX as u64 + 1)
        .expect("reserve");
    let mut db = Some(d0);
    let mut model: HashMap<u32, Vec<Vec<u8>>> = HashMap::new();
    let mut next = GAP + 1;
    let pick = |k: u8, next: u32| (k as u32 * 3 % next.max(1)).max(1);
    let mut snap: Option<Vec<Option<Vec<u8>>>> = None;
    let reopen = |db: &mut Option<OurDb>| {
        db.take().expect("db").close().expect("close");
        *db = Some(OurDb::open(dir.path(), cfg(strict)).expect("reopen"));
    };
    for op in ops.into_iter().take(64) {
        let d = db.as_ref().expect("db");
        match op {
            Op::Add(data) => {
                let id = d.add(&data).expect("add");
                assert_eq!(id, next);
                next += 1;
                model.insert(id, vec![data]);
            }
            Op::AddLarge(b) => {
                let data = vec![b; 70_000];
                let id = d.add(&data).expect("add large");
                assert_eq!(id, next);
                next += 1;
                model.insert(id, vec![data]);
            }
            Op::AddMany(datas) => {
                let datas: Vec<Vec<u8>> = datas.into_iter().take(16).collect();
                let ids = d
                    .add_many(datas.iter().map(|x| x.as_slice()))
                    .expect("add_many");
                assert_eq!(ids.len(), datas.len());
                for (id, data) in ids.into_iter().zip(datas) {
                    assert_eq!(id, next);
                    next += 1;
                    model.insert(id, vec![data]);
                }
            }
            Op::Set(k, data) => {
                let id = pick(k, next);
                d.set(id, &data).expect("set");
                model.entry(id).or_default().insert(0, data);
            }
            Op::SetMany(items) => {
                let items: Vec<(u32, Vec<u8>)> = items
                    .into_iter()
                    .take(8)
                    .map(|(k, data)| (pick(k, next), data))
                    .collect();
                d.set_many(items.iter().map(|(id, data)| (*id, data.as_slice())))
                    .expect("set_many");
                for (id, data) in items {
                    model.entry(id).or_default().insert(0, data);
                }
            }
            Op::PutMany(items) => {
                let items: Vec<(u32, Vec<u8>)> = items
                    .into_iter()
                    .take(8)
                    .map(|(k, data)| ((k as u32 % GAP).max(1), data))
                    .collect();
                d.put_many(items.iter().map(|(id, data)| (*id, data.as_slice())))
                    .expect("put_many");
                for (id, data) in items {
                    model.entry(id).or_default().insert(0, data);
                }
            }
            Op::Delete(k) => {
                let id = pick(k, next);
                match (d.delete(id), model.remove(&id)) {
                    (Ok(()), Some(_)) => {}
                    (Err(OurDbError::NotFound { .. }), None) => {}
                    (r, m) => panic!("delete {id}: db {r:?}, model had {}", m.is_some()),
                }
                snap = Some(snapshot(dir.path()));
            }
            Op::Get(k) => {
                let id = pick(k, next);
                match (d.get(id), model.get(&id)) {
                    (Ok(v), Some(versions)) => assert_eq!(&v, &versions[0]),
                    (Err(OurDbError::NotFound { .. }), None) => {}
                    (r, m) => panic!("get {id}: db {r:?}, model {m:?}"),
                }
            }
            Op::History(k) => {
                let id = pick(k, next);
                if let Some(versions) = model.get(&id) {
                    let h = d.history(id, 100).expect("history");
                    assert_eq!(&h, versions);
                }
            }
            Op::Reopen => {
                db.take().expect("db").close().expect("close");
                snap = Some(snapshot(dir.path()));
                db = Some(OurDb::open(dir.path(), cfg(strict)).expect("reopen"));
            }
            Op::Compact => {
                d.compact().expect("compact");
                for versions in model.values_mut() {
                    versions.truncate(1);
                }
                snap = Some(snapshot(dir.path()));
            }
            Op::TornTail(bytes) => {
                // Bytes that cannot parse as a record: a header claiming 65,535 bytes that
                // run past the end of the file.
                db.take().expect("db").close().expect("close");
                let mut garbage = vec![0xFF, 0xFF];
                garbage.extend(bytes.into_iter().take(1000));
                let path = last_data_file(dir.path());
                let mut data = std::fs::read(&path).expect("read");
                data.extend(garbage);
                std::fs::write(&path, data).expect("write");
                db = Some(OurDb::open(dir.path(), cfg(strict)).expect("reopen after torn tail"));
                snap = Some(snapshot(dir.path()));
            }
            Op::PowerLoss => {
                // Only `strict` promises anything here; `none` gives no durability.
                if let (true, Some(s)) = (strict, &snap) {
                    db.take().expect("db").close().expect("close");
                    restore(dir.path(), s);
                    db = Some(OurDb::open(dir.path(), cfg(strict)).expect("reopen after power loss"));
                    snap = Some(snapshot(dir.path()));
                }
            }
        }
        let d = db.as_ref().expect("db");
        assert_eq!(d.next_id(), next as u64);
    }
    let _ = reopen;
    let d = db.as_ref().expect("db");
    let mut ids: Vec<u32> = model.keys().copied().collect();
    ids.sort();
    assert_eq!(d.ids().collect::<Vec<_>>(), ids);
    for (id, versions) in &model {
        assert_eq!(&d.get(*id).expect("final get"), &versions[0]);
    }
    assert!(d.check().expect("check").is_empty());
});
