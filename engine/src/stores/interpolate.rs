//! `${VAR}` and `${VAR:-default}` in cairn.toml values.
//!
//! | written | becomes |
//! |---|---|
//! | `${NAME}` | the value of the environment variable NAME; an error when it is unset |
//! | `${NAME:-default}` | NAME's value, or `default` when NAME is unset or empty (as in sh) |
//! | `$$` | one `$` |
//! | `$NAME` (no braces) | an error: write `${NAME}` (so that `$` in a pattern is never a surprise) |
//! | any other `$` | itself |
//!
//! Names are `[A-Za-z_][A-Za-z0-9_]*`. The default is taken literally, up to the first `}`.
//! An expanded value is never split into words or expanded again.

/// Expands the variables of `text`, looking each up with `env`. The error says which variable
/// or which `$` is wrong and what to write instead.
pub(super) fn expand(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let Some(end) = r.find('}') else {
                return Err(format!(
                    "`${{` at `{}` has no closing `}}`: write ${{NAME}} or ${{NAME:-default}} \
                     (or $$ for a literal $)",
                    clip(&rest[i..])
                ));
            };
            let inner = &r[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            if !is_name(name) {
                return Err(format!(
                    "`${{{inner}}}` is not a variable reference: write ${{NAME}} or \
                     ${{NAME:-default}} with NAME made of letters, digits and _ \
                     (or $$ for a literal $)"
                ));
            }
            let value = env(name).filter(|v| default.is_none() || !v.is_empty());
            match (value, default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!(
                        "the environment variable {name} is not set: set it, or give a default \
                         with ${{{name}:-default}}"
                    ));
                }
            }
            rest = &r[end + 1..];
        } else if after.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            return Err(format!(
                "`${name}` needs braces: write ${{{name}}} (or $${name} for a literal ${name})"
            ));
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Whether a string contains a variable reference (so its value does not stand in the file).
pub(super) fn has_reference(text: &str) -> bool {
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        let after = &rest[i + 1..];
        if after.starts_with('{') {
            return true;
        }
        rest = after.strip_prefix('$').unwrap_or(after);
    }
    false
}

fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn clip(s: &str) -> String {
    s.chars().take(20).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("db.internal".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_variables_defaults_and_dollars() {
        for (input, want) in [
            ("plain", "plain"),
            ("${HOST}", "db.internal"),
            ("h=${HOST}:5432", "h=db.internal:5432"),
            ("${PORT:-5432}", "5432"),
            ("${HOST:-x}", "db.internal"),
            ("${EMPTY:-fallback}", "fallback"),
            ("${EMPTY}", ""),
            ("${X:-}", ""),
            ("${X:-a b}", "a b"),
            ("$$HOME", "$HOME"),
            ("cost $5 and *.log$", "cost $5 and *.log$"),
            ("end$", "end$"),
        ] {
            assert_eq!(expand(input, &env).as_deref(), Ok(want), "{input:?}");
        }
    }

    #[test]
    fn errors_name_the_variable_and_the_fix() {
        for (input, want) in [
            ("${PGHOST}", "PGHOST is not set"),
            ("${PGHOST}", "${PGHOST:-default}"),
            ("$HOME/x", "write ${HOME}"),
            ("${HOME", "no closing"),
            ("${1X}", "not a variable reference"),
            ("${A-b}", "not a variable reference"),
        ] {
            let e = expand(input, &env).expect_err(input);
            assert!(e.contains(want), "{input:?}: {e}");
        }
    }

    #[test]
    fn references_are_detected() {
        assert!(has_reference("${A}"));
        assert!(has_reference("x$${A}${B}"));
        assert!(!has_reference("$$A and $"));
        assert!(!has_reference("$${A}"));
    }
}
