//! Snapshots (SPEC §10).
//!
//! ```text
//! plaintext: compression u8 (0 raw, 1 zstd) | body
//! body: version u8 = 1 | TLV record (§11):
//!   1 time: i64 ns + i32 utc offset   2 tree id          3 paths: u32 count, u32 len + bytes each
//!   4 hostname                        5 username         6 tags: u32 count, u16 len + UTF-8 each
//!   7 parent id (optional)            8 summary (optional, 13 × 8 bytes)
//!   9 status u8 (written only when failed)   10 chunker profile (optional)   11 program
//!   12 original id (optional)         13 flags u64: bit 0 protected (written only when non-zero)
//!   14 failure: UTF-8 (optional)      15 store: UTF-8, non-empty (optional)
//!   0x8000 copied_from id (optional tag: readers that do not know it ignore it)
//! ```
//!
//! Tags 1 and 2 are required; an absent 3–6 or 11 means empty, an absent 7, 8 or 10 means none,
//! an absent 9 means complete, an absent 12 means not a repair, an absent 13 means no flags, an
//! absent 14 means no failure description, an absent 15 means no store, an absent 0x8000 means
//! not a copy. A flag bit this version does not define is a decoding error (tag 13 is critical).

use crate::compress::{decompress_bounded, tagged_body};
use crate::config::ChunkerProfile;
use crate::crypto::{ObjectType, RepoKeys};
use crate::error::FormatError;
use crate::format::{
    MAX_SNAPSHOT_BODY, MAX_TAG_LEN, SNAPSHOT_COMPRESSION_LEVEL, SNAPSHOT_FLAG_PROTECTED,
    SNAPSHOT_FLAGS_KNOWN, SNAPSHOT_VERSION,
};
use crate::id::{BlobId, SnapshotId};
use crate::pack::Compression;
use crate::tlv::{TlvReader, TlvWriter, expect_len, unknown_tag};
use crate::wire::{Put, Reader, len_u32};

const WHAT: &str = "snapshot";

const TAG_TIME: u16 = 1;
const TAG_TREE: u16 = 2;
const TAG_PATHS: u16 = 3;
const TAG_HOSTNAME: u16 = 4;
const TAG_USERNAME: u16 = 5;
const TAG_TAGS: u16 = 6;
const TAG_PARENT: u16 = 7;
const TAG_SUMMARY: u16 = 8;
const TAG_STATUS: u16 = 9;
const TAG_CHUNKER: u16 = 10;
const TAG_PROGRAM: u16 = 11;
const TAG_ORIGINAL: u16 = 12;
const TAG_FLAGS: u16 = 13;
const TAG_FAILURE: u16 = 14;
const TAG_STORE: u16 = 15;
/// An optional tag (SPEC §11): a cairn that does not know it reads the copy as a plain snapshot.
const TAG_COPIED_FROM: u16 = 0x8000;

/// What a backup did (SPEC §10, tag 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[allow(missing_docs)] // the field names are the SPEC's
pub struct Summary {
    pub start_ns: i64,
    pub end_ns: i64,
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    pub dirs: u64,
    pub bytes_read: u64,
    pub total_bytes: u64,
    pub blobs_added: u64,
    pub data_added_raw: u64,
    pub data_added_stored: u64,
    pub warnings: u64,
    pub total_files: u64,
}

const SUMMARY_LEN: usize = 13 * 8;

impl Summary {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SUMMARY_LEN);
        out.put_i64(self.start_ns);
        out.put_i64(self.end_ns);
        for v in [
            self.files_new,
            self.files_changed,
            self.files_unmodified,
            self.dirs,
            self.bytes_read,
            self.total_bytes,
            self.blobs_added,
            self.data_added_raw,
            self.data_added_stored,
            self.warnings,
            self.total_files,
        ] {
            out.put_u64(v);
        }
        out
    }

    fn decode(r: &mut Reader<'_>) -> Result<Summary, FormatError> {
        Ok(Summary {
            start_ns: r.i64()?,
            end_ns: r.i64()?,
            files_new: r.u64()?,
            files_changed: r.u64()?,
            files_unmodified: r.u64()?,
            dirs: r.u64()?,
            bytes_read: r.u64()?,
            total_bytes: r.u64()?,
            blobs_added: r.u64()?,
            data_added_raw: r.u64()?,
            data_added_stored: r.u64()?,
            warnings: r.u64()?,
            total_files: r.u64()?,
        })
    }
}

/// Whether the backup finished (SPEC §10, tag 9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum SnapshotStatus {
    /// Everything was backed up (the default; not written).
    #[default]
    Complete,
    /// The backup stopped early, e.g. its dump command failed midway: the snapshot holds what
    /// was read, and retention does not count it (SPEC §10).
    Failed,
}

/// A snapshot (SPEC §10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// When the backup started, Unix nanoseconds (UTC).
    pub time_ns: i64,
    /// UTC offset of the writer's zone, seconds.
    pub utc_offset: i32,
    /// The root tree.
    pub tree: BlobId,
    /// The paths as given, absolute.
    pub paths: Vec<Vec<u8>>,
    /// Host name.
    pub hostname: String,
    /// User name.
    pub username: String,
    /// Tags: non-empty; written sorted and without duplicates.
    pub tags: Vec<String>,
    /// The snapshot this one was compared with.
    pub parent: Option<SnapshotId>,
    /// Statistics.
    pub summary: Option<Summary>,
    /// Complete or failed.
    pub status: SnapshotStatus,
    /// The profile used for file contents.
    pub chunker: Option<ChunkerProfile>,
    /// The writer, e.g. `cairn 0.1.0`.
    pub program: String,
    /// For a snapshot written by `repair snapshots`: the snapshot it replaces.
    pub original: Option<SnapshotId>,
    /// Never removed by a retention policy (flags bit 0, tag 13).
    pub protected: bool,
    /// What went wrong, on a failed snapshot (tag 14), e.g. a dump command's exit status and the
    /// last lines of its stderr.
    pub failure: Option<String>,
    /// The cairn.toml store this snapshot backs up (tag 15; non-empty).
    pub store: Option<String>,
    /// For a snapshot written by `cairn copy`: the snapshot it is a copy of, in the repository
    /// where that was first written (tag 0x8000; see SPEC §10).
    pub copied_from: Option<SnapshotId>,
}

fn utf8(what: &'static str, field: &str, b: &[u8]) -> Result<String, FormatError> {
    String::from_utf8(b.to_vec())
        .map_err(|_| FormatError::corrupted(what, format!("{field} is not UTF-8")))
}

impl Snapshot {
    /// The sealed snapshot (body zstd-compressed when that makes it smaller).
    pub fn encode(&self, keys: &RepoKeys, nonce_salt: [u8; 16]) -> Result<Vec<u8>, FormatError> {
        let body = self.encode_body()?;
        let plain = tagged_body(SNAPSHOT_COMPRESSION_LEVEL, &body);
        Ok(keys.seal_object(ObjectType::Snapshot, nonce_salt, &plain))
    }

    /// Opens and parses a snapshot.
    pub fn decode(keys: &RepoKeys, bytes: &[u8]) -> Result<Snapshot, FormatError> {
        let plain = keys.open_object(ObjectType::Snapshot, bytes, WHAT)?;
        let mut r = Reader::new(&plain, WHAT);
        let compression = Compression::from_u8(r.u8()?, WHAT)?;
        let rest = r.rest();
        match compression {
            Compression::Group | Compression::Based => Err(FormatError::corrupted(
                WHAT,
                format!("unknown compression {}", compression as u8),
            )),
            Compression::Raw => Snapshot::decode_body(rest),
            Compression::Zstd => {
                Snapshot::decode_body(&decompress_bounded(rest, MAX_SNAPSHOT_BODY, WHAT)?)
            }
        }
    }

    /// The body: version byte and TLV record. Tags are written sorted and deduplicated.
    pub fn encode_body(&self) -> Result<Vec<u8>, FormatError> {
        let mut w = TlvWriter::new(vec![SNAPSHOT_VERSION], WHAT);
        let mut time = self.time_ns.to_le_bytes().to_vec();
        time.put_i32(self.utc_offset);
        w.field(TAG_TIME, &time)?;
        w.field(TAG_TREE, &self.tree.0.0)?;
        let mut paths = Vec::new();
        paths.put_u32(len_u32(WHAT, "path count", self.paths.len())?);
        for p in &self.paths {
            paths.put_u32(len_u32(WHAT, "path length", p.len())?);
            paths.put_bytes(p);
        }
        w.field(TAG_PATHS, &paths)?;
        w.field(TAG_HOSTNAME, self.hostname.as_bytes())?;
        w.field(TAG_USERNAME, self.username.as_bytes())?;
        let mut tags: Vec<&String> = self.tags.iter().collect();
        tags.sort();
        tags.dedup();
        let mut t = Vec::new();
        t.put_u32(len_u32(WHAT, "tag count", tags.len())?);
        for tag in tags {
            if tag.is_empty() {
                return Err(FormatError::corrupted(WHAT, "empty tag"));
            }
            let len = u16::try_from(tag.len())
                .map_err(|_| FormatError::bounds(WHAT, "tag length", tag.len()))?;
            t.put_u16(len);
            t.put_bytes(tag.as_bytes());
        }
        w.field(TAG_TAGS, &t)?;
        if let Some(parent) = &self.parent {
            w.field(TAG_PARENT, &parent.0.0)?;
        }
        if let Some(s) = &self.summary {
            w.field(TAG_SUMMARY, &s.encode())?;
        }
        if self.status == SnapshotStatus::Failed {
            w.field(TAG_STATUS, &[1])?;
        }
        if let Some(c) = &self.chunker {
            let mut v = Vec::new();
            c.encode_into(WHAT, &mut v)?;
            w.field(TAG_CHUNKER, &v)?;
        }
        w.field(TAG_PROGRAM, self.program.as_bytes())?;
        if let Some(original) = &self.original {
            w.field(TAG_ORIGINAL, &original.0.0)?;
        }
        let flags = if self.protected {
            SNAPSHOT_FLAG_PROTECTED
        } else {
            0
        };
        if flags != 0 {
            w.field(TAG_FLAGS, &flags.to_le_bytes())?;
        }
        if let Some(failure) = &self.failure {
            w.field(TAG_FAILURE, failure.as_bytes())?;
        }
        if let Some(store) = &self.store {
            if store.is_empty() {
                return Err(FormatError::corrupted(WHAT, "empty store name"));
            }
            w.field(TAG_STORE, store.as_bytes())?;
        }
        if let Some(copied_from) = &self.copied_from {
            w.field(TAG_COPIED_FROM, &copied_from.0.0)?;
        }
        Ok(w.finish())
    }

    /// Parses a body.
    pub fn decode_body(b: &[u8]) -> Result<Snapshot, FormatError> {
        let mut r = Reader::new(b, WHAT);
        let version = r.u8()?;
        if version != SNAPSHOT_VERSION {
            return Err(FormatError::UnsupportedVersion {
                what: WHAT,
                version,
            });
        }
        let mut time = None;
        let mut tree = None;
        let mut s = Snapshot {
            time_ns: 0,
            utc_offset: 0,
            tree: BlobId::default(),
            paths: Vec::new(),
            hostname: String::new(),
            username: String::new(),
            tags: Vec::new(),
            parent: None,
            summary: None,
            status: SnapshotStatus::Complete,
            chunker: None,
            program: String::new(),
            original: None,
            protected: false,
            failure: None,
            store: None,
            copied_from: None,
        };
        let mut tlv = TlvReader::new(r.rest(), WHAT);
        while let Some((tag, v)) = tlv.next_field()? {
            let mut r = Reader::new(v, WHAT);
            match tag {
                TAG_TIME => {
                    expect_len(WHAT, tag, v, 12)?;
                    time = Some((r.i64()?, r.i32()?));
                }
                TAG_TREE => {
                    expect_len(WHAT, tag, v, 32)?;
                    tree = Some(BlobId(r.id()?));
                }
                TAG_PATHS => {
                    let n = r.count(4)?;
                    s.paths.reserve_exact(n);
                    for _ in 0..n {
                        let len = r.u32()? as usize;
                        s.paths.push(r.bytes(len)?.to_vec());
                    }
                    r.finish()?;
                }
                TAG_HOSTNAME => s.hostname = utf8(WHAT, "hostname", v)?,
                TAG_USERNAME => s.username = utf8(WHAT, "username", v)?,
                TAG_TAGS => {
                    let n = r.count(2 + 1)?;
                    s.tags.reserve_exact(n);
                    for _ in 0..n {
                        let len = r.u16()? as usize;
                        let tag = utf8(WHAT, "tag", r.bytes(len)?)?;
                        if tag.is_empty() || tag.len() > MAX_TAG_LEN {
                            return Err(FormatError::corrupted(WHAT, "empty tag"));
                        }
                        if s.tags.last().is_some_and(|prev| prev >= &tag) {
                            return Err(FormatError::corrupted(
                                WHAT,
                                format!("tag {tag:?} is out of order or duplicated"),
                            ));
                        }
                        s.tags.push(tag);
                    }
                    r.finish()?;
                }
                TAG_PARENT => {
                    expect_len(WHAT, tag, v, 32)?;
                    s.parent = Some(SnapshotId(r.id()?));
                }
                TAG_SUMMARY => {
                    expect_len(WHAT, tag, v, SUMMARY_LEN)?;
                    s.summary = Some(Summary::decode(&mut r)?);
                }
                TAG_STATUS => {
                    expect_len(WHAT, tag, v, 1)?;
                    s.status = match v[0] {
                        0 => SnapshotStatus::Complete,
                        1 => SnapshotStatus::Failed,
                        x => {
                            return Err(FormatError::corrupted(
                                WHAT,
                                format!("unknown status {x}"),
                            ));
                        }
                    };
                }
                TAG_CHUNKER => {
                    s.chunker = Some(ChunkerProfile::decode_from(&mut r)?);
                    r.finish()?;
                }
                TAG_PROGRAM => s.program = utf8(WHAT, "program", v)?,
                TAG_ORIGINAL => {
                    expect_len(WHAT, tag, v, 32)?;
                    s.original = Some(SnapshotId(r.id()?));
                }
                TAG_FLAGS => {
                    expect_len(WHAT, tag, v, 8)?;
                    let flags = r.u64()?;
                    if flags & !SNAPSHOT_FLAGS_KNOWN != 0 {
                        return Err(FormatError::corrupted(
                            WHAT,
                            format!(
                                "unknown flag bits {:#x}; written by a newer cairn?",
                                flags & !SNAPSHOT_FLAGS_KNOWN
                            ),
                        ));
                    }
                    s.protected = flags & SNAPSHOT_FLAG_PROTECTED != 0;
                }
                TAG_FAILURE => s.failure = Some(utf8(WHAT, "failure", v)?),
                TAG_STORE => {
                    if v.is_empty() {
                        return Err(FormatError::corrupted(WHAT, "empty store name"));
                    }
                    s.store = Some(utf8(WHAT, "store", v)?);
                }
                TAG_COPIED_FROM => {
                    expect_len(WHAT, tag, v, 32)?;
                    s.copied_from = Some(SnapshotId(r.id()?));
                }
                _ => unknown_tag(WHAT, tag)?,
            }
        }
        let missing =
            |tag: u16| FormatError::corrupted(WHAT, format!("required tag {tag} is missing"));
        (s.time_ns, s.utc_offset) = time.ok_or_else(|| missing(TAG_TIME))?;
        s.tree = tree.ok_or_else(|| missing(TAG_TREE))?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests;
