//! Turns a byte stream into a file's [`Content`]: read, cut with FastCDC, hash, and hand new
//! blobs to the [`BlobSaver`].
//!
//! The producer thread does the cheap, order-dependent work (cutting at ~2 GB/s, keyed BLAKE3
//! at ~2.7 GB/s) so a file's blob ids come out in order without reassembly; compression and
//! encryption, the expensive part, run on the saver's workers. The read buffer is reused and
//! its size is bounded, so memory does not depend on the stream's length.

use std::io::{ErrorKind as IoKind, Read};

use rayon::prelude::*;
use repo_format::{BlobId, BlobType, Chunker, Content, ContentBuilder, RepoKeys};

use super::guide::Guide;
use super::saver::{BlobSaver, Chunk};
use crate::error::{Error, Result};
use crate::progress::Progress;

/// Smallest read buffer: large reads amortise syscalls on big files and pipes.
const MIN_BUFFER: usize = 4 << 20;

/// The buffer's size before the first read: doubled as needed up to its full size.
const FIRST_BUFFER: usize = 16 << 10;

/// Why saving a stream's content stopped.
#[derive(Debug)]
pub enum ContentError {
    /// Reading the source failed (a warning for one file, fatal for stdin).
    Read(std::io::Error),
    /// The repository side failed (always fatal).
    Repo(Error),
}

impl From<Error> for ContentError {
    fn from(e: Error) -> Self {
        ContentError::Repo(e)
    }
}

/// What one stream turned into.
#[derive(Debug)]
pub struct SavedContent {
    /// The node's content.
    pub content: Content,
    /// Bytes read from the source.
    pub size: u64,
}

/// Reads `reader` to its end and stores its content; memory stays bounded by two buffers.
/// With a `guide` (a stream's parent), stretches that repeat the parent are cut where it was
/// (same cuts, less work: see `guide`).
///
/// A stream that fills the first buffer is pipelined: while the pool cuts, hashes and looks up
/// one block, this thread reads the next into a second buffer. Each buffer keeps `max` bytes of
/// room in front, where the previous block's unfinished chunk is copied before its turn.
pub fn save_content(
    saver: &BlobSaver<'_>,
    keys: &RepoKeys,
    chunker: &Chunker,
    mut guide: Option<&mut Guide>,
    reader: &mut dyn Read,
    progress: &dyn Progress,
) -> std::result::Result<SavedContent, ContentError> {
    let max = chunker.params().max as usize;
    let full = (2 * max).max(MIN_BUFFER);
    // The first buffer grows to `full` while the first fill reads: a small file (most of a
    // directory tree) costs a small zeroed buffer, not `full` bytes of memset each.
    let mut cur = Window {
        buf: vec![0u8; FIRST_BUFFER.min(full)],
        start: 0,
        end: 0,
        eof: false,
    };
    (cur.end, cur.eof) = fill(reader, &mut cur.buf, 0, full).map_err(ContentError::Read)?;
    let head = max;
    let block = full - head; // ≥ max: every window that is not the last holds a whole chunk
    let mut spare: Option<Vec<u8>> = None;
    // Whether to finish this window before reading the next (see below).
    let mut sequential = true;
    let mut builder = ContentBuilder::new();
    let mut size = 0u64;
    let mut find = |data: &[u8], eof: bool, parallel: bool| {
        find_new(
            saver,
            keys,
            chunker,
            guide.as_deref_mut(),
            data,
            eof,
            parallel,
        )
    };
    loop {
        let data = &cur.buf[cur.start..cur.end];
        let (found, next) = if cur.eof {
            (find(data, true, !sequential), None)
        } else if sequential {
            // The first window is finished before reading on: a file that changes just after
            // its first read is read again from there (what `limits.rs` tests), and a file
            // that fits in two windows costs no thread. So is a window after one with more
            // than an eighth new: compressing is then the bottleneck, and the saver's workers
            // do better with both cores than with a reader and cutters beside them (1 GiB of
            // dump, 3 runs each: day 1 2.0-2.3 s and day 2 1.4-1.5 s either way, where reading
            // ahead always gave day 2 1.6-1.8 s; unchanged input 0.8-0.9 s against 1.0-1.3 s).
            (find(data, false, false), None)
        } else {
            let mut nb = spare.take().unwrap_or_else(|| vec![0u8; head + block]);
            let find = &mut find;
            let (found, read) = std::thread::scope(|s| {
                let finder = s.spawn(move || find(data, false, true));
                let read = fill(reader, &mut nb, head, head + block);
                let found = finder.join().unwrap_or_else(|_| {
                    Err(Error::new(
                        crate::error::ErrorKind::Io,
                        "the chunking thread panicked",
                    ))
                });
                (found, read)
            });
            // A read error is returned only after this window's blobs are queued: the saver
            // counts them as pending, and a later file with the same chunk relies on that.
            (found, Some(read.map(|(end, eof)| (nb, end, eof))))
        };
        let found = found?;
        let seen: Vec<(BlobId, bool)> = found.chunks.iter().map(|c| (c.id, c.new)).collect();
        let bases = saver.bases_for(&seen)?;
        let chunks: Vec<Chunk<'_>> = found
            .chunks
            .iter()
            .filter(|c| c.new)
            .zip(bases)
            .map(|(c, (base, plain_only))| Chunk {
                id: c.id,
                data: &data[c.start..c.end],
                plain_only,
                base,
            })
            .collect();
        let new_bytes: usize = chunks.iter().map(|c| c.data.len()).sum();
        sequential = 8 * new_bytes > data.len();
        saver.save_chunks(chunks)?;
        for c in &found.chunks {
            if let Some((list_id, list)) = builder
                .push(keys, c.id)
                .map_err(|e| Error::format("cannot build a content list", e))?
            {
                save_list(saver, list_id, list)?;
            }
            let n = (c.end - c.start) as u64;
            size += n;
            progress.bytes_done(n);
        }
        let (mut nb, end, eof) = match next {
            Some(read) => read.map_err(ContentError::Read)?,
            None if cur.eof => break,
            None => {
                let mut nb = spare.take().unwrap_or_else(|| vec![0u8; head + block]);
                let (end, eof) =
                    fill(reader, &mut nb, head, head + block).map_err(ContentError::Read)?;
                (nb, end, eof)
            }
        };
        // The unfinished chunk goes in front of the next block (shorter than `max`, see
        // `Chunker::next_chunk_len`).
        let tail = &data[found.consumed..];
        let start = head - tail.len();
        nb[start..head].copy_from_slice(tail);
        let old = std::mem::replace(
            &mut cur,
            Window {
                buf: nb,
                start,
                end,
                eof,
            },
        );
        if old.buf.len() == head + block {
            spare = Some(old.buf);
        }
    }
    let (content, last) = builder
        .finish(keys)
        .map_err(|e| Error::format("cannot build a content list", e))?;
    if let Some((list_id, list)) = last {
        save_list(saver, list_id, list)?;
    }
    Ok(SavedContent { content, size })
}

/// Bytes read and not yet cut: `buf[start..end]`; `eof` when nothing follows them.
struct Window {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
}

/// Reads into `buf[from..]` until `buf` holds `cap` bytes or the input ends, growing `buf`
/// (doubling) up to `cap`. Returns the end of the data and whether the input ended.
fn fill(
    reader: &mut dyn Read,
    buf: &mut Vec<u8>,
    from: usize,
    cap: usize,
) -> std::io::Result<(usize, bool)> {
    let mut end = from;
    loop {
        if end == buf.len() {
            if buf.len() >= cap {
                return Ok((end, false));
            }
            buf.resize((buf.len() * 2).clamp(1, cap), 0);
        }
        match reader.read(&mut buf[end..]) {
            Ok(0) => return Ok((end, true)),
            Ok(n) => end += n,
            Err(e) if e.kind() == IoKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// One chunk of a window: `data[start..end]`, its id, and whether the saver wants it.
struct Found {
    start: usize,
    end: usize,
    id: BlobId,
    new: bool,
}

/// A window's chunks, and how many of its bytes they cover.
struct Cut {
    chunks: Vec<Found>,
    consumed: usize,
}

/// Cuts every chunk `data` decides (with `parallel`, on all threads, see `cut`; with a guide,
/// where the parent was cut as far as the stream repeats it), hashes them in parallel and asks
/// the saver about them in one batch. While most chunks are new the saver's workers are the
/// bottleneck, and cutting on one thread leaves them more of the CPU (measured: 2.0 s against
/// 2.2 s for 1 GiB of new dump).
fn find_new(
    saver: &BlobSaver<'_>,
    keys: &RepoKeys,
    chunker: &Chunker,
    mut guide: Option<&mut Guide>,
    data: &[u8],
    eof: bool,
    parallel: bool,
) -> Result<Cut> {
    let hash = |b: &[u8]| keys.blob_id(b);
    let (ends, known): (Vec<usize>, Vec<Option<BlobId>>) = match guide.as_deref_mut() {
        Some(g) => g
            .cut(chunker, data, eof, parallel, &hash)
            .into_iter()
            .unzip(),
        None => {
            let ends = super::cut::chunk_ends(chunker, data, eof, parallel);
            let n = ends.len();
            (ends, vec![None; n])
        }
    };
    let ranges: Vec<(usize, usize)> = ends
        .iter()
        .scan(0usize, |start, &end| {
            let r = (*start, end);
            *start = end;
            Some(r)
        })
        .collect();
    let ids: Vec<BlobId> = ranges
        .par_iter()
        .zip(&known)
        .map(|(&(a, b), k)| k.unwrap_or_else(|| hash(&data[a..b])))
        .collect();
    if let Some(g) = guide {
        // The guide's guesses come first; the chunks after them were cut by content.
        g.after(&ids[known.iter().take_while(|k| k.is_some()).count()..]);
    }
    let needed = saver.need_many(&ids)?;
    Ok(Cut {
        consumed: ends.last().copied().unwrap_or(0),
        chunks: ranges
            .into_iter()
            .zip(ids)
            .zip(needed)
            .map(|(((start, end), id), new)| Found {
                start,
                end,
                id,
                new,
            })
            .collect(),
    })
}

fn save_list(saver: &BlobSaver<'_>, id: BlobId, list: Vec<u8>) -> Result<()> {
    if saver.need(&id)? {
        saver.save(BlobType::Tree, id, list)?;
    }
    Ok(())
}

/// Every blob a content needs, for checking that a parent's file can be reused: the data blob
/// ids of a direct content, the content list ids of an indirect one.
pub fn content_ids(content: &Content) -> &[BlobId] {
    match content {
        Content::Direct(ids) | Content::Indirect(ids) => ids,
    }
}

/// Whether every blob of `content` is stored or on its way. For an indirect content this
/// checks the content lists; their data blobs were stored before them, in the same backup,
/// and stay indexed unless an index file is damaged: then the content is not reused at all.
pub fn content_known(
    repo: &crate::repository::Repository,
    saver: &BlobSaver<'_>,
    content: &Content,
) -> Result<bool> {
    if matches!(content, Content::Indirect(_)) && !repo.damaged_index_files().is_empty() {
        return Ok(false);
    }
    for id in content_ids(content) {
        if !saver.known(id)? {
            return Ok(false);
        }
    }
    if let Content::Indirect(lists) = content {
        saver.note_indirect(lists);
    }
    Ok(true)
}
