//! Content-defined chunking: FastCDC 2020 with a seeded gear table (SPEC §3, §6).
//!
//! [`Chunker::next_chunk_len`] is push-style and sans-IO: the caller keeps a buffer, asks for the
//! length of the chunk at its start, and either cuts it off or reads more bytes. The cut points
//! are exactly those of running `fastcdc::v2020::cut_gear` over the whole input in one go, however
//! the input arrives:
//!
//! * `cut_gear` never looks past `max` bytes, so once the buffer holds `max` bytes the answer is
//!   final;
//! * with at least `avg` bytes, a cut found strictly inside the buffer is final too: the hash
//!   and both masks up to that point do not depend on how much follows (the "center" only moves
//!   when fewer than `avg` bytes remain), so more input cannot move it;
//! * at end of input the buffer is all there is.
//!
//! fastcdc's own constructors `assert!` on their parameters; this module validates first and
//! calls only `cut_gear`, which cannot panic on valid parameters.

use std::ops::Range;

use fastcdc::v2020::{MASKS, cut_gear, get_gear_with_seed};

use crate::error::FormatError;
use crate::format::{
    CHUNK_AVG_MAX, CHUNK_AVG_MIN, CHUNK_MAX_MAX, CHUNK_MAX_MIN, CHUNK_MIN_MAX, CHUNK_MIN_MIN,
    CHUNK_NORMALIZATION,
};

/// FastCDC size limits in bytes (a chunker profile, SPEC §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChunkerParams {
    /// Smallest chunk (except the last of an input).
    pub min: u32,
    /// Target average; the mask uses `round(log2(avg))` bits.
    pub avg: u32,
    /// Largest chunk.
    pub max: u32,
}

impl ChunkerParams {
    /// The `file` profile: 256 KiB / 1 MiB / 8 MiB, for regular files.
    pub const FILE: Self = ChunkerParams {
        min: 256 << 10,
        avg: 1 << 20,
        max: 8 << 20,
    };
    /// The `stream` profile: 16 KiB / 64 KiB / 256 KiB, for stdin and command output.
    pub const STREAM: Self = ChunkerParams {
        min: 16 << 10,
        avg: 64 << 10,
        max: 256 << 10,
    };
    /// The `redis` profile: 16 KiB / 64 KiB / 256 KiB, for Redis RDB files, whose changed keys
    /// scatter over the whole file. The sizes of `stream` today; a profile of its own so that
    /// Redis stores can be tuned apart (measured in benches/README.md and SPEC §6).
    pub const REDIS: Self = ChunkerParams {
        min: 16 << 10,
        avg: 64 << 10,
        max: 256 << 10,
    };

    /// Checks the bounds of SPEC §6: 64 ≤ min ≤ 1 MiB, 256 ≤ avg ≤ 4 MiB, 1 KiB ≤ max ≤ 16 MiB,
    /// min ≤ avg ≤ max.
    pub fn validate(&self) -> Result<(), FormatError> {
        const WHAT: &str = "chunker parameters";
        if !(CHUNK_MIN_MIN..=CHUNK_MIN_MAX).contains(&self.min) {
            return Err(FormatError::bounds(WHAT, "min", self.min));
        }
        if !(CHUNK_AVG_MIN..=CHUNK_AVG_MAX).contains(&self.avg) {
            return Err(FormatError::bounds(WHAT, "avg", self.avg));
        }
        if !(CHUNK_MAX_MIN..=CHUNK_MAX_MAX).contains(&self.max) {
            return Err(FormatError::bounds(WHAT, "max", self.max));
        }
        if self.min > self.avg || self.avg > self.max {
            return Err(FormatError::corrupted(
                WHAT,
                format!(
                    "need min <= avg <= max, got {} / {} / {}",
                    self.min, self.avg, self.max
                ),
            ));
        }
        Ok(())
    }
}

/// A FastCDC 2020 chunker with its masks and seeded gear tables.
#[derive(Clone)]
pub struct Chunker {
    params: ChunkerParams,
    mask_s: u64,
    mask_l: u64,
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
}

impl std::fmt::Debug for Chunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The gear tables depend on the secret seed: never print them.
        f.debug_struct("Chunker")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl Chunker {
    /// A chunker for `params` (validated) and gear `seed` (the master key's `chunker_seed`).
    pub fn new(params: ChunkerParams, seed: u64) -> Result<Chunker, FormatError> {
        params.validate()?;
        // As `FastCDC::with_level_and_seed` computes them, for normalization level 1. avg is at
        // least 256 (bits ≥ 8) and at most 4 MiB (bits ≤ 22), so both indexes are within MASKS.
        let bits = fastcdc::v2020::logarithm2(params.avg);
        let mask_s = MASKS[(bits + CHUNK_NORMALIZATION) as usize];
        let mask_l = MASKS[(bits - CHUNK_NORMALIZATION) as usize];
        let (gear, gear_ls) = get_gear_with_seed(seed);
        Ok(Chunker {
            params,
            mask_s,
            mask_l,
            gear,
            gear_ls,
        })
    }

    /// The size limits.
    pub fn params(&self) -> ChunkerParams {
        self.params
    }

    /// Length of the chunk that starts at `buf[0]`, when it can be decided: `Some(len)` once
    /// `buf` holds `max` bytes (or a cut that more input cannot move), or at `eof` (then the
    /// chunk may be shorter than `min`). `None` means "give me more bytes", or `buf` is empty.
    /// Never `Some(0)`.
    pub fn next_chunk_len(&self, buf: &[u8], eof: bool) -> Option<usize> {
        if buf.is_empty() {
            return None;
        }
        let max = self.params.max as usize;
        let avg = self.params.avg as usize;
        let window = &buf[..buf.len().min(max)];
        if !(eof || buf.len() >= max || buf.len() >= avg) {
            return None;
        }
        let (_, len) = cut_gear(
            window,
            self.params.min as usize,
            avg,
            max,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            &self.gear,
            &self.gear_ls,
        );
        // `len == window.len()` means "no cut found in the window": final only if nothing more
        // can come. A shorter `len` is a real cut (see the module docs).
        if len < window.len() || eof || buf.len() >= max {
            Some(len.max(1))
        } else {
            None
        }
    }

    /// Whether the chunk that starts at `data[0]` ends at `len`, *given* that no cut comes
    /// before `len`: as when `data[..len]` is a chunk this chunker cut, not at the end of its
    /// input, from an input with at least `avg` bytes left at its start (so the normalization
    /// center was `avg`), and `data` also holds at least `avg` bytes.
    ///
    /// Only the decision at `len` is computed: `cut_gear`'s check at a position hashes the byte
    /// there, which is the next chunk's first, so a chunk's bytes alone do not prove its cut.
    /// The hash is shifted left by 2 per pair of bytes, so the 64 bytes before that position
    /// (and the byte itself) are all that reach it. `false` when the answer needs bytes `data`
    /// does not have (it holds fewer than `avg`, or ends before the pair `cut_gear` checks).
    pub fn cut_confirmed(&self, data: &[u8], len: usize) -> bool {
        let ChunkerParams { min, avg, max } = self.params;
        let (min, avg, max) = (min as usize, avg as usize, max as usize);
        if len == max {
            // No cut before `max` (given): `cut_gear` then cuts at `max`, whatever follows.
            return data.len() >= max;
        }
        // The check at `len` is made in the pair that starts at the even position `a`.
        // `cut_gear` checks pairs from the one at `first`, while `a / 2 < r / 2` where `r` is
        // what it may cut (at most `max`), and checks nothing when `r <= min`.
        let first = (min / 2) * 2;
        let a = len & !1;
        let r = data.len().min(max);
        if len < first || data.len() < avg || r <= min || a / 2 >= r / 2 {
            return false;
        }
        // Start hashing at an even position 32 pairs back (or where `cut_gear` starts): older
        // bytes are shifted out of the 64-bit hash by then.
        let from = a.saturating_sub(64).max(first);
        let mut hash: u64 = 0;
        let mut i = from;
        while i < a {
            hash = (hash << 2).wrapping_add(self.gear_ls[data[i] as usize]);
            hash = hash.wrapping_add(self.gear[data[i + 1] as usize]);
            i += 2;
        }
        let small = a / 2 < avg / 2;
        let (mask, mask_ls) = if small {
            (self.mask_s, self.mask_s << 1)
        } else {
            (self.mask_l, self.mask_l << 1)
        };
        hash = (hash << 2).wrapping_add(self.gear_ls[data[a] as usize]);
        if len == a {
            return hash & mask_ls == 0;
        }
        hash = hash.wrapping_add(self.gear[data[a + 1] as usize]);
        hash & mask == 0
    }

    /// The chunk ranges of a whole slice, in order.
    pub fn chunks<'a>(&'a self, data: &'a [u8]) -> impl Iterator<Item = Range<usize>> + 'a {
        let mut pos = 0;
        std::iter::from_fn(move || {
            let len = self.next_chunk_len(&data[pos..], true)?;
            let range = pos..pos + len;
            pos += len;
            Some(range)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn random_bytes(n: usize, mut state: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 32) as u8
            })
            .collect()
    }

    /// What `FastCDC::with_level_and_seed(.., Level1, seed)` cuts, as ranges.
    fn reference(data: &[u8], p: ChunkerParams, seed: u64) -> Vec<Range<usize>> {
        fastcdc::v2020::FastCDC::with_level_and_seed(
            data,
            p.min,
            p.avg,
            p.max,
            fastcdc::v2020::Normalization::Level1,
            seed,
        )
        .map(|c| c.offset..c.offset + c.length)
        .collect()
    }

    /// Feeds `data` in pieces of the given sizes through a buffering loop.
    fn streamed(c: &Chunker, data: &[u8], pieces: &[usize]) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut base = 0;
        let mut fed = 0;
        let mut i = 0;
        loop {
            let eof = fed == data.len();
            while let Some(len) = c.next_chunk_len(&buf, eof) {
                assert!(len > 0 && len <= buf.len());
                out.push(base..base + len);
                base += len;
                buf.drain(..len);
            }
            if eof {
                assert!(buf.is_empty());
                return out;
            }
            let n = pieces[i % pieces.len()].max(1).min(data.len() - fed);
            i += 1;
            buf.extend_from_slice(&data[fed..fed + n]);
            fed += n;
        }
    }

    #[test]
    fn matches_fastcdc_and_respects_limits() {
        let data = random_bytes(1 << 20, 7);
        for p in [
            ChunkerParams::STREAM,
            ChunkerParams {
                min: 64,
                avg: 256,
                max: 1024,
            },
            ChunkerParams::FILE,
        ] {
            let c = Chunker::new(p, 0x0123_4567_89ab_cdef).unwrap();
            let ranges: Vec<_> = c.chunks(&data).collect();
            assert_eq!(ranges, reference(&data, p, 0x0123_4567_89ab_cdef));
            assert_eq!(ranges.last().unwrap().end, data.len());
            for r in &ranges[..ranges.len() - 1] {
                assert!(
                    r.len() >= p.min as usize && r.len() <= p.max as usize,
                    "{r:?}"
                );
            }
            assert!(ranges.last().unwrap().len() <= p.max as usize);
        }
    }

    #[test]
    fn seeds_change_cut_points() {
        let data = random_bytes(1 << 20, 3);
        let a: Vec<_> = Chunker::new(ChunkerParams::STREAM, 1)
            .unwrap()
            .chunks(&data)
            .collect();
        let b: Vec<_> = Chunker::new(ChunkerParams::STREAM, 2)
            .unwrap()
            .chunks(&data)
            .collect();
        assert_ne!(a, b);
    }

    #[test]
    fn short_and_empty_input() {
        let c = Chunker::new(ChunkerParams::STREAM, 1).unwrap();
        assert_eq!(c.next_chunk_len(&[], true), None);
        assert_eq!(c.next_chunk_len(&[], false), None);
        assert_eq!(c.next_chunk_len(&[1; 100], false), None);
        assert_eq!(c.next_chunk_len(&[1; 100], true), Some(100));
        assert_eq!(c.next_chunk_len(&[1], true), Some(1));
        // All zeros never cuts: max-sized chunks.
        let max = ChunkerParams::STREAM.max as usize;
        assert_eq!(c.next_chunk_len(&vec![0; 2 * max], false), Some(max));
        assert_eq!(c.chunks(&[]).count(), 0);
    }

    proptest::proptest! {
        #[test]
        fn a_confirmed_cut_is_the_cut_next_chunk_len_makes(
            seed in proptest::prelude::any::<u64>(),
            data_seed in proptest::prelude::any::<u64>(),
            min_exp in 6u32..9,
            avg_mul in 1u32..5,
            flips in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..8),
        ) {
            let min = 1u32 << min_exp;
            let params = ChunkerParams { min, avg: (min * avg_mul).max(256), max: min * 16 };
            let c = Chunker::new(params, seed).unwrap();
            let mut s = data_seed | 1;
            let data: Vec<u8> = (0..20_000)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    b"ab \n01"[(s >> 40) as usize % 6]
                })
                .collect();
            let mut checked = 0;
            for r in c.chunks(&data) {
                if data.len() - r.start < params.max as usize + 2 {
                    break; // near the end: the center moves (not for the guide to guess)
                }
                // The same chunk followed by other bytes: confirmed exactly when it is cut the same.
                for &f in &flips {
                    let mut other = data[r.start..].to_vec();
                    other[r.len()] ^= f;
                    let truth = c.next_chunk_len(&other, true) == Some(r.len());
                    proptest::prop_assert_eq!(c.cut_confirmed(&other, r.len()), truth);
                }
                proptest::prop_assert!(c.cut_confirmed(&data[r.start..], r.len()));
                checked += 1;
            }
            proptest::prop_assert!(checked > 5);
        }
    }

    #[test]
    fn validate_rejects_out_of_bounds() {
        let ok = ChunkerParams::STREAM;
        assert!(ok.validate().is_ok() && ChunkerParams::FILE.validate().is_ok());
        for bad in [
            ChunkerParams { min: 63, ..ok },
            ChunkerParams {
                min: (1 << 20) + 1,
                avg: 2 << 20,
                max: 4 << 20,
            },
            ChunkerParams {
                avg: 255,
                min: 64,
                ..ok
            },
            ChunkerParams {
                avg: (4 << 20) + 1,
                max: 16 << 20,
                ..ok
            },
            ChunkerParams {
                max: 1023,
                min: 64,
                avg: 256,
            },
            ChunkerParams {
                max: (16 << 20) + 1,
                ..ok
            },
            ChunkerParams {
                min: 8192,
                avg: 4096,
                max: 65536,
            },
            ChunkerParams {
                min: 64,
                avg: 4096,
                max: 2048,
            },
            ChunkerParams {
                min: 0,
                avg: 0,
                max: 0,
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
            assert!(Chunker::new(bad, 1).is_err());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn streaming_equals_one_go(
            seed: u64,
            len in 0usize..300_000,
            pieces in proptest::collection::vec(1usize..40_000, 1..8),
        ) {
            let data = random_bytes(len, seed | 1);
            // Small chunks (the `stream` profile's sizes before SPEC §6 raised them): ~18 of
            // them in 300 kB, so the pieces split many chunks.
            let p = ChunkerParams { min: 4 << 10, avg: 16 << 10, max: 64 << 10 };
            let c = Chunker::new(p, seed).unwrap();
            let whole: Vec<_> = c.chunks(&data).collect();
            prop_assert_eq!(&streamed(&c, &data, &pieces), &whole);
            prop_assert_eq!(whole, reference(&data, p, seed));
        }

        #[test]
        fn any_valid_params_cut_like_fastcdc(min in 64u32..2048, avg_extra in 0u32..8192, max_extra in 0u32..20_000, seed: u64) {
            let avg = (min + avg_extra).max(256);
            let p = ChunkerParams { min, avg, max: (avg + max_extra).max(1024) };
            let data = random_bytes(100_000, seed | 1);
            let c = Chunker::new(p, seed).unwrap();
            let whole: Vec<_> = c.chunks(&data).collect();
            prop_assert_eq!(&streamed(&c, &data, &[777, 5000, 1]), &whole);
            prop_assert_eq!(whole, reference(&data, p, seed));
        }
    }
}
