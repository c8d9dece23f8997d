//! Shared formatting: sizes, times, and the JSON shape of snapshots and nodes.

use std::fmt::Write as _;

use repo_format::{Node, NodeKind, Snapshot, SnapshotId, SnapshotStatus, Summary};
use serde_json::{Value, json};

/// A byte count for people: `1.5 GiB`.
pub fn size(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A snapshot time in the zone it was taken in: `2026-11-22 01:35:07`.
pub fn time(ns: i64, utc_offset: i32) -> String {
    let Ok(ts) = jiff::Timestamp::from_nanosecond(i128::from(ns)) else {
        return format!("@{ns}ns");
    };
    let offset = jiff::tz::Offset::from_seconds(utc_offset).unwrap_or(jiff::tz::Offset::UTC);
    ts.to_zoned(jiff::tz::TimeZone::fixed(offset))
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// RFC 3339 with the snapshot's offset, for JSON.
pub fn time_rfc3339(ns: i64, utc_offset: i32) -> String {
    let Ok(ts) = jiff::Timestamp::from_nanosecond(i128::from(ns)) else {
        return String::new();
    };
    let offset = jiff::tz::Offset::from_seconds(utc_offset).unwrap_or(jiff::tz::Offset::UTC);
    ts.to_zoned(jiff::tz::TimeZone::fixed(offset))
        .strftime("%Y-%m-%dT%H:%M:%S%.9f%:z")
        .to_string()
}

/// A time in this machine's zone, with the zone's abbreviation: `2026-11-22 13:35:07 CET`.
pub fn local_time(ns: i64) -> String {
    let Ok(ts) = jiff::Timestamp::from_nanosecond(i128::from(ns)) else {
        return format!("@{ns}ns");
    };
    ts.to_zoned(jiff::tz::TimeZone::system())
        .strftime("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// A duration in whole seconds for people: `12h`, `1d12h`, `1m30s`, `0s`.
pub fn duration(secs: u64) -> String {
    let mut out = String::new();
    let mut rest = secs;
    for (unit, len) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        let n = rest / len;
        rest %= len;
        if n > 0 {
            let _ = write!(out, "{n}{unit}");
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

/// Bytes that are usually UTF-8 (paths, names), shown lossily.
pub fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The summary as JSON.
pub fn summary_json(s: &Summary) -> Value {
    json!({
        "start": time_rfc3339(s.start_ns, 0),
        "end": time_rfc3339(s.end_ns, 0),
        "duration_seconds": (s.end_ns - s.start_ns) as f64 / 1e9,
        "files_new": s.files_new,
        "files_changed": s.files_changed,
        "files_unmodified": s.files_unmodified,
        "dirs": s.dirs,
        "total_files": s.total_files,
        "total_bytes": s.total_bytes,
        "bytes_read": s.bytes_read,
        "blobs_added": s.blobs_added,
        "data_added": s.data_added_raw,
        "data_added_stored": s.data_added_stored,
        "warnings": s.warnings,
    })
}

/// A snapshot as JSON: what `snapshots --json` lists and `cat snapshot` prints.
pub fn snapshot_json(id: &SnapshotId, s: &Snapshot) -> Value {
    json!({
        "id": id.0.to_hex(),
        "short_id": id.0.short(),
        "time": time_rfc3339(s.time_ns, s.utc_offset),
        "host": s.hostname,
        "username": s.username,
        "tags": s.tags,
        "paths": s.paths.iter().map(|p| lossy(p)).collect::<Vec<_>>(),
        "tree": s.tree.0.to_hex(),
        "parent": s.parent.map(|p| p.0.to_hex()),
        "status": match s.status { SnapshotStatus::Complete => "complete", _ => "failed" },
        "failure": s.failure,
        "store": s.store,
        "protected": s.protected,
        "copied_from": s.copied_from.map(|p| p.0.to_hex()),
        "chunker": s.chunker.as_ref().map(|c| json!({"profile": c.name, "min": c.params.min, "avg": c.params.avg, "max": c.params.max})),
        "program": s.program,
        "summary": s.summary.as_ref().map(summary_json),
    })
}

/// The kind of a node as a word.
pub fn kind_name(k: &NodeKind) -> &'static str {
    match k {
        NodeKind::File { .. } => "file",
        NodeKind::Dir { .. } => "dir",
        NodeKind::Symlink { .. } => "symlink",
        NodeKind::Fifo => "fifo",
        NodeKind::CharDevice { .. } => "chardev",
        NodeKind::BlockDevice { .. } => "blockdev",
        NodeKind::Socket => "socket",
    }
}

/// A node as JSON (for `ls --json`).
pub fn node_json(path: &[u8], n: &Node) -> Value {
    let mut v = json!({
        "path": lossy(path),
        "name": lossy(&n.name),
        "type": kind_name(&n.kind),
        "mode": format!("{:04o}", n.mode),
        "uid": n.uid,
        "gid": n.gid,
        "size": n.size,
        "mtime": time_rfc3339(n.mtime.sec.saturating_mul(1_000_000_000).saturating_add(i64::from(n.mtime.nsec)), 0),
    });
    if let NodeKind::Symlink { target } = &n.kind {
        v["target"] = Value::String(lossy(target));
    }
    v
}

/// `drwxr-xr-x`-style mode string.
pub fn mode_string(n: &Node) -> String {
    let t = match n.kind {
        NodeKind::Dir { .. } => 'd',
        NodeKind::Symlink { .. } => 'l',
        NodeKind::Fifo => 'p',
        NodeKind::CharDevice { .. } => 'c',
        NodeKind::BlockDevice { .. } => 'b',
        NodeKind::Socket => 's',
        NodeKind::File { .. } => '-',
    };
    let mut s = String::with_capacity(10);
    s.push(t);
    for shift in [6, 3, 0] {
        let bits = (n.mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

#[cfg(test)]
mod tests {
    use super::duration;

    #[test]
    fn durations_for_people() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(30), "30s");
        assert_eq!(duration(90), "1m30s");
        assert_eq!(duration(43_200), "12h");
        assert_eq!(duration(129_600), "1d12h");
        assert_eq!(duration(2_592_000), "30d");
    }
}
