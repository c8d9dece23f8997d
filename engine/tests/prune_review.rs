//! Regression tests from an independent review of lock-free prune (SPEC §18): scripted
//! scenarios in which a snapshot could end up needing a blob whose only copies prune deleted,
//! or prune could leave the plans or the index in a wrong state. All eight failed against the
//! first implementation; each states the outcome SPEC §18 promises.

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::grace::{GraceEnv as Env, dump_path, env_with_grace, open_at, stream, stream_opts};
use common::intercept::{Intercept, Intercepted};
use common::storage::Storage;
use common::{PASSWORD, Rng};
use engine::archiver::{BackupOptions, Hook, Source, backup};
use engine::backend::{Backend, BackendError, FileType, ObjectInfo, open_backend};
use engine::checker::{CheckOptions, ReadData, check};
use engine::forget::forget_ids;
use engine::progress::NoProgress;
use engine::prune::plans::load_plans;
use engine::prune::{MaxUnused, PruneOptions, PruneReport, prune};
use engine::repository::{OpenOptions, Repository};
use repo_format::{IndexId, PackId, SnapshotId};

impl Env {
    /// The names of the packs on storage.
    fn pack_files(&self) -> BTreeSet<String> {
        pack_files(&self.storage())
    }
}

fn pack_files(storage: &Storage) -> BTreeSet<String> {
    storage.names(FileType::Pack).into_iter().collect()
}

fn prune_with(path: &str, cache: &Path, max_unused: MaxUnused) -> PruneReport {
    let repo = open_at(path, cache);
    prune(
        &repo,
        &PruneOptions {
            max_unused,
            ..PruneOptions::default()
        },
        &NoProgress,
    )
    .expect("prune")
}

/// Another process prunes (separate handle; the shared cache is locked, so it gets its own).
fn other_prune(path: &str, cache: &Path) -> PruneReport {
    prune_with(path, cache, MaxUnused::Percent(0.0))
}

fn assert_failed_or_sound(
    env: &Env,
    result: engine::Result<SnapshotId>,
    path: &[u8],
    data: &[u8],
    what: &str,
) {
    let repo = env.open();
    match result {
        Err(e) => eprintln!("{what}: the backup failed (acceptable): {e}"),
        Ok(id) => {
            let restored = dump_path(&repo, &id, path);
            let report = check(
                &repo,
                &CheckOptions {
                    read_data: ReadData::All,
                },
                &NoProgress,
            )
            .expect("check runs");
            assert!(
                matches!(&restored, Ok(d) if d == data) && report.is_clean(),
                "{what}: the backup succeeded, but its snapshot {id} lost data: restore = {:?}, check: {} error(s), first: {:?}",
                restored.as_ref().map(|d| d.len()),
                report.errors.len(),
                report.errors.first()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. A backup's own pack, uploaded but not yet named by an index file, is marked "unindexed"
//    by one prune and deleted by the next; the backup then indexes it and writes its snapshot.
// ---------------------------------------------------------------------------------------------

/// Serves `data`, then (once, at EOF) runs `at_end` before reporting the end of the stream.
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

fn wait_for_pack(location: &str, before: &BTreeSet<String>) {
    let storage = Storage::open(location);
    let start = Instant::now();
    loop {
        if pack_files(&storage).difference(before).next().is_some() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no pack was uploaded"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_slow_backup_whose_unindexed_pack_is_swept_never_leaves_a_broken_snapshot() {
    let env = env_with_grace(1);
    let repo = env.open();
    // More than one data pack (16 MiB): the first pack is uploaded while the stream still runs,
    // and is named by an index file only when the backup finishes (fewer than 65 536 blobs).
    // The backup reads one 4 MiB window ahead of what it has cut and queued, so at EOF at
    // least 20 of the 28 MiB are queued: a full pack, uploaded while `at_end` waits.
    let data = Rng(101).bytes(28 << 20);
    let (path, cache, grace) = (env.path.clone(), env.cache.clone(), env.grace);
    let location = env.path.clone();
    let before = env.pack_files();
    let hook: Box<dyn FnOnce() + Send> = Box::new(move || {
        // The stream is slow: its first pack sits on storage, unindexed, for two grace periods.
        wait_for_pack(&location, &before);
        std::thread::sleep(grace + Duration::from_millis(1100));
        let first = other_prune(&path, &cache);
        assert!(
            first.marked_unindexed >= 1,
            "the backup's first pack is marked as unindexed: {first:?}"
        );
        std::thread::sleep(grace + Duration::from_millis(1100));
        let second = other_prune(&path, &cache);
        assert!(second.sweep.packs_deleted >= 1, "and swept: {second:?}");
    });
    let opts = BackupOptions::new(Source::Stream {
        name: "db.dump".into(),
        reader: Box::new(ThenRun {
            inner: Cursor::new(data.clone()),
            at_end: Some(hook),
        }),
    });
    let result = backup(&repo, opts, &NoProgress).map(|r| r.id);
    drop(repo);
    assert_failed_or_sound(&env, result, b"db.dump", &data, "unindexed own pack");
}

// ---------------------------------------------------------------------------------------------
// 2. B2 brings the index up to date *before* it lists the plans. A sweep that does S2-S4
//    between the two goes unseen: the index files the backup loaded were still listed, and the
//    plan is gone by the time the plans are listed.
// ---------------------------------------------------------------------------------------------

type HookFn = Box<dyn FnOnce() + Send>;

/// A local backend that runs a hook at the n-th listing of `plans/`, before or after listing.
struct Hooked {
    inner: Arc<dyn Backend>,
    plan_lists: AtomicUsize,
    hooks: Mutex<HashMap<usize, (bool, HookFn)>>,
}

impl std::fmt::Debug for Hooked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hooked")
    }
}

/// Runs `f` on a thread of its own (it opens repositories with runtimes of their own, which
/// cannot be done from inside this backend's async call) and waits for it.
fn run_outside(f: HookFn) {
    std::thread::spawn(f).join().expect("hook panicked");
}

#[async_trait::async_trait]
impl Intercept for Hooked {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
    }
    async fn list(&self, t: FileType) -> Result<Vec<ObjectInfo>, BackendError> {
        if t != FileType::Plan {
            return self.inner.list(t).await;
        }
        let n = self.plan_lists.fetch_add(1, Ordering::SeqCst) + 1;
        if std::env::var_os("REVIEW_TRACE").is_some() {
            let bt = std::backtrace::Backtrace::force_capture().to_string();
            let frames: Vec<&str> = bt.lines().filter(|l| l.contains("engine::")).collect();
            eprintln!("plan listing {n}: {frames:#?}");
        }
        let hook = self.hooks.lock().expect("lock").remove(&n);
        match hook {
            Some((true, f)) => {
                run_outside(f);
                self.inner.list(t).await
            }
            Some((false, f)) => {
                let l = self.inner.list(t).await;
                run_outside(f);
                l
            }
            None => self.inner.list(t).await,
        }
    }
}

#[test]
fn b2_sees_a_sweep_that_finishes_between_its_plan_listing_and_index_sync() {
    let env = env_with_grace(1);
    let d = Rng(102).bytes(3 << 20);
    {
        // Garbage the backup will deduplicate against: d, whose only snapshot is forgotten.
        let repo = env.open();
        let a = stream(&repo, d.clone());
        forget_ids(&repo, &[a.to_hex()], false).expect("forget");
    }
    env.wait_grace();

    let (p1, c1) = (env.path.clone(), env.cache.clone());
    let grace = env.grace;
    let (p2, c2) = (env.path.clone(), env.cache.clone());
    let mut hooks: HashMap<usize, (bool, HookFn)> = HashMap::new();
    // Listing 1 is the backup's B1 (it sees no plan). Right after it, a prune marks d's packs.
    hooks.insert(
        1,
        (
            false,
            Box::new(move || {
                let r = other_prune(&p1, &c1);
                assert!(r.plan.is_some(), "prune marks d's packs: {r:?}");
                // The backup is slow: the plan is due by the time it checks (B2). (Sleeping
                // here rather than at listing 2 keeps the backup's own new pack young.)
                std::thread::sleep(grace + Duration::from_millis(1100));
            }),
        ),
    );
    // Listing 2 is B2's, which comes after B2 synced the index. Just before it, the plan is
    // due and a prune sweeps it completely (S1-S4).
    hooks.insert(
        2,
        (
            true,
            Box::new(move || {
                let r = other_prune(&p2, &c2);
                assert!(
                    r.sweep.packs_deleted >= 1,
                    "the sweep deletes d's packs: {r:?}"
                );
                eprintln!("sweeping prune: {r:?}");
            }),
        ),
    );
    let backend: Arc<dyn Backend> = Arc::new(Intercepted(Hooked {
        inner: open_backend(&env.path).expect("backend"),
        plan_lists: AtomicUsize::new(0),
        hooks: Mutex::new(hooks),
    }));
    let repo = Repository::open_with_backend(
        backend,
        &env.path,
        PASSWORD,
        &OpenOptions {
            cache_dir: Some(env.cache.clone()),
        },
    )
    .expect("open");
    let result = backup(&repo, stream_opts(d.clone()), &NoProgress).map(|r| r.id);
    drop(repo);
    assert_failed_or_sound(
        &env,
        result,
        b"db.dump",
        &d,
        "sweep between B2's sync and plan listing",
    );
}

// ---------------------------------------------------------------------------------------------
// 3. A needed blob's second copy is in an indexed pack that is missing from storage. The sweep
//    counts that copy as "elsewhere" and deletes the pack with the only readable copy. SPEC §18
//    P4: "an indexed pack holding a reachable blob is missing: stop before deleting anything".
// ---------------------------------------------------------------------------------------------

fn index_ids(repo: &Repository) -> BTreeSet<IndexId> {
    repo.list_ids(FileType::Index)
        .expect("list")
        .into_iter()
        .map(IndexId)
        .collect()
}

#[test]
fn a_copy_in_a_missing_pack_does_not_count_so_the_readable_copy_stays() {
    for attempt in 0..16u64 {
        let env = env_with_grace(1);
        let repo = env.open();
        let d = Rng(200 + attempt).bytes(3 << 20);
        let s1 = stream(&repo, d.clone());
        let first_index = index_ids(&repo);
        assert_eq!(first_index.len(), 1);
        let i_a = *first_index.iter().next().expect("one");
        forget_ids(&repo, &[s1.to_hex()], false).expect("forget");
        env.wait_grace();
        let r = other_prune(&env.path, &env.cache);
        assert!(r.plan.is_some(), "{r:?}");
        // A backup after the plan stores d again (B1): a second copy in pack B.
        let s2 = stream(&repo, d.clone());
        let second: Vec<IndexId> = index_ids(&repo).difference(&first_index).copied().collect();
        assert_eq!(second.len(), 1);
        let i_b = second[0];
        // Prune counts a blob at its first copy in index-file order; the scenario needs A's
        // index file first (the other order happens to make prune stop, as it should).
        if i_a > i_b {
            continue;
        }
        let file_a = repo.load_index(&i_a).expect("index a");
        let file_b = repo.load_index(&i_b).expect("index b");
        let data_pack = |f: &repo_format::IndexFile| {
            f.packs
                .iter()
                .find(|p| p.entries[0].blob_type == repo_format::BlobType::Data)
                .map(|p| p.id)
                .expect("a data pack")
        };
        let (pack_a, pack_b) = (data_pack(&file_a), data_pack(&file_b));
        assert_eq!(dump_path(&repo, &s2, b"db.dump").expect("dump"), d);
        // Pack B is lost (a storage fault): damage, but d is still in pack A, indexed.
        env.storage().delete(FileType::Pack, &pack_b.0.to_hex());
        drop(repo);
        env.wait_grace();
        let repo = env.open();
        let result = prune(
            &repo,
            &PruneOptions {
                max_unused: MaxUnused::Percent(0.0),
                ..PruneOptions::default()
            },
            &NoProgress,
        );
        assert!(
            env.storage().exists(FileType::Pack, &pack_a.0.to_hex()),
            "prune deleted pack A, the only readable copy of the blobs snapshot {s2} needs (pack B is missing); prune result: {result:?}"
        );
        return;
    }
    panic!("never got A's index file ahead of B's");
}

// ---------------------------------------------------------------------------------------------
// 4. A sweep that deletes some packs and keeps others (a snapshot written since needs them)
//    marks the kept packs again in the same run: SPEC says "kept packs stay, unmarked".
// ---------------------------------------------------------------------------------------------

#[test]
fn a_pack_the_sweep_keeps_is_not_marked_again_by_the_same_run() {
    let env = env_with_grace(6);
    let repo = env.open();
    let d = Rng(300).bytes(3 << 20);
    let a = stream(&repo, d.clone());
    forget_ids(&repo, &[a.to_hex()], false).expect("forget");
    env.wait_grace();
    let (path, cache) = (env.path.clone(), env.cache.clone());
    let mut opts = stream_opts(d.clone());
    // After the backup's check, prune marks d's packs; the snapshot then needs the data pack.
    opts.before_snapshot = Some(Hook(Arc::new(move || {
        let r = other_prune(&path, &cache);
        assert!(r.plan.is_some(), "{r:?}");
    })));
    let b = backup(&repo, opts, &NoProgress).expect("backup").id;
    let marked_before: HashSet<PackId> = load_plans(&repo).expect("plans").marked();
    env.wait_grace();
    let r = other_prune(&env.path, &env.cache);
    assert!(
        r.sweep.packs_kept >= 1 && r.sweep.packs_deleted >= 1,
        "the sweep keeps the data pack and deletes the old tree pack: {r:?}"
    );
    let on_storage = env.pack_files();
    let kept: HashSet<PackId> = marked_before
        .iter()
        .filter(|p| on_storage.contains(&p.0.to_hex()))
        .copied()
        .collect();
    assert!(!kept.is_empty());
    let marked_after = load_plans(&repo).expect("plans").marked();
    let again: Vec<_> = kept.intersection(&marked_after).collect();
    assert!(
        again.is_empty(),
        "packs the sweep kept (snapshot {b} needs them) were marked again by the same run as \"indexed, unneeded and gone\": {again:?}; report: {r:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. B3 (the check after a late snapshot) does not know the data packs of content lists reused
//    from the parent: B2 adds them only when a plan exists or the index was rebuilt.
// ---------------------------------------------------------------------------------------------

fn paths_opts(paths: Vec<PathBuf>, parent: Option<SnapshotId>) -> BackupOptions {
    let mut o = BackupOptions::new(Source::Paths(paths));
    o.chunker_profile = Some("stream".into());
    o.parent = parent;
    o
}

#[test]
fn b3_checks_the_data_packs_of_reused_content_lists() {
    let env = env_with_grace(2);
    let src = env.root.join("src");
    let dir = src.join("dir");
    std::fs::create_dir_all(dir.join("a")).expect("mkdir");
    std::fs::create_dir_all(dir.join("b")).expect("mkdir");
    // > 1024 chunks of the stream profile: an indirect content (content lists).
    let f = Rng(400).bytes(24 << 20);
    std::fs::write(dir.join("a/f"), &f).expect("write f");
    std::fs::write(dir.join("b/g"), b"hello").expect("write g");
    let repo = env.open();
    let s0 = backup(&repo, paths_opts(vec![dir.clone()], None), &NoProgress)
        .expect("s0")
        .id;
    // Keeps the tree pack holding f's content lists partly used (b's tree is in it too).
    backup(&repo, paths_opts(vec![dir.join("b")], None), &NoProgress).expect("keep");
    env.wait_grace();

    let (path, cache, grace) = (env.path.clone(), env.cache.clone(), env.grace);
    let mut opts = paths_opts(vec![dir.clone()], Some(s0));
    // Checked (B2: no plan), then suspended: meanwhile the parent is forgotten, f's data packs
    // are marked and swept. The snapshot comes more than G/2 after the check, so B3 checks.
    opts.before_snapshot = Some(Hook(Arc::new(move || {
        let repo = open_at(&path, &cache);
        forget_ids(&repo, &[s0.to_hex()], false).expect("forget s0");
        drop(repo);
        let r = prune_with(&path, &cache, MaxUnused::Unlimited);
        assert!(r.marked_unused >= 1, "f's first data pack is marked: {r:?}");
        std::thread::sleep(grace + Duration::from_millis(1100));
        let r = prune_with(&path, &cache, MaxUnused::Unlimited);
        assert!(r.sweep.packs_deleted >= 1, "and swept: {r:?}");
    })));
    let result = backup(&repo, opts, &NoProgress).map(|r| r.id);
    drop(repo);
    let path_in_snapshot = format!(
        "{}/a/f",
        dir.file_name()
            .expect("a named directory")
            .to_string_lossy()
    );
    assert_failed_or_sound(
        &env,
        result,
        path_in_snapshot.as_bytes(),
        &f,
        "B3 with reused content lists",
    );
}

// ---------------------------------------------------------------------------------------------
// 6. P2 deletes every index file another listed file `supersedes`. `repair index` writes one
//    file per 65 536 entries and gives *each* of them `supersedes` = all the old files; killed
//    after its first file, it leaves a file that supersedes index files whose entries it does not
//    hold. The next prune deletes them: a sound repository becomes one `check` finds damaged.
//    (The state is built by hand: exactly the first file of a `repair index` of a larger repo.)
// ---------------------------------------------------------------------------------------------

#[test]
fn p2_keeps_superseded_files_whose_packs_no_current_file_names() {
    let env = env_with_grace(1);
    let repo = env.open();
    let d = Rng(600).bytes(2 << 20);
    let s = stream(&repo, d.clone());
    let old: Vec<IndexId> = index_ids(&repo).into_iter().collect();
    assert_eq!(old.len(), 1);
    let file = repo.load_index(&old[0]).expect("load");
    assert!(file.packs.len() >= 2, "a data pack and a tree pack");
    // repair_index's first flush: supersedes = every old file, packs = the packs read so far.
    let mut first = repo_format::IndexFile {
        supersedes: old.clone(),
        packs: vec![file.packs[0].clone()],
    };
    first.canonicalize();
    repo.save_index(&first).expect("save");
    // ... and here `repair index` was killed. Nothing is lost yet: the old file is still there.
    drop(repo);
    let repo = env.open();
    assert_eq!(
        dump_path(&repo, &s, b"db.dump").expect("dump before prune"),
        d
    );
    let result = prune(
        &repo,
        &PruneOptions {
            max_unused: MaxUnused::Percent(0.0),
            ..PruneOptions::default()
        },
        &NoProgress,
    );
    drop(repo);
    let repo = env.open();
    let report = check(&repo, &CheckOptions::default(), &NoProgress).expect("check runs");
    assert!(
        report.is_clean(),
        "after prune ({:?}) check finds {} error(s), first: {:?}",
        result
            .as_ref()
            .map(|r| r.superseded_index_files)
            .map_err(|e| e.to_string()),
        report.errors.len(),
        report.errors.first()
    );
}

// ---------------------------------------------------------------------------------------------
// 7. The lease is renewed only inside `check`, which runs only before destructive steps. A read
//    phase (listing snapshots, walking their trees, reading the index) longer than the ttl makes
//    the first destructive step fail with "lost its lease": on a large repository (default ttl
//    15 min, not settable from the CLI) prune can never sweep. Simulated with a 1 s ttl and a
//    storage whose snapshot listing takes 1.5 s.
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct SlowSnapshots {
    inner: Arc<dyn Backend>,
    delay: Duration,
}

#[async_trait::async_trait]
impl Intercept for SlowSnapshots {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
    }
    async fn list(&self, t: FileType) -> Result<Vec<ObjectInfo>, BackendError> {
        if t == FileType::Snapshot {
            tokio::time::sleep(self.delay).await;
        }
        self.inner.list(t).await
    }
}

#[test]
fn a_read_phase_longer_than_the_lease_ttl_still_sweeps() {
    let env = env_with_grace(1);
    {
        let repo = env.open();
        let a = stream(&repo, Rng(700).bytes(1 << 20));
        stream(&repo, Rng(701).bytes(1 << 20));
        forget_ids(&repo, &[a.to_hex()], false).expect("forget");
    }
    env.wait_grace();
    let first = other_prune(&env.path, &env.cache);
    assert!(first.plan.is_some(), "{first:?}");
    env.wait_grace();
    let backend: Arc<dyn Backend> = Arc::new(Intercepted(SlowSnapshots {
        inner: open_backend(&env.path).expect("backend"),
        delay: Duration::from_millis(1500),
    }));
    let repo = Repository::open_with_backend(
        backend,
        &env.path,
        PASSWORD,
        &OpenOptions {
            cache_dir: Some(env.cache.clone()),
        },
    )
    .expect("open");
    let result = prune(
        &repo,
        &PruneOptions {
            max_unused: MaxUnused::Percent(0.0),
            lease: engine::prune::lease::LeaseOptions {
                ttl: Duration::from_secs(1),
                ..Default::default()
            },
            ..PruneOptions::default()
        },
        &NoProgress,
    );
    let r = result.expect("a prune whose reading takes longer than the lease ttl still sweeps");
    assert!(r.sweep.packs_deleted >= 1, "{r:?}");
}

// ---------------------------------------------------------------------------------------------
// 8. A `forget` that runs while prune reads the snapshots makes prune fail: a snapshot listed
//    and deleted before it is read is an error (NotFound), not "forgotten meanwhile".
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct ForgetAfterList {
    inner: Arc<dyn Backend>,
    victim: Mutex<Option<String>>,
}

#[async_trait::async_trait]
impl Intercept for ForgetAfterList {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
    }
    async fn list(&self, t: FileType) -> Result<Vec<ObjectInfo>, BackendError> {
        let l = self.inner.list(t).await;
        if t == FileType::Snapshot {
            let victim = self.victim.lock().expect("lock").take();
            if let Some(v) = victim {
                // Another host's `forget` removes it right now.
                self.inner.delete(FileType::Snapshot, &v).await?;
            }
        }
        l
    }
}

#[test]
fn a_concurrent_forget_does_not_make_prune_fail() {
    let env = env_with_grace(1);
    let victim = {
        let repo = env.open();
        stream(&repo, Rng(800).bytes(1 << 20));
        stream(&repo, Rng(801).bytes(1 << 20))
    };
    let backend: Arc<dyn Backend> = Arc::new(Intercepted(ForgetAfterList {
        inner: open_backend(&env.path).expect("backend"),
        victim: Mutex::new(Some(victim.to_hex())),
    }));
    let repo = Repository::open_with_backend(
        backend,
        &env.path,
        PASSWORD,
        &OpenOptions {
            cache_dir: Some(env.cache.clone()),
        },
    )
    .expect("open");
    let r = prune(
        &repo,
        &PruneOptions {
            max_unused: MaxUnused::Percent(0.0),
            ..PruneOptions::default()
        },
        &NoProgress,
    );
    r.expect("a snapshot forgotten while prune lists them is simply not needed any more");
}
