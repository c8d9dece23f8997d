//! Snapshot bodies: never a panic; what decodes survives encode + decode unchanged (bytes may
//! differ: optional tags are dropped and an explicit "complete" status is omitted).
#![no_main]

use libfuzzer_sys::fuzz_target;
use repo_format::Snapshot;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = Snapshot::decode_body(data) {
        let body = s.encode_body().expect("a decoded snapshot re-encodes");
        assert_eq!(
            Snapshot::decode_body(&body).expect("re-encoded snapshot decodes"),
            s
        );
    }
});
