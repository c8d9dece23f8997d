//! Rollback detection: noticing, per machine, that the newest snapshot it saw is gone (SPEC §13,
//! §14).
//!
//! Whoever controls the storage can delete the newest snapshots, or serve an older listing, so
//! that `latest` and a backup's parent silently become an older snapshot. Every object that is
//! left still authenticates, so nothing *in* the repository can show this. Each machine
//! therefore keeps, in the repository's local cache directory (never in the repository), one
//! small state file, [`STATE_FILE`]: the newest snapshot it has seen, by id and time.
//!
//! | event | what happens to the state |
//! |---|---|
//! | a listing of every snapshot ([`Repository::list_snapshots`]) | [`observe_listing`]: advances to the newest listed snapshot; if the recorded one is gone, see below |
//! | this machine writes a snapshot ([`Repository::save_snapshot`]) | [`observe_written`]: advances to it if it is newer |
//! | this machine deletes snapshots (`forget`, the old version `protect` replaces, a backup undone by prune's guard) | [`forgetting`]: if the recorded one is among them, it is marked *forgotten here* |
//!
//! When a listing no longer holds the recorded snapshot, a lookup of that one snapshot does not
//! find it either, no snapshot is at least as new (a `protect` rewrite keeps the time, so it is
//! not a rollback), and this machine did not forget it, the listing yields a
//! [`RollbackWarning`]. It is a warning, not an error: another machine may have forgotten the
//! snapshot legitimately. Either way the state then moves to the newest snapshot listed now, so
//! one removal warns once.
//!
//! Limits: a machine that never saw the newer snapshot cannot tell it is gone; the state is one
//! snapshot, so rolling back to an older state that still holds the recorded snapshot (only
//! newer ones that this machine never listed are gone) is not noticed; and a storage that keeps
//! the recorded snapshot but leaves it out of listings is not noticed either (that is what a
//! listing overlapping a backup on this machine looks like).
//!
//! The state is a cache like the index cache: a missing, unreadable or malformed file is no
//! error, only no warning (and the next listing writes a fresh one); a file that cannot be
//! written only weakens detection, so write failures are ignored too. Writes go to a temporary
//! file renamed over the state, so a reader never sees half a file. Two cairn processes may
//! race on it; a write is skipped when the file changed since it was read, so a concurrent
//! `forget` is not overwritten by a listing taken before it. That re-read, the comparison and
//! the rename happen under a lock file (`newest-snapshot.lock`, created exclusively; a lock
//! older than 30 s is taken as left by a crash); a write that cannot get the lock within about
//! 200 ms is skipped.
//!
//! A listing may also overlap another process's backup on this machine, which records its new
//! snapshot while the listing (taken before) lacks it. So a recorded snapshot missing from a
//! listing, with nothing newer listed, is looked up once more on its own (one `stat`) before
//! it counts as gone; while it exists, the state neither warns nor goes back. A *forgotten
//! here* mark likewise stays while the snapshot is still there (a `forget` may be between
//! marking and deleting) and is dropped only when the state advances.
//!
//! [`Repository::list_snapshots`]: crate::repository::Repository::list_snapshots
//! [`Repository::save_snapshot`]: crate::repository::Repository::save_snapshot

use std::collections::HashSet;
use std::fmt;
use std::io::Write;
use std::path::Path;

use repo_format::{Id, SnapshotId};

/// The state file's name inside the repository's cache directory.
pub const STATE_FILE: &str = "newest-snapshot";

/// The first line of the state file: its format and version.
const STATE_MAGIC: &str = "cairn newest-snapshot 1";

/// The newest snapshot this machine has seen, as the state file records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeenSnapshot {
    /// Its id.
    pub id: SnapshotId,
    /// Its time (Unix nanoseconds, the snapshot's `time`).
    pub time_ns: i64,
    /// This machine deleted it (`forget`): its absence is no rollback.
    pub forgotten_here: bool,
}

impl SeenSnapshot {
    fn new(id: SnapshotId, time_ns: i64) -> SeenSnapshot {
        SeenSnapshot {
            id,
            time_ns,
            forgotten_here: false,
        }
    }

    /// The order of [`Repository::list_snapshots`](crate::repository::Repository::list_snapshots):
    /// by time, ties by id.
    fn key(&self) -> (i64, SnapshotId) {
        (self.time_ns, self.id)
    }

    fn encode(&self) -> String {
        format!(
            "{STATE_MAGIC}\nid {}\ntime_ns {}\nforgotten_here {}\n",
            self.id.to_hex(),
            self.time_ns,
            u8::from(self.forgotten_here)
        )
    }

    /// Parses what [`encode`](Self::encode) wrote; anything else is `None`.
    fn decode(text: &str) -> Option<SeenSnapshot> {
        let mut lines = text.lines();
        if lines.next()? != STATE_MAGIC {
            return None;
        }
        let mut field = |name: &str| {
            lines
                .next()?
                .strip_prefix(name)?
                .strip_prefix(' ')
                .map(str::to_owned)
        };
        let id = SnapshotId(Id::from_hex(&field("id")?).ok()?);
        let time_ns = field("time_ns")?.parse().ok()?;
        let forgotten_here = match field("forgotten_here")?.as_str() {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        if lines.next().is_some() {
            return None;
        }
        Some(SeenSnapshot {
            id,
            time_ns,
            forgotten_here,
        })
    }
}

/// The newest snapshot this machine saw is gone and nothing as new replaced it: someone
/// forgot it, or the storage lost it or rolled back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollbackWarning {
    /// The repository, as the user named it.
    pub location: String,
    /// The snapshot that is gone.
    pub missing: SnapshotId,
    /// Its time (Unix nanoseconds).
    pub missing_time_ns: i64,
    /// The newest snapshot listed now (what `latest` is now), with its time.
    pub newest_now: Option<(SnapshotId, i64)>,
}

impl fmt::Display for RollbackWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let now = match self.newest_now {
            Some((id, t)) => format!("`latest` is now {} from {}", id.0.short(), fmt_time(t)),
            None => "there are no snapshots now".to_owned(),
        };
        write!(
            f,
            "the newest snapshot this machine saw before in {}, {} from {}, is gone from the \
             repository and no snapshot as new has taken its place ({now}): it was forgotten (by \
             another machine?), or the storage lost it or rolled back; run `cairn snapshots` and \
             check that the newest snapshots are the ones you expect before relying on `latest` \
             (this warning is given once)",
            self.location,
            self.missing.0.short(),
            fmt_time(self.missing_time_ns)
        )
    }
}

fn fmt_time(ns: i64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(ns))
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| format!("{ns} ns"))
}

/// What one listing means for the state: a warning, and the state to record (`None`: leave the
/// file as it is; `Some(None)`: remove it, there are no snapshots).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Assessment {
    /// The recorded snapshot that is gone, when that is a warning.
    gone: Option<SeenSnapshot>,
    next: Option<Option<SeenSnapshot>>,
}

/// The rule. `listed` is every name under `snapshots/` (damaged ones too: a damaged snapshot is
/// reported as damage, not as rolled back); `loaded` are the id and time of each snapshot that
/// loaded. `still_there` is asked (at most once) whether the recorded snapshot exists after
/// all, when the listing lacks it and the state would otherwise go back: a listing that
/// overlaps a backup of another process on this machine lacks the snapshot that process wrote
/// and recorded meanwhile.
fn assess(
    seen: Option<&SeenSnapshot>,
    listed: &HashSet<Id>,
    loaded: &[(SnapshotId, i64)],
    still_there: impl FnOnce(SnapshotId) -> bool,
) -> Assessment {
    let newest = loaded
        .iter()
        .map(|&(id, t)| SeenSnapshot::new(id, t))
        .max_by_key(SeenSnapshot::key);
    let Some(seen) = seen else {
        return Assessment {
            gone: None,
            next: newest.map(Some),
        };
    };
    let newer = newest.filter(|n| n.key() > seen.key());
    if newer.is_some() || listed.contains(&seen.id.0) || still_there(seen.id) {
        // Still there (or superseded by a newer one): advance, never go back (the newest that
        // loads may be older, when the recorded one is damaged or was written after the
        // listing began). A "forgotten here" mark stays until the state advances: a `forget`
        // in progress may not have deleted the snapshot yet, and a stale mark (the deletion
        // failed) only spares one warning for a snapshot this machine meant to delete.
        return Assessment {
            gone: None,
            next: newer.map(Some),
        };
    }
    let replaced = loaded.iter().any(|&(_, t)| t >= seen.time_ns);
    Assessment {
        gone: (!replaced && !seen.forgotten_here).then_some(*seen),
        next: Some(newest),
    }
}

/// Reads the state file of the cache directory `dir`; `None` when there is none or it cannot
/// be read or parsed.
pub fn load(dir: &Path) -> Option<SeenSnapshot> {
    let text = std::fs::read_to_string(dir.join(STATE_FILE)).ok()?;
    SeenSnapshot::decode(&text)
}

/// The lock file that makes [`store`]'s read-compare-replace one step among cairn processes.
const LOCK_FILE: &str = "newest-snapshot.lock";

/// How often, and how long apart, [`store`] tries to take the lock before it gives up.
const LOCK_TRIES: u32 = 40;
const LOCK_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

/// A lock older than this was left by a process that died holding it.
const LOCK_STALE: std::time::Duration = std::time::Duration::from_secs(30);

/// Holds [`LOCK_FILE`]; removes it when dropped.
struct StateLock(std::path::PathBuf);

impl StateLock {
    /// Takes the lock, waiting up to `LOCK_TRIES * LOCK_PAUSE`; `None` when it cannot (held
    /// too long, or the directory is not writable).
    fn take(dir: &Path) -> Option<StateLock> {
        let path = dir.join(LOCK_FILE);
        for _ in 0..LOCK_TRIES {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(_) => return Some(StateLock(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > LOCK_STALE);
                    if stale {
                        let _ = std::fs::remove_file(&path);
                    } else {
                        std::thread::sleep(LOCK_PAUSE);
                    }
                }
                Err(_) => return None,
            }
        }
        None
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Replaces the state file with `next` (`None` removes it), unless it no longer holds
/// `expected` (another process changed it meanwhile: its newer view wins). Best effort: the
/// read, the comparison and the replacement happen under [`LOCK_FILE`]; when the lock cannot
/// be taken (another process holds it for long, the directory is not writable), the write is
/// skipped.
fn store(dir: &Path, expected: Option<&SeenSnapshot>, next: Option<&SeenSnapshot>) {
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let Some(_lock) = StateLock::take(dir) else {
        return;
    };
    if load(dir).as_ref() != expected {
        return;
    }
    let path = dir.join(STATE_FILE);
    let Some(next) = next else {
        let _ = std::fs::remove_file(&path);
        return;
    };
    let Ok(salt) = crate::repository::random_bytes::<4>() else {
        return;
    };
    let tmp = dir.join(format!(
        ".{STATE_FILE}.tmp-{}-{}",
        std::process::id(),
        hex::encode(salt)
    ));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(next.encode().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// Compares a listing of every snapshot with the state in the cache directory `dir`, updates
/// the state, and returns a warning when the newest snapshot seen before is gone (see the
/// module docs). `listed` holds every name the listing found, `loaded` the id and time of
/// each snapshot that loaded. `still_there` checks the repository for one snapshot (one
/// `stat`); it is called only when the recorded snapshot is not listed and nothing newer is,
/// and should answer `true` when it cannot tell (a storage error): no warning, and the next
/// listing asks again.
pub fn observe_listing(
    dir: &Path,
    location: &str,
    listed: &HashSet<Id>,
    loaded: impl IntoIterator<Item = (SnapshotId, i64)>,
    still_there: impl FnOnce(SnapshotId) -> bool,
) -> Option<RollbackWarning> {
    let loaded: Vec<(SnapshotId, i64)> = loaded.into_iter().collect();
    let seen = load(dir);
    let a = assess(seen.as_ref(), listed, &loaded, still_there);
    if let Some(next) = &a.next {
        store(dir, seen.as_ref(), next.as_ref());
    }
    let gone = a.gone?;
    Some(RollbackWarning {
        location: location.to_owned(),
        missing: gone.id,
        missing_time_ns: gone.time_ns,
        newest_now: a.next.flatten().map(|n| (n.id, n.time_ns)),
    })
}

/// This machine wrote snapshot `id` of time `time_ns`: records it if it is newer than the
/// recorded one.
pub fn observe_written(dir: &Path, id: SnapshotId, time_ns: i64) {
    let seen = load(dir);
    let new = SeenSnapshot::new(id, time_ns);
    if seen.is_none_or(|s| new.key() > s.key()) {
        store(dir, seen.as_ref(), Some(&new));
    }
}

/// This machine is about to delete the snapshots `ids` on purpose: if the recorded one is
/// among them, marks it so that its absence gives no warning. Call before deleting (a crash
/// in between then costs no false warning; a mark left on a snapshot that is still there
/// stays until the state advances to a newer snapshot).
pub fn forgetting(dir: &Path, ids: &[SnapshotId]) {
    let Some(seen) = load(dir) else {
        return;
    };
    if !seen.forgotten_here && ids.contains(&seen.id) {
        let marked = SeenSnapshot {
            forgotten_here: true,
            ..seen
        };
        store(dir, Some(&seen), Some(&marked));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> SnapshotId {
        SnapshotId(Id([b; 32]))
    }

    /// The `still_there` of a repository that does not have the snapshot.
    fn gone(_: SnapshotId) -> bool {
        false
    }

    fn listing(items: &[(u8, i64)]) -> (HashSet<Id>, Vec<(SnapshotId, i64)>) {
        let snaps: Vec<_> = items.iter().map(|&(b, t)| (id(b), t)).collect();
        (snaps.iter().map(|(i, _)| i.0).collect(), snaps)
    }

    #[test]
    fn the_state_file_round_trips_and_rejects_anything_else() {
        let s = SeenSnapshot {
            id: id(7),
            time_ns: -5,
            forgotten_here: true,
        };
        assert_eq!(SeenSnapshot::decode(&s.encode()), Some(s));
        for bad in [
            "",
            "cairn newest-snapshot 2\n",
            &s.encode().replace("time_ns -5", "time_ns x"),
            &format!("{}extra\n", s.encode()),
            &s.encode()[..40],
        ] {
            assert_eq!(SeenSnapshot::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn assess_warns_only_when_the_recorded_snapshot_is_gone_and_nothing_replaced_it() {
        let seen = SeenSnapshot::new(id(2), 20);
        // Nothing recorded: record the newest, no warning.
        let (l, s) = listing(&[(1, 10), (2, 20)]);
        let a = assess(None, &l, &s, gone);
        assert_eq!((a.gone, a.next), (None, Some(Some(seen))));
        // Still there, nothing newer: nothing to do.
        assert_eq!(assess(Some(&seen), &l, &s, gone).next, None);
        // A newer one: advance.
        let (l, s) = listing(&[(1, 10), (2, 20), (3, 30)]);
        let a = assess(Some(&seen), &l, &s, gone);
        assert_eq!(a.next, Some(Some(SeenSnapshot::new(id(3), 30))));
        assert_eq!(a.gone, None);
        // Gone, only older ones left: a warning, then the state moves to the newest.
        let (l, s) = listing(&[(1, 10)]);
        let a = assess(Some(&seen), &l, &s, gone);
        assert_eq!(a.gone, Some(seen));
        assert_eq!(a.next, Some(Some(SeenSnapshot::new(id(1), 10))));
        // Gone, but forgotten here: no warning.
        let forgotten = SeenSnapshot {
            forgotten_here: true,
            ..seen
        };
        assert_eq!(assess(Some(&forgotten), &l, &s, gone).gone, None);
        // Gone, but one as new replaced it (a protect rewrite): no warning.
        let (l, s) = listing(&[(1, 10), (4, 20)]);
        assert_eq!(assess(Some(&seen), &l, &s, gone).gone, None);
        // Gone and nothing left: a warning, and the state is removed.
        let a = assess(Some(&seen), &HashSet::new(), &[], gone);
        assert_eq!((a.gone, a.next), (Some(seen), Some(None)));
        // Listed but damaged (not loaded): not gone, and the state does not go back.
        let (mut l, s) = listing(&[(1, 10)]);
        l.insert(id(2).0);
        let a = assess(Some(&seen), &l, &s, gone);
        assert_eq!((a.gone, a.next), (None, None));
        // Not listed but still there (written after the listing began): no warning, and the
        // state does not go back.
        let (l, s) = listing(&[(1, 10)]);
        let a = assess(Some(&seen), &l, &s, |i| i == id(2));
        assert_eq!((a.gone, a.next), (None, None));
        // Not listed, a newer one is: advance without asking.
        let (l, s) = listing(&[(3, 30)]);
        let a = assess(Some(&seen), &l, &s, |_| unreachable!("not asked"));
        assert_eq!(a.next, Some(Some(SeenSnapshot::new(id(3), 30))));
        // A "forgotten here" mark stays while the snapshot is listed (a forget in progress) ...
        let (l, s) = listing(&[(1, 10), (2, 20)]);
        assert_eq!(assess(Some(&forgotten), &l, &s, gone).next, None);
        // ... and goes when the state advances.
        let (l, s) = listing(&[(2, 20), (3, 30)]);
        let a = assess(Some(&forgotten), &l, &s, gone);
        assert_eq!(a.next, Some(Some(SeenSnapshot::new(id(3), 30))));
    }

    #[test]
    fn one_removal_warns_once_and_forgetting_here_never_warns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let (l, s) = listing(&[(1, 10), (2, 20)]);
        assert_eq!(observe_listing(d, "repo", &l, s.clone(), gone), None);
        assert_eq!(load(d), Some(SeenSnapshot::new(id(2), 20)));
        let (l, s) = listing(&[(1, 10)]);
        let w = observe_listing(d, "repo", &l, s.clone(), gone).expect("a warning");
        assert_eq!(w.missing, id(2));
        assert_eq!(w.newest_now, Some((id(1), 10)));
        assert!(w.to_string().contains("is gone from the repository"), "{w}");
        assert_eq!(
            observe_listing(d, "repo", &l, s.clone(), gone),
            None,
            "only once"
        );

        observe_written(d, id(3), 30);
        observe_written(d, id(0), 5);
        assert_eq!(load(d), Some(SeenSnapshot::new(id(3), 30)));
        forgetting(d, &[id(9), id(3)]);
        assert!(load(d).is_some_and(|s| s.forgotten_here));
        assert_eq!(observe_listing(d, "repo", &l, s.clone(), gone), None);
        assert_eq!(load(d), Some(SeenSnapshot::new(id(1), 10)));

        // A damaged state file is no error and is replaced.
        std::fs::write(d.join(STATE_FILE), b"garbage").expect("write");
        assert_eq!(observe_listing(d, "repo", &l, s.clone(), gone), None);
        assert_eq!(load(d), Some(SeenSnapshot::new(id(1), 10)));
    }
}
