//! Giving freed memory back to the operating system during long scans.
//!
//! glibc's malloc keeps the pages of freed chunks inside its heaps until the top of a heap is
//! free; a scan that decodes one index file after another and churns RocksDB's blocks leaves
//! holes that RSS keeps paying for, and the more files it reads, the more of them. Measured on
//! `prune --dry-run` (benches/README.md, "Prune memory"): peak RSS grew from 105 MiB at 2 M
//! blobs to 146 MiB at 20 M; released after each index file's worth of entries, 97 and 119 MiB,
//! in the same time.
//!
//! Releasing is the allocator's business, so the engine (which has no unsafe code) only says
//! when: the binary that chose the allocator registers how, once, with [`set_release_hook`]
//! (the `cairn` binary calls glibc's `malloc_trim`). Without a hook, nothing happens.

use std::sync::OnceLock;

static RELEASE: OnceLock<fn()> = OnceLock::new();

/// Entries (index entries, blobs) a scan handles between two releases: one full index file
/// (writers close a file at 65 536 entries). Releasing walks the allocator's free lists, so a
/// repository of many small index files does not pay for it once per file.
pub const RELEASE_EVERY: u64 = 65_536;

/// Registers how to give freed memory back to the system. Only the first call takes effect;
/// returns whether this one did.
pub fn set_release_hook(release: fn()) -> bool {
    RELEASE.set(release).is_ok()
}

/// Counts the entries a scan handled and releases memory every [`RELEASE_EVERY`] of them.
#[derive(Debug, Default)]
pub struct ReleaseEvery {
    since: u64,
}

impl ReleaseEvery {
    /// Notes `entries` more handled; releases (if a hook is set) when enough have been since
    /// the last release. Returns whether it was time to release.
    pub fn handled(&mut self, entries: u64) -> bool {
        self.since = self.since.saturating_add(entries);
        if self.since < RELEASE_EVERY {
            return false;
        }
        self.since = 0;
        if let Some(release) = RELEASE.get() {
            release();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static CALLS: AtomicUsize = AtomicUsize::new(0);

    fn count() {
        CALLS.fetch_add(1, Ordering::SeqCst);
    }

    // The only test in this binary that sets the hook (it is process-wide).
    #[test]
    fn releases_once_per_full_file_of_entries_through_the_hook() {
        assert!(set_release_hook(count));
        assert!(
            !set_release_hook(|| {}),
            "a second hook must not replace the first"
        );
        let mut every = ReleaseEvery::default();
        // Many small files: one release per RELEASE_EVERY entries, not per file.
        let released = (0..4 * RELEASE_EVERY / 100)
            .filter(|_| every.handled(100))
            .count();
        assert_eq!(released, 3, "2 621 small files of 100 entries");
        assert_eq!(CALLS.load(Ordering::SeqCst), 3);
        // A file larger than the threshold releases at once, and the count starts over.
        assert!(every.handled(3 * RELEASE_EVERY));
        assert!(!every.handled(RELEASE_EVERY - 1));
        assert!(every.handled(1));
        assert_eq!(CALLS.load(Ordering::SeqCst), 5);
        assert!(!every.handled(0));
    }
}
