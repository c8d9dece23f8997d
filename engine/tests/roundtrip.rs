//! Engine integration tests: backup → restore round trips on real directories and streams,
//! incremental backups, and repositories broken on purpose.
//!
//! Every repository here uses the cheapest legal KDF parameters, so opening is fast.

use std::collections::BTreeMap;
use std::fs;
use std::io::Cursor;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use engine::ErrorKind;
use engine::archiver::{BackupOptions, Source, backup};
use engine::backend::FileType;
use engine::progress::NoProgress;
use engine::repository::{InitOptions, OpenOptions, Repository};
use engine::restorer::{RestoreOptions, dump_content, find_node, restore};
use repo_format::KdfParams;

mod common;

/// Restores a whole snapshot into `target` with default options.
fn restore_into(
    repo: &Repository,
    snap: &repo_format::Snapshot,
    target: &Path,
) -> engine::Result<engine::restorer::RestoreSummary> {
    let opts = RestoreOptions {
        target: target.to_path_buf(),
        ..Default::default()
    };
    restore(repo, snap, &opts, &NoProgress)
}

use common::{Env, PASSWORD, Rng, env};

/// Writes a random tree: nested directories, empty and large files, odd names, symlinks.
fn make_tree(dir: &Path, rng: &mut Rng, depth: u32) {
    fs::create_dir_all(dir).expect("mkdir");
    let entries = 2 + rng.below(6);
    for i in 0..entries {
        let name: Vec<u8> = match rng.below(6) {
            0 => format!("file-{i}.txt").into_bytes(),
            1 => format!("ünïcödé-{i} ✓").into_bytes(),
            2 => {
                let mut n = format!("raw-{i}-").into_bytes();
                n.extend_from_slice(&[0xff, 0xfe, b'x']);
                n
            }
            3 => format!(" spaces and\ttab {i}").into_bytes(),
            _ => format!("f{i}").into_bytes(),
        };
        let path = dir.join(std::ffi::OsStr::from_bytes(&name));
        match rng.below(10) {
            0 | 1 if depth < 4 => make_tree(&path, rng, depth + 1),
            2 => fs::write(&path, b"").expect("empty file"),
            3 => {
                let target = format!("../target-{}", rng.below(100));
                std::os::unix::fs::symlink(target, &path).expect("symlink");
            }
            4 => {
                let len = 1 + rng.below(3 << 20) as usize;
                fs::write(&path, rng.bytes(len)).expect("large file");
            }
            _ => {
                let len = rng.below(20_000) as usize;
                fs::write(&path, rng.bytes(len)).expect("file");
                let mode = [0o644, 0o600, 0o755, 0o400][rng.below(4) as usize];
                fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
            }
        }
    }
    // Deep nesting, once per tree.
    if depth == 0 {
        let mut deep = dir.join("deep");
        for i in 0..40 {
            deep = deep.join(format!("d{i}"));
        }
        fs::create_dir_all(&deep).expect("deep");
        fs::write(deep.join("leaf"), b"leaf").expect("leaf");
        fs::create_dir_all(dir.join("empty-dir")).expect("empty dir");
    }
}

/// Everything restore must reproduce, per relative path: kind, content, mode, mtime, target.
fn snapshot_of(root: &Path) -> BTreeMap<Vec<u8>, String> {
    let mut out = BTreeMap::new();
    fn rec(base: &Path, dir: &Path, out: &mut BTreeMap<Vec<u8>, String>) {
        for e in fs::read_dir(dir).expect("read_dir") {
            let e = e.expect("entry");
            let p = e.path();
            let rel = p
                .strip_prefix(base)
                .expect("prefix")
                .as_os_str()
                .as_bytes()
                .to_vec();
            let m = fs::symlink_metadata(&p).expect("lstat");
            let desc = if m.file_type().is_symlink() {
                format!(
                    "link {:?} mtime {}",
                    fs::read_link(&p).expect("readlink"),
                    m.mtime()
                )
            } else if m.is_dir() {
                rec(base, &p, out);
                format!(
                    "dir {:o} mtime {}.{}",
                    m.mode() & 0o7777,
                    m.mtime(),
                    m.mtime_nsec()
                )
            } else {
                let data = fs::read(&p).expect("read");
                format!(
                    "file {:o} mtime {}.{} len {} hash {}",
                    m.mode() & 0o7777,
                    m.mtime(),
                    m.mtime_nsec(),
                    data.len(),
                    blake3::hash(&data).to_hex()
                )
            };
            out.insert(rel, desc);
        }
    }
    rec(root, root, &mut out);
    out
}

fn backup_paths(repo: &Repository, paths: &[&Path]) -> engine::archiver::BackupResult {
    let src = Source::Paths(paths.iter().map(|p| p.to_path_buf()).collect());
    backup(repo, BackupOptions::new(src), &NoProgress).expect("backup")
}

#[test]
fn random_trees_round_trip_byte_exact_with_metadata() {
    for seed in [1u64, 7, 42] {
        let env = env();
        let src = env.root.join("src").join("data");
        make_tree(
            &src,
            &mut Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            0,
        );
        let repo = env.open();
        let r = backup_paths(&repo, &[&src]);
        assert!(r.warnings.is_empty(), "warnings: {:?}", r.warnings);
        let target = env.root.join("restore");
        let s = restore(
            &repo,
            &r.snapshot,
            &RestoreOptions {
                target: target.clone(),
                verify: true,
                ..Default::default()
            },
            &NoProgress,
        )
        .expect("restore");
        assert!(s.failed.is_empty(), "{:?}", s.failed);
        assert_eq!(
            s.verified, s.files,
            "every restored file read back and verified"
        );
        assert!(s.files > 0);
        assert_eq!(
            snapshot_of(&src),
            snapshot_of(&target.join("data")),
            "seed {seed}"
        );
    }
}

/// A private file or directory is created private: while contents are written (before
/// metadata is set), it already has no bits for the group and others. Large and small files,
/// and a directory whose file anyone could read.
#[test]
fn private_files_and_directories_are_never_open_to_others_while_restored() {
    use std::sync::Mutex;
    struct Watch {
        files: Vec<std::path::PathBuf>,
        seen: Mutex<Vec<(std::path::PathBuf, u32)>>,
    }
    impl engine::progress::Progress for Watch {
        fn bytes_done(&self, _n: u64) {
            // Called as each piece is about to be written, before the file's metadata is set.
            for f in &self.files {
                if let Ok(m) = fs::symlink_metadata(f) {
                    self.seen
                        .lock()
                        .expect("lock")
                        .push((f.clone(), m.mode() & 0o7777));
                }
            }
        }
    }
    // The umask must let group or other bits through, or files are private whatever the
    // restore does (and the test shows nothing).
    let umask = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Umask:"))?.to_string();
            u32::from_str_radix(line["Umask:".len()..].trim(), 8).ok()
        })
        .expect("Umask: in /proc/self/status");
    assert_ne!(
        umask & 0o077,
        0o077,
        "run the tests under a umask such as 022"
    );
    let env = env();
    let src = env.root.join("data");
    fs::create_dir_all(&src).expect("mkdir");
    let mut rng = Rng(0x5ec2e7);
    for (name, len) in [("small.key", 3000usize), ("large.key", 12 << 20)] {
        fs::write(src.join(name), rng.bytes(len)).expect("write");
        fs::set_permissions(src.join(name), fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    // A private directory holding a file anyone may read: others must not reach it either.
    fs::create_dir(src.join("private")).expect("mkdir");
    fs::write(src.join("private/inside"), rng.bytes(2000)).expect("write");
    fs::set_permissions(src.join("private"), fs::Permissions::from_mode(0o700)).expect("chmod");
    let repo = env.open();
    let r = backup_paths(&repo, &[&src]);
    let target = env.root.join("restore");
    let restored = target.join("data");
    let watch = Watch {
        files: vec![
            restored.join("small.key"),
            restored.join("large.key"),
            restored.join("private"),
        ],
        seen: Mutex::new(Vec::new()),
    };
    let s = restore(
        &repo,
        &r.snapshot,
        &RestoreOptions {
            target: target.clone(),
            threads: Some(1),
            ..Default::default()
        },
        &watch,
    )
    .expect("restore");
    assert!(s.failed.is_empty(), "{:?}", s.failed);
    let seen = watch.seen.into_inner().expect("lock");
    for name in ["small.key", "large.key", "private"] {
        assert!(
            seen.iter().any(|(p, _)| p.ends_with(name)),
            "{name} was watched while written: {seen:?}"
        );
    }
    for (path, mode) in &seen {
        assert_eq!(
            mode & 0o077,
            0,
            "{} had mode {mode:o} while written",
            path.display()
        );
    }
    for (name, want) in [
        ("small.key", 0o600),
        ("large.key", 0o600),
        ("private", 0o700),
    ] {
        let mode = fs::metadata(restored.join(name)).expect("stat").mode() & 0o7777;
        assert_eq!(mode, want, "{name}");
    }
}

#[test]
fn small_files_ending_in_zeros_keep_their_length_and_their_holes() {
    // 4/16/64 KiB chunks: files of several blobs, some of them all zeros.
    let env = common::env_small_chunks();
    let src = env.root.join("data");
    fs::create_dir_all(&src).expect("mkdir");
    let mut rng = Rng(0x2e70);
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("tail-hole", [rng.bytes(10_000), vec![0; 20_000]].concat()),
        ("all-zero", vec![0; 300_000]),
        (
            "zero-blobs-at-end",
            [rng.bytes(100_000), vec![0; 400_000]].concat(),
        ),
        (
            "zeros-inside",
            [rng.bytes(30_000), vec![0; 200_000], rng.bytes(40_000)].concat(),
        ),
        ("empty", Vec::new()),
        ("one-byte", vec![7]),
        ("one-zero", vec![0]),
    ];
    for (name, bytes) in &files {
        fs::write(src.join(name), bytes).expect("write");
    }
    let repo = env.open();
    let mut opts = BackupOptions::new(Source::Paths(vec![src.clone()]));
    opts.chunker_profile = Some("stream".into());
    let r = backup(&repo, opts, &NoProgress).expect("backup");
    let target = env.root.join("restore");
    let s = restore_into(&repo, &r.snapshot, &target).expect("restore");
    assert!(s.failed.is_empty(), "{:?}", s.failed);
    for (name, bytes) in &files {
        let path = target.join("data").join(name);
        let back = fs::read(&path).expect("read back");
        assert_eq!(back.len(), bytes.len(), "{name}: length");
        assert!(back == *bytes, "{name}: content");
    }
    // The zeros at the end stay holes.
    for name in ["all-zero", "zero-blobs-at-end"] {
        let m = fs::metadata(target.join("data").join(name)).expect("stat");
        assert!(
            m.blocks() * 512 < m.len() / 2,
            "{name}: {} bytes allocated for {}",
            m.blocks() * 512,
            m.len()
        );
    }
}

#[test]
fn second_backup_of_unchanged_tree_adds_almost_nothing_and_reuses_files() {
    let env = env();
    let src = env.root.join("data");
    make_tree(&src, &mut Rng(99), 0);
    let repo = env.open();
    let first = backup_paths(&repo, &[&src]);
    let s1 = first.snapshot.summary.expect("summary");
    assert!(s1.data_added_raw > 0);
    let second = backup_paths(&repo, &[&src]);
    let s2 = second.snapshot.summary.expect("summary");
    assert_eq!(second.snapshot.parent, Some(first.id));
    assert_eq!(s2.blobs_added, 0, "nothing changed, nothing to add");
    assert_eq!(s2.bytes_read, 0, "unchanged files are not read again");
    assert_eq!(s2.files_unmodified, s1.total_files);
    assert_eq!(
        second.snapshot.tree, first.snapshot.tree,
        "same tree id for an unchanged tree"
    );

    // --force re-reads everything but still stores nothing new.
    let mut opts = BackupOptions::new(Source::Paths(vec![src.clone()]));
    opts.force = true;
    let forced = backup(&repo, opts, &NoProgress).expect("forced backup");
    let sf = forced.snapshot.summary.expect("summary");
    assert_eq!(sf.blobs_added, 0);
    assert_eq!(sf.bytes_read, s1.bytes_read);
}

#[test]
fn changed_file_is_reread_and_only_its_new_chunks_are_added() {
    let env = env();
    let src = env.root.join("data");
    fs::create_dir_all(&src).expect("mkdir");
    let mut rng = Rng(5);
    // 24 MiB at the `file` profile (1 MiB average, 8 MiB maximum chunks): a changed byte
    // re-stores the chunk around it and at most its neighbour, never half the file.
    fs::write(src.join("big"), rng.bytes(24 << 20)).expect("write");
    fs::write(src.join("small"), b"hello").expect("write");
    let repo = env.open();
    backup_paths(&repo, &[&src]);
    let mut big = fs::read(src.join("big")).expect("read");
    big[12 << 20] ^= 1;
    fs::write(src.join("big"), &big).expect("write");
    let r = backup_paths(&repo, &[&src]);
    let s = r.snapshot.summary.expect("summary");
    assert_eq!(s.files_changed, 1);
    assert_eq!(s.files_unmodified, 1);
    assert!(
        s.data_added_raw < (12 << 20),
        "one changed byte re-stores about one chunk, not the file: {}",
        s.data_added_raw
    );
    let out = env.root.join("out");
    restore(
        &repo,
        &r.snapshot,
        &RestoreOptions {
            target: out.clone(),
            ..Default::default()
        },
        &NoProgress,
    )
    .expect("restore");
    assert_eq!(fs::read(out.join("data/big")).expect("read"), big);
}

#[test]
fn stream_round_trip_and_dedup_of_second_stream() {
    let env = env();
    let repo = env.open();
    let mut rng = Rng(11);
    // Dump-like: text lines with numbers, ~5 MiB.
    let mut dump = Vec::new();
    while dump.len() < (5 << 20) {
        dump.extend_from_slice(
            format!(
                "INSERT INTO runs VALUES ({}, 'job-{}', '{{\"ok\": true}}');\n",
                rng.next(),
                rng.below(1000)
            )
            .as_bytes(),
        );
    }
    let src = Source::Stream {
        name: "db.sql".into(),
        reader: Box::new(Cursor::new(dump.clone())),
    };
    let first = backup(&repo, BackupOptions::new(src), &NoProgress).expect("stream backup");
    let s1 = first.snapshot.summary.expect("summary");
    assert_eq!(s1.bytes_read, dump.len() as u64);
    assert!(s1.data_added_stored < s1.data_added_raw, "text compresses");

    // Same stream again: nothing new.
    let src = Source::Stream {
        name: "db.sql".into(),
        reader: Box::new(Cursor::new(dump.clone())),
    };
    let second = backup(&repo, BackupOptions::new(src), &NoProgress).expect("second stream backup");
    // Only the root tree is new (the stream's node carries the backup time as its mtime).
    assert!(second.snapshot.summary.expect("summary").blobs_added <= 1);

    // A few scattered edits: a small fraction is stored again.
    let mut day2 = dump.clone();
    for k in 1..=5 {
        let at = k * dump.len() / 6;
        day2[at] = b'#';
    }
    let src = Source::Stream {
        name: "db.sql".into(),
        reader: Box::new(Cursor::new(day2.clone())),
    };
    let third = backup(&repo, BackupOptions::new(src), &NoProgress).expect("day-2 backup");
    let added = third.snapshot.summary.expect("summary").data_added_raw;
    // Each edit re-stores the chunk around it, and the next when the cut moves: at most two
    // chunks of the profile's `max` each (64 KiB on average, but text cuts larger ones; with
    // dump.len() / 5 as the bound, a fresh-clone CI run failed once: 1.07 MB of 5.2 re-stored).
    let max = repo
        .config()
        .profiles
        .iter()
        .find(|p| p.name == "stream")
        .expect("stream profile")
        .params
        .max as u64;
    assert!(
        added <= 5 * 2 * max && added < (dump.len() / 2) as u64,
        "5 edits re-store {added} bytes of {}",
        dump.len()
    );

    let node = find_node(&repo, &third.snapshot.tree, b"db.sql").expect("node");
    let mut out = Vec::new();
    dump_content(&repo, &node, &mut out, &NoProgress).expect("dump");
    assert_eq!(out, day2);
}

#[test]
fn large_stream_uses_content_lists_and_round_trips() {
    let env = common::env_small_chunks();
    let repo = env.open();
    // > 1024 chunks at 16 KiB: indirect content.
    let data = Rng(3).bytes(24 << 20);
    let src = Source::Stream {
        name: "big.bin".into(),
        reader: Box::new(Cursor::new(data.clone())),
    };
    let r = backup(&repo, BackupOptions::new(src), &NoProgress).expect("backup");
    let node = find_node(&repo, &r.snapshot.tree, b"big.bin").expect("node");
    match &node.kind {
        repo_format::NodeKind::File {
            content: repo_format::Content::Indirect(lists),
        } => assert!(!lists.is_empty()),
        other => panic!("expected indirect content, got {other:?}"),
    }
    let mut out = Vec::new();
    dump_content(&repo, &node, &mut out, &NoProgress).expect("dump");
    assert!(out == data, "dumped bytes differ");
    let target = env.root.join("r");
    restore_into(&repo, &r.snapshot, &target).expect("restore");
    assert!(fs::read(target.join("big.bin")).expect("read") == data);
}

#[test]
fn empty_stream_round_trips() {
    let env = env();
    let repo = env.open();
    let src = Source::Stream {
        name: "empty".into(),
        reader: Box::new(Cursor::new(Vec::new())),
    };
    let r = backup(&repo, BackupOptions::new(src), &NoProgress).expect("backup");
    let node = find_node(&repo, &r.snapshot.tree, b"empty").expect("node");
    let mut out = Vec::new();
    dump_content(&repo, &node, &mut out, &NoProgress).expect("dump");
    assert!(out.is_empty());
}

#[test]
fn failing_command_writes_no_snapshot() {
    let env = env();
    let repo = env.open();
    let src = Source::Command {
        name: "dump.sql".into(),
        argv: vec![
            "sh".into(),
            "-c".into(),
            "echo partial output; exit 3".into(),
        ],
        env: vec![],
    };
    let err = backup(&repo, BackupOptions::new(src), &NoProgress).expect_err("must fail");
    assert_eq!(err.kind(), ErrorKind::Command);
    assert!(err.to_string().contains("no snapshot was written"), "{err}");
    assert!(repo.list_snapshots().expect("list").is_empty());

    let ok = Source::Command {
        name: "dump.sql".into(),
        argv: vec!["sh".into(), "-c".into(), "echo hello".into()],
        env: vec![],
    };
    let r = backup(&repo, BackupOptions::new(ok), &NoProgress).expect("command backup");
    let node = find_node(&repo, &r.snapshot.tree, b"dump.sql").expect("node");
    let mut out = Vec::new();
    dump_content(&repo, &node, &mut out, &NoProgress).expect("dump");
    assert_eq!(out, b"hello\n");
}

#[test]
fn include_filter_restores_only_named_paths() {
    let env = env();
    let src = env.root.join("data");
    fs::create_dir_all(src.join("a/b")).expect("mkdir");
    fs::create_dir_all(src.join("c")).expect("mkdir");
    fs::write(src.join("a/b/keep.txt"), b"keep").expect("write");
    fs::write(src.join("a/drop.txt"), b"drop").expect("write");
    fs::write(src.join("c/drop.txt"), b"drop").expect("write");
    let repo = env.open();
    let r = backup_paths(&repo, &[&src]);
    let target = env.root.join("out");
    let opts = RestoreOptions {
        target: target.clone(),
        includes: vec!["data/a/b".into()],
        threads: None,
        verify: true,
    };
    restore(&repo, &r.snapshot, &opts, &NoProgress).expect("restore");
    assert_eq!(
        fs::read(target.join("data/a/b/keep.txt")).expect("kept"),
        b"keep"
    );
    assert!(!target.join("data/a/drop.txt").exists());
    assert!(!target.join("data/c").exists());
}

#[test]
fn unreadable_file_is_a_warning_not_a_failure() {
    let env = env();
    let src = env.root.join("data");
    fs::create_dir_all(&src).expect("mkdir");
    fs::write(src.join("ok"), b"fine").expect("write");
    // A dangling path given on the command line is reported and skipped.
    let missing = env.root.join("no-such-file");
    let repo = env.open();
    let r = backup(
        &repo,
        BackupOptions::new(Source::Paths(vec![src.clone(), missing])),
        &NoProgress,
    )
    .expect("backup");
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert_eq!(r.snapshot.summary.expect("summary").warnings, 1);
}

/// Opens `env`'s repository with a wrong password; the error it must give.
fn open_with_wrong_password(env: &Env) -> engine::Error {
    let err = Repository::open(
        &env.repo_path,
        b"wrong",
        &OpenOptions {
            cache_dir: Some(env.cache.clone()),
        },
    )
    .expect_err("must fail");
    assert_eq!(err.kind(), ErrorKind::WrongPassword);
    err
}

#[test]
fn wrong_password_is_a_clear_error() {
    let env = env();
    let err = open_with_wrong_password(&env);
    assert!(err.to_string().contains("password"), "{err}");
}

/// A wrong password, while another handle holds the shared cache, leaves no private cache
/// behind: the cache opens only once the key is found (opening it during the key derivation
/// would hold a cache for a repository id nobody has authenticated yet).
#[test]
fn wrong_password_leaves_no_private_cache() {
    let env = env();
    let holder = env.open();
    assert!(!holder.uses_private_cache());
    let cache_dir = holder.cache_dir().to_path_buf();
    let private_caches = || {
        fs::read_dir(&cache_dir)
            .expect("cache dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("index-private"))
            .count()
    };
    for _ in 0..3 {
        open_with_wrong_password(&env);
        assert_eq!(private_caches(), 0, "a failed open left its private cache");
    }
    // The right password still opens, through a private cache while the holder has the shared one.
    let second = env.open();
    assert!(second.uses_private_cache());
    assert_eq!(private_caches(), 1);
    drop(second);
    assert_eq!(private_caches(), 0);
}

/// A wrong password opens no cache at all: the repository id comes from the config, which is
/// not authenticated until a key opens it, so a cache opened for it could hold the lock of
/// another repository's cache, or create one for an id nobody has proved (an experiment that
/// opened the cache during Argon2 did both, and was withdrawn).
#[test]
fn wrong_password_creates_no_cache() {
    let env = env();
    let _ = fs::remove_dir_all(&env.cache);
    for _ in 0..2 {
        open_with_wrong_password(&env);
        let made: Vec<_> = fs::read_dir(&env.cache)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            made.is_empty(),
            "a failed open made {made:?} in the cache directory"
        );
    }
    drop(env.open());
    assert!(env.cache.exists(), "the right password opens a cache");
}

#[test]
fn missing_or_truncated_config_and_keys_are_clear_errors() {
    let env = env();
    let storage = env.storage();
    let opts = OpenOptions {
        cache_dir: Some(env.cache.clone()),
    };

    let config = storage.read(FileType::Config, "config");
    storage.replace(FileType::Config, "config", &config[..config.len() / 2]);
    let err = Repository::open(&env.repo_path, PASSWORD, &opts).expect_err("truncated config");
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err:?}");
    storage.delete(FileType::Config, "config");
    let err = Repository::open(&env.repo_path, PASSWORD, &opts).expect_err("missing config");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err:?}");
    assert!(err.to_string().contains("cairn init"), "{err}");
    storage.put(FileType::Config, "config", config);

    let key = storage
        .names(FileType::Key)
        .into_iter()
        .next()
        .expect("one key");
    let key_bytes = storage.read(FileType::Key, &key);
    storage.replace(FileType::Key, &key, &key_bytes[..10]);
    let err = Repository::open(&env.repo_path, PASSWORD, &opts).expect_err("truncated key");
    assert!(err.to_string().contains("could not be read"), "{err}");
    storage.delete(FileType::Key, &key);
    let err = Repository::open(&env.repo_path, PASSWORD, &opts).expect_err("no key");
    assert!(err.to_string().contains("no key files"), "{err}");
}

#[test]
fn flipped_bit_in_a_pack_fails_restore_of_that_file_only() {
    let env = env();
    let src = env.root.join("data");
    fs::create_dir_all(&src).expect("mkdir");
    let mut rng = Rng(77);
    fs::write(src.join("victim"), rng.bytes(300_000)).expect("write");
    let repo = env.open();
    let r = backup_paths(&repo, &[&src]);
    drop(repo);
    // Write a second file in a later backup: its blobs live in another pack.
    let repo = env.open();
    fs::write(src.join("bystander"), rng.bytes(200_000)).expect("write");
    let r2 = backup_paths(&repo, &[&src]);
    // Corrupt the first data pack (the victim's).
    let node = find_node(&repo, &r.snapshot.tree, b"data/victim").expect("node");
    let repo_format::NodeKind::File {
        content: repo_format::Content::Direct(ids),
    } = &node.kind
    else {
        panic!("direct")
    };
    let loc = repo.lookup_blob(&ids[0]).expect("lookup").expect("indexed");
    env.storage().flip_bit(
        FileType::Pack,
        &loc.pack.0.to_hex(),
        loc.entry.offset as usize + 40,
        0,
    );

    let target = env.root.join("out");
    let s = restore_into(&repo, &r2.snapshot, &target).expect("restore runs");
    assert_eq!(s.failed.len(), 1, "{:?}", s.failed);
    assert!(s.failed[0].0.ends_with("data/victim"));
    assert!(s.failed[0].1.contains("damaged"), "{}", s.failed[0].1);
    assert!(
        !target.join("data/victim").exists(),
        "no silently wrong file left behind"
    );
    assert_eq!(
        fs::read(target.join("data/bystander")).expect("bystander"),
        fs::read(src.join("bystander")).expect("src")
    );
}

#[test]
fn deleting_the_cache_costs_only_time() {
    let env = env();
    let src = env.root.join("data");
    make_tree(&src, &mut Rng(8), 0);
    let repo = env.open();
    let r = backup_paths(&repo, &[&src]);
    drop(repo);
    fs::remove_dir_all(&env.cache).expect("rm cache");
    let repo = env.open();
    let target = env.root.join("out");
    restore_into(&repo, &r.snapshot, &target).expect("restore");
    assert_eq!(snapshot_of(&src), snapshot_of(&target.join("data")));
    // And dedup still works from the rebuilt cache.
    let again = backup_paths(&repo, &[&src]);
    assert_eq!(again.snapshot.summary.expect("summary").blobs_added, 0);
}

#[test]
fn memory_backend_round_trip() {
    let backend = engine::backend::open_backend("memory://").expect("memory backend");
    let dir = tempfile::tempdir().expect("tempdir");
    // init through the same backend instance: memory:// is per-instance.
    let repo_loc = "memory://";
    let opts = OpenOptions {
        cache_dir: Some(dir.path().join("cache")),
    };
    engine::repository::init_with_backend(
        backend.clone(),
        repo_loc,
        PASSWORD,
        &InitOptions {
            kdf: KdfParams::TEST,
            ..InitOptions::default()
        },
    )
    .expect("init");
    let repo = Repository::open_with_backend(backend, repo_loc, PASSWORD, &opts).expect("open");
    let data = Rng(21).bytes(1 << 20);
    let src = Source::Stream {
        name: "x".into(),
        reader: Box::new(Cursor::new(data.clone())),
    };
    let r = backup(&repo, BackupOptions::new(src), &NoProgress).expect("backup");
    let node = find_node(&repo, &r.snapshot.tree, b"x").expect("node");
    let mut out = Vec::new();
    dump_content(&repo, &node, &mut out, &NoProgress).expect("dump");
    assert!(out == data);
}

#[test]
fn two_handles_on_one_cache_both_work() {
    let env = env();
    let first = env.open();
    let second = env.open();
    assert!(!first.uses_private_cache());
    assert!(
        second.uses_private_cache(),
        "the shared cache is locked by the first handle"
    );
    let data = Rng(4).bytes(100_000);
    let src = Source::Stream {
        name: "s".into(),
        reader: Box::new(Cursor::new(data.clone())),
    };
    let r = backup(&second, BackupOptions::new(src), &NoProgress)
        .expect("backup through the second handle");
    first.sync_index().expect("sync");
    let node = find_node(&first, &r.snapshot.tree, b"s").expect("node");
    let mut out = Vec::new();
    dump_content(&first, &node, &mut out, &NoProgress).expect("dump");
    assert!(out == data);
    let private = second.cache_dir().to_path_buf();
    drop(second);
    let leftovers: Vec<_> = fs::read_dir(&private)
        .expect("cache dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("index-private"))
        .collect();
    assert!(leftovers.is_empty(), "private cache removed on drop");
}

/// A file whose bytes equal an encoded empty tree is the same blob as every empty directory's
/// tree (dedup is by id): both must restore, and `check` must not call it damage.
#[test]
fn file_equal_to_an_encoded_tree_dedups_and_restores() {
    let env = env();
    let src = env.root.join("data");
    fs::create_dir_all(src.join("empty")).expect("mkdir");
    let empty_tree = repo_format::Tree::default().encode().expect("encode");
    fs::write(src.join("looks-like-a-tree"), &empty_tree).expect("write");
    let repo = env.open();
    let r = backup_paths(&repo, &[&src]);
    let r2 = backup_paths(&repo, &[&src]);
    let target = env.root.join("out");
    let s = restore_into(&repo, &r2.snapshot, &target).expect("restore");
    assert!(s.failed.is_empty(), "{:?}", s.failed);
    assert_eq!(
        fs::read(target.join("data/looks-like-a-tree")).expect("file"),
        empty_tree
    );
    assert!(target.join("data/empty").is_dir());
    let opts = engine::checker::CheckOptions {
        read_data: engine::checker::ReadData::All,
    };
    let report = engine::checker::check(&repo, &opts, &NoProgress).expect("check");
    assert!(report.is_clean(), "{:?}", report.errors);
    let _ = r;
}

/// A parent snapshot whose root tree is damaged only costs re-reading: the backup succeeds with
/// a warning instead of failing every night, and stores the tree again instead of
/// deduplicating against the damaged copy.
#[test]
fn damaged_parent_tree_means_a_full_read_not_a_failed_backup() {
    let env = env();
    let src = env.root.join("data");
    fs::create_dir_all(&src).expect("mkdir");
    fs::write(src.join("f"), Rng(9).bytes(50_000)).expect("write");
    let repo = env.open();
    let first = backup_paths(&repo, &[&src]);
    let loc = repo
        .lookup_blob(&first.snapshot.tree)
        .expect("lookup")
        .expect("indexed");
    drop(repo);
    // Flip a bit inside the root tree blob: it stays indexed, but fails authentication.
    env.storage().flip_bit(
        FileType::Pack,
        &loc.pack.0.to_hex(),
        loc.entry.offset as usize + 20,
        4,
    );
    let repo = env.open();
    let second = backup(
        &repo,
        BackupOptions::new(Source::Paths(vec![src.clone()])),
        &NoProgress,
    )
    .expect("the backup succeeds without its parent's trees");
    assert!(
        second
            .warnings
            .iter()
            .any(|w| w.message.contains("parent snapshot")),
        "{:?}",
        second.warnings
    );
    let summary = second.snapshot.summary.expect("summary");
    assert_eq!(
        summary.files_unmodified, 0,
        "nothing reused from an unreadable parent"
    );
    let target = env.root.join("out");
    restore_into(&repo, &second.snapshot, &target).expect("restore");
    assert_eq!(
        fs::read(target.join("data/f")).expect("f"),
        fs::read(src.join("f")).expect("src")
    );
}

/// A storage that ignores create-only writes (some S3 clones do): `init` notices, so the user
/// can be warned, and says nothing on storage that honours them.
#[test]
fn init_probes_create_only_writes() {
    use common::intercept::{Intercept, Intercepted};
    use engine::backend::{Backend, BackendError, FileType};

    #[derive(Debug)]
    struct Overwriting(std::sync::Arc<dyn Backend>);

    #[async_trait::async_trait]
    impl Intercept for Overwriting {
        fn inner(&self) -> &dyn Backend {
            &*self.0
        }
        async fn put(
            &self,
            t: FileType,
            name: &str,
            data: bytes::Bytes,
        ) -> Result<(), BackendError> {
            self.0.delete(t, name).await?;
            self.0.put(t, name, data).await
        }
    }

    let opts = InitOptions {
        kdf: KdfParams::TEST,
        ..InitOptions::default()
    };
    let honest = engine::backend::open_backend("memory://").expect("memory");
    let r =
        engine::repository::init_with_backend(honest, "memory://", PASSWORD, &opts).expect("init");
    assert!(r.create_only);
    let sloppy = std::sync::Arc::new(Intercepted(Overwriting(
        engine::backend::open_backend("memory://").expect("memory"),
    )));
    let r =
        engine::repository::init_with_backend(sloppy, "memory://", PASSWORD, &opts).expect("init");
    assert!(!r.create_only, "the overwrite was noticed");
}
