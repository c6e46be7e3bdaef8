//! `ourdb.state`: a 128-byte file every process that opens the database maps, holding what
//! writers must agree on (next id, current data file and its append position, lookup length,
//! compaction generation, live bytes) and the seqlock word readers check lookup entries by.
//! It is a herojobs addition; herolib neither writes nor needs it, and a database without one
//! gets it rebuilt from the other files on open.
//!
//! Fields are only changed under the writer file lock; anyone may read them at any time.

use super::error::{OurDbError, Result};
use super::mmap::Map;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Name of the state file inside the database directory.
pub const STATE_FILE: &str = "ourdb.state";
/// Length of a valid state file as herojobs versions before the live-bytes counter wrote it
/// (and the least a valid one has): the words up to offset 56 are read from such a file.
pub const STATE_LEN: u64 = 64;
/// Length this version maps and grows the file to: the counter words at offsets 56 and 64
/// follow the original ones. An older herojobs maps only the first 64 bytes and never
/// shrinks the file, so both share it.
pub const STATE_MAP_LEN: u64 = 128;
/// First eight bytes of a valid state file.
pub const STATE_MAGIC: u64 = u64::from_le_bytes(*b"HJODBST1");

const OFF_MAGIC: u64 = 0;
const OFF_NEXT_ID: u64 = 8;
const OFF_APPEND_POS: u64 = 16;
const OFF_FILE_NR: u64 = 24;
const OFF_LOOKUP_LEN: u64 = 32;
const OFF_GENERATION: u64 = 40;
const OFF_ID_LIMIT: u64 = 48;
/// Live bytes + 1 (0: unknown): see [`State::live_bytes`].
const OFF_LIVE: u64 = 56;
/// The append point (file number × 2^48 + position) the live count was last exact at.
const OFF_LIVE_AT: u64 = 64;
/// The lookup entries' sequence word: odd while a writer stores entries (see
/// [`State::storing_entries`]).
const OFF_ENTRY_SEQ: u64 = 72;

#[cfg(test)]
thread_local! {
    /// Stores [`State::put`] made on this thread (tests: a reopen of an exact state makes none).
    pub static PUT_STORES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The mapped state file, or (read-only handles) a private copy of it.
pub struct State {
    path: PathBuf,
    backing: Backing,
}

/// Where the state words live.
enum Backing {
    /// The shared file, mapped: what writers and live readers use.
    Mapped { file: File, map: Map },
    /// A read-only handle's private copy: it writes nothing into the database directory,
    /// so it takes the file's values once (or rebuilds them, when there is no file).
    Owned(Box<[AtomicU64; (STATE_MAP_LEN / 8) as usize]>),
}

impl State {
    /// Opens (creating if needed) the state file. Returns it and whether it held valid state.
    pub fn open(dir: &Path) -> Result<(State, bool)> {
        let path = dir.join(STATE_FILE);
        let file = super::inner::open_rw(&path, true)?;
        let len = file
            .metadata()
            .map_err(|e| OurDbError::io("stat", &path, e))?
            .len();
        if len < STATE_MAP_LEN {
            // The new words read as zero: the live count is unknown until a scan.
            file.set_len(STATE_MAP_LEN)
                .map_err(|e| OurDbError::io("grow", &path, e))?;
        }
        let map =
            Map::read_write(&file, STATE_MAP_LEN).map_err(|e| OurDbError::io("mmap", &path, e))?;
        let state = State {
            path,
            backing: Backing::Mapped { file, map },
        };
        let valid =
            len >= STATE_LEN && state.word(OFF_MAGIC).load(Ordering::Acquire) == STATE_MAGIC;
        Ok((state, valid))
    }

    /// A private copy of the state file for a read-only handle: the file's words if it
    /// exists and is valid, zeros otherwise. Returns it and whether the file was valid.
    /// Creates and changes nothing on disk.
    pub fn snapshot(dir: &Path) -> Result<(State, bool)> {
        let path = dir.join(STATE_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(OurDbError::io("read", &path, e)),
        };
        let words: [AtomicU64; (STATE_MAP_LEN / 8) as usize] = Default::default();
        let valid = bytes.len() >= STATE_LEN as usize && bytes[..8] == STATE_MAGIC.to_le_bytes();
        if valid {
            for (i, w) in words
                .iter()
                .enumerate()
                .take(bytes.len().min(STATE_MAP_LEN as usize) / 8)
            {
                let mut b = [0u8; 8];
                b.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
                w.store(u64::from_le_bytes(b), Ordering::Relaxed);
            }
        }
        let state = State {
            path,
            backing: Backing::Owned(Box::new(words)),
        };
        Ok((state, valid))
    }

    fn word(&self, off: u64) -> &AtomicU64 {
        match &self.backing {
            Backing::Mapped { map, .. } => map.atomic_u64(off),
            Backing::Owned(words) => &words[(off / 8) as usize],
        }
    }

    /// Marks the file valid (after its fields are filled in).
    pub fn set_valid(&self) {
        self.put(OFF_MAGIC, STATE_MAGIC);
    }

    /// Stores `v` at `off` unless the word already holds it. Why: an open that finds the
    /// state exact (the usual reopen) then writes nothing, so the page is never faulted
    /// writable — on a shared file mapping that fault dirties the page and (on ext4, xfs,
    /// btrfs) the inode, whose mtime it stamps: a good part of a fresh process's open. The
    /// skipped store publishes nothing a reader needs: every value a writer sets follows
    /// the writes it describes, and an unchanged value describes nothing new. (The live
    /// count and the entry sequence word are stored directly: they change when set.)
    fn put(&self, off: u64, v: u64) {
        let word = self.word(off);
        if word.load(Ordering::Relaxed) != v {
            word.store(v, Ordering::Release);
            #[cfg(test)]
            PUT_STORES.with(|n| n.set(n.get() + 1));
        }
    }

    /// The next id `add` hands out.
    pub fn next_id(&self) -> u64 {
        self.word(OFF_NEXT_ID).load(Ordering::Acquire)
    }
    /// Sets the next id.
    pub fn set_next_id(&self, v: u64) {
        self.put(OFF_NEXT_ID, v)
    }
    /// Where the next record goes in the current data file.
    pub fn append_pos(&self) -> u64 {
        self.word(OFF_APPEND_POS).load(Ordering::Acquire)
    }
    /// Sets the append position.
    pub fn set_append_pos(&self, v: u64) {
        self.put(OFF_APPEND_POS, v)
    }
    /// The data file new records go to.
    pub fn file_nr(&self) -> u16 {
        self.word(OFF_FILE_NR).load(Ordering::Acquire) as u16
    }
    /// Sets the current data file.
    pub fn set_file_nr(&self, v: u16) {
        self.put(OFF_FILE_NR, v as u64)
    }
    /// Length of `lookup/data` as last grown by any writer.
    pub fn lookup_len(&self) -> u64 {
        self.word(OFF_LOOKUP_LEN).load(Ordering::Acquire)
    }
    /// Publishes a new lookup length (after the file was grown).
    pub fn set_lookup_len(&self, v: u64) {
        self.put(OFF_LOOKUP_LEN, v)
    }
    /// Bumped by every compaction, so other handles know to re-open the files.
    pub fn generation(&self) -> u64 {
        self.word(OFF_GENERATION).load(Ordering::Acquire)
    }
    /// Sets the compaction generation.
    pub fn set_generation(&self, v: u64) {
        self.put(OFF_GENERATION, v)
    }

    /// End (exclusive) of the id block `add` may hand out from; 0: no block (unlimited).
    pub fn id_limit(&self) -> u64 {
        self.word(OFF_ID_LIMIT).load(Ordering::Acquire)
    }
    /// Sets the end of the id block.
    pub fn set_id_limit(&self, v: u64) {
        self.put(OFF_ID_LIMIT, v)
    }

    /// Bytes of the current versions of every live id (header + data), if known.
    ///
    /// Why a counter in the shared state and not a scan: the engine's compaction policy asks
    /// for the dead bytes often, and a scan reads one header per live id (O(ids)). Every
    /// writer of this version keeps the counter exact under the writer lock (a write adds its
    /// record and takes off the version it replaced; a delete takes off the deleted record),
    /// and stamps it with the append point it is exact at. A writer that does not know the
    /// counter (an older herojobs, herolib) moves the append point without restamping, and
    /// open after a crash may move it too: the stamp then differs from the append point and
    /// the count reads as unknown, to be rebuilt by one scan ([`super::OurDb::space`], the
    /// background thread, or a compaction, which knows it exactly).
    pub fn live_bytes(&self) -> Option<u64> {
        let live = self.word(OFF_LIVE).load(Ordering::Acquire);
        let at = self.word(OFF_LIVE_AT).load(Ordering::Acquire);
        (live != 0 && at == self.append_point()).then(|| live - 1)
    }
    /// Records the live count (`None`: unknown), exact at the current append point.
    /// Writers only (under the writer lock), after the append position moved.
    pub fn set_live_bytes(&self, live: Option<u64>) {
        self.word(OFF_LIVE_AT)
            .store(self.append_point(), Ordering::Release);
        self.word(OFF_LIVE)
            .store(live.map_or(0, |l| l.saturating_add(1)), Ordering::Release);
    }
    /// Runs `store` — a writer's stores of lookup entries — with the entry sequence word odd,
    /// and makes it even again after: a seqlock, so that a reader can tell an entry it read
    /// whole from one it read while a writer was between its bytes. Why: an entry is six
    /// bytes that no single store covers, so a reader racing the writer can read a location
    /// nobody wrote, and one that happens to name another record's start would pass every
    /// check (that record's CRC is good). Writers only, under the writer lock; one odd span
    /// per call, however many entries `store` writes.
    ///
    /// A process that died inside leaves the word odd: the next writer to take the file lock
    /// makes it even ([`State::settle_entry_seq`]) and readers meanwhile ask whether any
    /// writer is there (see `Inner::read`). A panic inside `store` makes it even on the way
    /// out.
    pub fn storing_entries<T>(&self, store: impl FnOnce() -> T) -> T {
        let Some(word) = self.entry_seq_word() else {
            return store();
        };
        /// Makes the word even again when dropped, however `store` ends.
        struct Even<'a>(&'a AtomicU64, u64);
        impl Drop for Even<'_> {
            fn drop(&mut self) {
                self.0.store(self.1, Ordering::Release);
            }
        }
        let odd = word.load(Ordering::Relaxed) | 1;
        word.store(odd, Ordering::Relaxed);
        // Orders the odd word before the entry bytes for any reader that sees one of them
        // (pairs with the fence after the reader's entry load).
        std::sync::atomic::fence(Ordering::Release);
        let _even = Even(word, odd.wrapping_add(1));
        store()
    }

    /// Makes a word left odd even: called by a writer that has just taken the file lock (and
    /// holds its process's writer mutex), when nobody else can be storing entries — an odd
    /// word then was left by a process that died between an entry's bytes.
    pub fn settle_entry_seq(&self) {
        if let Some(word) = self.entry_seq_word() {
            let seq = word.load(Ordering::Relaxed);
            if seq & 1 == 1 {
                word.store(seq.wrapping_add(1), Ordering::Release);
            }
        }
    }

    /// Sets the entry sequence word, as a process that died between an entry's bytes leaves
    /// it (tests).
    #[cfg(test)]
    pub fn force_entry_seq(&self, v: u64) {
        if let Some(word) = self.entry_seq_word() {
            word.store(v, Ordering::Release);
        }
    }

    /// The entry sequence word, read before a reader loads an entry. A read-only handle's
    /// private copy never moves, so it reads 0 (stable): such a handle relies on the other
    /// checks of the read path, as it does against writers that predate the word.
    pub fn entry_seq(&self) -> u64 {
        self.entry_seq_word()
            .map_or(0, |word| word.load(Ordering::Acquire))
    }

    /// The shared entry sequence word; none in a read-only handle's private copy, which
    /// no writer moves.
    fn entry_seq_word(&self) -> Option<&AtomicU64> {
        match &self.backing {
            Backing::Mapped { map, .. } => Some(map.atomic_u64(OFF_ENTRY_SEQ)),
            Backing::Owned(_) => None,
        }
    }

    /// Whether an entry loaded after reading `before` from [`State::entry_seq`] was read
    /// whole: no writer was storing entries when it started (even) and none stored any since
    /// (unchanged). The entry load ends with an acquire fence (`Map::load_bytes`), so a
    /// store of a byte it saw is ordered before this load of the word.
    pub fn entry_read_whole(&self, before: u64) -> bool {
        before & 1 == 0 && self.entry_seq() == before
    }

    /// The append point as one word: file number × 2^48 + position.
    fn append_point(&self) -> u64 {
        ((self.file_nr() as u64) << 48) | (self.append_pos() & ((1 << 48) - 1))
    }

    /// Flushes the state to stable storage.
    pub fn sync(&self) -> Result<()> {
        match &self.backing {
            Backing::Mapped { file, .. } => file
                .sync_data()
                .map_err(|e| OurDbError::io("fsync", &self.path, e)),
            Backing::Owned(_) => Ok(()),
        }
    }
}
