//! `cairn protect` / `cairn unprotect`: sets or clears a snapshot's protected flag (SPEC §10,
//! tag 13, bit 0). A retention policy always keeps a protected snapshot, and `forget` refuses to
//! remove one by id.
//!
//! Snapshots are immutable objects named by the hash of their bytes, so changing the flag writes
//! a new snapshot (every other field unchanged) and then deletes the old one. Write first, delete
//! second: a crash in between leaves both (a duplicate `forget` can remove), never neither.

use repo_format::SnapshotId;

use crate::Result;
use crate::backend::FileType;
use crate::error::Error;
use crate::repository::Repository;

/// What happened to one named snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtectChange {
    /// The snapshot as it was named.
    pub old: SnapshotId,
    /// The snapshot written in its place; `None` when it already had the requested state and
    /// was left alone.
    pub new: Option<SnapshotId>,
}

/// Sets (`protected`) or clears the protected flag of the snapshots named by `specs` (ids, unique
/// id prefixes, or `latest`, see [`Repository::resolve_snapshot`]). Every spec is resolved before
/// anything changes; a snapshot named twice is changed once. Returns one entry per distinct
/// snapshot, in the order they were named.
pub fn set_protected(
    repo: &Repository,
    specs: &[String],
    protected: bool,
) -> Result<Vec<ProtectChange>> {
    if specs.is_empty() {
        return Err(Error::new(
            crate::ErrorKind::InvalidInput,
            "no snapshot given: name snapshots by id, unique id prefix, or `latest`",
        ));
    }
    let mut resolved = Vec::with_capacity(specs.len());
    for spec in specs {
        let (id, snapshot) = repo.resolve_snapshot(spec)?;
        if !resolved.iter().any(|(i, _)| *i == id) {
            resolved.push((id, snapshot));
        }
    }
    let total = resolved.len();
    let mut changes = Vec::with_capacity(total);
    for (done, (old, mut snapshot)) in resolved.into_iter().enumerate() {
        if snapshot.protected == protected {
            changes.push(ProtectChange { old, new: None });
            continue;
        }
        snapshot.protected = protected;
        let new = repo.save_snapshot(&snapshot).map_err(|e| {
            Error::with_source(
                e.kind(),
                format!(
                    "cannot write the new version of snapshot {} ({done} of {total} handled before it)",
                    old.0.short()
                ),
                e,
            )
        })?;
        if new != old {
            // Replaced on purpose: its absence is no rollback (see `crate::rollback`).
            crate::rollback::forgetting(repo.cache_dir(), &[old]);
            // (Deleting an object that is already gone succeeds.)
            if let Err(e) =
                repo.block_on(repo.backend().delete(FileType::Snapshot, &old.0.to_hex()))
            {
                let next = if protected {
                    format!("remove the old one with `cairn forget {}`", old.0.to_hex())
                } else {
                    format!(
                        "remove the new one with `cairn forget {}`, then run `cairn unprotect {}` again",
                        new.0.to_hex(),
                        old.0.to_hex()
                    )
                };
                return Err(Error::backend(
                    format!(
                        "snapshot {} was written as {} but the old version cannot be removed, \
                         so both exist: {next}",
                        old.0.short(),
                        new.0.short(),
                    ),
                    e,
                ));
            }
        }
        changes.push(ProtectChange {
            old,
            new: Some(new),
        });
    }
    Ok(changes)
}
