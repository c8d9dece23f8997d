//! Every magic number, version and limit of the repository format, with where it comes from.
//!
//! **Do not change any of these values.** Each is part of the bytes of format version 1
//! (`SPEC.md`); changing one makes existing repositories unreadable. A new value means a new
//! format version, a `SPEC.md` change and new golden files (`tests/golden/`).

/// Repository format version (SPEC §6, config byte 8; also byte 5 of every AAD, SPEC §5).
pub const FORMAT_VERSION: u8 = 1;

// ---- §4 key files and the master key ----

/// First 8 bytes of a key file (SPEC §4).
pub const KEY_MAGIC: [u8; 8] = *b"CAIRNKEY";
/// Key file version (SPEC §4, byte 8).
pub const KEY_FILE_VERSION: u8 = 1;
/// KDF identifier for Argon2id v0x13 (SPEC §4, byte 9).
pub const KDF_ARGON2ID: u8 = 1;
/// Master key plaintext version (SPEC §4, master key byte 0).
pub const MASTER_KEY_VERSION: u8 = 1;
/// Master key plaintext length: version 1 + `enc_key` 32 + `id_key` 32 + `chunker_seed` 8.
pub const MASTER_KEY_LEN: usize = 1 + 32 + 32 + 8;
/// Fixed part of a key file before the names: magic 8 + version 1 + kdf 1 + m, t, p (4 each)
/// + salt 32 + created 8.
pub const KEY_FILE_FIXED_LEN: usize = 8 + 1 + 1 + 12 + 32 + 8;
/// Length of the key file's envelope: the master key plus the envelope overhead (73 + 32).
pub const KEY_ENVELOPE_LEN: usize = MASTER_KEY_LEN + ENVELOPE_OVERHEAD;
/// Smallest Argon2 memory cost in KiB (SPEC §4): Argon2's own minimum of 8 blocks.
pub const KDF_M_MIN: u32 = 8;
/// Largest Argon2 memory cost in KiB: 4 GiB, so a hostile key file cannot ask for more.
pub const KDF_M_MAX: u32 = 4 * 1024 * 1024;
/// Smallest Argon2 time cost (passes).
pub const KDF_T_MIN: u32 = 1;
/// Largest Argon2 time cost: bounds the time a hostile key file can make cairn spin.
pub const KDF_T_MAX: u32 = 64;
/// Smallest Argon2 parallelism.
pub const KDF_P_MIN: u32 = 1;
/// Largest Argon2 parallelism.
pub const KDF_P_MAX: u32 = 16;
/// Argon2 output length: one AES-256 root key.
pub const KDF_OUTPUT_LEN: usize = 32;

// ---- §5 envelopes ----

/// BLAKE3 `derive_key` context for per-envelope subkeys (SPEC §3, §5).
pub const ENVELOPE_SUBKEY_CONTEXT: &str = "cairn 2026-11 envelope subkey v1";
/// Random salt at the start of every envelope (SPEC §5): 128 bits, so subkeys collide only
/// after ~2^64 envelopes (birthday bound).
pub const NONCE_SALT_LEN: usize = 16;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// Bytes an envelope adds to its plaintext: salt 16 + tag 16.
pub const ENVELOPE_OVERHEAD: usize = NONCE_SALT_LEN + TAG_LEN;
/// First bytes of every AAD (SPEC §5).
pub const AAD_PREFIX: [u8; 5] = *b"CAIRN";
/// AAD length: prefix 5 + version 1 + type 1 + `repo_id` 32 + id 32.
pub const AAD_LEN: usize = 5 + 1 + 1 + 32 + 32;

// ---- §6 config ----

/// First 8 bytes of the config (SPEC §6).
pub const CONFIG_MAGIC: [u8; 8] = *b"CAIRNCFG";
/// Length of the config's plain header: magic 8 + version 1 + `repo_id` 32.
pub const CONFIG_HEADER_LEN: usize = 8 + 1 + 32;
/// Default zstd level (SPEC §3).
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 3;
/// Highest zstd level the config allows (SPEC §6); 0 means "store raw".
pub const MAX_COMPRESSION_LEVEL: i32 = 19;
/// Smallest data pack target size (SPEC §6): 1 MiB.
pub const DATA_PACK_SIZE_MIN: u32 = 1 << 20;
/// Smallest tree pack target size (SPEC §6): 64 KiB.
pub const TREE_PACK_SIZE_MIN: u32 = 64 << 10;
/// Largest pack target size (SPEC §6): 1 GiB, which keeps blob offsets well inside u32.
pub const PACK_SIZE_MAX: u32 = 1 << 30;
/// Default data pack target size written by `init`: 16 MiB.
pub const DEFAULT_DATA_PACK_SIZE: u32 = 16 << 20;
/// Default tree pack target size written by `init`: 4 MiB.
pub const DEFAULT_TREE_PACK_SIZE: u32 = 4 << 20;
/// Most chunker profiles in a config (SPEC §6).
pub const MAX_PROFILES: usize = 16;
/// Prune grace period when the config has no tag 6 (SPEC §6): 43 200 s = 12 h.
pub const DEFAULT_PRUNE_GRACE_SECS: u64 = 12 * 3600;
/// Shortest prune grace period (SPEC §6): 1 s.
pub const PRUNE_GRACE_MIN: u64 = 1;
/// Longest prune grace period (SPEC §6): 2 592 000 s = 30 days.
pub const PRUNE_GRACE_MAX: u64 = 30 * 24 * 3600;

// ---- chunker bounds (SPEC §6, FastCDC 2020's) ----

/// Smallest allowed `min` chunk size (`fastcdc::v2020::MINIMUM_MIN`).
pub const CHUNK_MIN_MIN: u32 = 64;
/// Largest allowed `min` chunk size: 1 MiB (`fastcdc::v2020::MINIMUM_MAX`).
pub const CHUNK_MIN_MAX: u32 = 1 << 20;
/// Smallest allowed `avg` chunk size (`fastcdc::v2020::AVERAGE_MIN`).
pub const CHUNK_AVG_MIN: u32 = 256;
/// Largest allowed `avg` chunk size: 4 MiB (`fastcdc::v2020::AVERAGE_MAX`).
pub const CHUNK_AVG_MAX: u32 = 4 << 20;
/// Smallest allowed `max` chunk size: 1 KiB (`fastcdc::v2020::MAXIMUM_MIN`).
pub const CHUNK_MAX_MIN: u32 = 1 << 10;
/// Largest allowed `max` chunk size: 16 MiB (`fastcdc::v2020::MAXIMUM_MAX`).
pub const CHUNK_MAX_MAX: u32 = 16 << 20;
/// FastCDC normalization level (SPEC §3): masks use `log2(avg) ± 1` bits.
pub const CHUNK_NORMALIZATION: u32 = 1;

// ---- §7 packs ----

/// Pack header plaintext version (SPEC §7).
pub const PACK_HEADER_VERSION: u8 = 1;
/// One pack header entry: type 1 + compression 1 + `stored_len` 4 + `raw_len` 4 + id 32.
pub const PACK_ENTRY_LEN: usize = 1 + 1 + 4 + 4 + 32;
/// Pack header plaintext before the entries: version 1 + count 4.
pub const PACK_HEADER_FIXED_LEN: usize = 1 + 4;
/// Largest header plaintext (SPEC §7): 16 MiB.
pub const MAX_HEADER_PLAIN_LEN: usize = 16 << 20;
/// Largest header envelope, `header_len` ≤ 16 MiB + 32 (SPEC §7).
pub const MAX_HEADER_LEN: usize = MAX_HEADER_PLAIN_LEN + ENVELOPE_OVERHEAD;
/// Most blobs in one pack: as many entries as fit in [`MAX_HEADER_PLAIN_LEN`] (399 457).
pub const MAX_PACK_ENTRIES: usize = (MAX_HEADER_PLAIN_LEN - PACK_HEADER_FIXED_LEN) / PACK_ENTRY_LEN;
/// Smallest header envelope: one entry.
pub const MIN_HEADER_LEN: usize = PACK_HEADER_FIXED_LEN + PACK_ENTRY_LEN + ENVELOPE_OVERHEAD;
/// The trailing `header_len` field.
pub const PACK_TRAILER_LEN: usize = 4;
/// Largest plaintext of a compression group (SPEC §7): 16 MiB. Readers reject a group whose
/// frame announces or produces more.
pub const MAX_GROUP_RAW: usize = 16 << 20;
/// Most blobs in a based group's base (SPEC §7): its count is one byte.
pub const MAX_BASE_IDS: usize = 255;
/// Largest plaintext of a based group's base, all its blobs together (SPEC §7): 4 MiB.
pub const MAX_BASE_RAW: usize = 4 << 20;
/// The window writers give a based group's frame: base (≤ 4 MiB) and group (≤ 1.25 MiB as the
/// saver fills them) fit in 8 MiB, so every byte of the base stays in reach.
pub const BASED_WINDOW_LOG: u32 = 23;
/// The window readers set for a based group's frame; one-shot decompression writes into its
/// output buffer (at most 16 MiB, SPEC §7), which bounds memory whatever the frame says.
pub const BASED_WINDOW_LOG_MAX: u32 = 24;

// ---- §8 index files ----

/// Index body version (SPEC §8).
pub const INDEX_VERSION: u8 = 1;
/// One index entry: type 1 + compression 1 + offset 4 + `stored_len` 4 + `raw_len` 4 + id 32.
pub const INDEX_ENTRY_LEN: usize = 1 + 1 + 4 + 4 + 4 + 32;
/// What a grouped index entry adds: `group_offset` u32 (SPEC §8).
pub const INDEX_GROUP_EXTRA: usize = 4;
/// Smallest pack record in an index body: id 32 + count 4 + one entry.
pub const INDEX_PACK_MIN_LEN: usize = 32 + 4 + INDEX_ENTRY_LEN;
/// Largest decompressed index body (SPEC §8): 1 GiB.
pub const MAX_INDEX_BODY: usize = 1 << 30;

// ---- §9 trees and content lists ----

/// First byte of a tree blob that is a directory listing.
pub const TREE_KIND: u8 = 1;
/// First byte of a tree blob that is a content list.
pub const CONTENT_LIST_KIND: u8 = 2;
/// Tree version (SPEC §9).
pub const TREE_VERSION: u8 = 1;
/// Content list version (SPEC §9).
pub const CONTENT_LIST_VERSION: u8 = 1;
/// Files with up to this many data blobs list them directly in their node (SPEC §9).
pub const DIRECT_CONTENT_MAX: usize = 1024;
/// Ids per content list; only the last list of a file may be shorter (SPEC §9).
pub const CONTENT_LIST_LEN: usize = 8192;
/// Longest node name: the u16 length field.
pub const MAX_NAME_LEN: usize = u16::MAX as usize;
/// Longest symlink target (SPEC §9).
pub const MAX_SYMLINK_LEN: usize = 65_536;
/// Shortest encoded node (a fifo with a one-byte name): name 2+1, kind 1, mode/uid/gid 12,
/// mtime/ctime 24, inode/device/nlink/size 32.
pub const MIN_NODE_LEN: usize = 3 + 1 + 12 + 24 + 32;
/// Permission bits kept in `mode` (`st_mode & 0o7777`).
pub const MODE_MASK: u32 = 0o7777;

// ---- §10 snapshots ----

/// Snapshot body version (SPEC §10).
pub const SNAPSHOT_VERSION: u8 = 1;
/// Largest decompressed snapshot body: 16 MiB (a snapshot is a few hundred bytes plus its
/// paths and tags).
pub const MAX_SNAPSHOT_BODY: usize = 16 << 20;
/// zstd level for snapshot bodies (they have no config-given level of their own).
pub const SNAPSHOT_COMPRESSION_LEVEL: i32 = 3;
/// Longest snapshot tag: its u16 length field.
pub const MAX_TAG_LEN: usize = u16::MAX as usize;
/// Snapshot `flags` (SPEC §10, tag 13) bit 0: protected, never removed by a retention policy.
pub const SNAPSHOT_FLAG_PROTECTED: u64 = 1;
/// Every snapshot flag bit this version defines; any other bit set is a decoding error.
pub const SNAPSHOT_FLAGS_KNOWN: u64 = SNAPSHOT_FLAG_PROTECTED;

// ---- §11 TLV ----

/// TLV field header: tag 2 + len 4.
pub const TLV_HEADER_LEN: usize = 2 + 4;
/// Tags from here on are optional; tags below are critical (SPEC §11).
pub const TLV_OPTIONAL_MIN: u16 = 0x8000;

// ---- §17 prune plans and leases ----

/// Prune plan body version (SPEC §17).
pub const PLAN_VERSION: u8 = 1;
/// Largest decompressed plan body (SPEC §17): 256 MiB (about 8 million pack ids).
pub const MAX_PLAN_BODY: usize = 256 << 20;
/// zstd level for plan bodies (they have no config-given level of their own).
pub const PLAN_COMPRESSION_LEVEL: i32 = 3;
/// Prune lease plaintext version (SPEC §17).
pub const LEASE_VERSION: u8 = 1;
/// Largest lease plaintext (SPEC §17): 64 KiB.
pub const MAX_LEASE_BODY: usize = 64 << 10;
/// A lease's object name: its number as exactly this many decimal digits, zero-padded (u64::MAX
/// has 20 digits), so that names sort by number.
pub const LEASE_NAME_LEN: usize = 20;
/// Length of a lease's `holder` token (SPEC §17, tag 2).
pub const LEASE_HOLDER_LEN: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_lengths() {
        assert_eq!(MASTER_KEY_LEN, 73);
        assert_eq!(KEY_FILE_FIXED_LEN, 62);
        assert_eq!(KEY_ENVELOPE_LEN, 105);
        assert_eq!(AAD_LEN, 71);
        assert_eq!(PACK_ENTRY_LEN, 42);
        assert_eq!(INDEX_ENTRY_LEN, 46);
        assert_eq!(MIN_NODE_LEN, 72);
        assert_eq!(MAX_PACK_ENTRIES, 399_457);
        assert_eq!(DEFAULT_PRUNE_GRACE_SECS, 43_200);
        assert_eq!(PRUNE_GRACE_MAX, 2_592_000);
        assert_eq!(u64::MAX.to_string().len(), LEASE_NAME_LEN);
        assert_eq!(CHUNK_MIN_MIN, fastcdc::v2020::MINIMUM_MIN);
        assert_eq!(CHUNK_MIN_MAX, fastcdc::v2020::MINIMUM_MAX);
        assert_eq!(CHUNK_AVG_MIN, fastcdc::v2020::AVERAGE_MIN);
        assert_eq!(CHUNK_AVG_MAX, fastcdc::v2020::AVERAGE_MAX);
        assert_eq!(CHUNK_MAX_MIN, fastcdc::v2020::MAXIMUM_MIN);
        assert_eq!(CHUNK_MAX_MAX, fastcdc::v2020::MAXIMUM_MAX);
    }
}
