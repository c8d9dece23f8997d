use super::*;
use crate::crypto::MasterKey;
use crate::id::Id;
use proptest::prelude::*;

fn keys() -> RepoKeys {
    RepoKeys::new(Id([0x33; 32]), MasterKey::from_bytes([4; 72]))
}

fn entry(offset: u32, stored_len: u32, id: u8) -> IndexEntry {
    IndexEntry {
        blob_type: BlobType::Data,
        compression: Compression::Raw,
        offset,
        stored_len,
        raw_len: stored_len - 32,
        id: BlobId(Id([id; 32])),
        group_offset: 0,
    }
}

fn member(offset: u32, stored_len: u32, group_offset: u32, raw_len: u32, id: u8) -> IndexEntry {
    IndexEntry {
        blob_type: BlobType::Data,
        compression: Compression::Group,
        offset,
        stored_len,
        raw_len,
        id: BlobId(Id([id; 32])),
        group_offset,
    }
}

#[test]
fn groups_in_index_files() {
    let k = keys();
    let idx = IndexFile {
        supersedes: vec![],
        packs: vec![IndexPack {
            id: PackId(Id([2; 32])),
            entries: vec![
                member(0, 100, 700, 5, 3),
                entry(100, 50, 9),
                member(0, 100, 0, 700, 4),
            ],
            bases: Vec::new(),
        }],
    };
    let b = idx.encode(&k, 0, [1; 16]).unwrap();
    let back = IndexFile::decode(&k, &b).unwrap();
    let offsets: Vec<(u32, u32)> = back.packs[0]
        .entries
        .iter()
        .map(|e| (e.offset, e.group_offset))
        .collect();
    assert_eq!(offsets, vec![(0, 0), (0, 700), (100, 0)]);
    // 3 entries, 2 grouped: 4 extra bytes each.
    assert_eq!(
        idx.encode_body().unwrap().len(),
        1 + 4 + 4 + 36 + 3 * 46 + 2 * 4
    );
    let bad = |entries: Vec<IndexEntry>| {
        IndexFile {
            supersedes: vec![],
            packs: vec![IndexPack {
                id: PackId(Id([2; 32])),
                entries,
                bases: Vec::new(),
            }],
        }
        .encode_body()
        .is_err()
    };
    // Members overlapping in the group's plaintext, disagreeing on the envelope, or a single
    // blob with a group offset.
    assert!(bad(vec![
        member(0, 100, 0, 700, 4),
        member(0, 100, 699, 5, 3)
    ]));
    assert!(bad(vec![
        member(0, 100, 0, 700, 4),
        member(0, 90, 700, 5, 3)
    ]));
    assert!(bad(vec![IndexEntry {
        group_offset: 8,
        ..entry(0, 40, 1)
    }]));
    assert!(bad(vec![member(0, 100, 0, 0, 4)]));
    // A group overlapping the blob after it.
    assert!(bad(vec![member(0, 100, 0, 700, 4), entry(99, 50, 9)]));
    assert!(!bad(vec![
        member(0, 100, 0, 700, 4),
        member(0, 100, 700, 5, 3)
    ]));
}

fn sample() -> IndexFile {
    IndexFile {
        supersedes: vec![IndexId(Id([9; 32])), IndexId(Id([1; 32]))],
        packs: vec![
            IndexPack {
                id: PackId(Id([2; 32])),
                entries: vec![entry(100, 50, 3), entry(0, 100, 4)],
                bases: Vec::new(),
            },
            IndexPack {
                id: PackId(Id([1; 32])),
                entries: vec![entry(0, 40, 5)],
                bases: Vec::new(),
            },
        ],
    }
}

#[test]
fn encode_canonicalizes() {
    let k = keys();
    let idx = sample();
    let b = idx.encode(&k, 3, [0x44; 16]).unwrap();
    let back = IndexFile::decode(&k, &b).unwrap();
    let mut canon = idx.clone();
    canon.canonicalize();
    assert_eq!(back, canon);
    assert_eq!(back.blob_count(), 3);
    assert_eq!(back.encode_body().unwrap(), idx.encode_body().unwrap());
    assert_eq!(
        IndexFile::decode(&k, &IndexFile::default().encode(&k, 0, [0; 16]).unwrap()).unwrap(),
        IndexFile::default()
    );
}

#[test]
fn encode_rejects_bad_sets() {
    let mut dup = sample();
    dup.packs[1].id = dup.packs[0].id;
    assert!(dup.encode_body().is_err());
    let mut overlap = sample();
    overlap.packs[0].entries[0].offset = 99;
    assert!(overlap.encode_body().is_err());
    let mut empty = sample();
    empty.packs[0].entries.clear();
    assert!(empty.encode_body().is_err());
    let mut same_offset = sample();
    same_offset.packs[1].entries.push(entry(0, 40, 6));
    assert!(same_offset.encode_body().is_err());
}

#[test]
fn decode_rejects_non_canonical() {
    let body = sample().encode_body().unwrap();
    assert!(IndexFile::decode_body(&body).is_ok());
    // supersedes swapped: bytes 5..37 and 37..69.
    let mut b = body.clone();
    b[5..69].rotate_left(32);
    assert!(IndexFile::decode_body(&b).is_err());
    // Packs swapped: make a body by hand from a non-canonical value.
    let pack_record = |p: &IndexPack| {
        let mut v = p.id.0.0.to_vec();
        v.put_u32(p.entries.len() as u32);
        for e in &p.entries {
            v.put_u8(0);
            v.put_u8(0);
            v.put_u32(e.offset);
            v.put_u32(e.stored_len);
            v.put_u32(e.raw_len);
            v.put_bytes(&e.id.0.0);
        }
        v
    };
    let s = sample();
    let mut unsorted = vec![1u8, 0, 0, 0, 0, 2, 0, 0, 0];
    unsorted.extend(pack_record(&s.packs[0]));
    unsorted.extend(pack_record(&s.packs[1]));
    assert!(IndexFile::decode_body(&unsorted).is_err());
    let mut fixed_packs = vec![1u8, 0, 0, 0, 0, 2, 0, 0, 0];
    fixed_packs.extend(pack_record(&s.packs[1]));
    fixed_packs.extend(pack_record(&s.packs[0])); // entries inside still unsorted
    assert!(IndexFile::decode_body(&fixed_packs).is_err());
    let mut dup = vec![1u8, 0, 0, 0, 0, 2, 0, 0, 0];
    dup.extend(pack_record(&s.packs[1]));
    dup.extend(pack_record(&s.packs[1]));
    assert!(IndexFile::decode_body(&dup).is_err());
    assert!(matches!(
        IndexFile::decode_body(&body[..body.len() - 1]),
        Err(FormatError::Truncated { .. })
    ));
}

#[test]
fn tampering_wrong_repo_and_truncation() {
    let k = keys();
    let b = sample().encode(&k, 0, [0x44; 16]).unwrap();
    for i in 0..b.len() {
        let mut bad = b.clone();
        bad[i] ^= 0x10;
        assert!(IndexFile::decode(&k, &bad).is_err(), "byte {i}");
    }
    let other = RepoKeys::new(Id([0x34; 32]), k.master().clone());
    assert!(matches!(
        IndexFile::decode(&other, &b),
        Err(FormatError::AuthenticationFailed { .. })
    ));
    assert!(matches!(
        IndexFile::decode(&k, &b[..20]),
        Err(FormatError::Truncated { .. })
    ));
}

#[test]
fn zstd_bomb_is_rejected() {
    // 2 KiB of zstd that expands to 1 GiB + 1 MiB of zeros, sealed as an index file. The
    // frame announces its size, so it is refused before anything is decompressed; a frame
    // that does not is stopped by the streaming bound (see compress.rs tests).
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    enc.set_pledged_src_size(Some((MAX_INDEX_BODY + (1 << 20)) as u64))
        .unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..1025 {
        std::io::Write::write_all(&mut enc, &zeros).unwrap();
    }
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 100_000);
    let mut plain = vec![1u8];
    plain.extend_from_slice(&bomb);
    let k = keys();
    let sealed = k.seal_object(ObjectType::Index, [0; 16], &plain);
    assert!(matches!(
        IndexFile::decode(&k, &sealed),
        Err(FormatError::OutOfBounds { .. })
    ));
    // Garbage after the compression byte is an error, not a panic.
    let sealed = k.seal_object(ObjectType::Index, [0; 16], &[1, 0x28, 0xb5, 0x2f, 0xfd, 0]);
    assert!(IndexFile::decode(&k, &sealed).is_err());
    let sealed = k.seal_object(ObjectType::Index, [0; 16], &[2]);
    assert!(IndexFile::decode(&k, &sealed).is_err());
}

fn arb_index() -> impl Strategy<Value = IndexFile> {
    let arb_pack = (
        any::<[u8; 32]>(),
        proptest::collection::vec(
            (
                0u32..1000,
                32u32..2000,
                0u8..3,
                any::<u32>(),
                any::<[u8; 32]>(),
                1u8..5,
            ),
            1..10,
        ),
    )
        .prop_map(|(id, es)| {
            let mut offset = 0u32;
            let mut entries = Vec::new();
            for (gap, stored_len, kind, raw, bid, members) in es {
                offset += gap;
                let blob_type = if raw % 2 == 0 {
                    BlobType::Data
                } else {
                    BlobType::Tree
                };
                if kind == 2 {
                    // A compression group: members share the envelope, plaintexts follow on.
                    let mut at = 0u32;
                    for m in 0..members {
                        let mut mid = bid;
                        mid[31] ^= m;
                        let raw_len = 1 + (raw >> (m * 3)) % 5000;
                        entries.push(IndexEntry {
                            blob_type,
                            compression: Compression::Group,
                            offset,
                            stored_len,
                            raw_len,
                            id: BlobId(Id(mid)),
                            group_offset: at,
                        });
                        at += raw_len;
                    }
                } else {
                    let z = kind == 1;
                    entries.push(IndexEntry {
                        blob_type,
                        compression: if z {
                            Compression::Zstd
                        } else {
                            Compression::Raw
                        },
                        offset,
                        stored_len,
                        raw_len: if z { raw } else { stored_len - 32 },
                        id: BlobId(Id(bid)),
                        group_offset: 0,
                    });
                }
                offset += stored_len;
            }
            IndexPack {
                id: PackId(Id(id)),
                entries,
                bases: Vec::new(),
            }
        });
    (
        proptest::collection::btree_set(any::<[u8; 32]>(), 0..4),
        proptest::collection::btree_map(any::<[u8; 32]>(), arb_pack, 0..6),
    )
        .prop_map(|(sup, packs)| IndexFile {
            supersedes: sup.into_iter().map(|s| IndexId(Id(s))).collect(),
            packs: packs
                .into_iter()
                .map(|(id, mut p)| {
                    p.id = PackId(Id(id));
                    p
                })
                .collect(),
        })
}

proptest! {
    #[test]
    fn round_trip(idx in arb_index(), level in 0i32..4, salt: [u8; 16]) {
        let k = keys();
        let b = idx.encode(&k, level, salt).unwrap();
        prop_assert_eq!(IndexFile::decode(&k, &b).unwrap(), idx.clone());
        prop_assert_eq!(IndexFile::decode_body(&idx.encode_body().unwrap()).unwrap(), idx);
    }

    #[test]
    fn decode_never_panics(b: Vec<u8>) {
        let _ = IndexFile::decode_body(&b);
        let mut v = vec![1u8];
        v.extend_from_slice(&b);
        let _ = IndexFile::decode_body(&v);
        let _ = IndexFile::decode(&keys(), &b);
    }
}

#[test]
fn stored_shares_split_groups_by_plaintext() {
    let entries = vec![
        entry(0, 100, 1),
        member(100, 90, 0, 300, 2),
        member(100, 90, 300, 600, 3),
        member(190, 50, 0, 7, 4),
        member(190, 50, 7, 7, 5),
        entry(240, 40, 6),
    ];
    assert_eq!(stored_shares(&entries), vec![100, 30, 60, 25, 25, 40]);
    assert_eq!(stored_shares(&entries).iter().sum::<u64>(), 280);
}
