//! What is wrong with a cairn.toml: one [`ConfigError`] per problem, each naming the file, the
//! line, the key path and what to do; [`ConfigErrors`] holds all that one parse found.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in a cairn.toml. Its [`Display`](fmt::Display) is
/// `FILE:LINE: KEY: MESSAGE`, e.g.
/// `cairn.toml:14: stores.postgres.retention.keep_daily: expected a positive integer, found "thirty"`.
#[derive(Debug)]
pub struct ConfigError {
    /// The file, as the caller named it.
    pub file: PathBuf,
    /// 1-based line of the offending key or value; `None` when the problem is the file as a
    /// whole (it cannot be read).
    pub line: Option<usize>,
    /// 1-based column (in characters) on that line.
    pub column: Option<usize>,
    /// The dotted key path, e.g. `stores.postgres.retention.keep_daily` or `copy[1].location`;
    /// empty for the file as a whole.
    pub key: String,
    /// What is wrong and what to do about it.
    pub message: String,
    /// The underlying cause (an I/O error reading the file), if any.
    pub source: Option<std::io::Error>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Every problem one parse found, in the order they appear in the file (never empty).
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The problems, in file order.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    /// A single problem with the file as a whole (e.g. it cannot be read), keeping its cause.
    pub fn whole_file(file: &Path, message: String, source: Option<std::io::Error>) -> Self {
        ConfigErrors(vec![ConfigError {
            file: file.to_path_buf(),
            line: None,
            column: None,
            key: String::new(),
            message,
            source,
        }])
    }
}

impl fmt::Display for ConfigErrors {
    /// One error per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.first().and_then(std::error::Error::source)
    }
}

/// Turns byte offsets into 1-based lines and columns.
#[derive(Debug)]
pub(super) struct LineIndex<'t> {
    text: &'t str,
    /// Byte offset of the start of each line.
    starts: Vec<usize>,
}

impl<'t> LineIndex<'t> {
    pub(super) fn new(text: &'t str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    /// The 1-based line and column (in characters) of a byte offset; offsets past the end
    /// count as the end.
    pub(super) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        (line, column)
    }

    /// The source text of a span (empty if the span is not on character boundaries).
    pub(super) fn text(&self, span: Range<usize>) -> &'t str {
        self.text.get(span).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let l = LineIndex::new("a = 1\nbé = \"x\"\n\nz");
        assert_eq!(l.position(0), (1, 1));
        assert_eq!(l.position(4), (1, 5));
        assert_eq!(l.position(6), (2, 1));
        // "bé = " is 6 bytes and 5 characters: the quote is column 6.
        assert_eq!(l.position(12), (2, 6));
        assert_eq!(l.position(16), (3, 1));
        assert_eq!(l.position(17), (4, 1));
        assert_eq!(l.position(999), (4, 2));
    }

    #[test]
    fn display_is_file_line_key_message() {
        let e = ConfigError {
            file: "cairn.toml".into(),
            line: Some(14),
            column: Some(3),
            key: "stores.postgres.retention.keep_daily".into(),
            message: "expected a positive integer, found \"thirty\"".into(),
            source: None,
        };
        assert_eq!(
            e.to_string(),
            "cairn.toml:14: stores.postgres.retention.keep_daily: expected a positive integer, \
             found \"thirty\""
        );
        let whole = ConfigErrors::whole_file(Path::new("/x/cairn.toml"), "gone".into(), None);
        assert_eq!(whole.to_string(), "/x/cairn.toml: gone");
    }
}
