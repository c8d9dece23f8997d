//! Creates a new cairn repository holding many small, distinct data blobs, for measuring what
//! repository-wide commands (prune, check) cost as the blob count grows.
//!
//! ```text
//! gen-repo --repo PATH --password-file FILE --blobs N --snapshots S [--blob-size BYTES]
//! ```
//!
//! The repository is created with the default key derivation and a prune grace period of one
//! second, so `cairn prune` can mark and then sweep within seconds. The N blobs (64 bytes each
//! by default, pseudo-random, every one different) are split evenly across S snapshots; each
//! snapshot is one stream file, `synthetic`, whose content is the list of its blobs (indirect,
//! through content lists of up to 8192 ids, exactly as a backup of a stream would store it).
//! The snapshots get distinct times an hour apart, host `gen` and path `synthetic`.
//!
//! Memory stays bounded: blobs go through the engine's `BlobSaver` in batches, and a file's
//! content keeps only one partial content list and its list ids (N / 8192 of them).
//! `benches/prune-memory.sh` uses it.

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use engine::archiver::saver::{BlobSaver, Chunk};
use engine::backend::FileType;
use engine::repository::{self, InitOptions, OpenOptions, Repository};
use repo_format::{
    BlobType, ContentBuilder, Node, NodeKind, Snapshot, SnapshotStatus, Summary, Timestamp, Tree,
};

type BoxResult<T> = Result<T, Box<dyn Error>>;

const USAGE: &str = "usage: gen-repo --repo PATH --password-file FILE --blobs N --snapshots S \
    [--blob-size BYTES]\n\
    Creates a new cairn repository at PATH (prune grace 1 s) holding N distinct random data \
    blobs of BYTES bytes (default 64), split evenly across S snapshots of one stream file each.\n";

/// Blobs handed to the saver at once (one batched index lookup each).
const BATCH: usize = 4096;

/// Progress is printed every this many blobs.
const PROGRESS_EVERY: u64 = 500_000;

/// The file name inside each snapshot, and its recorded path.
const NAME: &str = "synthetic";

struct Args {
    repo: String,
    password_file: PathBuf,
    blobs: u64,
    snapshots: u64,
    blob_size: usize,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut repo = None;
    let mut password_file = None;
    let mut blobs = None;
    let mut snapshots = None;
    let mut blob_size = 64usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(None);
        }
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        let number = |s: String| -> Result<u64, String> {
            s.parse::<u64>()
                .map_err(|_| format!("{arg} needs a whole number, not {s:?}"))
        };
        match arg.as_str() {
            "--repo" => repo = Some(value()?),
            "--password-file" => password_file = Some(PathBuf::from(value()?)),
            "--blobs" => blobs = Some(number(value()?)?),
            "--snapshots" => snapshots = Some(number(value()?)?),
            "--blob-size" => {
                blob_size = usize::try_from(number(value()?)?)
                    .map_err(|_| "--blob-size is too large".to_string())?
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let args = Args {
        repo: repo.ok_or("--repo is required")?,
        password_file: password_file.ok_or("--password-file is required")?,
        blobs: blobs.ok_or("--blobs is required")?,
        snapshots: snapshots.ok_or("--snapshots is required")?,
        blob_size,
    };
    if args.snapshots == 0 || args.blobs < args.snapshots {
        return Err("need at least one snapshot and at least one blob per snapshot".into());
    }
    // 8 bytes hold the blob's sequence number, which makes every blob distinct.
    if !(8..=1 << 20).contains(&args.blob_size) {
        return Err("--blob-size must be 8 to 1048576 bytes".into());
    }
    Ok(Some(args))
}

/// The password file's bytes without one trailing newline, as `cairn --password-file` reads it.
fn read_password(path: &PathBuf) -> BoxResult<Vec<u8>> {
    let mut v = std::fs::read(path)
        .map_err(|e| format!("cannot read the password file {}: {e}", path.display()))?;
    if v.last() == Some(&b'\n') {
        v.pop();
        if v.last() == Some(&b'\r') {
            v.pop();
        }
    }
    if v.is_empty() {
        return Err(format!("the password file {} is empty", path.display()).into());
    }
    Ok(v)
}

/// xorshift64*: fast, and plenty for bytes nobody will look at.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// `size` bytes: the sequence number `seq`, then pseudo-random bytes.
    fn blob(&mut self, seq: u64, size: usize) -> Vec<u8> {
        let mut data = Vec::with_capacity(size);
        data.extend_from_slice(&seq.to_le_bytes());
        while data.len() < size {
            let word = self.next().to_le_bytes();
            let take = (size - data.len()).min(word.len());
            data.extend_from_slice(&word[..take]);
        }
        data
    }
}

fn timestamp(ns: i64) -> Timestamp {
    Timestamp {
        sec: ns.div_euclid(1_000_000_000),
        nsec: u32::try_from(ns.rem_euclid(1_000_000_000)).unwrap_or(0),
    }
}

/// The state carried from one snapshot to the next.
struct Generator<'a> {
    repo: &'a Repository,
    args: &'a Args,
    rng: Rng,
    /// Blobs generated so far, over all snapshots.
    done: u64,
    started: Instant,
}

impl Generator<'_> {
    /// Stores one snapshot's `count` blobs, numbered from `first`, and its file's content lists
    /// and root tree; returns the root tree's id.
    fn fill(
        &mut self,
        saver: &BlobSaver<'_>,
        first: u64,
        count: u64,
        time_ns: i64,
    ) -> BoxResult<repo_format::BlobId> {
        let keys = self.repo.keys();
        let size = self.args.blob_size;
        let mut content = ContentBuilder::new();
        let mut seq = first;
        let end = first + count;
        while seq < end {
            let n = usize::try_from((end - seq).min(BATCH as u64))?;
            let mut blobs = Vec::with_capacity(n);
            for _ in 0..n {
                let data = self.rng.blob(seq, size);
                seq += 1;
                blobs.push((keys.blob_id(&data), data));
            }
            let ids: Vec<_> = blobs.iter().map(|(id, _)| *id).collect();
            let needed = saver.need_many(&ids)?;
            saver.save_chunks(blobs.iter().zip(needed).filter(|(_, need)| *need).map(
                |((id, data), _)| Chunk {
                    id: *id,
                    data,
                    plain_only: false,
                    base: Vec::new(),
                },
            ))?;
            for id in ids {
                if let Some((_, list)) = content.push(keys, id)? {
                    saver.save_if_new(BlobType::Tree, list)?;
                }
            }
            let before = self.done;
            self.done += n as u64;
            if self.done / PROGRESS_EVERY != before / PROGRESS_EVERY {
                eprintln!(
                    "gen-repo: {}/{} blobs, {:.1} s",
                    self.done,
                    self.args.blobs,
                    self.started.elapsed().as_secs_f64()
                );
            }
        }
        let (content, last) = content.finish(keys)?;
        if let Some((_, list)) = last {
            saver.save_if_new(BlobType::Tree, list)?;
        }
        let ts = timestamp(time_ns);
        let node = Node {
            name: NAME.as_bytes().to_vec(),
            kind: NodeKind::File { content },
            mode: 0o644,
            uid: engine::host::uid(),
            gid: engine::host::gid(),
            mtime: ts,
            ctime: ts,
            inode: 0,
            device: 0,
            nlink: 1,
            size: count * size as u64,
        };
        let tree = Tree { nodes: vec![node] }.encode()?;
        Ok(saver.save_if_new(BlobType::Tree, tree)?)
    }
}

fn run(args: &Args) -> BoxResult<()> {
    let started = Instant::now();
    let password = read_password(&args.password_file)?;
    let init = InitOptions {
        prune_grace_secs: Some(1),
        ..InitOptions::default()
    };
    repository::init(&args.repo, &password, &init)
        .map_err(|e| format!("cannot create a repository at {}: {e}", args.repo))?;
    let repo = Repository::open(&args.repo, &password, &OpenOptions::default())
        .map_err(|e| format!("cannot open the new repository at {}: {e}", args.repo))?;
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let seed = u64::from_le_bytes(repository::random_bytes::<8>()?) | 1;
    let mut generator = Generator {
        repo: &repo,
        args,
        rng: Rng(seed),
        done: 0,
        started,
    };
    let now = repository::now_ns();
    let hour: i64 = 3600 * 1_000_000_000;
    let mut first = 0u64;
    for s in 0..args.snapshots {
        // Even split; the first `blobs % snapshots` snapshots take one more.
        let count = args.blobs / args.snapshots + u64::from(s < args.blobs % args.snapshots);
        let hours_ago = i64::try_from(args.snapshots - s)?;
        let time_ns = now - hours_ago * hour;
        let start_ns = repository::now_ns();
        let (tree, totals) = std::thread::scope(|scope| -> BoxResult<_> {
            let saver = BlobSaver::start(scope, &repo, workers);
            let tree = generator.fill(&saver, first, count, time_ns)?;
            Ok((tree, saver.finish()?))
        })?;
        first += count;
        let snapshot = Snapshot {
            time_ns,
            utc_offset: 0,
            tree,
            paths: vec![NAME.as_bytes().to_vec()],
            hostname: "gen".to_string(),
            username: engine::host::username(),
            tags: Vec::new(),
            parent: None,
            summary: Some(Summary {
                start_ns,
                end_ns: repository::now_ns(),
                files_new: 1,
                files_changed: 0,
                files_unmodified: 0,
                dirs: 0,
                bytes_read: count * args.blob_size as u64,
                total_bytes: count * args.blob_size as u64,
                blobs_added: totals.blobs,
                data_added_raw: totals.raw,
                data_added_stored: totals.stored,
                warnings: 0,
                total_files: 1,
            }),
            status: SnapshotStatus::Complete,
            chunker: None,
            program: format!("cairn-benches gen-repo {}", env!("CARGO_PKG_VERSION")),
            original: None,
            protected: false,
            failure: None,
            store: None,
            copied_from: None,
        };
        let id = repo.save_snapshot(&snapshot)?;
        println!(
            "snapshot {} {} blobs ({} new blobs stored)",
            id.0.to_hex(),
            count,
            totals.blobs
        );
    }
    let packs = repo.list_ids(FileType::Pack)?.len();
    let indexes = repo.list_ids(FileType::Index)?.len();
    println!(
        "gen-repo: {} blobs in {} snapshots, {} packs, {} index files, {:.1} s",
        args.blobs,
        args.snapshots,
        packs,
        indexes,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprint!("gen-repo: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen-repo: {e}");
            let mut source = e.source();
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::FAILURE
        }
    }
}
