//! Faults beyond crashes, through [`engine::backend::faulty::FaultyBackend`]: torn writes (a
//! prefix stored under the final name, then an error), timeouts (a call hangs, then fails,
//! performed or not) and listings in random order.
//!
//! Each scenario runs a whole cycle under the fault on an in-memory repository that already
//! holds two snapshots: a backup, a forget, a prune that plans and, after the grace period, one
//! that sweeps. Each step either succeeds or fails with an error that says what failed. Then,
//! with the fault off:
//!
//! - through a fresh handle and cache, every snapshot that can be read restores byte-exact, and
//!   `check --read-data` reports no error except the objects the torn writes damaged
//!   (never a snapshot referencing missing or damaged data);
//! - a rerun (the backup again if it failed, the forget, `repair index` and forgetting torn
//!   snapshots where writes were torn, two prunes a grace period apart) finishes the job: the
//!   repository holds exactly the expected snapshots and `check` is clean.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::Rng;
use engine::archiver::{BackupOptions, Source, backup};
use engine::backend::faulty::{FaultPlan, FaultyBackend};
use engine::backend::{Backend, open_backend};
use engine::checker::{CheckOptions, FindingKind, ReadData, check};
use engine::forget::forget_ids;
use engine::progress::NoProgress;
use engine::prune::{MaxUnused, PruneOptions, prune};
use engine::repair::repair_index;
use engine::repository::{InitOptions, OpenOptions, Repository, init_with_backend};
use engine::restorer::{dump_content, error_chain, find_node};
use repo_format::{KdfParams, SnapshotId};

const PASSWORD: &[u8] = b"faults";
const LOCATION: &str = "memory://";
const GRACE: Duration = Duration::from_secs(3600);
/// More than the grace period and the lease ttl.
const LATER: Duration = Duration::from_secs(2 * 3600);

/// A fault kind, armed with a seed.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Each put torn with this probability.
    Torn(f64),
    /// Write number `k` torn.
    TornAt(u64),
    /// Each call (reads too) times out with this probability, after a few milliseconds.
    Timeouts(f64),
    /// Every listing in a random order.
    Shuffled,
}

impl Kind {
    fn arm(self, plan: &FaultPlan, seed: u64) {
        match self {
            Kind::Torn(p) => {
                plan.torn_writes(p, seed);
            }
            Kind::TornAt(k) => {
                plan.tear_write_at(k);
            }
            Kind::Timeouts(p) => {
                plan.timeouts(p, seed, Duration::from_millis(3), false);
            }
            Kind::Shuffled => {
                plan.shuffle_listings(seed);
            }
        }
    }

    /// Whether the kind makes operations fail (shuffled listings must not).
    fn fails(self) -> bool {
        !matches!(self, Kind::Shuffled)
    }
}

/// A temporary directory for the index caches, in memory where the system has a tmpfs at
/// `/dev/shm`: RocksDB syncs its files, and on a disk that costs more than the rest of a run.
fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(d) = tempfile::Builder::new()
            .prefix("cairn-faults-")
            .tempdir_in(shm)
    {
        return d;
    }
    tempfile::tempdir().expect("tempdir")
}

/// An in-memory repository behind a [`FaultyBackend`], with snapshots `a` and `b` (tags, and
/// streams `a.dump`, `b.dump`), both older than the grace period.
struct Env {
    dir: tempfile::TempDir,
    backend: Arc<dyn Backend>,
    plan: FaultPlan,
    /// What each tag must restore to.
    expected: BTreeMap<String, Vec<u8>>,
    /// Fresh caches made so far.
    fresh: u32,
}

impl Env {
    fn new() -> (Env, Repository) {
        let dir = scratch_dir();
        let (backend, plan) = FaultyBackend::wrap(open_backend(LOCATION).expect("memory"));
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
        let mut env = Env {
            dir,
            backend,
            plan,
            expected: BTreeMap::new(),
            fresh: 0,
        };
        let repo = env.open(env.dir.path().join("cache"));
        let mut rng = Rng(7);
        let a = rng.bytes(150_000);
        let mut b = a[..60_000].to_vec();
        b.extend(rng.bytes(90_000));
        let mut c = rng.bytes(70_000);
        c.extend_from_slice(&b[100_000..]);
        env.expected.insert("a".into(), a);
        env.expected.insert("b".into(), b);
        env.expected.insert("c".into(), c);
        env.backup(&repo, "a").expect("backup a");
        env.backup(&repo, "b").expect("backup b");
        env.plan.pass_time(LATER);
        (env, repo)
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

    fn fresh(&mut self) -> Repository {
        self.fresh += 1;
        self.open(self.dir.path().join(format!("fresh-{}", self.fresh)))
    }

    fn backup(&self, repo: &Repository, tag: &str) -> engine::Result<SnapshotId> {
        let mut opts = BackupOptions::new(Source::Stream {
            name: format!("{tag}.dump"),
            reader: Box::new(Cursor::new(self.expected[tag].clone())),
        });
        opts.tags = vec![tag.to_owned()];
        opts.workers = Some(1);
        backup(repo, opts, &NoProgress).map(|r| r.id)
    }

    /// The hex names of the objects torn writes left.
    fn torn(&self) -> BTreeSet<String> {
        self.plan
            .torn_objects()
            .into_iter()
            .map(|(_, name)| name)
            .collect()
    }

    /// Checks the repository through a fresh handle: every readable snapshot restores to its
    /// tag's bytes, damaged snapshots and `check` errors are only torn objects. Returns the
    /// readable snapshots' tags and ids, and the damaged snapshots.
    fn verify(&mut self, what: &str) -> (BTreeMap<String, SnapshotId>, Vec<SnapshotId>) {
        let torn = self.torn();
        let repo = self.fresh();
        let mut tags = BTreeMap::new();
        for (id, snap) in repo.list_snapshots().expect("list snapshots") {
            assert_eq!(snap.tags.len(), 1, "{what}: {:?}", snap.tags);
            let tag = snap.tags[0].clone();
            let node = find_node(&repo, &snap.tree, format!("{tag}.dump").as_bytes())
                .unwrap_or_else(|e| panic!("{what}: snapshot {tag}: {}", error_chain(&e)));
            let mut out = Vec::new();
            dump_content(&repo, &node, &mut out, &NoProgress).unwrap_or_else(|e| {
                panic!(
                    "{what}: snapshot {tag} does not restore: {}",
                    error_chain(&e)
                )
            });
            assert!(
                out == self.expected[&tag],
                "{what}: {tag} restores other bytes"
            );
            assert!(
                tags.insert(tag.clone(), id).is_none(),
                "{what}: two snapshots {tag}"
            );
        }
        let damaged: Vec<SnapshotId> = repo
            .damaged_snapshots()
            .into_iter()
            .map(|(id, why)| {
                assert!(
                    torn.contains(&id.to_hex()),
                    "{what}: snapshot {} is damaged but was not torn: {why}",
                    id.0.short()
                );
                id
            })
            .collect();
        let report = check(
            &repo,
            &CheckOptions {
                read_data: ReadData::All,
            },
            &NoProgress,
        )
        .unwrap_or_else(|e| panic!("{what}: check cannot run: {}", error_chain(&e)));
        for f in &report.errors {
            let damage = matches!(
                f.kind,
                FindingKind::DamagedIndex
                    | FindingKind::DamagedSnapshot
                    | FindingKind::DamagedPack
                    | FindingKind::DamagedPackHeader
            );
            assert!(
                damage && torn.contains(&f.object) && f.affects.is_empty(),
                "{what}: check reports damage that is not a torn object: {f:#?}\ntorn: {torn:?}"
            );
        }
        (tags, damaged)
    }
}

/// An operation under a fault: `Ok`, or an error that names the injected cause, or (prune)
/// refuses to work beside an object an earlier step left torn, naming it.
fn allowed<T>(
    r: engine::Result<T>,
    kind: Kind,
    torn: &BTreeSet<String>,
    step: &str,
    what: &str,
) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            let msg = error_chain(&e);
            let names_torn = e.kind() == engine::ErrorKind::Corrupt
                && torn
                    .iter()
                    .any(|name| msg.contains(name.get(..8).unwrap_or(name)));
            assert!(
                kind.fails() && (msg.contains("injected fault") || names_torn),
                "{what}: {step} failed unclearly under {kind:?}: {msg}"
            );
            None
        }
    }
}

fn prune_opts() -> PruneOptions {
    PruneOptions {
        max_unused: MaxUnused::Percent(0.0),
        ..PruneOptions::default()
    }
}

/// What a scenario saw.
#[derive(Debug, Default)]
struct Tally {
    runs: u64,
    /// Writes of the last run's faulted cycle.
    writes: u64,
    steps_failed: u64,
    torn_objects: u64,
    timed_out: u64,
}

/// One scenario: the cycle under `kind` (seeded), verification, the rerun, verification.
fn scenario(kind: Kind, seed: u64, tally: &mut Tally) {
    let what = format!("{kind:?} seed {seed}");
    let (mut env, repo) = Env::new();
    let a = env.verify(&what).0["a"];
    env.plan.reset_counters();
    kind.arm(&env.plan, seed);

    let mut results = Vec::new();
    let r = env.backup(&repo, "c").map(drop);
    results.push(allowed(r, kind, &env.torn(), "backup", &what));
    let r = forget_ids(&repo, &[a.to_hex()], false).map(drop);
    results.push(allowed(r, kind, &env.torn(), "forget", &what));
    let r = prune(&repo, &prune_opts(), &NoProgress).map(drop);
    results.push(allowed(r, kind, &env.torn(), "prune", &what));
    env.plan.pass_time(LATER);
    let r = prune(&repo, &prune_opts(), &NoProgress).map(drop);
    results.push(allowed(r, kind, &env.torn(), "second prune", &what));
    tally.runs += 1;
    tally.writes = env.plan.counts().writes();
    tally.steps_failed += results.iter().filter(|r| r.is_none()).count() as u64;
    tally.torn_objects += env.plan.counts().torn;
    tally.timed_out += env.plan.counts().timed_out;
    env.plan.disarm();

    let (tags, damaged) = env.verify(&format!("{what}, after the faults"));
    assert!(tags.contains_key("b"), "{what}: b was never forgotten");

    // The rerun, on the handle that saw the faults.
    if !tags.contains_key("c") {
        env.backup(&repo, "c")
            .unwrap_or_else(|e| panic!("{what}: backup rerun: {}", error_chain(&e)));
    }
    if tags.contains_key("a") {
        forget_ids(&repo, &[a.to_hex()], false)
            .unwrap_or_else(|e| panic!("{what}: forget rerun: {}", error_chain(&e)));
    }
    if !env.torn().is_empty() {
        repair_index(&repo).unwrap_or_else(|e| panic!("{what}: repair index: {}", error_chain(&e)));
        if !damaged.is_empty() {
            let ids: Vec<String> = damaged.iter().map(SnapshotId::to_hex).collect();
            forget_ids(&repo, &ids, false)
                .unwrap_or_else(|e| panic!("{what}: forget torn snapshots: {}", error_chain(&e)));
        }
    }
    for step in ["first", "second", "third"] {
        env.plan.pass_time(LATER);
        prune(&repo, &prune_opts(), &NoProgress)
            .unwrap_or_else(|e| panic!("{what}: {step} prune of the rerun: {}", error_chain(&e)));
    }
    drop(repo);
    let (tags, damaged) = env.verify(&format!("{what}, after the rerun"));
    assert_eq!(
        tags.keys().map(String::as_str).collect::<Vec<_>>(),
        ["b", "c"],
        "{what}"
    );
    assert!(damaged.is_empty(), "{what}: {damaged:?}");
    let repo = env.fresh();
    let report = check(
        &repo,
        &CheckOptions {
            read_data: ReadData::All,
        },
        &NoProgress,
    )
    .expect("check");
    assert!(
        report.is_clean(),
        "{what}: after the rerun: {:#?}",
        report.errors
    );
}

#[test]
fn torn_writes_are_never_trusted_and_a_rerun_finishes() {
    let mut tally = Tally::default();
    for seed in 0..10 {
        scenario(Kind::Torn(0.15), seed, &mut tally);
    }
    eprintln!("torn writes: {tally:?}");
    assert!(
        tally.torn_objects >= 5 && tally.steps_failed >= 5,
        "{tally:?}"
    );
}

/// Every write of the cycle torn in turn (a torn delete is simply not performed), until `k` is
/// past the last write.
#[test]
fn each_write_torn_in_turn() {
    let mut tally = Tally::default();
    let mut k = 0;
    loop {
        scenario(Kind::TornAt(k), 0, &mut tally);
        if k >= tally.writes {
            break;
        }
        k += 1;
        assert!(k < 100, "the cycle makes fewer than 100 writes");
    }
    eprintln!("each of {k} writes torn in turn: {tally:?}");
    assert!(
        k >= 8,
        "backup, forget and two prunes write more than {k} objects"
    );
}

#[test]
fn timeouts_fail_cleanly_and_a_rerun_finishes() {
    let mut tally = Tally::default();
    for seed in 0..10 {
        scenario(Kind::Timeouts(0.04), seed, &mut tally);
    }
    eprintln!("timeouts: {tally:?}");
    assert!(tally.timed_out >= 5 && tally.steps_failed >= 5, "{tally:?}");
}

#[test]
fn shuffled_listings_change_nothing() {
    let mut tally = Tally::default();
    for seed in 0..4 {
        scenario(Kind::Shuffled, seed, &mut tally);
    }
    assert_eq!(tally.steps_failed, 0, "{tally:?}");
}
