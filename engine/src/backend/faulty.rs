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
//! | lost response | [`FaultPlan::lose_response_at`], [`FaultPlan::lose_responses_from`] | the write *is* performed on the inner backend (and succeeds), but the caller gets an I/O error anyway, as when a connection drops after the server stored the object. |
//!
//! Modes combine; the checks run in the order of the table, and the first that fires decides.
//! Injected errors are always of kind [`BackendErrorKind::Io`] (never `AlreadyExists`, which
//! callers treat as success for content-addressed objects) and their message contains
//! `injected fault`, so a test can tell them from real ones.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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
    /// those whose response was then "lost".
    pub writes_persisted: u64,
    /// Errors injected, of every mode.
    pub injected: u64,
}

impl FaultCounts {
    /// Puts and deletes.
    pub fn writes(&self) -> u64 {
        self.puts + self.deletes
    }
}

#[derive(Debug)]
struct PlanState {
    crash_after: AtomicU64,
    fail_write: AtomicU64,
    fail_op: AtomicU64,
    lose_at: AtomicU64,
    lose_from: AtomicU64,
    /// Probability as a threshold on a uniform u64; 0 is off.
    transient_threshold: AtomicU64,
    transient_writes_only: AtomicBool,
    rng_seed: AtomicU64,
    rng_draws: AtomicU64,
    crashed: AtomicBool,
    // Counters.
    next_op: AtomicU64,
    next_write: AtomicU64,
    puts: AtomicU64,
    gets: AtomicU64,
    get_ranges: AtomicU64,
    lists: AtomicU64,
    deletes: AtomicU64,
    exists: AtomicU64,
    persisted: AtomicU64,
    injected: AtomicU64,
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
                transient_threshold: AtomicU64::new(0),
                transient_writes_only: AtomicBool::new(false),
                rng_seed: AtomicU64::new(0),
                rng_draws: AtomicU64::new(0),
                crashed: AtomicBool::new(false),
                next_op: AtomicU64::new(0),
                next_write: AtomicU64::new(0),
                puts: AtomicU64::new(0),
                gets: AtomicU64::new(0),
                get_ranges: AtomicU64::new(0),
                lists: AtomicU64::new(0),
                deletes: AtomicU64::new(0),
                exists: AtomicU64::new(0),
                persisted: AtomicU64::new(0),
                injected: AtomicU64::new(0),
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
        let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
        // u64::MAX as f64 rounds to 2^64; the cast saturates, so p = 1 fails every call.
        let threshold = (p * u64::MAX as f64) as u64;
        self.state.rng_seed.store(seed, Ordering::SeqCst);
        self.state.rng_draws.store(0, Ordering::SeqCst);
        self.state
            .transient_writes_only
            .store(writes_only, Ordering::SeqCst);
        self.state
            .transient_threshold
            .store(threshold, Ordering::SeqCst);
        self
    }

    /// Disarms every mode (counters and the crashed flag are kept).
    pub fn disarm(&self) -> &FaultPlan {
        let s = &self.state;
        for a in [
            &s.crash_after,
            &s.fail_write,
            &s.fail_op,
            &s.lose_at,
            &s.lose_from,
        ] {
            a.store(OFF, Ordering::SeqCst);
        }
        s.transient_threshold.store(0, Ordering::SeqCst);
        self
    }

    /// Zeroes the counters, the operation and write numbers and the crashed flag.
    pub fn reset_counters(&self) -> &FaultPlan {
        let s = &self.state;
        for a in [
            &s.next_op,
            &s.next_write,
            &s.puts,
            &s.gets,
            &s.get_ranges,
            &s.lists,
            &s.deletes,
            &s.exists,
            &s.persisted,
            &s.injected,
        ] {
            a.store(0, Ordering::SeqCst);
        }
        s.crashed.store(false, Ordering::SeqCst);
        self
    }

    /// Whether crash mode has refused a write (the simulated process is "dead").
    pub fn crashed(&self) -> bool {
        self.state.crashed.load(Ordering::SeqCst)
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
        let threshold = s.transient_threshold.load(Ordering::SeqCst);
        if threshold > 0 && (op.is_write() || !s.transient_writes_only.load(Ordering::SeqCst)) {
            let draw = s.rng_draws.fetch_add(1, Ordering::SeqCst);
            let seed = s.rng_seed.load(Ordering::SeqCst);
            if splitmix64(seed.wrapping_add(draw.wrapping_mul(0x9E37_79B9_7F4A_7C15))) < threshold {
                return self.inject(format!(
                    "injected fault: transient error (operation {op_no}, seed {seed})"
                ));
            }
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
}

/// What [`FaultPlan::admit`] decided for one call.
enum Admission {
    /// Forward the call and return its result.
    Go,
    /// Fail at once with this detail; the inner backend is not called.
    Fail(String),
    /// Forward the call; if it succeeds, return an error with this detail anyway.
    LoseResponse(String),
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

    /// Runs one call under the plan.
    async fn run<T, F>(
        &self,
        op: Operation,
        path: impl FnOnce() -> String,
        call: F,
    ) -> Result<T, BackendError>
    where
        F: std::future::Future<Output = Result<T, BackendError>>,
    {
        match self.plan.admit(op) {
            Admission::Go => {
                let r = call.await;
                if op.is_write() && r.is_ok() {
                    self.plan.state.persisted.fetch_add(1, Ordering::SeqCst);
                }
                r
            }
            Admission::Fail(why) => Err(self.error(op, path(), why)),
            Admission::LoseResponse(why) => {
                call.await?;
                self.plan.state.persisted.fetch_add(1, Ordering::SeqCst);
                self.plan.state.injected.fetch_add(1, Ordering::SeqCst);
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
        self.run(
            Operation::Put,
            || t.path(name),
            self.inner.put(t, name, data),
        )
        .await
    }

    async fn get(&self, t: FileType, name: &str) -> Result<Bytes, BackendError> {
        self.run(Operation::Get, || t.path(name), self.inner.get(t, name))
            .await
    }

    async fn get_range(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, BackendError> {
        self.run(
            Operation::GetRange,
            || t.path(name),
            self.inner.get_range(t, name, offset, len),
        )
        .await
    }

    async fn list(&self, t: FileType) -> Result<Vec<ObjectInfo>, BackendError> {
        self.run(
            Operation::List,
            || format!("{}/", t.dir()),
            self.inner.list(t),
        )
        .await
    }

    async fn delete(&self, t: FileType, name: &str) -> Result<(), BackendError> {
        self.run(
            Operation::Delete,
            || t.path(name),
            self.inner.delete(t, name),
        )
        .await
    }

    async fn stat(&self, t: FileType, name: &str) -> Result<Option<ObjectInfo>, BackendError> {
        self.run(Operation::Exists, || t.path(name), self.inner.stat(t, name))
            .await
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
}
