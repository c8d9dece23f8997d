//! Stores: one `cairn.toml` that declares the repositories and every data store to back up,
//! each with its own retention, expected interval, hooks and tags.
//!
//! [`find_config`] finds the file (`--config`, `$CAIRN_CONFIG`, `./cairn.toml`, the user's config
//! directory), [`load`] reads it and [`parse`] (pure) turns its text into a [`Config`], or into
//! [`ConfigErrors`]: every problem, each as `FILE:LINE: KEY: what is wrong and what to do`.
//! `examples/cairn.toml` in the repository is a complete, commented example.
//!
//! # Schema
//!
//! ```toml
//! [repository]                         # the primary repository (required)
//! location = "/var/backups/cairn"      # absolute path, file:///path, s3://bucket/prefix, memory://
//! password_file = "/etc/cairn/password"   # or password_command = "pass show cairn" (exactly one)
//! cache_dir = "/var/cache/cairn"       # optional
//!
//! [[copy]]                             # zero or more further repositories (3-2-1)
//! name = "offsite"                     # [a-z0-9_-]+, unique
//! location = "s3://bucket/cairn"       # not used by another repository
//! password_command = "cat /run/secrets/offsite"   # or password_file
//!
//! [stores.postgres]                    # one table per store; the name is [a-z0-9][a-z0-9_-]*
//! type = "command"                     # command | redis | directory (required)
//! command = "pg_dump --format=custom --compress=0 clawdbot"   # required for command stores
//! restore_command = "pg_restore --clean --if-exists --dbname=clawdbot"   # optional
//! file_name = "clawdbot.dump"          # name in the snapshot; default <store>.dump
//! retention = { keep_daily = 30 }      # required: keep rules, or "forever"
//! interval = "24h"                     # required: expected time between good backups
//! tags = ["db"]                        # optional extra tags
//! env = { PGHOST = "${PGHOST:-127.0.0.1}" }   # optional, for its commands and hooks
//! before = "…"                         # optional hooks: before, after, on_failure
//! restore_order = 1                    # optional: `restore --all` order, lower first
//! chunker = "stream"                   # optional: the repository's chunker profile
//!
//! [stores.redis]
//! type = "redis"
//! rdb_path = "/var/lib/redis/dump.rdb" # required for redis stores
//! redis_cli = "redis-cli -h 127.0.0.1 -p 6379"   # default "redis-cli"
//! bgsave_timeout = "10m"               # default 10m
//! restore_command = "…"                # optional; file_name defaults to <store>.rdb
//! retention = { keep_within_hourly = "7d" }     # every 6 hours for 7 days, with interval = "6h"
//! interval = "6h"
//!
//! [stores.n8n]
//! type = "directory"
//! paths = ["/home/node/.n8n"]          # required for directory stores: absolute paths
//! exclude = ["*.log", "cache/"]        # optional patterns
//! retention = { keep_daily = 14, keep_weekly = 8 }
//! interval = "24h"
//! ```
//!
//! # Rules
//!
//! | rule | why |
//! |---|---|
//! | unknown keys are errors, with the closest known key suggested | a typo (`keep_dialy`) must not silently mean "no rule" |
//! | an inline `password` is refused, and so is a secret-looking `env` value (`PGPASSWORD`, `…_TOKEN`, `…_KEY`) written in the file | secrets never live in a file that gets copied and committed: use `password_file`, `password_command`, or the environment cairn runs in |
//! | paths are absolute (`~` is not expanded) | cairn runs from cron and systemd, whose working directory is not this file's |
//! | commands run without a shell ([`CommandLine`]): a string is split like a shell would, an array is taken as is; `\|`, `;`, `>` … are refused | a pipeline would otherwise pass `\|` to `pg_dump` as an argument; write `["sh", "-c", "…"]` |
//! | `retention` and `interval` are required | a store without them would grow forever, or never alarm |
//! | no two stores share a `file_name`, no path is backed up twice, a tag is never another store's name | `cairn run` tags each snapshot with its store's name |
//!
//! Values may use `${VAR}` and `${VAR:-default}` (the default applies when VAR is unset or
//! empty), expanded when the file is parsed; an unset variable without a default is an error;
//! `$$` is a literal `$`, and `$VAR` without braces is refused.
//!
//! Durations: `interval` and `bgsave_timeout` are fixed lengths with units s, m (minutes), h,
//! d, w; the retention rules' `keep_within*` take calendar durations with units y, **m
//! (months)**, d, h, as `cairn forget --keep-within` does.
//!
//! Retention ([`Retention`]): the keys of `cairn forget` with `_` for `-`
//! (`keep_last`, `keep_hourly` … `keep_yearly`, `keep_within`, `keep_within_hourly` …
//! `keep_within_yearly`, `keep_tag`), or `"forever"`. Each store's snapshots are their own
//! group. "Every 6 hours for 7 days" is `interval = "6h"` with `keep_within_hourly = "7d"`.
//!
//! Hooks (`before`, `after`, `on_failure`) are commands run with the store's `env`: a failing
//! `before` fails the store without a backup; `after` runs after a good backup; `on_failure`
//! after a failed `before` or backup. They also get `CAIRN_STORE`, `CAIRN_STATUS` (`running`,
//! `ok`, `warnings`, `failed`), `CAIRN_SNAPSHOT_ID` and `CAIRN_ERROR`; in a `sh -c` script write
//! `$${CAIRN_STATUS}`, since `${…}` is expanded when the file is read.
//!
//! `exclude` patterns (directory stores) are gitignore-like, matched against paths relative to
//! each entry of `paths`: a pattern without `/` matches a name at any depth (`*.log`); one with
//! a leading `/` (or a `/` in the middle) is anchored at the entry (`/tmp`, `logs/*.gz`); a
//! trailing `/` matches directories only (`cache/`); `*` and `?` within one name, `**` across
//! names; `!` (negation) is refused. See [`crate::archiver::exclude`].
//!
//! `cairn run` ([`run::run_stores`]) backs the stores up, each as one snapshot with its name in
//! the snapshot's `store` field; [`metrics`] writes what it did for Prometheus.
//!
//! Per store, from the snapshots' `store` field ([`select`]): [`status`] (age of the newest good
//! backup against `interval`, the last failure: an RPO alarm), [`restore`] (`restore --store`,
//! `restore --all` in `restore_order`) and [`forget`] (each store's own retention).

mod command;
mod config;
mod discover;
mod duration;
mod error;
mod exec;
mod hooks;
mod interpolate;
mod open;
mod reader;
mod redis;
mod retention;
mod store;
#[cfg(test)]
mod tests;

pub mod forget;
pub mod metrics;
pub mod restore;
pub mod run;
pub mod select;
pub mod status;

pub use command::CommandLine;
pub use config::{
    CommandStore, Config, CopyTarget, DirectoryStore, Hooks, PasswordSource, RedisStore,
    Repository, Store, StoreKind, load, parse,
};
pub use discover::{ENV_VAR, FILE_NAME, find_config, user_config_dir};
pub use duration::format as format_duration;
pub use error::{ConfigError, ConfigErrors};
pub use open::{open_copy, read_password};
pub use retention::{Retention, duration_words};
pub use store::{DEFAULT_BGSAVE_TIMEOUT, looks_secret};
