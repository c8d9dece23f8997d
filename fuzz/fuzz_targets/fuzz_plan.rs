//! Prune plans (SPEC §17): never a panic; what decodes survives encode + decode unchanged, and a
//! plan without unknown optional tags re-encodes to the same bytes (the encoding is canonical).
#![no_main]

use libfuzzer_sys::fuzz_target;
use repo_format::*;

fuzz_target!(|data: &[u8]| {
    let keys = RepoKeys::new(
        Id([0x33; 32]),
        MasterKey {
            enc_key: [0x11; 32],
            id_key: [0x22; 32],
            chunker_seed: 0x0123_4567_89ab_cdef,
        },
    );
    let salt = [0x44; 16];

    if let Ok(p) = Plan::decode_body(data) {
        let body = p.encode_body().expect("a decoded plan re-encodes");
        assert_eq!(
            Plan::decode_body(&body).expect("re-encoded plan decodes"),
            p
        );
    }
    // As an object (any bytes), and as a plaintext behind a valid envelope: compression byte,
    // then a body (exercises the bounded decompression).
    let _ = Plan::decode(&keys, data);
    if let Ok(p) = Plan::decode(&keys, &keys.seal_object(ObjectType::Plan, salt, data)) {
        let again = p.encode(&keys, salt).expect("a decoded plan re-encodes");
        assert_eq!(
            Plan::decode(&keys, &again).expect("re-encoded plan decodes"),
            p
        );
    }
});
