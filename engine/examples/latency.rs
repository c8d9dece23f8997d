//! Backup throughput with added storage latency (issue 6): backs up the same stream into a
//! local repository directly and through [`LatencyBackend`] adding a delay to every request,
//! and prints both rates and their ratio.
//!
//! ```text
//! cargo run --release -p cairn-engine --example latency -- [MiB] [delay-ms]   # default 256 30
//! ```

use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::archiver::{BackupOptions, Source, backup};
use engine::backend::{Backend, LatencyBackend, LocalBackend};
use engine::progress::NoProgress;
use engine::repository::{InitOptions, OpenOptions, Repository, init_with_backend};
use repo_format::KdfParams;

/// A dump-like input: half random, half repetitive text, so zstd has work to do.
fn input(mib: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(mib << 20);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let text =
        b"INSERT INTO events (id, kind, payload) VALUES (42, 'run.finished', '{\"ok\":true}');\n";
    while v.len() < mib << 20 {
        for _ in 0..8192 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.extend_from_slice(&x.to_le_bytes());
        }
        for _ in 0..(65536 / text.len()) {
            v.extend_from_slice(text);
        }
    }
    v.truncate(mib << 20);
    v
}

fn run(
    backend: Arc<dyn Backend>,
    dir: &std::path::Path,
    data: &[u8],
) -> Result<f64, engine::Error> {
    let location = dir.join("repo").to_string_lossy().into_owned();
    let opts = InitOptions {
        kdf: KdfParams::TEST,
        ..InitOptions::default()
    };
    init_with_backend(Arc::clone(&backend), &location, b"pw", &opts)?;
    let repo = Repository::open_with_backend(
        backend,
        &location,
        b"pw",
        &OpenOptions {
            cache_dir: Some(dir.join("cache")),
        },
    )?;
    let start = Instant::now();
    backup(
        &repo,
        BackupOptions::new(Source::Stream {
            name: "db.dump".into(),
            reader: Box::new(Cursor::new(data.to_vec())),
        }),
        &NoProgress,
    )?;
    Ok(data.len() as f64 / (1 << 20) as f64 / start.elapsed().as_secs_f64())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().map_or(Ok(256), |s| s.parse())?;
    let delay_ms: u64 = args.next().map_or(Ok(30), |s| s.parse())?;
    let data = input(mib);
    let tmp = std::env::temp_dir().join(format!("cairn-latency-{}", std::process::id()));
    let (a, b) = (tmp.join("local"), tmp.join("slow"));
    std::fs::create_dir_all(&a)?;
    std::fs::create_dir_all(&b)?;
    let local = run(Arc::new(LocalBackend::new(a.join("repo"))), &a, &data)?;
    let slow_backend: Arc<dyn Backend> = Arc::new(LatencyBackend::new(
        Arc::new(LocalBackend::new(b.join("repo"))),
        Duration::from_millis(delay_ms),
    ));
    let slow = run(slow_backend, &b, &data)?;
    std::fs::remove_dir_all(&tmp)?;
    println!(
        "backup of {mib} MiB: local {local:.0} MiB/s, with {delay_ms} ms per request {slow:.0} MiB/s ({:.2}x of local)",
        slow / local
    );
    Ok(())
}
