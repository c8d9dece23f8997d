//! Restore and dump: snapshot trees back into files, every blob verified before it is written.
//!
//! ```text
//! walk the tree (subtrees in parallel, see `walk`): mkdir directories, create symlinks,
//!     collect file jobs in the snapshot's order
//! small files (<= 4 MiB, <= 16 blobs): pack by pack, see `small`
//! other files in parallel (rayon):
//!     create, set_len(size)
//!     for each batch of blob ids (a direct list, or one content list):
//!         look up locations in one batched cache read
//!         split into windows of <= 16 MiB of plaintext; windows in parallel:
//!             plan: the window's blobs grouped by pack, neighbours merged -> few ranged reads
//!             reads in parallel: read, open (AEAD + keyed-hash check)
//!             write_at(offset) each blob, all-zero blocks left as holes
//!     through the file's descriptor: --verify reads it back, then chown / chmod / mtime
//! hard links: later names of one (device, inode) linked to the first, see `hardlinks`
//! directories' metadata last, deepest first (writing into a directory changes its mtime)
//! ```
//!
//! A blob that fails verification fails only the files that need it: they are reported by
//! path, removed, and the rest of the restore goes on. All-zero blocks are skipped (see
//! `sparse`), so sparse files stay sparse: a large file is sized first, a small one by its last
//! piece when that piece's end is a hole.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use repo_format::{BlobId, Content, Node, NodeKind, Snapshot};

use crate::error::{Error, ErrorKind, Result};

mod hardlinks;
mod metadata;
mod read;
mod small;
mod sparse;
mod walk;

use crate::progress::Progress;
use crate::repository::Repository;
use metadata::{apply_file_metadata, apply_metadata};
use read::{load_window, locate_all, windows};

/// Options for [`restore`].
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// The directory to restore into (created if missing).
    pub target: PathBuf,
    /// Restore only these snapshot paths (and what is below them); empty means everything.
    pub includes: Vec<PathBuf>,
    /// Parallel file writers (default: cores + 2, since reads wait on storage).
    pub threads: Option<usize>,
    /// After writing each file, read it back and check every piece against its blob id.
    pub verify: bool,
}

/// What [`restore`] did.
#[derive(Debug, Default)]
pub struct RestoreSummary {
    /// Files restored completely.
    pub files: u64,
    /// Directories created.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Content bytes written.
    pub bytes: u64,
    /// Files that could not be restored, with the reason (the restore went on).
    pub failed: Vec<(PathBuf, String)>,
    /// Items skipped with a warning (e.g. device nodes).
    pub warnings: Vec<(PathBuf, String)>,
    /// Files read back and found identical to the snapshot (with `verify`).
    pub verified: u64,
}

/// Stack of each restore thread: the tree walk nests a few KiB of frames per directory level
/// (more when a thread waiting for a subtree takes up another), and restored paths nest at most
/// ~2000 deep (`PATH_MAX`) before `mkdir` refuses them.
const STACK_BYTES: usize = 64 << 20;

struct FileJob {
    path: PathBuf,
    node: Node,
}

/// Restores `snapshot` (or the included parts of it) into `opts.target`.
pub fn restore(
    repo: &Repository,
    snapshot: &Snapshot,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreSummary> {
    let includes = walk::parse_includes(&opts.includes)?;
    fs::create_dir_all(&opts.target).map_err(|e| {
        Error::io(
            format!("cannot create the restore target {}", opts.target.display()),
            e,
        )
    })?;
    let threads = opts
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()) + 2);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("cairn-restore-{i}"))
        .stack_size(STACK_BYTES)
        .build()
        .map_err(|e| Error::new(ErrorKind::Io, format!("cannot start restore threads: {e}")))?;
    // Directories and symlinks are made as the tree is walked (subtrees in parallel); files
    // are collected in the snapshot's order.
    let walk::Walked {
        mut files,
        dirs,
        mut summary,
    } = pool.install(|| walk::walk_tree(repo, &snapshot.tree, &opts.target, &[], &includes))?;
    let links = hardlinks::split_links(&mut files);
    let total: u64 = files.iter().map(|f| f.node.size).sum();
    progress.set_total(files.len() as u64, total);

    let failed = Mutex::new(Vec::new());
    let written = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let verified = AtomicU64::new(0);
    let (small, large): (Vec<&FileJob>, Vec<&FileJob>) =
        files.iter().partition(|j| small::is_small(j));
    // Through the descriptor the file was written with, before its mode is set: a file the
    // snapshot makes unreadable (0200, 0000) is still verified when not running as root.
    let verify = |job: &FileJob, file: &fs::File| -> Result<()> {
        if opts.verify {
            verify_file(repo, job, file)?;
            verified.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    };
    let small_outcome = pool.install(|| small::restore_small(repo, &small, &verify, progress));
    pool.install(|| {
        large.par_iter().for_each(|job| {
            progress.file_started(&job.path);
            // restore_file removes what it created when it fails (verification included); a
            // file we could not create is left alone.
            let result = restore_file(repo, job, &verify, progress);
            match result {
                Ok(n) => {
                    written.fetch_add(n, Ordering::Relaxed);
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    let msg = error_chain(&e);
                    progress.warning(&job.path, &msg);
                    failed
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push((job.path.clone(), msg));
                }
            }
            progress.file_done();
        });
    });
    // Every file job is done: hard links to them can be made (before directories' mtimes).
    let linked = {
        let large_failed = failed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        hardlinks::create_links(&links, &[&large_failed, &small_outcome.failed], progress)
    };
    // `dirs` is in post-order (children before their parent): deepest first, as needed.
    for (path, node) in &dirs {
        if let Err(e) = apply_metadata(path, node, false) {
            summary.warnings.push((path.clone(), error_chain(&e)));
        }
    }
    summary.files = done.into_inner() + small_outcome.files + linked.files;
    summary.bytes = written.into_inner() + small_outcome.bytes;
    summary.verified = verified.into_inner();
    // Failures found while walking (damaged subtrees, symlinks) come first; keep them.
    summary.failed.extend(
        failed
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    summary.failed.extend(small_outcome.failed);
    summary.failed.extend(linked.failed);
    summary.failed.sort();
    Ok(summary)
}

/// The error and its causes on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// "cannot create PATH", with what to do when the path is longer than the system allows (the
/// target's path comes on top of the snapshot's).
fn cannot_create(what: &str, path: &Path, e: std::io::Error) -> Error {
    if e.raw_os_error() == Some(libc::ENAMETOOLONG) {
        let msg = format!(
            "cannot create {what} {} ({} bytes): the path or a name in it is longer than the \
             system allows ({} bytes for a path, {} for a name); restore into a shorter --target",
            path.display(),
            path.as_os_str().len(),
            libc::PATH_MAX - 1,
            255
        );
        return Error::io(msg, e);
    }
    Error::io(format!("cannot create {what} {}", path.display()), e)
}

/// The contents of several small files, whole and verified, each file's result on its own. The
/// blobs of the files with direct contents are located and loaded together, so the pack regions
/// and compression groups (SPEC §7) they share are read and opened once, not once per file
/// (small files share groups). A window of blobs that fails to load leaves its files to be read
/// on their own, so a damaged blob's or missing pack's error names only the files it concerns;
/// when the storage itself failed (I/O, network), those files get its error at once (reading
/// each again would only repeat it, each read with its own retries).
/// Files with indirect contents are read on their own.
pub fn load_files(repo: &Repository, nodes: &[&Node]) -> Vec<Result<Vec<u8>>> {
    let mut out: Vec<Option<Result<Vec<u8>>>> = nodes.iter().map(|_| None).collect();
    // (file index, first blob, blob count) of the files loaded together, and their locations.
    let mut spans = Vec::new();
    let mut locs = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        if let NodeKind::File {
            content: Content::Direct(ids),
        } = &node.kind
            && let Ok(found) = locate_all(repo, ids)
        {
            spans.push((i, locs.len(), found.len()));
            locs.extend(found);
        }
    }
    let mut blobs: Vec<Option<Vec<u8>>> = vec![None; locs.len()];
    let mut failed: Vec<(std::ops::Range<usize>, Error)> = Vec::new();
    for w in windows(&locs) {
        match load_window(repo, &locs[w.clone()]) {
            Ok(loaded) => {
                for (k, blob) in w.zip(loaded) {
                    blobs[k] = Some(blob);
                }
            }
            Err(e) => failed.push((w, e)),
        }
    }
    for (i, start, n) in spans {
        let range = start..start + n;
        let storage_error = failed.iter().find(|(w, e)| {
            w.start < range.end && range.start < w.end && e.kind() == ErrorKind::Backend
        });
        if let Some((_, e)) = storage_error {
            out[i] = Some(Err(Error::new(e.kind(), error_chain(e))));
            continue;
        }
        if blobs[range.clone()].iter().any(Option::is_none) {
            continue; // a damaged blob in a window: this file on its own below
        }
        let mut data = Vec::with_capacity(usize::try_from(nodes[i].size).unwrap_or(0));
        for b in blobs[range].iter_mut() {
            if let Some(b) = b.take() {
                data.extend_from_slice(&b);
            }
        }
        out[i] = Some(Ok(data));
    }
    out.into_iter()
        .zip(nodes)
        .map(|(done, node)| {
            done.unwrap_or_else(|| {
                let mut data = Vec::with_capacity(usize::try_from(node.size).unwrap_or(0));
                dump_content(repo, node, &mut data, &crate::progress::NoProgress).map(|_| data)
            })
        })
        .collect()
}

/// The data blob ids of a content, one batch at a time (a direct list, or one content list),
/// so memory stays bounded for huge files.
pub fn for_each_batch(
    repo: &Repository,
    content: &Content,
    mut f: impl FnMut(&[BlobId]) -> Result<()>,
) -> Result<()> {
    match content {
        Content::Direct(ids) => f(ids),
        Content::Indirect(lists) => {
            for list in lists {
                let list = repo.load_content_list(list)?;
                f(&list.ids)?;
            }
            Ok(())
        }
    }
}

/// Checks a restored file, read through `file`, against the snapshot (`--verify`).
type Verify<'a> = dyn Fn(&FileJob, &fs::File) -> Result<()> + Sync + 'a;

fn restore_file(
    repo: &Repository,
    job: &FileJob,
    verify: &Verify,
    progress: &dyn Progress,
) -> Result<u64> {
    let NodeKind::File { content } = &job.node.kind else {
        return Ok(0);
    };
    let path = &job.path;
    let file = create_file(path, job.node.mode).map_err(|e| cannot_create("file", path, e))?;
    let written = write_content(repo, job, content, &file, progress).and_then(|n| {
        verify(job, &file)?;
        apply_file_metadata(&file, path, &job.node)?;
        Ok(n)
    });
    if written.is_err() {
        // Never leave a partly written file that looks restored.
        let _ = fs::remove_file(path);
    }
    written
}

/// Creates a new, empty file at `path` for a file job, replacing what is there (what an earlier
/// restore left, or a live tree's file). What is there is removed, never written through: it
/// may be a hard link of another name in the target (or of a file outside it), or a symlink.
/// `create_new` (`O_EXCL`) then fails, rather than follow or truncate anything, if a name
/// appeared at `path` in between. A directory at `path` is left alone, and the job fails.
/// The file is created with the snapshot's permission bits (`mode`, as the umask lets them
/// through): a private file is never readable by others while it is written.
fn create_file(path: &Path, mode: u32) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    // Readable too: `--verify` reads the file back through this descriptor.
    let create = || {
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode & 0o777)
            .open(path)
    };
    // Into an empty target (the usual restore) the first try succeeds: one system call a file
    // instead of a failed unlink and then the create.
    match create() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        created => return created,
    }
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    create()
}

/// Makes the directory `path` of the snapshot, replacing a non-directory there (a file, or a
/// symlink, even one to a directory: restoring through it would write outside the target).
/// A new directory gets the snapshot's permission bits (`mode`, through the umask) and the
/// owner's, which the restore needs to fill it: a private directory does not let others reach
/// what is restored into it before its mode is set at the end.
fn create_dir(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => fs::remove_file(path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    fs::DirBuilder::new()
        .mode((mode & 0o777) | 0o700)
        .create(path)
}

/// Writes a created file's content.
fn write_content(
    repo: &Repository,
    job: &FileJob,
    content: &Content,
    file: &fs::File,
    progress: &dyn Progress,
) -> Result<u64> {
    let path = &job.path;
    file.set_len(job.node.size)
        .map_err(|e| Error::io(format!("cannot size {}", path.display()), e))?;
    let mut offset = 0u64;
    for_each_batch(repo, content, |ids| {
        let locs = locate_all(repo, ids)?;
        let mut offsets = Vec::with_capacity(locs.len());
        for loc in &locs {
            offsets.push(offset);
            offset += u64::from(loc.entry.raw_len);
        }
        if offset > job.node.size {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "{}: content is longer than the recorded size",
                    path.display()
                ),
            ));
        }
        windows(&locs).par_iter().try_for_each(|w| {
            let blobs = load_window(repo, &locs[w.clone()])?;
            for (k, blob) in blobs.iter().enumerate() {
                // The file was sized when it was created: a tail left as a hole reads as zeros.
                sparse::write_sparse(file, blob, offsets[w.start + k])
                    .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
                progress.bytes_done(blob.len() as u64);
            }
            Ok(())
        })
    })?;
    if offset != job.node.size {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "{}: content is {offset} bytes but the snapshot records {}",
                path.display(),
                job.node.size
            ),
        ));
    }
    Ok(offset)
}

/// Reads a restored file back through `file` (from its start; it was written with positioned
/// writes) and checks it piece by piece: each piece, cut at the lengths of the snapshot's
/// blobs, must hash (keyed) to that blob's id, and nothing may follow the last.
fn verify_file(repo: &Repository, job: &FileJob, file: &fs::File) -> Result<()> {
    use std::io::Read;
    let NodeKind::File { content } = &job.node.kind else {
        return Ok(());
    };
    let path = &job.path;
    let mut file = std::io::BufReader::with_capacity(1 << 20, file);
    let mut buf = Vec::new();
    let mut offset = 0u64;
    for_each_batch(repo, content, |ids| {
        for loc in locate_all(repo, ids)? {
            buf.resize(loc.entry.raw_len as usize, 0);
            file.read_exact(&mut buf).map_err(|e| {
                Error::io(
                    format!(
                        "verify: {} is shorter than the snapshot's {} bytes",
                        path.display(),
                        job.node.size
                    ),
                    e,
                )
            })?;
            if repo.keys().blob_id(&buf) != loc.entry.id {
                return Err(Error::new(
                    ErrorKind::Corrupt,
                    format!(
                        "verify: {} differs from the snapshot in the {} bytes at offset {offset}",
                        path.display(),
                        buf.len()
                    ),
                ));
            }
            offset += buf.len() as u64;
        }
        Ok(())
    })?;
    let mut extra = [0u8; 1];
    match file.read(&mut extra) {
        Ok(0) => Ok(()),
        Ok(_) => Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "verify: {} is longer than the snapshot says",
                path.display()
            ),
        )),
        Err(e) => Err(Error::io(
            format!("verify: cannot read {}", path.display()),
            e,
        )),
    }
}

/// Writes a file's content to `out` in order, verifying every blob; returns the bytes written.
/// Reads run ahead in parallel, a bounded window at a time.
pub fn dump_content(
    repo: &Repository,
    node: &Node,
    out: &mut dyn Write,
    progress: &dyn Progress,
) -> Result<u64> {
    let NodeKind::File { content } = &node.kind else {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "only files can be dumped; use `cairn restore` for directories",
        ));
    };
    // A loader thread reads and opens one window (all cores) while this thread writes the
    // previous one: at most two windows of plaintext are held.
    let mut written = 0u64;
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = crossbeam_channel::bounded::<Vec<Vec<u8>>>(0);
        let loader = scope.spawn(move || {
            for_each_batch(repo, content, |ids| {
                let locs = locate_all(repo, ids)?;
                for w in windows(&locs) {
                    let blobs = load_window(repo, &locs[w])?;
                    if tx.send(blobs).is_err() {
                        // The writer stopped; its error is the one reported. Stop reading.
                        return Err(Error::new(ErrorKind::Io, "the output was closed"));
                    }
                }
                Ok(())
            })
        });
        let mut write_all = || -> Result<()> {
            for blobs in &rx {
                for blob in &blobs {
                    out.write_all(blob)
                        .map_err(|e| Error::io("cannot write the output", e))?;
                    written += blob.len() as u64;
                    progress.bytes_done(blob.len() as u64);
                }
            }
            Ok(())
        };
        let wrote = write_all();
        // Hang up first, so a loader blocked on sending sees the end and stops.
        drop(rx);
        let loaded = loader.join().unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::Io,
                "the restore reader thread panicked",
            ))
        });
        wrote.and(loaded)
    })?;
    if written != node.size {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "content is {written} bytes but the snapshot records {}",
                node.size
            ),
        ));
    }
    Ok(written)
}

/// Finds the node at `path` (components separated by `/`) below the tree `root`.
pub fn find_node(repo: &Repository, root: &BlobId, path: &[u8]) -> Result<Node> {
    let comps: Vec<&[u8]> = path
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect();
    let shown = String::from_utf8_lossy(path).into_owned();
    if comps.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "give a path inside the snapshot, as `cairn ls` shows it",
        ));
    }
    let mut tree = repo.load_tree(root)?;
    for (i, comp) in comps.iter().enumerate() {
        let node = tree.find(comp).cloned().ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("{shown} is not in the snapshot (see `cairn ls`)"),
            )
        })?;
        if i + 1 == comps.len() {
            return Ok(node);
        }
        match &node.kind {
            NodeKind::Dir { subtree } => tree = repo.load_tree(subtree)?,
            _ => {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("{shown}: a parent of it is not a directory"),
                ));
            }
        }
    }
    Err(Error::new(
        ErrorKind::NotFound,
        format!("{shown} is not in the snapshot"),
    ))
}
