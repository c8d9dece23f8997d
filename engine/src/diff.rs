//! `cairn diff`: what changed between two snapshots, path by path.
//!
//! ```text
//! diff(tree A, tree B):
//!     same tree id -> nothing changed below: skip without loading either tree
//!     else load both; merge their nodes by name (trees are sorted by name bytes):
//!         only in A           -> `-` for it and everything below it
//!         only in B           -> `+` for it and everything below it
//!         different kinds     -> `T`, then `-` for what was below A, `+` for what is below B
//!         files, other blobs  -> `M` (content: the data blob id lists differ)
//!         symlinks/devices    -> `M` when the target or device number differs
//!         same content        -> `U` when mode, owner, group or mtime differ
//!         two directories     -> `U` as above, then diff(subtree A, subtree B)
//! ```
//!
//! Content is compared by blob ids, never by reading data: the same bytes chunked with another
//! chunker profile show as modified. Changes are handed to a callback in path order, parents
//! before children, so memory holds only the trees on the current branch. For a modified file
//! whose blob lists have at most [`MAX_COMPARED_IDS`] ids each, [`DataDelta`] says how many
//! bytes of blobs it gained and lost (what an incremental backup of it stored).

use std::cmp::Ordering;

use repo_format::{BlobId, Content, Node, NodeKind};

use crate::error::{Error, Result};
use crate::repository::Repository;

/// Files with more data blobs than this (per side; 64 GiB at 64 KiB chunks) are compared by
/// their content lists only, without a [`DataDelta`]: the two id lists are held in memory.
pub const MAX_COMPARED_IDS: usize = 1 << 20;

/// Index lookups per batch when sizing a [`DataDelta`].
const LOOKUP_BATCH: usize = 4096;

/// The kind of one change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// Only in the second snapshot (`+`).
    Added,
    /// Only in the first snapshot (`-`).
    Removed,
    /// Content differs: file data, symlink target or device number (`M`).
    Modified,
    /// Same content, different mode, owner, group or mtime (`U`).
    Metadata,
    /// A different kind of node, e.g. a file that became a directory (`T`).
    TypeChanged,
}

impl ChangeKind {
    /// The one-character mark: `+`, `-`, `M`, `U` or `T`.
    pub fn mark(self) -> char {
        match self {
            ChangeKind::Added => '+',
            ChangeKind::Removed => '-',
            ChangeKind::Modified => 'M',
            ChangeKind::Metadata => 'U',
            ChangeKind::TypeChanged => 'T',
        }
    }
}

/// Blob-level size of a file's modification.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataDelta {
    /// Plaintext bytes of the data blobs the new version has and the old one does not.
    pub added: u64,
    /// Plaintext bytes of the data blobs the old version had and the new one does not.
    pub removed: u64,
}

/// One changed path.
#[derive(Clone, Copy, Debug)]
pub struct Change<'a> {
    /// What happened.
    pub kind: ChangeKind,
    /// `/`-separated, relative to the snapshot root (as `cairn ls` shows it without the `/`).
    pub path: &'a [u8],
    /// The node in the first snapshot (`None` when added).
    pub before: Option<&'a Node>,
    /// The node in the second snapshot (`None` when removed).
    pub after: Option<&'a Node>,
    /// For modified files, when the id lists were small enough to compare.
    pub data: Option<DataDelta>,
}

/// Options for [`diff`].
#[derive(Clone, Copy, Debug, Default)]
pub struct DiffOptions {
    /// Also report metadata-only changes (`U`) to the callback; they are counted either way.
    pub metadata: bool,
}

/// Counts and sizes of what [`diff`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiffSummary {
    /// Paths added (every node below an added directory counts).
    pub added: u64,
    /// Paths removed.
    pub removed: u64,
    /// Paths whose content changed.
    pub modified: u64,
    /// Paths whose metadata alone changed.
    pub metadata: u64,
    /// Paths whose kind changed.
    pub type_changed: u64,
    /// Size of the files added (including files that replaced another kind of node).
    pub bytes_added: u64,
    /// Size of the files removed (including files replaced by another kind of node).
    pub bytes_removed: u64,
    /// Sum of [`DataDelta::added`] over the modified files.
    pub data_added: u64,
    /// Sum of [`DataDelta::removed`] over the modified files.
    pub data_removed: u64,
    /// Modified files too large for a [`DataDelta`].
    pub data_unknown: u64,
    /// Trees loaded from the repository.
    pub trees_loaded: u64,
    /// Subtrees skipped because both snapshots have the same tree there.
    pub trees_skipped: u64,
}

/// Compares the trees `before` and `after` (two snapshots' roots) and calls `f` for every
/// change in path order; metadata-only changes only with [`DiffOptions::metadata`].
pub fn diff(
    repo: &Repository,
    before: &BlobId,
    after: &BlobId,
    opts: &DiffOptions,
    f: &mut dyn FnMut(&Change<'_>) -> Result<()>,
) -> Result<DiffSummary> {
    let mut d = Differ {
        repo,
        opts: *opts,
        f,
        sum: DiffSummary::default(),
    };
    d.trees(before, after, &mut Vec::new())?;
    Ok(d.sum)
}

struct Differ<'a> {
    repo: &'a Repository,
    opts: DiffOptions,
    f: &'a mut dyn FnMut(&Change<'_>) -> Result<()>,
    sum: DiffSummary,
}

/// Appends `/name` (or `name` at the root) to `path`; returns the length to truncate back to.
fn push_name(path: &mut Vec<u8>, name: &[u8]) -> usize {
    let len = path.len();
    if !path.is_empty() {
        path.push(b'/');
    }
    path.extend_from_slice(name);
    len
}

/// Whether the metadata `cairn diff` shows (mode, owner, group, mtime) differs. ctime, inode,
/// device and link count change on every copy or restore and are not shown.
fn metadata_differs(a: &Node, b: &Node) -> bool {
    a.mode != b.mode || a.uid != b.uid || a.gid != b.gid || a.mtime != b.mtime
}

impl Differ<'_> {
    fn load(&mut self, id: &BlobId) -> Result<repo_format::Tree> {
        self.sum.trees_loaded += 1;
        self.repo.load_tree(id)
    }

    fn emit(&mut self, change: &Change<'_>) -> Result<()> {
        let s = &mut self.sum;
        match change.kind {
            ChangeKind::Added => s.added += 1,
            ChangeKind::Removed => s.removed += 1,
            ChangeKind::Modified => s.modified += 1,
            ChangeKind::Metadata => s.metadata += 1,
            ChangeKind::TypeChanged => s.type_changed += 1,
        }
        match change.kind {
            ChangeKind::Added | ChangeKind::TypeChanged | ChangeKind::Removed => {
                s.bytes_added += change.after.map_or(0, |n| n.size);
                s.bytes_removed += change.before.map_or(0, |n| n.size);
            }
            ChangeKind::Modified => match change.data {
                Some(d) => {
                    s.data_added += d.added;
                    s.data_removed += d.removed;
                }
                None if matches!(change.after.map(|n| &n.kind), Some(NodeKind::File { .. })) => {
                    s.data_unknown += 1;
                }
                None => {}
            },
            ChangeKind::Metadata => {}
        }
        if change.kind == ChangeKind::Metadata && !self.opts.metadata {
            return Ok(());
        }
        (self.f)(change)
    }

    /// Diffs two trees reached at `path`.
    fn trees(&mut self, a: &BlobId, b: &BlobId, path: &mut Vec<u8>) -> Result<()> {
        if a == b {
            self.sum.trees_skipped += 1;
            return Ok(());
        }
        let ta = self.load(a)?;
        let tb = self.load(b)?;
        let (mut i, mut j) = (0, 0);
        while i < ta.nodes.len() || j < tb.nodes.len() {
            let order = match (ta.nodes.get(i), tb.nodes.get(j)) {
                (Some(x), Some(y)) => x.name.cmp(&y.name),
                (Some(_), None) => Ordering::Less,
                _ => Ordering::Greater,
            };
            match order {
                Ordering::Less => {
                    self.one_side(ChangeKind::Removed, &ta.nodes[i], path)?;
                    i += 1;
                }
                Ordering::Greater => {
                    self.one_side(ChangeKind::Added, &tb.nodes[j], path)?;
                    j += 1;
                }
                Ordering::Equal => {
                    self.pair(&ta.nodes[i], &tb.nodes[j], path)?;
                    i += 1;
                    j += 1;
                }
            }
        }
        Ok(())
    }

    /// Reports a node that exists on one side only, and everything below it.
    fn one_side(&mut self, kind: ChangeKind, node: &Node, path: &mut Vec<u8>) -> Result<()> {
        let len = push_name(path, &node.name);
        let (before, after) = match kind {
            ChangeKind::Removed => (Some(node), None),
            _ => (None, Some(node)),
        };
        self.emit(&Change {
            kind,
            path,
            before,
            after,
            data: None,
        })?;
        if let NodeKind::Dir { subtree } = &node.kind {
            self.below(kind, subtree, path)?;
        }
        path.truncate(len);
        Ok(())
    }

    /// Reports everything below the directory at `path` as added or removed.
    fn below(&mut self, kind: ChangeKind, subtree: &BlobId, path: &mut Vec<u8>) -> Result<()> {
        let tree = self.load(subtree)?;
        for child in &tree.nodes {
            self.one_side(kind, child, path)?;
        }
        Ok(())
    }

    /// Compares two nodes of the same name.
    fn pair(&mut self, x: &Node, y: &Node, path: &mut Vec<u8>) -> Result<()> {
        let len = push_name(path, &x.name);
        let change = |kind, data| Change {
            kind,
            path: &[],
            before: Some(x),
            after: Some(y),
            data,
        };
        if std::mem::discriminant(&x.kind) != std::mem::discriminant(&y.kind) {
            self.emit(&Change {
                path,
                ..change(ChangeKind::TypeChanged, None)
            })?;
            if let NodeKind::Dir { subtree } = &x.kind {
                self.below(ChangeKind::Removed, subtree, path)?;
            }
            if let NodeKind::Dir { subtree } = &y.kind {
                self.below(ChangeKind::Added, subtree, path)?;
            }
            path.truncate(len);
            return Ok(());
        }
        let differs = |same: bool| {
            if same {
                Compared::Same
            } else {
                Compared::Differs(None)
            }
        };
        let compared = match (&x.kind, &y.kind) {
            (NodeKind::File { content: a }, NodeKind::File { content: b }) => {
                compare_content(self.repo, a, b, x.size != y.size)?
            }
            (NodeKind::Symlink { target: a }, NodeKind::Symlink { target: b }) => differs(a == b),
            (NodeKind::CharDevice { rdev: a }, NodeKind::CharDevice { rdev: b })
            | (NodeKind::BlockDevice { rdev: a }, NodeKind::BlockDevice { rdev: b }) => {
                differs(a == b)
            }
            _ => Compared::Same,
        };
        if let Compared::Differs(data) = compared {
            self.emit(&Change {
                path,
                ..change(ChangeKind::Modified, data)
            })?;
        } else if metadata_differs(x, y) {
            self.emit(&Change {
                path,
                ..change(ChangeKind::Metadata, None)
            })?;
        }
        if let (NodeKind::Dir { subtree: a }, NodeKind::Dir { subtree: b }) = (&x.kind, &y.kind) {
            self.trees(a, b, path)?;
        }
        path.truncate(len);
        Ok(())
    }
}

/// How the contents of two nodes compare.
enum Compared {
    Same,
    /// With the delta when both id lists were small enough to compare.
    Differs(Option<DataDelta>),
}

/// Compares two files' contents by their data blob ids.
fn compare_content(
    repo: &Repository,
    a: &Content,
    b: &Content,
    sizes_differ: bool,
) -> Result<Compared> {
    if a == b && !sizes_differ {
        return Ok(Compared::Same);
    }
    let (Some(ids_a), Some(ids_b)) = (content_ids(repo, a)?, content_ids(repo, b)?) else {
        // Too large to hold: the same id lists always give the same content lists, so
        // different lists mean different data.
        return Ok(Compared::Differs(None));
    };
    if ids_a == ids_b && !sizes_differ {
        return Ok(Compared::Same);
    }
    Ok(Compared::Differs(Some(delta(repo, ids_a, ids_b)?)))
}

/// A file's data blob ids, or `None` when there are more than [`MAX_COMPARED_IDS`].
fn content_ids(repo: &Repository, c: &Content) -> Result<Option<Vec<BlobId>>> {
    match c {
        Content::Direct(ids) => Ok((ids.len() <= MAX_COMPARED_IDS).then(|| ids.clone())),
        Content::Indirect(lists) => {
            let mut ids = Vec::new();
            for list in lists {
                let list = repo.load_content_list(list)?;
                if ids.len() + list.ids.len() > MAX_COMPARED_IDS {
                    return Ok(None);
                }
                ids.extend_from_slice(&list.ids);
            }
            Ok(Some(ids))
        }
    }
}

/// The plaintext sizes of the blobs only in `b` (added) and only in `a` (removed); each
/// distinct blob counts once.
fn delta(repo: &Repository, mut a: Vec<BlobId>, mut b: Vec<BlobId>) -> Result<DataDelta> {
    a.sort_unstable();
    a.dedup();
    b.sort_unstable();
    b.dedup();
    let (mut only_a, mut only_b) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x == y => {
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x < y => {
                only_a.push(*x);
                i += 1;
            }
            (Some(x), None) => {
                only_a.push(*x);
                i += 1;
            }
            (_, Some(y)) => {
                only_b.push(*y);
                j += 1;
            }
            (None, None) => break,
        }
    }
    Ok(DataDelta {
        added: raw_bytes(repo, &only_b)?,
        removed: raw_bytes(repo, &only_a)?,
    })
}

/// The summed plaintext length of indexed blobs (blobs the index does not name count 0:
/// `cairn check` reports those).
fn raw_bytes(repo: &Repository, ids: &[BlobId]) -> Result<u64> {
    let mut total = 0;
    for chunk in ids.chunks(LOOKUP_BATCH) {
        let locs = repo
            .cache()
            .lookup_many(chunk)
            .map_err(|e| Error::cache("cannot read the index cache", e))?;
        total += locs
            .iter()
            .flatten()
            .map(|l| u64::from(l.entry.raw_len))
            .sum::<u64>();
    }
    Ok(total)
}
