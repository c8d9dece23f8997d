//! Streaming a dump into a store's restore command (see the [module documentation](super)).

use std::io::ErrorKind as IoKind;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};

use repo_format::Node;

use crate::progress::Progress;
use crate::repository::Repository;
use crate::restorer::dump_content;
use crate::stores::command::CommandLine;
use crate::stores::config::Store;
use crate::{Error, ErrorKind, Result};

/// Streams the dump into the restore command; returns the bytes it read.
pub(super) fn pipe(
    repo: &Repository,
    store: &Store,
    cmd: &CommandLine,
    node: &Node,
    progress: &dyn Progress,
) -> Result<u64> {
    let shown = format!("the restore command `{cmd}` of store {}", store.name);
    // The command's standard output goes to cairn's standard error: cairn's own output (a
    // summary, --json) must not be mixed with it.
    let stdout = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null());
    let mut child = Command::new(cmd.program())
        .args(cmd.args())
        .envs(store.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(stdout)
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            let hint = if e.kind() == IoKind::NotFound {
                ": the program is not installed or not in PATH"
            } else {
                ""
            };
            Error::with_source(
                ErrorKind::Command,
                format!("cannot start {shown}{hint}; check restore_command in cairn.toml"),
                e,
            )
        })?;
    progress.set_total(1, node.size);
    let mut stdin = child.stdin.take();
    let fed = match stdin.as_mut() {
        Some(pipe) => dump_content(repo, node, pipe, progress),
        None => Err(Error::new(
            ErrorKind::Command,
            "no pipe to the restore command",
        )),
    };
    let closed_early = matches!(&fed, Err(e) if is_broken_pipe(e));
    if fed.is_err() && !closed_early {
        // The dump is incomplete: the command is killed while its input is still open, so it
        // never sees a clean end of input that would make a truncated dump look whole.
        let _ = child.kill();
    }
    // Closing the pipe is the end of input for a command that got the whole dump.
    drop(stdin);
    let status = child.wait().map_err(|e| {
        Error::with_source(ErrorKind::Command, format!("cannot wait for {shown}"), e)
    })?;
    let fed = match fed {
        Err(e) if !closed_early => {
            return Err(Error::with_source(
                e.kind(),
                format!(
                    "cannot read the dump of store {} completely, so {shown} was stopped; it may \
                     have restored part of it",
                    store.name
                ),
                e,
            ));
        }
        other => other,
    };
    if !status.success() {
        return Err(Error::new(
            ErrorKind::Command,
            format!(
                "{shown} failed ({status}); its messages are above. The dump itself is intact: \
                 fix the cause and run the restore again"
            ),
        ));
    }
    fed.map_err(|_| {
        Error::new(
            ErrorKind::Command,
            format!(
                "{shown} exited successfully without reading the whole dump ({} bytes): the \
                 data may be restored only in part",
                node.size
            ),
        )
    })
}

/// Whether writing failed because the reader closed the pipe.
fn is_broken_pipe(e: &Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == IoKind::BrokenPipe)
        {
            return true;
        }
        cause = c.source();
    }
    false
}
