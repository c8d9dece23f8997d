//! Repacking: copying the blobs the snapshots still need out of partly used packs into new
//! packs, so the old packs can be marked for deletion like wholly unused ones.
//!
//! Every blob is read, authenticated and checked against its id before it is stored again (a
//! damaged pack is left alone and reported, never copied); the new packs and their index file
//! are stored before the plan that marks the old packs is written (SPEC §18).

use repo_format::{BlobId, PackId, decode_pack_header};

use super::used::{USED, UsedSet};
use crate::archiver::saver::BlobSaver;
use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::index::cache::BlobLocation;
use crate::progress::Progress;
use crate::repository::{Repository, get_verified};

/// What a repack did.
#[derive(Clone, Debug, Default)]
pub struct RepackReport {
    /// Packs whose needed blobs are now stored elsewhere (these may be marked).
    pub packs: Vec<PackId>,
    /// Blobs copied.
    pub blobs: u64,
    /// Their plaintext bytes.
    pub raw_bytes: u64,
    /// Packs left alone because they could not be read or are damaged, with the reason.
    pub skipped: Vec<(PackId, String)>,
    /// The packs the copies went to.
    pub new_packs: Vec<PackId>,
    /// The index files that name them.
    pub index_files: Vec<repo_format::IndexId>,
}

/// Copies the needed blobs of `packs` into new packs.
pub fn repack(
    repo: &Repository,
    packs: &[PackId],
    used: &mut UsedSet,
    progress: &dyn Progress,
) -> Result<RepackReport> {
    copy_packs(
        repo,
        packs,
        &mut |ids| {
            Ok(used
                .get_many(ids)?
                .into_iter()
                .map(|f| f & USED != 0)
                .collect())
        },
        progress,
    )
}

/// Copies the blobs of `packs` that `wanted` selects into new packs (stored again even though
/// the index names them already). The new packs are in [`RepackReport::new_packs`].
pub fn copy_packs(
    repo: &Repository,
    packs: &[PackId],
    wanted: &mut dyn FnMut(&[BlobId]) -> Result<Vec<bool>>,
    progress: &dyn Progress,
) -> Result<RepackReport> {
    let mut report = RepackReport::default();
    if packs.is_empty() {
        return Ok(report);
    }
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|scope| -> Result<()> {
        let saver = BlobSaver::start(scope, repo, workers);
        for pack in packs {
            let bytes =
                match repo.block_on(get_verified(&**repo.backend(), FileType::Pack, &pack.0)) {
                    Ok(b) => b,
                    Err(e) => {
                        report
                            .skipped
                            .push((*pack, crate::restorer::error_chain(&e)));
                        continue;
                    }
                };
            let entries = match decode_pack_header(repo.keys(), &bytes) {
                Ok(h) => h.entries,
                Err(e) => {
                    report.skipped.push((*pack, e.to_string()));
                    continue;
                }
            };
            let ids: Vec<_> = entries.iter().map(|e| e.id).collect();
            let flags = wanted(&ids)?;
            // Open every needed blob first: a damaged one leaves the whole pack alone.
            let mut blobs = Vec::new();
            let mut damage = None;
            let mut groups = repo_format::GroupCache::new();
            for (entry, flag) in entries.iter().zip(flags) {
                if !flag {
                    continue;
                }
                let start = entry.offset as usize;
                let end = start + entry.stored_len as usize;
                let opened = bytes
                    .get(start..end)
                    .ok_or_else(|| format!("blob {} lies outside the pack", entry.id.0.short()))
                    .and_then(|env| {
                        // A based group is opened with its base (SPEC §7); its members are
                        // stored again in plain groups, so a repack never makes a chain.
                        let loc = BlobLocation {
                            pack: *pack,
                            entry: *entry,
                        };
                        repo.open_blob_cached(&mut groups, &loc, env)
                            .map_err(|e| crate::restorer::error_chain(&e))
                    });
                match opened {
                    Ok(plain) => blobs.push((entry.blob_type, entry.id, plain)),
                    Err(why) => {
                        damage = Some(why);
                        break;
                    }
                }
            }
            if let Some(why) = damage {
                report.skipped.push((*pack, why));
                continue;
            }
            for (blob_type, id, plain) in blobs {
                // The index names the old copy; store a new one anyway.
                saver.distrust(id);
                if saver.need(&id)? {
                    report.blobs += 1;
                    report.raw_bytes += plain.len() as u64;
                    saver.save(blob_type, id, plain)?;
                }
            }
            report.packs.push(*pack);
            progress.bytes_done(bytes.len() as u64);
        }
        let totals = saver
            .finish()
            .map_err(|e| Error::with_source(e.kind(), "cannot store the repacked blobs", e))?;
        report.new_packs = totals.referenced.into_iter().collect();
        report.index_files = totals.index_files;
        Ok(())
    })?;
    Ok(report)
}
