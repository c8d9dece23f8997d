//! What a day-2 dump would add if each compression group of new chunks were compressed against
//! the day-1 chunks it most likely replaces (a zstd prefix, RFC 8878 "raw content"), against
//! what cairn's groups add today: the measurement behind the "based groups" design.
//!
//! ```text
//! delta-curve DAY1 DAY2 [--sizes 16,64] [--group-kib 1024] [--level 3] [--seed N]
//! ```
//!
//! For each average chunk size S (KiB; min S/4, max 4·S, as `chunk-curve`), both files are cut
//! with repo-format's [`Chunker`] and hashed with BLAKE3, then:
//!
//! * day 1: the unique chunks, in order, compressed in groups of `--group-kib` (zstd at
//!   `--level`, as the saver does), plus [`GROUPED_BLOB`] bytes of pack and index entries and
//!   32 bytes of content list per chunk;
//! * day 2: the chunks day 1 does not have, grouped the same way, compressed twice: plainly
//!   (what cairn stores today) and with a **base**, the concatenated plaintexts of the day-1
//!   chunks the group's members most likely replace, as a zstd prefix (window 2^24). A new
//!   chunk's candidate is the day-1 chunk after the one the stream last matched (PostgreSQL's
//!   and Redis's dumps keep their order, so an edited stretch replaces the stretch after the
//!   last unchanged chunk). The smaller of the two counts; a based group also pays 2 × 32
//!   bytes per base chunk (its id in the pack header and in the index file).
//!
//! Every based frame is decompressed again with its base and compared, so the figures are of
//! frames that decode. "base read" is the plaintext a restore (and the backup that writes the
//! group) reads besides the new chunks: the replaced day-1 chunks.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::process::ExitCode;

use cairn_benches::stream_params;
use rayon::prelude::*;
use repo_format::Chunker;
use repo_format::format::{INDEX_ENTRY_LEN, INDEX_GROUP_EXTRA, PACK_ENTRY_LEN};
use zstd::zstd_safe::{self, CCtx, CParameter, DCtx, DParameter};

const USAGE: &str =
    "usage: delta-curve DAY1 DAY2 [--sizes 16,64] [--group-kib 1024] [--level 3] [--seed N]";

/// Pack header entry and index entry (with its group offset) of one grouped blob.
const GROUPED_BLOB: u64 = (PACK_ENTRY_LEN + INDEX_ENTRY_LEN + INDEX_GROUP_EXTRA) as u64;
/// A chunk's id in its stream's content list.
const LIST_ENTRY: u64 = 32;
/// A base chunk's id, in the pack header and in the index file.
const BASE_ID: u64 = 2 * 32;
/// The window of a based frame: base and group together.
const WINDOW_LOG: u32 = 24;

struct Opts {
    day1: String,
    day2: String,
    sizes: Vec<u32>,
    group: usize,
    level: i32,
    seed: u64,
}

/// One chunk: where it is and its hash.
struct Chunk {
    range: Range<usize>,
    hash: [u8; 32],
}

#[derive(Default)]
struct Row {
    kib: u32,
    day1_chunks: usize,
    day1_stored: u64,
    day2_new: usize,
    day2_new_bytes: u64,
    plain: u64,
    based: u64,
    based_groups: usize,
    groups: usize,
    base_ids: u64,
    base_read: u64,
}

fn main() -> ExitCode {
    match parse().and_then(|o| run(&o)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("delta-curve: {e}");
            ExitCode::from(2)
        }
    }
}

fn parse() -> Result<Opts, String> {
    let mut args = std::env::args().skip(1);
    let mut o = Opts {
        day1: String::new(),
        day2: String::new(),
        sizes: vec![16, 64],
        group: 1 << 20,
        level: 3,
        seed: 0x00c4_a11b_5eed_0001,
    };
    let mut files = Vec::new();
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value; {USAGE}"));
        match a.as_str() {
            "--sizes" => {
                o.sizes = value("--sizes")?
                    .split(',')
                    .map(|s| {
                        s.parse()
                            .map_err(|_| format!("--sizes: {s:?} is not a number"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--group-kib" => {
                let v: usize = value("--group-kib")?
                    .parse()
                    .map_err(|_| "--group-kib: not a number")?;
                o.group = v.max(1) << 10;
            }
            "--level" => {
                o.level = value("--level")?
                    .parse()
                    .map_err(|_| "--level: not a number")?
            }
            "--seed" => {
                o.seed = value("--seed")?
                    .parse()
                    .map_err(|_| "--seed: not a number")?
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            _ if a.starts_with('-') => return Err(format!("unknown option {a}; {USAGE}")),
            _ => files.push(a),
        }
    }
    let [day1, day2] = <[String; 2]>::try_from(files).map_err(|_| USAGE.to_string())?;
    (o.day1, o.day2) = (day1, day2);
    Ok(o)
}

fn run(o: &Opts) -> Result<(), String> {
    let read = |p: &str| std::fs::read(p).map_err(|e| format!("cannot read {p}: {e}"));
    let (d1, d2) = (read(&o.day1)?, read(&o.day2)?);
    println!(
        "day 1: {} ({} bytes); day 2: {} ({} bytes); zstd level {}, groups of {} KiB",
        o.day1,
        d1.len(),
        o.day2,
        d2.len(),
        o.level,
        o.group >> 10
    );
    let rows: Vec<Row> = o
        .sizes
        .par_iter()
        .map(|&kib| measure(o, kib, &d1, &d2))
        .collect::<Result<_, _>>()?;
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    println!(
        "| avg KiB | day-1 chunks | day-1 stored MiB | day-2 new chunks | new MiB (plain text) | day-2 added MiB, plain groups | day-2 added MiB, based groups | based / plain | groups based | base read MiB |"
    );
    println!("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for r in &rows {
        // Both day-2 figures include the new chunks' entries and content list ids.
        let meta = r.day2_new as u64 * (GROUPED_BLOB + LIST_ENTRY);
        let plain = r.plain + meta;
        let based = r.based + meta + r.base_ids * BASE_ID;
        println!(
            "| {} | {} | {:.2} | {} | {:.1} | {:.2} | {:.2} | {:.3} | {}/{} | {:.1} |",
            r.kib,
            r.day1_chunks,
            mib(r.day1_stored),
            r.day2_new,
            mib(r.day2_new_bytes),
            mib(plain),
            mib(based),
            based as f64 / plain as f64,
            r.based_groups,
            r.groups,
            mib(r.base_read)
        );
    }
    Ok(())
}

fn chunks(chunker: &Chunker, data: &[u8]) -> Vec<Chunk> {
    chunker
        .chunks(data)
        .map(|range| Chunk {
            hash: *blake3::hash(&data[range.clone()]).as_bytes(),
            range,
        })
        .collect()
}

fn measure(o: &Opts, kib: u32, d1: &[u8], d2: &[u8]) -> Result<Row, String> {
    let chunker = Chunker::new(stream_params(kib), o.seed).map_err(|e| e.to_string())?;
    let (c1, c2) = (chunks(&chunker, d1), chunks(&chunker, d2));
    let mut row = Row {
        kib,
        ..Row::default()
    };
    // Day 1.
    let mut first_at: HashMap<[u8; 32], usize> = HashMap::new();
    let mut group = Vec::new();
    for (i, c) in c1.iter().enumerate() {
        if first_at.contains_key(&c.hash) {
            continue;
        }
        first_at.insert(c.hash, i);
        row.day1_chunks += 1;
        group.extend_from_slice(&d1[c.range.clone()]);
        if group.len() >= o.group {
            row.day1_stored += compress(o.level, &group, &[])?.0;
            group.clear();
        }
    }
    if !group.is_empty() {
        row.day1_stored += compress(o.level, &group, &[])?.0;
        group.clear();
    }
    row.day1_stored += c1.len() as u64 * LIST_ENTRY + row.day1_chunks as u64 * GROUPED_BLOB;
    // Day 2.
    let mut seen: HashSet<[u8; 32]> = HashSet::new();
    let mut last: Option<usize> = None;
    let mut bases: Vec<usize> = Vec::new();
    for c in &c2 {
        if let Some(&i) = first_at.get(&c.hash) {
            last = Some(i);
            continue;
        }
        if !seen.insert(c.hash) {
            continue;
        }
        row.day2_new += 1;
        row.day2_new_bytes += c.range.len() as u64;
        let candidate = last.map_or(0, |i| i + 1);
        if candidate < c1.len() {
            bases.push(candidate);
            last = Some(candidate);
        }
        group.extend_from_slice(&d2[c.range.clone()]);
        if group.len() >= o.group {
            seal(o, &mut row, &group, &mut bases, &c1, d1)?;
            group.clear();
        }
    }
    if !group.is_empty() {
        seal(o, &mut row, &group, &mut bases, &c1, d1)?;
    }
    Ok(row)
}

/// Compresses one day-2 group plainly and against its base; counts the smaller.
fn seal(
    o: &Opts,
    row: &mut Row,
    group: &[u8],
    bases: &mut Vec<usize>,
    c1: &[Chunk],
    d1: &[u8],
) -> Result<(), String> {
    row.groups += 1;
    let plain = compress(o.level, group, &[])?.0;
    row.plain += plain;
    let mut ids: Vec<usize> = std::mem::take(bases);
    ids.sort_unstable();
    ids.dedup();
    let mut base = Vec::new();
    for &i in &ids {
        base.extend_from_slice(&d1[c1[i].range.clone()]);
    }
    let (based, frame) = compress(o.level, group, &base)?;
    if based < plain {
        check_decodes(&frame, &base, group)?;
        row.based += based;
        row.based_groups += 1;
        row.base_ids += ids.len() as u64;
        row.base_read += base.len() as u64;
    } else {
        row.based += plain;
    }
    Ok(())
}

/// One zstd frame of `data` with `prefix` (may be empty) as its history.
fn compress(level: i32, data: &[u8], prefix: &[u8]) -> Result<(u64, Vec<u8>), String> {
    let err = |what: &str, code: usize| format!("zstd {what}: {}", zstd_safe::get_error_name(code));
    let mut c = CCtx::create();
    c.set_parameter(CParameter::CompressionLevel(level))
        .map_err(|e| err("level", e))?;
    c.set_parameter(CParameter::WindowLog(WINDOW_LOG))
        .map_err(|e| err("window", e))?;
    if !prefix.is_empty() {
        c.ref_prefix(prefix).map_err(|e| err("prefix", e))?;
    }
    let mut out = vec![0u8; zstd_safe::compress_bound(data.len())];
    let n = c
        .compress2(&mut out[..], data)
        .map_err(|e| err("compress", e))?;
    out.truncate(n);
    Ok((n as u64, out))
}

fn check_decodes(frame: &[u8], prefix: &[u8], want: &[u8]) -> Result<(), String> {
    let err = |what: &str, code: usize| format!("zstd {what}: {}", zstd_safe::get_error_name(code));
    let mut d = DCtx::create();
    d.set_parameter(DParameter::WindowLogMax(WINDOW_LOG))
        .map_err(|e| err("window", e))?;
    d.ref_prefix(prefix).map_err(|e| err("prefix", e))?;
    let mut back = vec![0u8; want.len()];
    let n = d
        .decompress(&mut back[..], frame)
        .map_err(|e| err("decompress", e))?;
    if &back[..n] != want {
        return Err("a based frame did not decode to its group".into());
    }
    Ok(())
}
