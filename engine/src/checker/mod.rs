//! `check`: proves that a repository holds what its snapshots need (SPEC §12), without trusting
//! anything local.
//!
//! [`check`] builds a fresh, temporary index (a RocksDB database in the repository's cache
//! directory, removed when the check ends, also on error) from the index files it reads itself,
//! so a stale or damaged local cache can neither hide damage nor invent it, and memory does not
//! grow with the number of blobs. Then it runs the checks below, in this order, and collects
//! every finding in a [`CheckReport`] instead of stopping at the first.
//!
//! | # | check | SPEC | finding (kind) |
//! |---|---|---|---|
//! | 1 | names under `keys/`, `index/`, `snapshots/`, `data/` are object ids | §2 | warning `unknown-name` |
//! | 2 | every key file hashes to its name and decodes | §2, §4 | error `damaged-key` |
//! | 3 | every index file hashes to its name, decrypts and decodes | §2, §8 | error `damaged-index` |
//! | 4 | every pack an index file names is in `data/` | §12 *must* | error `missing-pack` |
//! | 5 | its size fits the blobs the index places in it; its header (read by range) decrypts and decodes, and the blobs exactly fill the bytes before it | §7 *must* | error `damaged-pack`, `damaged-pack-header` |
//! | 6 | its header lists exactly the entries the index file has for it (ids, types, compression, offsets, lengths) | §7, §8 | error `header-mismatch` |
//! | 7 | no blob is named twice; no pack is named by two index files; a pack holds one blob type | §7 *should* | warning `duplicate-blob`, `duplicate-pack`, `mixed-pack` |
//! | 8 | every pack in `data/` is named by an index file | §12 *should* | warning `unreferenced-pack` |
//! | 9 | every snapshot hashes to its name, decrypts and decodes | §2, §10 | error `damaged-snapshot` |
//! | 10 | every tree and content list reachable from a snapshot is indexed as a tree blob, reads, authenticates and decodes | §9, §12 *must* | error `missing-blob`, `damaged-tree`; warning `blob-type-mismatch` |
//! | 11 | every data blob a file names is indexed as a data blob, and their lengths add up to the file's size; a based group's base blobs are indexed, outside based groups | §7, §9, §12 *must* | error `missing-blob`, `file-size-mismatch`, `damaged-pack-header` (no base, or a chain); warning `blob-type-mismatch` |
//! | 12 | with [`ReadData`]: each selected pack hashes to its name, its header decodes, and every blob authenticates, decompresses and hashes (keyed) to its id | §2, §7, §12 *must* | error `damaged-pack`, `damaged-pack-header`, `damaged-blob`; warning `unverifiable-group` (a based group whose base prune removed: no snapshot needs it) |
//!
//! Checks 1-11 read only small objects and pack headers; check 12 reads whole packs and is the
//! only one that proves the data itself. [`ReadData::Subset`] and [`ReadData::Percent`] pick
//! packs by id, deterministically, so `1/7` … `7/7` on seven days cover every pack once a week.
//!
//! Errors are damage: some snapshot cannot be restored in full (or a key no longer opens).
//! Warnings are not: the repository is fine and `prune` or a cleanup tidies it. Each error lists
//! what it affects (snapshot and path, at most [`MAX_AFFECTS`] of them), found while walking the
//! snapshots: a missing pack names the files whose blobs it held. A failure that stops the
//! check itself (the storage cannot be listed or read, the temporary index cannot be written)
//! is returned as `Err`, not as a finding.
//!
//! The listings are taken in the reverse of the write order (snapshots, then index files, then
//! packs), so a backup running during the check cannot cause false errors: a snapshot it
//! lists had its index files stored before it, and they are listed after it.
//!
//! ```text
//! list keys/ snapshots/ index/ data/              names + sizes
//! key files                                       name hash, decode
//! index files (4 at a time)                       name hash, decrypt, decode -> temporary index
//!     packs they name (8 at a time)               size, header by range read, compare entries
//! data/ not named by any index                    warnings
//! read-data: selected packs (whole, 1-4 at a time) name hash, header, every blob (rayon)
//! snapshots -> trees (each once) -> content lists -> data blob ids (batched index lookups)
//! ```

mod read_data;
mod report;
mod structure;
mod walk;

use std::collections::HashMap;
use std::path::PathBuf;

use repo_format::{BlobId, PackId, Snapshot};

use crate::error::{Error, ErrorKind, Result};
use crate::index::cache::IndexCache;
use crate::progress::Progress;
use crate::repository::{Repository, random_bytes};

pub use read_data::ReadData;
pub use report::{CheckReport, CheckStats, Finding, FindingKind, MAX_AFFECTS};

/// Options for [`check`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CheckOptions {
    /// Which packs to read whole and verify blob by blob (default: none, structure only).
    pub read_data: ReadData,
}

/// Checks the repository (see the module docs for what is checked). Damage is reported in the
/// returned [`CheckReport`]; `Err` means the check could not be carried out (storage failure,
/// invalid options, the temporary index could not be created).
pub fn check(
    repo: &Repository,
    opts: &CheckOptions,
    progress: &dyn Progress,
) -> Result<CheckReport> {
    check_where(repo, opts, None, progress)
}

/// [`check`], with checks 10 and 11 only for the snapshots `select` accepts (`None`: all), e.g.
/// those of some stores (`cairn check --store`). Checks 1-9 still cover the whole repository
/// (a damaged snapshot cannot say whose it is). With read-data, only the packs holding blobs of
/// the selected snapshots are candidates for [`ReadData`]'s choice: their trees are walked once
/// first to find those packs, then again after the packs are read so damage is traced to files.
pub fn check_where(
    repo: &Repository,
    opts: &CheckOptions,
    select: Option<&dyn Fn(&Snapshot) -> bool>,
    progress: &dyn Progress,
) -> Result<CheckReport> {
    opts.read_data.validate()?;
    let select_given = select.is_some();
    let temp = TempIndex::create(repo)?;
    let mut ctx = Ctx {
        repo,
        index: temp.get(),
        findings: report::Findings::default(),
        stats: CheckStats::default(),
        packs: HashMap::new(),
        pack_errors: HashMap::new(),
        referenced: HashMap::new(),
        damaged_blobs: HashMap::new(),
    };
    let listing = structure::list_all(&mut ctx)?;
    structure::check_keys(&mut ctx, &listing.keys)?;
    structure::check_index_files(&mut ctx, listing.index)?;
    structure::report_unreferenced(&mut ctx);
    let all = |_: &Snapshot| true;
    let select = select.unwrap_or(&all);
    if opts.read_data.is_enabled() {
        // With a filter, a first walk finds the packs; its findings and counts are dropped
        // (the second walk reports them).
        let only = if select_given {
            let findings = std::mem::take(&mut ctx.findings);
            let stats = ctx.stats;
            let packs = walk::check_snapshots(&mut ctx, listing.snapshots.clone(), select)?;
            ctx.findings = findings;
            ctx.stats = stats;
            Some(packs)
        } else {
            None
        };
        read_data::read_packs(&mut ctx, opts.read_data, only.as_ref(), progress)?;
    }
    walk::check_snapshots(&mut ctx, listing.snapshots, select)?;
    let Ctx {
        findings, stats, ..
    } = ctx;
    let (errors, warnings) = findings.into_parts();
    Ok(CheckReport {
        errors,
        warnings,
        stats,
    })
}

/// State shared by the phases of one check.
pub(crate) struct Ctx<'a> {
    repo: &'a Repository,
    /// The temporary index built from the index files read by this check.
    index: &'a IndexCache,
    findings: report::Findings,
    stats: CheckStats,
    /// Every pack in `data/` (by a valid name) and its listed size.
    packs: HashMap<PackId, u64>,
    /// The first error reported against a pack (missing, damaged, header mismatch).
    pack_errors: HashMap<PackId, usize>,
    /// Packs named by an index file, and the first index file naming each.
    referenced: HashMap<PackId, repo_format::IndexId>,
    /// Blobs that read-data found damaged, and their error.
    damaged_blobs: HashMap<BlobId, usize>,
}

/// Whether an engine error means damage to report (a missing or corrupt object) rather than a
/// failure that stops the check (storage, local I/O, cache).
fn is_damage(e: &Error) -> bool {
    matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::NotFound)
}

/// The temporary index of one check: created in the repository's cache directory under a name
/// no other process uses, deleted when dropped, whether the check succeeded or not.
struct TempIndex {
    /// `Some` from creation until drop (taken there so the database closes before its files go).
    cache: Option<IndexCache>,
    dir: PathBuf,
}

impl TempIndex {
    fn create(repo: &Repository) -> Result<TempIndex> {
        let dir = repo.cache_dir().join(format!(
            "check-{}-{}",
            std::process::id(),
            hex::encode(random_bytes::<8>()?)
        ));
        // The guard exists before the database, so a half-created directory is removed too.
        let mut temp = TempIndex { cache: None, dir };
        let cache = IndexCache::open(&temp.dir).map_err(|e| {
            Error::cache(
                format!(
                    "cannot create the temporary index for the check in {}; check that the cache directory is writable (--cache-dir)",
                    temp.dir.display()
                ),
                e,
            )
        })?;
        temp.cache = Some(cache);
        Ok(temp)
    }

    fn get(&self) -> &IndexCache {
        // Invariant: `cache` is Some from `create` until `drop`.
        self.cache
            .as_ref()
            .unwrap_or_else(|| unreachable!("the temporary index is only taken in drop"))
    }
}

impl Drop for TempIndex {
    fn drop(&mut self) {
        if let Some(cache) = self.cache.take() {
            cache.discard();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
