//! Prometheus metrics in the text exposition format, for node_exporter's textfile collector
//! (`--metrics-file PATH` of `cairn run` and `cairn check`), written atomically.
//!
//! `cairn run` writes, for **every** store of the config (not only those run this time), a
//! sample per metric labelled `store="NAME"`:
//!
//! | metric | value |
//! |---|---|
//! | `cairn_backup_success` | 1 if the store's last backup succeeded, 0 if it failed |
//! | `cairn_backup_last_success_timestamp_seconds` | end of the newest complete snapshot of the store (0: none yet) |
//! | `cairn_backup_duration_seconds` | how long the last backup took |
//! | `cairn_backup_bytes_read` | bytes it read |
//! | `cairn_backup_bytes_added` | new data it added, before compression |
//! | `cairn_backup_bytes_stored` | what that new data takes in the repository |
//! | `cairn_backup_files` | files in its snapshot |
//!
//! The "last backup" of a store run this time is this run's (even one that wrote no
//! snapshot, e.g. a failed `before` hook); of any other store, its newest snapshot in the
//! repository (a store with neither has only the timestamp, 0). The last-success timestamp
//! always comes from the repository's snapshots, so the file is complete and right after
//! every run, whichever stores it ran, without reading the previous file.
//!
//! A run that cannot open the repository writes only `cairn_backup_success 0` for the stores it
//! was to run ([`unreachable_metrics`]).
//!
//! `cairn check` writes `cairn_check_success` (1/0) and `cairn_check_last_run_timestamp_seconds`.
//! Give the two commands different files: the collector refuses a metric defined twice.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use repo_format::{Snapshot, SnapshotId, SnapshotStatus};

use super::config::Config;
use super::run::{RunReport, RunStatus};
use crate::error::{Error, ErrorKind, Result};

/// One store's figures, from this run or from its newest snapshot.
#[derive(Clone, Copy, Debug, Default)]
struct Last {
    success: bool,
    duration_secs: f64,
    bytes_read: u64,
    bytes_added: u64,
    bytes_stored: u64,
    files: u64,
}

impl Last {
    fn from_snapshot(s: &Snapshot) -> Last {
        let sum = s.summary.unwrap_or_default();
        Last {
            success: s.status == SnapshotStatus::Complete,
            duration_secs: (sum.end_ns - sum.start_ns).max(0) as f64 / 1e9,
            bytes_read: sum.bytes_read,
            bytes_added: sum.data_added_raw,
            bytes_stored: sum.data_added_stored,
            files: sum.total_files,
        }
    }
}

/// The metrics of `cairn run` (see the module documentation). `snapshots` are the repository's
/// after the run; `run` is what this run did.
pub fn backup_metrics(
    config: &Config,
    snapshots: &[(SnapshotId, Snapshot)],
    run: &RunReport,
) -> String {
    let mut last_success: Vec<i64> = Vec::new();
    let mut last: Vec<Option<Last>> = Vec::new();
    for store in &config.stores {
        let mine = || {
            snapshots
                .iter()
                .map(|(_, s)| s)
                .filter(|s| s.store.as_deref() == Some(store.name.as_str()))
        };
        let newest_good = mine()
            .filter(|s| s.status == SnapshotStatus::Complete)
            .max_by_key(|s| s.time_ns);
        last_success.push(newest_good.map_or(0, |s| {
            let end = s.summary.map_or(s.time_ns, |sum| sum.end_ns);
            end.div_euclid(1_000_000_000)
        }));
        let this_run = run
            .stores
            .iter()
            .find(|r| r.store == store.name)
            .map(|r| Last {
                success: r.status != RunStatus::Failed,
                duration_secs: r.duration.as_secs_f64(),
                bytes_read: r.bytes_read,
                bytes_added: r.bytes_added,
                bytes_stored: r.bytes_stored,
                files: r.files,
            });
        last.push(this_run.or_else(|| mine().max_by_key(|s| s.time_ns).map(Last::from_snapshot)));
    }
    let names: Vec<&str> = config.stores.iter().map(|s| s.name.as_str()).collect();
    let mut out = String::new();
    let mut family = |name: &str, help: &str, value: &dyn Fn(usize) -> Option<String>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (i, store) in names.iter().enumerate() {
            if let Some(v) = value(i) {
                let _ = writeln!(out, "{name}{{store=\"{}\"}} {v}", escape(store));
            }
        }
    };
    let last = &last;
    let with = |f: fn(&Last) -> String| move |i: usize| last[i].as_ref().map(f);
    family(
        "cairn_backup_success",
        "Whether the store's last backup succeeded (1) or failed (0).",
        &with(|l| u8::from(l.success).to_string()),
    );
    family(
        "cairn_backup_last_success_timestamp_seconds",
        "When the store's newest complete snapshot finished, Unix seconds (0: never).",
        &|i| Some(last_success[i].to_string()),
    );
    family(
        "cairn_backup_duration_seconds",
        "How long the store's last backup took.",
        &with(|l| format!("{:.3}", l.duration_secs)),
    );
    family(
        "cairn_backup_bytes_read",
        "Bytes the store's last backup read.",
        &with(|l| l.bytes_read.to_string()),
    );
    family(
        "cairn_backup_bytes_added",
        "New data the store's last backup added to the repository, before compression.",
        &with(|l| l.bytes_added.to_string()),
    );
    family(
        "cairn_backup_bytes_stored",
        "What the new data of the store's last backup takes in the repository.",
        &with(|l| l.bytes_stored.to_string()),
    );
    family(
        "cairn_backup_files",
        "Files in the store's last snapshot.",
        &with(|l| l.files.to_string()),
    );
    out
}

/// The metrics of a `cairn run` that could not start (e.g. the repository is unreachable):
/// `cairn_backup_success 0` for each store it was to run, and nothing else (the other figures
/// are unknown, and a last-success time cannot be read).
pub fn unreachable_metrics(stores: &[&str]) -> String {
    let mut out = String::from(
        "# HELP cairn_backup_success Whether the store's last backup succeeded (1) or failed (0).\n\
         # TYPE cairn_backup_success gauge\n",
    );
    for s in stores {
        let _ = writeln!(out, "cairn_backup_success{{store=\"{}\"}} 0", escape(s));
    }
    out
}

/// The metrics of `cairn check`: whether it found the repository sound, and when it ran
/// (Unix seconds).
pub fn check_metrics(success: bool, time_unix: i64) -> String {
    format!(
        "# HELP cairn_check_success Whether the last `cairn check` found no damage (1) or not (0).\n\
         # TYPE cairn_check_success gauge\n\
         cairn_check_success {}\n\
         # HELP cairn_check_last_run_timestamp_seconds When the last `cairn check` ran, Unix seconds.\n\
         # TYPE cairn_check_last_run_timestamp_seconds gauge\n\
         cairn_check_last_run_timestamp_seconds {time_unix}\n",
        u8::from(success)
    )
}

/// A label value, escaped (`\`, `"` and newlines).
fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// Writes `text` to `path` atomically: a temporary file in the same directory, flushed to
/// disk, then renamed over `path` (readable by everyone: the collector runs as another user).
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("--metrics-file {}: name a file", path.display()),
        )
    })?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let failed = |what: &str, e| {
        Error::io(
            format!(
                "cannot {what} the metrics file {} (via {}): check that the directory exists \
                 and is writable",
                path.display(),
                tmp.display()
            ),
            e,
        )
    };
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(failed("write", e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        failed("rename into place", e)
    })
}
