//! Checks 9-11: every snapshot loads, and every tree, content list and data blob it reaches is
//! indexed with the right type (and trees and content lists read and decode).
//!
//! Each tree and content list is checked once, however many snapshots share it. Errors found
//! below one are remembered with it, so a snapshot that reaches an already-checked, damaged
//! tree is still listed as affected (at the path where it reaches it). Data blob ids are
//! looked up in batches (a direct list, or one content list) in the temporary index; nothing
//! per data blob is kept in memory.

use std::collections::{HashMap, HashSet};

use futures::StreamExt;
use repo_format::{
    BlobId, BlobType, Compression, Content, ContentList, Id, NodeKind, PackId, Snapshot,
    SnapshotId, Tree, open_blob,
};

use super::report::FindingKind;
use super::{Ctx, is_damage};
use crate::backend::{BackendErrorKind, FileType};
use crate::error::{Error, Result};
use crate::index::cache::BlobLocation;
use crate::repository::{MAX_BASE_DEPTH, get_verified};

/// Snapshots fetched at once.
const SNAPSHOT_CONCURRENCY: usize = 8;

/// Check 9, then 10 and 11 for every snapshot that loads and `select` accepts (oldest first).
/// Returns the packs holding the blobs those snapshots reach (found in the temporary index).
pub(super) fn check_snapshots(
    ctx: &mut Ctx,
    ids: Vec<Id>,
    select: &dyn Fn(&Snapshot) -> bool,
) -> Result<HashSet<PackId>> {
    let repo = ctx.repo;
    let backend = repo.backend().clone();
    let keys = repo.keys();
    let loaded: Vec<(Id, Result<Snapshot>)> = repo.block_on(
        futures::stream::iter(ids)
            .map(|id| {
                let backend = backend.clone();
                async move {
                    let snap = get_verified(&*backend, FileType::Snapshot, &id)
                        .await
                        .and_then(|b| {
                            Snapshot::decode(keys, &b).map_err(|e| {
                                Error::format(
                                    format!("snapshot {} cannot be decoded", id.short()),
                                    e,
                                )
                            })
                        });
                    (id, snap)
                }
            })
            .buffered(SNAPSHOT_CONCURRENCY)
            .collect(),
    );
    let mut good = Vec::with_capacity(loaded.len());
    for (id, snap) in loaded {
        match snap {
            Ok(s) if select(&s) => good.push((SnapshotId(id), s)),
            Ok(_) => {}
            Err(e) if is_damage(&e) => {
                ctx.findings.error(
                    FindingKind::DamagedSnapshot,
                    id.to_hex(),
                    format!(
                        "snapshot {} is damaged: {}: it cannot be listed or restored (other snapshots are unaffected)",
                        id.short(),
                        crate::restorer::error_chain(&e)
                    ),
                );
            }
            Err(e) => return Err(e),
        }
    }
    good.sort_by_key(|(id, s)| (s.time_ns, *id));
    ctx.stats.snapshots_checked += good.len() as u64;
    let mut walker = Walker {
        ctx,
        snapshot: String::new(),
        seen: HashSet::new(),
        damaged: HashMap::new(),
        list_sizes: HashMap::new(),
        missing: HashMap::new(),
        packs: HashSet::new(),
        bases: HashMap::new(),
        base_walk: HashSet::new(),
    };
    for (id, snap) in good {
        walker.snapshot = id.short();
        walker.tree(snap.tree, &mut Vec::new())?;
    }
    Ok(walker.packs)
}

/// What the walk found about one based group's base: the errors, the base's packs, and how many
/// groups deep one read of the group decodes.
type BaseCheck = (Vec<usize>, Vec<PackId>, usize);

struct Walker<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    /// The short id of the snapshot being walked.
    snapshot: String,
    /// Trees and content lists already checked.
    seen: HashSet<BlobId>,
    /// Errors found in or below a tree or content list, for the ones that have any.
    damaged: HashMap<BlobId, Vec<usize>>,
    /// The plaintext bytes of each intact content list's data blobs (for file sizes).
    list_sizes: HashMap<BlobId, u64>,
    /// The missing-blob error of each data blob found missing, so it is reported once.
    missing: HashMap<BlobId, usize>,
    /// The packs holding the blobs reached (for read-data restricted to some snapshots).
    packs: HashSet<PackId>,
    /// Each based group reached (pack, offset): the errors of its base, its base's packs, and
    /// how many groups deep a read of it decodes.
    bases: HashMap<(PackId, u32), BaseCheck>,
    /// The based groups whose bases are being walked (a cycle comes back to one).
    base_walk: HashSet<(PackId, u32)>,
}

impl Walker<'_, '_> {
    /// Where the walk is, for messages and affects: `snapshot 1a2b3c4d: /data/file`.
    fn here(&self, path: &[u8]) -> String {
        format!(
            "snapshot {}: /{}",
            self.snapshot,
            String::from_utf8_lossy(path)
        )
    }

    /// Records an error that affects `here`.
    fn error(&mut self, kind: FindingKind, id: &BlobId, here: &str, message: String) -> usize {
        let i = self.ctx.findings.error(kind, id.to_hex(), message);
        self.ctx.findings.affect(i, here);
        i
    }

    /// For a tree or content list checked before: its errors now also affect `path`.
    fn known(&mut self, id: &BlobId, path: &[u8]) -> Vec<usize> {
        let errors = self.damaged.get(id).cloned().unwrap_or_default();
        if !errors.is_empty() {
            let here = self.here(path);
            for &e in &errors {
                self.ctx.findings.affect(e, &here);
            }
        }
        errors
    }

    fn remember(&mut self, id: BlobId, errors: &mut Vec<usize>) {
        errors.sort_unstable();
        errors.dedup();
        if !errors.is_empty() {
            self.damaged.insert(id, errors.clone());
        }
    }

    /// Checks the tree `id` at `path` and everything below it; returns the errors found there.
    fn tree(&mut self, id: BlobId, path: &mut Vec<u8>) -> Result<Vec<usize>> {
        if !self.seen.insert(id) {
            return Ok(self.known(&id, path));
        }
        self.ctx.stats.trees += 1;
        let (plain, mut found) = self.load(&id, "tree", path)?;
        let tree = match plain.map(|b| Tree::decode(&b)) {
            Some(Ok(t)) => t,
            Some(Err(e)) => {
                let here = self.here(path);
                let message = format!(
                    "tree {} ({here}) authenticates but cannot be decoded: {e}; nothing below it was checked",
                    id.short()
                );
                found.push(self.error(FindingKind::DamagedTree, &id, &here, message));
                self.remember(id, &mut found);
                return Ok(found);
            }
            None => {
                self.remember(id, &mut found);
                return Ok(found);
            }
        };
        for node in &tree.nodes {
            let len = path.len();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&node.name);
            match &node.kind {
                NodeKind::Dir { subtree } => found.extend(self.tree(*subtree, path)?),
                NodeKind::File { content } => {
                    found.extend(self.file(&id, content, node.size, path)?);
                }
                _ => {}
            }
            path.truncate(len);
        }
        self.remember(id, &mut found);
        Ok(found)
    }

    /// Checks a file's content (the file is a node of `tree`): its content lists, its data
    /// blobs, and its size.
    fn file(
        &mut self,
        tree: &BlobId,
        content: &Content,
        size: u64,
        path: &[u8],
    ) -> Result<Vec<usize>> {
        let mut found = Vec::new();
        let mut total = Some(0u64);
        match content {
            Content::Direct(ids) => {
                let sum = self.data_blobs(ids, path, &mut found)?;
                total = total.zip(sum).map(|(a, b)| a + b);
            }
            Content::Indirect(lists) => {
                for list in lists {
                    let sum = self.content_list(list, path, &mut found)?;
                    total = total.zip(sum).map(|(a, b)| a + b);
                }
            }
        }
        if let Some(t) = total
            && t != size
        {
            let here = self.here(path);
            let message = format!(
                "file {here}: its data blobs hold {t} bytes but its tree records {size}: restore would fail for it"
            );
            found.push(self.error(FindingKind::FileSizeMismatch, tree, &here, message));
        }
        Ok(found)
    }

    /// Checks one content list (once) and its data blobs; returns their plaintext length if
    /// all of them are indexed.
    fn content_list(
        &mut self,
        id: &BlobId,
        path: &[u8],
        found: &mut Vec<usize>,
    ) -> Result<Option<u64>> {
        if !self.seen.insert(*id) {
            found.extend(self.known(id, path));
            return Ok(self.list_sizes.get(id).copied());
        }
        self.ctx.stats.trees += 1;
        let (plain, mut errors) = self.load(id, "content list", path)?;
        let mut sum = None;
        match plain.map(|b| ContentList::decode(&b)) {
            Some(Ok(list)) => sum = self.data_blobs(&list.ids, path, &mut errors)?,
            Some(Err(e)) => {
                let here = self.here(path);
                let message = format!(
                    "content list {} ({here}) authenticates but cannot be decoded: {e}",
                    id.short()
                );
                errors.push(self.error(FindingKind::DamagedTree, id, &here, message));
            }
            None => {}
        }
        if let Some(s) = sum {
            self.list_sizes.insert(*id, s);
        }
        self.remember(*id, &mut errors);
        found.extend(errors);
        Ok(sum)
    }

    /// Checks that data blobs are indexed as data blobs in intact packs; adds the errors that
    /// touch them to `found` and returns their plaintext length if all are indexed.
    fn data_blobs(
        &mut self,
        ids: &[BlobId],
        path: &[u8],
        found: &mut Vec<usize>,
    ) -> Result<Option<u64>> {
        let locs = self
            .ctx
            .index
            .lookup_many(ids)
            .map_err(|e| Error::cache("cannot read the temporary index", e))?;
        self.ctx.stats.data_blob_refs += ids.len() as u64;
        let here = self.here(path);
        let mut sum = Some(0u64);
        for (id, loc) in ids.iter().zip(locs) {
            let Some(loc) = loc else {
                let i = match self.missing.get(id) {
                    Some(&i) => i,
                    None => {
                        let message = format!(
                            "data blob {} missing: no index file names it ({here}): the files listed below cannot be restored in full; `cairn repair index` finds it if a pack still holds it, otherwise `cairn repair snapshots` leaves those files out",
                            id.short()
                        );
                        let i =
                            self.ctx
                                .findings
                                .error(FindingKind::MissingBlob, id.to_hex(), message);
                        self.missing.insert(*id, i);
                        i
                    }
                };
                self.ctx.findings.affect(i, &here);
                found.push(i);
                sum = None;
                continue;
            };
            if loc.entry.blob_type != BlobType::Data {
                // Harmless: the id names exact bytes, stored once under either type.
                let message = format!(
                    "blob {} is indexed as a tree blob and {here} uses it as file data (dedup by id; harmless)",
                    id.short()
                );
                self.ctx
                    .findings
                    .warn(FindingKind::BlobTypeMismatch, id.to_hex(), message);
            }
            self.touch(&loc, &here, found)?;
            sum = sum.map(|s| s + u64::from(loc.entry.raw_len));
        }
        found.sort_unstable();
        found.dedup();
        Ok(sum)
    }

    /// Notes that `here` uses a blob in a damaged pack, or a blob found damaged, or a member
    /// of a based group whose base is missing, damaged or itself based.
    fn touch(&mut self, loc: &BlobLocation, here: &str, found: &mut Vec<usize>) -> Result<()> {
        self.packs.insert(loc.pack);
        let mut errors: Vec<usize> = [
            self.ctx.pack_errors.get(&loc.pack).copied(),
            self.ctx.damaged_blobs.get(&loc.entry.id).copied(),
        ]
        .into_iter()
        .flatten()
        .collect();
        if loc.entry.compression == Compression::Based {
            let (base_errors, base_packs, _) = self.base(loc)?;
            errors.extend(base_errors);
            self.packs.extend(base_packs);
        }
        for e in errors {
            self.ctx.findings.affect(e, here);
            found.push(e);
        }
        Ok(())
    }

    /// The errors of the base of the based group `loc` is in (SPEC §7), found once per group:
    /// no base, a base blob no index file names, one in a damaged pack or found damaged, bases
    /// that form a cycle or nest deeper than readers follow (a base in a based group is
    /// followed). Also the base's packs, and how many groups deep one read of it decodes.
    fn base(&mut self, loc: &BlobLocation) -> Result<BaseCheck> {
        let key = (loc.pack, loc.entry.offset);
        if let Some(known) = self.bases.get(&key) {
            return Ok(known.clone());
        }
        let group = format!(
            "the based compression group at offset {} of pack {}",
            loc.entry.offset,
            loc.pack.short()
        );
        if !self.base_walk.insert(key) {
            let message = format!(
                "the bases of {group} lead back to it: the files listed below cannot be restored in full"
            );
            let e =
                self.ctx
                    .findings
                    .error(FindingKind::DamagedPackHeader, loc.pack.to_hex(), message);
            return Ok((vec![e], Vec::new(), MAX_BASE_DEPTH + 1));
        }
        let found = self.base_of(loc, &group);
        self.base_walk.remove(&key);
        let (mut errors, packs, height) = found?;
        if height > MAX_BASE_DEPTH && height <= MAX_BASE_DEPTH + 1 {
            let message = format!(
                "the bases of {group} nest {height} groups deep, more than readers follow ({MAX_BASE_DEPTH}): the files listed below cannot be restored in full"
            );
            errors.push(self.ctx.findings.error(
                FindingKind::DamagedPackHeader,
                loc.pack.to_hex(),
                message,
            ));
        }
        errors.sort_unstable();
        errors.dedup();
        let out = (errors, packs, height);
        self.bases.insert(key, out.clone());
        Ok(out)
    }

    /// [`Walker::base`] below the memo and cycle check.
    fn base_of(&mut self, loc: &BlobLocation, group: &str) -> Result<BaseCheck> {
        let ids = self
            .ctx
            .index
            .group_base(&loc.pack, loc.entry.offset)
            .map_err(|e| Error::cache("cannot read the temporary index", e))?;
        let mut errors = Vec::new();
        let mut packs = Vec::new();
        let Some(ids) = ids else {
            let message = format!(
                "{group} has no base in any index file: the files listed below cannot be restored in full; `cairn repair index` rebuilds the index from the pack headers"
            );
            errors.push(self.ctx.findings.error(
                FindingKind::DamagedPackHeader,
                loc.pack.to_hex(),
                message,
            ));
            return Ok((errors, packs, 1));
        };
        let found = self
            .ctx
            .index
            .lookup_many(&ids)
            .map_err(|e| Error::cache("cannot read the temporary index", e))?;
        let mut height = 1;
        for (id, b) in ids.iter().zip(found) {
            let Some(b) = b else {
                let message = format!(
                    "blob {} of the base of {group} is named by no index file: the files listed below cannot be restored in full; `cairn repair index` finds it if a pack still holds it",
                    id.short()
                );
                errors.push(self.ctx.findings.error(
                    FindingKind::MissingBlob,
                    id.to_hex(),
                    message,
                ));
                continue;
            };
            if b.entry.compression == Compression::Based {
                let (deeper, deeper_packs, h) = self.base(&b)?;
                errors.extend(deeper);
                packs.extend(deeper_packs);
                height = height.max(h + 1);
            }
            packs.push(b.pack);
            errors.extend(
                [
                    self.ctx.pack_errors.get(&b.pack).copied(),
                    self.ctx.damaged_blobs.get(id).copied(),
                ]
                .into_iter()
                .flatten(),
            );
        }
        Ok((errors, packs, height))
    }

    /// Reads a tree blob (`what`: tree or content list) without the repository's own cache.
    /// Returns its plaintext when it reads and verifies, and the errors that touch it.
    fn load(
        &mut self,
        id: &BlobId,
        what: &str,
        path: &[u8],
    ) -> Result<(Option<Vec<u8>>, Vec<usize>)> {
        let here = self.here(path);
        let loc = self
            .ctx
            .index
            .lookup(id)
            .map_err(|e| Error::cache("cannot read the temporary index", e))?;
        let Some(loc) = loc else {
            let message = format!(
                "{what} {} missing: no index file names it ({here}): nothing below it can be restored or checked; `cairn repair index` finds it if a pack still holds it",
                id.short()
            );
            return Ok((
                None,
                vec![self.error(FindingKind::MissingBlob, id, &here, message)],
            ));
        };
        if loc.entry.blob_type != BlobType::Tree {
            // Harmless: the id names exact bytes, stored once under either type.
            let message = format!(
                "blob {} is indexed as a data blob and {here} uses it as a {what} (dedup by id; harmless)",
                id.short()
            );
            self.ctx
                .findings
                .warn(FindingKind::BlobTypeMismatch, id.to_hex(), message);
        }
        let mut errors = Vec::new();
        self.touch(&loc, &here, &mut errors)?;
        if self.ctx.damaged_blobs.contains_key(id) {
            // read-data already reported it, with its pack.
            return Ok((None, errors));
        }
        match self.read(&loc)? {
            Ok(plain) => Ok((Some(plain), errors)),
            Err(reason) => {
                let message = format!(
                    "{what} {} ({here}) cannot be read: {reason}; nothing below it was checked",
                    id.short()
                );
                errors.push(self.error(FindingKind::DamagedTree, id, &here, message));
                Ok((None, errors))
            }
        }
    }

    /// Reads and opens one tree blob; `Ok(Err(reason))` is damage, `Err` a storage failure.
    fn read(&self, loc: &BlobLocation) -> Result<Result<Vec<u8>, String>> {
        let p = loc.pack.short();
        let Some(&size) = self.ctx.packs.get(&loc.pack) else {
            return Ok(Err(format!("its pack {p} is missing")));
        };
        if size < loc.entry.end() {
            return Ok(Err(format!("its pack {p} is truncated")));
        }
        let repo = self.ctx.repo;
        let bytes = match repo.block_on(repo.backend().get_range(
            FileType::Pack,
            &loc.pack.to_hex(),
            u64::from(loc.entry.offset),
            u64::from(loc.entry.stored_len),
        )) {
            Ok(b) => b,
            Err(e) if e.kind() == BackendErrorKind::NotFound => {
                return Ok(Err(format!("its pack {p} is missing")));
            }
            Err(e) => return Err(Error::backend(format!("cannot read pack {p}"), e)),
        };
        Ok(open_blob(repo.keys(), &loc.entry, &bytes)
            .map_err(|e| format!("at offset {} of pack {p}: {e}", loc.entry.offset)))
    }
}
