//! Commands that work per store (`restore --store`, `status`, `forget`, `check --store`): the
//! cairn.toml, and the repository it names.
//!
//! The repository is the one of `--repo` (or `$CAIRN_REPOSITORY`) when given, with the global
//! password options, exactly as every other command opens it. Otherwise it is the config's
//! `[repository]`: its location, its cache directory unless `--cache-dir` is given, and its
//! password from `--password-file` / `--password-command` when given, else from its own
//! `password_file` or `password_command` (run without a shell).

use anyhow::{Context, Result};
use engine::ErrorKind;
use engine::repository::{OpenOptions, Repository};
use engine::stores::Config;

use crate::args::GlobalArgs;
use crate::commands::config::{find, load};
use crate::commands::open;
use crate::password::{PasswordSource as Flags, read_password};

/// The cairn.toml, or `None` when there is none anywhere cairn looks (an explicit `--config`
/// or `$CAIRN_CONFIG` that does not exist, or an invalid file, is still an error).
pub fn try_load(g: &GlobalArgs) -> Result<Option<Config>> {
    match find(g) {
        Ok(_) => load(g).map(Some),
        Err(e)
            if g.config.is_none()
                && e.downcast_ref::<engine::Error>()
                    .is_some_and(|e| e.kind() == ErrorKind::NotFound)
                && std::env::var_os(engine::stores::ENV_VAR).is_none_or(|v| v.is_empty()) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Opens the repository: `--repo` when given, else the config's (see the module docs).
pub fn open_for(g: &GlobalArgs, config: Option<&Config>) -> Result<Repository> {
    let Some(config) = config.filter(|_| g.repo.is_none()) else {
        return open(g);
    };
    let r = &config.repository;
    let flags = Flags {
        file: g.password_file.clone(),
        command: g.password_command.clone(),
    };
    let password = if flags.file.is_some() || flags.command.is_some() {
        read_password(&flags, false)?
    } else {
        engine::stores::read_password(&r.password, "the primary repository")
            .with_context(|| format!("[repository] in {}", config.file.display()))?
    };
    let opts = OpenOptions {
        cache_dir: g.cache_dir.clone().or_else(|| r.cache_dir.clone()),
    };
    let repo = Repository::open(&r.location, &password, &opts).with_context(|| {
        format!(
            "cannot open the repository {} (named in {})",
            r.location,
            config.file.display()
        )
    })?;
    crate::commands::warn_on_rollback(&repo);
    for (id, why) in repo.damaged_index_files() {
        eprintln!(
            "warning: index file {} is unusable ({why}); run `cairn repair index`",
            id.0.short()
        );
    }
    Ok(repo)
}

/// Prints a usage error for `cairn SUBCOMMAND` the way clap does and exits with status 2. Only
/// for problems found before anything was changed (nothing is left to clean up).
pub fn usage_exit(subcommand: &str, message: impl std::fmt::Display) -> ! {
    use clap::CommandFactory;
    let mut cli = crate::args::Cli::command();
    cli.build();
    let mut cmd = cli.find_subcommand(subcommand).cloned().unwrap_or(cli);
    cmd.error(clap::error::ErrorKind::ArgumentConflict, message)
        .exit()
}
