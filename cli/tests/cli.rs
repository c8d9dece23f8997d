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
        Env::with_init(&[])
    }

    /// A repository created with these extra `init` arguments.
    fn with_init(extra: &[&str]) -> Env {
        let env = Env {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        let mut args = vec!["init", "--kdf-memory-kib", "8", "--kdf-iterations", "1"];
        args.extend_from_slice(extra);
        let out = env.cairn(&args);
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
    // a.txt and sub/b.bin are small, so they share one compression group (SPEC §7): the bit
    // damages both blobs, and each is reported with the files it affects.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("2 errors found"), "{stdout}");

    let out = env.cairn(&["check", "--read-data", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("check --json");
    assert_eq!(v["clean"], false);
    assert_eq!(v["errors"][0]["kind"], "damaged-blob");
    assert_eq!(v["errors"][1]["kind"], "damaged-blob");
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
        text.contains("kept 3, removed 2 snapshots (run `cairn prune` to free their data)"),
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

// --- cairn prune, protect, unprotect --------------------------------------------------------

/// Bytes that do not compress and that no other seed's bytes share a chunk with.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

/// Backs up `bytes` from standard input as `db.sql`; the snapshot id.
fn stdin_backup(env: &Env, bytes: &[u8]) -> String {
    let out = env.cairn_stdin(
        &["backup", "--stdin", "--stdin-name", "db.sql", "--json"],
        bytes,
    );
    assert!(
        out.status.success(),
        "backup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    json(&String::from_utf8_lossy(&out.stdout))["snapshot_id"]
        .as_str()
        .expect("id")
        .to_string()
}

/// Sleeps until everything written so far is older than a 1 s grace period (storage times may
/// be in whole seconds).
fn wait_past_1s_grace() {
    std::thread::sleep(std::time::Duration::from_millis(2_200));
}

/// The total size of the files below `dir`, and their names.
fn tree_size(dir: &Path) -> (u64, Vec<String>) {
    let mut total = 0;
    let mut names = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let meta = e.metadata().expect("metadata");
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                total += meta.len();
                names.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    names.sort();
    (total, names)
}

#[test]
fn prune_marks_then_deletes_what_forgotten_snapshots_used() {
    let env = Env::with_init(&["--prune-grace", "1s"]);
    let old = noise(1, 300_000);
    let kept = noise(2, 300_000);
    let old_id = stdin_backup(&env, &old);
    let kept_id = stdin_backup(&env, &kept);
    env.ok(&["forget", &old_id]);

    wait_past_1s_grace();
    let dry = json(&env.ok(&["prune", "--dry-run", "--json"]));
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["grace_secs"], 1);
    assert_eq!(dry["young_packs"], 0, "{dry:#}");
    // The forgotten snapshot's data and tree packs.
    let marked = dry["marked_packs"].as_u64().expect("marked_packs");
    let to_free = dry["bytes_to_free"].as_u64().expect("bytes_to_free");
    assert!(marked >= 2 && to_free > 300_000, "{dry:#}");
    assert_eq!(dry["marked_unused"], marked, "{dry:#}");
    assert_eq!(dry["plan"], serde_json::Value::Null);
    assert_eq!(dry["sweep"]["plans"], 0);
    assert_eq!(dry["snapshots"], 1);
    assert!(
        dry["storage_now"]
            .as_str()
            .expect("storage_now")
            .ends_with("+00:00")
    );
    assert!(dry["storage_now_ns"].as_i64().expect("storage_now_ns") > 0);
    let text = env.ok(&["prune", "--dry-run"]);
    assert!(
        text.contains("dry run: nothing was changed")
            && text.contains(&format!("a new plan would mark {marked} packs")),
        "{text}"
    );
    assert!(
        tree_size(&env.path("repo/plans")).1.is_empty(),
        "a dry run writes no plan"
    );

    // Phase 1: the plan.
    let (data_before, _) = tree_size(&env.path("repo/data"));
    let text = env.ok(&["prune"]);
    let plans = tree_size(&env.path("repo/plans")).1;
    assert_eq!(plans.len(), 1, "{text}");
    assert!(
        text.contains(&format!("new plan {} marks {marked} packs", &plans[0][..8]))
            && text.contains("run prune again after"),
        "{text}"
    );
    assert_eq!(
        tree_size(&env.path("repo/data")).0,
        data_before,
        "marking deletes nothing"
    );

    // Phase 2, a grace period later: the sweep.
    wait_past_1s_grace();
    let v = json(&env.ok(&["prune", "--json"]));
    assert_eq!(v["dry_run"], false);
    assert_eq!(v["sweep"]["plans"], 1, "{v:#}");
    assert_eq!(v["sweep"]["packs_deleted"], marked, "{v:#}");
    assert_eq!(v["sweep"]["packs_kept"], 0, "{v:#}");
    assert_eq!(v["sweep"]["bytes_freed"], to_free, "{v:#}");
    assert_eq!(v["marked_packs"], 0, "{v:#}");
    assert_eq!(v["plan"], serde_json::Value::Null);
    assert_eq!(v["warnings"].as_array().expect("warnings").len(), 0);
    assert_eq!(
        tree_size(&env.path("repo/data")).0,
        data_before - to_free,
        "the sweep freed what the plan said"
    );
    assert!(tree_size(&env.path("repo/plans")).1.is_empty());

    // What is left is whole, and the kept snapshot restores byte-exact.
    let out = env.cairn(&["check", "--read-data"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let dumped = env.cairn(&["dump", &kept_id, "db.sql"]);
    assert!(dumped.status.success());
    assert!(dumped.stdout == kept, "the kept snapshot dumps byte-exact");
    assert_eq!(snapshot_ids(&env), vec![kept_id]);

    // Nothing left to do.
    let text = env.ok(&["prune"]);
    assert!(
        text.contains("no earlier plan to sweep") && text.contains("nothing new to mark"),
        "{text}"
    );
}

#[test]
fn prune_and_init_reject_bad_options_clearly() {
    let env = Env::new();
    for (args, needles) in [
        (
            &["prune", "--max-unused", "5x"][..],
            &["\"5x\"", "5%", "unlimited"][..],
        ),
        (&["prune", "--max-unused", "150%"], &["0 to 100"]),
        (
            &["prune", "--max-repack-size", "lots"],
            &["\"lots\"", "500M"],
        ),
        (&["prune", "--grace", "2y"], &["unknown unit 'y'"]),
        (&["init", "--prune-grace", "0s"], &["1s to 30d"]),
        (&["init", "--prune-grace", "12"], &["has no unit"]),
    ] {
        let out = env.cairn(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        for n in needles {
            assert!(stderr.contains(n), "{args:?}: {n:?} missing from {stderr}");
        }
    }

    // The repository's grace period (12h by default) can be lengthened, never shortened.
    let out = env.cairn(&["prune", "--grace", "1h"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("shorter than the repository's"), "{stderr}");
    let v = json(&env.ok(&["prune", "--grace", "1d", "--dry-run", "--json"]));
    assert_eq!(v["grace_secs"], 86_400);

    let help = env.ok(&["prune", "--help"]);
    for n in [
        "two-phase",
        "Backups can keep running",
        "12h by default",
        "--max-unused 5%",
    ] {
        assert!(help.contains(n), "{n:?} missing from:\n{help}");
    }

    // init names the grace period.
    let out = env
        .command(&[
            "init",
            "--kdf-memory-kib",
            "8",
            "--kdf-iterations",
            "1",
            "--prune-grace",
            "1d12h",
        ])
        .env("CAIRN_REPOSITORY", env.path("repo2"))
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("prune grace period: 1d12h"), "{stdout}");
}

#[test]
fn protected_snapshots_survive_forget_until_unprotected() {
    let env = Env::new();
    let data = env.path("data");
    write_tree(&data);
    let data_s = data.to_str().expect("utf-8 path");
    let old = backup_at(&env, data_s, "box", "2026-11-01 12:00:00");
    let new = backup_at(&env, data_s, "box", "2026-11-02 12:00:00");

    let out = env.cairn(&["protect"]);
    assert_eq!(out.status.code(), Some(2), "a snapshot must be named");

    let text = env.ok(&["protect", &old[..10]]);
    let snaps = json(&env.ok(&["snapshots", "--json"]));
    let snaps = snaps.as_array().expect("array");
    assert_eq!(snaps.len(), 2);
    let p = snaps
        .iter()
        .find(|s| s["protected"] == true)
        .expect("a protected snapshot");
    let p_id = p["id"].as_str().expect("id").to_string();
    assert_ne!(p_id, old, "protecting writes the snapshot under a new id");
    assert!(
        text.contains(&format!("protected {} -> {}", &old[..8], &p_id[..8])),
        "{text}"
    );
    let other = snaps.iter().find(|s| s["id"] == new.as_str()).expect("new");
    assert_eq!(other["protected"], false);
    let table = env.ok(&["snapshots"]);
    let line = table
        .lines()
        .find(|l| l.starts_with(&p_id[..8]))
        .expect("a table line");
    assert!(line[8..].starts_with(" P "), "{table}");
    assert!(table.contains("2 snapshots, 1 protected"), "{table}");

    // Already protected: unchanged.
    let v = json(&env.ok(&["protect", &p_id, "--json"]));
    assert_eq!(v[0]["old"], p_id.as_str());
    assert_eq!(v[0]["new"], serde_json::Value::Null);
    assert_eq!(v[0]["changed"], false);

    // A policy that keeps nothing keeps the protected one, and says why.
    let v = json(&env.ok(&["forget", "--keep-last", "0", "--dry-run", "--json"]));
    let entries = v["groups"][0]["snapshots"].as_array().expect("snapshots");
    let e = entries
        .iter()
        .find(|e| e["id"] == p_id.as_str())
        .expect("p");
    assert_eq!(e["keep"], true);
    assert_eq!(e["reasons"][0], "protected");
    assert_eq!(v["removed"], 1);
    let text = env.ok(&["forget", "--keep-last", "1"]);
    assert!(text.contains("kept 2, removed 0"), "{text}");
    let mut want = vec![p_id.clone(), new.clone()];
    want.sort();
    assert_eq!(snapshot_ids(&env), want);

    // Named by id: refused, with what to do.
    let out = env.cairn(&["forget", &p_id[..12]]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is protected") && stderr.contains("cairn unprotect"),
        "{stderr}"
    );
    assert_eq!(snapshot_ids(&env), want);

    // Unprotected, the policy removes it.
    let v = json(&env.ok(&["unprotect", &p_id, "--json"]));
    assert_eq!(v[0]["old"], p_id.as_str());
    assert_eq!(v[0]["changed"], true);
    assert_eq!(v[0]["protected"], false);
    let u = v[0]["new"].as_str().expect("new id").to_string();
    let text = env.ok(&["unprotect", &u]);
    assert!(text.contains("is already not protected"), "{text}");
    let text = env.ok(&["forget", "--keep-last", "1"]);
    assert!(text.contains("kept 1, removed 1"), "{text}");
    assert_eq!(snapshot_ids(&env), vec![new]);
    env.ok(&["check"]);
}
