//! Progress reporting. The engine never prints: it calls a [`Progress`] the caller supplies
//! (the CLI draws a bar on a terminal and stays quiet when piped).
//!
//! Every method has an empty default, so an implementation overrides only what it shows.
//! Methods are called from several threads at once and must be cheap.

use std::path::Path;

/// Receives progress events from long operations (backup, restore, dump).
pub trait Progress: Send + Sync {
    /// Whether [`Progress::set_total`] is shown: when not, work done only to learn the total
    /// (a backup's scan of its paths) is skipped.
    fn shows_totals(&self) -> bool {
        false
    }
    /// The operation's total size, when known (a scanner may report it while work runs).
    fn set_total(&self, _files: u64, _bytes: u64) {}
    /// A file is being read or written.
    fn file_started(&self, _path: &Path) {}
    /// A file is finished.
    fn file_done(&self) {}
    /// `n` more bytes were read (backup) or written (restore).
    fn bytes_done(&self, _n: u64) {}
    /// Something went wrong with one item; the operation goes on.
    fn warning(&self, _path: &Path, _message: &str) {}
    /// A line (without its newline) that a command run by the operation (a dump command, a
    /// hook) wrote to its standard error.
    fn command_stderr(&self, _line: &str) {}
}

/// A [`Progress`] that shows nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
