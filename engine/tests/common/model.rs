//! The engine against a model: a short sequence of operations (backups of a few streams with
//! small edits, forget, prune, time passing, `repair index`, faults) runs on an in-memory
//! repository, and after every operation the repository must agree with a model that is only
//! a map from snapshot id to the bytes it holds.
//!
//! Shared by the deterministic test `engine/tests/model.rs` (seeded random sequences, run in
//! CI) and the fuzz target `fuzz/fuzz_targets/fuzz_engine_model.rs` (coverage-guided), which
//! both include this file with `#[path]`. It depends only on `engine`, `repo_format` and
//! `tempfile`.
//!
//! # Input
//!
//! Two bytes per operation, `tag` then `arg` ([`decode`]); at most [`MAX_OPS`] operations, an
//! odd last byte is ignored. `tag % 8`:
//!
//! | tag | operation | arg |
//! |---|---|---|
//! | 0, 1 | backup of stream `(arg & 3) % 3` after an edit | bits 2-4 the edit ([`Edit`]), 5-7 where |
//! | 2 | forget | even: keep the last `arg / 2 % 4` of each stream; odd: the snapshot at model index `arg / 2` |
//! | 3 | prune (`max_unused` 0 %: it repacks too) | - |
//! | 4 | wait: the grace period and the lease ttl pass ([`FaultPlan::pass_time`]) | - |
//! | 5 | fault for the next backup, forget, prune or repair | `arg < 128`: crash after `arg % 32` writes (the process dies, the repository is reopened); else lost responses from write `arg % 32` on |
//! | 6 | verify through a fresh handle and a fresh cache, as another process | - |
//! | 7 | `repair index` | - |
//!
//! # What must hold after every operation
//!
//! - the snapshots in the repository are exactly those of the model, and each dumps
//!   byte-exact to the model's bytes;
//! - `check --read-data` finds no error (warnings, i.e. leftovers of failed operations, are
//!   allowed): after faulted operations, prunes, repairs, verifications and the last operation
//!   (a check costs tens of milliseconds; the dumps run after every operation);
//! - an operation without a fault succeeds (prune may also refuse while a lease a faulted prune
//!   left is still valid).
//!
//! A faulted operation may fail or succeed, and may or may not have finished its writes: a
//! backup may have written its snapshot (which must then hold the data it was given), a forget
//! may have removed some of the snapshots it chose. The model adopts what it finds, within
//! those bounds, and checks it.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use engine::archiver::{BackupOptions, Source, backup};
use engine::backend::faulty::{FaultPlan, FaultyBackend};
use engine::backend::{Backend, FileType, open_backend};
use engine::checker::{CheckOptions, ReadData, check};
use engine::forget::{forget, forget_ids};
use engine::progress::NoProgress;
use engine::prune::{MaxUnused, PruneOptions, prune};
use engine::repair::repair_index;
use engine::repository::{InitOptions, OpenOptions, Repository, init_with_backend};
use engine::restorer::{dump_content, error_chain, find_node};
use engine::retention::{GroupBy, KeepPolicy};
use repo_format::{KdfParams, SnapshotId};

/// Operations per input, at most (keeps an iteration short).
pub const MAX_OPS: usize = 16;
/// Streams backed up (each its own group for forget).
pub const STREAMS: usize = 3;
/// The repository's prune grace period.
const GRACE: Duration = Duration::from_secs(3600);
/// What a wait lets pass: the grace period and the default lease ttl (15 min), and more.
const WAIT: Duration = Duration::from_secs(3600 + 20 * 60);
const PASSWORD: &[u8] = b"model";
const LOCATION: &str = "memory://";
/// Snapshot times: one second apart from here, in the order the model made them.
const TIME_BASE_NS: i64 = 1_700_000_000_000_000_000;

/// How a backup changes its stream first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edit {
    /// Back up the same bytes again (everything deduplicates).
    Same,
    /// Overwrite 64 bytes at the position.
    Overwrite,
    /// Append 1-8 KiB.
    Append,
    /// Insert 100 bytes at the position (shifts the later chunks' boundaries).
    Insert,
    /// Cut at the position.
    Truncate,
    /// Entirely new bytes, 8-64 KiB.
    Fresh,
    /// Copy another stream (deduplicates across streams).
    CopyOther,
    /// Empty.
    Empty,
}

/// One operation of a sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Back up stream `stream` after `edit` at `at` (0..8, in eighths of its length).
    Backup { stream: usize, edit: Edit, at: u8 },
    /// Forget all but the newest `n` snapshots of each stream.
    KeepLast(u32),
    /// Forget the model's snapshot at this index (modulo their number; none if empty).
    ForgetIndex(usize),
    /// Prune.
    Prune,
    /// Let the grace period and the lease ttl pass.
    Wait,
    /// The next backup, forget, prune or repair crashes after `k` writes.
    Crash(u64),
    /// The next backup, forget, prune or repair loses the responses from write `k` on.
    LoseResponses(u64),
    /// Verify through a fresh handle and cache.
    Verify,
    /// `repair index`.
    RepairIndex,
}

/// The operations encoded in `input` (see the module docs).
pub fn decode(input: &[u8]) -> Vec<Op> {
    input
        .chunks_exact(2)
        .take(MAX_OPS)
        .map(|pair| {
            let (tag, arg) = (pair[0], pair[1]);
            match tag % 8 {
                0 | 1 => Op::Backup {
                    stream: usize::from(arg & 3) % STREAMS,
                    edit: match (arg >> 2) & 7 {
                        0 => Edit::Same,
                        1 => Edit::Overwrite,
                        2 => Edit::Append,
                        3 => Edit::Insert,
                        4 => Edit::Truncate,
                        5 => Edit::Fresh,
                        6 => Edit::CopyOther,
                        _ => Edit::Empty,
                    },
                    at: arg >> 5,
                },
                2 if arg % 2 == 0 => Op::KeepLast(u32::from(arg / 2 % 4)),
                2 => Op::ForgetIndex(usize::from(arg / 2)),
                3 => Op::Prune,
                4 => Op::Wait,
                5 if arg < 128 => Op::Crash(u64::from(arg % 32)),
                5 => Op::LoseResponses(u64::from(arg % 32)),
                6 => Op::Verify,
                _ => Op::RepairIndex,
            }
        })
        .collect()
}

/// The inverse of [`decode`] (for seed corpora and tests).
pub fn encode(ops: &[Op]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ops.len() * 2);
    for op in ops {
        let (tag, arg): (u8, u8) = match *op {
            Op::Backup { stream, edit, at } => {
                let e = match edit {
                    Edit::Same => 0,
                    Edit::Overwrite => 1,
                    Edit::Append => 2,
                    Edit::Insert => 3,
                    Edit::Truncate => 4,
                    Edit::Fresh => 5,
                    Edit::CopyOther => 6,
                    Edit::Empty => 7,
                };
                (0, (at & 7) << 5 | e << 2 | (stream % STREAMS) as u8)
            }
            Op::KeepLast(n) => (2, (n % 4) as u8 * 2),
            Op::ForgetIndex(i) => (2, ((i % 128) as u8) * 2 + 1),
            Op::Prune => (3, 0),
            Op::Wait => (4, 0),
            Op::Crash(k) => (5, (k % 32) as u8),
            Op::LoseResponses(k) => (5, 128 + (k % 32) as u8),
            Op::Verify => (6, 0),
            Op::RepairIndex => (7, 0),
        };
        out.push(tag);
        out.push(arg);
    }
    out
}

/// What one run did (for the test's summary).
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Operations run (faults count as operations).
    pub ops: u64,
    /// Snapshots written by backups that succeeded.
    pub backups: u64,
    /// Faulted operations that failed.
    pub faulted_failures: u64,
    /// Faulted operations that succeeded anyway (the fault came after their last write).
    pub faulted_successes: u64,
    /// Snapshots of failed backups found in the repository (and adopted).
    pub adopted: u64,
    /// Snapshots removed by forget.
    pub forgotten: u64,
    /// Packs deleted by prune sweeps.
    pub packs_swept: u64,
    /// Prunes refused because a faulted prune's lease was still valid.
    pub prunes_refused: u64,
}

/// A snapshot the model knows.
#[derive(Clone, Debug)]
struct Snap {
    stream: usize,
    data: Vec<u8>,
    seq: u64,
}

/// A pending fault.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Crash(u64),
    Lose(u64),
}

/// A temporary directory for the index caches, in memory where the system has a tmpfs at
/// `/dev/shm`: RocksDB syncs its files, and on a disk that costs more than the rest of a run.
fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(d) = tempfile::Builder::new()
            .prefix("cairn-model-")
            .tempdir_in(shm)
    {
        return d;
    }
    tempfile::tempdir().expect("tempdir")
}

/// The repository side: an in-memory backend behind a [`FaultyBackend`], and one handle.
struct World {
    dir: tempfile::TempDir,
    backend: Arc<dyn Backend>,
    plan: FaultPlan,
    repo: Option<Repository>,
    /// Fresh caches made so far (for [`Op::Verify`]).
    fresh: u32,
}

impl World {
    fn new() -> World {
        let dir = scratch_dir();
        let memory = open_backend(LOCATION).expect("memory backend");
        let (backend, plan) = FaultyBackend::wrap(memory);
        init_with_backend(
            Arc::clone(&backend),
            LOCATION,
            PASSWORD,
            &InitOptions {
                kdf: KdfParams::TEST,
                prune_grace_secs: Some(GRACE.as_secs()),
                ..InitOptions::default()
            },
        )
        .expect("init");
        let mut w = World {
            dir,
            backend,
            plan,
            repo: None,
            fresh: 0,
        };
        w.repo = Some(w.open(w.cache()));
        w
    }

    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    fn open(&self, cache: PathBuf) -> Repository {
        Repository::open_with_backend(
            Arc::clone(&self.backend),
            LOCATION,
            PASSWORD,
            &OpenOptions {
                cache_dir: Some(cache),
            },
        )
        .unwrap_or_else(|e| panic!("open: {}", error_chain(&e)))
    }

    fn repo(&self) -> &Repository {
        self.repo.as_ref().expect("open")
    }

    /// A new process after a crash: the handle is dropped, the cache directory stays.
    fn restart(&mut self) {
        self.repo = None;
        self.repo = Some(self.open(self.cache()));
    }
}

/// The model and the run.
struct Model {
    snaps: BTreeMap<SnapshotId, Snap>,
    streams: [Vec<u8>; STREAMS],
    seq: u64,
    /// A faulted prune may have left its lease held; the next prune may be refused until a
    /// wait.
    lease_maybe_held: bool,
    stats: Stats,
    /// What ran so far, for messages.
    log: Vec<String>,
}

/// A deterministic xorshift generator for stream contents.
struct Gen(u64);

impl Gen {
    fn new(seed: u64) -> Gen {
        Gen(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

fn stream_name(s: usize) -> String {
    format!("stream{s}.dump")
}

/// The bytes of `name` in snapshot `id`.
fn dump(repo: &Repository, id: &SnapshotId, name: &str) -> engine::Result<Vec<u8>> {
    let snap = repo.load_snapshot(id)?;
    let node = find_node(repo, &snap.tree, name.as_bytes())?;
    let mut out = Vec::new();
    dump_content(repo, &node, &mut out, &NoProgress)?;
    Ok(out)
}

impl Model {
    fn new() -> Model {
        Model {
            snaps: BTreeMap::new(),
            streams: std::array::from_fn(|s| {
                let mut g = Gen::new(s as u64 + 1);
                let len = 20_000 + (g.next() % 20_000) as usize;
                g.bytes(len)
            }),
            seq: 0,
            lease_maybe_held: false,
            stats: Stats::default(),
            log: Vec::new(),
        }
    }

    /// Panics with the history.
    fn fail(&self, what: String) -> ! {
        panic!(
            "model violated: {what}\nafter:\n  {}",
            self.log.join("\n  ")
        )
    }

    fn edit(&mut self, stream: usize, edit: Edit, at: u8) -> Vec<u8> {
        let mut g = Gen::new(
            self.seq
                .wrapping_mul(31)
                .wrapping_add(stream as u64 * 7 + 1000),
        );
        let cur = &self.streams[stream];
        let pos = cur.len() * usize::from(at) / 8;
        let mut new = cur.clone();
        match edit {
            Edit::Same => {}
            Edit::Overwrite => {
                let patch = g.bytes(64);
                let end = (pos + 64).min(new.len());
                new[pos..end].copy_from_slice(&patch[..end - pos]);
            }
            Edit::Append => {
                let n = 1024 + (g.next() % 7168) as usize;
                new.extend(g.bytes(n));
            }
            Edit::Insert => {
                let ins = g.bytes(100);
                new.splice(pos..pos, ins);
            }
            Edit::Truncate => new.truncate(pos),
            Edit::Fresh => {
                let n = 8192 + (g.next() % 57_344) as usize;
                new = g.bytes(n);
            }
            Edit::CopyOther => new = self.streams[(stream + 1) % STREAMS].clone(),
            Edit::Empty => new.clear(),
        }
        self.streams[stream] = new.clone();
        new
    }

    /// The snapshot ids in the repository.
    fn listed(&self, w: &World) -> BTreeSet<SnapshotId> {
        w.repo()
            .list_ids(FileType::Snapshot)
            .unwrap_or_else(|e| self.fail(format!("list snapshots: {}", error_chain(&e))))
            .into_iter()
            .map(SnapshotId)
            .collect()
    }

    /// Everything that must hold after an operation, through `repo`; `check` too if `full`.
    fn verify_with(&self, repo: &Repository, how: &str, full: bool) {
        let listed: BTreeSet<SnapshotId> = repo
            .list_ids(FileType::Snapshot)
            .unwrap_or_else(|e| self.fail(format!("{how}: list snapshots: {}", error_chain(&e))))
            .into_iter()
            .map(SnapshotId)
            .collect();
        let known: BTreeSet<SnapshotId> = self.snaps.keys().copied().collect();
        if listed != known {
            self.fail(format!(
                "{how}: the repository holds snapshots {:?}, the model {:?}",
                listed.iter().map(|i| i.0.short()).collect::<Vec<_>>(),
                known.iter().map(|i| i.0.short()).collect::<Vec<_>>()
            ));
        }
        for (id, snap) in &self.snaps {
            match dump(repo, id, &stream_name(snap.stream)) {
                Ok(got) if got == snap.data => {}
                Ok(got) => self.fail(format!(
                    "{how}: snapshot {} restores {} bytes, not its {} bytes",
                    id.0.short(),
                    got.len(),
                    snap.data.len()
                )),
                Err(e) => self.fail(format!(
                    "{how}: snapshot {} does not restore: {}",
                    id.0.short(),
                    error_chain(&e)
                )),
            }
        }
        if !full {
            return;
        }
        let report = check(
            repo,
            &CheckOptions {
                read_data: ReadData::All,
            },
            &NoProgress,
        )
        .unwrap_or_else(|e| self.fail(format!("{how}: check cannot run: {}", error_chain(&e))));
        if !report.is_clean() {
            self.fail(format!("{how}: check finds damage: {:#?}", report.errors));
        }
    }

    /// A fault-free operation failed.
    fn unexpected(&self, what: &str, e: &engine::Error) -> ! {
        self.fail(format!("{what} failed without a fault: {}", error_chain(e)))
    }

    fn backup(&mut self, w: &World, stream: usize, edit: Edit, at: u8, faulted: bool) {
        let data = self.edit(stream, edit, at);
        self.seq += 1;
        let seq = self.seq;
        let mut opts = BackupOptions::new(Source::Stream {
            name: stream_name(stream),
            reader: Box::new(Cursor::new(data.clone())),
        });
        opts.time_ns = Some(TIME_BASE_NS + i64::try_from(seq).unwrap_or(0) * 1_000_000_000);
        opts.workers = Some(1);
        match backup(w.repo(), opts, &NoProgress) {
            Ok(r) => {
                if self.snaps.contains_key(&r.id) {
                    self.fail(format!("backup returned an existing id {}", r.id.0.short()));
                }
                self.snaps.insert(r.id, Snap { stream, data, seq });
                self.stats.backups += 1;
                if faulted {
                    self.stats.faulted_successes += 1;
                }
            }
            Err(e) if faulted => {
                self.stats.faulted_failures += 1;
                let _ = e;
                // Its snapshot may have been written (the fault hit a later step).
                let new: Vec<SnapshotId> = self
                    .listed(w)
                    .into_iter()
                    .filter(|id| !self.snaps.contains_key(id))
                    .collect();
                if new.len() > 1 {
                    self.fail(format!("a failed backup left {} new snapshots", new.len()));
                }
                for id in new {
                    self.snaps.insert(
                        id,
                        Snap {
                            stream,
                            data: data.clone(),
                            seq,
                        },
                    );
                    self.stats.adopted += 1;
                }
            }
            Err(e) => self.unexpected("backup", &e),
        }
    }

    /// Forgets `chosen` (already decided by the model) with `run`; adopts a partial result.
    fn forget_with(
        &mut self,
        w: &World,
        chosen: BTreeSet<SnapshotId>,
        faulted: bool,
        what: &str,
        run: &dyn Fn(&Repository) -> engine::Result<BTreeSet<SnapshotId>>,
    ) {
        match run(w.repo()) {
            Ok(removed) => {
                if removed != chosen {
                    self.fail(format!(
                        "{what} removed {:?}, the model chose {:?}",
                        removed.iter().map(|i| i.0.short()).collect::<Vec<_>>(),
                        chosen.iter().map(|i| i.0.short()).collect::<Vec<_>>()
                    ));
                }
                for id in &removed {
                    self.snaps.remove(id);
                }
                self.stats.forgotten += removed.len() as u64;
                if faulted {
                    self.stats.faulted_successes += 1;
                }
            }
            Err(_) if faulted => {
                self.stats.faulted_failures += 1;
                let listed = self.listed(w);
                let gone: Vec<SnapshotId> = self
                    .snaps
                    .keys()
                    .filter(|id| !listed.contains(id))
                    .copied()
                    .collect();
                for id in gone {
                    if !chosen.contains(&id) {
                        self.fail(format!(
                            "a failed {what} removed {}, which it did not choose",
                            id.0.short()
                        ));
                    }
                    self.snaps.remove(&id);
                    self.stats.forgotten += 1;
                }
            }
            Err(e) => self.unexpected(what, &e),
        }
    }

    fn keep_last(&mut self, w: &World, n: u32, faulted: bool) {
        // Per stream, all but the n newest.
        let mut chosen = BTreeSet::new();
        for s in 0..STREAMS {
            let mut mine: Vec<(&SnapshotId, &Snap)> =
                self.snaps.iter().filter(|(_, x)| x.stream == s).collect();
            mine.sort_by_key(|(_, x)| std::cmp::Reverse(x.seq));
            chosen.extend(mine.iter().skip(n as usize).map(|(id, _)| **id));
        }
        let policy = KeepPolicy {
            last: Some(n),
            ..KeepPolicy::default()
        };
        let by = GroupBy {
            host: true,
            paths: true,
            tags: false,
        };
        self.forget_with(w, chosen, faulted, "forget --keep-last", &|repo| {
            // "Now" after every snapshot time (a future-dated snapshot is always kept).
            let now = TIME_BASE_NS + 1_000_000 * 1_000_000_000;
            let report = forget(repo, &policy, by, false, now)?;
            Ok(report
                .groups
                .iter()
                .flat_map(|g| g.entries.iter())
                .filter(|e| !e.decision.keep)
                .map(|e| e.id)
                .collect())
        });
    }

    fn forget_index(&mut self, w: &World, i: usize, faulted: bool) {
        let Some(id) = self.snaps.keys().nth(i % self.snaps.len().max(1)).copied() else {
            return;
        };
        self.forget_with(w, BTreeSet::from([id]), faulted, "forget ID", &|repo| {
            let report = forget_ids(repo, &[id.to_hex()], false)?;
            Ok(report
                .groups
                .iter()
                .flat_map(|g| g.entries.iter())
                .map(|e| e.id)
                .collect())
        });
    }

    fn prune(&mut self, w: &World, faulted: bool) {
        let opts = PruneOptions {
            max_unused: MaxUnused::Percent(0.0),
            ..PruneOptions::default()
        };
        match prune(w.repo(), &opts, &NoProgress) {
            Ok(report) => {
                self.stats.packs_swept += report.sweep.packs_deleted as u64;
                self.lease_maybe_held = false;
                if faulted {
                    self.stats.faulted_successes += 1;
                }
            }
            Err(_) if faulted => {
                self.stats.faulted_failures += 1;
                self.lease_maybe_held = true;
            }
            Err(e) if self.lease_maybe_held && e.kind() == engine::ErrorKind::AlreadyExists => {
                self.stats.prunes_refused += 1;
            }
            Err(e) => self.unexpected("prune", &e),
        }
        // Prune never touches a snapshot.
        let listed = self.listed(w);
        let known: BTreeSet<SnapshotId> = self.snaps.keys().copied().collect();
        if listed != known {
            self.fail("prune changed the snapshots".to_string());
        }
    }

    fn repair_index(&mut self, w: &World, faulted: bool) {
        match repair_index(w.repo()) {
            Ok(report) => {
                if !report.packs_damaged.is_empty() {
                    self.fail(format!(
                        "repair index found damaged packs: {:?}",
                        report.packs_damaged
                    ));
                }
                if faulted {
                    self.stats.faulted_successes += 1;
                }
            }
            Err(_) if faulted => self.stats.faulted_failures += 1,
            Err(e) => self.unexpected("repair index", &e),
        }
    }
}

/// Runs the operations `input` encodes (see the module docs); panics when the repository and
/// the model disagree.
pub fn run(input: &[u8]) -> Stats {
    let ops = decode(input);
    let mut w = World::new();
    let mut m = Model::new();
    let mut pending: Option<Fault> = None;
    let n = ops.len();
    for (i, op) in ops.into_iter().enumerate() {
        let last = i + 1 == n;
        m.stats.ops += 1;
        let fault = match op {
            Op::Crash(_) | Op::LoseResponses(_) | Op::Wait | Op::Verify => None,
            _ => pending.take(),
        };
        m.log.push(match fault {
            Some(f) => format!("{op:?} under {f:?}"),
            None => format!("{op:?}"),
        });
        if let Some(f) = fault {
            w.plan.disarm().reset_counters();
            match f {
                Fault::Crash(k) => w.plan.crash_after_writes(k),
                Fault::Lose(k) => w.plan.lose_responses_from(k),
            };
        }
        let faulted = fault.is_some();
        match op {
            Op::Backup { stream, edit, at } => m.backup(&w, stream, edit, at, faulted),
            Op::KeepLast(n) => m.keep_last(&w, n, faulted),
            Op::ForgetIndex(i) => m.forget_index(&w, i, faulted),
            Op::Prune => m.prune(&w, faulted),
            Op::Wait => {
                w.plan.pass_time(WAIT);
                m.lease_maybe_held = false;
            }
            Op::Crash(k) => pending = Some(Fault::Crash(k)),
            Op::LoseResponses(k) => pending = Some(Fault::Lose(k)),
            Op::Verify => {
                w.fresh += 1;
                let repo = w.open(w.dir.path().join(format!("fresh-{}", w.fresh)));
                m.verify_with(&repo, "fresh handle and cache", true);
            }
            Op::RepairIndex => m.repair_index(&w, faulted),
        }
        if faulted {
            let crashed = w.plan.crashed();
            w.plan.disarm();
            if crashed {
                // The process died: a new one opens the repository with the same cache.
                w.restart();
            }
        }
        // `check` (tens of milliseconds: it builds a temporary index) where damage could come
        // from: faults, prune, repair, and at the end; the snapshots are dumped after every
        // operation.
        let full = faulted || last || matches!(op, Op::Prune | Op::RepairIndex);
        m.verify_with(w.repo(), "same handle", full);
    }
    m.stats
}
