//! Directory backups: walk the paths depth-first, one tree per directory, bottom-up.
//!
//! The entries of a directory are saved in parallel when the walk runs in a thread pool (the
//! backup gives it one, a thread per core): each on a walker of its own, whose nodes,
//! warnings and counters are then taken in name order, so the snapshot, its summary and the
//! warnings' order do not depend on the schedule. Entries are `lstat`ed relative to their open
//! directory (no path walk from the root for each), down to 16 levels.
//!
//! For each entry the walker `lstat`s, then:
//! - regular file: reuse the parent snapshot's content when size, mtime, ctime and inode are
//!   unchanged and every blob is still known (unless `--force`), else read and chunk it;
//! - directory: recurse (with the parent's subtree, if any), then store the tree blob;
//! - symlink: store the target; fifo, socket, device: store the metadata and warn.
//!
//! An entry an exclude pattern matches ([`Excludes`]) is left out, and counted, without a
//! warning; below an excluded directory nothing is looked at.
//!
//! A file or directory that cannot be read becomes a warning and is left out (an unreadable
//! directory is stored empty); the backup goes on. Only repository errors abort.

use std::ffi::OsStr;
use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use repo_format::{BlobType, Chunker, Node, NodeKind, Timestamp, Tree};

use super::Warning;
use super::content::{ContentError, content_known, save_content};
use super::exclude::{ExcludeState, Excludes};
use super::saver::BlobSaver;
use crate::error::{Error, ErrorKind, Result};
use crate::progress::Progress;
use crate::repository::Repository;

/// Counters for the snapshot summary.
#[derive(Clone, Copy, Debug, Default)]
pub struct WalkCounts {
    /// Files with no counterpart in the parent snapshot.
    pub files_new: u64,
    /// Files that were in the parent but changed.
    pub files_changed: u64,
    /// Files reused from the parent without reading.
    pub files_unmodified: u64,
    /// Directories.
    pub dirs: u64,
    /// Bytes read from files.
    pub bytes_read: u64,
    /// Size of all files in the snapshot.
    pub total_bytes: u64,
    /// Files in the snapshot.
    pub total_files: u64,
    /// Entries left out by an exclude pattern (a directory counts once, whatever it holds).
    pub excluded: u64,
}

impl WalkCounts {
    /// Adds `other`'s counters to these (a subtree walked on another thread).
    fn add(&mut self, other: &WalkCounts) {
        self.files_new += other.files_new;
        self.files_changed += other.files_changed;
        self.files_unmodified += other.files_unmodified;
        self.dirs += other.dirs;
        self.bytes_read += other.bytes_read;
        self.total_bytes += other.total_bytes;
        self.total_files += other.total_files;
        self.excluded += other.excluded;
    }
}

/// The walker's state for one backup.
pub struct Walker<'a, 's> {
    pub(super) repo: &'a Repository,
    pub(super) saver: &'a BlobSaver<'s>,
    pub(super) chunker: &'a Chunker,
    pub(super) force: bool,
    pub(super) excludes: &'a Excludes,
    pub(super) progress: &'a dyn Progress,
    pub(super) warnings: Vec<Warning>,
    pub(super) counts: WalkCounts,
    /// Directories open above the entry being saved.
    pub(super) depth: usize,
}

/// Directories at most this deep keep their entries (and so a descriptor) open while their
/// children are saved; deeper ones are listed by name and their entries `lstat`ed by path.
/// Each walk thread holds about this many at most (more when, waiting for a subtree, it takes
/// up another one on its stack): with at most [`super::MAX_WALK_THREADS`] threads, well under
/// the usual limit of 1024 descriptors.
const MAX_OPEN_DEPTH: usize = 16;

/// Linux's `PATH_MAX`, with the terminating NUL: a longer path is refused (`ENAMETOOLONG`).
const PATH_MAX: usize = 4096;

/// A directory entry waiting to be saved, in name order.
struct Child {
    name: Vec<u8>,
    /// Holds the open directory (`lstat` relative to it); `None`: `lstat` by path.
    entry: Option<fs::DirEntry>,
}

/// A node's metadata fields, from `lstat`.
pub fn node_from_metadata(name: Vec<u8>, kind: NodeKind, m: &Metadata) -> Node {
    let size = if matches!(kind, NodeKind::File { .. }) {
        m.size()
    } else {
        0
    };
    Node {
        name,
        kind,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        mtime: Timestamp {
            sec: m.mtime(),
            nsec: clamp_nsec(m.mtime_nsec()),
        },
        ctime: Timestamp {
            sec: m.ctime(),
            nsec: clamp_nsec(m.ctime_nsec()),
        },
        inode: m.ino(),
        device: m.dev(),
        nlink: m.nlink(),
        size,
    }
}

fn clamp_nsec(n: i64) -> u32 {
    u32::try_from(n.clamp(0, 999_999_999)).unwrap_or(0)
}

impl<'a, 's> Walker<'a, 's> {
    fn warn(&mut self, path: &Path, message: String) {
        self.progress.warning(path, &message);
        self.warnings.push(Warning {
            path: path.to_path_buf(),
            message,
        });
    }

    /// Builds the root tree: one node per backed-up path, named by its last component.
    pub fn save_roots(
        &mut self,
        paths: &[PathBuf],
        parent: Option<&Tree>,
    ) -> Result<repo_format::BlobId> {
        let mut nodes = Vec::new();
        for path in paths {
            let name = root_name(path)?;
            let parent_node = parent.and_then(|t| t.find(&name));
            if let Some(node) = self.save_path(path, name, parent_node, None)? {
                nodes.push(node);
            }
        }
        self.save_tree(Tree { nodes })
    }

    fn save_tree(&mut self, tree: Tree) -> Result<repo_format::BlobId> {
        let bytes = tree
            .encode()
            .map_err(|e| Error::format("cannot encode a tree", e))?;
        self.saver.save_if_new(BlobType::Tree, bytes)
    }

    /// Saves one entry and everything below it; `None` when it had to be left out or is
    /// excluded. `excludes` is the state of its directory, `None` for a backed-up path.
    fn save_path(
        &mut self,
        path: &Path,
        name: Vec<u8>,
        parent: Option<&Node>,
        excludes: Option<&ExcludeState>,
    ) -> Result<Option<Node>> {
        let meta = fs::symlink_metadata(path);
        self.save_entry(path, name, meta, parent, excludes)
    }

    /// [`Walker::save_path`] with the entry's `lstat` already taken (or failed).
    fn save_entry(
        &mut self,
        path: &Path,
        name: Vec<u8>,
        meta: std::io::Result<Metadata>,
        parent: Option<&Node>,
        excludes: Option<&ExcludeState>,
    ) -> Result<Option<Node>> {
        self.saver.check()?;
        let meta = match meta {
            Ok(m) => m,
            Err(e) => {
                self.warn(path, format!("cannot stat: {e}; left out"));
                return Ok(None);
            }
        };
        let ft = meta.file_type();
        let below = match excludes {
            None => self.excludes.start(),
            Some(state) => match self.excludes.step(state, &name, ft.is_dir()) {
                Some(below) => below,
                None => {
                    self.counts.excluded += 1;
                    return Ok(None);
                }
            },
        };
        if ft.is_dir() {
            self.save_dir(path, name, &meta, parent, &below).map(Some)
        } else if ft.is_file() {
            self.save_file(path, name, &meta, parent)
        } else if ft.is_symlink() {
            match fs::read_link(path) {
                Ok(target) => {
                    let kind = NodeKind::Symlink {
                        target: target.as_os_str().as_bytes().to_vec(),
                    };
                    Ok(Some(node_from_metadata(name, kind, &meta)))
                }
                Err(e) => {
                    self.warn(path, format!("cannot read symlink: {e}; left out"));
                    Ok(None)
                }
            }
        } else {
            let (kind, what) = if ft.is_fifo() {
                (NodeKind::Fifo, "fifo")
            } else if ft.is_socket() {
                (NodeKind::Socket, "socket")
            } else if ft.is_char_device() {
                (
                    NodeKind::CharDevice { rdev: meta.rdev() },
                    "character device",
                )
            } else {
                (NodeKind::BlockDevice { rdev: meta.rdev() }, "block device")
            };
            self.warn(
                path,
                format!("{what}: stored as metadata only, its contents are not read"),
            );
            Ok(Some(node_from_metadata(name, kind, &meta)))
        }
    }

    fn save_dir(
        &mut self,
        path: &Path,
        name: Vec<u8>,
        meta: &Metadata,
        parent: Option<&Node>,
        excludes: &ExcludeState,
    ) -> Result<Node> {
        self.counts.dirs += 1;
        let parent_tree = match parent.map(|n| &n.kind) {
            // A damaged parent only costs re-reading this directory, and its tree is stored
            // again rather than deduplicated against the bad copy.
            Some(NodeKind::Dir { subtree }) => match self.repo.load_tree(subtree) {
                Ok(t) => Some(t),
                Err(_) => {
                    self.saver.distrust(*subtree);
                    None
                }
            },
            _ => None,
        };
        // Near the top, the entries keep the directory open, so each is `lstat`ed relative
        // to it (no path walk from the root per file); deeper down only names are kept, so a
        // deep tree does not hold a descriptor per level.
        let keep_open = self.depth < MAX_OPEN_DEPTH;
        let mut children: Vec<Child> = Vec::new();
        match fs::read_dir(path) {
            Ok(rd) => {
                for entry in rd {
                    match entry {
                        Ok(e) => children.push(Child {
                            name: e.file_name().as_bytes().to_vec(),
                            entry: keep_open.then_some(e),
                        }),
                        Err(e) => {
                            self.warn(path, format!("error while listing the directory: {e}"))
                        }
                    }
                }
            }
            Err(e) => self.warn(
                path,
                format!("cannot list the directory: {e}; stored empty"),
            ),
        }
        children.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        let nodes = self.save_children(path, children, parent_tree.as_ref(), excludes)?;
        let subtree = self.save_tree(Tree { nodes })?;
        Ok(node_from_metadata(name, NodeKind::Dir { subtree }, meta))
    }

    /// A walker for one entry `depth` directories down: the same backup, its own warnings and
    /// counters (taken back by [`Walker::save_children`]).
    fn fork(&self, depth: usize) -> Walker<'a, 's> {
        Walker {
            repo: self.repo,
            saver: self.saver,
            chunker: self.chunker,
            force: self.force,
            excludes: self.excludes,
            progress: self.progress,
            warnings: Vec::new(),
            counts: WalkCounts::default(),
            depth,
        }
    }

    /// Saves a directory's entries, in name order, in parallel when run in a thread pool:
    /// each entry on a walker of its own, whose warnings and counters are then taken in
    /// the entries' order, so the result does not depend on the schedule.
    fn save_children(
        &mut self,
        path: &Path,
        children: Vec<Child>,
        parent_tree: Option<&Tree>,
        excludes: &ExcludeState,
    ) -> Result<Vec<Node>> {
        use rayon::prelude::*;
        let depth = self.depth + 1;
        let saved: Vec<(Result<Option<Node>>, Vec<Warning>, WalkCounts)> = children
            .into_par_iter()
            .map(|Child { name, entry }| {
                let mut walker = self.fork(depth);
                let child_path = path.join(OsStr::from_bytes(&name));
                let meta = match entry {
                    // A path the kernel refuses cannot be opened or listed either: `lstat`
                    // by path then, so the entry is left out with that error rather than
                    // stored without its contents.
                    Some(e) if child_path.as_os_str().len() < PATH_MAX => e.metadata(),
                    _ => fs::symlink_metadata(&child_path),
                };
                let child_parent = parent_tree.and_then(|t| t.find(&name));
                let node = walker.save_entry(&child_path, name, meta, child_parent, Some(excludes));
                (node, walker.warnings, walker.counts)
            })
            .collect();
        let mut nodes = Vec::with_capacity(saved.len());
        let mut first_error = None;
        for (node, warnings, counts) in saved {
            self.warnings.extend(warnings);
            self.counts.add(&counts);
            match node {
                Ok(Some(node)) => nodes.push(node),
                Ok(None) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(nodes),
        }
    }

    fn save_file(
        &mut self,
        path: &Path,
        name: Vec<u8>,
        meta: &Metadata,
        parent: Option<&Node>,
    ) -> Result<Option<Node>> {
        self.counts.total_files += 1;
        self.progress.file_started(path);
        if let Some(p) = parent
            && let NodeKind::File { content } = &p.kind
            && !self.force
            && unchanged(p, meta)
            && content_known(self.repo, self.saver, content)?
        {
            self.counts.files_unmodified += 1;
            self.counts.total_bytes += meta.size();
            self.progress.bytes_done(meta.size());
            self.progress.file_done();
            let kind = NodeKind::File {
                content: content.clone(),
            };
            return Ok(Some(node_from_metadata(name, kind, meta)));
        }
        let mut file = match fs::File::open(path) {
            Ok(f) => f,
            Err(e) => {
                self.counts.total_files -= 1;
                self.warn(path, format!("cannot open: {e}; left out"));
                return Ok(None);
            }
        };
        let saved = match save_content(
            self.saver,
            self.repo.keys(),
            self.chunker,
            None,
            &mut file,
            self.progress,
        ) {
            Ok(s) => s,
            Err(ContentError::Read(e)) => {
                self.counts.total_files -= 1;
                self.warn(path, format!("read error: {e}; left out"));
                return Ok(None);
            }
            Err(ContentError::Repo(e)) => return Err(e),
        };
        if saved.size != meta.size() {
            self.warn(
                path,
                format!(
                    "changed while being read ({} bytes, then {}); stored as read",
                    meta.size(),
                    saved.size
                ),
            );
        }
        if parent.is_some() {
            self.counts.files_changed += 1;
        } else {
            self.counts.files_new += 1;
        }
        self.counts.bytes_read += saved.size;
        self.counts.total_bytes += saved.size;
        self.progress.file_done();
        let mut node = node_from_metadata(
            name,
            NodeKind::File {
                content: saved.content,
            },
            meta,
        );
        node.size = saved.size;
        Ok(Some(node))
    }
}

/// The parent's node still describes the file on disk.
fn unchanged(parent: &Node, m: &Metadata) -> bool {
    parent.size == m.size()
        && parent.mtime
            == Timestamp {
                sec: m.mtime(),
                nsec: clamp_nsec(m.mtime_nsec()),
            }
        && parent.ctime
            == Timestamp {
                sec: m.ctime(),
                nsec: clamp_nsec(m.ctime_nsec()),
            }
        && parent.inode == m.ino()
}

/// The name a backed-up path gets in the root tree: its last component.
pub fn root_name(path: &Path) -> Result<Vec<u8>> {
    match path.file_name() {
        Some(n) => Ok(n.as_bytes().to_vec()),
        None => Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "cannot back up {}: name a directory below it (a path needs a last component)",
                path.display()
            ),
        )),
    }
}

/// Counts the files and bytes below `paths` that `excludes` leaves in (for progress totals and
/// an ETA), without following symlinks. Runs beside the walker; stops early when `cancel` is
/// set.
pub fn scan(
    paths: &[PathBuf],
    excludes: &Excludes,
    cancel: &std::sync::atomic::AtomicBool,
) -> (u64, u64) {
    let (mut files, mut bytes) = (0u64, 0u64);
    let mut dirs: Vec<(PathBuf, ExcludeState)> = Vec::new();
    for p in paths {
        let Ok(m) = fs::symlink_metadata(p) else {
            continue;
        };
        if m.is_dir() {
            dirs.push((p.clone(), excludes.start()));
        } else if m.is_file() {
            files += 1;
            bytes += m.size();
        }
    }
    // The listing says which entries are directories; only files are `lstat`ed, relative to
    // their directory.
    while let Some((dir, state)) = dirs.pop() {
        if cancel.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        let Ok(rd) = fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            if cancel.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            let Ok(ft) = e.file_type() else {
                continue;
            };
            let Some(below) = excludes.step(&state, e.file_name().as_bytes(), ft.is_dir()) else {
                continue;
            };
            if ft.is_dir() {
                dirs.push((e.path(), below));
            } else if ft.is_file()
                && let Ok(m) = e.metadata()
            {
                files += 1;
                bytes += m.size();
            }
        }
    }
    (files, bytes)
}
