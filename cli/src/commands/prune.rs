//! `cairn prune`: runs the engine's two-phase prune and reports what the sweep deleted, which
//! plans still wait, and what the new plan marks (as text, or one JSON object with `--json`).
//!
//! Warnings go to stderr (inside the JSON object with `--json`) and make the exit code 3.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use engine::prune::sweep::SweepReport;
use engine::prune::{PruneOptions, PruneReport, prune};
use serde_json::{Value, json};

use super::{open, print_json};
use crate::Outcome;
use crate::args::{GlobalArgs, PruneArgs};
use crate::output::{duration, local_time, size, time_rfc3339};
use crate::progress::TermProgress;

/// Runs `cairn prune`.
pub fn run(g: &GlobalArgs, a: &PruneArgs) -> Result<Outcome> {
    let opts = PruneOptions {
        dry_run: a.dry_run,
        max_unused: a.max_unused,
        max_repack_bytes: a.max_repack_size,
        grace: a.grace,
        ..PruneOptions::default()
    };
    let repo = open(g)?;
    let progress = TermProgress::new("prune", g.quiet || g.json);
    let result = prune(&repo, &opts, &progress);
    progress.finish();
    let report = result.with_context(|| format!("prune of {} failed", repo.location()))?;
    if g.json {
        print_json(&report_json(&report))?;
    } else {
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
        if !g.quiet {
            for line in summary(&report) {
                println!("{line}");
            }
        }
    }
    Ok(if report.warnings.is_empty() {
        Outcome::Ok
    } else {
        Outcome::Warnings
    })
}

/// `1 pack`, `3 packs`.
fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The human summary, one line per item.
fn summary(r: &PruneReport) -> Vec<String> {
    let dry = r.dry_run;
    let grace = duration(r.grace_secs);
    let mut lines = Vec::new();
    if dry {
        lines.push("dry run: nothing was changed".to_owned());
    }
    if r.superseded_index_files > 0 {
        lines.push(format!(
            "{} {} left by an interrupted prune",
            if dry { "would remove" } else { "removed" },
            plural(r.superseded_index_files, "superseded index file")
        ));
    }

    // Phase 2 of earlier runs: the sweep.
    let s = &r.sweep;
    if s.plans > 0 {
        let mut line = format!(
            "{} {} marked at least {grace} ago: {} {}, {} {}",
            if dry { "would sweep" } else { "swept" },
            plural(s.plans, "plan"),
            if dry { "delete" } else { "deleted" },
            plural(s.packs_deleted, "pack"),
            if dry { "free" } else { "freed" },
            size(s.bytes_freed)
        );
        if s.packs_kept > 0 {
            let _ = write!(
                line,
                "; {} {} because snapshots saved since need them",
                if dry { "keep" } else { "kept" },
                plural(s.packs_kept, "marked pack")
            );
        }
        lines.push(line);
    } else if r.waiting.is_empty() {
        lines.push("no earlier plan to sweep".to_owned());
    }
    for (id, due_ns, packs) in &r.waiting {
        lines.push(format!(
            "plan {} ({}) is still in its grace period: a prune run after {} deletes its packs",
            short(id),
            plural(*packs, "pack"),
            local_time(*due_ns)
        ));
    }

    // Phase 1 of this run: the new plan.
    let marked = r.marked_unused + r.marked_repacked + r.marked_unindexed;
    if marked == 0 {
        lines.push(if dry {
            "nothing new would be marked".to_owned()
        } else {
            "nothing new to mark".to_owned()
        });
    } else {
        let mut kinds = Vec::new();
        if r.marked_unused > 0 {
            kinds.push(format!("{} unused", r.marked_unused));
        }
        if r.marked_repacked > 0 {
            kinds.push(format!("{} repacked", r.marked_repacked));
        }
        if r.marked_unindexed > 0 {
            kinds.push(format!("{} named by no index", r.marked_unindexed));
        }
        let head = match (&r.plan, dry) {
            (Some(id), _) => format!("new plan {} marks", short(id)),
            (None, true) => "a new plan would mark".to_owned(),
            (None, false) => "marked".to_owned(),
        };
        lines.push(format!(
            "{head} {} ({}), {} to free",
            plural(marked, "pack"),
            kinds.join(", "),
            size(r.bytes_to_free)
        ));
        if r.repacked_blobs > 0 || r.repacked_bytes > 0 {
            lines.push(if dry {
                format!(
                    "would copy {} of still-needed data out of the packs it repacks",
                    size(r.repacked_bytes)
                )
            } else {
                format!(
                    "repacked {} blobs ({}) still needed into new packs",
                    r.repacked_blobs,
                    size(r.repacked_bytes)
                )
            });
        }
        lines.push(match r.plan_due_ns {
            Some(due) => format!(
                "run prune again after {} to delete them (grace period {grace})",
                local_time(due)
            ),
            None => format!(
                "a prune run at least {grace} (the grace period) after the plan is written would delete them"
            ),
        });
    }
    if r.young_packs > 0 {
        lines.push(format!(
            "skipped {} written within the grace period ({grace}): a backup may still need them",
            plural(r.young_packs, "young pack")
        ));
    }
    lines.push(format!(
        "before this run: {}, {} ({}); packs no plan had marked held {} that snapshots need and {} they do not",
        plural(r.snapshots, "snapshot"),
        plural(r.packs_total, "pack"),
        size(r.bytes_total),
        size(r.used_bytes),
        size(r.unused_bytes)
    ));
    lines
}

/// The first 8 hex digits of an id.
fn short(hex: &str) -> &str {
    hex.get(..8).unwrap_or(hex)
}

/// A time as both RFC 3339 (UTC) and Unix ns: `{"name": "...", "name_ns": n}`.
fn put_time(v: &mut Value, name: &str, ns: Option<i64>) {
    v[name] = ns.map_or(Value::Null, |ns| Value::String(time_rfc3339(ns, 0)));
    v[format!("{name}_ns")] = ns.map_or(Value::Null, Value::from);
}

fn sweep_json(s: &SweepReport) -> Value {
    // Destructured so that a new field is a compile error here, not a silent omission.
    let SweepReport {
        plans,
        packs_deleted,
        bytes_freed,
        packs_kept,
        index_files_rewritten,
    } = s;
    json!({
        "plans": plans,
        "packs_deleted": packs_deleted,
        "bytes_freed": bytes_freed,
        "packs_kept": packs_kept,
        "index_files_rewritten": index_files_rewritten,
    })
}

/// Every field of the report.
fn report_json(r: &PruneReport) -> Value {
    // Destructured so that a new field is a compile error here, not a silent omission.
    let PruneReport {
        dry_run,
        lease,
        storage_now_ns,
        grace_secs,
        snapshots,
        used_blobs,
        superseded_index_files,
        damaged_plans,
        sweep,
        waiting,
        packs_total,
        bytes_total,
        used_bytes,
        unused_bytes,
        young_packs,
        plan,
        plan_due_ns,
        marked_unused,
        marked_repacked,
        marked_unindexed,
        bytes_to_free,
        repacked_blobs,
        repacked_bytes,
        warnings,
    } = r;
    let waiting: Vec<Value> = waiting
        .iter()
        .map(|(id, due, packs)| {
            let mut w = json!({"plan": id, "packs": packs});
            put_time(&mut w, "due", Some(*due));
            w
        })
        .collect();
    let mut v = json!({
        "dry_run": dry_run,
        "lease": lease,
        "grace_secs": grace_secs,
        "snapshots": snapshots,
        "used_blobs": used_blobs,
        "superseded_index_files": superseded_index_files,
        "damaged_plans": damaged_plans,
        "sweep": sweep_json(sweep),
        "waiting": waiting,
        "packs_total": packs_total,
        "bytes_total": bytes_total,
        "used_bytes": used_bytes,
        "unused_bytes": unused_bytes,
        "young_packs": young_packs,
        "plan": plan,
        "marked_unused": marked_unused,
        "marked_repacked": marked_repacked,
        "marked_unindexed": marked_unindexed,
        "marked_packs": marked_unused + marked_repacked + marked_unindexed,
        "bytes_to_free": bytes_to_free,
        "repacked_blobs": repacked_blobs,
        "repacked_bytes": repacked_bytes,
        "warnings": warnings,
    });
    put_time(&mut v, "storage_now", Some(*storage_now_ns));
    put_time(&mut v, "plan_due", *plan_due_ns);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> PruneReport {
        PruneReport {
            storage_now_ns: 1_800_000_000_000_000_000,
            grace_secs: 43_200,
            snapshots: 2,
            sweep: SweepReport {
                plans: 1,
                packs_deleted: 3,
                bytes_freed: 3 << 20,
                packs_kept: 1,
                index_files_rewritten: 1,
            },
            waiting: vec![("ab".repeat(32), 1_800_000_000_000_000_000, 2)],
            packs_total: 10,
            plan: Some("cd".repeat(32)),
            plan_due_ns: Some(1_800_043_200_000_000_000),
            marked_unused: 2,
            marked_unindexed: 1,
            bytes_to_free: 1 << 20,
            young_packs: 4,
            warnings: vec!["pack x was not repacked".into()],
            ..PruneReport::default()
        }
    }

    #[test]
    fn summary_names_what_was_deleted_waits_and_is_marked() {
        let text = summary(&report()).join("\n");
        for want in [
            "swept 1 plan marked at least 12h ago: deleted 3 packs, freed 3.0 MiB; kept 1 marked pack because snapshots saved since need them",
            "plan abababab (2 packs) is still in its grace period: a prune run after ",
            "new plan cdcdcdcd marks 3 packs (2 unused, 1 named by no index), 1.0 MiB to free",
            "run prune again after ",
            "skipped 4 young packs written within the grace period (12h)",
            "before this run: 2 snapshots, 10 packs (0 B); packs no plan had marked held 0 B",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
        let mut dry = report();
        dry.dry_run = true;
        dry.plan = None;
        dry.plan_due_ns = None;
        let text = summary(&dry).join("\n");
        for want in [
            "dry run: nothing was changed",
            "would sweep 1 plan marked at least 12h ago: delete 3 packs, free 3.0 MiB; keep 1 marked pack",
            "a new plan would mark 3 packs",
            "after the plan is written would delete them",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
    }

    #[test]
    fn json_has_every_field_and_times_both_ways() {
        let v = report_json(&report());
        assert_eq!(v["sweep"]["packs_deleted"], 3);
        assert_eq!(v["waiting"][0]["packs"], 2);
        assert_eq!(v["waiting"][0]["due_ns"], 1_800_000_000_000_000_000i64);
        assert_eq!(
            v["waiting"][0]["due"],
            "2027-01-15T08:00:00.000000000+00:00"
        );
        assert_eq!(v["plan_due_ns"], 1_800_043_200_000_000_000i64);
        assert!(v["plan_due"].as_str().is_some());
        assert_eq!(v["storage_now_ns"], 1_800_000_000_000_000_000i64);
        assert_eq!(v["marked_packs"], 3);
        assert_eq!(v["warnings"][0], "pack x was not repacked");
        let empty = report_json(&PruneReport::default());
        assert_eq!(empty["plan"], Value::Null);
        assert_eq!(empty["plan_due"], Value::Null);
        assert_eq!(empty["plan_due_ns"], Value::Null);
    }
}
