//! Repair: rebuild what can be rebuilt, and never delete what something may still need.
//!
//! | operation | reads | writes | deletes |
//! |---|---|---|---|
//! | [`repair_index`] | every pack's header | new index files naming every readable pack (with `supersedes` = the old ones) | the old index files it listed, only after the new ones are stored |
//! | [`repair_snapshots`] | every snapshot's trees | new trees and a new snapshot for each damaged snapshot, tagged `repaired`, with `original` = the damaged one | nothing: the originals stay until the user forgets them |
//!
//! Both are safe to interrupt: a crash leaves the old objects in place plus some new ones
//! (duplicates are harmless, SPEC §7). A backup running at the same time is safe too:
//! `repair_index` deletes only index files it listed before it started, and a pack uploaded
//! after its listing is still named by the backup's own index file.

use std::collections::HashSet;

use rayon::prelude::*;
use repo_format::{
    BlobId, BlobType, Content, ContentList, IndexFile, IndexId, IndexPack, NodeKind, PackContents,
    PackId, Snapshot, SnapshotId, Tree,
};

use crate::archiver::saver::{BlobSaver, INDEX_FLUSH_ENTRIES};
use crate::backend::FileType;
use crate::error::{Error, ErrorKind, Result};
use crate::repository::Repository;

/// Pack headers read at once.
const HEADER_READS_IN_FLIGHT: usize = 8;

/// What [`repair_index`] did.
#[derive(Debug, Default)]
pub struct RepairIndexReport {
    /// Packs whose header was read and indexed.
    pub packs_indexed: u64,
    /// Blobs in the new index files.
    pub blobs_indexed: u64,
    /// Packs whose header could not be read, with the reason; their entries from the old index
    /// files (if any named them) are kept.
    pub packs_damaged: Vec<(PackId, String)>,
    /// Index files written.
    pub index_files_written: Vec<IndexId>,
    /// Old index files removed.
    pub index_files_removed: u64,
}

/// Reads one pack's header: the last 4 bytes give its length, then the header itself.
fn read_pack_header(repo: &Repository, id: &PackId, size: u64) -> Result<PackContents> {
    if size < 4 {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!("pack {} is only {size} bytes", id.0.short()),
        ));
    }
    let trailer = repo.read_pack_range(id, size - 4, 4)?;
    let trailer: [u8; 4] = trailer.as_ref().try_into().map_err(|_| {
        Error::new(
            ErrorKind::Corrupt,
            format!("pack {}: cannot read its trailer", id.0.short()),
        )
    })?;
    let len = repo_format::header_len(&trailer, size)
        .map_err(|e| Error::format(format!("pack {} has a damaged trailer", id.0.short()), e))?;
    let header = repo.read_pack_range(id, size - 4 - u64::from(len), u64::from(len))?;
    repo_format::decode_header(repo.keys(), &header, size)
        .map_err(|e| Error::format(format!("pack {} has a damaged header", id.0.short()), e))
}

/// Rebuilds the index files from the pack headers (after a lost or damaged index).
pub fn repair_index(repo: &Repository) -> Result<RepairIndexReport> {
    let old: Vec<IndexId> = repo
        .list_ids(FileType::Index)?
        .into_iter()
        .map(IndexId)
        .collect();
    let packs = repo
        .block_on(repo.backend().list(FileType::Pack))
        .map_err(|e| Error::backend("cannot list the packs", e))?;
    let packs: Vec<(PackId, u64)> = packs
        .into_iter()
        .filter_map(|info| {
            repo_format::Id::from_hex(&info.name)
                .ok()
                .map(|id| (PackId(id), info.size))
        })
        .collect();

    let mut report = RepairIndexReport::default();
    // Only the last file written names the old files in `supersedes`: prune deletes superseded
    // files (SPEC §18 P2), which must not happen to the old files before every new one is
    // stored (a repair killed half-way leaves both, which is only duplication).
    let mut current = IndexFile::default();
    let mut pending_entries = 0usize;
    let mut damaged: HashSet<PackId> = HashSet::new();
    // Header reads overlap on a small pool of their own (they wait on storage, not the CPU);
    // packs go in slices so only one slice's headers are in memory at a time.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(HEADER_READS_IN_FLIGHT)
        .build()
        .map_err(|e| Error::new(ErrorKind::Io, format!("cannot start header readers: {e}")))?;
    for slice in packs.chunks(256) {
        let results: Vec<(PackId, Result<PackContents>)> = pool.install(|| {
            slice
                .par_iter()
                .map(|&(id, size)| (id, read_pack_header(repo, &id, size)))
                .collect()
        });
        for (id, r) in results {
            match r {
                Ok(PackContents { entries, bases }) => {
                    report.packs_indexed += 1;
                    report.blobs_indexed += entries.len() as u64;
                    pending_entries += entries.len();
                    current.packs.push(IndexPack { id, entries, bases });
                    if pending_entries >= INDEX_FLUSH_ENTRIES {
                        let file = std::mem::take(&mut current);
                        report.index_files_written.push(repo.save_index(&file)?);
                        pending_entries = 0;
                    }
                }
                Err(e) => {
                    damaged.insert(id);
                    report
                        .packs_damaged
                        .push((id, crate::restorer::error_chain(&e)));
                }
            }
        }
    }
    // Keep what the old index files said about packs whose header is unreadable: the blobs
    // there may still be intact, and `check --read-data` will say which.
    if !damaged.is_empty() {
        for idx in &old {
            let Ok(file) = repo.load_index(idx) else {
                continue;
            };
            for p in file.packs.into_iter().filter(|p| damaged.contains(&p.id)) {
                if !current.packs.iter().any(|q| q.id == p.id) {
                    current.packs.push(p);
                }
            }
        }
    }
    current.supersedes = old.clone();
    current.canonicalize();
    if !current.packs.is_empty() || report.index_files_written.is_empty() || !old.is_empty() {
        report.index_files_written.push(repo.save_index(&current)?);
    }
    // Only now, with every new index file stored, remove the old ones.
    let written: HashSet<IndexId> = report.index_files_written.iter().copied().collect();
    for idx in old.iter().filter(|i| !written.contains(i)) {
        repo.block_on(repo.backend().delete(FileType::Index, &idx.0.to_hex()))
            .map_err(|e| {
                Error::backend(
                    format!("cannot remove the old index file {}", idx.0.short()),
                    e,
                )
            })?;
        report.index_files_removed += 1;
    }
    repo.sync_index()?;
    Ok(report)
}

/// One snapshot that [`repair_snapshots`] rewrote.
#[derive(Debug)]
pub struct RepairedSnapshot {
    /// The damaged snapshot (kept).
    pub original: SnapshotId,
    /// Its repaired copy, or `None` in a dry run.
    pub repaired: Option<SnapshotId>,
    /// What was left out, one line per path.
    pub removed: Vec<String>,
}

/// What [`repair_snapshots`] found and did.
#[derive(Debug, Default)]
pub struct RepairSnapshotsReport {
    /// Snapshots examined.
    pub checked: u64,
    /// Snapshots with missing data, and what was done about each.
    pub repaired: Vec<RepairedSnapshot>,
    /// Snapshots that cannot be read at all (nothing to repair from: forget them).
    pub unreadable: Vec<(SnapshotId, String)>,
}

/// Writes, for every snapshot that references missing data, a new snapshot without the files
/// and directories whose data is gone. With `dry_run`, only reports.
pub fn repair_snapshots(repo: &Repository, dry_run: bool) -> Result<RepairSnapshotsReport> {
    repo.sync_index()?;
    let mut report = RepairSnapshotsReport::default();
    for id in repo
        .list_ids(FileType::Snapshot)?
        .into_iter()
        .map(SnapshotId)
    {
        let snap = match repo.load_snapshot(&id) {
            Ok(s) => s,
            Err(e) => {
                report
                    .unreadable
                    .push((id, crate::restorer::error_chain(&e)));
                continue;
            }
        };
        report.checked += 1;
        let mut removed = Vec::new();
        let repaired = std::thread::scope(|scope| -> Result<Option<SnapshotId>> {
            // A repaired snapshot is a new snapshot: it follows the backup's rules beside a
            // running prune (SPEC §18 B1-B3).
            let guard = crate::prune::guard::PlanGuard::start(repo)?;
            let saver = BlobSaver::start_avoiding(scope, repo, 1, guard.marked().clone());
            let mut fixer = TreeFixer {
                repo,
                saver: &saver,
                dry_run,
                removed: &mut removed,
            };
            let (tree, changed) = fixer.fix(&snap.tree, "")?;
            let mut totals = saver.finish()?;
            if !changed || dry_run {
                return Ok(None);
            }
            let mut referenced = std::mem::take(&mut totals.referenced);
            let mut notes = Vec::new();
            let pre =
                crate::archiver::check_plans(repo, &guard, &mut referenced, &totals, &mut notes)?;
            let mut tags = snap.tags.clone();
            tags.push("repaired".to_string());
            let new = Snapshot {
                tree,
                tags,
                original: Some(id),
                parent: None,
                ..snap.clone()
            };
            let new_id = repo.save_snapshot(&new)?;
            guard.post_check(repo, &pre, &new_id, &referenced, &totals.indirect)?;
            Ok(Some(new_id))
        })?;
        if !removed.is_empty() {
            report.repaired.push(RepairedSnapshot {
                original: id,
                repaired,
                removed,
            });
        }
    }
    Ok(report)
}

/// Rebuilds trees without the parts whose data is gone.
struct TreeFixer<'a, 's> {
    repo: &'a Repository,
    saver: &'a BlobSaver<'s>,
    dry_run: bool,
    removed: &'a mut Vec<String>,
}

impl TreeFixer<'_, '_> {
    /// Returns the (possibly new) tree id and whether anything changed below it.
    fn fix(&mut self, id: &BlobId, path: &str) -> Result<(BlobId, bool)> {
        let tree = match self.repo.load_tree(id) {
            Ok(t) => t,
            // Only damage empties a directory; a storage failure stops the repair.
            Err(e) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::NotFound) => {
                self.removed.push(format!(
                    "{}: directory unreadable, stored empty ({e})",
                    shown(path)
                ));
                return Ok((self.save(Tree::default())?, true));
            }
            Err(e) => return Err(e),
        };
        let mut changed = false;
        let mut nodes = Vec::with_capacity(tree.nodes.len());
        for mut node in tree.nodes {
            let child = join(path, &node.name);
            match &node.kind {
                NodeKind::Dir { subtree } => {
                    let (new, c) = self.fix(subtree, &child)?;
                    changed |= c;
                    node.kind = NodeKind::Dir { subtree: new };
                }
                NodeKind::File { content } => {
                    if let Some(why) = self.missing_data(content)? {
                        self.removed
                            .push(format!("{}: left out, {why}", shown(&child)));
                        changed = true;
                        continue;
                    }
                }
                _ => {}
            }
            nodes.push(node);
        }
        if !changed {
            return Ok((*id, false));
        }
        Ok((self.save(Tree { nodes })?, true))
    }

    fn save(&self, tree: Tree) -> Result<BlobId> {
        let bytes = tree
            .encode()
            .map_err(|e| Error::format("cannot encode a repaired tree", e))?;
        if self.dry_run {
            return Ok(self.repo.keys().blob_id(&bytes));
        }
        self.saver.save_if_new(BlobType::Tree, bytes)
    }

    /// Why a file's content cannot be restored, if it cannot.
    fn missing_data(&self, content: &Content) -> Result<Option<String>> {
        let data: Vec<BlobId> = match content {
            Content::Direct(ids) => ids.clone(),
            Content::Indirect(lists) => {
                let mut all = Vec::new();
                for list in lists {
                    match self.repo.load_content_list(list) {
                        Ok(ContentList { ids }) => all.extend(ids),
                        Err(e) => {
                            return Ok(Some(format!(
                                "content list {} unreadable ({e})",
                                list.0.short()
                            )));
                        }
                    }
                }
                all
            }
        };
        let found = self
            .repo
            .cache()
            .lookup_many(&data)
            .map_err(|e| Error::cache("cannot read the index cache", e))?;
        let missing = found.iter().filter(|f| f.is_none()).count();
        Ok(
            (missing > 0)
                .then(|| format!("{missing} of its {} data blobs are missing", data.len())),
        )
    }
}

fn join(path: &str, name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    if path.is_empty() {
        name.into_owned()
    } else {
        format!("{path}/{name}")
    }
}

fn shown(path: &str) -> String {
    if path.is_empty() {
        "/".to_string()
    } else {
        format!("/{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_and_show() {
        assert_eq!(join("", b"a"), "a");
        assert_eq!(join("a", b"b"), "a/b");
        assert_eq!(shown(""), "/");
        assert_eq!(shown("a/b"), "/a/b");
    }
}
