//! Prune plans (SPEC §17): the packs one prune run marked for deletion.
//!
//! ```text
//! stored at plans/<object id>; envelope, root enc_key, AAD(plan = 8, repo_id, zeros), of
//! plaintext: compression u8 (0 raw, 1 zstd) | body
//! body: version u8 = 1 | TLV record (§11):
//!   1 created: i64 Unix ns (writer's clock)   2 lease: u64 number of the prune lease
//!   3 packs: u32 count ≥ 1, pack ids strictly ascending
//!   4 hostname: UTF-8                          5 index_files: u32 count, ids strictly ascending
//! ```
//!
//! Tags 1, 2 and 3 are required; an absent 4 means an empty host name, an absent 5 means no index
//! files. Writers write all five. The decompressed body is at most 256 MiB.
//!
//! The encoding is canonical. [`Plan::encode`] does **not** sort: a plan names what is about to
//! be deleted, so a list out of order or with a duplicate is treated as the caller's mistake and
//! returned as an error. Call [`Plan::canonicalize`] first to sort and deduplicate on purpose.
//! [`Plan::decode`] rejects anything not canonical, so `decode(encode(p)) == p` for every plan
//! `encode` accepts.
//!
//! `created` is informational: the grace period (SPEC §6, tag 6) is measured on the storage's
//! clock, from the plan object's modification time.

use crate::compress::{decompress_bounded, tagged_body};
use crate::crypto::{ObjectType, RepoKeys};
use crate::error::FormatError;
use crate::format::{ENVELOPE_OVERHEAD, MAX_PLAN_BODY, PLAN_COMPRESSION_LEVEL, PLAN_VERSION};
use crate::id::{Id, IndexId, PackId};
use crate::pack::Compression;
use crate::tlv::{TlvReader, TlvWriter, expect_len, unknown_tag};
use crate::wire::{Put, Reader, len_u32};

const WHAT: &str = "prune plan";

const TAG_CREATED: u16 = 1;
const TAG_LEASE: u16 = 2;
const TAG_PACKS: u16 = 3;
const TAG_HOSTNAME: u16 = 4;
const TAG_INDEX_FILES: u16 = 5;

/// A prune plan (SPEC §17).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// When the plan was made, Unix nanoseconds on the writer's clock (informational).
    pub created_ns: i64,
    /// The number of the prune lease under which the plan was written.
    pub lease: u64,
    /// The packs to delete: at least one, strictly ascending.
    pub packs: Vec<PackId>,
    /// The writer's host name.
    pub hostname: String,
    /// Index files the prune wrote for the blobs it repacked (informational); strictly
    /// ascending, possibly empty.
    pub index_files: Vec<IndexId>,
}

/// Fails unless `ids` are strictly ascending.
fn check_ascending(ids: &[Id], field: &str) -> Result<(), FormatError> {
    match ids.windows(2).find(|w| w[0] >= w[1]) {
        Some(w) => Err(FormatError::corrupted(
            WHAT,
            format!("{field} not strictly ascending (or duplicated) at {}", w[1]),
        )),
        None => Ok(()),
    }
}

/// `u32 count | 32-byte ids`.
fn encode_ids(
    ids: impl ExactSizeIterator<Item = Id>,
    field: &'static str,
) -> Result<Vec<u8>, FormatError> {
    let mut out = Vec::with_capacity(4 + 32 * ids.len());
    out.put_u32(len_u32(WHAT, field, ids.len())?);
    for id in ids {
        out.put_bytes(&id.0);
    }
    Ok(out)
}

/// Reads `u32 count | 32-byte ids` filling the whole value, strictly ascending.
fn decode_ids(v: &[u8], field: &str) -> Result<Vec<Id>, FormatError> {
    let mut r = Reader::new(v, WHAT);
    let n = r.count(32)?;
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(r.id()?);
    }
    r.finish()?;
    check_ascending(&ids, field)?;
    Ok(ids)
}

impl Plan {
    /// Sorts `packs` and `index_files` and removes duplicates.
    pub fn canonicalize(&mut self) {
        self.packs.sort_unstable();
        self.packs.dedup();
        self.index_files.sort_unstable();
        self.index_files.dedup();
    }

    /// Checks the canonical-form rules: at least one pack; both id lists strictly ascending.
    fn check(&self) -> Result<(), FormatError> {
        if self.packs.is_empty() {
            return Err(FormatError::corrupted(WHAT, "a plan names no pack"));
        }
        let packs: Vec<Id> = self.packs.iter().map(|p| p.0).collect();
        check_ascending(&packs, "pack ids")?;
        let index_files: Vec<Id> = self.index_files.iter().map(|i| i.0).collect();
        check_ascending(&index_files, "index file ids")
    }

    /// The sealed plan (body zstd-compressed when that makes it smaller). Fails if the plan is
    /// not canonical (see the module documentation) or its body exceeds 256 MiB.
    pub fn encode(&self, keys: &RepoKeys, nonce_salt: [u8; 16]) -> Result<Vec<u8>, FormatError> {
        let body = self.encode_body()?;
        let plain = tagged_body(PLAN_COMPRESSION_LEVEL, &body);
        Ok(keys.seal_object(ObjectType::Plan, nonce_salt, &plain))
    }

    /// Opens, decompresses (at most 256 MiB) and parses a plan. The caller checks that the
    /// object's name is the hash of `bytes` (SPEC §2).
    pub fn decode(keys: &RepoKeys, bytes: &[u8]) -> Result<Plan, FormatError> {
        // A writer compresses only when that makes the body smaller, so no valid plan is larger
        // than a raw maximal body; refuse before decrypting (which copies the input).
        let max_stored = 1 + MAX_PLAN_BODY + ENVELOPE_OVERHEAD;
        if bytes.len() > max_stored {
            return Err(FormatError::bounds(WHAT, "size", bytes.len()));
        }
        let plain = keys.open_object(ObjectType::Plan, bytes, WHAT)?;
        let mut r = Reader::new(&plain, WHAT);
        let compression = Compression::from_u8(r.u8()?, WHAT)?;
        let rest = r.rest();
        match compression {
            Compression::Group | Compression::Based => Err(FormatError::corrupted(
                WHAT,
                format!("unknown compression {}", compression as u8),
            )),
            Compression::Raw => Plan::decode_body(rest),
            Compression::Zstd => Plan::decode_body(&decompress_bounded(rest, MAX_PLAN_BODY, WHAT)?),
        }
    }

    /// The body: version byte and TLV record. Fails if the plan is not canonical or the body
    /// exceeds 256 MiB.
    pub fn encode_body(&self) -> Result<Vec<u8>, FormatError> {
        self.check()?;
        let mut w = TlvWriter::new(vec![PLAN_VERSION], WHAT);
        w.field(TAG_CREATED, &self.created_ns.to_le_bytes())?;
        w.field(TAG_LEASE, &self.lease.to_le_bytes())?;
        w.field(
            TAG_PACKS,
            &encode_ids(self.packs.iter().map(|p| p.0), "pack count")?,
        )?;
        w.field(TAG_HOSTNAME, self.hostname.as_bytes())?;
        w.field(
            TAG_INDEX_FILES,
            &encode_ids(self.index_files.iter().map(|i| i.0), "index file count")?,
        )?;
        let body = w.finish();
        if body.len() > MAX_PLAN_BODY {
            return Err(FormatError::bounds(WHAT, "body size", body.len()));
        }
        Ok(body)
    }

    /// Parses a body; rejects anything not canonical and bodies over 256 MiB.
    pub fn decode_body(b: &[u8]) -> Result<Plan, FormatError> {
        if b.len() > MAX_PLAN_BODY {
            return Err(FormatError::bounds(WHAT, "body size", b.len()));
        }
        let mut r = Reader::new(b, WHAT);
        let version = r.u8()?;
        if version != PLAN_VERSION {
            return Err(FormatError::UnsupportedVersion {
                what: WHAT,
                version,
            });
        }
        let (mut created, mut lease, mut packs) = (None, None, None);
        let mut hostname = String::new();
        let mut index_files = Vec::new();
        let mut tlv = TlvReader::new(r.rest(), WHAT);
        while let Some((tag, v)) = tlv.next_field()? {
            let mut r = Reader::new(v, WHAT);
            match tag {
                TAG_CREATED => {
                    expect_len(WHAT, tag, v, 8)?;
                    created = Some(r.i64()?);
                }
                TAG_LEASE => {
                    expect_len(WHAT, tag, v, 8)?;
                    lease = Some(r.u64()?);
                }
                TAG_PACKS => {
                    let ids = decode_ids(v, "pack ids")?;
                    if ids.is_empty() {
                        return Err(FormatError::corrupted(WHAT, "a plan names no pack"));
                    }
                    packs = Some(ids.into_iter().map(PackId).collect());
                }
                TAG_HOSTNAME => {
                    hostname = String::from_utf8(v.to_vec())
                        .map_err(|_| FormatError::corrupted(WHAT, "hostname is not UTF-8"))?;
                }
                TAG_INDEX_FILES => {
                    index_files = decode_ids(v, "index file ids")?
                        .into_iter()
                        .map(IndexId)
                        .collect();
                }
                _ => unknown_tag(WHAT, tag)?,
            }
        }
        let missing =
            |tag: u16| FormatError::corrupted(WHAT, format!("required tag {tag} is missing"));
        Ok(Plan {
            created_ns: created.ok_or_else(|| missing(TAG_CREATED))?,
            lease: lease.ok_or_else(|| missing(TAG_LEASE))?,
            packs: packs.ok_or_else(|| missing(TAG_PACKS))?,
            hostname,
            index_files,
        })
    }
}

#[cfg(test)]
mod tests;
