//! End-to-end tests of `cairn diff`, `cairn find` and `cairn stats` through the real binary:
//! text and `--json` output, and exit codes (0 ok, 1 unknown snapshot, 2 usage error).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let env = Env {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        env.ok(&["init", "--kdf-memory-kib", "8", "--kdf-iterations", "1"]);
        env
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn cairn(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(args)
            .env("CAIRN_REPOSITORY", self.path("repo"))
            .env("CAIRN_PASSWORD", "test password")
            .env("CAIRN_CACHE_DIR", self.path("cache"))
            .env_remove("CAIRN_PASSWORD_FILE")
            .env_remove("CAIRN_PASSWORD_COMMAND")
            .stdin(Stdio::null())
            .output()
            .expect("run cairn")
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

    fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}:\n{out}"))
    }

    /// Asserts that `cairn ARGS` exits with `code` and that stderr contains `needle`.
    fn fails(&self, args: &[&str], code: i32, needle: &str) {
        let out = self.cairn(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }

    fn backup(&self, dir: &Path, host: &str) -> String {
        let v = self.json(&[
            "backup",
            "--host",
            host,
            "--json",
            dir.to_str().expect("utf-8 path"),
        ]);
        v["snapshot_id"].as_str().expect("id").to_string()
    }
}

fn write(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, bytes).expect("write");
}

/// Two snapshots of `data/`: the second adds `new.txt`, removes `gone.txt`, changes `mod.txt`
/// and the mode of `keep/meta.txt`. Returns (env, first id, second id).
fn two_snapshots() -> (Env, String, String) {
    let env = Env::new();
    let data = env.path("data");
    write(&data.join("keep/a.txt"), b"alpha");
    write(&data.join("keep/meta.txt"), b"meta");
    write(&data.join("gone.txt"), &[7u8; 1000]);
    write(&data.join("mod.txt"), b"version one");
    write(&data.join("db/x.dump"), b"dump one");
    let first = env.backup(&data, "box1");
    fs::remove_file(data.join("gone.txt")).expect("rm");
    write(&data.join("new.txt"), &[9u8; 300]);
    write(&data.join("mod.txt"), b"version two!");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(
        data.join("keep/meta.txt"),
        fs::Permissions::from_mode(0o600),
    )
    .expect("chmod");
    let second = env.backup(&data, "box1");
    (env, first, second)
}

#[test]
fn diff_lists_changes_as_text_and_json() {
    let (env, first, second) = two_snapshots();
    let text = env.ok(&["diff", &first[..8], "latest"]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with(&format!("comparing snapshot {}", &first[..8])),
        "{text}"
    );
    let changes: Vec<&str> = lines[1..lines.len() - 1].to_vec();
    assert_eq!(
        changes,
        [
            "-  /data/gone.txt",
            "M  /data/mod.txt  (11 B -> 12 B, data +12 B -11 B)",
            "+  /data/new.txt",
        ],
        "{text}"
    );
    let summary = lines[lines.len() - 1];
    assert!(
        summary.starts_with("1 added (300 B), 1 removed (1000 B), 1 modified"),
        "{summary}"
    );
    assert!(
        summary.contains("metadata only (--metadata lists them)"),
        "{summary}"
    );

    let meta = env.ok(&["diff", "--metadata", &first, &second]);
    assert!(
        meta.lines().any(|l| l == "U  /data/keep/meta.txt"),
        "{meta}"
    );
    assert!(meta.lines().any(|l| l == "U  /data/"), "{meta}");

    let quiet = env.ok(&["diff", "--quiet", &first, &second]);
    assert_eq!(quiet.lines().count(), 3, "changes only: {quiet}");

    let v = env.json(&["diff", "--json", &first, &second]);
    assert_eq!(v["first"]["id"], first.as_str());
    assert_eq!(v["second"]["id"], second.as_str());
    let changes = v["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 3);
    let m = changes
        .iter()
        .find(|c| c["change"] == "M")
        .expect("a modification");
    assert_eq!(m["path"], "data/mod.txt");
    assert_eq!(m["kind"], "modified");
    assert_eq!(m["before"]["size"], 11);
    assert_eq!(m["after"]["size"], 12);
    assert_eq!(m["data_added"], 12);
    let added = changes
        .iter()
        .find(|c| c["change"] == "+")
        .expect("an addition");
    assert_eq!(added["before"], Value::Null);
    assert_eq!(added["after"]["type"], "file");
    let s = &v["summary"];
    assert_eq!(
        (
            &s["added"],
            &s["removed"],
            &s["modified"],
            &s["bytes_added"],
            &s["bytes_removed"]
        ),
        (
            &Value::from(1),
            &Value::from(1),
            &Value::from(1),
            &Value::from(300),
            &Value::from(1000)
        )
    );
    assert!(
        s["trees_skipped"].as_u64().expect("skipped") >= 1,
        "`db` is unchanged: {s}"
    );
}

#[test]
fn find_lists_matches_per_snapshot() {
    let (env, first, second) = two_snapshots();
    let text = env.ok(&["find", "*.txt"]);
    let headers: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("snapshot "))
        .collect();
    assert_eq!(headers.len(), 2, "{text}");
    assert!(
        headers[0].starts_with(&format!("snapshot {} of [", &first[..8])),
        "{text}"
    );
    assert!(headers[0].ends_with("on box1:"), "{text}");
    assert!(text.contains("/data/gone.txt"), "{text}");
    let m = text
        .lines()
        .find(|l| l.ends_with("/data/new.txt"))
        .expect("new.txt listed");
    assert!(m.contains("300 B"), "size shown: {m}");
    assert!(
        text.trim_end()
            .ends_with(r#"8 matches of "*.txt" in 2 of 2 snapshots"#),
        "{text}"
    );

    let v = env.json(&["find", "--json", "/data/*.txt", "--snapshot", &second]);
    let matches = v.as_array().expect("array");
    let paths: Vec<&str> = matches
        .iter()
        .map(|m| m["path"].as_str().expect("path"))
        .collect();
    assert_eq!(paths, ["data/mod.txt", "data/new.txt"]);
    assert_eq!(matches[0]["snapshot"], second.as_str());
    assert_eq!(matches[0]["host"], "box1");
    assert_eq!(matches[1]["size"], 300);

    // Directories match too; filters narrow the snapshots searched.
    let v = env.json(&[
        "find",
        "--json",
        "db",
        "--snapshot",
        &first[..10],
        "-s",
        "latest",
    ]);
    assert_eq!(v.as_array().expect("array").len(), 2);
    let v = env.json(&["find", "--json", "*.dump", "--host", "elsewhere"]);
    assert_eq!(v, Value::Array(Vec::new()));
    let data = env.path("data");
    let v = env.json(&[
        "find",
        "--json",
        "*.dump",
        "--path",
        data.to_str().expect("utf-8"),
    ]);
    assert_eq!(v.as_array().expect("array").len(), 2);
    let none = env.ok(&["find", "*.nothing"]);
    assert_eq!(
        none.trim(),
        r#"0 matches of "*.nothing" in 0 of 2 snapshots"#
    );
}

#[test]
fn stats_give_exact_sizes_and_groups() {
    let (env, first, second) = two_snapshots();
    // a 5 + meta 4 + gone 1000 + mod 11 + x.dump 8, then a 5 + meta 4 + new 300 + mod 12 + 8.
    let (size1, size2) = (5 + 4 + 1000 + 11 + 8, 5 + 4 + 300 + 12 + 8);
    let v = env.json(&["stats", "--json"]);
    let t = &v["total"];
    assert_eq!(t["snapshots"], 2);
    assert_eq!(t["files"], 10);
    assert_eq!(t["restore_size"], size1 + size2);
    // Distinct data: a, meta, gone, mod (twice), x.dump, new; unchanged files dedup.
    assert_eq!(t["data_blobs"], 7);
    assert_eq!(t["data_raw_bytes"], 5 + 4 + 1000 + 11 + 12 + 8 + 300);
    let dedup = t["dedup_ratio"].as_f64().expect("ratio");
    assert!(
        (dedup - f64::from(size1 + size2) / 1340.0).abs() < 1e-9,
        "{dedup}"
    );
    assert!(t["compression_ratio"].as_f64().is_some());
    assert_eq!(v["groups"], Value::Array(Vec::new()));
    assert_eq!(v["repository"]["snapshots"], 2);
    assert!(v["repository"]["packs"].as_u64().expect("packs") >= 2);

    let v = env.json(&["stats", "--json", "--by", "snapshot"]);
    let groups = v["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0]["key"], &first[..8]);
    assert_eq!(groups[0]["restore_size"], size1);
    assert_eq!(groups[1]["snapshot_ids"][0], second.as_str());
    assert_eq!(groups[1]["restore_size"], size2);

    let v = env.json(&["stats", "--json", "--by", "store", &second]);
    assert_eq!(v["total"]["snapshots"], 1);
    let key = v["groups"][0]["key"].as_str().expect("key");
    assert!(key.starts_with("box1:/") && key.ends_with("/data"), "{key}");

    let text = env.ok(&["stats", "--by", "host"]);
    for needle in [
        "restore size",
        "dedup ratio",
        "compression ratio",
        "\nby host:\n",
        "\nbox1 ",
        "repository: 2 snapshots,",
    ] {
        assert!(text.contains(needle), "{needle:?} missing:\n{text}");
    }
}

#[test]
fn unknown_snapshots_exit_1_and_bad_arguments_exit_2() {
    let (env, first, _) = two_snapshots();
    env.fails(
        &["diff", "deadbeef", "latest"],
        1,
        "no snapshot matches 'deadbeef'",
    );
    env.fails(&["diff", &first, "zzzz"], 1, "not a snapshot id");
    env.fails(
        &["find", "*.txt", "--snapshot", "deadbeef"],
        1,
        "no snapshot matches",
    );
    env.fails(&["stats", "deadbeef"], 1, "no snapshot matches");
    env.fails(&["find", "[abc"], 2, "not closed");
    env.fails(&["find", ""], 2, "empty");
    env.fails(&["diff", &first], 2, "required");
    env.fails(&["stats", "--by", "color"], 2, "color");
}
