//! Based compression groups: sealing, packs, headers, index files, opening.

use std::collections::HashMap;

use super::*;
use crate::crypto::MasterKey;
use crate::format::{MAX_BASE_IDS, MAX_BASE_RAW};
use crate::index::{GroupBase, IndexFile, IndexPack};
use crate::pack::{
    FinishedPack, PackWriter, decode_header_plain, decode_pack_header, encode_header_plain,
    open_blob, seal_blob,
};
use proptest::prelude::*;

fn keys() -> RepoKeys {
    RepoKeys::new(Id([0x45; 32]), MasterKey::from_bytes([5; 72]))
}

/// Dump-like rows: `n` bytes, row numbers from `first`.
fn rows(n: usize, first: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 64);
    let mut i = first;
    while out.len() < n {
        let x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        out.extend_from_slice(
            format!("{i}\t{}\t{}\tpayload-{:x}\n", i % 97, x % 100_000, x).as_bytes(),
        );
        i += 1;
    }
    out.truncate(n);
    out
}

/// `base` with a few bytes changed every `every` bytes: a chunk that replaces it.
fn edited(base: &[u8], every: usize, seed: u8) -> Vec<u8> {
    let mut out = base.to_vec();
    for (j, i) in (0..out.len()).step_by(every).enumerate() {
        out[i] = b'a' + (seed.wrapping_add(j as u8) % 26);
    }
    out
}

fn pairs<'a>(k: &RepoKeys, datas: &'a [Vec<u8>]) -> Vec<(BlobId, &'a [u8])> {
    datas.iter().map(|d| (k.blob_id(d), d.as_slice())).collect()
}

fn envelope<'a>(p: &'a FinishedPack, e: &IndexEntry) -> &'a [u8] {
    &p.bytes[e.offset as usize..e.end() as usize]
}

/// Opens every blob of `p`, based groups with their bases from `known`.
fn open_all(k: &RepoKeys, p: &FinishedPack, known: &HashMap<BlobId, Vec<u8>>) -> Vec<Vec<u8>> {
    p.entries
        .iter()
        .map(|e| {
            if e.compression != Compression::Based {
                return open_blob(k, e, envelope(p, e)).expect("blob");
            }
            let base = p.bases.iter().find(|b| b.offset == e.offset).expect("base");
            let prefix: Vec<u8> = base.ids.iter().flat_map(|id| known[id].clone()).collect();
            let group = open_based_group(k, e, envelope(p, e), &prefix).expect("group");
            blob_in_group(k, e, &group).expect("member")
        })
        .collect()
}

#[test]
fn a_based_group_round_trips_and_is_far_smaller_than_a_plain_one() {
    let k = keys();
    let base: Vec<Vec<u8>> = (0..4).map(|i| rows(16 << 10, i * 1000)).collect();
    let members: Vec<Vec<u8>> = base
        .iter()
        .enumerate()
        .map(|(i, b)| edited(b, 997, i as u8))
        .collect();
    let plain = seal_group(&k, BlobType::Data, &pairs(&k, &members), 3, [1; 16]).expect("plain");
    let based =
        seal_based_group(&k, &pairs(&k, &members), &pairs(&k, &base), 3, [2; 16]).expect("based");
    assert!(plain.base.is_empty());
    assert_eq!(
        based.base,
        base.iter().map(|b| k.blob_id(b)).collect::<Vec<_>>()
    );
    assert!(
        based
            .entries
            .iter()
            .all(|e| e.compression == Compression::Based)
    );
    // The edits are what the based frame stores: a fraction of the plain frame.
    assert!(
        based.bytes.len() * 4 < plain.bytes.len(),
        "based {} bytes, plain {}",
        based.bytes.len(),
        plain.bytes.len()
    );

    let mut w = PackWriter::new();
    let single = b"a single blob".to_vec();
    w.add(seal_blob(
        &k,
        BlobType::Data,
        k.blob_id(&single),
        &single,
        3,
        [3; 16],
    ));
    w.add_group(based);
    w.add_group(plain);
    let p = w.finish(&k, [4; 16]).expect("finish");
    assert_eq!(p.bases.len(), 1);
    assert_eq!(p.bases[0].offset, p.entries[1].offset);
    assert_eq!(
        decode_pack_header(&k, &p.bytes).expect("header").bases,
        p.bases
    );
    let known: HashMap<BlobId, Vec<u8>> = base.iter().map(|b| (k.blob_id(b), b.clone())).collect();
    let mut want = vec![single];
    want.extend(members.iter().cloned());
    want.extend(members.iter().cloned());
    assert_eq!(open_all(&k, &p, &known), want);

    // Without its base, or with another, a based group does not open.
    let e = &p.entries[1];
    assert!(open_group(&k, e, envelope(&p, e)).is_err());
    assert!(open_blob(&k, e, envelope(&p, e)).is_err());
    let mut wrong: Vec<u8> = base.iter().rev().flatten().copied().collect();
    let fails = |prefix: &[u8]| match open_based_group(&k, e, envelope(&p, e), prefix) {
        Err(_) => true,
        Ok(group) => blob_in_group(&k, e, &group).is_err(),
    };
    assert!(fails(&wrong), "a base in another order");
    wrong = base.iter().flatten().copied().collect();
    wrong[100] ^= 1;
    assert!(fails(&wrong), "a base with one byte changed");
    assert!(
        open_based_group(&k, e, envelope(&p, e), &[]).is_err(),
        "no base"
    );
    // A plain group's member is not opened as based.
    let plain_member = &p.entries[6];
    assert!(open_based_group(&k, plain_member, envelope(&p, plain_member), &wrong).is_err());
}

/// A stream's last chunk changes whenever anything before it does (an RDB ends in a checksum):
/// alone, it is still stored as its difference, a based group of one member.
#[test]
fn a_single_blob_is_a_based_group_of_one() {
    let k = keys();
    let base = rows(50 << 10, 0);
    let mut member = base.clone();
    member.truncate(member.len() - 8);
    member.extend_from_slice(b"checksum");
    let based = seal_based_group(
        &k,
        &pairs(&k, &[member.clone()]),
        &pairs(&k, std::slice::from_ref(&base)),
        3,
        [6; 16],
    )
    .expect("one member with a base");
    let alone = seal_blob(&k, BlobType::Data, k.blob_id(&member), &member, 3, [7; 16]);
    assert!(
        based.bytes.len() * 20 < alone.bytes.len(),
        "based {} bytes, alone {}",
        based.bytes.len(),
        alone.bytes.len()
    );
    assert_eq!(based.entries.len(), 1);

    let mut w = PackWriter::new();
    w.add_group(based);
    let p = w.finish(&k, [8; 16]).expect("finish");
    assert_eq!(
        (p.entries[0].compression, p.entries[0].group_offset),
        (Compression::Based, 0)
    );
    assert_eq!(
        decode_pack_header(&k, &p.bytes).expect("header").entries,
        p.entries
    );
    let known = HashMap::from([(k.blob_id(&base), base)]);
    assert_eq!(open_all(&k, &p, &known), vec![member]);
    let idx = IndexFile {
        supersedes: vec![],
        packs: vec![IndexPack {
            id: p.id,
            entries: p.entries.clone(),
            bases: p.bases.clone(),
        }],
    };
    let sealed = idx.encode(&k, 3, [9; 16]).expect("encode");
    assert_eq!(IndexFile::decode(&k, &sealed).expect("decode"), idx);
}

#[test]
fn a_based_group_is_refused_when_its_base_is_not_one() {
    let k = keys();
    let base: Vec<Vec<u8>> = (0..2).map(|i| rows(8 << 10, i * 500)).collect();
    let members: Vec<Vec<u8>> = base.iter().map(|b| edited(b, 501, 7)).collect();
    let m = pairs(&k, &members);
    let b = pairs(&k, &base);
    assert!(seal_based_group(&k, &m, &b, 3, [0; 16]).is_some());
    assert!(
        seal_based_group(&k, &m, &[], 3, [0; 16]).is_none(),
        "empty base"
    );
    assert!(
        seal_based_group(&k, &m, &[b[0], b[0]], 3, [0; 16]).is_none(),
        "a base id twice"
    );
    assert!(
        seal_based_group(&k, &m, &[b[0], m[1]], 3, [0; 16]).is_none(),
        "a member as base"
    );
    assert!(
        seal_based_group(&k, &m, &b, 0, [0; 16]).is_none(),
        "level 0"
    );
    let big = rows(MAX_BASE_RAW + 1, 0);
    let big_base = [(k.blob_id(&big), big.as_slice())];
    assert!(
        seal_based_group(&k, &m, &big_base, 3, [0; 16]).is_none(),
        "base over 4 MiB"
    );
    let many: Vec<Vec<u8>> = (0..=MAX_BASE_IDS).map(|i| rows(40, i * 3)).collect();
    assert!(
        seal_based_group(&k, &m, &pairs(&k, &many), 3, [0; 16]).is_none(),
        "256 base blobs"
    );
    // Incompressible members: the based frame would not be smaller.
    let noise: Vec<Vec<u8>> = (0..2u64)
        .map(|s| super::tests::noise(4096, s * 7919 + 1))
        .collect();
    assert!(seal_based_group(&k, &pairs(&k, &noise), &b, 3, [0; 16]).is_none());
}

/// A header plaintext of `entries` (type, compression, stored_len, raw_len, id byte) and then
/// `tail` bytes.
fn header(entries: &[(u8, u8, u32, u32, u8)], tail: &[u8]) -> Vec<u8> {
    let mut b = vec![1u8];
    b.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for &(t, c, stored, raw, id) in entries {
        b.extend_from_slice(&[t, c]);
        b.extend_from_slice(&stored.to_le_bytes());
        b.extend_from_slice(&raw.to_le_bytes());
        b.extend_from_slice(&[id; 32]);
    }
    b.extend_from_slice(tail);
    b
}

fn base_record(ids: &[u8]) -> Vec<u8> {
    let mut b = vec![ids.len() as u8];
    for &i in ids {
        b.extend_from_slice(&[i; 32]);
    }
    b
}

#[test]
fn pack_headers_name_one_base_per_based_group() {
    let group = [(0, 3, 60, 10, 1), (0, 3, 0, 20, 2)];
    let two = [
        (0, 3, 60, 10, 1),
        (0, 3, 0, 20, 2),
        (0, 3, 50, 5, 3),
        (0, 3, 0, 5, 4),
    ];
    let (entries, bases) = decode_header_plain(&header(&group, &base_record(&[7, 8]))).expect("ok");
    assert_eq!(entries.len(), 2);
    assert_eq!(bases, vec![vec![BlobId(Id([7; 32])), BlobId(Id([8; 32]))]]);
    assert_eq!(
        encode_header_plain(&entries, &bases),
        header(&group, &base_record(&[7, 8]))
    );
    let mut tail = base_record(&[7]);
    tail.extend(base_record(&[9, 7]));
    let (_, bases) = decode_header_plain(&header(&two, &tail)).expect("two groups");
    assert_eq!(bases.len(), 2);
    // No base, an empty one, one id twice, one base too many, a based group of tree blobs.
    assert!(decode_header_plain(&header(&group, &[])).is_err());
    assert!(decode_header_plain(&header(&group, &[0])).is_err());
    assert!(decode_header_plain(&header(&group, &base_record(&[7, 7]))).is_err());
    let mut extra = base_record(&[7]);
    extra.extend(base_record(&[8]));
    assert!(decode_header_plain(&header(&group, &extra)).is_err());
    let tree = [(1, 3, 60, 10, 1), (1, 3, 0, 20, 2)];
    assert!(decode_header_plain(&header(&tree, &base_record(&[7]))).is_err());
    // A based member cannot continue a plain group, nor a plain member a based one.
    let mixed = [(0, 2, 60, 10, 1), (0, 3, 0, 20, 2)];
    let (entries, _) = decode_header_plain(&header(&mixed, &[])).expect("parses");
    assert!(crate::pack::index_entries(&entries).is_err());
    let mixed = [(0, 3, 60, 10, 1), (0, 2, 0, 20, 2)];
    let (entries, _) = decode_header_plain(&header(&mixed, &base_record(&[7]))).expect("parses");
    assert!(crate::pack::index_entries(&entries).is_err());
}

#[test]
fn index_files_need_exactly_the_bases_of_their_based_groups() {
    let k = keys();
    let base: Vec<Vec<u8>> = (0..3).map(|i| rows(8 << 10, i * 400)).collect();
    let members: Vec<Vec<u8>> = base.iter().map(|b| edited(b, 301, 1)).collect();
    let mut w = PackWriter::new();
    w.add_group(
        seal_based_group(&k, &pairs(&k, &members), &pairs(&k, &base), 3, [1; 16]).expect("g"),
    );
    let p = w.finish(&k, [2; 16]).expect("finish");
    let good = IndexFile {
        supersedes: vec![],
        packs: vec![IndexPack {
            id: p.id,
            entries: p.entries.clone(),
            bases: p.bases.clone(),
        }],
    };
    let body = good.encode_body().expect("encode");
    assert_eq!(IndexFile::decode_body(&body).expect("decode"), good);
    let broken = |f: &dyn Fn(&mut IndexPack)| {
        let mut bad = good.clone();
        f(&mut bad.packs[0]);
        bad.encode_body().is_err()
    };
    assert!(broken(&|p| p.bases.clear()), "no base");
    assert!(
        broken(&|p| p.bases[0].offset += 1),
        "a base at no based group"
    );
    assert!(broken(&|p| p.bases[0].ids.clear()), "an empty base");
    assert!(
        broken(&|p| {
            let id = p.bases[0].ids[0];
            p.bases[0].ids.push(id);
        }),
        "an id twice"
    );
    assert!(broken(&|p| p.bases.push(GroupBase {
        offset: 1000,
        ids: vec![BlobId(Id([1; 32]))]
    })));
    // A based group without its first member.
    assert!(broken(&|p| {
        p.entries.remove(0);
    }));
    // The body without its base record does not parse.
    assert!(IndexFile::decode_body(&body[..body.len() - 32 * 3 - 1]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Packs mixing single blobs, plain groups and based groups (on earlier blobs, some of them
    /// edited) round-trip through their header and index file, and every blob opens.
    #[test]
    fn packs_with_based_groups_round_trip(
        items in proptest::collection::vec(
            (0u8..3, proptest::collection::vec((1usize..6000, 0usize..5000, 1usize..900), 1..6)),
            1..6,
        ),
    ) {
        let k = keys();
        let mut known: HashMap<BlobId, Vec<u8>> = HashMap::new();
        let mut w = PackWriter::new();
        let mut want = Vec::new();
        for (i, (kind, blobs)) in items.iter().enumerate() {
            let base: Vec<Vec<u8>> = blobs.iter().map(|&(n, first, _)| rows(n, first + 10_000 * i)).collect();
            let members: Vec<Vec<u8>> = blobs
                .iter()
                .zip(&base)
                .map(|(&(_, _, every), b)| edited(b, every, i as u8))
                .collect();
            for b in &base {
                known.insert(k.blob_id(b), b.clone());
            }
            let m = pairs(&k, &members);
            let salt = [i as u8; 16];
            let sealed = match kind {
                0 => None,
                1 => seal_group(&k, BlobType::Data, &m, 3, salt),
                _ => seal_based_group(&k, &m, &pairs(&k, &base), 3, salt),
            };
            if *kind == 2 && m.iter().all(|(_, d)| d.len() >= 2000) {
                prop_assert!(sealed.is_some(), "edited rows against their originals compress");
            }
            match sealed {
                Some(g) => w.add_group(g),
                None => {
                    for (id, d) in &m {
                        w.add(seal_blob(&k, BlobType::Data, *id, d, 3, salt));
                    }
                }
            }
            want.extend(members);
        }
        let p = w.finish(&k, [0xee; 16]).expect("finish");
        let header = decode_pack_header(&k, &p.bytes).expect("header");
        prop_assert_eq!(&header.entries, &p.entries);
        prop_assert_eq!(&header.bases, &p.bases);
        prop_assert_eq!(open_all(&k, &p, &known), want);
        let idx = IndexFile {
            supersedes: vec![],
            packs: vec![IndexPack { id: p.id, entries: p.entries.clone(), bases: p.bases.clone() }],
        };
        let sealed = idx.encode(&k, 3, [5; 16]).expect("encode");
        prop_assert_eq!(IndexFile::decode(&k, &sealed).expect("decode"), idx);
    }
}
