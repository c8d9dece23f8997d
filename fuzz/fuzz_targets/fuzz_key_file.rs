//! Key files: any bytes decode to Ok or Err, never a panic; what decodes re-encodes to the same
//! bytes (the encoding is exact). The KDF is never run: hostile parameters are rejected by
//! `decode`, and legal ones can still cost seconds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use repo_format::KeyFile;

fuzz_target!(|data: &[u8]| {
    if let Ok(kf) = KeyFile::decode(data) {
        kf.params
            .validate()
            .expect("decode validated the KDF parameters");
        let again = kf.encode().expect("a decoded key file re-encodes");
        assert_eq!(again, data);
        assert_eq!(
            KeyFile::decode(&again).expect("re-encoded key file decodes"),
            kf
        );
    }
});
