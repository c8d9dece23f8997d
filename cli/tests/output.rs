//! Standard output that goes away: a listing whose reader closed the pipe (`cairn ls | head`)
//! ends quietly with exit 0, while any other command whose output cannot be written fails with
//! exit 1 and says so, because it stopped before finishing (e.g. `run` writes its metrics file
//! after printing its table).

mod common;

use std::process::{Command, Stdio};

use common::Repo;

/// Runs `cmd` with stdout a pipe whose reading end is closed before the command writes.
fn with_closed_stdout(mut cmd: Command) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cairn");
    // Closing the reading end at once: cairn opens the repository (milliseconds) before it
    // prints anything, so every write it makes meets a closed pipe.
    drop(child.stdout.take());
    child.wait_with_output().expect("wait for cairn")
}

#[test]
fn a_listing_stops_quietly_and_other_commands_fail_when_stdout_is_closed() {
    let repo = Repo::new();
    let data = repo.path("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("f"), b"some bytes").expect("write");
    repo.ok(&["backup", data.to_str().expect("UTF-8 path")]);

    let out = with_closed_stdout(repo.command(&["snapshots"]));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = with_closed_stdout(repo.command(&["check"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot write the output"), "{stderr}");
}
