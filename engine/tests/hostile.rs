//! Hostile storage (issue 8): whoever controls the storage can read, delete, replace, replay and
//! reorder objects, but cannot make cairn restore wrong bytes without an error (SPEC §14).
//!
//! Each case does what such an attacker can do without a key, then asserts that a restore or
//! dump gives the exact original bytes or fails with an error that names the problem (never
//! wrong bytes, never a file silently missing), and that `check --read-data` reports it:
//!
//! - a valid pack, index file or snapshot of the same repository copied over another's name
//!   (dump and the error messages here; `corruption.rs` runs full restores of the same swaps);
//! - an old index file replayed after prune repacked its packs and superseded it (its entries
//!   never override a current file's, SPEC §8: every snapshot restores exactly);
//! - a blob moved inside a pack: two envelopes of equal length swapped, with the pack's name
//!   kept, and with the pack renamed to the hash of its new bytes; and the AAD property itself;
//! - the config replayed (harmless: it is write-once), and another repository's config and key
//!   file put in place;
//! - a removed key file replayed: it opens again (SPEC §14: a removed key cannot be revoked);
//! - the newest snapshot deleted to roll `latest` back: a warning from the machine that saw it
//!   (`engine::rollback`), none after this machine's own `forget`, once after another's; none
//!   from a listing that overlaps this machine's `forget` or backup in another process.
//!
//! The repositories are local directories: the attacker's moves are file operations.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::grace::{dump, stream};
use common::{PASSWORD, Rng};
use engine::ErrorKind;
use engine::archiver::{BackupOptions, Source, backup};
use engine::backend::FileType;
use engine::checker::{CheckOptions, CheckReport, ReadData, check};
use engine::forget::forget_ids;
use engine::index::cache::BlobLocation;
use engine::progress::NoProgress;
use engine::protect::set_protected;
use engine::prune::{MaxUnused, PruneOptions, prune};
use engine::repository::{InitOptions, OpenOptions, Repository, init};
use engine::restorer::{
    RestoreOptions, RestoreSummary, dump_content, error_chain, find_node, restore,
};
use engine::rollback::RollbackWarning;
use repo_format::{
    BlobId, Content, FormatError, Id, KdfParams, KeyFile, NodeKind, PackId, SnapshotId, object_id,
};

// --- Fixture --------------------------------------------------------------------------------

/// A repository in a temporary directory, backed up from `src/data` twice.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    repo_dir: PathBuf,
    /// The cache of the machine that made the backups.
    cache: PathBuf,
    /// The two snapshots, oldest first, each with the files it holds (path below the restore
    /// target → contents).
    snaps: Vec<(SnapshotId, BTreeMap<String, Vec<u8>>)>,
}

fn init_at(path: &Path, grace: Option<u64>) {
    let opts = InitOptions {
        kdf: KdfParams::TEST,
        prune_grace_secs: grace,
        ..InitOptions::default()
    };
    init(&path.to_string_lossy(), PASSWORD, &opts).expect("init");
}

fn open_with(repo_dir: &Path, cache: &Path, password: &[u8]) -> engine::Result<Repository> {
    let opts = OpenOptions {
        cache_dir: Some(cache.to_path_buf()),
    };
    Repository::open(&repo_dir.to_string_lossy(), password, &opts)
}

impl Fixture {
    /// Opens the repository with the backup machine's cache.
    fn open(&self) -> Repository {
        open_with(&self.repo_dir, &self.cache, PASSWORD).expect("open")
    }

    /// Opens the repository with a cache of its own (a fresh machine, or a fresh cache).
    fn open_fresh(&self, name: &str) -> engine::Result<Repository> {
        open_with(&self.repo_dir, &self.root.join(name), PASSWORD)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.repo_dir.join(rel)
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

/// `data/a.bin` (300 kB), `data/b.bin` and `data/c.bin` (1000 random bytes each: one blob each,
/// stored raw, so their envelopes have the same length), `data/d.txt`; backed up; then
/// `data/e.bin` (200 kB) added and backed up again. Each backup writes one data pack, one tree
/// pack, one index file and one snapshot.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_path_buf();
    let repo_dir = root.join("repo");
    init_at(&repo_dir, None);
    let src = root.join("src").join("data");
    fs::create_dir_all(&src).expect("mkdir");
    let mut rng = Rng(0x5eed8);
    fs::write(src.join("a.bin"), rng.bytes(300_000)).expect("write");
    fs::write(src.join("b.bin"), rng.bytes(1000)).expect("write");
    fs::write(src.join("c.bin"), rng.bytes(1000)).expect("write");
    fs::write(src.join("d.txt"), b"small\n").expect("write");
    let cache = root.join("cache");
    let repo = open_with(&repo_dir, &cache, PASSWORD).expect("open");
    let mut snaps = Vec::new();
    for round in 0..2 {
        if round == 1 {
            fs::write(src.join("e.bin"), rng.bytes(200_000)).expect("write");
        }
        let r = backup(
            &repo,
            BackupOptions::new(Source::Paths(vec![src.clone()])),
            &NoProgress,
        )
        .expect("backup");
        let mut files = BTreeMap::new();
        read_files(&root.join("src"), &root.join("src"), &mut files);
        snaps.push((r.id, files));
    }
    drop(repo);
    Fixture {
        _dir: dir,
        root,
        repo_dir,
        cache,
        snaps,
    }
}

fn pack_rel(id: &PackId) -> String {
    let hex = id.to_hex();
    format!("data/{}/{hex}", &hex[..2])
}

/// Where the (single) data blob of the file at `path` in snapshot `snap` is stored.
fn blob_of(repo: &Repository, snap: &SnapshotId, path: &[u8]) -> BlobLocation {
    let s = repo.load_snapshot(snap).expect("snapshot");
    let node = find_node(repo, &s.tree, path).expect("node");
    let NodeKind::File {
        content: Content::Direct(ids),
    } = node.kind
    else {
        panic!("direct content expected")
    };
    let id: BlobId = ids[0];
    repo.lookup_blob(&id).expect("lookup").expect("indexed")
}

/// The contents of the file at `path` in snapshot `snap`, via `dump`.
fn dump_file(repo: &Repository, snap: &SnapshotId, path: &str) -> engine::Result<Vec<u8>> {
    let s = repo.load_snapshot(snap)?;
    let node = find_node(repo, &s.tree, path.as_bytes())?;
    let mut out = Vec::new();
    dump_content(repo, &node, &mut out, &NoProgress)?;
    Ok(out)
}

/// Restores snapshot `snap` into a new directory and checks every file: byte-exact, or
/// reported failed (or lost to a restore that failed as a whole with a damage error). Returns
/// how many files were exact and how many failed loudly.
fn restore_exact_or_loud(
    repo: &Repository,
    snap: &SnapshotId,
    files: &BTreeMap<String, Vec<u8>>,
    target: &Path,
) -> (usize, usize) {
    let opts = RestoreOptions {
        target: target.to_path_buf(),
        threads: Some(2),
        ..RestoreOptions::default()
    };
    let (summary, aborted) = match repo
        .load_snapshot(snap)
        .and_then(|s| restore(repo, &s, &opts, &NoProgress))
    {
        Ok(s) => (s, false),
        Err(e) => {
            assert!(
                matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::NotFound),
                "restore failed with a non-damage error: {}",
                error_chain(&e)
            );
            (RestoreSummary::default(), true)
        }
    };
    let (mut exact, mut loud) = (0, 0);
    for (rel, want) in files {
        let path = target.join(rel);
        match fs::read(&path) {
            Ok(got) => {
                assert!(got == *want, "{rel} was restored with wrong contents");
                exact += 1;
            }
            Err(_) => {
                assert!(
                    aborted || summary.failed.iter().any(|(f, _)| path.starts_with(f)),
                    "{rel} is missing but not reported as failed: {:?}",
                    summary.failed
                );
                loud += 1;
            }
        }
    }
    (exact, loud)
}

fn check_all(repo: &Repository) -> CheckReport {
    check(
        repo,
        &CheckOptions {
            read_data: ReadData::All,
        },
        &NoProgress,
    )
    .expect("check runs")
}

/// Asserts that `check` reports an error of kind `kind` naming `object` (its full or short id).
fn assert_check_reports(report: &CheckReport, kind: &str, object: &Id) {
    let found = report.errors.iter().any(|f| {
        f.kind.as_str() == kind
            && (f.object == object.to_hex() || f.message.contains(&object.short()))
    });
    assert!(
        found,
        "check reports no {kind} naming {}: {:#?}",
        object.short(),
        report.errors
    );
}

// --- Replaced objects ------------------------------------------------------------------------

/// A valid pack, index file or snapshot of the repository copied over another's name: dump of
/// what the replaced object held fails with an error naming the object; check names it.
#[test]
fn another_valid_object_of_the_repository_under_a_name_is_refused() {
    let f = fixture();
    let (old, new) = (f.snaps[0].0, f.snaps[1].0);
    let want_e = &f.snaps[1].1["data/e.bin"];
    let (new_pack, old_pack, new_index, old_index) = {
        let repo = f.open();
        let new_pack = blob_of(&repo, &new, b"data/e.bin").pack;
        let old_pack = blob_of(&repo, &old, b"data/a.bin").pack;
        assert_ne!(new_pack, old_pack, "one data pack per backup");
        let mut index = repo.list_ids(FileType::Index).expect("list index");
        assert_eq!(index.len(), 2, "one index file per backup");
        let names_new = |id: &Id| {
            repo.load_index(&repo_format::IndexId(*id))
                .expect("index")
                .packs
                .iter()
                .any(|p| p.id == new_pack)
        };
        index.sort_by_key(|id| !names_new(id));
        (new_pack, old_pack, index[0], index[1])
    };
    let save = |rel: &str| fs::read(f.path(rel)).expect("read");
    let put_back = |rel: &str, bytes: &[u8]| fs::write(f.path(rel), bytes).expect("write");

    // The second backup's data pack replaced by the first's.
    let rel = pack_rel(&new_pack);
    let original = save(&rel);
    fs::copy(f.path(&pack_rel(&old_pack)), f.path(&rel)).expect("copy");
    let repo = f.open_fresh("cache-pack").expect("open");
    let e = dump_file(&repo, &new, "data/e.bin").expect_err("dump of a replaced pack");
    let msg = error_chain(&e);
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{msg}");
    assert!(msg.contains(&new_pack.0.short()), "names the pack: {msg}");
    // Its header (the other pack's) disagrees with the index file.
    assert_check_reports(&check_all(&repo), "header-mismatch", &new_pack.0);
    drop(repo);
    put_back(&rel, &original);

    // The second backup's index file replaced by the first's: it is skipped as damaged (and
    // named), its blobs look unindexed, and nothing is read from a wrong place.
    let rel = format!("index/{}", new_index.to_hex());
    let original = save(&rel);
    fs::copy(
        f.path(&format!("index/{}", old_index.to_hex())),
        f.path(&rel),
    )
    .expect("copy");
    let repo = f.open_fresh("cache-index").expect("open");
    let damaged = repo.damaged_index_files();
    assert!(
        damaged
            .iter()
            .any(|(id, why)| id.0 == new_index && why.contains("was replaced")),
        "the replaced index file is named: {damaged:?}"
    );
    let e = dump_file(&repo, &new, "data/e.bin").expect_err("dump without its index file");
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{}", error_chain(&e));
    assert!(error_chain(&e).contains("no index file names it"), "{e}");
    assert_check_reports(&check_all(&repo), "damaged-index", &new_index);
    drop(repo);
    put_back(&rel, &original);

    // The newest snapshot replaced by the older one: loading it by its name fails, listing
    // leaves it out as damaged (not as gone), and the older one still dumps exactly.
    let rel = format!("snapshots/{}", new.to_hex());
    let original = save(&rel);
    fs::copy(f.path(&format!("snapshots/{}", old.to_hex())), f.path(&rel)).expect("copy");
    let repo = f.open();
    let e = repo.load_snapshot(&new).expect_err("a replaced snapshot");
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert!(
        error_chain(&e).contains("was replaced"),
        "{}",
        error_chain(&e)
    );
    let listed = repo.list_snapshots().expect("list");
    assert_eq!(listed.len(), 1);
    assert!(repo.damaged_snapshots().iter().any(|(id, _)| *id == new));
    assert_eq!(repo.rollback_warning(), None, "damage, not a rollback");
    assert_check_reports(&check_all(&repo), "damaged-snapshot", &new.0);
    assert_eq!(
        dump_file(&repo, &old, "data/a.bin").expect("the older snapshot"),
        f.snaps[0].1["data/a.bin"]
    );
    drop(repo);

    // Everything put back: exact again, and check is clean.
    put_back(&rel, &original);
    let repo = f.open_fresh("cache-clean").expect("open");
    assert_eq!(dump_file(&repo, &new, "data/e.bin").expect("dump"), *want_e);
    assert!(check_all(&repo).errors.is_empty());
}

// --- Replayed index file ---------------------------------------------------------------------

/// An old index file replayed after a prune repacked its packs and superseded it: the file
/// that supersedes it is listed, so its entries never override a current file's (SPEC §8) and
/// every snapshot restores exactly, with the cache that saw the sweep and with a fresh one; the
/// replayed file is recorded as superseded, not downloaded again on the next sync. `check`
/// reads every index file itself and still reports the packs the replayed file names that are
/// gone.
#[test]
fn an_old_index_file_replayed_after_prune_superseded_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo_dir = dir.path().join("repo");
    init_at(&repo_dir, Some(1));
    let cache = dir.path().join("cache");
    let repo = open_with(&repo_dir, &cache, PASSWORD).expect("open");
    let mut rng = Rng(0x1dc5);
    let first = rng.bytes(4 << 20);
    let mut second = first[..2 << 20].to_vec();
    second.extend(rng.bytes(1 << 20));
    let third = first[3 << 20..].to_vec();
    let a = stream(&repo, first);
    let b = stream(&repo, second.clone());
    let c = stream(&repo, third.clone());
    forget_ids(&repo, &[a.to_hex()], false).expect("forget");
    let expected = BTreeMap::from([(b, second), (c, third)]);

    // The attacker keeps a copy of index/ as it is now.
    let saved: Vec<(String, Vec<u8>)> = fs::read_dir(repo_dir.join("index"))
        .expect("index/")
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).expect("read"),
            )
        })
        .collect();
    let packs_before = repo.list_ids(FileType::Pack).expect("list packs");

    let opts = PruneOptions {
        max_unused: MaxUnused::Percent(0.0),
        ..PruneOptions::default()
    };
    let wait = || std::thread::sleep(Duration::from_millis(2100));
    wait();
    let r = prune(&repo, &opts, &NoProgress).expect("prune marks and repacks");
    assert!(r.marked_repacked >= 1, "{r:?}");
    wait();
    let r = prune(&repo, &opts, &NoProgress).expect("prune sweeps");
    assert!(r.sweep.packs_deleted >= 1, "{r:?}");
    let packs_after = repo.list_ids(FileType::Pack).expect("list packs");
    let deleted: Vec<Id> = packs_before
        .iter()
        .filter(|p| !packs_after.contains(p))
        .copied()
        .collect();
    assert!(!deleted.is_empty());
    drop(repo);

    // The old index files come back.
    let mut replayed = 0;
    for (name, bytes) in &saved {
        let path = repo_dir.join("index").join(name);
        if !path.exists() {
            fs::write(&path, bytes).expect("replay");
            replayed += 1;
        }
    }
    assert!(replayed >= 1, "the sweep superseded an index file");

    // The cache that saw the new index files, and a fresh one.
    for cache in [cache.clone(), dir.path().join("fresh-cache")] {
        let repo = open_with(&repo_dir, &cache, PASSWORD).expect("open");
        let sync = repo.sync_index_report().expect("sync again");
        assert_eq!(
            (sync.loaded, sync.superseded, sync.rebuilt),
            (0, replayed, false),
            "the replayed files are recorded as superseded and not read again"
        );
        let listed: Vec<SnapshotId> = repo
            .list_snapshots()
            .expect("list")
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(listed.len(), expected.len());
        for id in &listed {
            let out = dump(&repo, id).unwrap_or_else(|e| {
                panic!(
                    "snapshot {} after the replay: {}",
                    id.0.short(),
                    error_chain(&e)
                )
            });
            assert!(
                out == expected[id],
                "snapshot {} restored wrong bytes",
                id.0.short()
            );
        }
        let report = check_all(&repo);
        assert!(
            deleted.iter().any(|p| report
                .errors
                .iter()
                .any(|f| f.kind.as_str() == "missing-pack" && f.message.contains(&p.short()))),
            "check names a pack the replayed index file points at: {:#?}",
            report.errors
        );
    }
}

// --- Blobs moved inside a pack ---------------------------------------------------------------

/// Two blob envelopes of equal length swapped inside a pack: with the pack's name kept, the
/// AAD of each blob (its id) fails at the other's offset and check names both blobs and the
/// pack; with the
/// pack renamed to the hash of its new bytes, the index still names the old pack, so reads
/// fail with "not found" and check reports the missing pack.
#[test]
fn a_blob_moved_inside_a_pack_fails_authentication() {
    let f = fixture();
    let (snap, files) = (&f.snaps[0].0, &f.snaps[0].1);
    let repo = f.open();
    let b = blob_of(&repo, snap, b"data/b.bin");
    let c = blob_of(&repo, snap, b"data/c.bin");
    assert_eq!(b.pack, c.pack, "one data pack per backup");
    assert_eq!(
        b.entry.stored_len, c.entry.stored_len,
        "equal-length envelopes"
    );

    // The AAD property itself: c's envelope at b's place does not open as b.
    let env_c = repo
        .read_pack_range(
            &c.pack,
            u64::from(c.entry.offset),
            u64::from(c.entry.stored_len),
        )
        .expect("read c");
    let e = repo_format::open_blob(repo.keys(), &b.entry, &env_c).expect_err("c's bytes as b");
    assert!(
        matches!(e, FormatError::AuthenticationFailed { .. }),
        "{e:?}"
    );
    let e = repo.open_blob(&b, &env_c).expect_err("c's bytes as b");
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert!(error_chain(&e).contains("authentication failed"), "{e}");
    drop(repo);

    // Swap the two envelopes in the pack file, keeping its name.
    let rel = pack_rel(&b.pack);
    let mut bytes = fs::read(f.path(&rel)).expect("read pack");
    let (ob, oc, len) = (
        b.entry.offset as usize,
        c.entry.offset as usize,
        b.entry.stored_len as usize,
    );
    let env_b = bytes[ob..ob + len].to_vec();
    let env_c = bytes[oc..oc + len].to_vec();
    bytes[ob..ob + len].copy_from_slice(&env_c);
    bytes[oc..oc + len].copy_from_slice(&env_b);
    fs::write(f.path(&rel), &bytes).expect("write pack");

    let repo = f.open_fresh("cache-swapped").expect("open");
    for (path, blob) in [("data/b.bin", &b), ("data/c.bin", &c)] {
        let e = dump_file(&repo, snap, path).expect_err("a moved blob");
        let msg = error_chain(&e);
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{msg}");
        assert!(
            msg.contains(&blob.entry.id.0.short()) && msg.contains(&blob.pack.0.short()),
            "names the blob and its pack: {msg}"
        );
        assert!(msg.contains("authentication failed"), "{msg}");
    }
    assert_eq!(
        dump_file(&repo, snap, "data/a.bin").expect("a.bin is untouched"),
        files["data/a.bin"]
    );
    let (exact, loud) = restore_exact_or_loud(&repo, snap, files, &f.root.join("restore-swapped"));
    assert_eq!((exact, loud), (files.len() - 2, 2), "b.bin and c.bin fail");
    // Check reads the pack whole: its name no longer matches, and each moved blob fails where
    // the header puts it; the blob findings explain the damage and name the pack.
    let report = check_all(&repo);
    assert_check_reports(&report, "damaged-blob", &b.entry.id.0);
    assert_check_reports(&report, "damaged-blob", &c.entry.id.0);
    assert!(
        report
            .errors
            .iter()
            .all(|e| e.message.contains(&b.pack.0.short())),
        "{:#?}",
        report.errors
    );
    drop(repo);

    // The attacker renames the pack to the hash of its new bytes: the name check passes, but
    // no index file names that pack.
    let renamed = PackId(object_id(&bytes));
    fs::create_dir_all(f.path(&pack_rel(&renamed)).parent().expect("shard")).expect("mkdir");
    fs::rename(f.path(&rel), f.path(&pack_rel(&renamed))).expect("rename");
    let repo = f.open_fresh("cache-renamed").expect("open");
    let e = dump_file(&repo, snap, "data/b.bin").expect_err("the pack is gone");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{}", error_chain(&e));
    assert!(error_chain(&e).contains(&b.pack.0.short()), "{e}");
    let (exact, loud) = restore_exact_or_loud(&repo, snap, files, &f.root.join("restore-renamed"));
    assert!(loud >= 3 && exact + loud == files.len(), "{exact} {loud}");
    let report = check_all(&repo);
    assert_check_reports(&report, "missing-pack", &b.pack.0);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.kind.as_str() == "unreferenced-pack" && w.object == renamed.to_hex()),
        "{:#?}",
        report.warnings
    );
}

// --- Config and key files --------------------------------------------------------------------

/// The config is write-once, so replaying it is harmless (its bytes never changed). Another
/// repository's config fails open as a wrong password (its `repo_id` is in every key file's
/// AAD); with that repository's key file beside it (same password), the storage has swapped in
/// another repository: it opens, but no object of this one authenticates.
#[test]
fn a_replayed_config_is_harmless_and_another_repository_s_is_refused() {
    let f = fixture();
    let (old, new) = (f.snaps[0].0, f.snaps[1].0);
    let config = fs::read(f.path("config")).expect("config");
    fs::write(f.path("config"), &config).expect("replay the config");
    let repo = f.open();
    assert_eq!(
        dump_file(&repo, &new, "data/e.bin").expect("dump"),
        f.snaps[1].1["data/e.bin"]
    );
    drop(repo);

    let other = f.root.join("other");
    init_at(&other, None);
    fs::copy(other.join("config"), f.path("config")).expect("other config");
    let e = f
        .open_fresh("cache-other")
        .expect_err("another repository's config");
    assert_eq!(e.kind(), ErrorKind::WrongPassword, "{}", error_chain(&e));
    assert!(error_chain(&e).contains("opens with this password"), "{e}");

    // Its key file too.
    for k in fs::read_dir(other.join("keys")).expect("keys").flatten() {
        fs::copy(k.path(), f.path("keys").join(k.file_name())).expect("other key");
    }
    let repo = f
        .open_fresh("cache-other2")
        .expect("the other repository's keys open");
    assert!(repo.list_snapshots().expect("list").is_empty());
    let damaged: Vec<SnapshotId> = repo
        .damaged_snapshots()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert!(
        damaged.contains(&old) && damaged.contains(&new),
        "{damaged:?}"
    );
    assert_eq!(repo.damaged_index_files().len(), 2);
    let e = repo.load_snapshot(&new).expect_err("not this repository's");
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert!(error_chain(&e).contains("authentication failed"), "{e}");
    let report = check_all(&repo);
    assert_check_reports(&report, "damaged-snapshot", &new.0);
    assert_eq!(
        report
            .errors
            .iter()
            .filter(|f| f.kind.as_str() == "damaged-index")
            .count(),
        2
    );
    drop(repo);

    // The original config back: this repository again, exact.
    fs::write(f.path("config"), &config).expect("config back");
    let repo = f.open_fresh("cache-back").expect("open");
    assert_eq!(
        dump_file(&repo, &new, "data/e.bin").expect("dump"),
        f.snaps[1].1["data/e.bin"]
    );
}

/// A key file removed (its password "revoked") and later put back by the storage opens again:
/// every key file wraps the same master key, which never changes, so a removed key cannot be
/// revoked (SPEC §14). This pins down the documented behaviour.
#[test]
fn a_removed_key_file_replayed_opens_again() {
    let f = fixture();
    let repo = f.open();
    let other_password: &[u8] = b"old password";
    let key_bytes = KeyFile::create(
        repo.keys().repo_id(),
        repo.keys().master(),
        other_password,
        KdfParams::TEST,
        [7; 32],
        [9; 16],
        1_700_000_000,
        "host",
        "user",
    )
    .expect("key file");
    let key_name = object_id(&key_bytes).to_hex();
    let master = repo.keys().master().encode();
    repo.block_on(
        repo.backend()
            .put(FileType::Key, &key_name, key_bytes.clone().into()),
    )
    .expect("put the second key file");
    drop(repo);
    let opened = open_with(&f.repo_dir, &f.cache, other_password).expect("the second password");
    assert_eq!(opened.keys().master().encode(), master);
    drop(opened);

    // Removed: the password no longer opens.
    fs::remove_file(f.path(&format!("keys/{key_name}"))).expect("remove the key file");
    let e = open_with(&f.repo_dir, &f.cache, other_password).expect_err("removed");
    assert_eq!(e.kind(), ErrorKind::WrongPassword);

    // Replayed: it opens again, with the same master key, and reads everything.
    fs::write(f.path(&format!("keys/{key_name}")), &key_bytes).expect("replay");
    let repo = open_with(&f.repo_dir, &f.cache, other_password).expect("replayed key opens");
    assert_eq!(repo.keys().master().encode(), master);
    let (id, files) = &f.snaps[1];
    assert_eq!(
        dump_file(&repo, id, "data/e.bin").expect("dump"),
        files["data/e.bin"]
    );
}

// --- Rollback of `latest` --------------------------------------------------------------------

/// Collects the warnings the handler receives.
fn collect_warnings(repo: &Repository) -> Arc<Mutex<Vec<RollbackWarning>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    repo.set_rollback_handler(move |w| sink.lock().expect("lock").push(w.clone()));
    seen
}

/// The newest snapshot deleted behind cairn's back: `latest` becomes the older one, and the
/// machine that saw the newest warns, once, naming it; the state then moves on.
#[test]
fn deleting_the_newest_snapshot_behind_cairn_s_back_warns_once() {
    let f = fixture();
    let (old, new) = (f.snaps[0].0, f.snaps[1].0);
    // The backups themselves recorded the newest: no listing is needed before the deletion.
    fs::remove_file(f.path(&format!("snapshots/{}", new.to_hex()))).expect("delete");
    let repo = f.open();
    let warnings = collect_warnings(&repo);
    let (latest, _) = repo.resolve_snapshot("latest").expect("latest");
    assert_eq!(latest, old, "latest rolled back");
    let w = repo.rollback_warning().expect("a rollback warning");
    assert_eq!(w.missing, new);
    assert_eq!(w.newest_now.map(|(id, _)| id), Some(old));
    let text = w.to_string();
    for part in [
        new.0.short().as_str(),
        "is gone from the repository",
        "cairn snapshots",
    ] {
        assert!(text.contains(part), "{text}");
    }
    assert_eq!(*warnings.lock().expect("lock"), vec![w]);

    // Once: the next listing, in this process or another, is quiet.
    repo.list_snapshots().expect("list");
    assert_eq!(repo.rollback_warning(), None);
    drop(repo);
    let repo = f.open();
    repo.list_snapshots().expect("list");
    assert_eq!(repo.rollback_warning(), None);

    // A machine that never saw the newest cannot tell (SPEC §14).
    let fresh = f.open_fresh("cache-fresh").expect("open");
    fresh.list_snapshots().expect("list");
    assert_eq!(fresh.rollback_warning(), None);
}

/// This machine's own `forget` of the newest gives no warning; a `protect` rewrite (new id,
/// same time) gives none either; another machine's `forget` warns once on this machine.
#[test]
fn forgets_here_and_rewrites_do_not_warn_but_another_machine_s_forget_does_once() {
    let f = fixture();
    let new = f.snaps[1].0;
    let repo = f.open();
    repo.list_snapshots().expect("list");
    assert_eq!(repo.rollback_warning(), None);

    // protect rewrites the newest under a new id and deletes the old one.
    let changes = set_protected(&repo, &["latest".to_string()], true).expect("protect");
    let protected = changes[0].new.expect("rewritten");
    repo.list_snapshots().expect("list");
    assert_eq!(repo.rollback_warning(), None, "a rewrite is no rollback");

    // Forgotten here (unprotect first): no warning.
    let changes = set_protected(&repo, &[protected.to_hex()], false).expect("unprotect");
    let newest = changes[0].new.expect("rewritten");
    assert_ne!(newest, new);
    forget_ids(&repo, &[newest.to_hex()], false).expect("forget");
    repo.list_snapshots().expect("list");
    assert_eq!(repo.rollback_warning(), None, "forgotten by this machine");

    // A new backup, seen here; another machine forgets it.
    let mut rng = Rng(77);
    let third = stream(&repo, rng.bytes(5000));
    let other = f.open_fresh("cache-other-machine").expect("open");
    forget_ids(&other, &[third.to_hex()], false).expect("forget elsewhere");
    other.list_snapshots().expect("list");
    assert_eq!(other.rollback_warning(), None);
    repo.list_snapshots().expect("list");
    assert_eq!(
        repo.rollback_warning().map(|w| w.missing),
        Some(third),
        "another machine's forget warns here"
    );
    repo.list_snapshots().expect("list");
    assert_eq!(repo.rollback_warning(), None, "once");
}

/// A listing on this machine that runs while `forget` is between marking the recorded
/// snapshot "forgotten here" and deleting it (a scheduled backup listing parents, `cairn
/// snapshots`) keeps the mark: the deletion that follows gives no warning.
#[test]
fn a_listing_during_forget_keeps_the_forgotten_here_mark() {
    let env = common::env();
    let repo = env.open();
    let _s1 = stream(&repo, b"one".to_vec());
    let s2 = stream(&repo, b"two".to_vec());
    repo.list_snapshots().expect("list");
    assert!(repo.rollback_warning().is_none());
    // forget (this machine) marks s2, then ...
    engine::rollback::forgetting(repo.cache_dir(), &[s2]);
    // ... another cairn process on this machine lists the snapshots, ...
    let other = env.open();
    other.list_snapshots().expect("list");
    assert_eq!(other.rollback_warning(), None);
    assert!(
        engine::rollback::load(repo.cache_dir()).is_some_and(|s| s.id == s2 && s.forgotten_here),
        "the mark stays while s2 is listed"
    );
    // ... and forget deletes s2.
    repo.block_on(repo.backend().delete(FileType::Snapshot, &s2.0.to_hex()))
        .expect("delete");
    repo.list_snapshots().expect("list");
    assert_eq!(
        repo.rollback_warning().map(|w| w.to_string()),
        None,
        "this machine forgot it itself"
    );
    // A newer snapshot moves the state on and drops the mark.
    let s3 = stream(&repo, b"three".to_vec());
    repo.list_snapshots().expect("list");
    assert_eq!(
        engine::rollback::load(repo.cache_dir()).map(|s| (s.id, s.forgotten_here)),
        Some((s3, false))
    );
}

/// A listing that started before a concurrent backup on this machine wrote its snapshot (the
/// backup's `observe_written` records it at once) and ends after that lacks the recorded
/// snapshot; a lookup of that one snapshot finds it, so the listing neither warns nor moves
/// the state back. E.g. `cairn status`/`cairn snapshots`/a monitoring job running while `cairn
/// run` backs up.
#[test]
fn a_listing_that_overlaps_a_backup_does_not_warn() {
    let env = common::env();
    let repo = env.open();
    let s1 = stream(&repo, b"one".to_vec());
    // Process P1 lists: the names under snapshots/, then reads each (here: the one).
    let listed: std::collections::HashSet<Id> = repo
        .list_ids(FileType::Snapshot)
        .expect("list")
        .into_iter()
        .collect();
    let t1 = repo.load_snapshot(&s1).expect("load").time_ns;
    // Meanwhile process P2 (same machine) finishes a backup.
    let s2 = stream(&repo, b"two".to_vec());
    // P1's listing completes and is compared with the state; the recorded snapshot is looked
    // up on its own, as `Repository::list_snapshots` does.
    let still_there = |id: SnapshotId| {
        !matches!(
            repo.block_on(repo.backend().exists(FileType::Snapshot, &id.0.to_hex())),
            Ok(None)
        )
    };
    let w = engine::rollback::observe_listing(
        repo.cache_dir(),
        "repo",
        &listed,
        [(s1, t1)],
        still_there,
    );
    assert_eq!(
        w.map(|w| w.missing),
        None,
        "s2 ({}) was written during the listing; nothing was rolled back",
        s2.0.short()
    );
    assert_eq!(
        engine::rollback::load(repo.cache_dir()).map(|s| s.id),
        Some(s2),
        "the state did not go back"
    );
    // A real deletion of s2 still warns, once.
    repo.block_on(repo.backend().delete(FileType::Snapshot, &s2.0.to_hex()))
        .expect("delete");
    repo.list_snapshots().expect("list");
    assert_eq!(repo.rollback_warning().map(|w| w.missing), Some(s2));
    repo.list_snapshots().expect("list");
    assert_eq!(repo.rollback_warning(), None, "once");
}
