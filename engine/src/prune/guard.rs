//! The backup's side of lock-free prune (SPEC §18, rules B1-B3).
//!
//! - **B1** at the start, a backup reads the plans and never deduplicates against a pack they
//!   mark (the saver stores such blobs again).
//! - **B2** just before writing its snapshot, it brings the index cache up to date, reads the
//!   plans again, and finds every pack its snapshot relies on that a plan marks (or, if the
//!   index was rewritten meanwhile, that is gone). It copies the blobs of marked packs into new
//!   packs; a pack that is already gone fails the backup with a clear error (no snapshot is
//!   written, so nothing references missing data).
//! - **B3** it writes the snapshot within half the grace period of that check, and reads the
//!   plans again just after. If more time passed (the process was suspended), it checks again
//!   and, if a sweep may have deleted something the snapshot needs, deletes the snapshot and
//!   fails.
//!
//! Why this is enough is argued in SPEC §18: a sweep lists snapshots at least one grace period
//! after its plan was written, and a snapshot written after that listing was checked (B2)
//! after the plan appeared.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use repo_format::{BlobId, PackId, SnapshotId};

use super::plans::load_plans;
use crate::backend::FileType;
use crate::error::{Error, ErrorKind, Result};
use crate::repository::{Repository, now_ns};

/// Stats in flight at once when checking that packs still exist.
const STAT_CONCURRENCY: usize = 16;

/// State kept from the start of a backup to its snapshot.
#[derive(Debug)]
pub struct PlanGuard {
    grace: Duration,
    marked_at_start: HashSet<PackId>,
}

/// The result of the check before the snapshot (B2).
#[derive(Debug)]
pub struct PreCheck {
    /// Packs the snapshot relies on that a plan marks: their blobs must be stored again.
    pub conflicts: Vec<PackId>,
    at: Instant,
    at_wall_ns: i64,
    plans_seen: HashSet<repo_format::Id>,
}

impl PlanGuard {
    /// Reads the plans (B1).
    pub fn start(repo: &Repository) -> Result<PlanGuard> {
        let plans = load_plans(repo)?;
        Ok(PlanGuard {
            grace: Duration::from_secs(repo.config().prune_grace_secs),
            marked_at_start: plans.marked(),
        })
    }

    /// The packs the backup must not deduplicate against.
    pub fn marked(&self) -> &HashSet<PackId> {
        &self.marked_at_start
    }

    /// The check just before the snapshot is written (B2). Lists the plans *before* it brings
    /// the index cache up to date: a sweep that finished in between deleted index files the
    /// cache had loaded, so the sync rebuilds and the missing packs are found. Adds the packs of
    /// `indirect` content lists' data blobs to `referenced` when that is needed to judge, and
    /// checks that the backup's own packs that are older than half the grace period (`own`,
    /// with the instant each was stored) still exist: only those can have been marked and
    /// swept while it ran.
    pub fn pre_check(
        &self,
        repo: &Repository,
        referenced: &mut HashSet<PackId>,
        indirect: &[BlobId],
        own: &[(PackId, Instant)],
    ) -> Result<PreCheck> {
        let at = Instant::now();
        let at_wall_ns = now_ns();
        let plans = load_plans(repo)?;
        let sync = repo.sync_index_report()?;
        let marked = plans.marked();
        if !marked.is_empty() || sync.rebuilt {
            add_indirect(repo, referenced, indirect)?;
        }
        let mut to_check: HashSet<PackId> = own
            .iter()
            .filter(|(_, stored)| at.saturating_duration_since(*stored) >= self.grace / 2)
            .map(|(p, _)| *p)
            .collect();
        if sync.rebuilt {
            to_check.extend(referenced.iter().copied());
        }
        let gone = missing(repo, &to_check)?;
        if let Some(p) = gone.first() {
            return Err(pruned_meanwhile(*p, gone.len()));
        }
        let mut conflicts: Vec<PackId> = referenced.intersection(&marked).copied().collect();
        conflicts.sort();
        Ok(PreCheck {
            conflicts,
            at,
            at_wall_ns,
            plans_seen: plans.ids(),
        })
    }

    /// The check just after the snapshot was written (B3). When more than half the grace
    /// period passed since B2, a sweep may have deleted what the snapshot needs: then the plans
    /// and packs are checked again (including the data packs of reused content lists), and if
    /// anything is marked anew or gone, or the check cannot be completed, the snapshot is
    /// deleted again and the backup fails.
    pub fn post_check(
        &self,
        repo: &Repository,
        pre: &PreCheck,
        snapshot: &SnapshotId,
        referenced: &HashSet<PackId>,
        indirect: &[BlobId],
    ) -> Result<()> {
        let wall = Duration::from_nanos(
            u64::try_from(now_ns().saturating_sub(pre.at_wall_ns)).unwrap_or(0),
        );
        let elapsed = pre.at.elapsed().max(wall);
        if elapsed < self.grace / 2 {
            // No sweep of a plan this backup did not see can have listed the snapshots before
            // this snapshot was written (SPEC §18), so the listing below only reports; a
            // failure to list is no reason to fail a sound backup.
            let _ = load_plans(repo);
            return Ok(());
        }
        let found = (|| -> Result<Option<PackId>> {
            let plans = load_plans(repo)?;
            let new_marked: HashSet<PackId> = plans
                .plans
                .iter()
                .filter(|p| !pre.plans_seen.contains(&p.id))
                .flat_map(|p| p.plan.packs.iter().copied())
                .collect();
            let mut relied = referenced.clone();
            add_indirect(repo, &mut relied, indirect)?;
            if let Some(p) = relied.intersection(&new_marked).next() {
                return Ok(Some(*p));
            }
            Ok(missing(repo, &relied)?.first().copied())
        })();
        let why = match found {
            Ok(None) => return Ok(()),
            Ok(Some(pack)) => format!(
                "meanwhile prune marked or deleted pack {} which the snapshot needs",
                pack.0.short()
            ),
            Err(e) => format!(
                "the plans and packs could not be checked again ({})",
                crate::restorer::error_chain(&e)
            ),
        };
        crate::rollback::forgetting(repo.cache_dir(), &[*snapshot]);
        let deleted = repo.block_on(
            repo.backend()
                .delete(FileType::Snapshot, &snapshot.0.to_hex()),
        );
        Err(Error::new(
            ErrorKind::Backend,
            format!(
                "{} s passed between the backup's last check of the prune plans and its snapshot (more than half the grace period of {} s: was the process suspended?), and {why}; the snapshot {} {}. Run the backup again",
                elapsed.as_secs(),
                self.grace.as_secs(),
                snapshot.0.short(),
                match deleted {
                    Ok(()) => "was removed again".to_owned(),
                    Err(e) => format!(
                        "could not be removed ({e}); remove it with `cairn forget {}`",
                        snapshot.0.to_hex()
                    ),
                }
            ),
        ))
    }
}

fn pruned_meanwhile(pack: PackId, n: usize) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!(
            "prune deleted {n} pack(s) this backup deduplicated against while it ran (e.g. {}), so no snapshot was written; the backup ran longer than the repository's prune grace period. Run it again",
            pack.0.short()
        ),
    )
}

/// Adds the packs of the data blobs of `lists` to `referenced`.
fn add_indirect(
    repo: &Repository,
    referenced: &mut HashSet<PackId>,
    lists: &[BlobId],
) -> Result<()> {
    for list_id in lists {
        let list = repo.load_content_list(list_id)?;
        let found = repo
            .cache()
            .lookup_many(&list.ids)
            .map_err(|e| Error::cache("cannot read the index cache", e))?;
        for (id, loc) in list.ids.iter().zip(found) {
            match loc {
                Some(loc) => {
                    referenced.insert(loc.pack);
                    // A member of a based group is read through its base (SPEC §7).
                    if loc.entry.compression == repo_format::Compression::Based {
                        referenced.extend(repo.base_packs(&loc)?);
                    }
                }
                None => {
                    return Err(Error::new(
                        ErrorKind::NotFound,
                        format!(
                            "blob {} of an unchanged file is no longer in the index (pruned while the backup ran?); no snapshot was written. Run the backup again",
                            id.0.short()
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The packs of `packs` that are not on storage.
fn missing(repo: &Repository, packs: &HashSet<PackId>) -> Result<Vec<PackId>> {
    let backend = repo.backend();
    let results: Vec<Result<Option<PackId>>> = repo.block_on(
        futures::stream::iter(packs.iter().copied().map(|p| async move {
            match backend.exists(FileType::Pack, &p.0.to_hex()).await {
                Ok(Some(_)) => Ok(None),
                Ok(None) => Ok(Some(p)),
                Err(e) => Err(Error::backend(
                    format!("cannot check pack {}", p.0.short()),
                    e,
                )),
            }
        }))
        .buffer_unordered(STAT_CONCURRENCY)
        .collect(),
    );
    let mut gone = Vec::new();
    for r in results {
        if let Some(p) = r? {
            gone.push(p);
        }
    }
    gone.sort();
    Ok(gone)
}
