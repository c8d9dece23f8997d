//! Finding the cairn.toml to use. The first that applies wins:
//!
//! 1. `--config PATH` (the `explicit` argument): must exist;
//! 2. `$CAIRN_CONFIG` (when set and not empty): must exist;
//! 3. `./cairn.toml` in the working directory, if it exists;
//! 4. `cairn/cairn.toml` in the user's config directory (`$XDG_CONFIG_HOME`, else
//!    `~/.config`; see [`user_config_dir`]), if it exists.
//!
//! A path named explicitly that does not exist is an error rather than a reason to look
//! further: a typo must not silently select another file. When nothing is found, the error
//! lists every place looked at.

use std::path::{Path, PathBuf};

use crate::{Error, ErrorKind, Result};

/// The file name looked for in the working and config directories.
pub const FILE_NAME: &str = "cairn.toml";

/// The environment variable naming the config file.
pub const ENV_VAR: &str = "CAIRN_CONFIG";

/// The user's config directory: `$XDG_CONFIG_HOME` when it is an absolute path, else
/// `$HOME/.config`; `None` when neither is known.
pub fn user_config_dir(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let absolute = |v: String| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    env("XDG_CONFIG_HOME")
        .and_then(absolute)
        .or_else(|| env("HOME").and_then(absolute).map(|h| h.join(".config")))
}

/// Finds the config file (see the module documentation). Relative paths are taken from `cwd`;
/// `config_dir` is the user's config directory ([`user_config_dir`]). The error is
/// [`ErrorKind::NotFound`] and names where cairn looked, or [`ErrorKind::Io`] when a place
/// cannot be examined.
pub fn find_config(
    explicit: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    cwd: &Path,
    config_dir: Option<&Path>,
) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return must_exist(&cwd.join(p), "--config");
    }
    if let Some(p) = env(ENV_VAR).filter(|p| !p.is_empty()) {
        return must_exist(&cwd.join(p), ENV_VAR);
    }
    let mut looked = vec![format!("${ENV_VAR} (not set)")];
    let mut candidates = vec![cwd.join(FILE_NAME)];
    match config_dir {
        Some(d) => candidates.push(d.join("cairn").join(FILE_NAME)),
        None => looked.push(
            "the user's config directory (neither $XDG_CONFIG_HOME nor $HOME is set)".to_owned(),
        ),
    }
    for c in candidates {
        if is_file(&c)? {
            return Ok(c);
        }
        looked.push(c.display().to_string());
    }
    Err(Error::new(
        ErrorKind::NotFound,
        format!(
            "no cairn.toml found; looked at {}: pass --config PATH, set {ENV_VAR}, or create \
             ./cairn.toml (examples/cairn.toml shows every setting)",
            looked.join(", ")
        ),
    ))
}

/// `path` if it is a file; otherwise an error saying `how` named it.
fn must_exist(path: &Path, how: &str) -> Result<PathBuf> {
    if is_file(path)? {
        return Ok(path.to_path_buf());
    }
    let what = if path.exists() {
        "is not a file"
    } else {
        "does not exist"
    };
    Err(Error::new(
        ErrorKind::NotFound,
        format!(
            "the config file {} (from {how}) {what}: check the path",
            path.display()
        ),
    ))
}

/// Whether `path` is a file (following symlinks); a missing path is `false`, any other
/// failure to look is an error.
fn is_file(path: &Path) -> Result<bool> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(m.is_file()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(
            format!(
                "cannot examine {} while looking for cairn.toml",
                path.display()
            ),
            e,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, "").expect("write");
    }

    #[test]
    fn order_is_flag_then_variable_then_cwd_then_user_dir() {
        let d = tempfile::tempdir().expect("tempdir");
        let cwd = d.path().join("work");
        let conf = d.path().join("conf");
        let flag = d.path().join("flag.toml");
        let var = d.path().join("var.toml");
        for p in [
            &flag,
            &var,
            &cwd.join("cairn.toml"),
            &conf.join("cairn/cairn.toml"),
        ] {
            touch(p);
        }
        let var_s = var.to_str().expect("utf-8");
        let set = [(ENV_VAR, var_s)];
        let env = vars(&set);
        let none = vars(&[]);
        let find = |explicit: Option<&Path>, env: &dyn Fn(&str) -> Option<String>| {
            find_config(explicit, env, &cwd, Some(&conf)).expect("found")
        };
        assert_eq!(find(Some(&flag), &env), flag);
        assert_eq!(find(None, &env), var);
        assert_eq!(find(None, &none), cwd.join("cairn.toml"));
        // An empty CAIRN_CONFIG counts as unset.
        let empty = [(ENV_VAR, "")];
        assert_eq!(find(None, &vars(&empty)), cwd.join("cairn.toml"));
        std::fs::remove_file(cwd.join("cairn.toml")).expect("rm");
        assert_eq!(find(None, &none), conf.join("cairn/cairn.toml"));
        // Relative names are taken from the working directory.
        touch(&cwd.join("sub/x.toml"));
        assert_eq!(
            find(Some(Path::new("sub/x.toml")), &none),
            cwd.join("sub/x.toml")
        );
    }

    #[test]
    fn named_files_must_exist_and_the_error_lists_where_it_looked() {
        let d = tempfile::tempdir().expect("tempdir");
        let cwd = d.path();
        touch(&cwd.join("cairn.toml"));
        let none = vars(&[]);
        let e = find_config(Some(Path::new("nope.toml")), &none, cwd, None).expect_err("missing");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(
            e.to_string()
                .contains("nope.toml (from --config) does not exist"),
            "{e}"
        );
        let set = [(ENV_VAR, "/nonexistent/cairn.toml")];
        let e = find_config(None, &vars(&set), cwd, None).expect_err("missing");
        assert!(
            e.to_string().contains("(from CAIRN_CONFIG) does not exist"),
            "{e}"
        );
        let e = find_config(Some(cwd), &none, cwd, None).expect_err("a directory");
        assert!(e.to_string().contains("is not a file"), "{e}");

        let empty = tempfile::tempdir().expect("tempdir");
        let conf = empty.path().join("conf");
        let e = find_config(None, &none, empty.path(), Some(&conf)).expect_err("nothing");
        let msg = e.to_string();
        for want in [
            "$CAIRN_CONFIG (not set)",
            &empty.path().join("cairn.toml").display().to_string(),
            &conf.join("cairn/cairn.toml").display().to_string(),
            "pass --config PATH",
        ] {
            assert!(msg.contains(want), "{want:?} not in {msg}");
        }
        let e = find_config(None, &none, empty.path(), None).expect_err("nothing");
        assert!(
            e.to_string().contains("neither $XDG_CONFIG_HOME nor $HOME"),
            "{e}"
        );
    }

    #[test]
    fn user_config_dir_prefers_xdg() {
        let both = [("XDG_CONFIG_HOME", "/x/conf"), ("HOME", "/home/u")];
        assert_eq!(
            user_config_dir(&vars(&both)),
            Some(PathBuf::from("/x/conf"))
        );
        let relative = [("XDG_CONFIG_HOME", "conf"), ("HOME", "/home/u")];
        assert_eq!(
            user_config_dir(&vars(&relative)),
            Some(PathBuf::from("/home/u/.config"))
        );
        assert_eq!(user_config_dir(&vars(&[])), None);
    }
}
