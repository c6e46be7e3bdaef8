//! Verification of a database (`check`) and its summary (`stats`): every live record and
//! its history, then the cross-checks that catch a table that is not these files' table.

use super::error::{OurDbError, Result};
use super::format::{self, Location};
use super::inner::Inner;
use super::state::State;
use super::{dump, Problem, Space, Stats, OPEN_LOCK_FILE};
use std::fs::File;

/// What `check` saw of the live records: how many, the highest id, and per data file the
/// end of the last byte any live record or history version occupies.
#[derive(Default)]
struct Reach {
    live: u64,
    highest: u32,
    ends: Vec<u64>,
}

impl Inner {
    /// Verifies every live record and every version in its history, then cross-checks the
    /// database as a whole (see [`OurDb::check_consistency`]). Returns the problems found
    /// (empty when the database is intact). A problem with `id` 0 concerns the database as a
    /// whole rather than one record.
    pub(super) fn check(&self) -> Result<Vec<Problem>> {
        let mut problems = Vec::new();
        let mut buf = Vec::new();
        let max = self.stored.record_size_max;
        let mut reach = Reach::default();
        for id in self.ids() {
            let mut loc = match self.entry(id)? {
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
        let inner = self;
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
                    // Commit records (`strict`) lie between records: step over them.
                    if let Ok(Some(c)) = file.read_commit(pos) {
                        pos += c.total_len as u64;
                        continue;
                    }
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
        let inner = self;
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
    pub(super) fn stats(&self) -> Result<Stats> {
        let maps = self.current_maps()?;
        let mut data_bytes = 0;
        for f in &maps.files {
            data_bytes += f.refresh_len()?;
        }
        Ok(Stats {
            dir: self.dir.clone(),
            keysize: self.stored.keysize,
            incremental: self.stored.incremental,
            next_id: self.state.next_id().max(1),
            live_records: self.ids().count() as u64,
            data_files: maps.files.len(),
            data_bytes,
            lookup_bytes: maps.lookup.refresh_len()?,
            file_size: self.stored.file_size,
            generation: maps.generation,
            space: self.space()?,
        })
    }

    /// Bytes in the data files up to the append point (see [`Space`]).
    pub(super) fn data_bytes(&self) -> Result<u64> {
        let current = self.state.file_nr();
        let mut total = 0;
        for nr in 0..=current {
            total += if nr == current {
                self.state.append_pos()
            } else {
                self.data_file(nr)?.refresh_len()?
            };
        }
        Ok(total)
    }

    /// See [`super::OurDb::space`].
    pub(super) fn space(&self) -> Result<Space> {
        let live = match self.state.live_bytes() {
            Some(l) => l,
            None if self.read_only => {
                // A private copy of the state: nothing shared to keep it current in.
                let l = self.scan_live()?;
                self.state.set_live_bytes(Some(l));
                l
            }
            None => {
                // As the one writer: no write moves the table while it is summed.
                let (l, _) = self.write(|w| {
                    if let Some(l) = self.state.live_bytes() {
                        return Ok(l);
                    }
                    if !w.pending.is_empty() {
                        self.sync_and_publish(w)?;
                    }
                    let l = self.scan_live()?;
                    self.state.set_live_bytes(Some(l));
                    Ok(l)
                })?;
                l
            }
        };
        let data_bytes = self.data_bytes()?;
        Ok(Space {
            data_bytes,
            live_bytes: live,
            dead_bytes: data_bytes.saturating_sub(live),
        })
    }

    /// Sums the current version of every live id (one header read each). A record whose
    /// header does not read counts 0 (`check` reports it).
    pub(super) fn scan_live(&self) -> Result<u64> {
        let maps = self.current_maps()?;
        maps.lookup.note_len(self.state.lookup_len());
        let entries = maps.lookup.refresh_len()? / self.stored.keysize as u64;
        let published = self.state.lookup_len();
        let mut live = 0;
        for id in 1..entries.min(u32::MAX as u64 + 1) {
            if let Some(loc) = maps.lookup.get(id as u32, published)? {
                live += self.record_size(loc).unwrap_or(0);
            }
        }
        Ok(live)
    }
}
