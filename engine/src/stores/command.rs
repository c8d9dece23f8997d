//! Commands in cairn.toml (`command`, `restore_command`, `redis_cli`, hooks, `password_command`):
//! a program and its arguments, run directly, without a shell.
//!
//! A command is written either as an array (`["pg_dump", "--format=custom", "clawdbot"]`, each
//! element one argument, taken as is after `${VAR}` expansion) or as a string that is split into
//! arguments the way a shell would split it, with no shell involved:
//!
//! - blanks separate arguments; `'…'` quotes literally; `"…"` quotes with `\"`, `\\`, `\$` and
//!   `` \` `` as escapes; outside quotes `\` makes the next character literal;
//! - `${VAR}` and `${VAR:-default}` are expanded outside single quotes (see
//!   [`interpolate`](super::interpolate)); the value is one piece of its argument, never split;
//! - shell syntax (`|`, `;`, `&`, `<`, `>`, backquotes, `$(`, a leading `~`) is refused rather
//!   than passed to the program as an argument: for a pipeline or redirection write
//!   `["sh", "-c", "…"]`.

use std::fmt;

use super::interpolate::expand;
use super::reader::Val;

/// A program and its arguments (never empty), run without a shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandLine {
    argv: Vec<String>,
}

impl CommandLine {
    /// A command from its program and arguments; `None` when `argv` or the program is empty.
    pub fn new(argv: Vec<String>) -> Option<CommandLine> {
        if argv.first().is_none_or(String::is_empty) {
            return None;
        }
        Some(CommandLine { argv })
    }

    /// The program (a name looked up in `PATH`, or a path).
    pub fn program(&self) -> &str {
        &self.argv[0]
    }

    /// The arguments after the program.
    pub fn args(&self) -> &[String] {
        &self.argv[1..]
    }

    /// The program followed by its arguments.
    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    /// Splits a command string (see the module documentation) and expands its variables.
    pub(super) fn parse(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<CommandLine, String> {
        let words = split(text)?;
        let argv = words
            .iter()
            .map(|w| expand(w, env))
            .collect::<Result<Vec<_>, _>>()?;
        CommandLine::new(argv).ok_or_else(|| {
            "the command is empty: write the program and its arguments, e.g. \
             \"pg_dump --format=custom mydb\""
                .to_owned()
        })
    }
}

impl fmt::Display for CommandLine {
    /// The arguments joined by spaces, quoted where needed, so that splitting the result gives
    /// the same arguments back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.argv.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c));
            if plain {
                f.write_str(a)?;
            } else {
                write!(f, "'{}'", a.replace('\'', r"'\''"))?;
            }
        }
        Ok(())
    }
}

/// Splits `text` into words. Each word comes back ready for [`expand`]: a `$` that must stay
/// literal (single-quoted or escaped) is doubled.
fn split(text: &str) -> Result<Vec<String>, String> {
    let refuse = |what: &str| {
        Err(format!(
            "{what} is shell syntax, but cairn runs commands without a shell (it would reach the \
             program as an argument): write [\"sh\", \"-c\", \"…\"] to use a shell, or quote it"
        ))
    };
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some('$') => word.push_str("$$"),
                        Some(c) => word.push(c),
                        None => return Err(unterminated('\'')),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('$') => word.push_str("$$"),
                            Some(c @ ('"' | '\\' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(unterminated('"')),
                        },
                        Some('`') => return refuse("a backquote"),
                        Some('$') if chars.peek() == Some(&'(') => return refuse("`$(`"),
                        Some('$') if chars.peek() == Some(&'{') => reference(&mut chars, &mut word),
                        Some(c) => word.push(c),
                        None => return Err(unterminated('"')),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('$') => word.push_str("$$"),
                    Some(c) => word.push(c),
                    None => {
                        return Err("the command ends with a lone `\\`: remove it, or write \
                                    \\\\ for a backslash"
                            .to_owned());
                    }
                }
            }
            '|' | ';' | '&' | '<' | '>' => return refuse(&format!("`{c}`")),
            '`' => return refuse("a backquote"),
            '$' if chars.peek() == Some(&'(') => return refuse("`$(`"),
            '$' if chars.peek() == Some(&'{') => {
                in_word = true;
                reference(&mut chars, &mut word);
            }
            '~' if !in_word => {
                return Err(
                    "a leading `~` is not expanded without a shell: write the full \
                            path, or ${HOME}/…"
                        .to_owned(),
                );
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Reads a command value: a string (split as above) or an array of arguments. Problems are
/// recorded and give `None`.
pub(super) fn read(v: &Val<'_, '_>) -> Option<CommandLine> {
    const WHAT: &str = "a command: a string such as \"pg_dump --format=custom mydb\" or an \
                        array such as [\"sh\", \"-c\", \"…\"]";
    if let Some(raw) = v.value.get_ref().as_str() {
        return CommandLine::parse(raw, v.cx.env())
            .map_err(|e| v.error(e))
            .ok();
    }
    if !v.value.get_ref().is_array() {
        v.expected(WHAT);
        return None;
    }
    let items = v.array(WHAT)?;
    let argv: Vec<Option<String>> = items.iter().map(|i| i.string("a string")).collect();
    let argv: Vec<String> = argv.into_iter().collect::<Option<_>>()?;
    CommandLine::new(argv).or_else(|| {
        v.error("the command is empty: give the program first, e.g. [\"pg_dump\", \"mydb\"]");
        None
    })
}

/// Copies a `${…}` reference (the `$` is consumed, `{` is next) into `word` as is, up to and
/// including its `}`: like a shell, blanks and quotes in a default do not split the word.
fn reference(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, word: &mut String) {
    word.push('$');
    for c in chars.by_ref() {
        word.push(c);
        if c == '}' {
            break;
        }
    }
}

fn unterminated(quote: char) -> String {
    format!("a {quote} quote is not closed: close it, or escape it with a backslash")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "DB").then(|| "my db".to_owned())
    }

    fn argv(text: &str) -> Vec<String> {
        CommandLine::parse(text, &env)
            .unwrap_or_else(|e| panic!("{text:?}: {e}"))
            .argv
    }

    #[test]
    fn splits_like_a_shell() {
        assert_eq!(
            argv("pg_dump --format=custom  --compress=0\tclawdbot"),
            ["pg_dump", "--format=custom", "--compress=0", "clawdbot"]
        );
        assert_eq!(argv(r#"a 'b c' "d e" f\ g"#), ["a", "b c", "d e", "f g"]);
        assert_eq!(argv(r#"a "x\"y\\z\n" 'it''s'"#), ["a", r#"x"y\z\n"#, "its"]);
        assert_eq!(argv(r#"a "" ''"#), ["a", "", ""]);
        assert_eq!(argv("a'b'\"c\"d"), ["abcd"]);
    }

    #[test]
    fn expands_variables_outside_single_quotes_without_splitting() {
        assert_eq!(argv("psql ${DB}"), ["psql", "my db"]);
        assert_eq!(argv("psql \"x${DB}\""), ["psql", "xmy db"]);
        assert_eq!(argv("psql '${DB}'"), ["psql", "${DB}"]);
        assert_eq!(argv(r"psql \${DB} \$$"), ["psql", "${DB}", "$$"]);
        assert_eq!(argv("echo ${NONE:-a b}"), ["echo", "a b"]);
        assert_eq!(argv("echo \"x ${NONE:-a|b}\" y"), ["echo", "x a|b", "y"]);
        assert_eq!(argv("grep 'x$'"), ["grep", "x$"]);
    }

    #[test]
    fn refuses_shell_syntax_and_bad_quoting() {
        for (text, want) in [
            ("pg_dump db | gzip", "`|` is shell syntax"),
            ("a; b", "`;`"),
            ("a && b", "`&`"),
            ("a > f", "`>`"),
            ("a 2>/dev/null", "`>`"),
            ("echo `id`", "backquote"),
            ("echo $(id)", "`$(`"),
            ("echo \"$(id)\"", "`$(`"),
            ("cat ~/x", "`~`"),
            ("a 'b", "' quote is not closed"),
            ("a \"b", "\" quote is not closed"),
            ("a \\", "lone `\\`"),
            ("", "empty"),
            ("   ", "empty"),
            ("${UNSET}", "UNSET is not set"),
        ] {
            let e = CommandLine::parse(text, &env).expect_err(text);
            assert!(e.contains(want), "{text:?}: {e}");
        }
        // Quoted, the same characters are plain arguments; `~` inside a word is literal.
        assert_eq!(
            argv("grep 'a|b' \"x;y\" a~b"),
            ["grep", "a|b", "x;y", "a~b"]
        );
    }

    #[test]
    fn display_splits_back_to_the_same_arguments() {
        let nothing = |_: &str| None;
        for argv in [
            vec!["pg_dump", "--format=custom", "db"],
            vec!["sh", "-c", "pg_dump db | gzip > /x/'y'"],
            vec!["echo", "", "${NOT}", "$x", "a\\b", "tab\there", "~"],
        ] {
            let c = CommandLine::new(argv.iter().map(|s| (*s).to_owned()).collect())
                .expect("non-empty");
            let back = CommandLine::parse(&c.to_string(), &nothing).expect("parses");
            assert_eq!(back, c, "{c}");
        }
        assert_eq!(
            CommandLine::new(vec!["a".into(), "b c".into()])
                .expect("cmd")
                .to_string(),
            "a 'b c'"
        );
        assert!(CommandLine::new(vec![]).is_none());
        assert!(CommandLine::new(vec![String::new()]).is_none());
    }
}
