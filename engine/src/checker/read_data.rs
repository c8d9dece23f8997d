//! Check 12: read whole packs and verify every byte: the pack's name, its header, and every
//! blob (AEAD, decompression, keyed hash, length). Which packs is a [`ReadData`] choice.
//!
//! Packs are fetched by tokio tasks, a few at a time (fewer when packs are large, so memory
//! stays near 256 MiB), while the calling thread verifies the previous one with rayon.

use std::collections::HashSet;
use std::fmt;
use std::pin::pin;
use std::str::FromStr;

use futures::StreamExt;
use rayon::prelude::*;
use repo_format::{Compression, FormatError, GroupBase, IndexEntry, PackId, object_id};

use super::Ctx;
use super::report::FindingKind;
use crate::backend::{BackendErrorKind, FileType};
use crate::error::{Error, ErrorKind, Result};
use crate::index::cache::IndexCache;
use crate::progress::Progress;
use crate::repository::Repository;

/// Packs fetched at once, at most.
const MAX_IN_FLIGHT: u64 = 4;
/// Bytes of packs in flight, roughly (at least one pack is always fetched).
const IN_FLIGHT_BYTES: u64 = 256 << 20;

/// Which packs `check` reads whole. Selection is by pack id only, so it is deterministic and
/// independent of time or listing order.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum ReadData {
    /// Structure only: no pack is read whole.
    #[default]
    No,
    /// Every pack.
    All,
    /// Part `n` of `m` (1 ≤ n ≤ m): the packs whose id's first 8 bytes, as a little-endian
    /// u64, are `n - 1` modulo `m`. Running `1/m` … `m/m` reads every pack exactly once.
    Subset {
        /// Which part, from 1.
        n: u32,
        /// How many parts.
        m: u32,
    },
    /// About `p` percent of the packs (0 < p ≤ 100): those whose id's first 8 bytes, as a
    /// little-endian u64, are below `p / 100 × 2^64`. The same packs on every run.
    Percent(f64),
}

impl ReadData {
    /// Whether any pack is read.
    pub fn is_enabled(&self) -> bool {
        *self != ReadData::No
    }

    /// Whether pack `id` is selected.
    pub fn selects(&self, id: &PackId) -> bool {
        let mut first = [0u8; 8];
        first.copy_from_slice(&id.0.0[..8]);
        let x = u64::from_le_bytes(first);
        match *self {
            ReadData::No => false,
            ReadData::All => true,
            ReadData::Subset { n, m } => {
                (1..=m).contains(&n) && x % u64::from(m) == u64::from(n) - 1
            }
            ReadData::Percent(p) => {
                // In u128 so that 100 % (2^64) is above every id, and p is never rounded up.
                let threshold = (p / 100.0 * 18_446_744_073_709_551_616.0) as u128;
                u128::from(x) < threshold
            }
        }
    }

    /// Rejects a subset or percentage out of range.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::new(ErrorKind::InvalidInput, m));
        match *self {
            ReadData::Subset { n, m } if n == 0 || m == 0 || n > m => bad(format!(
                "read-data subset {n}/{m}: give N/M with 1 <= N <= M, e.g. 1/7 (then 2/7 … 7/7 on later runs)"
            )),
            ReadData::Percent(p) if !(p > 0.0 && p <= 100.0) => bad(format!(
                "read-data subset {p}%: give a percentage above 0 and at most 100, e.g. 10%"
            )),
            _ => Ok(()),
        }
    }
}

/// Parses `N/M` (1 ≤ N ≤ M) or `P%` (0 < P ≤ 100), as `--read-data-subset` takes them.
impl FromStr for ReadData {
    type Err = Error;

    fn from_str(s: &str) -> Result<ReadData> {
        let s = s.trim();
        let parsed = if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| {
                Error::new(
                    ErrorKind::InvalidInput,
                    format!("'{s}' is not a percentage: give e.g. 10% (above 0, at most 100)"),
                )
            })?;
            ReadData::Percent(p)
        } else if let Some((n, m)) = s.split_once('/') {
            let num = |x: &str| {
                x.trim().parse::<u32>().map_err(|_| {
                    Error::new(
                        ErrorKind::InvalidInput,
                        format!("'{s}' is not a subset: give N/M with 1 <= N <= M, e.g. 1/7"),
                    )
                })
            };
            ReadData::Subset {
                n: num(n)?,
                m: num(m)?,
            }
        } else {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("'{s}' is not a subset: give N/M (e.g. 1/7) or a percentage (e.g. 10%)"),
            ));
        };
        parsed.validate()?;
        Ok(parsed)
    }
}

impl fmt::Display for ReadData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadData::No => f.write_str("none"),
            ReadData::All => f.write_str("all"),
            ReadData::Subset { n, m } => write!(f, "{n}/{m}"),
            ReadData::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// Reads and verifies the selected packs (of those listed in `data/`, referenced or not; or,
/// with `only`, of those in it).
pub(super) fn read_packs(
    ctx: &mut Ctx,
    which: ReadData,
    only: Option<&HashSet<PackId>>,
    progress: &dyn Progress,
) -> Result<()> {
    let mut selected: Vec<(PackId, u64)> = ctx
        .packs
        .iter()
        .filter(|(id, _)| which.selects(id) && only.is_none_or(|o| o.contains(id)))
        .map(|(id, size)| (*id, *size))
        .collect();
    selected.sort_unstable();
    let total: u64 = selected.iter().map(|p| p.1).sum();
    progress.set_total(selected.len() as u64, total);
    let largest = selected.iter().map(|p| p.1).max().unwrap_or(1).max(1);
    let in_flight = (IN_FLIGHT_BYTES / largest).clamp(1, MAX_IN_FLIGHT) as usize;

    let repo = ctx.repo;
    let backend = repo.backend().clone();
    let runtime = repo.runtime().clone();
    // Each fetch is its own task, so it goes on while this thread verifies an earlier pack.
    let mut fetches = pin!(
        futures::stream::iter(selected)
            .map(move |(id, size)| {
                let backend = backend.clone();
                let task =
                    runtime.spawn(async move { backend.get(FileType::Pack, &id.0.to_hex()).await });
                async move { (id, size, task.await) }
            })
            .buffered(in_flight)
    );
    while let Some((id, _, fetched)) = repo.block_on(fetches.next()) {
        let p = id.short();
        let bytes = match fetched {
            Ok(Ok(b)) => b,
            Ok(Err(e)) if e.kind() == BackendErrorKind::NotFound => {
                record_pack_error(
                    ctx,
                    id,
                    FindingKind::MissingPack,
                    format!("pack {p} disappeared while being read"),
                );
                continue;
            }
            Ok(Err(e)) => return Err(Error::backend(format!("cannot read pack {p}"), e)),
            Err(join) => {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!("the task reading pack {p} failed: {join}"),
                ));
            }
        };
        ctx.stats.packs_read += 1;
        ctx.stats.bytes_read += bytes.len() as u64;
        verify_pack(ctx, id, &bytes);
        progress.bytes_done(bytes.len() as u64);
    }
    Ok(())
}

/// Verifies one whole pack: blob errors are reported per blob; a pack-level error only when no
/// blob-level error explains the damage (a replaced pack, a damaged header or trailer).
fn verify_pack(ctx: &mut Ctx, id: PackId, bytes: &[u8]) {
    let p = id.short();
    let keys = ctx.repo.keys();
    // The pack's hash (one thread) runs beside the blobs' verification (the others).
    let (actual, (header, failures)) = rayon::join(
        || object_id(bytes),
        || match repo_format::decode_pack_header(keys, bytes) {
            Ok(header) => {
                let (index, repo) = (ctx.index, ctx.repo);
                let bases = &header.bases;
                // Each based group's base is loaded by the task that opens the group, so the
                // bases of a pack are not all held at once.
                let base = move |offset: u32| match bases.iter().find(|b| b.offset == offset) {
                    Some(b) => load_base(index, repo, b),
                    None => Err(BaseFailure::Damaged(FormatError::corrupted(
                        "based compression group",
                        "the pack header gives it no base",
                    ))),
                };
                let failures = verify_blobs(keys, &header.entries, bytes, &base);
                (Ok(header.entries), failures)
            }
            Err(e) => (Err(e), Failures::default()),
        },
    );
    let name_ok = actual == id.0;
    let entries = match header {
        Ok(e) => e,
        Err(e) => {
            let message = if name_ok {
                format!("pack {p}: its header cannot be read: {e}")
            } else {
                format!(
                    "pack {p} is damaged: its contents hash to {}, not its name, and its header cannot be read ({e}); {}",
                    actual.short(),
                    next_step(ctx, &id)
                )
            };
            let kind = if name_ok {
                FindingKind::DamagedPackHeader
            } else {
                FindingKind::DamagedPack
            };
            record_pack_error(ctx, id, kind, message);
            return;
        }
    };
    let Failures {
        blobs: failures,
        groups,
        unverifiable,
    } = failures;
    let mut unverified = 0;
    for (offset, members, why) in unverifiable {
        unverified += members;
        ctx.findings.warn(
            FindingKind::UnverifiableGroup,
            id.to_hex(),
            format!(
                "pack {p}: the based compression group at offset {offset} ({members} blobs) cannot be verified: {why}; prune removed its base because no snapshot needs the group, and removes the group when it repacks the pack"
            ),
        );
    }
    // A group holding bytes no member claims: its blobs verify, so no file is affected; the
    // pack's header does not describe it exactly (SPEC §7).
    for err in groups {
        ctx.findings.error(
            FindingKind::DamagedPackHeader,
            id.to_hex(),
            format!("pack {p}: {err}; its blobs verify, so no file is affected"),
        );
    }
    ctx.stats.blobs_verified += (entries.len() - failures.len() - unverified) as u64;
    for (e, err) in &failures {
        let i = ctx.findings.error(
            FindingKind::DamagedBlob,
            e.id.to_hex(),
            format!(
                "blob {} ({:?}, {} bytes at offset {} of pack {p}) is damaged: {err}; the files listed below cannot be restored in full",
                e.id.short(),
                e.blob_type,
                e.stored_len,
                e.offset
            ),
        );
        ctx.damaged_blobs.insert(e.id, i);
    }
    if !name_ok && failures.is_empty() {
        record_pack_error(
            ctx,
            id,
            FindingKind::DamagedPack,
            format!(
                "pack {p} does not hash to its name (its contents hash to {}), though its header and blobs verify: it was replaced by another pack; {}",
                actual.short(),
                next_step(ctx, &id)
            ),
        );
    }
}

/// What [`verify_blobs`] found wrong.
#[derive(Default)]
struct Failures {
    /// The blobs that fail, and why.
    blobs: Vec<(IndexEntry, FormatError)>,
    /// Compression groups whose every member verifies but that hold more than their members.
    groups: Vec<FormatError>,
    /// Based groups whose base is no longer indexed: their offset, member count and why.
    unverifiable: Vec<(u32, usize, String)>,
}

/// Why a based group's base could not be had.
enum BaseFailure {
    /// A base blob no index file names: prune removed it because no snapshot needs the group
    /// (if one does, the walk reports the missing base against its files).
    Unindexed(String),
    /// Anything else: the members fail.
    Damaged(FormatError),
}

/// The base of one based group (SPEC §7): each base blob located in this check's own index
/// and read (a base in a based group itself through its own base, to a bounded depth). A base
/// that cannot be read is the reason the group's members fail.
fn load_base(
    ctx_index: &IndexCache,
    repo: &Repository,
    b: &GroupBase,
) -> Result<Vec<u8>, BaseFailure> {
    const WHAT: &str = "based compression group";
    let damaged = |detail: String| BaseFailure::Damaged(FormatError::corrupted(WHAT, detail));
    // The most a base may hold, reserved once (untouched pages cost nothing): growing it by
    // doubling copied up to 4 MiB again for every based group.
    let mut out = Vec::with_capacity(repo_format::format::MAX_BASE_RAW);
    for id in &b.ids {
        let loc = ctx_index
            .lookup(id)
            .map_err(|e| {
                damaged(format!(
                    "its base blob {} cannot be looked up: {e}",
                    id.short()
                ))
            })?
            .ok_or_else(|| {
                BaseFailure::Unindexed(format!(
                    "its base blob {} is named by no index file",
                    id.short()
                ))
            })?;
        repo.append_base_blob(&loc, &mut out)
            .map_err(|e| damaged(format!("its base blob {} cannot be read: {e}", id.short())))?;
        if out.len() > repo_format::format::MAX_BASE_RAW {
            return Err(damaged("its base is over 4 MiB".into()));
        }
    }
    Ok(out)
}

/// Opens every blob of a pack (authenticated, decompressed, id and length checked) in parallel;
/// returns the ones that fail. `base` loads the base of the based group at an offset.
fn verify_blobs(
    keys: &repo_format::RepoKeys,
    entries: &[IndexEntry],
    bytes: &[u8],
    base: &(dyn Fn(u32) -> Result<Vec<u8>, BaseFailure> + Sync),
) -> Failures {
    // A compression group's members are neighbours in the header: one task opens it once.
    entries
        .par_chunk_by(repo_format::same_group)
        .map(|run| {
            if run[0].compression == Compression::Based {
                return verify_based_group(keys, run, bytes, base(run[0].offset));
            }
            let mut groups = repo_format::GroupCache::new();
            let blobs: Vec<_> = run
                .iter()
                .filter_map(|e| {
                    let envelope = bytes
                        .get(e.offset as usize..e.end() as usize)
                        .unwrap_or(&[]);
                    groups.open(keys, e, envelope).err().map(|err| (*e, err))
                })
                .collect();
            // The header lists every member: the group must hold their plaintexts and no more.
            let groups = match run.last() {
                Some(last) if blobs.is_empty() => groups.check_complete(last).err(),
                _ => None,
            };
            Failures {
                blobs,
                groups: groups.into_iter().collect(),
                unverifiable: Vec::new(),
            }
        })
        .reduce(Failures::default, |mut a, b| {
            a.blobs.extend(b.blobs);
            a.groups.extend(b.groups);
            a.unverifiable.extend(b.unverifiable);
            a
        })
}

/// [`verify_blobs`] for the members of one based group: opened with its base, each member's
/// id checked, the group holding exactly their plaintexts.
fn verify_based_group(
    keys: &repo_format::RepoKeys,
    run: &[IndexEntry],
    bytes: &[u8],
    base: Result<Vec<u8>, BaseFailure>,
) -> Failures {
    let first = &run[0];
    let envelope = bytes
        .get(first.offset as usize..first.end() as usize)
        .unwrap_or(&[]);
    let opened = match base {
        Ok(base) => repo_format::open_based_group(keys, first, envelope, &base),
        Err(BaseFailure::Damaged(e)) => Err(e),
        Err(BaseFailure::Unindexed(why)) => {
            return Failures {
                unverifiable: vec![(first.offset, run.len(), why)],
                ..Failures::default()
            };
        }
    };
    let group = match opened {
        Ok(g) => g,
        Err(e) => {
            return Failures {
                blobs: run.iter().map(|m| (*m, e.clone())).collect(),
                ..Failures::default()
            };
        }
    };
    let blobs: Vec<_> = run
        .iter()
        .filter_map(|m| {
            repo_format::blob_in_group(keys, m, &group)
                .err()
                .map(|e| (*m, e))
        })
        .collect();
    let last = &run[run.len() - 1];
    let groups = if blobs.is_empty() && group.len() != last.group_range().end {
        vec![FormatError::corrupted(
            "data blob",
            format!(
                "the based compression group at offset {} holds {} bytes, its members {}",
                last.offset,
                group.len(),
                last.group_range().end
            ),
        )]
    } else {
        Vec::new()
    };
    Failures {
        blobs,
        groups,
        unverifiable: Vec::new(),
    }
}

/// What to do about a damaged pack: nothing depends on one that no index file names.
fn next_step(ctx: &Ctx, id: &PackId) -> &'static str {
    if ctx.referenced.contains_key(id) {
        "put the original back from a copy of the repository if you have one"
    } else {
        "no index file names it, so nothing depends on it: delete it (prune will remove it too)"
    }
}

/// Reports an error against a pack, unless the structure checks already did.
fn record_pack_error(ctx: &mut Ctx, id: PackId, kind: FindingKind, message: String) {
    if ctx.pack_errors.contains_key(&id) {
        return;
    }
    let i = ctx.findings.error(kind, id.to_hex(), message);
    ctx.pack_errors.insert(id, i);
}

#[cfg(test)]
mod tests {
    use super::*;
    use repo_format::{BlobType, Id, MasterKey, PackWriter, RepoKeys, seal_group};

    fn text(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| b"abcdefgh"[(i + seed as usize) % 8])
            .collect()
    }

    /// A pack of one group of `datas` whose header lists only the first `listed` members.
    fn pack(keys: &RepoKeys, datas: &[Vec<u8>], listed: usize) -> Vec<u8> {
        let blobs: Vec<_> = datas
            .iter()
            .map(|d| (keys.blob_id(d), d.as_slice()))
            .collect();
        let mut group = seal_group(keys, BlobType::Data, &blobs, 3, [1; 16]).expect("group");
        group.entries.truncate(listed);
        let mut w = PackWriter::new();
        w.add_group(group);
        w.finish(keys, [2; 16]).expect("pack").bytes
    }

    #[test]
    fn a_group_with_unlisted_bytes_is_reported_apart_from_its_blobs() {
        let no_base = |_: u32| {
            Err(BaseFailure::Damaged(FormatError::corrupted(
                "test",
                "no based groups here",
            )))
        };
        let keys = RepoKeys::new(Id([5; 32]), MasterKey::from_bytes([6; 72]));
        let datas = vec![text(3000, 0), text(2000, 1), text(1000, 2)];
        let whole = pack(&keys, &datas, 3);
        let entries = repo_format::decode_pack_header(&keys, &whole)
            .expect("header")
            .entries;
        let f = verify_blobs(&keys, &entries, &whole, &no_base);
        assert!(f.blobs.is_empty() && f.groups.is_empty());
        // The header leaves the last member out: both listed blobs verify, the group does not.
        let short = pack(&keys, &datas, 2);
        let entries = repo_format::decode_pack_header(&keys, &short)
            .expect("header")
            .entries;
        let f = verify_blobs(&keys, &entries, &short, &no_base);
        assert!(f.blobs.is_empty(), "{:?}", f.blobs);
        assert_eq!(f.groups.len(), 1);
        assert!(
            f.groups[0]
                .to_string()
                .contains("holds 6000 bytes, its members 5000")
        );
    }
}
