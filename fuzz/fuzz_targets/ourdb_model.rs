//! Model-based: a random sequence of add/set/delete/get/reopen/compact against OurDB and a
//! HashMap; after every step they must agree.
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
    Delete(u8),
    Get(u8),
    History(u8),
    Reopen,
    Compact,
}

fn cfg() -> Config {
    Config {
        file_size: 2048,
        durability: Durability::None,
        ..Config::default()
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut db = Some(OurDb::open(dir.path(), cfg()).expect("open"));
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
                db = Some(OurDb::open(dir.path(), cfg()).expect("reopen"));
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
