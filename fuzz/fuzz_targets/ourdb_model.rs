//! Model-based: a random sequence of add/set/set_many/delete/get/reopen/compact against
//! OurDB and a HashMap; after every step they must agree. In `none` mode, or in `strict` mode,
//! whose writes publish their lookup entries in the fsync round after the records.
#![no_main]

use arbitrary::Arbitrary;
use herojobs::ourdb::{Config, Durability, OurDb, OurDbError};
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;

#[derive(Arbitrary, Debug)]
enum Op {
    Add(Vec<u8>),
    AddLarge(u8),
    Set(u8, Vec<u8>),
    SetMany(Vec<(u8, Vec<u8>)>),
    Delete(u8),
    Get(u8),
    History(u8),
    Reopen,
    Compact,
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

fuzz_target!(|input: Input| {
    let Input { strict, ops } = input;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut db = Some(OurDb::open(dir.path(), cfg(strict)).expect("open"));
    let mut model: HashMap<u32, Vec<Vec<u8>>> = HashMap::new();
    let mut next = 1u32;
    let pick = |k: u8, next: u32| (k as u32 % next.max(1)).max(1);
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
            Op::Set(k, data) => {
                let id = pick(k, next);
                if id < next {
                    d.set(id, &data).expect("set");
                    model.entry(id).or_default().insert(0, data);
                }
            }
            Op::SetMany(items) => {
                let items: Vec<(u32, Vec<u8>)> = items
                    .into_iter()
                    .take(8)
                    .map(|(k, data)| (pick(k, next), data))
                    .collect();
                let res = d.set_many(items.iter().map(|(id, data)| (*id, data.as_slice())));
                if items.iter().any(|(id, _)| *id >= next) {
                    // An id not handed out yet: refused, nothing written.
                    assert!(
                        matches!(res, Err(OurDbError::IdNotAllocated { .. })),
                        "{res:?}"
                    );
                } else {
                    res.expect("set_many");
                    for (id, data) in items {
                        model.entry(id).or_default().insert(0, data);
                    }
                }
            }
            Op::Delete(k) => {
                let id = pick(k, next);
                match (d.delete(id), model.remove(&id)) {
                    (Ok(()), Some(_)) => {}
                    (Err(OurDbError::NotFound { .. }), None) => {}
                    (r, m) => panic!("delete {id}: db {r:?}, model had {}", m.is_some()),
                }
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
                db = Some(OurDb::open(dir.path(), cfg(strict)).expect("reopen"));
            }
            Op::Compact => {
                d.compact().expect("compact");
                for versions in model.values_mut() {
                    versions.truncate(1);
                }
            }
        }
        let d = db.as_ref().expect("db");
        assert_eq!(d.next_id(), next as u64);
    }
    let d = db.as_ref().expect("db");
    let mut ids: Vec<u32> = model.keys().copied().collect();
    ids.sort();
    assert_eq!(d.ids().collect::<Vec<_>>(), ids);
    for (id, versions) in &model {
        assert_eq!(&d.get(*id).expect("final get"), &versions[0]);
    }
    assert!(d.check().expect("check").is_empty());
});
