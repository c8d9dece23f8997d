//! Retention: which snapshots a `cairn forget` policy keeps, and why. Pure code: no I/O, no
//! clock (the caller passes "now"), so every rule is tested with fixed times.
//!
//! [`apply_policy`] is the one function that decides; [`group`] splits snapshots into the groups
//! a policy is applied to separately (by host, paths and tags, see [`GroupBy`]).
//!
//! | option | keeps |
//! |---|---|
//! | `--keep-last N` | the N newest snapshots |
//! | `--keep-hourly N` | the newest snapshot of each of the N newest hours that have one |
//! | `--keep-daily N` | the newest snapshot of each of the N newest days that have one |
//! | `--keep-weekly N` | the same per ISO 8601 week (Monday to Sunday, weeks of the ISO year) |
//! | `--keep-monthly N` | the same per calendar month |
//! | `--keep-yearly N` | the same per calendar year |
//! | `--keep-within D` | every snapshot taken at most D before the reference time (below) |
//! | `--keep-within-hourly D` … `--keep-within-yearly D` | the newest snapshot of each hour (day, week, month, year) among the snapshots taken at most D before the reference time |
//! | `--keep-tag T` (repeatable) | every snapshot carrying tag T (any of the given tags) |
//!
//! A snapshot is kept when at least one rule keeps it; its [`Decision`] lists every rule that
//! does (the union, with all reasons). A snapshot no rule keeps is removed. A policy without any
//! rule is refused by `forget` (it would remove everything), see [`KeepPolicy::is_empty`].
//!
//! Semantics, decided once:
//!
//! - **Order.** Snapshots are evaluated newest first: by time, then, for equal times, by id
//!   descending (so the snapshot `latest` names is the newest). Bucket rules keep the newest
//!   snapshot of each distinct bucket until N distinct buckets are kept; a bucket that already
//!   has a kept snapshot does not count again, even when snapshots of different UTC offsets
//!   interleave.
//! - **Calendar.** Hours, days, ISO weeks, months and years are those of the snapshot's own
//!   recorded UTC offset (the writer's local calendar when it was taken), not UTC and not the
//!   zone of the machine running `forget`. A nightly backup at 00:30 local time therefore lands
//!   on its own local day even across a DST change, when its UTC time shifts by an hour.
//! - **Durations** (`30d`, `7d12h`, `1y2m`: y years, m months, d days, h hours) are calendar
//!   arithmetic in the reference snapshot's UTC offset: `1m` back from 31 March is 28 or 29
//!   February (see [`KeepDuration`]).
//! - **Reference time of keep-within** is the time of the newest complete snapshot of the group
//!   that is not dated after "now" (like restic, relative to the newest snapshot rather than to
//!   now, so a machine that stops backing up keeps its last snapshots however late `forget`
//!   runs); when the group has no such snapshot, "now" itself.
//! - **Failed backups** (`SnapshotStatus::Failed`) never count toward keep-last or the bucket
//!   rules (keep-hourly … keep-yearly, keep-within-hourly … keep-within-yearly), so a string of
//!   failed runs cannot push good backups out of retention. They are kept only by keep-within
//!   and keep-tag; otherwise they are removed.
//! - **Future-dated snapshots** (time after "now", a wrong clock) are always kept, with the
//!   reason saying so, and count toward no keep-N rule: a snapshot dated 2099 must not take the
//!   place of real ones. Remove one explicitly with `cairn forget ID`.
//! - **Protected snapshots** (SPEC §10 tag 13, set by `cairn protect`) are always kept, with the
//!   reason `protected` first among their reasons. Protection only prevents removal: a protected
//!   snapshot counts toward the rules exactly as it would unprotected (a complete one fills a
//!   keep-last slot or a keep-daily day like any other), so protecting a snapshot never changes
//!   which *other* snapshots a policy keeps.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::str::FromStr;

use repo_format::{Snapshot, SnapshotId, SnapshotStatus};

/// A calendar duration for the keep-within rules: years, months, days and hours.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeepDuration {
    /// Years.
    pub years: u32,
    /// Months.
    pub months: u32,
    /// Days.
    pub days: u32,
    /// Hours.
    pub hours: u32,
}

impl fmt::Display for KeepDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut any = false;
        for (v, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if v != 0 {
                write!(f, "{v}{unit}")?;
                any = true;
            }
        }
        if !any {
            f.write_str("0h")?;
        }
        Ok(())
    }
}

impl FromStr for KeepDuration {
    type Err = crate::Error;

    /// Parses `30d`, `7d12h`, `1y2m`: numbers each followed by a unit, y (years), m (months),
    /// d (days) or h (hours), each unit at most once.
    fn from_str(s: &str) -> crate::Result<KeepDuration> {
        let bad = |why: String| {
            crate::Error::new(
                crate::ErrorKind::InvalidInput,
                format!(
                    "invalid duration {s:?}: {why}; write numbers with units y (years), \
                     m (months), d (days), h (hours), e.g. 30d, 7d12h or 1y2m"
                ),
            )
        };
        if s.is_empty() {
            return Err(bad("it is empty".into()));
        }
        let mut d = KeepDuration::default();
        let mut seen = String::new();
        let mut digits = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            if digits.is_empty() {
                return Err(bad(format!("'{c}' is not preceded by a number")));
            }
            let n: u32 = digits
                .parse()
                .map_err(|_| bad(format!("{digits} is too large")))?;
            let field = match c {
                'y' => &mut d.years,
                'm' => &mut d.months,
                'd' => &mut d.days,
                'h' => &mut d.hours,
                _ => return Err(bad(format!("unknown unit '{c}'"))),
            };
            if seen.contains(c) {
                return Err(bad(format!("unit '{c}' is given twice")));
            }
            seen.push(c);
            *field = n;
            digits.clear();
        }
        if !digits.is_empty() {
            return Err(bad(format!("{digits} has no unit")));
        }
        Ok(d)
    }
}

impl KeepDuration {
    /// `reference_ns` minus this duration, in the calendar of `utc_offset`; `i64::MIN` when that
    /// is before anything a snapshot can record (the duration then covers every snapshot).
    pub fn before(&self, reference_ns: i64, utc_offset: i32) -> i64 {
        let cutoff = (|| -> Option<i64> {
            let span = jiff::Span::new()
                .try_years(i64::from(self.years))
                .ok()?
                .try_months(i64::from(self.months))
                .ok()?
                .try_days(i64::from(self.days))
                .ok()?
                .try_hours(i64::from(self.hours))
                .ok()?;
            let z = zoned(reference_ns, utc_offset)?;
            let back = z.checked_sub(span).ok()?;
            i64::try_from(back.timestamp().as_nanosecond()).ok()
        })();
        cutoff.unwrap_or(i64::MIN)
    }
}

/// A retention policy: the rules of the module table. Every rule is optional; `None` (or no
/// tags) means the rule is not used.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeepPolicy {
    /// Keep the N newest snapshots.
    pub last: Option<u32>,
    /// Keep the newest snapshot of each of the N newest hours.
    pub hourly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest days.
    pub daily: Option<u32>,
    /// Keep the newest snapshot of each of the N newest ISO weeks.
    pub weekly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest months.
    pub monthly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest years.
    pub yearly: Option<u32>,
    /// Keep every snapshot within this duration of the reference time.
    pub within: Option<KeepDuration>,
    /// Keep one snapshot per hour within this duration.
    pub within_hourly: Option<KeepDuration>,
    /// Keep one snapshot per day within this duration.
    pub within_daily: Option<KeepDuration>,
    /// Keep one snapshot per ISO week within this duration.
    pub within_weekly: Option<KeepDuration>,
    /// Keep one snapshot per month within this duration.
    pub within_monthly: Option<KeepDuration>,
    /// Keep one snapshot per year within this duration.
    pub within_yearly: Option<KeepDuration>,
    /// Keep every snapshot that has any of these tags.
    pub tags: Vec<String>,
}

impl KeepPolicy {
    /// Whether no rule is given (such a policy would remove every snapshot; `forget` refuses it).
    /// `--keep-last 0` and the like count as given: asked for explicitly.
    pub fn is_empty(&self) -> bool {
        self.last.is_none()
            && self.hourly.is_none()
            && self.daily.is_none()
            && self.weekly.is_none()
            && self.monthly.is_none()
            && self.yearly.is_none()
            && self.within.is_none()
            && self.within_hourly.is_none()
            && self.within_daily.is_none()
            && self.within_weekly.is_none()
            && self.within_monthly.is_none()
            && self.within_yearly.is_none()
            && self.tags.is_empty()
    }
}

/// What the policy decided for one snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the snapshot stays.
    pub keep: bool,
    /// For a kept snapshot every rule that keeps it (e.g. `keep-daily 2026-11-20`); for a
    /// removed one why nothing kept it.
    pub reasons: Vec<String>,
}

/// The calendar units of the bucket rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unit {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Unit {
    const ALL: [Unit; 5] = [Unit::Hour, Unit::Day, Unit::Week, Unit::Month, Unit::Year];

    fn name(self) -> &'static str {
        match self {
            Unit::Hour => "hourly",
            Unit::Day => "daily",
            Unit::Week => "weekly",
            Unit::Month => "monthly",
            Unit::Year => "yearly",
        }
    }

    /// The bucket of a time in the given offset's calendar, as a label (which is also the key:
    /// equal labels mean the same bucket).
    fn bucket(self, time_ns: i64, utc_offset: i32) -> String {
        let Some(z) = zoned(time_ns, utc_offset) else {
            // Unreachable for an i64 of nanoseconds; one bucket per instant is the safe side.
            return format!("@{time_ns}");
        };
        match self {
            Unit::Hour => format!(
                "{:04}-{:02}-{:02} {:02}h",
                z.year(),
                z.month(),
                z.day(),
                z.hour()
            ),
            Unit::Day => format!("{:04}-{:02}-{:02}", z.year(), z.month(), z.day()),
            Unit::Week => {
                let w = z.date().iso_week_date();
                format!("{:04}-W{:02}", w.year(), w.week())
            }
            Unit::Month => format!("{:04}-{:02}", z.year(), z.month()),
            Unit::Year => format!("{:04}", z.year()),
        }
    }
}

/// A time in a fixed offset (an offset out of range, which no writer records, counts as UTC).
fn zoned(time_ns: i64, utc_offset: i32) -> Option<jiff::Zoned> {
    let ts = jiff::Timestamp::from_nanosecond(i128::from(time_ns)).ok()?;
    let offset = jiff::tz::Offset::from_seconds(utc_offset).unwrap_or(jiff::tz::Offset::UTC);
    Some(ts.to_zoned(jiff::tz::TimeZone::fixed(offset)))
}

/// The retention decision for each snapshot, in the order of `snapshots` (see the module
/// documentation for the rules). Apply it to one group at a time (see [`group`]). `now_ns` is
/// the current time, Unix nanoseconds; an empty policy removes everything (callers refuse it).
pub fn apply_policy(
    snapshots: &[(SnapshotId, Snapshot)],
    policy: &KeepPolicy,
    now_ns: i64,
) -> Vec<Decision> {
    let mut order: Vec<usize> = (0..snapshots.len()).collect();
    order.sort_by(|&a, &b| {
        let (ia, sa) = &snapshots[a];
        let (ib, sb) = &snapshots[b];
        (sb.time_ns, ib).cmp(&(sa.time_ns, ia))
    });
    let future = |s: &Snapshot| s.time_ns > now_ns;
    let counts = |s: &Snapshot| s.status == SnapshotStatus::Complete && !future(s);

    // The reference time of the keep-within rules: the newest complete, non-future snapshot.
    let reference = order
        .iter()
        .map(|&i| &snapshots[i].1)
        .find(|s| counts(s))
        .map_or((now_ns, 0), |s| (s.time_ns, s.utc_offset));
    let cutoff = |d: &KeepDuration| d.before(reference.0, reference.1);

    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); snapshots.len()];

    // keep-last, and the bucket rules (counted and within-limited).
    let counted = [
        (Unit::Hour, policy.hourly),
        (Unit::Day, policy.daily),
        (Unit::Week, policy.weekly),
        (Unit::Month, policy.monthly),
        (Unit::Year, policy.yearly),
    ];
    let within = [
        policy.within_hourly,
        policy.within_daily,
        policy.within_weekly,
        policy.within_monthly,
        policy.within_yearly,
    ];
    let mut last_left = policy.last.unwrap_or(0);
    let mut counted_left: Vec<u32> = counted.iter().map(|(_, n)| n.unwrap_or(0)).collect();
    let mut counted_seen: Vec<HashSet<String>> = vec![HashSet::new(); Unit::ALL.len()];
    let within_cutoff: Vec<Option<(KeepDuration, i64)>> =
        within.iter().map(|d| d.map(|d| (d, cutoff(&d)))).collect();
    let mut within_seen: Vec<HashSet<String>> = vec![HashSet::new(); Unit::ALL.len()];
    let within_all = policy.within.map(|d| (d, cutoff(&d)));

    for &i in &order {
        let s = &snapshots[i].1;
        let r = &mut reasons[i];
        if s.protected {
            r.push("protected".into());
        }
        if future(s) {
            r.push("dated after now: a policy never removes it".into());
        }
        if let Some((d, cut)) = within_all
            && s.time_ns >= cut
        {
            r.push(format!("keep-within {d}"));
        }
        for tag in &policy.tags {
            if s.tags.contains(tag) {
                r.push(format!("keep-tag {tag}"));
            }
        }
        if !counts(s) {
            continue;
        }
        if last_left > 0 {
            last_left -= 1;
            r.push("keep-last".into());
        }
        for (k, (unit, _)) in counted.iter().enumerate() {
            if counted_left[k] == 0 {
                continue;
            }
            let b = unit.bucket(s.time_ns, s.utc_offset);
            if !counted_seen[k].contains(&b) {
                counted_left[k] -= 1;
                r.push(format!("keep-{} {b}", unit.name()));
                counted_seen[k].insert(b);
            }
        }
        for (k, unit) in Unit::ALL.iter().enumerate() {
            let Some((d, cut)) = within_cutoff[k] else {
                continue;
            };
            if s.time_ns < cut {
                continue;
            }
            let b = unit.bucket(s.time_ns, s.utc_offset);
            if !within_seen[k].contains(&b) {
                r.push(format!("keep-within-{} {d} ({b})", unit.name()));
                within_seen[k].insert(b);
            }
        }
    }

    snapshots
        .iter()
        .zip(reasons)
        .map(|((_, s), reasons)| {
            if reasons.is_empty() {
                let why = if s.status == SnapshotStatus::Failed {
                    "failed backup: only keep-within and keep-tag keep it"
                } else {
                    "no rule keeps it"
                };
                Decision {
                    keep: false,
                    reasons: vec![why.into()],
                }
            } else {
                Decision {
                    keep: true,
                    reasons,
                }
            }
        })
        .collect()
}

/// Which snapshot fields make up a group (`--group-by host,paths,tags`; none: one group).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupBy {
    /// Group by host name.
    pub host: bool,
    /// Group by the set of backed-up paths.
    pub paths: bool,
    /// Group by the set of tags.
    pub tags: bool,
}

impl Default for GroupBy {
    /// `host,paths`.
    fn default() -> Self {
        GroupBy {
            host: true,
            paths: true,
            tags: false,
        }
    }
}

impl FromStr for GroupBy {
    type Err = crate::Error;

    /// Parses a comma-separated subset of `host`, `paths`, `tags`; empty means one group.
    fn from_str(s: &str) -> crate::Result<GroupBy> {
        let mut g = GroupBy {
            host: false,
            paths: false,
            tags: false,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" => g.host = true,
                "paths" => g.paths = true,
                "tags" => g.tags = true,
                other => {
                    return Err(crate::Error::new(
                        crate::ErrorKind::InvalidInput,
                        format!(
                            "cannot group by {other:?}: give a comma-separated list of host, \
                             paths and tags (or an empty string for one group)"
                        ),
                    ));
                }
            }
        }
        Ok(g)
    }
}

/// The values a group shares; `None` for a field not grouped by.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey {
    /// The cairn.toml store (`forget` by store groups by it alone; [`group`] never does).
    pub store: Option<String>,
    /// The host name.
    pub host: Option<String>,
    /// The paths, sorted and without duplicates.
    pub paths: Option<Vec<Vec<u8>>>,
    /// The tags, sorted and without duplicates.
    pub tags: Option<Vec<String>>,
}

/// Splits snapshots into groups: each key with the indexes (into `snapshots`, ascending) of its
/// snapshots. Groups are ordered by key.
pub fn group(snapshots: &[(SnapshotId, Snapshot)], by: GroupBy) -> Vec<(GroupKey, Vec<usize>)> {
    let mut groups: BTreeMap<GroupKey, Vec<usize>> = BTreeMap::new();
    for (i, (_, s)) in snapshots.iter().enumerate() {
        let key = GroupKey {
            store: None,
            host: by.host.then(|| s.hostname.clone()),
            paths: by.paths.then(|| {
                let mut p = s.paths.clone();
                p.sort();
                p.dedup();
                p
            }),
            tags: by.tags.then(|| {
                let mut t = s.tags.clone();
                t.sort();
                t.dedup();
                t
            }),
        };
        groups.entry(key).or_default().push(i);
    }
    groups.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use repo_format::{BlobId, Id};

    const H: i64 = 3_600_000_000_000;
    const DAY: i64 = 24 * H;

    /// Unix ns of a local civil time in a fixed offset (hours), and the offset in seconds.
    fn at(y: i16, mo: i8, d: i8, h: i8, mi: i8, off_h: i32) -> (i64, i32) {
        let off = jiff::tz::Offset::from_seconds(off_h * 3600).expect("offset");
        let z = jiff::civil::datetime(y, mo, d, h, mi, 0, 0)
            .to_zoned(jiff::tz::TimeZone::fixed(off))
            .expect("zoned");
        (
            i64::try_from(z.timestamp().as_nanosecond()).expect("ns"),
            off_h * 3600,
        )
    }

    fn snap(n: u8, (time_ns, utc_offset): (i64, i32)) -> (SnapshotId, Snapshot) {
        (
            SnapshotId(Id([n; 32])),
            Snapshot {
                time_ns,
                utc_offset,
                tree: BlobId::default(),
                paths: vec![b"/data".to_vec()],
                hostname: "box".into(),
                username: "me".into(),
                tags: Vec::new(),
                parent: None,
                summary: None,
                status: SnapshotStatus::Complete,
                chunker: None,
                program: "cairn test".into(),
                original: None,
                protected: false,
                failure: None,
                store: None,
                copied_from: None,
            },
        )
    }

    fn failed(mut s: (SnapshotId, Snapshot)) -> (SnapshotId, Snapshot) {
        s.1.status = SnapshotStatus::Failed;
        s
    }

    fn tagged(mut s: (SnapshotId, Snapshot), tags: &[&str]) -> (SnapshotId, Snapshot) {
        s.1.tags = tags.iter().map(|t| t.to_string()).collect();
        s
    }

    fn kept(d: &[Decision]) -> Vec<usize> {
        d.iter()
            .enumerate()
            .filter(|(_, d)| d.keep)
            .map(|(i, _)| i)
            .collect()
    }

    fn dur(s: &str) -> KeepDuration {
        s.parse().expect("duration")
    }

    /// A fixed "now", after every test snapshot (but the future-dated ones).
    fn now() -> i64 {
        at(2030, 1, 1, 0, 0, 0).0
    }

    /// `n` snapshots one day apart at 12:00 UTC, oldest first, from 2026-11-01.
    fn daily(n: u8) -> Vec<(SnapshotId, Snapshot)> {
        let start = at(2026, 11, 1, 12, 0, 0).0;
        (0..n)
            .map(|i| snap(i + 1, (start + i64::from(i) * DAY, 0)))
            .collect()
    }

    #[test]
    fn ten_daily_with_keep_daily_7_keeps_the_newest_7() {
        let s = daily(10);
        let p = KeepPolicy {
            daily: Some(7),
            ..KeepPolicy::default()
        };
        let d = apply_policy(&s, &p, now());
        assert_eq!(kept(&d), (3..10).collect::<Vec<_>>());
        assert_eq!(d[9].reasons, vec!["keep-daily 2026-11-10".to_string()]);
        assert_eq!(d[0].reasons, vec!["no rule keeps it".to_string()]);
    }

    #[test]
    fn keep_last_keeps_the_newest_n_whatever_the_input_order() {
        let mut s = daily(5);
        s.reverse();
        s.swap(1, 3);
        let p = KeepPolicy {
            last: Some(2),
            ..KeepPolicy::default()
        };
        let d = apply_policy(&s, &p, now());
        let mut days: Vec<i64> = s
            .iter()
            .zip(&d)
            .filter(|(_, d)| d.keep)
            .map(|(s, _)| s.1.time_ns)
            .collect();
        days.sort();
        assert_eq!(days, vec![s[0].1.time_ns - DAY, s[0].1.time_ns]);
        assert!(
            d.iter()
                .filter(|d| d.keep)
                .all(|d| d.reasons == ["keep-last"])
        );
    }

    #[test]
    fn two_per_day_keep_daily_keeps_the_newest_of_each_day() {
        let mut s = Vec::new();
        for day in 1..=4i8 {
            let n = u8::try_from(day).expect("u8");
            s.push(snap(n * 2, at(2026, 6, day, 8, 0, 2)));
            s.push(snap(n * 2 + 1, at(2026, 6, day, 20, 0, 2)));
        }
        let p = KeepPolicy {
            daily: Some(3),
            ..KeepPolicy::default()
        };
        let d = apply_policy(&s, &p, now());
        // The evening snapshots of 2, 3 and 4 June.
        assert_eq!(kept(&d), vec![3, 5, 7]);
    }

    #[test]
    fn equal_times_are_ordered_by_id_descending() {
        let t = at(2026, 1, 1, 0, 0, 0);
        let s = vec![snap(3, t), snap(9, t), snap(5, t)];
        let p = KeepPolicy {
            last: Some(1),
            ..KeepPolicy::default()
        };
        assert_eq!(kept(&apply_policy(&s, &p, now())), vec![1]);
        let p = KeepPolicy {
            daily: Some(5),
            ..KeepPolicy::default()
        };
        // One day: one snapshot kept, the same one `latest` would name.
        assert_eq!(kept(&apply_policy(&s, &p, now())), vec![1]);
    }

    #[test]
    fn keep_weekly_uses_iso_weeks_across_the_year_boundary() {
        // 2026-12-28 is the Monday of 2026-W53; 2027-01-04 the Monday of 2027-W01.
        let mut s = Vec::new();
        for (n, (y, m, d)) in [
            (2026, 12, 24),
            (2026, 12, 26),
            (2026, 12, 27),
            (2026, 12, 28),
            (2026, 12, 31),
            (2027, 1, 1),
            (2027, 1, 3),
            (2027, 1, 4),
            (2027, 1, 6),
        ]
        .into_iter()
        .enumerate()
        {
            s.push(snap(u8::try_from(n).expect("u8"), at(y, m, d, 12, 0, 0)));
        }
        let p = KeepPolicy {
            weekly: Some(3),
            ..KeepPolicy::default()
        };
        let d = apply_policy(&s, &p, now());
        assert_eq!(kept(&d), vec![2, 6, 8]);
        assert_eq!(d[8].reasons, ["keep-weekly 2027-W01"]);
        assert_eq!(d[6].reasons, ["keep-weekly 2026-W53"]);
        assert_eq!(d[2].reasons, ["keep-weekly 2026-W52"]);
    }

    #[test]
    fn keep_monthly_skips_months_without_snapshots() {
        let s = vec![
            snap(1, at(2025, 1, 10, 0, 0, 0)),
            snap(2, at(2025, 2, 3, 0, 0, 0)),
            snap(3, at(2025, 2, 20, 0, 0, 0)),
            snap(4, at(2025, 5, 1, 0, 0, 0)),
            snap(5, at(2025, 11, 30, 0, 0, 0)),
            snap(6, at(2026, 3, 1, 0, 0, 0)),
            snap(7, at(2026, 3, 15, 0, 0, 0)),
        ];
        let p = KeepPolicy {
            monthly: Some(4),
            ..KeepPolicy::default()
        };
        let d = apply_policy(&s, &p, now());
        assert_eq!(kept(&d), vec![2, 3, 4, 6]);
        assert_eq!(d[2].reasons, ["keep-monthly 2025-02"]);
    }

    #[test]
    fn keep_hourly_and_yearly() {
        let s = vec![
            snap(1, at(2024, 6, 1, 10, 5, 0)),
            snap(2, at(2025, 6, 1, 10, 5, 0)),
            snap(3, at(2025, 6, 1, 10, 55, 0)),
            snap(4, at(2025, 6, 1, 11, 5, 0)),
        ];
        let p = KeepPolicy {
            hourly: Some(2),
            ..KeepPolicy::default()
        };
        assert_eq!(kept(&apply_policy(&s, &p, now())), vec![2, 3]);
        let p = KeepPolicy {
            yearly: Some(5),
            ..KeepPolicy::default()
        };
        let d = apply_policy(&s, &p, now());
        assert_eq!(kept(&d), vec![0, 3]);
        assert_eq!(d[0].reasons, ["keep-yearly 2024"]);
    }

    #[test]
    fn buckets_are_in_the_snapshots_own_offset_across_a_dst_change() {
        // Europe/Berlin-like: +01:00 until 29 March 2026, +02:00 after.
        // A: 29 March 00:30 +02:00 (22:30 UTC on the 28th); B: 28 March 23:00 +01:00 (22:00 UTC
        // on the 28th); C: 27 March 23:00 +01:00. Locally A and B are on different days.
        let a = at(2026, 3, 29, 0, 30, 2);
        let b = at(2026, 3, 28, 23, 0, 1);
        let c = at(2026, 3, 27, 23, 0, 1);
        let s = vec![snap(1, c), snap(2, b), snap(3, a)];
        let p = KeepPolicy {
            daily: Some(2),
            ..KeepPolicy::default()
        };
        let d = apply_policy(&s, &p, now());
        assert_eq!(kept(&d), vec![1, 2]);
        assert_eq!(d[2].reasons, ["keep-daily 2026-03-29"]);
        assert_eq!(d[1].reasons, ["keep-daily 2026-03-28"]);
        // The same instants written in UTC: A and B share 28 March, so C is the second day.
        let utc = vec![snap(1, (c.0, 0)), snap(2, (b.0, 0)), snap(3, (a.0, 0))];
        assert_eq!(kept(&apply_policy(&utc, &p, now())), vec![0, 2]);
    }

    #[test]
    fn interleaved_offsets_count_each_bucket_once() {
        // Newest first: X (28th in UTC), Y (29th at +02:00, older instant), Z (28th in UTC).
        let y = at(2026, 3, 29, 0, 30, 2); // 22:30 UTC on the 28th
        let x = (y.0 + H, 0); // 23:30 UTC on the 28th
        let z = (y.0 - H, 0); // 21:30 UTC on the 28th
        let s = vec![snap(1, z), snap(2, y), snap(3, x)];
        let p = KeepPolicy {
            daily: Some(3),
            ..KeepPolicy::default()
        };
        // Two distinct days: X for the 28th, Y for the 29th; Z's day already has X.
        assert_eq!(kept(&apply_policy(&s, &p, now())), vec![1, 2]);
    }

    #[test]
    fn future_dated_snapshots_are_kept_and_count_toward_nothing() {
        let mut s = daily(5);
        s.push(snap(99, at(2099, 1, 1, 0, 0, 0)));
        let now = at(2026, 11, 6, 0, 0, 0).0;
        let p = KeepPolicy {
            daily: Some(2),
            ..KeepPolicy::default()
        };
        let d = apply_policy(&s, &p, now);
        assert_eq!(kept(&d), vec![3, 4, 5]);
        assert!(d[5].reasons[0].contains("dated after now"));
        // keep-within counts back from the newest snapshot that is not in the future.
        let p = KeepPolicy {
            within: Some(dur("1d")),
            ..KeepPolicy::default()
        };
        assert_eq!(kept(&apply_policy(&s, &p, now)), vec![3, 4, 5]);
    }

    #[test]
    fn very_old_snapshots_and_huge_durations() {
        let s = vec![
            snap(1, at(1700, 1, 1, 0, 0, 0)),
            snap(2, at(1969, 12, 31, 23, 0, 0)),
            snap(3, at(2026, 1, 1, 0, 0, 0)),
        ];
        let p = KeepPolicy {
            yearly: Some(10),
            ..KeepPolicy::default()
        };
        let d = apply_policy(&s, &p, now());
        assert_eq!(kept(&d), vec![0, 1, 2]);
        assert_eq!(d[0].reasons, ["keep-yearly 1700"]);
        let p = KeepPolicy {
            within: Some(dur("100y")),
            ..KeepPolicy::default()
        };
        assert_eq!(kept(&apply_policy(&s, &p, now())), vec![1, 2]);
        // Further back than any i64 time: everything is within.
        let p = KeepPolicy {
            within: Some(dur("4000000000y")),
            ..KeepPolicy::default()
        };
        assert_eq!(kept(&apply_policy(&s, &p, now())), vec![0, 1, 2]);
    }

    #[test]
    fn failed_backups_do_not_count_toward_keep_n() {
        let mut s = daily(6);
        for f in &mut s[3..] {
            f.1.status = SnapshotStatus::Failed;
        }
        let p = KeepPolicy {
            last: Some(2),
            daily: Some(2),
            ..KeepPolicy::default()
        };
        let d = apply_policy(&s, &p, now());
        // The three newest failed; the two newest good ones are kept.
        assert_eq!(kept(&d), vec![1, 2]);
        assert_eq!(
            d[2].reasons,
            ["keep-last".to_string(), "keep-daily 2026-11-03".to_string()]
        );
        assert!(d[5].reasons[0].starts_with("failed backup"));
        let p = KeepPolicy {
            within_daily: Some(dur("30d")),
            ..KeepPolicy::default()
        };
        assert_eq!(kept(&apply_policy(&s, &p, now())), vec![0, 1, 2]);
    }

    #[test]
    fn failed_backups_are_kept_by_keep_within_and_keep_tag() {
        let s = vec![
            snap(1, at(2026, 1, 1, 0, 0, 0)),
            failed(tagged(snap(2, at(2026, 1, 2, 0, 0, 0)), &["keep"])),
            snap(3, at(2026, 1, 10, 0, 0, 0)),
            failed(snap(4, at(2026, 1, 11, 0, 0, 0))),
            failed(snap(5, at(2026, 1, 12, 0, 0, 0))),
        ];
        let p = KeepPolicy {
            within: Some(dur("1d")),
            tags: vec!["keep".into()],
            ..KeepPolicy::default()
        };
        // Reference: the newest complete snapshot (10 January), not the failed ones after it.
        let d = apply_policy(&s, &p, now());
        assert_eq!(kept(&d), vec![1, 2, 3, 4]);
        assert_eq!(d[1].reasons, ["keep-tag keep"]);
        assert_eq!(d[4].reasons, ["keep-within 1d"]);
        // Only failed snapshots: keep-within counts back from now.
        let only_failed: Vec<_> = s[3..].to_vec();
        let now = at(2026, 1, 12, 12, 0, 0).0;
        assert_eq!(kept(&apply_policy(&only_failed, &p, now)), vec![1]);
    }

    fn protect(mut s: (SnapshotId, Snapshot)) -> (SnapshotId, Snapshot) {
        s.1.protected = true;
        s
    }

    #[test]
    fn a_protected_old_snapshot_survives_keep_last_1() {
        let mut s = daily(5);
        s[0] = protect(s[0].clone());
        let p = KeepPolicy {
            last: Some(1),
            ..KeepPolicy::default()
        };
        let d = apply_policy(&s, &p, now());
        assert_eq!(kept(&d), vec![0, 4]);
        assert_eq!(d[0].reasons, ["protected"]);
        assert_eq!(d[4].reasons, ["keep-last"]);
        // Even a policy that keeps nothing keeps it.
        let none = KeepPolicy {
            last: Some(0),
            ..KeepPolicy::default()
        };
        assert_eq!(kept(&apply_policy(&s, &none, now())), vec![0]);
    }

    #[test]
    fn protection_lists_every_other_reason_too() {
        let mut s = daily(3);
        s[2] = protect(s[2].clone());
        let p = KeepPolicy {
            last: Some(1),
            daily: Some(1),
            ..KeepPolicy::default()
        };
        let d = apply_policy(&s, &p, now());
        assert_eq!(kept(&d), vec![2]);
        assert_eq!(
            d[2].reasons,
            ["protected", "keep-last", "keep-daily 2026-11-03"]
        );
    }

    #[test]
    fn protection_does_not_change_which_others_are_kept() {
        // Two per day over six days, a failed one and a future one, under several policies:
        // protecting any one snapshot keeps it and changes nothing else.
        let mut base = Vec::new();
        for day in 1..=6i8 {
            let n = u8::try_from(day).expect("u8");
            base.push(snap(n * 2, at(2026, 5, day, 6, 0, 0)));
            base.push(snap(n * 2 + 1, at(2026, 5, day, 18, 0, 0)));
        }
        base.push(failed(snap(50, at(2026, 5, 7, 1, 0, 0))));
        base.push(snap(51, at(2099, 1, 1, 0, 0, 0)));
        let now = at(2026, 6, 1, 0, 0, 0).0;
        let policies = [
            KeepPolicy {
                last: Some(3),
                ..KeepPolicy::default()
            },
            KeepPolicy {
                daily: Some(2),
                weekly: Some(1),
                ..KeepPolicy::default()
            },
            KeepPolicy {
                within_daily: Some(dur("3d")),
                ..KeepPolicy::default()
            },
            KeepPolicy {
                within: Some(dur("1d")),
                monthly: Some(1),
                ..KeepPolicy::default()
            },
        ];
        for p in &policies {
            let plain = apply_policy(&base, p, now);
            for i in 0..base.len() {
                let mut s = base.clone();
                s[i] = protect(s[i].clone());
                let d = apply_policy(&s, p, now);
                for (j, (with, without)) in d.iter().zip(&plain).enumerate() {
                    if j == i {
                        assert!(with.keep, "{p:?}: protected snapshot {i} removed");
                        assert_eq!(with.reasons[0], "protected");
                        if without.keep {
                            assert_eq!(with.reasons[1..], without.reasons[..], "{p:?} {i}");
                        } else {
                            assert_eq!(with.reasons, ["protected"], "{p:?} {i}");
                        }
                    } else {
                        assert_eq!(with, without, "{p:?}: protecting {i} changed {j}");
                    }
                }
            }
        }
    }

    #[test]
    fn keep_tag_keeps_snapshots_with_any_of_the_tags() {
        let s = vec![
            tagged(snap(1, at(2026, 1, 1, 0, 0, 0)), &["a", "x"]),
            tagged(snap(2, at(2026, 1, 2, 0, 0, 0)), &["b"]),
            tagged(snap(3, at(2026, 1, 3, 0, 0, 0)), &["c"]),
            snap(4, at(2026, 1, 4, 0, 0, 0)),
        ];
        let p = KeepPolicy {
            tags: vec!["a".into(), "b".into()],
            ..KeepPolicy::default()
        };
        let d = apply_policy(&s, &p, now());
        assert_eq!(kept(&d), vec![0, 1]);
        assert_eq!(d[0].reasons, ["keep-tag a"]);
    }

    #[test]
    fn keep_within_counts_back_from_the_newest_snapshot_not_now() {
        let s = daily(10); // 1..10 November 2026, 12:00
        let p = KeepPolicy {
            within: Some(dur("3d")),
            ..KeepPolicy::default()
        };
        // Years later the last snapshots are still kept: the newest and three days before.
        let d = apply_policy(&s, &p, now());
        assert_eq!(kept(&d), vec![6, 7, 8, 9]);
        let p = KeepPolicy {
            within: Some(dur("2d23h")),
            ..KeepPolicy::default()
        };
        assert_eq!(kept(&apply_policy(&s, &p, now())), vec![7, 8, 9]);
    }

    #[test]
    fn keep_within_months_are_calendar_months() {
        let s = vec![
            snap(1, at(2026, 2, 27, 12, 0, 0)),
            snap(2, at(2026, 2, 28, 12, 0, 0)),
            snap(3, at(2026, 3, 31, 12, 0, 0)),
        ];
        let p = KeepPolicy {
            within: Some(dur("1m")),
            ..KeepPolicy::default()
        };
        // One month before 31 March is 28 February (clamped).
        assert_eq!(kept(&apply_policy(&s, &p, now())), vec![1, 2]);
    }

    #[test]
    fn keep_within_daily_keeps_one_per_day_inside_the_window() {
        let mut s = Vec::new();
        for day in 1..=10i8 {
            let n = u8::try_from(day).expect("u8");
            s.push(snap(n * 2, at(2026, 5, day, 6, 0, 0)));
            s.push(snap(n * 2 + 1, at(2026, 5, day, 18, 0, 0)));
        }
        let p = KeepPolicy {
            within_daily: Some(dur("5d")),
            ..KeepPolicy::default()
        };
        let d = apply_policy(&s, &p, now());
        // Newest: 10 May 18:00; window from 5 May 18:00: the evening ones of 5..10 May.
        assert_eq!(kept(&d), vec![9, 11, 13, 15, 17, 19]);
        assert_eq!(d[19].reasons, ["keep-within-daily 5d (2026-05-10)"]);
    }

    #[test]
    fn rules_combine_as_a_union_with_every_reason() {
        let mut s = daily(10);
        s[0] = tagged(s[0].clone(), &["yearly-archive"]);
        let p = KeepPolicy {
            last: Some(1),
            daily: Some(3),
            monthly: Some(1),
            within: Some(dur("1d")),
            tags: vec!["yearly-archive".into()],
            ..KeepPolicy::default()
        };
        let d = apply_policy(&s, &p, now());
        assert_eq!(kept(&d), vec![0, 7, 8, 9]);
        assert_eq!(
            d[9].reasons,
            [
                "keep-within 1d",
                "keep-last",
                "keep-daily 2026-11-10",
                "keep-monthly 2026-11"
            ]
        );
        assert_eq!(d[8].reasons, ["keep-within 1d", "keep-daily 2026-11-09"]);
        assert_eq!(d[0].reasons, ["keep-tag yearly-archive"]);
    }

    #[test]
    fn empty_policy_and_zero_counts() {
        assert!(KeepPolicy::default().is_empty());
        let p = KeepPolicy {
            last: Some(0),
            ..KeepPolicy::default()
        };
        assert!(!p.is_empty());
        assert!(kept(&apply_policy(&daily(3), &p, now())).is_empty());
        assert!(apply_policy(&[], &p, now()).is_empty());
    }

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(
            dur("30d"),
            KeepDuration {
                days: 30,
                ..KeepDuration::default()
            }
        );
        assert_eq!(
            dur("1y2m"),
            KeepDuration {
                years: 1,
                months: 2,
                ..KeepDuration::default()
            }
        );
        assert_eq!(dur("12h7d").to_string(), "7d12h");
        assert_eq!(dur("0d").to_string(), "0h");
        for (bad, why) in [
            ("", "empty"),
            ("30", "has no unit"),
            ("30s", "unknown unit 's'"),
            ("d", "not preceded by a number"),
            ("1d2d", "given twice"),
            ("99999999999d", "too large"),
            ("-1d", "not preceded"),
        ] {
            let e = bad.parse::<KeepDuration>().expect_err(bad).to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
            assert!(e.contains("e.g. 30d"), "{e}");
        }
    }

    #[test]
    fn grouping() {
        let mut s = daily(4);
        s[1].1.hostname = "other".into();
        s[2].1.paths = vec![b"/b".to_vec(), b"/a".to_vec()];
        s[3].1.paths = vec![b"/a".to_vec(), b"/b".to_vec()];
        s[3].1.tags = vec!["t".into()];
        let g = group(&s, GroupBy::default());
        let members: Vec<Vec<usize>> = g.iter().map(|(_, m)| m.clone()).collect();
        assert_eq!(members, vec![vec![2, 3], vec![0], vec![1]]);
        assert_eq!(g[0].0.host.as_deref(), Some("box"));
        assert_eq!(g[0].0.tags, None);
        let by_tags = group(&s, "host,paths,tags".parse().expect("group-by"));
        assert_eq!(by_tags.len(), 4);
        let one = group(&s, "".parse().expect("group-by"));
        assert_eq!(one, vec![(GroupKey::default(), vec![0, 1, 2, 3])]);
        let hosts = group(&s, " host ".parse().expect("group-by"));
        assert_eq!(hosts.len(), 2);
        let e = "host,user".parse::<GroupBy>().expect_err("bad field");
        assert!(e.to_string().contains("\"user\""));
    }
}
