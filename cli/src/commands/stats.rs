//! `cairn stats`: restore size, unique blobs, deduplication and compression of the selected
//! snapshots (and per snapshot, store or host with `--by`), and the repository's totals.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use engine::repository::Repository;
use engine::stats::{Figures, StatsGroupBy, StatsOptions, StatsReport, stats};
use repo_format::{Snapshot, SnapshotId};
use serde_json::{Value, json};

use super::{open, print_json};
use crate::Outcome;
use crate::args::{GlobalArgs, StatsArgs, StatsBy};
use crate::output::size;

/// Runs `cairn stats`.
pub fn run(g: &GlobalArgs, a: &StatsArgs) -> Result<Outcome> {
    let repo = open(g)?;
    let snaps = select(&repo, a)?;
    let by = a.by.map(|b| match b {
        StatsBy::Snapshot => StatsGroupBy::Snapshot,
        StatsBy::Store => StatsGroupBy::Store,
        StatsBy::Host => StatsGroupBy::Host,
    });
    // Until stores are configured (cairn.toml), a snapshot's store is its host and paths.
    let opts = StatsOptions {
        by,
        stores: Vec::new(),
    };
    let report = stats(&repo, &snaps, &opts, &mut |_, _| {})
        .with_context(|| format!("cannot count the figures of {}", repo.location()))?;
    let missing = report.total.blobs.missing;
    if missing > 0 {
        eprintln!(
            "warning: {missing} blobs the snapshots reference are in no index file, so their sizes are not counted; run `cairn check`"
        );
    }
    if g.json {
        print_json(&report_json(&report, &snaps, a.by))?;
    } else {
        print!("{}", report_text(&report, a.by));
    }
    Ok(if missing > 0 {
        Outcome::Warnings
    } else {
        Outcome::Ok
    })
}

/// The snapshots named (in the order given), else all (oldest first), filtered by host.
fn select(repo: &Repository, a: &StatsArgs) -> Result<Vec<(SnapshotId, Snapshot)>> {
    let snaps = if a.snapshots.is_empty() {
        let all = repo.list_snapshots()?;
        for (id, why) in repo.damaged_snapshots() {
            eprintln!(
                "warning: snapshot {} is damaged and not counted: {why}",
                id.0.short()
            );
        }
        all
    } else {
        let mut named: Vec<(SnapshotId, Snapshot)> = Vec::new();
        for spec in &a.snapshots {
            let found = repo.resolve_snapshot(spec)?;
            if !named.iter().any(|(id, _)| *id == found.0) {
                named.push(found);
            }
        }
        named
    };
    Ok(snaps
        .into_iter()
        .filter(|(_, s)| a.host.as_ref().is_none_or(|h| &s.hostname == h))
        .collect())
}

fn by_name(by: StatsBy) -> &'static str {
    match by {
        StatsBy::Snapshot => "snapshot",
        StatsBy::Store => "store",
        StatsBy::Host => "host",
    }
}

/// `2.50x`, or `-` when there is nothing to divide by.
fn ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_string(), |r| format!("{r:.2}x"))
}

fn figures_text(f: &Figures) -> String {
    let mut s = String::new();
    let rows = [
        ("snapshots", f.snapshots.to_string()),
        (
            "files",
            format!(
                "{} in {} directories ({} other entries)",
                f.size.files, f.size.dirs, f.size.others
            ),
        ),
        ("restore size", size(f.restore_size())),
        (
            "unique blobs",
            format!(
                "{} ({} data, {} trees and content lists)",
                f.unique_blobs(),
                f.blobs.data_blobs,
                f.blobs.tree_blobs
            ),
        ),
        ("raw size", size(f.raw_bytes())),
        ("stored size", size(f.stored_bytes())),
        ("dedup ratio", ratio(f.dedup_ratio())),
        ("compression ratio", ratio(f.compression_ratio())),
        ("space ratio", ratio(f.space_ratio())),
    ];
    for (k, v) in rows {
        let _ = writeln!(s, "{k:<18} {v}");
    }
    s
}

fn report_text(r: &StatsReport, by: Option<StatsBy>) -> String {
    let mut s = figures_text(&r.total);
    if let Some(by) = by {
        let _ = writeln!(s, "\nby {}:", by_name(by));
        let _ = writeln!(
            s,
            "{:<24} {:>9} {:>12} {:>12} {:>7} {:>7} {:>7}",
            by_name(by),
            "snapshots",
            "restore",
            "stored",
            "dedup",
            "compr",
            "space"
        );
        for grp in &r.groups {
            let f = &grp.figures;
            let _ = writeln!(
                s,
                "{:<24} {:>9} {:>12} {:>12} {:>7} {:>7} {:>7}",
                grp.key,
                f.snapshots,
                size(f.restore_size()),
                size(f.stored_bytes()),
                ratio(f.dedup_ratio()),
                ratio(f.compression_ratio()),
                ratio(f.space_ratio())
            );
        }
    }
    let t = &r.repository;
    let _ = writeln!(
        s,
        "\nrepository: {} snapshots, {} packs ({}), {} index files ({})",
        t.snapshots,
        t.packs,
        size(t.pack_bytes),
        t.index_files,
        size(t.index_bytes)
    );
    s
}

fn figures_json(f: &Figures) -> Value {
    json!({
        "snapshots": f.snapshots,
        "files": f.size.files,
        "dirs": f.size.dirs,
        "others": f.size.others,
        "restore_size": f.restore_size(),
        "unique_blobs": f.unique_blobs(),
        "data_blobs": f.blobs.data_blobs,
        "tree_blobs": f.blobs.tree_blobs,
        "raw_bytes": f.raw_bytes(),
        "stored_bytes": f.stored_bytes(),
        "data_raw_bytes": f.blobs.data_raw,
        "data_stored_bytes": f.blobs.data_stored,
        "tree_raw_bytes": f.blobs.tree_raw,
        "tree_stored_bytes": f.blobs.tree_stored,
        "missing_blobs": f.blobs.missing,
        "dedup_ratio": f.dedup_ratio(),
        "compression_ratio": f.compression_ratio(),
        "space_ratio": f.space_ratio(),
    })
}

fn report_json(r: &StatsReport, snaps: &[(SnapshotId, Snapshot)], by: Option<StatsBy>) -> Value {
    let groups: Vec<Value> = r
        .groups
        .iter()
        .map(|grp| {
            let mut v = figures_json(&grp.figures);
            v["key"] = Value::String(grp.key.clone());
            v["snapshot_ids"] = json!(
                grp.snapshots
                    .iter()
                    .map(|id| id.0.to_hex())
                    .collect::<Vec<_>>()
            );
            v
        })
        .collect();
    let t = &r.repository;
    json!({
        "snapshot_ids": snaps.iter().map(|(id, _)| id.0.to_hex()).collect::<Vec<_>>(),
        "total": figures_json(&r.total),
        "by": by.map(by_name),
        "groups": groups,
        "repository": {
            "snapshots": t.snapshots,
            "packs": t.packs,
            "pack_bytes": t.pack_bytes,
            "index_files": t.index_files,
            "index_bytes": t.index_bytes,
        },
    })
}
