//! Finding a buffer's chunk boundaries on several threads, with exactly the sequential result.
//!
//! Content-defined chunking is sequential by definition: where a chunk ends depends only on
//! where it starts, and it starts where the previous one ended. But that dependence is all
//! there is. [`Chunker::next_chunk_len`] looks at nothing before a chunk's first byte, so two
//! walks that ever stand on the same position agree on every cut after it.
//!
//! So the buffer is split into parts, and each part is walked on its own thread from the part's
//! first byte, *as if* a chunk started there, until it passes the next part's first byte. The
//! first part's walk is the true one. Where it passes into the next part, the true walk
//! continues one cut at a time until it lands on a position the next part's walk also visited
//! (usually at once or within a few chunks: both walks skip `min` bytes and then cut at the
//! first matching hash); from there the next part's cuts are the true ones. The result is the
//! list a single thread would produce, for any number of parts (tested below against the
//! sequential walk).

use rayon::prelude::*;
use repo_format::Chunker;

/// Parts shorter than this are not worth a thread.
const MIN_PART: usize = 1 << 20;

/// The chunk ends within `data` (positions after each chunk, ascending), as cutting from
/// `data[0]` one chunk at a time with `next_chunk_len(&data[pos..], eof)` gives them. The last
/// end is where the caller continues: bytes after it need more input (or there are none).
/// With `parallel`, on all of rayon's threads.
pub fn chunk_ends(chunker: &Chunker, data: &[u8], eof: bool, parallel: bool) -> Vec<usize> {
    let min_part = MIN_PART.max(4 * chunker.params().max as usize);
    let threads = if parallel {
        rayon::current_num_threads()
    } else {
        1
    };
    let parts = threads.min(data.len() / min_part).max(1);
    chunk_ends_in_parts(chunker, data, eof, parts)
}

/// [`chunk_ends`] with the number of parts given (tests use many small parts).
fn chunk_ends_in_parts(chunker: &Chunker, data: &[u8], eof: bool, parts: usize) -> Vec<usize> {
    if parts <= 1 {
        return walk(chunker, data, eof, 0, data.len());
    }
    let starts: Vec<usize> = (0..parts).map(|i| i * data.len() / parts).collect();
    let walks: Vec<Vec<usize>> = starts
        .par_iter()
        .enumerate()
        .map(|(i, &start)| {
            let until = starts.get(i + 1).copied().unwrap_or(data.len());
            walk(chunker, data, eof, start, until)
        })
        .collect();
    join(chunker, data, eof, &starts, &walks)
}

/// Cuts from `from` until an end reaches `until`, the data ends, or the chunker needs more.
fn walk(chunker: &Chunker, data: &[u8], eof: bool, from: usize, until: usize) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut pos = from;
    while pos < until {
        match chunker.next_chunk_len(&data[pos..], eof) {
            Some(n) => {
                pos += n;
                ends.push(pos);
            }
            None => break,
        }
    }
    ends
}

/// Joins the parts' walks into the true sequence (see the module docs).
fn join(
    chunker: &Chunker,
    data: &[u8],
    eof: bool,
    starts: &[usize],
    walks: &[Vec<usize>],
) -> Vec<usize> {
    let mut ends: Vec<usize> = Vec::with_capacity(walks.iter().map(Vec::len).sum());
    // `pos` is always a true chunk start; `part` is the walk it lies on, if any.
    let mut pos = 0usize;
    let mut part = Some(0usize);
    loop {
        if let Some(p) = part {
            // Everything the walk cut after `pos` is true.
            let w = &walks[p];
            let from = w.partition_point(|&e| e <= pos);
            ends.extend_from_slice(&w[from..]);
            pos = pos.max(w.last().copied().unwrap_or(pos));
            if p + 1 == walks.len() {
                // The last walk stopped where a single walk stops.
                return ends;
            }
        }
        // Step the true walk until it lands on a later part's walk.
        let from_part = part.map_or(0, |p| p + 1);
        part = None;
        while part.is_none() {
            part = (from_part..walks.len())
                .find(|&q| pos == starts[q] || walks[q].binary_search(&pos).is_ok());
            if part.is_some() {
                break;
            }
            match chunker.next_chunk_len(&data[pos..], eof) {
                Some(n) => {
                    pos += n;
                    ends.push(pos);
                }
                None => return ends,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use repo_format::ChunkerParams;

    fn data(len: usize, seed: u64, runs: bool) -> Vec<u8> {
        let mut s = seed | 1;
        (0..len)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                // Long runs of one byte: no cut inside them until `max`.
                if runs && (i / 3000) % 3 == 1 {
                    7
                } else {
                    (s >> 24) as u8
                }
            })
            .collect()
    }

    proptest! {
        #[test]
        fn parts_cut_exactly_where_one_walk_cuts(
            len in 0usize..60_000,
            seed in any::<u64>(),
            chunker_seed in any::<u64>(),
            runs in any::<bool>(),
            eof in any::<bool>(),
            parts in 1usize..12,
            min_exp in 6u32..9,
        ) {
            let min = 1u32 << min_exp;
            let params = ChunkerParams { min, avg: min * 4, max: min * 16 };
            let chunker = Chunker::new(params, chunker_seed).expect("valid parameters");
            let data = data(len, seed, runs);
            let one = walk(&chunker, &data, eof, 0, data.len());
            prop_assert_eq!(chunk_ends_in_parts(&chunker, &data, eof, parts), one);
        }
    }

    #[test]
    fn large_buffers_use_parts_and_agree() {
        let chunker = Chunker::new(ChunkerParams::STREAM, 42).expect("valid parameters");
        let data = data(9 << 20, 3, false);
        let one = walk(&chunker, &data, false, 0, data.len());
        assert!(one.len() > 100);
        assert_eq!(chunk_ends(&chunker, &data, false, true), one);
        assert_eq!(chunk_ends(&chunker, &data, false, false), one);
        assert_eq!(
            chunk_ends_in_parts(&chunker, &data, true, 7),
            walk(&chunker, &data, true, 0, data.len())
        );
    }
}
