//! `cairn run` in the engine: stores of a cairn.toml backed up into a repository, with dump
//! commands written as `sh -c` scripts (success, failure midway, a failing `before` hook), a
//! directory store with excludes, hooks' variables, and the metrics of a run.

use std::fs;
use std::path::Path;

use engine::archiver::{BackupOptions, Source, backup};
use engine::progress::NoProgress;
use engine::repository::Repository;
use engine::restorer::{dump_content, find_node};
use engine::retention::apply_policy;
use engine::stores::metrics::backup_metrics;
use engine::stores::run::{RunStatus, run_stores};
use engine::stores::{Config, parse};
use repo_format::{Snapshot, SnapshotId, SnapshotStatus};

mod common;

use common::{Env, env};

/// A cairn.toml for the test repository with `stores` appended (its password file is written).
fn config(e: &Env, stores: &str) -> Config {
    let pw = e.root.join("password");
    fs::write(&pw, common::PASSWORD).expect("password file");
    let text = format!(
        "[repository]\nlocation = {:?}\npassword_file = {:?}\n\n{stores}",
        e.repo_path,
        pw.display().to_string()
    );
    let file = e.root.join("cairn.toml");
    parse(&text, &file, &|_| None).unwrap_or_else(|errs| panic!("{text}\n{errs}"))
}

/// The file `name` of snapshot `id`.
fn dump(repo: &Repository, id: &SnapshotId, name: &str) -> Vec<u8> {
    let snap = repo.load_snapshot(id).expect("snapshot");
    let node = find_node(repo, &snap.tree, name.as_bytes()).expect("node");
    let mut out = Vec::new();
    dump_content(repo, &node, &mut out, &NoProgress).expect("dump");
    out
}

/// `["sh", "-c", SCRIPT]` for cairn.toml (`$` doubled: cairn.toml expands `${VAR}` itself).
fn sh(script: &str) -> String {
    let script = script.replace('$', "$$");
    format!("[\"sh\", \"-c\", {script:?}]")
}

#[test]
fn command_stores_succeed_fail_midway_and_fail_before_without_stopping_the_others() {
    let e = env();
    let log = e.root.join("hooks.log");
    let stores = format!(
        r#"
[stores.good]
type = "command"
command = {good}
retention = {{ keep_last = 3 }}
interval = "24h"
tags = ["db"]
env = {{ GREETING = "hello" }}
after = {after}

[stores.broken]
type = "command"
command = {broken}
file_name = "broken.sql"
retention = {{ keep_last = 3 }}
interval = "24h"
on_failure = {on_failure}

[stores.blocked]
type = "command"
command = {never}
retention = {{ keep_last = 3 }}
interval = "24h"
before = {before}
on_failure = {on_failure}

[stores.late]
type = "command"
command = "echo late"
retention = {{ keep_last = 3 }}
interval = "24h"
"#,
        good = sh("echo \"$GREETING from $CAIRN_STORE\"; head -c 300000 /dev/zero"),
        broken = sh(
            "echo 'COPY rows'; head -c 200000 /dev/urandom; echo 'pg_dump: error: connection lost' >&2; exit 2"
        ),
        never = sh(&format!(
            "echo ran > {}",
            e.root.join("never-ran").display()
        )),
        before = sh("echo 'cannot lock' >&2; exit 7"),
        after = sh(&format!(
            "echo \"after $CAIRN_STORE $CAIRN_STATUS $CAIRN_SNAPSHOT_ID\" >> {}",
            log.display()
        )),
        on_failure = sh(&format!(
            "echo \"on_failure $CAIRN_STORE $CAIRN_STATUS [$CAIRN_SNAPSHOT_ID] $CAIRN_ERROR\" | head -1 >> {}",
            log.display()
        )),
    );
    let cfg = config(&e, &stores);
    let repo = e.open();
    let report = run_stores(&cfg, &repo, &[], &NoProgress).expect("run");
    let by = |name: &str| {
        report
            .stores
            .iter()
            .find(|r| r.store == name)
            .unwrap_or_else(|| panic!("{name} ran"))
    };
    assert_eq!(report.stores.len(), 4);
    assert!(report.any_failed());

    // good: a complete snapshot of the command's output, tagged and named.
    let good = by("good");
    assert_eq!(good.status, RunStatus::Ok, "{:?}", good.error);
    let gid = good.snapshot.expect("snapshot");
    let out = dump(&repo, &gid, "good.dump");
    assert!(out.starts_with(b"hello from good\n"));
    assert_eq!(out.len(), 16 + 300_000);
    assert_eq!(good.bytes_read, out.len() as u64);
    assert_eq!(good.files, 1);
    let snap = repo.load_snapshot(&gid).expect("load");
    assert_eq!(snap.store.as_deref(), Some("good"));
    assert_eq!(snap.tags, vec!["db".to_string(), "good".to_string()]);
    assert_eq!(snap.status, SnapshotStatus::Complete);
    assert_eq!(snap.hostname, engine::host::hostname());
    assert_eq!(
        snap.chunker.as_ref().map(|c| c.name.as_str()),
        Some("stream")
    );

    // broken: a failed snapshot holding what was read, with the failure described.
    let broken = by("broken");
    assert_eq!(broken.status, RunStatus::Failed);
    let bid = broken.snapshot.expect("a failed snapshot");
    let partial = dump(&repo, &bid, "broken.sql");
    assert_eq!(partial.len(), 10 + 200_000);
    assert!(partial.starts_with(b"COPY rows\n"));
    let bsnap = repo.load_snapshot(&bid).expect("load");
    assert_eq!(bsnap.status, SnapshotStatus::Failed);
    assert_eq!(bsnap.store.as_deref(), Some("broken"));
    let failure = bsnap.failure.expect("failure text");
    assert!(failure.contains("exit status: 2"), "{failure}");
    assert!(
        failure.contains("pg_dump: error: connection lost"),
        "{failure}"
    );
    assert_eq!(broken.error.as_deref(), Some(failure.as_str()));

    // blocked: the before hook failed, so the dump never ran and nothing was written.
    let blocked = by("blocked");
    assert_eq!(blocked.status, RunStatus::Failed);
    assert!(blocked.snapshot.is_none());
    let err = blocked.error.as_deref().expect("error");
    assert!(
        err.contains("before hook") && err.contains("cannot lock") && err.contains("not attempted"),
        "{err}"
    );
    assert!(!e.root.join("never-ran").exists());

    // late: ran after the failures.
    assert_eq!(by("late").status, RunStatus::Ok);
    assert_eq!(
        dump(&repo, &by("late").snapshot.expect("id"), "late.dump"),
        b"late\n"
    );

    // Hooks saw their variables.
    let log = fs::read_to_string(&log).expect("hook log");
    assert!(
        log.contains(&format!("after good ok {}", gid.0.to_hex())),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "on_failure broken failed [{}] `sh -c",
            bid.0.to_hex()
        )),
        "{log}"
    );
    assert!(
        log.contains("on_failure blocked failed [] the before hook"),
        "{log}"
    );

    // Retention does not count the failed snapshot for keep-last.
    let snaps = repo.list_snapshots().expect("list");
    assert_eq!(snaps.len(), 3);
    let policy = engine::retention::KeepPolicy {
        last: Some(1),
        ..Default::default()
    };
    let broken_only: Vec<(SnapshotId, Snapshot)> = snaps
        .iter()
        .filter(|(_, s)| s.store.as_deref() == Some("broken"))
        .cloned()
        .collect();
    let d = apply_policy(&broken_only, &policy, i64::MAX);
    assert!(!d[0].keep, "a failed snapshot fills no keep-last slot");

    // Only the named stores run.
    let again = run_stores(&cfg, &repo, &["late".to_string()], &NoProgress).expect("run");
    assert_eq!(again.stores.len(), 1);
    let e = run_stores(&cfg, &repo, &["nope".to_string()], &NoProgress).expect_err("unknown");
    assert!(e.to_string().contains("good, broken, blocked, late"), "{e}");
}

#[test]
fn a_killed_dump_command_leaves_a_failed_snapshot_and_backup_keep_failed_too() {
    let e = env();
    let repo = e.open();
    // A command killed by a signal midway.
    let src = Source::Command {
        name: "db.dump".into(),
        argv: vec![
            "sh".into(),
            "-c".into(),
            "printf partial; echo dying >&2; kill -9 $$".into(),
        ],
        env: vec![],
    };
    let plain = backup(&repo, BackupOptions::new(src), &NoProgress).expect_err("fails");
    assert!(
        plain.to_string().contains("no snapshot was written"),
        "{plain}"
    );
    assert!(plain.to_string().contains("dying"), "{plain}");
    assert!(repo.list_snapshots().expect("list").is_empty());

    let src = Source::Command {
        name: "db.dump".into(),
        argv: vec![
            "sh".into(),
            "-c".into(),
            "printf partial; echo dying >&2; kill -9 $$".into(),
        ],
        env: vec![("X".into(), "y".into())],
    };
    let mut opts = BackupOptions::new(src);
    opts.keep_failed = true;
    let r = backup(&repo, opts, &NoProgress).expect("a failed snapshot");
    assert_eq!(r.snapshot.status, SnapshotStatus::Failed);
    let failure = r.snapshot.failure.as_deref().expect("failure");
    assert!(failure.contains("signal: 9"), "{failure}");
    assert!(failure.contains("dying"), "{failure}");
    assert_eq!(dump(&repo, &r.id, "db.dump"), b"partial");
    assert_eq!(r.snapshot.store, None);
}

fn write(path: &Path, data: &[u8]) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, data).expect("write");
}

#[test]
fn directory_store_leaves_out_what_its_excludes_match() {
    let e = env();
    let data = e.root.join("n8n");
    for (p, d) in [
        ("config", &b"{}"[..]),
        ("database.sqlite", b"sqlite"),
        ("app.log", b"log"),
        ("nodes/x/run.log", b"log"),
        ("cache/blob", b"cache"),
        ("nodes/cache/blob", b"cache"),
        ("nodes/cache.txt", b"a file named like the dir"),
        ("tmp/t", b"tmp"),
        ("nodes/tmp/t", b"kept: /tmp is anchored"),
        ("binaryData/a/b.bin", b"bin"),
    ] {
        write(&data.join(p), d);
    }
    // A file named `cache2` with the dir-only pattern `cache2/` stays.
    write(&data.join("cache2"), b"file");
    let cfg = config(
        &e,
        &format!(
            r#"
[stores.n8n]
type = "directory"
paths = [{:?}]
exclude = ["*.log", "cache/", "cache2/", "/tmp", "binaryData/**"]
retention = {{ keep_daily = 7 }}
interval = "24h"
"#,
            data.display().to_string()
        ),
    );
    let repo = e.open();
    let report = run_stores(&cfg, &repo, &[], &NoProgress).expect("run");
    let r = &report.stores[0];
    assert_eq!(r.status, RunStatus::Ok, "{:?} {:?}", r.error, r.warnings);
    // app.log, nodes/x/run.log, cache, nodes/cache, tmp, binaryData.
    assert_eq!(r.excluded, 6);
    let snap = repo.load_snapshot(&r.snapshot.expect("id")).expect("load");
    assert_eq!(snap.chunker.as_ref().map(|c| c.name.as_str()), Some("file"));
    let mut listed = Vec::new();
    engine::ls::walk(&repo, &snap.tree, &mut |path, _node| {
        listed.push(String::from_utf8_lossy(path).into_owned());
        Ok(())
    })
    .expect("ls");
    listed.sort();
    let want = [
        "n8n",
        "n8n/cache2",
        "n8n/config",
        "n8n/database.sqlite",
        "n8n/nodes",
        "n8n/nodes/cache.txt",
        "n8n/nodes/tmp",
        "n8n/nodes/tmp/t",
        "n8n/nodes/x",
    ];
    assert_eq!(listed, want);
    assert_eq!(r.files, 5);
}

#[test]
fn metrics_cover_every_store_from_the_run_and_the_repository() {
    let e = env();
    let cfg = config(
        &e,
        &format!(
            r#"
[stores.pg]
type = "command"
command = "echo dump"
retention = {{ keep_last = 3 }}
interval = "24h"

[stores.bad]
type = "command"
command = {bad}
retention = {{ keep_last = 3 }}
interval = "24h"

[stores.idle]
type = "command"
command = "echo idle"
retention = {{ keep_last = 3 }}
interval = "24h"

[stores.never]
type = "command"
command = "echo never"
retention = {{ keep_last = 3 }}
interval = "24h"
"#,
            bad = sh("echo some; exit 1")
        ),
    );
    let repo = e.open();
    // `idle` ran once earlier; this run leaves it (and `never`) out.
    run_stores(&cfg, &repo, &["idle".to_string()], &NoProgress).expect("earlier run");
    let report = run_stores(&cfg, &repo, &["pg".into(), "bad".into()], &NoProgress).expect("run");
    let snaps = repo.list_snapshots().expect("list");
    let text = backup_metrics(&cfg, &snaps, &report);
    let sample = |metric: &str, store: &str| {
        let prefix = format!("{metric}{{store=\"{store}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(str::to_owned)
    };
    assert_eq!(sample("cairn_backup_success", "pg").as_deref(), Some("1"));
    assert_eq!(sample("cairn_backup_success", "bad").as_deref(), Some("0"));
    assert_eq!(sample("cairn_backup_success", "idle").as_deref(), Some("1"));
    assert_eq!(sample("cairn_backup_success", "never"), None);
    assert_eq!(
        sample("cairn_backup_bytes_read", "pg").as_deref(),
        Some("5")
    );
    assert_eq!(
        sample("cairn_backup_bytes_read", "idle").as_deref(),
        Some("5")
    );
    assert_eq!(
        sample("cairn_backup_bytes_read", "bad").as_deref(),
        Some("5")
    );
    assert_eq!(sample("cairn_backup_files", "pg").as_deref(), Some("1"));
    let now = jiff::Timestamp::now().as_second();
    for store in ["pg", "idle"] {
        let t: i64 = sample("cairn_backup_last_success_timestamp_seconds", store)
            .expect("timestamp")
            .parse()
            .expect("integer");
        assert!((now - 600..=now + 1).contains(&t), "{store}: {t} vs {now}");
    }
    for store in ["bad", "never"] {
        assert_eq!(
            sample("cairn_backup_last_success_timestamp_seconds", store).as_deref(),
            Some("0")
        );
    }
    let secs: f64 = sample("cairn_backup_duration_seconds", "pg")
        .expect("duration")
        .parse()
        .expect("number");
    assert!(secs > 0.0 && secs < 600.0);
    // Well-formed: each family has HELP and TYPE, every other line is a sample.
    for line in text.lines() {
        assert!(
            line.starts_with("# HELP cairn_")
                || line.starts_with("# TYPE cairn_") && line.ends_with(" gauge")
                || line.starts_with("cairn_backup_") && line.contains("{store=\""),
            "{line}"
        );
    }
    assert_eq!(text.matches("# TYPE").count(), 7);

    // Written atomically: no temporary file is left behind.
    let dir = e.root.join("metrics");
    fs::create_dir(&dir).expect("mkdir");
    let path = dir.join("cairn.prom");
    engine::stores::metrics::write_atomic(&path, &text).expect("write");
    engine::stores::metrics::write_atomic(&path, "x\n").expect("overwrite");
    assert_eq!(fs::read_to_string(&path).expect("read"), "x\n");
    assert_eq!(fs::read_dir(&dir).expect("ls").count(), 1);
    let e = engine::stores::metrics::write_atomic(&e.root.join("no/such/dir/m.prom"), "x")
        .expect_err("missing dir");
    assert!(e.to_string().contains("metrics file"), "{e}");
}
