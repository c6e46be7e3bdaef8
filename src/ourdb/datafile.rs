//! One data file (`N.db`): appending records with `pwrite`, reading them through the map.

use super::error::{OurDbError, Result};
use super::format::{self, RecordHeader, DATA_FILE_PREAMBLE, HEADER_SIZE};
use super::mmap::Map;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Address space reserved for each data file's map: records start below 4 GiB (u32
/// positions) and one record may run past that by at most the largest record.
pub const DATA_RESERVE: u64 =
    format::MAX_POSITION + (format::MAX_RECORD_SIZE + HEADER_SIZE + format::EXT_SIZE) as u64 + 1;

/// An open data file.
pub struct DataFile {
    path: PathBuf,
    file: File,
    map: Map,
    known_len: AtomicU64,
}

impl DataFile {
    /// Opens data file `nr` in `dir`; with `create`, creates it holding the one-byte preamble.
    pub fn open(dir: &Path, nr: u16, create: bool) -> Result<DataFile> {
        let path = dir.join(format::data_file_name(nr));
        let file = super::inner::open_rw(&path, create)?;
        let mut len = file
            .metadata()
            .map_err(|e| OurDbError::io("stat", &path, e))?
            .len();
        if len == 0 {
            // A new file, or one whose creation was cut short before its preamble was written.
            file.write_all_at(&[0u8], 0)
                .map_err(|e| OurDbError::io("write", &path, e))?;
            len = DATA_FILE_PREAMBLE;
        } else {
            let mut first = [0u8; 1];
            file.read_exact_at(&mut first, 0)
                .map_err(|e| OurDbError::io("read", &path, e))?;
            if first[0] != 0 {
                return Err(OurDbError::corrupt(
                    &path,
                    0,
                    format!(
                        "a data file starts with one zero byte; found {:#04x}: not an OurDB data file",
                        first[0]
                    ),
                ));
            }
        }
        let map =
            Map::read_only(&file, DATA_RESERVE).map_err(|e| OurDbError::io("mmap", &path, e))?;
        Ok(DataFile {
            path,
            file,
            map,
            known_len: AtomicU64::new(len),
        })
    }

    /// Opens existing data file `nr` for reading only (a read-only handle): writes nothing,
    /// not even the preamble of an empty file (whose records are then all out of range).
    pub fn open_read_only(dir: &Path, nr: u16) -> Result<DataFile> {
        let path = dir.join(format::data_file_name(nr));
        let file = File::open(&path).map_err(|e| OurDbError::io("open", &path, e))?;
        let len = file
            .metadata()
            .map_err(|e| OurDbError::io("stat", &path, e))?
            .len();
        if len > 0 {
            let mut first = [0u8; 1];
            file.read_exact_at(&mut first, 0)
                .map_err(|e| OurDbError::io("read", &path, e))?;
            if first[0] != 0 {
                return Err(OurDbError::corrupt(
                    &path,
                    0,
                    format!(
                        "a data file starts with one zero byte; found {:#04x}: not an OurDB data file",
                        first[0]
                    ),
                ));
            }
        }
        let map =
            Map::read_only(&file, DATA_RESERVE).map_err(|e| OurDbError::io("mmap", &path, e))?;
        Ok(DataFile {
            path,
            file,
            map,
            known_len: AtomicU64::new(len),
        })
    }

    /// Length this process knows the file to have.
    pub fn known_len(&self) -> u64 {
        self.known_len.load(Ordering::Acquire)
    }

    /// Asks the kernel for the current length.
    pub fn refresh_len(&self) -> Result<u64> {
        let len = self
            .file
            .metadata()
            .map_err(|e| OurDbError::io("stat", &self.path, e))?
            .len()
            .min(self.map.reserve());
        self.known_len.fetch_max(len, Ordering::AcqRel);
        Ok(self.known_len())
    }

    /// Makes sure `[offset, offset + n)` lies inside the file, asking the kernel if our
    /// knowledge is stale (another process appended).
    fn ensure_readable(&self, offset: u64, n: u64, what: &str) -> Result<()> {
        let end = offset.saturating_add(n);
        if end <= self.known_len() || end <= self.refresh_len()? {
            return Ok(());
        }
        Err(OurDbError::corrupt(
            &self.path,
            offset,
            format!(
                "{what} of {n} bytes runs past the end of the file ({} bytes)",
                self.known_len()
            ),
        ))
    }

    /// Reads and parses the header at `pos`.
    pub fn read_header(&self, pos: u32) -> Result<RecordHeader> {
        let pos = pos as u64;
        if pos < DATA_FILE_PREAMBLE {
            return Err(OurDbError::corrupt(
                &self.path,
                pos,
                "position 0 is the preamble, never a record",
            ));
        }
        self.ensure_readable(pos, HEADER_SIZE as u64, "record header")?;
        let avail = (self.known_len() - pos).min((HEADER_SIZE + format::EXT_SIZE) as u64);
        let mut buf = [0u8; HEADER_SIZE + format::EXT_SIZE];
        self.map.copy_out(pos, &mut buf[..avail as usize]);
        format::parse_header(&buf[..avail as usize])
            .map_err(|e| OurDbError::corrupt(&self.path, pos, e.to_string()))
    }

    /// Reads the commit record at `pos` (see [`format::COMMIT_MARKER`]); `Ok(None)` when the
    /// bytes there are not one (a record, or fewer than six bytes left). An error: a commit
    /// record cut short by the end of the file, or with an impossible count.
    pub fn read_commit(&self, pos: u64) -> Result<Option<format::CommitHeader>> {
        let avail = self.known_len().saturating_sub(pos);
        if avail < 6 {
            return Ok(None);
        }
        let mut head = [0u8; format::COMMIT_FIXED];
        let n = (avail as usize).min(format::COMMIT_FIXED);
        self.map.copy_out(pos, &mut head[..n]);
        if !format::is_commit(&head[..n]) {
            return Ok(None);
        }
        let parsed = match format::parse_commit(&head[..n]) {
            Err(format::HeaderError::Truncated { needed, .. }) if needed as u64 <= avail => {
                let mut whole = vec![0u8; needed];
                self.map.copy_out(pos, &mut whole);
                format::parse_commit(&whole)
            }
            other => other,
        };
        parsed.map_err(|e| OurDbError::corrupt(&self.path, pos, e.to_string()))
    }

    /// Reads the record at `pos` into `out` (replacing its contents), verifies its CRC and
    /// returns its header. `max` bounds the data length accepted.
    pub fn read_record(&self, pos: u32, max: usize, out: &mut Vec<u8>) -> Result<RecordHeader> {
        let header = self.read_header(pos)?;
        let pos = pos as u64;
        if header.data_len > max {
            return Err(OurDbError::corrupt(
                &self.path,
                pos,
                format!(
                    "record claims {} bytes, more than the maximum record size {max}",
                    header.data_len
                ),
            ));
        }
        self.ensure_readable(pos, header.total_len() as u64, "record")?;
        self.map
            .copy_into_vec(pos + header.header_len as u64, header.data_len, out);
        let computed = super::checksum::hash(out);
        if computed != header.crc {
            return Err(OurDbError::Crc {
                path: self.path.clone(),
                offset: pos,
                stored: header.crc,
                computed,
            });
        }
        Ok(header)
    }

    /// Writes `bytes` at `offset` (a writer holding the write lock), then publishes the new
    /// length to this process's readers.
    pub fn write_at(&self, offset: u64, bytes: &[u8]) -> Result<()> {
        #[cfg(test)]
        let _gate = super::powerloss::gate();
        self.file
            .write_all_at(bytes, offset)
            .map_err(|e| OurDbError::io("write", &self.path, e))?;
        self.known_len
            .fetch_max(offset + bytes.len() as u64, Ordering::AcqRel);
        Ok(())
    }

    /// `strict` writers: makes the file at least `end` bytes long, writing fill bytes from
    /// its current end up to [`format::TAIL_CHUNK`] past `end`. An `fdatasync` after an append
    /// that grows the file must also commit the new size through the filesystem journal
    /// (≈ 125 µs on the development machine); after a write into bytes that already exist it
    /// only flushes them (≈ 88 µs). Growing in written chunks saves the commit on all but one
    /// append per chunk. The fill is [`format::TAIL_FILL`], not zero: twelve zero bytes would
    /// read as a valid empty record, fill bytes never do.
    pub fn preallocate(&self, end: u64) -> Result<()> {
        if end <= self.known_len() || end <= self.refresh_len()? {
            return Ok(());
        }
        let to = end
            .saturating_add(format::TAIL_CHUNK)
            .min(self.map.reserve());
        self.fill(self.known_len(), to, format::TAIL_FILL)
    }

    /// Writes `byte` over `[from, to)`, in pieces of 64 KiB.
    pub fn fill(&self, from: u64, to: u64, byte: u8) -> Result<()> {
        let piece = [byte; 64 * 1024];
        let mut at = from;
        while at < to {
            let n = (to - at).min(piece.len() as u64) as usize;
            self.write_at(at, &piece[..n])?;
            at += n as u64;
        }
        Ok(())
    }

    /// Cuts the file back to `len` (the end of its last record) if it is longer: the fill a
    /// `strict` writer wrote ahead. Only for the last handle on the database: a reader that
    /// maps the file and still believes it longer would fault on a corrupt entry pointing
    /// into the cut bytes.
    pub fn trim(&self, len: u64) -> Result<()> {
        let actual = self
            .file
            .metadata()
            .map_err(|e| OurDbError::io("stat", &self.path, e))?
            .len();
        if len >= DATA_FILE_PREAMBLE && actual > len {
            self.file
                .set_len(len)
                .map_err(|e| OurDbError::io("truncate", &self.path, e))?;
        }
        Ok(())
    }

    /// Stops counting this file's mapped pages as resident (see [`Map::release_resident`]).
    pub fn release_resident(&self) -> Result<()> {
        self.map
            .release_resident(self.known_len())
            .map_err(|e| OurDbError::io("madvise", &self.path, e))
    }

    /// Flushes this file's data to stable storage.
    pub fn sync(&self) -> Result<()> {
        super::fsync::data(&self.file, &self.path)
    }
}
