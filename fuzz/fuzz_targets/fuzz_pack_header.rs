//! Pack header plaintexts and trailers: never a panic; the encoding is exact, and so is the
//! mapping to index entries (offsets, compression groups, based groups and their bases).
#![no_main]

use libfuzzer_sys::fuzz_target;
use repo_format::{decode_header_plain, encode_header_plain, header_len};

fuzz_target!(|data: &[u8]| {
    if data.len() >= 4 {
        let trailer: [u8; 4] = data[data.len() - 4..].try_into().expect("4 bytes");
        if let Ok(len) = header_len(&trailer, data.len() as u64) {
            assert!(len as usize + 4 <= data.len());
        }
    }
    if let Ok((entries, bases)) = decode_header_plain(data) {
        assert!(!entries.is_empty());
        // One base per based group, each of 1 to 255 distinct ids.
        assert!(bases.iter().all(|b| (1..=255).contains(&b.len())));
        assert_eq!(encode_header_plain(&entries, &bases), data);
        // Offsets and compression groups: a valid header gives back its own entries.
        if let Ok(indexed) = repo_format::pack::index_entries(&entries) {
            let back: Vec<_> = indexed.iter().map(|e| e.pack_entry()).collect();
            assert_eq!(back, entries);
        }
    }
});
