//! Content lists: never a panic; the encoding is exact.
#![no_main]

use libfuzzer_sys::fuzz_target;
use repo_format::ContentList;

fuzz_target!(|data: &[u8]| {
    if let Ok(list) = ContentList::decode(data) {
        assert_eq!(
            list.encode().expect("a decoded content list re-encodes"),
            data
        );
    }
});
