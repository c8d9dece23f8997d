//! Where the repository password comes from, in order: `--password-file`,
//! `--password-command`, `$CAIRN_PASSWORD`, then a prompt on the terminal.

use std::io::IsTerminal;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// The password sources the user gave.
#[derive(Debug, Default, Clone)]
pub struct PasswordSource {
    /// `--password-file`.
    pub file: Option<std::path::PathBuf>,
    /// `--password-command`.
    pub command: Option<String>,
}

/// How one repository's password sources are named: the environment variable, the prompt,
/// and the flags' prefix for messages. The repository of `--repo` uses [`REPOSITORY`]; a second
/// one (`cairn copy --to`) has its own, so nothing is taken from the other by mistake.
#[derive(Debug, Clone, Copy)]
pub struct PasswordNames {
    /// The environment variable holding the password itself.
    pub env: &'static str,
    /// The terminal prompt.
    pub prompt: &'static str,
    /// `--` for `--password-file`, `--to-` for `--to-password-file`.
    pub flag_prefix: &'static str,
}

/// The names for the repository of `--repo`.
pub const REPOSITORY: PasswordNames = PasswordNames {
    env: "CAIRN_PASSWORD",
    prompt: "repository password: ",
    flag_prefix: "--",
};

/// Reads the password; `confirm` asks twice when prompting (for `init`).
pub fn read_password(src: &PasswordSource, confirm: bool) -> Result<Vec<u8>> {
    read_password_as(src, confirm, &REPOSITORY)
}

/// [`read_password`] with the sources named by `names`.
pub fn read_password_as(
    src: &PasswordSource,
    confirm: bool,
    names: &PasswordNames,
) -> Result<Vec<u8>> {
    if let Some(path) = &src.file {
        return from_file(path);
    }
    if let Some(cmd) = &src.command {
        return from_command(cmd);
    }
    if let Some(p) = std::env::var_os(names.env) {
        if p.is_empty() {
            bail!(
                "{} is set but empty: an empty password is not allowed (unset it, or give a password)",
                names.env
            );
        }
        return Ok(p.into_encoded_bytes());
    }
    if std::io::stderr().is_terminal() {
        let p = rpassword::prompt_password(names.prompt)
            .context("cannot read the password from the terminal")?;
        if confirm {
            let again = rpassword::prompt_password("repeat the password: ")
                .context("cannot read the password")?;
            if again != p {
                bail!("the passwords do not match");
            }
        }
        if p.is_empty() {
            bail!("an empty password is not allowed");
        }
        return Ok(p.into_bytes());
    }
    let (env, flags) = (names.env, names.flag_prefix);
    bail!("no password given: set {env}, or pass {flags}password-file or {flags}password-command")
}

fn trim_newline(mut v: Vec<u8>) -> Vec<u8> {
    if v.last() == Some(&b'\n') {
        v.pop();
        if v.last() == Some(&b'\r') {
            v.pop();
        }
    }
    v
}

fn from_file(path: &Path) -> Result<Vec<u8>> {
    let v = std::fs::read(path)
        .with_context(|| format!("cannot read the password file {}", path.display()))?;
    let v = trim_newline(v);
    if v.is_empty() {
        bail!("the password file {} is empty", path.display());
    }
    Ok(v)
}

fn from_command(cmd: &str) -> Result<Vec<u8>> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::inherit())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run the password command `{cmd}`"))?;
    if !out.status.success() {
        bail!("the password command `{cmd}` failed ({})", out.status);
    }
    let v = trim_newline(out.stdout);
    if v.is_empty() {
        bail!("the password command `{cmd}` printed nothing");
    }
    Ok(v)
}
