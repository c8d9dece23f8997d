//! `check` on repositories broken on purpose, one way each: every test names the damage it
//! makes and asserts the finding's kind and that its message names the object (and, where the
//! walk can know it, the snapshot and path affected). Then a randomized test: one flipped bit
//! in a random pack, index file or snapshot, over many seeds, must always be detected.

use std::fs;
use std::sync::atomic::{AtomicU64, Ordering};

use engine::archiver::{BackupOptions, BackupResult, Source, backup};
use engine::backend::FileType;
use engine::checker::{CheckOptions, CheckReport, FindingKind, ReadData, check};
use engine::progress::{NoProgress, Progress};
use engine::repository::{OpenOptions, Repository};
use engine::restorer::find_node;
use repo_format::{Content, Id, NodeKind, PackId};

mod common;

use common::storage::Storage;
use common::{Env, PASSWORD, Rng, repo_location};

/// `data/victim` (300 kB), `data/small.txt`, `data/sub/other` (100 kB), backed up once.
fn fixture() -> (Env, Repository, BackupResult) {
    // Small stream chunks: the stream some tests add needs content lists.
    let env = common::env_small_chunks();
    let src = env.root.join("src").join("data");
    fs::create_dir_all(src.join("sub")).expect("mkdir");
    let mut rng = Rng(0x5eed);
    fs::write(src.join("victim"), rng.bytes(300_000)).expect("write");
    fs::write(src.join("small.txt"), b"small\n").expect("write");
    fs::write(src.join("sub/other"), rng.bytes(100_000)).expect("write");
    let repo = env.open();
    let r = backup(
        &repo,
        BackupOptions::new(Source::Paths(vec![src])),
        &NoProgress,
    )
    .expect("backup");
    (env, repo, r)
}

fn run(repo: &Repository, read_data: ReadData) -> CheckReport {
    check(repo, &CheckOptions { read_data }, &NoProgress).expect("check runs")
}

/// The pack holding the first data blob of `data/victim`, and that blob.
fn victim_pack(
    repo: &Repository,
    r: &BackupResult,
) -> (PackId, engine::index::cache::BlobLocation) {
    let node = find_node(repo, &r.snapshot.tree, b"data/victim").expect("victim");
    let NodeKind::File {
        content: Content::Direct(ids),
    } = &node.kind
    else {
        panic!("direct content expected, got {:?}", node.kind)
    };
    let loc = repo.lookup_blob(&ids[0]).expect("lookup").expect("indexed");
    (loc.pack, loc)
}

fn kinds(report: &CheckReport) -> Vec<FindingKind> {
    report.errors.iter().map(|f| f.kind).collect()
}

/// Counts what a check reports as progress.
#[derive(Default)]
struct Counting {
    total: AtomicU64,
    done: AtomicU64,
}

impl Progress for Counting {
    fn set_total(&self, _files: u64, bytes: u64) {
        self.total.store(bytes, Ordering::Relaxed);
    }
    fn bytes_done(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }
}

// --- A clean repository ---------------------------------------------------------------------

#[test]
fn clean_repository_has_no_findings_and_leaves_no_temporary_index() {
    let (env, repo, _) = fixture();
    // A second, incremental backup and a stream large enough for content lists.
    let src = env.root.join("src").join("data");
    fs::write(src.join("new"), Rng(9).bytes(50_000)).expect("write");
    backup(
        &repo,
        BackupOptions::new(Source::Paths(vec![src])),
        &NoProgress,
    )
    .expect("backup 2");
    let stream = Source::Stream {
        name: "big.dump".into(),
        reader: Box::new(std::io::Cursor::new(Rng(3).bytes(24 << 20))),
    };
    let big = backup(&repo, BackupOptions::new(stream), &NoProgress).expect("stream backup");
    let node = find_node(&repo, &big.snapshot.tree, b"big.dump").expect("node");
    assert!(matches!(
        node.kind,
        NodeKind::File {
            content: Content::Indirect(_)
        }
    ));

    let structure = run(&repo, ReadData::No);
    assert!(structure.errors.is_empty(), "{:#?}", structure.errors);
    assert!(structure.warnings.is_empty(), "{:#?}", structure.warnings);
    let s = structure.stats;
    assert_eq!((s.snapshots, s.index_files, s.key_files), (3, 3, 1));
    assert_eq!(s.pack_headers_checked, s.packs);
    assert!(s.data_blob_refs > 1024, "{s:?}");
    assert_eq!((s.packs_read, s.bytes_read), (0, 0));

    let progress = Counting::default();
    let opts = CheckOptions {
        read_data: ReadData::All,
    };
    let full = check(&repo, &opts, &progress).expect("check runs");
    assert!(full.is_clean(), "{:#?}", full.errors);
    let s = full.stats;
    assert_eq!(s.packs_read, s.packs);
    assert_eq!(s.bytes_read, s.pack_bytes);
    assert_eq!(s.blobs_verified, s.blobs);
    assert_eq!(progress.total.load(Ordering::Relaxed), s.pack_bytes);
    assert_eq!(progress.done.load(Ordering::Relaxed), s.pack_bytes);

    let leftovers: Vec<_> = fs::read_dir(repo.cache_dir())
        .expect("cache dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("check-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary index not removed: {leftovers:?}"
    );
}

// --- Damaged packs --------------------------------------------------------------------------

#[test]
fn deleted_pack_is_missing_pack_naming_snapshot_and_path() {
    let (env, repo, r) = fixture();
    let (pack, _) = victim_pack(&repo, &r);
    env.storage().delete(FileType::Pack, &pack.to_hex());
    let report = run(&repo, ReadData::No);
    let missing: Vec<_> = report.errors_of(FindingKind::MissingPack).collect();
    assert_eq!(missing.len(), 1, "{:#?}", report.errors);
    let f = missing[0];
    assert_eq!(f.object, pack.to_hex());
    assert!(f.message.contains(&pack.short()), "{}", f.message);
    let here = format!("snapshot {}: /data/victim", r.id.short());
    assert!(f.affects.contains(&here), "{:?}", f.affects);
    assert_eq!(
        kinds(&report),
        vec![FindingKind::MissingPack],
        "one error, not one per blob"
    );
}

#[test]
fn truncated_pack_is_an_error() {
    let (env, repo, r) = fixture();
    let (pack, _) = victim_pack(&repo, &r);
    let storage = env.storage();
    let name = pack.to_hex();
    let bytes = storage.read(FileType::Pack, &name);
    storage.replace(FileType::Pack, &name, bytes[..bytes.len() / 2].to_vec());
    let report = run(&repo, ReadData::No);
    let f = report
        .errors_of(FindingKind::DamagedPack)
        .next()
        .unwrap_or_else(|| panic!("{:#?}", report.errors));
    assert!(
        f.message.contains(&pack.short()) && f.message.contains("truncated"),
        "{}",
        f.message
    );
    assert!(
        f.affects.iter().any(|a| a.ends_with("/data/victim")),
        "{:?}",
        f.affects
    );

    // Cut just the last byte: the trailer is gone, the header cannot be found.
    storage.replace(FileType::Pack, &name, bytes[..bytes.len() - 1].to_vec());
    let report = run(&repo, ReadData::No);
    assert_eq!(
        kinds(&report),
        vec![FindingKind::DamagedPackHeader],
        "{:#?}",
        report.errors
    );
}

#[test]
fn flipped_bit_in_data_blob_is_found_only_by_read_data() {
    let (env, repo, r) = fixture();
    let (pack, loc) = victim_pack(&repo, &r);
    env.storage().flip_bit(
        FileType::Pack,
        &pack.to_hex(),
        loc.entry.offset as usize + 100,
        3,
    );

    let structure = run(&repo, ReadData::No);
    assert!(
        structure.is_clean(),
        "headers are intact: {:#?}",
        structure.errors
    );

    let full = run(&repo, ReadData::All);
    assert_eq!(
        kinds(&full),
        vec![FindingKind::DamagedBlob],
        "{:#?}",
        full.errors
    );
    let f = &full.errors[0];
    assert_eq!(f.object, loc.entry.id.to_hex());
    assert!(
        f.message.contains(&pack.short()),
        "names the pack: {}",
        f.message
    );
    assert!(
        f.message.contains(&loc.entry.id.short()),
        "names the blob: {}",
        f.message
    );
    let here = format!("snapshot {}: /data/victim", r.id.short());
    assert_eq!(f.affects, vec![here]);
}

#[test]
fn flipped_bit_in_pack_header_is_a_header_error() {
    let (env, repo, r) = fixture();
    let (pack, _) = victim_pack(&repo, &r);
    let storage = env.storage();
    let name = pack.to_hex();
    let len = storage.size(FileType::Pack, &name) as usize;
    storage.flip_bit(FileType::Pack, &name, len - 4 - 20, 0);
    let report = run(&repo, ReadData::No);
    assert_eq!(
        kinds(&report),
        vec![FindingKind::DamagedPackHeader],
        "{:#?}",
        report.errors
    );
    let f = &report.errors[0];
    let index_id = storage.names(FileType::Index).remove(0);
    assert!(
        f.message.contains(&pack.short()),
        "names the pack: {}",
        f.message
    );
    assert!(
        f.message.contains(&index_id[..8]),
        "names the index file: {}",
        f.message
    );
    assert!(!f.affects.is_empty());
}

#[test]
fn deleted_tree_pack_is_a_damaged_tree_with_its_path() {
    let (env, repo, r) = fixture();
    let tree = repo
        .lookup_blob(&r.snapshot.tree)
        .expect("lookup")
        .expect("indexed");
    env.storage().delete(FileType::Pack, &tree.pack.to_hex());
    let report = run(&repo, ReadData::No);
    let missing = report
        .errors_of(FindingKind::MissingPack)
        .next()
        .expect("missing-pack");
    assert_eq!(missing.object, tree.pack.to_hex());
    let damaged = report
        .errors_of(FindingKind::DamagedTree)
        .next()
        .expect("damaged-tree");
    assert_eq!(damaged.object, r.snapshot.tree.to_hex());
    let here = format!("snapshot {}: /", r.id.short());
    assert!(damaged.message.contains(&here), "{}", damaged.message);
    assert!(
        damaged.message.contains(&tree.pack.short()),
        "{}",
        damaged.message
    );
}

#[test]
fn garbage_pack_under_an_id_name_is_unreferenced_then_damaged() {
    let (env, repo, _) = fixture();
    let id = PackId(Id([0xab; 32]));
    env.storage()
        .put(FileType::Pack, &id.to_hex(), Rng(1).bytes(5000));

    let structure = run(&repo, ReadData::No);
    assert!(structure.is_clean(), "{:#?}", structure.errors);
    let w: Vec<_> = structure
        .warnings_of(FindingKind::UnreferencedPack)
        .collect();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].object, id.to_hex());
    assert!(
        w[0].message.contains("prune removes it"),
        "{}",
        w[0].message
    );

    let full = run(&repo, ReadData::All);
    assert_eq!(
        kinds(&full),
        vec![FindingKind::DamagedPack],
        "{:#?}",
        full.errors
    );
    assert!(full.errors[0].message.contains(&id.short()));
}

// --- Damaged index files and snapshots ------------------------------------------------------

#[test]
fn deleted_index_file_makes_blobs_missing() {
    let (env, repo, r) = fixture();
    let storage = env.storage();
    for name in storage.names(FileType::Index) {
        storage.delete(FileType::Index, &name);
    }
    let report = run(&repo, ReadData::No);
    let missing: Vec<_> = report.errors_of(FindingKind::MissingBlob).collect();
    assert_eq!(
        missing.len(),
        1,
        "the root tree; nothing below is reachable: {:#?}",
        report.errors
    );
    assert_eq!(missing[0].object, r.snapshot.tree.to_hex());
    let here = format!("snapshot {}: /", r.id.short());
    assert!(missing[0].message.contains(&here), "{}", missing[0].message);
    assert_eq!(
        report.warnings_of(FindingKind::UnreferencedPack).count() as u64,
        report.stats.packs
    );
}

#[test]
fn damaged_index_file_is_reported_and_its_blobs_are_missing() {
    let (env, repo, _) = fixture();
    let storage = env.storage();
    let name = storage.names(FileType::Index).remove(0);
    storage.flip_bit(FileType::Index, &name, 40, 5);
    let report = run(&repo, ReadData::No);
    let damaged = report
        .errors_of(FindingKind::DamagedIndex)
        .next()
        .expect("damaged-index");
    assert_eq!(damaged.object, name);
    assert!(damaged.message.contains(&name[..8]), "{}", damaged.message);
    assert!(report.errors_of(FindingKind::MissingBlob).count() >= 1);
}

#[test]
fn damaged_snapshot_is_reported_and_others_still_checked() {
    let (env, repo, r) = fixture();
    let src = env.root.join("src").join("data");
    fs::write(src.join("more"), b"more").expect("write");
    let second = backup(
        &repo,
        BackupOptions::new(Source::Paths(vec![src])),
        &NoProgress,
    )
    .expect("backup 2");
    env.storage()
        .flip_bit(FileType::Snapshot, &r.id.to_hex(), 50, 1);
    let report = run(&repo, ReadData::No);
    assert_eq!(
        kinds(&report),
        vec![FindingKind::DamagedSnapshot],
        "{:#?}",
        report.errors
    );
    assert_eq!(report.errors[0].object, r.id.to_hex());
    assert!(report.errors[0].message.contains(&r.id.short()));
    assert!(
        report.stats.trees >= 3,
        "the second snapshot {} was walked",
        second.id.short()
    );
}

#[test]
fn duplicates_and_unknown_names_are_warnings_only() {
    let (env, repo, _) = fixture();
    let storage = env.storage();
    let name = storage.names(FileType::Index).remove(0);
    let id = repo_format::IndexId::from_hex(&name).expect("id");
    let file = repo.load_index(&id).expect("load index");
    repo.save_index(&file).expect("second copy of the index");
    storage.put(FileType::Index, "README", b"hello".to_vec());
    let report = run(&repo, ReadData::All);
    assert!(report.is_clean(), "{:#?}", report.errors);
    assert!(report.warnings_of(FindingKind::DuplicatePack).count() >= 1);
    assert_eq!(report.warnings_of(FindingKind::DuplicateBlob).count(), 1);
    let unknown: Vec<_> = report.warnings_of(FindingKind::UnknownName).collect();
    assert_eq!(unknown.len(), 1);
    assert_eq!(unknown[0].object, "index/README");
}

// --- Read-data selection --------------------------------------------------------------------

#[test]
fn subset_selection_is_deterministic_and_partitions_the_packs() {
    let mut rng = Rng(77);
    let ids: Vec<PackId> = (0..2000)
        .map(|_| {
            let b = rng.bytes(32);
            PackId(Id(b.try_into().expect("32 bytes")))
        })
        .collect();
    for m in 1..=9u32 {
        for id in &ids {
            let parts: Vec<u32> = (1..=m)
                .filter(|&n| ReadData::Subset { n, m }.selects(id))
                .collect();
            assert_eq!(
                parts.len(),
                1,
                "pack {} in parts {parts:?} of {m}",
                id.short()
            );
            assert!(
                ReadData::Subset { n: parts[0], m }.selects(id),
                "deterministic"
            );
        }
    }
    let all = ids
        .iter()
        .filter(|id| ReadData::Percent(100.0).selects(id))
        .count();
    assert_eq!(all, ids.len());
    let half = ids
        .iter()
        .filter(|id| ReadData::Percent(50.0).selects(id))
        .count();
    assert!((800..1200).contains(&half), "50% selected {half} of 2000");
    for id in &ids {
        if ReadData::Percent(10.0).selects(id) {
            assert!(
                ReadData::Percent(50.0).selects(id),
                "a larger percentage keeps the smaller's packs"
            );
        }
    }
    assert!(!ids.iter().any(|id| ReadData::No.selects(id)));
    // Out-of-range values select nothing rather than panic (check() rejects them up front).
    assert!(
        !ids.iter()
            .any(|id| ReadData::Subset { n: 0, m: 3 }.selects(id))
    );
    assert!(
        !ids.iter()
            .any(|id| ReadData::Subset { n: 4, m: 3 }.selects(id))
    );
    assert!(
        !ids.iter()
            .any(|id| ReadData::Subset { n: 1, m: 0 }.selects(id))
    );
}

#[test]
fn subset_parsing_accepts_n_of_m_and_percentages_with_clear_errors() {
    assert_eq!(
        "1/2".parse::<ReadData>().expect("1/2"),
        ReadData::Subset { n: 1, m: 2 }
    );
    assert_eq!(
        "7/7".parse::<ReadData>().expect("7/7"),
        ReadData::Subset { n: 7, m: 7 }
    );
    assert_eq!(
        "10%".parse::<ReadData>().expect("10%"),
        ReadData::Percent(10.0)
    );
    assert_eq!(
        "0.5%".parse::<ReadData>().expect("0.5%"),
        ReadData::Percent(0.5)
    );
    for (bad, needle) in [
        ("3/2", "1 <= N <= M"),
        ("0/2", "1 <= N <= M"),
        ("1/0", "1 <= N <= M"),
        ("a/b", "N/M"),
        ("0%", "above 0"),
        ("101%", "at most 100"),
        ("x%", "percentage"),
        ("half", "N/M"),
    ] {
        let e = bad.parse::<ReadData>().expect_err(bad);
        assert!(e.to_string().contains(needle), "{bad}: {e}");
    }
}

#[test]
fn read_data_subsets_cover_every_pack_once() {
    let (_env, repo, _) = fixture();
    let mut read = 0;
    let mut bytes = 0;
    let mut packs = 0;
    for n in 1..=3 {
        let report = run(&repo, ReadData::Subset { n, m: 3 });
        assert!(report.is_clean(), "{:#?}", report.errors);
        read += report.stats.packs_read;
        bytes += report.stats.bytes_read;
        packs = report.stats.packs;
    }
    assert_eq!(read, packs);
    assert!(bytes > 0);
    let e = check(
        &repo,
        &CheckOptions {
            read_data: ReadData::Subset { n: 4, m: 3 },
        },
        &NoProgress,
    )
    .expect_err("4/3 is invalid");
    assert_eq!(e.kind(), engine::ErrorKind::InvalidInput);
}

// --- Randomized corruption ------------------------------------------------------------------

#[test]
fn one_flipped_bit_anywhere_is_always_detected_by_read_data() {
    const SEEDS: u64 = 30;
    // Two backups: two snapshots, two index files, data and tree packs of each.
    let (template, repo, _) = fixture();
    let src = template.root.join("src").join("data");
    fs::write(src.join("sub/new"), Rng(12).bytes(70_000)).expect("write");
    backup(
        &repo,
        BackupOptions::new(Source::Paths(vec![src])),
        &NoProgress,
    )
    .expect("backup 2");
    drop(repo);
    let source = template.storage();
    let (mut damaged, mut detected) = ([0u32; 3], [0u32; 3]);
    let names = ["pack", "index file", "snapshot"];
    for seed in 1..=SEEDS {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let dir = tempfile::tempdir().expect("tempdir");
        let loc = repo_location(dir.path());
        let storage = Storage::open(&loc);
        source.copy_all_to(&storage);
        let opts = OpenOptions {
            cache_dir: Some(dir.path().join("cache")),
        };
        // Open first: opening reads the index files into the cache, and fails on a damaged one.
        let repo = Repository::open(&loc, PASSWORD, &opts).expect("open");
        let kind = rng.below(3) as usize;
        let t = [FileType::Pack, FileType::Index, FileType::Snapshot][kind];
        let objects = storage.names(t);
        let name = objects[rng.below(objects.len() as u64) as usize].clone();
        let len = storage.size(t, &name);
        let offset = rng.below(len) as usize;
        storage.flip_bit(t, &name, offset, rng.below(8) as u8);
        damaged[kind] += 1;
        let report = run(&repo, ReadData::All);
        assert!(
            !report.errors.is_empty(),
            "seed {seed}: bit flipped at {offset} of {} {} went unnoticed",
            names[kind],
            t.path(&name)
        );
        detected[kind] += 1;
        assert!(
            report
                .errors
                .iter()
                .any(|f| f.object == name || f.message.contains(&name[..8])),
            "seed {seed}: no error names {} {name}: {:#?}",
            names[kind],
            report.errors
        );
        println!(
            "seed {seed:2}: {} {} bit flipped at {offset}/{len}: {}",
            names[kind],
            &name[..8],
            report
                .errors
                .iter()
                .map(|f| f.kind.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!(
        "randomized corruption: {} objects damaged (packs {}, index files {}, snapshots {}), {} detected (packs {}, index files {}, snapshots {})",
        damaged.iter().sum::<u32>(),
        damaged[0],
        damaged[1],
        damaged[2],
        detected.iter().sum::<u32>(),
        detected[0],
        detected[1],
        detected[2]
    );
}
