//! `cairn forget` by store: each store's snapshots are one group, kept by the store's own
//! `retention` (or by rules given on the command line), whatever their host and paths — a store
//! whose machine was replaced keeps one series.
//!
//! | rules | stores | snapshots considered |
//! |---|---|---|
//! | each store's `retention` ([`Rules::Own`]) | every store of cairn.toml, or the `--store` ones (which must be in it) | those of the stores |
//! | given ([`Rules::Given`]) | the `--store` ones (in cairn.toml or having snapshots) | those of the stores |
//!
//! Snapshots that belong to no store (`cairn backup`'s), and those of stores not selected, are
//! never touched here: the report counts them so the CLI can say so. `retention = "forever"`
//! keeps every snapshot of its store. Failed backups and protected snapshots are handled as by
//! every policy (see [`crate::retention`]).

use repo_format::{Snapshot, SnapshotId};

use super::config::Config;
use super::select::{check_names, count_by_store};
use crate::forget::{ForgetReport, PolicyGroup, forget_groups};
use crate::repository::Repository;
use crate::retention::{GroupKey, KeepPolicy};
use crate::{Error, ErrorKind, Result};

/// Which rules decide.
#[derive(Clone, Copy, Debug)]
pub enum Rules<'a> {
    /// Each store's `retention` from cairn.toml.
    Own,
    /// These rules, for every selected store.
    Given(&'a KeepPolicy),
}

/// What [`forget_stores`] decided and did, and what it left alone.
#[derive(Clone, Debug, Default)]
pub struct StoreForgetReport {
    /// One group per selected store that has snapshots.
    pub report: ForgetReport,
    /// Snapshots that belong to no store: not touched.
    pub without_store: usize,
    /// Snapshots of stores that were not selected, by store: not touched.
    pub other_stores: Vec<(String, usize)>,
}

/// The groups [`forget_stores`] applies, from the repository's `snapshots` (pure). `names` are
/// the `--store` options (empty: every store of `config`).
pub fn plan(
    config: Option<&Config>,
    names: &[String],
    rules: Rules<'_>,
    snapshots: &[(SnapshotId, Snapshot)],
) -> Result<(Vec<PolicyGroup>, StoreForgetReport)> {
    let selected: Vec<String> = if names.is_empty() {
        match config {
            Some(c) => c.stores.iter().map(|s| s.name.clone()).collect(),
            None => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    "forget by store needs cairn.toml or --store NAME",
                ));
            }
        }
    } else {
        check_names(names, config, snapshots)?
    };
    let mut groups = Vec::new();
    for name in &selected {
        let policy = match rules {
            Rules::Given(p) => Some(p.clone()),
            Rules::Own => {
                let store = config.and_then(|c| c.store(name)).ok_or_else(|| {
                    let file =
                        config.map_or("cairn.toml".to_owned(), |c| c.file.display().to_string());
                    Error::new(
                        ErrorKind::InvalidInput,
                        format!(
                            "store {name} is not in {file}, so it has no retention of its own: \
                             give --keep-* rules for its snapshots"
                        ),
                    )
                })?;
                store.retention.policy().cloned()
            }
        };
        let mine: Vec<(SnapshotId, Snapshot)> = snapshots
            .iter()
            .filter(|(_, s)| s.store.as_deref() == Some(name.as_str()))
            .cloned()
            .collect();
        if mine.is_empty() {
            continue;
        }
        groups.push(PolicyGroup {
            key: GroupKey {
                store: Some(name.clone()),
                ..GroupKey::default()
            },
            snapshots: mine,
            policy,
        });
    }
    let (by, without_store) = count_by_store(snapshots);
    let other_stores = by
        .into_iter()
        .filter(|(n, _)| !selected.contains(n))
        .collect();
    Ok((
        groups,
        StoreForgetReport {
            report: ForgetReport::default(),
            without_store,
            other_stores,
        },
    ))
}

/// Applies the rules to each selected store's snapshots (see the module documentation) and
/// deletes those not kept, unless `dry_run`. `now_ns` is the current time (Unix nanoseconds).
pub fn forget_stores(
    repo: &Repository,
    config: Option<&Config>,
    names: &[String],
    rules: Rules<'_>,
    dry_run: bool,
    now_ns: i64,
) -> Result<StoreForgetReport> {
    let snapshots = repo.list_snapshots()?;
    let (groups, mut out) = plan(config, names, rules, &snapshots)?;
    out.report = forget_groups(repo, groups, repo.damaged_snapshots(), dry_run, now_ns)?;
    Ok(out)
}
