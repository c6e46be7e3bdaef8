//! Arbitrary bytes as an OurDB directory (lookup table, `.inc`, data files, sparse dump,
//! state and config files) → open, read ids and their history, check: never a panic or UB.
#![no_main]

use arbitrary::Arbitrary;
use herojobs::ourdb::{Config, OurDb};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Dir {
    keysize: u8,
    lookup: Option<Vec<u8>>,
    inc: Option<Vec<u8>>,
    data0: Vec<u8>,
    data1: Option<Vec<u8>>,
    dump: Option<Vec<u8>>,
    dump_inc: Option<Vec<u8>>,
    state: Option<Vec<u8>>,
    config: Option<Vec<u8>>,
    writes: u8,
}

fuzz_target!(|d: Dir| {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    let write = |name: &str, bytes: &Option<Vec<u8>>| {
        if let Some(b) = bytes {
            let path = p.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("mkdir");
            }
            std::fs::write(path, b).expect("write");
        }
    };
    write("0.db", &Some(d.data0.clone()));
    write("1.db", &d.data1);
    write("lookup/data", &d.lookup);
    write("lookup/.inc", &d.inc);
    write("lookup_dump.db/data", &d.dump);
    write("lookup_dump.db/.inc", &d.dump_inc);
    write("ourdb.state", &d.state);
    write("ourdb.json", &d.config);
    let keysize = [2u8, 3, 4, 6][(d.keysize % 4) as usize];
    let cfg = Config {
        keysize: Some(keysize),
        create: false,
        file_size: 4096,
        record_size_max: 1 << 20,
        durability: herojobs::ourdb::Durability::None,
        ..Config::default()
    };
    let Ok(db) = OurDb::open(p, cfg) else { return };
    let last = db.next_id().min(256) as u32;
    for id in 1..=last.max(8) {
        let _ = db.get(id);
        let _ = db.history(id, 4);
        let _ = db.location(id);
    }
    for i in 0..d.writes % 8 {
        let _ = db.add(&[i; 100]);
    }
    if std::fs::metadata(p.join("lookup/data"))
        .map(|m| m.len() < 1 << 16)
        .unwrap_or(false)
    {
        let _ = db.check();
    }
    let _ = db.close();
});
