//! `cairn restore`: a snapshot back into a directory.

use anyhow::{Context, Result};
use engine::restorer::{RestoreOptions, restore};

use super::{open, print_json};
use crate::Outcome;
use crate::args::{GlobalArgs, RestoreArgs};
use crate::output::size;
use crate::progress::TermProgress;

/// Runs `cairn restore`.
pub fn run(g: &GlobalArgs, a: &RestoreArgs) -> Result<Outcome> {
    let repo = open(g)?;
    let (id, snap) = repo.resolve_snapshot(&a.snapshot)?;
    let opts = RestoreOptions {
        target: a.target.clone(),
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
            "target": a.target.display().to_string(),
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
                a.target.display(),
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
