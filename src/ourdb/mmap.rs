//! The memory maps OurDB reads through, and the one place its `unsafe` lives.
//!
//! # The memory-map contract
//!
//! Each file is mapped `MAP_SHARED` once, with a *reservation* larger than the file will ever
//! be (a lookup table can never exceed `keysize × 2^32` bytes; a data file never extends past
//! `u32::MAX` plus one record). Growing a file therefore never moves its mapping, and a reader
//! holding a pointer into it stays valid while the [`Map`] lives. Touching a page that lies
//! beyond the end of the file raises `SIGBUS`, so every access checks the offset against a
//! *known length* first: a length this process has itself written up to, or one the kernel
//! reported (`fstat`) or another writer published in the shared state file after growing the
//! file. Files are only ever grown, never shrunk in place; compaction writes new files and
//! renames them over the old ones, which leaves the old inodes (and our maps of them) intact.
//! What the contract cannot cover is another program truncating a file behind our back; like
//! LMDB or SQLite in mmap mode, OurDB then dies with SIGBUS rather than return wrong data.
//!
//! Bytes inside a map may be changed by another thread or process while we read them (a
//! lookup entry being rewritten, a deleted record being zeroed). We never form a `&[u8]` over
//! shared bytes: lookup entries are read and written with per-byte atomics, and records are
//! copied out with a raw copy and then checked (CRC plus a re-read of the lookup entry).

use memmap2::{MmapOptions, MmapRaw, UncheckedAdvice};
use std::fs::File;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// A shared mapping of a file, reserved to a fixed length.
///
/// Every accessor checks its range against the reservation, always (not only in debug
/// builds): one compare on the read path, measured as noise against the two cache misses a
/// random get costs. So no call, whatever its arguments, touches memory outside the mapping;
/// the callers' checks against the file's known length (which keep accesses off pages past
/// the end of the file, where the kernel raises `SIGBUS`) come on top.
pub(super) struct Map {
    raw: MmapRaw,
    /// Mapped `PROT_WRITE` ([`Map::read_write`]).
    writable: bool,
}

impl Map {
    /// Maps `file` for reading only, reserving `reserve` bytes of address space.
    pub fn read_only(file: &File, reserve: u64) -> std::io::Result<Map> {
        let raw = MmapOptions::new()
            .len(reserve as usize)
            .map_raw_read_only(file)?;
        Ok(Map {
            raw,
            writable: false,
        })
    }

    /// Maps `file` for reading and writing, reserving `reserve` bytes of address space.
    pub fn read_write(file: &File, reserve: u64) -> std::io::Result<Map> {
        let raw = MmapOptions::new().len(reserve as usize).map_raw(file)?;
        Ok(Map {
            raw,
            writable: true,
        })
    }

    /// Reserved length.
    pub fn reserve(&self) -> u64 {
        self.raw.len() as u64
    }

    /// Panics unless `[offset, offset + len)` lies inside the reservation. A failure is a bug
    /// in this crate (callers check lengths read from files against the file's known length,
    /// which never exceeds the reservation), never a property of the data: it stops the
    /// process instead of reading or writing outside the mapping.
    #[inline]
    fn check_range(&self, offset: u64, len: usize) -> usize {
        let end = offset.checked_add(len as u64);
        assert!(
            end.is_some_and(|e| e <= self.reserve()),
            "ourdb: map access {offset}+{len} outside the {}-byte reservation",
            self.reserve()
        );
        offset as usize
    }

    /// Copies `out.len()` bytes starting at `offset` into `out`.
    ///
    /// The caller keeps `offset + out.len()` within the file's known length (else the
    /// access may fault with `SIGBUS`); the reservation is checked here.
    pub fn copy_out(&self, offset: u64, out: &mut [u8]) {
        let at = self.check_range(offset, out.len());
        // SAFETY: the range lies inside the reservation (checked just above), so the pointer
        // arithmetic stays inside the mapping; `out` is a distinct, exclusively borrowed
        // buffer. The bytes may change under us (another writer): they are copied, never
        // referenced, and the caller verifies them (CRC, entry re-read).
        unsafe {
            std::ptr::copy_nonoverlapping(self.raw.as_ptr().add(at), out.as_mut_ptr(), out.len());
        }
    }

    /// Replaces `out`'s contents with the `len` bytes at `offset`, copied straight into its
    /// spare capacity (no zero-fill first: this is the read path's one copy).
    ///
    /// The caller keeps `offset + len` within the file's known length; the reservation is
    /// checked here.
    pub fn copy_into_vec(&self, offset: u64, len: usize, out: &mut Vec<u8>) {
        let at = self.check_range(offset, len);
        out.clear();
        out.reserve(len);
        // SAFETY: the source range is inside the mapping (checked above); the destination
        // is `len` bytes of `out`'s spare capacity, reserved just above and distinct from the
        // map; after the copy those bytes are initialised, so `set_len(len)` is sound.
        unsafe {
            std::ptr::copy_nonoverlapping(self.raw.as_ptr().add(at), out.as_mut_ptr(), len);
            out.set_len(len);
        }
    }

    /// Reads bytes with atomic loads (for lookup entries that writers may change concurrently).
    pub fn load_bytes(&self, offset: u64, out: &mut [u8]) {
        let at = self.check_range(offset, out.len());
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: inside the mapping (checked above); AtomicU8 has the alignment and size
            // of u8, and all concurrent writers of these bytes also use atomic byte stores.
            let a = unsafe { AtomicU8::from_ptr(self.raw.as_mut_ptr().add(at + i)) };
            *b = a.load(Ordering::Relaxed);
        }
        std::sync::atomic::fence(Ordering::Acquire);
    }

    /// Writes bytes with atomic stores, after a release fence so that a reader that sees the
    /// new bytes also sees everything written before (the record the entry points to).
    ///
    /// Panics on a map created by [`Map::read_only`]: a store there would fault.
    pub fn store_bytes(&self, offset: u64, bytes: &[u8]) {
        let at = self.check_range(offset, bytes.len());
        assert!(self.writable, "ourdb: store into a read-only map");
        std::sync::atomic::fence(Ordering::Release);
        for (i, b) in bytes.iter().enumerate() {
            // SAFETY: inside the mapping (checked above), which is writable (checked above);
            // atomic byte stores as for `load_bytes`.
            let a = unsafe { AtomicU8::from_ptr(self.raw.as_mut_ptr().add(at + i)) };
            a.store(*b, Ordering::Relaxed);
        }
    }

    /// Drops this process's page-table entries for the first `len` bytes, so pages read
    /// long ago stop counting as our resident memory. The data is not touched: these are
    /// shared file mappings, so the pages stay in the page cache (dirty ones are written back
    /// as usual) and the next access maps them again.
    pub fn release_resident(&self, len: u64) -> std::io::Result<()> {
        let len = len.min(self.reserve()) as usize;
        if len == 0 {
            return Ok(());
        }
        // SAFETY: MADV_DONTNEED on a MAP_SHARED file mapping discards no data (it would on a
        // private mapping, which we never create); readers that touch the range afterwards
        // fault the same bytes back in from the page cache. The range lies inside the map.
        unsafe {
            self.raw
                .unchecked_advise_range(UncheckedAdvice::DontNeed, 0, len)
        }
    }

    /// An `AtomicU64` at an 8-aligned `offset` (used for the shared state file).
    pub fn atomic_u64(&self, offset: u64) -> &AtomicU64 {
        assert!(offset.is_multiple_of(8) && self.writable);
        self.check_range(offset, 8);
        // SAFETY: the map base is page-aligned, so an 8-aligned offset gives an aligned
        // pointer; the bytes are inside the mapping (checked above), which is writable, of a
        // file at least that long (the state file is grown to its length before mapping), and
        // every access to them goes through AtomicU64, in this process and in others.
        unsafe { AtomicU64::from_ptr(self.raw.as_mut_ptr().add(offset as usize) as *mut u64) }
    }
}
