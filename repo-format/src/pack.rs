//! Packs (SPEC §7): blob envelopes and group envelopes, then the header envelope, then its length.
//!
//! ```text
//! blob 0 (envelope) | group (envelope) | ... | header (envelope) | header_len u32
//! header plaintext: version u8 = 1 | count u32 (≥ 1) | count × entry (42 bytes)
//! entry: blob type u8 | compression u8 | stored_len u32 | raw_len u32 | blob id[32]
//! ```
//!
//! Offsets are implicit: the blobs exactly fill the bytes before the header. A compression group
//! (compression 2) is one envelope holding the zstd frame of several blobs' plaintexts one after
//! another; its first entry carries the envelope's length and the others `stored_len` 0 (see
//! [`crate::group`]). A based group (compression 3) is a group compressed against other blobs
//! (its base); when a pack has any, the entries are followed by one base record per based group,
//! in entry order: count u8 (≥ 1) | ids[32]…. [`PackWriter`] builds a pack in memory and, before handing it out, decodes
//! its own header again and checks it against what it wrote (as restic's `verifyHeader` does).

use crate::compress::{Zstd, compress, decompress_exact};
use crate::crypto::{ObjectType, RepoKeys, aad, open, seal_into};
use crate::error::FormatError;
use crate::format::{
    ENVELOPE_OVERHEAD, MAX_BASE_IDS, MAX_GROUP_RAW, MAX_HEADER_LEN, MAX_HEADER_PLAIN_LEN,
    MAX_PACK_ENTRIES, MIN_HEADER_LEN, PACK_ENTRY_LEN, PACK_HEADER_FIXED_LEN, PACK_HEADER_VERSION,
    PACK_TRAILER_LEN,
};
use crate::group::{SealedGroup, blob_in_group, open_group};
use crate::id::{BlobId, PackId, object_id};
use crate::index::{GroupBase, IndexEntry};
use crate::wire::{Put, Reader};

const WHAT: &str = "pack header";

/// What a blob holds.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BlobType {
    /// A chunk of file content.
    Data = 0,
    /// A tree or a content list.
    Tree = 1,
}

impl BlobType {
    pub(crate) fn from_u8(b: u8, what: &'static str) -> Result<BlobType, FormatError> {
        match b {
            0 => Ok(BlobType::Data),
            1 => Ok(BlobType::Tree),
            _ => Err(FormatError::corrupted(
                what,
                format!("unknown blob type {b}"),
            )),
        }
    }

    /// The envelope type of blobs of this type (SPEC §5).
    pub fn object_type(self) -> ObjectType {
        match self {
            BlobType::Data => ObjectType::DataBlob,
            BlobType::Tree => ObjectType::TreeBlob,
        }
    }
}

/// How a blob's plaintext was stored (and, values 0 and 1 only, how an index file, snapshot or
/// plan body was).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    /// As is.
    Raw = 0,
    /// One zstd frame.
    Zstd = 1,
    /// Part of a compression group: one zstd frame of several blobs' plaintexts (SPEC §7).
    Group = 2,
    /// Part of a based compression group: a group's frame compressed with other blobs' (its
    /// base's) plaintexts as zstd's history (SPEC §7). Data blobs only.
    Based = 3,
}

impl Compression {
    /// A body's compression tag: raw or zstd.
    pub(crate) fn from_u8(b: u8, what: &'static str) -> Result<Compression, FormatError> {
        match b {
            0 => Ok(Compression::Raw),
            1 => Ok(Compression::Zstd),
            _ => Err(FormatError::corrupted(
                what,
                format!("unknown compression {b}"),
            )),
        }
    }

    /// A blob entry's compression: raw, zstd, grouped or based.
    pub(crate) fn blob_from_u8(b: u8, what: &'static str) -> Result<Compression, FormatError> {
        match b {
            2 => Ok(Compression::Group),
            3 => Ok(Compression::Based),
            _ => Compression::from_u8(b, what),
        }
    }

    /// Whether a blob with this compression is a member of a group, plain or based.
    pub fn is_grouped(self) -> bool {
        matches!(self, Compression::Group | Compression::Based)
    }
}

/// Checks the lengths of one blob's entry: an envelope is at least 32 bytes, and a raw blob's
/// plaintext is its envelope minus 32.
///
/// A grouped blob has at least one byte and at most [`MAX_GROUP_RAW`]; in a pack header a
/// grouped entry's `stored_len` is 0 when it continues the group before it.
pub(crate) fn check_blob_lengths(
    what: &'static str,
    compression: Compression,
    stored_len: u32,
    raw_len: u32,
) -> Result<(), FormatError> {
    if compression.is_grouped() {
        if raw_len == 0 || raw_len as usize > MAX_GROUP_RAW {
            return Err(FormatError::bounds(what, "grouped raw_len", raw_len));
        }
        if stored_len == 0 && what == WHAT {
            return Ok(());
        }
    }
    if (stored_len as usize) < ENVELOPE_OVERHEAD {
        return Err(FormatError::bounds(what, "stored_len", stored_len));
    }
    if compression == Compression::Raw
        && raw_len as usize != stored_len as usize - ENVELOPE_OVERHEAD
    {
        return Err(FormatError::corrupted(
            what,
            format!(
                "raw blob with stored_len {stored_len} must have raw_len {}, not {raw_len}",
                stored_len - 32
            ),
        ));
    }
    Ok(())
}

/// One pack header entry (SPEC §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackEntry {
    /// Data or tree.
    pub blob_type: BlobType,
    /// Raw, zstd, grouped or based.
    pub compression: Compression,
    /// Length of the blob's envelope; for a grouped blob the group envelope's length on the
    /// group's first entry and 0 on the others.
    pub stored_len: u32,
    /// Length of the plaintext after decompression.
    pub raw_len: u32,
    /// The blob id.
    pub id: BlobId,
}

/// A blob ready to go into a pack: compressed if that helped, then sealed.
#[derive(Clone, Debug)]
pub struct SealedBlob {
    /// Its header entry.
    pub entry: PackEntry,
    /// Its envelope.
    pub bytes: Vec<u8>,
}

/// Compresses `plaintext` with zstd as `zstd` says (a level or a [`Zstd`]) if that makes it
/// strictly smaller (level 0: never), then seals it under `AAD(blob type, repo_id, id)`. `id` must be
/// `keys.blob_id(plaintext)`.
///
/// A blob of 4 GiB or more cannot be described by a pack entry: its lengths saturate, and
/// [`PackWriter::finish`] then fails.
pub fn seal_blob(
    keys: &RepoKeys,
    blob_type: BlobType,
    id: BlobId,
    plaintext: &[u8],
    zstd: impl Into<Zstd>,
    nonce_salt: [u8; 16],
) -> SealedBlob {
    let compressed = compress(zstd, plaintext);
    let (compression, body) = match &compressed {
        Some(c) => (Compression::Zstd, c.as_slice()),
        None => (Compression::Raw, plaintext),
    };
    let mut bytes = Vec::with_capacity(body.len() + ENVELOPE_OVERHEAD);
    let aad = aad(blob_type.object_type(), keys.repo_id(), &id.0);
    seal_into(&keys.master().enc_key, &aad, nonce_salt, body, &mut bytes);
    let entry = PackEntry {
        blob_type,
        compression,
        stored_len: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
        raw_len: u32::try_from(plaintext.len()).unwrap_or(u32::MAX),
        id,
    };
    SealedBlob { entry, bytes }
}

/// Opens a blob envelope, decompresses it and checks that its keyed hash equals `entry.id`
/// ([`FormatError::IdMismatch`] otherwise). For a grouped blob `envelope` is the whole group's
/// envelope, which is opened and decompressed to take out this one blob: a reader of several
/// blobs of one group opens it once with [`open_group`] and takes each with [`blob_in_group`].
pub fn open_blob(
    keys: &RepoKeys,
    entry: &IndexEntry,
    envelope: &[u8],
) -> Result<Vec<u8>, FormatError> {
    let what = match entry.blob_type {
        BlobType::Data => "data blob",
        BlobType::Tree => "tree blob",
    };
    if envelope.len() != entry.stored_len as usize {
        return Err(FormatError::corrupted(
            what,
            format!(
                "blob {} is {} bytes, the index says {}",
                entry.id.short(),
                envelope.len(),
                entry.stored_len
            ),
        ));
    }
    if entry.is_grouped() {
        // A based group fails here: its base has to be read first (`open_based_group`).
        let group = open_group(keys, entry, envelope)?;
        return blob_in_group(keys, entry, &group);
    }
    let aad = aad(entry.blob_type.object_type(), keys.repo_id(), &entry.id.0);
    let stored = open(&keys.master().enc_key, &aad, envelope, what)?;
    let plaintext = match entry.compression {
        Compression::Raw if stored.len() == entry.raw_len as usize => stored,
        Compression::Raw => {
            return Err(FormatError::corrupted(
                what,
                format!(
                    "raw blob is {} bytes, expected {}",
                    stored.len(),
                    entry.raw_len
                ),
            ));
        }
        Compression::Zstd => decompress_exact(&stored, entry.raw_len as usize, what)?,
        Compression::Group | Compression::Based => unreachable!("grouped blobs return above"),
    };
    let actual = keys.blob_id(&plaintext);
    if actual != entry.id {
        return Err(FormatError::IdMismatch {
            what,
            expected: entry.id.to_hex(),
            actual: actual.to_hex(),
        });
    }
    Ok(plaintext)
}

/// Whether `e` starts a based group (the entry its base record belongs to).
fn starts_based_group(e: &PackEntry) -> bool {
    e.compression == Compression::Based && e.stored_len != 0
}

/// The header plaintext for `entries` and the bases of their based groups, one per group in
/// entry order ([`PackWriter`] keeps them together; a mismatch is caught when it reads the
/// header back).
pub fn encode_header_plain(entries: &[PackEntry], bases: &[Vec<BlobId>]) -> Vec<u8> {
    let base_len: usize = bases.iter().map(|b| 1 + 32 * b.len()).sum();
    let mut out =
        Vec::with_capacity(PACK_HEADER_FIXED_LEN + entries.len() * PACK_ENTRY_LEN + base_len);
    out.put_u8(PACK_HEADER_VERSION);
    out.put_u32(u32::try_from(entries.len()).unwrap_or(u32::MAX));
    for e in entries {
        out.put_u8(e.blob_type as u8);
        out.put_u8(e.compression as u8);
        out.put_u32(e.stored_len);
        out.put_u32(e.raw_len);
        out.put_bytes(&e.id.0.0);
    }
    for b in bases {
        out.put_u8(u8::try_from(b.len()).unwrap_or(u8::MAX));
        for id in b {
            out.put_bytes(&id.0.0);
        }
    }
    out
}

/// Reads one base record (SPEC §7): count u8 (≥ 1), then that many distinct ids.
pub(crate) fn read_base(
    r: &mut Reader<'_>,
    what: &'static str,
) -> Result<Vec<BlobId>, FormatError> {
    let n = r.u8()? as usize;
    if n == 0 {
        return Err(FormatError::corrupted(
            what,
            "a based group's base names no blob",
        ));
    }
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let id = BlobId(r.id()?);
        if ids.contains(&id) {
            return Err(FormatError::corrupted(
                what,
                format!("a based group's base names blob {} twice", id.short()),
            ));
        }
        ids.push(id);
    }
    Ok(ids)
}

/// Parses a header plaintext: the entries, and the base of each based group in entry order.
pub fn decode_header_plain(b: &[u8]) -> Result<(Vec<PackEntry>, Vec<Vec<BlobId>>), FormatError> {
    let mut r = Reader::new(b, WHAT);
    let version = r.u8()?;
    if version != PACK_HEADER_VERSION {
        return Err(FormatError::UnsupportedVersion {
            what: WHAT,
            version,
        });
    }
    let n = r.count(PACK_ENTRY_LEN)?;
    if n == 0 {
        return Err(FormatError::corrupted(
            WHAT,
            "a pack holds at least one blob",
        ));
    }
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let blob_type = BlobType::from_u8(r.u8()?, WHAT)?;
        let compression = Compression::blob_from_u8(r.u8()?, WHAT)?;
        let stored_len = r.u32()?;
        let raw_len = r.u32()?;
        check_blob_lengths(WHAT, compression, stored_len, raw_len)?;
        if compression == Compression::Based && blob_type != BlobType::Data {
            return Err(FormatError::corrupted(WHAT, "a based group of tree blobs"));
        }
        entries.push(PackEntry {
            blob_type,
            compression,
            stored_len,
            raw_len,
            id: BlobId(r.id()?),
        });
    }
    let mut bases = Vec::new();
    for _ in entries.iter().filter(|e| starts_based_group(e)) {
        bases.push(read_base(&mut r, WHAT)?);
    }
    r.finish()?;
    Ok((entries, bases))
}

/// The header envelope length from a pack's last 4 bytes, checked against the pack length.
pub fn header_len(trailer: &[u8; 4], pack_len: u64) -> Result<u32, FormatError> {
    let len = u32::from_le_bytes(*trailer);
    if !(MIN_HEADER_LEN..=MAX_HEADER_LEN).contains(&(len as usize)) {
        return Err(FormatError::bounds(WHAT, "header_len", len));
    }
    if u64::from(len) + PACK_TRAILER_LEN as u64 > pack_len {
        return Err(FormatError::corrupted(
            WHAT,
            format!("header_len {len} does not fit in a pack of {pack_len} bytes"),
        ));
    }
    Ok(len)
}

/// What a pack header says: the blobs with their offsets, and the bases of its based groups.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackContents {
    /// Every blob, in pack order, with its offset (as an index file lists it).
    pub entries: Vec<IndexEntry>,
    /// The base of each based group, by the group envelope's offset, ascending.
    pub bases: Vec<GroupBase>,
}

/// The header of a whole pack held in memory: reads the trailer, then opens and decodes the
/// header it points to.
pub fn decode_pack_header(keys: &RepoKeys, pack: &[u8]) -> Result<PackContents, FormatError> {
    let len = pack.len();
    let trailer: [u8; PACK_TRAILER_LEN] = pack
        .get(len.saturating_sub(PACK_TRAILER_LEN)..)
        .and_then(|t| t.try_into().ok())
        .ok_or_else(|| FormatError::corrupted(WHAT, format!("only {len} bytes, no trailer")))?;
    // header_len checked that header + trailer fit in the pack, so the slice is in bounds.
    let hl = header_len(&trailer, len as u64)? as usize;
    decode_header(
        keys,
        &pack[len - PACK_TRAILER_LEN - hl..len - PACK_TRAILER_LEN],
        len as u64,
    )
}

/// Opens a header envelope and returns its entries with offsets and its based groups' bases;
/// checks that the blobs exactly fill the `pack_len - 4 - header_len` bytes before the header.
pub fn decode_header(
    keys: &RepoKeys,
    header_envelope: &[u8],
    pack_len: u64,
) -> Result<PackContents, FormatError> {
    if header_envelope.len() > MAX_HEADER_LEN {
        return Err(FormatError::bounds(
            WHAT,
            "header_len",
            header_envelope.len(),
        ));
    }
    let blobs_len = pack_len
        .checked_sub((header_envelope.len() + PACK_TRAILER_LEN) as u64)
        .ok_or_else(|| {
            FormatError::corrupted(
                WHAT,
                format!("header longer than the pack ({pack_len} bytes)"),
            )
        })?;
    let plain = keys.open_object(ObjectType::PackHeader, header_envelope, WHAT)?;
    let (entries, bases) = decode_header_plain(&plain)?;
    let out = index_entries(&entries)?;
    let offset = out.last().map_or(0, IndexEntry::end);
    if offset != blobs_len {
        return Err(FormatError::corrupted(
            WHAT,
            format!("blobs take {offset} bytes, but {blobs_len} bytes precede the header"),
        ));
    }
    let starts = out
        .iter()
        .filter(|e| e.compression == Compression::Based && e.group_offset == 0);
    let bases = starts
        .zip(bases)
        .map(|(e, ids)| GroupBase {
            offset: e.offset,
            ids,
        })
        .collect();
    Ok(PackContents {
        entries: out,
        bases,
    })
}

/// The index entries of a pack's header entries, in order: offsets are the sums of the
/// `stored_len`s before, and a grouped entry with `stored_len` 0 continues the group before it
/// (same blob type and compression, its plaintext right after the previous member's, the group
/// at most [`MAX_GROUP_RAW`] bytes).
pub fn index_entries(entries: &[PackEntry]) -> Result<Vec<IndexEntry>, FormatError> {
    let mut offset: u64 = 0;
    let mut out: Vec<IndexEntry> = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        if e.compression.is_grouped() && e.stored_len == 0 {
            let prev = match out.last() {
                Some(p) if p.compression == e.compression && p.blob_type == e.blob_type => p,
                _ => {
                    return Err(FormatError::corrupted(
                        WHAT,
                        format!(
                            "entry {i} continues a group, but no group of its type precedes it"
                        ),
                    ));
                }
            };
            let at = u64::from(prev.group_offset) + u64::from(prev.raw_len);
            if at + u64::from(e.raw_len) > MAX_GROUP_RAW as u64 {
                return Err(FormatError::bounds(
                    WHAT,
                    "group size",
                    at + u64::from(e.raw_len),
                ));
            }
            let mut next = IndexEntry::new(*e, prev.offset);
            next.stored_len = prev.stored_len;
            next.group_offset = at as u32; // ≤ MAX_GROUP_RAW, checked above
            out.push(next);
            continue;
        }
        let off =
            u32::try_from(offset).map_err(|_| FormatError::bounds(WHAT, "blob offset", offset))?;
        out.push(IndexEntry::new(*e, off));
        offset += u64::from(e.stored_len);
    }
    Ok(out)
}

/// Builds one pack in memory.
#[derive(Debug, Default)]
pub struct PackWriter {
    bytes: Vec<u8>,
    entries: Vec<PackEntry>,
    /// The base of each based group added, in order.
    bases: Vec<Vec<BlobId>>,
    /// The header plaintext's length so far.
    header_len: usize,
}

/// A complete pack, ready to store under `data/<id>`.
#[derive(Clone, Debug)]
pub struct FinishedPack {
    /// `BLAKE3(bytes)`.
    pub id: PackId,
    /// The whole pack.
    pub bytes: Vec<u8>,
    /// Its blobs, with offsets, for the index.
    pub entries: Vec<IndexEntry>,
    /// The bases of its based groups, for the index.
    pub bases: Vec<GroupBase>,
}

impl PackWriter {
    /// An empty pack.
    pub fn new() -> PackWriter {
        PackWriter {
            header_len: PACK_HEADER_FIXED_LEN,
            ..PackWriter::default()
        }
    }

    /// An empty pack that fills `buffer` (cleared first), with room for at least `size` bytes
    /// of blobs: a writer that knows the pack's size spares it growing by copying, and one
    /// that reuses the buffer of a pack it stored spares the system mapping new pages.
    pub fn with_buffer(mut buffer: Vec<u8>, size: usize) -> PackWriter {
        buffer.clear();
        buffer.reserve_exact(size);
        PackWriter {
            bytes: buffer,
            ..PackWriter::new()
        }
    }

    /// Appends a blob.
    pub fn add(&mut self, blob: SealedBlob) {
        self.bytes.extend_from_slice(&blob.bytes);
        self.entries.push(blob.entry);
        self.header_len += PACK_ENTRY_LEN;
    }

    /// Appends a compression group (its blobs' entries in order, and its base if it has one).
    pub fn add_group(&mut self, group: SealedGroup) {
        self.bytes.extend_from_slice(&group.bytes);
        self.header_len += group.entries.len() * PACK_ENTRY_LEN;
        self.entries.extend_from_slice(&group.entries);
        if !group.base.is_empty() {
            self.header_len += 1 + 32 * group.base.len();
            self.bases.push(group.base);
        }
    }

    /// Bytes of blobs so far (the pack will be this plus the header).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Blobs so far.
    pub fn count(&self) -> usize {
        self.entries.len()
    }

    /// No blobs yet.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the pack should be closed: it reached `target_size` bytes, or its header is as
    /// large as the format allows ([`MAX_PACK_ENTRIES`]), or nearly, so that one more group of
    /// up to 4096 blobs with a full base would not fit.
    pub fn is_full(&self, target_size: usize) -> bool {
        const ONE_GROUP: usize = 4096 * PACK_ENTRY_LEN + 1 + 32 * MAX_BASE_IDS;
        self.bytes.len() >= target_size
            || self.entries.len() >= MAX_PACK_ENTRIES
            || self.header_len + ONE_GROUP > MAX_HEADER_PLAIN_LEN
    }

    /// Appends the sealed header and its length, then decodes the header back and checks it.
    pub fn finish(
        self,
        keys: &RepoKeys,
        nonce_salt: [u8; 16],
    ) -> Result<FinishedPack, FormatError> {
        if self.entries.is_empty() {
            return Err(FormatError::corrupted(
                WHAT,
                "a pack holds at least one blob",
            ));
        }
        if self.entries.len() > MAX_PACK_ENTRIES || self.header_len > MAX_HEADER_PLAIN_LEN {
            return Err(FormatError::bounds(WHAT, "header length", self.header_len));
        }
        let PackWriter {
            mut bytes,
            entries,
            bases,
            ..
        } = self;
        let plain = encode_header_plain(&entries, &bases);
        let header_start = bytes.len();
        let aad = aad(ObjectType::PackHeader, keys.repo_id(), &crate::id::Id::ZERO);
        seal_into(&keys.master().enc_key, &aad, nonce_salt, &plain, &mut bytes);
        let envelope_len = bytes.len() - header_start;
        bytes.put_u32(envelope_len as u32); // at most MAX_HEADER_LEN: checked above
        // Read back what we wrote, exactly as a reader will.
        let pack_len = bytes.len() as u64;
        let mut trailer = [0u8; 4];
        trailer.copy_from_slice(&bytes[bytes.len() - 4..]);
        let hl = header_len(&trailer, pack_len)? as usize;
        let decoded = decode_header(
            keys,
            &bytes[bytes.len() - 4 - hl..bytes.len() - 4],
            pack_len,
        )?;
        let same_bases = decoded.bases.len() == bases.len()
            && decoded.bases.iter().zip(&bases).all(|(d, b)| d.ids == *b);
        if decoded.entries.len() != entries.len() || !same_bases {
            return Err(FormatError::corrupted(
                WHAT,
                "header read back differs from what was written",
            ));
        }
        let mut offset = 0usize;
        for (d, e) in decoded.entries.iter().zip(&entries) {
            let continues = e.compression.is_grouped() && e.stored_len == 0;
            if d.pack_entry() != *e || (!continues && d.offset as usize != offset) {
                return Err(FormatError::corrupted(
                    WHAT,
                    "header read back differs from what was written",
                ));
            }
            offset += e.stored_len as usize;
        }
        Ok(FinishedPack {
            id: PackId(object_id(&bytes)),
            bytes,
            entries: decoded.entries,
            bases: decoded.bases,
        })
    }
}

#[cfg(test)]
mod tests;
