//! A Redis store's snapshot of the data: `BGSAVE`, wait for it, then the RDB file.
//!
//! With `redis_cli` (its connection options and the store's `env`, e.g. `REDISCLI_AUTH`):
//!
//! 1. `INFO persistence`; if a save is already running it may have started before the latest
//!    writes, so wait for it to end and read `INFO` again;
//! 2. `BGSAVE SCHEDULE` (scheduled rather than refused while an AOF rewrite runs); an
//!    `already in progress` reply (a save started in between) goes back to 1;
//! 3. poll `INFO persistence` (every 50 ms, backing off to 1 s) until no save is in progress
//!    and a save happened since step 1 (`rdb_saves` grew; on servers older than Redis 7,
//!    without that counter, `rdb_last_save_time` — `LASTSAVE` — changed), then require
//!    `rdb_last_bgsave_status:ok`;
//! 4. check that `rdb_path` was written by then (its mtime not older than the `BGSAVE` by
//!    more than a minute of clock skew): a stale file means `rdb_path` is not where this
//!    server saves (`dir` + `dbfilename`).
//!
//! Everything must happen within `bgsave_timeout`; `redis-cli` itself is killed at that
//! deadline. `redis-cli` prints error replies and exits 0, so replies starting with `ERR`
//! (or another error code) count as failures.
//!
//! The caller then opens the file and backs it up as a stream: an RDB is renamed into place
//! when a save finishes, so the open file stays the complete one even if another save replaces
//! it while it is read.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use super::config::RedisStore;
use super::exec::{run, shown};
use crate::error::{Error, ErrorKind, Result};
use crate::progress::Progress;

/// How much older than the `BGSAVE` the RDB file's mtime may be (clock skew with a remote
/// server, coarse file system timestamps).
const MTIME_SLACK: Duration = Duration::from_secs(60);

/// Runs a `BGSAVE` on the store's server and waits for it (see the module documentation).
pub(super) fn bgsave(
    store: &RedisStore,
    env: &[(String, String)],
    progress: &dyn Progress,
) -> Result<()> {
    let deadline = Instant::now() + store.bgsave_timeout;
    let cli = Cli {
        store,
        env,
        deadline,
        progress,
    };
    let (before, sent) = loop {
        let mut before = cli.info()?;
        if before.in_progress() {
            before = cli.wait(|i| !i.in_progress(), "the save already in progress")?;
        }
        if before.saves().is_none() {
            // LASTSAVE has one-second resolution: make sure a new save gets a new value.
            std::thread::sleep(Duration::from_millis(1100));
        }
        let sent = SystemTime::now();
        let reply = cli.call(&["BGSAVE", "SCHEDULE"])?;
        if reply.contains("already in progress") {
            continue;
        }
        if !reply.starts_with("Background saving") {
            return Err(cli.error(&format!("BGSAVE was refused: {}", reply.trim())));
        }
        break (before, sent);
    };
    let after = cli.wait(
        |now| {
            !now.in_progress()
                && match before.saves() {
                    Some(n) => now.saves().is_some_and(|m| m != n),
                    None => now.get("rdb_last_save_time") != before.get("rdb_last_save_time"),
                }
        },
        "the BGSAVE",
    )?;
    if after.get("rdb_last_bgsave_status") != Some("ok") {
        return Err(cli.error(&format!(
            "the BGSAVE failed (rdb_last_bgsave_status:{}): see the Redis server's log",
            after.get("rdb_last_bgsave_status").unwrap_or("?")
        )));
    }
    check_fresh(&store.rdb_path, sent)
}

/// `INFO persistence`, as key → value.
struct Info(BTreeMap<String, String>);

impl Info {
    fn parse(text: &str) -> Info {
        Info(
            text.lines()
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn in_progress(&self) -> bool {
        self.get("rdb_bgsave_in_progress") == Some("1")
    }

    fn saves(&self) -> Option<&str> {
        self.get("rdb_saves")
    }
}

struct Cli<'a> {
    store: &'a RedisStore,
    env: &'a [(String, String)],
    deadline: Instant,
    progress: &'a dyn Progress,
}

impl Cli<'_> {
    fn error(&self, what: &str) -> Error {
        Error::new(
            ErrorKind::Command,
            format!("redis {}: {what}", shown(&self.store.redis_cli, &[])),
        )
    }

    /// Runs `redis-cli ARGS`; its output, or an error for a failed run or an error reply.
    fn call(&self, args: &[&str]) -> Result<String> {
        let ran = run(
            &self.store.redis_cli,
            args,
            self.env,
            true,
            Some(self.deadline),
            self.progress,
        )
        .map_err(|e| {
            Error::with_source(
                ErrorKind::Command,
                format!(
                    "cannot ask Redis for {} within bgsave_timeout",
                    args.join(" ")
                ),
                e,
            )
        })?;
        let first = ran.stdout.lines().next().unwrap_or("").trim();
        let error_reply = first.starts_with("ERR")
            || first.starts_with("NOAUTH")
            || first.starts_with("WRONGPASS")
            || first.starts_with("NOPERM")
            || first.starts_with("LOADING")
            || first.starts_with("(error)");
        if !ran.status.success() || error_reply {
            let mut why = ran.describe();
            if error_reply {
                why = format!("{first} ({why})");
            }
            return Err(Error::new(
                ErrorKind::Command,
                format!(
                    "`{}` failed: {why}: check redis_cli's connection options and the store's \
                     env (REDISCLI_AUTH)",
                    shown(&self.store.redis_cli, args)
                ),
            ));
        }
        Ok(ran.stdout)
    }

    fn info(&self) -> Result<Info> {
        let text = self.call(&["INFO", "persistence"])?;
        let info = Info::parse(&text);
        if info.get("rdb_bgsave_in_progress").is_none() {
            return Err(self.error(&format!(
                "INFO persistence has no rdb_bgsave_in_progress (is this a Redis server?): {:?}",
                text.chars().take(200).collect::<String>()
            )));
        }
        Ok(info)
    }

    /// Polls `INFO persistence` until `done`; an error at the deadline names `what`.
    fn wait(&self, done: impl Fn(&Info) -> bool, what: &str) -> Result<Info> {
        let mut pause = Duration::from_millis(50);
        loop {
            let info = self.info()?;
            if done(&info) {
                return Ok(info);
            }
            if Instant::now() + pause >= self.deadline {
                return Err(self.error(&format!(
                    "{what} did not finish within bgsave_timeout ({}); last state: \
                     rdb_bgsave_in_progress:{} rdb_last_bgsave_status:{}: raise bgsave_timeout \
                     or see the Redis server's log",
                    super::duration::format(self.store.bgsave_timeout),
                    info.get("rdb_bgsave_in_progress").unwrap_or("?"),
                    info.get("rdb_last_bgsave_status").unwrap_or("?"),
                )));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }
}

/// Checks that `path` exists and was modified after `sent` (less [`MTIME_SLACK`]).
fn check_fresh(path: &Path, sent: SystemTime) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| {
        Error::with_source(
            ErrorKind::Io,
            format!(
                "the BGSAVE finished, but rdb_path {} cannot be read: set rdb_path to the \
                 server's `dir` + `dbfilename` (redis-cli CONFIG GET dir)",
                path.display()
            ),
            e,
        )
    })?;
    let modified = meta
        .modified()
        .map_err(|e| Error::io(format!("cannot read the mtime of {}", path.display()), e))?;
    let oldest = sent
        .checked_sub(MTIME_SLACK)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    if modified < oldest {
        let age = sent.duration_since(modified).unwrap_or_default();
        return Err(Error::new(
            ErrorKind::Io,
            format!(
                "the BGSAVE finished, but {} was last written {} before it: this server saves \
                 elsewhere; set rdb_path to its `dir` + `dbfilename` (redis-cli CONFIG GET dir)",
                path.display(),
                super::duration::format(Duration::from_secs(age.as_secs()))
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_is_parsed_with_crlf() {
        let i = Info::parse(
            "# Persistence\r\nrdb_bgsave_in_progress:1\r\nrdb_saves:4\r\nrdb_last_bgsave_status:ok\r\n",
        );
        assert!(i.in_progress());
        assert_eq!(i.saves(), Some("4"));
        assert_eq!(i.get("rdb_last_bgsave_status"), Some("ok"));
        assert_eq!(i.get("# Persistence"), None);
    }

    #[test]
    fn a_stale_or_missing_rdb_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rdb = dir.path().join("dump.rdb");
        let e = check_fresh(&rdb, SystemTime::now()).expect_err("missing");
        assert!(e.to_string().contains("cannot be read"), "{e}");
        std::fs::write(&rdb, b"REDIS").expect("write");
        check_fresh(&rdb, SystemTime::now()).expect("fresh");
        let later = SystemTime::now() + Duration::from_secs(3600);
        let e = check_fresh(&rdb, later).expect_err("stale");
        assert!(e.to_string().contains("saves elsewhere"), "{e}");
    }
}
