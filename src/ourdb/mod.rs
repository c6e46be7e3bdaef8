//! OurDB: a memory-mapped, append-only record store with herolib's on-disk layout.
//!
//! It owns files in one directory and knows nothing of jobs, Redis or the engine. The format
//! is in `docs/ourdb-format.md` and, as constants, in [`format`].
//!
//! # Concurrency
//!
//! * Readers never lock: they read the lookup entry and the record through memory maps,
//!   verify the CRC, and re-read the entry; if it changed meanwhile (an update or delete raced
//!   them) they retry. See [`mmap`] for the memory-map contract.
//! * Writers are serialised twice: by a mutex inside the process and by an exclusive `flock`
//!   on `ourdb.lock` across processes. Under both they read the shared `ourdb.state` (next
//!   id, append position, ...), append with `pwrite`, then publish the lookup entry.
//! * Ordering of a write: record bytes → append position → lookup entry → next id → ack.
//!   A process killed anywhere in that sequence leaves at worst an unreferenced tail, which
//!   the next writer overwrites or compaction drops; acknowledged records are complete.
//!   `strict` moves the lookup entry later: the fsync round publishes it after the record is
//!   durable and before the table is fsynced, so a power loss never leaves an entry pointing
//!   at a record that did not reach the disk, and readers never see a non-durable write.
//!
//! # Example
//! ```
//! use herojobs::ourdb::{Config, OurDb};
//! let dir = tempfile::tempdir().unwrap();
//! let db = OurDb::open(dir.path(), Config::default())?;
//! let id = db.add(b"first version")?;
//! db.set(id, b"second version")?;
//! assert_eq!(db.get(id)?, b"second version");
//! assert_eq!(db.history(id, 10)?, vec![b"second version".to_vec(), b"first version".to_vec()]);
//! db.close()?;
//! # Ok::<(), herojobs::ourdb::OurDbError>(())
//! ```

pub mod compact;
mod config;
mod datafile;
pub mod dump;
mod durability;
mod error;
pub mod format;
mod lookup;
pub mod mmap;
mod state;

pub use config::{Config, Durability, StoredConfig, CONFIG_FILE};
pub use error::{OurDbError, Result};
pub use format::Location;

use arc_swap::ArcSwap;
use datafile::DataFile;
use durability::SyncCtl;
use lookup::Lookup;
use parking_lot::Mutex;
use state::State;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Name of the writer lock file inside the database directory.
pub const LOCK_FILE: &str = "ourdb.lock";
/// Every open handle holds a shared lock on this file; a closing handle that can take it
/// exclusively is the last one, and only the last one cuts the preallocated tail.
pub const OPEN_LOCK_FILE: &str = "ourdb.open";
/// Bytes of the lookup table scanned backwards on open for the last set entry (see
/// [`lookup::GROW_MAX`]): protects the next id against a state file older than the table.
const OPEN_SCAN_WINDOW: u64 = lookup::GROW_MAX + 64 * 1024;
/// How often a reader retries when the entry it read keeps changing under it.
const READ_RETRIES: usize = 16;

/// Opens one of the database's files for reading and writing, creating it if asked, never
/// truncating it.
fn open_rw(path: &Path, create: bool) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
        .map_err(|e| OurDbError::io("open", path, e))
}

/// The open files of one generation of the database.
struct Maps {
    generation: u64,
    lookup: Arc<Lookup>,
    files: Vec<Arc<DataFile>>,
}

/// How long a writer keeps the cross-process file lock after its last write, and at most
/// in one stretch. Holding it across consecutive writes saves two syscalls per write (a third
/// of an add's cost); another process waits at most about this long for its turn.
const STICKY_IDLE: Duration = Duration::from_millis(1);
/// See [`STICKY_IDLE`]: under continuous load the lock is handed back at least this often.
const STICKY_MAX: Duration = Duration::from_millis(4);
/// How often the background thread releases mapped pages from this process's resident set
/// (reads of old records would otherwise make a long-running process's RSS grow with the
/// data it ever read, although those pages belong to the page cache).
const RESIDENT_TRIM: Duration = Duration::from_secs(1);

/// What only the writer touches.
struct Writer {
    /// `ourdb.lock`; `None` on a read-only handle, which never writes.
    lock: Option<File>,
    buf: Vec<u8>,
    /// Whether this handle holds the file lock now (it is kept across consecutive writes).
    held: bool,
    held_since: Instant,
    last_write: Instant,
    /// `strict` only: lookup entries of records written but not yet fsynced, in write order.
    /// The next fsync round publishes them into the table after the records are durable,
    /// so the table never reaches the disk ahead of the data (see [`Inner::publish`]).
    pending: Vec<(u32, Location)>,
}

struct Inner {
    dir: PathBuf,
    /// Held shared for the handle's life (see [`OPEN_LOCK_FILE`]); `None` when read-only.
    open_lock: Option<File>,
    /// Opened with `Config::read_only`: writes are refused, nothing on disk is touched.
    read_only: bool,
    /// The next id as the state file and `.inc` had it at open, before the scan of the table
    /// raised it: `check` compares the table with it (an entry at or above it means the
    /// table is read with the wrong keysize, or the state was lost).
    prior_next: u64,
    /// Whether the open-time scan of the table raised the next id above `prior_next`.
    scan_raised: bool,
    /// herolib's sparse dump: how current it is (see [`dump`]).
    dump: DumpCtl,
    stored: StoredConfig,
    durability: Durability,
    maps: ArcSwap<Maps>,
    reload: Mutex<()>,
    state: State,
    writer: Mutex<Writer>,
    /// Mirrors `Writer::held` for the background thread, which must not wait for the mutex.
    lock_held: AtomicBool,
    sync: SyncCtl,
}

/// Bookkeeping for rewriting herolib's sparse dump only when the table changed.
struct DumpCtl {
    /// Bumped whenever an entry is published into the table (or the table replaced).
    changes: std::sync::atomic::AtomicU64,
    /// `changes` as of the last dump written (`u64::MAX`: the dump on disk is stale).
    dumped: std::sync::atomic::AtomicU64,
    /// When the last dump finished, and the interval before the next background one.
    timing: Mutex<(Instant, Duration)>,
    /// `Config::dump_interval`.
    interval: Duration,
    /// `Config::herolib_dump`.
    enabled: bool,
}

impl DumpCtl {
    fn new(current: bool, interval: Duration, enabled: bool) -> DumpCtl {
        DumpCtl {
            enabled,
            changes: 0.into(),
            dumped: (if current { 0 } else { u64::MAX }).into(),
            timing: Mutex::new((Instant::now(), interval)),
            interval,
        }
    }

    fn note_change(&self) {
        self.changes.fetch_add(1, Ordering::AcqRel);
    }
}

/// A summary of a database, for `herojobs ourdb stats`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stats {
    /// Database directory.
    pub dir: PathBuf,
    /// Lookup entry width.
    pub keysize: u8,
    /// Incremental or key-value mode.
    pub incremental: bool,
    /// Next id `add` hands out.
    pub next_id: u64,
    /// Ids with a record.
    pub live_records: u64,
    /// Number of data files.
    pub data_files: usize,
    /// Bytes in data files.
    pub data_bytes: u64,
    /// Bytes allocated for `lookup/data` (logical length; it is sparse).
    pub lookup_bytes: u64,
    /// Data file rollover size.
    pub file_size: u64,
    /// Compaction generation.
    pub generation: u64,
}

/// One problem found by [`OurDb::check`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct Problem {
    /// The id whose record (or one of its history entries) is damaged.
    pub id: u32,
    /// Where the damaged record is.
    pub location: String,
    /// What is wrong.
    pub error: String,
}

/// What `check` saw of the live records: how many, the highest id, and per data file the
/// end of the last byte any live record or history version occupies.
#[derive(Default)]
struct Reach {
    live: u64,
    highest: u32,
    ends: Vec<u64>,
}

/// An open OurDB database. `Send + Sync`: share it between threads by reference or `Arc`.
pub struct OurDb {
    inner: Arc<Inner>,
    syncer: Option<JoinHandle<()>>,
    /// Set by the first `shutdown` (`close`, then `drop` calls it again). A second one must
    /// not run: the first left `ourdb.open` locked exclusively (the last handle's probe), and
    /// a second one waiting for the writer lock while holding it deadlocks against an opener
    /// that holds the writer lock and waits for `ourdb.open`.
    closed: bool,
}

impl OurDb {
    /// Opens the database in `dir`, creating it if `config.create` and none is there.
    pub fn open(dir: impl AsRef<Path>, config: Config) -> Result<OurDb> {
        let dir = dir.as_ref().to_path_buf();
        let inner = Arc::new(Inner::open(dir, &config)?);
        if inner.read_only {
            return Ok(OurDb {
                inner,
                syncer: None,
                closed: false,
            });
        }
        // Whether the dump on disk matches the table is unknown until compared (a crash
        // before the last sync, a table changed behind our back, a database from before
        // dumps were kept): the background thread's first dump pass compares, and rewrites
        // it only if it differs. Not done here: it is O(ids), and open stays O(1).
        // One background thread per handle: it hands the writer file lock back when this
        // handle goes idle, and in `Periodic` mode runs the fsync every `sync_interval`.
        let inner2 = Arc::clone(&inner);
        let periodic = config.durability == Durability::Periodic;
        let interval = config.sync_interval;
        let syncer = std::thread::Builder::new()
            .name("herojobs-ourdb-sync".into())
            .spawn(move || {
                let mut last_sync = Instant::now();
                let mut last_trim = Instant::now();
                loop {
                    let mut wait = if periodic {
                        interval.saturating_sub(last_sync.elapsed())
                    } else {
                        Duration::from_secs(1)
                    };
                    if inner2.lock_held.load(Ordering::Acquire) {
                        wait = wait.min(STICKY_IDLE);
                    }
                    if inner2.sync.sleep(wait) {
                        break;
                    }
                    inner2.release_idle_lock();
                    if last_trim.elapsed() >= RESIDENT_TRIM {
                        last_trim = Instant::now();
                        if let Err(e) = inner2.release_resident() {
                            log::debug!("ourdb {}: {e}", inner2.dir.display());
                        }
                    }
                    if periodic && last_sync.elapsed() >= interval {
                        last_sync = Instant::now();
                        if inner2.sync.dirty() {
                            if let Err(e) = inner2.sync_all() {
                                log::error!(
                                    "ourdb {}: periodic fsync failed: {e}",
                                    inner2.dir.display()
                                );
                            }
                        }
                    }
                    // After the fsync, so a dump never names a record less durable than the
                    // table's entry for it.
                    if let Err(e) = inner2.write_dump(false) {
                        log::error!(
                            "ourdb {}: writing herolib's lookup dump: {e}",
                            inner2.dir.display()
                        );
                    }
                }
            })
            .map_err(|e| OurDbError::io("spawn sync thread for", &inner.dir, e))?;
        let syncer = Some(syncer);
        Ok(OurDb {
            inner,
            syncer,
            closed: false,
        })
    }

    /// The database directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Whether this handle was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
    }

    /// The recorded configuration (keysize, file size, mode).
    pub fn stored_config(&self) -> &StoredConfig {
        &self.inner.stored
    }

    /// Appends a new record and returns its id (incremental mode).
    pub fn add(&self, data: &[u8]) -> Result<u32> {
        self.add_many(std::iter::once(data)).map(|ids| ids[0])
    }

    /// Appends several records under one lock acquisition and (in `Strict`) one fsync.
    /// Ids are consecutive and returned in order. With an id block reserved
    /// ([`reserve_ids`](OurDb::reserve_ids)), fails with [`OurDbError::IdBlockExhausted`],
    /// writing nothing, when the block has fewer ids left than records given.
    pub fn add_many<'a>(&self, records: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<u32>> {
        let inner = &*self.inner;
        if !inner.stored.incremental {
            return Err(OurDbError::NotIncremental);
        }
        let records: Vec<&[u8]> = records.into_iter().collect();
        for data in &records {
            inner.check_size(data)?;
        }
        let (ids, seq) = inner.write(|w| {
            let first = inner.state.next_id().max(1);
            let limit = inner.state.id_limit();
            if limit != 0 && first + records.len() as u64 > limit {
                return Err(OurDbError::IdBlockExhausted {
                    next: first,
                    limit,
                    wanted: records.len(),
                });
            }
            let mut ids = Vec::with_capacity(records.len());
            for data in &records {
                let next = inner.state.next_id().max(1);
                if next > u32::MAX as u64 {
                    return Err(OurDbError::IdSpaceExhausted);
                }
                let id = next as u32;
                let loc = inner.append(w, data, Location::NONE)?;
                inner.publish(w, id, loc)?;
                inner.state.set_next_id(next + 1);
                ids.push(id);
            }
            Ok(ids)
        })?;
        inner.after_write(seq)?;
        Ok(ids)
    }

    /// Confines `add` to the ids `start..end`, a block reserved elsewhere (herojobs reserves
    /// blocks in Redis so that stores on many hosts never hand out the same id). The next id
    /// only moves forward: it becomes `start` if that is ahead. A block that ends at or before
    /// the next id is stale (another process of this database already moved past it) and is
    /// ignored. Returns whether the block was taken. Recorded in the shared state, so every
    /// handle and a restart continue inside it; a crash only leaves a gap.
    pub fn reserve_ids(&self, start: u64, end: u64) -> Result<bool> {
        let inner = &*self.inner;
        if start == 0 || end > u32::MAX as u64 + 1 || start >= end {
            return Err(OurDbError::InvalidConfig(format!(
                "id block {start}..{end} is empty or outside 1..={}",
                u32::MAX
            )));
        }
        let (taken, _) = inner.write(|_w| {
            let next = inner.state.next_id().max(1);
            if end <= next {
                return Ok(false);
            }
            let new_next = next.max(start);
            if new_next != next {
                // The table covers every id below the next one (sparse growth), so a jump
                // never looks like the implausible next id open refuses (`MAX_ID_GAP`).
                let below = u32::try_from(new_next - 1).unwrap_or(u32::MAX);
                if let Some(len) = inner
                    .lookup()
                    .ensure_capacity(below, inner.state.lookup_len())?
                {
                    inner.state.set_lookup_len(len);
                }
                // The jump must survive a restart before any id of the block is used.
                lookup::write_inc(&inner.dir.join("lookup/.inc"), new_next)?;
                inner.state.set_next_id(new_next);
            }
            inner.state.set_id_limit(end.max(inner.state.id_limit()));
            Ok(true)
        })?;
        Ok(taken)
    }

    /// Gives up the rest of the reserved id block (some of its ids turned out to be used
    /// elsewhere): the next `add` fails with [`OurDbError::IdBlockExhausted`] until a new
    /// block is reserved.
    pub fn end_block(&self) -> Result<()> {
        let inner = &*self.inner;
        inner.write(|_w| {
            inner.state.set_id_limit(inner.state.next_id().max(1));
            Ok(())
        })?;
        Ok(())
    }

    /// The end (exclusive) of the id block `add` hands out from; 0 when none is reserved.
    pub fn id_limit(&self) -> u64 {
        self.inner.state.id_limit()
    }

    /// Writes a new version of `id`; the previous one stays reachable through [`history`].
    /// In incremental mode `id` must have been handed out by `add`; in key-value mode any
    /// id from 1 up is accepted.
    ///
    /// [`history`]: OurDb::history
    pub fn set(&self, id: u32, data: &[u8]) -> Result<()> {
        self.set_many(std::iter::once((id, data)))
    }

    /// Writes new versions of several ids, in order, under one lock acquisition and (in
    /// `Strict`) one fsync round: what a caller recording a batch of finished jobs wants,
    /// instead of one round per record. Every id and size is checked before anything is
    /// written, so a bad item fails the call with nothing written.
    pub fn set_many<'a>(&self, items: impl IntoIterator<Item = (u32, &'a [u8])>) -> Result<()> {
        self.write_many(items, false)
    }

    /// Like [`set_many`](OurDb::set_many), but also at ids this database did not hand out,
    /// as key-value mode allows (herolib's non-incremental `set`): for records whose id was
    /// assigned elsewhere — a job submitted by another store and run here. The next id moves
    /// past every id written, so `add` never hands one of them out.
    pub fn put_many<'a>(&self, items: impl IntoIterator<Item = (u32, &'a [u8])>) -> Result<()> {
        self.write_many(items, true)
    }

    fn write_many<'a>(
        &self,
        items: impl IntoIterator<Item = (u32, &'a [u8])>,
        foreign_ids: bool,
    ) -> Result<()> {
        let inner = &*self.inner;
        let items: Vec<(u32, &[u8])> = items.into_iter().collect();
        if items.is_empty() {
            return Ok(());
        }
        for &(id, data) in &items {
            if id == 0 {
                return Err(OurDbError::ZeroId);
            }
            inner.check_size(data)?;
        }
        let ((), seq) = inner.write(|w| {
            let next = inner.state.next_id().max(1);
            if inner.stored.incremental && !foreign_ids {
                if let Some(&(id, _)) = items.iter().find(|(id, _)| *id as u64 >= next) {
                    return Err(OurDbError::IdNotAllocated { id, next });
                }
            }
            for &(id, data) in &items {
                let prev = inner.writer_entry(w, id)?.unwrap_or(Location::NONE);
                let loc = inner.append(w, data, prev)?;
                inner.publish(w, id, loc)?;
                if id as u64 >= inner.state.next_id().max(1) {
                    inner.state.set_next_id(id as u64 + 1);
                }
            }
            Ok(())
        })?;
        inner.after_write(seq)
    }

    /// Reads the current version of `id`.
    pub fn get(&self, id: u32) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.get_into(id, &mut out)?;
        Ok(out)
    }

    /// Reads the current version of `id` into `out` (reusing its allocation).
    pub fn get_into(&self, id: u32, out: &mut Vec<u8>) -> Result<()> {
        self.inner.read(id, out).map(|_| ())
    }

    /// Where the current version of `id` is stored, `None` if it has no record.
    pub fn location(&self, id: u32) -> Result<Option<Location>> {
        if id == 0 {
            return Err(OurDbError::ZeroId);
        }
        Ok(self.inner.entry(id)?.filter(|l| !l.is_none()))
    }

    /// Up to `depth` versions of `id`, newest first.
    pub fn history(&self, id: u32, depth: usize) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        if depth == 0 {
            return Ok(out);
        }
        let mut buf = Vec::new();
        let (_, header) = self.inner.read(id, &mut buf)?;
        out.push(std::mem::take(&mut buf));
        let mut prev = header.prev;
        while out.len() < depth && !prev.is_none() {
            let file = self.inner.data_file(prev.file_nr)?;
            let h = file.read_record(prev.position, self.inner.stored.record_size_max, &mut buf)?;
            out.push(std::mem::take(&mut buf));
            prev = h.prev;
        }
        Ok(out)
    }

    /// Deletes `id`: clears its lookup entry and zeroes its current record (as herolib does;
    /// older versions stay until compaction).
    ///
    /// The record is zeroed only once the cleared entry is durable (in `strict` mode) and
    /// never by the same step: zeroed bytes read as a valid empty record, so a table that
    /// still pointed at them after a crash would return wrong data instead of the old one.
    pub fn delete(&self, id: u32) -> Result<()> {
        let inner = &*self.inner;
        if id == 0 {
            return Err(OurDbError::ZeroId);
        }
        let ((loc, generation), seq) = inner.write(|w| {
            let loc = match inner.writer_entry(w, id)? {
                Some(l) if !l.is_none() => l,
                _ => return Err(OurDbError::NotFound { id }),
            };
            // The next id must survive even if `id` was the highest one set: .inc first.
            lookup::write_inc(&inner.dir.join("lookup/.inc"), inner.state.next_id().max(1))?;
            inner.publish(w, id, Location::NONE)?;
            Ok((loc, inner.state.generation()))
        })?;
        inner.after_write(seq)?;
        // Nothing reaches the old record any more (a later `set` of `id` starts a new
        // history), so zeroing it is safe whenever it happens, unless a compaction moved
        // the records meanwhile: then the position names another record, and the deleted
        // one is already gone.
        inner.write(|_w| {
            if inner.state.generation() != generation {
                return Ok(());
            }
            let file = inner.data_file(loc.file_nr)?;
            let total = match file.read_header(loc.position) {
                Ok(h) => h.total_len(),
                Err(_) => format::HEADER_SIZE,
            } as u64;
            let end = (loc.position as u64 + total).min(file.known_len());
            file.fill(loc.position as u64, end, 0)
        })?;
        Ok(())
    }

    /// The id `add` hands out next (`u32::MAX + 1` once the id space is exhausted).
    pub fn next_id(&self) -> u64 {
        self.inner.state.next_id().max(1)
    }

    /// The ids that currently have a record, ascending (a snapshot of the table as it is read).
    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        let maps = self.inner.maps.load_full();
        let _ = maps.lookup.refresh_len();
        let entries = maps.lookup.entries().min(u32::MAX as u64 + 1);
        let published = self.inner.state.lookup_len();
        (1..entries).filter_map(move |id| match maps.lookup.get(id as u32, published) {
            Ok(Some(l)) if !l.is_none() => Some(id as u32),
            _ => None,
        })
    }

    /// Verifies every live record and every version in its history, then cross-checks the
    /// database as a whole (see [`OurDb::check_consistency`]). Returns the problems found
    /// (empty when the database is intact). A problem with `id` 0 concerns the database as a
    /// whole rather than one record.
    pub fn check(&self) -> Result<Vec<Problem>> {
        let mut problems = Vec::new();
        let mut buf = Vec::new();
        let max = self.inner.stored.record_size_max;
        let mut reach = Reach::default();
        for id in self.ids() {
            let mut loc = match self.inner.entry(id)? {
                Some(l) => l,
                None => continue,
            };
            reach.live += 1;
            reach.highest = reach.highest.max(id);
            let mut seen = 0usize;
            while !loc.is_none() {
                seen += 1;
                if seen > 1_000_000 {
                    problems.push(Problem {
                        id,
                        location: loc.to_string(),
                        error: "history chain longer than 1,000,000 versions: a cycle".into(),
                    });
                    break;
                }
                let res = self
                    .inner
                    .data_file(loc.file_nr)
                    .and_then(|f| f.read_record(loc.position, max, &mut buf));
                match res {
                    Ok(h) => {
                        let end = loc.position as u64 + h.total_len() as u64;
                        let nr = loc.file_nr as usize;
                        if reach.ends.len() <= nr {
                            reach.ends.resize(nr + 1, 0);
                        }
                        reach.ends[nr] = reach.ends[nr].max(end);
                        loc = h.prev;
                    }
                    Err(e) => {
                        problems.push(Problem {
                            id,
                            location: loc.to_string(),
                            error: e.to_string(),
                        });
                        break;
                    }
                }
            }
        }
        problems.extend(self.check_consistency(&reach)?);
        Ok(problems)
    }

    /// The checks of the database as a whole, which catch a table that reads "intact" but
    /// is not the table of these data files:
    ///
    /// * an entry at or above the next id the state and `.inc` held at open (a table read
    ///   with the wrong keysize decodes entries at ids never handed out);
    /// * keysize 2, 3 or 4 with more than one data file (those keysizes address `0.db` only);
    /// * herolib's sparse dump not parsing with the keysize (ids out of order, zero, or its
    ///   length not a multiple of 4 + keysize), or — when no other handle has the database
    ///   open, so that no dump is due — disagreeing with the table;
    /// * intact records past the last byte the table reaches while the table does not reach
    ///   the ids handed out (`lookup/data` lost or truncated: records invisible).
    fn check_consistency(&self, reach: &Reach) -> Result<Vec<Problem>> {
        let inner = &*self.inner;
        let ks = inner.stored.keysize;
        let mut problems = Vec::new();
        let whole = |error: String| Problem {
            id: 0,
            location: inner.dir.display().to_string(),
            error,
        };
        // The next id as it stands, unless open had to raise it to cover entries beyond what
        // the state and `.inc` said: then the value before (a process killed between
        // publishing an entry and raising the next id leaves a difference of one).
        let mut handed_out = if inner.scan_raised {
            inner.prior_next + 1
        } else {
            inner.state.next_id().max(1)
        };
        if inner.read_only {
            // A read-only handle's state is a copy taken at open; a writer may have handed
            // out (and written) more ids since. The live file says how many.
            if let Ok((live, true)) = State::snapshot(&inner.dir) {
                handed_out = handed_out.max(live.next_id());
            }
        }
        if reach.live > 0 && reach.highest as u64 >= handed_out {
            problems.push(whole(format!(
                "the lookup table has an entry for id {} but only ids below {handed_out} were \
                 handed out (ourdb.state, lookup/.inc): the table is read with the wrong keysize \
                 ({ks}?), belongs to another database, or the state was lost",
                reach.highest
            )));
        }
        let maps = inner.current_maps()?;
        if ks != 6 && maps.files.len() > 1 {
            problems.push(whole(format!(
                "{} data files, but keysize {ks} addresses 0.db only: the keysize is wrong",
                maps.files.len()
            )));
        }
        match dump::read(&inner.dir, ks)? {
            None => {}
            Some(Err(e)) => problems.push(whole(format!(
                "herolib's sparse dump does not parse with keysize {ks}: {e}"
            ))),
            Some(Ok(entries)) => {
                let mut prev = 0u32;
                let bad_order = entries.iter().position(|(id, _)| {
                    let bad = *id <= prev;
                    prev = *id;
                    bad
                });
                if let Some(i) = bad_order {
                    problems.push(whole(format!(
                        "herolib's sparse dump does not parse with keysize {ks}: entry {i} names \
                         id {} after id {} (ids are written ascending, from 1)",
                        entries[i].0,
                        if i == 0 { 0 } else { entries[i - 1].0 }
                    )));
                } else if self.alone_for_check()? {
                    let published = inner.state.lookup_len();
                    let mut differ = 0u64;
                    let mut first = None;
                    let mut in_dump = 0u64;
                    for &(id, loc) in &entries {
                        let table = maps.lookup.get(id, published)?.unwrap_or(Location::NONE);
                        if !loc.is_none() {
                            in_dump += 1;
                        }
                        if table != loc {
                            differ += 1;
                            first.get_or_insert((id, loc, table));
                        }
                    }
                    if let Some((id, loc, table)) = first {
                        problems.push(whole(format!(
                            "herolib's sparse dump disagrees with the table at {differ} ids \
                             (first: id {id}, dump {loc}, table {table}): herolib would read \
                             other records; a writable open rewrites it"
                        )));
                    } else if reach.live > in_dump {
                        problems.push(whole(format!(
                            "herolib's sparse dump lacks {} of the {} live ids: herolib \
                             would not see them; a writable open rewrites it",
                            reach.live - in_dump,
                            reach.live
                        )));
                    }
                }
            }
        }
        let table_ids = maps.lookup.entries();
        let next = inner.state.next_id().max(1);
        if table_ids < next {
            let mut buf = Vec::new();
            let max = inner.stored.record_size_max;
            for (nr, file) in maps.files.iter().enumerate() {
                let start = reach
                    .ends
                    .get(nr)
                    .copied()
                    .unwrap_or(0)
                    .max(format::DATA_FILE_PREAMBLE);
                let mut pos = start;
                let mut intact = 0u64;
                while intact < 1_000_000 && pos <= format::MAX_POSITION {
                    match file.read_record(pos as u32, max, &mut buf) {
                        Ok(h) if h.data_len > 0 => {
                            intact += 1;
                            pos += h.total_len() as u64;
                        }
                        _ => break,
                    }
                }
                if intact > 0 {
                    problems.push(whole(format!(
                        "{} holds {intact} intact records from byte {start} on that no lookup \
                         entry reaches, and the table covers ids below {table_ids} while ids \
                         below {next} were handed out: lookup/data was lost or truncated \
                         (records invisible)",
                        format::data_file_name(nr as u16),
                    )));
                }
            }
        }
        Ok(problems)
    }

    /// Whether no other handle has the database open (then no dump is pending anywhere and
    /// the dump must equal the table). A writable handle brings its own dump up to date
    /// first; a read-only one probes `ourdb.open` without creating it.
    fn alone_for_check(&self) -> Result<bool> {
        let inner = &*self.inner;
        if !inner.read_only {
            // This handle is itself a handle with the database open (and dumps on sync and
            // close): the comparison is for read-only inspection, `herojobs ourdb check`.
            return Ok(false);
        }
        let path = inner.dir.join(OPEN_LOCK_FILE);
        let probe = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(OurDbError::io("open", &path, e)),
        };
        match probe.try_lock() {
            Ok(()) => {
                let _ = probe.unlock();
                Ok(true)
            }
            // Another handle is open: its dump may be due but not written yet.
            Err(std::fs::TryLockError::WouldBlock) => Ok(false),
            Err(std::fs::TryLockError::Error(e)) => Err(OurDbError::io("lock", &path, e)),
        }
    }

    /// Figures for `herojobs ourdb stats` (counts live records: O(ids)).
    pub fn stats(&self) -> Result<Stats> {
        let maps = self.inner.current_maps()?;
        let mut data_bytes = 0;
        for f in &maps.files {
            data_bytes += f.refresh_len()?;
        }
        Ok(Stats {
            dir: self.inner.dir.clone(),
            keysize: self.inner.stored.keysize,
            incremental: self.inner.stored.incremental,
            next_id: self.next_id(),
            live_records: self.ids().count() as u64,
            data_files: maps.files.len(),
            data_bytes,
            lookup_bytes: maps.lookup.refresh_len()?,
            file_size: self.inner.stored.file_size,
            generation: maps.generation,
        })
    }

    /// Rewrites the live records (latest versions only: history is dropped) into new data
    /// files and switches to them atomically. Writers wait while it runs; readers do not.
    pub fn compact(&self) -> Result<compact::CompactReport> {
        let inner = &*self.inner;
        let (report, seq) = inner.write(|w| {
            // Compaction reads the table: unpublished entries must be in it first.
            if !w.pending.is_empty() {
                inner.sync_and_publish(w)?;
            }
            let report = compact::compact(inner)?;
            inner.dump.note_change();
            Ok(report)
        })?;
        inner.after_write(seq)?;
        // Every location moved: herolib must not read the old dump a moment longer than needed.
        inner.write_dump(true)?;
        Ok(report)
    }

    /// Makes every write so far durable now, whatever the durability mode, and brings
    /// herolib's sparse dump up to date with the table (if anything changed since the last
    /// one): after `sync` returns, stock herolib reads every write made before it.
    pub fn sync(&self) -> Result<()> {
        if self.inner.read_only {
            return Ok(());
        }
        self.inner.sync_all()?;
        self.inner.write_dump(true)
    }

    /// Releases mapped pages from this process's resident set (the background thread does
    /// this every second). Data is unaffected: the next access maps the pages again.
    pub fn release_resident(&self) -> Result<()> {
        self.inner.release_resident()
    }

    /// Number of fsync rounds this handle has run (for benchmarks and tests of group commit).
    pub fn fsync_rounds(&self) -> u64 {
        self.inner.sync.fsync_rounds()
    }

    /// Syncs and closes, reporting a failure of the final fsync (dropping also syncs, but can
    /// only log a failure).
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        if self.inner.read_only || self.closed {
            return Ok(());
        }
        self.closed = true;
        self.inner.sync.request_stop();
        if let Some(h) = self.syncer.take() {
            let _ = h.join();
        }
        // The dump is brought up to date if this handle changed the table. A handle that
        // changed nothing leaves it as it found it (its background pass compared it if the
        // handle lived past the dump interval): comparing at every close would make each
        // open/close cycle O(ids), as in a store cycling idle databases.
        let wrote = self.inner.dump.changes.load(Ordering::Acquire) > 0;
        let res = self.inner.sync_all().and_then(|()| {
            if wrote {
                self.inner.write_dump(true)
            } else {
                Ok(())
            }
        });
        let mut w = self.inner.writer.lock();
        let trimmed = self.inner.trim_tail(&mut w);
        self.inner.release_lock(&mut w);
        res.and(trimmed)
    }
}

impl Drop for OurDb {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            log::error!(
                "ourdb {}: final fsync failed: {e}",
                self.inner.dir.display()
            );
        }
    }
}

/// Whether `dir` holds records or a table that some writer put there: a non-empty data file,
/// a non-empty `lookup/data` or a sparse dump. Decided under the writer lock at creation, so
/// that a half-created database (a crash, or another opener that has made `lookup/` and the
/// lock files but not yet `ourdb.json`) is created again instead of taken for a foreign one.
fn has_data(dir: &Path) -> bool {
    let len = |p: PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    len(dir.join(format::data_file_name(0))) > format::DATA_FILE_PREAMBLE
        || dir.join(format::data_file_name(1)).exists()
        || len(dir.join("lookup/data")) > 0
        || dir.join(dump::DUMP_DIR).join("data").exists()
}

fn no_database(dir: &Path) -> OurDbError {
    OurDbError::NoDatabase {
        dir: dir.to_path_buf(),
    }
}

/// The next id from its sources, each checked against the table (see
/// [`format::MAX_ID_GAP`]). Returns the next id and the value before the table scan.
fn reconcile_next_id(
    dir: &Path,
    lookup: &Lookup,
    state_next: Option<u64>,
    dump_inc: Option<u64>,
) -> Result<(u64, u64)> {
    let table_ids = lookup.entries().max(1);
    let bound = table_ids + format::MAX_ID_GAP;
    let implausible = |path: PathBuf, next: u64| OurDbError::NextIdImplausible {
        path,
        next,
        table_ids,
        gap: format::MAX_ID_GAP,
        bound,
    };
    let inc_path = dir.join("lookup/.inc");
    let inc = lookup::read_inc(&inc_path)?;
    if let Some(n) = inc.filter(|n| *n > bound) {
        return Err(implausible(inc_path, n));
    }
    if let Some(n) = dump_inc.filter(|n| *n > bound) {
        return Err(implausible(dir.join(dump::DUMP_DIR).join(".inc"), n));
    }
    // The state file is a cache rebuilt from the files: an absurd value there is dropped.
    let state_next = state_next.filter(|n| {
        let ok = *n <= bound;
        if !ok {
            log::warn!(
                "ourdb {}: ignoring next id {n} in {}: beyond the table (bound {bound})",
                dir.display(),
                state::STATE_FILE
            );
        }
        ok
    });
    let prior = state_next
        .into_iter()
        .chain(inc)
        .chain(dump_inc)
        .max()
        .unwrap_or(1)
        .max(1);
    let scanned = lookup
        .last_set_id(OPEN_SCAN_WINDOW)
        .map(|id| id as u64 + 1)
        .unwrap_or(1);
    Ok((prior.max(scanned), prior))
}

impl Inner {
    fn open(dir: PathBuf, config: &Config) -> Result<Inner> {
        if config.read_only {
            return Self::open_read_only(dir, config);
        }
        let existed = dir.join(CONFIG_FILE).exists()
            || dir.join("lookup").exists()
            || dir.join(dump::DUMP_DIR).exists()
            || dir.join("0.db").exists();
        if !existed && !config.create {
            return Err(no_database(&dir));
        }
        // Every step up to `ourdb.json` is idempotent (directories, empty lock files), and
        // whether the database exists is decided under the writer lock (`open_locked`): so
        // any number of first opens, in threads or processes, agree, and a creation cut short
        // anywhere is completed by the next open.
        std::fs::create_dir_all(dir.join("lookup"))
            .map_err(|e| OurDbError::io("create directory", dir.join("lookup"), e))?;
        let open_path = dir.join(OPEN_LOCK_FILE);
        let open_lock = open_rw(&open_path, true)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = open_rw(&lock_path, true)?;
        lock.lock()
            .map_err(|e| OurDbError::io("lock", &lock_path, e))?;
        // Alone: no other handle, in any process, has the database open, so nothing has kept
        // the shared state file current and it may be stale (a power loss). Not alone: a live
        // handle reconciled it when it opened and keeps it exact. Both the probe and the
        // shared lock are taken under the writer lock, which a handle holds from its probe to
        // the end of its reconciliation (and a closing handle before its probe), so a shared
        // lock seen here always belongs to a handle that has reconciled. (An error other
        // than "held" counts as alone: the safe reading.)
        let alone = !matches!(open_lock.try_lock(), Err(std::fs::TryLockError::WouldBlock));
        if let Err(e) = open_lock.lock_shared() {
            let _ = lock.unlock();
            return Err(OurDbError::io("lock", &open_path, e));
        }
        let opened = Self::open_locked(&dir, config, alone);
        let _ = lock.unlock();
        let (stored, state, maps, prior_next) = opened?;
        let state_raised = state.next_id() > prior_next;
        Ok(Inner {
            dir,
            open_lock: Some(open_lock),
            read_only: false,
            prior_next,
            scan_raised: state_raised,
            // Unknown until compared: the first `write_dump` compares and writes if needed.
            dump: DumpCtl::new(false, config.dump_interval, config.herolib_dump),
            stored,
            durability: config.durability,
            maps: ArcSwap::from_pointee(maps),
            reload: Mutex::new(()),
            state,
            writer: Mutex::new(Writer {
                lock: Some(lock),
                buf: Vec::with_capacity(4096),
                held: false,
                held_since: Instant::now(),
                last_write: Instant::now(),
                pending: Vec::new(),
            }),
            lock_held: AtomicBool::new(false),
            sync: SyncCtl::default(),
        })
    }

    /// The configuration of `dir`: `ourdb.json`, or (none there) the one `config` describes,
    /// for a new database or a herolib one opened with an explicit keysize. `store`: write
    /// it (a writable open); a read-only one only uses it.
    fn resolve_config(dir: &Path, config: &Config, store: bool) -> Result<StoredConfig> {
        if let Some(s) = StoredConfig::load(dir)? {
            if let Some(k) = config.keysize {
                if k != s.keysize {
                    return Err(OurDbError::KeysizeMismatch {
                        path: dir.join(CONFIG_FILE),
                        detail: format!(
                            "database was created with keysize {}, opened with {k}",
                            s.keysize
                        ),
                    });
                }
            }
            return Ok(s);
        }
        let data = has_data(dir);
        if !data && (!config.create || config.read_only) {
            return Err(no_database(dir));
        }
        let keysize = match config.keysize {
            Some(k) => k,
            None if data => {
                return Err(OurDbError::KeysizeUnknown {
                    dir: dir.to_path_buf(),
                })
            }
            None => format::herolib_keysize(config.record_nr_max, config.record_size_max as u64),
        };
        let s = StoredConfig {
            format: 1,
            keysize,
            file_size: config.file_size,
            incremental: config.incremental,
            record_size_max: config.record_size_max,
        };
        s.validate().map_err(OurDbError::InvalidConfig)?;
        if store {
            s.store(dir)?;
        }
        Ok(s)
    }

    /// Open-time work that must not race another process's writer or compaction.
    #[allow(clippy::type_complexity)]
    fn open_locked(
        dir: &Path,
        config: &Config,
        alone: bool,
    ) -> Result<(StoredConfig, State, Maps, u64)> {
        let recovered = compact::recover(dir)?;
        let stored = Self::resolve_config(dir, config, true)?;
        let dense = dir.join("lookup/data");
        let dump = dir.join(dump::DUMP_DIR);
        let mut dump_inc = None;
        if !dense.exists() && dump.join("data").exists() {
            dump_inc = lookup::import_sparse(&dump, &dense, stored.keysize)?;
        }
        let lookup = Lookup::open(&dense, stored.keysize)?;
        let mut files = vec![Arc::new(DataFile::open(dir, 0, true)?)];
        while dir
            .join(format::data_file_name(files.len() as u16))
            .exists()
        {
            if files.len() > u16::MAX as usize {
                break;
            }
            files.push(Arc::new(DataFile::open(dir, files.len() as u16, false)?));
        }
        let (state, valid) = State::open(dir)?;
        let last = files.len() as u16 - 1;
        let last_len = files[last as usize].known_len();
        // Reconcile the shared state with the files: after a crash or power loss the files may
        // be ahead of it (never trust a position that could overwrite a record). With another
        // handle open the state is live and exact, and the file may be longer than the data
        // by a `strict` writer's preallocated fill, which appends go on using. Alone, the end
        // of the file is the safe choice: a fill left by a crash is skipped, not reused.
        let append = if valid && !recovered && state.file_nr() == last {
            if alone {
                state.append_pos().max(last_len)
            } else {
                state.append_pos()
            }
        } else {
            last_len
        };
        let state_next = valid.then(|| state.next_id());
        let (next, prior_next) = reconcile_next_id(dir, &lookup, state_next, dump_inc)?;
        state.set_next_id(next);
        state.set_file_nr(last);
        state.set_append_pos(append);
        state.set_lookup_len(lookup.known_len());
        if !valid {
            state.set_generation(0);
            // No block is known: the owner reserves a new one (the old one's rest is a gap).
            state.set_id_limit(0);
        } else if recovered {
            // Other handles still map the files the interrupted compaction replaced.
            state.set_generation(state.generation() + 1);
        }
        state.set_valid();
        let maps = Maps {
            generation: state.generation(),
            lookup: Arc::new(lookup),
            files,
        };
        Ok((stored, state, maps, prior_next))
    }

    /// A read-only handle: reads the files as they are and creates, locks and writes nothing
    /// in `dir`. Without `lookup/data` the table is built from the sparse dump in a private
    /// temporary file; without `ourdb.state` the state is rebuilt in memory.
    fn open_read_only(dir: PathBuf, config: &Config) -> Result<Inner> {
        let stored = Self::resolve_config(&dir, config, false)?;
        if dir.join(compact::STAGING).join(compact::COMMIT).exists() {
            return Err(OurDbError::ReadOnly {
                dir,
                what: "finishing an interrupted compaction (.compact/COMMIT exists)",
            });
        }
        let dense = dir.join("lookup/data");
        let dump_dir = dir.join(dump::DUMP_DIR);
        let mut dump_inc = None;
        let lookup = if dense.exists() {
            Lookup::open_read_only(&dense, stored.keysize)?
        } else if dump_dir.join("data").exists() {
            dump_inc = lookup::read_inc(&dump_dir.join(".inc"))?;
            Lookup::private(&dense, stored.keysize, Some(&dump_dir))?
        } else {
            Lookup::private(&dense, stored.keysize, None)?
        };
        let mut files = Vec::new();
        while files.len() <= u16::MAX as usize
            && dir
                .join(format::data_file_name(files.len() as u16))
                .exists()
        {
            files.push(Arc::new(DataFile::open_read_only(
                &dir,
                files.len() as u16,
            )?));
        }
        let (state, valid) = State::snapshot(&dir)?;
        let state_next = valid.then(|| state.next_id());
        let (next, prior_next) = reconcile_next_id(&dir, &lookup, state_next, dump_inc)?;
        let last = files.len().saturating_sub(1) as u16;
        state.set_next_id(next);
        state.set_file_nr(last);
        state.set_append_pos(files.last().map_or(0, |f| f.known_len()));
        state.set_lookup_len(lookup.known_len());
        if !valid {
            state.set_generation(0);
        }
        state.set_valid();
        let maps = Maps {
            generation: state.generation(),
            lookup: Arc::new(lookup),
            files,
        };
        Ok(Inner {
            dir,
            open_lock: None,
            read_only: true,
            prior_next,
            scan_raised: next > prior_next,
            dump: DumpCtl::new(true, config.dump_interval, false),
            stored,
            durability: Durability::None,
            maps: ArcSwap::from_pointee(maps),
            reload: Mutex::new(()),
            state,
            writer: Mutex::new(Writer {
                lock: None,
                buf: Vec::new(),
                held: false,
                held_since: Instant::now(),
                last_write: Instant::now(),
                pending: Vec::new(),
            }),
            lock_held: AtomicBool::new(false),
            sync: SyncCtl::default(),
        })
    }

    /// Rewrites herolib's sparse dump from the table if the table changed since the last
    /// one. `force: false` (the background thread) also waits for the dump interval.
    fn write_dump(&self, force: bool) -> Result<()> {
        if self.read_only || !self.dump.enabled {
            return Ok(());
        }
        let changes = self.dump.changes.load(Ordering::Acquire);
        if changes == self.dump.dumped.load(Ordering::Acquire) {
            return Ok(());
        }
        if !force {
            let t = self.dump.timing.lock();
            if t.0.elapsed() < t.1 {
                return Ok(());
            }
        }
        // Nothing was ever written and herolib has no dump to be misled by: none is needed
        // (herolib reads the database as the empty one it is).
        if self.state.next_id() <= 1 && !self.dir.join(dump::DUMP_DIR).exists() {
            self.dump.dumped.store(changes, Ordering::Release);
            return Ok(());
        }
        let started = Instant::now();
        dump::with_lock(&self.dir, || {
            // Read again under the lock: a dump that finished meanwhile may cover us.
            let changes = self.dump.changes.load(Ordering::Acquire);
            if changes == self.dump.dumped.load(Ordering::Acquire) {
                return Ok(());
            }
            let maps = self.current_maps()?;
            let mut buf = Vec::new();
            maps.lookup.note_len(self.state.lookup_len());
            let highest = dump::build(&maps.lookup, self.stored.incremental, &mut buf);
            // Read after the snapshot, and never below what it names: an `add` publishes its
            // entry before it raises the next id.
            let next = self.state.next_id().max(1).max(highest as u64 + 1);
            if !dump::is_current(&self.dir, &buf, next) {
                dump::write(&self.dir, &buf, next)?;
            }
            self.dump.dumped.store(changes, Ordering::Release);
            Ok(())
        })?;
        let cost = started.elapsed();
        let mut t = self.dump.timing.lock();
        *t = (Instant::now(), self.dump.interval.max(cost * 20));
        Ok(())
    }

    fn check_size(&self, data: &[u8]) -> Result<()> {
        if data.len() > self.stored.record_size_max {
            return Err(OurDbError::RecordTooLarge {
                size: data.len(),
                max: self.stored.record_size_max,
            });
        }
        Ok(())
    }

    fn lookup(&self) -> Arc<Lookup> {
        Arc::clone(&self.maps.load().lookup)
    }

    /// The maps of the current generation, reopening files if another handle compacted.
    fn current_maps(&self) -> Result<Arc<Maps>> {
        let maps = self.maps.load_full();
        if maps.generation == self.state.generation() {
            return Ok(maps);
        }
        let _guard = self.reload.lock();
        let maps = self.maps.load_full();
        let generation = self.state.generation();
        if maps.generation == generation {
            return Ok(maps);
        }
        let lookup = Lookup::open(&self.dir.join("lookup/data"), self.stored.keysize)?;
        let mut files = Vec::new();
        while self
            .dir
            .join(format::data_file_name(files.len() as u16))
            .exists()
        {
            files.push(Arc::new(DataFile::open(
                &self.dir,
                files.len() as u16,
                false,
            )?));
        }
        let fresh = Arc::new(Maps {
            generation,
            lookup: Arc::new(lookup),
            files,
        });
        self.maps.store(Arc::clone(&fresh));
        Ok(fresh)
    }

    /// Data file `nr`, opening it if another handle created it since our maps were built.
    fn data_file(&self, nr: u16) -> Result<Arc<DataFile>> {
        let maps = self.current_maps()?;
        if let Some(f) = maps.files.get(nr as usize) {
            return Ok(Arc::clone(f));
        }
        let _guard = self.reload.lock();
        let maps = self.maps.load_full();
        if let Some(f) = maps.files.get(nr as usize) {
            return Ok(Arc::clone(f));
        }
        let mut files = maps.files.clone();
        while files.len() <= nr as usize {
            let next = files.len() as u16;
            if !self.dir.join(format::data_file_name(next)).exists() {
                return Err(OurDbError::corrupt(
                    self.dir.join(format::data_file_name(nr)),
                    0,
                    "a lookup entry points into this data file, which does not exist",
                ));
            }
            files.push(Arc::new(DataFile::open(&self.dir, next, false)?));
        }
        let f = Arc::clone(&files[nr as usize]);
        self.maps.store(Arc::new(Maps {
            generation: maps.generation,
            lookup: Arc::clone(&maps.lookup),
            files,
        }));
        Ok(f)
    }

    /// The lookup entry of `id` (`None`: beyond the table).
    fn entry(&self, id: u32) -> Result<Option<Location>> {
        self.current_maps()?.lookup.get(id, self.state.lookup_len())
    }

    /// The lock-free read path: entry → record → CRC → entry unchanged.
    fn read(&self, id: u32, out: &mut Vec<u8>) -> Result<(Location, format::RecordHeader)> {
        if id == 0 {
            return Err(OurDbError::ZeroId);
        }
        let mut last_err = None;
        for _ in 0..READ_RETRIES {
            // A guard, not an `Arc` clone: no shared reference count is touched per read, so
            // readers on different cores do not contend.
            let maps = self.maps.load();
            if maps.generation != self.state.generation() {
                drop(maps);
                self.current_maps()?;
                continue;
            }
            let published = self.state.lookup_len();
            let loc = match maps.lookup.get(id, published)? {
                Some(l) if !l.is_none() => l,
                _ => return Err(OurDbError::NotFound { id }),
            };
            let Some(file) = maps.files.get(loc.file_nr as usize) else {
                // Another process started a new data file (or the entry is damaged).
                drop(maps);
                self.data_file(loc.file_nr)?;
                continue;
            };
            let res = file.read_record(loc.position, self.stored.record_size_max, out);
            let again = maps.lookup.get(id, published)?;
            if again != Some(loc) || self.state.generation() != maps.generation {
                last_err = res.err();
                continue;
            }
            return res.map(|h| (loc, h));
        }
        Err(last_err.unwrap_or(OurDbError::NotFound { id }))
    }

    /// Runs `f` as the one writer of the database (process mutex + file lock), and notes the
    /// write for durability. Returns `f`'s value and the write's sequence number.
    fn write<R>(&self, f: impl FnOnce(&mut Writer) -> Result<R>) -> Result<(R, u64)> {
        if self.read_only {
            return Err(OurDbError::ReadOnly {
                dir: self.dir.clone(),
                what: "writing",
            });
        }
        if self.durability != Durability::None {
            self.sync.check_failed()?;
        }
        let _inflight = self.sync.enter_write();
        let mut w = self.writer.lock();
        self.take_file_lock(&mut w)?;
        let pending_before = w.pending.len();
        let res = self.current_maps().and_then(|_| f(&mut w));
        if res.is_err() {
            // A failed write is not acknowledged: none of its entries become visible.
            w.pending.truncate(pending_before);
        }
        let seq = self.sync.note_write();
        w.last_write = Instant::now();
        // Unpublished entries keep the file lock: another process writing the same id
        // meanwhile would read a stale previous version and then be overwritten by ours.
        if (res.is_err() || w.last_write.duration_since(w.held_since) >= STICKY_MAX)
            && w.pending.is_empty()
        {
            self.release_lock(&mut w);
        }
        res.map(|r| (r, seq))
    }

    /// Takes the cross-process file lock unless this handle already holds it.
    fn take_file_lock(&self, w: &mut Writer) -> Result<()> {
        if !w.held {
            let Some(lock) = &w.lock else {
                return Err(OurDbError::ReadOnly {
                    dir: self.dir.clone(),
                    what: "taking the writer lock",
                });
            };
            lock.lock()
                .map_err(|e| OurDbError::io("lock", self.dir.join(LOCK_FILE), e))?;
            w.held = true;
            w.held_since = Instant::now();
            self.lock_held.store(true, Ordering::Release);
            self.sync.wake();
        }
        Ok(())
    }

    fn release_lock(&self, w: &mut Writer) {
        if w.held {
            if let Some(lock) = &w.lock {
                let _ = lock.unlock();
            }
            w.held = false;
            self.lock_held.store(false, Ordering::Release);
        }
    }

    /// At close: cuts the fill a `strict` writer wrote past the last record, so that a closed
    /// database is exactly herolib's layout. Only when no other handle, in any process, has
    /// the database open (see [`DataFile::trim`]); otherwise the last one to close does it.
    /// Earlier data files keep theirs (at most [`format::TAIL_CHUNK`] each), because this
    /// process may still map them.
    fn trim_tail(&self, w: &mut Writer) -> Result<()> {
        // The writer lock first, as an opener takes it before its probe (see `Inner::open`).
        let Some(open_lock) = &self.open_lock else {
            return Ok(());
        };
        self.take_file_lock(w)?;
        match open_lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(()),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(OurDbError::io("lock", self.dir.join(OPEN_LOCK_FILE), e))
            }
        }
        let end = self.state.append_pos();
        self.data_file(self.state.file_nr())?.trim(end)
    }

    /// Hands the file lock back if no write happened for [`STICKY_IDLE`].
    fn release_idle_lock(&self) {
        if !self.lock_held.load(Ordering::Acquire) {
            return;
        }
        if let Some(mut w) = self.writer.try_lock() {
            if w.held && w.pending.is_empty() && w.last_write.elapsed() >= STICKY_IDLE {
                self.release_lock(&mut w);
            }
        }
    }

    /// Keeps the durability promise for write `seq` before it is acknowledged.
    fn after_write(&self, seq: u64) -> Result<()> {
        match self.durability {
            Durability::Strict => self.sync.wait_durable(seq, || self.fsync_files()),
            Durability::Periodic | Durability::None => Ok(()),
        }
    }

    fn release_resident(&self) -> Result<()> {
        let maps = self.maps.load_full();
        maps.lookup.release_resident()?;
        for f in &maps.files {
            f.release_resident()?;
        }
        Ok(())
    }

    fn sync_all(&self) -> Result<()> {
        self.sync.sync_all(|| {
            self.fsync_files()?;
            lookup::write_inc(&self.dir.join("lookup/.inc"), self.state.next_id().max(1))
        })
    }

    /// fsyncs the files a write touches: the current data file, then the lookup table.
    /// (Earlier data files are synced when the writer moves past them; the state file need
    /// not be: open reconciles it with the files.)
    ///
    /// In `strict` mode the round runs as the one writer of this process and publishes the
    /// pending entries between the two fsyncs ([`Inner::sync_and_publish`]). It costs no throughput under
    /// group commit: the writers of the next group are waiting for this round anyway.
    /// `periodic` does not take the lock: its entries are in the table already, the kernel
    /// may write a page of the mapped table back at any moment, and holding it would stall
    /// every writer for an fsync every 50 ms (milliseconds on a busy disk), which is what
    /// that mode exists to avoid.
    fn fsync_files(&self) -> Result<()> {
        if self.durability != Durability::Strict {
            return self.current_maps().and_then(|maps| {
                self.data_file(self.state.file_nr())?.sync()?;
                Self::sync_table(&maps)
            });
        }
        // No need for the file lock: entries are pending only while this handle holds it.
        let mut w = self.writer.lock();
        self.sync_and_publish(&mut w)
    }

    /// The `strict` round, as the one writer: fsync the data, then publish the entries of
    /// the records it made durable, then fsync the table. A table entry therefore never
    /// reaches the disk before its record, whatever the kernel writes back when; and readers
    /// never see a write that is not durable yet. If the data fsync fails, the pending
    /// writes fail with it and are dropped unpublished.
    fn sync_and_publish(&self, w: &mut Writer) -> Result<()> {
        let res = self.current_maps().and_then(|maps| {
            self.data_file(self.state.file_nr())?.sync()?;
            let published = !w.pending.is_empty();
            for (id, loc) in w.pending.drain(..) {
                // Capacity was ensured and the location checked when the record was written.
                maps.lookup.set(id, loc)?;
            }
            if published {
                self.dump.note_change();
            }
            Self::sync_table(&maps)
        });
        w.pending.clear();
        res
    }

    fn sync_table(maps: &Maps) -> Result<()> {
        maps.lookup
            .file()
            .sync_data()
            .map_err(|e| OurDbError::io("fsync", maps.lookup.path(), e))
    }

    /// Appends one record at the end of the current data file (starting a new file when the
    /// current one has reached the configured size). Caller holds the write lock.
    fn append(&self, w: &mut Writer, data: &[u8], prev: Location) -> Result<Location> {
        let mut nr = self.state.file_nr();
        let mut pos = self.state.append_pos();
        if self.stored.keysize == 6 && pos >= self.stored.file_size {
            if nr == u16::MAX {
                return Err(OurDbError::LocationOverflow {
                    keysize: 6,
                    location: Location {
                        file_nr: nr,
                        position: 0,
                    },
                });
            }
            // The file we leave is synced now, so that only the current file ever needs it.
            if self.durability != Durability::None {
                self.data_file(nr)?.sync()?;
            }
            nr += 1;
            let created = Arc::new(DataFile::open(&self.dir, nr, true)?);
            {
                let _guard = self.reload.lock();
                let maps = self.maps.load_full();
                let mut files = maps.files.clone();
                if files.len() == nr as usize {
                    files.push(created);
                }
                self.maps.store(Arc::new(Maps {
                    generation: maps.generation,
                    lookup: Arc::clone(&maps.lookup),
                    files,
                }));
            }
            pos = format::DATA_FILE_PREAMBLE;
            self.state.set_file_nr(nr);
            self.state.set_append_pos(pos);
        }
        let loc = Location {
            file_nr: nr,
            position: u32::try_from(pos).map_err(|_| OurDbError::LocationOverflow {
                keysize: self.stored.keysize,
                location: Location {
                    file_nr: nr,
                    position: u32::MAX,
                },
            })?,
        };
        let mut probe = [0u8; 6];
        if loc.encode_entry(self.stored.keysize, &mut probe).is_none() {
            return Err(OurDbError::LocationOverflow {
                keysize: self.stored.keysize,
                location: loc,
            });
        }
        let file = self.data_file(nr)?;
        let header_len = format::encode_header(data, prev, &mut w.buf);
        if self.durability == Durability::Strict {
            file.preallocate(pos + (header_len + data.len()) as u64)?;
        }
        if data.len() <= 64 * 1024 {
            w.buf.extend_from_slice(data);
            file.write_at(pos, &w.buf)?;
        } else {
            file.write_at(pos, &w.buf)?;
            file.write_at(pos + header_len as u64, data)?;
        }
        self.state
            .set_append_pos(pos + (header_len + data.len()) as u64);
        Ok(loc)
    }

    /// Points `id` at `loc`, growing the table if needed. Caller holds the write lock.
    /// `strict` only queues the entry for the next fsync round (see [`Writer::pending`]);
    /// the table grows now, so that publishing it later cannot fail.
    fn publish(&self, w: &mut Writer, id: u32, loc: Location) -> Result<()> {
        let lookup = self.lookup();
        if let Some(len) = lookup.ensure_capacity(id, self.state.lookup_len())? {
            self.state.set_lookup_len(len);
        }
        if self.durability == Durability::Strict {
            w.pending.push((id, loc));
            Ok(())
        } else {
            lookup.set(id, loc)?;
            self.dump.note_change();
            Ok(())
        }
    }

    /// The entry of `id` as the writer sees it: its own unpublished writes first.
    fn writer_entry(&self, w: &Writer, id: u32) -> Result<Option<Location>> {
        match w.pending.iter().rev().find(|(i, _)| *i == id) {
            Some(&(_, loc)) => Ok(Some(loc)),
            None => self.entry(id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn handle_is_send_and_sync() {
        assert_send_sync::<OurDb>();
    }

    /// `strict`: a written record's entry reaches the table only in the fsync round that made
    /// the record durable; until then readers see the previous, durable version.
    #[test]
    fn strict_writes_are_published_by_their_fsync_round() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            durability: Durability::Strict,
            ..Config::default()
        };
        let db = OurDb::open(dir.path(), config).unwrap();
        let id = db.add(b"v1").unwrap();
        let inner = &*db.inner;
        let rounds = db.fsync_rounds();
        // The body of `set`, without waiting for durability.
        let ((), seq) = inner
            .write(|w| {
                let prev = inner.writer_entry(w, id)?.unwrap_or(Location::NONE);
                let loc = inner.append(w, b"v2", prev)?;
                inner.publish(w, id, loc)
            })
            .unwrap();
        assert_eq!(db.get(id).unwrap(), b"v1");
        assert_eq!(db.history(id, 5).unwrap(), [b"v1".to_vec()]);
        inner.after_write(seq).unwrap();
        assert!(db.fsync_rounds() > rounds);
        assert_eq!(db.get(id).unwrap(), b"v2");
        assert_eq!(db.history(id, 5).unwrap(), [b"v2".to_vec(), b"v1".to_vec()]);
    }
}
