//! `cairn copy --to`: what a user types to copy snapshots into a second repository with its own
//! password, and what they get back.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const SRC_PASSWORD: &str = "source password";
const DST_PASSWORD: &str = "destination password";

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    /// A source repository `src` and a destination `dst`, with different passwords.
    fn new() -> Env {
        let env = Env {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        for (repo, password) in [("src", SRC_PASSWORD), ("dst", DST_PASSWORD)] {
            let out = env
                .command(&["init", "--kdf-memory-kib", "8", "--kdf-iterations", "1"])
                .env("CAIRN_REPOSITORY", env.path(repo))
                .env("CAIRN_PASSWORD", password)
                .stdin(Stdio::null())
                .output()
                .expect("run init");
            assert!(out.status.success(), "init {repo}: {}", stderr(&out));
        }
        env
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn dst(&self) -> String {
        self.path("dst").to_string_lossy().into_owned()
    }

    /// cairn on the source repository, nothing else set.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.args(args)
            .env("CAIRN_REPOSITORY", self.path("src"))
            .env("CAIRN_PASSWORD", SRC_PASSWORD)
            .env("CAIRN_CACHE_DIR", self.path("cache"))
            .env_remove("CAIRN_PASSWORD_FILE")
            .env_remove("CAIRN_PASSWORD_COMMAND")
            .env_remove("CAIRN_TO_PASSWORD")
            .env_remove("CAIRN_TO_PASSWORD_FILE")
            .env_remove("CAIRN_TO_PASSWORD_COMMAND")
            .env_remove("CAIRN_TO_CACHE_DIR");
        c
    }

    fn run(&self, c: &mut Command) -> Output {
        c.stdin(Stdio::null()).output().expect("run cairn")
    }

    /// `cairn copy --to dst ARGS` with the destination's password in CAIRN_TO_PASSWORD.
    fn copy(&self, args: &[&str]) -> Output {
        let dst = self.dst();
        let mut all = vec!["copy", "--to", dst.as_str()];
        all.extend_from_slice(args);
        self.run(self.command(&all).env("CAIRN_TO_PASSWORD", DST_PASSWORD))
    }

    /// cairn on the destination repository.
    fn on_dst(&self, args: &[&str]) -> Output {
        self.run(
            self.command(args)
                .env("CAIRN_REPOSITORY", self.path("dst"))
                .env("CAIRN_PASSWORD", DST_PASSWORD),
        )
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok_json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "failed: {}", stderr(o));
    serde_json::from_slice(&o.stdout).expect("JSON on stdout")
}

fn write_tree(root: &Path) {
    fs::create_dir_all(root.join("sub")).expect("mkdir");
    fs::write(root.join("a.txt"), b"alpha\n").expect("write");
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(root.join("sub/big.bin"), big).expect("write");
    std::os::unix::fs::symlink("a.txt", root.join("link")).expect("symlink");
}

#[test]
fn copy_to_a_second_repository_then_nothing_more_and_restore_from_it() {
    let env = Env::new();
    let data = env.path("data");
    write_tree(&data);
    let data_s = data.to_str().expect("utf-8 path");
    let backup = |args: &[&str]| ok_json(&env.run(&mut env.command(args)));
    let tree = backup(&[
        "backup", "--tag", "nightly", "--host", "box1", "--json", data_s,
    ]);
    let mut child = env
        .command(&["backup", "--stdin", "--stdin-name", "db.dump", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stream: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&stream)
        .expect("write stdin");
    let dump = ok_json(&child.wait_with_output().expect("wait"));

    let first = ok_json(&env.copy(&["--json"]));
    assert_eq!(first["snapshots_copied"], 2, "{first}");
    assert_eq!(first["snapshots_present"], 0);
    assert_eq!(first["copied"][0]["source"], tree["snapshot_id"]);
    assert_eq!(first["copied"][1]["source"], dump["snapshot_id"]);
    assert!(first["data_added_raw"].as_u64().expect("bytes") > 0);

    // The second run copies nothing, and says so on stderr.
    let again = env.copy(&[]);
    assert!(again.status.success(), "{}", stderr(&again));
    let text = stderr(&again);
    assert!(text.contains("0 snapshots copied to"), "{text}");
    assert!(text.contains("2 already there"), "{text}");

    // The destination lists them with their origin, host and tags.
    let snaps = ok_json(&env.on_dst(&["snapshots", "--json"]));
    assert_eq!(snaps.as_array().expect("array").len(), 2);
    assert_eq!(snaps[0]["copied_from"], tree["snapshot_id"]);
    assert_eq!(snaps[0]["host"], "box1");
    assert_eq!(snaps[0]["tags"][0], "nightly");
    assert_eq!(snaps[1]["copied_from"], dump["snapshot_id"]);

    // Restore and dump from the destination, with its own password.
    let target = env.path("restored");
    let target_s = target.to_str().expect("utf-8");
    let id = snaps[0]["id"].as_str().expect("id");
    let out = env.on_dst(&["restore", id, "--target", target_s]);
    assert!(out.status.success(), "{}", stderr(&out));
    for f in ["a.txt", "sub/big.bin"] {
        assert_eq!(
            fs::read(target.join("data").join(f)).expect("restored"),
            fs::read(data.join(f)).expect("original"),
            "{f}"
        );
    }
    let id = snaps[1]["id"].as_str().expect("id");
    let out = env.on_dst(&["dump", id, "db.dump"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout == stream, "dumped stream differs");
    let out = env.on_dst(&["check", "--read-data"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn passwords_filters_and_mistakes() {
    let env = Env::new();
    let data = env.path("data");
    write_tree(&data);
    let data_s = data.to_str().expect("utf-8 path");
    let out = env.run(&mut env.command(&["backup", "--host", "box1", "--tag", "t", data_s]));
    assert!(out.status.success(), "{}", stderr(&out));

    // No destination password: the message names the destination's own sources, and the
    // source's CAIRN_PASSWORD is not used for it.
    let dst = env.dst();
    let out = env.run(&mut env.command(&["copy", "--to", &dst]));
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(
        e.contains("CAIRN_TO_PASSWORD") && e.contains("--to-password-file"),
        "{e}"
    );
    // A wrong one.
    let out = env.run(
        env.command(&["copy", "--to", &dst])
            .env("CAIRN_TO_PASSWORD", "wrong"),
    );
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(e.contains("cannot open the destination repository"), "{e}");

    // Filters: another host or tag copies nothing.
    let none = ok_json(&env.copy(&["--host", "other", "--json"]));
    assert_eq!(none["snapshots_copied"], 0);
    let none = ok_json(&env.copy(&["--tag", "other", "--json"]));
    assert_eq!(none["snapshots_copied"], 0);
    let out = env.copy(&["latest", "--tag", "other"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    // --to-password-file, and a snapshot named by `latest`.
    let pw = env.path("dst-password");
    fs::write(&pw, format!("{DST_PASSWORD}\n")).expect("write");
    let pw_s = pw.to_str().expect("utf-8");
    let out = env.run(&mut env.command(&[
        "copy",
        "--to",
        &dst,
        "--to-password-file",
        pw_s,
        "--json",
        "latest",
    ]));
    assert_eq!(ok_json(&out)["snapshots_copied"], 1);

    // Into itself: a clear usage mistake.
    let src = env.path("src");
    let out = env.run(
        env.command(&["copy", "--to", src.to_str().expect("utf-8")])
            .env("CAIRN_TO_PASSWORD", SRC_PASSWORD),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("same repository"), "{}", stderr(&out));

    // --to is required.
    let out = env.run(&mut env.command(&["copy"]));
    assert_eq!(out.status.code(), Some(2));
}
