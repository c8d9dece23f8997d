//! `cairn snapshots`: the snapshot list, as a table or JSON.

use anyhow::Result;

use super::{open, print_json};
use crate::Outcome;
use crate::args::{GlobalArgs, SnapshotsArgs};
use crate::output::{lossy, size, snapshot_json, time};

/// Runs `cairn snapshots`.
pub fn run(g: &GlobalArgs, a: &SnapshotsArgs) -> Result<Outcome> {
    let repo = open(g)?;
    let snaps: Vec<_> = repo
        .list_snapshots()?
        .into_iter()
        .filter(|(_, s)| a.host.as_ref().is_none_or(|h| &s.hostname == h))
        .filter(|(_, s)| a.tag.as_ref().is_none_or(|t| s.tags.contains(t)))
        .collect();
    let damaged = repo.damaged_snapshots();
    for (id, why) in &damaged {
        eprintln!(
            "warning: snapshot {} is damaged and not listed: {why}",
            id.0.short()
        );
    }
    let outcome = if damaged.is_empty() {
        Outcome::Ok
    } else {
        Outcome::Warnings
    };
    if g.json {
        return print_json(&serde_json::Value::Array(
            snaps.iter().map(|(id, s)| snapshot_json(id, s)).collect(),
        ))
        .map(|()| outcome);
    }
    println!(
        "{:<8} {:<1}  {:<19}  {:<16}  {:<16}  {:>10}  paths",
        "id", "P", "time", "host", "tags", "size"
    );
    for (id, s) in &snaps {
        let total = s.summary.map_or(0, |x| x.total_bytes);
        let paths = s
            .paths
            .iter()
            .map(|p| lossy(p))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "{:<8} {:<1}  {:<19}  {:<16}  {:<16}  {:>10}  {}",
            id.0.short(),
            if s.protected { "P" } else { "" },
            time(s.time_ns, s.utc_offset),
            s.hostname,
            s.tags.join(","),
            size(total),
            paths
        );
    }
    if !g.quiet {
        let protected = snaps.iter().filter(|(_, s)| s.protected).count();
        if protected > 0 {
            println!(
                "{} snapshots, {protected} protected (P: kept by every `forget` policy; `cairn unprotect` releases)",
                snaps.len()
            );
        } else {
            println!("{} snapshots", snaps.len());
        }
    }
    Ok(outcome)
}
