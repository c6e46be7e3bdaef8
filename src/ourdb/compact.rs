//! Compaction: rewrite the live records into fresh data files and switch to them atomically,
//! online: writers and readers go on while the records are copied.
//!
//! Copying (the long part) runs without the writer lock:
//!
//! 1. Under the writer lock, briefly: publish pending entries and take a *snapshot* of the
//!    lookup table (a copy of its bytes: O(ids) memcpy) and the generation.
//! 2. Without the lock: copy the record each snapshot entry names (and, with history
//!    retention, up to K versions, chained oldest first so that each copy's previous
//!    location is the next older copy) into `.compact/N.db`, and its new location into
//!    `.compact/lookup/data`. Records are append-only, so what a snapshot entry names stays
//!    as it is; the one exception, `delete` zeroing a record, happens only after the entry
//!    was cleared, so such a read (a CRC error, or an empty record) is redone or dropped by
//!    the next round, which sees the entry changed.
//! 3. Catch-up rounds: a new snapshot, and for every id whose entry differs from the one it
//!    was copied from, copy its current version again (or clear it: deleted). While a round
//!    still changes many ids it runs without the lock; the last one runs under the writer
//!    lock, which is then kept through the switch: nothing written before it returns is
//!    missing from the result.
//! 4. The switch, still under the lock, is the redo log of the staging directory:
//!    fsync the staged files; write `.compact/COMMIT` (the number of new data files) through a
//!    temporary name, fsync it, rename it into place, fsync the directories — the rename is
//!    the commit point; the new table's mark (`lookup/mark`: the end of the new data) is
//!    staged with it. Then rename each staged file over its live counterpart, remove data
//!    files past the new count, update `ourdb.state` (bumping the generation), remove
//!    `COMMIT`, then `.compact/`.
//!
//! On open, `recover` finishes step 4 if `COMMIT` exists and discards `.compact/` if not
//! (unless a live compaction holds `ourdb.compact.lock`: its staging is not debris). A crash
//! before the commit point leaves the old database; after it, the new one.
//!
//! One compaction at a time: `ourdb.compact.lock` is taken exclusively (non-blocking) for the
//! whole run, by every process and thread. A compaction that finds the generation changed
//! between its snapshots (an older herojobs compacted without that lock) abandons and removes
//! its staging.
//!
//! Readers: a reader holds the maps of one generation (old inodes stay mapped after the
//! renames) and re-checks the generation after every read, retrying with the new maps. In
//! this process the renames and the generation bump happen under the maps' reload lock, so
//! no reader opens a file by name in between and takes a new file for an old one.

use super::error::{OurDbError, Result};
use super::format::{self, Location};
use super::inner::Inner;
use super::mark::{self, Mark};
use super::write::Writer;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Name of the staging directory.
pub const STAGING: &str = ".compact";
/// Name of the commit marker inside it.
pub const COMMIT: &str = "COMMIT";
/// Held exclusively (`flock`) by the one running compaction, in any process.
pub const COMPACT_LOCK: &str = "ourdb.compact.lock";
/// A catch-up round that still changed more ids than this is followed by another one
/// without the lock (the locked round should copy only what the last moments wrote).
const LOCKED_CATCH_UP_MAX: u64 = 256;
/// At most this many rounds without the lock. Each round copies what was written during
/// the one before, so the rounds shrink geometrically while the copy is faster than the
/// writers; they stop early once a round is no smaller than the one before (a write load
/// faster than the copy: more rounds would not help, and the locked round copies the rest).
const MAX_UNLOCKED_ROUNDS: u32 = 16;

/// How to compact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct CompactOptions {
    /// Versions to keep per id, newest first (0 or 1: the current version only). Kept
    /// versions are chained as before: each one's previous location names the next older.
    pub keep_history: usize,
    /// Hold the writer lock for the whole copy, as compaction did before it was online:
    /// writers wait until it is done. Only for comparison (`benches/ourdb.rs`) and for a
    /// caller that wants no write to land in the old files meanwhile.
    pub blocking: bool,
}

impl CompactOptions {
    /// Keep up to `versions` versions per id (0 or 1: latest only).
    pub fn keep_history(versions: usize) -> CompactOptions {
        CompactOptions {
            keep_history: versions,
            blocking: false,
        }
    }

    /// The same, holding the writer lock for the whole copy (see [`CompactOptions::blocking`]).
    pub fn blocking(self) -> CompactOptions {
        CompactOptions {
            blocking: true,
            ..self
        }
    }
}

/// What a compaction did.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[non_exhaustive]
pub struct CompactReport {
    /// Live records (ids) in the result.
    pub records: u64,
    /// Records written into the result, older versions kept by history retention included.
    pub versions: u64,
    /// Data bytes before (at the switch, so including what was written during the copy).
    pub bytes_before: u64,
    /// Data bytes after.
    pub bytes_after: u64,
    /// Live bytes after (current versions: header + data).
    pub live_bytes: u64,
    /// Data files after.
    pub files_after: usize,
    /// Copy rounds (the first full copy, catch-ups without the lock, the locked one).
    pub rounds: u32,
    /// Ids copied again or dropped by the catch-up rounds (written during the copy).
    pub caught_up: u64,
    /// Of those, the ones handled under the writer lock.
    pub caught_up_locked: u64,
}

impl CompactReport {
    /// Data bytes the compaction gave back (0 if it grew the data, as history retention of a
    /// database that had none to drop may).
    pub fn reclaimed(&self) -> u64 {
        self.bytes_before.saturating_sub(self.bytes_after)
    }
}

fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| OurDbError::io("fsync directory", dir, e))
}

/// Test hook: called at each step of the switch with its name, so a test can take a crash
/// copy of the directory there.
#[cfg(test)]
#[allow(clippy::type_complexity)]
pub(super) static STEP_HOOK: parking_lot::Mutex<Option<Box<dyn FnMut(&Path, &str) + Send>>> =
    parking_lot::Mutex::new(None);

#[cfg(test)]
fn step(dir: &Path, name: &str) {
    if let Some(h) = STEP_HOOK.lock().as_mut() {
        h(dir, name)
    }
}

#[cfg(not(test))]
fn step(_dir: &Path, _name: &str) {}

/// `ourdb.compact.lock`, held exclusively while a compaction runs (released on drop, with
/// the descriptor).
struct CompactLock(#[allow(dead_code)] File);

impl CompactLock {
    /// Takes the lock without waiting; `Ok(None)` when another compaction holds it.
    fn try_take(dir: &Path) -> Result<Option<CompactLock>> {
        let path = dir.join(COMPACT_LOCK);
        let f = super::inner::open_rw(&path, true)?;
        match f.try_lock() {
            Ok(()) => Ok(Some(CompactLock(f))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(OurDbError::io("lock", &path, e)),
        }
    }
}

/// The staging files being built, and what each id was copied from.
struct Staged {
    dir: PathBuf,
    keysize: u8,
    file_size: u64,
    max_record: usize,
    keep: usize,
    /// Each new data file and its length.
    files: Vec<(File, u64)>,
    out: std::io::BufWriter<File>,
    lookup: File,
    lookup_path: PathBuf,
    /// The new table, built in memory and written whole by [`Staged::sync`] and
    /// [`Staged::seal`]: one `pwrite` per id would cost as much as the writers it races.
    table: Vec<u8>,
    /// Per id: the raw lookup entry (of the live table) its copy was made from.
    copied: Vec<u8>,
    /// Per id: a copy without the lock failed to read (a racing delete); redo it.
    stale: Vec<bool>,
    /// Per id: bytes of its current version's copy (0: none).
    sizes: Vec<u32>,
    versions: u64,
    /// Reused record buffers.
    bufs: Vec<Vec<u8>>,
    header: Vec<u8>,
    /// Removes the staging directory on drop unless the commit point was passed.
    committed: bool,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Staged {
    fn create(inner: &Inner, opts: CompactOptions) -> Result<Staged> {
        let dir = inner.dir.join(STAGING);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| OurDbError::io("remove", &dir, e))?;
        }
        super::inner::make_lookup_dir(&dir)?;
        let lookup_path = dir.join("lookup/data");
        let lookup =
            File::create(&lookup_path).map_err(|e| OurDbError::io("create", &lookup_path, e))?;
        let first = Self::new_file(&dir, 0)?;
        let out = std::io::BufWriter::with_capacity(
            1 << 20,
            first
                .try_clone()
                .map_err(|e| OurDbError::io("dup", &dir, e))?,
        );
        Ok(Staged {
            keysize: inner.stored.keysize,
            file_size: inner.stored.file_size,
            max_record: inner.stored.record_size_max,
            keep: opts.keep_history.max(1),
            files: vec![(first, format::DATA_FILE_PREAMBLE)],
            out,
            lookup,
            lookup_path,
            table: Vec::new(),
            copied: Vec::new(),
            stale: Vec::new(),
            sizes: Vec::new(),
            versions: 0,
            bufs: Vec::new(),
            header: Vec::new(),
            committed: false,
            dir,
        })
    }

    fn new_file(dir: &Path, nr: u16) -> Result<File> {
        let p = dir.join(format::data_file_name(nr));
        let mut f = File::create(&p).map_err(|e| OurDbError::io("create", &p, e))?;
        // Through the file cursor: the buffered writer shares it (dup'd descriptor).
        f.write_all(&[0])
            .map_err(|e| OurDbError::io("write", &p, e))?;
        Ok(f)
    }

    /// Appends one record (data `bufs[i]`, previous location `prev`) and returns where.
    fn append(&mut self, i: usize, prev: Location) -> Result<(Location, u64)> {
        let mut nr = self.files.len() as u16 - 1;
        if self.keysize == 6 && self.files[nr as usize].1 >= self.file_size {
            self.out
                .flush()
                .map_err(|e| OurDbError::io("write", &self.dir, e))?;
            nr = nr.checked_add(1).ok_or(OurDbError::LocationOverflow {
                keysize: 6,
                location: Location {
                    file_nr: nr,
                    position: 0,
                },
            })?;
            let f = Self::new_file(&self.dir, nr)?;
            self.out = std::io::BufWriter::with_capacity(
                1 << 20,
                f.try_clone()
                    .map_err(|e| OurDbError::io("dup", &self.dir, e))?,
            );
            self.files.push((f, format::DATA_FILE_PREAMBLE));
        }
        let pos = self.files[nr as usize].1;
        let overflow = |position| OurDbError::LocationOverflow {
            keysize: self.keysize,
            location: Location {
                file_nr: nr,
                position,
            },
        };
        let loc = Location {
            file_nr: nr,
            position: u32::try_from(pos).map_err(|_| overflow(u32::MAX))?,
        };
        let data = &self.bufs[i];
        let total = (format::encode_header(data, prev, &mut self.header) + data.len()) as u64;
        self.out
            .write_all(&self.header)
            .and_then(|_| self.out.write_all(data))
            .map_err(|e| OurDbError::io("write", &self.dir, e))?;
        self.files[nr as usize].1 = pos + total;
        Ok((loc, total))
    }

    fn set_entry(&mut self, id: u32, loc: Location) -> Result<()> {
        let mut entry = [0u8; 6];
        let n = loc
            .encode_entry(self.keysize, &mut entry)
            .ok_or(OurDbError::LocationOverflow {
                keysize: self.keysize,
                location: loc,
            })?;
        let at = id as usize * n;
        if self.table.len() < at + n {
            self.table.resize(at + n, 0);
        }
        self.table[at..at + n].copy_from_slice(&entry[..n]);
        Ok(())
    }

    /// Writes the in-memory table into `.compact/lookup/data`, at least `min_len` bytes.
    fn write_table(&mut self, min_len: u64) -> Result<()> {
        if (self.table.len() as u64) < min_len {
            self.table.resize(min_len as usize, 0);
        }
        self.lookup
            .write_all_at(&self.table, 0)
            .map_err(|e| OurDbError::io("write", &self.lookup_path, e))
    }

    /// Copies the version of `id` at `loc` and up to `keep - 1` older ones, oldest first.
    /// An older version that does not read ends the kept history there (with a warning):
    /// damage in history must not stop every compaction; the current version must read.
    fn copy_id(&mut self, inner: &Inner, id: u32, loc: Location) -> Result<()> {
        let mut at = loc;
        let mut n = 0;
        while n < self.keep && !at.is_none() {
            if self.bufs.len() <= n {
                self.bufs.push(Vec::new());
            }
            let read = inner
                .data_file(at.file_nr)
                .and_then(|f| f.read_record(at.position, self.max_record, &mut self.bufs[n]));
            match read {
                Ok(h) => {
                    n += 1;
                    at = h.prev;
                }
                Err(e) if n == 0 => return Err(e),
                Err(e) => {
                    log::warn!(
                        "ourdb {}: compaction keeps {n} version(s) of id {id}: {e}",
                        inner.dir.display()
                    );
                    break;
                }
            }
        }
        let mut prev = Location::NONE;
        let mut total = 0;
        for i in (0..n).rev() {
            (prev, total) = self.append(i, prev)?;
        }
        self.set_entry(id, prev)?;
        self.sizes[id as usize] = total as u32;
        self.versions += n as u64;
        Ok(())
    }

    /// One round: brings every id whose entry in `snap` differs from what its copy was made
    /// from up to date. Without the lock (`locked: false`) a record that does not read is
    /// left for the next round; under it, it is an error (damage). Returns the ids handled.
    fn round(&mut self, inner: &Inner, snap: &[u8], locked: bool) -> Result<u64> {
        let ks = self.keysize as usize;
        let n = snap.len().max(self.copied.len()) / ks;
        self.copied.resize(n * ks, 0);
        self.stale.resize(n, false);
        self.sizes.resize(n, 0);
        let zero = [0u8; 6];
        let mut changed = 0;
        for id in 1..n.min(u32::MAX as usize + 1) {
            let range = id * ks..(id + 1) * ks;
            let s = snap.get(range.clone()).unwrap_or(&zero[..ks]);
            if s == &self.copied[range.clone()] && !self.stale[id] {
                continue;
            }
            changed += 1;
            let loc = Location::decode_entry(s);
            if loc.is_none() {
                self.set_entry(id as u32, Location::NONE)?;
                self.sizes[id] = 0;
            } else if let Err(e) = self.copy_id(inner, id as u32, loc) {
                if locked {
                    return Err(e);
                }
                self.stale[id] = true;
                continue;
            }
            self.stale[id] = false;
            self.copied[range].copy_from_slice(s);
        }
        Ok(changed)
    }

    /// Flushes the staged data and fsyncs the staged files. Run once without the writer
    /// lock before the locked round, so that the fsync under the lock ([`Staged::seal`])
    /// writes back only what the last round added: the bulk of the copy (the whole database)
    /// would otherwise be written back while every writer waits.
    fn sync(&mut self) -> Result<()> {
        // The table's final length is set by the locked round's seal.
        self.seal(0)
    }

    /// Flushes and fsyncs the staged files; the table gets length `table_len` (the live
    /// table's: compaction never shrinks it).
    fn seal(&mut self, table_len: u64) -> Result<()> {
        self.out
            .flush()
            .map_err(|e| OurDbError::io("write", &self.dir, e))?;
        for (f, _) in &self.files {
            f.sync_all()
                .map_err(|e| OurDbError::io("fsync", &self.dir, e))?;
        }
        self.write_table(table_len)?;
        self.lookup
            .sync_all()
            .map_err(|e| OurDbError::io("fsync", &self.lookup_path, e))
    }
}

/// Under the writer lock: publishes pending entries and copies the lookup table's bytes.
fn snapshot(inner: &Inner, w: &mut Writer) -> Result<Vec<u8>> {
    if !w.pending.is_empty() {
        inner.sync_and_publish(w)?;
    }
    let maps = inner.current_maps()?;
    maps.lookup.note_len(inner.state.lookup_len());
    let len = maps.lookup.refresh_len()?;
    let len = len - len % inner.stored.keysize as u64;
    let mut buf = vec![0u8; len as usize];
    maps.lookup.copy_entries(0, &mut buf);
    Ok(buf)
}

/// Runs an online compaction (see the module doc). The caller holds no lock.
pub(super) fn compact(inner: &Inner, opts: CompactOptions) -> Result<CompactReport> {
    let dir = &inner.dir;
    let abandon = |reason: &str| OurDbError::CompactionAbandoned {
        dir: dir.clone(),
        reason: reason.to_string(),
    };
    let Some(_lock) = CompactLock::try_take(dir)? else {
        return Err(OurDbError::CompactionBusy { dir: dir.clone() });
    };
    let interrupted = || {
        if dir.join(STAGING).join(COMMIT).exists() {
            return Err(abandon(
                "an interrupted compaction is committed but not applied; \
                 reopen the database (a writable open finishes it)",
            ));
        }
        Ok(())
    };
    // Under the writer lock: an interrupted compaction's committed staging is finished only
    // by a writable open (under that lock), and must never be removed as debris.
    let (mut st, _) = inner.write(|_| {
        interrupted()?;
        Staged::create(inner, opts)
    })?;
    let mut rounds = 0;
    let mut caught_up = 0;
    // `None`: blocking, everything is copied in the locked round.
    let mut generation = None;
    if !opts.blocking {
        let ((first, g), _) =
            inner.write(|w| Ok((snapshot(inner, w)?, inner.state.generation())))?;
        generation = Some(g);
        let mut changed = st.round(inner, &first, false)?;
        drop(first);
        step(dir, "copied");
        rounds = 1;
        let mut before = u64::MAX;
        while changed > LOCKED_CATCH_UP_MAX
            && rounds < MAX_UNLOCKED_ROUNDS
            && (changed < before || rounds < 3)
        {
            before = changed;
            let (snap, _) = inner.write(|w| {
                if inner.state.generation() != g {
                    return Err(abandon("the database was compacted by another handle"));
                }
                snapshot(inner, w)
            })?;
            changed = st.round(inner, &snap, false)?;
            caught_up += changed;
            rounds += 1;
        }
        st.sync()?;
        // What was written during that fsync, also without the lock.
        let (snap, _) = inner.write(|w| {
            if inner.state.generation() != g {
                return Err(abandon("the database was compacted by another handle"));
            }
            snapshot(inner, w)
        })?;
        caught_up += st.round(inner, &snap, false)?;
        rounds += 1;
    }
    // The rest under the writer lock, kept through the switch.
    let (report, seq) = inner.write(|w| {
        interrupted()?;
        if generation.is_some_and(|g| inner.state.generation() != g) {
            return Err(abandon("the database was compacted by another handle"));
        }
        let snap = snapshot(inner, w)?;
        let locked = st.round(inner, &snap, true)?;
        let (caught_up, locked) = if generation.is_some() {
            (caught_up + locked, locked)
        } else {
            (0, 0)
        };
        let bytes_before = inner.data_bytes()?;
        let table_len = snap.len() as u64;
        drop(snap);
        st.seal(table_len)?;
        step(dir, "sealed");
        let count = st.files.len();
        let end = st.files[count - 1].1;
        // The new table is complete: its mark is the end of the new data, staged with it and
        // renamed in with it (a mark of the old files would name positions the new ones do
        // not have).
        let seq = match mark::read(dir)? {
            mark::Found::Valid(m) => m.seq,
            _ => 0,
        }
        .max(inner.mark.lock().last.map_or(0, |m| m.seq));
        let new_mark = Mark {
            seq: seq + 1,
            file_nr: count as u16 - 1,
            position: end,
            next_id: inner.state.next_id().max(1),
        };
        mark::create(&st.dir, &new_mark)?;
        step(dir, "marked");
        // The marker appears atomically (temporary name, fsync, rename): a crash while
        // writing it must leave no marker rather than an empty one.
        let commit = st.dir.join(COMMIT);
        let commit_tmp = st.dir.join("COMMIT.tmp");
        let mut c =
            File::create(&commit_tmp).map_err(|e| OurDbError::io("create", &commit_tmp, e))?;
        c.write_all(count.to_string().as_bytes())
            .and_then(|_| c.sync_all())
            .map_err(|e| OurDbError::io("write", &commit_tmp, e))?;
        drop(c);
        step(dir, "commit-written");
        std::fs::rename(&commit_tmp, &commit).map_err(|e| OurDbError::io("rename", &commit, e))?;
        st.committed = true;
        fsync_dir(&st.dir)?;
        fsync_dir(dir)?;
        step(dir, "committed");
        let live: u64 = st.sizes.iter().map(|s| *s as u64).sum();
        let records = st.sizes.iter().filter(|s| **s > 0).count() as u64;
        {
            // No reader of this process opens a file by name between the renames and the
            // generation bump (it would take a new file for one of the old generation).
            let _reload = inner.reload.lock();
            apply(dir)?;
            inner.state.set_file_nr(count as u16 - 1);
            inner.state.set_append_pos(end);
            inner.state.set_lookup_len(table_len);
            inner.state.set_generation(inner.state.generation() + 1);
            inner.state.set_live_bytes(Some(live));
            inner.state.sync()?;
        }
        step(dir, "applied");
        inner.note_mark(&mut inner.mark.lock(), new_mark);
        finish(dir)?;
        step(dir, "finished");
        Ok(CompactReport {
            records,
            versions: st.versions,
            bytes_before,
            bytes_after: st.files.iter().map(|(_, len)| *len).sum(),
            live_bytes: live,
            files_after: count,
            rounds: rounds + 1,
            caught_up,
            caught_up_locked: locked,
        })
    })?;
    inner.dump.note_change();
    inner.current_maps()?;
    inner.after_write(seq)?;
    Ok(report)
}

/// Renames staged files into place (idempotent) and removes data files past the new count.
fn apply(dir: &Path) -> Result<()> {
    let staging = dir.join(STAGING);
    let commit = staging.join(COMMIT);
    let text = std::fs::read_to_string(&commit).map_err(|e| OurDbError::io("read", &commit, e))?;
    let count: u16 = text
        .trim()
        .parse()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            OurDbError::corrupt(&commit, 0, format!("expected a file count, found {text:?}"))
        })?;
    for nr in 0..count {
        let name = format::data_file_name(nr);
        let from = staging.join(&name);
        if from.exists() {
            std::fs::rename(&from, dir.join(&name))
                .map_err(|e| OurDbError::io("rename", &from, e))?;
            step(dir, "renamed-data-file");
        }
    }
    // The live `lookup/` is not made by every open (only while there is no `ourdb.json`):
    // the staged table and mark need it to land in.
    super::inner::make_lookup_dir(dir)?;
    let from = staging.join("lookup/data");
    if from.exists() {
        std::fs::rename(&from, dir.join("lookup/data"))
            .map_err(|e| OurDbError::io("rename", &from, e))?;
        step(dir, "renamed-table");
    }
    let from = mark::path(&staging);
    if from.exists() {
        std::fs::rename(&from, mark::path(dir)).map_err(|e| OurDbError::io("rename", &from, e))?;
    }
    let mut nr = count;
    loop {
        let p = dir.join(format::data_file_name(nr));
        if !p.exists() {
            break;
        }
        std::fs::remove_file(&p).map_err(|e| OurDbError::io("remove", &p, e))?;
        step(dir, "removed-data-file");
        if nr == u16::MAX {
            break;
        }
        nr += 1;
    }
    fsync_dir(dir)?;
    fsync_dir(&dir.join("lookup"))
}

fn finish(dir: &Path) -> Result<()> {
    let staging = dir.join(STAGING);
    let commit = staging.join(COMMIT);
    std::fs::remove_file(&commit).map_err(|e| OurDbError::io("remove", &commit, e))?;
    std::fs::remove_dir_all(&staging).map_err(|e| OurDbError::io("remove", &staging, e))?;
    fsync_dir(dir)
}

/// Completes or discards an interrupted compaction. Returns `true` if one was completed
/// (the caller must then rebuild the shared state from the files). Runs under the file lock.
pub(super) fn recover(dir: &Path) -> Result<bool> {
    let staging = dir.join(STAGING);
    if !staging.exists() {
        return Ok(false);
    }
    if staging.join(COMMIT).exists() {
        apply(dir)?;
        finish(dir)?;
        Ok(true)
    } else {
        // Without `COMMIT` the staging is debris of a crashed compaction, or the work of one
        // running now in another process (online compaction does not hold the writer lock
        // while it copies): only the first is removed.
        if CompactLock::try_take(dir)?.is_some() {
            std::fs::remove_dir_all(&staging).map_err(|e| OurDbError::io("remove", &staging, e))?;
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    //! The switch, crashed at each of its steps (a copy of the directory taken there, as a
    //! kill would leave it), and compactions racing each other and openers.

    use super::*;
    use crate::ourdb::{powerloss, Config, Durability, OurDb, OurDbError};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    /// Serialises the tests that install [`STEP_HOOK`] (it is process-wide).
    static HOOKED: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

    fn cfg(durability: Durability) -> Config {
        Config {
            file_size: 8 * 1024,
            durability,
            ..Config::default()
        }
    }

    fn payload(id: u32, v: u32) -> Vec<u8> {
        format!(
            "{id}/{v}/{}",
            "p".repeat((id as usize * 13 + v as usize) % 200)
        )
        .into_bytes()
    }

    /// Writes ids with 1 to 4 versions, some deleted; returns each live id's versions,
    /// oldest first.
    fn build(db: &OurDb) -> BTreeMap<u32, Vec<Vec<u8>>> {
        let mut model = BTreeMap::new();
        for i in 0..400u32 {
            let id = db.add(&payload(i + 1, 0)).unwrap();
            let mut versions = vec![payload(i + 1, 0)];
            for v in 1..=(i % 4) {
                db.set(id, &payload(i + 1, v)).unwrap();
                versions.push(payload(i + 1, v));
            }
            if i % 7 == 3 {
                db.delete(id).unwrap();
            } else {
                model.insert(id, versions);
            }
        }
        model
    }

    fn newest_first(versions: &[Vec<u8>], keep: usize) -> Vec<Vec<u8>> {
        versions.iter().rev().take(keep).cloned().collect()
    }

    #[test]
    fn a_crash_at_each_step_of_the_switch_leaves_the_old_or_the_new_database() {
        let _ex = powerloss::EXCLUSIVE.lock();
        let _hooked = HOOKED.lock();
        let dir = tempfile::tempdir().unwrap();
        let copies = tempfile::tempdir().unwrap();
        let db = OurDb::open(dir.path(), cfg(Durability::Strict)).unwrap();
        let model = build(&db);
        db.sync().unwrap();
        assert!(db.stats().unwrap().data_files > 2, "several data files");
        powerloss::arm(dir.path());
        let taken: Arc<parking_lot::Mutex<Vec<(String, PathBuf)>>> = Arc::default();
        let (target, into, log) = (
            dir.path().to_path_buf(),
            copies.path().to_path_buf(),
            Arc::clone(&taken),
        );
        *STEP_HOOK.lock() = Some(Box::new(move |d, name| {
            if d != target {
                return;
            }
            let mut log = log.lock();
            let to = into.join(format!("{}-{name}", log.len()));
            // A kill at this instant: every file as it is now.
            powerloss::crash_copy(&to, || true);
            log.push((name.to_string(), to));
        }));
        let report = db.compact_with(CompactOptions::keep_history(2));
        *STEP_HOOK.lock() = None;
        powerloss::disarm();
        let report = report.unwrap();
        assert_eq!(report.records, model.len() as u64);
        let taken = taken.lock().clone();
        let names: Vec<&str> = taken.iter().map(|(n, _)| n.as_str()).collect();
        for want in [
            "copied",
            "sealed",
            "marked",
            "commit-written",
            "committed",
            "renamed-data-file",
            "renamed-table",
            "removed-data-file",
            "applied",
            "finished",
        ] {
            assert!(names.contains(&want), "step {want} not reached: {names:?}");
        }
        let committed_at = names.iter().position(|n| *n == "committed").unwrap();
        for (i, (name, copy)) in taken.iter().enumerate() {
            if name == "committed" {
                // The staged table and mark land even where the live `lookup/` was taken
                // away (open makes it only for a database without `ourdb.json`).
                std::fs::remove_dir_all(copy.join("lookup")).unwrap();
            }
            let db = OurDb::open(copy, cfg(Durability::Strict))
                .unwrap_or_else(|e| panic!("open after a crash at {name}: {e}"));
            assert!(!copy.join(STAGING).exists(), "{name}: staging left");
            let problems = db.check().unwrap();
            assert!(problems.is_empty(), "{name}: {problems:?}");
            assert_eq!(
                db.ids().collect::<Vec<_>>(),
                model.keys().copied().collect::<Vec<_>>(),
                "{name}"
            );
            let (mut old, mut new) = (0, 0);
            for (id, versions) in &model {
                assert_eq!(&db.get(*id).unwrap(), versions.last().unwrap(), "{name}");
                let h = db.history(*id, 10).unwrap();
                if versions.len() > 2 {
                    if h == newest_first(versions, 10) {
                        old += 1;
                    } else {
                        assert_eq!(h, newest_first(versions, 2), "{name}: id {id}");
                        new += 1;
                    }
                }
            }
            // Never a mix: before the commit point all old, from it on all new.
            if i < committed_at {
                assert_eq!(new, 0, "{name}: new history before the commit point");
            } else {
                assert_eq!(old, 0, "{name}: old history after the commit point");
            }
            let space = db.space().unwrap();
            assert_eq!(space.live_bytes, db.inner.scan_live().unwrap(), "{name}");
            // And it takes writes.
            let id = db.add(b"after").unwrap();
            assert_eq!(db.get(id).unwrap(), b"after");
            db.close().unwrap();
        }
    }

    #[test]
    fn one_compaction_at_a_time_and_open_keeps_a_running_ones_staging() {
        let _hooked = HOOKED.lock();
        let dir = tempfile::tempdir().unwrap();
        let db = OurDb::open(dir.path(), cfg(Durability::Periodic)).unwrap();
        let model = build(&db);
        let seen: Arc<parking_lot::Mutex<Vec<String>>> = Arc::default();
        let (target, log) = (dir.path().to_path_buf(), Arc::clone(&seen));
        *STEP_HOOK.lock() = Some(Box::new(move |d, name| {
            if d != target || name != "copied" {
                return;
            }
            // Mid-copy, without the writer lock: a second handle opens (its recovery must
            // leave this staging alone), reads, writes, and cannot start a compaction.
            let other = OurDb::open(d, cfg(Durability::Periodic)).unwrap();
            log.lock()
                .push(format!("staging:{}", d.join(STAGING).exists()));
            match other.compact() {
                Err(OurDbError::CompactionBusy { .. }) => log.lock().push("busy".into()),
                other => log.lock().push(format!("unexpected: {other:?}")),
            }
            let id = other.add(b"written by the other handle").unwrap();
            log.lock().push(format!("added:{id}"));
            other.close().unwrap();
        }));
        let report = db.compact();
        *STEP_HOOK.lock() = None;
        let report = report.unwrap();
        let seen = seen.lock().clone();
        assert_eq!(seen[..2], ["staging:true".to_string(), "busy".to_string()]);
        let added: u32 = seen[2].strip_prefix("added:").unwrap().parse().unwrap();
        // The write made during the copy is in the result.
        assert_eq!(db.get(added).unwrap(), b"written by the other handle");
        assert_eq!(report.records, model.len() as u64 + 1);
        assert!(report.caught_up >= 1);
        for (id, versions) in &model {
            assert_eq!(&db.get(*id).unwrap(), versions.last().unwrap());
        }
        assert!(db.check().unwrap().is_empty());
        // The lock is free again.
        db.compact().unwrap();
    }
}
