//! `cairn find`: which snapshots hold paths matching a [`Glob`], streamed one match at a time.
//!
//! ```text
//! for each snapshot (the caller's order):
//!     walk its tree depth-first, name order, carrying the glob's state down:
//!         a node whose state matches -> on_match(path, node)
//!         a directory below which nothing can match -> not loaded (anchored patterns)
//!         a (tree, state) pair known to hold no match -> not loaded again
//! ```
//!
//! Memory holds one path, the trees on the current branch and a bounded set of (tree, state)
//! pairs that held no match. Nightly snapshots share most of their trees, so that set makes
//! every snapshot after the first cost only its changed directories (plus those with matches,
//! which must be listed again). A damaged subtree is reported through `on_damage` and skipped;
//! the search goes on.

use std::collections::HashSet;

use repo_format::{BlobId, Node, NodeKind};

use crate::error::{Error, ErrorKind, Result};
use crate::glob::{Glob, GlobState};
use crate::repository::Repository;

/// At most this many (tree, state) pairs are remembered as holding no match (~12 MB).
const NO_MATCH_CAP: usize = 1 << 18;

/// What one [`Finder::find`] call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FindCounts {
    /// Nodes that matched.
    pub matches: u64,
    /// Trees loaded from the repository.
    pub trees_loaded: u64,
    /// Subtrees not loaded: nothing below them can match, or they were searched before.
    pub trees_skipped: u64,
    /// Subtrees that could not be read (reported through `on_damage`).
    pub damaged: u64,
}

/// Searches snapshots for one pattern, remembering across snapshots which subtrees hold no
/// match.
#[derive(Debug)]
pub struct Finder {
    glob: Glob,
    no_match: HashSet<(BlobId, GlobState)>,
}

impl Finder {
    /// A finder for `glob`.
    pub fn new(glob: Glob) -> Finder {
        Finder {
            glob,
            no_match: HashSet::new(),
        }
    }

    /// The pattern.
    pub fn glob(&self) -> &Glob {
        &self.glob
    }

    /// Calls `on_match(path, node)` for every node below `root` whose path matches, parents
    /// before children, in name order. Paths are `/`-separated, relative to the snapshot root
    /// (as `cairn ls` shows them without the leading `/`). A subtree that cannot be read
    /// because it is damaged or missing goes to `on_damage(path, error)` and is skipped; other
    /// errors (storage, the callbacks' own) stop the search.
    pub fn find(
        &mut self,
        repo: &Repository,
        root: &BlobId,
        on_match: &mut dyn FnMut(&[u8], &Node) -> Result<()>,
        on_damage: &mut dyn FnMut(&[u8], &Error),
    ) -> Result<FindCounts> {
        let mut counts = FindCounts::default();
        let mut path = Vec::new();
        let start = self.glob.start();
        let mut walk = Walk {
            repo,
            glob: &self.glob,
            no_match: &mut self.no_match,
            counts: &mut counts,
            on_match,
            on_damage,
        };
        walk.tree(root, start, &mut path)?;
        Ok(counts)
    }
}

/// One search's borrowed state.
struct Walk<'a> {
    repo: &'a Repository,
    glob: &'a Glob,
    no_match: &'a mut HashSet<(BlobId, GlobState)>,
    counts: &'a mut FindCounts,
    on_match: &'a mut dyn FnMut(&[u8], &Node) -> Result<()>,
    on_damage: &'a mut dyn FnMut(&[u8], &Error),
}

impl Walk<'_> {
    /// Searches the tree `id`, reached with `state` at `path`; returns whether anything below
    /// it matched (or could not be read, so it must not be remembered as empty).
    fn tree(&mut self, id: &BlobId, state: GlobState, path: &mut Vec<u8>) -> Result<bool> {
        if self.no_match.contains(&(*id, state)) {
            self.counts.trees_skipped += 1;
            return Ok(false);
        }
        let tree = match self.repo.load_tree(id) {
            Ok(t) => t,
            Err(e) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::NotFound) => {
                self.counts.damaged += 1;
                (self.on_damage)(path, &e);
                return Ok(true);
            }
            Err(e) => return Err(e),
        };
        self.counts.trees_loaded += 1;
        let mut found = false;
        for node in &tree.nodes {
            let len = path.len();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&node.name);
            let s = self.glob.step(state, &node.name);
            if self.glob.matched(s) {
                found = true;
                self.counts.matches += 1;
                (self.on_match)(path, node)?;
            }
            if let NodeKind::Dir { subtree } = &node.kind {
                if self.glob.may_match_below(s) {
                    found |= self.tree(subtree, s, path)?;
                } else {
                    self.counts.trees_skipped += 1;
                }
            }
            path.truncate(len);
        }
        if !found && self.no_match.len() < NO_MATCH_CAP {
            self.no_match.insert((*id, state));
        }
        Ok(found)
    }
}
