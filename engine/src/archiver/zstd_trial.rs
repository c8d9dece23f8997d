//! zstd's minimum match length, chosen by trying, per blob saver: one per backup, and per
//! `copy`, prune repack or `repair` run that stores blobs (SPEC §3).
//!
//! Level 3 looks for matches of at least 5 bytes (for inputs over 256 KiB; zstd tunes smaller
//! ones apart). On a dump that is too short: a SQL dump is
//! runs of padding, digits and repeated words, and with 5-byte matches zstd spends its hash
//! table on short repeats and misses longer ones. On `benches/macro.sh`'s data, compressed in
//! independent 2 MiB blocks (`zstd -b3 -B2M --zstd=mml=N`):
//!
//! | data | 5 (level 3's) | 6 | 7 |
//! |---|---|---|---|
//! | pg dump, 569 MiB | 33.49 MB | 32.58 MB | 32.47 MB |
//! | Redis RDB, 301 MiB | 86.57 MB | 85.95 MB | 86.74 MB |
//! | shared libraries, 191 MiB | 59.44 MB | 60.78 MB | 62.57 MB |
//! | Rust source, 2.5 MiB | 641.6 KB | 648.6 KB | 663.5 KB |
//!
//! and a longer minimum is no slower. In cairn (`backup --stdin` of those files into fresh
//! repositories, three runs for pg and two for Redis, against the build before) the pg dump's
//! day 1 stores 33.04-33.11 MB instead of 33.78-34.12 MB and the RDB's 86.48 MB instead of
//! 87.09-87.15 MB, in the same time or less. No one length suits every kind of data, so a saver
//! tries: its first compression of data and every [`TRIAL_EVERY`]th after it is done with each
//! candidate, the smallest result is stored and its length used until the next trial. On a tie
//! (incompressible data is stored raw, the same size whatever the length) the length in use
//! stays. Only inputs of at least [`TRIAL_MIN_BYTES`] count and are tried: zstd tunes itself
//! differently for small inputs, and a 300-byte blob should not choose for the 2 MiB groups
//! after it; smaller ones just use the current length. A trial costs two extra compressions
//! and seals of one group (about 3 % more zstd work at one in 64); the length changes nothing
//! a reader sees, a frame decodes the same whatever it was made with.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use repo_format::Zstd;

/// Candidate minimum match lengths: level's own (`None`), 6 and 7.
const CANDIDATES: [Option<u32>; 3] = [None, Some(6), Some(7)];

/// One compression in this many is a trial of every candidate.
pub const TRIAL_EVERY: u64 = 64;

/// Inputs smaller than this are neither counted nor tried.
pub const TRIAL_MIN_BYTES: usize = 64 << 10;

/// The minimum match length one backup compresses its data with, and how it is chosen.
#[derive(Debug)]
pub struct MinMatch {
    level: i32,
    /// Index into [`CANDIDATES`] of the last trial's winner.
    choice: AtomicUsize,
    /// Compressions of at least [`TRIAL_MIN_BYTES`] so far.
    seen: AtomicU64,
}

impl MinMatch {
    /// Trials for compression at `level` (none at level 0 or less: nothing is compressed).
    pub fn new(level: i32) -> Self {
        MinMatch {
            level,
            choice: AtomicUsize::new(0),
            seen: AtomicU64::new(0),
        }
    }

    /// Seals `len` bytes of plaintext with `seal`: on a trial once per candidate, keeping the
    /// result whose `stored` size is smallest (the length in use on a tie, then the earlier
    /// candidate) and remembering its length; otherwise once, with the last trial's length.
    /// `seal` may fail (for its nonce salt); the first failure is returned.
    pub fn seal<T, E>(
        &self,
        len: usize,
        mut seal: impl FnMut(Zstd) -> Result<T, E>,
        stored: impl Fn(&T) -> usize,
    ) -> Result<T, E> {
        let zstd = |i: usize| Zstd {
            level: self.level,
            min_match: CANDIDATES[i],
        };
        if self.level <= 0 {
            return seal(Zstd::from(self.level));
        }
        let current = self.choice.load(Ordering::Relaxed);
        if len < TRIAL_MIN_BYTES
            || !self
                .seen
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(TRIAL_EVERY)
        {
            return seal(zstd(current));
        }
        // The length in use first, so a tie keeps it.
        let mut best = (current, seal(zstd(current))?);
        for i in (0..CANDIDATES.len()).filter(|&i| i != current) {
            let t = seal(zstd(i))?;
            if stored(&t) < stored(&best.1) {
                best = (i, t);
            }
        }
        let (i, t) = best;
        self.choice.store(i, Ordering::Relaxed);
        Ok(t)
    }

    /// The minimum match length compressions use now (`None`: the level's own).
    #[cfg(test)]
    pub fn current(&self) -> Option<u32> {
        CANDIDATES[self.choice.load(Ordering::Relaxed)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Runs `n` seals of `len` bytes where candidate `m` stores `size(m, call)` bytes;
    /// returns the lengths each seal was made with, in order.
    fn run(
        t: &MinMatch,
        n: usize,
        len: usize,
        size: impl Fn(Option<u32>, usize) -> usize,
    ) -> Vec<Vec<Option<u32>>> {
        let mut calls = Vec::new();
        for call in 0..n {
            let tried = RefCell::new(Vec::new());
            let out = t
                .seal(
                    len,
                    |z| {
                        assert_eq!(z.level, 3);
                        tried.borrow_mut().push(z.min_match);
                        Ok::<_, ()>((z.min_match, size(z.min_match, call)))
                    },
                    |&(_, s)| s,
                )
                .expect("seal");
            // What is returned is the smallest of what was made.
            let made = tried.borrow().clone();
            let smallest = made.iter().map(|&m| size(m, call)).min().expect("made");
            assert_eq!(out.1, smallest);
            calls.push(made);
        }
        calls
    }

    const BIG: usize = TRIAL_MIN_BYTES;

    #[test]
    fn trials_pick_the_smallest_and_keep_it_until_the_next_trial() {
        let t = MinMatch::new(3);
        let n = TRIAL_EVERY as usize;
        // 7 wins the first trial: the next 63 use it.
        let calls = run(&t, n, BIG, |m, _| match m {
            None => 100,
            Some(6) => 90,
            _ => 80,
        });
        assert_eq!(calls[0], CANDIDATES.to_vec());
        assert!(calls[1..].iter().all(|c| c == &[Some(7)]));
        assert_eq!(t.current(), Some(7));
        // The next trial (the length in use first) finds the level's own best and switches.
        let calls = run(&t, n + 1, BIG, |m, _| if m.is_none() { 50 } else { 60 });
        assert_eq!(calls[0], vec![Some(7), None, Some(6)]);
        assert!(calls[1..n].iter().all(|c| c == &[None]));
        assert_eq!(calls[n], CANDIDATES.to_vec());
        assert_eq!(t.current(), None);
    }

    #[test]
    fn a_tie_keeps_the_length_in_use() {
        let t = MinMatch::new(3);
        // From the level's own: a tie between it and 6 keeps it.
        run(&t, 1, BIG, |m, _| if m == Some(7) { 10 } else { 5 });
        assert_eq!(t.current(), None);
        // 7 wins the second trial (the 64th of these), then incompressible data at the third
        // (every candidate the same size) keeps it.
        run(&t, TRIAL_EVERY as usize, BIG, |m, _| {
            if m == Some(7) { 1 } else { 2 }
        });
        assert_eq!(t.current(), Some(7));
        run(&t, TRIAL_EVERY as usize - 1, BIG, |_, _| 1);
        let calls = run(&t, 1, BIG, |_, _| 1000);
        assert_eq!(calls[0], vec![Some(7), None, Some(6)], "not a trial");
        assert_eq!(t.current(), Some(7));
    }

    #[test]
    fn small_inputs_neither_count_nor_choose() {
        let t = MinMatch::new(3);
        // Small inputs use the length in use, whatever they would prefer...
        let calls = run(&t, 200, BIG - 1, |m, _| if m == Some(6) { 1 } else { 2 });
        assert!(calls.iter().all(|c| c == &[None]), "{calls:?}");
        assert_eq!(t.current(), None);
        // ...and did not count: the first large input is still the first trial.
        let calls = run(&t, 1, BIG, |m, _| if m == Some(6) { 1 } else { 2 });
        assert_eq!(calls[0], CANDIDATES.to_vec());
        assert_eq!(t.current(), Some(6));
    }

    #[test]
    fn level_zero_never_tries() {
        let raw = MinMatch::new(0);
        let mut seen = Vec::new();
        for _ in 0..3 {
            raw.seal(
                BIG,
                |z| {
                    seen.push(z);
                    Ok::<_, ()>(0)
                },
                |_| 0,
            )
            .expect("seal");
        }
        assert_eq!(seen, vec![Zstd::from(0); 3]);
    }

    #[test]
    fn a_failing_seal_fails_the_trial_and_keeps_the_length() {
        let t = MinMatch::new(3);
        run(&t, 1, BIG, |m, _| if m == Some(6) { 1 } else { 2 });
        // The next trial fails at its second seal (after 6, the length in use, was made).
        for _ in 1..TRIAL_EVERY {
            run(&t, 1, BIG, |_, _| 1);
        }
        let mut n = 0;
        let r = t.seal(
            BIG,
            |_| {
                n += 1;
                if n == 2 { Err("no salt") } else { Ok(1) }
            },
            |&s| s,
        );
        assert_eq!(r, Err("no salt"));
        assert_eq!(n, 2);
        assert_eq!(t.current(), Some(6));
    }

    #[test]
    fn on_a_dump_a_longer_minimum_wins_and_stores_less() {
        // pg_dump-like rows: padded columns and digits.
        let mut dump = Vec::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..40_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            dump.extend_from_slice(
                format!(
                    "{i}\t{}\t{}\t                                                                                    \n",
                    x % 100_000,
                    ((x >> 20) % 1000) as i64 - 500
                )
                .as_bytes(),
            );
        }
        let data = &dump[..2 << 20];
        let t = MinMatch::new(3);
        let out = t
            .seal(
                data.len(),
                |z| Ok::<_, ()>(repo_format::compress(z, data).expect("compresses")),
                |c| c.len(),
            )
            .expect("seal");
        let plain = repo_format::compress(3, data).expect("compresses");
        assert!(t.current().is_some(), "level 3's own length won on a dump");
        assert!(out.len() < plain.len(), "{} >= {}", out.len(), plain.len());
        assert_eq!(
            repo_format::decompress_exact(&out, data.len(), "t").expect("decodes"),
            data
        );
    }
}
