//! herolib's sparse lookup dump (`lookup_dump.db/`), kept current so that stock herolib
//! (`ourdb.new()`, which keeps its table in memory and loads it only from this dump) reads a
//! herojobs database correctly.
//!
//! The dump is a cache derived from the dense table (`lookup/data`), never a source of truth
//! for herojobs once the dense table exists. It is rewritten whole (temporary file + rename)
//! at `sync()`, at close, after a compaction and, from the background thread, at a bounded
//! rate while the table changes; never when nothing changed since the last dump.

use super::error::{OurDbError, Result};
use super::format::Location;
use super::lookup::{self, Lookup};
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Directory of the dump inside the database directory. Every herolib version examined
/// (lib/data/ourdb from December 2024 to December 2025, in both the freeflowuniverse and
/// the Incubaid repositories) reads and writes only this name.
pub const DUMP_DIR: &str = "lookup_dump.db";

/// Bytes of the id that precedes each entry in the dump.
pub const DUMP_ID_SIZE: usize = 4;

/// Most ids without a record that the dump fills in below the highest live one, beyond the
/// number of live ids (see [`build`]).
pub const GAP_FILL_SLACK: u64 = 65_536;

/// Serialises the dump into `out` (cleared first) from the table as it is now, and returns
/// the highest id it names (0 if none).
///
/// For each id with a record, in ascending order: the id (u32 LE), then its entry. In
/// incremental mode every id *without* a record below the highest live one gets an all-zero
/// entry as well: herolib's import `set`s the ids one by one and refuses an id above its
/// running next id ("cannot set id for insertions"), so a dump with a gap (a deleted id) makes
/// stock herolib fail to open the database. Zero entries read as "no record" in herolib and
/// here. Key-value mode has no such check, so there the dump holds live ids only — and so
/// does a table that is mostly gaps (more than live ids + [`GAP_FILL_SLACK`] of them, e.g.
/// ids reserved in blocks by a fleet): its dump stays O(live ids), and stock herolib in
/// incremental mode cannot open it (it could not hold such ids anyway beyond its 2^24 table).
pub fn build(lookup: &Lookup, incremental: bool, out: &mut Vec<u8>) -> u32 {
    out.clear();
    let ks = lookup.keysize() as usize;
    let _ = lookup.refresh_len();
    let entries = lookup.entries().min(u32::MAX as u64 + 1);
    let mut live: Vec<(u32, [u8; 6])> = Vec::new();
    let chunk_ids = 64 * 1024 / ks as u64;
    let mut chunk = vec![0u8; chunk_ids as usize * ks];
    let mut first = 1u64;
    while first < entries {
        let n = chunk_ids.min(entries - first);
        let bytes = &mut chunk[..n as usize * ks];
        lookup.copy_entries(first, bytes);
        if bytes.iter().any(|b| *b != 0) {
            for (i, e) in bytes.chunks_exact(ks).enumerate() {
                if e.iter().any(|b| *b != 0) {
                    let mut entry = [0u8; 6];
                    entry[..ks].copy_from_slice(e);
                    live.push(((first + i as u64) as u32, entry));
                }
            }
        }
        first += n;
    }
    let highest = live.last().map_or(0, |(id, _)| *id);
    let gaps = highest as u64 - live.len() as u64;
    let fill = incremental && gaps <= live.len() as u64 + GAP_FILL_SLACK;
    out.reserve((if fill { highest as usize } else { live.len() }) * (DUMP_ID_SIZE + ks));
    let mut last_emitted = 0u32;
    for (id, entry) in &live {
        if fill {
            for gap in last_emitted + 1..*id {
                out.extend_from_slice(&gap.to_le_bytes());
                out.extend(std::iter::repeat_n(0u8, ks));
            }
        }
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&entry[..ks]);
        last_emitted = *id;
    }
    highest
}

/// Runs `f` holding an exclusive `flock` on the database directory itself (which nothing
/// else locks), so that dumps by different handles and processes are serialised: each one
/// snapshots the table after the previous one was renamed in, and the dump on disk is always
/// the newest snapshot.
pub fn with_lock<R>(dir: &Path, f: impl FnOnce() -> Result<R>) -> Result<R> {
    let handle = File::open(dir).map_err(|e| OurDbError::io("open", dir, e))?;
    handle.lock().map_err(|e| OurDbError::io("lock", dir, e))?;
    let res = f();
    let _ = handle.unlock();
    res
}

fn write_file(path: &Path, tmp: &Path, data: &[u8]) -> Result<()> {
    let res = (|| {
        let mut f = File::create(tmp).map_err(|e| OurDbError::io("create", tmp, e))?;
        f.write_all(data)
            .map_err(|e| OurDbError::io("write", tmp, e))?;
        // So that a power loss after the rename leaves the new contents, not an empty file.
        f.sync_data().map_err(|e| OurDbError::io("fsync", tmp, e))?;
        drop(f);
        std::fs::rename(tmp, path).map_err(|e| OurDbError::io("rename", path, e))
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    res
}

/// Writes the dump. The first one is built in a temporary directory renamed into place, so
/// `lookup_dump.db/` never exists without both files (herolib fails to open a database whose
/// dump directory lacks one). Later ones rewrite `.inc` first, then `data`, each through a
/// temporary file and a rename: a herolib program opening between the two renames sees a
/// next id at least as high as every id in the data it reads, so it never hands out an id
/// that has a record. `next_id` must exceed every id in `data`. The caller holds
/// [`with_lock`].
pub fn write(dir: &Path, data: &[u8], next_id: u64) -> Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let tag = format!("tmp.{}.{n}", std::process::id());
    let dump_dir = dir.join(DUMP_DIR);
    let inc = next_id.to_string();
    if !dump_dir.exists() {
        let staging = dir.join(format!("{DUMP_DIR}.{tag}"));
        let res = (|| {
            std::fs::create_dir(&staging)
                .map_err(|e| OurDbError::io("create directory", &staging, e))?;
            write_file(&staging.join("data"), &staging.join("data.tmp"), data)?;
            write_file(
                &staging.join(".inc"),
                &staging.join(".inc.tmp"),
                inc.as_bytes(),
            )?;
            std::fs::rename(&staging, &dump_dir).map_err(|e| OurDbError::io("rename", &dump_dir, e))
        })();
        if res.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        return res;
    }
    write_file(
        &dump_dir.join(".inc"),
        &dump_dir.join(format!(".inc.{tag}")),
        inc.as_bytes(),
    )?;
    write_file(
        &dump_dir.join("data"),
        &dump_dir.join(format!("data.{tag}")),
        data,
    )
}

/// Whether the dump on disk is exactly `data` with `.inc` = `next_id` (then rewriting it
/// would change nothing). Compares contents, not timestamps: the table is written through a
/// shared map, and its mtime moves only when a clean page is first dirtied.
pub fn is_current(dir: &Path, data: &[u8], next_id: u64) -> bool {
    let dump_dir = dir.join(DUMP_DIR);
    matches!(lookup::read_inc(&dump_dir.join(".inc")), Ok(Some(n)) if n == next_id)
        && std::fs::read(dump_dir.join("data")).is_ok_and(|d| d == data)
}

/// A dump's entries in file order, or why it does not parse.
pub type Parsed = std::result::Result<Vec<(u32, Location)>, String>;

/// The dump on disk parsed with `keysize`, for `check`: `None` if there is none.
/// `Err` carries a description of why it does not parse.
pub fn read(dir: &Path, keysize: u8) -> Result<Option<Parsed>> {
    let data = dir.join(DUMP_DIR).join("data");
    let bytes = match std::fs::read(&data) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(OurDbError::io("read", &data, e)),
    };
    let rec = DUMP_ID_SIZE + keysize as usize;
    if bytes.len() % rec != 0 {
        return Ok(Some(Err(format!(
            "{}: length {} is not a multiple of {rec} (4-byte id + {keysize}-byte entry)",
            data.display(),
            bytes.len()
        ))));
    }
    let mut out = Vec::with_capacity(bytes.len() / rec);
    for chunk in bytes.chunks_exact(rec) {
        let id = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        out.push((id, Location::decode_entry(&chunk[DUMP_ID_SIZE..])));
    }
    Ok(Some(Ok(out)))
}
