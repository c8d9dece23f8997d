//! Helpers shared by the `cairn` binary's integration tests that need more than one file:
//! a fresh repository driven through the real binary ([`Repo`]), skip-or-fail for tests whose
//! external programs are missing ([`skip_or_fail`]), and private database servers
//! ([`servers`]).
//!
//! A test file includes them with `mod common;`. Tests written against today's commands use
//! [`Repo::command`] with `backup --stdin-from-command` and `dump`; tests of `cairn run` can use
//! the same [`Repo::command`] (it only sets the repository, password and cache), write their
//! `cairn.toml` under [`Repo::path`], and pass the servers' environment
//! (`PgServer::pg_env`, `RedisServer::port`) to it.

#![allow(dead_code)]

pub mod runs;
pub mod servers;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The password of every test repository.
pub const PASSWORD: &str = "test password";

/// Prints why a test does nothing and returns, or panics under CI (`CI=true`), where a missing
/// program means the machine was not set up (scripts/setup installs it) and the run must be red.
pub fn skip_or_fail(test: &str, reason: &str) {
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    if ci {
        panic!("{test}: {reason} (CI=true: a test that cannot run fails; run scripts/setup)");
    }
    eprintln!("SKIPPED: {test}: {reason} (run scripts/setup to install it)");
}

/// A repository in a temporary directory, created with the cheapest legal KDF, with its own
/// cache directory; every command runs the real `cairn` binary.
pub struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    /// Initialises a new repository.
    pub fn new() -> Repo {
        let repo = Repo {
            dir: tempfile::Builder::new()
                .prefix("cairn-repo-")
                .tempdir()
                .expect("create a temporary directory for the repository"),
        };
        repo.ok(&["init", "--kdf-memory-kib", "8", "--kdf-iterations", "1"]);
        repo
    }

    /// A path inside the test's temporary directory (beside the repository and cache).
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// `cairn ARGS` with the repository, password and cache set through the environment, and
    /// no other password source. Stdio is left to the caller.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.args(args)
            .env("CAIRN_REPOSITORY", self.path("repo"))
            .env("CAIRN_PASSWORD", PASSWORD)
            .env("CAIRN_CACHE_DIR", self.path("cache"))
            .env_remove("CAIRN_PASSWORD_FILE")
            .env_remove("CAIRN_PASSWORD_COMMAND");
        c
    }

    /// Runs `cairn ARGS` with no stdin and returns its output, whatever the exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run cairn {args:?}: {e}"))
    }

    /// Runs `cairn ARGS`, asserts success and returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_success(&format!("cairn {args:?}"), &out);
        String::from_utf8(out.stdout).expect("cairn printed non-UTF-8 output")
    }

    /// Runs `cairn backup --json ARGS` with this stdin, asserts success and returns the summary.
    pub fn backup(&self, args: &[&str], stdin: Stdio) -> Backup {
        let mut all = vec!["backup", "--json"];
        all.extend_from_slice(args);
        let started = Instant::now();
        let out = self
            .command(&all)
            .stdin(stdin)
            .output()
            .unwrap_or_else(|e| panic!("cannot run cairn {all:?}: {e}"));
        let elapsed = started.elapsed();
        assert_success(&format!("cairn {all:?}"), &out);
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("backup --json prints one JSON object");
        let num = |k: &str| {
            v["summary"][k]
                .as_u64()
                .unwrap_or_else(|| panic!("backup --json summary has no {k}: {v}"))
        };
        Backup {
            id: v["snapshot_id"]
                .as_str()
                .expect("backup --json has snapshot_id")
                .to_string(),
            bytes_read: num("bytes_read"),
            data_added: num("data_added"),
            data_added_stored: num("data_added_stored"),
            elapsed,
        }
    }

    /// The ids of all snapshots, oldest first as `cairn snapshots --json` lists them.
    pub fn snapshot_ids(&self) -> Vec<String> {
        let v: serde_json::Value =
            serde_json::from_str(&self.ok(&["snapshots", "--json"])).expect("snapshots --json");
        v.as_array()
            .expect("snapshots --json is an array")
            .iter()
            .map(|s| s["id"].as_str().expect("snapshot id").to_string())
            .collect()
    }

    /// `cairn dump SNAPSHOT PATH | CONSUMER`: streams the file straight into the consumer's
    /// stdin (nothing touches the disk), asserts both succeed, and returns the consumer's
    /// output.
    pub fn dump_into(&self, snapshot: &str, path: &str, mut consumer: Command) -> Output {
        let mut dump = self
            .command(&["dump", snapshot, path])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cairn dump");
        let pipe = dump.stdout.take().expect("cairn dump stdout");
        let consumer_out = consumer
            .stdin(Stdio::from(pipe))
            .output()
            .unwrap_or_else(|e| panic!("cannot run {consumer:?}: {e}"));
        let dump_out = dump.wait_with_output().expect("wait for cairn dump");
        assert_success(&format!("cairn dump {snapshot} {path}"), &dump_out);
        assert_success(&format!("{consumer:?} (fed by cairn dump)"), &consumer_out);
        consumer_out
    }

    /// `cairn dump SNAPSHOT PATH` into memory.
    pub fn dump(&self, snapshot: &str, path: &str) -> Vec<u8> {
        let out = self.run(&["dump", snapshot, path]);
        assert_success(&format!("cairn dump {snapshot} {path}"), &out);
        out.stdout
    }
}

/// What one `backup --json` reported.
#[derive(Debug, Clone)]
pub struct Backup {
    /// The snapshot's id.
    pub id: String,
    /// Bytes of input read (the dump's size for a stdin backup).
    pub bytes_read: u64,
    /// Bytes of new blobs, before compression.
    pub data_added: u64,
    /// Bytes the new blobs take in the repository (compressed, encrypted).
    pub data_added_stored: u64,
    /// Wall time of the `cairn` process.
    pub elapsed: Duration,
}

impl Backup {
    /// One line for the test log.
    pub fn describe(&self, what: &str) -> String {
        format!(
            "{what}: read {}, added {} ({:.1}% of read; {} stored) in {:.2}s",
            mib(self.bytes_read),
            mib(self.data_added),
            100.0 * self.data_added as f64 / self.bytes_read.max(1) as f64,
            mib(self.data_added_stored),
            self.elapsed.as_secs_f64()
        )
    }
}

/// Panics with the command's stderr unless it exited 0.
pub fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `12.34 MiB`.
pub fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1 << 20) as f64)
}

/// Prints how long each phase of a test took, as it goes.
pub struct Phases {
    start: Instant,
    last: Instant,
    test: &'static str,
}

impl Phases {
    /// Starts the clock.
    pub fn new(test: &'static str) -> Phases {
        let now = Instant::now();
        Phases {
            start: now,
            last: now,
            test,
        }
    }

    /// Prints the time since the previous mark.
    pub fn mark(&mut self, what: &str) {
        let now = Instant::now();
        eprintln!(
            "[{}] {what}: {:.2}s (total {:.1}s)",
            self.test,
            (now - self.last).as_secs_f64(),
            (now - self.start).as_secs_f64()
        );
        self.last = now;
    }
}
