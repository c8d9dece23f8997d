//! The command line, as clap sees it. Each subcommand's arguments become engine options in
//! its own file under `commands/`.

use std::ffi::OsString;
use std::path::PathBuf;

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
    /// List snapshots.
    Snapshots(SnapshotsArgs),
    /// List the files in a snapshot.
    Ls(LsArgs),
    /// Restore a snapshot (or parts of it) into a directory.
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
    /// The command for --stdin-from-command.
    #[arg(last = true)]
    pub command: Vec<OsString>,
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

/// `cairn restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Snapshot id, id prefix, or `latest`.
    pub snapshot: String,
    /// Directory to restore into (created if missing).
    #[arg(short, long)]
    pub target: PathBuf,
    /// Restore only this path of the snapshot (repeat for several).
    #[arg(long = "include")]
    pub includes: Vec<PathBuf>,
    /// Read every restored file back and check it against the snapshot.
    #[arg(long)]
    pub verify: bool,
}

/// `cairn dump`.
#[derive(Debug, Args)]
pub struct DumpArgs {
    /// Snapshot id, id prefix, or `latest`.
    pub snapshot: String,
    /// The file's path inside the snapshot, as `cairn ls` shows it.
    pub path: String,
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
kept. forget removes snapshot files only; `cairn prune` (not yet available) will free the data.";

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
}

fn parse_keep_duration(s: &str) -> Result<engine::retention::KeepDuration, String> {
    s.parse().map_err(|e: engine::Error| e.to_string())
}

fn parse_group_by(s: &str) -> Result<engine::retention::GroupBy, String> {
    s.parse().map_err(|e: engine::Error| e.to_string())
}
