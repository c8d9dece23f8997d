//! `cairn run`: back up every store of a [`Config`] (or the named ones), each as one snapshot.
//!
//! For each store, in file order:
//!
//! 1. the `before` hook, if any; if it fails the store fails without a backup;
//! 2. the backup, as one snapshot with `store` = the store's name (SPEC §10, tag 15), tagged
//!    with that name and the store's `tags`, host = this machine:
//!    - `command`: its standard output streamed straight into the repository (no temporary
//!      file) as `file_name`, with the `stream` chunker; if the command fails midway (a
//!      non-zero exit, or killed), a *failed* snapshot holds what it wrote, with the exit
//!      status and the last lines of its standard error as `failure`, so the data written is
//!      referenced and retention does not count it;
//!    - `redis`: `BGSAVE`, wait (see `stores/redis.rs`), then the RDB file as `file_name`;
//!    - `directory`: its paths with its `exclude` patterns, with the `file` chunker;
//! 3. `after` when the backup succeeded, `on_failure` when anything failed (see
//!    `stores/hooks.rs` for their variables). A failing `after` hook is a warning: the backup
//!    itself is good.
//!
//! A failing store never stops the others; [`RunReport`] says what happened to each.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use repo_format::{SnapshotId, SnapshotStatus};

use super::config::{Config, Store, StoreKind};
use super::hooks::{HookContext, run_hook, store_env};
use super::redis::bgsave;
use crate::archiver::{BackupOptions, BackupResult, Source, backup};
use crate::error::{Error, ErrorKind, Result};
use crate::progress::{NoProgress, Progress};
use crate::repository::Repository;
use crate::restorer::error_chain;

/// How a store's run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RunStatus {
    /// Backed up completely.
    Ok,
    /// Backed up, but some items were left out or a hook after it failed.
    Warnings,
    /// The backup failed (its `before` hook, its dump command, the repository, …).
    Failed,
}

impl RunStatus {
    /// `ok`, `warnings` or `failed` (tables, JSON, `CAIRN_STATUS`).
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::Warnings => "warnings",
            RunStatus::Failed => "failed",
        }
    }
}

/// What happened to one store.
#[derive(Clone, Debug)]
pub struct StoreRun {
    /// The store's name.
    pub store: String,
    /// How it ended.
    pub status: RunStatus,
    /// The snapshot written: a complete one, or a failed one holding what a failed dump
    /// command wrote; `None` when the backup did not get that far.
    pub snapshot: Option<SnapshotId>,
    /// Wall time of the whole store: hooks, `BGSAVE` and backup.
    pub duration: Duration,
    /// Bytes read (the dump's size, or the files read).
    pub bytes_read: u64,
    /// New data added to the repository, before compression.
    pub bytes_added: u64,
    /// What that new data takes in the repository (compressed, encrypted).
    pub bytes_stored: u64,
    /// Files in the snapshot (1 for a dump).
    pub files: u64,
    /// Entries left out by exclude patterns.
    pub excluded: u64,
    /// Things that did not fail the store (unreadable files, a failed `after` hook).
    pub warnings: Vec<String>,
    /// What went wrong, when it failed.
    pub error: Option<String>,
}

impl StoreRun {
    fn new(store: &str) -> StoreRun {
        StoreRun {
            store: store.to_owned(),
            status: RunStatus::Failed,
            snapshot: None,
            duration: Duration::ZERO,
            bytes_read: 0,
            bytes_added: 0,
            bytes_stored: 0,
            files: 0,
            excluded: 0,
            warnings: Vec::new(),
            error: None,
        }
    }
}

/// What [`run_stores`] did, one entry per store run, in file order.
#[derive(Clone, Debug, Default)]
pub struct RunReport {
    /// Each store's result.
    pub stores: Vec<StoreRun>,
}

impl RunReport {
    /// Whether any store failed.
    pub fn any_failed(&self) -> bool {
        self.stores.iter().any(|s| s.status == RunStatus::Failed)
    }

    /// Whether any store ended with warnings.
    pub fn any_warnings(&self) -> bool {
        self.stores.iter().any(|s| s.status == RunStatus::Warnings)
    }

    /// The complete snapshots written (what `cairn run --copy` copies), in run order.
    pub fn complete_snapshots(&self) -> Vec<SnapshotId> {
        self.stores
            .iter()
            .filter(|s| s.status != RunStatus::Failed)
            .filter_map(|s| s.snapshot)
            .collect()
    }
}

/// Hears about each store of a run.
pub trait RunProgress: Sync {
    /// A store's run begins; the returned [`Progress`] receives its backup's events.
    fn store_started(&self, store: &Store) -> Box<dyn Progress + '_>;
    /// A store's run is over.
    fn store_finished(&self, _run: &StoreRun) {}
}

impl RunProgress for NoProgress {
    fn store_started(&self, _store: &Store) -> Box<dyn Progress + '_> {
        Box::new(NoProgress)
    }
}

/// The stores named by `names` (all of them when empty), in file order; an unknown name is an
/// [`ErrorKind::NotFound`] error listing the known ones.
pub fn select<'c>(config: &'c Config, names: &[String]) -> Result<Vec<&'c Store>> {
    if let Some(unknown) = names.iter().find(|n| config.store(n).is_none()) {
        let known: Vec<&str> = config.stores.iter().map(|s| s.name.as_str()).collect();
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "{} has no store named {unknown:?}; its stores are: {}",
                config.file.display(),
                known.join(", ")
            ),
        ));
    }
    Ok(config
        .stores
        .iter()
        .filter(|s| names.is_empty() || names.contains(&s.name))
        .collect())
}

/// Backs up the stores named by `names` (every store when empty) into `repo`; see the module
/// documentation. Fails only when a name is unknown (before anything runs).
pub fn run_stores(
    config: &Config,
    repo: &Repository,
    names: &[String],
    progress: &dyn RunProgress,
) -> Result<RunReport> {
    let mut report = RunReport::default();
    for store in select(config, names)? {
        let run = {
            let p = progress.store_started(store);
            run_store(repo, store, &*p)
        };
        progress.store_finished(&run);
        report.stores.push(run);
    }
    Ok(report)
}

/// One store: hooks and backup.
fn run_store(repo: &Repository, store: &Store, progress: &dyn Progress) -> StoreRun {
    let started = Instant::now();
    let mut run = StoreRun::new(&store.name);
    let before = store.hooks.before.as_ref().map(|h| {
        let cx = HookContext {
            status: "running",
            snapshot: None,
            error: None,
        };
        run_hook("before", h, store, cx, progress)
    });
    match before {
        Some(Err(e)) => {
            run.error = Some(format!("{}; the backup was not attempted", error_chain(&e)));
        }
        _ => match backup_store(repo, store, progress) {
            Ok(r) => record(&mut run, &r),
            Err(e) => run.error = Some(error_chain(&e)),
        },
    }
    if run.status == RunStatus::Failed {
        if let Some(h) = &store.hooks.on_failure {
            let cx = HookContext {
                status: "failed",
                snapshot: run.snapshot,
                error: run.error.as_deref(),
            };
            if let Err(e) = run_hook("on_failure", h, store, cx, progress) {
                let also = format!("; then {}", error_chain(&e));
                run.error.get_or_insert_with(String::new).push_str(&also);
            }
        }
    } else if let Some(h) = &store.hooks.after {
        let cx = HookContext {
            status: run.status.as_str(),
            snapshot: run.snapshot,
            error: None,
        };
        if let Err(e) = run_hook("after", h, store, cx, progress) {
            run.warnings.push(error_chain(&e));
            run.status = RunStatus::Warnings;
        }
    }
    run.duration = started.elapsed();
    run
}

/// Fills `run` from a backup's result.
fn record(run: &mut StoreRun, r: &BackupResult) {
    let s = r.snapshot.summary.unwrap_or_default();
    run.snapshot = Some(r.id);
    run.bytes_read = s.bytes_read;
    run.bytes_added = s.data_added_raw;
    run.bytes_stored = s.data_added_stored;
    run.files = s.total_files;
    run.excluded = r.excluded;
    run.warnings = r
        .warnings
        .iter()
        .map(|w| format!("{}: {}", w.path.display(), w.message))
        .collect();
    run.status = if r.snapshot.status == SnapshotStatus::Failed {
        run.error = Some(
            r.snapshot
                .failure
                .clone()
                .unwrap_or_else(|| "the backup failed".to_owned()),
        );
        RunStatus::Failed
    } else if run.warnings.is_empty() {
        RunStatus::Ok
    } else {
        RunStatus::Warnings
    };
}

/// The backup of one store (after its `before` hook).
fn backup_store(repo: &Repository, store: &Store, progress: &dyn Progress) -> Result<BackupResult> {
    let env = store_env(store);
    let source = match &store.kind {
        StoreKind::Command(c) => Source::Command {
            name: c.file_name.clone(),
            argv: c.command.argv().iter().map(OsString::from).collect(),
            env: env
                .iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v)))
                .collect(),
        },
        StoreKind::Redis(r) => {
            bgsave(r, &env, progress)?;
            let file = std::fs::File::open(&r.rdb_path).map_err(|e| {
                Error::io(
                    format!("cannot open the RDB file {}", r.rdb_path.display()),
                    e,
                )
            })?;
            Source::Stream {
                name: r.file_name.clone(),
                reader: Box::new(file),
            }
        }
        StoreKind::Directory(d) => Source::Paths(d.paths.clone()),
    };
    let mut opts = BackupOptions::new(source);
    if let StoreKind::Directory(d) = &store.kind {
        opts.excludes = d.exclude.clone();
    }
    opts.tags = std::iter::once(store.name.clone())
        .chain(store.tags.iter().cloned())
        .collect();
    opts.store = Some(store.name.clone());
    opts.keep_failed = true;
    opts.chunker_profile = Some(store.chunker_profile_in(repo.config()).to_owned());
    backup(repo, opts, progress)
}
