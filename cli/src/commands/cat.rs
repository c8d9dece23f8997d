//! `cairn cat`: one repository object, decrypted, for debugging. Structures print as JSON;
//! a blob prints its raw plaintext.

use std::io::Write;

use anyhow::{Context, Result, anyhow, bail};
use engine::backend::FileType;
use repo_format::{BlobId, Id, IndexId, KeyFile, PackId};
use serde_json::json;

use super::{open, print_json};
use crate::Outcome;
use crate::args::{CatArgs, GlobalArgs};
use crate::output::snapshot_json;

fn entry_json(e: &repo_format::IndexEntry) -> serde_json::Value {
    let mut v = json!({
        "id": e.id.0.to_hex(),
        "type": format!("{:?}", e.blob_type).to_lowercase(),
        "compression": format!("{:?}", e.compression).to_lowercase(),
        "offset": e.offset,
        "stored_len": e.stored_len,
        "raw_len": e.raw_len,
    });
    if e.is_grouped() {
        // offset and stored_len are the group's envelope; this is where the blob is inside.
        v["group_offset"] = json!(e.group_offset);
    }
    v
}

/// The bases of a pack's based groups (SPEC §7): the group's offset and its base blob ids.
fn bases_json(bases: &[repo_format::GroupBase]) -> serde_json::Value {
    bases
        .iter()
        .map(|b| json!({"offset": b.offset, "ids": b.ids.iter().map(|id| id.0.to_hex()).collect::<Vec<_>>()}))
        .collect()
}

/// Runs `cairn cat`.
pub fn run(g: &GlobalArgs, a: &CatArgs) -> Result<Outcome> {
    let repo = open(g)?;
    let id = || -> Result<Id> {
        let s =
            a.id.as_deref()
                .ok_or_else(|| anyhow!("`cairn cat {}` needs an id", a.kind))?;
        Id::from_hex(s).map_err(|e| anyhow!("'{s}' is not a full 64-digit id: {e}"))
    };
    match a.kind.as_str() {
        "config" => {
            let c = repo.config();
            print_json(&json!({
                "version": repo_format::format::FORMAT_VERSION,
                "id": c.repo_id.to_hex(),
                "created": c.created,
                "compression_level": c.compression_level,
                "data_pack_size": c.data_pack_size,
                "tree_pack_size": c.tree_pack_size,
                "chunker_profiles": c.profiles.iter().map(|p| json!({"name": p.name, "min": p.params.min, "avg": p.params.avg, "max": p.params.max})).collect::<Vec<_>>(),
            }))?;
        }
        "key" => {
            let id = id()?;
            let bytes = repo.get_object(FileType::Key, &id)?;
            let k = KeyFile::decode(&bytes).context("the key file is damaged")?;
            print_json(&json!({
                "id": id.to_hex(), "kdf": "argon2id", "m_cost_kib": k.params.m_cost, "t_cost": k.params.t_cost,
                "p_cost": k.params.p_cost, "created": k.created, "hostname": k.hostname, "username": k.username,
            }))?;
        }
        "snapshot" => {
            let (id, s) = repo.resolve_snapshot(
                a.id.as_deref()
                    .ok_or_else(|| anyhow!("`cairn cat snapshot` needs an id"))?,
            )?;
            print_json(&snapshot_json(&id, &s))?;
        }
        "index" => {
            let id = IndexId(id()?);
            let f = repo.load_index(&id)?;
            print_json(&json!({
                "id": id.0.to_hex(),
                "supersedes": f.supersedes.iter().map(|s| s.0.to_hex()).collect::<Vec<_>>(),
                "packs": f.packs.iter().map(|p| json!({"id": p.id.0.to_hex(), "blobs": p.entries.iter().map(entry_json).collect::<Vec<_>>(), "bases": bases_json(&p.bases)})).collect::<Vec<_>>(),
            }))?;
        }
        "pack" => {
            let id = PackId(id()?);
            let bytes = repo.get_object(FileType::Pack, &id.0)?;
            let len = bytes.len() as u64;
            let header = repo_format::decode_pack_header(repo.keys(), &bytes)
                .context("the pack header is damaged")?;
            let entries = &header.entries;
            // The blobs fill the pack up to the header, so its length follows from the last one.
            let blobs_end = entries
                .last()
                .map_or(0, |e| u64::from(e.offset) + u64::from(e.stored_len));
            let hlen = len - 4 - blobs_end;
            print_json(
                &json!({"id": id.0.to_hex(), "size": len, "header_len": hlen, "blobs": entries.iter().map(entry_json).collect::<Vec<_>>(), "bases": bases_json(&header.bases)}),
            )?;
        }
        "blob" => {
            let id = BlobId(id()?);
            let loc = repo.locate_blob(&id)?;
            let plain = repo.load_blob(&loc)?;
            let mut out = std::io::stdout().lock();
            out.write_all(&plain).context("cannot write the blob")?;
            out.flush().context("cannot write the blob")?;
        }
        other => {
            bail!("unknown object kind '{other}': use config, key, snapshot, index, pack or blob")
        }
    }
    Ok(Outcome::Ok)
}
