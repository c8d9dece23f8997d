//! `cairn find PATTERN`: which snapshots hold matching paths, streamed as they are found.
//!
//! Text: a header line per snapshot with matches, then one line per match (size or kind,
//! mtime, path). JSON: an array, streamed, of one object per match: the node as
//! `cairn ls --json` gives it plus the snapshot's id, time and host.

use std::io::Write;

use anyhow::{Context, Result};
use engine::find::Finder;
use engine::repository::Repository;
use repo_format::{Node, NodeKind, Snapshot, SnapshotId};
use serde_json::Value;

use super::open;
use crate::Outcome;
use crate::args::{FindArgs, GlobalArgs};
use crate::output::{kind_name, lossy, node_json, size, time, time_rfc3339};

/// Runs `cairn find`.
pub fn run(g: &GlobalArgs, a: &FindArgs) -> Result<Outcome> {
    let repo = open(g)?;
    let snaps = select(&repo, a)?;
    let mut finder = Finder::new(a.pattern.clone());
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if g.json {
        write!(out, "[")?;
    }
    let (mut matches, mut with_matches, mut damaged) = (0u64, 0u64, 0u64);
    let mut first = true;
    for (id, snap) in &snaps {
        let mut header = false;
        let counts = finder
            .find(
                &repo,
                &snap.tree,
                &mut |path, node| {
                    let text = if g.json {
                        let sep = if first { "" } else { "," };
                        format!("{sep}\n{}", match_json(id, snap, path, node))
                    } else {
                        let mut t = String::new();
                        if !header {
                            t.push_str(&header_text(id, snap));
                            t.push('\n');
                        }
                        t.push_str(&match_text(path, node));
                        t.push('\n');
                        t
                    };
                    header = true;
                    first = false;
                    out.write_all(text.as_bytes())
                        .map_err(|e| engine::Error::io("cannot write the listing", e))
                },
                &mut |path, e| {
                    eprintln!(
                        "warning: snapshot {}: /{} cannot be searched: {}",
                        id.0.short(),
                        lossy(path),
                        engine::restorer::error_chain(e)
                    );
                },
            )
            .with_context(|| format!("cannot search snapshot {}", id.0.short()))?;
        matches += counts.matches;
        with_matches += u64::from(counts.matches > 0);
        damaged += counts.damaged;
    }
    if g.json {
        writeln!(out, "\n]")?;
    } else if !g.quiet {
        writeln!(
            out,
            "{matches} matches of {:?} in {with_matches} of {} snapshots",
            a.pattern.as_str(),
            snaps.len()
        )?;
    }
    out.flush().context("cannot write the listing")?;
    Ok(if damaged > 0 {
        Outcome::Warnings
    } else {
        Outcome::Ok
    })
}

/// The snapshots to search: those named (in the order given), else all (oldest first),
/// filtered by host and path.
fn select(repo: &Repository, a: &FindArgs) -> Result<Vec<(SnapshotId, Snapshot)>> {
    let snaps = if a.snapshots.is_empty() {
        let all = repo.list_snapshots()?;
        for (id, why) in repo.damaged_snapshots() {
            eprintln!(
                "warning: snapshot {} is damaged and not searched: {why}",
                id.0.short()
            );
        }
        all
    } else {
        let mut named = Vec::new();
        for spec in &a.snapshots {
            let found = repo.resolve_snapshot(spec)?;
            if !named.iter().any(|(id, _)| *id == found.0) {
                named.push(found);
            }
        }
        named
    };
    let want_path = a.path.as_deref().map(|p| {
        let t = p.trim_end_matches('/');
        if t.is_empty() { "/" } else { t }.as_bytes().to_vec()
    });
    Ok(snaps
        .into_iter()
        .filter(|(_, s)| a.host.as_ref().is_none_or(|h| &s.hostname == h))
        .filter(|(_, s)| want_path.as_ref().is_none_or(|p| s.paths.contains(p)))
        .collect())
}

fn header_text(id: &SnapshotId, s: &Snapshot) -> String {
    let paths: Vec<String> = s.paths.iter().map(|p| lossy(p)).collect();
    format!(
        "snapshot {} of [{}] at {} on {}:",
        id.0.short(),
        paths.join(", "),
        time(s.time_ns, s.utc_offset),
        s.hostname
    )
}

fn match_text(path: &[u8], n: &Node) -> String {
    let what = match n.kind {
        NodeKind::File { .. } => size(n.size),
        ref k => kind_name(k).to_string(),
    };
    let mut line = format!(
        "  {what:>10}  {}  /{}",
        time(n.mtime.sec.saturating_mul(1_000_000_000), 0),
        lossy(path)
    );
    if let NodeKind::Dir { .. } = n.kind {
        line.push('/');
    }
    line
}

fn match_json(id: &SnapshotId, s: &Snapshot, path: &[u8], n: &Node) -> Value {
    let mut v = node_json(path, n);
    v["snapshot"] = Value::String(id.0.to_hex());
    v["snapshot_short_id"] = Value::String(id.0.short());
    v["snapshot_time"] = Value::String(time_rfc3339(s.time_ns, s.utc_offset));
    v["host"] = Value::String(s.hostname.clone());
    v
}
