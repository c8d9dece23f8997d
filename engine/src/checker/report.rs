//! What a check found: [`Finding`]s (errors and warnings), [`CheckStats`], and the
//! [`CheckReport`] that holds them.

use std::fmt;

/// At most this many affected snapshot paths are kept per finding; the rest are counted.
pub const MAX_AFFECTS: usize = 10;

/// What kind of problem a [`Finding`] is. Its [`FindingKind::as_str`] name is stable: scripts
/// match on it (`cairn check --json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum FindingKind {
    /// Error: a key file does not hash to its name or does not decode.
    DamagedKey,
    /// Error: an index file does not hash to its name, decrypt or decode.
    DamagedIndex,
    /// Error: an index file names a pack that is not in `data/`.
    MissingPack,
    /// Error: a pack is truncated, or does not hash to its name (read-data).
    DamagedPack,
    /// Error: a pack's header cannot be read, decrypted or decoded.
    DamagedPackHeader,
    /// Error: a pack's header and an index file disagree about the pack's blobs.
    HeaderMismatch,
    /// Error: a snapshot does not hash to its name, decrypt or decode.
    DamagedSnapshot,
    /// Error: a blob a snapshot needs is not in any index file.
    MissingBlob,
    /// Warning: a blob is indexed as data where a tree is used, or the other way round (dedup
    /// is by id, so this is harmless: the packs just mix the types).
    BlobTypeMismatch,
    /// Error: a tree or content list cannot be read, authenticated or decoded.
    DamagedTree,
    /// Error: a blob fails authentication, decompression or its keyed hash (read-data).
    DamagedBlob,
    /// Error: a file's data blobs do not add up to the size its tree records.
    FileSizeMismatch,
    /// Warning: a name in a repository directory that is not an object id.
    UnknownName,
    /// Warning: a blob named by more than one index entry.
    DuplicateBlob,
    /// Warning: a pack named by more than one index file.
    DuplicatePack,
    /// Warning: a pack holding both data and tree blobs.
    MixedPack,
    /// Warning: a pack no index file names.
    UnreferencedPack,
    /// Warning: a based compression group whose base is no longer indexed (prune removed it:
    /// no snapshot needs the group, which stays until its pack is repacked); its blobs cannot
    /// be verified, and no file needs them.
    UnverifiableGroup,
}

impl FindingKind {
    /// The kind's stable name, e.g. `missing-pack`.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::DamagedKey => "damaged-key",
            FindingKind::DamagedIndex => "damaged-index",
            FindingKind::MissingPack => "missing-pack",
            FindingKind::DamagedPack => "damaged-pack",
            FindingKind::DamagedPackHeader => "damaged-pack-header",
            FindingKind::HeaderMismatch => "header-mismatch",
            FindingKind::DamagedSnapshot => "damaged-snapshot",
            FindingKind::MissingBlob => "missing-blob",
            FindingKind::BlobTypeMismatch => "blob-type-mismatch",
            FindingKind::DamagedTree => "damaged-tree",
            FindingKind::DamagedBlob => "damaged-blob",
            FindingKind::FileSizeMismatch => "file-size-mismatch",
            FindingKind::UnknownName => "unknown-name",
            FindingKind::DuplicateBlob => "duplicate-blob",
            FindingKind::DuplicatePack => "duplicate-pack",
            FindingKind::MixedPack => "mixed-pack",
            FindingKind::UnreferencedPack => "unreferenced-pack",
            FindingKind::UnverifiableGroup => "unverifiable-group",
        }
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem found by a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// What kind of problem.
    pub kind: FindingKind,
    /// The object concerned: a full id in hex (pack, index file, snapshot, key file, blob; for
    /// `file-size-mismatch` the tree holding the file), or a repository path for a name that
    /// is not an id.
    pub object: String,
    /// What is wrong, where, and what to do next.
    pub message: String,
    /// What it affects, as `snapshot <short id>: <path>` (at most [`MAX_AFFECTS`]).
    pub affects: Vec<String>,
    /// How many more affected paths there were beyond `affects`.
    pub affects_omitted: u64,
}

/// Counts of what a check looked at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckStats {
    /// Key files listed.
    pub key_files: u64,
    /// Snapshots listed.
    pub snapshots: u64,
    /// Snapshots whose trees and data were checked: every one that loads, or those a
    /// [`check_where`](super::check_where) filter selects.
    pub snapshots_checked: u64,
    /// Index files listed.
    pub index_files: u64,
    /// Packs in `data/`.
    pub packs: u64,
    /// Bytes of the packs in `data/`.
    pub pack_bytes: u64,
    /// Packs named by an index file whose header was checked.
    pub pack_headers_checked: u64,
    /// Blob entries in the index files that could be read.
    pub blobs: u64,
    /// Distinct trees and content lists checked.
    pub trees: u64,
    /// Data blob references checked (a blob used by two files counts twice).
    pub data_blob_refs: u64,
    /// Packs read whole (read-data).
    pub packs_read: u64,
    /// Bytes read by read-data.
    pub bytes_read: u64,
    /// Blobs decrypted, decompressed and hashed successfully (read-data).
    pub blobs_verified: u64,
}

/// Everything a check found.
#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    /// Damage: some snapshot cannot be restored in full, or a key no longer opens.
    pub errors: Vec<Finding>,
    /// Untidiness that loses nothing (garbage, duplicates, unknown names).
    pub warnings: Vec<Finding>,
    /// What was checked.
    pub stats: CheckStats,
}

impl CheckReport {
    /// No errors (warnings allowed).
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }

    /// The errors of one kind (tests, scripts).
    pub fn errors_of(&self, kind: FindingKind) -> impl Iterator<Item = &Finding> {
        self.errors.iter().filter(move |f| f.kind == kind)
    }

    /// The warnings of one kind.
    pub fn warnings_of(&self, kind: FindingKind) -> impl Iterator<Item = &Finding> {
        self.warnings.iter().filter(move |f| f.kind == kind)
    }
}

/// The findings while a check runs; errors are addressed by index so later phases can add
/// what they affect.
#[derive(Default)]
pub(crate) struct Findings {
    errors: Vec<Finding>,
    warnings: Vec<Finding>,
    /// The last affect added to each error: the walk reports one path many times in a row
    /// (every blob of a file in a missing pack), and counts it once.
    last_affect: Vec<String>,
}

impl Findings {
    /// Records an error; returns its index for [`Findings::affect`].
    pub(crate) fn error(
        &mut self,
        kind: FindingKind,
        object: impl Into<String>,
        message: impl Into<String>,
    ) -> usize {
        self.errors.push(finding(kind, object, message));
        self.last_affect.push(String::new());
        self.errors.len() - 1
    }

    /// Records a warning.
    pub(crate) fn warn(
        &mut self,
        kind: FindingKind,
        object: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.warnings.push(finding(kind, object, message));
    }

    /// Notes that error `i` affects `what` (kept up to [`MAX_AFFECTS`], then counted).
    pub(crate) fn affect(&mut self, i: usize, what: &str) {
        let (Some(f), Some(last)) = (self.errors.get_mut(i), self.last_affect.get_mut(i)) else {
            return;
        };
        if last == what || f.affects.iter().any(|a| a == what) {
            return;
        }
        what.clone_into(last);
        if f.affects.len() < MAX_AFFECTS {
            f.affects.push(what.to_owned());
        } else {
            f.affects_omitted += 1;
        }
    }

    pub(crate) fn into_parts(self) -> (Vec<Finding>, Vec<Finding>) {
        (self.errors, self.warnings)
    }
}

fn finding(kind: FindingKind, object: impl Into<String>, message: impl Into<String>) -> Finding {
    Finding {
        kind,
        object: object.into(),
        message: message.into(),
        affects: Vec::new(),
        affects_omitted: 0,
    }
}
