//! `cairn key list|add|remove|passwd`: the key files, one per password (SPEC §4). The work is
//! in `engine::keys`; this file reads the new password and prints the results.

use anyhow::{Context, Result};
use engine::keys::{
    AddKeyOptions, KeyInfo, KeyState, add_key, change_password, list_keys, remove_key, resolve_key,
};
use repo_format::KdfParams;
use serde_json::{Value, json};

use super::{open, print_json};
use crate::Outcome;
use crate::args::{GlobalArgs, KeyAddArgs, KeyCommand, KeyRemoveArgs};
use crate::output::{local_time, time_rfc3339};
use crate::password::{PasswordNames, PasswordSource, read_password_as};

/// How the new password of `key add` and `key passwd` is named: its own variable and flags, so
/// the repository's password is never taken for it by mistake.
const NEW_PASSWORD: PasswordNames = PasswordNames {
    env: "CAIRN_NEW_PASSWORD",
    prompt: "new password: ",
    flag_prefix: "--new-",
};

/// Runs `cairn key …`.
pub fn run(g: &GlobalArgs, cmd: &KeyCommand) -> Result<Outcome> {
    match cmd {
        KeyCommand::List => list(g),
        KeyCommand::Add(a) => add(g, a),
        KeyCommand::Remove(a) => remove(g, a),
        KeyCommand::Passwd(a) => passwd(g, a),
    }
}

/// The new password (asked twice on a terminal) and the options for the new key file.
fn new_key(a: &KeyAddArgs) -> Result<(Vec<u8>, AddKeyOptions)> {
    let src = PasswordSource {
        file: a.new_password_file.clone(),
        command: a.new_password_command.clone(),
    };
    let password = read_password_as(&src, true, &NEW_PASSWORD)?;
    let mut opts = AddKeyOptions {
        kdf: KdfParams::with_costs(
            a.kdf_memory_kib.unwrap_or(KdfParams::DEFAULT.m_cost),
            a.kdf_iterations.unwrap_or(KdfParams::DEFAULT.t_cost),
        ),
        ..AddKeyOptions::default()
    };
    if let Some(h) = &a.host {
        opts.hostname.clone_from(h);
    }
    if let Some(u) = &a.user {
        opts.username.clone_from(u);
    }
    Ok((password, opts))
}

fn key_json(k: &KeyInfo) -> Value {
    let mut v = json!({
        "id": k.id.to_hex(),
        "short_id": k.id.short(),
        "current": k.current,
        "damaged": matches!(k.state, KeyState::Damaged(_)),
    });
    match &k.state {
        KeyState::Readable(d) => {
            v["created"] = json!(time_rfc3339(d.created.saturating_mul(1_000_000_000), 0));
            v["created_unix"] = json!(d.created);
            v["host"] = json!(d.hostname);
            v["user"] = json!(d.username);
            v["kdf"] = json!({
                "algorithm": "argon2id",
                "memory_kib": d.params.m_cost,
                "iterations": d.params.t_cost,
                "parallelism": d.params.p_cost,
            });
        }
        KeyState::Damaged(why) => v["error"] = json!(why),
    }
    v
}

fn list(g: &GlobalArgs) -> Result<Outcome> {
    let repo = open(g)?;
    let keys =
        list_keys(&repo).with_context(|| format!("cannot list the keys of {}", repo.location()))?;
    let damaged = keys
        .iter()
        .filter(|k| matches!(k.state, KeyState::Damaged(_)))
        .count();
    let outcome = if damaged == 0 {
        Outcome::Ok
    } else {
        Outcome::Warnings
    };
    if g.json {
        print_json(&Value::Array(keys.iter().map(key_json).collect()))?;
        return Ok(outcome);
    }
    println!(
        "  {:<8}  {:<23}  {:<16}  {:<12}  kdf",
        "id", "created", "host", "user"
    );
    for k in &keys {
        let mark = if k.current { "*" } else { " " };
        match &k.state {
            KeyState::Readable(d) => println!(
                "{mark} {:<8}  {:<23}  {:<16}  {:<12}  argon2id m={} KiB t={} p={}",
                k.id.short(),
                local_time(d.created.saturating_mul(1_000_000_000)),
                d.hostname,
                d.username,
                d.params.m_cost,
                d.params.t_cost,
                d.params.p_cost
            ),
            KeyState::Damaged(why) => println!("{mark} {:<8}  DAMAGED: {why}", k.id.short()),
        }
    }
    if !g.quiet {
        let mut line = format!("{} keys (* opened this session)", keys.len());
        if damaged > 0 {
            line.push_str(&format!(
                "; {damaged} damaged: they open nothing, `cairn key remove ID` deletes them"
            ));
        }
        println!("{line}");
    }
    Ok(outcome)
}

fn add(g: &GlobalArgs, a: &KeyAddArgs) -> Result<Outcome> {
    let repo = open(g)?;
    let (password, opts) = new_key(a)?;
    let id = add_key(&repo, &password, &opts)
        .with_context(|| format!("cannot add a key to {}", repo.location()))?;
    if g.json {
        print_json(&json!({"id": id.to_hex(), "short_id": id.short()}))?;
    } else {
        println!("added key {}", id.to_hex());
    }
    Ok(Outcome::Ok)
}

fn remove(g: &GlobalArgs, a: &KeyRemoveArgs) -> Result<Outcome> {
    let repo = open(g)?;
    let id = resolve_key(&repo, &a.id)?;
    remove_key(&repo, &id)
        .with_context(|| format!("cannot remove key {} from {}", id.short(), repo.location()))?;
    if g.json {
        print_json(&json!({"removed": id.to_hex()}))?;
    } else {
        println!("removed key {}", id.to_hex());
    }
    Ok(Outcome::Ok)
}

fn passwd(g: &GlobalArgs, a: &KeyAddArgs) -> Result<Outcome> {
    let repo = open(g)?;
    let (password, opts) = new_key(a)?;
    let change = change_password(&repo, &password, &opts)
        .with_context(|| format!("cannot change the password of {}", repo.location()))?;
    if g.json {
        print_json(&json!({
            "id": change.added.to_hex(),
            "short_id": change.added.short(),
            "removed": change.removed.to_hex(),
        }))?;
    } else {
        println!(
            "changed the password: added key {}, removed key {}",
            change.added.to_hex(),
            change.removed.to_hex()
        );
    }
    Ok(Outcome::Ok)
}
