//! A bounded memory of file contents already copied in this run: source content → destination
//! content.
//!
//! The same content often appears many times (unchanged files in every snapshot of a series,
//! duplicate files in one tree). Copying it again would read and cut it again only to find every
//! chunk already at the destination; the memo skips the reading. It is keyed by a keyed hash of
//! the source content's id list (same ids, same bytes), holds at most [`MAX_IDS`] destination
//! ids in total, and forgets the least recently used entries first, so memory does not grow with
//! the number of files.

use std::collections::{HashMap, VecDeque};

use repo_format::{BlobId, Content, RepoKeys};

/// Destination blob ids held at most, over all entries (32 bytes each: 8 MiB).
pub(super) const MAX_IDS: usize = 256 * 1024;

/// Entries held at most (each costs a key and a small header even for an empty file).
const MAX_ENTRIES: usize = 64 * 1024;

/// The memo key of a source content: the source repository's keyed hash of its form and ids.
pub(super) fn memo_key(src_keys: &RepoKeys, content: &Content) -> BlobId {
    let (form, ids) = match content {
        Content::Direct(ids) => (0u8, ids),
        Content::Indirect(ids) => (1u8, ids),
    };
    let mut bytes = Vec::with_capacity(1 + 32 * ids.len());
    bytes.push(form);
    for id in ids {
        bytes.extend_from_slice(&id.0.0);
    }
    src_keys.blob_id(&bytes)
}

struct Entry {
    content: Content,
    stamp: u64,
}

/// Source content key → destination content, least recently used forgotten first.
#[derive(Default)]
pub(super) struct ContentMemo {
    map: HashMap<BlobId, Entry>,
    /// `(key, stamp)` in order of use; an element whose stamp is no longer its entry's is stale.
    order: VecDeque<(BlobId, u64)>,
    clock: u64,
    ids: usize,
}

fn id_count(c: &Content) -> usize {
    match c {
        Content::Direct(ids) | Content::Indirect(ids) => ids.len(),
    }
}

impl ContentMemo {
    /// The destination content remembered for `key`, marking it used.
    pub(super) fn get(&mut self, key: &BlobId) -> Option<Content> {
        self.clock += 1;
        let stamp = self.clock;
        let entry = self.map.get_mut(key)?;
        entry.stamp = stamp;
        let content = entry.content.clone();
        self.order.push_back((*key, stamp));
        self.compact();
        Some(content)
    }

    /// Remembers `content` for `key` (a content too large for the whole budget is not kept).
    pub(super) fn insert(&mut self, key: BlobId, content: Content) {
        let n = id_count(&content);
        if n > MAX_IDS {
            return;
        }
        self.clock += 1;
        let stamp = self.clock;
        if let Some(old) = self.map.insert(key, Entry { content, stamp }) {
            self.ids -= id_count(&old.content);
        }
        self.ids += n;
        self.order.push_back((key, stamp));
        while self.ids > MAX_IDS || self.map.len() > MAX_ENTRIES {
            let Some((k, s)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&k).is_some_and(|e| e.stamp == s)
                && let Some(e) = self.map.remove(&k)
            {
                self.ids -= id_count(&e.content);
            }
        }
        self.compact();
    }

    /// Drops stale elements of `order` once they outnumber the live ones.
    fn compact(&mut self) {
        if self.order.len() <= 2 * self.map.len() + 64 {
            return;
        }
        let map = &self.map;
        self.order
            .retain(|(k, s)| map.get(k).is_some_and(|e| e.stamp == *s));
    }

    /// Entries held (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use repo_format::{Id, MasterKey};

    fn id(n: u32) -> BlobId {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&n.to_le_bytes());
        BlobId(Id(b))
    }

    #[test]
    fn keys_tell_forms_and_lists_apart() {
        let keys = RepoKeys::new(Id([1; 32]), MasterKey::from_bytes([7; 72]));
        let a = memo_key(&keys, &Content::Direct(vec![id(1), id(2)]));
        assert_eq!(a, memo_key(&keys, &Content::Direct(vec![id(1), id(2)])));
        assert_ne!(a, memo_key(&keys, &Content::Indirect(vec![id(1), id(2)])));
        assert_ne!(a, memo_key(&keys, &Content::Direct(vec![id(2), id(1)])));
        let other = RepoKeys::new(Id([1; 32]), MasterKey::from_bytes([8; 72]));
        assert_ne!(a, memo_key(&other, &Content::Direct(vec![id(1), id(2)])));
    }

    #[test]
    fn bounded_and_least_recently_used_goes_first() {
        let mut m = ContentMemo::default();
        let big = |n: u32| Content::Direct((0..1024).map(|i| id(n * 10_000 + i)).collect());
        m.insert(id(0), big(0));
        m.insert(id(1), big(1));
        // Use 0, so 1 is the least recently used.
        assert!(m.get(&id(0)).is_some());
        let per_entry = 1024;
        for n in 2..(MAX_IDS / per_entry) as u32 + 1 {
            m.insert(id(n), big(n));
        }
        assert!(m.ids <= MAX_IDS);
        assert!(
            m.get(&id(1)).is_none(),
            "the least recently used was dropped"
        );
        assert!(m.get(&id(0)).is_some(), "the recently used one stayed");
        // Many gets of one entry do not grow the order queue without bound.
        for _ in 0..100_000 {
            let _ = m.get(&id(0));
        }
        assert!(m.order.len() <= 2 * m.len() + 64);
        // A content larger than the whole budget is not kept.
        let huge = Content::Indirect(vec![id(1); MAX_IDS + 1]);
        m.insert(id(1_000_000), huge);
        assert!(m.get(&id(1_000_000)).is_none());
        // Replacing an entry does not count its ids twice.
        let before = m.ids;
        m.insert(id(0), big(0));
        assert_eq!(m.ids, before);
    }
}
