//! `cairn status`: for each store of a [`Config`], how recent its newest good backup is
//! compared with the store's `interval`, and whether its last run failed — an RPO alarm.
//!
//! [`status`] is pure: it takes the config, the repository's snapshots and the current time.
//! A store's snapshots are those whose `store` field (SPEC §10, tag 15) is its name.
//!
//! | [`Health`] | when | alarm |
//! |---|---|---|
//! | [`Health::Never`] | the store has no complete snapshot | yes |
//! | [`Health::Failed`] | the store's newest snapshot is a failed backup (its failure text is shown) | yes |
//! | [`Health::Overdue`] | the newest complete snapshot is older than [`overdue_after`]: the interval plus a grace of a quarter of it | yes |
//! | [`Health::Fresh`] | none of the above | no |
//!
//! When several apply, the first in the table wins (a store that never succeeded and whose last
//! attempt failed is `Never`), but each condition is also reported on its own.
//!
//! Why a grace of 25%: a nightly `cairn run` (`interval = "24h"`) whose dump takes longer one
//! night than the night before must not raise an alarm the next morning, but a whole missed
//! run must, well before the next one is due: with 24 h the alarm comes after 30 h. The grace
//! grows with the interval because the jitter of a schedule does (a 5-minute job is late after
//! a minute or so; a weekly one after a day or more). Snapshots dated in the future (a clock
//! that was ahead) count as age zero.

use std::time::Duration;

use repo_format::{Snapshot, SnapshotId, SnapshotStatus};

use super::config::Config;

/// A store's state, the worst first (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Health {
    /// No complete snapshot of the store exists.
    Never,
    /// The store's newest snapshot is a failed backup.
    Failed,
    /// The newest complete snapshot is older than [`overdue_after`] its interval.
    Overdue,
    /// A recent enough complete snapshot exists and the last run did not fail.
    Fresh,
}

impl Health {
    /// The word shown in tables and JSON: `never`, `failed`, `overdue`, `fresh`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Never => "never",
            Health::Failed => "failed",
            Health::Overdue => "overdue",
            Health::Fresh => "fresh",
        }
    }

    /// Whether this state should wake someone up (everything but [`Health::Fresh`]).
    pub fn is_alarm(self) -> bool {
        self != Health::Fresh
    }
}

/// One snapshot, as [`StoreStatus`] refers to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRef {
    /// Its id.
    pub id: SnapshotId,
    /// When the backup started, Unix nanoseconds.
    pub time_ns: i64,
    /// The UTC offset of the zone it was taken in, seconds.
    pub utc_offset: i32,
}

impl SnapshotRef {
    pub(super) fn of(id: SnapshotId, s: &Snapshot) -> SnapshotRef {
        SnapshotRef {
            id,
            time_ns: s.time_ns,
            utc_offset: s.utc_offset,
        }
    }
}

/// The status of one store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreStatus {
    /// The store's name.
    pub name: String,
    /// Its type: `command`, `redis` or `directory`.
    pub kind: &'static str,
    /// The expected time between good backups (the store's `interval`).
    pub interval: Duration,
    /// The age beyond which the store is overdue ([`overdue_after`] of `interval`).
    pub overdue_after: Duration,
    /// The newest complete snapshot, if any.
    pub newest: Option<SnapshotRef>,
    /// How old the newest complete snapshot is (zero for one dated in the future).
    pub age: Option<Duration>,
    /// The newest complete snapshot's restore size (its summary's `total_bytes`).
    pub size: Option<u64>,
    /// What the newest complete snapshot added to the repository, before compression
    /// (`data_added_raw`).
    pub added: Option<u64>,
    /// What it added as stored: compressed and encrypted (`data_added_stored`).
    pub added_stored: Option<u64>,
    /// The newest snapshot, when it is a failed backup: the last run failed.
    pub last_failure: Option<(SnapshotRef, String)>,
    /// How many snapshots the store has, complete and failed.
    pub snapshots: usize,
    /// How many of them are failed backups.
    pub failed_snapshots: usize,
    /// The verdict.
    pub health: Health,
}

impl StoreStatus {
    /// Whether the newest complete snapshot is too old (false when there is none: that is
    /// [`Health::Never`]).
    pub fn is_overdue(&self) -> bool {
        self.age.is_some_and(|a| a > self.overdue_after)
    }
}

/// The age after which a store with this `interval` is overdue: the interval plus a grace of a
/// quarter of it (24 h → 30 h, 6 h → 7 h 30 min).
pub fn overdue_after(interval: Duration) -> Duration {
    interval.saturating_add(interval / 4)
}

/// The status of every store of `config`, in file order. `snapshots` are the repository's
/// (any order; those of other stores or of none are ignored); `now_ns` is the current time in
/// Unix nanoseconds.
pub fn status(
    config: &Config,
    snapshots: &[(SnapshotId, Snapshot)],
    now_ns: i64,
) -> Vec<StoreStatus> {
    config
        .stores
        .iter()
        .map(|store| {
            let mine: Vec<&(SnapshotId, Snapshot)> = snapshots
                .iter()
                .filter(|(_, s)| s.store.as_deref() == Some(store.name.as_str()))
                .collect();
            let newest_by = |pred: &dyn Fn(&Snapshot) -> bool| {
                mine.iter()
                    .filter(|(_, s)| pred(s))
                    .max_by_key(|(id, s)| (s.time_ns, *id))
                    .copied()
            };
            let complete = newest_by(&|s| s.status == SnapshotStatus::Complete);
            let last = newest_by(&|_| true);
            let last_failure = last
                .filter(|(_, s)| s.status == SnapshotStatus::Failed)
                .map(|(id, s)| {
                    let why = s
                        .failure
                        .clone()
                        .unwrap_or_else(|| "no failure description recorded".to_owned());
                    (SnapshotRef::of(*id, s), why)
                });
            let age = complete.map(|(_, s)| age(s.time_ns, now_ns));
            let summary = complete.and_then(|(_, s)| s.summary);
            let overdue_after = overdue_after(store.interval);
            let health = match (complete, &last_failure, age) {
                (None, _, _) => Health::Never,
                (_, Some(_), _) => Health::Failed,
                (_, None, Some(a)) if a > overdue_after => Health::Overdue,
                _ => Health::Fresh,
            };
            StoreStatus {
                name: store.name.clone(),
                kind: store.kind.type_name(),
                interval: store.interval,
                overdue_after,
                newest: complete.map(|(id, s)| SnapshotRef::of(*id, s)),
                age,
                size: summary.map(|s| s.total_bytes),
                added: summary.map(|s| s.data_added_raw),
                added_stored: summary.map(|s| s.data_added_stored),
                last_failure,
                snapshots: mine.len(),
                failed_snapshots: mine
                    .iter()
                    .filter(|(_, s)| s.status == SnapshotStatus::Failed)
                    .count(),
                health,
            }
        })
        .collect()
}

/// `now - then`, never negative.
fn age(then_ns: i64, now_ns: i64) -> Duration {
    let ns = i128::from(now_ns) - i128::from(then_ns);
    Duration::from_nanos(u64::try_from(ns.max(0)).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_is_a_quarter_of_the_interval() {
        let h = |n: u64| Duration::from_secs(n * 3600);
        assert_eq!(overdue_after(h(24)), h(30));
        assert_eq!(overdue_after(h(6)), Duration::from_secs(27_000));
        assert_eq!(overdue_after(Duration::MAX), Duration::MAX);
    }

    #[test]
    fn ages_are_never_negative() {
        assert_eq!(age(10, 5), Duration::ZERO);
        assert_eq!(age(5, 10), Duration::from_nanos(5));
        assert_eq!(
            age(i64::MIN, i64::MAX),
            Duration::from_nanos(u64::MAX),
            "saturates"
        );
    }
}
