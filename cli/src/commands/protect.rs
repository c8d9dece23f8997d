//! `cairn protect` / `cairn unprotect`: sets or clears snapshots' protected flag and prints each
//! old id with the id of the snapshot written in its place.

use anyhow::{Context, Result};
use engine::protect::set_protected;
use serde_json::{Value, json};

use super::{open, print_json};
use crate::Outcome;
use crate::args::{GlobalArgs, ProtectArgs};

/// Runs `cairn protect` (`protected`) or `cairn unprotect`.
pub fn run(g: &GlobalArgs, a: &ProtectArgs, protected: bool) -> Result<Outcome> {
    let repo = open(g)?;
    let verb = if protected { "protect" } else { "unprotect" };
    let changes = set_protected(&repo, &a.snapshots, protected)
        .with_context(|| format!("cannot {verb} snapshots in {}", repo.location()))?;
    if g.json {
        print_json(&Value::Array(
            changes
                .iter()
                .map(|c| {
                    json!({
                        "old": c.old.0.to_hex(),
                        "new": c.new.map(|n| n.0.to_hex()),
                        "changed": c.new.is_some(),
                        "protected": protected,
                    })
                })
                .collect(),
        ))?;
        return Ok(Outcome::Ok);
    }
    let done = if protected {
        "protected"
    } else {
        "unprotected"
    };
    for c in &changes {
        match c.new {
            Some(new) => println!("{done} {} -> {} (new id)", c.old.0.short(), new.0.short()),
            None => println!(
                "{} is already {} (unchanged)",
                c.old.0.short(),
                if protected {
                    "protected"
                } else {
                    "not protected"
                }
            ),
        }
    }
    Ok(Outcome::Ok)
}
