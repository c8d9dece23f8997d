//! Helpers of the prune tests: a repository with a short prune grace period, and stream
//! backups of a `db.dump` file and their dumps.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::Duration;

use engine::archiver::{BackupOptions, Source, backup};
use engine::progress::NoProgress;
use engine::repository::{InitOptions, OpenOptions, Repository, init};
use engine::restorer::{dump_content, find_node};
use repo_format::{KdfParams, SnapshotId};

use super::PASSWORD;

/// A temporary repository (`repo/`, cache `cache/`) whose prune grace period is `grace`.
pub struct GraceEnv {
    pub _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub path: String,
    pub cache: PathBuf,
    pub grace: Duration,
}

/// A new repository with a grace period of `grace` seconds.
pub fn env_with_grace(grace: u64) -> GraceEnv {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_path_buf();
    let path = super::repo_location(&root);
    init(
        &path,
        PASSWORD,
        &InitOptions {
            kdf: KdfParams::TEST,
            prune_grace_secs: Some(grace),
            ..InitOptions::default()
        },
    )
    .expect("init");
    GraceEnv {
        cache: root.join("cache"),
        root,
        _dir: dir,
        path,
        grace: Duration::from_secs(grace),
    }
}

/// Opens the repository at `path` with the cache in `cache`.
pub fn open_at(path: &str, cache: &Path) -> Repository {
    Repository::open(
        path,
        PASSWORD,
        &OpenOptions {
            cache_dir: Some(cache.to_path_buf()),
        },
    )
    .expect("open")
}

impl GraceEnv {
    /// Opens the repository with its cache.
    pub fn open(&self) -> Repository {
        open_at(&self.path, &self.cache)
    }

    /// Waits until everything written so far is older than the grace period.
    pub fn wait_grace(&self) {
        std::thread::sleep(self.grace + Duration::from_millis(1100));
    }
}

/// Backup options for a stream of `data` named `db.dump`.
pub fn stream_opts(data: Vec<u8>) -> BackupOptions {
    BackupOptions::new(Source::Stream {
        name: "db.dump".into(),
        reader: Box::new(Cursor::new(data)),
    })
}

/// Backs up `data` as the stream `db.dump`.
pub fn stream(repo: &Repository, data: Vec<u8>) -> SnapshotId {
    backup(repo, stream_opts(data), &NoProgress)
        .expect("backup")
        .id
}

/// The contents of the file at `path` in snapshot `id`.
pub fn dump_path(repo: &Repository, id: &SnapshotId, path: &[u8]) -> engine::Result<Vec<u8>> {
    let snap = repo.load_snapshot(id)?;
    let node = find_node(repo, &snap.tree, path)?;
    let mut out = Vec::new();
    dump_content(repo, &node, &mut out, &NoProgress)?;
    Ok(out)
}

/// The contents of `db.dump` in snapshot `id`.
pub fn dump(repo: &Repository, id: &SnapshotId) -> engine::Result<Vec<u8>> {
    dump_path(repo, id, b"db.dump")
}
