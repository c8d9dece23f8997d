//! `cairn ls`: the files of a snapshot.

use std::io::Write;

use anyhow::{Context, Result};
use repo_format::NodeKind;

use super::open;
use crate::Outcome;
use crate::args::{GlobalArgs, LsArgs};
use crate::output::{mode_string, node_json};

/// Runs `cairn ls`.
pub fn run(g: &GlobalArgs, a: &LsArgs) -> Result<Outcome> {
    let repo = open(g)?;
    let (_, snap) = repo.resolve_snapshot(&a.snapshot)?;
    let prefix: Vec<u8> = a
        .path
        .as_deref()
        .unwrap_or("")
        .trim_matches('/')
        .as_bytes()
        .to_vec();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if g.json {
        writeln!(out, "[")?;
    }
    let mut first = true;
    engine::ls::walk(&repo, &snap.tree, &mut |path, node| {
        let under = prefix.is_empty()
            || path == prefix.as_slice()
            || (path.starts_with(&prefix) && path.get(prefix.len()) == Some(&b'/'));
        if !under {
            return Ok(());
        }
        // Text shows names as their bytes (as ls and find do), so a name that is not UTF-8
        // can be given back to `dump` or `restore --include`; JSON strings must be Unicode.
        let mut line: Vec<u8> = if g.json {
            let sep = if first { "" } else { "," };
            format!("{sep}{}", node_json(path, node)).into_bytes()
        } else if a.long {
            let mut l = format!(
                "{} {:>5} {:>5} {:>12} {} /",
                mode_string(node),
                node.uid,
                node.gid,
                node.size,
                crate::output::time(node.mtime.sec.saturating_mul(1_000_000_000), 0),
            )
            .into_bytes();
            l.extend_from_slice(path);
            if let NodeKind::Symlink { target } = &node.kind {
                l.extend_from_slice(b" -> ");
                l.extend_from_slice(target);
            }
            l
        } else {
            [b"/", path].concat()
        };
        line.push(b'\n');
        first = false;
        out.write_all(&line)
            .map_err(|e| engine::Error::io("cannot write the listing", e))
    })?;
    if g.json {
        writeln!(out, "]")?;
    }
    out.flush().context("cannot write the listing")?;
    Ok(Outcome::Ok)
}
