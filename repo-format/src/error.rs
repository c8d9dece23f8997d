//! The one error type of this crate: what is wrong with the bytes.
//!
//! Every variant names the object being decoded (`what`, e.g. `"snapshot"`) so a message read in
//! a log says which object is damaged without a backtrace. Decoders never panic; they return one
//! of these.

/// Why bytes could not be decoded (or a value could not be encoded).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The input ended before a field it must contain.
    #[error("{what}: truncated: needed {needed} bytes, got {got}")]
    Truncated {
        /// The object or field being read.
        what: &'static str,
        /// How many bytes the next field needs.
        needed: usize,
        /// How many bytes were left.
        got: usize,
    },
    /// The object does not start with the magic bytes of its kind.
    #[error("{what}: bad magic bytes (not a cairn {what})")]
    BadMagic {
        /// The object being read.
        what: &'static str,
    },
    /// A version (or algorithm) byte this build does not know.
    #[error("{what}: unsupported version {version}")]
    UnsupportedVersion {
        /// The object or field whose version is unknown.
        what: &'static str,
        /// The version byte found.
        version: u8,
    },
    /// The AEAD tag does not match: wrong key or password, bytes tampered with, or an object of
    /// another repository or in another place.
    #[error("{what}: authentication failed (wrong key or password, or the bytes were modified)")]
    AuthenticationFailed {
        /// The object whose envelope failed.
        what: &'static str,
    },
    /// A hash over the content differs from the id it is stored under.
    #[error("{what}: id mismatch: expected {expected}, content hashes to {actual}")]
    IdMismatch {
        /// The object being verified.
        what: &'static str,
        /// The id it was stored under (hex).
        expected: String,
        /// The id its content hashes to (hex).
        actual: String,
    },
    /// A numeric field outside its allowed range.
    #[error("{what}: {field} = {value} is out of bounds")]
    OutOfBounds {
        /// The object being read or written.
        what: &'static str,
        /// The field that is out of bounds.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// A critical TLV tag (below 0x8000) this build does not know (SPEC §11).
    #[error("{what}: unknown critical tag {tag}; written by a newer cairn?")]
    UnknownCriticalTag {
        /// The record being read.
        what: &'static str,
        /// The unknown tag.
        tag: u16,
    },
    /// The system would not give the memory a computation needs (Argon2's, for a key file).
    #[error("{what}: out of memory: {detail}")]
    OutOfMemory {
        /// The structure being processed.
        what: &'static str,
        /// What was needed.
        detail: String,
    },
    /// Anything else structurally wrong.
    #[error("{what}: corrupted: {detail}")]
    Corrupted {
        /// The object being read or written.
        what: &'static str,
        /// What is wrong, in plain words.
        detail: String,
    },
}

impl FormatError {
    /// Shorthand for [`FormatError::Corrupted`].
    pub fn corrupted(what: &'static str, detail: impl Into<String>) -> FormatError {
        FormatError::Corrupted {
            what,
            detail: detail.into(),
        }
    }

    /// Shorthand for [`FormatError::OutOfBounds`].
    pub(crate) fn bounds(
        what: &'static str,
        field: &'static str,
        value: impl TryInto<u64>,
    ) -> FormatError {
        FormatError::OutOfBounds {
            what,
            field,
            value: value.try_into().unwrap_or(u64::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_is_wrong() {
        let e = FormatError::Truncated {
            what: "snapshot",
            needed: 32,
            got: 7,
        };
        assert_eq!(e.to_string(), "snapshot: truncated: needed 32 bytes, got 7");
        let e = FormatError::bounds("key file", "m_cost", 3u32);
        assert_eq!(e.to_string(), "key file: m_cost = 3 is out of bounds");
        let e = FormatError::UnknownCriticalTag {
            what: "config",
            tag: 77,
        };
        assert!(e.to_string().contains("unknown critical tag 77"));
    }
}
