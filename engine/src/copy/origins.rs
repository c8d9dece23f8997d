//! Which source snapshots the destination already has, and which earlier copy to compare with.
//!
//! A snapshot's *origin* (SPEC §10) is its `copied_from`, or its own id when it has none. Two
//! snapshots with the same origin hold the same backup, whatever repository they are in and
//! however many copies lie between them; this is how copy recognises what it copied before.

use std::collections::HashMap;

use repo_format::{BlobId, Snapshot, SnapshotId};

/// The origin of snapshot `id`.
pub fn origin(id: &SnapshotId, s: &Snapshot) -> SnapshotId {
    s.copied_from.unwrap_or(*id)
}

/// A copy at the destination: its id and root tree.
#[derive(Clone, Copy, Debug)]
pub(super) struct DestCopy {
    pub(super) id: SnapshotId,
    pub(super) tree: BlobId,
}

/// The source's snapshots and the destination's, matched by origin.
pub(super) struct Origins {
    /// Every readable source snapshot, oldest first.
    sources: Vec<(SnapshotId, Snapshot)>,
    /// Index into `sources` by id.
    by_id: HashMap<SnapshotId, usize>,
    /// The destination's snapshots by origin.
    copies: HashMap<SnapshotId, DestCopy>,
}

impl Origins {
    pub(super) fn new(
        sources: Vec<(SnapshotId, Snapshot)>,
        destination: &[(SnapshotId, Snapshot)],
    ) -> Origins {
        let by_id = sources
            .iter()
            .enumerate()
            .map(|(i, (id, _))| (*id, i))
            .collect();
        let copies = destination
            .iter()
            .map(|(id, s)| {
                (
                    origin(id, s),
                    DestCopy {
                        id: *id,
                        tree: s.tree,
                    },
                )
            })
            .collect();
        Origins {
            sources,
            by_id,
            copies,
        }
    }

    /// A source snapshot, if it was listed.
    pub(super) fn source(&self, id: &SnapshotId) -> Option<&Snapshot> {
        self.by_id.get(id).map(|&i| &self.sources[i].1)
    }

    /// The origin of source snapshot `id` (its own id when it is not listed).
    fn source_origin(&self, id: &SnapshotId) -> SnapshotId {
        self.source(id).map_or(*id, |s| origin(id, s))
    }

    /// The destination's copy of the source snapshot `id`, if it has one.
    pub(super) fn copy_of(&self, id: &SnapshotId, s: &Snapshot) -> Option<DestCopy> {
        self.copies.get(&origin(id, s)).copied()
    }

    /// Records a copy just written.
    pub(super) fn add_copy(&mut self, origin: SnapshotId, copy: DestCopy) {
        self.copies.insert(origin, copy);
    }

    /// The destination's copy of the source's parent of `s`, if there is one.
    pub(super) fn parent_copy(&self, s: &Snapshot) -> Option<SnapshotId> {
        let parent = s.parent?;
        self.copies.get(&self.source_origin(&parent)).map(|c| c.id)
    }

    /// The snapshot to compare with while copying `(id, s)`: its parent if that was copied,
    /// else the copied source snapshot of the same host and paths nearest in time. Returns
    /// (source root tree, destination root tree).
    pub(super) fn reference(&self, id: &SnapshotId, s: &Snapshot) -> Option<(BlobId, BlobId)> {
        if let Some(p) = &s.parent
            && let Some(ps) = self.source(p)
            && let Some(c) = self.copy_of(p, ps)
        {
            return Some((ps.tree, c.tree));
        }
        self.sources
            .iter()
            .filter(|(i, r)| i != id && r.hostname == s.hostname && r.paths == s.paths)
            .filter_map(|(i, r)| self.copy_of(i, r).map(|c| (r, c)))
            .min_by_key(|(r, _)| r.time_ns.abs_diff(s.time_ns))
            .map(|(r, c)| (r.tree, c.tree))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use repo_format::{Id, SnapshotStatus};

    fn snap(time: i64, tree: u8, parent: Option<SnapshotId>, from: Option<u8>) -> Snapshot {
        Snapshot {
            time_ns: time,
            utc_offset: 0,
            tree: BlobId(Id([tree; 32])),
            paths: vec![b"/data".to_vec()],
            hostname: "h".into(),
            username: "u".into(),
            tags: Vec::new(),
            parent,
            summary: None,
            status: SnapshotStatus::Complete,
            chunker: None,
            program: String::new(),
            original: None,
            protected: false,
            failure: None,
            store: None,
            copied_from: from.map(|n| SnapshotId(Id([n; 32]))),
        }
    }

    fn sid(n: u8) -> SnapshotId {
        SnapshotId(Id([n; 32]))
    }

    #[test]
    fn copies_are_found_by_origin_along_chains() {
        // Source: 1, 2 (parent 1), 3 (a copy of 9 from elsewhere).
        let sources = vec![
            (sid(1), snap(10, 11, None, None)),
            (sid(2), snap(20, 12, Some(sid(1)), None)),
            (sid(3), snap(30, 13, None, Some(9))),
        ];
        // Destination: 51 is a copy of 1, 59 another copy of 9.
        let dest = vec![
            (sid(51), snap(10, 61, None, Some(1))),
            (sid(59), snap(30, 69, None, Some(9))),
        ];
        let o = Origins::new(sources.clone(), &dest);
        assert_eq!(
            o.copy_of(&sid(1), &sources[0].1).map(|c| c.id),
            Some(sid(51))
        );
        assert!(o.copy_of(&sid(2), &sources[1].1).is_none());
        assert_eq!(
            o.copy_of(&sid(3), &sources[2].1).map(|c| c.id),
            Some(sid(59))
        );
        // 2's parent 1 has a copy: the parent and the reference.
        assert_eq!(o.parent_copy(&sources[1].1), Some(sid(51)));
        assert_eq!(
            o.reference(&sid(2), &sources[1].1),
            Some((BlobId(Id([11; 32])), BlobId(Id([61; 32]))))
        );
        // Copying back into a repository that holds 9 itself: 59, a copy of 9, is already there.
        let back = Origins::new(dest.clone(), &[(sid(9), snap(30, 79, None, None))]);
        assert_eq!(
            back.copy_of(&sid(59), &dest[1].1).map(|c| c.id),
            Some(sid(9))
        );
    }

    #[test]
    fn reference_without_parent_is_the_nearest_copied_snapshot_of_the_same_host_and_paths() {
        let mut other_host = snap(19, 14, None, None);
        other_host.hostname = "other".into();
        let sources = vec![
            (sid(1), snap(10, 11, None, None)),
            (sid(2), snap(18, 12, None, None)),
            (sid(4), other_host),
            (sid(3), snap(20, 13, None, None)),
        ];
        let dest = vec![
            (sid(51), snap(10, 61, None, Some(1))),
            (sid(52), snap(18, 62, None, Some(2))),
            (sid(54), snap(19, 64, None, Some(4))),
        ];
        let o = Origins::new(sources.clone(), &dest);
        assert_eq!(
            o.reference(&sid(3), &sources[3].1),
            Some((BlobId(Id([12; 32])), BlobId(Id([62; 32]))))
        );
        assert_eq!(o.parent_copy(&sources[3].1), None);
        let none = Origins::new(sources.clone(), &[]);
        assert_eq!(none.reference(&sid(3), &sources[3].1), None);
    }
}
