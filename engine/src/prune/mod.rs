//! `cairn prune`: deletes what no snapshot needs, in two phases, while backups keep running.
//!
//! One run (SPEC §18):
//!
//! 1. takes the prune lease (which also reads the storage's clock and probes create-only writes);
//! 2. deletes index files left superseded by an interrupted sweep, and damaged plans;
//! 3. lists the snapshots and puts every blob they need into an on-disk [`used::UsedSet`];
//! 4. reads the index: per pack, used and unused bytes; refuses to go on if a needed blob is in
//!    no index file (that is damage for `check` and `repair`, not garbage);
//! 5. **sweeps** the plans whose grace period has passed on the storage's clock: deletes their
//!    packs unless a snapshot written since needs them ([`sweep`]). Deleting whole packs comes
//!    before any repacking, so prune works on a nearly full disk;
//! 6. **plans**: marks packs older than the grace period that are unused (or were repacked:
//!    [`repack`]) in a new plan object; a later run sweeps them;
//! 7. releases the lease.
//!
//! A run killed at any point leaves a repository that `check` finds sound; the next run
//! finishes the job. `dry_run` reads everything and changes nothing.

pub mod guard;
pub mod lease;
pub mod plans;
pub mod repack;
pub mod scan;
pub mod sweep;
pub mod used;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use repo_format::{IndexId, PackId, Plan};

use self::lease::{HeldLease, LeaseOptions};
use self::plans::{StoredPlan, load_plans};
use self::scan::{PackUse, index_files, mark_bases, pack_usage};
use self::sweep::{SweepReport, delete_all, sweep};
use self::used::{LOCATED, UsedSet};
use crate::backend::FileType;
use crate::error::{Error, ErrorKind, Result};
use crate::progress::Progress;
use crate::repository::{Repository, now_ns, random_bytes};

/// How much unused space prune tolerates before it repacks partly used packs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MaxUnused {
    /// At most this percentage (0..100) of the packs' bytes may be unused.
    Percent(f64),
    /// At most this many unused bytes.
    Bytes(u64),
    /// Never repack.
    Unlimited,
}

impl Default for MaxUnused {
    fn default() -> Self {
        MaxUnused::Percent(5.0)
    }
}

impl MaxUnused {
    /// The unused bytes tolerated beside `used` bytes of needed blobs.
    pub fn limit(&self, used: u64) -> u64 {
        match *self {
            MaxUnused::Percent(p) if p >= 100.0 => u64::MAX,
            // unused / (used + unused) ≤ p  ⇔  unused ≤ p / (1 - p) · used
            MaxUnused::Percent(p) => (p / (100.0 - p) * used as f64) as u64,
            MaxUnused::Bytes(b) => b,
            MaxUnused::Unlimited => u64::MAX,
        }
    }
}

/// Options of a prune run.
#[derive(Clone, Debug, Default)]
pub struct PruneOptions {
    /// Read everything, print the plan, change nothing.
    pub dry_run: bool,
    /// Unused space tolerated (default 5 %).
    pub max_unused: MaxUnused,
    /// Copy at most this many bytes of needed blobs when repacking (default: no limit).
    pub max_repack_bytes: Option<u64>,
    /// A grace period longer than the repository's (never shorter).
    pub grace: Option<Duration>,
    /// Lease settings.
    pub lease: LeaseOptions,
}

/// What a prune run did (or would do, in a dry run).
#[derive(Clone, Debug, Default)]
pub struct PruneReport {
    /// Nothing was changed.
    pub dry_run: bool,
    /// The lease number held (0 in a dry run).
    pub lease: u64,
    /// The storage's clock at the start, Unix ns (this machine's in a dry run).
    pub storage_now_ns: i64,
    /// The grace period applied, seconds.
    pub grace_secs: u64,
    /// Snapshots whose blobs were kept.
    pub snapshots: usize,
    /// Blobs they need (trees, content lists and data).
    pub used_blobs: u64,
    /// Superseded index files deleted (left by an interrupted sweep).
    pub superseded_index_files: usize,
    /// Damaged plans deleted.
    pub damaged_plans: usize,
    /// The sweep of due plans.
    pub sweep: SweepReport,
    /// Plans still waiting for their grace period: (plan id, due time Unix ns, packs).
    pub waiting: Vec<(String, i64, usize)>,
    /// Packs in the repository (listed) and their bytes, before this run.
    pub packs_total: usize,
    /// Bytes of the listed packs.
    pub bytes_total: u64,
    /// Stored bytes of needed blobs.
    pub used_bytes: u64,
    /// Stored bytes of blobs no snapshot needs (and duplicates).
    pub unused_bytes: u64,
    /// Packs too young to be judged (written within the grace period; a backup may be using
    /// them).
    pub young_packs: usize,
    /// The new plan: its id, if one was written.
    pub plan: Option<String>,
    /// When it can be swept (storage time, Unix ns).
    pub plan_due_ns: Option<i64>,
    /// Packs it marks because nothing needs them.
    pub marked_unused: usize,
    /// Packs it marks because their needed blobs were repacked.
    pub marked_repacked: usize,
    /// Packs on storage that no index file names (left by interrupted backups), marked.
    pub marked_unindexed: usize,
    /// Bytes the marked packs hold (freed by the sweep).
    pub bytes_to_free: u64,
    /// Blobs copied by repacking, and their bytes.
    pub repacked_blobs: u64,
    /// Plaintext bytes repacked.
    pub repacked_bytes: u64,
    /// Problems that did not stop the run.
    pub warnings: Vec<String>,
}

/// Renews the lease during long reads (nothing in a dry run).
fn keep_alive(lease: &mut Option<&mut HeldLease>, repo: &Repository) -> Result<()> {
    match lease {
        Some(l) => l.keep_alive(repo),
        None => Ok(()),
    }
}

/// Every snapshot that existed when the last listing was taken: while snapshots vanish between
/// a listing and their read (a concurrent `forget`, or `protect` replacing one with a copy),
/// list again and add what appeared, so a replacement written before its original was deleted
/// is never missed.
fn snapshots_at_one_moment(
    repo: &Repository,
) -> Result<Vec<(repo_format::SnapshotId, repo_format::Snapshot)>> {
    let mut all: HashMap<repo_format::SnapshotId, repo_format::Snapshot> = HashMap::new();
    for _ in 0..10 {
        let (listed, vanished) = repo.list_snapshots_report()?;
        for (id, snap) in listed {
            all.entry(id).or_insert(snap);
        }
        if vanished == 0 {
            let mut out: Vec<_> = all.into_iter().collect();
            out.sort_by_key(|(id, s)| (s.time_ns, *id));
            return Ok(out);
        }
    }
    Err(Error::new(
        ErrorKind::Backend,
        "snapshots keep vanishing while prune reads them (is a forget running in a loop?); try again",
    ))
}

/// Runs prune (see the module docs).
pub fn prune(
    repo: &Repository,
    opts: &PruneOptions,
    progress: &dyn Progress,
) -> Result<PruneReport> {
    let repo_grace = Duration::from_secs(repo.config().prune_grace_secs);
    let grace = match opts.grace {
        Some(g) if g < repo_grace => {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "a grace period of {} s is shorter than the repository's {} s; it can only be made longer (backups rely on it)",
                    g.as_secs(),
                    repo_grace.as_secs()
                ),
            ));
        }
        Some(g) => g,
        None => repo_grace,
    };
    let grace_ns = i64::try_from(grace.as_nanos()).unwrap_or(i64::MAX);
    repo.sync_index()?;

    let mut lease = if opts.dry_run {
        None
    } else {
        Some(lease::acquire(repo, opts.lease)?)
    };
    let result = run(repo, opts, grace, grace_ns, lease.as_mut(), progress);
    if let Some(lease) = lease {
        let released = lease.release(repo);
        if result.is_ok() {
            released?;
        }
    }
    result
}

fn run(
    repo: &Repository,
    opts: &PruneOptions,
    grace: Duration,
    grace_ns: i64,
    mut lease: Option<&mut HeldLease>,
    progress: &dyn Progress,
) -> Result<PruneReport> {
    let now = lease.as_ref().map_or_else(now_ns, |l| l.storage_start_ns());
    let mut report = PruneReport {
        dry_run: opts.dry_run,
        lease: lease.as_ref().map_or(0, |l| l.number()),
        storage_now_ns: now,
        grace_secs: grace.as_secs(),
        ..PruneReport::default()
    };

    // 2. Leftovers of an interrupted run.
    let mut files = index_files(repo)?;
    let plans = load_plans(repo)?;
    if let Some(lease) = lease.as_deref_mut()
        && (!files.superseded.is_empty() || !files.empty.is_empty() || !plans.damaged.is_empty())
    {
        lease.check(repo, "deleting superseded index files")?;
        delete_all(
            repo,
            FileType::Index,
            files
                .superseded
                .iter()
                .chain(&files.empty)
                .map(|i| i.0.to_hex())
                .collect(),
        )?;
        delete_all(
            repo,
            FileType::Plan,
            plans.damaged.iter().map(|(i, _)| i.to_hex()).collect(),
        )?;
    }
    report.superseded_index_files = files.superseded.len();
    report.damaged_plans = plans.damaged.len();
    for (id, why) in &plans.damaged {
        report
            .warnings
            .push(format!("damaged prune plan {} removed: {why}", id.short()));
    }
    let (due, waiting): (Vec<StoredPlan>, Vec<StoredPlan>) =
        plans.plans.into_iter().partition(|p| {
            p.modified_ns
                .is_some_and(|m| m.saturating_add(grace_ns) <= now)
        });
    report.waiting = waiting
        .iter()
        .map(|p| {
            (
                p.id.to_hex(),
                p.modified_ns.unwrap_or(now).saturating_add(grace_ns),
                p.plan.packs.len(),
            )
        })
        .collect();

    // 3. What the snapshots need, listed after the due plans were chosen (the sweep's re-check).
    let snapshots = snapshots_at_one_moment(repo)?;
    let damaged = repo.damaged_snapshots();
    if !damaged.is_empty() {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "{} snapshot(s) cannot be read ({}), so prune cannot know what they need; run `cairn check`, then `cairn forget` or `cairn repair snapshots`",
                damaged.len(),
                damaged
                    .iter()
                    .map(|(id, _)| id.0.short())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    report.snapshots = snapshots.len();
    // Every snapshot listed was written after its index files: load the ones written since the
    // index was last read, and take the current index files from a listing made now.
    repo.sync_index()?;
    let superseded: HashSet<IndexId> = files
        .superseded
        .iter()
        .chain(&files.empty)
        .copied()
        .collect();
    let mut now_listed: Vec<IndexId> = repo
        .list_ids(FileType::Index)?
        .into_iter()
        .map(IndexId)
        .filter(|i| !superseded.contains(i))
        .collect();
    now_listed.sort();
    files.current = now_listed;
    let mut used = UsedSet::create(repo.cache_dir())?;
    let roots: Vec<_> = snapshots.iter().map(|(id, s)| (*id, s.tree)).collect();
    report.used_blobs = used.add_snapshots(repo, &roots, &mut || keep_alive(&mut lease, repo))?;
    drop(snapshots);
    // The bases of based groups holding used blobs are used (SPEC §18 P4).
    report.used_blobs += mark_bases(repo, &files.current, &mut used, &mut || {
        keep_alive(&mut lease, repo)
    })?;

    // 4. The index and the packs on storage.
    let listed = repo
        .block_on(repo.backend().list(FileType::Pack))
        .map_err(|e| Error::backend("cannot list data/", e))?;
    let mut on_storage: HashMap<PackId, (u64, Option<i64>)> = HashMap::new();
    for info in &listed {
        if let Ok(id) = repo_format::Id::from_hex(&info.name) {
            on_storage.insert(PackId(id), (info.size, info.modified));
        }
    }
    drop(listed);
    report.packs_total = on_storage.len();
    report.bytes_total = on_storage.values().map(|(s, _)| s).sum();
    let mut usage = pack_usage(repo, &files.current, &mut used, LOCATED, &mut || {
        keep_alive(&mut lease, repo)
    })?;
    let (missing, count) = used.used_not_located(5)?;
    if count > 0 {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "{count} blob(s) that snapshots need are named by no index file (e.g. {}); prune stops before deleting anything. Run `cairn check`, then `cairn repair index`",
                missing
                    .iter()
                    .map(|b| b.0.short())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    for (pack, u) in &usage.packs {
        if u.used_blobs > 0 && !on_storage.contains_key(pack) {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "pack {} holds blobs that snapshots need but is missing from storage; prune stops. Run `cairn check`",
                    pack.0.short()
                ),
            ));
        }
    }

    // 5. Sweep.
    let sizes: HashMap<PackId, u64> = on_storage.iter().map(|(k, (s, _))| (*k, *s)).collect();
    let mut swept = HashSet::new();
    if !due.is_empty() {
        let (sweep_report, doomed) = sweep(
            repo,
            &due,
            &files.current,
            &sizes,
            &mut used,
            lease.as_deref_mut(),
        )?;
        report.sweep = sweep_report;
        // Only what was (or, in a dry run, would be) deleted: kept packs stay unmarked.
        swept = doomed.into_iter().collect::<HashSet<PackId>>();
        if !opts.dry_run && report.sweep.packs_deleted + report.sweep.index_files_rewritten > 0 {
            files = index_files(repo)?;
            for p in &swept {
                on_storage.remove(p);
            }
            usage = pack_usage(
                repo,
                &files.current,
                &mut used,
                used::LOCATED_AGAIN,
                &mut || keep_alive(&mut lease, repo),
            )?;
            repo.sync_index()?;
        }
    }
    if !opts.dry_run {
        // Deleted for real: not on storage any more, nothing to exclude.
        swept.clear();
    }

    // 6. Plan.
    let already: HashSet<PackId> = waiting
        .iter()
        .flat_map(|p| p.plan.packs.iter().copied())
        .collect();
    let old_enough = |pack: &PackId| {
        on_storage
            .get(pack)
            .and_then(|(_, m)| *m)
            .is_some_and(|m| m.saturating_add(grace_ns) <= now)
    };
    let mut unused_whole = Vec::new();
    let mut partial: Vec<(PackId, PackUse)> = Vec::new();
    for (pack, u) in &usage.packs {
        if already.contains(pack) || swept.contains(pack) {
            continue;
        }
        report.used_bytes += u.used_bytes;
        report.unused_bytes += u.unused_bytes;
        if !on_storage.contains_key(pack) {
            // Indexed, unneeded and gone: its index entries go with the next sweep.
            unused_whole.push(*pack);
            continue;
        }
        if !old_enough(pack) {
            report.young_packs += 1;
            continue;
        }
        if u.used_blobs == 0 {
            unused_whole.push(*pack);
        } else if u.unused_blobs > 0 {
            partial.push((*pack, u.clone()));
        }
    }
    let mut unindexed: Vec<PackId> = on_storage
        .keys()
        .filter(|p| !usage.named_by.contains_key(p) && !already.contains(p) && !swept.contains(p))
        .filter(|p| {
            let ok = old_enough(p);
            if !ok {
                report.young_packs += 1;
            }
            ok
        })
        .copied()
        .collect();
    unindexed.sort();
    unused_whole.sort();

    // Repack the partly used packs with the most unused space until what stays unused is
    // within the limit (and the copy budget allows).
    let unused_after_whole: u64 = partial.iter().map(|(_, u)| u.unused_bytes).sum();
    let used_total: u64 = report.used_bytes;
    let limit = opts.max_unused.limit(used_total);
    partial.sort_by(|a, b| {
        let ra = a.1.unused_bytes as f64 / a.1.blob_bytes().max(1) as f64;
        let rb = b.1.unused_bytes as f64 / b.1.blob_bytes().max(1) as f64;
        rb.total_cmp(&ra).then(a.0.cmp(&b.0))
    });
    let mut to_repack = Vec::new();
    let mut remaining_unused = unused_after_whole;
    let mut budget = opts.max_repack_bytes.unwrap_or(u64::MAX);
    for (pack, u) in &partial {
        if remaining_unused <= limit {
            break;
        }
        if u.used_bytes > budget {
            continue;
        }
        budget -= u.used_bytes;
        remaining_unused -= u.unused_bytes;
        to_repack.push(*pack);
    }

    report.marked_unused = unused_whole.len();
    report.marked_unindexed = unindexed.len();
    let size_of = |p: &PackId| on_storage.get(p).map_or(0, |(s, _)| *s);
    if opts.dry_run {
        report.marked_repacked = to_repack.len();
        report.bytes_to_free = unused_whole
            .iter()
            .chain(&unindexed)
            .chain(&to_repack)
            .map(size_of)
            .sum();
        report.repacked_bytes = partial
            .iter()
            .filter(|(p, _)| to_repack.contains(p))
            .map(|(_, u)| u.used_bytes)
            .sum();
        return Ok(report);
    }
    let Some(lease) = lease else {
        return Ok(report);
    };
    let mut repack_index_files = Vec::new();
    if !to_repack.is_empty() {
        lease.check(repo, "repacking")?;
        let r = repack::repack(repo, &to_repack, &mut used, progress)?;
        report.repacked_blobs = r.blobs;
        report.repacked_bytes = r.raw_bytes;
        report.marked_repacked = r.packs.len();
        for (p, why) in &r.skipped {
            report
                .warnings
                .push(format!("pack {} was not repacked: {why}", p.0.short()));
        }
        to_repack = r.packs;
        repack_index_files = r.index_files;
        repack_index_files.sort();
        repack_index_files.dedup();
    }
    let mut packs: Vec<PackId> = unused_whole
        .into_iter()
        .chain(unindexed)
        .chain(to_repack)
        .collect();
    packs.sort();
    packs.dedup();
    report.bytes_to_free = packs.iter().map(size_of).sum();
    if packs.is_empty() {
        return Ok(report);
    }
    lease.check(repo, "writing the plan")?;
    let plan = Plan {
        created_ns: now_ns(),
        lease: lease.number(),
        packs,
        hostname: crate::host::hostname(),
        index_files: repack_index_files,
    };
    let bytes = plan
        .encode(repo.keys(), random_bytes::<16>()?)
        .map_err(|e| Error::format("cannot encode the prune plan", e))?;
    let id = repo.put_object(FileType::Plan, bytes)?;
    let written = repo
        .block_on(repo.backend().stat(FileType::Plan, &id.to_hex()))
        .ok()
        .flatten()
        .and_then(|i| i.modified)
        .unwrap_or(now);
    report.plan = Some(id.to_hex());
    report.plan_due_ns = Some(written.saturating_add(grace_ns));
    Ok(report)
}
