//! Reading typed values out of the parsed TOML tree, keeping spans: every getter that finds a
//! problem records a [`ConfigError`] (file, line, key path, what to do) and returns `None`, so
//! one pass reports every problem it can instead of stopping at the first.
//!
//! The tree is `toml`'s span-preserving [`DeTable`] rather than serde structs: serde stops at
//! the first error and loses the key spans that unknown-key and missing-key messages need.

use std::borrow::Cow;
use std::cell::RefCell;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::{ConfigError, LineIndex};
use super::interpolate::expand;

/// The environment lookup values are expanded with.
pub(super) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// What one parse shares: the file, its lines, the environment, and the errors found so far.
pub(super) struct Ctx<'a> {
    file: &'a Path,
    lines: LineIndex<'a>,
    env: Env<'a>,
    errors: RefCell<Vec<(usize, ConfigError)>>,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(text: &'a str, file: &'a Path, env: Env<'a>) -> Self {
        Ctx {
            file,
            lines: LineIndex::new(text),
            env,
            errors: RefCell::new(Vec::new()),
        }
    }

    pub(super) fn env(&self) -> Env<'a> {
        self.env
    }

    /// The source text of a span.
    pub(super) fn source(&self, span: Range<usize>) -> &'a str {
        self.lines.text(span)
    }

    /// Records a problem at `span` (a byte range of the file) for the key path `key`.
    pub(super) fn error(&self, span: &Range<usize>, key: &str, message: impl Into<String>) {
        let (line, column) = self.lines.position(span.start);
        self.errors.borrow_mut().push((
            span.start,
            ConfigError {
                file: self.file.to_path_buf(),
                line: Some(line),
                column: Some(column),
                key: key.to_owned(),
                message: message.into(),
                source: None,
            },
        ));
    }

    /// The problems found, in file order (stable for problems at the same place).
    pub(super) fn into_errors(self) -> Vec<ConfigError> {
        let mut errors = self.errors.into_inner();
        errors.sort_by_key(|(offset, _)| *offset);
        errors.into_iter().map(|(_, e)| e).collect()
    }

    /// Whether any problem was recorded.
    pub(super) fn has_errors(&self) -> bool {
        !self.errors.borrow().is_empty()
    }
}

/// A key path with one more key: `stores` + `postgres` → `stores.postgres`. Keys that are not
/// bare TOML keys are quoted.
pub(super) fn join(path: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

/// One value of the tree, with its key path.
pub(super) struct Val<'a, 'i> {
    pub(super) cx: &'a Ctx<'a>,
    pub(super) value: &'a Spanned<DeValue<'i>>,
    pub(super) path: String,
}

impl<'a, 'i> Val<'a, 'i> {
    pub(super) fn span(&self) -> Range<usize> {
        self.value.span()
    }

    /// Records a problem with this value.
    pub(super) fn error(&self, message: impl Into<String>) {
        self.cx.error(&self.span(), &self.path, message);
    }

    /// The value as the file shows it, for "found …": `"thirty"`, `30`, `an array`.
    pub(super) fn found(&self) -> String {
        match self.value.get_ref() {
            DeValue::String(s) => format!("{s:?}"),
            DeValue::Array(_) => "an array".to_owned(),
            DeValue::Table(_) => "a table".to_owned(),
            DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_) => {
                self.cx.source(self.span()).to_owned()
            }
            DeValue::Datetime(d) => format!("the date-time {d}"),
        }
    }

    /// Records "expected `what`, found …".
    pub(super) fn expected(&self, what: &str) {
        self.error(format!("expected {what}, found {}", self.found()));
    }

    /// The string as written (no `${VAR}` expansion), or an error naming `what` was expected.
    pub(super) fn raw_str(&self, what: &str) -> Option<&'a str> {
        match self.value.get_ref() {
            DeValue::String(s) => Some(s.as_ref()),
            _ => {
                self.expected(what);
                None
            }
        }
    }

    /// The string with its `${VAR}` references expanded.
    pub(super) fn string(&self, what: &str) -> Option<String> {
        let raw = self.raw_str(what)?;
        expand(raw, self.cx.env()).map_err(|e| self.error(e)).ok()
    }

    /// A non-empty string.
    pub(super) fn nonempty(&self, what: &str) -> Option<String> {
        let s = self.string(what)?;
        if s.is_empty() {
            self.error(format!("is empty: give {what}"));
            return None;
        }
        Some(s)
    }

    /// An absolute path (after expansion). `what` says what the path is for.
    pub(super) fn abs_path(&self, what: &str) -> Option<PathBuf> {
        let s = self.nonempty(what)?;
        if s.starts_with('~') {
            self.error(format!(
                "{s:?}: `~` is not expanded; write the full path, or ${{HOME}}/…"
            ));
            return None;
        }
        if !s.starts_with('/') {
            self.error(format!(
                "{s:?} is a relative path: write an absolute path (cairn runs from cron and \
                 systemd, whose working directory is not this file's)"
            ));
            return None;
        }
        Some(PathBuf::from(s))
    }

    /// An integer of at least 1 that fits in a u32.
    pub(super) fn positive_u32(&self) -> Option<u32> {
        let n = match self.value.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
            _ => None,
        };
        match n.map(u32::try_from) {
            Some(Ok(n)) if n > 0 => Some(n),
            _ => {
                self.expected("a positive integer");
                None
            }
        }
    }

    /// The elements of an array, each with its path (`exclude[2]`).
    pub(super) fn array(&self, what: &str) -> Option<Vec<Val<'a, 'i>>> {
        match self.value.get_ref() {
            DeValue::Array(a) => Some(
                a.iter()
                    .enumerate()
                    .map(|(i, value)| Val {
                        cx: self.cx,
                        value,
                        path: format!("{}[{i}]", self.path),
                    })
                    .collect(),
            ),
            _ => {
                self.expected(what);
                None
            }
        }
    }

    /// An array of non-empty strings (expanded); a bad element is reported and left out.
    pub(super) fn string_list(&self, what: &str) -> Option<Vec<String>> {
        let items = self.array(&format!("an array of {what}"))?;
        Some(items.iter().filter_map(|v| v.nonempty(what)).collect())
    }

    /// This value as a table.
    pub(super) fn table(&self, what: &str) -> Option<Table<'a, 'i>> {
        match self.value.get_ref() {
            DeValue::Table(t) => Some(Table {
                cx: self.cx,
                table: t,
                span: self.span(),
                path: self.path.clone(),
            }),
            _ => {
                self.expected(what);
                None
            }
        }
    }
}

/// One table of the tree, with its key path.
pub(super) struct Table<'a, 'i> {
    pub(super) cx: &'a Ctx<'a>,
    pub(super) table: &'a DeTable<'i>,
    pub(super) span: Range<usize>,
    pub(super) path: String,
}

impl<'a, 'i> Table<'a, 'i> {
    /// The value of `key`, if present.
    pub(super) fn get(&self, key: &str) -> Option<Val<'a, 'i>> {
        self.table.get(key).map(|value| Val {
            cx: self.cx,
            value,
            path: join(&self.path, key),
        })
    }

    /// Every entry, in file order: the key (with its span) and the value.
    pub(super) fn entries(&self) -> Vec<(&'a Spanned<Cow<'i, str>>, Val<'a, 'i>)> {
        self.table
            .iter()
            .map(|(k, value)| {
                (
                    k,
                    Val {
                        cx: self.cx,
                        value,
                        path: join(&self.path, k.get_ref()),
                    },
                )
            })
            .collect()
    }

    /// Records that the required `key` is missing, at the table's own line.
    pub(super) fn missing(&self, key: &str, message: impl Into<String>) {
        self.cx.error(
            &self.span,
            &join(&self.path, key),
            format!("missing: {}", message.into()),
        );
    }

    /// The value of a required key, or a "missing" error with `message`.
    pub(super) fn require(&self, key: &str, message: &str) -> Option<Val<'a, 'i>> {
        let v = self.get(key);
        if v.is_none() {
            self.missing(key, message);
        }
        v
    }

    /// Records every key not in `known`. `elsewhere` may explain a key that belongs to another
    /// kind of table (e.g. a directory store's `paths` in a command store) with a message of
    /// its own; otherwise the message suggests the closest known key.
    pub(super) fn check_keys(&self, known: &[&str], elsewhere: &dyn Fn(&str) -> Option<String>) {
        for (k, _) in self.table.iter() {
            let key = k.get_ref().as_ref();
            if known.contains(&key) {
                continue;
            }
            let message = elsewhere(key).unwrap_or_else(|| match suggest(key, known) {
                Some(s) => format!("unknown key: did you mean `{s}`?"),
                None => format!("unknown key: the keys here are {}", list(known)),
            });
            self.cx.error(&k.span(), &join(&self.path, key), message);
        }
    }
}

/// `a`, `b` and `c`.
pub(super) fn list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("`{s}`")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// The known key closest to `key`, if it is close enough to be a typo.
pub(super) fn suggest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let key_n = norm(key);
    let limit = match key_n.chars().count() {
        0..=4 => 1,
        5..=8 => 2,
        _ => 3,
    };
    known
        .iter()
        .map(|k| (distance(&key_n, &norm(k)), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Edit distance with adjacent transpositions (optimal string alignment).
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_not_strangers() {
        let known = ["keep_daily", "keep_weekly", "name", "location", "type"];
        assert_eq!(suggest("keep_dialy", &known), Some("keep_daily"));
        assert_eq!(suggest("keep-daily", &known), Some("keep_daily"));
        assert_eq!(suggest("KEEP_WEEKLY", &known), Some("keep_weekly"));
        assert_eq!(suggest("nmae", &known), Some("name"));
        assert_eq!(suggest("locaton", &known), Some("location"));
        assert_eq!(suggest("typ", &known), Some("type"));
        assert_eq!(suggest("colour", &known), None);
        assert_eq!(suggest("x", &known), None);
    }

    #[test]
    fn key_paths_quote_what_is_not_bare() {
        assert_eq!(join("", "stores"), "stores");
        assert_eq!(join("stores", "pg-main_1"), "stores.pg-main_1");
        assert_eq!(join("stores", "a.b"), "stores.\"a.b\"");
        assert_eq!(list(&["a"]), "`a`");
        assert_eq!(list(&["a", "b", "c"]), "`a`, `b` and `c`");
    }
}
