//! `cairn diff A B`: what changed between two snapshots, one line per path, then a summary.
//!
//! Text: `+` added, `-` removed, `M` content modified, `U` metadata only (with `--metadata`),
//! `T` type changed; directories end in `/`. JSON: one object, streamed, with `changes` (one
//! object per change, paths as `cairn ls --json` gives them) and `summary`.

use std::io::Write;

use anyhow::{Context, Result};
use engine::diff::{Change, ChangeKind, DiffOptions, DiffSummary, diff};
use repo_format::{Node, NodeKind, Snapshot, SnapshotId};
use serde_json::{Value, json};

use super::open;
use crate::Outcome;
use crate::args::{DiffArgs, GlobalArgs};
use crate::output::{kind_name, lossy, size, time, time_rfc3339};

/// Runs `cairn diff`.
pub fn run(g: &GlobalArgs, a: &DiffArgs) -> Result<Outcome> {
    let repo = open(g)?;
    let (id_a, snap_a) = repo
        .resolve_snapshot(&a.first)
        .with_context(|| format!("cannot find the first snapshot '{}'", a.first))?;
    let (id_b, snap_b) = repo
        .resolve_snapshot(&a.second)
        .with_context(|| format!("cannot find the second snapshot '{}'", a.second))?;
    let opts = DiffOptions {
        metadata: a.metadata,
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if g.json {
        write!(
            out,
            "{{\"first\":{},\"second\":{},\"changes\":[",
            snapshot_brief(&id_a, &snap_a),
            snapshot_brief(&id_b, &snap_b)
        )?;
    } else if !g.quiet {
        writeln!(
            out,
            "comparing snapshot {} ({}) with {} ({})",
            id_a.0.short(),
            time(snap_a.time_ns, snap_a.utc_offset),
            id_b.0.short(),
            time(snap_b.time_ns, snap_b.utc_offset)
        )?;
    }
    let mut first = true;
    let summary = diff(&repo, &snap_a.tree, &snap_b.tree, &opts, &mut |c| {
        let line = if g.json {
            let sep = if first { "" } else { "," };
            format!("{sep}\n{}", change_json(c))
        } else {
            format!("{}\n", change_text(c))
        };
        first = false;
        out.write_all(line.as_bytes())
            .map_err(|e| engine::Error::io("cannot write the listing", e))
    })
    .with_context(|| {
        format!(
            "cannot compare snapshots {} and {}",
            id_a.0.short(),
            id_b.0.short()
        )
    })?;
    if g.json {
        writeln!(out, "\n],\"summary\":{}}}", summary_json(&summary))?;
    } else if !g.quiet {
        writeln!(out, "{}", summary_text(&summary, a.metadata))?;
    }
    out.flush().context("cannot write the listing")?;
    Ok(Outcome::Ok)
}

fn snapshot_brief(id: &SnapshotId, s: &Snapshot) -> Value {
    json!({
        "id": id.0.to_hex(),
        "short_id": id.0.short(),
        "time": time_rfc3339(s.time_ns, s.utc_offset),
        "host": s.hostname,
        "paths": s.paths.iter().map(|p| lossy(p)).collect::<Vec<_>>(),
    })
}

/// `/path`, with a trailing `/` for directories.
fn shown_path(c: &Change<'_>) -> String {
    let dir = matches!(
        c.after.or(c.before).map(|n| &n.kind),
        Some(NodeKind::Dir { .. })
    );
    format!("/{}{}", lossy(c.path), if dir { "/" } else { "" })
}

fn change_text(c: &Change<'_>) -> String {
    let mut line = format!("{}  {}", c.kind.mark(), shown_path(c));
    if c.kind == ChangeKind::Modified
        && let (Some(b), Some(a)) = (c.before, c.after)
        && matches!(a.kind, NodeKind::File { .. })
    {
        line.push_str(&format!("  ({} -> {}", size(b.size), size(a.size)));
        if let Some(d) = c.data {
            line.push_str(&format!(", data +{} -{}", size(d.added), size(d.removed)));
        }
        line.push(')');
    }
    if c.kind == ChangeKind::TypeChanged
        && let (Some(b), Some(a)) = (c.before, c.after)
    {
        line.push_str(&format!(
            "  ({} -> {})",
            kind_name(&b.kind),
            kind_name(&a.kind)
        ));
    }
    line
}

fn node_brief(n: &Node) -> Value {
    let mut v = json!({
        "type": kind_name(&n.kind),
        "size": n.size,
        "mode": format!("{:04o}", n.mode),
        "uid": n.uid,
        "gid": n.gid,
        "mtime": time_rfc3339(n.mtime.sec.saturating_mul(1_000_000_000).saturating_add(i64::from(n.mtime.nsec)), 0),
    });
    if let NodeKind::Symlink { target } = &n.kind {
        v["target"] = Value::String(lossy(target));
    }
    v
}

fn change_json(c: &Change<'_>) -> Value {
    let kind = match c.kind {
        ChangeKind::Added => "added",
        ChangeKind::Removed => "removed",
        ChangeKind::Modified => "modified",
        ChangeKind::Metadata => "metadata",
        ChangeKind::TypeChanged => "type",
    };
    let mut v = json!({
        "change": c.kind.mark().to_string(),
        "kind": kind,
        "path": lossy(c.path),
        "before": c.before.map(node_brief),
        "after": c.after.map(node_brief),
    });
    if let Some(d) = c.data {
        v["data_added"] = json!(d.added);
        v["data_removed"] = json!(d.removed);
    }
    v
}

fn summary_json(s: &DiffSummary) -> Value {
    json!({
        "added": s.added,
        "removed": s.removed,
        "modified": s.modified,
        "metadata": s.metadata,
        "type_changed": s.type_changed,
        "bytes_added": s.bytes_added,
        "bytes_removed": s.bytes_removed,
        "data_added": s.data_added,
        "data_removed": s.data_removed,
        "data_unknown": s.data_unknown,
        "trees_loaded": s.trees_loaded,
        "trees_skipped": s.trees_skipped,
    })
}

fn summary_text(s: &DiffSummary, metadata_listed: bool) -> String {
    let mut line = format!(
        "{} added ({}), {} removed ({}), {} modified",
        s.added,
        size(s.bytes_added),
        s.removed,
        size(s.bytes_removed),
        s.modified
    );
    if s.modified > 0 {
        line.push_str(&format!(
            " (data +{} -{}",
            size(s.data_added),
            size(s.data_removed)
        ));
        if s.data_unknown > 0 {
            line.push_str(&format!(", {} files too large to size", s.data_unknown));
        }
        line.push(')');
    }
    line.push_str(&format!(", {} type changed", s.type_changed));
    line.push_str(&format!(", {} metadata only", s.metadata));
    if s.metadata > 0 && !metadata_listed {
        line.push_str(" (--metadata lists them)");
    }
    line
}
