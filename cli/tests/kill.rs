//! Crash safety of the real binary: `cairn backup --stdin` killed with SIGKILL at random
//! moments, over and over, on one repository and one cache directory.
//!
//! Afterwards the repository must list its snapshots, every snapshot must dump byte-exact (a
//! snapshot exists completely or not at all, SPEC §12), and a further backup must succeed on
//! top of whatever the killed runs left behind (orphan packs, temporary files, a cache whose
//! writer died).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Size of the backed-up stream. The debug binary seals only ~20-30 MB/s (AES-GCM's generic
/// code is instantiated in the unoptimized workspace crates), so this keeps a clean backup to
/// a second or two and the whole test near half a minute. Three quarters are random, so about
/// 26 MiB are stored: one full 16 MiB data pack goes up mid-run and the rest at the end. It is
/// ~2000 chunks, more than a direct file node holds, so content lists are written too.
const INPUT_BYTES: usize = 32 << 20;
/// How many runs are killed.
const KILLS: u64 = 15;
/// Seed of the kill schedule.
const SEED: u64 = 0x6B11_1E5E_ED00_0001;

/// A deterministic xorshift generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The base input: 1 MiB regions, three of random bytes for one of log-like text (which
/// compresses), like a database dump with binary and textual parts.
fn base_input() -> Vec<u8> {
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    let lines: Vec<Vec<u8>> = (0..64)
        .map(|i| {
            format!(
                "2026-11-{:02} 12:{:02}:{:02} INFO worker-{i} handled request {} in {} ms\n",
                1 + i % 28,
                i % 60,
                (i * 7) % 60,
                i * 7919,
                i % 97
            )
            .into_bytes()
        })
        .collect();
    let mut out = Vec::with_capacity(INPUT_BYTES + 256);
    let mut region = 0usize;
    while out.len() < INPUT_BYTES {
        let end = (out.len() + (1 << 20)).min(INPUT_BYTES);
        if region % 4 != 3 {
            while out.len() < end {
                out.extend_from_slice(&rng.next().to_le_bytes());
            }
        } else {
            while out.len() < end {
                out.extend_from_slice(&lines[(rng.next() % 64) as usize]);
            }
        }
        out.truncate(end);
        region += 1;
    }
    out
}

/// Run `run`'s input is the base XOR a per-run 8-byte key, so no two runs share a chunk: every
/// run does the full work (a killed run writes no index file, but a finished one would
/// otherwise make later runs mere dedup hits). The text stays compressible.
fn run_key(run: u64) -> u64 {
    let mut r = Rng(run.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    r.next();
    r.next()
}

/// `base` XOR `key` (repeated, little-endian); `base.len()` is a multiple of 8.
fn xor_into(base: &[u8], key: u64, out: &mut Vec<u8>) {
    out.clear();
    out.reserve(base.len());
    for w in base.chunks_exact(8) {
        let v = u64::from_le_bytes(w.try_into().expect("8 bytes")) ^ key;
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn stream_name(run: u64) -> String {
    format!("run-{run:02}")
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// `cairn` with the repository, password and cache of this test; `cache` picks the cache
    /// directory (the shared one, or a fresh one for checks that must not trust it).
    fn command(&self, cache: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.args(args)
            .env("CAIRN_REPOSITORY", self.path("repo"))
            .env("CAIRN_PASSWORD", "kill test")
            .env("CAIRN_CACHE_DIR", cache)
            .env_remove("CAIRN_PASSWORD_FILE")
            .env_remove("CAIRN_PASSWORD_COMMAND");
        c
    }

    fn ok(&self, cache: &Path, args: &[&str]) -> Output {
        let out = self
            .command(cache, args)
            .stdin(Stdio::null())
            .output()
            .expect("run cairn");
        assert!(
            out.status.success(),
            "cairn {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Starts `cairn backup --stdin` for run `run` with a thread feeding its input.
    fn start_backup(&self, run: u64, base: &'static [u8]) -> (Child, std::thread::JoinHandle<()>) {
        let name = stream_name(run);
        let stderr = std::fs::File::create(self.path(&format!("stderr-{name}"))).expect("stderr");
        let mut child = self
            .command(
                &self.path("cache"),
                &["backup", "--quiet", "--stdin", "--stdin-name", &name],
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn cairn backup");
        let mut stdin = child.stdin.take().expect("stdin");
        let key = run_key(run);
        let feeder = std::thread::spawn(move || {
            let mut buf = Vec::new();
            for piece in base.chunks(1 << 20) {
                xor_into(piece, key, &mut buf);
                // A killed reader closes the pipe: the write fails with EPIPE, and we stop.
                if stdin.write_all(&buf).is_err() {
                    return;
                }
            }
        });
        (child, feeder)
    }

    fn stderr_of(&self, run: u64) -> String {
        std::fs::read_to_string(self.path(&format!("stderr-{}", stream_name(run))))
            .unwrap_or_default()
    }

    /// Dumps `name` of snapshot `id` and checks it equals run `run`'s input.
    fn check_dump(&self, cache: &Path, id: &str, run: u64, base: &[u8]) {
        let name = stream_name(run);
        let mut child = self
            .command(cache, &["dump", id, &name])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cairn dump");
        let mut out = Vec::with_capacity(base.len());
        child
            .stdout
            .take()
            .expect("stdout")
            .read_to_end(&mut out)
            .expect("read dump");
        let status = child.wait().expect("wait dump");
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        assert!(status.success(), "dump {id} {name} failed: {err}");
        assert_eq!(out.len(), base.len(), "dump {id} {name}: length");
        let mut want = Vec::new();
        xor_into(base, run_key(run), &mut want);
        assert!(
            out == want,
            "dump {id} {name}: content differs from the input"
        );
    }

    /// `cairn snapshots --json`: (id, stream name) per snapshot.
    fn snapshots(&self, cache: &Path) -> Vec<(String, String)> {
        let out = self.ok(cache, &["snapshots", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("snapshots json");
        v.as_array()
            .expect("array")
            .iter()
            .map(|s| {
                let id = s["id"].as_str().expect("id").to_string();
                let paths = s["paths"].as_array().expect("paths");
                assert_eq!(paths.len(), 1, "{s}");
                (id, paths[0].as_str().expect("path").to_string())
            })
            .collect()
    }
}

fn run_of(name: &str) -> u64 {
    name.strip_prefix("run-")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected stream name {name}"))
}

/// Files in `dir` (recursively) whose name starts with `.tmp-`: temporary files of puts that
/// were killed; readers skip them.
fn temp_files(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                temp_files(&p)
            } else {
                usize::from(e.file_name().to_string_lossy().starts_with(".tmp-"))
            }
        })
        .sum()
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |rd| {
        rd.filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .count()
    })
}

#[test]
fn backup_killed_at_random_points_never_leaves_a_partial_snapshot() {
    let started = Instant::now();
    let env = Env {
        dir: tempfile::tempdir().expect("tempdir"),
    };
    let shared_cache = env.path("cache");
    env.ok(
        &shared_cache,
        &["init", "--kdf-memory-kib", "8", "--kdf-iterations", "1"],
    );
    let base: &'static [u8] = Box::leak(base_input().into_boxed_slice());

    // One clean run (run 0) to learn how long a backup takes.
    let t = Instant::now();
    let (mut child, feeder) = env.start_backup(0, base);
    let status = child.wait().expect("wait");
    let clean = t.elapsed();
    feeder.join().expect("feeder");
    assert!(
        status.success(),
        "clean backup failed: {}",
        env.stderr_of(0)
    );

    // Kill runs 1..=KILLS at random moments between 0.2 and 1.1 × the clean duration (before
    // that nothing is written yet): most die in the middle (reading, sealing, uploading the
    // first pack), some near the end (last packs, index file, snapshot), a few after they
    // finished.
    let mut rng = Rng(SEED);
    let clean_ms = clean.as_millis() as u64;
    let (from_ms, span_ms) = (clean_ms / 5, (clean_ms * 9 / 10).max(1));
    let (mut killed, mut finished) = (0, 0);
    let mut delays = Vec::new();
    for run in 1..=KILLS {
        let delay = Duration::from_millis(from_ms + rng.next() % span_ms);
        delays.push(delay.as_millis());
        let (mut child, feeder) = env.start_backup(run, base);
        std::thread::sleep(delay);
        // SIGKILL; an error only means the process had already exited.
        let _ = child.kill();
        let status = child.wait().expect("wait");
        feeder.join().expect("feeder");
        if status.success() {
            finished += 1;
        } else {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(
                status.signal(),
                Some(9),
                "run {run} ended on its own but failed: {}",
                env.stderr_of(run)
            );
            killed += 1;
        }
    }

    // What the kills left behind.
    let repo = env.path("repo");
    let data_packs: usize = std::fs::read_dir(repo.join("data"))
        .map(|rd| rd.filter_map(Result::ok).map(|e| count(&e.path())).sum())
        .unwrap_or(0);
    let (index_files, snapshot_files, temps) = (
        count(&repo.join("index")),
        count(&repo.join("snapshots")),
        temp_files(&repo),
    );

    // The shared cache outlived every killed writer; listing must work with it.
    let snaps = env.snapshots(&shared_cache);
    assert_eq!(
        snaps.len(),
        snapshot_files,
        "every snapshot object is listed"
    );
    assert!(
        snaps.iter().any(|(_, name)| name == &stream_name(0)),
        "the clean run's snapshot is there"
    );
    // Every snapshot dumps exactly its run's input, read through a fresh cache (index files
    // only, nothing remembered from the killed processes).
    let fresh_cache = env.path("fresh-cache");
    for (id, name) in &snaps {
        env.check_dump(&fresh_cache, id, run_of(name), base);
    }
    let survivors = snaps.len() - 1;
    let mut names: Vec<&String> = snaps.iter().map(|(_, n)| n).collect();
    names.sort();
    names.dedup();
    assert_eq!(
        names.len(),
        snaps.len(),
        "one snapshot per run at most: {snaps:?}"
    );
    // A run that exited 0 wrote its snapshot; a killed one may have, if it died after that.
    assert!(survivors >= finished, "{finished} runs finished: {snaps:?}");

    // And the repository takes another backup, through the shared cache.
    let last = KILLS + 1;
    let (mut child, feeder) = env.start_backup(last, base);
    let status = child.wait().expect("wait");
    feeder.join().expect("feeder");
    assert!(
        status.success(),
        "backup after the kills failed: {}",
        env.stderr_of(last)
    );
    let after = env.snapshots(&shared_cache);
    assert_eq!(after.len(), snaps.len() + 1);
    assert!(
        after.iter().any(|(_, name)| name == &stream_name(last)),
        "the new snapshot is listed"
    );

    println!(
        "{KILLS} kills ({killed} killed mid-run, {finished} had already finished; delays {delays:?} ms \
         of a {} ms clean backup of {} MiB): {survivors} snapshots survived, all verified; \
         left behind: {data_packs} packs, {index_files} index files, {temps} temporary files; \
         test took {:.1} s",
        clean.as_millis(),
        INPUT_BYTES >> 20,
        started.elapsed().as_secs_f64()
    );
}
