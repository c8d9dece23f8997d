//! cairn's repository format: bytes in, typed values out. No I/O, no async.
//!
//! Every module implements one section of `SPEC.md` (which is normative; names here are its
//! names):
//!
//! | module | SPEC | main types |
//! |---|---|---|
//! | [`id`] | §1 | [`Id`], [`BlobId`], [`PackId`], [`IndexId`], [`SnapshotId`], [`KeyId`] |
//! | [`crypto`] | §4, §5 | [`MasterKey`], [`RepoKeys`], envelopes ([`seal`], [`open`], [`aad`]) |
//! | [`key`] | §4 | [`KeyFile`], [`KdfParams`] |
//! | [`config`] | §6 | [`Config`], [`ChunkerProfile`] |
//! | [`chunker`] | §3, §6 | [`Chunker`], [`ChunkerParams`] |
//! | [`compress`] | §3 | zstd, bounded on the way back |
//! | [`pack`] | §7 | [`PackWriter`], [`seal_blob`], [`open_blob`], [`decode_header`] |
//! | [`index`] | §8 | [`IndexFile`], [`IndexEntry`] |
//! | [`tree`] | §9 | [`Tree`], [`Node`], [`ContentList`], [`ContentBuilder`] |
//! | [`snapshot`] | §10 | [`Snapshot`], [`Summary`] |
//! | [`plan`] | §17 | [`Plan`] |
//! | [`lease`] | §17 | [`Lease`], [`LeaseState`], [`lease_name`], [`parse_lease_name`] |
//! | [`format`] | all | every magic number, version and limit |
//!
//! Decoders take `&[u8]` and return `Result<_, FormatError>`. They never panic and never
//! allocate more than the input justifies. Randomness (nonce salts, KDF salts, key material) is
//! passed in, so every encoding is deterministic under test.
//!
//! # Example
//!
//! ```
//! use repo_format::{BlobType, IndexEntry, MasterKey, PackWriter, RepoKeys, Id, open_blob, seal_blob, decode_header, header_len};
//!
//! // In cairn the key material and salts come from the OS CSPRNG.
//! let keys = RepoKeys::new(Id([0x33; 32]), MasterKey::from_bytes([7; 72]));
//! let data = b"hello, world";
//! let id = keys.blob_id(data);
//!
//! let mut pack = PackWriter::new();
//! pack.add(seal_blob(&keys, BlobType::Data, id, data, 3, [1; 16]));
//! let pack = pack.finish(&keys, [2; 16])?;
//!
//! // Reading: the trailer gives the header, the header gives the blobs.
//! let len = pack.bytes.len();
//! let hl = header_len(&pack.bytes[len - 4..].try_into().unwrap(), len as u64)? as usize;
//! let entries: Vec<IndexEntry> = decode_header(&keys, &pack.bytes[len - 4 - hl..len - 4], len as u64)?.entries;
//! let e = &entries[0];
//! let blob = &pack.bytes[e.offset as usize..(e.offset + e.stored_len) as usize];
//! assert_eq!(open_blob(&keys, e, blob)?, data);
//! # Ok::<(), repo_format::FormatError>(())
//! ```

// Every integer in the format is little-endian, written with `to_le_bytes` (SPEC §1).
#![deny(clippy::big_endian_bytes, clippy::host_endian_bytes)]

pub mod chunker;
pub mod compress;
pub mod config;
pub mod crypto;
pub mod error;
pub mod format;
pub mod group;
pub mod id;
pub mod index;
pub mod key;
pub mod lease;
pub mod pack;
pub mod plan;
pub mod snapshot;
mod tlv;
pub mod tree;
mod wire;

pub use chunker::{Chunker, ChunkerParams};
pub use compress::{Zstd, compress, decompress_bounded, decompress_exact};
pub use config::{ChunkerProfile, Config};
pub use crypto::{MasterKey, ObjectType, RepoKeys, aad, open, seal, seal_into};
pub use error::FormatError;
pub use group::{
    GroupCache, SealedGroup, blob_in_group, open_based_group, open_group, same_group,
    seal_based_group, seal_group, seal_joined_based_group, seal_joined_group,
};
pub use id::{BlobId, Id, IndexId, KeyId, PackId, SnapshotId, object_id};
pub use index::{GroupBase, IndexEntry, IndexFile, IndexPack, stored_shares};
pub use key::{KdfParams, KeyFile};
pub use lease::{Lease, LeaseState, lease_aad_id, lease_name, parse_lease_name};
pub use pack::{
    BlobType, Compression, FinishedPack, PackContents, PackEntry, PackWriter, SealedBlob,
    decode_header, decode_header_plain, decode_pack_header, encode_header_plain, header_len,
    open_blob, seal_blob,
};
pub use plan::Plan;
pub use snapshot::{Snapshot, SnapshotStatus, Summary};
pub use tree::{Content, ContentBuilder, ContentList, Node, NodeKind, Timestamp, Tree};
