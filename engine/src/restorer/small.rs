//! Small files, restored pack by pack.
//!
//! Restoring many small files one by one costs a pack read per file. Instead, for a slice of
//! small files at a time:
//!
//! ```text
//! one batched index lookup for every blob of every file in the slice
//! create every file (in parallel), keeping it open
//! sort the (file, blob) pieces by (pack, offset); merge neighbours into ranged reads
//! reads in parallel: read once, open each blob (AEAD + keyed hash), write_at into its file;
//!   the piece that ends a file sets its length if its last bytes were left as a hole
//! for every file whose pieces all landed, through its descriptor: --verify reads it back,
//!   metadata; close
//! ```
//!
//! So each region of a pack is fetched once for the whole slice, whatever the files' order,
//! and a file is opened once (a path walk, and no `open`/`close` per piece). A slice's files
//! stay open together: a slice is smaller under a low open-files limit (see [`slice_files`]).
//! A failed read or a damaged blob fails exactly the files that have a piece in it.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;
use std::sync::Mutex;

use rayon::prelude::*;
use repo_format::{Content, GroupCache, NodeKind, same_group};

use super::read::{envelope, plan_reads};
use super::sparse::write_sparse;
use super::{FileJob, Verify, apply_file_metadata, cannot_create, create_file, error_chain};
use crate::error::{Error, Result};
use crate::index::cache::BlobLocation;
use crate::progress::Progress;
use crate::repository::Repository;

/// A file is "small" up to this size and number of blobs (a direct content list).
const SMALL_FILE_BYTES: u64 = 4 << 20;
const SMALL_FILE_BLOBS: usize = 16;

/// Files planned together: bounds the memory of one slice's plan, and its open files.
const SLICE_FILES: usize = 4096;

/// Descriptors kept for everything but a slice's files: the index cache's tables (RocksDB opens
/// at most 256), the pack files being read, the standard streams and the caller's.
const RESERVED_FILES: u64 = 384;

/// Files planned (and open) together: [`SLICE_FILES`], or fewer under a low open-files limit
/// (what it leaves after [`RESERVED_FILES`], at least 16; 256 when the limit is unknown).
fn slice_files() -> usize {
    let budget = crate::host::open_files_limit().map_or(256, |l| l.saturating_sub(RESERVED_FILES));
    usize::try_from(budget)
        .unwrap_or(usize::MAX)
        .clamp(16, SLICE_FILES)
}

/// Whether `job` goes through the pack-by-pack path.
pub(super) fn is_small(job: &FileJob) -> bool {
    matches!(&job.node.kind, NodeKind::File { content: Content::Direct(ids) }
        if ids.len() <= SMALL_FILE_BLOBS && job.node.size <= SMALL_FILE_BYTES)
}

/// What the small-file path did.
#[derive(Default)]
pub(super) struct SmallOutcome {
    pub files: u64,
    pub bytes: u64,
    pub failed: Vec<(PathBuf, String)>,
}

/// Restores small files (see the module docs); `verify` is applied per file, before its
/// metadata.
pub(super) fn restore_small(
    repo: &Repository,
    jobs: &[&FileJob],
    verify: &Verify,
    progress: &dyn Progress,
) -> SmallOutcome {
    let mut out = SmallOutcome::default();
    for slice in jobs.chunks(slice_files()) {
        let written = restore_slice(repo, slice, progress);
        let done: Vec<(PathBuf, Option<String>)> = slice
            .par_iter()
            .zip(written.into_par_iter())
            .map(|(job, written)| {
                // Verified (read back through its descriptor), then given its metadata.
                let result = written.and_then(|file| {
                    verify(job, &file)
                        .and_then(|()| apply_file_metadata(&file, &job.path, &job.node))
                        .map_err(|e| (error_chain(&e), true))
                });
                progress.file_done();
                match result {
                    Ok(()) => (job.path.clone(), None),
                    Err((msg, created)) => {
                        // Remove only what this restore wrote; a file it could not create
                        // (or never tried to) is someone else's and stays.
                        if created {
                            let _ = fs::remove_file(&job.path);
                        }
                        progress.warning(&job.path, &msg);
                        (job.path.clone(), Some(msg))
                    }
                }
            })
            .collect();
        for ((path, err), job) in done.into_iter().zip(slice) {
            match err {
                None => {
                    out.files += 1;
                    out.bytes += job.node.size;
                }
                Some(msg) => out.failed.push((path, msg)),
            }
        }
    }
    out
}

/// A file of a slice after its pieces are written: open, or why it failed and whether this
/// restore created it (then it is removed).
type Written = std::result::Result<fs::File, (String, bool)>;

/// Writes the contents of one slice of files, in the slice's order.
fn restore_slice(repo: &Repository, slice: &[&FileJob], progress: &dyn Progress) -> Vec<Written> {
    let failed: Mutex<HashMap<usize, String>> = Mutex::new(HashMap::new());
    let fail = |i: usize, msg: String| {
        failed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(i)
            .or_insert(msg);
    };
    // Pieces: (file index, offset in the file) for every blob, and their locations.
    let mut pieces: Vec<(usize, u64)> = Vec::new();
    let mut ids = Vec::new();
    for (i, job) in slice.iter().enumerate() {
        if let NodeKind::File {
            content: Content::Direct(blobs),
        } = &job.node.kind
        {
            for id in blobs {
                pieces.push((i, 0));
                ids.push(*id);
            }
        }
    }
    let found = match repo.cache().lookup_many(&ids) {
        Ok(f) => f,
        Err(e) => {
            let msg = error_chain(&Error::cache("cannot read the index cache", e));
            return slice.iter().map(|_| Err((msg.clone(), false))).collect();
        }
    };
    // File offsets from the blobs' plaintext lengths; a missing blob fails its file.
    let mut locs: Vec<BlobLocation> = Vec::with_capacity(found.len());
    let mut keep: Vec<(usize, u64)> = Vec::with_capacity(found.len());
    let mut next_offset: HashMap<usize, u64> = HashMap::new();
    for ((file, _), (loc, id)) in pieces.iter().zip(found.into_iter().zip(&ids)) {
        match loc {
            Some(loc) => {
                let off = next_offset.entry(*file).or_insert(0);
                keep.push((*file, *off));
                *off += u64::from(loc.entry.raw_len);
                locs.push(loc);
            }
            None => fail(
                *file,
                format!(
                    "data blob {} is not in any index file (run `cairn check`)",
                    id.0.short()
                ),
            ),
        }
    }
    for (i, job) in slice.iter().enumerate() {
        if next_offset.get(&i).copied().unwrap_or(0) != job.node.size && !failed_has(&failed, i) {
            fail(
                i,
                format!(
                    "content is {} bytes but the snapshot records {}",
                    next_offset.get(&i).copied().unwrap_or(0),
                    job.node.size
                ),
            );
        }
    }
    // Create every file, empty; pieces are then written in place, and the piece that ends a
    // file gives it its length when its last bytes are zeros left as a hole (most files end
    // in data: no `ftruncate` for them). Files that already failed (a blob is missing) are not
    // created: nothing to write.
    let files: Vec<Option<fs::File>> = slice
        .par_iter()
        .enumerate()
        .map(|(i, job)| {
            if failed_has(&failed, i) {
                return None;
            }
            match create_file(&job.path, job.node.mode) {
                Ok(file) => Some(file),
                Err(e) => {
                    fail(i, error_chain(&cannot_create("file", &job.path, e)));
                    None
                }
            }
        })
        .collect();
    plan_reads(&locs).par_iter().for_each(|r| {
        let pack = &locs[r.blobs[0]].pack;
        let bytes = match repo.read_pack_range(pack, r.start, r.end - r.start) {
            Ok(b) => b,
            Err(e) => {
                let msg = error_chain(&e);
                for &k in &r.blobs {
                    fail(keep[k].0, msg.clone());
                }
                return;
            }
        };
        // A read often covers a whole slice's blobs: they are opened and written in parallel,
        // the members of one compression group (neighbours) by one task, so it opens the group
        // once.
        r.blobs
            .par_chunk_by(|&a, &b| same_group(&locs[a].entry, &locs[b].entry))
            .for_each(|run| {
                let mut groups = GroupCache::new();
                for &k in run {
                    let (file, offset) = keep[k];
                    // A file not created has its failure recorded already.
                    let Some(f) = &files[file] else { continue };
                    if failed_has(&failed, file) {
                        continue;
                    }
                    let loc = &locs[k];
                    let written = envelope(&bytes, r.start, loc).and_then(|env| {
                        let blob = repo.open_blob_cached(&mut groups, loc, env)?;
                        progress.bytes_done(blob.len() as u64);
                        write_piece(f, slice[file], &blob, offset)
                    });
                    if let Err(e) = written {
                        fail(file, error_chain(&e));
                    }
                }
            });
    });
    let mut failed = failed
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    files
        .into_iter()
        .enumerate()
        .map(|(i, file)| match (failed.remove(&i), file) {
            (None, Some(file)) => Ok(file),
            (Some(msg), file) => Err((msg, file.is_some())),
            (None, None) => Err(("was not created".to_string(), false)),
        })
        .collect()
}

/// Writes `blob` at `offset` into `file`, the file of `job`; all-zero blocks are left as
/// holes, and the piece that ends the file gives it its length if its end is a hole.
fn write_piece(file: &fs::File, job: &FileJob, blob: &[u8], offset: u64) -> Result<()> {
    let size = job.node.size;
    let ends_file = offset + blob.len() as u64 == size;
    let zeros = blob.iter().all(|&b| b == 0);
    let path = &job.path;
    let wrote_end = !zeros
        && write_sparse(file, blob, offset)
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    if ends_file && !wrote_end {
        file.set_len(size)
            .map_err(|e| Error::io(format!("cannot size {}", path.display()), e))?;
    }
    Ok(())
}

fn failed_has(failed: &Mutex<HashMap<usize, String>>, i: usize) -> bool {
    failed
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .contains_key(&i)
}
