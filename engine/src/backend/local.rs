//! [`LocalBackend`]: a repository in a local directory, with real durability.
//!
//! # How a put becomes durable
//!
//! ```text
//! dir/.tmp-<random>   create_new, write_all, fsync           (invisible to readers: list skips dot files)
//! dir/<name>          hard_link(tmp, name)                    (create-only: EEXIST if it is there)
//! dir/.tmp-<random>   unlink
//! dir                 fsync                                   (the new name survives a crash)
//! ```
//!
//! A reader therefore sees either no object or the whole object under its final name (SPEC §2),
//! and two writers racing on one name get exactly one winner: `link(2)` fails with `EEXIST` for
//! the loser, whose temp file is removed. On a file system without hard links (`link(2)` gives
//! `EPERM` or `EOPNOTSUPP`: FAT, some FUSE or SMB mounts) the put falls back to
//! "check the name is free, then `rename(2)`", which is not atomic against a concurrent writer of
//! the same name; objects are content-addressed, so such a race writes identical bytes twice.
//!
//! # Directories
//!
//! Directories are created on demand, each followed by an fsync of its parent: a put creates
//! the repository directory (`mkdir -p`, as `init` needs: it writes a key file first), the type
//! directory (`keys/`, `data/`, `index/`, `snapshots/`) and, for packs, the shard (`data/ab/`).
//! The fast path does none of this: it tries to create the temp file and only on `ENOENT` creates
//! what is missing. Reads never create anything, so a mistyped path reads as "not found".
//! [`LocalBackend::init_layout`] creates the root and the four type directories up front but not
//! the 256 shards: most repositories use a fraction of them early on, and a repository copied by
//! a tool that skips empty directories keeps working.
//!
//! All file I/O runs in [`tokio::task::spawn_blocking`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::{
    Backend, BackendError, BackendErrorKind, CONFIG_NAME, FileType, ObjectInfo, check_name,
    range_end, range_past_end, shard_of,
};

/// Prefix of temporary files; [`Backend::list`] skips every name starting with a dot.
const TEMP_PREFIX: &str = ".tmp-";

/// A repository in a local directory. See the module docs for the write protocol.
#[derive(Clone, Debug)]
pub struct LocalBackend {
    root: PathBuf,
    location: String,
}

impl LocalBackend {
    /// A backend for the repository at `root`. Touches nothing on disk.
    pub fn new(root: impl Into<PathBuf>) -> LocalBackend {
        let root = root.into();
        let location = root.display().to_string();
        LocalBackend { root, location }
    }

    /// The repository directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the repository directory (and its parents) and `keys/`, `data/`, `index/`,
    /// `snapshots/` in it, fsyncing each parent; existing directories are fine. Pack shards
    /// (`data/ab/`) are created on demand by [`Backend::put`].
    pub async fn init_layout(&self) -> Result<(), BackendError> {
        let root = self.root.clone();
        let location = self.location.clone();
        self.blocking("create", String::new(), move || {
            let err = |path: &str, e| BackendError::from_io("create", path, &location, e);
            create_root(&root).map_err(|e| err("", e))?;
            for t in [
                FileType::Key,
                FileType::Pack,
                FileType::Index,
                FileType::Snapshot,
                FileType::Plan,
                FileType::Lease,
            ] {
                create_dir_synced(&root.join(t.dir()), &root).map_err(|e| err(t.dir(), e))?;
            }
            Ok(())
        })
        .await
    }

    /// Runs `f` on the blocking pool; a failed task becomes an error about `path`.
    async fn blocking<T: Send + 'static>(
        &self,
        op: &'static str,
        path: String,
        f: impl FnOnce() -> Result<T, BackendError> + Send + 'static,
    ) -> Result<T, BackendError> {
        match tokio::task::spawn_blocking(f).await {
            Ok(result) => result,
            Err(join) => Err(
                BackendError::new(BackendErrorKind::Other, op, path, &self.location)
                    .with_detail("the I/O task failed")
                    .with_source(join),
            ),
        }
    }

    /// The directory that holds (`t`, `name`).
    fn dir_of(root: &Path, t: FileType, name: &str) -> PathBuf {
        match t {
            FileType::Config => root.to_path_buf(),
            FileType::Pack => root.join(t.dir()).join(shard_of(name)),
            _ => root.join(t.dir()),
        }
    }

    /// The file that holds (`t`, `name`).
    fn file_of(root: &Path, t: FileType, name: &str) -> PathBuf {
        match t {
            FileType::Config => root.join(CONFIG_NAME),
            _ => Self::dir_of(root, t, name).join(name),
        }
    }
}

/// Creates `dir` if it is missing and then fsyncs `parent`, so the new entry is durable.
fn create_dir_synced(dir: &Path, parent: &Path) -> io::Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => sync_dir(parent),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// `mkdir -p root`, fsyncing the parent of the repository directory if it was created.
fn create_root(root: &Path) -> io::Result<()> {
    if root.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(root)?;
    match root.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => Ok(()),
    }
}

/// fsyncs a directory. Errors that only mean "this file system cannot fsync directories"
/// (`EINVAL`, `ENOTSUP`) are ignored, as restic does.
fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir).and_then(|d| d.sync_all()) {
        Ok(()) => Ok(()),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Creates a fresh temporary file in `dir`: `.tmp-<24 random hex digits>`, `O_CREAT|O_EXCL`.
fn create_temp(dir: &Path) -> io::Result<(File, PathBuf)> {
    let mut last = None;
    for _ in 0..8 {
        let mut random = [0u8; 12];
        getrandom::fill(&mut random)
            .map_err(|e| io::Error::other(format!("the OS random number generator failed: {e}")))?;
        let path = dir.join(format!("{TEMP_PREFIX}{}", hex::encode(random)));
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => return Ok((file, path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("cannot create a temporary file")))
}

/// Creates the directories a put of (`t`, `name`) needs (see the module docs).
fn create_dirs_for(root: &Path, t: FileType, name: &str) -> io::Result<()> {
    create_root(root)?;
    if t != FileType::Config {
        let type_dir = root.join(t.dir());
        create_dir_synced(&type_dir, root)?;
        if t == FileType::Pack {
            create_dir_synced(&type_dir.join(shard_of(name)), &type_dir)?;
        }
    }
    Ok(())
}

/// True if `link(2)` failed because the file system has no hard links (not because of `dst`).
fn link_unsupported(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Unsupported || e.raw_os_error() == Some(libc::EPERM)
}

/// The blocking body of [`Backend::put`] for [`LocalBackend`].
fn put_blocking(
    root: &Path,
    location: &str,
    t: FileType,
    name: &str,
    data: &[u8],
) -> Result<(), BackendError> {
    let rel = t.path(name);
    let err = |e: io::Error| BackendError::from_io("write", &rel, location, e);
    let dir = LocalBackend::dir_of(root, t, name);
    let dest = LocalBackend::file_of(root, t, name);

    // Try the common case (directories exist) first; create them only when needed.
    let (mut file, tmp) = match create_temp(&dir) {
        Ok(ok) => ok,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            create_dirs_for(root, t, name).map_err(err)?;
            create_temp(&dir).map_err(err)?
        }
        Err(e) => return Err(err(e)),
    };

    let written = file.write_all(data).and_then(|()| file.sync_all());
    drop(file);
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(err(e));
    }

    let published = match fs::hard_link(&tmp, &dest) {
        Ok(()) => Ok(()),
        Err(e) if link_unsupported(&e) => match fs::symlink_metadata(&dest) {
            Ok(_) => Err(io::Error::from(io::ErrorKind::AlreadyExists)),
            Err(m) if m.kind() == io::ErrorKind::NotFound => fs::rename(&tmp, &dest),
            Err(m) => Err(m),
        },
        Err(e) => Err(e),
    };
    // After a rename the temp name is gone already; NotFound here is expected.
    let _ = fs::remove_file(&tmp);
    published.map_err(err)?;
    sync_dir(&dir).map_err(err)
}

/// The blocking body of [`Backend::get_range`] for [`LocalBackend`].
fn get_range_blocking(
    path: &Path,
    location: &str,
    t: FileType,
    name: &str,
    offset: u64,
    len: u64,
) -> Result<Bytes, BackendError> {
    let rel = t.path(name);
    let err = |e: io::Error| BackendError::from_io("read", &rel, location, e);
    let end = range_end(t, name, offset, len, location)?;
    let file = File::open(path).map_err(err)?;
    let size = file.metadata().map_err(err)?.len();
    if end > size {
        return Err(range_past_end(t, name, offset, len, size, location));
    }
    // `len <= size`, so this allocation is bounded by what is stored.
    let len =
        usize::try_from(len).map_err(|_| range_past_end(t, name, offset, len, size, location))?;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset).map_err(err)?;
    Ok(Bytes::from(buf))
}

/// Appends the regular files of `dir` to `out`, skipping dot files (temporaries), names that are
/// not valid object names and, in a pack shard, names that do not belong to the shard.
fn list_dir(
    dir: &Path,
    t: FileType,
    shard: Option<&str>,
    out: &mut Vec<ObjectInfo>,
) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') || check_name(t, &name, "list", "").is_err() {
            continue;
        }
        if shard.is_some_and(|s| shard_of(&name) != s) {
            continue;
        }
        // Follows symlinks; an entry that vanished meanwhile (a concurrent delete) is skipped.
        match fs::metadata(entry.path()) {
            Ok(meta) if meta.is_file() => out.push(ObjectInfo {
                name,
                size: meta.len(),
                modified: mtime_ns(&meta),
            }),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A file's modification time in Unix nanoseconds (the file system's clock is the storage's).
fn mtime_ns(meta: &fs::Metadata) -> Option<i64> {
    let t = meta.modified().ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_nanos()).ok()
}

/// The blocking body of [`Backend::list`] for [`LocalBackend`].
fn list_blocking(root: &Path, t: FileType) -> io::Result<Vec<ObjectInfo>> {
    let mut out = Vec::new();
    match t {
        FileType::Config => match fs::metadata(root.join(CONFIG_NAME)) {
            Ok(meta) if meta.is_file() => out.push(ObjectInfo {
                name: CONFIG_NAME.to_owned(),
                size: meta.len(),
                modified: mtime_ns(&meta),
            }),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        },
        FileType::Pack => {
            let data = root.join(t.dir());
            let shards = match fs::read_dir(&data) {
                Ok(shards) => shards,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(e),
            };
            for shard in shards {
                let shard = shard?;
                let Ok(shard_name) = shard.file_name().into_string() else {
                    continue;
                };
                if shard_name.len() != 2 || shard_name.starts_with('.') {
                    continue;
                }
                if shard.file_type()?.is_dir() {
                    list_dir(&shard.path(), t, Some(&shard_name), &mut out)?;
                }
            }
        }
        _ => list_dir(&root.join(t.dir()), t, None, &mut out)?,
    }
    Ok(out)
}

#[async_trait::async_trait]
impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.location.clone()
    }

    async fn put(&self, t: FileType, name: &str, data: Bytes) -> Result<(), BackendError> {
        check_name(t, name, "write", &self.location)?;
        let (root, location, name) = (self.root.clone(), self.location.clone(), name.to_owned());
        self.blocking("write", t.path(&name), move || {
            put_blocking(&root, &location, t, &name, &data)
        })
        .await
    }

    async fn get(&self, t: FileType, name: &str) -> Result<Bytes, BackendError> {
        check_name(t, name, "read", &self.location)?;
        let path = Self::file_of(&self.root, t, name);
        let (rel, location) = (t.path(name), self.location.clone());
        self.blocking("read", rel.clone(), move || {
            fs::read(&path)
                .map(Bytes::from)
                .map_err(|e| BackendError::from_io("read", rel, location, e))
        })
        .await
    }

    async fn get_range(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, BackendError> {
        check_name(t, name, "read", &self.location)?;
        let path = Self::file_of(&self.root, t, name);
        let (location, name) = (self.location.clone(), name.to_owned());
        self.blocking("read", t.path(&name), move || {
            get_range_blocking(&path, &location, t, &name, offset, len)
        })
        .await
    }

    async fn list(&self, t: FileType) -> Result<Vec<ObjectInfo>, BackendError> {
        let (root, location) = (self.root.clone(), self.location.clone());
        self.blocking("list", t.dir().to_owned(), move || {
            list_blocking(&root, t).map_err(|e| BackendError::from_io("list", t.dir(), location, e))
        })
        .await
    }

    async fn delete(&self, t: FileType, name: &str) -> Result<(), BackendError> {
        check_name(t, name, "delete", &self.location)?;
        let dir = Self::dir_of(&self.root, t, name);
        let path = Self::file_of(&self.root, t, name);
        let (rel, location) = (t.path(name), self.location.clone());
        self.blocking("delete", rel.clone(), move || {
            let result = match fs::remove_file(&path) {
                Ok(()) => sync_dir(&dir),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            };
            result.map_err(|e| BackendError::from_io("delete", rel, location, e))
        })
        .await
    }

    async fn stat(&self, t: FileType, name: &str) -> Result<Option<ObjectInfo>, BackendError> {
        check_name(t, name, "stat", &self.location)?;
        let path = Self::file_of(&self.root, t, name);
        let (rel, location, name) = (t.path(name), self.location.clone(), name.to_owned());
        self.blocking("stat", rel.clone(), move || match fs::metadata(&path) {
            Ok(meta) if meta.is_file() => Ok(Some(ObjectInfo {
                name,
                size: meta.len(),
                modified: mtime_ns(&meta),
            })),
            Ok(_) => Err(
                BackendError::new(BackendErrorKind::Other, "stat", rel, location)
                    .with_detail("not a regular file"),
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BackendError::from_io("stat", rel, location, e)),
        })
        .await
    }
}
