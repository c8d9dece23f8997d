//! [`Source::Command`](super::Source::Command): a command's standard output streamed straight
//! into the repository (no temporary file), its standard error passed on line by line to
//! [`Progress::command_stderr`] and its last lines kept, and its exit status checked.
//!
//! A command that exits unsuccessfully (a non-zero status, or killed by a signal) gives a
//! [`CommandFailure`] next to the node of what it wrote before: the backup turns that into an
//! error (no snapshot), or with `keep_failed` into a failed snapshot (SPEC §10).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, ExitStatus, Stdio};

use repo_format::{Chunker, Node};

use super::guide::Guide;
use super::save_stream;
use super::saver::BlobSaver;
use super::walk::WalkCounts;
use crate::error::{Error, ErrorKind, Result};
use crate::progress::Progress;
use crate::repository::Repository;

/// How many of the last standard-error lines a failure keeps.
pub const TAIL_LINES: usize = 20;
/// The longest line a tail keeps (longer ones are cut, with `…`).
const TAIL_LINE_BYTES: usize = 512;

/// The last lines a command wrote to its standard error.
#[derive(Clone, Debug, Default)]
pub struct StderrTail {
    lines: VecDeque<String>,
}

impl StderrTail {
    /// Adds one line (without its newline), dropping the oldest beyond [`TAIL_LINES`].
    pub fn push(&mut self, line: &str) {
        let mut line = line.trim_end_matches(['\n', '\r']).to_owned();
        if line.len() > TAIL_LINE_BYTES {
            let mut cut = TAIL_LINE_BYTES;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    /// Reads `r` to its end, line by line, passing each line to `each` and keeping the last.
    pub fn collect(r: impl Read, each: &dyn Fn(&str)) -> StderrTail {
        let mut tail = StderrTail::default();
        let mut r = BufReader::new(r);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches(['\n', '\r']);
                    each(line);
                    tail.push(line);
                }
            }
        }
        tail
    }

    /// The kept lines, joined by newlines (empty when there were none).
    pub fn text(&self) -> String {
        self.lines
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A command that ran but did not succeed.
#[derive(Clone, Debug)]
pub struct CommandFailure {
    /// The command as shown in messages.
    pub command: String,
    /// How it ended.
    pub status: ExitStatus,
    /// The last lines of its standard error.
    pub stderr: StderrTail,
}

impl CommandFailure {
    /// What went wrong, for a failed snapshot's `failure` (SPEC §10, tag 14): the command,
    /// its exit status, and the last lines of its standard error.
    pub fn description(&self) -> String {
        let mut s = format!("`{}` failed ({})", self.command, self.status);
        let tail = self.stderr.text();
        if !tail.is_empty() {
            s.push_str("; the last lines of its standard error:\n");
            s.push_str(&tail);
        }
        s
    }

    /// The error of a backup that writes no snapshot for this failure.
    pub fn into_error(self) -> Error {
        Error::new(
            ErrorKind::Command,
            format!(
                "{}\nno snapshot was written, so its partial output is not a backup",
                self.description()
            ),
        )
    }
}

/// The command as shown in messages: its arguments joined by spaces, quoted for a shell where
/// needed (`sh -c 'pg_dump db | gzip'`).
fn shown(argv: &[OsString]) -> String {
    argv.iter()
        .map(|a| {
            let a = a.to_string_lossy();
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c));
            if plain {
                a.into_owned()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `argv` with `env` added to cairn's environment, stores its standard output as the file
/// `name`, and returns the node with the failure, if the command did not succeed. Errors are
/// cairn's own: the command cannot be started, or the repository fails (the command is then
/// killed).
#[allow(clippy::too_many_arguments)] // the backup's pieces, passed through
pub(super) fn save_command(
    repo: &Repository,
    saver: &BlobSaver<'_>,
    chunker: &Chunker,
    guide: Option<&mut Guide>,
    name: &str,
    argv: &[OsString],
    env: &[(OsString, OsString)],
    progress: &dyn Progress,
    counts: &mut WalkCounts,
) -> Result<(Node, Option<CommandFailure>)> {
    let (program, args) = argv.split_first().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidInput,
            "no command to run: give the program and its arguments (after `--` for --stdin-from-command)",
        )
    })?;
    let command = shown(argv);
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::with_source(
                ErrorKind::Command,
                format!("cannot run `{command}`: check that the program is installed and in PATH"),
                e,
            )
        })?;
    let pipes = child.stdout.take().zip(child.stderr.take());
    let Some((mut stdout, stderr)) = pipes else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(Error::new(
            ErrorKind::Command,
            format!("no output pipes from `{command}`"),
        ));
    };
    let (result, tail) = std::thread::scope(|s| {
        let tail = s.spawn(|| StderrTail::collect(stderr, &|line| progress.command_stderr(line)));
        let result = save_stream(
            repo,
            saver,
            chunker,
            guide,
            name,
            &mut stdout,
            progress,
            counts,
        );
        if result.is_err() {
            // Our side failed: don't leave the command blocked on a full pipe.
            let _ = child.kill();
        }
        drop(stdout);
        (result, tail.join().unwrap_or_default())
    });
    let status = child.wait().map_err(|e| {
        Error::with_source(
            ErrorKind::Command,
            format!("cannot wait for `{command}`"),
            e,
        )
    })?;
    let node = result?;
    let failure = (!status.success()).then_some(CommandFailure {
        command,
        status,
        stderr: tail,
    });
    Ok((node, failure))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines_cut_to_length() {
        let text: String = (0..30).map(|i| format!("line {i}\n")).collect();
        let seen = std::sync::Mutex::new(0);
        let tail = StderrTail::collect(text.as_bytes(), &|_| {
            *seen.lock().expect("lock") += 1;
        });
        assert_eq!(*seen.lock().expect("lock"), 30);
        let kept = tail.text();
        assert!(
            kept.starts_with("line 10\n") && kept.ends_with("line 29"),
            "{kept}"
        );
        let mut t = StderrTail::default();
        t.push(&"é".repeat(400));
        assert!(t.text().len() <= TAIL_LINE_BYTES + '…'.len_utf8());
        assert!(t.text().ends_with('…'));
        // A last line without a newline, and bytes that are not UTF-8.
        let t = StderrTail::collect(&b"a\r\nb\xff"[..], &|_| {});
        assert_eq!(t.text(), "a\nb\u{fffd}");
    }
}
