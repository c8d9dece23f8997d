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

use super::saver::{BlobSaver, Job};
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

/// Reads `reader` to its end and stores its content; memory stays bounded by the buffer.
pub fn save_content(
    saver: &BlobSaver<'_>,
    keys: &RepoKeys,
    chunker: &Chunker,
    reader: &mut dyn Read,
    progress: &dyn Progress,
) -> std::result::Result<SavedContent, ContentError> {
    let max = chunker.params().max as usize;
    let full = (2 * max).max(MIN_BUFFER);
    // The buffer grows to `full` while the first fill reads: a small file (most of a directory
    // tree) costs a small zeroed buffer, not `full` bytes of memset each.
    let mut buf = vec![0u8; FIRST_BUFFER.min(full)];
    let (mut start, mut end, mut eof) = (0usize, 0usize, false);
    let mut builder = ContentBuilder::new();
    let mut size = 0u64;
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    loop {
        if !eof && end - start < max {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
            while !eof {
                if end == buf.len() {
                    if buf.len() >= full {
                        break;
                    }
                    buf.resize((buf.len() * 2).min(full), 0);
                }
                match reader.read(&mut buf[end..]) {
                    Ok(0) => eof = true,
                    Ok(n) => end += n,
                    Err(e) if e.kind() == IoKind::Interrupted => {}
                    Err(e) => return Err(ContentError::Read(e)),
                }
            }
        }
        // Cut every chunk the buffer decides, then hash them in parallel and look them up in
        // one batch: cutting is sequential by nature, the rest is not.
        cuts.clear();
        let mut pos = start;
        while pos < end {
            match chunker.next_chunk_len(&buf[pos..end], eof) {
                Some(n) => {
                    cuts.push((pos, n));
                    pos += n;
                }
                None => break,
            }
        }
        if cuts.is_empty() {
            if eof {
                break;
            }
            continue;
        }
        let ids: Vec<BlobId> = cuts
            .par_iter()
            .map(|&(p, n)| keys.blob_id(&buf[p..p + n]))
            .collect();
        let needed = saver.need_many(&ids)?;
        let jobs: Vec<Job> = cuts
            .iter()
            .zip(&ids)
            .zip(&needed)
            .filter(|(_, need)| **need)
            .map(|((&(p, n), id), _)| Job {
                blob_type: BlobType::Data,
                id: *id,
                data: buf[p..p + n].to_vec(),
            })
            .collect();
        saver.save_many(jobs)?;
        for (&(_, n), id) in cuts.iter().zip(&ids) {
            if let Some((list_id, list)) = builder
                .push(keys, *id)
                .map_err(|e| Error::format("cannot build a content list", e))?
            {
                save_list(saver, list_id, list)?;
            }
            size += n as u64;
            progress.bytes_done(n as u64);
        }
        start = pos;
    }
    let (content, last) = builder
        .finish(keys)
        .map_err(|e| Error::format("cannot build a content list", e))?;
    if let Some((list_id, list)) = last {
        save_list(saver, list_id, list)?;
    }
    Ok(SavedContent { content, size })
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
