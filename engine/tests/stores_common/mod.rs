//! Helpers for the tests of per-store operations (status, forget and check by store, restore
//! by store): a cairn.toml parsed from text, and snapshots of a store written through the
//! archiver with a chosen time (and, for failed backups, rewritten as failed).

#![allow(dead_code)]

use std::io::Cursor;
use std::path::{Path, PathBuf};

use engine::archiver::{BackupOptions, Source, backup};
use engine::backend::FileType;
use engine::progress::NoProgress;
use engine::repository::Repository;
use engine::stores::{Config, parse};
use repo_format::{SnapshotId, SnapshotStatus};

/// One hour in nanoseconds.
pub const H: i64 = 3_600_000_000_000;

/// Parses a cairn.toml body (stores only): a `[repository]` table is prepended.
pub fn config(stores: &str) -> Config {
    let text = format!(
        "[repository]\nlocation = \"/unused/repo\"\npassword_file = \"/unused/pw\"\n\n{stores}"
    );
    parse(&text, Path::new("/test/cairn.toml"), &|_| None)
        .unwrap_or_else(|e| panic!("test config does not parse: {e}\n{text}"))
}

/// A TOML string literal.
pub fn q(s: &str) -> String {
    format!("{s:?}")
}

/// A dump store's snapshot at `time_ns` holding `bytes` as `file_name`.
pub fn dump(
    repo: &Repository,
    store: &str,
    file_name: &str,
    bytes: &[u8],
    time_ns: i64,
) -> SnapshotId {
    let mut o = BackupOptions::new(Source::Stream {
        name: file_name.to_owned(),
        reader: Box::new(Cursor::new(bytes.to_vec())),
    });
    o.store = Some(store.to_owned());
    o.time_ns = Some(time_ns);
    backup(repo, o, &NoProgress).expect("backup").id
}

/// A snapshot of no store at `time_ns`, as `cairn backup --stdin` writes.
pub fn plain(repo: &Repository, bytes: &[u8], time_ns: i64) -> SnapshotId {
    let mut o = BackupOptions::new(Source::Stream {
        name: "plain.bin".to_owned(),
        reader: Box::new(Cursor::new(bytes.to_vec())),
    });
    o.time_ns = Some(time_ns);
    backup(repo, o, &NoProgress).expect("backup").id
}

/// A directory store's snapshot of `paths` at `time_ns`.
pub fn directory(repo: &Repository, store: &str, paths: &[PathBuf], time_ns: i64) -> SnapshotId {
    let mut o = BackupOptions::new(Source::Paths(paths.to_vec()));
    o.store = Some(store.to_owned());
    o.time_ns = Some(time_ns);
    backup(repo, o, &NoProgress).expect("backup").id
}

/// Rewrites a snapshot as a failed backup with this failure text; returns the new id.
pub fn fail(repo: &Repository, id: SnapshotId, why: &str) -> SnapshotId {
    let mut s = repo.load_snapshot(&id).expect("load");
    s.status = SnapshotStatus::Failed;
    s.failure = Some(why.to_owned());
    let new = repo.save_snapshot(&s).expect("save");
    repo.block_on(repo.backend().delete(FileType::Snapshot, &id.to_hex()))
        .expect("delete the original");
    new
}

/// The ids of every snapshot, sorted.
pub fn ids(repo: &Repository) -> Vec<SnapshotId> {
    let mut v: Vec<SnapshotId> = repo
        .list_snapshots()
        .expect("list")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    v.sort();
    v
}
