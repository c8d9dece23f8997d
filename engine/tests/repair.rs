//! `repair index` and `repair snapshots` on repositories broken on purpose.

use std::fs;
use std::io::Cursor;
use std::path::PathBuf;

use engine::archiver::{BackupOptions, Source, backup};
use engine::backend::FileType;
use engine::progress::NoProgress;
use engine::repair::{repair_index, repair_snapshots};
use engine::repository::{InitOptions, OpenOptions, Repository, init};
use engine::restorer::{RestoreOptions, dump_content, find_node, restore};
use repo_format::{Content, KdfParams, NodeKind};

mod common;

use common::storage::Storage;

const PASSWORD: &[u8] = b"pw";

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    repo: String,
}

fn env() -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_path_buf();
    let repo = common::repo_location(&root);
    init(
        &repo,
        PASSWORD,
        &InitOptions {
            kdf: KdfParams::TEST,
            ..InitOptions::default()
        },
    )
    .expect("init");
    Env {
        _dir: dir,
        root,
        repo,
    }
}

impl Env {
    /// A fresh handle with a fresh cache, so nothing stale hides damage.
    fn open(&self, cache: &str) -> Repository {
        let opts = OpenOptions {
            cache_dir: Some(self.root.join(cache)),
        };
        Repository::open(&self.repo, PASSWORD, &opts).expect("open")
    }
    /// The repository's storage (a local directory, or whatever `CAIRN_TEST_REPO` names).
    fn storage(&self) -> Storage {
        Storage::open(&self.repo)
    }
}

fn data(seed: u8, len: usize) -> Vec<u8> {
    let mut x = u64::from(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn stream(repo: &Repository, name: &str, bytes: Vec<u8>) -> engine::archiver::BackupResult {
    let src = Source::Stream {
        name: name.into(),
        reader: Box::new(Cursor::new(bytes)),
    };
    backup(repo, BackupOptions::new(src), &NoProgress).expect("backup")
}

fn dump(repo: &Repository, snap: &repo_format::Snapshot, name: &str) -> engine::Result<Vec<u8>> {
    let node = find_node(repo, &snap.tree, name.as_bytes())?;
    let mut out = Vec::new();
    dump_content(repo, &node, &mut out, &NoProgress)?;
    Ok(out)
}

#[test]
fn repair_index_rebuilds_a_deleted_index() {
    let env = env();
    let repo = env.open("c1");
    let a = data(1, 3 << 20);
    let r = stream(&repo, "a", a.clone());
    drop(repo);
    let storage = env.storage();
    let old_index = storage.names(FileType::Index);
    assert!(!old_index.is_empty());
    for name in &old_index {
        storage.delete(FileType::Index, name);
    }
    let repo = env.open("c2");
    assert!(
        dump(&repo, &r.snapshot, "a").is_err(),
        "without an index the data cannot be found"
    );
    let report = repair_index(&repo).expect("repair index");
    assert!(report.packs_indexed >= 2, "data and tree packs: {report:?}");
    assert!(report.packs_damaged.is_empty());
    assert_eq!(dump(&repo, &r.snapshot, "a").expect("dump after repair"), a);
    // A fresh cache reads the new index files from the repository.
    let repo = env.open("c3");
    assert_eq!(
        dump(&repo, &r.snapshot, "a").expect("dump with fresh cache"),
        a
    );
}

#[test]
fn damaged_index_file_does_not_lock_the_user_out_and_repair_replaces_it() {
    let env = env();
    let repo = env.open("c1");
    let a = data(2, 1 << 20);
    let r = stream(&repo, "a", a.clone());
    drop(repo);
    let storage = env.storage();
    let index = storage.names(FileType::Index);
    let mid = storage.size(FileType::Index, &index[0]) as usize / 2;
    storage.flip_bit(FileType::Index, &index[0], mid, 6);
    let repo = env.open("c2");
    let damaged = repo.damaged_index_files();
    assert_eq!(damaged.len(), 1, "the damaged index file is reported");
    assert!(damaged[0].1.contains("damaged"), "{}", damaged[0].1);
    let report = repair_index(&repo).expect("repair");
    assert_eq!(report.index_files_removed as usize, index.len());
    assert!(repo.damaged_index_files().is_empty());
    assert_eq!(dump(&repo, &r.snapshot, "a").expect("dump"), a);
    assert!(
        !storage.exists(FileType::Index, &index[0]),
        "the damaged file was replaced"
    );
}

#[test]
fn repair_index_keeps_old_entries_of_a_pack_with_a_damaged_header() {
    let env = env();
    let repo = env.open("c1");
    let a = data(3, 1 << 20);
    stream(&repo, "a", a);
    drop(repo);
    // Damage the last bytes (the header) of every data pack.
    let repo = env.open("c2");
    let storage = env.storage();
    let mut damaged = 0;
    for p in storage.names(FileType::Pack) {
        let n = storage.size(FileType::Pack, &p) as usize;
        storage.flip_bit(FileType::Pack, &p, n - 10, 0);
        damaged += 1;
    }
    let report = repair_index(&repo).expect("repair");
    assert_eq!(report.packs_damaged.len(), damaged);
    // Every blob the old index named is still indexed.
    let count = repo.cache().blob_count_estimate().expect("count");
    assert!(count > 0);
}

#[test]
fn repair_snapshots_leaves_out_lost_files_and_keeps_the_original() {
    let env = env();
    let src = env.root.join("src");
    fs::create_dir_all(src.join("sub")).expect("mkdir");
    fs::write(src.join("keep.txt"), b"still here").expect("write");
    let repo = env.open("c1");
    // The victim is backed up first, alone, so its data pack holds nothing else.
    fs::write(src.join("sub/victim.bin"), data(4, 500_000)).expect("write");
    let first = backup(
        &repo,
        BackupOptions::new(Source::Paths(vec![src.clone()])),
        &NoProgress,
    )
    .expect("backup");
    let victim = find_node(&repo, &first.snapshot.tree, b"src/sub/victim.bin").expect("node");
    let NodeKind::File {
        content: Content::Direct(ids),
    } = &victim.kind
    else {
        panic!("direct")
    };
    let pack = repo
        .lookup_blob(&ids[0])
        .expect("lookup")
        .expect("indexed")
        .pack;
    drop(repo);
    let hex = pack.0.to_hex();
    let keep_loc = {
        let repo = env.open("c1b");
        let keep = find_node(&repo, &first.snapshot.tree, b"src/keep.txt").expect("keep");
        let NodeKind::File {
            content: Content::Direct(k),
        } = &keep.kind
        else {
            panic!("direct")
        };
        repo.lookup_blob(&k[0])
            .expect("lookup")
            .expect("indexed")
            .pack
    };
    assert_eq!(
        keep_loc, pack,
        "small files share the pack; the test deletes it and expects both gone"
    );
    env.storage().delete(FileType::Pack, &hex);
    // And remove the pack from the index too, as `repair index` would.
    let repo = env.open("c2");
    repair_index(&repo).expect("repair index");

    let dry = repair_snapshots(&repo, true).expect("dry run");
    assert_eq!(dry.repaired.len(), 1);
    assert!(dry.repaired[0].repaired.is_none());
    assert_eq!(
        repo.list_snapshots().expect("list").len(),
        1,
        "a dry run writes nothing"
    );

    let report = repair_snapshots(&repo, false).expect("repair snapshots");
    assert_eq!(report.repaired.len(), 1);
    let fixed = &report.repaired[0];
    assert!(
        fixed.removed.iter().any(|l| l.contains("victim.bin")),
        "{:?}",
        fixed.removed
    );
    let new_id = fixed.repaired.expect("written");
    let snaps = repo.list_snapshots().expect("list");
    assert_eq!(snaps.len(), 2, "the original is kept");
    let (_, new) = snaps
        .iter()
        .find(|(id, _)| *id == new_id)
        .expect("new snapshot");
    assert_eq!(new.original, Some(first.id));
    assert!(new.tags.contains(&"repaired".to_string()));
    // The repaired snapshot restores without errors; the lost files are simply absent.
    let target = env.root.join("out");
    let s = restore(
        &repo,
        new,
        &RestoreOptions {
            target: target.clone(),
            ..Default::default()
        },
        &NoProgress,
    )
    .expect("restore");
    assert!(s.failed.is_empty(), "{:?}", s.failed);
    assert!(!target.join("src/sub/victim.bin").exists());
    // Nothing more to repair the second time (the original is still damaged, the copy is not).
    let again = repair_snapshots(&repo, true).expect("again");
    assert_eq!(again.repaired.len(), 1, "only the kept original");
    assert_eq!(again.repaired[0].original, first.id);
}
