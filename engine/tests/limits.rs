//! Inputs at the edges (issue 8, "Limits" and "Faults"): each backs up, restores or dumps, and
//! compares exactly (bytes, names as raw bytes, modes).
//!
//! - empty and tiny inputs: an empty stream, 0-byte files;
//! - a file that grows or shrinks while it is read (a [`Progress`] hook changes it at a fixed
//!   point of the read, so the outcome does not depend on timing);
//! - names that are not UTF-8; paths of 4095 bytes (PATH_MAX with its NUL) and past it;
//! - many empty files in one directory (100 000 always; a million with
//!   `cargo nextest run -p cairn-engine --test limits --run-ignored only`, or
//!   scripts/limits-million);
//! - hard links (restored as hard links) and sparse files (restored sparse);
//! - faults: a read-only restore target, an unreadable source file, a full repository (a tmpfs
//!   when this process may mount one, and always an injected `ENOSPC`), a full restore target.
//!
//! Mounting needs root (CI runs as root); elsewhere those tests print why they did nothing, and
//! with `CI=true` they fail.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Cursor, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use engine::archiver::{BackupOptions, BackupResult, Source, backup};
use engine::backend::local::LocalBackend;
use engine::backend::{Backend, BackendError, FileType};
use engine::checker::{CheckOptions, ReadData, check};
use engine::progress::{NoProgress, Progress};
use engine::repository::{OpenOptions, Repository};
use engine::restorer::{RestoreOptions, RestoreSummary, dump_content, find_node, restore};
use repo_format::NodeKind;

mod common;

use common::intercept::{Intercept, Intercepted};
use common::{Env, PASSWORD, Rng, env};

// ---------------------------------------------------------------------------------------------
// Helpers

fn os(bytes: &[u8]) -> &std::ffi::OsStr {
    std::ffi::OsStr::from_bytes(bytes)
}

fn backup_with(repo: &Repository, paths: &[&Path], progress: &dyn Progress) -> BackupResult {
    let src = Source::Paths(paths.iter().map(|p| p.to_path_buf()).collect());
    backup(repo, BackupOptions::new(src), progress).expect("backup")
}

fn backup_paths(repo: &Repository, paths: &[&Path]) -> BackupResult {
    backup_with(repo, paths, &NoProgress)
}

fn restore_into(
    repo: &Repository,
    r: &BackupResult,
    target: &Path,
) -> engine::Result<RestoreSummary> {
    let opts = RestoreOptions {
        target: target.to_path_buf(),
        ..Default::default()
    };
    restore(repo, &r.snapshot, &opts, &NoProgress)
}

/// Everything restore must reproduce below `root`, keyed by the raw bytes of the relative path:
/// kind, mode, size and a hash of the content, or the symlink's target bytes.
fn tree_of(root: &Path) -> BTreeMap<Vec<u8>, String> {
    fn rec(base: &Path, dir: &Path, out: &mut BTreeMap<Vec<u8>, String>) {
        for e in fs::read_dir(dir).expect("read_dir") {
            let p = e.expect("dir entry").path();
            let rel = p.strip_prefix(base).expect("prefix").as_os_str().as_bytes();
            let m = fs::symlink_metadata(&p).expect("lstat");
            let mode = m.mode() & 0o7777;
            let desc = if m.file_type().is_symlink() {
                format!(
                    "link {:?}",
                    fs::read_link(&p).expect("readlink").as_os_str()
                )
            } else if m.is_dir() {
                rec(base, &p, out);
                format!("dir {mode:o} mtime {}", m.mtime())
            } else {
                let data = fs::read(&p).expect("read");
                let hash = blake3::hash(&data).to_hex();
                format!(
                    "file {mode:o} mtime {} len {} {hash}",
                    m.mtime(),
                    data.len()
                )
            };
            out.insert(rel.to_vec(), desc);
        }
    }
    let mut out = BTreeMap::new();
    rec(root, root, &mut out);
    out
}

/// Reads two files in step and asserts they are equal (without holding either in memory).
fn assert_same_file(a: &Path, b: &Path) {
    let (mut fa, mut fb) = (
        fs::File::open(a).expect("open a"),
        fs::File::open(b).expect("open b"),
    );
    let (ma, mb) = (
        fa.metadata().expect("stat a"),
        fb.metadata().expect("stat b"),
    );
    assert_eq!(
        ma.len(),
        mb.len(),
        "{} and {} differ in size",
        a.display(),
        b.display()
    );
    assert_eq!(ma.mode() & 0o7777, mb.mode() & 0o7777, "modes differ");
    let (mut ba, mut bb) = (vec![0u8; 8 << 20], vec![0u8; 8 << 20]);
    let mut offset = 0u64;
    loop {
        let n = fa.read(&mut ba).expect("read a");
        if n == 0 {
            break;
        }
        fb.read_exact(&mut bb[..n]).expect("read b");
        assert!(ba[..n] == bb[..n], "contents differ near offset {offset}");
        offset += n as u64;
    }
}

/// Peak resident memory of this process so far (VmHWM), in MiB.
fn peak_rss_mib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

fn is_root() -> bool {
    engine::host::uid() == 0
}

/// Prints why a test does nothing (it then returns), or panics under CI (`CI=true`): CI runs as
/// root and may mount, so a test that cannot run there must make the run red, not pass.
fn skip_or_fail(test: &str, reason: &str) {
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    if ci {
        panic!("{test}: {reason} (CI=true: a test that cannot run fails)");
    }
    eprintln!("SKIPPED: {test}: {reason}");
}

/// A tmpfs mounted at a directory for the life of the guard (unmounted on drop, also when the
/// test panics).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// The mount, or why there is none (this process may not mount).
    fn try_mount(dir: &Path, options: &str) -> Result<Tmpfs, String> {
        fs::create_dir_all(dir).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Ok(Tmpfs {
                dir: dir.to_path_buf(),
            }),
            Ok(o) => Err(format!(
                "cannot mount a tmpfs ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Err(format!("cannot run mount: {e}")),
        }
    }

    /// The mount for a test that needs one: `None` when there is none, after [`skip_or_fail`].
    fn mount(dir: &Path, options: &str, test: &str) -> Option<Tmpfs> {
        Self::try_mount(dir, options)
            .inspect_err(|why| skip_or_fail(test, why))
            .ok()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Something still has a file open: detach it now, the kernel frees it later.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// Calls a closure on the first `bytes_done` of a backup: the read of the first file is then
/// at a fixed point (its first read buffer is full), whatever the machine's speed.
struct OnFirstBytes(Mutex<Option<Box<dyn FnOnce() + Send>>>);

impl Progress for OnFirstBytes {
    fn bytes_done(&self, _n: u64) {
        let f = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(f) = f {
            f();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Empty inputs

#[test]
fn empty_stream_is_stored_as_an_empty_file() {
    let env = env();
    let repo = env.open();
    let opts = BackupOptions::new(Source::Stream {
        name: "empty.dump".into(),
        reader: Box::new(Cursor::new(Vec::new())),
    });
    let r = backup(&repo, opts, &NoProgress).expect("backup of an empty stream");
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let node = find_node(&repo, &r.snapshot.tree, b"empty.dump").expect("node");
    assert_eq!(node.size, 0);
    let mut out = Vec::new();
    assert_eq!(
        dump_content(&repo, &node, &mut out, &NoProgress).expect("dump"),
        0
    );
    assert!(out.is_empty());
    let target = env.root.join("restore");
    let s = restore_into(&repo, &r, &target).expect("restore");
    assert!(s.failed.is_empty(), "{:?}", s.failed);
    assert_eq!(s.files, 1);
    assert_eq!(
        fs::metadata(target.join("empty.dump"))
            .expect("restored")
            .len(),
        0
    );
}

#[test]
fn zero_byte_files_round_trip_with_their_modes() {
    let env = env();
    let src = env.root.join("src");
    fs::create_dir_all(src.join("sub")).expect("mkdir");
    for (name, mode) in [
        ("a", 0o644),
        ("b", 0o600),
        ("sub/c", 0o755),
        ("sub/d", 0o400),
    ] {
        let p = src.join(name);
        fs::write(&p, b"").expect("empty file");
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let repo = env.open();
    let r = backup_paths(&repo, &[&src]);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let summary = r.snapshot.summary.as_ref().expect("summary");
    assert_eq!((summary.total_files, summary.total_bytes), (4, 0));
    let target = env.root.join("restore");
    let s = restore_into(&repo, &r, &target).expect("restore");
    assert!(s.failed.is_empty(), "{:?}", s.failed);
    assert_eq!(tree_of(&src), tree_of(&target.join("src")));
}

// ---------------------------------------------------------------------------------------------
// A file that changes while it is read

/// Backs up one 20 MiB file whose first read buffer (16 MiB with the `file` profile) is
/// followed by `change`; returns the backup, the file and the repository.
fn backup_changing_file(
    env: &Env,
    change: impl FnOnce(&Path) + Send + 'static,
) -> (BackupResult, PathBuf, Repository) {
    let src = env.root.join("src");
    fs::create_dir_all(&src).expect("mkdir");
    let file = src.join("growing.db");
    fs::write(&file, Rng(0xC0FFEE).bytes(20 << 20)).expect("write");
    // An old mtime, so that the change certainly moves it (timestamps tick coarsely).
    let old = filetime::FileTime::from_unix_time(1_000_000_000, 0);
    filetime::set_file_mtime(&file, old).expect("set mtime");
    let repo = env.open();
    let f = file.clone();
    let hook = OnFirstBytes(Mutex::new(Some(Box::new(move || change(&f)))));
    let r = backup_with(&repo, &[&src], &hook);
    (r, file, repo)
}

/// The warning says what happened; the snapshot holds what was read, which here is the file as
/// it is now (the change came before the rest was read); the next backup reads it again.
fn assert_stored_as_read(env: &Env, r: &BackupResult, file: &Path, repo: &Repository, new: u64) {
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    let w = &r.warnings[0];
    assert_eq!(w.path, file);
    let expected = format!(
        "changed while being read ({} bytes, then {new}); stored as read",
        20u64 << 20
    );
    assert_eq!(w.message, expected);
    let summary = r.snapshot.summary.as_ref().expect("summary");
    assert_eq!(summary.warnings, 1, "the snapshot records the warning");
    assert_eq!(summary.bytes_read, new);
    let node = find_node(repo, &r.snapshot.tree, b"src/growing.db").expect("node");
    assert_eq!(node.size, new);
    let target = env.root.join("restore");
    let s = restore_into(repo, r, &target).expect("restore");
    assert!(s.failed.is_empty(), "{:?}", s.failed);
    assert_eq!(fs::metadata(file).expect("stat").len(), new);
    let restored = target.join("src/growing.db");
    let (a, b) = (
        fs::read(file).expect("read"),
        fs::read(&restored).expect("read"),
    );
    assert!(a == b, "the restored file is not what was read");

    let again = backup_paths(repo, &[&env.root.join("src")]);
    let s2 = again.snapshot.summary.expect("summary");
    assert_eq!(
        (s2.files_changed, s2.files_unmodified),
        (1, 0),
        "a file that changed while read is read again by the next backup"
    );
}

#[test]
fn file_growing_while_read_is_stored_as_read_with_a_warning() {
    let env = env();
    let (r, file, repo) = backup_changing_file(&env, |p| {
        let mut f = fs::OpenOptions::new().append(true).open(p).expect("open");
        f.write_all(&Rng(7).bytes(2 << 20)).expect("append");
    });
    assert_stored_as_read(&env, &r, &file, &repo, (20 << 20) + (2 << 20));
}

#[test]
fn file_shrinking_while_read_is_stored_as_read_with_a_warning() {
    let env = env();
    let (r, file, repo) = backup_changing_file(&env, |p| {
        let f = fs::OpenOptions::new().write(true).open(p).expect("open");
        f.set_len(17 << 20).expect("truncate");
    });
    assert_stored_as_read(&env, &r, &file, &repo, 17 << 20);
}

// ---------------------------------------------------------------------------------------------
// Names that are not UTF-8

#[test]
fn names_that_are_not_utf8_round_trip_as_raw_bytes() {
    let env = env();
    // The backed-up directory's own name is not UTF-8 either.
    let src = env.root.join(os(b"src-\xff"));
    let names: [&[u8]; 7] = [
        b"caf\xe9",
        b"\xff\xfe",
        b"\x80start",
        b"bad-seq-\xc3\x28",
        b"new\nline",
        b"\x01ctrl\x7f",
        "ünïcödé ✓".as_bytes(),
    ];
    fs::create_dir_all(&src).expect("mkdir");
    for (i, n) in names.iter().enumerate() {
        fs::write(src.join(os(n)), format!("content {i}")).expect("write");
    }
    let dir = src.join(os(b"dir-\xfe"));
    fs::create_dir(&dir).expect("mkdir");
    fs::write(dir.join(os(b"inner-\xe9")), b"inner").expect("write");
    std::os::unix::fs::symlink(os(b"caf\xe9"), src.join(os(b"link-\xff"))).expect("symlink");

    let repo = env.open();
    let r = backup_paths(&repo, &[&src]);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);

    // Listing gives the raw bytes back, and a raw path finds its node.
    let mut listed = Vec::new();
    engine::ls::walk(&repo, &r.snapshot.tree, &mut |p, _| {
        listed.push(p.to_vec());
        Ok(())
    })
    .expect("ls");
    let mut expected: Vec<Vec<u8>> = names
        .iter()
        .map(|n| [b"src-\xff/".as_slice(), n].concat())
        .collect();
    expected.extend([
        b"src-\xff".to_vec(),
        b"src-\xff/dir-\xfe".to_vec(),
        b"src-\xff/dir-\xfe/inner-\xe9".to_vec(),
        b"src-\xff/link-\xff".to_vec(),
    ]);
    expected.sort();
    listed.sort();
    assert_eq!(listed, expected);
    let node = find_node(&repo, &r.snapshot.tree, b"src-\xff/dir-\xfe/inner-\xe9").expect("node");
    let mut out = Vec::new();
    dump_content(&repo, &node, &mut out, &NoProgress).expect("dump");
    assert_eq!(out, b"inner");
    let link = find_node(&repo, &r.snapshot.tree, b"src-\xff/link-\xff").expect("link");
    assert!(matches!(&link.kind, NodeKind::Symlink { target } if target == b"caf\xe9"));

    let target = env.root.join("restore");
    let s = restore_into(&repo, &r, &target).expect("restore");
    assert!(s.failed.is_empty(), "{:?}", s.failed);
    assert_eq!(tree_of(&src), tree_of(&target.join(os(b"src-\xff"))));
}

// ---------------------------------------------------------------------------------------------
// Long paths

/// Linux's PATH_MAX counts the terminating NUL: the longest usable path has 4095 bytes.
const LONGEST_PATH: usize = 4095;

/// Creates directories of 200-byte names below `base` and a file at the end, so that the
/// file's absolute path is exactly [`LONGEST_PATH`] bytes; returns the file's path.
fn deep_chain(base: &Path) -> PathBuf {
    fs::create_dir_all(base).expect("mkdir base");
    let mut path = base.to_path_buf();
    let mut i = 0u32;
    loop {
        let left = LONGEST_PATH - path.as_os_str().len();
        if left <= 256 {
            // "/" and a name of at most 255 bytes.
            path.push("f".repeat(left - 1));
            fs::write(&path, b"at the end of a 4095-byte path").expect("write the deep file");
            return path;
        }
        path.push(format!("{i:03}{}", "d".repeat(197)));
        fs::create_dir(&path).expect("mkdir");
        i += 1;
    }
}

#[test]
fn paths_of_4095_bytes_back_up_restore_and_past_the_limit_fail_clearly() {
    let env = env();
    let base = env.root.join("s");
    let file = deep_chain(&base);
    assert_eq!(file.as_os_str().len(), LONGEST_PATH);
    let repo = env.open();
    let r = backup_paths(&repo, &[&base]);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let rel = file.strip_prefix(&env.root).expect("relative");
    let node = find_node(&repo, &r.snapshot.tree, rel.as_os_str().as_bytes()).expect("node");
    let mut out = Vec::new();
    dump_content(&repo, &node, &mut out, &NoProgress).expect("dump");
    assert_eq!(out, fs::read(&file).expect("read"));

    // Into `root/r`, the file's path would have 4097 bytes: it fails, saying why and what to
    // do; the rest of the restore goes on.
    let s = restore_into(&repo, &r, &env.root.join("r")).expect("restore runs");
    assert_eq!(s.failed.len(), 1, "{:?}", s.failed);
    let (path, msg) = &s.failed[0];
    assert_eq!(path.as_os_str().len(), LONGEST_PATH + 2);
    assert!(
        msg.contains("longer than the system allows") && msg.contains("shorter --target"),
        "unclear error: {msg}"
    );

    // Into `root` itself (after moving the original aside), the path is 4095 bytes again and
    // the restore is exact.
    let orig = env.root.join("o");
    fs::rename(&base, &orig).expect("move the original aside");
    let s = restore_into(&repo, &r, &env.root).expect("restore");
    assert!(s.failed.is_empty(), "{:?}", s.failed);
    assert_eq!(s.files, 1);
    assert_same_file(&orig.join(file.strip_prefix(&base).expect("rel")), &file);
    assert_eq!(tree_of(&orig), tree_of(&base));
}

/// Directories can be nested deeper than PATH_MAX (by working relative to an open directory);
/// what lies past the limit cannot be named by an absolute path and is left out with a
/// warning that names it, and the rest of the backup goes on.
#[test]
fn entries_past_path_max_are_left_out_with_a_warning() {
    use std::os::fd::AsRawFd;
    let env = env();
    let base = env.root.join("s");
    let file = deep_chain(&base);
    let deepest = file.parent().expect("parent").to_path_buf();
    // Two more levels below the deepest directory, through /proc/self/fd: the kernel resolves
    // the open directory, so the absolute length does not matter.
    let dir = fs::File::open(&deepest).expect("open the deepest directory");
    let beyond = format!("/proc/self/fd/{}/{}", dir.as_raw_fd(), "x".repeat(200));
    fs::create_dir(&beyond).expect("mkdir past PATH_MAX");
    fs::write(format!("{beyond}/past-the-limit"), b"unreachable").expect("write past PATH_MAX");
    fs::write(base.join("near"), b"reachable").expect("write");

    let repo = env.open();
    let r = backup_paths(&repo, &[&base]);
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    let w = &r.warnings[0];
    assert!(w.path.starts_with(&deepest), "{}", w.path.display());
    assert!(w.path.as_os_str().len() > LONGEST_PATH);
    assert!(w.message.contains("left out"), "{}", w.message);
    assert!(w.message.contains("too long"), "{}", w.message);
    // The rest is there.
    let node = find_node(&repo, &r.snapshot.tree, b"s/near").expect("near");
    assert_eq!(node.size, 9);
    let rel = file.strip_prefix(&env.root).expect("relative");
    find_node(&repo, &r.snapshot.tree, rel.as_os_str().as_bytes()).expect("deep file");
}

// ---------------------------------------------------------------------------------------------
// Many files in one directory

/// Creates `n` empty files in one directory, backs them up, restores them and compares the
/// names; prints the timings and this process's peak RSS. With `tmpfs`, the files and the
/// restore live on a tmpfs when one can be mounted: ext4 spends most of the time of this test
/// allocating inodes (more so on a machine where other tests just deleted many), which says
/// nothing about cairn.
fn many_empty_files(n: u32, tmpfs: bool) {
    let env = env();
    let place = env.root.join("fs");
    let mount = if tmpfs {
        let options = format!("size=256m,nr_inodes={}", 2 * n + 1000);
        // Only faster: without a mount the test runs on the disk.
        Tmpfs::try_mount(&place, &options)
            .inspect_err(|why| eprintln!("many_empty_files: on the disk: {why}"))
            .ok()
    } else {
        None
    };
    let on = if mount.is_some() { "tmpfs" } else { "disk" };
    let dir = place.join("many");
    fs::create_dir_all(&dir).expect("mkdir");
    let t = Instant::now();
    for i in 0..n {
        fs::File::create(dir.join(format!("{i:07}"))).expect("create");
    }
    let create = t.elapsed();
    let repo = env.open();
    let t = Instant::now();
    let r = backup_paths(&repo, &[&dir]);
    let backup_time = t.elapsed();
    let backup_rss = peak_rss_mib();
    assert!(
        r.warnings.is_empty(),
        "{:?}",
        &r.warnings[..r.warnings.len().min(5)]
    );
    let summary = r.snapshot.summary.as_ref().expect("summary");
    assert_eq!(summary.total_files, u64::from(n));
    let target = place.join("restore");
    let t = Instant::now();
    let s = restore_into(&repo, &r, &target).expect("restore");
    let restore_time = t.elapsed();
    assert!(
        s.failed.is_empty(),
        "{:?}",
        &s.failed[..s.failed.len().min(5)]
    );
    assert_eq!(s.files, u64::from(n));
    let mut restored: Vec<Vec<u8>> = fs::read_dir(target.join("many"))
        .expect("read_dir")
        .map(|e| {
            let e = e.expect("entry");
            assert_eq!(e.metadata().expect("stat").len(), 0);
            e.file_name().as_bytes().to_vec()
        })
        .collect();
    restored.sort_unstable();
    assert_eq!(restored.len(), n as usize);
    for (i, name) in restored.iter().enumerate() {
        assert_eq!(name, format!("{i:07}").as_bytes());
    }
    eprintln!(
        "{n} empty files on {on}: create {:.1}s, backup {:.1}s (peak RSS {backup_rss} MiB), \
         restore {:.1}s, peak RSS now {} MiB",
        create.as_secs_f64(),
        backup_time.as_secs_f64(),
        restore_time.as_secs_f64(),
        peak_rss_mib()
    );
    // Unmount before the temporary directory is removed.
    drop(mount);
}

#[test]
fn hundred_thousand_empty_files_in_one_directory() {
    many_empty_files(100_000, true);
}

/// The full million, on the disk: minutes in a debug build, so not in the default run
/// (`scripts/limits-million`, or `--run-ignored only`).
#[test]
#[ignore = "slow: a million files; run scripts/limits-million"]
fn million_empty_files_in_one_directory() {
    many_empty_files(1_000_000, false);
}

// ---------------------------------------------------------------------------------------------
// Hard links and sparse files

#[test]
fn hard_links_are_restored_as_hard_links_and_stored_once() {
    let env = env();
    let src = env.root.join("src");
    fs::create_dir_all(src.join("sub")).expect("mkdir");
    let content = Rng(99).bytes(300_000);
    let (a, b, c) = (src.join("a"), src.join("sub/b"), src.join("c"));
    fs::write(&a, &content).expect("write a");
    fs::hard_link(&a, &b).expect("link b to a");
    // Same content, but its own file.
    fs::write(&c, &content).expect("write c");
    // A large file (the parallel path) with three names.
    let big = Rng(5).bytes(6 << 20);
    fs::write(src.join("big1"), &big).expect("write big");
    fs::hard_link(src.join("big1"), src.join("big2")).expect("link");
    fs::hard_link(src.join("big1"), src.join("sub/big3")).expect("link");

    let repo = env.open();
    let r = backup_paths(&repo, &[&src]);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let added = r.snapshot.summary.as_ref().expect("summary").data_added_raw;
    let unique = (content.len() + big.len()) as u64;
    // Trees add a few hundred bytes; a second copy of anything would add at least 300 000.
    assert!(
        added >= unique && added < unique + 10_000,
        "added {added} bytes for {unique} bytes of distinct content"
    );

    let target = env.root.join("restore");
    let s = restore_into(&repo, &r, &target).expect("restore");
    assert!(s.failed.is_empty(), "{:?}", s.failed);
    assert_eq!(s.files, 6);
    let ino = |p: &str| {
        fs::metadata(target.join("src").join(p))
            .expect("stat")
            .ino()
    };
    let nlink = |p: &str| {
        fs::metadata(target.join("src").join(p))
            .expect("stat")
            .nlink()
    };
    assert_eq!(ino("a"), ino("sub/b"), "a and sub/b are one file again");
    assert_ne!(ino("a"), ino("c"), "c was its own file");
    assert_eq!((nlink("a"), nlink("c")), (2, 1));
    assert_eq!(ino("big1"), ino("big2"));
    assert_eq!(ino("big1"), ino("sub/big3"));
    assert_eq!(nlink("big1"), 3);
    assert_eq!(tree_of(&src), tree_of(&target.join("src")));

    // Restoring again over the result keeps the links right (the old names are replaced).
    let s = restore_into(&repo, &r, &target).expect("restore again");
    assert!(s.failed.is_empty(), "{:?}", s.failed);
    assert_eq!(ino("a"), ino("sub/b"));
    assert_eq!(nlink("a"), 2);
    assert_eq!(tree_of(&src), tree_of(&target.join("src")));

    // Restoring only one name of a linked file gives a plain file.
    let only = env.root.join("only");
    let opts = RestoreOptions {
        target: only.clone(),
        includes: vec![PathBuf::from("src/sub")],
        ..Default::default()
    };
    let s = restore(&repo, &r.snapshot, &opts, &NoProgress).expect("restore --include");
    assert!(s.failed.is_empty(), "{:?}", s.failed);
    assert_eq!(s.files, 2);
    assert_eq!(fs::read(only.join("src/sub/b")).expect("read"), content);
    assert_eq!(
        fs::metadata(only.join("src/sub/b")).expect("stat").nlink(),
        1
    );
}

/// Restoring over an earlier restore in which two names were one file (hard links), or over a
/// live tree whose names are links or symlinks to files elsewhere: each file job replaces the
/// name, never writes through it. Writing through would give two separate files of the newer
/// snapshot one content (and report success; `--verify` reads each file right after writing
/// it, so it would not see the second write), or change a file outside the target.
#[test]
fn restoring_over_an_earlier_restore_with_hard_links_mixes_up_files() {
    let env = env();
    let src = env.root.join("src");
    fs::create_dir_all(src.join("sub")).expect("mkdir");
    // Small files (pack by pack) and large ones (the parallel path), each pair one file.
    fs::write(src.join("a"), b"shared content of a and b\n").expect("write");
    fs::hard_link(src.join("a"), src.join("b")).expect("link");
    fs::write(src.join("big1"), Rng(21).bytes(6 << 20)).expect("write");
    fs::hard_link(src.join("big1"), src.join("big2")).expect("link");
    fs::write(src.join("sub/f"), b"in a directory").expect("write");
    let repo = env.open();
    let s1 = backup_paths(&repo, &[&src]);
    // The second snapshot: every name its own file.
    fs::remove_file(src.join("b")).expect("rm");
    fs::write(src.join("b"), b"b is its own file now, with other bytes\n").expect("write");
    fs::remove_file(src.join("big2")).expect("rm");
    fs::write(src.join("big2"), Rng(22).bytes(5 << 20)).expect("write");
    let s2 = backup_paths(&repo, &[&src]);

    let target = env.root.join("target");
    let restored = target.join("src");
    let s = restore_into(&repo, &s1, &target).expect("restore 1");
    assert!(s.failed.is_empty(), "{:?}", s.failed);
    let ino = |p: &str| fs::metadata(restored.join(p)).expect("stat").ino();
    assert_eq!(ino("a"), ino("b"), "the first restore links them");
    assert_eq!(ino("big1"), ino("big2"));
    let s = restore_into(&repo, &s2, &target).expect("restore 2");
    assert!(s.failed.is_empty(), "{:?}", s.failed);
    assert_eq!(
        tree_of(&src),
        tree_of(&restored),
        "second snapshot over the first"
    );
    assert_ne!(ino("a"), ino("b"));
    assert_ne!(ino("big1"), ino("big2"));

    // Names in the target that lead outside it: symlinks to files and to a directory, and a
    // hard link. The restore replaces each name; what is outside is not touched.
    let outside = env.root.join("outside");
    fs::create_dir_all(outside.join("dir")).expect("mkdir");
    let files = ["small", "large", "linked", "dir/f"].map(|n| outside.join(n));
    for f in &files {
        fs::write(f, b"outside the target, must not change").expect("write");
    }
    for (name, to) in [("a", &files[0]), ("big1", &files[1])] {
        fs::remove_file(restored.join(name)).expect("rm");
        std::os::unix::fs::symlink(to, restored.join(name)).expect("symlink");
    }
    fs::remove_file(restored.join("b")).expect("rm");
    fs::hard_link(&files[2], restored.join("b")).expect("link");
    fs::remove_dir_all(restored.join("sub")).expect("rm");
    std::os::unix::fs::symlink(outside.join("dir"), restored.join("sub")).expect("symlink");
    let s = restore_into(&repo, &s2, &target).expect("restore 3");
    assert!(s.failed.is_empty(), "{:?}", s.failed);
    assert_eq!(
        tree_of(&src),
        tree_of(&restored),
        "symlinks and links replaced"
    );
    for f in &files {
        assert_eq!(
            fs::read(f).expect("read"),
            b"outside the target, must not change",
            "{}",
            f.display()
        );
    }
    assert_eq!(fs::metadata(&files[2]).expect("stat").nlink(), 1);
    assert_eq!(
        fs::read_dir(outside.join("dir")).expect("read_dir").count(),
        1,
        "nothing restored into the directory outside"
    );
}

#[test]
fn sparse_file_of_1_gib_is_restored_sparse() {
    const SIZE: u64 = 1 << 30;
    let env = env();
    let src = env.root.join("src");
    fs::create_dir_all(&src).expect("mkdir");
    let path = src.join("disk.img");
    let f = fs::File::create(&path).expect("create");
    f.set_len(SIZE).expect("set_len");
    let regions: [(u64, usize); 4] = [
        (0, 4096),
        (100 << 20, 1 << 20),
        ((512 << 20) + 12_345, 65_536),
        (SIZE - 4096, 4096),
    ];
    for (i, &(offset, len)) in regions.iter().enumerate() {
        f.write_all_at(&Rng(11 + i as u64).bytes(len), offset)
            .expect("write region");
    }
    drop(f);
    let allocated = fs::metadata(&path).expect("stat").blocks() * 512;
    assert!(
        allocated < 16 << 20,
        "the source is not sparse here ({allocated} bytes)"
    );

    let repo = env.open();
    let t = Instant::now();
    let r = backup_paths(&repo, &[&src]);
    let backup_time = t.elapsed();
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let stored = r
        .snapshot
        .summary
        .as_ref()
        .expect("summary")
        .data_added_stored;
    assert!(
        stored < 8 << 20,
        "1 GiB of mostly zeros took {stored} bytes"
    );

    let target = env.root.join("restore");
    let t = Instant::now();
    let s = restore_into(&repo, &r, &target).expect("restore");
    let restore_time = t.elapsed();
    assert!(s.failed.is_empty(), "{:?}", s.failed);
    let restored = target.join("src/disk.img");
    let m = fs::metadata(&restored).expect("stat");
    assert_eq!(m.len(), SIZE);
    let blocks = m.blocks() * 512;
    assert!(
        blocks < 32 << 20,
        "the restored file takes {blocks} bytes on disk for 1 GiB with ~1.1 MiB of data: not sparse"
    );
    assert_same_file(&path, &restored);
    // And the data regions are where they were.
    let mut rf = fs::File::open(&restored).expect("open");
    for (i, &(offset, len)) in regions.iter().enumerate() {
        let mut buf = vec![0u8; len];
        rf.seek(SeekFrom::Start(offset)).expect("seek");
        rf.read_exact(&mut buf).expect("read region");
        assert_eq!(buf, Rng(11 + i as u64).bytes(len), "region {i}");
    }
    eprintln!(
        "1 GiB sparse file: backup {:.1}s, restore {:.1}s, restored file uses {} KiB on disk",
        backup_time.as_secs_f64(),
        restore_time.as_secs_f64(),
        blocks / 1024
    );
}

// ---------------------------------------------------------------------------------------------
// Faults: permissions

/// A directory nothing can be created in: a read-only tmpfs as root (root ignores permission
/// bits), mode 0555 otherwise. The guard (if any) must outlive its use.
fn unwritable_dir(dir: &Path, test: &str) -> Option<Option<Tmpfs>> {
    if is_root() {
        Tmpfs::mount(dir, "ro,size=1m", test).map(Some)
    } else {
        fs::create_dir_all(dir).expect("mkdir");
        fs::set_permissions(dir, fs::Permissions::from_mode(0o555)).expect("chmod");
        Some(None)
    }
}

#[test]
fn restore_into_an_unwritable_target_fails_naming_the_path() {
    let env = env();
    let src = env.root.join("src");
    fs::create_dir_all(&src).expect("mkdir");
    fs::write(src.join("f"), b"data").expect("write");
    let single = env.root.join("single");
    fs::write(&single, b"one file").expect("write");
    let repo = env.open();
    let r = backup_paths(&repo, &[&src]);
    let r_file = backup_paths(&repo, &[&single]);

    let locked = env.root.join("locked");
    let test = "restore_into_an_unwritable_target_fails_naming_the_path";
    let Some(_guard) = unwritable_dir(&locked, test) else {
        return;
    };
    // A target that has to be created inside it.
    let e = restore_into(&repo, &r, &locked.join("new")).expect_err("cannot create the target");
    let msg = format!("{e:?}");
    assert!(
        msg.contains(&format!(
            "cannot create the restore target {}",
            locked.join("new").display()
        )),
        "{msg}"
    );
    // The target itself: its first directory cannot be made.
    let e = restore_into(&repo, &r, &locked).expect_err("cannot create in the target");
    let msg = format!("{e:?}");
    assert!(
        msg.contains(&format!(
            "cannot create directory {}",
            locked.join("src").display()
        )),
        "{msg}"
    );
    // A snapshot of one file: that file fails, and nothing is counted as restored.
    let s = restore_into(&repo, &r_file, &locked).expect("restore runs");
    assert_eq!(s.files, 0);
    assert_eq!(s.failed.len(), 1, "{:?}", s.failed);
    assert_eq!(s.failed[0].0, locked.join("single"));
    assert!(
        s.failed[0].1.contains("cannot create file"),
        "{}",
        s.failed[0].1
    );
    if !is_root() {
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).expect("chmod back");
    }
}

#[test]
fn unreadable_file_is_left_out_with_a_warning() {
    if is_root() {
        // Root reads whatever the mode says; cli/tests/limits.rs runs this case as `nobody`.
        eprintln!(
            "SKIPPED: unreadable_file_is_left_out_with_a_warning: running as root, which reads \
             files of mode 000 (the CLI test covers it as an unprivileged user)"
        );
        return;
    }
    let env = env();
    let src = env.root.join("src");
    fs::create_dir_all(&src).expect("mkdir");
    fs::write(src.join("ok"), b"fine").expect("write");
    let secret = src.join("secret");
    fs::write(&secret, b"no").expect("write");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).expect("chmod");
    let repo = env.open();
    let r = backup_paths(&repo, &[&src]);
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert_eq!(r.warnings[0].path, secret);
    assert!(
        r.warnings[0]
            .message
            .starts_with("cannot open: Permission denied")
    );
    assert!(r.warnings[0].message.ends_with("left out"));
    let summary = r.snapshot.summary.as_ref().expect("summary");
    assert_eq!((summary.warnings, summary.total_files), (1, 1));
    assert!(find_node(&repo, &r.snapshot.tree, b"src/secret").is_err());
    find_node(&repo, &r.snapshot.tree, b"src/ok").expect("the readable file is there");
}

// ---------------------------------------------------------------------------------------------
// Faults: no space left

/// Random (incompressible) files of `sizes` MiB in a new `src` directory.
fn random_files(env: &Env, sizes: &[usize]) -> PathBuf {
    let src = env.root.join("src");
    fs::create_dir_all(&src).expect("mkdir");
    for (i, &mib) in sizes.iter().enumerate() {
        fs::write(
            src.join(format!("f{i}")),
            Rng(1000 + i as u64).bytes(mib << 20),
        )
        .expect("write");
    }
    src
}

/// A failed backup left no snapshot and nothing a check calls damage.
fn assert_no_snapshot_and_clean(repo: &Repository) {
    assert!(repo.list_snapshots().expect("list").is_empty());
    let report = check(
        repo,
        &CheckOptions {
            read_data: ReadData::All,
        },
        &NoProgress,
    )
    .expect("check runs");
    assert!(report.is_clean(), "{:?}", report.errors);
}

#[test]
fn backup_into_a_full_tmpfs_repository_fails_and_leaves_no_snapshot() {
    let test = "backup_into_a_full_tmpfs_repository_fails_and_leaves_no_snapshot";
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(_mount) = Tmpfs::mount(&dir.path().join("fs"), "size=8m", test) else {
        return;
    };
    let repo_path = dir.path().join("fs/repo").to_string_lossy().into_owned();
    let opts = engine::repository::InitOptions {
        kdf: repo_format::KdfParams::TEST,
        ..Default::default()
    };
    engine::repository::init(&repo_path, PASSWORD, &opts).expect("init");
    let env = env();
    let src = random_files(&env, &[6, 6, 6]);
    let open = OpenOptions {
        cache_dir: Some(env.cache.clone()),
    };
    let repo = Repository::open(&repo_path, PASSWORD, &open).expect("open");
    let e = backup(
        &repo,
        BackupOptions::new(Source::Paths(vec![src])),
        &NoProgress,
    )
    .expect_err("18 MiB of random data cannot fit in 8 MiB");
    let msg = format!("{e:?}");
    assert!(msg.contains("no space left on the device"), "{msg}");
    assert!(
        msg.contains(&repo_path),
        "the error names the repository: {msg}"
    );
    assert_no_snapshot_and_clean(&repo);
}

/// A local backend whose device holds `budget` more bytes: a put past it fails with ENOSPC,
/// as the file system would, after nothing was written.
#[derive(Debug)]
struct FullDisk {
    inner: LocalBackend,
    left: AtomicU64,
}

#[async_trait::async_trait]
impl Intercept for FullDisk {
    fn inner(&self) -> &dyn Backend {
        &self.inner
    }
    async fn put(&self, t: FileType, name: &str, data: bytes::Bytes) -> Result<(), BackendError> {
        let need = data.len() as u64;
        let fits = self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(need)
            })
            .is_ok();
        if !fits {
            let enospc = std::io::Error::from_raw_os_error(28);
            return Err(BackendError::from_io(
                "write",
                t.path(name),
                self.inner.location(),
                enospc,
            ));
        }
        self.inner.put(t, name, data).await
    }
}

#[test]
fn backup_failing_with_enospc_fails_and_leaves_no_snapshot() {
    let env = env();
    let src = random_files(&env, &[6, 6, 6, 6, 6]);
    // Room for the first data pack (16 to 24 MiB), not for all 30 MiB.
    let backend = Arc::new(Intercepted(FullDisk {
        inner: LocalBackend::new(&env.repo_path),
        left: AtomicU64::new(25 << 20),
    }));
    let open = OpenOptions {
        cache_dir: Some(env.cache.clone()),
    };
    let repo = Repository::open_with_backend(backend.clone(), &env.repo_path, PASSWORD, &open)
        .expect("open");
    let e = backup(
        &repo,
        BackupOptions::new(Source::Paths(vec![src])),
        &NoProgress,
    )
    .expect_err("a backup that does not fit fails");
    let msg = format!("{e:?}");
    assert!(msg.contains("no space left on the device"), "{msg}");
    assert!(
        msg.contains("No space left on device (os error 28)"),
        "{msg}"
    );
    assert!(
        backend.left.load(Ordering::SeqCst) < 25 << 20,
        "something was written before the device filled"
    );
    assert_no_snapshot_and_clean(&repo);
    // With space again, the same backup goes through.
    backend.left.store(u64::MAX, Ordering::SeqCst);
    let r = backup_paths(&repo, &[&env.root.join("src")]);
    assert!(r.warnings.is_empty());
}

#[test]
fn restore_into_a_full_target_fails_and_keeps_no_partial_file() {
    let test = "restore_into_a_full_target_fails_and_keeps_no_partial_file";
    let env = env();
    // Two large files (parallel path) and twenty small ones (pack-by-pack path): 20 MiB.
    let src = random_files(&env, &[5, 5]);
    for i in 2..22u64 {
        fs::write(src.join(format!("f{i}")), Rng(i).bytes(500_000)).expect("write");
    }
    let repo = env.open();
    let r = backup_paths(&repo, &[&src]);
    let target = env.root.join("target");
    let Some(_mount) = Tmpfs::mount(&target, "size=8m", test) else {
        return;
    };
    let s = restore_into(&repo, &r, &target).expect("restore runs");
    assert!(!s.failed.is_empty(), "20 MiB cannot fit in 8 MiB");
    for (path, msg) in &s.failed {
        assert!(
            msg.contains("No space left on device"),
            "{}: {msg}",
            path.display()
        );
        assert!(
            !path.exists(),
            "a failed file was left behind: {}",
            path.display()
        );
    }
    assert_eq!(s.files as usize + s.failed.len(), 22);
    // Whatever is there was restored completely.
    let mut present = 0;
    for e in fs::read_dir(target.join("src")).expect("read_dir") {
        let e = e.expect("entry");
        assert_same_file(&src.join(e.file_name()), &e.path());
        present += 1;
    }
    assert_eq!(present, s.files as usize);
}
