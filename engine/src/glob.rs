//! Path patterns: a small glob matcher over snapshot paths (`/`-separated bytes, names not
//! necessarily UTF-8), used by `cairn find`.
//!
//! | pattern | matches |
//! |---|---|
//! | `*.dump` | any path whose last name ends in `.dump`, at any depth |
//! | `n8n/*.json` | a `.json` name directly below any directory named `n8n` |
//! | `/data/n8n/*` | the entries directly below `/data/n8n` (anchored at the snapshot root) |
//! | `/data/**` | `/data` and everything below it (a trailing `/` means the same) |
//!
//! Within one name: `*` matches any run of characters (including none, and a leading `.`),
//! `?` one character, `[abc]`, `[a-z]`, `[!a-z]` (or `[^a-z]`) one character of a class, and
//! `\` makes the next character literal. A `**` component matches zero or more whole names.
//! A pattern that does not start with `/` is matched against every tail of the path, as if it
//! began with `**/`: with no `/` at all it is matched against the last name only.
//!
//! Matching is an NFA over the pattern's components, stepped one name at a time
//! ([`Glob::start`], [`Glob::step`]), so a tree walk carries a [`GlobState`] down instead of
//! rebuilding paths, and [`Glob::may_match_below`] tells when a directory cannot hold a match
//! (an anchored pattern prunes every directory off its path).

use crate::error::{Error, ErrorKind, Result};

/// At most this many components (the NFA state is a 64-bit set: components + the final state).
const MAX_COMPONENTS: usize = 63;

/// A compiled pattern. See the module docs for the syntax.
#[derive(Clone, Debug)]
pub struct Glob {
    source: String,
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    /// `**`: zero or more names.
    AnyNames,
    /// One name.
    Name(Vec<Tok>),
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Lit(char),
    /// `?`
    One,
    /// `*`
    Star,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// Where the matcher is after some leading names of a path: the set of pattern positions
/// reached (bit `i`: the first `i` components matched). Cheap to copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GlobState(u64);

impl Glob {
    /// Compiles `pattern`; fails with [`ErrorKind::InvalidInput`] saying what is wrong.
    pub fn new(pattern: &str) -> Result<Glob> {
        let bad = |why: &str| {
            Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "invalid pattern {pattern:?}: {why} (e.g. '*.dump', '/data/n8n/*', 'n8n/**')"
                ),
            )
        };
        if pattern.is_empty() {
            return Err(bad("it is empty"));
        }
        let anchored = pattern.starts_with('/');
        let mut parts = Vec::new();
        if !anchored {
            parts.push(Part::AnyNames);
        }
        let comps: Vec<&str> = split_components(pattern);
        for comp in &comps {
            match *comp {
                "" | "." => {}
                ".." => return Err(bad("'..' cannot match anything in a snapshot")),
                "**" => {
                    // `**/**` is the same as `**`.
                    if parts.last() != Some(&Part::AnyNames) {
                        parts.push(Part::AnyNames);
                    }
                }
                c => parts.push(Part::Name(parse_name(c).map_err(|why| bad(&why))?)),
            }
        }
        if pattern.ends_with('/') && parts.last() != Some(&Part::AnyNames) {
            parts.push(Part::AnyNames);
        }
        if !parts.iter().any(|p| matches!(p, Part::Name(_))) && !anchored {
            return Err(bad("it names nothing (use '/**' for everything)"));
        }
        if parts.len() > MAX_COMPONENTS {
            return Err(bad(&format!(
                "it has more than {MAX_COMPONENTS} components"
            )));
        }
        Ok(Glob {
            source: pattern.to_string(),
            parts,
        })
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The state before any name (at the snapshot root).
    pub fn start(&self) -> GlobState {
        self.closure(1)
    }

    /// The state after one more name.
    pub fn step(&self, state: GlobState, name: &[u8]) -> GlobState {
        let mut next = 0u64;
        for (i, part) in self.parts.iter().enumerate() {
            if state.0 & (1 << i) == 0 {
                continue;
            }
            match part {
                Part::AnyNames => next |= 1 << i,
                Part::Name(toks) if name_matches(toks, name) => next |= 1 << (i + 1),
                Part::Name(_) => {}
            }
        }
        self.closure(next)
    }

    /// Whether the path that led to `state` matches.
    pub fn matched(&self, state: GlobState) -> bool {
        state.0 & (1 << self.parts.len()) != 0
    }

    /// Whether a path below the one that led to `state` can still match (false lets a walk
    /// skip a directory).
    pub fn may_match_below(&self, state: GlobState) -> bool {
        // Any reached position with components left can consume more names (the final
        // position cannot).
        state.0 & !(1 << self.parts.len()) != 0
    }

    /// Whether `path` (`/`-separated names; a leading `/` is optional) matches.
    pub fn is_match(&self, path: &[u8]) -> bool {
        let mut s = self.start();
        for name in path.split(|&b| b == b'/').filter(|n| !n.is_empty()) {
            s = self.step(s, name);
            if s.0 == 0 {
                return false;
            }
        }
        self.matched(s)
    }

    /// Adds the positions reachable by letting each `**` match no name.
    fn closure(&self, mut set: u64) -> GlobState {
        for (i, part) in self.parts.iter().enumerate() {
            if set & (1 << i) != 0 && *part == Part::AnyNames {
                set |= 1 << (i + 1);
            }
        }
        GlobState(set)
    }
}

/// Splits at `/`s that are not escaped.
fn split_components(pattern: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in pattern.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '/' => {
                out.push(&pattern[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&pattern[start..]);
    out
}

/// Parses one name pattern into tokens.
fn parse_name(s: &str) -> std::result::Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => {
                if toks.last() != Some(&Tok::Star) {
                    toks.push(Tok::Star);
                }
            }
            '?' => toks.push(Tok::One),
            '\\' => match chars.next() {
                Some(e) => toks.push(Tok::Lit(e)),
                None => return Err("it ends with an unfinished escape '\\'".to_string()),
            },
            '[' => toks.push(parse_class(s, &mut chars)?),
            c => toks.push(Tok::Lit(c)),
        }
    }
    Ok(toks)
}

/// Parses a class after its `[`: `[abc]`, `[a-z]`, `[!a-z]` or `[^a-z]`; a `]` right after the
/// `[` (or `[!`) is a member, and so is a `-` first or last.
fn parse_class(
    s: &str,
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
) -> std::result::Result<Tok, String> {
    let unclosed = || format!("'[' in {s:?} is not closed by ']'");
    // A member, with `\` escaping the next character.
    let member = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>, c: char| match c {
        '\\' => chars.next().ok_or_else(unclosed),
        c => Ok(c),
    };
    let negated = matches!(chars.peek(), Some('!' | '^'));
    if negated {
        chars.next();
    }
    let mut ranges = Vec::new();
    loop {
        let lo = match chars.next() {
            None => return Err(unclosed()),
            Some(']') if !ranges.is_empty() => break,
            Some(c) => member(chars, c)?,
        };
        let mut hi = lo;
        let mut ahead = chars.clone();
        if ahead.next() == Some('-') && !matches!(ahead.peek(), Some(']') | None) {
            chars.next();
            let c = chars.next().ok_or_else(unclosed)?;
            hi = member(chars, c)?;
            if hi < lo {
                return Err(format!("the range {lo}-{hi} is reversed"));
            }
        }
        ranges.push((lo, hi));
    }
    Ok(Tok::Class { negated, ranges })
}

/// The character at `i` of a name (`None` for a byte that is not valid UTF-8) and its length.
fn unit_at(name: &[u8], i: usize) -> (Option<char>, usize) {
    let rest = &name[i..];
    let want = match rest[0] {
        b if b < 0x80 => 1,
        b if b >> 5 == 0b110 => 2,
        b if b >> 4 == 0b1110 => 3,
        b if b >> 3 == 0b11110 => 4,
        _ => return (None, 1),
    };
    match rest
        .get(..want)
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.chars().next())
    {
        Some(c) => (Some(c), want),
        None => (None, 1),
    }
}

fn tok_matches(tok: &Tok, unit: Option<char>) -> bool {
    match tok {
        Tok::One => true,
        Tok::Lit(c) => unit == Some(*c),
        Tok::Class { negated, ranges } => {
            let inside = unit.is_some_and(|u| ranges.iter().any(|&(lo, hi)| lo <= u && u <= hi));
            inside != *negated
        }
        Tok::Star => false,
    }
}

/// Wildcard matching of one name, with backtracking to the last `*` (linear for patterns with
/// one star, O(name × pattern) at worst).
fn name_matches(toks: &[Tok], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    // The last star seen and the name position it is tried at.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < toks.len() {
            if toks[p] == Tok::Star {
                star = Some((p, n));
                p += 1;
                continue;
            }
            let (unit, len) = unit_at(name, n);
            if tok_matches(&toks[p], unit) {
                p += 1;
                n += len;
                continue;
            }
        }
        match star {
            Some((sp, sn)) => {
                let (_, len) = unit_at(name, sn);
                star = Some((sp, sn + len));
                p = sp + 1;
                n = sn + len;
            }
            None => return false,
        }
    }
    toks[p..].iter().all(|t| *t == Tok::Star)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, path: &str) -> bool {
        Glob::new(pattern).expect(pattern).is_match(path.as_bytes())
    }

    #[test]
    fn names_match_at_any_depth() {
        assert!(m("*.dump", "/clawdbot.dump"));
        assert!(m("*.dump", "/a/b/c/x.dump"));
        assert!(!m("*.dump", "/a/x.dump/inner"));
        assert!(!m("*.dump", "/a/x.dumpy"));
        assert!(m("*", "/a/.hidden"));
        assert!(m("x?z", "/x/xyz"));
        assert!(!m("x?z", "/x/xz"));
        assert!(m("config", "/n8n/config"));
        assert!(!m("config", "/n8n/config.json"));
    }

    #[test]
    fn anchored_and_relative_paths() {
        assert!(m("/home/node/.n8n/*", "/home/node/.n8n/config"));
        assert!(m("/home/node/.n8n/*", "home/node/.n8n/database.sqlite"));
        assert!(!m("/home/node/.n8n/*", "/home/node/.n8n"));
        assert!(!m("/home/node/.n8n/*", "/home/node/.n8n/a/b"));
        assert!(!m("/home/node/.n8n/*", "/x/home/node/.n8n/a"));
        assert!(m("n8n/*.json", "/srv/n8n/wf.json"));
        assert!(m("n8n/*.json", "/n8n/wf.json"));
        assert!(!m("n8n/*.json", "/n8n/sub/wf.json"));
        assert!(m("/data/**", "/data"));
        assert!(m("/data/**", "/data/a/b/c"));
        assert!(m("/data/", "/data/a"));
        assert!(!m("/data/**", "/database"));
        assert!(m("/a/**/z", "/a/z"));
        assert!(m("/a/**/z", "/a/b/c/z"));
        assert!(!m("/a/**/z", "/a/b/c/zz"));
        assert!(m("/**", "/anything/at/all"));
        assert!(m("/", "/x"));
    }

    #[test]
    fn classes_escapes_and_stars() {
        assert!(m("[abc]*", "/b-file"));
        assert!(!m("[abc]*", "/d-file"));
        assert!(m("file-[0-9]", "/file-7"));
        assert!(!m("file-[!0-9]", "/file-7"));
        assert!(m("file-[^0-9]", "/file-x"));
        assert!(m("[]x]", "/]"));
        assert!(m("[a-]", "/-"));
        assert!(m(r"\*", "/*"));
        assert!(!m(r"\*", "/a"));
        assert!(m("a*b*c", "/aXXbYYbZc"));
        assert!(!m("a*b*c", "/aXXbYYbZ"));
        assert!(m("**.txt", "/a/b.txt"));
        // An escaped `/` stays inside one name, and names never hold a `/`.
        assert!(!m(r"a\/b", "/a/b"));
    }

    #[test]
    fn names_that_are_not_utf8_or_not_ascii() {
        let g = Glob::new("raw-*").expect("glob");
        assert!(g.is_match(b"/dir/raw-\xff\xfex"));
        let g = Glob::new("raw-?x").expect("glob");
        assert!(!g.is_match(b"/raw-\xff\xfex"));
        assert!(
            Glob::new("raw-??x")
                .expect("glob")
                .is_match(b"/raw-\xff\xfex")
        );
        assert!(m("ünï?ödé*", "/ünïcödé-1 ✓"));
        assert!(m("[ü]*", "/ü"));
    }

    #[test]
    fn bad_patterns_say_why() {
        for (bad, why) in [
            ("", "empty"),
            ("[abc", "not closed"),
            ("a\\", "escape"),
            ("[z-a]", "reversed"),
            ("../x", "'..'"),
            ("**", "names nothing"),
        ] {
            let e = Glob::new(bad).expect_err(bad).to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        let long = "/a".repeat(64);
        assert!(Glob::new(&long).is_err());
    }

    #[test]
    fn walks_can_prune_with_the_state() {
        let g = Glob::new("/home/node/.n8n/*").expect("glob");
        let s = g.start();
        let home = g.step(s, b"home");
        assert!(g.may_match_below(home));
        let srv = g.step(s, b"srv");
        assert!(!g.may_match_below(srv));
        let n8n = g.step(g.step(home, b"node"), b".n8n");
        let file = g.step(n8n, b"config");
        assert!(g.matched(file));
        assert!(!g.may_match_below(file));
        let any = Glob::new("*.dump").expect("glob");
        assert!(any.may_match_below(any.step(any.start(), b"x.dump")));
    }

    /// The same semantics by plain recursion, for comparison.
    fn naive_name(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|k| naive_name(rest, &n[k..])),
            Some(('?', rest)) => !n.is_empty() && naive_name(rest, &n[1..]),
            Some((c, rest)) => n.first() == Some(c) && naive_name(rest, &n[1..]),
        }
    }

    fn naive_path(p: &[&str], n: &[&str]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((&"**", rest)) => (0..=n.len()).any(|k| naive_path(rest, &n[k..])),
            Some((c, rest)) => {
                let (pc, nc): (Vec<char>, Vec<char>) = (
                    c.chars().collect(),
                    n.first().map(|x| x.chars().collect()).unwrap_or_default(),
                );
                !n.is_empty() && naive_name(&pc, &nc) && naive_path(rest, &n[1..])
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_plain_recursion(
            anchored in proptest::bool::ANY,
            pattern in proptest::collection::vec("(\\*\\*|[ab*?]{1,4})", 1..4),
            path in proptest::collection::vec("[ab]{1,4}", 0..5),
        ) {
            let source = format!("{}{}", if anchored { "/" } else { "" }, pattern.join("/"));
            let Ok(glob) = Glob::new(&source) else {
                // Only an unanchored pattern of `**` alone names nothing.
                proptest::prop_assert!(!anchored && pattern.iter().all(|p| p == "**"));
                return Ok(());
            };
            let mut comps: Vec<&str> = pattern.iter().map(String::as_str).collect();
            if !anchored {
                comps.insert(0, "**");
            }
            let names: Vec<&str> = path.iter().map(String::as_str).collect();
            let want = naive_path(&comps, &names);
            let got = glob.is_match(path.join("/").as_bytes());
            proptest::prop_assert_eq!(got, want, "{} vs {:?}", source, path);
            // Stepping name by name agrees, and pruning never hides a match below.
            let mut s = glob.start();
            for name in &names {
                proptest::prop_assert!(glob.may_match_below(s) || !want, "pruned above a match");
                s = glob.step(s, name.as_bytes());
            }
            proptest::prop_assert_eq!(glob.matched(s), want);
        }
    }
}
