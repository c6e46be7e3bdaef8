//! `lookup/mark`: the lookup table's last durable point. Everything appended before the
//! mark's location has its lookup entry durable in `lookup/data`; open replays only the commit
//! records after it (see [`super::format::COMMIT_MARKER`]), so a `strict` commit needs the data
//! file's `fdatasync` alone and the table is synced lazily, by checkpoints.
//!
//! Two 32-byte slots, written alternately (`pwrite` + `fdatasync`), each with a sequence number
//! and a CRC: a write torn by a power loss leaves the other slot, and open takes the valid
//! slot with the higher sequence number.

use super::error::{OurDbError, Result};
use super::format::MARK_FILE;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes of one slot.
pub const SLOT: usize = 32;
/// Magic at the start of a valid slot.
pub const MAGIC: [u8; 4] = *b"HJM1";

/// One checkpoint: where the table's durable part ends, and the next id then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// Sequence number of the slot write (the higher valid one wins).
    pub seq: u64,
    /// Every record before this location (append order) has its entry durable in the table.
    pub file_nr: u16,
    /// Position in `file_nr` (may exceed u32 at the very end of a file).
    pub position: u64,
    /// The next id `add` hands out, as of the checkpoint (or later: `reserve_ids` raises it).
    pub next_id: u64,
}

impl Mark {
    fn encode(&self) -> [u8; SLOT] {
        let mut b = [0u8; SLOT];
        b[0..4].copy_from_slice(&MAGIC);
        b[8..16].copy_from_slice(&self.seq.to_le_bytes());
        b[16..24].copy_from_slice(&self.next_id.to_le_bytes());
        let loc = ((self.file_nr as u64) << 48) | (self.position & ((1 << 48) - 1));
        b[24..32].copy_from_slice(&loc.to_le_bytes());
        let crc = super::checksum::hash(&b[8..]);
        b[4..8].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Mark> {
        if b.len() < SLOT || b[0..4] != MAGIC {
            return None;
        }
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(w)
        };
        let crc = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        if super::checksum::hash(&b[8..SLOT]) != crc {
            return None;
        }
        let loc = word(24);
        Some(Mark {
            seq: word(8),
            next_id: word(16),
            file_nr: (loc >> 48) as u16,
            position: loc & ((1 << 48) - 1),
        })
    }
}

/// Path of the mark file of the database in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(MARK_FILE)
}

/// What `dir`'s mark file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// No mark file: a database written before marks existed (its table is authoritative).
    Absent,
    /// A mark file with no valid slot (damage): treated like `Absent`, with a warning.
    Invalid,
    /// The newest valid checkpoint.
    Valid(Mark),
}

/// Reads the mark file of `dir`.
pub fn read(dir: &Path) -> Result<Found> {
    let p = path(dir);
    let bytes = match super::inner::read_prefix(&p, 2 * SLOT) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Absent),
        Err(e) => return Err(OurDbError::io("read", &p, e)),
    };
    let a = bytes.get(..SLOT).and_then(Mark::decode);
    let b = bytes.get(SLOT..2 * SLOT).and_then(Mark::decode);
    Ok(match (a, b) {
        (Some(a), Some(b)) => Found::Valid(if b.seq > a.seq { b } else { a }),
        (Some(m), None) | (None, Some(m)) => Found::Valid(m),
        (None, None) => Found::Invalid,
    })
}

/// Writes `mark` durably into the slot its sequence number selects (`pwrite` + `fdatasync`;
/// the file keeps its length, so no metadata needs committing). Creates the file (both slots,
/// then fsynced, and its directory entry fsynced) when `dir` has none.
pub fn write(dir: &Path, mark: &Mark) -> Result<()> {
    let p = path(dir);
    let file = match OpenOptions::new().write(true).open(&p) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return create(dir, mark),
        Err(e) => return Err(OurDbError::io("open", &p, e)),
    };
    let at = (mark.seq % 2) * SLOT as u64;
    #[cfg(test)]
    let _gate = super::powerloss::gate();
    file.write_all_at(&mark.encode(), at)
        .map_err(|e| OurDbError::io("write", &p, e))?;
    #[cfg(test)]
    drop(_gate);
    super::fsync::data(&file, &p)
}

/// Creates the mark file holding `mark` in both slots, through a temporary file renamed in,
/// so that it never exists without a valid slot.
pub fn create(dir: &Path, mark: &Mark) -> Result<()> {
    let p = path(dir);
    let tmp = p.with_extension(format!("tmp.{}", std::process::id()));
    let res = (|| {
        let file = File::create(&tmp).map_err(|e| OurDbError::io("create", &tmp, e))?;
        let slot = mark.encode();
        let mut both = [0u8; 2 * SLOT];
        both[..SLOT].copy_from_slice(&slot);
        both[SLOT..].copy_from_slice(&slot);
        file.write_all_at(&both, 0)
            .map_err(|e| OurDbError::io("write", &tmp, e))?;
        super::fsync::all(&file, &tmp)?;
        std::fs::rename(&tmp, &p).map_err(|e| OurDbError::io("rename", &p, e))?;
        let parent = p.parent().unwrap_or(dir);
        let d = File::open(parent).map_err(|e| OurDbError::io("open", parent, e))?;
        super::fsync::all(&d, parent)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_valid_slot_wins_and_a_torn_slot_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("lookup")).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Found::Absent);
        let m = |seq, position| Mark {
            seq,
            file_nr: 1,
            position,
            next_id: 10 + seq,
        };
        write(dir.path(), &m(1, 100)).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Found::Valid(m(1, 100)));
        write(dir.path(), &m(2, 200)).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Found::Valid(m(2, 200)));
        // Tear slot 0 (seq 2): slot 1 (seq 1) is what a power loss left.
        let f = OpenOptions::new()
            .write(true)
            .open(path(dir.path()))
            .unwrap();
        f.write_all_at(&[0xAB; 5], 20).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Found::Valid(m(1, 100)));
        f.write_all_at(&[0xAB; 5], SLOT as u64 + 20).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Found::Invalid);
    }
}
