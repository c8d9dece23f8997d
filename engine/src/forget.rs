//! `cairn forget`: removes snapshots, either those a retention policy does not keep (see
//! [`crate::retention`]) or those named by id.
//!
//! Forgetting deletes only snapshot files: the packs that only removed snapshots needed stay
//! until `cairn prune` ([`crate::prune`]). Everything is decided before the first deletion, and
//! a dry run decides the same and deletes nothing.
//!
//! Protected snapshots (see [`crate::protect`]) are kept by every policy, and naming one is
//! refused: it must be unprotected first.

use repo_format::{Snapshot, SnapshotId};

use crate::backend::FileType;
use crate::repository::Repository;
use crate::retention::{Decision, GroupBy, GroupKey, KeepPolicy, apply_policy, group};
use crate::{Error, ErrorKind, Result};

/// One snapshot and what happens to it.
#[derive(Clone, Debug)]
pub struct ForgetEntry {
    /// The snapshot.
    pub id: SnapshotId,
    /// Its contents; `None` for a damaged snapshot named explicitly (it is removed unread).
    pub snapshot: Option<Snapshot>,
    /// Kept or removed, and why.
    pub decision: Decision,
}

/// One group of snapshots and the decisions for it, newest first.
#[derive(Clone, Debug)]
pub struct ForgetGroup {
    /// What the group's snapshots share (all `None` for explicitly named snapshots).
    pub key: GroupKey,
    /// The snapshots, newest first.
    pub entries: Vec<ForgetEntry>,
}

/// What `forget` decided and did.
#[derive(Clone, Debug, Default)]
pub struct ForgetReport {
    /// The groups, ordered by key.
    pub groups: Vec<ForgetGroup>,
    /// Whether nothing was deleted (dry run).
    pub dry_run: bool,
    /// Snapshots that could not be read, left alone by a policy (name them to remove them).
    pub damaged: Vec<(SnapshotId, String)>,
}

impl ForgetReport {
    /// How many snapshots are kept.
    pub fn kept(&self) -> usize {
        self.entries().filter(|e| e.decision.keep).count()
    }

    /// How many snapshots are removed (or would be, in a dry run).
    pub fn removed(&self) -> usize {
        self.entries().filter(|e| !e.decision.keep).count()
    }

    fn entries(&self) -> impl Iterator<Item = &ForgetEntry> {
        self.groups.iter().flat_map(|g| g.entries.iter())
    }
}

/// The message for a policy without rules.
pub const EMPTY_POLICY: &str =
    "no keep rule given: forget would remove every snapshot; pass at least one --keep-* option";

/// Applies `policy` to each group of snapshots (grouped by `group_by`) and deletes the snapshots
/// it does not keep, unless `dry_run`. `now_ns` is the current time (Unix nanoseconds).
/// Refuses an empty policy. Damaged snapshots are left alone and listed in the report.
pub fn forget(
    repo: &Repository,
    policy: &KeepPolicy,
    group_by: GroupBy,
    dry_run: bool,
    now_ns: i64,
) -> Result<ForgetReport> {
    if policy.is_empty() {
        return Err(Error::new(ErrorKind::InvalidInput, EMPTY_POLICY));
    }
    let snapshots = repo.list_snapshots()?;
    let damaged = repo.damaged_snapshots();
    let mut groups = Vec::new();
    for (key, members) in group(&snapshots, group_by) {
        let mine: Vec<(SnapshotId, Snapshot)> =
            members.iter().map(|&i| snapshots[i].clone()).collect();
        let decisions = apply_policy(&mine, policy, now_ns);
        let mut entries: Vec<ForgetEntry> = mine
            .into_iter()
            .zip(decisions)
            .map(|((id, snapshot), decision)| ForgetEntry {
                id,
                snapshot: Some(snapshot),
                decision,
            })
            .collect();
        sort_newest_first(&mut entries);
        groups.push(ForgetGroup { key, entries });
    }
    let report = ForgetReport {
        groups,
        dry_run,
        damaged,
    };
    if !dry_run {
        delete_removed(repo, &report)?;
    }
    Ok(report)
}

/// One group of snapshots with its own policy, for [`forget_groups`].
#[derive(Clone, Debug)]
pub struct PolicyGroup {
    /// What the group's snapshots share (shown in the report).
    pub key: GroupKey,
    /// The group's snapshots.
    pub snapshots: Vec<(SnapshotId, Snapshot)>,
    /// The policy for this group; `None` keeps every snapshot (a store kept forever).
    pub policy: Option<KeepPolicy>,
}

/// The reason given for every snapshot of a group without a policy.
pub const KEPT_FOREVER: &str = "retention forever";

/// Applies to each group its own policy and deletes what is not kept, unless `dry_run`
/// (`cairn forget` by store: each store's retention). Snapshots in no group are not touched.
/// An empty policy is refused, as in [`forget`]; `damaged` is reported as given.
pub fn forget_groups(
    repo: &Repository,
    groups: Vec<PolicyGroup>,
    damaged: Vec<(SnapshotId, String)>,
    dry_run: bool,
    now_ns: i64,
) -> Result<ForgetReport> {
    if groups
        .iter()
        .any(|g| g.policy.as_ref().is_some_and(KeepPolicy::is_empty))
    {
        return Err(Error::new(ErrorKind::InvalidInput, EMPTY_POLICY));
    }
    let mut out = Vec::with_capacity(groups.len());
    for g in groups {
        let decisions = match &g.policy {
            Some(p) => apply_policy(&g.snapshots, p, now_ns),
            None => vec![
                Decision {
                    keep: true,
                    reasons: vec![KEPT_FOREVER.to_owned()],
                };
                g.snapshots.len()
            ],
        };
        let mut entries: Vec<ForgetEntry> = g
            .snapshots
            .into_iter()
            .zip(decisions)
            .map(|((id, snapshot), decision)| ForgetEntry {
                id,
                snapshot: Some(snapshot),
                decision,
            })
            .collect();
        sort_newest_first(&mut entries);
        out.push(ForgetGroup {
            key: g.key,
            entries,
        });
    }
    let report = ForgetReport {
        groups: out,
        dry_run,
        damaged,
    };
    if !dry_run {
        delete_removed(repo, &report)?;
    }
    Ok(report)
}

/// Removes the snapshots named by `specs` (full ids or unique id prefixes), unless `dry_run`.
/// Every spec is resolved before anything is deleted; damaged snapshots can be named too. A
/// protected snapshot is refused (nothing is deleted): unprotect it first.
pub fn forget_ids(repo: &Repository, specs: &[String], dry_run: bool) -> Result<ForgetReport> {
    if specs.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "no snapshot given to forget",
        ));
    }
    let all = repo.list_ids(FileType::Snapshot)?;
    let mut ids: Vec<SnapshotId> = Vec::new();
    for spec in specs {
        let id = SnapshotId(crate::repository::match_prefix(
            &all,
            spec,
            "snapshot",
            "a retention policy",
            repo.location(),
        )?);
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let mut entries = Vec::with_capacity(ids.len());
    for id in ids {
        let (snapshot, reason) = match repo.load_snapshot(&id) {
            Ok(s) if s.protected => {
                let hex = id.to_hex();
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "snapshot {} is protected; run `cairn unprotect {hex}` first (nothing was removed)",
                        id.0.short()
                    ),
                ));
            }
            Ok(s) => (Some(s), "named on the command line".to_string()),
            Err(e) if e.kind() == ErrorKind::Corrupt => (
                None,
                "named on the command line (damaged, not readable)".to_string(),
            ),
            Err(e) => return Err(e),
        };
        entries.push(ForgetEntry {
            id,
            snapshot,
            decision: Decision {
                keep: false,
                reasons: vec![reason],
            },
        });
    }
    sort_newest_first(&mut entries);
    let report = ForgetReport {
        groups: vec![ForgetGroup {
            key: GroupKey::default(),
            entries,
        }],
        dry_run,
        damaged: Vec::new(),
    };
    if !dry_run {
        delete_removed(repo, &report)?;
    }
    Ok(report)
}

fn sort_newest_first(entries: &mut [ForgetEntry]) {
    entries.sort_by(|a, b| {
        let ka = (a.snapshot.as_ref().map(|s| s.time_ns), a.id);
        let kb = (b.snapshot.as_ref().map(|s| s.time_ns), b.id);
        kb.cmp(&ka)
    });
}

fn delete_removed(repo: &Repository, report: &ForgetReport) -> Result<()> {
    let removed: Vec<SnapshotId> = report
        .entries()
        .filter(|e| !e.decision.keep)
        .map(|e| e.id)
        .collect();
    // Removed on purpose: no rollback warning for them later (see `crate::rollback`).
    crate::rollback::forgetting(repo.cache_dir(), &removed);
    for (done, id) in removed.iter().enumerate() {
        repo.block_on(repo.backend().delete(FileType::Snapshot, &id.to_hex()))
            .map_err(|e| {
                Error::backend(
                    format!(
                        "cannot remove snapshot {} ({done} of {} removed before it)",
                        id.0.short(),
                        removed.len()
                    ),
                    e,
                )
            })?;
    }
    Ok(())
}
