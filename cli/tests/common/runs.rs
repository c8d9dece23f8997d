//! `cairn run` from the tests: a cairn.toml beside a [`Repo`] (its repository and a password
//! file), `cairn --config FILE ARGS` with the repository and password taken from that file
//! only, and the parsed `run --json` report.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use super::{PASSWORD, Repo, assert_success};

/// A TOML basic string (JSON's escapes are TOML's).
pub fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// A command as a TOML array, with `$` doubled (cairn.toml expands `${VAR}` itself).
pub fn toml_argv(argv: &[&str]) -> String {
    let items: Vec<String> = argv
        .iter()
        .map(|a| toml_str(&a.replace('$', "$$")))
        .collect();
    format!("[{}]", items.join(", "))
}

/// Writes `cairn.toml` beside the repository: `[repository]` with a password file, then
/// `rest` (stores, copies). Returns its path.
pub fn write_config(repo: &Repo, rest: &str) -> PathBuf {
    let pw = repo.path("password");
    std::fs::write(&pw, format!("{PASSWORD}\n")).expect("write the password file");
    let text = format!(
        "[repository]\nlocation = {}\npassword_file = {}\n\n{rest}",
        toml_str(&repo.path("repo").display().to_string()),
        toml_str(&pw.display().to_string()),
    );
    let path = repo.path("cairn.toml");
    std::fs::write(&path, text).expect("write cairn.toml");
    path
}

/// `cairn --config CONFIG ARGS`, the repository and its password coming from the config
/// alone (the variables [`Repo::command`] sets are removed).
pub fn cairn(repo: &Repo, config: &std::path::Path, args: &[&str]) -> Command {
    let mut c = repo.command(&[]);
    c.arg("--config")
        .arg(config)
        .args(args)
        .env_remove("CAIRN_REPOSITORY")
        .env_remove("CAIRN_PASSWORD")
        .env_remove("CAIRN_CONFIG")
        .stdin(Stdio::null());
    c
}

/// Runs `cairn --config CONFIG ARGS`, whatever its exit status.
pub fn output(repo: &Repo, config: &std::path::Path, args: &[&str]) -> Output {
    cairn(repo, config, args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run cairn {args:?}: {e}"))
}

/// One store of `cairn run --json`.
#[derive(Debug, Clone)]
pub struct StoreRun {
    pub store: String,
    pub status: String,
    pub snapshot_id: Option<String>,
    pub bytes_read: u64,
    pub bytes_added: u64,
    pub bytes_stored: u64,
    pub files: u64,
    pub error: Option<String>,
}

/// Parses `cairn run --json`'s stores.
pub fn parse_run(out: &Output) -> Vec<StoreRun> {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "run --json printed no JSON ({e}):\n{}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    v["stores"]
        .as_array()
        .expect("run --json has stores")
        .iter()
        .map(|s| StoreRun {
            store: s["store"].as_str().expect("store").to_owned(),
            status: s["status"].as_str().expect("status").to_owned(),
            snapshot_id: s["snapshot_id"].as_str().map(str::to_owned),
            bytes_read: s["bytes_read"].as_u64().expect("bytes_read"),
            bytes_added: s["bytes_added"].as_u64().expect("bytes_added"),
            bytes_stored: s["bytes_stored"].as_u64().expect("bytes_stored"),
            files: s["files"].as_u64().expect("files"),
            error: s["error"].as_str().map(str::to_owned),
        })
        .collect()
}

/// `cairn run --json ARGS`, asserted to succeed; the stores' results.
pub fn run_ok(repo: &Repo, config: &std::path::Path, args: &[&str]) -> Vec<StoreRun> {
    let mut all = vec!["run", "--json"];
    all.extend_from_slice(args);
    let out = output(repo, config, &all);
    assert_success(&format!("cairn run {args:?}"), &out);
    parse_run(&out)
}
