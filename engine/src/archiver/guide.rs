//! Cutting a stream where its parent was cut, when the bytes prove it is the same cut.
//!
//! Re-reading an unchanged dump spends about as much on finding chunk boundaries (FastCDC) as
//! on hashing the chunks (keyed BLAKE3). But where a stream repeats its parent, the parent's
//! chunk lengths say where the cuts are: hash the bytes of the parent's next chunk length, and
//! if the id is that chunk's id, the bytes are the chunk's bytes.
//!
//! That cut is then exactly the one FastCDC would make, once two more things hold. A cut
//! depends only on the bytes from the chunk's start ([`repo_format::Chunker::next_chunk_len`]
//! looks at nothing before it and stops at the first match after `min`, or at `max`), but the
//! check that cuts at a position hashes the byte there, the next chunk's first: so the guide
//! asks [`repo_format::Chunker::cut_confirmed`] to redo that one check on the new bytes (65
//! bytes of gear hash instead of the chunk's). And the parent's last chunk may have been cut
//! by the end of its input, where FastCDC also skips a check a longer input gets (at an odd
//! end, the one before it): the chunks in the parent's last `max` bytes are never guessed (the
//! last alone would do; the margin costs at most `max` bytes cut by content), nor is a chunk
//! the window cannot confirm (`cut_confirmed` needs `avg` bytes from its start and the pair of
//! bytes FastCDC checks at its end). The parent must have been cut with the same parameters and the same
//! repository (its chunker seed): [`Guide`] is only made for such a parent. So a stream gets
//! the same chunks whether or not it is guided (tested below against the sequential walk), and
//! dedup does not depend on which snapshot came before.
//!
//! A wrong guess costs the hashes of its batch; batches start at one guess after a miss and
//! double while the guesses hold, so a stream whose changes scatter wastes at most about as
//! much hashing as its guesses saved. After a miss, a window that is mostly new (cut on one
//! thread, while the saver's workers compress) is cut by content one chunk at a time, and the
//! guide follows the parent again from the first chunk the parent has. A window that is
//! mostly known is cut by content on all threads from the miss to its end, and the guide picks
//! up the parent again where its last chunk is one of the parent's.
//!
//! The parent's map keeps each id's first place only, so a chunk that repeats in the parent (a
//! run of zeros) may send the guide to the wrong place; the next guess then misses.

use std::sync::Arc;

use rayon::prelude::*;
use repo_format::{BlobId, Chunker};

use super::bases::ParentChunks;

/// Guesses hashed at once at the start: the parent's first chunks are the likeliest to hold.
const FIRST_BATCH: usize = 8;

/// Largest batch: enough to keep both cores busy on a window.
const MAX_BATCH: usize = 256;

/// Where the new stream is in its parent's chunks.
#[derive(Debug)]
pub struct Guide {
    chunks: Arc<ParentChunks>,
    /// The parent chunk expected next, while the new stream follows the parent.
    next: Option<usize>,
    /// [`Guide::guessable`], once computed.
    guessable: Option<usize>,
    /// Guesses hashed at once next: 1 after a miss, doubled after each batch that holds.
    batch: usize,
    /// Chunks cut by guessing so far.
    guessed: u64,
}

/// One chunk of a window: where it ends, and its id when the guide hashed it already.
pub type GuidedEnd = (usize, Option<BlobId>);

impl Guide {
    /// A guide through `chunks`, expecting the parent's first chunk first. Only for a parent
    /// cut with the chunker this stream is cut with (see the module docs).
    pub fn new(chunks: Arc<ParentChunks>) -> Guide {
        Guide {
            chunks,
            next: Some(0),
            guessable: None,
            batch: FIRST_BATCH,
            guessed: 0,
        }
    }

    /// The chunk ends of `data` (as [`super::cut::chunk_ends`] gives them for the same `data`
    /// and `eof`), with the ids of the chunks the guide hashed, which come first when
    /// `parallel`. `hash` is the blob id function; the caller hashes the others and then calls
    /// [`Guide::after`].
    pub fn cut(
        &mut self,
        chunker: &Chunker,
        data: &[u8],
        eof: bool,
        parallel: bool,
        hash: &(dyn Fn(&[u8]) -> BlobId + Sync),
    ) -> Vec<GuidedEnd> {
        let mut out = Vec::new();
        let mut pos = 0usize;
        loop {
            pos = self.guess(chunker, data, pos, parallel, hash, &mut out);
            if parallel {
                break;
            }
            // Mostly new: one chunk by content, then follow the parent again if it has it.
            let Some(n) = chunker.next_chunk_len(&data[pos..], eof) else {
                return out;
            };
            let id = hash(&data[pos..pos + n]);
            pos += n;
            out.push((pos, Some(id)));
            self.after(&[id]);
        }
        let ends = super::cut::chunk_ends(chunker, &data[pos..], eof, parallel);
        out.extend(ends.into_iter().map(|e| (pos + e, None)));
        out
    }

    /// Guesses from `pos` while they hold, appending them to `out`; returns where they end.
    fn guess(
        &mut self,
        chunker: &Chunker,
        data: &[u8],
        mut pos: usize,
        parallel: bool,
        hash: &(dyn Fn(&[u8]) -> BlobId + Sync),
        out: &mut Vec<GuidedEnd>,
    ) -> usize {
        let guessable = self.guessable(chunker);
        while let Some(k) = self.next {
            let mut guesses: Vec<(usize, usize)> = Vec::with_capacity(self.batch);
            let mut p = pos;
            for i in k..guessable.min(k + self.batch) {
                let len = self.chunks.lens[i] as usize;
                if len == 0 || !chunker.cut_confirmed(&data[p..], len) {
                    break;
                }
                guesses.push((p, p + len));
                p += len;
            }
            if guesses.is_empty() {
                break;
            }
            let ids: Vec<BlobId> = if parallel {
                guesses
                    .par_iter()
                    .map(|&(a, b)| hash(&data[a..b]))
                    .collect()
            } else {
                guesses.iter().map(|&(a, b)| hash(&data[a..b])).collect()
            };
            let good = ids
                .iter()
                .zip(&self.chunks.ids[k..])
                .take_while(|(got, want)| got == want)
                .count();
            out.extend(
                guesses[..good]
                    .iter()
                    .zip(&ids)
                    .map(|(g, id)| (g.1, Some(*id))),
            );
            if good > 0 {
                pos = guesses[good - 1].1;
                self.next = Some(k + good);
                self.guessed += good as u64;
            }
            if good < guesses.len() {
                self.next = None;
                self.batch = 1;
                break;
            }
            self.batch = (self.batch * 2).min(MAX_BATCH);
        }
        pos
    }

    /// How many of the parent's first chunks may be guessed: those before its last `max` bytes
    /// (see the module docs).
    fn guessable(&mut self, chunker: &Chunker) -> usize {
        if let Some(n) = self.guessable {
            return n;
        }
        let max = u64::from(chunker.params().max);
        let mut tail = 0u64;
        let mut n = self.chunks.lens.len();
        while n > 0 && tail <= max {
            n -= 1;
            tail += u64::from(self.chunks.lens[n]);
        }
        self.guessable = Some(n);
        n
    }

    /// How many chunks were cut by guessing so far.
    pub fn guessed(&self) -> u64 {
        self.guessed
    }

    /// Tells the guide the ids of the chunks a window's [`Guide::cut`] left to the caller, in
    /// order: when the last of them is one of the parent's, the next chunk is expected to be
    /// the parent's next; when it is not, the stream has left the parent.
    pub fn after(&mut self, cut_by_content: &[BlobId]) {
        if let Some(last) = cut_by_content.last() {
            self.next = self.chunks.at.get(last).map(|&i| i as usize + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use repo_format::{ChunkerParams, Id};

    fn hash(b: &[u8]) -> BlobId {
        BlobId(Id(*blake3::hash(b).as_bytes()))
    }

    fn text(len: usize, seed: u64) -> Vec<u8> {
        let mut s = seed | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                b"abcdefgh ,\n0123"[(s >> 40) as usize % 15]
            })
            .collect()
    }

    fn chunker() -> Chunker {
        let min = 64;
        Chunker::new(
            ChunkerParams {
                min,
                avg: min * 4,
                max: min * 16,
            },
            7,
        )
        .expect("valid parameters")
    }

    fn parent_of(chunker: &Chunker, data: &[u8]) -> Arc<ParentChunks> {
        let (ids, lens) = chunker
            .chunks(data)
            .map(|r| (hash(&data[r.clone()]), r.len() as u32))
            .unzip();
        Arc::new(ParentChunks::new(ids, lens).expect("a parent"))
    }

    /// Cuts `data` window by window as `save_content` does (each window starts where the last
    /// chunk ended and holds up to `window` bytes): every end, and how many the guide hashed.
    /// (`parallel`: as for a window that is mostly known.) Also returns how many were guessed.
    fn guided(
        chunker: &Chunker,
        guide: &mut Guide,
        data: &[u8],
        window: usize,
        parallel: bool,
    ) -> (Vec<usize>, usize) {
        let mut ends = Vec::new();
        let mut start = 0;
        while start < data.len() {
            let end = (start + window).min(data.len());
            let eof = end == data.len();
            let cut = guide.cut(chunker, &data[start..end], eof, parallel, &hash);
            let mut prev = 0;
            let mut by_content = Vec::new();
            for &(e, id) in &cut {
                match id {
                    Some(id) => {
                        assert_eq!(
                            id,
                            hash(&data[start + prev..start + e]),
                            "the id of the guessed bytes"
                        );
                    }
                    None => by_content.push(hash(&data[start + prev..start + e])),
                }
                prev = e;
            }
            guide.after(&by_content);
            ends.extend(cut.iter().map(|&(e, _)| start + e));
            // A window of at least `max` bytes always ends a chunk.
            assert!(
                !cut.is_empty(),
                "no chunk in a window of {} bytes",
                end - start
            );
            start += prev;
        }
        (ends, guide.guessed() as usize)
    }

    fn sequential(chunker: &Chunker, data: &[u8]) -> Vec<usize> {
        chunker.chunks(data).map(|r| r.end).collect()
    }

    #[derive(Debug, Clone)]
    enum Edit {
        Replace(usize, Vec<u8>),
        Insert(usize, Vec<u8>),
        Delete(usize, usize),
    }

    fn apply(mut data: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
        for e in edits {
            let at = |p: usize| {
                if data.is_empty() {
                    0
                } else {
                    p % (data.len() + 1)
                }
            };
            match e {
                Edit::Replace(p, b) => {
                    let p = at(*p);
                    for (i, x) in b.iter().enumerate() {
                        if let Some(d) = data.get_mut(p + i) {
                            *d = *x;
                        }
                    }
                }
                Edit::Insert(p, b) => {
                    let p = at(*p);
                    data.splice(p..p, b.iter().copied());
                }
                Edit::Delete(p, n) => {
                    let p = at(*p);
                    let end = (p + n).min(data.len());
                    data.drain(p..end);
                }
            }
        }
        data
    }

    fn edit() -> impl Strategy<Value = Edit> {
        let bytes = proptest::collection::vec(any::<u8>(), 1..300);
        prop_oneof![
            (any::<usize>(), bytes.clone()).prop_map(|(p, b)| Edit::Replace(p, b)),
            (any::<usize>(), bytes).prop_map(|(p, b)| Edit::Insert(p, b)),
            (any::<usize>(), 1usize..2000).prop_map(|(p, n)| Edit::Delete(p, n)),
        ]
    }

    proptest! {
        #[test]
        fn a_guided_stream_is_cut_exactly_where_content_cuts_it(
            len in 0usize..40_000,
            seed in any::<u64>(),
            edits in proptest::collection::vec(edit(), 0..6),
            appended in 0usize..3000,
            window_mul in 0u32..15,
            parallel in any::<bool>(),
            odd in any::<bool>(),
            min in 64u32..160,
            avg_mul in 1u32..5,
            max_extra in 0u32..1024,
        ) {
            // Also odd and unusual sizes: `cut_confirmed` must know FastCDC's pairs exactly.
            let chunker = if odd {
                let avg = (min * avg_mul).max(256);
                let params = ChunkerParams { min, avg, max: (avg + max_extra).max(1024) };
                Chunker::new(params, seed).expect("valid parameters")
            } else {
                chunker()
            };
            let max = chunker.params().max as usize;
            let window = max * (1 + window_mul as usize) + window_mul as usize;
            let parent = text(len, seed);
            prop_assume!(!parent.is_empty());
            let mut new = apply(parent.clone(), &edits);
            new.extend(text(appended, seed ^ 0x55));
            let mut guide = Guide::new(parent_of(&chunker, &parent));
            let (ends, _) = guided(&chunker, &mut guide, &new, window, parallel);
            prop_assert_eq!(ends, sequential(&chunker, &new));
        }
    }

    #[test]
    fn an_unchanged_stream_is_guessed_but_for_its_last_max_bytes() {
        let chunker = chunker();
        let data = text(200_000, 9);
        let parent = parent_of(&chunker, &data);
        let n = parent.ids.len();
        assert!(n > 300, "{n} chunks");
        let mut guide = Guide::new(parent);
        let (ends, guessed) = guided(&chunker, &mut guide, &data, 16 << 10, true);
        assert_eq!(ends, sequential(&chunker, &data));
        // The chunks within `max` (1024) bytes of the end are cut by content: at most 1024/64.
        assert!(
            (n - 17..n).contains(&guessed),
            "{guessed} of {n} chunks guessed"
        );
    }

    #[test]
    fn the_parents_last_chunk_is_not_taken_for_a_cut_when_the_stream_goes_on() {
        let chunker = chunker();
        let data = text(5_000, 11);
        let mut longer = data.clone();
        longer.extend(text(5_000, 12));
        let mut guide = Guide::new(parent_of(&chunker, &data));
        let (ends, _) = guided(&chunker, &mut guide, &longer, 1 << 20, false);
        assert_eq!(ends, sequential(&chunker, &longer));
    }

    #[test]
    fn a_stream_that_leaves_its_parent_is_picked_up_again_at_a_shared_chunk() {
        let chunker = chunker();
        let data = text(300_000, 13);
        let mut edited = data.clone();
        // Change a byte early on: the guide loses the parent there and finds it again.
        edited[3_000] ^= 0x20;
        let n = parent_of(&chunker, &data).ids.len();
        let mut guide = Guide::new(parent_of(&chunker, &data));
        let (ends, guessed) = guided(&chunker, &mut guide, &edited, 32 << 10, true);
        assert_eq!(ends, sequential(&chunker, &edited));
        // Everything after the first window that cut by content again is guessed.
        assert!(guessed > n * 8 / 10, "{guessed} of {n} guessed");
    }

    #[test]
    fn a_mostly_new_window_follows_the_parent_again_within_the_window() {
        let chunker = chunker();
        let data = text(300_000, 14);
        let mut edited = data.clone();
        for at in (5_000..300_000).step_by(60_000) {
            edited[at] ^= 0x20;
        }
        let n = parent_of(&chunker, &data).ids.len();
        // One window for the whole stream: cut on one thread, the guide rejoins after each
        // edit; on all threads it cuts the rest of the window by content after the first.
        let mut one = Guide::new(parent_of(&chunker, &data));
        let (ends, guessed) = guided(&chunker, &mut one, &edited, 1 << 20, false);
        assert_eq!(ends, sequential(&chunker, &edited));
        assert!(
            guessed > n * 8 / 10,
            "{guessed} of {n} guessed on one thread"
        );
        let mut all = Guide::new(parent_of(&chunker, &data));
        let (ends, guessed) = guided(&chunker, &mut all, &edited, 1 << 20, true);
        assert_eq!(ends, sequential(&chunker, &edited));
        assert!(guessed < n / 10, "{guessed} of {n} guessed on all threads");
    }
}
