//! zstd's minimum match length and match-finder table sizes, chosen by trying, per blob saver:
//! one per backup, and per `copy`, prune repack or `repair` run that stores blobs (SPEC §3).
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
//! and a longer minimum is no slower. The match finder's tables matter too: level 3 indexes
//! 2^17 hash entries and 2^16 chain entries (`hlog=17,clog=16`); smaller tables keep fewer,
//! more recent positions, which is faster (they fit the caches) and usually compresses worse,
//! but not on a dump, whose best matches are nearby rows. The first 200 MB of each
//! (`zstd -b3 -i4 -B2M --zstd=hlog=H,clog=C,mml=M`, one core of this machine):
//!
//! | data | 17/16, 6 | 15/14, 6 | 15/14, 7 |
//! |---|---|---|---|
//! | pg dump | 29.06 MB, 453 MB/s | 28.93 MB, 613 MB/s | 28.85 MB, 603 MB/s |
//! | Redis RDB | 54.51 MB, 291 MB/s | 56.38 MB, 356 MB/s | 57.32 MB, 357 MB/s |
//! | shared libraries (5: 43.09 MB) | 44.02 MB, 327 MB/s | 45.80 MB, 411 MB/s | 47.09 MB, 418 MB/s |
//! | text files of the tree | 44.28 MB, 240 MB/s | 46.53 MB, 285 MB/s | 47.74 MB, 293 MB/s |
//!
//! No one setting suits every kind of data, so a saver tries: at its first compression of data
//! and [`TRIAL_EVERY`] compressions after a trial that changed the setting, the first
//! [`TRIAL_SAMPLE_BYTES`] of the input are compressed with each candidate, and the setting that
//! makes the sample smallest compresses the input and everything until the next trial, so a
//! dump gets the smaller (faster) tables and everything else keeps level 3's. A trial that
//! keeps the setting doubles the gap to the next, up to [`TRIAL_EVERY_MAX`]: one long stream of
//! one kind (a dump) is tried at its compressions 0, 64, 192, 448, ..., not at every 64th. On a tie (incompressible data is stored raw, the same
//! size whatever the setting) the setting in use stays. Only inputs of at least
//! [`TRIAL_MIN_BYTES`] count and are tried: zstd tunes itself differently for small inputs, and
//! a 300-byte blob should not choose for the 2 MiB groups after it; smaller ones just use the
//! current setting. A trial costs five compressions of half a 2 MiB group, 2.5 groups' worth
//! (3.9 % more zstd work at one group in 64; with the gap doubling, the pg dump's 290 groups
//! have trials at 0, 64 and 192, 2.6 %; compressing the whole group with each of the five
//! cost 6.3 %, with each of the three candidates before the tables 3.1 %).
//! Samples of 512 KiB chose worse on the RDB (0.3 % more stored: the candidates differ less on
//! shorter inputs, `zstd -b3 -B512K`: 6 beats 5 by 0.07 % there, by 0.7 % on 2 MiB); samples of
//! 1 MiB stored what whole-group trials did. The setting changes nothing a reader sees, a frame
//! decodes the same whatever it was made with.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use repo_format::Zstd;

/// Smaller match-finder tables than level 3's (`hashLog`, `chainLog`).
const SMALL_TABLES: Option<(u32, u32)> = Some((15, 14));

/// A minimum match length and match-finder tables (`None`: the level's own).
type Setting = (Option<u32>, Option<(u32, u32)>);

/// Candidates: the level's own, then longer minimums, then longer minimums with smaller tables.
const CANDIDATES: [Setting; 5] = [
    (None, None),
    (Some(6), None),
    (Some(7), None),
    (Some(6), SMALL_TABLES),
    (Some(7), SMALL_TABLES),
];

/// Compressions from a trial that changed the setting (or the first) to the next trial.
pub const TRIAL_EVERY: u64 = 64;

/// The longest gap between trials, reached by doubling it at each trial that keeps the setting.
pub const TRIAL_EVERY_MAX: u64 = 1024;

/// Inputs smaller than this are neither counted nor tried.
pub const TRIAL_MIN_BYTES: usize = 64 << 10;

/// A trial compresses at most this much of its input (the start) with each candidate (more
/// than 256 KiB, where zstd uses its parameters for large inputs).
pub const TRIAL_SAMPLE_BYTES: usize = 1 << 20;

/// The zstd settings one backup compresses its data with, and how they are chosen.
#[derive(Debug)]
pub struct ZstdTrial {
    level: i32,
    /// Index into [`CANDIDATES`] of the last trial's winner.
    choice: AtomicUsize,
    /// Compressions of at least [`TRIAL_MIN_BYTES`] so far.
    seen: AtomicU64,
    /// The value of `seen` at which the next trial runs (`u64::MAX` while one runs).
    next: AtomicU64,
    /// The gap from the last trial to `next`.
    gap: AtomicU64,
}

impl ZstdTrial {
    /// Trials for compression at `level` (none at level 0 or less: nothing is compressed).
    pub fn new(level: i32) -> Self {
        ZstdTrial {
            level,
            choice: AtomicUsize::new(0),
            seen: AtomicU64::new(0),
            next: AtomicU64::new(0),
            gap: AtomicU64::new(TRIAL_EVERY),
        }
    }

    /// The setting to compress `len` bytes of plaintext with: on a trial, `measure` gives each
    /// candidate's compressed size of the sample (see [`sample_size`]; the setting in use first)
    /// and the smallest wins (the setting in use on a tie, then the earlier candidate) and is
    /// remembered; otherwise the last trial's, without measuring.
    pub fn setting(&self, len: usize, mut measure: impl FnMut(Zstd) -> usize) -> Zstd {
        let zstd = |i: usize| Zstd {
            level: self.level,
            min_match: CANDIDATES[i].0,
            tables: CANDIDATES[i].1,
        };
        if self.level <= 0 {
            return Zstd::from(self.level);
        }
        let current = self.choice.load(Ordering::Relaxed);
        if len < TRIAL_MIN_BYTES {
            return zstd(current);
        }
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        let next = self.next.load(Ordering::Relaxed);
        // One worker runs a trial; the others go on with the setting in use meanwhile.
        if n < next
            || self
                .next
                .compare_exchange(next, u64::MAX, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return zstd(current);
        }
        // The setting in use first, so a tie keeps it.
        let mut best = (current, measure(zstd(current)));
        for i in (0..CANDIDATES.len()).filter(|&i| i != current) {
            let size = measure(zstd(i));
            if size < best.1 {
                best = (i, size);
            }
        }
        self.choice.store(best.0, Ordering::Relaxed);
        let gap = if n > 0 && best.0 == current {
            (self.gap.load(Ordering::Relaxed) * 2).min(TRIAL_EVERY_MAX)
        } else {
            TRIAL_EVERY
        };
        self.gap.store(gap, Ordering::Relaxed);
        // Release: the worker that claims the next trial sees this trial's gap.
        self.next.store(n + gap, Ordering::Release);
        zstd(best.0)
    }

    /// The settings compressions use now (minimum match length, tables; `None`: the level's).
    #[cfg(test)]
    pub fn current(&self) -> Setting {
        CANDIDATES[self.choice.load(Ordering::Relaxed)]
    }
}

/// What `zstd` stores of `sample`: its compressed size, or its own when zstd does not make it
/// smaller (it would be stored raw).
pub fn sample_size(zstd: Zstd, sample: &[u8]) -> usize {
    repo_format::compress(zstd, sample).map_or(sample.len(), |c| c.len())
}

/// What a trial compresses of `plain`: its first [`TRIAL_SAMPLE_BYTES`].
pub fn sample_of(plain: &[u8]) -> &[u8] {
    &plain[..plain.len().min(TRIAL_SAMPLE_BYTES)]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asks for `n` settings for `len` bytes where setting `m` measures `size(m, call)`;
    /// returns, per call, the settings measured (a trial) or the one given without measuring.
    fn run(
        t: &ZstdTrial,
        n: usize,
        len: usize,
        size: impl Fn(Setting, usize) -> usize,
    ) -> Vec<Vec<Setting>> {
        let mut calls = Vec::new();
        for call in 0..n {
            let mut measured = Vec::new();
            let z = t.setting(len, |z| {
                assert_eq!(z.level, 3);
                let m = (z.min_match, z.tables);
                measured.push(m);
                size(m, call)
            });
            let chosen = (z.min_match, z.tables);
            if measured.is_empty() {
                calls.push(vec![chosen]);
                continue;
            }
            // What is chosen is the smallest of what was measured.
            let smallest = measured
                .iter()
                .map(|&m| size(m, call))
                .min()
                .expect("measured");
            assert_eq!(size(chosen, call), smallest);
            calls.push(measured);
        }
        calls
    }

    const BIG: usize = TRIAL_MIN_BYTES;

    const OWN: Setting = (None, None);
    const M6: Setting = (Some(6), None);
    const M7: Setting = (Some(7), None);
    const S6: Setting = (Some(6), SMALL_TABLES);
    const S7: Setting = (Some(7), SMALL_TABLES);

    #[test]
    fn trials_pick_the_smallest_and_keep_it_until_the_next_trial() {
        let t = ZstdTrial::new(3);
        let n = TRIAL_EVERY as usize;
        assert_eq!(CANDIDATES, [OWN, M6, M7, S6, S7]);
        // 7 with small tables wins the first trial: the next 63 use it.
        let calls = run(&t, n, BIG, |m, _| match m {
            OWN => 100,
            M6 => 90,
            M7 => 85,
            S6 => 82,
            _ => 80,
        });
        assert_eq!(calls[0], CANDIDATES.to_vec());
        assert!(calls[1..].iter().all(|c| c == &[S7]));
        assert_eq!(t.current(), S7);
        // The next trial (the setting in use first) finds the level's own best and switches.
        let calls = run(&t, n + 1, BIG, |m, _| if m == OWN { 50 } else { 60 });
        assert_eq!(calls[0], vec![S7, OWN, M6, M7, S6]);
        assert!(calls[1..n].iter().all(|c| c == &[OWN]));
        assert_eq!(calls[n], CANDIDATES.to_vec());
        assert_eq!(t.current(), OWN);
    }

    #[test]
    fn trials_that_keep_the_setting_come_less_often_until_one_changes_it() {
        let t = ZstdTrial::new(3);
        // Small tables and 6 win every trial: trials at 0, then 64, 128, 256, ... apart.
        let calls = run(&t, 3000, BIG, |m, _| if m == S6 { 1 } else { 2 });
        let trials: Vec<usize> = (0..calls.len()).filter(|&i| calls[i].len() > 1).collect();
        assert_eq!(trials, [0, 64, 192, 448, 960, 1984]);
        // The next is 1024 on (call 8 below); a change (at call 1000 on) starts again from 64.
        let calls = run(&t, 3100, BIG, |m, call| match (m, call) {
            (S6, 0..1000) | (OWN, 1000..) => 1,
            _ => 2,
        });
        let trials: Vec<usize> = (0..calls.len()).filter(|&i| calls[i].len() > 1).collect();
        assert_eq!(trials, [8, 1032, 1096, 1224, 1480, 1992, 3016]);
        assert_eq!(t.current(), OWN);
    }

    #[test]
    fn a_tie_keeps_the_setting_in_use() {
        let t = ZstdTrial::new(3);
        // From the level's own: a tie between it and the others but 7 keeps it.
        run(&t, 1, BIG, |m, _| if m == M7 { 10 } else { 5 });
        assert_eq!(t.current(), OWN);
        // 7 wins the second trial (the 64th of these), then incompressible data at the third
        // (every candidate the same size) keeps it.
        run(
            &t,
            TRIAL_EVERY as usize,
            BIG,
            |m, _| {
                if m == M7 { 1 } else { 2 }
            },
        );
        assert_eq!(t.current(), M7);
        run(&t, TRIAL_EVERY as usize - 1, BIG, |_, _| 1);
        let calls = run(&t, 1, BIG, |_, _| 1000);
        assert_eq!(calls[0], vec![M7, OWN, M6, S6, S7], "a trial, 7 first");
        assert_eq!(t.current(), M7);
    }

    #[test]
    fn small_inputs_neither_count_nor_choose() {
        let t = ZstdTrial::new(3);
        // Small inputs use the setting in use, whatever they would prefer...
        let calls = run(&t, 200, BIG - 1, |m, _| if m == M6 { 1 } else { 2 });
        assert!(calls.iter().all(|c| c == &[OWN]), "{calls:?}");
        assert_eq!(t.current(), OWN);
        // ...and did not count: the first large input is still the first trial.
        let calls = run(&t, 1, BIG, |m, _| if m == M6 { 1 } else { 2 });
        assert_eq!(calls[0], CANDIDATES.to_vec());
        assert_eq!(t.current(), M6);
    }

    #[test]
    fn level_zero_never_tries() {
        let raw = ZstdTrial::new(0);
        for _ in 0..3 {
            let z = raw.setting(BIG, |_| panic!("measured at level 0"));
            assert_eq!(z, Zstd::from(0));
        }
    }

    #[test]
    fn a_sample_is_the_start_of_the_input_up_to_its_size() {
        let a = vec![1u8; TRIAL_SAMPLE_BYTES + 5];
        assert_eq!(sample_of(&a).len(), TRIAL_SAMPLE_BYTES);
        assert_eq!(sample_of(b"abc"), b"abc");
        // Incompressible: stored raw, the sample's own size.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        assert_eq!(sample_size(Zstd::from(3), &noise), noise.len());
        assert!(sample_size(Zstd::from(3), &a) < 1000);
    }

    #[test]
    fn on_a_dump_a_longer_minimum_and_small_tables_win_and_store_less() {
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
        let t = ZstdTrial::new(3);
        let z = t.setting(data.len(), |z| sample_size(z, sample_of(data)));
        let out = repo_format::compress(z, data).expect("compresses");
        let plain = repo_format::compress(3, data).expect("compresses");
        // Which of the two small-table settings wins depends on zstd's version.
        assert!(
            [S6, S7].contains(&t.current()),
            "{:?} won on a dump",
            t.current()
        );
        assert!(out.len() < plain.len(), "{} >= {}", out.len(), plain.len());
        assert_eq!(
            repo_format::decompress_exact(&out, data.len(), "t").expect("decodes"),
            data
        );
    }
}
