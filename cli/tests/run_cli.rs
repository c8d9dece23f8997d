//! `cairn run` through the binary, with `sh -c` scripts as dump commands and a directory
//! store: the table and exit codes (0, 1 when a store failed midway, 2 for an unknown store),
//! the failed snapshot it leaves, `--metrics-file` (and `check --metrics-file`), `--copy` to a
//! `[[copy]]` repository, and `backup --exclude` / `--keep-failed`.

mod common;

use std::fs;
use std::path::Path;

use common::runs::{output, parse_run, run_ok, toml_argv, toml_str, write_config};
use common::{Repo, assert_success};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The value of `metric{store="STORE"}` in a metrics file.
fn sample(text: &str, metric: &str, store: &str) -> Option<String> {
    let prefix = format!("{metric}{{store=\"{store}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(str::to_owned)
}

fn stores(repo: &Repo, data: &Path) -> String {
    format!(
        r#"
[stores.good]
type = "command"
command = {good}
retention = {{ keep_last = 7 }}
interval = "24h"

[stores.broken]
type = "command"
command = {broken}
retention = {{ keep_last = 7 }}
interval = "24h"
on_failure = {on_failure}

[stores.files]
type = "directory"
paths = [{data}]
exclude = ["*.log", "cache/"]
retention = {{ keep_last = 7 }}
interval = "24h"
tags = ["workflows"]
"#,
        good = toml_argv(&[
            "sh",
            "-c",
            "printf 'good dump\\n'; echo 'good: progress note' >&2"
        ]),
        broken = toml_argv(&[
            "sh",
            "-c",
            "printf 'half a dump'; echo 'pg_dump: error: server closed the connection' >&2; exit 3",
        ]),
        on_failure = toml_argv(&[
            "sh",
            "-c",
            &format!(
                "echo \"$CAIRN_STORE $CAIRN_STATUS\" >> {}",
                repo.path("alerts").display()
            ),
        ]),
        data = toml_str(&data.display().to_string()),
    )
}

fn tree(data: &Path) {
    for (p, body) in [
        ("wf/a.json", "{}"),
        ("wf/b.json", "{\"x\":1}"),
        ("run.log", "log"),
        ("cache/c", "cache"),
    ] {
        let p = data.join(p);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, body).expect("write");
    }
}

#[test]
fn run_prints_a_table_leaves_a_failed_snapshot_and_exits_1() {
    let repo = Repo::new();
    let data = repo.path("data");
    tree(&data);
    let config = write_config(&repo, &stores(&repo, &data));

    let out = output(&repo, &config, &["run"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let table = stdout(&out);
    let err = stderr(&out);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("STORE")
            && lines[0].contains("SNAPSHOT")
            && lines[0].contains("ADDED"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("good ") && lines[1].contains(" ok "),
        "{table}"
    );
    assert!(
        lines[2].starts_with("broken ") && lines[2].contains(" failed "),
        "{table}"
    );
    assert!(
        lines[3].starts_with("files ") && lines[3].contains(" ok "),
        "{table}"
    );
    // The commands' stderr, prefixed with their store; the failure, with its stderr tail.
    assert!(err.contains("good: good: progress note"), "{err}");
    assert!(err.contains("error: store broken: `sh -c"), "{err}");
    assert!(err.contains("exit status: 3"), "{err}");
    assert!(err.contains("server closed the connection"), "{err}");
    assert_eq!(
        fs::read_to_string(repo.path("alerts")).expect("on_failure ran"),
        "broken failed\n"
    );

    // The failed snapshot: what was read, status failed, the failure and the store recorded.
    let snaps: serde_json::Value =
        serde_json::from_str(&repo.ok(&["snapshots", "--json"])).expect("json");
    let snaps = snaps.as_array().expect("array");
    assert_eq!(snaps.len(), 3);
    let broken = snaps
        .iter()
        .find(|s| s["store"] == "broken")
        .expect("broken's snapshot");
    assert_eq!(broken["status"], "failed");
    assert!(
        broken["failure"]
            .as_str()
            .is_some_and(|f| f.contains("server closed the connection")),
        "{broken}"
    );
    let id = broken["id"].as_str().expect("id");
    assert_eq!(repo.dump(id, "broken.dump"), b"half a dump");
    let files = snaps.iter().find(|s| s["store"] == "files").expect("files");
    assert_eq!(files["tags"], serde_json::json!(["files", "workflows"]));
    let listed = repo.ok(&["ls", files["id"].as_str().expect("id")]);
    assert!(listed.contains("data/wf/b.json"), "{listed}");
    assert!(
        !listed.contains("run.log") && !listed.contains("cache"),
        "{listed}"
    );

    // Only `good`, with metrics: complete for every store, broken's from its failed snapshot.
    let metrics = repo.path("metrics/cairn.prom");
    fs::create_dir_all(metrics.parent().expect("dir")).expect("mkdir");
    let m = metrics.display().to_string();
    let runs = run_ok(&repo, &config, &["--store", "good", "--metrics-file", &m]);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, "ok");
    assert_eq!(runs[0].bytes_read, 10);
    assert_eq!(runs[0].files, 1);
    let text = fs::read_to_string(&metrics).expect("metrics file");
    assert_eq!(
        sample(&text, "cairn_backup_success", "good").as_deref(),
        Some("1")
    );
    assert_eq!(
        sample(&text, "cairn_backup_success", "broken").as_deref(),
        Some("0")
    );
    assert_eq!(
        sample(&text, "cairn_backup_success", "files").as_deref(),
        Some("1")
    );
    assert_eq!(
        sample(
            &text,
            "cairn_backup_last_success_timestamp_seconds",
            "broken"
        )
        .as_deref(),
        Some("0")
    );
    assert_eq!(
        sample(&text, "cairn_backup_bytes_read", "broken").as_deref(),
        Some("11")
    );
    assert_eq!(
        sample(&text, "cairn_backup_files", "files").as_deref(),
        Some("2")
    );
    assert!(
        text.contains("# TYPE cairn_backup_duration_seconds gauge"),
        "{text}"
    );
    assert_eq!(
        fs::read_dir(metrics.parent().expect("dir"))
            .expect("ls")
            .count(),
        1,
        "a temporary file was left behind"
    );
    eprintln!("metrics file:\n{text}");

    // An unknown store is a usage error, before anything runs.
    let out = output(&repo, &config, &["run", "--store", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("good, broken, files"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn run_copy_sends_the_new_snapshots_to_each_copy_repository() {
    let repo = Repo::new();
    let offsite = repo.path("offsite");
    let off_pw = repo.path("offsite-password");
    fs::write(&off_pw, "offsite password\n").expect("write");
    let init = repo
        .command(&["init", "--kdf-memory-kib", "8", "--kdf-iterations", "1"])
        .env("CAIRN_REPOSITORY", &offsite)
        .env("CAIRN_PASSWORD", "offsite password")
        .output()
        .expect("init offsite");
    assert_success("init offsite", &init);
    let config = write_config(
        &repo,
        &format!(
            r#"
[[copy]]
name = "offsite"
location = {loc}
password_command = {pw}

[stores.db]
type = "command"
command = "echo rows"
retention = {{ keep_last = 7 }}
interval = "24h"

[stores.bad]
type = "command"
command = "false"
retention = {{ keep_last = 7 }}
interval = "24h"
"#,
            loc = toml_str(&offsite.display().to_string()),
            pw = toml_argv(&["cat", &off_pw.display().to_string()]),
        ),
    );
    let out = output(&repo, &config, &["run", "--json", "--copy"]);
    assert_eq!(out.status.code(), Some(1), "bad fails: {}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["copies"][0]["name"], "offsite");
    assert_eq!(v["copies"][0]["copied"], 1, "{v}");
    assert_eq!(v["copies"][0]["error"], serde_json::Value::Null);
    let runs = parse_run(&out);
    let db = runs.iter().find(|r| r.store == "db").expect("db");
    let listed = repo
        .command(&["snapshots", "--json"])
        .env("CAIRN_REPOSITORY", &offsite)
        .env("CAIRN_PASSWORD", "offsite password")
        .output()
        .expect("snapshots");
    let copies: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(copies.as_array().expect("array").len(), 1);
    assert_eq!(copies[0]["store"], "db");
    assert_eq!(copies[0]["copied_from"].as_str(), db.snapshot_id.as_deref());
}

#[test]
fn check_writes_its_metrics_file() {
    let repo = Repo::new();
    let path = repo.path("check.prom");
    let p = path.display().to_string();
    repo.ok(&["check", "--metrics-file", &p]);
    let text = fs::read_to_string(&path).expect("metrics");
    assert!(text.contains("\ncairn_check_success 1\n"), "{text}");
    let t: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("cairn_check_last_run_timestamp_seconds "))
        .expect("timestamp")
        .parse()
        .expect("integer");
    assert!(t > 1_700_000_000);
    // A check that cannot run records a failure.
    fs::remove_dir_all(repo.path("repo/keys")).expect("break the repository");
    let out = repo.run(&["check", "--metrics-file", &p]);
    assert_eq!(out.status.code(), Some(1));
    let text = fs::read_to_string(&path).expect("metrics");
    assert!(text.contains("\ncairn_check_success 0\n"), "{text}");
}

#[test]
fn backup_exclude_and_keep_failed() {
    let repo = Repo::new();
    let data = repo.path("data");
    tree(&data);
    let d = data.display().to_string();
    let out = repo.run(&["backup", &d, "--exclude", "*.log", "--exclude", "/cache"]);
    assert_success("backup --exclude", &out);
    assert!(stderr(&out).contains("2 excluded"), "{}", stderr(&out));
    let listed = repo.ok(&["ls", "latest"]);
    assert!(listed.contains("data/wf/a.json"), "{listed}");
    assert!(
        !listed.contains("run.log") && !listed.contains("data/cache"),
        "{listed}"
    );
    let bad = repo.run(&["backup", &d, "--exclude", "!x"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("negation"), "{}", stderr(&bad));

    let script = "printf partial; echo 'dump: disk full' >&2; exit 5";
    let out = repo.run(&[
        "backup",
        "--stdin-from-command",
        "--stdin-name",
        "x.dump",
        "--",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("dump: disk full"), "{}", stderr(&out));
    assert_eq!(
        repo.snapshot_ids().len(),
        1,
        "no snapshot without --keep-failed"
    );
    let out = repo.run(&[
        "backup",
        "--json",
        "--keep-failed",
        "--stdin-from-command",
        "--stdin-name",
        "x.dump",
        "--",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["status"], "failed");
    assert!(
        v["failure"]
            .as_str()
            .is_some_and(|f| f.contains("disk full")),
        "{v}"
    );
    assert_eq!(
        repo.dump(v["snapshot_id"].as_str().expect("id"), "x.dump"),
        b"partial"
    );
}

#[test]
fn a_run_that_cannot_open_the_repository_still_writes_its_metrics() {
    let repo = Repo::new();
    let config = write_config(
        &repo,
        r#"
[stores.db]
type = "command"
command = "echo rows"
retention = { keep_last = 7 }
interval = "24h"
"#,
    );
    fs::write(repo.path("password"), "the wrong password\n").expect("write");
    let path = repo.path("run.prom");
    let p = path.display().to_string();
    let out = output(&repo, &config, &["run", "--metrics-file", &p]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot open the repository"),
        "{}",
        stderr(&out)
    );
    let text = fs::read_to_string(&path).expect("metrics");
    assert_eq!(
        sample(&text, "cairn_backup_success", "db").as_deref(),
        Some("0")
    );
    assert!(!text.contains("last_success"), "{text}");
}
