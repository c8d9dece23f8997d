//! The engine's error type: what went wrong, where, and the cause underneath.
//!
//! Errors keep their source chain (a [`BackendError`], a [`FormatError`], an I/O error) so the
//! CLI can print every layer; [`Error::kind`] lets callers decide (exit codes, retries) without
//! matching on strings.

use std::fmt;

use repo_format::FormatError;

use crate::backend::BackendError;
use crate::index::cache::CacheError;

/// Broad classes of failure, for exit codes and for callers that react differently to each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The storage failed or refused (I/O, permissions, network).
    Backend,
    /// No key file opens with the given password.
    WrongPassword,
    /// Repository bytes are damaged, truncated, tampered with or of an unknown version.
    Corrupt,
    /// Something the user named does not exist (snapshot, path, repository).
    NotFound,
    /// The user asked for something that cannot be done as asked.
    InvalidInput,
    /// The repository already exists (init).
    AlreadyExists,
    /// Local I/O outside the repository (source files, restore target, cache).
    Io,
    /// The local index cache failed; deleting it fixes this.
    Cache,
    /// A child command (e.g. `--stdin-from-command`) failed.
    Command,
}

/// An engine error: a message saying what was being done, a kind, and the cause.
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error without an underlying cause.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// A new error wrapping `source`.
    pub fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Error {
            kind,
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// A copy with the same kind, message and causes' texts: one failure reported to
    /// several threads.
    pub fn duplicate(&self) -> Error {
        let mut texts = Vec::new();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            texts.push(c.to_string());
            cause = c.source();
        }
        let source = texts.into_iter().rev().fold(None, |inner, text| {
            Some(Box::new(CopiedCause {
                text,
                source: inner,
            }))
        });
        Error {
            kind: self.kind,
            message: self.message.clone(),
            source: source.map(|s| s as Box<dyn std::error::Error + Send + Sync + 'static>),
        }
    }

    /// What class of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The top-level message, without causes.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Wraps a repository-format error met while doing `what`.
    pub fn format(what: impl Into<String>, e: FormatError) -> Self {
        Error::with_source(ErrorKind::Corrupt, what, e)
    }

    /// Wraps a backend error met while doing `what`.
    pub fn backend(what: impl Into<String>, e: BackendError) -> Self {
        Error::with_source(Self::backend_kind(&e), what, e)
    }

    /// The kind a backend error maps to: missing and existing objects keep their meaning,
    /// everything else is a storage failure.
    pub fn backend_kind(e: &BackendError) -> ErrorKind {
        match e.kind() {
            crate::backend::BackendErrorKind::NotFound => ErrorKind::NotFound,
            crate::backend::BackendErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
            _ => ErrorKind::Backend,
        }
    }

    /// Wraps a local I/O error met while doing `what` (name the path in `what`).
    pub fn io(what: impl Into<String>, e: std::io::Error) -> Self {
        Error::with_source(ErrorKind::Io, what, e)
    }

    /// Wraps an index cache error.
    pub fn cache(what: impl Into<String>, e: CacheError) -> Self {
        Error::with_source(ErrorKind::Cache, what, e)
    }
}

/// One cause of a [`Error::duplicate`]: the original's text, and its own cause.
#[derive(Debug)]
struct CopiedCause {
    text: String,
    source: Option<Box<CopiedCause>>,
}

impl fmt::Display for CopiedCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for CopiedCause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            write!(f, "\n  caused by: {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duplicate_keeps_kind_message_and_every_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left");
        let inner = Error::with_source(ErrorKind::Backend, "cannot write pack 1a2b", io);
        let outer = Error::with_source(ErrorKind::Backend, "cannot store a pack", inner);
        let copy = outer.duplicate();
        assert_eq!(copy.kind(), ErrorKind::Backend);
        assert_eq!(format!("{copy:?}"), format!("{outer:?}"));
        assert!(format!("{copy:?}").contains("no space left"));
        let plain = Error::new(ErrorKind::Io, "alone").duplicate();
        assert!(std::error::Error::source(&plain).is_none());
        assert_eq!(plain.message(), "alone");
    }
}
