//! `cairn copy`: snapshots from one repository into another, re-chunked, deduplicated and
//! re-encrypted at the destination.
//!
//! Two repositories share nothing: another password, master key, `id_key` and chunker seed. A
//! blob id is a keyed hash under the source's `id_key` and chunk boundaries follow the source's
//! seed, so no blob can be copied as it is. For each snapshot, oldest first:
//!
//! ```text
//! skip it if the destination holds a snapshot of the same origin (SPEC §10: resumable, idempotent)
//! read the prune plans of the destination (B1)                    -- as a backup does
//! walk the source tree (tree::TreeCopier):
//!     file: reuse a content copied before (this run, or the reference snapshot's copy), or
//!           read the source blobs in order, verified -> destination chunker -> BlobSaver
//!     dir:  new tree with the new ids, metadata unchanged
//! finish the saver (packs, then index files)
//! check the plans again, store marked packs' blobs again (B2), write the snapshot, check (B3)
//! ```
//!
//! From the destination's point of view a copy is a backup: it follows the same rules against a
//! concurrent prune (SPEC §18), with the same code ([`PlanGuard`], `check_plans`). Each
//! snapshot is complete (its packs and index files stored) before it is written, so an
//! interrupted copy leaves finished snapshots and garbage for prune, and the next run goes on
//! where it stopped. Only the [`Repository`] API is used: any two backends work.

mod memo;
mod origins;
mod source;
mod tree;

use std::collections::HashSet;

use repo_format::{Chunker, ChunkerProfile, Snapshot, SnapshotId, Summary};

use crate::archiver::saver::BlobSaver;
use crate::archiver::{Hook, Warning, check_plans};
use crate::error::{Error, ErrorKind, Result};
use crate::progress::Progress;
use crate::prune::guard::PlanGuard;
use crate::repository::{Repository, now_ns};
use memo::ContentMemo;
pub use origins::origin;
use origins::{DestCopy, Origins};
use tree::TreeCopier;
pub use tree::TreeStats;

/// Options for [`copy_with`].
#[derive(Clone, Debug, Default)]
pub struct CopyOptions {
    /// Compression/encryption threads at the destination (default: the number of cores).
    pub workers: Option<usize>,
    /// Called after the prune-plan check and before each snapshot is written (tests).
    pub before_snapshot: Option<Hook>,
}

/// One snapshot copied.
#[derive(Clone, Debug)]
pub struct CopiedSnapshot {
    /// The snapshot in the source.
    pub source: SnapshotId,
    /// Its copy in the destination.
    pub id: SnapshotId,
    /// The copy as written.
    pub snapshot: Snapshot,
    /// What copying its tree did.
    pub stats: TreeStats,
    /// Blobs added to the destination.
    pub blobs_added: u64,
    /// Their plaintext bytes.
    pub data_added_raw: u64,
    /// Their stored bytes.
    pub data_added_stored: u64,
}

/// What [`copy`] did.
#[derive(Clone, Debug, Default)]
pub struct CopyReport {
    /// Snapshots copied, oldest first.
    pub copied: Vec<CopiedSnapshot>,
    /// Snapshots the destination already had: (source id, destination id).
    pub present: Vec<(SnapshotId, SnapshotId)>,
    /// Things that did not stop the copy (e.g. a prune marked packs it relied on).
    pub warnings: Vec<Warning>,
}

impl CopyReport {
    /// Content bytes read from the source, over all copied snapshots.
    pub fn bytes_read(&self) -> u64 {
        self.copied.iter().map(|c| c.stats.bytes_read).sum()
    }

    /// Plaintext bytes added to the destination.
    pub fn data_added_raw(&self) -> u64 {
        self.copied.iter().map(|c| c.data_added_raw).sum()
    }

    /// Stored bytes added to the destination.
    pub fn data_added_stored(&self) -> u64 {
        self.copied.iter().map(|c| c.data_added_stored).sum()
    }
}

/// Copies the snapshots `ids` of `src` into `dst` with default options; see [`copy_with`].
pub fn copy(
    src: &Repository,
    dst: &Repository,
    ids: &[SnapshotId],
    progress: &dyn Progress,
) -> Result<CopyReport> {
    copy_with(src, dst, ids, &CopyOptions::default(), progress)
}

/// Copies the snapshots `ids` of `src` into `dst`, oldest first, skipping those the
/// destination already holds. Stops at the first snapshot that cannot be copied; the ones
/// before it are complete in the destination.
pub fn copy_with(
    src: &Repository,
    dst: &Repository,
    ids: &[SnapshotId],
    opts: &CopyOptions,
    progress: &dyn Progress,
) -> Result<CopyReport> {
    if src.keys().repo_id() == dst.keys().repo_id() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{} and {} are the same repository (id {}); copy needs another repository as --to",
                src.location(),
                dst.location(),
                src.keys().repo_id().short()
            ),
        ));
    }
    let mut origins = Origins::new(src.list_snapshots()?, &dst.list_snapshots()?);
    let mut todo: Vec<(SnapshotId, Snapshot)> = Vec::with_capacity(ids.len());
    let mut seen = HashSet::new();
    for id in ids {
        if !seen.insert(*id) {
            continue;
        }
        let snap = match origins.source(id) {
            Some(s) => s.clone(),
            None => src.load_snapshot(id)?,
        };
        todo.push((*id, snap));
    }
    todo.sort_by_key(|(id, s)| (s.time_ns, *id));

    let (files, bytes) = todo
        .iter()
        .filter(|(id, s)| origins.copy_of(id, s).is_none())
        .filter_map(|(_, s)| s.summary)
        .fold((0, 0), |(f, b), s| (f + s.total_files, b + s.total_bytes));
    progress.set_total(files, bytes);

    let mut report = CopyReport::default();
    let mut memo = ContentMemo::default();
    let total = todo.len();
    for (n, (id, snap)) in todo.into_iter().enumerate() {
        if let Some(c) = origins.copy_of(&id, &snap) {
            report.present.push((id, c.id));
            continue;
        }
        let job = Job {
            id,
            parent: origins.parent_copy(&snap),
            reference: origins.reference(&id, &snap),
            snap,
        };
        let copied = copy_one(src, dst, &job, &mut memo, opts, progress, &mut report.warnings)
            .map_err(|e| {
                Error::with_source(
                    e.kind(),
                    format!(
                        "cannot copy snapshot {} ({} of {total}; {} copied before it are complete in {})",
                        id.0.short(),
                        n + 1,
                        report.copied.len(),
                        dst.location()
                    ),
                    e,
                )
            })?;
        origins.add_copy(
            origin(&id, &job.snap),
            DestCopy {
                id: copied.id,
                tree: copied.snapshot.tree,
            },
        );
        report.copied.push(copied);
    }
    Ok(report)
}

/// One snapshot to copy, with what the destination already has of its series.
struct Job {
    id: SnapshotId,
    snap: Snapshot,
    /// The destination's copy of the source's parent.
    parent: Option<SnapshotId>,
    /// (source tree, destination tree) of a snapshot copied before, to compare files with.
    reference: Option<(repo_format::BlobId, repo_format::BlobId)>,
}

/// The destination's profile for `snap`'s contents: the one of the same name as the source
/// used, else the one a backup of that kind would pick (`stream` for a stream, else `file`).
fn profile_for(dst: &Repository, snap: &Snapshot) -> Result<ChunkerProfile> {
    let same = snap
        .chunker
        .as_ref()
        .and_then(|c| dst.config().profile(&c.name));
    // A stream backup's single path is the plain file name; a directory backup's are absolute.
    let is_stream = matches!(snap.paths.as_slice(), [p] if !p.starts_with(b"/"));
    let fallback = if is_stream { "stream" } else { "file" };
    same.or_else(|| dst.config().profile(fallback))
        .cloned()
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "the destination {} has no chunker profile named '{fallback}'",
                    dst.location()
                ),
            )
        })
}

fn copy_one(
    src: &Repository,
    dst: &Repository,
    job: &Job,
    memo: &mut ContentMemo,
    opts: &CopyOptions,
    progress: &dyn Progress,
    warnings: &mut Vec<Warning>,
) -> Result<CopiedSnapshot> {
    let start_ns = now_ns();
    let profile = profile_for(dst, &job.snap)?;
    let chunker = Chunker::new(profile.params, dst.keys().chunker_seed()).map_err(|e| {
        Error::format(
            format!(
                "chunker profile '{}' of {} is invalid",
                profile.name,
                dst.location()
            ),
            e,
        )
    })?;
    let workers = opts
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let guard = PlanGuard::start(dst)?;
    let avoid = guard.marked().clone();
    let (tree, mut totals, stats) = std::thread::scope(|scope| -> Result<_> {
        let saver = BlobSaver::start_avoiding(scope, dst, workers, avoid);
        let mut copier = TreeCopier {
            src,
            dst,
            saver: &saver,
            chunker: &chunker,
            memo,
            progress,
            stats: TreeStats::default(),
        };
        // Deep trees recurse deeply: walk on a thread with a generous stack, as backup does.
        let (tree, stats) = std::thread::scope(|walk| {
            std::thread::Builder::new()
                .name("cairn-copy".into())
                .stack_size(256 << 20)
                .spawn_scoped(walk, || {
                    let r = copier.copy_root(&job.snap.tree, job.reference);
                    (r, copier.stats)
                })
                .map_err(|e| Error::io("cannot start the tree copier", e))?
                .join()
                .map_err(|_| Error::new(ErrorKind::Io, "the tree copier panicked"))
        })?;
        let tree = tree?;
        let totals = saver.finish()?;
        Ok((tree, totals, stats))
    })?;

    let mut referenced = std::mem::take(&mut totals.referenced);
    let mut new_warnings = Vec::new();
    let pre = check_plans(dst, &guard, &mut referenced, &totals, &mut new_warnings)?;
    for w in &mut new_warnings {
        w.message = format!("copy of snapshot {}: {}", job.id.0.short(), w.message);
        progress.warning(&w.path, &w.message);
    }
    warnings.extend(new_warnings);

    let snapshot = copied_snapshot(job, tree, profile, &stats, &totals, start_ns);
    if let Some(hook) = &opts.before_snapshot {
        (hook.0)();
    }
    let id = dst.save_snapshot(&snapshot)?;
    guard.post_check(dst, &pre, &id, &referenced, &totals.indirect)?;
    Ok(CopiedSnapshot {
        source: job.id,
        id,
        snapshot,
        stats,
        blobs_added: totals.blobs,
        data_added_raw: totals.raw,
        data_added_stored: totals.stored,
    })
}

/// The destination's snapshot: the source's fields, with the destination's tree, chunker,
/// parent and added-data figures (SPEC §10, "Copies").
fn copied_snapshot(
    job: &Job,
    tree: repo_format::BlobId,
    profile: ChunkerProfile,
    stats: &TreeStats,
    totals: &crate::archiver::saver::SaverTotals,
    start_ns: i64,
) -> Snapshot {
    let s = &job.snap;
    // Without a source summary (not written by a cairn backup), describe the copy itself.
    let base = s.summary.unwrap_or(Summary {
        start_ns,
        end_ns: now_ns(),
        files_new: stats.total_files,
        dirs: stats.dirs,
        bytes_read: stats.bytes_read,
        total_bytes: stats.total_bytes,
        total_files: stats.total_files,
        ..Summary::default()
    });
    // Every field not named here (time, paths, host, user, tags, status, flags, and any added
    // later) is the source's.
    Snapshot {
        tree,
        parent: job.parent,
        summary: Some(Summary {
            blobs_added: totals.blobs,
            data_added_raw: totals.raw,
            data_added_stored: totals.stored,
            ..base
        }),
        chunker: Some(profile),
        program: format!("cairn {}", env!("CARGO_PKG_VERSION")),
        original: None,
        copied_from: Some(origin(&job.id, s)),
        ..s.clone()
    }
}
