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
//! When a listing no longer holds the recorded snapshot, no snapshot is at least as new (a
//! `protect` rewrite keeps the time, so it is not a rollback), and this machine did not forget
//! it, the listing yields a [`RollbackWarning`]. It is a warning, not an error: another machine
//! may have forgotten the snapshot legitimately. Either way the state then moves to the newest
//! snapshot listed now, so one removal warns once.
//!
//! Limits: a machine that never saw the newer snapshot cannot tell it is gone; and the state is
//! one snapshot, so rolling back to an older state that still holds the recorded snapshot (only
//! newer ones that this machine never listed are gone) is not noticed.
//!
//! The state is a cache like the index cache: a missing, unreadable or malformed file is no
//! error, only no warning (and the next listing writes a fresh one); a file that cannot be
//! written only weakens detection, so write failures are ignored too. Writes go to a temporary
//! file renamed over the state, so a reader never sees half a file. Two cairn processes may
//! race on it; a write is skipped when the file changed since it was read, so a concurrent
//! `forget` is not overwritten by a listing taken before it.
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

/// The pure rule. `listed` is every name under `snapshots/` (damaged ones too: a damaged
/// snapshot is reported as damage, not as rolled back); `loaded` are the id and time of each
/// snapshot that loaded.
fn assess(
    seen: Option<&SeenSnapshot>,
    listed: &HashSet<Id>,
    loaded: &[(SnapshotId, i64)],
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
    if listed.contains(&seen.id.0) {
        // Still there: advance, never go back (the newest that loads may be older, when the
        // recorded one is damaged). A stale "forgotten here" mark (the deletion failed) is
        // dropped.
        let next = match newest {
            Some(n) if n.key() > seen.key() => Some(Some(n)),
            _ if seen.forgotten_here => Some(Some(SeenSnapshot {
                forgotten_here: false,
                ..*seen
            })),
            _ => None,
        };
        return Assessment { gone: None, next };
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

/// Replaces the state file with `next` (`None` removes it), unless it no longer holds
/// `expected` (another process changed it meanwhile: its newer view wins). Best effort.
fn store(dir: &Path, expected: Option<&SeenSnapshot>, next: Option<&SeenSnapshot>) {
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
    let written = std::fs::create_dir_all(dir).and_then(|()| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(next.encode().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// Compares a listing of every snapshot with the state in the cache directory `dir`, updates
/// the state, and returns a warning when the newest snapshot seen before is gone (see the
/// module docs). `listed` holds every name the listing found, `loaded` the id and time of
/// each snapshot that loaded.
pub fn observe_listing(
    dir: &Path,
    location: &str,
    listed: &HashSet<Id>,
    loaded: impl IntoIterator<Item = (SnapshotId, i64)>,
) -> Option<RollbackWarning> {
    let loaded: Vec<(SnapshotId, i64)> = loaded.into_iter().collect();
    let seen = load(dir);
    let a = assess(seen.as_ref(), listed, &loaded);
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
/// in between then costs no false warning; a mark left on a snapshot that is still there is
/// dropped by the next listing).
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
        let a = assess(None, &l, &s);
        assert_eq!((a.gone, a.next), (None, Some(Some(seen))));
        // Still there, nothing newer: nothing to do.
        assert_eq!(assess(Some(&seen), &l, &s).next, None);
        // A newer one: advance.
        let (l, s) = listing(&[(1, 10), (2, 20), (3, 30)]);
        let a = assess(Some(&seen), &l, &s);
        assert_eq!(a.next, Some(Some(SeenSnapshot::new(id(3), 30))));
        assert_eq!(a.gone, None);
        // Gone, only older ones left: a warning, then the state moves to the newest.
        let (l, s) = listing(&[(1, 10)]);
        let a = assess(Some(&seen), &l, &s);
        assert_eq!(a.gone, Some(seen));
        assert_eq!(a.next, Some(Some(SeenSnapshot::new(id(1), 10))));
        // Gone, but forgotten here: no warning.
        let forgotten = SeenSnapshot {
            forgotten_here: true,
            ..seen
        };
        assert_eq!(assess(Some(&forgotten), &l, &s).gone, None);
        // Gone, but one as new replaced it (a protect rewrite): no warning.
        let (l, s) = listing(&[(1, 10), (4, 20)]);
        assert_eq!(assess(Some(&seen), &l, &s).gone, None);
        // Gone and nothing left: a warning, and the state is removed.
        let a = assess(Some(&seen), &HashSet::new(), &[]);
        assert_eq!((a.gone, a.next), (Some(seen), Some(None)));
        // Listed but damaged (not loaded): not gone, and the state does not go back.
        let (mut l, s) = listing(&[(1, 10)]);
        l.insert(id(2).0);
        let a = assess(Some(&seen), &l, &s);
        assert_eq!((a.gone, a.next), (None, None));
    }

    #[test]
    fn one_removal_warns_once_and_forgetting_here_never_warns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let (l, s) = listing(&[(1, 10), (2, 20)]);
        assert_eq!(observe_listing(d, "repo", &l, s.clone()), None);
        assert_eq!(load(d), Some(SeenSnapshot::new(id(2), 20)));
        let (l, s) = listing(&[(1, 10)]);
        let w = observe_listing(d, "repo", &l, s.clone()).expect("a warning");
        assert_eq!(w.missing, id(2));
        assert_eq!(w.newest_now, Some((id(1), 10)));
        assert!(w.to_string().contains("is gone from the repository"), "{w}");
        assert_eq!(observe_listing(d, "repo", &l, s.clone()), None, "only once");

        observe_written(d, id(3), 30);
        observe_written(d, id(0), 5);
        assert_eq!(load(d), Some(SeenSnapshot::new(id(3), 30)));
        forgetting(d, &[id(9), id(3)]);
        assert!(load(d).is_some_and(|s| s.forgotten_here));
        assert_eq!(observe_listing(d, "repo", &l, s.clone()), None);
        assert_eq!(load(d), Some(SeenSnapshot::new(id(1), 10)));

        // A damaged state file is no error and is replaced.
        std::fs::write(d.join(STATE_FILE), b"garbage").expect("write");
        assert_eq!(observe_listing(d, "repo", &l, s.clone()), None);
        assert_eq!(load(d), Some(SeenSnapshot::new(id(1), 10)));
    }
}
