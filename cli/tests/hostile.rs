//! Hostile storage through the binary (issue 8): the newest snapshot deleted behind cairn's back
//! rolls `latest` back; the machine that saw it warns on stderr, once, and still exits 0 (another
//! machine may have forgotten it legitimately). The engine's cases are in
//! `engine/tests/hostile.rs`.

mod common;

use std::fs::{self, File};
use std::process::Stdio;

use common::{Repo, assert_success};

/// Backs up `bytes` as the stream `db.dump`; returns the snapshot id.
fn backup(repo: &Repo, name: &str, bytes: &[u8]) -> String {
    let input = repo.path(name);
    fs::write(&input, bytes).expect("write the input");
    repo.backup(
        &["--stdin", "--stdin-name", "db.dump"],
        Stdio::from(File::open(&input).expect("open the input")),
    )
    .id
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_deleted_newest_snapshot_warns_once_on_stderr_and_exits_0() {
    let repo = Repo::new();
    let older = backup(&repo, "one", b"first dump\n");
    let newest = backup(&repo, "two", b"second dump\n");
    let out = repo.run(&["snapshots"]);
    assert_success("cairn snapshots", &out);
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));

    // The storage drops the newest snapshot: `latest` is the older one now.
    fs::remove_file(repo.path("repo").join("snapshots").join(&newest)).expect("delete");
    let out = repo.run(&["dump", "latest", "db.dump"]);
    assert_success("cairn dump latest", &out);
    assert_eq!(out.stdout, b"first dump\n");
    let err = stderr(&out);
    assert!(
        err.contains("warning: the newest snapshot this machine saw before")
            && err.contains(&newest[..8])
            && err.contains("is gone from the repository")
            && err.contains(&format!("`latest` is now {}", &older[..8]))
            && err.contains("run `cairn snapshots`"),
        "{err}"
    );

    // Once: the state moved on.
    let out = repo.run(&["snapshots"]);
    assert_success("cairn snapshots", &out);
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));

    // This machine's own forget of the newest: no warning.
    let third = backup(&repo, "three", b"third dump\n");
    let out = repo.run(&["forget", &third]);
    assert_success("cairn forget", &out);
    let target = repo.path("restored");
    let target = target.to_str().expect("UTF-8 temporary path");
    let out = repo.run(&["restore", "latest", "--target", target]);
    assert_success("cairn restore latest", &out);
    assert!(!stderr(&out).contains("is gone"), "{}", stderr(&out));
}
