//! Opening the `[[copy]]` repositories a cairn.toml names: the password from the
//! [`PasswordSource`] (the first line of `password_file`, or of what `password_command` prints;
//! the command runs without a shell, its standard error reaches the terminal and its standard
//! input is cairn's, so it may prompt), then [`Repository::open`].

use std::path::Path;
use std::process::{Command, Stdio};

use super::config::{CopyTarget, PasswordSource};
use crate::error::{Error, ErrorKind, Result};
use crate::repository::{OpenOptions, Repository};

/// The password `source` gives; an empty one is an error. `whose` names the repository in
/// messages (e.g. `the primary repository`).
pub fn read_password(source: &PasswordSource, whose: &str) -> Result<Vec<u8>> {
    let (bytes, from) = match source {
        PasswordSource::File(path) => (
            std::fs::read(path).map_err(|e| {
                Error::io(
                    format!(
                        "cannot read the password file {} of {whose}: check the path and its \
                         permissions",
                        path.display()
                    ),
                    e,
                )
            })?,
            format!("the password file {}", path.display()),
        ),
        PasswordSource::Command(cmd) => {
            let out = Command::new(cmd.program())
                .args(cmd.args())
                .stdin(Stdio::inherit())
                .stderr(Stdio::inherit())
                .stdout(Stdio::piped())
                .output()
                .map_err(|e| {
                    Error::with_source(
                        ErrorKind::Command,
                        format!("cannot run the password command `{cmd}` of {whose}"),
                        e,
                    )
                })?;
            if !out.status.success() {
                return Err(Error::new(
                    ErrorKind::Command,
                    format!(
                        "the password command `{cmd}` of {whose} failed ({})",
                        out.status
                    ),
                ));
            }
            (out.stdout, format!("the password command `{cmd}`"))
        }
    };
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{from} gives an empty password for {whose}: its first line is the password"),
        ));
    }
    Ok(line.to_vec())
}

/// Opens a `[[copy]]` repository, with the same cache directory as the primary.
pub fn open_copy(target: &CopyTarget, cache_dir: Option<&Path>) -> Result<Repository> {
    let whose = format!("copy {:?}", target.name);
    let password = read_password(&target.password, &whose)?;
    let opts = OpenOptions {
        cache_dir: cache_dir.map(Path::to_path_buf),
    };
    Repository::open(&target.location, &password, &opts).map_err(|e| {
        let kind = e.kind();
        Error::with_source(
            kind,
            format!(
                "cannot open {whose} at {} (create it with `cairn init --repo {}`)",
                target.location, target.location
            ),
            e,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stores::CommandLine;

    #[test]
    fn passwords_are_the_first_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("pw");
        std::fs::write(&f, b"secret\r\nignored\n").expect("write");
        assert_eq!(
            read_password(&PasswordSource::File(f.clone()), "r").expect("pw"),
            b"secret"
        );
        std::fs::write(&f, b"\nsecret\n").expect("write");
        let e = read_password(&PasswordSource::File(f), "r").expect_err("empty");
        assert!(e.to_string().contains("empty password"), "{e}");
        let cmd = |argv: &[&str]| {
            PasswordSource::Command(
                CommandLine::new(argv.iter().map(|a| (*a).to_owned()).collect()).expect("cmd"),
            )
        };
        assert_eq!(
            read_password(&cmd(&["printf", "from command\\nx"]), "r").expect("pw"),
            b"from command"
        );
        let e = read_password(&cmd(&["false"]), "copy \"x\"").expect_err("fails");
        assert!(e.to_string().contains("copy \"x\" failed"), "{e}");
        let e = read_password(&PasswordSource::File("/nonexistent/pw".into()), "r")
            .expect_err("missing");
        assert!(e.to_string().contains("/nonexistent/pw"), "{e}");
    }
}
