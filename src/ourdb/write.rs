//! The write path: the writer lock (process mutex + `flock`), appending records, publishing
//! lookup entries, and keeping each durability mode's promise before a write is acknowledged.

use super::config::Durability;
use super::datafile::DataFile;
use super::error::{OurDbError, Result};
use super::format::{self, Location};
use super::inner::{Inner, Maps};
use super::{lookup, LOCK_FILE, OPEN_LOCK_FILE};
use std::fs::File;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a writer keeps the cross-process file lock after its last write, and at most
/// in one stretch. Holding it across consecutive writes saves two syscalls per write (a third
/// of an add's cost); another process waits at most about this long for its turn.
pub(super) const STICKY_IDLE: Duration = Duration::from_millis(1);
/// See [`STICKY_IDLE`]: under continuous load the lock is handed back at least this often.
pub(super) const STICKY_MAX: Duration = Duration::from_millis(4);

/// What only the writer touches.
pub(super) struct Writer {
    /// `ourdb.lock`; `None` on a read-only handle, which never writes.
    pub(super) lock: Option<File>,
    pub(super) buf: Vec<u8>,
    /// Whether this handle holds the file lock now (it is kept across consecutive writes).
    pub(super) held: bool,
    pub(super) held_since: Instant,
    pub(super) last_write: Instant,
    /// `strict` only: lookup entries of records written but not yet fsynced, in write order.
    /// The next fsync round publishes them into the table after the records are durable,
    /// so the table never reaches the disk ahead of the data (see [`Inner::publish`]).
    pub(super) pending: Vec<(u32, Location)>,
}

impl Inner {
    /// Appends several records under one lock acquisition and (in `Strict`) one fsync.
    /// Ids are consecutive and returned in order. With an id block reserved
    /// ([`reserve_ids`](OurDb::reserve_ids)), fails with [`OurDbError::IdBlockExhausted`],
    /// writing nothing, when the block has fewer ids left than records given.
    pub(super) fn add_many<'a>(
        &self,
        records: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Vec<u32>> {
        let inner = self;
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
    pub(super) fn reserve_ids(&self, start: u64, end: u64) -> Result<bool> {
        let inner = self;
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
    pub(super) fn end_block(&self) -> Result<()> {
        let inner = self;
        inner.write(|_w| {
            inner.state.set_id_limit(inner.state.next_id().max(1));
            Ok(())
        })?;
        Ok(())
    }

    pub(super) fn write_many<'a>(
        &self,
        items: impl IntoIterator<Item = (u32, &'a [u8])>,
        foreign_ids: bool,
    ) -> Result<()> {
        let inner = self;
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

    /// Deletes `id`: clears its lookup entry and zeroes its current record (as herolib does;
    /// older versions stay until compaction).
    ///
    /// The record is zeroed only once the cleared entry is durable (in `strict` mode) and
    /// never by the same step: zeroed bytes read as a valid empty record, so a table that
    /// still pointed at them after a crash would return wrong data instead of the old one.
    pub(super) fn delete(&self, id: u32) -> Result<()> {
        let inner = self;
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

    /// Runs `f` as the one writer of the database (process mutex + file lock), and notes the
    /// write for durability. Returns `f`'s value and the write's sequence number.
    pub(super) fn write<R>(&self, f: impl FnOnce(&mut Writer) -> Result<R>) -> Result<(R, u64)> {
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
    pub(super) fn take_file_lock(&self, w: &mut Writer) -> Result<()> {
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

    pub(super) fn release_lock(&self, w: &mut Writer) {
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
    pub(super) fn trim_tail(&self, w: &mut Writer) -> Result<()> {
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
    pub(super) fn release_idle_lock(&self) {
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
    pub(super) fn after_write(&self, seq: u64) -> Result<()> {
        match self.durability {
            Durability::Strict => self.sync.wait_durable(seq, || self.fsync_files()),
            Durability::Periodic | Durability::None => Ok(()),
        }
    }

    pub(super) fn sync_all(&self) -> Result<()> {
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
    pub(super) fn fsync_files(&self) -> Result<()> {
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
    pub(super) fn sync_and_publish(&self, w: &mut Writer) -> Result<()> {
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

    pub(super) fn sync_table(maps: &Maps) -> Result<()> {
        maps.lookup
            .file()
            .sync_data()
            .map_err(|e| OurDbError::io("fsync", maps.lookup.path(), e))
    }

    /// Appends one record at the end of the current data file (starting a new file when the
    /// current one has reached the configured size). Caller holds the write lock.
    pub(super) fn append(&self, w: &mut Writer, data: &[u8], prev: Location) -> Result<Location> {
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
    pub(super) fn publish(&self, w: &mut Writer, id: u32, loc: Location) -> Result<()> {
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
    pub(super) fn writer_entry(&self, w: &Writer, id: u32) -> Result<Option<Location>> {
        match w.pending.iter().rev().find(|(i, _)| *i == id) {
            Some(&(_, loc)) => Ok(Some(loc)),
            None => self.entry(id),
        }
    }
}
