//! End-to-end tests of the `cairn` binary: what a user types, what they get back, and the
//! exit codes (0 ok, 1 error, 3 warnings).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let env = Env {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        let out = env.cairn(&["init", "--kdf-memory-kib", "8", "--kdf-iterations", "1"]);
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        env
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.args(args)
            .env("CAIRN_REPOSITORY", self.path("repo"))
            .env("CAIRN_PASSWORD", "test password")
            .env("CAIRN_CACHE_DIR", self.path("cache"))
            .env_remove("CAIRN_PASSWORD_FILE")
            .env_remove("CAIRN_PASSWORD_COMMAND");
        c
    }

    fn cairn(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .expect("run cairn")
    }

    fn cairn_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
        child.wait_with_output().expect("wait")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cairn(args);
        assert!(
            out.status.success(),
            "cairn {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }
}

fn write_tree(root: &Path) {
    fs::create_dir_all(root.join("sub/deeper")).expect("mkdir");
    fs::write(root.join("a.txt"), b"alpha\n").expect("write");
    fs::write(
        root.join("sub/b.bin"),
        (0..200_000u32)
            .map(|i| (i * 31 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .expect("write");
    fs::write(root.join("sub/deeper/c"), b"").expect("write");
    std::os::unix::fs::symlink("a.txt", root.join("link")).expect("symlink");
}

#[test]
fn backup_snapshots_ls_restore_dump_cat() {
    let env = Env::new();
    let data = env.path("data");
    write_tree(&data);
    let data_s = data.to_str().expect("utf-8 path");

    let out = env.ok(&[
        "backup", "--tag", "nightly", "--host", "box1", "--json", data_s,
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("backup --json");
    let id = v["snapshot_id"].as_str().expect("id").to_string();
    assert_eq!(v["summary"]["total_files"], 3);

    let snaps: serde_json::Value =
        serde_json::from_str(&env.ok(&["snapshots", "--json"])).expect("json");
    let s = &snaps[0];
    assert_eq!(s["id"], id.as_str());
    assert_eq!(s["host"], "box1");
    assert_eq!(s["tags"][0], "nightly");
    assert_eq!(s["paths"][0], data_s);
    assert!(s["time"].as_str().is_some());
    assert_eq!(s["summary"]["total_files"], 3);

    let table = env.ok(&["snapshots"]);
    assert!(
        table.contains(&id[..8]) && table.contains("nightly"),
        "{table}"
    );

    let ls = env.ok(&["ls", &id[..10]]);
    for p in [
        "/data",
        "/data/a.txt",
        "/data/sub/b.bin",
        "/data/sub/deeper/c",
        "/data/link",
    ] {
        assert!(ls.lines().any(|l| l == p), "{p} missing from ls:\n{ls}");
    }
    let ls_json: serde_json::Value =
        serde_json::from_str(&env.ok(&["ls", "latest", "--json"])).expect("ls json");
    assert!(
        ls_json
            .as_array()
            .expect("array")
            .iter()
            .any(|n| n["path"] == "data/link" && n["target"] == "a.txt")
    );

    let target = env.path("out");
    env.ok(&[
        "restore",
        "latest",
        "--target",
        target.to_str().expect("utf-8"),
    ]);
    assert_eq!(
        fs::read(target.join("data/sub/b.bin")).expect("b"),
        fs::read(data.join("sub/b.bin")).expect("b")
    );
    assert_eq!(
        fs::read_link(target.join("data/link")).expect("link"),
        PathBuf::from("a.txt")
    );

    let dumped = env.cairn(&["dump", "latest", "data/a.txt"]);
    assert!(dumped.status.success());
    assert_eq!(dumped.stdout, b"alpha\n");

    let config: serde_json::Value =
        serde_json::from_str(&env.ok(&["cat", "config"])).expect("config json");
    assert_eq!(config["compression_level"], 3);
    let snap: serde_json::Value =
        serde_json::from_str(&env.ok(&["cat", "snapshot", &id])).expect("snapshot json");
    assert_eq!(snap["id"], id.as_str());
}

#[test]
fn stdin_backup_and_dump_pipe() {
    let env = Env::new();
    let input: Vec<u8> = (0..300_000u32)
        .flat_map(|i| format!("row {i}\n").into_bytes())
        .collect();
    let out = env.cairn_stdin(
        &["backup", "--stdin", "--stdin-name", "clawdbot.dump"],
        &input,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dumped = env.cairn(&["dump", "latest", "clawdbot.dump"]);
    assert!(dumped.status.success());
    assert!(dumped.stdout == input, "dump differs from the input");
}

#[test]
fn stdin_from_command_failure_exits_nonzero_and_stores_no_snapshot() {
    let env = Env::new();
    let out = env.cairn(&[
        "backup",
        "--stdin-from-command",
        "--stdin-name",
        "x.dump",
        "--",
        "sh",
        "-c",
        "echo part; exit 2",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no snapshot was written"), "{err}");
    let snaps: serde_json::Value =
        serde_json::from_str(&env.ok(&["snapshots", "--json"])).expect("json");
    assert_eq!(snaps.as_array().expect("array").len(), 0);

    let out = env.cairn(&[
        "backup",
        "--stdin-from-command",
        "--stdin-name",
        "x.dump",
        "--",
        "echo",
        "fine",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.cairn(&["dump", "latest", "x.dump"]).stdout, b"fine\n");
}

#[test]
fn warnings_exit_3() {
    let env = Env::new();
    let data = env.path("data");
    write_tree(&data);
    let missing = env.path("missing");
    let out = env.cairn(&[
        "backup",
        data.to_str().expect("utf-8"),
        missing.to_str().expect("utf-8"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning"));
}

#[test]
fn errors_are_clear_and_exit_1() {
    let env = Env::new();
    let wrong = env
        .command(&["snapshots"])
        .env("CAIRN_PASSWORD", "nope")
        .output()
        .expect("run");
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("password"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );

    let no_repo = env
        .command(&["snapshots"])
        .env("CAIRN_REPOSITORY", env.path("nothing-here"))
        .output()
        .expect("run");
    assert_eq!(no_repo.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_repo.stderr).contains("cairn init"));

    let bad_snap = env.cairn(&["restore", "zzzz", "--target", "/tmp/x"]);
    assert_eq!(bad_snap.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_snap.stderr).contains("not a snapshot id"));

    let no_snap = env.cairn(&["dump", "latest", "x"]);
    assert_eq!(no_snap.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_snap.stderr).contains("no snapshots"));

    let again = env.cairn(&["init"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let nothing = env.cairn(&["backup"]);
    assert_eq!(nothing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&nothing.stderr).contains("nothing to back up"));
}

#[test]
fn password_file_and_command() {
    let env = Env::new();
    let pw = env.path("pw");
    fs::write(&pw, "test password\n").expect("write");
    let out = env
        .command(&["snapshots", "--password-file", pw.to_str().expect("utf-8")])
        .env_remove("CAIRN_PASSWORD")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = env
        .command(&["snapshots", "--password-command", "echo test password"])
        .env_remove("CAIRN_PASSWORD")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = env
        .command(&["snapshots"])
        .env_remove("CAIRN_PASSWORD")
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no password given"));
}

// --- cairn check ------------------------------------------------------------------------------

/// The id of a data pack and the offset of its first blob, from `cairn cat index`.
fn first_data_pack(env: &Env) -> (String, u64) {
    let index = fs::read_dir(env.path("repo/index"))
        .expect("index dir")
        .flatten()
        .next()
        .expect("an index file")
        .file_name()
        .to_string_lossy()
        .into_owned();
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["cat", "index", &index])).expect("index json");
    let pack = v["packs"]
        .as_array()
        .expect("packs")
        .iter()
        .find(|p| p["blobs"][0]["type"] == "data")
        .expect("a data pack");
    let id = pack["id"].as_str().expect("id").to_string();
    (id, pack["blobs"][0]["offset"].as_u64().expect("offset"))
}

#[test]
fn check_clean_repository_exits_0_with_a_summary() {
    let env = Env::new();
    let data = env.path("data");
    write_tree(&data);
    env.ok(&["backup", data.to_str().expect("utf-8")]);

    let out = env.cairn(&["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("no errors found: 1 snapshot, 2 packs"),
        "{stdout}"
    );

    let out = env.ok(&["check", "--read-data"]);
    assert!(
        out.contains("no errors found") && out.contains("read 2 packs (all)"),
        "{out}"
    );
    for subset in ["1/2", "2/2", "50%"] {
        let out = env.ok(&["check", "--read-data-subset", subset]);
        assert!(out.contains(&format!("({subset})")), "{subset}: {out}");
    }

    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["check", "--read-data", "--json"])).expect("check --json");
    assert_eq!(v["clean"], true);
    assert_eq!(v["errors"].as_array().expect("errors").len(), 0);
    assert_eq!(v["stats"]["snapshots"], 1);
    assert_eq!(v["stats"]["packs_read"], v["stats"]["packs"]);
    assert_eq!(v["stats"]["blobs_verified"], v["stats"]["blobs"]);

    let help = env.ok(&["check", "--help"]);
    assert!(
        help.contains("1 damage found, or the check could not run"),
        "{help}"
    );
}

#[test]
fn check_read_data_exits_1_on_a_flipped_bit_and_names_the_pack() {
    let env = Env::new();
    let data = env.path("data");
    write_tree(&data);
    env.ok(&["backup", data.to_str().expect("utf-8")]);
    let (pack, offset) = first_data_pack(&env);
    let path = env.path("repo/data").join(&pack[..2]).join(&pack);
    let mut bytes = fs::read(&path).expect("pack");
    bytes[offset as usize + 20] ^= 0x10;
    fs::write(&path, &bytes).expect("write pack");

    let out = env.cairn(&["check"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "headers are intact: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = env.cairn(&["check", "--read-data"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("damaged-blob") && stderr.contains(&pack[..8]),
        "{stderr}"
    );
    assert!(stderr.contains("affects snapshot"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("1 error found"), "{stdout}");

    let out = env.cairn(&["check", "--read-data", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("check --json");
    assert_eq!(v["clean"], false);
    assert_eq!(v["errors"][0]["kind"], "damaged-blob");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .expect("message")
            .contains(&pack[..8])
    );
}

#[test]
fn check_rejects_bad_subsets_as_usage_errors() {
    let env = Env::new();
    for (bad, needle) in [("3/2", "1 <= N <= M"), ("0%", "above 0"), ("half", "N/M")] {
        let out = env.cairn(&["check", "--read-data-subset", bad]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(
            stderr.contains(bad) && stderr.contains(needle),
            "{bad}: {stderr}"
        );
    }
}

/// Backs up `data` with `--time` and `--host`, returning the snapshot id.
fn backup_at(env: &Env, data: &str, host: &str, time: &str) -> String {
    let out = env.ok(&["backup", "--host", host, "--time", time, "--json", data]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("backup --json");
    v["snapshot_id"].as_str().expect("id").to_string()
}

fn snapshot_ids(env: &Env) -> Vec<String> {
    let snaps: serde_json::Value =
        serde_json::from_str(&env.ok(&["snapshots", "--json"])).expect("json");
    let mut ids: Vec<String> = snaps
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn forget_dry_run_json_then_forget_keeps_the_newest_of_each_day() {
    let env = Env::new();
    let data = env.path("data");
    write_tree(&data);
    let data_s = data.to_str().expect("utf-8 path");
    // Midday, so the local day is the same whatever the zone's offset.
    let d1 = backup_at(&env, data_s, "box", "2026-11-01 12:00:00");
    let d2 = backup_at(&env, data_s, "box", "2026-11-02 12:00:00");
    let d3_early = backup_at(&env, data_s, "box", "2026-11-03 10:00:00");
    let d3 = backup_at(&env, data_s, "box", "2026-11-03 13:00:00");
    let other = backup_at(&env, data_s, "other", "2026-10-01 12:00:00");
    let all = snapshot_ids(&env);
    assert_eq!(all.len(), 5);

    let out = env.ok(&["forget", "--keep-daily", "2", "--dry-run", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("forget --json");
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["kept"], 3);
    assert_eq!(v["removed"], 2);
    let groups = v["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0]["group"]["host"], "box");
    assert_eq!(groups[0]["group"]["paths"][0], data_s);
    let box_snaps = groups[0]["snapshots"].as_array().expect("snapshots");
    assert_eq!(box_snaps.len(), 4);
    assert_eq!(box_snaps[0]["id"], d3.as_str());
    assert_eq!(box_snaps[0]["keep"], true);
    assert!(
        box_snaps[0]["reasons"][0]
            .as_str()
            .expect("reason")
            .starts_with("keep-daily 2026-11-03")
    );
    assert_eq!(box_snaps[1]["id"], d3_early.as_str());
    assert_eq!(box_snaps[1]["keep"], false);
    assert_eq!(box_snaps[1]["reasons"][0], "no rule keeps it");
    assert_eq!(snapshot_ids(&env), all, "a dry run removes nothing");

    let text = env.ok(&["forget", "--keep-daily", "2", "--dry-run"]);
    assert!(text.contains("host box, paths ["), "{text}");
    assert!(
        text.contains("dry run: would keep 3, remove 2 snapshots"),
        "{text}"
    );

    let text = env.ok(&["forget", "--keep-daily", "2"]);
    assert!(
        text.contains(
            "kept 3, removed 2 snapshots (packs are freed by `cairn prune`, not yet available)"
        ),
        "{text}"
    );
    assert!(
        text.contains(&d1[..8]) && text.contains("removed"),
        "{text}"
    );
    let mut want = vec![d2.clone(), d3.clone(), other.clone()];
    want.sort();
    assert_eq!(snapshot_ids(&env), want);

    // By id prefix.
    let text = env.ok(&["forget", &d2[..12]]);
    assert!(text.contains("kept 0, removed 1 snapshots"), "{text}");
    let mut want = vec![d3, other];
    want.sort();
    assert_eq!(snapshot_ids(&env), want);
    // Forgetting removed only snapshot files: what is left is whole.
    env.ok(&["check"]);
}

#[test]
fn forget_refuses_an_empty_policy_and_bad_arguments() {
    let env = Env::new();
    let data = env.path("data");
    write_tree(&data);
    let data_s = data.to_str().expect("utf-8 path");
    let id = backup_at(&env, data_s, "box", "2026-11-01 12:00:00");

    let out = env.cairn(&["forget"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no keep rule given: forget would remove every snapshot"),
        "{err}"
    );

    let out = env.cairn(&["forget", "--keep-last", "1", &id[..8]]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not both"));

    let out = env.cairn(&["forget", "--keep-within", "30s"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown unit 's'"));

    let out = env.cairn(&["forget", "--keep-last", "1", "--group-by", "host,user"]);
    assert_eq!(out.status.code(), Some(2));

    assert_eq!(snapshot_ids(&env), vec![id]);
}
