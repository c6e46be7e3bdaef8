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
pub struct Map {
    raw: MmapRaw,
}

impl Map {
    /// Maps `file` for reading only, reserving `reserve` bytes of address space.
    pub fn read_only(file: &File, reserve: u64) -> std::io::Result<Map> {
        let raw = MmapOptions::new()
            .len(reserve as usize)
            .map_raw_read_only(file)?;
        Ok(Map { raw })
    }

    /// Maps `file` for reading and writing, reserving `reserve` bytes of address space.
    pub fn read_write(file: &File, reserve: u64) -> std::io::Result<Map> {
        let raw = MmapOptions::new().len(reserve as usize).map_raw(file)?;
        Ok(Map { raw })
    }

    /// Reserved length.
    pub fn reserve(&self) -> u64 {
        self.raw.len() as u64
    }

    /// Copies `out.len()` bytes starting at `offset` into `out`.
    ///
    /// The caller guarantees `offset + out.len()` is within the file's known length.
    pub fn copy_out(&self, offset: u64, out: &mut [u8]) {
        debug_assert!(offset + out.len() as u64 <= self.reserve());
        // SAFETY: the range lies inside the reservation (checked by the caller against the
        // known file length, which never exceeds the reservation) and inside the file, so every
        // page is backed; `out` is a distinct, exclusively borrowed buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.raw.as_ptr().add(offset as usize),
                out.as_mut_ptr(),
                out.len(),
            );
        }
    }

    /// Replaces `out`'s contents with the `len` bytes at `offset`, copied straight into its
    /// spare capacity (no zero-fill first: this is the read path's one copy).
    ///
    /// The caller guarantees `offset + len` is within the file's known length.
    pub fn copy_into_vec(&self, offset: u64, len: usize, out: &mut Vec<u8>) {
        debug_assert!(offset + len as u64 <= self.reserve());
        out.clear();
        out.reserve(len);
        // SAFETY: the source range is mapped and backed (as for `copy_out`); the destination
        // is `len` bytes of `out`'s spare capacity, reserved just above and distinct from the
        // map; after the copy those bytes are initialised, so `set_len(len)` is sound.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.raw.as_ptr().add(offset as usize),
                out.as_mut_ptr(),
                len,
            );
            out.set_len(len);
        }
    }

    /// Reads bytes with atomic loads (for lookup entries that writers may change concurrently).
    pub fn load_bytes(&self, offset: u64, out: &mut [u8]) {
        debug_assert!(offset + out.len() as u64 <= self.reserve());
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: in bounds as for `copy_out`; AtomicU8 has the alignment and size of u8,
            // and all concurrent writers of these bytes also use atomic byte stores.
            let a = unsafe { AtomicU8::from_ptr(self.raw.as_mut_ptr().add(offset as usize + i)) };
            *b = a.load(Ordering::Relaxed);
        }
        std::sync::atomic::fence(Ordering::Acquire);
    }

    /// Writes bytes with atomic stores, after a release fence so that a reader that sees the
    /// new bytes also sees everything written before (the record the entry points to).
    pub fn store_bytes(&self, offset: u64, bytes: &[u8]) {
        debug_assert!(offset + bytes.len() as u64 <= self.reserve());
        std::sync::atomic::fence(Ordering::Release);
        for (i, b) in bytes.iter().enumerate() {
            // SAFETY: as for `load_bytes`; the map is writable (created by `read_write`).
            let a = unsafe { AtomicU8::from_ptr(self.raw.as_mut_ptr().add(offset as usize + i)) };
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
        assert!(offset.is_multiple_of(8) && offset + 8 <= self.reserve());
        // SAFETY: the map base is page-aligned, so an 8-aligned offset gives an aligned
        // pointer; the bytes are inside a writable mapping of a file at least that long, and
        // every access to them goes through AtomicU64, in this process and in others.
        unsafe { AtomicU64::from_ptr(self.raw.as_mut_ptr().add(offset as usize) as *mut u64) }
    }
}
