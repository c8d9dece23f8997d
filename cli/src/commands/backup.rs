//! `cairn backup`: paths, standard input, or a command's output.

use anyhow::{Context, Result, anyhow, bail};
use engine::archiver::{BackupOptions, Source, backup};
use repo_format::SnapshotStatus;

use super::{open, print_json};
use crate::Outcome;
use crate::args::{BackupArgs, GlobalArgs};
use crate::output::{size, summary_json};
use crate::progress::TermProgress;

/// Runs `cairn backup`.
pub fn run(g: &GlobalArgs, a: &BackupArgs) -> Result<Outcome> {
    let source = if a.stdin_from_command {
        Source::Command {
            name: a.stdin_name.clone(),
            argv: a.command.clone(),
            env: Vec::new(),
        }
    } else if a.stdin {
        Source::Stream {
            name: a.stdin_name.clone(),
            reader: Box::new(std::io::stdin()),
        }
    } else {
        if !a.command.is_empty() {
            bail!(
                "arguments after `--` are a command for --stdin-from-command, which was not given"
            );
        }
        if a.paths.is_empty() {
            bail!(
                "nothing to back up: name files or directories, or use --stdin or --stdin-from-command"
            );
        }
        Source::Paths(a.paths.clone())
    };
    let repo = open(g)?;
    let mut opts = BackupOptions::new(source);
    opts.tags = a.tags.clone();
    opts.host = a.host.clone();
    opts.force = a.force;
    opts.excludes = a.excludes.clone();
    opts.keep_failed = a.keep_failed;
    opts.chunker_profile = a.chunker.clone();
    if let Some(p) = &a.parent {
        opts.parent = Some(
            repo.resolve_snapshot(p)
                .context("cannot find the --parent snapshot")?
                .0,
        );
    }
    if let Some(t) = &a.time {
        opts.time_ns = Some(parse_time(t)?);
    }
    let progress = TermProgress::new("backup", g.quiet || g.json);
    let result = backup(&repo, opts, &progress);
    progress.finish();
    let r = result.context("backup failed")?;
    let s = r.snapshot.summary.unwrap_or_default();
    let failed = r.snapshot.status == SnapshotStatus::Failed;
    if g.json {
        print_json(&serde_json::json!({
            "snapshot_id": r.id.0.to_hex(),
            "status": if failed { "failed" } else { "complete" },
            "failure": r.snapshot.failure,
            "excluded": r.excluded,
            "summary": summary_json(&s),
            "warnings": r.warnings.iter().map(|w| serde_json::json!({"path": w.path.display().to_string(), "message": w.message})).collect::<Vec<_>>(),
        }))?;
    } else if failed {
        eprintln!(
            "failed snapshot {} saved ({} read and kept; retention does not count it): {}",
            r.id.0.short(),
            size(s.bytes_read),
            r.snapshot.failure.as_deref().unwrap_or("no description")
        );
    } else if !g.quiet {
        let secs = (s.end_ns - s.start_ns) as f64 / 1e9;
        let rate = if secs > 0.0 {
            s.bytes_read as f64 / secs / 1e6
        } else {
            0.0
        };
        eprintln!(
            "snapshot {} saved: {} files ({} new, {} changed, {} unmodified), {} dirs, {} read, {} added ({} stored) in {:.1}s ({:.0} MB/s), {} warnings{}",
            r.id.0.short(),
            s.total_files,
            s.files_new,
            s.files_changed,
            s.files_unmodified,
            s.dirs,
            size(s.bytes_read),
            size(s.data_added_raw),
            size(s.data_added_stored),
            secs,
            rate,
            r.warnings.len(),
            if r.excluded > 0 {
                format!(", {} excluded", r.excluded)
            } else {
                String::new()
            }
        );
    }
    Ok(if failed {
        Outcome::Partial
    } else if r.warnings.is_empty() {
        Outcome::Ok
    } else {
        Outcome::Warnings
    })
}

/// "YYYY-MM-DD HH:MM:SS" in the local zone, as Unix nanoseconds.
fn parse_time(t: &str) -> Result<i64> {
    let dt: jiff::civil::DateTime = t
        .parse()
        .map_err(|e| anyhow!("--time {t:?}: expected \"YYYY-MM-DD HH:MM:SS\" ({e})"))?;
    let zoned = dt
        .to_zoned(jiff::tz::TimeZone::system())
        .map_err(|e| anyhow!("--time {t:?} is not a valid local time: {e}"))?;
    i64::try_from(zoned.timestamp().as_nanosecond())
        .map_err(|_| anyhow!("--time {t:?} is out of range"))
}
