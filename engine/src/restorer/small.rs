//! Small files, restored pack by pack.
//!
//! Restoring many small files one by one costs a pack read per file. Instead, for a slice of
//! small files at a time:
//!
//! ```text
//! one batched index lookup for every blob of every file in the slice
//! create every file (in parallel)
//! sort the (file, blob) pieces by (pack, offset); merge neighbours into ranged reads
//! reads in parallel: read once, open each blob (AEAD + keyed hash), write_at into its file;
//!   the piece that ends a file sets its length if its last bytes were left as a hole
//! metadata for every file whose pieces all landed
//! ```
//!
//! So each region of a pack is fetched once for the whole slice, whatever the files' order.
//! A failed read or a damaged blob fails exactly the files that have a piece in it.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Mutex;

use rayon::prelude::*;
use repo_format::{Content, NodeKind};

use super::read::{envelope, plan_reads};
use super::sparse::write_sparse;
use super::{FileJob, apply_metadata, cannot_create, create_file, error_chain};
use crate::error::{Error, Result};
use crate::index::cache::BlobLocation;
use crate::progress::Progress;
use crate::repository::Repository;

/// A file is "small" up to this size and number of blobs (a direct content list).
const SMALL_FILE_BYTES: u64 = 4 << 20;
const SMALL_FILE_BLOBS: usize = 16;

/// Files planned together: bounds the memory of one slice's plan.
const SLICE_FILES: usize = 4096;

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

/// Restores small files (see the module docs); `verify` is applied per file afterwards.
pub(super) fn restore_small(
    repo: &Repository,
    jobs: &[&FileJob],
    verify: &(dyn Fn(&FileJob) -> Result<()> + Sync),
    progress: &dyn Progress,
) -> SmallOutcome {
    let mut out = SmallOutcome::default();
    for slice in jobs.chunks(SLICE_FILES) {
        let (failed, created) = restore_slice(repo, slice, progress);
        let done: Vec<(PathBuf, Option<String>)> = slice
            .par_iter()
            .enumerate()
            .map(|(i, job)| {
                let result = match failed.get(&i) {
                    Some(msg) => Err(msg.clone()),
                    None => apply_metadata(&job.path, &job.node, false)
                        .and_then(|()| verify(job))
                        .map_err(|e| error_chain(&e)),
                };
                progress.file_done();
                match result {
                    Ok(()) => (job.path.clone(), None),
                    Err(msg) => {
                        // Remove only what this restore wrote; a file it could not create
                        // (or never tried to) is someone else's and stays.
                        if created[i] {
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

/// Writes the contents of one slice of files; returns the failures by index in the slice, and
/// which files it created.
fn restore_slice(
    repo: &Repository,
    slice: &[&FileJob],
    progress: &dyn Progress,
) -> (HashMap<usize, String>, Vec<bool>) {
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
            let failed = (0..slice.len()).map(|i| (i, msg.clone())).collect();
            return (failed, vec![false; slice.len()]);
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
    let created: Vec<bool> = slice
        .par_iter()
        .enumerate()
        .map(|(i, job)| {
            if failed_has(&failed, i) {
                return false;
            }
            match create_file(&job.path) {
                Ok(_) => true,
                Err(e) => {
                    fail(i, error_chain(&cannot_create("file", &job.path, e)));
                    false
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
        let mut groups = repo_format::GroupCache::new();
        for &k in &r.blobs {
            let (file, offset) = keep[k];
            if failed_has(&failed, file) {
                continue;
            }
            let loc = &locs[k];
            let env = match envelope(&bytes, r.start, loc) {
                Ok(env) => env,
                Err(e) => {
                    fail(file, error_chain(&e));
                    continue;
                }
            };
            let written = repo
                .open_blob_cached(&mut groups, loc, env)
                .and_then(|blob| {
                    progress.bytes_done(blob.len() as u64);
                    let size = slice[file].node.size;
                    let ends_file = offset + blob.len() as u64 == size;
                    let zeros = blob.iter().all(|&b| b == 0);
                    if zeros && !ends_file {
                        return Ok(());
                    }
                    let path = &slice[file].path;
                    // The file this restore created: never a symlink put there since.
                    fs::OpenOptions::new()
                        .write(true)
                        .custom_flags(libc::O_NOFOLLOW)
                        .open(path)
                        .and_then(|f| {
                            let wrote_end = !zeros && write_sparse(&f, &blob, offset)?;
                            if ends_file && !wrote_end {
                                f.set_len(size)?;
                            }
                            Ok(())
                        })
                        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
                });
            if let Err(e) = written {
                fail(file, error_chain(&e));
            }
        }
    });
    let failed = failed
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    (failed, created)
}

fn failed_has(failed: &Mutex<HashMap<usize, String>>, i: usize) -> bool {
    failed
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .contains_key(&i)
}
