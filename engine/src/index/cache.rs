//! [`IndexCache`]: the local, rebuildable RocksDB cache of the repository's index files (SPEC §13).
//!
//! The index files in the repository are the truth about where blobs are; this cache answers
//! "where is blob X?" without reading them all on every run. Deleting it costs time only.
//!
//! # Layout (cache format version [`CACHE_FORMAT_VERSION`])
//!
//! | column family | key | value |
//! |---|---|---|
//! | `default` | `cairn-index-cache-format` | u32 LE: the cache format version |
//! | `blobs` | blob id (32) | pack id (32) ‖ blob type u8 ‖ compression u8 ‖ offset u32 ‖ stored_len u32 ‖ raw_len u32 ‖ group_offset u32 (50 bytes, LE), then one byte [`FILL_IN`] when a superseded file's entry filled it in |
//! | `files` | index file id (32) | u64 LE: how many blob entries the file has ‖ u8: 1 if they were added as a current file's, 0 as a superseded file's ‖ u32 LE `supersedes` count ‖ the ids it supersedes (32 each) |
//! | `bases` | pack id (32) ‖ the group envelope's offset in the pack, u32 BE | the base blob ids of the based group there (32 each, in order; SPEC §7) |
//!
//! A database written with another format version (or with column families this version does
//! not know) is destroyed and recreated empty on [`IndexCache::open`]; the caller then reloads
//! every index file, as for a fresh cache. Version 1 had only the entry count in `files`;
//! version 2 did not mark filled-in entries; version 3 had no `group_offset` (compression groups,
//! SPEC §7); version 4 had no `bases` (based groups).
//!
//! A based group's base is a fact of its pack's header, the same in every index file naming the
//! pack, so `bases` keeps whichever file was added last, current or superseded.
//!
//! # Superseded index files
//!
//! SPEC §8: for a blob that a current index file names (one that no other listed index file
//! `supersedes`), the location comes from a current file; a superseded file's entries only fill
//! in blobs that no other file names. [`IndexCache::add_index_file`] adds a current file's
//! entries over whatever is there; [`IndexCache::add_superseded_index_file`] adds a superseded
//! file's entries only where the blob has none, so the result does not depend on the order in
//! which the files are added. A filled-in entry is marked ([`FILL_IN`]): reads use it (the
//! blob may be only there, e.g. after an interrupted `repair index`), but backups never
//! deduplicate against it ([`IndexCache::lookup_for_dedup`]), because it is exactly what a
//! prune's sweep dropped, in packs it deleted, when the storage replays an old index file.
//! The cache keeps each file's `supersedes` list and role
//! ([`IndexFileRecord`]) so that the caller ([`crate::repository::Repository::sync_index`])
//! can tell from the records alone which files are superseded, and notice a file added as
//! current that a file added later supersedes (then it clears the cache and adds them again).
//!
//! # Consistency
//!
//! An index file is marked as loaded (`files`) in the same write batch as its last blob entries
//! ([`IndexCache::add_index_file`]). RocksDB applies a batch atomically and recovers batches in
//! order, so after a crash either the marker and all entries are there, or the marker is missing
//! and the file is simply loaded again (re-writing identical entries). Entries without a marker
//! point at blobs that an index file names, but they may have overridden a current file's
//! location with a superseded file's (a file added as current, then found superseded after
//! the crash): so a file added in several batches is flagged in the default column family
//! (`cairn-index-cache-adding/` ‖ its id) from its first batch to its last, and a flag left
//! behind ([`IndexCache::interrupted`]) makes the caller clear the cache.
//!
//! A blob that several index files name (SPEC §7 allows duplicates) keeps the location from
//! whichever file was added last; every such location is valid.
//!
//! # Closing
//!
//! Dropping a cache that was written flushes its memtables to table files, so the next open
//! has no write-ahead log to replay (replaying a first backup's entries cost the next run
//! ~100 ms). A flush that fails leaves the log, which the next open replays as before. A cache
//! about to be deleted is closed with [`IndexCache::discard`] instead.
//!
//! # Memory
//!
//! Bounded and modest: one 32 MiB LRU block cache shared by the column families (index and
//! filter blocks included), 16 MiB write buffers (at most two per family), at most 256 open
//! files. `blobs` has a bloom filter so the common backup question "is this new blob already
//! stored?" usually answers "no" without reading a data block.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use repo_format::{BlobId, BlobType, Compression, Id, IndexEntry, IndexFile, IndexId, PackId};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, DBCompressionType, Options, WriteBatch,
};

/// Version of the cache's own layout (not the repository format). Bump it when the keys or
/// values below change: caches written by other versions are then wiped and rebuilt.
/// Version 2 added the role and the `supersedes` ids to the `files` values.
pub const CACHE_FORMAT_VERSION: u32 = 5;

/// The byte after a blob location that a superseded index file filled in (see the module docs).
pub const FILL_IN: u8 = 1;

/// Key of the format version, in the default column family.
const FORMAT_VERSION_KEY: &[u8] = b"cairn-index-cache-format";
/// Prefix of the keys, in the default column family, of index files being added in several
/// batches (see "Consistency" in the module docs).
const ADDING_PREFIX: &[u8] = b"cairn-index-cache-adding/";
/// The first key after every key with [`ADDING_PREFIX`] (`'/' + 1` is `'0'`).
const ADDING_END: &[u8] = b"cairn-index-cache-adding0";

/// Column family: blob id → location.
const CF_BLOBS: &str = "blobs";
/// Column family: index file id → [`IndexFileRecord`].
const CF_FILES: &str = "files";
/// Column family: pack id ‖ group envelope offset → a based group's base blob ids.
const CF_BASES: &str = "bases";

/// Lookups of more blobs than this are split into batches of this size, read in parallel (a
/// restore's slice of 4096 small files looks up ~4500 blobs: 7.5 ms on one thread, 5-7 ms in
/// batches of 1024). Backups' dedup lookups, check and diff batch the same way.
const PARALLEL_LOOKUP_BATCH: usize = 1024;

/// Every column family this version uses.
const COLUMN_FAMILIES: [&str; 4] = [
    rocksdb::DEFAULT_COLUMN_FAMILY_NAME,
    CF_BLOBS,
    CF_FILES,
    CF_BASES,
];

/// Length of an encoded blob location: pack id, type, compression, offset, stored and raw length.
pub const LOCATION_LEN: usize = 32 + 1 + 1 + 4 + 4 + 4 + 4;

/// Shared LRU block cache (data, index and filter blocks).
const BLOCK_CACHE_BYTES: usize = 32 << 20;
/// Memtable size per column family.
const WRITE_BUFFER_BYTES: usize = 16 << 20;
/// Upper bound on the SST files RocksDB keeps open.
const MAX_OPEN_FILES: i32 = 256;
/// Blob entries per write batch while adding one index file (bounds the batch's memory).
const ENTRIES_PER_BATCH: usize = 65_536;
/// Length of a `files` value before the superseded ids: entry count, role, id count.
const RECORD_HEADER_LEN: usize = 8 + 1 + 4;

/// What the cache records about one index file it has seen (a `files` value).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexFileRecord {
    /// How many blob entries the file has.
    pub entries: u64,
    /// Whether the file was added as a current one ([`IndexCache::add_index_file`]: its
    /// entries override others) or, `false`, as a superseded one
    /// ([`IndexCache::add_superseded_index_file`]: its entries only fill in blobs that no other
    /// file names).
    pub current: bool,
    /// The index files this one supersedes (SPEC §8), as the file lists them.
    pub supersedes: Vec<IndexId>,
}

/// Encodes an index file record as the `files` value (see the module docs).
fn encode_record(record: &IndexFileRecord) -> Result<Vec<u8>, String> {
    let count = u32::try_from(record.supersedes.len())
        .map_err(|_| format!("{} superseded ids do not fit", record.supersedes.len()))?;
    let mut out = Vec::with_capacity(RECORD_HEADER_LEN + 32 * record.supersedes.len());
    out.extend_from_slice(&record.entries.to_le_bytes());
    out.push(u8::from(record.current));
    out.extend_from_slice(&count.to_le_bytes());
    for id in &record.supersedes {
        out.extend_from_slice(&id.0.0);
    }
    Ok(out)
}

/// Decodes a `files` value; `Err` says what is wrong with it.
fn decode_record(value: &[u8]) -> Result<IndexFileRecord, String> {
    let Some((header, ids)) = value.split_first_chunk::<RECORD_HEADER_LEN>() else {
        return Err(format!(
            "value is {} bytes, expected at least {RECORD_HEADER_LEN}",
            value.len()
        ));
    };
    let (entries, rest) = header.split_at(8);
    let mut entries_le = [0u8; 8];
    entries_le.copy_from_slice(entries);
    let current = match rest[0] {
        0 => false,
        1 => true,
        r => return Err(format!("unknown role {r}")),
    };
    let count = u32::from_le_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
    if ids.len() != count.saturating_mul(32) {
        return Err(format!(
            "{count} superseded ids need {} bytes after the header, found {}",
            count.saturating_mul(32),
            ids.len()
        ));
    }
    let supersedes = ids
        .chunks_exact(32)
        .map(|c| {
            let mut id = [0u8; 32];
            id.copy_from_slice(c);
            IndexId(Id(id))
        })
        .collect();
    Ok(IndexFileRecord {
        entries: u64::from_le_bytes(entries_le),
        current,
        supersedes,
    })
}

/// Where a blob is stored: its pack and its entry in that pack (offset, lengths, type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobLocation {
    /// The pack that holds the blob.
    pub pack: PackId,
    /// The blob's index entry (its `id` is the blob id looked up).
    pub entry: IndexEntry,
}

/// An error of the index cache. The cache can always be rebuilt: on [`CacheError::Corrupt`],
/// [`IndexCache::clear`] it and reload the index files; if it cannot even be opened,
/// [`IndexCache::destroy`] the directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// RocksDB could not open (or recreate) the database.
    #[error("cannot open the index cache at {}", path.display())]
    Open {
        /// The cache directory.
        path: PathBuf,
        /// RocksDB's error.
        #[source]
        source: rocksdb::Error,
    },
    /// Another process (another cairn on the same repository) has the database open.
    #[error("the index cache at {} is in use by another process", path.display())]
    Locked {
        /// The cache directory.
        path: PathBuf,
        /// RocksDB's error.
        #[source]
        source: rocksdb::Error,
    },
    /// A read or write failed.
    #[error("cannot {op} the index cache at {}", path.display())]
    Db {
        /// What was being done, e.g. `read a blob location from`.
        op: &'static str,
        /// The cache directory.
        path: PathBuf,
        /// RocksDB's error.
        #[source]
        source: rocksdb::Error,
    },
    /// A stored key or value is not what this version writes; clear the cache and rebuild it.
    #[error("the index cache at {} is corrupt: {cf} key {key}: {detail}", path.display())]
    Corrupt {
        /// The cache directory.
        path: PathBuf,
        /// The column family.
        cf: &'static str,
        /// The key, in hex.
        key: String,
        /// What is wrong with it.
        detail: String,
    },
}

/// The local index cache of one repository. `Send + Sync`: share it by reference.
pub struct IndexCache {
    db: DB,
    path: PathBuf,
    /// Set by every write: [`Drop`] then flushes the memtables (see "Closing" in the module docs).
    written: AtomicBool,
}

impl Drop for IndexCache {
    fn drop(&mut self) {
        if !self.written.load(Ordering::Relaxed) {
            return;
        }
        // Best effort: a flush that fails leaves the entries in the write-ahead log, which the
        // next open replays, as without this.
        for name in COLUMN_FAMILIES {
            if let Some(cf) = self.db.cf_handle(name) {
                let _ = self.db.flush_cf(cf);
            }
        }
    }
}

impl std::fmt::Debug for IndexCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexCache")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The database options: see "Memory" in the module docs.
fn db_options() -> Result<Options, rocksdb::Error> {
    let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES)?;
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&cache);
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    table.set_bloom_filter(10.0, false);

    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_block_based_table_factory(&table);
    opts.set_write_buffer_size(WRITE_BUFFER_BYTES);
    opts.set_max_write_buffer_number(2);
    opts.set_max_open_files(MAX_OPEN_FILES);
    opts.set_max_background_jobs(2);
    opts.set_level_compaction_dynamic_level_bytes(true);
    // Keys are hashes and values mostly hashes: compression would cost CPU for nothing.
    opts.set_compression_type(DBCompressionType::None);
    // Keep RocksDB's own log files from piling up in the cache directory.
    opts.set_keep_log_file_num(2);
    opts.set_max_log_file_size(1 << 20);
    Ok(opts)
}

/// Where a `blobs` value holds the entry's compression.
const COMPRESSION_AT: usize = 33;

/// Encodes a blob location as the `blobs` value (see the module docs).
pub fn encode_location(pack: &PackId, entry: &IndexEntry) -> [u8; LOCATION_LEN] {
    let mut out = [0u8; LOCATION_LEN];
    out[..32].copy_from_slice(&pack.0.0);
    out[32] = entry.blob_type as u8;
    out[COMPRESSION_AT] = entry.compression as u8;
    out[34..38].copy_from_slice(&entry.offset.to_le_bytes());
    out[38..42].copy_from_slice(&entry.stored_len.to_le_bytes());
    out[42..46].copy_from_slice(&entry.raw_len.to_le_bytes());
    out[46..50].copy_from_slice(&entry.group_offset.to_le_bytes());
    out
}

/// Whether a stored location is one a superseded index file filled in.
fn is_fill_in(value: &[u8]) -> bool {
    value.len() == LOCATION_LEN + 1 && value[LOCATION_LEN] == FILL_IN
}

/// Decodes a `blobs` value for blob `id`; `Err` says what is wrong with it.
pub fn decode_location(id: BlobId, value: &[u8]) -> Result<BlobLocation, String> {
    let value: &[u8; LOCATION_LEN] = value
        .try_into()
        .map_err(|_| format!("value is {} bytes, expected {LOCATION_LEN}", value.len()))?;
    let (pack, rest) = value.split_at(32);
    let mut pack_id = [0u8; 32];
    pack_id.copy_from_slice(pack);
    let blob_type = match rest[0] {
        0 => BlobType::Data,
        1 => BlobType::Tree,
        t => return Err(format!("unknown blob type {t}")),
    };
    let compression = match rest[1] {
        0 => Compression::Raw,
        1 => Compression::Zstd,
        2 => Compression::Group,
        3 => Compression::Based,
        c => return Err(format!("unknown compression {c}")),
    };
    let u32_at = |i: usize| u32::from_le_bytes([rest[i], rest[i + 1], rest[i + 2], rest[i + 3]]);
    Ok(BlobLocation {
        pack: PackId(Id(pack_id)),
        entry: IndexEntry {
            blob_type,
            compression,
            offset: u32_at(2),
            stored_len: u32_at(6),
            raw_len: u32_at(10),
            id,
            group_offset: u32_at(14),
        },
    })
}

impl IndexCache {
    /// Opens (or creates) the cache in `dir`. A cache of another format version is wiped.
    pub fn open(dir: &Path) -> Result<IndexCache, CacheError> {
        let path = dir.to_path_buf();
        let open_err = |source: rocksdb::Error| {
            if is_lock_error(&source) {
                CacheError::Locked {
                    path: path.clone(),
                    source,
                }
            } else {
                CacheError::Open {
                    path: path.clone(),
                    source,
                }
            }
        };
        if let Some(parent) = dir.parent() {
            // RocksDB creates only the last directory itself.
            let _ = std::fs::create_dir_all(parent);
        }
        let opts = db_options().map_err(open_err)?;
        // Open every column family the database has (opening fails otherwise), plus ours.
        let existing = DB::list_cf(&opts, dir).unwrap_or_default();
        let unknown = existing
            .iter()
            .any(|cf| !COLUMN_FAMILIES.contains(&cf.as_str()));
        let mut names: Vec<String> = COLUMN_FAMILIES.iter().map(|s| (*s).to_owned()).collect();
        names.extend(
            existing
                .iter()
                .filter(|cf| !COLUMN_FAMILIES.contains(&cf.as_str()))
                .cloned(),
        );
        let db = open_db(&opts, dir, &names).map_err(open_err)?;
        let cache = IndexCache {
            db,
            path: path.clone(),
            written: AtomicBool::new(false),
        };

        let version = cache
            .db
            .get(FORMAT_VERSION_KEY)
            .map_err(|source| cache.db_err("read the format version of", source))?;
        let fresh = version.is_none() && cache.is_empty()?;
        let current = version.as_deref() == Some(&CACHE_FORMAT_VERSION.to_le_bytes()[..]);
        if (current || fresh) && !unknown {
            if fresh {
                cache.write_version()?;
            }
            return Ok(cache);
        }

        // Another layout: start over.
        drop(cache);
        DB::destroy(&opts, dir).map_err(open_err)?;
        let names: Vec<String> = COLUMN_FAMILIES.iter().map(|s| (*s).to_owned()).collect();
        let db = open_db(&opts, dir, &names).map_err(open_err)?;
        let cache = IndexCache {
            db,
            path,
            written: AtomicBool::new(false),
        };
        cache.write_version()?;
        Ok(cache)
    }

    /// Closes the cache without flushing it: for a cache about to be deleted (a private or
    /// temporary one), whose tables would be written for nothing.
    pub fn discard(self) {
        self.written.store(false, Ordering::Relaxed);
    }

    /// Deletes the cache in `dir` (it must not be open). For a cache that cannot be opened.
    pub fn destroy(dir: &Path) -> Result<(), CacheError> {
        let path = dir.to_path_buf();
        let opts = db_options().map_err(|source| CacheError::Open {
            path: path.clone(),
            source,
        })?;
        DB::destroy(&opts, dir).map_err(|source| CacheError::Open { path, source })
    }

    /// The cache directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The ids of the index files whose entries are all in the cache.
    pub fn known_index_files(&self) -> Result<HashSet<IndexId>, CacheError> {
        Ok(self.index_files()?.into_keys().collect())
    }

    /// Every index file whose entries are in the cache, with its role and what it supersedes.
    pub fn index_files(&self) -> Result<HashMap<IndexId, IndexFileRecord>, CacheError> {
        let cf = self.cf(CF_FILES)?;
        let mut out = HashMap::new();
        for item in self.db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
            let (key, value) =
                item.map_err(|source| self.db_err("list the index files of", source))?;
            let id = self.id_key(CF_FILES, &key)?;
            let record = decode_record(&value).map_err(|detail| CacheError::Corrupt {
                path: self.path.clone(),
                cf: CF_FILES,
                key: id.to_hex(),
                detail,
            })?;
            out.insert(IndexId(id), record);
        }
        Ok(out)
    }

    /// Adds every entry of index file `id` over whatever the cache says about those blobs
    /// (except that a member of a based group never replaces a plain copy another current file
    /// named), and records the file (with its `supersedes` list) in the same write batch as its
    /// last entries (see "Consistency" in the module docs).
    pub fn add_index_file(&self, id: IndexId, file: &IndexFile) -> Result<(), CacheError> {
        self.add_file(id, file, true)
    }

    /// Like [`IndexCache::add_index_file`] for a file that another listed index file
    /// supersedes: its entries are added only for blobs the cache has no location for, so a
    /// current file's location always wins, whichever is added first. (The check and the write
    /// are two steps: a current file added at the same moment from another thread could lose a
    /// blob to it. The sync adds files one at a time.)
    pub fn add_superseded_index_file(
        &self,
        id: IndexId,
        file: &IndexFile,
    ) -> Result<(), CacheError> {
        self.add_file(id, file, false)
    }

    /// [`IndexCache::add_index_file`] (`current`) or
    /// [`IndexCache::add_superseded_index_file`], in batches of [`ENTRIES_PER_BATCH`].
    fn add_file(&self, id: IndexId, file: &IndexFile, current: bool) -> Result<(), CacheError> {
        let blobs = self.cf(CF_BLOBS)?;
        let files = self.cf(CF_FILES)?;
        let mut entries = file
            .packs
            .iter()
            .flat_map(|p| p.entries.iter().map(move |e| (p.id, e)))
            .peekable();
        let mut chunk: Vec<(PackId, &IndexEntry)> = Vec::new();
        let mut total = 0u64;
        let adding = [ADDING_PREFIX, &id.0.0[..]].concat();
        let mut first = true;
        loop {
            chunk.clear();
            chunk.extend(entries.by_ref().take(ENTRIES_PER_BATCH));
            total += chunk.len() as u64;
            let mut batch = WriteBatch::default();
            // What the cache says now, where it matters: a superseded file fills in only where
            // no location is known; a member of a based group does not replace a plain copy a
            // current file gave (readers take the plain one: no base to load, and it stays
            // readable when prune lets a duplicate group's base go, SPEC §18 P4), whichever
            // file is added first.
            let read_known = !current
                || chunk
                    .iter()
                    .any(|(_, e)| e.compression == Compression::Based);
            // Per entry: None where no location is known, else whether it is a plain copy
            // (neither a fill-in nor a based member).
            let known: Vec<Option<bool>> = if read_known {
                self.db
                    .batched_multi_get_cf(blobs, chunk.iter().map(|(_, e)| e.id.0.0), false)
                    .into_iter()
                    .map(|v| {
                        v.map(|v| {
                            v.map(|v| {
                                !is_fill_in(&v)
                                    && v.get(COMPRESSION_AT) != Some(&(Compression::Based as u8))
                            })
                        })
                        .map_err(|source| self.db_err("read blob locations from", source))
                    })
                    .collect::<Result<_, _>>()?
            } else {
                Vec::new()
            };
            for (i, (pack, entry)) in chunk.iter().enumerate() {
                let known = known.get(i).copied().flatten();
                if current {
                    if !(entry.compression == Compression::Based && known == Some(true)) {
                        batch.put_cf(blobs, entry.id.0.0, encode_location(pack, entry));
                    }
                } else if known.is_none() {
                    let mut value = encode_location(pack, entry).to_vec();
                    value.push(FILL_IN);
                    batch.put_cf(blobs, entry.id.0.0, value);
                }
            }
            let last = entries.peek().is_none();
            if first && !last {
                batch.put(&adding, []);
            }
            if last && !first {
                batch.delete(&adding);
            }
            first = false;
            if last {
                // With the record: a file is loaded with its bases or not at all.
                let bases = self.cf(CF_BASES)?;
                for p in &file.packs {
                    for b in &p.bases {
                        let ids: Vec<u8> = b.ids.iter().flat_map(|id| id.0.0).collect();
                        batch.put_cf(bases, base_key(&p.id, b.offset), ids);
                    }
                }
                let record = IndexFileRecord {
                    entries: total,
                    current,
                    supersedes: file.supersedes.clone(),
                };
                batch.put_cf(files, id.0.0, self.encode_record(id.0, &record)?);
            }
            self.db
                .write(batch)
                .map_err(|source| self.db_err("write index entries to", source))?;
            self.written.store(true, Ordering::Relaxed);
            if last {
                return Ok(());
            }
        }
    }

    /// Where blob `id` is stored, if any loaded index file names it.
    pub fn lookup(&self, id: &BlobId) -> Result<Option<BlobLocation>, CacheError> {
        let cf = self.cf(CF_BLOBS)?;
        let value = self
            .db
            .get_pinned_cf(cf, id.0.0)
            .map_err(|source| self.db_err("read a blob location from", source))?;
        value.map(|v| self.decode(*id, &v)).transpose()
    }

    /// [`IndexCache::lookup`] for many blobs in one batched read; results in the order of `ids`.
    pub fn lookup_many(&self, ids: &[BlobId]) -> Result<Vec<Option<BlobLocation>>, CacheError> {
        self.lookup_many_where(ids, true)
    }

    /// Where a blob is stored, for deduplication: like [`IndexCache::lookup`], but `None` for an
    /// entry only a superseded index file filled in (a backup stores such a blob again).
    pub fn lookup_for_dedup(&self, id: &BlobId) -> Result<Option<BlobLocation>, CacheError> {
        let cf = self.cf(CF_BLOBS)?;
        let value = self
            .db
            .get_pinned_cf(cf, id.0.0)
            .map_err(|source| self.db_err("read a blob location from", source))?;
        value
            .filter(|v| !is_fill_in(v))
            .map(|v| self.decode(*id, &v))
            .transpose()
    }

    /// [`IndexCache::lookup_for_dedup`] for many blobs in one batched read.
    pub fn lookup_many_for_dedup(
        &self,
        ids: &[BlobId],
    ) -> Result<Vec<Option<BlobLocation>>, CacheError> {
        self.lookup_many_where(ids, false)
    }

    fn lookup_many_where(
        &self,
        ids: &[BlobId],
        with_fill_ins: bool,
    ) -> Result<Vec<Option<BlobLocation>>, CacheError> {
        if ids.len() <= PARALLEL_LOOKUP_BATCH {
            return self.lookup_batch(ids, with_fill_ins);
        }
        // A long list (a big stream's content list) is looked up on every core: a lookup is
        // CPU-bound (skiplist or block search and decoding) once the blocks are cached.
        let parts: Vec<_> = ids
            .par_chunks(PARALLEL_LOOKUP_BATCH)
            .map(|part| self.lookup_batch(part, with_fill_ins))
            .collect::<Result<_, _>>()?;
        Ok(parts.into_iter().flatten().collect())
    }

    /// One batched read of `ids`' locations, in order.
    fn lookup_batch(
        &self,
        ids: &[BlobId],
        with_fill_ins: bool,
    ) -> Result<Vec<Option<BlobLocation>>, CacheError> {
        let cf = self.cf(CF_BLOBS)?;
        let values = self
            .db
            .batched_multi_get_cf(cf, ids.iter().map(|id| id.0.0), false);
        ids.iter()
            .zip(values)
            .map(|(id, value)| {
                let value =
                    value.map_err(|source| self.db_err("read blob locations from", source))?;
                value
                    .filter(|v| with_fill_ins || !is_fill_in(v))
                    .map(|v| self.decode(*id, &v))
                    .transpose()
            })
            .collect()
    }

    /// The base of the based group at `offset` in `pack` (SPEC §7), if a loaded index file
    /// names one there.
    pub fn group_base(
        &self,
        pack: &PackId,
        offset: u32,
    ) -> Result<Option<Vec<BlobId>>, CacheError> {
        let value = self
            .db
            .get_pinned_cf(self.cf(CF_BASES)?, base_key(pack, offset))
            .map_err(|source| self.db_err("read a group base from", source))?;
        let Some(value) = value else {
            return Ok(None);
        };
        if value.is_empty() || value.len() % 32 != 0 {
            return Err(CacheError::Corrupt {
                path: self.path.clone(),
                cf: CF_BASES,
                key: format!("{}@{offset}", pack.0.to_hex()),
                detail: format!("a base of {} bytes", value.len()),
            });
        }
        let ids = value
            .chunks_exact(32)
            .map(|c| {
                let mut id = [0u8; 32];
                id.copy_from_slice(c);
                BlobId(Id(id))
            })
            .collect();
        Ok(Some(ids))
    }

    /// Whether any loaded index file names blob `id`.
    pub fn contains(&self, id: &BlobId) -> Result<bool, CacheError> {
        let cf = self.cf(CF_BLOBS)?;
        // The bloom filter answers most "no"s without touching a data block.
        if !self.db.key_may_exist_cf(cf, id.0.0) {
            return Ok(false);
        }
        self.db
            .get_pinned_cf(cf, id.0.0)
            .map(|v| v.is_some())
            .map_err(|source| self.db_err("read a blob location from", source))
    }

    /// Drops every entry and every index file marker (one atomic batch), then compacts so the
    /// space is reclaimed. The format version stays.
    pub fn clear(&self) -> Result<(), CacheError> {
        let mut batch = WriteBatch::default();
        // Keys are 32 bytes, so "" ..< [0xff; 40] covers them all, and stray keys of other
        // lengths (corruption) too, unless they start with 40 bytes of 0xff.
        let end = [0xffu8; 40];
        for name in [CF_BLOBS, CF_FILES, CF_BASES] {
            batch.delete_range_cf(self.cf(name)?, &[][..], &end[..]);
        }
        batch.delete_range(ADDING_PREFIX, ADDING_END);
        self.db
            .write(batch)
            .map_err(|source| self.db_err("clear", source))?;
        self.written.store(true, Ordering::Relaxed);
        for name in [CF_BLOBS, CF_FILES, CF_BASES] {
            self.db
                .compact_range_cf(self.cf(name)?, None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }

    /// Whether adding an index file in several batches was interrupted (a crash): some of its
    /// entries may be in the cache without its record, and may have overridden a current
    /// file's locations. [`IndexCache::clear`] the cache then.
    pub fn interrupted(&self) -> Result<bool, CacheError> {
        let mut it = self.db.iterator(rocksdb::IteratorMode::From(
            ADDING_PREFIX,
            rocksdb::Direction::Forward,
        ));
        match it.next() {
            None => Ok(false),
            Some(Ok((key, _))) => Ok(key.starts_with(ADDING_PREFIX)),
            Some(Err(source)) => Err(self.db_err("read", source)),
        }
    }

    /// RocksDB's estimate of the number of blob entries: approximate (overwritten and deleted
    /// keys count until compaction), for progress and statistics only.
    pub fn blob_count_estimate(&self) -> Result<u64, CacheError> {
        let cf = self.cf(CF_BLOBS)?;
        self.db
            .property_int_value_cf(cf, "rocksdb.estimate-num-keys")
            .map(Option::unwrap_or_default)
            .map_err(|source| self.db_err("read the size of", source))
    }

    fn cf(&self, name: &'static str) -> Result<&rocksdb::ColumnFamily, CacheError> {
        self.db.cf_handle(name).ok_or_else(|| CacheError::Corrupt {
            path: self.path.clone(),
            cf: name,
            key: String::new(),
            detail: "the column family is missing".to_owned(),
        })
    }

    fn db_err(&self, op: &'static str, source: rocksdb::Error) -> CacheError {
        CacheError::Db {
            op,
            path: self.path.clone(),
            source,
        }
    }

    fn decode(&self, id: BlobId, value: &[u8]) -> Result<BlobLocation, CacheError> {
        let value = if is_fill_in(value) {
            &value[..LOCATION_LEN]
        } else {
            value
        };
        decode_location(id, value).map_err(|detail| CacheError::Corrupt {
            path: self.path.clone(),
            cf: CF_BLOBS,
            key: id.0.to_hex(),
            detail,
        })
    }

    /// [`encode_record`], its only failure (more than 2^32 ids) reported for file `id`.
    fn encode_record(&self, id: Id, record: &IndexFileRecord) -> Result<Vec<u8>, CacheError> {
        encode_record(record).map_err(|detail| CacheError::Corrupt {
            path: self.path.clone(),
            cf: CF_FILES,
            key: id.to_hex(),
            detail,
        })
    }

    /// A 32-byte key as an id, or [`CacheError::Corrupt`].
    fn id_key(&self, cf: &'static str, key: &[u8]) -> Result<Id, CacheError> {
        <[u8; 32]>::try_from(key)
            .map(Id)
            .map_err(|_| CacheError::Corrupt {
                path: self.path.clone(),
                cf,
                key: hex::encode(key),
                detail: format!("key is {} bytes, expected 32", key.len()),
            })
    }

    fn write_version(&self) -> Result<(), CacheError> {
        self.db
            .put(FORMAT_VERSION_KEY, CACHE_FORMAT_VERSION.to_le_bytes())
            .map_err(|source| self.db_err("write the format version of", source))?;
        self.written.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// True if neither `blobs` nor `files` has a key.
    fn is_empty(&self) -> Result<bool, CacheError> {
        for name in [CF_BLOBS, CF_FILES] {
            let mut it = self
                .db
                .iterator_cf(self.cf(name)?, rocksdb::IteratorMode::Start);
            match it.next() {
                None => {}
                Some(Ok(_)) => return Ok(false),
                Some(Err(source)) => return Err(self.db_err("read", source)),
            }
        }
        Ok(true)
    }
}

/// The `bases` key of the group at `offset` in `pack`.
fn base_key(pack: &PackId, offset: u32) -> [u8; 36] {
    let mut key = [0u8; 36];
    key[..32].copy_from_slice(&pack.0.0);
    key[32..].copy_from_slice(&offset.to_be_bytes());
    key
}

/// Opens the database with the given column families, all with the same options.
fn open_db(opts: &Options, dir: &Path, names: &[String]) -> Result<DB, rocksdb::Error> {
    let cfs = names
        .iter()
        .map(|name| ColumnFamilyDescriptor::new(name, opts.clone()));
    DB::open_cf_descriptors(opts, dir, cfs)
}

/// RocksDB reports a held `LOCK` file as an I/O error mentioning the lock.
fn is_lock_error(e: &rocksdb::Error) -> bool {
    let msg = e.as_ref().to_ascii_lowercase();
    msg.contains("lock") && (msg.contains("temporarily unavailable") || msg.contains("hold"))
}

#[cfg(test)]
mod tests;
