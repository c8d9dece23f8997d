//! Index bodies: never a panic; only canonical bodies decode, so re-encoding gives the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use repo_format::IndexFile;

fuzz_target!(|data: &[u8]| {
    if let Ok(idx) = IndexFile::decode_body(data) {
        let body = idx.encode_body().expect("a decoded index re-encodes");
        assert_eq!(body, data, "decoded index was not canonical");
        assert_eq!(
            IndexFile::decode_body(&body).expect("re-encoded index decodes"),
            idx
        );
    }
});
