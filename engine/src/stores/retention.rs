//! A store's `retention`: `"forever"`, or a table of the rules of `cairn forget`, read into a
//! [`KeepPolicy`](crate::retention::KeepPolicy) and described in words.
//!
//! | key | value | `cairn forget` option |
//! |---|---|---|
//! | `keep_last`, `keep_hourly`, `keep_daily`, `keep_weekly`, `keep_monthly`, `keep_yearly` | a positive integer | `--keep-last N` … |
//! | `keep_within`, `keep_within_hourly` … `keep_within_yearly` | a calendar duration: `30d`, `7d12h`, `1y2m` (y years, **m months**, d days, h hours) | `--keep-within D` … |
//! | `keep_tag` | a tag or an array of tags | `--keep-tag T` |
//!
//! "Every 6 hours for 7 days" is the store's `interval = "6h"` with
//! `retention = { keep_within_hourly = "7d" }`: one snapshot per hour (so every 6-hourly one) of
//! the 7 days before the newest snapshot. Unlike `keep_within`, it never keeps failed backups.

use std::fmt;

use crate::retention::{KeepDuration, KeepPolicy};

use super::reader::Val;

/// How long a store's snapshots are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Retention {
    /// Never forgotten (`retention = "forever"`).
    Forever,
    /// Kept while one of the rules keeps them (never an empty policy).
    Keep(KeepPolicy),
}

impl Retention {
    /// The policy `cairn forget` applies, or `None` for [`Retention::Forever`].
    pub fn policy(&self) -> Option<&KeepPolicy> {
        match self {
            Retention::Forever => None,
            Retention::Keep(p) => Some(p),
        }
    }
}

/// The keys of a retention table that take a count.
const COUNTS: [&str; 6] = [
    "keep_last",
    "keep_hourly",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
    "keep_yearly",
];

/// The keys of a retention table that take a calendar duration.
const WITHINS: [&str; 6] = [
    "keep_within",
    "keep_within_hourly",
    "keep_within_daily",
    "keep_within_weekly",
    "keep_within_monthly",
    "keep_within_yearly",
];

/// Every key of a retention table.
pub(super) const KEYS: [&str; 13] = [
    "keep_last",
    "keep_hourly",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
    "keep_yearly",
    "keep_within",
    "keep_within_hourly",
    "keep_within_daily",
    "keep_within_weekly",
    "keep_within_monthly",
    "keep_within_yearly",
    "keep_tag",
];

const HOW: &str = "write retention = \"forever\" or a table of keep rules, e.g. \
                   retention = { keep_daily = 30 } (the keys of `cairn forget`: keep_last, \
                   keep_daily, keep_within = \"90d\", …)";

/// Reads a `retention` value; problems are recorded and give `None`.
pub(super) fn read(v: &Val<'_, '_>) -> Option<Retention> {
    if let Some(s) = v.value.get_ref().as_str() {
        if s == "forever" {
            return Some(Retention::Forever);
        }
        v.error(format!("{} is not a retention: {HOW}", v.found()));
        return None;
    }
    let t = v.table(&format!("\"forever\" or a table of keep rules ({HOW})"))?;
    t.check_keys(&KEYS, &|_| None);
    let mut p = KeepPolicy::default();
    let counts = [
        &mut p.last,
        &mut p.hourly,
        &mut p.daily,
        &mut p.weekly,
        &mut p.monthly,
        &mut p.yearly,
    ];
    for (key, field) in COUNTS.iter().zip(counts) {
        *field = t.get(key).and_then(|v| v.positive_u32());
    }
    let withins = [
        &mut p.within,
        &mut p.within_hourly,
        &mut p.within_daily,
        &mut p.within_weekly,
        &mut p.within_monthly,
        &mut p.within_yearly,
    ];
    for (key, field) in WITHINS.iter().zip(withins) {
        *field = t.get(key).and_then(|v| keep_duration(&v));
    }
    if let Some(tags) = t.get("keep_tag") {
        p.tags = if tags.value.get_ref().is_str() {
            tags.nonempty("a tag").into_iter().collect()
        } else {
            tags.string_list("tags").unwrap_or_default()
        };
    }
    if p.is_empty() && t.table.is_empty() {
        t.cx.error(
            &t.span,
            &t.path,
            format!("keeps nothing (cairn forget would remove every snapshot): {HOW}"),
        );
        return None;
    }
    // A rule with a bad value was reported above; an empty policy then is no new problem.
    (!p.is_empty()).then_some(Retention::Keep(p))
}

/// A calendar duration for a keep_within rule: parsed by [`KeepDuration`], never zero.
fn keep_duration(v: &Val<'_, '_>) -> Option<KeepDuration> {
    let s = v.string("a duration such as \"30d\", \"7d12h\" or \"1y2m\"")?;
    match s.parse::<KeepDuration>() {
        Ok(d) if d == KeepDuration::default() => {
            v.error(format!(
                "{s:?} keeps nothing: give a duration longer than zero, e.g. \"7d\""
            ));
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            v.error(e.message().to_owned());
            None
        }
    }
}

/// A calendar duration in words: `7d` → `7 days`, `1y2m` → `1 year 2 months`.
pub fn duration_words(d: &KeepDuration) -> String {
    let mut parts = Vec::new();
    for (n, one) in [
        (d.years, "year"),
        (d.months, "month"),
        (d.days, "day"),
        (d.hours, "hour"),
    ] {
        match n {
            0 => {}
            1 => parts.push(format!("1 {one}")),
            n => parts.push(format!("{n} {one}s")),
        }
    }
    if parts.is_empty() {
        "0 hours".to_owned()
    } else {
        parts.join(" ")
    }
}

impl fmt::Display for Retention {
    /// In words, e.g. `one per day for 30 days; every snapshot of the last 90 days; forever`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = match self {
            Retention::Forever => return f.write_str("forever (never forgotten)"),
            Retention::Keep(p) => p,
        };
        let mut parts = Vec::new();
        if let Some(n) = p.last {
            parts.push(format!("the newest {n}"));
        }
        for (n, unit) in [
            (p.hourly, "hour"),
            (p.daily, "day"),
            (p.weekly, "week"),
            (p.monthly, "month"),
            (p.yearly, "year"),
        ] {
            if let Some(n) = n {
                let s = if n == 1 { "" } else { "s" };
                parts.push(format!("one per {unit} for {n} {unit}{s}"));
            }
        }
        if let Some(d) = &p.within {
            parts.push(format!("every snapshot of the last {}", duration_words(d)));
        }
        for (d, unit) in [
            (&p.within_hourly, "hour"),
            (&p.within_daily, "day"),
            (&p.within_weekly, "week"),
            (&p.within_monthly, "month"),
            (&p.within_yearly, "year"),
        ] {
            if let Some(d) = d {
                parts.push(format!("one per {unit} for {}", duration_words(d)));
            }
        }
        if !p.tags.is_empty() {
            parts.push(format!("every snapshot tagged {}", p.tags.join(" or ")));
        }
        f.write_str(&parts.join("; "))
    }
}

/// For a retention rule written in the store table itself: where it belongs.
pub(super) fn misplaced_rule(key: &str) -> Option<String> {
    KEYS.contains(&key).then(|| {
        format!(
            "`{key}` is a retention rule: put it in the store's retention table, e.g. \
             retention = {{ {key} = … }}"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dur(s: &str) -> KeepDuration {
        s.parse().expect("duration")
    }

    #[test]
    fn words() {
        assert_eq!(duration_words(&dur("7d")), "7 days");
        assert_eq!(duration_words(&dur("1y2m")), "1 year 2 months");
        assert_eq!(duration_words(&dur("1d12h")), "1 day 12 hours");
        assert_eq!(Retention::Forever.to_string(), "forever (never forgotten)");
        let p = KeepPolicy {
            last: Some(3),
            daily: Some(30),
            weekly: Some(1),
            within: Some(dur("90d")),
            within_hourly: Some(dur("7d")),
            tags: vec!["keep".into(), "release".into()],
            ..KeepPolicy::default()
        };
        assert_eq!(
            Retention::Keep(p).to_string(),
            "the newest 3; one per day for 30 days; one per week for 1 week; every snapshot of \
             the last 90 days; one per hour for 7 days; every snapshot tagged keep or release"
        );
    }
}
