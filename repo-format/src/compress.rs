//! zstd compression (SPEC §3), bounded on the way back.
//!
//! Decompression never trusts a size it has not checked: [`decompress_exact`] refuses a frame
//! whose header announces another size before it allocates, and stops writing at `raw_len`;
//! [`decompress_bounded`] refuses a frame that announces more than `max`, decompresses one that
//! announces at most 16 MiB into an allocation of that size, and streams any other into a
//! growing buffer stopped at `max`, so a small "zstd bomb" costs at most what it produces (or
//! 16 MiB) and then fails.

use std::cell::RefCell;
use std::io::Read;

use crate::error::FormatError;
use crate::format::{BASED_WINDOW_LOG, BASED_WINDOW_LOG_MAX};

thread_local! {
    /// One zstd compression context per thread and the settings it has: creating a context
    /// costs about as much as compressing a 16 KiB chunk, so each thread keeps its own.
    static COMPRESSOR: RefCell<Option<(Zstd, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
    /// One zstd decompression context per thread (`ZSTD_createDCtx` was ~16 % of a restore).
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// How a writer runs zstd (SPEC §3): the config's level and, optionally, zstd's minimum match
/// length and match-finder table sizes in place of the ones the level implies. A writer's choice
/// only: a frame decodes the same whatever it was made with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Zstd {
    /// The level, 1 ≤ level ≤ 19; 0 or less stores raw.
    pub level: i32,
    /// `ZSTD_c_minMatch` (zstd takes 3 ≤ m ≤ 7; other values are clamped to that), or `None`
    /// for the level's own.
    pub min_match: Option<u32>,
    /// `ZSTD_c_hashLog` and `ZSTD_c_chainLog`, the log2 of the entries in the match finder's
    /// two tables (each clamped to 6..=24), or `None` for the level's own (17 and 16 at level 3
    /// for large inputs).
    pub tables: Option<(u32, u32)>,
}

impl Zstd {
    /// The value for `ZSTD_c_minMatch`: 0 (the level's own) or the length clamped to 3..=7.
    fn min_match_param(self) -> u32 {
        self.min_match.map_or(0, |m| m.clamp(3, 7))
    }

    /// The values for `ZSTD_c_hashLog` and `ZSTD_c_chainLog`: 0 (the level's own) or clamped.
    fn table_params(self) -> (u32, u32) {
        self.tables
            .map_or((0, 0), |(h, c)| (h.clamp(6, 24), c.clamp(6, 24)))
    }

    /// Sets the parameters beyond the level on a context made for this level.
    fn apply(self, c: &mut zstd::bulk::Compressor<'static>) -> std::io::Result<()> {
        use zstd::zstd_safe::CParameter::{ChainLog, HashLog, MinMatch};
        let (hash, chain) = self.table_params();
        c.set_parameter(MinMatch(self.min_match_param()))?;
        c.set_parameter(HashLog(hash))?;
        c.set_parameter(ChainLog(chain))
    }
}

impl From<i32> for Zstd {
    /// The level with zstd's own parameters for it.
    fn from(level: i32) -> Self {
        Zstd {
            level,
            min_match: None,
            tables: None,
        }
    }
}

/// Runs `f` with this thread's compressor set to `z`, creating it on first use.
fn with_compressor<T>(
    z: Zstd,
    f: impl FnOnce(&mut zstd::bulk::Compressor<'static>) -> std::io::Result<T>,
) -> std::io::Result<T> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if let Some((current, c)) = slot.as_mut() {
            if *current == z {
                return f(c);
            }
            // Same level: only the parameters beyond it change (a new context per change
            // would cost about a 16 KiB compression each time).
            if current.level == z.level && z.apply(c).is_ok() {
                *current = z;
                return f(c);
            }
        }
        // Dropped first, so a failing `new` leaves no context with other settings.
        *slot = None;
        let mut c = zstd::bulk::Compressor::new(z.level)?;
        if z != Zstd::from(z.level) {
            z.apply(&mut c)?;
        }
        let out = f(&mut c);
        *slot = Some((z, c));
        out
    })
}

/// Runs `f` with this thread's decompressor, creating it on first use.
fn with_decompressor<T>(
    f: impl FnOnce(&mut zstd::bulk::Decompressor<'static>) -> std::io::Result<T>,
) -> std::io::Result<T> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let d = match slot.as_mut() {
            Some(d) => d,
            None => slot.insert(zstd::bulk::Decompressor::new()?),
        };
        f(d)
    })
}

/// zstd as `z` says (a level, or a [`Zstd`]), or `None` if the level is 0 or less or the result
/// is not strictly smaller than `data` (the caller then stores `data` raw).
pub fn compress(z: impl Into<Zstd>, data: &[u8]) -> Option<Vec<u8>> {
    let z = z.into();
    if z.level <= 0 {
        return None;
    }
    let out = with_compressor(z, |c| c.compress(data)).ok()?;
    (out.len() < data.len()).then_some(out)
}

/// zstd at `level` with `prefix` as the frame's history (RFC 8878 raw content: a based
/// compression group's base, SPEC §7), with long-distance matching and a window of
/// 2^[`BASED_WINDOW_LOG`] bytes. `None` if `level <= 0`, `prefix` is empty, zstd fails, or the
/// frame is not strictly smaller than `data`.
///
/// Level 3's own match finder indexes a base of several MiB through a small hash table and
/// loses most of it; long-distance matching finds the long repeats a base is for (benches'
/// `delta-curve`: pg's day 3 at 64 KiB chunks adds 2.6 MiB with it, 15.6 without).
pub fn compress_with_prefix(level: i32, data: &[u8], prefix: &[u8]) -> Option<Vec<u8>> {
    use zstd::zstd_safe::{CCtx, CParameter};
    if level <= 0 || prefix.is_empty() {
        return None;
    }
    let mut c = CCtx::try_create()?;
    c.set_parameter(CParameter::CompressionLevel(level)).ok()?;
    c.set_parameter(CParameter::WindowLog(BASED_WINDOW_LOG))
        .ok()?;
    c.set_parameter(CParameter::EnableLongDistanceMatching(true))
        .ok()?;
    c.ref_prefix(prefix).ok()?;
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(data.len()));
    c.compress2(&mut out, data).ok()?;
    (out.len() < data.len()).then_some(out)
}

/// Decompresses one frame made by [`compress_with_prefix`] with the same `prefix`. The frame
/// must announce its size, at most `max`; the output is allocated once, at that size, and is
/// the only window (one-shot decompression ignores the window the frame announces, so memory
/// is bounded by `max` and the prefix whatever the frame says).
pub fn decompress_with_prefix(
    data: &[u8],
    prefix: &[u8],
    max: usize,
    what: &'static str,
) -> Result<Vec<u8>, FormatError> {
    use zstd::zstd_safe::{DCtx, DParameter, get_error_name};
    check_single_frame(data, what)?;
    let size = match zstd::zstd_safe::get_frame_content_size(data) {
        Ok(Some(size)) if size <= max as u64 => size as usize,
        Ok(Some(size)) => return Err(FormatError::bounds(what, "based group size", size)),
        _ => {
            return Err(FormatError::corrupted(
                what,
                "a based group's zstd frame does not announce its size",
            ));
        }
    };
    let zerr = |step: &str, code: usize| {
        FormatError::corrupted(what, format!("zstd ({step}): {}", get_error_name(code)))
    };
    let mut d = DCtx::try_create()
        .ok_or_else(|| FormatError::corrupted(what, "cannot create a zstd context"))?;
    d.set_parameter(DParameter::WindowLogMax(BASED_WINDOW_LOG_MAX))
        .map_err(|c| zerr("window", c))?;
    d.ref_prefix(prefix).map_err(|c| zerr("base", c))?;
    let mut out = Vec::with_capacity(size);
    d.decompress(&mut out, data)
        .map_err(|c| zerr("decompress", c))?;
    if out.len() != size {
        return Err(FormatError::corrupted(
            what,
            format!(
                "based group decompressed to {} bytes, its frame says {size}",
                out.len()
            ),
        ));
    }
    Ok(out)
}

/// The plaintext of an index file, snapshot or plan: a compression byte (`Compression`, SPEC
/// §8) followed by `body`, zstd-compressed at `level` when that makes it smaller, else raw.
pub fn tagged_body(level: i32, body: &[u8]) -> Vec<u8> {
    use crate::pack::Compression;
    match compress(level, body) {
        Some(c) => {
            let mut out = Vec::with_capacity(1 + c.len());
            out.push(Compression::Zstd as u8);
            out.extend_from_slice(&c);
            out
        }
        None => {
            let mut out = Vec::with_capacity(1 + body.len());
            out.push(Compression::Raw as u8);
            out.extend_from_slice(body);
            out
        }
    }
}

/// Fails unless `data` is exactly one zstd frame.
fn check_single_frame(data: &[u8], what: &'static str) -> Result<(), FormatError> {
    match zstd::zstd_safe::find_frame_compressed_size(data) {
        Ok(n) if n == data.len() => Ok(()),
        Ok(n) => Err(FormatError::corrupted(
            what,
            format!("{} bytes after the zstd frame", data.len() - n),
        )),
        Err(code) => Err(FormatError::corrupted(
            what,
            format!(
                "not a zstd frame: {}",
                zstd::zstd_safe::get_error_name(code)
            ),
        )),
    }
}

/// Decompresses one zstd frame that must expand to exactly `raw_len` bytes.
pub fn decompress_exact(
    data: &[u8],
    raw_len: usize,
    what: &'static str,
) -> Result<Vec<u8>, FormatError> {
    check_single_frame(data, what)?;
    // The frame header may announce its size: check it before allocating `raw_len`. A frame
    // that does not announce it is streamed, so nothing is allocated before it is produced.
    let out = match zstd::zstd_safe::get_frame_content_size(data) {
        Ok(Some(size)) if size != raw_len as u64 => {
            return Err(FormatError::corrupted(
                what,
                format!("zstd frame holds {size} bytes, expected {raw_len}"),
            ));
        }
        Ok(Some(_)) => with_decompressor(|d| d.decompress(data, raw_len)).map_err(|e| {
            FormatError::corrupted(what, format!("zstd (expected {raw_len} bytes): {e}"))
        })?,
        _ => decompress_bounded(data, raw_len, what)?,
    };
    if out.len() != raw_len {
        return Err(FormatError::corrupted(
            what,
            format!("decompressed to {} bytes, expected {raw_len}", out.len()),
        ));
    }
    Ok(out)
}

/// Frames announcing at most this many bytes are decompressed into one allocation of that size
/// (compression groups, blobs, most index files); larger ones are streamed.
const ONE_SHOT_MAX: usize = 16 << 20;

/// Decompresses one zstd frame of at most `max` bytes, allocating at most 16 MiB more than it
/// produces.
pub fn decompress_bounded(
    data: &[u8],
    max: usize,
    what: &'static str,
) -> Result<Vec<u8>, FormatError> {
    check_single_frame(data, what)?;
    match zstd::zstd_safe::get_frame_content_size(data) {
        Ok(Some(size)) if size > max as u64 => {
            return Err(FormatError::bounds(what, "decompressed size", size));
        }
        // The size is announced (and bounded), and small enough to allocate up front: one
        // allocation of it, this thread's context, and the frame must produce exactly that many
        // bytes. A larger announced size (an index file may be 1 GiB) is streamed below, so a
        // frame that claims much and holds little costs only what it holds.
        Ok(Some(size)) if size <= ONE_SHOT_MAX as u64 => {
            let size = size as usize; // ≤ max
            let out = with_decompressor(|d| d.decompress(data, size))
                .map_err(|e| FormatError::corrupted(what, format!("zstd: {e}")))?;
            if out.len() != size {
                return Err(FormatError::corrupted(
                    what,
                    format!("zstd frame announces {size} bytes but holds {}", out.len()),
                ));
            }
            return Ok(out);
        }
        _ => {}
    }
    let decoder = zstd::stream::read::Decoder::with_buffer(data)
        .map_err(|e| FormatError::corrupted(what, format!("zstd: {e}")))?
        .single_frame();
    let mut out = Vec::new();
    decoder
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| FormatError::corrupted(what, format!("zstd: {e}")))?;
    if out.len() > max {
        return Err(FormatError::bounds(what, "decompressed size", out.len()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_reused_context_gives_the_bytes_of_a_fresh_one() {
        // Inputs of different sizes and levels in one thread, so the context is reused across
        // size classes and level changes.
        let mut inputs: Vec<(i32, Vec<u8>)> = Vec::new();
        for (i, len) in [100usize, 70_000, 4096, 1 << 20, 16 << 10, 300]
            .iter()
            .enumerate()
        {
            let data: Vec<u8> = (0..*len)
                .map(|j| (j as u32).wrapping_mul(2_654_435_761).rotate_left(i as u32) as u8 % 23)
                .collect();
            inputs.push((3, data.clone()));
            inputs.push((1 + (i as i32 % 5), data));
        }
        for (level, data) in &inputs {
            let fresh = zstd::bulk::compress(data, *level).unwrap();
            let ours = compress(*level, data).unwrap();
            assert_eq!(ours, fresh, "level {level}, {} bytes", data.len());
            assert_eq!(&decompress_exact(&ours, data.len(), "t").unwrap(), data);
            // Interleaved with another minimum match length: the context is set up again.
            for (min_match, tables) in [(Some(7), None), (Some(6), Some((15, 14))), (None, None)] {
                let z = Zstd {
                    level: *level,
                    min_match,
                    tables,
                };
                let mut c = zstd::bulk::Compressor::new(*level).unwrap();
                if let Some(m) = min_match {
                    c.set_parameter(zstd::zstd_safe::CParameter::MinMatch(m))
                        .unwrap();
                }
                if let Some((h, l)) = tables {
                    c.set_parameter(zstd::zstd_safe::CParameter::HashLog(h))
                        .unwrap();
                    c.set_parameter(zstd::zstd_safe::CParameter::ChainLog(l))
                        .unwrap();
                }
                let fresh = c.compress(data).unwrap();
                let ours = compress(z, data).unwrap();
                assert_eq!(ours, fresh, "{z:?}, {} bytes", data.len());
                assert_eq!(&decompress_exact(&ours, data.len(), "t").unwrap(), data);
            }
        }
    }

    #[test]
    fn a_min_match_or_table_size_changes_the_frame_not_what_it_decodes_to() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("{i}\t{}\t    \n", i % 977).into_bytes())
            .collect();
        let mut frames = Vec::new();
        for (min_match, tables) in [
            (None, None),
            (Some(3), None),
            (Some(6), None),
            (Some(7), None),
            (None, Some((15, 14))),
            (Some(6), Some((12, 11))),
        ] {
            let z = Zstd {
                level: 3,
                min_match,
                tables,
            };
            let c = compress(z, &data).unwrap();
            assert_eq!(decompress_exact(&c, data.len(), "t").unwrap(), data);
            frames.push(c);
        }
        assert_eq!(frames[0], compress(3, &data).unwrap());
        for (i, f) in frames.iter().enumerate().skip(1) {
            assert_ne!(f, &frames[0], "parameters #{i} made level 3's own frame");
        }
    }

    #[test]
    fn compresses_only_when_smaller() {
        assert!(compress(3, b"abc").is_none());
        assert!(compress(0, &[0; 1000]).is_none());
        let c = compress(3, &[0; 1000]).unwrap();
        assert!(c.len() < 1000);
        assert_eq!(decompress_exact(&c, 1000, "t").unwrap(), vec![0; 1000]);
        assert!(decompress_exact(&c, 999, "t").is_err());
        assert!(decompress_exact(&c, 1001, "t").is_err());
        assert_eq!(decompress_bounded(&c, 1000, "t").unwrap().len(), 1000);
        assert!(decompress_bounded(&c, 999, "t").is_err());
    }

    #[test]
    fn rejects_trailing_bytes_and_garbage() {
        let mut c = compress(3, &[1; 500]).unwrap();
        c.push(0);
        assert!(decompress_exact(&c, 500, "t").is_err());
        assert!(decompress_bounded(&c, 500, "t").is_err());
        assert!(decompress_bounded(b"not zstd", 500, "t").is_err());
        assert!(decompress_exact(b"", 0, "t").is_err());
    }

    #[test]
    fn bomb_without_content_size_is_stopped() {
        // A frame that does not announce its size: only the streaming bound can stop it.
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 19).unwrap();
        enc.include_contentsize(false).unwrap();
        std::io::Write::write_all(&mut enc, &vec![0u8; 8 << 20]).unwrap();
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 2000);
        assert!(matches!(
            decompress_bounded(&bomb, 1 << 20, "t"),
            Err(FormatError::OutOfBounds { .. })
        ));
        assert!(decompress_exact(&bomb, 1 << 20, "t").is_err());
        assert_eq!(
            decompress_bounded(&bomb, 8 << 20, "t").unwrap().len(),
            8 << 20
        );
    }

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(0u8..4, 0..5000), level in 1i32..10) {
            if let Some(c) = compress(level, &data) {
                prop_assert_eq!(decompress_exact(&c, data.len(), "t").unwrap(), data.clone());
                prop_assert_eq!(decompress_bounded(&c, data.len(), "t").unwrap(), data);
            }
        }

        #[test]
        fn never_panics(data: Vec<u8>, n in 0usize..10000) {
            let _ = decompress_exact(&data, n, "t");
            let _ = decompress_bounded(&data, n, "t");
        }
    }
}
