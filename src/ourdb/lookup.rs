//! The lookup table: id → location, dense and memory-mapped (`lookup/data`), plus the
//! `lookup/.inc` next-id file and the import of herolib's sparse dump (`lookup_dump.db/`).
//!
//! The table grows with the ids: writing id `n` makes sure the file holds `(n + 1) × keysize`
//! bytes, growing it by a bounded chunk with `ftruncate` (sparse, so an empty database is a few
//! bytes and never herolib's 100 MB preallocation).

use super::error::{OurDbError, Result};
use super::format::Location;
use super::mmap::Map;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Growth step bounds for `lookup/data`: at least 64 KiB, at most 1 MiB, otherwise 1/8 of the
/// current size. Bounded so that the zero tail left after the last written entry is at most
/// 1 MiB, which keeps the open-time scan for the last entry cheap.
pub const GROW_MIN: u64 = 64 * 1024;
/// See [`GROW_MIN`].
pub const GROW_MAX: u64 = 1024 * 1024;

/// The dense lookup table of one database.
pub struct Lookup {
    path: PathBuf,
    file: File,
    map: Map,
    keysize: u8,
    /// Bytes of the file this process knows to exist (never more than the real length).
    known_len: AtomicU64,
}

impl Lookup {
    /// Opens (creating if needed) `lookup/data` with entries of `keysize` bytes.
    pub fn open(path: &Path, keysize: u8) -> Result<Lookup> {
        let file = super::inner::open_rw(path, true)?;
        Self::from_file(path, file, keysize, true)
    }

    /// Opens `path` for reading and writing if it exists (`None` if it does not).
    pub fn open_existing(path: &Path, keysize: u8) -> Result<Option<Lookup>> {
        match super::inner::open_rw(path, false) {
            Ok(file) => Self::from_file(path, file, keysize, true).map(Some),
            Err(OurDbError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Opens an existing `lookup/data` for reading only (a read-only handle; never written).
    pub fn open_read_only(path: &Path, keysize: u8) -> Result<Lookup> {
        let file = File::open(path).map_err(|e| OurDbError::io("open", path, e))?;
        Self::from_file(path, file, keysize, false)
    }

    /// A table outside the database directory, for a read-only handle on a database without
    /// `lookup/data`: built from the sparse dump at `dump_dir` if given, else empty. It lives
    /// in an unlinked temporary file, so nothing is created inside the database.
    pub fn private(path: &Path, keysize: u8, dump_dir: Option<&Path>) -> Result<Lookup> {
        let file = tempfile::tempfile().map_err(|e| OurDbError::io("create temporary", path, e))?;
        if let Some(dump) = dump_dir {
            fill_from_sparse(dump, &file, path, keysize)?;
        }
        Self::from_file(path, file, keysize, false)
    }

    fn from_file(path: &Path, file: File, keysize: u8, writable: bool) -> Result<Lookup> {
        let len = file
            .metadata()
            .map_err(|e| OurDbError::io("stat", path, e))?
            .len();
        if !len.is_multiple_of(keysize as u64) {
            return Err(OurDbError::KeysizeMismatch {
                path: path.to_path_buf(),
                detail: format!(
                    "file length {len} is not a multiple of keysize {keysize}: \
                     the table was written with another keysize, or is truncated"
                ),
            });
        }
        let reserve = keysize as u64 * (u32::MAX as u64 + 1);
        let map = if writable {
            Map::read_write(&file, reserve)
        } else {
            Map::read_only(&file, reserve)
        }
        .map_err(|e| OurDbError::io("mmap", path, e))?;
        Ok(Lookup {
            path: path.to_path_buf(),
            file,
            map,
            keysize,
            known_len: AtomicU64::new(len),
        })
    }

    /// Entry width in bytes.
    pub fn keysize(&self) -> u8 {
        self.keysize
    }

    /// Path of `lookup/data`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying file (for fsync).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Bytes known to exist in the file.
    pub fn known_len(&self) -> u64 {
        self.known_len.load(Ordering::Acquire)
    }

    /// Raises the known length to `len` (another writer grew the file and published it).
    pub fn note_len(&self, len: u64) {
        self.known_len.fetch_max(len, Ordering::AcqRel);
    }

    /// Asks the kernel for the file length and remembers it.
    pub fn refresh_len(&self) -> Result<u64> {
        let len = self
            .file
            .metadata()
            .map_err(|e| OurDbError::io("stat", &self.path, e))?
            .len();
        self.note_len(len);
        Ok(self.known_len())
    }

    /// Number of entries the file holds (ids `0..entries`).
    pub fn entries(&self) -> u64 {
        self.known_len() / self.keysize as u64
    }

    /// Reads the entry of `id`; `None` when the table does not reach that far (no record).
    /// `published_len` is the length other writers announced; used before asking the kernel.
    pub fn get(&self, id: u32, published_len: u64) -> Result<Option<Location>> {
        let ks = self.keysize as u64;
        let end = (id as u64 + 1) * ks;
        if end > self.known_len() {
            self.note_len(published_len.min(self.map.reserve()));
            if end > self.known_len() && end > self.refresh_len()? {
                return Ok(None);
            }
        }
        let mut buf = [0u8; 6];
        let entry = &mut buf[..ks as usize];
        self.map.load_bytes(id as u64 * ks, entry);
        Ok(Some(Location::decode_entry(entry)))
    }

    /// Makes the file long enough to hold the entry of `id`; returns the new length if it grew.
    /// Writers only (serialised by the caller).
    pub fn ensure_capacity(&self, id: u32, current: u64) -> Result<Option<u64>> {
        let need = (id as u64 + 1) * self.keysize as u64;
        self.note_len(current.min(self.map.reserve()));
        let current = self.known_len();
        if need <= current {
            return Ok(None);
        }
        let step = (current / 8).clamp(GROW_MIN, GROW_MAX);
        let ks = self.keysize as u64;
        let mut new_len = need.max(current + step);
        new_len = new_len.div_ceil(ks) * ks;
        new_len = new_len.min(self.map.reserve());
        #[cfg(test)]
        let _gate = super::powerloss::gate();
        self.file
            .set_len(new_len)
            .map_err(|e| OurDbError::io("grow", &self.path, e))?;
        // The new entries are written through the map: their pages must exist on disk, or a
        // full filesystem turns the first write into a SIGBUS instead of an error here.
        if let Err(e) = allocate(&self.file, current, new_len - current) {
            let _ = self.file.set_len(current);
            return Err(OurDbError::io("allocate", &self.path, e));
        }
        self.note_len(new_len);
        Ok(Some(new_len))
    }

    /// Copies the raw entries of ids `first..first + out.len() / keysize` into `out` (for the
    /// dump: a bulk copy, not per-byte atomics; an entry being rewritten meanwhile may come
    /// out torn, and the write that tore it marks the dump for rewriting). The range must lie
    /// within the known length.
    pub fn copy_entries(&self, first: u64, out: &mut [u8]) {
        let off = first * self.keysize as u64;
        debug_assert!(off + out.len() as u64 <= self.known_len());
        self.map.copy_out(off, out);
    }

    /// Writes the entry of `id`. The caller has ensured capacity and holds the writer lock.
    pub fn set(&self, id: u32, loc: Location) -> Result<()> {
        let mut buf = [0u8; 6];
        let n = loc
            .encode_entry(self.keysize, &mut buf)
            .ok_or(OurDbError::LocationOverflow {
                keysize: self.keysize,
                location: loc,
            })?;
        debug_assert!((id as u64 + 1) * self.keysize as u64 <= self.known_len());
        #[cfg(test)]
        let _gate = super::powerloss::gate();
        self.map
            .store_bytes(id as u64 * self.keysize as u64, &buf[..n]);
        Ok(())
    }

    /// Stops counting the table's mapped pages as resident (see [`Map::release_resident`]).
    pub fn release_resident(&self) -> Result<()> {
        self.map
            .release_resident(self.known_len())
            .map_err(|e| OurDbError::io("madvise", &self.path, e))
    }

    /// Highest id whose entry is set, looking at most at the last `window` bytes of the table.
    pub fn last_set_id(&self, window: u64) -> Option<u32> {
        let ks = self.keysize as u64;
        let entries = self.entries();
        let lowest = entries.saturating_sub(window / ks).max(1);
        let mut buf = [0u8; 6];
        let mut id = entries;
        while id > lowest {
            id -= 1;
            self.map.load_bytes(id * ks, &mut buf[..ks as usize]);
            if buf[..ks as usize].iter().any(|b| *b != 0) {
                return Some(id as u32);
            }
        }
        None
    }
}

/// Reads a `.inc` file: the next id as decimal text (surrounding whitespace allowed).
/// Returns `None` if the file does not exist.
pub fn read_inc(path: &Path) -> Result<Option<u64>> {
    // A short read is not taken as the end: "123" parses as well as "123456".
    let bytes = match super::inner::read_small(path, 32, |_| false) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(OurDbError::io("read", path, e)),
    };
    let text = String::from_utf8_lossy(&bytes);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        // herolib creates `.inc` before writing it; an empty file means "nothing handed out".
        return Ok(None);
    }
    match trimmed.parse::<u64>() {
        Ok(n) if n <= u32::MAX as u64 + 1 => Ok(Some(n)),
        _ => Err(OurDbError::IncNotNumber {
            path: path.to_path_buf(),
            content: trimmed.chars().take(64).collect(),
        }),
    }
}

/// Writes `.inc` atomically (temporary file, then rename), so a crash never leaves it torn.
/// The temporary name is unique per call: the periodic syncer and a delete may write at once.
pub fn write_inc(path: &Path, next_id: u64) -> Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp.{}.{n}", std::process::id()));
    let tmp = path.with_file_name(name);
    let mut f = File::create(&tmp).map_err(|e| OurDbError::io("create", &tmp, e))?;
    f.write_all(next_id.to_string().as_bytes())
        .map_err(|e| OurDbError::io("write", &tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| OurDbError::io("rename", path, e))
}

/// Converts herolib's sparse dump (`lookup_dump.db/data`: per id, u32 LE id then the
/// entry) into a dense table at `dense` (written to a temporary file, then renamed in).
/// Returns the dump's `.inc` value, if any.
pub fn import_sparse(dump_dir: &Path, dense: &Path, keysize: u8) -> Result<Option<u64>> {
    let tmp = dense.with_extension("import.tmp");
    let file = File::create(&tmp).map_err(|e| OurDbError::io("create", &tmp, e))?;
    fill_from_sparse(dump_dir, &file, &tmp, keysize)?;
    file.sync_all()
        .map_err(|e| OurDbError::io("fsync", &tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, dense).map_err(|e| OurDbError::io("rename", dense, e))?;
    read_inc(&dump_dir.join(".inc"))
}

/// Writes the entries of the sparse dump in `dump_dir` into the empty file `file` (named
/// `path` in errors), as a dense table.
fn fill_from_sparse(dump_dir: &Path, file: &File, path: &Path, keysize: u8) -> Result<()> {
    let data_path = dump_dir.join("data");
    let bytes = std::fs::read(&data_path).map_err(|e| OurDbError::io("read", &data_path, e))?;
    let ks = keysize as usize;
    let rec = 4 + ks;
    if bytes.len() % rec != 0 {
        return Err(OurDbError::KeysizeMismatch {
            path: data_path,
            detail: format!(
                "sparse dump length {} is not a multiple of {rec} (4-byte id + {ks}-byte entry)",
                bytes.len()
            ),
        });
    }
    let mut max_id = 0u32;
    for chunk in bytes.chunks_exact(rec) {
        let id = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        max_id = max_id.max(id);
    }
    // Written entry by entry into a sparse file: a dump naming a huge id must not make us
    // allocate the whole table in memory.
    file.set_len((max_id as u64 + 1) * ks as u64)
        .map_err(|e| OurDbError::io("grow", path, e))?;
    for (i, chunk) in bytes.chunks_exact(rec).enumerate() {
        let id = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        if id == 0 {
            return Err(OurDbError::corrupt(
                &data_path,
                (i * rec) as u64,
                "sparse dump holds an entry for id 0, which is never a record id",
            ));
        }
        file.write_all_at(&chunk[4..], id as u64 * ks as u64)
            .map_err(|e| OurDbError::io("write", path, e))?;
    }
    Ok(())
}

/// Allocates `len` bytes of `file` from `offset` (`posix_fallocate`).
fn allocate(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    if len == 0 {
        return Ok(());
    }
    let (Ok(off), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "lookup table too large to allocate",
        ));
    };
    // SAFETY: plain system call on an open descriptor this `File` owns; no memory involved.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), off, len) };
    match rc {
        0 => Ok(()),
        // Filesystems without fallocate: the old behaviour (sparse), not an error.
        libc::EOPNOTSUPP | libc::ENOSYS => Ok(()),
        e => Err(std::io::Error::from_raw_os_error(e)),
    }
}
