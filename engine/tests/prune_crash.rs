//! A prune killed after its k-th storage write, for every k, and a prune whose writes fail at
//! random: afterwards every snapshot restores byte-exact, `check` finds no damage, and a rerun
//! finishes the job (SPEC §18, "Crashes").
//!
//! One base repository is built once: snapshots A, B and C, where A was forgotten and planned
//! away by a first prune (its plan is due), and B was forgotten since (its packs are unused, and
//! C shares part of a pack with B, so the next prune both sweeps and repacks). Every iteration
//! copies it, keeping modification times, and runs the prune under test on the copy.

mod common;

use std::fs;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::grace::dump;
use common::{PASSWORD, Rng};
use engine::archiver::{BackupOptions, Source, backup};
use engine::backend::faulty::{FaultPlan, FaultyBackend};
use engine::backend::{Backend, LocalBackend};
use engine::checker::{CheckOptions, ReadData, check};
use engine::forget::forget_ids;
use engine::progress::NoProgress;
use engine::prune::lease::LeaseOptions;
use engine::prune::{MaxUnused, PruneOptions, prune};
use engine::repository::{InitOptions, OpenOptions, Repository, init};
use repo_format::{KdfParams, SnapshotId};

const GRACE: u64 = 1;

fn open_with(path: &Path, backend: Arc<dyn Backend>, cache: &Path) -> engine::Result<Repository> {
    Repository::open_with_backend(
        backend,
        &path.to_string_lossy(),
        PASSWORD,
        &OpenOptions {
            cache_dir: Some(cache.to_path_buf()),
        },
    )
}

fn open_clean(path: &Path, cache: &Path) -> Repository {
    open_with(path, Arc::new(LocalBackend::new(path)), cache).expect("open")
}

fn stream(repo: &Repository, data: &[u8]) -> SnapshotId {
    let opts = BackupOptions::new(Source::Stream {
        name: "db.dump".into(),
        reader: Box::new(Cursor::new(data.to_vec())),
    });
    backup(repo, opts, &NoProgress).expect("backup").id
}

/// Copies a directory tree, keeping files' modification times (prune judges ages by them).
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let dest = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            fs::copy(e.path(), &dest).expect("copy");
            let meta = e.metadata().expect("metadata");
            filetime::set_file_mtime(
                &dest,
                filetime::FileTime::from_last_modification_time(&meta),
            )
            .expect("set mtime");
        }
    }
}

fn prune_opts() -> PruneOptions {
    PruneOptions {
        max_unused: MaxUnused::Percent(0.0),
        lease: LeaseOptions {
            ttl: Duration::from_secs(1),
            ..LeaseOptions::default()
        },
        ..PruneOptions::default()
    }
}

struct Base {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    /// The snapshots that must survive, with their contents.
    kept: Vec<(SnapshotId, Vec<u8>)>,
}

fn base() -> Base {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("repo");
    init(
        &path.to_string_lossy(),
        PASSWORD,
        &InitOptions {
            kdf: KdfParams::TEST,
            prune_grace_secs: Some(GRACE),
            ..InitOptions::default()
        },
    )
    .expect("init");
    let cache = dir.path().join("cache");
    let repo = open_clean(&path, &cache);
    let mut rng = Rng(11);
    let a = rng.bytes(1 << 20);
    let b = rng.bytes(2 << 20);
    let mut c = b[..1 << 20].to_vec();
    c.extend(rng.bytes(1 << 20));
    let sa = stream(&repo, &a);
    forget_ids(&repo, &[sa.to_hex()], false).expect("forget a");
    let sb = stream(&repo, &b);
    let sc = stream(&repo, &c);
    std::thread::sleep(Duration::from_millis(GRACE * 1000 + 1100));
    let first = prune(&repo, &prune_opts(), &NoProgress).expect("first prune");
    assert!(first.plan.is_some(), "{first:?}");
    forget_ids(&repo, &[sb.to_hex()], false).expect("forget b");
    std::thread::sleep(Duration::from_millis(GRACE * 1000 + 1100));
    drop(repo);
    Base {
        _dir: dir,
        path,
        kept: vec![(sc, c)],
    }
}

/// Every kept snapshot restores byte-exact and `check --read-data` finds no damage.
fn assert_sound(path: &Path, cache: &Path, kept: &[(SnapshotId, Vec<u8>)], what: &str) {
    let repo = open_clean(path, cache);
    for (id, data) in kept {
        let out = dump(&repo, id).unwrap_or_else(|e| panic!("{what}: {id} does not restore: {e}"));
        assert!(out == *data, "{what}: {id} restores different bytes");
    }
    let report = check(
        &repo,
        &CheckOptions {
            read_data: ReadData::All,
        },
        &NoProgress,
    )
    .expect("check runs");
    assert!(
        report.is_clean(),
        "{what}: check finds damage: {:?}",
        report.errors
    );
}

fn packs(path: &Path) -> usize {
    let mut n = 0;
    for shard in fs::read_dir(path.join("data")).expect("data") {
        let shard = shard.expect("shard").path();
        n += fs::read_dir(shard)
            .expect("shard dir")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| !e.file_name().to_string_lossy().starts_with('.'))
            })
            .count();
    }
    n
}

/// Runs prune on a copy of the base under `arm`, then checks, reruns and checks again.
/// Returns whether the faulty prune succeeded, and how many writes it made.
fn one_run(base: &Base, work: &Path, arm: &dyn Fn(&FaultPlan), what: &str) -> (bool, u64) {
    let path = work.join("repo");
    let cache = work.join("cache");
    copy_dir(&base.path, &path);
    let (backend, plan) = FaultyBackend::wrap(Arc::new(LocalBackend::new(&path)));
    let repo = open_with(&path, backend, &cache).expect("open faulty");
    arm(&plan);
    let result = prune(&repo, &prune_opts(), &NoProgress);
    let writes = plan.counts().writes_persisted;
    drop(repo);
    assert_sound(&path, &cache, &base.kept, what);

    // The rerun (after the dead prune's lease expired) finishes the job.
    std::thread::sleep(Duration::from_millis(1100));
    let repo = open_clean(&path, &cache);
    prune(&repo, &prune_opts(), &NoProgress).unwrap_or_else(|e| panic!("{what}: rerun: {e}"));
    std::thread::sleep(Duration::from_millis(GRACE * 1000 + 1100));
    let last = prune(&repo, &prune_opts(), &NoProgress)
        .unwrap_or_else(|e| panic!("{what}: last run: {e}"));
    assert!(
        last.plan.is_none(),
        "{what}: nothing is left to mark: {last:?}"
    );
    drop(repo);
    assert_sound(&path, &cache, &base.kept, what);
    (result.is_ok(), writes)
}

#[test]
fn prune_killed_after_every_write_loses_nothing_and_a_rerun_finishes() {
    let base = base();
    let packs_in_base = packs(&base.path);
    let mut k = 0;
    let mut crashes = 0;
    loop {
        let work = tempfile::tempdir().expect("tempdir");
        let (ok, writes) = one_run(
            &base,
            work.path(),
            &|plan| {
                plan.crash_after_writes(k);
            },
            &format!("crash after {k} writes"),
        );
        // Everything that could go went: only C's packs (and repacked copies) remain.
        assert!(packs(&work.path().join("repo")) < packs_in_base, "k = {k}");
        if ok {
            assert!(writes <= k, "the prune that succeeded made {writes} writes");
            break;
        }
        crashes += 1;
        k += 1;
        assert!(k < 200, "prune should finish within 200 writes");
    }
    assert!(
        crashes >= 8,
        "the sweep and the plan have more steps than {crashes}"
    );
    eprintln!("prune crashed at each of {crashes} writes; all repositories sound");
}

#[test]
fn prune_with_failing_and_lost_writes_loses_nothing() {
    let base = base();
    for seed in 0..6u64 {
        let work = tempfile::tempdir().expect("tempdir");
        one_run(
            &base,
            work.path(),
            &|plan| {
                plan.transient_errors(0.2, seed, true);
                if seed % 2 == 1 {
                    plan.lose_responses_from(3 + seed);
                }
            },
            &format!("seed {seed}"),
        );
    }
}
