//! The set of blobs the snapshots need, on disk: a throw-away RocksDB database, so prune's
//! memory does not grow with the number of blobs (a repository of 10 million blobs would need
//! ~600 MB as a hash set; here the memtables and block cache bound it).
//!
//! What bounds it: two 8 MiB memtables, and a 16 MiB block cache that also holds the tables'
//! Bloom filters and indexes (partitioned, so a lookup loads one small partition; RocksDB
//! otherwise keeps every open table's filter and index outside the cache, ~1.5 bytes a blob).
//! Most lookups miss the memtables (the set is written before it is read), so the memtables
//! have a Bloom filter too: without it a third of prune's scan went into skip-list searches.
//! Measured in benches/README.md ("Prune memory").
//!
//! Each key is a blob id; its value is one byte of flags ([`USED`], [`LOCATED`],
//! [`ELSEWHERE`]). The database lives in a fresh directory under the cache directory and is
//! deleted when the set is dropped.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use repo_format::{BlobId, Content, NodeKind, SnapshotId};
use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, DB, DBCompressionType, Options, WriteBatch,
    WriteOptions,
};

use crate::error::{Error, ErrorKind, Result};
use crate::repository::{Repository, random_bytes};

/// A snapshot needs the blob.
pub const USED: u8 = 1;
/// The plan scan counted a stored copy of the blob (later copies are duplicates).
pub const LOCATED: u8 = 2;
/// The sweep found a copy in a pack it does not delete.
pub const ELSEWHERE: u8 = 4;
/// Like [`LOCATED`], for the second count after a sweep changed the index.
pub const LOCATED_AGAIN: u8 = 8;

/// Ids written per batch.
const BATCH: usize = 65_536;
/// Each of the (at most two) memtables.
const WRITE_BUFFER_BYTES: usize = 8 << 20;
/// Data blocks, and the filter and index partitions.
const BLOCK_CACHE_BYTES: usize = 16 << 20;

/// An on-disk map blob id → flags. See the module docs.
pub struct UsedSet {
    // Field order matters: the database closes before its directory is removed.
    db: DB,
    _dir: WorkDir,
    batch: WriteBatch,
    batched: usize,
    /// Trees queued in the current batch (so a tree shared by two snapshots is walked once
    /// even before the batch is written).
    batch_trees: HashSet<BlobId>,
}

fn db_err(what: &str, e: rocksdb::Error) -> Error {
    Error::with_source(
        ErrorKind::Cache,
        format!("prune's used-blob set: cannot {what}"),
        e,
    )
}

impl UsedSet {
    /// Creates an empty set in a new directory under `parent`.
    pub fn create(parent: &Path) -> Result<UsedSet> {
        let dir = parent.join(format!("prune-{}", hex::encode(random_bytes::<8>()?)));
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::io(
                format!("cannot create prune's work directory {}", dir.display()),
                e,
            )
        })?;
        let cache =
            Cache::new_lru_cache(BLOCK_CACHE_BYTES).map_err(|e| db_err("create a cache", e))?;
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_bloom_filter(10.0, false);
        table.set_cache_index_and_filter_blocks(true);
        table.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
        table.set_partition_filters(true);
        table.set_pin_top_level_index_and_filter(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_block_based_table_factory(&table);
        opts.set_write_buffer_size(WRITE_BUFFER_BYTES);
        opts.set_max_write_buffer_number(2);
        opts.set_memtable_prefix_bloom_ratio(0.1);
        opts.set_memtable_whole_key_filtering(true);
        opts.set_max_open_files(128);
        opts.set_compression_type(DBCompressionType::None);
        opts.set_keep_log_file_num(1);
        // Removed again on any error below, and when the set is dropped.
        let dir = WorkDir(dir);
        let db = DB::open(&opts, &dir.0).map_err(|e| db_err("open", e))?;
        Ok(UsedSet {
            db,
            _dir: dir,
            batch: WriteBatch::default(),
            batched: 0,
            batch_trees: HashSet::new(),
        })
    }

    fn db(&self) -> &DB {
        &self.db
    }

    fn write_opts() -> WriteOptions {
        let mut w = WriteOptions::default();
        // A crash loses the set, which is rebuilt on the next run anyway.
        w.disable_wal(true);
        w
    }

    /// Writes the pending batch.
    pub fn flush(&mut self) -> Result<()> {
        if self.batched == 0 {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.db()
            .write_opt(batch, &Self::write_opts())
            .map_err(|e| db_err("write", e))?;
        self.batched = 0;
        self.batch_trees.clear();
        Ok(())
    }

    /// Sets `flags` on `id` (replacing what was there).
    pub fn put(&mut self, id: &BlobId, flags: u8) -> Result<()> {
        self.batch.put(id.0.0, [flags]);
        self.batched += 1;
        if self.batched >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// The flags of many ids (0 for an absent id); flushes first.
    pub fn get_many(&mut self, ids: &[BlobId]) -> Result<Vec<u8>> {
        self.flush()?;
        self.db()
            .multi_get(ids.iter().map(|id| id.0.0))
            .into_iter()
            .map(|r| {
                r.map(|v| v.and_then(|v| v.first().copied()).unwrap_or(0))
                    .map_err(|e| db_err("read", e))
            })
            .collect()
    }

    /// Whether `id` is in the set, including the pending batch for trees.
    fn has_tree(&self, id: &BlobId) -> Result<bool> {
        if self.batch_trees.contains(id) {
            return Ok(true);
        }
        Ok(self
            .db()
            .get_pinned(id.0.0)
            .map_err(|e| db_err("read", e))?
            .is_some())
    }

    /// Ids whose flags have `USED` but not `LOCATED`: blobs a snapshot needs that no index
    /// file names. Returns at most `limit` of them, and their total count.
    pub fn used_not_located(&mut self, limit: usize) -> Result<(Vec<BlobId>, u64)> {
        self.flush()?;
        let mut some = Vec::new();
        let mut count = 0;
        for item in self.db().iterator(rocksdb::IteratorMode::Start) {
            let (k, v) = item.map_err(|e| db_err("iterate", e))?;
            if v.first().is_some_and(|f| f & USED != 0 && f & LOCATED == 0) {
                count += 1;
                if some.len() < limit
                    && let Ok(id) = <[u8; 32]>::try_from(&*k)
                {
                    some.push(BlobId(repo_format::Id(id)));
                }
            }
        }
        Ok((some, count))
    }

    /// Adds every blob reachable from the snapshots' root trees: trees, content lists and
    /// data blobs. `tick` is called every 1000 trees (prune keeps its lease alive there); an
    /// error from it stops the walk. Each tree is read once, however many snapshots share it.
    pub fn add_snapshots(
        &mut self,
        repo: &Repository,
        roots: &[(SnapshotId, BlobId)],
        tick: &mut dyn FnMut() -> Result<()>,
    ) -> Result<u64> {
        let mut trees = 0u64;
        let mut count = 0u64;
        for (snap, root) in roots {
            let mut stack = vec![*root];
            while let Some(tree_id) = stack.pop() {
                if self.has_tree(&tree_id)? {
                    continue;
                }
                self.batch_trees.insert(tree_id);
                self.put(&tree_id, USED)?;
                count += 1;
                trees += 1;
                if trees.is_multiple_of(1000) {
                    tick()?;
                }
                let tree = repo.load_tree(&tree_id).map_err(|e| {
                    Error::with_source(
                        e.kind(),
                        format!(
                            "snapshot {} cannot be read completely, so prune cannot know what it needs (run `cairn check`)",
                            snap.0.short()
                        ),
                        e,
                    )
                })?;
                for node in tree.nodes {
                    match node.kind {
                        NodeKind::Dir { subtree } => stack.push(subtree),
                        NodeKind::File { content } => match content {
                            Content::Direct(ids) => {
                                for id in &ids {
                                    self.put(id, USED)?;
                                }
                                count += ids.len() as u64;
                            }
                            Content::Indirect(lists) => {
                                for list_id in &lists {
                                    self.put(list_id, USED)?;
                                    let list = repo.load_content_list(list_id)?;
                                    for id in &list.ids {
                                        self.put(id, USED)?;
                                    }
                                    count += 1 + list.ids.len() as u64;
                                }
                            }
                        },
                        _ => {}
                    }
                }
            }
        }
        self.flush()?;
        Ok(count)
    }
}

/// A directory removed (with everything in it) when dropped.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
