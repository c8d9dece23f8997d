//! Backup: directory trees and streams into a snapshot.
//!
//! [`backup`] runs the pipeline of [`saver`] with one producer: the directory [`walk`]er or a
//! stream ([`content`]). When the producer is done, the saver stores the last packs and index
//! file, and only then is the snapshot written (SPEC §12), so a crash at any point leaves no
//! snapshot that names missing data.
//!
//! Before and after writing the snapshot, a backup checks the prune plans (SPEC §18, rules
//! B1-B3, in [`crate::prune::guard`]), so it never relies on a pack a concurrent prune deletes.
//!
//! Directory backups pick a parent snapshot (the newest of the same host and paths) and reuse
//! the contents of files whose size, mtime, ctime and inode are unchanged, and leave out what
//! [`exclude`] patterns match.
//!
//! A [`Source::Command`] that fails midway writes no snapshot, or, with
//! [`BackupOptions::keep_failed`], a failed one (SPEC §10) holding what it wrote.

pub mod bases;
pub mod command;
pub mod content;
mod cut;
pub mod exclude;
pub mod guide;
pub mod saver;
pub mod walk;
mod zstd_trial;

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use repo_format::{
    Chunker, ChunkerProfile, Node, NodeKind, PackId, Snapshot, SnapshotId, SnapshotStatus, Summary,
    Timestamp, Tree,
};

use crate::error::{Error, ErrorKind, Result};
use crate::progress::Progress;
use crate::prune::guard::{PlanGuard, PreCheck};
use crate::prune::repack::copy_packs;
use crate::repository::Repository;
use command::save_command;
use content::{ContentError, save_content};
use exclude::Excludes;
use saver::{BlobSaver, SaverTotals};
use walk::{WalkCounts, Walker};

/// What to back up.
pub enum Source {
    /// Files and directories (made absolute; each becomes a node of the root tree).
    Paths(Vec<PathBuf>),
    /// A byte stream stored as one file named `name` (e.g. `pg_dump` on stdin).
    Stream {
        /// The file name in the snapshot.
        name: String,
        /// Where the bytes come from.
        reader: Box<dyn Read + Send>,
    },
    /// A command whose standard output is stored as one file named `name`; if the command
    /// exits unsuccessfully, the backup fails and writes no snapshot (or, with
    /// [`BackupOptions::keep_failed`], a failed one). Its standard error goes to
    /// [`Progress::command_stderr`], and its last lines into the failure.
    Command {
        /// The file name in the snapshot.
        name: String,
        /// The program and its arguments.
        argv: Vec<OsString>,
        /// Variables set for it, on top of cairn's environment.
        env: Vec<(OsString, OsString)>,
    },
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Paths(p) => f.debug_tuple("Paths").field(p).finish(),
            Source::Stream { name, .. } => f
                .debug_struct("Stream")
                .field("name", name)
                .finish_non_exhaustive(),
            // The environment may hold secrets: only its names are shown.
            Source::Command { name, argv, env } => f
                .debug_struct("Command")
                .field("name", name)
                .field("argv", argv)
                .field("env", &env.iter().map(|(k, _)| k).collect::<Vec<_>>())
                .finish(),
        }
    }
}

/// Options for [`backup`].
#[derive(Debug)]
pub struct BackupOptions {
    /// What to read.
    pub source: Source,
    /// Tags for the snapshot.
    pub tags: Vec<String>,
    /// Host name to record (default: this machine's).
    pub host: Option<String>,
    /// Re-read every file even when the parent says it is unchanged.
    pub force: bool,
    /// Use this parent instead of choosing one.
    pub parent: Option<SnapshotId>,
    /// Snapshot time in Unix nanoseconds (default: now).
    pub time_ns: Option<i64>,
    /// Chunker profile name (default: `file` for paths, `stream` for streams).
    pub chunker_profile: Option<String>,
    /// Compression/encryption threads, and directory-walk threads up to [`MAX_WALK_THREADS`]
    /// (default: the number of cores).
    pub workers: Option<usize>,
    /// Patterns of what to leave out of a [`Source::Paths`] backup ([`exclude`]).
    pub excludes: Vec<String>,
    /// The cairn.toml store this backup is of, recorded in the snapshot (SPEC §10, tag 15).
    pub store: Option<String>,
    /// When a [`Source::Command`] fails, write a failed snapshot (status failed, the failure
    /// described, SPEC §10) holding what it wrote, instead of no snapshot. The backup then
    /// returns that snapshot: check [`BackupResult::snapshot`]'s `status`.
    pub keep_failed: bool,
    /// Called after the check of the prune plans and before the snapshot is written (tests use
    /// it to stage races with prune).
    pub before_snapshot: Option<Hook>,
    /// Skip the prune-plan checks (SPEC §18 rules B1-B3). Only for tests that show what the
    /// checks prevent: a backup without them can lose data to a concurrent prune.
    #[doc(hidden)]
    pub unsafe_skip_plan_check: bool,
}

/// A callback run at a fixed point of an operation.
#[derive(Clone)]
pub struct Hook(pub std::sync::Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

impl BackupOptions {
    /// Options for backing up `source` with every other setting at its default.
    pub fn new(source: Source) -> Self {
        BackupOptions {
            source,
            tags: Vec::new(),
            host: None,
            force: false,
            parent: None,
            time_ns: None,
            chunker_profile: None,
            workers: None,
            excludes: Vec::new(),
            store: None,
            keep_failed: false,
            before_snapshot: None,
            unsafe_skip_plan_check: false,
        }
    }
}

/// One item that could not be backed up as it was (the backup went on).
#[derive(Clone, Debug)]
pub struct Warning {
    /// The file or directory concerned.
    pub path: PathBuf,
    /// What happened.
    pub message: String,
}

/// Stack of each directory-walk thread: a directory level costs a few KiB of frames (more when
/// a thread waiting for a subtree takes up another), and paths nest at most ~2000 deep
/// (`PATH_MAX`).
const WALK_STACK_BYTES: usize = 64 << 20;

/// At most this many directory-walk threads, whatever the cores: the walk is mostly system
/// calls, and each thread reading a large file holds its buffers (~40 MiB) and descriptors.
pub const MAX_WALK_THREADS: usize = 4;

/// What [`backup`] produced.
#[derive(Debug)]
pub struct BackupResult {
    /// The new snapshot's id.
    pub id: SnapshotId,
    /// The snapshot as written (its summary has the figures).
    pub snapshot: Snapshot,
    /// Items that could not be read.
    pub warnings: Vec<Warning>,
    /// Entries left out by exclude patterns.
    pub excluded: u64,
    /// Chunks of a stream cut where its parent was cut (the same cuts, found by hashing the
    /// parent's chunk lengths instead of running FastCDC: `archiver::guide`).
    pub guided_chunks: u64,
}

/// Runs a backup and writes its snapshot.
pub fn backup(
    repo: &Repository,
    opts: BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupResult> {
    let start_ns = now_ns();
    let local_zone = LocalZone::lookup();
    let host = opts.host.clone().unwrap_or_else(crate::host::hostname);
    let is_stream = !matches!(opts.source, Source::Paths(_));
    let profile_name = opts
        .chunker_profile
        .clone()
        .unwrap_or_else(|| if is_stream { "stream" } else { "file" }.to_string());
    let profile = repo
        .config()
        .profile(&profile_name)
        .cloned()
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("the repository has no chunker profile named '{profile_name}'"),
            )
        })?;
    let chunker = Chunker::new(profile.params, repo.keys().chunker_seed())
        .map_err(|e| Error::format(format!("chunker profile '{profile_name}' is invalid"), e))?;
    let workers = opts
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let excludes = Excludes::new(&opts.excludes)?;
    if !excludes.is_empty() && is_stream {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "exclude patterns apply to files and directories, not to a stream: leave them out",
        ));
    }
    let keep_failed = opts.keep_failed;
    let mut failure = None;

    let (paths, parent) = match &opts.source {
        Source::Paths(p) => {
            let paths = normalize_paths(p)?;
            let parent = find_parent(repo, &host, &paths, opts.parent)?;
            (paths, parent)
        }
        Source::Stream { name, .. } | Source::Command { name, .. } => {
            validate_stream_name(name)?;
            (vec![PathBuf::from(name)], None)
        }
    };
    // A parent whose root tree is damaged only costs re-reading everything.
    let mut parent_warning = None;
    let parent_tree = match &parent {
        Some((id, snap)) => match repo.load_tree(&snap.tree) {
            Ok(t) => Some(t),
            Err(e) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::NotFound) => {
                parent_warning = Some(Warning {
                    path: PathBuf::from("/"),
                    message: format!(
                        "parent snapshot {} is unreadable ({}); every file is read again",
                        id.0.short(),
                        crate::restorer::error_chain(&e)
                    ),
                });
                None
            }
            Err(e) => return Err(e),
        },
        None => None,
    };

    let parent_warning_is_some = parent_warning.is_some();
    let mut warnings: Vec<Warning> = parent_warning.into_iter().collect();
    if let Some(w) = warnings.first() {
        progress.warning(&w.path, &w.message);
    }
    let mut counts = WalkCounts::default();
    let guard = if opts.unsafe_skip_plan_check {
        None
    } else {
        Some(PlanGuard::start(repo)?)
    };
    let avoid = guard
        .as_ref()
        .map(|g| g.marked().clone())
        .unwrap_or_default();
    // A stream follows the previous snapshot of the same stream: its new chunks are then
    // compressed against the chunks they replace (SPEC §7 based groups), and where it repeats
    // the parent it is cut where the parent was (`guide`).
    let stream_parent = match &opts.source {
        Source::Stream { name, .. } | Source::Command { name, .. } => {
            bases::parent_stream(repo, &host, name, &profile.params)
        }
        Source::Paths(_) => None,
    };
    let mut guide = stream_parent
        .as_ref()
        .filter(|p| p.same_chunker)
        .map(|p| guide::Guide::new(p.chunks.clone()));
    let (tree, mut totals) = std::thread::scope(|scope| -> Result<_> {
        let saver = BlobSaver::start_avoiding(scope, repo, workers, avoid);
        if let Some(p) = stream_parent {
            saver.follow_parent(bases::ParentStream::new(p.chunks));
        }
        if let (Some((_, snap)), true) = (&parent, parent_warning_is_some) {
            // The parent's root tree is unreadable: never dedup against it.
            saver.distrust(snap.tree);
        }
        let tree = match opts.source {
            Source::Paths(_) => {
                let mut walker = Walker {
                    repo,
                    saver: &saver,
                    chunker: &chunker,
                    force: opts.force,
                    excludes: &excludes,
                    progress,
                    warnings: Vec::new(),
                    counts: WalkCounts::default(),
                    depth: 0,
                };
                // The walk runs on a pool of its own, a thread per core, each entry of a
                // directory a task; deep trees recurse deeply, so the threads get generous
                // stacks. When the progress display shows totals, a scanner beside it counts
                // what is there, so it can show a total and an ETA.
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(workers.clamp(1, MAX_WALK_THREADS))
                    .stack_size(WALK_STACK_BYTES)
                    .thread_name(|i| format!("cairn-walk-{i}"))
                    .build()
                    .map_err(|e| {
                        Error::new(
                            ErrorKind::Io,
                            format!("cannot start the directory walker's threads: {e}"),
                        )
                    })?;
                let cancel = std::sync::atomic::AtomicBool::new(false);
                let result = std::thread::scope(|walk_scope| {
                    if progress.shows_totals() {
                        walk_scope.spawn(|| {
                            let (files, bytes) = walk::scan(&paths, &excludes, &cancel);
                            progress.set_total(files, bytes);
                        });
                    }
                    let walked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        pool.install(|| {
                            let r = walker.save_roots(&paths, parent_tree.as_ref());
                            (r, walker.warnings, walker.counts)
                        })
                    }))
                    .map_err(|_| Error::new(ErrorKind::Io, "the directory walker panicked"));
                    cancel.store(true, std::sync::atomic::Ordering::Relaxed);
                    walked
                })?;
                let (r, w, c) = result;
                warnings.extend(w);
                counts = c;
                r?
            }
            Source::Stream { name, mut reader } => {
                let node = save_stream(
                    repo,
                    &saver,
                    &chunker,
                    guide.as_mut(),
                    &name,
                    &mut *reader,
                    progress,
                    &mut counts,
                )?;
                saver.save_if_new(
                    repo_format::BlobType::Tree,
                    encode_tree(Tree { nodes: vec![node] })?,
                )?
            }
            Source::Command { name, argv, env } => {
                let (node, failed) = save_command(
                    repo,
                    &saver,
                    &chunker,
                    guide.as_mut(),
                    &name,
                    &argv,
                    &env,
                    progress,
                    &mut counts,
                )?;
                if let Some(f) = failed {
                    if !keep_failed {
                        return Err(f.into_error());
                    }
                    failure = Some(f.description());
                }
                saver.save_if_new(
                    repo_format::BlobType::Tree,
                    encode_tree(Tree { nodes: vec![node] })?,
                )?
            }
        };
        let totals = saver.finish()?;
        Ok((tree, totals))
    })?;

    let mut referenced = std::mem::take(&mut totals.referenced);
    let pre = match &guard {
        Some(g) => Some(check_plans(
            repo,
            g,
            &mut referenced,
            &totals,
            &mut warnings,
        )?),
        None => None,
    };

    let end_ns = now_ns();
    let summary = Summary {
        start_ns,
        end_ns,
        files_new: counts.files_new,
        files_changed: counts.files_changed,
        files_unmodified: counts.files_unmodified,
        dirs: counts.dirs,
        bytes_read: counts.bytes_read,
        total_bytes: counts.total_bytes,
        blobs_added: totals.blobs,
        data_added_raw: totals.raw,
        data_added_stored: totals.stored,
        warnings: warnings.len() as u64,
        total_files: counts.total_files,
    };
    let mut tags = opts.tags.clone();
    tags.sort();
    tags.dedup();
    let time_ns = opts.time_ns.unwrap_or(start_ns);
    let snapshot = Snapshot {
        time_ns,
        utc_offset: local_zone.offset_at(time_ns),
        tree,
        paths: paths
            .iter()
            .map(|p| p.as_os_str().as_encoded_bytes().to_vec())
            .collect(),
        hostname: host,
        username: crate::host::username(),
        tags,
        parent: parent.map(|(id, _)| id),
        summary: Some(summary),
        status: if failure.is_some() {
            SnapshotStatus::Failed
        } else {
            SnapshotStatus::Complete
        },
        chunker: Some(ChunkerProfile {
            name: profile.name.clone(),
            params: profile.params,
        }),
        program: format!("cairn {}", env!("CARGO_PKG_VERSION")),
        original: None,
        protected: false,
        failure,
        store: opts.store.clone(),
        copied_from: None,
    };
    if let Some(hook) = &opts.before_snapshot {
        (hook.0)();
    }
    let id = repo.save_snapshot(&snapshot)?;
    if let (Some(g), Some(pre)) = (&guard, &pre) {
        g.post_check(repo, pre, &id, &referenced, &totals.indirect)?;
    }
    Ok(BackupResult {
        id,
        snapshot,
        warnings,
        excluded: counts.excluded,
        guided_chunks: guide.map_or(0, |g| g.guessed()),
    })
}

/// Rule B2 of SPEC §18: until no plan marks a pack the snapshot relies on, copy the blobs of
/// the marked packs into new packs. Returns the last check, which the snapshot must follow
/// within half the grace period.
pub(crate) fn check_plans(
    repo: &Repository,
    guard: &PlanGuard,
    referenced: &mut HashSet<PackId>,
    totals: &SaverTotals,
    warnings: &mut Vec<Warning>,
) -> Result<PreCheck> {
    for _ in 0..3 {
        let pre = guard.pre_check(repo, referenced, &totals.indirect, &totals.own)?;
        if pre.conflicts.is_empty() {
            return Ok(pre);
        }
        let copied = copy_packs(
            repo,
            &pre.conflicts,
            &mut |ids| Ok(vec![true; ids.len()]),
            &crate::progress::NoProgress,
        )?;
        if let Some((pack, why)) = copied.skipped.first() {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "prune marked pack {} which this backup relies on, and copying it failed ({why}); no snapshot was written. Run `cairn check`, then the backup again",
                    pack.0.short()
                ),
            ));
        }
        warnings.push(Warning {
            path: PathBuf::from("/"),
            message: format!(
                "a prune marked {} pack(s) this backup deduplicated against while it ran; their {} blob(s) were stored again",
                pre.conflicts.len(),
                copied.blobs
            ),
        });
        for p in &pre.conflicts {
            referenced.remove(p);
        }
        referenced.extend(copied.new_packs);
    }
    Err(Error::new(
        ErrorKind::Backend,
        "prune keeps marking packs this backup relies on; no snapshot was written. Run the backup again",
    ))
}

fn encode_tree(tree: Tree) -> Result<Vec<u8>> {
    tree.encode()
        .map_err(|e| Error::format("cannot encode a tree", e))
}

/// A file node for a stream: owned by the current user, mode 0644, timestamped now.
fn stream_node(name: &str, content: repo_format::Content, size: u64) -> Node {
    let now = jiff::Timestamp::now();
    let ts = Timestamp {
        sec: now.as_second(),
        nsec: u32::try_from(now.subsec_nanosecond().max(0)).unwrap_or(0),
    };
    Node {
        name: name.as_bytes().to_vec(),
        kind: NodeKind::File { content },
        mode: 0o644,
        uid: crate::host::uid(),
        gid: crate::host::gid(),
        mtime: ts,
        ctime: ts,
        inode: 0,
        device: 0,
        nlink: 1,
        size,
    }
}

#[allow(clippy::too_many_arguments)] // the backup's pieces, passed through
fn save_stream(
    repo: &Repository,
    saver: &BlobSaver<'_>,
    chunker: &Chunker,
    guide: Option<&mut guide::Guide>,
    name: &str,
    reader: &mut dyn Read,
    progress: &dyn Progress,
    counts: &mut WalkCounts,
) -> Result<Node> {
    progress.file_started(Path::new(name));
    let saved = save_content(saver, repo.keys(), chunker, guide, reader, progress).map_err(
        |e| match e {
            ContentError::Read(e) => {
                Error::io(format!("cannot read the input stream for {name}"), e)
            }
            ContentError::Repo(e) => e,
        },
    )?;
    progress.file_done();
    counts.files_new = 1;
    counts.total_files = 1;
    counts.bytes_read = saved.size;
    counts.total_bytes = saved.size;
    Ok(stream_node(name, saved.content, saved.size))
}

fn validate_stream_name(name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "'{name}' cannot be a file name: --stdin-name takes a plain name such as clawdbot.dump"
            ),
        ));
    }
    Ok(())
}

/// Makes paths absolute and lexically clean, and refuses two with the same last component
/// (they would collide in the root tree).
pub fn normalize_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    if paths.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "nothing to back up: name at least one path, or use --stdin",
        ));
    }
    let mut out: Vec<PathBuf> = Vec::with_capacity(paths.len());
    for p in paths {
        let abs = std::path::absolute(p)
            .map_err(|e| Error::io(format!("cannot resolve {}", p.display()), e))?;
        let mut clean = PathBuf::new();
        for c in abs.components() {
            match c {
                Component::ParentDir => {
                    clean.pop();
                }
                Component::CurDir => {}
                other => clean.push(other),
            }
        }
        walk::root_name(&clean)?;
        out.push(clean);
    }
    out.sort();
    out.dedup();
    for pair in out.windows(2) {
        if pair[0].file_name() == pair[1].file_name() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{} and {} have the same name and would collide in the snapshot; back them up separately",
                    pair[0].display(),
                    pair[1].display()
                ),
            ));
        }
    }
    Ok(out)
}

/// The parent: the one asked for, else the newest complete snapshot of this host and paths.
fn find_parent(
    repo: &Repository,
    host: &str,
    paths: &[PathBuf],
    explicit: Option<SnapshotId>,
) -> Result<Option<(SnapshotId, Snapshot)>> {
    if let Some(id) = explicit {
        return Ok(Some((id, repo.load_snapshot(&id)?)));
    }
    let want: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| p.as_os_str().as_encoded_bytes().to_vec())
        .collect();
    Ok(repo.list_snapshots()?.into_iter().rev().find(|(_, s)| {
        s.hostname == host && s.paths == want && s.status == SnapshotStatus::Complete
    }))
}

fn now_ns() -> i64 {
    i64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap_or(i64::MAX)
}

/// The system's time zone, looked up on another thread while the backup runs: jiff learns its
/// name by listing the zoneinfo database, ~12 ms that every backup spent at its end before
/// writing the snapshot.
struct LocalZone {
    find: fn() -> jiff::tz::TimeZone,
    pending: Option<std::thread::JoinHandle<jiff::tz::TimeZone>>,
}

impl LocalZone {
    fn lookup() -> LocalZone {
        LocalZone::find_with(jiff::tz::TimeZone::system)
    }

    fn find_with(find: fn() -> jiff::tz::TimeZone) -> LocalZone {
        let pending = std::thread::Builder::new()
            .name("cairn-tz".into())
            .spawn(find)
            .ok();
        LocalZone { find, pending }
    }

    /// The zone's UTC offset in seconds at `time_ns` (the snapshot's time, so a backup that
    /// runs across a DST change records the offset of its start).
    fn offset_at(self, time_ns: i64) -> i32 {
        let zone = self
            .pending
            .and_then(|lookup| lookup.join().ok())
            .unwrap_or_else(self.find);
        jiff::Timestamp::from_nanosecond(i128::from(time_ns))
            .map_or(0, |ts| zone.to_offset(ts).seconds())
    }
}

#[cfg(test)]
mod tests {
    use super::LocalZone;

    fn berlin() -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").expect("a valid POSIX TZ string")
    }

    #[test]
    fn the_offset_is_the_zones_at_the_snapshot_time() {
        // 2024-01-15 and 2024-07-15, 12:00 UTC.
        let winter = 1_705_320_000_000_000_000;
        let summer = 1_721_044_800_000_000_000;
        assert_eq!(LocalZone::find_with(berlin).offset_at(winter), 3600);
        assert_eq!(LocalZone::find_with(berlin).offset_at(summer), 7200);
        // A lookup that could not run on its thread is made on the spot.
        let inline = LocalZone {
            find: berlin,
            pending: None,
        };
        assert_eq!(inline.offset_at(summer), 7200);
    }
}
