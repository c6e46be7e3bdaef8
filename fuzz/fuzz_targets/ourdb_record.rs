//! Record header parsing: arbitrary bytes never panic, and encode → parse is the identity.
#![no_main]

use herojobs::ourdb::format::{encode_header, parse_header, Location};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (Vec<u8>, u16, u32)| {
    let (bytes, file_nr, position) = input;
    if let Ok(h) = parse_header(&bytes) {
        assert!(h.header_len == 12 || h.header_len == 20);
        assert!(h.header_len <= bytes.len());
        assert!(h.data_len <= herojobs::ourdb::format::MAX_RECORD_SIZE);
    }
    let prev = Location { file_nr, position };
    let mut out = Vec::new();
    let n = encode_header(&bytes, prev, &mut out);
    let h = parse_header(&out).expect("own header parses");
    assert_eq!(h.header_len, n);
    assert_eq!(h.data_len, bytes.len());
    assert_eq!(h.prev, prev);
    assert_eq!(h.crc, crc32fast_hash(&bytes));
});

fn crc32fast_hash(b: &[u8]) -> u32 {
    // The format's CRC is IEEE CRC-32 (zlib's); computed bitwise here, independently.
    let mut crc = !0u32;
    for &byte in b {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
