//! Rebuilding one snapshot's trees in the destination.
//!
//! Blob ids are keyed per repository and chunk boundaries depend on the chunker seed, so no id
//! of the source means anything at the destination. The copier walks the source tree
//! depth-first and, bottom-up, writes a new tree per directory with every node's metadata
//! unchanged and new ids in it:
//!
//! - file: its content is cut again with the destination's chunker, hashed with the
//!   destination's `id_key` and deduplicated against the destination ([`super::source`]),
//!   unless the same content was copied before, when its destination content is reused after
//!   checking every blob is still there (like a backup's unchanged file). "Before" is either
//!   earlier in this run ([`ContentMemo`]) or the *reference*: a source snapshot of the same
//!   host and paths that the destination already has a copy of, walked side by side (a file
//!   whose source content equals the reference's at the same path has the reference copy's
//!   destination content);
//! - directory: recurse, then store the new tree (deduplicated like any blob);
//! - symlink, fifo, socket, device: copied as they are (no blobs).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use repo_format::{BlobId, BlobType, Chunker, Content, Node, NodeKind, Tree};

use super::memo::{ContentMemo, memo_key};
use super::source::{SMALL_FILE, groups, save_bytes, save_streamed};
use crate::archiver::content::{SavedContent, content_known};
use crate::archiver::saver::BlobSaver;
use crate::error::{Error, ErrorKind, Result};
use crate::progress::Progress;
use crate::repository::Repository;
use crate::restorer::load_files;

/// What the copier did, for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeStats {
    /// Files whose content was read from the source and cut again.
    pub files_read: u64,
    /// Files whose destination content was reused without reading them.
    pub files_reused: u64,
    /// Directories.
    pub dirs: u64,
    /// Content bytes read from the source.
    pub bytes_read: u64,
    /// Files in the snapshot.
    pub total_files: u64,
    /// Their size.
    pub total_bytes: u64,
}

/// The same directory in the reference: its source tree and the destination copy's tree.
pub(super) struct Reference {
    src: Tree,
    dst: Tree,
}

/// The copier's state for one snapshot.
pub(super) struct TreeCopier<'a, 's> {
    pub(super) src: &'a Repository,
    pub(super) dst: &'a Repository,
    pub(super) saver: &'a BlobSaver<'s>,
    pub(super) chunker: &'a Chunker,
    pub(super) memo: &'a mut ContentMemo,
    pub(super) progress: &'a dyn Progress,
    pub(super) stats: TreeStats,
}

/// Puts the path being copied in front of an error.
fn at(path: &Path, e: Error) -> Error {
    Error::with_source(e.kind(), format!("at {}", path.display()), e)
}

impl TreeCopier<'_, '_> {
    /// Copies the tree `root` of the source; `reference` is (source tree, destination tree) of
    /// the reference snapshot's roots. Returns the destination's root tree.
    pub(super) fn copy_root(
        &mut self,
        root: &BlobId,
        reference: Option<(BlobId, BlobId)>,
    ) -> Result<BlobId> {
        let reference = reference.and_then(|(s, d)| self.load_reference(&s, &d));
        let mut path = PathBuf::from("/");
        self.copy_tree(root, reference.as_ref(), &mut path)
    }

    /// A reference that cannot be loaded only costs reading the files again: no error.
    fn load_reference(&self, src: &BlobId, dst: &BlobId) -> Option<Reference> {
        let src = self.src.load_tree(src).ok()?;
        let dst = self.dst.load_tree(dst).ok()?;
        Some(Reference { src, dst })
    }

    fn child_reference(&self, r: &Reference, name: &[u8]) -> Option<Reference> {
        let src = match &r.src.find(name)?.kind {
            NodeKind::Dir { subtree } => *subtree,
            _ => return None,
        };
        let dst = match &r.dst.find(name)?.kind {
            NodeKind::Dir { subtree } => *subtree,
            _ => return None,
        };
        self.load_reference(&src, &dst)
    }

    fn copy_tree(
        &mut self,
        id: &BlobId,
        reference: Option<&Reference>,
        path: &mut PathBuf,
    ) -> Result<BlobId> {
        let mut nodes = self.src.load_tree(id).map_err(|e| at(path, e))?.nodes;
        // This directory's files first, then its subdirectories: a file's content read here is
        // in the memo before a duplicate of it deeper down is met.
        let mut to_read: Vec<usize> = Vec::new();
        for (i, node) in nodes.iter_mut().enumerate() {
            if let NodeKind::File { content } = &node.kind {
                self.stats.total_files += 1;
                self.stats.total_bytes += node.size;
                match self.reuse(node, content, reference)? {
                    Some(c) => self.reused(node, c),
                    None => to_read.push(i),
                }
            }
        }
        self.read_files(&mut nodes, &to_read, path)?;
        for node in &mut nodes {
            if let NodeKind::Dir { subtree } = &node.kind {
                let subtree = *subtree;
                path.push(std::ffi::OsStr::from_bytes(&node.name));
                let child = reference.and_then(|r| self.child_reference(r, &node.name));
                let new = self.copy_tree(&subtree, child.as_ref(), path)?;
                path.pop();
                self.stats.dirs += 1;
                node.kind = NodeKind::Dir { subtree: new };
            }
        }
        let bytes = Tree { nodes }
            .encode()
            .map_err(|e| at(path, Error::format("cannot encode a tree", e)))?;
        self.saver.save_if_new(BlobType::Tree, bytes)
    }

    /// Gives `node` the destination content `c` found by [`reuse`](Self::reuse).
    fn reused(&mut self, node: &mut Node, c: Content) {
        self.stats.files_reused += 1;
        self.progress.bytes_done(node.size);
        self.progress.file_done();
        node.kind = NodeKind::File { content: c };
    }

    /// The destination content of a file copied before, if every blob of it is still there.
    fn reuse(
        &mut self,
        node: &Node,
        content: &Content,
        reference: Option<&Reference>,
    ) -> Result<Option<Content>> {
        if let Some(c) = self.remembered(content)? {
            return Ok(Some(c));
        }
        let Some(r) = reference else {
            return Ok(None);
        };
        let same_source = r.src.find(&node.name).is_some_and(|n| {
            n.size == node.size && matches!(&n.kind, NodeKind::File { content: c } if c == content)
        });
        if !same_source {
            return Ok(None);
        }
        let Some(Node {
            kind: NodeKind::File { content: c },
            size,
            ..
        }) = r.dst.find(&node.name)
        else {
            return Ok(None);
        };
        if *size != node.size || !content_known(self.dst, self.saver, c)? {
            return Ok(None);
        }
        self.memo
            .insert(memo_key(self.src.keys(), content), c.clone());
        Ok(Some(c.clone()))
    }

    /// The memo's destination content for `content`, if every blob of it is still there.
    fn remembered(&mut self, content: &Content) -> Result<Option<Content>> {
        match self.memo.get(&memo_key(self.src.keys(), content)) {
            Some(c) if content_known(self.dst, self.saver, &c)? => Ok(Some(c)),
            _ => Ok(None),
        }
    }

    /// The source content of a file node.
    fn content_of(node: &Node) -> Option<&Content> {
        match &node.kind {
            NodeKind::File { content } => Some(content),
            _ => None,
        }
    }

    /// Reads, cuts and stores the files of `nodes` at `to_read`, replacing their content. A
    /// file whose content was stored meanwhile (a duplicate read just before) is reused.
    fn read_files(&mut self, nodes: &mut [Node], to_read: &[usize], dir: &Path) -> Result<()> {
        let (small, large): (Vec<usize>, Vec<usize>) =
            to_read.iter().partition(|&&i| nodes[i].size <= SMALL_FILE);
        // Duplicates within one group would be loaded twice: they wait for the memo instead.
        let mut later = Vec::new();
        let mut once = Vec::with_capacity(small.len());
        let mut keys = std::collections::HashSet::new();
        for i in small {
            let Some(content) = Self::content_of(&nodes[i]) else {
                continue;
            };
            if keys.insert(memo_key(self.src.keys(), content)) {
                once.push(i);
            } else {
                later.push(i);
            }
        }
        let sizes: Vec<u64> = once.iter().map(|&i| nodes[i].size).collect();
        for group in groups(&sizes) {
            let idx = &once[group];
            let loaded = {
                let refs: Vec<&Node> = idx.iter().map(|&i| &nodes[i]).collect();
                load_files(self.src, &refs)
            };
            for (&i, data) in idx.iter().zip(loaded) {
                let path = dir.join(std::ffi::OsStr::from_bytes(&nodes[i].name));
                self.progress.file_started(&path);
                let saved = data
                    .and_then(|d| {
                        save_bytes(self.saver, self.dst.keys(), self.chunker, &d, self.progress)
                    })
                    .map_err(|e| at(&path, e))?;
                self.store(&mut nodes[i], saved);
            }
        }
        for i in later.into_iter().chain(large) {
            if let Some(content) = Self::content_of(&nodes[i])
                && let Some(c) = self.remembered(content)?
            {
                self.reused(&mut nodes[i], c);
                continue;
            }
            let path = dir.join(std::ffi::OsStr::from_bytes(&nodes[i].name));
            self.progress.file_started(&path);
            let saved = if nodes[i].size <= SMALL_FILE {
                load_files(self.src, &[&nodes[i]])
                    .pop()
                    .unwrap_or_else(|| Err(Error::new(ErrorKind::Io, "no content loaded")))
                    .and_then(|d| {
                        save_bytes(self.saver, self.dst.keys(), self.chunker, &d, self.progress)
                    })
            } else {
                save_streamed(
                    self.src,
                    &nodes[i],
                    self.saver,
                    self.dst.keys(),
                    self.chunker,
                    self.progress,
                )
            }
            .map_err(|e| at(&path, e))?;
            self.store(&mut nodes[i], saved);
        }
        Ok(())
    }

    /// Puts the new content into the node and remembers it.
    fn store(&mut self, node: &mut Node, saved: SavedContent) {
        if let NodeKind::File { content } = &node.kind {
            self.memo
                .insert(memo_key(self.src.keys(), content), saved.content.clone());
        }
        node.kind = NodeKind::File {
            content: saved.content,
        };
        self.stats.files_read += 1;
        self.stats.bytes_read += saved.size;
        self.progress.file_done();
    }
}
