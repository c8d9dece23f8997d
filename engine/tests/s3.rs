//! `s3://` repositories against a local S3 server (moto, started by `scripts/moto`).
//!
//! `scripts/test` starts moto and exports, for the test run:
//!
//! ```text
//! CAIRN_S3_ENDPOINT=http://127.0.0.1:PORT  AWS_ENDPOINT_URL=$CAIRN_S3_ENDPOINT  AWS_ALLOW_HTTP=true
//! AWS_ACCESS_KEY_ID=test  AWS_SECRET_ACCESS_KEY=test  AWS_REGION=us-east-1
//! ```
//!
//! Without `CAIRN_S3_ENDPOINT` these tests FAIL, so a CI machine that could not start moto is
//! red, not silently green; a developer without moto skips them with `CAIRN_SKIP_S3=1`.
//! `open_backend` reads the `AWS_*` variables itself (and tests may not call `set_var`), so the
//! tests insist that `AWS_ENDPOINT_URL` is the moto endpoint: they never touch real S3.
//!
//! Each test uses its own bucket, created with a plain HTTP `PUT /bucket` (moto accepts any
//! credentials and unsigned requests), or its own prefix in `CAIRN_S3_BUCKET` when that is set
//! (`scripts/s3-suite garage`).

use std::io::Cursor;
use std::sync::Arc;

use engine::archiver::{BackupOptions, Source, backup};
use engine::backend::{Backend, FileType, open_backend};
use engine::checker::{CheckOptions, ReadData, check};
use engine::progress::NoProgress;
use engine::repository::{InitOptions, OpenOptions, Repository, init};
use engine::restorer::{RestoreOptions, dump_content, find_node, restore};
use repo_format::KdfParams;

#[path = "common/conformance.rs"]
mod conformance;

mod common;

use common::{PASSWORD, Rng};

/// The moto endpoint, or `None` (after printing a notice) when the developer opted out.
/// Panics with instructions when the environment is incomplete.
fn endpoint() -> Option<String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let Some(endpoint) = var("CAIRN_S3_ENDPOINT") else {
        if var("CAIRN_SKIP_S3").as_deref() == Some("1") {
            eprintln!("SKIPPED: S3 tests (CAIRN_SKIP_S3=1 and no CAIRN_S3_ENDPOINT)");
            return None;
        }
        panic!(
            "CAIRN_S3_ENDPOINT is not set: the S3 tests need a local S3 server. Run them through \
             scripts/test (which starts moto), or: eval \"$(scripts/moto start)\" and export \
             AWS_ENDPOINT_URL=$CAIRN_S3_ENDPOINT AWS_ALLOW_HTTP=true AWS_ACCESS_KEY_ID=test \
             AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1; or skip them with CAIRN_SKIP_S3=1"
        );
    };
    let aws_endpoint = var("AWS_ENDPOINT_URL").or_else(|| var("AWS_ENDPOINT"));
    assert_eq!(
        aws_endpoint.as_deref(),
        Some(endpoint.as_str()),
        "AWS_ENDPOINT_URL must equal CAIRN_S3_ENDPOINT ({endpoint}) so the tests never reach real S3; \
         export AWS_ENDPOINT_URL=$CAIRN_S3_ENDPOINT"
    );
    for k in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        assert!(
            var(k).is_some(),
            "{k} is not set (moto accepts any value: export {k}=test)"
        );
    }
    assert_eq!(
        var("AWS_ALLOW_HTTP").as_deref(),
        Some("true"),
        "export AWS_ALLOW_HTTP=true for the plain-HTTP endpoint {endpoint}"
    );
    Some(endpoint)
}

/// A fresh bucket (or a fresh prefix of `CAIRN_S3_BUCKET`) for one test.
fn bucket(endpoint: &str, test: &str) -> String {
    common::s3::test_bucket(endpoint, test)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_conformance() {
    let Some(endpoint) = endpoint() else { return };
    let bucket = bucket(&endpoint, "conformance");
    // Under a prefix, and at the bucket's root.
    let b = open_backend(&format!("s3://{bucket}/some/prefix")).expect("open s3 with prefix");
    assert_eq!(b.location(), format!("s3://{bucket}/some/prefix"));
    let root = open_backend(&format!("s3://{bucket}")).expect("open s3");
    conformance::large_pack(&*root).await;
    if server_is_create_only() {
        conformance::conformance(b).await;
        conformance::conformance(root).await;
    } else {
        conformance::conformance_without_create_only(b).await;
        conformance::conformance_without_create_only(root).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_prefixes_keep_repositories_apart() {
    let Some(endpoint) = endpoint() else { return };
    let bucket = bucket(&endpoint, "prefixes");
    let a = open_backend(&format!("s3://{bucket}/a")).expect("open a");
    let ab = open_backend(&format!("s3://{bucket}/ab")).expect("open ab");
    let name = conformance::id_name(0x12, 1);
    a.put(FileType::Pack, &name, conformance::payload(1, 10))
        .await
        .expect("put");
    assert!(ab.list(FileType::Pack).await.expect("list").is_empty());
    assert_eq!(
        ab.exists(FileType::Pack, &name).await.expect("exists"),
        None
    );
    ab.put(FileType::Pack, &name, conformance::payload(2, 20))
        .await
        .expect("same name under another prefix");
    assert_eq!(
        a.get(FileType::Pack, &name).await.expect("get"),
        conformance::payload(1, 10)
    );
}

#[test]
fn s3_missing_bucket_is_a_clear_error() {
    let Some(_) = endpoint() else { return };
    let loc = format!("s3://cairn-no-such-bucket-{}/repo", std::process::id());
    let opts = InitOptions {
        kdf: KdfParams::TEST,
        ..InitOptions::default()
    };
    let e = init(&loc, PASSWORD, &opts).expect_err("no bucket");
    // The whole chain, as the CLI prints it.
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    assert!(msg.contains(&loc), "{msg}");
    assert!(msg.contains("does not exist; create it first"), "{msg}");
    // Reading lists nothing from a missing bucket: an error, not an empty repository.
    let e = Repository::open(&loc, PASSWORD, &OpenOptions { cache_dir: None })
        .expect_err("open in a missing bucket");
    let _ = e;
    let b = open_backend(&loc).expect("open touches nothing");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let e = rt
        .block_on(b.list(FileType::Key))
        .expect_err("list in a missing bucket");
    assert!(e.to_string().contains("does not exist"), "{e}");
}

/// init → backup a tree and a stream → restore byte-exact → check --read-data, all on s3://.
#[test]
fn s3_backup_restore_check_round_trip() {
    let Some(endpoint) = endpoint() else { return };
    let bucket = bucket(&endpoint, "roundtrip");
    let loc = format!("s3://{bucket}/backups/host1");
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = InitOptions {
        kdf: KdfParams::TEST,
        ..InitOptions::default()
    };
    init(&loc, PASSWORD, &opts).expect("init on s3");
    assert!(
        init(&loc, PASSWORD, &opts).is_err(),
        "a second init at the same location must fail"
    );
    let repo = Repository::open(
        &loc,
        PASSWORD,
        &OpenOptions {
            cache_dir: Some(dir.path().join("cache")),
        },
    )
    .expect("open on s3");

    // A small tree: empty, small, multi-chunk and duplicate files, a subdirectory, a symlink.
    let mut rng = Rng(0x5EED_0001);
    let src = dir.path().join("src").join("data");
    std::fs::create_dir_all(src.join("sub/deeper")).expect("mkdir");
    let big = rng.bytes(3 << 20);
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("small.txt", b"hello, s3\n".to_vec()),
        ("big.bin", big.clone()),
        ("sub/copy-of-big.bin", big),
        ("sub/deeper/random", rng.bytes(200_000)),
    ];
    for (name, data) in &files {
        std::fs::write(src.join(name), data).expect("write");
    }
    std::os::unix::fs::symlink("../small.txt", src.join("sub/link")).expect("symlink");
    let tree = backup(
        &repo,
        BackupOptions::new(Source::Paths(vec![src.clone()])),
        &NoProgress,
    )
    .expect("backup tree");
    assert!(tree.warnings.is_empty(), "{:?}", tree.warnings);

    let stream_data = rng.bytes(1_500_000);
    let stream = backup(
        &repo,
        BackupOptions::new(Source::Stream {
            name: "db.dump".into(),
            reader: Box::new(Cursor::new(stream_data.clone())),
        }),
        &NoProgress,
    )
    .expect("backup stream");

    // The objects are in the bucket, under the prefix.
    let backend: Arc<dyn Backend> = open_backend(&loc).expect("open");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        assert!(
            !backend
                .list(FileType::Pack)
                .await
                .expect("packs")
                .is_empty()
        );
        assert_eq!(
            backend.list(FileType::Snapshot).await.expect("snaps").len(),
            2
        );
        assert_eq!(
            backend.list(FileType::Config).await.expect("config").len(),
            1
        );
    });

    // Restore both, byte-exact.
    let target = dir.path().join("restore");
    let s = restore(
        &repo,
        &tree.snapshot,
        &RestoreOptions {
            target: target.clone(),
            verify: true,
            ..Default::default()
        },
        &NoProgress,
    )
    .expect("restore tree");
    assert!(s.failed.is_empty(), "{:?}", s.failed);
    for (name, data) in &files {
        assert!(
            std::fs::read(target.join("data").join(name)).expect("restored") == *data,
            "{name} differs"
        );
    }
    assert_eq!(
        std::fs::read_link(target.join("data/sub/link")).expect("link"),
        std::path::Path::new("../small.txt")
    );
    let node = find_node(&repo, &stream.snapshot.tree, b"db.dump").expect("stream node");
    let mut out = Vec::new();
    dump_content(&repo, &node, &mut out, &NoProgress).expect("dump");
    assert!(out == stream_data, "the stream differs");
    drop(repo);

    // check --read-data, from a fresh handle with an empty cache.
    let repo = Repository::open(
        &loc,
        PASSWORD,
        &OpenOptions {
            cache_dir: Some(dir.path().join("cache2")),
        },
    )
    .expect("reopen");
    let report = check(
        &repo,
        &CheckOptions {
            read_data: ReadData::All,
        },
        &NoProgress,
    )
    .expect("check");
    assert!(report.is_clean(), "{:?}", report.errors);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

/// backup → forget → prune (mark) → prune (sweep) on s3://: the storage's clock decides the
/// grace period (moto reports modification times), create-only writes are probed, and what
/// remains restores byte-exact and checks clean.
#[test]
fn s3_forget_and_prune_round_trip() {
    use engine::forget::forget_ids;
    use engine::prune::{MaxUnused, PruneOptions, prune};

    let Some(endpoint) = endpoint() else { return };
    if !server_is_create_only() {
        eprintln!(
            "SKIPPED: this S3 server ignores create-only writes, so prune refuses to run (see s3_create_only_probe_and_prune_refusal_match_the_server)"
        );
        return;
    }
    let bucket = bucket(&endpoint, "prune");
    let loc = format!("s3://{bucket}/backups/prune");
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = InitOptions {
        kdf: KdfParams::TEST,
        prune_grace_secs: Some(1),
        ..InitOptions::default()
    };
    init(&loc, PASSWORD, &opts).expect("init on s3");
    let repo = Repository::open(
        &loc,
        PASSWORD,
        &OpenOptions {
            cache_dir: Some(dir.path().join("cache")),
        },
    )
    .expect("open on s3");
    let mut rng = Rng(0x5EED_0002);
    let (old, kept) = (rng.bytes(1 << 20), rng.bytes(1 << 20));
    let mut ids = Vec::new();
    for data in [&old, &kept] {
        let r = backup(
            &repo,
            BackupOptions::new(Source::Stream {
                name: "db.dump".into(),
                reader: Box::new(Cursor::new(data.clone())),
            }),
            &NoProgress,
        )
        .expect("backup");
        ids.push(r.id);
    }
    forget_ids(&repo, &[ids[0].to_hex()], false).expect("forget");
    let popts = PruneOptions {
        max_unused: MaxUnused::Percent(0.0),
        ..PruneOptions::default()
    };
    // Storage times have one-second resolution: wait past the grace period generously.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let first = prune(&repo, &popts, &NoProgress).expect("prune marks");
    assert!(first.plan.is_some(), "{first:?}");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let second = prune(&repo, &popts, &NoProgress).expect("prune sweeps");
    assert!(second.sweep.packs_deleted >= 1, "{second:?}");
    assert!(second.sweep.bytes_freed >= 1 << 20, "{second:?}");

    let snap = repo.load_snapshot(&ids[1]).expect("snapshot");
    let node = engine::restorer::find_node(&repo, &snap.tree, b"db.dump").expect("node");
    let mut out = Vec::new();
    engine::restorer::dump_content(&repo, &node, &mut out, &NoProgress).expect("dump");
    assert!(out == kept, "the kept snapshot restores byte-exact");
    let report = engine::checker::check(
        &repo,
        &engine::checker::CheckOptions {
            read_data: engine::checker::ReadData::All,
        },
        &NoProgress,
    )
    .expect("check");
    assert!(report.is_clean(), "{:?}", report.errors);
}

/// Backups through a fault-injecting wrapper over s3://: errors and lost responses on writes.
/// Each backup either succeeds or fails with an error; afterwards every snapshot restores
/// byte-exact and `check --read-data` finds no damage (unreferenced leftovers are allowed).
#[test]
fn s3_backups_under_injected_faults_never_leave_a_broken_snapshot() {
    use engine::backend::faulty::FaultyBackend;

    let Some(endpoint) = endpoint() else { return };
    let bucket = bucket(&endpoint, "faults");
    let loc = format!("s3://{bucket}/faulty");
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = InitOptions {
        kdf: KdfParams::TEST,
        ..InitOptions::default()
    };
    init(&loc, PASSWORD, &opts).expect("init on s3");
    let (faulty, plan) = FaultyBackend::wrap(open_backend(&loc).expect("open"));
    let repo = Repository::open_with_backend(
        faulty,
        &loc,
        PASSWORD,
        &OpenOptions {
            cache_dir: Some(dir.path().join("cache")),
        },
    )
    .expect("open through the faulty wrapper");
    let mut rng = Rng(0x5EED_0003);
    let mut ok = Vec::new();
    let mut failed = 0;
    for seed in 0..8u64 {
        plan.disarm();
        plan.transient_errors(0.15, seed, true);
        if seed % 2 == 1 {
            plan.lose_response_at(plan.counts().operations + 3 + seed);
        }
        let data = rng.bytes(600_000);
        match backup(
            &repo,
            BackupOptions::new(Source::Stream {
                name: "db.dump".into(),
                reader: Box::new(Cursor::new(data.clone())),
            }),
            &NoProgress,
        ) {
            Ok(r) => ok.push((r.id, data)),
            Err(e) => {
                assert!(!e.to_string().is_empty());
                failed += 1;
            }
        }
    }
    plan.disarm();
    drop(repo);
    let repo = Repository::open(
        &loc,
        PASSWORD,
        &OpenOptions {
            cache_dir: Some(dir.path().join("cache2")),
        },
    )
    .expect("open");
    assert_eq!(repo.list_snapshots().expect("list").len(), ok.len());
    for (id, data) in &ok {
        let snap = repo.load_snapshot(id).expect("snapshot");
        let node = find_node(&repo, &snap.tree, b"db.dump").expect("node");
        let mut out = Vec::new();
        dump_content(&repo, &node, &mut out, &NoProgress).expect("dump");
        assert!(out == *data, "{id} restores byte-exact");
    }
    let report = check(
        &repo,
        &CheckOptions {
            read_data: ReadData::All,
        },
        &NoProgress,
    )
    .expect("check");
    assert!(report.is_clean(), "{:?}", report.errors);
    eprintln!(
        "s3 with faults: {} backups succeeded, {failed} failed cleanly",
        ok.len()
    );
}

/// Whether the server under test honours create-only writes: `CAIRN_S3_CREATE_ONLY=false` for one
/// that does not (Garage 2.5, exported by `scripts/garage`), otherwise it must (moto).
fn server_is_create_only() -> bool {
    std::env::var("CAIRN_S3_CREATE_ONLY").as_deref() != Ok("false")
}

/// `init`'s create-only probe reports what the server does, and where the server overwrites,
/// prune refuses before it deletes anything while backups and restores still work.
#[test]
fn s3_create_only_probe_and_prune_refusal_match_the_server() {
    use engine::prune::{PruneOptions, prune};

    let Some(endpoint) = endpoint() else { return };
    let loc = format!("s3://{}/probe", bucket(&endpoint, "probe"));
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = InitOptions {
        kdf: KdfParams::TEST,
        prune_grace_secs: Some(1),
        ..InitOptions::default()
    };
    let r = init(&loc, PASSWORD, &opts).expect("init on s3");
    assert_eq!(r.create_only, server_is_create_only(), "create-only probe");
    let repo = Repository::open(
        &loc,
        PASSWORD,
        &OpenOptions {
            cache_dir: Some(dir.path().join("cache")),
        },
    )
    .expect("open on s3");
    let data = Rng(0x5EED_0003).bytes(300_000);
    let b = backup(
        &repo,
        BackupOptions::new(Source::Stream {
            name: "db.dump".into(),
            reader: Box::new(Cursor::new(data.clone())),
        }),
        &NoProgress,
    )
    .expect("backup");
    let before = repo.list_ids(FileType::Pack).expect("list packs").len();
    let result = prune(&repo, &PruneOptions::default(), &NoProgress);
    if server_is_create_only() {
        result.expect("prune where create-only writes are honoured");
    } else {
        let e = result.expect_err("prune must refuse");
        let msg = format!("{e:#}");
        assert!(
            msg.contains("create-only") && msg.contains("refuses"),
            "{msg}"
        );
        assert_eq!(
            repo.list_ids(FileType::Pack).expect("list packs").len(),
            before,
            "a refused prune deletes nothing"
        );
    }
    let node = find_node(&repo, &b.snapshot.tree, b"db.dump").expect("find");
    let mut out = Vec::new();
    dump_content(&repo, &node, &mut out, &NoProgress).expect("dump");
    assert!(out == data, "restore after the prune attempt");
}
