//! Test-only power-loss simulator: what a database directory could hold after the machine
//! lost power at a chosen instant, given which writes the code fsynced.
//!
//! While armed for a directory, every fsync of one of its files (through [`super::fsync`])
//! first records the file's whole content: that much is durable whatever happens next (an
//! fsync persists at least what was written before it was called). [`crash_copy`] then stops
//! every writer at one instant (writers pass a gate, [`gate`], around each write) and builds a
//! copy of the directory in which each 4 KiB page of each tracked file holds, at random,
//! either its last durable content or its current content — the kernel may have written any
//! dirty page back on its own, or not — and each file's length is the durable or the current
//! one. Files the code never tracks here (the sparse dump, `.inc`, the configuration, the
//! mark, all written through a temporary file that is fsynced before its rename) are copied
//! as they are. Recovery then runs on the copy; it is a real check: a page of the lookup
//! table missing its newest entries, or a data file without its unsynced tail, is exactly
//! what open must repair from what was fsynced.

use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Page size of the model: the unit the kernel writes back.
pub const PAGE: usize = 4096;

struct Armed {
    root: PathBuf,
    durable: HashMap<PathBuf, Vec<u8>>,
}

static ARMED: Mutex<Option<Armed>> = Mutex::new(None);
static GATE: RwLock<()> = RwLock::new(());
/// Serialises the tests that arm the simulator (it is process-wide).
pub static EXCLUSIVE: Mutex<()> = Mutex::new(());

/// Taken (shared) around each write to a database file, so that [`crash_copy`] sees one instant.
pub fn gate() -> RwLockReadGuard<'static, ()> {
    GATE.read()
}

/// Whether the simulator models `rel` (a path relative to the database directory): the
/// files written in place, whose pages the kernel writes back in any order.
fn tracked(rel: &Path) -> bool {
    let s = rel.to_string_lossy();
    s.ends_with(".db") && !s.contains('/') || s == "lookup/data" || s == "ourdb.state"
}

fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Starts recording for the database in `root`: what its files hold now counts as durable.
pub fn arm(root: &Path) {
    let mut durable = HashMap::new();
    for p in files_under(root) {
        if let Ok(b) = std::fs::read(&p) {
            durable.insert(p, b);
        }
    }
    *ARMED.lock() = Some(Armed {
        root: root.to_path_buf(),
        durable,
    });
}

/// Stops recording.
pub fn disarm() {
    *ARMED.lock() = None;
}

/// Called before every fsync of `path`: its current content becomes its durable content.
pub fn before_sync(path: &Path) {
    let mut armed = ARMED.lock();
    let Some(a) = armed.as_mut() else { return };
    if !path.starts_with(&a.root) || path.is_dir() {
        return;
    }
    let _g = GATE.read();
    if let Ok(b) = std::fs::read(path) {
        a.durable.insert(path.to_path_buf(), b);
    }
}

/// Builds in `into` what the armed directory could hold after a power loss now, choosing
/// each page with `coin` (true: the current content reached the disk). Writers are held at
/// the gate while the current contents are read.
pub fn crash_copy(into: &Path, mut coin: impl FnMut() -> bool) {
    let armed = ARMED.lock();
    let Some(a) = armed.as_ref() else {
        panic!("power-loss simulator not armed")
    };
    let now: Vec<(PathBuf, Vec<u8>)> = {
        let _stop = GATE.write();
        files_under(&a.root)
            .into_iter()
            .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
            .collect()
    };
    for (path, current) in now {
        let Ok(rel) = path.strip_prefix(&a.root) else {
            continue;
        };
        let out = into.join(rel);
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        if !tracked(rel) {
            std::fs::write(&out, &current).expect("copy");
            continue;
        }
        let empty = Vec::new();
        let durable = a.durable.get(&path).unwrap_or(&empty);
        let len = if coin() { current.len() } else { durable.len() };
        let mut bytes = vec![0u8; len];
        for (i, page) in bytes.chunks_mut(PAGE).enumerate() {
            let from = if coin() { &current } else { durable };
            let at = i * PAGE;
            if at < from.len() {
                let n = page.len().min(from.len() - at);
                page[..n].copy_from_slice(&from[at..at + n]);
            }
        }
        std::fs::write(&out, &bytes).expect("write copy");
    }
}

#[cfg(test)]
mod tests {
    //! Power loss at random instants under concurrent `strict` writers: every acknowledged
    //! write reads back from what the simulated disk kept, and the next id is above every id
    //! acknowledged.

    use super::*;
    use crate::ourdb::{Config, Durability, OurDb, OurDbError};
    use rand::{Rng, SeedableRng};
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    #[derive(Clone, Debug)]
    enum Op {
        /// `id` now holds these bytes.
        Write(u32, Vec<u8>),
        Delete(u32),
    }

    #[derive(Default)]
    struct Log {
        /// Every call attempted, in order, with what it wrote (an add's ids are logged once
        /// it returned them: an add cut off by the crash is not checked).
        ops: Vec<Vec<Op>>,
        /// How many of `ops` were acknowledged (a prefix: one thread, one call at a time).
        acked: usize,
    }

    /// Data of the `n`-th write of thread `t`: distinct per write, of varied sizes (empty,
    /// classic, and beyond the 16-bit size field).
    fn payload(t: usize, n: u64) -> Vec<u8> {
        let len = match n % 41 {
            0 => 0,
            1 => 70_000,
            k => (k as usize * 13 + t * 7) % 700,
        };
        let mut d: Vec<u8> = (0..len).map(|i| (n as usize * 131 + i + t) as u8).collect();
        if len >= 12 {
            d[..8].copy_from_slice(&n.to_le_bytes());
            d[8..12].copy_from_slice(&(t as u32).to_le_bytes());
        }
        d
    }

    /// `add` starts above this many ids; `put_many` writes below, at ids OurDB never hands
    /// out (as a fleet's store records jobs whose ids another store allocated).
    const FOREIGN_GAP: u32 = 40_000;

    fn cfg() -> Config {
        Config {
            durability: Durability::Strict,
            file_size: 64 * 1024,
            ..Config::default()
        }
    }

    /// One writer thread's work: adds, batches, sets of its own ids, puts at ids nobody
    /// handed out (a fleet's), an id block jump now and then, and deletes.
    fn writer(db: &OurDb, t: usize, log: &parking_lot::Mutex<Log>, stop: &AtomicBool, seed: u64) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut mine: Vec<u32> = Vec::new();
        // Below the first id `add` hands out (see FOREIGN_GAP): ids no add ever returns.
        let mut foreign = 1 + t as u32 * (FOREIGN_GAP / 4);
        let mut n = 0u64;
        let mut next_data = || {
            n += 1;
            payload(t, n)
        };
        while !stop.load(Ordering::Acquire) {
            let roll = rng.gen_range(0..100);
            let res: Result<(), OurDbError>;
            if roll < 35 || mine.is_empty() {
                let k = if roll < 20 { 1 } else { rng.gen_range(2..12) };
                let datas: Vec<Vec<u8>> = (0..k).map(|_| next_data()).collect();
                let ids = loop {
                    match db.add_many(datas.iter().map(|d| d.as_slice())) {
                        Ok(ids) => break ids,
                        Err(OurDbError::IdBlockExhausted { next, .. }) => {
                            db.reserve_ids(next, next + 1000).expect("reserve");
                        }
                        Err(e) => panic!("thread {t}: add_many: {e}"),
                    }
                };
                mine.extend(&ids);
                let mut l = log.lock();
                l.ops.push(
                    ids.iter()
                        .zip(datas)
                        .map(|(id, d)| Op::Write(*id, d))
                        .collect(),
                );
                l.acked += 1;
                continue;
            } else if roll < 70 {
                let k = rng.gen_range(1..5).min(mine.len());
                let items: Vec<(u32, Vec<u8>)> = (0..k)
                    .map(|_| (mine[rng.gen_range(0..mine.len())], next_data()))
                    .collect();
                log.lock().ops.push(
                    items
                        .iter()
                        .map(|(id, d)| Op::Write(*id, d.clone()))
                        .collect(),
                );
                res = db.set_many(items.iter().map(|(id, d)| (*id, d.as_slice())));
            } else if roll < 85 {
                foreign += rng.gen_range(1..4);
                let d = next_data();
                log.lock().ops.push(vec![Op::Write(foreign, d.clone())]);
                res = db.put_many([(foreign, d.as_slice())]);
                mine.push(foreign);
            } else if roll < 90 {
                let start = db.next_id() + rng.gen_range(0..50);
                log.lock().ops.push(Vec::new());
                res = db.reserve_ids(start, start + 500).map(|_| ());
            } else {
                let id = mine.swap_remove(rng.gen_range(0..mine.len()));
                log.lock().ops.push(vec![Op::Delete(id)]);
                res = db.delete(id);
            }
            match res {
                Ok(()) => log.lock().acked += 1,
                Err(e) => panic!("thread {t}: {e}"),
            }
        }
    }

    /// A call on one id and the state it leaves (`None`: deleted).
    type Call = (u32, Option<Vec<u8>>);

    /// Ids whose six-byte table entry spans two 4 KiB pages (keysize 6): the entries a
    /// power loss can tear.
    fn straddling(upto: u32) -> Vec<u32> {
        (1..upto)
            .filter(|id| (*id as usize * 6) % PAGE > PAGE - 6)
            .collect()
    }

    /// A delete rewrites the six bytes of a table entry; for an entry across two pages a
    /// power loss may keep one page's half and not the other's. Deletes of exactly those
    /// ids, cut at random instants: every id reads back as its last acknowledged state or a
    /// later attempted one — never as damage. `strict` also sets them again in between;
    /// `periodic` only deletes (its sets are durable at the next round, not at the
    /// acknowledgement: a power loss before it may leave a set's entry at missing bytes, the
    /// window that mode gives up, docs/ourdb-format.md), and `delete` is durable in both.
    #[test]
    fn power_loss_during_deletes_never_leaves_a_torn_entry() {
        let _one = EXCLUSIVE.lock();
        let mut rng = rand::thread_rng();
        for round in 0..6 {
            let durability = if round % 2 == 0 {
                Durability::Strict
            } else {
                Durability::Periodic
            };
            let cfg = Config {
                durability,
                keysize: Some(6),
                ..Config::default()
            };
            let tmp = tempfile::tempdir().unwrap();
            let live = tmp.path().join("live");
            let db = OurDb::open(&live, cfg.clone()).unwrap();
            let strict = durability == Durability::Strict;
            let upto = if strict { 6200 } else { 40_000 };
            let ids = straddling(upto);
            assert!(ids.len() >= 6);
            let version = |id: u32, v: u32| format!("{id}:{v}").into_bytes();
            let first: Vec<Vec<u8>> = (1..upto).map(|id| version(id, 0)).collect();
            let added = db.add_many(first.iter().map(|d| d.as_slice())).unwrap();
            assert_eq!(added.first(), Some(&1));
            db.close().unwrap();
            arm(&live);
            let db = OurDb::open(&live, cfg.clone()).unwrap();
            // (id, state after the call) per call attempted, and how many were acknowledged.
            let log: parking_lot::Mutex<(Vec<Call>, usize)> =
                parking_lot::Mutex::new((Vec::new(), 0));
            let (stop, done) = (AtomicBool::new(false), AtomicBool::new(false));
            let copies = 12;
            let mut cuts = Vec::new();
            std::thread::scope(|s| {
                s.spawn(|| {
                    let mut v = 0;
                    let mut present = vec![true; ids.len()];
                    while !stop.load(Ordering::Acquire) && (strict || present.contains(&true)) {
                        for (k, &id) in ids.iter().enumerate() {
                            if !strict && !present[k] {
                                continue;
                            }
                            v += 1;
                            let after = (!present[k]).then(|| version(id, v));
                            log.lock().0.push((id, after.clone()));
                            match &after {
                                Some(d) => db.set(id, d).unwrap(),
                                None => db.delete(id).unwrap(),
                            }
                            present[k] = !present[k];
                            log.lock().1 += 1;
                        }
                    }
                    done.store(true, Ordering::Release);
                });
                for c in 0..copies {
                    let target = log.lock().1 + rng.gen_range(1..40);
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while log.lock().1 < target
                        && !done.load(Ordering::Acquire)
                        && Instant::now() < deadline
                    {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    let acked = log.lock().1;
                    let copy = tmp.path().join(format!("cut-{c}"));
                    let seed: u64 = rng.gen();
                    let mut coin_rng = rand::rngs::StdRng::seed_from_u64(seed);
                    crash_copy(&copy, || coin_rng.gen_bool(0.5));
                    cuts.push((copy, acked));
                }
                stop.store(true, Ordering::Release);
            });
            drop(db);
            disarm();
            let calls = log.into_inner().0;
            for (copy, acked) in cuts {
                // Per id: the state its last acknowledged call left (or the first version),
                // then every state a later call attempted.
                let mut allowed: HashMap<u32, Vec<Option<Vec<u8>>>> = ids
                    .iter()
                    .map(|&id| (id, vec![Some(version(id, 0))]))
                    .collect();
                for (i, (id, after)) in calls.iter().enumerate() {
                    let states = allowed.get_mut(id).unwrap();
                    if i < acked {
                        states.clear();
                    }
                    states.push(after.clone());
                }
                let db = OurDb::open(&copy, cfg.clone())
                    .unwrap_or_else(|e| panic!("round {round}: reopen after power loss: {e}"));
                for &id in &ids {
                    let got = match db.get(id) {
                        Ok(data) => Some(data),
                        Err(OurDbError::NotFound { .. }) => None,
                        Err(e) => panic!("round {round} ({durability:?}): id {id}: {e}"),
                    };
                    assert!(
                        allowed[&id].contains(&got),
                        "round {round} ({durability:?}): id {id} reads {:?}",
                        got.map(String::from_utf8)
                    );
                }
                let problems = db.check().unwrap();
                assert!(problems.is_empty(), "round {round}: {problems:?}");
                db.close().unwrap();
            }
        }
    }

    #[test]
    fn power_loss_at_random_instants_keeps_every_acknowledged_strict_write() {
        let _one = EXCLUSIVE.lock();
        let mut rng = rand::thread_rng();
        for round in 0..10 {
            let tmp = tempfile::tempdir().unwrap();
            let live = tmp.path().join("live");
            // Half the rounds start from a database with history (closed: checkpointed).
            {
                let db = OurDb::open(&live, cfg()).unwrap();
                // Adds need a block from here on: the writers reserve more as a fleet's
                // store does.
                db.reserve_ids(FOREIGN_GAP as u64 + 1, FOREIGN_GAP as u64 + 61)
                    .unwrap();
                if round % 2 == 1 {
                    for i in 0..50u64 {
                        db.add(&payload(9, i)).unwrap();
                    }
                }
                db.close().unwrap();
            }
            arm(&live);
            let db = OurDb::open(&live, cfg()).unwrap();
            let logs: Vec<parking_lot::Mutex<Log>> = (0..4)
                .map(|_| parking_lot::Mutex::new(Log::default()))
                .collect();
            let stop = AtomicBool::new(false);
            let copy = tmp.path().join("after-power-loss");
            let seed: u64 = rng.gen();
            let target = rng.gen_range(20..400);
            let mut acked_at_crash = vec![0usize; logs.len()];
            std::thread::scope(|s| {
                for (t, log) in logs.iter().enumerate() {
                    let (db, stop) = (&db, &stop);
                    s.spawn(move || writer(db, t, log, stop, seed ^ t as u64));
                }
                // Wait (generously) until enough calls were acknowledged, then cut the power.
                let deadline = Instant::now() + Duration::from_secs(120);
                while logs.iter().map(|l| l.lock().acked).sum::<usize>() < target
                    && Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                for (t, log) in logs.iter().enumerate() {
                    acked_at_crash[t] = log.lock().acked;
                }
                let mut coin_rng = rand::rngs::StdRng::seed_from_u64(seed);
                crash_copy(&copy, || coin_rng.gen_bool(0.5));
                stop.store(true, Ordering::Release);
            });
            drop(db);
            disarm();

            // What each id may hold: the state its last acknowledged call left, or the state
            // any later (attempted) call left.
            let mut allowed: HashMap<u32, Vec<Option<Vec<u8>>>> = HashMap::new();
            let mut highest_acked = 0u32;
            for (t, log) in logs.iter().enumerate() {
                let log = log.lock();
                for (i, call) in log.ops.iter().enumerate() {
                    for op in call {
                        let (id, state) = match op {
                            Op::Write(id, d) => (*id, Some(d.clone())),
                            Op::Delete(id) => (*id, None),
                        };
                        let e = allowed.entry(id).or_default();
                        if i < acked_at_crash[t] {
                            e.clear();
                            highest_acked = highest_acked.max(id);
                        }
                        e.push(state);
                    }
                }
            }
            let db = OurDb::open(&copy, cfg())
                .unwrap_or_else(|e| panic!("round {round}: reopen after power loss: {e}"));
            let mut checked = 0;
            for (t, log) in logs.iter().enumerate() {
                let log = log.lock();
                for call in &log.ops[..acked_at_crash[t]] {
                    for op in call {
                        let id = match op {
                            Op::Write(id, _) | Op::Delete(id) => *id,
                        };
                        let ok = &allowed[&id];
                        let got = match db.get(id) {
                            Ok(data) => Some(data),
                            Err(OurDbError::NotFound { .. }) => None,
                            Err(e) => panic!("round {round}: id {id}: {e}"),
                        };
                        assert!(
                            ok.contains(&got),
                            "round {round}: id {id}: {:?} after power loss, allowed {} states",
                            got.as_ref().map(|d| d.len()),
                            ok.len()
                        );
                        checked += 1;
                    }
                }
            }
            assert!(
                db.next_id() > highest_acked as u64,
                "round {round}: next id {} not above acknowledged id {highest_acked}",
                db.next_id()
            );
            let problems = db.check().unwrap();
            assert!(problems.is_empty(), "round {round}: {problems:?}");
            db.reserve_ids(db.next_id(), db.next_id() + 10).unwrap();
            let fresh = db.add(b"after").unwrap();
            assert!(fresh as u64 > highest_acked as u64);
            db.close().unwrap();
            assert!(checked > 0, "round {round}: nothing was acknowledged");
        }
    }
}
