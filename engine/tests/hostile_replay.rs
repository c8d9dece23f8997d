//! A storage that replays an index file a prune superseded must not make a *new* backup
//! deduplicate against data the prune deleted: the replayed file's entries only fill in blobs
//! no current file names (exactly what the sweep dropped), and backups never deduplicate
//! against filled-in entries (SPEC §8, §14), so the backup stores the data again.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::grace::{dump, stream};
use common::{PASSWORD, Rng};
use engine::archiver::backup;
use engine::checker::{CheckOptions, ReadData, check};
use engine::forget::forget_ids;
use engine::progress::NoProgress;
use engine::prune::{MaxUnused, PruneOptions, prune};
use engine::repository::{InitOptions, OpenOptions, Repository, init};
use engine::restorer::error_chain;
use repo_format::KdfParams;

fn init_at(path: &Path, grace: Option<u64>) {
    let opts = InitOptions {
        kdf: KdfParams::TEST,
        prune_grace_secs: grace,
        ..InitOptions::default()
    };
    init(&path.to_string_lossy(), PASSWORD, &opts).expect("init");
}

fn open_with(repo_dir: &Path, cache: &Path) -> Repository {
    let opts = OpenOptions {
        cache_dir: Some(cache.to_path_buf()),
    };
    Repository::open(&repo_dir.to_string_lossy(), PASSWORD, &opts).expect("open")
}

/// Forget and prune a stream, replay the old index files, back the same stream up again: the
/// new snapshot must restore byte-exact and `check` must find nothing missing for it.
#[test]
fn a_replayed_index_never_makes_a_new_backup_miss_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo_dir = dir.path().join("repo");
    init_at(&repo_dir, Some(1));
    let cache = dir.path().join("cache");
    let repo = open_with(&repo_dir, &cache);
    let mut rng = Rng(0x1dc5);
    let first = rng.bytes(4 << 20);
    let mut second = first[..2 << 20].to_vec();
    second.extend(rng.bytes(1 << 20));
    let third = first[3 << 20..].to_vec();
    let a = stream(&repo, first.clone());
    let _b = stream(&repo, second);
    let _c = stream(&repo, third);
    forget_ids(&repo, &[a.to_hex()], false).expect("forget");

    let saved: Vec<(String, Vec<u8>)> = fs::read_dir(repo_dir.join("index"))
        .expect("index/")
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).expect("read"),
            )
        })
        .collect();
    let opts = PruneOptions {
        max_unused: MaxUnused::Percent(0.0),
        ..PruneOptions::default()
    };
    let wait = || std::thread::sleep(Duration::from_millis(2100));
    wait();
    prune(&repo, &opts, &NoProgress).expect("prune marks and repacks");
    wait();
    let r = prune(&repo, &opts, &NoProgress).expect("prune sweeps");
    assert!(r.sweep.packs_deleted >= 1, "{r:?}");
    drop(repo);

    // The storage puts the old index files back.
    let mut replayed = 0;
    for (name, bytes) in &saved {
        let path = repo_dir.join("index").join(name);
        if !path.exists() {
            fs::write(&path, bytes).expect("replay");
            replayed += 1;
        }
    }
    assert!(replayed >= 1);

    // This machine backs up the forgotten content again.
    let repo = open_with(&repo_dir, &cache);
    let again = backup(
        &repo,
        common::grace::stream_opts(first.clone()),
        &NoProgress,
    )
    .expect("backup");
    match dump(&repo, &again.id) {
        Ok(out) => assert!(out == first, "wrong bytes"),
        Err(e) => panic!(
            "backup {} reported success but its data is gone: {}",
            again.id.0.short(),
            error_chain(&e)
        ),
    }
    let report = check(
        &repo,
        &CheckOptions {
            read_data: ReadData::No,
        },
        &NoProgress,
    )
    .expect("check runs");
    let mine: Vec<_> = report
        .errors
        .iter()
        .filter(|f| format!("{f:?}").contains(&again.id.0.short()))
        .collect();
    assert!(mine.is_empty(), "{mine:#?}");
}
