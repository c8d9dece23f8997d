//! `--store NAME`: which snapshots belong to which store, and checking the names given.
//!
//! A snapshot belongs to store `NAME` when its `store` field (SPEC §10, tag 15) is `NAME`;
//! `cairn run` writes it. Snapshots written by `cairn backup` belong to no store.

use std::collections::BTreeMap;

use repo_format::{Snapshot, SnapshotId};

use super::config::Config;
use crate::{Error, ErrorKind, Result};

/// How many snapshots each store has, by name (stores of cairn.toml without snapshots are
/// absent), and how many snapshots belong to no store.
pub fn count_by_store(snapshots: &[(SnapshotId, Snapshot)]) -> (BTreeMap<String, usize>, usize) {
    let mut by = BTreeMap::new();
    let mut none = 0;
    for (_, s) in snapshots {
        match &s.store {
            Some(name) => *by.entry(name.clone()).or_insert(0) += 1,
            None => none += 1,
        }
    }
    (by, none)
}

/// Checks the names of `--store` options: each must be a store of `config` or have snapshots
/// (a store removed from cairn.toml can still be named while its snapshots remain). Returns
/// them without duplicates, in the order given. The error lists the known stores.
pub fn check_names(
    names: &[String],
    config: Option<&Config>,
    snapshots: &[(SnapshotId, Snapshot)],
) -> Result<Vec<String>> {
    let (by, _) = count_by_store(snapshots);
    let configured = |n: &str| config.is_some_and(|c| c.store(n).is_some());
    let mut out: Vec<String> = Vec::new();
    let mut unknown = Vec::new();
    for n in names {
        if !configured(n) && !by.contains_key(n) {
            unknown.push(n.as_str());
        } else if !out.contains(n) {
            out.push(n.clone());
        }
    }
    if unknown.is_empty() {
        return Ok(out);
    }
    let mut known: Vec<String> = config
        .map(|c| c.stores.iter().map(|s| s.name.clone()).collect())
        .unwrap_or_default();
    for n in by.keys() {
        if !known.contains(n) {
            known.push(n.clone());
        }
    }
    let where_ = config.map_or(String::new(), |c| {
        format!("{} has no such store and ", c.file.display())
    });
    let known = if known.is_empty() {
        "there are none yet".to_owned()
    } else {
        format!("known stores: {}", known.join(", "))
    };
    Err(Error::new(
        ErrorKind::NotFound,
        format!(
            "no store named {}: {where_}no snapshot belongs to it ({known})",
            unknown.join(", ")
        ),
    ))
}

/// Whether the snapshot belongs to one of `names`.
pub fn belongs(snapshot: &Snapshot, names: &[String]) -> bool {
    snapshot
        .store
        .as_ref()
        .is_some_and(|s| names.iter().any(|n| n == s))
}
