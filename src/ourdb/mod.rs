//! OurDB: a memory-mapped, append-only record store with herolib's on-disk layout.
//!
//! It owns files in one directory and knows nothing of jobs, Redis or the engine. The format
//! is in `docs/ourdb-format.md` and, as constants, in [`format`](mod@format).
//!
//! # Concurrency
//!
//! * Readers never lock: they read the lookup entry and the record through memory maps,
//!   verify the CRC, and re-read the entry; if it changed meanwhile (an update or delete raced
//!   them) they retry. The memory-map contract is written once, in the private `mmap` module:
//!   files are mapped once with a fixed reservation, only grown, and every access is checked
//!   against a known length (and, as a last line, against the reservation).
//! * Writers are serialised twice: by a mutex inside the process and by an exclusive `flock`
//!   on `ourdb.lock` across processes. Under both they read the shared `ourdb.state` (next
//!   id, append position, ...), append with `pwrite`, then publish the lookup entry.
//! * Ordering of a write: record bytes → append position → lookup entry → next id → ack.
//!   A process killed anywhere in that sequence leaves at worst an unreferenced tail, which
//!   the next writer overwrites or compaction drops; acknowledged records are complete.
//!   `strict` moves the lookup entry later: the fsync round publishes it after the record is
//!   durable, so a power loss never leaves an entry pointing at a record that did not reach
//!   the disk, and readers never see a non-durable write.
//! * Durability of the table (`strict`): a write call's records are followed, in the same
//!   `pwrite`, by a commit record naming their ids, so the data file's one `fdatasync` commits
//!   them. The lookup table is made durable lazily by checkpoints, which move a durable mark
//!   (`lookup/mark`); open after a crash replays the commit records past the mark. The parts:
//!   `write` (appending, group commit, checkpoints), `open` (creation, replay, state
//!   reconciliation), `read` (the lock-free read path), `check`, `compact`, `mark`.
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

// Every public item says what it is for; nothing read from a file may panic the process.
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod check;
mod checksum;
mod compact;
mod config;
mod datafile;
mod dump;
mod durability;
mod error;
pub mod format;
mod fsync;
mod inner;
mod lookup;
mod mark;
mod mmap;
mod open;
#[cfg(test)]
mod powerloss;
mod read;
mod state;
mod write;

pub use compact::{CompactOptions, CompactReport, COMPACT_LOCK};
pub use config::{Config, Durability, StoredConfig, CONFIG_FILE};
pub use error::{OurDbError, Result};
pub use format::Location;

use inner::Inner;
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
    /// Data bytes up to the append point (see [`Space`]).
    pub space: Space,
}

/// How the data bytes divide into live and dead ones ([`OurDb::space`]).
///
/// `data_bytes` is what the data files hold up to the append point (a `strict` writer's
/// preallocated fill past it is not counted); `live_bytes` is the current version (header +
/// data) of every id with a record; everything else is dead: superseded versions, deleted
/// records, commit records, the files' preamble bytes, torn tails after a crash. A
/// compaction that keeps history counts the kept older versions as dead too (they are
/// superseded), so a policy compares dead bytes with what they were after its last
/// compaction, not with zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Space {
    /// Bytes in the data files, up to the append point.
    pub data_bytes: u64,
    /// Bytes of the current versions of the live records.
    pub live_bytes: u64,
    /// `data_bytes - live_bytes`: what a compaction without history would reclaim.
    pub dead_bytes: u64,
}

impl Space {
    /// Dead bytes as a fraction of the data bytes (0 for an empty database).
    pub fn dead_ratio(&self) -> f64 {
        if self.data_bytes == 0 {
            0.0
        } else {
            self.dead_bytes as f64 / self.data_bytes as f64
        }
    }
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

/// An open OurDB database. `Send + Sync`: share it between threads by reference or `Arc`.
pub struct OurDb {
    inner: Arc<Inner>,
    /// The background thread, started by the first write (or by reads once the handle is a
    /// second old): an open followed by reads alone spawns no thread, which is a third of
    /// what a fresh process's open + get costs.
    syncer: parking_lot::Mutex<Option<JoinHandle<()>>>,
    started: AtomicBool,
    /// When the handle was opened, and what the background thread is to do.
    opened: Instant,
    periodic: bool,
    sync_interval: Duration,
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
        // Whether the dump on disk matches the table is unknown until compared (a crash
        // before the last sync, a table changed behind our back, a database from before
        // dumps were kept): the background thread's first dump pass compares, and rewrites
        // it only if it differs. Not done here: it is O(ids), and open stays O(1).
        Ok(OurDb {
            inner,
            syncer: parking_lot::Mutex::new(None),
            started: AtomicBool::new(false),
            opened: Instant::now(),
            periodic: config.durability == Durability::Periodic,
            sync_interval: config.sync_interval,
            closed: false,
        })
    }

    /// Starts the background thread if it is not running (a writable handle only).
    fn start_background(&self) -> Result<()> {
        if self.inner.read_only || self.started.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut syncer = self.syncer.lock();
        if syncer.is_none() {
            *syncer = Some(inner::spawn_background(
                &self.inner,
                self.periodic,
                self.sync_interval,
            )?);
        }
        self.started.store(true, Ordering::Release);
        Ok(())
    }

    /// Reads before the background thread runs: once the handle is older than the resident
    /// trim interval, reads start it (so a long-lived reader's resident set is trimmed). One
    /// thread-local counter per read; the clock is read every 1,024th.
    #[cold]
    fn note_read_without_background(&self) {
        thread_local! {
            static READS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
        }
        let n = READS.with(|r| {
            let n = r.get().wrapping_add(1);
            r.set(n);
            n
        });
        if n.is_multiple_of(1024) && self.opened.elapsed() >= inner::RESIDENT_TRIM {
            if let Err(e) = self.start_background() {
                log::error!("ourdb {}: {e}", self.inner.dir.display());
            }
        }
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
        self.start_background()?;
        self.inner.add_many(records)
    }

    /// Confines `add` to the ids `start..end`, a block reserved elsewhere (herojobs reserves
    /// blocks in Redis so that stores on many hosts never hand out the same id). The next id
    /// only moves forward: it becomes `start` if that is ahead. A block that ends at or before
    /// the next id is stale (another process of this database already moved past it) and is
    /// ignored. Returns whether the block was taken. Recorded in the shared state, so every
    /// handle and a restart continue inside it; a crash only leaves a gap.
    pub fn reserve_ids(&self, start: u64, end: u64) -> Result<bool> {
        self.start_background()?;
        self.inner.reserve_ids(start, end)
    }

    /// Gives up the rest of the reserved id block (some of its ids turned out to be used
    /// elsewhere): the next `add` fails with [`OurDbError::IdBlockExhausted`] until a new
    /// block is reserved.
    pub fn end_block(&self) -> Result<()> {
        self.start_background()?;
        self.inner.end_block()
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
        self.start_background()?;
        self.inner.write_many(items, false)
    }

    /// Like [`set_many`](OurDb::set_many), but also at ids this database did not hand out,
    /// as key-value mode allows (herolib's non-incremental `set`): for records whose id was
    /// assigned elsewhere — a job submitted by another store and run here. The next id moves
    /// past every id written, so `add` never hands one of them out.
    pub fn put_many<'a>(&self, items: impl IntoIterator<Item = (u32, &'a [u8])>) -> Result<()> {
        self.start_background()?;
        self.inner.write_many(items, true)
    }

    /// Like [`put_many`](OurDb::put_many), but only over a record that exists: ids with no
    /// current record (deleted, or never written here) are left out and returned, in order.
    /// The check and the writes are one step under the writer lock, so a version written
    /// here never brings back a record deleted before it — what an engine recording a job's
    /// outcome wants when a client may delete the job meanwhile.
    pub fn replace_many<'a>(
        &self,
        items: impl IntoIterator<Item = (u32, &'a [u8])>,
    ) -> Result<Vec<u32>> {
        self.start_background()?;
        self.inner.replace_many(items)
    }

    /// Reads the current version of `id`.
    pub fn get(&self, id: u32) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.get_into(id, &mut out)?;
        Ok(out)
    }

    /// Reads the current version of `id` into `out` (reusing its allocation).
    pub fn get_into(&self, id: u32, out: &mut Vec<u8>) -> Result<()> {
        if !self.started.load(Ordering::Relaxed) {
            self.note_read_without_background();
        }
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
        self.inner.history(id, depth)
    }

    /// Deletes `id`: clears its lookup entry and zeroes its current record (as herolib does;
    /// older versions stay until compaction).
    ///
    /// The record is zeroed only once the cleared entry is durable (in `strict` mode) and
    /// never by the same step: zeroed bytes read as a valid empty record, so a table that
    /// still pointed at them after a crash would return wrong data instead of the old one.
    pub fn delete(&self, id: u32) -> Result<()> {
        self.start_background()?;
        self.inner.delete(id)
    }

    /// The id `add` hands out next (`u32::MAX + 1` once the id space is exhausted).
    pub fn next_id(&self) -> u64 {
        self.inner.state.next_id().max(1)
    }

    /// The ids that currently have a record, ascending (a snapshot of the table as it is read).
    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.inner.ids()
    }

    /// Verifies every live record and every version in its history, then cross-checks the
    /// database as a whole (see `docs/ourdb-format.md`, "What `check` verifies"). Returns the problems found
    /// (empty when the database is intact). A problem with `id` 0 concerns the database as a
    /// whole rather than one record.
    pub fn check(&self) -> Result<Vec<Problem>> {
        self.inner.check()
    }

    /// Figures for `herojobs ourdb stats` (counts live records: O(ids)).
    pub fn stats(&self) -> Result<Stats> {
        self.inner.stats()
    }

    /// Rewrites the live records (latest versions only: history is dropped) into new data
    /// files and switches to them atomically, online: see
    /// [`compact_with`](OurDb::compact_with).
    pub fn compact(&self) -> Result<CompactReport> {
        self.compact_with(CompactOptions::default())
    }

    /// Rewrites the live records into new data files and switches to them atomically,
    /// keeping up to `opts.keep_history` versions per id. Online: the records are copied
    /// without the writer lock (writers and readers go on), which is taken briefly for each
    /// snapshot of the table and then for the last catch-up (what was written during the
    /// copy) and the switch. Every write acknowledged before it returns is in the result.
    /// One compaction runs at a time per database: another one fails with
    /// [`OurDbError::CompactionBusy`].
    pub fn compact_with(&self, opts: CompactOptions) -> Result<CompactReport> {
        self.start_background()?;
        let report = compact::compact(&self.inner, opts)?;
        // Every location moved: herolib must not read the old dump a moment longer than needed.
        self.inner.write_dump(true)?;
        Ok(report)
    }

    /// Data, live and dead bytes. Cheap: the live bytes are a counter kept by the writers
    /// in the shared state; only when it is unknown (after a crash, or writes by a version
    /// that does not keep it) does this scan the records once (O(ids)) and store the result.
    pub fn space(&self) -> Result<Space> {
        // The scan may run as the one writer, and a writer keeps the file lock for its
        // burst until the background thread hands it back: without that thread, a handle
        // that had only read would hold it for good and stall every other handle's writes.
        self.start_background()?;
        self.inner.space()
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
        if let Some(h) = self.syncer.get_mut().take() {
            let _ = h.join();
        }
        // The dump is brought up to date if this handle changed the table. A handle that
        // changed nothing leaves it as it found it (its background pass compared it if the
        // handle lived past the dump interval): comparing at every close would make each
        // open/close cycle O(ids), as in a store cycling idle databases.
        // A handle that wrote nothing has nothing to sync (an open + get + close costs no
        // fsync); one that did makes its writes durable, then the table up to the end of the
        // data (a checkpoint: the next open replays nothing and is O(1)).
        // Nor a checkpoint, when the mark already stands at the end of the data (a handle's
        // own deletes checkpoint before they return); otherwise another process appended
        // past it (and may have died since), and this close makes that durable as before.
        let wrote = self.inner.dump.changes.load(Ordering::Acquire) > 0;
        let wrote_any = self.inner.sync.wrote_any();
        let res = if wrote_any {
            self.inner.sync_all()
        } else {
            Ok(())
        }
        .and_then(|()| {
            if wrote {
                self.inner.write_dump(true)
            } else {
                Ok(())
            }
        });
        let mut w = self.inner.writer.lock();
        let res = res.and_then(|()| {
            let state = &self.inner.state;
            let at_end = |m: &mark::Mark| {
                (m.file_nr, m.position) == (state.file_nr(), state.append_pos())
                    && m.next_id >= state.next_id().max(1)
            };
            if wrote_any
                || !matches!(mark::read(&self.inner.dir)?, mark::Found::Valid(m) if at_end(&m))
            {
                self.inner.checkpoint(&mut w)
            } else {
                Ok(())
            }
        });
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
            .write(|w| inner.write_batch(w, &[id], &[b"v2"], write::Chain::Previous))
            .unwrap();
        assert_eq!(db.get(id).unwrap(), b"v1");
        assert_eq!(db.history(id, 5).unwrap(), [b"v1".to_vec()]);
        inner.after_write(seq).unwrap();
        assert!(db.fsync_rounds() > rounds);
        assert_eq!(db.get(id).unwrap(), b"v2");
        assert_eq!(db.history(id, 5).unwrap(), [b"v2".to_vec(), b"v1".to_vec()]);
    }

    /// A handle that only reads costs no fsync, at open or at close (a CLI `get`, a store
    /// answering from OurDB); one that deleted had its delete made durable before it
    /// returned, and still closes cleanly.
    #[test]
    fn open_get_close_of_an_unchanged_database_fsyncs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        for durability in [Durability::Strict, Durability::Periodic] {
            let config = Config {
                durability,
                ..Config::default()
            };
            let db = OurDb::open(dir.path(), config.clone()).unwrap();
            let id = db.add(b"kept").unwrap();
            let gone = db.add(b"deleted").unwrap();
            db.close().unwrap();
            let ours = |synced: &[std::path::PathBuf]| {
                synced.iter().filter(|p| p.starts_with(dir.path())).count()
            };
            let before = ours(&fsync::SYNCED.lock());
            let db = OurDb::open(dir.path(), config.clone()).unwrap();
            assert_eq!(db.get(id).unwrap(), b"kept");
            db.close().unwrap();
            assert_eq!(ours(&fsync::SYNCED.lock()), before, "{durability:?}");

            let db = OurDb::open(dir.path(), config.clone()).unwrap();
            db.delete(gone).unwrap();
            assert!(ours(&fsync::SYNCED.lock()) > before);
            db.close().unwrap();
            let db = OurDb::open(dir.path(), config).unwrap();
            assert!(matches!(db.get(gone), Err(OurDbError::NotFound { .. })));
            assert_eq!(db.get(id).unwrap(), b"kept");
            assert!(db.check().unwrap().is_empty());
            db.close().unwrap();
        }
    }

    /// A reopen that finds the shared state exact stores nothing into it, so its page is
    /// never faulted writable (which on a shared file mapping dirties the page and, on most
    /// filesystems, stamps the file's mtime): a fresh process's open + get paid for that
    /// fault (docs/performance.md, open + get). Counted at the store itself, since whether
    /// the fault shows in the mtime depends on the filesystem (tmpfs does not stamp it for
    /// a page read first).
    #[test]
    fn a_reopen_of_an_exact_state_stores_nothing_into_the_state_file() {
        let stores = || state::PUT_STORES.with(|n| n.get());
        let dir = tempfile::tempdir().unwrap();
        let db = OurDb::open(dir.path(), Config::default()).unwrap();
        let id = db.add(b"kept").unwrap();
        db.close().unwrap();
        let path = dir.path().join(state::STATE_FILE);
        let bytes = std::fs::read(&path).unwrap();
        let before = stores();
        let db = OurDb::open(dir.path(), Config::default()).unwrap();
        assert_eq!(db.get(id).unwrap(), b"kept");
        assert_eq!(stores(), before, "open stored into an exact state");
        db.close().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        // A change is still stored: the next add moves the next id.
        let db = OurDb::open(dir.path(), Config::default()).unwrap();
        assert_eq!(db.add(b"more").unwrap(), id + 1);
        assert!(stores() > before);
        db.close().unwrap();
        let db = OurDb::open(dir.path(), Config::default()).unwrap();
        assert_eq!(db.get(id + 1).unwrap(), b"more");
        db.close().unwrap();
    }

    /// `replace_many` writes over records that exist and leaves out the rest: a deleted id
    /// stays deleted, an id never written stays unwritten, an id named twice gets both
    /// versions; in `strict`, a record written by this handle but not yet published (its
    /// fsync round pending) counts as existing.
    #[test]
    fn replace_many_never_brings_back_a_deleted_record() {
        for durability in [Durability::Periodic, Durability::Strict] {
            let dir = tempfile::tempdir().unwrap();
            let config = Config {
                durability,
                ..Config::default()
            };
            let db = OurDb::open(dir.path(), config).unwrap();
            let kept = db.add(b"kept v1").unwrap();
            let gone = db.add(b"gone v1").unwrap();
            db.delete(gone).unwrap();
            let missing = db
                .replace_many([
                    (kept, &b"kept v2"[..]),
                    (gone, b"gone v2"),
                    (77, b"never"),
                    (kept, b"kept v3"),
                ])
                .unwrap();
            assert_eq!(missing, [gone, 77], "{durability:?}");
            assert_eq!(db.get(kept).unwrap(), b"kept v3");
            assert_eq!(
                db.history(kept, 5).unwrap(),
                [
                    b"kept v3".to_vec(),
                    b"kept v2".to_vec(),
                    b"kept v1".to_vec()
                ]
            );
            assert!(matches!(db.get(gone), Err(OurDbError::NotFound { .. })));
            assert!(matches!(db.get(77), Err(OurDbError::NotFound { .. })));
            // Nothing to write: no write, no fsync round.
            let rounds = db.fsync_rounds();
            assert_eq!(db.replace_many([(gone, &b"x"[..])]).unwrap(), [gone]);
            assert_eq!(db.fsync_rounds(), rounds);
            if durability == Durability::Strict {
                // A pending (unpublished) record counts: the body of `put`, not yet durable.
                let inner = &*db.inner;
                let fresh = 5;
                let ((), seq) = inner
                    .write(|w| inner.write_batch(w, &[fresh], &[b"f1"], write::Chain::Previous))
                    .unwrap();
                assert!(db.replace_many([(fresh, &b"f2"[..])]).unwrap().is_empty());
                inner.after_write(seq).unwrap();
                assert_eq!(db.get(fresh).unwrap(), b"f2");
            }
            assert!(db.check().unwrap().is_empty());
            db.close().unwrap();
        }
    }
}
