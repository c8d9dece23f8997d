//! Reading blobs for restore and dump: batches of locations become a few ranged pack reads.

use rayon::prelude::*;
use repo_format::{BlobId, GroupCache, same_group};

use crate::error::{Error, ErrorKind, Result};
use crate::index::cache::BlobLocation;
use crate::repository::Repository;

/// Largest single ranged read when grouping neighbouring blobs.
pub(super) const MAX_GROUP_BYTES: u64 = 16 << 20;

/// Plaintext bytes restored per window: a window's blobs are loaded together (their packs
/// read in as few ranged reads as possible), then written. Bounds memory per thread: a tree
/// restore runs cores + 2 threads (32 MiB windows peaked at 301 MiB for a 50k-file tree).
const WINDOW_BYTES: u64 = 16 << 20;

/// Two blobs of one pack closer than this are fetched in one read (skipping the gap is dearer
/// than reading it).
const MAX_GAP: u64 = 1 << 20;

/// Consecutive runs of a batch's blobs holding at most [`WINDOW_BYTES`] of plaintext (at least
/// one blob each).
pub(super) fn windows(locs: &[BlobLocation]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0usize, 0u64);
    for (i, loc) in locs.iter().enumerate() {
        let raw = u64::from(loc.entry.raw_len);
        if i > start && bytes + raw > WINDOW_BYTES {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += raw;
    }
    if start < locs.len() {
        out.push(start..locs.len());
    }
    out
}

/// One ranged read of a pack and the blobs (indices into the window) it covers.
pub(super) struct PackRead {
    pub(super) blobs: Vec<usize>,
    pub(super) start: u64,
    pub(super) end: u64,
}

/// Plans the reads for a window: blobs grouped by pack, sorted by offset, neighbours merged
/// while the gap is small and the read stays under [`MAX_GROUP_BYTES`]. Each pack region is
/// fetched once, however the blobs are ordered in the file.
pub(super) fn plan_reads(locs: &[BlobLocation]) -> Vec<PackRead> {
    let mut order: Vec<usize> = (0..locs.len()).collect();
    order.sort_by_key(|&i| (locs[i].pack, locs[i].entry.offset));
    let mut reads: Vec<PackRead> = Vec::new();
    for i in order {
        let loc = &locs[i];
        let (start, end) = (
            u64::from(loc.entry.offset),
            u64::from(loc.entry.offset) + u64::from(loc.entry.stored_len),
        );
        if let Some(r) = reads.last_mut() {
            let same_pack = locs[r.blobs[0]].pack == loc.pack;
            if same_pack
                && start >= r.start
                && start <= r.end + MAX_GAP
                && end.max(r.end) - r.start <= MAX_GROUP_BYTES
            {
                r.end = r.end.max(end);
                r.blobs.push(i);
                continue;
            }
        }
        reads.push(PackRead {
            blobs: vec![i],
            start,
            end,
        });
    }
    reads
}

/// Loads a window's blobs, verified, in the window's order. Blobs of a compression group opened
/// recently (an earlier window, another file) come from [`Repository::recent_groups`]; the
/// others' ranged reads run in parallel, and so do the blobs of each read (authenticated,
/// decompressed, their ids checked), each group opened once and then kept among the recent
/// ones: a window is often one read of one pack, so the blobs are where the parallelism is. A
/// read's bytes are dropped as soon as its blobs are open.
pub(super) fn load_window(repo: &Repository, locs: &[BlobLocation]) -> Result<Vec<Vec<u8>>> {
    let recent = repo.recent_groups();
    let mut out: Vec<Vec<u8>> = vec![Vec::new(); locs.len()];
    let mut to_read = Vec::new();
    for (i, loc) in locs.iter().enumerate() {
        match recent.get(loc) {
            Some(group) => out[i] = repo.blob_from_group(loc, &group)?,
            None => to_read.push(i),
        }
    }
    let rest: Vec<BlobLocation> = to_read.iter().map(|&i| locs[i]).collect();
    let reads = plan_reads(&rest);
    let loaded: Vec<Vec<(usize, Vec<u8>)>> = reads
        .par_iter()
        .map(|r| {
            let pack = &rest[r.blobs[0]].pack;
            let bytes = repo.read_pack_range(pack, r.start, r.end - r.start)?;
            // Members of one compression group are neighbours (sorted by offset): one task
            // opens their group once.
            r.blobs
                .par_chunk_by(|&a, &b| same_group(&rest[a].entry, &rest[b].entry))
                .map(|run| {
                    let mut groups = GroupCache::new();
                    let opened = run
                        .iter()
                        .map(|&i| {
                            let env = envelope(&bytes, r.start, &rest[i])?;
                            Ok((
                                to_read[i],
                                repo.open_blob_cached(&mut groups, &rest[i], env)?,
                            ))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    if let Some(group) = groups.take() {
                        recent.put(&rest[run[0]], std::sync::Arc::new(group));
                    }
                    Ok(opened)
                })
                .collect::<Result<Vec<_>>>()
                .map(|runs| runs.into_iter().flatten().collect())
        })
        .collect::<Result<_>>()?;
    for (i, blob) in loaded.into_iter().flatten() {
        out[i] = blob;
    }
    Ok(out)
}

/// The envelope (a grouped blob's: its group's) of `loc` in `bytes`, a read of its pack that
/// starts at pack offset `start`.
pub(super) fn envelope<'b>(bytes: &'b [u8], start: u64, loc: &BlobLocation) -> Result<&'b [u8]> {
    let off = (u64::from(loc.entry.offset) - start) as usize; // reads cover their blobs
    bytes
        .get(off..off + loc.entry.stored_len as usize)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Corrupt,
                format!(
                    "pack {} is shorter than its index entries",
                    loc.pack.0.short()
                ),
            )
        })
}

pub(super) fn locate_all(repo: &Repository, ids: &[BlobId]) -> Result<Vec<BlobLocation>> {
    let found = repo
        .cache()
        .lookup_many(ids)
        .map_err(|e| Error::cache("cannot read the index cache", e))?;
    ids.iter()
        .zip(found)
        .map(|(id, loc)| {
            loc.ok_or_else(|| {
                Error::new(
                    ErrorKind::Corrupt,
                    format!(
                        "data blob {} is not in any index file (run `cairn check`)",
                        id.0.short()
                    ),
                )
            })
        })
        .collect()
}
