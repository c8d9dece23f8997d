//! The compression groups (SPEC §7) a repository opened last, kept so that reads that come back
//! to a group (the next window of a restore, the next directory of a copy, the next small file)
//! neither fetch nor decompress it again.
//!
//! Day 2's new chunks scatter over a dump, so one group of them is touched by many windows of a
//! restore; small files of many directories share groups, and `copy` loads them a directory at a
//! time. Bounded by [`RECENT_GROUP_BYTES`] of plaintext, least recently used first out.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use repo_format::{BlobType, PackId};

use crate::index::cache::BlobLocation;

/// Plaintext of the groups kept: about 14 of the ~2 MiB groups writers make.
pub const RECENT_GROUP_BYTES: usize = 32 << 20;

/// Groups kept at most (small ones: a backup's last group closes early), so a lookup stays a
/// short scan.
pub const RECENT_GROUPS: usize = 64;

/// A group: its pack, its envelope's offset and length there, and its blob type (part of the
/// AAD it was opened under).
type GroupKey = (PackId, u32, u32, BlobType);

fn key(loc: &BlobLocation) -> GroupKey {
    (
        loc.pack,
        loc.entry.offset,
        loc.entry.stored_len,
        loc.entry.blob_type,
    )
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct RecentGroups {
    inner: Mutex<Lru>,
}

#[derive(Debug, Default)]
struct Lru {
    /// Most recently used last.
    groups: VecDeque<(GroupKey, Arc<Vec<u8>>)>,
    bytes: usize,
}

impl RecentGroups {
    /// The plaintext of the group `loc` (a grouped blob's location) is in, if kept.
    pub fn get(&self, loc: &BlobLocation) -> Option<Arc<Vec<u8>>> {
        if !loc.entry.is_grouped() {
            return None;
        }
        let k = key(loc);
        let mut lru = self.lock();
        let at = lru.groups.iter().position(|(g, _)| *g == k)?;
        let hit = lru.groups.remove(at)?;
        let plain = Arc::clone(&hit.1);
        lru.groups.push_back(hit);
        Some(plain)
    }

    /// Keeps the plaintext of the group `loc` is in (opened and authenticated by the caller),
    /// dropping the least recently used groups beyond the bound. A group larger than the bound
    /// is not kept.
    pub fn put(&self, loc: &BlobLocation, plain: Arc<Vec<u8>>) {
        if !loc.entry.is_grouped() || plain.len() > RECENT_GROUP_BYTES {
            return;
        }
        let k = key(loc);
        let mut lru = self.lock();
        if let Some(at) = lru.groups.iter().position(|(g, _)| *g == k)
            && let Some((_, old)) = lru.groups.remove(at)
        {
            lru.bytes -= old.len();
        }
        lru.bytes += plain.len();
        lru.groups.push_back((k, plain));
        while lru.bytes > RECENT_GROUP_BYTES || lru.groups.len() > RECENT_GROUPS {
            match lru.groups.pop_front() {
                Some((_, old)) => lru.bytes -= old.len(),
                None => break,
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        // Poisoned only by a panic elsewhere; the list is still a valid cache.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use repo_format::{BlobId, Compression, Id, IndexEntry};

    fn loc(pack: u8, offset: u32, grouped: bool) -> BlobLocation {
        BlobLocation {
            pack: PackId(Id([pack; 32])),
            entry: IndexEntry {
                blob_type: BlobType::Data,
                compression: if grouped {
                    Compression::Group
                } else {
                    Compression::Zstd
                },
                offset,
                stored_len: 100,
                raw_len: 10,
                id: BlobId(Id([offset as u8; 32])),
                group_offset: 0,
            },
        }
    }

    #[test]
    fn keeps_recent_groups_within_the_bound() {
        let r = RecentGroups::default();
        let third = RECENT_GROUP_BYTES / 3;
        r.put(&loc(1, 0, true), Arc::new(vec![1; third]));
        r.put(&loc(1, 100, true), Arc::new(vec![2; third]));
        r.put(&loc(2, 0, true), Arc::new(vec![3; third]));
        // Another pack, same offset: another group.
        assert_eq!(r.get(&loc(2, 0, true)).expect("kept")[0], 3);
        assert_eq!(r.get(&loc(1, 0, true)).expect("kept")[0], 1);
        // A fourth pushes out the least recently used: (1, 100).
        r.put(&loc(3, 0, true), Arc::new(vec![4; third]));
        assert!(r.get(&loc(1, 100, true)).is_none());
        assert!(r.get(&loc(1, 0, true)).is_some());
        assert!(r.get(&loc(3, 0, true)).is_some());
        // Single blobs and oversized groups are never kept.
        r.put(&loc(4, 0, false), Arc::new(vec![5; 10]));
        assert!(r.get(&loc(4, 0, false)).is_none());
        r.put(&loc(5, 0, true), Arc::new(vec![6; RECENT_GROUP_BYTES + 1]));
        assert!(r.get(&loc(5, 0, true)).is_none());
        assert!(
            r.get(&loc(3, 0, true)).is_some(),
            "an oversized group pushes nothing out"
        );
        // Same offset, another envelope length or blob type: another group.
        let mut longer = loc(3, 0, true);
        longer.entry.stored_len += 1;
        assert!(r.get(&longer).is_none());
        let mut tree = loc(3, 0, true);
        tree.entry.blob_type = BlobType::Tree;
        assert!(r.get(&tree).is_none());
        // Put again: replaced, counted once.
        r.put(&loc(3, 0, true), Arc::new(vec![7; third]));
        assert_eq!(r.get(&loc(3, 0, true)).expect("kept")[0], 7);
        assert!(
            r.get(&loc(1, 0, true)).is_some(),
            "a replaced group frees its bytes"
        );
        // At most RECENT_GROUPS groups, however small.
        let r = RecentGroups::default();
        for i in 0..=RECENT_GROUPS as u32 {
            r.put(&loc(9, i * 100, true), Arc::new(vec![1; 10]));
        }
        assert!(r.get(&loc(9, 0, true)).is_none());
        assert!(r.get(&loc(9, 100, true)).is_some());
    }
}
