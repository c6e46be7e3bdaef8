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
