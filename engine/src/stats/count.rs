//! Counting what snapshots reference: restore sizes per tree (memoized) and unique blobs per
//! set (on disk, in a [`UsedSet`]).
//!
//! ```text
//! visit(tree) -> (files, dirs, others, bytes) of everything below it:
//!     sets that do not hold `tree` yet = those that must count its blobs
//!     none of them, and the sizes are memoized -> the memo (nothing loaded)
//!     else load it; count it as a tree blob in those sets; per node:
//!         file -> its size; its data blob ids (and content lists) counted in those sets
//!         dir  -> visit(subtree)
//! ```
//!
//! A tree is put in a set before its children are counted, and a failure aborts everything,
//! so "the set holds this tree" always means "the set holds everything below it".

use std::collections::{HashMap, HashSet};

use repo_format::{BlobId, Content, NodeKind};

use super::{BlobFigures, TreeSize};
use crate::error::{Error, Result};
use crate::prune::used::{USED, UsedSet};
use crate::repository::Repository;

/// Memoized subtree sizes (each entry ~100 bytes: ~25 MB at most).
const MEMO_CAP: usize = 1 << 18;

/// Data blob ids gathered before they are counted in one batch.
const ID_BATCH: usize = 16_384;

/// What a blob is to the snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    /// File content.
    Data,
    /// A tree or a content list.
    Tree,
}

/// A set of blobs counted once each, and their figures.
pub(super) struct BlobCounter {
    set: UsedSet,
    /// Compression groups (pack, offset) counted already: a group is stored, and needed, whole,
    /// so its envelope counts once, with its first member counted. One per ~1 MiB of data.
    groups: HashSet<(repo_format::PackId, u32)>,
    pub(super) figures: BlobFigures,
}

impl BlobCounter {
    /// An empty counter whose set lives under `dir`.
    pub(super) fn new(dir: &std::path::Path) -> Result<BlobCounter> {
        Ok(BlobCounter {
            set: UsedSet::create(dir)?,
            groups: HashSet::new(),
            figures: BlobFigures::default(),
        })
    }

    /// Whether the set holds `id` already.
    fn holds(&mut self, id: &BlobId) -> Result<bool> {
        Ok(self.set.get_many(std::slice::from_ref(id))?[0] != 0)
    }

    /// Counts the blobs of `ids` the set does not hold yet (each once), and adds them.
    fn add(&mut self, repo: &Repository, ids: &[BlobId], role: Role) -> Result<()> {
        let mut seen = HashSet::with_capacity(ids.len());
        let unique: Vec<BlobId> = ids.iter().copied().filter(|id| seen.insert(*id)).collect();
        let flags = self.set.get_many(&unique)?;
        let new: Vec<BlobId> = unique
            .iter()
            .zip(flags)
            .filter(|(_, f)| *f == 0)
            .map(|(id, _)| *id)
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let locs = repo
            .cache()
            .lookup_many(&new)
            .map_err(|e| Error::cache("cannot read the index cache", e))?;
        for (id, loc) in new.iter().zip(locs) {
            self.set.put(id, USED)?;
            let f = &mut self.figures;
            let Some(loc) = loc else {
                f.missing += 1;
                continue;
            };
            let grouped_again =
                loc.entry.is_grouped() && !self.groups.insert((loc.pack, loc.entry.offset));
            let (raw, stored) = (
                u64::from(loc.entry.raw_len),
                if grouped_again {
                    0
                } else {
                    u64::from(loc.entry.stored_len)
                },
            );
            match role {
                Role::Data => {
                    f.data_blobs += 1;
                    f.data_raw += raw;
                    f.data_stored += stored;
                }
                Role::Tree => {
                    f.tree_blobs += 1;
                    f.tree_raw += raw;
                    f.tree_stored += stored;
                }
            }
        }
        Ok(())
    }
}

/// Walks snapshot trees, counting blobs into up to two counters at once (the whole selection
/// and the current group), with subtree sizes memoized across snapshots.
pub(super) struct Walker<'a> {
    repo: &'a Repository,
    memo: HashMap<BlobId, TreeSize>,
}

impl<'a> Walker<'a> {
    pub(super) fn new(repo: &'a Repository) -> Walker<'a> {
        Walker {
            repo,
            memo: HashMap::new(),
        }
    }

    /// The sizes below `tree`, counting its blobs into each counter that lacks them.
    pub(super) fn visit(
        &mut self,
        tree_id: &BlobId,
        counters: &mut [&mut BlobCounter],
    ) -> Result<TreeSize> {
        let mut need = Vec::with_capacity(counters.len());
        for (i, c) in counters.iter_mut().enumerate() {
            if !c.holds(tree_id)? {
                need.push(i);
            }
        }
        if need.is_empty()
            && let Some(size) = self.memo.get(tree_id)
        {
            return Ok(*size);
        }
        let tree = self.repo.load_tree(tree_id)?;
        for &i in &need {
            counters[i].add(self.repo, std::slice::from_ref(tree_id), Role::Tree)?;
        }
        let mut size = TreeSize::default();
        let mut data = Vec::new();
        for node in &tree.nodes {
            match &node.kind {
                NodeKind::File { content } => {
                    size.files += 1;
                    size.bytes += node.size;
                    if !need.is_empty() {
                        self.content(content, counters, &need, &mut data)?;
                    }
                }
                NodeKind::Dir { subtree } => {
                    size.dirs += 1;
                    let below = self.visit(subtree, counters)?;
                    size.add(&below);
                }
                _ => size.others += 1,
            }
            if data.len() >= ID_BATCH {
                self.flush(&mut data, counters, &need)?;
            }
        }
        self.flush(&mut data, counters, &need)?;
        if self.memo.len() < MEMO_CAP {
            self.memo.insert(*tree_id, size);
        }
        Ok(size)
    }

    /// Gathers a file's data blob ids; counts its content lists (loading each only when a
    /// counter lacks it: a counter that holds a list holds its blobs).
    fn content(
        &mut self,
        content: &Content,
        counters: &mut [&mut BlobCounter],
        need: &[usize],
        data: &mut Vec<BlobId>,
    ) -> Result<()> {
        match content {
            Content::Direct(ids) => data.extend_from_slice(ids),
            Content::Indirect(lists) => {
                for list_id in lists {
                    let mut lacking = Vec::new();
                    for &i in need {
                        if !counters[i].holds(list_id)? {
                            lacking.push(i);
                        }
                    }
                    if lacking.is_empty() {
                        continue;
                    }
                    let list = self.repo.load_content_list(list_id)?;
                    for &i in &lacking {
                        counters[i].add(self.repo, std::slice::from_ref(list_id), Role::Tree)?;
                        counters[i].add(self.repo, &list.ids, Role::Data)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn flush(
        &mut self,
        data: &mut Vec<BlobId>,
        counters: &mut [&mut BlobCounter],
        need: &[usize],
    ) -> Result<()> {
        for &i in need {
            counters[i].add(self.repo, data, Role::Data)?;
        }
        data.clear();
        Ok(())
    }
}
