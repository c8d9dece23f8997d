//! `cairn restore --store NAME` and `cairn restore --all`: stores of cairn.toml back where they
//! belong (see [`engine::stores::restore`]). The options are checked against every store
//! before the repository is opened: a wrong combination is a usage error (exit 2) that changed
//! nothing.

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use engine::progress::Progress;
use engine::stores::restore::{
    RestoreAllOptions, RestoreAllReport, Restored, StoreOutcome, StoreRestore, StoreRestoreOptions,
    check_options, plan_all, restore_all, restore_store,
};
use serde_json::{Value, json};

use crate::Outcome;
use crate::args::{GlobalArgs, RestoreArgs};
use crate::commands::config::load;
use crate::commands::print_json;
use crate::configured::{open_for, usage_exit};
use crate::output::{size, time, time_rfc3339};
use crate::progress::TermProgress;

/// Runs `cairn restore --store NAME` or `cairn restore --all`.
pub fn run(g: &GlobalArgs, a: &RestoreArgs) -> Result<Outcome> {
    let config = load(g)?;
    let Some(name) = &a.store else {
        return all(g, a, &config);
    };
    let Some(store) = config.store(name) else {
        let known: Vec<&str> = config.stores.iter().map(|s| s.name.as_str()).collect();
        usage_exit(
            "restore",
            format!(
                "{} has no store named {name}: its stores are {}",
                config.file.display(),
                known.join(", ")
            ),
        );
    };
    let opts = StoreRestoreOptions {
        snapshot: a.store_snapshot.clone(),
        target: a.target.clone(),
        in_place: a.in_place,
        verify: a.verify,
    };
    if let Err(e) = check_options(store, &opts) {
        usage_exit("restore", e);
    }
    let repo = open_for(g, Some(&config))?;
    let term = TermProgress::new("restore", g.quiet || g.json);
    let progress = Cumulative::new(&term);
    let started = std::time::Instant::now();
    let result = restore_store(&repo, store, &opts, &progress);
    term.finish();
    let r = result.with_context(|| format!("cannot restore store {name}"))?;
    if g.json {
        let mut v = restored_json(&r);
        v["seconds"] = json!(started.elapsed().as_secs_f64());
        print_json(&v)?;
    } else {
        print_problems(&r);
        if !g.quiet {
            eprintln!(
                "{} in {:.1}s",
                restored_text(&r),
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(outcome(&r))
}

fn all(g: &GlobalArgs, a: &RestoreArgs, config: &engine::stores::Config) -> Result<Outcome> {
    let opts = RestoreAllOptions {
        target: a.target.clone(),
        in_place: a.in_place,
        keep_going: a.keep_going,
        verify: a.verify,
    };
    if let Err(e) = plan_all(config, &opts) {
        usage_exit("restore", e);
    }
    let repo = open_for(g, Some(config))?;
    let term = TermProgress::new("restore", g.quiet || g.json);
    let progress = Cumulative::new(&term);
    let text = !g.json;
    let mut on_done = |o: &StoreOutcome| {
        if !text {
            return;
        }
        let line = match &o.result {
            Ok(r) => {
                print_problems(r);
                format!(
                    "{}: {}",
                    if r.is_complete() { "ok" } else { "INCOMPLETE" },
                    restored_text(r)
                )
            }
            Err(e) => format!(
                "FAILED: store {}: {}",
                o.store,
                engine::restorer::error_chain(e)
            ),
        };
        term.note(&line);
    };
    let report = restore_all(&repo, config, &opts, &progress, &mut on_done);
    term.finish();
    let report = report.context("cannot restore the stores")?;
    if g.json {
        print_json(&all_json(&report))?;
    } else if !g.quiet || !report.is_ok() {
        eprintln!("{}", all_summary(&report, opts.keep_going));
    }
    if !report.is_ok() {
        return Ok(Outcome::Partial);
    }
    let warnings = report
        .outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().ok())
        .any(|r| outcome(r) == Outcome::Warnings);
    Ok(if warnings {
        Outcome::Warnings
    } else {
        Outcome::Ok
    })
}

/// The exit outcome of one store restored without error.
fn outcome(r: &StoreRestore) -> Outcome {
    match &r.restored {
        Restored::Directory { summary, .. } if !summary.failed.is_empty() => Outcome::Partial,
        Restored::Directory { summary, .. } if !summary.warnings.is_empty() => Outcome::Warnings,
        _ => Outcome::Ok,
    }
}

/// Files of a directory store that failed or were skipped, one line each on stderr.
fn print_problems(r: &StoreRestore) {
    if let Restored::Directory { summary, .. } = &r.restored {
        for (p, m) in &summary.failed {
            eprintln!("error: {}: {m}", p.display());
        }
        for (p, m) in &summary.warnings {
            eprintln!("warning: {}: {m}", p.display());
        }
    }
}

/// `store postgres, snapshot 1a2b3c4d (2026-11-22 01:35:07): 1.2 GiB piped into `pg_restore …``.
fn restored_text(r: &StoreRestore) -> String {
    let head = format!(
        "store {}, snapshot {} ({})",
        r.store,
        r.snapshot.id.0.short(),
        time(r.snapshot.time_ns, r.snapshot.utc_offset)
    );
    match &r.restored {
        Restored::Piped { command, bytes } => {
            format!("{head}: {} piped into `{command}`", size(*bytes))
        }
        Restored::File { path, bytes } => {
            format!("{head}: wrote {} ({})", path.display(), size(*bytes))
        }
        Restored::Directory { paths, summary } => {
            let to: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            let mut line = format!(
                "{head}: {} files, {} dirs, {} symlinks, {} to {}; {} failed, {} warnings",
                summary.files,
                summary.dirs,
                summary.symlinks,
                size(summary.bytes),
                to.join(", "),
                summary.failed.len(),
                summary.warnings.len()
            );
            if summary.verified > 0 {
                line.push_str(&format!("; {} files verified", summary.verified));
            }
            line
        }
    }
}

fn restored_json(r: &StoreRestore) -> Value {
    let mut v = json!({
        "store": r.store,
        "ok": r.is_complete(),
        "snapshot_id": r.snapshot.id.0.to_hex(),
        "snapshot_time": time_rfc3339(r.snapshot.time_ns, r.snapshot.utc_offset),
    });
    match &r.restored {
        Restored::Piped { command, bytes } => {
            v["action"] = json!("piped");
            v["command"] = json!(command.argv());
            v["bytes"] = json!(bytes);
        }
        Restored::File { path, bytes } => {
            v["action"] = json!("file");
            v["path"] = json!(path.display().to_string());
            v["bytes"] = json!(bytes);
        }
        Restored::Directory { paths, summary: s } => {
            v["action"] = json!("directory");
            v["paths"] = json!(
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
            );
            v["bytes"] = json!(s.bytes);
            v["files"] = json!(s.files);
            v["dirs"] = json!(s.dirs);
            v["symlinks"] = json!(s.symlinks);
            v["verified"] = json!(s.verified);
            v["failed"] = json!(
                s.failed
                    .iter()
                    .map(|(p, m)| json!({"path": p.display().to_string(), "error": m}))
                    .collect::<Vec<_>>()
            );
            v["warnings"] = json!(
                s.warnings
                    .iter()
                    .map(|(p, m)| json!({"path": p.display().to_string(), "message": m}))
                    .collect::<Vec<_>>()
            );
        }
    }
    v
}

fn all_json(report: &RestoreAllReport) -> Value {
    let stores: Vec<Value> = report
        .outcomes
        .iter()
        .map(|o| match &o.result {
            Ok(r) => restored_json(r),
            Err(e) => json!({
                "store": o.store,
                "ok": false,
                "error": engine::restorer::error_chain(e),
            }),
        })
        .collect();
    json!({
        "ok": report.is_ok(),
        "stores": stores,
        "not_attempted": report.skipped,
    })
}

/// `restored 3 of 5 stores; failed: redis; not attempted (after the failure): n8n`.
fn all_summary(report: &RestoreAllReport, keep_going: bool) -> String {
    let total = report.outcomes.len() + report.skipped.len();
    let ok = report.outcomes.iter().filter(|o| o.is_ok()).count();
    let mut line = format!("restored {ok} of {total} stores");
    let failed: Vec<&str> = report
        .outcomes
        .iter()
        .filter(|o| !o.is_ok())
        .map(|o| o.store.as_str())
        .collect();
    if !failed.is_empty() {
        line.push_str(&format!("; failed: {}", failed.join(", ")));
    }
    if !report.skipped.is_empty() {
        line.push_str(&format!(
            "; not attempted after the failure: {} (--keep-going restores them anyway)",
            report.skipped.join(", ")
        ));
    } else if !failed.is_empty() && keep_going {
        line.push_str(" (--keep-going: the others were restored)");
    }
    line
}

/// A [`Progress`] over several restores in a row: each one's total is added to what is done,
/// so the bar does not run past its end.
struct Cumulative<'a> {
    inner: &'a TermProgress,
    done: AtomicU64,
}

impl<'a> Cumulative<'a> {
    fn new(inner: &'a TermProgress) -> Self {
        Cumulative {
            inner,
            done: AtomicU64::new(0),
        }
    }
}

impl Progress for Cumulative<'_> {
    fn shows_totals(&self) -> bool {
        self.inner.shows_totals()
    }

    fn set_total(&self, files: u64, bytes: u64) {
        self.inner
            .set_total(files, self.done.load(Ordering::Relaxed) + bytes);
    }

    fn file_started(&self, path: &std::path::Path) {
        self.inner.file_started(path);
    }

    fn file_done(&self) {
        self.inner.file_done();
    }

    fn bytes_done(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
        self.inner.bytes_done(n);
    }

    fn warning(&self, path: &std::path::Path, message: &str) {
        self.inner.warning(path, message);
    }
}
