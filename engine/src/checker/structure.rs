//! Checks 1-8 of the module table: listings, key files, index files, and the header of every
//! pack an index file names (read by range: the pack's tail, rarely two reads).

use std::collections::HashSet;
use std::pin::pin;

use futures::StreamExt;
use repo_format::format::{MIN_HEADER_LEN, PACK_TRAILER_LEN};
use repo_format::{
    BlobType, Id, IndexEntry, IndexFile, IndexId, IndexPack, KeyFile, PackId, RepoKeys,
    decode_header, header_len,
};

use super::report::FindingKind;
use super::{Ctx, is_damage};
use crate::backend::{Backend, BackendErrorKind, FileType};
use crate::error::{Error, ErrorKind, Result};
use crate::repository::get_verified;

/// Index files fetched at once.
const INDEX_CONCURRENCY: usize = 4;
/// Pack headers read at once.
const HEADER_CONCURRENCY: usize = 8;
/// Bytes read from the end of a pack at first: most headers (1 500 blobs) fit, so one read
/// usually gives the trailer and the header together.
const TAIL_READ: u64 = 64 << 10;
/// Blob ids quoted in one duplicate-blob warning.
const DUPLICATE_EXAMPLES: usize = 3;

/// The object ids in the listed directories (the packs are kept in the context).
pub(super) struct Listing {
    pub keys: Vec<Id>,
    pub index: Vec<IndexId>,
    pub snapshots: Vec<Id>,
}

/// Check 1: lists `keys/`, `snapshots/`, `index/` and `data/`; names that are not ids are
/// warnings. Pack sizes go into `ctx.packs`.
pub(super) fn list_all(ctx: &mut Ctx) -> Result<Listing> {
    let mut ids = |t: FileType| -> Result<Vec<(Id, u64)>> {
        let infos = ctx
            .repo
            .block_on(ctx.repo.backend().list(t))
            .map_err(|e| Error::backend(format!("cannot list {}/", t.dir()), e))?;
        let mut out = Vec::with_capacity(infos.len());
        for info in infos {
            match Id::from_hex(&info.name) {
                Ok(id) => out.push((id, info.size)),
                Err(_) => {
                    let path = t.path(&info.name);
                    ctx.findings.warn(
                        FindingKind::UnknownName,
                        path.clone(),
                        format!(
                            "{path} is not named by an object id, so cairn ignores it (SPEC §2); remove it if nothing of yours put it there"
                        ),
                    );
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    };
    // Listed in the reverse of the write order (SPEC §12), so a backup running meanwhile
    // cannot make a snapshot seem to lack its index files, or an index file its packs.
    let keys = ids(FileType::Key)?;
    let snapshots = ids(FileType::Snapshot)?;
    let index = ids(FileType::Index)?;
    let packs = ids(FileType::Pack)?;
    ctx.stats.key_files = keys.len() as u64;
    ctx.stats.index_files = index.len() as u64;
    ctx.stats.snapshots = snapshots.len() as u64;
    ctx.stats.packs = packs.len() as u64;
    ctx.stats.pack_bytes = packs.iter().map(|p| p.1).sum();
    ctx.packs = packs
        .into_iter()
        .map(|(id, size)| (PackId(id), size))
        .collect();
    Ok(Listing {
        keys: keys.into_iter().map(|k| k.0).collect(),
        index: index.into_iter().map(|(id, _)| IndexId(id)).collect(),
        snapshots: snapshots.into_iter().map(|s| s.0).collect(),
    })
}

/// Check 2: every key file hashes to its name and decodes (opening it needs its password).
pub(super) fn check_keys(ctx: &mut Ctx, keys: &[Id]) -> Result<()> {
    for id in keys {
        let problem =
            match ctx
                .repo
                .block_on(get_verified(&**ctx.repo.backend(), FileType::Key, id))
            {
                Ok(bytes) => KeyFile::decode(&bytes).err().map(|e| e.to_string()),
                Err(e) if is_damage(&e) => Some(e.to_string()),
                Err(e) => return Err(e),
            };
        if let Some(p) = problem {
            ctx.findings.error(
                FindingKind::DamagedKey,
                id.to_hex(),
                format!(
                    "key file {} is damaged ({p}): the password it wraps no longer opens the repository (other key files are unaffected)",
                    id.short()
                ),
            );
        }
    }
    Ok(())
}

/// Checks 3-7: reads every index file into the temporary index and checks the header of every
/// pack it names. Index files are fetched a few at a time while earlier ones are checked.
///
/// Every file goes in as current on this pass, since whether another file supersedes it is
/// known only once all are read. If some listed file turns out superseded (an interrupted sweep,
/// or an old file the storage replayed), the temporary index is rebuilt with each file in its
/// role (SPEC §8): otherwise a superseded file's entries could stand for blobs a current file
/// places elsewhere, and a pack it names that prune deleted would count against snapshots whose
/// data is safe.
pub(super) fn check_index_files(ctx: &mut Ctx, ids: Vec<IndexId>) -> Result<()> {
    let mut superseded: HashSet<IndexId> = HashSet::new();
    let mut added: Vec<IndexId> = Vec::with_capacity(ids.len());
    load_index_files(ctx, ids, &mut superseded, &mut added)?;
    if added.iter().any(|id| superseded.contains(id)) {
        rebuild_in_roles(ctx, &added, &superseded)?;
    }
    Ok(())
}

/// Fetches `ids` again and adds each to a cleared temporary index, current files first, then
/// the superseded ones, whose entries only fill in blobs no current file names.
fn rebuild_in_roles(ctx: &mut Ctx, ids: &[IndexId], superseded: &HashSet<IndexId>) -> Result<()> {
    let cache_err = |e| Error::cache("cannot write the temporary index", e);
    ctx.index.clear().map_err(cache_err)?;
    let (old, current): (Vec<IndexId>, Vec<IndexId>) =
        ids.iter().partition(|id| superseded.contains(id));
    let repo = ctx.repo;
    let backend = repo.backend().clone();
    for (files, is_current) in [(current, true), (old, false)] {
        repo.block_on(async {
            let mut loads = pin!(
                futures::stream::iter(files)
                    .map(|id| {
                        let backend = backend.clone();
                        async move { (id, get_verified(&*backend, FileType::Index, &id.0).await) }
                    })
                    .buffered(INDEX_CONCURRENCY)
            );
            while let Some((id, bytes)) = loads.next().await {
                // It decoded a moment ago: if it no longer does (replaced meanwhile, or damaged
                // in between), that is damage to report as on the first pass; a storage
                // failure stops the check.
                let next = "run `cairn check` again, and `cairn repair index` if it persists";
                let Some(file) = decode_or_report(
                    ctx,
                    id,
                    bytes,
                    "could be read once but not a second time",
                    next,
                )?
                else {
                    continue;
                };
                if is_current {
                    ctx.index.add_index_file(id, &file).map_err(cache_err)?;
                } else {
                    ctx.index
                        .add_superseded_index_file(id, &file)
                        .map_err(cache_err)?;
                }
            }
            Ok::<(), Error>(())
        })?;
    }
    Ok(())
}

/// Decodes a fetched index file. Damage (a missing or undecodable file) becomes a
/// `damaged-index` finding and `None`: "index file X {what}: {cause}: the blobs it lists count
/// as missing below; {next}". A storage failure is returned.
fn decode_or_report(
    ctx: &mut Ctx,
    id: IndexId,
    bytes: Result<bytes::Bytes>,
    what: &str,
    next: &str,
) -> Result<Option<IndexFile>> {
    let decoded = bytes.and_then(|b| {
        IndexFile::decode(ctx.repo.keys(), &b)
            .map_err(|e| Error::format(format!("index file {} cannot be decoded", id.short()), e))
    });
    match decoded {
        Ok(f) => Ok(Some(f)),
        Err(e) if is_damage(&e) => {
            ctx.findings.error(
                FindingKind::DamagedIndex,
                id.to_hex(),
                format!(
                    "index file {} {what}: {}: the blobs it lists count as missing below; {next}",
                    id.short(),
                    crate::restorer::error_chain(&e)
                ),
            );
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The first pass of [`check_index_files`]: reads, checks and adds every file (as current),
/// and collects what the files supersede and which ones it added.
fn load_index_files(
    ctx: &mut Ctx,
    ids: Vec<IndexId>,
    superseded: &mut HashSet<IndexId>,
    added: &mut Vec<IndexId>,
) -> Result<()> {
    let repo = ctx.repo;
    let backend = repo.backend().clone();
    let keys = repo.keys();
    repo.block_on(async {
        let mut loads = pin!(
            futures::stream::iter(ids)
                .map(|id| {
                    let backend = backend.clone();
                    async move {
                        let bytes = get_verified(&*backend, FileType::Index, &id.0).await;
                        (id, bytes)
                    }
                })
                .buffered(INDEX_CONCURRENCY)
        );
        while let Some((id, bytes)) = loads.next().await {
            let next = "`cairn repair index` rebuilds the index from the pack headers";
            let Some(file) = decode_or_report(ctx, id, bytes, "is damaged", next)? else {
                continue;
            };
            superseded.extend(file.supersedes.iter().copied());
            added.push(id);
            add_index_file(ctx, id, &file)?;
            let checks = futures::stream::iter(file.packs.iter())
                .map(|pack| {
                    let listed = ctx.packs.get(&pack.id).copied();
                    let backend = &*backend;
                    async move {
                        let problem = check_pack_header(backend, keys, listed, &id, pack).await;
                        (pack.id, problem)
                    }
                })
                .buffer_unordered(HEADER_CONCURRENCY)
                .collect::<Vec<_>>()
                .await;
            for (pack, problem) in checks {
                if let Some((kind, message)) = problem? {
                    if !ctx.pack_errors.contains_key(&pack) {
                        let i = ctx.findings.error(kind, pack.to_hex(), message);
                        ctx.pack_errors.insert(pack, i);
                    }
                } else {
                    ctx.stats.pack_headers_checked += 1;
                }
            }
        }
        Ok(())
    })
}

/// Adds one index file to the temporary index after noting duplicates (check 7).
fn add_index_file(ctx: &mut Ctx, id: IndexId, file: &IndexFile) -> Result<()> {
    let mut ids = Vec::with_capacity(file.blob_count());
    for pack in &file.packs {
        if let Some(first) = ctx.referenced.get(&pack.id) {
            ctx.findings.warn(
                FindingKind::DuplicatePack,
                pack.id.to_hex(),
                format!(
                    "pack {} is named by index files {} and {}: harmless, prune removes the extra entries",
                    pack.id.short(),
                    first.short(),
                    id.short()
                ),
            );
        } else {
            ctx.referenced.insert(pack.id, id);
        }
        let types: HashSet<BlobType> = pack.entries.iter().map(|e| e.blob_type).collect();
        if types.len() > 1 {
            ctx.findings.warn(
                FindingKind::MixedPack,
                pack.id.to_hex(),
                format!(
                    "pack {} holds both data and tree blobs (SPEC §7 says one type per pack): harmless, but tree reads fetch data too",
                    pack.id.short()
                ),
            );
        }
        ids.extend(pack.entries.iter().map(|e| e.id));
    }
    let known = ctx
        .index
        .lookup_many(&ids)
        .map_err(|e| Error::cache("cannot read the temporary index", e))?;
    let mut seen = HashSet::with_capacity(ids.len());
    let mut dups = Vec::new();
    let mut dup_count = 0u64;
    for (blob, loc) in ids.iter().zip(known) {
        if loc.is_some() || !seen.insert(*blob) {
            dup_count += 1;
            if dups.len() < DUPLICATE_EXAMPLES {
                dups.push(blob.short());
            }
        }
    }
    if dup_count > 0 {
        ctx.findings.warn(
            FindingKind::DuplicateBlob,
            id.to_hex(),
            format!(
                "index file {} names {dup_count} blobs that are also stored elsewhere (e.g. {}): harmless, prune removes the extra copies",
                id.short(),
                dups.join(", ")
            ),
        );
    }
    ctx.index
        .add_index_file(id, file)
        .map_err(|e| Error::cache("cannot write the temporary index", e))?;
    ctx.stats.blobs += ids.len() as u64;
    Ok(())
}

/// Checks 4-6 for one pack named by index file `index`. `Ok(Some(..))` is damage to report;
/// `Err` a storage failure.
async fn check_pack_header(
    backend: &dyn Backend,
    keys: &RepoKeys,
    listed: Option<u64>,
    index: &IndexId,
    pack: &IndexPack,
) -> Result<Option<(FindingKind, String)>> {
    let (p, ix) = (pack.id.short(), index.short());
    let Some(size) = listed else {
        return Ok(Some((
            FindingKind::MissingPack,
            format!(
                "pack {p} is named by index file {ix} ({} blobs) but is not in data/: the files listed below lost those blobs; put the pack back from a copy of the repository if you have one, otherwise `cairn repair index` then `cairn repair snapshots` keep what is left of the affected snapshots",
                pack.entries.len()
            ),
        )));
    };
    let blobs_end = pack.entries.iter().map(IndexEntry::end).max().unwrap_or(0);
    let min_size = blobs_end + (MIN_HEADER_LEN + PACK_TRAILER_LEN) as u64;
    if size < min_size {
        return Ok(Some((
            FindingKind::DamagedPack,
            format!(
                "pack {p} is {size} bytes, but index file {ix} places blobs up to byte {blobs_end} (plus its header): the pack is truncated"
            ),
        )));
    }
    let name = pack.id.to_hex();
    let tail_len = size.min(TAIL_READ);
    let read = |offset: u64, len: u64| backend.get_range(FileType::Pack, &name, offset, len);
    let tail = match read(size - tail_len, tail_len).await {
        Ok(b) => b,
        Err(e) if e.kind() == BackendErrorKind::NotFound => {
            return Ok(Some((
                FindingKind::MissingPack,
                format!("pack {p} (named by index file {ix}) disappeared while being checked"),
            )));
        }
        Err(e) => return Err(Error::backend(format!("cannot read pack {p}"), e)),
    };
    let damaged_header = |detail: String| {
        Some((
            FindingKind::DamagedPackHeader,
            format!(
                "pack {p} (named by index file {ix}): its header cannot be read: {detail}; its blobs may be intact (`check --read-data` tells), the index still locates them"
            ),
        ))
    };
    if tail.len() as u64 != tail_len {
        return Err(Error::new(
            ErrorKind::Backend,
            format!(
                "reading the last {tail_len} bytes of pack {p} returned {} bytes: the storage broke its contract",
                tail.len()
            ),
        ));
    }
    let mut trailer = [0u8; PACK_TRAILER_LEN];
    trailer.copy_from_slice(&tail[tail.len() - PACK_TRAILER_LEN..]);
    let hl = match header_len(&trailer, size) {
        Ok(hl) => u64::from(hl),
        Err(e) => return Ok(damaged_header(e.to_string())),
    };
    let envelope = if hl + PACK_TRAILER_LEN as u64 <= tail_len {
        let start = (tail_len - hl) as usize - PACK_TRAILER_LEN;
        tail.slice(start..start + hl as usize)
    } else {
        read(size - PACK_TRAILER_LEN as u64 - hl, hl)
            .await
            .map_err(|e| Error::backend(format!("cannot read the header of pack {p}"), e))?
    };
    let header = match decode_header(keys, &envelope, size) {
        Ok(h) => h,
        Err(e) => return Ok(damaged_header(e.to_string())),
    };
    let diff = compare_entries(&header.entries, &pack.entries).or_else(|| {
        (header.bases != pack.bases).then(|| {
            format!(
                "the header names the bases of {} based groups, the index file {}, or other blobs",
                header.bases.len(),
                pack.bases.len()
            )
        })
    });
    Ok(diff.map(|diff| {
        (
            FindingKind::HeaderMismatch,
            format!(
                "pack {p} and index file {ix} disagree: {diff}; one of them is damaged or was replaced, so blobs may be read from the wrong place"
            ),
        )
    }))
}

/// The first difference between a pack's header and an index file's entries for it, if any.
/// Both are in offset order (the header by construction, the index by its canonical form).
fn compare_entries(header: &[IndexEntry], index: &[IndexEntry]) -> Option<String> {
    for (h, i) in header.iter().zip(index) {
        if h != i {
            return Some(format!(
                "at offset {}, the header has blob {} ({:?}, {} bytes) but the index has blob {} ({:?}, {} bytes at offset {})",
                h.offset,
                h.id.short(),
                h.blob_type,
                h.stored_len,
                i.id.short(),
                i.blob_type,
                i.stored_len,
                i.offset
            ));
        }
    }
    (header.len() != index.len()).then(|| {
        format!(
            "the header lists {} blobs, the index {}",
            header.len(),
            index.len()
        )
    })
}

/// Check 8: packs in `data/` that no index file names.
pub(super) fn report_unreferenced(ctx: &mut Ctx) {
    let mut unreferenced: Vec<(PackId, u64)> = ctx
        .packs
        .iter()
        .filter(|(id, _)| !ctx.referenced.contains_key(id))
        .map(|(id, size)| (*id, *size))
        .collect();
    unreferenced.sort_unstable();
    for (id, size) in unreferenced {
        ctx.findings.warn(
            FindingKind::UnreferencedPack,
            id.to_hex(),
            format!(
                "pack {} ({size} bytes) is not named by any index file: unreferenced pack (garbage left by an interrupted backup; prune removes it)",
                id.short()
            ),
        );
    }
}
