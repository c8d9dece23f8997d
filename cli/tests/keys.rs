//! `cairn key list|add|remove|passwd` through the real binary: adding a key and using either
//! password, `--json` listings, refusing to remove the current and the last key (exit 1 with a
//! message saying what to do), changing the password without losing the data, and where the
//! new password may come from.

mod common;

use std::process::{Output, Stdio};

use common::{PASSWORD, Repo, assert_success};
use serde_json::Value;

/// Fast KDF for the new key files (the hidden flags `init` has too).
const FAST_KDF: [&str; 4] = ["--kdf-memory-kib", "8", "--kdf-iterations", "1"];

/// `cairn ARGS` opened with `password`, no stdin, no new-password variable.
fn run_as(repo: &Repo, password: &str, args: &[&str]) -> Output {
    repo.command(args)
        .env("CAIRN_PASSWORD", password)
        .env_remove("CAIRN_NEW_PASSWORD")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run cairn {args:?}: {e}"))
}

fn ok_as(repo: &Repo, password: &str, args: &[&str]) -> String {
    let out = run_as(repo, password, args);
    assert_success(&format!("cairn {args:?} (password {password:?})"), &out);
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `key list --json` opened with `password`.
fn keys(repo: &Repo, password: &str) -> Vec<Value> {
    json(&ok_as(repo, password, &["key", "list", "--json"]))
        .as_array()
        .expect("key list --json is an array")
        .clone()
}

fn current(keys: &[Value]) -> String {
    let cur: Vec<&Value> = keys.iter().filter(|k| k["current"] == true).collect();
    assert_eq!(cur.len(), 1, "exactly one current key: {keys:?}");
    cur[0]["id"].as_str().expect("id").to_string()
}

#[test]
fn key_add_list_remove_passwd_round_trip() {
    let repo = Repo::new();
    ok_as(
        &repo,
        PASSWORD,
        &[
            "backup",
            "--stdin-from-command",
            "--stdin-name",
            "hello.txt",
            "--",
            "printf",
            "hello keys",
        ],
    );
    let first = keys(&repo, PASSWORD);
    assert_eq!(first.len(), 1);
    let first_id = current(&first);
    assert_eq!(first[0]["short_id"].as_str(), Some(&first_id[..8]));
    assert_eq!(first[0]["damaged"], false);
    assert_eq!(first[0]["kdf"]["algorithm"], "argon2id");
    assert_eq!(first[0]["kdf"]["memory_kib"], 8);
    assert!(first[0]["created"].as_str().is_some_and(|t| t.len() >= 20));
    assert!(first[0]["host"].is_string() && first[0]["user"].is_string());

    // add: the new password from a file, host and user overridden.
    let pw_file = repo.path("second.pw");
    std::fs::write(&pw_file, "second password\n").expect("write the password file");
    let mut args = vec![
        "key",
        "add",
        "--json",
        "--new-password-file",
        pw_file.to_str().expect("UTF-8 path"),
        "--host",
        "laptop",
        "--user",
        "alice",
    ];
    args.extend(FAST_KDF);
    let added = json(&ok_as(&repo, PASSWORD, &args));
    let second_id = added["id"]
        .as_str()
        .expect("key add --json has id")
        .to_string();
    assert_eq!(second_id.len(), 64);
    assert_ne!(second_id, first_id);

    // Either password opens; the listing marks the one in use.
    let by_second = keys(&repo, "second password");
    assert_eq!(by_second.len(), 2);
    assert_eq!(current(&by_second), second_id);
    let second = by_second
        .iter()
        .find(|k| k["id"] == second_id.as_str())
        .expect("the added key is listed");
    assert_eq!(
        (second["host"].as_str(), second["user"].as_str()),
        (Some("laptop"), Some("alice"))
    );
    assert_eq!(current(&keys(&repo, PASSWORD)), first_id);
    let text = ok_as(&repo, "second password", &["key", "list"]);
    assert!(text.contains(&format!("* {}", &second_id[..8])), "{text}");
    assert!(text.contains("laptop") && text.contains("2 keys"), "{text}");

    // The key in use cannot be removed; from the other key's session it can.
    let refused = run_as(&repo, PASSWORD, &["key", "remove", &first_id[..12]]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("open with another key's password to remove this one"),
        "{}",
        stderr(&refused)
    );
    let removed = ok_as(
        &repo,
        "second password",
        &["key", "remove", &first_id[..12]],
    );
    assert!(removed.contains(&first_id), "{removed}");
    let wrong = run_as(&repo, PASSWORD, &["snapshots"]);
    assert_eq!(wrong.status.code(), Some(1));

    // The last key cannot be removed.
    let last = run_as(&repo, "second password", &["key", "remove", &second_id]);
    assert_eq!(last.status.code(), Some(1), "{}", stderr(&last));
    assert!(stderr(&last).contains("only key"), "{}", stderr(&last));
    assert!(stderr(&last).contains("cairn key add"), "{}", stderr(&last));

    // passwd: the new password from a command; the old one stops working, the data stays.
    let mut args = vec![
        "key",
        "passwd",
        "--json",
        "--new-password-command",
        "echo third password",
    ];
    args.extend(FAST_KDF);
    let changed = json(&ok_as(&repo, "second password", &args));
    assert_eq!(changed["removed"].as_str(), Some(second_id.as_str()));
    let third_id = changed["id"]
        .as_str()
        .expect("passwd --json has id")
        .to_string();
    let old = run_as(&repo, "second password", &["snapshots"]);
    assert_eq!(old.status.code(), Some(1));
    assert!(stderr(&old).contains("password"), "{}", stderr(&old));
    let now = keys(&repo, "third password");
    assert_eq!(now.len(), 1);
    assert_eq!(current(&now), third_id);
    let dumped = run_as(&repo, "third password", &["dump", "latest", "hello.txt"]);
    assert_success("cairn dump after passwd", &dumped);
    assert_eq!(dumped.stdout, b"hello keys");
}

#[test]
fn the_new_password_never_comes_from_the_repository_password() {
    let repo = Repo::new();
    // CAIRN_PASSWORD is set (it opens the repository) but is not taken as the new password.
    let mut args = vec!["key", "add"];
    args.extend(FAST_KDF);
    let out = run_as(&repo, PASSWORD, &args);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("CAIRN_NEW_PASSWORD") && stderr(&out).contains("--new-password-file"),
        "{}",
        stderr(&out)
    );
    assert_eq!(keys(&repo, PASSWORD).len(), 1);

    // $CAIRN_NEW_PASSWORD works, like $CAIRN_PASSWORD does for the repository.
    let out = repo
        .command(&args)
        .env("CAIRN_NEW_PASSWORD", "from the environment")
        .stdin(Stdio::null())
        .output()
        .expect("run cairn key add");
    assert_success("cairn key add with CAIRN_NEW_PASSWORD", &out);
    assert_eq!(keys(&repo, "from the environment").len(), 2);

    // A variable that is set but empty is refused, like an empty file or prompt.
    let out = repo
        .command(&[
            "key",
            "passwd",
            "--kdf-memory-kib",
            "8",
            "--kdf-iterations",
            "1",
        ])
        .env("CAIRN_NEW_PASSWORD", "")
        .stdin(Stdio::null())
        .output()
        .expect("run cairn key passwd");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("CAIRN_NEW_PASSWORD is set but empty"),
        "{}",
        stderr(&out)
    );
    assert_eq!(keys(&repo, PASSWORD).len(), 2, "nothing was replaced");

    // There is no flag that takes a password in clear.
    let out = run_as(&repo, PASSWORD, &["key", "add", "--new-password", "x"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn key_remove_rejects_bad_and_unknown_ids() {
    let repo = Repo::new();
    let out = run_as(&repo, PASSWORD, &["key", "remove", "not-hex"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not a key id"), "{}", stderr(&out));
    let out = run_as(&repo, PASSWORD, &["key", "remove", &"0".repeat(64)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no key matches"), "{}", stderr(&out));
    let out = run_as(&repo, PASSWORD, &["key", "remove"]);
    assert_eq!(out.status.code(), Some(2));
}
