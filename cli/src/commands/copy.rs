//! `cairn copy --to LOCATION [SNAPSHOT...]`: snapshots of `--repo` into another repository.

use anyhow::{Context, Result, bail};
use engine::copy::{CopyReport, copy};
use engine::repository::{OpenOptions, Repository};
use repo_format::{Snapshot, SnapshotId};
use serde_json::{Value, json};

use super::{open, print_json};
use crate::Outcome;
use crate::args::{CopyArgs, GlobalArgs};
use crate::output::{size, time_rfc3339};
use crate::password::{PasswordNames, PasswordSource, read_password_as};
use crate::progress::TermProgress;

/// The destination's password sources: its own variable, prompt and flags.
const DESTINATION: PasswordNames = PasswordNames {
    env: "CAIRN_TO_PASSWORD",
    prompt: "destination repository password: ",
    flag_prefix: "--to-",
};

/// Runs `cairn copy`.
pub fn run(g: &GlobalArgs, a: &CopyArgs) -> Result<Outcome> {
    let src = open(g)?;
    let (ids, mut outcome) = select(&src, a)?;
    let dst = open_destination(g, a)?;
    let progress = TermProgress::new("copy", g.quiet || g.json);
    let started = std::time::Instant::now();
    let result = copy(&src, &dst, &ids, &progress);
    progress.finish();
    let r = result.with_context(|| format!("copy to {} failed", a.to))?;
    if !r.warnings.is_empty() {
        outcome = Outcome::Warnings;
    }
    if g.json {
        print_json(&report_json(&a.to, &r))?;
    } else if !g.quiet {
        for c in &r.copied {
            eprintln!(
                "snapshot {} copied as {}: {} files ({} read, {} unchanged since an earlier copy), {} read, {} added ({} stored)",
                c.source.0.short(),
                c.id.0.short(),
                c.stats.total_files,
                c.stats.files_read,
                c.stats.files_reused,
                size(c.stats.bytes_read),
                size(c.data_added_raw),
                size(c.data_added_stored),
            );
        }
        eprintln!(
            "{} snapshots copied to {}, {} already there: {} read, {} added ({} stored) in {:.1}s",
            r.copied.len(),
            a.to,
            r.present.len(),
            size(r.bytes_read()),
            size(r.data_added_raw()),
            size(r.data_added_stored()),
            started.elapsed().as_secs_f64(),
        );
    }
    Ok(outcome)
}

/// The snapshots to copy: those named (resolved), else all; then the --host and --tag filters.
/// Damaged source snapshots are left out with a warning (exit 3).
fn select(src: &Repository, a: &CopyArgs) -> Result<(Vec<SnapshotId>, Outcome)> {
    let wanted = |s: &Snapshot| {
        a.host.as_ref().is_none_or(|h| &s.hostname == h)
            && a.tag.as_ref().is_none_or(|t| s.tags.contains(t))
    };
    let mut outcome = Outcome::Ok;
    let ids = if a.snapshots.is_empty() {
        let all = src.list_snapshots()?;
        for (id, why) in src.damaged_snapshots() {
            eprintln!(
                "warning: snapshot {} is damaged and not copied: {why}",
                id.0.short()
            );
            outcome = Outcome::Warnings;
        }
        all.into_iter()
            .filter(|(_, s)| wanted(s))
            .map(|(id, _)| id)
            .collect()
    } else {
        let mut ids = Vec::with_capacity(a.snapshots.len());
        for spec in &a.snapshots {
            let (id, s) = src
                .resolve_snapshot(spec)
                .with_context(|| format!("cannot find snapshot {spec} in {}", src.location()))?;
            if wanted(&s) {
                ids.push(id);
            }
        }
        ids
    };
    if ids.is_empty() && !a.snapshots.is_empty() {
        bail!("none of the named snapshots matches --host/--tag; nothing to copy");
    }
    Ok((ids, outcome))
}

/// Opens `--to` with its own password and cache directory.
fn open_destination(g: &GlobalArgs, a: &CopyArgs) -> Result<Repository> {
    let sources = PasswordSource {
        file: a.to_password_file.clone(),
        command: a.to_password_command.clone(),
    };
    let password = read_password_as(&sources, false, &DESTINATION)
        .context("cannot get the destination repository's password")?;
    let opts = OpenOptions {
        cache_dir: a.to_cache_dir.clone().or_else(|| g.cache_dir.clone()),
    };
    let dst = Repository::open(&a.to, &password, &opts)
        .with_context(|| format!("cannot open the destination repository {}", a.to))?;
    super::warn_on_rollback(&dst);
    for (id, why) in dst.damaged_index_files() {
        eprintln!(
            "warning: index file {} of {} is unusable ({why}); run `cairn repair index` there",
            id.0.short(),
            a.to
        );
    }
    Ok(dst)
}

fn report_json(to: &str, r: &CopyReport) -> Value {
    json!({
        "to": to,
        "copied": r.copied.iter().map(|c| json!({
            "source": c.source.0.to_hex(),
            "id": c.id.0.to_hex(),
            "time": time_rfc3339(c.snapshot.time_ns, c.snapshot.utc_offset),
            "host": c.snapshot.hostname,
            "total_files": c.stats.total_files,
            "files_read": c.stats.files_read,
            "files_reused": c.stats.files_reused,
            "bytes_read": c.stats.bytes_read,
            "blobs_added": c.blobs_added,
            "data_added_raw": c.data_added_raw,
            "data_added_stored": c.data_added_stored,
        })).collect::<Vec<_>>(),
        "present": r.present.iter().map(|(s, d)| json!({
            "source": s.0.to_hex(),
            "id": d.0.to_hex(),
        })).collect::<Vec<_>>(),
        "snapshots_copied": r.copied.len(),
        "snapshots_present": r.present.len(),
        "bytes_read": r.bytes_read(),
        "data_added_raw": r.data_added_raw(),
        "data_added_stored": r.data_added_stored(),
        "warnings": r.warnings.iter().map(|w| w.message.clone()).collect::<Vec<_>>(),
    })
}
