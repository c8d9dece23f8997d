//! `cairn restore --store NAME` and `cairn restore --all`: a store's snapshot back where it
//! belongs.
//!
//! | store | how | destination |
//! |---|---|---|
//! | command or redis, with `restore_command` | the dump (the file `file_name` of the snapshot) is streamed into the command's standard input, verified blob by blob on the way; nothing touches the disk | the command's own (a database) |
//! | command or redis, without one | the file is restored with its metadata | `--target DIR` (required) |
//! | directory | every backed-up path | `--target DIR` (as `cairn restore` does), or its original location with `--in-place` (required explicitly: it overwrites live files) |
//!
//! The snapshot is the store's newest *complete* one (a failed backup is never restored by
//! default), or one given by id that must belong to the store and be complete.
//!
//! The restore command runs without a shell, with the store's `env` on top of cairn's
//! environment; its standard error is cairn's, and its standard output goes to cairn's standard
//! error too, so `--json` output stays parseable. If it exits unsuccessfully the restore fails
//! with its exit status. If the dump cannot be read completely (damaged data) the command is
//! killed before it sees the end of its input, so it cannot take a truncated dump for a whole
//! one — but it may have applied part of it.
//!
//! `restore --all` ([`restore_all`]) checks every store's destination first (nothing is
//! restored when one is impossible), then restores the stores in
//! [`Config::restore_order`], stopping at the first failure unless `keep_going`. With a target
//! directory, each store's files go to `TARGET/STORE/`.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use repo_format::{Node, Snapshot, SnapshotId, SnapshotStatus};

use super::command::CommandLine;
use super::config::{Config, Store, StoreKind};
use super::status::SnapshotRef;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::restorer::{RestoreOptions, RestoreSummary, find_node, restore};
use crate::{Error, ErrorKind, Result};

mod pipe;
use pipe::pipe;

/// Options for [`restore_store`].
#[derive(Clone, Debug, Default)]
pub struct StoreRestoreOptions {
    /// The snapshot: an id, a unique id prefix, or `latest` (the default): the store's newest
    /// complete snapshot.
    pub snapshot: Option<String>,
    /// The directory to restore into, for directory stores and dump stores without a
    /// `restore_command`.
    pub target: Option<PathBuf>,
    /// Restore a directory store's paths to where they were backed up from.
    pub in_place: bool,
    /// Read restored files back and check them (directory stores and dump files; a piped dump
    /// is verified blob by blob as it is read).
    pub verify: bool,
}

/// Options for [`restore_all`].
#[derive(Clone, Debug, Default)]
pub struct RestoreAllOptions {
    /// Where directory stores and dump stores without a `restore_command` go: `TARGET/STORE/`.
    pub target: Option<PathBuf>,
    /// Restore directory stores to their original locations (then `target` is only for dump
    /// files).
    pub in_place: bool,
    /// Go on with the next store after one fails.
    pub keep_going: bool,
    /// As [`StoreRestoreOptions::verify`].
    pub verify: bool,
}

/// What was restored, and where.
#[derive(Debug)]
pub enum Restored {
    /// The dump was streamed into the restore command, which succeeded.
    Piped {
        /// The command.
        command: CommandLine,
        /// Dump bytes it read.
        bytes: u64,
    },
    /// The dump was written as a file.
    File {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
    /// A directory store's paths were restored.
    Directory {
        /// Where each top-level path went.
        paths: Vec<PathBuf>,
        /// What the restore did (files that failed are listed there).
        summary: RestoreSummary,
    },
}

/// One store restored.
#[derive(Debug)]
pub struct StoreRestore {
    /// The store's name.
    pub store: String,
    /// The snapshot restored.
    pub snapshot: SnapshotRef,
    /// What was done.
    pub restored: Restored,
}

impl StoreRestore {
    /// Whether everything was restored (no file of a directory store failed).
    pub fn is_complete(&self) -> bool {
        match &self.restored {
            Restored::Directory { summary, .. } => summary.failed.is_empty(),
            _ => true,
        }
    }
}

/// How one store of [`restore_all`] ended.
#[derive(Debug)]
pub struct StoreOutcome {
    /// The store's name.
    pub store: String,
    /// What was restored, or why not.
    pub result: Result<StoreRestore>,
}

impl StoreOutcome {
    /// Whether the store was restored completely.
    pub fn is_ok(&self) -> bool {
        self.result.as_ref().is_ok_and(StoreRestore::is_complete)
    }
}

/// What [`restore_all`] did.
#[derive(Debug, Default)]
pub struct RestoreAllReport {
    /// The stores attempted, in order.
    pub outcomes: Vec<StoreOutcome>,
    /// The stores not attempted because an earlier one failed (without `keep_going`).
    pub skipped: Vec<String>,
}

impl RestoreAllReport {
    /// Whether every store was restored completely.
    pub fn is_ok(&self) -> bool {
        self.skipped.is_empty() && self.outcomes.iter().all(StoreOutcome::is_ok)
    }
}

/// Where a store's snapshot goes, decided before anything is read.
enum Destination<'a> {
    Command(&'a CommandLine),
    File(PathBuf),
    Directory(PathBuf),
    InPlace,
}

fn usage(message: String) -> Error {
    Error::new(ErrorKind::InvalidInput, message)
}

/// Checks the options against the store's kind.
fn destination<'a>(store: &'a Store, opts: &StoreRestoreOptions) -> Result<Destination<'a>> {
    let name = &store.name;
    let restore_command = match &store.kind {
        StoreKind::Command(c) => Some(c.restore_command.as_ref()),
        StoreKind::Redis(r) => Some(r.restore_command.as_ref()),
        StoreKind::Directory(_) => None,
    };
    match (restore_command, &opts.target, opts.in_place) {
        (Some(_), _, true) => Err(usage(format!(
            "store {name} is a {} store: --in-place is for directory stores; a dump goes to its \
             restore_command or, without one, to --target DIR",
            store.kind.type_name()
        ))),
        (Some(Some(cmd)), Some(_), false) => Err(usage(format!(
            "store {name} has a restore_command (`{cmd}`), so its dump is piped into it and \
             --target is not used: leave out --target, or write the dump to a file with \
             `cairn dump SNAPSHOT {} > FILE`",
            store.file_name().unwrap_or("FILE")
        ))),
        (Some(Some(cmd)), None, false) => Ok(Destination::Command(cmd)),
        (Some(None), Some(t), false) => Ok(Destination::File(t.clone())),
        (Some(None), None, false) => Err(usage(format!(
            "store {name} has no restore_command: give --target DIR to write its dump {} there \
             (or add restore_command to the store in cairn.toml)",
            store.file_name().unwrap_or("")
        ))),
        (None, Some(_), true) => Err(usage(format!(
            "store {name}: give either --target DIR or --in-place, not both"
        ))),
        (None, Some(t), false) => Ok(Destination::Directory(t.clone())),
        (None, None, true) => Ok(Destination::InPlace),
        (None, None, false) => Err(usage(format!(
            "store {name} is a directory store: give --target DIR to restore its files there, \
             or --in-place to overwrite them where they were backed up from"
        ))),
    }
}

/// Checks that `opts` fit the store's kind (see the module documentation), before anything
/// is read; the error says which options to give.
pub fn check_options(store: &Store, opts: &StoreRestoreOptions) -> Result<()> {
    destination(store, opts).map(|_| ())
}

/// The newest complete snapshot of the store `name` among `snapshots`.
pub fn newest_complete<'s>(
    snapshots: &'s [(SnapshotId, Snapshot)],
    name: &str,
) -> Option<&'s (SnapshotId, Snapshot)> {
    snapshots
        .iter()
        .filter(|(_, s)| s.store.as_deref() == Some(name) && s.status == SnapshotStatus::Complete)
        .max_by_key(|(id, s)| (s.time_ns, *id))
}

/// The snapshot `spec` names for `store` (see [`StoreRestoreOptions::snapshot`]); `listing` is
/// the repository's snapshots when the caller has them already.
pub fn select_snapshot(
    repo: &Repository,
    store: &str,
    spec: Option<&str>,
    listing: Option<&[(SnapshotId, Snapshot)]>,
) -> Result<(SnapshotId, Snapshot)> {
    let Some(spec) = spec.filter(|s| *s != "latest") else {
        let owned;
        let all = if let Some(l) = listing {
            l
        } else {
            owned = repo.list_snapshots()?;
            &owned
        };
        return newest_complete(all, store).cloned().ok_or_else(|| {
            let failed = all
                .iter()
                .filter(|(_, s)| s.store.as_deref() == Some(store))
                .count();
            let why = if failed > 0 {
                format!("its {failed} snapshots are all failed backups")
            } else {
                format!("it has no snapshot: run `cairn run --store {store}` first")
            };
            Error::new(
                ErrorKind::NotFound,
                format!(
                    "store {store} has no complete snapshot in {}: {why}",
                    repo.location()
                ),
            )
        });
    };
    let (id, snap) = repo.resolve_snapshot(spec)?;
    let short = id.0.short();
    if snap.store.as_deref() != Some(store) {
        let whose = snap
            .store
            .as_deref()
            .map_or("no store".to_owned(), |s| format!("store {s}"));
        return Err(usage(format!(
            "snapshot {short} belongs to {whose}, not to store {store}: give one of store \
             {store}'s snapshots, or `latest`"
        )));
    }
    if snap.status == SnapshotStatus::Failed {
        let why = snap.failure.as_deref().unwrap_or("no failure description");
        return Err(usage(format!(
            "snapshot {short} of store {store} is a failed backup ({why}): what it holds is \
             incomplete; give a complete snapshot, or `latest`"
        )));
    }
    Ok((id, snap))
}

/// Restores one store (see the module documentation). The options are checked against the
/// store's kind before anything is read.
pub fn restore_store(
    repo: &Repository,
    store: &Store,
    opts: &StoreRestoreOptions,
    progress: &dyn Progress,
) -> Result<StoreRestore> {
    restore_one(repo, store, opts, None, progress)
}

fn restore_one(
    repo: &Repository,
    store: &Store,
    opts: &StoreRestoreOptions,
    listing: Option<&[(SnapshotId, Snapshot)]>,
    progress: &dyn Progress,
) -> Result<StoreRestore> {
    let dest = destination(store, opts)?;
    let (id, snap) = select_snapshot(repo, &store.name, opts.snapshot.as_deref(), listing)?;
    let restored = match dest {
        Destination::Command(cmd) => {
            let node = dump_node(repo, store, &id, &snap)?;
            let bytes = pipe(repo, store, cmd, &node, progress)?;
            Restored::Piped {
                command: cmd.clone(),
                bytes,
            }
        }
        Destination::File(dir) => {
            let node = dump_node(repo, store, &id, &snap)?;
            let name = String::from_utf8_lossy(&node.name).into_owned();
            let summary = restore_into(
                repo,
                &snap,
                &dir,
                vec![PathBuf::from(&name)],
                opts,
                progress,
            )?;
            if let Some((_, why)) = summary.failed.first() {
                return Err(Error::new(
                    ErrorKind::Corrupt,
                    format!(
                        "cannot restore {name} of snapshot {} to {}: {why}",
                        id.0.short(),
                        dir.display()
                    ),
                ));
            }
            Restored::File {
                path: dir.join(&name),
                bytes: summary.bytes,
            }
        }
        Destination::Directory(dir) => {
            let summary = restore_into(repo, &snap, &dir, Vec::new(), opts, progress)?;
            let paths = top_names(&snap)?.iter().map(|n| dir.join(n)).collect();
            Restored::Directory { paths, summary }
        }
        Destination::InPlace => in_place(repo, &id, &snap, opts, progress)?,
    };
    Ok(StoreRestore {
        store: store.name.clone(),
        snapshot: SnapshotRef::of(id, &snap),
        restored,
    })
}

/// The dump file of a command or redis store's snapshot.
fn dump_node(repo: &Repository, store: &Store, id: &SnapshotId, snap: &Snapshot) -> Result<Node> {
    let name = store.file_name().unwrap_or_default();
    find_node(repo, &snap.tree, name.as_bytes()).map_err(|e| {
        Error::with_source(
            e.kind(),
            format!(
                "snapshot {} of store {} has no file {name:?} (the store's file_name; was it \
                 changed since?): see `cairn ls {}`",
                id.0.short(),
                store.name,
                id.0.to_hex()
            ),
            e,
        )
    })
}

fn restore_into(
    repo: &Repository,
    snap: &Snapshot,
    target: &Path,
    includes: Vec<PathBuf>,
    opts: &StoreRestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreSummary> {
    let ro = RestoreOptions {
        target: target.to_path_buf(),
        includes,
        threads: None,
        verify: opts.verify,
    };
    restore(repo, snap, &ro, progress)
}

/// The last component of each of the snapshot's paths: the names of its root tree's nodes.
fn top_names(snap: &Snapshot) -> Result<Vec<PathBuf>> {
    snap.paths
        .iter()
        .map(|p| {
            Path::new(std::ffi::OsStr::from_bytes(p))
                .file_name()
                .map(PathBuf::from)
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidInput,
                        format!(
                            "the snapshot's path {} has no last component to restore",
                            String::from_utf8_lossy(p)
                        ),
                    )
                })
        })
        .collect()
}

/// Restores each of the snapshot's paths into its parent directory, so it lands where it was.
fn in_place(
    repo: &Repository,
    id: &SnapshotId,
    snap: &Snapshot,
    opts: &StoreRestoreOptions,
    progress: &dyn Progress,
) -> Result<Restored> {
    if snap.paths.is_empty() {
        return Err(usage(format!(
            "snapshot {} records no paths, so it has no original location: use --target DIR",
            id.0.short()
        )));
    }
    let mut total = RestoreSummary::default();
    let mut paths = Vec::new();
    for (raw, name) in snap.paths.iter().zip(top_names(snap)?) {
        let path = PathBuf::from(std::ffi::OsStr::from_bytes(raw));
        let parent = path.parent().filter(|p| p.is_absolute()).ok_or_else(|| {
            usage(format!(
                "the snapshot's path {} is not absolute, so it has no original location: use \
                 --target DIR",
                path.display()
            ))
        })?;
        let ro = RestoreOptions {
            target: parent.to_path_buf(),
            includes: vec![name],
            threads: None,
            verify: opts.verify,
        };
        let s = restore(repo, snap, &ro, progress)?;
        total.files += s.files;
        total.dirs += s.dirs;
        total.symlinks += s.symlinks;
        total.bytes += s.bytes;
        total.verified += s.verified;
        total.failed.extend(s.failed);
        total.warnings.extend(s.warnings);
        paths.push(path);
    }
    Ok(Restored::Directory {
        paths,
        summary: total,
    })
}

/// The per-store options of `restore --all`, checked for every store before any is restored.
pub fn plan_all<'c>(
    config: &'c Config,
    opts: &RestoreAllOptions,
) -> Result<Vec<(&'c Store, StoreRestoreOptions)>> {
    let mut plan = Vec::new();
    let mut problems = Vec::new();
    for store in config.restore_order() {
        let directory = matches!(store.kind, StoreKind::Directory(_));
        let needs_target = match &store.kind {
            StoreKind::Command(c) => c.restore_command.is_none(),
            StoreKind::Redis(r) => r.restore_command.is_none(),
            StoreKind::Directory(_) => !opts.in_place,
        };
        let o = StoreRestoreOptions {
            snapshot: None,
            target: opts
                .target
                .as_ref()
                .filter(|_| needs_target)
                .map(|t| t.join(&store.name)),
            in_place: directory && opts.in_place,
            verify: opts.verify,
        };
        match destination(store, &o) {
            Ok(_) => plan.push((store, o)),
            Err(e) => problems.push(e.message().to_owned()),
        }
    }
    if !problems.is_empty() {
        return Err(usage(format!(
            "nothing was restored: {} (with --all, --target DIR receives each such store in \
             DIR/STORE/)",
            problems.join("; ")
        )));
    }
    Ok(plan)
}

/// Restores every store in disaster-recovery order (see the module documentation); `on_done`
/// is called after each store, as it happens. `Err` only when the plan is impossible or the
/// snapshots cannot be listed; each store's own failure is in the report.
pub fn restore_all(
    repo: &Repository,
    config: &Config,
    opts: &RestoreAllOptions,
    progress: &dyn Progress,
    on_done: &mut dyn FnMut(&StoreOutcome),
) -> Result<RestoreAllReport> {
    let plan = plan_all(config, opts)?;
    let listing = repo.list_snapshots()?;
    let mut report = RestoreAllReport::default();
    let mut stop = false;
    for (store, o) in plan {
        if stop {
            report.skipped.push(store.name.clone());
            continue;
        }
        let outcome = StoreOutcome {
            store: store.name.clone(),
            result: restore_one(repo, store, &o, Some(&listing), progress),
        };
        on_done(&outcome);
        stop = !outcome.is_ok() && !opts.keep_going;
        report.outcomes.push(outcome);
    }
    Ok(report)
}
