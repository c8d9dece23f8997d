//! `cairn repair index|snapshots`.

use anyhow::{Context, Result};
use engine::repair::{repair_index, repair_snapshots};
use serde_json::json;

use super::{open, print_json};
use crate::Outcome;
use crate::args::{GlobalArgs, RepairCommand};

/// Runs `cairn repair …`.
pub fn run(g: &GlobalArgs, cmd: &RepairCommand) -> Result<Outcome> {
    let repo = open(g)?;
    match cmd {
        RepairCommand::Index => {
            let r = repair_index(&repo).context("repair index failed")?;
            if g.json {
                print_json(&json!({
                    "packs_indexed": r.packs_indexed,
                    "blobs_indexed": r.blobs_indexed,
                    "index_files_written": r.index_files_written.iter().map(|i| i.0.to_hex()).collect::<Vec<_>>(),
                    "index_files_removed": r.index_files_removed,
                    "packs_damaged": r.packs_damaged.iter().map(|(p, m)| json!({"pack": p.0.to_hex(), "error": m})).collect::<Vec<_>>(),
                }))?;
            } else {
                for (p, m) in &r.packs_damaged {
                    eprintln!(
                        "warning: pack {}: {m}; its old index entries were kept",
                        p.0.short()
                    );
                }
                if !g.quiet {
                    eprintln!(
                        "index rebuilt: {} packs, {} blobs in {} new index files; {} old index files removed; {} damaged packs",
                        r.packs_indexed,
                        r.blobs_indexed,
                        r.index_files_written.len(),
                        r.index_files_removed,
                        r.packs_damaged.len()
                    );
                }
            }
            Ok(if r.packs_damaged.is_empty() {
                Outcome::Ok
            } else {
                Outcome::Warnings
            })
        }
        RepairCommand::Snapshots { dry_run } => {
            let r = repair_snapshots(&repo, *dry_run).context("repair snapshots failed")?;
            if g.json {
                print_json(&json!({
                    "checked": r.checked,
                    "dry_run": dry_run,
                    "repaired": r.repaired.iter().map(|s| json!({
                        "original": s.original.0.to_hex(),
                        "repaired": s.repaired.map(|i| i.0.to_hex()),
                        "removed": s.removed,
                    })).collect::<Vec<_>>(),
                    "unreadable": r.unreadable.iter().map(|(i, m)| json!({"snapshot": i.0.to_hex(), "error": m})).collect::<Vec<_>>(),
                }))?;
            } else {
                for s in &r.repaired {
                    match s.repaired {
                        Some(new) => eprintln!(
                            "snapshot {} -> repaired as {}:",
                            s.original.0.short(),
                            new.0.short()
                        ),
                        None => eprintln!("snapshot {} would be repaired:", s.original.0.short()),
                    }
                    for line in &s.removed {
                        eprintln!("  {line}");
                    }
                }
                for (i, m) in &r.unreadable {
                    eprintln!(
                        "warning: snapshot {} cannot be read ({m}); nothing to repair it from",
                        i.0.short()
                    );
                }
                if !g.quiet {
                    let verb = if *dry_run {
                        "would be repaired"
                    } else {
                        "repaired"
                    };
                    eprintln!(
                        "{} snapshots checked, {} {verb} (originals kept: forget them when you no longer need them), {} unreadable",
                        r.checked,
                        r.repaired.len(),
                        r.unreadable.len()
                    );
                }
            }
            Ok(if r.unreadable.is_empty() {
                Outcome::Ok
            } else {
                Outcome::Warnings
            })
        }
    }
}
