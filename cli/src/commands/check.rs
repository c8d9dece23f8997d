//! `cairn check`: verifies the repository and reports damage (exit 1) or none (exit 0).
//!
//! Errors and warnings go to stderr, one line each plus what they affect; the summary line goes
//! to stdout. With `--json`, everything is one JSON object on stdout.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use engine::checker::{CheckOptions, CheckReport, CheckStats, Finding, ReadData, check_where};
use engine::stores::select::{belongs, check_names};
use repo_format::Snapshot;
use serde_json::{Value, json};

use super::print_json;
use crate::Outcome;
use crate::args::{CheckArgs, GlobalArgs};
use crate::configured::{open_for, try_load};
use crate::output::size;
use crate::progress::TermProgress;

/// Runs `cairn check`, then writes `--metrics-file` when given (success: a clean check).
pub fn run(g: &GlobalArgs, a: &CheckArgs) -> Result<Outcome> {
    let result = check(g, a);
    match &a.metrics_file {
        Some(path) => super::run::with_check_metrics(path, result),
        None => result,
    }
}

fn check(g: &GlobalArgs, a: &CheckArgs) -> Result<Outcome> {
    let read_data = match (a.read_data_subset, a.read_data) {
        (Some(subset), _) => subset,
        (None, true) => ReadData::All,
        (None, false) => ReadData::No,
    };
    let config = if a.stores.is_empty() {
        None
    } else {
        try_load(g)?
    };
    let repo = open_for(g, config.as_ref())?;
    let stores = if a.stores.is_empty() {
        Vec::new()
    } else {
        check_names(&a.stores, config.as_ref(), &repo.list_snapshots()?)?
    };
    let select = |s: &Snapshot| belongs(s, &stores);
    let filter: Option<&dyn Fn(&Snapshot) -> bool> = if stores.is_empty() {
        None
    } else {
        Some(&select)
    };
    let progress = TermProgress::new("check", g.quiet || g.json);
    let result = check_where(&repo, &CheckOptions { read_data }, filter, &progress);
    progress.finish();
    let report = result.with_context(|| {
        format!(
            "the check of {} could not be completed (this is not a finding about the repository's contents)",
            repo.location()
        )
    })?;
    if g.json {
        let mut v = report_json(&report, read_data);
        v["stores"] = json!(stores);
        print_json(&v)?;
    } else {
        for f in &report.errors {
            print_finding("error", f);
        }
        for f in &report.warnings {
            print_finding("warning", f);
        }
        if !g.quiet {
            let mut line = summary(&report, read_data);
            if !stores.is_empty() {
                let _ = write!(
                    line,
                    " (data checked for {} of store {})",
                    plural(report.stats.snapshots_checked, "snapshot"),
                    stores.join(", ")
                );
            }
            println!("{line}");
        }
    }
    Ok(if report.is_clean() {
        Outcome::Ok
    } else {
        Outcome::Partial
    })
}

fn print_finding(level: &str, f: &Finding) {
    eprintln!("{level}: {}: {}", f.kind, f.message);
    for a in &f.affects {
        eprintln!("  affects {a}");
    }
    if f.affects_omitted > 0 {
        eprintln!("  … and {} more", f.affects_omitted);
    }
}

/// `no errors found: 3 snapshots, 12 packs, 4,321 blobs; read 2 packs, 30.0 MiB`.
fn summary(r: &CheckReport, read_data: ReadData) -> String {
    let s = &r.stats;
    let mut line = if r.is_clean() {
        "no errors found".to_owned()
    } else {
        format!(
            "{} found (damage: see the messages above)",
            plural(r.errors.len() as u64, "error")
        )
    };
    let _ = write!(
        line,
        ": {}, {}, {}",
        plural(s.snapshots, "snapshot"),
        plural(s.packs, "pack"),
        plural(s.blobs, "blob")
    );
    if read_data.is_enabled() {
        let _ = write!(
            line,
            "; read {} ({}), {}, {} verified",
            plural(s.packs_read, "pack"),
            read_data,
            size(s.bytes_read),
            plural(s.blobs_verified, "blob")
        );
    }
    if !r.warnings.is_empty() {
        let _ = write!(line, "; {}", plural(r.warnings.len() as u64, "warning"));
    }
    line
}

/// `1 pack`, `4,321 blobs`.
fn plural(n: u64, noun: &str) -> String {
    let digits = n.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if n == 1 {
        format!("{grouped} {noun}")
    } else {
        format!("{grouped} {noun}s")
    }
}

fn report_json(r: &CheckReport, read_data: ReadData) -> Value {
    json!({
        "clean": r.is_clean(),
        "read_data": read_data.to_string(),
        "errors": r.errors.iter().map(finding_json).collect::<Vec<_>>(),
        "warnings": r.warnings.iter().map(finding_json).collect::<Vec<_>>(),
        "stats": stats_json(&r.stats),
    })
}

fn finding_json(f: &Finding) -> Value {
    json!({
        "kind": f.kind.as_str(),
        "object": f.object,
        "message": f.message,
        "affects": f.affects,
        "affects_omitted": f.affects_omitted,
    })
}

fn stats_json(s: &CheckStats) -> Value {
    json!({
        "key_files": s.key_files,
        "snapshots": s.snapshots,
        "snapshots_checked": s.snapshots_checked,
        "index_files": s.index_files,
        "packs": s.packs,
        "pack_bytes": s.pack_bytes,
        "pack_headers_checked": s.pack_headers_checked,
        "blobs": s.blobs,
        "trees": s.trees,
        "data_blob_refs": s.data_blob_refs,
        "packs_read": s.packs_read,
        "bytes_read": s.bytes_read,
        "blobs_verified": s.blobs_verified,
    })
}

#[cfg(test)]
mod tests {
    use super::plural;

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(plural(0, "blob"), "0 blobs");
        assert_eq!(plural(1, "blob"), "1 blob");
        assert_eq!(plural(999, "blob"), "999 blobs");
        assert_eq!(plural(4321, "blob"), "4,321 blobs");
        assert_eq!(plural(1_234_567, "pack"), "1,234,567 packs");
    }
}
