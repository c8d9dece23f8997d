//! End-to-end tests of `cairn config check`: the example file, a broken file (every problem
//! with its `cairn.toml:LINE`), `--json`, discovery of the file, and the exit codes (0 valid,
//! 1 invalid or not found, 2 usage error).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn example() -> PathBuf {
    // Set by cargo and nextest at run time: right even for a binary another clone built into a
    // shared target directory.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../examples/cairn.toml")
}

/// `cairn ARGS` in `cwd`, with a clean environment for config discovery (no CAIRN_CONFIG;
/// HOME and XDG_CONFIG_HOME inside `cwd`).
fn cairn(cwd: &Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
    c.args(args)
        .current_dir(cwd)
        .env_remove("CAIRN_CONFIG")
        .env("HOME", cwd.join("home"))
        .env("XDG_CONFIG_HOME", cwd.join("xdg"))
        .stdin(Stdio::null());
    for (k, v) in vars {
        c.env(k, v);
    }
    c.output().expect("run cairn")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn the_example_is_valid_and_summarized() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ex = example();
    let out = cairn(
        dir.path(),
        &["config", "check", "--config", ex.to_str().expect("utf-8")],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    for want in [
        "is valid: a repository, 1 copy, 10 stores.",
        "repository  /var/backups/cairn  (password from the file /etc/cairn/password)",
        "copy        offsite: s3://example-backups/cairn",
        "store postgres: command, expected every 1d, restore order 1",
        "pg_dump --format=custom --compress=0 clawdbot  ->  clawdbot.dump",
        "retention  one per day for 30 days",
        "store redis: redis, expected every 6h, restore order 2",
        "retention  one per hour for 7 days",
        "retention  forever (never forgotten)",
        "store casare-logs: directory, expected every 1d\n",
    ] {
        assert!(s.contains(want), "{want:?} not in\n{s}");
    }
}

#[test]
fn the_example_as_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ex = example();
    let out = cairn(
        dir.path(),
        &["config", "check", "--json"],
        &[("CAIRN_CONFIG", ex.to_str().expect("utf-8"))],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["valid"], true);
    assert_eq!(v["repository"]["password"]["file"], "/etc/cairn/password");
    assert_eq!(v["copies"][0]["password"]["command"][0], "pass");
    let stores = v["stores"].as_array().expect("stores");
    assert_eq!(stores.len(), 10);
    assert_eq!(stores[0]["name"], "postgres");
    assert_eq!(stores[0]["retention"]["keep_daily"], 30);
    assert_eq!(stores[0]["interval_seconds"], 86_400);
    assert_eq!(stores[0]["command"][0], "pg_dump");
    assert_eq!(stores[1]["retention"]["keep_within_hourly"], "7d");
    assert_eq!(stores[3]["retention"], "forever");
    assert_eq!(stores[2]["paths"][0], "/home/clawdbot/.n8n");
}

const BROKEN: &str = r#"[repository]
location = "/var/backups/cairn"
password = "hunter2"

[stores.postgres]
type = "command"
comand = "pg_dump db"
retention = { keep_daily = "thirty" }
interval = "24h"
"#;

#[test]
fn a_broken_file_lists_every_problem_with_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("cairn.toml"), BROKEN).expect("write");
    // Found as ./cairn.toml.
    let out = cairn(dir.path(), &["config", "check"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    let err = text(&out.stderr);
    for want in [
        "cairn.toml:3: repository.password: an inline password is refused",
        "cairn.toml:5: stores.postgres.command: missing: give the dump command",
        "cairn.toml:7: stores.postgres.comand: unknown key: did you mean `command`?",
        "cairn.toml:8: stores.postgres.retention.keep_daily: expected a positive integer, found \"thirty\"",
        "cairn.toml: 4 problems",
    ] {
        assert!(err.contains(want), "{want:?} not in\n{err}");
    }

    let out = cairn(dir.path(), &["config", "check", "--json"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["valid"], false);
    let e = &v["errors"][3];
    assert_eq!(e["line"], 8);
    assert_eq!(e["column"], 28);
    assert_eq!(e["key"], "stores.postgres.retention.keep_daily");
    assert_eq!(
        e["message"],
        "expected a positive integer, found \"thirty\""
    );
}

#[test]
fn discovery_order_and_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cwd = dir.path();
    let valid = fs::read_to_string(example()).expect("example");
    // The user's config directory is the last place looked at.
    let xdg = cwd.join("xdg/cairn/cairn.toml");
    fs::create_dir_all(xdg.parent().expect("parent")).expect("mkdir");
    fs::write(&xdg, &valid).expect("write");
    let out = cairn(cwd, &["config", "check"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with(&format!("{} is valid", xdg.display())));
    // ./cairn.toml comes before it.
    fs::write(cwd.join("cairn.toml"), BROKEN).expect("write");
    let out = cairn(cwd, &["config", "check"], &[]);
    assert_eq!(out.status.code(), Some(1));
    // CAIRN_CONFIG before that, and --config before everything.
    let named = cwd.join("named.toml");
    fs::write(&named, &valid).expect("write");
    let out = cairn(cwd, &["config", "check"], &[("CAIRN_CONFIG", "named.toml")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cairn(
        cwd,
        &["config", "check", "--config", "cairn.toml"],
        &[("CAIRN_CONFIG", "named.toml")],
    );
    assert_eq!(out.status.code(), Some(1));

    // A named file that does not exist is an error, not a reason to look elsewhere.
    let out = cairn(cwd, &["--config", "typo.toml", "config", "check"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("typo.toml (from --config) does not exist"),
        "{}",
        text(&out.stderr)
    );
    // Nothing anywhere: the error lists where cairn looked.
    let empty = tempfile::tempdir().expect("tempdir");
    let out = cairn(empty.path(), &["config", "check"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("no cairn.toml found; looked at $CAIRN_CONFIG (not set)"),
        "{err}"
    );
    assert!(err.contains("xdg/cairn/cairn.toml"), "{err}");
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    for args in [
        &["config"][..],
        &["config", "check", "extra"],
        &["config", "lint"],
    ] {
        let out = cairn(dir.path(), args, &[]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}
