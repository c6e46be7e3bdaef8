//! The shared core of one handle (`Inner`): its files and maps, the shared state, the
//! writer, and the background thread that hands the file lock back, runs `periodic` fsyncs
//! and checkpoints, and keeps herolib's sparse dump current. Owns no public API:
//! [`super::OurDb`] is the facade.

use super::config::{Durability, StoredConfig};
use super::datafile::DataFile;
use super::dump;
use super::durability::SyncCtl;
use super::error::{OurDbError, Result};
use super::format;
use super::lookup::Lookup;
use super::mark::Mark;
use super::state::State;
use super::write::{Writer, STICKY_IDLE};
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the background thread releases mapped pages from this process's resident set
/// (reads of old records would otherwise make a long-running process's RSS grow with the
/// data it ever read, although those pages belong to the page cache).
pub(super) const RESIDENT_TRIM: Duration = Duration::from_secs(1);
/// A checkpoint (table fsync + mark) runs at most this often while data is written: it
/// bounds the tail open replays after a crash to what was written in the last second.
pub(super) const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// ... or as soon as this many bytes were appended past the mark (bounds the replay after
/// a crash to a few milliseconds of reading).
pub(super) const CHECKPOINT_BYTES: u64 = 32 << 20;

/// The last checkpoint this handle knows of (another process may have written a newer one).
pub(super) struct MarkCtl {
    /// The mark, `None` on a read-only handle (which never writes one).
    pub(super) last: Option<Mark>,
    /// When it was written or read.
    pub(super) when: Instant,
}

/// Opens one of the database's files for reading and writing, creating it if asked, never
/// truncating it.
pub(super) fn open_rw(path: &Path, create: bool) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
        .map_err(|e| OurDbError::io("open", path, e))
}

/// Makes `dir/lookup/` (and `dir`) if missing: the table and mark live there.
pub(super) fn make_lookup_dir(dir: &Path) -> Result<()> {
    let lookup = dir.join("lookup");
    std::fs::create_dir_all(&lookup).map_err(|e| OurDbError::io("create directory", lookup, e))
}

/// The whole of a small file (`ourdb.json`, `.inc`), read into a buffer of `hint` bytes
/// first: an open, a read, the read that finds the end and a close. (`std::fs::read`, and
/// `File`'s own `read_to_end`, first `stat` the file to size the buffer; a fresh process's
/// open + get is counted in system calls, see docs/performance.md.)
///
/// `complete` may spare the read that finds the end: when a read stops short and
/// `complete` says the bytes so far are a whole file, they are taken. A regular file's read
/// on a local filesystem stops short only at its end, but one on NFS, CIFS or FUSE may stop
/// anywhere, so only a file whose end can be recognised passes one (`ourdb.json`, a JSON
/// object); `.inc` does not, since a number cut short still parses.
pub(super) fn read_small(
    path: &Path,
    hint: usize,
    complete: impl Fn(&[u8]) -> bool,
) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; hint.max(1)];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        let want = buf.len() - len;
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                if n < want && complete(&buf[..len]) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    Ok(buf)
}

/// The first `n` bytes of a file (fewer if it is shorter), for a file of fixed layout whose
/// reader looks at nothing past them (`lookup/mark`): usually one `read`.
pub(super) fn read_prefix(path: &Path, n: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::with_capacity(n);
    File::open(path)?.take(n as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// The open files of one generation of the database.
pub(super) struct Maps {
    pub(super) generation: u64,
    pub(super) lookup: Arc<Lookup>,
    pub(super) files: Vec<Arc<DataFile>>,
}

pub(super) struct Inner {
    pub(super) dir: PathBuf,
    /// Held shared for the handle's life (see [`OPEN_LOCK_FILE`]); `None` when read-only.
    pub(super) open_lock: Option<File>,
    /// Opened with `Config::read_only`: writes are refused, nothing on disk is touched.
    pub(super) read_only: bool,
    /// The next id as the state file and `.inc` had it at open, before the scan of the table
    /// raised it: `check` compares the table with it (an entry at or above it means the
    /// table is read with the wrong keysize, or the state was lost).
    pub(super) prior_next: u64,
    /// Whether the open-time scan of the table raised the next id above `prior_next`.
    pub(super) scan_raised: bool,
    /// herolib's sparse dump: how current it is (see [`dump`]).
    pub(super) dump: DumpCtl,
    pub(super) stored: StoredConfig,
    pub(super) durability: Durability,
    pub(super) maps: ArcSwap<Maps>,
    pub(super) reload: Mutex<()>,
    pub(super) state: State,
    pub(super) writer: Mutex<Writer>,
    /// Mirrors `Writer::held` for the background thread, which must not wait for the mutex.
    pub(super) lock_held: AtomicBool,
    pub(super) sync: SyncCtl,
    /// The lookup table's durable point (`lookup/mark`): see [`super::mark`].
    pub(super) mark: Mutex<MarkCtl>,
    /// `mark`'s location as file number × 2^48 + position, for writers to compare with the
    /// append position without the lock.
    pub(super) mark_at: std::sync::atomic::AtomicU64,
}

/// Bookkeeping for rewriting herolib's sparse dump only when the table changed.
pub(super) struct DumpCtl {
    /// Bumped whenever an entry is published into the table (or the table replaced).
    pub(super) changes: std::sync::atomic::AtomicU64,
    /// `changes` as of the last dump written (`u64::MAX`: the dump on disk is stale).
    pub(super) dumped: std::sync::atomic::AtomicU64,
    /// When the last dump finished, and the interval before the next background one.
    pub(super) timing: Mutex<(Instant, Duration)>,
    /// `Config::dump_interval`.
    pub(super) interval: Duration,
    /// `Config::herolib_dump`.
    pub(super) enabled: bool,
}

impl DumpCtl {
    pub(super) fn new(current: bool, interval: Duration, enabled: bool) -> DumpCtl {
        DumpCtl {
            enabled,
            changes: 0.into(),
            dumped: (if current { 0 } else { u64::MAX }).into(),
            timing: Mutex::new((Instant::now(), interval)),
            interval,
        }
    }

    pub(super) fn note_change(&self) {
        self.changes.fetch_add(1, Ordering::AcqRel);
    }
}

impl Inner {
    /// Rewrites herolib's sparse dump from the table if the table changed since the last
    /// one. `force: false` (the background thread) also waits for the dump interval.
    pub(super) fn write_dump(&self, force: bool) -> Result<()> {
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

    pub(super) fn check_size(&self, data: &[u8]) -> Result<()> {
        if data.len() > self.stored.record_size_max {
            return Err(OurDbError::RecordTooLarge {
                size: data.len(),
                max: self.stored.record_size_max,
            });
        }
        Ok(())
    }

    pub(super) fn lookup(&self) -> Arc<Lookup> {
        Arc::clone(&self.maps.load().lookup)
    }

    /// The maps of the current generation, reopening files if another handle compacted.
    pub(super) fn current_maps(&self) -> Result<Arc<Maps>> {
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
    pub(super) fn data_file(&self, nr: u16) -> Result<Arc<DataFile>> {
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

    pub(super) fn release_resident(&self) -> Result<()> {
        let maps = self.maps.load_full();
        maps.lookup.release_resident()?;
        for f in &maps.files {
            f.release_resident()?;
        }
        Ok(())
    }
}

/// Starts the handle's background thread: it hands the writer file lock back when the handle
/// goes idle, releases resident pages, runs the `periodic` fsync every `sync_interval`, and
/// rewrites herolib's sparse dump at a bounded rate while the table changes.
pub(super) fn spawn_background(
    inner: &Arc<Inner>,
    periodic: bool,
    interval: Duration,
) -> Result<JoinHandle<()>> {
    let inner2 = Arc::clone(inner);
    let syncer = std::thread::Builder::new()
        .name("herojobs-ourdb-sync".into())
        .spawn(move || {
            let mut last_sync = Instant::now();
            let mut last_trim = Instant::now();
            loop {
                let mut wait = if periodic {
                    interval.saturating_sub(last_sync.elapsed())
                } else {
                    CHECKPOINT_INTERVAL
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
                if let Err(e) = inner2.maybe_checkpoint(false) {
                    log::error!("ourdb {}: checkpoint failed: {e}", inner2.dir.display());
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
    Ok(syncer)
}

#[cfg(test)]
mod tests {
    /// Files shorter than, as long as, and longer than the first buffer come back whole;
    /// the prefix read stops where it is told.
    #[test]
    fn small_reads_return_the_whole_file_or_the_prefix_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0usize, 1, 31, 32, 33, 100, 5000] {
            let p = dir.path().join(format!("f{len}"));
            let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            std::fs::write(&p, &data).unwrap();
            for complete in [|_: &[u8]| false, |_: &[u8]| true] {
                assert_eq!(
                    super::read_small(&p, 32, complete).unwrap(),
                    data,
                    "{len} bytes"
                );
                assert_eq!(
                    super::read_small(&p, 0, complete).unwrap(),
                    data,
                    "{len} bytes"
                );
            }
            assert_eq!(super::read_prefix(&p, 64).unwrap(), data[..len.min(64)]);
        }
        let missing = dir.path().join("missing");
        let e = super::read_small(&missing, 32, |_| false).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }
}
