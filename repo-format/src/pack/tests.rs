use super::*;
use crate::crypto::MasterKey;
use crate::id::Id;
use proptest::prelude::*;

fn keys() -> RepoKeys {
    RepoKeys::new(Id([0x33; 32]), MasterKey::from_bytes([3; 72]))
}

fn blob(keys: &RepoKeys, t: BlobType, data: &[u8], salt: u8) -> SealedBlob {
    seal_blob(keys, t, keys.blob_id(data), data, 3, [salt; 16])
}

fn two_blob_pack() -> (FinishedPack, Vec<Vec<u8>>) {
    let k = keys();
    let datas = vec![b"hello".to_vec(), vec![7u8; 5000]];
    let mut w = PackWriter::new();
    w.add(blob(&k, BlobType::Data, &datas[0], 1));
    w.add(blob(&k, BlobType::Data, &datas[1], 2));
    (w.finish(&k, [9; 16]).unwrap(), datas)
}

#[test]
fn write_then_read_blobs() {
    let k = keys();
    let (p, datas) = two_blob_pack();
    assert_eq!(p.entries[0].compression, Compression::Raw);
    assert_eq!(p.entries[1].compression, Compression::Zstd);
    assert_eq!(p.id, PackId(object_id(&p.bytes)));
    let len = p.bytes.len() as u64;
    let hl = header_len(p.bytes[p.bytes.len() - 4..].try_into().unwrap(), len).unwrap() as usize;
    let env = &p.bytes[p.bytes.len() - 4 - hl..p.bytes.len() - 4];
    assert_eq!(decode_header(&k, env, len).unwrap().entries, p.entries);
    for (e, d) in p.entries.iter().zip(&datas) {
        let range = e.offset as usize..(e.offset + e.stored_len) as usize;
        assert_eq!(&open_blob(&k, e, &p.bytes[range]).unwrap(), d);
    }
    // Wrong pack length: blobs no longer fill the space before the header.
    assert!(decode_header(&k, env, len + 1).is_err());
    assert!(decode_header(&k, env, len - 1).is_err());
}

#[test]
fn a_pack_in_a_used_buffer_is_the_pack_in_a_new_one() {
    let k = keys();
    let (fresh, datas) = two_blob_pack();
    // A buffer that held another pack, smaller and larger than the room asked for.
    for room in [16, 1 << 20] {
        let mut w = PackWriter::with_buffer(vec![0xA5; 100_000], room);
        w.add(blob(&k, BlobType::Data, &datas[0], 1));
        w.add(blob(&k, BlobType::Data, &datas[1], 2));
        let reused = w.finish(&k, [9; 16]).unwrap();
        assert_eq!(reused.bytes, fresh.bytes);
        assert_eq!(reused.id, fresh.id);
    }
}

#[test]
fn moved_or_swapped_blob_fails() {
    let k = keys();
    let (p, _) = two_blob_pack();
    let (a, b) = (p.entries[0], p.entries[1]);
    // Blob b's bytes read under a's entry (as if moved to a's offset): lengths differ...
    let b_bytes = &p.bytes[b.offset as usize..(b.offset + b.stored_len) as usize];
    assert!(open_blob(&k, &a, b_bytes).is_err());
    // ...and with a's length forced to match, the AAD (a's id) still fails.
    let forged = IndexEntry {
        stored_len: b.stored_len,
        raw_len: b.raw_len,
        compression: b.compression,
        ..a
    };
    assert_eq!(
        open_blob(&k, &forged, b_bytes),
        Err(FormatError::AuthenticationFailed { what: "data blob" })
    );
    // Same id but claimed to be a tree blob: another AAD type.
    let as_tree = IndexEntry {
        blob_type: BlobType::Tree,
        ..b
    };
    assert!(open_blob(&k, &as_tree, b_bytes).is_err());
    // Another repository.
    let other = RepoKeys::new(Id([0x34; 32]), k.master().clone());
    assert!(matches!(
        open_blob(&other, &b, b_bytes),
        Err(FormatError::AuthenticationFailed { .. })
    ));
}

#[test]
fn id_mismatch_is_reported() {
    let k = keys();
    let wrong = BlobId(Id([1; 32]));
    let s = seal_blob(&k, BlobType::Data, wrong, b"data", 0, [0; 16]);
    let e = IndexEntry::new(s.entry, 0);
    assert!(matches!(
        open_blob(&k, &e, &s.bytes),
        Err(FormatError::IdMismatch { .. })
    ));
}

#[test]
fn every_flipped_bit_in_a_pack_is_detected() {
    let k = keys();
    let (p, datas) = two_blob_pack();
    let read_all = |bytes: &[u8]| -> Result<Vec<Vec<u8>>, FormatError> {
        let len = bytes.len() as u64;
        let trailer = bytes.len().checked_sub(4).ok_or(FormatError::Truncated {
            what: "pack",
            needed: 4,
            got: bytes.len(),
        })?;
        let hl = header_len(bytes[trailer..].try_into().unwrap(), len)? as usize;
        let entries =
            decode_header(&k, &bytes[bytes.len() - 4 - hl..bytes.len() - 4], len)?.entries;
        entries
            .iter()
            .map(|e| {
                open_blob(
                    &k,
                    e,
                    &bytes[e.offset as usize..(e.offset + e.stored_len) as usize],
                )
            })
            .collect()
    };
    assert_eq!(read_all(&p.bytes).unwrap(), datas);
    for i in 0..p.bytes.len() {
        let mut bad = p.bytes.clone();
        bad[i] ^= 0x04;
        assert!(read_all(&bad).is_err(), "byte {i}");
    }
    for n in 0..p.bytes.len() {
        assert!(read_all(&p.bytes[n..]).is_err() || n == 0);
    }
}

#[test]
fn header_len_bounds() {
    assert!(header_len(&10u32.to_le_bytes(), 1000).is_err());
    assert!(header_len(&(MAX_HEADER_LEN as u32 + 1).to_le_bytes(), u64::MAX).is_err());
    assert!(header_len(&100u32.to_le_bytes(), 103).is_err());
    assert_eq!(header_len(&100u32.to_le_bytes(), 104), Ok(100));
    assert!(PackWriter::new().finish(&keys(), [0; 16]).is_err());
}

#[test]
fn header_plain_rejects_bad_input() {
    let e = PackEntry {
        blob_type: BlobType::Tree,
        compression: Compression::Raw,
        stored_len: 40,
        raw_len: 8,
        id: BlobId(Id([5; 32])),
    };
    let b = encode_header_plain(&[e], &[]);
    assert_eq!(decode_header_plain(&b).unwrap(), (vec![e], vec![]));
    assert!(matches!(
        decode_header_plain(&b[..b.len() - 1]),
        Err(FormatError::Truncated { .. })
    ));
    let mut v = b.clone();
    v[0] = 2;
    assert!(matches!(
        decode_header_plain(&v),
        Err(FormatError::UnsupportedVersion { .. })
    ));
    for (i, x) in [(5, 2), (6, 3), (7, 31), (11, 9)] {
        let mut bad = b.clone();
        bad[i] = x;
        assert!(decode_header_plain(&bad).is_err(), "{i}");
    }
    assert!(decode_header_plain(&encode_header_plain(&[], &[])).is_err());
    let mut long = b.clone();
    long.push(0);
    assert!(decode_header_plain(&long).is_err());
}

fn arb_entry() -> impl Strategy<Value = PackEntry> {
    (
        any::<bool>(),
        any::<bool>(),
        32u32..,
        any::<u32>(),
        any::<[u8; 32]>(),
    )
        .prop_map(|(t, z, stored_len, raw, id)| {
            let compression = if z {
                Compression::Zstd
            } else {
                Compression::Raw
            };
            PackEntry {
                blob_type: if t { BlobType::Tree } else { BlobType::Data },
                compression,
                stored_len,
                raw_len: if z { raw } else { stored_len - 32 },
                id: BlobId(Id(id)),
            }
        })
}

proptest! {
    #[test]
    fn header_plain_round_trip(entries in proptest::collection::vec(arb_entry(), 1..50)) {
        prop_assert_eq!(decode_header_plain(&encode_header_plain(&entries, &[])).unwrap(), (entries, vec![]));
    }

    #[test]
    fn pack_round_trip(blobs in proptest::collection::vec((any::<bool>(), proptest::collection::vec(0u8..3, 0..3000)), 1..8), level in 0i32..5) {
        let k = keys();
        let mut w = PackWriter::new();
        for (i, (t, d)) in blobs.iter().enumerate() {
            let t = if *t { BlobType::Tree } else { BlobType::Data };
            w.add(seal_blob(&k, t, k.blob_id(d), d, level, [i as u8; 16]));
        }
        prop_assert_eq!(w.count(), blobs.len());
        let p = w.finish(&k, [0xee; 16]).unwrap();
        let len = p.bytes.len() as u64;
        let hl = header_len(p.bytes[p.bytes.len() - 4..].try_into().unwrap(), len).unwrap() as usize;
        let entries = decode_header(&k, &p.bytes[p.bytes.len() - 4 - hl..p.bytes.len() - 4], len).unwrap().entries;
        prop_assert_eq!(&entries, &p.entries);
        for (e, (_, d)) in entries.iter().zip(&blobs) {
            prop_assert_eq!(&open_blob(&k, e, &p.bytes[e.offset as usize..(e.offset + e.stored_len) as usize]).unwrap(), d);
        }
    }

    #[test]
    fn decoders_never_panic(b: Vec<u8>, len: u64) {
        let _ = decode_header_plain(&b);
        let _ = decode_header(&keys(), &b, len);
        if b.len() >= 4 {
            let _ = header_len(&b[..4].try_into().unwrap(), len);
        }
        let e = IndexEntry { group_offset: 0, blob_type: BlobType::Data, compression: Compression::Zstd, offset: 0, stored_len: b.len() as u32, raw_len: 100, id: BlobId(Id::ZERO) };
        let _ = open_blob(&keys(), &e, &b);
    }
}
