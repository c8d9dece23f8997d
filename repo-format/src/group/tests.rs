use super::*;
use crate::crypto::MasterKey;
use crate::pack::{
    FinishedPack, PackWriter, decode_header_plain, decode_pack_header, open_blob, seal_blob,
};
use proptest::prelude::*;

fn keys() -> RepoKeys {
    RepoKeys::new(Id([0x44; 32]), MasterKey::from_bytes([4; 72]))
}

fn text(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| b"INSERT INTO accounts VALUES "[(i + seed as usize) % 28])
        .collect()
}

/// Incompressible bytes (xorshift64).
pub(super) fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A pack of one single blob, one group of `datas`, and another single blob.
fn pack_with_group(k: &RepoKeys, datas: &[Vec<u8>]) -> FinishedPack {
    let mut w = PackWriter::new();
    let first = b"alone before".to_vec();
    w.add(seal_blob(
        k,
        BlobType::Data,
        k.blob_id(&first),
        &first,
        3,
        [1; 16],
    ));
    let blobs: Vec<(BlobId, &[u8])> = datas.iter().map(|d| (k.blob_id(d), d.as_slice())).collect();
    w.add_group(seal_group(k, BlobType::Data, &blobs, 3, [2; 16]).expect("compressible group"));
    let last = vec![9u8; 3000];
    w.add(seal_blob(
        k,
        BlobType::Data,
        k.blob_id(&last),
        &last,
        3,
        [3; 16],
    ));
    w.finish(k, [4; 16]).expect("finish")
}

fn envelope<'a>(p: &'a FinishedPack, e: &IndexEntry) -> &'a [u8] {
    &p.bytes[e.offset as usize..e.end() as usize]
}

#[test]
fn grouped_blobs_round_trip_through_a_pack() {
    let k = keys();
    let datas = vec![text(5000, 0), text(7, 1), text(20_000, 2)];
    let p = pack_with_group(&k, &datas);
    assert_eq!(p.entries.len(), 5);
    let g = &p.entries[1..4];
    assert!(g.iter().all(|e| e.is_grouped()));
    assert!(
        g.iter()
            .all(|e| e.offset == g[0].offset && e.stored_len == g[0].stored_len)
    );
    assert_eq!(
        g.iter().map(|e| e.group_offset).collect::<Vec<_>>(),
        vec![0, 5000, 5007]
    );
    // The group compresses: far smaller than its plaintexts.
    assert!((g[0].stored_len as usize) < 25_007 / 4);
    // The blob after the group starts where the group's envelope ends.
    assert_eq!(u64::from(p.entries[4].offset), g[0].end());
    let group = open_group(&k, &g[1], envelope(&p, &g[1])).expect("open group");
    assert_eq!(group.len(), 25_007);
    for (e, d) in g.iter().zip(&datas) {
        assert_eq!(&blob_in_group(&k, e, &group).expect("blob"), d);
        assert_eq!(&open_blob(&k, e, envelope(&p, e)).expect("open_blob"), d);
    }
    // The header alone gives the same entries (repair index).
    assert_eq!(
        decode_pack_header(&k, &p.bytes).expect("header").entries,
        p.entries
    );
}

#[test]
fn a_member_read_with_a_wrong_range_or_from_another_group_fails() {
    let k = keys();
    let datas = vec![text(3000, 0), text(3000, 5)];
    let p = pack_with_group(&k, &datas);
    let (a, b) = (p.entries[1], p.entries[2]);
    let group = open_group(&k, &a, envelope(&p, &a)).expect("open");
    // b's range under a's id: the keyed hash does not match.
    let forged = IndexEntry { id: a.id, ..b };
    assert!(matches!(
        blob_in_group(&k, &forged, &group),
        Err(FormatError::IdMismatch { .. })
    ));
    // A range past the group's end.
    let past = IndexEntry {
        group_offset: 5000,
        ..b
    };
    assert!(blob_in_group(&k, &past, &group).is_err());
    // Another group with a's entry: another plaintext, so another id.
    let other: Vec<Vec<u8>> = vec![text(3000, 9), text(3000, 11)];
    let q = pack_with_group(&k, &other);
    let env = envelope(&q, &q.entries[1]);
    let moved = IndexEntry {
        stored_len: env.len() as u32,
        ..a
    };
    assert!(matches!(
        open_blob(&k, &moved, env),
        Err(FormatError::IdMismatch { .. })
    ));
    // A group envelope read as a single zstd blob: the AAD names the blob id, not zeros.
    let single = IndexEntry {
        compression: Compression::Zstd,
        group_offset: 0,
        ..a
    };
    assert!(matches!(
        open_blob(&k, &single, envelope(&p, &a)),
        Err(FormatError::AuthenticationFailed { .. })
    ));
    // As a tree group: another AAD type.
    let tree = IndexEntry {
        blob_type: BlobType::Tree,
        ..a
    };
    assert!(open_group(&k, &tree, envelope(&p, &a)).is_err());
}

#[test]
fn every_flipped_bit_in_a_group_is_detected() {
    let k = keys();
    let datas = vec![text(300, 0), text(200, 3)];
    let p = pack_with_group(&k, &datas);
    let e = p.entries[2];
    let env = envelope(&p, &e).to_vec();
    for bit in 0..env.len() * 8 {
        let mut bad = env.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        assert!(open_blob(&k, &e, &bad).is_err(), "bit {bit} not detected");
    }
}

#[test]
fn groups_that_do_not_apply_are_declined() {
    let k = keys();
    let a = text(100, 0);
    let one = [(k.blob_id(&a), a.as_slice())];
    assert!(seal_group(&k, BlobType::Data, &one, 3, [0; 16]).is_none());
    let two = [one[0], one[0]];
    assert!(
        seal_group(&k, BlobType::Data, &two, 0, [0; 16]).is_none(),
        "level 0 is raw"
    );
    let empty: &[u8] = &[];
    let with_empty = [one[0], (k.blob_id(empty), empty)];
    assert!(seal_group(&k, BlobType::Data, &with_empty, 3, [0; 16]).is_none());
    // Incompressible: a frame would be larger.
    let noise = noise(4096, 7);
    let n1 = &noise[..2048];
    let n2 = &noise[2048..];
    let noisy = [(k.blob_id(n1), n1), (k.blob_id(n2), n2)];
    assert!(seal_group(&k, BlobType::Data, &noisy, 3, [0; 16]).is_none());
}

#[test]
fn a_joined_group_is_the_group_of_its_members() {
    let k = keys();
    let (a, b) = (text(3000, 1), text(5000, 2));
    let blobs = [(k.blob_id(&a), a.as_slice()), (k.blob_id(&b), b.as_slice())];
    let plain = [a.as_slice(), b.as_slice()].concat();
    let members = [(blobs[0].0, a.len()), (blobs[1].0, b.len())];
    let joined = seal_joined_group(&k, BlobType::Data, &plain, &members, 3, [5; 16]).expect("g");
    let listed = seal_group(&k, BlobType::Data, &blobs, 3, [5; 16]).expect("g");
    assert_eq!(joined.bytes, listed.bytes);
    assert_eq!(joined.entries, listed.entries);
    // Lengths that do not add up to the buffer are declined, not sealed, plain or based.
    let base_blob = text(4000, 3);
    let base = [(k.blob_id(&base_blob), base_blob.as_slice())];
    assert!(seal_joined_based_group(&k, &plain, &members, &base, 3, [5; 16]).is_some());
    for wrong in [
        [(blobs[0].0, a.len()), (blobs[1].0, b.len() - 1)],
        [(blobs[0].0, a.len()), (blobs[1].0, b.len() + 1)],
        [(blobs[0].0, 0), (blobs[1].0, a.len() + b.len())],
        // Would wrap to the buffer's length in a wrapping sum.
        [(blobs[0].0, usize::MAX), (blobs[1].0, plain.len() + 1)],
    ] {
        assert!(seal_joined_group(&k, BlobType::Data, &plain, &wrong, 3, [5; 16]).is_none());
        assert!(seal_joined_based_group(&k, &plain, &wrong, &base, 3, [5; 16]).is_none());
    }
}

#[test]
fn header_rules_for_groups() {
    let id = BlobId(Id([7; 32]));
    let entry = |compression: u8, stored: u32, raw: u32| {
        let mut b = vec![0u8, compression];
        b.extend_from_slice(&stored.to_le_bytes());
        b.extend_from_slice(&raw.to_le_bytes());
        b.extend_from_slice(&id.0.0);
        b
    };
    let header = |entries: &[Vec<u8>]| {
        let mut b = vec![1u8];
        b.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for e in entries {
            b.extend_from_slice(e);
        }
        b
    };
    // A continuation needs a group before it.
    let lone = decode_header_plain(&header(&[entry(2, 0, 10)]))
        .expect("plain parses")
        .0;
    assert!(crate::pack::index_entries(&lone).is_err());
    let after_single = decode_header_plain(&header(&[entry(1, 40, 10), entry(2, 0, 10)]))
        .expect("parses")
        .0;
    assert!(crate::pack::index_entries(&after_single).is_err());
    // A grouped blob has at least one byte.
    assert!(decode_header_plain(&header(&[entry(2, 40, 0)])).is_err());
    // More than MAX_GROUP_RAW in one group.
    let big = (MAX_GROUP_RAW / 2 + 1) as u32;
    let over = decode_header_plain(&header(&[entry(2, 40, big), entry(2, 0, big)]))
        .expect("parses")
        .0;
    assert!(crate::pack::index_entries(&over).is_err());
    // Unknown compression.
    assert!(decode_header_plain(&header(&[entry(4, 40, 8)])).is_err());
    // Two groups and a single: offsets and group offsets.
    let ok = decode_header_plain(&header(&[
        entry(2, 40, 10),
        entry(2, 0, 20),
        entry(2, 50, 5),
        entry(0, 37, 5),
    ]))
    .expect("parses")
    .0;
    let e = crate::pack::index_entries(&ok).expect("valid");
    let got: Vec<(u32, u32, u32)> = e
        .iter()
        .map(|e| (e.offset, e.stored_len, e.group_offset))
        .collect();
    assert_eq!(got, vec![(0, 40, 0), (0, 40, 10), (40, 50, 0), (90, 37, 0)]);
    for x in &e {
        assert_eq!(
            crate::pack::index_entries(&[x.pack_entry()]).is_ok(),
            x.group_offset == 0,
            "a continuation alone is not a valid header"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any mix of single blobs and groups (of text or noise) round-trips through a pack, its
    /// header and the index entries it gives.
    #[test]
    fn packs_with_groups_round_trip(
        items in proptest::collection::vec(
            (any::<bool>(), proptest::collection::vec((1usize..3000, any::<u8>(), any::<bool>()), 1..6)),
            1..6,
        ),
    ) {
        let k = keys();
        let mut w = PackWriter::new();
        let mut expect = Vec::new();
        for (i, (grouped, blobs)) in items.iter().enumerate() {
            let datas: Vec<Vec<u8>> = blobs
                .iter()
                .map(|&(n, seed, noisy)| if noisy {
                    noise(n, u64::from(seed))
                } else {
                    text(n, seed)
                })
                .collect();
            let pairs: Vec<(BlobId, &[u8])> = datas.iter().map(|d| (k.blob_id(d), d.as_slice())).collect();
            match seal_group(&k, BlobType::Data, &pairs, 3, [i as u8; 16]).filter(|_| *grouped) {
                Some(g) => w.add_group(g),
                None => {
                    for (id, d) in &pairs {
                        w.add(seal_blob(&k, BlobType::Data, *id, d, 3, [i as u8; 16]));
                    }
                }
            }
            expect.extend(datas);
        }
        let p = w.finish(&k, [0xee; 16]).expect("finish");
        prop_assert_eq!(decode_pack_header(&k, &p.bytes).expect("header").entries, p.entries.clone());
        prop_assert_eq!(p.entries.len(), expect.len());
        for (e, d) in p.entries.iter().zip(&expect) {
            prop_assert_eq!(&open_blob(&k, e, envelope(&p, e)).expect("blob"), d);
        }
        // The index file of this pack round-trips too.
        let idx = crate::IndexFile {
            supersedes: vec![],
            packs: vec![crate::IndexPack { id: p.id, entries: p.entries.clone(), bases: p.bases.clone() }],
        };
        let sealed = idx.encode(&k, 3, [5; 16]).expect("encode");
        prop_assert_eq!(crate::IndexFile::decode(&k, &sealed).expect("decode"), idx);
    }
}

#[test]
fn group_cache_opens_each_group_once_and_keeps_failures() {
    let k = keys();
    let datas = vec![text(4000, 0), text(4000, 1), text(4000, 2)];
    let p = pack_with_group(&k, &datas);
    let mut cache = GroupCache::new();
    for (e, d) in p.entries[1..4].iter().zip(&datas) {
        assert_eq!(&cache.open(&k, e, envelope(&p, e)).expect("member"), d);
    }
    // A cached group serves members whatever bytes come with them (they are its bytes).
    assert_eq!(
        cache.open(&k, &p.entries[2], &[]).expect("cached"),
        datas[1]
    );
    // Single blobs go around the cache.
    let single = p.entries[0];
    assert_eq!(
        cache
            .open(&k, &single, envelope(&p, &single))
            .expect("single"),
        b"alone before"
    );
    assert!(same_group(&p.entries[1], &p.entries[3]));
    assert!(!same_group(&p.entries[0], &p.entries[1]));
    // A damaged group fails for every member, opened once.
    let mut bad = envelope(&p, &p.entries[1]).to_vec();
    bad[40] ^= 1;
    let mut cache = GroupCache::new();
    for e in &p.entries[1..4] {
        assert!(matches!(
            cache.open(&k, e, &bad),
            Err(FormatError::AuthenticationFailed { .. })
        ));
    }
}

#[test]
fn a_group_with_bytes_after_its_members_is_reported() {
    let k = keys();
    let datas = vec![text(3000, 0), text(3000, 1)];
    let p = pack_with_group(&k, &datas);
    let (first, last) = (p.entries[1], p.entries[2]);
    let mut cache = GroupCache::new();
    for e in [first, last] {
        cache.open(&k, &e, envelope(&p, &e)).expect("member");
    }
    assert_eq!(cache.check_complete(&last), Ok(()));
    // A header that leaves the last 1000 bytes of the group to no member.
    let short = IndexEntry {
        raw_len: last.raw_len - 1000,
        ..last
    };
    assert!(matches!(
        cache.check_complete(&short),
        Err(FormatError::Corrupted { .. })
    ));
    // Nothing held: nothing to say.
    assert_eq!(GroupCache::new().check_complete(&last), Ok(()));
}
