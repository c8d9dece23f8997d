//! Index files (SPEC §8): where every blob is.
//!
//! ```text
//! plaintext: compression u8 (0 raw, 1 zstd) | body
//! body: version u8 = 1 | supersedes count u32 | ids[32]…
//!       | pack count u32 | per pack: pack id[32] | entry count u32 (≥ 1) | entries (46 bytes each)
//!                                  [| one base record per based group, if the pack has any]
//! entry: blob type u8 | compression u8 | offset u32 | stored_len u32 | raw_len u32 | blob id[32]
//!        [| group_offset u32, only when compression = 2 (grouped) or 3 (based)]
//! base record: count u8 (≥ 1) | blob ids[32]…, for the based groups in offset order
//! ```
//!
//! The encoding is canonical: supersedes ids and pack ids strictly ascending, entries strictly
//! ascending by (offset, group offset) and not overlapping; the members of one group share its
//! offset and `stored_len`. [`IndexFile::encode`] canonicalizes a copy;
//! [`IndexFile::decode_body`] rejects anything else, so one set of entries has one encoding.

use crate::compress::{decompress_bounded, tagged_body};
use crate::crypto::{ObjectType, RepoKeys};
use crate::error::FormatError;
use crate::format::{
    INDEX_ENTRY_LEN, INDEX_GROUP_EXTRA, INDEX_PACK_MIN_LEN, INDEX_VERSION, MAX_BASE_IDS,
    MAX_GROUP_RAW, MAX_INDEX_BODY,
};
use crate::id::{BlobId, IndexId, PackId};
use crate::pack::{BlobType, Compression, PackEntry, check_blob_lengths, read_base};
use crate::wire::{Put, Reader, len_u32};

const WHAT: &str = "index file";

/// Where one blob is: its pack entry plus its offset in the pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// Data or tree.
    pub blob_type: BlobType,
    /// Raw, zstd, grouped or based.
    pub compression: Compression,
    /// Offset of the blob's envelope (a grouped blob: its group's envelope) in the pack.
    pub offset: u32,
    /// Length of the blob's envelope (a grouped blob: its group's envelope).
    pub stored_len: u32,
    /// Length of the plaintext after decompression.
    pub raw_len: u32,
    /// The blob id.
    pub id: BlobId,
    /// A grouped blob: where its plaintext starts in the group's plaintext. 0 otherwise.
    pub group_offset: u32,
}

impl IndexEntry {
    /// `entry` at `offset` (first in its group if grouped).
    pub fn new(entry: PackEntry, offset: u32) -> IndexEntry {
        IndexEntry {
            blob_type: entry.blob_type,
            compression: entry.compression,
            offset,
            stored_len: entry.stored_len,
            raw_len: entry.raw_len,
            id: entry.id,
            group_offset: 0,
        }
    }

    /// The pack header entry (without the offset): a grouped blob after its group's first
    /// carries `stored_len` 0.
    pub fn pack_entry(&self) -> PackEntry {
        let continues = self.compression.is_grouped() && self.group_offset > 0;
        PackEntry {
            blob_type: self.blob_type,
            compression: self.compression,
            stored_len: if continues { 0 } else { self.stored_len },
            raw_len: self.raw_len,
            id: self.id,
        }
    }

    /// Whether the blob is one of a compression group's, plain or based.
    pub fn is_grouped(&self) -> bool {
        self.compression.is_grouped()
    }

    /// The blob's plaintext range within its group's plaintext.
    pub fn group_range(&self) -> std::ops::Range<usize> {
        self.group_offset as usize..self.group_offset as usize + self.raw_len as usize
    }

    /// One past the blob's last byte in the pack.
    pub fn end(&self) -> u64 {
        u64::from(self.offset) + u64::from(self.stored_len)
    }
}

/// The base of one based compression group (SPEC §7): the blobs whose plaintexts, concatenated
/// in this order, are the group frame's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupBase {
    /// The group envelope's offset in its pack (its members' `offset`).
    pub offset: u32,
    /// The base blobs (1 to 255, distinct), in order.
    pub ids: Vec<BlobId>,
}

/// The blobs of one pack, as an index file lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexPack {
    /// The pack.
    pub id: PackId,
    /// Its blobs (at least one).
    pub entries: Vec<IndexEntry>,
    /// The base of each based group among them, by offset (empty when there is none).
    pub bases: Vec<GroupBase>,
}

/// An index file (SPEC §8).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct IndexFile {
    /// Index files this one replaces (reserved for prune and repair).
    pub supersedes: Vec<IndexId>,
    /// The packs and their blobs.
    pub packs: Vec<IndexPack>,
}

impl IndexFile {
    /// Sorts packs by id, entries by offset, supersedes ascending without duplicates.
    pub fn canonicalize(&mut self) {
        self.supersedes.sort_unstable();
        self.supersedes.dedup();
        self.packs.sort_by_key(|p| p.id);
        for p in &mut self.packs {
            p.entries.sort_by_key(|e| (e.offset, e.group_offset));
            p.bases.sort_by_key(|b| b.offset);
        }
    }

    /// Total number of blob entries.
    pub fn blob_count(&self) -> usize {
        self.packs.iter().map(|p| p.entries.len()).sum()
    }

    /// Checks the canonical-form rules (after [`IndexFile::canonicalize`] only duplicates,
    /// empty packs, overlaps and bad lengths can remain).
    fn check_canonical(&self) -> Result<(), FormatError> {
        if let Some(w) = self.supersedes.windows(2).find(|w| w[0] >= w[1]) {
            return Err(FormatError::corrupted(
                WHAT,
                format!("supersedes ids not strictly ascending at {}", w[1]),
            ));
        }
        if let Some(w) = self.packs.windows(2).find(|w| w[0].id >= w[1].id) {
            return Err(FormatError::corrupted(
                WHAT,
                format!(
                    "pack ids not strictly ascending (or duplicated) at {}",
                    w[1].id
                ),
            ));
        }
        for p in &self.packs {
            if p.entries.is_empty() {
                return Err(FormatError::corrupted(
                    WHAT,
                    format!("pack {} has no entries", p.id),
                ));
            }
            for e in &p.entries {
                check_blob_lengths(WHAT, e.compression, e.stored_len, e.raw_len)?;
                if e.compression == Compression::Based && e.blob_type != BlobType::Data {
                    return Err(FormatError::corrupted(
                        WHAT,
                        format!("pack {}: tree blob {} in a based group", p.id, e.id),
                    ));
                }
                let group_end = u64::from(e.group_offset) + u64::from(e.raw_len);
                if (e.group_offset > 0 && !e.is_grouped())
                    || (e.is_grouped() && group_end > MAX_GROUP_RAW as u64)
                {
                    return Err(FormatError::corrupted(
                        WHAT,
                        format!(
                            "pack {}: blob {} has group offset {} ({:?})",
                            p.id, e.id, e.group_offset, e.compression
                        ),
                    ));
                }
            }
            if let Some(w) = p.entries.windows(2).find(|w| !ordered(&w[0], &w[1])) {
                return Err(FormatError::corrupted(
                    WHAT,
                    format!(
                        "pack {}: blob at offset {} overlaps the one at {}",
                        p.id, w[0].offset, w[1].offset
                    ),
                ));
            }
            check_bases(p)?;
        }
        Ok(())
    }

    /// The sealed index file: canonicalizes a copy, compresses the body with zstd at `level` if
    /// that makes it smaller. Fails on duplicate packs, empty packs, overlapping entries, or a
    /// body over 1 GiB.
    pub fn encode(
        &self,
        keys: &RepoKeys,
        level: i32,
        nonce_salt: [u8; 16],
    ) -> Result<Vec<u8>, FormatError> {
        let body = self.encode_body()?;
        let plain = tagged_body(level, &body);
        Ok(keys.seal_object(ObjectType::Index, nonce_salt, &plain))
    }

    /// Opens, decompresses (at most 1 GiB) and parses an index file.
    pub fn decode(keys: &RepoKeys, bytes: &[u8]) -> Result<IndexFile, FormatError> {
        let plain = keys.open_object(ObjectType::Index, bytes, WHAT)?;
        let mut r = Reader::new(&plain, WHAT);
        let compression = Compression::from_u8(r.u8()?, WHAT)?;
        let rest = r.rest();
        match compression {
            Compression::Raw if rest.len() > MAX_INDEX_BODY => {
                Err(FormatError::bounds(WHAT, "body size", rest.len()))
            }
            Compression::Group | Compression::Based => Err(FormatError::corrupted(
                WHAT,
                format!("unknown compression {}", compression as u8),
            )),
            Compression::Raw => IndexFile::decode_body(rest),
            Compression::Zstd => {
                IndexFile::decode_body(&decompress_bounded(rest, MAX_INDEX_BODY, WHAT)?)
            }
        }
    }

    /// The body (canonicalized copy).
    pub fn encode_body(&self) -> Result<Vec<u8>, FormatError> {
        let mut c = self.clone();
        c.canonicalize();
        c.check_canonical()?;
        let grouped: usize = c
            .packs
            .iter()
            .map(|p| p.entries.iter().filter(|e| e.is_grouped()).count())
            .sum();
        let bases: usize = c
            .packs
            .iter()
            .flat_map(|p| &p.bases)
            .map(|b| 1 + 32 * b.ids.len())
            .sum();
        let size = 1
            + 8
            + 32 * c.supersedes.len()
            + c.packs.len() * 36
            + c.blob_count() * INDEX_ENTRY_LEN
            + grouped * INDEX_GROUP_EXTRA
            + bases;
        if size > MAX_INDEX_BODY {
            return Err(FormatError::bounds(WHAT, "body size", size));
        }
        let mut out = Vec::with_capacity(size);
        out.put_u8(INDEX_VERSION);
        out.put_u32(len_u32(WHAT, "supersedes count", c.supersedes.len())?);
        for s in &c.supersedes {
            out.put_bytes(&s.0.0);
        }
        out.put_u32(len_u32(WHAT, "pack count", c.packs.len())?);
        for p in &c.packs {
            out.put_bytes(&p.id.0.0);
            out.put_u32(len_u32(WHAT, "entry count", p.entries.len())?);
            for e in &p.entries {
                out.put_u8(e.blob_type as u8);
                out.put_u8(e.compression as u8);
                out.put_u32(e.offset);
                out.put_u32(e.stored_len);
                out.put_u32(e.raw_len);
                out.put_bytes(&e.id.0.0);
                if e.is_grouped() {
                    out.put_u32(e.group_offset);
                }
            }
            for b in &p.bases {
                out.put_u8(b.ids.len() as u8); // 1 to 255: check_canonical
                for id in &b.ids {
                    out.put_bytes(&id.0.0);
                }
            }
        }
        Ok(out)
    }

    /// Parses a body; rejects anything not in canonical form.
    pub fn decode_body(b: &[u8]) -> Result<IndexFile, FormatError> {
        let mut r = Reader::new(b, WHAT);
        let version = r.u8()?;
        if version != INDEX_VERSION {
            return Err(FormatError::UnsupportedVersion {
                what: WHAT,
                version,
            });
        }
        let n = r.count(32)?;
        let mut supersedes = Vec::with_capacity(n);
        for _ in 0..n {
            supersedes.push(IndexId(r.id()?));
        }
        let n = r.count(INDEX_PACK_MIN_LEN)?;
        let mut packs = Vec::with_capacity(n);
        for _ in 0..n {
            let id = PackId(r.id()?);
            let m = r.count(INDEX_ENTRY_LEN)?;
            let mut entries = Vec::with_capacity(m);
            for _ in 0..m {
                let mut e = IndexEntry {
                    blob_type: BlobType::from_u8(r.u8()?, WHAT)?,
                    compression: Compression::blob_from_u8(r.u8()?, WHAT)?,
                    offset: r.u32()?,
                    stored_len: r.u32()?,
                    raw_len: r.u32()?,
                    id: BlobId(r.id()?),
                    group_offset: 0,
                };
                if e.is_grouped() {
                    e.group_offset = r.u32()?;
                }
                entries.push(e);
            }
            // One base record per based group, in entry order (which canonical form makes the
            // groups' offset order; check_canonical below rejects any other order).
            let mut bases = Vec::new();
            for e in entries
                .iter()
                .filter(|e| e.compression == Compression::Based && e.group_offset == 0)
            {
                bases.push(GroupBase {
                    offset: e.offset,
                    ids: read_base(&mut r, WHAT)?,
                });
            }
            packs.push(IndexPack { id, entries, bases });
        }
        r.finish()?;
        let index = IndexFile { supersedes, packs };
        index.check_canonical()?;
        Ok(index)
    }
}

/// Each entry's share of the pack bytes its envelope takes, for `entries` of one pack in
/// canonical order (as [`IndexFile::decode`] gives them): a blob's own `stored_len`, or for the
/// members of a compression group the group's envelope split in proportion to their plaintext
/// (the last member takes the rounding), so the shares add up to the envelopes' bytes.
pub fn stored_shares(entries: &[IndexEntry]) -> Vec<u64> {
    let mut out = Vec::with_capacity(entries.len());
    for run in entries.chunk_by(crate::group::same_group) {
        let stored = u64::from(run[0].stored_len);
        if !run[0].is_grouped() {
            out.extend(run.iter().map(|e| u64::from(e.stored_len)));
            continue;
        }
        let raw: u64 = run.iter().map(|e| u64::from(e.raw_len)).sum::<u64>().max(1);
        let mut given = 0;
        for (i, e) in run.iter().enumerate() {
            let share = if i + 1 == run.len() {
                stored - given
            } else {
                stored * u64::from(e.raw_len) / raw
            };
            given += share;
            out.push(share);
        }
    }
    out
}

/// Checks that a pack's bases are exactly one per based group, by offset, each of 1 to 255
/// distinct ids, and that every based group starts with a member at group offset 0 (its base
/// record is read at that entry).
fn check_bases(p: &IndexPack) -> Result<(), FormatError> {
    let mut starts: Vec<u32> = p
        .entries
        .iter()
        .filter(|e| e.compression == Compression::Based)
        .map(|e| e.offset)
        .collect();
    starts.dedup();
    let first_members = p
        .entries
        .iter()
        .filter(|e| e.compression == Compression::Based && e.group_offset == 0)
        .count();
    let offsets: Vec<u32> = p.bases.iter().map(|b| b.offset).collect();
    if starts != offsets || first_members != starts.len() {
        return Err(FormatError::corrupted(
            WHAT,
            format!(
                "pack {}: {} based groups ({} with a first member), {} bases",
                p.id,
                starts.len(),
                first_members,
                offsets.len()
            ),
        ));
    }
    for b in &p.bases {
        let repeated = b
            .ids
            .iter()
            .enumerate()
            .any(|(i, id)| b.ids[..i].contains(id));
        if b.ids.is_empty() || b.ids.len() > MAX_BASE_IDS || repeated {
            return Err(FormatError::corrupted(
                WHAT,
                format!(
                    "pack {}: the based group at offset {} has a base of {} ids{}",
                    p.id,
                    b.offset,
                    b.ids.len(),
                    if repeated { ", one named twice" } else { "" }
                ),
            ));
        }
    }
    Ok(())
}

/// Whether `b` may follow `a` among one pack's entries: after `a`'s envelope, or in the same
/// group (same offset, compression, type and `stored_len`) after `a`'s plaintext.
fn ordered(a: &IndexEntry, b: &IndexEntry) -> bool {
    if a.offset == b.offset && a.is_grouped() && b.is_grouped() {
        return a.stored_len == b.stored_len
            && a.compression == b.compression
            && a.blob_type == b.blob_type
            && u64::from(a.group_offset) + u64::from(a.raw_len) <= u64::from(b.group_offset);
    }
    a.end() <= u64::from(b.offset)
}

#[cfg(test)]
mod tests;
