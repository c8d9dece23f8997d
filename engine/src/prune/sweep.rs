//! The second phase of deletion (SPEC §18): for plans whose grace period has passed, delete the
//! marked packs that no current snapshot still needs.
//!
//! The sweep re-checks reachability against the snapshots listed *now* (the [`UsedSet`] was
//! filled after the due plans were chosen): a marked pack that holds a blob some snapshot needs,
//! and that blob has no copy in a pack the sweep keeps, is kept. Order, so that a crash at any
//! point leaves a repository whose index names only packs that exist:
//!
//! 1. write new index files for the index files that name a doomed pack, without the doomed
//!    packs' entries, each naming the files it `supersedes`;
//! 2. delete the superseded index files;
//! 3. delete the doomed packs;
//! 4. delete the plans.
//!
//! A rerun after a crash finds the superseded files (step 2 not done) and deletes them, finds the
//! plans again (step 4 not done), and repeats the sweep; every step is idempotent.

use std::collections::{BTreeSet, HashMap, HashSet};

use futures::StreamExt;
use repo_format::{IndexFile, IndexId, PackId};

use super::lease::HeldLease;
use super::plans::StoredPlan;
use super::scan::for_each_index;
use super::used::{ELSEWHERE, USED, UsedSet};
use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::repository::Repository;

/// Deletions in flight at once.
const DELETE_CONCURRENCY: usize = 16;

/// A rewritten index file is closed once it holds this many entries.
const REWRITE_ENTRIES: usize = 65_536;

/// What a sweep did (or, in a dry run, would do).
#[derive(Clone, Debug, Default)]
pub struct SweepReport {
    /// Plans swept.
    pub plans: usize,
    /// Packs deleted.
    pub packs_deleted: usize,
    /// Their size in bytes (as listed).
    pub bytes_freed: u64,
    /// Marked packs kept because a snapshot written since the plan needs them.
    pub packs_kept: usize,
    /// Index files rewritten without the deleted packs.
    pub index_files_rewritten: usize,
}

/// Sweeps the `due` plans. `current` are the current index files, `sizes` the packs on
/// storage. Returns the report and the packs deleted (in a dry run: that would be deleted).
pub fn sweep(
    repo: &Repository,
    due: &[StoredPlan],
    current: &[IndexId],
    sizes: &HashMap<PackId, u64>,
    used: &mut UsedSet,
    mut lease: Option<&mut HeldLease>,
) -> Result<(SweepReport, BTreeSet<PackId>)> {
    let marked: HashSet<PackId> = due
        .iter()
        .flat_map(|p| p.plan.packs.iter().copied())
        .collect();
    let mut report = SweepReport {
        plans: due.len(),
        ..SweepReport::default()
    };

    // Pass 1: which needed blobs have a copy in a pack that stays (and exists: an indexed pack
    // that is gone holds no copy); and which index files name a marked pack (the only ones
    // pass 2 and the rewrite need to read again).
    let mut touched = Vec::new();
    for_each_index(repo, current, &mut |file_id, file| {
        if let Some(lease) = lease.as_deref_mut() {
            lease.keep_alive(repo)?;
        }
        if file.packs.iter().any(|p| marked.contains(&p.id)) {
            touched.push(file_id);
        }
        for pack in file
            .packs
            .iter()
            .filter(|p| !marked.contains(&p.id) && sizes.contains_key(&p.id))
        {
            let ids: Vec<_> = pack.entries.iter().map(|e| e.id).collect();
            // A member of a based group whose base prune does not keep is no copy.
            let counts = super::scan::countable(pack, used)?;
            for ((id, flag), counts) in ids.iter().zip(used.get_many(&ids)?).zip(counts) {
                if counts && flag & USED != 0 && flag & ELSEWHERE == 0 {
                    used.put(id, flag | ELSEWHERE)?;
                }
            }
        }
        Ok(())
    })?;
    used.flush()?;

    // Pass 2: a marked pack holding a needed blob without another copy stays.
    let mut keep = HashSet::new();
    for_each_index(repo, &touched, &mut |_, file| {
        if let Some(lease) = lease.as_deref_mut() {
            lease.keep_alive(repo)?;
        }
        for pack in file.packs.iter().filter(|p| marked.contains(&p.id)) {
            let ids: Vec<_> = pack.entries.iter().map(|e| e.id).collect();
            let flags = used.get_many(&ids)?;
            if flags.iter().any(|f| f & USED != 0 && f & ELSEWHERE == 0) {
                keep.insert(pack.id);
            }
        }
        Ok(())
    })?;
    let mut doomed: BTreeSet<PackId> = marked.difference(&keep).copied().collect();
    report.packs_kept = keep.len();
    report.packs_deleted = doomed.len();
    report.bytes_freed = doomed.iter().filter_map(|p| sizes.get(p)).sum();
    let Some(lease) = lease else {
        // A dry run stops here.
        return Ok((report, doomed));
    };

    // Step 1: the index without the doomed packs, in new files of bounded size; each new file
    // supersedes the old files whose remaining entries it holds, so a reader never sees a
    // superseded file without the file that replaces it. Files naming only kept packs stay.
    lease.check(repo, "rewriting the index")?;
    let mut superseded = Vec::new();
    let mut written = Vec::new();
    let mut group = IndexFile::default();
    let mut group_entries = 0usize;
    for_each_index(repo, &touched, &mut |file_id, file| {
        if !file.packs.iter().any(|p| doomed.contains(&p.id)) {
            return Ok(());
        }
        superseded.push(file_id);
        group.supersedes.push(file_id);
        for pack in file.packs.into_iter().filter(|p| !doomed.contains(&p.id)) {
            group_entries += pack.entries.len();
            group.packs.push(pack);
        }
        if group_entries >= REWRITE_ENTRIES {
            written.push(write_group(repo, std::mem::take(&mut group))?);
            group_entries = 0;
        }
        Ok(())
    })?;
    if !group.supersedes.is_empty() {
        written.push(write_group(repo, group)?);
    }
    report.index_files_rewritten = superseded.len();

    // Step 2.
    lease.check(repo, "deleting superseded index files")?;
    delete_all(
        repo,
        FileType::Index,
        superseded.iter().map(|i| i.0.to_hex()).collect(),
    )?;

    // Step 3. An index file written since the scan (a backup indexing its own packs late,
    // `repair index`) may name a doomed pack: such a pack stays.
    let known: HashSet<IndexId> = current
        .iter()
        .chain(&written)
        .chain(&superseded)
        .copied()
        .collect();
    let new_files: Vec<IndexId> = repo
        .list_ids(FileType::Index)?
        .into_iter()
        .map(IndexId)
        .filter(|i| !known.contains(i))
        .collect();
    for_each_index(repo, &new_files, &mut |_, file| {
        for pack in &file.packs {
            if doomed.remove(&pack.id) {
                report.packs_kept += 1;
            }
        }
        Ok(())
    })?;
    report.packs_deleted = doomed.len();
    report.bytes_freed = doomed.iter().filter_map(|p| sizes.get(p)).sum();
    lease.check(repo, "deleting packs")?;
    delete_all(
        repo,
        FileType::Pack,
        doomed.iter().map(|p| p.0.to_hex()).collect(),
    )?;

    // Step 4.
    delete_all(
        repo,
        FileType::Plan,
        due.iter().map(|p| p.id.to_hex()).collect(),
    )?;
    Ok((report, doomed))
}

/// Writes one superseding index file (just the `supersedes` list if no pack remains).
fn write_group(repo: &Repository, mut file: IndexFile) -> Result<IndexId> {
    file.canonicalize();
    repo.save_index(&file)
}

/// Deletes objects, a few at a time; the first failure is returned after the rest finished.
pub fn delete_all(repo: &Repository, t: FileType, names: Vec<String>) -> Result<()> {
    let backend = repo.backend();
    let results: Vec<_> = repo.block_on(
        futures::stream::iter(names.into_iter().map(|name| async move {
            backend
                .delete(t, &name)
                .await
                .map_err(|e| Error::backend(format!("cannot delete {}", t.path(&name)), e))
        }))
        .buffer_unordered(DELETE_CONCURRENCY)
        .collect(),
    );
    results.into_iter().collect()
}
