//! Index files (SPEC §8): where every blob is.
//!
//! ```text
//! plaintext: compression u8 (0 raw, 1 zstd) | body
//! body: version u8 = 1 | supersedes count u32 | ids[32]…
//!       | pack count u32 | per pack: pack id[32] | entry count u32 (≥ 1) | entries (46 bytes each)
//! entry: blob type u8 | compression u8 | offset u32 | stored_len u32 | raw_len u32 | blob id[32]
//! ```
//!
//! The encoding is canonical: supersedes ids and pack ids strictly ascending, entries strictly
//! ascending by offset and not overlapping. [`IndexFile::encode`] canonicalizes a copy;
//! [`IndexFile::decode_body`] rejects anything else, so one set of entries has one encoding.

use crate::compress::{decompress_bounded, tagged_body};
use crate::crypto::{ObjectType, RepoKeys};
use crate::error::FormatError;
use crate::format::{INDEX_ENTRY_LEN, INDEX_PACK_MIN_LEN, INDEX_VERSION, MAX_INDEX_BODY};
use crate::id::{BlobId, IndexId, PackId};
use crate::pack::{BlobType, Compression, PackEntry, check_blob_lengths};
use crate::wire::{Put, Reader, len_u32};

const WHAT: &str = "index file";

/// Where one blob is: its pack entry plus its offset in the pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// Data or tree.
    pub blob_type: BlobType,
    /// Raw or zstd.
    pub compression: Compression,
    /// Offset of the blob's envelope in the pack.
    pub offset: u32,
    /// Length of the blob's envelope.
    pub stored_len: u32,
    /// Length of the plaintext after decompression.
    pub raw_len: u32,
    /// The blob id.
    pub id: BlobId,
}

impl IndexEntry {
    /// `entry` at `offset`.
    pub fn new(entry: PackEntry, offset: u32) -> IndexEntry {
        IndexEntry {
            blob_type: entry.blob_type,
            compression: entry.compression,
            offset,
            stored_len: entry.stored_len,
            raw_len: entry.raw_len,
            id: entry.id,
        }
    }

    /// The pack header entry (without the offset).
    pub fn pack_entry(&self) -> PackEntry {
        PackEntry {
            blob_type: self.blob_type,
            compression: self.compression,
            stored_len: self.stored_len,
            raw_len: self.raw_len,
            id: self.id,
        }
    }

    /// One past the blob's last byte in the pack.
    pub fn end(&self) -> u64 {
        u64::from(self.offset) + u64::from(self.stored_len)
    }
}

/// The blobs of one pack, as an index file lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexPack {
    /// The pack.
    pub id: PackId,
    /// Its blobs (at least one).
    pub entries: Vec<IndexEntry>,
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
            p.entries.sort_by_key(|e| e.offset);
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
            }
            if let Some(w) = p
                .entries
                .windows(2)
                .find(|w| w[0].end() > u64::from(w[1].offset))
            {
                return Err(FormatError::corrupted(
                    WHAT,
                    format!(
                        "pack {}: blob at offset {} overlaps the one at {}",
                        p.id, w[0].offset, w[1].offset
                    ),
                ));
            }
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
        let size =
            1 + 8 + 32 * c.supersedes.len() + c.packs.len() * 36 + c.blob_count() * INDEX_ENTRY_LEN;
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
                entries.push(IndexEntry {
                    blob_type: BlobType::from_u8(r.u8()?, WHAT)?,
                    compression: Compression::from_u8(r.u8()?, WHAT)?,
                    offset: r.u32()?,
                    stored_len: r.u32()?,
                    raw_len: r.u32()?,
                    id: BlobId(r.id()?),
                });
            }
            packs.push(IndexPack { id, entries });
        }
        r.finish()?;
        let index = IndexFile { supersedes, packs };
        index.check_canonical()?;
        Ok(index)
    }
}

#[cfg(test)]
mod tests;
