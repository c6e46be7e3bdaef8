//! Every byte offset, size and encoding of the OurDB on-disk format, in one place.
//!
//! This module is pure: it turns bytes into values and back and never touches a file. The
//! prose version of the same facts is `docs/ourdb-format.md`; when one changes, the other does.

/// Every data file starts with this many bytes (one zero byte), so that position 0 can mean
/// "no record" in a lookup entry and in a header's previous-location field.
pub const DATA_FILE_PREAMBLE: u64 = 1;

/// Size of the classic (herolib) record header: size u16 LE, CRC32 u32 LE, previous location 6 bytes.
pub const HEADER_SIZE: usize = 12;
/// Offset of the little-endian u16 data size inside the header.
pub const HEADER_SIZE_OFFSET: usize = 0;
/// Offset of the little-endian u32 CRC32 (IEEE) of the data inside the header.
pub const HEADER_CRC_OFFSET: usize = 2;
/// Offset of the previous location (u16 BE file number, u32 BE position) inside the header.
pub const HEADER_PREV_OFFSET: usize = 6;

/// Largest record the classic header can describe.
pub const CLASSIC_MAX: usize = u16::MAX as usize;

/// The herojobs large-record extension: a header whose size field is 0 and whose CRC field
/// holds this value. A genuine empty record has CRC32("") = 0, so an old reader that meets
/// this header reads zero bytes, computes CRC 0, compares it with this marker and reports a
/// CRC mismatch: it rejects the record cleanly instead of misreading it.
pub const EXT_MARKER: u32 = u32::from_le_bytes(*b"HJX1");
/// Size of the extension block that follows an extended header: length u32 LE, CRC32 u32 LE.
pub const EXT_SIZE: usize = 8;
/// Largest record this implementation writes or accepts (the extension could describe 4 GiB;
/// the limit keeps one record's memory bounded and the data-file mapping reservation modest).
pub const MAX_RECORD_SIZE: usize = 256 * 1024 * 1024;

/// Largest position a data file may hold a record at (positions are u32 in locations).
pub const MAX_POSITION: u64 = u32::MAX as u64;

/// herojobs: the byte a `strict` writer fills the end of the current data file with, ahead
/// of its appends (see `DataFile::preallocate`). A header read from fill bytes claims 65,535
/// bytes whose CRC is never `0xFFFFFFFF`, so a stray entry pointing there is a CRC or length
/// error, never a record.
pub const TAIL_FILL: u8 = 0xFF;
/// herojobs: how far past its last record a `strict` writer keeps the current data file
/// filled; cut back when the last handle closes.
pub const TAIL_CHUNK: u64 = 256 * 1024;

/// Lookup entry sizes herolib defines. 2, 3 and 4 hold a position in file 0 only; 6 holds a
/// u16 file number and a u32 position.
pub const KEYSIZES: [u8; 4] = [2, 3, 4, 6];

/// Where a record lives: data file number and byte position inside it. Position 0 is "none".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Location {
    /// Data file number: the record is in `<file_nr>.db`.
    pub file_nr: u16,
    /// Byte offset of the record header inside that file; 0 means "no record".
    pub position: u32,
}

impl Location {
    /// The "no record" location.
    pub const NONE: Location = Location {
        file_nr: 0,
        position: 0,
    };

    /// True for the "no record" location. Both fields zero is how herolib writes it.
    pub fn is_none(&self) -> bool {
        self.position == 0 && self.file_nr == 0
    }

    /// The 6-byte form used in record headers (always 6 bytes, whatever the keysize).
    pub fn to_header_bytes(self) -> [u8; 6] {
        let f = self.file_nr.to_be_bytes();
        let p = self.position.to_be_bytes();
        [f[0], f[1], p[0], p[1], p[2], p[3]]
    }

    /// Parses the 6-byte header form.
    pub fn from_header_bytes(b: [u8; 6]) -> Location {
        Location {
            file_nr: u16::from_be_bytes([b[0], b[1]]),
            position: u32::from_be_bytes([b[2], b[3], b[4], b[5]]),
        }
    }

    /// Encodes this location as a lookup entry of `keysize` bytes (big-endian). Returns `None`
    /// when it does not fit: a file number other than 0 with keysize < 6, or a position wider
    /// than the entry.
    pub fn encode_entry(self, keysize: u8, out: &mut [u8; 6]) -> Option<usize> {
        let ks = keysize as usize;
        match keysize {
            6 => {
                *out = self.to_header_bytes();
            }
            2..=4 => {
                if self.file_nr != 0 {
                    return None;
                }
                let bits = 8 * ks as u32;
                if bits < 32 && (self.position >> bits) != 0 {
                    return None;
                }
                let p = self.position.to_be_bytes();
                out[..ks].copy_from_slice(&p[4 - ks..]);
            }
            _ => return None,
        }
        Some(ks)
    }

    /// Decodes a lookup entry of `keysize` bytes (`entry.len()` must equal the keysize).
    pub fn decode_entry(entry: &[u8]) -> Location {
        match entry.len() {
            6 => Location::from_header_bytes([
                entry[0], entry[1], entry[2], entry[3], entry[4], entry[5],
            ]),
            n @ 2..=4 => {
                let mut p = [0u8; 4];
                p[4 - n..].copy_from_slice(entry);
                Location {
                    file_nr: 0,
                    position: u32::from_be_bytes(p),
                }
            }
            _ => Location::NONE,
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.db@{}", self.file_nr, self.position)
    }
}

/// A parsed record header (classic or extended).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Length of the data that follows the header (and extension block, if any).
    pub data_len: usize,
    /// CRC32 (IEEE) the data must have.
    pub crc: u32,
    /// Location of the previous version of the same id, or `Location::NONE`.
    pub prev: Location,
    /// Bytes of header before the data: 12, or 20 for an extended record.
    pub header_len: usize,
}

impl RecordHeader {
    /// Total bytes the record occupies in its data file.
    pub fn total_len(&self) -> usize {
        self.header_len + self.data_len
    }
}

/// Why a header could not be parsed. The caller adds where (file and offset): this module
/// never sees a file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// Fewer bytes than the header needs.
    Truncated {
        /// Bytes the header needs (12, or 20 for an extended header).
        needed: usize,
        /// Bytes there were.
        available: usize,
    },
    /// An extended header whose length is not above the classic maximum or above the limit.
    BadExtendedLength(u64),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Truncated { needed, available } => write!(
                f,
                "record header needs {needed} bytes but only {available} remain in the file"
            ),
            HeaderError::BadExtendedLength(n) => write!(
                f,
                "extended record length {n} is outside {}..={MAX_RECORD_SIZE}",
                CLASSIC_MAX + 1
            ),
        }
    }
}

/// Parses the header at the start of `bytes` (which may extend past the record).
pub fn parse_header(bytes: &[u8]) -> Result<RecordHeader, HeaderError> {
    if bytes.len() < HEADER_SIZE {
        return Err(HeaderError::Truncated {
            needed: HEADER_SIZE,
            available: bytes.len(),
        });
    }
    let size = u16::from_le_bytes([bytes[0], bytes[1]]) as usize;
    let crc = u32::from_le_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]);
    let prev =
        Location::from_header_bytes([bytes[6], bytes[7], bytes[8], bytes[9], bytes[10], bytes[11]]);
    if size == 0 && crc == EXT_MARKER {
        let needed = HEADER_SIZE + EXT_SIZE;
        if bytes.len() < needed {
            return Err(HeaderError::Truncated {
                needed,
                available: bytes.len(),
            });
        }
        let e = &bytes[HEADER_SIZE..needed];
        let len = u32::from_le_bytes([e[0], e[1], e[2], e[3]]) as u64;
        let crc = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        if len <= CLASSIC_MAX as u64 || len > MAX_RECORD_SIZE as u64 {
            return Err(HeaderError::BadExtendedLength(len));
        }
        return Ok(RecordHeader {
            data_len: len as usize,
            crc,
            prev,
            header_len: needed,
        });
    }
    Ok(RecordHeader {
        data_len: size,
        crc,
        prev,
        header_len: HEADER_SIZE,
    })
}

/// Writes the header for `data` into `out` (cleared first) and returns the header length.
/// Records up to 65,535 bytes get the classic 12-byte header; larger ones the extended form.
/// The caller checks `data.len() <= MAX_RECORD_SIZE`.
pub fn encode_header(data: &[u8], prev: Location, out: &mut Vec<u8>) -> usize {
    out.clear();
    let crc = crc32fast::hash(data);
    if data.len() <= CLASSIC_MAX {
        out.extend_from_slice(&(data.len() as u16).to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&prev.to_header_bytes());
    } else {
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&EXT_MARKER.to_le_bytes());
        out.extend_from_slice(&prev.to_header_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
    }
    out.len()
}

/// herolib's threshold for switching to keysize 6: `size × nr / 2 > 10,000,000` bytes
/// (its `mbyte_` constant is 1,000,000, decimal, not 1 MiB).
pub const HEROLIB_MULTIFILE_THRESHOLD: f64 = 10_000_000.0;

/// Chooses the lookup keysize from the planned maximum record count and record size,
/// exactly as herolib's `ourdb.new` does, so that a database configured the same way in
/// either implementation has the same layout.
///
/// herolib's fields are `u32` and it multiplies them as `u32` before converting to `f64`, so
/// the product wraps modulo 2^32 (e.g. 1,048,576 records of 4,096 bytes give a product of 0
/// and keysize 3, not 6). That is reproduced for values herolib can be given; beyond `u32`
/// (which herolib cannot express) the exact product is used.
pub fn herolib_keysize(record_nr_max: u64, record_size_max: u64) -> u8 {
    let mut keysize = if record_nr_max < 65_536 {
        2
    } else if record_nr_max < 16_777_216 {
        3
    } else {
        4
    };
    let product = match (u32::try_from(record_nr_max), u32::try_from(record_size_max)) {
        (Ok(nr), Ok(size)) => size.wrapping_mul(nr) as f64,
        _ => record_size_max as f64 * record_nr_max as f64,
    };
    if product / 2.0 > HEROLIB_MULTIFILE_THRESHOLD {
        keysize = 6;
    }
    keysize
}

/// How far the next id may run ahead of the lookup table (in ids) before open refuses it as
/// implausible. Every id herojobs writes grows the table to cover it and the table never
/// shrinks (compaction keeps its length), so a next id beyond the table comes only from ids
/// handed out and never written (trailing deletes in a herolib dump, reserved ids) — bounded
/// in practice by herolib's default capacity, 2^24 ids. A larger gap is a damaged or edited
/// `.inc`: accepting it made a 25 GB sparse table from `.inc` = 4294967295.
pub const MAX_ID_GAP: u64 = 1 << 24;

/// Name of data file `nr` inside the database directory.
pub fn data_file_name(nr: u16) -> String {
    format!("{nr}.db")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_round_trip_every_keysize() {
        for ks in KEYSIZES {
            let loc = Location {
                file_nr: 0,
                position: 0x1234 & ((1u64 << (8 * ks.min(4) as u32)) - 1) as u32,
            };
            let mut buf = [0u8; 6];
            let n = loc.encode_entry(ks, &mut buf).unwrap();
            assert_eq!(n, ks as usize);
            assert_eq!(Location::decode_entry(&buf[..n]), loc);
        }
        let far = Location {
            file_nr: 3,
            position: 0xdead_beef,
        };
        let mut buf = [0u8; 6];
        far.encode_entry(6, &mut buf).unwrap();
        assert_eq!(buf, [0, 3, 0xde, 0xad, 0xbe, 0xef]);
        assert!(far.encode_entry(4, &mut buf).is_none());
        let wide = Location {
            file_nr: 0,
            position: 0x1_0000,
        };
        assert!(wide.encode_entry(2, &mut buf).is_none());
        assert!(wide.encode_entry(3, &mut buf).is_some());
    }

    #[test]
    fn classic_and_extended_headers_parse_back() {
        let mut out = Vec::new();
        let prev = Location {
            file_nr: 1,
            position: 77,
        };
        encode_header(b"hello", prev, &mut out);
        assert_eq!(out.len(), HEADER_SIZE);
        let h = parse_header(&out).unwrap();
        assert_eq!(h.data_len, 5);
        assert_eq!(h.prev, prev);
        assert_eq!(h.crc, crc32fast::hash(b"hello"));

        let big = vec![7u8; CLASSIC_MAX + 1];
        encode_header(&big, Location::NONE, &mut out);
        assert_eq!(out.len(), HEADER_SIZE + EXT_SIZE);
        let h = parse_header(&out).unwrap();
        assert_eq!(h.data_len, big.len());
        assert_eq!(h.header_len, 20);
        // An old reader sees size 0 and a CRC field that cannot be the CRC of no bytes.
        assert_eq!(&out[0..2], &[0, 0]);
        assert_ne!(crc32fast::hash(b""), EXT_MARKER);
    }

    #[test]
    fn keysize_matches_herolib_rule() {
        assert_eq!(herolib_keysize(16_777_215, 4096), 6);
        assert_eq!(herolib_keysize(1000, 100), 2);
        assert_eq!(herolib_keysize(100_000, 100), 3);
        assert_eq!(herolib_keysize(20_000_000, 1), 4);
    }

    /// Parameters where herolib's decimal threshold (10,000,000) and 10 MiB (10,485,760)
    /// disagree.
    #[test]
    fn keysize_threshold_is_decimal_ten_million() {
        // 205 × 100,000 / 2 = 10,250,000: above 10,000,000, below 10 MiB.
        assert_eq!(herolib_keysize(100_000, 205), 6);
        // 200 × 100,000 / 2 = 10,000,000: not above the threshold.
        assert_eq!(herolib_keysize(100_000, 200), 3);
        // 40,000 × 512 / 2 = 10,240,000: keysize 2 would have been kept under 10 MiB.
        assert_eq!(herolib_keysize(40_000, 512), 6);
    }

    /// herolib multiplies u32 × u32 and the product wraps: 2^20 × 2^12 = 2^32 → 0.
    #[test]
    fn keysize_reproduces_herolib_u32_wrap() {
        assert_eq!(herolib_keysize(1 << 20, 4096), 3);
        assert_eq!(herolib_keysize((1 << 20) + 1, 4096), 3);
        // One record fewer: 4,294,963,200 fits u32, so it is the true product: keysize 6.
        assert_eq!(herolib_keysize((1 << 20) - 1, 4096), 6);
    }

    #[test]
    fn truncated_headers_are_errors() {
        assert!(matches!(
            parse_header(&[0u8; 5]),
            Err(HeaderError::Truncated { .. })
        ));
        let mut h = vec![0u8; 12];
        h[2..6].copy_from_slice(&EXT_MARKER.to_le_bytes());
        assert!(matches!(
            parse_header(&h),
            Err(HeaderError::Truncated { needed: 20, .. })
        ));
        h.extend_from_slice(&10u32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        assert!(matches!(
            parse_header(&h),
            Err(HeaderError::BadExtendedLength(10))
        ));
    }
}
