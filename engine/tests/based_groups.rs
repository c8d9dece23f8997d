//! Based compression groups (SPEC §7) in a repository: members read through their bases (and
//! never as other bytes when a base is missing or breaks the one-step rule), `check --read-data`
//! verifies them, `repair index` keeps the bases and `check` compares them with the header;
//! prune, which does not keep bases yet, refuses and deletes nothing. The groups are written here with repo-format directly, as a
//! cairn that writes them would.

mod common;

use common::grace::stream;
use common::{Rng, env};
use engine::backend::FileType;
use engine::checker::{CheckOptions, FindingKind, ReadData, check};
use engine::progress::NoProgress;
use engine::prune::{MaxUnused, PruneOptions, prune};
use engine::repair::repair_index;
use engine::repository::Repository;
use repo_format::{
    BlobId, BlobType, Compression, GroupBase, IndexFile, IndexPack, PackId, PackWriter,
    seal_based_group, seal_blob,
};

/// Stores `base` as single blobs in one pack and `members` as a based group on them in another,
/// with an index file naming both; returns the based pack's id and its bases.
fn add_based_pack(
    repo: &Repository,
    base: &[Vec<u8>],
    members: &[Vec<u8>],
) -> (PackId, Vec<GroupBase>) {
    let k = repo.keys();
    let mut w = PackWriter::new();
    for (i, b) in base.iter().enumerate() {
        w.add(seal_blob(
            k,
            BlobType::Data,
            k.blob_id(b),
            b,
            3,
            [i as u8; 16],
        ));
    }
    let plain = w.finish(k, [0x10; 16]).expect("base pack");
    let m: Vec<(BlobId, &[u8])> = members.iter().map(|d| (k.blob_id(d), &d[..])).collect();
    let b: Vec<(BlobId, &[u8])> = base.iter().map(|d| (k.blob_id(d), &d[..])).collect();
    let mut w = PackWriter::new();
    w.add_group(seal_based_group(k, &m, &b, 3, [0x20; 16]).expect("based group"));
    let based = w.finish(k, [0x30; 16]).expect("based pack");
    assert_eq!(based.bases.len(), 1);
    let file = IndexFile {
        supersedes: Vec::new(),
        packs: vec![
            IndexPack {
                id: plain.id,
                entries: plain.entries.clone(),
                bases: Vec::new(),
            },
            IndexPack {
                id: based.id,
                entries: based.entries.clone(),
                bases: based.bases.clone(),
            },
        ],
    };
    for p in [&plain, &based] {
        let id = repo
            .put_object(FileType::Pack, p.bytes.clone())
            .expect("put pack");
        assert_eq!(id, p.id.0);
    }
    let bytes = file.encode(k, 3, [0x40; 16]).expect("encode index");
    repo.put_object(FileType::Index, bytes).expect("put index");
    (based.id, based.bases)
}

/// Stores `members` as a based group on `base`, blobs the repository already holds; returns
/// the pack's id.
fn add_based_pack_on(repo: &Repository, base: &[Vec<u8>], members: &[Vec<u8>]) -> PackId {
    let k = repo.keys();
    let m: Vec<(BlobId, &[u8])> = members.iter().map(|d| (k.blob_id(d), &d[..])).collect();
    let b: Vec<(BlobId, &[u8])> = base.iter().map(|d| (k.blob_id(d), &d[..])).collect();
    let mut w = PackWriter::new();
    w.add_group(seal_based_group(k, &m, &b, 3, [0x60; 16]).expect("based group"));
    let p = w.finish(k, [0x70; 16]).expect("pack");
    repo.put_object(FileType::Pack, p.bytes.clone())
        .expect("put pack");
    let file = IndexFile {
        supersedes: Vec::new(),
        packs: vec![IndexPack {
            id: p.id,
            entries: p.entries,
            bases: p.bases,
        }],
    };
    repo.put_object(
        FileType::Index,
        file.encode(k, 3, [0x71; 16]).expect("encode"),
    )
    .expect("put index");
    p.id
}

/// Day-1 rows and day-2 rows with a few bytes changed in each.
fn base_and_members() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut rng = Rng(7);
    let base: Vec<Vec<u8>> = (0..3).map(|_| rng.text(12 << 10)).collect();
    let members = base
        .iter()
        .map(|b| {
            let mut m = b.clone();
            for i in (0..m.len()).step_by(1000) {
                m[i] = b'#';
            }
            m
        })
        .collect();
    (base, members)
}

#[test]
fn prune_refuses_a_repository_with_based_groups_and_deletes_nothing() {
    let env = env();
    let repo = env.open();
    stream(&repo, Rng(1).text(100_000));
    let (base, members) = base_and_members();
    add_based_pack(&repo, &base, &members);
    let before = env.storage().all_objects();
    let repo = env.open();
    let opts = PruneOptions {
        max_unused: MaxUnused::Percent(0.0),
        ..PruneOptions::default()
    };
    let err = prune(&repo, &opts, &NoProgress).expect_err("prune must refuse");
    assert!(
        err.to_string().contains("based compression groups"),
        "unexpected error: {err}"
    );
    // Only prune's own bookkeeping (a lease) may have come or gone; no pack, index file or
    // snapshot.
    let kept = |s: &std::collections::BTreeSet<String>| {
        s.iter()
            .filter(|p| !p.starts_with("locks/") && !p.starts_with("leases/"))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(kept(&env.storage().all_objects()), kept(&before));
}

#[test]
fn check_compares_bases_and_repair_index_keeps_them() {
    let env = env();
    let repo = env.open();
    let (base, members) = base_and_members();
    let (pack, bases) = add_based_pack(&repo, &base, &members);
    let repo = env.open();
    let structure = CheckOptions::default();
    let report = check(&repo, &structure, &NoProgress).expect("check");
    assert!(report.is_clean(), "{:?}", report.errors);

    // An index file that gives the group another base disagrees with the pack header.
    let k = repo.keys();
    let mut other = repo
        .load_index(&repo_format::IndexId(
            repo.list_ids(FileType::Index).expect("list")[0],
        ))
        .expect("load index");
    let p = other.packs.iter_mut().find(|p| p.id == pack).expect("pack");
    p.bases[0].ids.reverse();
    let storage = env.storage();
    for old in storage.names(FileType::Index) {
        storage.delete(FileType::Index, &old);
    }
    repo.put_object(
        FileType::Index,
        other.encode(k, 3, [0x50; 16]).expect("encode"),
    )
    .expect("put");
    let repo = env.open();
    let report = check(&repo, &structure, &NoProgress).expect("check");
    assert!(
        report
            .errors
            .iter()
            .any(|f| f.kind == FindingKind::HeaderMismatch && f.message.contains("bases")),
        "{:?}",
        report.errors
    );

    // repair index rebuilds the index from the pack headers, bases included.
    let repaired = repair_index(&repo).expect("repair index");
    assert_eq!(repaired.packs_indexed, 2);
    let repo = env.open();
    let ids = repo.list_ids(FileType::Index).expect("list");
    let rebuilt: Vec<GroupBase> = ids
        .iter()
        .flat_map(|id| {
            repo.load_index(&repo_format::IndexId(*id))
                .expect("load")
                .packs
        })
        .filter(|p| p.id == pack)
        .flat_map(|p| p.bases)
        .collect();
    assert_eq!(rebuilt, bases);
    let report = check(&repo, &structure, &NoProgress).expect("check");
    assert!(report.is_clean(), "{:?}", report.errors);
}

/// The error and its causes, one line.
fn chain(err: &engine::Error) -> String {
    let mut out = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        out.push_str(&format!(": {s}"));
        source = s.source();
    }
    out
}

fn read_data() -> CheckOptions {
    CheckOptions {
        read_data: ReadData::All,
    }
}

#[test]
fn a_member_of_a_based_group_reads_through_its_base() {
    let env = env();
    let repo = env.open();
    let (base, members) = base_and_members();
    add_based_pack(&repo, &base, &members);
    let repo = env.open();
    for m in &members {
        let loc = repo.locate_blob(&repo.keys().blob_id(m)).expect("indexed");
        assert_eq!(loc.entry.compression, Compression::Based);
        assert_eq!(&repo.load_blob(&loc).expect("reads"), m);
    }
    let report = check(&repo, &read_data(), &NoProgress).expect("check");
    assert!(report.is_clean(), "{:?}", report.errors);
    assert_eq!(
        report.stats.blobs_verified,
        (base.len() + members.len()) as u64
    );

    // Without the pack holding its base, a member is an error, never other bytes, and
    // check --read-data names every member.
    let k = repo.keys();
    let base_pack = repo.locate_blob(&k.blob_id(&base[0])).expect("base").pack;
    env.storage().delete(FileType::Pack, &base_pack.0.to_hex());
    let repo = env.open();
    let loc = repo
        .locate_blob(&repo.keys().blob_id(&members[0]))
        .expect("indexed");
    let err = repo.load_blob(&loc).expect_err("no base");
    assert!(chain(&err).contains("base"), "{}", chain(&err));
    let report = check(&repo, &read_data(), &NoProgress).expect("check");
    let damaged = report
        .errors
        .iter()
        .filter(|f| f.kind == FindingKind::DamagedBlob && f.message.contains("base"))
        .count();
    assert_eq!(damaged, members.len(), "{:?}", report.errors);
}

#[test]
fn a_base_in_a_based_group_is_refused() {
    let env = env();
    let repo = env.open();
    let (base, members) = base_and_members();
    add_based_pack(&repo, &base, &members);
    // A second based group on the first one's members: two steps.
    let seconds: Vec<Vec<u8>> = members
        .iter()
        .map(|m| {
            let mut x = m.clone();
            x[5] = b'%';
            x
        })
        .collect();
    add_based_pack_on(&repo, &members, &seconds);
    let repo = env.open();
    let loc = repo
        .locate_blob(&repo.keys().blob_id(&seconds[0]))
        .expect("indexed");
    let err = repo.load_blob(&loc).expect_err("a chain");
    assert!(chain(&err).contains("one step"), "{}", chain(&err));
    let report = check(&repo, &read_data(), &NoProgress).expect("check");
    assert!(
        report
            .errors
            .iter()
            .any(|f| f.kind == FindingKind::DamagedBlob && f.message.contains("one step")),
        "{:?}",
        report.errors
    );
}
