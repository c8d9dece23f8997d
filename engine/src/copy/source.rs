//! Reading a file's content from the source repository, every blob verified, for cutting again
//! at the destination.
//!
//! ```text
//! small files (<= SMALL_FILE):  a group of up to GROUP_FILES / GROUP_BYTES loaded at once (their
//!                               blobs' pack reads planned together), then cut one by one
//! large files:                  reader thread: dump_content (ranged reads, verified, in order)
//!                                 --> bounded channel of PIPE_CHUNK pieces -->
//!                               this thread: save_content (cut, hash, dedup, hand to the saver)
//! ```
//!
//! Memory stays bounded: a group holds at most [`GROUP_BYTES`] of small files; a large file is
//! never held whole (the reader's windows, the channel and the cutter's buffer are fixed sizes).

use std::io::{self, Read, Write};

use crossbeam_channel::{Receiver, Sender};
use repo_format::{Chunker, Node, RepoKeys};

use crate::archiver::content::{ContentError, SavedContent, save_content};
use crate::archiver::saver::BlobSaver;
use crate::error::{Error, ErrorKind, Result};
use crate::progress::{NoProgress, Progress};
use crate::repository::Repository;
use crate::restorer::dump_content;

/// Files up to this size are loaded whole, several at once.
pub(super) const SMALL_FILE: u64 = 4 << 20;

/// Plaintext bytes of small files loaded at once.
const GROUP_BYTES: u64 = 32 << 20;

/// Small files loaded at once.
const GROUP_FILES: usize = 1024;

/// Bytes per message from the reader thread to the cutter.
const PIPE_CHUNK: usize = 1 << 20;

/// Messages in flight between the reader thread and the cutter.
const PIPE_DEPTH: usize = 4;

/// Splits `sizes` (of small files, in order) into groups to load together.
pub(super) fn groups(sizes: &[u64]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0usize, 0u64);
    for (i, &size) in sizes.iter().enumerate() {
        if i > start && (bytes + size > GROUP_BYTES || i - start >= GROUP_FILES) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

/// Cuts and stores content already in memory.
pub(super) fn save_bytes(
    saver: &BlobSaver<'_>,
    keys: &RepoKeys,
    chunker: &Chunker,
    mut data: &[u8],
    progress: &dyn Progress,
) -> Result<SavedContent> {
    save_content(saver, keys, chunker, None, &mut data, progress).map_err(|e| match e {
        ContentError::Repo(e) => e,
        // Reading a slice cannot fail; keep the error anyway rather than assume.
        ContentError::Read(e) => Error::io("cannot read a copied file's content", e),
    })
}

/// Streams a large file's content from `src` through the cutter into `saver`.
pub(super) fn save_streamed(
    src: &Repository,
    node: &Node,
    saver: &BlobSaver<'_>,
    keys: &RepoKeys,
    chunker: &Chunker,
    progress: &dyn Progress,
) -> Result<SavedContent> {
    std::thread::scope(|scope| {
        let (tx, rx) = crossbeam_channel::bounded::<Piece>(PIPE_DEPTH);
        let reader = scope.spawn(move || {
            let mut w = PipeWriter {
                tx,
                buf: Vec::with_capacity(PIPE_CHUNK),
            };
            let n = dump_content(src, node, &mut w, &NoProgress)?;
            w.end()?;
            Ok::<u64, Error>(n)
        });
        let mut pipe = PipeReader {
            rx,
            current: Vec::new(),
            pos: 0,
            ended: false,
        };
        let saved = save_content(saver, keys, chunker, None, &mut pipe, progress);
        // Hang up first, so a reader blocked on a full channel sees the end and stops.
        drop(pipe);
        let read = reader.join().unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::Io,
                "the source reader thread panicked",
            ))
        });
        match (saved, read) {
            (Ok(saved), Ok(_)) => Ok(saved),
            // The reader's error says what went wrong at the source; the cutter only saw the
            // pipe close early.
            (Err(ContentError::Read(_)), Err(e)) => Err(e),
            (Err(ContentError::Repo(e)), _) => Err(e),
            (Err(ContentError::Read(e)), Ok(_)) => {
                Err(Error::io("the copied file's content stream broke off", e))
            }
            (Ok(_), Err(e)) => Err(e),
        }
    })
}

/// One message of the pipe: a piece of content, or the end of a complete read.
enum Piece {
    Data(Vec<u8>),
    End,
}

struct PipeWriter {
    tx: Sender<Piece>,
    buf: Vec<u8>,
}

fn hung_up() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the destination side stopped")
}

impl PipeWriter {
    fn send_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = std::mem::replace(&mut self.buf, Vec::with_capacity(PIPE_CHUNK));
        self.tx.send(Piece::Data(piece)).map_err(|_| hung_up())
    }

    /// Sends what is buffered and the end marker: the content was read completely.
    fn end(mut self) -> Result<()> {
        self.send_buf()
            .and_then(|()| self.tx.send(Piece::End).map_err(|_| hung_up()))
            .map_err(|e| Error::io("cannot pass the content on", e))
    }
}

impl Write for PipeWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = PIPE_CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= PIPE_CHUNK {
            self.send_buf()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buf()
    }
}

struct PipeReader {
    rx: Receiver<Piece>,
    current: Vec<u8>,
    pos: usize,
    ended: bool,
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Piece::Data(d)) => {
                    self.current = d;
                    self.pos = 0;
                }
                Ok(Piece::End) => self.ended = true,
                // The reader stopped without the end marker: it failed (its error is reported).
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "reading the source content failed",
                    ));
                }
            }
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_respect_both_bounds() {
        assert!(groups(&[]).is_empty());
        let ones = vec![1u64; 2 * GROUP_FILES + 8];
        let g = groups(&ones);
        let n = GROUP_FILES;
        assert_eq!(g, vec![0..n, n..2 * n, 2 * n..2 * n + 8]);
        let big = vec![SMALL_FILE; 20];
        let g = groups(&big);
        assert!(g.iter().all(|r| r.len() as u64 * SMALL_FILE <= GROUP_BYTES));
        assert_eq!(g.iter().map(|r| r.len()).sum::<usize>(), 20);
    }

    #[test]
    fn pipe_passes_bytes_in_order_and_tells_end_from_failure() {
        let data: Vec<u8> = (0..3 * PIPE_CHUNK + 17).map(|i| (i % 251) as u8).collect();
        let (tx, rx) = crossbeam_channel::bounded(PIPE_DEPTH);
        let sent = data.clone();
        let t = std::thread::spawn(move || {
            let mut w = PipeWriter {
                tx,
                buf: Vec::new(),
            };
            w.write_all(&sent).expect("write");
            w.end().expect("end");
        });
        let mut r = PipeReader {
            rx,
            current: Vec::new(),
            pos: 0,
            ended: false,
        };
        let mut got = Vec::new();
        r.read_to_end(&mut got).expect("read");
        t.join().expect("join");
        assert_eq!(got, data);

        // A writer that goes away without `end` is a failure, not an end of file.
        let (tx, rx) = crossbeam_channel::bounded(PIPE_DEPTH);
        let mut w = PipeWriter {
            tx,
            buf: Vec::new(),
        };
        w.write_all(b"partial").expect("write");
        w.flush().expect("flush");
        drop(w);
        let mut r = PipeReader {
            rx,
            current: Vec::new(),
            pos: 0,
            ended: false,
        };
        let mut got = Vec::new();
        assert!(r.read_to_end(&mut got).is_err());
        assert_eq!(got, b"partial");
    }
}
