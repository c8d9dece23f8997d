//! Based compression groups (SPEC §7) in a repository: members read through their bases (and
//! never as other bytes when a base is missing or breaks the one-step rule), `check --read-data`
//! verifies them, `repair index` keeps the bases and `check` compares them with the header,
//! prune keeps the base of a group a snapshot needs and drops it with the group. The groups are written here with repo-format directly, as a
//! cairn that writes them would.

mod common;

use std::collections::HashSet;

use common::grace::{GraceEnv, dump, env_with_grace, stream};
use common::{Env, Rng, env, env_with_stream_chunks};
use engine::archiver::saver::BlobSaver;
use engine::backend::FileType;
use engine::checker::{CheckOptions, FindingKind, ReadData, check};
use engine::forget::forget_ids;
use engine::progress::NoProgress;
use engine::prune::{MaxUnused, PruneOptions, prune};
use engine::repair::repair_index;
use engine::repository::Repository;
use engine::restorer::find_node;
use repo_format::{
    BlobId, BlobType, ChunkerParams, Compression, Content, GroupBase, IndexFile, IndexPack,
    NodeKind, PackId, PackWriter, SnapshotId, Summary, seal_based_group, seal_blob,
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
    let file = put_based_pack(repo, base, members);
    repo.put_object(
        FileType::Index,
        file.encode(repo.keys(), 3, [0x71; 16]).expect("encode"),
    )
    .expect("put index");
    file.packs[0].id
}

/// Stores `members` as a based group on `base` in a new pack, and returns the index file that
/// names it (not stored).
fn put_based_pack(repo: &Repository, base: &[Vec<u8>], members: &[Vec<u8>]) -> IndexFile {
    let k = repo.keys();
    let m: Vec<(BlobId, &[u8])> = members.iter().map(|d| (k.blob_id(d), &d[..])).collect();
    let b: Vec<(BlobId, &[u8])> = base.iter().map(|d| (k.blob_id(d), &d[..])).collect();
    let mut w = PackWriter::new();
    w.add_group(seal_based_group(k, &m, &b, 3, [0x60; 16]).expect("based group"));
    let p = w.finish(k, [0x70; 16]).expect("pack");
    repo.put_object(FileType::Pack, p.bytes.clone())
        .expect("put pack");
    IndexFile {
        supersedes: Vec::new(),
        packs: vec![IndexPack {
            id: p.id,
            entries: p.entries,
            bases: p.bases,
        }],
    }
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

/// The data blob ids of `db.dump` in snapshot `id`, in order.
fn chunks_of(repo: &Repository, id: &SnapshotId) -> Vec<BlobId> {
    chunks_at(repo, id, b"db.dump")
}

/// The data blob ids of the file at `path` in snapshot `id`, in order.
fn chunks_at(repo: &Repository, id: &SnapshotId, path: &[u8]) -> Vec<BlobId> {
    let snap = repo.load_snapshot(id).expect("snapshot");
    let node = find_node(repo, &snap.tree, path).expect("node");
    match node.kind {
        NodeKind::File {
            content: Content::Direct(ids),
        } => ids,
        NodeKind::File {
            content: Content::Indirect(lists),
        } => lists
            .iter()
            .flat_map(|l| repo.load_content_list(l).expect("list").ids)
            .collect(),
        other => panic!("{} is {other:?}", String::from_utf8_lossy(path)),
    }
}

/// Rewrites the repository as a writer of based groups would have written snapshot `second`:
/// its chunks that `first` does not have move from their packs into one based group on the
/// chunks of `first` that `second` no longer has (the ones they replace). Returns that base.
fn rebase(env: &GraceEnv, first: &SnapshotId, second: &SnapshotId) -> Vec<BlobId> {
    let repo = env.open();
    let old = chunks_of(&repo, first);
    let new = chunks_of(&repo, second);
    let replaced: Vec<BlobId> = old.iter().filter(|c| !new.contains(c)).copied().collect();
    let added: Vec<BlobId> = new.iter().filter(|c| !old.contains(c)).copied().collect();
    assert!(
        replaced.len() >= 2 && added.len() >= 2,
        "{} {}",
        replaced.len(),
        added.len()
    );
    let load = |id: &BlobId| {
        repo.load_blob(&repo.locate_blob(id).expect("indexed"))
            .expect("blob")
    };
    let added_plain: Vec<Vec<u8>> = added.iter().map(load).collect();
    let replaced_plain: Vec<Vec<u8>> = replaced.iter().map(load).collect();
    let added_packs: HashSet<PackId> = added
        .iter()
        .map(|id| repo.locate_blob(id).expect("indexed").pack)
        .collect();
    // The packs of the new chunks hold nothing else (a backup's data packs are its own).
    let storage = env.storage();
    for name in storage.names(FileType::Index) {
        let id = repo_format::IndexId(repo_format::Id::from_hex(&name).expect("id"));
        let mut file = repo.load_index(&id).expect("index file");
        if !file.packs.iter().any(|p| added_packs.contains(&p.id)) {
            continue;
        }
        for p in file.packs.iter().filter(|p| added_packs.contains(&p.id)) {
            assert!(
                p.entries.iter().all(|e| added.contains(&e.id)),
                "a shared pack"
            );
        }
        file.packs.retain(|p| !added_packs.contains(&p.id));
        storage.delete(FileType::Index, &name);
        if !file.packs.is_empty() {
            repo.put_object(
                FileType::Index,
                file.encode(repo.keys(), 3, [0x77; 16]).expect("encode"),
            )
            .expect("put index");
        }
    }
    for p in &added_packs {
        storage.delete(FileType::Pack, &p.0.to_hex());
    }
    add_based_pack_on(&repo, &replaced_plain, &added_plain);
    replaced
}

/// Two nights of a 600 KB stream (the second with a byte changed every 9000): the environment,
/// both snapshots and the second night's bytes.
fn two_nights(seed: u64) -> (GraceEnv, SnapshotId, SnapshotId, Vec<u8>) {
    let env = env_with_grace(1);
    let repo = env.open();
    let mut rng = Rng(seed);
    let first = rng.text(600_000);
    let mut second = first.clone();
    for i in (0..second.len()).step_by(9000) {
        second[i] = b'#';
    }
    let s1 = stream(&repo, first);
    let s2 = stream(&repo, second.clone());
    (env, s1, s2, second)
}

/// [`two_nights`], the second's new chunks rewritten into a based group on the first's chunks
/// they replace ([`rebase`]); also returns the base.
fn two_nights_rebased(seed: u64) -> (GraceEnv, SnapshotId, SnapshotId, Vec<u8>, Vec<BlobId>) {
    let (env, s1, s2, second) = two_nights(seed);
    let base = rebase(&env, &s1, &s2);
    (env, s1, s2, second, base)
}

#[test]
fn prune_keeps_the_base_of_a_group_that_a_snapshot_needs() {
    let (env, s1, s2, second, base) = two_nights_rebased(3);
    let repo = env.open();
    assert_eq!(dump(&repo, &s2).expect("dump"), second);
    let read_data = CheckOptions {
        read_data: ReadData::All,
    };
    let report = check(&repo, &read_data, &NoProgress).expect("check");
    assert!(report.is_clean(), "{:?}", report.errors);

    // Once `first` is forgotten, its replaced chunks are needed only as the group's base.
    forget_ids(&repo, &[s1.to_hex()], false).expect("forget");
    let opts = PruneOptions {
        max_unused: MaxUnused::Percent(0.0),
        ..PruneOptions::default()
    };
    env.wait_grace();
    let r1 = prune(&repo, &opts, &NoProgress).expect("prune");
    assert!(r1.used_blobs >= base.len() as u64, "{r1:?}");
    env.wait_grace();
    let r2 = prune(&repo, &opts, &NoProgress).expect("prune again");
    assert!(
        r2.sweep.packs_deleted >= 1,
        "prune deleted nothing: {r1:?} {r2:?}"
    );
    let repo = env.open();
    for id in &base {
        assert!(
            repo.lookup_blob(id).expect("lookup").is_some(),
            "base blob {id} is gone"
        );
    }
    assert_eq!(dump(&repo, &s2).expect("dump after prune"), second);
    let report = check(&repo, &read_data, &NoProgress).expect("check");
    assert!(report.is_clean(), "{:?}", report.errors);

    // Forgotten too, the group goes, and its base with it.
    forget_ids(&repo, &[s2.to_hex()], false).expect("forget");
    env.wait_grace();
    prune(&repo, &opts, &NoProgress).expect("prune");
    env.wait_grace();
    prune(&repo, &opts, &NoProgress).expect("prune again");
    let repo = env.open();
    assert!(
        base.iter()
            .all(|id| repo.lookup_blob(id).expect("lookup").is_none())
    );
    assert_eq!(env.storage().count(FileType::Pack), 0);
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
fn bases_in_based_groups_are_followed_four_deep_and_no_deeper() {
    let env = env();
    let repo = env.open();
    let (base, members) = base_and_members();
    add_based_pack(&repo, &base, &members);
    // Each level a based group on the one before: the same blobs stored again elsewhere.
    let mut levels = vec![members];
    for n in 0..5u8 {
        let next: Vec<Vec<u8>> = levels[levels.len() - 1]
            .iter()
            .map(|m| {
                let mut x = m.clone();
                x[5 + usize::from(n)] = b'%';
                x
            })
            .collect();
        add_based_pack_on(&repo, &levels[levels.len() - 1], &next);
        levels.push(next);
    }
    let repo = env.open();
    let read = |data: &Vec<u8>| {
        let loc = repo
            .locate_blob(&repo.keys().blob_id(data))
            .expect("indexed");
        repo.load_blob(&loc)
    };
    // Level 5 would need five groups decoded below it (none is among the recent groups yet).
    let err = read(&levels[5][0]).expect_err("too deep");
    assert!(chain(&err).contains("nest more than 4"), "{}", chain(&err));
    // Levels 0-4 need at most four: they read.
    for level in &levels[..5] {
        assert_eq!(&read(&level[0]).expect("reads"), &level[0]);
    }
    // A group decoded once is kept among the recent groups, so the bound is on the groups one
    // read decodes: with level 4 decoded, level 5 costs one more.
    assert_eq!(
        &read(&levels[5][0]).expect("level 4 is decoded now"),
        &levels[5][0]
    );
}

#[test]
fn check_traces_a_lost_base_to_the_files_that_need_it() {
    let env = env_with_grace(1);
    let repo = env.open();
    let mut rng = Rng(9);
    let first = rng.text(400_000);
    let mut second = first.clone();
    for i in (0..second.len()).step_by(7000) {
        second[i] = b'#';
    }
    let s1 = stream(&repo, first);
    let s2 = stream(&repo, second);
    let base = rebase(&env, &s1, &s2);
    // Only the based group needs the base now.
    forget_ids(&env.open(), &[s1.to_hex()], false).expect("forget");
    // The index forgets one base blob (its pack still holds it).
    let lost = base[0];
    let storage = env.storage();
    for name in storage.names(FileType::Index) {
        let id = repo_format::IndexId(repo_format::Id::from_hex(&name).expect("id"));
        let mut file = repo.load_index(&id).expect("index file");
        if !file
            .packs
            .iter()
            .any(|p| p.entries.iter().any(|e| e.id == lost))
        {
            continue;
        }
        for p in &mut file.packs {
            p.entries.retain(|e| e.id != lost);
        }
        file.packs.retain(|p| !p.entries.is_empty());
        storage.delete(FileType::Index, &name);
        repo.put_object(
            FileType::Index,
            file.encode(repo.keys(), 3, [0x78; 16]).expect("encode"),
        )
        .expect("put index");
    }
    let repo = env.open();
    let report = check(&repo, &CheckOptions::default(), &NoProgress).expect("check");
    let finding = report
        .errors
        .iter()
        .find(|f| f.kind == FindingKind::MissingBlob && f.object == lost.to_hex())
        .unwrap_or_else(|| panic!("no missing-blob finding for the base: {:?}", report.errors));
    assert!(finding.message.contains("base"), "{}", finding.message);
    let here = format!("snapshot {}: /db.dump", s2.short());
    assert!(finding.affects.contains(&here), "{:?}", finding.affects);
}

/// `first` with a byte changed every `every` bytes from `from`.
fn edit(first: &[u8], every: usize, from: usize, with: u8) -> Vec<u8> {
    let mut out = first.to_vec();
    for i in (from..out.len()).step_by(every) {
        out[i] = with;
    }
    out
}

/// Every based group's pack and offset, from the index files.
fn based_groups(repo: &Repository) -> Vec<(PackId, u32)> {
    let mut out = Vec::new();
    for id in repo.list_ids(FileType::Index).expect("list") {
        let file = repo
            .load_index(&repo_format::IndexId(id))
            .expect("index file");
        for p in &file.packs {
            out.extend(p.bases.iter().map(|b| (p.id, b.offset)));
        }
    }
    out
}

#[test]
fn nightly_streams_are_stored_against_the_night_before() {
    let env = env_with_grace(1);
    let repo = env.open();
    let mut rng = Rng(11);
    let day1 = rng.text(3 << 20);
    let day2 = edit(&day1, 40_000, 1000, b'#');
    let day3 = edit(&day2, 50_000, 7000, b'%');
    let s1 = stream(&repo, day1.clone());
    let s2 = stream(&repo, day2.clone());
    assert!(
        !based_groups(&repo).is_empty(),
        "day 2 wrote no based group"
    );
    let s3 = stream(&repo, day3.clone());
    let sum = |id: &SnapshotId| {
        repo.load_snapshot(id)
            .expect("snapshot")
            .summary
            .expect("summary")
    };
    let (d1, d2, d3) = (sum(&s1), sum(&s2), sum(&s3));
    // Nearly every chunk changes, yet each night stores a small fraction of the first.
    assert!(d2.data_added_raw * 2 > d1.data_added_raw, "{d2:?}");
    assert!(
        d2.data_added_stored * 4 < d1.data_added_stored,
        "{d1:?} {d2:?}"
    );
    assert!(
        d3.data_added_stored * 4 < d1.data_added_stored,
        "{d1:?} {d3:?}"
    );
    // Day 3 bases on day 1's chunks, never on day 2's based ones: check enforces one step.
    let read_data = CheckOptions {
        read_data: ReadData::All,
    };
    let report = check(&repo, &read_data, &NoProgress).expect("check");
    assert!(report.is_clean(), "{:?}", report.errors);
    for (id, data) in [(&s1, &day1), (&s2, &day2), (&s3, &day3)] {
        assert_eq!(&dump(&repo, id).expect("dump"), data);
    }
    // Keep only day 3: prune keeps its bases, and day 3 still restores and checks clean.
    forget_ids(&repo, &[s1.to_hex(), s2.to_hex()], false).expect("forget");
    let opts = PruneOptions {
        max_unused: MaxUnused::Percent(0.0),
        ..PruneOptions::default()
    };
    for _ in 0..2 {
        env.wait_grace();
        prune(&repo, &opts, &NoProgress).expect("prune");
    }
    let repo = env.open();
    assert_eq!(dump(&repo, &s3).expect("dump after prune"), day3);
    let report = check(&repo, &read_data, &NoProgress).expect("check");
    assert!(report.is_clean(), "{:?}", report.errors);
}

/// Day 1, a stream of 1 MiB + 40 KiB cut into fixed 64 KiB chunks (the last is exactly 40 KiB
/// whatever the chunker's seed), then day 2 = `day2(day1)`: the repository, day 2's snapshot
/// summary (and the directory they live in), once day 2 restores byte for byte and `check --read-data` is clean.
fn last_chunk_changed(day2: impl FnOnce(&[u8]) -> Vec<u8>) -> (Env, Repository, Summary) {
    let env = env_with_stream_chunks(ChunkerParams {
        min: 64 << 10,
        avg: 64 << 10,
        max: 64 << 10,
    });
    let repo = env.open();
    let day1 = Rng(12).text((1 << 20) + (40 << 10));
    let day2 = day2(&day1);
    stream(&repo, day1);
    assert!(based_groups(&repo).is_empty(), "day 1 has no parent");
    let s2 = stream(&repo, day2.clone());
    let d2 = repo
        .load_snapshot(&s2)
        .expect("snapshot")
        .summary
        .expect("summary");
    // The last chunk and the tree.
    assert_eq!(d2.blobs_added, 2, "only the last chunk is new: {d2:?}");
    assert_eq!(dump(&repo, &s2).expect("dump"), day2);
    let report = check(&repo, &read_data(), &NoProgress).expect("check");
    assert!(report.is_clean(), "{:?}", report.errors);
    (env, repo, d2)
}

/// A dump whose only change is at its end (an RDB's checksum changes whenever a key does):
/// the one new chunk has no neighbour to group with, and is still stored as its difference
/// from the chunk it replaces, a based group of one member.
#[test]
fn a_lone_changed_last_chunk_is_stored_against_the_one_it_replaces() {
    let (_env, repo, d2) = last_chunk_changed(|day1| {
        let mut day2 = day1.to_vec();
        let n = day2.len();
        day2[n - 8..].copy_from_slice(b"checksum");
        day2
    });
    assert!(
        (40 << 10..41 << 10).contains(&d2.data_added_raw),
        "the 40 KiB chunk and a tree of 17 ids: {d2:?}"
    );
    assert_eq!(based_groups(&repo).len(), 1, "{d2:?}");
    // Alone, these 40 KiB compress ~5x (8 KiB); against the chunk they replace, to about their
    // 8 changed bytes. What is stored also counts the tree (~0.6 KiB).
    assert!(
        d2.data_added_stored < 2 << 10,
        "the last chunk was stored whole: {d2:?}"
    );
}

/// The same, but the last chunk is new text that its candidate does not explain: it is no
/// smaller against that chunk than alone, so it is stored alone, once.
#[test]
fn a_lone_last_chunk_unlike_the_one_it_replaces_is_stored_alone() {
    let (_env, repo, d2) = last_chunk_changed(|day1| {
        let mut day2 = day1[..1 << 20].to_vec();
        day2.extend(Rng(99).text(40 << 10));
        day2
    });
    assert!(based_groups(&repo).is_empty(), "{d2:?}");
    // Stored once, compressed: these words compress ~5x.
    assert!(
        (4 << 10..12 << 10).contains(&d2.data_added_stored),
        "{d2:?}"
    );
}

#[test]
fn another_stream_or_host_has_no_parent() {
    let env = env_with_grace(1);
    let repo = env.open();
    let mut rng = Rng(12);
    let day1 = rng.text(1 << 20);
    let day2 = edit(&day1, 30_000, 500, b'#');
    stream(&repo, day1);
    let other = engine::archiver::backup(
        &repo,
        engine::archiver::BackupOptions::new(engine::archiver::Source::Stream {
            name: "other.dump".into(),
            reader: Box::new(std::io::Cursor::new(day2)),
        }),
        &NoProgress,
    )
    .expect("backup");
    assert!(
        based_groups(&repo).is_empty(),
        "a stream of another name based on db.dump"
    );
    let summary = other.snapshot.summary.expect("summary");
    assert!(summary.data_added_raw > 0, "{summary:?}");
}

#[test]
fn reusing_a_member_relies_on_its_base_packs_and_avoids_marked_ones() {
    let env = env_with_grace(1);
    let repo = env.open();
    let mut rng = Rng(13);
    let day1 = rng.text(2 << 20);
    let day2 = edit(&day1, 40_000, 1000, b'#');
    stream(&repo, day1);
    stream(&repo, day2);
    let repo = env.open();
    let (pack, offset) = based_groups(&repo)[0];
    let file = repo
        .list_ids(FileType::Index)
        .expect("list")
        .into_iter()
        .flat_map(|id| {
            repo.load_index(&repo_format::IndexId(id))
                .expect("load")
                .packs
        })
        .find(|p| p.id == pack)
        .expect("the based pack");
    let member = file
        .entries
        .iter()
        .find(|e| e.offset == offset)
        .expect("a member")
        .id;
    let base = &file
        .bases
        .iter()
        .find(|b| b.offset == offset)
        .expect("base")
        .ids;
    let base_pack = repo.locate_blob(&base[0]).expect("base indexed").pack;
    assert_ne!(base_pack, pack);
    std::thread::scope(|scope| {
        // A backup that may use every pack relies on the base's pack too.
        let saver = BlobSaver::start_avoiding(scope, &repo, 1, HashSet::new());
        assert_eq!(saver.need_many(&[member]).expect("need"), vec![false]);
        let totals = saver.finish().expect("finish");
        assert!(totals.referenced.contains(&pack) && totals.referenced.contains(&base_pack));
        // One that must avoid the base's pack (a prune plan marks it) stores the member again.
        let saver = BlobSaver::start_avoiding(scope, &repo, 1, HashSet::from([base_pack]));
        assert_eq!(saver.need_many(&[member]).expect("need"), vec![true]);
        assert!(saver.known(&member).expect("known"), "pending now");
        drop(saver);
    });
}

#[test]
fn check_reports_bases_that_lead_back_to_their_group() {
    let env = env_with_grace(1);
    let repo = env.open();
    let mut rng = Rng(14);
    // G1 holds c and d on the base b; G2 holds b and e on the base c: a cycle.
    let (b, c, d, e) = (
        rng.text(3000),
        rng.text(3000),
        rng.text(3000),
        rng.text(3000),
    );
    let (b2, c2) = (b.clone(), c.clone());
    add_based_pack_on(&repo, &[b], &[c, d.clone()]);
    add_based_pack_on(&repo, &[c2], &[b2, e]);
    let repo = env.open();
    // A stream that is exactly d: one chunk, deduplicated against G1's member.
    let s = stream(&repo, d.clone());
    let err = dump(&repo, &s).expect_err("a cycle cannot be read");
    assert!(chain(&err).contains("nest more than 4"), "{}", chain(&err));
    let report = check(&repo, &CheckOptions::default(), &NoProgress).expect("check");
    let cycle = report
        .errors
        .iter()
        .find(|f| f.message.contains("lead back to it"))
        .unwrap_or_else(|| panic!("no cycle finding: {:?}", report.errors));
    let here = format!("snapshot {}: /db.dump", s.short());
    assert!(cycle.affects.contains(&here), "{:?}", cycle.affects);
}

#[test]
fn a_based_group_nobody_needs_whose_base_is_gone_is_a_warning() {
    let env = env();
    let repo = env.open();
    let (base, members) = base_and_members();
    add_based_pack(&repo, &base, &members);
    // The base's pack goes, as prune removes it when no snapshot needs the group.
    let repo = env.open();
    let k = repo.keys();
    let base_pack = repo.locate_blob(&k.blob_id(&base[0])).expect("base").pack;
    let storage = env.storage();
    for name in storage.names(FileType::Index) {
        let id = repo_format::IndexId(repo_format::Id::from_hex(&name).expect("id"));
        let mut file = repo.load_index(&id).expect("index file");
        file.packs.retain(|p| p.id != base_pack);
        storage.delete(FileType::Index, &name);
        repo.put_object(
            FileType::Index,
            file.encode(k, 3, [0x79; 16]).expect("encode"),
        )
        .expect("put index");
    }
    storage.delete(FileType::Pack, &base_pack.0.to_hex());
    let repo = env.open();
    let report = check(&repo, &read_data(), &NoProgress).expect("check");
    assert!(report.is_clean(), "{:?}", report.errors);
    assert_eq!(
        report.warnings_of(FindingKind::UnverifiableGroup).count(),
        1,
        "{:?} {:?}",
        report.warnings,
        report.stats
    );
}

#[test]
fn a_stream_is_cut_the_same_with_its_parent_as_without() {
    // A stream with a parent is cut where the parent was cut as far as the bytes repeat it
    // (`archiver::guide`); that must never change a chunk. The same bytes under another name
    // have no parent and are cut by content alone.
    let env = env_with_grace(1);
    let repo = env.open();
    let mut rng = Rng(13);
    let day1 = rng.text(6 << 20);
    let s1 = stream(&repo, day1.clone());
    let cut1 = chunks_of(&repo, &s1);
    assert!(cut1.len() > 50, "{} chunks", cut1.len());
    // Day 2 changes the first byte after every fourth chunk, where FastCDC's check for that
    // chunk's cut hashes: the chunk's own bytes repeat the parent's, its cut moves.
    let lens = repo.cache().lookup_many(&cut1).expect("lookup");
    let mut day2 = day1.clone();
    let mut end = 0;
    for (i, loc) in lens.iter().enumerate() {
        end += loc.as_ref().expect("indexed").entry.raw_len as usize;
        if i % 4 == 1 && end < day2.len() {
            day2[end] ^= 0x01;
        }
    }
    day2.splice(2_000_000..2_000_000, rng.text(5000));
    day2.drain(4_000_000..4_003_000);
    let alone = |name: &str, data: Vec<u8>| {
        let opts = engine::archiver::BackupOptions::new(engine::archiver::Source::Stream {
            name: name.into(),
            reader: Box::new(std::io::Cursor::new(data)),
        });
        let id = engine::archiver::backup(&repo, opts, &NoProgress)
            .expect("backup")
            .id;
        chunks_at(&repo, &id, name.as_bytes())
    };
    let again =
        engine::archiver::backup(&repo, common::grace::stream_opts(day1.clone()), &NoProgress)
            .expect("backup again");
    // The same stream again is cut by guessing, all but its last `max` bytes (256 KiB: at
    // most 16 chunks of `min`, and the one before them).
    assert!(
        again.guided_chunks as usize >= cut1.len() - 17,
        "{} of {} chunks guided",
        again.guided_chunks,
        cut1.len()
    );
    let again = again.id;
    let s2 = stream(&repo, day2.clone());
    assert_eq!(chunks_of(&repo, &again), cut1, "the same stream again");
    assert_eq!(
        chunks_of(&repo, &s2),
        alone("day2.dump", day2.clone()),
        "day 2"
    );
    assert_eq!(alone("day1.dump", day1), cut1, "day 1 without a parent");
    assert_eq!(dump(&repo, &s2).expect("dump"), day2);
}

/// Stores `blobs` as single blobs in a new pack with its own index file; returns the pack's id.
fn add_plain_pack(repo: &Repository, blobs: &[Vec<u8>]) -> PackId {
    let k = repo.keys();
    let mut w = PackWriter::new();
    for (i, b) in blobs.iter().enumerate() {
        w.add(seal_blob(
            k,
            BlobType::Data,
            k.blob_id(b),
            b,
            3,
            [0x80 ^ i as u8; 16],
        ));
    }
    let p = w.finish(k, [0x81; 16]).expect("pack");
    repo.put_object(FileType::Pack, p.bytes.clone())
        .expect("put pack");
    let file = IndexFile {
        supersedes: Vec::new(),
        packs: vec![IndexPack {
            id: p.id,
            entries: p.entries,
            bases: Vec::new(),
        }],
    };
    repo.put_object(
        FileType::Index,
        file.encode(k, 3, [0x82; 16]).expect("encode"),
    )
    .expect("put index");
    p.id
}

#[test]
fn a_group_whose_members_are_also_stored_plainly_keeps_its_base() {
    let (env, s1, s2, second, base) = two_nights_rebased(23);
    // The group's members stored again plainly (as a backup that had to avoid a pack of the
    // group's base stores them): the group is a duplicate.
    let repo = env.open();
    let old = chunks_of(&repo, &s1);
    let added: Vec<BlobId> = chunks_of(&repo, &s2)
        .into_iter()
        .filter(|c| !old.contains(c))
        .collect();
    let plain: Vec<Vec<u8>> = added
        .iter()
        .map(|id| {
            repo.load_blob(&repo.locate_blob(id).expect("indexed"))
                .expect("blob")
        })
        .collect();
    let plain_pack = add_plain_pack(&repo, &plain);
    let repo = env.open();
    // Readers take the plain copies, even when the cache adds the group's file last.
    let mut files: Vec<_> = env
        .storage()
        .names(FileType::Index)
        .iter()
        .map(|name| {
            let id = repo_format::IndexId(repo_format::Id::from_hex(name).expect("id"));
            (id, repo.load_index(&id).expect("index file"))
        })
        .collect();
    files.sort_by_key(|(_, f)| !f.packs.iter().any(|p| p.id == plain_pack));
    for (id, file) in &files {
        repo.cache().add_index_file(*id, file).expect("cache");
    }
    for id in &added {
        assert_eq!(repo.locate_blob(id).expect("indexed").pack, plain_pack);
    }

    // With `first` forgotten, whichever copy each prune counts, no copy of a needed blob that
    // readers may take loses its base (before, prune let the base go because readers took the
    // plain copies, and could then count the group as the copy and delete the plain one).
    forget_ids(&repo, &[s1.to_hex()], false).expect("forget");
    let opts = PruneOptions {
        max_unused: MaxUnused::Percent(0.0),
        ..PruneOptions::default()
    };
    let read_data = CheckOptions {
        read_data: ReadData::All,
    };
    // The group holds needed blobs and its base is indexed: its base is needed, although
    // readers take the plain copies (before, it was not: prune could repack the base away).
    let distinct: HashSet<BlobId> = chunks_of(&repo, &s2).into_iter().collect();
    let dry = prune(
        &repo,
        &PruneOptions {
            dry_run: true,
            ..PruneOptions::default()
        },
        &NoProgress,
    )
    .expect("dry run");
    assert!(
        dry.used_blobs >= (distinct.len() + base.len()) as u64,
        "{} used blobs: the base ({}) is not among them ({} data blobs)",
        dry.used_blobs,
        base.len(),
        distinct.len()
    );
    for round in 0..3 {
        env.wait_grace();
        prune(&repo, &opts, &NoProgress).expect("prune");
        let repo = env.open();
        // While the group is indexed its base is, whichever copy each prune counted.
        if !based_groups(&repo).is_empty() {
            for id in &base {
                assert!(
                    repo.lookup_blob(id).expect("lookup").is_some(),
                    "round {round}: base blob {id} is gone while its group is indexed"
                );
            }
        }
        assert_eq!(dump(&repo, &s2).expect("dump"), second, "round {round}");
        let report = check(&repo, &read_data, &NoProgress).expect("check");
        assert!(report.is_clean(), "round {round}: {:?}", report.errors);
    }
}

#[test]
fn a_member_of_a_group_whose_base_is_gone_is_no_copy() {
    // One night, stored in plain groups (no parent, so no bases).
    let env = env_with_grace(1);
    let mut rng = Rng(29);
    let second = rng.text(600_000);
    let s2 = stream(&env.open(), second.clone());
    let repo = env.open();
    let mut ids = chunks_of(&repo, &s2);
    ids.sort();
    ids.dedup();
    let added: Vec<Vec<u8>> = ids
        .iter()
        .map(|id| {
            let loc = repo.locate_blob(id).expect("indexed");
            assert_ne!(loc.entry.compression, Compression::Based);
            repo.load_blob(&loc).expect("blob")
        })
        .collect();
    // Every chunk again, as a based group on blobs no index names (a base already gone), in an
    // index file that prune reads before the backup's: a copy first in prune's order that
    // readers cannot open. Counted as a copy, it would make the backup's data pack a pack of
    // duplicates, which prune deletes.
    let k = repo.keys();
    let fake: Vec<Vec<u8>> = (0..2).map(|_| rng.text(20_000)).collect();
    let file = put_based_pack(&repo, &fake, &added);
    let dead = file.packs[0].id;
    let first_listed = env
        .storage()
        .names(FileType::Index)
        .into_iter()
        .min()
        .expect("index files");
    let bytes = (0..=255u8)
        .map(|salt| file.encode(k, 3, [salt; 16]).expect("encode"))
        .find(|bytes| repo_format::object_id(bytes).to_hex() < first_listed)
        .expect("an index file id before the backup's");
    repo.put_object(FileType::Index, bytes).expect("put index");

    let opts = PruneOptions {
        max_unused: MaxUnused::Percent(0.0),
        ..PruneOptions::default()
    };
    let read_data = CheckOptions {
        read_data: ReadData::All,
    };
    for round in 0..2 {
        env.wait_grace();
        prune(&env.open(), &opts, &NoProgress).expect("prune");
        let repo = env.open();
        assert_eq!(dump(&repo, &s2).expect("dump"), second, "round {round}");
        let report = check(&repo, &read_data, &NoProgress).expect("check");
        assert!(
            report.errors.is_empty(),
            "round {round}: {:?}",
            report.errors
        );
    }
    // The dead group held nothing prune counted: it is gone.
    assert!(
        !env.storage().exists(FileType::Pack, &dead.0.to_hex()),
        "the dead group's pack is still there"
    );
}
