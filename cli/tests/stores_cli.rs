//! End-to-end tests of the per-store commands through the `cairn` binary: `status` (table,
//! `--json`, exit 0 fresh / 1 alarm / 2 usage), `restore --store` and `restore --all` (exit
//! codes, piping into a restore command, usage errors before anything happens), `forget` with
//! each store's retention, and `check --store`. Store snapshots are written through the engine
//! (as `cairn run` writes them: with the store's name and a chosen time).

use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use engine::archiver::{BackupOptions, Source, backup};
use engine::backend::FileType;
use engine::progress::NoProgress;
use engine::repository::{OpenOptions, Repository};
use repo_format::{SnapshotId, SnapshotStatus};
use serde_json::Value;

const PASSWORD: &str = "test password";
const H: i64 = 3_600_000_000_000;

/// A repository and a cairn.toml in a temporary directory, which is also the working
/// directory, HOME and XDG_CONFIG_HOME of every command (so no other cairn.toml is found).
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new(stores: &str) -> Env {
        let env = Env {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        let init = env.cairn(&["init", "--kdf-memory-kib", "8", "--kdf-iterations", "1"]);
        assert!(init.status.success(), "init: {}", text(&init.stderr));
        fs::write(env.path("pw"), format!("{PASSWORD}\n")).expect("password file");
        fs::write(
            env.path("cairn.toml"),
            format!(
                "[repository]\nlocation = {:?}\npassword_file = {:?}\n\n{stores}",
                env.path("repo").display().to_string(),
                env.path("pw").display().to_string()
            ),
        )
        .expect("cairn.toml");
        env
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// `cairn ARGS` with the repository given by the environment, as other tests do.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.args(args)
            .current_dir(self.dir.path())
            .env("HOME", self.path("home"))
            .env("XDG_CONFIG_HOME", self.path("xdg"))
            .env_remove("CAIRN_CONFIG")
            .env("CAIRN_REPOSITORY", self.path("repo"))
            .env("CAIRN_PASSWORD", PASSWORD)
            .env("CAIRN_CACHE_DIR", self.path("cache"))
            .env_remove("CAIRN_PASSWORD_FILE")
            .env_remove("CAIRN_PASSWORD_COMMAND")
            .stdin(Stdio::null());
        c
    }

    fn cairn(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run cairn")
    }

    /// Opens the repository through the engine, to write store snapshots.
    fn repo(&self) -> Repository {
        let opts = OpenOptions {
            cache_dir: Some(self.path("engine-cache")),
        };
        Repository::open(
            &self.path("repo").to_string_lossy(),
            PASSWORD.as_bytes(),
            &opts,
        )
        .expect("open")
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    })
}

fn now() -> i64 {
    engine::repository::now_ns()
}

/// A store snapshot of `bytes` as `file`, `ago` nanoseconds old.
fn dump(repo: &Repository, store: &str, file: &str, bytes: &[u8], ago: i64) -> SnapshotId {
    let mut o = BackupOptions::new(Source::Stream {
        name: file.to_owned(),
        reader: Box::new(Cursor::new(bytes.to_vec())),
    });
    o.store = Some(store.to_owned());
    o.time_ns = Some(now() - ago);
    backup(repo, o, &NoProgress).expect("backup").id
}

/// Rewrites a snapshot as a failed backup.
fn fail(repo: &Repository, id: SnapshotId, why: &str) {
    let mut s = repo.load_snapshot(&id).expect("load");
    s.status = SnapshotStatus::Failed;
    s.failure = Some(why.to_owned());
    repo.save_snapshot(&s).expect("save");
    repo.block_on(repo.backend().delete(FileType::Snapshot, &id.to_hex()))
        .expect("delete");
}

fn command_store(name: &str, interval: &str, restore: &str, extra: &str) -> String {
    format!(
        "[stores.{name}]\ntype = \"command\"\ncommand = \"dump {name}\"\n{restore}\
         retention = {{ keep_last = 1 }}\ninterval = \"{interval}\"\n{extra}\n"
    )
}

fn cat_into(path: &Path) -> String {
    format!(
        "restore_command = [\"sh\", \"-c\", \"cat > {}\"]\n",
        path.display()
    )
}

#[test]
fn status_exits_0_when_fresh_1_on_an_alarm_and_2_on_usage_errors() {
    let env = Env::new(
        &[
            command_store("db", "24h", "", ""),
            command_store("cache", "6h", "", ""),
        ]
        .join("\n"),
    );
    let repo = env.repo();
    dump(&repo, "db", "db.dump", b"db", 2 * H);
    dump(&repo, "cache", "cache.dump", b"c", H);
    drop(repo);

    let out = env.cairn(&["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains("store") && table.contains("fresh"),
        "{table}"
    );
    assert!(table.contains("all 2 stores are fresh"), "{table}");
    let v = json(&env.cairn(&["status", "--json"]));
    assert_eq!(v["ok"], true);
    assert_eq!(v["stores"][0]["name"], "db");
    assert_eq!(v["stores"][0]["state"], "fresh");
    assert_eq!(v["stores"][0]["interval_seconds"], 86_400);
    assert_eq!(v["stores"][0]["overdue_after_seconds"], 108_000);

    // The config's own repository and password file, without --repo or CAIRN_PASSWORD.
    let out = env
        .command(&["status", "--json"])
        .env_remove("CAIRN_REPOSITORY")
        .env_remove("CAIRN_PASSWORD")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // cache becomes overdue (7 h 30 min), db's last run fails.
    let repo = env.repo();
    dump(&repo, "cache", "cache.dump", b"c", 8 * H);
    let ids: Vec<_> = repo
        .list_snapshots()
        .expect("list")
        .into_iter()
        .filter(|(_, s)| s.store.as_deref() == Some("cache") && s.time_ns > now() - 2 * H)
        .map(|(id, _)| id)
        .collect();
    for id in ids {
        repo.block_on(repo.backend().delete(FileType::Snapshot, &id.to_hex()))
            .expect("delete");
    }
    let f = dump(&repo, "db", "db.dump", b"half", H);
    fail(&repo, f, "pg_dump: server closed the connection");
    drop(repo);

    let out = env.cairn(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    let table = text(&out.stdout);
    for want in [
        "FAILED",
        "OVERDUE (> 7h30m)",
        "db: the last run failed",
        "pg_dump: server closed the connection",
        "2 of 2 stores need attention",
    ] {
        assert!(table.contains(want), "{want:?} not in\n{table}");
    }
    let out = env.cairn(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(v["ok"], false);
    assert_eq!(v["stores"][0]["state"], "failed");
    assert_eq!(v["stores"][0]["last_run_failed"], true);
    assert_eq!(
        v["stores"][0]["failure"]["message"],
        "pg_dump: server closed the connection"
    );
    assert_eq!(v["stores"][1]["state"], "overdue");
    assert_eq!(v["stores"][1]["overdue"], true);

    let out = env.cairn(&["status", "--store", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no store named nope"));
    assert_eq!(env.cairn(&["status", "--bogus"]).status.code(), Some(2));
}

#[test]
fn status_of_a_store_never_backed_up_is_an_alarm() {
    let env = Env::new(&command_store("db", "24h", "", ""));
    let out = env.cairn(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(v["stores"][0]["state"], "never");
    assert_eq!(v["stores"][0]["newest"], Value::Null);
}

#[test]
fn restore_store_pipes_into_the_restore_command_and_restore_all_reports_failures() {
    let out_db = std::env::temp_dir().join(format!("cairn-stores-cli-{}.dump", std::process::id()));
    let env = Env::new(
        &[
            command_store("db", "24h", &cat_into(&out_db), "restore_order = 1"),
            command_store(
                "broken",
                "24h",
                "restore_command = [\"sh\", \"-c\", \"cat > /dev/null; exit 4\"]\n",
                "restore_order = 2",
            ),
            command_store("plain", "24h", "", "restore_order = 3"),
        ]
        .join("\n"),
    );
    let repo = env.repo();
    let data: Vec<u8> = (0..500_000u32).flat_map(|i| i.to_le_bytes()).collect();
    dump(&repo, "db", "db.dump", b"older", 3 * H);
    dump(&repo, "db", "db.dump", &data, 2 * H);
    dump(&repo, "broken", "broken.dump", b"b", H);
    dump(&repo, "plain", "plain.dump", b"plain bytes", H);
    drop(repo);

    let out = env.cairn(&["restore", "--store", "db", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v = json(&out);
    assert_eq!(v["action"], "piped");
    assert_eq!(v["bytes"], data.len());
    assert!(fs::read(&out_db).expect("restored") == data);
    let _ = fs::remove_file(&out_db);

    // Usage errors: exit 2, nothing run.
    for args in [
        &["restore", "--store", "db", "--target", "x"][..],
        &["restore", "--store", "plain"],
        &["restore", "--store", "db", "--in-place"],
        &["restore", "--store", "nope"],
        &["restore", "--all"],
        &["restore", "latest", "--target", "x", "--in-place"],
        &["restore"],
        &["restore", "--keep-going"],
    ] {
        let out = env.cairn(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    assert!(!out_db.exists());

    let out = env.cairn(&["restore", "--store", "broken"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("failed (exit status: 4)"),
        "{}",
        text(&out.stderr)
    );

    let target = env.path("dr");
    let t = target.to_str().expect("utf-8");
    let out = env.cairn(&["restore", "--all", "--target", t]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("FAILED: store broken"), "{err}");
    assert!(
        err.contains("restored 1 of 3 stores; failed: broken; not attempted"),
        "{err}"
    );
    assert!(
        !target.join("plain/plain.dump").exists(),
        "stopped at broken"
    );

    let out = env.cairn(&["restore", "--all", "--keep-going", "--target", t, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(v["ok"], false);
    let ok: Vec<bool> = v["stores"]
        .as_array()
        .expect("stores")
        .iter()
        .map(|s| s["ok"] == true)
        .collect();
    assert_eq!(ok, [true, false, true]);
    assert_eq!(
        fs::read(target.join("plain/plain.dump")).expect("plain"),
        b"plain bytes"
    );
    let _ = fs::remove_file(&out_db);
}

#[test]
fn forget_applies_each_stores_retention_and_check_store_checks_only_its_data() {
    let env = Env::new(
        &[
            command_store("db", "1h", "", ""),
            command_store("logs", "1h", "", ""),
        ]
        .join("\n"),
    );
    let repo = env.repo();
    for i in 1..=3 {
        dump(&repo, "db", "db.dump", format!("db {i}").as_bytes(), i * H);
    }
    let logs = dump(&repo, "logs", "logs.dump", b"logs", H);
    drop(repo);
    let plain = env
        .command(&["backup", "--stdin", "--stdin-name", "x"])
        .output()
        .expect("run");
    assert!(plain.status.success());

    let out = env.cairn(&["forget", "--dry-run", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v = json(&out);
    assert_eq!(v["removed"], 2);
    assert_eq!(v["groups"][0]["group"]["store"], "db");
    assert_eq!(v["untouched"]["without_store"], 1);
    let out = env.cairn(&["forget"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("store db:"), "{s}");
    assert!(
        s.contains("left alone: 1 snapshots that belong to no store"),
        "{s}"
    );
    let v = json(&env.cairn(&["snapshots", "--json"]));
    assert_eq!(
        v.as_array().expect("list").len(),
        3,
        "db 1, logs 1, plain 1"
    );
    let out = env.cairn(&["forget", "--store", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("known stores: db, logs"));

    // Lose logs' data: check --store db is clean, check and check --store logs are not.
    let repo = env.repo();
    let snap = repo.load_snapshot(&logs).expect("load");
    let node = engine::restorer::find_node(&repo, &snap.tree, b"logs.dump").expect("node");
    let repo_format::NodeKind::File {
        content: repo_format::Content::Direct(blobs),
    } = node.kind
    else {
        panic!("small file");
    };
    let pack = repo.locate_blob(&blobs[0]).expect("locate").pack;
    repo.block_on(repo.backend().delete(FileType::Pack, &pack.to_hex()))
        .expect("delete pack");
    drop(repo);
    let out = env.cairn(&["check", "--store", "db", "--json"]);
    let v = json(&out);
    assert_eq!(v["stores"], serde_json::json!(["db"]));
    assert_eq!(v["stats"]["snapshots_checked"], 1);
    // The structure check still finds the missing pack, but no snapshot of db is affected.
    let affects: Vec<String> = v["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .flat_map(|e| e["affects"].as_array().cloned().unwrap_or_default())
        .map(|a| a.as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(affects.is_empty(), "{affects:?}");
    let out = env.cairn(&["check", "--store", "logs"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("logs.dump"),
        "{}",
        text(&out.stderr)
    );
    let out = env.cairn(&["check", "--store", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no store named nope"));
}
