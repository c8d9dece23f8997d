//! Envelopes under the fixed keys of SPEC §15.
//!
//! The input is tried as an envelope (any bytes: Ok or Err, never a panic) and as a plaintext:
//! sealed, it must open to itself, and sealed as an index file, snapshot or config body it
//! exercises the decompression and decoding behind the envelope (a zstd bomb must be an error).
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
    let aad_bytes = aad(ObjectType::DataBlob, keys.repo_id(), &Id::ZERO);

    let _ = open(&keys.master().enc_key, &aad_bytes, data, "fuzz");
    let _ = Config::decode(data, &keys);
    let _ = IndexFile::decode(&keys, data);
    let _ = Snapshot::decode(&keys, data);

    let env = seal(&keys.master().enc_key, &aad_bytes, salt, data);
    assert_eq!(
        open(&keys.master().enc_key, &aad_bytes, &env, "fuzz").expect("own envelope opens"),
        data
    );

    if let Ok(idx) = IndexFile::decode(&keys, &keys.seal_object(ObjectType::Index, salt, data)) {
        let again = idx
            .encode(&keys, 3, salt)
            .expect("decoded index re-encodes");
        assert_eq!(
            IndexFile::decode(&keys, &again).expect("re-encoded index decodes"),
            idx
        );
    }
    if let Ok(s) = Snapshot::decode(&keys, &keys.seal_object(ObjectType::Snapshot, salt, data)) {
        let again = s.encode(&keys, salt).expect("decoded snapshot re-encodes");
        assert_eq!(
            Snapshot::decode(&keys, &again).expect("re-encoded snapshot decodes"),
            s
        );
    }

    // As a blob: sealed with its real id it opens; under a claimed raw_len it must not panic.
    let id = keys.blob_id(data);
    let blob = seal_blob(&keys, BlobType::Tree, id, data, 1, salt);
    let entry = IndexEntry::new(blob.entry, 0);
    assert_eq!(
        open_blob(&keys, &entry, &blob.bytes).expect("own blob opens"),
        data
    );
    if let Some(&b) = data.first() {
        let wrong = IndexEntry {
            raw_len: u32::from(b) * 1000,
            ..entry
        };
        let _ = open_blob(&keys, &wrong, &blob.bytes);
    }

    // As a compression group of its two halves: each member opens; a claimed range past the
    // group must fail, never panic.
    let (a, b) = data.split_at(data.len() / 2);
    let blobs = [(keys.blob_id(a), a), (keys.blob_id(b), b)];
    if let Some(group) = seal_group(&keys, BlobType::Data, &blobs, 1, salt) {
        let mut w = PackWriter::new();
        w.add_group(group);
        let pack = w.finish(&keys, salt).expect("own pack");
        let env = &pack.bytes[..pack.entries[0].stored_len as usize];
        for (e, (_, plain)) in pack.entries.iter().zip(blobs) {
            assert_eq!(open_blob(&keys, e, env).expect("member opens"), plain);
        }
        let wrong = IndexEntry {
            group_offset: u32::from(data[0]) * 1000,
            ..pack.entries[1]
        };
        let _ = open_blob(&keys, &wrong, env);
    }
});
