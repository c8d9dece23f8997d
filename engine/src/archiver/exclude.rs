//! Excludes for directory backups (`cairn backup --exclude`, a directory store's `exclude`):
//! gitignore-like patterns, matched against each entry's path relative to the backed-up path
//! that holds it.
//!
//! | pattern | leaves out |
//! |---|---|
//! | `*.log` | every entry whose name ends in `.log`, at any depth (no `/`: a name anywhere) |
//! | `cache/` | every *directory* named `cache`, at any depth (a trailing `/`: directories only) |
//! | `/tmp` | `tmp` directly inside the backed-up path (a leading `/` anchors there) |
//! | `logs/*.gz` | `.gz` names directly inside `logs` directly inside the backed-up path (a `/` in the middle anchors too, as in gitignore) |
//! | `**/build/*.o` | `.o` names directly inside any directory named `build` |
//! | `data/**` | `data` at the top, and everything below it |
//!
//! Within one name, `*` matches any run of characters (a leading `.` too), `?` one character,
//! `[a-z]` / `[!a-z]` a class, and `\` escapes; `**` as a whole component matches any number of
//! names (the matcher is [`Glob`], that of `cairn find`). A backed-up path itself is never
//! excluded, and neither is anything below an excluded directory looked at. Negation (`!`) is
//! not supported: a pattern starting with `!` is refused rather than read as a literal name.

use crate::error::{Error, ErrorKind, Result};
use crate::glob::{Glob, GlobState};

/// A compiled list of exclude patterns (possibly empty).
#[derive(Clone, Debug, Default)]
pub struct Excludes {
    rules: Vec<Rule>,
}

#[derive(Clone, Debug)]
struct Rule {
    glob: Glob,
    /// A trailing `/`: only directories match.
    dir_only: bool,
}

/// Where the rules are after the names leading to a directory: for each rule that can still
/// match below it, its index and state. Cheap when nothing can match.
#[derive(Clone, Debug, Default)]
pub struct ExcludeState(Vec<(usize, GlobState)>);

impl Excludes {
    /// Compiles `patterns` (see the module documentation); an invalid one is an
    /// [`ErrorKind::InvalidInput`] error naming it.
    pub fn new(patterns: &[String]) -> Result<Excludes> {
        let rules = patterns
            .iter()
            .map(|p| compile(p))
            .collect::<Result<Vec<_>>>()?;
        Ok(Excludes { rules })
    }

    /// Whether there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The state at a backed-up path (before any name below it).
    pub fn start(&self) -> ExcludeState {
        ExcludeState(
            self.rules
                .iter()
                .enumerate()
                .map(|(i, r)| (i, r.glob.start()))
                .collect(),
        )
    }

    /// Looks at the entry `name` inside the directory that led to `state`: whether it is
    /// excluded, and otherwise the state for the entries below it.
    pub fn step(&self, state: &ExcludeState, name: &[u8], is_dir: bool) -> Option<ExcludeState> {
        let mut next = Vec::new();
        for &(i, s) in &state.0 {
            let Some(rule) = self.rules.get(i) else {
                continue; // a state of other excludes: nothing of ours to match
            };
            let s = rule.glob.step(s, name);
            if rule.glob.matched(s) && (is_dir || !rule.dir_only) {
                return None;
            }
            if is_dir && rule.glob.may_match_below(s) {
                next.push((i, s));
            }
        }
        Some(ExcludeState(next))
    }

    /// Whether `path` (`/`-separated names relative to a backed-up path) is excluded, either
    /// itself or through a directory above it; every name but the last is a directory.
    pub fn is_excluded(&self, path: &str, is_dir: bool) -> bool {
        let names: Vec<&str> = path.split('/').filter(|n| !n.is_empty()).collect();
        let mut state = self.start();
        for (k, name) in names.iter().enumerate() {
            let dir = k + 1 < names.len() || is_dir;
            match self.step(&state, name.as_bytes(), dir) {
                Some(s) => state = s,
                None => return true,
            }
        }
        false
    }
}

/// One pattern in gitignore's terms, translated for [`Glob`]: a `/` at the start or in the
/// middle anchors it at the backed-up path, a trailing `/` is kept as "directories only".
fn compile(pattern: &str) -> Result<Rule> {
    let bad = |why: &str| {
        Error::new(
            ErrorKind::InvalidInput,
            format!(
                "exclude pattern {pattern:?}: {why} (e.g. \"*.log\", \"cache/\", \"/tmp\", \"logs/**\")"
            ),
        )
    };
    if pattern.starts_with('!') {
        return Err(bad(
            "negation is not supported: list what to leave out, or write \\! for a name starting with !",
        ));
    }
    let trimmed = pattern.trim_end_matches('/');
    let dir_only = trimmed.len() != pattern.len();
    if trimmed.is_empty() {
        return Err(bad("it names nothing"));
    }
    let anchored = trimmed.starts_with('/') || trimmed.contains('/');
    let source = if anchored && !trimmed.starts_with('/') {
        format!("/{trimmed}")
    } else {
        trimmed.to_owned()
    };
    let glob = Glob::new(&source).map_err(|e| {
        Error::with_source(
            ErrorKind::InvalidInput,
            format!("exclude pattern {pattern:?} is not valid: correct it or leave it out"),
            e,
        )
    })?;
    Ok(Rule { glob, dir_only })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(patterns: &[&str]) -> Excludes {
        Excludes::new(&patterns.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>())
            .expect("patterns")
    }

    #[test]
    fn names_without_a_slash_match_at_any_depth() {
        let e = ex(&["*.log"]);
        assert!(e.is_excluded("a.log", false));
        assert!(e.is_excluded("x/y/z/a.log", false));
        assert!(e.is_excluded("logs.log/inner", false));
        assert!(!e.is_excluded("a.log.gz", false));
        assert!(ex(&[".cache"]).is_excluded("home/.cache", true));
        assert!(ex(&["?.tmp"]).is_excluded("d/a.tmp", false));
        assert!(!ex(&["?.tmp"]).is_excluded("d/ab.tmp", false));
    }

    #[test]
    fn trailing_slash_means_directories_only() {
        let e = ex(&["cache/"]);
        assert!(e.is_excluded("cache", true));
        assert!(e.is_excluded("a/b/cache", true));
        assert!(!e.is_excluded("a/cache", false));
        // Below an excluded directory, everything is out.
        assert!(e.is_excluded("a/cache/x", false));
    }

    #[test]
    fn leading_or_middle_slash_anchors_at_the_backed_up_path() {
        let e = ex(&["/tmp"]);
        assert!(e.is_excluded("tmp", true));
        assert!(e.is_excluded("tmp", false));
        assert!(!e.is_excluded("a/tmp", true));
        let e = ex(&["logs/*.gz"]);
        assert!(e.is_excluded("logs/a.gz", false));
        assert!(!e.is_excluded("x/logs/a.gz", false));
        assert!(!e.is_excluded("logs/sub/a.gz", false));
        let e = ex(&["**/build/*.o"]);
        assert!(e.is_excluded("build/a.o", false));
        assert!(e.is_excluded("x/y/build/a.o", false));
        let e = ex(&["data/**"]);
        assert!(e.is_excluded("data", true));
        assert!(e.is_excluded("data/a/b", false));
        assert!(!e.is_excluded("x/data/a", false));
        let e = ex(&["/a/**/z"]);
        assert!(e.is_excluded("a/z", false));
        assert!(e.is_excluded("a/b/c/z", false));
        assert!(!e.is_excluded("b/a/z", false));
    }

    #[test]
    fn states_drop_rules_that_cannot_match_below() {
        let e = ex(&["/keep/out", "*.log"]);
        let s = e.start();
        let other = e.step(&s, b"other", true).expect("kept");
        assert_eq!(other.0.len(), 1, "only *.log can match below /other");
        let keep = e.step(&s, b"keep", true).expect("kept");
        assert_eq!(keep.0.len(), 2);
        assert!(e.step(&keep, b"out", false).is_none());
        // A file has nothing below it.
        assert!(e.step(&s, b"f", false).expect("kept").0.is_empty());
        assert!(Excludes::default().is_empty());
        let none = Excludes::default();
        assert!(none.step(&none.start(), b"x", true).is_some());
    }

    #[test]
    fn bad_patterns_say_why() {
        for (p, why) in [
            ("!important", "negation"),
            ("/", "names nothing"),
            ("//", "names nothing"),
            ("[a", "not closed"),
            ("../x", "'..'"),
        ] {
            let e = crate::restorer::error_chain(&Excludes::new(&[p.to_owned()]).expect_err(p));
            assert!(
                e.contains(why) && e.contains("exclude pattern"),
                "{p:?}: {e}"
            );
        }
        assert!(ex(&["\\!x"]).is_excluded("!x", false));
    }
}
