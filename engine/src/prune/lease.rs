//! The prune lease (SPEC §18): at most one prune works at a time, without a lock file that
//! can go stale for days.
//!
//! A lease is an object `leases/<20-digit number>` written create-only. Taking the lease means
//! writing the number after the highest one listed; of two prunes that try the same number,
//! the storage lets exactly one write it. A lease that is `Held` expires `ttl` after its
//! modification time, so a killed prune blocks the next one for at most `ttl`. Before every
//! destructive step, and at checkpoints of the long reading phases, the holder lists
//! `leases/` again and stops if a higher number exists (its lease was taken over) or its time
//! is up; after a third of the ttl it renews by writing the next number itself. Releasing writes the next number as `Released`.
//!
//! The lease saves work and confusion; it is not what keeps data safe (two prunes that both
//! believed they held it would still only delete what the sweep rules allow, SPEC §18).
//!
//! Taking the lease also measures the storage's clock (the modification time of the lease
//! object) and probes that the storage honours create-only writes; prune refuses to run when
//! the clock is off or the writes are not create-only.

use std::time::{Duration, Instant};

use bytes::Bytes;
use repo_format::{Lease, LeaseState, lease_name, parse_lease_name};

use crate::backend::{BackendErrorKind, FileType};
use crate::error::{Error, ErrorKind, Result};
use crate::repository::{Repository, now_ns, random_bytes};

/// Settings of the lease.
#[derive(Clone, Copy, Debug)]
pub struct LeaseOptions {
    /// How long a lease is valid after it is written (renewed at half-time).
    pub ttl: Duration,
    /// The largest difference tolerated between this machine's clock and the storage's.
    pub max_skew: Duration,
}

impl Default for LeaseOptions {
    fn default() -> Self {
        LeaseOptions {
            ttl: Duration::from_secs(15 * 60),
            max_skew: Duration::from_secs(5 * 60),
        }
    }
}

/// A lease this process holds.
#[derive(Debug)]
pub struct HeldLease {
    number: u64,
    holder: [u8; 16],
    /// When the current number was written (this machine's monotonic clock).
    written: Instant,
    /// The storage's clock when the lease was first taken, Unix ns.
    storage_start_ns: i64,
    opts: LeaseOptions,
}

/// What is known about the newest lease object.
struct Newest {
    number: u64,
    lease: Option<Lease>,
    modified_ns: Option<i64>,
}

fn secs(d: Duration) -> u64 {
    d.as_secs().max(1)
}

fn fmt_time(ns: i64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(ns))
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| format!("{ns} ns"))
}

/// The newest lease, if any (its object read and decrypted when possible).
fn newest(repo: &Repository) -> Result<Option<Newest>> {
    let listed = repo
        .block_on(repo.backend().list(FileType::Lease))
        .map_err(|e| Error::backend("cannot list leases/", e))?;
    let Some(info) = listed
        .iter()
        .filter_map(|i| parse_lease_name(&i.name).map(|n| (n, i)))
        .max_by_key(|(n, _)| *n)
    else {
        return Ok(None);
    };
    let (number, info) = info;
    let lease = match repo.block_on(repo.backend().get(FileType::Lease, &info.name)) {
        Ok(bytes) => Lease::decode(repo.keys(), &bytes, number).ok(),
        Err(e) if e.kind() == BackendErrorKind::NotFound => None,
        Err(e) => return Err(Error::backend("cannot read the newest prune lease", e)),
    };
    Ok(Some(Newest {
        number,
        lease,
        modified_ns: info.modified,
    }))
}

fn encode(repo: &Repository, lease: &Lease) -> Result<Bytes> {
    lease
        .encode(repo.keys(), random_bytes::<16>()?)
        .map(Bytes::from)
        .map_err(|e| Error::format("cannot encode a prune lease", e))
}

/// Writes lease `number` create-only; `Ok(false)` if that number exists already.
fn write(repo: &Repository, lease: &Lease) -> Result<Option<Bytes>> {
    let bytes = encode(repo, lease)?;
    let name = lease_name(lease.number);
    match repo.block_on(repo.backend().put(FileType::Lease, &name, bytes.clone())) {
        Ok(()) => Ok(Some(bytes)),
        Err(e) if e.kind() == BackendErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(Error::backend("cannot write the prune lease", e)),
    }
}

fn lease_of(number: u64, holder: [u8; 16], state: LeaseState, ttl: Duration) -> Lease {
    Lease {
        number,
        holder,
        state,
        created_ns: now_ns(),
        ttl_secs: secs(ttl),
        hostname: crate::host::hostname(),
        pid: std::process::id(),
    }
}

/// Takes the lease, or says who holds it.
pub fn acquire(repo: &Repository, opts: LeaseOptions) -> Result<HeldLease> {
    let newest = newest(repo)?;
    if let Some(n) = &newest
        && let Some(l) = &n.lease
        && l.state == LeaseState::Held
    {
        let since = n.modified_ns.unwrap_or(l.created_ns);
        let until = since.saturating_add(
            i64::try_from(l.ttl_secs)
                .unwrap_or(i64::MAX)
                .saturating_mul(1_000_000_000),
        );
        if now_ns() < until {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "another prune holds the lease (lease {} by {} pid {}, since {}); it expires at {} unless renewed. Backups are not affected; run prune again later",
                    n.number,
                    l.hostname,
                    l.pid,
                    fmt_time(since),
                    fmt_time(until)
                ),
            ));
        }
    }
    let number = newest.as_ref().map_or(1, |n| n.number.saturating_add(1));
    let holder = random_bytes::<16>()?;
    let lease = lease_of(number, holder, LeaseState::Held, opts.ttl);
    let before = now_ns();
    let written = Instant::now();
    let Some(bytes) = write(repo, &lease)? else {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!("another prune took lease {number} at the same moment; run prune again later"),
        ));
    };
    let after = now_ns();
    let mut held = HeldLease {
        number,
        holder,
        written,
        storage_start_ns: after,
        opts,
    };
    // From here on, a refusal releases the lease so the next prune need not wait.
    match probe(repo, &lease, bytes, before, after, opts) {
        Ok(storage_now) => {
            held.storage_start_ns = storage_now;
            Ok(held)
        }
        Err(e) => {
            let _ = held.release(repo);
            Err(e)
        }
    }
}

/// Checks that the storage refuses a second create-only write of the lease, and that its
/// clock agrees with ours; returns the storage's time of the write.
fn probe(
    repo: &Repository,
    lease: &Lease,
    bytes: Bytes,
    before: i64,
    after: i64,
    opts: LeaseOptions,
) -> Result<i64> {
    let name = lease_name(lease.number);
    match repo.block_on(repo.backend().put(FileType::Lease, &name, bytes)) {
        Err(e) if e.kind() == BackendErrorKind::AlreadyExists => {}
        Ok(()) => {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{} overwrote an existing object although cairn asked for a create-only write; prune deletes data only where the storage honours create-only writes (for S3-compatible servers: If-None-Match), so it refuses to run here",
                    repo.location()
                ),
            ));
        }
        Err(e) => return Err(Error::backend("cannot probe create-only writes", e)),
    }
    let info = repo
        .block_on(repo.backend().stat(FileType::Lease, &name))
        .map_err(|e| Error::backend("cannot read the prune lease's time", e))?
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Backend,
                format!("the prune lease {name} vanished right after it was written"),
            )
        })?;
    let Some(storage) = info.modified else {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{} does not report modification times; prune measures its grace period on the storage's clock, so it cannot run here",
                repo.location()
            ),
        ));
    };
    let skew = i64::try_from(opts.max_skew.as_nanos()).unwrap_or(i64::MAX);
    // Storage times may be rounded down to whole seconds.
    if storage < before.saturating_sub(skew).saturating_sub(1_000_000_000)
        || storage > after.saturating_add(skew)
    {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "the storage's clock ({}) and this machine's ({}) differ by more than {} s; prune measures its grace period on the storage's clock and refuses to run until the clocks agree (check NTP on both sides)",
                fmt_time(storage),
                fmt_time(after),
                opts.max_skew.as_secs()
            ),
        ));
    }
    Ok(storage)
}

impl HeldLease {
    /// The lease number currently held.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// The storage's clock when the lease was taken, Unix ns: prune's "now" for grace periods
    /// and pack ages (a lower bound of the storage's time for the rest of the run).
    pub fn storage_start_ns(&self) -> i64 {
        self.storage_start_ns
    }

    /// During long reading phases: renews the lease once a third of its time has passed (see
    /// [`check`](Self::check)); cheap otherwise.
    pub fn keep_alive(&mut self, repo: &Repository) -> Result<()> {
        if self.written.elapsed() < self.opts.ttl / 3 {
            return Ok(());
        }
        self.check(repo, "going on")
    }

    /// Before a destructive step: fails if the lease was taken over or has run out; renews it
    /// once a third of its time has passed.
    pub fn check(&mut self, repo: &Repository, step: &str) -> Result<()> {
        let lost = |why: String| {
            Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "prune lost its lease before {step} ({why}); it stopped, and a later prune finishes the job"
                ),
            )
        };
        let newest = newest(repo)?;
        match newest {
            Some(n) if n.number == self.number => {}
            Some(n) => {
                return Err(lost(format!(
                    "lease {} was written after ours, {}",
                    n.number, self.number
                )));
            }
            None => return Err(lost(format!("lease {} was deleted", self.number))),
        }
        // Past its ttl the lease may be taken by another prune, which then writes a higher
        // number (seen above) or races our renewal for the next one (create-only: one wins). So
        // an expired lease that nobody took is simply renewed.
        let elapsed = self.written.elapsed();
        if elapsed >= self.opts.ttl / 3 {
            let next = self.number.saturating_add(1);
            let written = Instant::now();
            let lease = lease_of(next, self.holder, LeaseState::Held, self.opts.ttl);
            if write(repo, &lease)?.is_none() {
                return Err(lost(format!("lease {next} was taken while renewing")));
            }
            let _ = repo.block_on(
                repo.backend()
                    .delete(FileType::Lease, &lease_name(self.number)),
            );
            self.number = next;
            self.written = written;
        }
        Ok(())
    }

    /// Gives the lease up and removes older lease objects (best effort).
    pub fn release(self, repo: &Repository) -> Result<()> {
        let next = self.number.saturating_add(1);
        let lease = lease_of(next, self.holder, LeaseState::Released, self.opts.ttl);
        write(repo, &lease)?;
        if let Ok(listed) = repo.block_on(repo.backend().list(FileType::Lease)) {
            for info in listed {
                if parse_lease_name(&info.name).is_some_and(|n| n < next) {
                    let _ = repo.block_on(repo.backend().delete(FileType::Lease, &info.name));
                }
            }
        }
        Ok(())
    }
}
