//! Fixed durations in cairn.toml (`interval`, `bgsave_timeout`): `30s`, `10m`, `6h`, `1d12h`.
//!
//! Units: `s` seconds, `m` minutes, `h` hours, `d` days, `w` weeks, each at most once, in any
//! order. These are fixed lengths of time, unlike the calendar durations of the retention rules
//! (`keep_within = "1m"` is one *month*; see [`KeepDuration`](crate::retention::KeepDuration)).

use std::time::Duration;

/// Parses a duration; it must be longer than zero. The error says what is wrong and shows
/// examples.
pub(super) fn parse(s: &str) -> Result<Duration, String> {
    let bad = |why: String| {
        format!(
            "{why}; write numbers with units s (seconds), m (minutes), h (hours), d (days), \
             w (weeks), e.g. \"30s\", \"6h\" or \"1d12h\""
        )
    };
    if s.is_empty() {
        return Err(bad("the duration is empty".into()));
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut seen = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        if digits.is_empty() {
            return Err(bad(format!("'{c}' in {s:?} is not preceded by a number")));
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(bad(format!("'{c}' in {s:?} is not a unit"))),
        };
        if seen.contains(c) {
            return Err(bad(format!("the unit '{c}' is given twice in {s:?}")));
        }
        seen.push(c);
        total = digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(unit))
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| bad(format!("{s:?} is too long")))?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(bad(format!("{digits} in {s:?} has no unit")));
    }
    if total == 0 {
        return Err(bad(format!("{s:?} is zero")));
    }
    Ok(Duration::from_secs(total))
}

/// Formats a duration the way cairn.toml writes it (`interval`), largest units first:
/// `1d12h`, `90s` → `1m30s`.
/// Sub-second parts are dropped.
pub fn format(d: Duration) -> String {
    let mut left = d.as_secs();
    if left == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, secs) in [
        ('w', 604_800),
        ('d', 86_400),
        ('h', 3_600),
        ('m', 60),
        ('s', 1),
    ] {
        let n = left / secs;
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
            left -= n * secs;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        for (text, secs, shown) in [
            ("30s", 30, "30s"),
            ("10m", 600, "10m"),
            ("6h", 21_600, "6h"),
            ("24h", 86_400, "1d"),
            ("1d12h", 129_600, "1d12h"),
            ("12h1d", 129_600, "1d12h"),
            ("2w", 1_209_600, "2w"),
            ("90m", 5_400, "1h30m"),
        ] {
            let d = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(d.as_secs(), secs, "{text}");
            assert_eq!(format(d), shown, "{text}");
            assert_eq!(parse(shown), Ok(d));
        }
    }

    #[test]
    fn rejects_with_the_reason() {
        for (text, why) in [
            ("", "empty"),
            ("24", "has no unit"),
            ("1y", "'y' in \"1y\" is not a unit"),
            ("h", "not preceded"),
            ("-1h", "not preceded"),
            ("1h2h", "given twice"),
            ("0s", "is zero"),
            ("99999999999999999999s", "too long"),
            ("999999999999999w", "too long"),
            ("1.5h", "not a unit"),
        ] {
            let e = parse(text).expect_err(text);
            assert!(
                e.contains(why) && e.contains("e.g. \"30s\""),
                "{text:?}: {e}"
            );
        }
    }
}
