//! `cairn forget`: removes snapshots a retention policy does not keep, or those named by id;
//! prints per group each snapshot, kept or removed, and the rules that decided it. With stores
//! (`--store`, or a cairn.toml and no rules), each store is a group with its own retention
//! ([`engine::stores::forget`]).

use anyhow::{Result, bail};
use engine::forget::{EMPTY_POLICY, ForgetReport, forget, forget_ids};
use engine::retention::{GroupKey, KeepPolicy};
use engine::stores::forget::{Rules, forget_stores};
use serde_json::{Value, json};

use super::print_json;
use crate::Outcome;
use crate::args::{ForgetArgs, GlobalArgs};
use crate::configured::{open_for, try_load};
use crate::output::{lossy, snapshot_json, time};

/// The policy the `--keep-*` options give.
fn policy(a: &ForgetArgs) -> KeepPolicy {
    KeepPolicy {
        last: a.keep_last,
        hourly: a.keep_hourly,
        daily: a.keep_daily,
        weekly: a.keep_weekly,
        monthly: a.keep_monthly,
        yearly: a.keep_yearly,
        within: a.keep_within,
        within_hourly: a.keep_within_hourly,
        within_daily: a.keep_within_daily,
        within_weekly: a.keep_within_weekly,
        within_monthly: a.keep_within_monthly,
        within_yearly: a.keep_within_yearly,
        tags: a.keep_tags.clone(),
    }
}

/// Runs `cairn forget`.
pub fn run(g: &GlobalArgs, a: &ForgetArgs) -> Result<Outcome> {
    let policy = policy(a);
    if !a.snapshots.is_empty() && !policy.is_empty() {
        bail!(
            "give either snapshot ids or --keep-* rules, not both: named snapshots are removed \
             whatever the rules say"
        );
    }
    let now = i64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap_or(i64::MAX);
    // By store: --store given, or no rules and no ids with a cairn.toml to take them from.
    let config = if !a.stores.is_empty() || (a.snapshots.is_empty() && policy.is_empty()) {
        try_load(g)?
    } else {
        None
    };
    let by_store = !a.stores.is_empty() || config.is_some();
    if a.snapshots.is_empty() && policy.is_empty() && config.is_none() {
        bail!(
            "{EMPTY_POLICY}, or --store NAME with a cairn.toml whose stores have retention (none \
             was found: pass --config PATH or set CAIRN_CONFIG)"
        );
    }
    let repo = open_for(g, config.as_ref())?;
    let mut untouched = None;
    let report = if by_store {
        let rules = if policy.is_empty() {
            Rules::Own
        } else {
            Rules::Given(&policy)
        };
        let r = forget_stores(&repo, config.as_ref(), &a.stores, rules, a.dry_run, now)?;
        untouched = Some((r.without_store, r.other_stores));
        r.report
    } else if a.snapshots.is_empty() {
        forget(&repo, &policy, a.group_by, a.dry_run, now)?
    } else {
        forget_ids(&repo, &a.snapshots, a.dry_run)?
    };
    for (id, why) in &report.damaged {
        eprintln!(
            "warning: snapshot {} is damaged and was left alone: {why}; name it to remove it",
            id.0.short()
        );
    }
    let outcome = if report.damaged.is_empty() {
        Outcome::Ok
    } else {
        Outcome::Warnings
    };
    if g.json {
        let mut v = report_json(&report);
        if let Some((without, others)) = &untouched {
            v["untouched"] = json!({
                "without_store": without,
                "stores": others.iter().map(|(n, c)| json!({"store": n, "snapshots": c})).collect::<Vec<_>>(),
            });
        }
        print_json(&v)?;
        return Ok(outcome);
    }
    print_text(&report, g.quiet);
    if let Some((without, others)) = &untouched
        && !g.quiet
    {
        if *without > 0 {
            println!(
                "left alone: {without} snapshots that belong to no store (forget them with \
                 --keep-* rules and without --store)"
            );
        }
        for (name, n) in others {
            println!("left alone: {n} snapshots of store {name} (not selected)");
        }
    }
    Ok(outcome)
}

fn key_text(k: &GroupKey) -> String {
    let mut parts = Vec::new();
    if let Some(s) = &k.store {
        parts.push(format!("store {s}"));
    }
    if let Some(h) = &k.host {
        parts.push(format!("host {h}"));
    }
    if let Some(p) = &k.paths {
        let p: Vec<String> = p.iter().map(|p| lossy(p)).collect();
        parts.push(format!("paths [{}]", p.join(", ")));
    }
    if let Some(t) = &k.tags {
        parts.push(format!("tags [{}]", t.join(", ")));
    }
    parts.join(", ")
}

fn print_text(report: &ForgetReport, quiet: bool) {
    for (n, grp) in report.groups.iter().enumerate() {
        if n > 0 {
            println!();
        }
        let key = key_text(&grp.key);
        if !key.is_empty() {
            println!("{key}:");
        }
        println!("{:<8}  {:<19}  {:<7}  reasons", "id", "time", "action");
        for e in &grp.entries {
            let when = e
                .snapshot
                .as_ref()
                .map_or_else(|| "?".to_string(), |s| time(s.time_ns, s.utc_offset));
            let action = match (e.decision.keep, report.dry_run) {
                (true, _) => "keep",
                (false, true) => "remove",
                (false, false) => "removed",
            };
            println!(
                "{:<8}  {:<19}  {:<7}  {}",
                e.id.0.short(),
                when,
                action,
                e.decision.reasons.join("; ")
            );
        }
    }
    if !quiet {
        if report.dry_run {
            println!(
                "dry run: would keep {}, remove {} snapshots",
                report.kept(),
                report.removed()
            );
        } else {
            println!(
                "kept {}, removed {} snapshots (run `cairn prune` to free their data)",
                report.kept(),
                report.removed()
            );
        }
    }
}

fn report_json(report: &ForgetReport) -> Value {
    let groups: Vec<Value> = report
        .groups
        .iter()
        .map(|grp| {
            let snapshots: Vec<Value> = grp
                .entries
                .iter()
                .map(|e| {
                    let mut v = match &e.snapshot {
                        Some(s) => snapshot_json(&e.id, s),
                        None => json!({"id": e.id.0.to_hex(), "short_id": e.id.0.short()}),
                    };
                    v["keep"] = Value::Bool(e.decision.keep);
                    v["reasons"] = json!(e.decision.reasons);
                    v
                })
                .collect();
            json!({
                "group": {
                    "store": grp.key.store,
                    "host": grp.key.host,
                    "paths": grp.key.paths.as_ref().map(|p| p.iter().map(|p| lossy(p)).collect::<Vec<_>>()),
                    "tags": grp.key.tags,
                },
                "snapshots": snapshots,
            })
        })
        .collect();
    json!({
        "dry_run": report.dry_run,
        "kept": report.kept(),
        "removed": report.removed(),
        "groups": groups,
        "damaged": report.damaged.iter().map(|(id, why)| json!({"id": id.0.to_hex(), "error": why})).collect::<Vec<_>>(),
    })
}
