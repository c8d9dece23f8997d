//! Reading every index file once, in a fixed order, for prune: which index files are current
//! (not superseded), and per pack how much of it the snapshots use.
//!
//! Index files are fetched a few at a time and handed to the caller one by one, so memory holds
//! a handful of index files, the per-pack figures (one small record per pack) and nothing per
//! blob: blob flags live in the [`UsedSet`].

use std::collections::{HashMap, HashSet};

use futures::StreamExt;
use repo_format::{BlobId, BlobType, Compression, IndexFile, IndexId, IndexPack, PackId};

#[allow(unused_imports)]
use super::used::LOCATED;
use super::used::{USED, UsedSet};
use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::memory::ReleaseEvery;
use crate::repository::{Repository, get_verified};

/// Index files fetched at once.
const CONCURRENCY: usize = 4;

/// The current index files: every listed one that no other listed one supersedes.
#[derive(Debug, Default)]
pub struct IndexFiles {
    /// Current, sorted.
    pub current: Vec<IndexId>,
    /// Listed but superseded by another listed file (left over by an interrupted sweep).
    pub superseded: Vec<IndexId>,
    /// Current files that name no pack and supersede no listed file: left by a sweep whose
    /// rewritten files had nothing left to name; they can go.
    pub empty: Vec<IndexId>,
}

/// Calls `f` for every index file in `ids`, in order, on the calling thread and outside the
/// async runtime (so `f` may do storage I/O itself, e.g. renew the prune lease); a few files
/// are fetched ahead on the runtime meanwhile.
pub fn for_each_index(
    repo: &Repository,
    ids: &[IndexId],
    f: &mut dyn FnMut(IndexId, IndexFile) -> Result<()>,
) -> Result<()> {
    // One decoded file waits for `f` at most: the fetches in flight are the read-ahead, and a
    // decoded file of 65 536 entries is ~6 MB (a deeper queue held ~50 MB at 10 M blobs).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<(IndexId, IndexFile)>>(1);
    let backend = std::sync::Arc::clone(repo.backend());
    let keys = repo.keys().clone();
    let ids = ids.to_vec();
    let fetcher = repo.runtime().spawn(async move {
        let keys = &keys;
        let backend = &backend;
        let mut stream = futures::stream::iter(ids.into_iter().map(|id| async move {
            let bytes = get_verified(&**backend, FileType::Index, &id.0)
                .await
                .map_err(|e| {
                    if e.kind() == crate::ErrorKind::Corrupt {
                        Error::with_source(
                            e.kind(),
                            format!(
                                "index file {} is damaged; prune needs a sound index (run `cairn repair index`)",
                                id.0.short()
                            ),
                            e,
                        )
                    } else {
                        e
                    }
                })?;
            let file = IndexFile::decode(keys, &bytes).map_err(|e| {
                Error::format(
                    format!(
                        "index file {} is damaged; prune needs a sound index (run `cairn repair index`)",
                        id.0.short()
                    ),
                    e,
                )
            })?;
            Ok::<_, Error>((id, file))
        }))
        .buffered(CONCURRENCY);
        while let Some(item) = stream.next().await {
            let failed = item.is_err();
            // The receiver is gone when `f` failed: stop fetching.
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    let mut result = Ok(());
    let mut release = ReleaseEvery::default();
    while let Some(item) = rx.blocking_recv() {
        let entries = item
            .as_ref()
            .map_or(0, |(_, file)| file.blob_count() as u64);
        if let Err(e) = item.and_then(|(id, file)| f(id, file)) {
            result = Err(e);
            break;
        }
        // The decoded file is freed: give its pages (and RocksDB's churn) back.
        release.handled(entries);
    }
    drop(rx);
    let _ = repo.block_on(fetcher);
    result
}

/// Lists `index/` and sorts out the superseded files (reads each file once).
pub fn index_files(repo: &Repository) -> Result<IndexFiles> {
    let mut listed: Vec<IndexId> = repo
        .list_ids(FileType::Index)?
        .into_iter()
        .map(IndexId)
        .collect();
    listed.sort();
    let mut superseded = HashSet::new();
    let mut packless: Vec<(IndexId, Vec<IndexId>)> = Vec::new();
    // Which files name each pack: a superseded file may go only if every pack it names is
    // named by a file that stays (a writer that set `supersedes` too early, e.g. an old
    // `repair index` killed half-way, must not cost the index its entries).
    let mut naming: HashMap<PackId, Vec<IndexId>> = HashMap::new();
    for_each_index(repo, &listed, &mut |id, file| {
        if file.packs.is_empty() {
            packless.push((id, file.supersedes.clone()));
        }
        for p in &file.packs {
            naming.entry(p.id).or_default().push(id);
        }
        superseded.extend(file.supersedes);
        Ok(())
    })?;
    let covered = |id: &IndexId| {
        naming
            .values()
            .filter(|files| files.contains(id))
            .all(|files| files.iter().any(|f| !superseded.contains(f)))
    };
    let unsafe_to_drop: HashSet<IndexId> = listed
        .iter()
        .filter(|id| superseded.contains(*id) && !covered(id))
        .copied()
        .collect();
    for id in &unsafe_to_drop {
        superseded.remove(id);
    }
    let listed_set: HashSet<IndexId> = listed.iter().copied().collect();
    let empty: HashSet<IndexId> = packless
        .into_iter()
        .filter(|(id, sup)| !superseded.contains(id) && !sup.iter().any(|s| listed_set.contains(s)))
        .map(|(id, _)| id)
        .collect();
    let (superseded, current): (Vec<IndexId>, Vec<IndexId>) =
        listed.into_iter().partition(|id| superseded.contains(id));
    let (mut empty, current): (Vec<IndexId>, Vec<IndexId>) =
        current.into_iter().partition(|id| empty.contains(id));
    empty.sort();
    Ok(IndexFiles {
        current,
        superseded,
        empty,
    })
}

/// How much of one pack the snapshots use.
#[derive(Clone, Debug, Default)]
pub struct PackUse {
    /// Data or tree (of its first blob).
    pub blob_type: Option<BlobType>,
    /// Blobs a snapshot needs, counted in this pack (their first indexed copy).
    pub used_blobs: u64,
    /// Their stored bytes.
    pub used_bytes: u64,
    /// Blobs no snapshot needs, and duplicates of blobs counted elsewhere.
    pub unused_blobs: u64,
    /// Their stored bytes.
    pub unused_bytes: u64,
}

impl PackUse {
    /// Stored bytes of all its blobs.
    pub fn blob_bytes(&self) -> u64 {
        self.used_bytes + self.unused_bytes
    }
}

/// The figures of every indexed pack.
#[derive(Debug, Default)]
pub struct PackUsage {
    /// Per pack.
    pub packs: HashMap<PackId, PackUse>,
    /// Which current index files name each pack.
    pub named_by: HashMap<PackId, Vec<IndexId>>,
}

/// Marks the base blobs of every based group (SPEC §7) that holds a used blob as used too
/// (SPEC §18 P4): whoever needs a member needs its group's base to read it. A base in a based
/// group itself makes that group's base needed too: passes repeat while one marks anything,
/// as deep as readers follow bases. Returns how many blobs it marked.
pub fn mark_bases(
    repo: &Repository,
    files: &[IndexId],
    used: &mut UsedSet,
    tick: &mut dyn FnMut() -> Result<()>,
) -> Result<u64> {
    let mut total = 0;
    for _ in 0..=crate::repository::MAX_BASE_DEPTH {
        let marked = mark_bases_once(repo, files, used, tick)?;
        total += marked;
        if marked == 0 {
            break;
        }
    }
    Ok(total)
}

/// One pass of [`mark_bases`].
fn mark_bases_once(
    repo: &Repository,
    files: &[IndexId],
    used: &mut UsedSet,
    tick: &mut dyn FnMut() -> Result<()>,
) -> Result<u64> {
    let mut marked = 0u64;
    for_each_index(repo, files, &mut |_, file| {
        tick()?;
        for pack in file.packs.iter().filter(|p| !p.bases.is_empty()) {
            for base in &pack.bases {
                let members: Vec<BlobId> = pack
                    .entries
                    .iter()
                    .filter(|e| e.compression == Compression::Based && e.offset == base.offset)
                    .map(|e| e.id)
                    .collect();
                let flags = used.get_many(&members)?;
                let used_members: Vec<BlobId> = members
                    .iter()
                    .zip(flags)
                    .filter(|(_, f)| f & USED != 0)
                    .map(|(id, _)| *id)
                    .collect();
                if used_members.is_empty() {
                    continue;
                }
                // Every group with a used member keeps its base, while the whole base is
                // indexed (current files): then every copy of a used blob that readers may take
                // stays readable, and [`countable`] counts it. A group whose base is already
                // (partly) gone is dead: its members count as no copy, and do not stop prune.
                let bases = repo
                    .cache()
                    .lookup_many_for_dedup(&base.ids)
                    .map_err(|e| Error::cache("cannot read the index cache", e))?;
                if bases.iter().any(Option::is_none) {
                    continue;
                }
                let flags = used.get_many(&base.ids)?;
                for (id, flag) in base.ids.iter().zip(flags) {
                    if flag & USED == 0 {
                        used.put(id, flag | USED)?;
                        marked += 1;
                    }
                }
            }
        }
        Ok(())
    })?;
    used.flush()?;
    Ok(marked)
}

/// Per entry of `pack`: whether it counts as a copy of its blob for prune. Every entry not in a
/// based group does; a member of a based group does only when every blob of its base is used
/// ([`mark_bases`] has marked the base of every group with a used member whose base is
/// indexed): prune keeps such a base, so the copy stays readable. A member of a group whose base
/// is not kept is no copy: counting it could let prune delete a readable copy elsewhere and
/// then the base.
pub fn countable(pack: &IndexPack, used: &mut UsedSet) -> Result<Vec<bool>> {
    let mut live: HashMap<u32, bool> = HashMap::new();
    for base in &pack.bases {
        let flags = used.get_many(&base.ids)?;
        live.insert(base.offset, flags.iter().all(|f| f & USED != 0));
    }
    Ok(pack
        .entries
        .iter()
        .map(|e| e.compression != Compression::Based || live.get(&e.offset) == Some(&true))
        .collect())
}

/// Reads the current index files and counts, per pack, the used and unused blobs; marks each
/// used blob `LOCATED` at its first [`countable`] copy (in index-file order), so later copies
/// count as duplicates.
/// `bit` is the flag that records "counted" ([`LOCATED`] the first time, another bit when
/// counting again after the index changed).
pub fn pack_usage(
    repo: &Repository,
    files: &[IndexId],
    used: &mut UsedSet,
    bit: u8,
    tick: &mut dyn FnMut() -> Result<()>,
) -> Result<PackUsage> {
    let mut usage = PackUsage::default();
    for_each_index(repo, files, &mut |file_id, file| {
        tick()?;
        for pack in file.packs {
            let named = usage.named_by.entry(pack.id).or_default();
            named.push(file_id);
            if named.len() > 1 {
                // Named by an earlier file already: counted there.
                continue;
            }
            let ids: Vec<_> = pack.entries.iter().map(|e| e.id).collect();
            let counts = countable(&pack, used)?;
            let flags = used.get_many(&ids)?;
            let stat = usage.packs.entry(pack.id).or_default();
            let shares = repo_format::stored_shares(&pack.entries);
            for (((entry, flag), bytes), counts) in
                pack.entries.iter().zip(flags).zip(shares).zip(counts)
            {
                stat.blob_type.get_or_insert(entry.blob_type);
                if counts && flag & USED != 0 && flag & bit == 0 {
                    stat.used_blobs += 1;
                    stat.used_bytes += bytes;
                    used.put(&entry.id, flag | bit)?;
                } else {
                    stat.unused_blobs += 1;
                    stat.unused_bytes += bytes;
                }
            }
        }
        Ok(())
    })?;
    used.flush()?;
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use repo_format::{BlobType, GroupBase, IndexEntry};

    fn id(n: u8) -> BlobId {
        BlobId(repo_format::Id([n; 32]))
    }

    fn entry(n: u8, compression: Compression, offset: u32) -> IndexEntry {
        IndexEntry {
            blob_type: BlobType::Data,
            compression,
            offset,
            stored_len: 100,
            raw_len: 1000,
            id: id(n),
            group_offset: 0,
        }
    }

    #[test]
    fn members_of_a_group_count_only_while_its_whole_base_is_used() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut used = UsedSet::create(dir.path()).expect("used set");
        // A plain blob, a plain group's member and two based groups: one on blobs 10 and 11,
        // one on blobs 10 and 12.
        let pack = IndexPack {
            id: PackId(repo_format::Id([9; 32])),
            entries: vec![
                entry(1, Compression::Zstd, 0),
                entry(2, Compression::Group, 100),
                entry(3, Compression::Based, 200),
                entry(4, Compression::Based, 300),
            ],
            bases: vec![
                GroupBase {
                    offset: 200,
                    ids: vec![id(10), id(11)],
                },
                GroupBase {
                    offset: 300,
                    ids: vec![id(10), id(12)],
                },
            ],
        };
        assert_eq!(
            countable(&pack, &mut used).expect("countable"),
            vec![true, true, false, false]
        );
        used.put(&id(10), USED).expect("put");
        used.put(&id(11), USED).expect("put");
        assert_eq!(
            countable(&pack, &mut used).expect("countable"),
            vec![true, true, true, false]
        );
        used.put(&id(12), USED | LOCATED).expect("put");
        assert_eq!(
            countable(&pack, &mut used).expect("countable"),
            vec![true; 4]
        );
    }
}
