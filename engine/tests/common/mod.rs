//! Helpers shared by the engine's integration tests: a deterministic generator and a fresh
//! repository per test (cheapest legal KDF, its own cache directory).

#![allow(dead_code)]

pub mod grace;
pub mod intercept;
pub mod s3;
pub mod storage;

use std::path::PathBuf;

use engine::repository::{InitOptions, OpenOptions, Repository, init};
use repo_format::KdfParams;

/// The password of every test repository.
pub const PASSWORD: &[u8] = b"correct horse";

/// A deterministic xorshift generator: the same seed gives the same data on every run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
    /// Compressible, never repeating text (numbered lines of a few random words): what dumps
    /// look like, so its chunks go into compression groups (SPEC §7).
    pub fn text(&mut self, n: usize) -> Vec<u8> {
        const WORDS: [&str; 8] = [
            "insert", "into", "events", "values", "user", "run", "ok", "queue",
        ];
        let mut v = Vec::with_capacity(n + 64);
        let mut line = 0u64;
        while v.len() < n {
            line += 1;
            v.extend_from_slice(format!("{line:09}").as_bytes());
            for _ in 0..6 {
                v.push(b' ');
                v.extend_from_slice(WORDS[self.below(8) as usize].as_bytes());
            }
            v.push(b'\n');
        }
        v.truncate(n);
        v
    }
}

/// A temporary directory holding a new repository (`repo/`) and its cache (`cache/`).
pub struct Env {
    pub _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub repo_path: String,
    pub cache: PathBuf,
}

/// Where a test's repository lives: `root/repo`, or, when `CAIRN_TEST_REPO` names a base location
/// such as `s3://bucket/runs` (see `scripts/s3-suite`), a new location under it, so the same test
/// runs unchanged against another backend.
pub fn repo_location(root: &std::path::Path) -> String {
    match std::env::var("CAIRN_TEST_REPO") {
        Ok(base) if !base.is_empty() => {
            let leaf = root
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            format!(
                "{}/{}-{leaf}",
                base.trim_end_matches('/'),
                std::process::id()
            )
        }
        _ => root.join("repo").to_string_lossy().into_owned(),
    }
}

/// A new, empty repository.
pub fn env() -> Env {
    env_with(InitOptions::default())
}

/// A new, empty repository whose `stream` profile cuts 4/16/64 KiB chunks (the size `init`
/// wrote before SPEC §6 raised it): content lists and groups of many chunks from a few MiB.
pub fn env_small_chunks() -> Env {
    env_with_stream_chunks(repo_format::ChunkerParams {
        min: 4 << 10,
        avg: 16 << 10,
        max: 64 << 10,
    })
}

/// A new, empty repository whose `stream` profile is `params` (min = max cuts fixed sizes, so
/// a test knows every chunk whatever the repository's chunker seed).
#[allow(dead_code)] // each test binary compiles its own copy of this module
pub fn env_with_stream_chunks(params: repo_format::ChunkerParams) -> Env {
    let mut profiles = repo_format::Config::new(repo_format::Id([0; 32]), 0).profiles;
    for p in &mut profiles {
        if p.name == "stream" {
            p.params = params;
        }
    }
    env_with(InitOptions {
        profiles: Some(profiles),
        ..InitOptions::default()
    })
}

fn env_with(opts: InitOptions) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_path_buf();
    let repo_path = repo_location(&root);
    let opts = InitOptions {
        kdf: KdfParams::TEST,
        ..opts
    };
    init(&repo_path, PASSWORD, &opts).expect("init");
    Env {
        cache: root.join("cache"),
        _dir: dir,
        root,
        repo_path,
    }
}

impl Env {
    /// Opens the repository with its cache.
    pub fn open(&self) -> Repository {
        let opts = OpenOptions {
            cache_dir: Some(self.cache.clone()),
        };
        Repository::open(&self.repo_path, PASSWORD, &opts).expect("open")
    }
}
