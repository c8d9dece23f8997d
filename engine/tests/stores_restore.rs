//! `restore --store` and `restore --all` on a real repository: which snapshot is picked, the
//! dump piped into a restore command (with the store's env) and compared byte for byte, failing
//! commands, dump files, directory stores into a target and in place, and the order, stop and
//! keep-going of `--all`.

mod common;
mod stores_common;

use std::fs;
use std::path::Path;

use common::{Rng, env};
use engine::ErrorKind;
use engine::progress::NoProgress;
use engine::stores::restore::{
    RestoreAllOptions, Restored, StoreRestoreOptions, check_options, plan_all, restore_all,
    restore_store,
};
use stores_common::{H, config, directory, dump, fail, q};

const T0: i64 = 1_793_534_400_000_000_000;

/// A command store whose restore command writes its stdin to `$OUT` (from the store's env).
fn piping_store(name: &str, out: &Path, extra: &str) -> String {
    format!(
        "[stores.{name}]\ntype = \"command\"\ncommand = \"pg_dump db\"\n\
         restore_command = [\"sh\", \"-c\", \"cat > \\\"$$OUT\\\"\"]\n\
         env = {{ OUT = {} }}\nretention = {{ keep_last = 3 }}\ninterval = \"24h\"\n{extra}\n",
        q(&out.to_string_lossy())
    )
}

#[test]
fn restore_store_pipes_the_newest_complete_dump_into_the_restore_command() {
    let env = env();
    let repo = env.open();
    let mut rng = Rng(11);
    let out = env.root.join("restored.dump");
    let cfg = config(&piping_store("postgres", &out, ""));
    let store = cfg.store("postgres").expect("store");
    let old = rng.bytes(300_000);
    let new = rng.bytes(2_000_000);
    let old_id = dump(&repo, "postgres", "postgres.dump", &old, T0);
    dump(&repo, "postgres", "postgres.dump", &new, T0 + H);
    // A newer failed run, and a newer snapshot of another store: neither is picked.
    let failed = fail(
        &repo,
        dump(&repo, "postgres", "postgres.dump", b"partial", T0 + 2 * H),
        "pg_dump exited with status 1",
    );
    let other = dump(&repo, "other", "other.dump", b"x", T0 + 3 * H);

    let r = restore_store(&repo, store, &StoreRestoreOptions::default(), &NoProgress)
        .expect("restore the newest complete snapshot");
    assert!(matches!(r.restored, Restored::Piped { bytes, .. } if bytes == new.len() as u64));
    assert_eq!(r.snapshot.time_ns, T0 + H);
    assert!(
        fs::read(&out).expect("restored file") == new,
        "piped bytes differ"
    );

    // An older snapshot by id.
    let opts = StoreRestoreOptions {
        snapshot: Some(old_id.to_hex()[..12].to_owned()),
        ..StoreRestoreOptions::default()
    };
    restore_store(&repo, store, &opts, &NoProgress).expect("restore by id");
    assert!(fs::read(&out).expect("restored file") == old);

    // Another store's snapshot, and a failed one, are refused.
    for (id, why) in [(other, "belongs to store other"), (failed, "failed backup")] {
        let opts = StoreRestoreOptions {
            snapshot: Some(id.to_hex()),
            ..StoreRestoreOptions::default()
        };
        let e = restore_store(&repo, store, &opts, &NoProgress).expect_err(why);
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains(why), "{e}");
    }
}

#[test]
fn a_failing_or_early_exiting_restore_command_fails_the_restore() {
    let env = env();
    let repo = env.open();
    let mut rng = Rng(12);
    let cfg = config(
        "[stores.bad]\ntype = \"command\"\ncommand = \"dump\"\n\
         restore_command = [\"sh\", \"-c\", \"cat > /dev/null; echo boom >&2; exit 7\"]\n\
         retention = \"forever\"\ninterval = \"1h\"\n\n\
         [stores.early]\ntype = \"command\"\ncommand = \"dump\"\nrestore_command = \"true\"\n\
         retention = \"forever\"\ninterval = \"1h\"\n\n\
         [stores.missing]\ntype = \"command\"\ncommand = \"dump\"\n\
         restore_command = \"/nonexistent/restore-tool\"\n\
         retention = \"forever\"\ninterval = \"1h\"\n\n\
         [stores.never]\ntype = \"command\"\ncommand = \"dump\"\nrestore_command = \"cat\"\n\
         retention = \"forever\"\ninterval = \"1h\"\n",
    );
    // More than a pipe buffer, so an early exit is noticed while writing.
    let data = rng.bytes(4_000_000);
    for name in ["bad", "early", "missing"] {
        dump(&repo, name, &format!("{name}.dump"), &data, T0);
    }
    let run = |name: &str| {
        let store = cfg.store(name).expect("store");
        restore_store(&repo, store, &StoreRestoreOptions::default(), &NoProgress).expect_err(name)
    };
    let e = run("bad");
    assert_eq!(e.kind(), ErrorKind::Command);
    assert!(e.to_string().contains("failed (exit status: 7)"), "{e}");
    let e = run("early");
    assert_eq!(e.kind(), ErrorKind::Command);
    assert!(
        e.to_string().contains("without reading the whole dump"),
        "{e}"
    );
    let e = run("missing");
    assert!(
        e.to_string().contains("cannot start the restore command"),
        "{e}"
    );
    let e = run("never");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains("no complete snapshot"), "{e}");
}

#[test]
fn dump_files_and_directories_go_to_the_target_or_back_in_place() {
    let env = env();
    let repo = env.open();
    let mut rng = Rng(13);
    let live = env.root.join("live");
    let app = live.join("app");
    fs::create_dir_all(app.join("sub")).expect("mkdir");
    let a = rng.bytes(100_000);
    fs::write(app.join("a.bin"), &a).expect("write");
    fs::write(app.join("sub/b.txt"), b"bee").expect("write");
    // Metadata that must come back: a mode and a modification time of the file's own.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(app.join("sub/b.txt"), fs::Permissions::from_mode(0o640)).expect("chmod");
    let mtime = filetime::FileTime::from_unix_time(1_700_000_123, 456_000_000);
    filetime::set_file_mtime(app.join("sub/b.txt"), mtime).expect("mtime");
    let cfg = config(&format!(
        "[stores.files]\ntype = \"directory\"\npaths = [{}]\nretention = \"forever\"\n\
         interval = \"1d\"\n\n[stores.rdb]\ntype = \"redis\"\nrdb_path = \"/var/lib/redis/dump.rdb\"\n\
         retention = \"forever\"\ninterval = \"6h\"\n",
        q(&app.to_string_lossy())
    ));
    let rdb = rng.bytes(50_000);
    dump(&repo, "rdb", "rdb.rdb", &rdb, T0);
    directory(&repo, "files", std::slice::from_ref(&app), T0);

    // Options that do not fit the store are refused before anything is read.
    let files = cfg.store("files").expect("files");
    let rdb_store = cfg.store("rdb").expect("rdb");
    let none = StoreRestoreOptions::default();
    for (store, opts, says) in [
        (files, none.clone(), "give --target DIR"),
        (rdb_store, none.clone(), "has no restore_command"),
        (
            rdb_store,
            StoreRestoreOptions {
                in_place: true,
                ..none.clone()
            },
            "--in-place is for directory stores",
        ),
        (
            files,
            StoreRestoreOptions {
                in_place: true,
                target: Some(env.root.join("t")),
                ..none.clone()
            },
            "not both",
        ),
    ] {
        let e = check_options(store, &opts).expect_err(says);
        assert!(e.to_string().contains(says), "{e}");
    }

    let target = env.root.join("target");
    let to = |t: &str| StoreRestoreOptions {
        target: Some(target.join(t)),
        verify: true,
        ..StoreRestoreOptions::default()
    };
    let r = restore_store(&repo, rdb_store, &to("r"), &NoProgress).expect("dump file");
    assert!(
        matches!(&r.restored, Restored::File { path, .. } if *path == target.join("r/rdb.rdb"))
    );
    assert!(fs::read(target.join("r/rdb.rdb")).expect("rdb") == rdb);

    let r = restore_store(&repo, files, &to("d"), &NoProgress).expect("directory");
    assert!(r.is_complete());
    assert!(fs::read(target.join("d/app/a.bin")).expect("a") == a);
    assert_eq!(fs::read(target.join("d/app/sub/b.txt")).expect("b"), b"bee");
    let meta = fs::metadata(target.join("d/app/sub/b.txt")).expect("metadata");
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640, "mode restored");
    assert_eq!(
        filetime::FileTime::from_last_modification_time(&meta),
        mtime,
        "mtime restored"
    );

    // In place: damaged files are put back; files the snapshot does not have stay.
    fs::write(app.join("a.bin"), b"overwritten").expect("write");
    fs::remove_file(app.join("sub/b.txt")).expect("rm");
    fs::write(app.join("new.txt"), b"new").expect("write");
    let opts = StoreRestoreOptions {
        in_place: true,
        ..StoreRestoreOptions::default()
    };
    let r = restore_store(&repo, files, &opts, &NoProgress).expect("in place");
    assert!(
        matches!(&r.restored, Restored::Directory { paths, .. } if *paths == vec![app.clone()])
    );
    assert!(fs::read(app.join("a.bin")).expect("a") == a);
    assert_eq!(fs::read(app.join("sub/b.txt")).expect("b"), b"bee");
    assert_eq!(fs::read(app.join("new.txt")).expect("new"), b"new");
}

/// Three stores whose restore commands append their name to one log, in restore_order
/// 3, 1, (none), 2.
fn ordered(log: &Path, failing: &str) -> String {
    let mut text = String::new();
    for (name, order) in [("c", Some(3)), ("a", Some(1)), ("z", None), ("b", Some(2))] {
        let exit = if name == failing { "exit 1" } else { "exit 0" };
        text.push_str(&format!(
            "[stores.{name}]\ntype = \"command\"\ncommand = \"dump\"\n\
             restore_command = [\"sh\", \"-c\", \"cat > /dev/null; echo {name} >> {}; {exit}\"]\n\
             retention = \"forever\"\ninterval = \"1h\"\n{}\n",
            log.display(),
            order.map_or(String::new(), |o| format!("restore_order = {o}\n"))
        ));
    }
    text
}

#[test]
fn restore_all_follows_restore_order_and_stops_at_the_first_failure_unless_keep_going() {
    let env = env();
    let repo = env.open();
    for name in ["a", "b", "c", "z"] {
        dump(&repo, name, &format!("{name}.dump"), name.as_bytes(), T0);
    }
    let log = env.root.join("order.log");
    let read_log = || fs::read_to_string(&log).unwrap_or_default();

    let cfg = config(&ordered(&log, ""));
    let names: Vec<&str> = cfg
        .restore_order()
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["a", "b", "c", "z"]);
    let mut seen = Vec::new();
    let report = restore_all(
        &repo,
        &cfg,
        &RestoreAllOptions::default(),
        &NoProgress,
        &mut |o| seen.push(o.store.clone()),
    )
    .expect("restore all");
    assert!(report.is_ok());
    assert_eq!(seen, ["a", "b", "c", "z"]);
    assert_eq!(read_log(), "a\nb\nc\nz\n");

    fs::remove_file(&log).expect("rm log");
    let cfg = config(&ordered(&log, "b"));
    let report = restore_all(
        &repo,
        &cfg,
        &RestoreAllOptions::default(),
        &NoProgress,
        &mut |_| {},
    )
    .expect("restore all");
    assert!(!report.is_ok());
    assert_eq!(read_log(), "a\nb\n", "stops after the failing store");
    assert_eq!(report.skipped, ["c", "z"]);
    let failed: Vec<&str> = report
        .outcomes
        .iter()
        .filter(|o| !o.is_ok())
        .map(|o| o.store.as_str())
        .collect();
    assert_eq!(failed, ["b"]);

    fs::remove_file(&log).expect("rm log");
    let keep_going = RestoreAllOptions {
        keep_going: true,
        ..RestoreAllOptions::default()
    };
    let report =
        restore_all(&repo, &cfg, &keep_going, &NoProgress, &mut |_| {}).expect("restore all");
    assert!(!report.is_ok() && report.skipped.is_empty());
    assert_eq!(read_log(), "a\nb\nc\nz\n");
}

#[test]
fn restore_all_checks_every_store_before_restoring_any() {
    let env = env();
    let cfg = config(&format!(
        "{}[stores.files]\ntype = \"directory\"\npaths = [\"/srv/files\"]\n\
         retention = \"forever\"\ninterval = \"1d\"\nrestore_order = 9\n",
        piping_store("db", &env.root.join("db.out"), "restore_order = 1")
    ));
    let e = plan_all(&cfg, &RestoreAllOptions::default()).expect_err("files needs a target");
    assert!(e.to_string().contains("nothing was restored"), "{e}");
    assert!(e.to_string().contains("store files"), "{e}");
    let plan = plan_all(
        &cfg,
        &RestoreAllOptions {
            target: Some("/tmp/dr".into()),
            ..RestoreAllOptions::default()
        },
    )
    .expect("with a target");
    let targets: Vec<_> = plan
        .iter()
        .map(|(s, o)| (s.name.as_str(), o.target.clone()))
        .collect();
    assert_eq!(
        targets,
        [("db", None), ("files", Some("/tmp/dr/files".into()))],
        "a piped store takes no target; a directory goes to TARGET/STORE"
    );
}
