//! Prune leases and lease names (SPEC §17): never a panic; what decodes survives encode + decode
//! unchanged, and only under its own number.
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

    if let Ok(s) = std::str::from_utf8(data)
        && let Some(n) = parse_lease_name(s)
    {
        assert_eq!(lease_name(n), s, "a parsed lease name is canonical");
    }

    if let Ok(l) = Lease::decode_body(data) {
        let body = l.encode_body().expect("a decoded lease re-encodes");
        assert_eq!(
            Lease::decode_body(&body).expect("re-encoded lease decodes"),
            l
        );
        let sealed = l.encode(&keys, salt).expect("a decoded lease re-encodes");
        assert_eq!(
            Lease::decode(&keys, &sealed, l.number).expect("a lease opens under its number"),
            l
        );
        assert!(Lease::decode(&keys, &sealed, l.number.wrapping_add(1)).is_err());
    }
    // As an object under the number its first 8 bytes give (any bytes: Ok or Err).
    let n = data
        .get(..8)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    let _ = Lease::decode(&keys, data, n);
    // As a plaintext sealed as lease 1 (the golden lease's number): the number check is reached.
    let sealed = seal(
        &keys.master().enc_key,
        &aad(ObjectType::Lease, keys.repo_id(), &lease_aad_id(1)),
        salt,
        data,
    );
    if let Ok(l) = Lease::decode(&keys, &sealed, 1) {
        assert_eq!(l.number, 1);
    }
});
