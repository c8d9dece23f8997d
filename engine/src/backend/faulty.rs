//! [`FaultyBackend`]: a [`Backend`] wrapper that fails on purpose, for crash-safety tests.
//!
//! It forwards every call to an inner backend, counts the calls, and injects errors according
//! to a [`FaultPlan`]. The plan is a cheap, cloneable handle to shared atomics: a test keeps one
//! clone, gives the backend another, and can re-arm, disarm or read the counters at any time,
//! also while a backup is running on other threads.
//!
//! # Fault modes
//!
//! Mutating calls ([`Backend::put`] and [`Backend::delete`]) are *writes*; each write gets a
//! write number (0, 1, 2, …) when it is called, and every call of any kind gets an operation
//! number. Numbers are handed out in call order; with several calls in flight at once the order
//! between them is whatever the scheduler made it.
//!
//! | mode | set with | effect |
//! |---|---|---|
//! | crash | [`FaultPlan::crash_after_writes`] | writes `0..k` go through; write `k` and every later one fail with [`BackendErrorKind::Io`] *without* reaching the inner backend: the process "died" after `k` writes, nothing after them is persisted. Reads keep working (a dead process makes none that matter). |
//! | fail one write | [`FaultPlan::fail_write_at`] | write `n` fails with an I/O error without being performed; the others go through. |
//! | fail one operation | [`FaultPlan::fail_operation_at`] | operation `n` (of any kind) fails with an I/O error without being performed. |
//! | transient | [`FaultPlan::transient_errors`] | each operation (or each write only) fails with probability `p`, without being performed, decided by a seeded generator: the same seed gives the same sequence of decisions. |
//! | torn write | [`FaultPlan::tear_write_at`], [`FaultPlan::torn_writes`] | a put stores only a *prefix* of its bytes under the final name, then fails: what a local disk can show after a power loss, or a buggy server. The object exists but is damaged; whoever reads it must notice (every object is content-addressed or authenticated). A torn delete is not performed. |
//! | timeout | [`FaultPlan::timeout_at`], [`FaultPlan::timeouts`] | the call hangs for a delay (`tokio::time::sleep`), then fails as a deadline would. A timed-out write may or may not have been performed, as over a network: the caller cannot tell. |
//! | lost response | [`FaultPlan::lose_response_at`], [`FaultPlan::lose_responses_from`] | the write *is* performed on the inner backend (and succeeds), but the caller gets an I/O error anyway, as when a connection drops after the server stored the object. |
//! | shuffled listings | [`FaultPlan::shuffle_listings`] | [`Backend::list`] returns its entries in a seeded random order (the contract promises no order). Not an error. |
//!
//! Modes combine; the checks run in the order of the table, and the first that fires decides.
//! Injected errors are always of kind [`BackendErrorKind::Io`] (never `AlreadyExists`, which
//! callers treat as success for content-addressed objects) and their message contains
//! `injected fault`, so a test can tell them from real ones.
//!
//! # Passing time
//!
//! [`FaultPlan::pass_time`] is not a fault: it makes every object stored so far look older by a
//! duration (the modification times [`Backend::list`] and [`Backend::stat`] report are moved
//! back; objects written later start from the real clock). Prune measures its grace period and
//! lease expiry on those times (SPEC §18), so a test can let hours "pass" without sleeping.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::{Backend, BackendError, BackendErrorKind, FileType, ObjectInfo};

/// "Not armed" for the number-valued settings.
const OFF: u64 = u64::MAX;

/// The kinds of calls a [`FaultyBackend`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// [`Backend::put`].
    Put,
    /// [`Backend::get`].
    Get,
    /// [`Backend::get_range`].
    GetRange,
    /// [`Backend::list`].
    List,
    /// [`Backend::delete`].
    Delete,
    /// [`Backend::exists`].
    Exists,
}

impl Operation {
    /// Whether the call changes the storage.
    pub fn is_write(self) -> bool {
        matches!(self, Operation::Put | Operation::Delete)
    }

    fn verb(self) -> &'static str {
        match self {
            Operation::Put => "write",
            Operation::Get | Operation::GetRange => "read",
            Operation::List => "list",
            Operation::Delete => "delete",
            Operation::Exists => "stat",
        }
    }
}

/// A snapshot of a [`FaultPlan`]'s counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Calls of every kind.
    pub operations: u64,
    /// [`Backend::put`] calls (including failed ones).
    pub puts: u64,
    /// [`Backend::get`] calls.
    pub gets: u64,
    /// [`Backend::get_range`] calls.
    pub get_ranges: u64,
    /// [`Backend::list`] calls.
    pub lists: u64,
    /// [`Backend::delete`] calls.
    pub deletes: u64,
    /// [`Backend::exists`] calls.
    pub exists: u64,
    /// Writes (puts and deletes) that reached the inner backend and succeeded there, including
    /// those whose response was then "lost" or timed out. Torn writes are not counted.
    pub writes_persisted: u64,
    /// Errors injected, of every mode.
    pub injected: u64,
    /// Puts that stored a prefix only (see [`FaultPlan::torn_objects`]).
    pub torn: u64,
    /// Calls that hung and then failed (timeouts).
    pub timed_out: u64,
}

impl FaultCounts {
    /// Puts and deletes.
    pub fn writes(&self) -> u64 {
        self.puts + self.deletes
    }
}

/// A seeded, counter-based coin: each throw fires with a set probability.
#[derive(Debug)]
struct Dice {
    /// Probability as a threshold on a uniform u64; 0 is off.
    threshold: AtomicU64,
    seed: AtomicU64,
    draws: AtomicU64,
}

impl Dice {
    fn new() -> Dice {
        Dice {
            threshold: AtomicU64::new(0),
            seed: AtomicU64::new(0),
            draws: AtomicU64::new(0),
        }
    }

    fn arm(&self, p: f64, seed: u64) {
        let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
        // u64::MAX as f64 rounds to 2^64; the cast saturates, so p = 1 fires every time.
        let threshold = (p * u64::MAX as f64) as u64;
        self.seed.store(seed, Ordering::SeqCst);
        self.draws.store(0, Ordering::SeqCst);
        self.threshold.store(threshold, Ordering::SeqCst);
    }

    fn disarm(&self) {
        self.threshold.store(0, Ordering::SeqCst);
    }

    /// Throws once (if armed): `Some(seed, another well-mixed value)` when it fires.
    fn throw(&self) -> Option<(u64, u64)> {
        let threshold = self.threshold.load(Ordering::SeqCst);
        if threshold == 0 {
            return None;
        }
        let draw = self.draws.fetch_add(1, Ordering::SeqCst);
        let seed = self.seed.load(Ordering::SeqCst);
        let x = seed.wrapping_add(draw.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        (splitmix64(x) < threshold).then(|| (seed, splitmix64(x ^ 0x5555_5555_5555_5555)))
    }
}

#[derive(Debug)]
struct PlanState {
    crash_after: AtomicU64,
    fail_write: AtomicU64,
    fail_op: AtomicU64,
    lose_at: AtomicU64,
    lose_from: AtomicU64,
    transient: Dice,
    transient_writes_only: AtomicBool,
    tear_at: AtomicU64,
    tear: Dice,
    timeout_at: AtomicU64,
    timeout_at_performs: AtomicBool,
    timeout: Dice,
    timeout_writes_only: AtomicBool,
    /// Nanoseconds a timed-out call hangs.
    timeout_delay_ns: AtomicU64,
    shuffle: AtomicBool,
    shuffle_seed: AtomicU64,
    crashed: AtomicBool,
    // Counters.
    next_op: AtomicU64,
    next_write: AtomicU64,
    next_list: AtomicU64,
    puts: AtomicU64,
    gets: AtomicU64,
    get_ranges: AtomicU64,
    lists: AtomicU64,
    deletes: AtomicU64,
    exists: AtomicU64,
    persisted: AtomicU64,
    injected: AtomicU64,
    torn: AtomicU64,
    timed_out: AtomicU64,
    torn_objects: Mutex<Vec<(FileType, String)>>,
    /// Time passed by [`FaultPlan::pass_time`], ns.
    passed_ns: AtomicU64,
    /// For each object written through the backend, `passed_ns` when it was written.
    written_at: Mutex<HashMap<(FileType, String), u64>>,
}

/// The shared control of one or more [`FaultyBackend`]s; clones share the same state.
///
/// A new plan injects nothing: it only counts. See the module docs for the modes.
#[derive(Clone, Debug)]
pub struct FaultPlan {
    state: Arc<PlanState>,
}

impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan::new()
    }
}

impl FaultPlan {
    /// A plan that injects nothing (yet).
    pub fn new() -> FaultPlan {
        FaultPlan {
            state: Arc::new(PlanState {
                crash_after: AtomicU64::new(OFF),
                fail_write: AtomicU64::new(OFF),
                fail_op: AtomicU64::new(OFF),
                lose_at: AtomicU64::new(OFF),
                lose_from: AtomicU64::new(OFF),
                transient: Dice::new(),
                transient_writes_only: AtomicBool::new(false),
                tear_at: AtomicU64::new(OFF),
                tear: Dice::new(),
                timeout_at: AtomicU64::new(OFF),
                timeout_at_performs: AtomicBool::new(false),
                timeout: Dice::new(),
                timeout_writes_only: AtomicBool::new(false),
                timeout_delay_ns: AtomicU64::new(0),
                shuffle: AtomicBool::new(false),
                shuffle_seed: AtomicU64::new(0),
                crashed: AtomicBool::new(false),
                next_op: AtomicU64::new(0),
                next_write: AtomicU64::new(0),
                next_list: AtomicU64::new(0),
                puts: AtomicU64::new(0),
                gets: AtomicU64::new(0),
                get_ranges: AtomicU64::new(0),
                lists: AtomicU64::new(0),
                deletes: AtomicU64::new(0),
                exists: AtomicU64::new(0),
                persisted: AtomicU64::new(0),
                injected: AtomicU64::new(0),
                torn: AtomicU64::new(0),
                timed_out: AtomicU64::new(0),
                torn_objects: Mutex::new(Vec::new()),
                passed_ns: AtomicU64::new(0),
                written_at: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Crash mode: the writes numbered `0..k` go through, every later write fails without
    /// being performed (`k = 0`: no write ever reaches the storage).
    pub fn crash_after_writes(&self, k: u64) -> &FaultPlan {
        self.state.crash_after.store(k, Ordering::SeqCst);
        self
    }

    /// Fails write number `n` (0-based) once, without performing it.
    pub fn fail_write_at(&self, n: u64) -> &FaultPlan {
        self.state.fail_write.store(n, Ordering::SeqCst);
        self
    }

    /// Fails operation number `n` (0-based, calls of every kind) once, without performing it.
    pub fn fail_operation_at(&self, n: u64) -> &FaultPlan {
        self.state.fail_op.store(n, Ordering::SeqCst);
        self
    }

    /// Lost response for write number `n` only: it is performed, then reported as failed.
    pub fn lose_response_at(&self, n: u64) -> &FaultPlan {
        self.state.lose_at.store(n, Ordering::SeqCst);
        self
    }

    /// Lost responses for write number `n` and every later write: each is performed, then
    /// reported as failed.
    pub fn lose_responses_from(&self, n: u64) -> &FaultPlan {
        self.state.lose_from.store(n, Ordering::SeqCst);
        self
    }

    /// Transient errors: each operation (only writes if `writes_only`) fails with probability
    /// `p` (clamped to 0..=1), without being performed. Decisions come from a generator seeded
    /// with `seed`, so a seed replays the same decisions for the same sequence of calls.
    pub fn transient_errors(&self, p: f64, seed: u64, writes_only: bool) -> &FaultPlan {
        self.state
            .transient_writes_only
            .store(writes_only, Ordering::SeqCst);
        self.state.transient.arm(p, seed);
        self
    }

    /// Torn write `n` (0-based write number): if it is a put, the first half of its bytes
    /// (rounded down) is stored under the final name and the call fails; a delete fails without
    /// being performed.
    pub fn tear_write_at(&self, n: u64) -> &FaultPlan {
        self.state.tear_at.store(n, Ordering::SeqCst);
        self
    }

    /// Torn writes at random: each put, with probability `p`, stores a prefix of a random
    /// length (shorter than the data, possibly empty) under the final name and fails. Seeded
    /// like [`transient_errors`](Self::transient_errors).
    pub fn torn_writes(&self, p: f64, seed: u64) -> &FaultPlan {
        self.state.tear.arm(p, seed);
        self
    }

    /// Operation `n` (0-based, calls of every kind) hangs for `delay`, then fails. If it is a
    /// write and `performed`, the write is carried out (after the delay) before the error is
    /// returned.
    pub fn timeout_at(&self, n: u64, delay: Duration, performed: bool) -> &FaultPlan {
        self.set_delay(delay);
        self.state
            .timeout_at_performs
            .store(performed, Ordering::SeqCst);
        self.state.timeout_at.store(n, Ordering::SeqCst);
        self
    }

    /// Timeouts at random: each operation (only writes if `writes_only`), with probability `p`,
    /// hangs for `delay` and then fails; a timed-out write is performed or not, half the time
    /// each. Seeded like [`transient_errors`](Self::transient_errors).
    pub fn timeouts(&self, p: f64, seed: u64, delay: Duration, writes_only: bool) -> &FaultPlan {
        self.set_delay(delay);
        self.state
            .timeout_writes_only
            .store(writes_only, Ordering::SeqCst);
        self.state.timeout.arm(p, seed);
        self
    }

    fn set_delay(&self, delay: Duration) {
        let ns = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        self.state.timeout_delay_ns.store(ns, Ordering::SeqCst);
    }

    /// Every later listing comes back in a random order, a different one for each call; the
    /// same `seed` and sequence of calls give the same orders.
    pub fn shuffle_listings(&self, seed: u64) -> &FaultPlan {
        self.state.shuffle_seed.store(seed, Ordering::SeqCst);
        self.state.next_list.store(0, Ordering::SeqCst);
        self.state.shuffle.store(true, Ordering::SeqCst);
        self
    }

    /// Lets `d` pass for every object stored so far: listings and stats report their
    /// modification times `d` earlier (see the module docs). Cumulative; [`disarm`](Self::disarm)
    /// keeps it.
    pub fn pass_time(&self, d: Duration) -> &FaultPlan {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .state
            .passed_ns
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |p| {
                Some(p.saturating_add(ns))
            });
        self
    }

    /// Disarms every fault mode (counters, the crashed flag and passed time are kept).
    pub fn disarm(&self) -> &FaultPlan {
        let s = &self.state;
        for a in [
            &s.crash_after,
            &s.fail_write,
            &s.fail_op,
            &s.lose_at,
            &s.lose_from,
            &s.tear_at,
            &s.timeout_at,
        ] {
            a.store(OFF, Ordering::SeqCst);
        }
        s.transient.disarm();
        s.tear.disarm();
        s.timeout.disarm();
        s.shuffle.store(false, Ordering::SeqCst);
        self
    }

    /// Zeroes the counters, the operation and write numbers, the list of torn objects and the
    /// crashed flag.
    pub fn reset_counters(&self) -> &FaultPlan {
        let s = &self.state;
        for a in [
            &s.next_op,
            &s.next_write,
            &s.next_list,
            &s.puts,
            &s.gets,
            &s.get_ranges,
            &s.lists,
            &s.deletes,
            &s.exists,
            &s.persisted,
            &s.injected,
            &s.torn,
            &s.timed_out,
        ] {
            a.store(0, Ordering::SeqCst);
        }
        lock(&s.torn_objects).clear();
        s.crashed.store(false, Ordering::SeqCst);
        self
    }

    /// Whether crash mode has refused a write (the simulated process is "dead").
    pub fn crashed(&self) -> bool {
        self.state.crashed.load(Ordering::SeqCst)
    }

    /// The objects torn writes left behind (a prefix stored under the name), in write order.
    pub fn torn_objects(&self) -> Vec<(FileType, String)> {
        lock(&self.state.torn_objects).clone()
    }

    /// The counters now.
    pub fn counts(&self) -> FaultCounts {
        let s = &self.state;
        let l = |a: &AtomicU64| a.load(Ordering::SeqCst);
        FaultCounts {
            operations: l(&s.next_op),
            puts: l(&s.puts),
            gets: l(&s.gets),
            get_ranges: l(&s.get_ranges),
            lists: l(&s.lists),
            deletes: l(&s.deletes),
            exists: l(&s.exists),
            writes_persisted: l(&s.persisted),
            injected: l(&s.injected),
            torn: l(&s.torn),
            timed_out: l(&s.timed_out),
        }
    }

    /// Numbers and counts a call; returns why it must fail before reaching the inner backend,
    /// if it must, and otherwise whether its response is to be lost.
    fn admit(&self, op: Operation) -> Admission {
        let s = &self.state;
        let op_no = s.next_op.fetch_add(1, Ordering::SeqCst);
        let counter = match op {
            Operation::Put => &s.puts,
            Operation::Get => &s.gets,
            Operation::GetRange => &s.get_ranges,
            Operation::List => &s.lists,
            Operation::Delete => &s.deletes,
            Operation::Exists => &s.exists,
        };
        counter.fetch_add(1, Ordering::SeqCst);
        let write_no = if op.is_write() {
            Some(s.next_write.fetch_add(1, Ordering::SeqCst))
        } else {
            None
        };
        if let Some(w) = write_no {
            if w >= s.crash_after.load(Ordering::SeqCst) {
                s.crashed.store(true, Ordering::SeqCst);
                return self.inject(format!(
                    "injected fault: crashed after {} writes (this was write {w})",
                    s.crash_after.load(Ordering::SeqCst)
                ));
            }
            if w == s.fail_write.load(Ordering::SeqCst) {
                return self.inject(format!("injected fault: write {w} fails"));
            }
        }
        if op_no == s.fail_op.load(Ordering::SeqCst) {
            return self.inject(format!("injected fault: operation {op_no} fails"));
        }
        if (op.is_write() || !s.transient_writes_only.load(Ordering::SeqCst))
            && let Some((seed, _)) = s.transient.throw()
        {
            return self.inject(format!(
                "injected fault: transient error (operation {op_no}, seed {seed})"
            ));
        }
        if let Some(w) = write_no {
            let at = w == s.tear_at.load(Ordering::SeqCst);
            // The dice are thrown for puts only, so deletes do not shift their decisions.
            let thrown = if op == Operation::Put && !at {
                s.tear.throw()
            } else {
                None
            };
            if at || thrown.is_some() {
                if op != Operation::Put {
                    return self.inject(format!("injected fault: torn delete {w} not performed"));
                }
                s.injected.fetch_add(1, Ordering::SeqCst);
                return Admission::Tear {
                    why: format!("injected fault: torn write {w} (only a prefix was stored)"),
                    cut: thrown.map(|(_, x)| x),
                };
            }
        }
        let delay = Duration::from_nanos(s.timeout_delay_ns.load(Ordering::SeqCst));
        if op_no == s.timeout_at.load(Ordering::SeqCst) {
            return self.time_out(
                op,
                op_no,
                delay,
                s.timeout_at_performs.load(Ordering::SeqCst),
            );
        }
        if (op.is_write() || !s.timeout_writes_only.load(Ordering::SeqCst))
            && let Some((_, x)) = s.timeout.throw()
        {
            return self.time_out(op, op_no, delay, x & 1 == 1);
        }
        match write_no {
            Some(w)
                if w == s.lose_at.load(Ordering::SeqCst)
                    || w >= s.lose_from.load(Ordering::SeqCst) =>
            {
                Admission::LoseResponse(format!(
                    "injected fault: lost response (write {w} was stored, the caller is told it failed)"
                ))
            }
            _ => Admission::Go,
        }
    }

    fn inject(&self, why: String) -> Admission {
        self.state.injected.fetch_add(1, Ordering::SeqCst);
        Admission::Fail(why)
    }

    fn time_out(&self, op: Operation, op_no: u64, delay: Duration, performed: bool) -> Admission {
        self.state.injected.fetch_add(1, Ordering::SeqCst);
        self.state.timed_out.fetch_add(1, Ordering::SeqCst);
        Admission::Timeout {
            why: format!("injected fault: operation {op_no} timed out after {delay:?}"),
            delay,
            performed: performed && op.is_write(),
        }
    }

    /// Records that (`t`, `name`) was stored now (for [`pass_time`](Self::pass_time)); an
    /// object stored before keeps its time (a create-only put does not change it).
    fn note_written(&self, t: FileType, name: &str) {
        let now = self.state.passed_ns.load(Ordering::SeqCst);
        lock(&self.state.written_at)
            .entry((t, name.to_owned()))
            .or_insert(now);
    }

    /// Moves `info`'s modification time back by the time passed since it was written.
    fn age(&self, t: FileType, info: &mut ObjectInfo) {
        let passed = self.state.passed_ns.load(Ordering::SeqCst);
        if passed == 0 {
            return;
        }
        let since = lock(&self.state.written_at)
            .get(&(t, info.name.clone()))
            .copied()
            .unwrap_or(0);
        let back = i64::try_from(passed.saturating_sub(since)).unwrap_or(i64::MAX);
        if let Some(m) = info.modified.as_mut() {
            *m = m.saturating_sub(back);
        }
    }

    /// Shuffles a listing, if armed.
    fn shuffle<T>(&self, items: &mut [T]) {
        let s = &self.state;
        if !s.shuffle.load(Ordering::SeqCst) {
            return;
        }
        let call = s.next_list.fetch_add(1, Ordering::SeqCst);
        let base = s
            .shuffle_seed
            .load(Ordering::SeqCst)
            .wrapping_add(call.wrapping_mul(0xD1B5_4A32_D192_ED03));
        // Fisher-Yates.
        for i in (1..items.len()).rev() {
            let r = splitmix64(base.wrapping_add(i as u64));
            let j = (r % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// Locks a mutex, also after a panic elsewhere (the data are plain collections).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What [`FaultPlan::admit`] decided for one call.
enum Admission {
    /// Forward the call and return its result.
    Go,
    /// Fail at once with this detail; the inner backend is not called.
    Fail(String),
    /// Forward the call; if it succeeds, return an error with this detail anyway.
    LoseResponse(String),
    /// Store a prefix only (puts), then fail. `cut` picks its length (`None`: half).
    Tear { why: String, cut: Option<u64> },
    /// Wait `delay`, perform the write if `performed`, then fail.
    Timeout {
        why: String,
        delay: Duration,
        performed: bool,
    },
}

/// SplitMix64's output function: a well-mixed u64 from a counter-based input.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A backend that forwards to another one and fails as its [`FaultPlan`] says (module docs).
#[derive(Debug)]
pub struct FaultyBackend {
    inner: Arc<dyn Backend>,
    plan: FaultPlan,
}

impl FaultyBackend {
    /// Wraps `inner`; `plan` (or a clone of it) controls the faults.
    pub fn new(inner: Arc<dyn Backend>, plan: FaultPlan) -> FaultyBackend {
        FaultyBackend { inner, plan }
    }

    /// Wraps `inner` with a fresh plan; returns the backend, ready to hand to a repository, and
    /// the plan's handle.
    pub fn wrap(inner: Arc<dyn Backend>) -> (Arc<dyn Backend>, FaultPlan) {
        let plan = FaultPlan::new();
        (Arc::new(FaultyBackend::new(inner, plan.clone())), plan)
    }

    /// The plan controlling this backend.
    pub fn plan(&self) -> &FaultPlan {
        &self.plan
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }

    fn error(&self, op: Operation, path: String, detail: String) -> BackendError {
        BackendError::new(BackendErrorKind::Io, op.verb(), path, self.inner.location())
            .with_detail(detail)
    }

    /// Runs one call on (`t`, `name`) (`name` is `None` for a listing) under the plan. `call`
    /// performs it on the inner backend (called at most once); a torn put stores a prefix of
    /// `data` instead.
    async fn run<T, F, Fut>(
        &self,
        op: Operation,
        t: FileType,
        name: Option<&str>,
        data: Option<&Bytes>,
        call: F,
    ) -> Result<T, BackendError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, BackendError>>,
    {
        let path = || name.map_or_else(|| format!("{}/", t.dir()), |n| t.path(n));
        let done = |r: &Result<T, BackendError>| {
            if r.is_ok()
                && let Some(name) = name
            {
                match op {
                    Operation::Put => {
                        self.plan.state.persisted.fetch_add(1, Ordering::SeqCst);
                        self.plan.note_written(t, name);
                    }
                    Operation::Delete => {
                        self.plan.state.persisted.fetch_add(1, Ordering::SeqCst);
                        lock(&self.plan.state.written_at).remove(&(t, name.to_owned()));
                    }
                    _ => {}
                }
            }
        };
        match self.plan.admit(op) {
            Admission::Go => {
                let r = call().await;
                done(&r);
                r
            }
            Admission::Fail(why) => Err(self.error(op, path(), why)),
            Admission::LoseResponse(why) => {
                let r = call().await;
                done(&r);
                r?;
                self.plan.state.injected.fetch_add(1, Ordering::SeqCst);
                Err(self.error(op, path(), why))
            }
            Admission::Tear { why, cut } => {
                let (Some(name), Some(data)) = (name, data) else {
                    return Err(self.error(op, path(), why));
                };
                let len = data.len() as u64;
                let keep = match cut {
                    Some(x) if len > 0 => x % len,
                    _ => len / 2,
                };
                let prefix = data.slice(..usize::try_from(keep).unwrap_or(0));
                // Create-only: an existing object stays as it was, and the caller learns that
                // it exists, as from a real storage.
                self.inner.put(t, name, prefix).await?;
                self.plan.note_written(t, name);
                self.plan.state.torn.fetch_add(1, Ordering::SeqCst);
                lock(&self.plan.state.torn_objects).push((t, name.to_owned()));
                Err(self.error(op, path(), why))
            }
            Admission::Timeout {
                why,
                delay,
                performed,
            } => {
                tokio::time::sleep(delay).await;
                if performed {
                    let r = call().await;
                    done(&r);
                }
                Err(self.error(op, path(), why))
            }
        }
    }
}

#[async_trait::async_trait]
impl Backend for FaultyBackend {
    fn location(&self) -> String {
        self.inner.location()
    }

    async fn put(&self, t: FileType, name: &str, data: Bytes) -> Result<(), BackendError> {
        self.run(Operation::Put, t, Some(name), Some(&data), || {
            self.inner.put(t, name, data.clone())
        })
        .await
    }

    async fn get(&self, t: FileType, name: &str) -> Result<Bytes, BackendError> {
        self.run(Operation::Get, t, Some(name), None, || {
            self.inner.get(t, name)
        })
        .await
    }

    async fn get_range(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, BackendError> {
        self.run(Operation::GetRange, t, Some(name), None, || {
            self.inner.get_range(t, name, offset, len)
        })
        .await
    }

    async fn list(&self, t: FileType) -> Result<Vec<ObjectInfo>, BackendError> {
        let mut listed = self
            .run(Operation::List, t, None, None, || self.inner.list(t))
            .await?;
        for info in &mut listed {
            self.plan.age(t, info);
        }
        self.plan.shuffle(&mut listed);
        Ok(listed)
    }

    async fn delete(&self, t: FileType, name: &str) -> Result<(), BackendError> {
        self.run(Operation::Delete, t, Some(name), None, || {
            self.inner.delete(t, name)
        })
        .await
    }

    async fn stat(&self, t: FileType, name: &str) -> Result<Option<ObjectInfo>, BackendError> {
        let mut info = self
            .run(Operation::Exists, t, Some(name), None, || {
                self.inner.stat(t, name)
            })
            .await?;
        if let Some(i) = info.as_mut() {
            self.plan.age(t, i);
        }
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::open_backend;

    fn memory() -> (Arc<dyn Backend>, Arc<dyn Backend>, FaultPlan) {
        let inner = open_backend("memory://").expect("memory backend");
        let (faulty, plan) = FaultyBackend::wrap(Arc::clone(&inner));
        (inner, faulty, plan)
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    }

    fn name(i: u64) -> String {
        format!("{i:064x}")
    }

    #[test]
    fn counts_without_faults() {
        let (_inner, b, plan) = memory();
        rt().block_on(async {
            b.put(FileType::Index, &name(1), Bytes::from_static(b"x"))
                .await
                .expect("put");
            b.get(FileType::Index, &name(1)).await.expect("get");
            b.get_range(FileType::Index, &name(1), 0, 1)
                .await
                .expect("range");
            b.list(FileType::Index).await.expect("list");
            b.exists(FileType::Index, &name(1)).await.expect("exists");
            b.delete(FileType::Index, &name(1)).await.expect("delete");
        });
        let c = plan.counts();
        assert_eq!(
            c,
            FaultCounts {
                operations: 6,
                puts: 1,
                gets: 1,
                get_ranges: 1,
                lists: 1,
                deletes: 1,
                exists: 1,
                writes_persisted: 2,
                injected: 0,
                torn: 0,
                timed_out: 0,
            }
        );
        assert_eq!(c.writes(), 2);
    }

    #[test]
    fn crash_after_k_writes_persists_exactly_k() {
        let (inner, b, plan) = memory();
        plan.crash_after_writes(2);
        rt().block_on(async {
            for i in 0..5 {
                let r = b
                    .put(FileType::Snapshot, &name(i), Bytes::from_static(b"s"))
                    .await;
                assert_eq!(r.is_ok(), i < 2, "put {i}: {r:?}");
                if let Err(e) = r {
                    assert_eq!(e.kind(), BackendErrorKind::Io);
                    assert!(e.to_string().contains("injected fault"), "{e}");
                }
            }
            // Reads still work after the "crash".
            assert_eq!(b.list(FileType::Snapshot).await.expect("list").len(), 2);
            assert_eq!(inner.list(FileType::Snapshot).await.expect("list").len(), 2);
        });
        assert!(plan.crashed());
        assert_eq!(plan.counts().writes_persisted, 2);
        assert_eq!(plan.counts().injected, 3);
    }

    #[test]
    fn fail_one_write_or_operation() {
        let (inner, b, plan) = memory();
        plan.fail_write_at(1);
        rt().block_on(async {
            let names: Vec<String> = (0..3).map(name).collect();
            let results: Vec<bool> = futures::future::join_all(
                names
                    .iter()
                    .map(|n| b.put(FileType::Key, n, Bytes::from_static(b"k"))),
            )
            .await
            .iter()
            .map(Result::is_ok)
            .collect();
            assert_eq!(results.iter().filter(|ok| !**ok).count(), 1);
            assert_eq!(inner.list(FileType::Key).await.expect("list").len(), 2);
            // Operation numbers count every call: 3 puts so far, so operation 4 is the second
            // list below.
            plan.fail_operation_at(4);
            assert!(b.list(FileType::Key).await.is_ok());
            assert!(b.list(FileType::Key).await.is_err());
            assert!(b.list(FileType::Key).await.is_ok());
        });
        assert!(!plan.crashed());
    }

    #[test]
    fn lost_response_stores_but_reports_failure() {
        let (inner, b, plan) = memory();
        plan.lose_response_at(0);
        rt().block_on(async {
            let e = b
                .put(FileType::Snapshot, &name(7), Bytes::from_static(b"s"))
                .await
                .expect_err("lost response");
            assert_eq!(e.kind(), BackendErrorKind::Io);
            assert!(e.to_string().contains("lost response"), "{e}");
            assert_eq!(
                inner
                    .exists(FileType::Snapshot, &name(7))
                    .await
                    .expect("exists"),
                Some(1)
            );
            // A retry sees the object already there.
            let e = b
                .put(FileType::Snapshot, &name(7), Bytes::from_static(b"s"))
                .await
                .expect_err("exists");
            assert!(e.is_already_exists());
            plan.lose_responses_from(2);
            for i in 10..13 {
                let r = b
                    .put(FileType::Snapshot, &name(i), Bytes::from_static(b"s"))
                    .await;
                assert!(r.is_err(), "{i}");
            }
            assert_eq!(inner.list(FileType::Snapshot).await.expect("list").len(), 4);
        });
        assert_eq!(plan.counts().writes_persisted, 4);
    }

    #[test]
    fn transient_errors_are_seeded_and_roughly_p() {
        let decisions = |seed: u64| -> Vec<bool> {
            let (_inner, b, plan) = memory();
            plan.transient_errors(0.2, seed, false);
            rt().block_on(async {
                let mut v = Vec::new();
                for _ in 0..1000 {
                    v.push(b.list(FileType::Index).await.is_err());
                }
                v
            })
        };
        let a = decisions(42);
        assert_eq!(a, decisions(42), "same seed, same decisions");
        assert_ne!(a, decisions(43));
        let failed = a.iter().filter(|f| **f).count();
        assert!(
            (120..280).contains(&failed),
            "{failed} of 1000 failed at p = 0.2"
        );

        let (_inner, b, plan) = memory();
        plan.transient_errors(1.0, 1, true);
        rt().block_on(async {
            assert!(b.list(FileType::Index).await.is_ok(), "reads are spared");
            assert!(
                b.put(FileType::Index, &name(1), Bytes::from_static(b"i"))
                    .await
                    .is_err()
            );
        });
        plan.disarm();
        rt().block_on(async {
            assert!(
                b.put(FileType::Index, &name(1), Bytes::from_static(b"i"))
                    .await
                    .is_ok()
            );
        });
    }

    #[test]
    fn torn_write_leaves_a_prefix_under_the_final_name() {
        let (inner, b, plan) = memory();
        plan.tear_write_at(1);
        let data = Bytes::from_static(b"0123456789");
        rt().block_on(async {
            b.put(FileType::Pack, &name(1), data.clone())
                .await
                .expect("write 0");
            let e = b
                .put(FileType::Pack, &name(2), data.clone())
                .await
                .expect_err("write 1 is torn");
            assert_eq!(e.kind(), BackendErrorKind::Io);
            assert!(e.to_string().contains("torn write"), "{e}");
            assert_eq!(
                &inner.get(FileType::Pack, &name(2)).await.expect("stored")[..],
                b"01234"
            );
            // A retry of the same put is refused: the damaged object stays.
            assert!(
                b.put(FileType::Pack, &name(2), data.clone())
                    .await
                    .expect_err("exists")
                    .is_already_exists()
            );
        });
        assert_eq!(plan.torn_objects(), vec![(FileType::Pack, name(2))]);
        let c = plan.counts();
        assert_eq!((c.torn, c.injected, c.writes_persisted), (1, 1, 1));

        // At random, with a seed: prefixes are shorter than the data, deletes are spared.
        let (inner, b, plan) = memory();
        plan.torn_writes(0.5, 9);
        rt().block_on(async {
            for i in 0..100 {
                let r = b.put(FileType::Index, &name(i), data.clone()).await;
                let stored = inner.get(FileType::Index, &name(i)).await.expect("stored");
                assert_eq!(r.is_ok(), stored.len() == data.len(), "{i}: {r:?}");
                assert!(data.starts_with(&stored));
                b.delete(FileType::Index, &name(i)).await.expect("delete");
            }
        });
        let torn = plan.counts().torn;
        assert!((30..70).contains(&torn), "{torn} of 100 torn at p = 0.5");
        assert_eq!(plan.torn_objects().len() as u64, torn);
        plan.reset_counters();
        assert!(plan.torn_objects().is_empty());
    }

    #[test]
    fn timeouts_hang_then_fail_performed_or_not() {
        let (inner, b, plan) = memory();
        let delay = Duration::from_millis(30);
        rt().block_on(async {
            plan.timeout_at(0, delay, true);
            let start = std::time::Instant::now();
            let e = b
                .put(FileType::Snapshot, &name(1), Bytes::from_static(b"s"))
                .await
                .expect_err("timed out");
            assert!(start.elapsed() >= delay);
            assert!(e.to_string().contains("timed out"), "{e}");
            assert!(
                inner
                    .exists(FileType::Snapshot, &name(1))
                    .await
                    .expect("exists")
                    .is_some()
            );
            plan.timeout_at(1, delay, false);
            b.put(FileType::Snapshot, &name(2), Bytes::from_static(b"s"))
                .await
                .expect_err("timed out");
            assert!(
                inner
                    .exists(FileType::Snapshot, &name(2))
                    .await
                    .expect("exists")
                    .is_none()
            );
            plan.timeout_at(2, delay, true);
            assert!(
                b.list(FileType::Snapshot).await.is_err(),
                "reads time out too"
            );
            plan.disarm();
            plan.timeouts(1.0, 3, Duration::ZERO, true);
            assert!(b.list(FileType::Snapshot).await.is_ok(), "reads are spared");
            assert!(b.delete(FileType::Snapshot, &name(1)).await.is_err());
        });
        assert_eq!(plan.counts().timed_out, 4);
    }

    #[test]
    fn shuffled_listings_keep_the_entries() {
        let (_inner, b, plan) = memory();
        let orders = rt().block_on(async {
            for i in 0..20 {
                b.put(FileType::Index, &name(i), Bytes::from_static(b"i"))
                    .await
                    .expect("put");
            }
            let plain = b.list(FileType::Index).await.expect("list");
            plan.shuffle_listings(5);
            let mut orders = Vec::new();
            for _ in 0..3 {
                let l = b.list(FileType::Index).await.expect("list");
                let mut sorted = l.clone();
                sorted.sort();
                let mut want = plain.clone();
                want.sort();
                assert_eq!(sorted, want);
                orders.push(l.into_iter().map(|i| i.name).collect::<Vec<_>>());
            }
            orders
        });
        assert_ne!(orders[0], orders[1], "each listing has its own order");
        // The same seed gives the same orders.
        let (_inner, b, plan) = memory();
        let again = rt().block_on(async {
            for i in 0..20 {
                b.put(FileType::Index, &name(i), Bytes::from_static(b"i"))
                    .await
                    .expect("put");
            }
            plan.shuffle_listings(5);
            b.list(FileType::Index).await.expect("list")
        });
        let mut a: Vec<_> = again.into_iter().map(|i| i.name).collect();
        assert_eq!(a, orders[0]);
        a.sort();
        assert_ne!(a, orders[0]);
    }

    #[test]
    fn passing_time_ages_the_objects_stored_before() {
        let (_inner, b, plan) = memory();
        let hour = Duration::from_secs(3600);
        let ns = |d: Duration| i64::try_from(d.as_nanos()).expect("fits");
        rt().block_on(async {
            let stat = |n: u64| {
                let b = Arc::clone(&b);
                async move {
                    b.stat(FileType::Plan, &name(n))
                        .await
                        .expect("stat")
                        .expect("exists")
                        .modified
                        .expect("memory reports times")
                }
            };
            b.put(FileType::Plan, &name(1), Bytes::from_static(b"p"))
                .await
                .expect("put");
            let t1 = stat(1).await;
            plan.pass_time(hour);
            b.put(FileType::Plan, &name(2), Bytes::from_static(b"p"))
                .await
                .expect("put");
            let t2 = stat(2).await;
            assert!(
                t2 - stat(1).await >= ns(hour),
                "the old object is an hour older"
            );
            assert!(stat(1).await <= t1 - ns(hour));
            plan.disarm().pass_time(hour);
            assert!(stat(1).await <= t1 - 2 * ns(hour));
            assert!(stat(2).await <= t2 - ns(hour));
            let listed = b.list(FileType::Plan).await.expect("list");
            let old = listed.iter().find(|i| i.name == name(1)).expect("listed");
            assert_eq!(old.modified, Some(stat(1).await));
            // A deleted and rewritten object is new again.
            b.delete(FileType::Plan, &name(1)).await.expect("delete");
            b.put(FileType::Plan, &name(1), Bytes::from_static(b"p"))
                .await
                .expect("put");
            assert!(stat(1).await > t2);
        });
    }
}
