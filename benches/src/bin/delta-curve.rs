//! What each day of a chain of dumps would add if each compression group of new chunks were
//! compressed against the earlier chunks it most likely replaces (a zstd prefix, RFC 8878 "raw
//! content"), against what cairn's groups add today: the measurement behind
//! docs/design-based-groups.md.
//!
//! ```text
//! delta-curve DAY1 DAY2 [DAY3 ...] [--sizes 16,64] [--group-kib 1024] [--level 3] [--seed N] [--no-ldm]
//! ```
//!
//! For each average chunk size S (KiB; min S/4, max 4·S, as `chunk-curve`), every file is cut
//! with repo-format's [`Chunker`] and hashed with BLAKE3, then:
//!
//! * day 1: the unique chunks, in order, compressed in groups of `--group-kib` (zstd at
//!   `--level`, as the saver does), plus [`GROUPED_BLOB`] bytes of pack and index entries and
//!   32 bytes of content list per chunk;
//! * each later day: the chunks no earlier day has, grouped the same way, compressed twice:
//!   plainly (what cairn stores today) and with a **base**, the concatenated plaintexts of the
//!   stored chunks the group's members most likely replace, as a zstd prefix (window 2^24, at
//!   most [`MAX_BASE`] bytes, with zstd's long-distance matching unless `--no-ldm`). A new chunk's candidate is the previous day's chunk after the one
//!   the stream last matched (PostgreSQL's and Redis's dumps keep their order, so an edited
//!   stretch replaces the stretch after the last unchanged chunk). A candidate that is itself
//!   in a based group is replaced by that group's base (depth 1: a base is never based, so a
//!   read costs at most one more group). The smaller frame counts; a based group also pays
//!   2 × 32 bytes per base chunk (its id in the pack header and in the index file).
//!
//! The plain column is a chain of its own (every day's groups plain, as cairn stores today).
//! Every based frame is decompressed again with its base and compared, so the figures are of
//! frames that decode. "base read" is the plaintext a restore (and the backup that writes the
//! group) reads besides the new chunks.

use std::collections::HashMap;
use std::ops::Range;
use std::process::ExitCode;
use std::time::Instant;

use cairn_benches::stream_params;
use rayon::prelude::*;
use repo_format::Chunker;
use repo_format::format::{INDEX_ENTRY_LEN, INDEX_GROUP_EXTRA, PACK_ENTRY_LEN};
use zstd::zstd_safe::{self, CCtx, CParameter, DCtx, DParameter};

const USAGE: &str = "usage: delta-curve DAY1 DAY2 [DAY3 ...] [--sizes 16,64] [--group-kib 1024] [--level 3] [--seed N] [--no-ldm]";

/// Pack header entry and index entry (with its group offset) of one grouped blob.
const GROUPED_BLOB: u64 = (PACK_ENTRY_LEN + INDEX_ENTRY_LEN + INDEX_GROUP_EXTRA) as u64;
/// A chunk's id in its stream's content list.
const LIST_ENTRY: u64 = 32;
/// A base chunk's id, in the pack header and in the index file.
const BASE_ID: u64 = 2 * 32;
/// The window of a based frame: base and group together.
const WINDOW_LOG: u32 = 24;
/// The most plaintext a group's base holds; candidates beyond it are left out.
const MAX_BASE: usize = 4 << 20;

struct Opts {
    days: Vec<String>,
    sizes: Vec<u32>,
    group: usize,
    level: i32,
    seed: u64,
    /// Long-distance matching for based frames (`--no-ldm` turns it off).
    ldm: bool,
}

type Hash = [u8; 32];

/// One chunk: where it is and its hash.
struct Chunk {
    range: Range<usize>,
    hash: Hash,
}

/// What a day added.
#[derive(Default)]
struct Day {
    new: usize,
    new_bytes: u64,
    /// Stored bytes (frames, entries, content list) with plain groups only.
    plain: u64,
    /// The same with based groups where they are smaller.
    based: u64,
    groups: usize,
    based_groups: usize,
    base_read: u64,
    /// Seconds spent compressing plainly and against bases (one thread per size: run one size
    /// for figures that are not shared with another).
    plain_secs: f64,
    based_secs: f64,
}

/// How a stored chunk is stored, in the based chain.
#[derive(Clone, Copy)]
enum Stored {
    /// In a plain group: it may be a base. `(day, range)` finds its bytes.
    Plain(usize, usize),
    /// In based group `g`.
    Based(usize),
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
        days: Vec::new(),
        sizes: vec![16, 64],
        group: 1 << 20,
        level: 3,
        seed: 0x00c4_a11b_5eed_0001,
        ldm: true,
    };
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
            "--no-ldm" => o.ldm = false,
            "-h" | "--help" => return Err(USAGE.to_string()),
            _ if a.starts_with('-') => return Err(format!("unknown option {a}; {USAGE}")),
            _ => o.days.push(a),
        }
    }
    if o.days.len() < 2 {
        return Err(USAGE.to_string());
    }
    Ok(o)
}

fn run(o: &Opts) -> Result<(), String> {
    let days: Vec<Vec<u8>> = o
        .days
        .iter()
        .map(|p| std::fs::read(p).map_err(|e| format!("cannot read {p}: {e}")))
        .collect::<Result<_, _>>()?;
    for (i, (p, d)) in o.days.iter().zip(&days).enumerate() {
        println!("day {}: {p} ({} bytes)", i + 1, d.len());
    }
    println!(
        "zstd level {}, groups of {} KiB, based frames {} long-distance matching",
        o.level,
        o.group >> 10,
        if o.ldm { "with" } else { "without" }
    );
    let rows: Vec<(u32, Vec<Day>)> = o
        .sizes
        .par_iter()
        .map(|&kib| chain(o, kib, &days).map(|r| (kib, r)))
        .collect::<Result<_, _>>()?;
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    println!(
        "| avg KiB | day | new chunks | new MiB (plain text) | added MiB, plain groups | added MiB, based groups | based / plain | groups based | base read MiB | compression s, plain / based |"
    );
    println!("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for (kib, days) in &rows {
        for (i, d) in days.iter().enumerate() {
            println!(
                "| {kib} | {} | {} | {:.1} | {:.2} | {:.2} | {:.3} | {}/{} | {:.1} | {:.2} / {:.2} |",
                i + 1,
                d.new,
                mib(d.new_bytes),
                mib(d.plain),
                mib(d.based),
                d.based as f64 / d.plain as f64,
                d.based_groups,
                d.groups,
                mib(d.base_read),
                d.plain_secs,
                d.based_secs
            );
        }
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

/// The repository of the based chain, as far as the model needs it.
struct Chain<'a> {
    o: &'a Opts,
    days: &'a [Vec<u8>],
    cut: Vec<Vec<Chunk>>,
    stored: HashMap<Hash, Stored>,
    /// Each based group's base: plain chunks, as `(day, index)`.
    bases: Vec<Vec<(usize, usize)>>,
}

impl Chain<'_> {
    fn bytes(&self, (day, i): (usize, usize)) -> &[u8] {
        &self.days[day][self.cut[day][i].range.clone()]
    }
}

fn chain(o: &Opts, kib: u32, days: &[Vec<u8>]) -> Result<Vec<Day>, String> {
    let chunker = Chunker::new(stream_params(kib), o.seed).map_err(|e| e.to_string())?;
    let mut c = Chain {
        o,
        days,
        cut: days.iter().map(|d| chunks(&chunker, d)).collect(),
        stored: HashMap::new(),
        bases: Vec::new(),
    };
    let mut out = Vec::new();
    for day in 0..days.len() {
        out.push(one_day(&mut c, day)?);
    }
    Ok(out)
}

/// Stores day `day`: plain groups and based groups, side by side.
fn one_day(c: &mut Chain, day: usize) -> Result<Day, String> {
    let mut d = Day::default();
    // Where each chunk of the day before first appears, to find a new chunk's candidate.
    let mut parent_at: HashMap<Hash, usize> = HashMap::new();
    if day > 0 {
        for (i, ch) in c.cut[day - 1].iter().enumerate() {
            parent_at.entry(ch.hash).or_insert(i);
        }
    }
    let list = c.cut[day].len() as u64 * LIST_ENTRY;
    d.plain += list;
    d.based += list;
    let mut last: Option<usize> = None;
    let mut members: Vec<usize> = Vec::new();
    let mut candidates: Vec<(usize, usize)> = Vec::new();
    let mut group_len = 0usize;
    for i in 0..c.cut[day].len() {
        let hash = c.cut[day][i].hash;
        if c.stored.contains_key(&hash) {
            if let Some(&p) = parent_at.get(&hash) {
                last = Some(p);
            }
            continue;
        }
        // Stored as plain until its group is sealed; a second copy in the day dedups.
        c.stored.insert(hash, Stored::Plain(day, i));
        d.new += 1;
        d.new_bytes += c.cut[day][i].range.len() as u64;
        if day > 0 {
            let next = last.map_or(0, |p| p + 1);
            if next < c.cut[day - 1].len() {
                last = Some(next);
                match c.stored.get(&c.cut[day - 1][next].hash) {
                    Some(Stored::Plain(dd, ii)) => candidates.push((*dd, *ii)),
                    Some(Stored::Based(g)) => candidates.extend(c.bases[*g].iter().copied()),
                    None => {}
                }
            }
        }
        members.push(i);
        group_len += c.cut[day][i].range.len();
        if group_len >= c.o.group {
            seal(c, &mut d, day, &members, &candidates)?;
            (members, group_len) = (Vec::new(), 0);
            candidates.clear();
        }
    }
    if !members.is_empty() {
        seal(c, &mut d, day, &members, &candidates)?;
    }
    Ok(d)
}

/// Compresses one group plainly and against its candidates' base; counts the smaller for the
/// based chain, and records how its members are stored.
fn seal(
    c: &mut Chain,
    d: &mut Day,
    day: usize,
    members: &[usize],
    candidates: &[(usize, usize)],
) -> Result<(), String> {
    d.groups += 1;
    let mut group = Vec::new();
    for &i in members {
        group.extend_from_slice(&c.days[day][c.cut[day][i].range.clone()]);
    }
    let entries = members.len() as u64 * GROUPED_BLOB;
    let t = Instant::now();
    let plain = compress(c.o.level, false, &group, &[])?.0 + entries;
    d.plain_secs += t.elapsed().as_secs_f64();
    d.plain += plain;
    let mut base_ids: Vec<(usize, usize)> = Vec::new();
    let mut base = Vec::new();
    for &id in candidates {
        let b = c.bytes(id);
        if base_ids.contains(&id) || base.len() + b.len() > MAX_BASE {
            continue;
        }
        base_ids.push(id);
        base.extend_from_slice(b);
    }
    if base.is_empty() {
        d.based += plain;
        return Ok(());
    }
    let t = Instant::now();
    let (len, frame) = compress(c.o.level, c.o.ldm, &group, &base)?;
    d.based_secs += t.elapsed().as_secs_f64();
    let based = len + entries + base_ids.len() as u64 * BASE_ID;
    if based >= plain {
        d.based += plain;
        return Ok(());
    }
    check_decodes(&frame, &base, &group)?;
    d.based += based;
    d.based_groups += 1;
    d.base_read += base.len() as u64;
    let g = c.bases.len();
    c.bases.push(base_ids);
    for &i in members {
        c.stored.insert(c.cut[day][i].hash, Stored::Based(g));
    }
    Ok(())
}

/// One zstd frame of `data` with `prefix` (may be empty) as its history.
fn compress(level: i32, ldm: bool, data: &[u8], prefix: &[u8]) -> Result<(u64, Vec<u8>), String> {
    let err = |what: &str, code: usize| format!("zstd {what}: {}", zstd_safe::get_error_name(code));
    let mut c = CCtx::create();
    c.set_parameter(CParameter::CompressionLevel(level))
        .map_err(|e| err("level", e))?;
    c.set_parameter(CParameter::WindowLog(WINDOW_LOG))
        .map_err(|e| err("window", e))?;
    if !prefix.is_empty() {
        if ldm {
            // zstd's long-distance matcher: a base of several MiB is otherwise indexed
            // through level 3's small hash table, and most of it is lost.
            c.set_parameter(CParameter::EnableLongDistanceMatching(true))
                .map_err(|e| err("long-distance matching", e))?;
        }
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
