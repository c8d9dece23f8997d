//! A store's hooks (`before`, `after`, `on_failure`) and the environment of its commands.
//!
//! Every command of a store (its dump command, `redis-cli`, its hooks) runs with cairn's
//! environment, then the store's `env`, then `CAIRN_STORE` (the store's name). Hooks also get:
//!
//! | variable | `before` | `after` | `on_failure` |
//! |---|---|---|---|
//! | `CAIRN_STATUS` | `running` | `ok`, or `warnings` when items were left out | `failed` |
//! | `CAIRN_SNAPSHOT_ID` | empty | the new snapshot | the failed snapshot, or empty when none was written |
//! | `CAIRN_ERROR` | empty | empty | what went wrong |
//!
//! cairn.toml expands `${VAR}` when it is read, so a shell script reads these variables with a
//! doubled `$`: `after = ["sh", "-c", "notify $${CAIRN_STORE} $${CAIRN_STATUS}"]`.
//!
//! A hook that exits unsuccessfully is an error saying which hook, its status and the last
//! lines of its output; what that means for the store is decided by [`super::run`].

use repo_format::SnapshotId;

use super::command::CommandLine;
use super::config::Store;
use super::exec::{run, shown};
use crate::error::{Error, ErrorKind, Result};
use crate::progress::Progress;

/// The environment of the store's commands: its `env`, then `CAIRN_STORE`.
pub(super) fn store_env(store: &Store) -> Vec<(String, String)> {
    let mut env = store.env.clone();
    env.push(("CAIRN_STORE".to_owned(), store.name.clone()));
    env
}

/// What a hook is told about the backup.
#[derive(Clone, Copy, Debug)]
pub(super) struct HookContext<'a> {
    /// `running`, `ok`, `warnings` or `failed`.
    pub status: &'a str,
    /// The snapshot written, if any.
    pub snapshot: Option<SnapshotId>,
    /// What went wrong, for `on_failure`.
    pub error: Option<&'a str>,
}

/// Runs the hook `which` (`before`, `after`, `on_failure`) of `store`.
pub(super) fn run_hook(
    which: &str,
    cmd: &CommandLine,
    store: &Store,
    cx: HookContext<'_>,
    progress: &dyn Progress,
) -> Result<()> {
    let mut env = store_env(store);
    env.push(("CAIRN_STATUS".to_owned(), cx.status.to_owned()));
    env.push((
        "CAIRN_SNAPSHOT_ID".to_owned(),
        cx.snapshot.map(|id| id.0.to_hex()).unwrap_or_default(),
    ));
    env.push(("CAIRN_ERROR".to_owned(), cx.error.unwrap_or("").to_owned()));
    let ran = run(cmd, &[], &env, false, None, progress).map_err(|e| {
        Error::with_source(
            ErrorKind::Command,
            format!("the {which} hook of store {:?} could not run", store.name),
            e,
        )
    })?;
    if ran.status.success() {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Command,
        format!(
            "the {which} hook `{}` of store {:?} failed ({})",
            shown(cmd, &[]),
            store.name,
            ran.describe()
        ),
    ))
}
