//! `cairn init`: create a repository.

use anyhow::{Context, Result};
use engine::repository::{InitOptions, init};
use repo_format::KdfParams;

use super::{location, password_source, print_json};
use crate::Outcome;
use crate::args::{GlobalArgs, InitArgs};
use crate::output::duration;
use crate::password::read_password;

/// Runs `cairn init`.
pub fn run(g: &GlobalArgs, a: &InitArgs) -> Result<Outcome> {
    let loc = location(g)?;
    let password = read_password(&password_source(g), true)?;
    let mut opts = InitOptions {
        compression_level: a.compression,
        prune_grace_secs: a.prune_grace.map(|d| d.as_secs()),
        ..InitOptions::default()
    };
    let grace = opts
        .prune_grace_secs
        .unwrap_or(repo_format::format::DEFAULT_PRUNE_GRACE_SECS);
    opts.kdf = KdfParams::with_costs(
        a.kdf_memory_kib.unwrap_or(KdfParams::DEFAULT.m_cost),
        a.kdf_iterations.unwrap_or(KdfParams::DEFAULT.t_cost),
    );
    let r = init(loc, &password, &opts)
        .with_context(|| format!("cannot create a repository at {loc}"))?;
    if !r.create_only {
        eprintln!(
            "warning: {loc} does not honour create-only writes (it overwrote an existing object): \
             backups from any number of hosts are still safe (every object but the prune lease is \
             named by the hash of its bytes), but `cairn prune` will refuse to delete data here"
        );
    }
    if g.json {
        print_json(
            &serde_json::json!({"repository": loc, "id": r.repo_id.to_hex(), "key": r.key_id.to_hex(), "create_only": r.create_only, "prune_grace_secs": grace}),
        )?;
    } else if !g.quiet {
        println!("created cairn repository {} at {loc}", r.repo_id.short());
        println!(
            "prune grace period: {} (a pack `cairn prune` marks is deleted by a prune run at least this much later; backups must not pause longer)",
            duration(grace)
        );
        println!("keep the password safe: without it the repository cannot be read");
    }
    Ok(Outcome::Ok)
}
