//! The write path: the writer lock (process mutex + `flock`), appending records, publishing
//! lookup entries, and keeping each durability mode's promise before a write is acknowledged.

use super::config::Durability;
use super::datafile::DataFile;
use super::error::{OurDbError, Result};
use super::format::{self, Location};
use super::inner::{Inner, Maps};
use super::mark::{self, Mark};
use super::{lookup, LOCK_FILE, OPEN_LOCK_FILE};
use std::collections::HashMap;
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
    /// Scratch of the batch being written: each record's id, location and (data CRC, data
    /// length), the last for its commit record.
    pub(super) batch: Vec<(u32, Location)>,
    /// See [`Writer::batch`].
    pub(super) crcs: Vec<(u32, u32)>,
}

impl Writer {
    /// A writer holding `lock` (`None`: read-only handle).
    pub(super) fn new(lock: Option<File>) -> Writer {
        Writer {
            lock,
            buf: Vec::new(),
            held: false,
            held_since: Instant::now(),
            last_write: Instant::now(),
            pending: Vec::new(),
            batch: Vec::new(),
            crcs: Vec::new(),
        }
    }
}

/// How a batch's records chain to earlier versions.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Chain {
    /// New ids (`add`): no previous version.
    New,
    /// Existing or caller-chosen ids (`set`, `put`): the previous version is the id's entry.
    Previous,
}

/// A `pwrite` is issued when the batch buffer holds this much; a batch of records smaller
/// than this is written with one `pwrite`.
const BATCH_FLUSH: usize = 4 << 20;

impl Inner {
    /// Appends several records under one lock acquisition, one `pwrite` and (in `Strict`)
    /// one fsync. Ids are consecutive and returned in order. With an id block reserved
    /// ([`reserve_ids`](super::OurDb::reserve_ids)), fails with [`OurDbError::IdBlockExhausted`],
    /// writing nothing, when the block has fewer ids left than records given.
    pub(super) fn add_many<'a>(
        &self,
        records: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Vec<u32>> {
        if !self.stored.incremental {
            return Err(OurDbError::NotIncremental);
        }
        let records: Vec<&[u8]> = records.into_iter().collect();
        for data in &records {
            self.check_size(data)?;
        }
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, seq) = self.write(|w| {
            let n = records.len() as u64;
            let first = loop {
                let first = self.state.next_id().max(1);
                let limit = self.state.id_limit();
                if limit != 0 && first + n > limit {
                    return Err(OurDbError::IdBlockExhausted {
                        next: first,
                        limit,
                        wanted: records.len(),
                    });
                }
                if first + n - 1 > u32::MAX as u64 {
                    return Err(OurDbError::IdSpaceExhausted);
                }
                // Never hand out an id that has a record: the next id can only be wrong after
                // damage (a lost state and `.inc` beside a table the mark does not describe),
                // and one read of the entry about to be written costs nothing measurable.
                let maps = self.maps.load();
                let published = self.state.lookup_len();
                let used = (first..first + n).find(|id| {
                    matches!(maps.lookup.get(*id as u32, published), Ok(Some(l)) if !l.is_none())
                });
                drop(maps);
                match used {
                    None => break first,
                    Some(used) => {
                        log::warn!(
                            "ourdb {}: id {used} already has a record; the next id moves past it",
                            self.dir.display()
                        );
                        self.state.set_next_id(used + 1);
                    }
                }
            };
            let ids: Vec<u32> = (first..first + n).map(|id| id as u32).collect();
            self.write_batch(w, &ids, &records, Chain::New)?;
            Ok(ids)
        })?;
        self.after_write(seq)?;
        Ok(ids)
    }

    /// Confines `add` to the ids `start..end`, a block reserved elsewhere (herojobs reserves
    /// blocks in Redis so that stores on many hosts never hand out the same id). The next id
    /// only moves forward: it becomes `start` if that is ahead. A block that ends at or before
    /// the next id is stale (another process of this database already moved past it) and is
    /// ignored. Returns whether the block was taken. Recorded in the shared state, so every
    /// handle and a restart continue inside it; a crash only leaves a gap. A jump of the
    /// next id is made durable (in the mark) before the call returns: after a power loss the
    /// next id is never below the block, whose ids below `start` may belong to another store.
    pub(super) fn reserve_ids(&self, start: u64, end: u64) -> Result<bool> {
        if start == 0 || end > u32::MAX as u64 + 1 || start >= end {
            return Err(OurDbError::InvalidConfig(format!(
                "id block {start}..{end} is empty or outside 1..={}",
                u32::MAX
            )));
        }
        let (taken, _) = self.write(|w| {
            let next = self.state.next_id().max(1);
            if end <= next {
                return Ok(false);
            }
            let new_next = next.max(start);
            if new_next != next {
                // The table covers every id below the next one (sparse growth), so a jump
                // never looks like the implausible next id open refuses (`MAX_ID_GAP`).
                let below = u32::try_from(new_next - 1).unwrap_or(u32::MAX);
                if let Some(len) = self
                    .lookup()
                    .ensure_capacity(below, self.state.lookup_len())?
                {
                    self.state.set_lookup_len(len);
                }
                lookup::write_inc(&self.dir.join("lookup/.inc"), new_next)?;
                self.state.set_next_id(new_next);
                self.note_next_id(w)?;
            }
            self.state.set_id_limit(end.max(self.state.id_limit()));
            Ok(true)
        })?;
        Ok(taken)
    }

    /// Gives up the rest of the reserved id block (some of its ids turned out to be used
    /// elsewhere): the next `add` fails with [`OurDbError::IdBlockExhausted`] until a new
    /// block is reserved.
    pub(super) fn end_block(&self) -> Result<()> {
        self.write(|_w| {
            self.state.set_id_limit(self.state.next_id().max(1));
            Ok(())
        })?;
        Ok(())
    }

    /// `set_many` (`foreign_ids: false`) and `put_many` (`true`): new versions of the given
    /// ids, in order, with one `pwrite` and (in `Strict`) one fsync round.
    pub(super) fn write_many<'a>(
        &self,
        items: impl IntoIterator<Item = (u32, &'a [u8])>,
        foreign_ids: bool,
    ) -> Result<()> {
        let items = self.checked_items(items)?;
        if items.is_empty() {
            return Ok(());
        }
        let ids: Vec<u32> = items.iter().map(|(id, _)| *id).collect();
        let data: Vec<&[u8]> = items.iter().map(|(_, d)| *d).collect();
        let ((), seq) = self.write(|w| {
            let next = self.state.next_id().max(1);
            if self.stored.incremental && !foreign_ids {
                if let Some(&id) = ids.iter().find(|id| **id as u64 >= next) {
                    return Err(OurDbError::IdNotAllocated { id, next });
                }
            }
            self.write_batch(w, &ids, &data, Chain::Previous)
        })?;
        self.after_write(seq)
    }

    /// Writes new versions of the ids of `items` that have a current record, in order, as
    /// one batch; returns the ids left out (no record: deleted, or never written here). The
    /// check and the writes are one step under the writer lock, so a `delete` is either
    /// before it (the id is left out) or after it (it deletes the new version): a version
    /// written by this call never brings back a record deleted before it. An id named twice
    /// is written twice if it has a record.
    /// The items of a write by id, each checked (no id 0, no record too large) before
    /// anything is written: a bad item fails the call with nothing written.
    fn checked_items<'a>(
        &self,
        items: impl IntoIterator<Item = (u32, &'a [u8])>,
    ) -> Result<Vec<(u32, &'a [u8])>> {
        let items: Vec<(u32, &[u8])> = items.into_iter().collect();
        for &(id, data) in &items {
            if id == 0 {
                return Err(OurDbError::ZeroId);
            }
            self.check_size(data)?;
        }
        Ok(items)
    }

    pub(super) fn replace_many<'a>(
        &self,
        items: impl IntoIterator<Item = (u32, &'a [u8])>,
    ) -> Result<Vec<u32>> {
        let items = self.checked_items(items)?;
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let ((missing, wrote), seq) = self.write(|w| {
            let mut ids = Vec::with_capacity(items.len());
            let mut data = Vec::with_capacity(items.len());
            let mut missing = Vec::new();
            let mut live = std::collections::HashSet::with_capacity(items.len());
            for &(id, d) in &items {
                let has_record = live.contains(&id)
                    || matches!(self.writer_entry(w, id)?, Some(l) if !l.is_none());
                if has_record {
                    live.insert(id);
                    ids.push(id);
                    data.push(d);
                } else {
                    missing.push(id);
                }
            }
            if !ids.is_empty() {
                self.write_batch(w, &ids, &data, Chain::Previous)?;
            }
            Ok((missing, !ids.is_empty()))
        })?;
        if wrote {
            self.after_write(seq)?;
        }
        Ok(missing)
    }

    /// Deletes `id`: clears its lookup entry and zeroes its current record (as herolib does;
    /// older versions stay until compaction). All of it as the one writer, in this order:
    ///
    /// 1. append a delete commit naming `id` ([`format::encode_delete`]; not in `none`, which
    ///    promises nothing after a crash) and make it durable
    ///    before the table is touched: clearing the entry rewrites six bytes that may span two
    ///    pages of the table, and a power loss may write back one page and not the other —
    ///    an entry holding half of the old location and half zeros, which reads as damage.
    ///    With the delete commit durable past the mark, the replay clears such an entry
    ///    again; the delete is then done, as a call that was cut off may be;
    /// 2. clear the entry and checkpoint: the table durable, the mark past the commit and
    ///    past the record;
    /// 3. zero the record: zeroed bytes read as a valid empty record, so neither a table that
    ///    still pointed at them after a crash nor a replay of the data file's tail may ever
    ///    meet them, which the checkpoint ensures. Nothing else is written meanwhile (the
    ///    writer lock is held throughout), so no compaction can have moved the record.
    ///
    /// Costs three fsyncs besides the `.inc` rewrite in `strict` (data: the commit, table,
    /// mark), four in `periodic` (the checkpoint fsyncs the data file again), and 18 bytes
    /// of data file.
    pub(super) fn delete(&self, id: u32) -> Result<()> {
        if id == 0 {
            return Err(OurDbError::ZeroId);
        }
        self.write(|w| {
            let loc = match self.writer_entry(w, id)? {
                Some(l) if !l.is_none() => l,
                _ => return Err(OurDbError::NotFound { id }),
            };
            // The next id must survive even if `id` was the highest one set: .inc first.
            lookup::write_inc(&self.dir.join("lookup/.inc"), self.state.next_id().max(1))?;
            let live = self.state.live_bytes();
            let size = self.record_size(loc);
            // `none` promises nothing after a crash and writes no commit records.
            if self.durability != Durability::None {
                let mut commit = Vec::with_capacity(format::COMMIT_FIXED);
                format::encode_delete(id, &mut commit);
                let (nr, start) = self.append_position(commit.len())?;
                let file = self.data_file(nr)?;
                let end = start + commit.len() as u64;
                if self.durability == Durability::Strict {
                    // Into the fill kept ahead, as a strict write's records go.
                    file.preallocate(end)?;
                }
                file.write_at(start, &commit)?;
                self.state.set_append_pos(end);
                if self.durability == Durability::Periodic {
                    // `strict` queues the entry, and the checkpoint fsyncs the data before
                    // it publishes queued entries; `periodic` writes the table at once.
                    file.sync()?;
                }
            }
            self.publish(w, id, Location::NONE)?;
            self.state
                .set_live_bytes(live.and_then(|l| Some(l.saturating_sub(size?))));
            self.checkpoint(w)?;
            let old = self.data_file(loc.file_nr)?;
            let total = match old.read_header(loc.position) {
                Ok(h) => h.total_len(),
                Err(_) => format::HEADER_SIZE,
            } as u64;
            let end = (loc.position as u64 + total).min(old.known_len());
            old.fill(loc.position as u64, end, 0)
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
        // Cheap (two loads, no lock, no clock): the time-based checkpoint is the background
        // thread's; a writer only wakes it early when the tail past the mark grew large.
        if self.past_mark_bytes() >= super::inner::CHECKPOINT_BYTES {
            self.sync.wake();
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
            self.state.settle_entry_seq();
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

    /// fsyncs the files a write touches. `strict`: the current data file only, as the one
    /// writer of this process, publishing the pending entries after it
    /// ([`Inner::sync_and_publish`]); the table is synced by checkpoints. Others: the current
    /// data file, then the lookup table. (Earlier data files are synced when the writer moves
    /// past them; the state file need not be: open reconciles it with the files.)
    ///
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

    /// The `strict` round, as the one writer: fsync the data file, then publish the entries
    /// of the records it made durable. That one `fdatasync` is the commit: each write call's
    /// records end with a commit record naming their ids, so a crash before the table
    /// reaches the disk is repaired by open replaying the tail past the mark. A table entry
    /// never points at a record that is not durable (whatever the kernel writes back when),
    /// and readers never see a write that is not durable yet. If the data fsync fails, the
    /// pending writes fail with it and are dropped unpublished.
    pub(super) fn sync_and_publish(&self, w: &mut Writer) -> Result<()> {
        let res = self.current_maps().and_then(|maps| {
            self.data_file(self.state.file_nr())?.sync()?;
            let published = !w.pending.is_empty();
            self.state.storing_entries(|| {
                w.pending.drain(..).try_for_each(|(id, loc)| {
                    // Capacity was ensured and the location checked when the record was
                    // written.
                    maps.lookup.set(id, loc)
                })
            })?;
            if published {
                self.dump.note_change();
            }
            Ok(())
        });
        w.pending.clear();
        if res.is_err() {
            // The dropped entries were counted as live when written.
            self.state.set_live_bytes(None);
        }
        res
    }

    pub(super) fn sync_table(maps: &Maps) -> Result<()> {
        super::fsync::data(maps.lookup.file(), maps.lookup.path())
    }

    /// Whether a checkpoint is due: the data past the mark has grown beyond
    /// [`CHECKPOINT_BYTES`](super::inner::CHECKPOINT_BYTES), or something was written and
    /// the last checkpoint is [`CHECKPOINT_INTERVAL`](super::inner::CHECKPOINT_INTERVAL) old.
    /// Bytes appended past the mark this handle last wrote or read (a new data file counts
    /// as past the threshold).
    fn past_mark_bytes(&self) -> u64 {
        let at = self.mark_at.load(Ordering::Relaxed);
        let (nr, pos) = ((at >> 48) as u16, at & ((1 << 48) - 1));
        if self.state.file_nr() != nr {
            return u64::MAX;
        }
        self.state.append_pos().saturating_sub(pos)
    }

    pub(super) fn checkpoint_due(&self) -> bool {
        let Some(ctl) = self.mark.try_lock() else {
            return false;
        };
        let Some(m) = ctl.last else { return false };
        let (nr, pos) = (self.state.file_nr(), self.state.append_pos());
        if (nr, pos) == (m.file_nr, m.position) && self.state.next_id().max(1) <= m.next_id {
            return false;
        }
        nr != m.file_nr
            || pos.saturating_sub(m.position) >= super::inner::CHECKPOINT_BYTES
            || ctl.when.elapsed() >= super::inner::CHECKPOINT_INTERVAL
    }

    /// Makes the lookup table durable up to the end of the data and moves the mark there, as
    /// the one writer: publish pending entries (their records fsynced first), fsync the
    /// current data file (so that a durable entry never points at a record that is not),
    /// fsync the table, then write the mark. After it, open replays nothing before the mark.
    /// Costs two or three fsyncs; run by the background thread at most every
    /// [`CHECKPOINT_INTERVAL`](super::inner::CHECKPOINT_INTERVAL) while the data grows, at
    /// close, and by `delete`.
    pub(super) fn checkpoint(&self, w: &mut Writer) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.take_file_lock(w)?;
        // The current data file, fsynced by the round that publishes pending entries: nothing
        // is appended meanwhile (this is the one writer), so it need not be fsynced again.
        let data_synced = !w.pending.is_empty();
        if data_synced {
            self.sync_and_publish(w)?;
        }
        let mut ctl = self.mark.lock();
        let (nr, pos) = (self.state.file_nr(), self.state.append_pos());
        let next = self.state.next_id().max(1);
        // Another process may have moved the mark: its slot and sequence number count.
        let on_disk = match mark::read(&self.dir)? {
            mark::Found::Valid(m) => Some(m),
            _ => None,
        };
        if let Some(m) = on_disk {
            if (m.file_nr, m.position) == (nr, pos) && m.next_id >= next {
                // Nothing was appended since that mark, but entries may have been cleared
                // since the table was last synced (a `delete` appends nothing, so no record
                // past the mark can redo it on open): the table is synced all the same
                // (cheap when nothing is dirty) before a delete is acknowledged.
                Self::sync_table(&*self.current_maps()?)?;
                self.note_mark(&mut ctl, m);
                return Ok(());
            }
        }
        let maps = self.current_maps()?;
        if !data_synced {
            self.data_file(nr)?.sync()?;
        }
        Self::sync_table(&maps)?;
        let seq = on_disk
            .map_or(0, |m| m.seq)
            .max(ctl.last.map_or(0, |m| m.seq))
            + 1;
        let m = Mark {
            seq,
            file_nr: nr,
            position: pos,
            next_id: next.max(on_disk.map_or(0, |m| m.next_id)),
        };
        mark::write(&self.dir, &m)?;
        self.note_mark(&mut ctl, m);
        Ok(())
    }

    /// Remembers `m` as the last checkpoint (and when), for [`Inner::checkpoint_due`].
    pub(super) fn note_mark(&self, ctl: &mut super::inner::MarkCtl, m: Mark) {
        ctl.last = Some(m);
        ctl.when = Instant::now();
        self.mark_at.store(
            ((m.file_nr as u64) << 48) | (m.position & ((1 << 48) - 1)),
            Ordering::Relaxed,
        );
    }

    /// Runs a checkpoint if one is due (the background thread), or now (`force`: close).
    pub(super) fn maybe_checkpoint(&self, force: bool) -> Result<()> {
        if self.read_only || !(force || self.checkpoint_due()) {
            return Ok(());
        }
        let mut w = self.writer.lock();
        let res = self.checkpoint(&mut w);
        if w.pending.is_empty() && w.last_write.elapsed() >= STICKY_IDLE {
            self.release_lock(&mut w);
        }
        res
    }

    /// Makes a raised next id durable without a checkpoint: the mark is rewritten with the
    /// same location and the new next id (one `fdatasync` of the small mark file).
    fn note_next_id(&self, _w: &mut Writer) -> Result<()> {
        let mut ctl = self.mark.lock();
        let on_disk = match mark::read(&self.dir)? {
            mark::Found::Valid(m) => m,
            _ => return Ok(()),
        };
        let next = self.state.next_id().max(1);
        if on_disk.next_id >= next {
            return Ok(());
        }
        let m = Mark {
            seq: on_disk.seq.max(ctl.last.map_or(0, |m| m.seq)) + 1,
            next_id: next,
            ..on_disk
        };
        mark::write(&self.dir, &m)?;
        self.note_mark(&mut ctl, m);
        Ok(())
    }

    /// Where the next record of `len` bytes goes: the append position of the current data
    /// file, or the start of a new file once the current one has reached the configured size
    /// (keysize 6). Leaving a file syncs it, so that only the current file ever needs it.
    fn append_position(&self, len: usize) -> Result<(u16, u64)> {
        let nr = self.state.file_nr();
        let pos = self.state.append_pos();
        if !(self.stored.keysize == 6 && pos >= self.stored.file_size) {
            let _ = len;
            return Ok((nr, pos));
        }
        if nr == u16::MAX {
            return Err(OurDbError::LocationOverflow {
                keysize: 6,
                location: Location {
                    file_nr: nr,
                    position: 0,
                },
            });
        }
        if self.durability != Durability::None {
            self.data_file(nr)?.sync()?;
        }
        let nr = nr + 1;
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
        let pos = format::DATA_FILE_PREAMBLE;
        self.state.set_file_nr(nr);
        self.state.set_append_pos(pos);
        Ok((nr, pos))
    }

    /// The location `pos` in file `nr`, if the keysize can address it.
    fn location_at(&self, nr: u16, pos: u64) -> Result<Location> {
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
        Ok(loc)
    }

    /// Appends a batch of records (`ids[i]` gets `data[i]`) to the current data file with one
    /// `pwrite` (more only past [`BATCH_FLUSH`] bytes or at a data file boundary), then
    /// publishes their entries. In `strict` mode the records are followed by a commit record
    /// naming their ids, in the same `pwrite`: the fsync round that makes them durable is
    /// their commit (a batch crossing into a new data file commits as one group per file).
    /// Caller holds the write lock. Order: record bytes → append position → entries → next id.
    pub(super) fn write_batch(
        &self,
        w: &mut Writer,
        ids: &[u32],
        data: &[&[u8]],
        chain: Chain,
    ) -> Result<()> {
        let strict = self.durability == Durability::Strict;
        // The live-bytes counter (see `State::live_bytes`): read before the append point
        // moves, restamped after the batch. A batch that fails half-way leaves the stamp
        // behind the append point, so the count reads as unknown and is rebuilt.
        let mut live = self.state.live_bytes();
        // Earlier versions written by this batch (a set_many may name an id twice), with the
        // size of each, which the next version of the same id takes off the live count.
        let mut written: HashMap<u32, (Location, u64)> = match chain {
            Chain::Previous if ids.len() > 1 => HashMap::with_capacity(ids.len()),
            _ => HashMap::default(),
        };
        let mut i = 0;
        while i < ids.len() {
            let (nr, start) = self.append_position(data[i].len())?;
            w.buf.clear();
            w.batch.clear();
            w.crcs.clear();
            let mut pos = start;
            while i < ids.len() {
                if self.stored.keysize == 6 && pos >= self.stored.file_size && !w.batch.is_empty() {
                    break; // the rest goes into the next data file, as a group of its own
                }
                if w.buf.len() >= BATCH_FLUSH && !w.batch.is_empty() && !strict {
                    break;
                }
                if strict && w.batch.len() >= format::COMMIT_MAX_RECORDS {
                    break;
                }
                let (id, bytes) = (ids[i], data[i]);
                let loc = self.location_at(nr, pos)?;
                let (prev, replaced) = match chain {
                    Chain::New => (Location::NONE, Some(0)),
                    Chain::Previous => match written.get(&id) {
                        Some(&(l, size)) => (l, Some(size)),
                        None => {
                            let l = self.writer_entry(w, id)?.unwrap_or(Location::NONE);
                            (l, self.record_size(l))
                        }
                    },
                };
                let (header_len, crc) = format::append_record(bytes, prev, &mut w.buf);
                let total = (header_len + bytes.len()) as u64;
                live = live.and_then(|l| Some(l.saturating_sub(replaced?) + total));
                w.batch.push((id, loc));
                w.crcs.push((crc, bytes.len() as u32));
                if chain == Chain::Previous && ids.len() > 1 {
                    written.insert(id, (loc, total));
                }
                pos += total;
                i += 1;
            }
            if strict {
                let group: Vec<u32> = w.batch.iter().map(|(id, _)| *id).collect();
                format::encode_commit(&group, &w.crcs, &mut w.buf);
            }
            let file = self.data_file(nr)?;
            let end = start + w.buf.len() as u64;
            // Small writes go into a fill kept ahead of them (so that their fdatasync need
            // not commit a new file size); a large batch writes past any fill and pays that
            // commit once, which costs less than writing its bytes twice (fill, then records).
            if strict && w.buf.len() as u64 <= format::TAIL_CHUNK / 4 {
                file.preallocate(end)?;
            }
            file.write_at(start, &w.buf)?;
            self.state.set_append_pos(end);
            let highest = w.batch.iter().map(|(id, _)| *id).max().unwrap_or(0);
            self.publish_batch(w, highest)?;
            if highest as u64 >= self.state.next_id().max(1) {
                self.state.set_next_id(highest as u64 + 1);
            }
        }
        self.state.set_live_bytes(live);
        if w.buf.capacity() > 2 * BATCH_FLUSH {
            w.buf = Vec::new();
        }
        Ok(())
    }

    /// Bytes (header + data) of the record at `loc`: 0 for no record, `None` when its header
    /// does not read (damage; the live count then becomes unknown rather than wrong).
    pub(super) fn record_size(&self, loc: Location) -> Option<u64> {
        if loc.is_none() {
            return Some(0);
        }
        let file = self.data_file(loc.file_nr).ok()?;
        file.read_header(loc.position)
            .ok()
            .map(|h| h.total_len() as u64)
    }

    /// [`Inner::publish`] for the whole of `w.batch`, whose highest id is `highest`: the
    /// table grows once.
    fn publish_batch(&self, w: &mut Writer, highest: u32) -> Result<()> {
        let lookup = self.lookup();
        if let Some(len) = lookup.ensure_capacity(highest, self.state.lookup_len())? {
            self.state.set_lookup_len(len);
        }
        if self.durability == Durability::Strict {
            let Writer { pending, batch, .. } = w;
            pending.extend_from_slice(batch);
        } else {
            self.state.storing_entries(|| {
                w.batch
                    .iter()
                    .try_for_each(|&(id, loc)| lookup.set(id, loc))
            })?;
            self.dump.note_change();
        }
        Ok(())
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
            self.state.storing_entries(|| lookup.set(id, loc))?;
            self.dump.note_change();
            Ok(())
        }
    }

    /// The entry of `id` as the writer sees it: its own unpublished writes first. Read
    /// directly, not through the sequence word: the caller holds the writer mutex and the
    /// file lock, so no one else is storing entries, and it is not inside a store itself.
    pub(super) fn writer_entry(&self, w: &Writer, id: u32) -> Result<Option<Location>> {
        match w.pending.iter().rev().find(|(i, _)| *i == id) {
            Some(&(_, loc)) => Ok(Some(loc)),
            None => self.current_maps()?.lookup.get(id, self.state.lookup_len()),
        }
    }
}
