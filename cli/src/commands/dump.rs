//! `cairn dump`: one file of a snapshot to standard output (e.g. into `pg_restore`).

use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use anyhow::{Context, Result};
use engine::progress::NoProgress;
use engine::restorer::{dump_content, find_node};

use super::open;
use crate::Outcome;
use crate::args::{DumpArgs, GlobalArgs};

/// Runs `cairn dump`.
pub fn run(g: &GlobalArgs, a: &DumpArgs) -> Result<Outcome> {
    let repo = open(g)?;
    let (id, snap) = repo.resolve_snapshot(&a.snapshot)?;
    let path = a.path.display();
    let node = find_node(&repo, &snap.tree, a.path.as_os_str().as_bytes())
        .with_context(|| format!("cannot dump {path} from snapshot {}", id.0.short()))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    dump_content(&repo, &node, &mut out, &NoProgress)
        .with_context(|| format!("cannot dump {path}"))?;
    out.flush().context("cannot write the output")?;
    Ok(Outcome::Ok)
}
