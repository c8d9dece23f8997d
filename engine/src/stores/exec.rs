//! Running a store's short commands (hooks, `redis-cli`): without a shell, with the store's
//! `env` and cairn's own variables on top of cairn's environment, standard input closed, both
//! output streams read by cairn (so nothing reaches cairn's standard output, which may be
//! JSON), passed on line by line to [`Progress::command_stderr`] unless captured, and an
//! optional deadline after which the command is killed.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::command::CommandLine;
use crate::archiver::command::StderrTail;
use crate::error::{Error, ErrorKind, Result};
use crate::progress::Progress;

/// How a command ended.
#[derive(Debug)]
pub(super) struct Ran {
    /// Its exit status.
    pub status: ExitStatus,
    /// Its standard output, when captured (lossy UTF-8).
    pub stdout: String,
    /// The last lines of its standard error (of its standard output too, when not captured).
    pub tail: StderrTail,
}

impl Ran {
    /// `"exit status: 1"` and the last lines of its output, for messages.
    pub fn describe(&self) -> String {
        let tail = self.tail.text();
        if tail.is_empty() {
            format!("{}", self.status)
        } else {
            format!("{}; the last lines of its output:\n{tail}", self.status)
        }
    }
}

/// Runs `cmd` (with `args` appended) to its end. `capture` keeps standard output in
/// [`Ran::stdout`] instead of passing it on. Errors: the command cannot be started, or it ran
/// past `deadline` (it is then killed).
pub(super) fn run(
    cmd: &CommandLine,
    args: &[&str],
    env: &[(String, String)],
    capture: bool,
    deadline: Option<Instant>,
    progress: &dyn Progress,
) -> Result<Ran> {
    let shown = shown(cmd, args);
    let mut child = Command::new(cmd.program())
        .args(cmd.args())
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::with_source(
                ErrorKind::Command,
                format!("cannot run `{shown}`: check that the program is installed and in PATH"),
                e,
            )
        })?;
    let (Some(mut out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(Error::new(
            ErrorKind::Command,
            format!("no output pipes from `{shown}`"),
        ));
    };
    let forward: &(dyn Fn(&str) + Sync) = &|line: &str| progress.command_stderr(line);
    let (status, stdout, tail) = std::thread::scope(|s| {
        let err_tail = s.spawn(move || StderrTail::collect(err, forward));
        let out_text = s.spawn(move || {
            if capture {
                let mut buf = Vec::new();
                let _ = out.read_to_end(&mut buf);
                (
                    String::from_utf8_lossy(&buf).into_owned(),
                    StderrTail::default(),
                )
            } else {
                (String::new(), StderrTail::collect(out, forward))
            }
        });
        let status = wait(&mut child, deadline, &shown);
        let (stdout, out_tail) = out_text.join().unwrap_or_default();
        let mut tail = err_tail.join().unwrap_or_default();
        if tail.text().is_empty() {
            tail = out_tail;
        }
        (status, stdout, tail)
    });
    Ok(Ran {
        status: status?,
        stdout,
        tail,
    })
}

/// Waits for `child`, killing it at `deadline`.
fn wait(
    child: &mut std::process::Child,
    deadline: Option<Instant>,
    shown: &str,
) -> Result<ExitStatus> {
    let failed =
        |e| Error::with_source(ErrorKind::Command, format!("cannot wait for `{shown}`"), e);
    let Some(deadline) = deadline else {
        return child.wait().map_err(failed);
    };
    loop {
        if let Some(status) = child.try_wait().map_err(failed)? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::new(
                ErrorKind::Command,
                format!("`{shown}` did not finish in time and was killed"),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The command as shown in messages.
pub(super) fn shown(cmd: &CommandLine, args: &[&str]) -> String {
    let mut s = cmd.to_string();
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;

    fn sh(script: &str) -> CommandLine {
        CommandLine::new(vec!["sh".into(), "-c".into(), script.into()]).expect("command")
    }

    #[test]
    fn captures_output_and_status_with_env() {
        let env = [("CAIRN_X".to_owned(), "x value".to_owned())];
        let r = run(
            &sh("echo \"$CAIRN_X\"; echo oops >&2; exit 3"),
            &[],
            &env,
            true,
            None,
            &NoProgress,
        )
        .expect("ran");
        assert_eq!(r.stdout, "x value\n");
        assert_eq!(r.status.code(), Some(3));
        assert!(r.describe().contains("oops"), "{}", r.describe());
        // Not captured: standard output is the tail when standard error is silent.
        let r = run(&sh("echo only out"), &[], &[], false, None, &NoProgress).expect("ran");
        assert!(r.status.success());
        assert_eq!(r.tail.text(), "only out");
        // Appended arguments reach the program.
        let r = run(
            &sh("echo \"$0 $1\""),
            &["a", "b"],
            &[],
            true,
            None,
            &NoProgress,
        )
        .expect("ran");
        assert_eq!(r.stdout, "a b\n");
    }

    #[test]
    fn a_deadline_kills_the_command() {
        let t = Instant::now();
        let e = run(
            &sh("exec sleep 30"),
            &[],
            &[],
            true,
            Some(Instant::now() + Duration::from_millis(200)),
            &NoProgress,
        )
        .expect_err("killed");
        assert!(e.to_string().contains("did not finish in time"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(10));
        let e = run(
            &CommandLine::new(vec!["/nonexistent/cairn-test".into()]).expect("command"),
            &[],
            &[],
            true,
            None,
            &NoProgress,
        )
        .expect_err("no such program");
        assert!(e.to_string().contains("cannot run"), "{e}");
    }
}
