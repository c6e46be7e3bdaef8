//! The lock-free read path: lookup entry → record through the map → CRC → entry unchanged;
//! and what is built on it (history, the ids with a record).

use super::error::{OurDbError, Result};
use super::format::{self, Location};
use super::inner::Inner;
use std::sync::Arc;

/// How often a reader retries when the entry it read keeps changing under it.
const READ_RETRIES: usize = 16;

/// How often a reader tries again, waiting a little longer each time, when the entry read
/// the same before and after yet names no readable record. A writer stores an entry's six
/// bytes one at a time (`Map::store_bytes`): one preempted between them leaves the entry
/// torn for up to a time slice, and a reader that reads it twice meanwhile sees the same
/// torn value both times. The entry sequence word tells readers so (see [`STORING_RETRIES`]);
/// this is the fallback where it cannot: writers of herojobs versions before the word, and
/// read-only handles (their state is a private copy). Only while a writer may be storing
/// (see [`Inner::writer_may_be_storing`]); up to about 75 ms in all, then the damage is
/// reported.
const TORN_RETRIES: u32 = 24;

/// How often a reader tries again while the entry sequence word says a writer is storing
/// lookup entries (see `State::storing_entries`): [`STORING_YIELDS`] yields, then 1–4 ms
/// waits, about two seconds in all, then [`OurDbError::EntryBusy`]. Far longer than
/// [`TORN_RETRIES`]: here the reader knows the entry may be torn, and a wrong record is
/// worse than a wait.
const STORING_RETRIES: u32 = 580;

/// Retries that only yield: a writer stores a batch's entries in one odd span, microseconds
/// for one entry and up to a few hundred for a large batch, so a reader spins that long
/// before it sleeps (a sleep would make its read take a millisecond or more).
const STORING_YIELDS: u32 = 64;

/// A reader's waits for a writer storing entries (see [`Inner::wait_for_storing_writer`]).
#[derive(Default)]
struct StoringWait {
    tries: u32,
    /// Set at the first wait: a clock read per get would cost more than the entry check.
    since: Option<std::time::Instant>,
}

/// Torn-entry retries that only yield (the writer usually runs again at once).
const TORN_YIELDS: u32 = 4;

/// The wait before the `n`-th (from 1) retry for a writer: a yield for the first `yields`,
/// then 1–4 ms.
fn backoff(n: u32, yields: u32) {
    if n <= yields {
        std::thread::yield_now();
    } else {
        std::thread::sleep(std::time::Duration::from_millis(u64::from(
            (n - yields).min(4),
        )));
    }
}

impl Inner {
    /// The lookup entry of `id` (`None`: beyond the table), read whole.
    pub(super) fn entry(&self, id: u32) -> Result<Option<Location>> {
        let mut wait = StoringWait::default();
        loop {
            let maps = self.current_maps()?;
            let seq = self.state.entry_seq();
            let entry = maps.lookup.get(id, self.state.lookup_len())?;
            if self.state.entry_read_whole(seq)
                || !self.wait_for_storing_writer(id, seq, &mut wait)?
            {
                return Ok(entry);
            }
        }
    }

    /// Called when an entry of `id` was loaded while a writer stored entries (the sequence
    /// word read `seq` before the load and moved, or was odd): the entry may be torn — a
    /// location nobody wrote, possibly another record's start (whose CRC would pass), or
    /// none for an id that has a record. Waits a little and returns `true` (load it again),
    /// or returns `false` when the word is still the odd `seq` with no writer there: one died
    /// between the bytes and nobody will finish (until the next writer settles the word), so
    /// the entry is taken as it is, as before the word existed (open replays such a table
    /// when it is alone). After [`STORING_RETRIES`] waits: [`OurDbError::EntryBusy`].
    fn wait_for_storing_writer(&self, id: u32, seq: u64, wait: &mut StoringWait) -> Result<bool> {
        wait.tries += 1;
        #[cfg(test)]
        tests::STORING_WAITS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let since = *wait.since.get_or_insert_with(std::time::Instant::now);
        // Taken as it is only if the word did not move meanwhile: a word that moved on from
        // a stale odd value was moved by a live writer, whose store the load may have torn.
        // Asked only once the yields are over (it costs system calls when the writer is in
        // another process).
        if seq & 1 == 1
            && wait.tries > STORING_YIELDS
            && !self.writer_may_be_storing()
            && self.state.entry_seq() == seq
        {
            return Ok(false);
        }
        if wait.tries > STORING_RETRIES {
            return Err(OurDbError::EntryBusy {
                id,
                waited_ms: since.elapsed().as_millis() as u64,
            });
        }
        backoff(wait.tries, STORING_YIELDS);
        Ok(true)
    }

    /// The lock-free read path: entry → record → CRC → entry unchanged.
    pub(super) fn read(
        &self,
        id: u32,
        out: &mut Vec<u8>,
    ) -> Result<(Location, format::RecordHeader)> {
        if id == 0 {
            return Err(OurDbError::ZeroId);
        }
        let mut last_err = None;
        let (mut changed, mut torn) = (0, 0);
        let mut wait = StoringWait::default();
        while changed < READ_RETRIES {
            changed += 1;
            // A guard, not an `Arc` clone: no shared reference count is touched per read, so
            // readers on different cores do not contend.
            let maps = self.maps.load();
            if maps.generation != self.state.generation() {
                drop(maps);
                self.current_maps()?;
                continue;
            }
            let published = self.state.lookup_len();
            let seq = self.state.entry_seq();
            let entry = maps.lookup.get(id, published)?;
            // (Otherwise taken as it is: the checks below — record, CRC, entry unchanged —
            // still apply.)
            if !self.state.entry_read_whole(seq)
                && self.wait_for_storing_writer(id, seq, &mut wait)?
            {
                changed -= 1;
                continue;
            }
            let loc = match entry {
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
            if res.is_err() && torn < TORN_RETRIES && self.writer_may_be_storing() {
                // Possibly a torn entry (see TORN_RETRIES): give its writer time to finish.
                torn += 1;
                changed -= 1;
                drop(maps);
                backoff(torn, TORN_YIELDS);
                continue;
            }
            return res.map(|h| (loc, h));
        }
        Err(last_err.unwrap_or(OurDbError::NotFound { id }))
    }

    /// Whether some writer, in this process or another, may be between the byte stores of a
    /// lookup entry now. Asked only when a read failed (a few system calls at most): a writer
    /// of this process is inside a write; or, when this process does not hold the writer
    /// file lock, another process holds it.
    fn writer_may_be_storing(&self) -> bool {
        if self.writer.try_lock().is_none() {
            return true;
        }
        if self.lock_held.load(std::sync::atomic::Ordering::Acquire) {
            return false;
        }
        let Ok(file) = std::fs::File::open(self.dir.join(super::LOCK_FILE)) else {
            return false;
        };
        matches!(
            file.try_lock_shared(),
            Err(std::fs::TryLockError::WouldBlock)
        )
    }

    /// Up to `depth` versions of `id`, newest first.
    pub(super) fn history(&self, id: u32, depth: usize) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        if depth == 0 {
            return Ok(out);
        }
        let mut buf = Vec::new();
        // The chain is followed in the files of one generation: a compaction switching
        // meanwhile moves every record, and a previous location of the old files read in the
        // new ones would be another record (or none). So: read, then retry if it switched.
        let mut last_err = None;
        for _ in 0..READ_RETRIES {
            out.clear();
            let generation = self.state.generation();
            let (_, header) = self.read(id, &mut buf)?;
            let maps = self.current_maps()?;
            if maps.generation != generation {
                continue;
            }
            out.push(std::mem::take(&mut buf));
            let mut prev = header.prev;
            let mut res = Ok(());
            while out.len() < depth && !prev.is_none() {
                let file = match maps.files.get(prev.file_nr as usize) {
                    Some(f) => Arc::clone(f),
                    None => match self.data_file(prev.file_nr) {
                        Ok(f) => f,
                        Err(e) => {
                            res = Err(e);
                            break;
                        }
                    },
                };
                match file.read_record(prev.position, self.stored.record_size_max, &mut buf) {
                    Ok(h) => {
                        out.push(std::mem::take(&mut buf));
                        prev = h.prev;
                    }
                    Err(e) => {
                        res = Err(e);
                        break;
                    }
                }
            }
            if self.state.generation() != generation {
                last_err = res.err();
                continue;
            }
            return res.map(|()| out);
        }
        Err(last_err.unwrap_or(OurDbError::NotFound { id }))
    }

    /// The ids that currently have a record, ascending (a snapshot of the table as it is read).
    pub(super) fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        let maps = self.maps.load_full();
        let _ = maps.lookup.refresh_len();
        let entries = maps.lookup.entries().min(u32::MAX as u64 + 1);
        let published = self.state.lookup_len();
        (1..entries).filter_map(move |id| match maps.lookup.get(id as u32, published) {
            Ok(Some(l)) if !l.is_none() => Some(id as u32),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::ourdb::error::OurDbError;
    use crate::ourdb::format::Location;
    use crate::ourdb::{Config, OurDb};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    /// How often readers waited for a writer storing entries (all tests of this process).
    pub(super) static STORING_WAITS: AtomicU64 = AtomicU64::new(0);

    /// Waits (up to a generous deadline) until some reader has waited for a storing writer
    /// more than `before` times in all.
    fn until_a_reader_waits(before: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while STORING_WAITS.load(Ordering::Relaxed) <= before {
            assert!(Instant::now() < deadline, "no reader waited for the writer");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The entry a reader loads while a writer is between its bytes can name *another*
    /// record's start: that record's CRC is good, the entry reads the same twice while the
    /// writer is descheduled, and without the sequence word the reader returned the other
    /// record's data as this id's. With it, the reader waits for the writer.
    #[test]
    fn a_reader_never_takes_a_half_written_entry_that_names_another_record() {
        let dir = tempfile::tempdir().unwrap();
        let db = OurDb::open(dir.path(), Config::default()).unwrap();
        let mine = db.add(b"mine: the right record").unwrap();
        let other = db.add(b"other: a wrong record!").unwrap();
        let lookup = db.inner.maps.load().lookup.clone();
        let len = db.inner.state.lookup_len();
        let good = lookup.get(mine, len).unwrap().unwrap();
        let wrong = lookup.get(other, len).unwrap().unwrap();
        std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::channel();
            let (db, lookup) = (&db, &lookup);
            let writer = s.spawn(move || {
                // A writer descheduled between the entry's bytes, whose half-written value
                // happens to be the other record's location.
                let _w = db.inner.writer.lock();
                db.inner.state.storing_entries(|| {
                    let before = STORING_WAITS.load(Ordering::Relaxed);
                    lookup.set(mine, wrong).unwrap();
                    tx.send(()).unwrap();
                    until_a_reader_waits(before);
                    lookup.set(mine, good).unwrap();
                });
            });
            rx.recv().unwrap();
            assert_eq!(db.get(mine).unwrap(), b"mine: the right record");
            assert_eq!(db.location(mine).unwrap(), Some(good));
            writer.join().unwrap();
        });
    }

    /// A process that died between an entry's bytes leaves the word odd with nobody to
    /// finish: readers take the entry as it is (they do not hang), writers go on — `set` and
    /// `delete` read entries too, under the lock — and the next writer to take the file lock
    /// makes the word even. A panic inside a store makes it even on the way out.
    #[test]
    fn a_word_left_odd_by_a_dead_process_stops_neither_readers_nor_writers() {
        let dir = tempfile::tempdir().unwrap();
        let db = OurDb::open(dir.path(), Config::default()).unwrap();
        let id = db.add(b"the record").unwrap();
        let other = db.add(b"another record").unwrap();
        let state = &db.inner.state;
        let odd = |s: u64| s & 1 == 1;
        state.force_entry_seq(state.entry_seq() | 1);
        assert_eq!(db.get(id).unwrap(), b"the record");
        db.set(id, b"changed").unwrap();
        assert!(!odd(state.entry_seq()));
        state.force_entry_seq(state.entry_seq() | 1);
        db.delete(other).unwrap();
        assert_eq!(db.get(id).unwrap(), b"changed");
        assert!(matches!(db.get(other), Err(OurDbError::NotFound { .. })));

        // The next writer to take the file lock settles a word left odd.
        {
            let mut w = db.inner.writer.lock();
            db.inner.release_lock(&mut w);
        }
        state.force_entry_seq(state.entry_seq() | 1);
        {
            let mut w = db.inner.writer.lock();
            db.inner.take_file_lock(&mut w).unwrap();
        }
        assert!(!odd(state.entry_seq()));

        let died = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            state.storing_entries(|| panic!("a panic between the bytes"))
        }));
        assert!(died.is_err());
        assert!(!odd(state.entry_seq()));
        assert_eq!(db.get(id).unwrap(), b"changed");
    }

    /// A writer that stays between an entry's bytes (suspended, holding the write lock) makes
    /// readers give up with a clear error after their wait, not spin forever, and not read the
    /// half-written entry.
    #[test]
    fn a_writer_stuck_between_the_bytes_gives_readers_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = OurDb::open(dir.path(), Config::default()).unwrap();
        let id = db.add(b"the record").unwrap();
        let writer = db.inner.writer.lock();
        db.inner.state.storing_entries(|| match db.get(id) {
            Err(OurDbError::EntryBusy {
                id: busy,
                waited_ms,
            }) => {
                assert_eq!(busy, id);
                assert!(waited_ms >= 1_000, "gave up after {waited_ms} ms");
            }
            other => panic!("expected EntryBusy, got {other:?}"),
        });
        drop(writer);
        assert_eq!(db.get(id).unwrap(), b"the record");
    }

    /// A writer preempted between the byte stores of an entry leaves it torn: readers that
    /// read it twice see the same unreadable location. They wait for the writer instead of
    /// reporting damage (the compaction test under load met this: "record header runs past
    /// the end of the file" for an entry one byte away from its new value).
    #[test]
    fn a_reader_waits_out_a_torn_entry_instead_of_reporting_damage() {
        let dir = tempfile::tempdir().unwrap();
        let db = OurDb::open(dir.path(), Config::default()).unwrap();
        let id = db.add(b"the record").unwrap();
        let lookup = db.inner.maps.load().lookup.clone();
        let good = lookup
            .get(id, db.inner.state.lookup_len())
            .unwrap()
            .unwrap();
        // Torn: the new value's high bytes over the old one's low byte, past the data's end.
        let torn = Location {
            file_nr: good.file_nr,
            position: good.position + 0x1_0000,
        };
        std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::channel();
            let (db, lookup) = (&db, &lookup);
            let writer = s.spawn(move || {
                // As a writer preempted inside its store: the write lock held, the entry torn.
                let _w = db.inner.writer.lock();
                lookup.set(id, torn).unwrap();
                tx.send(()).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(15));
                lookup.set(id, good).unwrap();
            });
            rx.recv().unwrap();
            assert_eq!(db.get(id).unwrap(), b"the record");
            writer.join().unwrap();
        });
        // With no writer inside a write, the same location is damage, reported at once.
        lookup.set(id, torn).unwrap();
        assert!(db.get(id).is_err());
    }
}
