//! Soak: several writers back up into one repository while a forget + prune loop runs, for a
//! bounded time (`CAIRN_SOAK_SECS`, default 20). Each writer and the pruner have their own
//! repository handle, index cache and runtime, as separate processes would. Afterwards
//! `check --read-data` finds no damage and every remaining snapshot restores byte-exact.
//!
//! Backups deduplicate heavily against each other and against data whose snapshots were just
//! forgotten, which is exactly what prune marks, so the races of SPEC §18 happen constantly.

mod common;

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{PASSWORD, Rng};
use engine::archiver::{BackupOptions, Source, backup};
use engine::checker::{CheckOptions, ReadData, check};
use engine::forget::forget;
use engine::progress::NoProgress;
use engine::prune::{MaxUnused, PruneOptions, prune};
use engine::repository::{InitOptions, OpenOptions, Repository, init};
use engine::restorer::{dump_content, find_node};
use engine::retention::{GroupBy, KeepPolicy};
use repo_format::{KdfParams, SnapshotId};

const WRITERS: u64 = 3;

fn open(path: &str, cache: &std::path::Path) -> Repository {
    Repository::open(
        path,
        PASSWORD,
        &OpenOptions {
            cache_dir: Some(cache.to_path_buf()),
        },
    )
    .expect("open")
}

/// The dump of writer `w` at round `r`: a shared part every writer has, a part of its own that
/// changes slowly, and new bytes.
fn dump_of(w: u64, r: u64) -> Vec<u8> {
    let mut v = Rng(1).bytes(256 << 10);
    let mut own = Rng(100 + w).bytes(512 << 10);
    let mut rng = Rng(w * 1_000_003 + r);
    for _ in 0..4 {
        let at = rng.below(own.len() as u64 - 4096) as usize;
        own[at..at + 4096].copy_from_slice(&rng.bytes(4096));
    }
    v.extend(own);
    v.extend(rng.bytes(64 << 10));
    v
}

#[test]
fn backups_and_a_prune_loop_never_lose_data() {
    let secs: u64 = std::env::var("CAIRN_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("repo").to_string_lossy().into_owned();
    init(
        &path,
        PASSWORD,
        &InitOptions {
            kdf: KdfParams::TEST,
            prune_grace_secs: Some(3),
            ..InitOptions::default()
        },
    )
    .expect("init");
    let deadline = Instant::now() + Duration::from_secs(secs);
    let written: Arc<Mutex<HashMap<SnapshotId, (u64, u64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let (backups, failed, prunes, deleted) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );

    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let (path, written, backups, failed) = (&path, &written, &backups, &failed);
            let cache = dir.path().join(format!("cache-{w}"));
            s.spawn(move || {
                let repo = open(path, &cache);
                let mut r = 0;
                while Instant::now() < deadline {
                    let mut opts = BackupOptions::new(Source::Stream {
                        name: "db.dump".into(),
                        reader: Box::new(Cursor::new(dump_of(w, r))),
                    });
                    opts.host = Some(format!("host-{w}"));
                    match backup(&repo, opts, &NoProgress) {
                        Ok(res) => {
                            written.lock().expect("lock").insert(res.id, (w, r));
                            backups.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            // Only the documented refusals of SPEC §18 are acceptable.
                            let m = e.to_string();
                            assert!(
                                m.contains("grace period")
                                    || m.contains("Run the backup again")
                                    || m.contains("Run it again"),
                                "writer {w}: unexpected failure: {m}"
                            );
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    r += 1;
                }
            });
        }
        let (path, stop_p, prunes, deleted) = (&path, &stop, &prunes, &deleted);
        let cache = dir.path().join("cache-prune");
        s.spawn(move || {
            let repo = open(path, &cache);
            let policy = KeepPolicy {
                last: Some(2),
                ..KeepPolicy::default()
            };
            while Instant::now() < deadline && !stop_p.load(Ordering::Relaxed) {
                let group = GroupBy {
                    host: true,
                    paths: true,
                    tags: false,
                };
                forget(&repo, &policy, group, false, engine::repository::now_ns()).expect("forget");
                let r = prune(
                    &repo,
                    &PruneOptions {
                        max_unused: MaxUnused::Percent(0.0),
                        ..PruneOptions::default()
                    },
                    &NoProgress,
                )
                .expect("prune");
                prunes.fetch_add(1, Ordering::Relaxed);
                deleted.fetch_add(r.sweep.packs_deleted as u64, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(700));
            }
        });
    });
    stop.store(true, Ordering::Relaxed);

    let repo = open(&path, &dir.path().join("cache-check"));
    let report = check(
        &repo,
        &CheckOptions {
            read_data: ReadData::All,
        },
        &NoProgress,
    )
    .expect("check runs");
    assert!(report.is_clean(), "check finds damage: {:?}", report.errors);
    let remaining = repo.list_snapshots().expect("list");
    let written = written.lock().expect("lock");
    for (id, snap) in &remaining {
        let &(w, r) = written
            .get(id)
            .expect("every snapshot was written by a writer");
        let node = find_node(&repo, &snap.tree, b"db.dump").expect("node");
        let mut out = Vec::new();
        dump_content(&repo, &node, &mut out, &NoProgress).expect("restore");
        assert!(
            out == dump_of(w, r),
            "snapshot {id} restores different bytes"
        );
    }
    eprintln!(
        "soak {secs} s: {} backups ({} refused cleanly), {} prune runs deleted {} packs; {} snapshots remain, all restore byte-exact, check --read-data clean",
        backups.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        prunes.load(Ordering::Relaxed),
        deleted.load(Ordering::Relaxed),
        remaining.len()
    );
    assert!(
        deleted.load(Ordering::Relaxed) > 0,
        "the soak must actually delete packs"
    );
}
