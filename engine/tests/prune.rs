//! `prune` on real repositories: what it deletes and when, repacking, dry runs, and the scripted
//! races of SPEC §18 (one test each): a backup that deduplicated against a pack prune then
//! marks; a backup that pauses between its check and its snapshot (briefly, and for longer than
//! the grace period); two prunes at once; clock skew; storage that is not create-only; a reader
//! that syncs its index cache between a sweep's S1 and S2 (SPEC §8: superseded files are
//! ignored, whatever order they load in).
//!
//! The grace period is set to a few seconds (the repository setting); tests sleep past it.

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{Cursor, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::grace::{GraceEnv as Env, dump, env_with_grace, stream};
use common::intercept::{Intercept, Intercepted};
use common::{PASSWORD, Rng};
use engine::ErrorKind;
use engine::archiver::{BackupOptions, Hook, Source, backup};
use engine::backend::{Backend, BackendError, FileType, ObjectInfo, open_backend};
use engine::checker::{CheckOptions, check};
use engine::forget::forget_ids;
use engine::progress::NoProgress;
use engine::prune::lease::{LeaseOptions, acquire};
use engine::prune::{MaxUnused, PruneOptions, PruneReport, prune};
use engine::repository::{OpenOptions, Repository};
use repo_format::{
    BlobId, BlobType, Compression, Id, IndexEntry, IndexFile, IndexId, IndexPack, PackId,
    SnapshotId,
};

impl Env {
    /// Every object on storage, as its path in the repository (`data/ab/ab…`, `index/…`).
    fn objects(&self) -> BTreeSet<String> {
        self.storage().all_objects()
    }
}

fn stream_with(repo: &Repository, opts: BackupOptions) -> engine::Result<SnapshotId> {
    backup(repo, opts, &NoProgress).map(|r| r.id)
}

fn prune_opts() -> PruneOptions {
    PruneOptions {
        max_unused: MaxUnused::Percent(0.0),
        ..PruneOptions::default()
    }
}

fn run_prune(repo: &Repository) -> PruneReport {
    prune(repo, &prune_opts(), &NoProgress).expect("prune")
}

/// Restores the stream of `id` and compares it with `data`.
fn assert_restores(repo: &Repository, id: &SnapshotId, data: &[u8]) {
    let out = dump(repo, id).expect("dump");
    assert!(
        out == data,
        "snapshot {id} restores {} bytes, expected {}",
        out.len(),
        data.len()
    );
}

/// `check --read-data` finds nothing wrong.
fn assert_check_clean(repo: &Repository) {
    let opts = CheckOptions {
        read_data: engine::checker::ReadData::All,
    };
    let report = check(repo, &opts, &NoProgress).expect("check runs");
    assert!(report.is_clean(), "check found damage: {:?}", report.errors);
}

fn pack_count(env: &Env) -> usize {
    env.objects()
        .iter()
        .filter(|p| p.starts_with("data/"))
        .count()
}

#[test]
fn prune_deletes_unused_packs_only_after_the_grace_period() {
    let env = env_with_grace(1);
    let repo = env.open();
    let mut rng = Rng(1);
    let old = rng.bytes(3 << 20);
    let keep = rng.bytes(2 << 20);
    let a = stream(&repo, old.clone());
    let b = stream(&repo, keep.clone());
    forget_ids(&repo, &[a.to_hex()], false).expect("forget");
    env.wait_grace();
    let packs_before = pack_count(&env);

    // Phase one marks, deletes nothing.
    let first = run_prune(&repo);
    assert!(first.plan.is_some(), "{first:?}");
    assert!(first.marked_unused >= 1, "{first:?}");
    assert_eq!(first.sweep.packs_deleted, 0);
    assert_eq!(pack_count(&env), packs_before);
    assert_restores(&repo, &b, &keep);

    // Phase two, after the grace period, deletes.
    env.wait_grace();
    let second = run_prune(&repo);
    assert_eq!(second.sweep.plans, 1, "{second:?}");
    assert_eq!(
        second.sweep.packs_deleted,
        first.marked_unused + first.marked_unindexed
    );
    assert!(second.sweep.bytes_freed >= 3 << 20, "{second:?}");
    assert_eq!(pack_count(&env), packs_before - second.sweep.packs_deleted);
    assert!(second.plan.is_none(), "nothing left to mark: {second:?}");
    assert_check_clean(&repo);
    assert_restores(&repo, &b, &keep);

    // A fresh process (cache rebuilt from the rewritten index) restores too.
    drop(repo);
    let repo = env.open();
    assert_restores(&repo, &b, &keep);
}

#[test]
fn a_plan_waits_for_its_grace_period() {
    let env = env_with_grace(30);
    let repo = env.open();
    let mut rng = Rng(2);
    let a = stream(&repo, rng.bytes(1 << 20));
    forget_ids(&repo, &[a.to_hex()], false).expect("forget");
    // Packs younger than the grace period are not even marked.
    let r = run_prune(&repo);
    assert!(r.plan.is_none(), "{r:?}");
    assert!(r.young_packs >= 1, "{r:?}");
}

#[test]
fn dry_run_changes_nothing() {
    let env = env_with_grace(1);
    let repo = env.open();
    let mut rng = Rng(3);
    let a = stream(&repo, rng.bytes(1 << 20));
    stream(&repo, rng.bytes(1 << 20));
    forget_ids(&repo, &[a.to_hex()], false).expect("forget");
    env.wait_grace();
    let before = env.objects();
    let r = prune(
        &repo,
        &PruneOptions {
            dry_run: true,
            ..prune_opts()
        },
        &NoProgress,
    )
    .expect("dry run");
    assert!(r.dry_run);
    assert!(r.marked_unused >= 1 && r.bytes_to_free >= 1 << 20, "{r:?}");
    assert_eq!(env.objects(), before);
}

#[test]
fn partly_used_packs_are_repacked() {
    let env = env_with_grace(1);
    let repo = env.open();
    let mut rng = Rng(4);
    let first = rng.bytes(4 << 20);
    let mut second = first[..2 << 20].to_vec();
    second.extend(rng.bytes(1 << 20));
    let a = stream(&repo, first);
    let b = stream(&repo, second.clone());
    let r = forget_and_prune_twice(&env, &repo, &a, &b, &second);
    assert!(r.marked_repacked >= 1, "{r:?}");
}

/// Forgets `a`, prunes (repacking what `b` still needs), checks `b` restores, prunes again once
/// the grace period is over (deleting the old packs), then checks the repository and `b` again
/// and that nothing unused is left. Returns the first prune's report.
fn forget_and_prune_twice(
    env: &Env,
    repo: &Repository,
    a: &SnapshotId,
    b: &SnapshotId,
    second: &[u8],
) -> PruneReport {
    forget_ids(repo, &[a.to_hex()], false).expect("forget");
    env.wait_grace();
    let r = run_prune(repo);
    assert!(r.repacked_blobs > 0, "{r:?}");
    assert_restores(repo, b, second);
    env.wait_grace();
    let r2 = run_prune(repo);
    assert!(r2.sweep.packs_deleted >= 1, "{r2:?}");
    assert_check_clean(repo);
    assert_restores(repo, b, second);
    let r3 = prune(
        repo,
        &PruneOptions {
            dry_run: true,
            ..prune_opts()
        },
        &NoProgress,
    )
    .expect("dry run");
    assert_eq!(r3.unused_bytes, 0, "{r3:?}");
    r
}

/// Blobs of the repository's index files: (grouped, not grouped).
fn grouped_and_single(repo: &Repository) -> (usize, usize) {
    let mut counts = (0, 0);
    for id in repo.list_ids(FileType::Index).expect("list") {
        let file = repo.load_index(&IndexId(id)).expect("index file");
        for e in file.packs.iter().flat_map(|p| &p.entries) {
            if e.is_grouped() {
                counts.0 += 1;
            } else {
                counts.1 += 1;
            }
        }
    }
    counts
}

#[test]
fn partly_used_compression_groups_are_repacked() {
    let env = env_with_grace(1);
    let repo = env.open();
    let mut rng = Rng(5);
    // Text: its ~64 KiB chunks go into ~2 MiB compression groups. `b` keeps every other MiB of
    // `a`, so every one of a's groups is partly used once `a` is forgotten.
    let first = rng.text(6 << 20);
    let mut second = Vec::new();
    for (i, mib) in first.chunks(1 << 20).enumerate() {
        if i % 2 == 0 {
            second.extend_from_slice(mib);
        } else {
            second.extend(rng.text(1 << 19));
        }
    }
    let a = stream(&repo, first);
    let b = stream(&repo, second.clone());
    let (grouped, _) = grouped_and_single(&repo);
    assert!(grouped > 50, "text chunks are grouped: {grouped}");
    let packs_before: HashSet<Id> = repo
        .list_ids(FileType::Pack)
        .expect("list")
        .into_iter()
        .collect();
    forget_and_prune_twice(&env, &repo, &a, &b, &second);
    // The copies went into new groups: the packs the repack wrote hold grouped entries.
    let mut regrouped = 0;
    for id in repo.list_ids(FileType::Index).expect("list") {
        let file = repo.load_index(&IndexId(id)).expect("index file");
        for p in file
            .packs
            .iter()
            .filter(|p| !packs_before.contains(&p.id.0))
        {
            regrouped += p.entries.iter().filter(|e| e.is_grouped()).count();
        }
    }
    assert!(regrouped > 0, "repacked blobs were stored one by one");
    let (grouped_after, _) = grouped_and_single(&repo);
    assert!(grouped_after < grouped, "{grouped_after} of {grouped}");
}

/// A reader that runs `at_end` once, when the stream is exhausted (the backup has then
/// deduplicated every chunk but not yet checked the plans).
struct ThenRun {
    inner: Cursor<Vec<u8>>,
    at_end: Option<Box<dyn FnOnce() + Send>>,
}

impl Read for ThenRun {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0
            && let Some(f) = self.at_end.take()
        {
            f();
        }
        Ok(n)
    }
}

/// Sets up the race of the first two tests: data `d` whose only snapshot was forgotten, so its
/// packs are garbage that is old enough to mark.
fn garbage_that_a_backup_will_reuse(env: &Env, seed: u64) -> (Repository, Vec<u8>) {
    let repo = env.open();
    let d = Rng(seed).bytes(3 << 20);
    let a = stream(&repo, d.clone());
    forget_ids(&repo, &[a.to_hex()], false).expect("forget");
    env.wait_grace();
    (repo, d)
}

fn other_process_prunes(path: &str, cache: &std::path::Path) -> PruneReport {
    let repo = Repository::open(
        path,
        PASSWORD,
        &OpenOptions {
            cache_dir: Some(cache.to_path_buf()),
        },
    )
    .expect("open");
    run_prune(&repo)
}

fn race_dedup_then_mark(
    skip_checks: bool,
) -> (Env, Repository, Vec<u8>, engine::Result<SnapshotId>) {
    let env = env_with_grace(2);
    let (repo, d) = garbage_that_a_backup_will_reuse(&env, 5);
    let (path, cache) = (env.path.clone(), env.cache.clone());
    let mut opts = BackupOptions::new(Source::Stream {
        name: "db.dump".into(),
        reader: Box::new(ThenRun {
            inner: Cursor::new(d.clone()),
            at_end: Some(Box::new(move || {
                let r = other_process_prunes(&path, &cache);
                assert!(r.plan.is_some(), "prune marks the reused packs: {r:?}");
            })),
        }),
    });
    opts.unsafe_skip_plan_check = skip_checks;
    let result = stream_with(&repo, opts);
    (env, repo, d, result)
}

#[test]
fn race_a_backup_that_deduplicated_against_a_pack_prune_then_marks() {
    let (env, repo, d, result) = race_dedup_then_mark(false);
    let b = result.expect("the backup copies the marked blobs and succeeds");
    env.wait_grace();
    let r = run_prune(&repo);
    // The backup stored the marked blobs again, so the sweep deletes every marked pack (without
    // that copy it would have to keep them for the new snapshot).
    assert!(r.sweep.packs_deleted >= 1, "the marked packs go: {r:?}");
    assert_eq!(r.sweep.packs_kept, 0, "{r:?}");
    assert_check_clean(&repo);
    assert_restores(&repo, &b, &d);
}

#[test]
fn race_a_backup_that_pauses_briefly_between_its_check_and_its_snapshot() {
    let env = env_with_grace(6);
    let (repo, d) = garbage_that_a_backup_will_reuse(&env, 6);
    let (path, cache) = (env.path.clone(), env.cache.clone());
    let mut opts = BackupOptions::new(Source::Stream {
        name: "db.dump".into(),
        reader: Box::new(Cursor::new(d.clone())),
    });
    // The backup has checked the plans (none); prune marks its packs before the snapshot.
    opts.before_snapshot = Some(Hook(Arc::new(move || {
        let r = other_process_prunes(&path, &cache);
        assert!(r.plan.is_some(), "{r:?}");
    })));
    let b = stream_with(&repo, opts).expect("backup");
    env.wait_grace();
    // The sweep sees the new snapshot and keeps what it needs.
    let r = run_prune(&repo);
    assert!(r.sweep.packs_kept >= 1, "{r:?}");
    assert_check_clean(&repo);
    assert_restores(&repo, &b, &d);
}

/// A backup suspended after its check of the plans: meanwhile prune marks its packs, waits out
/// the grace period, and sweeps, all before the snapshot is written.
fn race_suspended(skip_checks: bool) -> (Env, engine::Result<SnapshotId>) {
    let env = env_with_grace(2);
    let (repo, d) = garbage_that_a_backup_will_reuse(&env, 7);
    let (path, cache, grace) = (env.path.clone(), env.cache.clone(), env.grace);
    let mut opts = BackupOptions::new(Source::Stream {
        name: "db.dump".into(),
        reader: Box::new(Cursor::new(d)),
    });
    opts.before_snapshot = Some(Hook(Arc::new(move || {
        other_process_prunes(&path, &cache);
        std::thread::sleep(grace + Duration::from_millis(1100));
        let r = other_process_prunes(&path, &cache);
        assert!(r.sweep.packs_deleted >= 1, "{r:?}");
    })));
    opts.unsafe_skip_plan_check = skip_checks;
    let result = stream_with(&repo, opts);
    (env, result)
}

#[test]
fn race_a_backup_suspended_longer_than_the_grace_period_fails_and_leaves_nothing_broken() {
    let (env, result) = race_suspended(false);
    let e = result.expect_err("the backup must fail");
    assert!(e.to_string().contains("grace period"), "{e}");
    let repo = env.open();
    assert!(
        repo.list_snapshots().expect("list").is_empty(),
        "no snapshot is left"
    );
    assert_check_clean(&repo);
}

#[test]
fn race_control_without_the_checks_the_suspended_backup_loses_data() {
    // Shows that the test above can fail: the same race without rules B1-B3 leaves a snapshot
    // whose data prune deleted.
    let (env, result) = race_suspended(true);
    let b = result.expect("without the checks the backup \"succeeds\"");
    let repo = env.open();
    assert!(dump(&repo, &b).is_err(), "the snapshot lost its data");
    let report = check(&repo, &CheckOptions::default(), &NoProgress).expect("check runs");
    assert!(!report.is_clean(), "check finds the damage");
}

#[test]
fn two_prunes_at_once_one_waits() {
    let env = env_with_grace(1);
    let repo = env.open();
    let held = acquire(&repo, LeaseOptions::default()).expect("first prune takes the lease");
    let e = prune(&repo, &prune_opts(), &NoProgress).expect_err("second prune refuses");
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    assert!(
        e.to_string().contains("another prune holds the lease"),
        "{e}"
    );
    held.release(&repo).expect("release");
    run_prune(&repo);

    // A lease whose holder died expires.
    let opts = LeaseOptions {
        ttl: Duration::from_secs(1),
        ..LeaseOptions::default()
    };
    // Taken and never released, as by a prune that was killed.
    let _stale = acquire(&repo, opts).expect("lease");
    std::thread::sleep(Duration::from_millis(1500));
    run_prune(&repo);
}

#[test]
fn a_lease_taken_over_stops_the_old_holder_before_it_deletes() {
    let env = env_with_grace(1);
    let repo = env.open();
    let opts = LeaseOptions {
        ttl: Duration::from_secs(1),
        ..LeaseOptions::default()
    };
    let mut old = acquire(&repo, opts).expect("lease");
    std::thread::sleep(Duration::from_millis(1500));
    let new = acquire(&repo, opts).expect("the expired lease is taken over");
    let e = old
        .check(&repo, "deleting packs")
        .expect_err("the old holder stops");
    assert!(e.to_string().contains("lost its lease"), "{e}");
    new.release(&repo).expect("release");
}

/// A backend whose clock is an hour ahead of this machine's, or that overwrites on put.
#[derive(Debug)]
struct Odd {
    inner: Arc<dyn Backend>,
    skew_ns: i64,
    overwrite: bool,
}

#[async_trait::async_trait]
impl Intercept for Odd {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
    }
    async fn put(&self, t: FileType, name: &str, data: bytes::Bytes) -> Result<(), BackendError> {
        if self.overwrite && self.inner.exists(t, name).await?.is_some() {
            self.inner.delete(t, name).await?;
        }
        self.inner.put(t, name, data).await
    }
    async fn list(&self, t: FileType) -> Result<Vec<ObjectInfo>, BackendError> {
        let mut l = self.inner.list(t).await?;
        for i in &mut l {
            i.modified = i.modified.map(|m| m + self.skew_ns);
        }
        Ok(l)
    }
    async fn stat(&self, t: FileType, name: &str) -> Result<Option<ObjectInfo>, BackendError> {
        let mut i = self.inner.stat(t, name).await?;
        if let Some(i) = &mut i {
            i.modified = i.modified.map(|m| m + self.skew_ns);
        }
        Ok(i)
    }
}

fn open_odd(env: &Env, skew_ns: i64, overwrite: bool) -> Repository {
    let backend: Arc<dyn Backend> = Arc::new(Intercepted(Odd {
        inner: open_backend(&env.path).expect("backend"),
        skew_ns,
        overwrite,
    }));
    Repository::open_with_backend(
        backend,
        &env.path,
        PASSWORD,
        &OpenOptions {
            cache_dir: Some(env.cache.clone()),
        },
    )
    .expect("open")
}

#[test]
fn prune_refuses_when_the_storage_clock_is_off() {
    let env = env_with_grace(1);
    let repo = open_odd(&env, 3_600_000_000_000, false);
    let e = prune(&repo, &prune_opts(), &NoProgress).expect_err("refuses");
    assert!(e.to_string().contains("clock"), "{e}");
    // And it released the lease: a prune with a sane clock runs at once.
    drop(repo);
    run_prune(&env.open());
}

#[test]
fn prune_refuses_where_writes_are_not_create_only() {
    let env = env_with_grace(1);
    let repo = open_odd(&env, 0, true);
    let e = prune(&repo, &prune_opts(), &NoProgress).expect_err("refuses");
    assert!(e.to_string().contains("create-only"), "{e}");
}

#[test]
fn a_shorter_grace_period_than_the_repository_s_is_refused() {
    let env = env_with_grace(60);
    let repo = env.open();
    let e = prune(
        &repo,
        &PruneOptions {
            grace: Some(Duration::from_secs(1)),
            ..prune_opts()
        },
        &NoProgress,
    )
    .expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}

// --- A reader in the sweep's S1–S2 window -----------------------------------------------------

/// A backend whose reads of some index files answer only after a delay, which fixes the order
/// in which a sync's concurrent downloads finish.
#[derive(Debug)]
struct SlowIndex {
    inner: Arc<dyn Backend>,
    /// Index file name → delay.
    delays: Mutex<HashMap<String, Duration>>,
    /// While set, `index/` lists as empty (so a test can open first and sync later).
    hide_index: AtomicBool,
}

#[async_trait::async_trait]
impl Intercept for SlowIndex {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
    }
    async fn get(&self, t: FileType, name: &str) -> Result<bytes::Bytes, BackendError> {
        let delay = match t {
            FileType::Index => self.delays.lock().expect("lock").get(name).copied(),
            _ => None,
        };
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        self.inner.get(t, name).await
    }
    async fn list(&self, t: FileType) -> Result<Vec<ObjectInfo>, BackendError> {
        if t == FileType::Index && self.hide_index.load(Ordering::SeqCst) {
            return Ok(Vec::new());
        }
        self.inner.list(t).await
    }
}

/// A [`SlowIndex`] over the environment's repository that delays the reads of index files
/// `delays` (milliseconds).
fn slow_backend(
    env: &Env,
    delays: &[(IndexId, u64)],
    hide_index: bool,
) -> Arc<Intercepted<SlowIndex>> {
    Arc::new(Intercepted(SlowIndex {
        inner: open_backend(&env.path).expect("backend"),
        delays: Mutex::new(
            delays
                .iter()
                .map(|(id, ms)| (id.0.to_hex(), Duration::from_millis(*ms)))
                .collect(),
        ),
        hide_index: AtomicBool::new(hide_index),
    }))
}

/// Opens the repository through `backend` with the cache in `cache` (under the environment's
/// directory).
fn open_on(env: &Env, cache: &str, backend: Arc<Intercepted<SlowIndex>>) -> Repository {
    Repository::open_with_backend(
        backend,
        &env.path,
        PASSWORD,
        &OpenOptions {
            cache_dir: Some(env.root.join(cache)),
        },
    )
    .expect("open")
}

/// Opens the repository with the cache in `cache`, without delays.
fn open_slow(env: &Env, cache: &str) -> Repository {
    open_on(env, cache, slow_backend(env, &[], false))
}

/// An index file naming `packs`, each `(pack tag, blob tags)`, 100-byte blobs one after the
/// other; ids are the tags repeated (no pack exists: these tests only look blobs up).
fn index_file(supersedes: &[IndexId], packs: &[(u8, &[u8])]) -> IndexFile {
    let mut file = IndexFile {
        supersedes: supersedes.to_vec(),
        packs: packs
            .iter()
            .map(|(pack, blobs)| IndexPack {
                id: PackId(Id([*pack; 32])),
                entries: (0u32..)
                    .zip(blobs.iter())
                    .map(|(i, blob)| IndexEntry {
                        blob_type: BlobType::Data,
                        compression: Compression::Raw,
                        offset: i * 100,
                        stored_len: 100,
                        raw_len: 68,
                        id: BlobId(Id([*blob; 32])),
                        group_offset: 0,
                    })
                    .collect(),
                bases: Vec::new(),
            })
            .collect(),
    };
    file.canonicalize();
    file
}

/// Stores an index file without recording it in any cache (as another machine would).
fn put_index(repo: &Repository, file: &IndexFile) -> IndexId {
    let bytes = file.encode(repo.keys(), 0, [7; 16]).expect("encode");
    IndexId(repo.put_object(FileType::Index, bytes).expect("put index"))
}

/// The pack each of blobs 1..=4 is found in (`None`: not indexed).
fn packs_of_blobs(repo: &Repository) -> Vec<Option<u8>> {
    (1..=4u8)
        .map(|b| {
            repo.lookup_blob(&BlobId(Id([b; 32])))
                .expect("lookup")
                .map(|l| l.pack.0.0[0])
        })
        .collect()
}

/// What a reader must see between S1 and S2: blob 1 in its repacked copy (pack 0xc1), never
/// in the doomed pack 0xa1 that S3 deletes; blob 2, which only the superseded file names (the
/// sweep found it unused), still in 0xa1 (it exists until S3, and nothing reachable needs it);
/// blobs 3 and 4 where they were.
const IN_WINDOW: [Option<u8>; 4] = [Some(0xc1), Some(0xa1), Some(0xb1), Some(0xd1)];
/// After S2: blob 2 is gone from the index.
const AFTER_SWEEP: [Option<u8>; 4] = [Some(0xc1), None, Some(0xb1), Some(0xd1)];

/// The objects of a sweep stopped between S1 and S2: `old` names doomed pack 0xa1 (blobs 1, 2)
/// and kept pack 0xb1 (blob 3); `copy` (written by the repack, R1) names blob 1 in pack 0xc1;
/// `other` names blob 4 in pack 0xd1; S1's `new` supersedes `old` and names pack 0xb1 only.
struct Window {
    old: IndexId,
    copy: IndexId,
    other: IndexId,
    new: IndexId,
}

/// Stores the window's index files (`new` only if `with_new`); storing them again is a no-op
/// (same bytes, same names), or puts back what was deleted.
fn write_window(repo: &Repository, with_new: bool) -> Window {
    let old = put_index(repo, &index_file(&[], &[(0xa1, &[1, 2]), (0xb1, &[3])]));
    let copy = put_index(repo, &index_file(&[], &[(0xc1, &[1])]));
    let other = put_index(repo, &index_file(&[], &[(0xd1, &[4])]));
    let new_file = index_file(&[old], &[(0xb1, &[3])]);
    let new = if with_new {
        put_index(repo, &new_file)
    } else {
        IndexId(repo_format::object_id(
            &new_file.encode(repo.keys(), 0, [7; 16]).expect("encode"),
        ))
    };
    Window {
        old,
        copy,
        other,
        new,
    }
}

/// S2 deletes the superseded file: the cache, which held its entries, is rebuilt from the
/// current files, and the next open downloads nothing.
fn finish_sweep(env: &Env, repo: Repository, cache: &str, w: &Window) {
    repo.block_on(repo.backend().delete(FileType::Index, &w.old.0.to_hex()))
        .expect("S2");
    let sync = repo.sync_index_report().expect("sync after S2");
    assert_eq!(
        (sync.loaded, sync.rebuilt, sync.superseded),
        (3, true, 0),
        "after S2"
    );
    assert_eq!(packs_of_blobs(&repo), AFTER_SWEEP, "after S2");
    drop(repo);
    let repo = open_slow(env, cache);
    let sync = repo.sync_index_report().expect("sync");
    assert_eq!((sync.loaded, sync.rebuilt), (0, false), "reopened");
    assert_eq!(packs_of_blobs(&repo), AFTER_SWEEP, "reopened");
}

/// SPEC §8: between a sweep's S1 and S2 both the old and the new index file are listed, and a
/// fresh cache downloads them in whatever order the storage answers. Whichever finishes first,
/// the superseded file's entries never override a current file's: no lookup of a blob that a
/// current file names answers with the doomed pack (which S3 deletes next).
#[test]
fn a_reader_in_the_sweep_window_ignores_the_superseded_index_file_in_any_load_order() {
    let env = env_with_grace(60);
    let repo = env.open();
    let w = write_window(&repo, true);
    // Each case ends with S2; the objects are content-addressed, so writing them again puts
    // the old file back.
    let window_again = || assert_eq!(write_window(&repo, true).old, w.old);
    // The new file first, the old one last: the old one is added as superseded as it arrives.
    // The old one after the copy (whose location for blob 1 it overrides, not knowing yet),
    // the new one last: the cache is cleared and all four files added again.
    for (cache, delays, loaded, rebuilt) in [
        (
            "new-first",
            [(w.copy, 150), (w.other, 150), (w.old, 300)],
            4,
            false,
        ),
        (
            "old-first",
            [(w.copy, 0), (w.old, 150), (w.new, 300)],
            4 + 4,
            true,
        ),
    ] {
        window_again();
        // Opened with `index/` hidden, so that the sync that loads the files is the one
        // whose report the test sees.
        let backend = slow_backend(&env, &delays, true);
        let repo = open_on(&env, cache, Arc::clone(&backend));
        backend.hide_index.store(false, Ordering::SeqCst);
        let sync = repo.sync_index_report().expect("sync");
        assert_eq!(
            (sync.loaded, sync.rebuilt, sync.superseded),
            (loaded, rebuilt, 1),
            "{cache}"
        );
        assert_eq!(packs_of_blobs(&repo), IN_WINDOW, "{cache}");
        let records = repo.cache().index_files().expect("records");
        assert!(
            !records[&w.old].current,
            "{cache}: the old file is recorded as superseded"
        );
        assert!(records[&w.new].current && records[&w.copy].current && records[&w.other].current);
        // Opening again downloads nothing.
        let sync = repo.sync_index_report().expect("sync");
        assert_eq!(
            (sync.loaded, sync.rebuilt, sync.superseded),
            (0, false, 1),
            "{cache}"
        );
        finish_sweep(&env, repo, cache, &w);
    }
    // And without delays, a few times: the order is then up to the storage and the runtime.
    window_again();
    for i in 0..4 {
        let cache = format!("unordered-{i}");
        let reader = open_slow(&env, &cache);
        assert_eq!(packs_of_blobs(&reader), IN_WINDOW, "{cache}");
    }
}

/// A reader whose cache loaded the old index file before S1 syncs between S1 and S2: the new
/// file supersedes a file its cache added as current, so it clears the cache and adds the
/// files again (reported as a rebuild, which a backup's B2 check relies on).
#[test]
fn a_cache_that_loaded_the_old_index_file_is_rebuilt_when_the_new_one_appears() {
    let env = env_with_grace(60);
    let repo = env.open();
    let w = write_window(&repo, false);
    drop(repo);
    let repo = open_slow(&env, "before-s1");
    assert_eq!(
        packs_of_blobs(&repo)[1],
        Some(0xa1),
        "before S1 blob 2 is there"
    );
    let written = put_index(&repo, &index_file(&[w.old], &[(0xb1, &[3])]));
    assert_eq!(written, w.new);
    let sync = repo.sync_index_report().expect("sync in the window");
    assert_eq!(
        (sync.loaded, sync.rebuilt, sync.superseded),
        (1 + 4, true, 1)
    );
    assert_eq!(packs_of_blobs(&repo), IN_WINDOW);
    finish_sweep(&env, repo, "before-s1", &w);
}

/// Supersession along a chain (a file superseded by a file that is itself superseded): each
/// blob's location comes from the newest file that names it, as long as the files are listed.
#[test]
fn superseded_files_fill_in_only_what_no_newer_file_names() {
    let env = env_with_grace(60);
    let repo = env.open();
    let oldest = put_index(&repo, &index_file(&[], &[(0xa1, &[1, 2])]));
    let middle = put_index(&repo, &index_file(&[oldest], &[(0xb1, &[1, 3])]));
    put_index(&repo, &index_file(&[middle], &[(0xc1, &[1])]));
    drop(repo);
    let repo = open_slow(&env, "chain");
    assert_eq!(
        packs_of_blobs(&repo),
        [Some(0xc1), Some(0xa1), Some(0xb1), None]
    );
    assert_eq!(repo.sync_index_report().expect("sync").superseded, 2);

    for (gone, expected) in [
        (oldest, [Some(0xc1), None, Some(0xb1), None]),
        (middle, [Some(0xc1), None, None, None]),
    ] {
        repo.block_on(repo.backend().delete(FileType::Index, &gone.0.to_hex()))
            .expect("delete");
        let sync = repo.sync_index_report().expect("sync");
        assert!(sync.rebuilt, "{sync:?}");
        assert_eq!(packs_of_blobs(&repo), expected);
    }
}
