//! The directory walk: entries saved in parallel give the same snapshot, warnings and counts
//! as one thread; trees deeper than the walker keeps directories open for round trip and are
//! reused unchanged; the progress scan counts what the walk will read. The restore's walk of a
//! snapshot tree, parallel too, makes what one thread makes.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use engine::archiver::exclude::Excludes;
use engine::archiver::walk::scan;
use engine::archiver::{BackupOptions, BackupResult, Source, backup};
use engine::backend::faulty::FaultyBackend;
use engine::backend::{Backend, LocalBackend};
use engine::progress::{NoProgress, Progress};
use engine::repository::{OpenOptions, Repository};
use engine::restorer::{RestoreOptions, restore};

mod common;

use common::{PASSWORD, Rng, env};

fn backup_with(
    repo: &engine::repository::Repository,
    src: &Path,
    workers: usize,
    progress: &dyn Progress,
) -> BackupResult {
    let mut opts = BackupOptions::new(Source::Paths(vec![src.to_path_buf()]));
    opts.workers = Some(workers);
    backup(repo, opts, progress).expect("backup")
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Every regular file below `dir` (relative path → contents), in path order.
fn files_below(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("list") {
            let p = e.expect("entry").path();
            let m = fs::symlink_metadata(&p).expect("stat");
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() {
                let rel = p.strip_prefix(dir).expect("below").to_path_buf();
                out.push((rel, fs::read(&p).expect("read")));
            }
        }
    }
    out.sort();
    out
}

/// Restores `backed_up` (of `src`, named `data`) into `target`, verified, and compares every
/// regular file with `src`.
fn restores_as(
    repo: &engine::repository::Repository,
    backed_up: &BackupResult,
    src: &Path,
    target: &Path,
) {
    let s = restore(
        repo,
        &backed_up.snapshot,
        &RestoreOptions {
            target: target.to_path_buf(),
            verify: true,
            ..Default::default()
        },
        &NoProgress,
    )
    .expect("restore");
    assert!(s.failed.is_empty(), "{:?}", s.failed);
    assert_eq!(files_below(src), files_below(&target.join("data")));
}

/// Counts the totals a backup's progress is given.
#[derive(Default)]
struct Totals {
    shows: bool,
    calls: AtomicU64,
}

impl Progress for Totals {
    fn shows_totals(&self) -> bool {
        self.shows
    }
    fn set_total(&self, _files: u64, _bytes: u64) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn parallel_walk_gives_the_snapshot_warnings_and_counts_of_one_thread() {
    let env = env();
    let src = env.root.join("data");
    let mut rng = Rng(0x5eed);
    let mut fifos = Vec::new();
    for d in 0..12 {
        let dir = src.join(format!("d{d:02}"));
        fs::create_dir_all(dir.join("inner")).expect("mkdir");
        for f in 0..6 {
            let len = 1 + rng.below(40_000) as usize;
            fs::write(dir.join(format!("f{f}")), rng.bytes(len)).expect("write");
        }
        fs::write(dir.join("inner/same"), b"the same bytes in every directory").expect("write");
        // Special files are stored as metadata with a warning each: the warnings' order shows
        // the order the walk reports in.
        for name in ["a.fifo", "inner/z.fifo"] {
            mkfifo(&dir.join(name));
            fifos.push(dir.join(name));
        }
    }
    fifos.sort();

    // One thread, into a fresh repository.
    let repo = env.open();
    let quiet = Totals::default();
    let one = backup_with(&repo, &src, 1, &quiet);
    assert_eq!(
        quiet.calls.load(Ordering::Relaxed),
        0,
        "nobody shows totals: the scan is not run"
    );
    let warned: Vec<PathBuf> = one.warnings.iter().map(|w| w.path.clone()).collect();
    assert_eq!(warned, fifos, "one warning per fifo, in path order");
    let a = one.snapshot.summary.expect("summary");

    // Four threads, into another fresh repository (other keys, so other ids): they race to
    // store the file that every directory holds.
    let env2 = common::env();
    let repo2 = env2.open();
    let par = backup_with(&repo2, &src, 4, &NoProgress);
    let warned: Vec<PathBuf> = par.warnings.iter().map(|w| w.path.clone()).collect();
    assert_eq!(warned, fifos, "the same warnings in the same order");
    let b = par.snapshot.summary.expect("summary");
    assert_eq!(
        (
            a.total_files,
            a.total_bytes,
            a.dirs,
            a.warnings,
            a.files_new
        ),
        (
            b.total_files,
            b.total_bytes,
            b.dirs,
            b.warnings,
            b.files_new
        )
    );
    assert_eq!(a.bytes_read, b.bytes_read);
    assert_eq!(a.blobs_added, b.blobs_added, "each blob stored once");
    assert_eq!(a.data_added_raw, b.data_added_raw);

    // One thread reading everything again there gives the same tree; parallel re-runs reuse
    // every file and give it too.
    let mut opts = BackupOptions::new(Source::Paths(vec![src.clone()]));
    opts.workers = Some(1);
    opts.force = true;
    let forced = backup(&repo2, opts, &NoProgress).expect("forced backup");
    assert_eq!(forced.snapshot.tree, par.snapshot.tree);
    assert_eq!(forced.snapshot.summary.expect("summary").blobs_added, 0);
    for run in 0..2 {
        let again = backup_with(&repo2, &src, 4, &NoProgress);
        let c = again.snapshot.summary.expect("summary");
        assert_eq!(again.snapshot.tree, par.snapshot.tree, "run {run}");
        assert_eq!(c.bytes_read, 0, "run {run}: unchanged files are not read");
        assert_eq!(c.files_unmodified, a.total_files);
        let warned: Vec<PathBuf> = again.warnings.iter().map(|w| w.path.clone()).collect();
        assert_eq!(warned, fifos, "run {run}");
    }

    let last = backup_with(&repo2, &src, 2, &NoProgress);
    restores_as(&repo2, &last, &src, &env2.root.join("restore"));
}

/// Counts the bytes a backup reads.
#[derive(Default)]
struct BytesRead(AtomicU64);

impl Progress for BytesRead {
    fn bytes_done(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

#[test]
fn a_storage_failure_stops_every_walk_thread_and_is_the_error_reported() {
    let env = env();
    let src = env.root.join("data");
    let mut rng = Rng(0xfa11);
    const MIB: usize = 1 << 20;
    let (dirs, per_dir) = (16, 6);
    for d in 0..dirs {
        let dir = src.join(format!("d{d:02}"));
        fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..per_dir {
            fs::write(dir.join(format!("f{f}")), rng.bytes(MIB)).expect("write");
        }
    }
    let total = (dirs * per_dir * MIB) as u64;

    let local: Arc<dyn Backend> = Arc::new(LocalBackend::new(Path::new(&env.repo_path)));
    let (faulty, plan) = FaultyBackend::wrap(local);
    let opts = OpenOptions {
        cache_dir: Some(env.cache.clone()),
    };
    let repo =
        Repository::open_with_backend(faulty, &env.repo_path, PASSWORD, &opts).expect("open");
    // From now on every write fails: the first data pack's upload is the first.
    plan.reset_counters().crash_after_writes(0);
    let read = BytesRead::default();
    let mut backup_opts = BackupOptions::new(Source::Paths(vec![src.clone()]));
    backup_opts.workers = Some(4);
    let err = backup(&repo, backup_opts, &read).expect_err("the storage refuses every write");
    let chain = format!("{err:?}");
    assert!(
        chain.contains("injected fault"),
        "the storage's error: {chain}"
    );
    let read = read.0.load(Ordering::Relaxed);
    assert!(
        read < total / 2,
        "every walk thread stopped soon after the failure: {read} of {total} bytes read"
    );
}

#[test]
fn a_tree_deeper_than_the_open_directories_round_trips_and_is_reused() {
    let env = env();
    let src = env.root.join("data");
    // 48 levels: below the 16th the walker lists names and stats by path.
    let mut dir = src.clone();
    for level in 0..48 {
        dir = dir.join(format!("level{level:02}"));
        fs::create_dir_all(&dir).expect("mkdir");
        fs::write(
            dir.join("file"),
            format!("at level {level}\n").repeat(level + 1),
        )
        .expect("write");
        std::os::unix::fs::symlink("file", dir.join("link")).expect("symlink");
    }
    let repo = env.open();
    let first = backup_with(&repo, &src, 2, &NoProgress);
    assert!(first.warnings.is_empty(), "{:?}", first.warnings);
    let s1 = first.snapshot.summary.as_ref().expect("summary");
    assert_eq!(s1.total_files, 48);
    assert_eq!(s1.dirs, 49);

    let again = backup_with(&repo, &src, 2, &NoProgress);
    let s2 = again.snapshot.summary.as_ref().expect("summary");
    assert_eq!(s2.bytes_read, 0, "nothing is read again");
    assert_eq!(s2.files_unmodified, 48);
    assert_eq!(again.snapshot.tree, first.snapshot.tree);

    // A change at the bottom is found (stat by path there: same size, new ctime) and only
    // that file is read.
    let old = fs::read(dir.join("file")).expect("read");
    let new: Vec<u8> = old.iter().map(|b| b.to_ascii_uppercase()).collect();
    assert_ne!(old, new);
    fs::write(dir.join("file"), &new).expect("write");
    let changed = backup_with(&repo, &src, 2, &NoProgress);
    let s3 = changed.snapshot.summary.as_ref().expect("summary");
    assert_eq!(s3.files_changed, 1);
    assert_eq!(s3.bytes_read, new.len() as u64);

    let target = env.root.join("restore");
    restores_as(&repo, &changed, &src, &target);
    let deepest = target.join(dir.strip_prefix(&env.root).expect("below root"));
    assert_eq!(
        fs::read_link(deepest.join("link")).expect("readlink"),
        Path::new("file")
    );
}

#[test]
fn scan_counts_the_files_and_bytes_the_walk_will_read() {
    let env = env();
    let src = env.root.join("data");
    fs::create_dir_all(src.join("a/b")).expect("mkdir");
    fs::create_dir_all(src.join("cache/deep")).expect("mkdir");
    fs::write(src.join("top"), vec![1u8; 1000]).expect("write");
    fs::write(src.join("a/one"), vec![2u8; 20]).expect("write");
    fs::write(src.join("a/b/two"), vec![3u8; 300]).expect("write");
    fs::write(src.join("a/b/skip.log"), vec![4u8; 5000]).expect("write");
    fs::write(src.join("cache/deep/big"), vec![5u8; 70_000]).expect("write");
    let outside = env.root.join("outside");
    fs::create_dir_all(&outside).expect("mkdir");
    fs::write(outside.join("huge"), vec![6u8; 100_000]).expect("write");
    // Symlinks are not followed, to files or directories.
    std::os::unix::fs::symlink(outside.join("huge"), src.join("a/link")).expect("symlink");
    std::os::unix::fs::symlink(&outside, src.join("dirlink")).expect("symlink");
    mkfifo(&src.join("a/pipe"));
    let lone = env.root.join("lone-file");
    fs::write(&lone, vec![7u8; 7]).expect("write");

    let cancel = std::sync::atomic::AtomicBool::new(false);
    let none = Excludes::new(&[]).expect("no excludes");
    assert_eq!(
        scan(&[src.clone(), lone.clone()], &none, &cancel),
        (6, 1000 + 20 + 300 + 5000 + 70_000 + 7)
    );
    let some = Excludes::new(&["cache/".to_owned(), "*.log".to_owned()]).expect("excludes");
    assert_eq!(
        scan(&[src.clone(), lone.clone()], &some, &cancel),
        (4, 1000 + 20 + 300 + 7)
    );

    // The walk agrees: same files, same bytes.
    let repo = env.open();
    let mut opts = BackupOptions::new(Source::Paths(vec![src.clone(), lone]));
    opts.excludes = vec!["cache/".to_owned(), "*.log".to_owned()];
    let shown = Totals {
        shows: true,
        ..Totals::default()
    };
    let r = backup(&repo, opts, &shown).expect("backup");
    let s = r.snapshot.summary.as_ref().expect("summary");
    assert_eq!((s.total_files, s.total_bytes), (4, 1000 + 20 + 300 + 7));
    assert_eq!(
        shown.calls.load(Ordering::Relaxed),
        1,
        "a progress that shows totals gets them once"
    );
}

/// The restore walks subtrees in parallel: with one thread or six, the same directories,
/// symlinks, files and hard links are made, and the warnings come in the snapshot's order.
#[test]
fn restore_walks_subtrees_in_parallel_with_the_result_of_one_thread() {
    use std::os::unix::fs::MetadataExt;
    let env = env();
    let src = env.root.join("data");
    let mut rng = Rng(0x7e57);
    let mut fifos = Vec::new();
    for d in 0..10 {
        let dir = src.join(format!("d{d:02}"));
        for sub in ["a", "b/c", "b/d"] {
            let inner = dir.join(sub);
            fs::create_dir_all(&inner).expect("mkdir");
            for f in 0..4 {
                let len = rng.below(20_000) as usize;
                fs::write(inner.join(format!("f{f}")), rng.bytes(len)).expect("write");
            }
            mkfifo(&inner.join("p.fifo"));
            fifos.push(inner.join("p.fifo"));
            std::os::unix::fs::symlink("f0", inner.join("s.link")).expect("symlink");
        }
        // A hard link across subtrees walked by different threads.
        fs::hard_link(dir.join("a/f1"), dir.join("b/d/linked")).expect("link");
    }
    fifos.sort();
    let repo = env.open();
    let snap = backup_with(&repo, &src, 2, &NoProgress).snapshot;
    let mut results = Vec::new();
    for threads in [1, 6] {
        let target = env.root.join(format!("restore-{threads}"));
        let s = restore(
            &repo,
            &snap,
            &RestoreOptions {
                target: target.clone(),
                threads: Some(threads),
                ..Default::default()
            },
            &NoProgress,
        )
        .expect("restore");
        assert!(s.failed.is_empty(), "{:?}", s.failed);
        let restored = target.join("data");
        let warned: Vec<PathBuf> = s
            .warnings
            .iter()
            .map(|(p, _)| src.join(p.strip_prefix(&restored).expect("below the target")))
            .collect();
        assert_eq!(
            warned, fifos,
            "{threads} threads: one warning per fifo, in order"
        );
        assert_eq!((s.dirs, s.symlinks), (1 + 10 * 5, 30), "{threads} threads");
        assert_eq!(
            files_below(&src),
            files_below(&restored),
            "{threads} threads"
        );
        for d in 0..10 {
            let dir = restored.join(format!("d{d:02}"));
            let (a, b) = (
                fs::metadata(dir.join("a/f1")).expect("stat"),
                fs::metadata(dir.join("b/d/linked")).expect("stat"),
            );
            assert_eq!(
                a.ino(),
                b.ino(),
                "{threads} threads: d{d:02} links one inode"
            );
            assert_eq!(
                fs::read_link(dir.join("b/c/s.link")).expect("readlink"),
                Path::new("f0")
            );
        }
        results.push((s.files, s.bytes, s.warnings.len()));
    }
    assert_eq!(results[0], results[1]);
}

/// The restore walks a subtree on the stack of the thread that took it up: a chain of
/// directories as deep as paths go (1-byte names, to near `PATH_MAX` in the target) with a
/// sibling at every level, so the walk fans out all the way down, fits the restore threads'
/// stacks, in a debug build too.
#[test]
fn restore_of_a_tree_as_deep_as_paths_go_fits_the_thread_stacks() {
    let env = env();
    let src = env.root.join("data");
    let target = env.root.join("r");
    // The restored path of the deepest directory: target/data/d/d/...: keep it under 4095.
    let levels = (4000 - target.join("data").as_os_str().len()) / 2;
    let mut deepest = src.clone();
    for _ in 0..levels {
        deepest.push("d");
    }
    fs::create_dir_all(&deepest).expect("mkdir the chain");
    let mut dir = src.clone();
    for level in 0..levels {
        fs::create_dir(dir.join("e")).expect("mkdir a sibling");
        if level % 100 == 0 {
            fs::write(dir.join("e/f"), format!("level {level}")).expect("write");
        }
        dir.push("d");
    }
    fs::write(deepest.join("end"), b"the bottom").expect("write the deepest file");
    let repo = env.open();
    let snap = backup_with(&repo, &src, 2, &NoProgress).snapshot;
    let s = restore(
        &repo,
        &snap,
        &RestoreOptions {
            target: target.clone(),
            threads: Some(4),
            ..Default::default()
        },
        &NoProgress,
    )
    .expect("restore");
    assert!(s.failed.is_empty(), "{:?}", s.failed);
    assert_eq!(s.dirs as usize, 1 + 2 * levels, "{levels} levels");
    assert_eq!(files_below(&src), files_below(&target.join("data")));
}
