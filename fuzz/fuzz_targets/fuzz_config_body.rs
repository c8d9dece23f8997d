//! Config bodies (and the plain header): never a panic; canonical round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use repo_format::{Config, Id};

fuzz_target!(|data: &[u8]| {
    let _ = Config::peek_repo_id(data);
    if let Ok(c) = Config::decode_body(Id::ZERO, data) {
        c.validate().expect("decode validated the config");
        let body = c.encode_body();
        assert_eq!(
            Config::decode_body(Id::ZERO, &body).expect("re-encoded config decodes"),
            c
        );
    }
});
