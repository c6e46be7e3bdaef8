//! The lock-free read path: lookup entry → record through the map → CRC → entry unchanged;
//! and what is built on it (history, the ids with a record).

use super::error::{OurDbError, Result};
use super::format::{self, Location};
use super::inner::Inner;
use std::sync::Arc;

/// How often a reader retries when the entry it read keeps changing under it.
const READ_RETRIES: usize = 16;

impl Inner {
    /// The lookup entry of `id` (`None`: beyond the table).
    pub(super) fn entry(&self, id: u32) -> Result<Option<Location>> {
        self.current_maps()?.lookup.get(id, self.state.lookup_len())
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
