//! One file per subcommand; each turns its arguments into engine options and prints results.

pub mod backup;
pub mod cat;
pub mod check;
pub mod config;
pub mod copy;
pub mod diff;
pub mod dump;
pub mod find;
pub mod forget;
pub mod init;
pub mod key;
pub mod ls;
pub mod protect;
pub mod prune;
pub mod repair;
pub mod restore;
pub mod run;
pub mod snapshots;
pub mod stats;
pub mod status;

use anyhow::{Context, Result, anyhow};
use engine::repository::{OpenOptions, Repository};

use crate::args::GlobalArgs;
use crate::password::{PasswordSource, read_password};

/// The repository location, or a clear error.
pub fn location(g: &GlobalArgs) -> Result<&str> {
    g.repo
        .as_deref()
        .ok_or_else(|| anyhow!("no repository given: pass --repo PATH or set CAIRN_REPOSITORY"))
}

/// The password sources from the global flags.
pub fn password_source(g: &GlobalArgs) -> PasswordSource {
    PasswordSource {
        file: g.password_file.clone(),
        command: g.password_command.clone(),
    }
}

/// Opens the repository named by the global flags.
pub fn open(g: &GlobalArgs) -> Result<Repository> {
    let loc = location(g)?;
    let password = read_password(&password_source(g), false)?;
    let opts = OpenOptions {
        cache_dir: g.cache_dir.clone(),
    };
    let repo = Repository::open(loc, &password, &opts)
        .with_context(|| format!("cannot open the repository {loc}"))?;
    warn_on_rollback(&repo);
    for (id, why) in repo.damaged_index_files() {
        eprintln!(
            "warning: index file {} is unusable ({why}); run `cairn repair index`",
            id.0.short()
        );
    }
    Ok(repo)
}

/// Prints on stderr, when a listing finds it, that the newest snapshot this machine saw in the
/// repository is gone (see `engine::rollback`). Only a warning: another machine may have
/// forgotten it, so the command goes on and its exit status stays the same.
pub fn warn_on_rollback(repo: &Repository) {
    repo.set_rollback_handler(|w| eprintln!("warning: {w}"));
}

/// Prints a JSON value on stdout.
pub fn print_json(v: &serde_json::Value) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v).context("cannot write JSON output")?;
    writeln!(out).context("cannot write output")?;
    Ok(())
}
