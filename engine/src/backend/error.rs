//! [`BackendError`]: what failed, on which object, where, and why.

use std::error::Error as StdError;
use std::fmt;

/// The broad class of a [`BackendError`], for callers that react to it (retry, skip, stop).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendErrorKind {
    /// The object (or a directory that should hold it) does not exist.
    NotFound,
    /// A create-only write found the object already there; it was left untouched.
    AlreadyExists,
    /// The storage refused access (permissions, credentials, a read-only file system).
    PermissionDenied,
    /// The storage failed to do the operation (I/O or network error); retrying may help.
    Io,
    /// Anything else: an invalid name or range, an unsupported location, a bug.
    Other,
}

impl BackendErrorKind {
    /// How the kind reads in a message.
    fn describe(self) -> &'static str {
        match self {
            BackendErrorKind::NotFound => "not found",
            BackendErrorKind::AlreadyExists => "already exists",
            BackendErrorKind::PermissionDenied => "permission denied",
            BackendErrorKind::Io => "I/O error",
            BackendErrorKind::Other => "failed",
        }
    }
}

/// An error from a [`Backend`](super::Backend) operation.
///
/// Its message names the operation, the object and the storage, e.g.
/// `cannot read snapshots/ab12…: not found at /srv/repo`; the underlying error (an
/// [`std::io::Error`], an `object_store::Error`) is kept as [`source`](StdError::source) and is
/// not repeated in the message.
#[derive(Debug)]
pub struct BackendError {
    kind: BackendErrorKind,
    op: &'static str,
    path: String,
    location: String,
    detail: Option<String>,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

impl BackendError {
    /// A new error: `op` is a verb (`read`, `write`, `list`, `delete`, `stat`, `open`), `path`
    /// the object's path in the repository (may be empty), `location` the backend's location.
    pub fn new(
        kind: BackendErrorKind,
        op: &'static str,
        path: impl Into<String>,
        location: impl Into<String>,
    ) -> BackendError {
        BackendError {
            kind,
            op,
            path: path.into(),
            location: location.into(),
            detail: None,
            source: None,
        }
    }

    /// An error from an I/O error, with the kind mapped from [`std::io::ErrorKind`] (not a
    /// directory, read-only file system and the like get an explaining detail).
    pub fn from_io(
        op: &'static str,
        path: impl Into<String>,
        location: impl Into<String>,
        err: std::io::Error,
    ) -> BackendError {
        use std::io::ErrorKind as K;
        let (kind, detail) = match err.kind() {
            K::NotFound => (BackendErrorKind::NotFound, None),
            K::AlreadyExists => (BackendErrorKind::AlreadyExists, None),
            K::PermissionDenied => (BackendErrorKind::PermissionDenied, None),
            K::ReadOnlyFilesystem => (
                BackendErrorKind::PermissionDenied,
                Some("the file system is read-only"),
            ),
            K::NotADirectory => (
                BackendErrorKind::Io,
                Some("a component of the path is not a directory"),
            ),
            K::IsADirectory => (BackendErrorKind::Io, Some("it is a directory")),
            K::StorageFull => (BackendErrorKind::Io, Some("no space left on the device")),
            K::QuotaExceeded => (BackendErrorKind::Io, Some("disk quota exceeded")),
            _ => (BackendErrorKind::Io, None),
        };
        let mut e = BackendError::new(kind, op, path, location).with_source(err);
        e.detail = detail.map(str::to_owned);
        e
    }

    /// Adds a plain-words explanation shown after the kind.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> BackendError {
        self.detail = Some(detail.into());
        self
    }

    /// Attaches the underlying error.
    #[must_use]
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn StdError + Send + Sync + 'static>>,
    ) -> BackendError {
        self.source = Some(source.into());
        self
    }

    /// Replaces the location shown in the message.
    #[must_use]
    pub fn with_location(mut self, location: impl Into<String>) -> BackendError {
        self.location = location.into();
        self
    }

    /// The class of the error.
    pub fn kind(&self) -> BackendErrorKind {
        self.kind
    }

    /// The operation that failed (`read`, `write`, …).
    pub fn op(&self) -> &'static str {
        self.op
    }

    /// The object's path in the repository, e.g. `data/ab/ab12…` (empty when not about one object).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The backend's location.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// True for [`BackendErrorKind::NotFound`].
    pub fn is_not_found(&self) -> bool {
        self.kind == BackendErrorKind::NotFound
    }

    /// True for [`BackendErrorKind::AlreadyExists`].
    pub fn is_already_exists(&self) -> bool {
        self.kind == BackendErrorKind::AlreadyExists
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot {}", self.op)?;
        if !self.path.is_empty() {
            write!(f, " {}", self.path)?;
        }
        match (&self.detail, self.kind) {
            (Some(d), BackendErrorKind::Other) => write!(f, ": {d}")?,
            (Some(d), kind) => write!(f, ": {}: {d}", kind.describe())?,
            (None, kind) => write!(f, ": {}", kind.describe())?,
        }
        if !self.location.is_empty() {
            write!(f, " at {}", self.location)?;
        }
        Ok(())
    }
}

impl StdError for BackendError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_says_what_and_where() {
        let e = BackendError::from_io(
            "read",
            "snapshots/ab12",
            "/srv/repo",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert_eq!(e.kind(), BackendErrorKind::NotFound);
        assert_eq!(
            e.to_string(),
            "cannot read snapshots/ab12: not found at /srv/repo"
        );
        assert!(e.source().is_some());

        let e = BackendError::new(BackendErrorKind::Other, "read", "data/ab/ab12", "memory://")
            .with_detail("range 0..9 is past the end of the 4-byte object");
        assert_eq!(
            e.to_string(),
            "cannot read data/ab/ab12: range 0..9 is past the end of the 4-byte object at memory://"
        );
        assert!(e.source().is_none());
    }

    #[test]
    fn io_kinds_map() {
        use std::io::ErrorKind as K;
        let cases = [
            (K::NotFound, BackendErrorKind::NotFound),
            (K::AlreadyExists, BackendErrorKind::AlreadyExists),
            (K::PermissionDenied, BackendErrorKind::PermissionDenied),
            (K::ReadOnlyFilesystem, BackendErrorKind::PermissionDenied),
            (K::NotADirectory, BackendErrorKind::Io),
            (K::Interrupted, BackendErrorKind::Io),
        ];
        for (io, kind) in cases {
            let e = BackendError::from_io("write", "keys/a", "/r", std::io::Error::from(io));
            assert_eq!(e.kind(), kind, "{io:?}");
        }
        let e = BackendError::from_io("write", "keys/a", "/r", K::NotADirectory.into());
        assert!(e.to_string().contains("not a directory"), "{e}");
    }
}
