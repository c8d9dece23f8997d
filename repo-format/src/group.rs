//! Compression groups (SPEC §7): several blobs of one type compressed together, as one zstd frame
//! in one envelope.
//!
//! ```text
//! group envelope = seal(AAD(blob type, repo_id, zeros), zstd(plaintext 0 | plaintext 1 | ...))
//! header entries: (Group, stored_len = envelope length, raw_len 0, id 0),
//!                 (Group, stored_len = 0,               raw_len 1, id 1), ...
//! ```
//!
//! A *based* group (compression 3, data blobs only) is compressed with other blobs' plaintexts,
//! its *base*, as zstd's history: the chunks its members replace in an earlier snapshot, so an
//! edited stretch of a dump costs little more than its edits. Its header entries name the base
//! (pack header and index file); a reader loads the base blobs first and opens the group with
//! [`open_based_group`]. Writers choose bases outside based groups; readers follow a base that
//! is in one anyway to a bounded depth (SPEC §7).
//!
//! Small chunks deduplicate well and compress badly one by one (each frame starts with an empty
//! window, and every envelope costs 32 bytes); a group compresses like one large chunk while every
//! blob keeps its own id, index entry and dedup. A blob is read by opening its group and taking
//! its range; its keyed id is checked as for any blob, so the group's AAD, which cannot name
//! every member, needs no id: a group moved elsewhere still yields only blobs whose ids match.

use crate::compress::{
    Zstd, compress, compress_with_prefix, decompress_bounded, decompress_with_prefix,
};
use crate::crypto::{RepoKeys, aad, open, seal_into};
use crate::error::FormatError;
use crate::format::{ENVELOPE_OVERHEAD, MAX_BASE_IDS, MAX_BASE_RAW, MAX_GROUP_RAW};
use crate::id::{BlobId, Id};
use crate::index::IndexEntry;
use crate::pack::{BlobType, Compression, PackEntry};

/// A compression group ready to go into a pack.
#[derive(Clone, Debug)]
pub struct SealedGroup {
    /// Its members' header entries, in order (the first carries the envelope's length).
    pub entries: Vec<PackEntry>,
    /// The group's envelope.
    pub bytes: Vec<u8>,
    /// A based group's base, in the order its plaintexts were concatenated; empty for a plain
    /// group.
    pub base: Vec<BlobId>,
}

fn what(t: BlobType) -> &'static str {
    match t {
        BlobType::Data => "data blob",
        BlobType::Tree => "tree blob",
    }
}

/// Compresses `blobs` (id, plaintext; each id `keys.blob_id` of its plaintext) together as
/// `zstd` says (a level or a [`Zstd`]) and seals the frame under `AAD(blob type, repo_id, zeros)`.
///
/// `None` when a group does not apply and each blob is to be sealed on its own
/// ([`crate::seal_blob`]): fewer than two blobs, an empty one, more than [`MAX_GROUP_RAW`]
/// bytes together, level 0, or a frame not smaller than the plaintexts.
pub fn seal_group(
    keys: &RepoKeys,
    blob_type: BlobType,
    blobs: &[(BlobId, &[u8])],
    zstd: impl Into<Zstd>,
    nonce_salt: [u8; 16],
) -> Option<SealedGroup> {
    let (plain, members) = join(blobs);
    seal_joined_group(keys, blob_type, &plain, &members, zstd, nonce_salt)
}

/// [`seal_group`] for members already laid out one after the other in `plain` (a writer that
/// collects a group in one buffer saves copying it again): `members` are their ids and lengths
/// in order. `None` also when the lengths do not add up to `plain.len()`.
pub fn seal_joined_group(
    keys: &RepoKeys,
    blob_type: BlobType,
    plain: &[u8],
    members: &[(BlobId, usize)],
    zstd: impl Into<Zstd>,
    nonce_salt: [u8; 16],
) -> Option<SealedGroup> {
    let zstd = zstd.into();
    if !groupable(plain, members, 2) || zstd.level == 0 {
        return None;
    }
    let frame = compress(zstd, plain)?;
    seal_frame(
        keys,
        blob_type,
        Compression::Group,
        members,
        &frame,
        nonce_salt,
        Vec::new(),
    )
}

/// Whether `members` can be a group of `plain`: at least `min` of them, none empty, their
/// lengths adding up to `plain.len()`, at most [`MAX_GROUP_RAW`] bytes together.
fn groupable(plain: &[u8], members: &[(BlobId, usize)], min: usize) -> bool {
    members.len() >= min
        && plain.len() <= MAX_GROUP_RAW
        && members.iter().all(|&(_, n)| n > 0 && n <= MAX_GROUP_RAW)
        && members
            .iter()
            .try_fold(0usize, |sum, &(_, n)| sum.checked_add(n))
            == Some(plain.len())
}

/// [`seal_group`] for data blobs, compressed against `base` (id, plaintext; each id
/// `keys.blob_id` of its plaintext): the base's plaintexts, concatenated in order, are the
/// frame's history (SPEC §7).
///
/// A single blob may be a based group of one (a stream's last chunk, say, which replaces the
/// last chunk of the stream before it): its base is what makes it small, not its neighbours.
///
/// `None` when a based group does not apply: as for [`seal_group`] (except that one blob is
/// enough), or an empty base, more than
/// [`MAX_BASE_IDS`] base blobs or [`MAX_BASE_RAW`] bytes of them, a base blob named twice or
/// also a member, or a frame not smaller than the plaintexts. The caller decides whether the
/// based frame is worth it against a plain group's.
pub fn seal_based_group(
    keys: &RepoKeys,
    blobs: &[(BlobId, &[u8])],
    base: &[(BlobId, &[u8])],
    level: i32,
    nonce_salt: [u8; 16],
) -> Option<SealedGroup> {
    let (plain, members) = join(blobs);
    seal_joined_based_group(keys, &plain, &members, base, level, nonce_salt)
}

/// [`seal_based_group`] for members laid out one after the other in `plain` (see
/// [`seal_joined_group`]).
pub fn seal_joined_based_group(
    keys: &RepoKeys,
    plain: &[u8],
    members: &[(BlobId, usize)],
    base: &[(BlobId, &[u8])],
    level: i32,
    nonce_salt: [u8; 16],
) -> Option<SealedGroup> {
    let base_total: usize = base.iter().map(|(_, b)| b.len()).sum();
    let repeated = base.iter().enumerate().any(|(i, (id, _))| {
        base[..i].iter().any(|(other, _)| other == id) || members.iter().any(|(m, _)| m == id)
    });
    if !groupable(plain, members, 1)
        || level == 0
        || base.is_empty()
        || base.len() > MAX_BASE_IDS
        || base_total > MAX_BASE_RAW
        || repeated
    {
        return None;
    }
    let frame = compress_with_prefix(level, plain, &concat(base))?;
    let ids = base.iter().map(|(id, _)| *id).collect();
    seal_frame(
        keys,
        BlobType::Data,
        Compression::Based,
        members,
        &frame,
        nonce_salt,
        ids,
    )
}

fn concat(blobs: &[(BlobId, &[u8])]) -> Vec<u8> {
    let mut out = Vec::with_capacity(blobs.iter().map(|(_, b)| b.len()).sum());
    for (_, b) in blobs {
        out.extend_from_slice(b);
    }
    out
}

/// `blobs`' plaintexts one after the other, and each one's id and length.
fn join(blobs: &[(BlobId, &[u8])]) -> (Vec<u8>, Vec<(BlobId, usize)>) {
    let members = blobs.iter().map(|(id, b)| (*id, b.len())).collect();
    (concat(blobs), members)
}

/// Seals `frame` as the group of `members` (id, length; ≤ [`MAX_GROUP_RAW`] bytes together).
fn seal_frame(
    keys: &RepoKeys,
    blob_type: BlobType,
    compression: Compression,
    members: &[(BlobId, usize)],
    frame: &[u8],
    nonce_salt: [u8; 16],
    base: Vec<BlobId>,
) -> Option<SealedGroup> {
    let mut bytes = Vec::with_capacity(frame.len() + ENVELOPE_OVERHEAD);
    let aad = aad(blob_type.object_type(), keys.repo_id(), &Id::ZERO);
    seal_into(&keys.master().enc_key, &aad, nonce_salt, frame, &mut bytes);
    let stored_len = u32::try_from(bytes.len()).ok()?;
    let entries = members
        .iter()
        .enumerate()
        .map(|(i, &(id, len))| PackEntry {
            blob_type,
            compression,
            stored_len: if i == 0 { stored_len } else { 0 },
            raw_len: len as u32, // ≤ total ≤ MAX_GROUP_RAW
            id,
        })
        .collect();
    Some(SealedGroup {
        entries,
        bytes,
        base,
    })
}

/// Opens the group envelope that `entry` (any member) names and returns the group's plaintext:
/// at most [`MAX_GROUP_RAW`] bytes (a frame announcing more is refused before any allocation).
/// A based group needs its base: [`open_based_group`].
pub fn open_group(
    keys: &RepoKeys,
    entry: &IndexEntry,
    envelope: &[u8],
) -> Result<Vec<u8>, FormatError> {
    let what = what(entry.blob_type);
    match entry.compression {
        Compression::Group => {}
        Compression::Based => {
            return Err(FormatError::corrupted(
                what,
                format!(
                    "blob {} is in a based compression group, which this reader cannot open without its base",
                    entry.id.short()
                ),
            ));
        }
        _ => {
            return Err(FormatError::corrupted(
                what,
                format!("blob {} is not in a compression group", entry.id.short()),
            ));
        }
    }
    let frame = open_frame(keys, entry, envelope, what)?;
    decompress_bounded(&frame, MAX_GROUP_RAW, what)
}

/// Opens the based group envelope that `entry` (any member) names, with `base`, the
/// concatenated plaintexts of its base blobs in the order its header entry names them (each
/// checked against its id by the caller), and returns the group's plaintext (at most
/// [`MAX_GROUP_RAW`] bytes, its frame's window at most 2^24).
pub fn open_based_group(
    keys: &RepoKeys,
    entry: &IndexEntry,
    envelope: &[u8],
    base: &[u8],
) -> Result<Vec<u8>, FormatError> {
    let what = what(entry.blob_type);
    if entry.compression != Compression::Based {
        return Err(FormatError::corrupted(
            what,
            format!(
                "blob {} is not in a based compression group",
                entry.id.short()
            ),
        ));
    }
    if base.is_empty() || base.len() > MAX_BASE_RAW {
        return Err(FormatError::bounds(what, "base size", base.len()));
    }
    let frame = open_frame(keys, entry, envelope, what)?;
    decompress_with_prefix(&frame, base, MAX_GROUP_RAW, what)
}

/// Checks a group envelope's length against `entry` and opens it.
fn open_frame(
    keys: &RepoKeys,
    entry: &IndexEntry,
    envelope: &[u8],
    what: &'static str,
) -> Result<Vec<u8>, FormatError> {
    if envelope.len() != entry.stored_len as usize {
        return Err(FormatError::corrupted(
            what,
            format!(
                "group of blob {} is {} bytes, the index says {}",
                entry.id.short(),
                envelope.len(),
                entry.stored_len
            ),
        ));
    }
    let aad = aad(entry.blob_type.object_type(), keys.repo_id(), &Id::ZERO);
    open(&keys.master().enc_key, &aad, envelope, what)
}

/// Takes the blob `entry` names out of its group's plaintext (from [`open_group`]) and checks
/// that its keyed hash equals `entry.id` ([`FormatError::IdMismatch`] otherwise).
pub fn blob_in_group(
    keys: &RepoKeys,
    entry: &IndexEntry,
    group: &[u8],
) -> Result<Vec<u8>, FormatError> {
    let what = what(entry.blob_type);
    let range = entry.group_range();
    let plaintext = group.get(range.clone()).ok_or_else(|| {
        FormatError::corrupted(
            what,
            format!(
                "blob {} is at {}..{} of its group, which holds {} bytes",
                entry.id.short(),
                range.start,
                range.end,
                group.len()
            ),
        )
    })?;
    let actual = keys.blob_id(plaintext);
    if actual != entry.id {
        return Err(FormatError::IdMismatch {
            what,
            expected: entry.id.to_hex(),
            actual: actual.to_hex(),
        });
    }
    Ok(plaintext.to_vec())
}

/// Opens blobs one after another, each compression group once: the last group opened is kept
/// and serves its other members. For the blobs of one read of one pack (a group is known by its
/// offset, so a cache must not outlive the pack it was filled from); holds at most one group's
/// plaintext ([`MAX_GROUP_RAW`]).
#[derive(Debug, Default)]
pub struct GroupCache {
    /// The group held, and its plaintext or why it failed.
    last: Option<(GroupKey, Result<Vec<u8>, FormatError>)>,
}

/// What tells groups of one pack apart: offset, `stored_len`, blob type.
type GroupKey = (u32, u32, BlobType);

impl GroupCache {
    /// An empty cache.
    pub fn new() -> GroupCache {
        GroupCache::default()
    }

    /// [`crate::open_blob`], with the group opened at most once for consecutive members.
    pub fn open(
        &mut self,
        keys: &RepoKeys,
        entry: &IndexEntry,
        envelope: &[u8],
    ) -> Result<Vec<u8>, FormatError> {
        if !entry.is_grouped() {
            return crate::pack::open_blob(keys, entry, envelope);
        }
        let key = (entry.offset, entry.stored_len, entry.blob_type);
        let (_, opened) = match self.last.take() {
            Some((k, opened)) if k == key => self.last.insert((k, opened)),
            _ => self.last.insert((key, open_group(keys, entry, envelope))),
        };
        match opened {
            Ok(group) => blob_in_group(keys, entry, group),
            Err(e) => Err(e.clone()),
        }
    }

    /// Takes the plaintext of the group held, if it opened (for a cache that outlives this one).
    pub fn take(&mut self) -> Option<Vec<u8>> {
        match self.last.take() {
            Some((_, Ok(group))) => Some(group),
            _ => None,
        }
    }

    /// For a reader that opened every member of a group (a pack header lists them all): checks
    /// that the group held, whose last member is `last`, holds exactly their plaintexts and
    /// nothing after them. Ok when no group is held or it could not be opened (that error was
    /// reported with its members).
    pub fn check_complete(&self, last: &IndexEntry) -> Result<(), FormatError> {
        match &self.last {
            Some((_, Ok(group))) if last.is_grouped() && group.len() != last.group_range().end => {
                Err(FormatError::corrupted(
                    what(last.blob_type),
                    format!(
                        "the compression group at offset {} holds {} bytes, its members {}",
                        last.offset,
                        group.len(),
                        last.group_range().end
                    ),
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Whether two index entries, in offset order, are in the same compression group: callers that
/// open a pack's blobs in parallel split them into runs of this (e.g. rayon's `par_chunk_by`)
/// and give each run a [`GroupCache`].
pub fn same_group(a: &IndexEntry, b: &IndexEntry) -> bool {
    a.is_grouped()
        && a.compression == b.compression
        && a.offset == b.offset
        && a.stored_len == b.stored_len
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod based_tests;
