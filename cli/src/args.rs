//! The command line, as clap sees it. Each subcommand's arguments become engine options in
//! its own file under `commands/`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// cairn: deduplicating, compressed, encrypted snapshots of files, directories and dump streams.
#[derive(Debug, Parser)]
#[command(name = "cairn", version, long_about = None, after_help = EXIT_CODES)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Shown at the end of `--help`.
pub const EXIT_CODES: &str =
    "Exit codes: 0 success; 1 error; 2 usage error; 3 done with warnings (e.g. unreadable files).";

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Repository: a local path, file:///path, s3://bucket/prefix (settings from AWS_* variables) or memory://.
    #[arg(short = 'r', long = "repo", env = "CAIRN_REPOSITORY", global = true)]
    pub repo: Option<String>,
    /// Read the password from this file (first line).
    #[arg(long, env = "CAIRN_PASSWORD_FILE", global = true)]
    pub password_file: Option<PathBuf>,
    /// Run this shell command and use its output as the password.
    #[arg(long, env = "CAIRN_PASSWORD_COMMAND", global = true)]
    pub password_command: Option<String>,
    /// Local cache directory (default: $XDG_CACHE_HOME/cairn or ~/.cache/cairn).
    #[arg(long, env = "CAIRN_CACHE_DIR", global = true)]
    pub cache_dir: Option<PathBuf>,
    /// The cairn.toml to use (default: $CAIRN_CONFIG, then ./cairn.toml, then
    /// $XDG_CONFIG_HOME/cairn/cairn.toml or ~/.config/cairn/cairn.toml).
    #[arg(long, value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress display and no summary line.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new repository.
    Init(InitArgs),
    /// Back up paths, standard input, or a command's output.
    Backup(BackupArgs),
    /// Back up every store of cairn.toml (or the named ones), each as one snapshot.
    #[command(after_help = RUN_HELP)]
    Run(RunArgs),
    /// Copy snapshots into another repository (re-chunked, deduplicated and encrypted there).
    #[command(after_help = COPY_HELP)]
    Copy(CopyArgs),
    /// List snapshots.
    Snapshots(SnapshotsArgs),
    /// List the files in a snapshot.
    Ls(LsArgs),
    /// Show what changed between two snapshots (+ added, - removed, M content, U metadata, T type).
    Diff(DiffArgs),
    /// Find which snapshots hold paths matching a pattern.
    #[command(after_help = FIND_HELP)]
    Find(FindArgs),
    /// Sizes, deduplication and compression of snapshots, and the repository's totals.
    #[command(after_help = STATS_HELP)]
    Stats(StatsArgs),
    /// Restore a snapshot (or parts of it) into a directory, or a store of cairn.toml.
    #[command(after_help = RESTORE_HELP)]
    Restore(RestoreArgs),
    /// Write one file of a snapshot to standard output.
    Dump(DumpArgs),
    /// Print a repository object, decrypted (for debugging).
    Cat(CatArgs),
    /// Verify the repository: structure always, every byte with --read-data.
    #[command(after_help = CHECK_EXIT_CODES)]
    Check(CheckArgs),
    /// Rebuild the index from the packs, or snapshots without the data that is gone.
    #[command(subcommand)]
    Repair(RepairCommand),
    /// Remove snapshots: those a retention policy does not keep, or those named by id.
    #[command(after_help = FORGET_HELP)]
    Forget(ForgetArgs),
    /// Delete the data no snapshot needs (in two phases, while backups keep running).
    #[command(after_help = PRUNE_HELP)]
    Prune(PruneArgs),
    /// Protect snapshots: every retention policy keeps them and `forget ID` refuses them.
    #[command(after_help = PROTECT_HELP)]
    Protect(ProtectArgs),
    /// Remove the protection of snapshots (`forget` may then remove them).
    #[command(after_help = PROTECT_HELP)]
    Unprotect(ProtectArgs),
    /// Per store of cairn.toml: the newest snapshot's age against its interval, its size, and
    /// whether the last run failed; exit 1 when any store needs attention.
    #[command(after_help = STATUS_HELP)]
    Status(StatusArgs),
    /// Work with cairn.toml, the file of repositories and stores.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage the key files: one per password, each opening the same repository.
    #[command(subcommand, after_help = KEY_HELP)]
    Key(KeyCommand),
}

/// `cairn repair …`.
#[derive(Debug, Subcommand)]
pub enum RepairCommand {
    /// Rebuild the index files from the pack headers (after a lost or damaged index).
    Index,
    /// Write new snapshots that leave out files whose data is gone (the originals are kept).
    Snapshots {
        /// Only report what would be left out.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `cairn config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Find, parse and validate cairn.toml; print a summary, or every problem with its file,
    /// line and key (exit 1).
    Check,
}

/// Shown at the end of `cairn key --help`.
pub const KEY_HELP: &str = "Every key file wraps the same master key with its own password, so \
adding, removing or changing a key never rewrites data. The new password of `add` and `passwd` \
comes from --new-password-file, --new-password-command, $CAIRN_NEW_PASSWORD or a prompt (asked \
twice), never from the command line. `remove` refuses the only key and the key that opened the \
repository (open with another key's password to remove it); `passwd` writes the new key before \
it deletes the old one, so an interruption leaves both working. Keys cannot be limited (e.g. to \
backups only): use storage credentials without delete rights for that (SPEC.md §4).";

/// `cairn key …`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// List the key files: id, the one in use (*), creation time, host, user, KDF parameters.
    List,
    /// Add a key file for a new password (prints its id).
    Add(KeyAddArgs),
    /// Remove a key file (not the only one, nor the one whose password opened the repository).
    Remove(KeyRemoveArgs),
    /// Change the password: write a key file for a new password, then remove the current one.
    Passwd(KeyAddArgs),
}

/// `cairn key add` and `cairn key passwd`.
#[derive(Debug, Args)]
pub struct KeyAddArgs {
    /// Read the new password from this file (first line).
    #[arg(long, value_name = "FILE")]
    pub new_password_file: Option<PathBuf>,
    /// Run this shell command and use its output as the new password.
    #[arg(long, value_name = "COMMAND")]
    pub new_password_command: Option<String>,
    /// Host name to record in the new key file instead of this machine's.
    #[arg(long)]
    pub host: Option<String>,
    /// User name to record in the new key file instead of the current user's.
    #[arg(long)]
    pub user: Option<String>,
    /// Argon2id memory in KiB for the new key file (default 65536).
    #[arg(long, hide = true)]
    pub kdf_memory_kib: Option<u32>,
    /// Argon2id iterations for the new key file (default 3).
    #[arg(long, hide = true)]
    pub kdf_iterations: Option<u32>,
}

/// `cairn key remove`.
#[derive(Debug, Args)]
pub struct KeyRemoveArgs {
    /// The key to remove: its id or a unique id prefix (`cairn key list` shows them).
    #[arg(value_name = "ID")]
    pub id: String,
}

/// `cairn init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// zstd level for new data, 1-19 (0 stores everything raw).
    #[arg(long)]
    pub compression: Option<i32>,
    /// Argon2id memory in KiB for the key file (default 65536).
    #[arg(long, hide = true)]
    pub kdf_memory_kib: Option<u32>,
    /// Argon2id iterations for the key file (default 3).
    #[arg(long, hide = true)]
    pub kdf_iterations: Option<u32>,
    /// Prune's grace period, 1s to 30d (default 12h): a pack `cairn prune` marks is deleted
    /// only by a prune run at least this much later, and a backup must not pause longer than
    /// this between deduplicating against the repository and saving its snapshot. Units s, m
    /// (minutes), h, d, e.g. 12h, 1d12h, 30s.
    #[arg(long, value_name = "DURATION", value_parser = parse_prune_grace)]
    pub prune_grace: Option<Duration>,
}

/// `cairn backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Files and directories to back up.
    pub paths: Vec<PathBuf>,
    /// Back up standard input as one file.
    #[arg(long, conflicts_with_all = ["paths", "stdin_from_command"])]
    pub stdin: bool,
    /// Run the command after `--` and back up its standard output; fail (no snapshot) if it exits non-zero.
    #[arg(long, requires = "command")]
    pub stdin_from_command: bool,
    /// The file name to store standard input or the command's output under.
    #[arg(long, default_value = "stdin")]
    pub stdin_name: String,
    /// Tag the snapshot (repeat for several).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Host name to record instead of this machine's.
    #[arg(long)]
    pub host: Option<String>,
    /// Re-read every file, even those unchanged since the parent snapshot.
    #[arg(long)]
    pub force: bool,
    /// Use this snapshot as the parent instead of the newest of the same host and paths.
    #[arg(long)]
    pub parent: Option<String>,
    /// Snapshot time, "YYYY-MM-DD HH:MM:SS" in local time (default: now).
    #[arg(long)]
    pub time: Option<String>,
    /// Leave out what matches PATTERN (repeat for several; gitignore-like: `*.log` anywhere,
    /// `cache/` directories only, `/tmp` anchored at the backed-up path, `**` across directories).
    #[arg(long = "exclude", value_name = "PATTERN", conflicts_with_all = ["stdin", "stdin_from_command"])]
    pub excludes: Vec<String>,
    /// With --stdin-from-command: if the command fails, write a failed snapshot holding what it
    /// wrote (retention ignores it) instead of none; the exit code is still 1.
    #[arg(long, requires = "stdin_from_command")]
    pub keep_failed: bool,
    /// The repository's chunker profile to cut with (`cairn cat config` lists them): default
    /// `file` for paths and `stream` for stdin and commands; `redis` suits Redis RDB files.
    #[arg(long, value_name = "PROFILE")]
    pub chunker: Option<String>,
    /// The command for --stdin-from-command.
    #[arg(last = true)]
    pub command: Vec<OsString>,
}

/// Shown at the end of `cairn run --help`.
pub const RUN_HELP: &str = "Each store becomes one snapshot tagged with its name (and its tags), in the repository of cairn.toml ([repository], unless --repo is given): a command store's output is streamed straight into the repository, a redis store's RDB is backed up after a BGSAVE, a directory store's paths without what its exclude patterns match. Hooks run around each backup (before: a failure skips the store; after; on_failure). A dump command that fails midway leaves a failed snapshot holding what it wrote, with its exit status and last stderr lines (retention does not count it; `cairn status` shows it). A failing store does not stop the others. --copy then copies the new complete snapshots to every [[copy]] repository. --metrics-file writes Prometheus metrics for every store (node_exporter's textfile collector), atomically.

Exit codes: 0 every store backed up; 1 some store (or a copy) failed; 2 usage error; 3 done with warnings (e.g. unreadable files left out).";

/// `cairn run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Only this store (repeat for several; default: every store, in file order).
    #[arg(long = "store", value_name = "NAME")]
    pub stores: Vec<String>,
    /// Then copy the new snapshots to every [[copy]] repository of cairn.toml.
    #[arg(long)]
    pub copy: bool,
    /// Write Prometheus metrics for every store to this file (atomically).
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
}

/// Shown at the end of `cairn copy --help`.
pub const COPY_HELP: &str = "The destination is another cairn repository (create it with `cairn init`), \
with its own password, keys and chunker seed: file contents are read from the source, verified, \
cut again with the destination's chunker and deduplicated against what the destination holds, so \
a copy costs the destination only what it does not have (files unchanged since a snapshot copied \
earlier are not read again). Snapshots are copied oldest first, each \
complete before the next; one the destination already holds (a copy of it, recorded in the \
snapshot) is skipped, so an interrupted copy simply runs again. Time, host, paths, tags and \
metadata are kept. The destination's password comes from --to-password-file, \
--to-password-command, $CAIRN_TO_PASSWORD or a prompt, never from the source's settings.\n\n\
Exit codes: 0 success; 1 error (snapshots copied before it are complete); 2 usage error; 3 done \
with warnings.";

/// `cairn copy`.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Snapshots to copy: ids, unique id prefixes or `latest` (default: all of them).
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// The destination repository: a local path, file:///path or s3://bucket/prefix.
    #[arg(long, value_name = "LOCATION")]
    pub to: String,
    /// Read the destination's password from this file (first line).
    #[arg(long, value_name = "FILE", env = "CAIRN_TO_PASSWORD_FILE")]
    pub to_password_file: Option<PathBuf>,
    /// Run this shell command and use its output as the destination's password.
    #[arg(long, value_name = "COMMAND", env = "CAIRN_TO_PASSWORD_COMMAND")]
    pub to_password_command: Option<String>,
    /// The destination's local cache directory (default: the same as the source's).
    #[arg(long, value_name = "DIR", env = "CAIRN_TO_CACHE_DIR")]
    pub to_cache_dir: Option<PathBuf>,
    /// Only snapshots of this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Only snapshots with this tag.
    #[arg(long)]
    pub tag: Option<String>,
}

/// `cairn snapshots`.
#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    /// Only snapshots of this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Only snapshots with this tag.
    #[arg(long)]
    pub tag: Option<String>,
}

/// `cairn ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Snapshot id, id prefix, or `latest`.
    pub snapshot: String,
    /// Only list below this path.
    pub path: Option<String>,
    /// Long listing: mode, owner, size, mtime.
    #[arg(short, long)]
    pub long: bool,
}

/// Shown at the end of `cairn restore --help`.
pub const RESTORE_HELP: &str = "With a cairn.toml, --store NAME restores one store from its newest \
complete snapshot (or --snapshot ID, which must be the store's): a command or redis store with a \
restore_command has its dump piped into that command (run without a shell, with the store's env; \
its output goes to stderr; a failing command fails the restore); one without writes the dump into \
--target DIR; a directory store is restored into --target DIR, or with --in-place to where its \
paths were backed up from (files there are overwritten; others are left alone). --all restores \
every store in restore_order (disaster recovery), each store's files under DIR/STORE/ with \
--target, stopping at the first failure unless --keep-going; every store's options are checked \
before anything is restored.\n\n\
Exit codes: 0 success; 1 error (or some files or stores could not be restored); 2 usage error; \
3 done with warnings.";

/// `cairn restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Snapshot id, id prefix, or `latest` (not with --store or --all).
    #[arg(required_unless_present_any = ["store", "all"], conflicts_with_all = ["store", "all"])]
    pub snapshot: Option<String>,
    /// Directory to restore into (created if missing); required without --store, --all and
    /// --in-place.
    #[arg(short, long, required_unless_present_any = ["store", "all"])]
    pub target: Option<PathBuf>,
    /// Restore only this path of the snapshot (repeat for several).
    #[arg(long = "include", conflicts_with_all = ["store", "all"])]
    pub includes: Vec<PathBuf>,
    /// Read every restored file back and check it against the snapshot.
    #[arg(long)]
    pub verify: bool,
    /// Restore this store of cairn.toml.
    #[arg(long, value_name = "NAME", conflicts_with = "all")]
    pub store: Option<String>,
    /// With --store: this snapshot of the store (id, id prefix or `latest`, the default: its
    /// newest complete one).
    #[arg(long = "snapshot", value_name = "ID", requires = "store")]
    pub store_snapshot: Option<String>,
    /// Restore every store of cairn.toml, in restore_order.
    #[arg(long)]
    pub all: bool,
    /// Directory stores: restore to where they were backed up from, overwriting files there.
    #[arg(long)]
    pub in_place: bool,
    /// With --all: go on with the next store after one fails.
    #[arg(long, requires = "all")]
    pub keep_going: bool,
}

/// `cairn dump`.
#[derive(Debug, Args)]
pub struct DumpArgs {
    /// Snapshot id, id prefix, or `latest`.
    pub snapshot: String,
    /// The file's path inside the snapshot, as `cairn ls` shows it (any bytes, not only UTF-8).
    pub path: std::path::PathBuf,
}

/// `cairn diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The first snapshot: id, id prefix, or `latest`.
    pub first: String,
    /// The second snapshot: id, id prefix, or `latest`.
    pub second: String,
    /// Also list metadata-only changes (U: mode, owner, group, mtime); they are counted anyway.
    #[arg(long)]
    pub metadata: bool,
}

/// Shown at the end of `cairn find --help`.
pub const FIND_HELP: &str = "Patterns: `*` any characters within a name, `?` one character, `[a-z]` and \
`[!a-z]` classes, `\\` escapes, `**` any number of directories. A pattern without `/` matches the last \
name at any depth (`*.dump`); one starting with `/` matches from the snapshot root as `cairn ls` shows \
paths (`/n8n/*`, `/n8n/**` for everything below); any other matches at any depth (`n8n/*.json`). \
Quote patterns so the shell does not expand them. Exit codes: 0 success (with or without matches); \
1 error; 2 usage error (e.g. a bad pattern); 3 some snapshot could not be searched completely.";

/// `cairn find`.
#[derive(Debug, Args)]
pub struct FindArgs {
    /// The pattern, e.g. '*.dump' or '/n8n/*' (see below).
    #[arg(value_parser = parse_glob)]
    pub pattern: engine::glob::Glob,
    /// Search only this snapshot (id, id prefix or `latest`; repeat for several).
    #[arg(long = "snapshot", short = 's', value_name = "ID")]
    pub snapshots: Vec<String>,
    /// Search only snapshots of this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Search only snapshots whose backed-up paths include this one.
    #[arg(long)]
    pub path: Option<String>,
}

fn parse_glob(s: &str) -> Result<engine::glob::Glob, String> {
    engine::glob::Glob::new(s).map_err(|e| e.to_string())
}

/// Shown at the end of `cairn stats --help`.
pub const STATS_HELP: &str = "Restore size: every file of every selected snapshot, summed. Unique blobs: \
the distinct data blobs, trees and content lists they reference, with their plaintext (raw) and stored \
(compressed, encrypted) bytes. Dedup ratio = restore size / raw bytes of the unique data; compression \
ratio = raw / stored; space ratio = restore size / stored (both together). Groups (--by) count shared \
blobs in each group they appear in. A snapshot's store is its tag naming a configured store; until \
stores are configured, it is its host and paths (the series `cairn backup` continues).";

/// How `cairn stats` groups snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatsBy {
    /// Each snapshot on its own.
    Snapshot,
    /// By store.
    Store,
    /// By host.
    Host,
}

/// `cairn stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Snapshots to count (ids, id prefixes or `latest`); default: all of them.
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Also give the figures per snapshot, store or host.
    #[arg(long, value_enum, value_name = "GROUP")]
    pub by: Option<StatsBy>,
    /// Count only snapshots of this host.
    #[arg(long)]
    pub host: Option<String>,
}

/// Shown at the end of `cairn status --help`.
pub const STATUS_HELP: &str = "A store is fresh when its newest complete snapshot is at most its \
interval plus a grace of a quarter of the interval old (24h: 30h) and its newest snapshot is not a \
failed backup. It is overdue when older, failed when its last run failed (the failure is shown), \
never when it has no complete snapshot. A store's snapshots are those `cairn run` wrote for it.\n\n\
Exit codes: 0 every store is fresh; 1 some store is overdue, failed or never backed up, or the \
status could not be read; 2 usage error. Suitable for cron or a monitoring probe.";

/// `cairn status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only these stores (repeat for several; default: every store of cairn.toml).
    #[arg(long = "store", value_name = "NAME")]
    pub stores: Vec<String>,
}

/// `cairn cat`.
#[derive(Debug, Args)]
pub struct CatArgs {
    /// config, key, snapshot, index, pack or blob.
    pub kind: String,
    /// The object's id (not needed for config).
    pub id: Option<String>,
}

/// Shown at the end of `cairn check --help`.
pub const CHECK_EXIT_CODES: &str = "Exit codes: 0 no damage found (warnings alone, such as unreferenced packs, still exit 0); \
1 damage found, or the check could not run (the last line says which); 2 usage error.";

/// `cairn check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Also read every pack whole and verify every blob (reads the whole repository).
    #[arg(long)]
    pub read_data: bool,
    /// Read only part of the packs, chosen by pack id: N/M (part N of M, so 1/7 … 7/7 on seven
    /// days cover everything once) or P% (the same P percent every time). Implies --read-data.
    #[arg(long, value_name = "N/M|P%", value_parser = parse_read_data_subset)]
    pub read_data_subset: Option<engine::checker::ReadData>,
    /// Check only the data of this store's snapshots (repeat for several); with read-data,
    /// only the packs they use are read. The repository's structure is always checked whole.
    #[arg(long = "store", value_name = "NAME")]
    pub stores: Vec<String>,
    /// Write Prometheus metrics (cairn_check_success, cairn_check_last_run_timestamp_seconds)
    /// to this file (atomically).
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
}

fn parse_read_data_subset(s: &str) -> Result<engine::checker::ReadData, String> {
    s.parse().map_err(|e: engine::Error| e.to_string())
}

/// Shown at the end of `cairn forget --help`.
pub const FORGET_HELP: &str = "A snapshot is kept when any rule keeps it. Rules are applied to each group \
(--group-by) separately, newest snapshot first; hours, days, ISO weeks, months and years are those of \
each snapshot's own UTC offset. keep-within durations (e.g. 30d, 7d12h, 1y2m: y, m, d, h) count back from \
the newest complete snapshot of the group. Failed backups never count toward keep-last or the \
hourly..yearly rules; only keep-within and keep-tag keep them. Snapshots dated in the future are always \
kept. Protected snapshots (`cairn protect`) are always kept; they count toward the rules like any \
other, so protecting one does not change which others are kept. forget removes snapshot files only; \
`cairn prune` frees the data.\n\n\
Stores: with a cairn.toml and no --keep-* rules (nor ids), each store's snapshots (those `cairn run` \
wrote) are one group, kept by that store's own retention (\"forever\" keeps them all); --store NAME \
limits this to the named stores, and with --keep-* rules applies those rules to each named store's \
snapshots instead (--group-by is not used then: a store is one group whatever its hosts). \
Snapshots that belong to no store, and those of stores not selected, are left alone and counted.";

/// `cairn forget`.
#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Snapshots to remove, by id or unique id prefix (instead of --keep-* rules).
    pub snapshots: Vec<String>,
    /// Keep the N newest snapshots.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the N newest hours.
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest days.
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the N newest ISO weeks.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest months.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest years.
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot taken within DURATION of the newest one (e.g. 30d, 7d12h, 1y2m).
    #[arg(long, value_name = "DURATION", value_parser = parse_keep_duration)]
    pub keep_within: Option<engine::retention::KeepDuration>,
    /// Keep one snapshot per hour within DURATION of the newest one.
    #[arg(long, value_name = "DURATION", value_parser = parse_keep_duration)]
    pub keep_within_hourly: Option<engine::retention::KeepDuration>,
    /// Keep one snapshot per day within DURATION of the newest one.
    #[arg(long, value_name = "DURATION", value_parser = parse_keep_duration)]
    pub keep_within_daily: Option<engine::retention::KeepDuration>,
    /// Keep one snapshot per ISO week within DURATION of the newest one.
    #[arg(long, value_name = "DURATION", value_parser = parse_keep_duration)]
    pub keep_within_weekly: Option<engine::retention::KeepDuration>,
    /// Keep one snapshot per month within DURATION of the newest one.
    #[arg(long, value_name = "DURATION", value_parser = parse_keep_duration)]
    pub keep_within_monthly: Option<engine::retention::KeepDuration>,
    /// Keep one snapshot per year within DURATION of the newest one.
    #[arg(long, value_name = "DURATION", value_parser = parse_keep_duration)]
    pub keep_within_yearly: Option<engine::retention::KeepDuration>,
    /// Keep every snapshot with this tag (repeat for several: any of them).
    #[arg(long = "keep-tag", value_name = "TAG")]
    pub keep_tags: Vec<String>,
    /// Apply the rules separately to each group of snapshots sharing these fields: a
    /// comma-separated subset of host, paths, tags; "" for one group.
    #[arg(long, value_name = "FIELDS", default_value = "host,paths", value_parser = parse_group_by)]
    pub group_by: engine::retention::GroupBy,
    /// Only show what would be kept and removed.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Only this store's snapshots (repeat for several), one group per store; without
    /// --keep-* rules, each store's own retention from cairn.toml.
    #[arg(long = "store", value_name = "NAME", conflicts_with = "snapshots")]
    pub stores: Vec<String>,
}

fn parse_keep_duration(s: &str) -> Result<engine::retention::KeepDuration, String> {
    s.parse().map_err(|e: engine::Error| e.to_string())
}

fn parse_group_by(s: &str) -> Result<engine::retention::GroupBy, String> {
    s.parse().map_err(|e: engine::Error| e.to_string())
}

/// Shown at the end of `cairn prune --help`.
pub const PRUNE_HELP: &str = "Deletion is two-phase. A prune run deletes the packs that earlier runs \
marked (unless a snapshot saved since needs them), then marks the packs no snapshot needs in a new \
plan. A marked pack is deleted only by a prune run at least the grace period later (the \
repository's, set by `cairn init --prune-grace`, 12h by default; --grace can only lengthen it), so \
run prune regularly, e.g. after each `cairn forget`: each run frees what the previous ones marked. \
Backups can keep running while prune runs (and between runs); only one prune runs at a time. Packs \
written within the grace period are never marked.\n\n\
Defaults: --max-unused 5% (partly used packs are repacked until at most 5% of the stored bytes are \
unused), no --max-repack-size limit, --grace the repository's. Sizes take K, M, G, T suffixes \
(powers of 1024); durations take s, m (minutes), h, d.\n\n\
Exit codes: 0 success; 1 error; 2 usage error; 3 done with warnings.";

/// `cairn prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Read everything and report what would be deleted and marked; change nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Unused space tolerated before partly used packs are repacked: a percentage of the
    /// stored bytes (5%), a size (500M), or `unlimited` (never repack).
    #[arg(long, value_name = "5%|SIZE|unlimited", default_value = "5%", value_parser = parse_max_unused)]
    pub max_unused: engine::prune::MaxUnused,
    /// Copy at most this many bytes of still-needed data when repacking (e.g. 2G).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_repack_size: Option<u64>,
    /// A grace period longer than the repository's (e.g. 2d); it cannot be shorter.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub grace: Option<Duration>,
}

/// Shown at the end of `cairn protect --help` and `cairn unprotect --help`.
pub const PROTECT_HELP: &str = "Snapshots are stored under the hash of their contents, so changing the \
flag writes the snapshot again under a new id (the old id is printed with the new one) and then \
removes the old object. Snapshots that already have the requested state are left alone.";

/// `cairn protect` and `cairn unprotect`.
#[derive(Debug, Args)]
pub struct ProtectArgs {
    /// Snapshot ids, unique id prefixes, or `latest`.
    #[arg(required = true, value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
}

/// Parses `30s`, `12h`, `1d12h`, `90m`: numbers each followed by a unit, s (seconds),
/// m (minutes), h (hours) or d (days).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = |why: String| {
        format!(
            "invalid duration {s:?}: {why}; write numbers with units s (seconds), m (minutes), \
             h (hours), d (days), e.g. 30s, 12h or 1d12h"
        )
    };
    if s.is_empty() {
        return Err(bad("it is empty".into()));
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut seen = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        if digits.is_empty() {
            return Err(bad(format!("'{c}' is not preceded by a number")));
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad(format!("unknown unit '{c}'"))),
        };
        if seen.contains(c) {
            return Err(bad(format!("unit '{c}' is given twice")));
        }
        seen.push(c);
        let n: u64 = digits
            .parse()
            .map_err(|_| bad(format!("{digits} is too large")))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| bad("it is too long".into()))?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(bad(format!("{digits} has no unit")));
    }
    Ok(Duration::from_secs(total))
}

/// A duration for `init --prune-grace`: within the bounds the repository format allows.
fn parse_prune_grace(s: &str) -> Result<Duration, String> {
    use repo_format::format::{PRUNE_GRACE_MAX, PRUNE_GRACE_MIN};
    let d = parse_duration(s)?;
    if !(PRUNE_GRACE_MIN..=PRUNE_GRACE_MAX).contains(&d.as_secs()) {
        return Err(format!(
            "a prune grace period of {s:?} is out of range: give 1s to 30d"
        ));
    }
    Ok(d)
}

/// Parses a byte size: a whole number with an optional suffix K, M, G or T (powers of 1024;
/// `KiB`, `KB` and a trailing `B` are accepted too, case-insensitive).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = |why: &str| {
        format!(
            "invalid size {s:?}: {why}; write a number with an optional unit K, M, G, T (powers of 1024), e.g. 500M or 2G"
        )
    };
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(bad("it does not start with a number"));
    }
    let n: u64 = num.parse().map_err(|_| bad("the number is too large"))?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(&unit);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(bad("unknown unit")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| bad("it is too large"))
}

/// Parses `--max-unused`: `5%`, `2.5%`, a size (`500M`), or `unlimited`.
fn parse_max_unused(s: &str) -> Result<engine::prune::MaxUnused, String> {
    use engine::prune::MaxUnused;
    let t = s.trim();
    if t.eq_ignore_ascii_case("unlimited") {
        return Ok(MaxUnused::Unlimited);
    }
    if let Some(p) = t.strip_suffix('%') {
        return match p.trim().parse::<f64>() {
            Ok(v) if (0.0..=100.0).contains(&v) => Ok(MaxUnused::Percent(v)),
            _ => Err(format!(
                "invalid --max-unused {s:?}: a percentage must be a number from 0 to 100, e.g. 5%"
            )),
        };
    }
    parse_size(t).map(MaxUnused::Bytes).map_err(|_| {
        format!(
            "invalid --max-unused {s:?}: give a percentage (5%), a size (500M, with K, M, G, T \
             in powers of 1024) or `unlimited`"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::prune::MaxUnused;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_duration("1d12h"), Ok(Duration::from_secs(129_600)));
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("30m1d"), Ok(Duration::from_secs(88_200)));
        for (bad, why) in [
            ("", "empty"),
            ("12", "has no unit"),
            ("3y", "unknown unit 'y'"),
            ("h", "not preceded"),
            ("1h1h", "given twice"),
            ("-1h", "not preceded"),
            ("99999999999999999999s", "too large"),
            ("9999999999999999d", "too long"),
        ] {
            let e = parse_duration(bad).expect_err(bad);
            assert!(e.contains(why) && e.contains("e.g. 30s"), "{bad:?}: {e}");
        }
        assert_eq!(parse_prune_grace("30d"), Ok(Duration::from_secs(2_592_000)));
        assert!(
            parse_prune_grace("0s")
                .expect_err("0s")
                .contains("1s to 30d")
        );
        assert!(parse_prune_grace("31d").is_err());
    }

    #[test]
    fn sizes_and_max_unused() {
        assert_eq!(parse_size("500"), Ok(500));
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("3TB"), Ok(3 << 40));
        for bad in ["", "M", "5X", "1.5G", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_max_unused("5%"), Ok(MaxUnused::Percent(5.0)));
        assert_eq!(parse_max_unused("2.5%"), Ok(MaxUnused::Percent(2.5)));
        assert_eq!(parse_max_unused("100%"), Ok(MaxUnused::Percent(100.0)));
        assert_eq!(parse_max_unused("500M"), Ok(MaxUnused::Bytes(500 << 20)));
        assert_eq!(parse_max_unused("Unlimited"), Ok(MaxUnused::Unlimited));
        for bad in ["101%", "-1%", "x%", "lots", "NaN%"] {
            let e = parse_max_unused(bad).expect_err(bad);
            assert!(e.contains(bad), "{bad:?}: {e}");
        }
    }
}
