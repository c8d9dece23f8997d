//! The chunker: parameters from the first 20 bytes (validated, then used), the rest is data.
//! Chunking in one go, fed in pieces, and fastcdc's own iterator must give the same cut points,
//! and every chunk but the last must respect the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use repo_format::{Chunker, ChunkerParams};

fuzz_target!(|data: &[u8]| {
    if data.len() < 20 {
        return;
    }
    let u = |i: usize| u32::from_le_bytes(data[i..i + 4].try_into().expect("4 bytes"));
    // Fold the raw numbers into plausible ranges half of the time, so valid params are common.
    let fold = data[0] & 1 == 1;
    let p = if fold {
        let min = 64 + u(0) % 4096;
        let avg = 256 + u(4) % 16384;
        let max = 1024 + u(8) % 65536;
        ChunkerParams { min, avg, max }
    } else {
        ChunkerParams {
            min: u(0),
            avg: u(4),
            max: u(8),
        }
    };
    let seed = u64::from_le_bytes(data[12..20].try_into().expect("8 bytes"));
    let body = &data[20..];
    let Ok(c) = Chunker::new(p, seed) else {
        assert!(p.validate().is_err());
        return;
    };
    let ranges: Vec<_> = c.chunks(body).collect();
    let mut pos = 0;
    for (i, r) in ranges.iter().enumerate() {
        assert_eq!(r.start, pos);
        assert!(!r.is_empty() && r.len() <= p.max as usize);
        if i + 1 < ranges.len() {
            assert!(r.len() >= (p.min as usize & !1));
        }
        pos = r.end;
    }
    assert_eq!(pos, body.len());

    let reference: Vec<_> = fastcdc::v2020::FastCDC::with_level_and_seed(
        body,
        p.min,
        p.avg,
        p.max,
        fastcdc::v2020::Normalization::Level1,
        seed,
    )
    .map(|ch| ch.offset..ch.offset + ch.length)
    .collect();
    assert_eq!(ranges, reference);

    // Streamed in pieces whose sizes come from the data itself.
    let mut streamed = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let (mut base, mut fed, mut step) = (0, 0, 0);
    loop {
        let eof = fed == body.len();
        while let Some(len) = c.next_chunk_len(&buf, eof) {
            streamed.push(base..base + len);
            base += len;
            buf.drain(..len);
        }
        if eof {
            break;
        }
        let n = (1 + data[step % data.len()] as usize * 97).min(body.len() - fed);
        step += 1;
        buf.extend_from_slice(&body[fed..fed + n]);
        fed += n;
    }
    assert_eq!(streamed, ranges);
});
