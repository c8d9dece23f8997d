//! `cairn run [--store NAME]... [--copy] [--metrics-file PATH]`: backs up the stores of
//! cairn.toml into its repository (engine::stores::run), prints a table (or `--json`), copies
//! the new snapshots to the `[[copy]]` repositories, and writes Prometheus metrics.
//!
//! Progress and the dump commands' standard error go to stderr, each line of a command
//! prefixed with its store's name; the table goes to stdout. Exit 1 when a store or a copy
//! failed, 3 when a store had warnings, else 0.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use engine::copy::{CopyReport, copy};
use engine::progress::Progress;
use engine::repository::Repository;
use engine::stores::metrics::{backup_metrics, check_metrics, unreachable_metrics, write_atomic};
use engine::stores::run::{RunProgress, RunReport, StoreRun, run_stores};
use engine::stores::{Config, Store, open_copy};
use serde_json::{Value, json};

use super::config::load;
use super::print_json;
use crate::Outcome;
use crate::args::{GlobalArgs, RunArgs};
use crate::configured::{open_for, usage_exit};
use crate::output::size;
use crate::progress::TermProgress;

/// Runs `cairn run`.
pub fn run(g: &GlobalArgs, a: &RunArgs) -> Result<Outcome> {
    let config = load(g)?;
    // Unknown store names are a usage error (exit 2), found before anything runs.
    if let Err(e) = engine::stores::run::select(&config, &a.stores) {
        usage_exit("run", e);
    }
    let repo = match open_for(g, Some(&config)) {
        Ok(repo) => repo,
        Err(e) => {
            if let Some(path) = &a.metrics_file {
                let names: Vec<&str> = engine::stores::run::select(&config, &a.stores)?
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect();
                if let Err(m) = write_atomic(path, &unreachable_metrics(&names)) {
                    eprintln!("warning: {}", engine::restorer::error_chain(&m));
                }
            }
            return Err(e);
        }
    };
    let progress = TermRun {
        quiet: g.quiet || g.json,
    };
    let report = run_stores(&config, &repo, &a.stores, &progress)?;
    let copies = if a.copy {
        copy_all(g, &config, &repo, &report)
    } else {
        Vec::new()
    };
    if g.json {
        print_json(&json!({
            "repository": repo.location(),
            "stores": report.stores.iter().map(store_json).collect::<Vec<_>>(),
            "copies": copies.iter().map(CopyResult::json).collect::<Vec<_>>(),
        }))?;
    } else {
        print_table(&report);
        print_problems(&report);
        for c in &copies {
            c.print();
        }
    }
    if let Some(path) = &a.metrics_file {
        let snapshots = repo
            .list_snapshots()
            .context("cannot list the snapshots for the metrics file")?;
        write_atomic(path, &backup_metrics(&config, &snapshots, &report))?;
    }
    Ok(
        if report.any_failed() || copies.iter().any(|c| c.result.is_err()) {
            Outcome::Partial
        } else if report.any_warnings() {
            Outcome::Warnings
        } else {
            Outcome::Ok
        },
    )
}

/// A progress bar per store on a terminal, and the stores' command output on stderr.
struct TermRun {
    quiet: bool,
}

impl RunProgress for TermRun {
    fn store_started(&self, store: &Store) -> Box<dyn Progress + '_> {
        Box::new(StoreProgress {
            bar: TermProgress::new(&store.name, self.quiet),
            store: store.name.clone(),
        })
    }

    fn store_finished(&self, run: &StoreRun) {
        if !self.quiet {
            let snapshot = run
                .snapshot
                .map_or_else(String::new, |id| format!(", snapshot {}", id.0.short()));
            eprintln!(
                "{}: {}{snapshot} in {:.1}s",
                run.store,
                run.status.as_str(),
                run.duration.as_secs_f64()
            );
        }
    }
}

/// One store's progress: the bar, and its commands' lines prefixed with the store's name.
struct StoreProgress {
    bar: TermProgress,
    store: String,
}

impl Drop for StoreProgress {
    fn drop(&mut self) {
        self.bar.finish();
    }
}

impl Progress for StoreProgress {
    fn shows_totals(&self) -> bool {
        self.bar.shows_totals()
    }
    fn set_total(&self, files: u64, bytes: u64) {
        self.bar.set_total(files, bytes);
    }
    fn file_started(&self, path: &Path) {
        self.bar.file_started(path);
    }
    fn file_done(&self) {
        self.bar.file_done();
    }
    fn bytes_done(&self, n: u64) {
        self.bar.bytes_done(n);
    }
    fn warning(&self, path: &Path, message: &str) {
        self.bar.warning(path, message);
    }
    fn command_stderr(&self, line: &str) {
        self.bar.note(&format!("{}: {line}", self.store));
    }
}

/// `STORE STATUS SNAPSHOT DURATION READ ADDED STORED`, one line per store.
fn print_table(report: &RunReport) {
    let rows: Vec<[String; 7]> = report
        .stores
        .iter()
        .map(|r| {
            [
                r.store.clone(),
                r.status.as_str().to_owned(),
                r.snapshot.map_or_else(|| "-".to_owned(), |id| id.0.short()),
                format!("{:.1}s", r.duration.as_secs_f64()),
                size(r.bytes_read),
                size(r.bytes_added),
                size(r.bytes_stored),
            ]
        })
        .collect();
    let header = [
        "STORE", "STATUS", "SNAPSHOT", "DURATION", "READ", "ADDED", "STORED",
    ];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            // Names and words left-aligned, figures right-aligned.
            if i < 3 {
                out.push_str(&format!("{cell:<w$}  "));
            } else {
                out.push_str(&format!("{cell:>w$}  "));
            }
        }
        out.trim_end().to_owned()
    };
    println!("{}", line(header.to_vec()));
    for row in &rows {
        println!("{}", line(row.iter().map(String::as_str).collect()));
    }
}

/// Each failed store's error and each store's warnings, on stderr.
fn print_problems(report: &RunReport) {
    for r in &report.stores {
        if let Some(e) = &r.error {
            eprintln!("error: store {}: {e}", r.store);
        }
        for w in &r.warnings {
            eprintln!("warning: store {}: {w}", r.store);
        }
    }
}

fn store_json(r: &StoreRun) -> Value {
    json!({
        "store": r.store,
        "status": r.status.as_str(),
        "snapshot_id": r.snapshot.map(|id| id.0.to_hex()),
        "duration_seconds": r.duration.as_secs_f64(),
        "bytes_read": r.bytes_read,
        "bytes_added": r.bytes_added,
        "bytes_stored": r.bytes_stored,
        "files": r.files,
        "excluded": r.excluded,
        "warnings": r.warnings,
        "error": r.error,
    })
}

/// What copying to one `[[copy]]` repository did.
struct CopyResult {
    name: String,
    location: String,
    result: std::result::Result<CopyReport, String>,
}

impl CopyResult {
    fn json(&self) -> Value {
        let mut v = json!({ "name": self.name, "location": self.location });
        match &self.result {
            Ok(r) => {
                v["copied"] = json!(r.copied.len());
                v["present"] = json!(r.present.len());
                v["bytes_added"] = json!(r.data_added_raw());
                v["bytes_stored"] = json!(r.data_added_stored());
                v["error"] = Value::Null;
            }
            Err(e) => v["error"] = json!(e),
        }
        v
    }

    fn print(&self) {
        match &self.result {
            Ok(r) => eprintln!(
                "copy {} ({}): {} snapshots copied, {} already there, {} added ({} stored)",
                self.name,
                self.location,
                r.copied.len(),
                r.present.len(),
                size(r.data_added_raw()),
                size(r.data_added_stored()),
            ),
            Err(e) => eprintln!("error: copy {} ({}): {e}", self.name, self.location),
        }
    }
}

/// Copies the run's complete snapshots to every `[[copy]]` repository; one that fails does
/// not stop the others.
fn copy_all(
    g: &GlobalArgs,
    config: &Config,
    repo: &Repository,
    report: &RunReport,
) -> Vec<CopyResult> {
    let ids = report.complete_snapshots();
    let cache_dir: Option<PathBuf> = g
        .cache_dir
        .clone()
        .or_else(|| config.repository.cache_dir.clone());
    config
        .copies
        .iter()
        .map(|target| {
            let result = open_copy(target, cache_dir.as_deref()).and_then(|dst| {
                crate::commands::warn_on_rollback(&dst);
                let progress =
                    TermProgress::new(&format!("copy {}", target.name), g.quiet || g.json);
                let r = copy(repo, &dst, &ids, &progress);
                progress.finish();
                r
            });
            CopyResult {
                name: target.name.clone(),
                location: target.location.clone(),
                result: result.map_err(|e| engine::restorer::error_chain(&e)),
            }
        })
        .collect()
}

/// Writes the `cairn check` metrics for `result` (success: the check ran and found no damage)
/// and passes `result` on; a metrics file that cannot be written fails a good check, and is a
/// warning after a failed one (whose own error comes first).
pub fn with_check_metrics(path: &Path, result: Result<Outcome>) -> Result<Outcome> {
    let success = matches!(result, Ok(Outcome::Ok | Outcome::Warnings));
    let now = engine::repository::now_unix();
    match (write_atomic(path, &check_metrics(success, now)), result) {
        (Ok(()), result) => result,
        (Err(e), Ok(_)) => Err(e.into()),
        (Err(e), Err(first)) => {
            eprintln!("warning: {}", engine::restorer::error_chain(&e));
            Err(first)
        }
    }
}
