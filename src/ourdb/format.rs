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

impl Location {
    /// Append order within one compaction generation: file number, then position. A later
    /// write of an id is always at a greater location than an earlier one.
    pub fn append_order(self) -> (u16, u32) {
        (self.file_nr, self.position)
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
    /// A commit record covering more than [`COMMIT_MAX_RECORDS`] records, or none without
    /// naming the id it deletes.
    BadCommitCount(u32),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Truncated { needed, available } => write!(
                f,
                "record header needs {needed} bytes but only {available} remain in the file"
            ),
            HeaderError::BadCommitCount(n) => write!(
                f,
                "commit record covers {n} records, outside 0..={COMMIT_MAX_RECORDS} \
                 (0 only with the id it deletes)"
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
    push_header(data.len(), super::checksum::hash(data), prev, out);
    out.len()
}

/// Appends the header of a record of `len` bytes with checksum `crc` (classic up to
/// 65,535 bytes, extended above): the one place that lays a header out.
fn push_header(len: usize, crc: u32, prev: Location, out: &mut Vec<u8>) {
    if len <= CLASSIC_MAX {
        out.extend_from_slice(&(len as u16).to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&prev.to_header_bytes());
    } else {
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&EXT_MARKER.to_le_bytes());
        out.extend_from_slice(&prev.to_header_bytes());
        out.extend_from_slice(&(len as u32).to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
    }
}

/// herojobs, `strict` mode: the marker of a *commit record*, in the CRC field of a header whose
/// size field is 0 (as [`EXT_MARKER`] for large records). A `strict` write call appends its
/// records and then one commit record naming their ids, with one `pwrite`, and its commit is
/// the data file's `fdatasync` alone: after a crash, open replays the commit records past the
/// lookup table's last durable point ([`MARK_FILE`]) to rebuild the entries the table had not
/// made durable. No lookup entry ever points at a commit record, so herolib (and older
/// herojobs) never read one; a reader that met one through a damaged entry would see size 0
/// and a CRC field that is not CRC32("") = 0: a CRC mismatch, never data.
pub const COMMIT_MARKER: u32 = u32::from_le_bytes(*b"HJC1");
/// Fixed part of a commit record: size 0 (2), marker (4), record count (4), first id or 0
/// (4), CRC32 (4). The list form (first id 0) is followed by the ids, u32 LE each.
pub const COMMIT_FIXED: usize = 18;
/// Offset of the u32 LE number of records the commit record covers (the ones right before it).
pub const COMMIT_COUNT_OFFSET: usize = 6;
/// Offset of the u32 LE first id (ids `first..first + count`), or 0 for the list form.
pub const COMMIT_FIRST_OFFSET: usize = 10;
/// Offset of the u32 LE CRC32 of: bytes 6..14, the id list (list form), and for each covered
/// record in order its data CRC and its data length (u32 LE each).
pub const COMMIT_CRC_OFFSET: usize = 14;
/// Largest number of records one commit record covers (a longer batch is split into groups).
pub const COMMIT_MAX_RECORDS: usize = 1 << 20;

/// Name of the lookup table's durable mark inside the database directory (herojobs).
pub const MARK_FILE: &str = "lookup/mark";

/// The ids a commit record names, in the order of the records it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitIds {
    /// Ids `first..first + count` (what `add` hands out).
    Consecutive {
        /// Id of the first record covered.
        first: u32,
        /// Records covered.
        count: u32,
    },
    /// One id per record (`set`, `put`).
    List(Vec<u32>),
}

impl CommitIds {
    /// Number of records covered.
    pub fn count(&self) -> usize {
        match self {
            CommitIds::Consecutive { count, .. } => *count as usize,
            CommitIds::List(ids) => ids.len(),
        }
    }

    /// The id of the `i`-th record covered.
    pub fn id(&self, i: usize) -> u32 {
        match self {
            CommitIds::Consecutive { first, .. } => first.wrapping_add(i as u32),
            CommitIds::List(ids) => ids[i],
        }
    }
}

/// Appends a *delete commit* for `id` to `out`: a commit record covering no records, whose
/// first-id field names the id whose lookup entry the delete clears (its CRC covers bytes
/// 6..14, as for any commit record with no list and no records). `delete` makes it durable
/// before it touches the table: a table entry torn by a power loss in the middle of a delete
/// (six bytes across two pages, one written back) is then cleared again by the replay, never
/// left pointing at a place no version was written at.
pub fn encode_delete(id: u32, out: &mut Vec<u8>) {
    debug_assert_ne!(id, 0);
    let start = out.len();
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&COMMIT_MARKER.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    let crc = super::checksum::hash(&out[start + COMMIT_COUNT_OFFSET..start + COMMIT_CRC_OFFSET]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Whether `bytes` starts like a commit record (size 0 and [`COMMIT_MARKER`]).
pub fn is_commit(bytes: &[u8]) -> bool {
    bytes.len() >= 6 && bytes[0..2] == [0, 0] && bytes[2..6] == COMMIT_MARKER.to_le_bytes()
}

/// Appends a commit record to `out`. `ids` must be consecutive from `ids[0]` for the short
/// form to be used; `records` holds each covered record's (data CRC, data length).
pub fn encode_commit(ids: &[u32], records: &[(u32, u32)], out: &mut Vec<u8>) {
    debug_assert_eq!(ids.len(), records.len());
    let consecutive =
        !ids.is_empty() && ids[0] != 0 && ids.windows(2).all(|w| w[0].checked_add(1) == Some(w[1]));
    let count = ids.len() as u32;
    let first = if consecutive { ids[0] } else { 0 };
    let start = out.len();
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&COMMIT_MARKER.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&first.to_le_bytes());
    let mut h = super::checksum::Hasher::new();
    h.update(&out[start + COMMIT_COUNT_OFFSET..start + COMMIT_CRC_OFFSET]);
    let list_at = out.len() + 4;
    out.extend_from_slice(&[0; 4]);
    if !consecutive {
        for id in ids {
            out.extend_from_slice(&id.to_le_bytes());
        }
        h.update(&out[list_at..]);
    }
    for (crc, len) in records {
        h.update(&crc.to_le_bytes());
        h.update(&len.to_le_bytes());
    }
    let crc = h.finalize();
    out[start + COMMIT_CRC_OFFSET..start + COMMIT_CRC_OFFSET + 4]
        .copy_from_slice(&crc.to_le_bytes());
}

/// A parsed commit record (see [`COMMIT_MARKER`]), before it is checked against the records
/// it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitHeader {
    /// The ids of the covered records.
    pub ids: CommitIds,
    /// The CRC stored in the record.
    pub crc: u32,
    /// Bytes the commit record occupies.
    pub total_len: usize,
}

impl CommitHeader {
    /// The id a delete commit ([`encode_delete`]) clears; `None` for a commit of records.
    pub fn deleted(&self) -> Option<u32> {
        match self.ids {
            CommitIds::Consecutive { first, count: 0 } => Some(first),
            _ => None,
        }
    }

    /// Whether the stored CRC matches these ids and the covered records' (data CRC, data
    /// length), in order: a commit record torn, or written over other records, never matches.
    pub fn matches(&self, records: &[(u32, u32)]) -> bool {
        if records.len() != self.ids.count() {
            return false;
        }
        let mut h = super::checksum::Hasher::new();
        let (first, list) = match &self.ids {
            CommitIds::Consecutive { first, .. } => (*first, None),
            CommitIds::List(ids) => (0, Some(ids)),
        };
        h.update(&(records.len() as u32).to_le_bytes());
        h.update(&first.to_le_bytes());
        if let Some(ids) = list {
            for id in ids {
                h.update(&id.to_le_bytes());
            }
        }
        for (crc, len) in records {
            h.update(&crc.to_le_bytes());
            h.update(&len.to_le_bytes());
        }
        h.finalize() == self.crc
    }
}

/// Parses the commit record at the start of `bytes` (which may extend past it). `Ok(None)`:
/// not a commit record. An error: a commit record that cannot be whole (truncated, a count
/// above [`COMMIT_MAX_RECORDS`], or a count of 0 without the id of a delete commit).
pub fn parse_commit(bytes: &[u8]) -> Result<Option<CommitHeader>, HeaderError> {
    if !is_commit(bytes) {
        return Ok(None);
    }
    if bytes.len() < COMMIT_FIXED {
        return Err(HeaderError::Truncated {
            needed: COMMIT_FIXED,
            available: bytes.len(),
        });
    }
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let count = word(COMMIT_COUNT_OFFSET);
    let first = word(COMMIT_FIRST_OFFSET);
    let crc = word(COMMIT_CRC_OFFSET);
    if (count == 0 && first == 0) || count as usize > COMMIT_MAX_RECORDS {
        return Err(HeaderError::BadCommitCount(count));
    }
    if first != 0 {
        return Ok(Some(CommitHeader {
            ids: CommitIds::Consecutive { first, count },
            crc,
            total_len: COMMIT_FIXED,
        }));
    }
    let total_len = COMMIT_FIXED + 4 * count as usize;
    if bytes.len() < total_len {
        return Err(HeaderError::Truncated {
            needed: total_len,
            available: bytes.len(),
        });
    }
    let ids = bytes[COMMIT_FIXED..total_len]
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok(Some(CommitHeader {
        ids: CommitIds::List(ids),
        crc,
        total_len,
    }))
}

/// Appends the header and data of a record holding `data` to `out` (the batch buffer) and
/// returns the header length and the data's CRC32. Same bytes as [`encode_header`] + data.
pub fn append_record(data: &[u8], prev: Location, out: &mut Vec<u8>) -> (usize, u32) {
    let crc = super::checksum::hash(data);
    let start = out.len();
    push_header(data.len(), crc, prev, out);
    let header_len = out.len() - start;
    out.extend_from_slice(data);
    (header_len, crc)
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
    fn commit_records_round_trip_and_bind_their_records() {
        let records = [(0xdead_beef, 256), (7, 0), (1, 70_000)];
        let mut out = Vec::new();
        encode_commit(&[5, 6, 7], &records, &mut out);
        assert_eq!(out.len(), COMMIT_FIXED);
        let c = parse_commit(&out).unwrap().unwrap();
        assert_eq!(c.ids, CommitIds::Consecutive { first: 5, count: 3 });
        assert!(c.matches(&records));
        assert!(!c.matches(&records[..2]));
        assert!(!c.matches(&[(0xdead_beef, 256), (7, 0), (2, 70_000)]));
        out.clear();
        encode_commit(&[9, 3, 9], &records, &mut out);
        assert_eq!(out.len(), COMMIT_FIXED + 12);
        let c = parse_commit(&out).unwrap().unwrap();
        assert_eq!(c.ids, CommitIds::List(vec![9, 3, 9]));
        assert_eq!(c.total_len, out.len());
        assert!(c.matches(&records));
        // Torn: the list cut short.
        assert!(parse_commit(&out[..out.len() - 1]).is_err());
        // An ordinary record is not a commit record, and a commit record read as a record
        // is a CRC mismatch (size 0, CRC field not 0).
        let mut rec = Vec::new();
        encode_header(b"", Location::NONE, &mut rec);
        assert_eq!(parse_commit(&rec).unwrap(), None);
        let h = parse_header(&out).unwrap();
        assert_eq!(h.data_len, 0);
        assert_ne!(h.crc, crc32fast::hash(b""));
    }

    #[test]
    fn delete_commits_name_their_id_and_check_their_crc() {
        let mut out = Vec::new();
        encode_delete(682, &mut out);
        assert_eq!(out.len(), COMMIT_FIXED);
        let c = parse_commit(&out).unwrap().unwrap();
        assert_eq!(c.deleted(), Some(682));
        assert_eq!(c.total_len, COMMIT_FIXED);
        assert!(c.matches(&[]));
        // A torn id or CRC never matches; a commit of records is not a delete.
        let mut torn = out.clone();
        torn[COMMIT_FIRST_OFFSET] ^= 1;
        assert!(!parse_commit(&torn).unwrap().unwrap().matches(&[]));
        out.clear();
        encode_commit(&[5], &[(1, 2)], &mut out);
        assert_eq!(parse_commit(&out).unwrap().unwrap().deleted(), None);
        // Covering nothing and naming nothing is not a record at all.
        out[COMMIT_FIRST_OFFSET..COMMIT_FIRST_OFFSET + 4].copy_from_slice(&[0; 4]);
        out[COMMIT_COUNT_OFFSET..COMMIT_COUNT_OFFSET + 4].copy_from_slice(&[0; 4]);
        assert_eq!(parse_commit(&out), Err(HeaderError::BadCommitCount(0)));
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
