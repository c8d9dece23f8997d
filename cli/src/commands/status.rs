//! `cairn status`: one line per store (newest complete snapshot, its age against the store's
//! interval, size, last failure) and an exit code for cron and probes: 0 when every store is
//! fresh, 1 when any is overdue, failed or never backed up.

use anyhow::{Result, bail};
use engine::stores::status::{Health, StoreStatus, status};
use serde_json::{Value, json};

use super::print_json;
use crate::Outcome;
use crate::args::{GlobalArgs, StatusArgs};
use crate::configured::open_for;
use crate::output::{duration, local_time, size, time, time_rfc3339};

/// Runs `cairn status`.
pub fn run(g: &GlobalArgs, a: &StatusArgs) -> Result<Outcome> {
    let config = super::config::load(g)?;
    for name in &a.stores {
        if config.store(name).is_none() {
            let known: Vec<&str> = config.stores.iter().map(|s| s.name.as_str()).collect();
            bail!(
                "{} has no store named {name}: its stores are {}",
                config.file.display(),
                known.join(", ")
            );
        }
    }
    let repo = open_for(g, Some(&config))?;
    let snapshots = repo.list_snapshots()?;
    for (id, why) in repo.damaged_snapshots() {
        eprintln!(
            "warning: snapshot {} is damaged and not counted: {why}",
            id.0.short()
        );
    }
    let now = engine::repository::now_ns();
    let stores: Vec<StoreStatus> = status(&config, &snapshots, now)
        .into_iter()
        .filter(|s| a.stores.is_empty() || a.stores.contains(&s.name))
        .collect();
    let alarms = stores.iter().filter(|s| s.health.is_alarm()).count();
    if g.json {
        print_json(&json!({
            "ok": alarms == 0,
            "now": time_rfc3339(now, 0),
            "repository": repo.location(),
            "stores": stores.iter().map(store_json).collect::<Vec<_>>(),
        }))?;
    } else {
        print_table(&stores);
        if !g.quiet {
            println!();
            if alarms == 0 {
                println!(
                    "all {} fresh (as of {})",
                    count(stores.len(), "store is", "stores are"),
                    local_time(now)
                );
            } else {
                println!(
                    "{} of {} need attention (as of {})",
                    alarms,
                    count(stores.len(), "store", "stores"),
                    local_time(now)
                );
            }
        }
    }
    Ok(if alarms == 0 {
        Outcome::Ok
    } else {
        Outcome::Partial
    })
}

fn count(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// What the state column says: the state, and for an overdue or failed store why.
fn state_text(s: &StoreStatus) -> String {
    match s.health {
        Health::Fresh => "fresh".to_owned(),
        Health::Never => "NEVER backed up".to_owned(),
        Health::Overdue => format!("OVERDUE (> {})", duration(s.overdue_after.as_secs())),
        Health::Failed if s.is_overdue() => "FAILED, OVERDUE".to_owned(),
        Health::Failed => "FAILED".to_owned(),
    }
}

fn print_table(stores: &[StoreStatus]) {
    let dash = || "-".to_owned();
    let rows: Vec<[String; 9]> = stores
        .iter()
        .map(|s| {
            [
                s.name.clone(),
                s.kind.to_owned(),
                s.newest
                    .as_ref()
                    .map_or_else(dash, |n| time(n.time_ns, n.utc_offset)),
                s.age.map_or_else(dash, |a| duration(a.as_secs())),
                duration(s.interval.as_secs()),
                s.size.map_or_else(dash, size),
                s.added_stored.map_or_else(dash, size),
                if s.failed_snapshots > 0 {
                    format!("{} ({} failed)", s.snapshots, s.failed_snapshots)
                } else {
                    s.snapshots.to_string()
                },
                state_text(s),
            ]
        })
        .collect();
    let header = [
        "store",
        "type",
        "newest",
        "age",
        "interval",
        "size",
        "added",
        "snapshots",
        "state",
    ];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let mut out = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}"));
            }
        }
        println!("{out}");
    };
    line(&header);
    for r in &rows {
        line(&r.each_ref().map(String::as_str));
    }
    for s in stores {
        if let Some((snap, why)) = &s.last_failure {
            println!();
            println!(
                "{}: the last run failed (snapshot {}, {}): {why}",
                s.name,
                snap.id.0.short(),
                time(snap.time_ns, snap.utc_offset)
            );
        }
    }
}

fn store_json(s: &StoreStatus) -> Value {
    json!({
        "name": s.name,
        "type": s.kind,
        "state": s.health.as_str(),
        "alarm": s.health.is_alarm(),
        "interval_seconds": s.interval.as_secs(),
        "overdue_after_seconds": s.overdue_after.as_secs(),
        "overdue": s.is_overdue(),
        "newest": s.newest.as_ref().map(|n| json!({
            "id": n.id.0.to_hex(),
            "short_id": n.id.0.short(),
            "time": time_rfc3339(n.time_ns, n.utc_offset),
        })),
        "age_seconds": s.age.map(|a| a.as_secs()),
        "size_bytes": s.size,
        "added_bytes": s.added,
        "added_stored_bytes": s.added_stored,
        "last_run_failed": s.last_failure.is_some(),
        "failure": s.last_failure.as_ref().map(|(n, why)| json!({
            "id": n.id.0.to_hex(),
            "short_id": n.id.0.short(),
            "time": time_rfc3339(n.time_ns, n.utc_offset),
            "message": why,
        })),
        "snapshots": s.snapshots,
        "failed_snapshots": s.failed_snapshots,
    })
}
