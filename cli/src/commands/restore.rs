//! `cairn restore`: a snapshot back into a directory; with `--store` or `--all`, stores of
//! cairn.toml (see [`stores`]).

mod stores;

use anyhow::{Context, Result};
use engine::restorer::{RestoreOptions, restore};

use super::{open, print_json};
use crate::Outcome;
use crate::args::{GlobalArgs, RestoreArgs};
use crate::configured::usage_exit;
use crate::output::size;
use crate::progress::TermProgress;

/// Runs `cairn restore`.
pub fn run(g: &GlobalArgs, a: &RestoreArgs) -> Result<Outcome> {
    if a.store.is_some() || a.all {
        return stores::run(g, a);
    }
    if a.in_place {
        usage_exit(
            "restore",
            "--in-place restores a store of cairn.toml where it was backed up from: give \
             --store NAME or --all (a snapshot restores into --target DIR)",
        );
    }
    // clap requires both without --store and --all.
    let (Some(spec), Some(target)) = (&a.snapshot, &a.target) else {
        usage_exit(
            "restore",
            "give a SNAPSHOT and --target DIR, or --store NAME, or --all",
        );
    };
    let repo = open(g)?;
    let (id, snap) = repo.resolve_snapshot(spec)?;
    let opts = RestoreOptions {
        target: target.clone(),
        includes: a.includes.clone(),
        threads: None,
        verify: a.verify,
    };
    let progress = TermProgress::new("restore", g.quiet || g.json);
    let started = std::time::Instant::now();
    let result = restore(&repo, &snap, &opts, &progress);
    progress.finish();
    let s = result.with_context(|| format!("cannot restore snapshot {}", id.0.short()))?;
    let secs = started.elapsed().as_secs_f64();
    if g.json {
        print_json(&serde_json::json!({
            "snapshot_id": id.0.to_hex(),
            "target": target.display().to_string(),
            "files": s.files, "verified": s.verified, "dirs": s.dirs, "symlinks": s.symlinks, "bytes": s.bytes,
            "seconds": secs,
            "failed": s.failed.iter().map(|(p, m)| serde_json::json!({"path": p.display().to_string(), "error": m})).collect::<Vec<_>>(),
            "warnings": s.warnings.iter().map(|(p, m)| serde_json::json!({"path": p.display().to_string(), "message": m})).collect::<Vec<_>>(),
        }))?;
    } else {
        for (p, m) in &s.failed {
            eprintln!("error: {}: {m}", p.display());
        }
        for (p, m) in &s.warnings {
            eprintln!("warning: {}: {m}", p.display());
        }
        if !g.quiet {
            let rate = if secs > 0.0 {
                s.bytes as f64 / secs / 1e6
            } else {
                0.0
            };
            eprintln!(
                "restored snapshot {} to {}: {} files, {} dirs, {} symlinks, {} in {secs:.1}s ({rate:.0} MB/s); {} failed, {} warnings",
                id.0.short(),
                target.display(),
                s.files,
                s.dirs,
                s.symlinks,
                size(s.bytes),
                s.failed.len(),
                s.warnings.len()
            );
            if a.verify {
                eprintln!(
                    "verified: {} files read back and identical to the snapshot",
                    s.verified
                );
            }
        }
    }
    Ok(if !s.failed.is_empty() {
        Outcome::Partial
    } else if !s.warnings.is_empty() {
        Outcome::Warnings
    } else {
        Outcome::Ok
    })
}
