//! CRC-32 (IEEE, herolib's record checksum) without paying for CPU feature detection up front.
//!
//! `crc32fast` picks its PCLMULQDQ implementation through `is_x86_feature_detected!`, whose
//! first call runs the whole of std's CPUID probe. On a virtual machine every CPUID is a trap
//! to the hypervisor: measured on the development VM, the first detection costs 27–35 µs —
//! a quarter of a fresh process's open + get (≈ 120 µs), for a checksum of 64 bytes of mark
//! and 256 of record that a table computes in well under a microsecond.
//!
//! So a process starts on a table-driven CRC (the `crc` crate's slice-by-16 tables, built at
//! compile time: no detection, no start-up work) and switches to `crc32fast` once the bytes it
//! checksummed in software reach [`SOFTWARE_BUDGET`], or at once for a call that alone would
//! pass it. That is the rent-or-buy rule: the detection is paid when the software work it
//! would save reaches its own cost, so a short-lived process (a CLI `get`, an open + get)
//! never pays it and a long-lived one pays it once, early, and then runs at full speed. Both
//! implementations compute the same function; which one ran is never visible in a result.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Bytes checksummed in software before a process switches to `crc32fast` (and pays its
/// detection once). 64 KiB of slice-by-16 costs about as much as the detection on the
/// development VM (≈ 0.4 ns a byte against ≈ 30 µs), so the worst case is at most twice the
/// better choice made in hindsight.
pub(crate) const SOFTWARE_BUDGET: u64 = 64 * 1024;

/// The table implementation: CRC-32/ISO-HDLC is the CRC-32 of zlib, PNG and herolib.
const TABLE: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISO_HDLC);

/// Which implementation a process uses: the table until its software work reaches the
/// budget, then `crc32fast` for good.
struct Budget {
    /// Set once the process has switched to `crc32fast`; never cleared.
    fast: AtomicBool,
    /// Bytes checksummed in software so far (approximate under races: both paths agree).
    software_bytes: AtomicU64,
}

impl Budget {
    const fn new() -> Budget {
        Budget {
            fast: AtomicBool::new(false),
            software_bytes: AtomicU64::new(0),
        }
    }

    fn is_fast(&self) -> bool {
        self.fast.load(Ordering::Relaxed)
    }

    /// Whether a checksum of `len` more bytes should use `crc32fast`: yes once switched;
    /// else the bytes are charged to the software budget, and the switch is made when they
    /// would pass it.
    fn use_fast(&self, len: u64) -> bool {
        if self.is_fast() {
            return true;
        }
        let before = self.software_bytes.fetch_add(len, Ordering::Relaxed);
        if before.saturating_add(len) > SOFTWARE_BUDGET {
            self.fast.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }
}

static BUDGET: Budget = Budget::new();

/// The CRC-32 of `data`.
pub(crate) fn hash(data: &[u8]) -> u32 {
    if BUDGET.use_fast(data.len() as u64) {
        crc32fast::hash(data)
    } else {
        TABLE.checksum(data)
    }
}

/// An incremental CRC-32, for checksums over pieces (commit records). The implementation
/// is chosen when it is created; its bytes are charged to the budget when it finishes.
pub(crate) struct Hasher {
    inner: Inner,
    len: u64,
}

enum Inner {
    Fast(crc32fast::Hasher),
    Table(crc::Digest<'static, u32, crc::Table<16>>),
}

impl Hasher {
    pub(crate) fn new() -> Hasher {
        let inner = if BUDGET.is_fast() {
            Inner::Fast(crc32fast::Hasher::new())
        } else {
            Inner::Table(TABLE.digest())
        };
        Hasher { inner, len: 0 }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        self.len += data.len() as u64;
        match &mut self.inner {
            Inner::Fast(h) => h.update(data),
            Inner::Table(d) => d.update(data),
        }
    }

    pub(crate) fn finalize(self) -> u32 {
        match self.inner {
            Inner::Fast(h) => h.finalize(),
            Inner::Table(d) => {
                BUDGET.use_fast(self.len);
                d.finalize()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs of every length up to a few KiB (the tables' slice-by-16 loop, its tail, and
    /// the pieces of an incremental checksum), from a fixed pseudo-random stream.
    fn inputs() -> Vec<Vec<u8>> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut out = Vec::new();
        for len in (0..300).chain([1000, 4096, 4097, 70_000]) {
            let v = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            out.push(v);
        }
        out
    }

    #[test]
    fn the_table_and_crc32fast_compute_the_same_crc() {
        assert_eq!(TABLE.checksum(b"123456789"), 0xCBF4_3926);
        for v in inputs() {
            assert_eq!(TABLE.checksum(&v), crc32fast::hash(&v), "{} bytes", v.len());
            assert_eq!(hash(&v), crc32fast::hash(&v), "{} bytes", v.len());
            for cut in [0, 1, 7, 16, v.len() / 2] {
                let cut = cut.min(v.len());
                let mut d = TABLE.digest();
                d.update(&v[..cut]);
                d.update(&v[cut..]);
                assert_eq!(d.finalize(), crc32fast::hash(&v));
                let mut h = Hasher::new();
                h.update(&v[..cut]);
                h.update(&v[cut..]);
                assert_eq!(h.finalize(), crc32fast::hash(&v));
            }
        }
    }

    #[test]
    fn the_switch_comes_when_the_software_work_would_pass_the_budget() {
        let b = Budget::new();
        // Records of 256 bytes: software while they fit in the budget, then for good.
        let fit = SOFTWARE_BUDGET / 256;
        for _ in 0..fit {
            assert!(!b.use_fast(256));
        }
        assert!(b.use_fast(256));
        assert!(b.use_fast(1) && b.is_fast());
        // One call that alone passes the budget switches at once.
        let b = Budget::new();
        assert!(!b.use_fast(64));
        assert!(b.use_fast(SOFTWARE_BUDGET));
        assert!(b.use_fast(0));
    }
}
