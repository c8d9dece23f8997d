//! The blob saver: everything between "here is a blob's plaintext and id" and "its pack and
//! index entry are stored".
//!
//! ```text
//! producers (walk threads, or a stream's  workers (one per core)          tokio (I/O)
//!            reader/chunker thread)
//!   id = keyed BLAKE3(chunk)
//!   need(id)? -- no --> dedup hit
//!     | yes
//!     +--> small data blobs copied into one buffer until ~2 MiB (a compression group, SPEC §7)
//!     +--> bounded queue -------------> zstd + AES-GCM (seal_group / seal_blob)
//!                                        append to the open pack of its type
//!                                        pack full? finish + seal header --> put pack (bounded
//!                                                                              number in flight)
//!                                                                            --> entries queued
//!   maybe_flush_index(): every 65 536 uploaded entries, write an index file  <--+
//! ```
//!
//! Memory is bounded by the held group, the queue length, the open packs, the uploads in
//! flight, the spare buffers kept for reuse ([`SPARE_BUFFERS`] pack and group buffers) and the
//! index entries not yet flushed (at most [`INDEX_FLUSH_ENTRIES`]); none grows with the input
//! size.
//! The `pending` set holds only blobs of packs not yet named by an index file: after a flush
//! they are in the local cache and leave the set.
//!
//! Durability order (SPEC §12): an index file names only packs whose upload finished; the
//! caller writes the snapshot after [`BlobSaver::finish`], which waits for every upload and
//! flushes the last index file.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use std::time::{Duration, Instant};

use repo_format::format::{MAX_BASE_IDS, MAX_BASE_RAW, MAX_PACK_ENTRIES};
use repo_format::{
    BlobId, BlobType, IndexFile, IndexId, IndexPack, PackId, PackWriter, SealedBlob, Zstd,
    seal_blob, seal_joined_based_group, seal_joined_group,
};

use super::zstd_trial::{ZstdTrial, sample_of, sample_size};

use crate::backend::FileType;
use crate::error::{Error, ErrorKind, Result};
use crate::repository::{Repository, put_content_addressed, random_bytes};

/// An index file is written once this many uploaded blobs are not yet in one (SPEC §12).
pub const INDEX_FLUSH_ENTRIES: usize = 65_536;

/// ... or once the oldest uploaded pack not yet in one is this old (at most; a quarter of the
/// prune grace period when that is shorter): prune marks packs no index file names only when
/// they are older than the grace period (SPEC §18).
const INDEX_FLUSH_INTERVAL: Duration = Duration::from_secs(600);

/// Packs uploading at once. Pack buffers alive at any time are at most (workers + this + 2 open
/// packs + [`SPARE_BUFFERS`]) × the pack size and one group (each is reserved for its target
/// and the group that crosses it): a worker that filled a pack waits for a slot while holding
/// it. With 2 workers and 16 MiB packs, 10 × 18.3 MiB, 183 MiB of address space, of which the
/// open packs are touched only as far as they are filled.
const UPLOADS_IN_FLIGHT: usize = 4;

/// Buffers of stored packs and of sealed groups kept for the next ones, of each. A new buffer
/// of several MiB costs a page fault every 4 KiB as it fills (glibc maps buffers this large
/// afresh and unmaps them when freed): a first backup of a 300 MiB RDB took 52 000 page
/// faults, 16 000 of them in group buffers and 10 000 in pack buffers.
const SPARE_BUFFERS: usize = 2;

/// A new data chunk for [`BlobSaver::save_chunks`], borrowed from the reader's buffer.
pub struct Chunk<'a> {
    /// Its id (keyed hash of `data`).
    pub id: BlobId,
    /// Its plaintext.
    pub data: &'a [u8],
    /// Never in a based group: a blob the index already names (stored again), since some
    /// based group may use it as its base (SPEC §7).
    pub plain_only: bool,
    /// Stored blobs this one most likely replaces ([`BlobSaver::resolve_bases`]): its group is
    /// compressed against them when that is smaller (a based group, SPEC §7). Empty: none.
    pub base: Vec<BlobId>,
}

/// A blob sealed on its own, waiting for a worker.
struct Job {
    blob_type: BlobType,
    id: BlobId,
    data: Vec<u8>,
}

/// A compression group waiting to fill, then for a worker: its members' plaintexts one after
/// the other in one buffer, copied there straight from the reader's (no copy per chunk, and
/// none to join them for zstd).
#[derive(Default)]
struct Group {
    plain: Vec<u8>,
    members: Vec<Member>,
}

/// A blob of a [`Group`]: `Chunk` without its bytes.
struct Member {
    id: BlobId,
    len: usize,
    plain_only: bool,
    base: Vec<BlobId>,
}

impl Group {
    /// Each member's bytes.
    fn blobs(&self) -> impl Iterator<Item = (&Member, &[u8])> {
        self.members.iter().scan(0usize, |at, m| {
            let b = &self.plain[*at..*at + m.len];
            *at += m.len;
            Some((m, b))
        })
    }
}

/// What the workers are sent.
enum Work {
    /// Blobs sealed one by one (trees, large chunks), about [`BATCH_BYTES`] of them.
    Jobs(Vec<Job>),
    /// A full compression group (or the last one, however full).
    Group(Group),
}

/// Jobs travel to the workers in batches of about this many bytes: one channel message per
/// blob would cost a wake-up per chunk of a stream.
const BATCH_BYTES: usize = 1 << 20;

/// Data blobs of at most this size are compressed in groups (SPEC §7): the chunks of dump
/// streams (64 KiB average, 256 KiB at most) and small files, not the larger chunks of large
/// files.
pub const GROUP_BLOB_MAX: usize = 256 << 10;

/// Plaintext of a compression group: small data blobs are held, in the order they come, until
/// this much is there, and sealed together. Reading one blob opens its whole group, so larger
/// groups compress a little better and cost more per random read. 2 MiB compresses a pg dump
/// as well as borg's 2 MiB chunks (1 MiB cost 1.6 % more); 4 MiB would save 0.4 % on day 1
/// and add 29 % to day 2, whose bases (at most 4 MiB, SPEC §7) would no longer cover a group
/// (benches' `delta-curve --group-kib`, 64 KiB chunks).
pub const GROUP_BYTES: usize = 2 << 20;

/// ... or until this many blobs are (tiny files): keeps a group's header entries well under
/// what one pack may hold.
const GROUP_BLOBS: usize = 4096;

/// Room in a pack's buffer beyond its target and one group: a group's envelope and header
/// entries.
const PACK_SLACK: usize = 64 << 10;

/// Counters of what this saver added to the repository.
#[derive(Debug, Default)]
pub struct SaverStats {
    /// Blobs added.
    pub blobs: AtomicU64,
    /// Their plaintext bytes.
    pub raw: AtomicU64,
    /// Their stored bytes (compressed and sealed).
    pub stored: AtomicU64,
}

/// State shared by the producer, the workers and the upload tasks.
struct Shared<'r> {
    repo: &'r Repository,
    pending: Mutex<HashSet<BlobId>>,
    /// Blobs known to be damaged or lost although the index names them: stored again once,
    /// instead of deduplicated against the bad copy.
    distrusted: Mutex<HashSet<BlobId>>,
    /// Packs a prune plan marks for deletion: never deduplicated against (SPEC §18).
    avoid: HashSet<PackId>,
    /// Every pack this session's blobs are in: the ones it deduplicated against and the ones
    /// it wrote. Bounded by the number of packs, not of blobs.
    referenced: Mutex<HashSet<PackId>>,
    /// Content lists reused without looking at their data blobs (unchanged large files).
    indirect: Mutex<Vec<BlobId>>,
    /// The packs this session stored, with when each upload finished.
    own: Arc<Mutex<Vec<(PackId, Instant)>>>,
    /// The index files this session wrote.
    index_files: Mutex<Vec<IndexId>>,
    /// When the oldest uploaded pack not yet in an index file finished (None: there is none).
    unindexed_since: Arc<Mutex<Option<Instant>>>,
    /// See [`INDEX_FLUSH_INTERVAL`].
    flush_interval: Duration,
    packers: [Mutex<PackWriter>; 2],
    uploaded: Arc<Mutex<Vec<IndexPack>>>,
    uploads: Mutex<Vec<tokio::task::JoinHandle<Result<()>>>>,
    slots: Arc<tokio::sync::Semaphore>,
    /// Buffers of stored packs, for the next packs to fill (at most [`SPARE_BUFFERS`]).
    spare_buffers: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Buffers of sealed groups, for the next groups to fill (at most [`SPARE_BUFFERS`]).
    spare_groups: Mutex<Vec<Vec<u8>>>,
    /// The first failure of a worker or an upload; the producer sees it at its next check.
    failure: Arc<Mutex<Option<Error>>>,
    stats: SaverStats,
    /// zstd's minimum match length and table sizes for data, chosen by trying (SPEC §3).
    zstd_trial: ZstdTrial,
}

/// Accepts blobs from producer threads (a stream's reader, or a directory walk's threads) and
/// stores them (see the module docs).
pub struct BlobSaver<'s> {
    shared: Arc<Shared<'s>>,
    /// Small data blobs waiting for a group to fill (at most [`GROUP_BYTES`] and one blob).
    /// Counted as pending like queued blobs; [`BlobSaver::finish`] sends the rest.
    held: Mutex<Group>,
    /// The parent snapshot's chunks of the stream being saved, if followed (see
    /// [`BlobSaver::follow_parent`]).
    parent: Mutex<Option<super::bases::ParentStream>>,
    queue: Option<Sender<Work>>,
    workers: Vec<std::thread::ScopedJoinHandle<'s, ()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a worker panicked; the data it guards (sets, vectors, a pack in
    // progress) is still structurally valid, and the panic itself fails the backup.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<'s> BlobSaver<'s> {
    /// Starts the workers inside `scope`; they stop when the saver is finished or dropped.
    pub fn start(
        scope: &'s std::thread::Scope<'s, '_>,
        repo: &'s Repository,
        workers: usize,
    ) -> BlobSaver<'s> {
        Self::start_avoiding(scope, repo, workers, HashSet::new())
    }

    /// [`start`](Self::start), never deduplicating against a blob whose indexed copy is in one
    /// of the `avoid` packs (packs a prune plan marks): such a blob is stored again.
    pub fn start_avoiding(
        scope: &'s std::thread::Scope<'s, '_>,
        repo: &'s Repository,
        workers: usize,
        avoid: HashSet<PackId>,
    ) -> BlobSaver<'s> {
        let shared = Arc::new(Shared {
            repo,
            pending: Mutex::new(HashSet::new()),
            distrusted: Mutex::new(HashSet::new()),
            avoid,
            referenced: Mutex::new(HashSet::new()),
            indirect: Mutex::new(Vec::new()),
            own: Arc::new(Mutex::new(Vec::new())),
            index_files: Mutex::new(Vec::new()),
            unindexed_since: Arc::new(Mutex::new(None)),
            flush_interval: INDEX_FLUSH_INTERVAL
                .min(Duration::from_secs(repo.config().prune_grace_secs) / 4),
            packers: [Mutex::new(PackWriter::new()), Mutex::new(PackWriter::new())],
            uploaded: Arc::new(Mutex::new(Vec::new())),
            uploads: Mutex::new(Vec::new()),
            slots: Arc::new(tokio::sync::Semaphore::new(UPLOADS_IN_FLIGHT)),
            spare_buffers: Arc::new(Mutex::new(Vec::new())),
            spare_groups: Mutex::new(Vec::new()),
            failure: Arc::new(Mutex::new(None)),
            stats: SaverStats::default(),
            zstd_trial: ZstdTrial::new(repo.config().compression_level),
        });
        let (tx, rx) = crossbeam_channel::bounded::<Work>(workers.max(1) * 2);
        let workers = (0..workers.max(1))
            .map(|_| {
                let rx: Receiver<Work> = rx.clone();
                let shared = Arc::clone(&shared);
                scope.spawn(move || {
                    for work in rx {
                        if let Err(e) = shared.seal(work) {
                            shared.fail(e);
                        }
                    }
                })
            })
            .collect();
        BlobSaver {
            shared,
            held: Mutex::new(Group::default()),
            parent: Mutex::new(None),
            queue: Some(tx),
            workers,
        }
    }

    /// Whether the blob must be stored: false if the repository or this session already has it.
    /// A `true` answer reserves the id, so the caller must then [`save`](Self::save) it.
    pub fn need(&self, id: &BlobId) -> Result<bool> {
        if lock(&self.shared.pending).contains(id) {
            return Ok(false);
        }
        if lock(&self.shared.distrusted).remove(id) {
            return Ok(lock(&self.shared.pending).insert(*id));
        }
        if let Some(loc) = self.shared.lookup(id)?
            && self.shared.usable(&loc)?
        {
            return Ok(false);
        }
        Ok(lock(&self.shared.pending).insert(*id))
    }

    /// [`need`](Self::need) for many ids at once, with one batched cache lookup. An id that
    /// appears twice is needed at most once.
    pub fn need_many(&self, ids: &[BlobId]) -> Result<Vec<bool>> {
        let found = self
            .shared
            .repo
            .cache()
            .lookup_many_for_dedup(ids)
            .map_err(|e| Error::cache("cannot read the index cache", e))?;
        let hits: Vec<bool> = found
            .iter()
            .map(|loc| match loc {
                Some(loc) => self.shared.usable(loc),
                None => Ok(false),
            })
            .collect::<Result<_>>()?;
        let mut pending = lock(&self.shared.pending);
        let mut distrusted = lock(&self.shared.distrusted);
        Ok(ids
            .iter()
            .zip(hits)
            .map(|(id, hit)| (!hit || distrusted.remove(id)) && pending.insert(*id))
            .collect())
    }

    /// Records content lists this session reuses without reading them (an unchanged large
    /// file): their data blobs' packs are looked up before the snapshot is written, if a prune
    /// plan appeared meanwhile.
    pub fn note_indirect(&self, lists: &[BlobId]) {
        lock(&self.shared.indirect).extend_from_slice(lists);
    }

    /// Follows `parent` (the previous snapshot's chunks of the stream about to be saved), so
    /// that [`BlobSaver::bases_for`] finds what each new chunk replaces.
    pub fn follow_parent(&self, parent: super::bases::ParentStream) {
        *lock(&self.parent) = Some(parent);
    }

    /// The bases of the new chunks among `chunks` (each chunk's id and whether it is new, in
    /// stream order), one entry per new chunk, with whether it must stay out of based groups
    /// (the index names it already); all empty when no parent is followed.
    pub fn bases_for(&self, chunks: &[(BlobId, bool)]) -> Result<Vec<(Vec<BlobId>, bool)>> {
        let candidates: Vec<Option<BlobId>> = {
            let mut parent = lock(&self.parent);
            let Some(parent) = parent.as_mut() else {
                let new = chunks.iter().filter(|(_, new)| *new).count();
                return Ok(vec![(Vec::new(), false); new]);
            };
            chunks
                .iter()
                .filter_map(|(id, new)| {
                    let candidate = parent.next(id, *new);
                    new.then_some(candidate)
                })
                .collect()
        };
        // A chunk stored again (its copy is in a pack a prune plan marks, or known only from a
        // superseded index file) goes into a plain group: the index may then name the new copy
        // for it, and a blob some based group uses as its base should stay outside based groups.
        let new: Vec<BlobId> = chunks
            .iter()
            .filter(|(_, n)| *n)
            .map(|(id, _)| *id)
            .collect();
        let known = self
            .shared
            .repo
            .cache()
            .lookup_many(&new)
            .map_err(|e| Error::cache("cannot read the index cache", e))?;
        let known: Vec<bool> = known.iter().map(Option::is_some).collect();
        let candidates: Vec<Option<BlobId>> = candidates
            .into_iter()
            .zip(&known)
            .map(|(c, k)| if *k { None } else { c })
            .collect();
        Ok(self
            .resolve_bases(&candidates)?
            .into_iter()
            .zip(known)
            .collect())
    }

    /// For each candidate (a stored blob a new chunk most likely replaces), the blobs a based
    /// group may use for it (SPEC §7): the candidate itself, or, when it is a member of a based
    /// group, that group's base (so a base is never based). Empty when the candidate or a
    /// base blob is not indexed for deduplication or lies in a pack a prune plan marks. The
    /// packs of what is returned count as this session's (the prune guard checks them).
    pub fn resolve_bases(&self, candidates: &[Option<BlobId>]) -> Result<Vec<Vec<BlobId>>> {
        let ids: Vec<BlobId> = candidates.iter().flatten().copied().collect();
        if ids.is_empty() {
            return Ok(vec![Vec::new(); candidates.len()]);
        }
        let cache = self.shared.repo.cache();
        let cache_err = |e| Error::cache("cannot read the index cache", e);
        let found = cache.lookup_many_for_dedup(&ids).map_err(cache_err)?;
        let mut found = found.into_iter();
        let mut out = Vec::with_capacity(candidates.len());
        for c in candidates {
            let (Some(id), Some(loc)) = (c, c.and_then(|_| found.next()).flatten()) else {
                out.push(Vec::new());
                continue;
            };
            if self.shared.avoid.contains(&loc.pack) {
                out.push(Vec::new());
                continue;
            }
            if loc.entry.compression != repo_format::Compression::Based {
                lock(&self.shared.referenced).insert(loc.pack);
                out.push(vec![*id]);
                continue;
            }
            let Some(base) = cache
                .group_base(&loc.pack, loc.entry.offset)
                .map_err(cache_err)?
            else {
                out.push(Vec::new());
                continue;
            };
            let locs = cache.lookup_many_for_dedup(&base).map_err(cache_err)?;
            let usable = locs.iter().all(|l| {
                l.as_ref().is_some_and(|l| {
                    !self.shared.avoid.contains(&l.pack)
                        && l.entry.compression != repo_format::Compression::Based
                })
            });
            if !usable {
                out.push(Vec::new());
                continue;
            }
            let mut referenced = lock(&self.shared.referenced);
            referenced.insert(loc.pack);
            referenced.extend(locs.iter().flatten().map(|l| l.pack));
            out.push(base);
        }
        Ok(out)
    }

    /// Marks a blob as damaged or lost although the index names it (found while reading it):
    /// the next time this backup needs it, it is stored again.
    pub fn distrust(&self, id: BlobId) {
        lock(&self.shared.distrusted).insert(id);
    }

    /// Queues a blob for sealing and packing (after [`need`](Self::need) said yes).
    pub fn save(&self, blob_type: BlobType, id: BlobId, data: Vec<u8>) -> Result<()> {
        self.check()?;
        if groupable(blob_type, data.len()) {
            self.hold(id, &data, false, Vec::new())?;
        } else {
            self.send(Work::Jobs(vec![Job {
                blob_type,
                id,
                data,
            }]))?;
        }
        self.maybe_flush_index(false)
    }

    /// Queues new data chunks (each after [`need`](Self::need) said yes): small ones are copied
    /// into the group that is filling, larger ones into blobs of their own, sent in batches.
    pub fn save_chunks<'a>(&self, chunks: impl IntoIterator<Item = Chunk<'a>>) -> Result<()> {
        self.check()?;
        let mut batch = Vec::new();
        let mut bytes = 0;
        for c in chunks {
            if groupable(BlobType::Data, c.data.len()) {
                self.hold(c.id, c.data, c.plain_only, c.base)?;
                continue;
            }
            bytes += c.data.len();
            batch.push(Job {
                blob_type: BlobType::Data,
                id: c.id,
                data: c.data.to_vec(),
            });
            if bytes >= BATCH_BYTES {
                self.send(Work::Jobs(std::mem::take(&mut batch)))?;
                bytes = 0;
            }
        }
        if !batch.is_empty() {
            self.send(Work::Jobs(batch))?;
        }
        self.maybe_flush_index(false)
    }

    /// Adds a small data blob to the group that is filling, and sends the group once full.
    fn hold(&self, id: BlobId, data: &[u8], plain_only: bool, base: Vec<BlobId>) -> Result<()> {
        let full = {
            let mut held = lock(&self.held);
            if held.members.is_empty() {
                // Room for the fullest group (it never grows by copying), in a sealed group's
                // buffer if there is one.
                if let Some(spare) = lock(&self.shared.spare_groups).pop() {
                    held.plain = spare;
                }
                held.plain.reserve_exact(GROUP_BYTES + GROUP_BLOB_MAX);
            }
            held.plain.extend_from_slice(data);
            held.members.push(Member {
                id,
                len: data.len(),
                plain_only,
                base,
            });
            (held.plain.len() >= GROUP_BYTES || held.members.len() >= GROUP_BLOBS)
                .then(|| std::mem::take(&mut *held))
        };
        match full {
            Some(group) => self.send(Work::Group(group)),
            None => Ok(()),
        }
    }

    /// Queues work for the workers (waiting while the queue is full).
    fn send(&self, work: Work) -> Result<()> {
        let queue = self
            .queue
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::Io, "blob saver already finished"))?;
        queue.send(work).map_err(|_| {
            self.take_failure()
                .unwrap_or_else(|| Error::new(ErrorKind::Io, "the blob workers stopped"))
        })
    }

    /// Stores `data` as a blob unless it is already there; returns its id.
    pub fn save_if_new(&self, blob_type: BlobType, data: Vec<u8>) -> Result<BlobId> {
        let id = self.shared.repo.keys().blob_id(&data);
        if self.need(&id)? {
            self.save(blob_type, id, data)?;
        }
        Ok(id)
    }

    /// Whether `id` is stored or on its way (for reusing a parent snapshot's file contents).
    pub fn known(&self, id: &BlobId) -> Result<bool> {
        if lock(&self.shared.pending).contains(id) {
            return Ok(true);
        }
        match self.shared.lookup(id)? {
            Some(loc) => self.shared.usable(&loc),
            None => Ok(false),
        }
    }

    /// Fails fast if a worker or an upload has failed. The failure stays: every producer
    /// thread (a directory walk has several) gets it at its next check, as a copy.
    pub fn check(&self) -> Result<()> {
        match lock(&self.shared.failure).as_ref() {
            Some(e) => Err(e.duplicate()),
            None => Ok(()),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> &SaverStats {
        &self.shared.stats
    }

    fn take_failure(&self) -> Option<Error> {
        lock(&self.shared.failure).take()
    }

    /// Writes an index file for the uploaded packs once enough entries wait (or `force`).
    fn maybe_flush_index(&self, force: bool) -> Result<()> {
        let packs = {
            // Collect finished uploads so the list stays short on long backups; a task that
            // died without reporting (a panic) becomes the backup's failure.
            let done: Vec<_> = {
                let mut ups = lock(&self.shared.uploads);
                let (done, running): (Vec<_>, Vec<_>) =
                    ups.drain(..).partition(|h| h.is_finished());
                *ups = running;
                done
            };
            for h in done {
                match self.shared.repo.block_on(h) {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => record_failure(&self.shared.failure, e),
                    Err(e) => record_failure(
                        &self.shared.failure,
                        Error::new(ErrorKind::Io, format!("an upload task failed: {e}")),
                    ),
                }
            }
            let mut up = lock(&self.shared.uploaded);
            let entries: usize = up.iter().map(|p| p.entries.len()).sum();
            let overdue = lock(&self.shared.unindexed_since)
                .is_some_and(|t| t.elapsed() >= self.shared.flush_interval);
            if entries == 0 || (!force && !overdue && entries < INDEX_FLUSH_ENTRIES) {
                return Ok(());
            }
            *lock(&self.shared.unindexed_since) = None;
            std::mem::take(&mut *up)
        };
        let file = IndexFile {
            supersedes: Vec::new(),
            packs,
        };
        let index_id = self.shared.repo.save_index(&file)?;
        lock(&self.shared.index_files).push(index_id);
        let mut pending = lock(&self.shared.pending);
        let mut referenced = lock(&self.shared.referenced);
        for p in &file.packs {
            referenced.insert(p.id);
            for e in &p.entries {
                pending.remove(&e.id);
            }
        }
        Ok(())
    }

    /// Stops the workers, stores the last partial packs, waits for every upload and writes the
    /// last index file. After this returns Ok, every saved blob is stored and indexed.
    pub fn finish(mut self) -> Result<SaverTotals> {
        // The last, partial group goes first. Closing the queue lets the workers drain it and
        // exit; the packs still open are then flushed here, on this thread.
        let held = std::mem::take(&mut *lock(&self.held));
        if !held.members.is_empty() {
            self.send(Work::Group(held))?;
        }
        drop(self.queue.take());
        for w in self.workers.drain(..) {
            w.join()
                .map_err(|_| Error::new(ErrorKind::Io, "a blob worker thread panicked"))?;
        }
        self.check()?;
        for t in [BlobType::Data, BlobType::Tree] {
            let pack = std::mem::replace(
                &mut *lock(&self.shared.packers[t as usize]),
                PackWriter::new(),
            );
            if !pack.is_empty() {
                self.shared.upload(pack)?;
            }
        }
        let handles = std::mem::take(&mut *lock(&self.shared.uploads));
        for h in handles {
            self.shared
                .repo
                .block_on(h)
                .map_err(|e| Error::new(ErrorKind::Io, format!("an upload task failed: {e}")))??;
        }
        self.check()?;
        self.maybe_flush_index(true)?;
        let s = &self.shared.stats;
        Ok(SaverTotals {
            blobs: s.blobs.load(Ordering::Relaxed),
            raw: s.raw.load(Ordering::Relaxed),
            stored: s.stored.load(Ordering::Relaxed),
            referenced: std::mem::take(&mut *lock(&self.shared.referenced)),
            indirect: std::mem::take(&mut *lock(&self.shared.indirect)),
            own: std::mem::take(&mut *lock(&self.shared.own)),
            index_files: std::mem::take(&mut *lock(&self.shared.index_files)),
        })
    }
}

/// What a finished saver added, and which packs its blobs are in.
#[derive(Clone, Debug, Default)]
pub struct SaverTotals {
    /// Blobs added.
    pub blobs: u64,
    /// Their plaintext bytes.
    pub raw: u64,
    /// Their stored bytes.
    pub stored: u64,
    /// Every pack holding a blob this session saved or deduplicated against (see
    /// [`BlobSaver::note_indirect`] for the exception).
    pub referenced: HashSet<PackId>,
    /// Content lists reused unread (their data blobs' packs are not in `referenced`).
    pub indirect: Vec<BlobId>,
    /// The packs this session stored, with the instant each upload finished.
    pub own: Vec<(PackId, Instant)>,
    /// The index files this session wrote.
    pub index_files: Vec<IndexId>,
}

impl Drop for BlobSaver<'_> {
    fn drop(&mut self) {
        // Closing the queue lets the workers exit so the thread scope can end, on error paths too.
        drop(self.queue.take());
    }
}

/// Whether a blob goes into a compression group: a data blob of at most [`GROUP_BLOB_MAX`].
fn groupable(blob_type: BlobType, len: usize) -> bool {
    blob_type == BlobType::Data && len > 0 && len <= GROUP_BLOB_MAX
}

/// Keeps `buffer`, emptied, for reuse if `pool` holds fewer than [`SPARE_BUFFERS`].
fn keep_spare(pool: &Mutex<Vec<Vec<u8>>>, mut buffer: Vec<u8>) {
    buffer.clear();
    let mut spare = lock(pool);
    if spare.len() < SPARE_BUFFERS {
        spare.push(buffer);
    }
}

/// Keeps the first failure; later ones are consequences of it.
fn record_failure(slot: &Mutex<Option<Error>>, e: Error) {
    let mut f = lock(slot);
    if f.is_none() {
        *f = Some(e);
    }
}

impl Shared<'_> {
    fn fail(&self, e: Error) {
        record_failure(&self.failure, e);
    }

    fn lookup(&self, id: &BlobId) -> Result<Option<crate::index::cache::BlobLocation>> {
        self.repo
            .cache()
            .lookup_for_dedup(id)
            .map_err(|e| Error::cache("cannot read the index cache", e))
    }

    /// Whether the blob stored at `loc` may be deduplicated against; records the packs it
    /// relies on if so: its own, and for a member of a based group those of its base, which a
    /// read needs too (SPEC §7, §18). Not when one of them is in a pack a prune plan marks, or
    /// the base cannot be located (the blob is then stored again).
    fn usable(&self, loc: &crate::index::cache::BlobLocation) -> Result<bool> {
        if self.avoid.contains(&loc.pack) {
            return Ok(false);
        }
        let mut packs = vec![loc.pack];
        if loc.entry.compression == repo_format::Compression::Based {
            match self.repo.base_packs(loc) {
                Ok(base) if base.iter().all(|p| !self.avoid.contains(p)) => packs.extend(base),
                Ok(_) => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Corrupt || e.kind() == ErrorKind::NotFound => {
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
        lock(&self.referenced).extend(packs);
        Ok(true)
    }

    /// Seals what a worker was sent: a group as one compression group (see
    /// [`Shared::seal_group_and_pack`]), the other blobs one by one.
    fn seal(&self, work: Work) -> Result<()> {
        match work {
            Work::Jobs(jobs) => jobs
                .iter()
                .try_for_each(|j| self.seal_and_pack(j.blob_type, j.id, &j.data)),
            Work::Group(group) => {
                self.seal_group_and_pack(&group)?;
                keep_spare(&self.spare_groups, group.plain);
                Ok(())
            }
        }
    }

    /// Seals a group's members one by one (a group that does not apply).
    fn seal_members(&self, group: &Group) -> Result<()> {
        group
            .blobs()
            .try_for_each(|(m, b)| self.seal_and_pack(BlobType::Data, m.id, b))
    }

    /// Seals a group (never empty: only a held blob starts one) as a based group, a plain
    /// one, or its members one by one, whichever SPEC §7 and the sizes say.
    fn seal_group_and_pack(&self, group: &Group) -> Result<()> {
        let repo = self.repo;
        let members: Vec<(BlobId, usize)> = group.members.iter().map(|m| (m.id, m.len)).collect();
        let plain = group.plain.as_slice();
        let level = repo.config().compression_level;
        // Against the blobs the members replace, when that is smaller (SPEC §7). A based
        // frame under 1/32 of the plaintext is taken without trying the plain one: a dump
        // compresses about 5-17x plainly, and the second compression doubled the time of a
        // pg day 2 (1.7 s against 0.8).
        let based = self.seal_based(group, &members, level)?;
        let raw = plain.len();
        let sealed = match based {
            Some(b) if b.bytes.len() * 32 <= raw => Some(b),
            // A group of one (a backup's last, often a stream's last chunk) is based only
            // when that halves the member sealed alone.
            based if members.len() == 1 => {
                let (id, data) = (members[0].0, plain);
                let alone = self.seal_single(BlobType::Data, id, data)?;
                match based {
                    Some(b) if b.bytes.len() * 2 < alone.bytes.len() => Some(b),
                    _ => return self.pack_single(BlobType::Data, alone),
                }
            }
            based => {
                let zstd = self
                    .zstd_trial
                    .setting(raw, |z| sample_size(z, sample_of(plain)));
                let salt = random_bytes::<16>()?;
                let grouped =
                    seal_joined_group(repo.keys(), BlobType::Data, plain, &members, zstd, salt);
                // A based group keeps its base alive for as long as a snapshot needs one of
                // its members: worth it only when it halves what the group stores.
                match (grouped, based) {
                    (Some(p), Some(b)) if b.bytes.len() * 2 < p.bytes.len() => Some(b),
                    (None, Some(b)) if b.bytes.len() * 2 < raw => Some(b),
                    (p, _) => p,
                }
            }
        };
        let Some(sealed) = sealed else {
            return self.seal_members(group);
        };
        self.stats
            .blobs
            .fetch_add(members.len() as u64, Ordering::Relaxed);
        self.stats.raw.fetch_add(raw as u64, Ordering::Relaxed);
        self.stats
            .stored
            .fetch_add(sealed.bytes.len() as u64, Ordering::Relaxed);
        let n = sealed.entries.len();
        self.pack(BlobType::Data, n, |packer| packer.add_group(sealed))
    }

    /// The based group of `group` on its members' bases, if they have any and the bases load:
    /// at most [`MAX_BASE_IDS`] blobs and [`MAX_BASE_RAW`] bytes of them, in the members'
    /// order. A base that cannot be read only costs the group its base: a backup never fails
    /// over one.
    fn seal_based(
        &self,
        group: &Group,
        members: &[(BlobId, usize)],
        level: i32,
    ) -> Result<Option<repo_format::SealedGroup>> {
        if group.members.iter().any(|m| m.plain_only) {
            return Ok(None);
        }
        let ids_in: HashSet<BlobId> = group.members.iter().map(|m| m.id).collect();
        let mut ids: Vec<BlobId> = Vec::new();
        for id in group.members.iter().flat_map(|m| &m.base) {
            if ids.len() < MAX_BASE_IDS && !ids_in.contains(id) && !ids.contains(id) {
                ids.push(*id);
            }
        }
        if ids.is_empty() {
            return Ok(None);
        }
        // One buffer for the whole base: the ids and where each blob's bytes are in it.
        // Reserved once (untouched pages cost nothing), not grown by doubling.
        let mut buf = Vec::with_capacity(MAX_BASE_RAW);
        let mut spans: Vec<(BlobId, usize, usize)> = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(loc) = self.lookup(&id)? else {
                return Ok(None);
            };
            if loc.entry.compression == repo_format::Compression::Based
                || buf.len() + loc.entry.raw_len as usize > MAX_BASE_RAW
            {
                break;
            }
            let start = buf.len();
            if self.repo.append_base_blob(&loc, &mut buf).is_err() {
                return Ok(None);
            }
            spans.push((id, start, buf.len()));
        }
        let base: Vec<(BlobId, &[u8])> = spans.iter().map(|&(id, a, b)| (id, &buf[a..b])).collect();
        Ok(seal_joined_based_group(
            self.repo.keys(),
            &group.plain,
            members,
            &base,
            level,
            random_bytes::<16>()?,
        ))
    }

    fn seal_and_pack(&self, blob_type: BlobType, id: BlobId, data: &[u8]) -> Result<()> {
        let sealed = self.seal_single(blob_type, id, data)?;
        self.pack_single(blob_type, sealed)
    }

    /// One blob sealed on its own: data blobs with the zstd setting of the trials, trees at
    /// the configured level.
    fn seal_single(&self, blob_type: BlobType, id: BlobId, data: &[u8]) -> Result<SealedBlob> {
        let repo = self.repo;
        let zstd = match blob_type {
            BlobType::Data => self
                .zstd_trial
                .setting(data.len(), |z| sample_size(z, sample_of(data))),
            BlobType::Tree => Zstd::from(repo.config().compression_level),
        };
        let salt = random_bytes::<16>()?;
        Ok(seal_blob(repo.keys(), blob_type, id, data, zstd, salt))
    }

    fn pack_single(&self, blob_type: BlobType, sealed: SealedBlob) -> Result<()> {
        self.stats.blobs.fetch_add(1, Ordering::Relaxed);
        self.stats
            .raw
            .fetch_add(u64::from(sealed.entry.raw_len), Ordering::Relaxed);
        self.stats
            .stored
            .fetch_add(u64::from(sealed.entry.stored_len), Ordering::Relaxed);
        self.pack(blob_type, 1, |packer| packer.add(sealed))
    }

    /// Adds `entries` header entries to the open pack of `blob_type` and uploads it once full
    /// (the target size, or [`INDEX_FLUSH_ENTRIES`] blobs), or first if they would not fit in its
    /// header.
    fn pack(
        &self,
        blob_type: BlobType,
        entries: usize,
        add: impl FnOnce(&mut PackWriter),
    ) -> Result<()> {
        let config = self.repo.config();
        let target = match blob_type {
            BlobType::Data => config.data_pack_size,
            BlobType::Tree => config.tree_pack_size,
        } as usize;
        // One critical section: another worker must not add between the room check and the add.
        let (no_room, full) = {
            let mut packer = lock(&self.packers[blob_type as usize]);
            let no_room = (!packer.is_empty() && packer.count() + entries > MAX_PACK_ENTRIES)
                .then(|| std::mem::replace(&mut *packer, PackWriter::new()));
            if packer.is_empty() {
                // Room for the target and the group or blob that crosses it (one larger than a
                // group still grows the buffer), in a stored pack's buffer if there is one.
                let spare = lock(&self.spare_buffers).pop().unwrap_or_default();
                *packer = PackWriter::with_buffer(
                    spare,
                    target + GROUP_BYTES + GROUP_BLOB_MAX + PACK_SLACK,
                );
            }
            add(&mut packer);
            // Groups of tiny files put up to 4096 entries in ~1 MiB: closing a pack at
            // INDEX_FLUSH_ENTRIES keeps the entries that wait for an index file bounded as
            // with single blobs.
            let full = (packer.is_full(target) || packer.count() >= INDEX_FLUSH_ENTRIES)
                .then(|| std::mem::replace(&mut *packer, PackWriter::new()));
            (no_room, full)
        };
        for pack in no_room.into_iter().chain(full) {
            self.upload(pack)?;
        }
        Ok(())
    }

    /// Seals the pack's header and starts its upload (waiting for a free slot first).
    fn upload(&self, pack: PackWriter) -> Result<()> {
        let repo = self.repo;
        let finished = pack
            .finish(repo.keys(), random_bytes::<16>()?)
            .map_err(|e| Error::format("a pack failed its own header check", e))?;
        let permit = repo
            .block_on(Arc::clone(&self.slots).acquire_owned())
            .map_err(|e| Error::new(ErrorKind::Io, format!("upload slots closed: {e}")))?;
        let backend = Arc::clone(repo.backend());
        let uploaded = Arc::clone(&self.uploaded);
        let own = Arc::clone(&self.own);
        let unindexed_since = Arc::clone(&self.unindexed_since);
        let failure = Arc::clone(&self.failure);
        let spare_buffers = Arc::clone(&self.spare_buffers);
        let handle = repo.runtime().spawn(async move {
            let id = finished.id;
            let bytes = Bytes::from(finished.bytes);
            let stored =
                put_content_addressed(&*backend, FileType::Pack, id.0, bytes.clone()).await;
            drop(permit);
            // The buffer goes back for another pack once the backend has let go of it.
            if let Ok(buffer) = bytes.try_into_mut() {
                keep_spare(&spare_buffers, Vec::from(buffer));
            }
            match stored {
                Ok(()) => {
                    let now = Instant::now();
                    lock(&own).push((id, now));
                    lock(&unindexed_since).get_or_insert(now);
                    lock(&uploaded).push(IndexPack {
                        id,
                        entries: finished.entries,
                        bases: finished.bases,
                    });
                }
                // Recorded where the producer looks after every buffer, so a failed upload
                // (full disk, permissions) stops the backup now, not after reading everything.
                Err(e) => record_failure(&failure, e),
            }
            Ok(())
        });
        lock(&self.uploads).push(handle);
        Ok(())
    }
}
