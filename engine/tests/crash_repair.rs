//! `repair index` and `repair snapshots` killed after their k-th storage write, for every k,
//! through [`engine::backend::faulty::FaultyBackend`].
//!
//! Each scenario builds a small, damaged repository once (in memory) and copies it for every
//! run. After each crash, a new process (fresh handle, fresh cache) must find:
//!
//! - every snapshot that restored before the repair still restores byte-exact;
//! - `check --read-data` reports no error that was not there before the repair (a crash may
//!   leave leftovers, which are warnings, and the damage the repair was meant to fix);
//! - a rerun of the repair finishes: afterwards every snapshot restores (`repair snapshots`:
//!   its repaired copy restores, without the lost files) and `check` is clean of everything
//!   but the damage `repair snapshots` leaves on purpose (the originals).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use common::Rng;
use engine::archiver::{BackupOptions, Source, backup};
use engine::backend::faulty::FaultyBackend;
use engine::backend::{Backend, FileType, open_backend};
use engine::checker::{CheckOptions, FindingKind, ReadData, check};
use engine::progress::NoProgress;
use engine::repair::{repair_index, repair_snapshots};
use engine::repository::{InitOptions, OpenOptions, Repository, init_with_backend};
use engine::restorer::{RestoreOptions, error_chain, restore};
use repo_format::{Content, KdfParams, NodeKind, SnapshotId};

const PASSWORD: &[u8] = b"crash repair";
const LOCATION: &str = "memory://";

/// A temporary directory for sources and index caches, in memory where the system has a tmpfs
/// at `/dev/shm`: RocksDB syncs its files, and on a disk that costs more than the repair.
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(d) = tempfile::Builder::new()
            .prefix("cairn-crash-repair-")
            .tempdir_in(shm)
    {
        return d;
    }
    tempfile::tempdir().expect("tempdir")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

/// A copy of every object of `from` in a new in-memory store.
fn copy_store(from: &Arc<dyn Backend>) -> Arc<dyn Backend> {
    let to = open_backend(LOCATION).expect("memory");
    rt().block_on(async {
        for t in FileType::ALL {
            for info in from.list(t).await.expect("list") {
                let bytes = from.get(t, &info.name).await.expect("get");
                to.put(t, &info.name, bytes).await.expect("put");
            }
        }
    });
    to
}

fn open(backend: Arc<dyn Backend>, cache: PathBuf) -> Repository {
    Repository::open_with_backend(
        backend,
        LOCATION,
        PASSWORD,
        &OpenOptions {
            cache_dir: Some(cache),
        },
    )
    .unwrap_or_else(|e| panic!("open: {}", error_chain(&e)))
}

/// A relative path → file contents map of a restored or source tree (directories and files).
type Files = BTreeMap<PathBuf, Option<Vec<u8>>>;

fn read_tree(base: &Path, dir: &Path, out: &mut Files) {
    for e in fs::read_dir(dir).expect("read_dir") {
        let p = e.expect("entry").path();
        let rel = p.strip_prefix(base).expect("prefix").to_path_buf();
        if p.is_dir() {
            out.insert(rel, None);
            read_tree(base, &p, out);
        } else {
            out.insert(rel, Some(fs::read(&p).expect("read")));
        }
    }
}

/// What a snapshot restores to, or why it does not.
fn restored(repo: &Repository, id: &SnapshotId, scratch: &Path) -> Result<Files, String> {
    let snap = repo.load_snapshot(id).map_err(|e| error_chain(&e))?;
    let target = scratch.join(format!("restore-{}", id.to_hex()));
    let _ = fs::remove_dir_all(&target);
    let summary = restore(
        repo,
        &snap,
        &RestoreOptions {
            target: target.clone(),
            ..Default::default()
        },
        &NoProgress,
    )
    .map_err(|e| error_chain(&e))?;
    if !summary.failed.is_empty() {
        return Err(format!("{:?}", summary.failed));
    }
    let mut files = Files::new();
    read_tree(&target, &target, &mut files);
    let _ = fs::remove_dir_all(&target);
    Ok(files)
}

/// The state a new process sees: each snapshot's restore (or why it fails) and `check`'s
/// errors as (kind, object).
struct Seen {
    snapshots: BTreeMap<SnapshotId, Result<Files, String>>,
    errors: BTreeSet<(FindingKind, String)>,
}

fn look(backend: &Arc<dyn Backend>, scratch: &Path, name: &str) -> Seen {
    let repo = open(Arc::clone(backend), scratch.join(format!("cache-{name}")));
    let ids = repo.list_ids(FileType::Snapshot).expect("list");
    let snapshots = ids
        .into_iter()
        .map(SnapshotId)
        .map(|id| (id, restored(&repo, &id, scratch)))
        .collect();
    let report = check(
        &repo,
        &CheckOptions {
            read_data: ReadData::All,
        },
        &NoProgress,
    )
    .unwrap_or_else(|e| panic!("check cannot run: {}", error_chain(&e)));
    Seen {
        snapshots,
        errors: report
            .errors
            .iter()
            .map(|f| (f.kind, f.object.clone()))
            .collect(),
    }
}

/// A damaged repository to repair, and what it looked like before the repair.
struct Base {
    dir: tempfile::TempDir,
    store: Arc<dyn Backend>,
    before: Seen,
}

/// Which repair runs, and on what damage.
#[derive(Clone, Copy, Debug)]
enum Scenario {
    /// Every index file deleted: nothing restores until the index is rebuilt.
    IndexLost,
    /// Every other index file deleted: some snapshots restore, the others miss blobs.
    IndexPartlyLost,
    /// One of several index files damaged (a byte flipped): its snapshot does not restore.
    IndexDamaged,
    /// A data pack lost (and `repair index` run): two snapshots miss files; `repair snapshots`
    /// writes copies without them.
    PackLost,
}

fn stream(repo: &Repository, name: &str, data: Vec<u8>) -> SnapshotId {
    let mut opts = BackupOptions::new(Source::Stream {
        name: name.into(),
        reader: Box::new(Cursor::new(data)),
    });
    opts.workers = Some(1);
    backup(repo, opts, &NoProgress).expect("backup").id
}

fn dir_backup(repo: &Repository, src: &Path) -> engine::archiver::BackupResult {
    let mut opts = BackupOptions::new(Source::Paths(vec![src.to_path_buf()]));
    opts.workers = Some(1);
    backup(repo, opts, &NoProgress).expect("backup")
}

fn base(scenario: Scenario) -> Base {
    let dir = scratch_dir();
    let store = open_backend(LOCATION).expect("memory");
    init_with_backend(
        Arc::clone(&store),
        LOCATION,
        PASSWORD,
        &InitOptions {
            kdf: KdfParams::TEST,
            ..InitOptions::default()
        },
    )
    .expect("init");
    let repo = open(Arc::clone(&store), dir.path().join("cache"));
    let mut rng = Rng(0xC4A5_4E9A);
    match scenario {
        Scenario::IndexLost | Scenario::IndexPartlyLost | Scenario::IndexDamaged => {
            // Five backups, each with its own index file; b and d deduplicate against a, while
            // c and e stand alone. The victims are chosen by backup (c, e), not by name (names
            // are random), so what stays restorable is fixed.
            let a = rng.bytes(60_000);
            let mut b = a.clone();
            b.extend(rng.bytes(30_000));
            let mut d = rng.bytes(20_000);
            d.extend_from_slice(&b);
            let c = rng.bytes(40_000);
            let e = rng.bytes(10_000);
            let index_names = || -> std::collections::BTreeSet<String> {
                rt().block_on(store.list(FileType::Index))
                    .expect("list")
                    .into_iter()
                    .map(|i| i.name)
                    .collect()
            };
            let mut written: Vec<Vec<String>> = Vec::new();
            for (name, data) in [
                ("a.dump", a),
                ("b.dump", b),
                ("c.dump", c),
                ("d.dump", d),
                ("e.dump", e),
            ] {
                let before = index_names();
                stream(&repo, name, data);
                written.push(index_names().difference(&before).cloned().collect());
            }
            drop(repo);
            assert!(written.iter().all(|w| !w.is_empty()), "{written:?}");
            let independent: Vec<&String> = written[2].iter().chain(&written[4]).collect();
            rt().block_on(async {
                match scenario {
                    Scenario::IndexLost => {
                        for name in written.iter().flatten() {
                            store.delete(FileType::Index, name).await.expect("delete");
                        }
                    }
                    Scenario::IndexPartlyLost => {
                        for name in &independent {
                            store.delete(FileType::Index, name).await.expect("delete");
                        }
                    }
                    _ => {
                        let victim = independent[0];
                        let mut bytes = store
                            .get(FileType::Index, victim)
                            .await
                            .expect("get")
                            .to_vec();
                        let mid = bytes.len() / 2;
                        bytes[mid] ^= 0x40;
                        store.delete(FileType::Index, victim).await.expect("delete");
                        store
                            .put(FileType::Index, victim, Bytes::from(bytes))
                            .await
                            .expect("put");
                    }
                }
            });
        }
        Scenario::PackLost => {
            // D1 = {keep, same, sub/x}; D2 adds `lost` (the only file of its data pack); D3
            // adds `later` and keeps `lost`; a stream beside them. Losing D2's data pack
            // damages D2 and D3, not D1 or the stream.
            let src = dir.path().join("src");
            fs::create_dir_all(src.join("sub")).expect("mkdir");
            fs::write(src.join("keep"), rng.bytes(30_000)).expect("write");
            fs::write(src.join("same"), b"small").expect("write");
            fs::write(src.join("sub/x"), rng.bytes(20_000)).expect("write");
            dir_backup(&repo, &src);
            stream(&repo, "s.dump", rng.bytes(50_000));
            fs::write(src.join("sub/lost"), rng.bytes(25_000)).expect("write");
            let d2 = dir_backup(&repo, &src);
            fs::write(src.join("later"), rng.bytes(15_000)).expect("write");
            dir_backup(&repo, &src);
            let node = engine::restorer::find_node(&repo, &d2.snapshot.tree, b"src/sub/lost")
                .expect("node");
            let NodeKind::File {
                content: Content::Direct(ids),
            } = &node.kind
            else {
                panic!("a small file has direct content")
            };
            let pack = repo
                .lookup_blob(&ids[0])
                .expect("lookup")
                .expect("indexed")
                .pack;
            drop(repo);
            rt().block_on(store.delete(FileType::Pack, &pack.0.to_hex()))
                .expect("delete pack");
            let repo = open(Arc::clone(&store), dir.path().join("cache-repair"));
            repair_index(&repo).expect("repair index");
        }
    }
    let before = look(&store, dir.path(), "before");
    let restorable = before.snapshots.values().filter(|r| r.is_ok()).count();
    let damaged = before.snapshots.len() - restorable;
    assert!(damaged >= 1, "{scenario:?}: nothing is damaged");
    assert!(
        !before.errors.is_empty(),
        "{scenario:?}: check sees no damage"
    );
    match scenario {
        Scenario::IndexLost => assert_eq!(restorable, 0),
        // c's and e's index files are gone: a, b and d still restore.
        Scenario::IndexPartlyLost => assert_eq!(restorable, 3),
        // c's index file is damaged: the other four restore.
        Scenario::IndexDamaged => assert_eq!(restorable, 4),
        Scenario::PackLost => assert_eq!((restorable, damaged), (2, 2)),
    }
    Base { dir, store, before }
}

/// Runs the scenario's repair.
fn repair(scenario: Scenario, repo: &Repository) -> engine::Result<()> {
    match scenario {
        Scenario::IndexLost | Scenario::IndexPartlyLost | Scenario::IndexDamaged => {
            repair_index(repo).map(drop)
        }
        Scenario::PackLost => repair_snapshots(repo, false).map(drop),
    }
}

/// After a crashed (or finished) repair: nothing that restored stops restoring, no new error.
fn assert_no_worse(base: &Base, now: &Seen, what: &str) {
    for (id, was) in &base.before.snapshots {
        let Ok(files) = was else { continue };
        match now.snapshots.get(id) {
            Some(Ok(f)) if f == files => {}
            Some(Ok(_)) => panic!("{what}: {} restores other files", id.0.short()),
            Some(Err(e)) => panic!("{what}: {} no longer restores: {e}", id.0.short()),
            None => panic!("{what}: {} is gone", id.0.short()),
        }
    }
    let new: Vec<_> = now.errors.difference(&base.before.errors).collect();
    assert!(new.is_empty(), "{what}: new damage: {new:?}");
}

/// After the rerun: everything restores (originals `repair snapshots` leaves damaged excepted,
/// as long as they have a repaired copy that restores), and check reports only those originals.
fn assert_finished(
    scenario: Scenario,
    base: &Base,
    backend: &Arc<dyn Backend>,
    scratch: &Path,
    now: &Seen,
    what: &str,
) {
    assert_no_worse(base, now, what);
    let repo = open(Arc::clone(backend), scratch.join("cache-finished"));
    let snaps: BTreeMap<SnapshotId, repo_format::Snapshot> =
        repo.list_snapshots().expect("list").into_iter().collect();
    let mut originals = BTreeSet::new();
    for (id, r) in &now.snapshots {
        match (scenario, r) {
            (_, Ok(_)) => {
                if let Some(orig) = snaps[id].original {
                    originals.insert(orig);
                }
            }
            (Scenario::PackLost, Err(_)) => {}
            (_, Err(e)) => panic!(
                "{what}: {} does not restore after the rerun: {e}",
                id.0.short()
            ),
        }
    }
    for (id, r) in &now.snapshots {
        if r.is_err() {
            assert!(
                originals.contains(id),
                "{what}: {} is damaged and has no repaired copy",
                id.0.short()
            );
        }
    }
    if let Scenario::PackLost = scenario {
        // The copies hold everything but the lost file.
        for (id, s) in &snaps {
            if s.original.is_none() {
                continue;
            }
            let files = now.snapshots[id].as_ref().expect("restores");
            assert!(
                files.keys().all(|p| !p.ends_with("lost")),
                "{what}: {files:?}"
            );
            assert!(
                files.contains_key(Path::new("src/keep")),
                "{what}: {files:?}"
            );
        }
    } else {
        assert!(now.errors.is_empty(), "{what}: {:?}", now.errors);
    }
}

/// Crashes the scenario's repair after k writes for k = 0, 1, … until it finishes; returns
/// how many crash points there were.
fn sweep(scenario: Scenario) -> u64 {
    let base = base(scenario);
    let mut k = 0;
    loop {
        let what = format!("{scenario:?}, crash after {k} writes");
        let run = base.dir.path().join(format!("run-{k}"));
        let (backend, plan) = FaultyBackend::wrap(copy_store(&base.store));
        let repo = open(Arc::clone(&backend), run.join("cache"));
        plan.crash_after_writes(k);
        let result = repair(scenario, &repo);
        let writes = plan.counts().writes_persisted;
        drop(repo);
        plan.disarm();
        if let Err(e) = &result {
            let msg = error_chain(e);
            assert!(
                plan.crashed() && msg.contains("injected fault"),
                "{what}: failed for another reason: {msg}"
            );
        }
        let now = look(&backend, &run, "crashed");
        assert_no_worse(&base, &now, &what);
        // A new process reruns the repair, with the crashed one's cache.
        let repo = open(Arc::clone(&backend), run.join("cache"));
        repair(scenario, &repo).unwrap_or_else(|e| panic!("{what}: rerun: {}", error_chain(&e)));
        drop(repo);
        let now = look(&backend, &run, "rerun");
        assert_finished(scenario, &base, &backend, &run, &now, &what);
        let _ = fs::remove_dir_all(&run);
        if result.is_ok() {
            assert!(writes <= k, "{what}: {writes} writes");
            return k;
        }
        k += 1;
        assert!(
            k < 100,
            "{scenario:?}: the repair makes fewer than 100 writes"
        );
    }
}

#[test]
fn repair_index_of_a_lost_index_killed_after_every_write() {
    let k = sweep(Scenario::IndexLost);
    eprintln!("repair index (index lost): crashed at each of {k} writes");
    assert!(k >= 1, "{k}");
}

#[test]
fn repair_index_of_a_partly_lost_index_killed_after_every_write() {
    let k = sweep(Scenario::IndexPartlyLost);
    eprintln!("repair index (half the index files lost): crashed at each of {k} writes");
    assert!(
        k >= 3,
        "a new index file and the deletion of the old ones: {k}"
    );
}

#[test]
fn repair_index_of_a_damaged_index_file_killed_after_every_write() {
    let k = sweep(Scenario::IndexDamaged);
    eprintln!("repair index (one damaged index file): crashed at each of {k} writes");
    assert!(
        k >= 5,
        "a new index file and the deletion of at least 5 old ones: {k}"
    );
}

#[test]
fn repair_snapshots_killed_after_every_write() {
    let k = sweep(Scenario::PackLost);
    eprintln!("repair snapshots (a data pack lost): crashed at each of {k} writes");
    assert!(k >= 4, "two repaired snapshots, their trees and index: {k}");
}
