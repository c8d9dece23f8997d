//! The corruption matrix (issue 3): every object kind × every kind of damage, each on a fresh
//! copy of one pristine repository, and for each: nothing panics, the damage is detected (open
//! fails with a clear error, or `check --read-data` reports it and names the object), and a
//! restore writes every file the damage does not touch byte for byte and lists the others as
//! failed, never a wrong byte and never a silently missing file.
//!
//! Object kinds: the config, the key file, a data pack (the one holding the first data blob of
//! `data/a.bin`), a tree pack (the one holding the latest snapshot's root tree), an index file
//! (the one naming that data pack) and a snapshot (the latest). Damage: one random bit flipped,
//! truncation to half, deletion, and a swap with another valid object of the same kind (the
//! config and the key file of a second repository initialised separately; for the others,
//! another object of the same repository copied over the damaged one, keeping its name).
//!
//! The bit positions come from a fixed seed (`CAIRN_CORRUPTION_SEED=<u64>` picks another); the
//! keys are random, so object sizes, and with them where a bit lands, vary a little per run.
//! `cargo nextest run -p cairn-engine --test corruption --no-capture` shows the table.
//!
//! Also here: a bit flipped in every byte of the config and key file, and regression tests for
//! two bugs the matrix found: a damaged older snapshot blocked `latest` and every directory
//! backup, and an unreadable subtree aborted the whole restore. A truncated pack is damage
//! (`Corrupt`), not a storage failure.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::Instant;

use engine::ErrorKind;
use engine::archiver::{BackupOptions, Source, backup};
use engine::backend::FileType;
use engine::checker::{CheckOptions, CheckReport, ReadData, check};
use engine::progress::NoProgress;
use engine::repository::{InitOptions, OpenOptions, Repository, init};
use engine::restorer::{RestoreOptions, RestoreSummary, error_chain, restore};
use repo_format::{BlobId, Content, IndexId, KdfParams, NodeKind, PackId, Snapshot, SnapshotId};

const PASSWORD: &[u8] = b"correct horse";

/// A deterministic xorshift generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

fn init_repo(path: &Path) {
    let opts = InitOptions {
        kdf: KdfParams::TEST,
        ..InitOptions::default()
    };
    init(&path.to_string_lossy(), PASSWORD, &opts).expect("init");
}

fn open(repo_dir: &Path, cache: &Path) -> engine::Result<Repository> {
    let opts = OpenOptions {
        cache_dir: Some(cache.to_path_buf()),
    };
    Repository::open(&repo_dir.to_string_lossy(), PASSWORD, &opts)
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read_dir").flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), &target).expect("copy");
        }
    }
}

/// The regular files below `dir`, by path relative to `base`, with their contents.
fn read_files(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
    for e in fs::read_dir(dir).expect("read_dir").flatten() {
        let path = e.path();
        if path.is_dir() {
            read_files(base, &path, out);
        } else {
            let rel = path.strip_prefix(base).expect("below base");
            out.insert(
                rel.to_string_lossy().into_owned(),
                fs::read(&path).expect("read"),
            );
        }
    }
}

/// Every file of the tree `root` (path relative to the restore target) with the blobs it
/// needs: its data blobs, its content lists and every tree above it.
fn file_blobs(repo: &Repository, root: &BlobId) -> BTreeMap<String, BTreeSet<BlobId>> {
    fn walk(
        repo: &Repository,
        tree: &BlobId,
        prefix: &str,
        above: &BTreeSet<BlobId>,
        out: &mut BTreeMap<String, BTreeSet<BlobId>>,
    ) {
        let mut above = above.clone();
        above.insert(*tree);
        for node in repo.load_tree(tree).expect("pristine tree").nodes {
            let name = String::from_utf8(node.name.clone()).expect("utf-8 names");
            let path = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            match &node.kind {
                NodeKind::Dir { subtree } => walk(repo, subtree, &path, &above, out),
                NodeKind::File { content } => {
                    let mut blobs = above.clone();
                    match content {
                        Content::Direct(ids) => blobs.extend(ids.iter().copied()),
                        Content::Indirect(lists) => {
                            for list in lists {
                                blobs.insert(*list);
                                let l = repo.load_content_list(list).expect("pristine list");
                                blobs.extend(l.ids.iter().copied());
                            }
                        }
                    }
                    out.insert(path, blobs);
                }
                _ => {}
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(repo, root, "", &BTreeSet::new(), &mut out);
    out
}

/// What one snapshot holds: its id, the source files as they were, and what each file needs.
struct SnapInfo {
    id: SnapshotId,
    files: BTreeMap<String, Vec<u8>>,
    needs: BTreeMap<String, BTreeSet<BlobId>>,
}

/// The pristine repository and everything the cases need to know about it.
struct Pristine {
    _dir: tempfile::TempDir,
    repo_dir: PathBuf,
    /// The backed-up directory, as it was at the second backup.
    src: PathBuf,
    /// A second repository, initialised separately with the same password.
    other_dir: PathBuf,
    /// The two snapshots, oldest first.
    snaps: [SnapInfo; 2],
    data_pack: PackId,
    /// The data pack of the second backup (swapped over `data_pack`).
    other_data_pack: PackId,
    /// The tree pack holding the latest snapshot's root tree.
    tree_pack: PackId,
    /// The tree pack of the first backup (swapped over `tree_pack`).
    other_tree_pack: PackId,
    /// The index file naming `data_pack`, and the other one.
    index: IndexId,
    other_index: IndexId,
    /// The blobs each pack holds, and the packs each index file names.
    pack_blobs: BTreeMap<PackId, BTreeSet<BlobId>>,
    index_packs: BTreeMap<IndexId, Vec<PackId>>,
    key_file: String,
}

fn pack_rel(id: &PackId) -> String {
    let hex = id.to_hex();
    format!("data/{}/{hex}", &hex[..2])
}

/// `data/a.bin` (300 kB), `data/b.txt`, `data/sub/c.bin` (100 kB) and 40 small files in
/// `data/old/`, backed up; then `data/old/` removed, `data/d.bin` (500 kB) and `data/sub/e.bin`
/// (50 kB) added, and backed up again. Each backup writes its own data pack, tree pack, index
/// file and snapshot.
fn pristine() -> Pristine {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_path_buf();
    let repo_dir = root.join("repo");
    let other_dir = root.join("other");
    init_repo(&repo_dir);
    init_repo(&other_dir);
    let src = root.join("src").join("data");
    fs::create_dir_all(src.join("sub")).expect("mkdir");
    let mut rng = Rng(0xc0ffee);
    fs::write(src.join("a.bin"), rng.bytes(300_000)).expect("write");
    fs::write(src.join("b.txt"), b"small\n").expect("write");
    fs::write(src.join("sub/c.bin"), rng.bytes(100_000)).expect("write");
    // Only in the first backup: makes its tree pack larger than the second's, so a swap of
    // the second's over it passes the size check and must be caught by the header and AADs.
    fs::create_dir_all(src.join("old")).expect("mkdir");
    for i in 0..40 {
        let name = format!("old-file-with-a-long-name-{i:03}.txt");
        fs::write(src.join("old").join(name), rng.bytes(100)).expect("write");
    }

    let repo = open(&repo_dir, &root.join("cache")).expect("open");
    let mut snaps = Vec::new();
    for round in 0..2 {
        if round == 1 {
            fs::remove_dir_all(src.join("old")).expect("rm old");
            fs::write(src.join("d.bin"), rng.bytes(500_000)).expect("write");
            fs::write(src.join("sub/e.bin"), rng.bytes(50_000)).expect("write");
        }
        let r = backup(
            &repo,
            BackupOptions::new(Source::Paths(vec![src.clone()])),
            &NoProgress,
        )
        .expect("backup");
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        let mut files = BTreeMap::new();
        read_files(&root.join("src"), &root.join("src"), &mut files);
        let needs = file_blobs(&repo, &r.snapshot.tree);
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            needs.keys().collect::<Vec<_>>()
        );
        snaps.push((
            r.snapshot.clone(),
            SnapInfo {
                id: r.id,
                files,
                needs,
            },
        ));
    }

    let pack_of = |id: &BlobId| repo.lookup_blob(id).expect("lookup").expect("indexed").pack;
    let first_data = |snap: &Snapshot, path: &[u8]| -> BlobId {
        let node = engine::restorer::find_node(&repo, &snap.tree, path).expect("node");
        let NodeKind::File {
            content: Content::Direct(ids),
        } = node.kind
        else {
            panic!("direct content expected")
        };
        ids[0]
    };
    let data_pack = pack_of(&first_data(&snaps[1].0, b"data/a.bin"));
    let other_data_pack = pack_of(&first_data(&snaps[1].0, b"data/d.bin"));
    let tree_pack = pack_of(&snaps[1].0.tree);
    let other_tree_pack = pack_of(&snaps[0].0.tree);
    assert_ne!(data_pack, other_data_pack, "one data pack per backup");
    assert_ne!(tree_pack, other_tree_pack, "one tree pack per backup");
    let size = |pack: &PackId| {
        fs::metadata(repo_dir.join(pack_rel(pack)))
            .expect("stat")
            .len()
    };
    for (target, source) in [(data_pack, other_data_pack), (tree_pack, other_tree_pack)] {
        assert!(
            size(&source) > size(&target),
            "the pack swapped in is larger than the one it replaces, so the swap is not just a truncation"
        );
    }

    let mut pack_blobs: BTreeMap<PackId, BTreeSet<BlobId>> = BTreeMap::new();
    let mut index_packs = BTreeMap::new();
    for id in repo.list_ids(FileType::Index).expect("list index") {
        let id = IndexId(id);
        let file = repo.load_index(&id).expect("load index");
        for pack in &file.packs {
            pack_blobs
                .entry(pack.id)
                .or_default()
                .extend(pack.entries.iter().map(|e| e.id));
        }
        index_packs.insert(id, file.packs.iter().map(|p| p.id).collect::<Vec<_>>());
    }
    assert_eq!(index_packs.len(), 2, "one index file per backup");
    assert_eq!(pack_blobs.len(), 4, "a data and a tree pack per backup");
    let index = *index_packs
        .iter()
        .find(|(_, packs)| packs.contains(&data_pack))
        .expect("an index file names the data pack")
        .0;
    let other_index = *index_packs.keys().find(|i| **i != index).expect("two");
    let keys = repo.list_ids(FileType::Key).expect("list keys");
    assert_eq!(keys.len(), 1);
    let key_file = format!("keys/{}", keys[0].to_hex());
    drop(repo);
    let snaps: Vec<SnapInfo> = snaps.into_iter().map(|(_, info)| info).collect();
    let snaps: [SnapInfo; 2] = snaps.try_into().unwrap_or_else(|_| unreachable!());
    Pristine {
        _dir: dir,
        repo_dir,
        src,
        other_dir,
        snaps,
        data_pack,
        other_data_pack,
        tree_pack,
        other_tree_pack,
        index,
        other_index,
        pack_blobs,
        index_packs,
        key_file,
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Config,
    Key,
    DataPack,
    TreePack,
    Index,
    Snapshot,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Damage {
    FlipBit,
    Truncate,
    Delete,
    Swap,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Config => "config",
            Kind::Key => "key file",
            Kind::DataPack => "data pack",
            Kind::TreePack => "tree pack",
            Kind::Index => "index file",
            Kind::Snapshot => "snapshot",
        }
    }
}

impl Damage {
    fn name(self) -> &'static str {
        match self {
            Damage::FlipBit => "flip bit",
            Damage::Truncate => "truncate",
            Damage::Delete => "delete",
            Damage::Swap => "swap",
        }
    }
}

/// One line of the table.
struct Row {
    kind: Kind,
    damage: Damage,
    /// Where the damage went (bit offset, sizes).
    detail: String,
    /// How the damage showed: the open error, or check's error kinds.
    found: String,
    detected: bool,
    /// What restore did.
    restore: String,
    /// Unaffected files restored byte-exact / unaffected files.
    unaffected: (usize, usize),
    /// Affected files (those needing something from the damaged object): restored byte-exact
    /// anyway (the damage missed what they need), reported failed or lost to a restore error,
    /// and how many there are.
    affected: (usize, usize, usize),
    /// Assertion failures of this case (empty: the case passed).
    problems: Vec<String>,
}

/// The repository path of the object `kind` damages, and of the object swapped over it.
fn target(p: &Pristine, kind: Kind) -> (String, String) {
    match kind {
        Kind::Config => ("config".into(), "config".into()),
        Kind::Key => (p.key_file.clone(), String::new()),
        Kind::DataPack => (pack_rel(&p.data_pack), pack_rel(&p.other_data_pack)),
        Kind::TreePack => (pack_rel(&p.tree_pack), pack_rel(&p.other_tree_pack)),
        Kind::Index => (
            format!("index/{}", p.index.to_hex()),
            format!("index/{}", p.other_index.to_hex()),
        ),
        Kind::Snapshot => (
            format!("snapshots/{}", p.snaps[1].id.to_hex()),
            format!("snapshots/{}", p.snaps[0].id.to_hex()),
        ),
    }
}

/// Applies the damage to a copy of the repository at `repo`; returns what it did.
fn damage(p: &Pristine, repo: &Path, kind: Kind, how: Damage, rng: &mut Rng) -> String {
    let (rel, swap_from) = target(p, kind);
    let path = repo.join(&rel);
    let bytes = fs::read(&path).expect("read target");
    let len = bytes.len();
    match how {
        Damage::FlipBit => {
            let mut b = bytes;
            let (offset, bit) = (rng.below(len as u64) as usize, rng.below(8) as u8);
            b[offset] ^= 1 << bit;
            fs::write(&path, b).expect("write");
            format!("bit {bit} of byte {offset}/{len}")
        }
        Damage::Truncate => {
            fs::write(&path, &bytes[..len / 2]).expect("write");
            format!("{len} -> {} bytes", len / 2)
        }
        Damage::Delete => {
            fs::remove_file(&path).expect("rm");
            format!("{len} bytes removed")
        }
        Damage::Swap if kind == Kind::Key => {
            // The other repository's key file, under its own (valid) name: a well-formed key
            // file that hashes to its name but wraps another repository's master key.
            let other = fs::read_dir(p.other_dir.join("keys"))
                .expect("keys")
                .flatten()
                .next()
                .expect("a key file")
                .path();
            fs::remove_file(&path).expect("rm");
            fs::copy(
                &other,
                repo.join("keys").join(other.file_name().expect("name")),
            )
            .expect("copy key");
            "replaced by the other repository's key file".into()
        }
        Damage::Swap => {
            let from = if kind == Kind::Config {
                p.other_dir.join(&swap_from)
            } else {
                repo.join(&swap_from)
            };
            fs::copy(&from, &path).expect("copy over");
            let whence = if kind == Kind::Config {
                "the other repository's config"
            } else {
                swap_from.rsplit('/').next().map_or("", |n| &n[..8])
            };
            format!("overwritten by {whence}")
        }
    }
}

/// What opening must say for a damaged config or key file: the error's kind and a phrase of
/// its message that names the problem.
fn open_error_ok(kind: Kind, how: Damage, e: &engine::Error, key_short: &str) -> Option<String> {
    let msg = error_chain(e);
    let ok = match (kind, how, e.kind()) {
        (Kind::Config, Damage::Delete, ErrorKind::NotFound) => msg.contains("no config file"),
        // Another repository's config has another repository id, which is in every key file's
        // AAD: no key file opens, exactly as with a wrong password. A bit flipped inside the
        // repository id of the config looks the same.
        (Kind::Config, Damage::Swap | Damage::FlipBit, ErrorKind::WrongPassword) => {
            msg.contains("opens with this password")
        }
        (Kind::Config, _, ErrorKind::Corrupt) => msg.contains("config"),
        (Kind::Key, Damage::Delete, ErrorKind::Corrupt) => msg.contains("no key files"),
        (Kind::Key, Damage::Swap, ErrorKind::WrongPassword) => {
            msg.contains("opens with this password")
        }
        // A damaged key file is named, with the reason, in the "no key file opens" message.
        (
            Kind::Key,
            Damage::FlipBit | Damage::Truncate,
            ErrorKind::WrongPassword | ErrorKind::Corrupt,
        ) => msg.contains(key_short) && msg.contains("could not be read"),
        _ => false,
    };
    (!ok).then(|| {
        format!(
            "open error of kind {:?} does not name the problem: {msg}",
            e.kind()
        )
    })
}

/// Runs one case on a fresh copy of the pristine repository.
fn run_case(p: &Pristine, kind: Kind, how: Damage, seed: u64) -> Row {
    let mut rng = Rng(seed | 1);
    // Neighbouring seeds give close first outputs: let the generator mix first.
    for _ in 0..8 {
        rng.next();
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let repo_dir = dir.path().join("repo");
    copy_dir(&p.repo_dir, &repo_dir);
    let detail = damage(p, &repo_dir, kind, how, &mut rng);
    let mut row = Row {
        kind,
        damage: how,
        detail,
        found: String::new(),
        detected: false,
        restore: "-".into(),
        unaffected: (0, 0),
        affected: (0, 0, 0),
        problems: Vec::new(),
    };
    let (rel, _) = target(p, kind);
    let name = rel.rsplit('/').next().unwrap_or_default().to_string();

    let repo = match open(&repo_dir, &dir.path().join("cache")) {
        Ok(repo) => repo,
        Err(e) => {
            row.found = format!("open: {:?}", e.kind());
            row.detected = matches!(kind, Kind::Config | Kind::Key);
            let key_short = p.key_file.rsplit('/').next().map_or("", |n| &n[..8]);
            if !row.detected {
                row.problems.push(format!("open failed: {e:?}"));
            } else if let Some(problem) = open_error_ok(kind, how, &e, key_short) {
                row.problems.push(problem);
            }
            println!("  {} / {}: {}", kind.name(), how.name(), error_chain(&e));
            return row;
        }
    };
    if matches!(kind, Kind::Config | Kind::Key) {
        row.found = "open: Ok".into();
        row.problems
            .push("the repository opened despite the damage".into());
        return row;
    }

    // (b) check with read-data reports it, naming the object.
    let report: CheckReport = match check(
        &repo,
        &CheckOptions {
            read_data: ReadData::All,
        },
        &NoProgress,
    ) {
        Ok(r) => r,
        Err(e) => {
            row.problems.push(format!("check failed to run: {e:?}"));
            return row;
        }
    };
    let mut kinds: Vec<&str> = report.errors.iter().map(|f| f.kind.as_str()).collect();
    kinds.dedup();
    row.found = if kinds.is_empty() {
        "check: clean".into()
    } else {
        format!("check: {}", kinds.join(", "))
    };
    for f in &report.errors {
        println!(
            "  {} / {}: {}: {}",
            kind.name(),
            how.name(),
            f.kind,
            f.message
        );
    }
    let unknowable = kind == Kind::Snapshot && how == Damage::Delete;
    if unknowable {
        // Nothing in the repository names a snapshot, so check cannot know a deleted one ever
        // existed: the repository is consistent without it. Noticing a missing or rolled-back
        // snapshot needs state kept outside the repository: `engine::rollback`, tested in
        // hostile.rs (this copy is opened with a fresh cache, which never saw it).
        row.detected = report.errors.is_empty();
        if !row.detected {
            row.problems.push(format!(
                "check reports errors after a snapshot deletion: {:#?}",
                report.errors
            ));
        }
    } else {
        row.detected = !report.errors.is_empty();
        if !row.detected {
            row.problems.push("check reports no error".into());
        }
        // A deleted index file is named by nothing, so no finding can name it.
        let nameable = !(kind == Kind::Index && how == Damage::Delete);
        if nameable
            && !report
                .errors
                .iter()
                .any(|f| f.object == name || f.message.contains(&name[..8]))
        {
            row.problems.push(format!(
                "no error names {} {}: {:#?}",
                kind.name(),
                &name[..8],
                report.errors
            ));
        }
    }

    // (c) restore: the latest snapshot, or (when the latest snapshot is the damaged object) the
    // other one.
    let latest = repo.resolve_snapshot("latest");
    let (snap_info, snapshot, what) = if kind == Kind::Snapshot {
        match (how, latest) {
            (Damage::Delete, Ok((id, snap))) => {
                if id != p.snaps[0].id {
                    row.problems.push(format!(
                        "latest is {} after deleting the newest",
                        id.short()
                    ));
                }
                (&p.snaps[0], snap, "latest (the older)".to_string())
            }
            (Damage::Delete, Err(e)) => {
                row.problems
                    .push(format!("latest cannot be resolved: {e:?}"));
                return row;
            }
            (_, latest) => {
                let note = match latest {
                    Ok((id, _)) => format!("latest = {}", id.short()),
                    Err(e) => format!("latest: {:?} error", e.kind()),
                };
                match repo.load_snapshot(&p.snaps[0].id) {
                    Ok(s) => (&p.snaps[0], s, format!("{note}; the older")),
                    Err(e) => {
                        row.problems
                            .push(format!("the intact older snapshot does not load: {e:?}"));
                        return row;
                    }
                }
            }
        }
    } else {
        match latest {
            Ok((id, snap)) if id == p.snaps[1].id => (&p.snaps[1], snap, "latest".to_string()),
            Ok((id, _)) => {
                row.problems
                    .push(format!("latest is {} instead of the newest", id.short()));
                return row;
            }
            Err(e) => {
                row.problems
                    .push(format!("latest cannot be resolved: {e:?}"));
                return row;
            }
        }
    };
    // The blobs the damage may touch: everything in the damaged pack, or in the packs the
    // damaged index file names. A file needing none of them is unaffected.
    let damaged: BTreeSet<BlobId> = match kind {
        Kind::DataPack => p.pack_blobs[&p.data_pack].clone(),
        Kind::TreePack => p.pack_blobs[&p.tree_pack].clone(),
        Kind::Index => p.index_packs[&p.index]
            .iter()
            .flat_map(|pk| p.pack_blobs[pk].iter().copied())
            .collect(),
        _ => BTreeSet::new(),
    };
    let target = dir.path().join("restore");
    let opts = RestoreOptions {
        target: target.clone(),
        threads: Some(2),
        ..RestoreOptions::default()
    };
    let result = restore(&repo, &snapshot, &opts, &NoProgress);
    let (summary, aborted) = match result {
        Ok(s) => {
            row.restore = format!("{what}: {} files, {} failed", s.files, s.failed.len());
            (s, None)
        }
        Err(e) => {
            row.restore = format!("{what}: error ({:?})", e.kind());
            println!(
                "  {} / {}: restore: {}",
                kind.name(),
                how.name(),
                error_chain(&e)
            );
            if !matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::NotFound) {
                row.problems
                    .push(format!("restore failed with a non-damage error: {e:?}"));
            }
            (RestoreSummary::default(), Some(e))
        }
    };
    for (path, why) in &summary.failed {
        println!(
            "  {} / {}: restore failed {}: {why}",
            kind.name(),
            how.name(),
            path.display()
        );
    }
    let failed: BTreeSet<PathBuf> = summary.failed.iter().map(|(p, _)| p.clone()).collect();
    for (path, _) in &summary.failed {
        if !path.starts_with(&target) {
            row.problems.push(format!(
                "failed path outside the target: {}",
                path.display()
            ));
        }
    }
    for (rel, want) in &snap_info.files {
        let path = target.join(rel);
        let affected = !snap_info.needs[rel].is_disjoint(&damaged);
        let outcome = match fs::read(&path) {
            Ok(got) if got == *want => "ok",
            Ok(_) => "WRONG",
            // A file is reported either by its own path or, when the directory listing it
            // could not be read, by that directory's.
            Err(_) if failed.iter().any(|f| path.starts_with(f)) => "failed",
            Err(_) if aborted.is_some() => "aborted",
            Err(_) => "MISSING",
        };
        match outcome {
            "WRONG" => row
                .problems
                .push(format!("{rel} was restored with the wrong contents")),
            "MISSING" => row
                .problems
                .push(format!("{rel} is missing but not reported as failed")),
            _ => {}
        }
        if affected {
            row.affected.2 += 1;
            match outcome {
                "ok" => row.affected.0 += 1,
                "failed" | "aborted" => row.affected.1 += 1,
                _ => {}
            }
        } else {
            row.unaffected.1 += 1;
            if outcome == "ok" {
                row.unaffected.0 += 1;
            } else {
                row.problems.push(format!(
                    "{rel} needs nothing from the damaged object but was not restored ({outcome})"
                ));
            }
        }
    }
    row
}

#[test]
fn corruption_matrix_every_kind_and_damage_is_detected_and_restore_is_exact_or_loud() {
    let start = Instant::now();
    let base: u64 = std::env::var("CAIRN_CORRUPTION_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x00c0_77a1_0001);
    let p = pristine();
    println!(
        "pristine repository built in {:.1}s; seed {base}",
        start.elapsed().as_secs_f64()
    );
    let kinds = [
        Kind::Config,
        Kind::Key,
        Kind::DataPack,
        Kind::TreePack,
        Kind::Index,
        Kind::Snapshot,
    ];
    let damages = [
        Damage::FlipBit,
        Damage::Truncate,
        Damage::Delete,
        Damage::Swap,
    ];
    let mut rows = Vec::new();
    for (k, &kind) in kinds.iter().enumerate() {
        for (d, &how) in damages.iter().enumerate() {
            let seed = base
                .wrapping_add((k * damages.len() + d) as u64)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let row = catch_unwind(AssertUnwindSafe(|| run_case(&p, kind, how, seed)))
                .unwrap_or_else(|panic| {
                    let what = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                        .unwrap_or_default();
                    Row {
                        kind,
                        damage: how,
                        detail: String::new(),
                        found: "PANIC".into(),
                        detected: false,
                        restore: "-".into(),
                        unaffected: (0, 0),
                        affected: (0, 0, 0),
                        problems: vec![format!("panicked: {what}")],
                    }
                });
            rows.push(row);
        }
    }

    println!();
    println!(
        "{:<10} {:<9} {:<8} {:<36} {:<56} {:>10} {:>8}  damage applied",
        "kind", "damage", "detected", "found", "restore", "unaffected", "affected",
    );
    for r in &rows {
        let frac = |(a, b): (usize, usize)| {
            if b == 0 {
                "-".to_string()
            } else {
                format!("{a}/{b}")
            }
        };
        let (ok, lost, n) = r.affected;
        let affected = if n == 0 {
            "-".to_string()
        } else {
            format!("{ok}+{lost}/{n}")
        };
        println!(
            "{:<10} {:<9} {:<8} {:<36} {:<56} {:>10} {:>8}  {}",
            r.kind.name(),
            r.damage.name(),
            if r.detected { "yes" } else { "NO" },
            r.found,
            r.restore,
            frac(r.unaffected),
            affected,
            r.detail
        );
    }
    println!(
        "unaffected: files needing nothing from the damaged object, restored byte-exact / all such files; affected: files needing something from it, restored byte-exact anyway + reported failed or lost to a loud restore error / all such files (none may be wrong or silently missing). A deleted snapshot is undetectable by design: there 'detected' means check stays clean and the other snapshot restores."
    );
    println!("matrix done in {:.1}s", start.elapsed().as_secs_f64());

    let problems: Vec<String> = rows
        .iter()
        .flat_map(|r| {
            r.problems
                .iter()
                .map(move |m| format!("{} / {}: {m}", r.kind.name(), r.damage.name()))
        })
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(rows.iter().all(|r| r.detected));
}

/// A fresh copy of the pristine repository, opened with a fresh cache.
fn damaged_copy(p: &Pristine) -> (tempfile::TempDir, PathBuf, Repository) {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo_dir = dir.path().join("repo");
    copy_dir(&p.repo_dir, &repo_dir);
    let repo = open(&repo_dir, &dir.path().join("cache")).expect("open");
    (dir, repo_dir, repo)
}

fn flip_bit(path: &Path, offset: usize) {
    let mut bytes = fs::read(path).expect("read");
    bytes[offset] ^= 0x10;
    fs::write(path, bytes).expect("write");
}

/// Beyond the matrix's one random bit: a bit flipped in every byte of the config and of the
/// key file (bit `i % 8` of byte `i`) always fails open, with an error that says what is
/// wrong. Flips inside the config's repository id (bytes 9..41) change the AAD of every key
/// file, so they read as a wrong password: the one message that cannot name the config.
#[test]
fn a_bit_flipped_anywhere_in_the_config_or_key_file_fails_open_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pristine = dir.path().join("pristine");
    init_repo(&pristine);
    let repo = dir.path().join("repo");
    copy_dir(&pristine, &repo);
    let key = fs::read_dir(repo.join("keys"))
        .expect("keys")
        .flatten()
        .next()
        .expect("key file")
        .path();
    let key_short = key.file_name().expect("name").to_string_lossy()[..8].to_string();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    for (what, path) in [("config", repo.join("config")), ("key file", key)] {
        let original = fs::read(&path).expect("read");
        for i in 0..original.len() {
            let mut b = original.clone();
            b[i] ^= 1 << (i % 8);
            fs::write(&path, &b).expect("write");
            let region = match (what, i) {
                ("config", 0..8) => "config magic",
                ("config", 8) => "config version",
                ("config", 9..41) => "config repo id",
                ("config", _) => "config envelope",
                _ => "key file",
            };
            let opened = catch_unwind(AssertUnwindSafe(|| open(&repo, &dir.path().join("cache"))));
            match opened {
                Err(_) => problems.push(format!("{region} byte {i}: open panicked")),
                Ok(Ok(_)) => problems.push(format!("{region} byte {i}: opened despite the flip")),
                Ok(Err(e)) => {
                    let msg = error_chain(&e);
                    let clear = match (region, e.kind()) {
                        ("config repo id", ErrorKind::WrongPassword) => {
                            msg.contains("opens with this password")
                        }
                        ("key file", ErrorKind::WrongPassword) => {
                            msg.contains(&key_short) && msg.contains("damaged")
                        }
                        (r, ErrorKind::Corrupt) if r.starts_with("config") => {
                            msg.contains("config")
                        }
                        _ => false,
                    };
                    if !clear {
                        problems.push(format!("{region} byte {i}: {:?}: {msg}", e.kind()));
                    }
                    *seen.entry(format!("{region}: {:?}", e.kind())).or_default() += 1;
                }
            }
        }
        fs::write(&path, &original).expect("restore the original");
    }
    println!("bit flips by region and error kind: {seen:#?}");
    open(&repo, &dir.path().join("cache")).expect("the originals open again");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// --- Regressions: bugs the matrix found, now fixed ---------------------------------------

/// A damaged OLDER snapshot must not stop `latest`, listing or the next backup: check says
/// "other snapshots are unaffected". `Repository::list_snapshots` used to fail as a whole on
/// the first snapshot that did not load, so `latest`, `cairn snapshots` and the parent search
/// of every directory backup all failed; it now leaves damaged snapshots out and reports them.
#[test]
fn damaged_older_snapshot_blocks_neither_latest_nor_backup() {
    let p = pristine();
    let (_dir, repo_dir, repo) = damaged_copy(&p);
    flip_bit(
        &repo_dir.join("snapshots").join(p.snaps[0].id.to_hex()),
        100,
    );
    let mut problems = Vec::new();
    match repo.resolve_snapshot("latest") {
        Ok((id, _)) if id == p.snaps[1].id => {}
        other => problems.push(format!("latest: {:?}", other.map(|(id, _)| id.short()))),
    }
    if let Err(e) = repo.list_snapshots() {
        problems.push(format!("list_snapshots: {e}"));
    }
    if let Err(e) = backup(
        &repo,
        BackupOptions::new(Source::Paths(vec![p.src.clone()])),
        &NoProgress,
    ) {
        problems.push(format!("directory backup: {e}"));
    }
    assert!(
        problems.is_empty(),
        "with an older snapshot damaged:\n{}",
        problems.join("\n")
    );
}

/// A damaged directory tree must fail only the files below it (the restorer's module docs: "a
/// blob that fails verification fails only the files that need it"), and be reported by path.
#[test]
fn unreadable_subtree_fails_only_the_files_below_it() {
    let p = pristine();
    let (dir, repo_dir, repo) = damaged_copy(&p);
    let (_, snap) = repo.resolve_snapshot("latest").expect("latest");
    let sub = engine::restorer::find_node(&repo, &snap.tree, b"data/sub").expect("data/sub");
    let NodeKind::Dir { subtree } = sub.kind else {
        panic!("data/sub is a directory")
    };
    let loc = repo
        .lookup_blob(&subtree)
        .expect("lookup")
        .expect("indexed");
    flip_bit(
        &repo_dir.join(pack_rel(&loc.pack)),
        (loc.entry.offset + loc.entry.stored_len / 2) as usize,
    );
    let target = dir.path().join("restore");
    let opts = RestoreOptions {
        target: target.clone(),
        threads: Some(2),
        ..RestoreOptions::default()
    };
    let summary = restore(&repo, &snap, &opts, &NoProgress)
        .unwrap_or_else(|e| panic!("restore gave up on everything: {}", error_chain(&e)));
    for (rel, want) in &p.snaps[1].files {
        let got = fs::read(target.join(rel)).ok();
        if rel.starts_with("data/sub/") {
            assert!(got.is_none(), "{rel} restored from a damaged tree");
        } else {
            assert_eq!(got.as_ref(), Some(want), "{rel}");
        }
    }
    assert!(
        summary
            .failed
            .iter()
            .any(|(path, _)| path.starts_with(target.join("data/sub"))),
        "the damaged directory is reported: {:?}",
        summary.failed
    );
}
