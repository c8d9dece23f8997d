//! Criterion benches of the backup pipeline's CPU stages, one at a time and chained, on
//! 64 MiB of dump-like data from [`cairn_benches::generate_dump`] (the data `compare.sh` uses).
//!
//! | group | what one iteration does over the whole input |
//! |---|---|
//! | `chunk/stream`, `chunk/file` | finds every FastCDC cut point with the `stream` (16 KiB) or `file` (1 MiB) profile |
//! | `blob_id` | keyed BLAKE3 of every stream chunk |
//! | `compress` | zstd level 3 of every stream chunk (cairn's default level) |
//! | `seal/envelope` | AES-256-GCM envelope of every stream chunk (`crypto::seal`, ring) |
//! | `seal/aes_gcm_crate` | the same envelopes with RustCrypto's `aes-gcm` (the implementation cairn did not choose) |
//! | `seal/blob_raw` | `pack::seal_blob` at level 0: AAD, envelope and entry, no compression |
//! | `chain/stream`, `chain/file` | chunk → blob id → compress → seal, one blob at a time |
//! | `chain/stream_groups` | chunk → blob id → 2 MiB compression groups → compress → seal, as the archiver does a dump (SPEC §7): twice this is the two-core ceiling a backup of such a stream is measured against |
//!
//! Throughput is the input size, so criterion prints MiB/s of *plaintext* for every stage.
//! Single-threaded: the archiver runs these on rayon, one chunk per task.
//!
//! `CAIRN_BENCH_MB` changes the input size (default 64). Run with
//! `cargo bench -p cairn-benches` (or `-- --quick` for a fast look).

// criterion_group! defines a `pub fn` that cannot carry a doc comment.
#![allow(missing_docs)]

use std::hint::black_box;
use std::ops::Range;
use std::time::Duration;

use cairn_benches::{DEFAULT_SEED, Variant, generate_dump};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use engine::archiver::saver::GROUP_BYTES;
use repo_format::{
    BlobId, BlobType, Chunker, ChunkerParams, Id, MasterKey, ObjectType, RepoKeys, aad, compress,
    seal, seal_blob, seal_joined_group,
};

/// Fixed key material: benches need no secrecy, and fixed keys keep runs comparable.
fn keys() -> RepoKeys {
    RepoKeys::new(Id([0x33; 32]), MasterKey::from_bytes([0x5a; 72]))
}

fn input() -> Vec<u8> {
    let mb: usize = std::env::var("CAIRN_BENCH_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    generate_dump(mb << 20, DEFAULT_SEED, Variant::Day1)
}

/// A distinct nonce salt per blob, as the archiver draws fresh ones.
fn salt(i: usize) -> [u8; 16] {
    let mut s = [0u8; 16];
    s[..8].copy_from_slice(&(i as u64).to_le_bytes());
    s
}

fn stages(c: &mut Criterion) {
    let data = input();
    let keys = keys();
    let stream =
        Chunker::new(ChunkerParams::STREAM, keys.chunker_seed()).expect("STREAM params are valid");
    let file =
        Chunker::new(ChunkerParams::FILE, keys.chunker_seed()).expect("FILE params are valid");
    let chunks: Vec<Range<usize>> = stream.chunks(&data).collect();
    let ids: Vec<Id> = chunks
        .iter()
        .map(|r| keys.blob_id(&data[r.clone()]).0)
        .collect();
    eprintln!(
        "input: {} MiB of dump-like SQL, {} stream chunks (mean {} bytes), {} file chunks",
        data.len() >> 20,
        chunks.len(),
        data.len() / chunks.len().max(1),
        file.chunks(&data).count()
    );

    let bytes = Throughput::Bytes(data.len() as u64);

    let mut g = c.benchmark_group("chunk");
    g.throughput(bytes.clone());
    g.bench_function("stream", |b| {
        b.iter(|| stream.chunks(black_box(&data)).count())
    });
    g.bench_function("file", |b| b.iter(|| file.chunks(black_box(&data)).count()));
    g.finish();

    let mut g = c.benchmark_group("blob_id");
    g.throughput(bytes.clone());
    g.bench_function("stream_chunks", |b| {
        b.iter(|| {
            for r in &chunks {
                black_box(keys.blob_id(black_box(&data[r.clone()])));
            }
        });
    });
    g.finish();

    let mut g = c.benchmark_group("compress");
    g.throughput(bytes.clone());
    g.bench_function("zstd3_stream_chunks", |b| {
        b.iter(|| {
            for r in &chunks {
                black_box(compress(3, black_box(&data[r.clone()])));
            }
        });
    });
    g.finish();

    let mut g = c.benchmark_group("seal");
    g.throughput(bytes.clone());
    let enc_key = keys.master().enc_key;
    g.bench_function("envelope", |b| {
        b.iter(|| {
            for (i, (r, id)) in chunks.iter().zip(&ids).enumerate() {
                let aad = aad(ObjectType::DataBlob, keys.repo_id(), id);
                black_box(seal(&enc_key, &aad, salt(i), black_box(&data[r.clone()])));
            }
        });
    });
    g.bench_function("aes_gcm_crate", |b| {
        use aes_gcm::aead::AeadInPlace;
        use aes_gcm::{Aes256Gcm, Key, KeyInit, Nonce};
        b.iter(|| {
            for (i, (r, id)) in chunks.iter().zip(&ids).enumerate() {
                let aad = aad(ObjectType::DataBlob, keys.repo_id(), id);
                let mut material = [0u8; 48];
                material[..32].copy_from_slice(&enc_key);
                material[32..].copy_from_slice(&salt(i));
                let subkey =
                    blake3::derive_key(repo_format::format::ENVELOPE_SUBKEY_CONTEXT, &material);
                let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&subkey));
                let mut out = Vec::with_capacity(r.len() + 32);
                out.extend_from_slice(&salt(i));
                out.extend_from_slice(&data[r.clone()]);
                let tag = cipher
                    .encrypt_in_place_detached(Nonce::from_slice(&[0; 12]), &aad, &mut out[16..])
                    .expect("under the GCM limit");
                out.extend_from_slice(&tag);
                black_box(out);
            }
        });
    });
    g.bench_function("blob_raw", |b| {
        b.iter(|| {
            for (i, (r, id)) in chunks.iter().zip(&ids).enumerate() {
                black_box(seal_blob(
                    &keys,
                    BlobType::Data,
                    (*id).into(),
                    &data[r.clone()],
                    0,
                    salt(i),
                ));
            }
        });
    });
    g.finish();

    let mut g = c.benchmark_group("chain");
    g.throughput(bytes);
    for (name, chunker) in [("stream", &stream), ("file", &file)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut stored = 0usize;
                for (i, r) in chunker.chunks(black_box(&data)).enumerate() {
                    let chunk = &data[r];
                    let id = keys.blob_id(chunk);
                    stored += seal_blob(&keys, BlobType::Data, id, chunk, 3, salt(i))
                        .bytes
                        .len();
                }
                stored
            });
        });
    }
    g.bench_function("stream_groups", |b| {
        b.iter(|| {
            let mut stored = 0usize;
            let mut members: Vec<(BlobId, usize)> = Vec::new();
            let mut start = 0usize;
            let mut seal_group = |members: &mut Vec<(BlobId, usize)>, start: usize, end: usize| {
                if let Some(g) = seal_joined_group(
                    &keys,
                    BlobType::Data,
                    &data[start..end],
                    members,
                    3,
                    salt(end),
                ) {
                    stored += g.bytes.len();
                }
                members.clear();
            };
            for r in stream.chunks(black_box(&data)) {
                let chunk = &data[r.clone()];
                members.push((keys.blob_id(chunk), chunk.len()));
                if r.end - start >= GROUP_BYTES {
                    seal_group(&mut members, start, r.end);
                    start = r.end;
                }
            }
            seal_group(&mut members, start, data.len());
            stored
        });
    });
    g.finish();
}

criterion_group! {
    name = benches;
    // One iteration handles the whole input (0.05-0.5 s), so few samples suffice; two cores
    // make long runs costly. Command-line flags (--quick, --measurement-time) override these.
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8));
    targets = stages
}
criterion_main!(benches);
