//! Chunk size against repository size: what a day-1 dump stores and what a day-2 dump adds, for
//! several average stream chunk sizes, with and without a per-store zstd dictionary.
//!
//! ```text
//! chunk-curve DAY1 DAY2 [--sizes 4,8,16,32,64,256,1024] [--dict-sizes 0,64,112] [--level 3]
//!             [--sample-mib 16] [--spread] [--speed-mib 64] [--reps 3] [--seed N] [--json]
//!             [--group-kib G]
//! ```
//!
//! For each average size S (KiB) it cuts both files with the repo-format [`Chunker`] (FastCDC
//! 2020, min S/4, avg S, max 4·S, clamped to the bounds of [`ChunkerParams::validate`]; one
//! fixed gear seed), exactly as the archiver does (`Chunker::chunks` gives the same cut points
//! as the archiver's streaming `next_chunk_len` loop), and then:
//!
//! * day 1: deduplicates the chunks by BLAKE3 hash and compresses each unique chunk on its own
//!   with zstd at `--level`, stored raw when that is not smaller (as `pack::seal_blob` does); the
//!   estimated stored bytes are the compressed bytes plus a per-blob overhead of envelope
//!   (nonce salt + tag), pack header entry and index entry (SPEC §5, §7, §8);
//! * day 2: the chunks (deduplicated) not already stored after day 1, compressed the same way;
//! * with a dictionary of D KiB: trained with `zstd::dict::from_continuous` on the first
//!   `--sample-mib` MiB of day-1 chunks of that chunk size (each chunk one sample, cut into
//!   pieces of at most 128 KiB; `--spread`: every k-th chunk over the whole dump), used for
//!   every chunk of both days, and stored once (zstd-compressed, plus one blob's overhead) in
//!   the day-1 size.
//!
//! * with `--group-kib G` (G > 0): as cairn's writer does (SPEC §7 compression groups), the
//!   unique chunks of each day are concatenated in order and compressed G KiB at a time, one
//!   envelope per group; a blob then costs its pack header entry and its index entry (with the
//!   group offset) instead of an envelope. Applies to every row, the reference rows included.
//!
//! Reference rows, always without a dictionary: restic-like (FastCDC 512 KiB / 1 MiB / 8 MiB;
//! restic itself uses Rabin fingerprints with those limits) and borg-like (FastCDC 512 KiB /
//! 2 MiB / 8 MiB, an approximation of borg 1.2's default buzhash `19,23,21,4095`), each chunk
//! compressed on its own at the same level with cairn's per-blob overhead. The "ratio" and
//! "added %" columns are relative to the restic-like row.
//!
//! The size figures come from a parallel pass (rayon, one variant per task); the throughput
//! figures from a separate single-threaded pass over the first `--speed-mib` MiB of day 1, best
//! of `--reps` rounds (each round measures every row once, after an untimed warm-up run): compression with a reused context (`zstd::bulk::Compressor`, with the
//! prepared dictionary if any), and decompression likewise.
//!
//! Content lists (SPEC §9: a stream's chunk ids, 8192 to a tree blob) are reported apart: they
//! do not depend on the dictionary, but they grow with the chunk count and are mostly new every
//! day once edits are scattered.

use std::collections::HashSet;
use std::ops::Range;
use std::process::ExitCode;
use std::time::Instant;

use cairn_benches::stream_params;
use rayon::prelude::*;
use repo_format::format::{
    CONTENT_LIST_LEN, DIRECT_CONTENT_MAX, ENVELOPE_OVERHEAD, INDEX_ENTRY_LEN, INDEX_GROUP_EXTRA,
    NONCE_SALT_LEN, PACK_ENTRY_LEN, TAG_LEN,
};
use repo_format::{Chunker, ChunkerParams};
use serde_json::{Value, json};

const USAGE: &str = "usage: chunk-curve DAY1 DAY2 [--sizes 4,8,16,32,64,256,1024] \
    [--dict-sizes 0,64,112] [--level 3]\n\
    \x20      [--sample-mib 16] [--spread] [--speed-mib 64] [--reps 3] [--seed N] [--json]\n\
    \x20      [--group-kib G]\n";

/// Stored bytes per blob besides its compressed payload: the envelope's nonce salt and tag, the
/// pack header entry and the index entry.
const BLOB_OVERHEAD: u64 = (ENVELOPE_OVERHEAD + PACK_ENTRY_LEN + INDEX_ENTRY_LEN) as u64;

/// The same for a blob in a compression group: no envelope of its own (the group's is counted
/// with the compressed bytes), a group offset in its index entry.
const GROUPED_BLOB_OVERHEAD: u64 = (PACK_ENTRY_LEN + INDEX_ENTRY_LEN + INDEX_GROUP_EXTRA) as u64;

fn blob_overhead(group_kib: usize) -> u64 {
    if group_kib > 0 {
        GROUPED_BLOB_OVERHEAD
    } else {
        BLOB_OVERHEAD
    }
}

/// A content list's plaintext header: kind, version, count (SPEC §9).
const CONTENT_LIST_HEADER: u64 = 1 + 1 + 4;

/// Training samples are the chunks, cut into pieces of at most this size.
const SAMPLE_PIECE_MAX: usize = 128 << 10;

const MIB: f64 = (1u64 << 20) as f64;

type Hash = [u8; 32];

struct Opts {
    day1: String,
    day2: String,
    sizes: Vec<u32>,
    dict_sizes: Vec<u32>,
    level: i32,
    sample_mib: usize,
    /// Train on every k-th day-1 chunk instead of the first ones.
    spread: bool,
    speed_mib: usize,
    reps: usize,
    seed: u64,
    json: bool,
    /// Compress runs of consecutive stored chunks together, up to this many KiB (0: each alone).
    group_kib: usize,
}

/// One chunking to measure.
struct Variant {
    /// "stream", "restic-like" or "borg-like".
    kind: &'static str,
    /// Nominal average in KiB (the requested S for stream variants).
    avg_kib: u32,
    params: ChunkerParams,
    /// Dictionary sizes (KiB, 0 = none) to measure with this chunking.
    dicts: Vec<u32>,
}

/// What chunking both days gives, before any compression.
struct Chunked {
    day1_chunks: u64,
    day1_unique: Vec<Range<usize>>,
    day1_unique_bytes: u64,
    day2_chunks: u64,
    day2_added: Vec<Range<usize>>,
    day2_added_bytes: u64,
    /// Distinct content lists of day 1: count and stored bytes.
    lists1: (u64, u64),
    /// Content lists of day 2 not stored after day 1.
    lists2_added: (u64, u64),
    /// Training samples: day-1 ranges, chunks cut into pieces of at most [`SAMPLE_PIECE_MAX`].
    sample: Vec<Range<usize>>,
    sample_len: usize,
    secs: f64,
}

/// The size results of one (variant, dictionary) pair.
struct Row {
    variant: usize,
    dict_kib: u32,
    dict: Option<Vec<u8>>,
    dict_stored: u64,
    train_secs: f64,
    day1_comp: u64,
    day1_raw_blobs: u64,
    day1_stored: u64,
    day2_comp: u64,
    day2_stored: u64,
    comp_secs: f64,
}

/// Single-threaded throughput over the speed sample, MiB/s of plaintext.
#[derive(Default, Clone, Copy)]
struct Speed {
    /// One-shot compression (zstd knows the size), reused context.
    comp: f64,
    /// Streaming compression without the size first (a dictionary is then always attached).
    comp_unknown: f64,
    decomp: f64,
    decomp_unknown: f64,
    /// Compressed bytes of the sample's chunks, one-shot and streamed (no raw fallback).
    bytes: u64,
    bytes_unknown: u64,
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprint!("chunk-curve: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("chunk-curve: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn parse_list(s: &str, what: &str) -> Result<Vec<u32>, String> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.trim()
                .parse()
                .map_err(|_| format!("{what}: not a number: {p:?}"))
        })
        .collect()
}

fn parse_args() -> Result<Option<Opts>, String> {
    let mut files = Vec::new();
    let mut o = Opts {
        day1: String::new(),
        day2: String::new(),
        sizes: vec![4, 8, 16, 32, 64, 256, 1024],
        dict_sizes: vec![0, 64, 112],
        level: 3,
        sample_mib: 16,
        spread: false,
        speed_mib: 64,
        reps: 3,
        seed: 0x00c4_a11b_5eed_0001,
        json: false,
        group_kib: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--json" => o.json = true,
            "--spread" => o.spread = true,
            "--sizes" => o.sizes = parse_list(&value("--sizes")?, "--sizes")?,
            "--dict-sizes" => o.dict_sizes = parse_list(&value("--dict-sizes")?, "--dict-sizes")?,
            "--level" => {
                o.level = value("--level")?
                    .parse()
                    .map_err(|_| "--level needs a number")?
            }
            "--sample-mib" => {
                o.sample_mib = value("--sample-mib")?
                    .parse()
                    .map_err(|_| "--sample-mib needs a number")?
            }
            "--speed-mib" => {
                o.speed_mib = value("--speed-mib")?
                    .parse()
                    .map_err(|_| "--speed-mib needs a number")?
            }
            "--reps" => {
                o.reps = value("--reps")?
                    .parse()
                    .map_err(|_| "--reps needs a number")?
            }
            "--group-kib" => {
                o.group_kib = value("--group-kib")?
                    .parse()
                    .map_err(|_| "--group-kib needs a number")?
            }
            "--seed" => {
                o.seed = value("--seed")?
                    .parse()
                    .map_err(|_| "--seed needs a number")?
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            _ => files.push(arg),
        }
    }
    let [day1, day2] = <[String; 2]>::try_from(files).map_err(|_| "need DAY1 and DAY2")?;
    (o.day1, o.day2) = (day1, day2);
    if !(1..=22).contains(&o.level) {
        return Err("--level must be 1..=22".into());
    }
    if o.sizes.is_empty() || o.sizes.contains(&0) {
        return Err("--sizes must be positive".into());
    }
    if o.dict_sizes.is_empty() {
        o.dict_sizes.push(0);
    }
    o.reps = o.reps.max(1);
    Ok(Some(o))
}

fn variants(o: &Opts) -> Vec<Variant> {
    let mut v: Vec<Variant> = o
        .sizes
        .iter()
        .map(|&kib| Variant {
            kind: "stream",
            avg_kib: kib,
            params: stream_params(kib),
            dicts: o.dict_sizes.clone(),
        })
        .collect();
    v.push(Variant {
        kind: "restic-like",
        avg_kib: 1024,
        params: ChunkerParams {
            min: 512 << 10,
            avg: 1 << 20,
            max: 8 << 20,
        },
        dicts: vec![0],
    });
    v.push(Variant {
        kind: "borg-like",
        avg_kib: 2048,
        params: ChunkerParams {
            min: 512 << 10,
            avg: 2 << 20,
            max: 8 << 20,
        },
        dicts: vec![0],
    });
    v
}

fn kib_label(bytes: u32) -> String {
    if bytes.is_multiple_of(1 << 20) {
        format!("{}M", bytes >> 20)
    } else if bytes.is_multiple_of(1024) {
        format!("{}K", bytes >> 10)
    } else {
        format!("{bytes}B")
    }
}

fn params_label(p: ChunkerParams) -> String {
    format!(
        "{}/{}/{}",
        kib_label(p.min),
        kib_label(p.avg),
        kib_label(p.max)
    )
}

/// Content list blob hashes of one stream's ids, as `ContentBuilder` cuts them (none when the
/// ids fit in the node directly).
fn content_lists(ids: &[Hash]) -> Vec<(Hash, u64)> {
    if ids.len() <= DIRECT_CONTENT_MAX {
        return Vec::new();
    }
    ids.chunks(CONTENT_LIST_LEN)
        .map(|list| {
            let mut h = blake3::Hasher::new();
            for id in list {
                h.update(id);
            }
            // Ids do not compress: stored raw.
            let stored = CONTENT_LIST_HEADER + 32 * list.len() as u64 + BLOB_OVERHEAD;
            (*h.finalize().as_bytes(), stored)
        })
        .collect()
}

/// Chunks both days. The training sample is the first `sample` bytes of day-1 chunks or, with
/// `spread`, every k-th chunk (k = day-1 length / `sample`).
fn chunk_both(
    v: &Variant,
    seed: u64,
    day1: &[u8],
    day2: &[u8],
    sample: usize,
    spread: bool,
) -> Chunked {
    let every = if spread {
        (day1.len() / sample.max(1)).max(1)
    } else {
        1
    };
    let t = Instant::now();
    let chunker = Chunker::new(v.params, seed).expect("parameters within the SPEC §6 bounds");
    let mut seen: HashSet<Hash> = HashSet::new();
    let mut ids1 = Vec::new();
    let mut unique = Vec::new();
    let mut unique_bytes = 0u64;
    let mut samples = Vec::new();
    let mut sample_len = 0usize;
    for r in chunker.chunks(day1) {
        let h = *blake3::hash(&day1[r.clone()]).as_bytes();
        if sample_len < sample && ids1.len() % every == 0 {
            // zstd's trainer wants many small samples: a large chunk counts as pieces.
            let mut at = r.start;
            while at < r.end {
                let n = (r.end - at).min(SAMPLE_PIECE_MAX);
                samples.push(at..at + n);
                at += n;
            }
            sample_len += r.len();
        }
        if seen.insert(h) {
            unique_bytes += r.len() as u64;
            unique.push(r);
        }
        ids1.push(h);
    }
    let mut ids2 = Vec::new();
    let mut added = Vec::new();
    let mut added_bytes = 0u64;
    for r in chunker.chunks(day2) {
        let h = *blake3::hash(&day2[r.clone()]).as_bytes();
        if seen.insert(h) {
            added_bytes += r.len() as u64;
            added.push(r);
        }
        ids2.push(h);
    }
    let mut list_seen: HashSet<Hash> = HashSet::new();
    let mut lists1 = (0, 0);
    for (h, stored) in content_lists(&ids1) {
        if list_seen.insert(h) {
            lists1.0 += 1;
            lists1.1 += stored;
        }
    }
    let mut lists2 = (0, 0);
    for (h, stored) in content_lists(&ids2) {
        if list_seen.insert(h) {
            lists2.0 += 1;
            lists2.1 += stored;
        }
    }
    Chunked {
        day1_chunks: ids1.len() as u64,
        day1_unique: unique,
        day1_unique_bytes: unique_bytes,
        day2_chunks: ids2.len() as u64,
        day2_added: added,
        day2_added_bytes: added_bytes,
        lists1,
        lists2_added: lists2,
        sample: samples,
        sample_len,
        secs: t.elapsed().as_secs_f64(),
    }
}

/// A reused compression context at `level`, with the prepared dictionary if any.
fn compressor<'a>(
    level: i32,
    dict: Option<&'a zstd::dict::EncoderDictionary<'static>>,
) -> Result<zstd::bulk::Compressor<'a>, String> {
    match dict {
        None => zstd::bulk::Compressor::new(level),
        Some(d) => zstd::bulk::Compressor::with_prepared_dictionary(d),
    }
    .map_err(|e| format!("zstd compressor: {e}"))
}

/// Compressed bytes of each chunk on its own (raw length when zstd does not make it smaller),
/// summed, and how many chunks stay raw; with `group_kib` > 0, of groups of consecutive chunks
/// of at least that many KiB instead, each with its envelope (no chunk counts as raw).
fn compress_all(
    c: &mut zstd::bulk::Compressor<'_>,
    data: &[u8],
    ranges: &[Range<usize>],
    group_kib: usize,
) -> Result<(u64, u64), String> {
    let mut buf = Vec::new();
    let (mut total, mut raw) = (0u64, 0u64);
    let mut groups: Vec<Vec<u8>> = Vec::new();
    if group_kib > 0 {
        let mut g = Vec::new();
        for r in ranges {
            g.extend_from_slice(&data[r.clone()]);
            if g.len() >= group_kib << 10 {
                groups.push(std::mem::take(&mut g));
            }
        }
        if !g.is_empty() {
            groups.push(g);
        }
    }
    for g in &groups {
        buf.clear();
        buf.reserve(zstd::zstd_safe::compress_bound(g.len()));
        let n = c
            .compress_to_buffer(&g[..], &mut buf)
            .map_err(|e| format!("zstd: {e}"))?;
        total += n.min(g.len()) as u64 + ENVELOPE_OVERHEAD as u64;
    }
    let ranges = if group_kib > 0 { &[][..] } else { ranges };
    for r in ranges {
        let chunk = &data[r.clone()];
        buf.clear();
        buf.reserve(zstd::zstd_safe::compress_bound(chunk.len()));
        let n = c
            .compress_to_buffer(chunk, &mut buf)
            .map_err(|e| format!("zstd: {e}"))?;
        if n < chunk.len() {
            total += n as u64;
        } else {
            total += chunk.len() as u64;
            raw += 1;
        }
    }
    Ok((total, raw))
}

fn measure_rows(
    vi: usize,
    v: &Variant,
    ch: &Chunked,
    o: &Opts,
    day1: &[u8],
    day2: &[u8],
) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for &dict_kib in &v.dicts {
        let (dict, train_secs) = if dict_kib == 0 {
            (None, 0.0)
        } else {
            let t = Instant::now();
            let sizes: Vec<usize> = ch.sample.iter().map(|r| r.len()).collect();
            let mut buf = Vec::with_capacity(ch.sample_len);
            for r in &ch.sample {
                buf.extend_from_slice(&day1[r.clone()]);
            }
            match zstd::dict::from_continuous(&buf, &sizes, dict_kib as usize * 1024) {
                Ok(d) => (Some(d), t.elapsed().as_secs_f64()),
                Err(e) => {
                    eprintln!(
                        "  {} {}: no {dict_kib} KiB dictionary from {} samples ({} bytes): {e}; row skipped",
                        v.kind,
                        params_label(v.params),
                        ch.sample.len(),
                        ch.sample_len
                    );
                    continue;
                }
            }
        };
        let dict_stored = match &dict {
            None => 0,
            Some(d) => {
                let z = zstd::bulk::compress(d, o.level).map_err(|e| format!("zstd: {e}"))?;
                z.len().min(d.len()) as u64 + BLOB_OVERHEAD
            }
        };
        let t = Instant::now();
        let edict = dict
            .as_deref()
            .map(|d| zstd::dict::EncoderDictionary::copy(d, o.level));
        let mut c = compressor(o.level, edict.as_ref())?;
        let (day1_comp, day1_raw_blobs) = compress_all(&mut c, day1, &ch.day1_unique, o.group_kib)?;
        let (day2_comp, _) = compress_all(&mut c, day2, &ch.day2_added, o.group_kib)?;
        let comp_secs = t.elapsed().as_secs_f64();
        rows.push(Row {
            variant: vi,
            dict_kib,
            dict_stored,
            train_secs,
            day1_comp,
            day1_raw_blobs,
            day1_stored: day1_comp
                + blob_overhead(o.group_kib) * ch.day1_unique.len() as u64
                + dict_stored,
            day2_comp,
            day2_stored: day2_comp + blob_overhead(o.group_kib) * ch.day2_added.len() as u64,
            dict,
            comp_secs,
        });
        eprintln!(
            "  {} {} dict {dict_kib} KiB: trained {train_secs:.2} s, compressed in {comp_secs:.2} s",
            v.kind,
            params_label(v.params),
        );
    }
    Ok(rows)
}

fn mibs(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / MIB / secs
}

/// A compression context for [`compress_unknown_size`]: the prepared dictionary referenced, or
/// the level set.
fn stream_context<'a>(
    level: i32,
    dict: Option<&'a zstd::dict::EncoderDictionary<'static>>,
) -> Result<zstd::zstd_safe::CCtx<'a>, String> {
    let mut c = zstd::zstd_safe::CCtx::try_create().ok_or("zstd: cannot create a context")?;
    match dict {
        Some(d) => c.ref_cdict(d.as_cdict()),
        None => c.set_parameter(zstd::zstd_safe::CParameter::CompressionLevel(level)),
    }
    .map_err(|code| format!("zstd: {}", zstd::zstd_safe::get_error_name(code)))?;
    Ok(c)
}

/// One frame of `src` through the streaming API, without telling zstd the size first. With a
/// prepared dictionary, zstd then always references ("attaches") the dictionary's tables; told
/// the size (the one-shot API), it copies them into the context for inputs above 16 KiB at
/// level 3 to 4 (`attachDictSizeCutoffs`, zstd 1.5.7), which costs time on every chunk. The
/// frame does not record its content size then.
fn compress_unknown_size(
    c: &mut zstd::zstd_safe::CCtx<'_>,
    src: &[u8],
    dst: &mut Vec<u8>,
) -> Result<usize, String> {
    use zstd::zstd_safe::zstd_sys::ZSTD_EndDirective;
    use zstd::zstd_safe::{InBuffer, OutBuffer, ResetDirective, get_error_name};
    let err = |code| format!("zstd: {}", get_error_name(code));
    dst.clear();
    dst.reserve(zstd::zstd_safe::compress_bound(src.len()) + 64);
    c.reset(ResetDirective::SessionOnly).map_err(err)?;
    let mut input = InBuffer::around(src);
    let mut output = OutBuffer::around(dst);
    c.compress_stream2(&mut output, &mut input, ZSTD_EndDirective::ZSTD_e_continue)
        .map_err(err)?;
    for _ in 0..1024 {
        if c.compress_stream2(&mut output, &mut input, ZSTD_EndDirective::ZSTD_e_end)
            .map_err(err)?
            == 0
        {
            return Ok(output.pos());
        }
    }
    Err("zstd: the frame does not end".into())
}

/// Best of `reps` runs of `f`, in seconds, after one untimed run (first-touch page faults,
/// context allocation).
fn best_of(reps: usize, mut f: impl FnMut() -> Result<(), String>) -> Result<f64, String> {
    f()?;
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// Decompresses every frame, checking each against its chunk.
fn decompress_all(
    d: &mut zstd::bulk::Decompressor<'_>,
    data: &[u8],
    ranges: &[Range<usize>],
    frames: &[Vec<u8>],
    out: &mut Vec<u8>,
    check: bool,
) -> Result<(), String> {
    for (r, f) in ranges.iter().zip(frames) {
        out.clear();
        let n = d
            .decompress_to_buffer(f.as_slice(), out)
            .map_err(|e| format!("zstd: {e}"))?;
        if n != r.len() || (check && out[..] != data[r.clone()]) {
            return Err(format!("a chunk of {} bytes did not round-trip", r.len()));
        }
    }
    Ok(())
}

/// Best of `reps` single-threaded runs over `data`'s chunks.
fn speed(
    v: &Variant,
    seed: u64,
    data: &[u8],
    level: i32,
    dict: Option<&[u8]>,
    reps: usize,
) -> Result<Speed, String> {
    let chunker = Chunker::new(v.params, seed).expect("parameters within the SPEC §6 bounds");
    let ranges: Vec<Range<usize>> = chunker.chunks(data).collect();
    let edict = dict.map(|d| zstd::dict::EncoderDictionary::copy(d, level));
    let mut frames: Vec<Vec<u8>> = ranges
        .iter()
        .map(|r| Vec::with_capacity(zstd::zstd_safe::compress_bound(r.len()) + 64))
        .collect();
    let mut streamed = frames.clone();

    let mut c = compressor(level, edict.as_ref())?;
    let comp = best_of(reps, || {
        for (r, f) in ranges.iter().zip(frames.iter_mut()) {
            f.clear();
            c.compress_to_buffer(&data[r.clone()], f)
                .map_err(|e| format!("zstd: {e}"))?;
        }
        Ok(())
    })?;
    let mut sc = stream_context(level, edict.as_ref())?;
    let comp_unknown = best_of(reps, || {
        for (r, f) in ranges.iter().zip(streamed.iter_mut()) {
            compress_unknown_size(&mut sc, &data[r.clone()], f)?;
        }
        Ok(())
    })?;

    let ddict = dict.map(zstd::dict::DecoderDictionary::copy);
    let mut d = match &ddict {
        None => zstd::bulk::Decompressor::new(),
        Some(dd) => zstd::bulk::Decompressor::with_prepared_dictionary(dd),
    }
    .map_err(|e| format!("zstd decompressor: {e}"))?;
    let max = ranges.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut out = Vec::with_capacity(max);
    decompress_all(&mut d, data, &ranges, &frames, &mut out, true)?;
    decompress_all(&mut d, data, &ranges, &streamed, &mut out, true)?;
    let decomp = best_of(reps, || {
        decompress_all(&mut d, data, &ranges, &frames, &mut out, false)
    })?;
    let decomp_unknown = best_of(reps, || {
        decompress_all(&mut d, data, &ranges, &streamed, &mut out, false)
    })?;
    let sum = |fs: &[Vec<u8>]| fs.iter().map(|f| f.len() as u64).sum::<u64>();
    Ok(Speed {
        comp: mibs(data.len(), comp),
        comp_unknown: mibs(data.len(), comp_unknown),
        decomp: mibs(data.len(), decomp),
        decomp_unknown: mibs(data.len(), decomp_unknown),
        bytes: sum(&frames),
        bytes_unknown: sum(&streamed),
    })
}

fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{path}: {e}"))
}

fn run(o: &Opts) -> Result<(), String> {
    let started = Instant::now();
    let day1 = read(&o.day1)?;
    let day2 = read(&o.day2)?;
    let vars = variants(o);
    let sample = o.sample_mib << 20;
    eprintln!(
        "chunk-curve: {} variants, {} threads for the size pass",
        vars.len(),
        rayon::current_num_threads()
    );

    // Size pass: one variant per task.
    let results: Vec<Result<(Chunked, Vec<Row>), String>> = vars
        .par_iter()
        .enumerate()
        .map(|(vi, v)| {
            let ch = chunk_both(v, o.seed, &day1, &day2, sample, o.spread);
            eprintln!(
                "  {} {}: chunked and hashed both days in {:.2} s",
                v.kind,
                params_label(v.params),
                ch.secs
            );
            let rows = measure_rows(vi, v, &ch, o, &day1, &day2)?;
            Ok((ch, rows))
        })
        .collect();
    let mut chunked = Vec::new();
    let mut rows = Vec::new();
    for r in results {
        let (ch, rs) = r?;
        chunked.push(ch);
        rows.extend(rs);
    }
    let size_secs = started.elapsed().as_secs_f64();

    // Throughput pass: one thread, nothing else of ours running.
    let t = Instant::now();
    let speed_data = &day1[..day1.len().min(o.speed_mib << 20)];
    // Round-robin: every round measures every row once, and each row keeps its best round, so
    // a burst of load elsewhere on the machine hits one round of many rows, not all rounds of
    // one row.
    let mut speeds: Vec<Speed> = vec![Speed::default(); rows.len()];
    for _ in 0..o.reps {
        for (row, best) in rows.iter().zip(speeds.iter_mut()) {
            let s = speed(
                &vars[row.variant],
                o.seed,
                speed_data,
                o.level,
                row.dict.as_deref(),
                1,
            )?;
            *best = Speed {
                comp: best.comp.max(s.comp),
                comp_unknown: best.comp_unknown.max(s.comp_unknown),
                decomp: best.decomp.max(s.decomp),
                decomp_unknown: best.decomp_unknown.max(s.decomp_unknown),
                bytes: s.bytes,
                bytes_unknown: s.bytes_unknown,
            };
        }
    }
    let speed_secs = t.elapsed().as_secs_f64();

    let reference = rows
        .iter()
        .find(|r| vars[r.variant].kind == "restic-like")
        .map(|r| (r.day1_stored, r.day2_stored))
        .ok_or("no reference row")?;

    if o.json {
        let out = json!({
            "day1": {"path": o.day1, "bytes": day1.len()},
            "day2": {"path": o.day2, "bytes": day2.len()},
            "zstd_level": o.level,
            "blob_overhead_bytes": blob_overhead(o.group_kib),
            "group_kib": o.group_kib,
            "dict_sample_bytes": sample,
            "dict_sample_spread": o.spread,
            "speed_sample_bytes": speed_data.len(),
            "speed_reps": o.reps,
            "gear_seed": o.seed,
            "size_pass_secs": size_secs,
            "speed_pass_secs": speed_secs,
            "variants": vars.iter().zip(&chunked).map(|(v, ch)| json!({
                "kind": v.kind,
                "avg_kib": v.avg_kib,
                "min": v.params.min, "avg": v.params.avg, "max": v.params.max,
                "day1_chunks": ch.day1_chunks,
                "day1_unique_chunks": ch.day1_unique.len(),
                "day1_unique_bytes": ch.day1_unique_bytes,
                "day2_chunks": ch.day2_chunks,
                "day2_added_chunks": ch.day2_added.len(),
                "day2_added_bytes": ch.day2_added_bytes,
                "day1_content_lists": ch.lists1.0,
                "day1_content_list_bytes": ch.lists1.1,
                "day2_added_content_lists": ch.lists2_added.0,
                "day2_added_content_list_bytes": ch.lists2_added.1,
                "dict_sample_pieces": ch.sample.len(),
                "dict_sample_bytes": ch.sample_len,
            })).collect::<Vec<Value>>(),
            "rows": rows.iter().zip(&speeds).map(|(r, s)| {
                let v = &vars[r.variant];
                json!({
                    "kind": v.kind,
                    "avg_kib": v.avg_kib,
                    "dict_kib": r.dict_kib,
                    "dict_bytes": r.dict.as_ref().map_or(0, Vec::len),
                    "dict_stored_bytes": r.dict_stored,
                    "dict_train_secs": r.train_secs,
                    "size_pass_compress_secs": r.comp_secs,
                    "day1_compressed_bytes": r.day1_comp,
                    "day1_raw_blobs": r.day1_raw_blobs,
                    "day1_stored_bytes": r.day1_stored,
                    "day1_ratio_to_reference": r.day1_stored as f64 / reference.0 as f64,
                    "day2_added_compressed_bytes": r.day2_comp,
                    "day2_added_stored_bytes": r.day2_stored,
                    "day2_added_ratio_to_reference": r.day2_stored as f64 / reference.1 as f64,
                    "compress_mib_s": s.comp,
                    "decompress_mib_s": s.decomp,
                    "compress_size_unknown_mib_s": s.comp_unknown,
                    "decompress_size_unknown_mib_s": s.decomp_unknown,
                    "speed_sample_compressed_bytes": s.bytes,
                    "speed_sample_compressed_bytes_size_unknown": s.bytes_unknown,
                })
            }).collect::<Vec<Value>>(),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
        );
        return Ok(());
    }

    print_tables(
        o,
        &vars,
        &chunked,
        &rows,
        &speeds,
        reference,
        (day1.len(), day2.len()),
    );
    println!();
    println!(
        "size pass {size_secs:.1} s ({} threads), speed pass {speed_secs:.1} s",
        rayon::current_num_threads()
    );
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB
}

/// The human-readable output: Markdown tables, so a run can go into a README as it is.
fn print_tables(
    o: &Opts,
    vars: &[Variant],
    chunked: &[Chunked],
    rows: &[Row],
    speeds: &[Speed],
    reference: (u64, u64),
    (len1, len2): (usize, usize),
) {
    let speed_len = len1.min(o.speed_mib << 20);
    println!(
        "day 1: {} ({len1} bytes = {:.1} MiB); day 2: {} ({len2} bytes = {:.1} MiB)",
        o.day1,
        len1 as f64 / MIB,
        o.day2,
        len2 as f64 / MIB
    );
    if o.group_kib > 0 {
        println!(
            "zstd level {}, the new chunks of each day compressed in groups of {} KiB (one \
             envelope each; a blob costs {GROUPED_BLOB_OVERHEAD} B: pack entry, index entry with \
             group offset); FastCDC gear seed {:#x}",
            o.level, o.group_kib, o.seed
        );
    } else {
        println!(
            "zstd level {}, each chunk compressed on its own (stored raw when not smaller); \
             FastCDC gear seed {:#x}",
            o.level, o.seed
        );
    }
    let per_blob = if o.group_kib > 0 {
        format!(
            "{GROUPED_BLOB_OVERHEAD} B a blob (pack entry {PACK_ENTRY_LEN}; index entry \
             {INDEX_ENTRY_LEN} + group offset {INDEX_GROUP_EXTRA}; the group's envelope is in \
             the compressed bytes)"
        )
    } else {
        format!(
            "{BLOB_OVERHEAD} B a blob (envelope {ENVELOPE_OVERHEAD} = nonce salt \
             {NONCE_SALT_LEN} + tag {TAG_LEN}; pack entry {PACK_ENTRY_LEN}; index entry \
             {INDEX_ENTRY_LEN})"
        )
    };
    println!(
        "stored = compressed + {per_blob} + the dictionary (zstd-compressed, + {BLOB_OVERHEAD} B) \
         once"
    );
    println!(
        "dictionaries: zstd::dict::from_continuous on {} MiB of day-1 chunks of each chunking \
         ({}), in pieces of at most {} KiB",
        o.sample_mib,
        if o.spread {
            "every k-th chunk, spread over the whole dump"
        } else {
            "the first ones"
        },
        SAMPLE_PIECE_MAX >> 10
    );
    println!(
        "comp/dec MiB/s: one thread, reused zstd context (+ prepared dictionary), first {:.0} MiB \
         of day 1, best of {} rounds; comp*: streaming API without the size first (the dictionary is \
         attached, never copied), sample*: its compressed size against one-shot's",
        speed_len as f64 / MIB,
        o.reps
    );
    println!(
        "ratio, added %: against restic-like (FastCDC 512K/1M/8M, no dictionary); borg-like = \
         FastCDC 512K/2M/8M, an approximation of borg 1.2's buzhash 19,23,21,4095"
    );
    println!();
    println!(
        "| chunking | min/avg/max | avg KiB | dict KiB | chunks | day-1 stored MiB | ratio | \
         day-2 added MiB | added % | comp MiB/s | dec MiB/s | comp* MiB/s | sample* % |"
    );
    println!("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for (r, s) in rows.iter().zip(speeds) {
        let v = &vars[r.variant];
        let ch = &chunked[r.variant];
        println!(
            "| {} | {} | {} | {} | {} | {:.3} | {:.4} | {:.3} | {:.2} | {:.1} | {:.1} | {:.1} | {:+.3} |",
            v.kind,
            params_label(v.params),
            v.avg_kib,
            r.dict_kib,
            ch.day1_chunks,
            mib(r.day1_stored),
            r.day1_stored as f64 / reference.0 as f64,
            mib(r.day2_stored),
            100.0 * r.day2_stored as f64 / reference.1 as f64,
            s.comp,
            s.decomp,
            s.comp_unknown,
            100.0 * (s.bytes_unknown as f64 / s.bytes as f64 - 1.0),
        );
    }
    println!();
    println!(
        "| chunking | min/avg/max | mean KiB | day-1 unique | unique MiB | zstd MiB | \
         overhead MiB | day-2 new | new MiB | new % | lists d1 MiB | lists d2 MiB |"
    );
    println!("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for (v, ch) in vars.iter().zip(chunked) {
        let plain = rows
            .iter()
            .find(|r| std::ptr::eq(&vars[r.variant], v) && r.dict_kib == 0);
        println!(
            "| {} | {} | {:.2} | {} | {:.3} | {} | {:.3} | {} | {:.3} | {:.3} | {:.3} | {:.3} |",
            v.kind,
            params_label(v.params),
            len1 as f64 / 1024.0 / ch.day1_chunks.max(1) as f64,
            ch.day1_unique.len(),
            mib(ch.day1_unique_bytes),
            plain.map_or("-".to_string(), |r| format!("{:.3}", mib(r.day1_comp))),
            mib(blob_overhead(o.group_kib) * ch.day1_unique.len() as u64),
            ch.day2_added.len(),
            mib(ch.day2_added_bytes),
            100.0 * ch.day2_added_bytes as f64 / len2.max(1) as f64,
            mib(ch.lists1.1),
            mib(ch.lists2_added.1),
        );
    }
    if rows.iter().any(|r| r.dict.is_some()) {
        println!();
        println!("| chunking | min/avg/max | dict KiB | dict bytes | stored bytes | train s |");
        println!("|---|---|--:|--:|--:|--:|");
        for r in rows.iter().filter(|r| r.dict.is_some()) {
            let v = &vars[r.variant];
            println!(
                "| {} | {} | {} | {} | {} | {:.2} |",
                v.kind,
                params_label(v.params),
                r.dict_kib,
                r.dict.as_ref().map_or(0, Vec::len),
                r.dict_stored,
                r.train_secs
            );
        }
    }
}
