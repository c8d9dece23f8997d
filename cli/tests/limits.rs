//! Inputs at the edges and faults, through the binary (issue 8): what a user sees on stdout,
//! stderr and in the exit code. The engine's cases (growth and shrink at a fixed point, long
//! paths, many files, hard links, sparse files, full repositories) are in
//! `engine/tests/limits.rs`.
//!
//! Tests that need permissions to deny something run `cairn` as `nobody` through `setpriv`
//! when they run as root (root reads and writes whatever the mode bits say).

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{PASSWORD, Repo, assert_success, skip_or_fail};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

// ---------------------------------------------------------------------------------------------
// Empty input, changing input, names

#[test]
fn backup_of_empty_stdin_stores_an_empty_file() {
    let repo = Repo::new();
    let b = repo.backup(&["--stdin", "--stdin-name", "empty.dump"], Stdio::null());
    assert_eq!(b.bytes_read, 0);
    assert_eq!(repo.ok(&["ls", "latest"]), "/empty.dump\n");
    assert!(repo.dump("latest", "empty.dump").is_empty());
    let target = repo.path("restore");
    let target_s = target.to_str().expect("UTF-8 temp path");
    repo.ok(&["restore", "latest", "--target", target_s]);
    assert_eq!(
        fs::metadata(target.join("empty.dump"))
            .expect("restored")
            .len(),
        0
    );
}

/// Files in /proc report a size of 0 and then give their content: to cairn, a file that grew
/// while it was read, every time. The warning says so, the snapshot keeps what was read, and
/// the exit code is 3 (done with warnings).
#[test]
fn a_file_that_changes_while_read_warns_on_stderr_and_exits_3() {
    let proc_file = Path::new("/proc/version");
    if fs::metadata(proc_file).map(|m| m.len()).unwrap_or(1) != 0 {
        skip_or_fail(
            "a_file_that_changes_while_read_warns_on_stderr_and_exits_3",
            "/proc/version is missing or reports a size",
        );
        return;
    }
    let repo = Repo::new();
    let out = repo.run(&["backup", "/proc/version"]);
    let err = stderr(&out);
    assert_eq!(code(&out), Some(3), "{err}");
    let content = fs::read(proc_file).expect("read /proc/version");
    let expected = format!(
        "warning: /proc/version: changed while being read (0 bytes, then {}); stored as read",
        content.len()
    );
    assert!(err.contains(&expected), "{err}");
    assert!(err.contains("1 warnings"), "the summary counts it: {err}");
    assert_eq!(repo.dump("latest", "version"), content);
}

#[test]
fn names_that_are_not_utf8_list_dump_and_restore_as_bytes() {
    let repo = Repo::new();
    let src = repo.path("src");
    fs::create_dir_all(&src).expect("mkdir");
    // Two names a lossy conversion would make the same ("caf\u{fffd}").
    fs::write(src.join(OsStr::from_bytes(b"caf\xe9")), b"latin-1").expect("write");
    fs::write(src.join(OsStr::from_bytes(b"caf\xe8")), b"other").expect("write");
    let out = repo.run(&["backup", src.to_str().expect("UTF-8 temp path")]);
    assert_success("cairn backup", &out);

    let listed = repo
        .command(&["ls", "latest"])
        .stdin(Stdio::null())
        .output()
        .expect("run cairn ls");
    assert_success("cairn ls", &listed);
    let lines: Vec<&[u8]> = listed.stdout.split(|&b| b == b'\n').collect();
    assert!(lines.contains(&b"/src/caf\xe9".as_slice()), "{lines:?}");
    assert!(lines.contains(&b"/src/caf\xe8".as_slice()), "{lines:?}");

    // The names `ls` printed are what `dump` and `restore --include` take.
    let dumped = repo
        .command(&["dump", "latest"])
        .arg(OsStr::from_bytes(b"src/caf\xe9"))
        .stdin(Stdio::null())
        .output()
        .expect("run cairn dump");
    assert_success("cairn dump", &dumped);
    assert_eq!(dumped.stdout, b"latin-1");
    let target = repo.path("restore");
    let restored = repo
        .command(&["restore", "latest", "--target"])
        .arg(&target)
        .arg("--include")
        .arg(OsStr::from_bytes(b"src/caf\xe8"))
        .stdin(Stdio::null())
        .output()
        .expect("run cairn restore");
    assert_success("cairn restore --include", &restored);
    let names: Vec<Vec<u8>> = fs::read_dir(target.join("src"))
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().as_bytes().to_vec())
        .collect();
    assert_eq!(names, [b"caf\xe8".to_vec()]);
    assert_eq!(
        fs::read(target.join("src").join(OsStr::from_bytes(b"caf\xe8"))).expect("read"),
        b"other"
    );
}

// ---------------------------------------------------------------------------------------------
// Permissions

/// A repository in a directory everyone may write, with `cairn` run as `nobody` when this
/// process is root (else as ourselves).
struct Unprivileged {
    dir: tempfile::TempDir,
}

impl Unprivileged {
    /// `None` (the reason printed, or a failure under CI) when root cannot switch user.
    fn new(test: &str) -> Option<Unprivileged> {
        if is_root()
            && !Command::new("setpriv")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        {
            skip_or_fail(test, "running as root and setpriv (util-linux) is missing");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("cairn-unpriv-")
            .tempdir()
            .expect("tempdir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
        let u = Unprivileged { dir };
        let out = u.run(&["init", "--kdf-memory-kib", "8", "--kdf-iterations", "1"]);
        assert_success("cairn init (unprivileged)", &out);
        Some(u)
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn command(&self, args: &[&str]) -> Command {
        let bin = env!("CARGO_BIN_EXE_cairn");
        let mut c = if is_root() {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg(bin);
            c
        } else {
            Command::new(bin)
        };
        c.args(args)
            .env("CAIRN_REPOSITORY", self.path("repo"))
            .env("CAIRN_PASSWORD", PASSWORD)
            .env("CAIRN_CACHE_DIR", self.path("cache"))
            .env("HOME", self.dir.path())
            .env_remove("CAIRN_PASSWORD_FILE")
            .env_remove("CAIRN_PASSWORD_COMMAND")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run cairn")
    }
}

#[test]
fn an_unreadable_file_is_left_out_with_a_warning_and_exit_3() {
    let Some(u) = Unprivileged::new("an_unreadable_file_is_left_out_with_a_warning_and_exit_3")
    else {
        return;
    };
    let src = u.path("src");
    fs::create_dir(&src).expect("mkdir");
    fs::set_permissions(&src, fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::write(src.join("readable"), b"fine").expect("write");
    fs::set_permissions(src.join("readable"), fs::Permissions::from_mode(0o644)).expect("chmod");
    let secret = src.join("secret");
    fs::write(&secret, b"private").expect("write");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).expect("chmod");

    let src_s = src.to_str().expect("UTF-8 temp path");
    let out = u.run(&["backup", src_s]);
    let err = stderr(&out);
    assert_eq!(code(&out), Some(3), "{err}");
    assert!(
        err.contains(&format!(
            "warning: {}: cannot open: Permission denied (os error 13); left out",
            secret.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("1 files (1 new"),
        "only the readable file: {err}"
    );
    let ls = u.run(&["ls", "latest"]);
    assert_success("cairn ls", &ls);
    assert_eq!(String::from_utf8_lossy(&ls.stdout), "/src\n/src/readable\n");
}

/// `restore --verify` as an ordinary user reads each file back before giving it its mode: a
/// file the snapshot makes unreadable to its owner (0200, 0000) is verified and kept, not
/// failed and removed. Backed up as root, restored as `nobody`.
#[test]
fn restore_verify_as_a_user_keeps_files_their_owner_cannot_read() {
    let test = "restore_verify_as_a_user_keeps_files_their_owner_cannot_read";
    if !is_root() {
        skip_or_fail(test, "needs root to back up files their owner cannot read");
        return;
    }
    let Some(u) = Unprivileged::new(test) else {
        return;
    };
    let src = u.path("src");
    fs::create_dir(&src).expect("mkdir");
    let files = [
        ("write-only", 0o200, random(1, 5000)),
        ("no-access", 0o000, random(2, 9000)),
        ("large-write-only", 0o200, random(3, 6 << 20)),
        ("readable", 0o644, random(4, 3000)),
    ];
    for (name, mode, data) in &files {
        fs::write(src.join(name), data).expect("write");
        fs::set_permissions(src.join(name), fs::Permissions::from_mode(*mode)).expect("chmod");
    }
    // As root, into the repository `nobody` made (its new files are world-readable).
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["backup", src.to_str().expect("UTF-8 temp path")])
        .env("CAIRN_REPOSITORY", u.path("repo"))
        .env("CAIRN_PASSWORD", PASSWORD)
        .env("CAIRN_CACHE_DIR", u.path("root-cache"))
        .env_remove("CAIRN_PASSWORD_FILE")
        .env_remove("CAIRN_PASSWORD_COMMAND")
        .stdin(Stdio::null())
        .output()
        .expect("run cairn backup as root");
    assert_success("cairn backup (root)", &out);
    let target = u.path("out");
    let out = u.run(&[
        "restore",
        "latest",
        "--verify",
        "--target",
        target.to_str().expect("UTF-8"),
    ]);
    assert_success("cairn restore --verify (nobody)", &out);
    let err = stderr(&out);
    assert!(err.contains("0 failed"), "{err}");
    for (name, mode, data) in &files {
        let path = target.join("src").join(name);
        let meta = fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(meta.permissions().mode() & 0o7777, *mode, "{name}");
        assert_eq!(&fs::read(&path).expect("read as root"), data, "{name}");
    }
}

/// Small files are restored a slice at a time and each stays open from its creation to its
/// metadata: under a low open-files limit the slices shrink to fit instead of files failing
/// with "too many open files".
#[test]
fn restore_of_many_small_files_fits_a_low_open_files_limit() {
    let repo = Repo::new();
    let src = repo.path("src");
    fs::create_dir(&src).expect("mkdir");
    for i in 0..600u64 {
        let path = src.join(format!("f{i:03}"));
        fs::write(&path, random(i, 100 + (i as usize * 37) % 3000)).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
    }
    repo.ok(&["backup", src.to_str().expect("UTF-8 temp path")]);
    let target = repo.path("restore");
    // 100 descriptors: far fewer than the 600 files of the one slice an unbounded restore plans.
    let base = repo.command(&[]);
    let mut sh = Command::new("sh");
    sh.args(["-c", r#"ulimit -n 100 && exec "$CAIRN_BIN" "$@""#, "sh"])
        .args([
            "restore",
            "latest",
            "--target",
            target.to_str().expect("UTF-8"),
        ])
        .env("CAIRN_BIN", base.get_program())
        .stdin(Stdio::null());
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    let out = sh.output().expect("run cairn restore under ulimit -n 100");
    assert_success("cairn restore under ulimit -n 100", &out);
    let restored = target.join("src");
    for i in 0..600u64 {
        let path = restored.join(format!("f{i:03}"));
        let meta = fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            meta.permissions().mode() & 0o7777,
            0o640,
            "{}",
            path.display()
        );
        assert_eq!(
            fs::read(&path).expect("read restored"),
            random(i, 100 + (i as usize * 37) % 3000),
            "{}",
            path.display()
        );
    }
}

#[test]
fn restore_into_a_target_without_permission_fails_naming_the_path() {
    let Some(u) =
        Unprivileged::new("restore_into_a_target_without_permission_fails_naming_the_path")
    else {
        return;
    };
    let src = u.path("src");
    fs::create_dir(&src).expect("mkdir");
    fs::set_permissions(&src, fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::write(src.join("f"), b"data").expect("write");
    fs::set_permissions(src.join("f"), fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = u.run(&["backup", src.to_str().expect("UTF-8 temp path")]);
    assert_success("cairn backup", &out);

    // Owned by us (root, or the user running the tests), not writable by others.
    let locked = u.path("locked");
    fs::create_dir(&locked).expect("mkdir");
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o555)).expect("chmod");

    let inside = locked.join("new");
    let out = u.run(&[
        "restore",
        "latest",
        "--target",
        inside.to_str().expect("UTF-8"),
    ]);
    let err = stderr(&out);
    assert_eq!(code(&out), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "cannot create the restore target {}",
            inside.display()
        )) && err.contains("Permission denied"),
        "{err}"
    );
    let out = u.run(&[
        "restore",
        "latest",
        "--target",
        locked.to_str().expect("UTF-8"),
    ]);
    let err = stderr(&out);
    assert_eq!(code(&out), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "cannot create directory {}",
            locked.join("src").display()
        )) && err.contains("Permission denied"),
        "{err}"
    );
    assert!(!err.contains("restored snapshot"), "no success line: {err}");
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).expect("chmod back");
}

// ---------------------------------------------------------------------------------------------
// No space left

/// Output to a full device is an error (exit 1, the cause named), never a success, and never
/// a crash report, whichever command writes it.
#[test]
fn output_to_a_full_device_fails_with_a_clear_error() {
    if !Path::new("/dev/full").exists() {
        skip_or_fail(
            "output_to_a_full_device_fails_with_a_clear_error",
            "/dev/full is missing",
        );
        return;
    }
    let repo = Repo::new();
    let input = repo.path("input");
    fs::write(&input, vec![7u8; 3 << 20]).expect("write");
    repo.backup(
        &["--stdin", "--stdin-name", "db.dump"],
        Stdio::from(fs::File::open(&input).expect("open")),
    );
    for args in [
        &["dump", "latest", "db.dump"][..],
        &["ls", "latest"],
        &["snapshots"],
        &["snapshots", "--json"],
        &["stats"],
    ] {
        let full = fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("open /dev/full");
        let out = repo
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(full))
            .output()
            .expect("run cairn");
        let err = stderr(&out);
        assert_eq!(code(&out), Some(1), "cairn {args:?}: {err}");
        assert!(
            err.starts_with("error: ")
                && err.contains("cannot write")
                && err.contains("No space left on device (os error 28)"),
            "cairn {args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "cairn {args:?}: {err}");
    }
}

/// A tmpfs of a few MiB, unmounted on drop; `None` when mounting is not permitted, after
/// [`skip_or_fail`] (which fails the test under CI, where it runs as root and may mount).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str, test: &str) -> Option<Tmpfs> {
        fs::create_dir_all(dir).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs(dir.to_path_buf())),
            Ok(o) => {
                let why = String::from_utf8_lossy(&o.stderr);
                skip_or_fail(test, &format!("cannot mount a tmpfs: {}", why.trim()));
                None
            }
            Err(e) => {
                skip_or_fail(test, &format!("cannot run mount: {e}"));
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

fn random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

#[test]
fn a_full_repository_or_restore_target_fails_with_exit_1_and_no_success() {
    let test = "a_full_repository_or_restore_target_fails_with_exit_1_and_no_success";
    let scratch = tempfile::tempdir().expect("tempdir");
    let src = scratch.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    for i in 0..3u64 {
        fs::write(src.join(format!("f{i}")), random(i, 6 << 20)).expect("write");
    }
    let src_s = src.to_str().expect("UTF-8 temp path");

    // The repository on an 8 MiB tmpfs: 18 MiB of random data does not fit.
    let small = scratch.path().join("small");
    let Some(_small) = Tmpfs::mount(&small, "8m", test) else {
        return;
    };
    let cairn = |repo: &Path, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(args)
            .env("CAIRN_REPOSITORY", repo)
            .env("CAIRN_PASSWORD", PASSWORD)
            .env("CAIRN_CACHE_DIR", scratch.path().join("cache"))
            .env_remove("CAIRN_PASSWORD_FILE")
            .env_remove("CAIRN_PASSWORD_COMMAND")
            .stdin(Stdio::null())
            .output()
            .expect("run cairn")
    };
    let full_repo = small.join("repo");
    let out = cairn(
        &full_repo,
        &["init", "--kdf-memory-kib", "8", "--kdf-iterations", "1"],
    );
    assert_success("cairn init", &out);
    let out = cairn(&full_repo, &["backup", src_s]);
    let err = stderr(&out);
    assert_eq!(code(&out), Some(1), "{err}");
    assert!(
        err.contains("error: backup failed")
            && err.contains("no space left on the device")
            && err.contains(&full_repo.display().to_string()),
        "{err}"
    );
    assert!(!err.contains("saved"), "no snapshot claimed: {err}");
    let out = cairn(&full_repo, &["snapshots", "--json"]);
    assert_success("cairn snapshots", &out);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
    let out = cairn(&full_repo, &["check", "--read-data"]);
    assert_success("cairn check after a full disk", &out);

    // A restore onto an 8 MiB tmpfs: some files fail, exit 1, the summary says how many.
    let repo = scratch.path().join("repo");
    assert_success(
        "cairn init",
        &cairn(
            &repo,
            &["init", "--kdf-memory-kib", "8", "--kdf-iterations", "1"],
        ),
    );
    assert_success("cairn backup", &cairn(&repo, &["backup", src_s]));
    let target = scratch.path().join("target");
    let Some(_target) = Tmpfs::mount(&target, "8m", test) else {
        return;
    };
    let out = cairn(
        &repo,
        &[
            "restore",
            "latest",
            "--target",
            target.to_str().expect("UTF-8"),
        ],
    );
    let err = stderr(&out);
    assert_eq!(code(&out), Some(1), "{err}");
    assert!(
        err.contains("No space left on device") && err.contains("failed"),
        "{err}"
    );
    assert!(!err.contains(", 0 failed"), "{err}");
}
